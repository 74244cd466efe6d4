/* rank/train/trainer.c - waves of steering vectors on a backend (rank/train/trainer.h). */
#include "rank/train/trainer.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/mem.h"
#include "common/rng.h"
#include "rank/model/flops.h"
#include "rank/model/checkpoint.h"
#include "rank/model/safetensors.h"
#include "rank/generate/settings.h"
#include "rank/train/progress.h"
#include "rank/train/state.h"

volatile sig_atomic_t melbo_train_checkpoint_requested = 0;

/* Fails early (before an hour of training) when path cannot be created. */
static int check_writable(const char *what, const char *path, struct melbo_err *err) {
    char probe[4096];
    snprintf(probe, sizeof probe, "%s.probe.%ld", path, (long)getpid());
    int fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return melbo_err_set(err, MELBO_EIO, "cannot write %s %s: %s", what, path, strerror(errno));
    close(fd);
    unlink(probe);
    return 0;
}

/* One tensor of --init: name F32/F16/BF16 of shape dims[0..ndim), converted into dst. */
static int load_init_tensor(const struct melbo_st_file *f, const char *name, int ndim,
                            const int64_t *dims, float *dst, size_t stride, size_t off,
                            size_t row, struct melbo_err *err) {
    const struct melbo_st_tensor *t = melbo_st_find(f, name);
    int ok = t != NULL && t->ndim == ndim && melbo_dtype_is_weight(t->dtype);
    for (int i = 0; ok && i < ndim; i++)
        ok = t->shape[i] == dims[i];
    if (!ok) {
        char shape[96];
        int n = snprintf(shape, sizeof shape, "[%lld", (long long)dims[0]);
        for (int i = 1; i < ndim; i++)
            n += snprintf(shape + n, sizeof shape - (size_t)n, ", %lld", (long long)dims[i]);
        snprintf(shape + n, sizeof shape - (size_t)n, "]");
        return melbo_err_set(err, MELBO_EFORMAT,
                             "needs a tensor '%s' of shape %s (F32/F16/BF16) holding the raw draws"
                             "%s",
                             name, shape,
                             t ? "" : melbo_st_find(f, "vectors") ? " (it holds 'vectors': a "
                                      "vector init file, not an adapter one)" :
                                      melbo_st_find(f, "lora_A") ? " (it holds 'lora_A': an "
                                      "adapter init file, not a vector one)" : "");
    }
    for (int64_t k = 0; k < dims[0]; k++)
        melbo_convert_to_f32(dst + (size_t)k * stride + off,
                             (const char *)t->data + (size_t)k * row * melbo_dtype_size(t->dtype),
                             t->dtype, row);
    return 0;
}

static int load_init(struct melbo_trainer *tr, struct melbo_err *err) {
    struct melbo_st_file f;
    int ret = melbo_st_open(&f, tr->set.init, err);
    if (ret)
        return melbo_err_prefix(err, "--init");
    tr->init_draws = melbo_xalloc_f32((size_t)tr->N * tr->W);
    if (tr->adapters) {
        const struct melbo_adapter_shape *a = &tr->adapter;
        int64_t dA[3] = {tr->N, a->r, a->ff}, dB[3] = {tr->N, a->d, a->r};
        size_t nA = melbo_adapter_n_A(a), W = (size_t)tr->W;
        ret = load_init_tensor(&f, "lora_A", 3, dA, tr->init_draws, W, 0, nA, err);
        if (ret == 0)
            ret = load_init_tensor(&f, "lora_B", 3, dB, tr->init_draws, W, nA, W - nA, err);
    } else {
        int64_t dv[2] = {tr->N, tr->d};
        ret = load_init_tensor(&f, "vectors", 2, dv, tr->init_draws, (size_t)tr->d, 0,
                               (size_t)tr->d, err);
    }
    if (ret)
        melbo_err_prefix(err, "--init %s", tr->set.init);
    melbo_st_close(&f);
    return ret;
}

