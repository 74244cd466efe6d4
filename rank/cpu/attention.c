/*
 * rank/cpu/attention.c - causal grouped-query attention, forward and input-gradient backward
 * (declared in rank/cpu/ops.h).
 *
 * Each (sequence, head) is independent. The forward keeps only the log-sum-exp of every softmax
 * row; the backward recomputes the probabilities from q, k and it, so memory stays O(n) however
 * long the prompts are. The backward runs one thread per (sequence, KV head) so that the query
 * heads sharing a KV head accumulate dk and dv without races.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "rank/cpu/ops.h"

static inline float dot(const float *a, const float *b, int n) {
    float s = 0.0f;
    for (int i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static inline void axpy(float a, const float *x, float *y, int n) {
    for (int i = 0; i < n; i++)
        y[i] += a * x[i];
}

void melbo_cpu_attention(const float *qkv, int ld, float *out, float *lse, int nq, int nkv, int hd,
                         const struct melbo_seqs *seqs) {
    int group = nq / nkv, od = nq * hd;
    size_t kcol = (size_t)nq * hd, vcol = (size_t)(nq + nkv) * hd;
    float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel
    {
        float *p = melbo_xalloc_f32((size_t)seqs->max_len);
#pragma omp for collapse(2) schedule(dynamic)
        for (int s = 0; s < seqs->n_seq; s++) {
            for (int h = 0; h < nq; h++) {
                int t0 = seqs->start[s], T = seqs->start[s + 1] - t0, g = h / group;
                const float *k0 = qkv + (size_t)t0 * ld + kcol + (size_t)g * hd;
                const float *v0 = qkv + (size_t)t0 * ld + vcol + (size_t)g * hd;
                for (int i = 0; i < T; i++) {
                    const float *q = qkv + (size_t)(t0 + i) * ld + (size_t)h * hd;
                    float m = -INFINITY;
                    for (int j = 0; j <= i; j++) {
                        p[j] = scale * dot(q, k0 + (size_t)j * ld, hd);
                        if (p[j] > m)
                            m = p[j];
                    }
                    float l = 0.0f;
                    for (int j = 0; j <= i; j++) {
                        p[j] = expf(p[j] - m);
                        l += p[j];
                    }
                    float *o = out + (size_t)(t0 + i) * od + (size_t)h * hd;
                    memset(o, 0, (size_t)hd * sizeof *o);
                    float inv = 1.0f / l;
                    for (int j = 0; j <= i; j++)
                        axpy(p[j] * inv, v0 + (size_t)j * ld, o, hd);
                    lse[(size_t)(t0 + i) * nq + h] = m + logf(l);
                }
            }
        }
        free(p);
    }
}

void melbo_cpu_attention_dx(const float *qkv, int ld, const float *out, const float *lse,
                            const float *dout, float *dqkv, int nq, int nkv, int hd,
                            const struct melbo_seqs *seqs) {
    int group = nq / nkv, od = nq * hd;
    size_t kcol = (size_t)nq * hd, vcol = (size_t)(nq + nkv) * hd;
    float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel
    {
        float *p = melbo_xalloc_f32((size_t)seqs->max_len);
#pragma omp for collapse(2) schedule(dynamic)
        for (int s = 0; s < seqs->n_seq; s++) {
            for (int g = 0; g < nkv; g++) {
                int t0 = seqs->start[s], T = seqs->start[s + 1] - t0;
                const float *k0 = qkv + (size_t)t0 * ld + kcol + (size_t)g * hd;
                const float *v0 = qkv + (size_t)t0 * ld + vcol + (size_t)g * hd;
                float *dk0 = dqkv + (size_t)t0 * ld + kcol + (size_t)g * hd;
                float *dv0 = dqkv + (size_t)t0 * ld + vcol + (size_t)g * hd;
                for (int j = 0; j < T; j++) {
                    memset(dk0 + (size_t)j * ld, 0, (size_t)hd * sizeof(float));
                    memset(dv0 + (size_t)j * ld, 0, (size_t)hd * sizeof(float));
                }
                for (int h = g * group; h < (g + 1) * group; h++) {
                    for (int i = 0; i < T; i++) {
                        size_t ti = (size_t)(t0 + i);
                        const float *q = qkv + ti * ld + (size_t)h * hd;
                        const float *o = out + ti * od + (size_t)h * hd;
                        const float *dout_i = dout + ti * od + (size_t)h * hd;
                        float *dq = dqkv + ti * ld + (size_t)h * hd;
                        float L = lse[ti * nq + h], D = dot(dout_i, o, hd);
                        memset(dq, 0, (size_t)hd * sizeof *dq);
                        for (int j = 0; j <= i; j++)
                            p[j] = expf(scale * dot(q, k0 + (size_t)j * ld, hd) - L);
                        for (int j = 0; j <= i; j++) {
                            float dp = dot(dout_i, v0 + (size_t)j * ld, hd);
                            float ds = p[j] * (dp - D) * scale;
                            axpy(ds, k0 + (size_t)j * ld, dq, hd);
                            axpy(ds, q, dk0 + (size_t)j * ld, hd);
                            axpy(p[j], dout_i, dv0 + (size_t)j * ld, hd);
                        }
                    }
                }
            }
        }
        free(p);
    }
}
