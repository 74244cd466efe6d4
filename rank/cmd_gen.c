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
 *
 * Under the coordinator (a gen job: `melbo gen`; `gen --args-file FILE`, the environment names
 * the coordinator as for train, rank/link/link.h) the text streams to it as it is decoded (TOKENS
 * events), each whole completion follows (COMPLETION), and the job ends done without a bank.
 */
#define OMPI_SKIP_MPICXX 1
#include <cjson/cJSON.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "rank/args_file.h"
#include "rank/backend.h"
#include "rank/commands.h"
#include "nccl/comm.h"
#include "rank/generate/completions.h"
#include "rank/bank/vexpr.h"
#include "rank/model/model.h"
#include "rank/link/link.h"
#include "rank/model/safetensors.h"
#include "rank/tokenizer/prompt.h"
#include "options/generate.h"
#include "proto/wire.h" // defines: Melbo__WarmWork

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
    struct melbo_tokenizer *tok;    // NULL when the model has none (tok_err says why)
    struct melbo_err tok_err;
    struct melbo_prompt_list plist; // rendered text prompts
    struct melbo_ids conv;          // --messages rendered and tokenized (conv.n 0 without)
    int n_p;                        // prompts: text, then --prompt-ids, then the bank's
    int32_t **pids;                 // (n_p) borrowed from plist, the arguments or the bank
    int *plens;                     // (n_p)
    struct melbo_backend be;
    struct melbo_completions c;
    struct melbo_comm *comm;        // --tp N under mpirun, else NULL (one process)
    int rank0;                      // 1 on the rank that prints, streams and talks to the link
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

/* --messages: the conversation as JSON [{role, content}, ...] rendered whole with the chat
 * format (--chat-format, else the model's template) into r->conv; its end of turn stops. */
static int render_messages(struct gen_args *a, struct gen_run *r, struct melbo_err *err) {
    cJSON *arr = cJSON_Parse(a->o.messages);
    int n = cJSON_IsArray(arr) ? cJSON_GetArraySize(arr) : -1, ret = 0;
    if (n <= 0) {
        cJSON_Delete(arr);
        return melbo_err_set(err, MELBO_EINVAL,
                             "--messages is not a JSON array of {\"role\", \"content\"} objects");
    }
    struct melbo_chat_msg *msgs = melbo_xcalloc((size_t)n, sizeof *msgs);
    for (int i = 0; i < n && ret == 0; i++) {
        const cJSON *m = cJSON_GetArrayItem(arr, i);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!cJSON_IsString(role) || !cJSON_IsString(content))
            ret = melbo_err_set(err, MELBO_EINVAL,
                                "--messages: message %d lacks a string role or content", i + 1);
        else
            msgs[i] = (struct melbo_chat_msg){role->valuestring, content->valuestring};
    }
    enum melbo_chat_format fmt;
    if (ret == 0)
        ret = a->o.prompts.chat_format
                  ? melbo_chat_format_parse(a->o.prompts.chat_format, &fmt, err)
                  : melbo_chat_detect(r->tok, &fmt, err);
    if (ret == 0)
        ret = melbo_chat_encode(r->tok, fmt, msgs, (size_t)n, NULL, &r->conv, err);
    if (ret == 0) {
        int32_t eot = melbo_chat_end_of_turn(r->tok, fmt);
        if (eot >= 0)
            melbo_gen_add_stop(&a->o.gen, eot);
    } else {
        melbo_err_prefix(err, "--messages");
    }
    free(msgs);
    cJSON_Delete(arr);
    return ret;
}

/* The prompts: --messages, text (rendered with the chat template, whose end of turn stops a
 * sequence), ids, and the bank's own. */
static int make_prompts(struct gen_args *a, struct gen_run *r, struct melbo_err *err) {
    int ret = 0;
    if (r->tok == NULL && (a->o.prompts.n > 0 || a->o.messages)) {
        *err = r->tok_err;
        return r->tok_err.code ? r->tok_err.code : MELBO_EINVAL;
    }
    if (a->o.messages && (ret = render_messages(a, r, err)) != 0)
        return ret;
    if (a->o.prompts.n > 0) {
        ret = melbo_prompt_opts_render(&a->o.prompts, r->tok, &r->plist, err);
        if (ret)
            return ret;
        if (r->plist.format_used)
            melbo_gen_add_stop(&a->o.gen, r->plist.end_of_turn);
    }
    r->n_p = (r->conv.n > 0) + (int)r->plist.n + a->o.prompts.ids.n;
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
            "no prompt: give --prompt, --raw-prompt, --prompts, --prompt-ids, --messages or "
            "--bank-prompts");
    r->pids = melbo_xcalloc((size_t)r->n_p, sizeof *r->pids);
    r->plens = melbo_xcalloc((size_t)r->n_p, sizeof *r->plens);
    int k = 0;
    if (r->conv.n > 0) {
        r->pids[k] = r->conv.ids;
        r->plens[k++] = (int)r->conv.n;
    }
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
    if (!r->rank0) /* rank 0 holds the results */
        return;
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

