/*
 * tests/unit/test_config.c - config.json parsing and checkpoint/model validation: both config
 * spellings, every family's keys, and the bad inputs the issue names (unsupported model_type or
 * RoPE type, a directory without config.json, a tensor whose shape disagrees with config.json,
 * a missing tensor), each refused with a message that names the problem.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file.h"
#include "rank/model/model.h"
#include "rank/model/seqs.h"
#include "tests/test.h"

static const char *golden_dir;
static char tmpdir[1024];

static int parse(struct melbo_model_config *c, const char *json, struct melbo_err *err) {
    return melbo_config_parse(c, json, strlen(json), "config.json", err);
}

static void expect_parse_error(const char *json, int code, const char *needle) {
    struct melbo_model_config c;
    struct melbo_err err = {0};
    int r = parse(&c, json, &err);
    fprintf(stderr, "%-12s %s\n", melbo_err_name(r), err.msg);
    ASSERT_EQ(r, code);
    ASSERT_STR_CONTAINS(err.msg, needle);
}

static void test_spellings(void) {
    /* transformers v5 writes rope_parameters; older checkpoints rope_theta + rope_scaling with
     * "type" or "rope_type". All must give the same frequencies. */
    const char *base = "{\"model_type\":\"llama\",\"hidden_size\":64,\"num_attention_heads\":4,"
                       "\"num_hidden_layers\":2,\"intermediate_size\":96,\"vocab_size\":100,";
    char v5[1024], legacy[1024], legacy2[1024];
    snprintf(v5, sizeof v5, "%s\"rope_parameters\":{\"rope_theta\":500000.0,\"rope_type\":\"llama3\","
             "\"factor\":8.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
             "\"original_max_position_embeddings\":64}}", base);
    snprintf(legacy, sizeof legacy, "%s\"rope_theta\":500000.0,\"rope_scaling\":{\"type\":\"llama3\","
             "\"factor\":8.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
             "\"original_max_position_embeddings\":64},\"torch_dtype\":\"bfloat16\"}", base);
    snprintf(legacy2, sizeof legacy2, "%s\"rope_theta\":500000.0,\"rope_scaling\":{\"rope_type\":\"llama3\","
             "\"factor\":8.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
             "\"original_max_position_embeddings\":64}}", base);
    struct melbo_model_config a, b, c;
    struct melbo_err err = {0};
    ASSERT_OK(parse(&a, v5, &err));
    ASSERT_OK(parse(&b, legacy, &err));
    ASSERT_OK(parse(&c, legacy2, &err));
    ASSERT(a.rope_type == MELBO_ROPE_LLAMA3 && b.rope_type == MELBO_ROPE_LLAMA3);
    ASSERT(a.rope_theta == 500000.0f && b.rope_theta == 500000.0f && c.rope_theta == 500000.0f);
    ASSERT(strcmp(b.dtype, "bfloat16") == 0);
    float fa[8], fb[8], fc[8];
    melbo_config_rope_inv_freq(&a, fa);
    melbo_config_rope_inv_freq(&b, fb);
    melbo_config_rope_inv_freq(&c, fc);
    ASSERT(memcmp(fa, fb, sizeof fa) == 0 && memcmp(fa, fc, sizeof fa) == 0);
    /* Defaults when keys are absent: MHA, head_dim = d / heads, theta 10000, untied. */
    char plain[512];
    snprintf(plain, sizeof plain, "%s\"rms_norm_eps\":1e-5}", base);
    ASSERT_OK(parse(&a, plain, &err));
    ASSERT(a.n_kv_heads == 4 && a.head_dim == 16 && a.rope_theta == 10000.0f && !a.tied_embeddings);
    ASSERT(a.rope_type == MELBO_ROPE_DEFAULT && a.norm_eps == 1e-5f && !a.qkv_bias);
    /* Linear scaling divides every frequency. */
    snprintf(plain, sizeof plain, "%s\"rope_scaling\":{\"type\":\"linear\",\"factor\":4.0}}", base);
    ASSERT_OK(parse(&b, plain, &err));
    melbo_config_rope_inv_freq(&a, fa);
    melbo_config_rope_inv_freq(&b, fb);
    for (int i = 0; i < 8; i++)
        ASSERT(fabsf(fb[i] * 4.0f - fa[i]) <= 1e-7f * fa[i]);
    /* eos_token_id as a list (Llama-3.1). */
    snprintf(plain, sizeof plain, "%s\"eos_token_id\":[128001,128008,128009],\"bos_token_id\":128000}", base);
    ASSERT_OK(parse(&a, plain, &err));
    ASSERT(a.n_eos == 3 && a.eos_ids[2] == 128009 && a.bos_token_id == 128000);
    /* Qwen2: q/k/v bias without any key saying so; sliding window off unless use_sliding_window. */
    ASSERT_OK(parse(&a, "{\"model_type\":\"qwen2\",\"hidden_size\":64,\"num_attention_heads\":4,"
                        "\"num_key_value_heads\":2,\"num_hidden_layers\":2,\"intermediate_size\":96,"
                        "\"vocab_size\":100,\"sliding_window\":4096,\"use_sliding_window\":false}",
                    &err));
    ASSERT(a.qkv_bias && !a.o_bias && a.sliding_window == 0 && a.n_kv_heads == 2);
    /* Qwen-1: its own keys; the MLP width is half of intermediate_size. */
    ASSERT_OK(parse(&a, "{\"model_type\":\"qwen\",\"hidden_size\":2048,\"num_attention_heads\":16,"
                        "\"num_hidden_layers\":24,\"kv_channels\":128,\"intermediate_size\":11008,"
                        "\"rotary_emb_base\":10000,\"rotary_pct\":1.0,\"layer_norm_epsilon\":1e-6,"
                        "\"vocab_size\":151936,\"seq_length\":8192,\"no_bias\":true}",
                    &err));
    ASSERT(a.arch == MELBO_ARCH_QWEN && a.d_ff == 5504 && a.head_dim == 128 && a.qkv_bias);
    ASSERT(a.max_positions == 8192 && a.rope_dim == 128 && a.norm_eps == 1e-6f);
    ASSERT_OK(melbo_config_check_seq_len(&a, 8192, &err));
    ASSERT_EQ(melbo_config_check_seq_len(&a, 8193, &err), MELBO_ERANGE);
    ASSERT_STR_CONTAINS(err.msg, "seq_length 8192");
    /* Mistral's window is on when given. */
    ASSERT_OK(parse(&a, "{\"model_type\":\"mistral\",\"hidden_size\":64,\"num_attention_heads\":4,"
                        "\"num_hidden_layers\":2,\"intermediate_size\":96,\"vocab_size\":100,"
                        "\"head_dim\":24,\"sliding_window\":16}",
                    &err));
    ASSERT(a.head_dim == 24 && a.sliding_window == 16);
    struct melbo_seqs s;
    int lens[2] = {16, 17};
    melbo_seqs_init(&s, lens, 2);
    ASSERT_EQ(melbo_seqs_check(&s, &a, &err), MELBO_ERANGE);
    ASSERT_STR_CONTAINS(err.msg, "sliding window of 16");
    melbo_seqs_free(&s);
    fprintf(stderr, "ok   config spellings and families\n");
}

