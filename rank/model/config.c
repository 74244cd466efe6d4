/* rank/model/config.c - config.json parsing (rank/model/config.h). */
#include "rank/model/config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "rank/model/gguf.h"
#include "rank/model/gguf_model.h"

const char *melbo_arch_name(enum melbo_arch a) {
    static const char *names[] = {"llama",  "mistral", "qwen2", "qwen3",   "qwen",     "gemma2",
                                  "gemma3", "olmo2",   "phi3",  "mixtral", "qwen3_moe", "qwen2_moe"};
    return names[a];
}

const char *melbo_rope_type_name(enum melbo_rope_type t) {
    static const char *names[] = {"default", "linear", "llama3"};
    return names[t];
}

/* ---------------------------------------------------------------------------------------------
 * Small typed getters. Each returns 0 when the key is absent (leaving *out unchanged), 1 when
 * read, and a negative code (with err set) when present but of the wrong type or range.
 */

static int get_int(const cJSON *o, const char *key, int *out, const char *src,
                   struct melbo_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (v == NULL || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsNumber(v) || floor(v->valuedouble) != v->valuedouble || fabs(v->valuedouble) > 2e9)
        return melbo_err_set(err, MELBO_EFORMAT, "%s: \"%s\" must be an integer", src, key);
    *out = (int)v->valuedouble;
    return 1;
}

static int get_float(const cJSON *o, const char *key, float *out, const char *src,
                     struct melbo_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (v == NULL || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsNumber(v))
        return melbo_err_set(err, MELBO_EFORMAT, "%s: \"%s\" must be a number", src, key);
    *out = (float)v->valuedouble;
    return 1;
}

static int get_bool(const cJSON *o, const char *key, int *out, const char *src,
                    struct melbo_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (v == NULL || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsBool(v))
        return melbo_err_set(err, MELBO_EFORMAT, "%s: \"%s\" must be true or false", src, key);
    *out = cJSON_IsTrue(v);
    return 1;
}

static void get_str(const cJSON *o, const char *key, char *out, size_t n) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsString(v))
        snprintf(out, n, "%s", v->valuestring);
}

/* A required positive integer. */
static int need_pos_int(const cJSON *o, const char *key, int *out, const char *src,
                        struct melbo_err *err) {
    int r = get_int(o, key, out, src, err);
    if (r < 0)
        return r;
    if (r == 0)
        return melbo_err_set(err, MELBO_EMISSING, "%s: missing \"%s\"", src, key);
    if (*out <= 0)
        return melbo_err_set(err, MELBO_EFORMAT, "%s: \"%s\" must be positive (got %d)", src, key,
                             *out);
    return 0;
}

/* rope_scaling (legacy) or rope_parameters (transformers v5): both are objects with a type. */
static int parse_rope_object(struct melbo_model_config *cfg, const cJSON *rs, const char *key,
                             const char *src, struct melbo_err *err) {
    if (rs == NULL || cJSON_IsNull(rs))
        return 0;
    if (!cJSON_IsObject(rs))
        return melbo_err_set(err, MELBO_EFORMAT, "%s: \"%s\" must be an object or null", src, key);
    MELBO_TRY(get_float(rs, "rope_theta", &cfg->rope_theta, src, err));
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
    if (!cJSON_IsString(ty))
        ty = cJSON_GetObjectItemCaseSensitive(rs, "type"); /* legacy alias */
    const char *t = cJSON_IsString(ty) ? ty->valuestring : "default";
    if (strcmp(t, "default") == 0) {
        cfg->rope_type = MELBO_ROPE_DEFAULT;
        return 0;
    }
    if (strcmp(t, "linear") == 0) {
        cfg->rope_type = MELBO_ROPE_LINEAR;
        if (get_float(rs, "factor", &cfg->rope_factor, src, err) <= 0 || !(cfg->rope_factor > 0))
            return melbo_err_set(err, MELBO_EFORMAT, "%s: %s linear needs a positive \"factor\"",
                                 src, key);
        return 0;
    }
    if (strcmp(t, "llama3") == 0) {
        cfg->rope_type = MELBO_ROPE_LLAMA3;
        if (get_float(rs, "factor", &cfg->rope_factor, src, err) <= 0 ||
            get_float(rs, "low_freq_factor", &cfg->rope_low_freq_factor, src, err) <= 0 ||
            get_float(rs, "high_freq_factor", &cfg->rope_high_freq_factor, src, err) <= 0 ||
            get_int(rs, "original_max_position_embeddings", &cfg->rope_original_max_pos, src,
                    err) <= 0)
            return melbo_err_set(err, MELBO_EFORMAT,
                                 "%s: %s llama3 needs factor, low_freq_factor, high_freq_factor "
                                 "and original_max_position_embeddings",
                                 src, key);
        if (!(cfg->rope_high_freq_factor > cfg->rope_low_freq_factor) || !(cfg->rope_factor > 0))
            return melbo_err_set(err, MELBO_EFORMAT,
                                 "%s: %s llama3 needs high_freq_factor > low_freq_factor and "
                                 "factor > 0",
                                 src, key);
        return 0;
    }
    return melbo_err_set(err, MELBO_EUNSUPPORTED,
                         "%s: unsupported RoPE type \"%s\" in \"%s\" (melbo supports default, "
                         "linear and llama3)",
                         src, t, key);
}

