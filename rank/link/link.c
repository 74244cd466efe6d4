/*
 * rank/link/link.c - rank 0's coordinator link: an event queue filled by the training thread and
 * drained by one background thread over a blocking framed socket (proto/conn.h).
 *
 * Queue: a singly linked list of encoded RankEvent envelopes, numbered 1, 2, ... in order.
 * `sent` points at the first one not yet written on the current connection; acknowledged ones
 * are freed from the head. A reconnect rewinds `sent` to the head after dropping what the
 * coordinator says it has (RankHelloOk.last_seq).
 */
#include "rank/link/link.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/file.h"
#include "common/log.h"
#include "common/sha256.h"
#include "proto/conn.h"

struct item {
    uint64_t seq;
    int is_step;
    uint8_t *frame; // encoded envelope (header + payload)
    size_t len;
    struct item *next;
};

struct melbo_link {
    char addr[256];
    uint64_t job_id;
    char secret[128];
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv; // signalled on new items, finish, and ack of done
    struct item *head, *tail, *sent;
    size_t n_items;
    uint64_t next_seq;
    long dropped;
    /* end of the job */
    int finishing;   // 1 once melbo_link_finish was called
    char *bank_path; // upload this (or NULL with error)
    char *error;
    int acked_done; // the coordinator acknowledged done / failed
    int dead;       // refused by the coordinator (wrong secret): stop trying
    int stop;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int state_code(const char *s) {
    int v = melbo_job_state_parse(s);
    return v < 0 ? MELBO__JOB_STATE__JOB_STATE_UNKNOWN : v;
}

/* Encodes ev as the next RankEvent and queues it (training thread; never blocks on I/O). */
static void enqueue(struct melbo_link *l, Melbo__JobEvent *ev, int is_step) {
    pthread_mutex_lock(&l->mu);
    if (is_step && l->n_items >= MELBO_LINK_MAX_QUEUED) {
        l->dropped++;
        pthread_mutex_unlock(&l->mu);
        return;
    }
    uint64_t seq = ++l->next_seq;
    pthread_mutex_unlock(&l->mu);
    ev->has_rank_time = 1;
    ev->rank_time = now_s();
    Melbo__RankEvent re = MELBO__RANK_EVENT__INIT;
    re.has_seq = 1;
    re.seq = seq;
    re.event = ev;
    Melbo__Envelope env = MELBO__ENVELOPE__INIT;
    env.body_case = MELBO__ENVELOPE__BODY_RANK_EVENT;
    env.rank_event = &re;
    struct item *it = calloc(1, sizeof *it);
    if (it == NULL || melbo_wire_encode(&env, 0, &it->frame, &it->len) != 0) {
        free(it);
        return;
    }
    it->seq = seq;
    it->is_step = is_step;
    pthread_mutex_lock(&l->mu);
    if (l->tail)
        l->tail->next = it;
    else
        l->head = it;
    l->tail = it;
    if (l->sent == NULL)
        l->sent = it;
    l->n_items++;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

/* Frees items with seq <= upto (caller holds mu). */
static void drop_acked(struct melbo_link *l, uint64_t upto) {
    while (l->head && l->head->seq <= upto) {
        struct item *it = l->head;
        l->head = it->next;
        if (l->sent == it)
            l->sent = it->next;
        if (l->tail == it)
            l->tail = NULL;
        free(it->frame);
        free(it);
        l->n_items--;
    }
}

/* Reads acks that are already there (or waits up to wait_ms). -1 when the connection broke. */
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
            pthread_mutex_lock(&l->mu);
            drop_acked(l, e->rank_ack->last_seq);
            if (e->rank_ack->done) {
                l->acked_done = 1;
                pthread_cond_broadcast(&l->cv);
            }
            pthread_mutex_unlock(&l->mu);
        } else if (e->body_case == MELBO__ENVELOPE__BODY_ERROR) {
            melbo_log(MELBO_LOG_WARN, "link: coordinator: %s", e->error->message);
            melbo__envelope__free_unpacked(e, NULL);
            return -1;
        }
        melbo__envelope__free_unpacked(e, NULL);
        wait_ms = 0;
    }
}

static int handshake(struct melbo_link *l, struct melbo_conn *c) {
    struct melbo_err err = {0};
    if (melbo_conn_open(c, l->addr, 3000, &err) != 0)
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
    drop_acked(l, rep->rank_hello_ok->last_seq);
    l->sent = l->head; // resend everything not stored
    pthread_mutex_unlock(&l->mu);
    melbo__envelope__free_unpacked(rep, NULL);
    return 0;
}

