/*
 * coord/requests.c - what an authenticated client may ask: submit, watch, list and show jobs,
 * cancel, fetch a bank in chunks, list and show banks, export a bank or write its report
 * (coord/export.c). The first message of a connection must be
 * Hello with a known token; anything else, or a wrong token, is refused and the connection
 * closed. Every reply carries the request's envelope id; every refusal is an Error with a code
 * and a sentence naming the problem.
 *
 * A submitted job is only queued here (a QUEUED event); the scheduler (coord/sched.h) hears of
 * the event and starts the job after the callback that recorded it returns. Submit reads the
 * model's config on a worker thread and never opens a file the user named (see on_submit).
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "coord/banks.h"     // defines: melbo_bank_path, melbo_bank_rows_read
#include "coord/client.h"    // defines: struct melbo_client
#include "coord/catalog.h"   // defines: melbo_catalog_on_label / _search / _near
#include "coord/clock.h"     // defines: melbo_coord_now
#include "coord/db.h"        // defines: melbo_db_job_insert, melbo_db_banks_query
#include "coord/jobs.h"      // defines: melbo_job_append, melbo_job_find, melbo_jobs_summary
#include "coord/jobspec.h"
#include "coord/genjob.h"    // defines: melbo_genjob_bank, melbo_genjob_validate
#include "coord/launcher.h"  // defines: melbo_launcher_cancel
#include "coord/tokens.h"    // defines: melbo_tokens_check, melbo_random_hex
#include "coord/uploads.h"   // defines: melbo_upload_chunk, melbo_upload_take
#include "coord/watch.h"
#include "options/sweep.h"    // defines: melbo_sweep_parse, melbo_sweep_apply     // defines: melbo_watch_add

/* Sends env (built) as the reply to request id. */
static void reply(struct melbo_client *cl, uint64_t id, Melbo__Envelope *env) {
    env->has_id = 1;
    env->id = id;
    melbo_client_send(cl, env);
}

/* Hello: the protocol version must match and the token be known; the connection then belongs
 * to that user. Anything else is refused and the connection closed. */
static void on_hello(struct melbo_client *cl, const Melbo__Envelope *env) {
    const Melbo__Hello *h = env->hello;
    if (!h->has_protocol_version || h->protocol_version != MELBO_PROTOCOL_VERSION) {
        melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_VERSION, 1,
                           "protocol version %u is not supported (this coordinator speaks %u)",
                           h->protocol_version, MELBO_PROTOCOL_VERSION);
        return;
    }
    if (melbo_tokens_check_role(cl->co->state_dir, h->token, cl->user, sizeof cl->user,
                                &cl->admin) != 0) {
        melbo_log(MELBO_LOG_WARN, "coord: %s: wrong or missing token", cl->conn.peer);
        melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_AUTH, 1,
                           h->token && *h->token ? "wrong token" : "missing token");
        return;
    }
    cl->kind = MELBO_CLIENT_USER;
    Melbo__HelloOk ok = MELBO__HELLO_OK__INIT;
    ok.has_protocol_version = 1;
    ok.protocol_version = MELBO_PROTOCOL_VERSION;
    ok.user = cl->user;
    ok.server_version = MELBO_VERSION;
    Melbo__Envelope r = MELBO__ENVELOPE__INIT;
    r.body_case = MELBO__ENVELOPE__BODY_HELLO_OK;
    r.hello_ok = &ok;
    reply(cl, env->id, &r);
}

/*
 * The bounds of coord.conf on a validated job (jp resolved), checked before anything is queued:
 * every numeric field against its limits.* value (l is read only: safe on the worker). Returns 0,
 * or MELBO_ERANGE with err naming the option, the value and the limit ("--dp 4096 is over
 * limits.max_dp = 64 (coord.conf)").
 */
static int check_bounds(const struct melbo_coord_limits *l, const struct melbo_job_params *jp,
                        struct melbo_err *err) {
    const struct {
        const char *flag, *key;
        long long value, max;
    } b[] = {
        {"--tp", MELBO_COORD_LIMIT_KEY(max_tp), jp->train.tp, l->max_tp},
        {"--dp", MELBO_COORD_LIMIT_KEY(max_dp), jp->train.dp, l->max_dp},
        {"--threads", MELBO_COORD_LIMIT_KEY(max_threads), jp->train.threads, l->max_threads},
        {"--vectors", MELBO_COORD_LIMIT_KEY(max_vectors), jp->train.vectors, l->max_vectors},
        {"--steps", MELBO_COORD_LIMIT_KEY(max_steps), jp->train.steps, l->max_steps},
        {"--wave", MELBO_COORD_LIMIT_KEY(max_wave), jp->train.wave, l->max_wave},
        {"--max-new-tokens", MELBO_COORD_LIMIT_KEY(max_new_tokens),
         jp->train.gen.max_new_tokens, l->max_new_tokens},
        {"the prompt count", MELBO_COORD_LIMIT_KEY(max_prompts),
         melbo_prompt_opts_count(&jp->train.prompts), l->max_prompts},
    };
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++)
        if (b[i].value > b[i].max)
            return melbo_err_set(err, MELBO_ERANGE, "%s %lld is over %s = %lld (coord.conf)",
                                 b[i].flag, b[i].value, b[i].key, b[i].max);
    return 0;
}

/*
 * The user's share (on the loop: reads the job table): jobs queued or running, and their ranks
 * with this job's n_ranks. Returns 0, or MELBO_ERANGE with err naming the limit.
 */
/* A sweep (options/sweep.h): at most limits.max_sweep_points points, each within the bounds
 * (a --sweep steps=10,1000000 is no way around limits.max_steps). */
static int check_sweep_bounds(const struct melbo_coord_limits *l, const struct melbo_job_params *jp,
                              struct melbo_err *err) {
    struct melbo_sweep sw;
    int ret = melbo_sweep_parse(&sw, &jp->train, err);
    if (ret == 0 && sw.n_points > l->max_sweep_points)
        ret = melbo_err_set(err, MELBO_ERANGE,
                            "the sweep has %lld points: over %s = %lld (coord.conf)", sw.n_points,
                            MELBO_COORD_LIMIT_KEY(max_sweep_points),
                            (long long)l->max_sweep_points);
    for (long long k = 0; ret == 0 && sw.n_axes > 0 && k < sw.n_points; k++) {
        struct melbo_job_params q = *jp; /* the job settings shared; the training copied */
        melbo_train_params_copy(&q.train, &jp->train);
        ret = melbo_sweep_apply(&sw, k, &q.train, err);
        if (ret == 0)
            ret = check_bounds(l, &q, err);
        melbo_train_params_free(&q.train);
        if (ret)
            melbo_err_prefix(err, "sweep point %lld", k);
    }
    melbo_sweep_free(&sw);
    return ret;
}