/*
 * rope_parameters: one RoPE object, or (transformers v5, Gemma 3) one per attention type,
 * {"full_attention": {...}, "sliding_attention": {...}}; the sliding one must be unscaled.
 */
static int parse_rope_params(struct melbo_model_config *cfg, const cJSON *rp, const char *src,
                             struct melbo_err *err) {
    const cJSON *full = cJSON_GetObjectItemCaseSensitive(rp, "full_attention");
    const cJSON *slide = cJSON_GetObjectItemCaseSensitive(rp, "sliding_attention");
    if (full == NULL && slide == NULL)
        return parse_rope_object(cfg, rp, "rope_parameters", src, err);
    if (full)
        MELBO_TRY(parse_rope_object(cfg, full, "rope_parameters.full_attention", src, err));
    if (slide) {
        struct melbo_model_config local = *cfg;
        local.rope_type = MELBO_ROPE_DEFAULT;
        MELBO_TRY(parse_rope_object(&local, slide, "rope_parameters.sliding_attention", src, err));
        if (local.rope_type != MELBO_ROPE_DEFAULT)
            return melbo_err_set(err, MELBO_EUNSUPPORTED,
                                 "%s: rope_parameters.sliding_attention must be the default RoPE "
                                 "(got %s)",
                                 src, melbo_rope_type_name(local.rope_type));
        cfg->local_rope = 1;
        cfg->rope_theta_local = local.rope_theta;
    }
    return 0;
}

static int parse_eos(struct melbo_model_config *cfg, const cJSON *root) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "eos_token_id");
    if (cJSON_IsNumber(v)) {
        cfg->eos_ids[cfg->n_eos++] = (int)v->valuedouble;
    } else if (cJSON_IsArray(v)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, v) if (cJSON_IsNumber(e) && cfg->n_eos < 8)
            cfg->eos_ids[cfg->n_eos++] = (int)e->valuedouble;
    }
    v = cJSON_GetObjectItemCaseSensitive(root, "bos_token_id");
    if (cJSON_IsNumber(v))
        cfg->bos_token_id = (int)v->valuedouble;
    return 0;
}

/* Qwen-1 ("qwen"): its own key names, fused layout, intermediate_size = 2 x MLP width. */
static int parse_qwen1(struct melbo_model_config *cfg, const cJSON *root, const char *src,
                       struct melbo_err *err) {
    int inter = 0, no_bias = 1;
    float rotary_pct = 1.0f;
    MELBO_TRY(need_pos_int(root, "hidden_size", &cfg->d_model, src, err));
    MELBO_TRY(need_pos_int(root, "num_attention_heads", &cfg->n_heads, src, err));
    MELBO_TRY(need_pos_int(root, "num_hidden_layers", &cfg->n_layers, src, err));
    MELBO_TRY(need_pos_int(root, "intermediate_size", &inter, src, err));
    MELBO_TRY(need_pos_int(root, "vocab_size", &cfg->vocab, src, err));
    cfg->head_dim = cfg->d_model / cfg->n_heads;
    MELBO_TRY(get_int(root, "kv_channels", &cfg->head_dim, src, err));
    MELBO_TRY(get_float(root, "rotary_emb_base", &cfg->rope_theta, src, err));
    MELBO_TRY(get_float(root, "rotary_pct", &rotary_pct, src, err));
    MELBO_TRY(get_float(root, "layer_norm_epsilon", &cfg->norm_eps, src, err));
    MELBO_TRY(get_int(root, "seq_length", &cfg->max_positions, src, err));
    MELBO_TRY(get_bool(root, "no_bias", &no_bias, src, err));
    if (inter % 2 != 0)
        return melbo_err_set(err, MELBO_EFORMAT,
                             "%s: Qwen-1 intermediate_size %d must be even (w1 and w2 each have "
                             "intermediate_size/2 rows)",
                             src, inter);
    if (!no_bias)
        return melbo_err_set(err, MELBO_EUNSUPPORTED,
                             "%s: Qwen-1 with \"no_bias\": false (biases on c_proj and the MLP) "
                             "is not supported",
                             src);
    if (!(rotary_pct > 0 && rotary_pct <= 1))
        return melbo_err_set(err, MELBO_EFORMAT, "%s: rotary_pct %g must be in (0, 1]", src,
                             rotary_pct);
    cfg->d_ff = inter / 2;
    cfg->n_kv_heads = cfg->n_heads;
    cfg->qkv_bias = 1;
    cfg->rope_dim = (int)(cfg->head_dim * rotary_pct);
    cfg->rope_dim -= cfg->rope_dim % 2;
    return 0;
}

