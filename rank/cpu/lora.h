/*
 * rank/cpu/lora.h - one adapter's low-rank product on a run of tokens, forward and gradients, in
 * fp32 on the CPU (rank/method/adapter.h). The wave (rank/cpu/wave.c) calls these once per
 * (adapter, prompt) pair of its packed batch, each pair with its own factors: a grouped product,
 * while the span above runs once over the whole batch.
 *
 * Under tensor parallelism a rank holds columns [c0, c0 + ff) of the MLP, so it sees columns
 * [c0, c0 + ff) of A (the slice starts at A + c0, rows ld = the full MLP width apart) and the
 * matching slice of u; z = A u is then a partial sum the caller adds over the group.
 */
#ifndef MELBO_RANK_CPU_LORA_H
#define MELBO_RANK_CPU_LORA_H

#ifdef __cplusplus
extern "C" {
#endif

/* z(n, r) = u(n, ff) A(r, ff; row stride lda)^T. */
void melbo_cpu_lora_down(const float *u, const float *A, int lda, float *z, int n, int ff, int r);

/* out(n, d) += scale * z(n, r) B(d, r)^T. */
void melbo_cpu_lora_up(const float *z, const float *B, float scale, float *out, int n, int r,
                       int d);

/*
 * The factors' gradients from dout(n, d) = dLoss/d out: gB(d, r) += scale * dout^T z;
 * gz(n, r) = scale * dout B (scratch); gA(r, ff; row stride lda) += gz^T u.
 */
void melbo_cpu_lora_grad(const float *dout, const float *z, const float *u, const float *B,
                         float scale, float *gA, int lda, float *gB, float *gz, int n, int r,
                         int ff, int d);

#ifdef __cplusplus
}
#endif
#endif
