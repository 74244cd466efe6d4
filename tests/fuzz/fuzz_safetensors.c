/*
 * tests/fuzz/fuzz_safetensors.c - the safetensors reader (rank/model/safetensors.c) on any
 * file: if it opens, every promise of safetensors.h must hold (each tensor found by name, its
 * bytes inside the file and numel * element size long, metadata readable), and every byte of
 * every tensor is read.
 */
#include <assert.h>

#include "rank/model/safetensors.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file("in.safetensors", data, size);
    struct melbo_st_file f;
    struct melbo_err err = {0};
    if (melbo_st_open(&f, path, &err) != 0) {
        assert(err.msg[0] != '\0');
        melbo_st_close(&f); // safe on a failed open
        return 0;
    }
    const uint8_t *lo = f.map, *hi = lo + f.size;
    volatile unsigned sum = 0;
    for (int i = 0; i < f.n_tensors; i++) {
        const struct melbo_st_tensor *t = &f.tensors[i];
        assert(melbo_st_find(&f, t->name) == t);
        assert((size_t)melbo_st_numel(t) * melbo_dtype_size(t->dtype) == t->nbytes);
        const uint8_t *p = t->data;
        assert(p >= lo && p + t->nbytes <= hi);
        for (size_t k = 0; k < t->nbytes; k++)
            sum += p[k];
    }
    for (int i = 0; i < f.n_meta; i++)
        assert(melbo_st_meta(&f, f.meta_keys[i]) != NULL);
    melbo_st_close(&f);
    return 0;
}
