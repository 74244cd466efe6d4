/* rank/train/trainer.c - waves of steering vectors on the CPU backend (rank/train/trainer.h). */
#include "rank/train/trainer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/mem.h"
#include "common/rng.h"
#include "rank/model/checkpoint.h"
#include "rank/model/safetensors.h"
#include "rank/tokenizer/tokenizer.h"
#include "rank/generate/completions.h"
#include "rank/train/optim.h"
#include "rank/train/progress.h"
#ifdef MELBO_HAVE_CUDA
#include "rank/train/backend_gpu.h"
#endif

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

/* ---------------------------------------------------------------------------------------------
 * Prompts: text through the tokenizer, then ids; target positions from the slice.
 */

static void add_prompt(struct melbo_trainer *tr, const int32_t *ids, int n, const char *text) {
    tr->ids = melbo_xrealloc(tr->ids, sizeof *tr->ids * (size_t)(tr->P + 1));
    tr->lens = melbo_xrealloc(tr->lens, sizeof *tr->lens * (size_t)(tr->P + 1));
    tr->texts = melbo_xrealloc(tr->texts, sizeof *tr->texts * (size_t)(tr->P + 1));
    tr->ids[tr->P] = melbo_xmalloc(sizeof(int32_t) * (size_t)n);
    memcpy(tr->ids[tr->P], ids, sizeof(int32_t) * (size_t)n);
    tr->lens[tr->P] = n;
    tr->texts[tr->P] = melbo_xstrdup(text);
    tr->P++;
}

static int load_prompts(struct melbo_trainer *tr, struct melbo_err *err) {
    struct melbo_train_params *p = tr->p;
    snprintf(tr->chat_format, sizeof tr->chat_format, "none");
    tr->end_of_turn = -1;
    if (p->text.n > 0) {
        struct melbo_prompt_list list = {0};
        int ret = melbo_tokenizer_load(p->model, &tr->tok, err);
        if (ret)
            return ret;
        ret = melbo_prompt_opts_render(&p->text, tr->tok, &list, err);
        if (ret == 0) {
            for (size_t i = 0; i < list.n; i++)
                add_prompt(tr, list.p[i].ids.ids, (int)list.p[i].ids.n, list.p[i].text);
            snprintf(tr->chat_format, sizeof tr->chat_format, "%s",
                     list.format_used ? melbo_chat_format_name(list.format) : "raw");
            if (list.format_used)
                tr->end_of_turn = list.end_of_turn;
        }
        melbo_prompt_list_free(&list);
        if (ret)
            return ret;
    } else if (p->generate) {
        /* id prompts: a tokenizer, when the model has one, only turns completions into text */
        struct melbo_err ignored;
        if (melbo_tokenizer_load(p->model, &tr->tok, &ignored) != 0)
            tr->tok = NULL;
    }
    for (int i = 0; i < p->n_id_prompts; i++)
        add_prompt(tr, p->id_prompts[i], p->id_lens[i], "");
    tr->idx = melbo_xcalloc((size_t)tr->P, sizeof *tr->idx);
    tr->n_idx = melbo_xcalloc((size_t)tr->P, sizeof *tr->n_idx);
    for (int i = 0; i < tr->P; i++) {
        if (tr->lens[i] == 0)
            return melbo_err_set(err, MELBO_EINVAL, "prompt %d has no tokens", i);
        for (int j = 0; j < tr->lens[i]; j++)
            if (tr->ids[i][j] < 0 || tr->ids[i][j] >= tr->model.cfg.vocab)
                return melbo_err_set(err, MELBO_ERANGE,
                                     "prompt %d: token id %d at position %d is outside the "
                                     "model's vocabulary of %d",
                                     i, tr->ids[i][j], j, tr->model.cfg.vocab);
        tr->idx[i] = melbo_xmalloc(sizeof(int) * (size_t)tr->lens[i]);
        tr->n_idx[i] = melbo_slice_indices(&p->target_tokens, tr->lens[i], tr->idx[i]);
        if (tr->n_idx[i] == 0)
            return melbo_err_set(err, MELBO_EINVAL,
                                 "--target-tokens %s selects no token of prompt %d (%d tokens)",
                                 p->target_tokens.text, i, tr->lens[i]);
    }
    melbo_seqs_init(&tr->pseqs, tr->lens, tr->P);
    return melbo_seqs_check(&tr->pseqs, &tr->model.cfg, err);
}

