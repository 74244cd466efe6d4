/*
 * tests/unit/test_gguf.c - the GGUF reader and the dequantisation of every block format, on the
 * small synthetic files of tests/golden/gguf/ (written by tests/golden/make_gguf_fixtures.py).
 *
 * usage: test_gguf GGUF_FIXTURE_DIR
 *   metadata   every value type read back with its value; typed getters refuse wrong types
 *   dequant    F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K: fp32 bit-identical to
 *              gguf.quants.dequantize; bf16 = the fp32 values rounded; Q5_K refused by name;
 *              row/column blocks and the Q/K un-permutation of melbo_gguf_read_block
 *   layout     general.alignment 64 honoured; 1-D and 2-D tensors
 *   refusals   bad magic, version 1, a truncated file, an unknown value type, an offset outside
 *              the file, a misaligned offset, architecture gpt2: each a clear error naming it
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "rank/model/dtype.h"
#include "rank/model/gguf.h"
#include "rank/model/gguf_model.h"
#include "rank/model/quant.h"
#include "tests/test.h"

static const char *dir;

static void open_ok(struct melbo_gguf_file *f, const char *name) {
    char p[4096];
    struct melbo_err err = {0};
    snprintf(p, sizeof p, "%s/%s", dir, name);
    if (melbo_gguf_open(f, p, &err)) {
        fprintf(stderr, "open %s: %s\n", p, err.msg);
        abort();
    }
}

static void test_metadata(void) {
    struct melbo_gguf_file f;
    struct melbo_err err = {0};
    open_ok(&f, "quant.gguf");
    CHECK(f.version == 3 && f.alignment == 32 && f.n_tensors == 9);
    static const struct {
        const char *key;
        enum melbo_gguf_vtype type;
        double value;
    } want[] = {{"test.u8", MELBO_GGUF_U8, 200},          {"test.i8", MELBO_GGUF_I8, -100},
                {"test.u16", MELBO_GGUF_U16, 60000},      {"test.i16", MELBO_GGUF_I16, -30000},
                {"test.u32", MELBO_GGUF_U32, 4000000000.0}, {"test.i32", MELBO_GGUF_I32, -2e9},
                {"test.f32", MELBO_GGUF_F32, 1.5},        {"test.bool", MELBO_GGUF_BOOL, 1},
                {"test.u64", MELBO_GGUF_U64, 1099511627776.0},
                {"test.i64", MELBO_GGUF_I64, -1099511627776.0}, {"test.f64", MELBO_GGUF_F64, 2.25}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const struct melbo_gguf_kv *kv = melbo_gguf_find_kv(&f, want[i].key);
        CHECK(kv && kv->type == want[i].type && kv->f == want[i].value);
    }
    int64_t iv = 0;
    double dv = 0;
    const char *s;
    size_t sl;
    int b = 0;
    CHECK(melbo_gguf_get_int(&f, "test.i64", &iv, &err) == 1 && iv == -(1ll << 40));
    CHECK(melbo_gguf_get_float(&f, "test.f32", &dv, &err) == 1 && dv == 1.5);
    CHECK(melbo_gguf_get_bool(&f, "test.bool", &b, &err) == 1 && b == 1);
    CHECK(melbo_gguf_get_str(&f, "test.string", &s, &sl, &err) == 1 && sl == 12 &&
          !memcmp(s, "h\xC3\xA9llo, GGUF", 12));
    CHECK(melbo_gguf_get_int(&f, "absent.key", &iv, &err) == 0);
    CHECK(melbo_gguf_get_int(&f, "test.string", &iv, &err) == MELBO_EFORMAT);
    ASSERT_STR_CONTAINS(err.msg, "'test.string' is STRING, expected an integer");
    CHECK(melbo_gguf_get_str(&f, "test.u8", &s, &sl, &err) == MELBO_EFORMAT);
    const struct melbo_gguf_kv *a = melbo_gguf_find_kv(&f, "test.arr_i32");
    CHECK(a && a->type == MELBO_GGUF_ARRAY && a->elem == MELBO_GGUF_I32 && a->n == 3);
    CHECK(melbo_gguf_array_num(a, 0) == 1 && melbo_gguf_array_num(a, 1) == -2 &&
          melbo_gguf_array_num(a, 2) == 3);
    a = melbo_gguf_find_kv(&f, "test.arr_f32");
    CHECK(a && a->elem == MELBO_GGUF_F32 && melbo_gguf_array_num(a, 1) == 0.25);
    a = melbo_gguf_find_kv(&f, "test.arr_bool");
    CHECK(a && a->elem == MELBO_GGUF_BOOL && melbo_gguf_array_num(a, 0) == 1);
    a = melbo_gguf_find_kv(&f, "test.arr_str");
    const char *ptr[3];
    uint64_t len[3];
    ASSERT(a && a->n == 3);
    CHECK(melbo_gguf_strings(a, ptr, len, &err) == 0 && len[0] == 1 && len[1] == 0 &&
          len[2] == 3 && !memcmp(ptr[2], "ccc", 3));
    CHECK(melbo_gguf_strings(melbo_gguf_find_kv(&f, "test.arr_i32"), ptr, len, &err) ==
          MELBO_EFORMAT);
    char h1[65], h2[65];
    melbo_gguf_fingerprint(&f, h1);
    struct melbo_gguf_file g;
    open_ok(&g, "quant.gguf");
    melbo_gguf_fingerprint(&g, h2);
    CHECK(!strcmp(h1, h2) && strlen(h1) == 64);
    melbo_gguf_close(&g);
    melbo_gguf_close(&f);
    fprintf(stderr, "ok   metadata: every value type, typed getters, fingerprint\n");
}

static void test_dequant(void) {
    struct melbo_gguf_file f, e;
    struct melbo_err err = {0};
    open_ok(&f, "quant.gguf");
    open_ok(&e, "quant.expected.gguf");
    static const char *names[] = {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q4_k", "q6_k"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const struct melbo_gguf_tensor *t = melbo_gguf_find(&f, names[i]);
        const struct melbo_gguf_tensor *x = melbo_gguf_find(&e, names[i]);
        ASSERT(t && x && x->type == MELBO_GGML_F32 && t->ne[0] == 512 && t->ne[1] == 3);
        size_t n = 3 * 512;
        float *got = melbo_xalloc_f32(n), *ref = melbo_xalloc_f32(n);
        uint16_t *bf = melbo_xcalloc(n, sizeof *bf);
        memcpy(ref, x->data, n * sizeof(float));
        ASSERT_OK(melbo_dequant_f32(t->type, t->data, got, (int64_t)n));
        int exact = !memcmp(got, ref, n * sizeof(float));
        ASSERT_OK(melbo_dequant_bf16(t->type, t->data, bf, (int64_t)n));
        int bf_ok = 1;
        for (size_t j = 0; j < n; j++)
            bf_ok &= bf[j] == melbo_f32_to_bf16(ref[j]);
        /* a block: rows 1..2, columns 100..299, through the reader */
        float blk[2 * 200];
        ASSERT_OK(melbo_gguf_read_block(&f, t, 1, 2, 100, 200, 0, blk, &err));
        int blk_ok = 1;
        for (int r = 0; r < 2; r++)
            blk_ok &= !memcmp(blk + r * 200, ref + (size_t)(r + 1) * 512 + 100, 200 * sizeof(float));
        fprintf(stderr, "%-4s dequant %-5s fp32 %s gguf.quants, bf16 %s, row/col block %s\n",
                exact && bf_ok && blk_ok ? "ok" : "FAIL", melbo_ggml_type_name(t->type),
                exact ? "==" : "!=", bf_ok ? "ok" : "differs", blk_ok ? "ok" : "differs");
        if (!(exact && bf_ok && blk_ok))
            test_failures++;
        free(got);
        free(ref);
        free(bf);
    }
    /* Q5_K is refused by name */
    const struct melbo_gguf_tensor *q5 = melbo_gguf_find(&f, "q5_k");
    float tmp[512];
    ASSERT(q5);
    CHECK(melbo_gguf_read_block(&f, q5, 0, 1, 0, 512, 0, tmp, &err) == MELBO_EUNSUPPORTED);
    ASSERT_STR_CONTAINS(err.msg, "quantised as Q5_K");
    CHECK(melbo_dequant_f32(MELBO_GGML_Q5_K, q5->data, tmp, 256) == -1);
    CHECK(melbo_dequant_f32(MELBO_GGML_Q4_0, q5->data, tmp, 31) == -1);
    melbo_gguf_close(&e);
    melbo_gguf_close(&f);
}

