/* rank/train/params.c - training options (rank/train/params.h). */
#include "rank/train/params.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"

void melbo_train_params_init(struct melbo_train_params *p) {
    memset(p, 0, sizeof *p);
    melbo_prompt_opts_init(&p->text);
    p->source_layer = -1;
    p->target_layer = -1;
    p->radius = -1;
    p->p = 2.0;
    p->q = -1;
    p->loss_axis = MELBO_LOSS_AXIS_TOKEN;
    melbo_slice_parse(":", &p->target_tokens, NULL);
    p->steps = 300;
    p->gpu_bf16 = 1;
    p->vectors = 32;
    p->wave = 0;
    p->orthogonal = 1;
    p->lr = 1e-3;
    p->beta1 = 0.9;
    p->beta2 = 0.98;
    p->eps = 1e-8;
    p->seed = 0;
    p->checkpoint_every = 50;
    p->job_id = melbo_xstrdup("");
    p->generate = 1;
    p->calibration_samples = 30;
    p->calibration_lambda = 0.5;
    p->tp = 1;
    p->dp = 1;
    p->random_baselines = 4;
    melbo_gen_settings_init(&p->gen);
}

void melbo_train_params_free(struct melbo_train_params *p) {
    melbo_prompt_opts_free(&p->text);
    for (int i = 0; i < p->n_id_prompts; i++)
        free(p->id_prompts[i]);
    free(p->id_prompts);
    free(p->id_lens);
    free(p->model);
    free(p->init);
    free(p->out);
    free(p->checkpoint);
    free(p->resume);
    free(p->job_id);
    free(p->calibration_init);
    memset(p, 0, sizeof *p);
}

void melbo_train_usage(void) {
    printf(
        "usage: melbo-rank train --model DIR --radius R --out FILE.bank.safetensors [prompts] "
        "[options]\n"
        "\n"
        "Trains N orthogonal steering vectors (MELBO) and writes them to a bank file.\n"
        "\n"
        "prompts (at least one; repeatable, kept in order, text prompts before id prompts):\n"
        "  --prompt TEXT            a user message rendered with the model's chat template\n"
        "  --system TEXT            system message for --prompt\n"
        "  --raw-prompt TEXT        text tokenized as it is\n"
        "  --prompts FILE           JSONL: {\"messages\": [...]}, {\"prompt\": ...} or {\"text\": "
        "...}\n"
        "  --chat-format NAME       chatml|qwen2.5|qwen3|llama3|llama2|mistral|raw (default: "
        "detect)\n"
        "  --prompt-ids 1,2,3       a prompt given as token ids\n"
        "method (defaults as the reference code):\n"
        "  --source-layer S         add the vector to the output of block S (default 7)\n"
        "  --target-layer T         objective at hidden_states[T] (default L-8); S+2 <= T <= L-1\n"
        "  --radius R|auto          norm of every vector (required); auto: calibrated so that\n"
        "                           the target layer's response is lambda-nonlinear (method.md "
        "4.1)\n"
        "  --calibration-samples N --calibration-lambda L   for --radius auto (default 30, 0.5)\n"
        "  --p P --q Q              objective exponents (default 2, q = p)\n"
        "  --loss-axis token|dim    token: the post's formula; dim: the reference code's (default "
        "token)\n"
        "  --target-tokens SLICE    Python slice of each prompt's positions, e.g. -3: (default "
        "all)\n"
        "  --steps N                optimiser steps per vector (default 300)\n"
        "  --vectors N              number of vectors (default 32)\n"
        "  --wave B                 vectors trained together (default min(vectors, 64))\n"
        "  --orthogonal | --no-orthogonal   exact orthogonality (default on)\n"
        "  --lr X --betas B1,B2 --eps E     AMSGrad settings (default 1e-3, 0.9,0.98, 1e-8)\n"
        "  --seed S                 raw draws g_k from (seed, k) (default 0)\n"
        "  --init FILE              raw draws from FILE's tensor 'vectors' [N, d] instead\n"
        "output and restarts:\n"
        "  --out FILE               the bank (written atomically)\n"
        "  --checkpoint FILE        rewritten every --checkpoint-every steps (default 50), at the "
        "end\n"
        "                           of every wave and on SIGUSR1\n"
        "  --resume FILE            continue from a checkpoint (same settings required)\n"
        "  --stop-on-signal         after the SIGUSR1 checkpoint, stop with exit status 75\n"
        "                           (batch jobs near their time limit; resume with --resume)\n"
        "  --threads N              CPU threads (default: OMP_NUM_THREADS)\n"
        "  --device cuda|cpu        backend (default: cuda when a GPU is visible)\n"
        "  --dtype bf16|fp32        GPU weights and activations (default bf16; fp32 matches the\n"
        "                           CPU backend to ~1e-5)\n"
        "  --tp T --dp D            tensor x data parallel layout (run under mpirun -np T*D)\n"
        "completions (after training, written into the bank):\n"
        "  --max-new-tokens N       tokens per completion (default 64; 0 or --no-generate: none)\n"
        "  --random-baselines K     random vectors of norm R, never trained, as controls (default "
        "4)\n"
        "  --temperature T --top-p P --top-k K --gen-seed S   sampling (default greedy)\n"
        "  --repetition-penalty X   (default 1: off)\n"
        "  --use-generation-config  apply generation_config.json's sampling settings\n"
        "  --gen-batch N            sequences decoded together (default 64)\n");
}

