/*
 * cli/watch.c - `melbo watch JOB`: follows a job's event log until the job ends.
 *
 * On a terminal (and without --json) it redraws a live view: state, wave i/n with a progress bar,
 * step, steps/s, ETA, TFLOP/s, a sparkline of each vector's objective, and the Slurm reason while
 * pending. Otherwise it prints one JSON object per event. If the connection drops, or nothing
 * (not even the coordinator's keepalive, every limits.keepalive_s) arrives for --timeout seconds
 * (MELBO_WATCH_TIMEOUT, default 30: a silent network partition, a frozen coordinator), it says so
 * on stderr, reconnects with exponential back-off and jitter (1 s doubling to 30 s, for at most
 * --give-up seconds, default 600) and resumes from the last event number it printed (the
 * coordinator sends exactly the missing ones), so every event is printed once.
 * Exit: 0 when the job is DONE, 4 FAILED, 5 CANCELLED (all codes: cli/cli.h).
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

#define SPARK_LEN 24

/* What the live view shows, updated from each event (update_view) and drawn whole (draw). */
struct view {
    int state;
    char detail[256], error[512], reason[128], bank[72];
    int wave, n_waves, step, steps, first, n_vec;
    int point, points;     // a sweep: the point of the last step (points 0: no sweep)
    char point_label[128];
    double sps, eta, tflops;
    int n_hist; // objective history per vector of the current wave
    float hist[64][SPARK_LEN];
    int hist_len[64];
    char log[256];
    const char *unit; // "vector-steps/s" or "adapter-steps/s" (the job's kind, asked once)
};

void melbo_cli_print_event_json(const Melbo__JobEvent *e) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "job", (double)e->job_id);
    cJSON_AddNumberToObject(o, "event", (double)e->number);
    cJSON_AddNumberToObject(o, "time", e->time);
    static const char *kinds[] = {"state", "step",  "generate", "checkpoint",
                                  "log",   "bank",  "tokens",   "completion"};
    cJSON_AddStringToObject(o, "kind", e->kind < 8 ? kinds[e->kind] : "unknown");
    cJSON_AddStringToObject(o, "state", melbo_job_state_name(e->state));
    if (e->detail && *e->detail)
        cJSON_AddStringToObject(o, "detail", e->detail);
    if (e->error && *e->error)
        cJSON_AddStringToObject(o, "error", e->error);
    if (e->has_failed_rank)
        cJSON_AddNumberToObject(o, "failed_rank", e->failed_rank);
    if (e->reason && *e->reason)
        cJSON_AddStringToObject(o, "reason", e->reason);
    if (e->bank_id && *e->bank_id)
        cJSON_AddStringToObject(o, "bank", e->bank_id);
    if (e->log && *e->log)
        cJSON_AddStringToObject(o, "log", e->log);
    if (e->has_rank_time)
        cJSON_AddNumberToObject(o, "rank_time", e->rank_time);
    if (e->has_sequence)
        cJSON_AddNumberToObject(o, "sequence", e->sequence);
    if (e->text)
        cJSON_AddStringToObject(o, "text", e->text);
    if (e->step) {
        const Melbo__StepInfo *s = e->step;
        cJSON_AddNumberToObject(o, "wave", s->wave);
        cJSON_AddNumberToObject(o, "waves", s->n_waves);
        cJSON_AddNumberToObject(o, "step", s->step);
        cJSON_AddNumberToObject(o, "steps", s->steps);
        cJSON_AddNumberToObject(o, "first_vector", s->first_vector);
        cJSON *a = cJSON_AddArrayToObject(o, "objective");
        for (size_t i = 0; i < s->n_objective; i++)
            cJSON_AddItemToArray(a, cJSON_CreateNumber(s->objective[i]));
        cJSON_AddNumberToObject(o, "step_seconds", s->step_seconds);
        cJSON_AddNumberToObject(o, "vector_steps_per_s", s->vector_steps_per_s);
        cJSON_AddNumberToObject(o, "eta_seconds", s->eta_seconds);
        cJSON_AddNumberToObject(o, "tflops", s->tflops);
        if (s->has_points && s->points > 0) {
            cJSON_AddNumberToObject(o, "point", s->point);
            cJSON_AddNumberToObject(o, "points", s->points);
            cJSON_AddStringToObject(o, "point_label", s->point_label ? s->point_label : "");
        }
    }
    if (e->generate) {
        cJSON_AddNumberToObject(o, "generated", e->generate->done);
        cJSON_AddNumberToObject(o, "to_generate", e->generate->total);
        cJSON_AddNumberToObject(o, "tokens_per_s", e->generate->tokens_per_s);
    }
    char *s = cJSON_PrintUnformatted(o);
    printf("%s\n", s);
    fflush(stdout);
    free(s);
    cJSON_Delete(o);
}

