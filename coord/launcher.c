/*
 * coord/launcher.c - the local launcher (DESIGN §2): starts a job's ranks as
 * `mpirun --allow-run-as-root --oversubscribe --bind-to none -np N melbo-rank train ...` with
 * uv_spawn, notices the exit status, and cancels with signals.
 *
 * mpirun runs detached (setsid: its own session and process group, pid = pgid), with stdout and
 * stderr appended to STATE/jobs/ID/ranks.log rather than piped to us, so the ranks survive a
 * coordinator that dies and are found again at restart ("adopted": not our child, watched by pid
 * every second). The ranks learn where we are from MELBO_COORD_ADDR, MELBO_JOB_ID and
 * MELBO_JOB_SECRET_FILE (a 0600 file in the job directory), and read their options from the
 * 0600 rank.args file (`melbo-rank train --args-file FILE`), so `ps` shows no prompt and no
 * secret; mpirun forwards the environment to local ranks, which is the coordinator's filtered
 * through an allowlist (melbo_launcher_env: no MELBO_TOKEN). Cancel is SIGTERM to the whole
 * process group, then SIGKILL after a grace period, so no rank outlives its job.
 *
 * The local launcher is one implementation of the launcher seam (coord/launcher.h:
 * melbo_launcher_local); this file also holds the seam's dispatch over co->launchers and the
 * job directory helpers both launchers share.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "coord/genjob.h" // defines: melbo_genjob_is, melbo_genjob_argv
#include "coord/launcher.h"

#include "common/file.h"
#include "common/log.h"
#include "coord/db.h"       // defines: melbo_db_job_update
#include "coord/jobspec.h"  // defines: melbo_jobspec_to_argv
#include "proto/wire.h"     // defines: melbo_job_state_terminal

#define MELBO_CANCEL_GRACE_MS 4000

static int local_start(struct melbo_coord *co, struct melbo_job *job, struct melbo_err *err);

int melbo_job_dir(const struct melbo_coord *co, uint64_t id, char *buf, size_t n) {
    int w = snprintf(buf, n, "%s/jobs/%llu", co->state_dir, (unsigned long long)id);
    return w < 0 || (size_t)w >= n ? MELBO_ERANGE : 0;
}

/* Close callbacks of the mpirun and kill-timer handles: their memory is freed only here. */
static void on_proc_close(uv_handle_t *h) {
    free(h);
}

static void on_timer_close(uv_handle_t *h) {
    free(h);
}

/* Stops and closes job's kill timer, if any (freed in its close callback). */
static void stop_kill_timer(struct melbo_job *job) {
    if (job->kill_timer) {
        uv_timer_stop(job->kill_timer);
        uv_close((uv_handle_t *)job->kill_timer, on_timer_close);
        job->kill_timer = NULL;
    }
}

/* The last lines of the job's ranks.log, for a FAILED message (buf size n). */
static void log_tail(const struct melbo_coord *co, const struct melbo_job *job, char *buf,
                     size_t n) {
    char dir[PATH_MAX], path[PATH_MAX];
    buf[0] = '\0';
    if (melbo_job_dir(co, job->id, dir, sizeof dir) || melbo_path_join(path, sizeof path, dir, "ranks.log"))
        return;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    long start = size > (long)n - 1 ? size - (long)n + 1 : 0;
    fseek(f, start, SEEK_SET);
    size_t got = fread(buf, 1, n - 1, f);
    buf[got] = '\0';
    fclose(f);
    /* keep the last two non-empty lines */
    while (got > 0 && (buf[got - 1] == '\n' || buf[got - 1] == ' '))
        buf[--got] = '\0';
    int lines = 0;
    for (size_t i = got; i > 0; i--)
        if (buf[i - 1] == '\n' && ++lines == 2) {
            memmove(buf, buf + i, got - i + 1);
            break;
        }
    for (char *p = buf; *p; p++)
        if (*p == '\n')
            *p = ' ';
}

/*
 * The ranks are gone (our child exited, or an adopted group vanished): settle the job. how says
 * why ("exited with status N", ...); status 75 means they checkpointed on SIGUSR1, and the job
 * is relaunched with --resume (at most 5 times).
 */
