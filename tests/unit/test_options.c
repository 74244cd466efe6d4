/*
 * tests/unit/test_options.c - the option tables and their engine (options/): what a user types
 * becomes the settings the ranks use, the help page lists every option, bad input is refused
 * with a message naming the option and the value, a job spec by name gives the same settings
 * and the ranks' command line, and banks and checkpoints read the values back as text.
 *
 *   test_options DIR   DIR: a scratch directory (a --prompts file is written there)
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/mem.h"
#include "options/job.h"
#include "options/train.h"
#include "tests/test.h"

/* Parses a NULL-terminated list of arguments after "train" into p (defaults first). */
static int parse_train(struct melbo_train_params *p, struct melbo_err *err, ...) {
    char *argv[64] = {"train"};
    int argc = 1;
    va_list ap;
    va_start(ap, err);
    for (char *a; (a = va_arg(ap, char *)) != NULL && argc < 63;)
        argv[argc++] = a;
    va_end(ap);
    melbo_train_params_init(p);
    return melbo_train_params_parse(p, argc, argv, err);
}

#define BASE "--model", "/m", "--prompt", "hi", "--radius", "4", "--out", "/o.bank"

/* Expects parse of the arguments to fail with a message containing want. */
#define EXPECT_REFUSED(want, ...)                                                                  \
    do {                                                                                           \
        struct melbo_train_params p_;                                                              \
        struct melbo_err e_ = {0};                                                                 \
        int r_ = parse_train(&p_, &e_, __VA_ARGS__, NULL);                                         \
        if (r_ >= 0)                                                                               \
            TEST_FAIL_("accepted, expected \"%s\"", (want));                                       \
        ASSERT(r_ < 0);                                                                            \
        ASSERT_STR_CONTAINS(e_.msg, (want));                                                       \
        melbo_train_params_free(&p_);                                                              \
    } while (0)

