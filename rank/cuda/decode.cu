/*
 * rank/cuda/decode.cu - the kernels of KV-cached generation (rank/cuda/decode_kernels.h):
 * embedding gather, KV-cache append, attention against the cache, greedy argmax and the
 * per-row steering add.
 *
 * Twins: melbo_cpu_embed and melbo_cpu_decoder_forward / block_cached (rank/cpu), whose
 * attention is melbo_cpu_attend_head; melbo_argmax (rank/generate/sampler.c). Every kernel is a
 * template over the stored type (float or bf16) and computes in fp32.
 *
 * Attention: one block per (query token, query head). The query sits in shared memory; the
 * positions 0 .. pos of the token's slot are walked in chunks of DEC_CHUNK. For a chunk, each
 * warp takes every DEC_WARPS-th position and forms its score (lanes across the head dimension,
 * so a key row is read coalesced); the chunk's scores sit in shared memory for its maximum, the
 * exponentials and their sum; then each thread owns head columns of the output and accumulates
 * the weighted values in registers. Across chunks the softmax is online: when a chunk raises the
 * running maximum, the running sum and the accumulated output are multiplied by
 * exp(old max - new max). Shared memory is fixed (query + one chunk), so any context length
 * runs. A context of at most DEC_CHUNK positions is one chunk: maximum, exponentials and their
 * sum as the CPU twin forms them; the twin then weights the values with normalised
 * probabilities, this kernel divides the weighted sum by the sum at the end (rel ~1e-6 apart).
 *
 * Decoding (one token per sequence) is n_seq * nq blocks over short contexts; prefill is one
 * block per prompt token and head, each re-reading its slot's keys and values (from L2 for the
 * prompts the benchmark uses). Sharing key loads across the query heads of a group, or across
 * query tokens, would cut that traffic and is the next step if attention ever shows in profiles.
 */
#include <limits.h>
#include <math.h>

#include "rank/cuda/common.cuh"
#include "rank/cuda/decode_kernels.h"

#define ROW_THREADS    256 /* embed, kv_append, add_rows: one block per row */
#define ARGMAX_THREADS 1024
#define DEC_THREADS    128 /* attention: one block per (query token, query head) */
#define DEC_WARPS      (DEC_THREADS / WARP_SIZE)
#define DEC_CHUNK      256 /* positions whose scores sit in shared memory at once */
/* Head columns each attention thread owns. */
#define DEC_COLS CEIL_DIV(MELBO_CUDA_ATTN_MAX_HEAD_DIM, DEC_THREADS)
/* The largest gridDim.y a launch may use. */
#define MAX_GRID_Y 65535

// ------------------------------------------------------------------------------------------------
// CUDA kernels

/* Grid (n): row r of out is row ids[r] of table, or zeros when ids[r] is outside [0, V). */
template <typename T>
__global__ void decode_embed_kernel(const T *table, const int32_t *ids, T *out, int d, int V) {
    int32_t id = ids[blockIdx.x];
    T *o = out + (size_t)blockIdx.x * d;
    if (id < 0 || id >= V) {
        for (int j = threadIdx.x; j < d; j += blockDim.x)
            store_f(&o[j], 0.0f);
        return;
    }
    const T *src = table + (size_t)id * d;
    for (int j = threadIdx.x; j < d; j += blockDim.x)
        o[j] = src[j];
}

/*
 * Grid (n_tok): token t's key heads (kvd values from column kcol of its qkv row) and value heads
 * (the next kvd values) are copied to position tok_pos[t] of slot tok_slot[t]. Tokens with a
 * negative slot or a position outside [0, cap) are skipped.
 */
template <typename T>
__global__ void decode_kv_append_kernel(const T *qkv, int ld, int kcol, int kvd,
                                        const int *tok_slot, const int *tok_pos, T *k_cache,
                                        T *v_cache, int cap) {
    int slot = tok_slot[blockIdx.x], pos = tok_pos[blockIdx.x];
    if (slot < 0 || pos < 0 || pos >= cap)
        return;
    const T *src = qkv + (size_t)blockIdx.x * ld + kcol;
    size_t dst = ((size_t)slot * cap + pos) * kvd;
    for (int j = threadIdx.x; j < kvd; j += blockDim.x) {
        k_cache[dst + j] = src[j];
        v_cache[dst + j] = src[kvd + j];
    }
}

