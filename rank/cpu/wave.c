/* rank/cpu/wave.c - the prefix and a MELBO training step on the CPU (rank/cpu/wave.h). */
#include "rank/cpu/wave.h"

#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "rank/cpu/lora.h"
#include "rank/cpu/ops.h"

void melbo_cpu_prefix(const struct melbo_model *m, const struct melbo_prompts *pr, int s, int t,
                      float *X, float *Y, float *U) {
    int n = pr->seqs.n_tok, d = m->cfg.d_model;
    int32_t *packed = melbo_xmalloc(sizeof(int32_t) * (size_t)n);
    for (int i = 0; i < pr->P; i++)
        memcpy(packed + pr->seqs.start[i], pr->ids[i], sizeof(int32_t) * (size_t)pr->lens[i]);
    melbo_cpu_embed(m, packed, n, X);
    struct melbo_cpu_span sp;
    if (U == NULL) {
        melbo_cpu_span_init(&sp, m, 0, s + 1, n, 0);
        melbo_cpu_span_forward(&sp, &pr->seqs, X);
        melbo_cpu_span_free(&sp);
    } else { /* blocks 0..s-1, then block s keeping its activations: U from its gate and up */
        melbo_cpu_span_init(&sp, m, 0, s, n, 0);
        melbo_cpu_span_forward(&sp, &pr->seqs, X);
        melbo_cpu_span_free(&sp);
        melbo_cpu_span_init(&sp, m, s, s + 1, n, 1);
        melbo_cpu_span_forward(&sp, &pr->seqs, X);
        melbo_cpu_glu((int)m->cfg.act, sp.acts[0].gu, U, n, m->cfg.d_ff);
        melbo_cpu_span_free(&sp);
    }
    memcpy(Y, X, sizeof(float) * (size_t)n * d);
    melbo_cpu_span_init(&sp, m, s + 1, t, n, 0);
    melbo_cpu_span_forward(&sp, &pr->seqs, Y);
    melbo_cpu_span_free(&sp);
    free(packed);
}

void melbo_cpu_wave_init(struct melbo_cpu_wave *w, const struct melbo_model *m, int s, int t,
                         const struct melbo_prompts *pr, int cap_B, const float *X,
                         const float *Y, const struct melbo_adapter_shape *ad, const float *U) {
    memset(w, 0, sizeof *w);
    w->m = m;
    w->pr = pr;
    w->X = X;
    w->Y = Y;
    w->s = s;
    w->t = t;
    w->d = m->cfg.d_model;
    w->cap_B = cap_B;
    size_t cap_tok = (size_t)cap_B * pr->seqs.n_tok;
    w->scratch = melbo_xmalloc(sizeof(double) * (size_t)w->d);
    w->buf = melbo_xalloc_f32(cap_tok * w->d);
    w->dbuf = melbo_xalloc_f32(cap_tok * w->d);
    melbo_cpu_span_init(&w->span, m, s + 1, t, (int)cap_tok, 1);
    if (ad) {
        w->ad = ad;
        w->U = U;
        w->ff = m->cfg.d_ff;
        w->c0 = m->tp_rank * m->cfg.d_ff;
        w->z = melbo_xalloc_f32(cap_tok * (size_t)ad->r);
        w->gz = melbo_xalloc_f32(cap_tok * (size_t)ad->r);
    }
}

void melbo_cpu_wave_free(struct melbo_cpu_wave *w) {
    melbo_cpu_span_free(&w->span);
    melbo_seqs_free(&w->wseqs);
    free(w->buf);
    free(w->dbuf);
    free(w->scratch);
    free(w->z);
    free(w->gz);
    memset(w, 0, sizeof *w);
}

void melbo_cpu_wave_batch(struct melbo_cpu_wave *w, int Bw, int k0, int k1) {
    if (w->wseqs.start && w->Bw == Bw && w->k0 == k0 && w->k1 == k1)
        return;
    melbo_seqs_free(&w->wseqs);
    int *lens = melbo_xmalloc(sizeof(int) * (size_t)(k1 - k0 + 1));
    for (int k = k0; k < k1; k++)
        lens[k - k0] = w->pr->lens[k % w->pr->P];
    melbo_seqs_init(&w->wseqs, lens, k1 - k0);
    free(lens);
    w->Bw = Bw;
    w->k0 = k0;
    w->k1 = k1;
}

/* Inputs of the vectors' batch: X_i + theta_b at every position of each pair (b, i). */
static void vector_inputs(struct melbo_cpu_wave *w, const float *theta) {
    const struct melbo_prompts *pr = w->pr;
    int P = pr->P, d = w->d;
    const int *start = w->wseqs.start;
    for (int k = w->k0; k < w->k1; k++) {
        int b = k / P, i = k % P;
        float *dst = w->buf + (size_t)start[k - w->k0] * d;
        const float *src = w->X + (size_t)pr->seqs.start[i] * d, *th = theta + (size_t)b * d;
        for (int r = 0; r < pr->lens[i]; r++)
            for (int j = 0; j < d; j++)
                dst[(size_t)r * d + j] = src[(size_t)r * d + j] + th[j];
    }
}

