/*
 * coord/ranks.c - rank 0's side of the protocol: RankHello with the job's secret, numbered
 * events (stored once, acknowledged once per read), log lines, the bank upload, done / failed.
 *
 * Resend after reconnect: the rank numbers its events 1, 2, ...; RankHelloOk tells it the last
 * number stored (the maximum rank_seq in the event log, which survives a kill -9), and any event
 * at or below it is acknowledged again but not stored twice.
 *
 * The rank link of a job is recorded in the job as the connection's id (job->rank_conn), never
 * as a pointer, so the job table knows nothing of connections.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "common/log.h"
#include "coord/catalog.h" // defines: melbo_catalog_set_sweep
#include "coord/genjob.h" // defines: melbo_genjob_is
#include "coord/banks.h"   // defines: struct melbo_bank_upload, melbo_bank_store
#include "coord/client.h"  // defines: struct melbo_client
#include "coord/db.h"      // defines: melbo_db_job_update
#include "coord/jobs.h"    // defines: melbo_job_append*, melbo_job_set_state, melbo_job_find
#include "coord/tokens.h"  // defines: melbo_secret_equal

/* Sends RankAck with the last rank event stored (done: the job is settled, the rank may go). */
static void send_ack(struct melbo_client *cl, int done) {
    Melbo__RankAck ack = MELBO__RANK_ACK__INIT;
    ack.has_last_seq = 1;
    ack.last_seq = cl->job->rank_seq;
    ack.has_done = done;
    ack.done = done;
    Melbo__Envelope env = MELBO__ENVELOPE__INIT;
    env.body_case = MELBO__ENVELOPE__BODY_RANK_ACK;
    env.rank_ack = &ack;
    melbo_client_send(cl, &env);
}

void melbo_coord_rank_hello(struct melbo_client *cl, const Melbo__Envelope *env) {
    struct melbo_coord *co = cl->co;
    const Melbo__RankHello *h = env->rank_hello;
    if (!h->has_protocol_version || h->protocol_version != MELBO_PROTOCOL_VERSION) {
        melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_VERSION, 1,
                           "protocol version %u is not supported (this coordinator speaks %u)",
                           h->protocol_version, MELBO_PROTOCOL_VERSION);
        return;
    }
    struct melbo_job *job = h->has_job_id ? melbo_job_find(&co->jobs, h->job_id) : NULL;
    if (job == NULL || h->secret == NULL || !melbo_secret_equal(h->secret, job->secret)) {
        melbo_log(MELBO_LOG_WARN, "coord: %s: rank hello for job %llu refused (wrong secret)",
                  cl->conn.peer, (unsigned long long)h->job_id);
        melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_AUTH, 1,
                           "job %llu: wrong job secret", (unsigned long long)h->job_id);
        return;
    }
    if (melbo_job_state_terminal(job->state)) {
        melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_STATE, 1, "job %llu is %s",
                           (unsigned long long)job->id, melbo_job_state_name(job->state));
        return;
    }
    struct melbo_peer *oc = job->rank_conn && job->rank_conn != cl->conn.id
                                ? melbo_server_find(cl->conn.srv, job->rank_conn)
                                : NULL;
    job->rank_conn = 0;
    if (oc) {  // the old connection is stale: the new one wins
        struct melbo_client *old = melbo_client_of(oc);
        old->job = NULL;
        old->kind = MELBO_CLIENT_NEW;
        melbo_client_close(old);
    }
    cl->kind = MELBO_CLIENT_RANK;
    cl->job = job;
    job->rank_conn = cl->conn.id;
    melbo_log(MELBO_LOG_INFO, "coord: job %llu: rank 0 connected from %s (resend after %llu)",
              (unsigned long long)job->id, cl->conn.peer, (unsigned long long)job->rank_seq);
    Melbo__RankHelloOk ok = MELBO__RANK_HELLO_OK__INIT;
    ok.has_last_seq = 1;
    ok.last_seq = job->rank_seq;
    Melbo__Envelope r = MELBO__ENVELOPE__INIT;
    r.has_id = env->has_id;
    r.id = env->id;
    r.body_case = MELBO__ENVELOPE__BODY_RANK_HELLO_OK;
    r.rank_hello_ok = &ok;
    melbo_client_send(cl, &r);
}