/* Dot product of a shared-memory row a (hd) with a stored row b, summed over a warp. */
template <typename T>
__device__ __forceinline__ float decode_warp_dot(const float *a, const T *b, int hd) {
    float s = 0.0f;
    for (int k = threadIdx.x % WARP_SIZE; k < hd; k += WARP_SIZE)
        s += a[k] * load_f(b[k]);
    return warp_sum(s);
}

/*
 * Grid (n_q_tok, nq), DEC_THREADS threads. Block (t, h): query head h of token t against
 * positions 0 .. tok_pos[t] of slot tok_slot[t], KV head h / (nq / nkv). Static shared memory:
 * the query (hd <= MELBO_CUDA_ATTN_MAX_HEAD_DIM) and the scores of one chunk.
 */
template <typename T>
__global__ void __launch_bounds__(DEC_THREADS)
    attention_decode_kernel(const T *q, int ldq, const T *k_cache, const T *v_cache, int cap,
                            const int *tok_slot, const int *tok_pos, T *out, int nq, int nkv,
                            int hd, int max_pos, float scale) {
    __shared__ float qs[MELBO_CUDA_ATTN_MAX_HEAD_DIM];
    __shared__ float S[DEC_CHUNK];
    __shared__ float red[WARP_SIZE];
    int t = blockIdx.x, h = blockIdx.y, g = h / (nq / nkv), kvd = nkv * hd;
    int warp = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;
    int slot = tok_slot[t], pos = tok_pos[t];
    T *o = out + (size_t)t * nq * hd + (size_t)h * hd;
    if (slot < 0 || pos < 0 || pos >= max_pos) { /* the same for the whole block */
        for (int k = threadIdx.x; k < hd; k += blockDim.x)
            store_f(&o[k], 0.0f);
        return;
    }
    size_t base = (size_t)slot * cap * kvd + (size_t)g * hd;
    const T *K = k_cache + base, *V = v_cache + base;
    const T *qr = q + (size_t)t * ldq + (size_t)h * hd;
    for (int k = threadIdx.x; k < hd; k += blockDim.x)
        qs[k] = load_f(qr[k]);
    __syncthreads();

    float m = -INFINITY, l = 0.0f, acc[DEC_COLS];
#pragma unroll
    for (int c = 0; c < DEC_COLS; c++)
        acc[c] = 0.0f;
    int n_keys = pos + 1;
    for (int c0 = 0; c0 < n_keys; c0 += DEC_CHUNK) {
        int cn = min(DEC_CHUNK, n_keys - c0);
        const T *Kc = K + (size_t)c0 * kvd, *Vc = V + (size_t)c0 * kvd;
        for (int j = warp; j < cn; j += DEC_WARPS) {
            float dot = decode_warp_dot(qs, Kc + (size_t)j * kvd, hd);
            if (lane == 0)
                S[j] = scale * dot;
        }
        __syncthreads();
        /* each thread reads, then overwrites, only its own j: no barrier between the loops */
        float cm = -INFINITY;
        for (int j = threadIdx.x; j < cn; j += blockDim.x)
            cm = fmaxf(cm, S[j]);
        float m_new = fmaxf(m, block_max(cm, red, -INFINITY));
        float alpha = m == -INFINITY ? 0.0f : expf(m - m_new); /* first chunk: nothing to scale */
        float ls = 0.0f;
        for (int j = threadIdx.x; j < cn; j += blockDim.x) {
            float e = expf(S[j] - m_new);
            S[j] = e;
            ls += e;
        }
        l = l * alpha + block_sum(ls, red); /* its barrier also publishes S */
#pragma unroll
        for (int c = 0; c < DEC_COLS; c++) {
            int k = threadIdx.x + c * DEC_THREADS;
            if (k >= hd)
                continue;
            float a = 0.0f;
#pragma unroll 4
            for (int j = 0; j < cn; j++)
                a += S[j] * load_f(Vc[(size_t)j * kvd + k]);
            acc[c] = acc[c] * alpha + a;
        }
        m = m_new;
        __syncthreads(); /* S is rewritten by the next chunk */
    }
    float inv = 1.0f / l;
#pragma unroll
    for (int c = 0; c < DEC_COLS; c++) {
        int k = threadIdx.x + c * DEC_THREADS;
        if (k < hd)
            store_f(&o[k], acc[c] * inv);
    }
}

/* (v, i) beats (w, j): a larger value, or an equal one at a lower index. False for NaN v. */
__device__ __forceinline__ bool argmax_beats(float v, int i, float w, int j) {
    return v > w || (v == w && i < j);
}

