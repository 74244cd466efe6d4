/*
 * rank/cpu/moe.h - the mixture-of-experts MLP (Mixtral, Qwen3-MoE) on the CPU: forward and
 * input-gradient backward, through the selected experts and the router.
 *
 * For each token x (n, d), as transformers computes it in fp32:
 *   p = softmax(x W_r^T) over the E experts;  S = the top-k experts of p;
 *   w_i = p_i / sum_{j in S} p_j (norm_topk: Mixtral always, Qwen3-MoE with norm_topk_prob), else p_i;
 *   out = sum_{i in S} w_i (act(x G_i^T) * (x U_i^T)) D_i^T.
 * Experts run as grouped products: the tokens routed to expert i are gathered and multiplied by
 * its weights with one sgemm each (only the selected (token, expert) pairs are computed, never a
 * dense E-way product). Under tensor parallelism every expert's columns are split like a dense
 * MLP (gate/up rows, down columns); the router is replicated; out is summed over the group.
 *
 * Backward (weights frozen): dx = sum_{i in S} w_i (expert i's input gradient of dout) + the
 * router's: with g_i = <dout, expert i's output>, dz_j = w_j (g_j - sum_S w g) (renormalised) or
 * p_j (g~_j - sum_S p g) over all j (not renormalised; g~ = g on S, 0 elsewhere); dx += dz W_r.
 * The selection S is a constant of the forward (a piecewise-constant function has no gradient).
 * Qwen2-MoE adds a shared expert (a dense SwiGLU MLP, split over the group like one) scaled by
 * sigmoid(x . w_gate), differentiated through both factors.
 */
#ifndef MELBO_RANK_CPU_MOE_H
#define MELBO_RANK_CPU_MOE_H

#include "rank/model/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What one MoE forward keeps for its backward, and its scratch; sized for cap tokens. */
struct melbo_cpu_moe {
    int cap;       // most tokens
    int *idx;      // (cap, k) selected experts, by decreasing probability
    float *rw;     // (cap, k) their weights w_i
    float *probs;  // (cap, E) router softmax
    int *perm;     // (cap*k) entries t*k + slot, grouped by expert
    int *off;      // (E + 1) group starts in perm
    float *gu;     // (cap*k, 2ff) each entry's gate|up projection, in perm order
    float *xg;     // (cap, d) scratch: gathered rows
    float *y;      // (cap, d) scratch: expert outputs
    float *act;    // (cap, ff) scratch
    float *dgu;    // (cap, 2ff) scratch
    float *g;      // (cap*k) scratch: <dout, expert output>
    /* Qwen2-MoE's shared expert (NULL without): out += sigmoid(x . w_sh_gate) shared_mlp(x) */
    float *sh_gu;  // (cap, 2 sff) its gate|up projection
    float *sh_a;   // (cap, sff) scratch
    float *sh_da;  // (cap, sff) scratch
    float *sh_dgu; // (cap, 2 sff) scratch
    float *sig;    // (cap) the gate sigmoid(x . w_sh_gate)
    float *gs;     // (cap) scratch: <dout, shared expert output>
};

void melbo_cpu_moe_init(struct melbo_cpu_moe *s, const struct melbo_model_config *c, int cap);
void melbo_cpu_moe_free(struct melbo_cpu_moe *s);

/* out (n, d) = the MoE MLP of x (n, d) for block weights w, summed over the tensor-parallel
 * group (no residual). Keeps in s what the backward needs. */
void melbo_cpu_moe_forward(const struct melbo_model *m, const struct melbo_layer_weights *w,
                           struct melbo_cpu_moe *s, const float *x, int n, float *out);

/* dx (n, d) = dLoss/dx from dout (n, d), using s as the last forward on the same tokens left
 * it; complete (summed over the tensor-parallel group). */
void melbo_cpu_moe_backward(const struct melbo_model *m, const struct melbo_layer_weights *w,
                            struct melbo_cpu_moe *s, const float *dout, int n, float *dx);

/* Multiply-adds of one forward + backward over n tokens (experts and router), for benchmarks. */
double melbo_cpu_moe_flops(const struct melbo_model_config *c, int n);

#ifdef __cplusplus
}
#endif
#endif
