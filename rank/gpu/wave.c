/* rank/gpu/wave.c - a MELBO training step on the GPU (rank/gpu/wave.h). */
#include "rank/gpu/wave.h"

#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "rank/model/flops.h"
#include "rank/gpu/ops.h"
#include "rank/gpu/prof.h"

static void wave_layout(struct melbo_gpu_wave *w, char *base, size_t *used) {
    size_t es = melbo_gpu_dtype_size(w->g->dtype), d = (size_t)w->d;
    size_t n_p = (size_t)w->pseqs.n_tok, cap_tok = (size_t)w->cap_B * n_p;
    size_t Bd = (size_t)w->cap_B * d, pairs = (size_t)w->cap_B * w->P, n_idx = 0;
    for (int i = 0; i < w->P; i++)
        n_idx += (size_t)w->n_idx[i];
    *used = 0;
    w->X = melbo_gpu_carve(base, used, n_p * d * es);
    w->Y = melbo_gpu_carve(base, used, n_p * d * 4);
    w->base = melbo_gpu_carve(base, used, cap_tok * d * es);
    w->buf = melbo_gpu_carve(base, used, cap_tok * d * es);
    w->dbuf = melbo_gpu_carve(base, used, cap_tok * d * es);
    w->theta = melbo_gpu_carve(base, used, Bd * 4);
    w->grad = melbo_gpu_carve(base, used, Bd * 4);
    w->m = melbo_gpu_carve(base, used, Bd * 4);
    w->v = melbo_gpu_carve(base, used, Bd * 4);
    w->vhat = melbo_gpu_carve(base, used, Bd * 4);
    w->F = melbo_gpu_carve(base, used, pairs * 4);
    w->seq_vec = melbo_gpu_carve(base, used, pairs * sizeof(int));
    w->y_start = melbo_gpu_carve(base, used, pairs * sizeof(int));
    w->idx_start = melbo_gpu_carve(base, used, (pairs + 1) * sizeof(int));
    w->idx_dev = melbo_gpu_carve(base, used, (size_t)w->cap_B * n_idx * sizeof(int));
}

/* X = blocks [0, s] of x0, Y = blocks [s+1, t) of X in fp32. */
static int prefix(struct melbo_gpu_wave *w, const void *x0, struct melbo_err *err) {
    const struct melbo_gpu_model *g = w->g;
    size_t n = (size_t)w->pseqs.n_tok * w->d, es = melbo_gpu_dtype_size(g->dtype);
    struct melbo_gpu_span head;
    int ret = melbo_gpu_span_init(&head, g, 0, w->s + 1, w->pseqs.n_tok, w->P,
                                  MELBO_GPU_SPAN_FORWARD, err);
    if (ret)
        return ret;
    int rc = (int)cudaMemcpyAsync(w->X, x0, n * es, cudaMemcpyDeviceToDevice, g->stream);
    rc = rc ? rc : melbo_gpu_span_set_seqs(&head, &w->pseqs);
    rc = rc ? rc : melbo_gpu_span_forward(&head, w->X);
    rc = rc ? rc : (int)cudaStreamSynchronize(g->stream);
    melbo_gpu_span_free(&head);
    /* Y through the wave's span, on buf as scratch */
    rc = rc ? rc : (int)cudaMemcpyAsync(w->buf, w->X, n * es, cudaMemcpyDeviceToDevice, g->stream);
    rc = rc ? rc : melbo_gpu_span_set_seqs(&w->span, &w->pseqs);
    rc = rc ? rc : melbo_gpu_span_forward(&w->span, w->buf);
    rc = rc ? rc : melbo_gpu_to_f32(g, w->Y, w->buf, n);
    rc = rc ? rc : (int)cudaStreamSynchronize(g->stream);
    return melbo_gpu_err(err, rc, "computing the prefix (X and Y)");
}

