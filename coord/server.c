/*
 * coord/server.c - the coordinator's TCP endpoint (coord/server.h): accepting connections,
 * reading frames, handing decoded envelopes to the handler, and writing with a per-connection
 * cap.
 *
 * Reading: libuv hands us a 64 KiB buffer per read; its bytes go through the connection's
 * incremental frame reader (proto/frame.h). A frame over 16 MiB or bytes that are not an
 * Envelope get an Error frame and the connection closed; what a message means (and whether it
 * is allowed) is the handler's business. Nothing a peer sends can stop the loop.
 *
 * Writing: every frame is a refcounted struct melbo_frame_buf; a write request holds one
 * reference and drops it in its callback (also on UV_ECANCELED after a close). Before queueing,
 * the connection's unsent bytes (uv_stream_get_write_queue_size) are compared with the cap: a
 * connection over it is told ERROR_SLOW_CONSUMER and disconnected, so memory never grows
 * without bound.
 */
#include "coord/server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "coord/clock.h"  // defines: melbo_coord_now
#include "proto/conn.h"   // defines: melbo_addr_split

struct write_req {
    uv_write_t req;                  // first: the request is the bundle
    struct melbo_frame_buf *fb;
};

struct melbo_frame_buf *melbo_frame_buf_encode(const Melbo__Envelope *env) {
    uint8_t *mem;
    size_t len;
    if (melbo_wire_encode(env, sizeof(struct melbo_frame_buf), &mem, &len) != 0)
        return NULL;
    struct melbo_frame_buf *fb = (struct melbo_frame_buf *)mem;
    fb->refs = 1;
    fb->len = len;
    return fb;
}

void melbo_frame_buf_unref(struct melbo_frame_buf *fb) {
    if (fb && --fb->refs == 0)
        free(fb);
}

void melbo_server_init(struct melbo_server *srv, uv_loop_t *loop, size_t client_cap,
                       const struct melbo_peer_handler *h) {
    memset(srv, 0, sizeof *srv);
    srv->loop = loop;
    srv->client_cap = client_cap;
    srv->h = *h;
}

size_t melbo_peer_queued(const struct melbo_peer *c) {
    return uv_stream_get_write_queue_size((const uv_stream_t *)&c->tcp);
}

struct melbo_peer *melbo_server_find(struct melbo_server *srv, uint64_t id) {
    for (struct melbo_peer *c = srv->conns; c; c = c->next)
        if (c->id == id && !c->closing)
            return c;
    return NULL;
}

/* The handle's close callback: the only place a connection's memory is released. */
static void on_close(uv_handle_t *h) {
    struct melbo_peer *c = (struct melbo_peer *)h;
    struct melbo_server *srv = c->srv;
    if (c->linked) {
        if (c->prev)
            c->prev->next = c->next;
        else
            srv->conns = c->next;
        if (c->next)
            c->next->prev = c->prev;
        srv->n_conns--;
    }
    melbo_frame_reader_free(&c->rd);
    srv->h.free(c);
}

void melbo_server_sweep(struct melbo_server *srv) {
    double now = melbo_coord_now();
    for (struct melbo_peer *c = srv->conns; c; c = c->next)
        if (c->closing && now - c->closed_at > 5.0 && !uv_is_closing((uv_handle_t *)&c->tcp))
            uv_close((uv_handle_t *)&c->tcp, on_close);  // a peer that never read its error
}

/* A write finished (or was cancelled by a close): drops its frame reference and, below the
 * low-water mark, lets the handler continue paced sends. */
static void after_write(uv_write_t *req, int status) {
    struct write_req *wr = (struct write_req *)req;
    struct melbo_peer *c = (struct melbo_peer *)req->handle;  // freed only after us
    melbo_frame_buf_unref(wr->fb);
    free(wr);
    if (status < 0 || c->closing)
        return;
    if (melbo_peer_queued(c) < MELBO_COORD_LOW_WATER)
        c->srv->h.drain(c);  // paced senders (replay, fetch) continue
}

/* Queues fb on c with no cap check. Returns 0 or the uv_write error (no callback then). */
static int write_frame(struct melbo_peer *c, struct melbo_frame_buf *fb) {
    struct write_req *wr = malloc(sizeof *wr);
    if (wr == NULL)
        return MELBO_ENOMEM;
    fb->refs++;
    wr->fb = fb;
    uv_buf_t b = uv_buf_init((char *)fb->data, (unsigned)fb->len);
    int r = uv_write(&wr->req, (uv_stream_t *)&c->tcp, &b, 1, after_write);
    if (r < 0) {  // the callback will not run
        melbo_frame_buf_unref(fb);
        free(wr);
    }
    return r;
}

