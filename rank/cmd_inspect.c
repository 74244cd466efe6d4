/*
 * rank/cmd_inspect.c - `melbo-rank inspect --model DIR [--json]`: what a user checks before
 * submitting a job. Reads config.json and the safetensors headers only (no weights), checks that
 * every tensor the config implies is present with the right shape, and prints the architecture.
 * `inspect --config FILE` reads a lone config.json (no checkpoint): the architecture, the
 * parameter count computed from the config, and whether melbo runs it.
 */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "rank/commands.h"
#include "rank/model/checkpoint.h"
#include "rank/model/model.h"

static void rope_text(const struct melbo_model_config *c, char *buf, size_t n) {
    int w = snprintf(buf, n, "theta %g, %s", c->rope_theta, melbo_rope_type_name(c->rope_type));
    if (c->rope_type == MELBO_ROPE_LINEAR)
        snprintf(buf + w, n - (size_t)w, " (factor %g)", c->rope_factor);
    else if (c->rope_type == MELBO_ROPE_LLAMA3)
        snprintf(buf + w, n - (size_t)w,
                 " (factor %g, low_freq_factor %g, high_freq_factor %g, original context %d)",
                 c->rope_factor, c->rope_low_freq_factor, c->rope_high_freq_factor,
                 c->rope_original_max_pos);
    if (c->rope_dim != c->head_dim) {
        size_t l = strlen(buf);
        snprintf(buf + l, n - l, ", rotating %d of %d dims", c->rope_dim, c->head_dim);
    }
}

/* The issue-21 family features, one line each where present. */
static void family_text(const struct melbo_model_config *c) {
    if (c->norm_plus_one || c->post_norms || c->no_pre_norms)
        printf("norms           %s%s%s\n", c->no_pre_norms ? "post-norms only" : "pre-norms",
               c->post_norms && !c->no_pre_norms ? " and post-norms" : "",
               c->norm_plus_one ? ", scaled by (1 + w)" : "");
    if (c->embed_scale != 0.0f)
        printf("embed scale     %g (sqrt(d))\n", c->embed_scale);
    if (c->attn_scale != 0.0f)
        printf("attn scale      %g (query_pre_attn_scalar^-0.5)\n", c->attn_scale);
    if (c->attn_softcap != 0.0f || c->final_softcap != 0.0f)
        printf("soft-capping    attention %g, final logits %g (0 = none)\n", c->attn_softcap,
               c->final_softcap);
    if (c->window > 0) {
        int n = 0;
        for (int l = 0; l < c->n_layers; l++)
            n += c->layer_sliding[l];
        printf("sliding window  %d on %d of %d layers (computed exactly)%s\n", c->window, n,
               c->n_layers, c->local_rope ? "; those use the local RoPE base" : "");
    }
    if (c->local_rope)
        printf("local rope      theta %g\n", c->rope_theta_local);
}

