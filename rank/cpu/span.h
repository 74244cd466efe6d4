/*
 * rank/cpu/span.h - forward and input-gradient backward of a range of decoder blocks on the CPU.
 *
 * A span is blocks [a, b) of a loaded model. Forward takes the residual stream entering block a
 * (HF hidden_states[a]) for a packed batch and returns the residual after block b-1
 * (hidden_states[b]). With save = 1 it keeps what the backward needs; the backward then takes
 * dLoss/d(hidden_states[b]) and returns dLoss/d(hidden_states[a]). Weights are frozen: nothing
 * else is differentiated. Buffers are allocated once for cap_tok tokens and reused by every call.
 *
 * Also here: the embedding lookup and the head (final norm + LM head), which run outside spans.
 */
#ifndef MELBO_RANK_CPU_SPAN_H
#define MELBO_RANK_CPU_SPAN_H

#include "rank/cpu/moe.h"
#include "rank/cpu/ops.h"
#include "rank/model/model.h"
#include "rank/model/seqs.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What the backward of one block needs from its forward (n = tokens, widths per model). */
struct melbo_cpu_block_acts {
    float *x;        // (n, d) block input
    float *rstd1;    // (n) attention-norm 1/rms
    float *qk_pre;   // (n, qkv_rows) qkv before the q/k norm (Qwen3 only), else NULL
    float *rstd_qk;  // (nq + nkv, n) per-head q/k-norm 1/rms (Qwen3 only), else NULL
    float *qkv;      // (n, qkv_rows) after bias, q/k norm and RoPE
    float *attn;     // (n, nq*hd) attention output
    float *lse;      // (n, nq) softmax log-sum-exp per row
    float *h;        // (n, d) residual after attention
    float *rstd2;    // (n) MLP-norm 1/rms
    float *gu;       // (n, 2*ff) gate and up projections
    float *o;        // (n, d) attention output before the post-norm (post_norms), else NULL
    float *rstd_o;   // (n) its 1/rms
    float *mo;       // (n, d) MLP output before the post-norm (post_norms), else NULL
    float *rstd_mo;  // (n)
};

struct melbo_cpu_span {
    const struct melbo_model *m;      // borrowed; must outlive the span
    int a, b;                         // blocks [a, b)
    int cap_tok;                      // most tokens per call
    int save;                         // keep activations for the backward
    struct melbo_cpu_block_acts *acts; // (b - a) when save, else (1) reused by every block
    float *x1;                        // (cap, d) scratch: normed input, dx1, dx2
    float *act;                       // (cap, ff) scratch: SwiGLU output, dact
    float *dgu;                       // (cap, 2*ff) scratch
    float *dattn;                     // (cap, nq*hd) scratch
    float *dqkv;                      // (cap, qkv_rows) scratch
    float *tmp;                       // (cap, d) scratch: post-norm outputs and gradients
    struct melbo_cpu_moe *moe;        // MoE models: one per block of acts, else NULL
    float *arena;                     // owns everything above
};

void melbo_cpu_span_init(struct melbo_cpu_span *s, const struct melbo_model *m, int a, int b,
                         int cap_tok, int save);
void melbo_cpu_span_free(struct melbo_cpu_span *s);

/* x (n_tok, d): in hidden_states[a], out hidden_states[b]. seqs->n_tok <= cap_tok. */
void melbo_cpu_span_forward(struct melbo_cpu_span *s, const struct melbo_seqs *seqs, float *x);

/*
 * dx (n_tok, d): in dLoss/d hidden_states[b], out dLoss/d hidden_states[a]. Uses the activations
 * of the last forward, which must have run with save = 1 on the same seqs.
 */
void melbo_cpu_span_backward(struct melbo_cpu_span *s, const struct melbo_seqs *seqs, float *dx);

/*
 * Row-parallel output plus residual: out(n, d) = res + in(n, k) w(d, k)^T (+ bias), the product
 * summed over the tensor-parallel group first when tp > 1 (tmp (n, d) scratch). out may be res.
 */
void melbo_cpu_row_parallel(const struct melbo_model *m, const float *in, const float *w,
                            const float *bias, const float *res, float *out, float *tmp, int n,
                            int k);
/* The attention of block l: softmax scale, soft-cap, and the window when the block slides. */
struct melbo_attn_opts melbo_cpu_layer_attn(const struct melbo_model *m, int l);
/* The RoPE inverse frequencies of block l (Gemma 3's sliding blocks have their own). */
static inline const float *melbo_cpu_layer_inv_freq(const struct melbo_model *m, int l) {
    return m->cfg.local_rope && m->cfg.layer_sliding[l] ? m->rope_inv_freq_local
                                                         : m->rope_inv_freq;
}
/*
 * OLMo 2's q/k RMSNorm over the whole projection, in place on qkv (n, rows): the sums of squares
 * run over every head of the tensor-parallel group (one all-reduce of 2n values; replicated KV
 * heads counted once). rstd (2, n): the q and k 1/rms, or NULL.
 */
void melbo_cpu_qk_norm_whole(const struct melbo_model *m, const struct melbo_layer_weights *w,
                             float *qkv, int n, float *rstd);

/* Sums buf(n) over the tensor-parallel group (nothing when tp = 1). */
void melbo_cpu_tp_reduce(const struct melbo_model *m, float *buf, size_t n);

/* out(n, d) = embedding rows of ids[n]. ids must be in [0, vocab). */
void melbo_cpu_embed(const struct melbo_model *m, const int *ids, int n, float *out);
/* y(n, d) = final RMSNorm of x(n, d) (HF's hidden_states[L]). */
void melbo_cpu_final_norm(const struct melbo_model *m, const float *x, int n, float *y);
/* logits(n, V) = y(n, d) lm_head^T. */
void melbo_cpu_logits(const struct melbo_model *m, const float *y, int n, float *logits);

#ifdef __cplusplus
}
#endif
#endif
