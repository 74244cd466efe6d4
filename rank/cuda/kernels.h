/*
 * rank/cuda/kernels.h - the CUDA kernels of a decoder block and of MELBO training, behind a
 * plain C interface (style rule 5).
 *
 * Every function here is a launcher: it checks its shapes, picks the grid with CEIL_DIV, queues
 * one or two kernels on the given stream and returns at once, without synchronising. Pointers
 * are device pointers unless a comment says otherwise; shapes are written next to them.
 * Activations are packed (n tokens, width), row-major, exactly as in rank/cpu/ops.h, and every
 * kernel has its fp32 CPU twin there (or in rank/train/), which is the spec and the test oracle
 * (tests/gpu/test_kernels.cu).
 *
 * Precision (DESIGN "Precision"): the _bf16 launchers read and write bf16 tensors and compute in
 * fp32; the _f32 launchers are fp32 throughout and exist where a result must match the CPU
 * closely (rel <= 1e-5). Saved statistics (rstd, lse), the steering vectors, their gradient, the
 * optimiser state, Y and the objective are always fp32.
 *
 * Packed sequences (rank/model/seqs.h) are described on the device by seq_start (n_seq + 1),
 * the first token of each sequence, and pos (n_tok), each token's position inside its sequence.
 * The host keeps n_seq, n_tok and the longest length, which size the grids.
 *
 * Return values: 0 on success; a negative MELBO_E* code (common/err.h) when the arguments are
 * refused (nothing is launched); a positive value when CUDA or cuBLAS reported an error, see
 * melbo_cuda_strerror(). No launcher exits or aborts: rank/ code decides what is fatal.
 */
#ifndef MELBO_RANK_CUDA_KERNELS_H
#define MELBO_RANK_CUDA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A bf16 value as its 16 raw bits (the top half of an fp32); the .cu files read __nv_bfloat16. */
typedef uint16_t melbo_bf16;

/* Positive return values >= this are a cuBLAS status plus this base; smaller ones cudaError_t. */
#define MELBO_CUDA_BLAS_ERROR_BASE 100000

/* Longest sequence the attention kernels accept (scores of one query row live in shared memory). */
#define MELBO_CUDA_ATTN_MAX_LEN 4096
/* Widest attention head the attention kernels accept. */
#define MELBO_CUDA_ATTN_MAX_HEAD_DIM 256
/* Widest steering vector melbo_cuda_vector_update accepts (kept in registers, 1024 threads). */
#define MELBO_CUDA_OPTIM_MAX_D 16384

/* A readable name for any return value of this header (static storage). */
const char *melbo_cuda_strerror(int rc);

/* ---------------------------------------------------------------------------------------------
 * Conversions (for tests and staging): n values, host or device pointers as the name says.
 */

/* dst(n) = round-to-nearest-even bf16 of src(n); host memory. */
void melbo_bf16_from_f32_host(melbo_bf16 *dst, const float *src, size_t n);
/* dst(n) = src(n) widened to fp32; host memory. */
void melbo_bf16_to_f32_host(float *dst, const melbo_bf16 *src, size_t n);

/* ---------------------------------------------------------------------------------------------
 * RMSNorm (twin: melbo_cpu_rmsnorm, melbo_cpu_rmsnorm_dx). Rows of width d, stride elements
 * apart (stride >= d), so the same kernel serves the residual stream and per-head q/k norms.
 * One block per row.
 */

/* y = w * x / sqrt(mean(x^2) + eps); rstd(n) receives 1/rms (may be NULL). x, y (n, stride). */
int melbo_cuda_rmsnorm_f32(const float *x, const float *w, float *y, float *rstd, int n, int d,
                           int stride, float eps, cudaStream_t stream);
int melbo_cuda_rmsnorm_bf16(const melbo_bf16 *x, const melbo_bf16 *w, melbo_bf16 *y, float *rstd,
                            int n, int d, int stride, float eps, cudaStream_t stream);

/* dx = d/dx RMSNorm given dy, the input x and the saved rstd; acc = 1 adds into dx. */
int melbo_cuda_rmsnorm_dx_f32(const float *x, const float *w, const float *rstd, const float *dy,
                              float *dx, int n, int d, int stride, int acc, cudaStream_t stream);
int melbo_cuda_rmsnorm_dx_bf16(const melbo_bf16 *x, const melbo_bf16 *w, const float *rstd,
                               const melbo_bf16 *dy, melbo_bf16 *dx, int n, int d, int stride,
                               int acc, cudaStream_t stream);

