/*
 * tests/unit/test_safetensors.c - the safetensors reader and writer: round trip, dtype
 * conversion, and every malformed file the issue names, each refused with a message that
 * names the problem.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/file.h"
#include "rank/model/dtype.h"
#include "rank/model/safetensors.h"
#include "rank/model/safetensors_write.h"
#include "tests/test.h"

static char tmpdir[1024];

static void path_of(char *buf, const char *name) { snprintf(buf, 1024, "%s/%s", tmpdir, name); }

static void write_bytes(const char *name, const void *data, size_t len) {
    char p[1024];
    path_of(p, name);
    ASSERT_OK(melbo_file_write_atomic(p, data, len, NULL));
}

/* Writes 8-byte header length, header text (hlen_override < 0: its real length), then data. */
static void write_raw(const char *name, const char *hdr, long long hlen_override, const void *data,
                      size_t dlen) {
    size_t hl = strlen(hdr), total = 8 + hl + dlen;
    unsigned char *buf = malloc(total);
    unsigned long long h = hlen_override < 0 ? hl : (unsigned long long)hlen_override;
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)(h >> (8 * i));
    memcpy(buf + 8, hdr, hl);
    if (dlen)
        memcpy(buf + 8 + hl, data, dlen);
    write_bytes(name, buf, total);
    free(buf);
}

/* Opening name must fail with code and a message containing every needle. */
static void expect_error(const char *name, int code, const char *needle) {
    char p[1024];
    path_of(p, name);
    struct melbo_err err = {0};
    struct melbo_st_file f;
    int r = melbo_st_open(&f, p, &err);
    fprintf(stderr, "%-28s -> %s: %s\n", name, melbo_err_name(r), err.msg);
    ASSERT_EQ(r, code);
    ASSERT_STR_CONTAINS(err.msg, needle);
    ASSERT_STR_CONTAINS(err.msg, name); /* the file is named */
    ASSERT(f.map == NULL && f.tensors == NULL);
}

