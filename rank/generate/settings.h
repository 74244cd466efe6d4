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
#include "rank/model/config.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MELBO_GEN_MAX_STOP 16

struct melbo_gen_settings {
    int max_new_tokens;        // 64
    double temperature;        // 0: greedy
    int top_k;                 // 0: off
    double top_p;              // 1: off
    double repetition_penalty; // 1: off
    uint64_t seed;             // sampling seed
    int n_stop;
    int32_t stop[MELBO_GEN_MAX_STOP];
    int batch;                 // sequences decoded together (64)
    int use_generation_config; // apply generation_config.json's sampling settings
    int ignore_eos;            // never stop before max_new_tokens (benchmarks)
    const void *gpu;           // decode on this struct melbo_gpu_model (rank/gpu/model.h, the
                               // same weights as the host model, all blocks, tp = 1), borrowed;
                               // NULL: the CPU decoder
};

void melbo_gen_settings_init(struct melbo_gen_settings *g);

/* Adds a stop id (ignored if already there or negative). */
void melbo_gen_add_stop(struct melbo_gen_settings *g, int32_t id);

/*
 * Adds the EOS ids of config.json (cfg) and of dir/generation_config.json (if present); with
 * g->use_generation_config also takes its temperature/top_p/top_k/repetition_penalty/do_sample.
 */
int melbo_gen_settings_from_model(struct melbo_gen_settings *g, const struct melbo_model_config *cfg,
                                  const char *dir, struct melbo_err *err);

/*
 * Offers one command-line option (--max-new-tokens, --temperature, --top-p, --top-k,
 * --gen-seed, --repetition-penalty, --gen-batch; --use-generation-config and --ignore-eos take
 * no value). Returns
 * 1 if consumed with its value, 2 if consumed without a value, 0 if not a generation option, or
 * a negative code for a bad value.
 */
int melbo_gen_settings_parse_one(struct melbo_gen_settings *g, const char *opt, const char *val,
                                 struct melbo_err *err);

/* The settings as the JSON object stored in a bank's "generation" metadata (caller frees). */
char *melbo_gen_settings_json(const struct melbo_gen_settings *g, double scale, int random_baselines);

#ifdef __cplusplus
}
#endif
#endif
