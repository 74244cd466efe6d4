/*
 * tests/unit/test_slurm_script.c - the batch script the Slurm launcher renders
 * (coord/slurm_script.c): every @FIELD@ of the real template filled, values copied as they are
 * (a prompt that spells a field is not expanded, and cannot make the render loop), empty #SBATCH
 * lines for settings not given, sh quoting of the ranks' arguments, and time-limit checks.
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
                                   args};
    melbo_slurm_script_fill(&text, &s);
    ASSERT(strstr(text, "@JOB_NAME@") == NULL && strstr(text, "@NODES@") == NULL &&
           strstr(text, "@COORD_ADDR@") == NULL && strstr(text, "@PARTITION_LINE@") == NULL);
    ASSERT_STR_CONTAINS(text, "#SBATCH --job-name=melbo-42");
    ASSERT_STR_CONTAINS(text, "#SBATCH --nodes=2");
    ASSERT_STR_CONTAINS(text, "#SBATCH --gpus-per-node=4");
    ASSERT_STR_CONTAINS(text, "#SBATCH --partition=gpu@x");
    ASSERT(strstr(text, "--account=") == NULL && strstr(text, "--qos=") == NULL);
    ASSERT_STR_CONTAINS(text, "B:USR1@120");
    /* the ranks' arguments verbatim: the fields they spell are not expanded */
    ASSERT_STR_CONTAINS(text, "'it'\\''s @RANK_ARGS@ and @JOB_DIR@'");
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
