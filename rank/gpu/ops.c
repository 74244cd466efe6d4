/* rank/gpu/ops.c - dtype dispatch of the rank/cuda launchers (rank/gpu/ops.h). */
#include "rank/gpu/ops.h"

#include <string.h>

#define BF(g) ((g)->dtype == MELBO_GPU_BF16)

int melbo_gpu_rmsnorm(const struct melbo_gpu_model *g, const void *x, const void *w, void *y,
                      float *rstd, int n, int d, int stride) {
    float eps = g->cfg.norm_eps;
    return BF(g) ? melbo_cuda_rmsnorm_bf16(x, w, y, rstd, n, d, stride, eps, g->stream)
                 : melbo_cuda_rmsnorm_f32(x, w, y, rstd, n, d, stride, eps, g->stream);
}

int melbo_gpu_rmsnorm_dx(const struct melbo_gpu_model *g, const void *x, const void *w,
                         const float *rstd, const void *dy, void *dx, int n, int d, int stride,
                         int acc) {
    return BF(g) ? melbo_cuda_rmsnorm_dx_bf16(x, w, rstd, dy, dx, n, d, stride, acc, g->stream)
                 : melbo_cuda_rmsnorm_dx_f32(x, w, rstd, dy, dx, n, d, stride, acc, g->stream);
}

int melbo_gpu_rope(const struct melbo_gpu_model *g, void *qkv, const int *pos, int n,
                   int inverse) {
    const struct melbo_model_config *c = &g->cfg;
    int ld = melbo_model_qkv_rows(c), heads = c->n_heads + c->n_kv_heads;
    return BF(g) ? melbo_cuda_rope_bf16(qkv, ld, 0, heads, c->head_dim, c->rope_dim,
                                        g->rope_inv_freq, pos, n, inverse, g->stream)
                 : melbo_cuda_rope_f32(qkv, ld, 0, heads, c->head_dim, c->rope_dim,
                                       g->rope_inv_freq, pos, n, inverse, g->stream);
}

int melbo_gpu_swiglu(const struct melbo_gpu_model *g, const void *gu, void *act, int n) {
    return BF(g) ? melbo_cuda_swiglu_bf16(gu, act, n, g->cfg.d_ff, g->stream)
                 : melbo_cuda_swiglu_f32(gu, act, n, g->cfg.d_ff, g->stream);
}

int melbo_gpu_swiglu_dx(const struct melbo_gpu_model *g, const void *gu, const void *dact,
                        void *dgu, int n) {
    return BF(g) ? melbo_cuda_swiglu_dx_bf16(gu, dact, dgu, n, g->cfg.d_ff, g->stream)
                 : melbo_cuda_swiglu_dx_f32(gu, dact, dgu, n, g->cfg.d_ff, g->stream);
}

int melbo_gpu_attention(const struct melbo_gpu_model *g, const void *qkv, void *out, float *lse,
                        const int *seq_start, int n_seq, int max_len) {
    const struct melbo_model_config *c = &g->cfg;
    int ld = melbo_model_qkv_rows(c);
    return BF(g) ? melbo_cuda_attention_bf16(qkv, ld, out, lse, c->n_heads, c->n_kv_heads,
                                             c->head_dim, seq_start, n_seq, max_len, g->stream)
                 : melbo_cuda_attention_f32(qkv, ld, out, lse, c->n_heads, c->n_kv_heads,
                                            c->head_dim, seq_start, n_seq, max_len, g->stream);
}

int melbo_gpu_attention_dx(const struct melbo_gpu_model *g, const void *qkv, const void *out,
                           const float *lse, const void *dout, void *dqkv, const int *seq_start,
                           int n_seq, int max_len) {
    const struct melbo_model_config *c = &g->cfg;
    int ld = melbo_model_qkv_rows(c);
    return BF(g) ? melbo_cuda_attention_dx_bf16(qkv, ld, out, lse, dout, dqkv, c->n_heads,
                                                c->n_kv_heads, c->head_dim, seq_start, n_seq,
                                                max_len, g->stream)
                 : melbo_cuda_attention_dx_f32(qkv, ld, out, lse, dout, dqkv, c->n_heads,
                                               c->n_kv_heads, c->head_dim, seq_start, n_seq,
                                               max_len, g->stream);
}

int melbo_gpu_linear(const struct melbo_gpu_model *g, const void *x, const void *w, void *y, int n,
                     int in, int out, float beta) {
    return BF(g) ? melbo_cuda_linear_bf16(g->blas, x, w, y, MELBO_CUDA_OUT_BF16, n, in, out, beta,
                                          g->stream)
                 : melbo_cuda_linear_f32(g->blas, x, w, y, n, in, out, beta, g->stream);
}

