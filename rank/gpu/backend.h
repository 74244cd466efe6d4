/*
 * rank/gpu/backend.h - the CUDA backend of rank/backend.h (built only with CUDA).
 *
 * The host model is copied to the device once, in bf16 or fp32. The prefix and every step's span
 * forward, objective, backward and sum over positions run on the device (rank/gpu/wave.h) with
 * one synchronisation per step, to copy the gradient and the objective to the host. The
 * optimiser update runs the CPU's code on the host arrays (melbo_wave_update), so the two
 * backends differ only in the span's arithmetic. Generation decodes on the device
 * (rank/gpu/decode.h) when it holds the whole model (tp = 1, every block, embedding and head),
 * else on the host model with the CPU decoder.
 */
#ifndef MELBO_RANK_GPU_BACKEND_H
#define MELBO_RANK_GPU_BACKEND_H

#include "rank/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Selects this process's device (melbo_gpu_select_device) and copies host (borrowed: it must
 * outlive the backend) to it in bf16 (bf16 = 1) or fp32. comm (NULL: one process) ends the job
 * when a training step fails on the device. On failure be is left closed.
 */
int melbo_gpu_backend_open(struct melbo_backend *be, const struct melbo_model *host, int bf16,
                           struct melbo_comm *comm, struct melbo_err *err);

/* CUDA devices visible to this process (0 when the runtime reports none or fails). */
int melbo_gpu_device_count(void);

#ifdef __cplusplus
}
#endif
#endif