static void test_bad_configs(void) {
    expect_parse_error("{\"model_type\":\"gemma\",\"hidden_size\":64}", MELBO_EUNSUPPORTED,
                       "unsupported model_type \"gemma\"");
    expect_parse_error("{\"hidden_size\":64}", MELBO_EUNSUPPORTED, "model_type \"(missing)\"");
    expect_parse_error("{\"model_type\":\"llama\",\"hidden_size\":64,\"num_attention_heads\":4,"
                       "\"num_hidden_layers\":2,\"intermediate_size\":96,\"vocab_size\":100,"
                       "\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4.0}}",
                       MELBO_EUNSUPPORTED, "RoPE type \"yarn\"");
    expect_parse_error("{\"model_type\":\"llama\",\"hidden_size\":64,\"num_attention_heads\":4,"
                       "\"num_hidden_layers\":2,\"intermediate_size\":96,\"vocab_size\":100,"
                       "\"rope_parameters\":{\"rope_type\":\"dynamic\",\"factor\":4.0}}",
                       MELBO_EUNSUPPORTED, "RoPE type \"dynamic\"");
    expect_parse_error("{\"model_type\":\"qwen2\",\"hidden_size\":64,\"num_attention_heads\":4,"
                       "\"num_hidden_layers\":2,\"intermediate_size\":96,\"vocab_size\":100,"
                       "\"num_experts\":8}",
                       MELBO_EUNSUPPORTED, "mixture-of-experts");
    expect_parse_error("{\"model_type\":\"llama\",\"hidden_size\":64,\"num_attention_heads\":4,"
                       "\"num_hidden_layers\":2,\"intermediate_size\":96,\"vocab_size\":100,"
                       "\"hidden_act\":\"gelu\"}",
                       MELBO_EUNSUPPORTED, "hidden_act \"gelu\"");
    expect_parse_error("{\"model_type\":\"llama\",\"hidden_size\":64,\"num_attention_heads\":4,"
                       "\"num_hidden_layers\":2,\"vocab_size\":100}",
                       MELBO_EMISSING, "missing \"intermediate_size\"");
    expect_parse_error("{\"model_type\":\"llama\",\"hidden_size\":64,\"num_attention_heads\":4,"
                       "\"num_key_value_heads\":3,\"num_hidden_layers\":2,\"intermediate_size\":96,"
                       "\"vocab_size\":100}",
                       MELBO_EFORMAT, "not a multiple of num_key_value_heads 3");
    expect_parse_error("{\"model_type\":\"llama\",\"hidden_size\":\"big\"}", MELBO_EFORMAT,
                       "\"hidden_size\" must be an integer");
    expect_parse_error("{not json", MELBO_EFORMAT, "invalid JSON");
}

