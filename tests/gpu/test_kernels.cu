/*
 * tests/gpu/test_kernels.cu - every kernel of rank/cuda/kernels.h against its fp32 CPU twin in
 * rank/cpu and rank/train (style rule 12), on random inputs and packed sequences of uneven
 * lengths (1 token up to a few hundred).
 *
 * fp32 kernels must agree to rel <= 1e-5, bf16 kernels to rel <= 2e-2 (DESIGN §7: rel =
 * max|a - b| / max|b|). A bf16 kernel is fed inputs already rounded to bf16 and the CPU twin
 * gets the same rounded values in fp32, so the comparison measures the kernel (its bf16
 * outputs and reordered fp32 sums), not the rounding of the inputs. One line per check.
 * Exits 77 (CTest: skipped) when no CUDA device is present.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

#include "common/rng.h"
#include "rank/cpu/ops.h"
#include "rank/cuda/kernels.h"
#include "rank/model/seqs.h"
#include "rank/method/objective.h"
#include "rank/method/optim.h"
#include "tests/test.h"

#define GPU_TEST_SEED 20260101
#include "tests/gpu/gpu_test.h"

/* ------------------------------------------------------------------------------------------ */
/* host and device buffers (the rest are in gpu_test.h) */

static float *copy_of(const float *x, size_t n) {
    float *y = (float *)malloc(sizeof(float) * (n ? n : 1));
    memcpy(y, x, sizeof(float) * n);
    return y;
}

/* Compares device tensor d(n) with the CPU result ref(n), one line, and frees the download. */
static void check(const char *kernel, const char *what, int bf, const void *d, const float *ref,
                  size_t n, int d_is_f32) {
    float *got = down(d, n, bf && !d_is_f32);
    char name[96];
    snprintf(name, sizeof name, "%s_%s %s", kernel, bf ? "bf16" : "f32", what);
    CHECK_REL(name, test_rel(got, ref, n), bf ? TOL_BF16 : TOL_F32);
    free(got);
}

#define BF(p) ((melbo_bf16 *)(p))
#define F32(p) ((float *)(p))

/* The packing the attention, steering and objective tests share. */
static const int LENS[] = {1, 7, 33, 100, 3, 64};
#define N_SEQ ((int)(sizeof LENS / sizeof LENS[0]))

/* ------------------------------------------------------------------------------------------ */
/* tests */

static void test_rmsnorm(int bf) {
    int n = 37, d = 320, stride = 352;
    size_t sz = (size_t)n * stride;
    float *x = randn(sz, 1.5f), *w = randn(d, 1.0f), *dy = randn(sz, 1.0f), *dx = randn(sz, 1.0f);
    if (bf) {
        round_bf16(x, sz);
        round_bf16(w, d);
        round_bf16(dy, sz);
        round_bf16(dx, sz);
    }
    float *y = copy_of(dx, sz), *rstd = (float *)malloc(sizeof(float) * n);
    void *gx = up(x, sz, bf), *gw = up(w, d, bf), *gy = up(y, sz, bf), *gdy = up(dy, sz, bf);
    void *gdx = up(dx, sz, bf);
    float *grstd = NULL;
    CUDA_OK(cudaMalloc(&grstd, sizeof(float) * n));
    melbo_cpu_rmsnorm(x, w, y, rstd, n, d, stride, 1e-6f);
    LAUNCH_OK(bf ? melbo_cuda_rmsnorm_bf16(BF(gx), BF(gw), BF(gy), grstd, n, d, stride, 1e-6f, stream)
                 : melbo_cuda_rmsnorm_f32(F32(gx), F32(gw), F32(gy), grstd, n, d, stride, 1e-6f,
                                          stream));
    check("rmsnorm", "y", bf, gy, y, sz, 0);
    check("rmsnorm", "rstd", bf, grstd, rstd, n, 1);

    /* input gradient, accumulated into dx (the residual branch) */
    melbo_cpu_rmsnorm_dx(x, w, rstd, dy, dx, n, d, stride, 1);
    LAUNCH_OK(bf ? melbo_cuda_rmsnorm_dx_bf16(BF(gx), BF(gw), grstd, BF(gdy), BF(gdx), n, d, stride,
                                             1, stream)
                 : melbo_cuda_rmsnorm_dx_f32(F32(gx), F32(gw), grstd, F32(gdy), F32(gdx), n, d,
                                            stride, 1, stream));
    check("rmsnorm_dx", "dx (acc)", bf, gdx, dx, sz, 0);
    free(x), free(w), free(dy), free(dx), free(y), free(rstd);
    cudaFree(gx), cudaFree(gw), cudaFree(gy), cudaFree(gdy), cudaFree(gdx), cudaFree(grstd);
}

