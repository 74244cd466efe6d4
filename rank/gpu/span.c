/* rank/gpu/span.c - decoder blocks forward and backward on the GPU (rank/gpu/span.h). */
#include "rank/gpu/span.h"

#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "rank/gpu/ops.h"
#include "rank/gpu/prof.h"

static void acts_layout(const struct melbo_gpu_model *g, struct melbo_gpu_block_acts *A,
                        char *base, size_t *used, size_t n) {
    const struct melbo_model_config *c = &g->cfg;
    size_t es = melbo_gpu_dtype_size(g->dtype), d = (size_t)c->d_model, ff = (size_t)c->d_ff;
    size_t rows = (size_t)melbo_model_qkv_rows(c), qd = (size_t)c->n_heads * c->head_dim;
    size_t nh = (size_t)(c->n_heads + c->n_kv_heads);
    A->x = melbo_gpu_carve(base, used, n * d * es);
    A->rstd1 = melbo_gpu_carve(base, used, n * 4);
    A->qk_pre = c->qk_norm ? melbo_gpu_carve(base, used, n * rows * es) : NULL;
    A->rstd_qk = c->qk_norm ? melbo_gpu_carve(base, used, nh * n * 4) : NULL;
    A->qkv = melbo_gpu_carve(base, used, n * rows * es);
    A->attn = melbo_gpu_carve(base, used, n * qd * es);
    A->lse = melbo_gpu_carve(base, used, n * (size_t)c->n_heads * 4);
    A->h = melbo_gpu_carve(base, used, n * d * es);
    A->rstd2 = melbo_gpu_carve(base, used, n * 4);
    A->gu = melbo_gpu_carve(base, used, n * 2 * ff * es);
}

static void span_layout(struct melbo_gpu_span *s, char *base, size_t *used) {
    const struct melbo_gpu_model *g = s->g;
    const struct melbo_model_config *c = &g->cfg;
    size_t n = (size_t)s->cap_tok, es = melbo_gpu_dtype_size(g->dtype);
    size_t d = (size_t)c->d_model, ff = (size_t)c->d_ff;
    size_t rows = (size_t)melbo_model_qkv_rows(c), qd = (size_t)c->n_heads * c->head_dim;
    int n_blocks = s->b - s->a, back = s->mode != MELBO_GPU_SPAN_FORWARD;
    int n_acts = s->mode == MELBO_GPU_SPAN_SAVE ? n_blocks : 1;
    *used = 0;
    for (int i = 0; i < n_acts; i++)
        acts_layout(g, &s->acts[i], base, used, n);
    if (s->mode == MELBO_GPU_SPAN_RECOMPUTE)
        for (int i = 0; i < n_blocks; i++)
            s->xin[i] = melbo_gpu_carve(base, used, n * d * es);
    s->x1 = melbo_gpu_carve(base, used, n * d * es);
    s->act = melbo_gpu_carve(base, used, n * ff * es);
    s->dgu = back ? melbo_gpu_carve(base, used, n * 2 * ff * es) : NULL;
    s->dattn = back ? melbo_gpu_carve(base, used, n * qd * es) : NULL;
    s->dqkv = back ? melbo_gpu_carve(base, used, n * rows * es) : NULL;
    s->tmp = melbo_gpu_carve(base, used, n * d * 4);
    s->seq_start = melbo_gpu_carve(base, used, (size_t)(s->cap_seq + 1) * sizeof(int));
    s->pos = melbo_gpu_carve(base, used, n * sizeof(int));
}

static void span_shape(struct melbo_gpu_span *s, const struct melbo_gpu_model *g, int a, int b,
                       int cap_tok, int cap_seq, enum melbo_gpu_span_mode mode) {
    memset(s, 0, sizeof *s);
    s->g = g;
    s->a = a;
    s->b = b;
    s->cap_tok = cap_tok;
    s->cap_seq = cap_seq;
    s->mode = mode;
    int n_blocks = b > a ? b - a : 1;
    s->acts = melbo_xcalloc((size_t)(mode == MELBO_GPU_SPAN_SAVE ? n_blocks : 1), sizeof *s->acts);
    if (mode == MELBO_GPU_SPAN_RECOMPUTE)
        s->xin = melbo_xcalloc((size_t)n_blocks, sizeof *s->xin);
}

size_t melbo_gpu_span_bytes(const struct melbo_gpu_model *g, int a, int b, int cap_tok,
                            int cap_seq, enum melbo_gpu_span_mode mode) {
    struct melbo_gpu_span s;
    size_t used = 0;
    span_shape(&s, g, a, b, cap_tok, cap_seq, mode);
    span_layout(&s, NULL, &used);
    free(s.acts);
    free(s.xin);
    return used;
}

