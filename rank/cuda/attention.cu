/*
 * rank/cuda/attention.cu - causal grouped-query attention over packed sequences, forward and
 * input-gradient backward (rank/cuda/kernels.h). Twin: rank/cpu/attention.c.
 *
 * Short prompts first: one thread block per (sequence, head) walks its query rows one at a
 * time. For a row, each warp takes every n_warps-th key and forms its dot product with the
 * query (lanes across the head dimension, so key rows are read coalesced); the row's scores sit
 * in shared memory for the softmax; then each thread owns head columns of the output. The
 * forward keeps the log-sum-exp of each row; the backward recomputes probabilities from it, as
 * the CPU twin does.
 *
 * The backward is two kernels so that no output element is written twice and nothing needs
 * atomics: dq per (sequence, query head), walking query rows; dk and dv per (sequence, KV
 * head), walking key rows and summing over the query heads of the group and the later queries,
 * in fp32 registers. The dk/dv kernel recomputes the scores (and D = dO.O) instead of storing
 * them, trading about twice the forward's arithmetic for no scratch memory.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "rank/cuda/common.cuh"

#define ATTN_THREADS 128
#define ATTN_WARPS (ATTN_THREADS / WARP_SIZE)
/* Head columns each thread owns in the dk/dv kernel. */
#define ATTN_COLS (MELBO_CUDA_ATTN_MAX_HEAD_DIM / ATTN_THREADS)

// ------------------------------------------------------------------------------------------------
// CUDA kernels

/* Dot product of a shared-memory row a (hd) with a stored row b, summed over a warp. */
template <typename T> __device__ __forceinline__ float warp_dot(const float *a, const T *b, int hd) {
    float s = 0.0f;
    for (int k = threadIdx.x % WARP_SIZE; k < hd; k += WARP_SIZE)
        s += a[k] * load_f(b[k]);
    return warp_sum(s);
}

/* Grid (n_seq, nq). Dynamic shared memory: q (hd) and the scores of one row (max_len). */
template <typename T>
__global__ void attention_kernel(const T *qkv, int ld, T *out, float *lse, int nq, int nkv, int hd,
                                 const int *seq_start, float scale) {
    extern __shared__ float sm[];
    __shared__ float red[WARP_SIZE];
    float *q = sm, *S = sm + hd;
    int s = blockIdx.x, h = blockIdx.y, g = h / (nq / nkv), od = nq * hd;
    int warp = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;
    int t0 = seq_start[s], T_len = seq_start[s + 1] - t0;
    const T *base = qkv + (size_t)t0 * ld;
    const T *K = base + (size_t)nq * hd + (size_t)g * hd;
    const T *V = base + (size_t)(nq + nkv) * hd + (size_t)g * hd;
    for (int i = 0; i < T_len; i++) {
        for (int k = threadIdx.x; k < hd; k += blockDim.x)
            q[k] = load_f(base[(size_t)i * ld + (size_t)h * hd + k]);
        __syncthreads();
        for (int j = warp; j <= i; j += ATTN_WARPS) {
            float dot = warp_dot(q, K + (size_t)j * ld, hd);
            if (lane == 0)
                S[j] = scale * dot;
        }
        __syncthreads();
        float mx = -INFINITY;
        for (int j = threadIdx.x; j <= i; j += blockDim.x)
            mx = fmaxf(mx, S[j]);
        mx = block_max(mx, red, -INFINITY);
        float l = 0.0f;
        for (int j = threadIdx.x; j <= i; j += blockDim.x) {
            float e = expf(S[j] - mx);
            S[j] = e;
            l += e;
        }
        l = block_sum(l, red); /* its barrier also publishes S */
        float inv = 1.0f / l;
        for (int k = threadIdx.x; k < hd; k += blockDim.x) {
            float acc = 0.0f;
            for (int j = 0; j <= i; j++)
                acc += (S[j] * inv) * load_f(V[(size_t)j * ld + k]);
            store_f(&out[(size_t)(t0 + i) * od + (size_t)h * hd + k], acc);
        }
        if (threadIdx.x == 0)
            lse[(size_t)(t0 + i) * nq + h] = mx + logf(l);
    }
}

