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
 * Flow control: a connection whose unsent bytes exceed the server's cap is told
 * ERROR_SLOW_CONSUMER and closed; when a write completes and the unsent bytes are below
 * MELBO_COORD_LOW_WATER the handler's drain callback lets paced senders (event replay, bank
 * fetch) continue.
 *
 * Layer: a leaf (proto/, common/ and libuv only); included by watch.h and client.h.
 */
#ifndef MELBO_COORD_SERVER_H
#define MELBO_COORD_SERVER_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/err.h"
#include "proto/frame.h"
#include "proto/wire.h"

#define MELBO_COORD_LOW_WATER (256u * 1024u)         // replay / fetch pump while below this
#define MELBO_COORD_CLIENT_CAP (8u * 1024u * 1024u)  // default hard cap on queued bytes
#define MELBO_COORD_MAX_CLIENTS 4096

struct melbo_server;

/* One connection. The fields are the server's; the handler reads id, peer and closing. */
struct melbo_peer {
    uv_tcp_t tcp;                    // first member: the handle is the connection
    struct melbo_server *srv;
    struct melbo_frame_reader rd;
    uint64_t id;                     // unique for the server's life, from 1
    int closing;                     // melbo_peer_close() ran: nothing more is read or sent
    int linked;                      // on srv->conns (unlinked in the close callback)
    double closed_at;
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
    /* The handle is closed: free the memory open returned. */
    void (*free)(struct melbo_peer *c);
    void *ctx;
};

struct melbo_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    int listening;                   // listener initialised (closed by melbo_server_close)
    size_t client_cap;               // queued bytes past which a connection is dropped
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
 * error). Called by the coordinator's tick timer. */
void melbo_server_sweep(struct melbo_server *srv);

/* Closes every connection and the listener now (shutdown); the close callbacks run on the next
 * loop turn, after which the server holds no handle. */
void melbo_server_close(struct melbo_server *srv);

/* The open (not closing) connection with this id, or NULL. */
struct melbo_peer *melbo_server_find(struct melbo_server *srv, uint64_t id);

/* Bytes queued on c and not yet written. */
size_t melbo_peer_queued(const struct melbo_peer *c);

/* Encodes env (built) into a new frame buffer with one reference, or NULL (out of memory or a
 * frame over MELBO_FRAME_MAX). */
struct melbo_frame_buf *melbo_frame_buf_encode(const Melbo__Envelope *env);

/* Drops one reference (fb may be NULL); the last one frees it. */
void melbo_frame_buf_unref(struct melbo_frame_buf *fb);

/*
 * Queues fb on c (the write takes its own reference; the caller keeps its own). Returns 0, or a
 * negative code when c is closing (MELBO_ESTATE), over its cap (MELBO_ERANGE: c was told so and
 * is being closed) or the write failed (c is being closed).
 */
int melbo_peer_send_frame(struct melbo_peer *c, struct melbo_frame_buf *fb);

/* Encodes env (built) and sends it. Returns as melbo_peer_send_frame; MELBO_ENOMEM closes c. */
int melbo_peer_send(struct melbo_peer *c, const Melbo__Envelope *env);

/*
 * Sends Error{code, message} with request id (0: none), past the cap on purpose (it is small and
 * last), and when close_after closes the connection after it is flushed. Nothing happens on a
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
