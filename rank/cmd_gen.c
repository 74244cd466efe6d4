/*
 * rank/cmd_gen.c - `melbo-rank gen`: explore a bank by generating under vector expressions.
 *
 *   melbo-rank gen --model DIR [--bank FILE] --vector EXPR [--vector EXPR ...] [--scale X]
 *                  (prompt options | --prompt-ids 1,2,3 | --bank-prompts) [decoding options]
 * [--json]
 *   melbo-rank gen --model DIR --bank ADAPTER_BANK --adapter K|rK|none [--adapter ...] ...
 *
 * Every --vector (or --adapter) is generated side by side in one batch with every prompt. Decoding settings
 * default to the ones the bank's completions were made with, so `gen --vector k --bank-prompts`
 * reproduces vector k's stored completion exactly.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "rank/backend.h"
#include "rank/commands.h"
#include "rank/generate/completions.h"
#include "rank/bank/vexpr.h"
#include "rank/model/model.h"
#include "rank/model/safetensors.h"
#include "rank/tokenizer/prompt.h"
#include "options/generate.h"

static void usage(FILE *f) {
    fprintf(f, "usage: melbo-rank gen --model DIR [--bank FILE] [--vector EXPR ...] [prompts] "
               "[options]\n\n"
               "Generates completions with steering vectors from a bank added to the output of "
               "the\nsource block at every position, or with a bank's adapters (--adapter).\n\n");
    melbo_opts_usage(f, &melbo_gen_cmd_table, 0);
}

/* The command line (options/generate.h) and which decoding options it gave. */
struct gen_args {
    struct melbo_gen_cmd_params o;
    struct melbo_str_list given; // names of the options given, without dashes
};

/* The parser's visitor: remembers the names given. */
static int note_given(void *ctx, const struct melbo_opt *row, const char *name, const char *val,
                      struct melbo_err *err) {
    struct melbo_str_list *l = ctx;
    (void)row, (void)val, (void)err;
    l->v = melbo_xrealloc(l->v, sizeof *l->v * (size_t)(l->n + 1));
    l->v[l->n++] = melbo_xstrdup(name);
    return 0;
}

static int was_given(const struct gen_args *a, const char *name) {
    for (int i = 0; i < a->given.n; i++)
        if (!strcmp(a->given.v[i], name))
            return 1;
    return 0;
}

/* Defaults from the bank's "generation" JSON (melbo_gen_settings_json) for the decoding options
 * the command line did not give, checked as if given; and the bank's stop ids. */
static int bank_gen_defaults(struct gen_args *a, const char *json, struct melbo_err *err) {
    static const char *const keys[][2] = {
        {"max_new_tokens", "max-new-tokens"}, {"temperature", "temperature"}, {"top_p", "top-p"},
        {"top_k", "top-k"},                   {"seed", "gen-seed"},
        {"repetition_penalty", "repetition-penalty"}};
    cJSON *o = cJSON_Parse(json ? json : "{}");
    const cJSON *v;
    int ret = 0;
    for (size_t k = 0; k < MELBO_ARRAY_SIZE(keys) && ret == 0; k++) {
        if (was_given(a, keys[k][1]) ||
            !cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(o, keys[k][0])))
            continue;
        char text[64];
        snprintf(text, sizeof text, "%.17g", v->valuedouble);
        ret = melbo_opts_parse_one(&melbo_gen_table, &a->o.gen, keys[k][1], text, err);
        if (ret)
            melbo_err_prefix(err, "the bank's generation settings");
    }
    const cJSON *stop = cJSON_GetObjectItemCaseSensitive(o, "stop_ids"), *e;
    cJSON_ArrayForEach(e, stop) if (cJSON_IsNumber(e))
        melbo_gen_add_stop(&a->o.gen, (int32_t)e->valuedouble);
    cJSON_Delete(o);
    return ret;
}

/* Returns 0, 1 after --help, or a negative code with err set. */
static int parse_args(struct gen_args *a, int argc, char **argv, struct melbo_err *err) {
    struct melbo_opts_parse_cfg cfg = {"melbo-rank gen", 0, 0, note_given, &a->given};
    int ret = melbo_opts_parse(&melbo_gen_cmd_table, &a->o, argc, argv, &cfg, err);
    if (ret == 1)
        usage(stdout);
    if (ret == 0 && a->o.bank_prompts && a->o.bank == NULL)
        ret = melbo_err_set(err, MELBO_EINVAL, "--bank-prompts needs --bank FILE");
    if (ret == 0 && a->o.logits && !a->o.json)
        ret = melbo_err_set(err, MELBO_EINVAL, "--logits is printed with --json only");
    a->o.gen.keep_logits = a->o.logits;
    return ret;
}

