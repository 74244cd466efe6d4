/*
 * rank/cuda/optim.cu - the steering-vector update of a wave (rank/cuda/kernels.h). Twin:
 * melbo_vector_update in rank/method/optim.c.
 *
 * One block of 1024 threads per vector; each thread keeps its columns (j = tid + c * 1024) of
 * the fp64 working copy in registers, so no scratch memory is needed for d up to
 * MELBO_CUDA_OPTIM_MAX_D. Projections are sequential over the rows of Q (each one a block
 * reduction), as in the CPU twin. The AMSGrad arithmetic uses the round-to-nearest intrinsics so
 * nvcc cannot contract it into fused multiply-adds: the fp32 update is then the same, bit for
 * bit, as the CPU's (and PyTorch's foreach-free AdamW) given the same projected gradient.
 */
#include <math.h>

#include "rank/cuda/common.cuh"

#define OPTIM_THREADS 1024
#define OPTIM_COLS (MELBO_CUDA_OPTIM_MAX_D / OPTIM_THREADS)

/* The step's scalars, formed on the host exactly as the CPU twin forms them. */
struct amsgrad_scalars {
    float omb1, b2, omb2; // 1 - beta1, beta2, 1 - beta2 in fp32
    float step_size;      // lr / (1 - beta1^t)
    float bc2_sqrt;       // sqrt(1 - beta2^t)
    float eps;
};

// ------------------------------------------------------------------------------------------------
// CUDA kernels

/* x -= (x . u_k) / (u_k . u_k) u_k for each row u_k of Q in order (fp64, block-wide sums). */
__device__ void project_out(double (&x)[OPTIM_COLS], const float *Q, int n_q, int d, double *red) {
    for (int r = 0; r < n_q; r++) {
        const float *u = Q + (size_t)r * d;
        double dot = 0.0, nn = 0.0;
#pragma unroll
        for (int c = 0; c < OPTIM_COLS; c++) {
            int j = threadIdx.x + c * OPTIM_THREADS;
            if (j < d) {
                dot += x[c] * (double)u[j];
                nn += (double)u[j] * (double)u[j];
            }
        }
        dot = block_sum(dot, red);
        nn = block_sum(nn, red);
        if (nn == 0.0)
            continue;
        double k = dot / nn;
#pragma unroll
        for (int c = 0; c < OPTIM_COLS; c++) {
            int j = threadIdx.x + c * OPTIM_THREADS;
            if (j < d)
                x[c] -= k * (double)u[j];
        }
    }
}

__global__ void __launch_bounds__(OPTIM_THREADS)
    vector_update_kernel(float *theta, float *g, float *m, float *v, float *vhat, int d, double R,
                         struct amsgrad_scalars a, const float *Q, int n_q) {
    __shared__ double red[WARP_SIZE];
    size_t o = (size_t)blockIdx.x * d;
    theta += o;
    g += o;
    m += o;
    v += o;
    vhat += o;
    double x[OPTIM_COLS];

    /* gradient: off Q, then onto the tangent space at theta */
#pragma unroll
    for (int c = 0; c < OPTIM_COLS; c++) {
        int j = threadIdx.x + c * OPTIM_THREADS;
        x[c] = j < d ? (double)g[j] : 0.0;
    }
    project_out(x, Q, n_q, d, red);
    double gt = 0.0;
#pragma unroll
    for (int c = 0; c < OPTIM_COLS; c++) {
        int j = threadIdx.x + c * OPTIM_THREADS;
        if (j < d)
            gt += x[c] * (double)theta[j];
    }
    gt = block_sum(gt, red);

    /* AMSGrad, torch.optim.AdamW(amsgrad=True, weight_decay=0) on fp32 tensors */
#pragma unroll
    for (int c = 0; c < OPTIM_COLS; c++) {
        int j = threadIdx.x + c * OPTIM_THREADS;
        if (j >= d)
            continue;
        float th = theta[j];
        float gj = (float)(x[c] - gt * (double)th / (R * R));
        g[j] = gj;
        float mj = __fadd_rn(m[j], __fmul_rn(a.omb1, __fsub_rn(gj, m[j]))); /* lerp */
        float vj = __fadd_rn(__fmul_rn(v[j], a.b2), __fmul_rn(__fmul_rn(a.omb2, gj), gj));
        float hj = vhat[j] > vj ? vhat[j] : vj;
        float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(hj), a.bc2_sqrt), a.eps);
        th = __fsub_rn(th, __fmul_rn(a.step_size, __fdiv_rn(mj, denom)));
        m[j] = mj;
        v[j] = vj;
        vhat[j] = hj;
        x[c] = (double)th;
    }

    /* parameter: off Q, back onto the sphere of radius R */
    project_out(x, Q, n_q, d, red);
    double nn = 0.0;
#pragma unroll
    for (int c = 0; c < OPTIM_COLS; c++)
        nn += x[c] * x[c]; /* columns past d hold 0 */
    double n = sqrt(block_sum(nn, red));
    n = n > 1e-12 ? n : 1e-12;
#pragma unroll
    for (int c = 0; c < OPTIM_COLS; c++) {
        int j = threadIdx.x + c * OPTIM_THREADS;
        if (j < d)
            theta[j] = (float)(x[c] / n * R);
    }
}

// ------------------------------------------------------------------------------------------------
// kernel launchers

extern "C" int melbo_cuda_vector_update(float *theta, float *g, float *m, float *v, float *vhat,
                                        int B, int d, int t, double R, double lr, double beta1,
                                        double beta2, double eps, const float *Q, int n_q,
                                        cudaStream_t stream) {
    if (B < 0 || d <= 0 || t < 1 || n_q < 0 || (n_q > 0 && Q == NULL) || !(R > 0))
        return MELBO_EINVAL;
    if (d > MELBO_CUDA_OPTIM_MAX_D)
        return MELBO_EUNSUPPORTED;
    if (B == 0)
        return 0;
    struct amsgrad_scalars a;
    float b1 = (float)beta1, b2 = (float)beta2;
    double bc1 = 1.0 - pow(beta1, t), bc2 = 1.0 - pow(beta2, t);
    a.omb1 = 1.0f - b1;
    a.b2 = b2;
    a.omb2 = 1.0f - b2;
    a.step_size = (float)(lr / bc1);
    a.bc2_sqrt = (float)sqrt(bc2);
    a.eps = (float)eps;
    vector_update_kernel<<<B, OPTIM_THREADS, 0, stream>>>(theta, g, m, v, vhat, d, R, a,
                                                          n_q > 0 ? Q : NULL, n_q);
    MELBO_CUDA_LAUNCH_CHECK();
}
