/*
 * cli/submit.c - `melbo submit`: the flags of `melbo-rank train` (rank/train/params.c) turned into
 * a JobSpec. Only the syntax of values is checked here; the coordinator validates the spec with
 * the rank's own code and its refusal is printed as it comes. Paths (--model, --init, --prompts)
 * are made absolute, since the ranks run in the job's directory. On success the job id is the
 * only thing printed on stdout.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/mem.h"

static void submit_usage(void) {
    printf("usage: melbo submit --model DIR --radius R [prompts] [options]\n"
           "\n"
           "Every option of `melbo-rank train` (see melbo-rank train --help) except --out,\n"
           "--checkpoint, --resume and --job-id, which the coordinator chooses; plus:\n"
           "  --tp N --dp N     tensor- and data-parallel ranks (default 1 each)\n"
           "  --name TEXT       a label shown by melbo ls\n"
           "  --partition P     Slurm partition (slurm launcher)\n"
           "  --gpus N          Slurm: GPUs per node, one rank each (left out: a CPU job)\n"
           "  --nodes M         Slurm: nodes (default 1); tp x dp must equal nodes x gpus\n"
           "  --time T          Slurm: time limit (default: the coordinator's); near it the job\n"
           "                    checkpoints and is resubmitted with --resume\n"
           "  --cpus-per-task C Slurm: cores per rank\n"
           "Paths are made absolute; they must be readable on the coordinator's host.\n");
}

static int bad(const char *opt, const char *val, const char *what) {
    fprintf(stderr, "melbo submit: %s: '%s' is not %s\n", opt, val, what);
    return MELBO_CLI_USAGE;
}

static int get_int(const char *opt, const char *v, int32_t *out) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (*v == '\0' || *end || errno || x < -2000000000L || x > 2000000000L)
        return bad(opt, v, "an integer");
    *out = (int32_t)x;
    return 0;
}

static int get_u64(const char *opt, const char *v, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (*v == '\0' || *v == '-' || *end || errno)
        return bad(opt, v, "a non-negative integer");
    *out = x;
    return 0;
}

static int get_double(const char *opt, const char *v, double *out) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (*v == '\0' || *end || errno || !isfinite(x))
        return bad(opt, v, "a number");
    *out = x;
    return 0;
}

static char *abs_path(const char *p) {
    if (p[0] == '/')
        return melbo_xstrdup(p);
    char cwd[4096];
    if (getcwd(cwd, sizeof cwd) == NULL)
        return melbo_xstrdup(p);
    size_t n = strlen(cwd) + strlen(p) + 2;
    char *s = melbo_xmalloc(n);
    snprintf(s, n, "%s/%s", cwd, p);
    return s;
}

/* Owned pieces of the spec being built, freed together. */
struct spec_build {
    Melbo__JobSpec spec;
    Melbo__TextPrompt **texts;
    Melbo__IdPrompt **ids;
    char **strings;
    size_t n_strings;
};

static char *keep(struct spec_build *b, char *s) {
    b->strings = melbo_xrealloc(b->strings, sizeof *b->strings * (b->n_strings + 1));
    b->strings[b->n_strings++] = s;
    return s;
}

static void spec_build_free(struct spec_build *b) {
    for (size_t i = 0; i < b->spec.n_text_prompts; i++)
        free(b->texts[i]);
    free(b->texts);
    for (size_t i = 0; i < b->spec.n_id_prompts; i++) {
        free(b->ids[i]->ids);
        free(b->ids[i]);
    }
    free(b->ids);
    for (size_t i = 0; i < b->n_strings; i++)
        free(b->strings[i]);
    free(b->strings);
}