static void test_rope(int bf, int rope_dim) {
    int nq = 4, nkv = 2, hd = 64, ld = (nq + 2 * nkv) * hd;
    struct melbo_seqs s;
    melbo_seqs_init(&s, LENS, N_SEQ);
    size_t sz = (size_t)s.n_tok * ld;
    float *x = randn(sz, 1.0f), inv_freq[256];
    for (int i = 0; i < rope_dim / 2; i++)
        inv_freq[i] = powf(10000.0f, -2.0f * (float)i / (float)rope_dim);
    if (bf)
        round_bf16(x, sz);
    void *gx = up(x, sz, bf), *gf = up(inv_freq, rope_dim / 2, 0);
    int *gpos = up_int(s.pos, s.n_tok);
    char what[64];
    for (int inverse = 0; inverse < 2; inverse++) {
        melbo_cpu_rope(x, ld, 0, nq + nkv, hd, rope_dim, inv_freq, &s, inverse);
        LAUNCH_OK(bf ? melbo_cuda_rope_bf16(BF(gx), ld, 0, nq + nkv, hd, rope_dim, F32(gf), gpos,
                                            s.n_tok, inverse, stream)
                     : melbo_cuda_rope_f32(F32(gx), ld, 0, nq + nkv, hd, rope_dim, F32(gf), gpos,
                                           s.n_tok, inverse, stream));
        snprintf(what, sizeof what, "%s rope_dim %d", inverse ? "inverse" : "forward", rope_dim);
        check("rope", what, bf, gx, x, sz, 0);
        if (bf) { /* keep the CPU on what the GPU holds, so only one rotation's error is measured */
            float *g = down(gx, sz, 1);
            memcpy(x, g, sizeof(float) * sz);
            free(g);
        }
    }
    free(x);
    cudaFree(gx), cudaFree(gf), cudaFree(gpos);
    melbo_seqs_free(&s);
}

static void test_swiglu(int bf) {
    int n = 29, ff = 384;
    size_t sz = (size_t)n * ff;
    float *gu = randn(2 * sz, 2.0f), *dact = randn(sz, 1.0f);
    if (bf) {
        round_bf16(gu, 2 * sz);
        round_bf16(dact, sz);
    }
    float *act = (float *)malloc(sizeof(float) * sz), *dgu = (float *)malloc(sizeof(float) * 2 * sz);
    void *ggu = up(gu, 2 * sz, bf), *gdact = up(dact, sz, bf), *gact = up(dact, sz, bf);
    void *gdgu = up(gu, 2 * sz, bf);
    melbo_cpu_swiglu(gu, act, n, ff);
    melbo_cpu_swiglu_dx(gu, dact, dgu, n, ff);
    LAUNCH_OK(bf ? melbo_cuda_swiglu_bf16(BF(ggu), BF(gact), n, ff, stream)
                 : melbo_cuda_swiglu_f32(F32(ggu), F32(gact), n, ff, stream));
    LAUNCH_OK(bf ? melbo_cuda_swiglu_dx_bf16(BF(ggu), BF(gdact), BF(gdgu), n, ff, stream)
                 : melbo_cuda_swiglu_dx_f32(F32(ggu), F32(gdact), F32(gdgu), n, ff, stream));
    check("swiglu", "act", bf, gact, act, sz, 0);
    check("swiglu_dx", "dgu", bf, gdgu, dgu, 2 * sz, 0);
    free(gu), free(dact), free(act), free(dgu);
    cudaFree(ggu), cudaFree(gdact), cudaFree(gact), cudaFree(gdgu);
}

/* Prompts of at most 64 tokens: the shared-memory kernels for short sequences. */
static const int SHORT_LENS[] = {1, 7, 33, 64, 3, 32, 32, 17};

