/*
 * coord/requests.c - what an authenticated client may ask: submit, watch, list and show jobs,
 * cancel, fetch a bank in chunks, list and show banks, export a bank or write its report
 * (coord/export.c). The first message of a connection must be
 * Hello with a known token; anything else, or a wrong token, is refused and the connection
 * closed. Every reply carries the request's envelope id; every refusal is an Error with a code
 * and a sentence naming the problem.
 *
 * A submitted job is only queued here (a QUEUED event); the scheduler (coord/sched.h) hears of
 * the event and starts the job after this callback returns.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "coord/banks.h"     // defines: melbo_bank_path, melbo_bank_rows_read
#include "coord/client.h"    // defines: struct melbo_client
#include "coord/clock.h"     // defines: melbo_coord_now
#include "coord/db.h"        // defines: melbo_db_job_insert, melbo_db_banks_query
#include "coord/jobs.h"      // defines: melbo_job_append, melbo_job_find, melbo_jobs_summary
#include "coord/jobspec.h"
#include "coord/launcher.h"  // defines: melbo_launcher_cancel
#include "coord/tokens.h"    // defines: melbo_tokens_check, melbo_random_hex
#include "coord/watch.h"     // defines: melbo_watch_add

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
    if (melbo_tokens_check(cl->co->state_dir, h->token, cl->user, sizeof cl->user) != 0) {
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
 * Submit: validates the spec as the ranks would, records the job (row, secret, QUEUED event) and
 * replies with its id; the job table owns the job from melbo_jobs_add on. A refused spec or a
 * database failure is answered with an Error and nothing is kept.
 */
static void on_submit(struct melbo_client *cl, const Melbo__Envelope *env) {
    struct melbo_coord *co = cl->co;
    struct melbo_err err = {0};
    const Melbo__JobSpec *spec = env->submit->spec;
    struct melbo_job *job = NULL;
    if (spec == NULL) {
        melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_INVALID, 0, "submit without spec");
        return;
    }
    /* validated with the ranks' own option table; what the job table keeps is read off it */
    struct melbo_job_params jp;
    int valid = melbo_jobspec_validate(spec, &jp, &err) == 0;
    job = valid ? calloc(1, sizeof *job) : NULL;
    if (job) {
        snprintf(job->model, sizeof job->model, "%s", jp.train.model);
        snprintf(job->name, sizeof job->name, "%s", jp.job.name ? jp.job.name : "");
        job->vectors = jp.train.vectors;
        job->steps = jp.train.steps;
        job->adapter_rank = jp.train.adapter_rank;
        job->n_ranks = melbo_job_ranks(&jp);
    }
    melbo_job_params_free(&jp);
    if (!valid) {
        melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_INVALID, 0, "%s", err.msg);
        return;
    }
    if (job == NULL)
        goto fail_mem;
    job->spec_len = melbo__job_spec__get_packed_size(spec);
    job->spec = malloc(job->spec_len ? job->spec_len : 1);
    if (job->spec == NULL)
        goto fail_mem;
    melbo__job_spec__pack(spec, job->spec);
    snprintf(job->user, sizeof job->user, "%s", cl->user);
    job->created = melbo_coord_now();
    job->state = MELBO__JOB_STATE__QUEUED;
    if (melbo_random_hex(job->secret, 32) != 0 || melbo_db_job_insert(co->db, job, &err) != 0) {
        melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_INTERNAL, 0,
                           "cannot record the job: %s", err.msg);
        goto fail;
    }
    melbo_jobs_add(&co->jobs, job);
    Melbo__JobEvent ev = MELBO__JOB_EVENT__INIT;
    ev.has_kind = ev.has_state = 1;
    ev.kind = MELBO__JOB_EVENT__KIND__STATE;
    ev.state = MELBO__JOB_STATE__QUEUED;
    ev.detail = "accepted";
    melbo_job_append(&co->jobs, job, &ev);  // the scheduler starts it after this callback
    melbo_log(MELBO_LOG_INFO, "coord: job %llu submitted by %s (%s)", (unsigned long long)job->id,
              cl->user, job->model);
    Melbo__SubmitReply sr = MELBO__SUBMIT_REPLY__INIT;
    sr.has_job_id = 1;
    sr.job_id = job->id;
    Melbo__Envelope r = MELBO__ENVELOPE__INIT;
    r.body_case = MELBO__ENVELOPE__BODY_SUBMITTED;
    r.submitted = &sr;
    reply(cl, env->id, &r);
    return;
