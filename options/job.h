/*
 * options/job.h - what a job submitted to the coordinator holds: the training options
 * (options/train.h) plus the job settings only the coordinator reads (a label, where and how
 * Slurm runs it). One table drives `melbo submit`'s flags and help and the coordinator's
 * reading of a job spec.
 *
 * A job spec on the wire is the submitted command line itself: (name, value) pairs in order
 * (proto/melbo.proto JobSpec.options). melbo_job_parse reads such pairs; the options that
 * belong to the ranks become `melbo-rank train`'s command line unchanged (melbo_job_rank_argv),
 * the JOB ones stay with the coordinator.
 */
#ifndef MELBO_OPTIONS_JOB_H
#define MELBO_OPTIONS_JOB_H

#include "options/opt.h"
#include "options/train.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MELBO_JOB_OPTIONS(X, G)                                                                    \
    G("the job (melbo submit):")                                                                   \
    X(STR, name, "name", NULL, MELBO_OPT_ANY, MELBO_OPT_JOB, "TEXT", "a label shown by melbo ls")  \
    X(STR, partition, "partition", NULL, MELBO_OPT_ANY, MELBO_OPT_JOB, "P",                        \
      "Slurm partition (default: the coordinator's)")                                              \
    X(STR, account, "account", NULL, MELBO_OPT_ANY, MELBO_OPT_JOB, "A",                           \
      "Slurm account (default: the coordinator's)")                                                \
    X(STR, qos, "qos", NULL, MELBO_OPT_ANY, MELBO_OPT_JOB, "Q",                                    \
      "Slurm QoS (default: the coordinator's)")                                                    \
    X(STR, constraint, "constraint", NULL, MELBO_OPT_ANY, MELBO_OPT_JOB, "FEATURES",               \
      "Slurm node features, e.g. a100|h100 (default: the coordinator's)")                         \
    X(FLAG, private_job, "private", "0", MELBO_OPT_ANY, MELBO_OPT_JOB, NULL,                       \
      "only you and the coordinator's admins see the job, its prompts and its bank")              \
    X(INT, gpus, "gpus", "0", MELBO_OPT_IN(0, 1024), MELBO_OPT_JOB, "N",                           \
      "Slurm: GPUs per node, one rank each (0: a CPU job)")                                        \
    X(INT, nodes, "nodes", "1", MELBO_OPT_IN(1, 100000), MELBO_OPT_JOB, "M",                       \
      "Slurm: nodes; tp x dp must equal nodes x gpus")                                             \
    X(STR, time, "time", NULL, MELBO_OPT_ANY, MELBO_OPT_JOB, "T",                                  \
      "Slurm: time limit (default: the coordinator's); near it the job checkpoints and is "        \
      "resubmitted with --resume")                                                                 \
    X(INT, cpus_per_task, "cpus-per-task", "(the coordinator's)", MELBO_OPT_IN(1, 4096),           \
      MELBO_OPT_JOB, "C", "Slurm: cores per rank")

struct melbo_job_settings {
    MELBO_JOB_OPTIONS(MELBO_OPT_FIELD, MELBO_OPT_NO_HEADING)
};

/* A submitted job: the ranks' options and the coordinator's. */
struct melbo_job_params {
    struct melbo_train_params train;
    struct melbo_job_settings job;
};

/* The table of struct melbo_job_params (training table, then the job rows). */
extern const struct melbo_opt_table melbo_job_table;

void melbo_job_params_init(struct melbo_job_params *jp);
void melbo_job_params_free(struct melbo_job_params *jp);

/* One option of a job spec: name without dashes, value NULL for a flag. */
struct melbo_job_option {
    const char *name;
    const char *value;
};

/*
 * Reads the options of a job spec into jp (defaults first), as `melbo submit` would have parsed
 * them: every value checked, LOCAL options refused, the model required. Relative paths are
 * refused (the ranks run in the job's directory), and the job settings must pass
 * melbo_job_settings_check. Returns 0 or MELBO_EINVAL naming the option.
 */
int melbo_job_parse(struct melbo_job_params *jp, const struct melbo_job_option *opts, size_t n,
                    struct melbo_err *err);

/*
 * Appends `train` and the options of the spec that belong to the ranks to argv (NULL-terminated,
 * strings owned; free with melbo_argv_free), in spec order: the command line melbo-rank parses.
 */
struct melbo_argv {
    char **v;
    int n, cap;
};
void melbo_argv_push(struct melbo_argv *a, const char *s);
void melbo_argv_free(struct melbo_argv *a);
void melbo_job_rank_argv(const struct melbo_job_option *opts, size_t n, struct melbo_argv *av);

/*
 * The job settings that reach Slurm or other users' screens, against strict patterns (under any
 * launcher; they are data, never script text): --partition, --account, --qos (letters, digits,
 * '_', '.', '-'; partition also ',' for a list), --constraint (also '&', '|', ',', '*', '[', ']',
 * '(', ')', ':'), --time (a Slurm time string) and --name (printable ASCII without quotes,
 * '\\', '$' or '`'; at most 64 bytes). Returns 0, or MELBO_EINVAL naming the field and showing
 * the value with control characters escaped.
 */
int melbo_job_settings_check(const struct melbo_job_settings *js, struct melbo_err *err);

/* Ranks the job asks for (tp x dp). */
int melbo_job_ranks(const struct melbo_job_params *jp);

/* `melbo submit --help`'s option list. */
void melbo_job_usage(FILE *f);

#ifdef __cplusplus
}
#endif
#endif