/* ---------------------------------------------------------------------------------------------
 * Rotary embedding (twin: melbo_cpu_rope), rotate_half convention: pairs (i, i + rope_dim/2) of
 * each of n_heads heads of width head_dim starting at column col0 of every row (row stride ld),
 * in place, at position pos[t] (n_tok). inv_freq (rope_dim/2) fp32. inverse = 1 applies the
 * transposed rotation (the backward). Angles are the fp32 product pos * inv_freq, as in
 * transformers.
 */
int melbo_cuda_rope_f32(float *x, int ld, int col0, int n_heads, int head_dim, int rope_dim,
                        const float *inv_freq, const int *pos, int n_tok, int inverse,
                        cudaStream_t stream);
int melbo_cuda_rope_bf16(melbo_bf16 *x, int ld, int col0, int n_heads, int head_dim, int rope_dim,
                         const float *inv_freq, const int *pos, int n_tok, int inverse,
                         cudaStream_t stream);

/* ---------------------------------------------------------------------------------------------
 * SwiGLU (twin: melbo_cpu_swiglu, melbo_cpu_swiglu_dx): gu (n, 2ff) holds gate then up.
 */

/* act(n, ff) = silu(gate) * up. */
int melbo_cuda_swiglu_f32(const float *gu, float *act, int n, int ff, cudaStream_t stream);
int melbo_cuda_swiglu_bf16(const melbo_bf16 *gu, melbo_bf16 *act, int n, int ff,
                           cudaStream_t stream);
/* dgu(n, 2ff) from dact(n, ff) and the saved gu. */
int melbo_cuda_swiglu_dx_f32(const float *gu, const float *dact, float *dgu, int n, int ff,
                             cudaStream_t stream);
int melbo_cuda_swiglu_dx_bf16(const melbo_bf16 *gu, const melbo_bf16 *dact, melbo_bf16 *dgu, int n,
                              int ff, cudaStream_t stream);

/* ---------------------------------------------------------------------------------------------
 * Causal grouped-query attention over packed sequences (twin: melbo_cpu_attention,
 * melbo_cpu_attention_dx). qkv (n_tok, ld) holds per token the nq query heads at column 0, the
 * nkv key heads at column nq*hd and the value heads at (nq+nkv)*hd, after RoPE. Sequences are
 * seq_start (n_seq + 1) on the device; max_len (host) is the longest, at most
 * MELBO_CUDA_ATTN_MAX_LEN; hd <= MELBO_CUDA_ATTN_MAX_HEAD_DIM; nq a multiple of nkv.
 *
 * Written for short prompts: one thread block per (sequence, head) walks the query rows, the
 * scores of one row in shared memory. Cost is O(T^2 hd) per head with no tiling, which is fine
 * for T in the hundreds; long contexts need a flash-style kernel.
 */

/* out (n_tok, nq*hd) = softmax(q k^T / sqrt(hd)) v; lse (n_tok, nq) fp32 log-sum-exp per row. */
int melbo_cuda_attention_f32(const float *qkv, int ld, float *out, float *lse, int nq, int nkv,
                             int hd, const int *seq_start, int n_seq, int max_len,
                             cudaStream_t stream);
int melbo_cuda_attention_bf16(const melbo_bf16 *qkv, int ld, melbo_bf16 *out, float *lse, int nq,
                              int nkv, int hd, const int *seq_start, int n_seq, int max_len,
                              cudaStream_t stream);

/*
 * dqkv (n_tok, ld) receives dq, dk, dv in the qkv layout (overwritten; other columns untouched)
 * from dout (n_tok, nq*hd) and the saved qkv, out and lse. Two kernels: dq with one block per
 * (sequence, query head), dk and dv with one block per (sequence, KV head), so each output
 * element is written once, accumulated in fp32 registers, with no atomics.
 */
int melbo_cuda_attention_dx_f32(const float *qkv, int ld, const float *out, const float *lse,
                                const float *dout, float *dqkv, int nq, int nkv, int hd,
                                const int *seq_start, int n_seq, int max_len,
                                cudaStream_t stream);
int melbo_cuda_attention_dx_bf16(const melbo_bf16 *qkv, int ld, const melbo_bf16 *out,
                                 const float *lse, const melbo_bf16 *dout, melbo_bf16 *dqkv,
                                 int nq, int nkv, int hd, const int *seq_start, int n_seq,
                                 int max_len, cudaStream_t stream);

