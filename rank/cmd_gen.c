/*
 * rank/cmd_gen.c - `melbo-rank gen`: explore a bank by generating under vector expressions.
 *
 *   melbo-rank gen --model DIR [--bank FILE] --vector EXPR [--vector EXPR ...] [--scale X]
 *                  (prompt options | --prompt-ids 1,2,3 | --bank-prompts) [decoding options]
 * [--json]
 *
 * Every --vector is generated side by side in one batch with every prompt. Decoding settings
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
#include "rank/generate/vexpr.h"
#include "rank/model/model.h"
#include "rank/model/safetensors.h"
#include "rank/tokenizer/prompt.h"
#include "options/generate.h"

static void usage(FILE *f) {
    fprintf(f, "usage: melbo-rank gen --model DIR [--bank FILE] [--vector EXPR ...] [prompts] "
               "[options]\n\n"
               "Generates completions with steering vectors from a bank added to the output of "
               "the\nsource block at every position.\n\n");
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
    return ret;
}

static void print_json_line(const char *expr, int prompt, const char *text,
                            const struct melbo_gen_result *r) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "vector", expr);
    cJSON_AddNumberToObject(o, "prompt", prompt);
    cJSON_AddStringToObject(o, "text", text);
    cJSON *ids = cJSON_AddArrayToObject(o, "token_ids");
    for (int k = 0; k < r->n; k++)
        cJSON_AddItemToArray(ids, cJSON_CreateNumber(r->ids[k]));
    cJSON_AddBoolToObject(o, "stopped", r->stopped);
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

/* Opens --bank: its vectors, random baselines, source layer and decoding settings. */
static int load_bank(struct gen_args *a, struct gen_run *r, struct melbo_err *err) {
    int ret = melbo_st_open(&r->bank, a->o.bank, err);
    if (ret)
        return ret;
    const struct melbo_st_tensor *V = melbo_st_find(&r->bank, "vectors"),
                                 *R = melbo_st_find(&r->bank, "random_vectors");
    const char *fmt = melbo_st_meta(&r->bank, "format");
    if (!fmt || strcmp(fmt, "melbo-bank") || !V || V->dtype != MELBO_DTYPE_F32 || V->ndim != 2)
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

/* The source layer (default 7) checked against the model, and every expression times --scale. */
static int make_vectors(struct gen_args *a, struct gen_run *r, struct melbo_err *err) {
    if (a->o.source_layer < 0)
        a->o.source_layer = 7;
    if (a->o.source_layer >= r->m.cfg.n_layers)
        return melbo_err_set(err, MELBO_ERANGE,
                             "--source-layer %d is outside the model's %d layers", a->o.source_layer,
                             r->m.cfg.n_layers);
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
    for (int v = 0; v < r->n_vec; v++)
        for (int i = 0; i < r->n_p; i++) {
            int j = v * r->n_p + i;
            if (a->o.json)
                print_json_line(a->o.vectors.v[v], i, r->c.text[j], &r->c.res[j]);
            else
                printf("=== vector %s%s, prompt %d ===\n%s\n\n", a->o.vectors.v[v],
                       a->o.scale != 1.0 ? " (scaled)" : "", i,
                       r->tok ? r->c.text[j] : "(no tokenizer: use --json for the token ids)");
        }
}

static void run_free(struct gen_run *r) {
    melbo_completions_free(&r->c);
    melbo_backend_free(&r->be);
    free(r->pids);
    free(r->plens);
    free(r->vecs);
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
    if (a.o.vectors.n == 0) /* the default: unsteered */
        melbo_opts_parse_one(&melbo_gen_cmd_table, &a.o, "vector", "none", &err);
    struct melbo_load_opts all = melbo_load_opts_all();
    if (melbo_model_load(&r.m, a.o.model, &all, &err) != 0)
        goto fail;
    r.d = r.m.cfg.d_model;
    if ((a.o.bank && load_bank(&a, &r, &err) != 0) || make_vectors(&a, &r, &err) != 0 ||
        make_prompts(&a, &r, &err) != 0 ||
        melbo_gen_settings_from_model(&a.o.gen, &r.m.cfg, a.o.model, &err) != 0 ||
        melbo_backend_open(&r.be, a.o.device, a.o.gpu_bf16, &r.m, NULL, &err) != 0 ||
        melbo_completions_run(&r.be, a.o.source_layer, &a.o.gen, r.tok, r.vptr, r.n_vec, r.pids,
                              r.plens, r.n_p, "gen", NULL, &r.c, &err) != 0)
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
