/*
 * rank/method/objective.h - the MELBO objective of one (vector, prompt) pair and its gradient.
 *
 * F = (sum_{t in I} ||Z_t - Y_t||^p)^(1/q)               loss axis "token" (DESIGN §4)
 * F = (sum_j n_j^p)^(1/q),  n_j = sqrt(sum_{t in I} (Z_tj - Y_tj)^2)   loss axis "dim" (the
 *     reference code's .norm(dim=1); equal to "token" when p = 2)
 * Sums are accumulated in double. This is the CPU reference of the objective kernel.
 */
#ifndef MELBO_RANK_METHOD_OBJECTIVE_H
#define MELBO_RANK_METHOD_OBJECTIVE_H

#include "options/train.h" // defines: enum melbo_loss_axis (the --loss-axis choices)

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Returns F for one prompt: z, y (T, d) the steered and unsteered target-layer rows of the
 * prompt, idx[n_idx] the target positions. When dz is not NULL it receives (overwritten, T x d)
 * the gradient of the LOSS -F with respect to z: zero outside idx. When wsum is not NULL it must
 * hold d doubles of scratch (dim axis).
 */
double melbo_objective(const float *z, const float *y, int T, int d, const int *idx, int n_idx,
                       double p, double q, enum melbo_loss_axis axis, float *dz, double *scratch);

#ifdef __cplusplus
}
#endif
#endif
