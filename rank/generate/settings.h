/*
 * rank/generate/settings.h - decoding settings and the token ids that stop a sequence.
 *
 * Greedy (plain argmax) by default; sampling with temperature, top-k and top-p, seeded and
 * reproducible. A sequence stops at every EOS id the model declares (config.json and
 * generation_config.json may each list several) and at the chat format's end-of-turn token.
 * generation_config.json's other settings (repetition penalty, default sampling) apply only when
 * asked for (--use-generation-config).
 */
#ifndef MELBO_RANK_GENERATE_SETTINGS_H
#define MELBO_RANK_GENERATE_SETTINGS_H

#include <stdint.h>

#include "common/err.h"
#include "options/generate.h"
#include "rank/model/config.h"

#ifdef __cplusplus
extern "C" {
#endif

/* struct melbo_gen_settings (the decoding options and the stop ids) is declared with its option
 * table in options/generate.h. Defaults (the table's); no stop ids yet. */
void melbo_gen_settings_init(struct melbo_gen_settings *g);

/* Adds a stop id (ignored if already there or negative). */
void melbo_gen_add_stop(struct melbo_gen_settings *g, int32_t id);

/*
 * Adds the EOS ids of config.json (cfg) and of dir/generation_config.json (if present); with
 * g->use_generation_config also takes its temperature/top_p/top_k/repetition_penalty/do_sample.
 */
int melbo_gen_settings_from_model(struct melbo_gen_settings *g, const struct melbo_model_config *cfg,
                                  const char *dir, struct melbo_err *err);

/* The settings as the JSON object stored in a bank's "generation" metadata (caller frees). */
char *melbo_gen_settings_json(const struct melbo_gen_settings *g, double scale, int random_baselines);

#ifdef __cplusplus
}
#endif
#endif
