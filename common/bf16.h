/*
 * common/bf16.h - fp32 <-> bf16 conversions on the host, shared by every part that stores or
 * reduces bf16: checkpoint loading (rank/model/dtype.h), the MPI bf16 sum (nccl/comm_mpi.c) and
 * the host staging of the CUDA backend (rank/cuda/ops.cu).
 *
 * A bf16 value is the upper 16 bits of an fp32 value, kept in a uint16_t. Widening is exact;
 * narrowing rounds to nearest, ties to even, and keeps a NaN a (quiet) NaN with its sign, as
 * torch's .to(torch.bfloat16) and CUDA's __float2bfloat16_rn do. Header-only and valid C11 and
 * C++ (the bits move through memcpy), so C and .cu host code share the exact arithmetic.
 */
#ifndef MELBO_COMMON_BF16_H
#define MELBO_COMMON_BF16_H

#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The fp32 value of the bf16 bits h (exact). */
static inline float melbo_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* The bf16 bits nearest to f: round-to-nearest-even, NaN kept NaN (quiet bit set). */
static inline uint16_t melbo_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40);
    uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)((u + rounding) >> 16);
}

#ifdef __cplusplus
}
#endif
#endif