static int load_init(struct melbo_trainer *tr, struct melbo_err *err) {
    struct melbo_st_file f;
    int ret = melbo_st_open(&f, tr->p->init, err);
    if (ret)
        return melbo_err_prefix(err, "--init");
    const struct melbo_st_tensor *t = melbo_st_find(&f, "vectors");
    if (t == NULL || t->ndim != 2 || t->shape[0] != tr->N || t->shape[1] != tr->d ||
        !melbo_dtype_is_weight(t->dtype)) {
        ret = melbo_err_set(err, MELBO_EFORMAT,
                            "--init %s needs a tensor 'vectors' of shape [%d, %d] (F32/F16/BF16) "
                            "holding the raw draws",
                            tr->p->init, tr->N, tr->d);
        goto out;
    }
    tr->init_draws = melbo_xalloc_f32((size_t)tr->N * tr->d);
    melbo_convert_to_f32(tr->init_draws, t->data, t->dtype, (size_t)tr->N * tr->d);
out:
    melbo_st_close(&f);
    return ret;
}

void melbo_trainer_raw_draw(const struct melbo_trainer *tr, int k, double *g) {
    if (tr->init_draws && k < tr->N) {
        for (int j = 0; j < tr->d; j++)
            g[j] = tr->init_draws[(size_t)k * tr->d + j];
    } else {
        melbo_rng_normal_f64(tr->p->seed, (uint64_t)k, g, (size_t)tr->d);
    }
}

/* Prefix: X = hidden_states[s+1] and Y = hidden_states[t] of every prompt, unsteered. */
static void compute_prefix(struct melbo_trainer *tr) {
    int n = tr->pseqs.n_tok, d = tr->d;
    int32_t *packed = melbo_xmalloc(sizeof(int32_t) * (size_t)n);
    for (int i = 0; i < tr->P; i++)
        memcpy(packed + tr->pseqs.start[i], tr->ids[i], sizeof(int32_t) * (size_t)tr->lens[i]);
    tr->X = melbo_xalloc_f32((size_t)n * d);
    tr->Y = melbo_xalloc_f32((size_t)n * d);
    melbo_cpu_embed(&tr->model, packed, n, tr->X);
    struct melbo_cpu_span sp;
    melbo_cpu_span_init(&sp, &tr->model, 0, tr->s + 1, n, 0);
    melbo_cpu_span_forward(&sp, &tr->pseqs, tr->X);
    melbo_cpu_span_free(&sp);
    memcpy(tr->Y, tr->X, sizeof(float) * (size_t)n * d);
    melbo_cpu_span_init(&sp, &tr->model, tr->s + 1, tr->t, n, 0);
    melbo_cpu_span_forward(&sp, &tr->pseqs, tr->Y);
    melbo_cpu_span_free(&sp);
    free(packed);
}

static void tp_reduce(void *ctx, float *buf, size_t n) {
    melbo_comm_allreduce(ctx, MELBO_COMM_TP, buf, n, MELBO_COMM_F32);
}

