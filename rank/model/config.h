/*
 * rank/model/config.h - the model hyper-parameters melbo needs, read from a Hugging Face
 * config.json.
 *
 * Supported families (DESIGN §4 "Models"): Llama 2/3.x (rope_scaling linear and llama3), Mistral
 * (explicit head_dim), Qwen2/2.5 (Q/K/V bias), Qwen3 dense (Q/K RMSNorm), Qwen-1 (model_type
 * "qwen": fused c_attn, w1/w2/c_proj). Anything else — another model_type, MoE, a RoPE type such
 * as yarn or dynamic, an activation other than SiLU, an MLP bias — is refused with a message that
 * names it. Both config spellings are read: rope_theta/rope_scaling and transformers v5's
 * rope_parameters; torch_dtype and dtype.
 */
#ifndef MELBO_RANK_MODEL_CONFIG_H
#define MELBO_RANK_MODEL_CONFIG_H

#include <stddef.h>

#include "common/err.h"

#ifdef __cplusplus
extern "C" {
#endif

enum melbo_arch {
    MELBO_ARCH_LLAMA = 0,   // model_type llama
    MELBO_ARCH_MISTRAL = 1, // model_type mistral
    MELBO_ARCH_QWEN2 = 2,   // model_type qwen2: q/k/v bias
    MELBO_ARCH_QWEN3 = 3,   // model_type qwen3: per-head q/k RMSNorm
    MELBO_ARCH_QWEN = 4,    // model_type qwen (Qwen-1): fused c_attn with bias
};

enum melbo_rope_type {
    MELBO_ROPE_DEFAULT = 0,
    MELBO_ROPE_LINEAR = 1,
    MELBO_ROPE_LLAMA3 = 2,
};

struct melbo_model_config {
    enum melbo_arch arch;
    char model_type[32];          // as in config.json
    char architecture[64];        // architectures[0], or "" when absent
    char dtype[16];               // torch_dtype / dtype, or "" when absent
    int n_layers;                 // L
    int d_model;                  // d
    int n_heads;                  // query heads
    int n_kv_heads;               // key/value heads (GQA when < n_heads)
    int head_dim;                 // explicit head_dim, or d / n_heads
    int d_ff;                     // MLP width (Qwen-1: intermediate_size / 2)
    int vocab;                    // vocab_size
    float norm_eps;               // rms_norm_eps / layer_norm_epsilon
    int qkv_bias;                 // q/k/v projections carry a bias
    int o_bias;                   // o projection carries a bias (Llama attention_bias)
    int qk_norm;                  // Qwen3 per-head RMSNorm on q and k (weights [head_dim])
    int tied_embeddings;          // lm_head shares the embedding matrix
    float rope_theta;             // base
    int rope_dim;                 // rotated dims per head (head_dim, or Qwen-1 rotary_pct part)
    enum melbo_rope_type rope_type;
    float rope_factor;            // linear / llama3 factor
    float rope_low_freq_factor;   // llama3
    float rope_high_freq_factor;  // llama3
    int rope_original_max_pos;    // llama3 original_max_position_embeddings
    int max_positions;            // max_position_embeddings (Qwen-1: seq_length); 0 = unknown
    int sliding_window;           // 0 = none; sequences longer than this are refused
    int bos_token_id;             // -1 when absent
    int n_eos;                    // eos_token_id may be one id or a list
    int eos_ids[8];
};

/* Fills cfg from the JSON text json (length len); source names the file in messages. */
int melbo_config_parse(struct melbo_model_config *cfg, const char *json, size_t len,
                       const char *source, struct melbo_err *err);

/*
 * Reads DIR/config.json. A directory without config.json is MELBO_ENOENT, named in err. When DIR
 * is a GGUF file, the config comes from its metadata instead (rank/model/gguf_model.h).
 */
int melbo_config_load(struct melbo_model_config *cfg, const char *dir, struct melbo_err *err);

/*
 * Checks that a sequence of n_tokens is within what the model computes exactly: Qwen-1 switches
 * on dynamic NTK and log-n attention beyond seq_length, and a sliding window changes attention
 * beyond its width. Returns 0 or MELBO_ERANGE naming the limit.
 */
int melbo_config_check_seq_len(const struct melbo_model_config *cfg, int n_tokens,
                               struct melbo_err *err);

/*
 * Fills inv_freq[rope_dim/2] with the RoPE inverse frequencies after scaling, exactly as
 * transformers computes them in fp32 (modeling_rope_utils: default, linear, llama3).
 */
void melbo_config_rope_inv_freq(const struct melbo_model_config *cfg, float *inv_freq);

/*
 * Tensor parallelism (DESIGN §4 "Parallelism"): Q/K/V and gate/up are split by rows
 * (column-parallel), O and down by columns (row-parallel, one all-reduce each). Allowed when
 * n_heads % tp == 0, d_ff % tp == 0 and (n_kv_heads % tp == 0, or tp % n_kv_heads == 0 with each
 * KV head replicated on tp / n_kv_heads ranks). Q/K/V biases follow their heads; the per-head
 * q/k norms, the O bias, the norms, the embedding and the LM head are replicated. Returns 0 or
 * MELBO_EINVAL naming the rule the layout breaks.
 */
int melbo_tp_check(const struct melbo_model_config *c, int tp, struct melbo_err *err);

const char *melbo_arch_name(enum melbo_arch a);
const char *melbo_rope_type_name(enum melbo_rope_type t);

#ifdef __cplusplus
}
#endif
#endif
