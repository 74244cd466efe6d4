/*
 * rank/model/dtype.h - element types of checkpoint tensors and their conversion to fp32.
 */
#ifndef MELBO_RANK_MODEL_DTYPE_H
#define MELBO_RANK_MODEL_DTYPE_H

#include <stddef.h>
#include <stdint.h>

#include "common/bf16.h" // defines: melbo_bf16_to_f32, melbo_f32_to_bf16 (for this header's users)

#ifdef __cplusplus
extern "C" {
#endif

enum melbo_dtype {
    MELBO_DTYPE_F32 = 0,
    MELBO_DTYPE_F16 = 1,
    MELBO_DTYPE_BF16 = 2,
    MELBO_DTYPE_I32 = 3,
    MELBO_DTYPE_I64 = 4,
    MELBO_DTYPE_U8 = 5,
    MELBO_DTYPE_I8 = 6,
    MELBO_DTYPE_F64 = 7,
    MELBO_DTYPE_COUNT
};

/* Bytes per element. */
size_t melbo_dtype_size(enum melbo_dtype t);
/* The safetensors spelling: "F32", "BF16", ... */
const char *melbo_dtype_name(enum melbo_dtype t);
/* Parses a safetensors dtype string; returns -1 for a type melbo does not read. */
int melbo_dtype_parse(const char *s);
/* 1 for the floating types model weights may be stored in (F32, F16, BF16). */
int melbo_dtype_is_weight(enum melbo_dtype t);

/* The fp32 value of IEEE half bits h (exact; subnormals, infinities and NaN kept). */
float melbo_f16_to_f32(uint16_t h);

/*
 * Converts n elements of type src_type at src (any alignment) to fp32 at dst. Only weight types
 * (F32, F16, BF16) are accepted; returns 0, or -1 for any other type.
 */
int melbo_convert_to_f32(float *dst, const void *src, enum melbo_dtype src_type, size_t n);

#ifdef __cplusplus
}
#endif
#endif
