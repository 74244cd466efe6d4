/* proto/conn.c - blocking framed connection with timeouts (proto/conn.h). */
#include "proto/conn.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int melbo_addr_split(const char *addr, char *host, size_t n, int *port) {
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || colon == addr || colon[1] == '\0')
        return MELBO_EINVAL;
    const char *h = addr;
    size_t hl = (size_t)(colon - addr);
    if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl + 1 > n)
        return MELBO_ERANGE;
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end != '\0' || p < 0 || p > 65535)
        return MELBO_EINVAL;
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (int)p;
    return 0;
}

static int connect_one(const struct addrinfo *ai, int timeout_ms) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
        return -1;
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    int r = connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (r < 0 && errno == EINPROGRESS) {
        struct pollfd pfd = {fd, POLLOUT, 0};
        r = poll(&pfd, 1, timeout_ms);
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (r == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0)
            r = 0;
        else
            r = -1;
    }
    if (r < 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd; // stays non-blocking; send/recv poll with timeouts
}

int melbo_conn_open(struct melbo_conn *c, const char *addr, int timeout_ms, struct melbo_err *err) {
    char host[256];
    int port;
    c->fd = -1;
    melbo_frame_reader_init(&c->rd, MELBO_FRAME_MAX);
    if (melbo_addr_split(addr, host, sizeof host, &port) != 0 || port == 0)
        return melbo_err_set(err, MELBO_EINVAL, "bad coordinator address '%s' (expected HOST:PORT)",
                             addr);
    char ports[16];
    snprintf(ports, sizeof ports, "%d", port);
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    int g = getaddrinfo(host, ports, &hints, &res);
    if (g != 0)
        return melbo_err_set(err, MELBO_EIO, "cannot resolve '%s': %s", host, gai_strerror(g));
    for (struct addrinfo *ai = res; ai && c->fd < 0; ai = ai->ai_next)
        c->fd = connect_one(ai, timeout_ms);
    freeaddrinfo(res);
    if (c->fd < 0)
        return melbo_err_set(err, MELBO_EIO, "cannot connect to the coordinator at %s", addr);
    return 0;
}

void melbo_conn_close(struct melbo_conn *c) {
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    melbo_frame_reader_free(&c->rd);
}

int melbo_conn_send_frame(struct melbo_conn *c, const uint8_t *frame, size_t len, int timeout_ms,
                          struct melbo_err *err) {
    long long deadline = now_ms() + timeout_ms;
    size_t sent = 0;
    while (sent < len) {
        ssize_t w = send(c->fd, frame + sent, len - sent, MSG_NOSIGNAL);
        if (w > 0) {
            sent += (size_t)w;
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return melbo_err_set(err, MELBO_EIO, "connection to the coordinator lost: %s",
                                 strerror(errno));
        long long left = deadline - now_ms();
        struct pollfd pfd = {c->fd, POLLOUT, 0};
        if (left <= 0 || poll(&pfd, 1, (int)left) == 0)
            return melbo_err_set(err, MELBO_EIO, "timed out sending to the coordinator");
    }
    return 0;
}

int melbo_conn_send(struct melbo_conn *c, const Melbo__Envelope *env, int timeout_ms,
                    struct melbo_err *err) {
    uint8_t *frame;
    size_t len;
    int r = melbo_wire_encode(env, 0, &frame, &len);
    if (r != 0)
        return melbo_err_set(err, r, "cannot encode a message (%s)", melbo_err_name(r));
    r = melbo_conn_send_frame(c, frame, len, timeout_ms, err);
    free(frame);
    return r;
}

int melbo_conn_recv(struct melbo_conn *c, int timeout_ms, Melbo__Envelope **out,
                    struct melbo_err *err) {
    long long deadline = timeout_ms < 0 ? 0 : now_ms() + timeout_ms;
    for (;;) {
        const uint8_t *p;
        size_t n;
        int r = melbo_frame_reader_next(&c->rd, &p, &n);
        if (r < 0)
            return melbo_err_set(err, MELBO_EPROTO, "the coordinator sent an oversized frame");
        if (r == 1) {
            *out = melbo_wire_decode(p, n);
            if (*out == NULL)
                return melbo_err_set(err, MELBO_EPROTO, "the coordinator sent a malformed message");
            return 0;
        }
        uint8_t buf[65536];
        ssize_t got = recv(c->fd, buf, sizeof buf, 0);
        if (got > 0) {
            if (melbo_frame_reader_feed(&c->rd, buf, (size_t)got) != 0)
                return melbo_err_set(err, MELBO_ENOMEM, "out of memory");
            continue;
        }
        if (got == 0)
            return melbo_err_set(err, MELBO_EIO, "the coordinator closed the connection");
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return melbo_err_set(err, MELBO_EIO, "connection to the coordinator lost: %s",
                                 strerror(errno));
        int wait = -1;
        if (timeout_ms >= 0) {
            long long left = deadline - now_ms();
            if (left <= 0)
                return melbo_err_set(err, MELBO_EMISSING, "timed out waiting for the coordinator");
            wait = (int)left;
        }
        struct pollfd pfd = {c->fd, POLLIN, 0};
        poll(&pfd, 1, wait);
    }
}