/* Llama, Mistral, Qwen2, Qwen3: the transformers key names. */
static int parse_hf(struct melbo_model_config *cfg, const cJSON *root, const char *src,
                    struct melbo_err *err) {
    MELBO_TRY(need_pos_int(root, "hidden_size", &cfg->d_model, src, err));
    MELBO_TRY(need_pos_int(root, "num_attention_heads", &cfg->n_heads, src, err));
    MELBO_TRY(need_pos_int(root, "num_hidden_layers", &cfg->n_layers, src, err));
    if (cfg->n_layers > MELBO_MAX_LAYERS)
        return melbo_err_set(err, MELBO_EUNSUPPORTED, "%s: num_hidden_layers %d exceeds melbo's %d",
                             src, cfg->n_layers, MELBO_MAX_LAYERS);
    MELBO_TRY(need_pos_int(root, "intermediate_size", &cfg->d_ff, src, err));
    MELBO_TRY(need_pos_int(root, "vocab_size", &cfg->vocab, src, err));
    cfg->n_kv_heads = cfg->n_heads;
    MELBO_TRY(get_int(root, "num_key_value_heads", &cfg->n_kv_heads, src, err));
    cfg->head_dim = 0;
    MELBO_TRY(get_int(root, "head_dim", &cfg->head_dim, src, err));
    if (cfg->head_dim <= 0) {
        if (cfg->d_model % cfg->n_heads != 0)
            return melbo_err_set(err, MELBO_EFORMAT,
                                 "%s: hidden_size %d is not a multiple of num_attention_heads %d "
                                 "and no head_dim is given",
                                 src, cfg->d_model, cfg->n_heads);
        cfg->head_dim = cfg->d_model / cfg->n_heads;
    }
    cfg->rope_dim = cfg->head_dim;
    MELBO_TRY(get_float(root, "rms_norm_eps", &cfg->norm_eps, src, err));
    MELBO_TRY(get_float(root, "rope_theta", &cfg->rope_theta, src, err));
    MELBO_TRY(get_int(root, "max_position_embeddings", &cfg->max_positions, src, err));
    MELBO_TRY(get_bool(root, "tie_word_embeddings", &cfg->tied_embeddings, src, err));
    MELBO_TRY(parse_rope_params(cfg, cJSON_GetObjectItemCaseSensitive(root, "rope_parameters"),
                                src, err));
    MELBO_TRY(parse_rope_object(cfg, cJSON_GetObjectItemCaseSensitive(root, "rope_scaling"),
                                "rope_scaling", src, err));
    float prf = 1.0f;
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters");
    MELBO_TRY(get_float(root, "partial_rotary_factor", &prf, src, err));
    if (cJSON_IsObject(rp))
        MELBO_TRY(get_float(rp, "partial_rotary_factor", &prf, src, err));
    if (prf != 1.0f && cfg->arch != MELBO_ARCH_PHI3)
        return melbo_err_set(err, MELBO_EUNSUPPORTED,
                             "%s: partial_rotary_factor %g is not supported", src, prf);
    if (!(prf > 0 && prf <= 1))
        return melbo_err_set(err, MELBO_EFORMAT, "%s: partial_rotary_factor %g must be in (0, 1]",
                             src, prf);
    cfg->rope_dim = (int)((float)cfg->head_dim * prf); /* transformers: int(head_dim * factor) */
    cfg->rope_dim -= cfg->rope_dim % 2;

    /* Gemma names the activation hidden_activation (and may repeat it as hidden_act). */
    char act[32] = "silu";
    if (cfg->arch == MELBO_ARCH_GEMMA2 || cfg->arch == MELBO_ARCH_GEMMA3)
        snprintf(act, sizeof act, "gelu_pytorch_tanh"); /* Gemma's default hidden_activation */
    const char *act_key = "hidden_act";
    get_str(root, "hidden_act", act, sizeof act);
    if (cJSON_IsString(cJSON_GetObjectItemCaseSensitive(root, "hidden_activation"))) {
        act_key = "hidden_activation";
        get_str(root, "hidden_activation", act, sizeof act);
    }
    if (strcmp(act, "silu") == 0)
        cfg->act = MELBO_ACT_SILU;
    else if (strcmp(act, "gelu_pytorch_tanh") == 0)
        cfg->act = MELBO_ACT_GELU_TANH;
    else
        return melbo_err_set(err, MELBO_EUNSUPPORTED,
                             "%s: %s \"%s\" is not supported (melbo runs SwiGLU with silu and "
                             "GeGLU with gelu_pytorch_tanh)",
                             src, act_key, act);
    int mlp_bias = 0, attn_bias = 0;
    MELBO_TRY(get_bool(root, "mlp_bias", &mlp_bias, src, err));
    if (mlp_bias)
        return melbo_err_set(err, MELBO_EUNSUPPORTED, "%s: \"mlp_bias\": true is not supported",
                             src);
    MELBO_TRY(get_bool(root, "attention_bias", &attn_bias, src, err));
    if (cfg->arch == MELBO_ARCH_QWEN2_MOE) {
        cfg->qkv_bias = 1; /* Qwen2MoeAttention: bias=config.qkv_bias, default true */
        MELBO_TRY(get_bool(root, "qkv_bias", &cfg->qkv_bias, src, err));
    } else if (cfg->arch == MELBO_ARCH_QWEN2) {
        cfg->qkv_bias = 1; /* hard-coded in transformers' Qwen2Attention; o_proj has none */
    } else if (attn_bias) {
        cfg->qkv_bias = 1;
        cfg->o_bias = 1;
    }
    cfg->qk_norm = cfg->arch == MELBO_ARCH_QWEN3 || cfg->arch == MELBO_ARCH_QWEN3_MOE;

    int experts = 0;
    MELBO_TRY(get_int(root, "num_experts", &experts, src, err));
    MELBO_TRY(get_int(root, "num_local_experts", &experts, src, err));
    if (experts > 0 && cfg->arch != MELBO_ARCH_MIXTRAL && cfg->arch != MELBO_ARCH_QWEN3_MOE &&
        cfg->arch != MELBO_ARCH_QWEN2_MOE)
        return melbo_err_set(err, MELBO_EUNSUPPORTED,
                             "%s: model_type \"%s\" with %d experts: melbo reads mixture-of-"
                             "experts configs only for mixtral, qwen3_moe and qwen2_moe",
                             src, cfg->model_type, experts);

    /* Sliding windows: Mistral's is on when set; Qwen2/3 only with use_sliding_window. */
    int window = 0, use_window = cfg->arch == MELBO_ARCH_MISTRAL;
    MELBO_TRY(get_bool(root, "use_sliding_window", &use_window, src, err));
    MELBO_TRY(get_int(root, "sliding_window", &window, src, err));
    if (cfg->arch == MELBO_ARCH_PHI3 || cfg->arch == MELBO_ARCH_MIXTRAL) {
        /* every layer slides (transformers' create_sliding_window_causal_mask): exact */
        if (window > 0) {
            cfg->window = window;
            memset(cfg->layer_sliding, 1, (size_t)cfg->n_layers);
        }
    } else if (use_window && window > 0) {
        cfg->sliding_window = window;
    }
    return 0;
}