static void print_json(const char *dir, const struct melbo_model_config *c, long long params,
                       const char *dtype, const char *fp, int n_files) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", dir);
    cJSON_AddStringToObject(o, "architecture", c->architecture);
    cJSON_AddStringToObject(o, "model_type", c->model_type);
    cJSON_AddNumberToObject(o, "n_layers", c->n_layers);
    cJSON_AddNumberToObject(o, "d_model", c->d_model);
    cJSON_AddNumberToObject(o, "n_heads", c->n_heads);
    cJSON_AddNumberToObject(o, "n_kv_heads", c->n_kv_heads);
    cJSON_AddNumberToObject(o, "head_dim", c->head_dim);
    cJSON_AddNumberToObject(o, "d_ff", c->d_ff);
    cJSON_AddNumberToObject(o, "vocab_size", c->vocab);
    cJSON_AddStringToObject(o, "dtype", dtype);
    cJSON_AddNumberToObject(o, "parameters", (double)params);
    cJSON_AddNumberToObject(o, "norm_eps", c->norm_eps);
    cJSON *rope = cJSON_AddObjectToObject(o, "rope");
    cJSON_AddNumberToObject(rope, "theta", c->rope_theta);
    cJSON_AddStringToObject(rope, "type", melbo_rope_type_name(c->rope_type));
    cJSON_AddNumberToObject(rope, "dim", c->rope_dim);
    if (c->rope_type != MELBO_ROPE_DEFAULT)
        cJSON_AddNumberToObject(rope, "factor", c->rope_factor);
    if (c->rope_type == MELBO_ROPE_LLAMA3) {
        cJSON_AddNumberToObject(rope, "low_freq_factor", c->rope_low_freq_factor);
        cJSON_AddNumberToObject(rope, "high_freq_factor", c->rope_high_freq_factor);
        cJSON_AddNumberToObject(rope, "original_max_position_embeddings", c->rope_original_max_pos);
    }
    cJSON_AddBoolToObject(o, "tied_embeddings", c->tied_embeddings);
    cJSON_AddBoolToObject(o, "qkv_bias", c->qkv_bias);
    cJSON_AddBoolToObject(o, "qk_norm", c->qk_norm);
    cJSON_AddNumberToObject(o, "max_positions", c->max_positions);
    cJSON_AddNumberToObject(o, "sliding_window", c->sliding_window ? c->sliding_window : c->window);
    cJSON_AddStringToObject(o, "activation", c->act == MELBO_ACT_GELU_TANH ? "gelu_pytorch_tanh"
                                                                           : "silu");
    if (c->n_experts > 0) {
        cJSON *moe = cJSON_AddObjectToObject(o, "experts");
        cJSON_AddNumberToObject(moe, "n", c->n_experts);
        cJSON_AddNumberToObject(moe, "top_k", c->top_k);
        cJSON_AddNumberToObject(moe, "width", c->d_ff_expert);
        cJSON_AddBoolToObject(moe, "renormalised", c->norm_topk);
    }
    cJSON_AddNumberToObject(o, "safetensors_files", n_files);
    cJSON_AddStringToObject(o, "fingerprint", fp);
    cJSON *def = cJSON_AddObjectToObject(o, "defaults");
    cJSON_AddNumberToObject(def, "source_layer", 7);
    cJSON_AddNumberToObject(def, "target_layer", c->n_layers - 8);
    cJSON_AddBoolToObject(def, "valid", c->n_layers - 8 >= 9);
    char *text = cJSON_Print(o);
    printf("%s\n", text);
    free(text);
    cJSON_Delete(o);
}

static void print_text(const char *dir, const struct melbo_model_config *c, long long params,
                       const char *dtype, const char *fp, int n_files) {
    char rope[256];
    rope_text(c, rope, sizeof rope);
    printf("model           %s\n", dir);
    printf("architecture    %s (model_type %s)\n", c->architecture[0] ? c->architecture : "?",
           c->model_type);
    printf("layers          %d\n", c->n_layers);
    printf("d_model         %d\n", c->d_model);
    printf("heads           %d query, %d key/value%s, head_dim %d\n", c->n_heads, c->n_kv_heads,
           c->n_kv_heads < c->n_heads ? " (GQA)" : "", c->head_dim);
    if (c->n_experts > 0)
        printf("mlp             %d experts of width %d, top %d%s (%s)\n", c->n_experts,
               c->d_ff_expert, c->top_k, c->norm_topk ? " renormalised" : "",
               c->act == MELBO_ACT_GELU_TANH ? "GeGLU" : "SwiGLU");
    else
        printf("mlp             %d (%s)\n", c->d_ff,
               c->act == MELBO_ACT_GELU_TANH ? "GeGLU, gelu_pytorch_tanh" : "SwiGLU");
    family_text(c);
    printf("vocab           %d\n", c->vocab);
    if (n_files < 0) /* inspect --config: no checkpoint */
        printf("dtype           %s (config.json only; parameters counted from the config)\n",
               dtype);
    else if (n_files == 0) /* a GGUF file: dtype is the main quantisation */
        printf("dtype           %s (GGUF, dequantised to fp32 at load)\n", dtype);
    else
        printf("dtype           %s (%d safetensors file%s)\n", dtype, n_files,
               n_files == 1 ? "" : "s");
    printf("parameters      %lld\n", params);
    printf("rope            %s\n", rope);
    printf("norm eps        %g\n", c->norm_eps);
    printf("embeddings      %s\n", c->tied_embeddings ? "tied (lm_head = embedding)" : "untied (separate lm_head)");
    printf("attention       %s%s\n", c->qkv_bias ? "q/k/v bias" : "no bias",
           c->qk_norm ? ", per-head q/k RMSNorm" : "");
    if (c->max_positions)
        printf("max positions   %d\n", c->max_positions);
    if (c->sliding_window)
        printf("sliding window  %d (longer sequences are refused)\n", c->sliding_window);
    if (fp == NULL)
        return;
    printf("fingerprint     %s\n", fp);
    printf("layers valid    0 <= source, source + 2 <= target <= %d; defaults 7 and %d%s\n",
           c->n_layers - 1, c->n_layers - 8,
           c->n_layers - 8 >= 9 ? "" : " (too shallow: pass --source-layer/--target-layer)");
}

