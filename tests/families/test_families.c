/*
 * tests/families/test_families.c - the issue-21 families (Gemma 2, Gemma 3, OLMo 2, Phi-3, and the
 * mixtures of experts Mixtral and Qwen3-MoE) on the CPU backend against transformers
 * (tests/golden/make_family_goldens.py).
 *
 * For every model: both golden prompts as ONE packed batch; every hidden_states[k], the final
 * norm and the logits against transformers' (rel <= 1e-4); the backward of blocks [s+1, t)
 * against torch.autograd (rel <= 1e-3) and against central finite differences of melbo's own
 * forward (rel <= 1e-2); then 32 greedy tokens through the KV-cached decoder, unsteered and with
 * the golden vector added after block s, identical to transformers' generate with a forward hook
 * (prompts and generations are longer than the sliding windows: the windows are computed
 * exactly). gemma3_mm (a gemma3 image-text directory holding gemma3's language model under
 * language_model.model.) must give gemma3's numbers. Last, the refusals: unknown model_type,
 * unsupported router options, gemma3 without text_config, longrope.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "common/rng.h"
#include "rank/cpu/decode.h"
#include "rank/cpu/span.h"
#include "rank/model/config.h"
#include "rank/model/model.h"
#include "tests/test.h"
#include "tests/unit/golden.h"

struct batch {
    int n;
    int len[4];
    int *ids;
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

static double functional(struct melbo_cpu_span *sp, const struct batch *b, const float *w,
                         const float *x0, float *tmp, int d) {
    memcpy(tmp, x0, sizeof(float) * (size_t)b->seqs.n_tok * d);
    melbo_cpu_span_forward(sp, &b->seqs, tmp);
    double f = 0;
    for (size_t j = 0; j < (size_t)b->seqs.n_tok * d; j++)
        f += (double)w[j] * tmp[j];
    return f;
}

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

static void check_forward(const char *golden_dir, const char *name, const char *data_name) {
    char dir[1024], gpath[1024], what[160];
    snprintf(dir, sizeof dir, "%s/family_models/%s", golden_dir, name);
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

    enum { N_DIR = 6 };
    double fd[N_DIR], an[N_DIR];
    float *v = melbo_xalloc_f32((size_t)n * d), *xp = melbo_xalloc_f32((size_t)n * d);
    float *tmp = melbo_xalloc_f32((size_t)n * d);
    for (int k = 0; k < N_DIR; k++) {
        melbo_rng_normal_f32(1234, (uint64_t)k, v, (size_t)n * d);
        /* a mixture of experts is piecewise smooth: a step that changes a token's top-k is
         * no derivative, so its steps stay well below the router margins */
        double eps = m.cfg.n_experts ? 1e-3 : 1e-2;
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
    for (int k = 0; k <= L; k++)
        free(hs[k]);
    free(hs);
    free(b.ids);
    melbo_seqs_free(&b.seqs);
    melbo_st_close(&g);
    melbo_model_free(&m);
}

static const int32_t *ids_of(const struct melbo_st_file *g, const char *name, int *n) {
    const struct melbo_st_tensor *t = melbo_st_find(g, name);
    ASSERT(t && t->dtype == MELBO_DTYPE_I32);
    *n = (int)melbo_st_numel(t);
    return t->data;
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

/* 32 greedy tokens through the KV-cached decoder (prompt at once, then one token a call). */
static void check_generation(const char *golden_dir, const char *name, const char *data_name) {
    char dir[1024], gpath[1024];
    snprintf(dir, sizeof dir, "%s/family_models/%s", golden_dir, name);
    snprintf(gpath, sizeof gpath, "%s/data/gen_%s.golden.safetensors", golden_dir, data_name);
    struct melbo_err err = {0};
    struct melbo_model m;
    struct melbo_load_opts all = melbo_load_opts_all();
    ASSERT_OK(melbo_model_load(&m, dir, &all, &err));
    struct melbo_st_file g;
    ASSERT_OK(melbo_st_open(&g, gpath, &err));
    int P = golden_meta_int(&g, "n_prompts"), s = golden_meta_int(&g, "source_layer");
    int N = golden_meta_int(&g, "max_new_tokens"), V = m.cfg.vocab;
    const float *vec = golden_f32(&g, "vector", m.cfg.d_model);
    float *lg = melbo_xalloc_f32((size_t)V);
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < P; i++) {
            char nm[64];
            int T, len;
            snprintf(nm, sizeof nm, "prompt.%d", i);
            const int32_t *prompt = ids_of(&g, nm, &T);
            snprintf(nm, sizeof nm, "%s.%d", k ? "steered" : "unsteered", i);
            const int32_t *ref = ids_of(&g, nm, &len);
            ASSERT_EQ(len, N);
            struct melbo_cpu_decoder dec;
            melbo_cpu_decoder_init(&dec, &m, 1, T + N, T, s, NULL);
            const float *steer[1] = {k ? vec : NULL};
            int slot = 0, same = 1;
            int32_t tok = 0;
            for (int step = 0; step < N; step++) {
                int rl = step == 0 ? T : 1;
                ASSERT_OK(melbo_cpu_decoder_forward(&dec, step == 0 ? prompt : &tok, 1, &slot, &rl,
                                                    steer, NULL, lg, &err));
                tok = (int32_t)argmax(lg, V);
                same = same && tok == ref[step];
            }
            fprintf(stderr, "%-4s %s %s prompt %d (%d tokens): %d greedy tokens identical to "
                            "transformers generate\n",
                    same ? "ok" : "FAIL", name, k ? "steered" : "unsteered", i, T, N);
            if (!same)
                test_failures++;
            melbo_cpu_decoder_free(&dec);
        }
    free(lg);
    melbo_st_close(&g);
    melbo_model_free(&m);
}

