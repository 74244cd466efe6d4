/*
 * rank/cmd_train.c - `melbo-rank train`: the whole MELBO method, standalone or as one rank of a
 * tp x dp job under mpirun / srun (rank/train/). Validates everything before the first step,
 * trains in waves, checkpoints, generates the completions and writes the bank atomically (rank 0).
 * `train --args-file FILE` reads the options from FILE (each followed by a NUL): the coordinator
 * starts its ranks that way, so that no prompt is on a command line `ps` shows.
 *
 * Error regime: before MPI, errors return an exit status. Under MPI a rank that fails cannot
 * leave its peers waiting in a collective, so every error after MPI_Init ends the whole job with
 * MPI_Abort and a message naming the rank (nccl/comm.h).
 */
#define OMPI_SKIP_MPICXX 1
#include <mpi.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "nccl/comm.h"
#include "rank/args_file.h"
#include "rank/commands.h"
#include "rank/link/link.h"
#include "options/train.h"
#include "rank/train/state.h"
#include "rank/train/trainer.h"

extern void openblas_set_num_threads(int);

/* Exit status of a run that stopped after its SIGUSR1 checkpoint (EX_TEMPFAIL): the launcher
 * resubmits it with --resume. */
#define MELBO_EXIT_CHECKPOINTED 75

/* VmHWM of this process in MiB (0 if unknown). */
static double peak_rss_mib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %lf kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb / 1024.0;
}

/*
 * Joins the MPI world when started by a launcher (the layout is checked before anything is
 * loaded) and records this process's place in p. Returns 0, or the exit status of a job that
 * cannot start (2: a usage error, reported on rank 0; MPI is finalised then).
 */
static int join_world(struct melbo_train_params *p, struct melbo_comm **comm, int *mpi) {
    struct melbo_err err = {0};
    if (!melbo_comm_launched()) {
        if (p->tp * p->dp == 1)
            return 0;
        fprintf(stderr,
                "melbo-rank train: --tp %d --dp %d needs %d ranks: start it with "
                "mpirun -np %d melbo-rank train ...\n",
                p->tp, p->dp, p->tp * p->dp, p->tp * p->dp);
        return 2;
    }
    MPI_Init(NULL, NULL);
    if (melbo_comm_init(comm, p->tp, p->dp, MELBO_COMM_MPI, &err) != 0) {
        int rank = 0;
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        if (rank == 0)
            fprintf(stderr, "melbo-rank train: %s\n", err.msg);
        MPI_Barrier(MPI_COMM_WORLD);
        MPI_Finalize();
        return 2;
    }
    *mpi = 1;
    p->rank = melbo_comm_rank(*comm);
    p->tp_rank = melbo_comm_tp_rank(*comm);
    p->dp_rank = melbo_comm_dp_rank(*comm);
    return 0;
}

static void print_plan(const struct melbo_trainer *tr, const struct melbo_train_params *p) {
    char what[96];
    if (tr->adapters)
        snprintf(what, sizeof what, "%d adapters (rank %d, alpha %g, %d floats each)", tr->N,
                 tr->adapter.r, tr->adapter.alpha, tr->W);
    else
        snprintf(what, sizeof what, "%d vectors (R %g)", tr->N, p->radius);
    fprintf(stderr,
            "train: %s, %d prompt(s), blocks %d..%d (source %d, target %d), %s in waves of %d, "
            "%d steps, p %g, q %g, axis %s, target tokens %s%s, tp %d x dp %d\n",
            tr->model_name, tr->pr.P, tr->s + 1, tr->t - 1, tr->s, tr->t, what, tr->B, tr->steps,
            p->p, p->q, p->loss_axis == MELBO_LOSS_AXIS_DIM ? "dim" : "token",
            p->target_tokens.text, p->orthogonal ? ", orthogonal" : "", p->tp, p->dp);
}