static int check_user_share(const struct melbo_coord *co, const char *user, int n_ranks,
                            int threads, struct melbo_err *err) {
    const struct melbo_coord_limits *l = &co->limits;
    long long jobs = 0, ranks = n_ranks, all_threads = threads;
    for (const struct melbo_job *j = co->jobs.list; j; j = j->next)
        if (!melbo_job_state_terminal(j->state) && !strcmp(j->user, user)) {
            jobs++;
            ranks += j->n_ranks > 0 ? j->n_ranks : 1;
            all_threads += j->threads > 0 ? j->threads : j->n_ranks > 0 ? j->n_ranks : 1;
        }
    if (jobs + 1 > l->running_jobs_per_user)
        return melbo_err_set(err, MELBO_ERANGE,
                             "%s has %lld jobs queued or running: %s = %lld (coord.conf); wait for "
                             "one to end or cancel one",
                             user, jobs, MELBO_COORD_LIMIT_KEY(running_jobs_per_user),
                             (long long)l->running_jobs_per_user);
    if (ranks > l->ranks_per_user)
        return melbo_err_set(err, MELBO_ERANGE,
                             "this job's %d ranks would make %s's queued and running ranks %lld, "
                             "over %s = %lld (coord.conf)",
                             n_ranks, user, ranks, MELBO_COORD_LIMIT_KEY(ranks_per_user),
                             (long long)l->ranks_per_user);
    if (all_threads > l->threads_per_user)
        return melbo_err_set(err, MELBO_ERANGE,
                             "this job's %d CPU threads would make %s's queued and running threads "
                             "%lld, over %s = %lld (coord.conf)",
                             threads, user, all_threads, MELBO_COORD_LIMIT_KEY(threads_per_user),
                             (long long)l->threads_per_user);
    return 0;
}

/*
 * Submit, in three steps so that the loop never waits on a file:
 *   1. on the loop: the checks that read nothing (melbo_jobspec_check_inputs: no --prompts
 *      path, --init only as an upload, prompt limits) and the uploads this connection finished;
 *   2. on a worker (uv_queue_work): the model resolved against the admin's roots and names and
 *      its config read with caps, the spec validated as the ranks would (melbo_jobspec_validate);
 *   3. back on the loop: the job recorded (row, secret, QUEUED event) with its spec's --model
 *      replaced by the resolved path, its uploads moved into its directory, and the reply.
 * A worker still busy after SUBMIT_TIMEOUT_MS is answered with an Error at once; its result is
 * dropped when it comes. The request is answered on its connection only if that connection is
 * still open (found again by id).
 */
#define SUBMIT_TIMEOUT_MS 10000

struct submit {
    uv_work_t work;
    uv_timer_t timer;
    struct melbo_coord *co;
    struct melbo_server *srv;
    uint64_t conn, req;
    char user[64];
    Melbo__JobSpec *spec;             // unpacked copy, owned
    char uploads[2][PATH_MAX];        // taken uploads (init, calibration-init), "" if none
    int answered;                     // the timeout answered already
    /* the worker's result */
    int ret;
    struct melbo_err err;
    char model[PATH_MAX];
    char name[256];
    int vectors, steps, adapter_rank, n_ranks, threads;
    int gen;             // a gen job (coord/genjob.h): bank is its bank's path in the store
    char bank[PATH_MAX];
    char request_id[72]; // SubmitRequest.request_id, or "" (exactly-once submit)
};

static const char *const upload_names[2] = {"init", "calibration-init"};

static void submit_free(uv_handle_t *h) {
    struct submit *s = h->data;
    for (int i = 0; i < 2; i++)
        if (s->uploads[i][0])
            unlink(s->uploads[i]);
    if (s->spec)
        melbo__job_spec__free_unpacked(s->spec, NULL);
    free(s);
}

/* The CPU threads one rank of a job runs: its --threads, else what OpenMP will start from the
 * environment the launcher passes on (the coordinator's OMP_NUM_THREADS), else 1. */
static int rank_threads(int given) {
    if (given > 0)
        return given;
    const char *env = getenv("OMP_NUM_THREADS");
    long n = env ? strtol(env, NULL, 10) : 0;
    return n > 0 && n < 100000 ? (int)n : 1;
}

static void submit_work(uv_work_t *w) {
    struct submit *s = w->data;
    struct melbo_job_params jp;
    if (s->gen == MELBO_GENJOB_WARM) { /* a model kept loaded (coord/warm.h) */
        int tp = 1;
        s->ret = melbo_genjob_validate_warm(s->spec, s->co->state_dir, s->model, sizeof s->model,
                                            &s->co->limits, &tp, &s->err);
        for (size_t i = 0; s->ret == 0 && i < s->spec->n_options; i++)
            if (s->spec->options[i]->name && !strcmp(s->spec->options[i]->name, "name"))
                snprintf(s->name, sizeof s->name, "%s",
                         s->spec->options[i]->value ? s->spec->options[i]->value : "");
        s->n_ranks = tp;
        s->threads = tp * rank_threads(0);
        return;
    }
    if (s->gen) { /* model and bank were resolved on the loop (melbo_genjob_bank) */
        int n_vec = 0, tp = 1;
        s->ret = melbo_genjob_validate(s->spec, s->model, s->bank, &s->co->limits, &n_vec, &tp,
                                       &s->err);
        for (size_t i = 0; s->ret == 0 && i < s->spec->n_options; i++)
            if (s->spec->options[i]->name && !strcmp(s->spec->options[i]->name, "name"))
                snprintf(s->name, sizeof s->name, "%s",
                         s->spec->options[i]->value ? s->spec->options[i]->value : "");
        s->vectors = n_vec;
        s->n_ranks = tp;
        s->threads = tp * rank_threads(0);
        return;
    }
    /* the bounds first, on the values as given (no model read), again once resolved (--wave) */
    s->ret = melbo_jobspec_parse(s->spec, &jp, &s->err);
    if (s->ret == 0)
        s->ret = check_bounds(&s->co->limits, &jp, &s->err);
    if (s->ret == 0)
        s->ret = check_sweep_bounds(&s->co->limits, &jp, &s->err);
    melbo_job_params_free(&jp);
    if (s->ret == 0)
        s->ret = melbo_jobspec_validate(s->spec, s->co->state_dir, &jp, s->model,
                                        sizeof s->model, &s->err);
    if (s->ret == 0)
        s->ret = check_bounds(&s->co->limits, &jp, &s->err);
    if (s->ret == 0) {
        snprintf(s->name, sizeof s->name, "%s", jp.job.name ? jp.job.name : "");
        s->vectors = jp.train.vectors;
        s->steps = jp.train.steps;
        s->adapter_rank = jp.train.adapter_rank;
        s->n_ranks = melbo_job_ranks(&jp);
        s->threads = s->n_ranks * rank_threads(jp.train.threads);
    }
    melbo_job_params_free(&jp);
}

