/*
 * coord/watch.c - the watch fan-out (coord/watch.h): the job table's event subscriber that
 * pushes each stored event to the clients watching its job, and the paced replay of old events
 * from the database for watchers that lag.
 *
 * Removal is deferred: every entry point (a stored event, a drain, a new watch, a closing
 * connection) holds the fan-out's guard (f->pushing) while it runs; a watch removed meanwhile is
 * only marked dead and taken off its connection's list, and the outermost guard frees the dead
 * ones. So a send that fails and closes a connection (which drops all of that connection's
 * watches) never frees a watch that a loop up the stack still points to.
 */
#include "coord/watch.h"

#include <stdlib.h>
#include <string.h>

#include "coord/db.h"    // defines: melbo_db_events_read
#include "proto/wire.h"  // defines: melbo_job_state_terminal

/* The watchers of one job. */
struct melbo_watch_topic {
    uint64_t job_id;
    struct melbo_watch *watchers;    // including dead ones until the guard ends
    struct melbo_watch_topic *next;
};

/* ---------------------------------------------------------------------------------------------
 * Topics, the guard and removal.
 */

static struct melbo_watch_topic *topic_find(struct melbo_fanout *f, uint64_t job_id) {
    for (struct melbo_watch_topic *t = f->topics; t; t = t->next)
        if (t->job_id == job_id)
            return t;
    return NULL;
}

static void guard_begin(struct melbo_fanout *f) {
    f->pushing++;
}

/* Ends one guard; the outermost frees dead watches and topics left without watchers. */
static void guard_end(struct melbo_fanout *f) {
    if (--f->pushing > 0 || f->n_dead == 0)
        return;
    f->n_dead = 0;
    for (struct melbo_watch_topic **tp = &f->topics; *tp;) {
        struct melbo_watch_topic *t = *tp;
        for (struct melbo_watch **pp = &t->watchers; *pp;) {
            struct melbo_watch *w = *pp;
            if (w->dead) {
                *pp = w->next_in_topic;
                free(w);
            } else {
                pp = &w->next_in_topic;
            }
        }
        if (t->watchers == NULL) {
            *tp = t->next;
            free(t);
        } else {
            tp = &t->next;
        }
    }
}

/* Takes w off its connection's list and marks it dead (freed by the outermost guard_end). The
 * caller holds the guard. */
static void watch_remove(struct melbo_watch *w) {
    if (w->dead)
        return;
    for (struct melbo_watch **pp = w->conn_head; *pp; pp = &(*pp)->next_in_conn)
        if (*pp == w) {
            *pp = w->next_in_conn;
            break;
        }
    w->dead = 1;
    w->f->n_dead++;
}

/* ---------------------------------------------------------------------------------------------
 * Sending.
 */

/* Sends WatchEnd and forgets w. The caller holds the guard. */
static void watch_end(struct melbo_watch *w) {
    Melbo__WatchEnd we = MELBO__WATCH_END__INIT;
    we.has_job_id = we.has_last_event = 1;
    we.job_id = w->job->id;
    we.last_event = w->next - 1;
    Melbo__Envelope env = MELBO__ENVELOPE__INIT;
    env.has_id = 1;
    env.id = w->req_id;
    env.body_case = MELBO__ENVELOPE__BODY_WATCH_END;
    env.watch_end = &we;
    struct melbo_peer *c = w->conn;
    watch_remove(w);
    melbo_peer_send(c, &env);
}

/* A stored event (packed JobEvent) as a frame: Envelope{event = blob} written around the stored
 * bytes (field 23, length-delimited; envelope id 0: the JobEvent names its job), so a replay
 * costs one copy per watcher, not a decode and an encode. Returns a frame with one reference,
 * or NULL. */
static struct melbo_frame_buf *event_frame(const uint8_t *blob, size_t len) {
    uint8_t hdr[20];
    size_t h = 0;
    uint64_t vals[2] = {(uint64_t)MELBO__ENVELOPE__BODY_EVENT << 3 | 2, len};  // key, length
    for (int i = 0; i < 2; i++)
        for (uint64_t v = vals[i];;) {  // varints
            hdr[h++] = (uint8_t)((v & 0x7f) | (v >> 7 ? 0x80 : 0));
            if ((v >>= 7) == 0)
                break;
        }
    size_t n = h + len;
    if (n > MELBO_FRAME_MAX)
        return NULL;
    struct melbo_frame_buf *fb = malloc(sizeof *fb + MELBO_FRAME_HEADER + n);
    if (fb == NULL)
        return NULL;
    fb->refs = 1;
    fb->len = MELBO_FRAME_HEADER + n;
    melbo_frame_put_header(fb->data, (uint32_t)n);
    memcpy(fb->data + MELBO_FRAME_HEADER, hdr, h);
    memcpy(fb->data + MELBO_FRAME_HEADER + h, blob, len);
    return fb;
}