/* The best (value, index) of the warp's pairs, to every lane. */
__device__ __forceinline__ void argmax_warp(float *v, int *i) {
    for (int o = WARP_SIZE / 2; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, *v, o);
        int oi = __shfl_xor_sync(0xffffffffu, *i, o);
        if (argmax_beats(ov, oi, *v, *i)) {
            *v = ov;
            *i = oi;
        }
    }
}

/*
 * Grid (n), ARGMAX_THREADS threads: the first index of the row's maximum over its non-NaN
 * values, 0 when the first value is NaN (melbo_argmax's result). A thread without a candidate
 * holds (-inf, INT_MAX), which any real value beats or ties at a lower index. Pairs never hold
 * NaN, so argmax_beats is a strict total order and the reduction order does not matter.
 */
__global__ void decode_argmax_kernel(const float *logits, int V, int32_t *out) {
    __shared__ float sv[WARP_SIZE];
    __shared__ int si[WARP_SIZE];
    const float *row = logits + (size_t)blockIdx.x * V;
    int lane = threadIdx.x % WARP_SIZE, warp = threadIdx.x / WARP_SIZE;
    int n_warps = blockDim.x / WARP_SIZE;
    float bv = -INFINITY;
    int bi = INT_MAX;
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        float v = row[i];
        if (argmax_beats(v, i, bv, bi)) {
            bv = v;
            bi = i;
        }
    }
    argmax_warp(&bv, &bi);
    if (lane == 0) {
        sv[warp] = bv;
        si[warp] = bi;
    }
    __syncthreads();
    if (warp != 0)
        return;
    bv = lane < n_warps ? sv[lane] : -INFINITY;
    bi = lane < n_warps ? si[lane] : INT_MAX;
    argmax_warp(&bv, &bi);
    if (lane == 0)
        out[blockIdx.x] = (isnan(row[0]) || bi == INT_MAX) ? 0 : bi;
}

/* Grid (n): x[r] += fp32(scale * vec[row_vec[r]]) when row_vec[r] >= 0. */
template <typename T>
__global__ void decode_add_rows_kernel(T *x, const float *vec, const int *row_vec, float scale,
                                       int d) {
    int v = row_vec[blockIdx.x];
    if (v < 0)
        return;
    T *xr = x + (size_t)blockIdx.x * d;
    const float *vr = vec + (size_t)v * d;
    for (int j = threadIdx.x; j < d; j += blockDim.x)
        store_f(&xr[j], load_f(xr[j]) + __fmul_rn(scale, vr[j])); /* _rn: no fused multiply-add */
}

// ------------------------------------------------------------------------------------------------
// kernel launchers

template <typename T>
static int embed_launch(const T *table, const int32_t *ids, T *out, int n, int d, int V,
                        cudaStream_t stream) {
    if (n < 0 || d <= 0 || V <= 0)
        return MELBO_EINVAL;
    if (n == 0)
        return 0;
    decode_embed_kernel<T><<<n, ROW_THREADS, 0, stream>>>(table, ids, out, d, V);
    MELBO_CUDA_LAUNCH_CHECK();
}

template <typename T>
static int kv_append_launch(const T *qkv, int ld, int nq, int nkv, int hd, const int *tok_slot,
                            const int *tok_pos, int n_tok, T *k_cache, T *v_cache, int cap,
                            cudaStream_t stream) {
    if (n_tok < 0 || nq <= 0 || nkv <= 0 || hd <= 0 || cap <= 0 ||
        (long long)(nq + 2LL * nkv) * hd > ld)
        return MELBO_EINVAL;
    if (n_tok == 0)
        return 0;
    decode_kv_append_kernel<T><<<n_tok, ROW_THREADS, 0, stream>>>(
        qkv, ld, nq * hd, nkv * hd, tok_slot, tok_pos, k_cache, v_cache, cap);
    MELBO_CUDA_LAUNCH_CHECK();
}

template <typename T>
static int attention_decode_launch(const T *q, int ldq, const T *k_cache, const T *v_cache, int cap,
                                   const int *tok_slot, const int *tok_pos, T *out, int n_q_tok,
                                   int nq, int nkv, int hd, int max_pos, cudaStream_t stream) {
    if (n_q_tok < 0 || nq <= 0 || nkv <= 0 || nq % nkv || hd <= 0 || cap <= 0 || max_pos < 0 ||
        max_pos > cap || (long long)nq * hd > ldq)
        return MELBO_EINVAL;
    if (hd > MELBO_CUDA_ATTN_MAX_HEAD_DIM || nq > MAX_GRID_Y)
        return MELBO_EUNSUPPORTED;
    if (n_q_tok == 0)
        return 0;
    dim3 grid(n_q_tok, nq);
    attention_decode_kernel<T>
        <<<grid, DEC_THREADS, 0, stream>>>(q, ldq, k_cache, v_cache, cap, tok_slot, tok_pos, out,
                                           nq, nkv, hd, max_pos, 1.0f / sqrtf((float)hd));
    MELBO_CUDA_LAUNCH_CHECK();
}

