/*
 * rank/cpu/ops.h - the fp32 CPU kernels of a decoder block: forward and input-gradient backward.
 *
 * These are melbo's reference implementation (style rule 5): the CPU backend, the oracle for
 * the CUDA kernels, and the spec. Activations are packed (n tokens, width), row-major; shapes
 * are written next to every pointer. Weights are frozen, so no backward computes a weight
 * gradient. Loops over tokens and heads run on OpenMP threads; matrix products call OpenBLAS.
 */
#ifndef MELBO_RANK_CPU_OPS_H
#define MELBO_RANK_CPU_OPS_H

#include <math.h>
#include <stddef.h>

#include "rank/model/seqs.h"

#ifdef __cplusplus
extern "C" {
#endif

/* y(n, out) = x(n, in) W(out, in)^T + beta * y. */
void melbo_cpu_linear(const float *x, const float *w, float *y, int n, int in, int out, float beta);
/* dx(n, in) = dy(n, out) W(out, in) + beta * dx: the input gradient of melbo_cpu_linear. */
void melbo_cpu_linear_dx(const float *dy, const float *w, float *dx, int n, int in, int out,
                         float beta);
/* y(n, out) += b(out) on every row. */
void melbo_cpu_add_bias(float *y, const float *b, int n, int out);

/*
 * RMSNorm over rows of width d: y = w * x / sqrt(mean(x^2) + eps), computed in fp32 as
 * transformers does. rstd(n) receives 1/sqrt(mean(x^2) + eps) for the backward (may be NULL).
 * Rows are addressed with a stride (elements between row starts) so the same kernel serves the
 * residual stream (stride d) and Qwen3's per-head q/k norm (stride = row of qkv).
 */
void melbo_cpu_rmsnorm(const float *x, const float *w, float *y, float *rstd, int n, int d,
                       int stride, float eps);
/* dx(n, d) = d/dx of the RMSNorm above, given dy, the input x and the saved rstd; dx += if acc. */
void melbo_cpu_rmsnorm_dx(const float *x, const float *w, const float *rstd, const float *dy,
                          float *dx, int n, int d, int stride, int acc);

/*
 * Rotary embedding (rotate_half convention: pairs (i, i + rope_dim/2)) on n_heads heads of
 * width head_dim starting at column col0 of each row of x (row stride ld), in place, at each
 * token's position seqs->pos. inverse = 1 applies the transposed rotation (the backward).
 */
void melbo_cpu_rope(float *x, int ld, int col0, int n_heads, int head_dim, int rope_dim,
                    const float *inv_freq, const struct melbo_seqs *seqs, int inverse);

/* act(n, ff) = silu(gu[:, :ff]) * gu[:, ff:], gu (n, 2ff). */
void melbo_cpu_swiglu(const float *gu, float *act, int n, int ff);
/* dgu(n, 2ff) from dact(n, ff) and the saved gu. */
void melbo_cpu_swiglu_dx(const float *gu, const float *dact, float *dgu, int n, int ff);

/* act(n, ff) = gelu_tanh(gu[:, :ff]) * gu[:, ff:] (GeGLU, PyTorch's tanh approximation). */
void melbo_cpu_geglu(const float *gu, float *act, int n, int ff);
/* dgu(n, 2ff) from dact(n, ff) and the saved gu. */
void melbo_cpu_geglu_dx(const float *gu, const float *dact, float *dgu, int n, int ff);

/* The gated MLP activation act_kind (enum melbo_act: 0 silu, 1 gelu_tanh), forward and backward. */
void melbo_cpu_glu(int act_kind, const float *gu, float *act, int n, int ff);
void melbo_cpu_glu_dx(int act_kind, const float *gu, const float *dact, float *dgu, int n, int ff);

/* y(n) = c tanh(y / c) in place (soft-capping), nothing when c == 0. */
void melbo_cpu_softcap(float *y, size_t n, float c);

/*
 * How scores are formed and masked (Gemma 2/3, Phi-3): scores = scale q.k; with softcap > 0,
 * scores = softcap tanh(scores / softcap); with window > 0, query position i sees keys
 * i - window < j <= i only. melbo_cpu_attn_default(hd) is plain causal attention.
 */
struct melbo_attn_opts {
    float scale;
    float softcap; // 0 = none
    int window;    // 0 = none
};

static inline struct melbo_attn_opts melbo_cpu_attn_default(int hd) {
    struct melbo_attn_opts o = {1.0f / sqrtf((float)hd), 0.0f, 0};
    return o;
}

/*
 * Causal grouped-query attention for each sequence of seqs. qkv (n, ld) holds per token the
 * q heads (nq * hd) at column 0, the k heads at column nq*hd, the v heads at (nq+nkv)*hd, after
 * RoPE. out (n, nq*hd) receives softmax(q k^T / sqrt(hd)) v; lse (n, nq) the log-sum-exp of each
 * softmax row, which the backward uses to recompute the probabilities instead of storing them.
 */
void melbo_cpu_attention(const float *qkv, int ld, float *out, float *lse, int nq, int nkv, int hd,
                         const struct melbo_seqs *seqs);
/*
 * One (sequence, head) of causal attention: m queries at positions p0 .. p0+m-1 (rows of Q,
 * stride ldq) against keys and values 0 .. p0+m-1 (rows of K and V, stride ldk), so the same
 * kernel serves a whole prompt (p0 = 0) and KV-cached decoding (keys from the cache). O gets m
 * rows (stride ldo); lse (may be NULL) m values, stride lse_stride. S is scratch for
 * 64 x (p0 + m) floats.
 */
void melbo_cpu_attend_head(const float *Q, int ldq, const float *K, const float *V, int ldk,
                           float *O, int ldo, float *lse, int lse_stride, int m, int p0, int hd,
                           float scale, float *S);

/*
 * The input gradient of melbo_cpu_attention: dqkv (n, ld) receives dq, dk, dv in the qkv layout
 * (overwritten), from dout (n, nq*hd) and the saved qkv, out and lse.
 */
void melbo_cpu_attention_dx(const float *qkv, int ld, const float *out, const float *lse,
                            const float *dout, float *dqkv, int nq, int nkv, int hd,
                            const struct melbo_seqs *seqs);

/* The three functions above with scores formed and masked as o says (the plain ones use
 * melbo_cpu_attn_default). */
void melbo_cpu_attention_ex(const float *qkv, int ld, float *out, float *lse, int nq, int nkv,
                            int hd, const struct melbo_seqs *seqs, const struct melbo_attn_opts *o);
void melbo_cpu_attend_head_ex(const float *Q, int ldq, const float *K, const float *V, int ldk,
                              float *O, int ldo, float *lse, int lse_stride, int m, int p0, int hd,
                              const struct melbo_attn_opts *o, float *S);
void melbo_cpu_attention_dx_ex(const float *qkv, int ld, const float *out, const float *lse,
                               const float *dout, float *dqkv, int nq, int nkv, int hd,
                               const struct melbo_seqs *seqs, const struct melbo_attn_opts *o);

#ifdef __cplusplus
}
#endif
#endif