static void test_defaults_and_values(void) {
    struct melbo_train_params p;
    struct melbo_err err = {0};
    ASSERT_OK(parse_train(&p, &err, BASE, NULL));
    ASSERT(!strcmp(p.model, "/m") && !strcmp(p.out, "/o.bank"));
    ASSERT_EQ(p.steps, 300);
    ASSERT_EQ(p.vectors, 32);
    ASSERT_EQ(p.source_layer, 7);
    ASSERT_EQ(p.target_layer, MELBO_OPT_UNSET_INT);
    ASSERT_EQ(p.wave, MELBO_OPT_UNSET_INT);
    ASSERT(isnan(p.q) && p.p == 2.0 && p.radius == 4.0 && !p.radius_auto);
    ASSERT(p.lr == 1e-3 && p.betas[0] == 0.9 && p.betas[1] == 0.98 && p.eps == 1e-8);
    ASSERT_EQ(p.loss_axis, MELBO_LOSS_AXIS_TOKEN);
    ASSERT(!strcmp(p.target_tokens.text, ":"));
    ASSERT_EQ(p.orthogonal, -1); /* decided by resolve: on for vectors, off for adapters */
    ASSERT_EQ(p.adapter_rank, 0);
    ASSERT(p.adapter_alpha == 0.35);
    ASSERT_EQ(p.generate, 1);
    ASSERT_EQ(p.device, MELBO_DEVICE_AUTO);
    ASSERT_EQ(p.gpu_bf16, 1);
    ASSERT_EQ(p.tp, 1);
    ASSERT_EQ(p.checkpoint_every, 50);
    ASSERT(p.threads <= 0);
    ASSERT(!strcmp(p.job_id, ""));
    ASSERT_EQ(p.gen.max_new_tokens, 64);
    ASSERT_EQ(p.gen.batch, 64);
    ASSERT(p.gen.top_p == 1.0 && p.gen.temperature == 0.0 && p.gen.repetition_penalty == 1.0);
    ASSERT_EQ(p.prompts.n, 1);
    ASSERT_EQ(p.prompts.items[0].kind, MELBO_PROMPT_USER);
    melbo_train_params_free(&p);

    ASSERT_OK(parse_train(&p, &err, BASE, "--steps", "10", "--steps=12", "--no-orthogonal",
                          "--betas", "0.8,0.9", "--loss-axis", "dim", "--radius", "auto",
                          "--target-tokens", "-3:", "--seed", "18446744073709551615", "--device",
                          "gpu", "--dtype", "fp32", "--temperature", "0.5", "--prompt-ids",
                          "1,2,3", "--raw-prompt", "x", "--no-generate", "--wave", "8",
                          "--ignore-eos", "--tp", "2", NULL));
    ASSERT_EQ(p.steps, 12);
    ASSERT_EQ(p.orthogonal, 0);
    ASSERT(p.betas[0] == 0.8 && p.betas[1] == 0.9);
    ASSERT_EQ(p.loss_axis, MELBO_LOSS_AXIS_DIM);
    ASSERT_EQ(p.radius_auto, 1);
    ASSERT(p.target_tokens.has_start && p.target_tokens.start == -3);
    ASSERT(p.seed == UINT64_MAX);
    ASSERT_EQ(p.device, MELBO_DEVICE_CUDA);
    ASSERT_EQ(p.gpu_bf16, 0);
    ASSERT(p.gen.temperature == 0.5);
    ASSERT_EQ(p.gen.ignore_eos, 1);
    ASSERT_EQ(p.generate, 0);
    ASSERT_EQ(p.wave, 8);
    ASSERT_EQ(p.tp, 2);
    ASSERT_EQ(p.prompts.n, 2);
    ASSERT_EQ(p.prompts.items[1].kind, MELBO_PROMPT_RAW);
    ASSERT_EQ(p.prompts.ids.n, 1);
    ASSERT_EQ(p.prompts.ids.lens[0], 3);
    ASSERT_EQ(p.prompts.ids.ids[0][2], 3);
    /* resolve: the defaults that need the model */
    ASSERT_OK(melbo_train_params_resolve(&p, 24, 64, 256, &err));
    ASSERT_EQ(p.target_layer, 16);
    ASSERT(p.q == p.p);
    melbo_train_params_free(&p);
    ASSERT_OK(parse_train(&p, &err, BASE, "--vectors", "100", NULL));
    ASSERT_OK(melbo_train_params_resolve(&p, 24, 128, 256, &err));
    ASSERT_EQ(p.wave, 64);
    ASSERT(melbo_train_params_resolve(&p, 24, 64, 256, &err) < 0); /* 100 orthogonal in d = 64 */
    ASSERT_STR_CONTAINS(err.msg, "--vectors 100 is more than d_model 64");
    melbo_train_params_free(&p);
    ASSERT_OK(parse_train(&p, &err, BASE, "--source-layer", "22", NULL));
    ASSERT(melbo_train_params_resolve(&p, 24, 64, 256, &err) < 0);
    ASSERT_STR_CONTAINS(err.msg, "--source-layer 22 is out of range for a 24-layer model");
    melbo_train_params_free(&p);
    ASSERT_OK(parse_train(&p, &err, BASE, "--target-layer", "8", NULL));
    ASSERT(melbo_train_params_resolve(&p, 24, 64, 256, &err) < 0);
    ASSERT_STR_CONTAINS(err.msg, "it must be in 9..23");
    melbo_train_params_free(&p);
}

