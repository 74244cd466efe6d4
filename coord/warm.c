/* coord/warm.c - warm jobs: a loaded model serving gen jobs (coord/warm.h). */
#include "coord/warm.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "common/log.h"
#include "coord/client.h"   // defines: melbo_client_of, melbo_client_send
#include "coord/clock.h"    // defines: melbo_coord_now
#include "coord/genjob.h"   // defines: melbo_genjob_is, melbo_genjob_is_warm, melbo_genjob_argv
#include "coord/launcher.h" // defines: melbo_job_dir
#include "coord/server.h"   // defines: melbo_server_find

/* The warm job's rank link, when it is connected. */
static struct melbo_client *link_of(struct melbo_coord *co, const struct melbo_job *w) {
    struct melbo_peer *p = w->rank_conn && co->server ? melbo_server_find(co->server, w->rank_conn)
                                                      : NULL;
    return p ? melbo_client_of(p) : NULL;
}

/* 1 when w is a warm job ready for work: loaded (RUNNING), connected, idle, not released. */
static int ready(struct melbo_coord *co, struct melbo_job *w) {
    return melbo_genjob_is_warm(w) && w->state == MELBO__JOB_STATE__RUNNING &&
           w->warm_serving == 0 && !w->warm_released && link_of(co, w) != NULL;
}

int melbo_warm_dispatch(struct melbo_coord *co, struct melbo_job *gen) {
    struct melbo_job *w = NULL; /* the same model and layout (--tp) */
    for (struct melbo_job *j = co->jobs.list; j && w == NULL; j = j->next)
        if (ready(co, j) && !strcmp(j->model, gen->model) && j->n_ranks == gen->n_ranks)
            w = j;
    if (w == NULL)
        return 0;
    char dir[PATH_MAX];
    struct melbo_argv words = {0};
    struct melbo_err err = {0};
    Melbo__JobSpec *spec = melbo__job_spec__unpack(NULL, gen->spec_len, gen->spec);
    int ret = spec == NULL ? melbo_err_set(&err, MELBO_EFORMAT, "the stored job spec is unreadable")
                           : melbo_job_dir(co, gen->id, dir, sizeof dir);
    if (ret == 0 && mkdir(dir, 0700) != 0 && errno != EEXIST)
        ret = melbo_err_set(&err, MELBO_EIO, "cannot create %s", dir);
    if (ret == 0)
        ret = melbo_genjob_argv(co, gen, spec, dir, &words, &err);
    if (spec)
        melbo__job_spec__free_unpacked(spec, NULL);
    if (ret != 0) { /* the gen job cannot run anywhere: its own failure, not the warm job's */
        gen->failed_rank = -1;
        melbo_job_set_state(&co->jobs, gen, MELBO__JOB_STATE__FAILED, "launch failed", err.msg);
        melbo_argv_free(&words);
        return 1;
    }
    Melbo__WarmWork work = MELBO__WARM_WORK__INIT;
    work.has_job_id = 1;
    work.job_id = gen->id;
    work.secret = gen->secret;
    work.n_args = (size_t)words.n;
    work.args = words.v;
    Melbo__Envelope env = MELBO__ENVELOPE__INIT;
    env.body_case = MELBO__ENVELOPE__BODY_WARM_WORK;
    env.warm_work = &work;
    melbo_client_send(link_of(co, w), &env);
    melbo_argv_free(&words);
    w->warm_serving = gen->id;
    gen->warm_host = w->id;
    char detail[96];
    snprintf(detail, sizeof detail, "on warm job %llu", (unsigned long long)w->id);
    melbo_log(MELBO_LOG_INFO, "coord: job %llu: handed to warm job %llu",
              (unsigned long long)gen->id, (unsigned long long)w->id);
    melbo_job_set_state(&co->jobs, gen, MELBO__JOB_STATE__STARTING, detail, NULL);
    return 1;
}

void melbo_warm_tick(struct melbo_coord *co) {
    double now = melbo_coord_now(), idle_s = (double)co->limits.warm_idle_s;
    for (struct melbo_job *w = co->jobs.list; w; w = w->next) {
        if (!ready(co, w))
            continue;
        if (w->warm_idle_since <= 0) /* loaded just now, or found after a restart */
            w->warm_idle_since = now;
        if (now - w->warm_idle_since < idle_s)
            continue;
        Melbo__WarmRelease rel = MELBO__WARM_RELEASE__INIT;
        char reason[64];
        snprintf(reason, sizeof reason, "idle for %.0f s (limits.warm_idle_s)",
                 now - w->warm_idle_since);
        rel.reason = reason;
        Melbo__Envelope env = MELBO__ENVELOPE__INIT;
        env.body_case = MELBO__ENVELOPE__BODY_WARM_RELEASE;
        env.warm_release = &rel;
        melbo_client_send(link_of(co, w), &env);
        w->warm_released = 1;
        melbo_log(MELBO_LOG_INFO, "coord: warm job %llu released: %s", (unsigned long long)w->id,
                  reason);
    }
}

/* The job table's subscriber: frees a warm job when the gen job it served ends; fails the gen
 * job a warm job served when the warm job ends; asks for a pass when a warm job becomes ready. */
static void on_event(void *ctx, struct melbo_job *job, const Melbo__JobEvent *ev) {
    struct melbo_coord *co = ctx;
    if (ev->kind != MELBO__JOB_EVENT__KIND__STATE || !melbo_job_state_terminal(job->state))
        return;
    if (job->warm_host) {
        struct melbo_job *w = melbo_job_find(&co->jobs, job->warm_host);
        if (w && w->warm_serving == job->id) {
            w->warm_serving = 0;
            w->warm_idle_since = melbo_coord_now();
        }
        job->warm_host = 0;
    }
    if (job->warm_serving) {
        struct melbo_job *g = melbo_job_find(&co->jobs, job->warm_serving);
        job->warm_serving = 0;
        if (g && !melbo_job_state_terminal(g->state)) {
            char msg[96];
            snprintf(msg, sizeof msg, "its warm job %llu ended (%s)", (unsigned long long)job->id,
                     melbo_job_state_name(job->state));
            g->failed_rank = -1;
            melbo_job_set_state(&co->jobs, g, MELBO__JOB_STATE__FAILED, "warm job ended", msg);
        }
    }
}

int melbo_warm_init(struct melbo_coord *co) {
    struct melbo_job_sink sink = {on_event, co};
    return melbo_jobs_subscribe(&co->jobs, sink);
}
