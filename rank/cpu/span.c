/* rank/cpu/span.c - decoder blocks forward and backward on the CPU (rank/cpu/span.h). */
#include "rank/cpu/span.h"

#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "rank/cpu/ops.h"

/* Hands out n floats from *p (a NULL base only counts). */
static float *carve(float **p, size_t *used, size_t n) {
    float *r = *p ? *p + *used : NULL;
    *used += (n + 15) & ~(size_t)15;
    return r;
}

static void span_layout(struct melbo_cpu_span *s, float *base, size_t *used) {
    const struct melbo_model_config *c = &s->m->cfg;
    size_t n = (size_t)s->cap_tok, d = (size_t)c->d_model, ff = (size_t)c->d_ff;
    size_t rows = (size_t)melbo_model_qkv_rows(c), qd = (size_t)c->n_heads * c->head_dim;
    size_t nh = (size_t)(c->n_heads + c->n_kv_heads);
    int n_acts = s->save ? s->b - s->a : 1;
    float *p = base;
    *used = 0;
    for (int i = 0; i < n_acts; i++) {
        struct melbo_cpu_block_acts *A = &s->acts[i];
        A->x = carve(&p, used, n * d);
        A->rstd1 = carve(&p, used, n);
        A->qk_pre = c->qk_norm ? carve(&p, used, n * rows) : NULL;
        A->rstd_qk = c->qk_norm ? carve(&p, used, nh * n) : NULL;
        A->qkv = carve(&p, used, n * rows);
        A->attn = carve(&p, used, n * qd);
        A->lse = carve(&p, used, n * (size_t)c->n_heads);
        A->h = carve(&p, used, n * d);
        A->rstd2 = carve(&p, used, n);
        A->gu = c->n_experts ? NULL : carve(&p, used, n * 2 * ff);
        A->o = c->post_norms ? carve(&p, used, n * d) : NULL;
        A->rstd_o = c->post_norms ? carve(&p, used, n) : NULL;
        A->mo = c->post_norms ? carve(&p, used, n * d) : NULL;
        A->rstd_mo = c->post_norms ? carve(&p, used, n) : NULL;
    }
    s->x1 = carve(&p, used, n * d);
    s->act = carve(&p, used, n * ff);
    s->dgu = s->save ? carve(&p, used, n * 2 * ff) : NULL;
    s->dattn = s->save ? carve(&p, used, n * qd) : NULL;
    s->dqkv = s->save ? carve(&p, used, n * rows) : NULL;
    s->tmp = carve(&p, used, n * d);
}

void melbo_cpu_span_init(struct melbo_cpu_span *s, const struct melbo_model *m, int a, int b,
                         int cap_tok, int save) {
    memset(s, 0, sizeof *s);
    s->m = m;
    s->a = a;
    s->b = b;
    s->cap_tok = cap_tok;
    s->save = save;
    s->acts = melbo_xcalloc((size_t)(save ? (b > a ? b - a : 1) : 1), sizeof *s->acts);
    size_t used = 0;
    span_layout(s, NULL, &used);
    s->arena = melbo_xalloc_f32(used);
    span_layout(s, s->arena, &used);
    if (m->cfg.n_experts) {
        int n_acts = save ? (b > a ? b - a : 1) : 1;
        s->moe = melbo_xcalloc((size_t)n_acts, sizeof *s->moe);
        for (int i = 0; i < n_acts; i++)
            melbo_cpu_moe_init(&s->moe[i], &m->cfg, cap_tok);
    }
}

void melbo_cpu_span_free(struct melbo_cpu_span *s) {
    if (s->moe) {
        int n_acts = s->save ? (s->b > s->a ? s->b - s->a : 1) : 1;
        for (int i = 0; i < n_acts; i++)
            melbo_cpu_moe_free(&s->moe[i]);
        free(s->moe);
    }
    free(s->arena);
    free(s->acts);
    memset(s, 0, sizeof *s);
}