int melbo_trainer_init(struct melbo_trainer *tr, struct melbo_train_params *p,
                       struct melbo_comm *comm, struct melbo_err *err) {
    memset(tr, 0, sizeof *tr);
    tr->p = p;
    tr->comm = comm;
    tr->rank0 = comm == NULL || melbo_comm_rank(comm) == 0;
    double t0 = melbo_now();
    struct melbo_model_config cfg;
    struct melbo_checkpoint ck;
    int ret = melbo_config_load(&cfg, p->model, err);
    if (ret)
        return ret;
    ret = melbo_tp_check(&cfg, p->tp, err);
    if (ret)
        return ret;
    ret = melbo_train_params_resolve(p, cfg.n_layers, cfg.d_model, err);
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

    tr->s = p->source_layer;
    tr->t = p->target_layer;
    tr->L = cfg.n_layers;
    tr->d = cfg.d_model;
    tr->N = p->vectors;
    tr->B = p->wave;
    tr->steps = p->steps;
    int gen = p->generate && p->gen.max_new_tokens > 0;
    struct melbo_load_opts lo = {0, gen ? -1 : tr->t, 1, gen, p->tp_rank, p->tp};
    ret = melbo_model_load(&tr->model, p->model, &lo, err);
    if (ret)
        return ret;
    if (p->tp > 1) {
        tr->model.reduce.fn = tp_reduce;
        tr->model.reduce.ctx = comm;
    }
    ret = load_prompts(tr, err);
    if (ret == 0 && p->init)
        ret = load_init(tr, err);
    if (ret)
        return ret;
#ifdef MELBO_HAVE_CUDA
    if (p->device == MELBO_DEVICE_CUDA) {
        ret = melbo_train_gpu_init(tr, err);
        if (ret)
            return ret;
        if (tr->rank0)
            fprintf(stderr, "train: backend cuda: %s\n", melbo_train_gpu_describe(tr));
    } else
#endif
        compute_prefix(tr);
    if (p->radius_auto) {
        ret = melbo_calibrate_radius(tr, &tr->cal, err);
        if (ret)
            return ret;
        if (tr->rank0)
            fprintf(stderr,
                    "train: --radius auto chose R = %.6g (lambda %g over %d directions; "
                    "ratio %.3g at R = %g, %.3g at R = %g)\n",
                    tr->cal.radius, tr->cal.lambda, tr->cal.samples, tr->cal.ratio_lo,
                    MELBO_CAL_R_MIN, tr->cal.ratio_hi, MELBO_CAL_R_MAX);
    }

    size_t d = (size_t)tr->d, Bd = (size_t)tr->B * d;
    tr->vectors = melbo_xalloc_f32((size_t)tr->N * d);
    tr->objective = melbo_xalloc_f32((size_t)tr->N * (tr->steps ? tr->steps : 1));
    tr->theta = melbo_xalloc_f32(Bd);
    tr->m = melbo_xalloc_f32(Bd);
    tr->v = melbo_xalloc_f32(Bd);
    tr->vhat = melbo_xalloc_f32(Bd);
    tr->grad = melbo_xalloc_f32(Bd);
    size_t wave_tok = (size_t)tr->B * tr->pseqs.n_tok;
    tr->scratch = melbo_xmalloc(sizeof(double) * d);
    if (tr->gpu == NULL) { /* the CPU backend's step buffers */
        tr->buf = melbo_xalloc_f32(wave_tok * d);
        tr->dbuf = melbo_xalloc_f32(wave_tok * d);
        melbo_cpu_span_init(&tr->span, &tr->model, tr->s + 1, tr->t, (int)wave_tok, 1);
    }
    tr->K = gen ? p->random_baselines : 0;
    tr->random = melbo_xalloc_f32((size_t)(tr->K ? tr->K : 1) * d);
    tr->completions_json = melbo_xstrdup("{}");
    tr->generation_json = melbo_xstrdup("{}");
    if (gen) {
        ret = melbo_gen_settings_from_model(&p->gen, &tr->model.cfg, p->model, err);
        if (ret)
            return ret;
        if (tr->end_of_turn >= 0)
            melbo_gen_add_stop(&p->gen, tr->end_of_turn);
        if (tr->tok == NULL && tr->rank0)
            fprintf(stderr,
                    "train: %s has no tokenizer: completions are generated as token ids "
                    "only and stored as empty text\n",
                    p->model);
    }
    tr->t_load = melbo_now() - t0;
    return 0;
}

