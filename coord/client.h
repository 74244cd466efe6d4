/*
 * coord/client.h - the coordinator's connections as sessions: a user (authenticated with a
 * token) or rank 0 of a job (authenticated with the job's secret), and what each may say.
 *
 *   client.c    the server's handler (struct melbo_peer_handler): allocates sessions, routes
 *               each message by kind, continues paced sends on drain, lets go on close
 *   requests.c  a user's requests: hello, submit, watch, ls, show, cancel, fetch, banks
 *   export.c    a user's bank export and bank report: melbo-rank run on a stored bank, its
 *               output streamed back
 *   ranks.c     rank 0's messages: hello, numbered events, log lines, bank upload, done, failed
 *
 * Ownership (style rule 8): struct melbo_client embeds its struct melbo_peer (and so its
 * uv_tcp_t) first and is freed only from the server's free callback, after the handle closed.
 * When the connection starts closing, client.c drops its watches (coord/watch.h), forgets it as
 * its job's rank link, closes a fetch or upload in progress, and ends its export (a melbo-rank
 * still running for it is killed).
 *
 * Layer: the top of coord/ below main.c: includes server.h, watch.h, banks.h and coord.h;
 * requests.c and ranks.c also call jobs.h, launcher.h, db.h and tokens.h. Nothing below
 * includes this header, so nothing below knows a client exists.
 */
#ifndef MELBO_COORD_CLIENT_H
#define MELBO_COORD_CLIENT_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#include "common/sha256.h"
#include "coord/banks.h"   // defines: struct melbo_bank_upload
#include "coord/coord.h"   // defines: struct melbo_coord
#include "coord/server.h"  // defines: struct melbo_peer, melbo_peer_*
#include "coord/watch.h"   // defines: struct melbo_fanout, struct melbo_watch

enum melbo_client_kind {
    MELBO_CLIENT_NEW = 0,    // before hello
    MELBO_CLIENT_USER,       // authenticated with a token
    MELBO_CLIENT_RANK,       // rank 0 of a job, authenticated with the job's secret
};

struct melbo_client {
    struct melbo_peer conn;          // first member: the connection is the client
    struct melbo_coord *co;          // borrowed, like fanout
    struct melbo_fanout *fanout;
    enum melbo_client_kind kind;
    char user[64];
    int admin;                       // the user's token has the admin role (sees private jobs)
    struct melbo_watch *watches;     // this connection's watches (owned by the fan-out)
    /* rank connections */
    struct melbo_job *job;           // the job it speaks for, or NULL
    struct melbo_bank_upload up;     // bank upload in progress (up.f != NULL)
    int acked_in_read;               // events stored during this read callback (ack once)
    /* fetch in progress */
    FILE *fetch;
    uint64_t fetch_req, fetch_off, fetch_size;
    char fetch_id[72];
    struct melbo_sha256 fetch_sha;
    /* bank export or report in progress (owned by co->exports; coord/export.c) */
    struct melbo_export *export;
};

/* What sessions need from the rest of the coordinator (borrowed; outlives every session). */
struct melbo_clients {
    struct melbo_coord *co;
    struct melbo_fanout *fanout;
};

/* The server's handler for sessions; ctx must be a struct melbo_clients. */
extern const struct melbo_peer_handler melbo_clients_handler;

/* ---- the server's calls, on the session (conn is the first member) ---- */

static inline struct melbo_client *melbo_client_of(struct melbo_peer *c) {
    return (struct melbo_client *)c;
}

/* Sends env (built) to cl. Returns 0, or a negative code (cl is then being closed). */
static inline int melbo_client_send(struct melbo_client *cl, const Melbo__Envelope *env) {
    return melbo_peer_send(&cl->conn, env);
}

/* Bytes queued on cl and not yet written. */
static inline size_t melbo_client_queued(const struct melbo_client *cl) {
    return melbo_peer_queued(&cl->conn);
}

/* Starts closing cl (see melbo_peer_close). */
static inline void melbo_client_close(struct melbo_client *cl) {
    melbo_peer_close(&cl->conn);
}

/* Sends Error{code, message} with request id and, when close_after, closes the connection. */
__attribute__((format(printf, 5, 6))) static inline void
melbo_client_error(struct melbo_client *cl, uint64_t id, int code, int close_after,
                   const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    melbo_peer_verror(&cl->conn, id, code, close_after, fmt, ap);
    va_end(ap);
}

/* ---- requests.c ---- */

/* Handles one message of a user connection (or of a new one: Hello, else refused and closed).
 * env is unpacked and valid during the call. */
void melbo_coord_on_client_message(struct melbo_client *cl, const Melbo__Envelope *env);
/* Continues a fetch while cl's queue is below the low-water mark (sends the last chunk with the
 * sha256 and closes the file at the end). */
void melbo_coord_fetch_pump(struct melbo_client *cl);
/* 1 when bank_id is the bank of a `--private` job cl may not see (not its owner, not an admin):
 * answer "no bank ID" then, as for a bank that does not exist. */
int melbo_coord_bank_hidden(const struct melbo_client *cl, const char *bank_id);

/* ---- export.c ---- */

/* ExportRequest or ReportRequest (env->body_case says which): checks it, then queues the run of
 * `melbo-rank bank export|report` on the stored bank; the answer (ExportChunk messages or an
 * Error, with the request's id) comes later. One export per connection at a time. */
void melbo_coord_export_request(struct melbo_client *cl, const Melbo__Envelope *env);
/* Continues sending cl's finished export while cl's queue is below the low-water mark. */
void melbo_coord_export_pump(struct melbo_client *cl);
/* cl is closing: its export ends (a running melbo-rank is killed, its directory removed). */
void melbo_coord_export_gone(struct melbo_client *cl);
/* `serve` start: creates STATE/exports (0700) and removes what an earlier run left in it.
 * Returns 0 or a negative code with err set. */
int melbo_coord_exports_init(struct melbo_coord *co, struct melbo_err *err);

/* ---- ranks.c ---- */

/* RankHello on a new connection: checks the protocol version and the job's secret; the
 * connection becomes the job's rank link (an older link of the job is closed), or is refused
 * and closed. */
void melbo_coord_rank_hello(struct melbo_client *cl, const Melbo__Envelope *env);
/* Handles one message of a rank connection. env is unpacked and valid during the call. */
void melbo_coord_on_rank_message(struct melbo_client *cl, const Melbo__Envelope *env);
/* After the messages of one read: acknowledges the events stored (one RankAck per read). */
void melbo_coord_rank_after_read(struct melbo_client *cl);
/* The rank connection is closing: the job has no rank link any more. */
void melbo_coord_rank_gone(struct melbo_client *cl);

#endif
