/*
 * tests/gpu/test_decode_kernels.cu - every kernel of rank/cuda/decode_kernels.h against its CPU
 * twin (style rule 12): the attention against melbo_cpu_attend_head as the CPU decoder calls
 * it, the argmax against melbo_argmax, the copies and the steering add against the loops of
 * rank/cpu/decode.c written out here.
 *
 * The attention runs after melbo_cuda_kv_append of the call's tokens, as in a generation step,
 * on caches whose other positions hold earlier tokens (random) and, past each query's last
 * position, junk 50 times larger that a causal kernel must not read. Shapes: GQA ratios 1, 3,
 * 4 and 5; hd 64, 72, 128 and 256; contexts of 1, 37, 96, 300, 2000 and 4096 positions, as
 * whole prompts, prompt continuations and single decoding tokens, in several slots per call;
 * the benchmark's 64 sequences x 40 heads (8 KV heads, hd 128) at contexts up to 96, which is
 * also timed (informational line).
 *
 * fp32 kernels must agree to rel <= 1e-5, bf16 kernels to rel <= 2e-2 (DESIGN §7: rel =
 * max|a - b| / max|b|, here per run of query tokens so a long context's small outputs are not
 * judged against a short one's); copies must be exact. A bf16 kernel is fed inputs already
 * rounded to bf16 and the CPU twin gets the same rounded values in fp32. One line per check.
 * Exits 77 (CTest: skipped) when no CUDA device is present.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

#include "common/rng.h"
#include "rank/cpu/ops.h"
#include "rank/cuda/decode_kernels.h"
#include "rank/generate/sampler.h"
#include "tests/test.h"

#define GPU_TEST_SEED 20260202
#include "tests/gpu/gpu_test.h"

#define JUNK     50.0f /* scale of cache entries past a query's position */

/* ------------------------------------------------------------------------------------------ */
/* host and device buffers (the rest are in gpu_test.h) */

/* Compares device tensor d(n) (stored as bf says) with ref(n) at tolerance tol, one line. */
static void check_tol(const char *kernel, const char *what, int bf, const void *d, const float *ref,
                      size_t n, double tol) {
    float *got = down(d, n, bf);
    char name[128];
    snprintf(name, sizeof name, "%s_%s %s", kernel, bf ? "bf16" : "f32", what);
    CHECK_REL(name, test_rel(got, ref, n), tol);
    free(got);
}

static double tol_of(int bf) {
    return bf ? TOL_BF16 : TOL_F32;
}

#define BF(p)  ((melbo_bf16 *)(p))
#define F32(p) ((float *)(p))

/* ------------------------------------------------------------------------------------------ */
/* embedding */

/* Valid ids, and ids outside [0, V) whose rows must come back as zeros. */
static void test_embed(int bf) {
    int V = 1001, d = 333, n = 50;
    size_t st = (size_t)V * d, so = (size_t)n * d;
    float *table = randn(st, 1.0f), *junk = randn(so, 1.0f);
    if (bf) {
        round_bf16(table, st);
        round_bf16(junk, so);
    }
    int ids[50];
    for (int r = 0; r < n; r++)
        ids[r] = (int)((r * 7919u + 13u) % (unsigned)V);
    ids[3] = -1, ids[10] = V, ids[11] = V - 1, ids[12] = 0, ids[20] = INT_MIN, ids[21] = INT_MAX;
    float *ref = (float *)calloc(so, sizeof(float));
    for (int r = 0; r < n; r++)
        if (ids[r] >= 0 && ids[r] < V)
            memcpy(ref + (size_t)r * d, table + (size_t)ids[r] * d, sizeof(float) * d);
    void *gt = up(table, st, bf), *gout = up(junk, so, bf);
    int *gids = up_int(ids, n);
    LAUNCH_OK(
        bf ? melbo_cuda_embed_bf16(BF(gt), (const int32_t *)gids, BF(gout), n, d, V, stream)
           : melbo_cuda_embed_f32(F32(gt), (const int32_t *)gids, F32(gout), n, d, V, stream));
    check_tol("embed", "rows (bad ids: zeros)", bf, gout, ref, so, 0.0);
    free(table), free(junk), free(ref);
    cudaFree(gt), cudaFree(gout), cudaFree(gids);
}

