/*
 * rank/model/weight_names.c - the checkpoint names and shapes of a block's weights
 * (rank/model/weight_names.h): one name table per scheme, shapes from the config.
 */
#include "rank/model/weight_names.h"

#include <stdio.h>

void melbo_weight_name(const struct melbo_model_config *c, int is_gguf, enum melbo_weight k, int l,
                       char *buf, size_t n, int64_t *row0) {
    static const char *hf[] = {[MELBO_WEIGHT_Q] = "self_attn.q_proj.weight",
                               [MELBO_WEIGHT_K] = "self_attn.k_proj.weight",
                               [MELBO_WEIGHT_V] = "self_attn.v_proj.weight",
                               [MELBO_WEIGHT_QB] = "self_attn.q_proj.bias",
                               [MELBO_WEIGHT_KB] = "self_attn.k_proj.bias",
                               [MELBO_WEIGHT_VB] = "self_attn.v_proj.bias",
                               [MELBO_WEIGHT_O] = "self_attn.o_proj.weight",
                               [MELBO_WEIGHT_OB] = "self_attn.o_proj.bias",
                               [MELBO_WEIGHT_QN] = "self_attn.q_norm.weight",
                               [MELBO_WEIGHT_KN] = "self_attn.k_norm.weight",
                               [MELBO_WEIGHT_ATTN_NORM] = "input_layernorm.weight",
                               [MELBO_WEIGHT_MLP_NORM] = "post_attention_layernorm.weight",
                               [MELBO_WEIGHT_GATE] = "mlp.gate_proj.weight",
                               [MELBO_WEIGHT_UP] = "mlp.up_proj.weight",
                               [MELBO_WEIGHT_DOWN] = "mlp.down_proj.weight"};
    static const char *qwen1[] = {[MELBO_WEIGHT_Q] = "attn.c_attn.weight",
                                  [MELBO_WEIGHT_K] = "attn.c_attn.weight",
                                  [MELBO_WEIGHT_V] = "attn.c_attn.weight",
                                  [MELBO_WEIGHT_QB] = "attn.c_attn.bias",
                                  [MELBO_WEIGHT_KB] = "attn.c_attn.bias",
                                  [MELBO_WEIGHT_VB] = "attn.c_attn.bias",
                                  [MELBO_WEIGHT_O] = "attn.c_proj.weight",
                                  [MELBO_WEIGHT_OB] = "attn.c_proj.bias",
                                  [MELBO_WEIGHT_QN] = "",
                                  [MELBO_WEIGHT_KN] = "",
                                  [MELBO_WEIGHT_ATTN_NORM] = "ln_1.weight",
                                  [MELBO_WEIGHT_MLP_NORM] = "ln_2.weight",
                                  [MELBO_WEIGHT_GATE] = "mlp.w2.weight",
                                  [MELBO_WEIGHT_UP] = "mlp.w1.weight",
                                  [MELBO_WEIGHT_DOWN] = "mlp.c_proj.weight"};
    static const char *gguf[] = {[MELBO_WEIGHT_Q] = "attn_q.weight",
                                 [MELBO_WEIGHT_K] = "attn_k.weight",
                                 [MELBO_WEIGHT_V] = "attn_v.weight",
                                 [MELBO_WEIGHT_QB] = "attn_q.bias",
                                 [MELBO_WEIGHT_KB] = "attn_k.bias",
                                 [MELBO_WEIGHT_VB] = "attn_v.bias",
                                 [MELBO_WEIGHT_O] = "attn_output.weight",
                                 [MELBO_WEIGHT_OB] = "attn_output.bias",
                                 [MELBO_WEIGHT_QN] = "attn_q_norm.weight",
                                 [MELBO_WEIGHT_KN] = "attn_k_norm.weight",
                                 [MELBO_WEIGHT_ATTN_NORM] = "attn_norm.weight",
                                 [MELBO_WEIGHT_MLP_NORM] = "ffn_norm.weight",
                                 [MELBO_WEIGHT_GATE] = "ffn_gate.weight",
                                 [MELBO_WEIGHT_UP] = "ffn_up.weight",
                                 [MELBO_WEIGHT_DOWN] = "ffn_down.weight"};
    *row0 = 0;
    const char *pre = c->lm_prefix[0] ? c->lm_prefix : "model.";
    int gemma = c->arch == MELBO_ARCH_GEMMA2 || c->arch == MELBO_ARCH_GEMMA3;
    int64_t qd = (int64_t)c->n_heads * c->head_dim, kd = (int64_t)c->n_kv_heads * c->head_dim;
    if (k == MELBO_WEIGHT_POST_ATTN_NORM || k == MELBO_WEIGHT_POST_MLP_NORM) {
        snprintf(buf, n, "%slayers.%d.%s", pre, l,
                 k == MELBO_WEIGHT_POST_ATTN_NORM ? "post_attention_layernorm.weight"
                                                  : "post_feedforward_layernorm.weight");
        return;
    }
    if (!is_gguf && gemma && k == MELBO_WEIGHT_MLP_NORM) {
        snprintf(buf, n, "%slayers.%d.pre_feedforward_layernorm.weight", pre, l);
        return;
    }
    if (!is_gguf && c->arch == MELBO_ARCH_PHI3) {
        const char *name = hf[k];
        if (k == MELBO_WEIGHT_Q || k == MELBO_WEIGHT_K || k == MELBO_WEIGHT_V)
            name = "self_attn.qkv_proj.weight";
        if (k == MELBO_WEIGHT_GATE || k == MELBO_WEIGHT_UP)
            name = "mlp.gate_up_proj.weight";
        *row0 = k == MELBO_WEIGHT_K ? qd : k == MELBO_WEIGHT_V ? qd + kd
                : k == MELBO_WEIGHT_UP ? c->d_ff : 0;
        snprintf(buf, n, "%slayers.%d.%s", pre, l, name);
        return;
    }
    if (is_gguf) {
        snprintf(buf, n, "blk.%d.%s", l, gguf[k]);
    } else if (c->arch == MELBO_ARCH_QWEN) {
        snprintf(buf, n, "transformer.h.%d.%s", l, qwen1[k]);
        if (k == MELBO_WEIGHT_K || k == MELBO_WEIGHT_KB)
            *row0 = qd;
        if (k == MELBO_WEIGHT_V || k == MELBO_WEIGHT_VB)
            *row0 = qd + kd;
    } else {
        snprintf(buf, n, "%slayers.%d.%s", pre, l, hf[k]);
    }
}

