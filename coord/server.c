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

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/utf8.h"
#include "common/log.h"
#include "coord/clock.h"  // defines: melbo_coord_now
#include "proto/conn.h"   // defines: melbo_addr_split

/* The counters of one peer address (IP, without the port), kept while it has a connection or
 * failures in the current minute. */
struct melbo_addr {
    char ip[48];
    int conns;                       // open connections from it
    int fails;                       // failed authentications since window
    double window;                   // start of the current one-minute window
    double logged;                   // last "refusing its attempts" log line (once a minute)
    uint64_t refused;                // attempts refused without checking since that line
    struct melbo_addr *next;
};

static const struct melbo_coord_limits *limits_of(const struct melbo_server *srv) {
    static struct melbo_coord_limits defaults;
    static int init;
    if (srv->limits)
        return srv->limits;
    if (!init) {
        melbo_coord_limits_defaults(&defaults);
        init = 1;
    }
    return &defaults;
}

static unsigned addr_hash(const char *ip) {
    unsigned h = 2166136261u;
    for (; *ip; ip++)
        h = (h ^ (unsigned char)*ip) * 16777619u;
    return h % MELBO_COORD_ADDR_BUCKETS;
}

/* The entry of ip, created when missing (NULL: out of memory). */
static struct melbo_addr *addr_get(struct melbo_server *srv, const char *ip) {
    struct melbo_addr **b = &srv->addrs[addr_hash(ip)];
    for (struct melbo_addr *a = *b; a; a = a->next)
        if (!strcmp(a->ip, ip))
            return a;
    struct melbo_addr *a = calloc(1, sizeof *a);
    if (a == NULL)
        return NULL;
    snprintf(a->ip, sizeof a->ip, "%s", ip);
    a->window = melbo_coord_now();
    a->next = *b;
    *b = a;
    return a;
}

/* Starts a new one-minute window when the old one is over; logs what was refused in it. */
static void addr_window(struct melbo_addr *a, double now) {
    if (now - a->window < 60.0)
        return;
    if (a->refused)
        melbo_log(MELBO_LOG_WARN, "coord: %s: %llu authentication attempts refused unchecked in "
                  "the last minute", a->ip, (unsigned long long)a->refused);
    a->window = now;
    a->fails = 0;
    a->refused = 0;
}

/* Frees the entries with no connection and no failure in the current minute. */
static void addr_sweep(struct melbo_server *srv, double now) {
    for (int i = 0; i < MELBO_COORD_ADDR_BUCKETS; i++)
        for (struct melbo_addr **pp = &srv->addrs[i]; *pp;) {
            struct melbo_addr *a = *pp;
            addr_window(a, now);
            if (a->conns == 0 && a->fails == 0) {
                *pp = a->next;
                free(a);
            } else {
                pp = &a->next;
            }
        }
}

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

/* Every frame queued on c until its write callback: also those the kernel took already (their
 * callbacks run on the next loop turn), so a paced sender stops at the low-water mark even while
 * the socket's send buffer swallows megabytes in one turn. */
size_t melbo_peer_queued(const struct melbo_peer *c) {
    return c->out_bytes;
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
        if (c->linked == 1)
            srv->n_conns--;  // 2: already counted as gone (evicted at the limit)
    }
    if (c->addr)
        c->addr->conns--;
    if (!c->out_dropped)
        srv->out_bytes -= c->out_bytes;  // 0 unless writes were never called back
    melbo_frame_reader_free(&c->rd);
    SSL_free(c->ssl);
    c->ssl = NULL;
    srv->h.free(c);
}

