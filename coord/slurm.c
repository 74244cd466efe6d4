/*
 * coord/slurm.c - the Slurm launcher (coord/slurm.h): sbatch, squeue and scancel run as
 * background commands, the job's batch script written from coord/slurm_script.h, squeue's answers
 * and the exit records turned into job states, resubmission after a time limit.
 */
#include "coord/slurm.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file.h"
#include "common/log.h"
#include "common/mem.h"
#include "coord/clock.h"         // defines: melbo_coord_now
#include "coord/coord.h"         // defines: struct melbo_coord
#include "coord/db.h"            // defines: melbo_db_job_update
#include "coord/jobspec.h"
#include "coord/genjob.h"        // defines: melbo_genjob_is, melbo_genjob_is_warm
#include "coord/launcher.h"      // defines: struct melbo_launcher, melbo_launcher_prepare
#include "coord/slurm_script.h"  // defines: struct melbo_slurm_script, melbo_slurm_script_fill
#include "proto/wire.h"          // defines: melbo_job_state_terminal

#define SLURM_POLL_S 2.0
#define SLURM_LOST_S 60.0     // a job neither queued nor recorded for this long is lost
#define SLURM_BANK_WAIT_S 30.0 // after COMPLETED, how long the bank upload may take

/* ---------------------------------------------------------------------------------------------
 * Commands run asynchronously: the program with its argv (no shell: every value is one word of
 * data), stdout and stderr into one pipe, the coordinator's allowlisted environment
 * (melbo_launcher_env), output collected, a callback at the end.
 * A command owns its process and pipe handles and is freed when both are closed; while it runs
 * it is on co->slurm_cmds, so that shutdown can close it (slurm_close_all).
 */

enum cmd_kind { CMD_SBATCH, CMD_SQUEUE, CMD_SCANCEL };

struct melbo_slurm_cmd {
    uv_process_t proc;
    uv_pipe_t out;
    struct melbo_coord *co;
    uint64_t job_id;
    enum cmd_kind kind;
    int exited, eof, closes;
    int64_t status;
    size_t len;
    struct melbo_slurm_cmd *next;    // on co->slurm_cmds while running
    char buf[64 * 1024];
};

/* Takes c off co->slurm_cmds (it is done, or the coordinator is stopping). */
static void cmd_unlink(struct melbo_slurm_cmd *c) {
    for (struct melbo_slurm_cmd **pp = &c->co->slurm_cmds; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
}

static void cmd_closed(uv_handle_t *h) {
    struct melbo_slurm_cmd *c = h->data;
    if (++c->closes == 2)
        free(c);
}

static void cmd_done(struct melbo_slurm_cmd *c);

static void cmd_maybe_done(struct melbo_slurm_cmd *c) {
    if (!c->exited || !c->eof)
        return;
    c->buf[c->len] = '\0';
    cmd_unlink(c);
    cmd_done(c);
    uv_close((uv_handle_t *)&c->proc, cmd_closed);
    uv_close((uv_handle_t *)&c->out, cmd_closed);
}

static void cmd_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
    struct melbo_slurm_cmd *c = h->data;
    (void)suggested;
    size_t room = sizeof c->buf - 1 - c->len;
    static char sink[4096];
    if (room == 0) { /* keep reading, drop the excess */
        b->base = sink;
        b->len = sizeof sink;
        return;
    }
    b->base = c->buf + c->len;
    b->len = room;
}

static void cmd_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
    struct melbo_slurm_cmd *c = s->data;
    if (n > 0 && b->base >= c->buf && b->base < c->buf + sizeof c->buf)
        c->len += (size_t)n;
    if (n < 0) {
        uv_read_stop(s);
        c->eof = 1;
        cmd_maybe_done(c);
    }
}

static void cmd_exit(uv_process_t *p, int64_t status, int sig) {
    struct melbo_slurm_cmd *c = p->data;
    c->exited = 1;
    c->status = sig ? 128 + sig : status;
    cmd_maybe_done(c);
}