void melbo_trainer_free(struct melbo_trainer *tr) {
    for (int i = 0; i < tr->P; i++) {
        free(tr->ids[i]);
        free(tr->texts[i]);
        if (tr->idx)
            free(tr->idx[i]);
    }
    free(tr->ids);
    free(tr->texts);
    free(tr->lens);
    free(tr->idx);
    free(tr->n_idx);
    melbo_seqs_free(&tr->pseqs);
    melbo_seqs_free(&tr->wseqs);
    melbo_cpu_span_free(&tr->span);
#ifdef MELBO_HAVE_CUDA
    melbo_train_gpu_free(tr);
#endif
    melbo_model_free(&tr->model);
    free(tr->X);
    free(tr->Y);
    free(tr->init_draws);
    free(tr->vectors);
    free(tr->objective);
    free(tr->theta);
    free(tr->m);
    free(tr->v);
    free(tr->vhat);
    free(tr->grad);
    free(tr->buf);
    free(tr->dbuf);
    free(tr->scratch);
    free(tr->random);
    free(tr->completions_json);
    free(tr->generation_json);
    melbo_tokenizer_free(tr->tok);
    memset(tr, 0, sizeof *tr);
}

/* ---------------------------------------------------------------------------------------------
 * One wave.
 */

static void wave_init(struct melbo_trainer *tr, int Bw) {
    size_t d = (size_t)tr->d;
    double *g = melbo_xmalloc(sizeof(double) * d);
    tr->wave_B = Bw;
    tr->wave_step = 0;
    for (int b = 0; b < Bw; b++) {
        melbo_trainer_raw_draw(tr, tr->n_done + b, g);
        melbo_vector_init(tr->theta + b * d, g, tr->d, tr->p->radius, tr->vectors, tr->n_done,
                          tr->theta, b, tr->p->orthogonal);
    }
    memset(tr->m, 0, sizeof(float) * Bw * d);
    memset(tr->v, 0, sizeof(float) * Bw * d);
    memset(tr->vhat, 0, sizeof(float) * Bw * d);
    free(g);
}

/* This DP rank's share [*k0, *k1) of the Bw x P (vector, prompt) pairs, vector-major. */
static void pair_range(const struct melbo_trainer *tr, int Bw, int *k0, int *k1) {
    int n = Bw * tr->P, dp = tr->p->dp, r = tr->p->dp_rank;
    int chunk = (n + dp - 1) / dp;
    *k0 = r * chunk < n ? r * chunk : n;
    *k1 = *k0 + chunk < n ? *k0 + chunk : n;
}

/* (Re)builds the packed batch of this rank's pairs of a wave of Bw vectors. */
static void wave_batch(struct melbo_trainer *tr, int Bw) {
    int k0, k1;
    pair_range(tr, Bw, &k0, &k1);
    if (tr->pair_B == Bw && tr->pair_k0 == k0 && tr->pair_k1 == k1 && tr->wseqs.start)
        return;
    melbo_seqs_free(&tr->wseqs);
    int *lens = melbo_xmalloc(sizeof(int) * (size_t)(k1 - k0 + 1));
    for (int k = k0; k < k1; k++)
        lens[k - k0] = tr->lens[k % tr->P];
    melbo_seqs_init(&tr->wseqs, lens, k1 - k0);
    free(lens);
    tr->pair_B = Bw;
    tr->pair_k0 = k0;
    tr->pair_k1 = k1;
}

