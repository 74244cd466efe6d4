/* rank/gpu/decode.c - KV-cached steered greedy decoding on the GPU (rank/gpu/decode.h). */
#include "rank/gpu/decode.h"

#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "rank/cuda/decode_kernels.h"
#include "rank/gpu/ops.h"

static void decoder_layout(struct melbo_gpu_decoder *dec, char *base, size_t *used) {
    const struct melbo_model_config *c = &dec->g->cfg;
    size_t es = melbo_gpu_dtype_size(dec->g->dtype), n = (size_t)dec->cap_tok;
    size_t d = (size_t)c->d_model, ff = (size_t)c->d_ff, S = (size_t)dec->n_slots;
    size_t rows = (size_t)melbo_model_qkv_rows(c), qd = (size_t)c->n_heads * c->head_dim;
    size_t kvw = (size_t)c->n_kv_heads * c->head_dim;
    size_t cache = (size_t)c->n_layers * S * (size_t)dec->cap * kvw * es;
    *used = 0;
    dec->k = melbo_gpu_carve(base, used, cache);
    dec->v = melbo_gpu_carve(base, used, cache);
    dec->x = melbo_gpu_carve(base, used, n * d * es);
    dec->x1 = melbo_gpu_carve(base, used, n * d * es);
    dec->qkv = melbo_gpu_carve(base, used, n * rows * es);
    dec->attn = melbo_gpu_carve(base, used, n * qd * es);
    dec->gu = melbo_gpu_carve(base, used, n * 2 * ff * es);
    dec->act = melbo_gpu_carve(base, used, n * ff * es);
    dec->last = melbo_gpu_carve(base, used, S * d * es);
    dec->logits = melbo_gpu_carve(base, used, S * (size_t)c->vocab * 4);
    dec->vec = melbo_gpu_carve(base, used, S * d * 4);
    dec->tok_slot = melbo_gpu_carve(base, used, n * sizeof(int));
    dec->tok_pos = melbo_gpu_carve(base, used, n * sizeof(int));
    dec->row_vec = melbo_gpu_carve(base, used, n * sizeof(int));
    dec->last_row = melbo_gpu_carve(base, used, S * sizeof(int));
    dec->ids = melbo_gpu_carve(base, used, n * sizeof(int32_t));
    dec->chosen = melbo_gpu_carve(base, used, (size_t)dec->cap * S * sizeof(int32_t));
}

int melbo_gpu_decoder_init(struct melbo_gpu_decoder *dec, const struct melbo_gpu_model *g,
                           int n_slots, int cap, int cap_tok, int source, struct melbo_err *err) {
    memset(dec, 0, sizeof *dec);
    if (g->layer_begin != 0 || g->layer_end != g->cfg.n_layers || !g->embed || !g->lm_head)
        return melbo_err_set(err, MELBO_EINVAL,
                             "GPU decoding needs every block, the embedding and the head");
    if (g->tp_size != 1)
        return melbo_err_set(err, MELBO_EUNSUPPORTED, "GPU decoding runs at tp = 1");
    if (n_slots < 1 || cap < 1)
        return melbo_err_set(err, MELBO_EINVAL, "GPU decoder: %d slots of %d positions", n_slots,
                             cap);
    dec->g = g;
    dec->n_slots = n_slots;
    dec->cap = cap;
    dec->cap_tok = cap_tok > 0 ? cap_tok : n_slots * cap;
    if (dec->cap_tok < n_slots * 2) /* a greedy call stages n_slots rows of decode tables */
        dec->cap_tok = n_slots * 2;
    dec->source = source;
    dec->len = melbo_xcalloc((size_t)n_slots, sizeof *dec->len);
    dec->vec_src = melbo_xcalloc((size_t)n_slots, sizeof *dec->vec_src);
    dec->h_slot = melbo_xmalloc(sizeof(int) * (size_t)dec->cap_tok);
    dec->h_pos = melbo_xmalloc(sizeof(int) * (size_t)dec->cap_tok);
    dec->h_rv = melbo_xmalloc(sizeof(int) * (size_t)dec->cap_tok);
    dec->h_last = melbo_xmalloc(sizeof(int) * (size_t)n_slots);
    size_t used = 0;
    decoder_layout(dec, NULL, &used);
    cudaError_t e = cudaMalloc(&dec->arena, used);
    if (e != cudaSuccess) {
        dec->arena = NULL;
        return melbo_err_set(err, MELBO_ENOMEM,
                             "GPU: cannot allocate %.2f GB for decoding %d x %d positions: %s",
                             used / 1e9, n_slots, cap, cudaGetErrorString(e));
    }
    dec->arena_bytes = used;
    decoder_layout(dec, dec->arena, &used);
    return 0;
}

