/* rank/gpu/backend.c - the CUDA backend's table (rank/gpu/backend.h, rank/backend.h). */
#include "rank/gpu/backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "nccl/comm.h"
#include "rank/cpu/decode.h"
#include "rank/gpu/decode.h"
#include "rank/gpu/ops.h"
#include "rank/gpu/wave.h"

/* Device memory left free after the training buffers (generation's cache, cuBLASLt). */
#define GPU_RESERVE_BYTES ((size_t)2 << 30)

struct gpu_backend {
    const struct melbo_model *host; // borrowed: the embedding rows, the CPU decoder's fallback
    struct melbo_comm *comm;        // borrowed, NULL standalone: ends the job on a fatal error
    int dev;                        // the CUDA device
    struct melbo_gpu_model g;       // the host model on the device
    struct melbo_gpu_wave w;        // the training state (rank/gpu/wave.h), after prefix
    int P;                          // prompts of the task
    double p, q;                    // the task's objective
    int axis;                       // enum melbo_loss_axis
    float *F_host;                  // (cap_B * P) F of each pair of a step
    char describe[160];
};

/* A decoder on the device, or the CPU's on the host model when the device lacks a part. */
struct gpu_decoder {
    int on_device;
    struct melbo_gpu_decoder gpu;
    struct melbo_cpu_decoder cpu;
};

static void gpu_fatal(const struct gpu_backend *gb, int rc, const char *what) {
    char msg[512];
    snprintf(msg, sizeof msg, "GPU: %s: %s", what, melbo_cuda_strerror(rc));
    if (gb->comm)
        melbo_comm_abort(gb->comm, msg);
    fprintf(stderr, "melbo-rank: %s\n", msg);
    abort();
}

static const char *gpu_describe(void *ctx) {
    return ((struct gpu_backend *)ctx)->describe;
}

/* x0 (n_ptok, d) T on the device: the embedding rows of the packed prompts. */
static int upload_embeddings(struct gpu_backend *gb, const struct melbo_prompts *pr, void **x0,
                             struct melbo_err *err) {
    size_t n = (size_t)pr->seqs.n_tok, d = (size_t)gb->host->cfg.d_model;
    float *host = melbo_xalloc_f32(n * d), *dev32 = NULL;
    for (int i = 0; i < pr->P; i++)
        for (int r = 0; r < pr->lens[i]; r++)
            memcpy(host + ((size_t)pr->seqs.start[i] + r) * d,
                   gb->host->embed + (size_t)pr->ids[i][r] * d, d * sizeof(float));
    int rc = (int)cudaMalloc((void **)&dev32, n * d * 4);
    rc = rc ? rc : (int)cudaMalloc(x0, n * d * melbo_gpu_dtype_size(gb->g.dtype));
    rc = rc ? rc : (int)cudaMemcpy(dev32, host, n * d * 4, cudaMemcpyHostToDevice);
    rc = rc ? rc : melbo_gpu_from_f32(&gb->g, *x0, dev32, n * d);
    rc = rc ? rc : (int)cudaStreamSynchronize(gb->g.stream);
    cudaFree(dev32);
    free(host);
    return melbo_gpu_err(err, rc, "copying the prompt embeddings to the device");
}

