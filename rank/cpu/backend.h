/*
 * rank/cpu/backend.h - the CPU backend of rank/backend.h: fp32 on the host model, training
 * through rank/cpu/wave.h and generation through the KV-cached decoder of rank/cpu/decode.h.
 */
#ifndef MELBO_RANK_CPU_BACKEND_H
#define MELBO_RANK_CPU_BACKEND_H

#include "rank/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Opens the CPU backend on host (borrowed: it must outlive the backend). Cannot fail. */
void melbo_cpu_backend_open(struct melbo_backend *be, const struct melbo_model *host);

#ifdef __cplusplus
}
#endif
#endif
