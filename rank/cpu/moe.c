/* rank/cpu/moe.c - the mixture-of-experts MLP, forward and backward (rank/cpu/moe.h). */
#include "rank/cpu/moe.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "rank/cpu/ops.h"
#include "rank/cpu/span.h"

void melbo_cpu_moe_init(struct melbo_cpu_moe *s, const struct melbo_model_config *c, int cap) {
    size_t n = (size_t)cap, k = (size_t)c->top_k, E = (size_t)c->n_experts;
    size_t d = (size_t)c->d_model, ff = (size_t)c->d_ff;
    memset(s, 0, sizeof *s);
    s->cap = cap;
    s->idx = melbo_xmalloc(sizeof(int) * n * k);
    s->perm = melbo_xmalloc(sizeof(int) * n * k);
    s->off = melbo_xmalloc(sizeof(int) * (E + 1));
    s->rw = melbo_xalloc_f32(n * k);
    s->probs = melbo_xalloc_f32(n * E);
    s->gu = melbo_xalloc_f32(n * k * 2 * ff);
    s->xg = melbo_xalloc_f32(n * d);
    s->y = melbo_xalloc_f32(n * d);
    s->act = melbo_xalloc_f32(n * ff);
    s->dgu = melbo_xalloc_f32(n * 2 * ff);
    s->g = melbo_xalloc_f32(n * k);
    size_t sff = (size_t)c->d_ff_shared;
    if (sff) {
        s->sh_gu = melbo_xalloc_f32(n * 2 * sff);
        s->sh_a = melbo_xalloc_f32(n * sff);
        s->sh_da = melbo_xalloc_f32(n * sff);
        s->sh_dgu = melbo_xalloc_f32(n * 2 * sff);
        s->sig = melbo_xalloc_f32(n);
        s->gs = melbo_xalloc_f32(n);
    }
}

void melbo_cpu_moe_free(struct melbo_cpu_moe *s) {
    free(s->idx);
    free(s->perm);
    free(s->off);
    free(s->rw);
    free(s->probs);
    free(s->gu);
    free(s->xg);
    free(s->y);
    free(s->act);
    free(s->dgu);
    free(s->g);
    free(s->sh_gu);
    free(s->sh_a);
    free(s->sh_da);
    free(s->sh_dgu);
    free(s->sig);
    free(s->gs);
    memset(s, 0, sizeof *s);
}

/* Softmax of each router row in place, the top-k (largest first, lower index on ties), their
 * weights, and the grouping of (token, slot) entries by expert. */
static void route(const struct melbo_model_config *c, struct melbo_cpu_moe *s, int n) {
    int E = c->n_experts, k = c->top_k;
    for (int t = 0; t < n; t++) {
        float *p = s->probs + (size_t)t * E, mx = -INFINITY, sum = 0.0f;
        for (int e = 0; e < E; e++)
            mx = p[e] > mx ? p[e] : mx;
        for (int e = 0; e < E; e++) {
            p[e] = expf(p[e] - mx);
            sum += p[e];
        }
        for (int e = 0; e < E; e++)
            p[e] /= sum;
        int *idx = s->idx + (size_t)t * k;
        float *rw = s->rw + (size_t)t * k, tot = 0.0f;
        for (int j = 0; j < k; j++) {
            int best = -1;
            for (int e = 0; e < E; e++) {
                int taken = 0;
                for (int q = 0; q < j; q++)
                    taken |= idx[q] == e;
                if (!taken && (best < 0 || p[e] > p[best]))
                    best = e;
            }
            idx[j] = best;
            rw[j] = p[best];
            tot += p[best];
        }
        if (c->norm_topk)
            for (int j = 0; j < k; j++)
                rw[j] /= tot;
    }
    memset(s->off, 0, sizeof(int) * (size_t)(E + 1));
    for (int j = 0; j < n * k; j++)
        s->off[s->idx[j] + 1]++;
    for (int e = 0; e < E; e++)
        s->off[e + 1] += s->off[e];
    int *fill = melbo_xmalloc(sizeof(int) * (size_t)E);
    memcpy(fill, s->off, sizeof(int) * (size_t)E);
    for (int j = 0; j < n * k; j++)
        s->perm[fill[s->idx[j]]++] = j;
    free(fill);
}

