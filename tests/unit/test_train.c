/*
 * tests/unit/test_train.c - MELBO training against the reference algorithm and its own claims.
 *
 *   parity     the 4 golden cases of tests/golden/make_train_goldens.py (a PyTorch implementation
 *              of the reference algorithm, whole model, transformers' hidden_states): vectors and
 *              objective curves rel <= 1e-4
 *   waves      without orthogonality, waves of 16 and 5 give wave 1's vectors (rel <= 1e-5)
 *   ortho      32 vectors in waves of 8: pairwise |cos| < 1e-6, norms within 1e-6 of R
 *   draws      g_k identical for every wave size, and equal to Philox(seed, k)
 *   gradient   dF/dtheta against central finite differences, both axes, p in {1, 2, 4}
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/mem.h"
#include "common/rng.h"
#include "rank/model/safetensors.h"
#include "rank/train/trainer.h"
#include "tests/test.h"

static const char *golden;
static char tmpdir[1024];

static void set(char **dst, const char *v) {
    free(*dst);
    *dst = melbo_xstrdup(v);
}

static void base_params(struct melbo_train_params *p, const char *model) {
    char buf[1200];
    melbo_train_params_init(p);
    snprintf(buf, sizeof buf, "%s/models/%s", golden, model);
    set(&p->model, buf);
    snprintf(buf, sizeof buf, "%s/out.bank.safetensors", tmpdir);
    set(&p->out, buf);
    p->source_layer = 1;
    p->target_layer = 4;
    p->radius = 4.0;
    p->checkpoint_every = 0;
}

/* Adds prompt i of a golden forward file as an id prompt. */
static void add_golden_prompt(struct melbo_train_params *p, const struct melbo_st_file *g,
                              const char *name) {
    const struct melbo_st_tensor *t = melbo_st_find(g, name);
    ASSERT(t != NULL && t->dtype == MELBO_DTYPE_I32);
    int n = (int)melbo_st_numel(t);
    melbo_id_list_add(&p->prompts.ids, t->data, n);
}

static void run(struct melbo_trainer *tr, struct melbo_train_params *p) {
    struct melbo_err err = {0};
    if (melbo_trainer_init(tr, p, NULL, &err) != 0 || melbo_trainer_run(tr, &err) != 0) {
        fprintf(stderr, "trainer failed: %s\n", err.msg);
        abort();
    }
}

static void test_parity(const char *c) {
    char path[1200];
    snprintf(path, sizeof path, "%s/data/train_%s.golden.safetensors", golden, c);
    struct melbo_st_file g;
    struct melbo_err err = {0};
    ASSERT_OK(melbo_st_open(&g, path, &err));
    struct melbo_train_params p;
    base_params(&p, melbo_st_meta(&g, "model"));
    p.source_layer = atoi(melbo_st_meta(&g, "source_layer"));
    p.target_layer = atoi(melbo_st_meta(&g, "target_layer"));
    p.radius = atof(melbo_st_meta(&g, "radius"));
    p.p = atof(melbo_st_meta(&g, "p"));
    p.q = atof(melbo_st_meta(&g, "q"));
    p.loss_axis = strcmp(melbo_st_meta(&g, "loss_axis"), "dim") == 0 ? MELBO_LOSS_AXIS_DIM
                                                                      : MELBO_LOSS_AXIS_TOKEN;
    ASSERT_OK(melbo_slice_parse(melbo_st_meta(&g, "target_tokens"), &p.target_tokens, &err));
    p.steps = atoi(melbo_st_meta(&g, "steps"));
    p.vectors = atoi(melbo_st_meta(&g, "vectors"));
    p.wave = 1;
    p.orthogonal = 1;
    int n_prompts = atoi(melbo_st_meta(&g, "n_prompts"));
    for (int i = 0; i < n_prompts; i++) {
        char nm[32];
        snprintf(nm, sizeof nm, "prompt_ids.%d", i);
        add_golden_prompt(&p, &g, nm);
    }
    snprintf(path, sizeof path, "%s/data/train_%s.init.safetensors", golden, c);
    set(&p.init, path);
    struct melbo_trainer tr;
    run(&tr, &p);
    const struct melbo_st_tensor *V = melbo_st_find(&g, "vectors"), *O = melbo_st_find(&g, "objective");
    ASSERT(melbo_st_numel(V) == (int64_t)tr.N * tr.d && melbo_st_numel(O) == (int64_t)tr.N * tr.steps);
    char what[128];
    snprintf(what, sizeof what, "parity %s vectors", c);
    CHECK_REL(what, test_rel(tr.ws.vectors, V->data, (size_t)tr.N * tr.d), 1e-4);
    snprintf(what, sizeof what, "parity %s objective curves", c);
    CHECK_REL(what, test_rel(tr.ws.objective, O->data, (size_t)tr.N * tr.steps), 1e-4);
    melbo_trainer_free(&tr);
    melbo_train_params_free(&p);
    melbo_st_close(&g);
}

