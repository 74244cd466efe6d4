/*
 * rank/model/quant.c - ggml block formats dequantised to fp32 / bf16 (rank/model/quant.h).
 *
 * One plain C reference per format, written like ggml-quants.c's dequantize_row_* so the fp32
 * results are bit-identical to ggml's and PyPI gguf's. Every multi-byte field is read with
 * memcpy-free byte loads, so blocks need no alignment (GGUF only aligns tensor starts).
 */
#include "rank/model/quant.h"

#include <string.h>

#include "rank/model/dtype.h"

static const struct {
    const char *name;
    int64_t values;
    size_t bytes;
} types[MELBO_GGML_TYPE_LIMIT] = {
    [0] = {"F32", 1, 4},         [1] = {"F16", 1, 2},         [2] = {"Q4_0", 32, 18},
    [3] = {"Q4_1", 32, 20},      [6] = {"Q5_0", 32, 22},      [7] = {"Q5_1", 32, 24},
    [8] = {"Q8_0", 32, 34},      [9] = {"Q8_1", 32, 36},      [10] = {"Q2_K", 256, 84},
    [11] = {"Q3_K", 256, 110},   [12] = {"Q4_K", 256, 144},   [13] = {"Q5_K", 256, 176},
    [14] = {"Q6_K", 256, 210},   [15] = {"Q8_K", 256, 292},   [16] = {"IQ2_XXS", 256, 66},
    [17] = {"IQ2_XS", 256, 74},  [18] = {"IQ3_XXS", 256, 98}, [19] = {"IQ1_S", 256, 50},
    [20] = {"IQ4_NL", 32, 18},   [21] = {"IQ3_S", 256, 110},  [22] = {"IQ2_S", 256, 82},
    [23] = {"IQ4_XS", 256, 136}, [24] = {"I8", 1, 1},         [25] = {"I16", 1, 2},
    [26] = {"I32", 1, 4},        [27] = {"I64", 1, 8},        [28] = {"F64", 1, 8},
    [29] = {"IQ1_M", 256, 56},   [30] = {"BF16", 1, 2},       [34] = {"TQ1_0", 256, 54},
    [35] = {"TQ2_0", 256, 66},   [39] = {"MXFP4", 32, 17},
};

const char *melbo_ggml_type_name(int type) {
    if (type < 0 || type >= MELBO_GGML_TYPE_LIMIT || types[type].name == NULL)
        return "unknown";
    return types[type].name;
}

void melbo_ggml_block(int type, int64_t *block_values, size_t *block_bytes) {
    int ok = type >= 0 && type < MELBO_GGML_TYPE_LIMIT;
    *block_values = ok ? types[type].values : 0;
    *block_bytes = ok ? types[type].bytes : 0;
}

int melbo_ggml_can_dequant(int type) {
    switch (type) {
    case MELBO_GGML_F32:
    case MELBO_GGML_F16:
    case MELBO_GGML_BF16:
    case MELBO_GGML_Q8_0:
    case MELBO_GGML_Q4_0:
    case MELBO_GGML_Q4_1:
    case MELBO_GGML_Q4_K:
    case MELBO_GGML_Q6_K:
        return 1;
    default:
        return 0;
    }
}

static inline float f16_at(const uint8_t *p) {
    return melbo_f16_to_f32((uint16_t)(p[0] | (p[1] << 8)));
}

/* ---------------------------------------------------------------------------------------------
 * One block each: src points at the block, y receives its values.
 */

static void block_q8_0(const uint8_t *b, float *y) {
    const float d = f16_at(b);
    for (int j = 0; j < 32; j++)
        y[j] = (float)(int8_t)b[2 + j] * d;
}

static void block_q4_0(const uint8_t *b, float *y) {
    const float d = f16_at(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 16; j++) {
        y[j] = (float)((qs[j] & 0x0F) - 8) * d;
        y[j + 16] = (float)((qs[j] >> 4) - 8) * d;
    }
}