void melbo_cpu_tp_reduce(const struct melbo_model *m, float *buf, size_t n) {
    if (m->tp_size > 1)
        m->reduce.fn(m->reduce.ctx, buf, n);
}

void melbo_cpu_row_parallel(const struct melbo_model *m, const float *in, const float *w,
                            const float *bias, const float *res, float *out, float *tmp, int n,
                            int k) {
    int d = m->cfg.d_model;
    size_t nd = (size_t)n * d;
    if (m->tp_size == 1) {
        if (out != res)
            memcpy(out, res, nd * sizeof *out);
        melbo_cpu_linear(in, w, out, n, k, d, 1.0f);
    } else {
        melbo_cpu_linear(in, w, tmp, n, k, d, 0.0f);
        m->reduce.fn(m->reduce.ctx, tmp, nd);
        for (size_t i = 0; i < nd; i++)
            out[i] = res[i] + tmp[i];
    }
    if (bias)
        melbo_cpu_add_bias(out, bias, n, d);
}

struct melbo_attn_opts melbo_cpu_layer_attn(const struct melbo_model *m, int l) {
    const struct melbo_model_config *c = &m->cfg;
    struct melbo_attn_opts o = {melbo_attn_scale(c), c->attn_softcap,
                                c->layer_sliding[l] ? c->window : 0};
    return o;
}

/* KV heads of the local slice are replicated on this many ranks (1 without replication). */
static int kv_replicas(const struct melbo_model *m) {
    int tp = m->tp_size, nkv = m->full.n_kv_heads;
    return tp > 1 && nkv % tp != 0 ? tp / nkv : 1;
}

void melbo_cpu_qk_norm_whole(const struct melbo_model *m, const struct melbo_layer_weights *w,
                             float *qkv, int n, float *rstd) {
    const struct melbo_model_config *c = &m->cfg;
    int hd = c->head_dim, rows = melbo_model_qkv_rows(c);
    int qd = c->n_heads * hd, kd = c->n_kv_heads * hd;
    float *ss = melbo_xalloc_f32(2 * (size_t)n);
    for (int t = 0; t < n; t++) {
        const float *r = qkv + (size_t)t * rows;
        float a = 0.0f, b = 0.0f;
        for (int i = 0; i < qd; i++)
            a += r[i] * r[i];
        for (int i = 0; i < kd; i++)
            b += r[qd + i] * r[qd + i];
        ss[t] = a;
        ss[n + t] = b;
    }
    melbo_cpu_tp_reduce(m, ss, 2 * (size_t)n);
    float Dq = (float)(m->full.n_heads * hd), Dk = (float)(m->full.n_kv_heads * hd);
    float rep = (float)kv_replicas(m);
    for (int t = 0; t < n; t++) {
        float *r = qkv + (size_t)t * rows;
        float rq = 1.0f / sqrtf(ss[t] / Dq + c->norm_eps);
        float rk = 1.0f / sqrtf(ss[n + t] / rep / Dk + c->norm_eps);
        for (int i = 0; i < qd; i++)
            r[i] = w->q_norm[i] * (r[i] * rq);
        for (int i = 0; i < kd; i++)
            r[qd + i] = w->k_norm[i] * (r[qd + i] * rk);
        if (rstd) {
            rstd[t] = rq;
            rstd[n + t] = rk;
        }
    }
    free(ss);
}

/* The backward of melbo_cpu_qk_norm_whole: dqkv's q and k columns in place, from the saved
 * pre-norm qkv and rstd. A replicated KV head's gradient is partial on each replica (summed by
 * the input-gradient all-reduce), so the shared term is split between them. */