void melbo_cpu_moe_forward(const struct melbo_model *m, const struct melbo_layer_weights *w,
                           struct melbo_cpu_moe *s, const float *x, int n, float *out) {
    const struct melbo_model_config *c = &m->cfg;
    int E = c->n_experts, k = c->top_k, d = c->d_model, ff = c->d_ff;
    melbo_cpu_linear(x, w->w_router, s->probs, n, d, E, 0.0f);
    route(c, s, n);
    memset(out, 0, sizeof(float) * (size_t)n * d);
    for (int e = 0; e < E; e++) {
        int r0 = s->off[e], me = s->off[e + 1] - r0;
        if (me == 0)
            continue;
        for (int r = 0; r < me; r++)
            memcpy(s->xg + (size_t)r * d, x + (size_t)(s->perm[r0 + r] / k) * d,
                   sizeof(float) * (size_t)d);
        float *gu = s->gu + (size_t)r0 * 2 * ff;
        melbo_cpu_linear(s->xg, w->w_gu_e + (size_t)e * 2 * ff * d, gu, me, d, 2 * ff, 0.0f);
        melbo_cpu_glu((int)c->act, gu, s->act, me, ff);
        melbo_cpu_linear(s->act, w->w_down_e + (size_t)e * d * ff, s->y, me, ff, d, 0.0f);
        for (int r = 0; r < me; r++) {
            int j = s->perm[r0 + r];
            float wt = s->rw[j], *o = out + (size_t)(j / k) * d;
            const float *y = s->y + (size_t)r * d;
            for (int i = 0; i < d; i++)
                o[i] += wt * y[i];
        }
    }
    if (w->w_sh_gu) { /* out += sigmoid(x . w_sh_gate) shared_mlp(x) */
        int sff = c->d_ff_shared;
        melbo_cpu_linear(x, w->w_sh_gu, s->sh_gu, n, d, 2 * sff, 0.0f);
        melbo_cpu_glu((int)c->act, s->sh_gu, s->sh_a, n, sff);
        melbo_cpu_linear(s->sh_a, w->w_sh_down, s->y, n, sff, d, 0.0f);
        for (int t = 0; t < n; t++) {
            const float *xr = x + (size_t)t * d, *y = s->y + (size_t)t * d;
            float z = 0.0f, *o = out + (size_t)t * d;
            for (int i = 0; i < d; i++)
                z += xr[i] * w->w_sh_gate[i];
            float sg = 1.0f / (1.0f + expf(-z));
            s->sig[t] = sg;
            for (int i = 0; i < d; i++)
                o[i] += sg * y[i];
        }
    }
    melbo_cpu_tp_reduce(m, out, (size_t)n * d);
}

