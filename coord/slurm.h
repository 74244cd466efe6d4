/*
 * coord/slurm.h - the Slurm launcher (DESIGN §2): jobs go to a real Slurm cluster as the batch
 * script slurm/train.sbatch.in rendered from their JobSpec and the coordinator's site defaults.
 *
 *   submit  sbatch --parsable (uv_spawn, never blocking the loop); the Slurm job id is recorded
 *   track   squeue every 2 s: PENDING keeps the job QUEUED with Slurm's reason in its events,
 *           RUNNING moves it to STARTING (rank 0's link then reports RUNNING, GENERATING);
 *           when the job has left the queue its exit record (written by the batch script in the
 *           job's directory) decides: COMPLETED (DONE once the bank is stored), CHECKPOINTED (a
 *           time limit: resubmitted with --resume, up to resubmit_max times), FAILED (with the
 *           ranks' last output), CANCELLED
 *   cancel  scancel
 * After a coordinator restart the jobs that still have a Slurm id are tracked again.
 *
 * melbo_launcher_slurm is this launcher behind the launcher seam (coord/launcher.h); the
 * functions below are its start, cancel and tick. It holds a job while the job has a Slurm id
 * (or "submitting"), and queues jobs itself (the scheduler hands it every queued job).
 *
 * Layer: this header is a leaf (common/ only; struct melbo_coord and struct melbo_job are only
 * named), so coord.h can embed the site defaults; slurm.c sits beside launcher.c, above
 * coord.h, and includes launcher.h for the shared job-directory helpers.
 */
#ifndef MELBO_COORD_SLURM_H
#define MELBO_COORD_SLURM_H

#include <limits.h>

#include "common/err.h"

struct melbo_coord;
struct melbo_job;
struct melbo_launcher;

/* Site defaults, from `serve --launcher slurm` options or STATE/coord.conf (slurm.KEY=VALUE). */
struct melbo_slurm_conf {
    char template_path[PATH_MAX];  // slurm/train.sbatch.in
    char partition[128], account[128], qos[128], constraint[256];
    char time[32];                 // default time limit (01:00:00)
    int signal_lead;               // seconds before the limit USR1 comes (120; < limit / 2)
    int cpus_per_task;             // default cores per rank (1)
    int resubmit_max;              // resubmissions after time limits (5)
    char sbatch[PATH_MAX], squeue[PATH_MAX], scancel[PATH_MAX];
};

/* The site defaults, coord.conf and Slurm time strings (defined in coord/slurm_script.c). */
void melbo_slurm_conf_defaults(struct melbo_slurm_conf *c);
/* Reads slurm.* keys from the coordinator's coord.conf text (unknown keys are ignored). */
void melbo_slurm_conf_parse(struct melbo_slurm_conf *c, const char *text);

/* Seconds in a Slurm time string (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS); -1 if bad. */
long melbo_slurm_time_seconds(const char *t);

/* The Slurm launcher (coord/slurm.c), for co->launcher / co->launchers. */
extern const struct melbo_launcher melbo_launcher_slurm;

/* Renders the batch script for job into its directory and submits it (sbatch runs in the
 * background; its answer records the Slurm id or fails the job). Returns 0 or a negative code
 * with err set. */
int melbo_slurm_start(struct melbo_coord *co, struct melbo_job *job, struct melbo_err *err);
/* scancel for a job in Slurm; a job not yet there is cancelled when sbatch answers, one never
 * submitted is CANCELLED at once. Returns 0 or a negative code. */
int melbo_slurm_cancel(struct melbo_coord *co, struct melbo_job *job);
/* Polls squeue and settles finished jobs (called every second; polls every 2). */
void melbo_slurm_tick(struct melbo_coord *co);

#endif
