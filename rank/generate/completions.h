/*
 * rank/generate/completions.h - completions of every prompt under every vector: the text that
 * shows what each vector does (method.md §2.4).
 *
 * Vector v and prompt i become one generation job; the sampling stream is the prompt's index, so
 * two runs that share a prompt draw the same random numbers (sampled completions under different
 * vectors are comparable, and `gen` reproduces what `train` stored). Text comes out of the
 * tokenizer's streaming decoder, special tokens skipped.
 */
#ifndef MELBO_RANK_GENERATE_COMPLETIONS_H
#define MELBO_RANK_GENERATE_COMPLETIONS_H

#include <stdint.h>

#include "common/err.h"
#include "nccl/comm.h"
#include "rank/generate/generate.h"
#include "rank/tokenizer/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Receives completions as they are decoded (one process, or world rank 0 without data
 * parallelism): piece(ctx, seq, text, len) with the new text of completion seq (vector-major, as
 * in struct melbo_completions), then done(ctx, seq, text) once with its whole text. The pieces
 * of a completion concatenate to exactly its text. NULL members are skipped.
 */
struct melbo_gen_stream {
    void (*piece)(void *ctx, int seq, const char *text, size_t len);
    void (*done)(void *ctx, int seq, const char *text);
    void *ctx;
};

struct melbo_completions {
    int n_vec, n_prompts;
    struct melbo_gen_result *res; // (n_vec * n_prompts), vector-major
    char **text;                  // (n_vec * n_prompts), owned; "" without a tokenizer
};

/*
 * Generates prompt i under vector v for all pairs on be's decoder (melbo_generate). vectors[v]
 * (d) is added as it is (multiply by the scale first), NULL for none; adapters (NULL, or n_vec
 * adapter rows of shape, NULL for none) apply adapter v instead or as well. tok may be NULL (no
 * text).
 * label names the phase in progress lines ("generate"). With comm (NULL: one process), the jobs are
 * split over the data-parallel groups and world rank 0 gathers every result; only rank 0's out
 * holds them (and prints progress); the other ranks' out is empty. stream (NULL: none) receives
 * the text as it is decoded; it needs a tokenizer and no data parallelism (else it is ignored).
 */
int melbo_completions_run(struct melbo_backend *be, int source_layer,
                          const struct melbo_gen_settings *g, struct melbo_tokenizer *tok,
                          const float *const *vectors, const float *const *adapters,
                          const struct melbo_adapter_shape *shape, int n_vec,
                          int32_t *const *prompts,
                          const int *lens, int n_prompts, const char *label,
                          struct melbo_comm *comm, const struct melbo_gen_stream *stream,
                          struct melbo_completions *out, struct melbo_err *err);

void melbo_completions_free(struct melbo_completions *c);

/* The first line of a completion, at most max_chars bytes (UTF-8 safe), into buf. */
void melbo_first_line(const char *text, char *buf, size_t max_chars);

#ifdef __cplusplus
}
#endif
#endif
