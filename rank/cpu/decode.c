/* rank/cpu/decode.c - KV-cached decoding (rank/cpu/decode.h). */
#include "rank/cpu/decode.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "rank/cpu/lora.h"
#include "rank/cpu/ops.h"
#include "rank/cpu/span.h"

#define TILE 64

static float *carve(float *base, size_t *used, size_t n) {
    float *r = base ? base + *used : NULL;
    *used += (n + 15) & ~(size_t)15;
    return r;
}

static void layout(struct melbo_cpu_decoder *dec, float *base, size_t *used) {
    const struct melbo_model_config *c = &dec->m->cfg;
    size_t n = (size_t)dec->cap_tok, d = (size_t)c->d_model, ff = (size_t)c->d_ff;
    size_t rows = (size_t)melbo_model_qkv_rows(c), qd = (size_t)c->n_heads * c->head_dim;
    size_t kvd = (size_t)c->n_kv_heads * c->head_dim;
    *used = 0;
    dec->k = carve(base, used, (size_t)c->n_layers * dec->n_slots * dec->cap * kvd);
    dec->v = carve(base, used, (size_t)c->n_layers * dec->n_slots * dec->cap * kvd);
    dec->x = carve(base, used, n * d);
    dec->x1 = carve(base, used, n * d);
    dec->qkv = carve(base, used, n * rows);
    dec->attn = carve(base, used, n * qd);
    dec->gu = carve(base, used, n * 2 * ff);
    dec->act = carve(base, used, n * ff);
    dec->y = carve(base, used, n * d);
    dec->z = carve(base, used, dec->adapter ? n * (size_t)dec->adapter->r : 0);
}

void melbo_cpu_decoder_init(struct melbo_cpu_decoder *dec, const struct melbo_model *m,
                            int n_slots, int cap, int cap_tok, int source_layer,
                            const struct melbo_adapter_shape *adapter) {
    memset(dec, 0, sizeof *dec);
    dec->m = m;
    dec->adapter = adapter;
    dec->n_slots = n_slots;
    dec->cap = cap;
    dec->cap_tok = cap_tok;
    dec->source_layer = source_layer;
    dec->len = melbo_xcalloc((size_t)n_slots, sizeof *dec->len);
    size_t used;
    layout(dec, NULL, &used);
    dec->arena = melbo_xalloc_f32(used);
    layout(dec, dec->arena, &used);
    if (m->cfg.n_experts) {
        dec->moe = melbo_xcalloc(1, sizeof *dec->moe);
        melbo_cpu_moe_init(dec->moe, &m->cfg, cap_tok);
    }
}

void melbo_cpu_decoder_free(struct melbo_cpu_decoder *dec) {
    if (dec->moe) {
        melbo_cpu_moe_free(dec->moe);
        free(dec->moe);
    }
    free(dec->arena);
    free(dec->len);
    memset(dec, 0, sizeof *dec);
}

void melbo_cpu_decoder_reset(struct melbo_cpu_decoder *dec, int slot) { dec->len[slot] = 0; }

/* Cache rows of (layer, slot): (cap, kvd). */
static float *cache_at(const struct melbo_cpu_decoder *dec, float *base, int l, int slot) {
    const struct melbo_model_config *c = &dec->m->cfg;
    size_t kvd = (size_t)c->n_kv_heads * c->head_dim;
    return base + (((size_t)l * dec->n_slots + slot) * dec->cap) * kvd;
}

