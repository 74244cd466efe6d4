/*
 * rank/cuda/ops.cu - RMSNorm, RoPE and SwiGLU, forward and input gradient (rank/cuda/kernels.h),
 * plus the error strings and host bf16 conversions every caller of the header uses.
 *
 * Twins: rank/cpu/ops.c. Each kernel is a template over the stored type (float or bf16) and
 * computes in fp32 in the CPU twin's order of operations; only reductions are reordered (tree
 * sums over a block instead of a sequential loop).
 */
#include <stdint.h>
#include <string.h>

#include "common/bf16.h" // defines: melbo_f32_to_bf16, melbo_bf16_to_f32 (the host conversions)
#include "rank/cuda/common.cuh"

extern "C" const char *melbo_cuda_blas_status_string(int status);

#define NORM_THREADS 256
#define ELEM_THREADS 256

// ------------------------------------------------------------------------------------------------
// CUDA kernels

/* One block per row: rstd from a block sum of squares, then y = w * (x * rstd). */
template <typename T>
__global__ void rmsnorm_kernel(const T *x, const T *w, T *y, float *rstd, int n, int d,
                               int stride, float eps) {
    __shared__ float scratch[WARP_SIZE];
    const T *xr = x + (size_t)blockIdx.x * stride;
    T *yr = y + (size_t)blockIdx.x * stride;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        float v = load_f(xr[i]);
        ss += v * v;
    }
    ss = block_sum(ss, scratch);
    float r = 1.0f / sqrtf(ss / (float)d + eps);
    if (rstd && threadIdx.x == 0)
        rstd[blockIdx.x] = r;
    for (int i = threadIdx.x; i < d; i += blockDim.x)
        store_f(&yr[i], load_f(w[i]) * (load_f(xr[i]) * r));
}

/* One block per row: dx = r w dy - r^3 (w.dy.x / d) x, added to dx when acc. */
template <typename T>
__global__ void rmsnorm_dx_kernel(const T *x, const T *w, const float *rstd, const T *dy, T *dx,
                                  int n, int d, int stride, int acc) {
    __shared__ float scratch[WARP_SIZE];
    size_t off = (size_t)blockIdx.x * stride;
    const T *xr = x + off, *dyr = dy + off;
    T *dxr = dx + off;
    float r = rstd[blockIdx.x], dot = 0.0f;
    for (int i = threadIdx.x; i < d; i += blockDim.x)
        dot += load_f(w[i]) * load_f(dyr[i]) * load_f(xr[i]);
    dot = block_sum(dot, scratch);
    float c = r * r * r * dot / (float)d;
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        float g = r * load_f(w[i]) * load_f(dyr[i]) - c * load_f(xr[i]);
        store_f(&dxr[i], acc ? load_f(dxr[i]) + g : g);
    }
}

/* Grid (n_tok, CEIL_DIV(n_heads * half, ELEM_THREADS)): one thread per (head, pair). */
template <typename T>
__global__ void rope_kernel(T *x, int ld, int col0, int n_heads, int head_dim, int half,
                            const float *inv_freq, const int *pos, float sign) {
    int t = blockIdx.x;
    int k = blockIdx.y * blockDim.x + threadIdx.x;
    if (k >= n_heads * half)
        return;
    int h = k / half, i = k % half;
    float f = (float)pos[t] * inv_freq[i]; /* fp32 product, as transformers */
    float c = cosf(f), s = sign * sinf(f);
    T *v = x + (size_t)t * ld + col0 + (size_t)h * head_dim;
    float a = load_f(v[i]), b = load_f(v[i + half]);
    store_f(&v[i], a * c - b * s);
    store_f(&v[i + half], b * c + a * s);
}

