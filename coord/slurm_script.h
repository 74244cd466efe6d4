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

/* The values a script is rendered from: the job's settings over the site defaults (the caller
 * chooses). Strings are borrowed. Each field's @FIELD@ name is in its comment. */
struct melbo_slurm_script {
    uint64_t job_id;          // JOB_ID, and JOB_NAME = melbo-<job_id>
    const char *job_dir;      // JOB_DIR: the job's directory (Slurm's output goes there)
    int nodes;                // NODES
    int tasks_per_node;       // TASKS_PER_NODE: ranks on each node
    int gpus_per_node;        // GPUS_LINE: `#SBATCH --gpus-per-node=N`, empty for 0
    int cpus_per_task;        // CPUS_PER_TASK
    const char *time;         // TIME: the limit, a Slurm time string
    int signal_lead;          // SIGNAL_LEAD: seconds before the limit that USR1 comes
    const char *partition;    // PARTITION_LINE, ACCOUNT_LINE, QOS_LINE, CONSTRAINT_LINE:
    const char *account;      //   `#SBATCH --KEY=VALUE`, empty when the value is NULL or ""
    const char *qos;
    const char *constraint;
    const char *coord_addr;   // COORD_ADDR: the host:port rank 0 reports to
    const char *rank_binary;  // RANK_BINARY
    const char *rank_args;    // RANK_ARGS: `melbo-rank train`'s arguments, sh-quoted
                              //   (melbo_slurm_script_args)
};

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
 * Replaces every @FIELD@ of the template *text (owned; replaced by a new string) by s's value,
 * in one pass over the template: values are copied as they are and never scanned again, so a
 * prompt or a path that contains "@RANK_ARGS@" cannot expand (or loop). Unknown @WORDS@ stay.
 */
void melbo_slurm_script_fill(char **text, const struct melbo_slurm_script *s);

#endif
