/*
 * coord/jobs.c - the job table's state machine, every job's numbered event log, and the watches
 * that stream the log to clients.
 *
 * An event is numbered, committed to SQLite and only then encoded once and pushed to every
 * watcher that is caught up (one shared frame, one reference per write). A watcher that asked
 * for old events, or fell behind, is "lagging": melbo_watch_pump() reads its next events from the
 * database in batches while its connection has less than MELBO_COORD_LOW_WATER bytes queued, and
 * continues from the write callback; it rejoins the live stream when it reaches the end of the
 * log. Either way a watcher sees every event exactly once, in order, and costs bounded memory.
 *
 * States only move forward: QUEUED -> STARTING -> RUNNING <-> GENERATING / CHECKPOINTED, and
 * any of them -> DONE, FAILED or CANCELLED, which are final.
 */
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "coord/coord.h"
#include "coord/db.h"

struct melbo_job *melbo_job_find(struct melbo_coord *co, uint64_t id) {
    for (struct melbo_job *j = co->jobs; j; j = j->next)
        if (j->id == id)
            return j;
    return NULL;
}

static void watch_remove(struct melbo_watch *w) {
    struct melbo_watch **pp;
    for (pp = &w->job->watchers; *pp; pp = &(*pp)->next_in_job)
        if (*pp == w) {
            *pp = w->next_in_job;
            break;
        }
    for (pp = &w->cl->watches; *pp; pp = &(*pp)->next_in_client)
        if (*pp == w) {
            *pp = w->next_in_client;
            break;
        }
    free(w);
}

void melbo_watch_drop_client(struct melbo_client *cl) {
    while (cl->watches)
        watch_remove(cl->watches);
}

/* Sends WatchEnd and forgets w. */
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
    struct melbo_client *cl = w->cl;
    watch_remove(w);
    melbo_client_send(cl, &env);
}

/* The event frames carry envelope id 0; the JobEvent names its job. */
static struct melbo_frame_buf *event_frame(const uint8_t *blob, size_t len) {
    Melbo__JobEvent *ev = melbo__job_event__unpack(NULL, len, blob);
    if (ev == NULL)
        return NULL;
    Melbo__Envelope env = MELBO__ENVELOPE__INIT;
    env.body_case = MELBO__ENVELOPE__BODY_EVENT;
    env.event = ev;
    struct melbo_frame_buf *fb = melbo_frame_buf_encode(&env);
    melbo__job_event__free_unpacked(ev, NULL);
    return fb;
}

struct pump_ctx {
    struct melbo_watch *w;
    int stop;
};

static int pump_one(void *ctx, uint64_t num, const uint8_t *blob, size_t len) {
    struct pump_ctx *pc = ctx;
    struct melbo_frame_buf *fb = event_frame(blob, len);
    if (fb == NULL || num != pc->w->next) {
        melbo_frame_buf_unref(fb);
        pc->stop = 1;
        return 1;
    }
    int r = melbo_client_send_frame(pc->w->cl, fb);
    melbo_frame_buf_unref(fb);
    if (r < 0) {
        pc->stop = 1;
        return 1;
    }
    pc->w->next++;
    return melbo_client_queued(pc->w->cl) >= MELBO_COORD_LOW_WATER;
}

void melbo_watch_pump(struct melbo_watch *w) {
    struct melbo_client *cl = w->cl;
    while (!cl->closing && w->next <= w->job->last_event &&
           melbo_client_queued(cl) < MELBO_COORD_LOW_WATER) {
        struct pump_ctx pc = {w, 0};
        int n = melbo_db_events_read(cl->co->db, w->job->id, w->next, 256, pump_one, &pc);
        if (cl->closing)
            return;  // the watch was dropped with the client
        if (n <= 0 || pc.stop) {
            if (n <= 0 || w->next <= w->job->last_event) {
                melbo_client_error(cl, w->req_id, MELBO__ERROR_CODE__ERROR_INTERNAL, 1,
                                   "cannot read event %llu of job %llu",
                                   (unsigned long long)w->next, (unsigned long long)w->job->id);
                return;
            }
        }
    }
    if (!cl->closing && w->next > w->job->last_event &&
        (!w->follow || melbo_job_state_terminal(w->job->state)))
        watch_end(w);
}

int melbo_watch_add(struct melbo_client *cl, struct melbo_job *job, uint64_t from, int follow,
                    uint64_t req_id) {
    struct melbo_watch *w = calloc(1, sizeof *w);
    if (w == NULL)
        return MELBO_ENOMEM;
    w->cl = cl;
    w->job = job;
    w->next = from < 1 ? 1 : from;
    w->follow = follow;
    w->req_id = req_id;
    w->next_in_job = job->watchers;
    job->watchers = w;
    w->next_in_client = cl->watches;
    cl->watches = w;
    melbo_watch_pump(w);
    return 0;
}

int melbo_job_append(struct melbo_coord *co, struct melbo_job *job, Melbo__JobEvent *ev) {
    return melbo_job_append_ranked(co, job, ev, 0);
}