int melbo_gpu_span_init(struct melbo_gpu_span *s, const struct melbo_gpu_model *g, int a, int b,
                        int cap_tok, int cap_seq, enum melbo_gpu_span_mode mode,
                        struct melbo_err *err) {
    if (a < g->layer_begin || b > g->layer_end || a > b)
        return melbo_err_set(err, MELBO_ERANGE, "GPU span [%d, %d) is outside the blocks held [%d, %d)",
                             a, b, g->layer_begin, g->layer_end);
    span_shape(s, g, a, b, cap_tok, cap_seq, mode);
    size_t used = 0;
    span_layout(s, NULL, &used);
    cudaError_t e = cudaMalloc(&s->arena, used);
    if (e != cudaSuccess) {
        s->arena = NULL;
        return melbo_err_set(err, MELBO_ENOMEM,
                             "GPU: cannot allocate %.2f GB of activations for %d tokens over "
                             "blocks %d..%d: %s",
                             used / 1e9, cap_tok, a, b - 1, cudaGetErrorString(e));
    }
    s->arena_bytes = used;
    span_layout(s, s->arena, &used);
    if (g->tp_size > 1) {
        e = cudaMallocHost((void **)&s->host_tmp, (size_t)cap_tok * g->cfg.d_model * 4);
        if (e != cudaSuccess)
            return melbo_gpu_err(err, (int)e, "allocating pinned memory for the TP sums");
    }
    return 0;
}

void melbo_gpu_span_free(struct melbo_gpu_span *s) {
    if (s->g && s->g->stream)
        cudaStreamSynchronize(s->g->stream);
    cudaFree(s->arena);
    if (s->host_tmp)
        cudaFreeHost(s->host_tmp);
    free(s->acts);
    free(s->xin);
    memset(s, 0, sizeof *s);
}

int melbo_gpu_span_set_seqs(struct melbo_gpu_span *s, const struct melbo_seqs *seqs) {
    if (seqs->n_tok > s->cap_tok || seqs->n_seq > s->cap_seq)
        return MELBO_ERANGE;
    cudaStream_t st = s->g->stream;
    cudaError_t e = cudaMemcpyAsync(s->seq_start, seqs->start,
                                    (size_t)(seqs->n_seq + 1) * sizeof(int),
                                    cudaMemcpyHostToDevice, st);
    if (e == cudaSuccess)
        e = cudaMemcpyAsync(s->pos, seqs->pos, (size_t)seqs->n_tok * sizeof(int),
                            cudaMemcpyHostToDevice, st);
    /* the host arrays may change after return: wait for the copies */
    if (e == cudaSuccess)
        e = cudaStreamSynchronize(st);
    s->n_seq = seqs->n_seq;
    s->n_tok = seqs->n_tok;
    s->max_len = seqs->max_len;
    return (int)e;
}

/* Sums tmp (n) fp32 over the tensor-parallel group through pinned host memory. */
static int tp_sum(struct melbo_gpu_span *s, float *tmp, size_t n) {
    const struct melbo_gpu_model *g = s->g;
    if (g->tp_size == 1)
        return 0;
    cudaError_t e = cudaMemcpyAsync(s->host_tmp, tmp, n * 4, cudaMemcpyDeviceToHost, g->stream);
    if (e == cudaSuccess)
        e = cudaStreamSynchronize(g->stream);
    if (e != cudaSuccess)
        return (int)e;
    g->reduce.fn(g->reduce.ctx, s->host_tmp, n);
    return (int)cudaMemcpyAsync(tmp, s->host_tmp, n * 4, cudaMemcpyHostToDevice, g->stream);
}

/* out (n, d) T = res + in (n, k) W^T (+ bias), the product summed over the TP group first. */
static int row_parallel(struct melbo_gpu_span *s, const void *in, const void *w, const float *bias,
                        const void *res, void *out, int n, int k) {
    const struct melbo_gpu_model *g = s->g;
    int d = g->cfg.d_model;
    if (g->tp_size == 1) { /* the residual add inside the product (C = res, D = out) */
        MELBO_GPU_TRY(melbo_gpu_linear_add(g, in, w, res, out, n, k, d));
        return bias ? melbo_gpu_add_bias(g, out, d, bias, n, d) : 0;
    }
    MELBO_GPU_TRY(melbo_gpu_linear_f32out(g, in, w, s->tmp, n, k, d));
    MELBO_GPU_TRY(tp_sum(s, s->tmp, (size_t)n * d));
    return melbo_gpu_residual_add(g, out, res, s->tmp, bias, n, d);
}

