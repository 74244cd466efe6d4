/*
 * rank/method/triage.h - which of a bank's hundreds of vectors (or adapters) matter: scores of
 * their completions, computed after generation and stored in the bank (metadata "triage", JSON).
 *
 * For every learned vector k (n of them), over the bank's prompts:
 *   d          token edit distance (Levenshtein over token ids) between k's completion and the
 *              unsteered one, summed over prompts
 *   z          (d - mean of the random baselines' d) / max(their standard deviation, 1): how far
 *              k moves the output compared with random perturbations of the same size
 *              (population standard deviation)
 *   repeat3    the share of repeated word 3-grams: 1 - distinct / total over k's completions
 *              (words split at white space; 0 with no 3-gram)
 *   zlib_ratio bytes of the completions / bytes of their zlib compression (level 9): near 1 for
 *              prose, large for "1.1.1.1..." (texts under MELBO_TRIAGE_MIN_BYTES give 0)
 *   degenerate repeat3 >= MELBO_TRIAGE_REPEAT3 or zlib_ratio >= MELBO_TRIAGE_ZLIB
 *   cluster    vectors whose completions say the same thing: Jaccard similarity of their sets of
 *              (prompt, word 3-gram) >= MELBO_TRIAGE_JACCARD, joined by single linkage; ids
 *              0, 1, ... in order of each cluster's first member; every vector has one
 * and for every cluster of two or more, the cosine between each pair of its members (vectors:
 * of the vectors; adapters: of their weight changes B A, the caller's cosine function).
 *
 * The result is deterministic: it depends on the texts, ids and cosines only.
 */
#ifndef MELBO_RANK_METHOD_TRIAGE_H
#define MELBO_RANK_METHOD_TRIAGE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MELBO_TRIAGE_JACCARD 0.5
#define MELBO_TRIAGE_REPEAT3 0.5
#define MELBO_TRIAGE_ZLIB 3.0
#define MELBO_TRIAGE_MIN_BYTES 32

/* Completions laid out as the generator makes them: (n + 1 + K) rows of n_prompts, row-major:
 * the n learned vectors, then the unsteered model, then the K random baselines. */
struct melbo_triage_input {
    int n, K, n_prompts;
    const char *const *text;  // ((n + 1 + K) * n_prompts) completion texts, "" without tokenizer
    const int32_t *const *ids; // same layout: the generated token ids
    const int *n_ids;          // same layout: their counts
    /* cosine between learned vectors i and j (for the clusters) */
    double (*cosine)(void *ctx, int i, int j);
    void *ctx;
};

/* Levenshtein distance between token sequences a (na) and b (nb). */
int melbo_edit_distance(const int32_t *a, int na, const int32_t *b, int nb);

/* The share of repeated word 3-grams of the n texts (1 - distinct / total), 0 without one. */
double melbo_repeat3(const char *const *texts, int n);

/* Bytes of the n texts together / bytes of their zlib compression; 0 under
 * MELBO_TRIAGE_MIN_BYTES bytes. */
double melbo_zlib_ratio(const char *const *texts, int n);

/*
 * The triage of in as a JSON object (string, caller frees), or "null" (also newly allocated)
 * when there is nothing to compare with: no completions (n_prompts == 0) or no random baseline
 * (K == 0).
 */
char *melbo_triage_json(const struct melbo_triage_input *in);

#ifdef __cplusplus
}
#endif
#endif
