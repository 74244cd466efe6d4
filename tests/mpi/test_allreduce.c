/*
 * tests/mpi/test_allreduce.c - the MPI collectives of nccl/comm.h (run under mpirun -np N).
 *
 * Inputs are chosen so every sum is exact (small integers, in f32 and in bf16), so results are
 * compared for equality, on the world, the TP groups and the DP groups of a tp x dp layout. Then
 * bandwidth like nccl-tests: algbw = bytes / time, busbw = algbw * 2 (n - 1) / n.
 *   test_allreduce TP DP
 */
#include <math.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "nccl/comm.h"
#include "rank/model/dtype.h"

static int failures;

static void check(int ok, const char *what, int rank) {
    if (!ok) {
        fprintf(stderr, "FAIL rank %d: %s\n", rank, what);
        failures++;
    }
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int tp = argc > 1 ? atoi(argv[1]) : 1, dp = argc > 2 ? atoi(argv[2]) : 1;
    struct melbo_comm *c;
    struct melbo_err err = {0};
    if (melbo_comm_init(&c, tp, dp, MELBO_COMM_MPI, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    int r = melbo_comm_rank(c), n = melbo_comm_size(c);
    int tr = melbo_comm_tp_rank(c), dr = melbo_comm_dp_rank(c);
    check(r == dr * tp + tr, "layout: world rank = dp_rank * tp + tp_rank", r);

    /* exact f32 sums: element i of rank r holds (r + 1) * (i % 7 + 1) */
    size_t count = 1 << 16;
    float *f = melbo_xalloc_f32(count);
    const enum melbo_comm_group groups[3] = {MELBO_COMM_WORLD, MELBO_COMM_TP, MELBO_COMM_DP};
    for (int gi = 0; gi < 3; gi++) {
        /* members of this rank's group, and their expected sum of (rank + 1) */
        double member_sum = 0;
        for (int q = 0; q < n; q++) {
            int same = gi == 0 || (gi == 1 && q / tp == r / tp) || (gi == 2 && q % tp == r % tp);
            if (same)
                member_sum += q + 1;
        }
        for (size_t i = 0; i < count; i++)
            f[i] = (float)((r + 1) * (int)(i % 7 + 1));
        melbo_comm_allreduce(c, groups[gi], f, count, MELBO_COMM_F32);
        int ok = 1;
        for (size_t i = 0; i < count; i++)
            ok &= f[i] == (float)(member_sum * (double)(i % 7 + 1));
        check(ok, gi == 0 ? "f32 world sum" : gi == 1 ? "f32 TP sum" : "f32 DP sum", r);
        /* bf16: small integers are exact in bf16 and so are their sums below 256 */
        uint16_t *h = melbo_xmalloc(sizeof(uint16_t) * 4096);
        for (size_t i = 0; i < 4096; i++)
            h[i] = melbo_f32_to_bf16((float)((r + 1) * (int)(i % 3 + 1)));
        melbo_comm_allreduce(c, groups[gi], h, 4096, MELBO_COMM_BF16);
        ok = 1;
        for (size_t i = 0; i < 4096; i++)
            ok &= melbo_bf16_to_f32(h[i]) == (float)(member_sum * (double)(i % 3 + 1));
        check(ok, "bf16 sum", r);
        free(h);
    }
    /* broadcast and gather */
    int v = r == 0 ? 12345 : -1;
    melbo_comm_bcast(c, MELBO_COMM_WORLD, &v, sizeof v, 0);
    check(v == 12345, "broadcast", r);
    char mine[32];
    int len = snprintf(mine, sizeof mine, "dp%d;", dr);
    void *all = NULL;
    size_t lens[64];
    melbo_comm_gather_dp(c, mine, (size_t)len, r == 0 ? &all : NULL, lens);
    if (r == 0) {
        char expect[512] = "";
        for (int d = 0; d < dp; d++)
            snprintf(expect + strlen(expect), sizeof expect - strlen(expect), "dp%d;", d);
        check(all && memcmp(all, expect, strlen(expect)) == 0, "gather over DP groups", r);
        free(all);
    }

    /* bandwidth, like nccl-tests' all_reduce_perf on the world */
    if (r == 0)
        printf("#  %10s  %8s  %10s  %10s   (MPI all-reduce, f32 sum, %d ranks)\n", "size (B)",
               "time us", "algbw GB/s", "busbw GB/s", n);
    for (size_t bytes = 1024; bytes <= ((size_t)16 << 20); bytes *= 16) {
        size_t cnt = bytes / 4;
        float *b = melbo_xalloc_f32(cnt);
        int iters = bytes >= (1 << 22) ? 5 : 50;
        melbo_comm_barrier(c, MELBO_COMM_WORLD);
        double t0 = MPI_Wtime();
        for (int it = 0; it < iters; it++)
            melbo_comm_allreduce(c, MELBO_COMM_WORLD, b, cnt, MELBO_COMM_F32);
        double t = (MPI_Wtime() - t0) / iters;
        if (r == 0)
            printf("   %10zu  %8.1f  %10.3f  %10.3f\n", bytes, t * 1e6, bytes / t * 1e-9,
                   melbo_allreduce_busbw((double)bytes, t, n) * 1e-9);
        free(b);
    }
    int total = 0;
    MPI_Allreduce(&failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (r == 0)
        printf("%s: tp %d x dp %d, %d failures\n", total ? "FAIL" : "ok", tp, dp, total);
    free(f);
    melbo_comm_free(c);
    MPI_Finalize();
    return total ? 1 : 0;
}
