/*
 * rank/cpu/wave.h - the prefix and one MELBO training step of a wave of vectors on the CPU, in
 * fp32: the twin of rank/gpu/wave.h and the reference for it.
 *
 *   prefix  blocks 0..s once over the packed prompts -> X (hidden_states[s+1]); blocks
 *           s+1..t-1 on X -> Y (hidden_states[t])
 *   batch   the (vector, prompt) pairs [k0, k1) of a wave of Bw vectors packed (pair k = b*P + i
 *           is prompt i steered by vector b)
 *   step    X + theta_b at every position of each pair, span forward, the objective F and its
 *           gradient at the target positions (rank/method/objective.h), span backward, the
 *           gradient summed over positions -> F (Bw) per vector and grad (Bw, d)
 *   adapter the same with X + (alpha/r) B_b A_b u at every position (u: block s's down-projection
 *           input, kept by the prefix), pair by pair (rank/cpu/lora.h), and the gradients of
 *           both factors from the span's input gradient
 *
 * Ownership: a wave borrows the model, the prompts and the prefix (X, Y), which must outlive
 * it, and owns its activations (allocated once for cap_B vectors x every prompt).
 */
#ifndef MELBO_RANK_CPU_WAVE_H
#define MELBO_RANK_CPU_WAVE_H

#include "rank/cpu/span.h"
#include "rank/method/adapter.h"
#include "rank/method/objective.h"
#include "rank/method/prompts.h"

#ifdef __cplusplus
extern "C" {
#endif

struct melbo_cpu_wave {
    const struct melbo_model *m;    // borrowed
    const struct melbo_prompts *pr; // borrowed
    const float *X, *Y;             // (n_ptok, d) borrowed: the prefix
    int s, t, d, cap_B;
    /* adapters (NULL ad: vectors) */
    const struct melbo_adapter_shape *ad; // borrowed
    const float *U;                       // (n_ptok, ff) borrowed: block s's down-proj. input
    int ff, c0;                           // this rank's MLP columns [c0, c0 + ff)
    float *z, *gz;                        // (cap_B * n_ptok, r) the low-rank activations
    struct melbo_cpu_span span; // blocks [s+1, t) for cap_B * n_ptok tokens, saved
    float *buf;                 // (cap_B * n_ptok, d) activations
    float *dbuf;                // (cap_B * n_ptok, d) gradients
    double *scratch;            // (d) the objective's
    /* the current batch */
    int Bw, k0, k1;
    struct melbo_seqs wseqs;
};

/* X and Y (pr->seqs.n_tok, d), caller-allocated, of the packed prompts pr on model m (which
 * holds blocks 0..t-1 and the embedding); U (n_tok, this rank's MLP width), unless NULL, the
 * input of block s's down projection (the SwiGLU output), which adapters multiply. */
void melbo_cpu_prefix(const struct melbo_model *m, const struct melbo_prompts *pr, int s, int t,
                      float *X, float *Y, float *U);

/* Allocates a wave of up to cap_B vectors, or adapters of shape ad with the prefix's U (ad and U
 * NULL for vectors), over the prompts pr with prefix X, Y. */
void melbo_cpu_wave_init(struct melbo_cpu_wave *w, const struct melbo_model *m, int s, int t,
                         const struct melbo_prompts *pr, int cap_B, const float *X, const float *Y,
                         const struct melbo_adapter_shape *ad, const float *U);
void melbo_cpu_wave_free(struct melbo_cpu_wave *w);

/* Packs the pairs [k0, k1) of a wave of Bw <= cap_B vectors (no-op when already packed). */
void melbo_cpu_wave_batch(struct melbo_cpu_wave *w, int Bw, int k0, int k1);

/*
 * One forward and backward of the packed batch for the vectors theta (Bw, d): F (Bw) overwritten
 * with each vector's F summed over the batch's pairs (p, q, axis as melbo_objective's), grad
 * (Bw, d) with d(-F)/dtheta over them (sums in double, then rounded to fp32). For adapters theta
 * and grad are (Bw, width) adapter rows; grad's A part gets only this rank's columns (the others
 * 0), its B part the whole gradient (struct melbo_backend_i.wave_objective).
 */
void melbo_cpu_wave_step(struct melbo_cpu_wave *w, const float *theta, double p, double q,
                         enum melbo_loss_axis axis, double *F, float *grad);

#ifdef __cplusplus
}
#endif
#endif