/* Grid (n tokens, CEIL_DIV(ff, ELEM_THREADS)): one thread per (token, column), no division. */
template <typename T> __global__ void swiglu_kernel(const T *gu, T *act, int n, int ff) {
    int i = blockIdx.y * blockDim.x + threadIdx.x;
    if (i >= ff)
        return;
    size_t t = blockIdx.x;
    float g = load_f(gu[t * 2 * ff + i]), u = load_f(gu[t * 2 * ff + ff + i]);
    store_f(&act[t * ff + i], g / (1.0f + expf(-g)) * u);
}

template <typename T>
__global__ void swiglu_dx_kernel(const T *gu, const T *dact, T *dgu, int n, int ff) {
    int i = blockIdx.y * blockDim.x + threadIdx.x;
    if (i >= ff)
        return;
    size_t t = blockIdx.x;
    float g = load_f(gu[t * 2 * ff + i]), u = load_f(gu[t * 2 * ff + ff + i]);
    float da = load_f(dact[t * ff + i]);
    float sg = 1.0f / (1.0f + expf(-g));
    store_f(&dgu[t * 2 * ff + ff + i], da * g * sg);
    store_f(&dgu[t * 2 * ff + i], da * u * sg * (1.0f + g * (1.0f - sg)));
}


/* ------------------------------------------------------------------------------------------------
 * bf16 rows read and written 8 values (16 bytes) at a time: the memory-bound kernels' fast path,
 * taken when every row and pointer is 16-byte aligned (vec8_ok). Same arithmetic per element as
 * the scalar kernels above; only the access width differs.
 */
__device__ __forceinline__ void load8(const __nv_bfloat16 *p, float f[8]) {
    uint4 u = *reinterpret_cast<const uint4 *>(p);
    const __nv_bfloat162 *h = reinterpret_cast<const __nv_bfloat162 *>(&u);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 v = __bfloat1622float2(h[i]);
        f[2 * i] = v.x;
        f[2 * i + 1] = v.y;
    }
}

__device__ __forceinline__ void store8(__nv_bfloat16 *p, const float f[8]) {
    uint4 u;
    __nv_bfloat162 *h = reinterpret_cast<__nv_bfloat162 *>(&u);
#pragma unroll
    for (int i = 0; i < 4; i++)
        h[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
    *reinterpret_cast<uint4 *>(p) = u;
}

static int vec8_ok(const void *a, const void *b, const void *c, const void *d, size_t w1,
                   size_t w2) {
    uintptr_t m = (uintptr_t)a | (uintptr_t)b | (uintptr_t)c | (uintptr_t)d;
    return (m % 16) == 0 && w1 % 8 == 0 && w2 % 8 == 0;
}

__global__ void rmsnorm_vec8_kernel(const __nv_bfloat16 *x, const __nv_bfloat16 *w,
                                    __nv_bfloat16 *y, float *rstd, int d, int stride, float eps) {
    __shared__ float scratch[WARP_SIZE];
    const __nv_bfloat16 *xr = x + (size_t)blockIdx.x * stride;
    __nv_bfloat16 *yr = y + (size_t)blockIdx.x * stride;
    float ss = 0.0f, f[8], g[8];
    for (int c = threadIdx.x * 8; c < d; c += blockDim.x * 8) {
        load8(xr + c, f);
#pragma unroll
        for (int i = 0; i < 8; i++)
            ss += f[i] * f[i];
    }
    ss = block_sum(ss, scratch);
    float r = 1.0f / sqrtf(ss / (float)d + eps);
    if (rstd && threadIdx.x == 0)
        rstd[blockIdx.x] = r;
    for (int c = threadIdx.x * 8; c < d; c += blockDim.x * 8) {
        load8(xr + c, f);
        load8(w + c, g);
#pragma unroll
        for (int i = 0; i < 8; i++)
            f[i] = g[i] * (f[i] * r);
        store8(yr + c, f);
    }
}

__global__ void rmsnorm_dx_vec8_kernel(const __nv_bfloat16 *x, const __nv_bfloat16 *w,
                                       const float *rstd, const __nv_bfloat16 *dy,
                                       __nv_bfloat16 *dx, int d, int stride, int acc) {
    __shared__ float scratch[WARP_SIZE];
    size_t off = (size_t)blockIdx.x * stride;
    const __nv_bfloat16 *xr = x + off, *dyr = dy + off;
    __nv_bfloat16 *dxr = dx + off;
    float r = rstd[blockIdx.x], dot = 0.0f, fx[8], fw[8], fd[8], fo[8];
    for (int c = threadIdx.x * 8; c < d; c += blockDim.x * 8) {
        load8(xr + c, fx);
        load8(w + c, fw);
        load8(dyr + c, fd);
#pragma unroll
        for (int i = 0; i < 8; i++)
            dot += fw[i] * fd[i] * fx[i];
    }
    dot = block_sum(dot, scratch);
    float cc = r * r * r * dot / (float)d;
    for (int c = threadIdx.x * 8; c < d; c += blockDim.x * 8) {
        load8(xr + c, fx);
        load8(w + c, fw);
        load8(dyr + c, fd);
        if (acc)
            load8(dxr + c, fo);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            float gi = r * fw[i] * fd[i] - cc * fx[i];
            fo[i] = acc ? fo[i] + gi : gi;
        }
        store8(dxr + c, fo);
    }
}

