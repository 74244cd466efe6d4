/*
 * rank/cuda/decode_kernels.h - the CUDA kernels of KV-cached generation, behind a plain C
 * interface (style rule 5): the embedding gather, appending keys and values to the cache,
 * attention of query tokens against their sequence's cache, greedy argmax over the logits, and
 * adding a steering vector to chosen rows of the residual stream.
 *
 * Conventions are those of rank/cuda/kernels.h: every function is a launcher that checks its
 * shapes, queues its kernel on the given stream and returns at once. Pointers are device
 * pointers; shapes are written next to them. The _bf16 launchers read and write bf16 tensors and
 * compute in fp32; the _f32 launchers are fp32 throughout. Return values: 0 on success; a
 * negative MELBO_E* code (common/err.h) when the arguments are refused (nothing is launched); a
 * positive cudaError_t when the launch failed (melbo_cuda_strerror names both).
 *
 * The KV cache (twin: struct melbo_cpu_decoder in rank/cpu/decode.h). Per layer there is one
 * key cache and one value cache, each (n_slots, cap, nkv*hd) of the stored type: slot s holds
 * one sequence, position p of it the keys (or values) of all nkv heads of the token at p, after
 * RoPE. This is the CPU decoder's (L, n_slots, cap, nkv*hd) cache sliced at one layer, so a
 * caller passes k_cache + l * n_slots * cap * nkv*hd. Which positions of a slot are filled is
 * the caller's bookkeeping (the CPU decoder's len[]); the kernels take each token's slot and
 * position from the device arrays tok_slot (n_tok) and tok_pos (n_tok).
 *
 * A generation step for a packed batch of runs (a whole prompt at prefill, one token per
 * sequence while decoding) is: embed; per layer RMSNorm, the qkv product, q/k norm and RoPE at
 * the tokens' positions (kernels.h), melbo_cuda_kv_append, melbo_cuda_attention_decode, the
 * output product, the MLP; melbo_cuda_add_rows after the source block; the head; argmax.
 *
 * Contained caller errors: indices the kernels read from device memory (token ids, slots,
 * positions, vector rows) cannot be checked on the host. Each kernel says below what it does
 * with one out of range; none reads or writes outside its buffers for an index it can check.
 * Slot numbers and vector rows have no upper bound in the signatures: the caller keeps
 * tok_slot < n_slots and row_vec < n_vec.
 */
#ifndef MELBO_RANK_CUDA_DECODE_KERNELS_H
#define MELBO_RANK_CUDA_DECODE_KERNELS_H

#include <stdint.h>

#include <cuda_runtime_api.h>

#include "rank/cuda/kernels.h" // melbo_bf16, MELBO_CUDA_ATTN_MAX_HEAD_DIM, melbo_cuda_strerror

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
 * Embedding lookup (twin: melbo_cpu_embed in rank/cpu/span.h). One block per row.
 *
 * out[r] = table[ids[r]] for r < n: table (V, d), ids (n), out (n, d). A row whose id lies
 * outside [0, V) is written as zeros and nothing else happens (no error is reported: the host
 * checks token ids before they reach the device, as melbo_cpu_decoder_forward does).
 */
int melbo_cuda_embed_f32(const float *table, const int32_t *ids, float *out, int n, int d, int V,
                         cudaStream_t stream);
int melbo_cuda_embed_bf16(const melbo_bf16 *table, const int32_t *ids, melbo_bf16 *out, int n,
                          int d, int V, cudaStream_t stream);

/* ---------------------------------------------------------------------------------------------
 * Appending to the KV cache (twin: the copy loop of block_cached in rank/cpu/decode.c). One block
 * per token; an exact copy of the stored values.
 *
 * qkv (n_tok, ld) holds per token the nq query heads at column 0, the nkv key heads at column
 * nq*hd and the nkv value heads at (nq+nkv)*hd (RoPE already applied by the caller);
 * ld >= (nq + 2*nkv)*hd. Token t's keys go to k_cache[tok_slot[t]][tok_pos[t]] and its values
 * to v_cache[tok_slot[t]][tok_pos[t]] (caches (n_slots, cap, nkv*hd)). A token with a negative
 * slot or a position outside [0, cap) is skipped. Two tokens of one call must not name the same
 * (slot, position).
 */
int melbo_cuda_kv_append_f32(const float *qkv, int ld, int nq, int nkv, int hd, const int *tok_slot,
                             const int *tok_pos, int n_tok, float *k_cache, float *v_cache, int cap,
                             cudaStream_t stream);
