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
        A->gu = carve(&p, used, n * 2 * ff);
    }
    s->x1 = carve(&p, used, n * d);
    s->act = carve(&p, used, n * ff);
    s->dgu = s->save ? carve(&p, used, n * 2 * ff) : NULL;
    s->dattn = s->save ? carve(&p, used, n * qd) : NULL;
    s->dqkv = s->save ? carve(&p, used, n * rows) : NULL;
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
}

void melbo_cpu_span_free(struct melbo_cpu_span *s) {
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

/* One block forward: x (n, d) in place, activations into A. */
static void block_forward(const struct melbo_model *m, int l, struct melbo_cpu_block_acts *A,
                          float *x1, float *act, const struct melbo_seqs *seqs, float *x) {
    const struct melbo_model_config *c = &m->cfg;
    const struct melbo_layer_weights *w = &m->layers[l];
    int n = seqs->n_tok, d = c->d_model, ff = c->d_ff, hd = c->head_dim;
    int nq = c->n_heads, nkv = c->n_kv_heads, rows = melbo_model_qkv_rows(c), qd = nq * hd;
    size_t nd = (size_t)n * d;

    memcpy(A->x, x, nd * sizeof *x);
    melbo_cpu_rmsnorm(x, w->attn_norm, x1, A->rstd1, n, d, d, c->norm_eps);
    melbo_cpu_linear(x1, w->w_qkv, A->qkv, n, d, rows, 0.0f);
    if (w->b_qkv)
        melbo_cpu_add_bias(A->qkv, w->b_qkv, n, rows);
    if (c->qk_norm) {
        memcpy(A->qk_pre, A->qkv, (size_t)n * rows * sizeof(float));
        for (int h = 0; h < nq + nkv; h++)
            melbo_cpu_rmsnorm(A->qkv + (size_t)h * hd, h < nq ? w->q_norm : w->k_norm,
                              A->qkv + (size_t)h * hd, A->rstd_qk + (size_t)h * n, n, hd, rows,
                              c->norm_eps);
    }
    melbo_cpu_rope(A->qkv, rows, 0, nq + nkv, hd, c->rope_dim, m->rope_inv_freq, seqs, 0);
    melbo_cpu_attention(A->qkv, rows, A->attn, A->lse, nq, nkv, hd, seqs);
    melbo_cpu_row_parallel(m, A->attn, w->w_o, w->b_o, x, A->h, x1, n, qd);
    melbo_cpu_rmsnorm(A->h, w->mlp_norm, x1, A->rstd2, n, d, d, c->norm_eps);
    melbo_cpu_linear(x1, w->w_gu, A->gu, n, d, 2 * ff, 0.0f);
    melbo_cpu_swiglu(A->gu, act, n, ff);
    melbo_cpu_row_parallel(m, act, w->w_down, NULL, A->h, x, x1, n, ff);
}

/* One block backward: dx (n, d) in place, from dLoss/d(output) to dLoss/d(input). */
static void block_backward(const struct melbo_model *m, int l, const struct melbo_cpu_block_acts *A,
                           struct melbo_cpu_span *s, const struct melbo_seqs *seqs, float *dx) {
    const struct melbo_model_config *c = &m->cfg;
    const struct melbo_layer_weights *w = &m->layers[l];
    int n = seqs->n_tok, d = c->d_model, ff = c->d_ff, hd = c->head_dim;
    int nq = c->n_heads, nkv = c->n_kv_heads, rows = melbo_model_qkv_rows(c), qd = nq * hd;

    /* MLP: out = h + (silu(g) * u) W_down^T, g|u = rmsnorm(h) W_gu^T */
    melbo_cpu_linear_dx(dx, w->w_down, s->act, n, ff, d, 0.0f);
    melbo_cpu_swiglu_dx(A->gu, s->act, s->dgu, n, ff);
    melbo_cpu_linear_dx(s->dgu, w->w_gu, s->x1, n, d, 2 * ff, 0.0f);
    melbo_cpu_tp_reduce(m, s->x1, (size_t)n * d); /* column-parallel input gradient */
    melbo_cpu_rmsnorm_dx(A->h, w->mlp_norm, A->rstd2, s->x1, dx, n, d, d, 1);

    /* Attention: h = x + attn(q, k, v) W_o^T, q|k|v = rope(norm(rmsnorm(x) W_qkv^T + b)) */
    melbo_cpu_linear_dx(dx, w->w_o, s->dattn, n, qd, d, 0.0f);
    melbo_cpu_attention_dx(A->qkv, rows, A->attn, A->lse, s->dattn, s->dqkv, nq, nkv, hd, seqs);
    melbo_cpu_rope(s->dqkv, rows, 0, nq + nkv, hd, c->rope_dim, m->rope_inv_freq, seqs, 1);
    if (c->qk_norm)
        for (int h = 0; h < nq + nkv; h++)
            melbo_cpu_rmsnorm_dx(A->qk_pre + (size_t)h * hd, h < nq ? w->q_norm : w->k_norm,
                                 A->rstd_qk + (size_t)h * n, s->dqkv + (size_t)h * hd,
                                 s->dqkv + (size_t)h * hd, n, hd, rows, 0);
    melbo_cpu_linear_dx(s->dqkv, w->w_qkv, s->x1, n, d, rows, 0.0f);
    melbo_cpu_tp_reduce(m, s->x1, (size_t)n * d);
    melbo_cpu_rmsnorm_dx(A->x, w->attn_norm, A->rstd1, s->x1, dx, n, d, d, 1);
}

void melbo_cpu_span_forward(struct melbo_cpu_span *s, const struct melbo_seqs *seqs, float *x) {
    for (int l = s->a; l < s->b; l++)
        block_forward(s->m, l, &s->acts[s->save ? l - s->a : 0], s->x1, s->act, seqs, x);
}

void melbo_cpu_span_backward(struct melbo_cpu_span *s, const struct melbo_seqs *seqs, float *dx) {
    for (int l = s->b - 1; l >= s->a; l--)
        block_backward(s->m, l, &s->acts[l - s->a], s, seqs, dx);
}

void melbo_cpu_embed(const struct melbo_model *m, const int *ids, int n, float *out) {
    size_t d = (size_t)m->cfg.d_model;
    for (int t = 0; t < n; t++)
        memcpy(out + (size_t)t * d, m->embed + (size_t)ids[t] * d, d * sizeof *out);
}

void melbo_cpu_final_norm(const struct melbo_model *m, const float *x, int n, float *y) {
    int d = m->cfg.d_model;
    melbo_cpu_rmsnorm(x, m->final_norm, y, NULL, n, d, d, m->cfg.norm_eps);
}

void melbo_cpu_logits(const struct melbo_model *m, const float *y, int n, float *logits) {
    melbo_cpu_linear(y, m->lm_head, logits, n, m->cfg.d_model, m->cfg.vocab, 0.0f);
}