/* Starts argv[0] (looked up in PATH) with argv in cwd (NULL: ours), stdout and stderr into
 * c->out. Returns 0, or a negative code (no callback then). */
static int cmd_run(struct melbo_coord *co, enum cmd_kind kind, uint64_t job_id, char **argv,
                   const char *cwd) {
    struct melbo_slurm_cmd *c = calloc(1, sizeof *c);
    if (c == NULL)
        return MELBO_ENOMEM;
    c->co = co;
    c->kind = kind;
    c->job_id = job_id;
    uv_file fds[2];
    int r = uv_pipe(fds, 0, 0);
    if (r != 0) {
        free(c);
        return r;
    }
    uv_pipe_init(co->loop, &c->out, 0);
    uv_pipe_open(&c->out, fds[0]);
    c->proc.data = c->out.data = c;
    char **env = melbo_launcher_env(NULL);
    if (env == NULL) {
        close(fds[1]);
        c->closes = 1; /* proc was never initialised: only the pipe's close frees c */
        uv_close((uv_handle_t *)&c->out, cmd_closed);
        return MELBO_ENOMEM;
    }
    uv_stdio_container_t stdio[3];
    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = stdio[2].flags = UV_INHERIT_FD;
    stdio[1].data.fd = stdio[2].data.fd = fds[1];
    uv_process_options_t opt;
    memset(&opt, 0, sizeof opt);
    opt.file = argv[0];
    opt.args = argv;
    opt.env = env;
    opt.cwd = cwd;
    opt.exit_cb = cmd_exit;
    opt.stdio_count = 3;
    opt.stdio = stdio;
    r = uv_spawn(co->loop, &c->proc, &opt);
    close(fds[1]); /* the child has its copy; EOF comes when it (and its children) close it */
    free(env);
    if (r != 0) { /* uv_spawn initialised proc all the same: both handles are closed */
        uv_close((uv_handle_t *)&c->proc, cmd_closed);
        uv_close((uv_handle_t *)&c->out, cmd_closed);
        return r;
    }
    uv_read_start((uv_stream_t *)&c->out, cmd_alloc, cmd_read);
    c->next = co->slurm_cmds;
    co->slurm_cmds = c;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Submitting (the script itself is coord/slurm_script.c's).
 */

int melbo_slurm_start(struct melbo_coord *co, struct melbo_job *job, struct melbo_err *err) {
    const struct melbo_slurm_conf *sc = &co->slurm;
    char dir[PATH_MAX], script[PATH_MAX];
    char *text = NULL, *args = NULL, **opts = NULL;
    struct melbo_argv av = {0};
    struct melbo_job_params jp; /* the spec's Slurm settings (options/job.h) */
    int ret;
    memset(&jp, 0, sizeof jp);
    Melbo__JobSpec *spec = melbo__job_spec__unpack(NULL, job->spec_len, job->spec);
    if (spec == NULL)
        return melbo_err_set(err, MELBO_EFORMAT, "the stored job spec is unreadable");
    if ((ret = melbo_launcher_prepare(co, job, spec, dir, &av, err)) != 0)
        goto out;
    melbo_path_join(script, sizeof script, dir, "job.sbatch");
    args = melbo_slurm_script_args(av.v + 1, av.n - 1); /* av[0]: the command, RANK_COMMAND */
    if ((ret = melbo_file_read(sc->template_path, &text, NULL, err)) != 0) {
        melbo_err_prefix(err, "the Slurm template");
        goto out;
    }
    int gen = melbo_genjob_is(job) || melbo_genjob_is_warm(job);
    if (gen && strstr(text, "@RANK_COMMAND@") == NULL) {
        ret = melbo_err_set(err, MELBO_EINVAL,
                            "the Slurm template %s runs only `melbo-rank train`: write "
                            "@RANK_COMMAND@ where it says train to run gen and warm jobs",
                            sc->template_path);
        goto out;
    }
    if (gen) /* --tp ranks on one node, the site's defaults (a gen spec has no Slurm settings) */
        melbo_job_params_init(&jp);
    else if ((ret = melbo_jobspec_parse(spec, &jp, err)) != 0)
        goto out;
    int ranks = gen ? (job->n_ranks > 0 ? job->n_ranks : 1) : melbo_job_ranks(&jp);
    int nodes = jp.job.nodes, gpus = jp.job.gpus;
    const char *time = jp.job.time ? jp.job.time : sc->time;
    if ((ret = melbo_slurm_script_check_time(time, sc->signal_lead, err)) != 0)
        goto out;
    struct melbo_slurm_script s = {
        .job_id = job->id,
        .job_dir = dir,
        .nodes = nodes,
        .tasks_per_node = gpus ? gpus : ranks / nodes,
        .gpus_per_node = gpus,
        .cpus_per_task = jp.job.cpus_per_task > 0 ? jp.job.cpus_per_task : sc->cpus_per_task,
        .time = time,
        .signal_lead = sc->signal_lead,
        .partition = jp.job.partition ? jp.job.partition : sc->partition,
        .account = jp.job.account ? jp.job.account : sc->account,
        .qos = jp.job.qos ? jp.job.qos : sc->qos,
        .constraint = jp.job.constraint ? jp.job.constraint : sc->constraint,
        .coord_addr = co->address,
        .rank_binary = co->rank_binary,
        .rank_args = args,
        .rank_command = av.v[0],
    };
    melbo_slurm_script_fill(&text, &s);
    if ((ret = melbo_file_write_atomic(script, text, strlen(text), err)) != 0)
        goto out;
    char record[PATH_MAX];
    melbo_path_join(record, sizeof record, dir, "exit-record");
    unlink(record); /* a resubmission's outcome is its own */
    /* sbatch --parsable OPTIONS job.sbatch in the job's directory: argv, no shell */
    opts = melbo_slurm_sbatch_options(&s);
    struct melbo_argv sav = {0};
    melbo_argv_push(&sav, sc->sbatch);
    melbo_argv_push(&sav, "--parsable");
    for (char **o = opts; *o; o++)
        melbo_argv_push(&sav, *o);
    melbo_argv_push(&sav, "job.sbatch");
    { /* the command as run, one word a line, beside the script (what an admin reads first) */
        char argf[PATH_MAX], *all = NULL;
        size_t len = 0;
        for (int i = 0; i < sav.n; i++) {
            all = melbo_xrealloc(all, len + strlen(sav.v[i]) + 2);
            len += (size_t)sprintf(all + len, "%s\n", sav.v[i]);
        }
        melbo_path_join(argf, sizeof argf, dir, "sbatch.args");
        melbo_file_write_atomic(argf, all, len, NULL);
        free(all);
    }
    ret = cmd_run(co, CMD_SBATCH, job->id, sav.v, dir);
    melbo_argv_free(&sav);
    if (ret != 0) {
        melbo_err_set(err, ret, "cannot run %s", sc->sbatch);
        goto out;
    }
    snprintf(job->slurm_id, sizeof job->slurm_id, "submitting");
    job->ended_at = 0;
    melbo_log(MELBO_LOG_INFO, "coord: job %llu: sbatch %s", (unsigned long long)job->id, script);
out:
    free(text);
    free(args);
    melbo_slurm_sbatch_options_free(opts);
    melbo_argv_free(&av);
    melbo_job_params_free(&jp);
    melbo__job_spec__free_unpacked(spec, NULL);
    return ret;
}

int melbo_slurm_cancel(struct melbo_coord *co, struct melbo_job *job) {
    job->cancel_requested = 1;
    melbo_db_job_update(co->db, job);
    if (!isdigit((unsigned char)job->slurm_id[0])) /* not in Slurm (yet): sbatch's answer cancels */
        return job->slurm_id[0] ? 0
                                : melbo_job_set_state(&co->jobs, job, MELBO__JOB_STATE__CANCELLED,
                                                      "cancelled by its owner", NULL);
    char *argv[] = {co->slurm.scancel, job->slurm_id, NULL};
    return cmd_run(co, CMD_SCANCEL, job->id, argv, NULL);
}

/* ---------------------------------------------------------------------------------------------
 * Tracking.
 */

/* Appends a STATE event keeping the state and carrying Slurm's pending reason. */
static void report_reason(struct melbo_coord *co, struct melbo_job *job, const char *reason) {
    if (strcmp(job->reason, reason) == 0 || strcmp(reason, "None") == 0) /* None: not decided yet */
        return;
    snprintf(job->reason, sizeof job->reason, "%s", reason);
    Melbo__JobEvent ev = MELBO__JOB_EVENT__INIT;
    char detail[160];
    snprintf(detail, sizeof detail, "pending in Slurm as job %s (%s)", job->slurm_id, reason);
    ev.has_kind = ev.has_state = 1;
    ev.kind = MELBO__JOB_EVENT__KIND__STATE;
    ev.state = job->state;
    ev.detail = detail;
    ev.reason = (char *)reason;
    melbo_job_append(&co->jobs, job, &ev);
}

/* The tail of the batch output (the ranks' last words) into buf. */
static void output_tail(struct melbo_coord *co, struct melbo_job *job, char *buf, size_t n) {
    char dir[PATH_MAX], path[PATH_MAX + 64], *text = NULL;
    size_t len = 0;
    buf[0] = '\0';
    melbo_job_dir(co, job->id, dir, sizeof dir);
    snprintf(path, sizeof path, "%s/slurm-%s.out", dir, job->slurm_id);
    if (melbo_file_read(path, &text, &len, NULL) != 0)
        return;
    /* the last lines that mention melbo, else the last lines */
    const char *keep = text;
    for (const char *p = text; (p = strstr(p, "melbo")) != NULL; p++) {
        const char *bol = p;
        while (bol > text && bol[-1] != '\n')
            bol--;
        keep = bol;
    }
    if (keep == text && len > n - 1)
        keep = text + len - (n - 1);
    snprintf(buf, n, "%s", keep);
    for (char *p = buf; *p; p++)
        if (*p == '\n')
            *p = ' ';
    free(text);
}

static void resubmit(struct melbo_coord *co, struct melbo_job *job, const char *why) {
    char detail[256];
    if (job->resubmits >= co->slurm.resubmit_max) {
        snprintf(detail, sizeof detail, "%s %d times; giving up", why, job->resubmits + 1);
        melbo_job_set_state(&co->jobs, job, MELBO__JOB_STATE__FAILED, "time limit", detail);
        return;
    }
    job->resubmits++;
    snprintf(detail, sizeof detail, "%s: checkpointed; resubmitting with --resume (%d of %d)", why,
             job->resubmits, co->slurm.resubmit_max);
    melbo_job_set_state(&co->jobs, job, MELBO__JOB_STATE__CHECKPOINTED, detail, NULL);
    struct melbo_err err = {0};
    if (melbo_slurm_start(co, job, &err) != 0)
        melbo_job_set_state(&co->jobs, job, MELBO__JOB_STATE__FAILED, "resubmission failed",
                            err.msg);
}

/* The job has left Slurm's queue (or never was seen): its exit record decides. */
static void settle(struct melbo_coord *co, struct melbo_job *job, const char *slurm_state) {
    char dir[PATH_MAX], path[PATH_MAX], *rec = NULL, st[32] = "", tail[768], msg[1024];
    double now = melbo_coord_now();
    melbo_job_dir(co, job->id, dir, sizeof dir);
    melbo_path_join(path, sizeof path, dir, "exit-record");
    if (melbo_file_read(path, &rec, NULL, NULL) == 0) {
        sscanf(rec, "state=%31s", st);
        free(rec);
    }
    if (job->cancel_requested || !strcmp(st, "CANCELLED") || !strcmp(slurm_state, "CANCELLED")) {
        melbo_job_set_state(&co->jobs, job, MELBO__JOB_STATE__CANCELLED, "cancelled by its owner",
                            NULL);
    } else if (!strcmp(st, "CHECKPOINTED") ||
               (!st[0] && (!strcmp(slurm_state, "TIMEOUT") || !strcmp(slurm_state, "PREEMPTED")))) {
        char ck[PATH_MAX];
        melbo_path_join(ck, sizeof ck, dir, "train.ckpt");
        if (!strcmp(st, "CHECKPOINTED") || access(ck, R_OK) == 0)
            resubmit(co, job, st[0] ? "time limit" : slurm_state);
        else
            melbo_job_set_state(&co->jobs, job, MELBO__JOB_STATE__FAILED, slurm_state,
                                "the job ended at its time limit before writing a checkpoint");
    } else if (!strcmp(st, "COMPLETED")) {
        /* DONE comes with the bank upload; give a late upload some time */
        if (job->rank_conn != 0)
            return;
        if (job->ended_at == 0)
            job->ended_at = now;
        if (now - job->ended_at > SLURM_BANK_WAIT_S)
            melbo_job_set_state(&co->jobs, job, MELBO__JOB_STATE__FAILED, "no bank",
                                "the ranks finished but no bank reached the coordinator");
    } else if (st[0] || slurm_state[0]) {
        output_tail(co, job, tail, sizeof tail);
        snprintf(msg, sizeof msg, "Slurm job %s ended %s%s%s", job->slurm_id,
                 st[0] ? st : slurm_state, tail[0] ? ": " : "", tail);
        job->failed_rank = -1;
        melbo_job_set_state(&co->jobs, job, MELBO__JOB_STATE__FAILED, "ranks failed", msg);
    } else { /* neither queued nor recorded */
        if (job->ended_at == 0)
            job->ended_at = now;
        if (now - job->ended_at > SLURM_LOST_S)
            melbo_job_set_state(&co->jobs, job, MELBO__JOB_STATE__FAILED, "lost",
                                "Slurm has no record of the job and it left no exit record");
    }
}

/* squeue's answer (lines ID|STATE|REASON): PENDING reports the reason, RUNNING moves the job to
 * STARTING, a job no longer listed is settled from its exit record. */
static void on_squeue(struct melbo_coord *co, const char *text, int status) {
    co->slurm_polling = 0;
    if (status != 0) {
        melbo_log(MELBO_LOG_WARN, "coord: squeue failed (%d): %.200s", status, text);
        return;
    }
    for (struct melbo_job *j = co->jobs.list; j; j = j->next) {
        if (melbo_job_state_terminal(j->state) || !isdigit((unsigned char)j->slurm_id[0]))
            continue;
        /* this job's line: ID|STATE|REASON */
        char state[32] = "", reason[128] = "";
        size_t idl = strlen(j->slurm_id);
        for (const char *p = text; p && *p;) {
            const char *eol = strchr(p, '\n');
            if (!strncmp(p, j->slurm_id, idl) && p[idl] == '|') {
                sscanf(p + idl + 1, "%31[^|]|%127[^\n]", state, reason);
                break;
            }
            p = eol ? eol + 1 : NULL;
        }
        if (!strcmp(state, "PENDING")) {
            report_reason(co, j, reason);
        } else if (!strcmp(state, "RUNNING") || !strcmp(state, "CONFIGURING") ||
                   !strcmp(state, "COMPLETING")) {
            j->ended_at = 0;
            if (j->state == MELBO__JOB_STATE__QUEUED ||
                j->state == MELBO__JOB_STATE__CHECKPOINTED) {
                char d[96];
                snprintf(d, sizeof d, "running in Slurm as job %s", j->slurm_id);
                j->reason[0] = '\0';
                melbo_job_set_state(&co->jobs, j, MELBO__JOB_STATE__STARTING, d, NULL);
            }
        } else {
            settle(co, j, state);
        }
    }
}

/* A command finished (c->buf holds its output, c->status its exit status): squeue updates every
 * Slurm job, sbatch records the Slurm id or fails the job, scancel only logs a failure. */
static void cmd_done(struct melbo_slurm_cmd *c) {
    struct melbo_coord *co = c->co;
    if (c->kind == CMD_SQUEUE) {
        on_squeue(co, c->buf, (int)c->status);
        return;
    }
    struct melbo_job *job = melbo_job_find(&co->jobs, c->job_id);
    if (job == NULL)
        return;
    if (c->kind == CMD_SCANCEL) {
        if (c->status != 0)
            melbo_log(MELBO_LOG_WARN, "coord: job %llu: scancel: %.200s",
                      (unsigned long long)job->id, c->buf);
        return;
    }
    /* sbatch --parsable prints "ID" or "ID;cluster" */
    long sid = strtol(c->buf, NULL, 10);
    if (c->status != 0 || sid <= 0) {
        job->slurm_id[0] = '\0';
        char msg[600];
        snprintf(msg, sizeof msg, "sbatch failed: %.500s", c->buf);
        job->failed_rank = -1;
        melbo_job_set_state(&co->jobs, job, MELBO__JOB_STATE__FAILED, "submission failed", msg);
        return;
    }
    snprintf(job->slurm_id, sizeof job->slurm_id, "%ld", sid);
    melbo_db_job_update(co->db, job);
    char d[96];
    snprintf(d, sizeof d, "submitted to Slurm as job %ld", sid);
    melbo_log(MELBO_LOG_INFO, "coord: job %llu: %s", (unsigned long long)job->id, d);
    if (job->cancel_requested) {
        melbo_slurm_cancel(co, job);
        return;
    }
    Melbo__JobEvent ev = MELBO__JOB_EVENT__INIT;
    ev.has_kind = ev.has_state = 1;
    ev.kind = MELBO__JOB_EVENT__KIND__STATE;
    ev.state = job->state;
    ev.detail = d;
    melbo_job_append(&co->jobs, job, &ev);
}

void melbo_slurm_tick(struct melbo_coord *co) {
    double now = melbo_coord_now();
    if (co->slurm_polling || now - co->slurm_last_poll < SLURM_POLL_S)
        return;
    int any = 0;
    for (struct melbo_job *j = co->jobs.list; j && !any; j = j->next)
        any = !melbo_job_state_terminal(j->state) && isdigit((unsigned char)j->slurm_id[0]);
    if (!any)
        return;
    co->slurm_last_poll = now;
    char *argv[] = {co->slurm.squeue, "-h", "-t", "all", "--me", "-o", "%i|%T|%r", NULL};
    if (cmd_run(co, CMD_SQUEUE, 0, argv, NULL) == 0)
        co->slurm_polling = 1;
}

/* ---------------------------------------------------------------------------------------------
 * The launcher seam (coord/launcher.h).
 */

/* Slurm holds a job from sbatch on ("submitting", then its id) until the job leaves Slurm. */
static int slurm_holds(const struct melbo_job *job) {
    return job->slurm_id[0] != '\0';
}

/* Shutdown: closes the commands still running (their callbacks will not run; the Slurm jobs
 * are tracked again by the next coordinator). */
static void slurm_close_all(struct melbo_coord *co) {
    while (co->slurm_cmds) {
        struct melbo_slurm_cmd *c = co->slurm_cmds;
        co->slurm_cmds = c->next;
        uv_close((uv_handle_t *)&c->proc, cmd_closed);
        uv_close((uv_handle_t *)&c->out, cmd_closed);
    }
    co->slurm_polling = 0;
}

const struct melbo_launcher melbo_launcher_slurm = {
    .name = "slurm",
    .queues_jobs = 1,
    .start = melbo_slurm_start,
    .cancel = melbo_slurm_cancel,
    .holds = slurm_holds,
    .tick = melbo_slurm_tick,
    .close_all = slurm_close_all,
};