static int add_ids(struct spec_build *b, const char *v) {
    Melbo__IdPrompt *ip = melbo_xmalloc(sizeof *ip);
    melbo__id_prompt__init(ip);
    size_t cap = 16;
    ip->ids = melbo_xmalloc(sizeof *ip->ids * cap);
    const char *q = v;
    while (*q) {
        char *end;
        errno = 0;
        long x = strtol(q, &end, 10);
        if (end == q || errno || x < 0 || x > 0x7fffffffL || (*end != ',' && *end != '\0')) {
            free(ip->ids);
            free(ip);
            fprintf(stderr,
                    "melbo submit: --prompt-ids '%s': expected comma-separated non-negative ids\n",
                    v);
            return MELBO_CLI_USAGE;
        }
        if (ip->n_ids == cap)
            ip->ids = melbo_xrealloc(ip->ids, sizeof *ip->ids * (cap *= 2));
        ip->ids[ip->n_ids++] = (int32_t)x;
        q = *end ? end + 1 : end;
    }
    b->ids = melbo_xrealloc(b->ids, sizeof *b->ids * (b->spec.n_id_prompts + 1));
    b->ids[b->spec.n_id_prompts++] = ip;
    b->spec.id_prompts = b->ids;
    return 0;
}

static void add_text(struct spec_build *b, int kind, char *text) {
    Melbo__TextPrompt *tp = melbo_xmalloc(sizeof *tp);
    melbo__text_prompt__init(tp);
    tp->has_kind = 1;
    tp->kind = kind;
    tp->text = keep(b, text);
    b->texts = melbo_xrealloc(b->texts, sizeof *b->texts * (b->spec.n_text_prompts + 1));
    b->texts[b->spec.n_text_prompts++] = tp;
    b->spec.text_prompts = b->texts;
}

/* One option with a value. Returns 0, 1 if opt is unknown, or an exit code. */
static int set_opt(struct spec_build *b, const char *o, const char *v) {
    Melbo__JobSpec *s = &b->spec;
#define INT(name, field) if (!strcmp(o, name)) { s->has_##field = 1; return get_int(o, v, &s->field); }
#define DBL(name, field) if (!strcmp(o, name)) { s->has_##field = 1; return get_double(o, v, &s->field); }
#define U64(name, field) if (!strcmp(o, name)) { s->has_##field = 1; return get_u64(o, v, &s->field); }
#define STR(name, field) if (!strcmp(o, name)) { s->field = keep(b, melbo_xstrdup(v)); return 0; }
    if (!strcmp(o, "--model")) { s->model = keep(b, abs_path(v)); return 0; }
    if (!strcmp(o, "--init")) { s->init = keep(b, abs_path(v)); return 0; }
    if (!strcmp(o, "--prompt")) { add_text(b, MELBO__TEXT_PROMPT__KIND__USER, melbo_xstrdup(v)); return 0; }
    if (!strcmp(o, "--raw-prompt")) { add_text(b, MELBO__TEXT_PROMPT__KIND__RAW, melbo_xstrdup(v)); return 0; }
    if (!strcmp(o, "--prompts")) { add_text(b, MELBO__TEXT_PROMPT__KIND__FILE, abs_path(v)); return 0; }
    if (!strcmp(o, "--prompt-ids")) return add_ids(b, v);
    if (!strcmp(o, "--betas")) {
        s->has_beta1 = s->has_beta2 = 1;
        if (sscanf(v, "%lf,%lf", &s->beta1, &s->beta2) != 2)
            return bad(o, v, "B1,B2");
        return 0;
    }
    STR("--system", system) STR("--chat-format", chat_format) STR("--loss-axis", loss_axis)
    STR("--target-tokens", target_tokens) STR("--name", name) STR("--partition", partition)
    INT("--source-layer", source_layer) INT("--target-layer", target_layer)
    if (!strcmp(o, "--radius") && !strcmp(v, "auto")) {
        s->has_radius_auto = 1;
        s->radius_auto = 1;
        return 0;
    }
    DBL("--radius", radius) DBL("--p", p) DBL("--q", q)
    INT("--calibration-samples", calibration_samples) DBL("--calibration-lambda", calibration_lambda)
    INT("--gpus", gpus) INT("--nodes", nodes) STR("--time", time) INT("--cpus-per-task", cpus_per_task)
    INT("--steps", steps) INT("--vectors", vectors) INT("--wave", wave)
    DBL("--lr", lr) DBL("--eps", eps) U64("--seed", seed)
    INT("--checkpoint-every", checkpoint_every) INT("--threads", threads)
    INT("--random-baselines", random_baselines) INT("--max-new-tokens", max_new_tokens)
    DBL("--temperature", temperature) DBL("--top-p", top_p) INT("--top-k", top_k)
    U64("--gen-seed", gen_seed) DBL("--repetition-penalty", repetition_penalty)
    INT("--gen-batch", gen_batch) INT("--tp", tp) INT("--dp", dp)
#undef INT
#undef DBL
#undef U64
#undef STR
    return 1;
}

