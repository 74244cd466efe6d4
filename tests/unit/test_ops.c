/*
 * tests/unit/test_ops.c - CPU kernels on shapes the goldens do not reach: long prompts, many
 * sequences, GQA with groups of 4, partial RoPE; against finite differences of melbo's own
 * forward computed in fp64 sums, and batch invariance (a sequence gives the same numbers alone
 * and packed with others).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "common/rng.h"
#include "rank/cpu/ops.h"
#include "rank/cpu/span.h"
#include "rank/model/model.h"
#include "tests/test.h"

static struct melbo_model_config shape(int arch, int d, int nq, int nkv, int hd, int ff) {
    struct melbo_model_config c;
    memset(&c, 0, sizeof c);
    c.arch = arch;
    c.n_layers = 3;
    c.d_model = d;
    c.n_heads = nq;
    c.n_kv_heads = nkv;
    c.head_dim = hd;
    c.rope_dim = hd;
    c.d_ff = ff;
    c.vocab = 64;
    c.norm_eps = 1e-6f;
    c.rope_theta = 10000.0f;
    c.rope_factor = 1.0f;
    c.qk_norm = arch == MELBO_ARCH_QWEN3;
    c.qkv_bias = arch == MELBO_ARCH_QWEN2;
    return c;
}

static void test_rope_inverse(void) {
    struct melbo_model_config c = shape(MELBO_ARCH_QWEN, 32, 2, 2, 16, 32);
    c.rope_dim = 8; /* Qwen-1 rotary_pct 0.5: only the first 8 dims of each head rotate */
    float inv[4];
    melbo_config_rope_inv_freq(&c, inv);
    int lens[2] = {5, 300};
    struct melbo_seqs s;
    melbo_seqs_init(&s, lens, 2);
    int ld = 2 * 16;
    float *x = melbo_xalloc_f32((size_t)s.n_tok * ld), *y = melbo_xalloc_f32((size_t)s.n_tok * ld);
    melbo_rng_normal_f32(7, 0, x, (size_t)s.n_tok * ld);
    memcpy(y, x, sizeof(float) * (size_t)s.n_tok * ld);
    melbo_cpu_rope(y, ld, 0, 2, 16, 8, inv, &s, 0);
    /* Unrotated dims stay, position 0 is the identity, rotated pairs keep their norm. */
    int moved = 0;
    for (int t = 0; t < s.n_tok; t++)
        for (int h = 0; h < 2; h++)
            for (int i = 0; i < 16; i++) {
                size_t k = (size_t)t * ld + h * 16 + i;
                if (i >= 8 || s.pos[t] == 0)
                    ASSERT(x[k] == y[k]);
                else
                    moved += x[k] != y[k];
            }
    ASSERT(moved > 0);
    melbo_cpu_rope(y, ld, 0, 2, 16, 8, inv, &s, 1);
    CHECK_REL("rope then inverse rope is the identity", test_rel(y, x, (size_t)s.n_tok * ld), 1e-6);
    free(x);
    free(y);
    melbo_seqs_free(&s);
}

/* F = sum(W * span(x)) in double. */
static double functional(struct melbo_cpu_span *sp, const struct melbo_seqs *s, const float *w,
                         const float *x0, float *tmp, size_t nd) {
    memcpy(tmp, x0, nd * sizeof(float));
    melbo_cpu_span_forward(sp, s, tmp);
    double f = 0;
    for (size_t j = 0; j < nd; j++)
        f += (double)w[j] * tmp[j];
    return f;
}

