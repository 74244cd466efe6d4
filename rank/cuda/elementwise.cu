/*
 * rank/cuda/elementwise.cu - the small element-wise kernels that glue a block together on the
 * GPU (rank/cuda/kernels.h): residual adds, biases, dtype conversion and the deterministic
 * random fill of benchmark weights.
 *
 * Twins: melbo_cpu_add_bias and the residual add in melbo_cpu_row_parallel (rank/cpu/ops.c,
 * span.c); the random fill has no twin (its contract is "deterministic in seed and index").
 */
#include "rank/cuda/common.cuh"

#define EW_THREADS 256
/* Grid-stride loops cap the grid here so huge tensors need no 64-bit grid arithmetic. */
#define EW_MAX_BLOCKS 65535

static unsigned ew_blocks(size_t n) {
    size_t b = CEIL_DIV(n, (size_t)EW_THREADS);
    return (unsigned)(b < EW_MAX_BLOCKS ? (b ? b : 1) : EW_MAX_BLOCKS);
}

// ------------------------------------------------------------------------------------------------
// CUDA kernels

/* out[i] = res[i] + tmp[i] (+ bias[i % d]), summed in fp32 then stored. out may alias res. */
template <typename T>
__global__ void residual_add_kernel(T *out, const T *res, const float *tmp, const float *bias,
                                    size_t n, int d) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float v = load_f(res[i]) + tmp[i];
        if (bias)
            v += bias[i % d];
        store_f(&out[i], v);
    }
}

/* Grid (n tokens, CEIL_DIV(cols, EW_THREADS)): x[t * ld + j] += bias[j] for j < cols. */
template <typename T> __global__ void add_bias_kernel(T *x, int ld, const float *bias, int cols) {
    int j = blockIdx.y * blockDim.x + threadIdx.x;
    if (j >= cols)
        return;
    T *p = x + (size_t)blockIdx.x * ld + j;
    store_f(p, load_f(*p) + bias[j]);
}

template <typename D, typename S> __global__ void convert_kernel(D *dst, const S *src, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        store_f(&dst[i], load_f(src[i]));
}

/* SplitMix64 of (seed, index): a counter-based generator, so the fill is order independent. */
__device__ __forceinline__ uint64_t mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* x[i] = mean + std * N(0, 1) from a Box-Muller pair of the i-th counter draw. */
template <typename T>
__global__ void fill_normal_kernel(T *x, size_t n, float mean, float std, uint64_t seed) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        uint64_t r = mix64(seed ^ mix64(i));
        float u1 = ((float)(r >> 40) + 1.0f) * (1.0f / 16777217.0f); /* (0, 1] */
        float u2 = (float)((r >> 16) & 0xffffff) * (1.0f / 16777216.0f);
        float g = sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2);
        store_f(&x[i], mean + std * g);
    }
}

// ------------------------------------------------------------------------------------------------
// kernel launchers

extern "C" {

int melbo_cuda_residual_add_f32(float *out, const float *res, const float *tmp, const float *bias,
                                int n, int d, cudaStream_t stream) {
    if (n < 0 || d <= 0)
        return MELBO_EINVAL;
    size_t total = (size_t)n * d;
    if (total == 0)
        return 0;
    residual_add_kernel<<<ew_blocks(total), EW_THREADS, 0, stream>>>(out, res, tmp, bias, total, d);
    MELBO_CUDA_LAUNCH_CHECK();
}

int melbo_cuda_residual_add_bf16(melbo_bf16 *out, const melbo_bf16 *res, const float *tmp,
                                 const float *bias, int n, int d, cudaStream_t stream) {
    if (n < 0 || d <= 0)
        return MELBO_EINVAL;
    size_t total = (size_t)n * d;
    if (total == 0)
        return 0;
    residual_add_kernel<<<ew_blocks(total), EW_THREADS, 0, stream>>>(as_bf(out), as_bf(res), tmp,
                                                                      bias, total, d);
    MELBO_CUDA_LAUNCH_CHECK();
}

int melbo_cuda_add_bias_f32(float *x, int ld, const float *bias, int n, int cols,
                            cudaStream_t stream) {
    if (n < 0 || cols <= 0 || ld < cols)
        return MELBO_EINVAL;
    if (n == 0)
        return 0;
    dim3 grid(n, CEIL_DIV(cols, EW_THREADS));
    add_bias_kernel<<<grid, EW_THREADS, 0, stream>>>(x, ld, bias, cols);
    MELBO_CUDA_LAUNCH_CHECK();
}

int melbo_cuda_add_bias_bf16(melbo_bf16 *x, int ld, const float *bias, int n, int cols,
                             cudaStream_t stream) {
    if (n < 0 || cols <= 0 || ld < cols)
        return MELBO_EINVAL;
    if (n == 0)
        return 0;
    dim3 grid(n, CEIL_DIV(cols, EW_THREADS));
    add_bias_kernel<<<grid, EW_THREADS, 0, stream>>>(as_bf(x), ld, bias, cols);
    MELBO_CUDA_LAUNCH_CHECK();
}

int melbo_cuda_f32_to_bf16(melbo_bf16 *dst, const float *src, size_t n, cudaStream_t stream) {
    if (n == 0)
        return 0;
    convert_kernel<<<ew_blocks(n), EW_THREADS, 0, stream>>>(as_bf(dst), src, n);
    MELBO_CUDA_LAUNCH_CHECK();
}

int melbo_cuda_bf16_to_f32(float *dst, const melbo_bf16 *src, size_t n, cudaStream_t stream) {
    if (n == 0)
        return 0;
    convert_kernel<<<ew_blocks(n), EW_THREADS, 0, stream>>>(dst, as_bf(src), n);
    MELBO_CUDA_LAUNCH_CHECK();
}

int melbo_cuda_fill_normal_f32(float *x, size_t n, float mean, float std, uint64_t seed,
                               cudaStream_t stream) {
    if (n == 0)
        return 0;
    fill_normal_kernel<<<ew_blocks(n), EW_THREADS, 0, stream>>>(x, n, mean, std, seed);
    MELBO_CUDA_LAUNCH_CHECK();
}

int melbo_cuda_fill_normal_bf16(melbo_bf16 *x, size_t n, float mean, float std, uint64_t seed,
                                cudaStream_t stream) {
    if (n == 0)
        return 0;
    fill_normal_kernel<<<ew_blocks(n), EW_THREADS, 0, stream>>>(as_bf(x), n, mean, std, seed);
    MELBO_CUDA_LAUNCH_CHECK();
}

} // extern "C"
