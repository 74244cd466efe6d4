/*
 * rank/cmd_bench.c - `melbo-rank bench`: times MELBO training steps and steered generation on the
 * GPU for a model of any shape with random weights drawn in device memory (no checkpoint).
 *
 *   melbo-rank bench --config config.json --random-weights [--dtype bf16|fp32] [--waves 1,32,128]
 *                    [--source 7] [--target 40] [--tokens 32] [--steps 5] [--warmup 2]
 *                    [--gen-batch 64] [--gen-prompt 32] [--gen-tokens 64] [--no-gen] [--seed 0]
 *
 * Training: one prompt of --tokens positions, p = 2, q = 1, every token a target, waves of each
 * size in --waves: seconds per vector-step (a step of a wave of B vectors counts B), TFLOP/s of
 * the span's matrix products (forward + input-gradient backward), and peak device memory (what
 * melbo allocated, like torch's max_memory_allocated, and the device's used total). Generation:
 * greedy decoding of --gen-batch sequences with a steering vector added after block --source.
 * Every figure is printed as a line "RESULT {json}" as well as in words.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/file.h"
#include "rank/commands.h"
#include "rank/model/config.h"
#include "rank/train/params.h"

#ifdef MELBO_HAVE_CUDA
#include <math.h>

#include "common/mem.h"
#include "rank/cpu/span.h"
#include "rank/gpu/decode.h"
#include "rank/gpu/ops.h"
#include "rank/gpu/prof.h"
#include "rank/gpu/wave.h"
#include "rank/train/progress.h"
#endif

struct bench_opts {
    const char *config;
    int random_weights;
    int bf16;
    int waves[16], n_waves;
    int source, target, tokens, steps, warmup;
    int gen, gen_batch, gen_prompt, gen_tokens;
    int profile;
    unsigned long long seed;
};

static void bench_usage(FILE *f) {
    fprintf(f,
            "usage: melbo-rank bench --config config.json --random-weights [options]\n"
            "  --dtype bf16|fp32     weights and activations (default bf16)\n"
            "  --waves 1,32,128      wave sizes to time\n"
            "  --source S --target T layers (default 7 and 40, clamped to the model)\n"
            "  --tokens N            prompt length (default 32)\n"
            "  --steps N --warmup N  timed and untimed steps per wave (default 5 and 2)\n"
            "  --gen-batch N         sequences decoded together (default 64)\n"
            "  --gen-prompt N --gen-tokens N  prompt and new tokens (default 32, 64)\n"
            "  --no-gen              skip the generation benchmark\n"
            "  --profile             after timing each wave, 2 steps with per-stage GPU times\n"
            "  --seed N              random weights and inputs\n");
}

static int parse_waves(const char *s, struct bench_opts *o, struct melbo_err *err) {
    o->n_waves = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > 4096 || o->n_waves == 16)
            return melbo_err_set(err, MELBO_EINVAL, "--waves '%s': expected up to 16 sizes 1..4096",
                                 s);
        o->waves[o->n_waves++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            return melbo_err_set(err, MELBO_EINVAL, "--waves: unexpected '%s'", end);
    }
    return o->n_waves ? 0 : melbo_err_set(err, MELBO_EINVAL, "--waves is empty");
}

static int parse_pos_int(const char *opt, const char *val, int *out, struct melbo_err *err) {
    char *end;
    long v = strtol(val, &end, 10);
    if (*val == '\0' || *end != '\0' || v < 0 || v > 1 << 24)
        return melbo_err_set(err, MELBO_EINVAL, "%s '%s' is not a non-negative integer", opt, val);
    *out = (int)v;
    return 0;
}

static int bench_parse(struct bench_opts *o, int argc, char **argv, struct melbo_err *err) {
    memset(o, 0, sizeof *o);
    o->bf16 = 1;
    o->waves[0] = 1, o->waves[1] = 32, o->waves[2] = 128, o->n_waves = 3;
    o->source = 7, o->target = 40, o->tokens = 32, o->steps = 5, o->warmup = 2;
    o->gen = 1, o->gen_batch = 64, o->gen_prompt = 32, o->gen_tokens = 64;
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        int ret = 0;
        if (!strcmp(opt, "--help") || !strcmp(opt, "-h")) {
            bench_usage(stdout);
            return 1;
        } else if (!strcmp(opt, "--random-weights")) {
            o->random_weights = 1;
            continue;
        } else if (!strcmp(opt, "--no-gen")) {
            o->gen = 0;
            continue;
        } else if (!strcmp(opt, "--profile")) {
            o->profile = 1;
            continue;
        }
        if (val == NULL)
            return melbo_err_set(err, MELBO_EINVAL, "unknown option or missing value: '%s'", opt);
        i++;
        if (!strcmp(opt, "--config"))
            o->config = val;
        else if (!strcmp(opt, "--dtype"))
            ret = melbo_dtype_flag_parse(val, &o->bf16, err);
        else if (!strcmp(opt, "--waves"))
            ret = parse_waves(val, o, err);
        else if (!strcmp(opt, "--source"))
            ret = parse_pos_int(opt, val, &o->source, err);
        else if (!strcmp(opt, "--target"))
            ret = parse_pos_int(opt, val, &o->target, err);
        else if (!strcmp(opt, "--tokens"))
            ret = parse_pos_int(opt, val, &o->tokens, err);
        else if (!strcmp(opt, "--steps"))
            ret = parse_pos_int(opt, val, &o->steps, err);
        else if (!strcmp(opt, "--warmup"))
            ret = parse_pos_int(opt, val, &o->warmup, err);
        else if (!strcmp(opt, "--gen-batch"))
            ret = parse_pos_int(opt, val, &o->gen_batch, err);
        else if (!strcmp(opt, "--gen-prompt"))
            ret = parse_pos_int(opt, val, &o->gen_prompt, err);
        else if (!strcmp(opt, "--gen-tokens"))
            ret = parse_pos_int(opt, val, &o->gen_tokens, err);
        else if (!strcmp(opt, "--seed"))
            o->seed = strtoull(val, NULL, 10);
        else
            return melbo_err_set(err, MELBO_EINVAL, "unknown option '%s'", opt);
        if (ret)
            return ret;
    }
    if (o->config == NULL || !o->random_weights)
        return melbo_err_set(err, MELBO_EINVAL,
                             "bench needs --config config.json --random-weights (a model of that "
                             "shape is drawn in GPU memory)");
    if (o->tokens < 1 || o->steps < 1 || o->gen_batch < 1 || o->gen_prompt < 1)
        return melbo_err_set(err, MELBO_EINVAL, "--tokens, --steps, --gen-batch and --gen-prompt "
                                                "must be >= 1");
    return 0;
}

static int load_config(const char *path, struct melbo_model_config *cfg, struct melbo_err *err) {
    char *text = NULL;
    size_t len = 0;
    int ret = melbo_file_read(path, &text, &len, err);
    if (ret == 0)
        ret = melbo_config_parse(cfg, text, len, path, err);
    free(text);
    return ret;
}

#ifdef MELBO_HAVE_CUDA

/* What melbo itself holds on the device (weights, buffers, cuBLASLt workspace). */
static double held_gb(const struct melbo_gpu_model *g, const struct melbo_gpu_wave *w,
                      size_t extra) {
    size_t b = g->arena_bytes + ((size_t)32 << 20) + extra;
    if (w)
        b += w->arena_bytes + w->span.arena_bytes;
    return b / 1e9;
}