void melbo_trainer_raw_draw(const struct melbo_trainer *tr, int k, double *g) {
    if (tr->init_draws && k < tr->N) {
        for (size_t j = 0; j < (size_t)tr->W; j++)
            g[j] = tr->init_draws[(size_t)k * tr->W + j];
    } else {
        melbo_rng_normal_f64(tr->set.seed, (uint64_t)k, g, (size_t)tr->W);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Setup.
 */

/* The settings that need the model's config, the output paths, the fingerprint and the name. */
static int resolve(struct melbo_trainer *tr, struct melbo_model_config *cfg,
                   struct melbo_err *err) {
    struct melbo_train_params *p = &tr->set;
    struct melbo_checkpoint ck;
    int ret = melbo_config_load(cfg, p->model, err);
    if (ret)
        return ret;
    ret = melbo_tp_check(cfg, p->tp, err);
    if (ret)
        return ret;
    ret = melbo_train_params_resolve(p, cfg->n_layers, cfg->d_model, cfg->d_ff, err);
    if (ret == 0)
        ret = melbo_device_resolve(&p->device, err);
    if (ret)
        return ret;
    if (tr->rank0) {
        ret = check_writable("the output", p->out, err);
        if (ret == 0 && p->checkpoint)
            ret = check_writable("the checkpoint", p->checkpoint, err);
        if (ret)
            return ret;
    }
    ret = melbo_checkpoint_open(&ck, p->model, err);
    if (ret)
        return ret;
    ret = melbo_checkpoint_fingerprint(&ck, tr->fingerprint, err);
    melbo_checkpoint_close(&ck);
    if (ret)
        return ret;
    char *dcopy = melbo_xstrdup(p->model);
    size_t l = strlen(dcopy);
    while (l > 1 && dcopy[l - 1] == '/')
        dcopy[--l] = '\0';
    snprintf(tr->model_name, sizeof tr->model_name, "%s", basename(dcopy));
    free(dcopy);
    return 0;
}

/* Opens the backend on the host model and computes the prefix there. */
static int start_backend(struct melbo_trainer *tr, struct melbo_err *err) {
    struct melbo_train_params *p = &tr->set;
    int ret = melbo_backend_open(&tr->be, p->device, p->gpu_bf16, &tr->model, tr->comm, err);
    if (ret)
        return ret;
    size_t nd = (size_t)tr->pr.seqs.n_tok * tr->d;
    tr->pre.X = melbo_xalloc_f32(nd);
    tr->pre.Y = melbo_xalloc_f32(nd);
    struct melbo_train_task task = {&tr->pr,   tr->s,       tr->t,
                                    tr->B,     p->p,        p->q,
                                    p->loss_axis, tr->adapters ? &tr->adapter : NULL};
    ret = melbo_backend_prefix(&tr->be, &task, tr->pre.X, tr->pre.Y, err);
    if (ret)
        return ret;
    if (tr->rank0 && tr->be.device != MELBO_DEVICE_CPU)
        fprintf(stderr, "train: backend cuda: %s\n", melbo_backend_describe(&tr->be));
    return 0;
}

/* --radius auto: R from the host model's span on the prefix, recorded in the run's settings. */
static int calibrate(struct melbo_trainer *tr, struct melbo_err *err) {
    struct melbo_train_params *p = &tr->set;
    struct melbo_calibration_opts o = {p->calibration_samples, p->calibration_lambda,
                                       p->calibration_init, p->seed};
    int ret =
        melbo_calibrate_radius(&tr->model, tr->s, tr->t, &tr->pr, &tr->pre, &o, &tr->cal, err);
    if (ret)
        return ret;
    p->radius = tr->cal.radius;
    if (tr->rank0)
        fprintf(stderr,
                "train: --radius auto chose R = %.6g (lambda %g over %d directions; "
                "ratio %.3g at R = %g, %.3g at R = %g)\n",
                tr->cal.radius, tr->cal.lambda, tr->cal.samples, tr->cal.ratio_lo, MELBO_CAL_R_MIN,
                tr->cal.ratio_hi, MELBO_CAL_R_MAX);
    return 0;
}

/* The random baselines' storage and the decoding settings the model declares. */
static int setup_generation(struct melbo_trainer *tr, int gen, struct melbo_err *err) {
    struct melbo_train_params *p = &tr->set;
    tr->K = gen ? p->random_baselines : 0;
    tr->random = melbo_xalloc_f32((size_t)(tr->K ? tr->K : 1) * tr->W);
    tr->completions_json = melbo_xstrdup("{}");
    tr->generation_json = melbo_xstrdup("{}");
    tr->triage_json = melbo_xstrdup("null");
    if (!gen)
        return 0;
    int ret = melbo_gen_settings_from_model(&p->gen, &tr->model.cfg, p->model, err);
    if (ret)
        return ret;
    if (tr->pr.end_of_turn >= 0)
        melbo_gen_add_stop(&p->gen, tr->pr.end_of_turn);
    if (tr->tok == NULL && tr->rank0)
        fprintf(stderr,
                "train: %s has no tokenizer: completions are generated as token ids "
                "only and stored as empty text\n",
                p->model);
    return 0;
}

int melbo_trainer_load_shared(struct melbo_model *m, const struct melbo_train_params *p,
                              struct melbo_err *err) {
    struct melbo_load_opts lo = {0, -1, 1, 1, p->tp_rank, p->tp};
    return melbo_model_load(m, p->model, &lo, err);
}

int melbo_trainer_init(struct melbo_trainer *tr, const struct melbo_train_params *given,
                       struct melbo_comm *comm, struct melbo_err *err) {
    return melbo_trainer_init_shared(tr, given, comm, NULL, err);
}

int melbo_trainer_init_shared(struct melbo_trainer *tr, const struct melbo_train_params *given,
                              struct melbo_comm *comm, const struct melbo_model *shared,
                              struct melbo_err *err) {
    memset(tr, 0, sizeof *tr);
    melbo_train_params_copy(&tr->set, given);
    struct melbo_train_params *p = &tr->set;
    tr->comm = comm;
    tr->rank0 = comm == NULL || melbo_comm_rank(comm) == 0;
    double t0 = melbo_now();
    struct melbo_model_config cfg;
    int ret = resolve(tr, &cfg, err);
    if (ret)
        return ret;
    tr->s = p->source_layer;
    tr->t = p->target_layer;
    tr->L = cfg.n_layers;
    tr->d = cfg.d_model;
    tr->N = p->vectors;
    tr->B = p->wave;
    tr->steps = p->steps;
    tr->adapters = p->adapter_rank > 0;
    tr->adapter = (struct melbo_adapter_shape){p->adapter_rank, cfg.d_model, cfg.d_ff,
                                               p->adapter_alpha};
    tr->W = tr->adapters ? (int)melbo_adapter_width(&tr->adapter) : tr->d;
    int gen = p->generate && p->gen.max_new_tokens > 0;
    struct melbo_load_opts lo = {0, gen ? -1 : tr->t, 1, gen, p->tp_rank, p->tp};
    if (shared) {
        tr->model = *shared;
        tr->model_borrowed = 1;
    } else if ((ret = melbo_model_load(&tr->model, p->model, &lo, err)) != 0) {
        return ret;
    }
    if (p->tp > 1) {
        tr->model.reduce.fn = melbo_comm_tp_reduce;
        tr->model.reduce.ctx = comm;
    }
    ret = melbo_prompts_load(&tr->pr, p, &tr->model.cfg, &tr->tok, err);
    if (ret == 0 && p->init)
        ret = load_init(tr, err);
    if (ret == 0)
        ret = start_backend(tr, err);
    if (ret == 0 && p->radius_auto)
        ret = calibrate(tr, err);
    if (ret)
        return ret;
    melbo_wave_state_init(&tr->ws, tr->N, tr->B, tr->W, tr->steps);
    ret = setup_generation(tr, gen, err);
    tr->t_load = melbo_now() - t0;
    return ret;
}

void melbo_trainer_free(struct melbo_trainer *tr) {
    melbo_train_params_free(&tr->set);
    melbo_backend_free(&tr->be);
    melbo_prompts_free(&tr->pr);
    melbo_seqs_free(&tr->pairs);
    if (!tr->model_borrowed)
        melbo_model_free(&tr->model);
    free(tr->pre.X);
    free(tr->pre.Y);
    free(tr->init_draws);
    melbo_wave_state_free(&tr->ws);
    free(tr->random);
    free(tr->completions_json);
    free(tr->generation_json);
    free(tr->triage_json);
    melbo_tokenizer_free(tr->tok);
    memset(tr, 0, sizeof *tr);
}

/* ---------------------------------------------------------------------------------------------
 * One wave.
 */

static void wave_init(struct melbo_trainer *tr, int Bw) {
    struct melbo_wave_state *ws = &tr->ws;
    size_t d = (size_t)tr->W;
    double *g = melbo_xmalloc(sizeof(double) * d);
    ws->wave_B = Bw;
    ws->wave_step = 0;
    for (int b = 0; b < Bw; b++) {
        melbo_trainer_raw_draw(tr, ws->n_done + b, g);
        if (tr->adapters)
            melbo_adapter_init(ws->theta + b * d, g, &tr->adapter);
        else
            melbo_vector_init(ws->theta + b * d, g, tr->d, tr->set.radius, ws->vectors,
                              ws->n_done, ws->theta, b, tr->set.orthogonal);
    }
    memset(ws->m, 0, sizeof(float) * Bw * d);
    memset(ws->v, 0, sizeof(float) * Bw * d);
    memset(ws->vhat, 0, sizeof(float) * Bw * d);
    free(g);
}

/* This DP rank's share [pair_k0, pair_k1) of the Bw x P (vector, prompt) pairs, vector-major,
 * and their packing (rebuilt when the wave size changes). */
static void pair_batch(struct melbo_trainer *tr, int Bw) {
    int n = Bw * tr->pr.P, dp = tr->set.dp, r = tr->set.dp_rank;
    int chunk = (n + dp - 1) / dp;
    int k0 = r * chunk < n ? r * chunk : n;
    int k1 = k0 + chunk < n ? k0 + chunk : n;
    if (tr->pair_B == Bw && tr->pair_k0 == k0 && tr->pair_k1 == k1 && tr->pairs.start)
        return;
    melbo_seqs_free(&tr->pairs);
    int *lens = melbo_xmalloc(sizeof(int) * (size_t)(k1 - k0 + 1));
    for (int k = k0; k < k1; k++)
        lens[k - k0] = tr->pr.lens[k % tr->pr.P];
    melbo_seqs_init(&tr->pairs, lens, k1 - k0);
    free(lens);
    tr->pair_B = Bw;
    tr->pair_k0 = k0;
    tr->pair_k1 = k1;
}

void melbo_trainer_objective(struct melbo_trainer *tr, const float *theta, int Bw, float *F_out,
                             float *grad) {
    pair_batch(tr, Bw);
    double *F = melbo_xcalloc((size_t)Bw, sizeof *F);
    melbo_backend_wave_objective(&tr->be, theta, Bw, tr->pair_k0, tr->pair_k1, F, grad);
    if (tr->adapters && tr->set.tp > 1) { /* each rank's columns of A, 0 elsewhere: sum them */
        size_t nA = melbo_adapter_n_A(&tr->adapter);
        for (int b = 0; b < Bw; b++)
            melbo_comm_allreduce(tr->comm, MELBO_COMM_TP, grad + (size_t)b * tr->W, nA,
                                 MELBO_COMM_F32);
    }
    if (tr->set.dp > 1) { /* one all-reduce of the [B, W] gradient and the [B] objective */
        melbo_comm_allreduce(tr->comm, MELBO_COMM_DP, grad, (size_t)Bw * tr->W, MELBO_COMM_F32);
        melbo_comm_allreduce(tr->comm, MELBO_COMM_DP, F, (size_t)Bw, MELBO_COMM_F64);
    }
    for (int b = 0; b < Bw; b++)
        F_out[b] = (float)F[b];
    free(F);
}

/* One optimiser step of the current wave: F into F_out[wave_B]. */
static void wave_step(struct melbo_trainer *tr, float *F_out) {
    struct melbo_wave_state *ws = &tr->ws;
    int t = ws->wave_step + 1;
    melbo_trainer_objective(tr, ws->theta, ws->wave_B, F_out, ws->grad);
    struct melbo_optim o = {tr->set.radius,
                            {tr->set.lr, tr->set.betas[0], tr->set.betas[1], tr->set.eps},
                            tr->set.orthogonal,
                            tr->adapters ? &tr->adapter : NULL};
    melbo_backend_update(&tr->be, ws, t, &o);
    ws->wave_step = t;
}

static void on_sigusr1(int sig) {
    (void)sig;
    melbo_train_checkpoint_requested = 1;
}

void melbo_train_install_signal(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigusr1;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
}

/* ---------------------------------------------------------------------------------------------
 * The run.
 */

/* Where a run stands: for the progress line and the observer's step events. */
struct run_clock {
    struct melbo_progress prog;
    int n_waves;
    double t0;        // when this process started training
    long done_before; // vector-steps done before (a resumed run)
};

static void emit_step(struct melbo_trainer *tr, const struct run_clock *c, int wave_i,
                      const float *F, double ts) {
    const struct melbo_wave_state *ws = &tr->ws;
    int Bw = ws->wave_B;
    double el = melbo_now() - c->t0;
    long done = (long)ws->n_done * tr->steps + (long)ws->wave_step * Bw - c->done_before;
    long left = (long)tr->N * tr->steps - done - c->done_before;
    double flops = 2.0 * melbo_span_gemm_flops(&tr->model.cfg, tr->s + 1, tr->t, tr->pairs.n_tok) +
                   3.0 * melbo_span_attention_flops(&tr->model.cfg, tr->s + 1, tr->t, &tr->pairs);
    double rate = done / (el > 0 ? el : 1e-9);
    struct melbo_step_event ev = {wave_i,
                                  c->n_waves,
                                  ws->wave_step,
                                  tr->steps,
                                  ws->n_done,
                                  Bw,
                                  tr->N,
                                  F,
                                  ts,
                                  rate,
                                  left / (done > 0 ? rate : 1e-9),
                                  flops / (ts > 0 ? ts : 1e-9) * 1e-12};
    tr->obs.on_step(tr->obs.ctx, &ev);
}

/*
 * Writes a checkpoint (rank 0). A checkpoint only saves work for a resume, so one that cannot be
 * written (a full disk, issue 22) does not end the run: the failure is printed and reported as
 * a log event (once per failure streak), the previous checkpoint stays (writes are atomic) and
 * training goes on. Returns 1 when written, 0 when not.
 */
static int checkpoint_soft(struct melbo_trainer *tr, const char *path) {
    struct melbo_err err = {0};
    if (melbo_trainer_checkpoint(tr, path, &err) == 0) {
        if (tr->ckpt_failing)
            fprintf(stderr, "train: the checkpoint %s is written again\n", path);
        tr->ckpt_failing = 0;
        return 1;
    }
    if (tr->ckpt_failing++ == 0) {
        fprintf(stderr, "train: warning: %s; training goes on (a resume starts from the last "
                        "checkpoint written)\n", err.msg);
        if (tr->obs.on_log)
            tr->obs.on_log(tr->obs.ctx, "cannot write the checkpoint: training goes on");
    }
    return 0;
}

/* At a step boundary: checkpoint every --checkpoint-every steps or on SIGUSR1 (the ranks agree
 * here), and stop after it with --stop-on-signal (MELBO_ESTATE). */
static int step_boundary(struct melbo_trainer *tr, struct melbo_err *err) {
    const struct melbo_train_params *p = &tr->set;
    const struct melbo_wave_state *ws = &tr->ws;
    int requested = melbo_train_checkpoint_requested != 0;
    if (tr->comm && melbo_comm_size(tr->comm) > 1)
        melbo_comm_allreduce(tr->comm, MELBO_COMM_WORLD, &requested, 1, MELBO_COMM_I32);
    melbo_train_checkpoint_requested = 0;
    int every = p->checkpoint_every > 0 && ws->wave_step % p->checkpoint_every == 0;
    if (tr->rank0 && p->checkpoint && (every || requested) && ws->wave_step < tr->steps &&
        checkpoint_soft(tr, p->checkpoint) && tr->obs.on_checkpoint)
        tr->obs.on_checkpoint(tr->obs.ctx, p->checkpoint, ws->n_done, ws->wave_step);
    if (!requested || !p->stop_on_signal)
        return 0;
    if (tr->rank0 && tr->obs.on_state)
        tr->obs.on_state(tr->obs.ctx, "CHECKPOINTED", p->checkpoint ? p->checkpoint : "");
    return melbo_err_set(err, MELBO_ESTATE,
                         "stopped at vector %d, step %d of its wave after SIGUSR1; resume "
                         "with --resume %s",
                         ws->n_done, ws->wave_step,
                         p->checkpoint ? p->checkpoint : "(no --checkpoint given)");
}

/* Trains the current wave (from its wave_step on) to the end; F (B) scratch. */
static int run_wave(struct melbo_trainer *tr, struct run_clock *c, float *F,
                    struct melbo_err *err) {
    struct melbo_wave_state *ws = &tr->ws;
    int Bw = tr->N - ws->n_done < tr->B ? tr->N - ws->n_done : tr->B;
    if (ws->wave_step == 0)
        wave_init(tr, Bw);
    int wave_i = ws->n_done / tr->B;
    while (ws->wave_step < tr->steps) {
        int step = ws->wave_step;
        double ts = melbo_now();
        wave_step(tr, F);
        ts = melbo_now() - ts;
        for (int b = 0; b < Bw; b++)
            ws->objective[(size_t)(ws->n_done + b) * tr->steps + step] = F[b];
        melbo_progress_step(&c->prog, wave_i, c->n_waves, ws->wave_step, tr->steps, F, Bw);
        if (tr->obs.on_step)
            emit_step(tr, c, wave_i, F, ts);
        int ret = step_boundary(tr, err);
        if (ret)
            return ret;
    }
    memcpy(ws->vectors + (size_t)ws->n_done * tr->W, ws->theta, sizeof(float) * (size_t)Bw * tr->W);
    ws->n_done += Bw;
    ws->wave_step = 0;
    ws->wave_B = 0;
    melbo_progress_wave_done(&c->prog, wave_i, c->n_waves);
    if (tr->rank0 && tr->set.checkpoint)
        checkpoint_soft(tr, tr->set.checkpoint);
    return 0;
}

int melbo_trainer_run(struct melbo_trainer *tr, struct melbo_err *err) {
    struct melbo_wave_state *ws = &tr->ws;
    struct run_clock c;
    int ret = 0;
    c.n_waves = (tr->N + tr->B - 1) / tr->B;
    melbo_progress_init(&c.prog, (long)tr->N * tr->steps, ws->n_done * (long)tr->steps);
    c.prog.quiet = !tr->rank0;
    if (tr->obs.on_state)
        tr->obs.on_state(tr->obs.ctx, "RUNNING", "");
    float *F = melbo_xalloc_f32((size_t)tr->B);
    c.t0 = melbo_now();
    c.done_before = (long)ws->n_done * tr->steps + ws->wave_step * (long)ws->wave_B;
    while (ws->n_done < tr->N && ret == 0)
        ret = run_wave(tr, &c, F, err);
    if (ret == 0) {
        double dt = melbo_now() - c.t0;
        long vs = (long)tr->N * tr->steps - c.done_before;
        melbo_progress_finish(&c.prog);
        if (tr->rank0)
            fprintf(stderr,
                    "train: %ld %s-steps in %.3f s (%.6f s per %s-step); setup %.3f s\n", vs,
                    tr->adapters ? "adapter" : "vector", dt, vs > 0 ? dt / (double)vs : 0.0,
                    tr->adapters ? "adapter" : "vector", tr->t_load);
    }
    free(F);
    return ret;
}