/* The connection that asked, if it is still open. */
static struct melbo_client *submit_client(struct submit *s) {
    struct melbo_peer *p = melbo_server_find(s->srv, s->conn);
    return p ? melbo_client_of(p) : NULL;
}

static void submit_timeout(uv_timer_t *t) {
    struct submit *s = t->data;
    struct melbo_client *cl = submit_client(s);
    s->answered = 1;
    if (cl)
        melbo_client_error(cl, s->req, MELBO__ERROR_CODE__ERROR_INVALID, 0,
                           "checking the job took more than %d s (reading the model's config); "
                           "nothing was queued",
                           SUBMIT_TIMEOUT_MS / 1000);
}

/* Moves the job's uploads into its directory (STATE/jobs/ID/OPTION.safetensors, 0600). */
static void submit_move_uploads(struct submit *s, const struct melbo_job *job) {
    char dir[PATH_MAX], to[PATH_MAX + 64];
    if (melbo_job_dir(s->co, job->id, dir, sizeof dir) != 0)
        return;
    mkdir(dir, 0700);
    for (int i = 0; i < 2; i++) {
        if (!s->uploads[i][0])
            continue;
        snprintf(to, sizeof to, "%s/%s.safetensors", dir, upload_names[i]);
        if (rename(s->uploads[i], to) != 0)
            melbo_log(MELBO_LOG_WARN, "coord: job %llu: cannot move its --%s upload: %s",
                      (unsigned long long)job->id, upload_names[i], strerror(errno));
        else
            s->uploads[i][0] = '\0';
    }
}

/* The job user submitted earlier with request_id (exactly-once submit), or NULL. */
static struct melbo_job *by_request(struct melbo_coord *co, const char *user, const char *rid) {
    for (struct melbo_job *j = co->jobs.list; rid[0] && j; j = j->next)
        if (!strcmp(j->request_id, rid) && !strcmp(j->user, user))
            return j;
    return NULL;
}

/* Answers req with job's id (existing: an earlier submit with the same request id). */
static void reply_submitted(struct melbo_client *cl, uint64_t req, uint64_t job, int existing) {
    Melbo__SubmitReply sr = MELBO__SUBMIT_REPLY__INIT;
    sr.has_job_id = 1;
    sr.job_id = job;
    sr.has_existing = existing;
    sr.existing = existing;
    Melbo__Envelope r = MELBO__ENVELOPE__INIT;
    r.body_case = MELBO__ENVELOPE__BODY_SUBMITTED;
    r.submitted = &sr;
    reply(cl, req, &r);
}

static void submit_done(uv_work_t *w, int status) {
    struct submit *s = w->data;
    struct melbo_coord *co = s->co;
    struct melbo_client *cl = submit_client(s);
    struct melbo_err err = {0};
    struct melbo_job *job = NULL;
    uv_timer_stop(&s->timer);
    /* a client gone before the check ended: its job is made only when it may ask again (a request
     * id: exactly-once submit), and nobody is answered */
    if (s->answered || status != 0 || (cl == NULL && s->request_id[0] == '\0'))
        goto out;
    struct melbo_job *earlier = by_request(co, s->user, s->request_id);
    if (earlier) { /* the same submit arrived twice while it was checked: one job */
        if (cl)
            reply_submitted(cl, s->req, earlier->id, 1);
        goto out;
    }
    if (s->ret == 0)
        s->ret = check_user_share(co, s->user, s->n_ranks, s->threads, &s->err);
    if (s->ret != 0) {
        if (cl)
            melbo_client_error(cl, s->req, MELBO__ERROR_CODE__ERROR_INVALID, 0, "%s", s->err.msg);
        goto out;
    }
    /* the stored spec names the resolved model, never the path the user gave */
    for (size_t i = 0; i < s->spec->n_options; i++)
        if (s->spec->options[i]->name && !strcmp(s->spec->options[i]->name, "model")) {
            free(s->spec->options[i]->value);
            s->spec->options[i]->value = strdup(s->model);
        }
    if (s->spec->n_options == 0 && s->spec->model) {
        free(s->spec->model);
        s->spec->model = strdup(s->model);
    }
    job = calloc(1, sizeof *job);
    if (job == NULL)
        goto fail_mem;
    snprintf(job->model, sizeof job->model, "%s", s->model);
    snprintf(job->name, sizeof job->name, "%s", s->name);
    snprintf(job->request_id, sizeof job->request_id, "%s", s->request_id);
    job->vectors = s->vectors;
    job->steps = s->steps;
    job->adapter_rank = s->adapter_rank;
    job->n_ranks = s->n_ranks;
    job->threads = s->threads;
    job->command = s->gen + 1;
    job->spec_len = melbo__job_spec__get_packed_size(s->spec);
    job->spec = malloc(job->spec_len ? job->spec_len : 1);
    if (job->spec == NULL)
        goto fail_mem;
    melbo__job_spec__pack(s->spec, job->spec);
    snprintf(job->user, sizeof job->user, "%s", s->user);
    job->created = melbo_coord_now();
    job->state = MELBO__JOB_STATE__QUEUED;
    if (melbo_random_hex(job->secret, 32) != 0 || melbo_db_job_insert(co->db, job, &err) != 0) {
        if (cl)
            melbo_client_error(cl, s->req, MELBO__ERROR_CODE__ERROR_INTERNAL, 0,
                               "%s", err.msg); /* "cannot record the job: ..." */
        goto fail;
    }
    submit_move_uploads(s, job);
    melbo_jobs_add(&co->jobs, job);
    Melbo__JobEvent ev = MELBO__JOB_EVENT__INIT;
    ev.has_kind = ev.has_state = 1;
    ev.kind = MELBO__JOB_EVENT__KIND__STATE;
    ev.state = MELBO__JOB_STATE__QUEUED;
    ev.detail = "accepted";
    melbo_job_append(&co->jobs, job, &ev);  // the scheduler starts it after this callback
    melbo_log(MELBO_LOG_INFO, "coord: job %llu submitted by %s (%s)", (unsigned long long)job->id,
              s->user, job->model);
    if (cl)
        reply_submitted(cl, s->req, job->id, 0);
    goto out;
fail_mem:
    if (cl)
        melbo_client_error(cl, s->req, MELBO__ERROR_CODE__ERROR_INTERNAL, 0, "out of memory");
fail:
    if (job)
        free(job->spec);
    free(job);
out:
    if (!uv_is_closing((uv_handle_t *)&s->timer))
        uv_close((uv_handle_t *)&s->timer, submit_free);
}