/* ---------------------------------------------------------------------------------------------
 * Steering: the vector enters the residual stream at every position of a sequence, and its
 * gradient is the sum of the residual gradient over those positions (rank/cpu/wave.c,
 * melbo_cpu_wave_step). seq_vec (n_seq) on the device names the vector row of each
 * sequence (for the trainer's pair k = b*P + i, seq_vec[k - k0] = b).
 */

/* x[t] += theta[seq_vec[s]] for every token t of every sequence s; x (n_tok, d), theta (B, d). */
int melbo_cuda_add_steer_f32(float *x, const float *theta, const int *seq_vec,
                             const int *seq_start, int n_seq, int d, cudaStream_t stream);
int melbo_cuda_add_steer_bf16(melbo_bf16 *x, const float *theta, const int *seq_vec,
                              const int *seq_start, int n_seq, int d, cudaStream_t stream);

/*
 * grad (B, d) fp32, overwritten: grad[b] = sum of dx[t] over the tokens t of the sequences s with
 * seq_vec[s] == b (zero for a b without sequences). Accumulated in fp64 in a fixed order, so
 * the result does not depend on the launch and matches the CPU wave's double sum.
 */
int melbo_cuda_reduce_positions_f32(const float *dx, const int *seq_vec, const int *seq_start,
                                    int n_seq, int d, float *grad, int B, cudaStream_t stream);
int melbo_cuda_reduce_positions_bf16(const melbo_bf16 *dx, const int *seq_vec,
                                     const int *seq_start, int n_seq, int d, float *grad, int B,
                                     cudaStream_t stream);

/* ---------------------------------------------------------------------------------------------
 * The MELBO objective of each (vector, prompt) pair and the gradient of the loss -F with respect
 * to the steered rows (twin: melbo_objective in rank/method/objective.h; axis 0 = token,
 * 1 = dim). One block per pair.
 *
 * Pair k's steered rows are z[z_start[k] .. z_start[k+1]) (z (n_tok, d), z_start (n_pair + 1),
 * the batch's seq_start); its unsteered rows start at row y_start[k] of y (fp32; y_start
 * (n_pair)); its target positions, relative to the pair's first row, are
 * idx[idx_start[k] .. idx_start[k+1]) (idx_start (n_pair + 1)). F (n_pair) fp32 receives the
 * objective of each pair; dz (n_tok, d), same type as z, the gradient (overwritten, zero
 * outside the targets; may be NULL for the forward only). Differences and sums are formed in
 * fp64 exactly as the CPU twin does.
 */
int melbo_cuda_objective_f32(const float *z, const float *y, const int *z_start,
                             const int *y_start, const int *idx_start, const int *idx, int n_pair,
                             int d, double p, double q, int axis, float *F, float *dz,
                             cudaStream_t stream);
int melbo_cuda_objective_bf16(const melbo_bf16 *z, const float *y, const int *z_start,
                              const int *y_start, const int *idx_start, const int *idx,
                              int n_pair, int d, double p, double q, int axis, float *F,
                              melbo_bf16 *dz, cudaStream_t stream);

/* ---------------------------------------------------------------------------------------------
 * The optimiser step of B vectors (twin: melbo_vector_update in rank/method/optim.h), one block
 * per vector, all fp32 state: theta, g, m, v, vhat (B, d). In the reference order: g projected
 * off the rows of Q (n_q, d) (the finished vectors; Q = NULL or n_q = 0 for none), onto the
 * tangent space of the sphere at theta; AMSGrad with PyTorch's AdamW(amsgrad=True,
 * weight_decay=0) fp32 arithmetic (no fused multiply-add, so it is bit-identical to the CPU);
 * theta projected off Q and rescaled to norm R. Projections and norms in fp64. t is the 1-based
 * step; g is consumed (it receives the projected gradient). d <= MELBO_CUDA_OPTIM_MAX_D.
 */
int melbo_cuda_vector_update(float *theta, float *g, float *m, float *v, float *vhat, int B, int d,
                             int t, double R, double lr, double beta1, double beta2, double eps,
                             const float *Q, int n_q, cudaStream_t stream);

/* ---------------------------------------------------------------------------------------------
 * Matrix products on cuBLASLt: bf16 inputs, fp32 accumulation, bf16 or fp32 output (twin:
 * melbo_cpu_linear, melbo_cpu_linear_dx). A handle owns the cuBLASLt context and a workspace;
 * create one per stream and device, and free it after the last product using it has finished.
 */

