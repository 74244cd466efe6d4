/*
 * tests/fuzz/fuzz_vexpr.c - vector expressions (rank/bank/vexpr.c) of any text over a small
 * bank of 5 vectors and 2 random baselines (d = 3; none when the text starts with a space):
 * an expression evaluates or fails with a message, and reads nothing outside the vectors it
 * was given (they are exactly sized heap blocks, so ASan sees any read past them).
 */
#include <assert.h>

#include "rank/bank/vexpr.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    enum { N = 5, R = 2, D = 3 };
    /* exactly sized heap copies, so ASan sees any read past them */
    float *vec = malloc(sizeof(float) * N * D), *rnd = malloc(sizeof(float) * R * D);
    for (int i = 0; i < N * D; i++)
        vec[i] = (float)i;
    for (int i = 0; i < R * D; i++)
        rnd[i] = -(float)i;
    char *expr = fuzz_strndup(data, size);
    float out[D];
    int none = -1;
    struct melbo_err err = {0};
    int n_rand = size > 0 && data[0] == ' ' ? 0 : R; // also a bank without random baselines
    int ret = melbo_vexpr_eval(expr, vec, N, n_rand ? rnd : NULL, n_rand, D, out, &none, &err);
    assert(ret == 0 || err.msg[0] != '\0');
    assert(none == 0 || none == 1);
    free(expr);
    free(vec);
    free(rnd);
    return 0;
}