/* Parsing cfg_json must fail with code and a message containing needle. */
static void expect_refused(const char *what, const char *cfg_json, int code, const char *needle) {
    struct melbo_model_config c;
    struct melbo_err err = {0};
    int r = melbo_config_parse(&c, cfg_json, strlen(cfg_json), "config.json", &err);
    int ok = r == code && strstr(err.msg, needle) != NULL;
    fprintf(stderr, "%-4s refused: %s: %s\n", ok ? "ok" : "FAIL", what, err.msg);
    if (!ok)
        test_failures++;
}

#define BASE "\"hidden_size\":64,\"num_attention_heads\":4,\"num_hidden_layers\":2," \
             "\"intermediate_size\":128,\"vocab_size\":100"

static void check_refusals(const char *golden_dir) {
    expect_refused("unknown model_type", "{\"model_type\":\"gpt_neox\"," BASE "}",
                   MELBO_EUNSUPPORTED, "model_type \"gpt_neox\"");
    expect_refused("mixtral top-k over the experts", "{\"model_type\":\"mixtral\"," BASE
                   ",\"num_local_experts\":2,\"num_experts_per_tok\":3}",
                   MELBO_EFORMAT, "num_experts_per_tok");
    expect_refused("qwen3_moe shared expert", "{\"model_type\":\"qwen3_moe\"," BASE
                   ",\"num_experts\":8,\"num_experts_per_tok\":2,\"moe_intermediate_size\":32,"
                   "\"shared_expert_intermediate_size\":64}",
                   MELBO_EUNSUPPORTED, "shared_expert_intermediate_size");
    expect_refused("qwen3_moe mlp_only_layers", "{\"model_type\":\"qwen3_moe\"," BASE
                   ",\"num_experts\":8,\"num_experts_per_tok\":2,\"moe_intermediate_size\":32,"
                   "\"mlp_only_layers\":[1]}",
                   MELBO_EUNSUPPORTED, "mlp_only_layers");
    expect_refused("qwen3_moe decoder_sparse_step", "{\"model_type\":\"qwen3_moe\"," BASE
                   ",\"num_experts\":8,\"num_experts_per_tok\":2,\"moe_intermediate_size\":32,"
                   "\"decoder_sparse_step\":2}",
                   MELBO_EUNSUPPORTED, "decoder_sparse_step");
    expect_refused("experts on a dense family", "{\"model_type\":\"llama\"," BASE
                   ",\"num_local_experts\":8}",
                   MELBO_EUNSUPPORTED, "experts");
    expect_refused("gemma3 without text_config", "{\"model_type\":\"gemma3\","
                   "\"vision_config\":{}}",
                   MELBO_EMISSING, "text_config");
    expect_refused("phi3 longrope", "{\"model_type\":\"phi3\"," BASE
                   ",\"rope_scaling\":{\"type\":\"longrope\",\"short_factor\":[1],"
                   "\"long_factor\":[1]}}",
                   MELBO_EUNSUPPORTED, "longrope");
    expect_refused("gemma2 gelu (not tanh)", "{\"model_type\":\"gemma2\"," BASE
                   ",\"hidden_activation\":\"gelu\"}",
                   MELBO_EUNSUPPORTED, "hidden_activation");
    expect_refused("bad layer_types", "{\"model_type\":\"gemma2\"," BASE
                   ",\"layer_types\":[\"full_attention\",\"chunked_attention\"]}",
                   MELBO_EUNSUPPORTED, "layer_types[1]");

    /* both spellings: v4 gemma3 keys give the v5 model's config */
    struct melbo_model_config a, b;
    struct melbo_err err = {0};
    const char *v4 = "{\"model_type\":\"gemma3_text\"," BASE ",\"head_dim\":16,"
                     "\"rope_theta\":1000000.0,\"rope_local_base_freq\":10000.0,"
                     "\"rope_scaling\":{\"rope_type\":\"linear\",\"factor\":2.0},"
                     "\"sliding_window\":4,\"sliding_window_pattern\":2}";
    const char *v5 = "{\"model_type\":\"gemma3_text\"," BASE ",\"head_dim\":16,"
                     "\"rope_parameters\":{\"full_attention\":{\"rope_type\":\"linear\","
                     "\"factor\":2.0,\"rope_theta\":1000000.0},\"sliding_attention\":"
                     "{\"rope_type\":\"default\",\"rope_theta\":10000.0}},\"sliding_window\":4,"
                     "\"layer_types\":[\"sliding_attention\",\"full_attention\"]}";
    ASSERT_OK(melbo_config_parse(&a, v4, strlen(v4), "v4", &err));
    ASSERT_OK(melbo_config_parse(&b, v5, strlen(v5), "v5", &err));
    int same = a.rope_theta == b.rope_theta && a.rope_type == b.rope_type &&
               a.rope_factor == b.rope_factor && a.rope_theta_local == b.rope_theta_local &&
               a.local_rope && b.local_rope && a.window == 4 && b.window == 4 &&
               a.layer_sliding[0] == 1 && a.layer_sliding[1] == 0 && b.layer_sliding[0] == 1 &&
               b.layer_sliding[1] == 0 && a.tied_embeddings && a.attn_softcap == 0 &&
               a.qk_norm == 1 && a.norm_plus_one;
    fprintf(stderr, "%-4s gemma3_text v4 and v5 spellings read the same\n", same ? "ok" : "FAIL");
    if (!same)
        test_failures++;
    /* gemma2 v4 (no layer_types): even layers slide; defaults of the soft-caps */
    const char *g2 = "{\"model_type\":\"gemma2\"," BASE ",\"head_dim\":null,\"sliding_window\":8}";
    ASSERT_OK(melbo_config_parse(&a, g2, strlen(g2), "g2", &err));
    same = a.head_dim == 16 && a.layer_sliding[0] == 1 && a.layer_sliding[1] == 0 &&
           a.attn_softcap == 50.0f && a.final_softcap == 30.0f && a.window == 8 &&
           a.act == MELBO_ACT_GELU_TANH;
    fprintf(stderr, "%-4s gemma2 v4 defaults (head_dim null, layer pattern, soft-caps)\n",
            same ? "ok" : "FAIL");
    if (!same)
        test_failures++;
    /* a gemma3 directory whose checkpoint has no language model */
    char dir[1024];
    struct melbo_model m;
    struct melbo_load_opts opts = melbo_load_opts_all();
    snprintf(dir, sizeof dir, "%s/family_models/gemma3_mm", golden_dir);
    ASSERT_OK(melbo_model_check(dir, &a, &err));
    ASSERT(strcmp(a.lm_prefix, "language_model.model.") == 0);
    snprintf(dir, sizeof dir, "%s/family_models/gemma3_no_lm", golden_dir);
    int r = melbo_model_load(&m, dir, &opts, &err);
    int ok = r == MELBO_EMISSING && strstr(err.msg, "has no language model") &&
             strstr(err.msg, "language_model.model.embed_tokens.weight");
    fprintf(stderr, "%-4s refused: gemma3 checkpoint without a language model: %s\n",
            ok ? "ok" : "FAIL", err.msg);
    if (!ok)
        test_failures++;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s GOLDEN_DIR\n", argv[0]);
        return 2;
    }
    static const char *models[] = {"gemma2", "gemma3", "olmo2", "phi3", "mixtral", "qwen3_moe", "qwen2_moe"};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        check_forward(argv[1], models[i], models[i]);
        check_generation(argv[1], models[i], models[i]);
    }
    check_forward(argv[1], "gemma3_mm", "gemma3");
    check_generation(argv[1], "gemma3_mm", "gemma3");
    check_refusals(argv[1]);
    return test_exit_code();
}
