/*
 * tests/unit/golden.h - reading the goldens written by tests/golden/make_goldens.py.
 *
 * A golden file is a safetensors file (read with melbo's own reader) with tensors
 * input_ids.{i} I32 [T_i], hidden.{i}.{k} F32 [T_i, d] (HF hidden_states[k], k = 0..L),
 * logits.{i}, functional.{i} and grad.{i}, and metadata source_layer, target_layer, n_prompts.
 */
#ifndef MELBO_TESTS_UNIT_GOLDEN_H
#define MELBO_TESTS_UNIT_GOLDEN_H

#include <stdio.h>
#include <stdlib.h>

#include "rank/model/safetensors.h"
#include "tests/test.h"

/* The F32 tensor name, which must exist and have n_elems elements (0: any). Aborts otherwise. */
static inline const float *golden_f32(const struct melbo_st_file *g, const char *name,
                                      int64_t n_elems) {
    const struct melbo_st_tensor *t = melbo_st_find(g, name);
    if (t == NULL || t->dtype != MELBO_DTYPE_F32) {
        fprintf(stderr, "golden %s: no F32 tensor '%s'\n", g->path, name);
        abort();
    }
    if (n_elems && melbo_st_numel(t) != n_elems) {
        fprintf(stderr, "golden %s: '%s' has %lld elements, expected %lld\n", g->path, name,
                (long long)melbo_st_numel(t), (long long)n_elems);
        abort();
    }
    return t->data;
}

static inline int golden_meta_int(const struct melbo_st_file *g, const char *key) {
    const char *v = melbo_st_meta(g, key);
    if (v == NULL) {
        fprintf(stderr, "golden %s: no metadata '%s'\n", g->path, key);
        abort();
    }
    return atoi(v);
}

/* The ids of prompt i as ints (caller frees) and its length. */
static inline int *golden_ids(const struct melbo_st_file *g, int i, int *len) {
    char name[64];
    snprintf(name, sizeof name, "input_ids.%d", i);
    const struct melbo_st_tensor *t = melbo_st_find(g, name);
    if (t == NULL || t->dtype != MELBO_DTYPE_I32) {
        fprintf(stderr, "golden %s: no I32 tensor '%s'\n", g->path, name);
        abort();
    }
    *len = (int)melbo_st_numel(t);
    int *ids = malloc(sizeof(int) * (size_t)*len);
    memcpy(ids, t->data, sizeof(int) * (size_t)*len);
    return ids;
}

#endif
