/* rank/cpu/lora.c - an adapter's low-rank product on the CPU (rank/cpu/lora.h). */
#include "rank/cpu/lora.h"

#include <cblas.h>

void melbo_cpu_lora_down(const float *u, const float *A, int lda, float *z, int n, int ff, int r) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, r, ff, 1.0f, u, ff, A, lda, 0.0f, z, r);
}

void melbo_cpu_lora_up(const float *z, const float *B, float scale, float *out, int n, int r,
                       int d) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, d, r, scale, z, r, B, r, 1.0f, out, d);
}

void melbo_cpu_lora_grad(const float *dout, const float *z, const float *u, const float *B,
                         float scale, float *gA, int lda, float *gB, float *gz, int n, int r,
                         int ff, int d) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d, r, n, scale, dout, d, z, r, 1.0f, gB,
                r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, r, d, scale, dout, d, B, r, 0.0f, gz,
                r);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, ff, n, 1.0f, gz, r, u, ff, 1.0f, gA,
                lda);
}