int melbo_gpu_linear_f32out(const struct melbo_gpu_model *g, const void *x, const void *w,
                            float *y, int n, int in, int out) {
    return BF(g) ? melbo_cuda_linear_bf16(g->blas, x, w, y, MELBO_CUDA_OUT_F32, n, in, out, 0.0f,
                                          g->stream)
                 : melbo_cuda_linear_f32(g->blas, x, w, y, n, in, out, 0.0f, g->stream);
}

int melbo_gpu_linear_add(const struct melbo_gpu_model *g, const void *x, const void *w,
                         const void *res, void *y, int n, int in, int out) {
    return BF(g) ? melbo_cuda_linear_add_bf16(g->blas, x, w, res, y, MELBO_CUDA_OUT_BF16, n, in,
                                              out, g->stream)
                 : melbo_cuda_linear_add_f32(g->blas, x, w, res, y, n, in, out, g->stream);
}

int melbo_gpu_linear_dx(const struct melbo_gpu_model *g, const void *dy, const void *w, void *dx,
                        int n, int in, int out, float beta) {
    return BF(g) ? melbo_cuda_linear_dx_bf16(g->blas, dy, w, dx, MELBO_CUDA_OUT_BF16, n, in, out,
                                             beta, g->stream)
                 : melbo_cuda_linear_dx_f32(g->blas, dy, w, dx, n, in, out, beta, g->stream);
}

int melbo_gpu_linear_dx_f32out(const struct melbo_gpu_model *g, const void *dy, const void *w,
                               float *dx, int n, int in, int out) {
    return BF(g) ? melbo_cuda_linear_dx_bf16(g->blas, dy, w, dx, MELBO_CUDA_OUT_F32, n, in, out,
                                             0.0f, g->stream)
                 : melbo_cuda_linear_dx_f32(g->blas, dy, w, dx, n, in, out, 0.0f, g->stream);
}

int melbo_gpu_residual_add(const struct melbo_gpu_model *g, void *out, const void *res,
                           const float *tmp, const float *bias, int n, int d) {
    return BF(g) ? melbo_cuda_residual_add_bf16(out, res, tmp, bias, n, d, g->stream)
                 : melbo_cuda_residual_add_f32(out, res, tmp, bias, n, d, g->stream);
}

int melbo_gpu_add_bias(const struct melbo_gpu_model *g, void *x, int ld, const float *bias, int n,
                       int cols) {
    return BF(g) ? melbo_cuda_add_bias_bf16(x, ld, bias, n, cols, g->stream)
                 : melbo_cuda_add_bias_f32(x, ld, bias, n, cols, g->stream);
}

int melbo_gpu_from_f32(const struct melbo_gpu_model *g, void *dst, const float *src, size_t n) {
    if (BF(g))
        return melbo_cuda_f32_to_bf16(dst, src, n, g->stream);
    return (int)cudaMemcpyAsync(dst, src, n * 4, cudaMemcpyDeviceToDevice, g->stream);
}

int melbo_gpu_to_f32(const struct melbo_gpu_model *g, float *dst, const void *src, size_t n) {
    if (BF(g))
        return melbo_cuda_bf16_to_f32(dst, src, n, g->stream);
    return (int)cudaMemcpyAsync(dst, src, n * 4, cudaMemcpyDeviceToDevice, g->stream);
}

int melbo_gpu_add_steer(const struct melbo_gpu_model *g, void *x, const float *theta,
                        const int *seq_vec, const int *seq_start, int n_seq) {
    int d = g->cfg.d_model;
    return BF(g) ? melbo_cuda_add_steer_bf16(x, theta, seq_vec, seq_start, n_seq, d, g->stream)
                 : melbo_cuda_add_steer_f32(x, theta, seq_vec, seq_start, n_seq, d, g->stream);
}

int melbo_gpu_reduce_positions(const struct melbo_gpu_model *g, const void *dx, const int *seq_vec,
                               const int *seq_start, int n_seq, float *grad, int B) {
    int d = g->cfg.d_model;
    return BF(g) ? melbo_cuda_reduce_positions_bf16(dx, seq_vec, seq_start, n_seq, d, grad, B,
                                                    g->stream)
                 : melbo_cuda_reduce_positions_f32(dx, seq_vec, seq_start, n_seq, d, grad, B,
                                                   g->stream);
}

int melbo_gpu_objective(const struct melbo_gpu_model *g, const void *z, const float *y,
                        const int *z_start, const int *y_start, const int *idx_start,
                        const int *idx, int n_pair, double p, double q, int axis, float *F,
                        void *dz) {
    int d = g->cfg.d_model;
    return BF(g) ? melbo_cuda_objective_bf16(z, y, z_start, y_start, idx_start, idx, n_pair, d, p,
                                             q, axis, F, dz, g->stream)
                 : melbo_cuda_objective_f32(z, y, z_start, y_start, idx_start, idx, n_pair, d, p,
                                            q, axis, F, dz, g->stream);
}