int melbo_weight_shape(const struct melbo_model_config *c, enum melbo_weight k, int64_t shape[2]) {
    int64_t d = c->d_model, hd = c->head_dim, qd = c->n_heads * hd, kd = c->n_kv_heads * hd;
    int64_t ff = c->d_ff;
    int fused = c->arch == MELBO_ARCH_QWEN || c->arch == MELBO_ARCH_PHI3;
    switch (k) {
    case MELBO_WEIGHT_Q:
        shape[0] = fused ? qd + 2 * kd : qd;
        shape[1] = d;
        return 2;
    case MELBO_WEIGHT_K:
    case MELBO_WEIGHT_V:
        shape[0] = fused ? qd + 2 * kd : kd;
        shape[1] = d;
        return 2;
    case MELBO_WEIGHT_QB:
        shape[0] = fused ? qd + 2 * kd : qd;
        return 1;
    case MELBO_WEIGHT_KB:
    case MELBO_WEIGHT_VB:
        shape[0] = fused ? qd + 2 * kd : kd;
        return 1;
    case MELBO_WEIGHT_O:
        shape[0] = d;
        shape[1] = qd;
        return 2;
    case MELBO_WEIGHT_OB:
        shape[0] = d;
        return 1;
    case MELBO_WEIGHT_QN:
        shape[0] = c->qk_norm == 2 ? qd : hd; /* OLMo 2: over the whole projection */
        return 1;
    case MELBO_WEIGHT_KN:
        shape[0] = c->qk_norm == 2 ? kd : hd;
        return 1;
    case MELBO_WEIGHT_ATTN_NORM:
    case MELBO_WEIGHT_MLP_NORM:
    case MELBO_WEIGHT_POST_ATTN_NORM:
    case MELBO_WEIGHT_POST_MLP_NORM:
        shape[0] = d;
        return 1;
    case MELBO_WEIGHT_GATE:
    case MELBO_WEIGHT_UP:
        shape[0] = c->arch == MELBO_ARCH_PHI3 ? 2 * ff : ff;
        shape[1] = d;
        return 2;
    case MELBO_WEIGHT_DOWN:
        shape[0] = d;
        shape[1] = ff;
        return 2;
    }
    return 0;
}

void melbo_expert_weight_name(const struct melbo_model_config *c, int kind, int l, int e,
                              char *buf, size_t n) {
    static const char *mixtral[] = {"gate.weight", "w1.weight", "w3.weight", "w2.weight"};
    static const char *qwen[] = {"gate.weight", "gate_proj.weight", "up_proj.weight",
                                 "down_proj.weight"};
    if (kind >= 4) { /* Qwen2-MoE shared expert: gate, up, down, then its sigmoid gate */
        static const char *sh[] = {"shared_expert.gate_proj.weight", "shared_expert.up_proj.weight",
                                   "shared_expert.down_proj.weight", "shared_expert_gate.weight"};
        snprintf(buf, n, "%slayers.%d.mlp.%s", c->lm_prefix[0] ? c->lm_prefix : "model.", l,
                 sh[kind - 4]);
        return;
    }
    const char *pre = c->lm_prefix[0] ? c->lm_prefix : "model.";
    const char *block = c->arch == MELBO_ARCH_MIXTRAL ? "block_sparse_moe" : "mlp";
    const char *const *t = c->arch == MELBO_ARCH_MIXTRAL ? mixtral : qwen;
    if (kind == 0)
        snprintf(buf, n, "%slayers.%d.%s.%s", pre, l, block, t[0]);
    else
        snprintf(buf, n, "%slayers.%d.%s.experts.%d.%s", pre, l, block, e, t[kind]);
}
