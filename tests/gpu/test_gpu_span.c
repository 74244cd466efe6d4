/*
 * tests/gpu/test_gpu_span.c GOLDEN_DIR - the CUDA backend (rank/gpu/) against the CPU backend on
 * every golden checkpoint: the whole decoder stack forward and input-gradient backward, saved and
 * recomputed, in fp32 (rel <= 1e-4 against the CPU, whose own distance to transformers is
 * <= 7e-7) and in bf16 (hidden states rel <= 2e-2); one MELBO step on the device against the CPU
 * wave's arithmetic (rank/cpu/wave.c, written out per pair here); greedy steered decoding, fp32
 * tokens identical to the CPU decoder's.
 * rel = max|a - b| / max|b|. One line per check. Exits 77 when no CUDA device is present.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "common/mem.h"
#include "common/rng.h"
#include "rank/cpu/decode.h"
#include "rank/cpu/span.h"
#include "rank/generate/sampler.h"
#include "rank/gpu/decode.h"
#include "rank/gpu/ops.h"
#include "rank/gpu/span.h"
#include "rank/gpu/wave.h"
#include "rank/method/objective.h"
#include "tests/test.h"

static const char *MODELS[] = {"llama2", "llama3", "llama3_bf16", "mistral", "qwen1",
                               "qwen2",  "qwen3",  "qwen3_sharded"};

static double rel(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]), m = fabs((double)b[i]);
        num = e > num ? e : num;
        den = m > den ? m : den;
    }
    return den > 0 ? num / den : num;
}

static void check(const char *model, const char *what, double r, double tol) {
    int ok = r <= tol && !isnan(r);
    printf("%s %-14s %-44s rel=%.3g (<= %g)\n", ok ? "ok  " : "FAIL", model, what, r, tol);
    if (!ok)
        test_failures++;
}

#define GPU_OK(expr)                                                                               \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_) {                                                                                 \
            TEST_FAIL_("%s: %s", #expr, melbo_cuda_strerror(rc_));                                 \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* dst (n) device T <- src (n) host fp32 */
static void up(const struct melbo_gpu_model *g, void *dst, const float *src, size_t n) {
    float *tmp;
    GPU_OK((int)cudaMalloc((void **)&tmp, n * 4));
    GPU_OK((int)cudaMemcpy(tmp, src, n * 4, cudaMemcpyHostToDevice));
    GPU_OK(melbo_gpu_from_f32(g, dst, tmp, n));
    GPU_OK((int)cudaStreamSynchronize(g->stream));
    cudaFree(tmp);
}

/* dst (n) host fp32 <- src (n) device T */
static void down(const struct melbo_gpu_model *g, float *dst, const void *src, size_t n) {
    float *tmp;
    GPU_OK((int)cudaMalloc((void **)&tmp, n * 4));
    GPU_OK(melbo_gpu_to_f32(g, tmp, src, n));
    GPU_OK((int)cudaMemcpyAsync(dst, tmp, n * 4, cudaMemcpyDeviceToHost, g->stream));
    GPU_OK((int)cudaStreamSynchronize(g->stream));
    cudaFree(tmp);
}

/* Forward and backward of blocks [0, L) on the GPU in mode; out, dx (n, d) host. */
static void gpu_span(const struct melbo_gpu_model *g, const struct melbo_seqs *seqs,
                     const float *x, const float *dy, enum melbo_gpu_span_mode mode, float *out,
                     float *dx) {
    struct melbo_gpu_span sp;
    struct melbo_err err;
    size_t n = (size_t)seqs->n_tok * g->cfg.d_model;
    if (melbo_gpu_span_init(&sp, g, 0, g->cfg.n_layers, seqs->n_tok, seqs->n_seq, mode, &err)) {
        TEST_FAIL_("span init: %s", err.msg);
        abort();
    }
    void *buf;
    GPU_OK((int)cudaMalloc(&buf, n * 4));
    GPU_OK(melbo_gpu_span_set_seqs(&sp, seqs));
    up(g, buf, x, n);
    GPU_OK(melbo_gpu_span_forward(&sp, buf));
    down(g, out, buf, n);
    up(g, buf, dy, n);
    GPU_OK(melbo_gpu_span_backward(&sp, buf));
    down(g, dx, buf, n);
    cudaFree(buf);
    melbo_gpu_span_free(&sp);
}