int melbo_peer_send_frame(struct melbo_peer *c, struct melbo_frame_buf *fb) {
    if (c->closing)
        return MELBO_ESTATE;
    size_t cap = c->srv->client_cap;
    if (melbo_peer_queued(c) > cap) {
        melbo_log(MELBO_LOG_WARN, "coord: %s cannot keep up (%zu bytes queued); disconnecting",
                  c->peer, melbo_peer_queued(c));
        melbo_peer_error(c, 0, MELBO__ERROR_CODE__ERROR_SLOW_CONSUMER, 1,
                         "you fell more than %zu bytes behind; reconnect and watch from your "
                         "last event number",
                         cap);
        return MELBO_ERANGE;
    }
    int r = write_frame(c, fb);
    if (r < 0)
        melbo_peer_close(c);
    return r;
}

int melbo_peer_send(struct melbo_peer *c, const Melbo__Envelope *env) {
    struct melbo_frame_buf *fb = melbo_frame_buf_encode(env);
    if (fb == NULL) {
        melbo_peer_close(c);
        return MELBO_ENOMEM;
    }
    int r = melbo_peer_send_frame(c, fb);
    melbo_frame_buf_unref(fb);
    return r;
}

static void on_shutdown(uv_shutdown_t *req, int status) {
    (void)status;
    if (!uv_is_closing((uv_handle_t *)req->handle))
        uv_close((uv_handle_t *)req->handle, on_close);
    free(req);
}

void melbo_peer_verror(struct melbo_peer *c, uint64_t id, int code, int close_after,
                       const char *fmt, va_list ap) {
    if (c->closing)
        return;
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    Melbo__Error e = MELBO__ERROR__INIT;
    e.has_code = 1;
    e.code = code;
    e.message = msg;
    Melbo__Envelope env = MELBO__ENVELOPE__INIT;
    env.has_id = id != 0;
    env.id = id;
    env.body_case = MELBO__ENVELOPE__BODY_ERROR;
    env.error = &e;
    struct melbo_frame_buf *fb = melbo_frame_buf_encode(&env);
    if (fb) {
        write_frame(c, fb);  // past the cap on purpose: the error is small and last
        melbo_frame_buf_unref(fb);
    }
    if (!close_after)
        return;
    melbo_log(MELBO_LOG_INFO, "coord: closing %s: %s", c->peer, msg);
    /* Graceful: the error is flushed before the close (a peer that reads nothing is closed by
     * uv_shutdown's failure or stays half-closed with nothing more queued). */
    melbo_peer_close(c);
}

void melbo_peer_error(struct melbo_peer *c, uint64_t id, int code, int close_after,
                      const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    melbo_peer_verror(c, id, code, close_after, fmt, ap);
    va_end(ap);
}

void melbo_peer_close(struct melbo_peer *c) {
    if (c->closing)
        return;
    c->closing = 1;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->srv->h.closing(c);
    c->closed_at = melbo_coord_now();
    uv_shutdown_t *sd = malloc(sizeof *sd);
    if (sd == NULL || uv_shutdown(sd, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        free(sd);
        uv_close((uv_handle_t *)&c->tcp, on_close);
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    static char slab[65536];  // one loop thread: the bytes are copied into the reader at once
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(slab, sizeof slab);
}

/* Feeds the bytes read to c's frame reader and hands every complete, decoded message to the
 * handler; a protocol error closes c with an Error. */
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    struct melbo_peer *c = (struct melbo_peer *)s;
    if (nread == 0 || c->closing)
        return;
    if (nread < 0) {
        if (nread != UV_EOF)
            melbo_log(MELBO_LOG_DEBUG, "coord: %s: %s", c->peer, uv_strerror((int)nread));
        melbo_peer_close(c);
        return;
    }
    if (melbo_frame_reader_feed(&c->rd, buf->base, (size_t)nread) != 0) {
        melbo_peer_error(c, 0, MELBO__ERROR_CODE__ERROR_INTERNAL, 1, "out of memory");
        return;
    }
    for (;;) {
        const uint8_t *p;
        size_t n;
        int r = melbo_frame_reader_next(&c->rd, &p, &n);
        if (r == 0)
            break;
        if (r < 0) {
            melbo_peer_error(c, 0, MELBO__ERROR_CODE__ERROR_TOO_LARGE, 1,
                             "frame longer than %u bytes refused", MELBO_FRAME_MAX);
            return;
        }
        Melbo__Envelope *env = melbo_wire_decode(p, n);
        if (env == NULL) {
            melbo_peer_error(c, 0, MELBO__ERROR_CODE__ERROR_PROTOCOL, 1,
                             "malformed message: %zu bytes that are not a melbo.Envelope with a "
                             "known body",
                             n);
            return;
        }
        c->srv->h.message(c, env);
        melbo__envelope__free_unpacked(env, NULL);
        if (c->closing)
            return;
    }
    c->srv->h.read_end(c);
}

/* Fills c->peer with "ip:port" (IPv4), else "peer". */
static void name_peer(struct melbo_peer *c) {
    struct sockaddr_storage ss;
    int sl = sizeof ss;
    snprintf(c->peer, sizeof c->peer, "peer");
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0 &&
        ss.ss_family == AF_INET) {
        char ip[32];
        uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
        snprintf(c->peer, sizeof c->peer, "%s:%d", ip,
                 ntohs(((struct sockaddr_in *)&ss)->sin_port));
    }
}

