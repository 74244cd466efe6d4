/* rank/method/triage.c - scores of a bank's completions (rank/method/triage.h). */
#include "rank/method/triage.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "common/mem.h"

int melbo_edit_distance(const int32_t *a, int na, const int32_t *b, int nb) {
    int *row = melbo_xmalloc(sizeof(int) * (size_t)(nb + 1));
    for (int j = 0; j <= nb; j++)
        row[j] = j;
    for (int i = 1; i <= na; i++) {
        int diag = row[0];
        row[0] = i;
        for (int j = 1; j <= nb; j++) {
            int up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            best = up + 1 < best ? up + 1 : best;
            best = row[j - 1] + 1 < best ? row[j - 1] + 1 : best;
            diag = up;
            row[j] = best;
        }
    }
    int d = row[nb];
    free(row);
    return d;
}

/* ---------------------------------------------------------------------------------------------
 * Word 3-grams: "prompt\x1fw1\x1fw2\x1fw3" strings, sorted, so sets compare by merging.
 */

struct grams {
    char **g;
    int n;
};

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Appends the word 3-grams of text (tagged with prompt i) to gs. */
static void add_grams(struct grams *gs, const char *text, int i) {
    const char *w[3] = {NULL, NULL, NULL};
    size_t wl[3] = {0, 0, 0};
    int nw = 0;
    for (const char *p = text; *p;) {
        while (*p && isspace((unsigned char)*p))
            p++;
        if (!*p)
            break;
        const char *s = p;
        while (*p && !isspace((unsigned char)*p))
            p++;
        w[0] = w[1], wl[0] = wl[1];
        w[1] = w[2], wl[1] = wl[2];
        w[2] = s, wl[2] = (size_t)(p - s);
        if (++nw < 3)
            continue;
        size_t len = 16 + wl[0] + wl[1] + wl[2];
        char *g = melbo_xmalloc(len);
        snprintf(g, len, "%d\x1f%.*s\x1f%.*s\x1f%.*s", i, (int)wl[0], w[0], (int)wl[1], w[1],
                 (int)wl[2], w[2]);
        gs->g = melbo_xrealloc(gs->g, sizeof(char *) * (size_t)(gs->n + 1));
        gs->g[gs->n++] = g;
    }
}

static void grams_free(struct grams *gs) {
    for (int k = 0; k < gs->n; k++)
        free(gs->g[k]);
    free(gs->g);
    memset(gs, 0, sizeof *gs);
}

/* Sorts gs and removes duplicates; returns how many there were before. */
static int grams_unique(struct grams *gs) {
    int total = gs->n, m = 0;
    if (gs->n > 1) /* none or one: nothing to sort (and g may be NULL) */
        qsort(gs->g, (size_t)gs->n, sizeof(char *), cmp_str);
    for (int k = 0; k < gs->n; k++) {
        if (m > 0 && strcmp(gs->g[m - 1], gs->g[k]) == 0)
            free(gs->g[k]);
        else
            gs->g[m++] = gs->g[k];
    }
    gs->n = m;
    return total;
}

double melbo_repeat3(const char *const *texts, int n) {
    struct grams gs = {NULL, 0};
    for (int i = 0; i < n; i++)
        add_grams(&gs, texts[i], i);
    int total = grams_unique(&gs);
    double r = total > 0 ? 1.0 - (double)gs.n / total : 0.0;
    grams_free(&gs);
    return r;
}

double melbo_zlib_ratio(const char *const *texts, int n) {
    size_t len = 0;
    for (int i = 0; i < n; i++)
        len += strlen(texts[i]);
    if (len < MELBO_TRIAGE_MIN_BYTES)
        return 0.0;
    char *all = melbo_xmalloc(len + 1);
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        size_t l = strlen(texts[i]);
        memcpy(all + o, texts[i], l);
        o += l;
    }
    uLongf clen = compressBound((uLong)len);
    unsigned char *z = melbo_xmalloc(clen);
    double r = 0.0;
    if (compress2(z, &clen, (const Bytef *)all, (uLong)len, 9) == Z_OK && clen > 0)
        r = (double)len / (double)clen;
    free(z);
    free(all);
    return r;
}

/* |a ∩ b| / |a ∪ b| of sorted unique sets; two empty sets: 1 when equal texts (same), else 0. */
static double jaccard(const struct grams *a, const struct grams *b, int same_text) {
    if (a->n == 0 && b->n == 0)
        return same_text ? 1.0 : 0.0;
    int i = 0, j = 0, both = 0;
    while (i < a->n && j < b->n) {
        int c = strcmp(a->g[i], b->g[j]);
        both += c == 0;
        i += c <= 0;
        j += c >= 0;
    }
    return (double)both / (double)(a->n + b->n - both);
}

static int find(int *parent, int x) {
    while (parent[x] != x)
        x = parent[x] = parent[parent[x]];
    return x;
}

/* ---------------------------------------------------------------------------------------------
 * The whole triage.
 */

/* d of row v (learned or baseline) against the unsteered row u, summed over prompts. */
static double distance_of(const struct melbo_triage_input *in, int v, int u) {
    double d = 0;
    for (int i = 0; i < in->n_prompts; i++) {
        int a = v * in->n_prompts + i, b = u * in->n_prompts + i;
        d += melbo_edit_distance(in->ids[a], in->n_ids[a], in->ids[b], in->n_ids[b]);
    }
    return d;
}

/* 1 when rows v and w have the same texts for every prompt. */
static int same_texts(const struct melbo_triage_input *in, int v, int w) {
    for (int i = 0; i < in->n_prompts; i++)
        if (strcmp(in->text[v * in->n_prompts + i], in->text[w * in->n_prompts + i]) != 0)
            return 0;
    return 1;
}

