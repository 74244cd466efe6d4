/*
 * rank/gpu/decode.h - KV-cached steered decoding on the GPU: the twin of rank/cpu/decode.h for
 * the whole decoder (all blocks, embedding and head on the device, tp = 1).
 *
 * A decoder holds the keys and values of every layer for n_slots sequences of up to cap
 * positions, and scratch for n_slots * cap tokens, allocated once. melbo_gpu_decoder_greedy
 * prefills a batch of equal-length prompts as one packed call, then decodes one token per
 * sequence per step with greedy choice on the device: the loop queues work without waiting for
 * the host, and the chosen ids are copied back once at the end.
 */
#ifndef MELBO_RANK_GPU_DECODE_H
#define MELBO_RANK_GPU_DECODE_H

#include <stdint.h>

#include "rank/gpu/model.h"

#ifdef __cplusplus
extern "C" {
#endif

struct melbo_gpu_decoder {
    const struct melbo_gpu_model *g;   // borrowed: every block, embedding and head
    int n_slots, cap, cap_tok, source; // steering is added after block source (-1: never)
    void *k, *v;                       // (L, n_slots, cap, nkv*hd) T
    void *x, *x1, *qkv, *attn, *gu, *act; // (cap_tok, width) T scratch
    void *last;                        // (n_slots, d) T the last row of each run
    float *logits;                     // (n_slots, V) fp32
    float *vec;                        // (n_slots, d) fp32 steering vector of each slot
    int *tok_slot, *tok_pos, *row_vec; // (cap_tok) device, per token of a call
    int *last_row;                     // (n_slots) device
    int32_t *ids;                      // (cap_tok) device, the tokens of a call
    int32_t *chosen;                   // (cap, n_slots) device, the ids chosen at each step
    int *len;                          // (n_slots) host: positions filled in each slot
    const float **vec_src;             // (n_slots) host: the vector now in each slot's vec row
    int *h_slot, *h_pos, *h_rv, *h_last; // (cap_tok) host staging of the token tables
    void *arena;
    size_t arena_bytes;
};

/* cap_tok: most tokens of one call (0: n_slots * cap). */
int melbo_gpu_decoder_init(struct melbo_gpu_decoder *dec, const struct melbo_gpu_model *g,
                           int n_slots, int cap, int cap_tok, int source, struct melbo_err *err);
void melbo_gpu_decoder_free(struct melbo_gpu_decoder *dec);

/* Forgets a slot's tokens (the slot can take a new sequence). */
void melbo_gpu_decoder_reset(struct melbo_gpu_decoder *dec, int slot);

/*
 * The contract of melbo_cpu_decoder_forward (rank/cpu/decode.h) on the GPU: n_runs runs of
 * tokens (host, packed run after run; run r appends run_len[r] tokens to slot slot[r]), steer
 * (n_slots) host vectors (d) or NULL added after the source block, logits (n_runs, V) host fp32
 * at each run's last token. Returns 0, MELBO_ERANGE when a slot would pass cap positions or the
 * call cap_tok tokens, or an error naming the CUDA failure.
 */
int melbo_gpu_decoder_forward(struct melbo_gpu_decoder *dec, const int32_t *tokens, int n_runs,
                              const int *slot, const int *run_len, const float *const *steer,
                              float *logits, struct melbo_err *err);

/*
 * Greedy decoding of n prompts (n <= n_slots) of plen tokens each (prompts (n, plen) host, ids
 * checked against the vocabulary), steered by theta (d) host fp32 added after the source block
 * at every position (NULL: unsteered), for n_new tokens: out (n, n_new) host. plen + n_new
 * <= cap. No stop tokens: every sequence gets n_new tokens (the benchmark's contract).
 */
int melbo_gpu_decoder_greedy(struct melbo_gpu_decoder *dec, const int32_t *prompts, int n,
                             int plen, const float *theta, int n_new, int32_t *out,
                             struct melbo_err *err);

#ifdef __cplusplus
}
#endif
#endif
