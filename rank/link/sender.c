/*
 * rank/link/sender.c - rank 0's coordinator link, the network side: one background thread that
 * connects with backoff (0.1 s doubling to 5 s), authenticates the job, writes the queued events
 * (link_impl.h) over a blocking framed socket (proto/conn.h), reads the acknowledgements, and at
 * the end uploads the bank in MELBO_CHUNK_MAX chunks with its sha256 and reports done or failed.
 * It never holds the queue's lock during I/O.
 */
#include "rank/link/link_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"    // defines: melbo_log
#include "common/sha256.h" // defines: melbo_sha256_init, melbo_sha256_update, melbo_sha256_final
#include "proto/conn.h"    // defines: melbo_conn_open, melbo_conn_send, melbo_conn_recv

/*
 * Reads the acknowledgements already there (waiting up to wait_ms for the first), dropping the
 * acknowledged events and noting an acknowledged end. Returns 0, or -1 when the connection broke
 * or the coordinator sent an Error (logged).
 */
static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The coordinator's refusal, logged once per MELBO_LINK_LOG_EVERY seconds while it repeats (a
 * coordinator that cannot store anything answers every reconnect the same way). */
static void log_limited(struct melbo_link *l, const char *msg) {
    double t = mono_s();
    if (strcmp(l->last_error, msg ? msg : "") != 0 ||
        t - l->last_error_at >= MELBO_LINK_LOG_EVERY) {
        if (l->repeats > 0)
            melbo_log(MELBO_LOG_WARN, "link: (the last error came %ld more times)", l->repeats);
        melbo_log(MELBO_LOG_WARN, "link: coordinator: %s", msg ? msg : "");
        snprintf(l->last_error, sizeof l->last_error, "%s", msg ? msg : "");
        l->last_error_at = t;
        l->repeats = 0;
    } else {
        l->repeats++;
    }
}

static int read_acks(struct melbo_link *l, struct melbo_conn *c, int wait_ms) {
    for (;;) {
        Melbo__Envelope *e = NULL;
        struct melbo_err err = {0};
        int r = melbo_conn_recv(c, wait_ms, &e, &err);
        if (r == MELBO_EMISSING)
            return 0;
        if (r != 0)
            return -1;
        if (e->body_case == MELBO__ENVELOPE__BODY_RANK_ACK) {
            l->progress = 1; /* the coordinator stores what we send: the back-off starts over */
            pthread_mutex_lock(&l->mu);
            melbo__link_drop_acked(l, e->rank_ack->last_seq);
            if (e->rank_ack->done) {
                l->acked_done = 1;
                pthread_cond_broadcast(&l->cv);
            }
            pthread_mutex_unlock(&l->mu);
        } else if (e->body_case == MELBO__ENVELOPE__BODY_WARM_WORK) {
            pthread_mutex_lock(&l->mu);
            if (l->n_work < (int)(sizeof l->work / sizeof l->work[0])) {
                l->work[l->n_work++] = e->warm_work; /* kept: taken out of the envelope */
                e->warm_work = NULL;
                e->body_case = MELBO__ENVELOPE__BODY__NOT_SET;
            } else {
                melbo_log(MELBO_LOG_WARN, "link: warm work for job %llu dropped (queue full)",
                          (unsigned long long)e->warm_work->job_id);
            }
            pthread_cond_broadcast(&l->cv);
            pthread_mutex_unlock(&l->mu);
        } else if (e->body_case == MELBO__ENVELOPE__BODY_WARM_RELEASE) {
            pthread_mutex_lock(&l->mu);
            l->released = 1;
            pthread_cond_broadcast(&l->cv);
            pthread_mutex_unlock(&l->mu);
        } else if (e->body_case == MELBO__ENVELOPE__BODY_ERROR) {
            log_limited(l, e->error->message);
            melbo__envelope__free_unpacked(e, NULL);
            return -1;
        }
        melbo__envelope__free_unpacked(e, NULL);
        wait_ms = 0;
    }
}

/*
 * Connects c and introduces the job (RankHello with its id and secret). On RankHelloOk, drops
 * the events the coordinator already stored and rewinds `sent` so the rest is resent; returns 0.
 * Returns -1 with c closed otherwise; a refusal that retrying cannot fix (authentication, job
 * state, protocol version) also marks the link dead.
 */