static void test_layout(void) {
    struct melbo_gguf_file f;
    struct melbo_err err = {0};
    open_ok(&f, "align64.gguf");
    CHECK(f.alignment == 64 && f.data_off % 64 == 0);
    const struct melbo_gguf_tensor *a = melbo_gguf_find(&f, "a"), *b = melbo_gguf_find(&f, "b");
    ASSERT(a && b && a->ndim == 1 && a->ne[0] == 5 && b->ndim == 2 && b->ne[0] == 3 && b->ne[1] == 2);
    CHECK(b->offset % 64 == 0);
    float x[6];
    ASSERT_OK(melbo_gguf_read_block(&f, a, 1, 3, 0, 1, 0, x, &err));
    CHECK(x[0] == 1 && x[1] == 2 && x[2] == 3);
    ASSERT_OK(melbo_gguf_read_block(&f, b, 0, 2, 0, 3, 0, x, &err));
    CHECK(x[0] == 0 && x[2] == 4 && x[3] == 6 && x[5] == 10);
    /* llama.cpp's permutation of 1 head of 2 rows is the identity; of 2 rows as rows (0, 1) */
    ASSERT_OK(melbo_gguf_read_block(&f, b, 0, 2, 0, 3, 1, x, &err));
    CHECK(x[0] == 0 && x[3] == 6);
    CHECK(melbo_gguf_read_block(&f, b, 1, 2, 0, 3, 0, x, &err) == MELBO_ERANGE);
    melbo_gguf_close(&f);
    fprintf(stderr, "ok   layout: alignment 64, 1-D and 2-D tensors, ranges\n");
}

