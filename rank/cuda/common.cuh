/*
 * rank/cuda/common.cuh - what every .cu file of rank/cuda shares: grid arithmetic, bf16 loads and
 * stores, block reductions and the launch-error check. Internal to rank/cuda (C++; templates
 * are allowed here and never reach a header that C includes).
 */
#ifndef MELBO_RANK_CUDA_COMMON_CUH
#define MELBO_RANK_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "common/err.h"
#include "rank/cuda/kernels.h"

#define CEIL_DIV(a, b) (((a) + (b) - 1) / (b))
#define WARP_SIZE 32

/* Ends every launcher: 0, or the launch error as a positive cudaError_t. */
#define MELBO_CUDA_LAUNCH_CHECK()                                                               \
    do {                                                                                        \
        cudaError_t e_ = cudaGetLastError();                                                    \
        return e_ == cudaSuccess ? 0 : (int)e_;                                                 \
    } while (0)

/* fp32 view of a stored element, and the store back (round to nearest even for bf16). */
__device__ __forceinline__ float load_f(float v) { return v; }
__device__ __forceinline__ float load_f(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ void store_f(float *p, float v) { *p = v; }
__device__ __forceinline__ void store_f(__nv_bfloat16 *p, float v) { *p = __float2bfloat16_rn(v); }

/* The device type behind the C header's bf16 bits. */
static inline const __nv_bfloat16 *as_bf(const melbo_bf16 *p) {
    return reinterpret_cast<const __nv_bfloat16 *>(p);
}
static inline __nv_bfloat16 *as_bf(melbo_bf16 *p) { return reinterpret_cast<__nv_bfloat16 *>(p); }

template <typename T> __device__ __forceinline__ T warp_sum(T v) {
    for (int o = WARP_SIZE / 2; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

template <typename T> __device__ __forceinline__ T warp_max(T v) {
    for (int o = WARP_SIZE / 2; o > 0; o >>= 1) {
        T w = __shfl_xor_sync(0xffffffffu, v, o);
        v = w > v ? w : v;
    }
    return v;
}

/*
 * Sum of v over the block, returned to every thread. scratch holds 32 values of T in shared
 * memory; blockDim.x is a multiple of 32. Ends with a barrier, so scratch may be reused at once.
 */
template <typename T> __device__ T block_sum(T v, T *scratch) {
    int lane = threadIdx.x % WARP_SIZE, warp = threadIdx.x / WARP_SIZE;
    int n_warps = blockDim.x / WARP_SIZE;
    v = warp_sum(v);
    if (lane == 0)
        scratch[warp] = v;
    __syncthreads();
    T r = lane < n_warps ? scratch[lane] : (T)0;
    r = warp_sum(r);
    __syncthreads();
    return r;
}

/* Maximum of v over the block, to every thread; as block_sum. */
template <typename T> __device__ T block_max(T v, T *scratch, T lowest) {
    int lane = threadIdx.x % WARP_SIZE, warp = threadIdx.x / WARP_SIZE;
    int n_warps = blockDim.x / WARP_SIZE;
    v = warp_max(v);
    if (lane == 0)
        scratch[warp] = v;
    __syncthreads();
    T r = lane < n_warps ? scratch[lane] : lowest;
    r = warp_max(r);
    __syncthreads();
    return r;
}

#endif