/* ------------------------------------------------------------------------------------------ */
/* KV cache and attention */

/* m query tokens at positions p0 .. p0+m-1 of slot (tokens packed run after run). */
struct run {
    int slot, p0, m;
};

struct heads {
    int nq, nkv, hd;
};

/* Times n_iter calls of the attention launch just checked; one informational line. */
static void time_attention(int bf, const void *gq, int ld, const void *gk, const void *gv, int cap,
                           const int *gslot, const int *gpos, void *gout, int n_tok,
                           struct heads hs, int max_pos, const char *label) {
    const int n_iter = 50;
    cudaEvent_t e0, e1;
    CUDA_OK(cudaEventCreate(&e0));
    CUDA_OK(cudaEventCreate(&e1));
    for (int i = 0; i <= n_iter; i++) {
        if (i == 1) /* the first call warms up */
            CUDA_OK(cudaEventRecord(e0, stream));
        int rc = bf ? melbo_cuda_attention_decode_bf16(BF(gq), ld, BF(gk), BF(gv), cap, gslot, gpos,
                                                       BF(gout), n_tok, hs.nq, hs.nkv, hs.hd,
                                                       max_pos, stream)
                    : melbo_cuda_attention_decode_f32(F32(gq), ld, F32(gk), F32(gv), cap, gslot,
                                                      gpos, F32(gout), n_tok, hs.nq, hs.nkv, hs.hd,
                                                      max_pos, stream);
        CHECK(rc == 0);
    }
    CUDA_OK(cudaEventRecord(e1, stream));
    CUDA_OK(cudaEventSynchronize(e1));
    float ms = 0.0f;
    CUDA_OK(cudaEventElapsedTime(&ms, e0, e1));
    fprintf(stderr, "time attention_decode_%s %s: %.1f us per call\n", bf ? "bf16" : "f32", label,
            1000.0 * ms / n_iter);
    cudaEventDestroy(e0), cudaEventDestroy(e1);
}

/*
 * One generation step's attention for runs[n_runs] (each slot at most once) on caches of
 * n_slots x cap positions: append the runs' keys and values, check both caches exactly, attend,
 * check the output per run (per_run) or as a whole; time it when label is not NULL.
 */
