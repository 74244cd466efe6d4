/*
 * tests/unit/test_golden_forward.c - the CPU backend against transformers.
 *
 * For every golden model: both prompts run as ONE packed batch; every hidden_states[k], the
 * final norm and the logits are compared with transformers' (rel <= 1e-4); the backward of
 * blocks [s+1, t) is compared with torch.autograd's gradient of sum(W * hidden_states[t]) with
 * respect to hidden_states[s+1] (rel <= 1e-3) and with central finite differences of melbo's
 * own forward along random directions (rel <= 1e-2). Then the BF16 and sharded checkpoints must
 * give exactly the numbers of their single-file fp32 twins.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "common/rng.h"
#include "rank/cpu/span.h"
#include "rank/model/model.h"
#include "tests/test.h"
#include "tests/unit/golden.h"

struct batch {
    int n;               // prompts
    int len[4];
    int *ids;            // (n_tok) packed
    struct melbo_seqs seqs;
};

static void batch_from_golden(struct batch *b, const struct melbo_st_file *g) {
    b->n = golden_meta_int(g, "n_prompts");
    ASSERT(b->n >= 1 && b->n <= 4);
    int total = 0, *per[4];
    for (int i = 0; i < b->n; i++) {
        per[i] = golden_ids(g, i, &b->len[i]);
        total += b->len[i];
    }
    b->ids = melbo_xmalloc(sizeof(int) * (size_t)total);
    for (int i = 0, off = 0; i < b->n; i++) {
        memcpy(b->ids + off, per[i], sizeof(int) * (size_t)b->len[i]);
        off += b->len[i];
        free(per[i]);
    }
    melbo_seqs_init(&b->seqs, b->len, b->n);
}

/* rel over all prompts of packed x (n_tok, w) against golden tensors "<prefix>.{i}<suffix>". */
static double rel_packed(const struct melbo_st_file *g, const struct batch *b, const float *x, int w,
                         const char *fmt, int k) {
    double num = 0, den = 0;
    for (int i = 0; i < b->n; i++) {
        char name[64];
        snprintf(name, sizeof name, fmt, i, k);
        const float *ref = golden_f32(g, name, (int64_t)b->len[i] * w);
        const float *got = x + (size_t)b->seqs.start[i] * w;
        for (size_t j = 0; j < (size_t)b->len[i] * w; j++) {
            double dd = fabs((double)got[j] - ref[j]);
            if (dd > num || dd != dd)
                num = dd;
            if (fabs(ref[j]) > den)
                den = fabs(ref[j]);
        }
    }
    return num / den;
}

/* F = sum over prompts of sum(W_i * span(x)): the golden functional after blocks [a, b). */
static double functional(struct melbo_cpu_span *sp, const struct batch *b, const float *w,
                         const float *x0, float *tmp, int d) {
    memcpy(tmp, x0, sizeof(float) * (size_t)b->seqs.n_tok * d);
    melbo_cpu_span_forward(sp, &b->seqs, tmp);
    double f = 0;
    for (size_t j = 0; j < (size_t)b->seqs.n_tok * d; j++)
        f += (double)w[j] * tmp[j];
    return f;
}

/* Returns the hidden states after every block of m for the batch: hs[k] (n_tok, d), k = 0..L. */
static float **run_forward(const struct melbo_model *m, const struct batch *b) {
    int L = m->cfg.n_layers, d = m->cfg.d_model, n = b->seqs.n_tok;
    float **hs = melbo_xcalloc((size_t)L + 2, sizeof *hs);
    hs[0] = melbo_xalloc_f32((size_t)n * d);
    melbo_cpu_embed(m, b->ids, n, hs[0]);
    struct melbo_cpu_span sp;
    for (int k = 0; k < L; k++) {
        melbo_cpu_span_init(&sp, m, k, k + 1, n, 0);
        hs[k + 1] = melbo_xalloc_f32((size_t)n * d);
        memcpy(hs[k + 1], hs[k], sizeof(float) * (size_t)n * d);
        melbo_cpu_span_forward(&sp, &b->seqs, hs[k + 1]);
        melbo_cpu_span_free(&sp);
    }
    return hs;
}

