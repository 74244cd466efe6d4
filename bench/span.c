/*
 * bench/span.c - forward + input-gradient backward of a block span on the CPU, against OpenBLAS
 * sgemm at the span's own matrix shapes, measured in the same run.
 *
 * Default workload (issue 2): SmolLM2-135M's shape (hidden 576, 30 layers, 9 heads, 3 KV heads,
 * MLP 1536, vocab 49152) with random weights, blocks 8..21, 64 sequences x 32 tokens. Threads
 * come from OMP_NUM_THREADS / OPENBLAS_NUM_THREADS (the bench sets both to --threads, default 2).
 *
 *   bench_span [--blocks A:B] [--seqs N] [--tokens T] [--iters K] [--threads P]
 *
 * Prints achieved GFLOP/s of the span (matrix products + attention, forward and backward) and the
 * GFLOP/s sgemm reaches on exactly the products the span performs, and their ratio.
 */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/mem.h"
#include "common/threads.h"
#include "common/rng.h"
#include "rank/cpu/span.h"
#include "rank/model/flops.h"
#include "rank/model/model.h"

extern void openblas_set_num_threads(int);
extern char *openblas_get_config(void);

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

struct gemm_shape {
    int m, n, k, trans_b;
};

/* Times every product one forward+backward of one block performs (C = A B or A B^T). */
static double time_sgemm(const struct gemm_shape *g, int n_shapes, int blocks, int iters) {
    size_t maxa = 0, maxb = 0, maxc = 0;
    for (int i = 0; i < n_shapes; i++) {
        maxa = (size_t)g[i].m * g[i].k > maxa ? (size_t)g[i].m * g[i].k : maxa;
        maxb = (size_t)g[i].k * g[i].n > maxb ? (size_t)g[i].k * g[i].n : maxb;
        maxc = (size_t)g[i].m * g[i].n > maxc ? (size_t)g[i].m * g[i].n : maxc;
    }
    float *a = melbo_xalloc_f32(maxa), *b = melbo_xalloc_f32(maxb), *c = melbo_xalloc_f32(maxc);
    melbo_rng_normal_f32(1, 0, a, maxa);
    melbo_rng_normal_f32(1, 1, b, maxb);
    double best = 1e30;
    for (int it = 0; it < iters + 1; it++) {
        double t0 = now();
        for (int l = 0; l < blocks; l++)
            for (int i = 0; i < n_shapes; i++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, g[i].trans_b ? CblasTrans : CblasNoTrans,
                            g[i].m, g[i].n, g[i].k, 1.0f, a, g[i].k, b,
                            g[i].trans_b ? g[i].k : g[i].n, 0.0f, c, g[i].n);
        double t = now() - t0;
        if (it > 0 && t < best) /* first run warms up */
            best = t;
    }
    free(a);
    free(b);
    free(c);
    return best;
}

int main(int argc, char **argv) {
    melbo_threads_init(argv);
    int a = 8, b = 22, n_seq = 64, T = 32, iters = 3, threads = 2;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--blocks")) sscanf(argv[i + 1], "%d:%d", &a, &b), b++;
        else if (!strcmp(argv[i], "--seqs")) n_seq = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--tokens")) T = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--iters")) iters = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 2;
        }
    }
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);

    struct melbo_model_config c;
    memset(&c, 0, sizeof c);
    c.arch = MELBO_ARCH_LLAMA;
    c.n_layers = 30;
    c.d_model = 576;
    c.n_heads = 9;
    c.n_kv_heads = 3;
    c.head_dim = 64;
    c.rope_dim = 64;
    c.d_ff = 1536;
    c.vocab = 49152;
    c.norm_eps = 1e-5f;
    c.rope_theta = 100000.0f;
    c.rope_factor = 1.0f;
    struct melbo_load_opts o = {a, b, 0, 0, 0, 1};
    struct melbo_model m;
    melbo_model_init_random(&m, &c, &o, 42);

    int *lens = melbo_xmalloc(sizeof(int) * (size_t)n_seq);
    for (int i = 0; i < n_seq; i++)
        lens[i] = T;
    struct melbo_seqs s;
    melbo_seqs_init(&s, lens, n_seq);
    size_t nd = (size_t)s.n_tok * c.d_model;
    float *x0 = melbo_xalloc_f32(nd), *x = melbo_xalloc_f32(nd), *dx = melbo_xalloc_f32(nd);
    melbo_rng_normal_f32(3, 0, x0, nd);
    struct melbo_cpu_span sp;
    melbo_cpu_span_init(&sp, &m, a, b, s.n_tok, 1);

    double best = 1e30, best_f = 1e30;
    for (int it = 0; it < iters + 1; it++) {
        memcpy(x, x0, nd * sizeof(float));
        double t0 = now();
        melbo_cpu_span_forward(&sp, &s, x);
        double t1 = now();
        memcpy(dx, x0, nd * sizeof(float));
        melbo_cpu_span_backward(&sp, &s, dx);
        double t2 = now();
        if (it > 0 && t2 - t0 < best) {
            best = t2 - t0;
            best_f = t1 - t0;
        }
    }
    double gemm = 2 * melbo_span_gemm_flops(&c, a, b, s.n_tok);
    double attn = 3 * melbo_span_attention_flops(&c, a, b, &s);
    int N = s.n_tok, d = c.d_model, ff = c.d_ff, rows = melbo_model_qkv_rows(&c);
    int qd = c.n_heads * c.head_dim;
    struct gemm_shape shapes[] = {
        {N, rows, d, 1}, {N, d, qd, 1}, {N, 2 * ff, d, 1}, {N, d, ff, 1},  /* forward */
        {N, ff, d, 0},   {N, d, 2 * ff, 0}, {N, qd, d, 0}, {N, d, rows, 0}, /* backward (dx) */
    };
    double t_gemm = time_sgemm(shapes, 8, b - a, iters);

    printf("bench_span: %s\n", openblas_get_config());
    printf("shape SmolLM2-135M (d %d, heads %d/%d, mlp %d), blocks %d..%d, %d seqs x %d tokens, "
           "%d threads\n", d, c.n_heads, c.n_kv_heads, ff, a, b - 1, n_seq, T, threads);
    printf("span forward+backward   %8.1f ms  (forward %.1f ms)  %7.2f GFLOP/s  "
           "(%.2f GFLOP: %.2f matmul + %.2f attention)\n",
           1e3 * best, 1e3 * best_f, (gemm + attn) / best * 1e-9, (gemm + attn) * 1e-9,
           gemm * 1e-9, attn * 1e-9);
    printf("sgemm, same products    %8.1f ms            %7.2f GFLOP/s\n", 1e3 * t_gemm,
           gemm / t_gemm * 1e-9);
    printf("ratio                   %.2f of sgemm GFLOP/s (target >= 0.50)\n",
           ((gemm + attn) / best) / (gemm / t_gemm));

    melbo_cpu_span_free(&sp);
    melbo_seqs_free(&s);
    melbo_model_free(&m);
    free(lens);
    free(x0);
    free(x);
    free(dx);
    return 0;
}