void melbo_server_sweep(struct melbo_server *srv) {
    const struct melbo_coord_limits *l = limits_of(srv);
    double now = melbo_coord_now();
    for (struct melbo_peer *c = srv->conns, *next; c; c = next) {
        next = c->next;  // closing unlinks nothing here (only the close callback does)
        if (c->closing) {
            if (now - c->closed_at > 5.0 && !uv_is_closing((uv_handle_t *)&c->tcp))
                uv_close((uv_handle_t *)&c->tcp, on_close);  // a peer that never read its error
        } else if (c->close_at > 0) {
            if (now >= c->close_at)
                melbo_peer_error(c, 0, MELBO__ERROR_CODE__ERROR_AUTH, 2,
                                 "too many failed authentications from your address "
                                 "(limits.auth_failures_per_minute = %lld); try again in a minute",
                                 (long long)l->auth_failures_per_minute);
        } else if (!c->authed) {
            if ((now - c->opened_at) * 1000.0 >= (double)l->auth_timeout_ms)
                melbo_peer_error(c, 0, MELBO__ERROR_CODE__ERROR_AUTH, 2,
                                 "no authentication within %lld ms (limits.auth_timeout_ms)",
                                 (long long)l->auth_timeout_ms);
        } else if (now - c->last_read >= (double)l->idle_timeout_s &&
                   !(srv->h.may_idle && srv->h.may_idle(c))) {
            melbo_peer_error(c, 0, MELBO__ERROR_CODE__ERROR_STATE, 1,
                             "idle for %lld s (limits.idle_timeout_s); reconnect when needed",
                             (long long)l->idle_timeout_s);
        }
    }
}

static void on_timer(uv_timer_t *t) {
    struct melbo_server *srv = t->data;
    double now = melbo_coord_now();
    melbo_server_sweep(srv);
    static double last_addr_sweep;
    if (now - last_addr_sweep >= 10.0) {
        addr_sweep(srv, now);
        last_addr_sweep = now;
    }
}

void melbo_peer_authenticated(struct melbo_peer *c) {
    c->authed = 1;
    c->rd.max = MELBO_FRAME_MAX;
    c->last_read = melbo_coord_now();
}

int melbo_peer_auth_blocked(struct melbo_peer *c) {
    struct melbo_addr *a = c->addr;
    const struct melbo_coord_limits *l = limits_of(c->srv);
    double now = melbo_coord_now();
    if (a == NULL)
        return 0;
    addr_window(a, now);
    if (a->fails < l->auth_failures_per_minute)
        return 0;
    if (a->refused++ == 0 || now - a->logged >= 60.0) {
        melbo_log(MELBO_LOG_WARN, "coord: %s: %d failed authentications in a minute "
                  "(limits.auth_failures_per_minute); refusing its attempts unchecked until %.0f "
                  "s from now (logged once a minute)", a->ip, a->fails, 60.0 - (now - a->window));
        a->logged = now;
    }
    /* The Error and the close come a second later (the sweep): a flood from one address gets
     * at most limits.connections_per_address attempts answered a second, none of them
     * checked. */
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->close_at = now + 1.0;
    return 1;
}

void melbo_peer_auth_failed(struct melbo_peer *c) {
    if (c->addr) {
        addr_window(c->addr, melbo_coord_now());
        c->addr->fails++;
    }
}

/* A write finished (or was cancelled by a close): drops its frame reference and, below the
 * low-water mark, lets the handler continue paced sends. */
static void after_write(uv_write_t *req, int status) {
    struct write_req *wr = (struct write_req *)req;
    struct melbo_peer *c = (struct melbo_peer *)req->handle;  // freed only after us
    if (!c->out_dropped) {
        c->out_bytes -= wr->fb->len;
        c->srv->out_bytes -= wr->fb->len;
    }
    if (status == 0)
        c->progress_at = melbo_coord_now();
    melbo_frame_buf_unref(wr->fb);
    free(wr);
    if (status < 0 || c->closing)
        return;
    if (melbo_peer_queued(c) < MELBO_COORD_LOW_WATER)
        c->srv->h.drain(c);  // paced senders (replay, fetch) continue
}

/* Queues fb's bytes on c's socket as they are. Returns 0 or the uv_write error. */
static int write_raw(struct melbo_peer *c, struct melbo_frame_buf *fb) {
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
        return r;
    }
    c->out_bytes += fb->len;
    c->srv->out_bytes += fb->len;
    return 0;
}

/* Sends what TLS wrote into c's write BIO (handshake records, encrypted frames, alerts) as one
 * buffer. Returns 0 or the uv_write error. */