/* A float that may be absent (*out = dflt), null (*out = 0) or a number. */
static int get_float_or_null(const cJSON *o, const char *key, float dflt, float *out,
                             const char *src, struct melbo_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *out = v == NULL ? dflt : 0.0f;
    return get_float(o, key, out, src, err);
}

/*
 * Which layers slide: transformers v5's layer_types ("sliding_attention" / "full_attention"), or
 * v4's rule, every pattern-th layer global: layer i slides when (i + 1) % pattern != 0.
 */
static int parse_layer_types(struct melbo_model_config *cfg, const cJSON *root, int pattern,
                             const char *src, struct melbo_err *err) {
    const cJSON *lt = cJSON_GetObjectItemCaseSensitive(root, "layer_types");
    int any = 0;
    if (lt != NULL && !cJSON_IsNull(lt)) {
        if (!cJSON_IsArray(lt) || cJSON_GetArraySize(lt) != cfg->n_layers)
            return melbo_err_set(err, MELBO_EFORMAT,
                                 "%s: \"layer_types\" must be a list of num_hidden_layers (%d) "
                                 "strings",
                                 src, cfg->n_layers);
        int i = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, lt) {
            const char *t = cJSON_IsString(e) ? e->valuestring : "";
            if (strcmp(t, "sliding_attention") == 0)
                cfg->layer_sliding[i] = 1;
            else if (strcmp(t, "full_attention") == 0)
                cfg->layer_sliding[i] = 0;
            else
                return melbo_err_set(err, MELBO_EUNSUPPORTED,
                                     "%s: layer_types[%d] \"%s\" is not supported (melbo "
                                     "supports sliding_attention and full_attention)",
                                     src, i, t);
            any |= cfg->layer_sliding[i++];
        }
    } else {
        for (int i = 0; i < cfg->n_layers; i++)
            any |= cfg->layer_sliding[i] = (unsigned char)((i + 1) % pattern != 0);
    }
    if (!any)
        return 0;
    int window = 4096; /* Gemma 2 and 3's default */
    MELBO_TRY(get_int(root, "sliding_window", &window, src, err));
    if (window <= 0)
        return melbo_err_set(err, MELBO_EFORMAT, "%s: \"sliding_window\" must be positive", src);
    cfg->window = window;
    return 0;
}