void melbo_gpu_decoder_free(struct melbo_gpu_decoder *dec) {
    if (dec->g && dec->g->stream)
        cudaStreamSynchronize(dec->g->stream);
    cudaFree(dec->arena);
    free(dec->len);
    free(dec->vec_src);
    free(dec->h_slot);
    free(dec->h_pos);
    free(dec->h_rv);
    free(dec->h_last);
    memset(dec, 0, sizeof *dec);
}

void melbo_gpu_decoder_reset(struct melbo_gpu_decoder *dec, int slot) {
    if (slot >= 0 && slot < dec->n_slots)
        dec->len[slot] = 0;
}

#define BF(g) ((g)->dtype == MELBO_GPU_BF16)

/*
 * Runs n tokens (ids, tok_slot, tok_pos, row_vec, last_row already on the device, max_pos =
 * 1 + the largest position) through every block and the head: the logits of the n_runs rows
 * last_row[] into dec->logits, the greedy choice into chosen (n_runs).
 */
static int forward(struct melbo_gpu_decoder *dec, const int32_t *ids, const int *tok_pos,
                   const int *row_vec, int n, int n_runs, int max_pos, int32_t *chosen) {
    const struct melbo_gpu_model *g = dec->g;
    const struct melbo_model_config *c = &g->cfg;
    int d = c->d_model, ff = c->d_ff, hd = c->head_dim, V = c->vocab;
    int nq = c->n_heads, nkv = c->n_kv_heads, rows = melbo_model_qkv_rows(c), qd = nq * hd;
    size_t layer_cache = (size_t)dec->n_slots * dec->cap * nkv * hd;
    cudaStream_t st = g->stream;
    MELBO_GPU_TRY(BF(g) ? melbo_cuda_embed_bf16(g->embed, ids, dec->x, n, d, V, st)
                        : melbo_cuda_embed_f32(g->embed, ids, dec->x, n, d, V, st));
    for (int l = 0; l < c->n_layers; l++) {
        const struct melbo_gpu_layer *w = &g->layers[l];
        void *kc = melbo_gpu_at(g, dec->k, (size_t)l * layer_cache);
        void *vc = melbo_gpu_at(g, dec->v, (size_t)l * layer_cache);
        MELBO_GPU_TRY(melbo_gpu_rmsnorm(g, dec->x, w->attn_norm, dec->x1, NULL, n, d, d));
        MELBO_GPU_TRY(melbo_gpu_linear(g, dec->x1, w->w_qkv, dec->qkv, n, d, rows, 0.0f));
        if (w->b_qkv)
            MELBO_GPU_TRY(melbo_gpu_add_bias(g, dec->qkv, rows, w->b_qkv, n, rows));
        if (c->qk_norm)
            for (int h = 0; h < nq + nkv; h++) {
                void *col = melbo_gpu_at(g, dec->qkv, (size_t)h * hd);
                MELBO_GPU_TRY(melbo_gpu_rmsnorm(g, col, h < nq ? w->q_norm : w->k_norm, col, NULL,
                                                n, hd, rows));
            }
        MELBO_GPU_TRY(melbo_gpu_rope(g, dec->qkv, tok_pos, n, 0));
        MELBO_GPU_TRY(BF(g) ? melbo_cuda_kv_append_bf16(dec->qkv, rows, nq, nkv, hd,
                                                        dec->tok_slot, tok_pos, n, kc, vc,
                                                        dec->cap, st)
                            : melbo_cuda_kv_append_f32(dec->qkv, rows, nq, nkv, hd, dec->tok_slot,
                                                       tok_pos, n, kc, vc, dec->cap, st));
        MELBO_GPU_TRY(BF(g) ? melbo_cuda_attention_decode_bf16(dec->qkv, rows, kc, vc, dec->cap,
                                                               dec->tok_slot, tok_pos, dec->attn,
                                                               n, nq, nkv, hd, max_pos, st)
                            : melbo_cuda_attention_decode_f32(dec->qkv, rows, kc, vc, dec->cap,
                                                              dec->tok_slot, tok_pos, dec->attn, n,
                                                              nq, nkv, hd, max_pos, st));
        MELBO_GPU_TRY(melbo_gpu_linear_add(g, dec->attn, w->w_o, dec->x, dec->x, n, qd, d));
        if (w->b_o)
            MELBO_GPU_TRY(melbo_gpu_add_bias(g, dec->x, d, w->b_o, n, d));
        MELBO_GPU_TRY(melbo_gpu_rmsnorm(g, dec->x, w->mlp_norm, dec->x1, NULL, n, d, d));
        MELBO_GPU_TRY(melbo_gpu_linear(g, dec->x1, w->w_gu, dec->gu, n, d, 2 * ff, 0.0f));
        MELBO_GPU_TRY(melbo_gpu_swiglu(g, dec->gu, dec->act, n));
        MELBO_GPU_TRY(melbo_gpu_linear_add(g, dec->act, w->w_down, dec->x, dec->x, n, ff, d));
        if (l == dec->source && row_vec)
            MELBO_GPU_TRY(BF(g) ? melbo_cuda_add_rows_bf16(dec->x, dec->vec, row_vec, 1.0f, n, d,
                                                           st)
                                : melbo_cuda_add_rows_f32(dec->x, dec->vec, row_vec, 1.0f, n, d,
                                                          st));
    }
    /* the last row of each run: a gather, which is the embedding kernel over the rows of x */
    MELBO_GPU_TRY(BF(g) ? melbo_cuda_embed_bf16(dec->x, dec->last_row, dec->last, n_runs, d, n, st)
                        : melbo_cuda_embed_f32(dec->x, dec->last_row, dec->last, n_runs, d, n, st));
    MELBO_GPU_TRY(melbo_gpu_rmsnorm(g, dec->last, g->final_norm, dec->last, NULL, n_runs, d, d));
    MELBO_GPU_TRY(melbo_gpu_linear_f32out(g, dec->last, g->lm_head, dec->logits, n_runs, d, V));
    return chosen ? melbo_cuda_argmax_f32(dec->logits, n_runs, V, chosen, st) : 0;
}

