/*
 * rank/cmd_bench.c - `melbo-rank bench`: times MELBO training steps and steered generation on the
 * GPU for a model of any shape with random weights drawn in device memory (no checkpoint).
 *
 *   melbo-rank bench --config config.json --random-weights [--dtype bf16|fp32] [--waves 1,32,128]
 *                    [--source 7] [--target 40] [--tokens 32] [--steps 5] [--warmup 2]
 *                    [--gen-batch 64] [--gen-prompt 32] [--gen-tokens 64] [--no-gen] [--seed 0]
 *
 * This file holds the options' table (rank/gpu/bench.h lists them) and reads the config; what is measured and printed is
 * rank/gpu/bench.h's, run through melbo_backend_bench (rank/backend.h), which refuses in a build
 * without CUDA.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/mem.h"
#include "common/file.h"
#include "rank/backend.h"
#include "rank/commands.h"
#include "rank/gpu/bench.h"
#include "rank/model/config.h"

#define MELBO_OPT_STRUCT struct melbo_bench_opts
static const struct melbo_opt bench_rows[] = {
    MELBO_BENCH_OPTIONS(MELBO_OPT_ROW, MELBO_OPT_HEADING_ROW)};
#undef MELBO_OPT_STRUCT
static const struct melbo_opt_table bench_table = {bench_rows, MELBO_ARRAY_SIZE(bench_rows)};

static void bench_usage(FILE *f) {
    fprintf(f, "usage: melbo-rank bench --config config.json --random-weights [options]\n\n");
    melbo_opts_usage(f, &bench_table, 0);
}

/* --waves "1,32,128" into o->waves. */
static int parse_waves(struct melbo_bench_opts *o, struct melbo_err *err) {
    const char *s = o->wave_list;
    o->n_waves = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > 4096 || o->n_waves == 16 || (*end && *end != ','))
            return melbo_err_set(err, MELBO_EINVAL,
                                 "--waves '%s': expected up to 16 sizes 1..4096, comma-separated",
                                 o->wave_list);
        o->waves[o->n_waves++] = (int)v;
        s = *end == ',' ? end + 1 : end;
    }
    return o->n_waves ? 0 : melbo_err_set(err, MELBO_EINVAL, "--waves is empty");
}

/* Returns 0, 1 after --help (usage printed), or a negative code with err set. */
static int bench_parse(struct melbo_bench_opts *o, int argc, char **argv, struct melbo_err *err) {
    struct melbo_opts_parse_cfg cfg = {"melbo-rank bench", 0, 0, NULL, NULL};
    memset(o, 0, sizeof *o);
    melbo_opts_init(&bench_table, o);
    int ret = melbo_opts_parse(&bench_table, o, argc, argv, &cfg, err);
    if (ret == 1)
        bench_usage(stdout);
    if (ret == 0 && !o->random_weights)
        ret = melbo_err_set(err, MELBO_EINVAL,
                            "bench needs --config config.json --random-weights (a model of that "
                            "shape is drawn in GPU memory)");
    return ret ? ret : parse_waves(o, err);
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

int melbo_cmd_bench(int argc, char **argv) {
    struct melbo_bench_opts o;
    struct melbo_model_config cfg;
    struct melbo_err err = {0};
    int ret = bench_parse(&o, argc, argv, &err);
    if (ret == 0)
        ret = load_config(o.config, &cfg, &err);
    if (ret == 0)
        ret = melbo_backend_bench(&o, &cfg, &err);
    melbo_opts_free(&bench_table, &o);
    if (ret < 0)
        fprintf(stderr, "melbo-rank bench: %s\n", err.msg);
    return ret == 1 ? 0 : ret < 0 ? 1 : 0;
}