static void test_attention(int bf, int nq, int nkv, int hd, int short_seqs) {
    int ld = (nq + 2 * nkv) * hd, od = nq * hd;
    struct melbo_seqs s;
    if (short_seqs)
        melbo_seqs_init(&s, SHORT_LENS, (int)(sizeof SHORT_LENS / sizeof SHORT_LENS[0]));
    else
        melbo_seqs_init(&s, LENS, N_SEQ);
    size_t sq = (size_t)s.n_tok * ld, so = (size_t)s.n_tok * od, sl = (size_t)s.n_tok * nq;
    float *qkv = randn(sq, 1.0f), *dout = randn(so, 1.0f);
    if (bf) {
        round_bf16(qkv, sq);
        round_bf16(dout, so);
    }
    float *out = (float *)malloc(sizeof(float) * so), *lse = (float *)malloc(sizeof(float) * sl);
    float *dqkv = (float *)calloc(sq, sizeof(float));
    melbo_cpu_attention(qkv, ld, out, lse, nq, nkv, hd, &s);
    void *gqkv = up(qkv, sq, bf), *gout = up(out, so, bf), *gdout = up(dout, so, bf);
    void *gdqkv = up(dqkv, sq, bf);
    float *glse = NULL;
    CUDA_OK(cudaMalloc(&glse, sizeof(float) * sl));
    int *gstart = up_int(s.start, s.n_seq + 1);
    LAUNCH_OK(bf ? melbo_cuda_attention_bf16(BF(gqkv), ld, BF(gout), glse, nq, nkv, hd, gstart,
                                             s.n_seq, s.max_len, stream)
                 : melbo_cuda_attention_f32(F32(gqkv), ld, F32(gout), glse, nq, nkv, hd, gstart,
                                            s.n_seq, s.max_len, stream));
    char what[64];
    snprintf(what, sizeof what, "out (nq %d nkv %d hd %d, T <= %d)", nq, nkv, hd, s.max_len);
    check("attention", what, bf, gout, out, so, 0);
    check("attention", "lse", bf, glse, lse, sl, 1);

    /* backward from the CPU's forward (out rounded like the GPU stores it), so both sides see
       identical saved tensors */
    if (bf)
        round_bf16(out, so);
    CUDA_OK(cudaFree(gout));
    gout = up(out, so, bf);
    CUDA_OK(cudaMemcpy(glse, lse, sizeof(float) * sl, cudaMemcpyHostToDevice));
    melbo_cpu_attention_dx(qkv, ld, out, lse, dout, dqkv, nq, nkv, hd, &s);
    LAUNCH_OK(bf ? melbo_cuda_attention_dx_bf16(BF(gqkv), ld, BF(gout), glse, BF(gdout), BF(gdqkv),
                                                nq, nkv, hd, gstart, s.n_seq, s.max_len, stream)
                 : melbo_cuda_attention_dx_f32(F32(gqkv), ld, F32(gout), glse, F32(gdout),
                                               F32(gdqkv), nq, nkv, hd, gstart, s.n_seq, s.max_len,
                                               stream));
    snprintf(what, sizeof what, "dqkv (nq %d nkv %d hd %d, T <= %d)", nq, nkv, hd, s.max_len);
    check("attention_dx", what, bf, gdqkv, dqkv, sq, 0);
    free(qkv), free(dout), free(out), free(lse), free(dqkv);
    cudaFree(gqkv), cudaFree(gout), cudaFree(gdout), cudaFree(gdqkv), cudaFree(glse);
    cudaFree(gstart);
    melbo_seqs_free(&s);
}