int melbo_gpu_wave_init(struct melbo_gpu_wave *w, const struct melbo_gpu_model *g, int s, int t,
                        const int *lens, int P, int *const *idx, const int *n_idx, int cap_B,
                        const void *x0, size_t reserve, struct melbo_err *err) {
    memset(w, 0, sizeof *w);
    w->g = g;
    w->s = s;
    w->t = t;
    w->d = g->cfg.d_model;
    w->P = P;
    w->cap_B = cap_B;
    melbo_seqs_init(&w->pseqs, lens, P);
    w->idx = melbo_xcalloc((size_t)P, sizeof *w->idx);
    w->n_idx = melbo_xcalloc((size_t)P, sizeof *w->n_idx);
    for (int i = 0; i < P; i++) {
        w->n_idx[i] = n_idx[i];
        w->idx[i] = melbo_xmalloc(sizeof(int) * (size_t)(n_idx[i] ? n_idx[i] : 1));
        memcpy(w->idx[i], idx[i], sizeof(int) * (size_t)n_idx[i]);
    }
    size_t used = 0;
    wave_layout(w, NULL, &used);
    int cap_tok = cap_B * w->pseqs.n_tok, cap_seq = cap_B * P;
    size_t save = melbo_gpu_span_bytes(g, s + 1, t, cap_tok, cap_seq, MELBO_GPU_SPAN_SAVE);
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    enum melbo_gpu_span_mode mode = MELBO_GPU_SPAN_SAVE;
    if (used + save + reserve > free_b)
        mode = MELBO_GPU_SPAN_RECOMPUTE;
    int ret = melbo_gpu_span_init(&w->span, g, s + 1, t, cap_tok, cap_seq, mode, err);
    if (ret)
        return ret;
    cudaError_t e = cudaMalloc(&w->arena, used);
    if (e != cudaSuccess) {
        w->arena = NULL;
        return melbo_err_set(err, MELBO_ENOMEM, "GPU: cannot allocate %.2f GB for a wave of %d: %s",
                             used / 1e9, cap_B, cudaGetErrorString(e));
    }
    w->arena_bytes = used;
    wave_layout(w, w->arena, &used);
    return prefix(w, x0, err);
}

void melbo_gpu_wave_free(struct melbo_gpu_wave *w) {
    melbo_gpu_span_free(&w->span);
    cudaFree(w->arena);
    for (int i = 0; i < w->P && w->idx; i++)
        free(w->idx[i]);
    free(w->idx);
    free(w->n_idx);
    melbo_seqs_free(&w->pseqs);
    melbo_seqs_free(&w->wseqs);
    memset(w, 0, sizeof *w);
}

int melbo_gpu_wave_batch(struct melbo_gpu_wave *w, int Bw, int k0, int k1) {
    if (w->wseqs.start && w->Bw == Bw && w->k0 == k0 && w->k1 == k1)
        return 0;
    if (Bw > w->cap_B || k0 < 0 || k1 > Bw * w->P || k0 > k1)
        return MELBO_ERANGE;
    const struct melbo_gpu_model *g = w->g;
    int P = w->P, n = k1 - k0;
    size_t es = melbo_gpu_dtype_size(g->dtype), d = (size_t)w->d;
    melbo_seqs_free(&w->wseqs);
    int *lens = melbo_xmalloc(sizeof(int) * (size_t)(n + 1));
    int *seq_vec = melbo_xmalloc(sizeof(int) * (size_t)(n + 1));
    int *y_start = melbo_xmalloc(sizeof(int) * (size_t)(n + 1));
    int *idx_start = melbo_xmalloc(sizeof(int) * (size_t)(n + 1));
    size_t n_idx = 0;
    for (int k = k0; k < k1; k++)
        n_idx += (size_t)w->n_idx[k % P];
    int *idx = melbo_xmalloc(sizeof(int) * (n_idx + 1));
    idx_start[0] = 0;
    for (int k = k0; k < k1; k++) {
        int i = k % P, j = k - k0;
        lens[j] = w->pseqs.start[i + 1] - w->pseqs.start[i];
        seq_vec[j] = k / P;
        y_start[j] = w->pseqs.start[i];
        memcpy(idx + idx_start[j], w->idx[i], sizeof(int) * (size_t)w->n_idx[i]);
        idx_start[j + 1] = idx_start[j] + w->n_idx[i];
    }
    melbo_seqs_init(&w->wseqs, lens, n);
    cudaStream_t st = g->stream;
    int rc = melbo_gpu_span_set_seqs(&w->span, &w->wseqs);
    for (int k = k0; k < k1 && rc == 0; k++) {
        int i = k % P, j = k - k0;
        rc = (int)cudaMemcpyAsync(melbo_gpu_at(g, w->base, (size_t)w->wseqs.start[j] * d),
                                  melbo_gpu_at(g, w->X, (size_t)w->pseqs.start[i] * d),
                                  (size_t)lens[j] * d * es, cudaMemcpyDeviceToDevice, st);
    }
    if (rc == 0)
        rc = (int)cudaMemcpyAsync(w->seq_vec, seq_vec, sizeof(int) * (size_t)n,
                                  cudaMemcpyHostToDevice, st);
    if (rc == 0)
        rc = (int)cudaMemcpyAsync(w->y_start, y_start, sizeof(int) * (size_t)n,
                                  cudaMemcpyHostToDevice, st);
    if (rc == 0)
        rc = (int)cudaMemcpyAsync(w->idx_start, idx_start, sizeof(int) * (size_t)(n + 1),
                                  cudaMemcpyHostToDevice, st);
    if (rc == 0 && n_idx)
        rc = (int)cudaMemcpyAsync(w->idx_dev, idx, sizeof(int) * n_idx, cudaMemcpyHostToDevice,
                                  st);
    if (rc == 0) /* the host tables are freed below */
        rc = (int)cudaStreamSynchronize(st);
    free(lens);
    free(seq_vec);
    free(y_start);
    free(idx_start);
    free(idx);
    w->Bw = Bw;
    w->k0 = k0;
    w->k1 = k1;
    return rc;
}

