/*
 * rank/cpu/decode.h - the whole decoder with a KV cache, for generation on the CPU backend.
 *
 * A decoder holds, for n_slots sequences, the keys and values (after RoPE) of every layer at up
 * to cap positions. A call feeds a packed batch of runs: run r appends tokens to slot
 * slot[r] at positions len[slot] .. len[slot] + run_len - 1 (a whole prompt at prefill, one token
 * per sequence while decoding), runs every block, adds the slot's steering vector (theta times
 * scale, or nothing) to the output of the source block at every one of its positions, and returns
 * the logits of the last token of every run. Each run attends only to its own slot, so a
 * sequence's numbers never depend on its batch-mates. A decoder made for adapters adds instead
 * (or as well) a slot's adapter term (alpha/r) B (A u) to the source block's output, u the
 * block's down-projection input (rank/method/adapter.h; under tensor parallelism A u is summed
 * over the group, as the down projection is).
 *
 * Ownership: the decoder borrows the model (all blocks, embedding and head loaded) and owns its
 * cache and scratch, allocated once.
 */
#ifndef MELBO_RANK_CPU_DECODE_H
#define MELBO_RANK_CPU_DECODE_H

#include <stdint.h>

#include "common/err.h"
#include "rank/cpu/moe.h"
#include "rank/method/adapter.h"
#include "rank/model/model.h"

#ifdef __cplusplus
extern "C" {
#endif

struct melbo_cpu_decoder {
    const struct melbo_model *m;  // borrowed
    int n_slots, cap;             // sequences, positions per sequence
    int cap_tok;                  // most tokens per call
    int source_layer;             // steering is added after this block (-1: never)
    int *len;                     // (n_slots) positions filled
    float *k, *v;                 // (L, n_slots, cap, nkv*hd)
    float *x, *x1, *qkv, *attn, *gu, *act, *y; // scratch for cap_tok tokens
    const struct melbo_adapter_shape *adapter; // adapters' shape (borrowed), or NULL
    float *z;                                  // (cap_tok, r) scratch with adapters
    struct melbo_cpu_moe *moe;                 // MoE scratch, or NULL
    float *arena;
};

/* Allocates the cache and scratch; adapter (borrowed) when slots may carry adapters, else NULL. */
void melbo_cpu_decoder_init(struct melbo_cpu_decoder *dec, const struct melbo_model *m,
                            int n_slots, int cap, int cap_tok, int source_layer,
                            const struct melbo_adapter_shape *adapter);
void melbo_cpu_decoder_free(struct melbo_cpu_decoder *dec);
/* Forgets a slot's tokens (the slot can take a new sequence). */
void melbo_cpu_decoder_reset(struct melbo_cpu_decoder *dec, int slot);

/*
 * Feeds n_runs runs (tokens packed run after run, run r has run_len[r] tokens for slot
 * slot[r]); steer[slot] is the vector (d) added after the source block for that slot, or NULL;
 * adapter[slot] (adapter may be NULL) that slot's adapter row, or NULL. logits (n_runs, V)
 * receives the logits at each run's last token. Returns 0, or MELBO_ERANGE when a slot would
 * exceed cap positions or the model's limits, MELBO_EINVAL for an adapter on a decoder made
 * without an adapter shape.
 */
int melbo_cpu_decoder_forward(struct melbo_cpu_decoder *dec, const int32_t *tokens, int n_runs,
                              const int *slot, const int *run_len, const float *const *steer,
                              const float *const *adapter, float *logits, struct melbo_err *err);

#ifdef __cplusplus
}
#endif
#endif
