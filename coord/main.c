/*
 * coord/main.c - melbo-coord: `init` creates a state directory, `serve` runs the coordinator on
 * it, `token add|rotate|remove` gives a user a token, a new one, or none.
 *
 * State directory (0700): melbo.db (SQLite, WAL: jobs, events, bank catalog), tokens (0600),
 * banks/ (stored banks), jobs/ID/ (each job's secret and rank.args (0600), rank log, checkpoint
 * and output), exports/
 * (a private directory per bank export or report while melbo-rank writes it), address (the
 * host:port `serve` bound, rewritten at every start), coord.conf (listen=HOST:PORT) and
 * tls.key (0600) + tls.crt (coord/tls.h: clients pin the certificate's fingerprint; made by init,
 * or by serve in a state directory without them; coord.conf plaintext_loopback=1 turns TLS off
 * and is refused unless the listen address is loopback).
 *
 * The layering of coord/ (a file includes only headers on its own line or above it; calls go
 * down, news comes up through the two interfaces named in brackets):
 *
 *   clock.h  tokens.h  job.h  server.h  slurm.h  slurm_script.h   leaves (common/, proto/, ...)
 *   db.h                  SQLite persistence of job records, events and the bank catalog
 *   jobs.h                job table, state machine, numbered event log  [struct melbo_job_sink]
 *   banks.h               bank store and catalog rows
 *   watch.h               fan-out: watchers subscribed to jobs' events (jobs.h + server.h)
 *   coord.h               struct melbo_coord: settings, loop, db, job table, launchers in use
 *   launcher.h            the launcher seam [struct melbo_launcher]; launcher.c = local,
 *                         slurm.c = Slurm (both above coord.h; neither names the other)
 *   sched.h               scheduler: a job-event subscriber that runs a pass from a uv_idle
 *   client.h              sessions [struct melbo_peer_handler]: client.c routes each
 *                         connection's messages to requests.c (users; bank exports and
 *                         reports in export.c) and ranks.c (rank 0)
 *   main.c                wiring: server + fan-out + scheduler + launchers, tick, signals
 *
 * The state machine (jobs.c) calls no launcher and writes to no socket: it stores an event and
 * tells its subscribers (the fan-out, the scheduler). The server (server.c) knows frames, not
 * meanings: it hands each message to the handler client.c installs.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file.h"
#include "common/log.h"
#include "coord/client.h"    // defines: melbo_clients_handler, struct melbo_clients
#include "coord/coord.h"     // defines: struct melbo_coord
#include "coord/db.h"        // defines: melbo_db_open, melbo_db_jobs_load
#include "coord/jobs.h"      // defines: melbo_jobs_init, melbo_job_set_state
#include "coord/genjob.h"    // defines: melbo_genjob_is
#include "coord/clock.h"     // defines: melbo_coord_now
#include "coord/warm.h"      // defines: melbo_warm_init, melbo_warm_tick
#include "coord/launcher.h"  // defines: melbo_launcher_local, melbo_launchers_tick
#include "coord/maint.h"     // defines: melbo_coord_cmd_fsck, _backup, _restore
#include "coord/sched.h"     // defines: struct melbo_sched
#include "coord/server.h"
#include "coord/tls.h"       // defines: melbo_tls_ensure, melbo_tls_server_ctx
#include "proto/conn.h"      // defines: melbo_addr_split    // defines: struct melbo_server
#include "coord/slurm.h"     // defines: melbo_launcher_slurm, struct melbo_slurm_conf
#include "coord/tokens.h"    // defines: melbo_tokens_add
#include "coord/watch.h"     // defines: struct melbo_fanout
#include "coord/models.h"    // defines: melbo_models_add
#include "coord/uploads.h"   // defines: melbo_uploads_init

static void usage(FILE *f) {
    fprintf(f,
            "usage: melbo-coord <command> [options]\n"
            "\n"
            "  init --state DIR [--listen HOST:PORT] [--user NAME]   (NAME gets the admin role)\n"
            "        create the state directory and its TLS key and certificate; prints the\n"
            "        three environment lines a client needs (MELBO_COORD=..., MELBO_TOKEN=...,\n"
            "        MELBO_COORD_FINGERPRINT=sha256:..., the certificate clients pin)\n"
            "  serve --state DIR [--listen HOST:PORT] [--rank-binary PATH] [--mpirun PATH]\n"
            "        [--launcher local|slurm] [--slurm-template PATH]\n"            "        (TLS 1.3 with STATE/tls.key and tls.crt, made when missing; coord.conf\n"
            "         plaintext_loopback=1 serves plaintext, on a loopback address only)\n"
            "        (Slurm site defaults: slurm.partition=, slurm.account=, slurm.qos=,\n"
            "         slurm.constraint=, slurm.time=, slurm.signal_lead=, slurm.cpus_per_task=,\n"
            "         slurm.resubmit_max= lines in STATE/coord.conf)\n"
            "        [--max-running N] [--client-cap BYTES] [--export-timeout SECONDS]\n"
            "        (limits: limits.NAME=N lines in STATE/coord.conf; `serve --help` lists them)\n"
            "        run the coordinator (port 0 picks a free port; the bound address is written\n"
            "        to DIR/address); bank exports and reports run PATH (`bank export|report`),\n"
            "        at most SECONDS each (300)\n"
            "  token add NAME --state DIR [--admin]\n"
            "        add a user (--admin: sees every job and bank, private ones included);\n"
            "        prints their MELBO_TOKEN line\n"
            "  token rotate NAME --state DIR\n"
            "        a new token for NAME (role kept); prints the MELBO_TOKEN line; the old token\n"
            "        stops working at once, also for a running coordinator's next authentication\n"
            "  token remove NAME --state DIR\n"
            "        NAME's token stops working (open sessions keep theirs until they end)\n"
            "  model add NAME PATH --state DIR\n"
            "        register a model (a directory or .gguf file) as `melbo submit --model NAME`;\n"
            "        works while the coordinator is stopped. Jobs may name only registered models\n"
            "        and paths under the model_root=PATH lines of STATE/coord.conf\n"
            "  fsck --state DIR [--repair]\n"
            "        check the database, the bank store and the job directories against each\n"
            "        other; --repair (coordinator stopped) adopts waiting banks and removes\n"
            "        temporary uploads\n"
            "  backup OUT --state DIR\n"
            "        a consistent copy while serving (SQLite's online backup, then the banks)\n"
            "  restore BACKUP --state NEWDIR\n"
            "        a state directory from a backup\n");
}

static const char *arg_value(int argc, char **argv, const char *name) {
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], name))
            return argv[i + 1];
    return NULL;
}

static int check_args(int argc, char **argv, int first, const char *const *known) {
    for (int i = first; i < argc; i++) {
        int ok = 0;
        for (const char *const *k = known; *k; k++)
            if (!strcmp(argv[i], *k))
                ok = 1;
        if (!ok || i + 1 >= argc) {
            fprintf(stderr, "melbo-coord: %s '%s'\n", ok ? "missing value for" : "unknown argument",
                    argv[i]);
            return 2;
        }
        i++;
    }
    return 0;
}

/* The listen=HOST:PORT line of STATE/coord.conf into buf (n bytes). Returns 0, or -1. */
static int read_conf_listen(const char *state, char *buf, size_t n) {
    char path[PATH_MAX], *text = NULL;
    size_t len;
    if (melbo_path_join(path, sizeof path, state, "coord.conf") ||
        melbo_file_read(path, &text, &len, NULL))
        return -1;
    char *p = strstr(text, "listen=");
    int r = -1;
    if (p) {
        p += 7;
        size_t k = strcspn(p, "\r\n");
        if (k > 0 && k < n) {
            memcpy(buf, p, k);
            buf[k] = '\0';
            r = 0;
        }
    }
    free(text);
    return r;
}

