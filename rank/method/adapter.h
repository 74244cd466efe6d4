/*
 * rank/method/adapter.h - unsteering adapters (method.md §3): a rank-r LoRA on the source block's
 * MLP output projection, trained with the steering vectors' objective.
 *
 *   delta W = (alpha / r) B A,   A (r, ff), B (d, r), stored unscaled
 *
 * so the source block's output at position t moves by (alpha / r) B (A u_t), u_t (ff) the input of
 * the down projection. Both factors are normalised over dim 0 (torch's F.normalize(dim=0)): each
 * length-r column of A and each length-d column of B has unit norm.
 *
 * One adapter's parameters are one flat fp32 row of melbo_adapter_width floats: A row-major, then
 * B row-major. That row plays the part a vector plays in struct melbo_wave_state (rank/method/
 * optim.h), so waves, checkpoints and the data-parallel all-reduce treat both kinds alike; only
 * the init, the update and the objective's perturbation differ. Raw draws are the width's Gaussian
 * numbers from (seed, k) in the same order (A's, then B's).
 */
#ifndef MELBO_RANK_METHOD_ADAPTER_H
#define MELBO_RANK_METHOD_ADAPTER_H

#include <stddef.h>

#include "rank/method/optim.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An adapter's shape: the full model's widths, whatever this rank's tensor-parallel share. */
struct melbo_adapter_shape {
    int r;        // rank
    int d;        // d_model
    int ff;       // MLP width (input of the down projection)
    double alpha; // scale numerator: delta W = (alpha / r) B A
};

static inline size_t melbo_adapter_n_A(const struct melbo_adapter_shape *s) {
    return (size_t)s->r * (size_t)s->ff;
}
static inline size_t melbo_adapter_width(const struct melbo_adapter_shape *s) {
    return melbo_adapter_n_A(s) + (size_t)s->d * (size_t)s->r;
}
static inline double melbo_adapter_scale(const struct melbo_adapter_shape *s) {
    return s->alpha / s->r;
}

/* par (width) = the raw draw g (width, double) with both factors normalised by columns. */
void melbo_adapter_init(float *par, const double *g, const struct melbo_adapter_shape *s);

/* Normalises the columns of both factors of par (width) in place: x / max(||x||, 1e-12). */
void melbo_adapter_normalize(float *par, const struct melbo_adapter_shape *s);

/*
 * One adapter's update for step t (1-based), the notebook's order: g's columns projected onto the
 * tangent space at par's (unit) columns, one AMSGrad step over both factors (melbo_amsgrad_step),
 * both factors renormalised by columns. g (width) is consumed.
 */
void melbo_adapter_update(float *par, float *g, float *m, float *v, float *vhat, int t,
                          const struct melbo_adam *opt, const struct melbo_adapter_shape *s);

/* <B_x A_x, B_y A_y> (Frobenius) of two adapters' weight changes, unscaled, in fp64, from the
 * r x r products B_x^T B_y and A_x A_y^T (never forming the d x ff matrices): A (r, ff) and
 * B (d, r) each, e.g. the two parts of an adapter row or a bank's lora_A / lora_B rows. */
double melbo_adapter_dot(const float *A_x, const float *B_x, const float *A_y, const float *B_y,
                         const struct melbo_adapter_shape *s);

#ifdef __cplusplus
}
#endif
#endif