/* Uploads the bank and sends done (or sends failed). -1 on a broken connection. */
static int send_end(struct melbo_link *l, struct melbo_conn *c) {
    struct melbo_err err = {0};
    Melbo__Envelope env = MELBO__ENVELOPE__INIT;
    if (l->bank_path == NULL) {
        Melbo__RankFailed f = MELBO__RANK_FAILED__INIT;
        f.error = l->error ? l->error : "failed";
        f.has_rank = 1;
        f.rank = 0;
        env.body_case = MELBO__ENVELOPE__BODY_RANK_FAILED;
        env.rank_failed = &f;
        return melbo_conn_send(c, &env, 10000, &err) == 0 ? 0 : -1;
    }
    FILE *fp = fopen(l->bank_path, "rb");
    if (fp == NULL) {
        free(l->bank_path);
        l->bank_path = NULL;
        free(l->error);
        l->error = strdup("the bank file cannot be read for upload");
        return send_end(l, c);
    }
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
    fclose(fp);
    if (ret)
        return ret;
    Melbo__RankDone d = MELBO__RANK_DONE__INIT;
    d.has_last_seq = 1;
    d.last_seq = l->next_seq;
    env.body_case = MELBO__ENVELOPE__BODY_RANK_DONE;
    env.rank_done = &d;
    return melbo_conn_send(c, &env, 10000, &err) == 0 ? 0 : -1;
}