/* `init`: creates the state directory, its database, coord.conf and the first user's token.
 * Returns the exit status. */
static int cmd_init(int argc, char **argv) {
    static const char *const known[] = {"--state", "--listen", "--user", NULL};
    if (check_args(argc, argv, 1, known))
        return 2;
    const char *state = arg_value(argc, argv, "--state");
    const char *listen = arg_value(argc, argv, "--listen");
    const char *user = arg_value(argc, argv, "--user");
    if (state == NULL) {
        fprintf(stderr, "melbo-coord init: --state DIR is required\n");
        return 2;
    }
    if (listen == NULL)
        listen = "127.0.0.1:7878";
    if (user == NULL)
        user = getenv("USER") && *getenv("USER") ? getenv("USER") : "admin";
    struct melbo_err err = {0};
    char path[PATH_MAX], token[65];
    sqlite3 *db = NULL;
    if (mkdir(state, 0700) != 0) {
        fprintf(stderr, "melbo-coord init: cannot create %s: %s%s\n", state, strerror(errno),
                errno == EEXIST ? " (init runs once; use `token add` for more users)" : "");
        return 1;
    }
    chmod(state, 0700);
    const char *subdirs[] = {"banks", "jobs"};
    for (int i = 0; i < 2; i++) {
        melbo_path_join(path, sizeof path, state, subdirs[i]);
        if (mkdir(path, 0700) != 0)
            goto fail_errno;
    }
    melbo_path_join(path, sizeof path, state, "melbo.db");
    if (melbo_db_open(path, &db, &err) != 0)
        goto fail;
    sqlite3_close(db);
    chmod(path, 0600);
    melbo_path_join(path, sizeof path, state, "coord.conf");
    char conf[256];
    int cl = snprintf(conf, sizeof conf, "listen=%s\n", listen);
    if (melbo_file_write_atomic(path, conf, (size_t)cl, &err) != 0)
        goto fail;
    chmod(path, 0600);
    /* the first user has the admin role (sees every job, private ones included) */
    if (melbo_tokens_change(state, user, MELBO_TOKEN_ADD_ADMIN, token, &err) != 0)
        goto fail;
    char fp[80];
    int created;
    if (melbo_tls_ensure(state, fp, sizeof fp, &created, &err) != 0)
        goto fail;
    fprintf(stderr, "melbo-coord: state directory %s created; user %s\n", state, user);
    printf("MELBO_COORD=%s\nMELBO_TOKEN=%s\nMELBO_COORD_FINGERPRINT=%s\n", listen, token, fp);
    return 0;
fail_errno:
    fprintf(stderr, "melbo-coord init: cannot create %s: %s\n", path, strerror(errno));
    return 1;
fail:
    fprintf(stderr, "melbo-coord init: %s\n", err.msg);
    return 1;
}

