/*
 * coord/jobs.h - the job table, the job state machine and every job's numbered event log.
 *
 * An event is numbered, committed to SQLite (coord/db.h) and only then handed to each
 * subscriber (struct melbo_job_sink), in the order the subscribers were added. The state machine
 * knows nothing of who listens: the watch fan-out (coord/watch.h) subscribes to push frames to
 * watching clients, the scheduler (coord/sched.h) to start queued jobs after a state change.
 *
 * States only move forward: QUEUED -> STARTING -> RUNNING <-> GENERATING / CHECKPOINTED, and any
 * of them -> DONE, FAILED or CANCELLED, which are final.
 *
 * Re-entrancy: a subscriber is called from inside melbo_job_append() and must not append events
 * or change a job's state there (the scheduler, for one, only marks a pass as pending and runs it
 * from its own loop callback). Nothing here calls a launcher or writes to a socket.
 *
 * Layer: above job.h (and db.h in jobs.c); included by watch.h, coord.h and everything above.
 * One loop thread; nothing is locked.
 */
#ifndef MELBO_COORD_JOBS_H
#define MELBO_COORD_JOBS_H

#include <sqlite3.h>
#include <stdint.h>

#include "coord/job.h"  // defines: struct melbo_job
#include "proto/melbo.pb-c.h"

#define MELBO_JOBS_MAX_SINKS 4

/*
 * A subscriber to every job's events. on_event gets the job (its state already updated) and the
 * event as stored (numbered, timed; built, valid only during the call). ctx is the subscriber's.
 */
struct melbo_job_sink {
    void (*on_event)(void *ctx, struct melbo_job *job, const Melbo__JobEvent *ev);
    void *ctx;
};

/* The job table. Owns every job on list; borrows db. */
struct melbo_jobs {
    sqlite3 *db;                                    // where jobs and events are stored
    struct melbo_job *list;                         // newest first
    struct melbo_job_sink sinks[MELBO_JOBS_MAX_SINKS];
    int n_sinks;
};

/* Starts an empty table over db (borrowed; it must outlive the table). */
void melbo_jobs_init(struct melbo_jobs *jt, sqlite3 *db);

/* Frees every job on the table's list (their spec and last_step too). Subscribers are kept. */
void melbo_jobs_free(struct melbo_jobs *jt);

/*
 * Adds sink to the subscribers; every event appended from now on reaches it. Returns 0, or
 * MELBO_ERANGE when MELBO_JOBS_MAX_SINKS are already there.
 */
int melbo_jobs_subscribe(struct melbo_jobs *jt, struct melbo_job_sink sink);

/* Puts job (malloc'ed, already inserted in the database) at the head of the table, which then
 * owns it. */
void melbo_jobs_add(struct melbo_jobs *jt, struct melbo_job *job);

/* The job with this id, or NULL. The pointer stays valid for the table's life. */
struct melbo_job *melbo_job_find(struct melbo_jobs *jt, uint64_t id);

/*
 * Appends an event to job's log: its number, job id and time are set here, the job's state
 * follows ev->state (which must be set) unless the job is already final, the event is stored
 * and then handed to every subscriber. ev is built by the caller (fields written here) and not
 * kept. Returns 0, or a negative code when the database failed (no subscriber hears of it).
 */
int melbo_job_append(struct melbo_jobs *jt, struct melbo_job *job, Melbo__JobEvent *ev);

/* The same for an event from rank 0 numbered rank_seq, stored with it so that a restarted
 * coordinator knows which rank events it already has. */
int melbo_job_append_ranked(struct melbo_jobs *jt, struct melbo_job *job, Melbo__JobEvent *ev,
                            uint64_t rank_seq);

/* A FAILED job whose bank arrived after all (adopted from its directory, issue 22): DONE with
 * detail; its bank_id must be set. The only move out of a final state. Returns as
 * melbo_job_set_state, MELBO_ESTATE for any other job. */
int melbo_job_rescue(struct melbo_jobs *jt, struct melbo_job *job, const char *detail);

/*
 * Moves job to state with a STATE event (detail and error may be NULL; error is recorded as
 * job->error, and a FAILED event carries job->failed_rank, a DONE one job->bank_id). Records the
 * end time of a final state and writes the job row. Returns MELBO_ESTATE for a job already in a
 * final state (nothing appended), else what melbo_job_append returned (the state is set even
 * when the event could not be stored). Scheduling does not run here: the scheduler hears of the
 * event as a subscriber and runs later.
 */
int melbo_job_set_state(struct melbo_jobs *jt, struct melbo_job *job, int state,
                        const char *detail, const char *error);

/* Retries the state changes the database refused (job->pending_state) whose back-off has
 * passed (main.c's tick). */
void melbo_jobs_retry(struct melbo_jobs *jt, double now);

/* Fills s (initialised by the caller) from job; its strings are borrowed from job. */
void melbo_jobs_summary(const struct melbo_job *job, Melbo__JobSummary *s);

#endif
