/*
 * tests/fuzz/fuzz_bank.c - the bank reader (rank/bank/bank.c) on any file: if it opens, every
 * float it exposes is read through the struct's own pointers (as `melbo-rank bank`, the report
 * and the exporters do; UBSan checks their alignment), and a vector expression is evaluated
 * over its vectors.
 */
#include <assert.h>

#include "rank/bank/bank.h"
#include "rank/bank/vexpr.h"
#include "tests/fuzz/fuzz.h"

static double sum(const float *p, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += p[i];
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file("in.bank.safetensors", data, size);
    struct melbo_bank b;
    struct melbo_err err = {0};
    if (melbo_bank_open(&b, path, &err) != 0) {
        assert(err.msg[0] != '\0');
        melbo_bank_close(&b);
        return 0;
    }
    volatile double s = sum(b.objective, (size_t)b.N * b.steps);
    melbo_bank_meta(&b, "format");
    melbo_bank_from_gguf(&b);
    if (b.kind == MELBO_BANK_KIND_VECTOR) {
        s += sum(b.vectors, (size_t)b.N * b.d);
        if (b.random_vectors)
            s += sum(b.random_vectors, (size_t)b.n_random * b.d);
        if (b.d > 0 && b.d <= (1 << 16)) {
            float *out = malloc(sizeof(float) * (size_t)b.d);
            int none = 0;
            melbo_vexpr_eval("0 - 0.5*r0 + 2*random", b.vectors, b.N, b.random_vectors, b.n_random,
                             b.d, out, &none, &err);
            free(out);
        }
    } else {
        for (int k = 0; k < b.N; k++) {
            s += sum(melbo_bank_lora_A(&b, k, 0), (size_t)b.rank * b.d_mlp);
            s += sum(melbo_bank_lora_B(&b, k, 0), (size_t)b.d * b.rank);
        }
        for (int k = 0; k < b.n_random; k++) {
            s += sum(melbo_bank_lora_A(&b, k, 1), (size_t)b.rank * b.d_mlp);
            s += sum(melbo_bank_lora_B(&b, k, 1), (size_t)b.d * b.rank);
        }
    }
    (void)s;
    melbo_bank_close(&b);
    return 0;
}