static void free_hs(float **hs, int L) {
    for (int k = 0; k <= L; k++)
        free(hs[k]);
    free(hs);
}

static void check_model(const char *golden_dir, const char *name, const char *data_name) {
    char dir[1024], gpath[1024], what[160];
    snprintf(dir, sizeof dir, "%s/models/%s", golden_dir, name);
    snprintf(gpath, sizeof gpath, "%s/data/%s.golden.safetensors", golden_dir, data_name);
    struct melbo_err err = {0};
    struct melbo_model m;
    struct melbo_load_opts all = melbo_load_opts_all();
    if (melbo_model_load(&m, dir, &all, &err) != 0) {
        fprintf(stderr, "FAIL %s: %s\n", name, err.msg);
        test_failures++;
        return;
    }
    struct melbo_st_file g;
    ASSERT_OK(melbo_st_open(&g, gpath, &err));
    struct batch b;
    batch_from_golden(&b, &g);
    ASSERT_OK(melbo_seqs_check(&b.seqs, &m.cfg, &err));
    int L = m.cfg.n_layers, d = m.cfg.d_model, V = m.cfg.vocab, n = b.seqs.n_tok;
    int s = golden_meta_int(&g, "source_layer"), t = golden_meta_int(&g, "target_layer");

    /* Forward: every hidden state, the final norm, the logits. */
    float **hs = run_forward(&m, &b);
    double worst = 0;
    for (int k = 0; k < L; k++) {
        double r = rel_packed(&g, &b, hs[k], d, "hidden.%d.%d", k);
        worst = r > worst ? r : worst;
    }
    snprintf(what, sizeof what, "%s hidden_states[0..%d]", name, L - 1);
    CHECK_REL(what, worst, 1e-4);
    float *y = melbo_xalloc_f32((size_t)n * d), *logits = melbo_xalloc_f32((size_t)n * V);
    melbo_cpu_final_norm(&m, hs[L], n, y);
    snprintf(what, sizeof what, "%s hidden_states[%d] (final norm)", name, L);
    CHECK_REL(what, rel_packed(&g, &b, y, d, "hidden.%d.%d", L), 1e-4);
    melbo_cpu_logits(&m, y, n, logits);
    snprintf(what, sizeof what, "%s logits", name);
    CHECK_REL(what, rel_packed(&g, &b, logits, V, "logits.%d%.0d", 0), 1e-4);

    /* Backward of blocks [s+1, t): d sum(W * hs[t]) / d hs[s+1]. */
    float *w = melbo_xalloc_f32((size_t)n * d), *dx = melbo_xalloc_f32((size_t)n * d);
    for (int i = 0; i < b.n; i++) {
        char nm[64];
        snprintf(nm, sizeof nm, "functional.%d", i);
        memcpy(w + (size_t)b.seqs.start[i] * d, golden_f32(&g, nm, (int64_t)b.len[i] * d),
               sizeof(float) * (size_t)b.len[i] * d);
    }
    struct melbo_cpu_span sp;
    melbo_cpu_span_init(&sp, &m, s + 1, t, n, 1);
    float *x = melbo_xalloc_f32((size_t)n * d);
    memcpy(x, hs[s + 1], sizeof(float) * (size_t)n * d);
    melbo_cpu_span_forward(&sp, &b.seqs, x);
    memcpy(dx, w, sizeof(float) * (size_t)n * d);
    melbo_cpu_span_backward(&sp, &b.seqs, dx);
    snprintf(what, sizeof what, "%s backward blocks [%d, %d) vs autograd", name, s + 1, t);
    CHECK_REL(what, rel_packed(&g, &b, dx, d, "grad.%d%.0d", 0), 1e-3);

    /* Central finite differences of melbo's own forward along random directions. */
    enum { N_DIR = 6 };
    double fd[N_DIR], an[N_DIR];
    float *v = melbo_xalloc_f32((size_t)n * d), *xp = melbo_xalloc_f32((size_t)n * d);
    float *tmp = melbo_xalloc_f32((size_t)n * d);
    for (int k = 0; k < N_DIR; k++) {
        melbo_rng_normal_f32(1234, (uint64_t)k, v, (size_t)n * d);
        double eps = 1e-2;
        an[k] = 0;
        for (size_t j = 0; j < (size_t)n * d; j++)
            an[k] += (double)dx[j] * v[j];
        for (size_t j = 0; j < (size_t)n * d; j++)
            xp[j] = hs[s + 1][j] + (float)eps * v[j];
        double fp = functional(&sp, &b, w, xp, tmp, d);
        for (size_t j = 0; j < (size_t)n * d; j++)
            xp[j] = hs[s + 1][j] - (float)eps * v[j];
        double fm = functional(&sp, &b, w, xp, tmp, d);
        fd[k] = (fp - fm) / (2 * eps);
    }
    double num = 0, den = 0;
    for (int k = 0; k < N_DIR; k++) {
        num = fmax(num, fabs(an[k] - fd[k]));
        den = fmax(den, fabs(fd[k]));
    }
    snprintf(what, sizeof what, "%s backward vs finite differences", name);
    CHECK_REL(what, num / den, 1e-2);

    melbo_cpu_span_free(&sp);
    free(v);
    free(xp);
    free(tmp);
    free(x);
    free(w);
    free(dx);
    free(y);
    free(logits);
    free_hs(hs, L);
    free(b.ids);
    melbo_seqs_free(&b.seqs);
    melbo_st_close(&g);
    melbo_model_free(&m);
}