static int tls_flush(struct melbo_peer *c) {
    BIO *w = SSL_get_wbio(c->ssl);
    size_t n = BIO_ctrl_pending(w);
    if (n == 0)
        return 0;
    struct melbo_frame_buf *fb = malloc(sizeof *fb + n);
    if (fb == NULL)
        return MELBO_ENOMEM;
    fb->refs = 1;
    fb->len = (size_t)BIO_read(w, fb->data, (int)n);
    int r = write_raw(c, fb);
    melbo_frame_buf_unref(fb);
    return r;
}

/* Queues fb on c with no cap check (encrypted first on a TLS connection; dropped while its
 * handshake is not complete). Returns 0 or the uv_write error (no callback then). */
static int write_frame(struct melbo_peer *c, struct melbo_frame_buf *fb) {
    if (c->ssl == NULL)
        return write_raw(c, fb);
    if (!SSL_is_init_finished(c->ssl))
        return 0;
    size_t w = 0;
    if (SSL_write_ex(c->ssl, fb->data, fb->len, &w) != 1 || w != fb->len) {
        ERR_clear_error();
        return MELBO_EIO;
    }
    return tls_flush(c);
}

/* Cuts c off now: closed without a shutdown, so its queued writes are cancelled and their
 * memory released on this loop turn; they no longer count against limits.output_bytes. */
static void cut_off(struct melbo_peer *c) {
    struct melbo_server *srv = c->srv;
    melbo_log(MELBO_LOG_WARN, "coord: %s cut off: %zu bytes queued and the coordinator's output "
              "buffers are full (limits.output_bytes = %lld)", c->peer, c->out_bytes,
              (long long)limits_of(srv)->output_bytes);
    srv->out_bytes -= c->out_bytes;
    c->out_dropped = 1;
    melbo_peer_close(c);
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, on_close);
}

/* Bytes queued on c that the kernel did not take: the peer is not reading them. */
static size_t stuck(const struct melbo_peer *c) {
    return uv_stream_get_write_queue_size((const uv_stream_t *)&c->tcp);
}

/* Room for need more bytes under limits.output_bytes: cuts off the slowest readers first (the
 * connections with the most bytes the kernel would not take; the one whose last write completed
 * longest ago among equals) until a quarter of the cap is free. Frames the kernel took are
 * released on the next loop turn: when nobody has stuck bytes nobody is cut. */
static void make_room(struct melbo_server *srv, size_t need) {
    size_t cap = (size_t)limits_of(srv)->output_bytes;
    if (srv->out_bytes + need <= cap)
        return;
    size_t goal = cap - cap / 4;
    while (srv->out_bytes + need > goal) {
        struct melbo_peer *worst = NULL;
        size_t worst_stuck = 0;
        for (struct melbo_peer *c = srv->conns; c; c = c->next) {
            size_t n = c->out_dropped ? 0 : stuck(c);
            if (n > worst_stuck ||
                (n > 0 && n == worst_stuck && c->progress_at < worst->progress_at)) {
                worst = c;
                worst_stuck = n;
            }
        }
        if (worst == NULL)
            break;
        cut_off(worst);
    }
}