static cJSON *clusters_json(const struct melbo_triage_input *in, const int *cluster, int n_cl) {
    cJSON *arr = cJSON_CreateArray();
    for (int c = 0; c < n_cl; c++) {
        cJSON *members = cJSON_CreateArray(), *cos = cJSON_CreateArray();
        int count = 0;
        double lo = 1.0, hi = -1.0;
        for (int i = 0; i < in->n; i++) {
            if (cluster[i] != c)
                continue;
            cJSON_AddItemToArray(members, cJSON_CreateNumber(i));
            count++;
            for (int j = i + 1; j < in->n && in->cosine; j++) {
                if (cluster[j] != c)
                    continue;
                double x = in->cosine(in->ctx, i, j);
                lo = x < lo ? x : lo;
                hi = x > hi ? x : hi;
                cJSON *t = cJSON_CreateArray();
                cJSON_AddItemToArray(t, cJSON_CreateNumber(i));
                cJSON_AddItemToArray(t, cJSON_CreateNumber(j));
                cJSON_AddItemToArray(t, cJSON_CreateNumber(x));
                cJSON_AddItemToArray(cos, t);
            }
        }
        if (count < 2) {
            cJSON_Delete(members);
            cJSON_Delete(cos);
            continue;
        }
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", c);
        cJSON_AddItemToObject(o, "members", members);
        cJSON_AddItemToObject(o, "cosines", cos);
        if (in->cosine) {
            cJSON_AddNumberToObject(o, "min_cosine", lo);
            cJSON_AddNumberToObject(o, "max_cosine", hi);
        }
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

char *melbo_triage_json(const struct melbo_triage_input *in) {
    if (in->n_prompts == 0 || in->K == 0 || in->n == 0)
        return melbo_xstrdup("null");
    int n = in->n, K = in->K, P = in->n_prompts, u = n; /* row n is the unsteered model */
    /* the baselines' distances */
    double mean = 0, var = 0, *bd = melbo_xmalloc(sizeof(double) * (size_t)K);
    for (int k = 0; k < K; k++)
        mean += (bd[k] = distance_of(in, n + 1 + k, u)) / K;
    for (int k = 0; k < K; k++)
        var += (bd[k] - mean) * (bd[k] - mean) / K;
    double sd = sqrt(var), scale = sd > 1.0 ? sd : 1.0;
    /* every learned vector's 3-gram set, then the clusters by single linkage */
    struct grams *gs = melbo_xcalloc((size_t)n, sizeof *gs);
    int *parent = melbo_xmalloc(sizeof(int) * (size_t)n), *cluster = melbo_xmalloc(sizeof(int) * (size_t)n);
    for (int v = 0; v < n; v++) {
        for (int i = 0; i < P; i++)
            add_grams(&gs[v], in->text[v * P + i], i);
        grams_unique(&gs[v]);
        parent[v] = v;
    }
    for (int v = 0; v < n; v++)
        for (int w = v + 1; w < n; w++)
            if (jaccard(&gs[v], &gs[w], same_texts(in, v, w)) >= MELBO_TRIAGE_JACCARD)
                parent[find(parent, w)] = find(parent, v);
    int n_cl = 0;
    for (int v = 0; v < n; v++)
        cluster[v] = -1;
    for (int v = 0; v < n; v++) { /* ids in order of first member */
        int root = find(parent, v);
        if (cluster[root] < 0)
            cluster[root] = n_cl++;
        cluster[v] = cluster[root];
    }
    cJSON *o = cJSON_CreateObject(), *items = cJSON_CreateArray(), *base = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "version", 1);
    cJSON_AddStringToObject(o, "distance", "token edit distance to the unsteered completion, "
                                           "summed over prompts");
    cJSON *bdj = cJSON_AddArrayToObject(base, "d");
    for (int k = 0; k < K; k++)
        cJSON_AddItemToArray(bdj, cJSON_CreateNumber(bd[k]));
    cJSON_AddNumberToObject(base, "mean", mean);
    cJSON_AddNumberToObject(base, "std", sd);
    cJSON_AddItemToObject(o, "baselines", base);
    cJSON *th = cJSON_AddObjectToObject(o, "thresholds");
    cJSON_AddNumberToObject(th, "jaccard", MELBO_TRIAGE_JACCARD);
    cJSON_AddNumberToObject(th, "repeat3", MELBO_TRIAGE_REPEAT3);
    cJSON_AddNumberToObject(th, "zlib_ratio", MELBO_TRIAGE_ZLIB);
    for (int v = 0; v < n; v++) {
        double d = distance_of(in, v, u);
        double r3 = melbo_repeat3(in->text + (size_t)v * P, P);
        double zr = melbo_zlib_ratio(in->text + (size_t)v * P, P);
        cJSON *it = cJSON_CreateObject();
        cJSON_AddNumberToObject(it, "index", v);
        cJSON_AddNumberToObject(it, "d", d);
        cJSON_AddNumberToObject(it, "z", (d - mean) / scale);
        cJSON_AddNumberToObject(it, "repeat3", r3);
        cJSON_AddNumberToObject(it, "zlib_ratio", zr);
        cJSON_AddBoolToObject(it, "degenerate", r3 >= MELBO_TRIAGE_REPEAT3 || zr >= MELBO_TRIAGE_ZLIB);
        cJSON_AddNumberToObject(it, "cluster", cluster[v]);
        cJSON_AddItemToArray(items, it);
    }
    cJSON_AddItemToObject(o, "items", items);
    cJSON_AddItemToObject(o, "clusters", clusters_json(in, cluster, n_cl));
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    for (int v = 0; v < n; v++)
        grams_free(&gs[v]);
    free(gs);
    free(parent);
    free(cluster);
    free(bd);
    return s;
}
