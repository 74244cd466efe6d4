/*
 * bench/moe.c - the CPU mixture-of-experts MLP (rank/cpu/moe.h), forward + input-gradient
 * backward, against sgemm on the FLOPs it actually needs.
 *
 *   bench_moe [--tokens N] [--experts E] [--top-k K] [--d D] [--ff F] [--reps R]
 *
 * Defaults: Qwen3-30B-A3B's expert shape (hidden 2048, 128 experts of width 768, top 8,
 * renormalised), 4096 tokens of one block, random weights and inputs (seeded). The needed FLOPs
 * are those of the selected experts only (3 products of 2 d ff flops per (token, expert) pair,
 * forward and backward) plus the router's. The baseline is cblas_sgemm timed on the same
 * products done as plain contiguous GEMMs of the average group size (N k / E rows): the rate a
 * perfect grouped implementation could reach. Issue 21's gate: ratio >= 0.5. Best of R runs.
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/mem.h"
#include "common/rng.h"
#include "rank/cpu/moe.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void fill(float *p, size_t n, float std, uint64_t stream) {
    melbo_rng_normal_f32(42, stream, p, n);
    for (size_t i = 0; i < n; i++)
        p[i] *= std;
}

int main(int argc, char **argv) {
    int n = 4096, E = 128, k = 8, d = 2048, ff = 768, reps = 3;
    for (int i = 1; i + 1 < argc; i += 2) {
        int v = atoi(argv[i + 1]);
        if (!strcmp(argv[i], "--tokens"))
            n = v;
        else if (!strcmp(argv[i], "--experts"))
            E = v;
        else if (!strcmp(argv[i], "--top-k"))
            k = v;
        else if (!strcmp(argv[i], "--d"))
            d = v;
        else if (!strcmp(argv[i], "--ff"))
            ff = v;
        else if (!strcmp(argv[i], "--reps"))
            reps = v;
        else {
            fprintf(stderr, "usage: bench_moe [--tokens N] [--experts E] [--top-k K] [--d D] "
                            "[--ff F] [--reps R]\n");
            return 2;
        }
    }
    struct melbo_model m;
    memset(&m, 0, sizeof m);
    struct melbo_model_config *c = &m.cfg;
    snprintf(c->model_type, sizeof c->model_type, "qwen3_moe");
    c->arch = MELBO_ARCH_QWEN3_MOE;
    c->d_model = d;
    c->d_ff = ff;
    c->d_ff_expert = ff;
    c->n_experts = E;
    c->top_k = k;
    c->norm_topk = 1;
    c->n_layers = 1;
    m.full = *c;
    m.tp_size = 1;
    struct melbo_layer_weights w;
    memset(&w, 0, sizeof w);
    w.w_router = melbo_xalloc_f32((size_t)E * d);
    w.w_gu_e = melbo_xalloc_f32((size_t)E * 2 * ff * d);
    w.w_down_e = melbo_xalloc_f32((size_t)E * d * ff);
    fill(w.w_router, (size_t)E * d, 1.0f / sqrtf((float)d), 1);
    fill(w.w_gu_e, (size_t)E * 2 * ff * d, 1.0f / sqrtf((float)d), 2);
    fill(w.w_down_e, (size_t)E * d * ff, 1.0f / sqrtf((float)ff), 3);
    float *x = melbo_xalloc_f32((size_t)n * d), *out = melbo_xalloc_f32((size_t)n * d);
    float *dout = melbo_xalloc_f32((size_t)n * d), *dx = melbo_xalloc_f32((size_t)n * d);
    fill(x, (size_t)n * d, 1.0f, 4);
    fill(dout, (size_t)n * d, 1.0f, 5);
    struct melbo_cpu_moe s;
    melbo_cpu_moe_init(&s, c, n);

    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        melbo_cpu_moe_forward(&m, &w, &s, x, n, out);
        melbo_cpu_moe_backward(&m, &w, &s, dout, n, dx);
        double t = now() - t0;
        best = t < best ? t : best;
    }
    int lo = n * k, hi = 0;
    for (int e = 0; e < E; e++) {
        int me = s.off[e + 1] - s.off[e];
        lo = me < lo ? me : lo;
        hi = me > hi ? me : hi;
    }
    double flops = melbo_cpu_moe_flops(c, n);

    /* the baseline: the same products as contiguous sgemms of the average group size */
    int mg = (n * k + E - 1) / E;
    float *A = melbo_xalloc_f32((size_t)mg * d), *H = melbo_xalloc_f32((size_t)mg * 2 * ff);
    float *Y = melbo_xalloc_f32((size_t)mg * d);
    fill(A, (size_t)mg * d, 1.0f, 6);
    fill(H, (size_t)mg * 2 * ff, 1.0f, 7);
    double best_g = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        for (int e = 0; e < E; e++) {
            const float *gu = w.w_gu_e + (size_t)e * 2 * ff * d, *dn = w.w_down_e + (size_t)e * d * ff;
            /* forward: H = A Wgu^T, Y = H[:, :ff] Wd^T; backward: H[:, :ff] = Y Wd, A = H Wgu */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, mg, 2 * ff, d, 1.0f, A, d, gu, d,
                        0.0f, H, 2 * ff);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, mg, d, ff, 1.0f, H, 2 * ff, dn,
                        ff, 0.0f, Y, d);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, mg, ff, d, 1.0f, Y, d, dn, ff,
                        0.0f, H, 2 * ff);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, mg, d, 2 * ff, 1.0f, H, 2 * ff,
                        gu, d, 0.0f, A, d);
        }
        double t = now() - t0;
        best_g = t < best_g ? t : best_g;
    }
    double flops_g = 12.0 * (double)mg * E * d * ff;
    double rate = flops / best / 1e9, rate_g = flops_g / best_g / 1e9;
    printf("moe: %d tokens, %d experts of width %d, top %d, d %d (tokens per expert %d..%d, "
           "mean %d)\n", n, E, ff, k, d, lo, hi, mg);
    printf("moe span forward+backward: %.3f s, %.1f GFLOP needed, %.1f GFLOP/s\n", best,
           flops / 1e9, rate);
    printf("sgemm baseline (same products, contiguous): %.3f s, %.1f GFLOP, %.1f GFLOP/s\n",
           best_g, flops_g / 1e9, rate_g);
    printf("ratio %.2f (issue 21 gate: >= 0.5) %s\n", rate / rate_g,
           rate / rate_g >= 0.5 ? "PASS" : "FAIL");
    melbo_cpu_moe_free(&s);
    free(A);
    free(H);
    free(Y);
    free(x);
    free(out);
    free(dout);
    free(dx);
    free(w.w_router);
    free(w.w_gu_e);
    free(w.w_down_e);
    return rate / rate_g >= 0.5 ? 0 : 1;
}