/*
 * Grid (n_seq, nq): dq of one query head. Per query row i: D = dO_i . O_i, then for every key
 * j <= i dS_ij = p_ij (dO_i . v_j - D) scale, and dq_i = sum_j dS_ij k_j. Shared memory: q_i, dO_i
 * (hd each) and dS of the row (max_len).
 */
template <typename T>
__global__ void attention_dq_kernel(const T *qkv, int ld, const T *out, const float *lse,
                                    const T *dout, T *dqkv, int nq, int nkv, int hd,
                                    const int *seq_start, float scale) {
    extern __shared__ float sm[];
    __shared__ float red[WARP_SIZE];
    float *q = sm, *dO = sm + hd, *dS = sm + 2 * hd;
    int s = blockIdx.x, h = blockIdx.y, g = h / (nq / nkv), od = nq * hd;
    int warp = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;
    int t0 = seq_start[s], T_len = seq_start[s + 1] - t0;
    const T *base = qkv + (size_t)t0 * ld;
    const T *K = base + (size_t)nq * hd + (size_t)g * hd;
    const T *V = base + (size_t)(nq + nkv) * hd + (size_t)g * hd;
    for (int i = 0; i < T_len; i++) {
        size_t orow = (size_t)(t0 + i) * od + (size_t)h * hd;
        float dpart = 0.0f;
        for (int k = threadIdx.x; k < hd; k += blockDim.x) {
            q[k] = load_f(base[(size_t)i * ld + (size_t)h * hd + k]);
            dO[k] = load_f(dout[orow + k]);
            dpart += dO[k] * load_f(out[orow + k]);
        }
        float D = block_sum(dpart, red); /* its barrier also publishes q and dO */
        float L = lse[(size_t)(t0 + i) * nq + h];
        for (int j = warp; j <= i; j += ATTN_WARPS) {
            float sc = scale * warp_dot(q, K + (size_t)j * ld, hd);
            float dp = warp_dot(dO, V + (size_t)j * ld, hd);
            if (lane == 0) {
                float p = expf(sc - L);
                dS[j] = p * (dp - D) * scale;
            }
        }
        __syncthreads();
        for (int k = threadIdx.x; k < hd; k += blockDim.x) {
            float acc = 0.0f;
            for (int j = 0; j <= i; j++)
                acc += dS[j] * load_f(K[(size_t)j * ld + k]);
            store_f(&dqkv[(size_t)(t0 + i) * ld + (size_t)h * hd + k], acc);
        }
        __syncthreads(); /* q, dO and dS are rewritten by the next row */
    }
}

/*
 * Grid (n_seq, nkv): dk and dv of one KV head. Per key row j and query head h of the group:
 * p_ij and dS_ij for every query i >= j (one warp per query, three dot products), then
 * dk_j += sum_i dS_ij q_i and dv_j += sum_i p_ij dO_i in registers. Shared memory: k_j, v_j
 * (hd each), p and dS of the column (max_len each).
 */