int melbo_cmd_train(int argc, char **argv) {
    char **file_argv = NULL, *file_buf = NULL;
    static int from_file; /* one level: a file naming --args-file again is refused */
    if (argc >= 3 && !strcmp(argv[1], "--args-file")) {
        if (from_file++) {
            fprintf(stderr, "melbo-rank train: --args-file inside an --args-file\n");
            return 2;
        }
        int n = melbo_args_from_file("train", argc, argv, &file_argv, &file_buf);
        if (n < 0) {
            free(file_buf);
            return 2;
        }
        int status = melbo_cmd_train(n, file_argv);
        free(file_argv);
        free(file_buf);
        return status;
    }
    struct melbo_train_params p;
    struct melbo_trainer tr;
    struct melbo_comm *comm = NULL;
    struct melbo_link *link = NULL;  // rank 0's coordinator link, NULL standalone (rank/link/)
    struct melbo_link *upload = NULL; // the link that uploads the bank once the run is torn down
    struct melbo_err err = {0};
    int status = 1, mpi = 0;
    melbo_train_install_signal(); /* the only place: before anything slow */
    melbo_train_params_init(&p);
    memset(&tr, 0, sizeof tr);
    int r = melbo_train_params_parse(&p, argc, argv, &err);
    if (r == 1) {
        melbo_train_usage();
        status = 0;
        goto out_params;
    }
    if (r < 0) {
        fprintf(stderr, "melbo-rank train: %s\n", err.msg);
        status = 2;
        goto out_params;
    }
    status = join_world(&p, &comm, &mpi);
    if (status != 0)
        goto out_params;
    status = 1;
    link = melbo_link_start_from_env();
    melbo_link_state(link, "STARTING", "loading the model");
    if (p.threads > 0) {
        omp_set_num_threads(p.threads);
        openblas_set_num_threads(p.threads);
    }
    if (p.sweep.n > 0) { /* a grid of runs on one load of the model (rank/cmd_sweep.c) */
        int rank0 = comm == NULL || melbo_comm_rank(comm) == 0;
        r = melbo_train_sweep(&p, comm, link, rank0, &err);
        if (r == 0 && rank0)
            link = NULL; /* ended by the upload of the banks */
        if (r == MELBO_ESTATE)
            goto checkpointed;
        if (r != 0)
            goto fail;
        status = 0;
        goto out;
    }
    if (melbo_trainer_init(&tr, &p, comm, &err) != 0)
        goto fail;
    if (link)
        tr.obs = melbo_link_observer(link);
    if (tr.rank0)
        print_plan(&tr, &tr.set); /* the settings as resolved (q, wave, orthogonal) */
    if (p.resume) {
        if (melbo_trainer_resume(&tr, p.resume, &err) != 0)
            goto fail;
        if (tr.rank0)
            fprintf(stderr, "train: resumed from %s at vector %d, step %d of its wave\n", p.resume,
                    tr.ws.n_done, tr.ws.wave_step);
    }
    r = melbo_trainer_run(&tr, &err);
    if (r == MELBO_ESTATE)
        goto checkpointed;
    if (r != 0 || melbo_trainer_generate(&tr, &err) != 0)
        goto fail;
    if (tr.rank0) {
        if (melbo_bank_write(&tr, p.out, &err) != 0)
            goto fail;
        fprintf(stderr, "train: bank written to %s\n", p.out);
        fprintf(stderr, "train: peak RSS of rank 0: %.1f MiB\n", peak_rss_mib());
        upload = link; /* after the peers and the devices are released (out:) */
        link = NULL;
    }
    status = 0;
    goto out;
checkpointed: /* on SIGUSR1, asked to stop (--stop-on-signal): the launcher resubmits */
    if (comm == NULL || melbo_comm_rank(comm) == 0)
        fprintf(stderr, "train: %s\n", err.msg);
    status = MELBO_EXIT_CHECKPOINTED;
    melbo_link_state(link, "CHECKPOINTED", err.msg);
    melbo_link_finish(link, NULL, NULL);
    link = NULL;
    goto out;
fail:
    melbo_link_finish(link, NULL, err.msg);
    link = NULL;
    if (mpi && melbo_comm_size(comm) > 1) {
        char msg[1200];
        snprintf(msg, sizeof msg, "train: %s", err.msg);
        melbo_comm_abort(comm, msg);
    }
    fprintf(stderr, "melbo-rank train: %s\n", err.msg);
out:
    melbo_trainer_free(&tr);
    if (mpi) {
        melbo_comm_free(comm);
        MPI_Finalize();
    }
    /* the bank is on disk in the job's directory; rank 0 alone keeps it for the coordinator (up to
     * link.keep_bank) while the other ranks, the model and the device memory are gone */
    if (upload && melbo_link_finish(upload, p.out, NULL) != 0)
        fprintf(stderr, "train: the coordinator did not confirm the bank upload; the bank stays "
                        "in %s (the coordinator adopts it when it starts)\n",
                p.out);
out_params:
    melbo_train_params_free(&p);
    return status;
}