static void print_json_line(const char *kind, const char *expr, int prompt, const char *text,
                            const struct melbo_gen_result *r, int V) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, kind, expr);
    cJSON_AddNumberToObject(o, "prompt", prompt);
    cJSON_AddStringToObject(o, "text", text);
    cJSON *ids = cJSON_AddArrayToObject(o, "token_ids");
    for (int k = 0; k < r->n; k++)
        cJSON_AddItemToArray(ids, cJSON_CreateNumber(r->ids[k]));
    cJSON_AddBoolToObject(o, "stopped", r->stopped);
    if (r->logits0) {
        cJSON *lg = cJSON_AddArrayToObject(o, "logits");
        for (int k = 0; k < V; k++) {
            char num[32]; /* %.9g: the float round-trips */
            snprintf(num, sizeof num, "%.9g", r->logits0[k]);
            cJSON_AddItemToArray(lg, cJSON_CreateRaw(num));
        }
    }
    char *s = cJSON_PrintUnformatted(o);
    printf("%s\n", s);
    free(s);
    cJSON_Delete(o);
}

/* Everything one gen run holds besides its arguments; zeroed at start, freed by run_free. */
struct gen_run {
    struct melbo_model m;      // the whole model, on the host
    struct melbo_st_file bank; // --bank, mapped (bank.map NULL without one)
    const float *bv, *br;      // the bank's vectors (n_bv, d), random baselines (n_br, d)
    int n_bv, n_br, d;
    int adapter_bank;                       // the bank holds adapters (kind = adapter)
    struct melbo_adapter_shape shape;       // their shape
    const struct melbo_st_tensor *fac[4];   // lora_A, lora_B, random_lora_A, random_lora_B
    float *arows;                           // (n_vec, width) the --adapter rows
    int n_vec;                      // one vector per --vector expression
    float *vecs;                    // (n_vec, d) each expression times --scale
    const float **vptr;             // (n_vec) rows of vecs, NULL for "none"
    struct melbo_tokenizer *tok;    // NULL when the model has none
    struct melbo_prompt_list plist; // rendered text prompts
    int n_p;                        // prompts: text, then --prompt-ids, then the bank's
    int32_t **pids;                 // (n_p) borrowed from plist, the arguments or the bank
    int *plens;                     // (n_p)
    struct melbo_backend be;
    struct melbo_completions c;
};

/* An adapter bank's factors: lora_A [K, r, ff] and lora_B [K, d, r] (and the random ones, when
 * present) checked against each other and against the model. */
static int load_adapter_bank(struct gen_args *a, struct gen_run *r, struct melbo_err *err) {
    static const char *const names[4] = {"lora_A", "lora_B", "random_lora_A", "random_lora_B"};
    for (int k = 0; k < 4; k++) {
        const struct melbo_st_tensor *t = melbo_st_find(&r->bank, names[k]);
        if (t && (t->dtype != MELBO_DTYPE_F32 || t->ndim != 3))
            return melbo_err_set(err, MELBO_EFORMAT, "%s: '%s' is not an F32 [N, rows, cols] tensor",
                                 a->o.bank, names[k]);
        r->fac[k] = t;
    }
    const struct melbo_st_tensor *A = r->fac[0], *B = r->fac[1];
    const char *alpha = melbo_st_meta(&r->bank, "adapter_alpha");
    if (!A || !B || !alpha || A->shape[0] != B->shape[0] || B->shape[2] != A->shape[1])
        return melbo_err_set(err, MELBO_EFORMAT,
                             "%s says kind = adapter but lacks matching lora_A [N, r, d_mlp], "
                             "lora_B [N, d, r] and adapter_alpha",
                             a->o.bank);
    r->shape = (struct melbo_adapter_shape){(int)A->shape[1], (int)B->shape[1], (int)A->shape[2],
                                            strtod(alpha, NULL)};
    if (r->shape.d != r->d || r->shape.ff != r->m.cfg.d_ff)
        return melbo_err_set(err, MELBO_ESHAPE,
                             "the bank's adapters are for d = %d, MLP width %d, but the model has "
                             "d_model %d, MLP width %d",
                             r->shape.d, r->shape.ff, r->d, r->m.cfg.d_ff);
    for (int k = 2; k < 4; k++)
        if (r->fac[k] && (r->fac[k]->shape[1] != r->fac[k - 2]->shape[1] ||
                          r->fac[k]->shape[2] != r->fac[k - 2]->shape[2]))
            r->fac[2] = r->fac[3] = NULL; /* random baselines of another shape: not offered */
    if (!r->fac[2] || !r->fac[3] || r->fac[2]->shape[0] != r->fac[3]->shape[0])
        r->fac[2] = r->fac[3] = NULL;
    r->adapter_bank = 1;
    return 0;
}