static int parse_double(const char *opt, const char *s, double *out, struct melbo_err *err) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || errno != 0 || !isfinite(v))
        return melbo_err_set(err, MELBO_EINVAL, "%s: '%s' is not a number", opt, s);
    *out = v;
    return 0;
}

static int parse_int(const char *opt, const char *s, int *out, struct melbo_err *err) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno != 0 || v < -2000000000L || v > 2000000000L)
        return melbo_err_set(err, MELBO_EINVAL, "%s: '%s' is not an integer", opt, s);
    *out = (int)v;
    return 0;
}

int melbo_parse_id_list(const char *s, int32_t **out, int *n_out) {
    int n = 0, cap = 16;
    int32_t *ids = melbo_xmalloc(sizeof *ids * (size_t)cap);
    const char *q = s;
    while (*q) {
        char *end;
        errno = 0;
        long v = strtol(q, &end, 10);
        if (end == q || errno != 0 || v < 0 || v > 0x7fffffffL || (*end != ',' && *end != '\0')) {
            free(ids);
            return -1;
        }
        if (n == cap) {
            cap *= 2;
            ids = melbo_xrealloc(ids, sizeof *ids * (size_t)cap);
        }
        ids[n++] = (int32_t)v;
        q = *end ? end + 1 : end;
    }
    if (n == 0) {
        free(ids);
        return -1;
    }
    *out = ids;
    *n_out = n;
    return 0;
}

static int parse_ids(struct melbo_train_params *p, const char *s, struct melbo_err *err) {
    int32_t *ids;
    int n;
    if (melbo_parse_id_list(s, &ids, &n) != 0)
        return melbo_err_set(err, MELBO_EINVAL,
                             "--prompt-ids '%s': expected comma-separated non-negative ids", s);
    p->id_prompts =
        melbo_xrealloc(p->id_prompts, sizeof *p->id_prompts * (size_t)(p->n_id_prompts + 1));
    p->id_lens = melbo_xrealloc(p->id_lens, sizeof *p->id_lens * (size_t)(p->n_id_prompts + 1));
    p->id_prompts[p->n_id_prompts] = ids;
    p->id_lens[p->n_id_prompts++] = n;
    return 0;
}

static void set_str(char **dst, const char *v) {
    free(*dst);
    *dst = melbo_xstrdup(v);
}

