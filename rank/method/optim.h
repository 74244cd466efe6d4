/*
 * rank/method/optim.h - the steering-vector update (DESIGN §4 "Optimiser, per wave").
 *
 * Vectors are fp32 rows of length d with norm R. "Finished" vectors are those of earlier waves
 * (norm R, mutually orthogonal). Projections accumulate in double. This is the CPU reference of
 * the optimiser kernel; every rank applies it identically after the gradient all-reduce.
 *
 * struct melbo_wave_state is a run's whole optimiser state: what a checkpoint holds
 * (rank/train/state.h) and what a backend's update (rank/backend.h) advances.
 */
#ifndef MELBO_RANK_METHOD_OPTIM_H
#define MELBO_RANK_METHOD_OPTIM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct melbo_adam {
    double lr, beta1, beta2, eps;
};

struct melbo_adapter_shape; // rank/method/adapter.h

/* What one update needs besides the state: R, AMSGrad's settings, --orthogonal, and for
 * adapters their shape (R and orthogonal then do not apply). */
struct melbo_optim {
    double R;
    struct melbo_adam adam;
    int orthogonal;
    const struct melbo_adapter_shape *adapter; // NULL: steering vectors; borrowed
};

/*
 * The vectors of a run of N vectors in waves of up to B, with `steps` steps each, and the
 * current wave's optimiser state. Host fp32 arrays, all owned, allocated once (zeroed) by
 * melbo_wave_state_init. For adapters a "vector" is an adapter's flat parameter row and d its
 * width (rank/method/adapter.h).
 */
struct melbo_wave_state {
    int N, B, d, steps;          // the run's shape (d: floats per vector or adapter)
    float *vectors;              // (N, d); rows [0, n_done) finished
    float *objective;            // (N, steps) F before each update, summed over prompts
    int n_done;                  // finished vectors
    int wave_step;               // steps done in the current wave
    int wave_B;                  // size of the current wave (0 between waves)
    float *theta, *m, *v, *vhat; // (B, d) the current wave's vectors and AMSGrad moments
    float *grad;                 // (B, d) dLoss/dtheta of the last step (consumed by the update)
};

void melbo_wave_state_init(struct melbo_wave_state *ws, int N, int B, int d, int steps);
void melbo_wave_state_free(struct melbo_wave_state *ws);

/*
 * One optimiser step t (1-based) of the current wave, on the host: melbo_vector_update of each
 * of its wave_B vectors against the finished ones, then (with o->orthogonal and more than one
 * vector) melbo_wave_orthogonalize; for adapters (o->adapter) melbo_adapter_update of each.
 * Consumes ws->grad; does not advance ws->wave_step.
 */
void melbo_wave_update(struct melbo_wave_state *ws, int t, const struct melbo_optim *o);

/*
 * One AMSGrad step t (1-based) on n parameters x with gradient g, exactly as PyTorch's
 * AdamW(amsgrad=True, weight_decay=0) on fp32 tensors: m, v, vhat updated, x moved.
 */
void melbo_amsgrad_step(float *x, const float *g, float *m, float *v, float *vhat, size_t n, int t,
                        const struct melbo_adam *opt);

/* x(d) -= sum_k (x . u_k) / (u_k . u_k) u_k over rows u_k of u (n, d); in place, in double. */
void melbo_project_out(double *x, const float *u, int n, int d);

/*
 * One vector's update for step t (1-based), in the reference order: gradient g projected off the
 * finished vectors (when orthogonal), onto the sphere's tangent space at theta; AMSGrad with
 * PyTorch's AdamW(amsgrad=True, weight_decay=0) arithmetic in fp32; theta projected off the
 * finished vectors (when orthogonal); theta rescaled to norm R. g is consumed (modified).
 */
void melbo_vector_update(float *theta, float *g, float *m, float *v, float *vhat, int d, int t,
                         double R, const struct melbo_adam *opt, const float *finished,
                         int n_finished, int orthogonal);

/*
 * Initial vector: theta = R * normalize(P(g)), P projecting off the finished vectors and the
 * wave-mates already initialised (rows of mates, n_mates), when orthogonal. g (d) in double.
 */
void melbo_vector_init(float *theta, double *g, int d, double R, const float *finished,
                       int n_finished, const float *mates, int n_mates, int orthogonal);

/*
 * Gram-Schmidt over a wave's vectors theta (B, d) in wave order, in fp64, two passes, against
 * the finished vectors and the earlier wave-mates, each rescaled to R. Optimiser state is not
 * touched.
 */
void melbo_wave_orthogonalize(float *theta, int B, int d, double R, const float *finished,
                              int n_finished);

#ifdef __cplusplus
}
#endif
#endif