/* qwen3 with both golden prompts, 16 raw draws from the wave init file. */
static void wave_params(struct melbo_train_params *p, int vectors, int wave, int orthogonal,
                        int steps, int use_init) {
    char path[1200];
    struct melbo_st_file g;
    struct melbo_err err = {0};
    base_params(p, "qwen3");
    snprintf(path, sizeof path, "%s/data/qwen3.golden.safetensors", golden);
    ASSERT_OK(melbo_st_open(&g, path, &err));
    add_golden_prompt(p, &g, "input_ids.0");
    add_golden_prompt(p, &g, "input_ids.1");
    melbo_st_close(&g);
    if (use_init) {
        snprintf(path, sizeof path, "%s/data/train_wave_nonortho.init.safetensors", golden);
        set(&p->init, path);
    }
    p->vectors = vectors;
    p->wave = wave;
    p->orthogonal = orthogonal;
    p->steps = steps;
    p->seed = 7;
}

static void test_waves(void) {
    struct melbo_train_params p1, p16, p5;
    struct melbo_trainer t1, t16, t5;
    wave_params(&p1, 16, 1, 0, 12, 1);
    wave_params(&p16, 16, 16, 0, 12, 1);
    wave_params(&p5, 16, 5, 0, 12, 1);
    run(&t1, &p1);
    run(&t16, &p16);
    run(&t5, &p5);
    size_t n = (size_t)16 * t1.d;
    CHECK_REL("no orthogonality: wave 16 vectors = wave 1", test_rel(t16.ws.vectors, t1.ws.vectors, n), 1e-5);
    CHECK_REL("no orthogonality: wave 5 (uneven) vectors = wave 1", test_rel(t5.ws.vectors, t1.ws.vectors, n), 1e-5);
    CHECK_REL("no orthogonality: wave 16 objective = wave 1",
              test_rel(t16.ws.objective, t1.ws.objective, (size_t)16 * 12), 1e-5);
    melbo_trainer_free(&t1);
    melbo_trainer_free(&t16);
    melbo_trainer_free(&t5);
    melbo_train_params_free(&p1);
    melbo_train_params_free(&p16);
    melbo_train_params_free(&p5);
}

static void test_orthogonal(void) {
    struct melbo_train_params p;
    struct melbo_trainer tr;
    wave_params(&p, 32, 8, 1, 15, 0);
    run(&tr, &p);
    double worst_cos = 0, worst_norm = 0;
    for (int a = 0; a < 32; a++) {
        const float *x = tr.ws.vectors + (size_t)a * tr.d;
        double na = 0;
        for (int j = 0; j < tr.d; j++)
            na += (double)x[j] * x[j];
        na = sqrt(na);
        worst_norm = fmax(worst_norm, fabs(na - p.radius) / p.radius);
        for (int b = a + 1; b < 32; b++) {
            const float *y = tr.ws.vectors + (size_t)b * tr.d;
            double dot = 0, nb = 0;
            for (int j = 0; j < tr.d; j++) {
                dot += (double)x[j] * y[j];
                nb += (double)y[j] * y[j];
            }
            worst_cos = fmax(worst_cos, fabs(dot) / (na * sqrt(nb)));
        }
    }
    CHECK_REL("orthogonal waves of 8: max pairwise |cos| (32 vectors)", worst_cos, 1e-6);
    CHECK_REL("orthogonal waves of 8: max relative norm error", worst_norm, 1e-6);
    /* training moved them: the objective grew for most vectors */
    int grew = 0;
    for (int a = 0; a < 32; a++)
        grew += tr.ws.objective[(size_t)a * 15 + 14] > tr.ws.objective[(size_t)a * 15];
    CHECK(grew >= 24);
    melbo_trainer_free(&tr);
    melbo_train_params_free(&p);
}

