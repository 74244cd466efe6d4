/* proto/conn.c - blocking framed connection with timeouts (proto/conn.h). */
#include "proto/conn.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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

int melbo_cert_fingerprint(const void *x509, char *out, size_t n) {
    unsigned char *der = NULL, md[EVP_MAX_MD_SIZE];
    unsigned int ml = 0;
    int dl = i2d_X509((X509 *)x509, &der);
    if (dl <= 0 || n < MELBO_FINGERPRINT_LEN)
        return MELBO_EINVAL;
    int ok = EVP_Digest(der, (size_t)dl, md, &ml, EVP_sha256(), NULL);
    OPENSSL_free(der);
    if (!ok || ml != 32)
        return MELBO_EINVAL;
    snprintf(out, n, "sha256:");
    for (unsigned i = 0; i < ml; i++)
        snprintf(out + 7 + 2 * i, n - 7 - 2 * i, "%02x", md[i]);
    return 0;
}

/* The hex digits of a fingerprint, past an optional "sha256:" (for messages and comparison). */
static const char *fp_hex(const char *fp) {
    return strncmp(fp, "sha256:", 7) == 0 ? fp + 7 : fp;
}

/* Waits until fd is ready for what an OpenSSL WANT_* asks, up to the deadline. 0 or -1. */
static int tls_wait(int fd, int want, long long deadline) {
    long long left = deadline - now_ms();
    if (left <= 0)
        return -1;
    struct pollfd pfd = {fd, want == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN, 0};
    return poll(&pfd, 1, (int)left) > 0 ? 0 : -1;
}

/*
 * OpenSSL writes to the socket with write(), which raises SIGPIPE when the coordinator is gone
 * (send() here passes MSG_NOSIGNAL): every SSL call runs with SIGPIPE blocked in this thread,
 * and a SIGPIPE it raised is taken back before the mask is restored, so a dead coordinator is
 * an error (EPIPE), never the end of the CLI or of rank 0.
 */
struct sigpipe_guard {
    sigset_t old;
    int was_pending;
};

static void sigpipe_block(struct sigpipe_guard *g) {
    sigset_t pipe, pending;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    sigpending(&pending);
    g->was_pending = sigismember(&pending, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, &g->old);
}

static void sigpipe_restore(struct sigpipe_guard *g) {
    sigset_t pipe, pending;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    sigpending(&pending);
    if (!g->was_pending && sigismember(&pending, SIGPIPE)) {
        struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

/* TLS 1.3 over c->fd, then the pin: the coordinator's certificate must hash to fingerprint. */
static int tls_start(struct melbo_conn *c, const char *addr, const char *fingerprint,
                     int timeout_ms, struct melbo_err *err) {
    static SSL_CTX *ctx;  // one per process, never freed
    if (strlen(fp_hex(fingerprint)) != 64)
        return melbo_err_set(err, MELBO_EINVAL, "MELBO_COORD_FINGERPRINT '%s' is not sha256:<64 "
                             "hex digits> (the line melbo-coord init printed)", fingerprint);
    if (ctx == NULL) {
        ctx = SSL_CTX_new(TLS_client_method());
        if (ctx == NULL)
            return melbo_err_set(err, MELBO_ENOMEM, "cannot create a TLS context");
        SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);  // pinned below, not by a CA
    }
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL || SSL_set_fd(ssl, c->fd) != 1) {
        SSL_free(ssl);
        return melbo_err_set(err, MELBO_ENOMEM, "cannot create a TLS session");
    }
    c->ssl = ssl;
    long long deadline = now_ms() + timeout_ms;
    for (;;) {
        struct sigpipe_guard g;
        sigpipe_block(&g);
        int r = SSL_connect(ssl);
        sigpipe_restore(&g);
        if (r == 1)
            break;
        int e = SSL_get_error(ssl, r);
        if ((e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) ||
            tls_wait(c->fd, e, deadline) != 0) {
            unsigned long oe = ERR_get_error();
            ERR_clear_error();
            const char *why = oe ? ERR_reason_error_string(oe) : NULL;
            return melbo_err_set(err, MELBO_EIO,
                                 "TLS handshake with the coordinator at %s failed%s%s (is it a "
                                 "melbo coordinator with TLS?)",
                                 addr, why ? ": " : "", why ? why : "");
        }
    }
    X509 *cert = SSL_get1_peer_certificate(ssl);
    char got[MELBO_FINGERPRINT_LEN] = "sha256:?";
    int fr = cert ? melbo_cert_fingerprint(cert, got, sizeof got) : MELBO_EINVAL;
    X509_free(cert);
    if (fr != 0 || strcasecmp(fp_hex(got), fp_hex(fingerprint)) != 0)
        return melbo_err_set(err, MELBO_EAUTH,
                             "the coordinator at %s presented certificate sha256:%.16s..., not "
                             "the pinned MELBO_COORD_FINGERPRINT sha256:%.16s...; refusing to "
                             "talk to it",
                             addr, fp_hex(got), fp_hex(fingerprint));
    return 0;
}

/* send() or SSL_write(): > 0 bytes, or -1 with errno (EAGAIN: wait for the socket). */
static ssize_t io_send(struct melbo_conn *c, const void *p, size_t n) {
    if (c->ssl == NULL)
        return send(c->fd, p, n, MSG_NOSIGNAL);
    size_t w = 0;
    struct sigpipe_guard g;
    sigpipe_block(&g);
    int ok = SSL_write_ex(c->ssl, p, n, &w);
    sigpipe_restore(&g);
    if (ok == 1)
        return (ssize_t)w;
    int e = SSL_get_error(c->ssl, 0);
    ERR_clear_error();
    errno = e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ? EAGAIN : EPIPE;
    return -1;
}

/* recv() or SSL_read(): > 0 bytes, 0 at the end, or -1 with errno (EAGAIN: wait). */
static ssize_t io_recv(struct melbo_conn *c, void *p, size_t n) {
    if (c->ssl == NULL)
        return recv(c->fd, p, n, 0);
    size_t got = 0;
    struct sigpipe_guard g;
    sigpipe_block(&g);
    int ok = SSL_read_ex(c->ssl, p, n, &got);  // may write (a key update's answer)
    sigpipe_restore(&g);
    if (ok == 1)
        return (ssize_t)got;
    int e = SSL_get_error(c->ssl, 0);
    ERR_clear_error();
    if (e == SSL_ERROR_ZERO_RETURN)
        return 0;
    errno = e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ? EAGAIN : ECONNRESET;
    return -1;
}

int melbo_conn_open(struct melbo_conn *c, const char *addr, const char *fingerprint,
                    int timeout_ms, struct melbo_err *err) {
    char host[256];
    int port;
    c->fd = -1;
    c->ssl = NULL;
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
    if (fingerprint && fingerprint[0]) {
        int r = tls_start(c, addr, fingerprint, timeout_ms, err);
        if (r != 0) {
            melbo_conn_close(c);
            return r;
        }
    }
    return 0;
}

void melbo_conn_close(struct melbo_conn *c) {
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
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
        ssize_t w = io_send(c, frame + sent, len - sent);
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
        ssize_t got = io_recv(c, buf, sizeof buf);
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