/* dLoss/dtheta_b = the sum over every position of every pair of b of dLoss/dX. */
static void vector_grad(const struct melbo_cpu_wave *w, float *grad) {
    const struct melbo_prompts *pr = w->pr;
    int P = pr->P, d = w->d;
    double *acc = melbo_xcalloc((size_t)w->Bw * d, sizeof *acc);
    for (int k = w->k0; k < w->k1; k++) {
        int b = k / P, i = k % P;
        const float *dx = w->dbuf + (size_t)w->wseqs.start[k - w->k0] * d;
        double *a = acc + (size_t)b * d;
        for (int r = 0; r < pr->lens[i]; r++)
            for (int j = 0; j < d; j++)
                a[j] += dx[(size_t)r * d + j];
    }
    for (size_t j = 0; j < (size_t)w->Bw * d; j++)
        grad[j] = (float)acc[j];
    free(acc);
}

/* Inputs of the adapters' batch: z = A_b u (summed over the tensor-parallel group), then
 * X_i + scale B_b z at every position of each pair (b, i). */
static void adapter_inputs(struct melbo_cpu_wave *w, const float *par) {
    const struct melbo_prompts *pr = w->pr;
    const struct melbo_adapter_shape *ad = w->ad;
    int P = pr->P, d = w->d, r = ad->r;
    size_t width = melbo_adapter_width(ad), nA = melbo_adapter_n_A(ad);
    const int *start = w->wseqs.start;
    for (int k = w->k0; k < w->k1; k++) {
        int b = k / P, i = k % P;
        const float *A = par + (size_t)b * width;
        melbo_cpu_lora_down(w->U + (size_t)pr->seqs.start[i] * w->ff, A + w->c0, ad->ff,
                            w->z + (size_t)start[k - w->k0] * r, pr->lens[i], w->ff, r);
    }
    melbo_cpu_tp_reduce(w->m, w->z, (size_t)w->wseqs.n_tok * r);
    for (int k = w->k0; k < w->k1; k++) {
        int b = k / P, i = k % P;
        float *dst = w->buf + (size_t)start[k - w->k0] * d;
        memcpy(dst, w->X + (size_t)pr->seqs.start[i] * d, sizeof(float) * (size_t)pr->lens[i] * d);
        melbo_cpu_lora_up(w->z + (size_t)start[k - w->k0] * r, par + (size_t)b * width + nA,
                          (float)melbo_adapter_scale(ad), dst, pr->lens[i], r, d);
    }
}

/* Both factors' gradients of every adapter from dLoss/dX of its pairs. */
static void adapter_grad(const struct melbo_cpu_wave *w, const float *par, float *grad) {
    const struct melbo_prompts *pr = w->pr;
    const struct melbo_adapter_shape *ad = w->ad;
    int P = pr->P, r = ad->r;
    size_t width = melbo_adapter_width(ad), nA = melbo_adapter_n_A(ad);
    memset(grad, 0, sizeof(float) * (size_t)w->Bw * width);
    for (int k = w->k0; k < w->k1; k++) {
        int b = k / P, i = k % P;
        size_t tok = (size_t)w->wseqs.start[k - w->k0];
        float *g = grad + (size_t)b * width;
        melbo_cpu_lora_grad(w->dbuf + tok * w->d, w->z + tok * r,
                            w->U + (size_t)pr->seqs.start[i] * w->ff, par + (size_t)b * width + nA,
                            (float)melbo_adapter_scale(ad), g + w->c0, ad->ff, g + nA,
                            w->gz + tok * r, pr->lens[i], r, w->ff, w->d);
    }
}

void melbo_cpu_wave_step(struct melbo_cpu_wave *w, const float *theta, double p, double q,
                         enum melbo_loss_axis axis, double *F, float *grad) {
    const struct melbo_prompts *pr = w->pr;
    int P = pr->P, d = w->d, Bw = w->Bw, k0 = w->k0, k1 = w->k1;
    const int *start = w->wseqs.start;
    if (w->ad)
        adapter_inputs(w, theta);
    else
        vector_inputs(w, theta);
    memset(F, 0, sizeof *F * (size_t)Bw);
    if (k1 > k0) {
        melbo_cpu_span_forward(&w->span, &w->wseqs, w->buf);
        for (int k = k0; k < k1; k++) {
            int b = k / P, i = k % P;
            size_t off = (size_t)start[k - k0] * d;
            F[b] +=
                melbo_objective(w->buf + off, w->Y + (size_t)pr->seqs.start[i] * d, pr->lens[i], d,
                                pr->idx[i], pr->n_idx[i], p, q, axis, w->dbuf + off, w->scratch);
        }
        melbo_cpu_span_backward(&w->span, &w->wseqs, w->dbuf);
    }
    if (w->ad)
        adapter_grad(w, theta, grad);
    else
        vector_grad(w, grad);
}
