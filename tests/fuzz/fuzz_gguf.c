/*
 * tests/fuzz/fuzz_gguf.c - the GGUF reader (rank/model/gguf.c) on any file, and what melbo
 * reads from a GGUF after it: every metadata pair through the typed getters and the array
 * accessors, the fingerprint, the model config (gguf_model.c), every tensor melbo dequantises
 * (read whole when small), and the tokenizer a GGUF carries (rank/tokenizer/gguf_vocab.c).
 */
#include <assert.h>

#include "rank/model/config.h"
#include "rank/model/gguf.h"
#include "rank/model/gguf_model.h"
#include "rank/tokenizer/tokenizer.h"
#include "tests/fuzz/fuzz.h"

static void metadata(const struct melbo_gguf_file *f) {
    struct melbo_err err = {0};
    for (int64_t i = 0; i < f->n_kv; i++) {
        const struct melbo_gguf_kv *kv = &f->kv[i];
        assert(melbo_gguf_find_kv(f, kv->key) != NULL);
        int64_t x;
        double d;
        int b;
        const char *s;
        size_t len;
        melbo_gguf_get_int(f, kv->key, &x, &err);
        melbo_gguf_get_float(f, kv->key, &d, &err);
        melbo_gguf_get_bool(f, kv->key, &b, &err);
        if (melbo_gguf_get_str(f, kv->key, &s, &len, &err) == 1) {
            volatile char c = len ? s[len - 1] : 0;
            (void)c;
        }
        if (kv->type != MELBO_GGUF_ARRAY || kv->n > 4096)
            continue;
        if (kv->elem == MELBO_GGUF_STRING) {
            const char **ptrs = calloc(kv->n + 1, sizeof *ptrs);
            uint64_t *lens = calloc(kv->n + 1, sizeof *lens);
            if (melbo_gguf_strings(kv, ptrs, lens, &err) == 0)
                for (uint64_t k = 0; k < kv->n; k++) {
                    volatile char c = lens[k] ? ptrs[k][lens[k] - 1] : 0;
                    (void)c;
                }
            free(ptrs);
            free(lens);
        } else if (kv->elem != MELBO_GGUF_ARRAY) {
            volatile double sum = 0;
            for (uint64_t k = 0; k < kv->n; k++)
                sum += melbo_gguf_array_num(kv, k);
        }
    }
}

static void tensors(const struct melbo_gguf_file *f) {
    struct melbo_err err = {0};
    for (int64_t i = 0; i < f->n_tensors; i++) {
        const struct melbo_gguf_tensor *t = &f->tensors[i];
        assert(melbo_gguf_find(f, t->name) != NULL);
        if (t->nbytes == 0 || !melbo_ggml_can_dequant(t->type))
            continue;
        int64_t rows = t->ndim >= 2 ? t->ne[1] : t->ne[0], cols = t->ndim >= 2 ? t->ne[0] : 1;
        if (rows <= 0 || cols <= 0 || rows * cols > (1 << 16))
            continue;
        float *dst = malloc(sizeof(float) * (size_t)(rows * cols));
        melbo_gguf_read_block(f, t, 0, rows, 0, cols, 0, dst, &err);
        free(dst);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file("in.gguf", data, size);
    struct melbo_gguf_file f;
    struct melbo_err err = {0};
    if (melbo_gguf_open(&f, path, &err) != 0) {
        assert(err.msg[0] != '\0');
        melbo_gguf_close(&f);
        return 0;
    }
    metadata(&f);
    tensors(&f);
    char hex[65];
    melbo_gguf_fingerprint(&f, hex);
    struct melbo_model_config cfg;
    memset(&cfg, 0, sizeof cfg);
    melbo_gguf_config(&f, &cfg, &err);
    melbo_gguf_close(&f);

    struct melbo_tokenizer *tok = NULL;
    if (melbo_tokenizer_load(path, &tok, &err) == 0) {
        struct melbo_ids ids = {0};
        melbo_tokenizer_encode(tok, "Hello, world! 123", 17, MELBO_TOK_ADD_SPECIAL, &ids, &err);
        char *out = NULL;
        melbo_tokenizer_decode(tok, ids.ids, ids.n, 0, &out, NULL, &err);
        free(out);
        melbo_ids_free(&ids);
        melbo_tokenizer_free(tok);
    }
    return 0;
}
