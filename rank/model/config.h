/*
 * rank/model/config.h - the model hyper-parameters melbo needs, read from a Hugging Face
 * config.json.
 *
 * Supported families (DESIGN §4 "Models"): Llama 2/3.x (rope_scaling linear and llama3), Mistral
 * (explicit head_dim), Qwen2/2.5 (Q/K/V bias), Qwen3 dense (Q/K RMSNorm), Qwen-1 (model_type
 * "qwen": fused c_attn, w1/w2/c_proj), and (issue 21) Gemma 2 (gemma2), Gemma 3 text (gemma3_text
 * and the text_config of gemma3), OLMo 2 (olmo2), Phi-3 / Phi-4 (phi3), and the mixtures of experts
 * Mixtral (mixtral) and Qwen3-MoE (qwen3_moe; not with dense blocks among the experts or a shared
 * expert). Their GGUF files are not read (GGUF: llama only). Anything else — another model_type,
 * a RoPE type such as yarn, longrope or dynamic, an unknown activation, an MLP bias — is refused
 * with a message that names the field. Both config spellings are read: rope_theta/rope_scaling,
 * rope_local_base_freq and sliding_window_pattern (transformers v4) and rope_parameters (plain or
 * per attention type) and layer_types (v5); torch_dtype and dtype; head_dim null = d / heads.
 */
#ifndef MELBO_RANK_MODEL_CONFIG_H
#define MELBO_RANK_MODEL_CONFIG_H

#include <math.h>
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
    MELBO_ARCH_GEMMA2 = 5,  // gemma2: (1 + w) norms, four per block, GeGLU, soft-capping, windows
    MELBO_ARCH_GEMMA3 = 6,  // gemma3_text (or gemma3's text_config): Gemma 2 + q/k norm, local RoPE
    MELBO_ARCH_OLMO2 = 7,   // olmo2: post-norms only, q/k RMSNorm over the whole projection
    MELBO_ARCH_PHI3 = 8,    // phi3 (Phi-3, Phi-4): fused qkv_proj and gate_up_proj
    MELBO_ARCH_MIXTRAL = 9, // mixtral: MoE, top-k renormalised, block_sparse_moe.experts.E.w1/w2/w3
    MELBO_ARCH_QWEN3_MOE = 10, // qwen3_moe: MoE (norm_topk_prob), q/k norm, mlp.experts.E.*
    MELBO_ARCH_QWEN2_MOE = 11, // qwen2_moe: MoE + a shared expert behind a sigmoid gate, qkv bias
};

/* The MLP's gate activation: SwiGLU (silu) or GeGLU with the tanh approximation of GELU. */
enum melbo_act {
    MELBO_ACT_SILU = 0,
    MELBO_ACT_GELU_TANH = 1, // gelu_pytorch_tanh
};