/* Grid (n, CEIL_DIV(ff / 8, ELEM_THREADS)). */
__global__ void swiglu_vec8_kernel(const __nv_bfloat16 *gu, __nv_bfloat16 *act, int ff) {
    int c = (blockIdx.y * blockDim.x + threadIdx.x) * 8;
    if (c >= ff)
        return;
    size_t t = blockIdx.x;
    float g[8], u[8];
    load8(gu + t * 2 * ff + c, g);
    load8(gu + t * 2 * ff + ff + c, u);
#pragma unroll
    for (int i = 0; i < 8; i++)
        g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
    store8(act + t * ff + c, g);
}

__global__ void swiglu_dx_vec8_kernel(const __nv_bfloat16 *gu, const __nv_bfloat16 *dact,
                                      __nv_bfloat16 *dgu, int ff) {
    int c = (blockIdx.y * blockDim.x + threadIdx.x) * 8;
    if (c >= ff)
        return;
    size_t t = blockIdx.x;
    float g[8], u[8], da[8], dg[8], du[8];
    load8(gu + t * 2 * ff + c, g);
    load8(gu + t * 2 * ff + ff + c, u);
    load8(dact + t * ff + c, da);
#pragma unroll
    for (int i = 0; i < 8; i++) {
        float sg = 1.0f / (1.0f + expf(-g[i]));
        du[i] = da[i] * g[i] * sg;
        dg[i] = da[i] * u[i] * sg * (1.0f + g[i] * (1.0f - sg));
    }
    store8(dgu + t * 2 * ff + ff + c, du);
    store8(dgu + t * 2 * ff + c, dg);
}

// ------------------------------------------------------------------------------------------------
// kernel launchers

template <typename T>
static int rmsnorm_launch(const T *x, const T *w, T *y, float *rstd, int n, int d, int stride,
                          float eps, cudaStream_t stream) {
    if (n < 0 || d <= 0 || stride < d)
        return MELBO_EINVAL;
    if (n == 0)
        return 0;
    rmsnorm_kernel<T><<<n, NORM_THREADS, 0, stream>>>(x, w, y, rstd, n, d, stride, eps);
    MELBO_CUDA_LAUNCH_CHECK();
}

template <typename T>
static int rmsnorm_dx_launch(const T *x, const T *w, const float *rstd, const T *dy, T *dx, int n,
                             int d, int stride, int acc, cudaStream_t stream) {
    if (n < 0 || d <= 0 || stride < d)
        return MELBO_EINVAL;
    if (n == 0)
        return 0;
    rmsnorm_dx_kernel<T><<<n, NORM_THREADS, 0, stream>>>(x, w, rstd, dy, dx, n, d, stride, acc);
    MELBO_CUDA_LAUNCH_CHECK();
}

