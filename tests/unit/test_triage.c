/*
 * tests/unit/test_triage.c - the triage of a bank's completions (rank/method/triage.h) on a small
 * case worked out by hand:
 *
 *   unsteered  ids 1 2 3 4            "a b c d e"
 *   vector 0   ids 1 2 3 4            "a b c d e"                    d 0
 *   vector 1   ids 5 6 7 8            "red fox jumps over the dog"   d 4
 *   vector 2   ids 5 6 7              "red fox jumps over the cat"   d 4 (3 substitutions, 1 insertion)
 *   vector 3   ids 1 1 1 1 1 1        "1.1.1.…" (79 bytes)           d 5, zlib ratio > 3: degenerate
 *   vector 4   ids 7 7 7 7 7 7        "the the the the the the"      d 6, repeat3 3/4: degenerate
 *   random 0   ids 1 2 3 9            d 1
 *   random 1   ids 1 9 9 4            d 2      -> mean 1.5, std 0.5, scale max(0.5, 1) = 1
 *
 * z = d - 1.5. Vectors 1 and 2 share 3 of 5 distinct word 3-grams (Jaccard 0.6 >= 0.5): one
 * cluster; the others are alone: clusters 0, 1, 1, 2, 3.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rank/method/triage.h"
#include "tests/test.h"

static double fixed_cosine(void *ctx, int i, int j) {
    (void)ctx;
    return i == 1 && j == 2 ? 0.25 : 0.0;
}

static double num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    ASSERT(cJSON_IsNumber(v));
    return v->valuedouble;
}

int main(void) {
    static const int32_t u[] = {1, 2, 3, 4}, l0[] = {1, 2, 3, 4}, l1[] = {5, 6, 7, 8},
                         l2[] = {5, 6, 7}, l3[] = {1, 1, 1, 1, 1, 1}, l4[] = {7, 7, 7, 7, 7, 7},
                         r0[] = {1, 2, 3, 9}, r1[] = {1, 9, 9, 4};
    const char *text[] = {"a b c d e",
                          "red fox jumps over the dog",
                          "red fox jumps over the cat",
                          "1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1.1"
                          ".1.1.1.1",
                          "the the the the the the",
                          "a b c d e",
                          "a b c x",
                          "a x x d"};
    const int32_t *ids[] = {l0, l1, l2, l3, l4, u, r0, r1};
    int n_ids[] = {4, 4, 3, 6, 6, 4, 4, 4};
    ASSERT_EQ(melbo_edit_distance(l2, 3, u, 4), 4);
    ASSERT_EQ(melbo_edit_distance(l3, 6, u, 4), 5);
    ASSERT_EQ(melbo_edit_distance(u, 0, u, 4), 4);
    struct melbo_triage_input in = {5, 2, 1, text, ids, n_ids, fixed_cosine, NULL};
    char *s = melbo_triage_json(&in);
    cJSON *o = cJSON_Parse(s);
    ASSERT(o != NULL);
    const cJSON *base = cJSON_GetObjectItemCaseSensitive(o, "baselines");
    CHECK_REL("baselines' mean d", fabs(num(base, "mean") - 1.5), 1e-12);
    CHECK_REL("baselines' std", fabs(num(base, "std") - 0.5), 1e-12);
    static const double d[] = {0, 4, 4, 5, 6};
    static const int cluster[] = {0, 1, 1, 2, 3}, degenerate[] = {0, 0, 0, 1, 1};
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(o, "items");
    ASSERT_EQ(cJSON_GetArraySize(items), 5);
    for (int k = 0; k < 5; k++) {
        const cJSON *it = cJSON_GetArrayItem(items, k);
        ASSERT(num(it, "d") == d[k]);
        ASSERT(fabs(num(it, "z") - (d[k] - 1.5)) < 1e-12);
        ASSERT_EQ((int)num(it, "cluster"), cluster[k]);
        ASSERT_EQ(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "degenerate")), degenerate[k]);
    }
    const cJSON *i3 = cJSON_GetArrayItem(items, 3), *i4 = cJSON_GetArrayItem(items, 4);
    ASSERT(num(i3, "zlib_ratio") > 3.0 && num(i3, "repeat3") == 0.0);
    ASSERT(fabs(num(i4, "repeat3") - 0.75) < 1e-12 && num(i4, "zlib_ratio") == 0.0);
    ASSERT(num(cJSON_GetArrayItem(items, 1), "zlib_ratio") == 0.0); /* under 32 bytes */
    const cJSON *cl = cJSON_GetObjectItemCaseSensitive(o, "clusters");
    ASSERT_EQ(cJSON_GetArraySize(cl), 1);
    const cJSON *c0 = cJSON_GetArrayItem(cl, 0);
    ASSERT_EQ((int)num(c0, "id"), 1);
    ASSERT(num(c0, "min_cosine") == 0.25 && num(c0, "max_cosine") == 0.25);
    ASSERT_EQ(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(c0, "members")), 2);
    cJSON_Delete(o);
    free(s);
    /* nothing to compare with: null */
    in.K = 0;
    s = melbo_triage_json(&in);
    ASSERT(strcmp(s, "null") == 0);
    free(s);
    const char *prose[] = {"The quick brown fox jumps over the lazy dog, and then it runs into "
                           "the forest to find something to eat before night falls."};
    ASSERT(melbo_zlib_ratio(prose, 1) < 2.0);
    fprintf(stderr, "ok   triage: distances, z, repeated 3-grams, zlib ratio, clusters, null\n");
    return test_exit_code();
}