static void on_submit(struct melbo_client *cl, const Melbo__Envelope *env) {
    struct melbo_coord *co = cl->co;
    struct melbo_err err = {0};
    const Melbo__JobSpec *spec = env->submit->spec;
    if (spec == NULL) {
        melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_INVALID, 0, "submit without spec");
        return;
    }
    const char *rid = env->submit->request_id ? env->submit->request_id : "";
    size_t rid_len = strlen(rid);
    if (rid_len && (rid_len < 16 || rid_len > 64 || strspn(rid, "0123456789abcdefghijklmnopqrstuv"
                                                                "wxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_-") != rid_len)) {
        melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_INVALID, 0,
                           "request_id must be 16 to 64 characters of [0-9a-zA-Z_-]");
        return;
    }
    struct melbo_job *earlier = by_request(co, cl->user, rid);
    if (earlier) { /* a retry of a submit that made its job: that job, not a second one */
        melbo_log(MELBO_LOG_INFO, "coord: job %llu: submit retried by %s (request %s)",
                  (unsigned long long)earlier->id, cl->user, rid);
        reply_submitted(cl, env->id, earlier->id, 1);
        return;
    }
    if (melbo_jobspec_check_inputs(spec, &co->limits, &err) != 0 ||
        melbo_disk_check(co->state_dir, co->limits.disk_reserve_mb, 0, &err) != 0) {
        melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_INVALID, 0, "%s", err.msg);
        return;
    }
    struct submit *s = calloc(1, sizeof *s);
    size_t len = melbo__job_spec__get_packed_size(spec);
    uint8_t *buf = s ? malloc(len ? len : 1) : NULL;
    if (buf) {
        melbo__job_spec__pack(spec, buf);
        s->spec = melbo__job_spec__unpack(NULL, len, buf);
    }
    free(buf);
    if (s == NULL || s->spec == NULL) {
        if (s)
            free(s);
        melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_INTERNAL, 0, "out of memory");
        return;
    }
    s->co = co;
    s->srv = cl->conn.srv;
    s->conn = cl->conn.id;
    s->req = env->id;
    snprintf(s->user, sizeof s->user, "%s", cl->user);
    snprintf(s->request_id, sizeof s->request_id, "%s", rid);
    s->work.data = s->timer.data = s;
    uv_timer_init(co->loop, &s->timer);
    int has_bank = 0;
    for (size_t i = 0; i < spec->n_options; i++)
        has_bank |= spec->options[i]->name && !strcmp(spec->options[i]->name, "bank");
    if ((s->gen = melbo_genjob_of_spec(spec, &err)) < 0 ||
        ((s->gen == MELBO_GENJOB_GEN || (s->gen == MELBO_GENJOB_WARM && has_bank)) &&
         melbo_genjob_bank(cl, spec, s->bank, s->model, sizeof s->bank, &err) != 0)) {
        melbo_client_error(cl, env->id,
                           err.code == MELBO_ENOENT ? MELBO__ERROR_CODE__ERROR_NOT_FOUND
                                                    : MELBO__ERROR_CODE__ERROR_INVALID,
                           0, "%s", err.msg);
        uv_close((uv_handle_t *)&s->timer, submit_free);
        return;
    }
    /* the uploads the spec names must be finished on this connection */
    for (size_t i = 0; i < spec->n_options; i++)
        for (int k = 0; k < 2; k++)
            if (spec->options[i]->name && !strcmp(spec->options[i]->name, upload_names[k]) &&
                !s->uploads[k][0] &&
                melbo_upload_take(s->srv, s->conn, upload_names[k], s->uploads[k],
                                  sizeof s->uploads[k], &err) != 0) {
                melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_INVALID, 0, "%s",
                                   err.msg);
                uv_close((uv_handle_t *)&s->timer, submit_free);
                return;
            }
    if (uv_queue_work(co->loop, &s->work, submit_work, submit_done) != 0) {
        melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_INTERNAL, 0,
                           "cannot check the job now");
        uv_close((uv_handle_t *)&s->timer, submit_free);
        return;
    }
    uv_timer_start(&s->timer, submit_timeout, SUBMIT_TIMEOUT_MS, 0);
}

/* InputUpload: one chunk of a file `melbo submit` uploads (coord/uploads.h), acknowledged. */
static void on_input_upload(struct melbo_client *cl, const Melbo__Envelope *env) {
    struct melbo_err err = {0};
    uint64_t received = 0;
    if (melbo_upload_chunk(cl->conn.srv, cl->conn.id, cl->co->state_dir, &cl->co->limits,
                           env->input_upload, &received, &err) != 0) {
        melbo_client_error(cl, env->id,
                           err.code == MELBO_ERANGE ? MELBO__ERROR_CODE__ERROR_TOO_LARGE
                                                    : MELBO__ERROR_CODE__ERROR_INVALID,
                           0, "%s", err.msg);
        return;
    }
    Melbo__InputUploadAck ack = MELBO__INPUT_UPLOAD_ACK__INIT;
    ack.option = env->input_upload->option;
    ack.has_received = 1;
    ack.received = received;
    Melbo__Envelope r = MELBO__ENVELOPE__INIT;
    r.body_case = MELBO__ENVELOPE__BODY_INPUT_UPLOAD_ACK;
    r.input_upload_ack = &ack;
    reply(cl, env->id, &r);
}