/* Gemma 2 and Gemma 3 text, after parse_hf has read the common keys. */
static int parse_gemma(struct melbo_model_config *cfg, const cJSON *root, const char *src,
                       struct melbo_err *err) {
    int g3 = cfg->arch == MELBO_ARCH_GEMMA3;
    cfg->norm_plus_one = 1;
    cfg->post_norms = 1;
    cfg->qk_norm = g3;
    /* torch.tensor(hidden_size ** 0.5): the Python double rounded to fp32 */
    cfg->embed_scale = (float)sqrt((double)cfg->d_model);
    float qpas = 256.0f;
    MELBO_TRY(get_float(root, "query_pre_attn_scalar", &qpas, src, err));
    if (!(qpas > 0))
        return melbo_err_set(err, MELBO_EFORMAT, "%s: \"query_pre_attn_scalar\" must be positive",
                             src);
    cfg->attn_scale = (float)pow((double)qpas, -0.5);
    MELBO_TRY(get_float_or_null(root, "attn_logit_softcapping", g3 ? 0.0f : 50.0f,
                                &cfg->attn_softcap, src, err));
    MELBO_TRY(get_float_or_null(root, "final_logit_softcapping", g3 ? 0.0f : 30.0f,
                                &cfg->final_softcap, src, err));
    if (cfg->attn_softcap < 0 || cfg->final_softcap < 0)
        return melbo_err_set(err, MELBO_EFORMAT, "%s: soft-capping values must be positive or null",
                             src);
    int pattern = 2;
    if (g3) {
        pattern = 6;
        MELBO_TRY(get_int(root, "_sliding_window_pattern", &pattern, src, err));
        MELBO_TRY(get_int(root, "sliding_window_pattern", &pattern, src, err));
        if (pattern <= 0)
            return melbo_err_set(err, MELBO_EFORMAT,
                                 "%s: \"sliding_window_pattern\" must be positive", src);
        if (!cfg->local_rope) { /* v4: rope_local_base_freq, unscaled */
            cfg->local_rope = 1;
            cfg->rope_theta_local = 10000.0f;
            MELBO_TRY(get_float(root, "rope_local_base_freq", &cfg->rope_theta_local, src, err));
        }
        if (!(cfg->rope_theta_local > 0))
            return melbo_err_set(err, MELBO_EFORMAT, "%s: the local RoPE base must be positive",
                                 src);
    }
    return parse_layer_types(cfg, root, pattern, src, err);
}

/* Mixtral and Qwen3-MoE: the router and the experts' shape. */
static int parse_moe(struct melbo_model_config *cfg, const cJSON *root, const char *src,
                     struct melbo_err *err) {
    const char *ne = cJSON_GetObjectItemCaseSensitive(root, "num_local_experts") ? "num_local_experts"
                                                                                 : "num_experts";
    MELBO_TRY(need_pos_int(root, ne, &cfg->n_experts, src, err));
    MELBO_TRY(need_pos_int(root, "num_experts_per_tok", &cfg->top_k, src, err));
    if (cfg->top_k > cfg->n_experts)
        return melbo_err_set(err, MELBO_EFORMAT,
                             "%s: num_experts_per_tok %d exceeds the %d experts", src, cfg->top_k,
                             cfg->n_experts);
    if (cfg->arch == MELBO_ARCH_MIXTRAL) {
        cfg->d_ff_expert = cfg->d_ff; /* softmax, top-k, renormalised: always */
        cfg->norm_topk = 1;
        return 0;
    }
    MELBO_TRY(need_pos_int(root, "moe_intermediate_size", &cfg->d_ff_expert, src, err));
    MELBO_TRY(get_bool(root, "norm_topk_prob", &cfg->norm_topk, src, err));
    int step = 1;
    MELBO_TRY(get_int(root, "decoder_sparse_step", &step, src, err));
    if (step != 1)
        return melbo_err_set(err, MELBO_EUNSUPPORTED,
                             "%s: \"decoder_sparse_step\" %d is not supported (every block must "
                             "be a mixture of experts)",
                             src, step);
    const cJSON *dense = cJSON_GetObjectItemCaseSensitive(root, "mlp_only_layers");
    if (cJSON_IsArray(dense) && cJSON_GetArraySize(dense) > 0)
        return melbo_err_set(err, MELBO_EUNSUPPORTED,
                             "%s: \"mlp_only_layers\" (dense blocks among the experts) is not "
                             "supported",
                             src);
    const cJSON *shared = cJSON_GetObjectItemCaseSensitive(root, "shared_expert_intermediate_size");
    if (cfg->arch == MELBO_ARCH_QWEN2_MOE) {
        MELBO_TRY(need_pos_int(root, "shared_expert_intermediate_size", &cfg->d_ff_shared, src,
                               err));
    } else if (cJSON_IsNumber(shared) && shared->valuedouble > 0)
        return melbo_err_set(err, MELBO_EUNSUPPORTED,
                             "%s: \"shared_expert_intermediate_size\" (a shared expert) is not "
                             "supported",
                             src);
    cfg->d_ff = cfg->d_ff_expert;
    return 0;
}

