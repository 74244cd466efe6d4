/* rank/cpu/ops.c - elementwise, normalisation, RoPE and matrix-product kernels (rank/cpu/ops.h). */
#include "rank/cpu/ops.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

/* Below this many elements a loop runs on one thread: a parallel region costs more. */
#define PAR_MIN 32768

void melbo_cpu_linear(const float *x, const float *w, float *y, int n, int in, int out, float beta) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, w, in, beta, y,
                out);
}

void melbo_cpu_linear_dx(const float *dy, const float *w, float *dx, int n, int in, int out,
                         float beta) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, out, 1.0f, dy, out, w, in, beta,
                dx, in);
}

void melbo_cpu_add_bias(float *y, const float *b, int n, int out) {
#pragma omp parallel for schedule(static) if ((size_t)n * out >= PAR_MIN)
    for (int t = 0; t < n; t++)
        for (int j = 0; j < out; j++)
            y[(size_t)t * out + j] += b[j];
}

void melbo_cpu_rmsnorm(const float *x, const float *w, float *y, float *rstd, int n, int d,
                       int stride, float eps) {
#pragma omp parallel for schedule(static) if ((size_t)n * d >= PAR_MIN)
    for (int t = 0; t < n; t++) {
        const float *xr = x + (size_t)t * stride;
        float *yr = y + (size_t)t * stride;
        float ss = 0.0f;
        for (int i = 0; i < d; i++)
            ss += xr[i] * xr[i];
        float r = 1.0f / sqrtf(ss / (float)d + eps);
        if (rstd)
            rstd[t] = r;
        for (int i = 0; i < d; i++)
            yr[i] = w[i] * (xr[i] * r);
    }
}

void melbo_cpu_rmsnorm_dx(const float *x, const float *w, const float *rstd, const float *dy,
                          float *dx, int n, int d, int stride, int acc) {
#pragma omp parallel for schedule(static) if ((size_t)n * d >= PAR_MIN)
    for (int t = 0; t < n; t++) {
        const float *xr = x + (size_t)t * stride, *dyr = dy + (size_t)t * stride;
        float *dxr = dx + (size_t)t * stride;
        float r = rstd[t], dot = 0.0f;
        for (int i = 0; i < d; i++)
            dot += w[i] * dyr[i] * xr[i];
        float c = r * r * r * dot / (float)d;
        for (int i = 0; i < d; i++) {
            float g = r * w[i] * dyr[i] - c * xr[i];
            dxr[i] = acc ? dxr[i] + g : g;
        }
    }
}

void melbo_cpu_rope(float *x, int ld, int col0, int n_heads, int head_dim, int rope_dim,
                    const float *inv_freq, const struct melbo_seqs *seqs, int inverse) {
    int half = rope_dim / 2;
    float sign = inverse ? -1.0f : 1.0f;
#pragma omp parallel for schedule(static) if ((size_t)seqs->n_tok * n_heads * head_dim >= PAR_MIN)
    for (int t = 0; t < seqs->n_tok; t++) {
        float c[512], s[512];
        float p = (float)seqs->pos[t];
        for (int i = 0; i < half; i++) {
            float f = p * inv_freq[i]; /* fp32 product, as transformers */
            c[i] = cosf(f);
            s[i] = sign * sinf(f);
        }
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (size_t)t * ld + col0 + (size_t)h * head_dim;
            for (int i = 0; i < half; i++) {
                float a = v[i], b = v[i + half];
                v[i] = a * c[i] - b * s[i];
                v[i + half] = b * c[i] + a * s[i];
            }
        }
    }
}

static inline float silu(float g) { return g / (1.0f + expf(-g)); }

void melbo_cpu_swiglu(const float *gu, float *act, int n, int ff) {
#pragma omp parallel for schedule(static) if ((size_t)n * ff >= PAR_MIN)
    for (int t = 0; t < n; t++) {
        const float *g = gu + (size_t)t * 2 * ff, *u = g + ff;
        float *a = act + (size_t)t * ff;
        for (int i = 0; i < ff; i++)
            a[i] = silu(g[i]) * u[i];
    }
}

void melbo_cpu_swiglu_dx(const float *gu, const float *dact, float *dgu, int n, int ff) {
#pragma omp parallel for schedule(static) if ((size_t)n * ff >= PAR_MIN)
    for (int t = 0; t < n; t++) {
        const float *g = gu + (size_t)t * 2 * ff, *u = g + ff, *da = dact + (size_t)t * ff;
        float *dg = dgu + (size_t)t * 2 * ff, *du = dg + ff;
        for (int i = 0; i < ff; i++) {
            float sg = 1.0f / (1.0f + expf(-g[i]));
            du[i] = da[i] * g[i] * sg;
            dg[i] = da[i] * u[i] * sg * (1.0f + g[i] * (1.0f - sg));
        }
    }
}

/* PyTorch's gelu(approximate="tanh"): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
#define GELU_K 0.7978845608028654f
#define GELU_C 0.044715f

static inline float gelu_tanh(float x) {
    return 0.5f * x * (1.0f + tanhf(GELU_K * (x + GELU_C * x * x * x)));
}

void melbo_cpu_geglu(const float *gu, float *act, int n, int ff) {
#pragma omp parallel for schedule(static) if ((size_t)n * ff >= PAR_MIN)
    for (int t = 0; t < n; t++) {
        const float *g = gu + (size_t)t * 2 * ff, *u = g + ff;
        float *a = act + (size_t)t * ff;
        for (int i = 0; i < ff; i++)
            a[i] = gelu_tanh(g[i]) * u[i];
    }
}

void melbo_cpu_geglu_dx(const float *gu, const float *dact, float *dgu, int n, int ff) {
#pragma omp parallel for schedule(static) if ((size_t)n * ff >= PAR_MIN)
    for (int t = 0; t < n; t++) {
        const float *g = gu + (size_t)t * 2 * ff, *u = g + ff, *da = dact + (size_t)t * ff;
        float *dg = dgu + (size_t)t * 2 * ff, *du = dg + ff;
        for (int i = 0; i < ff; i++) {
            float x = g[i], th = tanhf(GELU_K * (x + GELU_C * x * x * x));
            float dgelu = 0.5f * (1.0f + th) +
                          0.5f * x * (1.0f - th * th) * GELU_K * (1.0f + 3.0f * GELU_C * x * x);
            du[i] = da[i] * 0.5f * x * (1.0f + th);
            dg[i] = da[i] * u[i] * dgelu;
        }
    }
}

void melbo_cpu_glu(int act_kind, const float *gu, float *act, int n, int ff) {
    if (act_kind == 1)
        melbo_cpu_geglu(gu, act, n, ff);
    else
        melbo_cpu_swiglu(gu, act, n, ff);
}

void melbo_cpu_glu_dx(int act_kind, const float *gu, const float *dact, float *dgu, int n,
                      int ff) {
    if (act_kind == 1)
        melbo_cpu_geglu_dx(gu, dact, dgu, n, ff);
    else
        melbo_cpu_swiglu_dx(gu, dact, dgu, n, ff);
}

void melbo_cpu_softcap(float *y, size_t n, float c) {
    if (c == 0.0f)
        return;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++)
        y[i] = tanhf(y[i] / c) * c; /* transformers: logits / c, tanh, * c */
}