/* CPU greedy decoding of n prompts (plen each) steered by theta after block src, n_new tokens. */
static void cpu_greedy(const struct melbo_model *m, const int32_t *prompts, int n, int plen,
                       const float *theta, int src, int n_new, int32_t *out) {
    struct melbo_cpu_decoder dec;
    struct melbo_err err;
    int V = m->cfg.vocab;
    melbo_cpu_decoder_init(&dec, m, n, plen + n_new, n * plen, src, NULL);
    float *logits = melbo_xalloc_f32((size_t)n * V);
    int *slot = melbo_xmalloc(sizeof(int) * n), *len = melbo_xmalloc(sizeof(int) * n);
    const float **steer = melbo_xcalloc((size_t)n, sizeof *steer);
    int32_t *tok = melbo_xmalloc(sizeof(int32_t) * (size_t)n * plen);
    for (int r = 0; r < n; r++) {
        slot[r] = r;
        len[r] = plen;
        steer[r] = theta;
    }
    memcpy(tok, prompts, sizeof(int32_t) * (size_t)n * plen);
    for (int j = 0; j < n_new; j++) {
        if (melbo_cpu_decoder_forward(&dec, tok, n, slot, len, steer, NULL, logits, &err)) {
            TEST_FAIL_("cpu decoder: %s", err.msg);
            abort();
        }
        for (int r = 0; r < n; r++) {
            tok[r] = melbo_argmax(logits + (size_t)r * V, V);
            out[(size_t)r * n_new + j] = tok[r];
            len[r] = 1;
        }
    }
    free(logits);
    free(slot);
    free(len);
    free(steer);
    free(tok);
    melbo_cpu_decoder_free(&dec);
}