int melbo_job_append_ranked(struct melbo_coord *co, struct melbo_job *job, Melbo__JobEvent *ev,
                            uint64_t rank_seq) {
    ev->has_job_id = ev->has_number = ev->has_time = 1;
    ev->job_id = job->id;
    ev->number = job->last_event + 1;
    ev->time = melbo_coord_now();
    size_t len = melbo__job_event__get_packed_size(ev);
    uint8_t *blob = malloc(len ? len : 1);
    if (blob == NULL)
        return MELBO_ENOMEM;
    melbo__job_event__pack(ev, blob);
    int r = melbo_db_event_insert(co->db, job->id, ev->number, rank_seq, blob, len);
    if (r != 0) {
        free(blob);
        return r;
    }
    job->last_event = ev->number;
    if (ev->has_state && (int)ev->state != job->state && !melbo_job_state_terminal(job->state)) {
        job->state = (int)ev->state;
        melbo_db_job_update(co->db, job); /* a restart must see the state the log shows */
    }
    if (ev->step) {
        size_t sl = melbo__step_info__get_packed_size(ev->step);
        uint8_t *sb = malloc(sl ? sl : 1);
        if (sb) {
            melbo__step_info__pack(ev->step, sb);
            free(job->last_step);
            job->last_step = sb;
            job->last_step_len = sl;
        }
    }
    /* Push: one frame shared by every caught-up watcher; lagging ones read the log. */
    struct melbo_frame_buf *fb = NULL;
    struct melbo_watch *w = job->watchers, *wn;
    for (; w; w = wn) {
        wn = w->next_in_job;
        if (w->next == ev->number) {
            if (fb == NULL) {
                Melbo__Envelope env = MELBO__ENVELOPE__INIT;
                env.body_case = MELBO__ENVELOPE__BODY_EVENT;
                env.event = ev;
                fb = melbo_frame_buf_encode(&env);
                if (fb == NULL)
                    break;
            }
            if (melbo_client_send_frame(w->cl, fb) == 0) {
                w->next++;
                if (melbo_job_state_terminal(job->state))
                    watch_end(w);
            }
        } else if (melbo_client_queued(w->cl) < MELBO_COORD_LOW_WATER) {
            melbo_watch_pump(w);
        }
    }
    melbo_frame_buf_unref(fb);
    free(blob);
    return 0;
}

int melbo_job_set_state(struct melbo_coord *co, struct melbo_job *job, int state,
                        const char *detail, const char *error) {
    if (melbo_job_state_terminal(job->state))
        return MELBO_ESTATE;
    Melbo__JobEvent ev = MELBO__JOB_EVENT__INIT;
    ev.has_kind = ev.has_state = 1;
    ev.kind = MELBO__JOB_EVENT__KIND__STATE;
    ev.state = state;
    ev.detail = (char *)(detail ? detail : "");
    if (error) {
        ev.error = (char *)error;
        snprintf(job->error, sizeof job->error, "%s", error);
        if (state == MELBO__JOB_STATE__FAILED)
            ev.has_failed_rank = 1, ev.failed_rank = job->failed_rank;
    }
    if (melbo_job_state_terminal(state))
        job->finished = melbo_coord_now();
    if (state == MELBO__JOB_STATE__DONE && job->bank_id[0])
        ev.bank_id = job->bank_id;
    int r = melbo_job_append(co, job, &ev);
    job->state = state;
    melbo_db_job_update(co->db, job);
    melbo_log(MELBO_LOG_INFO, "coord: job %llu %s%s%s", (unsigned long long)job->id,
              melbo_job_state_name(state), error ? ": " : "", error ? error : "");
    if (melbo_job_state_terminal(state))
        melbo_jobs_schedule(co);
    return r;
}

void melbo_jobs_summary(const struct melbo_job *job, Melbo__JobSummary *s) {
    s->has_job_id = s->has_state = s->has_created = s->has_last_event = 1;
    s->job_id = job->id;
    s->user = (char *)job->user;
    s->state = job->state;
    s->model = (char *)job->model;
    s->created = job->created;
    if (job->finished > 0)
        s->has_finished = 1, s->finished = job->finished;
    s->error = (char *)job->error;
    s->bank_id = (char *)job->bank_id;
    s->last_event = job->last_event;
    s->name = (char *)job->name;
    s->has_vectors = s->has_steps = 1;
    s->vectors = job->vectors;
    s->steps = job->steps;
}

void melbo_jobs_schedule(struct melbo_coord *co) {
    int running = 0;
    for (struct melbo_job *j = co->jobs; j; j = j->next)
        if (!melbo_job_state_terminal(j->state) &&
            (j->state != MELBO__JOB_STATE__QUEUED || j->slurm_id[0]))
            running++;
    /* Oldest queued first: co->jobs is newest first, so find the last queued repeatedly. */
    /* Slurm queues jobs itself: submit every job; locally, at most max_running at once */
    while (co->launcher == MELBO_LAUNCHER_SLURM || running < co->max_running) {
        struct melbo_job *pick = NULL;
        for (struct melbo_job *j = co->jobs; j; j = j->next)
            if (j->state == MELBO__JOB_STATE__QUEUED && j->slurm_id[0] == '\0')
                pick = j;
        if (pick == NULL)
            return;
        struct melbo_err err = {0};
        if (melbo_launcher_start(co, pick, &err) != 0) {
            pick->failed_rank = -1;
            melbo_job_set_state(co, pick, MELBO__JOB_STATE__FAILED, "launch failed", err.msg);
            continue;
        }
        running++;
    }
}