static void test_draws(void) {
    struct melbo_train_params p1, p8;
    struct melbo_trainer t1, t8;
    wave_params(&p1, 16, 1, 0, 0, 0);
    wave_params(&p8, 16, 8, 0, 0, 0);
    run(&t1, &p1);
    run(&t8, &p8);
    int d = t1.d, same = 1;
    double *g1 = melbo_xmalloc(sizeof(double) * d), *g8 = melbo_xmalloc(sizeof(double) * d);
    double *ref = melbo_xmalloc(sizeof(double) * d);
    for (int k = 0; k < 16; k++) {
        melbo_trainer_raw_draw(&t1, k, g1);
        melbo_trainer_raw_draw(&t8, k, g8);
        melbo_rng_normal_f64(7, (uint64_t)k, ref, (size_t)d);
        same = same && memcmp(g1, g8, sizeof(double) * d) == 0 && memcmp(g1, ref, sizeof(double) * d) == 0;
    }
    fprintf(stderr, "%-4s raw draws g_k identical for waves 1 and 8 and equal to Philox(seed, k)\n",
            same ? "ok" : "FAIL");
    CHECK(same);
    /* with 0 steps and no orthogonality the bank holds R * g_k / |g_k| */
    CHECK(memcmp(t1.ws.vectors, t8.ws.vectors, sizeof(float) * 16 * d) == 0);
    double nr = 0;
    for (int j = 0; j < d; j++)
        nr += ref[j] * ref[j];
    float expect = (float)(ref[0] / sqrt(nr) * 4.0);
    CHECK(t1.ws.vectors[(size_t)15 * d] == expect);
    free(g1);
    free(g8);
    free(ref);
    melbo_trainer_free(&t1);
    melbo_trainer_free(&t8);
    melbo_train_params_free(&p1);
    melbo_train_params_free(&p8);
}

static void test_gradient(enum melbo_loss_axis axis, double pp, double q) {
    struct melbo_train_params p;
    struct melbo_trainer tr;
    struct melbo_err err = {0};
    wave_params(&p, 1, 1, 1, 0, 0);
    p.loss_axis = axis;
    p.p = pp;
    p.q = q;
    ASSERT_OK(melbo_trainer_init(&tr, &p, NULL, &err));
    int d = tr.d;
    float *th = melbo_xalloc_f32(d), *gr = melbo_xalloc_f32(d), *tp = melbo_xalloc_f32(d);
    float *v = melbo_xalloc_f32(d), F, Fp, Fm, gtmp[1024];
    melbo_rng_normal_f32(3, 0, th, d);
    melbo_trainer_objective(&tr, th, 1, &F, gr);
    double num = 0, den = 0;
    for (int k = 0; k < 5; k++) {
        melbo_rng_normal_f32(4, (uint64_t)k, v, d);
        double eps = 2e-2, an = 0;
        for (int j = 0; j < d; j++)
            an -= (double)gr[j] * v[j]; /* grad is of the loss -F */
        for (int j = 0; j < d; j++)
            tp[j] = th[j] + (float)eps * v[j];
        melbo_trainer_objective(&tr, tp, 1, &Fp, gtmp);
        for (int j = 0; j < d; j++)
            tp[j] = th[j] - (float)eps * v[j];
        melbo_trainer_objective(&tr, tp, 1, &Fm, gtmp);
        double fd = ((double)Fp - Fm) / (2 * eps);
        num = fmax(num, fabs(an - fd));
        den = fmax(den, fabs(fd));
    }
    char what[128];
    snprintf(what, sizeof what, "dF/dtheta vs finite differences, axis %s, p %g, q %g",
             axis == MELBO_LOSS_AXIS_DIM ? "dim" : "token", pp, q);
    CHECK_REL(what, num / den, 1e-2);
    free(th);
    free(gr);
    free(tp);
    free(v);
    melbo_trainer_free(&tr);
    melbo_train_params_free(&p);
}