/* `token add NAME [--admin]`, `token rotate NAME`, `token remove NAME`: changes a user's token in
 * an existing state directory (the coordinator re-reads the file at every authentication).
 * Returns the exit status. */
static int cmd_token(int argc, char **argv) {
    static const char *const verbs[] = {"add", "rotate", "remove"};
    int verb = -1, admin = 0;
    for (int i = 0; argc >= 3 && i < 3; i++)
        if (!strcmp(argv[1], verbs[i]))
            verb = i;
    if (verb < 0) {
        usage(stderr);
        return 2;
    }
    /* --admin (a flag) is taken out before the NAME VALUE options are checked */
    char *rest[16];
    int n = 0;
    for (int i = 0; i < argc && n < 15; i++) {
        if (i >= 3 && !strcmp(argv[i], "--admin") && verb == 0)
            admin = 1;
        else
            rest[n++] = argv[i];
    }
    rest[n] = NULL;
    static const char *const known[] = {"--state", NULL};
    if (check_args(n, rest, 3, known))
        return 2;
    const char *state = arg_value(n, rest, "--state");
    if (state == NULL) {
        fprintf(stderr, "melbo-coord token %s: --state DIR is required\n", verbs[verb]);
        return 2;
    }
    char token[65];
    struct melbo_err err = {0};
    if (!melbo_file_is_dir(state)) {
        fprintf(stderr, "melbo-coord token %s: %s is not a state directory (run init)\n",
                verbs[verb], state);
        return 1;
    }
    enum melbo_token_change how = verb == 1   ? MELBO_TOKEN_ROTATE
                                  : verb == 2 ? MELBO_TOKEN_REMOVE
                                  : admin     ? MELBO_TOKEN_ADD_ADMIN
                                              : MELBO_TOKEN_ADD;
    if (melbo_tokens_change(state, argv[2], how, token, &err) != 0) {
        fprintf(stderr, "melbo-coord token %s: %s\n", verbs[verb], err.msg);
        return 1;
    }
    if (how == MELBO_TOKEN_REMOVE)
        fprintf(stderr, "melbo-coord: %s's token removed\n", argv[2]);
    else
        printf("MELBO_TOKEN=%s\n", token);
    return 0;
}