/* dx (n, in) T = dy (n, out) W, summed over the TP group (column-parallel input gradient). */
static int col_parallel_dx(struct melbo_gpu_span *s, const void *dy, const void *w, void *dx,
                           int n, int in, int out) {
    const struct melbo_gpu_model *g = s->g;
    if (g->tp_size == 1)
        return melbo_gpu_linear_dx(g, dy, w, dx, n, in, out, 0.0f);
    MELBO_GPU_TRY(melbo_gpu_linear_dx_f32out(g, dy, w, s->tmp, n, in, out));
    MELBO_GPU_TRY(tp_sum(s, s->tmp, (size_t)n * in));
    return melbo_gpu_from_f32(g, dx, s->tmp, (size_t)n * in);
}

/* One block forward: x (n, d) in, out (n, d) (may be x), activations into A. */
static int block_forward(struct melbo_gpu_span *s, int l, struct melbo_gpu_block_acts *A,
                         const void *x, void *out) {
    const struct melbo_gpu_model *g = s->g;
    const struct melbo_model_config *c = &g->cfg;
    const struct melbo_gpu_layer *w = &g->layers[l];
    int n = s->n_tok, d = c->d_model, ff = c->d_ff, hd = c->head_dim;
    int nq = c->n_heads, nkv = c->n_kv_heads, rows = melbo_model_qkv_rows(c), qd = nq * hd;
    size_t es = melbo_gpu_dtype_size(g->dtype);

    if (A->x != x)
        MELBO_GPU_TRY((int)cudaMemcpyAsync(A->x, x, (size_t)n * d * es, cudaMemcpyDeviceToDevice,
                                           g->stream));
    MELBO_GPU_PROF("fwd copy x");
    MELBO_GPU_TRY(melbo_gpu_rmsnorm(g, A->x, w->attn_norm, s->x1, A->rstd1, n, d, d));
    MELBO_GPU_PROF("fwd rmsnorm");
    MELBO_GPU_TRY(melbo_gpu_linear(g, s->x1, w->w_qkv, A->qkv, n, d, rows, 0.0f));
    MELBO_GPU_PROF("fwd gemm qkv");
    if (w->b_qkv)
        MELBO_GPU_TRY(melbo_gpu_add_bias(g, A->qkv, rows, w->b_qkv, n, rows));
    if (c->qk_norm) {
        MELBO_GPU_TRY((int)cudaMemcpyAsync(A->qk_pre, A->qkv, (size_t)n * rows * es,
                                           cudaMemcpyDeviceToDevice, g->stream));
        for (int h = 0; h < nq + nkv; h++) {
            void *col = melbo_gpu_at(g, A->qkv, (size_t)h * hd);
            MELBO_GPU_TRY(melbo_gpu_rmsnorm(g, col, h < nq ? w->q_norm : w->k_norm, col,
                                            A->rstd_qk + (size_t)h * n, n, hd, rows));
        }
    }
    MELBO_GPU_PROF("fwd bias, qk-norm");
    MELBO_GPU_TRY(melbo_gpu_rope(g, A->qkv, s->pos, n, 0));
    MELBO_GPU_PROF("fwd rope");
    MELBO_GPU_TRY(melbo_gpu_attention(g, A->qkv, A->attn, A->lse, s->seq_start, s->n_seq,
                                      s->max_len));
    MELBO_GPU_PROF("fwd attention");
    MELBO_GPU_TRY(row_parallel(s, A->attn, w->w_o, w->b_o, A->x, A->h, n, qd));
    MELBO_GPU_PROF("fwd gemm o + residual");
    MELBO_GPU_TRY(melbo_gpu_rmsnorm(g, A->h, w->mlp_norm, s->x1, A->rstd2, n, d, d));
    MELBO_GPU_PROF("fwd rmsnorm");
    MELBO_GPU_TRY(melbo_gpu_linear(g, s->x1, w->w_gu, A->gu, n, d, 2 * ff, 0.0f));
    MELBO_GPU_PROF("fwd gemm gate/up");
    MELBO_GPU_TRY(melbo_gpu_swiglu(g, A->gu, s->act, n));
    MELBO_GPU_PROF("fwd swiglu");
    MELBO_GPU_TRY(row_parallel(s, s->act, w->w_down, NULL, A->h, out, n, ff));
    MELBO_GPU_PROF("fwd gemm down + residual");
    return 0;
}