static void test_round_trip(void) {
    float a[6] = {1.0f, -2.5f, 3.25f, 0.0f, 1e-3f, -7.0f};
    uint16_t bf[6], hf[6] = {0x3c00, 0xc100, 0x4280, 0x0000, 0x0001, 0xfc00}; /* 1,-2.5,3.25,0,tiny,-inf */
    for (int i = 0; i < 6; i++)
        bf[i] = melbo_f32_to_bf16(a[i]);
    int32_t ids[3] = {7, -1, 42};
    struct melbo_st_writer w;
    melbo_st_writer_init(&w);
    int64_t s23[2] = {2, 3}, s3[1] = {3}, s6[1] = {6};
    melbo_st_writer_add(&w, "a.f32", MELBO_DTYPE_F32, 2, s23, a);
    melbo_st_writer_add(&w, "b.bf16", MELBO_DTYPE_BF16, 1, s6, bf);
    melbo_st_writer_add(&w, "c.f16", MELBO_DTYPE_F16, 1, s6, hf);
    melbo_st_writer_add(&w, "d.ids", MELBO_DTYPE_I32, 1, s3, ids);
    melbo_st_writer_add(&w, "e.empty", MELBO_DTYPE_F32, 1, (int64_t[]){0}, NULL);
    melbo_st_writer_meta(&w, "format", "melbo-test");
    char p[1024];
    path_of(p, "ok.safetensors");
    ASSERT_OK(melbo_st_writer_write(&w, p, NULL));
    melbo_st_writer_free(&w);

    struct melbo_err err = {0};
    struct melbo_st_file f;
    ASSERT_OK(melbo_st_open(&f, p, &err));
    ASSERT_EQ(f.n_tensors, 5);
    ASSERT(strcmp(melbo_st_meta(&f, "format"), "melbo-test") == 0);
    const struct melbo_st_tensor *t = melbo_st_find(&f, "a.f32");
    ASSERT(t && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3 && t->dtype == MELBO_DTYPE_F32);
    ASSERT(memcmp(t->data, a, sizeof a) == 0);
    float out[6];
    t = melbo_st_find(&f, "b.bf16");
    ASSERT_OK(melbo_convert_to_f32(out, t->data, t->dtype, 6));
    for (int i = 0; i < 6; i++)
        ASSERT(fabsf(out[i] - a[i]) <= fabsf(a[i]) / 128.0f);
    ASSERT(out[0] == 1.0f && out[1] == -2.5f && out[5] == -7.0f);
    t = melbo_st_find(&f, "c.f16");
    ASSERT_OK(melbo_convert_to_f32(out, t->data, t->dtype, 6));
    ASSERT(out[0] == 1.0f && out[1] == -2.5f && out[2] == 3.25f && out[3] == 0.0f);
    ASSERT(out[4] == ldexpf(1.0f, -24) && isinf(out[5]) && out[5] < 0);
    ASSERT(melbo_st_find(&f, "nope") == NULL);
    ASSERT(melbo_st_numel(melbo_st_find(&f, "e.empty")) == 0);
    melbo_st_close(&f);
    fprintf(stderr, "ok   round trip F32/BF16/F16/I32/empty\n");
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s TMPDIR\n", argv[0]);
        return 2;
    }
    snprintf(tmpdir, sizeof tmpdir, "%s", argv[1]);
    mkdir(tmpdir, 0755);
    test_round_trip();

    /* A valid file cut in the middle of its data. */
    char p[1024], *buf;
    size_t len;
    path_of(p, "ok.safetensors");
    ASSERT_OK(melbo_file_read(p, &buf, &len, NULL));
    write_bytes("truncated.safetensors", buf, len - 10);
    expect_error("truncated.safetensors", MELBO_EFORMAT, "past the end of the data");
    write_bytes("tiny.safetensors", buf, 5);
    expect_error("tiny.safetensors", MELBO_EFORMAT, "truncated");
    /* A header length far past the end of the file. */
    memcpy(buf, "\xff\xff\x00\x00\x00\x00\x00\x00", 8);
    write_bytes("hlen.safetensors", buf, len);
    expect_error("hlen.safetensors", MELBO_EFORMAT, "header length");
    free(buf);

    float data[4] = {1, 2, 3, 4};
    write_raw("json.safetensors", "{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]", -1, data, 16);
    expect_error("json.safetensors", MELBO_EFORMAT, "invalid header JSON");
    write_raw("notjson.safetensors", "hello world!", -1, data, 16);
    expect_error("notjson.safetensors", MELBO_EFORMAT, "does not start with '{'");
    write_raw("dtype.safetensors", "{\"a\": {\"dtype\": \"Q4_K\", \"shape\": [4], \"data_offsets\": [0, 16]}}", -1, data, 16);
    expect_error("dtype.safetensors", MELBO_EUNSUPPORTED, "dtype \"Q4_K\"");
    write_raw("size.safetensors", "{\"a\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 16]}}", -1, data, 16);
    expect_error("size.safetensors", MELBO_EFORMAT, "need 12");
    write_raw("dup.safetensors", "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, \"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]}}", -1, data, 16);
    expect_error("dup.safetensors", MELBO_EFORMAT, "duplicate tensor name 'a'");
    write_raw("hole.safetensors", "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]}}", -1, data, 16);
    expect_error("hole.safetensors", MELBO_EFORMAT, "hole");
    write_raw("tail.safetensors", "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", -1, data, 16);
    expect_error("tail.safetensors", MELBO_EFORMAT, "after the last tensor");
    write_raw("shape.safetensors", "{\"a\": {\"dtype\": \"F32\", \"shape\": [-4], \"data_offsets\": [0, 16]}}", -1, data, 16);
    expect_error("shape.safetensors", MELBO_EFORMAT, "invalid shape");
    write_raw("meta.safetensors", "{\"__metadata__\": {\"k\": 3}, \"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}", -1, data, 16);
    expect_error("meta.safetensors", MELBO_EFORMAT, "not a string");
    expect_error("missing.safetensors", MELBO_ENOENT, "cannot open");
    return test_exit_code();
}