static void block_cached(struct melbo_cpu_decoder *dec, int l, const struct melbo_seqs *runs,
                         const int *slot, const int *p0) {
    const struct melbo_model *m = dec->m;
    const struct melbo_model_config *c = &m->cfg;
    const struct melbo_layer_weights *w = &m->layers[l];
    int n = runs->n_tok, d = c->d_model, ff = c->d_ff, hd = c->head_dim;
    int nq = c->n_heads, nkv = c->n_kv_heads, rows = melbo_model_qkv_rows(c), qd = nq * hd;
    int kvd = nkv * hd, group = nq / nkv;

    struct melbo_attn_opts ao = melbo_cpu_layer_attn(m, l);
    const float *xin = dec->x;
    if (!c->no_pre_norms) {
        melbo_cpu_rmsnorm(dec->x, w->attn_norm, dec->x1, NULL, n, d, d, c->norm_eps);
        xin = dec->x1;
    }
    melbo_cpu_linear(xin, w->w_qkv, dec->qkv, n, d, rows, 0.0f);
    if (w->b_qkv)
        melbo_cpu_add_bias(dec->qkv, w->b_qkv, n, rows);
    if (c->qk_norm == 2)
        melbo_cpu_qk_norm_whole(m, w, dec->qkv, n, NULL);
    else if (c->qk_norm)
        for (int h = 0; h < nq + nkv; h++)
            melbo_cpu_rmsnorm(dec->qkv + (size_t)h * hd, h < nq ? w->q_norm : w->k_norm,
                              dec->qkv + (size_t)h * hd, NULL, n, hd, rows, c->norm_eps);
    melbo_cpu_rope(dec->qkv, rows, 0, nq + nkv, hd, c->rope_dim, melbo_cpu_layer_inv_freq(m, l),
                   runs, 0);
    /* append this call's keys and values to each run's slot */
    for (int r = 0; r < runs->n_seq; r++) {
        float *kc = cache_at(dec, dec->k, l, slot[r]), *vc = cache_at(dec, dec->v, l, slot[r]);
        for (int t = runs->start[r]; t < runs->start[r + 1]; t++) {
            int pos = p0[r] + (t - runs->start[r]);
            memcpy(kc + (size_t)pos * kvd, dec->qkv + (size_t)t * rows + qd, sizeof(float) * kvd);
            memcpy(vc + (size_t)pos * kvd, dec->qkv + (size_t)t * rows + qd + kvd, sizeof(float) * kvd);
        }
    }
    int max_keys = 0;
    for (int r = 0; r < runs->n_seq; r++) {
        int e = p0[r] + runs->start[r + 1] - runs->start[r];
        max_keys = e > max_keys ? e : max_keys;
    }
#pragma omp parallel if ((size_t)runs->n_tok * nq >= 256)
    {
        float *S = melbo_xalloc_f32((size_t)TILE * max_keys);
#pragma omp for collapse(2) schedule(dynamic)
        for (int r = 0; r < runs->n_seq; r++)
            for (int h = 0; h < nq; h++) {
                int t0 = runs->start[r], mq = runs->start[r + 1] - t0, g = h / group;
                const float *kc = cache_at(dec, dec->k, l, slot[r]) + (size_t)g * hd;
                const float *vc = cache_at(dec, dec->v, l, slot[r]) + (size_t)g * hd;
                melbo_cpu_attend_head_ex(dec->qkv + (size_t)t0 * rows + (size_t)h * hd, rows, kc,
                                         vc, kvd, dec->attn + (size_t)t0 * qd + (size_t)h * hd, qd,
                                         NULL, 0, mq, p0[r], hd, &ao, S);
            }
        free(S);
    }
    size_t nd = (size_t)n * d;
    if (c->post_norms) { /* x += post_norm(sum over the group of attn W_o^T (+ b_o)) */
        melbo_cpu_linear(dec->attn, w->w_o, dec->y, n, qd, d, 0.0f);
        melbo_cpu_tp_reduce(m, dec->y, nd);
        if (w->b_o)
            melbo_cpu_add_bias(dec->y, w->b_o, n, d);
        melbo_cpu_rmsnorm(dec->y, w->post_attn_norm, dec->x1, NULL, n, d, d, c->norm_eps);
        for (size_t i = 0; i < nd; i++)
            dec->x[i] += dec->x1[i];
    } else {
        melbo_cpu_row_parallel(m, dec->attn, w->w_o, w->b_o, dec->x, dec->x, dec->y, n, qd);
    }
    xin = dec->x;
    if (!c->no_pre_norms) {
        melbo_cpu_rmsnorm(dec->x, w->mlp_norm, dec->x1, NULL, n, d, d, c->norm_eps);
        xin = dec->x1;
    }
    if (c->n_experts) { /* x += moe(x2) */
        melbo_cpu_moe_forward(m, w, dec->moe, xin, n, dec->y);
        for (size_t i = 0; i < nd; i++)
            dec->x[i] += dec->y[i];
        return;
    }
    melbo_cpu_linear(xin, w->w_gu, dec->gu, n, d, 2 * ff, 0.0f);
    melbo_cpu_glu((int)c->act, dec->gu, dec->act, n, ff);
    if (c->post_norms) {
        melbo_cpu_linear(dec->act, w->w_down, dec->y, n, ff, d, 0.0f);
        melbo_cpu_tp_reduce(m, dec->y, nd);
        melbo_cpu_rmsnorm(dec->y, w->post_mlp_norm, dec->x1, NULL, n, d, d, c->norm_eps);
        for (size_t i = 0; i < nd; i++)
            dec->x[i] += dec->x1[i];
    } else {
        melbo_cpu_row_parallel(m, dec->act, w->w_down, NULL, dec->x, dec->x, dec->y, n, ff);
    }
}

/* After the source block: each run's adapter term (alpha/r) B (A u) on its tokens, u = the
 * block's down-projection input still in dec->act; A u summed over the tensor-parallel group. */