/* Accepts a connection into memory the handler provides; over MELBO_COORD_MAX_CLIENTS it is
 * closed at once. */
static void on_connection(uv_stream_t *server, int status) {
    struct melbo_server *srv = server->data;
    if (status < 0) {
        melbo_log(MELBO_LOG_WARN, "coord: accept: %s", uv_strerror(status));
        return;
    }
    struct melbo_peer *c = srv->h.open(srv->h.ctx);
    if (c == NULL)
        return;
    c->srv = srv;
    melbo_frame_reader_init(&c->rd, MELBO_FRAME_MAX);
    uv_tcp_init(srv->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, on_close);
        return;
    }
    if (srv->n_conns >= MELBO_COORD_MAX_CLIENTS) {
        melbo_log(MELBO_LOG_WARN, "coord: too many connections; refusing one");
        uv_close((uv_handle_t *)&c->tcp, on_close);
        return;
    }
    name_peer(c);
    uv_tcp_nodelay(&c->tcp, 1);
    c->id = ++srv->next_id;
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->n_conns++;
    c->linked = 1;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* Writes the listener's bound address into srv->address ("ip:port" or "[ip6]:port"). */
static void record_address(struct melbo_server *srv) {
    struct sockaddr_storage sa;
    int sl = sizeof sa;
    char ip[64];
    uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&sa, &sl);
    if (sa.ss_family == AF_INET) {
        uv_ip4_name((struct sockaddr_in *)&sa, ip, sizeof ip);
        snprintf(srv->address, sizeof srv->address, "%s:%d", ip,
                 ntohs(((struct sockaddr_in *)&sa)->sin_port));
    } else {
        uv_ip6_name((struct sockaddr_in6 *)&sa, ip, sizeof ip);
        snprintf(srv->address, sizeof srv->address, "[%s]:%d", ip,
                 ntohs(((struct sockaddr_in6 *)&sa)->sin6_port));
    }
}

int melbo_server_listen(struct melbo_server *srv, const char *addr, struct melbo_err *err) {
    char host[128];
    int port;
    struct sockaddr_storage sa;
    if (melbo_addr_split(addr, host, sizeof host, &port) != 0)
        return melbo_err_set(err, MELBO_EINVAL, "--listen '%s': expected HOST:PORT", addr);
    int r = uv_ip4_addr(host, port, (struct sockaddr_in *)&sa);
    if (r != 0)
        r = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&sa);
    if (r != 0)
        return melbo_err_set(err, MELBO_EINVAL, "--listen '%s': not an IP address", addr);
    uv_tcp_init(srv->loop, &srv->listener);
    srv->listening = 1;
    srv->listener.data = srv;
    r = uv_tcp_bind(&srv->listener, (struct sockaddr *)&sa, 0);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&srv->listener, 512, on_connection);
    if (r != 0)
        return melbo_err_set(err, r, "cannot listen on %s: %s", addr, uv_strerror(r));
    record_address(srv);
    return 0;
}

void melbo_server_close(struct melbo_server *srv) {
    for (struct melbo_peer *c = srv->conns; c; c = c->next) {
        melbo_peer_close(c);
        if (!uv_is_closing((uv_handle_t *)&c->tcp))
            uv_close((uv_handle_t *)&c->tcp, on_close);
    }
    if (srv->listening && !uv_is_closing((uv_handle_t *)&srv->listener))
        uv_close((uv_handle_t *)&srv->listener, NULL);  // embedded in srv: nothing to free
}