template <typename T>
__global__ void attention_dkv_kernel(const T *qkv, int ld, const T *out, const float *lse,
                                     const T *dout, T *dqkv, int nq, int nkv, int hd,
                                     const int *seq_start, int max_len, float scale) {
    extern __shared__ float sm[];
    float *kj = sm, *vj = sm + hd, *P = sm + 2 * hd, *dS = P + max_len;
    int s = blockIdx.x, g = blockIdx.y, group = nq / nkv, od = nq * hd;
    int warp = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;
    int t0 = seq_start[s], T_len = seq_start[s + 1] - t0;
    const T *base = qkv + (size_t)t0 * ld;
    size_t kcol = (size_t)nq * hd + (size_t)g * hd, vcol = (size_t)(nq + nkv) * hd + (size_t)g * hd;
    for (int j = 0; j < T_len; j++) {
        for (int k = threadIdx.x; k < hd; k += blockDim.x) {
            kj[k] = load_f(base[(size_t)j * ld + kcol + k]);
            vj[k] = load_f(base[(size_t)j * ld + vcol + k]);
        }
        __syncthreads();
        float acc_k[ATTN_COLS], acc_v[ATTN_COLS];
#pragma unroll
        for (int c = 0; c < ATTN_COLS; c++)
            acc_k[c] = acc_v[c] = 0.0f;
        for (int h = g * group; h < (g + 1) * group; h++) {
            for (int i = j + warp; i < T_len; i += ATTN_WARPS) {
                const T *qi = base + (size_t)i * ld + (size_t)h * hd;
                const T *oi = out + (size_t)(t0 + i) * od + (size_t)h * hd;
                const T *doi = dout + (size_t)(t0 + i) * od + (size_t)h * hd;
                float sc = 0.0f, dp = 0.0f, D = 0.0f;
                for (int k = lane; k < hd; k += WARP_SIZE) {
                    float dok = load_f(doi[k]);
                    sc += load_f(qi[k]) * kj[k];
                    dp += dok * vj[k];
                    D += dok * load_f(oi[k]);
                }
                sc = scale * warp_sum(sc);
                dp = warp_sum(dp);
                D = warp_sum(D);
                if (lane == 0) {
                    float p = expf(sc - lse[(size_t)(t0 + i) * nq + h]);
                    P[i] = p;
                    dS[i] = p * (dp - D) * scale;
                }
            }
            __syncthreads();
#pragma unroll
            for (int c = 0; c < ATTN_COLS; c++) {
                int k = threadIdx.x + c * ATTN_THREADS;
                if (k >= hd)
                    continue;
                for (int i = j; i < T_len; i++) {
                    acc_k[c] += dS[i] * load_f(base[(size_t)i * ld + (size_t)h * hd + k]);
                    acc_v[c] += P[i] * load_f(dout[(size_t)(t0 + i) * od + (size_t)h * hd + k]);
                }
            }
            __syncthreads(); /* P and dS are rewritten by the next head */
        }
#pragma unroll
        for (int c = 0; c < ATTN_COLS; c++) {
            int k = threadIdx.x + c * ATTN_THREADS;
            if (k >= hd)
                continue;
            store_f(&dqkv[(size_t)(t0 + j) * ld + kcol + k], acc_k[c]);
            store_f(&dqkv[(size_t)(t0 + j) * ld + vcol + k], acc_v[c]);
        }
        /* kj and vj are rewritten by the next key only after every thread passed the barrier
           that ends the head loop above */
    }
}


/* ------------------------------------------------------------------------------------------------
 * Short sequences (T <= ATTN_SHORT_MAX_LEN, hd <= ATTN_SHORT_MAX_HD, hd % 4 == 0), the prompts
 * MELBO trains on: a sequence's whole head is staged in shared memory as fp32 rows padded to
 * hd + 4 floats, so that 16-byte loads of consecutive rows fall in distinct banks, and every
 * product is a small dense loop over float4 with one thread per output element (or per 4
 * consecutive columns). A few barriers per head instead of a few per row. Forward: one block
 * per (sequence, query head). Backward: one block per (sequence, KV head); dq is written per
 * query head, dk and dv are summed over the group's heads in registers.
 */
#define ATTN_SHORT_MAX_LEN 64
#define ATTN_SHORT_MAX_HD 128
#define ATTN_SHORT_THREADS 256
/* float4 accumulators per thread for dk and dv */
#define ATTN_SHORT_ACC4 (ATTN_SHORT_MAX_LEN * ATTN_SHORT_MAX_HD / 4 / ATTN_SHORT_THREADS)

/* Row-major lower triangle: e = i (i + 1) / 2 + j with 0 <= j <= i. */
__device__ __forceinline__ void tri_index(int e, int *i, int *j) {
    int r = (int)((sqrtf(8.0f * (float)e + 1.0f) - 1.0f) * 0.5f);
    while (r * (r + 1) / 2 > e) /* fix the float estimate */
        r--;
    while ((r + 1) * (r + 2) / 2 <= e)
        r++;
    *i = r;
    *j = e - r * (r + 1) / 2;
}

__device__ __forceinline__ float dot4(float4 a, float4 b, float acc) {
    acc += a.x * b.x;
    acc += a.y * b.y;
    acc += a.z * b.z;
    acc += a.w * b.w;
    return acc;
}

__device__ __forceinline__ void axpy4(float4 &acc, float a, float4 x) {
    acc.x += a * x.x;
    acc.y += a * x.y;
    acc.z += a * x.z;
    acc.w += a * x.w;
}