static void add_adapters(struct melbo_cpu_decoder *dec, const struct melbo_seqs *runs,
                         const int *slot, const float *const *adapter) {
    const struct melbo_model *m = dec->m;
    const struct melbo_adapter_shape *ad = dec->adapter;
    int ff = m->cfg.d_ff, r = ad->r, c0 = m->tp_rank * ff;
    size_t nA = melbo_adapter_n_A(ad);
    memset(dec->z, 0, sizeof(float) * (size_t)runs->n_tok * r);
    for (int k = 0; k < runs->n_seq; k++) {
        const float *A = adapter[slot[k]];
        int t0 = runs->start[k], n = runs->start[k + 1] - t0;
        if (A)
            melbo_cpu_lora_down(dec->act + (size_t)t0 * ff, A + c0, ad->ff,
                                dec->z + (size_t)t0 * r, n, ff, r);
    }
    melbo_cpu_tp_reduce(m, dec->z, (size_t)runs->n_tok * r);
    for (int k = 0; k < runs->n_seq; k++) {
        const float *A = adapter[slot[k]];
        int t0 = runs->start[k], n = runs->start[k + 1] - t0;
        if (A)
            melbo_cpu_lora_up(dec->z + (size_t)t0 * r, A + nA, (float)melbo_adapter_scale(ad),
                              dec->x + (size_t)t0 * m->cfg.d_model, n, r, m->cfg.d_model);
    }
}

int melbo_cpu_decoder_forward(struct melbo_cpu_decoder *dec, const int32_t *tokens, int n_runs,
                              const int *slot, const int *run_len, const float *const *steer,
                              const float *const *adapter, float *logits, struct melbo_err *err) {
    const struct melbo_model *m = dec->m;
    const struct melbo_model_config *c = &m->cfg;
    int d = c->d_model, ret = 0;
    struct melbo_seqs runs;
    melbo_seqs_init(&runs, run_len, n_runs);
    int *p0 = melbo_xmalloc(sizeof(int) * (size_t)n_runs);
    if (runs.n_tok > dec->cap_tok) {
        ret = melbo_err_set(err, MELBO_ERANGE, "%d tokens in one call (at most %d)", runs.n_tok,
                            dec->cap_tok);
        goto out;
    }
    for (int r = 0; r < n_runs; r++) {
        p0[r] = dec->len[slot[r]];
        int end = p0[r] + run_len[r];
        if (end > dec->cap) {
            ret = melbo_err_set(err, MELBO_ERANGE, "sequence in slot %d would reach %d tokens (room for %d)",
                                slot[r], end, dec->cap);
            goto out;
        }
        if ((ret = melbo_config_check_seq_len(c, end, err)) != 0)
            goto out;
        for (int t = runs.start[r]; t < runs.start[r + 1]; t++)
            runs.pos[t] = p0[r] + (t - runs.start[r]); /* RoPE at absolute positions */
    }
    for (int r = 0; adapter && r < n_runs; r++)
        if (adapter[slot[r]] && dec->adapter == NULL) {
            ret = melbo_err_set(err, MELBO_EINVAL,
                                "slot %d carries an adapter but the decoder has no adapter shape",
                                slot[r]);
            goto out;
        }
    for (int t = 0; t < runs.n_tok; t++)
        if (tokens[t] < 0 || tokens[t] >= c->vocab) {
            ret = melbo_err_set(err, MELBO_ERANGE, "token id %d is outside the vocabulary of %d",
                                tokens[t], c->vocab);
            goto out;
        }
    melbo_cpu_embed(m, tokens, runs.n_tok, dec->x);
    for (int l = 0; l < c->n_layers; l++) {
        block_cached(dec, l, &runs, slot, p0);
        if (l == dec->source_layer && adapter && dec->adapter)
            add_adapters(dec, &runs, slot, adapter);
        if (l == dec->source_layer)
            for (int r = 0; r < n_runs; r++) {
                const float *th = steer ? steer[slot[r]] : NULL;
                if (th == NULL)
                    continue;
                for (int t = runs.start[r]; t < runs.start[r + 1]; t++)
                    for (int j = 0; j < d; j++)
                        dec->x[(size_t)t * d + j] += th[j];
            }
    }
    for (int r = 0; r < n_runs; r++) {
        memcpy(dec->x1 + (size_t)r * d, dec->x + (size_t)(runs.start[r + 1] - 1) * d,
               sizeof(float) * (size_t)d);
        dec->len[slot[r]] += run_len[r];
    }
    melbo_cpu_final_norm(m, dec->x1, n_runs, dec->y);
    melbo_cpu_logits(m, dec->y, n_runs, logits);
out:
    free(p0);
    melbo_seqs_free(&runs);
    return ret;
}
