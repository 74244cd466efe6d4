/*
 * coord/jobs.c - the job table, the state machine and every job's numbered event log
 * (coord/jobs.h).
 *
 * melbo_job_append() is the one place where an event becomes part of a job's history: it numbers
 * the event, commits it to SQLite, moves the job's state, keeps the last STEP for `melbo show`,
 * and only then tells the subscribers. A subscriber therefore never sees an event that a restart
 * would forget, and sees every stored event exactly once, in order.
 */
#include "coord/jobs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"
#include "coord/clock.h"  // defines: melbo_coord_now
#include "coord/db.h"     // defines: melbo_db_event_insert, melbo_db_job_update
#include "proto/wire.h"   // defines: melbo_job_state_terminal, melbo_job_state_name

void melbo_jobs_init(struct melbo_jobs *jt, sqlite3 *db) {
    memset(jt, 0, sizeof *jt);
    jt->db = db;
}

void melbo_jobs_free(struct melbo_jobs *jt) {
    for (struct melbo_job *j = jt->list, *n; j; j = n) {
        n = j->next;
        free(j->spec);
        free(j->last_step);
        free(j);
    }
    jt->list = NULL;
}

int melbo_jobs_subscribe(struct melbo_jobs *jt, struct melbo_job_sink sink) {
    if (jt->n_sinks >= MELBO_JOBS_MAX_SINKS)
        return MELBO_ERANGE;
    jt->sinks[jt->n_sinks++] = sink;
    return 0;
}

void melbo_jobs_add(struct melbo_jobs *jt, struct melbo_job *job) {
    job->next = jt->list;
    jt->list = job;
}

struct melbo_job *melbo_job_find(struct melbo_jobs *jt, uint64_t id) {
    for (struct melbo_job *j = jt->list; j; j = j->next)
        if (j->id == id)
            return j;
    return NULL;
}

int melbo_job_append(struct melbo_jobs *jt, struct melbo_job *job, Melbo__JobEvent *ev) {
    return melbo_job_append_ranked(jt, job, ev, 0);
}

/* Keeps the packed StepInfo of ev (a STEP event) as job->last_step; on no memory keeps the old. */
static void keep_last_step(struct melbo_job *job, const Melbo__JobEvent *ev) {
    size_t sl = melbo__step_info__get_packed_size(ev->step);
    uint8_t *sb = malloc(sl ? sl : 1);
    if (sb == NULL)
        return;
    melbo__step_info__pack(ev->step, sb);
    free(job->last_step);
    job->last_step = sb;
    job->last_step_len = sl;
}

int melbo_job_append_ranked(struct melbo_jobs *jt, struct melbo_job *job, Melbo__JobEvent *ev,
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
    int r = melbo_db_event_insert(jt->db, job->id, ev->number, rank_seq, blob, len);
    free(blob);
    if (r != 0) { /* nothing changes: the caller (the rank, a retry) sends it again later */
        snprintf(job->storage_error, sizeof job->storage_error,
                 "the coordinator cannot store this job's events (%s); retrying",
                 melbo_err_name(r));
        return r;
    }
    job->storage_error[0] = '\0';
    job->last_event = ev->number;
    if (ev->has_state && (int)ev->state != job->state && !melbo_job_state_terminal(job->state)) {
        job->state = (int)ev->state;
        melbo_db_job_update(jt->db, job); /* a restart must see the state the log shows */
    }
    if (ev->step)
        keep_last_step(job, ev);
    for (int i = 0; i < jt->n_sinks; i++)
        jt->sinks[i].on_event(jt->sinks[i].ctx, job, ev);
    return 0;
}

int melbo_job_rescue(struct melbo_jobs *jt, struct melbo_job *job, const char *detail) {
    if (job->state != MELBO__JOB_STATE__FAILED || job->bank_id[0] == '\0')
        return MELBO_ESTATE;
    job->state = MELBO__JOB_STATE__RUNNING; /* the one way out of FAILED: its bank turned up */
    job->error[0] = '\0';
    job->failed_rank = 0;
    return melbo_job_set_state(jt, job, MELBO__JOB_STATE__DONE, detail, NULL);
}

int melbo_job_set_state(struct melbo_jobs *jt, struct melbo_job *job, int state,
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
        if (state == MELBO__JOB_STATE__FAILED)
            ev.has_failed_rank = 1, ev.failed_rank = job->failed_rank;
    }
    if (state == MELBO__JOB_STATE__DONE && job->bank_id[0])
        ev.bank_id = job->bank_id;
    /* the job's row is written with the state (melbo_job_append): its error and end first */
    char old_error[sizeof job->error];
    double old_finished = job->finished;
    snprintf(old_error, sizeof old_error, "%s", job->error);
    if (error)
        snprintf(job->error, sizeof job->error, "%s", error);
    if (melbo_job_state_terminal(state))
        job->finished = melbo_coord_now();
    int r = melbo_job_append(jt, job, &ev);
    if (r != 0) {
        snprintf(job->error, sizeof job->error, "%s", old_error);
        job->finished = old_finished;
    }
    if (r != 0) { /* the database refused: the job keeps its state; melbo_jobs_retry tries again */
        if (job->pending_state == 0 || job->pending_state != state) {
            job->pending_state = state;
            snprintf(job->pending_detail, sizeof job->pending_detail, "%s", detail ? detail : "");
            snprintf(job->pending_error, sizeof job->pending_error, "%s", error ? error : "");
            job->pending_backoff = 0.5;
            melbo_log(MELBO_LOG_WARN, "coord: job %llu: cannot store its state %s (%s); retrying "
                      "with back-off", (unsigned long long)job->id, melbo_job_state_name(state),
                      melbo_err_name(r));
        }
        job->pending_retry_at = melbo_coord_now() + job->pending_backoff;
        job->pending_backoff = job->pending_backoff * 2 > 30 ? 30 : job->pending_backoff * 2;
        return r;
    }
    job->pending_state = 0;
    job->state = state;
    melbo_db_job_update(jt->db, job);
    melbo_log(MELBO_LOG_INFO, "coord: job %llu %s%s%s", (unsigned long long)job->id,
              melbo_job_state_name(state), error ? ": " : "", error ? error : "");
    return r;
}

void melbo_jobs_retry(struct melbo_jobs *jt, double now) {
    for (struct melbo_job *j = jt->list; j; j = j->next)
        if (j->pending_state && now >= j->pending_retry_at) {
            char detail[256], error[512];
            snprintf(detail, sizeof detail, "%s", j->pending_detail);
            snprintf(error, sizeof error, "%s", j->pending_error);
            melbo_job_set_state(jt, j, j->pending_state, detail, error[0] ? error : NULL);
        }
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
    s->error = (char *)(job->error[0] || !job->storage_error[0] ? job->error
                                                                 : job->storage_error);
    s->bank_id = (char *)job->bank_id;
    s->last_event = job->last_event;
    s->name = (char *)job->name;
    s->has_vectors = s->has_steps = 1;
    s->vectors = job->vectors;
    s->steps = job->steps;
    if (job->adapter_rank > 0)
        s->has_adapter_rank = 1, s->adapter_rank = job->adapter_rank;
    if (job->command == 2 || job->command == 3) /* known once read off the spec (genjob.h) */
        s->command = job->command == 2 ? "gen" : "warm";
}