static void test_refusals(const char *dir) {
    EXPECT_REFUSED("unknown option --frobnicate (see melbo-rank train --help)", BASE,
                   "--frobnicate", "3");
    EXPECT_REFUSED("--steps needs a value", BASE, "--steps");
    EXPECT_REFUSED("--steps: 'x' is not an integer", BASE, "--steps", "x");
    EXPECT_REFUSED("--steps: '1.5' is not an integer", BASE, "--steps", "1.5");
    EXPECT_REFUSED("--steps must be >= 0 (got -1)", BASE, "--steps", "-1");
    EXPECT_REFUSED("--vectors must be >= 1 (got 0)", BASE, "--vectors", "0");
    EXPECT_REFUSED("--radius must be positive (got 0)", BASE, "--radius", "0");
    EXPECT_REFUSED("--radius: 'big' is not a number", BASE, "--radius", "big");
    EXPECT_REFUSED("--lr: 'inf' is not a finite number", BASE, "--lr", "inf");
    EXPECT_REFUSED("--top-p must be in (0, 1] (got 1.5)", BASE, "--top-p", "1.5");
    EXPECT_REFUSED("--tp must be an integer in 1..4096 (got 0)", BASE, "--tp", "0");
    EXPECT_REFUSED("--betas must be in [0, 1) (got 0.9,1)", BASE, "--betas", "0.9,1");
    EXPECT_REFUSED("--betas '0.9': expected B1,B2", BASE, "--betas", "0.9");
    EXPECT_REFUSED("--seed: '-1' is not a non-negative integer", BASE, "--seed", "-1");
    EXPECT_REFUSED("--loss-axis must be token or dim, not 'both'", BASE, "--loss-axis", "both");
    EXPECT_REFUSED("--device must be auto, cpu or cuda, not 'tpu'", BASE, "--device", "tpu");
    EXPECT_REFUSED("--dtype must be fp32 or bf16, not 'fp16'", BASE, "--dtype", "fp16");
    EXPECT_REFUSED("is not a Python slice", BASE, "--target-tokens", "1:2:3:4");
    EXPECT_REFUSED("--orthogonal takes no value", BASE, "--orthogonal=1");
    EXPECT_REFUSED("unexpected argument 'stray'", BASE, "stray");
    EXPECT_REFUSED("--system given twice", BASE, "--system", "a", "--system", "b");
    EXPECT_REFUSED("unknown --chat-format \"klingon\"", BASE, "--chat-format", "klingon");
    EXPECT_REFUSED("--prompt-ids '1,,2': expected comma-separated", BASE, "--prompt-ids", "1,,2");
    EXPECT_REFUSED("--model DIR is required", "--prompt", "hi", "--radius", "4", "--out", "/o");
    EXPECT_REFUSED("--radius is required", "--model", "/m", "--prompt", "hi", "--out", "/o");
    EXPECT_REFUSED("--out FILE is required", "--model", "/m", "--prompt", "hi", "--radius", "1");
    EXPECT_REFUSED("no prompt: give --prompt", "--model", "/m", "--radius", "1", "--out", "/o");
    char path[512];
    snprintf(path, sizeof path, "%s/prompts.jsonl", dir);
    FILE *f = fopen(path, "w");
    ASSERT(f != NULL);
    fprintf(f, "{\"prompt\": \"a\"}\n\n{\"messages\": [{\"role\": \"user\", \"content\": \"b\"}]}\n"
               "[1, 2]\n");
    fclose(f);
    EXPECT_REFUSED("prompts.jsonl:4: not a JSON object", BASE, "--prompts", path);
    struct melbo_train_params p;
    struct melbo_err err = {0};
    ASSERT_EQ(parse_train(&p, &err, BASE, "--help", NULL), 1);
    melbo_train_params_free(&p);
}

/* Everything usage printed, as one string (caller frees). */
static char *usage_text(const struct melbo_opt_table *t, unsigned hide) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ASSERT(f != NULL);
    melbo_opts_usage(f, t, hide);
    fclose(f);
    return buf;
}

static void count_row(void *ctx, const struct melbo_opt *row, const void *base) {
    (void)row;
    (void)base;
    ++*(int *)ctx;
}

/* Every visible option of a table is on its help page (ctx: the page). */
static void listed(void *ctx, const struct melbo_opt *row, const void *base) {
    char sp[96], nl[96];
    (void)base;
    if (row->name == NULL || (row->flags & MELBO_OPT_HIDDEN))
        return;
    const char *fmt = row->kind == MELBO_OPT_FLAG ? "  --[no-]%s%c" : "  --%s%c";
    snprintf(sp, sizeof sp, fmt, row->name, ' ');
    snprintf(nl, sizeof nl, fmt, row->name, '\n');
    if (strstr((const char *)ctx, sp) == NULL)
        ASSERT_STR_CONTAINS((const char *)ctx, nl);
}

