/*
 * tests/gpu/gpu_test.h - what the CUDA kernel tests share: the fatal CUDA checks, the one
 * stream, seeded random inputs, bf16 rounding, and copies to and from the device.
 *
 * Header-only and internal to tests/gpu (one .cu file includes it once). Define GPU_TEST_SEED
 * before including it: each test draws its own reproducible inputs.
 */
#ifndef MELBO_TESTS_GPU_GPU_TEST_H
#define MELBO_TESTS_GPU_GPU_TEST_H

#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

#include "common/rng.h"
#include "rank/cuda/kernels.h"
#include "tests/test.h"

#ifndef GPU_TEST_SEED
#error "define GPU_TEST_SEED before including tests/gpu/gpu_test.h"
#endif

#define TOL_F32 1e-5
#define TOL_BF16 2e-2

#define CUDA_OK(call)                                                                              \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            TEST_FAIL_("%s: %s", #call, cudaGetErrorString(e_));                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* A launcher must accept its arguments and launch; the kernel's errors surface at the sync. */
#define LAUNCH_OK(call)                                                                            \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != 0) {                                                                            \
            TEST_FAIL_("%s: %s", #call, melbo_cuda_strerror(rc_));                                 \
            abort();                                                                               \
        }                                                                                          \
        CUDA_OK(cudaStreamSynchronize(stream));                                                    \
    } while (0)

static cudaStream_t stream;
static uint64_t rng_stream = 1;

/* n normal draws times scale (stream rng_stream++ of GPU_TEST_SEED); malloc'ed. */
static float *randn(size_t n, float scale) {
    float *x = (float *)malloc(sizeof(float) * (n ? n : 1));
    melbo_rng_normal_f32(GPU_TEST_SEED, rng_stream++, x, n);
    for (size_t i = 0; i < n; i++)
        x[i] *= scale;
    return x;
}

/* x rounded to bf16 in place (what a bf16 kernel is fed). */
static void round_bf16(float *x, size_t n) {
    melbo_bf16 *b = (melbo_bf16 *)malloc(sizeof(melbo_bf16) * (n ? n : 1));
    melbo_bf16_from_f32_host(b, x, n);
    melbo_bf16_to_f32_host(x, b, n);
    free(b);
}

/* A device copy of x(n), stored as bf16 when bf (x should already be bf16-exact) else fp32. */
static void *up(const float *x, size_t n, int bf) {
    void *d = NULL;
    size_t bytes = n * (bf ? sizeof(melbo_bf16) : sizeof(float));
    CUDA_OK(cudaMalloc(&d, bytes ? bytes : 1));
    if (bf) {
        melbo_bf16 *b = (melbo_bf16 *)malloc(sizeof(melbo_bf16) * (n ? n : 1));
        melbo_bf16_from_f32_host(b, x, n);
        CUDA_OK(cudaMemcpy(d, b, bytes, cudaMemcpyHostToDevice));
        free(b);
    } else {
        CUDA_OK(cudaMemcpy(d, x, bytes, cudaMemcpyHostToDevice));
    }
    return d;
}

static int *up_int(const int *x, size_t n) {
    int *d = NULL;
    CUDA_OK(cudaMalloc(&d, sizeof(int) * (n ? n : 1)));
    CUDA_OK(cudaMemcpy(d, x, sizeof(int) * n, cudaMemcpyHostToDevice));
    return d;
}

/* A new host fp32 array holding the device tensor d(n) (bf16 or fp32). */
static float *down(const void *d, size_t n, int bf) {
    float *x = (float *)malloc(sizeof(float) * (n ? n : 1));
    if (bf) {
        melbo_bf16 *b = (melbo_bf16 *)malloc(sizeof(melbo_bf16) * (n ? n : 1));
        CUDA_OK(cudaMemcpy(b, d, sizeof(melbo_bf16) * n, cudaMemcpyDeviceToHost));
        melbo_bf16_to_f32_host(x, b, n);
        free(b);
    } else {
        CUDA_OK(cudaMemcpy(x, d, sizeof(float) * n, cudaMemcpyDeviceToHost));
    }
    return x;
}

#endif