static void test_decode(int bf, struct heads hs, const struct run *runs, int n_runs, int n_slots,
                        int cap, int per_run, const char *label) {
    int nq = hs.nq, nkv = hs.nkv, hd = hs.hd, group = nq / nkv;
    int kvd = nkv * hd, od = nq * hd, ld = (nq + 2 * nkv) * hd + 8; /* padded rows */
    int *start = (int *)malloc(sizeof(int) * (n_runs + 1)), max_pos = 0;
    start[0] = 0;
    for (int r = 0; r < n_runs; r++) {
        start[r + 1] = start[r] + runs[r].m;
        max_pos = runs[r].p0 + runs[r].m > max_pos ? runs[r].p0 + runs[r].m : max_pos;
        ASSERT(runs[r].p0 + runs[r].m <= cap && runs[r].slot < n_slots);
    }
    int n_tok = start[n_runs];
    int *tok_slot = (int *)malloc(sizeof(int) * n_tok);
    int *tok_pos = (int *)malloc(sizeof(int) * n_tok);
    for (int r = 0; r < n_runs; r++)
        for (int i = 0; i < runs[r].m; i++) {
            tok_slot[start[r] + i] = runs[r].slot;
            tok_pos[start[r] + i] = runs[r].p0 + i;
        }
    size_t sc = (size_t)n_slots * cap * kvd, sq = (size_t)n_tok * ld, so = (size_t)n_tok * od;
    float *qkv = randn(sq, 1.0f), *kc = randn(sc, 1.0f), *vc = randn(sc, 1.0f);
    float *junk = randn(so, 1.0f);
    for (int r = 0; r < n_runs; r++) { /* positions no query of this call may see */
        size_t from = ((size_t)runs[r].slot * cap + runs[r].p0 + runs[r].m) * kvd;
        size_t to = ((size_t)runs[r].slot + 1) * cap * kvd;
        for (size_t i = from; i < to; i++)
            kc[i] *= JUNK, vc[i] *= JUNK;
    }
    if (bf) {
        round_bf16(qkv, sq);
        round_bf16(kc, sc);
        round_bf16(vc, sc);
        round_bf16(junk, so);
    }
    void *gqkv = up(qkv, sq, bf), *gk = up(kc, sc, bf), *gv = up(vc, sc, bf);
    void *gout = up(junk, so, bf);
    int *gslot = up_int(tok_slot, n_tok), *gpos = up_int(tok_pos, n_tok);
    char what[128];

    /* the CPU decoder's append: this call's keys and values at their positions */
    for (int t = 0; t < n_tok; t++) {
        size_t dst = ((size_t)tok_slot[t] * cap + tok_pos[t]) * kvd;
        memcpy(kc + dst, qkv + (size_t)t * ld + (size_t)nq * hd, sizeof(float) * kvd);
        memcpy(vc + dst, qkv + (size_t)t * ld + (size_t)(nq + nkv) * hd, sizeof(float) * kvd);
    }
    LAUNCH_OK(bf ? melbo_cuda_kv_append_bf16(BF(gqkv), ld, nq, nkv, hd, gslot, gpos, n_tok, BF(gk),
                                             BF(gv), cap, stream)
                 : melbo_cuda_kv_append_f32(F32(gqkv), ld, nq, nkv, hd, gslot, gpos, n_tok, F32(gk),
                                            F32(gv), cap, stream));
    snprintf(what, sizeof what, "k cache (nkv %d hd %d, %d tokens)", nkv, hd, n_tok);
    check_tol("kv_append", what, bf, gk, kc, sc, 0.0);
    snprintf(what, sizeof what, "v cache (nkv %d hd %d, %d tokens)", nkv, hd, n_tok);
    check_tol("kv_append", what, bf, gv, vc, sc, 0.0);

    /* the CPU decoder's attention: melbo_cpu_attend_head per (run, head) */
    float *out = (float *)malloc(sizeof(float) * so);
    float *S = (float *)malloc(sizeof(float) * 64 * (size_t)max_pos);
    float scale = 1.0f / sqrtf((float)hd);
    for (int r = 0; r < n_runs; r++)
        for (int h = 0; h < nq; h++) {
            size_t cb = (size_t)runs[r].slot * cap * kvd + (size_t)(h / group) * hd;
            int t0 = start[r];
            melbo_cpu_attend_head(qkv + (size_t)t0 * ld + (size_t)h * hd, ld, kc + cb, vc + cb, kvd,
                                  out + (size_t)t0 * od + (size_t)h * hd, od, NULL, 0, runs[r].m,
                                  runs[r].p0, hd, scale, S);
        }
    LAUNCH_OK(bf ? melbo_cuda_attention_decode_bf16(BF(gqkv), ld, BF(gk), BF(gv), cap, gslot, gpos,
                                                    BF(gout), n_tok, nq, nkv, hd, max_pos, stream)
                 : melbo_cuda_attention_decode_f32(F32(gqkv), ld, F32(gk), F32(gv), cap, gslot,
                                                   gpos, F32(gout), n_tok, nq, nkv, hd, max_pos,
                                                   stream));
    float *got = down(gout, so, bf);
    char name[160];
    if (per_run) {
        for (int r = 0; r < n_runs; r++) {
            snprintf(name, sizeof name, "attention_decode_%s nq %d nkv %d hd %d ctx %d q %d",
                     bf ? "bf16" : "f32", nq, nkv, hd, runs[r].p0 + runs[r].m, runs[r].m);
            size_t o0 = (size_t)start[r] * od, on = (size_t)runs[r].m * od;
            CHECK_REL(name, test_rel(got + o0, out + o0, on), tol_of(bf));
        }
    } else {
        snprintf(name, sizeof name, "attention_decode_%s nq %d nkv %d hd %d %d runs%s%s",
                 bf ? "bf16" : "f32", nq, nkv, hd, n_runs, label ? " " : "", label ? label : "");
        CHECK_REL(name, test_rel(got, out, so), tol_of(bf));
    }
    if (label)
        time_attention(bf, gqkv, ld, gk, gv, cap, gslot, gpos, gout, n_tok, hs, max_pos, label);
    free(start), free(tok_slot), free(tok_pos), free(qkv), free(kc), free(vc), free(junk);
    free(out), free(S), free(got);
    cudaFree(gqkv), cudaFree(gk), cudaFree(gv), cudaFree(gout), cudaFree(gslot), cudaFree(gpos);
}