static void test_help(void) {
    char *u = usage_text(&melbo_train_table, 0);
    ASSERT_STR_CONTAINS(u, "--steps N");
    ASSERT_STR_CONTAINS(u, "optimiser steps per vector (default 300)");
    ASSERT_STR_CONTAINS(u, "--[no-]orthogonal");
    ASSERT_STR_CONTAINS(u, "(default on)");
    ASSERT_STR_CONTAINS(u, "--target-layer T");
    ASSERT_STR_CONTAINS(u, "(default L - 8)");
    ASSERT_STR_CONTAINS(u, "--loss-axis token|dim");
    ASSERT_STR_CONTAINS(u, "--prompt TEXT");
    ASSERT_STR_CONTAINS(u, "--prompts FILE");
    ASSERT_STR_CONTAINS(u, "--max-new-tokens N");
    ASSERT_STR_CONTAINS(u, "method (defaults as the reference code):");
    ASSERT(strstr(u, "--job-id") == NULL); /* hidden */
    for (char *line = u; *line;) {          /* wrapped at 100 columns */
        size_t n = strcspn(line, "\n");
        if (n > 100)
            TEST_FAIL_("help line over 100 columns: %.*s", (int)n, line);
        ASSERT(n <= 100);
        line += n + (line[n] == '\n');
    }
    free(u);
    u = usage_text(&melbo_job_table, MELBO_OPT_LOCAL);
    ASSERT_STR_CONTAINS(u, "--partition P");
    ASSERT_STR_CONTAINS(u, "--steps N");
    ASSERT(strstr(u, "--out FILE") == NULL && strstr(u, "--checkpoint FILE") == NULL);
    free(u);
    /* every option of the tables is listed by name */
    struct melbo_job_params jp;
    melbo_job_params_init(&jp);
    u = usage_text(&melbo_job_table, 0);
    melbo_opts_each(&melbo_job_table, &jp, 0, listed, u);
    free(u);
    struct melbo_gen_cmd_params gp;
    melbo_opts_init(&melbo_gen_cmd_table, &gp);
    u = usage_text(&melbo_gen_cmd_table, 0);
    melbo_opts_each(&melbo_gen_cmd_table, &gp, 0, listed, u);
    free(u);
    melbo_opts_free(&melbo_gen_cmd_table, &gp);
    int n_bank = 0;
    melbo_opts_each(&melbo_train_table, &jp.train, MELBO_OPT_BANK, count_row, &n_bank);
    ASSERT_EQ(n_bank, 15);
    melbo_job_params_free(&jp);
}

struct kv {
    char keys[32][64], vals[32][128];
    int n;
    enum melbo_opt_style style;
};

static void collect(void *ctx, const struct melbo_opt *row, const void *base) {
    struct kv *kv = ctx;
    melbo_opt_key(row, kv->keys[kv->n], sizeof kv->keys[0]);
    ASSERT_OK(melbo_opts_format(row, base, kv->style, kv->vals[kv->n], sizeof kv->vals[0]));
    kv->n++;
}

static const char *lookup(const struct kv *kv, const char *key) {
    for (int i = 0; i < kv->n; i++)
        if (!strcmp(kv->keys[i], key))
            return kv->vals[i];
    TEST_FAIL_("no key %s", key);
    abort();
}

static void test_format(void) {
    struct melbo_train_params p;
    struct melbo_err err = {0};
    ASSERT_OK(parse_train(&p, &err, BASE, "--radius", "2.5", "--no-orthogonal", "--loss-axis",
                          "dim", "--seed", "7", "--target-tokens", "-3:", NULL));
    ASSERT_OK(melbo_train_params_resolve(&p, 24, 64, 256, &err));
    struct kv bank = {.style = MELBO_OPT_STYLE_BANK}, exact = {.style = MELBO_OPT_STYLE_EXACT};
    melbo_opts_each(&melbo_train_table, &p, MELBO_OPT_BANK, collect, &bank);
    melbo_opts_each(&melbo_train_table, &p, MELBO_OPT_RESULT, collect, &exact);
    ASSERT(!strcmp(lookup(&bank, "radius"), "2.5"));
    ASSERT(!strcmp(lookup(&bank, "betas"), "[0.9, 0.98]"));
    ASSERT(!strcmp(lookup(&bank, "lr"), "0.001"));
    ASSERT(!strcmp(lookup(&bank, "orthogonal"), "false"));
    ASSERT(!strcmp(lookup(&bank, "loss_axis"), "dim"));
    ASSERT(!strcmp(lookup(&bank, "seed"), "7"));
    ASSERT(!strcmp(lookup(&bank, "target_tokens"), "-3:"));
    ASSERT(!strcmp(lookup(&bank, "target_layer"), "16"));
    ASSERT(!strcmp(lookup(&bank, "wave"), "32"));
    ASSERT(!strcmp(lookup(&exact, "betas"), "0.90000000000000002,0.97999999999999998"));
    ASSERT(!strcmp(lookup(&exact, "lr"), "0.001"));
    ASSERT(!strcmp(lookup(&exact, "q"), "2"));
    ASSERT_EQ(bank.n, 15);
    ASSERT_EQ(exact.n, 17); /* the bank's 15 and adapter_rank, adapter_alpha */
    /* a deep copy outlives its source */
    struct melbo_train_params c;
    melbo_train_params_copy(&c, &p);
    melbo_train_params_free(&p);
    ASSERT(!strcmp(c.model, "/m") && !strcmp(c.prompts.items[0].text, "hi"));
    ASSERT(c.radius == 2.5 && c.orthogonal == 0 && c.target_layer == 16);
    melbo_train_params_free(&c);
}

