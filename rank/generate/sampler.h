/*
 * rank/generate/sampler.h - choosing the next token from logits.
 *
 * Greedy is plain argmax (the first index among equal maxima, as torch.argmax). Sampling follows
 * transformers' warpers in its order: repetition penalty, temperature, top-k, top-p, then one
 * draw. The uniform number for a draw comes from Philox keyed by (seed, stream) at counter step,
 * so a sequence samples the same tokens whatever else is in its batch.
 */
#ifndef MELBO_RANK_GENERATE_SAMPLER_H
#define MELBO_RANK_GENERATE_SAMPLER_H

#include <stdint.h>

#include "rank/generate/settings.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Index of the largest of x[n]. */
int32_t melbo_argmax(const float *x, int n);

/*
 * Picks the next token. logits (V) may be modified. history[n_hist] are the sequence's tokens so
 * far (prompt and generated) for the repetition penalty; stream and step key the random draw.
 * scratch holds 2 * V floats + V ints worth of space (see melbo_sampler_scratch_bytes).
 */
int32_t melbo_sample(const struct melbo_gen_settings *g, float *logits, int V,
                     const int32_t *history, int n_hist, uint64_t stream, int step, void *scratch);

size_t melbo_sampler_scratch_bytes(int V);

#ifdef __cplusplus
}
#endif
#endif