/*
 * Adapters: d(-F)/d(A, B) against central finite differences along random directions, with the
 * scale alpha/r and the targets' last 3 tokens, two prompts. (The golden parity tests cannot see
 * a constant factor on the gradient: AMSGrad is scale-invariant. This can. The error is the
 * differences' own, O(eps^2): 4.5e-4 at eps 3e-3, 5e-3 at 1e-2, 4.5e-2 at 3e-2.)
 */
static void test_adapter_gradient(void) {
    struct melbo_train_params p;
    struct melbo_trainer tr;
    struct melbo_err err = {0};
    wave_params(&p, 1, 1, 0, 0, 0);
    p.radius = 0;
    p.adapter_rank = 8;
    p.adapter_alpha = 4.0;
    p.q = 2;
    melbo_slice_parse("-3:", &p.target_tokens, &err);
    ASSERT_OK(melbo_trainer_init(&tr, &p, NULL, &err));
    int W = tr.W;
    ASSERT_EQ(W, 8 * tr.adapter.ff + tr.d * 8);
    float *th = melbo_xalloc_f32(W), *gr = melbo_xalloc_f32(W), *tp = melbo_xalloc_f32(W);
    float *gtmp = melbo_xalloc_f32(W), *v = melbo_xalloc_f32(W), F, Fp, Fm;
    double *g = melbo_xmalloc(sizeof(double) * (size_t)W);
    melbo_rng_normal_f64(3, 0, g, (size_t)W);
    melbo_adapter_init(th, g, &tr.adapter);
    melbo_trainer_objective(&tr, th, 1, &F, gr);
    ASSERT(F > 0);
    double num = 0, den = 0;
    for (int k = 0; k < 5; k++) {
        melbo_rng_normal_f32(4, (uint64_t)k, v, W);
        double eps = 3e-3, an = 0;
        for (int j = 0; j < W; j++)
            an -= (double)gr[j] * v[j]; /* grad is of the loss -F */
        for (int j = 0; j < W; j++)
            tp[j] = th[j] + (float)eps * v[j];
        melbo_trainer_objective(&tr, tp, 1, &Fp, gtmp);
        for (int j = 0; j < W; j++)
            tp[j] = th[j] - (float)eps * v[j];
        melbo_trainer_objective(&tr, tp, 1, &Fm, gtmp);
        double fd = ((double)Fp - Fm) / (2 * eps);
        num = fmax(num, fabs(an - fd));
        den = fmax(den, fabs(fd));
    }
    CHECK_REL("adapters: dF/d(A, B) vs finite differences", num / den, 1e-2);
    free(th);
    free(gr);
    free(tp);
    free(gtmp);
    free(v);
    free(g);
    melbo_trainer_free(&tr);
    melbo_train_params_free(&p);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s GOLDEN_DIR TMPDIR\n", argv[0]);
        return 2;
    }
    golden = argv[1];
    snprintf(tmpdir, sizeof tmpdir, "%s", argv[2]);
    mkdir(tmpdir, 0755);
    test_parity("p2q1");
    test_parity("p4q4_dim");
    test_parity("p4q4_last2");
    test_parity("2prompts");
    test_waves();
    test_orthogonal();
    test_draws();
    double ps[3] = {1, 2, 4};
    for (int i = 0; i < 3; i++) {
        test_gradient(MELBO_LOSS_AXIS_TOKEN, ps[i], 1);
        test_gradient(MELBO_LOSS_AXIS_DIM, ps[i], ps[i]);
    }
    test_adapter_gradient();
    return test_exit_code();
}