/* 1 when job was submitted with --private (read off its spec once, then kept in the job). */
static int job_private(struct melbo_job *job) {
    if (job->visibility == 0) {
        Melbo__JobSpec *spec = melbo__job_spec__unpack(NULL, job->spec_len, job->spec);
        job->visibility = 1;
        for (size_t i = 0; spec && i < spec->n_options; i++) {
            const char *n = spec->options[i]->name ? spec->options[i]->name : "";
            if (!strcmp(n, "private") || !strcmp(n, "no-private"))
                job->visibility = n[0] == 'p' ? 2 : 1; /* the last one given wins */
        }
        if (spec)
            melbo__job_spec__free_unpacked(spec, NULL);
    }
    return job->visibility == 2;
}

/* 1 when cl may see job (and its prompts, events and bank): its owner, an admin, or anyone
 * when the job is not private. */
static int may_see(const struct melbo_client *cl, struct melbo_job *job) {
    return cl->admin || !strcmp(job->user, cl->user) || !job_private(job);
}

int melbo_coord_bank_hidden(const struct melbo_client *cl, const char *bank_id) {
    for (struct melbo_job *j = cl->co->jobs.list; j && bank_id; j = j->next)
        if (j->bank_id[0] && !strcmp(j->bank_id, bank_id) && !may_see(cl, j))
            return 1;
    return 0;
}

/* The job with id (when has) that cl may see, or NULL after answering request req with
 * ERROR_NOT_FOUND (the same answer for another user's private job: its existence is not told). */
static struct melbo_job *need_job(struct melbo_client *cl, uint64_t req, int has, uint64_t id) {
    struct melbo_job *job = has ? melbo_job_find(&cl->co->jobs, id) : NULL;
    if (job && !may_see(cl, job))
        job = NULL;
    if (job == NULL)
        melbo_client_error(cl, req, MELBO__ERROR_CODE__ERROR_NOT_FOUND, 0, "no job %llu",
                           (unsigned long long)id);
    return job;
}

/* 1 when a list request's limit is within limits.max_list; otherwise answers req with an Error
 * naming the limit and returns 0. */
static int list_limit_ok(struct melbo_client *cl, uint64_t req, int has, uint32_t limit) {
    if (!has || (int64_t)limit <= cl->co->limits.max_list)
        return 1;
    melbo_client_error(cl, req, MELBO__ERROR_CODE__ERROR_INVALID, 0,
                       "--limit %lu is over %s = %lld (coord.conf); ask for fewer rows",
                       (unsigned long)limit, MELBO_COORD_LIMIT_KEY(max_list),
                       (long long)cl->co->limits.max_list);
    return 0;
}

/* ListJobs: summaries of the newest jobs (of one user when asked), at most limit (1000). */
static void on_list_jobs(struct melbo_client *cl, const Melbo__Envelope *env) {
    const Melbo__ListJobsRequest *q = env->list_jobs;
    if (!list_limit_ok(cl, env->id, q->has_limit, q->limit))
        return;
    size_t limit = q->has_limit && q->limit > 0 ? q->limit : 1000, n = 0;
    Melbo__JobSummary *sums = calloc(limit, sizeof *sums);
    Melbo__JobSummary **ptrs = calloc(limit, sizeof *ptrs);
    if (sums == NULL || ptrs == NULL) {
        melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_INTERNAL, 0, "out of memory");
        goto out;
    }
    for (struct melbo_job *j = cl->co->jobs.list; j && n < limit; j = j->next) {
        if ((q->user && *q->user && strcmp(q->user, j->user)) || !may_see(cl, j))
            continue;
        melbo__job_summary__init(&sums[n]);
        melbo_genjob_is(j); /* the summary names gen jobs */
        melbo_jobs_summary(j, &sums[n]);
        ptrs[n] = &sums[n];
        n++;
    }
    Melbo__ListJobsReply lr = MELBO__LIST_JOBS_REPLY__INIT;
    lr.n_jobs = n;
    lr.jobs = ptrs;
    Melbo__Envelope r = MELBO__ENVELOPE__INIT;
    r.body_case = MELBO__ENVELOPE__BODY_JOBS;
    r.jobs = &lr;
    reply(cl, env->id, &r);
out:
    free(sums);
    free(ptrs);
}

/* Catalog entries copied out of the database (collect_bank), freed with bank_list_free. */
struct bank_list {
    Melbo__BankInfo **items;
    size_t n, cap;
};

static int collect_bank(void *ctx, const Melbo__BankInfo *b);
static void bank_list_free(struct bank_list *bl);

/* ShowJob: the summary, the spec, the last STEP and, once the bank is stored, its catalog entry
 * and per vector (or adapter, for an adapter bank) its final objective and the first line of its
 * first completion. Everything built here is freed here. */
/* A gen job's completions, collected from its events (owned). */
struct completions {
    Melbo__Completion **items;
    size_t n;
};

static int collect_completion(void *ctx, uint64_t num, const uint8_t *blob, size_t len) {
    struct completions *cs = ctx;
    (void)num;
    Melbo__JobEvent *ev = melbo__job_event__unpack(NULL, len, blob);
    if (ev == NULL)
        return 0;
    if (ev->kind == MELBO__JOB_EVENT__KIND__COMPLETION) {
        Melbo__Completion *c = calloc(1, sizeof *c), **grown =
            realloc(cs->items, sizeof *cs->items * (cs->n + 1));
        if (c && grown) {
            cs->items = grown;
            melbo__completion__init(c);
            c->has_sequence = 1;
            c->sequence = ev->sequence;
            c->label = strdup(ev->detail ? ev->detail : "");
            c->text = strdup(ev->text ? ev->text : "");
            cs->items[cs->n++] = c;
        } else {
            free(c);
            if (grown)
                cs->items = grown;
        }
    }
    melbo__job_event__free_unpacked(ev, NULL);
    return 0;
}