/* Contexts 1, 37, 300, 2000, 96 and 37 in six slots, listed out of slot order. */
static const struct run MIXED[] = {
    {3, 0, 1},    /* a one-token prompt */
    {0, 0, 37},   /* a whole prompt */
    {5, 290, 10}, /* ten more tokens of a long prompt */
    {1, 1999, 1}, /* decoding at context 2000 */
    {4, 95, 1},   /* decoding at the benchmark's longest context */
    {2, 36, 1},   /* decoding at context 37 */
};
#define N_MIXED ((int)(sizeof MIXED / sizeof MIXED[0]))

static void test_decode_shapes(int bf) {
    static const struct heads HS[] = {
        {4, 4, 64},  /* GQA ratio 1 */
        {8, 2, 128}, /* ratio 4 */
        {10, 2, 64}, /* ratio 5 */
        {5, 1, 128}, /* ratio 5, one KV head */
        {3, 1, 72},  /* ratio 3, a head width that is no multiple of 32 */
        {2, 1, 256}, /* the widest head */
    };
    for (size_t i = 0; i < sizeof HS / sizeof HS[0]; i++)
        test_decode(bf, HS[i], MIXED, N_MIXED, 6, 2048, 1, NULL);

    /* a whole 2000-token prompt in the last slot, cap = the prompt (no junk behind it) */
    struct heads h8 = {8, 2, 128};
    struct run whole = {1, 0, 2000};
    test_decode(bf, h8, &whole, 1, 2, 2000, 1, NULL);

    /* the longest contexts: decoding at 4096 and 96 prompt tokens ending at 4096 */
    struct heads h40 = {40, 8, 128};
    struct run longest[2] = {{1, 4095, 1}, {0, 4000, 96}};
    test_decode(bf, h40, longest, 2, 2, 4096, 1, NULL);

    /* the benchmark: 64 sequences decoding at contexts up to 96, then their prompts */
    struct run bench[64];
    for (int s = 0; s < 64; s++) {
        bench[s].slot = 63 - s;
        bench[s].p0 = (s * 37 + 11) % 96;
        bench[s].m = 1;
    }
    test_decode(bf, h40, bench, 64, 64, 96, 0, "64 seq x 40 heads hd 128 decode ctx<=96");
    for (int s = 0; s < 64; s++) {
        bench[s].p0 = 0;
        bench[s].m = (s * 29) % 96 + 1;
    }
    test_decode(bf, h40, bench, 64, 64, 96, 0, "64 seq x 40 heads hd 128 prefill ctx<=96");
}

/*
 * Tokens the kernels must contain: a negative position, a negative slot, a position past cap
 * (and past max_pos). The append skips them; the attention gives them zero rows and still
 * computes the valid token.
 */
