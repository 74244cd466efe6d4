/*
 * rank/cmd_train.c - `melbo-rank train`: the whole MELBO method in one process, standalone
 * (rank/train/). Validates everything before the first step, trains in waves, checkpoints, and
 * writes the bank atomically.
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rank/commands.h"
#include "rank/train/params.h"
#include "rank/train/state.h"
#include "rank/train/trainer.h"

extern void openblas_set_num_threads(int);

int melbo_cmd_train(int argc, char **argv) {
    struct melbo_train_params p;
    struct melbo_trainer tr;
    struct melbo_err err = {0};
    int status = 1;
    melbo_train_params_init(&p);
    memset(&tr, 0, sizeof tr);
    int r = melbo_train_params_parse(&p, argc, argv, &err);
    if (r == 1) {
        status = 0;
        goto out_params;
    }
    if (r < 0) {
        fprintf(stderr, "melbo-rank train: %s\n", err.msg);
        status = 2;
        goto out_params;
    }
    if (p.threads > 0) {
        omp_set_num_threads(p.threads);
        openblas_set_num_threads(p.threads);
    }
    if (melbo_trainer_init(&tr, &p, &err) != 0)
        goto fail;
    fprintf(stderr,
            "train: %s, %d prompt(s), blocks %d..%d (source %d, target %d), %d vectors in waves of "
            "%d, %d steps, R %g, p %g, q %g, axis %s, target tokens %s%s\n",
            tr.model_name, tr.P, tr.s + 1, tr.t - 1, tr.s, tr.t, tr.N, tr.B, tr.steps, p.radius, p.p,
            p.q, p.loss_axis == MELBO_LOSS_AXIS_DIM ? "dim" : "token", p.target_tokens.text,
            p.orthogonal ? ", orthogonal" : "");
    if (p.resume) {
        if (melbo_trainer_resume(&tr, p.resume, &err) != 0)
            goto fail;
        fprintf(stderr, "train: resumed from %s at vector %d, step %d of its wave\n", p.resume,
                tr.n_done, tr.wave_step);
    }
    if (melbo_trainer_run(&tr, &err) != 0 || melbo_trainer_generate(&tr, &err) != 0 ||
        melbo_bank_write(&tr, p.out, &err) != 0)
        goto fail;
    fprintf(stderr, "train: bank written to %s\n", p.out);
    status = 0;
    goto out;
fail:
    fprintf(stderr, "melbo-rank train: %s\n", err.msg);
out:
    melbo_trainer_free(&tr);
out_params:
    melbo_train_params_free(&p);
    return status;
}
