/*
 * rank/gpu/ops.h - the rank/cuda launchers chosen by the model's dtype.
 *
 * Activations of a GPU model are stored in its dtype T (bf16 or fp32) and passed as void *;
 * these wrappers call the _bf16 or _f32 launcher of rank/cuda/kernels.h on the model's stream,
 * with the model's constants (eps, RoPE frequencies). Return values are the launchers'.
 */
#ifndef MELBO_RANK_GPU_OPS_H
#define MELBO_RANK_GPU_OPS_H

#include <stddef.h>

#include "rank/gpu/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* p advanced by elems elements of the model's dtype. */
static inline void *melbo_gpu_at(const struct melbo_gpu_model *g, const void *p, size_t elems) {
    return (char *)p + elems * melbo_gpu_dtype_size(g->dtype);
}

/* Evaluates a launcher call and returns its nonzero value from the enclosing function. */
#define MELBO_GPU_TRY(expr)                                                                        \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_)                                                                                   \
            return rc_;                                                                            \
    } while (0)

int melbo_gpu_rmsnorm(const struct melbo_gpu_model *g, const void *x, const void *w, void *y,
                      float *rstd, int n, int d, int stride);
int melbo_gpu_rmsnorm_dx(const struct melbo_gpu_model *g, const void *x, const void *w,
                         const float *rstd, const void *dy, void *dx, int n, int d, int stride,
                         int acc);
/* RoPE on every q and k head of qkv (n, qkv_rows) at positions pos (n) on the device. */
int melbo_gpu_rope(const struct melbo_gpu_model *g, void *qkv, const int *pos, int n, int inverse);
int melbo_gpu_swiglu(const struct melbo_gpu_model *g, const void *gu, void *act, int n);
int melbo_gpu_swiglu_dx(const struct melbo_gpu_model *g, const void *gu, const void *dact,
                        void *dgu, int n);
int melbo_gpu_attention(const struct melbo_gpu_model *g, const void *qkv, void *out, float *lse,
                        const int *seq_start, int n_seq, int max_len);
int melbo_gpu_attention_dx(const struct melbo_gpu_model *g, const void *qkv, const void *out,
                           const float *lse, const void *dout, void *dqkv, const int *seq_start,
                           int n_seq, int max_len);
/* y (n, out) T = x (n, in) W^T + beta y. */
int melbo_gpu_linear(const struct melbo_gpu_model *g, const void *x, const void *w, void *y, int n,
                     int in, int out, float beta);
/* y (n, out) fp32 = x (n, in) W^T (T inputs, fp32 output; beta 0). */
int melbo_gpu_linear_f32out(const struct melbo_gpu_model *g, const void *x, const void *w,
                            float *y, int n, int in, int out);
/* y (n, out) T = x (n, in) W^T + res (n, out) T (res may be y). */
int melbo_gpu_linear_add(const struct melbo_gpu_model *g, const void *x, const void *w,
                         const void *res, void *y, int n, int in, int out);
int melbo_gpu_linear_dx(const struct melbo_gpu_model *g, const void *dy, const void *w, void *dx,
                        int n, int in, int out, float beta);
int melbo_gpu_linear_dx_f32out(const struct melbo_gpu_model *g, const void *dy, const void *w,
                               float *dx, int n, int in, int out);
int melbo_gpu_residual_add(const struct melbo_gpu_model *g, void *out, const void *res,
                           const float *tmp, const float *bias, int n, int d);
int melbo_gpu_add_bias(const struct melbo_gpu_model *g, void *x, int ld, const float *bias, int n,
                       int cols);
/* dst (n) T = src (n) fp32. */
int melbo_gpu_from_f32(const struct melbo_gpu_model *g, void *dst, const float *src, size_t n);
/* dst (n) fp32 = src (n) T. */
int melbo_gpu_to_f32(const struct melbo_gpu_model *g, float *dst, const void *src, size_t n);
int melbo_gpu_add_steer(const struct melbo_gpu_model *g, void *x, const float *theta,
                        const int *seq_vec, const int *seq_start, int n_seq);
int melbo_gpu_reduce_positions(const struct melbo_gpu_model *g, const void *dx, const int *seq_vec,
                               const int *seq_start, int n_seq, float *grad, int B);
int melbo_gpu_objective(const struct melbo_gpu_model *g, const void *z, const float *y,
                        const int *z_start, const int *y_start, const int *idx_start,
                        const int *idx, int n_pair, double p, double q, int axis, float *F,
                        void *dz);

#ifdef __cplusplus
}
#endif
#endif
