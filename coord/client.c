/*
 * coord/client.c - the server's handler for the coordinator's sessions (coord/client.h): it
 * allocates a struct melbo_client per connection, routes each decoded message to requests.c or
 * ranks.c by the connection's kind, continues paced sends when a connection drains, and lets go
 * of everything that refers to a connection when it closes.
 */
#include "coord/client.h"

#include <stdlib.h>

static struct melbo_peer *on_open(void *ctx) {
    const struct melbo_clients *env = ctx;
    struct melbo_client *cl = calloc(1, sizeof *cl);
    if (cl == NULL)
        return NULL;
    cl->co = env->co;
    cl->fanout = env->fanout;
    return &cl->conn;
}

/* A new connection may say RankHello (rank 0) or Hello (a user); after that its kind decides.
 * Authentication goes through the server's back-off: an address over
 * limits.auth_failures_per_minute is refused before its token or secret is checked, a refused
 * Hello or RankHello counts as a failure, and an accepted one lifts the pre-authentication
 * limits (coord/server.h). */
static void on_message(struct melbo_peer *c, const Melbo__Envelope *env) {
    struct melbo_client *cl = melbo_client_of(c);
    if (cl->kind == MELBO_CLIENT_NEW) {
        int hello = env->body_case == MELBO__ENVELOPE__BODY_HELLO ||
                    env->body_case == MELBO__ENVELOPE__BODY_RANK_HELLO;
        if (hello && melbo_peer_auth_blocked(c))
            return;
        if (env->body_case == MELBO__ENVELOPE__BODY_RANK_HELLO)
            melbo_coord_rank_hello(cl, env);
        else
            melbo_coord_on_client_message(cl, env);  // hello, or refused
        if (cl->kind != MELBO_CLIENT_NEW)
            melbo_peer_authenticated(c);
        else if (hello)
            melbo_peer_auth_failed(c);
    } else if (cl->kind == MELBO_CLIENT_RANK) {
        melbo_coord_on_rank_message(cl, env);
    } else {
        melbo_coord_on_client_message(cl, env);  // a request, or an error
    }
}

/* Watchers, rank links and exports in progress may stay silent past limits.idle_timeout_s. */
static int on_may_idle(struct melbo_peer *c) {
    struct melbo_client *cl = melbo_client_of(c);
    return cl->watches != NULL || cl->kind == MELBO_CLIENT_RANK || cl->export != NULL ||
           cl->fetch != NULL || cl->up.f != NULL;
}

static void on_read_end(struct melbo_peer *c) {
    struct melbo_client *cl = melbo_client_of(c);
    if (cl->kind == MELBO_CLIENT_RANK)
        melbo_coord_rank_after_read(cl);
}

/* Below the low-water mark again: a lagging watch, then a fetch, then an export, continue. */
static void on_drain(struct melbo_peer *c) {
    struct melbo_client *cl = melbo_client_of(c);
    melbo_watch_drain(cl->watches);
    if (!c->closing && cl->fetch)
        melbo_coord_fetch_pump(cl);
    if (!c->closing && cl->export)
        melbo_coord_export_pump(cl);
}

static void on_closing(struct melbo_peer *c) {
    struct melbo_client *cl = melbo_client_of(c);
    melbo_watch_drop_all(&cl->watches);
    if (cl->kind == MELBO_CLIENT_RANK)
        melbo_coord_rank_gone(cl);
    if (cl->fetch) {
        fclose(cl->fetch);
        cl->fetch = NULL;
    }
    melbo_bank_upload_abort(&cl->up);
    melbo_coord_export_gone(cl);
}

static void on_free(struct melbo_peer *c) {
    free(melbo_client_of(c));
}

const struct melbo_peer_handler melbo_clients_handler = {
    .open = on_open,
    .message = on_message,
    .read_end = on_read_end,
    .drain = on_drain,
    .closing = on_closing,
    .may_idle = on_may_idle,
    .free = on_free,
    .ctx = NULL,  // set by the caller: a struct melbo_clients
};