/* Sequence s belongs to vector s % B (as pairs b*P + i would, permuted). */
static void test_steer(int bf) {
    int d = 200, B = 4;
    struct melbo_seqs s;
    melbo_seqs_init(&s, LENS, N_SEQ);
    size_t sz = (size_t)s.n_tok * d;
    int seq_vec[N_SEQ];
    for (int i = 0; i < N_SEQ; i++)
        seq_vec[i] = i % B == 3 ? 0 : i % B; /* vector 3 has no sequence: its gradient is 0 */
    float *x = randn(sz, 1.0f), *theta = randn((size_t)B * d, 0.5f), *dx = randn(sz, 1.0f);
    if (bf) {
        round_bf16(x, sz);
        round_bf16(dx, sz);
    }
    void *gx = up(x, sz, bf), *gdx = up(dx, sz, bf), *gth = up(theta, (size_t)B * d, 0);
    int *gvec = up_int(seq_vec, N_SEQ), *gstart = up_int(s.start, N_SEQ + 1);
    float *ggrad = NULL;
    CUDA_OK(cudaMalloc(&ggrad, sizeof(float) * B * d));
    for (int i = 0; i < N_SEQ; i++)
        for (int t = s.start[i]; t < s.start[i + 1]; t++)
            for (int j = 0; j < d; j++)
                x[(size_t)t * d + j] += theta[(size_t)seq_vec[i] * d + j];
    LAUNCH_OK(bf ? melbo_cuda_add_steer_bf16(BF(gx), F32(gth), gvec, gstart, N_SEQ, d, stream)
                 : melbo_cuda_add_steer_f32(F32(gx), F32(gth), gvec, gstart, N_SEQ, d, stream));
    check("add_steer", "x", bf, gx, x, sz, 0);

    /* the CPU trainer's gradient sum: fp64 over sequences in order, then tokens */
    double *acc = (double *)calloc((size_t)B * d, sizeof(double));
    float *grad = (float *)malloc(sizeof(float) * B * d);
    for (int i = 0; i < N_SEQ; i++)
        for (int t = s.start[i]; t < s.start[i + 1]; t++)
            for (int j = 0; j < d; j++)
                acc[(size_t)seq_vec[i] * d + j] += dx[(size_t)t * d + j];
    for (int j = 0; j < B * d; j++)
        grad[j] = (float)acc[j];
    LAUNCH_OK(bf ? melbo_cuda_reduce_positions_bf16(BF(gdx), gvec, gstart, N_SEQ, d, ggrad, B,
                                                    stream)
                 : melbo_cuda_reduce_positions_f32(F32(gdx), gvec, gstart, N_SEQ, d, ggrad, B,
                                                   stream));
    check("reduce_positions", "grad", bf, ggrad, grad, (size_t)B * d, 1);
    free(x), free(theta), free(dx), free(acc), free(grad);
    cudaFree(gx), cudaFree(gdx), cudaFree(gth), cudaFree(gvec), cudaFree(gstart), cudaFree(ggrad);
    melbo_seqs_free(&s);
}

/*
 * Pairs (b, i) of B = 2 vectors and P = 3 prompts; each prompt has its own target positions
 * (every position, the last two, the middle one).
 */
static void test_objective(int bf, double p, double q, int axis) {
    int d = 256, P = 3, B = 2, n_pair = B * P;
    int plen[3] = {9, 40, 5};
    int pair_len[6];
    for (int k = 0; k < n_pair; k++)
        pair_len[k] = plen[k % P];
    struct melbo_seqs zs, ys;
    melbo_seqs_init(&zs, pair_len, n_pair);
    melbo_seqs_init(&ys, plen, P);
    int idx[128], idx_start[7], y_start[6], n_idx = 0;
    int *pidx[3], pn[3];
    int tmp[3][64];
    for (int i = 0; i < P; i++) {
        pn[i] = 0;
        if (i == 0)
            for (int t = 0; t < plen[i]; t++)
                tmp[i][pn[i]++] = t;
        else if (i == 1) {
            tmp[i][pn[i]++] = plen[i] - 2;
            tmp[i][pn[i]++] = plen[i] - 1;
        } else
            tmp[i][pn[i]++] = plen[i] / 2;
        pidx[i] = tmp[i];
    }
    for (int k = 0; k < n_pair; k++) {
        int i = k % P;
        idx_start[k] = n_idx;
        y_start[k] = ys.start[i];
        for (int m = 0; m < pn[i]; m++)
            idx[n_idx++] = pidx[i][m];
    }
    idx_start[n_pair] = n_idx;
    size_t sz = (size_t)zs.n_tok * d, sy = (size_t)ys.n_tok * d;
    float *z = randn(sz, 1.0f), *y = randn(sy, 1.0f);
    if (bf)
        round_bf16(z, sz);
    float *dz = (float *)malloc(sizeof(float) * sz), F[6];
    double *scratch = (double *)malloc(sizeof(double) * d);
    for (int k = 0; k < n_pair; k++) {
        int i = k % P;
        size_t off = (size_t)zs.start[k] * d;
        F[k] = (float)melbo_objective(z + off, y + (size_t)ys.start[i] * d, plen[i], d, pidx[i],
                                      pn[i], p, q, (enum melbo_loss_axis)axis, dz + off, scratch);
    }
    void *gz = up(z, sz, bf), *gy = up(y, sy, 0), *gdz = up(z, sz, bf);
    int *gzs = up_int(zs.start, n_pair + 1), *gys = up_int(y_start, n_pair);
    int *gis = up_int(idx_start, n_pair + 1), *gidx = up_int(idx, n_idx);
    float *gF = NULL;
    CUDA_OK(cudaMalloc(&gF, sizeof(float) * n_pair));
    LAUNCH_OK(bf ? melbo_cuda_objective_bf16(BF(gz), F32(gy), gzs, gys, gis, gidx, n_pair, d, p, q,
                                             axis, gF, BF(gdz), stream)
                 : melbo_cuda_objective_f32(F32(gz), F32(gy), gzs, gys, gis, gidx, n_pair, d, p, q,
                                            axis, gF, F32(gdz), stream));
    char what[64];
    snprintf(what, sizeof what, "F (%s p %g q %g)", axis ? "dim" : "token", p, q);
    check("objective", what, bf, gF, F, n_pair, 1);
    check("objective", "dz", bf, gdz, dz, sz, 0);
    free(z), free(y), free(dz), free(scratch);
    cudaFree(gz), cudaFree(gy), cudaFree(gdz), cudaFree(gzs), cudaFree(gys), cudaFree(gis);
    cudaFree(gidx), cudaFree(gF);
    melbo_seqs_free(&zs);
    melbo_seqs_free(&ys);
}