fail_mem:
    melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_INTERNAL, 0, "out of memory");
fail:
    if (job)
        free(job->spec);
    free(job);
}

/* The job with id (when has), or NULL after answering request req with ERROR_NOT_FOUND. */
static struct melbo_job *need_job(struct melbo_client *cl, uint64_t req, int has, uint64_t id) {
    struct melbo_job *job = has ? melbo_job_find(&cl->co->jobs, id) : NULL;
    if (job == NULL)
        melbo_client_error(cl, req, MELBO__ERROR_CODE__ERROR_NOT_FOUND, 0, "no job %llu",
                           (unsigned long long)id);
    return job;
}

/* ListJobs: summaries of the newest jobs (of one user when asked), at most limit (1000). */
static void on_list_jobs(struct melbo_client *cl, const Melbo__Envelope *env) {
    const Melbo__ListJobsRequest *q = env->list_jobs;
    size_t limit = q->has_limit && q->limit > 0 ? q->limit : 1000, n = 0;
    Melbo__JobSummary *sums = calloc(limit, sizeof *sums);
    Melbo__JobSummary **ptrs = calloc(limit, sizeof *ptrs);
    if (sums == NULL || ptrs == NULL)
        goto out;
    for (struct melbo_job *j = cl->co->jobs.list; j && n < limit; j = j->next) {
        if (q->user && *q->user && strcmp(q->user, j->user))
            continue;
        melbo__job_summary__init(&sums[n]);
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
static void on_show_job(struct melbo_client *cl, const Melbo__Envelope *env) {
    struct melbo_coord *co = cl->co;
    struct melbo_job *job = need_job(cl, env->id, env->show_job->has_job_id, env->show_job->job_id);
    if (job == NULL)
        return;
    Melbo__JobSummary sum = MELBO__JOB_SUMMARY__INIT;
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
    Melbo__Envelope r = MELBO__ENVELOPE__INIT;
    r.body_case = MELBO__ENVELOPE__BODY_JOB;
    r.job = &sr;
    reply(cl, env->id, &r);
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
    if (strcmp(job->user, cl->user) != 0) {
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
    } else {
        struct melbo_job *job = need_job(cl, env->id, q->has_job_id, q->job_id);
        if (job == NULL)
            return;
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
    if (show && (id == NULL || !melbo_bank_id_valid(id))) {
        melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_INVALID, 0,
                           "'%.80s' is not a bank id (expected hex digits)", id ? id : "");
        return;
    }
    melbo_db_banks_query(cl->co->db, show ? NULL : env->list_banks, id, collect_bank, &bl);
    Melbo__Envelope r = MELBO__ENVELOPE__INIT;
    Melbo__ListBanksReply lr = MELBO__LIST_BANKS_REPLY__INIT;
    if (show) {
        if (bl.n == 0) {
            melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_NOT_FOUND, 0, "no bank %s", id);
            goto out;
        }
        r.body_case = MELBO__ENVELOPE__BODY_BANK;
        r.bank = bl.items[0];
        if (melbo_bank_rows_read(cl->co->state_dir, id, &rows) == 0)
            r.bank->n_rows = rows.n, r.bank->rows = rows.ptrs;
    } else {
        lr.n_banks = bl.n;
        lr.banks = bl.items;
        r.body_case = MELBO__ENVELOPE__BODY_BANKS;
        r.banks = &lr;
    }
    reply(cl, env->id, &r);
out:
    melbo_bank_rows_free(&rows);
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
    default:
        melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_PROTOCOL, 1,
                           "message %d is not a client request", (int)env->body_case);
    }
}
