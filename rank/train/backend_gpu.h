/*
 * rank/train/backend_gpu.h - the trainer's CUDA backend (built only with CUDA; rank/gpu/).
 *
 * With --device cuda the trainer keeps its host model (for calibration and the CPU-side
 * generation fallback) and uploads it once; the prefix and every step's span forward, objective,
 * backward and sum over positions run on the GPU; the optimiser update stays on the host, the
 * same code as the CPU backend, so the two backends differ only in the span's arithmetic.
 */
#ifndef MELBO_RANK_TRAIN_BACKEND_GPU_H
#define MELBO_RANK_TRAIN_BACKEND_GPU_H

#include "common/err.h"

#ifdef __cplusplus
extern "C" {
#endif

struct melbo_trainer;

/* Uploads tr->model in the dtype tr->p asks for, computes the prefix on the device and fills the
 * host copies tr->X and tr->Y. Needs the prompts loaded. */
int melbo_train_gpu_init(struct melbo_trainer *tr, struct melbo_err *err);
void melbo_train_gpu_free(struct melbo_trainer *tr);

/* Pairs [k0, k1) of a wave of Bw vectors theta (Bw, d) host: Fd[b] += F of each pair of vector b
 * (Fd (Bw) zeroed by the caller), grad (Bw, d) host = this rank's share of d(-F)/dtheta. A CUDA
 * error is fatal (the message names it; MPI_Abort under MPI). */
void melbo_train_gpu_objective(struct melbo_trainer *tr, const float *theta, int Bw, int k0,
                               int k1, double *Fd, float *grad);

/* After training: releases the training buffers and returns the device model to generate on
 * (a struct melbo_gpu_model *, for melbo_gen_settings.gpu), or NULL when the device does not
 * hold the whole model (tensor parallelism, no head): then generation runs on the CPU. */
const void *melbo_train_gpu_for_generation(struct melbo_trainer *tr);

/* The device name and dtype, for the log ("NVIDIA H100 80GB HBM3, bf16"). */
const char *melbo_train_gpu_describe(const struct melbo_trainer *tr);

#ifdef __cplusplus
}
#endif
#endif
