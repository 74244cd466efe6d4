/*
 * rank/backend.h - the one interface between MELBO and the device it runs on (the manual).
 *
 * Training (rank/train/) and generation (rank/generate/) ask a backend for four things and call
 * nothing else of rank/cpu/ or rank/gpu/:
 *
 *   prefix          X = hidden_states[s+1] and Y = hidden_states[t] of the packed prompts
 *                   (DESIGN §3), computed once; the backend keeps what its waves need
 *   wave_objective  for this rank's (vector, prompt) pairs of a wave: X + theta_b at every
 *                   position, blocks s+1..t-1, the objective F at layer t (rank/method/objective.h)
 *                   and its gradient backward to X, summed over positions -> F (Bw), grad (Bw, d);
 *                   for adapters (rank/method/adapter.h) X + (alpha/r) B_b A_b u at every
 *                   position and the gradient of both factors
 *   update          one optimiser step of the wave (DESIGN §4 "Optimiser, per wave")
 *   decoder         a KV-cached decoder over slots: init, forward a batch of runs, reset a slot,
 *                   free (the contract of melbo_cpu_decoder_forward, rank/cpu/decode.h)
 *
 * In the manner of ggml's struct ggml_backend_i: a table of function pointers (struct
 * melbo_backend_i) and an opaque state (ctx) make a struct melbo_backend; callers use the
 * melbo_backend_* wrappers below, never the table. Implementations:
 *
 *   rank/cpu/backend.h  fp32 on the host model (rank/cpu/wave.c, rank/cpu/decode.c)
 *   rank/gpu/backend.h  the CUDA backend (rank/gpu/wave.c, rank/gpu/decode.c); built only with
 *                       CUDA
 *
 * rank/backend.c is the only file that knows which backends a build has: melbo_backend_open
 * chooses one from --device, and melbo_backend_bench runs `melbo-rank bench` where a GPU backend
 * exists.
 *
 * Communication stays outside: a backend computes this rank's share (its tensor-parallel slice
 * of the model, the pairs [k0, k1) it is given) and the caller all-reduces the data-parallel sum.
 * Tensor-parallel sums inside the span are the model's own (struct melbo_tp_reduce).
 *
 * Errors: functions returning int give 0 or a negative MELBO_E* code with err filled. Device
 * failures in the middle of training (wave_objective) are fatal: the message names the failure
 * and the job ends (MPI_Abort through nccl/comm.h under MPI; abort() standalone).
 */
#ifndef MELBO_RANK_BACKEND_H
#define MELBO_RANK_BACKEND_H

#include <stdint.h>

#include "common/err.h"
#include "rank/model/config.h"
#include "rank/model/model.h"
#include "rank/method/objective.h"
#include "rank/method/optim.h"
#include "rank/method/prompts.h"