static void ranks_ended(struct melbo_coord *co, struct melbo_job *job, const char *how) {
    stop_kill_timer(job);
    job->pid = 0;
    job->adopted = 0;
    if (melbo_job_state_terminal(job->state)) {
        melbo_db_job_update(co->db, job);
        return;
    }
    if (job->cancel_requested) {
        melbo_job_set_state(&co->jobs, job, MELBO__JOB_STATE__CANCELLED, "cancelled by its owner",
                            NULL);
        return;
    }
    if (strstr(how, "exited with status 75") && job->resubmits < 5) {
        /* the ranks checkpointed on SIGUSR1 and stopped: start them again with --resume */
        struct melbo_err err = {0};
        job->resubmits++;
        melbo_job_set_state(&co->jobs, job, MELBO__JOB_STATE__CHECKPOINTED,
                            "checkpointed on SIGUSR1; relaunching with --resume", NULL);
        if (local_start(co, job, &err) != 0)
            melbo_job_set_state(&co->jobs, job, MELBO__JOB_STATE__FAILED, "relaunch failed",
                                err.msg);
        return;
    }
    char tail[512], msg[1024];
    log_tail(co, job, tail, sizeof tail);
    snprintf(msg, sizeof msg, "ranks %s before the bank was stored%s%s", how, tail[0] ? ": " : "",
             tail);
    job->failed_rank = 0;
    melbo_job_set_state(&co->jobs, job, MELBO__JOB_STATE__FAILED, "ranks exited", msg);
}

/* mpirun (our child) exited; proc->data is its job, or NULL after close_all let go of it. */
static void on_exit_cb(uv_process_t *proc, int64_t status, int term_signal) {
    struct melbo_job *job = proc->data;
    struct melbo_coord *co = proc->loop->data;
    uv_close((uv_handle_t *)proc, on_proc_close);
    if (job == NULL)
        return;
    job->proc = NULL;
    char how[64];
    if (term_signal)
        snprintf(how, sizeof how, "were killed by signal %d", term_signal);
    else
        snprintf(how, sizeof how, "exited with status %lld", (long long)status);
    melbo_log(MELBO_LOG_INFO, "coord: job %llu: mpirun %s", (unsigned long long)job->id, how);
    ranks_ended(co, job, how);
}

int melbo_launcher_write_secret(const char *path, const char *secret, struct melbo_err *err) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return melbo_err_set(err, MELBO_EIO, "cannot write %s: %s", path, strerror(errno));
    size_t n = strlen(secret);
    int ok = write(fd, secret, n) == (ssize_t)n;
    ok = fsync(fd) == 0 && ok;
    close(fd);
    return ok ? 0 : melbo_err_set(err, MELBO_EIO, "cannot write %s", path);
}

int melbo_launcher_env_allowed(const char *e) {
    static const char *const prefixes[] = {
        "PATH=", "LD_LIBRARY_PATH=", "HOME=", "USER=", "LOGNAME=", "LANG=", "LC_", "TZ=",
        "TMPDIR=", "CUDA_", "NCCL_", "OMP_", "OMPI_", "OPAL_", "PRTE_", "PMIX_", "HWLOC_", "UCX_",
        "OPENBLAS_", "GOMP_", "SLURM_", "MELBO_"};
    static const char *const denied[] = {"MELBO_TOKEN=", "MELBO_TOKEN_FILE=", "MELBO_COORD_ADDR=",
                                         "MELBO_JOB_ID=", "MELBO_JOB_SECRET_FILE="};
    for (size_t i = 0; i < sizeof denied / sizeof denied[0]; i++)
        if (!strncmp(e, denied[i], strlen(denied[i])))
            return 0;
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (!strncmp(e, prefixes[i], strlen(prefixes[i])))
            return 1;
    return 0;
}

