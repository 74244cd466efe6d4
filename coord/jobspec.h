/*
 * coord/jobspec.h - a JobSpec (proto/melbo.proto) read through the option tables of options/:
 * its options by name (or, for protocol-1 specs, its fields turned into the same options), the
 * coordinator's validation of a submitted spec (DESIGN §3.1), and the command line of the
 * spec's ranks.
 *
 * Validation runs what the ranks run first - the job table's parser (the same rows as
 * `melbo-rank train`'s), the model's config.json or GGUF metadata (no weights, no tensor
 * headers: melbo_config_load) and melbo_train_params_resolve against its layers - plus what only
 * a launcher knows (tp divides the heads, the layout fills the Slurm allocation). So the
 * coordinator refuses what the ranks would refuse, with the ranks' own message, before anything
 * is queued.
 */
#ifndef MELBO_COORD_JOBSPEC_H
#define MELBO_COORD_JOBSPEC_H

#include "common/err.h"
#include "options/job.h"
#include "proto/melbo.pb-c.h"

/*
 * Parses spec's options into jp (melbo_job_params_free it, also on failure): every value
 * checked, LOCAL options refused, paths absolute. No file other than a --prompts file is read.
 * Returns 0 or MELBO_EINVAL with err naming the option.
 */
int melbo_jobspec_parse(const Melbo__JobSpec *spec, struct melbo_job_params *jp,
                        struct melbo_err *err);

/*
 * melbo_jobspec_parse, then the checks that need the model (see above). On success jp holds
 * the resolved settings (layers, wave, q). Returns 0 or the ranks' error code and message.
 */
int melbo_jobspec_validate(const Melbo__JobSpec *spec, struct melbo_job_params *jp,
                           struct melbo_err *err);

/*
 * Appends "train" and the spec's rank options to av, then --out out, --checkpoint ckpt and
 * --stop-on-signal (when ckpt is not NULL), --resume resume (when not NULL) and --job-id job_id.
 * spec is unpacked or built, and was validated (melbo_jobspec_validate) when it was submitted;
 * it is only read.
 */
void melbo_jobspec_to_argv(const Melbo__JobSpec *spec, const char *out, const char *ckpt,
                           const char *resume, const char *job_id, struct melbo_argv *av);

#endif