/* Opens --bank: its vectors (or adapters), random baselines, source layer and decoding
 * settings. */
static int load_bank(struct gen_args *a, struct gen_run *r, struct melbo_err *err) {
    int ret = melbo_st_open(&r->bank, a->o.bank, err);
    if (ret)
        return ret;
    const struct melbo_st_tensor *V = melbo_st_find(&r->bank, "vectors"),
                                 *R = melbo_st_find(&r->bank, "random_vectors");
    const char *fmt = melbo_st_meta(&r->bank, "format"), *kind = melbo_st_meta(&r->bank, "kind");
    if (!fmt || strcmp(fmt, "melbo-bank"))
        return melbo_err_set(err, MELBO_EFORMAT, "%s is not a melbo bank", a->o.bank);
    if (kind && strcmp(kind, "adapter") == 0) {
        if (a->o.vectors.n > 0)
            return melbo_err_set(err, MELBO_EINVAL,
                                 "%s is an adapter bank: choose with --adapter K, not --vector",
                                 a->o.bank);
        ret = load_adapter_bank(a, r, err);
        if (ret == 0 && a->o.source_layer < 0 && melbo_st_meta(&r->bank, "source_layer"))
            a->o.source_layer = atoi(melbo_st_meta(&r->bank, "source_layer"));
        return ret ? ret : bank_gen_defaults(a, melbo_st_meta(&r->bank, "generation"), err);
    }
    if (kind && strcmp(kind, "vector") != 0)
        return melbo_err_set(err, MELBO_EFORMAT, "%s holds kind '%s', which this melbo does not know",
                             a->o.bank, kind);
    if (a->o.adapters.n > 0)
        return melbo_err_set(err, MELBO_EINVAL,
                             "%s is a vector bank: --adapter needs a bank trained with "
                             "--adapter-rank (use --vector EXPR)",
                             a->o.bank);
    if (!V || V->dtype != MELBO_DTYPE_F32 || V->ndim != 2)
        return melbo_err_set(err, MELBO_EFORMAT, "%s is not a melbo bank", a->o.bank);
    if (V->shape[1] != r->d)
        return melbo_err_set(err, MELBO_ESHAPE,
                             "the bank's vectors have d = %lld but the model's d_model is %d",
                             (long long)V->shape[1], r->d);
    r->bv = V->data;
    r->n_bv = (int)V->shape[0];
    if (R && R->dtype == MELBO_DTYPE_F32 && R->ndim == 2 && R->shape[1] == r->d) {
        r->br = R->data;
        r->n_br = (int)R->shape[0];
    }
    if (a->o.source_layer < 0 && melbo_st_meta(&r->bank, "source_layer"))
        a->o.source_layer = atoi(melbo_st_meta(&r->bank, "source_layer"));
    return bank_gen_defaults(a, melbo_st_meta(&r->bank, "generation"), err);
}

/* The --adapter choices as adapter rows (vptr points at them; NULL for none). */
static int make_adapters(struct gen_args *a, struct gen_run *r, struct melbo_err *err) {
    const struct melbo_adapter_shape *s = &r->shape;
    size_t nA = melbo_adapter_n_A(s), W = melbo_adapter_width(s);
    int n_ad = (int)r->fac[0]->shape[0], n_rnd = r->fac[2] ? (int)r->fac[2]->shape[0] : 0;
    if (a->o.scale != 1.0)
        return melbo_err_set(err, MELBO_EINVAL, "--scale multiplies vectors, not adapters");
    r->n_vec = a->o.adapters.n;
    r->arows = melbo_xalloc_f32((size_t)r->n_vec * W);
    r->vptr = melbo_xcalloc((size_t)r->n_vec, sizeof *r->vptr);
    for (int v = 0; v < r->n_vec; v++) {
        const char *e = a->o.adapters.v[v];
        if (strcmp(e, "none") == 0)
            continue;
        int rnd = e[0] == 'r', n = rnd ? n_rnd : n_ad;
        char *end = NULL;
        long k = strtol(e + rnd, &end, 10);
        if (e[rnd] < '0' || e[rnd] > '9' || *end != '\0' || k >= n)
            return melbo_err_set(err, MELBO_ERANGE,
                                 "--adapter %s: the bank holds %d adapters (0..%d) and %d random "
                                 "baselines (r0..r%d); or none",
                                 e, n_ad, n_ad - 1, n_rnd, n_rnd - 1);
        const struct melbo_st_tensor *A = r->fac[rnd ? 2 : 0], *B = r->fac[rnd ? 3 : 1];
        float *row = r->arows + (size_t)v * W;
        memcpy(row, (const float *)A->data + (size_t)k * nA, sizeof(float) * nA);
        memcpy(row + nA, (const float *)B->data + (size_t)k * (W - nA), sizeof(float) * (W - nA));
        r->vptr[v] = row;
    }
    return 0;
}