template <typename T>
static int add_rows_launch(T *x, const float *vec, const int *row_vec, float scale, int n, int d,
                           cudaStream_t stream) {
    if (n < 0 || d <= 0)
        return MELBO_EINVAL;
    if (n == 0)
        return 0;
    decode_add_rows_kernel<T><<<n, ROW_THREADS, 0, stream>>>(x, vec, row_vec, scale, d);
    MELBO_CUDA_LAUNCH_CHECK();
}

extern "C" {

int melbo_cuda_embed_f32(const float *table, const int32_t *ids, float *out, int n, int d, int V,
                         cudaStream_t stream) {
    return embed_launch(table, ids, out, n, d, V, stream);
}

int melbo_cuda_embed_bf16(const melbo_bf16 *table, const int32_t *ids, melbo_bf16 *out, int n,
                          int d, int V, cudaStream_t stream) {
    return embed_launch(as_bf(table), ids, as_bf(out), n, d, V, stream);
}

int melbo_cuda_kv_append_f32(const float *qkv, int ld, int nq, int nkv, int hd, const int *tok_slot,
                             const int *tok_pos, int n_tok, float *k_cache, float *v_cache, int cap,
                             cudaStream_t stream) {
    return kv_append_launch(qkv, ld, nq, nkv, hd, tok_slot, tok_pos, n_tok, k_cache, v_cache, cap,
                            stream);
}

int melbo_cuda_kv_append_bf16(const melbo_bf16 *qkv, int ld, int nq, int nkv, int hd,
                              const int *tok_slot, const int *tok_pos, int n_tok,
                              melbo_bf16 *k_cache, melbo_bf16 *v_cache, int cap,
                              cudaStream_t stream) {
    return kv_append_launch(as_bf(qkv), ld, nq, nkv, hd, tok_slot, tok_pos, n_tok, as_bf(k_cache),
                            as_bf(v_cache), cap, stream);
}

int melbo_cuda_attention_decode_f32(const float *q, int ldq, const float *k_cache,
                                    const float *v_cache, int cap, const int *tok_slot,
                                    const int *tok_pos, float *out, int n_q_tok, int nq, int nkv,
                                    int hd, int max_pos, cudaStream_t stream) {
    return attention_decode_launch(q, ldq, k_cache, v_cache, cap, tok_slot, tok_pos, out, n_q_tok,
                                   nq, nkv, hd, max_pos, stream);
}

int melbo_cuda_attention_decode_bf16(const melbo_bf16 *q, int ldq, const melbo_bf16 *k_cache,
                                     const melbo_bf16 *v_cache, int cap, const int *tok_slot,
                                     const int *tok_pos, melbo_bf16 *out, int n_q_tok, int nq,
                                     int nkv, int hd, int max_pos, cudaStream_t stream) {
    return attention_decode_launch(as_bf(q), ldq, as_bf(k_cache), as_bf(v_cache), cap, tok_slot,
                                   tok_pos, as_bf(out), n_q_tok, nq, nkv, hd, max_pos, stream);
}

int melbo_cuda_argmax_f32(const float *logits, int n, int V, int32_t *out, cudaStream_t stream) {
    if (n < 0 || V <= 0)
        return MELBO_EINVAL;
    if (n == 0)
        return 0;
    decode_argmax_kernel<<<n, ARGMAX_THREADS, 0, stream>>>(logits, V, out);
    MELBO_CUDA_LAUNCH_CHECK();
}

int melbo_cuda_add_rows_f32(float *x, const float *vec, const int *row_vec, float scale, int n,
                            int d, cudaStream_t stream) {
    return add_rows_launch(x, vec, row_vec, scale, n, d, stream);
}

int melbo_cuda_add_rows_bf16(melbo_bf16 *x, const float *vec, const int *row_vec, float scale,
                             int n, int d, cudaStream_t stream) {
    return add_rows_launch(as_bf(x), vec, row_vec, scale, n, d, stream);
}

} // extern "C"