static void *link_main(void *arg) {
    struct melbo_link *l = arg;
    struct melbo_conn c = {.fd = -1};
    double backoff = 0.1;
    int end_sent = 0;
    for (;;) {
        pthread_mutex_lock(&l->mu);
        int stop = l->stop || l->dead || l->acked_done;
        pthread_mutex_unlock(&l->mu);
        if (stop)
            break;
        if (c.fd < 0) {
            if (handshake(l, &c) != 0) {
                struct timespec ts = {(time_t)backoff, (long)((backoff - (time_t)backoff) * 1e9)};
                nanosleep(&ts, NULL);
                backoff = backoff * 2 > 5 ? 5 : backoff * 2;
                continue;
            }
            backoff = 0.1;
            end_sent = 0;
        }
        /* Send what is queued, without holding the lock during I/O. */
        int broken = 0;
        for (;;) {
            pthread_mutex_lock(&l->mu);
            struct item *it = l->sent;
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
            if (ready_end && l->bank_path == NULL && l->error == NULL) {
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
        if (broken) {
            melbo_conn_close(&c);
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

struct melbo_link *melbo_link_start_from_env(void) {
    const char *addr = getenv("MELBO_COORD_ADDR"), *id = getenv("MELBO_JOB_ID");
    const char *sf = getenv("MELBO_JOB_SECRET_FILE");
    if (addr == NULL || addr[0] == '\0') /* standalone (also a hand-run batch script) */
        return NULL;
    const char *rank = getenv("OMPI_COMM_WORLD_RANK");
    if (rank == NULL)
        rank = getenv("PMIX_RANK");
    if (rank && atoi(rank) != 0)
        return NULL;
    if (!addr || !id || !sf) {
        melbo_log(MELBO_LOG_WARN, "link: MELBO_COORD_ADDR, MELBO_JOB_ID and MELBO_JOB_SECRET_FILE "
                                  "must all be set; running without the coordinator");
        return NULL;
    }
    char *secret = NULL;
    size_t n;
    struct melbo_err err = {0};
    if (melbo_file_read(sf, &secret, &n, &err) != 0) {
        melbo_log(MELBO_LOG_WARN, "link: %s; running without the coordinator", err.msg);
        return NULL;
    }
    while (n && (secret[n - 1] == '\n' || secret[n - 1] == '\r'))
        secret[--n] = '\0';
    struct melbo_link *l = calloc(1, sizeof *l);
    /* Event numbers continue across incarnations of the job's ranks (a job resumed after a time
     * limit is a new process): start from the wall clock in microseconds, which is past every
     * number an earlier incarnation used (it used one per event, each taking far longer). */
    if (l)
        l->next_seq = (uint64_t)(now_s() * 1e6);
    if (l == NULL) {
        free(secret);
        return NULL;
    }
    snprintf(l->addr, sizeof l->addr, "%s", addr);
    l->job_id = strtoull(id, NULL, 10);
    snprintf(l->secret, sizeof l->secret, "%s", secret);
    free(secret);
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    if (pthread_create(&l->thread, NULL, link_main, l) != 0) {
        free(l);
        return NULL;
    }
    return l;
}

void melbo_link_state(struct melbo_link *l, const char *state, const char *detail) {
    if (l == NULL)
        return;
    Melbo__JobEvent ev = MELBO__JOB_EVENT__INIT;
    ev.has_kind = ev.has_state = 1;
    ev.kind = MELBO__JOB_EVENT__KIND__STATE;
    ev.state = state_code(state);
    ev.detail = (char *)(detail ? detail : "");
    enqueue(l, &ev, 0);
}

void melbo_link_log(struct melbo_link *l, const char *fmt, ...) {
    if (l == NULL)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    Melbo__JobEvent ev = MELBO__JOB_EVENT__INIT;
    ev.has_kind = 1;
    ev.kind = MELBO__JOB_EVENT__KIND__LOG;
    ev.log = line;
    enqueue(l, &ev, 0);
}

static void obs_state(void *ctx, const char *state, const char *detail) {
    melbo_link_state(ctx, state, detail);
}

static void obs_step(void *ctx, const struct melbo_step_event *e) {
    Melbo__StepInfo s = MELBO__STEP_INFO__INIT;
    s.has_wave = s.has_n_waves = s.has_step = s.has_steps = 1;
    s.has_first_vector = s.has_n_vectors = s.has_total_vectors = 1;
    s.has_step_seconds = s.has_vector_steps_per_s = s.has_eta_seconds = s.has_tflops = 1;
    s.wave = e->wave, s.n_waves = e->n_waves, s.step = e->step, s.steps = e->steps;
    s.first_vector = e->first_vector, s.n_vectors = e->n_vectors;
    s.total_vectors = e->total_vectors;
    s.n_objective = (size_t)e->n_vectors;
    s.objective = (float *)e->objective;
    s.step_seconds = e->step_seconds;
    s.vector_steps_per_s = e->vector_steps_per_s;
    s.eta_seconds = e->eta_seconds;
    s.tflops = e->tflops;
    Melbo__JobEvent ev = MELBO__JOB_EVENT__INIT;
    ev.has_kind = ev.has_state = 1;
    ev.kind = MELBO__JOB_EVENT__KIND__STEP;
    ev.state = MELBO__JOB_STATE__RUNNING;
    ev.step = &s;
    enqueue(ctx, &ev, 1);
}

static void obs_generate(void *ctx, int done, int total, long tokens, double tps) {
    Melbo__GenerateInfo g = MELBO__GENERATE_INFO__INIT;
    g.has_done = g.has_total = g.has_tokens = g.has_tokens_per_s = 1;
    g.done = done, g.total = total, g.tokens = tokens, g.tokens_per_s = tps;
    Melbo__JobEvent ev = MELBO__JOB_EVENT__INIT;
    ev.has_kind = ev.has_state = 1;
    ev.kind = MELBO__JOB_EVENT__KIND__GENERATE;
    ev.state = MELBO__JOB_STATE__GENERATING;
    ev.generate = &g;
    enqueue(ctx, &ev, 1);
}

static void obs_checkpoint(void *ctx, const char *path, int n_done, int wave_step) {
    char detail[256];
    snprintf(detail, sizeof detail, "checkpoint after %d vectors, step %d of the wave", n_done,
             wave_step);
    Melbo__JobEvent ev = MELBO__JOB_EVENT__INIT;
    ev.has_kind = 1;
    ev.kind = MELBO__JOB_EVENT__KIND__CHECKPOINT;
    ev.detail = detail;
    (void)path;
    enqueue(ctx, &ev, 1);
}

struct melbo_train_observer melbo_link_observer(struct melbo_link *l) {
    struct melbo_train_observer o;
    memset(&o, 0, sizeof o);
    if (l == NULL)
        return o;
    o.ctx = l;
    o.on_state = obs_state;
    o.on_step = obs_step;
    o.on_generate = obs_generate;
    o.on_checkpoint = obs_checkpoint;
    return o;
}

int melbo_link_finish(struct melbo_link *l, const char *bank_path, const char *error) {
    if (l == NULL)
        return 0;
    const char *to = getenv("MELBO_LINK_FINISH_TIMEOUT");
    double limit = to ? atof(to) : 600, t0 = mono_s();
    pthread_mutex_lock(&l->mu);
    l->bank_path = bank_path ? strdup(bank_path) : NULL;
    l->error = error ? strdup(error) : NULL;
    l->finishing = 1;
    pthread_cond_broadcast(&l->cv);
    while (!l->acked_done && !l->dead && mono_s() - t0 < limit) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&l->cv, &l->mu, &ts);
    }
    int ok = l->acked_done;
    l->stop = 1;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
    if (!ok)
        melbo_log(MELBO_LOG_WARN, "link: the coordinator did not acknowledge the end of job %llu",
                  (unsigned long long)l->job_id);
    if (l->dropped)
        melbo_log(MELBO_LOG_WARN, "link: %ld step events dropped (queue full)", l->dropped);
    drop_acked(l, UINT64_MAX);
    free(l->bank_path);
    free(l->error);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    free(l);
    return ok ? 0 : -1;
}