int melbo_train_params_parse(struct melbo_train_params *p, int argc, char **argv,
                             struct melbo_err *err) {
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(opt, "--help") || !strcmp(opt, "-h")) {
            melbo_train_usage();
            return 1;
        }
        int r = melbo_prompt_opts_parse_one(&p->text, opt, val, err);
        if (r < 0)
            return r;
        if (r == 1) {
            i++;
            continue;
        }
        r = melbo_gen_settings_parse_one(&p->gen, opt, val, err);
        if (r < 0)
            return r;
        if (r > 0) {
            i += r == 1;
            continue;
        }
        if (!strcmp(opt, "--stop-on-signal")) {
            p->stop_on_signal = 1;
            continue;
        }
        if (!strcmp(opt, "--no-generate")) {
            p->generate = 0;
            continue;
        }
        if (!strcmp(opt, "--orthogonal")) {
            p->orthogonal = 1;
            continue;
        }
        if (!strcmp(opt, "--no-orthogonal")) {
            p->orthogonal = 0;
            continue;
        }
        if (strncmp(opt, "--", 2) != 0)
            return melbo_err_set(err, MELBO_EINVAL, "unexpected argument '%s'", opt);
        if (val == NULL)
            return melbo_err_set(err, MELBO_EINVAL, "%s needs a value", opt);
        i++;
        int ret = 0;
        if (!strcmp(opt, "--model"))
            set_str(&p->model, val);
        else if (!strcmp(opt, "--prompt-ids"))
            ret = parse_ids(p, val, err);
        else if (!strcmp(opt, "--source-layer"))
            ret = parse_int(opt, val, &p->source_layer, err);
        else if (!strcmp(opt, "--target-layer"))
            ret = parse_int(opt, val, &p->target_layer, err);
        else if (!strcmp(opt, "--radius") && !strcmp(val, "auto"))
            p->radius_auto = 1;
        else if (!strcmp(opt, "--radius"))
            ret = parse_double(opt, val, &p->radius, err);
        else if (!strcmp(opt, "--calibration-samples")) {
            ret = parse_int(opt, val, &p->calibration_samples, err);
            if (ret == 0 && p->calibration_samples < 1)
                ret = melbo_err_set(err, MELBO_EINVAL, "--calibration-samples must be >= 1");
        } else if (!strcmp(opt, "--calibration-lambda")) {
            ret = parse_double(opt, val, &p->calibration_lambda, err);
            if (ret == 0 && !(p->calibration_lambda > 0))
                ret = melbo_err_set(err, MELBO_EINVAL, "--calibration-lambda must be positive");
        } else if (!strcmp(opt, "--calibration-init"))
            set_str(&p->calibration_init, val);
        else if (!strcmp(opt, "--p"))
            ret = parse_double(opt, val, &p->p, err);
        else if (!strcmp(opt, "--q"))
            ret = parse_double(opt, val, &p->q, err);
        else if (!strcmp(opt, "--loss-axis")) {
            if (!strcmp(val, "token"))
                p->loss_axis = MELBO_LOSS_AXIS_TOKEN;
            else if (!strcmp(val, "dim"))
                p->loss_axis = MELBO_LOSS_AXIS_DIM;
            else
                ret = melbo_err_set(err, MELBO_EINVAL, "--loss-axis must be token or dim, not '%s'",
                                    val);
        } else if (!strcmp(opt, "--target-tokens"))
            ret = melbo_slice_parse(val, &p->target_tokens, err);
        else if (!strcmp(opt, "--steps"))
            ret = parse_int(opt, val, &p->steps, err);
        else if (!strcmp(opt, "--vectors"))
            ret = parse_int(opt, val, &p->vectors, err);
        else if (!strcmp(opt, "--wave"))
            ret = parse_int(opt, val, &p->wave, err);
        else if (!strcmp(opt, "--lr"))
            ret = parse_double(opt, val, &p->lr, err);
        else if (!strcmp(opt, "--eps"))
            ret = parse_double(opt, val, &p->eps, err);
        else if (!strcmp(opt, "--betas")) {
            if (sscanf(val, "%lf,%lf", &p->beta1, &p->beta2) != 2 ||
                !(p->beta1 >= 0 && p->beta1 < 1) || !(p->beta2 >= 0 && p->beta2 < 1))
                ret = melbo_err_set(err, MELBO_EINVAL,
                                    "--betas '%s': expected B1,B2 with 0 <= B < 1", val);
        } else if (!strcmp(opt, "--seed")) {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(val, &end, 10);
            if (*val == '\0' || *end != '\0' || errno != 0 || val[0] == '-')
                ret = melbo_err_set(err, MELBO_EINVAL, "--seed '%s' is not a non-negative integer",
                                    val);
            p->seed = v;
        } else if (!strcmp(opt, "--init"))
            set_str(&p->init, val);
        else if (!strcmp(opt, "--out"))
            set_str(&p->out, val);
        else if (!strcmp(opt, "--checkpoint"))
            set_str(&p->checkpoint, val);
        else if (!strcmp(opt, "--checkpoint-every"))
            ret = parse_int(opt, val, &p->checkpoint_every, err);
        else if (!strcmp(opt, "--resume"))
            set_str(&p->resume, val);
        else if (!strcmp(opt, "--device"))
            ret = melbo_device_parse(val, &p->device, err);
        else if (!strcmp(opt, "--dtype"))
            ret = melbo_dtype_flag_parse(val, &p->gpu_bf16, err);
        else if (!strcmp(opt, "--threads"))
            ret = parse_int(opt, val, &p->threads, err);
        else if (!strcmp(opt, "--tp"))
            ret = parse_int(opt, val, &p->tp, err);
        else if (!strcmp(opt, "--dp"))
            ret = parse_int(opt, val, &p->dp, err);
        else if (!strcmp(opt, "--job-id"))
            set_str(&p->job_id, val);
        else if (!strcmp(opt, "--random-baselines")) {
            ret = parse_int(opt, val, &p->random_baselines, err);
            if (ret == 0 && p->random_baselines < 0)
                ret = melbo_err_set(err, MELBO_EINVAL, "--random-baselines must be >= 0");
        } else
            return melbo_err_set(err, MELBO_EINVAL,
                                 "unknown option %s (see melbo-rank train --help)", opt);
        if (ret)
            return ret;
    }
    if (p->model == NULL)
        return melbo_err_set(err, MELBO_EINVAL, "--model DIR is required");
    if (p->out == NULL)
        return melbo_err_set(err, MELBO_EINVAL, "--out FILE is required");
    if (p->text.n == 0 && p->n_id_prompts == 0)
        return melbo_err_set(err, MELBO_EINVAL,
                             "no prompt: give --prompt, --raw-prompt, --prompts or --prompt-ids");
    if (p->radius == -1 && !p->radius_auto)
        return melbo_err_set(err, MELBO_EINVAL,
                             "--radius R is required (the norm of every vector), or --radius auto");
    if (!p->radius_auto && !(p->radius > 0))
        return melbo_err_set(err, MELBO_EINVAL, "--radius must be positive (got %g)", p->radius);
    if (!(p->p > 0))
        return melbo_err_set(err, MELBO_EINVAL, "--p must be positive (got %g)", p->p);
    if (p->q != -1 && !(p->q > 0))
        return melbo_err_set(err, MELBO_EINVAL, "--q must be positive (got %g)", p->q);
    if (p->steps < 0)
        return melbo_err_set(err, MELBO_EINVAL, "--steps must be >= 0 (got %d)", p->steps);
    if (p->vectors < 1)
        return melbo_err_set(err, MELBO_EINVAL, "--vectors must be >= 1 (got %d)", p->vectors);
    if (p->wave < 0)
        return melbo_err_set(err, MELBO_EINVAL, "--wave must be >= 1 (got %d)", p->wave);
    if (!(p->lr > 0) || !(p->eps > 0))
        return melbo_err_set(err, MELBO_EINVAL, "--lr and --eps must be positive");
    if (p->tp < 1 || p->dp < 1)
        return melbo_err_set(err, MELBO_EINVAL, "--tp and --dp must be >= 1");
    if (p->checkpoint_every < 0)
        return melbo_err_set(err, MELBO_EINVAL, "--checkpoint-every must be >= 0");
    return 0;
}