static int gpu_prefix(void *ctx, const struct melbo_train_task *task, float *X, float *Y,
                      struct melbo_err *err) {
    struct gpu_backend *gb = ctx;
    const struct melbo_prompts *pr = task->prompts;
    if (task->adapter)
        return melbo_err_set(err, MELBO_EUNSUPPORTED,
                             "the CUDA backend does not train adapters yet (--adapter-rank): use "
                             "--device cpu");
    gb->P = pr->P;
    gb->p = task->p;
    gb->q = task->q;
    gb->axis = (int)task->axis;
    void *x0 = NULL;
    int ret = upload_embeddings(gb, pr, &x0, err);
    if (ret == 0)
        ret = melbo_gpu_wave_init(&gb->w, &gb->g, task->source, task->target, pr->lens, pr->P,
                                  pr->idx, pr->n_idx, task->cap_B, x0, GPU_RESERVE_BYTES, err);
    cudaFree(x0);
    if (ret)
        return ret;
    /* host copies of X and Y for calibration and checks */
    size_t nd = (size_t)pr->seqs.n_tok * gb->host->cfg.d_model;
    float *tmp = NULL;
    int rc = (int)cudaMalloc((void **)&tmp, nd * 4);
    rc = rc ? rc : melbo_gpu_to_f32(&gb->g, tmp, gb->w.X, nd);
    rc = rc ? rc : (int)cudaMemcpyAsync(X, tmp, nd * 4, cudaMemcpyDeviceToHost, gb->g.stream);
    rc = rc ? rc : (int)cudaMemcpyAsync(Y, gb->w.Y, nd * 4, cudaMemcpyDeviceToHost, gb->g.stream);
    rc = rc ? rc : (int)cudaStreamSynchronize(gb->g.stream);
    cudaFree(tmp);
    gb->F_host = melbo_xalloc_f32((size_t)task->cap_B * pr->P);
    size_t len = strlen(gb->describe);
    snprintf(gb->describe + len, sizeof gb->describe - len, ", span %s",
             gb->w.span.mode == MELBO_GPU_SPAN_SAVE ? "saved" : "recomputed");
    return melbo_gpu_err(err, rc, "copying X and Y to the host");
}

static void gpu_wave_objective(void *ctx, const float *theta, int Bw, int k0, int k1, double *F,
                               float *grad) {
    struct gpu_backend *gb = ctx;
    struct melbo_gpu_wave *w = &gb->w;
    cudaStream_t st = gb->g.stream;
    size_t Bd = (size_t)Bw * gb->host->cfg.d_model;
    int rc = (int)cudaMemcpyAsync(w->theta, theta, Bd * 4, cudaMemcpyHostToDevice, st);
    rc = rc ? rc : melbo_gpu_wave_batch(w, Bw, k0, k1);
    rc = rc ? rc : melbo_gpu_wave_step(w, gb->p, gb->q, gb->axis);
    rc = rc ? rc : (int)cudaMemcpyAsync(grad, w->grad, Bd * 4, cudaMemcpyDeviceToHost, st);
    if (rc == 0 && k1 > k0)
        rc = (int)cudaMemcpyAsync(gb->F_host, w->F, sizeof(float) * (size_t)(k1 - k0),
                                  cudaMemcpyDeviceToHost, st);
    rc = rc ? rc : (int)cudaStreamSynchronize(st);
    if (rc)
        gpu_fatal(gb, rc, "a training step");
    memset(F, 0, sizeof *F * (size_t)Bw);
    for (int k = k0; k < k1; k++)
        F[k / gb->P] += gb->F_host[k - k0];
}

/* The host's code on the host arrays: the device optimiser (melbo_gpu_wave_update, used by the
 * benchmark) does not yet project against finished vectors or orthogonalise the wave. Moving
 * this update to the device is issue 15's work. */
static void gpu_update(void *ctx, struct melbo_wave_state *ws, int t, const struct melbo_optim *o) {
    (void)ctx;
    melbo_wave_update(ws, t, o);
}

static void gpu_train_end(void *ctx) {
    struct gpu_backend *gb = ctx;
    melbo_gpu_wave_free(&gb->w);
    free(gb->F_host);
    gb->F_host = NULL;
}

/* 1 when the device holds the whole model: generation can run there. */
static int whole_model(const struct melbo_gpu_model *g) {
    return g->tp_size == 1 && g->layer_begin == 0 && g->layer_end == g->cfg.n_layers && g->embed &&
           g->lm_head;
}