/* The link's side of a streamed run: completion seq is vector seq / n_p, prompt seq % n_p. */
struct gen_stream_ctx {
    struct melbo_link *link;
    const struct melbo_str_list *names;
    const char *kind;
    int n_p;
};

static void stream_piece(void *vctx, int seq, const char *text, size_t len) {
    struct gen_stream_ctx *c = vctx;
    melbo_link_tokens(c->link, seq, text, len);
}

static void stream_done(void *vctx, int seq, const char *text) {
    struct gen_stream_ctx *c = vctx;
    char label[512];
    snprintf(label, sizeof label, "%s %s, prompt %d", c->kind, c->names->v[seq / c->n_p],
             seq % c->n_p);
    melbo_link_completion(c->link, seq, label, text);
}

/* Frees what one request made (bank, vectors, prompts, completions) and zeroes it; the model,
 * its tokenizer and backend stay (a warm job serves the next request with them). */
static void request_free(struct gen_run *r) {
    melbo_completions_free(&r->c);
    free(r->pids);
    free(r->plens);
    free(r->vecs);
    free(r->arows);
    free(r->vptr);
    melbo_prompt_list_free(&r->plist);
    melbo_ids_free(&r->conv);
    if (r->bank.map)
        melbo_st_close(&r->bank);
    memset(&r->bank, 0, sizeof r->bank);
    r->bv = r->br = NULL;
    r->n_bv = r->n_br = r->adapter_bank = r->n_vec = r->n_p = 0;
    memset(&r->shape, 0, sizeof r->shape);
    memset(r->fac, 0, sizeof r->fac);
    r->arows = r->vecs = NULL;
    r->vptr = NULL;
    r->pids = NULL;
    r->plens = NULL;
}

static void run_free(struct gen_run *r) {
    request_free(r);
    melbo_backend_free(&r->be);
    melbo_tokenizer_free(r->tok);
    if (r->m.cfg.n_layers > 0)
        melbo_model_free(&r->m);
}

static void args_free(struct gen_args *a) {
    melbo_opts_free(&melbo_gen_cmd_table, &a->o);
    melbo_str_list_free(&a->given);
}

/* The checks of a parsed command line that need no file, and the default choice (none). */
static int check_args(struct gen_args *a, struct melbo_err *err) {
    if (a->o.adapters.n > 0 && a->o.bank == NULL)
        return melbo_err_set(err, MELBO_EINVAL, "--adapter needs --bank FILE (an adapter bank)");
    if (a->o.adapters.n > 0 && a->o.vectors.n > 0)
        return melbo_err_set(err, MELBO_EINVAL, "give --vector (a vector bank) or --adapter (an "
                                                "adapter bank), not both");
    if (a->o.vectors.n == 0 && a->o.adapters.n == 0) /* the default: unsteered */
        melbo_opts_parse_one(&melbo_gen_cmd_table, &a->o,
                             a->o.bank && bank_is_adapters(a->o.bank) ? "adapter" : "vector",
                             "none", err);
    return 0;
}

/* What stays loaded between requests: the model (all of it, on the host), its tokenizer (when it
 * has one; r->tok_err says why not) and the backend. */
static int setup(struct gen_args *a, struct gen_run *r, struct melbo_err *err) {
    int tp = r->comm ? melbo_comm_tp_size(r->comm) : 1;
    struct melbo_load_opts lo = {0, -1, 1, 1, r->comm ? melbo_comm_tp_rank(r->comm) : 0, tp};
    MELBO_TRY(melbo_model_load(&r->m, a->o.model, &lo, err));
    if (tp > 1) { /* this rank's slice of every block; partial sums added over the TP group */
        r->m.reduce.fn = melbo_comm_tp_reduce;
        r->m.reduce.ctx = r->comm;
    }
    r->d = r->m.cfg.d_model;
    if (melbo_tokenizer_load(a->o.model, &r->tok, &r->tok_err) != 0)
        r->tok = NULL;
    return melbo_backend_open(&r->be, a->o.device, a->o.gpu_bf16, &r->m, r->comm, err);
}

