/* rank/model/dtype.c - checkpoint element types (rank/model/dtype.h). */
#include "rank/model/dtype.h"

#include <string.h>

#include "common/bf16.h" // defines: melbo_bf16_to_f32

static const struct {
    const char *name;
    size_t size;
} dtype_table[MELBO_DTYPE_COUNT] = {
    [MELBO_DTYPE_F32] = {"F32", 4}, [MELBO_DTYPE_F16] = {"F16", 2}, [MELBO_DTYPE_BF16] = {"BF16", 2},
    [MELBO_DTYPE_I32] = {"I32", 4}, [MELBO_DTYPE_I64] = {"I64", 8}, [MELBO_DTYPE_U8] = {"U8", 1},
    [MELBO_DTYPE_I8] = {"I8", 1},   [MELBO_DTYPE_F64] = {"F64", 8},
};

size_t melbo_dtype_size(enum melbo_dtype t) { return dtype_table[t].size; }
const char *melbo_dtype_name(enum melbo_dtype t) { return dtype_table[t].name; }

int melbo_dtype_parse(const char *s) {
    for (int i = 0; i < MELBO_DTYPE_COUNT; i++)
        if (strcmp(s, dtype_table[i].name) == 0)
            return i;
    return -1;
}

int melbo_dtype_is_weight(enum melbo_dtype t) {
    return t == MELBO_DTYPE_F32 || t == MELBO_DTYPE_F16 || t == MELBO_DTYPE_BF16;
}

float melbo_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            exp = 127 - 15 + 1;
            while ((man & 0x400) == 0) {
                man <<= 1;
                exp--;
            }
            man &= 0x3ff;
            bits = sign | (exp << 23) | (man << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    union { uint32_t u; float f; } v;
    v.u = bits;
    return v.f;
}

int melbo_convert_to_f32(float *dst, const void *src, enum melbo_dtype src_type, size_t n) {
    const unsigned char *p = src;
    switch (src_type) {
    case MELBO_DTYPE_F32:
        memcpy(dst, src, n * sizeof(float));
        return 0;
    case MELBO_DTYPE_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = melbo_bf16_to_f32(h);
        }
        return 0;
    case MELBO_DTYPE_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = melbo_f16_to_f32(h);
        }
        return 0;
    default:
        return -1;
    }
}