static void qk_norm_whole_dx(const struct melbo_model *m, const struct melbo_layer_weights *w,
                             const float *pre, const float *rstd, float *dqkv, int n) {
    const struct melbo_model_config *c = &m->cfg;
    int hd = c->head_dim, rows = melbo_model_qkv_rows(c);
    int qd = c->n_heads * hd, kd = c->n_kv_heads * hd;
    float *dot = melbo_xalloc_f32(2 * (size_t)n);
    for (int t = 0; t < n; t++) {
        const float *x = pre + (size_t)t * rows, *dy = dqkv + (size_t)t * rows;
        float a = 0.0f, b = 0.0f;
        for (int i = 0; i < qd; i++)
            a += w->q_norm[i] * dy[i] * x[i];
        for (int i = 0; i < kd; i++)
            b += w->k_norm[i] * dy[qd + i] * x[qd + i];
        dot[t] = a;
        dot[n + t] = b;
    }
    melbo_cpu_tp_reduce(m, dot, 2 * (size_t)n);
    float Dq = (float)(m->full.n_heads * hd), Dk = (float)(m->full.n_kv_heads * hd);
    float rep = (float)kv_replicas(m);
    for (int t = 0; t < n; t++) {
        const float *x = pre + (size_t)t * rows;
        float *dy = dqkv + (size_t)t * rows;
        float rq = rstd[t], rk = rstd[n + t];
        float cq = rq * rq * rq * dot[t] / Dq, ck = rk * rk * rk * dot[n + t] / Dk / rep;
        for (int i = 0; i < qd; i++)
            dy[i] = rq * w->q_norm[i] * dy[i] - cq * x[i];
        for (int i = 0; i < kd; i++)
            dy[qd + i] = rk * w->k_norm[i] * dy[qd + i] - ck * x[qd + i];
    }
    free(dot);
}

/* out(n, d) = sum over the tensor-parallel group of in(n, k) w(d, k)^T, + bias. */
static void row_parallel_plain(const struct melbo_model *m, const float *in, const float *w,
                               const float *bias, float *out, int n, int k) {
    int d = m->cfg.d_model;
    melbo_cpu_linear(in, w, out, n, k, d, 0.0f);
    melbo_cpu_tp_reduce(m, out, (size_t)n * d);
    if (bias)
        melbo_cpu_add_bias(out, bias, n, d);
}

/* x(n, d) += y(n, d). */
static void add_into(float *x, const float *y, size_t nd) {
    for (size_t i = 0; i < nd; i++)
        x[i] += y[i];
}