/* Three steps of B = 3 vectors, with and without finished vectors to project off. */
static void test_vector_update(int n_q) {
    int B = 3, d = 1500, steps = 3;
    double R = 4.0;
    struct melbo_adam opt = {0.01, 0.9, 0.999, 1e-8};
    size_t sz = (size_t)B * d;
    float *Q = randn((size_t)(n_q ? n_q : 1) * d, 1.0f);
    float *theta = randn(sz, 1.0f), *m = (float *)calloc(sz, sizeof(float));
    float *v = (float *)calloc(sz, sizeof(float)), *vhat = (float *)calloc(sz, sizeof(float));
    for (int b = 0; b < B; b++) { /* start on the sphere, off Q, as the trainer does */
        double *g = (double *)malloc(sizeof(double) * d);
        for (int j = 0; j < d; j++)
            g[j] = theta[(size_t)b * d + j];
        melbo_vector_init(theta + (size_t)b * d, g, d, R, Q, n_q, NULL, 0, n_q > 0);
        free(g);
    }
    void *gth = up(theta, sz, 0), *gm = up(m, sz, 0), *gv = up(v, sz, 0), *gvh = up(vhat, sz, 0);
    void *gQ = up(Q, (size_t)(n_q ? n_q : 1) * d, 0);
    float *g = (float *)malloc(sizeof(float) * sz);
    float *gg = NULL;
    CUDA_OK(cudaMalloc(&gg, sizeof(float) * sz));
    for (int t = 1; t <= steps; t++) {
        float *g0 = randn(sz, 0.3f);
        memcpy(g, g0, sizeof(float) * sz);
        CUDA_OK(cudaMemcpy(gg, g0, sizeof(float) * sz, cudaMemcpyHostToDevice));
        for (int b = 0; b < B; b++) {
            size_t o = (size_t)b * d;
            melbo_vector_update(theta + o, g + o, m + o, v + o, vhat + o, d, t, R, &opt, Q, n_q,
                                n_q > 0);
        }
        LAUNCH_OK(melbo_cuda_vector_update(F32(gth), gg, F32(gm), F32(gv), F32(gvh), B, d, t, R,
                                           opt.lr, opt.beta1, opt.beta2, opt.eps,
                                           n_q ? F32(gQ) : NULL, n_q, stream));
        free(g0);
    }
    char what[64];
    snprintf(what, sizeof what, "theta (%d finished)", n_q);
    check("vector_update", what, 0, gth, theta, sz, 1);
    check("vector_update", "projected g", 0, gg, g, sz, 1);
    check("vector_update", "m", 0, gm, m, sz, 1);
    check("vector_update", "v", 0, gv, v, sz, 1);
    check("vector_update", "vhat", 0, gvh, vhat, sz, 1);
    free(Q), free(theta), free(m), free(v), free(vhat), free(g);
    cudaFree(gth), cudaFree(gm), cudaFree(gv), cudaFree(gvh), cudaFree(gQ), cudaFree(gg);
}