struct pump_ctx {
    struct melbo_watch *w;
    int stop;                        // an event could not be read or sent
};

/* Whether this loop turn's replay budget has room (a new turn starts a new budget). */
static int budget_left(struct melbo_fanout *f, uv_loop_t *loop) {
    uint64_t now = uv_now(loop);
    if (now != f->turn) {
        f->turn = now;
        f->turn_bytes = 0;
    }
    return f->turn_bytes < MELBO_WATCH_TURN_BYTES;
}

static void defer(struct melbo_watch *w);

/* melbo_db_events_read's callback: sends one stored event; 1 stops the batch. */
static int pump_one(void *ctx, uint64_t num, const uint8_t *blob, size_t len) {
    struct pump_ctx *pc = ctx;
    struct melbo_frame_buf *fb = event_frame(blob, len);
    if (fb == NULL || num != pc->w->next) {
        melbo_frame_buf_unref(fb);
        pc->stop = 1;
        return 1;
    }
    int r = melbo_peer_send_frame(pc->w->conn, fb);
    melbo_frame_buf_unref(fb);
    if (r < 0) {
        pc->stop = 1;
        return 1;
    }
    pc->w->next++;
    pc->w->f->turn_bytes += len;
    return melbo_peer_queued(pc->w->conn) >= MELBO_WATCH_PACE ||
           pc->w->f->turn_bytes >= MELBO_WATCH_TURN_BYTES;
}

/*
 * Sends w's stored events from w->next in batches while its connection is below the low-water
 * mark; ends the watch when it has seen everything it asked for. A database that cannot give an
 * event it should have closes the connection with ERROR_INTERNAL. The caller holds the guard.
 */
static void pump(struct melbo_watch *w) {
    struct melbo_peer *c = w->conn;
    w->deferred = 0;
    while (!w->dead && !c->closing && w->next <= w->job->last_event &&
           melbo_peer_queued(c) < MELBO_WATCH_PACE) {
        if (!budget_left(w->f, c->tcp.loop)) {
            defer(w);  // the next loop turn continues it
            return;
        }
        struct pump_ctx pc = {w, 0};
        int n = melbo_db_events_read(w->f->jobs->db, w->job->id, w->next, 256, pump_one, &pc);
        if (c->closing || w->dead)
            return;  // the watch was dropped with the connection
        if ((n <= 0 || pc.stop) && (n <= 0 || w->next <= w->job->last_event)) {
            melbo_peer_error(c, w->req_id, MELBO__ERROR_CODE__ERROR_INTERNAL, 1,
                             "cannot read event %llu of job %llu", (unsigned long long)w->next,
                             (unsigned long long)w->job->id);
            return;
        }
    }
    if (!w->dead && !c->closing && w->next > w->job->last_event &&
        (!w->follow || melbo_job_state_terminal(w->job->state)))
        watch_end(w);
}

static void idle_closed(uv_handle_t *h) {
    free(h);
}

/* A new loop turn: the deferred replays continue, in list order, while the budget lasts; with
 * none left the idle handle is closed. */
static void on_idle(uv_idle_t *h) {
    struct melbo_fanout *f = h->data;
    int waiting = 0;
    guard_begin(f);
    for (struct melbo_watch_topic *t = f->topics; t; t = t->next)
        for (struct melbo_watch *w = t->watchers; w; w = w->next_in_topic) {
            if (!w->deferred || w->dead || w->conn->closing) {
                w->deferred = 0;
                continue;
            }
            if (budget_left(f, h->loop))
                pump(w);
            waiting |= w->deferred;
        }
    guard_end(f);
    if (!waiting) {
        uv_close((uv_handle_t *)h, idle_closed);
        f->idle = NULL;
    }
}

/* w's replay waits for the next loop turn (the idle handle is started if needed). */
static void defer(struct melbo_watch *w) {
    struct melbo_fanout *f = w->f;
    w->deferred = 1;
    if (f->idle)
        return;
    f->idle = malloc(sizeof *f->idle);
    if (f->idle == NULL)
        return;  // it continues at its connection's next drain
    uv_idle_init(w->conn->tcp.loop, f->idle);
    f->idle->data = f;
    uv_idle_start(f->idle, on_idle);
}