static int handshake(struct melbo_link *l, struct melbo_conn *c) {
    struct melbo_err err = {0};
    if (melbo_conn_open(c, l->addr, l->fingerprint, 3000, &err) != 0)
        return -1;
    Melbo__RankHello h = MELBO__RANK_HELLO__INIT;
    h.has_protocol_version = h.has_job_id = 1;
    h.protocol_version = MELBO_PROTOCOL_VERSION;
    h.job_id = l->job_id;
    h.secret = l->secret;
    Melbo__Envelope env = MELBO__ENVELOPE__INIT, *rep = NULL;
    env.has_id = 1;
    env.id = 1;
    env.body_case = MELBO__ENVELOPE__BODY_RANK_HELLO;
    env.rank_hello = &h;
    if (melbo_conn_send(c, &env, 5000, &err) != 0 || melbo_conn_recv(c, 10000, &rep, &err) != 0) {
        melbo_conn_close(c);
        return -1;
    }
    int ok = rep->body_case == MELBO__ENVELOPE__BODY_RANK_HELLO_OK;
    if (!ok) {
        int code = rep->body_case == MELBO__ENVELOPE__BODY_ERROR ? (int)rep->error->code : -1;
        melbo_log(MELBO_LOG_ERROR, "link: the coordinator refused job %llu: %s",
                  (unsigned long long)l->job_id,
                  rep->body_case == MELBO__ENVELOPE__BODY_ERROR ? rep->error->message : "?");
        if (code == MELBO__ERROR_CODE__ERROR_AUTH || code == MELBO__ERROR_CODE__ERROR_STATE ||
            code == MELBO__ERROR_CODE__ERROR_VERSION) {
            pthread_mutex_lock(&l->mu);
            l->dead = 1;
            pthread_cond_broadcast(&l->cv);
            pthread_mutex_unlock(&l->mu);
        }
        melbo__envelope__free_unpacked(rep, NULL);
        melbo_conn_close(c);
        return -1;
    }
    pthread_mutex_lock(&l->mu);
    melbo__link_drop_acked(l, rep->rank_hello_ok->last_seq);
    l->sent = l->head; // resend everything not stored
    pthread_mutex_unlock(&l->mu);
    melbo__envelope__free_unpacked(rep, NULL);
    return 0;
}

/*
 * Sends the open file fp (the caller's, left open) from its start as BankUpload messages of up to
 * MELBO_CHUNK_MAX bytes; the last one carries the whole file's sha256. Returns 0, or -1 when a
 * send fails (or the chunk buffer cannot be allocated).
 */
