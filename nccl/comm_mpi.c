/*
 * nccl/comm_mpi.c - the collectives over MPI (host buffers), and the group layout shared with the
 * NCCL implementation.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/bf16.h" // defines: melbo_bf16_to_f32, melbo_f32_to_bf16
#include "common/mem.h"
#include "nccl/comm_impl.h"

static void bf16_sum(void *in, void *inout, int *len, MPI_Datatype *dt) {
    (void)dt;
    const uint16_t *a = in;
    uint16_t *b = inout;
    for (int i = 0; i < *len; i++)
        b[i] = melbo_f32_to_bf16(melbo_bf16_to_f32(a[i]) + melbo_bf16_to_f32(b[i]));
}

static void check_mpi(struct melbo_comm *c, int rc, const char *what) {
    if (rc == MPI_SUCCESS)
        return;
    char msg[MPI_MAX_ERROR_STRING + 128], es[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, es, &len);
    snprintf(msg, sizeof msg, "%s failed: %s", what, es);
    melbo_comm_abort(c, msg);
}

int melbo_comm_init(struct melbo_comm **out, int tp, int dp, enum melbo_comm_kind kind,
                    struct melbo_err *err) {
    struct melbo_comm *c = melbo_xcalloc(1, sizeof *c);
    c->kind = kind;
    c->world = MPI_COMM_WORLD;
    MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &c->size);
    if (tp < 1 || dp < 1 || tp * dp != c->size) {
        int r = melbo_err_set(err, MELBO_EINVAL,
                              "the job has %d ranks but --tp %d x --dp %d = %d (start it with "
                              "mpirun -np %d, or change --tp/--dp)",
                              c->size, tp, dp, tp * dp, tp * dp);
        free(c);
        return r;
    }
    c->tp = tp;
    c->dp = dp;
    c->tp_rank = c->rank % tp;
    c->dp_rank = c->rank / tp;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_split(MPI_COMM_WORLD, c->rank / tp, c->tp_rank, &c->tp_comm);
    MPI_Comm_split(MPI_COMM_WORLD, c->tp_rank, c->dp_rank, &c->dp_comm);
    MPI_Comm_set_errhandler(c->tp_comm, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(c->dp_comm, MPI_ERRORS_RETURN);
    MPI_Op_create(bf16_sum, 1, &c->bf16_sum);
    melbo__health_init(c);
    if (kind == MELBO_COMM_NCCL) {
#ifdef MELBO_HAVE_NCCL
        int r = melbo__nccl_init(c, err);
        if (r) {
            melbo_comm_free(c);
            return r;
        }
#else
        melbo_comm_free(c);
        return melbo_err_set(err, MELBO_EUNSUPPORTED,
                             "this melbo-rank was built without NCCL (use the MPI collectives)");
#endif
    }
    *out = c;
    return 0;
}

void melbo_comm_free(struct melbo_comm *c) {
    if (c == NULL)
        return;
#ifdef MELBO_HAVE_NCCL
    if (c->nccl)
        melbo__nccl_free(c);
#endif
    MPI_Op_free(&c->bf16_sum);
    MPI_Comm_free(&c->tp_comm);
    MPI_Comm_free(&c->dp_comm);
    free(c);
}

int melbo_comm_rank(const struct melbo_comm *c) { return c->rank; }
int melbo_comm_size(const struct melbo_comm *c) { return c->size; }
int melbo_comm_tp_rank(const struct melbo_comm *c) { return c->tp_rank; }
int melbo_comm_tp_size(const struct melbo_comm *c) { return c->tp; }
int melbo_comm_dp_rank(const struct melbo_comm *c) { return c->dp_rank; }
int melbo_comm_dp_size(const struct melbo_comm *c) { return c->dp; }
enum melbo_comm_kind melbo_comm_kind(const struct melbo_comm *c) { return c->kind; }

static MPI_Comm group_comm(const struct melbo_comm *c, enum melbo_comm_group g) {
    return g == MELBO_COMM_TP ? c->tp_comm : g == MELBO_COMM_DP ? c->dp_comm : c->world;
}

static int group_size(const struct melbo_comm *c, enum melbo_comm_group g) {
    return g == MELBO_COMM_TP ? c->tp : g == MELBO_COMM_DP ? c->dp : c->size;
}

void melbo_comm_tp_reduce(void *ctx, float *buf, size_t n) {
    melbo_comm_allreduce(ctx, MELBO_COMM_TP, buf, n, MELBO_COMM_F32);
}

int melbo_comm_launched(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK") ||
           getenv("PMI_SIZE");
}

void melbo_comm_allreduce(struct melbo_comm *c, enum melbo_comm_group g, void *buf, size_t count,
                          enum melbo_comm_dtype t) {
    if (group_size(c, g) == 1 || count == 0)
        return;
#ifdef MELBO_HAVE_NCCL
    if (c->kind == MELBO_COMM_NCCL) {
        melbo__nccl_allreduce(c, g, buf, count, t);
        return;
    }
#endif
    MPI_Datatype dt = t == MELBO_COMM_F32 ? MPI_FLOAT : t == MELBO_COMM_I32 ? MPI_INT
                    : t == MELBO_COMM_F64 ? MPI_DOUBLE : MPI_UINT16_T;
    MPI_Op op = t == MELBO_COMM_BF16 ? c->bf16_sum : MPI_SUM;
    /* MPI counts are int: reduce in chunks */
    size_t es = t == MELBO_COMM_F64 ? 8 : t == MELBO_COMM_BF16 ? 2 : 4;
    for (size_t off = 0; off < count; off += (size_t)1 << 30) {
        size_t n = count - off < ((size_t)1 << 30) ? count - off : ((size_t)1 << 30);
        check_mpi(c, MPI_Allreduce(MPI_IN_PLACE, (char *)buf + off * es, (int)n, dt, op, group_comm(c, g)),
                  g == MELBO_COMM_TP ? "all-reduce over the tensor-parallel group"
                  : g == MELBO_COMM_DP ? "all-reduce over the data-parallel group"
                                       : "all-reduce over the world");
    }
}

