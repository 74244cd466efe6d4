/*
 * rank/model/quant.h - ggml tensor types and their dequantisation to fp32 / bf16.
 *
 * The numbering is ggml's (enum ggml_type), as stored in GGUF tensor infos. melbo dequantises
 * F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K and Q6_K; every other type has a name (for messages
 * that refuse it) and, where ggml defines one, its block geometry (so a file that uses it can
 * still be opened, inspected and fingerprinted).
 *
 * The CPU references below follow ggml-quants.c (dequantize_row_*) operation for operation in
 * fp32 without contraction, so they give exactly what PyPI gguf's gguf.quants.dequantize gives.
 * Block layouts (bytes, little-endian; "f16" is IEEE half):
 *   Q8_0  32 values: f16 d, i8 q[32]                    x = d * q
 *   Q4_0  32 values: f16 d, u8 qs[16]                   x[j] = d * ((qs[j] & 15) - 8),
 *                                                       x[j+16] = d * ((qs[j] >> 4) - 8)
 *   Q4_1  32 values: f16 d, f16 m, u8 qs[16]            x = d * nibble + m (same nibble order)
 *   Q4_K 256 values: f16 d, f16 dmin, u8 scales[12] (eight 6-bit scale/min pairs),
 *                    u8 qs[128]; 8 sub-blocks of 32      x = d*sc * nibble - dmin*mn
 *   Q6_K 256 values: u8 ql[128], u8 qh[64], i8 scales[16], f16 d
 *                                                       x = d * sc * (6-bit q - 32)
 */
#ifndef MELBO_RANK_MODEL_QUANT_H
#define MELBO_RANK_MODEL_QUANT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum melbo_ggml_type {
    MELBO_GGML_F32 = 0,
    MELBO_GGML_F16 = 1,
    MELBO_GGML_Q4_0 = 2,
    MELBO_GGML_Q4_1 = 3,
    MELBO_GGML_Q5_0 = 6,
    MELBO_GGML_Q5_1 = 7,
    MELBO_GGML_Q8_0 = 8,
    MELBO_GGML_Q8_1 = 9,
    MELBO_GGML_Q2_K = 10,
    MELBO_GGML_Q3_K = 11,
    MELBO_GGML_Q4_K = 12,
    MELBO_GGML_Q5_K = 13,
    MELBO_GGML_Q6_K = 14,
    MELBO_GGML_Q8_K = 15,
    MELBO_GGML_I8 = 24,
    MELBO_GGML_I16 = 25,
    MELBO_GGML_I32 = 26,
    MELBO_GGML_I64 = 27,
    MELBO_GGML_F64 = 28,
    MELBO_GGML_BF16 = 30,
    MELBO_GGML_TYPE_LIMIT = 64   // type ids at or above this are rejected as unknown
};

/* "Q4_K", "BF16", ...; "type N" style names are not returned: unknown ids give "unknown". */
const char *melbo_ggml_type_name(int type);

/*
 * Values per block and bytes per block of type; 0 and 0 when melbo does not know the layout
 * (IQ* and other exotic types).
 */
void melbo_ggml_block(int type, int64_t *block_values, size_t *block_bytes);

/* 1 for the types melbo dequantises. */
int melbo_ggml_can_dequant(int type);

/*
 * Dequantises n values (a multiple of the block size) of type at src into dst as fp32. src
 * needs no alignment. Returns 0, or -1 for a type melbo does not dequantise or an n that is
 * not a whole number of blocks.
 */
int melbo_dequant_f32(int type, const void *src, float *dst, int64_t n);

/* The same, rounded to bf16 (round to nearest even) for the GPU path: fp32 first, then rounded. */
int melbo_dequant_bf16(int type, const void *src, uint16_t *dst, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