static int gpu_decoder_init(void *ctx, int n_slots, int cap, int cap_tok, int source_layer,
                            const struct melbo_adapter_shape *adapter, void **dec,
                            struct melbo_err *err) {
    struct gpu_backend *gb = ctx;
    struct gpu_decoder *d = melbo_xcalloc(1, sizeof *d);
    /* the device decoder applies steering vectors only: adapters decode on the host model */
    d->on_device = whole_model(&gb->g) && adapter == NULL;
    if (!d->on_device) {
        melbo_cpu_decoder_init(&d->cpu, gb->host, n_slots, cap, cap_tok, source_layer, adapter);
    } else {
        int ret = melbo_gpu_decoder_init(&d->gpu, &gb->g, n_slots, cap, cap_tok, source_layer, err);
        if (ret) {
            melbo_gpu_decoder_free(&d->gpu);
            free(d);
            return ret;
        }
    }
    *dec = d;
    return 0;
}

static int gpu_decoder_forward(void *ctx, void *dec, const int32_t *tokens, int n_runs,
                               const int *slot, const int *run_len, const float *const *steer,
                               const float *const *adapter, float *logits, struct melbo_err *err) {
    struct gpu_decoder *d = dec;
    (void)ctx;
    if (d->on_device)
        return melbo_gpu_decoder_forward(&d->gpu, tokens, n_runs, slot, run_len, steer, logits,
                                         err);
    return melbo_cpu_decoder_forward(&d->cpu, tokens, n_runs, slot, run_len, steer, adapter,
                                     logits, err);
}

static void gpu_decoder_reset(void *ctx, void *dec, int slot) {
    struct gpu_decoder *d = dec;
    (void)ctx;
    if (d->on_device)
        melbo_gpu_decoder_reset(&d->gpu, slot);
    else
        melbo_cpu_decoder_reset(&d->cpu, slot);
}

static void gpu_decoder_free(void *ctx, void *dec) {
    struct gpu_decoder *d = dec;
    (void)ctx;
    if (d->on_device)
        melbo_gpu_decoder_free(&d->gpu);
    else
        melbo_cpu_decoder_free(&d->cpu);
    free(d);
}

static void gpu_free(void *ctx) {
    struct gpu_backend *gb = ctx;
    gpu_train_end(gb);
    melbo_gpu_model_free(&gb->g);
    free(gb);
}

static const struct melbo_backend_i gpu_iface = {
    .describe = gpu_describe,
    .prefix = gpu_prefix,
    .wave_objective = gpu_wave_objective,
    .update = gpu_update,
    .train_end = gpu_train_end,
    .decoder_init = gpu_decoder_init,
    .decoder_forward = gpu_decoder_forward,
    .decoder_reset = gpu_decoder_reset,
    .decoder_free = gpu_decoder_free,
    .free = gpu_free,
};

int melbo_gpu_backend_open(struct melbo_backend *be, const struct melbo_model *host, int bf16,
                           struct melbo_comm *comm, struct melbo_err *err) {
    struct gpu_backend *gb = melbo_xcalloc(1, sizeof *gb);
    gb->host = host;
    gb->comm = comm;
    enum melbo_gpu_dtype dt = bf16 ? MELBO_GPU_BF16 : MELBO_GPU_F32;
    int ret = melbo_gpu_select_device(&gb->dev, err);
    if (ret == 0)
        ret = melbo_gpu_model_upload(&gb->g, host, dt, err);
    if (ret) {
        gpu_free(gb);
        return ret;
    }
    struct cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, gb->dev) != cudaSuccess)
        snprintf(prop.name, sizeof prop.name, "device %d", gb->dev);
    snprintf(gb->describe, sizeof gb->describe, "%s (device %d), %s", prop.name, gb->dev,
             melbo_gpu_dtype_name(dt));
    be->iface = &gpu_iface;
    be->ctx = gb;
    be->host = host;
    return 0;
}

int melbo_gpu_device_count(void) {
    int n = 0;
    return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}
