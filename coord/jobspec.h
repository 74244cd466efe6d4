/*
 * coord/jobspec.h - a JobSpec (proto/melbo.proto) as the command line of `melbo-rank train`, and
 * the coordinator's validation of a submitted spec (DESIGN §3.1).
 *
 * Validation runs exactly what the rank runs first - melbo_train_params_parse on the argv this
 * file builds, melbo_model_check on the model directory (no weights loaded), and
 * melbo_train_params_resolve against the model's layers - so the coordinator refuses what the
 * rank would refuse, with the rank's own message, before anything is queued.
 */
#ifndef MELBO_COORD_JOBSPEC_H
#define MELBO_COORD_JOBSPEC_H

#include "common/err.h"
#include "proto/melbo.pb-c.h"

/* A growable, NULL-terminated argv whose strings are owned. */
struct melbo_argv {
    char **v;
    int n, cap;
};

void melbo_argv_push(struct melbo_argv *a, const char *s);
void melbo_argv_free(struct melbo_argv *a);

/*
 * Appends "train" and the options of spec to av, with --out out, --checkpoint ckpt (when not
 * NULL), --resume resume (when not NULL) and --job-id job_id. spec is unpacked or built; it is
 * only read. Returns 0 or MELBO_EINVAL (a path that is not absolute, a bad field).
 */
int melbo_jobspec_to_argv(const Melbo__JobSpec *spec, const char *out, const char *ckpt,
                          const char *resume, const char *job_id, struct melbo_argv *av,
                          struct melbo_err *err);

/* Ranks a spec asks for (tp * dp, at least 1). */
int melbo_jobspec_ranks(const Melbo__JobSpec *spec);

/*
 * Validates spec as the rank would (see above) plus what only a launcher knows: tp divides the
 * attention heads (DESIGN §4 Parallelism). On success fills *vectors and *steps (resolved) when
 * not NULL. Returns 0 or the rank's error code with its message in err.
 */
int melbo_jobspec_validate(const Melbo__JobSpec *spec, int *vectors, int *steps,
                           struct melbo_err *err);

#endif
