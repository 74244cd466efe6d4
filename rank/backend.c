/*
 * rank/backend.c - choosing a backend, and the calls through its table (rank/backend.h).
 *
 * The only file of rank/ that knows whether this build has the CUDA backend: the GPU's entry
 * points are taken here, or are NULL in a build without CUDA.
 */
#include "rank/backend.h"

#include <stddef.h>

#include "rank/cpu/backend.h"
#include "rank/gpu/bench.h"
#include "options/train.h"

#ifdef MELBO_HAVE_CUDA
#include "rank/gpu/backend.h"
#define GPU_ENTRY(fn) fn
#else
#define GPU_ENTRY(fn) NULL
#endif

/* The CUDA backend's entry points (rank/gpu/backend.h, rank/gpu/bench.h); NULL without CUDA. */
static int (*const gpu_open)(struct melbo_backend *, const struct melbo_model *, int,
                             struct melbo_comm *,
                             struct melbo_err *) = GPU_ENTRY(melbo_gpu_backend_open);
static int (*const gpu_count)(void) = GPU_ENTRY(melbo_gpu_device_count);
static int (*const gpu_bench)(const struct melbo_bench_opts *, const struct melbo_model_config *,
                              struct melbo_err *) = GPU_ENTRY(melbo_gpu_bench_run);

int melbo_device_resolve(int *device, struct melbo_err *err) {
    if (gpu_open == NULL) {
        if (*device == MELBO_DEVICE_CUDA)
            return melbo_err_set(err, MELBO_EUNSUPPORTED,
                                 "--device cuda: this melbo-rank was built without CUDA "
                                 "(configure on a machine with nvcc, see README)");
        *device = MELBO_DEVICE_CPU;
        return 0;
    }
    if (*device == MELBO_DEVICE_AUTO)
        *device = gpu_count() > 0 ? MELBO_DEVICE_CUDA : MELBO_DEVICE_CPU;
    return 0;
}

int melbo_backend_open(struct melbo_backend *be, int device, int bf16,
                       const struct melbo_model *host, struct melbo_comm *comm,
                       struct melbo_err *err) {
    be->iface = NULL;
    be->ctx = NULL;
    int ret = melbo_device_resolve(&device, err);
    if (ret)
        return ret;
    if (device == MELBO_DEVICE_CUDA) {
        ret = gpu_open(be, host, bf16, comm, err);
    } else {
        (void)bf16;
        (void)comm;
        melbo_cpu_backend_open(be, host);
    }
    if (ret == 0)
        be->device = device;
    return ret;
}

void melbo_backend_free(struct melbo_backend *be) {
    if (be->iface)
        be->iface->free(be->ctx);
    be->iface = NULL;
    be->ctx = NULL;
}

int melbo_backend_bench(const struct melbo_bench_opts *o, const struct melbo_model_config *cfg,
                        struct melbo_err *err) {
    if (gpu_bench == NULL)
        return melbo_err_set(err, MELBO_EUNSUPPORTED,
                             "bench runs on the GPU: this melbo-rank was built without CUDA");
    return gpu_bench(o, cfg, err);
}

/* ---------------------------------------------------------------------------------------------
 * Calls through the table.
 */

const char *melbo_backend_describe(const struct melbo_backend *be) {
    return be->iface->describe(be->ctx);
}

int melbo_backend_prefix(struct melbo_backend *be, const struct melbo_train_task *task, float *X,
                         float *Y, struct melbo_err *err) {
    return be->iface->prefix(be->ctx, task, X, Y, err);
}

void melbo_backend_wave_objective(struct melbo_backend *be, const float *theta, int Bw, int k0,
                                  int k1, double *F, float *grad) {
    be->iface->wave_objective(be->ctx, theta, Bw, k0, k1, F, grad);
}

void melbo_backend_update(struct melbo_backend *be, struct melbo_wave_state *ws, int t,
                          const struct melbo_optim *o) {
    be->iface->update(be->ctx, ws, t, o);
}

void melbo_backend_train_end(struct melbo_backend *be) {
    if (be->iface->train_end)
        be->iface->train_end(be->ctx);
}

int melbo_backend_decoder_init(struct melbo_backend_decoder *dec, struct melbo_backend *be,
                               int n_slots, int cap, int cap_tok, int source_layer,
                               const struct melbo_adapter_shape *adapter, struct melbo_err *err) {
    dec->be = be;
    dec->state = NULL;
    return be->iface->decoder_init(be->ctx, n_slots, cap, cap_tok, source_layer, adapter,
                                   &dec->state, err);
}

int melbo_backend_decoder_forward(struct melbo_backend_decoder *dec, const int32_t *tokens,
                                  int n_runs, const int *slot, const int *run_len,
                                  const float *const *steer, const float *const *adapter,
                                  float *logits, struct melbo_err *err) {
    return dec->be->iface->decoder_forward(dec->be->ctx, dec->state, tokens, n_runs, slot, run_len,
                                           steer, adapter, logits, err);
}

void melbo_backend_decoder_reset(struct melbo_backend_decoder *dec, int slot) {
    dec->be->iface->decoder_reset(dec->be->ctx, dec->state, slot);
}

void melbo_backend_decoder_free(struct melbo_backend_decoder *dec) {
    if (dec->state)
        dec->be->iface->decoder_free(dec->be->ctx, dec->state);
    dec->state = NULL;
}