/* A sweep's points, collected from its BANK events (detail: the point's JSON row; owned). */
struct sweep_rows {
    Melbo__SweepPoint **items;
    size_t n;
};

static int collect_sweep(void *ctx, uint64_t num, const uint8_t *blob, size_t len) {
    struct sweep_rows *sr = ctx;
    (void)num;
    Melbo__JobEvent *ev = melbo__job_event__unpack(NULL, len, blob);
    cJSON *o = ev && ev->kind == MELBO__JOB_EVENT__KIND__BANK && ev->detail && *ev->detail
                   ? cJSON_Parse(ev->detail)
                   : NULL;
    const cJSON *pt = cJSON_GetObjectItem(o, "point");
    if (cJSON_IsNumber(pt)) {
        Melbo__SweepPoint *p = calloc(1, sizeof *p), **grown =
            realloc(sr->items, sizeof *sr->items * (sr->n + 1));
        if (grown)
            sr->items = grown;
        if (p && grown) {
            melbo__sweep_point__init(p);
            p->has_point = 1;
            p->point = (int32_t)pt->valuedouble;
            const char *label = cJSON_GetStringValue(cJSON_GetObjectItem(o, "label"));
            p->label = strdup(label ? label : "");
            p->bank_id = strdup(ev->bank_id ? ev->bank_id : "");
            const char *keys[3] = {"radius", "median_z", "degenerate"};
            double *dst[3] = {&p->radius, &p->median_z, &p->degenerate};
            protobuf_c_boolean *has[3] = {&p->has_radius, &p->has_median_z, &p->has_degenerate};
            for (int k = 0; k < 3; k++) {
                const cJSON *v = cJSON_GetObjectItem(o, keys[k]);
                if (cJSON_IsNumber(v))
                    *dst[k] = v->valuedouble, *has[k] = 1;
            }
            const cJSON *c = cJSON_GetObjectItem(o, "clusters");
            if (cJSON_IsNumber(c))
                p->has_clusters = 1, p->clusters = (int32_t)c->valuedouble;
            /* a resend after a reconnect repeats a point: the last one stands */
            size_t i = 0;
            while (i < sr->n && sr->items[i]->point != p->point)
                i++;
            if (i < sr->n) {
                free(sr->items[i]->label), free(sr->items[i]->bank_id), free(sr->items[i]);
                sr->items[i] = p;
            } else {
                sr->items[sr->n++] = p;
            }
        } else {
            free(p);
        }
    }
    cJSON_Delete(o);
    if (ev)
        melbo__job_event__free_unpacked(ev, NULL);
    return 0;
}

static int by_point(const void *a, const void *b) {
    const Melbo__SweepPoint *x = *(Melbo__SweepPoint *const *)a, *y = *(Melbo__SweepPoint *const *)b;
    return (x->point > y->point) - (x->point < y->point);
}

static void sweep_rows_free(struct sweep_rows *sr) {
    for (size_t i = 0; i < sr->n; i++) {
        free(sr->items[i]->label);
        free(sr->items[i]->bank_id);
        free(sr->items[i]);
    }
    free(sr->items);
}

static int by_sequence(const void *a, const void *b) {
    const Melbo__Completion *x = *(Melbo__Completion *const *)a, *y = *(Melbo__Completion *const *)b;
    return (x->sequence > y->sequence) - (x->sequence < y->sequence);
}

static void completions_free(struct completions *cs) {
    for (size_t i = 0; i < cs->n; i++) {
        free(cs->items[i]->label);
        free(cs->items[i]->text);
        free(cs->items[i]);
    }
    free(cs->items);
}

static void on_show_job(struct melbo_client *cl, const Melbo__Envelope *env) {
    struct melbo_coord *co = cl->co;
    struct melbo_job *job = need_job(cl, env->id, env->show_job->has_job_id, env->show_job->job_id);
    if (job == NULL)
        return;
    Melbo__JobSummary sum = MELBO__JOB_SUMMARY__INIT;
    int gen = melbo_genjob_is(job);
    melbo_jobs_summary(job, &sum);
    Melbo__ShowJobReply sr = MELBO__SHOW_JOB_REPLY__INIT;
    sr.job = &sum;
    sr.spec = melbo__job_spec__unpack(NULL, job->spec_len, job->spec);
    sr.last_step = job->last_step ? melbo__step_info__unpack(NULL, job->last_step_len, job->last_step)
                                  : NULL;
    struct melbo_bank_rows rows = {0};
    struct bank_list bl = {0};
    if (job->bank_id[0]) {
        melbo_db_banks_query(co->db, NULL, job->bank_id, collect_bank, &bl);
        sr.bank = bl.n ? bl.items[0] : NULL;
        if (melbo_bank_rows_read(co->state_dir, job->bank_id, &rows) == 0) {
            if (rows.adapter)
                sr.n_adapters = rows.n, sr.adapters = rows.ptrs;
            else
                sr.n_vectors = rows.n, sr.vectors = rows.ptrs;
        }
    }
    struct completions cs = {0};
    if (gen) { /* a gen job's completions are its COMPLETION events */
        melbo_db_events_read(co->db, job->id, 1, INT_MAX, collect_completion, &cs);
        if (cs.n > 1)
            qsort(cs.items, cs.n, sizeof *cs.items, by_sequence);
        sr.n_completions = cs.n, sr.completions = cs.items;
    }
    struct sweep_rows sw = {0};
    if (!gen && job->bank_id[0]) { /* a sweep's banks (none for a plain job) */
        melbo_db_events_read(co->db, job->id, 1, INT_MAX, collect_sweep, &sw);
        if (sw.n > 1)
            qsort(sw.items, sw.n, sizeof *sw.items, by_point);
        sr.n_sweep = sw.n, sr.sweep = sw.items;
    }
    Melbo__Envelope r = MELBO__ENVELOPE__INIT;
    r.body_case = MELBO__ENVELOPE__BODY_JOB;
    r.job = &sr;
    reply(cl, env->id, &r);
    sweep_rows_free(&sw);
    completions_free(&cs);
    melbo_bank_rows_free(&rows);
    bank_list_free(&bl);
    if (sr.spec)
        melbo__job_spec__free_unpacked(sr.spec, NULL);
    if (sr.last_step)
        melbo__step_info__free_unpacked(sr.last_step, NULL);
}