/* The source layer (default 7) checked against the model, and every expression times --scale
 * (or the --adapter choices of an adapter bank). */
static int make_vectors(struct gen_args *a, struct gen_run *r, struct melbo_err *err) {
    if (a->o.source_layer < 0)
        a->o.source_layer = 7;
    if (a->o.source_layer >= r->m.cfg.n_layers)
        return melbo_err_set(err, MELBO_ERANGE,
                             "--source-layer %d is outside the model's %d layers", a->o.source_layer,
                             r->m.cfg.n_layers);
    if (r->adapter_bank)
        return make_adapters(a, r, err);
    int d = r->d;
    r->n_vec = a->o.vectors.n;
    r->vecs = melbo_xalloc_f32((size_t)r->n_vec * d);
    r->vptr = melbo_xcalloc((size_t)r->n_vec, sizeof *r->vptr);
    for (int v = 0; v < r->n_vec; v++) {
        int none = 0;
        int ret = melbo_vexpr_eval(a->o.vectors.v[v], r->bv, r->n_bv, r->br, r->n_br, d,
                                   r->vecs + (size_t)v * d, &none, err);
        if (ret)
            return ret;
        for (int j = 0; j < d; j++)
            r->vecs[(size_t)v * d + j] *= (float)a->o.scale;
        r->vptr[v] = none ? NULL : r->vecs + (size_t)v * d;
    }
    return 0;
}

/* The prompts: text (rendered with the chat template, whose end of turn stops a sequence),
 * ids, and the bank's own. */
static int make_prompts(struct gen_args *a, struct gen_run *r, struct melbo_err *err) {
    struct melbo_err tok_err;
    int ret = melbo_tokenizer_load(a->o.model, &r->tok, &tok_err);
    if (ret) {
        r->tok = NULL;
        if (a->o.prompts.n > 0) {
            *err = tok_err;
            return ret;
        }
    }
    if (a->o.prompts.n > 0) {
        ret = melbo_prompt_opts_render(&a->o.prompts, r->tok, &r->plist, err);
        if (ret)
            return ret;
        if (r->plist.format_used)
            melbo_gen_add_stop(&a->o.gen, r->plist.end_of_turn);
    }
    r->n_p = (int)r->plist.n + a->o.prompts.ids.n;
    const struct melbo_st_tensor *PI = NULL, *PL = NULL;
    if (a->o.bank_prompts) {
        PI = melbo_st_find(&r->bank, "prompt_ids");
        PL = melbo_st_find(&r->bank, "prompt_lengths");
        if (!PI || !PL || PI->ndim != 2 || PL->shape[0] != PI->shape[0])
            return melbo_err_set(err, MELBO_EFORMAT, "%s has no prompt_ids/prompt_lengths",
                                 a->o.bank);
        r->n_p += (int)PI->shape[0];
    }
    if (r->n_p == 0)
        return melbo_err_set(
            err, MELBO_EINVAL,
            "no prompt: give --prompt, --raw-prompt, --prompts, --prompt-ids or --bank-prompts");
    r->pids = melbo_xcalloc((size_t)r->n_p, sizeof *r->pids);
    r->plens = melbo_xcalloc((size_t)r->n_p, sizeof *r->plens);
    int k = 0;
    for (size_t i = 0; i < r->plist.n; i++, k++) {
        r->pids[k] = r->plist.p[i].ids.ids;
        r->plens[k] = (int)r->plist.p[i].ids.n;
    }
    for (int i = 0; i < a->o.prompts.ids.n; i++, k++) {
        r->pids[k] = a->o.prompts.ids.ids[i];
        r->plens[k] = a->o.prompts.ids.lens[i];
    }
    for (int i = 0; PI && i < PI->shape[0]; i++, k++) {
        r->pids[k] = (int32_t *)PI->data + (size_t)i * PI->shape[1];
        r->plens[k] = ((const int32_t *)PL->data)[i];
    }
    return 0;
}