/* `model add NAME PATH`: registers a model in STATE/models (coord/models.h). Exit status. */
static int cmd_model(int argc, char **argv) {
    static const char *const known[] = {"--state", NULL};
    if (argc < 4 || strcmp(argv[1], "add") != 0) {
        usage(stderr);
        return 2;
    }
    if (check_args(argc, argv, 4, known))
        return 2;
    const char *state = arg_value(argc, argv, "--state");
    struct melbo_err err = {0};
    if (state == NULL || !melbo_file_is_dir(state)) {
        fprintf(stderr, "melbo-coord model add: --state DIR (a state directory) is required\n");
        return state ? 1 : 2;
    }
    if (melbo_models_add(state, argv[2], argv[3], &err) != 0) {
        fprintf(stderr, "melbo-coord model add: %s\n", err.msg);
        return 1;
    }
    printf("model %s registered\n", argv[2]);
    return 0;
}

/* Everything `serve` runs, wired together; lives on cmd_serve's stack for the loop's life. */
struct melbo_service {
    struct melbo_coord co;           // settings, db, job table, launchers
    struct melbo_server server;      // connections (handler: coord/client.c)
    struct melbo_clients clients;    // what sessions borrow: &co, &fanout
    struct melbo_fanout fanout;      // watchers, subscribed to co.jobs
    struct melbo_sched sched;        // the scheduler, subscribed to co.jobs
    uv_timer_t tick;
    uv_signal_t sigterm, sigint;
    int tick_open, signals_open;     // handles initialised (closed at shutdown)
    long ticks;                      // seconds served (the tick's count)
};

/*
 * Every second: launchers notice ended ranks and poll Slurm, half-closed connections are swept,
 * and a scheduling pass is requested (a safety net for a slot freed without a stored state
 * event, e.g. when the database refused the event).
 */
static void on_tick(uv_timer_t *t) {
    struct melbo_service *svc = t->data;
    melbo_launchers_tick(&svc->co);
    melbo_warm_tick(&svc->co);
    melbo_jobs_retry(&svc->co.jobs, melbo_coord_now()); /* state changes the disk refused */
    if (++svc->ticks % svc->co.limits.keepalive_s == 0) /* watchers hear from us in silence */
        melbo_fanout_keepalive(&svc->fanout, melbo_coord_now());
    melbo_server_sweep(&svc->server);
    melbo_sched_request(&svc->sched);
}

static void on_signal(uv_signal_t *s, int sig) {
    struct melbo_service *svc = s->data;
    melbo_log(MELBO_LOG_INFO, "coord: signal %d; stopping (running jobs keep running)", sig);
    uv_stop(svc->co.loop);
}

/* uv_walk callback at exit: counts the handles still open (there should be none). */
static void count_open(uv_handle_t *h, void *arg) {
    int *n = arg;
    melbo_log(MELBO_LOG_ERROR, "coord: a %s handle is still open at exit",
              uv_handle_type_name(uv_handle_get_type(h)));
    (*n)++;
}

/*
 * Orderly stop: every handle the service opened is closed explicitly (connections and the
 * listener, the launchers' process, timer and command handles, the scheduler's idle handle, the
 * tick timer and the signal handles), the loop runs their close callbacks, and the loop must
 * then close with no handle left. Returns 0, or -1 when a handle was left open.
 */
