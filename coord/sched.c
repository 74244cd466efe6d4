/*
 * coord/sched.c - the scheduler (coord/sched.h): a job table subscriber that marks a pass as
 * pending, and the pass itself, which hands queued jobs to the launcher in use.
 */
#include "coord/sched.h"

#include <stddef.h>

#include "coord/genjob.h"    // defines: melbo_genjob_is
#include "coord/launcher.h"  // defines: struct melbo_launcher
#include "coord/warm.h"      // defines: melbo_warm_dispatch
#include "proto/wire.h"      // defines: melbo_job_state_terminal

/* 1 when some launcher of co->launchers holds j. */
static int held(const struct melbo_coord *co, const struct melbo_job *j) {
    for (int i = 0; i < co->n_launchers; i++)
        if (co->launchers[i]->holds(j))
            return 1;
    return 0;
}

/*
 * 1 when job takes a slot: not final and past QUEUED, or queued but already handed to a
 * launcher (a Slurm job pending in Slurm's queue).
 */
static int takes_slot(const struct melbo_coord *co, const struct melbo_job *j) {
    if (melbo_job_state_terminal(j->state) || j->warm_host) /* a warm job's guest: no slot */
        return 0;
    return j->state != MELBO__JOB_STATE__QUEUED || held(co, j);
}

/* The oldest QUEUED job that no launcher holds yet, or NULL. co->jobs.list is newest first. */
static struct melbo_job *oldest_waiting(struct melbo_coord *co) {
    struct melbo_job *pick = NULL;
    for (struct melbo_job *j = co->jobs.list; j; j = j->next)
        if (j->state == MELBO__JOB_STATE__QUEUED && !held(co, j))
            pick = j;
    return pick;
}

/*
 * One pass: starts waiting jobs while a slot is free (always, for a launcher that queues jobs
 * itself). A job whose launch fails becomes FAILED and frees its slot for the next one.
 */
static void run_pass(struct melbo_coord *co) {
    const struct melbo_launcher *l = co->launcher;
    int running = 0;
    /* gen jobs a warm job of their model can serve go there first (oldest first) */
    for (int more = 1; more;) {
        more = 0;
        struct melbo_job *pick = NULL;
        for (struct melbo_job *j = co->jobs.list; j; j = j->next)
            if (j->state == MELBO__JOB_STATE__QUEUED && !held(co, j) && melbo_genjob_is(j))
                pick = j;
        if (pick && melbo_warm_dispatch(co, pick))
            more = 1;
    }
    for (struct melbo_job *j = co->jobs.list; j; j = j->next)
        running += takes_slot(co, j);
    while (l->queues_jobs || running < co->max_running) {
        struct melbo_job *pick = oldest_waiting(co);
        if (pick == NULL)
            return;
        struct melbo_err err = {0};
        if (l->start(co, pick, &err) != 0) {
            pick->failed_rank = -1;
            melbo_job_set_state(&co->jobs, pick, MELBO__JOB_STATE__FAILED, "launch failed",
                                err.msg);
            continue;
        }
        running++;
    }
}

static void on_idle(uv_idle_t *h) {
    struct melbo_sched *s = h->data;
    uv_idle_stop(h);  // first: a pass's own state changes may ask for the next pass
    run_pass(s->co);
}

/* The job table's subscriber: a STATE event may have queued a job or freed a slot. */
static void on_event(void *ctx, struct melbo_job *job, const Melbo__JobEvent *ev) {
    (void)job;
    if (ev->kind == MELBO__JOB_EVENT__KIND__STATE)
        melbo_sched_request(ctx);
}

int melbo_sched_init(struct melbo_sched *s, struct melbo_coord *co) {
    s->co = co;
    int r = uv_idle_init(co->loop, &s->idle);
    if (r != 0)
        return r;
    s->idle.data = s;
    s->open = 1;
    struct melbo_job_sink sink = {on_event, s};
    r = melbo_jobs_subscribe(&co->jobs, sink);
    if (r != 0)
        melbo_sched_close(s);
    return r;
}

void melbo_sched_request(struct melbo_sched *s) {
    if (s->open)
        uv_idle_start(&s->idle, on_idle);  // already active: nothing changes
}

void melbo_sched_close(struct melbo_sched *s) {
    if (!s->open)
        return;
    s->open = 0;
    uv_close((uv_handle_t *)&s->idle, NULL);  // embedded: nothing to free
}