/* The most blocks a config may have (layer_sliding is a fixed array). */
#define MELBO_MAX_LAYERS 512

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
    int qk_norm;                  // q/k RMSNorm: 0 none, 1 per head (weights [head_dim]: Qwen3,
                                  // Gemma 3), 2 over the whole projection (OLMo 2: [nq*hd], [nkv*hd])
    int tied_embeddings;          // lm_head shares the embedding matrix
    float rope_theta;             // base
    int rope_dim;                 // rotated dims per head (head_dim, or Qwen-1 rotary_pct part)
    enum melbo_rope_type rope_type;
    float rope_factor;            // linear / llama3 factor
    float rope_low_freq_factor;   // llama3
    float rope_high_freq_factor;  // llama3
    int rope_original_max_pos;    // llama3 original_max_position_embeddings
    int max_positions;            // max_position_embeddings (Qwen-1: seq_length); 0 = unknown
    int sliding_window;           // 0 = none; sequences longer than this are refused (Mistral,
                                  // Qwen2 with use_sliding_window)
    /* Issue 21 families. Zero everywhere below is the Llama family (a zeroed config stays valid). */
    enum melbo_act act;           // MLP gate activation
    int norm_plus_one;            // Gemma: every RMSNorm scales by (1 + w); folded into the
                                  // weights at load, so the kernels see w' = 1 + w
    int no_pre_norms;             // OLMo 2: no RMSNorm before attention and MLP
    int post_norms;               // RMSNorm on the attention and MLP outputs before the residual
                                  // add (Gemma 2/3 post_attention/post_feedforward, OLMo 2)
    float embed_scale;            // embeddings times this (Gemma: sqrt(d) in fp32); 0 = none
    float attn_scale;             // softmax scale query_pre_attn_scalar^-0.5 (Gemma); 0 = the
                                  // default head_dim^-0.5 (melbo_attn_scale)
    float attn_softcap;           // scores -> c tanh(scores / c) before the softmax; 0 = none
    float final_softcap;          // logits -> c tanh(logits / c); 0 = none
    int window;                   // sliding window of the layers marked in layer_sliding: key j
                                  // is seen by query i when i - window < j <= i (computed exactly)
    int local_rope;               // sliding layers use rope_theta_local, default RoPE (Gemma 3)
    float rope_theta_local;
    unsigned char layer_sliding[MELBO_MAX_LAYERS]; // 1 = sliding_attention, 0 = full_attention
    int lm_in_multimodal;         // gemma3: the language model of an image-text checkpoint
                                  // (tensor names under language_model.)
    char lm_prefix[32];           // the blocks' tensor-name prefix when not "model." (set by the
                                  // loader: "language_model.model." or "model.language_model.")
    /* Mixture of experts (mixtral, qwen3_moe); d_ff is then each expert's width. */
    int n_experts;                // 0 = dense
    int top_k;                    // num_experts_per_tok
    int d_ff_expert;              // each expert's MLP width
    int norm_topk;                // renormalise the top-k router weights to sum to 1
    int d_ff_shared;              // Qwen2-MoE's shared expert width (0 = none); its output is
                                  // scaled by sigmoid(x . w_shared_gate)
    int bos_token_id;             // -1 when absent
    int n_eos;                    // eos_token_id may be one id or a list
    int eos_ids[8];
};

/* Fills cfg from the JSON text json (length len); source names the file in messages. Configs
 * melbo reads but does not run (MoE) are refused (melbo_config_check_runnable). */
int melbo_config_parse(struct melbo_model_config *cfg, const char *json, size_t len,
                       const char *source, struct melbo_err *err);
/* melbo_config_parse without the runnable check: what `inspect --config` reads. */
int melbo_config_read(struct melbo_model_config *cfg, const char *json, size_t len,
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

/*
 * The number of parameters a checkpoint of this config holds (embedding, head unless tied, every
 * block's weights, biases and norms, experts and routers), from the config alone.
 */
long long melbo_config_param_count(const struct melbo_model_config *c);

/*
 * Whether the CPU engine computes this config: 0, or MELBO_EUNSUPPORTED naming what is missing
 * (every config melbo_config_read accepts runs today; the hook where a family that is read but
 * not yet run is refused). Model loads and melbo_config_parse call it.
 */
int melbo_config_check_runnable(const struct melbo_model_config *c, struct melbo_err *err);

/* The softmax scale of attention scores. */
static inline float melbo_attn_scale(const struct melbo_model_config *c) {
    return c->attn_scale > 0 ? c->attn_scale : 1.0f / sqrtf((float)c->head_dim);
}

/* The RoPE inverse frequencies of a sliding layer under local_rope (Gemma 3: default RoPE with
 * rope_theta_local). */
void melbo_config_rope_inv_freq_local(const struct melbo_model_config *cfg, float *inv_freq);

const char *melbo_arch_name(enum melbo_arch a);
const char *melbo_rope_type_name(enum melbo_rope_type t);

#ifdef __cplusplus
}
#endif
#endif