int melbo_cuda_kv_append_bf16(const melbo_bf16 *qkv, int ld, int nq, int nkv, int hd,
                              const int *tok_slot, const int *tok_pos, int n_tok,
                              melbo_bf16 *k_cache, melbo_bf16 *v_cache, int cap,
                              cudaStream_t stream);

/* ---------------------------------------------------------------------------------------------
 * Causal grouped-query attention of query tokens against their slot's cache (twin:
 * melbo_cpu_attend_head in rank/cpu/ops.h, as the CPU decoder calls it).
 *
 * q (n_q_tok, ldq) holds each token's nq query heads at column 0 (after RoPE); ldq >= nq*hd, so
 * q may be the qkv buffer itself. Token t, at position tok_pos[t] of slot tok_slot[t], attends
 * to cache positions 0 .. tok_pos[t] inclusive of that slot, its own key and value among them:
 * run melbo_cuda_kv_append for the same tokens first. Query head h reads KV head
 * h / (nq/nkv); nq is a multiple of nkv. Scores are scaled by 1/sqrt(hd), the softmax is
 * computed in fp32 and so are all sums. out (n_q_tok, nq*hd) receives the attention output.
 *
 * The same call serves prefill (every prompt token, positions 0 .. len-1, after appending the
 * whole prompt) and decoding (one token per sequence at its newest position), and any mix.
 *
 * max_pos (host) is 1 + the largest tok_pos of the call, at most cap. A token whose position
 * is outside [0, max_pos) or whose slot is negative gets an output row of zeros and reads no
 * cache. hd <= MELBO_CUDA_ATTN_MAX_HEAD_DIM; contexts are limited only by cap.
 *
 * One thread block per (query token, query head) walks the positions in chunks of 256, the
 * chunk's scores in shared memory, with an online softmax across chunks (a chunk rescales the
 * running sum and output when it raises the maximum), the output divided by the sum at the end.
 * Shared memory is fixed, so any context runs; one block per head and token is sized for
 * decoding and short prompts (a long prompt re-reads its cache once per query token and head).
 */
int melbo_cuda_attention_decode_f32(const float *q, int ldq, const float *k_cache,
                                    const float *v_cache, int cap, const int *tok_slot,
                                    const int *tok_pos, float *out, int n_q_tok, int nq, int nkv,
                                    int hd, int max_pos, cudaStream_t stream);
int melbo_cuda_attention_decode_bf16(const melbo_bf16 *q, int ldq, const melbo_bf16 *k_cache,
                                     const melbo_bf16 *v_cache, int cap, const int *tok_slot,
                                     const int *tok_pos, melbo_bf16 *out, int n_q_tok, int nq,
                                     int nkv, int hd, int max_pos, cudaStream_t stream);

/* ---------------------------------------------------------------------------------------------
 * Greedy choice (twin: melbo_argmax in rank/generate/sampler.c). One block per row.
 *
 * out[r] = the first index of the largest value of logits[r] (logits (n, V) fp32, out (n)),
 * exactly as melbo_argmax scans: equal maxima go to the lowest index; NaN values are never
 * chosen, except that a row whose first value is NaN gives 0 (melbo_argmax compares against
 * x[0] and every comparison with NaN is false). This differs from torch.argmax, which treats
 * NaN as the maximum. A row of all -inf gives 0.
 */
int melbo_cuda_argmax_f32(const float *logits, int n, int V, int32_t *out, cudaStream_t stream);

/* ---------------------------------------------------------------------------------------------
 * Steering during generation (twin: the loop after the source block in
 * melbo_cpu_decoder_forward). One block per row.
 *
 * x[r] += scale * vec[row_vec[r]] for every row r < n with row_vec[r] >= 0; rows with a
 * negative row_vec (-1: unsteered) are left alone. x (n, d) of the stored type, vec (n_vec, d)
 * fp32, row_vec (n). The product scale * vec is rounded to fp32 before the addition (no fused
 * multiply-add), so the fp32 result is bit-identical to the CPU decoder's, which adds vectors
 * already multiplied by their scale in fp32 (rank/generate/generate.h); pass scale = 1 for such
 * vectors.
 */
int melbo_cuda_add_rows_f32(float *x, const float *vec, const int *row_vec, float scale, int n,
                            int d, cudaStream_t stream);
int melbo_cuda_add_rows_bf16(melbo_bf16 *x, const float *vec, const int *row_vec, float scale,
                             int n, int d, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
