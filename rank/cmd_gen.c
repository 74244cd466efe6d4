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
#include "rank/commands.h"
#include "rank/generate/completions.h"
#include "rank/generate/vexpr.h"
#include "rank/model/model.h"
#include "rank/model/safetensors.h"
#include "rank/tokenizer/prompt.h"
#include "rank/train/params.h"
#ifdef MELBO_HAVE_CUDA
#include "rank/gpu/model.h"
#endif

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: melbo-rank gen --model DIR [--bank FILE] [--vector EXPR ...] [prompts] [options]\n"
        "\n"
        "Generates completions with steering vectors from a bank added to the output of the\n"
        "source block at every position.\n"
        "  --vector EXPR        9, -10*22, 9-22, 0.5*3+0.5*7, random, r2, none (repeatable;\n"
        "                       default none). Indices are rows of the bank's vectors.\n"
        "  --scale X            multiplies every expression (default 1)\n"
        "  --device cuda|cpu    backend (default: cuda when a GPU is visible)\n"
        "  --dtype bf16|fp32    GPU weights and activations (default bf16)\n"
        "  --source-layer S     where to add it (default: the bank's source_layer)\n"
        "  --bank-prompts       the bank's own prompts (its prompt_ids)\n"
        "  --prompt TEXT | --raw-prompt TEXT | --prompts FILE | --system TEXT | --chat-format F\n"
        "  --prompt-ids 1,2,3   a prompt as token ids\n"
        "  --max-new-tokens N --temperature T --top-p P --top-k K --gen-seed S\n"
        "  --repetition-penalty X --use-generation-config --gen-batch N --ignore-eos\n"
        "                       decoding (default: as the bank's completions were made, else "
        "greedy, 64)\n"
        "  --json               one JSON object per completion: vector, prompt, text, token_ids\n");
}

struct gen_args {
    char *model, *bank;
    char **exprs;
    int n_exprs;
    double scale;
    int source_layer, bank_prompts, json;
    struct melbo_prompt_opts text;
    int32_t **ids;
    int *lens, n_ids;
    struct melbo_gen_settings gen;
    int gen_set[8];
    int device;   // MELBO_DEVICE_* (--device; auto: cuda when a GPU is visible)
    int gpu_bf16; // --dtype on cuda (1: bf16, the default)
};

/* Defaults from the bank's "generation" JSON for settings the command line did not give. */
static void bank_gen_defaults(struct melbo_gen_settings *g, const int *given, const char *json) {
    cJSON *o = cJSON_Parse(json ? json : "{}");
    const cJSON *v;
    if (!given[0] && cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(o, "max_new_tokens")))
        g->max_new_tokens = (int)v->valuedouble;
    if (!given[1] && cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(o, "temperature")))
        g->temperature = v->valuedouble;
    if (!given[2] && cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(o, "top_p")))
        g->top_p = v->valuedouble;
    if (!given[3] && cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(o, "top_k")))
        g->top_k = (int)v->valuedouble;
    if (!given[4] && cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(o, "seed")))
        g->seed = (uint64_t)v->valuedouble;
    if (!given[5] && cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(o, "repetition_penalty")))
        g->repetition_penalty = v->valuedouble;
    const cJSON *stop = cJSON_GetObjectItemCaseSensitive(o, "stop_ids"), *e;
    cJSON_ArrayForEach(e, stop) if (cJSON_IsNumber(e))
        melbo_gen_add_stop(g, (int32_t)e->valuedouble);
    cJSON_Delete(o);
}