static void test_decode_edges(int bf) {
    int nq = 2, nkv = 1, hd = 64, cap = 16, n_slots = 2, n_tok = 4, max_pos = 6;
    int kvd = nkv * hd, od = nq * hd, ld = (nq + 2 * nkv) * hd;
    int tok_slot[4] = {1, 0, -1, 0}, tok_pos[4] = {5, -1, 3, 16};
    size_t sc = (size_t)n_slots * cap * kvd, sq = (size_t)n_tok * ld, so = (size_t)n_tok * od;
    float *qkv = randn(sq, 1.0f), *kc = randn(sc, 1.0f), *vc = randn(sc, 1.0f);
    float *junk = randn(so, 1.0f);
    if (bf) {
        round_bf16(qkv, sq);
        round_bf16(kc, sc);
        round_bf16(vc, sc);
        round_bf16(junk, so);
    }
    void *gqkv = up(qkv, sq, bf), *gk = up(kc, sc, bf), *gv = up(vc, sc, bf);
    void *gout = up(junk, so, bf);
    int *gslot = up_int(tok_slot, n_tok), *gpos = up_int(tok_pos, n_tok);
    size_t dst = ((size_t)1 * cap + 5) * kvd; /* only token 0 lands in the cache */
    memcpy(kc + dst, qkv + (size_t)nq * hd, sizeof(float) * kvd);
    memcpy(vc + dst, qkv + (size_t)(nq + nkv) * hd, sizeof(float) * kvd);
    LAUNCH_OK(bf ? melbo_cuda_kv_append_bf16(BF(gqkv), ld, nq, nkv, hd, gslot, gpos, n_tok, BF(gk),
                                             BF(gv), cap, stream)
                 : melbo_cuda_kv_append_f32(F32(gqkv), ld, nq, nkv, hd, gslot, gpos, n_tok, F32(gk),
                                            F32(gv), cap, stream));
    check_tol("kv_append", "k cache (bad slots, positions skipped)", bf, gk, kc, sc, 0.0);
    check_tol("kv_append", "v cache (bad slots, positions skipped)", bf, gv, vc, sc, 0.0);
    float *out = (float *)calloc(so, sizeof(float)), S[64 * 6];
    for (int h = 0; h < nq; h++)
        melbo_cpu_attend_head(qkv + (size_t)h * hd, ld, kc + (size_t)cap * kvd,
                              vc + (size_t)cap * kvd, kvd, out + (size_t)h * hd, od, NULL, 0, 1, 5,
                              hd, 1.0f / sqrtf((float)hd), S);
    LAUNCH_OK(bf ? melbo_cuda_attention_decode_bf16(BF(gqkv), ld, BF(gk), BF(gv), cap, gslot, gpos,
                                                    BF(gout), n_tok, nq, nkv, hd, max_pos, stream)
                 : melbo_cuda_attention_decode_f32(F32(gqkv), ld, F32(gk), F32(gv), cap, gslot,
                                                   gpos, F32(gout), n_tok, nq, nkv, hd, max_pos,
                                                   stream));
    check_tol("attention_decode", "bad slots, positions: zero rows", bf, gout, out, so, tol_of(bf));
    float *got = down(gout, so, bf);
    int zeros = 1;
    for (size_t i = (size_t)od; i < so; i++)
        zeros &= got[i] == 0.0f;
    CHECK(zeros);
    free(qkv), free(kc), free(vc), free(junk), free(out), free(got);
    cudaFree(gqkv), cudaFree(gk), cudaFree(gv), cudaFree(gout), cudaFree(gslot), cudaFree(gpos);
}

/* ------------------------------------------------------------------------------------------ */
/* argmax */

