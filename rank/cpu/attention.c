/*
 * rank/cpu/attention.c - causal grouped-query attention, forward and input-gradient backward
 * (declared in rank/cpu/ops.h).
 *
 * Each (sequence, head) is independent. Queries are processed in tiles of ATTN_TILE rows; a
 * tile's scores against every key up to its last row are one small sgemm, so the work runs at
 * matrix-product speed and scratch memory is ATTN_TILE x max_len per thread however long the
 * prompt. The forward keeps only the log-sum-exp of every softmax row; the backward recomputes
 * the probabilities from q, k and it. The backward runs one thread per (sequence, KV head) so the
 * query heads sharing a KV head accumulate dk and dv without races. OpenBLAS (OpenMP build) runs
 * single-threaded inside these parallel loops.
 */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "rank/cpu/ops.h"

#define ATTN_TILE 64

/* Attention over fewer (sequence, head) x token pairs than this runs on one thread. */
#define ATTN_PAR_MIN 512

/* s(rows, n) = alpha * a(rows, k) b(n, k)^T with row strides lda, ldb. */
static void mm_nt(const float *a, int lda, const float *b, int ldb, float *s, int lds, int rows,
                  int n, int k, float alpha, float beta) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, n, k, alpha, a, lda, b, ldb, beta, s,
                lds);
}

/* c(rows, n) = a(rows, k) b(k, n) + beta c. */
static void mm_nn(const float *a, int lda, const float *b, int ldb, float *c, int ldc, int rows,
                  int n, int k, float beta) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, n, k, 1.0f, a, lda, b, ldb, beta,
                c, ldc);
}

/* c(k, n) = a(rows, k)^T b(rows, n) + beta c. */
static void mm_tn(const float *a, int lda, const float *b, int ldb, float *c, int ldc, int rows,
                  int n, int k, float beta) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, n, rows, 1.0f, a, lda, b, ldb, beta, c,
                ldc);
}

void melbo_cpu_attend_head_ex(const float *Q, int ldq, const float *K, const float *V, int ldk,
                              float *O, int ldo, float *lse, int lse_stride, int m, int p0, int hd,
                              const struct melbo_attn_opts *o, float *S) {
    float cap = o->softcap;
    for (int i0 = 0; i0 < m; i0 += ATTN_TILE) {
        int rows = m - i0 < ATTN_TILE ? m - i0 : ATTN_TILE, n = p0 + i0 + rows;
        mm_nt(Q + (size_t)i0 * ldq, ldq, K, ldk, S, n, rows, n, hd, o->scale, 0.0f);
        for (int r = 0; r < rows; r++) {
            float *p = S + (size_t)r * n;
            int last = p0 + i0 + r; /* causal: keys lo..last */
            int lo = o->window > 0 && last - o->window + 1 > 0 ? last - o->window + 1 : 0;
            float mx = -INFINITY, l = 0.0f;
            if (cap != 0.0f)
                for (int j = lo; j <= last; j++)
                    p[j] = tanhf(p[j] / cap) * cap;
            for (int j = lo; j <= last; j++)
                mx = p[j] > mx ? p[j] : mx;
            for (int j = lo; j <= last; j++) {
                p[j] = expf(p[j] - mx);
                l += p[j];
            }
            float inv = 1.0f / l;
            for (int j = lo; j <= last; j++)
                p[j] *= inv;
            for (int j = 0; j < lo; j++)
                p[j] = 0.0f;
            for (int j = last + 1; j < n; j++)
                p[j] = 0.0f;
            if (lse)
                lse[(size_t)(i0 + r) * lse_stride] = mx + logf(l);
        }
        mm_nn(S, n, V, ldk, O + (size_t)i0 * ldo, ldo, rows, hd, n, 0.0f);
    }
}

void melbo_cpu_attend_head(const float *Q, int ldq, const float *K, const float *V, int ldk,
                           float *O, int ldo, float *lse, int lse_stride, int m, int p0, int hd,
                           float scale, float *S) {
    struct melbo_attn_opts o = {scale, 0.0f, 0};
    melbo_cpu_attend_head_ex(Q, ldq, K, V, ldk, O, ldo, lse, lse_stride, m, p0, hd, &o, S);
}

void melbo_cpu_attention(const float *qkv, int ld, float *out, float *lse, int nq, int nkv, int hd,
                         const struct melbo_seqs *seqs) {
    struct melbo_attn_opts o = melbo_cpu_attn_default(hd);
    melbo_cpu_attention_ex(qkv, ld, out, lse, nq, nkv, hd, seqs, &o);
}

void melbo_cpu_attention_dx(const float *qkv, int ld, const float *out, const float *lse,
                            const float *dout, float *dqkv, int nq, int nkv, int hd,
                            const struct melbo_seqs *seqs) {
    struct melbo_attn_opts o = melbo_cpu_attn_default(hd);
    melbo_cpu_attention_dx_ex(qkv, ld, out, lse, dout, dqkv, nq, nkv, hd, seqs, &o);
}