static void refused(const char *name, int code, const char *needle) {
    struct melbo_gguf_file f;
    struct melbo_err err = {0};
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    int r = melbo_gguf_open(&f, p, &err);
    int ok = r == code && strstr(err.msg, needle) != NULL && f.map == NULL;
    fprintf(stderr, "%-4s %-18s -> %s: %s\n", ok ? "ok" : "FAIL", name, melbo_err_name(r), err.msg);
    if (!ok)
        test_failures++;
}

static void test_refusals(void) {
    refused("bad_magic.gguf", MELBO_EFORMAT, "bad magic");
    refused("bad_version.gguf", MELBO_EUNSUPPORTED, "GGUF version 1");
    refused("truncated.gguf", MELBO_EFORMAT, "truncated at byte");
    refused("bad_vtype.gguf", MELBO_EFORMAT, "unknown value type 99");
    refused("bad_offset.gguf", MELBO_EFORMAT, "lies outside");
    refused("bad_align.gguf", MELBO_EFORMAT, "not a multiple of the alignment");
    struct melbo_model_config cfg;
    struct melbo_err err = {0};
    char p[4096];
    snprintf(p, sizeof p, "%s/arch_gpt2.gguf", dir);
    int r = melbo_gguf_config_load(&cfg, p, &err);
    CHECK(r == MELBO_EUNSUPPORTED && strstr(err.msg, "architecture \"gpt2\""));
    fprintf(stderr, "%-4s arch_gpt2.gguf     -> %s: %s\n", r == MELBO_EUNSUPPORTED ? "ok" : "FAIL",
            melbo_err_name(r), err.msg);
    snprintf(p, sizeof p, "%s/quant.gguf", dir); /* llama, but no llama.* keys */
    r = melbo_gguf_config_load(&cfg, p, &err);
    CHECK(r == MELBO_EMISSING && strstr(err.msg, "llama.block_count"));
    CHECK(melbo_config_load(&cfg, p, &err) == MELBO_EMISSING);
    CHECK(melbo_gguf_is_path(p) && !melbo_gguf_is_path(dir));
}

/* The un-permutation against llama.cpp's permute, done here in C on indices. */
static void test_unpermute_map(void) {
    /* LlamaModel.permute: w.reshape(n_head, 2, hd/2, cols).swapaxes(1, 2): stored row
     * h*hd + 2*i + j holds HF row h*hd + j*hd/2 + i. */
    int n_head = 3, hd = 8, ok = 1;
    for (int h = 0; h < n_head; h++)
        for (int i = 0; i < hd / 2; i++)
            for (int j = 0; j < 2; j++) {
                int stored = h * hd + 2 * i + j, hf = h * hd + j * hd / 2 + i;
                int w = hf % hd, back = (hf / hd) * hd + 2 * (w % (hd / 2)) + w / (hd / 2);
                ok &= back == stored;
            }
    CHECK(ok);
    fprintf(stderr, "%-4s Q/K row map inverts llama.cpp's permute\n", ok ? "ok" : "FAIL");
}

int main(int argc, char **argv) {
    ASSERT(argc == 2);
    dir = argv[1];
    test_metadata();
    test_dequant();
    test_layout();
    test_refusals();
    test_unpermute_map();
    return test_exit_code();
}