void melbo_coord_rank_gone(struct melbo_client *cl) {
    if (cl->job && cl->job->rank_conn == cl->conn.id)
        cl->job->rank_conn = 0;
    cl->job = NULL;
}

/*
 * A numbered event from rank 0: stored once (a resend of a stored one is only acknowledged),
 * with the state the coordinator allows (the rank may report RUNNING, GENERATING, CHECKPOINTED;
 * final states are the coordinator's). re is unpacked; its event is modified and not kept.
 */
static void on_event(struct melbo_client *cl, const Melbo__RankEvent *re) {
    struct melbo_job *job = cl->job;
    if (!re->has_seq || re->event == NULL) {
        melbo_client_error(cl, 0, MELBO__ERROR_CODE__ERROR_PROTOCOL, 1, "RankEvent without seq");
        return;
    }
    cl->acked_in_read = 1;
    if (re->seq <= job->rank_seq)
        return;  // a resend of something stored before
    Melbo__JobEvent *ev = re->event;
    /* The rank reports RUNNING / GENERATING / CHECKPOINTED; final states are ours to set. */
    int st = ev->has_state ? (int)ev->state : job->state;
    if (st == MELBO__JOB_STATE__JOB_STATE_UNKNOWN || melbo_job_state_terminal(st) ||
        st == MELBO__JOB_STATE__QUEUED)
        st = job->state;
    if (ev->kind == MELBO__JOB_EVENT__KIND__STEP)
        st = MELBO__JOB_STATE__RUNNING;
    ev->has_state = 1;
    ev->state = st;
    /* Stored with its rank_seq, so a restart knows what to ask for again. */
    int r = melbo_job_append_ranked(&cl->co->jobs, job, ev, re->seq);
    if (r == 0)
        job->rank_seq = re->seq;
    else
        melbo_client_error(cl, 0, MELBO__ERROR_CODE__ERROR_INTERNAL, 1,
                           "cannot store the event: %s", melbo_err_name(r));
}

/*
 * One chunk of the bank upload: offset 0 (re)starts it in STATE/banks/.upload-JOB.tmp, chunks
 * must come in order, and the last one stores the bank (coord/banks.h), records it as the job's
 * and appends a BANK event. Anything out of order closes the connection with an Error.
 */
static void on_upload(struct melbo_client *cl, const Melbo__BankUpload *u) {
    struct melbo_coord *co = cl->co;
    struct melbo_bank_upload *up = &cl->up;
    struct melbo_err err = {0};
    uint64_t off = u->has_offset ? u->offset : 0;
    if (off == 0 &&
        melbo_disk_check(co->state_dir, co->limits.disk_reserve_mb,
                         u->has_total_size ? u->total_size : 0, &err) != 0) {
        /* no room: the rank keeps its bank (link.keep_bank) and comes back with back-off */
        melbo_client_error(cl, 0, MELBO__ERROR_CODE__ERROR_INTERNAL, 1, "%s", err.msg);
        return;
    }
    if (off == 0) {  // (re)start
        if (up->f)
            fclose(up->f);
        snprintf(up->path, sizeof up->path, "%s/banks/.upload-%llu.tmp", co->state_dir,
                 (unsigned long long)cl->job->id);
        up->f = fopen(up->path, "wb");
        up->off = 0;
        melbo_sha256_init(&up->sha);
        if (up->f == NULL) {
            melbo_client_error(cl, 0, MELBO__ERROR_CODE__ERROR_INTERNAL, 1, "cannot write %s: %s",
                               up->path, strerror(errno));
            return;
        }
    }
    if (up->f == NULL || off != up->off || !u->has_data || u->data.len > MELBO_CHUNK_MAX ||
        (u->has_total_size && u->total_size > (1ull << 40))) {
        melbo_client_error(cl, 0, MELBO__ERROR_CODE__ERROR_PROTOCOL, 1,
                           "bank upload out of order (offset %llu, expected %llu)",
                           (unsigned long long)off, (unsigned long long)up->off);
        return;
    }
    if (u->data.len && fwrite(u->data.data, 1, u->data.len, up->f) != u->data.len) {
        melbo_client_error(cl, 0, MELBO__ERROR_CODE__ERROR_INTERNAL, 1, "cannot write %s",
                           up->path);
        return;
    }
    melbo_sha256_update(&up->sha, u->data.data, u->data.len);
    up->off += u->data.len;
    if (!u->last)
        return;
    if (u->has_total_size && u->total_size != up->off) {
        melbo_client_error(cl, 0, MELBO__ERROR_CODE__ERROR_PROTOCOL, 1,
                           "bank upload has %llu bytes, announced %llu",
                           (unsigned long long)up->off, (unsigned long long)u->total_size);
        return;
    }
    char id[72];
    if (melbo_bank_store(co->state_dir, co->db, up, cl->job, u->sha256, id, sizeof id, &err) != 0) {
        melbo_client_error(cl, 0, MELBO__ERROR_CODE__ERROR_INVALID, 1, "%s", err.msg);
        return;
    }
    snprintf(cl->job->bank_id, sizeof cl->job->bank_id, "%s", id);
    melbo_db_job_update(co->db, cl->job);
    Melbo__JobEvent ev = MELBO__JOB_EVENT__INIT;
    ev.has_kind = ev.has_state = 1;
    ev.kind = MELBO__JOB_EVENT__KIND__BANK;
    ev.state = cl->job->state;
    ev.bank_id = id;
    if (u->sweep && *u->sweep) { /* a sweep's point: its row, in the catalog and the event */
        ev.detail = u->sweep;
        melbo_catalog_set_sweep(co->db, id, u->sweep);
    }
    melbo_job_append(&co->jobs, cl->job, &ev);
}