char **melbo_launcher_env(const char *const *extra) {
    extern char **environ;
    size_t n = 0, n_extra = 0, k = 0;
    while (environ[n])
        n++;
    while (extra && extra[n_extra])
        n_extra++;
    char **env = calloc(n + n_extra + 1, sizeof *env);
    if (env == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (melbo_launcher_env_allowed(environ[i]))
            env[k++] = environ[i];
    for (size_t i = 0; i < n_extra; i++)
        env[k++] = (char *)extra[i];
    env[k] = NULL;
    return env;
}

/* Writes the words v (n of them) to path (0600, fsynced), each followed by a NUL. */
static int write_args(const char *path, char *const *v, int n, struct melbo_err *err) {
    unlink(path); /* a file left by someone else is never written through */
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return melbo_err_set(err, MELBO_EIO, "cannot write %s: %s", path, strerror(errno));
    int ok = 1;
    for (int i = 0; i < n && ok; i++) {
        size_t len = strlen(v[i]) + 1, off = 0;
        while (ok && off < len) {
            ssize_t w = write(fd, v[i] + off, len - off);
            if (w < 0 && errno == EINTR)
                continue;
            ok = w > 0;
            off += w > 0 ? (size_t)w : 0;
        }
    }
    ok = fsync(fd) == 0 && ok;
    close(fd);
    return ok ? 0 : melbo_err_set(err, MELBO_EIO, "cannot write %s", path);
}

int melbo_launcher_prepare(struct melbo_coord *co, struct melbo_job *job, const Melbo__JobSpec *spec,
                           char *dir, struct melbo_argv *av, struct melbo_err *err) {
    char out[PATH_MAX], ckpt[PATH_MAX], secret[PATH_MAX], args[PATH_MAX], id[32];
    struct melbo_argv rank = {0};
    int ret = melbo_job_dir(co, job->id, dir, PATH_MAX);
    if (ret)
        return ret;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return melbo_err_set(err, MELBO_EIO, "cannot create %s: %s", dir, strerror(errno));
    melbo_path_join(secret, sizeof secret, dir, "secret");
    melbo_path_join(out, sizeof out, dir, "out.bank.safetensors");
    melbo_path_join(ckpt, sizeof ckpt, dir, "train.ckpt");
    /* the secret, then (TLS) the certificate's fingerprint rank 0's link pins */
    char secret_text[256];
    snprintf(secret_text, sizeof secret_text, "%s%s%s", job->secret, co->fingerprint[0] ? "\n" : "",
             co->fingerprint);
    if ((ret = melbo_launcher_write_secret(secret, secret_text, err)) != 0)
        return ret;
    snprintf(id, sizeof id, "%llu", (unsigned long long)job->id);
    if (melbo_genjob_is(job) || melbo_genjob_is_warm(job)) { /* `melbo-rank gen` (genjob.h) */
        if ((ret = melbo_genjob_argv(co, job, spec, dir, &rank, err)) == 0) {
            melbo_path_join(args, sizeof args, dir, "rank.args");
            ret = write_args(args, rank.v, rank.n, err);
        }
        melbo_argv_free(&rank);
        if (ret)
            return ret;
        melbo_argv_push(av, "gen");
        melbo_argv_push(av, "--args-file");
        melbo_argv_push(av, args);
        return 0;
    }
    /* Resume from the checkpoint when a previous launch of this job left one. */
    melbo_jobspec_to_argv(spec, out, ckpt, access(ckpt, R_OK) == 0 ? ckpt : NULL, id, &rank);
    melbo_path_join(args, sizeof args, dir, "rank.args");
    ret = write_args(args, rank.v + 1, rank.n - 1, err); /* rank.v[0] is "train" */
    melbo_argv_free(&rank);
    if (ret)
        return ret;
    melbo_argv_push(av, "train");
    melbo_argv_push(av, "--args-file");
    melbo_argv_push(av, args);
    return 0;
}

/*
 * The local launcher's start: spawns mpirun detached with the rank command line, its output
 * appended to the job's ranks.log, and moves the job to STARTING. Returns 0, or a negative code
 * with err set (nothing is left running then; the caller settles the job).
 */
static int local_start(struct melbo_coord *co, struct melbo_job *job, struct melbo_err *err) {
    char dir[PATH_MAX], secret_path[PATH_MAX], log_path[PATH_MAX], id[32], np[16];
    struct melbo_argv av = {0};
    char **env = NULL;
    int log_fd = -1, ret;
    uv_process_t *proc = NULL;
    Melbo__JobSpec *spec = melbo__job_spec__unpack(NULL, job->spec_len, job->spec);
    if (spec == NULL) {
        ret = melbo_err_set(err, MELBO_EFORMAT, "the stored job spec is unreadable");
        goto out;
    }
    const char *pre[] = {co->mpirun, "--allow-run-as-root", "--oversubscribe", "--bind-to", "none",
                         "-np", np, co->rank_binary};
    snprintf(np, sizeof np, "%d", job->n_ranks > 0 ? job->n_ranks : 1);
    for (size_t i = 0; i < sizeof pre / sizeof pre[0]; i++)
        melbo_argv_push(&av, pre[i]);
    if ((ret = melbo_launcher_prepare(co, job, spec, dir, &av, err)) != 0)
        goto out;
    snprintf(id, sizeof id, "%llu", (unsigned long long)job->id);
    melbo_path_join(secret_path, sizeof secret_path, dir, "secret");
    melbo_path_join(log_path, sizeof log_path, dir, "ranks.log");
    log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (log_fd < 0) {
        ret = melbo_err_set(err, MELBO_EIO, "cannot open %s: %s", log_path, strerror(errno));
        goto out;
    }
    char e_addr[256], e_id[64], e_secret[PATH_MAX + 32];
    snprintf(e_addr, sizeof e_addr, "MELBO_COORD_ADDR=%s", co->address);
    snprintf(e_id, sizeof e_id, "MELBO_JOB_ID=%s", id);
    snprintf(e_secret, sizeof e_secret, "MELBO_JOB_SECRET_FILE=%s", secret_path);
    const char *extra[] = {e_addr, e_id, e_secret, NULL};
    env = melbo_launcher_env(extra); /* the allowlist: no MELBO_TOKEN, nothing unknown */
    if (env == NULL) {
        ret = melbo_err_set(err, MELBO_ENOMEM, "out of memory");
        goto out;
    }
    proc = calloc(1, sizeof *proc);
    if (proc == NULL) {
        ret = melbo_err_set(err, MELBO_ENOMEM, "out of memory");
        goto out;
    }
    uv_stdio_container_t stdio[3];
    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = stdio[2].flags = UV_INHERIT_FD;
    stdio[1].data.fd = stdio[2].data.fd = log_fd;
    uv_process_options_t opt;
    memset(&opt, 0, sizeof opt);
    opt.exit_cb = on_exit_cb;
    opt.file = co->mpirun;
    opt.args = av.v;
    opt.env = env;
    opt.cwd = dir;
    opt.flags = UV_PROCESS_DETACHED;
    opt.stdio_count = 3;
    opt.stdio = stdio;
    proc->data = job;
    ret = uv_spawn(co->loop, proc, &opt);
    if (ret != 0) {
        melbo_err_set(err, ret, "cannot start %s: %s", co->mpirun, uv_strerror(ret));
        uv_close((uv_handle_t *)proc, on_proc_close);
        proc = NULL;
        goto out;
    }
    job->proc = proc;
    job->pid = proc->pid;
    proc = NULL;
    melbo_log(MELBO_LOG_INFO, "coord: job %llu: started mpirun pid %d (%s)",
              (unsigned long long)job->id, job->pid, log_path);
    melbo_job_set_state(&co->jobs, job, MELBO__JOB_STATE__STARTING, "ranks launched", NULL);
out:
    free(proc);
    free(env);
    if (log_fd >= 0)
        close(log_fd);
    melbo_argv_free(&av);
    if (spec)
        melbo__job_spec__free_unpacked(spec, NULL);
    return ret;
}

/* The cancel grace period is over: SIGKILL to mpirun's process group. */
static void on_kill_timer(uv_timer_t *t) {
    struct melbo_job *job = t->data;
    if (job->pid > 0) {
        melbo_log(MELBO_LOG_WARN, "coord: job %llu: ranks ignored SIGTERM; SIGKILL",
                  (unsigned long long)job->id);
        kill(-job->pid, SIGKILL);
    }
    stop_kill_timer(job);
}

/* The local launcher's cancel: SIGTERM to mpirun's process group, SIGKILL after the grace
 * period; a job with no ranks is CANCELLED at once. */
static int local_cancel(struct melbo_coord *co, struct melbo_job *job) {
    job->cancel_requested = 1;
    melbo_db_job_update(co->db, job);
    if (job->pid <= 0)
        return melbo_job_set_state(&co->jobs, job, MELBO__JOB_STATE__CANCELLED,
                                   "cancelled by its owner", NULL);
    kill(-job->pid, SIGTERM);
    if (job->kill_timer == NULL) {
        job->kill_timer = malloc(sizeof *job->kill_timer);
        if (job->kill_timer) {
            uv_timer_init(co->loop, job->kill_timer);
            job->kill_timer->data = job;
            uv_timer_start(job->kill_timer, on_kill_timer, MELBO_CANCEL_GRACE_MS, 0);
        }
    }
    return 0;
}

/*
 * 1 while process group pgid has a member that is not a zombie. Adopted ranks are not our
 * children, and an init that does not reap would leave zombies that kill(-pgid, 0) still finds,
 * so /proc is read instead: field 3 of /proc/PID/stat is the state, field 5 the group.
 */
static int group_alive(int pgid) {
    if (kill(-pgid, 0) != 0 && errno != EPERM)
        return 0;
    DIR *d = opendir("/proc");
    if (d == NULL)
        return 1;
    int alive = 0;
    struct dirent *de;
    while (!alive && (de = readdir(d)) != NULL) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        char path[64], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", de->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        char *rp = strrchr(buf, ')');  // the command name may hold spaces and parentheses
        char state;
        int ppid, pgrp;
        if (rp && sscanf(rp + 1, " %c %d %d", &state, &ppid, &pgrp) == 3 && pgrp == pgid &&
            state != 'Z' && state != 'X')
            alive = 1;
    }
    closedir(d);
    return alive;
}