int melbo_gpu_decoder_forward(struct melbo_gpu_decoder *dec, const int32_t *tokens, int n_runs,
                              const int *slot, const int *run_len, const float *const *steer,
                              float *logits, struct melbo_err *err) {
    const struct melbo_gpu_model *g = dec->g;
    int d = g->cfg.d_model, V = g->cfg.vocab, n = 0, max_pos = 0, any_steer = 0;
    cudaStream_t st = g->stream;
    int rc = 0;
    for (int r = 0; r < n_runs; r++) {
        int s = slot[r];
        if (s < 0 || s >= dec->n_slots || run_len[r] < 1)
            return melbo_err_set(err, MELBO_EINVAL, "GPU decoder: run %d: slot %d, %d tokens", r,
                                 s, run_len[r]);
        if (dec->len[s] + run_len[r] > dec->cap || n + run_len[r] > dec->cap_tok)
            return melbo_err_set(err, MELBO_ERANGE,
                                 "GPU decoder: slot %d would hold %d positions (cap %d)", s,
                                 dec->len[s] + run_len[r], dec->cap);
        if (steer && steer[s] && steer[s] != dec->vec_src[s]) {
            rc = rc ? rc : (int)cudaMemcpyAsync(dec->vec + (size_t)s * d, steer[s],
                                                sizeof(float) * (size_t)d,
                                                cudaMemcpyHostToDevice, st);
            dec->vec_src[s] = steer[s];
        }
        for (int i = 0; i < run_len[r]; i++, n++) {
            if (tokens[n] < 0 || tokens[n] >= V)
                return melbo_err_set(err, MELBO_ERANGE,
                                     "token id %d is outside the model's vocabulary of %d",
                                     tokens[n], V);
            dec->h_slot[n] = s;
            dec->h_pos[n] = dec->len[s] + i;
            dec->h_rv[n] = steer && steer[s] ? s : -1;
            any_steer |= dec->h_rv[n] >= 0;
            max_pos = dec->h_pos[n] + 1 > max_pos ? dec->h_pos[n] + 1 : max_pos;
        }
        dec->h_last[r] = n - 1;
        dec->len[s] += run_len[r];
    }
    size_t nb = sizeof(int) * (size_t)n;
    rc = rc ? rc : (int)cudaMemcpyAsync(dec->ids, tokens, nb, cudaMemcpyHostToDevice, st);
    rc = rc ? rc : (int)cudaMemcpyAsync(dec->tok_slot, dec->h_slot, nb, cudaMemcpyHostToDevice, st);
    rc = rc ? rc : (int)cudaMemcpyAsync(dec->tok_pos, dec->h_pos, nb, cudaMemcpyHostToDevice, st);
    rc = rc ? rc : (int)cudaMemcpyAsync(dec->row_vec, dec->h_rv, nb, cudaMemcpyHostToDevice, st);
    rc = rc ? rc : (int)cudaMemcpyAsync(dec->last_row, dec->h_last, sizeof(int) * (size_t)n_runs,
                                        cudaMemcpyHostToDevice, st);
    rc = rc ? rc : forward(dec, dec->ids, dec->tok_pos, any_steer ? dec->row_vec : NULL, n, n_runs,
                           max_pos, NULL);
    rc = rc ? rc : (int)cudaMemcpyAsync(logits, dec->logits,
                                        sizeof(float) * (size_t)n_runs * V,
                                        cudaMemcpyDeviceToHost, st);
    /* the staging tables and logits are host memory the caller reuses: wait */
    rc = rc ? rc : (int)cudaStreamSynchronize(st);
    return melbo_gpu_err(err, rc, "decoding");
}