void melbo_coord_on_rank_message(struct melbo_client *cl, const Melbo__Envelope *env) {
    struct melbo_coord *co = cl->co;
    struct melbo_job *job = cl->job;
    if (job == NULL) {
        melbo_client_close(cl);
        return;
    }
    switch (env->body_case) {
    case MELBO__ENVELOPE__BODY_RANK_EVENT:
        on_event(cl, env->rank_event);
        break;
    case MELBO__ENVELOPE__BODY_RANK_LOG: {
        Melbo__JobEvent ev = MELBO__JOB_EVENT__INIT;
        ev.has_kind = ev.has_state = 1;
        ev.kind = MELBO__JOB_EVENT__KIND__LOG;
        ev.state = job->state;
        char line[1024];
        snprintf(line, sizeof line, "%s", env->rank_log->line ? env->rank_log->line : "");
        ev.log = line;
        melbo_job_append(&co->jobs, job, &ev);
        break;
    }
    case MELBO__ENVELOPE__BODY_BANK_UPLOAD:
        on_upload(cl, env->bank_upload);
        break;
    case MELBO__ENVELOPE__BODY_RANK_DONE:
        if (melbo_genjob_is(job) || melbo_genjob_is_warm(job)) { /* no bank: gen, warm */
            if (!melbo_job_state_terminal(job->state))
                melbo_job_set_state(&co->jobs, job, MELBO__JOB_STATE__DONE,
                                    melbo_genjob_is(job) ? "generated" : "released", NULL);
            send_ack(cl, 1);
            break;
        }
        if (job->bank_id[0] == '\0') {
            melbo_client_error(cl, 0, MELBO__ERROR_CODE__ERROR_STATE, 1,
                               "done before the bank was uploaded");
            return;
        }
        if (!melbo_job_state_terminal(job->state))
            melbo_job_set_state(&co->jobs, job, MELBO__JOB_STATE__DONE, "bank stored", NULL);
        send_ack(cl, 1);
        break;
    case MELBO__ENVELOPE__BODY_RANK_FAILED: {
        const Melbo__RankFailed *f = env->rank_failed;
        job->failed_rank = f->has_rank ? f->rank : 0;
        if (!melbo_job_state_terminal(job->state))
            melbo_job_set_state(&co->jobs, job,
                                job->cancel_requested ? MELBO__JOB_STATE__CANCELLED
                                                      : MELBO__JOB_STATE__FAILED,
                                "rank failed", f->error ? f->error : "unknown error");
        send_ack(cl, 1);
        break;
    }
    default:
        melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_PROTOCOL, 1,
                           "message %d is not one a rank sends", (int)env->body_case);
    }
}

void melbo_coord_rank_after_read(struct melbo_client *cl) {
    if (cl->acked_in_read && cl->job && !cl->conn.closing)
        send_ack(cl, 0);
    cl->acked_in_read = 0;
}