/* A model and its twin (BF16 copy, or sharded copy) must give identical numbers. */
static void check_twin(const char *golden_dir, const char *name, const char *twin,
                       const char *data_name) {
    char d1[1024], d2[1024], gpath[1024], what[160];
    snprintf(d1, sizeof d1, "%s/models/%s", golden_dir, name);
    snprintf(d2, sizeof d2, "%s/models/%s", golden_dir, twin);
    snprintf(gpath, sizeof gpath, "%s/data/%s.golden.safetensors", golden_dir, data_name);
    struct melbo_err err = {0};
    struct melbo_model a, b;
    struct melbo_load_opts all = melbo_load_opts_all();
    ASSERT_OK(melbo_model_load(&a, d1, &all, &err));
    if (melbo_model_load(&b, d2, &all, &err) != 0) {
        fprintf(stderr, "FAIL %s: %s\n", twin, err.msg);
        test_failures++;
        melbo_model_free(&a);
        return;
    }
    ASSERT_EQ(a.arena_floats, b.arena_floats);
    struct melbo_st_file g;
    ASSERT_OK(melbo_st_open(&g, gpath, &err));
    struct batch bt;
    batch_from_golden(&bt, &g);
    float **ha = run_forward(&a, &bt), **hb = run_forward(&b, &bt);
    int L = a.cfg.n_layers;
    size_t nd = (size_t)bt.seqs.n_tok * a.cfg.d_model;
    int same = memcmp(a.arena, b.arena, a.arena_floats * sizeof(float)) == 0;
    for (int k = 0; k <= L; k++)
        same = same && memcmp(ha[k], hb[k], nd * sizeof(float)) == 0;
    snprintf(what, sizeof what, "%s identical to %s (weights and every hidden state)", twin, name);
    fprintf(stderr, "%-4s %s\n", same ? "ok" : "FAIL", what);
    if (!same)
        test_failures++;
    free_hs(ha, L);
    free_hs(hb, L);
    free(bt.ids);
    melbo_seqs_free(&bt.seqs);
    melbo_st_close(&g);
    melbo_model_free(&a);
    melbo_model_free(&b);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s GOLDEN_DIR\n", argv[0]);
        return 2;
    }
    static const char *models[] = {"llama3", "llama2", "mistral", "qwen2",
                                   "qwen3",  "qwen1",  "llama3_bf16r"};
    for (size_t i = 0; i < MELBO_ARRAY_SIZE(models); i++)
        check_model(argv[1], models[i], models[i]);
    /* The twins also run against the goldens of the model they copy. */
    check_model(argv[1], "qwen3_sharded", "qwen3");
    check_model(argv[1], "llama3_bf16", "llama3_bf16r");
    check_twin(argv[1], "qwen3", "qwen3_sharded", "qwen3");
    check_twin(argv[1], "llama3_bf16r", "llama3_bf16", "llama3_bf16r");
    return test_exit_code();
}