struct melbo_cuda_blas; /* opaque */

/* *out = a new handle with workspace_bytes of device workspace (0: 32 MiB). */
int melbo_cuda_blas_init(struct melbo_cuda_blas **out, size_t workspace_bytes);
/* Frees the handle and its workspace; NULL is allowed. */
void melbo_cuda_blas_free(struct melbo_cuda_blas *blas);

/* Output types of the products. */
enum melbo_cuda_out {
    MELBO_CUDA_OUT_BF16 = 0,
    MELBO_CUDA_OUT_F32 = 1,
};

/* y (n, out) = x (n, in) W (out, in)^T + beta * y; y bf16 or fp32 as out_type says. */
int melbo_cuda_linear_bf16(struct melbo_cuda_blas *blas, const melbo_bf16 *x, const melbo_bf16 *w,
                           void *y, enum melbo_cuda_out out_type, int n, int in, int out,
                           float beta, cudaStream_t stream);
/* dx (n, in) = dy (n, out) W (out, in) + beta * dx: the input gradient of the product above. */
int melbo_cuda_linear_dx_bf16(struct melbo_cuda_blas *blas, const melbo_bf16 *dy,
                              const melbo_bf16 *w, void *dx, enum melbo_cuda_out out_type, int n,
                              int in, int out, float beta, cudaStream_t stream);

/* ---------------------------------------------------------------------------------------------
 * Element-wise glue (rank/cuda/elementwise.cu; twins: melbo_cpu_add_bias and the residual add
 * of melbo_cpu_row_parallel).
 */

/* out (n, d) = res (n, d) + tmp (n, d) fp32 (+ bias (d) fp32, or NULL). out may alias res. */
int melbo_cuda_residual_add_f32(float *out, const float *res, const float *tmp, const float *bias,
                                int n, int d, cudaStream_t stream);
int melbo_cuda_residual_add_bf16(melbo_bf16 *out, const melbo_bf16 *res, const float *tmp,
                                 const float *bias, int n, int d, cudaStream_t stream);
/* x (n, ld): x[t][j] += bias[j] for j < cols; bias (cols) fp32. */
int melbo_cuda_add_bias_f32(float *x, int ld, const float *bias, int n, int cols,
                            cudaStream_t stream);
int melbo_cuda_add_bias_bf16(melbo_bf16 *x, int ld, const float *bias, int n, int cols,
                             cudaStream_t stream);
/* dst(n) = src(n) converted (bf16 rounded to nearest even); device memory. */
int melbo_cuda_f32_to_bf16(melbo_bf16 *dst, const float *src, size_t n, cudaStream_t stream);
int melbo_cuda_bf16_to_f32(float *dst, const melbo_bf16 *src, size_t n, cudaStream_t stream);
/* x(n) = mean + std * normal draws, a function of (seed, index) only (benchmark weights). */
int melbo_cuda_fill_normal_f32(float *x, size_t n, float mean, float std, uint64_t seed,
                               cudaStream_t stream);
int melbo_cuda_fill_normal_bf16(melbo_bf16 *x, size_t n, float mean, float std, uint64_t seed,
                                cudaStream_t stream);

/* y (n, out) = x (n, in) W (out, in)^T + beta * y, all fp32 (cuBLASLt, fp32 compute, no TF32):
 * the --dtype fp32 path that is checked against the CPU. */
int melbo_cuda_linear_f32(struct melbo_cuda_blas *blas, const float *x, const float *w, float *y,
                          int n, int in, int out, float beta, cudaStream_t stream);
/* y (n, out) = x (n, in) W (out, in)^T + res (n, out): the product and the residual add in one
 * cuBLASLt call (res may be y); res and y of out_type (bf16 launcher) or fp32. */
int melbo_cuda_linear_add_bf16(struct melbo_cuda_blas *blas, const melbo_bf16 *x,
                               const melbo_bf16 *w, const void *res, void *y,
                               enum melbo_cuda_out out_type, int n, int in, int out,
                               cudaStream_t stream);
int melbo_cuda_linear_add_f32(struct melbo_cuda_blas *blas, const float *x, const float *w,
                              const float *res, float *y, int n, int in, int out,
                              cudaStream_t stream);
/* dx (n, in) = dy (n, out) W (out, in) + beta * dx, all fp32. */
int melbo_cuda_linear_dx_f32(struct melbo_cuda_blas *blas, const float *dy, const float *w,
                             float *dx, int n, int in, int out, float beta, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
