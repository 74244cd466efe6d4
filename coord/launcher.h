/*
 * coord/launcher.h - the launcher seam (DESIGN §2): how the coordinator starts, tracks and
 * cancels the ranks of a job, behind one interface (struct melbo_launcher), with the local
 * launcher (coord/launcher.c: mpirun on the coordinator's host) and the Slurm launcher
 * (coord/slurm.c: sbatch / squeue / scancel) as its two implementations. Callers never ask which
 * launcher they have: the scheduler starts jobs on co->launcher, a cancel goes to the launcher
 * that holds the job, and every launcher is ticked once a second.
 *
 * A launcher reports what happens to a job through the state machine (melbo_job_set_state on
 * co->jobs): STARTING when the ranks are launched, CHECKPOINTED / FAILED / CANCELLED when they
 * end without a bank (DONE comes from rank 0's link). It may do so from inside start, cancel and
 * tick, and from its own libuv callbacks.
 *
 * Also here: what both launchers share, the job directory (STATE/jobs/ID: secret file, rank
 * log, checkpoint, output) and the rank command line built from the job's spec.
 *
 * Layer: above coord.h; included by slurm.c, sched.h, client.h's handlers and main.c.
 */
#ifndef MELBO_COORD_LAUNCHER_H
#define MELBO_COORD_LAUNCHER_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "coord/coord.h"    // defines: struct melbo_coord
#include "coord/jobspec.h"  // defines: struct melbo_argv (via options/), melbo_jobspec_to_argv
#include "proto/melbo.pb-c.h"

struct melbo_launcher {
    const char *name;                // "local", "slurm" (serve --launcher NAME)
    /* 1 when the backend queues jobs itself (every queued job is handed over at once); 0 when
     * at most co->max_running of its jobs may run at a time */
    int queues_jobs;
    /*
     * Launches job (QUEUED or CHECKPOINTED). Returns 0 once the launch is under way (the
     * launcher then holds the job and moves it on), or a negative code with the reason in err
     * (the job's state is the caller's to settle then).
     */
    int (*start)(struct melbo_coord *co, struct melbo_job *job, struct melbo_err *err);
    /* Cancels job: marks cancel_requested, stops its ranks if any (the job becomes CANCELLED
     * when they are gone), or makes it CANCELLED at once. Returns 0 or a negative code. */
    int (*cancel)(struct melbo_coord *co, struct melbo_job *job);
    /* 1 while this launcher holds job (has started it and not yet let go), else 0. */
    int (*holds)(const struct melbo_job *job);
    /* Called every second: notices ended ranks that no callback reports. */
    void (*tick)(struct melbo_coord *co);
    /* Lets go of the launcher's handles (server shutdown; the ranks keep running and a
     * restarted coordinator adopts them). */
    void (*close_all)(struct melbo_coord *co);
};

/* The local launcher (coord/launcher.c); the Slurm one is melbo_launcher_slurm (slurm.h). */
extern const struct melbo_launcher melbo_launcher_local;

/* The launcher in co->launchers that holds job, else co->launcher. Never NULL. */
const struct melbo_launcher *melbo_launcher_of(const struct melbo_coord *co,
                                               const struct melbo_job *job);

/* Cancels job through melbo_launcher_of(co, job). Returns what its cancel returned. */
int melbo_launcher_cancel(struct melbo_coord *co, struct melbo_job *job);

/* Ticks every launcher in co->launchers. */
void melbo_launchers_tick(struct melbo_coord *co);

/* Closes the handles of every launcher in co->launchers (shutdown). */
void melbo_launchers_close_all(struct melbo_coord *co);

/* ---- shared by the launchers ---- */

/* Writes STATE/jobs/ID into buf (n bytes). Returns 0 or MELBO_ERANGE. */
int melbo_job_dir(const struct melbo_coord *co, uint64_t id, char *buf, size_t n);

/*
 * Creates job's directory (0700, returned in dir, PATH_MAX bytes) with its secret file and its
 * rank.args file (0600: `melbo-rank train`'s options, prompts included, each followed by a NUL;
 * resuming from the job's checkpoint when an earlier launch left one), and appends
 * `train --args-file DIR/rank.args` to av: nothing private is on a command line. Shared by the
 * local and the Slurm launcher.
 */
int melbo_launcher_prepare(struct melbo_coord *co, struct melbo_job *job, const Melbo__JobSpec *spec,
                           char *dir, struct melbo_argv *av, struct melbo_err *err);

/*
 * The environment jobs and Slurm commands start with: the coordinator's own, kept only where the
 * name is on the allowlist (PATH, LD_LIBRARY_PATH, HOME, USER, LOGNAME, LANG, LC_*, TZ, TMPDIR,
 * CUDA_*, NCCL_*, OMP_*, OMPI_*, OPAL_*, PRTE_*, PMIX_*, HWLOC_*, UCX_*, OPENBLAS_*, GOMP_*,
 * SLURM_*, MELBO_* except MELBO_TOKEN, MELBO_COORD_ADDR, MELBO_JOB_ID and MELBO_JOB_SECRET_FILE),
 * then the strings of extra (NULL-terminated, may be NULL). A malloc'd NULL-terminated array of
 * borrowed strings (free the array only), or NULL when out of memory.
 */
char **melbo_launcher_env(const char *const *extra);

/* 1 when the environment entry "NAME=value" may pass to a job (melbo_launcher_env). */
int melbo_launcher_env_allowed(const char *entry);

/* Writes the job's secret to path (0600, fsynced). Returns 0 or MELBO_EIO with err set. */
int melbo_launcher_write_secret(const char *path, const char *secret, struct melbo_err *err);

#endif
