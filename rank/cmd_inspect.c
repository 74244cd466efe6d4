/*
 * rank/cmd_inspect.c - `melbo-rank inspect --model DIR [--json]`: what a user checks before
 * submitting a job. Reads config.json and the safetensors headers only (no weights), checks that
 * every tensor the config implies is present with the right shape, and prints the architecture.
 */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    cJSON_AddNumberToObject(o, "sliding_window", c->sliding_window);
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
    printf("mlp             %d (SwiGLU)\n", c->d_ff);
    printf("vocab           %d\n", c->vocab);
    if (n_files == 0) /* a GGUF file: dtype is the main quantisation */
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
    printf("fingerprint     %s\n", fp);
    printf("layers valid    0 <= source, source + 2 <= target <= %d; defaults 7 and %d%s\n",
           c->n_layers - 1, c->n_layers - 8,
           c->n_layers - 8 >= 9 ? "" : " (too shallow: pass --source-layer/--target-layer)");
}

int melbo_cmd_inspect(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *dir = NULL;
    int json = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'm': dir = optarg; break;
        case 'j': json = 1; break;
        case 'h':
            printf("usage: melbo-rank inspect --model DIR [--json]\n"
                   "Shows a Hugging Face checkpoint's architecture and checks that its tensors "
                   "match config.json.\n");
            return 0;
        default: return 2;
        }
    }
    if (dir == NULL || optind != argc) {
        fprintf(stderr, "usage: melbo-rank inspect --model DIR [--json]\n");
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
