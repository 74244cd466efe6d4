/*
 * rank/gpu/span.h - forward and input-gradient backward of decoder blocks [a, b) on the GPU: the
 * twin of rank/cpu/span.h with the same contract (hidden_states[a] in, hidden_states[b] out;
 * dLoss/d hidden_states[b] in, dLoss/d hidden_states[a] out; weights frozen).
 *
 * Activations are stored in the model's dtype; saved statistics (rstd, lse) in fp32. Memory is
 * allocated once at init for cap_tok tokens and cap_seq sequences. Three modes:
 *   MELBO_GPU_SPAN_FORWARD    forward only, one activation slot reused by every block
 *   MELBO_GPU_SPAN_SAVE       every block's activations kept for the backward
 *   MELBO_GPU_SPAN_RECOMPUTE  only each block's input kept; the backward reruns the block's
 *                             forward before its backward (about 1.5x the work, a fraction of
 *                             the memory: for long prompts or waves that would not fit)
 * Nothing is synchronised with the host except the tensor-parallel sums (tp > 1), which go
 * through the model's host reduce (MPI collectives on host copies).
 */
#ifndef MELBO_RANK_GPU_SPAN_H
#define MELBO_RANK_GPU_SPAN_H

#include "rank/gpu/model.h"
#include "rank/model/seqs.h"

#ifdef __cplusplus
extern "C" {
#endif

enum melbo_gpu_span_mode {
    MELBO_GPU_SPAN_FORWARD = 0,
    MELBO_GPU_SPAN_SAVE = 1,
    MELBO_GPU_SPAN_RECOMPUTE = 2,
};

/* What the backward of one block needs (device; T = model dtype), as melbo_cpu_block_acts. */
struct melbo_gpu_block_acts {
    void *x;          // (n, d) T block input
    float *rstd1;     // (n)
    void *qk_pre;     // (n, qkv_rows) T, Qwen3 only
    float *rstd_qk;   // (nq + nkv, n), Qwen3 only
    void *qkv;        // (n, qkv_rows) T
    void *attn;       // (n, nq*hd) T
    float *lse;       // (n, nq)
    void *h;          // (n, d) T
    float *rstd2;     // (n)
    void *gu;         // (n, 2*ff) T
};

struct melbo_gpu_span {
    const struct melbo_gpu_model *g;    // borrowed
    int a, b, cap_tok, cap_seq;
    enum melbo_gpu_span_mode mode;
    struct melbo_gpu_block_acts *acts;  // (b - a) in SAVE mode, else (1)
    void **xin;                         // (b - a) block inputs in RECOMPUTE mode, else NULL
    void *x1, *act;                     // scratch (cap, d), (cap, ff) T
    void *dgu, *dattn, *dqkv;           // backward scratch T (not in FORWARD mode)
    float *tmp;                         // (cap, d) fp32: row-parallel products, TP sums
    float *host_tmp;                    // (cap, d) pinned host, tp > 1 only
    /* the batch of the last melbo_gpu_span_set_seqs */
    int *seq_start;                     // (cap_seq + 1) device
    int *pos;                           // (cap_tok) device
    int n_seq, n_tok, max_len;
    void *arena;                        // owns every device buffer above
    size_t arena_bytes;
};

/* Device bytes a span of this shape allocates (to choose a mode before allocating). */
size_t melbo_gpu_span_bytes(const struct melbo_gpu_model *g, int a, int b, int cap_tok,
                            int cap_seq, enum melbo_gpu_span_mode mode);

int melbo_gpu_span_init(struct melbo_gpu_span *s, const struct melbo_gpu_model *g, int a, int b,
                        int cap_tok, int cap_seq, enum melbo_gpu_span_mode mode,
                        struct melbo_err *err);
void melbo_gpu_span_free(struct melbo_gpu_span *s);

/* Uploads the packing of seqs (n_tok <= cap_tok, n_seq <= cap_seq) for the calls that follow;
 * the seq_start and pos device arrays may be used by the caller's kernels too. */
int melbo_gpu_span_set_seqs(struct melbo_gpu_span *s, const struct melbo_seqs *seqs);

/* x (n_tok, d) T on the device, in place: hidden_states[a] -> hidden_states[b]. Returns 0 or a
 * launcher's error. */
int melbo_gpu_span_forward(struct melbo_gpu_span *s, void *x);
/* dx (n_tok, d) T in place; the last forward (SAVE or RECOMPUTE mode) on the same seqs. */
int melbo_gpu_span_backward(struct melbo_gpu_span *s, void *dx);

#ifdef __cplusplus
}
#endif
#endif
