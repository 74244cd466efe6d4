/*
 * rank/link/link.c - rank 0's coordinator link, the training side: starting it from the
 * environment, turning progress into encoded events on the queue (never blocking on I/O), and
 * finishing. The thread that drains the queue and uploads the bank is sender.c; the queue and
 * its locking are described in link_impl.h.
 */
#include "rank/link/link_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/file.h" // defines: melbo_file_read
#include "common/mem.h"  // defines: melbo_xmalloc
#include "common/log.h"  // defines: melbo_log
#include "proto/conn.h"  // defines: melbo_wire_encode, melbo_job_state_parse

/* ==== small helpers ======================================================================== */

/* Wall-clock seconds: event times and the first event number. */
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Monotonic seconds: the finish timeout. */
static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The JobState of a state name ("RUNNING", ...), JOB_STATE_UNKNOWN for any other text. */
static int state_code(const char *s) {
    int v = melbo_job_state_parse(s);
    return v < 0 ? MELBO__JOB_STATE__JOB_STATE_UNKNOWN : v;
}

/* ==== the queue ============================================================================ */

/*
 * Encodes ev (built by the caller, borrowed) as the next numbered RankEvent and appends it to the
 * queue, which owns the encoded frame; wakes the sender. Training thread only; never blocks on
 * I/O. When the queue holds MELBO_LINK_MAX_QUEUED items a step event is dropped and counted; an
 * event that cannot be allocated or encoded is dropped silently.
 */
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
    struct melbo__link_item *it = calloc(1, sizeof *it);
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

