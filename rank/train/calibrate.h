/*
 * rank/train/calibrate.h - choosing R before training (`--radius auto`), the relative lambda
 * rule of the follow-up work (method.md §4.1):
 *
 *   E(R) = sqrt( mean_l ||D(R v_l) - R J v_l||^2 / ||R J v_l||^2 ),   solve E(R) = lambda
 *
 * v_l are n random unit directions (raw draws Philox(seed, 2^40 + l), normalised, or
 * --calibration-init's 'directions'); D(theta) is the change of the target-layer activations,
 * averaged over each prompt's target positions and stacked over prompts; J v is its
 * Jacobian-vector product at 0 by central finite differences with step h = 1e-2 (J v =
 * (D(h v) - D(-h v)) / 2h). E is found for R by bisection in log R on [0.001, 100] to 1e-4
 * relative; when E - lambda has the same sign at both ends there is no root, and the error says so
 * with both ratios.
 */
#ifndef MELBO_RANK_TRAIN_CALIBRATE_H
#define MELBO_RANK_TRAIN_CALIBRATE_H

#include <stdint.h>

#include "common/err.h"
#include "rank/model/model.h"
#include "rank/method/prompts.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MELBO_CAL_R_MIN   0.001
#define MELBO_CAL_R_MAX   100.0
#define MELBO_CAL_FD_STEP 1e-2

/* The calibration's settings (--calibration-*, --seed). */
struct melbo_calibration_opts {
    int samples;      // n directions
    double lambda;    // target ratio
    const char *init; // a file whose tensor 'directions' [n, d] holds them, or NULL
    uint64_t seed;    // without init: direction l is Philox(seed, 2^40 + l)
};

struct melbo_calibration {
    double radius;             // R found
    double lambda;             // target ratio
    int samples;               // directions
    double ratio_lo, ratio_hi; // E at the bracket ends
    int iterations;
};

/*
 * Finds R for the span s+1..t-1 of the host model m (this rank's tensor-parallel share; its
 * all-reduce runs inside the span), the prompts pr and their prefix pre (X and Y), in fp32 on
 * the CPU whatever the training backend. Writes the result, R included, into *out and nothing
 * else; no root in the bracket is MELBO_ERANGE with both ratios in the message (out still holds
 * them).
 */
int melbo_calibrate_radius(const struct melbo_model *m, int s, int t,
                           const struct melbo_prompts *pr, const struct melbo_prefix *pre,
                           const struct melbo_calibration_opts *o, struct melbo_calibration *out,
                           struct melbo_err *err);

#ifdef __cplusplus
}
#endif
#endif