int melbo_gpu_wave_step(struct melbo_gpu_wave *w, double p, double q, int axis) {
    const struct melbo_gpu_model *g = w->g;
    int n_pair = w->k1 - w->k0, n_tok = w->wseqs.n_tok;
    size_t bytes = (size_t)n_tok * w->d * melbo_gpu_dtype_size(g->dtype);
    if (n_pair == 0) /* this DP rank has no pair: its share of the gradient is zero */
        return (int)cudaMemsetAsync(w->grad, 0, sizeof(float) * (size_t)w->Bw * w->d, g->stream);
    MELBO_GPU_PROF("(between steps)");
    MELBO_GPU_TRY((int)cudaMemcpyAsync(w->buf, w->base, bytes, cudaMemcpyDeviceToDevice,
                                       g->stream));
    MELBO_GPU_TRY(melbo_gpu_add_steer(g, w->buf, w->theta, w->seq_vec, w->span.seq_start, n_pair));
    MELBO_GPU_PROF("steer X + theta");
    MELBO_GPU_TRY(melbo_gpu_span_forward(&w->span, w->buf));
    MELBO_GPU_TRY(melbo_gpu_objective(g, w->buf, w->Y, w->span.seq_start, w->y_start,
                                      w->idx_start, w->idx_dev, n_pair, p, q, axis, w->F,
                                      w->dbuf));
    MELBO_GPU_PROF("objective");
    MELBO_GPU_TRY(melbo_gpu_span_backward(&w->span, w->dbuf));
    MELBO_GPU_TRY(melbo_gpu_reduce_positions(g, w->dbuf, w->seq_vec, w->span.seq_start, n_pair,
                                             w->grad, w->Bw));
    MELBO_GPU_PROF("sum over positions");
    return 0;
}

int melbo_gpu_wave_update(struct melbo_gpu_wave *w, int t, double R, double lr, double beta1,
                          double beta2, double eps) {
    MELBO_GPU_TRY(melbo_cuda_vector_update(w->theta, w->grad, w->m, w->v, w->vhat, w->Bw, w->d, t,
                                           R, lr, beta1, beta2, eps, NULL, 0, w->g->stream));
    MELBO_GPU_PROF("AMSGrad update");
    return 0;
}

double melbo_gpu_wave_step_flops(const struct melbo_gpu_wave *w) {
    double f = melbo_span_gemm_flops(&w->g->cfg, w->s + 1, w->t, w->wseqs.n_tok);
    return f * (w->span.mode == MELBO_GPU_SPAN_RECOMPUTE ? 3.0 : 2.0);
}