template <typename T>
static int rope_launch(T *x, int ld, int col0, int n_heads, int head_dim, int rope_dim,
                       const float *inv_freq, const int *pos, int n_tok, int inverse,
                       cudaStream_t stream) {
    if (n_tok < 0 || n_heads <= 0 || rope_dim <= 0 || rope_dim % 2 || rope_dim > head_dim ||
        col0 < 0 || col0 + n_heads * head_dim > ld)
        return MELBO_EINVAL;
    if (n_tok == 0)
        return 0;
    int half = rope_dim / 2;
    dim3 grid(n_tok, CEIL_DIV(n_heads * half, ELEM_THREADS));
    rope_kernel<T><<<grid, ELEM_THREADS, 0, stream>>>(x, ld, col0, n_heads, head_dim, half,
                                                       inv_freq, pos, inverse ? -1.0f : 1.0f);
    MELBO_CUDA_LAUNCH_CHECK();
}

template <typename T>
static int swiglu_launch(const T *gu, T *act, int n, int ff, cudaStream_t stream) {
    if (n < 0 || ff <= 0)
        return MELBO_EINVAL;
    size_t total = (size_t)n * ff;
    if (total == 0)
        return 0;
    dim3 grid(n, CEIL_DIV(ff, ELEM_THREADS));
    swiglu_kernel<T><<<grid, ELEM_THREADS, 0, stream>>>(gu, act, n, ff);
    MELBO_CUDA_LAUNCH_CHECK();
}

template <typename T>
static int swiglu_dx_launch(const T *gu, const T *dact, T *dgu, int n, int ff,
                            cudaStream_t stream) {
    if (n < 0 || ff <= 0)
        return MELBO_EINVAL;
    size_t total = (size_t)n * ff;
    if (total == 0)
        return 0;
    dim3 grid(n, CEIL_DIV(ff, ELEM_THREADS));
    swiglu_dx_kernel<T><<<grid, ELEM_THREADS, 0, stream>>>(gu, dact, dgu, n, ff);
    MELBO_CUDA_LAUNCH_CHECK();
}

