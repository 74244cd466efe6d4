/* rank/generate/sampler.c - greedy and seeded sampling (rank/generate/sampler.h). */
#include "rank/generate/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"

int32_t melbo_argmax(const float *x, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

size_t melbo_sampler_scratch_bytes(int V) { return (size_t)V * (sizeof(float) + sizeof(int32_t)); }

static int cmp_desc(const void *a, const void *b, void *keys) {
    const float *k = keys;
    float x = k[*(const int32_t *)a], y = k[*(const int32_t *)b];
    if (x != y)
        return x > y ? -1 : 1;
    return *(const int32_t *)a - *(const int32_t *)b;
}

int32_t melbo_sample(const struct melbo_gen_settings *g, float *logits, int V,
                     const int32_t *history, int n_hist, uint64_t stream, int step, void *scratch) {
    if (g->repetition_penalty != 1.0) {
        float pen = (float)g->repetition_penalty;
        /* each distinct token once: penalising twice would compound */
        for (int i = 0; i < n_hist; i++) {
            int32_t t = history[i];
            int seen = 0;
            for (int j = 0; j < i && !seen; j++)
                seen = history[j] == t;
            if (!seen && t >= 0 && t < V)
                logits[t] = logits[t] < 0 ? logits[t] * pen : logits[t] / pen;
        }
    }
    if (g->temperature <= 0.0 || g->top_k == 1)
        return melbo_argmax(logits, V);
    float inv_t = (float)(1.0 / g->temperature);
    for (int i = 0; i < V; i++)
        logits[i] *= inv_t;
    /* candidates sorted by logit, descending */
    int32_t *order = (int32_t *)scratch;
    float *prob = (float *)(order + V);
    for (int i = 0; i < V; i++)
        order[i] = i;
    qsort_r(order, (size_t)V, sizeof *order, cmp_desc, logits);
    int n = V;
    if (g->top_k > 0 && g->top_k < n) {
        float kth = logits[order[g->top_k - 1]];
        n = g->top_k;
        while (n < V && logits[order[n]] == kth) /* ties with the k-th are kept */
            n++;
    }
    double mx = logits[order[0]], sum = 0;
    for (int i = 0; i < n; i++) {
        prob[i] = (float)exp((double)logits[order[i]] - mx);
        sum += prob[i];
    }
    if (g->top_p < 1.0) {
        double cum = 0;
        int keep = n;
        for (int i = 0; i < n; i++) {
            cum += prob[i] / sum;
            if (cum >= g->top_p) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
        sum = 0;
        for (int i = 0; i < n; i++)
            sum += prob[i];
    }
    uint32_t key[2] = {(uint32_t)g->seed, (uint32_t)(g->seed >> 32)};
    uint32_t ctr[4] = {(uint32_t)step, 0x6d656c62u /* "melb" */, (uint32_t)stream,
                       (uint32_t)(stream >> 32)}, r[4];
    melbo_philox4x32(ctr, key, r);
    double u = ((double)(((uint64_t)r[0] << 32 | r[1]) >> 11) / 9007199254740992.0) * sum;
    double acc = 0;
    for (int i = 0; i < n; i++) {
        acc += prob[i];
        if (u < acc)
            return order[i];
    }
    return order[n - 1];
}
