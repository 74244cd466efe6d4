/*
 * rank/cuda/matmul.cu - the products of the frozen weights on cuBLASLt (rank/cuda/kernels.h).
 * Twins: melbo_cpu_linear and melbo_cpu_linear_dx in rank/cpu/ops.c.
 *
 * cuBLASLt is column-major; our tensors are row-major. A row-major (r, c) matrix is the
 * column-major (c, r) matrix with the same bytes, so
 *   y (n, out) = x W^T   is, column-major,  y^T (out, n) = op_T(W) x^T   ("TN", m=out, k=in)
 *   dx (n, in) = dy W    is, column-major,  dx^T (in, n) = W^T dy^T      ("NN", m=in, k=out)
 * where W^T is simply W's bytes read column-major. Inputs are bf16, the compute type fp32, and
 * the output bf16 or fp32. The algorithm is asked of the heuristic on every call; caching it per
 * shape is left for when the trainer's shapes are known.
 */
#include <stdlib.h>

#include <cublasLt.h>

#include "rank/cuda/common.cuh"

#define BLAS_DEFAULT_WORKSPACE ((size_t)32 << 20)

struct melbo_cuda_blas {
    cublasLtHandle_t lt;
    void *workspace; // (ws_size) bytes, device
    size_t ws_size;
};

#define BLAS_RC(status) (MELBO_CUDA_BLAS_ERROR_BASE + (int)(status))

/*
 * D = alpha op(A) op(B) + beta C with C = D, column-major: A (lda-strided) is k x m when
 * transposed else m x k, B is k x n, D m x n (ldd).
 */
static int lt_matmul(struct melbo_cuda_blas *blas, cublasOperation_t ta, int m, int n, int k,
                     const void *A, int lda, const void *B, int ldb, void *D, int ldd,
                     enum melbo_cuda_out out_type, float beta, cudaStream_t stream) {
    cublasLtMatmulDesc_t op = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, ld = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t heur;
    cublasOperation_t tb = CUBLAS_OP_N;
    cudaDataType_t dt = out_type == MELBO_CUDA_OUT_F32 ? CUDA_R_32F : CUDA_R_16BF;
    float alpha = 1.0f;
    int n_res = 0, rc = 0;
    cublasStatus_t st;

    st = cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    if (st != CUBLAS_STATUS_SUCCESS)
        goto fail_desc;
    st = cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
    if (st != CUBLAS_STATUS_SUCCESS)
        goto fail_layout;
    st = cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, ta == CUBLAS_OP_T ? k : m,
                                    ta == CUBLAS_OP_T ? m : k, lda);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, k, n, ldb);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatrixLayoutCreate(&ld, dt, m, n, ldd);
    if (st != CUBLAS_STATUS_SUCCESS)
        goto fail_layout;
    st = cublasLtMatmulPreferenceCreate(&pref);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                  &blas->ws_size, sizeof blas->ws_size);
    if (st != CUBLAS_STATUS_SUCCESS)
        goto fail_pref;
    st = cublasLtMatmulAlgoGetHeuristic(blas->lt, op, la, lb, ld, ld, pref, 1, &heur, &n_res);
    if (st == CUBLAS_STATUS_SUCCESS && n_res == 0)
        st = CUBLAS_STATUS_NOT_SUPPORTED;
    if (st != CUBLAS_STATUS_SUCCESS)
        goto fail_pref;
    st = cublasLtMatmul(blas->lt, op, &alpha, A, la, B, lb, &beta, D, ld, D, ld, &heur.algo,
                        blas->workspace, blas->ws_size, stream);

fail_pref:
    if (pref)
        cublasLtMatmulPreferenceDestroy(pref);
fail_layout:
    if (ld)
        cublasLtMatrixLayoutDestroy(ld);
    if (lb)
        cublasLtMatrixLayoutDestroy(lb);
    if (la)
        cublasLtMatrixLayoutDestroy(la);
    cublasLtMatmulDescDestroy(op);
fail_desc:
    if (st != CUBLAS_STATUS_SUCCESS)
        rc = BLAS_RC(st);
    return rc;
}

// ------------------------------------------------------------------------------------------------
// kernel launchers

extern "C" {

int melbo_cuda_blas_init(struct melbo_cuda_blas **out, size_t workspace_bytes) {
    struct melbo_cuda_blas *b = (struct melbo_cuda_blas *)calloc(1, sizeof *b);
    cublasStatus_t st;
    cudaError_t e;
    *out = NULL;
    if (b == NULL)
        return MELBO_ENOMEM;
    b->ws_size = workspace_bytes ? workspace_bytes : BLAS_DEFAULT_WORKSPACE;
    st = cublasLtCreate(&b->lt);
    if (st != CUBLAS_STATUS_SUCCESS)
        goto fail_create;
    e = cudaMalloc(&b->workspace, b->ws_size);
    if (e != cudaSuccess)
        goto fail_workspace;
    *out = b;
    return 0;

fail_workspace:
    cublasLtDestroy(b->lt);
    free(b);
    return (int)e;
fail_create:
    free(b);
    return BLAS_RC(st);
}

void melbo_cuda_blas_free(struct melbo_cuda_blas *blas) {
    if (blas == NULL)
        return;
    cudaFree(blas->workspace);
    cublasLtDestroy(blas->lt);
    free(blas);
}

int melbo_cuda_linear_bf16(struct melbo_cuda_blas *blas, const melbo_bf16 *x, const melbo_bf16 *w,
                           void *y, enum melbo_cuda_out out_type, int n, int in, int out,
                           float beta, cudaStream_t stream) {
    if (blas == NULL || n < 0 || in <= 0 || out <= 0)
        return MELBO_EINVAL;
    if (n == 0)
        return 0;
    int rc = lt_matmul(blas, CUBLAS_OP_T, out, n, in, w, in, x, in, y, out, out_type, beta, stream);
    if (rc)
        return rc;
    MELBO_CUDA_LAUNCH_CHECK();
}

int melbo_cuda_linear_dx_bf16(struct melbo_cuda_blas *blas, const melbo_bf16 *dy,
                              const melbo_bf16 *w, void *dx, enum melbo_cuda_out out_type, int n,
                              int in, int out, float beta, cudaStream_t stream) {
    if (blas == NULL || n < 0 || in <= 0 || out <= 0)
        return MELBO_EINVAL;
    if (n == 0)
        return 0;
    int rc = lt_matmul(blas, CUBLAS_OP_N, in, n, out, w, in, dy, out, dx, in, out_type, beta,
                       stream);
    if (rc)
        return rc;
    MELBO_CUDA_LAUNCH_CHECK();
}

} // extern "C"