/* One block forward: x (n, d) in place, activations into A. */
static void block_forward(const struct melbo_model *m, int l, struct melbo_cpu_block_acts *A,
                          struct melbo_cpu_moe *moe, float *x1, float *act, float *tmp,
                          const struct melbo_seqs *seqs, float *x) {
    const struct melbo_model_config *c = &m->cfg;
    const struct melbo_layer_weights *w = &m->layers[l];
    int n = seqs->n_tok, d = c->d_model, ff = c->d_ff, hd = c->head_dim;
    int nq = c->n_heads, nkv = c->n_kv_heads, rows = melbo_model_qkv_rows(c), qd = nq * hd;
    size_t nd = (size_t)n * d;
    struct melbo_attn_opts ao = melbo_cpu_layer_attn(m, l);

    memcpy(A->x, x, nd * sizeof *x);
    const float *xin = x;
    if (!c->no_pre_norms) {
        melbo_cpu_rmsnorm(x, w->attn_norm, x1, A->rstd1, n, d, d, c->norm_eps);
        xin = x1;
    }
    melbo_cpu_linear(xin, w->w_qkv, A->qkv, n, d, rows, 0.0f);
    if (w->b_qkv)
        melbo_cpu_add_bias(A->qkv, w->b_qkv, n, rows);
    if (c->qk_norm) {
        memcpy(A->qk_pre, A->qkv, (size_t)n * rows * sizeof(float));
        if (c->qk_norm == 2)
            melbo_cpu_qk_norm_whole(m, w, A->qkv, n, A->rstd_qk);
        else
            for (int h = 0; h < nq + nkv; h++)
                melbo_cpu_rmsnorm(A->qkv + (size_t)h * hd, h < nq ? w->q_norm : w->k_norm,
                                  A->qkv + (size_t)h * hd, A->rstd_qk + (size_t)h * n, n, hd,
                                  rows, c->norm_eps);
    }
    melbo_cpu_rope(A->qkv, rows, 0, nq + nkv, hd, c->rope_dim, melbo_cpu_layer_inv_freq(m, l),
                   seqs, 0);
    melbo_cpu_attention_ex(A->qkv, rows, A->attn, A->lse, nq, nkv, hd, seqs, &ao);
    if (c->post_norms) {
        row_parallel_plain(m, A->attn, w->w_o, w->b_o, A->o, n, qd);
        melbo_cpu_rmsnorm(A->o, w->post_attn_norm, tmp, A->rstd_o, n, d, d, c->norm_eps);
        for (size_t i = 0; i < nd; i++)
            A->h[i] = x[i] + tmp[i];
    } else {
        melbo_cpu_row_parallel(m, A->attn, w->w_o, w->b_o, x, A->h, x1, n, qd);
    }
    xin = A->h;
    if (!c->no_pre_norms) {
        melbo_cpu_rmsnorm(A->h, w->mlp_norm, x1, A->rstd2, n, d, d, c->norm_eps);
        xin = x1;
    }
    if (c->n_experts) { /* x = h + moe(x2) */
        melbo_cpu_moe_forward(m, w, moe, xin, n, tmp);
        for (size_t i = 0; i < nd; i++)
            x[i] = A->h[i] + tmp[i];
        return;
    }
    melbo_cpu_linear(xin, w->w_gu, A->gu, n, d, 2 * ff, 0.0f);
    melbo_cpu_glu((int)c->act, A->gu, act, n, ff);
    if (c->post_norms) {
        row_parallel_plain(m, act, w->w_down, NULL, A->mo, n, ff);
        melbo_cpu_rmsnorm(A->mo, w->post_mlp_norm, tmp, A->rstd_mo, n, d, d, c->norm_eps);
        for (size_t i = 0; i < nd; i++)
            x[i] = A->h[i] + tmp[i];
    } else {
        melbo_cpu_row_parallel(m, act, w->w_down, NULL, A->h, x, x1, n, ff);
    }
}