/* dst (T, hd + 4) fp32 <- T rows of hd values of src, ld apart. */
template <typename T>
__device__ __forceinline__ void stage_rows(float *dst, const T *src, size_t ld, int T_len, int hd) {
    for (int e = threadIdx.x; e < T_len * hd; e += blockDim.x) {
        int r = e / hd, k = e % hd;
        dst[r * (hd + 4) + k] = load_f(src[(size_t)r * ld + k]);
    }
}

/* The bf16 overload: 8 values (16 bytes) per load when rows and columns allow it (the common
 * case: hd and ld multiples of 8 on 16-byte aligned buffers), else the scalar loop. */
__device__ __forceinline__ void stage_rows(float *dst, const __nv_bfloat16 *src, size_t ld,
                                           int T_len, int hd) {
    if (hd % 8 || ld % 8 || (uintptr_t)src % 16) {
        for (int e = threadIdx.x; e < T_len * hd; e += blockDim.x) {
            int r = e / hd, k = e % hd;
            dst[r * (hd + 4) + k] = __bfloat162float(src[(size_t)r * ld + k]);
        }
        return;
    }
    int hd8 = hd / 8;
    for (int e = threadIdx.x; e < T_len * hd8; e += blockDim.x) {
        int r = e / hd8, k = (e % hd8) * 8;
        uint4 u = *reinterpret_cast<const uint4 *>(src + (size_t)r * ld + k);
        const __nv_bfloat162 *h2 = reinterpret_cast<const __nv_bfloat162 *>(&u);
        float2 a = __bfloat1622float2(h2[0]), b = __bfloat1622float2(h2[1]);
        float2 c = __bfloat1622float2(h2[2]), d = __bfloat1622float2(h2[3]);
        float4 *o = reinterpret_cast<float4 *>(dst + r * (hd + 4) + k);
        o[0] = make_float4(a.x, a.y, b.x, b.y);
        o[1] = make_float4(c.x, c.y, d.x, d.y);
    }
}

/* Stores 4 consecutive values. */
template <typename T> __device__ __forceinline__ void store4(T *p, float4 v) {
    store_f(&p[0], v.x);
    store_f(&p[1], v.y);
    store_f(&p[2], v.z);
    store_f(&p[3], v.w);
}

/* Grid (n_seq, nq). Shared: Q, K, V (T, hd+4) and S (T, T). */
template <typename T>
__global__ void __launch_bounds__(ATTN_SHORT_THREADS)
    attention_short_kernel(const T *qkv, int ld, T *out, float *lse, int nq, int nkv, int hd,
                           const int *seq_start, float scale) {
    extern __shared__ float4 sm4[];
    float *sm = (float *)sm4;
    int s = blockIdx.x, h = blockIdx.y, g = h / (nq / nkv), od = nq * hd, hp = hd + 4;
    int hp4 = hp / 4, hd4 = hd / 4;
    int t0 = seq_start[s], n = seq_start[s + 1] - t0;
    float *Q = sm, *K = Q + n * hp, *V = K + n * hp, *S = V + n * hp;
    const float4 *Q4 = (const float4 *)Q, *K4 = (const float4 *)K, *V4 = (const float4 *)V;
    const T *base = qkv + (size_t)t0 * ld;
    stage_rows(Q, base + (size_t)h * hd, ld, n, hd);
    stage_rows(K, base + (size_t)nq * hd + (size_t)g * hd, ld, n, hd);
    stage_rows(V, base + (size_t)(nq + nkv) * hd + (size_t)g * hd, ld, n, hd);
    __syncthreads();
    for (int e = threadIdx.x; e < n * (n + 1) / 2; e += blockDim.x) { /* j <= i only */
        int i, j;
        tri_index(e, &i, &j);
        float acc = 0.0f;
        for (int k = 0; k < hd4; k++)
            acc = dot4(Q4[i * hp4 + k], K4[j * hp4 + k], acc);
        S[i * n + j] = scale * acc;
    }
    __syncthreads();
    /* softmax: one warp per row */
    int warp = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;
    for (int i = warp; i < n; i += blockDim.x / WARP_SIZE) {
        float mx = -INFINITY;
        for (int j = lane; j <= i; j += WARP_SIZE)
            mx = fmaxf(mx, S[i * n + j]);
        mx = warp_max(mx);
        float l = 0.0f;
        for (int j = lane; j < n; j += WARP_SIZE) {
            float e = j <= i ? expf(S[i * n + j] - mx) : 0.0f;
            S[i * n + j] = e;
            l += e;
        }
        l = warp_sum(l);
        float inv = 1.0f / l;
        for (int j = lane; j < n; j += WARP_SIZE)
            S[i * n + j] *= inv;
        if (lane == 0)
            lse[(size_t)(t0 + i) * nq + h] = mx + logf(l);
    }
    __syncthreads();
    for (int e = threadIdx.x; e < n * hd4; e += blockDim.x) {
        int i = e / hd4, k = e % hd4;
        float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        for (int j = 0; j <= i; j++)
            axpy4(acc, S[i * n + j], V4[j * hp4 + k]);
        store4(&out[(size_t)(t0 + i) * od + (size_t)h * hd + 4 * k], acc);
    }
}