int melbo_config_parse(struct melbo_model_config *cfg, const char *json, size_t len,
                       const char *src, struct melbo_err *err) {
    int ret = melbo_config_read(cfg, json, len, src, err);
    if (ret == 0 && (ret = melbo_config_check_runnable(cfg, err)) != 0 && err) {
        char why[sizeof err->msg];
        snprintf(why, sizeof why, "%s", err->msg);
        ret = melbo_err_set(err, ret, "%s: %s", src, why);
    }
    return ret;
}

int melbo_config_read(struct melbo_model_config *cfg, const char *json, size_t len,
                      const char *src, struct melbo_err *err) {
    int ret = 0;
    cJSON *gemma3_defaults = NULL; /* text_config with transformers' defaults filled in */
    memset(cfg, 0, sizeof *cfg);
    cfg->rope_theta = 10000.0f;
    cfg->rope_factor = 1.0f;
    cfg->norm_eps = 1e-6f;
    cfg->bos_token_id = -1;
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (root == NULL || !cJSON_IsObject(root)) {
        ret = melbo_err_set(err, MELBO_EFORMAT, "%s: invalid JSON", src);
        goto out;
    }
    get_str(root, "model_type", cfg->model_type, sizeof cfg->model_type);
    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    if (cJSON_IsArray(archs) && cJSON_IsString(cJSON_GetArrayItem(archs, 0)))
        snprintf(cfg->architecture, sizeof cfg->architecture, "%s",
                 cJSON_GetArrayItem(archs, 0)->valuestring);
    get_str(root, "torch_dtype", cfg->dtype, sizeof cfg->dtype);
    get_str(root, "dtype", cfg->dtype, sizeof cfg->dtype);

    static const struct {
        const char *type;
        enum melbo_arch arch;
    } known[] = {{"llama", MELBO_ARCH_LLAMA},
                 {"mistral", MELBO_ARCH_MISTRAL},
                 {"qwen2", MELBO_ARCH_QWEN2},
                 {"qwen3", MELBO_ARCH_QWEN3},
                 {"qwen", MELBO_ARCH_QWEN},
                 {"gemma2", MELBO_ARCH_GEMMA2},
                 {"gemma3_text", MELBO_ARCH_GEMMA3},
                 {"gemma3", MELBO_ARCH_GEMMA3},
                 {"olmo2", MELBO_ARCH_OLMO2},
                 {"phi3", MELBO_ARCH_PHI3},
                 {"mixtral", MELBO_ARCH_MIXTRAL},
                 {"qwen3_moe", MELBO_ARCH_QWEN3_MOE},
                 {"qwen2_moe", MELBO_ARCH_QWEN2_MOE}};
    size_t k;
    for (k = 0; k < sizeof known / sizeof known[0]; k++)
        if (strcmp(cfg->model_type, known[k].type) == 0)
            break;
    if (k == sizeof known / sizeof known[0]) {
        ret = melbo_err_set(err, MELBO_EUNSUPPORTED,
                            "%s: unsupported model_type \"%s\" (melbo supports llama, mistral, "
                            "qwen2, qwen3, qwen, gemma2, gemma3, gemma3_text, olmo2, phi3, "
                            "mixtral, qwen3_moe and qwen2_moe)",
                            src, cfg->model_type[0] ? cfg->model_type : "(missing)");
        goto out;
    }
    cfg->arch = known[k].arch;
    /* gemma3 (Gemma3ForConditionalGeneration): the language model's config is text_config */
    const cJSON *body = root;
    if (strcmp(cfg->model_type, "gemma3") == 0) {
        body = cJSON_GetObjectItemCaseSensitive(root, "text_config");
        if (!cJSON_IsObject(body)) {
            ret = melbo_err_set(err, MELBO_EMISSING,
                                "%s: model_type \"gemma3\" without a \"text_config\" object: "
                                "melbo runs the language model of Gemma 3 and needs its config",
                                src);
            goto out;
        }
        cfg->lm_in_multimodal = 1;
    }
    /* Gemma 3's published configs leave most text_config keys at transformers' defaults */
    if (cfg->arch == MELBO_ARCH_GEMMA3) {
        static const struct {
            const char *key;
            double value;
        } dflt[] = {{"vocab_size", 262208},          {"hidden_size", 2304},
                    {"intermediate_size", 9216},     {"num_hidden_layers", 26},
                    {"num_attention_heads", 8},      {"num_key_value_heads", 4},
                    {"head_dim", 256},               {"query_pre_attn_scalar", 256},
                    {"rms_norm_eps", 1e-6},          {"max_position_embeddings", 131072}};
        cJSON *copy = cJSON_Duplicate(body, 1);
        for (size_t i = 0; i < sizeof dflt / sizeof dflt[0]; i++)
            if (!cJSON_HasObjectItem(copy, dflt[i].key))
                cJSON_AddNumberToObject(copy, dflt[i].key, dflt[i].value);
        if (!cJSON_HasObjectItem(copy, "rope_parameters") && !cJSON_HasObjectItem(copy, "rope_theta"))
            cJSON_AddNumberToObject(copy, "rope_theta", 1000000.0);
        gemma3_defaults = copy;
        body = copy;
    }
    if (cfg->arch == MELBO_ARCH_GEMMA2 || cfg->arch == MELBO_ARCH_GEMMA3)
        cfg->tied_embeddings = 1; /* Gemma's default when tie_word_embeddings is absent */
    ret = cfg->arch == MELBO_ARCH_QWEN ? parse_qwen1(cfg, body, src, err)
                                       : parse_hf(cfg, body, src, err);
    if (ret == 0 && (cfg->arch == MELBO_ARCH_GEMMA2 || cfg->arch == MELBO_ARCH_GEMMA3))
        ret = parse_gemma(cfg, body, src, err);
    if (ret == 0 && cfg->arch == MELBO_ARCH_OLMO2) {
        cfg->no_pre_norms = 1;
        cfg->post_norms = 1;
        cfg->qk_norm = 2;
    }
    if (ret == 0 && (cfg->arch == MELBO_ARCH_MIXTRAL || cfg->arch == MELBO_ARCH_QWEN3_MOE ||
                     cfg->arch == MELBO_ARCH_QWEN2_MOE))
        ret = parse_moe(cfg, body, src, err);
    if (ret)
        goto out;
    parse_eos(cfg, body);
    if (body != root && cfg->n_eos == 0)
        parse_eos(cfg, root);
    if (cfg->n_kv_heads <= 0 || cfg->n_heads % cfg->n_kv_heads != 0) {
        ret =
            melbo_err_set(err, MELBO_EFORMAT,
                          "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d",
                          src, cfg->n_heads, cfg->n_kv_heads);
        goto out;
    }
    if (cfg->head_dim <= 0 || cfg->head_dim % 2 != 0 || cfg->head_dim > 1024) {
        ret = melbo_err_set(err, MELBO_EFORMAT, "%s: head_dim %d must be even and in [2, 1024]",
                            src, cfg->head_dim);
        goto out;
    }
    if (!(cfg->norm_eps > 0) || !(cfg->rope_theta > 0)) {
        ret = melbo_err_set(err, MELBO_EFORMAT, "%s: norm epsilon and rope theta must be positive",
                            src);
        goto out;
    }
out:
    cJSON_Delete(gemma3_defaults);
    cJSON_Delete(root);
    return ret;
}

