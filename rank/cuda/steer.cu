/*
 * rank/cuda/steer.cu - the MELBO training glue around the decoder span (rank/cuda/kernels.h):
 * adding each sequence's steering vector to the residual stream, summing the residual gradient
 * back into one gradient per vector, and the objective of every (vector, prompt) pair with its
 * gradient.
 *
 * Twins: the loops of melbo_cpu_wave_step (rank/cpu/wave.c) and melbo_objective
 * (rank/method/objective.c). Sums are formed in fp64 in a fixed order, as the CPU does, so the
 * results do not depend on the grid and agree with the CPU to fp32 rounding.
 */
#include <math.h>

#include "rank/cuda/common.cuh"

#define STEER_THREADS 256
#define REDUCE_THREADS 128
#define OBJ_THREADS 256

// ------------------------------------------------------------------------------------------------
// CUDA kernels

/* Grid (n_seq, CEIL_DIV(d, STEER_THREADS)): one thread per column, walking the sequence. */
template <typename T>
__global__ void add_steer_kernel(T *x, const float *theta, const int *seq_vec,
                                 const int *seq_start, int d) {
    int s = blockIdx.x, j = blockIdx.y * blockDim.x + threadIdx.x;
    if (j >= d)
        return;
    float th = theta[(size_t)seq_vec[s] * d + j];
    for (int t = seq_start[s]; t < seq_start[s + 1]; t++)
        store_f(&x[(size_t)t * d + j], load_f(x[(size_t)t * d + j]) + th);
}

/* Grid (B, CEIL_DIV(d, REDUCE_THREADS)): one thread per (vector, column), sequences in order. */
template <typename T>
__global__ void reduce_positions_kernel(const T *dx, const int *seq_vec, const int *seq_start,
                                        int n_seq, int d, float *grad) {
    int b = blockIdx.x, j = blockIdx.y * blockDim.x + threadIdx.x;
    if (j >= d)
        return;
    double acc = 0.0;
    for (int s = 0; s < n_seq; s++) {
        if (seq_vec[s] != b)
            continue;
        for (int t = seq_start[s]; t < seq_start[s + 1]; t++)
            acc += (double)load_f(dx[(size_t)t * d + j]);
    }
    grad[(size_t)b * d + j] = (float)acc;
}

/* x^e for x >= 0 with 0^e = 0 for e > 0 (the subgradient torch uses), as objective.c. */
__device__ double powz(double x, double e) {
    if (x == 0.0)
        return e > 0 ? 0.0 : (e == 0 ? 1.0 : 0.0);
    return pow(x, e);
}

/* Squared distance of row r of z and y over d columns, summed over the block. */
template <typename T>
__device__ double row_dist2(const T *zr, const float *yr, int d, double *red) {
    double s2 = 0.0;
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
        double dd = (double)load_f(zr[j]) - (double)yr[j];
        s2 += dd * dd;
    }
    return block_sum(s2, red);
}

/* Column j's squared distance summed over the targets (dim axis; one thread). */
template <typename T>
__device__ double col_dist2(const T *z0, const float *y0, const int *ix, int ni, int d, int j) {
    double n2 = 0.0;
    for (int m = 0; m < ni; m++) {
        double dd = (double)load_f(z0[(size_t)ix[m] * d + j]) - (double)y0[(size_t)ix[m] * d + j];
        n2 += dd * dd;
    }
    return n2;
}

/*
 * One block per pair: S (every thread holds the same value), F = S^(1/q), then the gradient of
 * -F: -(p/q) S^(1/q-1) norm^(p-2) (z - y) on the target rows, zero elsewhere.
 */