/* Cancel: only the owner, only a job not yet final; the launcher holding the job stops it (or
 * it becomes CANCELLED at once) and the reply carries the state after the request. */
static void on_cancel(struct melbo_client *cl, const Melbo__Envelope *env) {
    struct melbo_job *job = need_job(cl, env->id, env->cancel->has_job_id, env->cancel->job_id);
    if (job == NULL)
        return;
    if (strcmp(job->user, cl->user) != 0 && !cl->admin) { /* an admin may cancel any job */
        melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_PERMISSION, 0,
                           "job %llu belongs to %s", (unsigned long long)job->id, job->user);
        return;
    }
    if (melbo_job_state_terminal(job->state)) {
        melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_STATE, 0, "job %llu is already %s",
                           (unsigned long long)job->id, melbo_job_state_name(job->state));
        return;
    }
    melbo_log(MELBO_LOG_INFO, "coord: job %llu: cancel requested by %s",
              (unsigned long long)job->id, cl->user);
    melbo_launcher_cancel(cl->co, job);
    Melbo__CancelReply cr = MELBO__CANCEL_REPLY__INIT;
    cr.has_job_id = cr.has_state = 1;
    cr.job_id = job->id;
    cr.state = job->state;
    Melbo__Envelope r = MELBO__ENVELOPE__INIT;
    r.body_case = MELBO__ENVELOPE__BODY_CANCELLED;
    r.cancelled = &cr;
    reply(cl, env->id, &r);
}

void melbo_coord_fetch_pump(struct melbo_client *cl) {
    static uint8_t chunk[MELBO_CHUNK_MAX];
    while (cl->fetch && !cl->conn.closing && melbo_client_queued(cl) < MELBO_COORD_LOW_WATER) {
        size_t got = fread(chunk, 1, sizeof chunk, cl->fetch);
        if (got == 0 && ferror(cl->fetch)) {
            fclose(cl->fetch);
            cl->fetch = NULL;
            melbo_client_error(cl, cl->fetch_req, MELBO__ERROR_CODE__ERROR_INTERNAL, 0,
                               "cannot read bank %s", cl->fetch_id);
            return;
        }
        melbo_sha256_update(&cl->fetch_sha, chunk, got);
        Melbo__BankChunk bc = MELBO__BANK_CHUNK__INIT;
        bc.bank_id = cl->fetch_id;
        bc.has_offset = bc.has_data = bc.has_total_size = bc.has_last = 1;
        bc.offset = cl->fetch_off;
        bc.data.data = chunk;
        bc.data.len = got;
        bc.total_size = cl->fetch_size;
        cl->fetch_off += got;
        bc.last = cl->fetch_off >= cl->fetch_size || got == 0;
        char hex[65];
        if (bc.last) {
            uint8_t d[32];
            melbo_sha256_final(&cl->fetch_sha, d);
            melbo_sha256_hex(d, hex);
            bc.sha256 = hex;
            fclose(cl->fetch);
            cl->fetch = NULL;
        }
        Melbo__Envelope r = MELBO__ENVELOPE__INIT;
        r.body_case = MELBO__ENVELOPE__BODY_BANK_CHUNK;
        r.bank_chunk = &bc;
        reply(cl, cl->fetch_req, &r);
    }
}

/* Fetch: opens the bank (by id, or the job's) and starts sending it in chunks, paced by the
 * connection's queue (melbo_coord_fetch_pump); one fetch per connection at a time. */
static void on_fetch(struct melbo_client *cl, const Melbo__Envelope *env) {
    const Melbo__FetchRequest *q = env->fetch;
    char id[72], path[PATH_MAX];
    if (cl->fetch) {
        melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_STATE, 0,
                           "a fetch is already in progress on this connection");
        return;
    }
    if (q->bank_id && *q->bank_id) {
        if (!melbo_bank_id_valid(q->bank_id)) {
            melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_INVALID, 0,
                               "'%.80s' is not a bank id (expected hex digits)", q->bank_id);
            return;
        }
        snprintf(id, sizeof id, "%s", q->bank_id);
        if (melbo_coord_bank_hidden(cl, id)) {
            melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_NOT_FOUND, 0, "no bank %s",
                               id);
            return;
        }
    } else {
        struct melbo_job *job = need_job(cl, env->id, q->has_job_id, q->job_id);
        if (job == NULL)
            return;
        if (job->bank_id[0] == '\0' && (melbo_genjob_is(job) || melbo_genjob_is_warm(job))) {
            melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_STATE, 0,
                               "job %llu is a %s job: it makes no bank (its completions: melbo "
                               "show %llu --json)",
                               (unsigned long long)job->id, melbo_genjob_is(job) ? "gen" : "warm",
                               (unsigned long long)job->id);
            return;
        }
        if (job->bank_id[0] == '\0') {
            melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_STATE, 0,
                               "job %llu has no bank (it is %s)", (unsigned long long)job->id,
                               melbo_job_state_name(job->state));
            return;
        }
        snprintf(id, sizeof id, "%s", job->bank_id);
    }
    if (melbo_bank_path(cl->co->state_dir, id, path, sizeof path) != 0 ||
        (cl->fetch = fopen(path, "rb")) == NULL) {
        melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_NOT_FOUND, 0, "no bank %s", id);
        return;
    }
    fseek(cl->fetch, 0, SEEK_END);
    cl->fetch_size = (uint64_t)ftell(cl->fetch);
    fseek(cl->fetch, 0, SEEK_SET);
    cl->fetch_off = 0;
    cl->fetch_req = env->id;
    snprintf(cl->fetch_id, sizeof cl->fetch_id, "%s", id);
    melbo_sha256_init(&cl->fetch_sha);
    melbo_coord_fetch_pump(cl);
}


static char *dup_s(const char *s) {
    return strdup(s ? s : "");
}

