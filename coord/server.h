/*
 * coord/server.h - the coordinator's TCP endpoint: listening, connections, frame reading and
 * capped writes (coord/server.c). It knows frames and envelopes, not what they mean: every
 * decoded message goes to a handler (struct melbo_peer_handler) that the layer above installs.
 *
 * Ownership (style rule 8): the handler allocates each connection's memory (struct melbo_peer
 * embedded first, so a connection's handle, its struct melbo_peer and the handler's struct share
 * one address) and frees it only from the handler's free callback, which runs from the handle's
 * close callback. Every write bundles its uv_write_t with one reference to a refcounted struct
 * melbo_frame_buf, so one encoded event can go to many watchers without copies.
 *
 * Limits (coord.conf, coord/conf.h): connections in total and per peer address (beyond them a
 * new connection is closed at once; at the total limit the oldest unauthenticated connection is
 * closed instead when there is one older than MELBO_COORD_EVICT_GRACE_S), an authentication
 * deadline, a small frame limit before authentication, an idle timeout, failed-authentication
 * back-off per address, and a global cap on buffered output.
 *
 * Flow control: a connection whose unsent bytes exceed the server's cap is told
 * ERROR_SLOW_CONSUMER and closed; when a write completes and the unsent bytes are below
 * MELBO_COORD_LOW_WATER the handler's drain callback lets paced senders (event replay, bank
 * fetch) continue.
 *
 * TLS (when tls_ctx is set): every connection has an SSL over two memory BIOs. Bytes read go
 * into its read BIO and SSL_read's plaintext into the frame reader; a frame is encrypted with
 * SSL_write and the write BIO's bytes are sent with uv_write (the output accounting counts those
 * ciphertext bytes). The handshake falls under the authentication deadline; frames queued before
 * it completes (an Error to a peer that never finished it) are dropped.
 *
 * Layer: a leaf (proto/, common/, OpenSSL and libuv only); included by watch.h and client.h.
 */
#ifndef MELBO_COORD_SERVER_H
#define MELBO_COORD_SERVER_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/err.h"
#include "coord/conf.h"  // defines: struct melbo_coord_limits (a leaf)
#include "proto/frame.h"
#include "proto/wire.h"

#define MELBO_COORD_LOW_WATER (256u * 1024u)         // replay / fetch pump while below this
#define MELBO_COORD_CLIENT_CAP (8u * 1024u * 1024u)  // default hard cap on queued bytes
#define MELBO_COORD_ADDR_BUCKETS 1024
#define MELBO_COORD_EVICT_GRACE_S 0.25  // an unauthenticated connection is safe this long
                                        // (> TCP's 200 ms minimum retransmission timeout)
#define MELBO_COORD_SNDBUF (256 * 1024)  // SO_SNDBUF of a connection (the kernel doubles it)

struct melbo_server;
struct melbo_addr;

/* One connection. The fields are the server's; the handler reads id, peer and closing. */
struct melbo_peer {
    uv_tcp_t tcp;                    // first member: the handle is the connection
    struct melbo_server *srv;
    struct melbo_frame_reader rd;
    uint64_t id;                     // unique for the server's life, from 1
    int closing;                     // melbo_peer_close() ran: nothing more is read or sent
    int linked;                      // on srv->conns (unlinked in the close callback)
    int authed;                      // melbo_peer_authenticated() ran (Hello or RankHello ok)
    int out_dropped;                 // cut off by the global output cap: writes not counted
    double closed_at;
    double opened_at, last_read;     // melbo_coord_now() of the accept and of the last read
    double close_at;                 // > 0: closed by the sweep at this time (auth tarpit)
    double progress_at;              // accept, then the last write that completed
    size_t out_bytes;                // bytes of frames queued and not yet written
    struct melbo_addr *addr;         // the peer address's counters (connections, failures)
    void *ssl;                       // TLS over memory BIOs (an OpenSSL SSL *); NULL: plaintext
    char peer[64];                   // "ip:port", for logs
    struct melbo_peer *next, *prev;
};

/* Bytes of one encoded frame, shared by every write that sends them (refcounted). */
struct melbo_frame_buf {
    int refs;
    size_t len;
    uint8_t data[];
};

/*
 * What the server calls. Every callback gets the connection; ctx is the handler's own. All run
 * on the loop thread from libuv callbacks.
 */
struct melbo_peer_handler {
    /* A connection was accepted: return zeroed memory that starts with a struct melbo_peer
     * (owned by the handler until free), or NULL to refuse the connection. */
    struct melbo_peer *(*open)(void *ctx);
    /* One decoded message (unpacked; valid only during the call). May send, close the
     * connection, or do anything else; the server stops reading a connection that closed. */
    void (*message)(struct melbo_peer *c, const Melbo__Envelope *env);
    /* Every message of one read was handled and the connection is still open. */
    void (*read_end)(struct melbo_peer *c);
    /* A write completed and fewer than MELBO_COORD_LOW_WATER bytes are queued. */
    void (*drain)(struct melbo_peer *c);
    /* melbo_peer_close() started: drop every reference to c held above the server. No send
     * succeeds on c from now on. Runs once per connection, not for refused ones. */
    void (*closing)(struct melbo_peer *c);
    /* Nonzero when c may stay silent past limits.idle_timeout_s (a watcher, a rank link, an
     * export in progress). May be NULL (every authenticated connection may be idled out). */
    int (*may_idle)(struct melbo_peer *c);
    /* The handle is closed: free the memory open returned. */
    void (*free)(struct melbo_peer *c);
    void *ctx;
};