/* One request on a set-up run: its bank, vectors and prompts, then the completions (streamed to
 * link when there is one). */
static int request(struct gen_args *a, struct gen_run *r, struct melbo_link *link,
                   struct melbo_err *err) {
    if ((a->o.bank && load_bank(a, r, err) != 0) || make_vectors(a, r, err) != 0 ||
        make_prompts(a, r, err) != 0 ||
        melbo_gen_settings_from_model(&a->o.gen, &r->m.cfg, a->o.model, err) != 0)
        return err->code ? err->code : MELBO_EINVAL;
    melbo_link_state(link, "RUNNING", "generating");
    struct gen_stream_ctx sc = {link, r->adapter_bank ? &a->o.adapters : &a->o.vectors,
                                r->adapter_bank ? "adapter" : "vector", r->n_p};
    struct melbo_gen_stream stream = {stream_piece, stream_done, &sc};
    return melbo_completions_run(&r->be, a->o.source_layer, &a->o.gen, r->tok,
                                 r->adapter_bank ? NULL : r->vptr,
                                 r->adapter_bank ? r->vptr : NULL, &r->shape, r->n_vec, r->pids,
                                 r->plens, r->n_p, "gen", r->comm, link ? &stream : NULL, &r->c,
                                 err);
}

/*
 * One piece of a warm job's work: the gen job w names, with its own link, on the loaded model.
 * Its command line must name the same model (the coordinator hands a warm job only its model's
 * gen jobs). Failures end that gen job, not the warm job.
 */
static void serve_one(const struct gen_args *warm, struct gen_run *r, struct melbo_link *wl,
                      const Melbo__WarmWork *w) {
    struct gen_args a;
    struct melbo_err err = {0};
    struct melbo_link *link = melbo_link_start_for(wl, w->job_id, w->secret);
    char **argv = melbo_xcalloc(w->n_args + 2, sizeof *argv);
    argv[0] = "gen";
    for (size_t i = 0; i < w->n_args; i++)
        argv[i + 1] = w->args[i];
    memset(&a, 0, sizeof a);
    melbo_opts_init(&melbo_gen_cmd_table, &a.o);
    int ret = parse_args(&a, (int)w->n_args + 1, argv, &err);
    if (ret == 0 && (a.o.warm || strcmp(a.o.model, warm->o.model) != 0))
        ret = melbo_err_set(&err, MELBO_EINVAL, "warm job: the work names another model");
    if (ret == 0)
        ret = check_args(&a, &err);
    if (ret == 0)
        ret = request(&a, r, link, &err);
    fprintf(stderr, "gen: warm: job %llu %s%s\n", (unsigned long long)w->job_id,
            ret ? "failed: " : "done", ret ? err.msg : "");
    if (ret)
        melbo_link_finish(link, NULL, ret == 1 ? "--help is not a request" : err.msg);
    else
        melbo_link_done(link);
    request_free(r);
    args_free(&a);
    free(argv);
}

/*
 * The next piece of warm work on every rank: rank 0 takes it from the link and broadcasts it
 * (packed) to the tensor-parallel peers. Returns as melbo_link_next_work.
 */
static int next_work(struct gen_run *r, struct melbo_link *link, Melbo__WarmWork **w) {
    int k = r->rank0 ? melbo_link_next_work(link, w) : -1;
    if (r->comm == NULL || melbo_comm_size(r->comm) == 1)
        return k;
    int64_t head[2] = {k, k == 0 ? (int64_t)melbo__warm_work__get_packed_size(*w) : 0};
    melbo_comm_bcast(r->comm, MELBO_COMM_TP, head, sizeof head, 0);
    if (head[0] != 0)
        return (int)head[0];
    uint8_t *buf = melbo_xmalloc((size_t)head[1] + 1);
    if (r->rank0)
        melbo__warm_work__pack(*w, buf);
    melbo_comm_bcast(r->comm, MELBO_COMM_TP, buf, (size_t)head[1], 0);
    if (!r->rank0)
        *w = melbo__warm_work__unpack(NULL, (size_t)head[1], buf);
    free(buf);
    return *w ? 0 : -1;
}