/*
 * Folds one event (borrowed) into v: state, texts, the step counters and the objective history
 * of the first 64 vectors (the last SPARK_LEN values each, reset when a new wave starts).
 */
static void update_view(struct view *v, const Melbo__JobEvent *e) {
    v->state = e->state;
    if (e->kind == MELBO__JOB_EVENT__KIND__STATE && e->detail)
        snprintf(v->detail, sizeof v->detail, "%s", e->detail);
    if (e->error && *e->error)
        snprintf(v->error, sizeof v->error, "%s", e->error);
    if (e->reason)
        snprintf(v->reason, sizeof v->reason, "%s", e->reason);
    if (e->bank_id && *e->bank_id)
        snprintf(v->bank, sizeof v->bank, "%s", e->bank_id);
    if (e->log && *e->log)
        snprintf(v->log, sizeof v->log, "%s", e->log);
    if (e->step) {
        const Melbo__StepInfo *s = e->step;
        if (s->wave != v->wave || s->first_vector != v->first)
            memset(v->hist_len, 0, sizeof v->hist_len);
        v->wave = s->wave, v->n_waves = s->n_waves, v->step = s->step, v->steps = s->steps;
        v->first = s->first_vector, v->n_vec = (int)s->n_objective;
        v->sps = s->vector_steps_per_s, v->eta = s->eta_seconds, v->tflops = s->tflops;
        if (s->has_points && s->points > 0) {
            if (s->point != v->point)
                memset(v->hist_len, 0, sizeof v->hist_len);
            v->point = s->point, v->points = s->points;
            snprintf(v->point_label, sizeof v->point_label, "%s",
                     s->point_label ? s->point_label : "");
        }
        for (int i = 0; i < v->n_vec && i < 64; i++) {
            if (v->hist_len[i] == SPARK_LEN) {
                memmove(v->hist[i], v->hist[i] + 1, sizeof(float) * (SPARK_LEN - 1));
                v->hist_len[i]--;
            }
            v->hist[i][v->hist_len[i]++] = s->objective[i];
        }
    }
}

/* Clears the terminal and draws v for job: state, wave progress, one sparkline per vector. */
static void draw(const struct view *v, uint64_t job) {
    static const char *const bars[] = {"\u2581", "\u2582", "\u2583", "\u2584",
                                       "\u2585", "\u2586", "\u2587", "\u2588"};
    printf("\033[H\033[2J");
    printf("job %llu  %s", (unsigned long long)job, melbo_job_state_name(v->state));
    /* every text may come from another user's job or its ranks: escaped before a terminal */
    if (v->state == MELBO__JOB_STATE__QUEUED && v->reason[0])
        printf("  (%s)", melbo_cli_safe(v->reason, 0));
    else if (v->detail[0])
        printf("  (%s)", melbo_cli_safe(v->detail, 0));
    printf("\n");
    if (v->points > 0)
        printf("sweep point %d/%d: %s\n", v->point + 1, v->points,
               melbo_cli_safe(v->point_label, 0));
    if (v->n_waves > 0) {
        int width = 30, fill = v->steps ? v->step * width / v->steps : 0;
        printf("wave %d/%d [", v->wave + 1, v->n_waves);
        for (int i = 0; i < width; i++)
            printf(i < fill ? "#" : ".");
        printf("] step %d/%d  %.1f %s  ETA %.0fs  %.3f TFLOP/s\n", v->step, v->steps, v->sps,
               v->unit ? v->unit : "vector-steps/s", v->eta, v->tflops);
        for (int i = 0; i < v->n_vec && i < 64; i++) {
            float lo = v->hist[i][0], hi = v->hist[i][0];
            for (int k = 0; k < v->hist_len[i]; k++) {
                lo = v->hist[i][k] < lo ? v->hist[i][k] : lo;
                hi = v->hist[i][k] > hi ? v->hist[i][k] : hi;
            }
            printf("  v%-4d ", v->first + i);
            for (int k = 0; k < v->hist_len[i]; k++) {
                int b = hi > lo ? (int)((v->hist[i][k] - lo) / (hi - lo) * 7.999f) : 0;
                printf("%s", bars[b < 0 ? 0 : b > 7 ? 7 : b]);
            }
            printf(" %.4g\n", v->hist[i][v->hist_len[i] - 1]);
        }
    }
    if (v->log[0])
        printf("log: %s\n", melbo_cli_safe(v->log, 0));
    if (v->error[0])
        printf("error: %s\n", melbo_cli_safe(v->error, 0));
    if (v->bank[0])
        printf("bank: %s\n", melbo_cli_safe(v->bank, 0));
    fflush(stdout);
}