static void test_job(void) {
    struct melbo_job_params jp;
    struct melbo_err err = {0};
    struct melbo_job_option ok[] = {{"model", "/models/x"},  {"prompt", "How?"},
                                    {"radius", "4"},         {"name", "my run"},
                                    {"no-orthogonal", NULL}, {"gpus", "2"},
                                    {"prompt", "--not-a-flag"}, {"steps", "5"},
                                    {"tp", "2"}};
    ASSERT_OK(melbo_job_parse(&jp, ok, MELBO_ARRAY_SIZE(ok), &err));
    ASSERT(!strcmp(jp.train.model, "/models/x") && !strcmp(jp.job.name, "my run"));
    ASSERT_EQ(jp.train.orthogonal, 0);
    ASSERT_EQ(jp.job.gpus, 2);
    ASSERT_EQ(jp.job.nodes, 1);
    ASSERT_EQ(jp.train.steps, 5);
    ASSERT_EQ(melbo_job_ranks(&jp), 2);
    ASSERT_EQ(jp.train.prompts.n, 2);
    ASSERT(!strcmp(jp.train.prompts.items[1].text, "--not-a-flag"));
    melbo_job_params_free(&jp);
    /* the ranks' command line: the rank options in order, the job's own left out */
    struct melbo_argv av = {0};
    melbo_job_rank_argv(ok, MELBO_ARRAY_SIZE(ok), &av);
    const char *want[] = {"train",  "--model",      "/models/x", "--prompt", "How?",
                          "--radius", "4",          "--no-orthogonal", "--prompt",
                          "--not-a-flag", "--steps", "5", "--tp", "2"};
    ASSERT_EQ(av.n, (int)MELBO_ARRAY_SIZE(want));
    for (size_t i = 0; i < MELBO_ARRAY_SIZE(want); i++)
        ASSERT(!strcmp(av.v[i], want[i]));
    ASSERT(av.v[av.n] == NULL);
    /* ... which melbo-rank's own parser reads back to the same settings */
    struct melbo_train_params p;
    melbo_train_params_init(&p);
    melbo_argv_push(&av, "--out");
    melbo_argv_push(&av, "/o");
    ASSERT_OK(melbo_train_params_parse(&p, av.n, av.v, &err));
    ASSERT_EQ(p.orthogonal, 0);
    ASSERT_EQ(p.steps, 5);
    melbo_train_params_free(&p);
    melbo_argv_free(&av);

    struct {
        struct melbo_job_option o;
        const char *want;
    } bad[] = {
        {{"out", "/x"}, "--out is chosen by the coordinator"},
        {{"model", "rel/dir"}, "--model 'rel/dir' must be an absolute path"},
        {{"prompts", "p.jsonl"}, "--prompts 'p.jsonl' must be an absolute path"},
        {{"steps", NULL}, "--steps needs a value"},
        {{"orthogonal", "yes"}, "--orthogonal takes no value"},
        {{"frob", "1"}, "unknown option --frob"},
        {{"gpus", "-1"}, "--gpus must be an integer in 0..1024 (got -1)"},
        {{"help", NULL}, "--help is not a job"},
    };
    for (size_t i = 0; i < MELBO_ARRAY_SIZE(bad); i++) {
        struct melbo_job_option opts[4] = {{"model", "/m"}, {"prompt", "x"}, {"radius", "1"}};
        opts[3] = bad[i].o;
        int r = melbo_job_parse(&jp, opts, 4, &err);
        if (r >= 0)
            TEST_FAIL_("accepted, expected \"%s\"", bad[i].want);
        ASSERT(r < 0);
        ASSERT_STR_CONTAINS(err.msg, bad[i].want);
        melbo_job_params_free(&jp);
    }
    struct melbo_job_option no_radius[] = {{"model", "/m"}, {"prompt", "x"}};
    ASSERT(melbo_job_parse(&jp, no_radius, 2, &err) < 0);
    ASSERT_STR_CONTAINS(err.msg, "--radius is required");
    melbo_job_params_free(&jp);
}

#define ADAPTER_BASE "--model", "/m", "--prompt", "hi", "--out", "/o.bank", "--adapter-rank"

