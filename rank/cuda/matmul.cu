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
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <cublasLt.h>

#include "rank/cuda/common.cuh"

#define BLAS_DEFAULT_WORKSPACE ((size_t)32 << 20)

/*
 * cuBLASLt is opened with dlopen on the first melbo_cuda_blas_init, not linked: loading it costs
 * a process about 200 MB of resident memory, which every CPU-only rank of a CUDA build would
 * otherwise pay. The soname is the one of the headers we compiled against.
 */
#define LT_STR2(x) #x
#define LT_STR(x) LT_STR2(x)
#define LT_SONAME "libcublasLt.so." LT_STR(CUBLAS_VER_MAJOR)

struct lt_api {
#define LT_FN(name) decltype(&::name) name;
    LT_FN(cublasLtCreate)
    LT_FN(cublasLtDestroy)
    LT_FN(cublasLtMatmul)
    LT_FN(cublasLtMatmulAlgoGetHeuristic)
    LT_FN(cublasLtMatmulDescCreate)
    LT_FN(cublasLtMatmulDescDestroy)
    LT_FN(cublasLtMatmulDescSetAttribute)
    LT_FN(cublasLtMatmulPreferenceCreate)
    LT_FN(cublasLtMatmulPreferenceDestroy)
    LT_FN(cublasLtMatmulPreferenceSetAttribute)
    LT_FN(cublasLtMatrixLayoutCreate)
    LT_FN(cublasLtMatrixLayoutDestroy)
    LT_FN(cublasLtGetStatusString)
#undef LT_FN
};

static struct lt_api lt;
static pthread_once_t lt_once = PTHREAD_ONCE_INIT;
static int lt_ok;