static int service_stop(struct melbo_service *svc) {
    uv_loop_t *loop = svc->co.loop;
    int left = 0;
    melbo_server_close(&svc->server);
    melbo_launchers_close_all(&svc->co);
    melbo_sched_close(&svc->sched);
    if (svc->tick_open)
        uv_close((uv_handle_t *)&svc->tick, NULL);
    if (svc->signals_open) {
        uv_close((uv_handle_t *)&svc->sigterm, NULL);
        uv_close((uv_handle_t *)&svc->sigint, NULL);
    }
    svc->tick_open = svc->signals_open = 0;
    uv_run(loop, UV_RUN_DEFAULT);
    uv_walk(loop, count_open, &left);
    if (uv_loop_close(loop) != 0 && left == 0)
        left = 1;  // only requests are pending: libuv counts them too
    return left ? -1 : 0;
}

/* Finds melbo-rank next to this binary: build/coord/melbo-coord -> build/rank/melbo-rank. */
static void default_rank_binary(char *buf, size_t n) {
    char self[PATH_MAX];
    ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
    buf[0] = '\0';
    if (k <= 0)
        return;
    self[k] = '\0';
    char *slash = strrchr(self, '/');
    if (slash == NULL)
        return;
    *slash = '\0';
    snprintf(buf, n, "%s/../rank/melbo-rank", self);
    if (access(buf, X_OK) == 0)
        return;
    snprintf(buf, n, "%s/melbo-rank", self);
}

/* The banks of job (out.bank.safetensors, or a sweep's out.pK.bank.safetensors) waiting in its
 * directory, stored as an upload would; the job is then DONE. Returns how many. */
static int adopt_banks_of(struct melbo_coord *co, struct melbo_job *j) {
    char dir[PATH_MAX], file[PATH_MAX + 64], id[72];
    struct melbo_err err = {0};
    int n = 0;
    if (melbo_job_dir(co, j->id, dir, sizeof dir) != 0)
        return 0;
    for (int k = -1; k < 100000; k++) {
        if (k < 0)
            snprintf(file, sizeof file, "%s/out.bank.safetensors", dir);
        else
            snprintf(file, sizeof file, "%s/out.p%d.bank.safetensors", dir, k);
        if (access(file, R_OK) != 0) {
            if (k >= 0)
                break;
            continue;
        }
        if (melbo_bank_adopt(co->state_dir, co->db, j, file, id, sizeof id, &err) != 0) {
            melbo_log(MELBO_LOG_WARN, "coord: job %llu: cannot adopt %s: %s",
                      (unsigned long long)j->id, file, err.msg);
            continue;
        }
        snprintf(j->bank_id, sizeof j->bank_id, "%s", id);
        melbo_db_job_update(co->db, j);
        Melbo__JobEvent ev = MELBO__JOB_EVENT__INIT;
        ev.has_kind = ev.has_state = 1;
        ev.kind = MELBO__JOB_EVENT__KIND__BANK;
        ev.state = j->state;
        ev.bank_id = id;
        melbo_job_append(&co->jobs, j, &ev);
        melbo_log(MELBO_LOG_INFO, "coord: job %llu: adopted bank %s from %s",
                  (unsigned long long)j->id, id, file);
        n++;
    }
    if (n > 0) {
        const char *why = "bank adopted from the job's directory (its upload never completed)";
        if (j->state == MELBO__JOB_STATE__FAILED)
            melbo_job_rescue(&co->jobs, j, why);
        else
            melbo_job_set_state(&co->jobs, j, MELBO__JOB_STATE__DONE, why, NULL);
    }
    return n;
}

/* Banks no upload brought (issue 22): a job without a bank whose ranks are gone (never started
 * since, or a pid that no longer runs) and that left a finished bank in its directory. */
static void adopt_banks(struct melbo_coord *co) {
    for (struct melbo_job *j = co->jobs.list; j; j = j->next) {
        if (j->bank_id[0] || j->state == MELBO__JOB_STATE__DONE ||
            j->state == MELBO__JOB_STATE__CANCELLED || j->state == MELBO__JOB_STATE__QUEUED ||
            j->slurm_id[0] || melbo_genjob_is(j) || melbo_genjob_is_warm(j))
            continue;
        if (j->pid > 0 && !melbo_job_state_terminal(j->state) && kill(j->pid, 0) == 0)
            continue; /* its rank 0 may still upload it */
        adopt_banks_of(co, j);
    }
}

