/*
 * rank/gpu/prof.h - where the GPU time of a step goes: events recorded between the stages of
 * the span, the objective and the update, summed per stage name (melbo-rank bench --profile).
 * Off by default; a mark then costs one branch. One stream, one thread.
 */
#ifndef MELBO_RANK_GPU_PROF_H
#define MELBO_RANK_GPU_PROF_H

#include <stdio.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

extern int melbo_gpu_prof_on;

/* Starts recording on stream s (the stream every later mark is queued on). */
void melbo_gpu_prof_start(cudaStream_t s);
/* The work queued since the previous mark (or the start) is attributed to stage, a string
 * with static storage. */
void melbo_gpu_prof_mark(const char *stage);
/* Waits for the stream, prints per-stage milliseconds divided by n_steps and their shares to f,
 * and stops recording. */
void melbo_gpu_prof_stop_print(FILE *f, int n_steps);

#define MELBO_GPU_PROF(stage)                                                                      \
    do {                                                                                           \
        if (melbo_gpu_prof_on)                                                                     \
            melbo_gpu_prof_mark(stage);                                                            \
    } while (0)

#ifdef __cplusplus
}
#endif
#endif
