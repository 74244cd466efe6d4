/*
 * rank/model/model.h - a decoder's weights in fp32, in melbo's own fused layout.
 *
 * Whatever the checkpoint's names (HF Llama family, Qwen-1, Phi-3's fused ones), a block is held as:
 *   x1 = rmsnorm(x) * attn_norm;  [q | k | v] = x1 W_qkv^T (+ b_qkv);  q, k: q/k norm
 *   (per head: Qwen3, Gemma 3; whole projection: OLMo 2), then RoPE;  a = attention(q, k, v);
 *   h = x + post_attn_norm(a W_o^T (+ b_o))
 *   x2 = rmsnorm(h) * mlp_norm;   [g | u] = x2 W_gu^T;  out = h + post_mlp_norm((act(g) * u) W_down^T)
 * post_* norms only where the config has them (Gemma 2/3, OLMo 2); OLMo 2 has no attn_norm or
 * mlp_norm (x1 = x, x2 = h). Gemma's (1 + w) norms are stored as 1 + w.
 * Loading converts F32/F16/BF16 to fp32 and checks every tensor's shape against config.json.
 * A `dir` that is a GGUF file is read through rank/model/gguf_model.h instead: its config comes
 * from the metadata, its tensors (F32/F16/BF16/Q8_0/Q4_0/Q4_1/Q4_K/Q6_K) are dequantised to fp32
 * and llama.cpp's Q/K row permutation is undone, so the layout below is the same.
 * Only the blocks [layer_begin, layer_end) and, on request, the embedding and the head are
 * loaded, so a process that needs part of the model reads only that part of the files.
 *
 * Ownership: struct melbo_model owns one arena holding every weight; the pointers below point
 * into it (lm_head may equal embed when the embeddings are tied). melbo_model_free releases it.
 */
#ifndef MELBO_RANK_MODEL_MODEL_H
#define MELBO_RANK_MODEL_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "rank/model/config.h"

#ifdef __cplusplus
extern "C" {
#endif

/* d = d_model, hd = head_dim, nq/nkv = query/KV heads, ff = MLP width, V = vocab. */
struct melbo_layer_weights {
    float *attn_norm;  // (d)
    float *w_qkv;      // (nq*hd + 2*nkv*hd, d): rows Q heads, then K heads, then V heads
    float *b_qkv;      // (nq*hd + 2*nkv*hd) or NULL
    float *q_norm;     // (hd) or NULL (Qwen3, Gemma 3); OLMo 2: (nq*hd) over this rank's heads
    float *k_norm;     // (hd) or NULL; OLMo 2: (nkv*hd)
    float *w_o;        // (d, nq*hd)
    float *b_o;        // (d) or NULL
    float *mlp_norm;   // (d)
    float *w_gu;       // (2*ff, d): rows gate, then up
    float *w_down;     // (d, ff)
    float *post_attn_norm; // (d) or NULL: RMSNorm of the attention output (Gemma, OLMo 2)
    float *post_mlp_norm;  // (d) or NULL: RMSNorm of the MLP output
    /* Mixture of experts (n_experts E > 0; then w_gu and w_down are NULL): */
    float *w_router;   // (E, d), replicated on every tensor-parallel rank
    float *w_gu_e;     // (E, 2*ff, d): expert e's gate rows then up rows (this rank's ff slice)
    float *w_down_e;   // (E, d, ff)
    float *w_sh_gu;    // (2*sff, d) Qwen2-MoE shared expert gate rows then up rows, or NULL
    float *w_sh_down;  // (d, sff)
    float *w_sh_gate;  // (d): the shared expert's output is scaled by sigmoid(x . w_sh_gate)
};

/* Sum of a partial result over the tensor-parallel group (in place); NULL when tp = 1. */
struct melbo_tp_reduce {
    void (*fn)(void *ctx, float *buf, size_t n);
    void *ctx;
};

struct melbo_model {
    struct melbo_model_config cfg;       // what this rank computes: heads and MLP width are the
                                         // rank's tensor-parallel share (= full when tp = 1)
    struct melbo_model_config full;      // config.json as read
    int tp_rank, tp_size;                // tensor-parallel position (0, 1 without TP)
    struct melbo_tp_reduce reduce;       // all-reduce of row-parallel outputs (tp > 1)
    int layer_begin, layer_end;          // blocks held: [layer_begin, layer_end)
    struct melbo_layer_weights *layers;  // (L); entries outside the range are all NULL
    float *embed;                        // (V, d) or NULL
    float *final_norm;                   // (d) or NULL
    float *lm_head;                      // (V, d) or NULL; == embed when tied
    float *rope_inv_freq;                // (rope_dim/2), scaled as config.json says
    float *rope_inv_freq_local;          // sliding layers' (Gemma 3), else == rope_inv_freq
    float *arena;                        // owns every weight above
    size_t arena_floats;
};

/* What to load. layer_end = -1 means the last block. */
struct melbo_load_opts {
    int layer_begin;
    int layer_end;
    int embed;   // load the token embedding
    int head;    // load the final norm and the LM head
    int tp_rank; // this rank's tensor-parallel slice (0 and 1 = the whole model)
    int tp_size;
};


/* Every block, the embedding and the head. */
struct melbo_load_opts melbo_load_opts_all(void);

/* The local config of TP rank r of tp (heads, KV heads, MLP width divided). */
void melbo_tp_local_config(const struct melbo_model_config *full, int tp_rank, int tp,
                           struct melbo_model_config *local, int *q_head0, int *kv_head0);

/*
 * Loads the model in dir (config.json + safetensors, or a GGUF file). Errors name the file and
 * tensor: a missing tensor, a shape that disagrees with config.json, an unsupported dtype or
 * config.
 */
int melbo_model_load(struct melbo_model *m, const char *dir, const struct melbo_load_opts *opts,
                     struct melbo_err *err);

/*
 * Checks, without loading any weight, that dir's checkpoint holds every tensor config.json
 * implies, with the right shape and a weight dtype. Fills cfg. What `inspect` and the
 * coordinator's job validation run.
 */
int melbo_model_check(const char *dir, struct melbo_model_config *cfg, struct melbo_err *err);

/*
 * Builds a model of shape cfg with random weights (no checkpoint): linear weights normal with
 * std 1/sqrt(fan_in) scaled by wscale, norms 1 + 0.1 normal, biases 0.1 normal; deterministic
 * in seed. For benchmarks and tests of shapes no checkpoint is shipped for.
 */
void melbo_model_init_random(struct melbo_model *m, const struct melbo_model_config *cfg,
                             const struct melbo_load_opts *opts, uint64_t seed);

void melbo_model_free(struct melbo_model *m);

/* Rows of W_qkv and the width of the attention output, for the loaded model. */
static inline int melbo_model_qkv_rows(const struct melbo_model_config *c) {
    return (c->n_heads + 2 * c->n_kv_heads) * c->head_dim;
}

#ifdef __cplusplus
}
#endif
#endif