int melbo_gpu_decoder_greedy(struct melbo_gpu_decoder *dec, const int32_t *prompts, int n,
                             int plen, const float *theta, int n_new, int32_t *out,
                             struct melbo_err *err) {
    const struct melbo_gpu_model *g = dec->g;
    int d = g->cfg.d_model, V = g->cfg.vocab;
    if (n < 1 || n > dec->n_slots || plen < 1 || n_new < 1 || plen + n_new > dec->cap)
        return melbo_err_set(err, MELBO_ERANGE,
                             "GPU decoding: %d prompts of %d tokens + %d new do not fit %d slots "
                             "of %d positions",
                             n, plen, n_new, dec->n_slots, dec->cap);
    for (size_t i = 0; i < (size_t)n * plen; i++)
        if (prompts[i] < 0 || prompts[i] >= V)
            return melbo_err_set(err, MELBO_ERANGE, "token id %d is outside the vocabulary of %d",
                                 prompts[i], V);
    size_t n_tok = (size_t)n * plen;
    if (n_tok > (size_t)dec->cap_tok || (size_t)n * n_new > (size_t)dec->cap_tok)
        return melbo_err_set(err, MELBO_ERANGE, "GPU decoding: %d x %d tokens pass cap_tok %d", n,
                             plen > n_new ? plen : n_new, dec->cap_tok);
    for (int r = 0; r < dec->n_slots; r++) /* the vec rows are rewritten here */
        dec->vec_src[r] = NULL;
    /* host tables: prefill tokens, then the decode steps' positions (n_new - 1 rows of n) */
    int *slot = melbo_xmalloc(sizeof(int) * n_tok), *pos = melbo_xmalloc(sizeof(int) * n_tok);
    int *rv = melbo_xmalloc(sizeof(int) * n_tok), *last = melbo_xmalloc(sizeof(int) * (size_t)n);
    for (size_t t = 0; t < n_tok; t++) {
        slot[t] = (int)(t / plen);
        pos[t] = (int)(t % plen);
        rv[t] = theta ? slot[t] : -1;
    }
    for (int r = 0; r < n; r++)
        last[r] = r * plen + plen - 1;
    float *vec = NULL;
    cudaStream_t st = g->stream;
    int rc = 0;
    if (theta) {
        vec = melbo_xalloc_f32((size_t)n * d);
        for (int r = 0; r < n; r++)
            memcpy(vec + (size_t)r * d, theta, sizeof(float) * (size_t)d);
        rc = (int)cudaMemcpyAsync(dec->vec, vec, sizeof(float) * (size_t)n * d,
                                  cudaMemcpyHostToDevice, st);
    }
    rc = rc ? rc : (int)cudaMemcpyAsync(dec->ids, prompts, sizeof(int32_t) * n_tok,
                                        cudaMemcpyHostToDevice, st);
    rc = rc ? rc : (int)cudaMemcpyAsync(dec->tok_slot, slot, sizeof(int) * n_tok,
                                        cudaMemcpyHostToDevice, st);
    rc = rc ? rc : (int)cudaMemcpyAsync(dec->tok_pos, pos, sizeof(int) * n_tok,
                                        cudaMemcpyHostToDevice, st);
    rc = rc ? rc : (int)cudaMemcpyAsync(dec->row_vec, rv, sizeof(int) * n_tok,
                                        cudaMemcpyHostToDevice, st);
    rc = rc ? rc : (int)cudaMemcpyAsync(dec->last_row, last, sizeof(int) * (size_t)n,
                                        cudaMemcpyHostToDevice, st);
    rc = rc ? rc : forward(dec, dec->ids, dec->tok_pos, theta ? dec->row_vec : NULL, (int)n_tok, n,
                           plen, dec->chosen);
    /* decode tables: tokens are slots 0..n-1 in order; step j's positions are plen + j - 1.
     * The prefill's tok_pos/row_vec rows are reused from offset n_tok on (cap_tok >= n * cap). */
    for (int r = 0; r < n; r++)
        last[r] = r;
    int *dpos = melbo_xmalloc(sizeof(int) * (size_t)n * n_new);
    for (int j = 0; j < n_new; j++)
        for (int r = 0; r < n; r++)
            dpos[(size_t)j * n + r] = plen + j - 1;
    rc = rc ? rc : (int)cudaStreamSynchronize(st); /* host tables are rewritten below */
    rc = rc ? rc : (int)cudaMemcpyAsync(dec->last_row, last, sizeof(int) * (size_t)n,
                                        cudaMemcpyHostToDevice, st);
    for (int r = 0; r < n && rc == 0; r++)
        slot[r] = r;
    rc = rc ? rc : (int)cudaMemcpyAsync(dec->tok_slot, slot, sizeof(int) * (size_t)n,
                                        cudaMemcpyHostToDevice, st);
    for (int r = 0; r < n; r++)
        rv[r] = theta ? r : -1;
    rc = rc ? rc : (int)cudaMemcpyAsync(dec->row_vec, rv, sizeof(int) * (size_t)n,
                                        cudaMemcpyHostToDevice, st);
    rc = rc ? rc : (int)cudaMemcpyAsync(dec->tok_pos, dpos, sizeof(int) * (size_t)n * n_new,
                                        cudaMemcpyHostToDevice, st);
    rc = rc ? rc : (int)cudaStreamSynchronize(st);
    /* step j feeds the ids chosen at step j - 1 (chosen row j-1) and writes row j */
    for (int j = 1; j < n_new && rc == 0; j++)
        rc = forward(dec, dec->chosen + (size_t)(j - 1) * n, dec->tok_pos + (size_t)j * n,
                     theta ? dec->row_vec : NULL, n, n, plen + j, dec->chosen + (size_t)j * n);
    int32_t *chosen = melbo_xmalloc(sizeof(int32_t) * (size_t)n * n_new);
    rc = rc ? rc : (int)cudaMemcpyAsync(chosen, dec->chosen, sizeof(int32_t) * (size_t)n * n_new,
                                        cudaMemcpyDeviceToHost, st);
    rc = rc ? rc : (int)cudaStreamSynchronize(st);
    for (int r = 0; r < n && rc == 0; r++)
        for (int j = 0; j < n_new; j++)
            out[(size_t)r * n_new + j] = chosen[(size_t)j * n + r];
    free(chosen);
    free(dpos);
    free(slot);
    free(pos);
    free(rv);
    free(last);
    free(vec);
    return melbo_gpu_err(err, rc, "greedy decoding");
}