/* One MELBO step of 3 vectors x 2 prompts on the device against the CPU objective and sum. */
static void wave_check(const char *name, const struct melbo_gpu_model *g,
                       const struct melbo_model *m, const struct melbo_seqs *ps,
                       const float *x0, double tol) {
    int L = m->cfg.n_layers, d = m->cfg.d_model, s = 0, t = L, B = 3, P = ps->n_seq;
    size_t np = (size_t)ps->n_tok * d;
    int *lens = melbo_xmalloc(sizeof(int) * P), **idx = melbo_xmalloc(sizeof(int *) * P);
    int *n_idx = melbo_xmalloc(sizeof(int) * P);
    for (int i = 0; i < P; i++) {
        lens[i] = ps->start[i + 1] - ps->start[i];
        n_idx[i] = lens[i] - 1; /* targets 1.. */
        idx[i] = melbo_xmalloc(sizeof(int) * lens[i]);
        for (int k = 0; k < n_idx[i]; k++)
            idx[i][k] = k + 1;
    }
    void *x0d;
    GPU_OK((int)cudaMalloc(&x0d, np * 4));
    up(g, x0d, x0, np);
    struct melbo_gpu_wave w;
    struct melbo_err err;
    if (melbo_gpu_wave_init(&w, g, s, t, lens, P, idx, n_idx, B, x0d, 0, &err)) {
        TEST_FAIL_("wave init: %s", err.msg);
        abort();
    }
    /* CPU: X = block 0 of x0, Y = blocks 1..L-1 of X */
    float *X = melbo_xalloc_f32(np), *Y = melbo_xalloc_f32(np);
    memcpy(X, x0, np * 4);
    struct melbo_cpu_span sp;
    melbo_cpu_span_init(&sp, m, 0, 1, ps->n_tok, 0);
    melbo_cpu_span_forward(&sp, ps, X);
    melbo_cpu_span_free(&sp);
    memcpy(Y, X, np * 4);
    melbo_cpu_span_init(&sp, m, 1, t, ps->n_tok, 0);
    melbo_cpu_span_forward(&sp, ps, Y);
    melbo_cpu_span_free(&sp);
    float *Yg = melbo_xalloc_f32(np);
    GPU_OK((int)cudaMemcpy(Yg, w.Y, np * 4, cudaMemcpyDeviceToHost));
    check(name, "wave prefix Y", rel(Yg, Y, np), tol);
    /* vectors */
    float *theta = melbo_xalloc_f32((size_t)B * d);
    melbo_rng_normal_f32(99, 2, theta, (size_t)B * d);
    for (int i = 0; i < B * d; i++)
        theta[i] *= 0.5f;
    GPU_OK((int)cudaMemcpy(w.theta, theta, sizeof(float) * B * d, cudaMemcpyHostToDevice));
    GPU_OK(melbo_gpu_wave_batch(&w, B, 0, B * P));
    GPU_OK(melbo_gpu_wave_step(&w, 2.0, 1.0, 0));
    float *grad = melbo_xalloc_f32((size_t)B * d), *F = melbo_xalloc_f32((size_t)B * P);
    GPU_OK((int)cudaMemcpyAsync(grad, w.grad, sizeof(float) * B * d, cudaMemcpyDeviceToHost,
                                g->stream));
    GPU_OK((int)cudaMemcpyAsync(F, w.F, sizeof(float) * B * P, cudaMemcpyDeviceToHost, g->stream));
    GPU_OK((int)cudaStreamSynchronize(g->stream));
    /* CPU twin of the same step */
    int *wl = melbo_xmalloc(sizeof(int) * B * P);
    for (int k = 0; k < B * P; k++)
        wl[k] = lens[k % P];
    struct melbo_seqs ws;
    melbo_seqs_init(&ws, wl, B * P);
    size_t nw = (size_t)ws.n_tok * d;
    float *buf = melbo_xalloc_f32(nw), *dbuf = melbo_xalloc_f32(nw);
    for (int k = 0; k < B * P; k++)
        for (int r = 0; r < lens[k % P]; r++)
            for (int j = 0; j < d; j++)
                buf[((size_t)ws.start[k] + r) * d + j] =
                    X[((size_t)ps->start[k % P] + r) * d + j] + theta[(size_t)(k / P) * d + j];
    melbo_cpu_span_init(&sp, m, 1, t, ws.n_tok, 1);
    melbo_cpu_span_forward(&sp, &ws, buf);
    double *scratch = melbo_xmalloc(sizeof(double) * d);
    float *Fc = melbo_xalloc_f32((size_t)B * P);
    for (int k = 0; k < B * P; k++) {
        size_t off = (size_t)ws.start[k] * d;
        Fc[k] = (float)melbo_objective(buf + off, Y + (size_t)ps->start[k % P] * d, lens[k % P], d,
                                       idx[k % P], n_idx[k % P], 2.0, 1.0, 0, dbuf + off, scratch);
    }
    melbo_cpu_span_backward(&sp, &ws, dbuf);
    melbo_cpu_span_free(&sp);
    float *gc = melbo_xcalloc((size_t)B * d, sizeof(float));
    double *acc = melbo_xcalloc((size_t)B * d, sizeof(double));
    for (int k = 0; k < B * P; k++)
        for (int r = 0; r < lens[k % P]; r++)
            for (int j = 0; j < d; j++)
                acc[(size_t)(k / P) * d + j] += dbuf[((size_t)ws.start[k] + r) * d + j];
    for (int i = 0; i < B * d; i++)
        gc[i] = (float)acc[i];
    check(name, "wave step objective F per pair", rel(F, Fc, (size_t)B * P), tol);
    check(name, "wave step gradient (B, d)", rel(grad, gc, (size_t)B * d), tol);
    melbo_gpu_wave_free(&w);
    cudaFree(x0d);
    for (int i = 0; i < P; i++)
        free(idx[i]);
    free(idx);
    free(lens);
    free(n_idx);
    free(X);
    free(Y);
    free(Yg);
    free(theta);
    free(grad);
    free(F);
    free(wl);
    free(buf);
    free(dbuf);
    free(scratch);
    free(Fc);
    free(gc);
    free(acc);
    melbo_seqs_free(&ws);
}