/* Random rows, and (V >= 64) rows of ties, NaN, infinities and signed zeros. */
static void test_argmax(int V) {
    int n = 12;
    size_t sz = (size_t)n * V;
    float *x = randn(sz, 3.0f);
    if (V >= 64) {
#define ROW(r) (x + (size_t)(r)*V)
        ROW(1)[7] = ROW(1)[V / 2] = 1e3f;                /* equal maxima: the first */
        ROW(2)[0] = ROW(2)[V - 1] = 1e3f;                /* ... at index 0 */
        ROW(3)[V - 1] = 1e3f;                            /* the last index */
        ROW(4)[0] = NAN, ROW(4)[5] = 1e3f;               /* NaN first: 0 */
        ROW(5)[3] = ROW(5)[V / 2] = ROW(5)[V - 1] = NAN; /* NaN elsewhere: skipped */
        ROW(5)[V - 2] = 1e3f;
        for (int j = 0; j < V; j++) {
            ROW(6)[j] = -INFINITY; /* all -inf: 0 */
            ROW(8)[j] = 0.0f;      /* all equal: 0 */
            ROW(9)[j] = ROW(10)[j] = -5.0f;
            ROW(11)[j] = NAN; /* all NaN: 0 */
        }
        ROW(7)[V / 3] = ROW(7)[V - 7] = INFINITY; /* +inf twice: the first */
        ROW(9)[3] = 0.0f, ROW(9)[5] = -0.0f;      /* 0 and -0 are equal: the first */
        ROW(10)[2] = -0.0f, ROW(10)[9] = 0.0f;
#undef ROW
    }
    int32_t ref[12], got[12];
    for (int r = 0; r < n; r++)
        ref[r] = melbo_argmax(x + (size_t)r * V, V);
    void *gx = up(x, sz, 0);
    int32_t *gout = NULL;
    CUDA_OK(cudaMalloc(&gout, sizeof(int32_t) * n));
    LAUNCH_OK(melbo_cuda_argmax_f32(F32(gx), n, V, gout, stream));
    CUDA_OK(cudaMemcpy(got, gout, sizeof(int32_t) * n, cudaMemcpyDeviceToHost));
    int bad = 0;
    for (int r = 0; r < n; r++)
        if (got[r] != ref[r]) {
            if (!bad)
                TEST_FAIL_("argmax row %d: %d, melbo_argmax %d", r, got[r], ref[r]);
            bad++;
        }
    char name[96];
    snprintf(name, sizeof name, "argmax_f32 V %d (ties, NaN, inf, -0)", V);
    fprintf(stderr, "%-4s %-48s mismatches %d of %d rows\n", bad ? "FAIL" : "ok", name, bad, n);
    test_failures += bad > 0;
    free(x);
    cudaFree(gx), cudaFree(gout);
}

/* ------------------------------------------------------------------------------------------ */
/* steering */

/* Every fourth row unsteered (-1); the others take vector r % 3. fp32 must be bit-identical. */
static void test_add_rows(int bf, float scale) {
    int n = 40, d = 777, n_vec = 3;
    size_t sz = (size_t)n * d;
    float *x = randn(sz, 1.0f), *vec = randn((size_t)n_vec * d, 0.5f);
    if (bf)
        round_bf16(x, sz);
    int row_vec[40];
    for (int r = 0; r < n; r++)
        row_vec[r] = r % 4 == 3 ? -1 : r % n_vec;
    void *gx = up(x, sz, bf), *gvec = up(vec, (size_t)n_vec * d, 0);
    int *grow = up_int(row_vec, n);
    for (int r = 0; r < n; r++) /* the CPU decoder adds a vector already scaled in fp32 */
        for (int j = 0; row_vec[r] >= 0 && j < d; j++) {
            volatile float th = scale * vec[(size_t)row_vec[r] * d + j]; /* no contraction */
            x[(size_t)r * d + j] += th;
        }
    LAUNCH_OK(bf ? melbo_cuda_add_rows_bf16(BF(gx), F32(gvec), grow, scale, n, d, stream)
                 : melbo_cuda_add_rows_f32(F32(gx), F32(gvec), grow, scale, n, d, stream));
    char what[64];
    snprintf(what, sizeof what, "x (scale %g, rows without a vector)", scale);
    check_tol("add_rows", what, bf, gx, x, sz, bf ? TOL_BF16 : 0.0);
    free(x), free(vec);
    cudaFree(gx), cudaFree(gvec), cudaFree(grow);
}