static int bench_wave(const struct bench_opts *o, const struct melbo_gpu_model *g, const void *x0,
                      int B, struct melbo_err *err) {
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
    rc = rc ? rc : melbo_cuda_fill_normal_f32(w.theta, (size_t)B * d, 0.0f,
                                              (float)(R / sqrt((double)d)), o->seed + 77, g->stream);
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

static int bench_gen(const struct bench_opts *o, const struct melbo_gpu_model *g,
                     struct melbo_err *err) {
    int nb = o->gen_batch, d = g->cfg.d_model;
    struct melbo_gpu_decoder dec;
    int ret = melbo_gpu_decoder_init(&dec, g, nb, o->gen_prompt + o->gen_tokens, 0, o->source,
                                     err);
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
    double t0 = melbo_now();
    if (ret == 0)
        ret = melbo_gpu_decoder_greedy(&dec, prompts, nb, o->gen_prompt, theta, o->gen_tokens, out,
                                       err);
    double dt = melbo_now() - t0;
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

static int bench_run(const struct bench_opts *o, struct melbo_model_config *cfg,
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
    double t0 = melbo_now();
    ret = melbo_gpu_model_init_random(&g, cfg, &lo, o->bf16 ? MELBO_GPU_BF16 : MELBO_GPU_F32,
                                      o->seed, err);
    if (ret) {
        melbo_gpu_model_free(&g);
        return ret;
    }
    printf("weights: %.2f GB drawn in %.2f s\n", g.arena_bytes / 1e9, melbo_now() - t0);
    size_t n0 = (size_t)o->tokens * cfg->d_model;
    void *x0 = NULL;
    int rc = (int)cudaMalloc(&x0, n0 * melbo_gpu_dtype_size(g.dtype));
    rc = rc ? rc : (o->bf16 ? melbo_cuda_fill_normal_bf16(x0, n0, 0, 1, o->seed + 5, g.stream)
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
#endif

int melbo_cmd_bench(int argc, char **argv) {
    struct bench_opts o;
    struct melbo_err err = {0};
    int ret = bench_parse(&o, argc, argv, &err);
    if (ret == 1)
        return 0;
    struct melbo_model_config cfg;
    if (ret == 0)
        ret = load_config(o.config, &cfg, &err);
#ifdef MELBO_HAVE_CUDA
    if (ret == 0)
        ret = bench_run(&o, &cfg, &err);
#else
    if (ret == 0)
        ret = melbo_err_set(&err, MELBO_EUNSUPPORTED,
                            "bench runs on the GPU: this melbo-rank was built without CUDA");
#endif
    if (ret) {
        fprintf(stderr, "melbo-rank bench: %s\n", err.msg);
        return 1;
    }
    return 0;
}