static void print_results(const struct gen_args *a, const struct gen_run *r) {
    const char *kind = r->adapter_bank ? "adapter" : "vector";
    const struct melbo_str_list *names = r->adapter_bank ? &a->o.adapters : &a->o.vectors;
    for (int v = 0; v < r->n_vec; v++)
        for (int i = 0; i < r->n_p; i++) {
            int j = v * r->n_p + i;
            if (a->o.json)
                print_json_line(kind, names->v[v], i, r->c.text[j], &r->c.res[j],
                                r->m.cfg.vocab);
            else
                printf("=== %s %s%s, prompt %d ===\n%s\n\n", kind, names->v[v],
                       a->o.scale != 1.0 ? " (scaled)" : "", i,
                       r->tok ? r->c.text[j] : "(no tokenizer: use --json for the token ids)");
        }
}

/* 1 when path opens as a bank of kind adapter (errors are reported by load_bank later). */
static int bank_is_adapters(const char *path) {
    struct melbo_st_file f;
    struct melbo_err ignored;
    if (melbo_st_open(&f, path, &ignored) != 0)
        return 0;
    const char *kind = melbo_st_meta(&f, "kind");
    int yes = kind && strcmp(kind, "adapter") == 0;
    melbo_st_close(&f);
    return yes;
}

static void run_free(struct gen_run *r) {
    melbo_completions_free(&r->c);
    melbo_backend_free(&r->be);
    free(r->pids);
    free(r->plens);
    free(r->vecs);
    free(r->arows);
    free(r->vptr);
    melbo_prompt_list_free(&r->plist);
    melbo_tokenizer_free(r->tok);
    if (r->bank.map)
        melbo_st_close(&r->bank);
    melbo_model_free(&r->m);
}

static void args_free(struct gen_args *a) {
    melbo_opts_free(&melbo_gen_cmd_table, &a->o);
    melbo_str_list_free(&a->given);
}

int melbo_cmd_gen(int argc, char **argv) {
    struct gen_args a;
    struct gen_run r;
    struct melbo_err err = {0};
    int status = 1;
    memset(&a, 0, sizeof a);
    memset(&r, 0, sizeof r);
    melbo_opts_init(&melbo_gen_cmd_table, &a.o);
    int ret = parse_args(&a, argc, argv, &err);
    if (ret != 0) {
        if (ret < 0)
            fprintf(stderr, "melbo-rank gen: %s\n", err.msg);
        status = ret == 1 ? 0 : 2;
        goto out;
    }
    if (a.o.adapters.n > 0 && a.o.bank == NULL) {
        fprintf(stderr, "melbo-rank gen: --adapter needs --bank FILE (an adapter bank)\n");
        status = 2;
        goto out;
    }
    if (a.o.adapters.n > 0 && a.o.vectors.n > 0) {
        fprintf(stderr, "melbo-rank gen: give --vector (a vector bank) or --adapter (an adapter "
                        "bank), not both\n");
        status = 2;
        goto out;
    }
    if (a.o.vectors.n == 0 && a.o.adapters.n == 0) /* the default: unsteered */
        melbo_opts_parse_one(&melbo_gen_cmd_table, &a.o,
                             a.o.bank && bank_is_adapters(a.o.bank) ? "adapter" : "vector", "none",
                             &err);
    struct melbo_load_opts all = melbo_load_opts_all();
    if (melbo_model_load(&r.m, a.o.model, &all, &err) != 0)
        goto fail;
    r.d = r.m.cfg.d_model;
    if ((a.o.bank && load_bank(&a, &r, &err) != 0) || make_vectors(&a, &r, &err) != 0 ||
        make_prompts(&a, &r, &err) != 0 ||
        melbo_gen_settings_from_model(&a.o.gen, &r.m.cfg, a.o.model, &err) != 0 ||
        melbo_backend_open(&r.be, a.o.device, a.o.gpu_bf16, &r.m, NULL, &err) != 0 ||
        melbo_completions_run(&r.be, a.o.source_layer, &a.o.gen, r.tok,
                              r.adapter_bank ? NULL : r.vptr, r.adapter_bank ? r.vptr : NULL,
                              &r.shape, r.n_vec, r.pids, r.plens, r.n_p, "gen", NULL, &r.c,
                              &err) != 0)
        goto fail;
    print_results(&a, &r);
    status = 0;
    goto out;
fail:
    fprintf(stderr, "melbo-rank gen: %s\n", err.msg);
out:
    run_free(&r);
    args_free(&a);
    return status;
}