/* --warm: load once, then serve the gen jobs the coordinator hands over until it releases us. */
static int serve_warm(struct gen_args *a, struct gen_run *r) {
    struct melbo_err err = {0};
    struct melbo_link *link = melbo_link_start_from_env(); /* rank 0's; NULL on its peers */
    if (link == NULL && r->rank0) {
        fprintf(stderr, "melbo-rank gen: --warm runs under the coordinator (melbo warm)\n");
        return 2;
    }
    melbo_link_state(link, "STARTING", "loading the model");
    if (r->rank0)
        fprintf(stderr, "gen: loading the model %s\n", a->o.model);
    if (setup(a, r, &err) != 0) {
        fprintf(stderr, "melbo-rank gen: %s\n", err.msg);
        melbo_link_finish(link, NULL, err.msg);
        if (r->comm && melbo_comm_size(r->comm) > 1)
            melbo_comm_abort(r->comm, err.msg);
        return 1;
    }
    melbo_link_state(link, "RUNNING", "warm: the model is loaded");
    int served = 0, k;
    Melbo__WarmWork *w = NULL;
    while ((k = next_work(r, link, &w)) == 0) {
        serve_one(a, r, link, w);
        melbo__warm_work__free_unpacked(w, NULL);
        served++;
    }
    if (r->rank0)
        fprintf(stderr, "gen: warm: %s after %d requests\n", k == 1 ? "released" : "link lost",
                served);
    if (k == 1)
        melbo_link_done(link);
    else
        melbo_link_finish(link, NULL, "the warm job's link was lost");
    return k == 1 ? 0 : 1;
}

/* --tp N: joins the MPI world (N ranks, each a slice of every block) when started by a launcher;
 * one process otherwise. Returns 0 or a negative code with err set (MPI finalised then). */
static int join_world(const struct gen_args *a, struct gen_run *r, int *mpi,
                      struct melbo_err *err) {
    r->rank0 = 1;
    if (!melbo_comm_launched())
        return a->o.tp == 1 ? 0
                            : melbo_err_set(err, MELBO_EINVAL,
                                            "--tp %d needs %d ranks: start it with mpirun -np %d "
                                            "melbo-rank gen ...",
                                            a->o.tp, a->o.tp, a->o.tp);
    MPI_Init(NULL, NULL);
    int ret = melbo_comm_init(&r->comm, a->o.tp, 1, MELBO_COMM_MPI, err);
    if (ret) {
        MPI_Finalize();
        return ret;
    }
    *mpi = 1;
    r->rank0 = melbo_comm_rank(r->comm) == 0;
    return 0;
}

int melbo_cmd_gen(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "--args-file")) { /* a gen job: options from the file */
        static int from_file; /* one level: a file naming --args-file again is refused */
        char **file_argv = NULL, *file_buf = NULL;
        if (from_file++) {
            fprintf(stderr, "melbo-rank gen: --args-file inside an --args-file\n");
            return 2;
        }
        int n = melbo_args_from_file("gen", argc, argv, &file_argv, &file_buf);
        int status = n < 0 ? 2 : melbo_cmd_gen(n, file_argv);
        free(file_argv);
        free(file_buf);
        return status;
    }
    struct gen_args a;
    struct gen_run r;
    struct melbo_err err = {0};
    struct melbo_link *link = NULL; // the coordinator's link in a gen job, NULL standalone
    int status = 1, mpi = 0;
    memset(&a, 0, sizeof a);
    memset(&r, 0, sizeof r);
    melbo_opts_init(&melbo_gen_cmd_table, &a.o);
    int ret = parse_args(&a, argc, argv, &err);
    if (ret == 0 && !a.o.warm)
        ret = check_args(&a, &err);
    if (ret == 0)
        ret = join_world(&a, &r, &mpi, &err);
    if (ret != 0) {
        if (ret < 0)
            fprintf(stderr, "melbo-rank gen: %s\n", err.msg);
        status = ret == 1 ? 0 : 2;
        goto out;
    }
    if (a.o.warm) {
        status = serve_warm(&a, &r);
        goto out;
    }
    link = melbo_link_start_from_env(); /* rank 0 only */
    melbo_link_state(link, "STARTING", "loading the model");
    if (setup(&a, &r, &err) != 0 || request(&a, &r, link, &err) != 0)
        goto fail;
    print_results(&a, &r);
    status = 0;
    if (link && melbo_link_done(link) != 0)
        fprintf(stderr, "melbo-rank gen: the coordinator did not confirm the end of the job\n");
    link = NULL;
    goto out;
fail:
    fprintf(stderr, "melbo-rank gen: %s\n", err.msg);
    melbo_link_finish(link, NULL, err.msg);
    link = NULL;
    if (r.comm && melbo_comm_size(r.comm) > 1) /* a peer must not wait in a collective */
        melbo_comm_abort(r.comm, err.msg);
out:
    run_free(&r);
    args_free(&a);
    if (mpi) {
        melbo_comm_free(r.comm);
        MPI_Finalize();
    }
    return status;
}