extern "C" {

int melbo_cuda_rmsnorm_f32(const float *x, const float *w, float *y, float *rstd, int n, int d,
                           int stride, float eps, cudaStream_t stream) {
    return rmsnorm_launch(x, w, y, rstd, n, d, stride, eps, stream);
}

int melbo_cuda_rmsnorm_bf16(const melbo_bf16 *x, const melbo_bf16 *w, melbo_bf16 *y, float *rstd,
                            int n, int d, int stride, float eps, cudaStream_t stream) {
    if (n > 0 && d > 0 && stride >= d && vec8_ok(x, w, y, NULL, (size_t)d, (size_t)stride)) {
        rmsnorm_vec8_kernel<<<n, NORM_THREADS, 0, stream>>>(as_bf(x), as_bf(w), as_bf(y), rstd, d,
                                                            stride, eps);
        MELBO_CUDA_LAUNCH_CHECK();
    }
    return rmsnorm_launch(as_bf(x), as_bf(w), as_bf(y), rstd, n, d, stride, eps, stream);
}

int melbo_cuda_rmsnorm_dx_f32(const float *x, const float *w, const float *rstd, const float *dy,
                              float *dx, int n, int d, int stride, int acc, cudaStream_t stream) {
    return rmsnorm_dx_launch(x, w, rstd, dy, dx, n, d, stride, acc, stream);
}

int melbo_cuda_rmsnorm_dx_bf16(const melbo_bf16 *x, const melbo_bf16 *w, const float *rstd,
                               const melbo_bf16 *dy, melbo_bf16 *dx, int n, int d, int stride,
                               int acc, cudaStream_t stream) {
    if (n > 0 && d > 0 && stride >= d && vec8_ok(x, w, dy, dx, (size_t)d, (size_t)stride)) {
        rmsnorm_dx_vec8_kernel<<<n, NORM_THREADS, 0, stream>>>(as_bf(x), as_bf(w), rstd, as_bf(dy),
                                                               as_bf(dx), d, stride, acc);
        MELBO_CUDA_LAUNCH_CHECK();
    }
    return rmsnorm_dx_launch(as_bf(x), as_bf(w), rstd, as_bf(dy), as_bf(dx), n, d, stride, acc,
                             stream);
}

int melbo_cuda_rope_f32(float *x, int ld, int col0, int n_heads, int head_dim, int rope_dim,
                        const float *inv_freq, const int *pos, int n_tok, int inverse,
                        cudaStream_t stream) {
    return rope_launch(x, ld, col0, n_heads, head_dim, rope_dim, inv_freq, pos, n_tok, inverse,
                       stream);
}

int melbo_cuda_rope_bf16(melbo_bf16 *x, int ld, int col0, int n_heads, int head_dim, int rope_dim,
                         const float *inv_freq, const int *pos, int n_tok, int inverse,
                         cudaStream_t stream) {
    return rope_launch(as_bf(x), ld, col0, n_heads, head_dim, rope_dim, inv_freq, pos, n_tok,
                       inverse, stream);
}

int melbo_cuda_swiglu_f32(const float *gu, float *act, int n, int ff, cudaStream_t stream) {
    return swiglu_launch(gu, act, n, ff, stream);
}

int melbo_cuda_swiglu_bf16(const melbo_bf16 *gu, melbo_bf16 *act, int n, int ff,
                           cudaStream_t stream) {
    if (n > 0 && ff > 0 && vec8_ok(gu, act, NULL, NULL, (size_t)ff, 8)) {
        dim3 grid(n, CEIL_DIV(ff / 8, ELEM_THREADS));
        swiglu_vec8_kernel<<<grid, ELEM_THREADS, 0, stream>>>(as_bf(gu), as_bf(act), ff);
        MELBO_CUDA_LAUNCH_CHECK();
    }
    return swiglu_launch(as_bf(gu), as_bf(act), n, ff, stream);
}

int melbo_cuda_swiglu_dx_f32(const float *gu, const float *dact, float *dgu, int n, int ff,
                             cudaStream_t stream) {
    return swiglu_dx_launch(gu, dact, dgu, n, ff, stream);
}

int melbo_cuda_swiglu_dx_bf16(const melbo_bf16 *gu, const melbo_bf16 *dact, melbo_bf16 *dgu, int n,
                              int ff, cudaStream_t stream) {
    if (n > 0 && ff > 0 && vec8_ok(gu, dact, dgu, NULL, (size_t)ff, 8)) {
        dim3 grid(n, CEIL_DIV(ff / 8, ELEM_THREADS));
        swiglu_dx_vec8_kernel<<<grid, ELEM_THREADS, 0, stream>>>(as_bf(gu), as_bf(dact),
                                                                 as_bf(dgu), ff);
        MELBO_CUDA_LAUNCH_CHECK();
    }
    return swiglu_dx_launch(as_bf(gu), as_bf(dact), as_bf(dgu), n, ff, stream);
}

const char *melbo_cuda_strerror(int rc) {
    if (rc == 0)
        return "success";
    if (rc < 0)
        return melbo_err_name(rc);
    if (rc >= MELBO_CUDA_BLAS_ERROR_BASE)
        return melbo_cuda_blas_status_string(rc - MELBO_CUDA_BLAS_ERROR_BASE);
    return cudaGetErrorString((cudaError_t)rc);
}

void melbo_bf16_from_f32_host(melbo_bf16 *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++)
        dst[i] = melbo_f32_to_bf16(src[i]);
}

void melbo_bf16_to_f32_host(float *dst, const melbo_bf16 *src, size_t n) {
    for (size_t i = 0; i < n; i++)
        dst[i] = melbo_bf16_to_f32(src[i]);
}

} // extern "C"