void melbo_comm_bcast(struct melbo_comm *c, enum melbo_comm_group g, void *buf, size_t bytes,
                      int root) {
    if (group_size(c, g) == 1 || bytes == 0)
        return;
#ifdef MELBO_HAVE_NCCL
    if (c->kind == MELBO_COMM_NCCL) {
        melbo__nccl_bcast(c, g, buf, bytes, root);
        return;
    }
#endif
    for (size_t off = 0; off < bytes; off += (size_t)1 << 30) {
        size_t n = bytes - off < ((size_t)1 << 30) ? bytes - off : ((size_t)1 << 30);
        check_mpi(c, MPI_Bcast((char *)buf + off, (int)n, MPI_BYTE, root, group_comm(c, g)), "broadcast");
    }
}

void melbo_comm_barrier(struct melbo_comm *c, enum melbo_comm_group g) {
    if (group_size(c, g) > 1)
        check_mpi(c, MPI_Barrier(group_comm(c, g)), "barrier");
}

void melbo_comm_gather_dp(struct melbo_comm *c, const void *buf, size_t bytes, void **out,
                          size_t *lens) {
    /* only TP rank 0 of each DP group takes part; the others are done */
    if (c->tp_rank != 0)
        return;
    int n = c->dp;
    long long mine = (long long)bytes, *all = melbo_xcalloc((size_t)n, sizeof *all);
    check_mpi(c, MPI_Gather(&mine, 1, MPI_LONG_LONG, all, 1, MPI_LONG_LONG, 0, c->dp_comm),
              "gather of result sizes");
    int *counts = melbo_xcalloc((size_t)n, sizeof *counts), *displs = melbo_xcalloc((size_t)n, sizeof *displs);
    long long total = 0;
    for (int i = 0; i < n; i++) {
        if (all[i] > 0x7fffffff)
            melbo_comm_abort(c, "a rank's results exceed 2 GiB");
        counts[i] = (int)all[i];
        displs[i] = (int)total;
        total += all[i];
        if (lens)
            lens[i] = (size_t)all[i];
    }
    void *recv = NULL;
    if (c->dp_rank == 0)
        recv = melbo_xmalloc((size_t)total + 1);
    check_mpi(c, MPI_Gatherv(buf, (int)bytes, MPI_BYTE, recv, counts, displs, MPI_BYTE, 0, c->dp_comm),
              "gather of results");
    if (c->dp_rank == 0 && out)
        *out = recv;
    else
        free(recv);
    free(all);
    free(counts);
    free(displs);
}

void melbo_comm_abort(struct melbo_comm *c, const char *msg) {
    char host[64] = "?";
    gethostname(host, sizeof host - 1);
    fprintf(stderr, "melbo: rank %d on %s: %s\n", c ? c->rank : -1, host, msg);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    _exit(1);
}

double melbo_allreduce_busbw(double bytes, double seconds, int n) {
    double algbw = bytes / seconds;
    return n > 1 ? algbw * 2.0 * (n - 1) / n : algbw;
}