/* Jobs that were running when the coordinator stopped: their ranks may still be there. */
static void adopt_jobs(struct melbo_coord *co) {
    for (struct melbo_job *j = co->jobs.list; j; j = j->next) {
        if (melbo_job_state_terminal(j->state))
            continue;
        if (j->slurm_id[0]) { /* still in Slurm's hands: the tick's squeue picks it up again */
            melbo_log(MELBO_LOG_INFO, "coord: job %llu (%s): tracking Slurm job %s again",
                      (unsigned long long)j->id, melbo_job_state_name(j->state), j->slurm_id);
            continue;
        }
        if (j->state == MELBO__JOB_STATE__QUEUED)
            continue;
        if (j->pid > 0) {
            j->adopted = 1;
            melbo_log(MELBO_LOG_INFO, "coord: job %llu (%s): waiting for its ranks (pid %d)",
                      (unsigned long long)j->id, melbo_job_state_name(j->state), j->pid);
        } else {
            j->failed_rank = -1;
            melbo_job_set_state(&co->jobs, j, MELBO__JOB_STATE__FAILED, "lost",
                                "the coordinator stopped before the ranks started");
        }
    }
}

/*
 * Fills svc->co's settings from the command line and STATE/coord.conf. Returns 0, or the exit
 * status (1 or 2) after printing why.
 */
static int serve_settings(struct melbo_service *svc, int argc, char **argv, const char **listen,
                          char *listen_buf, size_t listen_n) {
    struct melbo_coord *co = &svc->co;
    const char *state = arg_value(argc, argv, "--state");
    *listen = arg_value(argc, argv, "--listen");
    if (state == NULL) {
        fprintf(stderr, "melbo-coord serve: --state DIR is required\n");
        return 2;
    }
    if (realpath(state, co->state_dir) == NULL || !melbo_file_is_dir(co->state_dir)) {
        fprintf(stderr, "melbo-coord serve: %s is not a state directory (run melbo-coord init)\n",
                state);
        return 1;
    }
    if (*listen == NULL && read_conf_listen(co->state_dir, listen_buf, listen_n) == 0)
        *listen = listen_buf;
    if (*listen == NULL)
        *listen = "127.0.0.1:7878";
    const char *rb = arg_value(argc, argv, "--rank-binary");
    if (rb)
        snprintf(co->rank_binary, sizeof co->rank_binary, "%s", rb);
    else
        default_rank_binary(co->rank_binary, sizeof co->rank_binary);
    const char *mp = arg_value(argc, argv, "--mpirun");
    snprintf(co->mpirun, sizeof co->mpirun, "%s", mp ? mp : "mpirun");
    const char *et = arg_value(argc, argv, "--export-timeout");
    co->export_timeout_s = et ? atof(et) : 300.0;
    if (!(co->export_timeout_s > 0) || co->export_timeout_s > 86400) {
        fprintf(stderr,
                "melbo-coord serve: --export-timeout must be seconds > 0 (at most 86400), "
                "not '%s'\n",
                et);
        return 2;
    }
    const char *mr = arg_value(argc, argv, "--max-running");
    co->max_running = mr ? atoi(mr) : 2;
    if (co->max_running < 1)
        co->max_running = 1;
    const char *ln = arg_value(argc, argv, "--launcher");
    if (ln && strcmp(ln, "local") && strcmp(ln, "slurm")) {
        fprintf(stderr, "melbo-coord serve: --launcher must be local or slurm, not '%s'\n", ln);
        return 2;
    }
    /* every launcher may hold jobs from an earlier run; new jobs go to the one chosen */
    co->launchers[0] = &melbo_launcher_local;
    co->launchers[1] = &melbo_launcher_slurm;
    co->n_launchers = 2;
    co->launcher = ln && !strcmp(ln, "slurm") ? &melbo_launcher_slurm : &melbo_launcher_local;
    melbo_slurm_conf_defaults(&co->slurm);
    snprintf(co->slurm.template_path, sizeof co->slurm.template_path, "%s", MELBO_SLURM_TEMPLATE);
    char conf[PATH_MAX], *text = NULL;
    melbo_path_join(conf, sizeof conf, co->state_dir, "coord.conf");
    melbo_coord_limits_defaults(&co->limits);
    if (melbo_file_read(conf, &text, NULL, NULL) == 0) {
        struct melbo_err err = {0};
        if (melbo_coord_limits_parse(&co->limits, text, &err) != 0) {
            fprintf(stderr, "melbo-coord serve: %s\n", err.msg);
            free(text);
            return 2;
        }
        melbo_slurm_conf_parse(&co->slurm, text);
        for (const char *l = text; l; l = strchr(l, '\n'), l = l ? l + 1 : NULL)
            if (!strncmp(l, "plaintext_loopback=", 19))
                co->plaintext_loopback = atoi(l + 19) == 1;
        if (ln == NULL && strstr(text, "launcher=slurm"))
            co->launcher = &melbo_launcher_slurm;
        free(text);
    }
    const char *tp = arg_value(argc, argv, "--slurm-template");
    if (tp)
        snprintf(co->slurm.template_path, sizeof co->slurm.template_path, "%s", tp);
    if (co->launcher == &melbo_launcher_slurm && access(co->slurm.template_path, R_OK) != 0) {
        fprintf(stderr, "melbo-coord serve: cannot read the Slurm template %s (--slurm-template)\n",
                co->slurm.template_path);
        return 1;
    }
    return 0;
}