#ifdef __cplusplus
extern "C" {
#endif

struct melbo_comm;
struct melbo_adapter_shape;

/* What training asks of a backend's prefix: the prompts, the span and the objective. */
struct melbo_train_task {
    const struct melbo_prompts *prompts; // borrowed until train_end or free
    int source, target;                  // s, t: the span is blocks s+1..t-1
    int cap_B;                           // the most vectors a wave holds
    double p, q;                         // the objective's exponents
    enum melbo_loss_axis axis;
    const struct melbo_adapter_shape *adapter; // adapters of this shape, NULL for vectors;
                                               // borrowed until train_end or free
};

/*
 * The table every backend fills. ctx is the implementation's state (struct melbo_backend.ctx).
 * A member marked (optional) may be NULL; the wrappers then do nothing. Every other member is
 * required.
 */
struct melbo_backend_i {
    /* A short description for the log, e.g. "NVIDIA H100 80GB HBM3 (device 0), bf16, span
     * saved". The string belongs to the backend and lives until free. */
    const char *(*describe)(void *ctx);

    /* ---- training ------------------------------------------------------------------------ */

    /*
     * Readies training on task->prompts and computes the prefix into X and Y ((n_tok, d) host
     * fp32 arrays the caller allocated, n_tok = prompts->seqs.n_tok): X = the residual after
     * block s (hidden_states[s+1]), Y = blocks s+1..t-1 on X (hidden_states[t]), unsteered.
     * Called once per backend, before any wave_objective. task itself is read during the call
     * only; the backend may read task->prompts, X and Y until train_end or free, so the caller
     * keeps them unchanged until then. Returns 0 or an error (e.g. device memory); after an error
     * only free may be called.
     */
    int (*prefix)(void *ctx, const struct melbo_train_task *task, float *X, float *Y,
                  struct melbo_err *err);

    /*
     * The objective and its gradient for the (vector, prompt) pairs [k0, k1) of a wave of Bw
     * vectors (Bw <= cap_B; pair k = b * P + i is prompt i steered by vector b): theta (Bw, d)
     * host. F (Bw) host is overwritten with, for each vector b, the sum of F over the given
     * pairs of b (0 where there are none); grad (Bw, d) host with the sum over those pairs and
     * every position of d(-F)/dX, i.e. d(-F)/dtheta_b. k0 == k1 is allowed (all zeros). No
     * communication between data-parallel ranks. Device errors are fatal (see above).
     *
     * Adapters (task->adapter): theta and grad are (Bw, w) flat adapter rows (w =
     * melbo_adapter_width). Only the columns of A that this rank's MLP slice holds get their
     * gradient (the others are left 0: the caller sums A's gradient over the tensor-parallel
     * group); B's gradient is whole on every rank. A backend that cannot train adapters refuses
     * them in prefix.
     */
    void (*wave_objective)(void *ctx, const float *theta, int Bw, int k0, int k1, double *F,
                           float *grad);

    /*
     * One optimiser step t (1-based) of the current wave of ws (its wave_B vectors theta, the
     * AMSGrad moments, against the finished vectors ws->vectors[0, n_done)), the gradient in
     * ws->grad (consumed). Must give every rank the same bits as melbo_wave_update
     * (rank/method/optim.h), the reference. Does not advance ws->wave_step.
     */
    void (*update)(void *ctx, struct melbo_wave_state *ws, int t, const struct melbo_optim *o);

    /* (optional) Training is over: releases what prefix allocated (the GPU's wave buffers make
     * room for the decoder's cache). wave_objective may not be called afterwards. */
    void (*train_end)(void *ctx);

    /* ---- generation ---------------------------------------------------------------------- */

    /*
     * A decoder of n_slots sequences of up to cap positions each, at most cap_tok tokens per
     * forward, adding the steering vector of a slot after block source_layer (-1: never), or
     * with adapter (not NULL: adapters of this shape, borrowed until decoder_free) a slot's
     * adapter's term (alpha/r) B A u to that block's output. It runs on the device when the
     * device holds the whole model (and can apply adapters), else on the host model; the
     * caller cannot tell. *dec receives the decoder's state (owned by the backend until
     * decoder_free). On failure nothing is left to free. Needs a model with every block, the
     * embedding and the head loaded.
     */
    int (*decoder_init)(void *ctx, int n_slots, int cap, int cap_tok, int source_layer,
                        const struct melbo_adapter_shape *adapter, void **dec,
                        struct melbo_err *err);

    /*
     * melbo_cpu_decoder_forward's contract (rank/cpu/decode.h): n_runs runs of tokens (host,
     * packed run after run; run r appends run_len[r] tokens to slot slot[r]); steer (n_slots)
     * host vectors (d) or NULL; adapter (n_slots) host adapter rows or NULL (a decoder
     * initialised with an adapter shape only); logits (n_runs, V) host fp32 at each run's last
     * token. Returns
     * 0, or MELBO_ERANGE when a slot would pass cap positions, or another error naming the
     * device failure. A sequence's numbers never depend on its batch-mates.
     */
    int (*decoder_forward)(void *ctx, void *dec, const int32_t *tokens, int n_runs, const int *slot,
                           const int *run_len, const float *const *steer,
                           const float *const *adapter, float *logits, struct melbo_err *err);

    /* Forgets a slot's tokens (the slot can take a new sequence). */
    void (*decoder_reset)(void *ctx, void *dec, int slot);

    /* Frees a decoder of decoder_init. */
    void (*decoder_free)(void *ctx, void *dec);

    /* ---- lifetime ------------------------------------------------------------------------ */

    /* Frees ctx and everything the backend holds (device memory included). */
    void (*free)(void *ctx);
};

/* A backend: its table and its state. Zeroed, it is "not open" (melbo_backend_free is safe). */
struct melbo_backend {
    const struct melbo_backend_i *iface; // static table of the implementation, NULL when closed
    void *ctx;                           // the implementation's state, owned
    const struct melbo_model *host;      // the host model it was opened on, borrowed
    int device;                          // MELBO_DEVICE_CPU or MELBO_DEVICE_CUDA (params.h)
};

/* ---- choosing a backend (rank/backend.c) ---------------------------------------------------- */

/* --device: AUTO -> CUDA when this build has the CUDA backend and a device is visible, else
 * CPU; CUDA in a build without the backend is refused with a message. */
int melbo_device_resolve(int *device, struct melbo_err *err);

/*
 * Opens the backend for device (MELBO_DEVICE_*; AUTO is resolved here) on host, the model as
 * loaded on this rank (its tensor-parallel slice and the blocks it holds). bf16 chooses the GPU's
 * storage dtype (1 bf16, 0 fp32; the CPU is fp32 always). The CPU backend borrows host; the GPU
 * backend copies it to the device once and keeps borrowing it (its host-side fallbacks), so host
 * must outlive the backend. comm (NULL: one process) is used only to end the job on a fatal
 * device error. On failure be is left closed.
 */
int melbo_backend_open(struct melbo_backend *be, int device, int bf16,
                       const struct melbo_model *host, struct melbo_comm *comm,
                       struct melbo_err *err);
void melbo_backend_free(struct melbo_backend *be);

/* ---- the interface, called through the table (contracts at struct melbo_backend_i) ---------- */

const char *melbo_backend_describe(const struct melbo_backend *be);
int melbo_backend_prefix(struct melbo_backend *be, const struct melbo_train_task *task, float *X,
                         float *Y, struct melbo_err *err);
void melbo_backend_wave_objective(struct melbo_backend *be, const float *theta, int Bw, int k0,
                                  int k1, double *F, float *grad);
void melbo_backend_update(struct melbo_backend *be, struct melbo_wave_state *ws, int t,
                          const struct melbo_optim *o);
void melbo_backend_train_end(struct melbo_backend *be);

/* A decoder of a backend (borrowed: the backend must outlive it). */
struct melbo_backend_decoder {
    struct melbo_backend *be;
    void *state; // the backend's, NULL when not open
};

int melbo_backend_decoder_init(struct melbo_backend_decoder *dec, struct melbo_backend *be,
                               int n_slots, int cap, int cap_tok, int source_layer,
                               const struct melbo_adapter_shape *adapter, struct melbo_err *err);
int melbo_backend_decoder_forward(struct melbo_backend_decoder *dec, const int32_t *tokens,
                                  int n_runs, const int *slot, const int *run_len,
                                  const float *const *steer, const float *const *adapter,
                                  float *logits, struct melbo_err *err);
void melbo_backend_decoder_reset(struct melbo_backend_decoder *dec, int slot);
/* Safe on a decoder that is not open. */
void melbo_backend_decoder_free(struct melbo_backend_decoder *dec);

/* ---- the GPU benchmark ---------------------------------------------------------------------- */

struct melbo_bench_opts; // rank/gpu/bench.h

/* Runs `melbo-rank bench` (rank/gpu/bench.h) on a model of config cfg, printing its results;
 * MELBO_EUNSUPPORTED in a build without CUDA. */
int melbo_backend_bench(const struct melbo_bench_opts *o, const struct melbo_model_config *cfg,
                        struct melbo_err *err);

#ifdef __cplusplus
}
#endif
#endif