/* The local launcher's tick: adopted ranks (not our children) that died are noticed here. */
static void local_tick(struct melbo_coord *co) {
    for (struct melbo_job *j = co->jobs.list; j; j = j->next) {
        if (!j->adopted || j->proc)
            continue;
        if (j->pid > 0 && group_alive(j->pid))
            continue;
        melbo_log(MELBO_LOG_INFO, "coord: job %llu: adopted ranks are gone",
                  (unsigned long long)j->id);
        ranks_ended(co, j, "died while the coordinator was away");
    }
}

/* The local launcher's close_all: closes the kill timers and lets go of mpirun (the ranks keep
 * running; a restart adopts them). */
static void local_close_all(struct melbo_coord *co) {
    for (struct melbo_job *j = co->jobs.list; j; j = j->next) {
        stop_kill_timer(j);
        if (j->proc) {
            j->proc->data = NULL;  // the ranks keep running; a restart adopts them
            uv_close((uv_handle_t *)j->proc, on_proc_close);
            j->proc = NULL;
        }
    }
}

/* The local launcher holds a job while its mpirun (ours or adopted) may still run. */
static int local_holds(const struct melbo_job *job) {
    return job->pid > 0 || job->proc != NULL;
}

const struct melbo_launcher melbo_launcher_local = {
    .name = "local",
    .queues_jobs = 0,
    .start = local_start,
    .cancel = local_cancel,
    .holds = local_holds,
    .tick = local_tick,
    .close_all = local_close_all,
};

/* ---------------------------------------------------------------------------------------------
 * The seam's dispatch: co->launchers is filled by main.c, so this file names no other launcher.
 */

const struct melbo_launcher *melbo_launcher_of(const struct melbo_coord *co,
                                               const struct melbo_job *job) {
    for (int i = 0; i < co->n_launchers; i++)
        if (co->launchers[i]->holds(job))
            return co->launchers[i];
    return co->launcher;
}

int melbo_launcher_cancel(struct melbo_coord *co, struct melbo_job *job) {
    return melbo_launcher_of(co, job)->cancel(co, job);
}

void melbo_launchers_tick(struct melbo_coord *co) {
    for (int i = 0; i < co->n_launchers; i++)
        co->launchers[i]->tick(co);
}

void melbo_launchers_close_all(struct melbo_coord *co) {
    for (int i = 0; i < co->n_launchers; i++)
        co->launchers[i]->close_all(co);
}
