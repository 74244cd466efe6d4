/*
 * nccl/comm_impl.h - the inside of struct melbo_comm, shared by the MPI and NCCL implementations.
 */
#ifndef MELBO_NCCL_COMM_IMPL_H
#define MELBO_NCCL_COMM_IMPL_H

#define OMPI_SKIP_MPICXX 1 /* C bindings only, also from the .cu file */
#include <mpi.h>

#include "nccl/comm.h"

#ifdef __cplusplus
extern "C" {
#endif

struct melbo_nccl_state; /* nccl/comm_nccl.cu: communicators, stream, events */

struct melbo_comm {
    enum melbo_comm_kind kind;
    int rank, size, tp, dp, tp_rank, dp_rank;
    MPI_Comm world, tp_comm, dp_comm;
    MPI_Op bf16_sum;                 // user op: bf16 sum through fp32
    struct melbo_nccl_state *nccl;   // NULL for MELBO_COMM_MPI
};

/* NCCL side (nccl/comm_nccl.cu); only linked when MELBO_HAVE_NCCL. */
int melbo__nccl_init(struct melbo_comm *c, struct melbo_err *err);
void melbo__nccl_free(struct melbo_comm *c);
void melbo__nccl_allreduce(struct melbo_comm *c, enum melbo_comm_group g, void *buf, size_t count,
                           enum melbo_comm_dtype t);
void melbo__nccl_bcast(struct melbo_comm *c, enum melbo_comm_group g, void *buf, size_t bytes, int root);

/* Liveness of the job's ranks (nccl/health.c). */
void melbo__health_init(struct melbo_comm *c);

#ifdef __cplusplus
}
#endif
#endif
