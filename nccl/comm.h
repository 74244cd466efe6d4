/*
 * nccl/comm.h - the collectives a rank needs, behind one C interface.
 *
 * The world is tp x dp ranks. Tensor-parallel groups are neighbouring ranks (world rank
 * r is TP rank r % tp of TP group r / tp); data-parallel groups join the ranks with the same TP
 * rank (DP rank r / tp). Two implementations:
 *   MELBO_COMM_MPI   host buffers through MPI (CPU ranks; and GPU buffers staged through the host,
 *                    so several ranks can share one GPU to test the sharded CUDA path)
 *   MELBO_COMM_NCCL  device buffers through NCCL (unique id over MPI, ncclCommSplit, its own stream
 *                    ordered after compute by events, ncclCommGetAsyncError polled so a dead peer
 *                    becomes an abort); built only with CUDA and NCCL
 *
 * Every call is collective over the group it names. Failures are fatal: the rank prints what
 * failed, where and which rank, and calls MPI_Abort (never exit(): peers would hang). A rank
 * that disappears is named by the survivors (nccl/health.c) rather than leaving them blocked.
 */
#ifndef MELBO_NCCL_COMM_H
#define MELBO_NCCL_COMM_H

#include <stddef.h>

#include "common/err.h"

#ifdef __cplusplus
extern "C" {
#endif

enum melbo_comm_kind {
    MELBO_COMM_MPI = 0,
    MELBO_COMM_NCCL = 1,
};

enum melbo_comm_dtype {
    MELBO_COMM_F32 = 0,
    MELBO_COMM_BF16 = 1, // summed in fp32, rounded to nearest even once per reduction step
    MELBO_COMM_I32 = 2,
    MELBO_COMM_F64 = 3,
};

enum melbo_comm_group {
    MELBO_COMM_WORLD = 0,
    MELBO_COMM_TP = 1,
    MELBO_COMM_DP = 2,
};

struct melbo_comm;

/*
 * Joins the MPI world (MPI must be initialised) with a tp x dp layout. The layout is checked
 * before anything else: world size must equal tp * dp. Returns 0 or MELBO_EINVAL with a message
 * (the caller aborts every rank). *out is owned by the caller (melbo_comm_free).
 */
int melbo_comm_init(struct melbo_comm **out, int tp, int dp, enum melbo_comm_kind kind,
                    struct melbo_err *err);
void melbo_comm_free(struct melbo_comm *c);

int melbo_comm_rank(const struct melbo_comm *c);      // world rank
int melbo_comm_size(const struct melbo_comm *c);      // world size
int melbo_comm_tp_rank(const struct melbo_comm *c);
int melbo_comm_tp_size(const struct melbo_comm *c);
int melbo_comm_dp_rank(const struct melbo_comm *c);
int melbo_comm_dp_size(const struct melbo_comm *c);
enum melbo_comm_kind melbo_comm_kind(const struct melbo_comm *c);

/* In-place sum of count elements of buf over the group. */
void melbo_comm_allreduce(struct melbo_comm *c, enum melbo_comm_group g, void *buf, size_t count,
                          enum melbo_comm_dtype t);
/* bytes of buf from the group's rank root to every other rank of the group. */
void melbo_comm_bcast(struct melbo_comm *c, enum melbo_comm_group g, void *buf, size_t bytes,
                      int root);
void melbo_comm_barrier(struct melbo_comm *c, enum melbo_comm_group g);

/*
 * Variable-length gather to world rank 0 over the DP group of TP rank 0 ranks: every DP group's
 * TP-rank-0 member sends bytes (its buffer); on world rank 0, *out receives all of them
 * concatenated in DP order (malloc'ed, caller frees) and lens[dp] each length. Other ranks pass
 * out = NULL. Ranks with TP rank != 0 call it too (they send nothing).
 */
void melbo_comm_gather_dp(struct melbo_comm *c, const void *buf, size_t bytes, void **out,
                          size_t *lens);

/* The sum over the tensor-parallel group of ctx (a struct melbo_comm *) of n floats in place:
 * the model's partial-sum reducer (struct melbo_model's reduce) on a TP rank. */
void melbo_comm_tp_reduce(void *ctx, float *buf, size_t n);

/* 1 when this process was started by an MPI launcher (mpirun, or srun with PMIx/PMI): it must
 * join the world (MPI_Init) before making a communicator. */
int melbo_comm_launched(void);

/* Prints "melbo: rank R: msg" and aborts every rank of the job. Never returns. */
void melbo_comm_abort(struct melbo_comm *c, const char *msg) __attribute__((noreturn));

/* Achieved bandwidth conventions of nccl-tests for an all-reduce of bytes over n ranks. */
double melbo_allreduce_busbw(double bytes, double seconds, int n);

#ifdef __cplusplus
}
#endif
#endif