/* Adapters (--adapter-rank): no radius, orthogonality off, the rank checked against the model. */
static void test_adapters(void) {
    struct melbo_train_params p;
    struct melbo_err err = {0};
    ASSERT_OK(parse_train(&p, &err, ADAPTER_BASE, "8", "--vectors", "100", NULL));
    ASSERT_EQ(p.adapter_rank, 8);
    ASSERT(p.adapter_alpha == 0.35);
    ASSERT_OK(melbo_train_params_resolve(&p, 24, 64, 256, &err)); /* 100 > d: no orthogonality */
    ASSERT_EQ(p.orthogonal, 0);
    melbo_train_params_free(&p);
    ASSERT_OK(parse_train(&p, &err, ADAPTER_BASE, "65", NULL));
    ASSERT(melbo_train_params_resolve(&p, 24, 64, 256, &err) < 0);
    ASSERT_STR_CONTAINS(err.msg, "--adapter-rank 65 is more than min(d_model 64, MLP width 256)");
    melbo_train_params_free(&p);
    ASSERT_OK(parse_train(&p, &err, BASE, NULL)); /* vectors: orthogonal by default */
    ASSERT_OK(melbo_train_params_resolve(&p, 24, 64, 256, &err));
    ASSERT_EQ(p.orthogonal, 1);
    melbo_train_params_free(&p);
    EXPECT_REFUSED("--adapter-rank must be >= 1", ADAPTER_BASE, "0");
    EXPECT_REFUSED("--adapter-alpha must be positive", ADAPTER_BASE, "4", "--adapter-alpha", "0");
    EXPECT_REFUSED("--adapter-alpha", ADAPTER_BASE, "4", "--adapter-alpha", "nan");
    EXPECT_REFUSED("--radius does not apply to adapters", ADAPTER_BASE, "4", "--radius", "2");
    EXPECT_REFUSED("--radius does not apply to adapters", ADAPTER_BASE, "4", "--radius", "auto");
    EXPECT_REFUSED("--orthogonal does not apply to adapters", ADAPTER_BASE, "4", "--orthogonal");
    EXPECT_REFUSED("--radius is required", "--model", "/m", "--prompt", "hi", "--out", "/o");
}

/* The Slurm settings and the label are data: strict patterns, refused naming the field. */
static void test_job_settings(void) {
    struct melbo_job_params jp;
    struct melbo_err err = {0};
    const char *bad[][3] = {{"partition", "gpu\nid > /tmp/x", "--partition 'gpu\\x0aid > /tmp/x'"},
                            {"account", "lab;rm", "--account"},
                            {"qos", "high prio", "--qos"},
                            {"constraint", "a100$(id)", "--constraint"},
                            {"time", "1:00\n#SBATCH", "--time"},
                            {"time", "soon", "is not a Slurm time"},
                            {"name", "x\x1b[2J", "--name"},
                            {"name", "it's", "--name"}};
    for (size_t i = 0; i < MELBO_ARRAY_SIZE(bad); i++) {
        struct melbo_job_option o[] = {{"model", "/m"}, {"prompt", "hi"}, {"radius", "4"},
                                       {bad[i][0], bad[i][1]}};
        int r = melbo_job_parse(&jp, o, MELBO_ARRAY_SIZE(o), &err);
        if (r != MELBO_EINVAL)
            fprintf(stderr, "%s=%s: %d %s\n", bad[i][0], bad[i][1], r, err.msg);
        ASSERT(r == MELBO_EINVAL);
        ASSERT_STR_CONTAINS(err.msg, bad[i][2]);
        ASSERT(strchr(err.msg, '\n') == NULL && strchr(err.msg, '\x1b') == NULL);
        melbo_job_params_free(&jp);
    }
    struct melbo_job_option good[] = {{"model", "/m"},          {"prompt", "hi"}, {"radius", "4"},
                                      {"partition", "gpu,debug"}, {"account", "lab-1"},
                                      {"qos", "normal"},          {"constraint", "a100|h100"},
                                      {"time", "1-02:00:00"},      {"name", "my run #2 (lr=0.1)"}};
    ASSERT_OK(melbo_job_parse(&jp, good, MELBO_ARRAY_SIZE(good), &err));
    ASSERT(!strcmp(jp.job.constraint, "a100|h100") && !strcmp(jp.job.time, "1-02:00:00"));
    melbo_job_params_free(&jp);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_options DIR\n");
        return 2;
    }
    mkdir(argv[1], 0700);
    test_defaults_and_values();
    test_refusals(argv[1]);
    test_adapters();
    test_help();
    test_format();
    test_job();
    test_job_settings();
    fprintf(stderr, "ok   options: parsing, refusals, help, formats, job specs\n");
    return test_exit_code();
}