int melbo_train_params_resolve(struct melbo_train_params *p, int L, int d, struct melbo_err *err) {
    if (p->source_layer < 0 && p->source_layer != -1)
        return melbo_err_set(err, MELBO_ERANGE, "--source-layer %d must be >= 0", p->source_layer);
    if (p->source_layer == -1)
        p->source_layer = 7;
    if (p->target_layer == -1)
        p->target_layer = L - 8;
    int s = p->source_layer, t = p->target_layer;
    if (s < 0 || s + 2 > L - 1)
        return melbo_err_set(err, MELBO_ERANGE,
                             "--source-layer %d is out of range for a %d-layer model (valid 0..%d)",
                             s, L, L - 3);
    if (t < s + 2 || t > L - 1)
        return melbo_err_set(err, MELBO_ERANGE,
                             "--target-layer %d is out of range: with --source-layer %d it must be "
                             "in %d..%d (s + 2 <= t <= L - 1, L = %d)",
                             t, s, s + 2, L - 1, L);
    if (p->q == -1)
        p->q = p->p;
    if (p->wave == 0)
        p->wave = p->vectors < 64 ? p->vectors : 64;
    if (p->wave > p->vectors)
        p->wave = p->vectors;
    if (p->orthogonal && p->vectors > d)
        return melbo_err_set(err, MELBO_ERANGE,
                             "--vectors %d is more than d_model %d: that many vectors cannot be "
                             "orthogonal (use --no-orthogonal or fewer vectors)",
                             p->vectors, d);
    return 0;
}