/* One block backward: dx (n, d) in place, from dLoss/d(output) to dLoss/d(input). */
static void block_backward(const struct melbo_model *m, int l, const struct melbo_cpu_block_acts *A,
                           struct melbo_cpu_moe *moe, struct melbo_cpu_span *s,
                           const struct melbo_seqs *seqs, float *dx) {
    const struct melbo_model_config *c = &m->cfg;
    const struct melbo_layer_weights *w = &m->layers[l];
    int n = seqs->n_tok, d = c->d_model, ff = c->d_ff, hd = c->head_dim;
    int nq = c->n_heads, nkv = c->n_kv_heads, rows = melbo_model_qkv_rows(c), qd = nq * hd;
    size_t nd = (size_t)n * d;
    struct melbo_attn_opts ao = melbo_cpu_layer_attn(m, l);

    /* MLP: out = h + post(act(g) * u) W_down^T), g|u = rmsnorm(h) W_gu^T; or h + moe(rmsnorm(h)) */
    if (c->n_experts) {
        melbo_cpu_moe_backward(m, w, moe, dx, n, s->x1); /* complete over the group */
        melbo_cpu_rmsnorm_dx(A->h, w->mlp_norm, A->rstd2, s->x1, dx, n, d, d, 1);
    } else {
        const float *dmo = dx;
        if (c->post_norms) {
            melbo_cpu_rmsnorm_dx(A->mo, w->post_mlp_norm, A->rstd_mo, dx, s->tmp, n, d, d, 0);
            dmo = s->tmp;
        }
        melbo_cpu_linear_dx(dmo, w->w_down, s->act, n, ff, d, 0.0f);
        melbo_cpu_glu_dx((int)c->act, A->gu, s->act, s->dgu, n, ff);
        melbo_cpu_linear_dx(s->dgu, w->w_gu, s->x1, n, d, 2 * ff, 0.0f);
        melbo_cpu_tp_reduce(m, s->x1, nd); /* column-parallel input gradient */
        if (c->no_pre_norms)
            add_into(dx, s->x1, nd);
        else
            melbo_cpu_rmsnorm_dx(A->h, w->mlp_norm, A->rstd2, s->x1, dx, n, d, d, 1);
    }

    /* Attention: h = x + post(attn(q, k, v) W_o^T), q|k|v = rope(norm(rmsnorm(x) W_qkv^T + b)) */
    const float *dao = dx;
    if (c->post_norms) {
        melbo_cpu_rmsnorm_dx(A->o, w->post_attn_norm, A->rstd_o, dx, s->tmp, n, d, d, 0);
        dao = s->tmp;
    }
    melbo_cpu_linear_dx(dao, w->w_o, s->dattn, n, qd, d, 0.0f);
    melbo_cpu_attention_dx_ex(A->qkv, rows, A->attn, A->lse, s->dattn, s->dqkv, nq, nkv, hd, seqs,
                              &ao);
    melbo_cpu_rope(s->dqkv, rows, 0, nq + nkv, hd, c->rope_dim, melbo_cpu_layer_inv_freq(m, l),
                   seqs, 1);
    if (c->qk_norm == 2)
        qk_norm_whole_dx(m, w, A->qk_pre, A->rstd_qk, s->dqkv, n);
    else if (c->qk_norm)
        for (int h = 0; h < nq + nkv; h++)
            melbo_cpu_rmsnorm_dx(A->qk_pre + (size_t)h * hd, h < nq ? w->q_norm : w->k_norm,
                                 A->rstd_qk + (size_t)h * n, s->dqkv + (size_t)h * hd,
                                 s->dqkv + (size_t)h * hd, n, hd, rows, 0);
    melbo_cpu_linear_dx(s->dqkv, w->w_qkv, s->x1, n, d, rows, 0.0f);
    melbo_cpu_tp_reduce(m, s->x1, nd);
    if (c->no_pre_norms)
        add_into(dx, s->x1, nd);
    else
        melbo_cpu_rmsnorm_dx(A->x, w->attn_norm, A->rstd1, s->x1, dx, n, d, d, 1);
}

void melbo_cpu_span_forward(struct melbo_cpu_span *s, const struct melbo_seqs *seqs, float *x) {
    for (int l = s->a; l < s->b; l++)
        block_forward(s->m, l, &s->acts[s->save ? l - s->a : 0],
                      s->moe ? &s->moe[s->save ? l - s->a : 0] : NULL, s->x1, s->act, s->tmp,
                      seqs, x);
}

void melbo_cpu_span_backward(struct melbo_cpu_span *s, const struct melbo_seqs *seqs, float *dx) {
    for (int l = s->b - 1; l >= s->a; l--)
        block_backward(s->m, l, &s->acts[l - s->a], s->moe ? &s->moe[l - s->a] : NULL, s, seqs,
                       dx);
}

void melbo_cpu_embed(const struct melbo_model *m, const int *ids, int n, float *out) {
    size_t d = (size_t)m->cfg.d_model;
    float sc = m->cfg.embed_scale;
    for (int t = 0; t < n; t++) {
        memcpy(out + (size_t)t * d, m->embed + (size_t)ids[t] * d, d * sizeof *out);
        if (sc != 0.0f) /* Gemma: times sqrt(d) rounded to fp32 */
            for (size_t j = 0; j < d; j++)
                out[(size_t)t * d + j] *= sc;
    }
}

void melbo_cpu_final_norm(const struct melbo_model *m, const float *x, int n, float *y) {
    int d = m->cfg.d_model;
    melbo_cpu_rmsnorm(x, m->final_norm, y, NULL, n, d, d, m->cfg.norm_eps);
}

void melbo_cpu_logits(const struct melbo_model *m, const float *y, int n, float *logits) {
    melbo_cpu_linear(y, m->lm_head, logits, n, m->cfg.d_model, m->cfg.vocab, 0.0f);
    melbo_cpu_softcap(logits, (size_t)n * m->cfg.vocab, m->cfg.final_softcap);
}
