/*
 * rank/train/optim.h - the steering-vector update (DESIGN §4 "Optimiser, per wave").
 *
 * Vectors are fp32 rows of length d with norm R. "Finished" vectors are those of earlier waves
 * (norm R, mutually orthogonal). Projections accumulate in double. This is the CPU reference of
 * the optimiser kernel; every rank applies it identically after the gradient all-reduce.
 */
#ifndef MELBO_RANK_TRAIN_OPTIM_H
#define MELBO_RANK_TRAIN_OPTIM_H

#ifdef __cplusplus
extern "C" {
#endif

struct melbo_adam {
    double lr, beta1, beta2, eps;
};

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