static void test_model(const char *golden, const char *name) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/models/%s", golden, name);
    struct melbo_model m;
    struct melbo_err err;
    struct melbo_load_opts lo = melbo_load_opts_all();
    if (melbo_model_load(&m, dir, &lo, &err)) {
        TEST_FAIL_("%s: %s", dir, err.msg);
        return;
    }
    int L = m.cfg.n_layers, d = m.cfg.d_model, V = m.cfg.vocab;
    int lens[3] = {7, 12, 1};
    struct melbo_seqs seqs;
    melbo_seqs_init(&seqs, lens, 3);
    size_t n = (size_t)seqs.n_tok * d;
    uint64_t st = 7;
    int32_t *ids = melbo_xmalloc(sizeof(int32_t) * seqs.n_tok);
    for (int i = 0; i < seqs.n_tok; i++) {
        st = st * 6364136223846793005ULL + 1442695040888963407ULL;
        ids[i] = (int32_t)((st >> 33) % (uint64_t)V);
    }
    float *x = melbo_xalloc_f32(n), *dy = melbo_xalloc_f32(n);
    melbo_cpu_embed(&m, ids, seqs.n_tok, x);
    melbo_rng_normal_f32(7, 1, dy, n);
    float *out = melbo_xalloc_f32(n), *dx = melbo_xalloc_f32(n);
    memcpy(out, x, n * 4);
    memcpy(dx, dy, n * 4);
    struct melbo_cpu_span sp;
    melbo_cpu_span_init(&sp, &m, 0, L, seqs.n_tok, 1);
    melbo_cpu_span_forward(&sp, &seqs, out);
    melbo_cpu_span_backward(&sp, &seqs, dx);
    melbo_cpu_span_free(&sp);

    float *gout = melbo_xalloc_f32(n), *gdx = melbo_xalloc_f32(n);
    float *rout = melbo_xalloc_f32(n), *rdx = melbo_xalloc_f32(n);
    for (int bf = 0; bf <= 1; bf++) {
        struct melbo_gpu_model g;
        if (melbo_gpu_model_upload(&g, &m, bf ? MELBO_GPU_BF16 : MELBO_GPU_F32, &err)) {
            TEST_FAIL_("%s upload: %s", name, err.msg);
            abort();
        }
        double tol = bf ? 2e-2 : 1e-4;
        const char *dt = bf ? "bf16" : "fp32";
        char what[96];
        gpu_span(&g, &seqs, x, dy, MELBO_GPU_SPAN_SAVE, gout, gdx);
        snprintf(what, sizeof what, "%s hidden_states[L] (all blocks)", dt);
        check(name, what, rel(gout, out, n), tol);
        snprintf(what, sizeof what, "%s backward dL/dx (all blocks)", dt);
        check(name, what, rel(gdx, dx, n), tol);
        gpu_span(&g, &seqs, x, dy, MELBO_GPU_SPAN_RECOMPUTE, rout, rdx);
        snprintf(what, sizeof what, "%s recompute == save (out, dx)", dt);
        double r2 = rel(rout, gout, n), r3 = rel(rdx, gdx, n);
        check(name, what, r2 > r3 ? r2 : r3, 0.0);
        if (!bf) {
            struct melbo_seqs ps;
            int pl[2] = {5, 9};
            melbo_seqs_init(&ps, pl, 2);
            wave_check(name, &g, &m, &ps, x, tol);
            melbo_seqs_free(&ps);
        }
        /* greedy steered decoding: 3 prompts of 6 tokens, 8 new tokens, steering after block 0 */
        int nP = 3, plen = 6, n_new = 8, src = L > 1 ? 0 : -1;
        int32_t *pr = melbo_xmalloc(sizeof(int32_t) * nP * plen);
        for (int i = 0; i < nP * plen; i++)
            pr[i] = ids[i % seqs.n_tok];
        float *theta = melbo_xalloc_f32(d);
        melbo_rng_normal_f32(5, 3, theta, (size_t)d);
        for (int j = 0; j < d; j++)
            theta[j] *= 0.3f;
        int32_t *cg = melbo_xmalloc(sizeof(int32_t) * nP * n_new);
        int32_t *cc = melbo_xmalloc(sizeof(int32_t) * nP * n_new);
        struct melbo_gpu_decoder dec;
        if (melbo_gpu_decoder_init(&dec, &g, nP, plen + n_new, 0, src, &err) ||
            melbo_gpu_decoder_greedy(&dec, pr, nP, plen, theta, n_new, cg, &err)) {
            TEST_FAIL_("%s gpu decoder: %s", name, err.msg);
        } else {
            cpu_greedy(&m, pr, nP, plen, theta, src, n_new, cc);
            int same = 0;
            for (int i = 0; i < nP * n_new; i++)
                same += cg[i] == cc[i];
            snprintf(what, sizeof what, "%s greedy steered tokens identical (%d/%d)", dt, same,
                     nP * n_new);
            if (bf) /* bf16 may diverge after a near tie: reported, not required */
                printf("info %-14s %s\n", name, what);
            else
                check(name, what, (double)(nP * n_new - same), 0.0);
        }
        melbo_gpu_decoder_free(&dec);
        free(pr);
        free(theta);
        free(cg);
        free(cc);
        melbo_gpu_model_free(&g);
    }
    free(ids);
    free(x);
    free(dy);
    free(out);
    free(dx);
    free(gout);
    free(gdx);
    free(rout);
    free(rdx);
    melbo_seqs_free(&seqs);
    melbo_model_free(&m);
}

int main(int argc, char **argv) {
    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
        printf("skip: no CUDA device\n");
        return 77;
    }
    const char *golden = argc > 1 ? argv[1] : "tests/golden";
    for (size_t i = 0; i < sizeof MODELS / sizeof MODELS[0]; i++)
        test_model(golden, MODELS[i]);
    printf("%s\n", test_failures ? "FAILED" : "all passed");
    return test_failures ? 1 : 0;
}
