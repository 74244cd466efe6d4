/*
 * rank/gpu/bench.h - what `melbo-rank bench` measures and its options: MELBO
 * training steps and steered generation on the GPU for a model of any shape, with random weights
 * drawn in device memory (no checkpoint).
 *
 * Training: one prompt of `tokens` positions, p = 2, q = 1, every token a target, waves of each
 * size in `waves`: seconds per vector-step (a step of a wave of B vectors counts B), TFLOP/s of
 * the span's matrix products (forward + input-gradient backward), and peak device memory (what
 * melbo allocated, like torch's max_memory_allocated, and the device's used total). Generation:
 * greedy decoding of gen_batch sequences with a steering vector added after block `source`.
 * Every figure is printed on stdout as a line "RESULT {json}" as well as in words.
 *
 * This header is plain C and compiles in every build; melbo_gpu_bench_run exists only in CUDA
 * builds, and rank/backend.c's melbo_backend_bench is the one caller.
 */
#ifndef MELBO_RANK_GPU_BENCH_H
#define MELBO_RANK_GPU_BENCH_H

#include "common/err.h"
#include "options/opt.h"
#include "rank/model/config.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The options of `melbo-rank bench`: X(KIND, field, "name", default, check, flags, metavar, help)
 * (options/opt.h); rank/cmd_bench.c holds the table. */
#define MELBO_BENCH_OPTIONS(X, G)                                                                  \
    X(PATH, config, "config", NULL, MELBO_OPT_ANY, MELBO_OPT_REQUIRED, "FILE",                     \
      "config.json of the model's shape")                                                          \
    X(FLAG, random_weights, "random-weights", "0", MELBO_OPT_ANY, 0, NULL,                         \
      "draw random weights in GPU memory (bench reads no checkpoint)")                             \
    X(CHOICE, bf16, "dtype", "bf16", MELBO_OPT_CHOICES("fp32|bf16"), 0, NULL,                      \
      "weights and activations")                                                                   \
    X(STR, wave_list, "waves", "1,32,128", MELBO_OPT_ANY, 0, "B,B,...",                            \
      "wave sizes to time (up to 16, each 1..4096)")                                               \
    X(INT, source, "source", "7", MELBO_OPT_GE(0), 0, "S", "source layer (clamped to the model)")  \
    X(INT, target, "target", "40", MELBO_OPT_GE(0), 0, "T", "target layer (clamped to the model)") \
    X(INT, tokens, "tokens", "32", MELBO_OPT_IN(1, 16777216), 0, "N", "prompt length")             \
    X(INT, steps, "steps", "5", MELBO_OPT_IN(1, 16777216), 0, "N", "timed steps per wave")         \
    X(INT, warmup, "warmup", "2", MELBO_OPT_IN(0, 16777216), 0, "N", "untimed steps per wave")     \
    X(FLAG, gen, "gen", "1", MELBO_OPT_ANY, 0, NULL, "time steered generation too")                \
    X(INT, gen_batch, "gen-batch", "64", MELBO_OPT_IN(1, 4096), 0, "N",                            \
      "sequences decoded together")                                                                \
    X(INT, gen_prompt, "gen-prompt", "32", MELBO_OPT_IN(1, 16777216), 0, "N",                      \
      "prompt tokens of each sequence")                                                            \
    X(INT, gen_tokens, "gen-tokens", "64", MELBO_OPT_IN(0, 16777216), 0, "N",                      \
      "new tokens of each sequence")                                                               \
    X(FLAG, profile, "profile", "0", MELBO_OPT_ANY, 0, NULL,                                       \
      "after timing each wave, 2 steps with per-stage GPU times")                                  \
    X(U64, seed, "seed", "0", MELBO_OPT_ANY, 0, "S", "random weights and inputs")

struct melbo_bench_opts {
    MELBO_BENCH_OPTIONS(MELBO_OPT_FIELD, MELBO_OPT_NO_HEADING)
    int waves[16], n_waves; // --waves as numbers
};

/* Runs the benchmark on the device for a model of config cfg; prints as it goes. Returns 0 or an
 * error (layers that do not fit, device memory, a CUDA failure named). */
int melbo_gpu_bench_run(const struct melbo_bench_opts *o, const struct melbo_model_config *cfg,
                        struct melbo_err *err);

#ifdef __cplusplus
}
#endif
#endif