struct melbo_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    int listening;                   // listener initialised (closed by melbo_server_close)
    void *tls_ctx;                   // coord/tls.h's server context (borrowed); NULL: plaintext
    size_t client_cap;               // queued bytes past which a connection is dropped
    /* coord.conf's limits (borrowed; set after melbo_server_init, defaults when NULL):
     * connections, connections_per_address, auth_timeout_ms, preauth_frame_bytes,
     * idle_timeout_s, auth_failures_per_minute, output_bytes */
    const struct melbo_coord_limits *limits;
    size_t out_bytes;                // queued on every connection together
    uv_timer_t timer;                // deadlines: authentication, idle, tarpit, half-closed
    int timer_open;
    double refused_logged_at;        // a refused connection is logged at most once a second
    uint64_t refused;                // connections refused since that log line
    struct melbo_addr *addrs[MELBO_COORD_ADDR_BUCKETS];  // per peer address, while in use
    struct melbo_peer_handler h;
    struct melbo_peer *conns;        // every accepted connection until its close callback
    int n_conns;
    uint64_t next_id;
    char address[128];               // host:port actually bound (ranks dial it)
};

/* Prepares srv on loop with a copy of h; nothing is opened yet. client_cap is in bytes. */
void melbo_server_init(struct melbo_server *srv, uv_loop_t *loop, size_t client_cap,
                       const struct melbo_peer_handler *h);

/*
 * Binds and listens on addr ("HOST:PORT", IPv4 or IPv6; port 0 picks one) and writes the bound
 * address into srv->address. Returns 0, or MELBO_EINVAL / a UV_E* code with the reason in err.
 */
int melbo_server_listen(struct melbo_server *srv, const char *addr, struct melbo_err *err);

/* Closes connections that stayed half-closed for more than 5 s (a peer that never read its
 * error), that did not authenticate within limits.auth_timeout_ms, or (authenticated, not
 * may_idle) that sent nothing for limits.idle_timeout_s. Runs from the server's own timer (and
 * may be called by the coordinator's tick). */
void melbo_server_sweep(struct melbo_server *srv);

/* Closes every connection and the listener now (shutdown); the close callbacks run on the next
 * loop turn, after which the server holds no handle. */
void melbo_server_close(struct melbo_server *srv);

/* Frees the per-address counters (after the loop ran the close callbacks: shutdown). */
void melbo_server_free(struct melbo_server *srv);

/* The open (not closing) connection with this id, or NULL. */
struct melbo_peer *melbo_server_find(struct melbo_server *srv, uint64_t id);

/* c authenticated: its frames may be up to MELBO_FRAME_MAX (limits.preauth_frame_bytes before),
 * it has no authentication deadline any more, and limits.idle_timeout_s applies. */
void melbo_peer_authenticated(struct melbo_peer *c);

/*
 * Failed-authentication back-off, per peer address. melbo_peer_auth_blocked() returns nonzero
 * when c's address failed limits.auth_failures_per_minute times in the current minute: the
 * attempt must then be refused without checking (the server stopped reading c and sends the
 * Error and closes c a second later; one log line per address and minute).
 * melbo_peer_auth_failed() counts one failure of c's address.
 */
int melbo_peer_auth_blocked(struct melbo_peer *c);
void melbo_peer_auth_failed(struct melbo_peer *c);

/* Bytes of c's frames not yet called back (queued, or taken by the kernel this loop turn). */
size_t melbo_peer_queued(const struct melbo_peer *c);

/* Encodes env (built) into a new frame buffer with one reference, or NULL (out of memory or a
 * frame over MELBO_FRAME_MAX). */
struct melbo_frame_buf *melbo_frame_buf_encode(const Melbo__Envelope *env);

/* Drops one reference (fb may be NULL); the last one frees it. */
void melbo_frame_buf_unref(struct melbo_frame_buf *fb);

/*
 * Queues fb on c (the write takes its own reference; the caller keeps its own). Returns 0, or a
 * negative code when c is closing (MELBO_ESTATE), over its cap (MELBO_ERANGE: c was told so and
 * is being closed) or the write failed (c is being closed). When every connection's queued bytes
 * together would pass limits.output_bytes, the slowest readers are cut off first (those whose
 * last write completed longest ago)
 * (closed at once, their queued writes dropped) until a quarter of the cap is free again; c may
 * be one of them (MELBO_ERANGE).
 */
int melbo_peer_send_frame(struct melbo_peer *c, struct melbo_frame_buf *fb);

/* Encodes env (built) and sends it. Returns as melbo_peer_send_frame; MELBO_ENOMEM closes c. */
int melbo_peer_send(struct melbo_peer *c, const Melbo__Envelope *env);

/*
 * Sends Error{code, message} with request id (0: none), past the cap on purpose (it is small and
 * last), and when close_after closes the connection after it is flushed (close_after 2: the same
 * without the log line, for refusals an attacker can repeat at will). Nothing happens on a
 * closing connection.
 */
void melbo_peer_error(struct melbo_peer *c, uint64_t id, int code, int close_after,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void melbo_peer_verror(struct melbo_peer *c, uint64_t id, int code, int close_after,
                       const char *fmt, va_list ap) __attribute__((format(printf, 5, 0)));

/*
 * Starts closing c: reading stops, the handler's closing callback runs, queued writes are
 * flushed by a shutdown and the handle is then closed (its memory is freed in the close
 * callback, never here). Calling it again does nothing.
 */
void melbo_peer_close(struct melbo_peer *c);

#endif