int melbo_config_load(struct melbo_model_config *cfg, const char *dir, struct melbo_err *err) {
    char path[4096];
    char *text = NULL;
    size_t len = 0;
    if (melbo_gguf_is_path(dir))
        return melbo_gguf_config_load(cfg, dir, err);
    if (!melbo_file_is_dir(dir))
        return melbo_err_set(err, MELBO_ENOENT, "model directory %s does not exist", dir);
    if (melbo_path_join(path, sizeof path, dir, "config.json") != 0)
        return melbo_err_set(err, MELBO_ERANGE, "model path too long: %s", dir);
    int ret = melbo_file_read(path, &text, &len, err);
    if (ret == MELBO_ENOENT)
        return melbo_err_set(err, MELBO_ENOENT,
                             "%s has no config.json (not a Hugging Face checkpoint directory)",
                             dir);
    if (ret)
        return ret;
    ret = melbo_config_parse(cfg, text, len, path, err);
    free(text);
    return ret;
}

int melbo_tp_check(const struct melbo_model_config *c, int tp, struct melbo_err *err) {
    if (tp < 1)
        return melbo_err_set(err, MELBO_EINVAL, "--tp must be >= 1");
    if (c->n_heads % tp != 0)
        return melbo_err_set(err, MELBO_EINVAL,
                             "--tp %d does not divide the model's %d attention heads", tp,
                             c->n_heads);
    if (c->n_kv_heads % tp != 0 && tp % c->n_kv_heads != 0)
        return melbo_err_set(
            err, MELBO_EINVAL,
            "--tp %d and the model's %d key/value heads: one must divide the other", tp,
            c->n_kv_heads);
    if (c->d_ff % tp != 0)
        return melbo_err_set(err, MELBO_EINVAL, "--tp %d does not divide the MLP width %d", tp,
                             c->d_ff);
    if (c->d_ff_shared % tp != 0)
        return melbo_err_set(err, MELBO_EINVAL,
                             "--tp %d does not divide the shared expert's width %d", tp,
                             c->d_ff_shared);
    return 0;
}