static void test_span(const char *what, struct melbo_model_config c, const int *lens, int n_seq) {
    struct melbo_model m;
    struct melbo_load_opts o = {0, c.n_layers, 0, 0, 0, 1};
    melbo_model_init_random(&m, &c, &o, 99);
    struct melbo_seqs s;
    melbo_seqs_init(&s, lens, n_seq);
    size_t d = (size_t)c.d_model, nd = (size_t)s.n_tok * d;
    float *x = melbo_xalloc_f32(nd), *w = melbo_xalloc_f32(nd), *dx = melbo_xalloc_f32(nd);
    float *y = melbo_xalloc_f32(nd), *v = melbo_xalloc_f32(nd), *xp = melbo_xalloc_f32(nd);
    float *tmp = melbo_xalloc_f32(nd);
    melbo_rng_normal_f32(1, 0, x, nd);
    melbo_rng_normal_f32(1, 1, w, nd);
    struct melbo_cpu_span sp;
    melbo_cpu_span_init(&sp, &m, 0, c.n_layers, s.n_tok, 1);
    memcpy(y, x, nd * sizeof(float));
    melbo_cpu_span_forward(&sp, &s, y);
    memcpy(dx, w, nd * sizeof(float));
    melbo_cpu_span_backward(&sp, &s, dx);

    double num = 0, den = 0;
    for (int k = 0; k < 4; k++) {
        melbo_rng_normal_f32(2, (uint64_t)k, v, nd);
        double eps = 1e-2, an = 0;
        for (size_t j = 0; j < nd; j++)
            an += (double)dx[j] * v[j];
        for (size_t j = 0; j < nd; j++)
            xp[j] = x[j] + (float)eps * v[j];
        double fp = functional(&sp, &s, w, xp, tmp, nd);
        for (size_t j = 0; j < nd; j++)
            xp[j] = x[j] - (float)eps * v[j];
        double fm = functional(&sp, &s, w, xp, tmp, nd);
        double fd = (fp - fm) / (2 * eps);
        num = fmax(num, fabs(an - fd));
        den = fmax(den, fabs(fd));
    }
    char label[160];
    snprintf(label, sizeof label, "%s backward vs finite differences", what);
    CHECK_REL(label, num / den, 1e-2);

    /* Batch invariance: the last sequence alone gives the numbers it gets inside the batch. */
    int last = n_seq - 1, T = lens[last];
    struct melbo_seqs one;
    melbo_seqs_init(&one, &lens[last], 1);
    struct melbo_cpu_span sp1;
    melbo_cpu_span_init(&sp1, &m, 0, c.n_layers, T, 1);
    size_t off = (size_t)s.start[last] * d, nd1 = (size_t)T * d;
    memcpy(tmp, x + off, nd1 * sizeof(float));
    melbo_cpu_span_forward(&sp1, &one, tmp);
    snprintf(label, sizeof label, "%s forward alone vs in batch", what);
    CHECK_REL(label, test_rel(tmp, y + off, nd1), 1e-5);
    memcpy(tmp, w + off, nd1 * sizeof(float));
    melbo_cpu_span_backward(&sp1, &one, tmp);
    snprintf(label, sizeof label, "%s backward alone vs in batch", what);
    CHECK_REL(label, test_rel(tmp, dx + off, nd1), 1e-5);

    melbo_cpu_span_free(&sp1);
    melbo_seqs_free(&one);
    melbo_cpu_span_free(&sp);
    melbo_seqs_free(&s);
    melbo_model_free(&m);
    free(x);
    free(w);
    free(dx);
    free(y);
    free(v);
    free(xp);
    free(tmp);
}

int main(void) {
    test_rope_inverse();
    int many[6] = {1, 2, 9, 33, 4, 17};
    test_span("llama GQA 8/2, 6 sequences", shape(MELBO_ARCH_LLAMA, 64, 8, 2, 8, 96), many, 6);
    int longp[2] = {3, 400};
    test_span("qwen3 q/k norm, 400-token prompt", shape(MELBO_ARCH_QWEN3, 48, 4, 1, 16, 64), longp, 2);
    int bias[3] = {7, 7, 20};
    test_span("qwen2 bias MHA", shape(MELBO_ARCH_QWEN2, 32, 4, 4, 8, 48), bias, 3);
    return test_exit_code();
}