/*
 * `serve`: wires the coordinator together (database and job table; the fan-out and the scheduler
 * subscribed to it; the server with the session handler; tick and signals), runs the loop until
 * SIGTERM / SIGINT, then stops every handle. Returns the exit status (1 also when a handle was
 * left open at exit).
 */
static int cmd_serve(int argc, char **argv) {
    static const char *const known[] = {"--state", "--listen", "--rank-binary", "--mpirun",
                                        "--max-running", "--client-cap", "--launcher",
                                        "--slurm-template", "--export-timeout", NULL};
    if (check_args(argc, argv, 1, known))
        return 2;
    struct melbo_service svc;
    struct melbo_coord *co = &svc.co;
    struct melbo_err err = {0};
    char path[PATH_MAX], listen_buf[128], addr_line[160];
    const char *listen = NULL;
    void *tls_ctx = NULL;  // coord/tls.h's server context; NULL: plaintext_loopback
    int status;
    memset(&svc, 0, sizeof svc);
    if ((status = serve_settings(&svc, argc, argv, &listen, listen_buf, sizeof listen_buf)) != 0)
        return status;
    const char *cc = arg_value(argc, argv, "--client-cap");
    size_t client_cap = cc ? (size_t)strtoull(cc, NULL, 10) : MELBO_COORD_CLIENT_CAP;
    if (client_cap < 65536)
        client_cap = 65536;
    signal(SIGPIPE, SIG_IGN);
    co->loop = uv_default_loop();
    co->loop->data = co;  // the launchers' libuv callbacks find the coordinator here
    status = 1;
    /* the pieces, bottom up: job table, its subscribers (fan-out, scheduler), the server */
    melbo_path_join(path, sizeof path, co->state_dir, "melbo.db");
    if (melbo_db_open(path, &co->db, &err) != 0)
        goto fail;
    melbo_jobs_init(&co->jobs, co->db);
    if (melbo_db_jobs_load(co->db, &co->jobs.list, &err) != 0)
        goto fail;
    melbo_uploads_init(co->state_dir);
    if (melbo_coord_exports_init(co, &err) != 0)
        goto fail;
    if (melbo_fanout_init(&svc.fanout, &co->jobs) != 0 ||
        melbo_sched_init(&svc.sched, co) != 0 || melbo_warm_init(co) != 0) {
        melbo_err_set(&err, MELBO_ENOMEM, "cannot start the scheduler");
        goto fail;
    }
    svc.clients.co = co;
    svc.clients.fanout = &svc.fanout;
    struct melbo_peer_handler h = melbo_clients_handler;
    h.ctx = &svc.clients;
    melbo_server_init(&svc.server, co->loop, client_cap, &h);
    co->server = &svc.server;
    svc.server.limits = &co->limits;  // connections, authentication, output cap
    if (co->plaintext_loopback) {  // no TLS: only where nobody else can listen in
        char host[128];
        int port;
        if (melbo_addr_split(listen, host, sizeof host, &port) != 0 ||
            !melbo_tls_is_loopback(host)) {
            melbo_err_set(&err, MELBO_EINVAL, "coord.conf plaintext_loopback=1 needs a loopback "
                          "listen address (127.0.0.1 or ::1), not '%s'", listen);
            goto fail;
        }
        melbo_log(MELBO_LOG_WARN, "coord: plaintext on loopback (coord.conf plaintext_loopback=1)");
    } else {
        int created;
        if (melbo_tls_ensure(co->state_dir, co->fingerprint, sizeof co->fingerprint, &created,
                             &err) != 0 ||
            (tls_ctx = melbo_tls_server_ctx(co->state_dir, &err)) == NULL)
            goto fail;
        svc.server.tls_ctx = tls_ctx;
        melbo_log(MELBO_LOG_INFO, "coord: TLS 1.3 with %s certificate: MELBO_COORD_FINGERPRINT=%s",
                  created ? "a new" : "the", co->fingerprint);
    }
    if (melbo_server_listen(&svc.server, listen, &err) != 0)
        goto fail;
    snprintf(co->address, sizeof co->address, "%s", svc.server.address);
    melbo_path_join(path, sizeof path, co->state_dir, "address");
    int al = snprintf(addr_line, sizeof addr_line, "%s\n", co->address);
    if (melbo_file_write_atomic(path, addr_line, (size_t)al, &err) != 0)
        goto fail;
    melbo_log(MELBO_LOG_INFO, "coord: serving %s on %s (ranks: %s, launcher %s)", co->state_dir,
              co->address, co->rank_binary, co->launcher->name);
    adopt_banks(co);
    adopt_jobs(co);
    uv_timer_init(co->loop, &svc.tick);
    svc.tick.data = &svc;
    svc.tick_open = 1;
    uv_timer_start(&svc.tick, on_tick, 1000, 1000);
    uv_signal_init(co->loop, &svc.sigterm);
    uv_signal_init(co->loop, &svc.sigint);
    svc.signals_open = 1;
    svc.sigterm.data = svc.sigint.data = &svc;
    uv_signal_start(&svc.sigterm, on_signal, SIGTERM);
    uv_signal_start(&svc.sigint, on_signal, SIGINT);
    melbo_sched_request(&svc.sched);  // jobs left QUEUED by an earlier run
    uv_run(co->loop, UV_RUN_DEFAULT);
    status = 0;
    goto out;
fail:
    fprintf(stderr, "melbo-coord serve: %s\n", err.msg);
out:
    if (co->loop && service_stop(&svc) != 0)
        status = 1;
    melbo_fanout_free(&svc.fanout);
    melbo_server_free(&svc.server);
    melbo_tls_ctx_free(tls_ctx);
    melbo_jobs_free(&co->jobs);
    if (co->db)
        sqlite3_close(co->db);
    return status;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (argc == 3 && !strcmp(argv[1], "serve") &&
        (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h"))) {
        usage(stdout);
        printf("\nlimits (limits.NAME=N lines in STATE/coord.conf, defaults shown):\n");
        melbo_coord_limits_usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("melbo-coord %s\n", MELBO_VERSION);
        return 0;
    }
    if (!strcmp(argv[1], "init"))
        return cmd_init(argc - 1, argv + 1);
    if (!strcmp(argv[1], "serve"))
        return cmd_serve(argc - 1, argv + 1);
    if (!strcmp(argv[1], "token"))
        return cmd_token(argc - 1, argv + 1);
    if (!strcmp(argv[1], "model"))
        return cmd_model(argc - 1, argv + 1);
    if (!strcmp(argv[1], "fsck"))
        return melbo_coord_cmd_fsck(argc - 1, argv + 1);
    if (!strcmp(argv[1], "backup"))
        return melbo_coord_cmd_backup(argc - 1, argv + 1);
    if (!strcmp(argv[1], "restore"))
        return melbo_coord_cmd_restore(argc - 1, argv + 1);
    fprintf(stderr, "melbo-coord: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