/* The job table's subscriber: one frame for every caught-up watcher; lagging ones read the log. */
static void on_event(void *ctx, struct melbo_job *job, const Melbo__JobEvent *ev) {
    struct melbo_fanout *f = ctx;
    struct melbo_watch_topic *t = topic_find(f, job->id);
    struct melbo_frame_buf *fb = NULL;
    if (t == NULL)
        return;
    guard_begin(f);
    for (struct melbo_watch *w = t->watchers; w; w = w->next_in_topic) {
        if (w->dead)
            continue;
        if (w->next == ev->number) {
            if (fb == NULL) {
                Melbo__Envelope env = MELBO__ENVELOPE__INIT;
                env.body_case = MELBO__ENVELOPE__BODY_EVENT;
                env.event = (Melbo__JobEvent *)ev;  // built; only read by the encoder
                fb = melbo_frame_buf_encode(&env);
                if (fb == NULL)
                    break;
            }
            if (melbo_peer_send_frame(w->conn, fb) == 0) {
                w->next++;
                if (melbo_job_state_terminal(job->state))
                    watch_end(w);
            }
        } else if (melbo_peer_queued(w->conn) < MELBO_WATCH_PACE) {
            pump(w);
        }
    }
    melbo_frame_buf_unref(fb);
    guard_end(f);
}

/* ---------------------------------------------------------------------------------------------
 * The API.
 */

void melbo_fanout_keepalive(struct melbo_fanout *f, double now) {
    Melbo__Keepalive k = MELBO__KEEPALIVE__INIT;
    k.has_time = 1;
    k.time = now;
    Melbo__Envelope env = MELBO__ENVELOPE__INIT;
    env.body_case = MELBO__ENVELOPE__BODY_KEEPALIVE;
    env.keepalive = &k;
    guard_begin(f);
    for (struct melbo_watch_topic *t = f->topics; t; t = t->next)
        for (struct melbo_watch *w = t->watchers; w; w = w->next_in_topic)
            if (!w->dead && *w->conn_head == w) /* the first watch of its connection: once */
                melbo_peer_send(w->conn, &env);
    guard_end(f);
}

int melbo_fanout_init(struct melbo_fanout *f, struct melbo_jobs *jobs) {
    f->jobs = jobs;
    f->topics = NULL;
    f->pushing = 0;
    f->n_dead = 0;
    f->turn = 0;
    f->turn_bytes = 0;
    f->idle = NULL;
    struct melbo_job_sink sink = {on_event, f};
    return melbo_jobs_subscribe(jobs, sink);
}

void melbo_fanout_free(struct melbo_fanout *f) {
    for (struct melbo_watch_topic *t = f->topics, *tn; t; t = tn) {
        tn = t->next;
        for (struct melbo_watch *w = t->watchers, *wn; w; w = wn) {
            wn = w->next_in_topic;
            free(w);
        }
        free(t);
    }
    f->topics = NULL;
}

int melbo_watch_add(struct melbo_fanout *f, struct melbo_peer *conn,
                    struct melbo_watch **conn_head, struct melbo_job *job, uint64_t from,
                    int follow, uint64_t req_id) {
    struct melbo_watch *w = calloc(1, sizeof *w);
    struct melbo_watch_topic *t = topic_find(f, job->id);
    if (w == NULL)
        goto fail_watch;
    if (t == NULL) {
        t = calloc(1, sizeof *t);
        if (t == NULL)
            goto fail_topic;
        t->job_id = job->id;
        t->next = f->topics;
        f->topics = t;
    }
    w->f = f;
    w->conn = conn;
    w->conn_head = conn_head;
    w->job = job;
    w->next = from < 1 ? 1 : from;
    w->follow = follow;
    w->req_id = req_id;
    w->next_in_topic = t->watchers;
    t->watchers = w;
    w->next_in_conn = *conn_head;
    *conn_head = w;
    guard_begin(f);
    pump(w);
    guard_end(f);
    return 0;
fail_topic:
    free(w);
fail_watch:
    return MELBO_ENOMEM;
}

void melbo_watch_drain(struct melbo_watch *conn_head) {
    for (struct melbo_watch *w = conn_head; w; w = w->next_in_conn) {
        if (w->next <= w->job->last_event) {
            struct melbo_fanout *f = w->f;
            guard_begin(f);
            pump(w);  // may drop watches; the next drain continues with the next one
            guard_end(f);
            return;
        }
    }
}

void melbo_watch_drop_all(struct melbo_watch **conn_head) {
    if (*conn_head == NULL)
        return;
    struct melbo_fanout *f = (*conn_head)->f;
    guard_begin(f);
    while (*conn_head)
        watch_remove(*conn_head);
    guard_end(f);
}