static int parse_args(struct gen_args *a, int argc, char **argv, struct melbo_err *err) {
    static const char *gen_opts[] = {"--max-new-tokens", "--temperature", "--top-p",
                                     "--top-k",          "--gen-seed",    "--repetition-penalty"};
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(opt, "--help") || !strcmp(opt, "-h")) {
            usage(stdout);
            return 1;
        }
        int r = melbo_prompt_opts_parse_one(&a->text, opt, val, err);
        if (r < 0)
            return r;
        if (r == 1) {
            i++;
            continue;
        }
        for (size_t k = 0; k < sizeof gen_opts / sizeof gen_opts[0]; k++)
            if (!strcmp(opt, gen_opts[k]))
                a->gen_set[k] = 1;
        r = melbo_gen_settings_parse_one(&a->gen, opt, val, err);
        if (r < 0)
            return r;
        if (r > 0) {
            i += r == 1;
            continue;
        }
        if (!strcmp(opt, "--json")) {
            a->json = 1;
            continue;
        }
        if (!strcmp(opt, "--bank-prompts")) {
            a->bank_prompts = 1;
            continue;
        }
        if (val == NULL || strncmp(opt, "--", 2) != 0)
            return melbo_err_set(err, MELBO_EINVAL, "%s %s", opt,
                                 val ? "is not an option" : "needs a value");
        i++;
        if (!strcmp(opt, "--model")) {
            free(a->model);
            a->model = melbo_xstrdup(val);
        } else if (!strcmp(opt, "--bank")) {
            free(a->bank);
            a->bank = melbo_xstrdup(val);
        } else if (!strcmp(opt, "--vector")) {
            a->exprs = melbo_xrealloc(a->exprs, sizeof *a->exprs * (size_t)(a->n_exprs + 1));
            a->exprs[a->n_exprs++] = melbo_xstrdup(val);
        } else if (!strcmp(opt, "--device")) {
            int ret = melbo_device_parse(val, &a->device, err);
            if (ret)
                return ret;
        } else if (!strcmp(opt, "--dtype")) {
            int ret = melbo_dtype_flag_parse(val, &a->gpu_bf16, err);
            if (ret)
                return ret;
        } else if (!strcmp(opt, "--scale")) {
            char *end;
            a->scale = strtod(val, &end);
            if (*end || end == val)
                return melbo_err_set(err, MELBO_EINVAL, "--scale '%s' is not a number", val);
        } else if (!strcmp(opt, "--source-layer")) {
            char *end;
            a->source_layer = (int)strtol(val, &end, 10);
            if (*end || end == val || a->source_layer < 0)
                return melbo_err_set(err, MELBO_EINVAL, "--source-layer '%s' is not a layer", val);
        } else if (!strcmp(opt, "--prompt-ids")) {
            a->ids = melbo_xrealloc(a->ids, sizeof *a->ids * (size_t)(a->n_ids + 1));
            a->lens = melbo_xrealloc(a->lens, sizeof *a->lens * (size_t)(a->n_ids + 1));
            if (melbo_parse_id_list(val, &a->ids[a->n_ids], &a->lens[a->n_ids]) != 0)
                return melbo_err_set(err, MELBO_EINVAL,
                                     "--prompt-ids '%s': expected comma-separated ids", val);
            a->n_ids++;
        } else {
            return melbo_err_set(err, MELBO_EINVAL, "unknown option %s (see melbo-rank gen --help)",
                                 opt);
        }
    }
    if (a->model == NULL)
        return melbo_err_set(err, MELBO_EINVAL, "--model DIR is required");
    if (a->bank_prompts && a->bank == NULL)
        return melbo_err_set(err, MELBO_EINVAL, "--bank-prompts needs --bank FILE");
    return 0;
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

