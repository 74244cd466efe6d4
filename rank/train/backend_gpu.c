/* rank/train/backend_gpu.c - the trainer's CUDA backend (rank/train/backend_gpu.h). */
#include "rank/train/backend_gpu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "rank/gpu/ops.h"
#include "rank/gpu/wave.h"
#include "rank/train/trainer.h"

/* Device memory left free after the training buffers (generation's cache, cuBLASLt). */
#define GPU_RESERVE_BYTES ((size_t)2 << 30)

struct melbo_train_gpu {
    struct melbo_gpu_model g;
    struct melbo_gpu_wave w;
    float *F_host; // (B * P)
    char describe[160];
};

static void gpu_fatal(struct melbo_trainer *tr, int rc, const char *what) {
    char msg[512];
    snprintf(msg, sizeof msg, "GPU: %s: %s", what, melbo_cuda_strerror(rc));
    if (tr->comm)
        melbo_comm_abort(tr->comm, msg);
    fprintf(stderr, "melbo-rank: %s\n", msg);
    abort();
}

/* x0 (n_ptok, d) T on the device: the embedding rows of the packed prompts. */
static int upload_embeddings(struct melbo_trainer *tr, struct melbo_train_gpu *gb, void **x0,
                             struct melbo_err *err) {
    size_t n = (size_t)tr->pseqs.n_tok, d = (size_t)tr->d;
    float *host = melbo_xalloc_f32(n * d), *dev32 = NULL;
    for (int i = 0; i < tr->P; i++)
        for (int r = 0; r < tr->lens[i]; r++)
            memcpy(host + ((size_t)tr->pseqs.start[i] + r) * d,
                   tr->model.embed + (size_t)tr->ids[i][r] * d, d * sizeof(float));
    int rc = (int)cudaMalloc((void **)&dev32, n * d * 4);
    rc = rc ? rc : (int)cudaMalloc(x0, n * d * melbo_gpu_dtype_size(gb->g.dtype));
    rc = rc ? rc : (int)cudaMemcpy(dev32, host, n * d * 4, cudaMemcpyHostToDevice);
    rc = rc ? rc : melbo_gpu_from_f32(&gb->g, *x0, dev32, n * d);
    rc = rc ? rc : (int)cudaStreamSynchronize(gb->g.stream);
    cudaFree(dev32);
    free(host);
    return melbo_gpu_err(err, rc, "copying the prompt embeddings to the device");
}

int melbo_train_gpu_init(struct melbo_trainer *tr, struct melbo_err *err) {
    struct melbo_train_gpu *gb = melbo_xcalloc(1, sizeof *gb);
    tr->gpu = gb;
    int dev = 0;
    int ret = melbo_gpu_select_device(&dev, err);
    if (ret)
        return ret;
    enum melbo_gpu_dtype dt = tr->p->gpu_bf16 ? MELBO_GPU_BF16 : MELBO_GPU_F32;
    ret = melbo_gpu_model_upload(&gb->g, &tr->model, dt, err);
    if (ret)
        return ret;
    void *x0 = NULL;
    ret = upload_embeddings(tr, gb, &x0, err);
    if (ret == 0)
        ret = melbo_gpu_wave_init(&gb->w, &gb->g, tr->s, tr->t, tr->lens, tr->P, tr->idx,
                                  tr->n_idx, tr->B, x0, GPU_RESERVE_BYTES, err);
    cudaFree(x0);
    if (ret)
        return ret;
    /* host copies of X and Y for calibration and checks */
    size_t nd = (size_t)tr->pseqs.n_tok * tr->d;
    tr->X = melbo_xalloc_f32(nd);
    tr->Y = melbo_xalloc_f32(nd);
    float *tmp = NULL;
    int rc = (int)cudaMalloc((void **)&tmp, nd * 4);
    rc = rc ? rc : melbo_gpu_to_f32(&gb->g, tmp, gb->w.X, nd);
    rc = rc ? rc : (int)cudaMemcpyAsync(tr->X, tmp, nd * 4, cudaMemcpyDeviceToHost, gb->g.stream);
    rc = rc ? rc : (int)cudaMemcpyAsync(tr->Y, gb->w.Y, nd * 4, cudaMemcpyDeviceToHost,
                                        gb->g.stream);
    rc = rc ? rc : (int)cudaStreamSynchronize(gb->g.stream);
    cudaFree(tmp);
    gb->F_host = melbo_xalloc_f32((size_t)tr->B * tr->P);
    struct cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, dev) != cudaSuccess)
        snprintf(prop.name, sizeof prop.name, "device %d", dev);
    snprintf(gb->describe, sizeof gb->describe, "%s (device %d), %s, span %s", prop.name, dev,
             melbo_gpu_dtype_name(dt),
             gb->w.span.mode == MELBO_GPU_SPAN_SAVE ? "saved" : "recomputed");
    return melbo_gpu_err(err, rc, "copying X and Y to the host");
}

void melbo_train_gpu_free(struct melbo_trainer *tr) {
    struct melbo_train_gpu *gb = tr->gpu;
    if (gb == NULL)
        return;
    melbo_gpu_wave_free(&gb->w);
    melbo_gpu_model_free(&gb->g);
    free(gb->F_host);
    free(gb);
    tr->gpu = NULL;
}

const void *melbo_train_gpu_for_generation(struct melbo_trainer *tr) {
    struct melbo_train_gpu *gb = tr->gpu;
    const struct melbo_gpu_model *g = &gb->g;
    melbo_gpu_wave_free(&gb->w);
    if (g->tp_size != 1 || g->layer_begin != 0 || g->layer_end != g->cfg.n_layers || !g->embed ||
        !g->lm_head)
        return NULL;
    return g;
}

const char *melbo_train_gpu_describe(const struct melbo_trainer *tr) {
    return tr->gpu ? tr->gpu->describe : "cpu";
}

void melbo_train_gpu_objective(struct melbo_trainer *tr, const float *theta, int Bw, int k0,
                               int k1, double *Fd, float *grad) {
    struct melbo_train_gpu *gb = tr->gpu;
    struct melbo_gpu_wave *w = &gb->w;
    cudaStream_t st = gb->g.stream;
    size_t Bd = (size_t)Bw * tr->d;
    int rc = (int)cudaMemcpyAsync(w->theta, theta, Bd * 4, cudaMemcpyHostToDevice, st);
    rc = rc ? rc : melbo_gpu_wave_batch(w, Bw, k0, k1);
    rc = rc ? rc : melbo_gpu_wave_step(w, tr->p->p, tr->p->q, tr->p->loss_axis);
    rc = rc ? rc : (int)cudaMemcpyAsync(grad, w->grad, Bd * 4, cudaMemcpyDeviceToHost, st);
    if (rc == 0 && k1 > k0)
        rc = (int)cudaMemcpyAsync(gb->F_host, w->F, sizeof(float) * (size_t)(k1 - k0),
                                  cudaMemcpyDeviceToHost, st);
    rc = rc ? rc : (int)cudaStreamSynchronize(st);
    if (rc)
        gpu_fatal(tr, rc, "a training step");
    for (int k = k0; k < k1; k++)
        Fd[k / tr->P] += gb->F_host[k - k0];
}