void melbo_cpu_attention_ex(const float *qkv, int ld, float *out, float *lse, int nq, int nkv,
                            int hd, const struct melbo_seqs *seqs, const struct melbo_attn_opts *o) {
    int group = nq / nkv, od = nq * hd;
    size_t kcol = (size_t)nq * hd, vcol = (size_t)(nq + nkv) * hd;
#pragma omp parallel if ((size_t)seqs->n_tok * nq >= ATTN_PAR_MIN)
    {
        float *S = melbo_xalloc_f32((size_t)ATTN_TILE * seqs->max_len);
#pragma omp for collapse(2) schedule(dynamic)
        for (int s = 0; s < seqs->n_seq; s++) {
            for (int h = 0; h < nq; h++) {
                int t0 = seqs->start[s], T = seqs->start[s + 1] - t0, g = h / group;
                const float *base = qkv + (size_t)t0 * ld;
                melbo_cpu_attend_head_ex(base + (size_t)h * hd, ld, base + kcol + (size_t)g * hd,
                                         base + vcol + (size_t)g * hd, ld,
                                         out + (size_t)t0 * od + (size_t)h * hd, od,
                                         lse + (size_t)t0 * nq + h, nq, T, 0, hd, o, S);
            }
        }
        free(S);
    }
}

void melbo_cpu_attention_dx_ex(const float *qkv, int ld, const float *out, const float *lse,
                               const float *dout, float *dqkv, int nq, int nkv, int hd,
                               const struct melbo_seqs *seqs, const struct melbo_attn_opts *o) {
    int group = nq / nkv, od = nq * hd;
    size_t kcol = (size_t)nq * hd, vcol = (size_t)(nq + nkv) * hd;
    float scale = o->scale, cap = o->softcap;
#pragma omp parallel if ((size_t)seqs->n_tok * nq >= ATTN_PAR_MIN)
    {
        float *P = melbo_xalloc_f32((size_t)ATTN_TILE * seqs->max_len);
        float *dP = melbo_xalloc_f32((size_t)ATTN_TILE * seqs->max_len);
#pragma omp for collapse(2) schedule(dynamic)
        for (int s = 0; s < seqs->n_seq; s++) {
            for (int g = 0; g < nkv; g++) {
                int t0 = seqs->start[s], T = seqs->start[s + 1] - t0;
                const float *K = qkv + (size_t)t0 * ld + kcol + (size_t)g * hd;
                const float *V = qkv + (size_t)t0 * ld + vcol + (size_t)g * hd;
                float *dK = dqkv + (size_t)t0 * ld + kcol + (size_t)g * hd;
                float *dV = dqkv + (size_t)t0 * ld + vcol + (size_t)g * hd;
                for (int j = 0; j < T; j++) {
                    memset(dK + (size_t)j * ld, 0, (size_t)hd * sizeof(float));
                    memset(dV + (size_t)j * ld, 0, (size_t)hd * sizeof(float));
                }
                for (int h = g * group; h < (g + 1) * group; h++) {
                    const float *Q = qkv + (size_t)t0 * ld + (size_t)h * hd;
                    const float *O = out + (size_t)t0 * od + (size_t)h * hd;
                    const float *dO = dout + (size_t)t0 * od + (size_t)h * hd;
                    float *dQ = dqkv + (size_t)t0 * ld + (size_t)h * hd;
                    for (int i0 = 0; i0 < T; i0 += ATTN_TILE) {
                        int rows = T - i0 < ATTN_TILE ? T - i0 : ATTN_TILE, n = i0 + rows;
                        const float *Qi = Q + (size_t)i0 * ld, *dOi = dO + (size_t)i0 * od;
                        mm_nt(Qi, ld, K, ld, P, n, rows, n, hd, scale, 0.0f);
                        mm_nt(dOi, od, V, ld, dP, n, rows, n, hd, 1.0f, 0.0f);
                        for (int r = 0; r < rows; r++) {
                            int last = i0 + r;
                            int lo = o->window > 0 && last - o->window + 1 > 0
                                         ? last - o->window + 1 : 0;
                            float L = lse[(size_t)(t0 + last) * nq + h], D = 0.0f;
                            const float *orow = O + (size_t)last * od;
                            const float *dor = dO + (size_t)last * od;
                            for (int k = 0; k < hd; k++)
                                D += dor[k] * orow[k];
                            float *p = P + (size_t)r * n, *dp = dP + (size_t)r * n;
                            for (int j = 0; j < lo; j++)
                                p[j] = dp[j] = 0.0f;
                            if (cap != 0.0f) {
                                for (int j = lo; j <= last; j++) {
                                    float th = tanhf(p[j] / cap);
                                    p[j] = expf(th * cap - L);
                                    /* dS through the cap: d(c tanh(s / c))/ds = 1 - tanh^2 */
                                    dp[j] = p[j] * (dp[j] - D) * (1.0f - th * th) * scale;
                                }
                            } else {
                                for (int j = lo; j <= last; j++) {
                                    p[j] = expf(p[j] - L);
                                    dp[j] = p[j] * (dp[j] - D) * scale; /* dS */
                                }
                            }
                            for (int j = last + 1; j < n; j++)
                                p[j] = dp[j] = 0.0f;
                        }
                        mm_nn(dP, n, K, ld, dQ + (size_t)i0 * ld, ld, rows, hd, n, 0.0f);
                        mm_tn(dP, n, Qi, ld, dK, ld, rows, hd, n, 1.0f);
                        mm_tn(P, n, dOi, od, dV, ld, rows, hd, n, 1.0f);
                    }
                }
            }
        }
        free(P);
        free(dP);
    }
}