static void block_q4_1(const uint8_t *b, float *y) {
    const float d = f16_at(b), m = f16_at(b + 2);
    const uint8_t *qs = b + 4;
    for (int j = 0; j < 16; j++) {
        float x0 = (float)(qs[j] & 0x0F) * d, x1 = (float)(qs[j] >> 4) * d;
        y[j] = x0 + m;
        y[j + 16] = x1 + m;
    }
}

/* ggml's get_scale_min_k4: the j-th 6-bit scale and min of a Q4_K block's 12 scale bytes. */
static void scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *mn) {
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *mn = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

static void block_q4_k(const uint8_t *b, float *y) {
    const float d = f16_at(b), dmin = f16_at(b + 2);
    const uint8_t *scales = b + 4, *q = b + 16;
    for (int j = 0, is = 0; j < 256; j += 64, is += 2, q += 32) {
        uint8_t sc, mn;
        scale_min_k4(is, scales, &sc, &mn);
        const float d1 = d * (float)sc, m1 = dmin * (float)mn;
        scale_min_k4(is + 1, scales, &sc, &mn);
        const float d2 = d * (float)sc, m2 = dmin * (float)mn;
        for (int l = 0; l < 32; l++) {
            float x = d1 * (float)(q[l] & 0xF);
            *y++ = x - m1;
        }
        for (int l = 0; l < 32; l++) {
            float x = d2 * (float)(q[l] >> 4);
            *y++ = x - m2;
        }
    }
}

static void block_q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    const float d = f16_at(b + 208);
    for (int n = 0; n < 256; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = (int8_t)((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            int q2 = (int8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            int q3 = (int8_t)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            int q4 = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            float s1 = d * (float)sc[is], s2 = d * (float)sc[is + 2];
            float s3 = d * (float)sc[is + 4], s4 = d * (float)sc[is + 6];
            y[l] = s1 * (float)q1;
            y[l + 32] = s2 * (float)q2;
            y[l + 64] = s3 * (float)q3;
            y[l + 96] = s4 * (float)q4;
        }
    }
}

int melbo_dequant_f32(int type, const void *src, float *dst, int64_t n) {
    const uint8_t *s = src;
    if (!melbo_ggml_can_dequant(type) || n < 0 || n % types[type].values != 0)
        return -1;
    void (*block)(const uint8_t *, float *) = NULL;
    switch (type) {
    case MELBO_GGML_F32:
        memcpy(dst, src, (size_t)n * sizeof(float));
        return 0;
    case MELBO_GGML_F16:
        for (int64_t i = 0; i < n; i++)
            dst[i] = f16_at(s + 2 * i);
        return 0;
    case MELBO_GGML_BF16:
        for (int64_t i = 0; i < n; i++)
            dst[i] = melbo_bf16_to_f32((uint16_t)(s[2 * i] | (s[2 * i + 1] << 8)));
        return 0;
    case MELBO_GGML_Q8_0: block = block_q8_0; break;
    case MELBO_GGML_Q4_0: block = block_q4_0; break;
    case MELBO_GGML_Q4_1: block = block_q4_1; break;
    case MELBO_GGML_Q4_K: block = block_q4_k; break;
    case MELBO_GGML_Q6_K: block = block_q6_k; break;
    default: return -1;
    }
    int64_t bv = types[type].values;
    size_t bb = types[type].bytes;
    for (int64_t i = 0; i < n / bv; i++)
        block(s + (size_t)i * bb, dst + i * bv);
    return 0;
}

int melbo_dequant_bf16(int type, const void *src, uint16_t *dst, int64_t n) {
    if (!melbo_ggml_can_dequant(type) || n < 0 || n % types[type].values != 0)
        return -1;
    float tmp[256];
    int64_t bv = types[type].values, step = bv >= 256 ? bv : 256 / bv * bv;
    size_t bb = types[type].bytes;
    const uint8_t *s = src;
    for (int64_t i = 0; i < n; i += step) {
        int64_t m = n - i < step ? n - i : step;
        melbo_dequant_f32(type, s + (size_t)(i / bv) * bb, tmp, m);
        for (int64_t j = 0; j < m; j++)
            dst[i + j] = melbo_f32_to_bf16(tmp[j]);
    }
    return 0;
}
