/*
 * rank/gpu/model.h - a decoder's weights in GPU memory, in the layout of rank/model/model.h.
 *
 * The weights of the matrix products and the norms are stored in the model's dtype (bf16 for
 * speed, fp32 for the exact check against the CPU); biases and RoPE frequencies are fp32.
 * A GPU model is made either from a loaded host model (melbo_gpu_model_upload: the host copy may
 * be freed afterwards) or directly on the device with random weights (melbo_gpu_model_init_random,
 * for benchmarks of shapes no checkpoint is shipped for). Everything lives in one device arena
 * allocated once; the pointers below point into it.
 *
 * The model also owns the stream every GPU computation of this process is queued on and the
 * cuBLASLt handle of that stream.
 */
#ifndef MELBO_RANK_GPU_MODEL_H
#define MELBO_RANK_GPU_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#include "common/err.h"
#include "rank/cuda/kernels.h"
#include "rank/model/model.h"

#ifdef __cplusplus
extern "C" {
#endif

enum melbo_gpu_dtype {
    MELBO_GPU_BF16 = 0,
    MELBO_GPU_F32 = 1,
};

/*
 * Lays buffers out in one device arena: returns base + *used (NULL when base is NULL, a pass that
 * only counts) and advances *used by bytes rounded up to 256, the alignment cuBLASLt and the
 * 16-byte vector loads assume. Callers run their layout twice: count, allocate, carve.
 */
static inline void *melbo_gpu_carve(char *base, size_t *used, size_t bytes) {
    void *r = base ? base + *used : NULL;
    *used += (bytes + 255) & ~(size_t)255;
    return r;
}

/* Bytes of one stored element, and the dtype's name ("bf16", "fp32"). */
size_t melbo_gpu_dtype_size(enum melbo_gpu_dtype t);
const char *melbo_gpu_dtype_name(enum melbo_gpu_dtype t);

/* Device pointers; T is the model's dtype. Shapes as in struct melbo_layer_weights. */
struct melbo_gpu_layer {
    void *attn_norm;  // (d) T
    void *w_qkv;      // (qkv_rows, d) T
    float *b_qkv;     // (qkv_rows) or NULL
    void *q_norm;     // (hd) T or NULL
    void *k_norm;     // (hd) T or NULL
    void *w_o;        // (d, nq*hd) T
    float *b_o;       // (d) or NULL
    void *mlp_norm;   // (d) T
    void *w_gu;       // (2*ff, d) T
    void *w_down;     // (d, ff) T
};

struct melbo_gpu_model {
    struct melbo_model_config cfg;    // this rank's share, as struct melbo_model's cfg
    enum melbo_gpu_dtype dtype;
    int tp_rank, tp_size;
    struct melbo_tp_reduce reduce;    // host all-reduce of fp32 partial sums (tp > 1)
    int layer_begin, layer_end;       // blocks held
    struct melbo_gpu_layer *layers;   // (L) host array of device pointers; NULL outside range
    void *embed;                      // (V, d) T or NULL
    void *final_norm;                 // (d) T or NULL
    void *lm_head;                    // (V, d) T or NULL; == embed when tied
    float *rope_inv_freq;             // (rope_dim/2) fp32
    void *arena;                      // owns every device weight above
    size_t arena_bytes;
    cudaStream_t stream;              // owned
    struct melbo_cuda_blas *blas;     // owned, bound to stream
};

/* Picks the CUDA device for this process: local rank (OMPI_COMM_WORLD_LOCAL_RANK,
 * SLURM_LOCALID) modulo the device count, so several ranks of one node spread over its GPUs.
 * MELBO_EUNSUPPORTED naming the CUDA error when no device is usable. */
int melbo_gpu_select_device(int *device, struct melbo_err *err);

/* Copies host model m (its layers, embedding and head as loaded) to the device in dtype. */
int melbo_gpu_model_upload(struct melbo_gpu_model *g, const struct melbo_model *m,
                           enum melbo_gpu_dtype dtype, struct melbo_err *err);

/* A model of config cfg (the whole model: tp = 1) with the blocks and parts opts asks for and
 * random weights drawn on the device: linear weights normal with std 1/sqrt(fan_in), norms
 * 1 + 0.1 normal, biases 0.1 normal, embedding normal; deterministic in seed. */
int melbo_gpu_model_init_random(struct melbo_gpu_model *g, const struct melbo_model_config *cfg,
                                const struct melbo_load_opts *opts, enum melbo_gpu_dtype dtype,
                                uint64_t seed, struct melbo_err *err);

void melbo_gpu_model_free(struct melbo_gpu_model *g);

/* Bytes of device memory this process holds now (cudaMemGetInfo: total - free; includes other
 * processes sharing the device). */
size_t melbo_gpu_device_used(void);

/* Turns a return value of a rank/cuda launcher into an error naming what was running. */
int melbo_gpu_err(struct melbo_err *err, int rc, const char *what);

#ifdef __cplusplus
}
#endif
#endif