/* ------------------------------------------------------------------------------------------ */

/* Refused arguments come back as negative codes and launch nothing; empty calls succeed. */
static void test_refusals(void) {
    int before = test_failures;
    CHECK(melbo_cuda_attention_decode_f32(NULL, 2 * 512, NULL, NULL, 8, NULL, NULL, NULL, 1, 2, 1,
                                          512, 8, stream) == MELBO_EUNSUPPORTED);
    CHECK(melbo_cuda_attention_decode_f32(NULL, 3 * 64, NULL, NULL, 8, NULL, NULL, NULL, 1, 3, 2,
                                          64, 8, stream) == MELBO_EINVAL); /* nq % nkv */
    CHECK(melbo_cuda_attention_decode_f32(NULL, 2 * 64, NULL, NULL, 8, NULL, NULL, NULL, 1, 2, 1,
                                          64, 9, stream) == MELBO_EINVAL); /* max_pos > cap */
    CHECK(melbo_cuda_attention_decode_f32(NULL, 2 * 64 - 1, NULL, NULL, 8, NULL, NULL, NULL, 1, 2,
                                          1, 64, 8, stream) == MELBO_EINVAL); /* ldq */
    CHECK(melbo_cuda_attention_decode_f32(NULL, 2 * 64, NULL, NULL, 8, NULL, NULL, NULL, 0, 2, 1,
                                          64, 8, stream) == 0);
    CHECK(melbo_cuda_kv_append_f32(NULL, 4 * 64 - 1, 2, 1, 64, NULL, NULL, 1, NULL, NULL, 8,
                                   stream) == MELBO_EINVAL); /* ld */
    CHECK(melbo_cuda_kv_append_f32(NULL, 4 * 64, 2, 1, 64, NULL, NULL, 1, NULL, NULL, 0, stream) ==
          MELBO_EINVAL); /* cap */
    CHECK(melbo_cuda_kv_append_bf16(NULL, 4 * 64, 2, 1, 64, NULL, NULL, 0, NULL, NULL, 8, stream) ==
          0);
    CHECK(melbo_cuda_embed_f32(NULL, NULL, NULL, 4, 0, 10, stream) == MELBO_EINVAL);
    CHECK(melbo_cuda_embed_bf16(NULL, NULL, NULL, 4, 8, 0, stream) == MELBO_EINVAL);
    CHECK(melbo_cuda_embed_f32(NULL, NULL, NULL, 0, 8, 10, stream) == 0);
    CHECK(melbo_cuda_argmax_f32(NULL, 4, 0, NULL, stream) == MELBO_EINVAL);
    CHECK(melbo_cuda_argmax_f32(NULL, -1, 10, NULL, stream) == MELBO_EINVAL);
    CHECK(melbo_cuda_add_rows_f32(NULL, NULL, NULL, 1.0f, -1, 8, stream) == MELBO_EINVAL);
    CHECK(melbo_cuda_add_rows_bf16(NULL, NULL, NULL, 1.0f, 4, 0, stream) == MELBO_EINVAL);
    CUDA_OK(cudaStreamSynchronize(stream));
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
        test_embed(bf);
        test_decode_shapes(bf);
        test_decode_edges(bf);
        test_add_rows(bf, 1.0f);
        test_add_rows(bf, -0.75f);
    }
    test_argmax(50257);
    test_argmax(151936);
    test_argmax(1);
    test_argmax(33);
    test_refusals();
    CUDA_OK(cudaStreamDestroy(stream));
    return test_exit_code();
}