static void test_linear(struct melbo_cuda_blas *blas, enum melbo_cuda_out out_type) {
    int n = 37, in = 256, out = 320;
    int of32 = out_type == MELBO_CUDA_OUT_F32;
    float *x = randn((size_t)n * in, 1.0f), *w = randn((size_t)out * in, 0.05f);
    float *dy = randn((size_t)n * out, 1.0f), *y0 = randn((size_t)n * out, 1.0f);
    round_bf16(x, (size_t)n * in);
    round_bf16(w, (size_t)out * in);
    round_bf16(dy, (size_t)n * out);
    if (!of32)
        round_bf16(y0, (size_t)n * out);
    float *y = copy_of(y0, (size_t)n * out), *dx = (float *)malloc(sizeof(float) * n * in);
    void *gx = up(x, (size_t)n * in, 1), *gw = up(w, (size_t)out * in, 1);
    void *gdy = up(dy, (size_t)n * out, 1), *gy = up(y0, (size_t)n * out, !of32);
    void *gdx = up(x, (size_t)n * in, !of32);
    float beta = of32 ? 1.0f : 0.0f; /* fp32 output also checks accumulation into y */
    melbo_cpu_linear(x, w, y, n, in, out, beta);
    melbo_cpu_linear_dx(dy, w, dx, n, in, out, 0.0f);
    LAUNCH_OK(melbo_cuda_linear_bf16(blas, BF(gx), BF(gw), gy, out_type, n, in, out, beta, stream));
    LAUNCH_OK(melbo_cuda_linear_dx_bf16(blas, BF(gdy), BF(gw), gdx, out_type, n, in, out, 0.0f,
                                        stream));
    const char *what = of32 ? "y fp32 out, beta 1" : "y bf16 out";
    check("linear", what, 1, gy, y, (size_t)n * out, of32);
    check("linear_dx", of32 ? "dx fp32 out" : "dx bf16 out", 1, gdx, dx, (size_t)n * in, of32);
    free(x), free(w), free(dy), free(y0), free(y), free(dx);
    cudaFree(gx), cudaFree(gw), cudaFree(gdy), cudaFree(gy), cudaFree(gdx);
}

/* Refused arguments come back as negative codes and launch nothing. */
static void test_refusals(void) {
    int before = test_failures;
    CHECK(melbo_cuda_rmsnorm_f32(NULL, NULL, NULL, NULL, 4, 8, 4, 1e-6f, stream) < 0);
    CHECK(melbo_cuda_attention_f32(NULL, 3 * 512, NULL, NULL, 1, 1, 512, NULL, 1, 8, stream) ==
          MELBO_EUNSUPPORTED);
    CHECK(melbo_cuda_attention_f32(NULL, 64, NULL, NULL, 3, 2, 8, NULL, 1, 8, stream) < 0);
    CHECK(melbo_cuda_vector_update(NULL, NULL, NULL, NULL, NULL, 1, MELBO_CUDA_OPTIM_MAX_D + 1, 1,
                                   1.0, 0.1, 0.9, 0.999, 1e-8, NULL, 0, stream) ==
          MELBO_EUNSUPPORTED);
    fprintf(stderr, "%-4s %-48s\n", test_failures > before ? "FAIL" : "ok", "argument refusals");
}

int main(void) {
    int n_dev = 0;
    cudaError_t e = cudaGetDeviceCount(&n_dev);
    if (e != cudaSuccess || n_dev == 0) {
        printf("no CUDA device (%s): skipped\n",
               e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
        return 77;
    }
    struct cudaDeviceProp prop;
    CUDA_OK(cudaGetDeviceProperties(&prop, 0));
    fprintf(stderr, "device 0: %s (sm_%d%d)\n", prop.name, prop.major, prop.minor);
    CUDA_OK(cudaStreamCreate(&stream));

    for (int bf = 0; bf < 2; bf++) {
        test_rmsnorm(bf);
        test_rope(bf, 64);
        test_rope(bf, 32); /* partial rotary: the last half of each head untouched */
        test_swiglu(bf);
        test_attention(bf, 4, 2, 64, 0);
        test_attention(bf, 6, 1, 128, 0);
        test_attention(bf, 4, 2, 64, 1);
        test_attention(bf, 10, 2, 128, 1);
        test_attention(bf, 3, 3, 72, 1);
        test_steer(bf);
        test_objective(bf, 2.0, 1.0, 0);
        test_objective(bf, 3.0, 1.5, 0);
        test_objective(bf, 3.0, 1.5, 1);
    }
    test_vector_update(0);
    test_vector_update(2);

    struct melbo_cuda_blas *blas = NULL;
    int rc = melbo_cuda_blas_init(&blas, 0);
    if (rc) {
        TEST_FAIL_("melbo_cuda_blas_init: %s", melbo_cuda_strerror(rc));
        return 1;
    }
    test_linear(blas, MELBO_CUDA_OUT_BF16);
    test_linear(blas, MELBO_CUDA_OUT_F32);
    melbo_cuda_blas_free(blas);

    test_refusals();
    CUDA_OK(cudaStreamDestroy(stream));
    return test_exit_code();
}
