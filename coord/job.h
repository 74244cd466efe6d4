/*
 * coord/job.h - the job record: what the coordinator knows about one job, as stored in the jobs
 * table of STATE/melbo.db (coord/db.h) and held in memory for the server's life.
 *
 * This header declares data only. Who writes which fields:
 *   - the state machine (coord/jobs.h): state, finished, error, last_event, rank_seq, last_step;
 *   - the request handlers (coord/client.h): everything else at submit, bank_id at upload,
 *     rank_conn while rank 0 is connected;
 *   - the launchers (coord/launcher.h): the "launcher bookkeeping" block.
 * The state machine never reads the launcher block or rank_conn; nothing here refers to a
 * connection or a socket.
 *
 * Layer: a leaf (proto/ and libuv types only); included by db.h, jobs.h and everything above.
 */
#ifndef MELBO_COORD_JOB_H
#define MELBO_COORD_JOB_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct melbo_job {
    uint64_t id;                     // the jobs table's row id (from 1)
    char user[64];                   // who submitted it (and may cancel it)
    int state;                       // MELBO__JOB_STATE__*; set only by coord/jobs.c
    uint8_t *spec;                   // packed JobSpec, owned
    size_t spec_len;
    char secret[65];                 // rank 0 authenticates with it (64 hex digits)
    char model[512];
    char name[128];
    char request_id[72];             // the client's SubmitRequest.request_id, or ""
    int visibility;                  // --private read off the spec: 0 not yet, 1 public, 2 private
    int vectors, steps, n_ranks;     // resolved at submit (coord/jobspec.h)
    int threads;                     // CPU threads of all its ranks (limits.threads_per_user)
    int command;                     // read off the spec once: 0 not yet, 1 train, 2 gen, 3 warm
    /* warm jobs (coord/warm.h), not persisted */
    uint64_t warm_host;              // a gen job: the warm job serving it, or 0
    uint64_t warm_serving;           // a warm job: the gen job it serves now, or 0
    double warm_idle_since;          // a warm job: idle since (melbo_coord_now), 0 unknown
    int warm_released;               // a warm job: WarmRelease sent
    /* storage failures (issue 22): a state change the database refused, retried with back-off
     * by melbo_jobs_retry (the job keeps its stored state meanwhile), and what users see */
    int pending_state;               // 0: none
    char pending_detail[256], pending_error[512];
    double pending_retry_at, pending_backoff;
    char storage_error[256];         // "" when the last write of this job's events succeeded
    int adapter_rank;                // adapters: their rank r (vectors counts them); 0: vectors
    double created, finished;        // melbo_coord_now(); finished is 0 until a final state
    char error[1024];                // the FAILED / CANCELLED message, or ""
    int failed_rank;                 // the rank that failed, -1 for the coordinator
    char bank_id[72];                // the stored bank, or ""
    uint64_t last_event;             // events 1..last_event are stored
    uint64_t rank_seq;               // last rank event stored
    uint8_t *last_step;              // packed StepInfo of the last STEP event, or NULL; owned
    size_t last_step_len;
    uint64_t rank_conn;              // id of rank 0's connection (server.h), 0 while none
    /* ---- launcher bookkeeping (coord/launcher.h; pid, cancel_requested, slurm_id and
     * resubmits are persisted) ---- */
    uv_process_t *proc;              // local: while mpirun runs as our child, else NULL
    int pid;                         // local: mpirun's pid = its process group, 0 when none
    int adopted;                     // local: running ranks found at restart (not our child)
    int cancel_requested;
    uv_timer_t *kill_timer;          // local: SIGKILL after the cancel grace period, or NULL
    char slurm_id[32];               // Slurm's job id; "submitting" while sbatch runs; "" local
    int resubmits;                   // resubmissions after time limits (or local checkpoints)
    char reason[128];                // Slurm's last pending reason reported
    double ended_at;                 // when the job was first seen gone from Slurm (0: not yet)
    struct melbo_job *next;          // the job table's list (coord/jobs.h), newest first
};

#endif
