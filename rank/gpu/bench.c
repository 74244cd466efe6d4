/*
 * rank/gpu/bench.c - `melbo-rank bench` on the device (rank/gpu/bench.h): training steps of waves
 * of each size and greedy steered generation on a model with random weights drawn in GPU memory.
 */
#include "rank/gpu/bench.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/mem.h"
#include "rank/cpu/span.h"
#include "rank/gpu/decode.h"
#include "rank/gpu/ops.h"
#include "rank/gpu/prof.h"
#include "rank/gpu/wave.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* What melbo itself holds on the device (weights, buffers, cuBLASLt workspace). */
static double held_gb(const struct melbo_gpu_model *g, const struct melbo_gpu_wave *w,
                      size_t extra) {
    size_t b = g->arena_bytes + ((size_t)32 << 20) + extra;
    if (w)
        b += w->arena_bytes + w->span.arena_bytes;
    return b / 1e9;
}

static int bench_wave(const struct melbo_bench_opts *o, const struct melbo_gpu_model *g,
                      const void *x0, int B, struct melbo_err *err) {
    int s = o->source, t = o->target, P = 1, lens[1] = {o->tokens};
    int *idx = melbo_xmalloc(sizeof(int) * (size_t)o->tokens);
    for (int i = 0; i < o->tokens; i++)
        idx[i] = i;
    int n_idx[1] = {o->tokens};
    struct melbo_gpu_wave w;
    int ret = melbo_gpu_wave_init(&w, g, s, t, lens, P, &idx, n_idx, B, x0, 0, err);
    free(idx);
    if (ret) {
        melbo_gpu_wave_free(&w);
        printf("RESULT {\"name\":\"melbo_train\",\"B\":%d,\"error\":\"%s\"}\n", B, err->msg);
        return ret;
    }
    int d = g->cfg.d_model, rc = 0;
    double R = 8.0;
    rc = melbo_gpu_wave_batch(&w, B, 0, B * P);
    rc = rc ? rc
            : melbo_cuda_fill_normal_f32(w.theta, (size_t)B * d, 0.0f, (float)(R / sqrt((double)d)),
                                         o->seed + 77, g->stream);
    rc = rc ? rc : (int)cudaMemsetAsync(w.m, 0, (size_t)B * d * 4, g->stream);
    rc = rc ? rc : (int)cudaMemsetAsync(w.v, 0, (size_t)B * d * 4, g->stream);
    rc = rc ? rc : (int)cudaMemsetAsync(w.vhat, 0, (size_t)B * d * 4, g->stream);
    float F_first = 0, F_last = 0;
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    int step = 0;
    for (int i = 0; i < o->warmup + o->steps && rc == 0; i++) {
        if (i == o->warmup)
            rc = (int)cudaEventRecord(e0, g->stream);
        rc = rc ? rc : melbo_gpu_wave_step(&w, 2.0, 1.0, 0);
        rc = rc ? rc : melbo_gpu_wave_update(&w, ++step, R, 1e-3, 0.9, 0.98, 1e-8);
        if (rc == 0 && (i == 0 || i == o->warmup + o->steps - 1)) {
            /* outside the timed region only for the first step; the last copy is tiny */
            float *F = i == 0 ? &F_first : &F_last;
            rc = (int)cudaMemcpyAsync(F, w.F, sizeof(float), cudaMemcpyDeviceToHost, g->stream);
        }
    }
    rc = rc ? rc : (int)cudaEventRecord(e1, g->stream);
    rc = rc ? rc : (int)cudaEventSynchronize(e1);
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    if (rc == 0 && o->profile) { /* untimed: events between every stage */
        melbo_gpu_prof_start(g->stream);
        for (int i = 0; i < 2 && rc == 0; i++) {
            rc = melbo_gpu_wave_step(&w, 2.0, 1.0, 0);
            rc = rc ? rc : melbo_gpu_wave_update(&w, ++step, R, 1e-3, 0.9, 0.98, 1e-8);
        }
        printf("B=%d ", B);
        melbo_gpu_prof_stop_print(stdout, 2);
    }
    size_t used = melbo_gpu_device_used();
    double per_step = ms / 1e3 / o->steps;
    double tflops = melbo_gpu_wave_step_flops(&w) / per_step / 1e12;
    double peak = held_gb(g, &w, 0);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    if (rc == 0) {
        printf("melbo train  B=%-4d %.6f s per vector-step  %.1f TFLOP/s  peak %.1f GB "
               "(device used %.1f GB)  span %s  F(vector 0) %.4g -> %.4g\n",
               B, per_step / B, tflops, peak, used / 1e9,
               w.span.mode == MELBO_GPU_SPAN_SAVE ? "saved" : "recomputed", F_first, F_last);
        printf("RESULT {\"name\":\"melbo_train\",\"B\":%d,\"s_per_vector_step\":%.7f,"
               "\"s_per_step\":%.6f,\"tflops\":%.2f,\"peak_gb\":%.2f,\"device_used_gb\":%.2f,"
               "\"recompute\":%d,\"F_first\":%.6g,\"F_last\":%.6g}\n",
               B, per_step / B, per_step, tflops, peak, used / 1e9,
               w.span.mode == MELBO_GPU_SPAN_RECOMPUTE, F_first, F_last);
    }
    fflush(stdout);
    melbo_gpu_wave_free(&w);
    return melbo_gpu_err(err, rc, "benchmark training step");
}

