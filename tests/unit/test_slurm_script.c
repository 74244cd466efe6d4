/*
 * tests/unit/test_slurm_script.c - the batch script the Slurm launcher renders
 * (coord/slurm_script.c): every @FIELD@ of the real template filled, values copied as they are
 * (a prompt that spells a field is not expanded, and cannot make the render loop), no Slurm
 * setting in the script (they are sbatch options, left out when not given), sh quoting of the
 * ranks' arguments, and time-limit checks.
 *
 *   test_slurm_script TEMPLATE   (slurm/train.sbatch.in)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "coord/slurm.h"
#include "coord/slurm_script.h"
#include "tests/test.h"

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_slurm_script TEMPLATE\n");
        return 2;
    }
    struct melbo_err err = {0};
    char *text = NULL;
    ASSERT_OK(melbo_file_read(argv[1], &text, NULL, &err));
    char *words[] = {"train", "--prompt", "it's @RANK_ARGS@ and @JOB_DIR@", "--steps", "5"};
    char *args = melbo_slurm_script_args(words, 5);
    ASSERT(!strcmp(args, "'train' '--prompt' 'it'\\''s @RANK_ARGS@ and @JOB_DIR@' '--steps' '5' "));
    struct melbo_slurm_script s = {42,
                                   "/srv/melbo/jobs/42",
                                   2,
                                   4,
                                   4,
                                   1,
                                   "02:00:00",
                                   120,
                                   "gpu@x",
                                   NULL,
                                   "",
                                   NULL,
                                   "10.0.0.1:7878",
                                   "/opt/melbo-rank",
                                   args,
                                   NULL};
    melbo_slurm_script_fill(&text, &s);
    ASSERT(strstr(text, "job_dir=@JOB_DIR@") == NULL && strstr(text, "@RANK_COMMAND@") == NULL &&
           strstr(text, "/opt/melbo-rank train '") != NULL &&
           strstr(text, "@COORD_ADDR@") == NULL && strstr(text, "@JOB_ID@") == NULL);
    /* no Slurm setting is script text: they are sbatch options (argv) */
    ASSERT(strstr(text, "#SBATCH") == NULL && strstr(text, "gpu@x") == NULL);
    /* the ranks' arguments verbatim: the fields they spell are not expanded */
    ASSERT_STR_CONTAINS(text, "'it'\\''s @RANK_ARGS@ and @JOB_DIR@'");
    char **o = melbo_slurm_sbatch_options(&s);
    const char *want[] = {"--job-name=melbo-42", "--nodes=2", "--ntasks-per-node=4",
                          "--cpus-per-task=1", "--time=02:00:00", "--signal=B:USR1@120",
                          "--output=/srv/melbo/jobs/42/slurm-%j.out", "--open-mode=append",
                          "--gpus-per-node=4", "--partition=gpu@x", NULL};
    for (int i = 0; want[i] || o[i]; i++)
        ASSERT(want[i] && o[i] && !strcmp(want[i], o[i]));
    melbo_slurm_sbatch_options_free(o);
    free(text);
    /* a gen or warm job (coord/genjob.h): the same template runs `melbo-rank gen` */
    ASSERT_OK(melbo_file_read(argv[1], &text, NULL, &err));
    s.rank_command = "gen";
    melbo_slurm_script_fill(&text, &s);
    ASSERT_STR_CONTAINS(text, "/opt/melbo-rank gen '");
    free(text);
    free(args);
    ASSERT_OK(melbo_slurm_script_check_time("02:00:00", 120, &err));
    ASSERT(melbo_slurm_script_check_time("00:03:00", 120, &err) < 0);
    ASSERT_STR_CONTAINS(err.msg, "under half the limit");
    ASSERT(melbo_slurm_script_check_time("soon", 120, &err) < 0);
    ASSERT_STR_CONTAINS(err.msg, "'soon' is not a Slurm time");
    fprintf(stderr, "ok   slurm script: fields filled once, values verbatim, time checks\n");
    return 0;
}
