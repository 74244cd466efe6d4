/* rank/cpu/wave.c - the prefix and a MELBO training step on the CPU (rank/cpu/wave.h). */
#include "rank/cpu/wave.h"

#include <stdlib.h>
#include <string.h>

#include "common/mem.h"

void melbo_cpu_prefix(const struct melbo_model *m, const struct melbo_prompts *pr, int s, int t,
                      float *X, float *Y) {
    int n = pr->seqs.n_tok, d = m->cfg.d_model;
    int32_t *packed = melbo_xmalloc(sizeof(int32_t) * (size_t)n);
    for (int i = 0; i < pr->P; i++)
        memcpy(packed + pr->seqs.start[i], pr->ids[i], sizeof(int32_t) * (size_t)pr->lens[i]);
    melbo_cpu_embed(m, packed, n, X);
    struct melbo_cpu_span sp;
    melbo_cpu_span_init(&sp, m, 0, s + 1, n, 0);
    melbo_cpu_span_forward(&sp, &pr->seqs, X);
    melbo_cpu_span_free(&sp);
    memcpy(Y, X, sizeof(float) * (size_t)n * d);
    melbo_cpu_span_init(&sp, m, s + 1, t, n, 0);
    melbo_cpu_span_forward(&sp, &pr->seqs, Y);
    melbo_cpu_span_free(&sp);
    free(packed);
}

void melbo_cpu_wave_init(struct melbo_cpu_wave *w, const struct melbo_model *m, int s, int t,
                         const struct melbo_prompts *pr, int cap_B, const float *X,
                         const float *Y) {
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
}

void melbo_cpu_wave_free(struct melbo_cpu_wave *w) {
    melbo_cpu_span_free(&w->span);
    melbo_seqs_free(&w->wseqs);
    free(w->buf);
    free(w->dbuf);
    free(w->scratch);
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

void melbo_cpu_wave_step(struct melbo_cpu_wave *w, const float *theta, double p, double q,
                         enum melbo_loss_axis axis, double *F, float *grad) {
    const struct melbo_prompts *pr = w->pr;
    int P = pr->P, d = w->d, Bw = w->Bw, k0 = w->k0, k1 = w->k1;
    const int *start = w->wseqs.start;
    /* inputs: X_p + theta_b at every position of prompt p, for each pair (b, p) */
    for (int k = k0; k < k1; k++) {
        int b = k / P, i = k % P;
        float *dst = w->buf + (size_t)start[k - k0] * d;
        const float *src = w->X + (size_t)pr->seqs.start[i] * d, *th = theta + (size_t)b * d;
        for (int r = 0; r < pr->lens[i]; r++)
            for (int j = 0; j < d; j++)
                dst[(size_t)r * d + j] = src[(size_t)r * d + j] + th[j];
    }
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
    /* dLoss/dtheta_b = sum over every position of every prompt of dLoss/dX */
    double *acc = melbo_xcalloc((size_t)Bw * d, sizeof *acc);
    for (int k = k0; k < k1; k++) {
        int b = k / P, i = k % P;
        const float *dx = w->dbuf + (size_t)start[k - k0] * d;
        double *a = acc + (size_t)b * d;
        for (int r = 0; r < pr->lens[i]; r++)
            for (int j = 0; j < d; j++)
                a[j] += dx[(size_t)r * d + j];
    }
    for (size_t j = 0; j < (size_t)Bw * d; j++)
        grad[j] = (float)acc[j];
    free(acc);
}
