/*
 * coord/slurm_script.h - the batch script a Slurm job runs: the template (slurm/train.sbatch.in,
 * or --slurm-template) with each @FIELD@ replaced by the job's value, and the rule its time
 * limit must follow.
 *
 * coord/slurm_script.c also defines coord/slurm.h's site defaults (melbo_slurm_conf_defaults,
 * melbo_slurm_conf_parse) and Slurm time strings (melbo_slurm_time_seconds): it turns settings
 * into script text and knows no job table, loop or process. Submitting, tracking and cancelling
 * stay in coord/slurm.c.
 *
 * Layer: a leaf, on slurm.h's line (common/ only).
 */
#ifndef MELBO_COORD_SLURM_SCRIPT_H
#define MELBO_COORD_SLURM_SCRIPT_H

#include <stdint.h>

#include "common/err.h"

/*
 * What a job asks of Slurm and what its script needs: the job's settings over the site
 * defaults (the caller chooses). Strings are borrowed. The settings become sbatch options on
 * its command line (melbo_slurm_sbatch_options: argv, no shell); only the fields marked @FIELD@,
 * chosen by the coordinator, are written into the script (melbo_slurm_script_fill), so a user's
 * value never becomes script text.
 */
struct melbo_slurm_script {
    uint64_t job_id;          // JOB_ID; --job-name=melbo-<job_id>
    const char *job_dir;      // JOB_DIR: the job's directory; --output=JOB_DIR/slurm-%j.out
    int nodes;                // --nodes
    int tasks_per_node;       // --ntasks-per-node: ranks on each node
    int gpus_per_node;        // --gpus-per-node, left out for 0
    int cpus_per_task;        // --cpus-per-task
    const char *time;         // --time: the limit, a Slurm time string
    int signal_lead;          // --signal=B:USR1@LEAD: seconds before the limit that USR1 comes
    const char *partition;    // --partition, --account, --qos, --constraint: left out when
    const char *account;      //   NULL or ""
    const char *qos;
    const char *constraint;
    const char *coord_addr;   // COORD_ADDR: the host:port rank 0 reports to
    const char *rank_binary;  // RANK_BINARY
    const char *rank_args;    // RANK_ARGS: `melbo-rank train`'s arguments, sh-quoted
                              //   (melbo_slurm_script_args): only --args-file FILE
    const char *rank_command; // RANK_COMMAND: train (NULL), or gen for gen and warm jobs
};

/* sbatch's options for s, "--key=value" each (a malloc'd NULL-terminated array of malloc'd
 * strings; free with melbo_slurm_sbatch_options_free). */
char **melbo_slurm_sbatch_options(const struct melbo_slurm_script *s);
void melbo_slurm_sbatch_options_free(char **v);

/* The n words v as one string for sh: each single-quoted and followed by a space (malloc'd;
 * the empty string for n <= 0). */
char *melbo_slurm_script_args(char *const *v, int n);

/*
 * Checks a job's time limit against the checkpoint signal: time must be a Slurm time string
 * (melbo_slurm_time_seconds) and signal_lead under half of it. Returns 0, or MELBO_EINVAL with
 * err naming both values.
 */
int melbo_slurm_script_check_time(const char *time, int signal_lead, struct melbo_err *err);

/*
 * Replaces every @FIELD@ of the template *text (owned; replaced by a new string) by s's value:
 * JOB_DIR, COORD_ADDR, JOB_ID, RANK_BINARY and RANK_ARGS only, in one pass over the template:
 * values are copied as they are and never scanned again. Unknown @WORDS@ stay.
 */
void melbo_slurm_script_fill(char **text, const struct melbo_slurm_script *s);

#endif