int melbo_peer_send_frame(struct melbo_peer *c, struct melbo_frame_buf *fb) {
    if (c->closing)
        return MELBO_ESTATE;
    make_room(c->srv, fb->len);
    if (c->closing)
        return MELBO_ERANGE;  // c was the slowest
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
    char raw[1024], msg[1024];
    vsnprintf(raw, sizeof raw, fmt, ap);
    melbo_utf8_sanitize(msg, sizeof msg, raw); /* a protobuf string holds UTF-8 only */
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
    if (close_after == 1)
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

/* TLS: puts n bytes read from the socket into c's read BIO, feeds the plaintext SSL_read gives
 * to the frame reader and sends what TLS has to say (handshake, alerts). Returns 0, or -1 when
 * c is being closed (a failed handshake or a broken record: nothing readable can be answered). */
static int tls_feed(struct melbo_peer *c, const char *p, size_t n) {
    static char plain[65536];  // one loop thread; copied into the reader at once
    if (BIO_write(SSL_get_rbio(c->ssl), p, (int)n) != (int)n) {
        melbo_peer_close(c);
        return -1;
    }
    for (;;) {
        size_t got = 0;
        if (SSL_read_ex(c->ssl, plain, sizeof plain, &got) == 1) {
            if (melbo_frame_reader_feed(&c->rd, plain, got) != 0) {
                melbo_peer_error(c, 0, MELBO__ERROR_CODE__ERROR_INTERNAL, 1, "out of memory");
                return -1;
            }
            continue;
        }
        int e = SSL_get_error(c->ssl, 0);
        if (e == SSL_ERROR_WANT_READ)
            break;
        unsigned long oe = ERR_get_error();
        ERR_clear_error();
        const char *why = oe                          ? ERR_reason_error_string(oe)
                          : e == SSL_ERROR_ZERO_RETURN ? "closed"
                                                       : "error";
        melbo_log(MELBO_LOG_DEBUG, "coord: %s: TLS: %s", c->peer, why ? why : "error");
        tls_flush(c);  // the alert, if any
        melbo_peer_close(c);
        return -1;
    }
    if (tls_flush(c) != 0) {
        melbo_peer_close(c);
        return -1;
    }
    return 0;
}

/* Feeds the bytes read to c's frame reader and hands every complete, decoded message to the
 * handler; a protocol error closes c with an Error. */
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    struct melbo_peer *c = (struct melbo_peer *)s;
    if (nread == 0 || c->closing || c->close_at > 0)
        return;
    c->last_read = melbo_coord_now();
    if (nread < 0) {
        if (nread != UV_EOF)
            melbo_log(MELBO_LOG_DEBUG, "coord: %s: %s", c->peer, uv_strerror((int)nread));
        melbo_peer_close(c);
        return;
    }
    if (c->ssl) {
        if (tls_feed(c, buf->base, (size_t)nread) != 0)
            return;
    } else if (melbo_frame_reader_feed(&c->rd, buf->base, (size_t)nread) != 0) {
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
            melbo_peer_error(c, 0, MELBO__ERROR_CODE__ERROR_TOO_LARGE, c->authed ? 1 : 2,
                             "frame longer than %zu bytes refused%s", c->rd.max,
                             c->authed ? "" : " before authentication "
                                              "(limits.preauth_frame_bytes)");
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
        if (c->closing || c->close_at > 0)
            return;
    }
    c->srv->h.read_end(c);
}

