/*
 * rank/generate/generate.h - batched, steered generation on any backend (rank/backend.h).
 *
 * Every job is one sequence: a prompt, a steering vector (already multiplied by its scale; NULL
 * for none) added to the output of the source block at every position, prompt and generated
 * tokens alike, or an adapter (rank/method/adapter.h) on that block's down projection, and a
 * sampling stream. Jobs are decoded together in up to `batch` KV-cache slots;
 * a finished sequence's slot takes the next job (continuous batching). Results are independent of
 * the batch: a job gives the same tokens alone or among others.
 */
#ifndef MELBO_RANK_GENERATE_GENERATE_H
#define MELBO_RANK_GENERATE_GENERATE_H

#include <stdint.h>

#include "common/err.h"
#include "rank/backend.h"
#include "rank/generate/settings.h"
#include "rank/method/adapter.h"

#ifdef __cplusplus
extern "C" {
#endif

struct melbo_gen_job {
    const int32_t *prompt;  // borrowed
    int prompt_len;
    const float *steer;     // (d) borrowed, or NULL
    const float *adapter;   // one adapter row, borrowed, or NULL
    const struct melbo_adapter_shape *adapter_shape; // its shape (every job's must be equal)
    uint64_t stream;        // sampling stream (e.g. the job's index)
};

struct melbo_gen_result {
    int32_t *ids;           // (n) generated tokens, owned; a final stop token is included
    int n;
    int stopped;            // 1 if it ended at a stop token, 0 at max_new_tokens
    float *logits0;         // (V) the logits that chose ids[0], owned; only with
                            // melbo_gen_settings.keep_logits, else NULL
};

/* Called after every decoding step with the number of finished jobs and generated tokens. */
typedef void (*melbo_gen_progress_cb)(void *ctx, int jobs_done, int n_jobs, long tokens);

/*
 * Generates every job on be's decoder (its host model, and the device's copy, must hold all
 * blocks, the embedding and the head). out[n_jobs] is filled (free each ids). Returns 0 or a
 * negative code (a prompt too long for the model, an id outside the vocabulary, jobs with
 * adapters of different shapes, a device error).
 */
int melbo_generate(struct melbo_backend *be, int source_layer, const struct melbo_gen_settings *g,
                   const struct melbo_gen_job *jobs, int n_jobs, struct melbo_gen_result *out,
                   melbo_gen_progress_cb cb, void *ctx, struct melbo_err *err);

void melbo_gen_results_free(struct melbo_gen_result *r, int n);

#ifdef __cplusplus
}
#endif
#endif