static int bench_gen(const struct melbo_bench_opts *o, const struct melbo_gpu_model *g,
                     struct melbo_err *err) {
    int nb = o->gen_batch, d = g->cfg.d_model;
    struct melbo_gpu_decoder dec;
    int ret = melbo_gpu_decoder_init(&dec, g, nb, o->gen_prompt + o->gen_tokens, 0, o->source, err);
    if (ret)
        return ret;
    int32_t *prompts = melbo_xmalloc(sizeof(int32_t) * (size_t)nb * o->gen_prompt);
    uint64_t x = o->seed * 6364136223846793005ULL + 1442695040888963407ULL;
    for (size_t i = 0; i < (size_t)nb * o->gen_prompt; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        prompts[i] = (int32_t)((x >> 33) % (uint64_t)g->cfg.vocab);
    }
    float *theta = melbo_xalloc_f32((size_t)d);
    for (int j = 0; j < d; j++) /* a fixed vector of norm 8 */
        theta[j] = (float)(8.0 / sqrt((double)d)) * (j % 2 ? 1.0f : -1.0f);
    int32_t *out = melbo_xmalloc(sizeof(int32_t) * (size_t)nb * o->gen_tokens);
    /* warm-up: a short run */
    ret = melbo_gpu_decoder_greedy(&dec, prompts, nb, o->gen_prompt, theta, 4, out, err);
    double t0 = now();
    if (ret == 0)
        ret = melbo_gpu_decoder_greedy(&dec, prompts, nb, o->gen_prompt, theta, o->gen_tokens, out,
                                       err);
    double dt = now() - t0;
    if (ret == 0) {
        double tps = (double)nb * o->gen_tokens / dt;
        printf("melbo generate batch=%d  %d+%d tokens  %.1f tokens/s  (%.3f s)\n", nb,
               o->gen_prompt, o->gen_tokens, tps, dt);
        printf("RESULT {\"name\":\"melbo_generate\",\"batch\":%d,\"tokens_per_s\":%.2f,"
               "\"seconds\":%.4f}\n",
               nb, tps, dt);
    }
    free(prompts);
    free(theta);
    free(out);
    melbo_gpu_decoder_free(&dec);
    return ret;
}

int melbo_gpu_bench_run(const struct melbo_bench_opts *o, const struct melbo_model_config *cfg,
                        struct melbo_err *err) {
    int dev = 0;
    int ret = melbo_gpu_select_device(&dev, err);
    if (ret)
        return ret;
    if (o->target > cfg->n_layers || o->source + 1 >= o->target)
        return melbo_err_set(err, MELBO_ERANGE,
                             "--source %d --target %d do not fit a %d-layer model (need "
                             "source + 1 < target <= layers)",
                             o->source, o->target, cfg->n_layers);
    struct cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, dev);
    printf("device: %s (%.1f GB), CUDA runtime %d, dtype %s\n", prop.name,
           prop.totalGlobalMem / 1e9, CUDART_VERSION, o->bf16 ? "bf16" : "fp32");
    printf("model: d %d, layers %d, heads %d/%d, head_dim %d, ff %d, vocab %d; span blocks "
           "%d..%d, prompt %d tokens\n",
           cfg->d_model, cfg->n_layers, cfg->n_heads, cfg->n_kv_heads, cfg->head_dim, cfg->d_ff,
           cfg->vocab, o->source + 1, o->target - 1, o->tokens);
    struct melbo_gpu_model g;
    struct melbo_load_opts lo = {0, o->gen ? -1 : o->target, o->gen, o->gen, 0, 1};
    double t0 = now();
    ret = melbo_gpu_model_init_random(&g, cfg, &lo, o->bf16 ? MELBO_GPU_BF16 : MELBO_GPU_F32,
                                      o->seed, err);
    if (ret) {
        melbo_gpu_model_free(&g);
        return ret;
    }
    printf("weights: %.2f GB drawn in %.2f s\n", g.arena_bytes / 1e9, now() - t0);
    size_t n0 = (size_t)o->tokens * cfg->d_model;
    void *x0 = NULL;
    int rc = (int)cudaMalloc(&x0, n0 * melbo_gpu_dtype_size(g.dtype));
    rc = rc ? rc
            : (o->bf16 ? melbo_cuda_fill_normal_bf16(x0, n0, 0, 1, o->seed + 5, g.stream)
                       : melbo_cuda_fill_normal_f32(x0, n0, 0, 1, o->seed + 5, g.stream));
    ret = melbo_gpu_err(err, rc, "drawing the prompt's embeddings");
    for (int i = 0; i < o->n_waves && ret == 0; i++)
        ret = bench_wave(o, &g, x0, o->waves[i], err);
    cudaFree(x0);
    if (ret == 0 && o->gen)
        ret = bench_gen(o, &g, err);
    melbo_gpu_model_free(&g);
    return ret;
}