template <typename T>
__global__ void objective_kernel(const T *z, const float *y, const int *z_start, const int *y_start,
                                 const int *idx_start, const int *idx, int d, double p, double q,
                                 int axis, float *F, T *dz) {
    __shared__ double red[WARP_SIZE];
    int k = blockIdx.x;
    int T_len = z_start[k + 1] - z_start[k], ni = idx_start[k + 1] - idx_start[k];
    const T *z0 = z + (size_t)z_start[k] * d;
    const float *y0 = y + (size_t)y_start[k] * d;
    const int *ix = idx + idx_start[k];
    if (dz) {
        T *g0 = dz + (size_t)z_start[k] * d;
        for (size_t e = threadIdx.x; e < (size_t)T_len * d; e += blockDim.x)
            store_f(&g0[e], 0.0f);
    }
    double S = 0.0;
    if (axis == 0) {
        for (int m = 0; m < ni; m++) {
            size_t off = (size_t)ix[m] * d;
            S += powz(sqrt(row_dist2(z0 + off, y0 + off, d, red)), p);
        }
    } else {
        double part = 0.0;
        for (int j = threadIdx.x; j < d; j += blockDim.x)
            part += powz(sqrt(col_dist2(z0, y0, ix, ni, d, j)), p);
        S = block_sum(part, red);
    }
    if (threadIdx.x == 0)
        F[k] = (float)powz(S, 1.0 / q);
    if (dz == NULL || S == 0.0)
        return; /* uniform: S is the same in every thread */
    __syncthreads(); /* the zeros above land before the target rows are written */
    T *g0 = dz + (size_t)z_start[k] * d;
    double coef = -(p / q) * pow(S, 1.0 / q - 1.0);
    if (axis == 0) {
        for (int m = 0; m < ni; m++) {
            size_t off = (size_t)ix[m] * d;
            double c = coef * powz(sqrt(row_dist2(z0 + off, y0 + off, d, red)), p - 2.0);
            for (int j = threadIdx.x; j < d; j += blockDim.x)
                store_f(&g0[off + j], (float)(c * ((double)load_f(z0[off + j]) - (double)y0[off + j])));
        }
    } else {
        for (int j = threadIdx.x; j < d; j += blockDim.x) {
            double c = coef * powz(sqrt(col_dist2(z0, y0, ix, ni, d, j)), p - 2.0);
            for (int m = 0; m < ni; m++) {
                size_t off = (size_t)ix[m] * d + j;
                store_f(&g0[off], (float)(c * ((double)load_f(z0[off]) - (double)y0[off])));
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// kernel launchers

template <typename T>
static int add_steer_launch(T *x, const float *theta, const int *seq_vec, const int *seq_start,
                            int n_seq, int d, cudaStream_t stream) {
    if (n_seq < 0 || d <= 0)
        return MELBO_EINVAL;
    if (n_seq == 0)
        return 0;
    dim3 grid(n_seq, CEIL_DIV(d, STEER_THREADS));
    add_steer_kernel<T><<<grid, STEER_THREADS, 0, stream>>>(x, theta, seq_vec, seq_start, d);
    MELBO_CUDA_LAUNCH_CHECK();
}

template <typename T>
static int reduce_positions_launch(const T *dx, const int *seq_vec, const int *seq_start, int n_seq,
                                   int d, float *grad, int B, cudaStream_t stream) {
    if (n_seq < 0 || d <= 0 || B < 0)
        return MELBO_EINVAL;
    if (B == 0)
        return 0;
    dim3 grid(B, CEIL_DIV(d, REDUCE_THREADS));
    reduce_positions_kernel<T><<<grid, REDUCE_THREADS, 0, stream>>>(dx, seq_vec, seq_start, n_seq,
                                                                    d, grad);
    MELBO_CUDA_LAUNCH_CHECK();
}

template <typename T>
static int objective_launch(const T *z, const float *y, const int *z_start, const int *y_start,
                            const int *idx_start, const int *idx, int n_pair, int d, double p,
                            double q, int axis, float *F, T *dz, cudaStream_t stream) {
    if (n_pair < 0 || d <= 0 || (axis != 0 && axis != 1) || !(p > 0) || !(q > 0))
        return MELBO_EINVAL;
    if (n_pair == 0)
        return 0;
    objective_kernel<T><<<n_pair, OBJ_THREADS, 0, stream>>>(z, y, z_start, y_start, idx_start, idx,
                                                            d, p, q, axis, F, dz);
    MELBO_CUDA_LAUNCH_CHECK();
}

extern "C" {

int melbo_cuda_add_steer_f32(float *x, const float *theta, const int *seq_vec,
                             const int *seq_start, int n_seq, int d, cudaStream_t stream) {
    return add_steer_launch(x, theta, seq_vec, seq_start, n_seq, d, stream);
}

int melbo_cuda_add_steer_bf16(melbo_bf16 *x, const float *theta, const int *seq_vec,
                              const int *seq_start, int n_seq, int d, cudaStream_t stream) {
    return add_steer_launch(as_bf(x), theta, seq_vec, seq_start, n_seq, d, stream);
}

int melbo_cuda_reduce_positions_f32(const float *dx, const int *seq_vec, const int *seq_start,
                                    int n_seq, int d, float *grad, int B, cudaStream_t stream) {
    return reduce_positions_launch(dx, seq_vec, seq_start, n_seq, d, grad, B, stream);
}

int melbo_cuda_reduce_positions_bf16(const melbo_bf16 *dx, const int *seq_vec,
                                     const int *seq_start, int n_seq, int d, float *grad, int B,
                                     cudaStream_t stream) {
    return reduce_positions_launch(as_bf(dx), seq_vec, seq_start, n_seq, d, grad, B, stream);
}

int melbo_cuda_objective_f32(const float *z, const float *y, const int *z_start,
                             const int *y_start, const int *idx_start, const int *idx, int n_pair,
                             int d, double p, double q, int axis, float *F, float *dz,
                             cudaStream_t stream) {
    return objective_launch(z, y, z_start, y_start, idx_start, idx, n_pair, d, p, q, axis, F, dz,
                            stream);
}

int melbo_cuda_objective_bf16(const melbo_bf16 *z, const float *y, const int *z_start,
                              const int *y_start, const int *idx_start, const int *idx,
                              int n_pair, int d, double p, double q, int axis, float *F,
                              melbo_bf16 *dz, cudaStream_t stream) {
    return objective_launch(as_bf(z), y, z_start, y_start, idx_start, idx, n_pair, d, p, q, axis,
                            F, dz ? as_bf(dz) : (__nv_bfloat16 *)NULL, stream);
}

} // extern "C"