/* Grid (n_seq, nkv). Shared: K, V, Q, dO (T, hd+4), P and dS (T, T), D (T). */
template <typename T>
__global__ void __launch_bounds__(ATTN_SHORT_THREADS)
    attention_short_dx_kernel(const T *qkv, int ld, const T *out, const float *lse, const T *dout,
                              T *dqkv, int nq, int nkv, int hd, const int *seq_start,
                              float scale) {
    extern __shared__ float4 sm4[];
    float *sm = (float *)sm4;
    int s = blockIdx.x, g = blockIdx.y, group = nq / nkv, od = nq * hd, hp = hd + 4;
    int hp4 = hp / 4, hd4 = hd / 4;
    int t0 = seq_start[s], n = seq_start[s + 1] - t0;
    float *K = sm, *V = K + n * hp, *Q = V + n * hp, *dO = Q + n * hp, *P = dO + n * hp;
    float *dS = P + n * n, *D = dS + n * n;
    const float4 *K4 = (const float4 *)K, *V4 = (const float4 *)V;
    const float4 *Q4 = (const float4 *)Q, *dO4 = (const float4 *)dO;
    int warp = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;
    const T *base = qkv + (size_t)t0 * ld;
    size_t kcol = (size_t)nq * hd + (size_t)g * hd, vcol = (size_t)(nq + nkv) * hd + (size_t)g * hd;
    stage_rows(K, base + kcol, ld, n, hd);
    stage_rows(V, base + vcol, ld, n, hd);
    float4 acc_k[ATTN_SHORT_ACC4], acc_v[ATTN_SHORT_ACC4];
#pragma unroll
    for (int r = 0; r < ATTN_SHORT_ACC4; r++)
        acc_k[r] = acc_v[r] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    for (int h = g * group; h < (g + 1) * group; h++) {
        __syncthreads(); /* K, V staged; the previous head's Q, dO, P, dS consumed */
        stage_rows(Q, base + (size_t)h * hd, ld, n, hd);
        stage_rows(dO, dout + (size_t)t0 * od + (size_t)h * hd, od, n, hd);
        for (int i = warp; i < n; i += blockDim.x / WARP_SIZE) { /* D_i = dO_i . O_i */
            const T *o = out + (size_t)(t0 + i) * od + (size_t)h * hd;
            const T *dd = dout + (size_t)(t0 + i) * od + (size_t)h * hd;
            float part = 0.0f;
            for (int k = lane; k < hd; k += WARP_SIZE)
                part += load_f(dd[k]) * load_f(o[k]);
            part = warp_sum(part);
            if (lane == 0)
                D[i] = part;
        }
        __syncthreads();
        for (int e = threadIdx.x; e < n * (n + 1) / 2; e += blockDim.x) { /* j <= i only */
            int i, j;
            tri_index(e, &i, &j);
            float sc = 0.0f, dp = 0.0f;
            for (int k = 0; k < hd4; k++) {
                sc = dot4(Q4[i * hp4 + k], K4[j * hp4 + k], sc);
                dp = dot4(dO4[i * hp4 + k], V4[j * hp4 + k], dp);
            }
            float p = expf(scale * sc - lse[(size_t)(t0 + i) * nq + h]);
            P[i * n + j] = p;
            dS[i * n + j] = p * (dp - D[i]) * scale;
        }
        __syncthreads();
        for (int e = threadIdx.x; e < n * hd4; e += blockDim.x) { /* dq_i = sum_j dS_ij k_j */
            int i = e / hd4, k = e % hd4;
            float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            for (int j = 0; j <= i; j++)
                axpy4(acc, dS[i * n + j], K4[j * hp4 + k]);
            store4(&dqkv[(size_t)(t0 + i) * ld + (size_t)h * hd + 4 * k], acc);
        }
#pragma unroll
        for (int r = 0; r < ATTN_SHORT_ACC4; r++) { /* dk_j, dv_j over queries i >= j */
            int e = threadIdx.x + r * ATTN_SHORT_THREADS;
            if (e < n * hd4) {
                int j = e / hd4, k = e % hd4;
                for (int i = j; i < n; i++) {
                    axpy4(acc_k[r], dS[i * n + j], Q4[i * hp4 + k]);
                    axpy4(acc_v[r], P[i * n + j], dO4[i * hp4 + k]);
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < ATTN_SHORT_ACC4; r++) {
        int e = threadIdx.x + r * ATTN_SHORT_THREADS;
        if (e < n * hd4) {
            int j = e / hd4, k = e % hd4;
            store4(&dqkv[(size_t)(t0 + j) * ld + kcol + 4 * k], acc_k[r]);
            store4(&dqkv[(size_t)(t0 + j) * ld + vcol + 4 * k], acc_v[r]);
        }
    }
}

static size_t short_fwd_smem(int T_len, int hd) {
    return sizeof(float) * (3 * (size_t)T_len * (hd + 4) + (size_t)T_len * T_len);
}

static size_t short_dx_smem(int T_len, int hd) {
    return sizeof(float) * (4 * (size_t)T_len * (hd + 4) + 2 * (size_t)T_len * T_len + T_len);
}

/* 1 when the short-sequence kernels take this shape (their shared memory opted in). */
template <typename T> static int use_short(int hd, int max_len) {
    if (max_len > ATTN_SHORT_MAX_LEN || hd > ATTN_SHORT_MAX_HD || hd % 4)
        return 0;
    static int opted = 0; /* per T instantiation: 1 usable, -1 off (MELBO_ATTN_NAIVE or refused) */
    if (opted == 0) {
        if (getenv("MELBO_ATTN_NAIVE")) { /* debugging: force the per-row kernels */
            opted = -1;
            return 0;
        }
        int mx = (int)short_dx_smem(ATTN_SHORT_MAX_LEN, ATTN_SHORT_MAX_HD);
        if (cudaFuncSetAttribute(attention_short_kernel<T>,
                                 cudaFuncAttributeMaxDynamicSharedMemorySize, mx) != cudaSuccess ||
            cudaFuncSetAttribute(attention_short_dx_kernel<T>,
                                 cudaFuncAttributeMaxDynamicSharedMemorySize, mx) != cudaSuccess) {
            cudaGetLastError();
            opted = -1;
            return 0;
        }
        opted = 1;
    }
    return opted == 1;
}

// ------------------------------------------------------------------------------------------------
// kernel launchers

static int attention_check(int ld, int nq, int nkv, int hd, int n_seq, int max_len) {
    if (n_seq < 0 || nq <= 0 || nkv <= 0 || nq % nkv || hd <= 0 || max_len < 0 ||
        ld < (nq + 2 * nkv) * hd)
        return MELBO_EINVAL;
    if (hd > MELBO_CUDA_ATTN_MAX_HEAD_DIM || max_len > MELBO_CUDA_ATTN_MAX_LEN)
        return MELBO_EUNSUPPORTED;
    return 0;
}

template <typename T>
static int attention_launch(const T *qkv, int ld, T *out, float *lse, int nq, int nkv, int hd,
                            const int *seq_start, int n_seq, int max_len, cudaStream_t stream) {
    int rc = attention_check(ld, nq, nkv, hd, n_seq, max_len);
    if (rc || n_seq == 0 || max_len == 0)
        return rc;
    dim3 grid(n_seq, nq);
    if (use_short<T>(hd, max_len)) {
        attention_short_kernel<T><<<grid, ATTN_SHORT_THREADS, short_fwd_smem(max_len, hd),
                                    stream>>>(qkv, ld, out, lse, nq, nkv, hd, seq_start,
                                              1.0f / sqrtf((float)hd));
        MELBO_CUDA_LAUNCH_CHECK();
    }
    size_t shmem = sizeof(float) * ((size_t)hd + max_len);
    attention_kernel<T><<<grid, ATTN_THREADS, shmem, stream>>>(qkv, ld, out, lse, nq, nkv, hd,
                                                               seq_start, 1.0f / sqrtf((float)hd));
    MELBO_CUDA_LAUNCH_CHECK();
}

template <typename T>
static int attention_dx_launch(const T *qkv, int ld, const T *out, const float *lse, const T *dout,
                               T *dqkv, int nq, int nkv, int hd, const int *seq_start, int n_seq,
                               int max_len, cudaStream_t stream) {
    int rc = attention_check(ld, nq, nkv, hd, n_seq, max_len);
    if (rc || n_seq == 0 || max_len == 0)
        return rc;
    float scale = 1.0f / sqrtf((float)hd);
    if (use_short<T>(hd, max_len)) {
        attention_short_dx_kernel<T><<<dim3(n_seq, nkv), ATTN_SHORT_THREADS,
                                       short_dx_smem(max_len, hd), stream>>>(
            qkv, ld, out, lse, dout, dqkv, nq, nkv, hd, seq_start, scale);
        MELBO_CUDA_LAUNCH_CHECK();
    }
    size_t shmem_q = sizeof(float) * (2 * (size_t)hd + max_len);
    attention_dq_kernel<T><<<dim3(n_seq, nq), ATTN_THREADS, shmem_q, stream>>>(
        qkv, ld, out, lse, dout, dqkv, nq, nkv, hd, seq_start, scale);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        return (int)e;
    size_t shmem_kv = sizeof(float) * (2 * (size_t)hd + 2 * (size_t)max_len);
    attention_dkv_kernel<T><<<dim3(n_seq, nkv), ATTN_THREADS, shmem_kv, stream>>>(
        qkv, ld, out, lse, dout, dqkv, nq, nkv, hd, seq_start, max_len, scale);
    MELBO_CUDA_LAUNCH_CHECK();
}

extern "C" {

int melbo_cuda_attention_f32(const float *qkv, int ld, float *out, float *lse, int nq, int nkv,
                             int hd, const int *seq_start, int n_seq, int max_len,
                             cudaStream_t stream) {
    return attention_launch(qkv, ld, out, lse, nq, nkv, hd, seq_start, n_seq, max_len, stream);
}

int melbo_cuda_attention_bf16(const melbo_bf16 *qkv, int ld, melbo_bf16 *out, float *lse, int nq,
                              int nkv, int hd, const int *seq_start, int n_seq, int max_len,
                              cudaStream_t stream) {
    return attention_launch(as_bf(qkv), ld, as_bf(out), lse, nq, nkv, hd, seq_start, n_seq,
                            max_len, stream);
}

int melbo_cuda_attention_dx_f32(const float *qkv, int ld, const float *out, const float *lse,
                                const float *dout, float *dqkv, int nq, int nkv, int hd,
                                const int *seq_start, int n_seq, int max_len,
                                cudaStream_t stream) {
    return attention_dx_launch(qkv, ld, out, lse, dout, dqkv, nq, nkv, hd, seq_start, n_seq,
                               max_len, stream);
}

int melbo_cuda_attention_dx_bf16(const melbo_bf16 *qkv, int ld, const melbo_bf16 *out,
                                 const float *lse, const melbo_bf16 *dout, melbo_bf16 *dqkv,
                                 int nq, int nkv, int hd, const int *seq_start, int n_seq,
                                 int max_len, cudaStream_t stream) {
    return attention_dx_launch(as_bf(qkv), ld, as_bf(out), lse, as_bf(dout), as_bf(dqkv), nq, nkv,
                               hd, seq_start, n_seq, max_len, stream);
}

} // extern "C"
