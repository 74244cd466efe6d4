/*
 * nccl/comm_nccl.cu - the collectives over NCCL on device buffers (nccl/comm.h).
 *
 * Bootstrap: world rank 0 creates the unique id, MPI broadcasts it, every rank joins the world
 * communicator and splits it (ncclCommSplit) into its TP and DP groups. Collectives run on
 * NCCL's own stream, ordered after the compute stream by an event (never by host
 * synchronisation), and each call returns once the result is complete. While waiting, the rank
 * polls ncclCommGetAsyncError: a dead peer becomes ncclCommAbort + MPI_Abort with a message,
 * never a hang. The GPU is picked by the rank's index among the ranks of its node
 * (MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)).
 */
#include <cuda_runtime.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "nccl/comm_impl.h"

struct melbo_nccl_state {
    ncclComm_t world, tp, dp;
    cudaStream_t stream;        // NCCL's stream
    cudaStream_t compute;       // the stream compute runs on (default stream)
    cudaEvent_t ready;          // recorded on compute, waited on by stream
    int device;
};

#define NCCL_CHECK(c, call)                                                              \
    do {                                                                                 \
        ncclResult_t r_ = (call);                                                        \
        if (r_ != ncclSuccess && r_ != ncclInProgress) {                                 \
            char m_[512];                                                                \
            snprintf(m_, sizeof m_, "%s failed at %s:%d: %s", #call, __FILE__, __LINE__,  \
                     ncclGetErrorString(r_));                                            \
            nccl_fatal(c, m_);                                                           \
        }                                                                                \
    } while (0)

#define CUDA_CHECK(c, call)                                                              \
    do {                                                                                 \
        cudaError_t e_ = (call);                                                         \
        if (e_ != cudaSuccess) {                                                         \
            char m_[512];                                                                \
            snprintf(m_, sizeof m_, "%s failed at %s:%d: %s", #call, __FILE__, __LINE__,  \
                     cudaGetErrorString(e_));                                            \
            nccl_fatal(c, m_);                                                           \
        }                                                                                \
    } while (0)

static void nccl_fatal(struct melbo_comm *c, const char *msg) {
    if (c && c->nccl) {
        if (c->nccl->tp) ncclCommAbort(c->nccl->tp);
        if (c->nccl->dp) ncclCommAbort(c->nccl->dp);
        if (c->nccl->world) ncclCommAbort(c->nccl->world);
    }
    melbo_comm_abort(c, msg);
}

static ncclComm_t nccl_group(struct melbo_comm *c, enum melbo_comm_group g) {
    return g == MELBO_COMM_TP ? c->nccl->tp : g == MELBO_COMM_DP ? c->nccl->dp : c->nccl->world;
}

/* Waits for stream, polling every communicator for asynchronous errors (a lost peer). */
static void nccl_wait(struct melbo_comm *c) {
    struct melbo_nccl_state *s = c->nccl;
    for (;;) {
        cudaError_t q = cudaStreamQuery(s->stream);
        if (q == cudaSuccess)
            return;
        if (q != cudaErrorNotReady)
            CUDA_CHECK(c, q);
        ncclComm_t comms[3] = {s->world, s->tp, s->dp};
        for (int i = 0; i < 3; i++) {
            ncclResult_t a = ncclSuccess;
            if (comms[i] && ncclCommGetAsyncError(comms[i], &a) == ncclSuccess && a != ncclSuccess &&
                a != ncclInProgress) {
                char m[256];
                snprintf(m, sizeof m, "NCCL reported an asynchronous error (%s): a peer rank is gone "
                                      "or the network failed",
                         ncclGetErrorString(a));
                nccl_fatal(c, m);
            }
        }
        usleep(50);
    }
}

extern "C" int melbo__nccl_init(struct melbo_comm *c, struct melbo_err *err) {
    struct melbo_nccl_state *s = (struct melbo_nccl_state *)calloc(1, sizeof *s);
    c->nccl = s;
    MPI_Comm node;
    int local = 0, n_dev = 0;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &local);
    MPI_Comm_free(&node);
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
        free(s);
        c->nccl = NULL;
        return melbo_err_set(err, MELBO_EUNSUPPORTED, "NCCL collectives need a GPU; none is visible");
    }
    s->device = local % n_dev;
    CUDA_CHECK(c, cudaSetDevice(s->device));
    ncclUniqueId id;
    if (c->rank == 0)
        NCCL_CHECK(c, ncclGetUniqueId(&id));
    MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD);
    NCCL_CHECK(c, ncclCommInitRank(&s->world, c->size, id, c->rank));
    NCCL_CHECK(c, ncclCommSplit(s->world, c->rank / c->tp, c->tp_rank, &s->tp, NULL));
    NCCL_CHECK(c, ncclCommSplit(s->world, c->tp_rank, c->dp_rank, &s->dp, NULL));
    CUDA_CHECK(c, cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking));
    CUDA_CHECK(c, cudaEventCreateWithFlags(&s->ready, cudaEventDisableTiming));
    s->compute = 0;
    return 0;
}

extern "C" void melbo__nccl_free(struct melbo_comm *c) {
    struct melbo_nccl_state *s = c->nccl;
    if (s->tp) ncclCommDestroy(s->tp);
    if (s->dp) ncclCommDestroy(s->dp);
    if (s->world) ncclCommDestroy(s->world);
    cudaEventDestroy(s->ready);
    cudaStreamDestroy(s->stream);
    free(s);
    c->nccl = NULL;
}

static ncclDataType_t nccl_type(enum melbo_comm_dtype t) {
    switch (t) {
    case MELBO_COMM_BF16: return ncclBfloat16;
    case MELBO_COMM_I32: return ncclInt32;
    case MELBO_COMM_F64: return ncclFloat64;
    default: return ncclFloat32;
    }
}

extern "C" void melbo__nccl_allreduce(struct melbo_comm *c, enum melbo_comm_group g, void *buf,
                                      size_t count, enum melbo_comm_dtype t) {
    struct melbo_nccl_state *s = c->nccl;
    CUDA_CHECK(c, cudaEventRecord(s->ready, s->compute));
    CUDA_CHECK(c, cudaStreamWaitEvent(s->stream, s->ready, 0));
    NCCL_CHECK(c, ncclGroupStart());
    NCCL_CHECK(c, ncclAllReduce(buf, buf, count, nccl_type(t), ncclSum, nccl_group(c, g), s->stream));
    NCCL_CHECK(c, ncclGroupEnd());
    nccl_wait(c);
}

extern "C" void melbo__nccl_bcast(struct melbo_comm *c, enum melbo_comm_group g, void *buf,
                                  size_t bytes, int root) {
    struct melbo_nccl_state *s = c->nccl;
    CUDA_CHECK(c, cudaEventRecord(s->ready, s->compute));
    CUDA_CHECK(c, cudaStreamWaitEvent(s->stream, s->ready, 0));
    NCCL_CHECK(c, ncclBroadcast(buf, buf, bytes, ncclUint8, root, nccl_group(c, g), s->stream));
    nccl_wait(c);
}