/* inspect --config FILE: a config.json alone. Exit 0 when melbo runs it, 1 when it is read but
 * not run (MoE) or refused. */
static int inspect_config(const char *path, int json) {
    struct melbo_err err = {0};
    struct melbo_model_config cfg;
    char *text = NULL;
    size_t len = 0;
    if (melbo_file_read(path, &text, &len, &err) != 0) {
        fprintf(stderr, "melbo-rank inspect: %s\n", err.msg);
        return 1;
    }
    int ret = melbo_config_read(&cfg, text, len, path, &err);
    free(text);
    if (ret) {
        fprintf(stderr, "melbo-rank inspect: %s\n", err.msg);
        return 1;
    }
    struct melbo_err why = {0};
    int runnable = melbo_config_check_runnable(&cfg, &why) == 0;
    long long params = melbo_config_param_count(&cfg);
    const char *dtype = cfg.dtype[0] ? cfg.dtype : "?";
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "config", path);
        cJSON_AddStringToObject(o, "architecture", cfg.architecture);
        cJSON_AddStringToObject(o, "model_type", cfg.model_type);
        cJSON_AddNumberToObject(o, "n_layers", cfg.n_layers);
        cJSON_AddNumberToObject(o, "d_model", cfg.d_model);
        cJSON_AddNumberToObject(o, "n_heads", cfg.n_heads);
        cJSON_AddNumberToObject(o, "n_kv_heads", cfg.n_kv_heads);
        cJSON_AddNumberToObject(o, "head_dim", cfg.head_dim);
        cJSON_AddNumberToObject(o, "d_ff", cfg.d_ff);
        cJSON_AddNumberToObject(o, "vocab_size", cfg.vocab);
        cJSON_AddStringToObject(o, "dtype", dtype);
        cJSON_AddNumberToObject(o, "parameters", (double)params);
        cJSON_AddBoolToObject(o, "runnable", runnable);
        if (!runnable)
            cJSON_AddStringToObject(o, "not_runnable_because", why.msg);
        char *t = cJSON_Print(o);
        printf("%s\n", t);
        free(t);
        cJSON_Delete(o);
    } else {
        print_text(path, &cfg, params, dtype, NULL, -1);
        printf("runnable        %s\n", runnable ? "yes (CPU backend)" : why.msg);
    }
    return runnable ? 0 : 1;
}

int melbo_cmd_inspect(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'},
        {"config", required_argument, NULL, 'c'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *dir = NULL, *config = NULL;
    int json = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'm': dir = optarg; break;
        case 'c': config = optarg; break;
        case 'j': json = 1; break;
        case 'h':
            printf("usage: melbo-rank inspect --model DIR [--json]\n"
                   "       melbo-rank inspect --config FILE [--json]\n"
                   "Shows a Hugging Face checkpoint's architecture and checks that its tensors "
                   "match config.json; with --config, reads a lone config.json and prints the "
                   "architecture and its parameter count.\n");
            return 0;
        default: return 2;
        }
    }
    if (config && dir == NULL && optind == argc)
        return inspect_config(config, json);
    if (dir == NULL || optind != argc) {
        fprintf(stderr, "usage: melbo-rank inspect --model DIR | --config FILE [--json]\n");
        return 2;
    }
    struct melbo_err err = {0};
    struct melbo_model_config cfg;
    struct melbo_checkpoint ck;
    char fp[65];
    if (melbo_model_check(dir, &cfg, &err) != 0 || melbo_checkpoint_open(&ck, dir, &err) != 0) {
        fprintf(stderr, "melbo-rank inspect: %s\n", err.msg);
        return 1;
    }
    int ret = 0;
    if (melbo_checkpoint_fingerprint(&ck, fp, &err) != 0) {
        fprintf(stderr, "melbo-rank inspect: %s\n", err.msg);
        ret = 1;
        goto out;
    }
    long long params = (long long)melbo_checkpoint_numel(&ck);
    const char *dtype = melbo_checkpoint_main_dtype(&ck);
    if (json)
        print_json(dir, &cfg, params, dtype, fp, ck.n_files);
    else
        print_text(dir, &cfg, params, dtype, fp, ck.n_files);
out:
    melbo_checkpoint_close(&ck);
    return ret;
}