void melbo_trainer_objective(struct melbo_trainer *tr, const float *theta, int Bw, float *F_out,
                             float *grad) {
    int P = tr->P, d = tr->d;
    wave_batch(tr, Bw);
    int k0 = tr->pair_k0, k1 = tr->pair_k1;
    const int *start = tr->wseqs.start;
#ifdef MELBO_HAVE_CUDA
    if (tr->gpu) {
        double *Fg = melbo_xcalloc((size_t)Bw, sizeof *Fg);
        melbo_train_gpu_objective(tr, theta, Bw, k0, k1, Fg, grad);
        if (tr->p->dp > 1) {
            melbo_comm_allreduce(tr->comm, MELBO_COMM_DP, grad, (size_t)Bw * d, MELBO_COMM_F32);
            melbo_comm_allreduce(tr->comm, MELBO_COMM_DP, Fg, (size_t)Bw, MELBO_COMM_F64);
        }
        for (int b = 0; b < Bw; b++)
            F_out[b] = (float)Fg[b];
        free(Fg);
        return;
    }
#endif
    /* inputs: X_p + theta_b at every position of prompt p, for each pair (b, p) */
    for (int k = k0; k < k1; k++) {
        int b = k / P, i = k % P;
        float *dst = tr->buf + (size_t)start[k - k0] * d;
        const float *src = tr->X + (size_t)tr->pseqs.start[i] * d, *th = theta + (size_t)b * d;
        for (int r = 0; r < tr->lens[i]; r++)
            for (int j = 0; j < d; j++)
                dst[(size_t)r * d + j] = src[(size_t)r * d + j] + th[j];
    }
    double *Fd = melbo_xcalloc((size_t)Bw, sizeof *Fd);
    if (k1 > k0) {
        melbo_cpu_span_forward(&tr->span, &tr->wseqs, tr->buf);
        for (int k = k0; k < k1; k++) {
            int b = k / P, i = k % P;
            size_t off = (size_t)start[k - k0] * d;
            Fd[b] += melbo_objective(tr->buf + off, tr->Y + (size_t)tr->pseqs.start[i] * d,
                                     tr->lens[i], d, tr->idx[i], tr->n_idx[i], tr->p->p, tr->p->q,
                                     tr->p->loss_axis, tr->dbuf + off, tr->scratch);
        }
        melbo_cpu_span_backward(&tr->span, &tr->wseqs, tr->dbuf);
    }
    /* dLoss/dtheta_b = sum over every position of every prompt of dLoss/dX */
    double *acc = melbo_xcalloc((size_t)Bw * d, sizeof *acc);
    for (int k = k0; k < k1; k++) {
        int b = k / P, i = k % P;
        const float *dx = tr->dbuf + (size_t)start[k - k0] * d;
        double *a = acc + (size_t)b * d;
        for (int r = 0; r < tr->lens[i]; r++)
            for (int j = 0; j < d; j++)
                a[j] += dx[(size_t)r * d + j];
    }
    for (size_t j = 0; j < (size_t)Bw * d; j++)
        grad[j] = (float)acc[j];
    if (tr->p->dp > 1) { /* one all-reduce of the [B, d] gradient and the [B] objective */
        melbo_comm_allreduce(tr->comm, MELBO_COMM_DP, grad, (size_t)Bw * d, MELBO_COMM_F32);
        melbo_comm_allreduce(tr->comm, MELBO_COMM_DP, Fd, (size_t)Bw, MELBO_COMM_F64);
    }
    for (int b = 0; b < Bw; b++)
        F_out[b] = (float)Fd[b];
    free(acc);
    free(Fd);
}

