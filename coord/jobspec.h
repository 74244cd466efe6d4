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
#include "coord/conf.h"
#include "options/job.h"
#include "proto/melbo.pb-c.h"

/*
 * No file a user names is opened with the coordinator's rights (issue 20):
 *   --model     resolved against the admin's model roots and names (coord/models.h)
 *   --prompts   read by `melbo submit` and sent as {prompts-jsonl: TEXT}; a path is refused
 *   --init, --calibration-init   uploaded (InputUpload) and named "upload:OPTION"; the
 *               coordinator moves the upload into the job's directory as OPTION.safetensors
 * The stored spec keeps the text and the upload's name; melbo_jobspec_to_argv writes the prompts
 * into the job's directory (0600) and gives the ranks those paths.
 */
#define MELBO_JOBSPEC_UPLOAD "upload:"

/*
 * The checks of a submitted spec that read no file (run on the loop): no --prompts path, --init
 * and --calibration-init only as uploads, at most limits.max_prompts prompts and
 * limits.max_prompt_bytes bytes of prompts and system prompt. Returns 0 or MELBO_EINVAL /
 * MELBO_ERANGE with err naming the option or the limit.
 */
int melbo_jobspec_check_inputs(const Melbo__JobSpec *spec, const struct melbo_coord_limits *lim,
                               struct melbo_err *err);

/*
 * Parses spec's options into jp (melbo_job_params_free it, also on failure): every value
 * checked, LOCAL options refused, paths absolute, uploads ("upload:init") left out. No file
 * is read but a --prompts path's (stored specs of older versions only).
 * Returns 0 or MELBO_EINVAL with err naming the option.
 */
int melbo_jobspec_parse(const Melbo__JobSpec *spec, struct melbo_job_params *jp,
                        struct melbo_err *err);

/*
 * melbo_jobspec_parse, then the checks that need the model (see above): --model resolved
 * against STATE's roots and names into model (n bytes, a real path), its config read with caps
 * (coord/models.h), every point of a sweep resolved as the ranks will (at most
 * MELBO_JOBSPEC_MAX_SWEEP points; the coordinator's limits.max_sweep_points is the caller's to
 * check). On success jp holds the resolved settings (layers, wave, q). Returns 0 or
 * the ranks' error code and message. Opens files: run it off the loop (uv_queue_work).
 */
#define MELBO_JOBSPEC_MAX_SWEEP 100000
int melbo_jobspec_validate(const Melbo__JobSpec *spec, const char *state_dir,
                           struct melbo_job_params *jp, char *model, size_t n,
                           struct melbo_err *err);

/*
 * Appends "train" and the spec's rank options to av, then --out out, --checkpoint ckpt and
 * --stop-on-signal (when ckpt is not NULL), --resume resume (when not NULL) and --job-id job_id.
 * spec is unpacked or built, and was validated (melbo_jobspec_validate) when it was submitted;
 * it is only read. The job's directory is out's: each {prompts-jsonl: TEXT} is written there as
 * prompts-K.jsonl (0600) and passed as --prompts; an "upload:OPTION" becomes that directory's
 * OPTION.safetensors.
 */
void melbo_jobspec_to_argv(const Melbo__JobSpec *spec, const char *out, const char *ckpt,
                           const char *resume, const char *job_id, struct melbo_argv *av);

#endif