/* Sets *unit, the live view's rate unit for job: "adapter-steps/s" for an adapter job, else
 * "vector-steps/s" (one ShowJob request on the open connection c). Returns 0 or the exit code of
 * its refusal (printed: an unknown job, another user's private job). */
static int rate_unit(struct melbo_cli *c, uint64_t job, const char **unit) {
    Melbo__ShowJobRequest q = MELBO__SHOW_JOB_REQUEST__INIT;
    q.has_job_id = 1;
    q.job_id = job;
    Melbo__Envelope env = MELBO__ENVELOPE__INIT, *rep = NULL;
    env.body_case = MELBO__ENVELOPE__BODY_SHOW_JOB;
    env.show_job = &q;
    int st = melbo_cli_call_expect(c, &env, &rep, MELBO__ENVELOPE__BODY_JOB);
    *unit = "vector-steps/s";
    if (st == 0 && rep->job->job && rep->job->job->has_adapter_rank &&
        rep->job->job->adapter_rank > 0)
        *unit = "adapter-steps/s";
    if (st == 0)
        melbo__envelope__free_unpacked(rep, NULL);
    return st;
}

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Sleeps the back-off of reconnection attempt k (1 s doubling to 30 s, +-25% jitter). */
static void backoff(int k) {
    double s = k < 5 ? (double)(1 << k) : 30.0;
    s = s > 30 ? 30 : s;
    s *= 0.75 + 0.5 * ((double)rand() / RAND_MAX);
    struct timespec ts = {(time_t)s, (long)((s - (time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

struct melbo_cli_follow_opts melbo_cli_follow_defaults(void) {
    const char *t = getenv("MELBO_WATCH_TIMEOUT");
    struct melbo_cli_follow_opts o = {1, t && atof(t) > 0 ? atof(t) : 30, 600};
    return o;
}

int melbo_cli_follow(struct melbo_cli *c, uint64_t job, const struct melbo_cli_follow_opts *o,
                     melbo_cli_event_fn on_event, void *ctx) {
    uint64_t from = o->from ? o->from : 1;
    int tries = 0, status = MELBO_CLI_UNREACHABLE, reconnecting = 0, state = 0, st;
    double lost_at = 0;
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    for (;;) {
        if (c->conn.fd < 0 && (st = melbo_cli_connect(c)) != 0) {
            if (st == MELBO_CLI_UNREACHABLE && (from > 1 || reconnecting) &&
                mono_s() - lost_at < o->give_up_s) {
                backoff(tries++); /* the coordinator restarts, or the network heals */
                continue;
            }
            status = st;
            break;
        }
        if (reconnecting)
            fprintf(stderr, "melbo: reconnected; resuming at event %llu\n",
                    (unsigned long long)from);
        reconnecting = 0;
        Melbo__WatchRequest wr = MELBO__WATCH_REQUEST__INIT;
        wr.has_job_id = wr.has_from_event = wr.has_follow = 1;
        wr.job_id = job;
        wr.from_event = from;
        wr.follow = 1;
        Melbo__Envelope env = MELBO__ENVELOPE__INIT;
        env.has_id = 1;
        env.id = ++c->next_id;
        env.body_case = MELBO__ENVELOPE__BODY_WATCH;
        env.watch = &wr;
        struct melbo_err err = {0};
        int done = 0, silent = 0;
        if (melbo_conn_send(&c->conn, &env, 10000, &err) == 0) {
            for (;;) {
                Melbo__Envelope *e = NULL;
                double t0 = mono_s();
                int r = melbo_conn_recv(&c->conn, (int)(o->timeout_s * 1000), &e, &err);
                if (r == MELBO_EMISSING || (r != 0 && mono_s() - t0 >= 0.9 * o->timeout_s))
                    silent = 1; /* the time ran out (also in the middle of a frame) */
                if (r != 0)
                    break; // reconnect
                if (e->body_case == MELBO__ENVELOPE__BODY_ERROR) {
                    int slow = e->error->code == MELBO__ERROR_CODE__ERROR_SLOW_CONSUMER;
                    int code = melbo_cli_error(e->error);
                    melbo__envelope__free_unpacked(e, NULL);
                    if (slow)
                        break; // reconnect from our last event
                    status = code;
                    done = 1;
                    break;
                }
                if (e->body_case == MELBO__ENVELOPE__BODY_EVENT && e->event->job_id == job &&
                    e->event->number == from) {
                    from++;
                    tries = 0;
                    state = e->event->state;
                    on_event(ctx, e->event);
                } else if (e->body_case == MELBO__ENVELOPE__BODY_WATCH_END) {
                    done = 1;
                } /* a Keepalive only proves the coordinator is there */
                melbo__envelope__free_unpacked(e, NULL);
                if (done)
                    break;
            }
        }
        melbo_conn_close(&c->conn);
        if (done) {
            if (status == MELBO_CLI_UNREACHABLE || status == MELBO_CLI_OK)
                status = state == MELBO__JOB_STATE__DONE        ? MELBO_CLI_OK
                         : state == MELBO__JOB_STATE__CANCELLED ? MELBO_CLI_JOB_CANCELLED
                         : state == MELBO__JOB_STATE__FAILED    ? MELBO_CLI_JOB_FAILED
                                                                : MELBO_CLI_REFUSED;
            break;
        }
        if (!reconnecting) {
            lost_at = mono_s();
            if (silent)
                fprintf(stderr, "melbo: no word from the coordinator for %.0f s; reconnecting "
                                "(resuming at event %llu)\n",
                        o->timeout_s, (unsigned long long)from);
            else
                fprintf(stderr, "melbo: lost the coordinator; reconnecting (resuming at event "
                                "%llu)\n",
                        (unsigned long long)from);
        }
        reconnecting = 1;
        if (mono_s() - lost_at >= o->give_up_s) {
            fprintf(stderr, "melbo: gave up after %.0f s without the coordinator\n", o->give_up_s);
            break;
        }
        backoff(tries++);
    }
    return status;
}

/* melbo watch's side of the follow: the live view on a terminal, else one JSON line per event. */
struct watch_ctx {
    int live;
    uint64_t job;
    struct view *v;
};

static void on_watch_event(void *vctx, const Melbo__JobEvent *e) {
    struct watch_ctx *w = vctx;
    if (w->live) {
        update_view(w->v, e);
        draw(w->v, w->job);
    } else {
        melbo_cli_print_event_json(e); // --json, or not a terminal
    }
    w->v->state = e->state;
}

int melbo_cli_cmd_watch(struct melbo_cli *c, int argc, char **argv) {
    uint64_t job = 0;
    int st;
    struct melbo_cli_follow_opts fo = melbo_cli_follow_defaults();
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--timeout") && i + 1 < argc && atof(argv[i + 1]) > 0) {
            fo.timeout_s = atof(argv[++i]);
        } else if (!strcmp(argv[i], "--give-up") && i + 1 < argc && atof(argv[i + 1]) > 0) {
            fo.give_up_s = atof(argv[++i]);
        } else if (!strcmp(argv[i], "--from") && i + 1 < argc) {
            fo.from = strtoull(argv[++i], NULL, 10);
        } else if (job == 0 && argv[i][0] != '-') {
            if ((st = melbo_cli_job_id(argv[i], &job)) != 0)
                return st;
        } else {
            fprintf(stderr, "usage: melbo watch JOB [--json] [--from EVENT] [--timeout S] "
                            "[--give-up S]\n");
            return MELBO_CLI_USAGE;
        }
    }
    if (job == 0) {
        fprintf(stderr, "usage: melbo watch JOB [--json] [--from EVENT] [--timeout S] "
                        "[--give-up S]\n");
        return MELBO_CLI_USAGE;
    }
    struct watch_ctx w = {!c->json && isatty(STDOUT_FILENO), job, calloc(1, sizeof(struct view))};
    if (w.v == NULL)
        return MELBO_CLI_UNREACHABLE;
    if (w.live) { /* the rate's unit: one ShowJob first (it also refuses an unknown job) */
        if ((st = melbo_cli_connect(c)) == 0) {
            st = rate_unit(c, job, &w.v->unit);
            melbo_conn_close(&c->conn);
        }
        if (st != 0 && st != MELBO_CLI_UNREACHABLE) {
            free(w.v);
            return st;
        }
    }
    int status = melbo_cli_follow(c, job, &fo, on_watch_event, &w);
    struct view *v = w.v;
    if (w.live && v->state == MELBO__JOB_STATE__FAILED)
        fprintf(stderr, "melbo: job %llu FAILED: %s\n", (unsigned long long)job,
                melbo_cli_safe(v->error, 0));
    free(v);
    return status;
}