static int upload_bank(struct melbo_conn *c, FILE *fp, const char *sweep) {
    struct melbo_err err = {0};
    Melbo__Envelope env = MELBO__ENVELOPE__INIT;
    fseek(fp, 0, SEEK_END);
    uint64_t total = (uint64_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *buf = malloc(MELBO_CHUNK_MAX);
    struct melbo_sha256 h;
    melbo_sha256_init(&h);
    uint64_t off = 0;
    int ret = buf ? 0 : -1;
    while (ret == 0) {
        size_t got = fread(buf, 1, MELBO_CHUNK_MAX, fp);
        melbo_sha256_update(&h, buf, got);
        Melbo__BankUpload u = MELBO__BANK_UPLOAD__INIT;
        u.has_offset = u.has_data = u.has_total_size = u.has_last = 1;
        u.offset = off;
        u.data.data = buf;
        u.data.len = got;
        u.total_size = total;
        off += got;
        u.last = off >= total || got == 0;
        if (sweep && *sweep)
            u.sweep = (char *)sweep;
        char hex[65];
        if (u.last) {
            uint8_t d[32];
            melbo_sha256_final(&h, d);
            melbo_sha256_hex(d, hex);
            u.sha256 = hex;
        }
        env.body_case = MELBO__ENVELOPE__BODY_BANK_UPLOAD;
        env.bank_upload = &u;
        if (melbo_conn_send(c, &env, 30000, &err) != 0)
            ret = -1;
        if (u.last)
            break;
    }
    free(buf);
    return ret;
}

/*
 * The end of the job on connection c: with l->bank_path, uploads the bank and sends RankDone
 * (last_seq = the last event number); without it, or when the bank cannot be opened (then
 * l->bank_path and l->error are replaced), sends RankFailed with l->error. Returns 0, or -1 on a
 * broken connection (the caller reconnects and sends the end again).
 */
/* Sends RankDone with the last event number. Returns 0, or -1 on a broken connection. */
static int send_done(struct melbo_link *l, struct melbo_conn *c) {
    struct melbo_err err = {0};
    Melbo__RankDone d = MELBO__RANK_DONE__INIT;
    d.has_last_seq = 1;
    d.last_seq = l->next_seq;
    Melbo__Envelope env = MELBO__ENVELOPE__INIT;
    env.body_case = MELBO__ENVELOPE__BODY_RANK_DONE;
    env.rank_done = &d;
    return melbo_conn_send(c, &env, 10000, &err) == 0 ? 0 : -1;
}

static int send_end(struct melbo_link *l, struct melbo_conn *c) {
    struct melbo_err err = {0};
    Melbo__Envelope env = MELBO__ENVELOPE__INIT;
    if (l->no_bank) /* a job without a bank (gen): done once its events are stored */
        return send_done(l, c);
    if (l->bank_path == NULL) {
        Melbo__RankFailed f = MELBO__RANK_FAILED__INIT;
        f.error = l->error ? l->error : "failed";
        f.has_rank = 1;
        f.rank = 0;
        env.body_case = MELBO__ENVELOPE__BODY_RANK_FAILED;
        env.rank_failed = &f;
        return melbo_conn_send(c, &env, 10000, &err) == 0 ? 0 : -1;
    }
    /* one bank, or a sweep's (n_banks, in order; bank_path is the last of them) */
    int n = l->n_banks > 0 ? l->n_banks : 1;
    for (int i = 0; i < n; i++) {
        const char *path = l->n_banks > 0 ? l->banks[i] : l->bank_path;
        FILE *fp = fopen(path, "rb");
        if (fp == NULL) {
            free(l->bank_path);
            l->bank_path = NULL;
            free(l->error);
            l->error = strdup("the bank file cannot be read for upload");
            return send_end(l, c);
        }
        int ret = upload_bank(c, fp, l->n_banks > 0 ? l->sweeps[i] : NULL);
        fclose(fp);
        if (ret)
            return ret;
    }
    return send_done(l, c);
}

/*
 * The sender thread's loop: (re)connect with backoff, write every unsent event, send the end once
 * the queue is empty after melbo_link_finish (or, for a flush without an end, mark it done),
 * read acknowledgements, then wait up to 20 ms for more work.
 */
/* Sleeps the back-off: base seconds, +-25% jitter, never under the floor (MELBO_LINK_FLOOR). */
static void sleep_backoff(double base) {
    const char *f = getenv("MELBO_LINK_FLOOR");
    double floor_s = f && atof(f) > 0 ? atof(f) : MELBO_LINK_FLOOR_S;
    double s = base * (0.75 + 0.5 * ((double)rand() / RAND_MAX));
    s = s < floor_s ? floor_s : s;
    struct timespec ts = {(time_t)s, (long)((s - (time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

void *melbo__link_thread(void *arg) {
    struct melbo_link *l = arg;
    struct melbo_conn c = {.fd = -1};
    double backoff = MELBO_LINK_FLOOR_S;
    int end_sent = 0;
    for (;;) {
        pthread_mutex_lock(&l->mu);
        int stop = l->stop || l->dead || l->acked_done;
        pthread_mutex_unlock(&l->mu);
        if (stop)
            break;
        if (c.fd < 0) {
            if (handshake(l, &c) != 0) {
                sleep_backoff(backoff);
                backoff = backoff * 2 > MELBO_LINK_BACKOFF_MAX_S ? MELBO_LINK_BACKOFF_MAX_S
                                                                : backoff * 2;
                continue;
            }
            end_sent = 0;
        }
        /* Send what is queued, without holding the lock during I/O. */
        int broken = 0;
        for (;;) {
            pthread_mutex_lock(&l->mu);
            struct melbo__link_item *it = l->sent;
            uint8_t *frame = NULL;
            size_t len = 0;
            if (it) {
                frame = malloc(it->len);
                if (frame) {
                    memcpy(frame, it->frame, it->len);
                    len = it->len;
                }
                l->sent = it->next;
            }
            pthread_mutex_unlock(&l->mu);
            if (it == NULL)
                break;
            struct melbo_err send_err = {0};
            int r = frame ? melbo_conn_send_frame(&c, frame, len, 10000, &send_err) : -1;
            free(frame);
            if (r != 0) {
                broken = 1;
                break;
            }
        }
        if (!broken) {
            pthread_mutex_lock(&l->mu);
            int ready_end = l->finishing && l->head == NULL && !end_sent;
            pthread_mutex_unlock(&l->mu);
            if (ready_end && l->bank_path == NULL && l->error == NULL && !l->no_bank) {
                pthread_mutex_lock(&l->mu); // flush only (checkpointed): everything is acked
                l->acked_done = 1;
                pthread_cond_broadcast(&l->cv);
                pthread_mutex_unlock(&l->mu);
            } else if (ready_end) {
                if (send_end(l, &c) != 0)
                    broken = 1;
                else
                    end_sent = 1;
            }
        }
        if (!broken && read_acks(l, &c, 0) != 0)
            broken = 1;
        if (l->progress) { /* acknowledged: the next trouble starts from the floor again */
            l->progress = 0;
            backoff = MELBO_LINK_FLOOR_S;
        }
        if (broken) { /* a connection the coordinator broke (or refused to store on) waits too */
            melbo_conn_close(&c);
            sleep_backoff(backoff);
            backoff = backoff * 2 > MELBO_LINK_BACKOFF_MAX_S ? MELBO_LINK_BACKOFF_MAX_S
                                                            : backoff * 2;
            continue;
        }
        /* Idle: wait for new items (acks are read on the next turn). */
        pthread_mutex_lock(&l->mu);
        if (l->sent == NULL && !l->stop && !(l->finishing && !end_sent && l->head == NULL)) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 20 * 1000000;
            if (ts.tv_nsec >= 1000000000)
                ts.tv_sec++, ts.tv_nsec -= 1000000000;
            pthread_cond_timedwait(&l->cv, &l->mu, &ts);
        }
        pthread_mutex_unlock(&l->mu);
    }
    melbo_conn_close(&c);
    return NULL;
}