/* melbo_db_banks_query callback: keeps a copy of b (strings duplicated) in the bank_list ctx. */
static int collect_bank(void *ctx, const Melbo__BankInfo *b) {
    struct bank_list *bl = ctx;
    if (bl->n == bl->cap) {
        size_t cap = bl->cap ? bl->cap * 2 : 16;
        Melbo__BankInfo **ni = realloc(bl->items, cap * sizeof *ni);
        if (ni == NULL)
            return 1;
        bl->items = ni;
        bl->cap = cap;
    }
    Melbo__BankInfo *c = malloc(sizeof *c);
    if (c == NULL)
        return 1;
    *c = *b;
    c->bank_id = dup_s(b->bank_id);
    c->model = dup_s(b->model);
    c->fingerprint = dup_s(b->fingerprint);
    c->user = dup_s(b->user);
    c->prompts = dup_s(b->prompts);
    c->sha256 = dup_s(b->sha256);
    c->kind = dup_s(b->kind);
    c->adapter_module = b->adapter_module ? strdup(b->adapter_module) : NULL;  // adapters only
    bl->items[bl->n++] = c;
    return 0;
}

/* Frees every copy collect_bank made, and the list. */
static void bank_list_free(struct bank_list *bl) {
    for (size_t i = 0; i < bl->n; i++) {
        Melbo__BankInfo *c = bl->items[i];
        free(c->bank_id), free(c->model), free(c->fingerprint), free(c->user), free(c->prompts);
        free(c->sha256), free(c->kind), free(c->adapter_module), free(c);
    }
    free(bl->items);
}

/* ListBanks (show == 0: the catalog rows matching the filter) or ShowBank (show: one row, with
 * the bank's vectors or adapters read off the stored file). */
static void on_banks(struct melbo_client *cl, const Melbo__Envelope *env, int show) {
    struct bank_list bl = {0};
    struct melbo_bank_rows rows = {0};
    const char *id = show ? env->show_bank->bank_id : NULL;
    if (!show && !list_limit_ok(cl, env->id, env->list_banks->has_limit, env->list_banks->limit))
        return;
    if (show && (id == NULL || !melbo_bank_id_valid(id))) {
        melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_INVALID, 0,
                           "'%.80s' is not a bank id (expected hex digits)", id ? id : "");
        return;
    }
    melbo_db_banks_query(cl->co->db, show ? NULL : env->list_banks, id, collect_bank, &bl);
    /* the banks of private jobs this user may not see go to the end, left out of the reply
     * (show: "no bank"); bank_list_free still frees all bl.n */
    size_t kept = 0;
    for (size_t i = 0; i < bl.n; i++)
        if (!melbo_coord_bank_hidden(cl, bl.items[i]->bank_id)) {
            Melbo__BankInfo *t = bl.items[kept];
            bl.items[kept++] = bl.items[i];
            bl.items[i] = t;
        }
    Melbo__Envelope r = MELBO__ENVELOPE__INIT;
    Melbo__ListBanksReply lr = MELBO__LIST_BANKS_REPLY__INIT;
    if (show) {
        if (kept == 0) {
            melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_NOT_FOUND, 0, "no bank %s", id);
            goto out;
        }
        r.body_case = MELBO__ENVELOPE__BODY_BANK;
        r.bank = bl.items[0];
        if (melbo_bank_rows_read(cl->co->state_dir, id, &rows) == 0)
            r.bank->n_rows = rows.n, r.bank->rows = rows.ptrs;
        r.bank->provenance = melbo_catalog_provenance(cl->co->db, id);  // freed below
    } else {
        lr.n_banks = kept;
        lr.banks = bl.items;
        r.body_case = MELBO__ENVELOPE__BODY_BANKS;
        r.banks = &lr;
    }
    reply(cl, env->id, &r);
out:
    melbo_bank_rows_free(&rows);
    if (show && kept)
        free(bl.items[0]->provenance);
    bank_list_free(&bl);
}

void melbo_coord_on_client_message(struct melbo_client *cl, const Melbo__Envelope *env) {
    if (cl->kind == MELBO_CLIENT_NEW) {
        if (env->body_case == MELBO__ENVELOPE__BODY_HELLO)
            on_hello(cl, env);
        else
            melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_AUTH, 1,
                               "authenticate first (Hello with a token)");
        return;
    }
    switch (env->body_case) {
    case MELBO__ENVELOPE__BODY_SUBMIT:
        on_submit(cl, env);
        break;
    case MELBO__ENVELOPE__BODY_INPUT_UPLOAD:
        on_input_upload(cl, env);
        break;
    case MELBO__ENVELOPE__BODY_WATCH: {
        const Melbo__WatchRequest *w = env->watch;
        struct melbo_job *job = need_job(cl, env->id, w->has_job_id, w->job_id);
        if (job && melbo_watch_add(cl->fanout, &cl->conn, &cl->watches, job,
                                   w->has_from_event ? w->from_event : 1,
                                   w->has_follow ? w->follow : 1, env->id) != 0)
            melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_INTERNAL, 0, "out of memory");
        break;
    }
    case MELBO__ENVELOPE__BODY_LIST_JOBS:
        on_list_jobs(cl, env);
        break;
    case MELBO__ENVELOPE__BODY_SHOW_JOB:
        on_show_job(cl, env);
        break;
    case MELBO__ENVELOPE__BODY_CANCEL:
        on_cancel(cl, env);
        break;
    case MELBO__ENVELOPE__BODY_FETCH:
        on_fetch(cl, env);
        break;
    case MELBO__ENVELOPE__BODY_LIST_BANKS:
        on_banks(cl, env, 0);
        break;
    case MELBO__ENVELOPE__BODY_SHOW_BANK:
        on_banks(cl, env, 1);
        break;
    case MELBO__ENVELOPE__BODY_BANK_EXPORT:
    case MELBO__ENVELOPE__BODY_BANK_REPORT:
        melbo_coord_export_request(cl, env);
        break;
    case MELBO__ENVELOPE__BODY_LABEL:  /* the lab catalog (coord/catalog.h) */
        melbo_catalog_on_label(cl, env);
        break;
    case MELBO__ENVELOPE__BODY_SEARCH:
        melbo_catalog_on_search(cl, env);
        break;
    case MELBO__ENVELOPE__BODY_NEAR:
        melbo_catalog_on_near(cl, env);
        break;
    default:
        melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_PROTOCOL, 1,
                           "message %d is not a client request", (int)env->body_case);
    }
}