long long melbo_config_param_count(const struct melbo_model_config *c) {
    long long d = c->d_model, hd = c->head_dim, qd = (long long)c->n_heads * hd;
    long long kd = (long long)c->n_kv_heads * hd, V = c->vocab;
    long long attn = d * (qd + 2 * kd) + qd * d;
    if (c->qkv_bias)
        attn += qd + 2 * kd;
    if (c->o_bias)
        attn += d;
    if (c->qk_norm == 1)
        attn += 2 * hd;
    else if (c->qk_norm == 2)
        attn += qd + kd;
    long long mlp = c->n_experts > 0
                        ? (long long)c->n_experts * (3 * d * c->d_ff_expert + d) /* + router */
                        : 3 * d * c->d_ff;
    if (c->d_ff_shared)
        mlp += 3 * d * c->d_ff_shared + d; /* shared expert and its gate */
    long long norms = (c->no_pre_norms ? 0 : 2 * d) + (c->post_norms ? 2 * d : 0);
    long long total = (long long)c->n_layers * (attn + mlp + norms);
    total += V * d + d; /* embedding, final norm */
    if (!c->tied_embeddings)
        total += V * d;
    return total;
}

int melbo_config_check_runnable(const struct melbo_model_config *c, struct melbo_err *err) {
    (void)c;
    (void)err;
    return 0;
}

int melbo_config_check_seq_len(const struct melbo_model_config *cfg, int n_tokens,
                               struct melbo_err *err) {
    if (cfg->arch == MELBO_ARCH_QWEN && cfg->max_positions > 0 && n_tokens > cfg->max_positions)
        return melbo_err_set(err, MELBO_ERANGE,
                             "a sequence of %d tokens is longer than Qwen-1's seq_length %d "
                             "(beyond it the model switches to dynamic NTK and log-n attention, "
                             "which melbo does not implement)",
                             n_tokens, cfg->max_positions);
    if (cfg->sliding_window > 0 && n_tokens > cfg->sliding_window)
        return melbo_err_set(err, MELBO_ERANGE,
                             "a sequence of %d tokens is longer than the model's sliding window "
                             "of %d (sliding-window attention is not supported)",
                             n_tokens, cfg->sliding_window);
    return 0;
}

void melbo_config_rope_inv_freq_local(const struct melbo_model_config *cfg, float *inv_freq) {
    struct melbo_model_config local = *cfg;
    local.rope_type = MELBO_ROPE_DEFAULT;
    local.rope_theta = cfg->rope_theta_local;
    melbo_config_rope_inv_freq(&local, inv_freq);
}

void melbo_config_rope_inv_freq(const struct melbo_model_config *cfg, float *inv_freq) {
    int dim = cfg->rope_dim;
    for (int i = 0; i < dim / 2; i++) {
        /* transformers: 1 / base ** (arange(0, dim, 2).float() / dim), in fp32 */
        float expo = (float)(2 * i) / (float)dim;
        float f = (float)(1.0 / pow((double)cfg->rope_theta, (double)expo));
        if (cfg->rope_type == MELBO_ROPE_LINEAR) {
            f = f / cfg->rope_factor;
        } else if (cfg->rope_type == MELBO_ROPE_LLAMA3) {
            double old_ctx = cfg->rope_original_max_pos;
            double low_wavelen = old_ctx / cfg->rope_low_freq_factor;
            double high_wavelen = old_ctx / cfg->rope_high_freq_factor;
            double wavelen = 2.0 * M_PI / (double)f;
            float g = wavelen > low_wavelen ? f / cfg->rope_factor : f;
            if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
                float smooth = (float)((old_ctx / wavelen - cfg->rope_low_freq_factor) /
                                       (cfg->rope_high_freq_factor - cfg->rope_low_freq_factor));
                g = (1.0f - smooth) * g / cfg->rope_factor + smooth * g;
            }
            f = g;
        }
        inv_freq[i] = f;
    }
}