/* Fills ip with the peer's address (IPv4 or IPv6) and c->peer with "ip:port" (else "peer"). */
static void name_peer(struct melbo_peer *c, char *ip, size_t n) {
    struct sockaddr_storage ss;
    int sl = sizeof ss;
    snprintf(c->peer, sizeof c->peer, "peer");
    snprintf(ip, n, "?");
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) != 0)
        return;
    if (ss.ss_family == AF_INET) {
        uv_ip4_name((struct sockaddr_in *)&ss, ip, n);
        snprintf(c->peer, sizeof c->peer, "%s:%d", ip,
                 ntohs(((struct sockaddr_in *)&ss)->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&ss, ip, n);
        snprintf(c->peer, sizeof c->peer, "[%s]:%d", ip,
                 ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
    }
}

/* Logs a refused connection, at most once a second (with how many were refused). */
static void log_refused(struct melbo_server *srv, const char *why) {
    double now = melbo_coord_now();
    srv->refused++;
    if (now - srv->refused_logged_at < 1.0)
        return;
    melbo_log(MELBO_LOG_WARN, "coord: %llu connection(s) refused: %s",
              (unsigned long long)srv->refused, why);
    srv->refused = 0;
    srv->refused_logged_at = now;
}

/* The oldest connection that has not authenticated yet (and is not closing), when it is older
 * than MELBO_COORD_EVICT_GRACE_S (a connection accepted in the same burst has not been read yet:
 * a legitimate client's Hello may be waiting in it), else NULL. */
static struct melbo_peer *oldest_unauthenticated(struct melbo_server *srv) {
    struct melbo_peer *old = NULL;
    for (struct melbo_peer *c = srv->conns; c; c = c->next)
        if (!c->authed && !c->closing && c->close_at == 0 && (old == NULL || c->id < old->id))
            old = c;
    if (old && melbo_coord_now() - old->opened_at < MELBO_COORD_EVICT_GRACE_S)
        return NULL;
    return old;
}

/* Accepts a connection into memory the handler provides. Over limits.connections_per_address
 * it is closed at once; at limits.connections the oldest unauthenticated connection is closed to
 * make room, and when every connection is authenticated the new one is closed at once. */
static void on_connection(uv_stream_t *server, int status) {
    struct melbo_server *srv = server->data;
    const struct melbo_coord_limits *l = limits_of(srv);
    char ip[48];
    if (status < 0) {
        melbo_log(MELBO_LOG_WARN, "coord: accept: %s", uv_strerror(status));
        return;
    }
    struct melbo_peer *c = srv->h.open(srv->h.ctx);
    if (c == NULL)
        return;
    c->srv = srv;
    c->out_dropped = 1;  // nothing counted until it is linked
    melbo_frame_reader_init(&c->rd, (size_t)l->preauth_frame_bytes);
    uv_tcp_init(srv->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, on_close);
        return;
    }
    name_peer(c, ip, sizeof ip);
    struct melbo_addr *a = addr_get(srv, ip);
    if (a == NULL || a->conns >= l->connections_per_address) {
        log_refused(srv, "too many from one address (limits.connections_per_address)");
        uv_close((uv_handle_t *)&c->tcp, on_close);
        return;
    }
    if (srv->n_conns >= l->connections) {
        struct melbo_peer *old = oldest_unauthenticated(srv);
        if (old == NULL) {
            log_refused(srv, "too many connections (limits.connections)");
            uv_close((uv_handle_t *)&c->tcp, on_close);
            return;
        }
        log_refused(srv, "the oldest unauthenticated ones, to make room (limits.connections)");
        melbo_peer_close(old);
        uv_close((uv_handle_t *)&old->tcp, on_close);  // its slot is free on this loop turn
        srv->n_conns--;  // counted as gone now; its close callback must not count it again
        old->linked = 2;
    }
    c->addr = a;
    a->conns++;
    c->out_dropped = 0;
    c->opened_at = c->last_read = c->progress_at = melbo_coord_now();
    uv_tcp_nodelay(&c->tcp, 1);
    int sndbuf = MELBO_COORD_SNDBUF;  // what a peer that stops reading parks in the kernel
    uv_send_buffer_size((uv_handle_t *)&c->tcp, &sndbuf);
    c->id = ++srv->next_id;
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->n_conns++;
    c->linked = 1;
    if (srv->tls_ctx) {  // TLS over two memory BIOs, driven from on_read and write_frame
        SSL *ssl = SSL_new(srv->tls_ctx);
        BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
        if (ssl == NULL || rb == NULL || wb == NULL) {
            SSL_free(ssl);
            BIO_free(rb);
            BIO_free(wb);
            melbo_log(MELBO_LOG_WARN, "coord: %s: cannot start TLS (out of memory)", c->peer);
            melbo_peer_close(c);
            return;
        }
        SSL_set_bio(ssl, rb, wb);
        SSL_set_accept_state(ssl);
        c->ssl = ssl;
    }
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
        r = uv_listen((uv_stream_t *)&srv->listener, SOMAXCONN, on_connection);
    if (r != 0)
        return melbo_err_set(err, r, "cannot listen on %s: %s", addr, uv_strerror(r));
    record_address(srv);
    /* deadlines are checked 4 times per authentication timeout (at most once a second) */
    int64_t period = limits_of(srv)->auth_timeout_ms / 4;
    if (!srv->timer_open) {
        uv_timer_init(srv->loop, &srv->timer);
        srv->timer.data = srv;
        srv->timer_open = 1;
        uv_timer_start(&srv->timer, on_timer, 50, period < 50 ? 50 : period > 1000 ? 1000 : period);
    }
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
    if (srv->timer_open && !uv_is_closing((uv_handle_t *)&srv->timer))
        uv_close((uv_handle_t *)&srv->timer, NULL);
}

void melbo_server_free(struct melbo_server *srv) {
    for (int i = 0; i < MELBO_COORD_ADDR_BUCKETS; i++)
        for (struct melbo_addr *a = srv->addrs[i], *n; a; a = n) {
            n = a->next;
            free(a);
        }
    memset(srv->addrs, 0, sizeof srv->addrs);
}