/* One block backward: dx (n, d) in place, from dLoss/d(output) to dLoss/d(input). */
static int block_backward(struct melbo_gpu_span *s, int l, const struct melbo_gpu_block_acts *A,
                          void *dx) {
    const struct melbo_gpu_model *g = s->g;
    const struct melbo_model_config *c = &g->cfg;
    const struct melbo_gpu_layer *w = &g->layers[l];
    int n = s->n_tok, d = c->d_model, ff = c->d_ff, hd = c->head_dim;
    int nq = c->n_heads, nkv = c->n_kv_heads, rows = melbo_model_qkv_rows(c), qd = nq * hd;

    /* MLP: out = h + (silu(g) * u) W_down^T, g|u = rmsnorm(h) W_gu^T */
    MELBO_GPU_PROF("(before backward)");
    MELBO_GPU_TRY(melbo_gpu_linear_dx(g, dx, w->w_down, s->act, n, ff, d, 0.0f));
    MELBO_GPU_PROF("bwd gemm down");
    MELBO_GPU_TRY(melbo_gpu_swiglu_dx(g, A->gu, s->act, s->dgu, n));
    MELBO_GPU_PROF("bwd swiglu");
    MELBO_GPU_TRY(col_parallel_dx(s, s->dgu, w->w_gu, s->x1, n, d, 2 * ff));
    MELBO_GPU_PROF("bwd gemm gate/up");
    MELBO_GPU_TRY(melbo_gpu_rmsnorm_dx(g, A->h, w->mlp_norm, A->rstd2, s->x1, dx, n, d, d, 1));
    MELBO_GPU_PROF("bwd rmsnorm");

    /* Attention: h = x + attn(q, k, v) W_o^T, q|k|v = rope(norm(rmsnorm(x) W_qkv^T + b)) */
    MELBO_GPU_TRY(melbo_gpu_linear_dx(g, dx, w->w_o, s->dattn, n, qd, d, 0.0f));
    MELBO_GPU_PROF("bwd gemm o");
    MELBO_GPU_TRY(melbo_gpu_attention_dx(g, A->qkv, A->attn, A->lse, s->dattn, s->dqkv,
                                         s->seq_start, s->n_seq, s->max_len));
    MELBO_GPU_PROF("bwd attention");
    MELBO_GPU_TRY(melbo_gpu_rope(g, s->dqkv, s->pos, n, 1));
    MELBO_GPU_PROF("bwd rope");
    if (c->qk_norm)
        for (int h = 0; h < nq + nkv; h++) {
            void *col = melbo_gpu_at(g, s->dqkv, (size_t)h * hd);
            MELBO_GPU_TRY(melbo_gpu_rmsnorm_dx(g, melbo_gpu_at(g, A->qk_pre, (size_t)h * hd),
                                               h < nq ? w->q_norm : w->k_norm,
                                               A->rstd_qk + (size_t)h * n, col, col, n, hd, rows,
                                               0));
        }
    MELBO_GPU_PROF("bwd qk-norm");
    MELBO_GPU_TRY(col_parallel_dx(s, s->dqkv, w->w_qkv, s->x1, n, d, rows));
    MELBO_GPU_PROF("bwd gemm qkv");
    MELBO_GPU_TRY(melbo_gpu_rmsnorm_dx(g, A->x, w->attn_norm, A->rstd1, s->x1, dx, n, d, d, 1));
    MELBO_GPU_PROF("bwd rmsnorm");
    return 0;
}

int melbo_gpu_span_forward(struct melbo_gpu_span *s, void *x) {
    size_t bytes = (size_t)s->n_tok * s->g->cfg.d_model * melbo_gpu_dtype_size(s->g->dtype);
    for (int l = s->a; l < s->b; l++) {
        struct melbo_gpu_block_acts *A = &s->acts[s->mode == MELBO_GPU_SPAN_SAVE ? l - s->a : 0];
        if (s->mode == MELBO_GPU_SPAN_RECOMPUTE)
            MELBO_GPU_TRY((int)cudaMemcpyAsync(s->xin[l - s->a], x, bytes,
                                               cudaMemcpyDeviceToDevice, s->g->stream));
        MELBO_GPU_TRY(block_forward(s, l, A, x, x));
    }
    return 0;
}

int melbo_gpu_span_backward(struct melbo_gpu_span *s, void *dx) {
    if (s->mode == MELBO_GPU_SPAN_FORWARD)
        return MELBO_ESTATE;
    for (int l = s->b - 1; l >= s->a; l--) {
        struct melbo_gpu_block_acts *A = &s->acts[0];
        if (s->mode == MELBO_GPU_SPAN_SAVE)
            A = &s->acts[l - s->a];
        else /* rerun the block's forward from its saved input; its output goes to scratch */
            MELBO_GPU_TRY(block_forward(s, l, A, s->xin[l - s->a], s->x1));
        MELBO_GPU_TRY(block_backward(s, l, A, dx));
    }
    return 0;
}