int melbo_cmd_gen(int argc, char **argv) {
    struct gen_args a;
    memset(&a, 0, sizeof a);
    a.scale = 1.0;
    a.source_layer = -1;
    a.gpu_bf16 = 1;
    melbo_prompt_opts_init(&a.text);
    melbo_gen_settings_init(&a.gen);
    struct melbo_err err = {0};
    struct melbo_model m;
#ifdef MELBO_HAVE_CUDA
    struct melbo_gpu_model gm;
    memset(&gm, 0, sizeof gm);
#endif
    struct melbo_st_file bank;
    struct melbo_tokenizer *tok = NULL;
    struct melbo_prompt_list plist = {0};
    struct melbo_completions c;
    memset(&m, 0, sizeof m);
    memset(&bank, 0, sizeof bank);
    memset(&c, 0, sizeof c);
    int status = 1, n_p = 0, n_vec = 0, d = 0;
    int32_t **pids = NULL;
    int *plens = NULL;
    float *vecs = NULL;
    const float **vptr = NULL;
    const float *bv = NULL, *br = NULL;
    int n_bv = 0, n_br = 0;

    int r = parse_args(&a, argc, argv, &err);
    if (r == 1) {
        status = 0;
        goto out;
    }
    if (r < 0) {
        fprintf(stderr, "melbo-rank gen: %s\n", err.msg);
        status = 2;
        goto out;
    }
    if (a.n_exprs == 0) {
        a.exprs = melbo_xmalloc(sizeof *a.exprs);
        a.exprs[a.n_exprs++] = melbo_xstrdup("none");
    }
    struct melbo_load_opts all = melbo_load_opts_all();
    if (melbo_model_load(&m, a.model, &all, &err) != 0)
        goto fail;
    d = m.cfg.d_model;
    if (a.bank) {
        if (melbo_st_open(&bank, a.bank, &err) != 0)
            goto fail;
        const struct melbo_st_tensor *V = melbo_st_find(&bank, "vectors"),
                                     *R = melbo_st_find(&bank, "random_vectors");
        const char *fmt = melbo_st_meta(&bank, "format");
        if (!fmt || strcmp(fmt, "melbo-bank") || !V || V->dtype != MELBO_DTYPE_F32 ||
            V->ndim != 2) {
            melbo_err_set(&err, MELBO_EFORMAT, "%s is not a melbo bank", a.bank);
            goto fail;
        }
        if (V->shape[1] != d) {
            melbo_err_set(&err, MELBO_ESHAPE,
                          "the bank's vectors have d = %lld but the model's d_model is %d",
                          (long long)V->shape[1], d);
            goto fail;
        }
        const char *fp = melbo_st_meta(&bank, "model_name");
        (void)fp;
        bv = V->data;
        n_bv = (int)V->shape[0];
        if (R && R->dtype == MELBO_DTYPE_F32 && R->ndim == 2 && R->shape[1] == d) {
            br = R->data;
            n_br = (int)R->shape[0];
        }
        if (a.source_layer < 0 && melbo_st_meta(&bank, "source_layer"))
            a.source_layer = atoi(melbo_st_meta(&bank, "source_layer"));
        bank_gen_defaults(&a.gen, a.gen_set, melbo_st_meta(&bank, "generation"));
    }
    if (a.source_layer < 0)
        a.source_layer = 7;
    if (a.source_layer >= m.cfg.n_layers) {
        melbo_err_set(&err, MELBO_ERANGE, "--source-layer %d is outside the model's %d layers",
                      a.source_layer, m.cfg.n_layers);
        goto fail;
    }
    /* the vectors: every expression times the scale */
    n_vec = a.n_exprs;
    vecs = melbo_xalloc_f32((size_t)n_vec * d);
    vptr = melbo_xcalloc((size_t)n_vec, sizeof *vptr);
    for (int v = 0; v < n_vec; v++) {
        int none = 0;
        if (melbo_vexpr_eval(a.exprs[v], bv, n_bv, br, n_br, d, vecs + (size_t)v * d, &none,
                             &err) != 0)
            goto fail;
        for (int j = 0; j < d; j++)
            vecs[(size_t)v * d + j] *= (float)a.scale;
        vptr[v] = none ? NULL : vecs + (size_t)v * d;
    }
    /* prompts: text (rendered), ids, or the bank's own */
    struct melbo_err tok_err;
    if (melbo_tokenizer_load(a.model, &tok, &tok_err) != 0) {
        tok = NULL;
        if (a.text.n > 0) {
            err = tok_err;
            goto fail;
        }
    }
    if (a.text.n > 0) {
        if (melbo_prompt_opts_render(&a.text, tok, &plist, &err) != 0)
            goto fail;
        if (plist.format_used)
            melbo_gen_add_stop(&a.gen, plist.end_of_turn);
    }
    n_p = (int)plist.n + a.n_ids;
    const struct melbo_st_tensor *PI = a.bank_prompts ? melbo_st_find(&bank, "prompt_ids") : NULL;
    const struct melbo_st_tensor *PL =
        a.bank_prompts ? melbo_st_find(&bank, "prompt_lengths") : NULL;
    if (a.bank_prompts) {
        if (!PI || !PL || PI->ndim != 2 || PL->shape[0] != PI->shape[0]) {
            melbo_err_set(&err, MELBO_EFORMAT, "%s has no prompt_ids/prompt_lengths", a.bank);
            goto fail;
        }
        n_p += (int)PI->shape[0];
    }
    if (n_p == 0) {
        melbo_err_set(
            &err, MELBO_EINVAL,
            "no prompt: give --prompt, --raw-prompt, --prompts, --prompt-ids or --bank-prompts");
        goto fail;
    }
    pids = melbo_xcalloc((size_t)n_p, sizeof *pids);
    plens = melbo_xcalloc((size_t)n_p, sizeof *plens);
    int k = 0;
    for (size_t i = 0; i < plist.n; i++, k++) {
        pids[k] = plist.p[i].ids.ids;
        plens[k] = (int)plist.p[i].ids.n;
    }
    for (int i = 0; i < a.n_ids; i++, k++) {
        pids[k] = a.ids[i];
        plens[k] = a.lens[i];
    }
    if (a.bank_prompts)
        for (int i = 0; i < PI->shape[0]; i++, k++) {
            pids[k] = (int32_t *)PI->data + (size_t)i * PI->shape[1];
            plens[k] = ((const int32_t *)PL->data)[i];
        }
    if (melbo_gen_settings_from_model(&a.gen, &m.cfg, a.model, &err) != 0)
        goto fail;
    if (melbo_device_resolve(&a.device, &err) != 0)
        goto fail;
#ifdef MELBO_HAVE_CUDA
    if (a.device == MELBO_DEVICE_CUDA) {
        int dev;
        if (melbo_gpu_select_device(&dev, &err) != 0 ||
            melbo_gpu_model_upload(&gm, &m, a.gpu_bf16 ? MELBO_GPU_BF16 : MELBO_GPU_F32, &err) != 0)
            goto fail;
        a.gen.gpu = &gm;
    }
#endif
    if (melbo_completions_run(&m, a.source_layer, &a.gen, tok, vptr, n_vec, pids, plens, n_p, "gen",
                              NULL, &c, &err) != 0)
        goto fail;
    for (int v = 0; v < n_vec; v++)
        for (int i = 0; i < n_p; i++) {
            int j = v * n_p + i;
            if (a.json)
                print_json_line(a.exprs[v], i, c.text[j], &c.res[j]);
            else
                printf("=== vector %s%s, prompt %d ===\n%s\n\n", a.exprs[v],
                       a.scale != 1.0 ? " (scaled)" : "", i,
                       tok ? c.text[j] : "(no tokenizer: use --json for the token ids)");
        }
    status = 0;
    goto out;
fail:
    fprintf(stderr, "melbo-rank gen: %s\n", err.msg);
out:
    melbo_completions_free(&c);
    free(pids);
    free(plens);
    free(vecs);
    free(vptr);
    melbo_prompt_list_free(&plist);
    melbo_tokenizer_free(tok);
    if (bank.map)
        melbo_st_close(&bank);
#ifdef MELBO_HAVE_CUDA
    melbo_gpu_model_free(&gm);
#endif
    melbo_model_free(&m);
    melbo_prompt_opts_free(&a.text);
    for (int i = 0; i < a.n_exprs; i++)
        free(a.exprs[i]);
    free(a.exprs);
    for (int i = 0; i < a.n_ids; i++)
        free(a.ids[i]);
    free(a.ids);
    free(a.lens);
    free(a.model);
    free(a.bank);
    return status;
}