void melbo__link_drop_acked(struct melbo_link *l, uint64_t upto) {
    while (l->head && l->head->seq <= upto) {
        struct melbo__link_item *it = l->head;
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

/* ==== start, events, finish (link.h) ======================================================= */

/* Allocates a link to addr for job_id and starts its sender thread; NULL when that fails. */
static struct melbo_link *link_start(const char *addr, uint64_t job_id, const char *secret,
                                     const char *fingerprint) {
    struct melbo_link *l = calloc(1, sizeof *l);
    if (l == NULL)
        return NULL;
    /* Event numbers continue across incarnations of the job's ranks (a job resumed after a time
     * limit is a new process): start from the wall clock in microseconds, which is past every
     * number an earlier incarnation used (it used one per event, each taking far longer). */
    l->next_seq = (uint64_t)(now_s() * 1e6);
    snprintf(l->addr, sizeof l->addr, "%s", addr);
    l->job_id = job_id;
    snprintf(l->secret, sizeof l->secret, "%s", secret);
    snprintf(l->fingerprint, sizeof l->fingerprint, "%s", fingerprint ? fingerprint : "");
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    if (pthread_create(&l->thread, NULL, melbo__link_thread, l) != 0) {
        free(l);
        return NULL;
    }
    return l;
}

struct melbo_link *melbo_link_start_for(const struct melbo_link *like, uint64_t job_id,
                                        const char *secret) {
    return like ? link_start(like->addr, job_id, secret, like->fingerprint) : NULL;
}

int melbo_link_next_work(struct melbo_link *l, struct Melbo__WarmWork **work) {
    int ret;
    pthread_mutex_lock(&l->mu);
    while (l->n_work == 0 && !l->released && !l->dead && !l->stop)
        pthread_cond_wait(&l->cv, &l->mu);
    if (l->n_work > 0) {
        *work = l->work[0];
        memmove(l->work, l->work + 1, sizeof l->work[0] * (size_t)--l->n_work);
        ret = 0;
    } else {
        ret = l->released ? 1 : -1;
    }
    pthread_mutex_unlock(&l->mu);
    return ret;
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
    /* line 1: the job's secret; line 2 (when the coordinator speaks TLS): its certificate's
     * fingerprint, pinned by melbo_conn_open */
    char *fp = strchr(secret, '\n');
    if (fp) {
        *fp++ = '\0';
        fp[strcspn(fp, "\r\n")] = '\0';
    }
    struct melbo_link *l = link_start(addr, strtoull(id, NULL, 10), secret, fp);
    free(secret);
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

/* The observer hooks (ctx is the link): each builds a JobEvent on the stack and queues it. Step,
 * generation and checkpoint events are "step" events, dropped first when the queue is full. */
static void obs_state(void *ctx, const char *state, const char *detail) {
    melbo_link_state(ctx, state, detail);
}

static void obs_step(void *ctx, const struct melbo_step_event *e) {
    struct melbo_link *l = ctx;
    Melbo__StepInfo s = MELBO__STEP_INFO__INIT;
    if (l->points > 0) {
        s.has_point = s.has_points = 1;
        s.point = l->point, s.points = l->points;
        s.point_label = l->point_label;
    }
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

static void obs_log(void *ctx, const char *line) {
    melbo_link_log(ctx, "%s", line);
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
    o.on_log = obs_log;
    return o;
}

void melbo_link_tokens(struct melbo_link *l, int seq, const char *text, size_t len) {
    if (l == NULL || len == 0)
        return;
    char *copy = melbo_xmalloc(len + 1);
    memcpy(copy, text, len);
    copy[len] = '\0';
    Melbo__JobEvent ev = MELBO__JOB_EVENT__INIT;
    ev.has_kind = ev.has_sequence = 1;
    ev.kind = MELBO__JOB_EVENT__KIND__TOKENS;
    ev.sequence = seq;
    ev.text = copy;
    enqueue(l, &ev, 0);
    free(copy);
}

void melbo_link_completion(struct melbo_link *l, int seq, const char *label, const char *text) {
    if (l == NULL)
        return;
    Melbo__JobEvent ev = MELBO__JOB_EVENT__INIT;
    ev.has_kind = ev.has_sequence = 1;
    ev.kind = MELBO__JOB_EVENT__KIND__COMPLETION;
    ev.sequence = seq;
    ev.detail = (char *)(label ? label : "");
    ev.text = (char *)(text ? text : "");
    enqueue(l, &ev, 0);
}

void melbo_link_set_point(struct melbo_link *l, int k, int n, const char *label) {
    if (l == NULL)
        return;
    l->point = k; /* only the training thread reads them (in obs_step) */
    l->points = n;
    snprintf(l->point_label, sizeof l->point_label, "%s", label ? label : "");
}

int melbo_link_finish_banks(struct melbo_link *l, const char *const *paths,
                            const char *const *sweep_json, int n) {
    if (l == NULL)
        return 0;
    pthread_mutex_lock(&l->mu);
    l->banks = melbo_xcalloc((size_t)n + 1, sizeof *l->banks);
    l->sweeps = melbo_xcalloc((size_t)n + 1, sizeof *l->sweeps);
    for (int i = 0; i < n; i++) {
        l->banks[i] = melbo_xstrdup(paths[i]);
        l->sweeps[i] = melbo_xstrdup(sweep_json[i] ? sweep_json[i] : "");
    }
    l->n_banks = n;
    pthread_mutex_unlock(&l->mu);
    return melbo_link_finish(l, paths[n - 1], NULL);
}

int melbo_link_done(struct melbo_link *l) {
    if (l == NULL)
        return 0;
    pthread_mutex_lock(&l->mu);
    l->no_bank = 1;
    pthread_mutex_unlock(&l->mu);
    return melbo_link_finish(l, NULL, NULL);
}

int melbo_link_finish(struct melbo_link *l, const char *bank_path, const char *error) {
    if (l == NULL)
        return 0;
    /* a bank is kept for the coordinator a long time (link.keep_bank: MELBO_LINK_KEEP_BANK
     * seconds, a day by default); anything else waits MELBO_LINK_FINISH_TIMEOUT (600 s) */
    const char *to = getenv(bank_path ? "MELBO_LINK_KEEP_BANK" : "MELBO_LINK_FINISH_TIMEOUT");
    double limit = to && atof(to) > 0 ? atof(to) : bank_path ? 86400 : 600, t0 = mono_s();
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
    melbo__link_drop_acked(l, UINT64_MAX);
    for (int i = 0; i < l->n_work; i++)
        melbo__warm_work__free_unpacked(l->work[i], NULL);
    for (int i = 0; i < l->n_banks; i++)
        free(l->banks[i]), free(l->sweeps[i]);
    free(l->banks);
    free(l->sweeps);
    free(l->bank_path);
    free(l->error);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    free(l);
    return ok ? 0 : -1;
}