int melbo_cmd_submit(struct melbo_cli *c, int argc, char **argv) {
    struct spec_build b;
    memset(&b, 0, sizeof b);
    melbo__job_spec__init(&b.spec);
    int status = 0;
    for (int i = 1; i < argc && status == 0; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            submit_usage();
            goto out;
        }
        if (!strcmp(o, "--orthogonal") || !strcmp(o, "--no-orthogonal")) {
            b.spec.has_orthogonal = 1;
            b.spec.orthogonal = o[2] == 'o';
            continue;
        }
        if (!strcmp(o, "--no-generate")) {
            b.spec.has_generate = 1;
            b.spec.generate = 0;
            continue;
        }
        if (!strcmp(o, "--use-generation-config")) {
            b.spec.has_use_generation_config = b.spec.use_generation_config = 1;
            continue;
        }
        if (!strcmp(o, "--ignore-eos")) {
            b.spec.has_ignore_eos = b.spec.ignore_eos = 1;
            continue;
        }
        if (!strcmp(o, "--out") || !strcmp(o, "--checkpoint") || !strcmp(o, "--resume") ||
            !strcmp(o, "--job-id")) {
            fprintf(stderr, "melbo submit: %s is chosen by the coordinator (fetch the bank with "
                            "melbo fetch JOB -o FILE)\n", o);
            status = MELBO_CLI_USAGE;
            break;
        }
        if (strncmp(o, "--", 2) != 0) {
            fprintf(stderr, "melbo submit: unexpected argument '%s'\n", o);
            status = MELBO_CLI_USAGE;
            break;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "melbo submit: %s needs a value\n", o);
            status = MELBO_CLI_USAGE;
            break;
        }
        int r = set_opt(&b, o, argv[++i]);
        if (r == 1) {
            fprintf(stderr, "melbo submit: unknown option %s (see melbo submit --help)\n", o);
            status = MELBO_CLI_USAGE;
        } else {
            status = r;
        }
    }
    if (status)
        goto out;
    if ((status = melbo_cli_connect(c)) != 0)
        goto out;
    Melbo__SubmitRequest sr = MELBO__SUBMIT_REQUEST__INIT;
    sr.spec = &b.spec;
    Melbo__Envelope env = MELBO__ENVELOPE__INIT;
    env.body_case = MELBO__ENVELOPE__BODY_SUBMIT;
    env.submit = &sr;
    Melbo__Envelope *rep = NULL;
    if ((status = melbo_cli_call(c, &env, &rep)) != 0)
        goto out;
    if (rep->body_case != MELBO__ENVELOPE__BODY_SUBMITTED) {
        fprintf(stderr, "melbo: unexpected reply to submit\n");
        status = MELBO_CLI_UNREACHABLE;
    } else {
        printf("%llu\n", (unsigned long long)rep->submitted->job_id);
    }
    melbo__envelope__free_unpacked(rep, NULL);
out:
    spec_build_free(&b);
    return status;
}