/* Makes tmpdir/name holding golden llama3's weights and its config.json with one key changed. */
static void make_variant(const char *name, const char *key, int value, char *out_dir) {
    char src[1024], path[2048], *text;
    snprintf(out_dir, 1024, "%s/%s", tmpdir, name);
    mkdir(out_dir, 0755);
    snprintf(src, sizeof src, "%s/models/llama3/config.json", golden_dir);
    ASSERT_OK(melbo_file_read(src, &text, NULL, NULL));
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (key)
        cJSON_ReplaceItemInObject(root, key, cJSON_CreateNumber(value));
    text = cJSON_Print(root);
    snprintf(path, sizeof path, "%s/config.json", out_dir);
    ASSERT_OK(melbo_file_write_atomic(path, text, strlen(text), NULL));
    free(text);
    cJSON_Delete(root);
    snprintf(src, sizeof src, "%s/models/llama3/model.safetensors", golden_dir);
    char *abs = realpath(src, NULL);
    snprintf(path, sizeof path, "%s/model.safetensors", out_dir);
    unlink(path);
    ASSERT_OK(symlink(abs, path));
    free(abs);
}

static void expect_load_error(const char *dir, int code, const char *needle) {
    struct melbo_err err = {0};
    struct melbo_model m;
    struct melbo_model_config c;
    struct melbo_load_opts all = melbo_load_opts_all();
    int r = melbo_model_load(&m, dir, &all, &err);
    fprintf(stderr, "%-12s %s\n", melbo_err_name(r), err.msg);
    ASSERT_EQ(r, code);
    ASSERT_STR_CONTAINS(err.msg, needle);
    ASSERT(m.arena == NULL);
    memset(&err, 0, sizeof err);
    ASSERT_EQ(melbo_model_check(dir, &c, &err), code); /* inspect's validation agrees */
    ASSERT_STR_CONTAINS(err.msg, needle);
}

static void test_checkpoints(void) {
    char dir[1024];
    make_variant("same", NULL, 0, dir);
    struct melbo_err err = {0};
    struct melbo_model m, part;
    struct melbo_load_opts all = melbo_load_opts_all(), some = {2, 4, 0, 0, 0, 1};
    ASSERT_OK(melbo_model_load(&m, dir, &all, &err));
    ASSERT_OK(melbo_model_load(&part, dir, &some, &err));
    /* A subset of layers: only those blocks, no embedding or head, identical weights. */
    ASSERT(part.embed == NULL && part.lm_head == NULL && part.layers[0].w_qkv == NULL);
    ASSERT(part.layers[2].w_qkv && part.layers[3].w_down && part.layers[4].w_qkv == NULL);
    ASSERT(part.arena_floats < m.arena_floats / 2);
    size_t qkv = (size_t)melbo_model_qkv_rows(&m.cfg) * m.cfg.d_model;
    ASSERT(memcmp(part.layers[3].w_qkv, m.layers[3].w_qkv, qkv * sizeof(float)) == 0);
    melbo_model_free(&part);
    melbo_model_free(&m);
    struct melbo_load_opts bad = {3, 9, 0, 0, 0, 1};
    ASSERT_EQ(melbo_model_load(&m, dir, &bad, &err), MELBO_ERANGE);
    ASSERT_STR_CONTAINS(err.msg, "layer range [3, 9)");

    make_variant("shape", "intermediate_size", 161, dir);
    expect_load_error(dir, MELBO_ESHAPE,
                      "tensor 'model.layers.0.mlp.gate_proj.weight' has shape [160, 64] but "
                      "config.json implies [161, 64]");
    make_variant("missing", "num_hidden_layers", 6, dir);
    expect_load_error(dir, MELBO_EMISSING, "has no tensor 'model.layers.5.input_layernorm.weight'");

    snprintf(dir, sizeof dir, "%s/empty", tmpdir);
    mkdir(dir, 0755);
    expect_load_error(dir, MELBO_ENOENT, "has no config.json");
    snprintf(dir, sizeof dir, "%s/does-not-exist", tmpdir);
    expect_load_error(dir, MELBO_ENOENT, "does not exist");
    /* config.json but no weights. */
    make_variant("noweights", NULL, 0, dir);
    char p[2048];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    unlink(p);
    expect_load_error(dir, MELBO_ENOENT, "neither model.safetensors nor");
    fprintf(stderr, "ok   checkpoint validation\n");
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s GOLDEN_DIR TMPDIR\n", argv[0]);
        return 2;
    }
    golden_dir = argv[1];
    snprintf(tmpdir, sizeof tmpdir, "%s", argv[2]);
    mkdir(tmpdir, 0755);
    test_spellings();
    test_bad_configs();
    test_checkpoints();
    return test_exit_code();
}