/* One optimiser step of the current wave: F into F_out[Bw]. */
static void wave_step(struct melbo_trainer *tr, float *F_out) {
    int Bw = tr->wave_B, d = tr->d, t = tr->wave_step + 1;
    melbo_trainer_objective(tr, tr->theta, Bw, F_out, tr->grad);
    struct melbo_adam opt = {tr->p->lr, tr->p->beta1, tr->p->beta2, tr->p->eps};
    for (int b = 0; b < Bw; b++) {
        size_t o = (size_t)b * d;
        melbo_vector_update(tr->theta + o, tr->grad + o, tr->m + o, tr->v + o, tr->vhat + o, d, t,
                            tr->p->radius, &opt, tr->vectors, tr->n_done, tr->p->orthogonal);
    }
    if (tr->p->orthogonal && Bw > 1)
        melbo_wave_orthogonalize(tr->theta, Bw, d, tr->p->radius, tr->vectors, tr->n_done);
    tr->wave_step = t;
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

int melbo_trainer_run(struct melbo_trainer *tr, struct melbo_err *err) {
    melbo_train_install_signal();
    int n_waves = (tr->N + tr->B - 1) / tr->B, ret = 0;
    struct melbo_progress prog;
    melbo_progress_init(&prog, (long)tr->N * tr->steps, tr->n_done * (long)tr->steps);
    prog.quiet = !tr->rank0;
    if (tr->obs.on_state)
        tr->obs.on_state(tr->obs.ctx, "RUNNING", "");
    float *F = melbo_xalloc_f32((size_t)tr->B);
    double t0 = melbo_now();
    long done_before = (long)tr->n_done * tr->steps + tr->wave_step * (long)tr->wave_B;
    while (tr->n_done < tr->N) {
        int Bw = tr->N - tr->n_done < tr->B ? tr->N - tr->n_done : tr->B;
        if (tr->wave_step == 0)
            wave_init(tr, Bw);
        int wave_i = tr->n_done / tr->B;
        while (tr->wave_step < tr->steps) {
            int step = tr->wave_step;
            double ts = melbo_now();
            wave_step(tr, F);
            ts = melbo_now() - ts;
            for (int b = 0; b < Bw; b++)
                tr->objective[(size_t)(tr->n_done + b) * tr->steps + step] = F[b];
            melbo_progress_step(&prog, wave_i, n_waves, tr->wave_step, tr->steps, F, Bw);
            if (tr->obs.on_step) {
                double el = melbo_now() - t0;
                long done = (long)tr->n_done * tr->steps + (long)tr->wave_step * Bw - done_before;
                long left = (long)tr->N * tr->steps - done - done_before;
                double flops =
                    2.0 * melbo_span_gemm_flops(&tr->model.cfg, tr->s + 1, tr->t, tr->wseqs.n_tok) +
                    3.0 * melbo_span_attention_flops(&tr->model.cfg, tr->s + 1, tr->t, &tr->wseqs);
                struct melbo_step_event ev = {wave_i,
                                              n_waves,
                                              tr->wave_step,
                                              tr->steps,
                                              tr->n_done,
                                              Bw,
                                              tr->N,
                                              F,
                                              ts,
                                              done / (el > 0 ? el : 1e-9),
                                              left /
                                                  (done > 0 ? done / (el > 0 ? el : 1e-9) : 1e-9),
                                              flops / (ts > 0 ? ts : 1e-9) * 1e-12};
                tr->obs.on_step(tr->obs.ctx, &ev);
            }
            /* SIGUSR1 (a time limit ahead): the ranks agree at this step boundary */
            int requested = melbo_train_checkpoint_requested != 0;
            if (tr->comm && melbo_comm_size(tr->comm) > 1)
                melbo_comm_allreduce(tr->comm, MELBO_COMM_WORLD, &requested, 1, MELBO_COMM_I32);
            melbo_train_checkpoint_requested = 0;
            int every = tr->p->checkpoint_every > 0 && tr->wave_step % tr->p->checkpoint_every == 0;
            if (tr->rank0 && tr->p->checkpoint && (every || requested) &&
                tr->wave_step < tr->steps) {
                ret = melbo_trainer_checkpoint(tr, tr->p->checkpoint, err);
                if (ret)
                    goto out;
                if (tr->obs.on_checkpoint)
                    tr->obs.on_checkpoint(tr->obs.ctx, tr->p->checkpoint, tr->n_done,
                                          tr->wave_step);
            }
            if (requested && tr->p->stop_on_signal) {
                if (tr->rank0 && tr->obs.on_state)
                    tr->obs.on_state(tr->obs.ctx, "CHECKPOINTED",
                                     tr->p->checkpoint ? tr->p->checkpoint : "");
                ret = melbo_err_set(
                    err, MELBO_ESTATE,
                    "stopped at vector %d, step %d of its wave after SIGUSR1; resume "
                    "with --resume %s",
                    tr->n_done, tr->wave_step,
                    tr->p->checkpoint ? tr->p->checkpoint : "(no --checkpoint given)");
                goto out;
            }
        }
        memcpy(tr->vectors + (size_t)tr->n_done * tr->d, tr->theta,
               sizeof(float) * (size_t)Bw * tr->d);
        tr->n_done += Bw;
        tr->wave_step = 0;
        tr->wave_B = 0;
        melbo_progress_wave_done(&prog, wave_i, n_waves);
        if (tr->rank0 && tr->p->checkpoint) {
            ret = melbo_trainer_checkpoint(tr, tr->p->checkpoint, err);
            if (ret)
                goto out;
        }
    }
    double dt = melbo_now() - t0;
    long vs = (long)tr->N * tr->steps - done_before;
    melbo_progress_finish(&prog);
    if (tr->rank0)
        fprintf(stderr,
                "train: %ld vector-steps in %.3f s (%.6f s per vector-step); setup %.3f s\n", vs,
                dt, vs > 0 ? dt / (double)vs : 0.0, tr->t_load);
out:
    free(F);
    return ret;
}

/* ---------------------------------------------------------------------------------------------
 * Completions.
 */

static cJSON *texts_json(const struct melbo_completions *c, int v0, int n_vec) {
    cJSON *outer = cJSON_CreateArray();
    for (int v = v0; v < v0 + n_vec; v++) {
        cJSON *row = cJSON_CreateArray();
        for (int i = 0; i < c->n_prompts; i++)
            cJSON_AddItemToArray(row, cJSON_CreateString(c->text[v * c->n_prompts + i]));
        cJSON_AddItemToArray(outer, row);
    }
    return outer;
}

int melbo_trainer_generate(struct melbo_trainer *tr, struct melbo_err *err) {
    struct melbo_train_params *p = tr->p;
    if (!p->generate || p->gen.max_new_tokens == 0)
        return 0;
    int d = tr->d, N = tr->N, K = tr->K, ret;
    /* random baselines: draws N, N+1, ... orthogonalised like initial vectors, never trained */
    double *g = melbo_xmalloc(sizeof(double) * (size_t)d);
    float *all = melbo_xalloc_f32((size_t)(N + K) * d);
    memcpy(all, tr->vectors, sizeof(float) * (size_t)N * d);
    for (int k = 0; k < K; k++) {
        melbo_trainer_raw_draw(tr, N + k, g);
        melbo_vector_init(tr->random + (size_t)k * d, g, d, p->radius, all, N + k, NULL, 0,
                          p->orthogonal);
        memcpy(all + (size_t)(N + k) * d, tr->random + (size_t)k * d, sizeof(float) * (size_t)d);
    }
    free(g);
    /* jobs: every learned vector, then none, then every random baseline */
    int n_vec = N + 1 + K;
    const float **vecs = melbo_xcalloc((size_t)n_vec, sizeof *vecs);
    for (int v = 0; v < N; v++)
        vecs[v] = tr->vectors + (size_t)v * d;
    vecs[N] = NULL;
    for (int k = 0; k < K; k++)
        vecs[N + 1 + k] = tr->random + (size_t)k * d;
    if (tr->obs.on_state)
        tr->obs.on_state(tr->obs.ctx, "GENERATING", "");
    struct melbo_completions c;
#ifdef MELBO_HAVE_CUDA
    if (tr->gpu) /* decode on the device when it holds the whole model (tp = 1) */
        p->gen.gpu = melbo_train_gpu_for_generation(tr);
#endif
    ret = melbo_completions_run(&tr->model, tr->s, &p->gen, tr->tok, vecs, n_vec, tr->ids, tr->lens,
                                tr->P, "generate", tr->comm, &c, err);
    free(vecs);
    free(all);
    if (ret)
        return ret;
    if (!tr->rank0) /* rank 0 holds the gathered results and writes the bank */
        return 0;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "vectors", texts_json(&c, 0, N));
    cJSON *unsteered = texts_json(&c, N, 1);
    cJSON_AddItemToObject(o, "unsteered", cJSON_DetachItemFromArray(unsteered, 0));
    cJSON_Delete(unsteered);
    cJSON_AddItemToObject(o, "random", texts_json(&c, N + 1, K));
    free(tr->completions_json);
    tr->completions_json = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    free(tr->generation_json);
    tr->generation_json = melbo_gen_settings_json(&p->gen, 1.0, K);
    melbo_completions_free(&c);
    return 0;
}
