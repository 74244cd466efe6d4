/*
 * rank/gpu/wave.h - one MELBO training step of a wave of vectors on the GPU: the twin of
 * rank/cpu/wave.h behind the CUDA backend's prefix and wave_objective (rank/gpu/backend.h), and,
 * for the benchmark, the optimiser step.
 *
 *   prefix  x0 (the prompts' embeddings) through blocks [0, s] -> X, then [s+1, t) -> Y (fp32)
 *   batch   the (vector, prompt) pairs [k0, k1) of a wave of Bw vectors packed (pair k = b*P + i
 *           holds prompt i steered by vector b); X of each pair copied once per batch
 *   step    X + theta_b at every position, span forward, objective F and its gradient at the
 *           targets, span backward, gradient summed over positions -> grad (Bw, d), F (pairs)
 *
 * All on the model's stream, with no host synchronisation except the tensor-parallel sums.
 * Ownership: the wave borrows the model and owns its device buffers (allocated once at init for
 * at most cap_B vectors x P prompts).
 */
#ifndef MELBO_RANK_GPU_WAVE_H
#define MELBO_RANK_GPU_WAVE_H

#include "rank/gpu/span.h"

#ifdef __cplusplus
extern "C" {
#endif

struct melbo_gpu_wave {
    const struct melbo_gpu_model *g;  // borrowed
    int s, t, d, P, cap_B;
    struct melbo_seqs pseqs;          // the P prompts packed (owned copy)
    int **idx;                        // (P) target positions of each prompt (owned copies)
    int *n_idx;                       // (P)
    struct melbo_gpu_span span;       // blocks [s+1, t), SAVE or RECOMPUTE
    void *X;                          // (n_ptok, d) T hidden_states[s+1]
    float *Y;                         // (n_ptok, d) fp32 hidden_states[t]
    void *base, *buf, *dbuf;          // (cap_tok, d) T: packed X per pair, activations, grads
    float *theta, *grad;              // (cap_B, d) fp32
    float *m, *v, *vhat;              // (cap_B, d) fp32 optimiser state (device optimiser)
    float *F;                         // (cap_B * P) fp32 objective per pair
    int *seq_vec, *y_start, *idx_start, *idx_dev; // device pair tables
    /* the current batch */
    int Bw, k0, k1;
    struct melbo_seqs wseqs;
    void *arena;
    size_t arena_bytes;
};

/*
 * Allocates for waves of up to cap_B vectors over prompts of lengths lens[P] with target
 * positions idx[P][n_idx[p]], blocks [s+1, t) saved for the backward, or recomputed when saving
 * them would leave less than reserve bytes of the device free. x0 (n_ptok, d) T on the device:
 * the input of block 0 (embeddings) of the prompts packed; the prefix is computed here.
 */
int melbo_gpu_wave_init(struct melbo_gpu_wave *w, const struct melbo_gpu_model *g, int s, int t,
                        const int *lens, int P, int *const *idx, const int *n_idx, int cap_B,
                        const void *x0, size_t reserve, struct melbo_err *err);
void melbo_gpu_wave_free(struct melbo_gpu_wave *w);

/* Packs the pairs [k0, k1) of a wave of Bw vectors (no-op when already packed). */
int melbo_gpu_wave_batch(struct melbo_gpu_wave *w, int Bw, int k0, int k1);

/* One forward and backward of the packed batch for the device vectors w->theta (Bw, d): fills
 * w->grad (Bw, d) = d(-F)/dtheta over this batch's pairs and w->F (k1 - k0) per pair. p, q and
 * axis as the objective's. Queued only: synchronise the stream before reading. */
int melbo_gpu_wave_step(struct melbo_gpu_wave *w, double p, double q, int axis);

/* The device AMSGrad step of melbo_cuda_vector_update on theta, grad, m, v, vhat (no finished
 * vectors, no orthogonality inside the wave: the benchmark's update). t is 1-based. */
int melbo_gpu_wave_update(struct melbo_gpu_wave *w, int t, double R, double lr, double beta1,
                          double beta2, double eps);

/* Matrix-product FLOPs of one step (forward + input-gradient backward, plus the recomputed
 * forward in RECOMPUTE mode). */
double melbo_gpu_wave_step_flops(const struct melbo_gpu_wave *w);

#ifdef __cplusplus
}
#endif
#endif