static void lt_load_once(void) {
    const char *paths[] = {LT_SONAME, MELBO_CUDA_LIBDIR "/" LT_SONAME,
                           "/usr/local/cuda/lib64/" LT_SONAME};
    void *h = NULL;
    for (size_t i = 0; i < sizeof paths / sizeof paths[0] && h == NULL; i++)
        h = dlopen(paths[i], RTLD_NOW | RTLD_LOCAL);
    if (h == NULL)
        return;
#define LT_SYM(name)                                                                               \
    if ((*(void **)&lt.name = dlsym(h, #name)) == NULL)                                            \
        return;
    LT_SYM(cublasLtCreate)
    LT_SYM(cublasLtDestroy)
    LT_SYM(cublasLtMatmul)
    LT_SYM(cublasLtMatmulAlgoGetHeuristic)
    LT_SYM(cublasLtMatmulDescCreate)
    LT_SYM(cublasLtMatmulDescDestroy)
    LT_SYM(cublasLtMatmulDescSetAttribute)
    LT_SYM(cublasLtMatmulPreferenceCreate)
    LT_SYM(cublasLtMatmulPreferenceDestroy)
    LT_SYM(cublasLtMatmulPreferenceSetAttribute)
    LT_SYM(cublasLtMatrixLayoutCreate)
    LT_SYM(cublasLtMatrixLayoutDestroy)
    LT_SYM(cublasLtGetStatusString)
#undef LT_SYM
    lt_ok = 1;
}

/* 1 when cuBLASLt is loaded (loading it on the first call). */
static int lt_load(void) {
    pthread_once(&lt_once, lt_load_once);
    return lt_ok;
}

extern "C" const char *melbo_cuda_blas_status_string(int status) {
    if (!lt_ok)
        return "cuBLASLt error";
    return lt.cublasLtGetStatusString((cublasStatus_t)status);
}

/*
 * A plan: the descriptors and the chosen algorithm of one product shape, built on its first
 * call and reused (descriptor creation and the heuristic cost tens of microseconds a call).
 * With autotuning (the default; MELBO_GEMM_AUTOTUNE=0 turns it off) the first call also times
 * the heuristic's best few algorithms on scratch output and keeps the fastest.
 */
struct lt_plan {
    cublasOperation_t ta;
    int m, n, k, lda, ldb, ldd;
    cudaDataType_t in_type, out_type;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, ld;
    cublasLtMatmulAlgo_t algo;
};

#define BLAS_MAX_PLANS 256
#define BLAS_TUNE_CANDIDATES 8
#define BLAS_TUNE_REPS 3

struct melbo_cuda_blas {
    cublasLtHandle_t lt;
    void *workspace; // (ws_size) bytes, device
    size_t ws_size;
    int autotune;
    struct lt_plan plans[BLAS_MAX_PLANS];
    int n_plans;
};

#define BLAS_RC(status) (MELBO_CUDA_BLAS_ERROR_BASE + (int)(status))

static size_t type_size(cudaDataType_t t) { return t == CUDA_R_32F ? 4 : 2; }

static void plan_destroy(struct lt_plan *p) {
    if (p->ld)
        lt.cublasLtMatrixLayoutDestroy(p->ld);
    if (p->lb)
        lt.cublasLtMatrixLayoutDestroy(p->lb);
    if (p->la)
        lt.cublasLtMatrixLayoutDestroy(p->la);
    if (p->op)
        lt.cublasLtMatmulDescDestroy(p->op);
    memset(p, 0, sizeof *p);
}

/* Times algo on scratch output (so a beta = 1 product is not applied twice); ms or -1. */
static float time_algo(struct melbo_cuda_blas *blas, struct lt_plan *p,
                       const cublasLtMatmulAlgo_t *algo, const void *A, const void *B, void *Dtmp,
                       cudaStream_t stream) {
    float alpha = 1.0f, beta = 0.0f, ms = -1.0f;
    cudaEvent_t e0, e1;
    if (cudaEventCreate(&e0) != cudaSuccess)
        return -1.0f;
    if (cudaEventCreate(&e1) != cudaSuccess) {
        cudaEventDestroy(e0);
        return -1.0f;
    }
    cublasStatus_t st = lt.cublasLtMatmul(blas->lt, p->op, &alpha, A, p->la, B, p->lb, &beta, Dtmp,
                                          p->ld, Dtmp, p->ld, algo, blas->workspace,
                                          blas->ws_size, stream); /* warm-up */
    cudaEventRecord(e0, stream);
    for (int r = 0; r < BLAS_TUNE_REPS && st == CUBLAS_STATUS_SUCCESS; r++)
        st = lt.cublasLtMatmul(blas->lt, p->op, &alpha, A, p->la, B, p->lb, &beta, Dtmp, p->ld,
                               Dtmp, p->ld, algo, blas->workspace, blas->ws_size, stream);
    cudaEventRecord(e1, stream);
    if (st == CUBLAS_STATUS_SUCCESS && cudaEventSynchronize(e1) == cudaSuccess)
        cudaEventElapsedTime(&ms, e0, e1);
    else
        cudaGetLastError(); /* an algorithm that fails is simply not chosen */
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return ms;
}

/* Builds the plan of a shape: descriptors, heuristic candidates, and (autotune) the fastest. */
static cublasStatus_t plan_build(struct melbo_cuda_blas *blas, struct lt_plan *p, const void *A,
                                 const void *B, cudaStream_t stream) {
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t heur[BLAS_TUNE_CANDIDATES];
    cublasOperation_t tb = CUBLAS_OP_N;
    int n_res = 0;
    cublasStatus_t st = lt.cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = lt.cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &p->ta,
                                               sizeof p->ta);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = lt.cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = lt.cublasLtMatrixLayoutCreate(&p->la, p->in_type, p->ta == CUBLAS_OP_T ? p->k : p->m,
                                           p->ta == CUBLAS_OP_T ? p->m : p->k, p->lda);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = lt.cublasLtMatrixLayoutCreate(&p->lb, p->in_type, p->k, p->n, p->ldb);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = lt.cublasLtMatrixLayoutCreate(&p->ld, p->out_type, p->m, p->n, p->ldd);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = lt.cublasLtMatmulPreferenceCreate(&pref);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = lt.cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                     &blas->ws_size, sizeof blas->ws_size);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = lt.cublasLtMatmulAlgoGetHeuristic(blas->lt, p->op, p->la, p->lb, p->ld, p->ld, pref,
                                               blas->autotune ? BLAS_TUNE_CANDIDATES : 1, heur,
                                               &n_res);
    if (pref)
        lt.cublasLtMatmulPreferenceDestroy(pref);
    if (st == CUBLAS_STATUS_SUCCESS && n_res == 0)
        st = CUBLAS_STATUS_NOT_SUPPORTED;
    if (st != CUBLAS_STATUS_SUCCESS)
        return st;
    p->algo = heur[0].algo;
    void *Dtmp = NULL;
    if (n_res > 1 &&
        cudaMalloc(&Dtmp, (size_t)p->ldd * p->n * type_size(p->out_type)) == cudaSuccess) {
        float best = -1.0f;
        for (int i = 0; i < n_res; i++) {
            float ms = time_algo(blas, p, &heur[i].algo, A, B, Dtmp, stream);
            if (ms >= 0.0f && (best < 0.0f || ms < best)) {
                best = ms;
                p->algo = heur[i].algo;
            }
        }
        cudaFree(Dtmp);
    } else {
        cudaGetLastError(); /* no scratch: keep the heuristic's first choice */
    }
    return CUBLAS_STATUS_SUCCESS;
}

/*
 * D = alpha op(A) op(B) + beta C, column-major: A (lda-strided) is k x m when transposed else
 * m x k, B is k x n, C and D m x n (ldd). C may be D.
 */
static int lt_matmul(struct melbo_cuda_blas *blas, cublasOperation_t ta, int m, int n, int k,
                     const void *A, int lda, const void *B, int ldb, const void *C, void *D,
                     int ldd, cudaDataType_t in_type, cudaDataType_t dt, float beta,
                     cudaStream_t stream) {
    struct lt_plan *p = NULL;
    for (int i = 0; i < blas->n_plans && p == NULL; i++) {
        struct lt_plan *q = &blas->plans[i];
        if (q->ta == ta && q->m == m && q->n == n && q->k == k && q->lda == lda &&
            q->ldb == ldb && q->ldd == ldd && q->in_type == in_type && q->out_type == dt)
            p = q;
    }
    if (p == NULL) {
        struct lt_plan fresh;
        memset(&fresh, 0, sizeof fresh);
        fresh.ta = ta, fresh.m = m, fresh.n = n, fresh.k = k;
        fresh.lda = lda, fresh.ldb = ldb, fresh.ldd = ldd;
        fresh.in_type = in_type, fresh.out_type = dt;
        cublasStatus_t st = plan_build(blas, &fresh, A, B, stream);
        if (st != CUBLAS_STATUS_SUCCESS) {
            plan_destroy(&fresh);
            return BLAS_RC(st);
        }
        if (blas->n_plans == BLAS_MAX_PLANS) /* full: forget the oldest */
            plan_destroy(&blas->plans[--blas->n_plans]);
        p = &blas->plans[blas->n_plans++];
        *p = fresh;
    }
    float alpha = 1.0f;
    cublasStatus_t st = lt.cublasLtMatmul(blas->lt, p->op, &alpha, A, p->la, B, p->lb, &beta, C,
                                          p->ld, D, p->ld, &p->algo, blas->workspace,
                                          blas->ws_size, stream);
    return st == CUBLAS_STATUS_SUCCESS ? 0 : BLAS_RC(st);
}

static cudaDataType_t out_cuda_type(enum melbo_cuda_out t) {
    return t == MELBO_CUDA_OUT_F32 ? CUDA_R_32F : CUDA_R_16BF;
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
    const char *tune = getenv("MELBO_GEMM_AUTOTUNE");
    b->autotune = tune == NULL || strcmp(tune, "0") != 0;
    if (!lt_load()) {
        free(b);
        return BLAS_RC(CUBLAS_STATUS_NOT_INITIALIZED);
    }
    st = lt.cublasLtCreate(&b->lt);
    if (st != CUBLAS_STATUS_SUCCESS)
        goto fail_create;
    e = cudaMalloc(&b->workspace, b->ws_size);
    if (e != cudaSuccess)
        goto fail_workspace;
    *out = b;
    return 0;

fail_workspace:
    lt.cublasLtDestroy(b->lt);
    free(b);
    return (int)e;
fail_create:
    free(b);
    return BLAS_RC(st);
}

void melbo_cuda_blas_free(struct melbo_cuda_blas *blas) {
    if (blas == NULL)
        return;
    for (int i = 0; i < blas->n_plans; i++)
        plan_destroy(&blas->plans[i]);
    cudaFree(blas->workspace);
    lt.cublasLtDestroy(blas->lt);
    free(blas);
}

int melbo_cuda_linear_bf16(struct melbo_cuda_blas *blas, const melbo_bf16 *x, const melbo_bf16 *w,
                           void *y, enum melbo_cuda_out out_type, int n, int in, int out,
                           float beta, cudaStream_t stream) {
    if (blas == NULL || n < 0 || in <= 0 || out <= 0)
        return MELBO_EINVAL;
    if (n == 0)
        return 0;
    int rc = lt_matmul(blas, CUBLAS_OP_T, out, n, in, w, in, x, in, y, y, out, CUDA_R_16BF,
                       out_cuda_type(out_type), beta, stream);
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
    int rc = lt_matmul(blas, CUBLAS_OP_N, in, n, out, w, in, dy, out, dx, dx, in, CUDA_R_16BF,
                       out_cuda_type(out_type), beta, stream);
    if (rc)
        return rc;
    MELBO_CUDA_LAUNCH_CHECK();
}

int melbo_cuda_linear_f32(struct melbo_cuda_blas *blas, const float *x, const float *w, float *y,
                          int n, int in, int out, float beta, cudaStream_t stream) {
    if (blas == NULL || n < 0 || in <= 0 || out <= 0)
        return MELBO_EINVAL;
    if (n == 0)
        return 0;
    int rc = lt_matmul(blas, CUBLAS_OP_T, out, n, in, w, in, x, in, y, y, out, CUDA_R_32F, CUDA_R_32F,
                       beta, stream);
    if (rc)
        return rc;
    MELBO_CUDA_LAUNCH_CHECK();
}

int melbo_cuda_linear_dx_f32(struct melbo_cuda_blas *blas, const float *dy, const float *w,
                             float *dx, int n, int in, int out, float beta, cudaStream_t stream) {
    if (blas == NULL || n < 0 || in <= 0 || out <= 0)
        return MELBO_EINVAL;
    if (n == 0)
        return 0;
    int rc = lt_matmul(blas, CUBLAS_OP_N, in, n, out, w, in, dy, out, dx, dx, in, CUDA_R_32F,
                       CUDA_R_32F, beta, stream);
    if (rc)
        return rc;
    MELBO_CUDA_LAUNCH_CHECK();
}

int melbo_cuda_linear_add_bf16(struct melbo_cuda_blas *blas, const melbo_bf16 *x,
                               const melbo_bf16 *w, const void *res, void *y,
                               enum melbo_cuda_out out_type, int n, int in, int out,
                               cudaStream_t stream) {
    if (blas == NULL || n < 0 || in <= 0 || out <= 0)
        return MELBO_EINVAL;
    if (n == 0)
        return 0;
    int rc = lt_matmul(blas, CUBLAS_OP_T, out, n, in, w, in, x, in, res, y, out, CUDA_R_16BF,
                       out_cuda_type(out_type), 1.0f, stream);
    if (rc)
        return rc;
    MELBO_CUDA_LAUNCH_CHECK();
}

int melbo_cuda_linear_add_f32(struct melbo_cuda_blas *blas, const float *x, const float *w,
                              const float *res, float *y, int n, int in, int out,
                              cudaStream_t stream) {
    if (blas == NULL || n < 0 || in <= 0 || out <= 0)
        return MELBO_EINVAL;
    if (n == 0)
        return 0;
    int rc = lt_matmul(blas, CUBLAS_OP_T, out, n, in, w, in, x, in, res, y, out, CUDA_R_32F,
                       CUDA_R_32F, 1.0f, stream);
    if (rc)
        return rc;
    MELBO_CUDA_LAUNCH_CHECK();
}

} // extern "C"
