/*
 * coord/genjob.h - gen jobs (issue 19): `melbo gen --bank ID --vector EXPR ...` as a job whose
 * ranks run `melbo-rank gen` on a stored bank and stream the text back (JobEvent TOKENS and
 * COMPLETION; rank/cmd_gen.c). A JobSpec with command "gen" holds the options of melbo-rank
 * gen's table (options/generate.h) by name, "bank" naming a catalog bank id; the model is the
 * bank's (its job's resolved model), so "model" is refused, as are the options that shape local
 * output (json, logits). "name" and "private" are the job's own, as for training jobs.
 *
 * No file a user names is opened: --prompts is sent as text ({prompts-jsonl: TEXT}) and written
 * into the job's directory for the ranks; the bank is read from the bank store only.
 */
#ifndef MELBO_COORD_GENJOB_H
#define MELBO_COORD_GENJOB_H

#include <stddef.h>

#include "common/err.h"
#include "coord/coord.h"
#include "coord/job.h"
#include "options/job.h" // defines: struct melbo_argv
#include "proto/wire.h"

struct melbo_client;

#ifdef __cplusplus
extern "C" {
#endif

/* What a spec's command asks for. */
enum { MELBO_GENJOB_TRAIN = 0, MELBO_GENJOB_GEN = 1, MELBO_GENJOB_WARM = 2 };

/* MELBO_GENJOB_* of spec's command ("train" or absent, "gen", "warm"); MELBO_EINVAL (err set)
 * for an unknown one. */
int melbo_genjob_of_spec(const Melbo__JobSpec *spec, struct melbo_err *err);
/* 1 when job (its stored spec, read once and kept in job->command) is a gen job; a warm job
 * (coord/warm.h). */
int melbo_genjob_is(struct melbo_job *job);
int melbo_genjob_is_warm(struct melbo_job *job);

/*
 * A warm job's spec: "bank" (its model is the warm job's) or "model" (a registered name or a
 * path under a model root), plus tp (its layout: it serves gen jobs of the same --tp), device,
 * dtype, name and private; nothing else. On the loop with
 * a bank (melbo_genjob_bank), else off it: *model is set to the resolved model. Returns 0 or a
 * negative code with err naming the option.
 */
int melbo_genjob_validate_warm(const Melbo__JobSpec *spec, const char *state_dir, char *model,
                               size_t n, const struct melbo_coord_limits *lim, int *tp,
                               struct melbo_err *err);

/*
 * On the loop: the bank spec's "bank" option names, visible to cl: its path in the bank store
 * (bank, n bytes) and its model (model, n bytes: the resolved path of the bank's job). Returns 0
 * or a negative code with err naming the problem ("no bank ID" for an unknown or hidden bank).
 */
int melbo_genjob_bank(const struct melbo_client *cl, const Melbo__JobSpec *spec, char *bank,
                      char *model, size_t n, struct melbo_err *err);

/*
 * Off the loop: every option of spec checked as `melbo-rank gen` would (values, ranges, the
 * vector or adapter choices against the bank's kind), the source layer against the model's
 * config, --tp against the heads and limits.max_tp, --max-new-tokens against
 * limits.max_new_tokens. *tp is set to its ranks, *n_vec to the number of --vector / --adapter choices (1 for the default none).
 * Returns 0 or a negative code with err naming the option.
 */
int melbo_genjob_validate(const Melbo__JobSpec *spec, const char *model, const char *bank,
                          const struct melbo_coord_limits *lim, int *n_vec, int *tp,
                          struct melbo_err *err);

/*
 * The words of `melbo-rank gen` for job (after "gen"): --model, --bank (the store's path for the
 * spec's bank id), every option of the spec, prompts written to dir/prompts.jsonl (0600). For a
 * warm job: --model, --warm and its device options.
 * Returns 0 or a negative code with err set.
 */
int melbo_genjob_argv(const struct melbo_coord *co, const struct melbo_job *job,
                      const Melbo__JobSpec *spec, const char *dir, struct melbo_argv *words,
                      struct melbo_err *err);

#ifdef __cplusplus
}
#endif
#endif
