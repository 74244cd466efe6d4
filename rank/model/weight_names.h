/*
 * rank/model/weight_names.h - what a checkpoint calls each weight of a decoder block, and the
 * shape it must have there, for the three naming schemes melbo reads:
 *
 *   Hugging Face Llama family  model.layers.N.self_attn.q_proj.weight, ... (config.json shapes)
 *   Qwen-1 (model_type qwen)   transformer.h.N.attn.c_attn.weight: Q, K and V stacked in one
 *                              tensor (the piece's first row is returned), w1/w2/c_proj MLP
 *   Phi-3 (model_type phi3)    self_attn.qkv_proj (Q, K, V stacked) and mlp.gate_up_proj (gate,
 *                              then up), likewise returned with the piece's first row
 *   Gemma 2/3                  input_layernorm, post_attention_layernorm (after attention),
 *                              pre_feedforward_layernorm, post_feedforward_layernorm; Gemma 3
 *                              image-text checkpoints put the blocks under c->lm_prefix
 *   OLMo 2                     post_attention_layernorm and post_feedforward_layernorm only
 *   GGUF (llama architecture)  blk.N.attn_q.weight, ... (same names whatever the quantisation)
 *
 * Shapes are the Hugging Face (rows, cols) of the whole tensor as the full (not tensor-parallel)
 * config implies them; a GGUF stores the same matrix with its dims listed fastest-first.
 */
#ifndef MELBO_RANK_MODEL_WEIGHT_NAMES_H
#define MELBO_RANK_MODEL_WEIGHT_NAMES_H

#include <stddef.h>
#include <stdint.h>

#include "rank/model/config.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The weights of one block (rank/model/model.h's struct melbo_layer_weights, before fusing). */
enum melbo_weight {
    MELBO_WEIGHT_Q,
    MELBO_WEIGHT_K,
    MELBO_WEIGHT_V,
    MELBO_WEIGHT_QB,  // Q/K/V biases (qkv_bias)
    MELBO_WEIGHT_KB,
    MELBO_WEIGHT_VB,
    MELBO_WEIGHT_O,
    MELBO_WEIGHT_OB,  // output projection bias (o_bias)
    MELBO_WEIGHT_QN,  // per-head Q/K RMSNorm (qk_norm, Qwen3); no Qwen-1 name
    MELBO_WEIGHT_KN,
    MELBO_WEIGHT_ATTN_NORM,
    MELBO_WEIGHT_MLP_NORM,
    MELBO_WEIGHT_GATE,
    MELBO_WEIGHT_UP,
    MELBO_WEIGHT_DOWN,
    MELBO_WEIGHT_POST_ATTN_NORM, // post_norms: RMSNorm of the attention output (Gemma, OLMo 2)
    MELBO_WEIGHT_POST_MLP_NORM   // post_norms: RMSNorm of the MLP output
};

/*
 * Writes the checkpoint name of weight k of block l into buf (n bytes): the GGUF name when
 * is_gguf, else the Hugging Face or Qwen-1 one as c->arch says. *row0 receives the first row of
 * the weight inside that tensor (non-zero only for Qwen-1's K and V, stacked after Q).
 */
void melbo_weight_name(const struct melbo_model_config *c, int is_gguf, enum melbo_weight k, int l,
                       char *buf, size_t n, int64_t *row0);

/*
 * Mixture of experts (c->n_experts > 0): the name of block l's router (kind 0, shape [E, d]) or
 * expert e's gate (1), up (2) or down (3) projection: Mixtral block_sparse_moe.gate and
 * block_sparse_moe.experts.E.w1 / w3 / w2; Qwen3-MoE mlp.gate and mlp.experts.E.gate_proj /
 * up_proj / down_proj; kinds 4..7: Qwen2-MoE's mlp.shared_expert.gate_proj / up_proj / down_proj
 * and mlp.shared_expert_gate ([1, d]).
 */
void melbo_expert_weight_name(const struct melbo_model_config *c, int kind, int l, int e,
                              char *buf, size_t n);

/* Writes the full shape weight k's checkpoint tensor must have (from config c) into shape and
 * returns its number of dimensions (1 or 2). */
int melbo_weight_shape(const struct melbo_model_config *c, enum melbo_weight k, int64_t shape[2]);

#ifdef __cplusplus
}
#endif
#endif