void melbo_cpu_moe_backward(const struct melbo_model *m, const struct melbo_layer_weights *w,
                            struct melbo_cpu_moe *s, const float *dout, int n, float *dx) {
    const struct melbo_model_config *c = &m->cfg;
    int E = c->n_experts, k = c->top_k, d = c->d_model, ff = c->d_ff;
    memset(dx, 0, sizeof(float) * (size_t)n * d);
    for (int e = 0; e < E; e++) {
        int r0 = s->off[e], me = s->off[e + 1] - r0;
        if (me == 0)
            continue;
        for (int r = 0; r < me; r++)
            memcpy(s->xg + (size_t)r * d, dout + (size_t)(s->perm[r0 + r] / k) * d,
                   sizeof(float) * (size_t)d);
        const float *gu = s->gu + (size_t)r0 * 2 * ff;
        /* dact before the routing weight: dout D_e; g = <dout, y_e> = <that, act> */
        melbo_cpu_linear_dx(s->xg, w->w_down_e + (size_t)e * d * ff, s->act, me, ff, d, 0.0f);
        melbo_cpu_glu((int)c->act, gu, s->dgu, me, ff); /* act again, into scratch */
        for (int r = 0; r < me; r++) {
            int j = s->perm[r0 + r];
            float *da = s->act + (size_t)r * ff, dot = 0.0f;
            const float *a = s->dgu + (size_t)r * ff;
            for (int i = 0; i < ff; i++)
                dot += a[i] * da[i];
            s->g[j] = dot;
            for (int i = 0; i < ff; i++)
                da[i] *= s->rw[j];
        }
        melbo_cpu_glu_dx((int)c->act, gu, s->act, s->dgu, me, ff);
        melbo_cpu_linear_dx(s->dgu, w->w_gu_e + (size_t)e * 2 * ff * d, s->y, me, d, 2 * ff,
                            0.0f);
        for (int r = 0; r < me; r++) {
            float *o = dx + (size_t)(s->perm[r0 + r] / k) * d;
            const float *y = s->y + (size_t)r * d;
            for (int i = 0; i < d; i++)
                o[i] += y[i];
        }
    }
    if (w->w_sh_gu) { /* the shared expert: its input gradient, and gs = <dout, its output> */
        int sff = c->d_ff_shared;
        melbo_cpu_linear_dx(dout, w->w_sh_down, s->sh_da, n, sff, d, 0.0f);
        melbo_cpu_glu((int)c->act, s->sh_gu, s->sh_a, n, sff);
        for (int t = 0; t < n; t++) {
            float *da = s->sh_da + (size_t)t * sff, dot = 0.0f;
            const float *a = s->sh_a + (size_t)t * sff;
            for (int i = 0; i < sff; i++)
                dot += a[i] * da[i];
            s->gs[t] = dot;
            for (int i = 0; i < sff; i++)
                da[i] *= s->sig[t];
        }
        melbo_cpu_glu_dx((int)c->act, s->sh_gu, s->sh_da, s->sh_dgu, n, sff);
        melbo_cpu_linear_dx(s->sh_dgu, w->w_sh_gu, dx, n, d, 2 * sff, 1.0f);
    }
    /* the experts' columns are split over the group: sum their input gradients and g */
    melbo_cpu_tp_reduce(m, dx, (size_t)n * d);
    melbo_cpu_tp_reduce(m, s->g, (size_t)n * k);
    if (w->w_sh_gu) { /* through the gate: d sigmoid(z) = sig (1 - sig) dz, z = x . w_sh_gate */
        melbo_cpu_tp_reduce(m, s->gs, (size_t)n);
        for (int t = 0; t < n; t++) {
            float dz = s->gs[t] * s->sig[t] * (1.0f - s->sig[t]), *o = dx + (size_t)t * d;
            for (int i = 0; i < d; i++)
                o[i] += dz * w->w_sh_gate[i];
        }
    }
    /* router: dz (n, E), then dx += dz W_r (replicated, added after the sums) */
    float *dz = melbo_xalloc_f32((size_t)n * E);
    for (int t = 0; t < n; t++) {
        const int *idx = s->idx + (size_t)t * k;
        const float *rw = s->rw + (size_t)t * k, *g = s->g + (size_t)t * k;
        const float *p = s->probs + (size_t)t * E;
        float *z = dz + (size_t)t * E, mean = 0.0f;
        for (int j = 0; j < k; j++)
            mean += rw[j] * g[j];
        if (c->norm_topk) { /* w = softmax over S of the logits */
            memset(z, 0, sizeof(float) * (size_t)E);
            for (int j = 0; j < k; j++)
                z[idx[j]] = rw[j] * (g[j] - mean);
        } else { /* w = p on S: dz_e = p_e (g~_e - sum_S p g) */
            for (int e = 0; e < E; e++)
                z[e] = -p[e] * mean;
            for (int j = 0; j < k; j++)
                z[idx[j]] += p[idx[j]] * g[j];
        }
    }
    melbo_cpu_linear_dx(dz, w->w_router, dx, n, d, E, 1.0f);
    free(dz);
}

double melbo_cpu_moe_flops(const struct melbo_model_config *c, int n) {
    double per = 6.0 * c->d_model * (double)c->d_ff * c->top_k; /* 3 products, 2 flops each */
    double router = 2.0 * c->d_model * (double)c->n_experts;
    router += 6.0 * c->d_model * (double)c->d_ff_shared + 2.0 * c->d_model; /* shared expert */
    return 2.0 * (double)n * (per + router); /* forward + input-gradient backward */
}
