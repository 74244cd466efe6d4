/* rank/model/model.c - loading weights into melbo's fused fp32 layout (rank/model/model.h); what
 * the checkpoint calls each weight is rank/model/weight_names.h's. */
#include "rank/model/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/mem.h"
#include "common/rng.h"
#include "rank/model/checkpoint.h"
#include "rank/model/gguf_model.h"
#include "rank/model/weight_names.h"

struct melbo_load_opts melbo_load_opts_all(void) {
    struct melbo_load_opts o = {0, -1, 1, 1, 0, 1};
    return o;
}

void melbo_tp_local_config(const struct melbo_model_config *full, int tp_rank, int tp,
                           struct melbo_model_config *local, int *q_head0, int *kv_head0) {
    *local = *full;
    local->n_heads = full->n_heads / tp;
    local->d_ff = full->d_ff / tp;
    local->d_ff_shared = full->d_ff_shared / tp;
    *q_head0 = tp_rank * local->n_heads;
    if (full->n_kv_heads % tp == 0) {
        local->n_kv_heads = full->n_kv_heads / tp;
        *kv_head0 = tp_rank * local->n_kv_heads;
    } else { /* tp % n_kv_heads == 0: each KV head replicated on tp / n_kv_heads ranks */
        local->n_kv_heads = 1;
        *kv_head0 = tp_rank / (tp / full->n_kv_heads);
    }
}

/* Where this rank's slice of a block starts: first query head, first KV head, MLP rows. */
struct slice {
    int q0, kv0, ff0;
    int tp_rank;
};

static int m_tp_rank(const struct slice *sl) {
    return sl->tp_rank;
}

/* ---------------------------------------------------------------------------------------------
 * Arena layout: one pass computes the size, a second hands out pointers.
 */

struct arena {
    float *base;
    size_t used;
};

static float *take(struct arena *a, size_t n) {
    float *p = a->base ? a->base + a->used : NULL;
    a->used += (n + 15) & ~(size_t)15; /* keep every tensor 64-byte aligned */
    return p;
}

/* Assigns every pointer of m for opts; with a->base == NULL it only counts. */
static void layout(struct melbo_model *m, const struct melbo_load_opts *o, struct arena *a) {
    const struct melbo_model_config *c = &m->cfg;
    size_t d = (size_t)c->d_model, hd = (size_t)c->head_dim, ff = (size_t)c->d_ff;
    size_t rows = (size_t)melbo_model_qkv_rows(c), qdim = (size_t)c->n_heads * hd;
    size_t qn = c->qk_norm == 2 ? qdim : hd, kn = c->qk_norm == 2 ? (size_t)c->n_kv_heads * hd : hd;
    for (int l = m->layer_begin; l < m->layer_end; l++) {
        struct melbo_layer_weights *w = &m->layers[l];
        w->attn_norm = c->no_pre_norms ? NULL : take(a, d);
        w->w_qkv = take(a, rows * d);
        w->b_qkv = c->qkv_bias ? take(a, rows) : NULL;
        w->q_norm = c->qk_norm ? take(a, qn) : NULL;
        w->k_norm = c->qk_norm ? take(a, kn) : NULL;
        w->w_o = take(a, d * qdim);
        w->b_o = c->o_bias ? take(a, d) : NULL;
        w->post_attn_norm = c->post_norms ? take(a, d) : NULL;
        w->mlp_norm = c->no_pre_norms ? NULL : take(a, d);
        size_t E = (size_t)c->n_experts;
        w->w_gu = E ? NULL : take(a, 2 * ff * d);
        w->w_down = E ? NULL : take(a, d * ff);
        w->w_router = E ? take(a, E * d) : NULL;
        w->w_gu_e = E ? take(a, E * 2 * ff * d) : NULL;
        w->w_down_e = E ? take(a, E * d * ff) : NULL;
        size_t sff = (size_t)c->d_ff_shared;
        w->w_sh_gu = sff ? take(a, 2 * sff * d) : NULL;
        w->w_sh_down = sff ? take(a, d * sff) : NULL;
        w->w_sh_gate = sff ? take(a, d) : NULL;
        w->post_mlp_norm = c->post_norms ? take(a, d) : NULL;
    }
    size_t vd = (size_t)c->vocab * d;
    m->embed = o->embed || (o->head && c->tied_embeddings) ? take(a, vd) : NULL;
    m->final_norm = o->head ? take(a, d) : NULL;
    m->lm_head = o->head ? (c->tied_embeddings ? m->embed : take(a, vd)) : NULL;
    m->rope_inv_freq = take(a, (size_t)(c->rope_dim / 2));
    m->rope_inv_freq_local = c->local_rope ? take(a, (size_t)(c->rope_dim / 2)) : m->rope_inv_freq;
}

/* m->full holds the config; sets m->cfg to this rank's share and lays out the arena. */
static int resolve_opts(struct melbo_model *m, const struct melbo_load_opts *o,
                        struct melbo_err *err, struct slice *sl) {
    int L = m->full.n_layers, tp = o->tp_size > 0 ? o->tp_size : 1;
    int ret = melbo_config_check_runnable(&m->full, err);
    if (ret)
        return ret;
    ret = melbo_tp_check(&m->full, tp, err);
    if (ret)
        return ret;
    if (o->tp_rank < 0 || o->tp_rank >= tp)
        return melbo_err_set(err, MELBO_EINVAL, "tensor-parallel rank %d of %d", o->tp_rank, tp);
    m->tp_rank = o->tp_rank;
    m->tp_size = tp;
    melbo_tp_local_config(&m->full, o->tp_rank, tp, &m->cfg, &sl->q0, &sl->kv0);
    sl->ff0 = o->tp_rank * m->cfg.d_ff;
    sl->tp_rank = o->tp_rank;
    m->layer_begin = o->layer_begin;
    m->layer_end = o->layer_end < 0 ? L : o->layer_end;
    if (m->layer_begin < 0 || m->layer_begin > m->layer_end || m->layer_end > L)
        return melbo_err_set(err, MELBO_ERANGE,
                             "layer range [%d, %d) is outside the model's %d layers",
                             o->layer_begin, o->layer_end, L);
    m->layers = melbo_xcalloc((size_t)L, sizeof *m->layers);
    struct arena count = {NULL, 0};
    layout(m, o, &count);
    m->arena_floats = count.used;
    m->arena = melbo_xalloc_f32(count.used);
    struct arena real = {m->arena, 0};
    layout(m, o, &real);
    melbo_config_rope_inv_freq(&m->cfg, m->rope_inv_freq);
    if (m->cfg.local_rope)
        melbo_config_rope_inv_freq_local(&m->cfg, m->rope_inv_freq_local);
    return 0;
}

static void format_shape(char *buf, size_t n, const int64_t *shape, int ndim) {
    int w = snprintf(buf, n, "[");
    for (int i = 0; i < ndim; i++)
        w += snprintf(buf + w, n - (size_t)w, i ? ", %lld" : "%lld", (long long)shape[i]);
    snprintf(buf + w, n - (size_t)w, "]");
}

/*
 * copy_block for a GGUF file: the same contract, with the shape read in GGUF's fastest-first
 * order and rope_heads > 0 undoing llama.cpp's Q/K row permutation (rank/model/gguf_model.h).
 */
static int copy_block_gguf(const struct melbo_gguf_file *f, const char *name, const int64_t *want,
                           int ndim, int64_t row0, int64_t nrows, int64_t col0, int64_t ncols,
                           int rope_heads, float *dst, struct melbo_err *err) {
    const struct melbo_gguf_tensor *t = melbo_gguf_find(f, name);
    if (t == NULL)
        return melbo_err_set(err, MELBO_EMISSING, "GGUF file %s has no tensor '%s'", f->path, name);
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++)
        same = t->ne[i] == want[ndim - 1 - i];
    if (!same) {
        char got[128], exp[128];
        int64_t hf[MELBO_GGUF_MAX_DIMS];
        for (int i = 0; i < t->ndim; i++)
            hf[i] = t->ne[t->ndim - 1 - i];
        format_shape(got, sizeof got, hf, t->ndim);
        format_shape(exp, sizeof exp, want, ndim);
        return melbo_err_set(
            err, MELBO_ESHAPE,
            "GGUF tensor '%s' has shape %s (rows, cols) but the metadata implies %s", name, got,
            exp);
    }
    if (!melbo_ggml_can_dequant(t->type))
        return melbo_err_set(err, MELBO_EUNSUPPORTED,
                             "GGUF tensor '%s' is quantised as %s, which melbo does not dequantise "
                             "(supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K)",
                             name, melbo_ggml_type_name(t->type));
    int64_t row_len = ndim == 2 ? want[1] : 1;
    if (nrows < 0)
        nrows = want[0];
    if (ncols < 0)
        ncols = row_len - col0;
    return melbo_gguf_read_block(f, t, row0, nrows, col0, ncols, rope_heads, dst, err);
}

/*
 * Copies rows [row0, row0 + nrows) and columns [col0, col0 + ncols) of the checkpoint tensor name
 * (which must have exactly the shape want[ndim]) into dst as fp32, packed. nrows / ncols = -1 mean
 * all. dst = NULL only validates. The mapped pages read are released afterwards, so a rank's
 * resident memory holds its fp32 slices, not the checkpoint.
 */
static int copy_block(const struct melbo_checkpoint *ck, const char *name, const int64_t *want,
                      int ndim, int64_t row0, int64_t nrows, int64_t col0, int64_t ncols,
                      int rope_heads, float *dst, struct melbo_err *err) {
    if (ck->gguf)
        return copy_block_gguf(ck->gguf, name, want, ndim, row0, nrows, col0, ncols, rope_heads,
                               dst, err);
    const struct melbo_st_tensor *t = melbo_checkpoint_find(ck, name);
    if (t == NULL)
        return melbo_err_set(err, MELBO_EMISSING, "checkpoint %s has no tensor '%s'", ck->dir,
                             name);
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++)
        same = t->shape[i] == want[i];
    if (!same) {
        char got[128], exp[128];
        format_shape(got, sizeof got, t->shape, t->ndim);
        format_shape(exp, sizeof exp, want, ndim);
        return melbo_err_set(err, MELBO_ESHAPE,
                             "tensor '%s' has shape %s but config.json implies %s", name, got, exp);
    }
    if (!melbo_dtype_is_weight(t->dtype))
        return melbo_err_set(err, MELBO_EUNSUPPORTED,
                             "tensor '%s' is stored as %s (weights must be F32, F16 or BF16)", name,
                             melbo_dtype_name(t->dtype));
    int64_t row_len = ndim == 2 ? want[1] : 1;
    if (nrows < 0)
        nrows = want[0];
    if (ncols < 0)
        ncols = row_len - col0;
    if (dst == NULL) /* validation only */
        return 0;
    size_t es = melbo_dtype_size(t->dtype);
    const char *first = (const char *)t->data + (size_t)(row0 * row_len + col0) * es;
    if (ncols == row_len) {
        melbo_convert_to_f32(dst, first, t->dtype, (size_t)(nrows * row_len));
    } else {
        for (int64_t r = 0; r < nrows; r++)
            melbo_convert_to_f32(dst + (size_t)(r * ncols), first + (size_t)(r * row_len) * es,
                                 t->dtype, (size_t)ncols);
    }
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = (uintptr_t)first & ~(uintptr_t)(page - 1);
    uintptr_t hi = (uintptr_t)first + (size_t)((nrows - 1) * row_len + ncols) * es;
    madvise((void *)lo, hi - lo, MADV_DONTNEED);
    return 0;
}

static int copy_rows(const struct melbo_checkpoint *ck, const char *name, const int64_t *want,
                     int ndim, int64_t row0, int64_t nrows, float *dst, struct melbo_err *err) {
    return copy_block(ck, name, want, ndim, row0, nrows, 0, -1, 0, dst, err);
}

/* Copies this rank's rows (row-split pieces) or columns (col_split) of (kind, layer). */
static int load_piece(const struct melbo_checkpoint *ck, const struct melbo_model_config *full,
                      int l, enum melbo_weight k, int64_t row_off, int64_t nrows, int64_t col0,
                      int64_t ncols, float *dst, struct melbo_err *err) {
    char name[256];
    int64_t row0, shape[2];
    melbo_weight_name(full, ck->gguf != NULL, k, l, name, sizeof name, &row0);
    int ndim = melbo_weight_shape(full, k, shape);
    /* llama.cpp stores Q and K rows in its RoPE order: undo it per head */
    int rope_heads = !ck->gguf             ? 0
                     : k == MELBO_WEIGHT_Q ? full->n_heads
                     : k == MELBO_WEIGHT_K ? full->n_kv_heads
                                           : 0;
    return copy_block(ck, name, shape, ndim, row0 + row_off, nrows, col0, ncols, rope_heads, dst,
                      err);
}

/* Offset pointer that stays NULL in a validation pass. */
static float *at(float *base, size_t off) {
    return base ? base + off : NULL;
}

/* The router (replicated) and this rank's columns of every expert of block l. */
static int load_experts(const struct melbo_checkpoint *ck, const struct melbo_model_config *full,
                        const struct melbo_model_config *c, const struct slice *sl, int l,
                        const struct melbo_layer_weights *w, struct melbo_err *err) {
    char name[256];
    int64_t d = c->d_model, ff = c->d_ff, E = c->n_experts, fff = full->d_ff;
    int64_t router[2] = {E, d}, gate[2] = {fff, d}, down[2] = {d, fff};
    melbo_expert_weight_name(full, 0, l, 0, name, sizeof name);
    int ret = copy_block(ck, name, router, 2, 0, -1, 0, -1, 0, w->w_router, err);
    for (int64_t e = 0; e < E && ret == 0; e++) {
        float *gu = at(w->w_gu_e, (size_t)(e * 2 * ff * d));
        melbo_expert_weight_name(full, 1, l, (int)e, name, sizeof name);
        ret = copy_block(ck, name, gate, 2, sl->ff0, ff, 0, -1, 0, gu, err);
        if (ret == 0) {
            melbo_expert_weight_name(full, 2, l, (int)e, name, sizeof name);
            ret = copy_block(ck, name, gate, 2, sl->ff0, ff, 0, -1, 0, at(gu, (size_t)(ff * d)),
                             err);
        }
        if (ret == 0) {
            melbo_expert_weight_name(full, 3, l, (int)e, name, sizeof name);
            ret = copy_block(ck, name, down, 2, 0, -1, sl->ff0, ff, 0,
                             at(w->w_down_e, (size_t)(e * d * ff)), err);
        }
    }
    if (c->d_ff_shared && ret == 0) { /* Qwen2-MoE's shared expert, split like a dense MLP */
        int64_t sff = c->d_ff_shared, s0 = (int64_t)m_tp_rank(sl) * sff;
        int64_t sg[2] = {full->d_ff_shared, d}, sd[2] = {d, full->d_ff_shared}, gate[2] = {1, d};
        melbo_expert_weight_name(full, 4, l, 0, name, sizeof name);
        ret = copy_block(ck, name, sg, 2, s0, sff, 0, -1, 0, w->w_sh_gu, err);
        if (ret == 0) {
            melbo_expert_weight_name(full, 5, l, 0, name, sizeof name);
            ret = copy_block(ck, name, sg, 2, s0, sff, 0, -1, 0, at(w->w_sh_gu, (size_t)(sff * d)),
                             err);
        }
        if (ret == 0) {
            melbo_expert_weight_name(full, 6, l, 0, name, sizeof name);
            ret = copy_block(ck, name, sd, 2, 0, -1, s0, sff, 0, w->w_sh_down, err);
        }
        if (ret == 0) {
            melbo_expert_weight_name(full, 7, l, 0, name, sizeof name);
            ret = copy_block(ck, name, gate, 2, 0, -1, 0, -1, 0, w->w_sh_gate, err);
        }
    }
    return ret;
}

/* w[i] = 1 + w[i] (nothing when w is NULL). */
static void plus_one(float *w, size_t n) {
    for (size_t i = 0; w && i < n; i++)
        w[i] = 1.0f + w[i];
}

/*
 * Loads this rank's part of block l into w (shapes of the local config c; the checkpoint has the
 * full config's); with w all NULL it only checks names, shapes and dtypes.
 */
static int load_layer(const struct melbo_checkpoint *ck, const struct melbo_model_config *full,
                      const struct melbo_model_config *c, const struct slice *sl, int l,
                      const struct melbo_layer_weights *w, struct melbo_err *err) {
    size_t d = (size_t)c->d_model, hd = (size_t)c->head_dim;
    size_t qd = (size_t)c->n_heads * hd, kd = (size_t)c->n_kv_heads * hd, ff = (size_t)c->d_ff;
    int64_t q_off = (int64_t)sl->q0 * hd, kv_off = (int64_t)sl->kv0 * hd;
    int ret = 0;
#define PIECE(kind, roff, nrows, c0, ncols, dst)                                                   \
    do {                                                                                           \
        ret = load_piece(ck, full, l, kind, roff, nrows, c0, ncols, dst, err);                     \
        if (ret)                                                                                   \
            return ret;                                                                            \
    } while (0)
    if (!c->no_pre_norms)
        PIECE(MELBO_WEIGHT_ATTN_NORM, 0, -1, 0, -1, w->attn_norm);
    PIECE(MELBO_WEIGHT_Q, q_off, (int64_t)qd, 0, -1, w->w_qkv);
    PIECE(MELBO_WEIGHT_K, kv_off, (int64_t)kd, 0, -1, at(w->w_qkv, qd * d));
    PIECE(MELBO_WEIGHT_V, kv_off, (int64_t)kd, 0, -1, at(w->w_qkv, (qd + kd) * d));
    if (c->qkv_bias) {
        PIECE(MELBO_WEIGHT_QB, q_off, (int64_t)qd, 0, -1, w->b_qkv);
        PIECE(MELBO_WEIGHT_KB, kv_off, (int64_t)kd, 0, -1, at(w->b_qkv, qd));
        PIECE(MELBO_WEIGHT_VB, kv_off, (int64_t)kd, 0, -1, at(w->b_qkv, qd + kd));
    }
    if (c->qk_norm == 1) {
        PIECE(MELBO_WEIGHT_QN, 0, -1, 0, -1, w->q_norm);
        PIECE(MELBO_WEIGHT_KN, 0, -1, 0, -1, w->k_norm);
    } else if (c->qk_norm == 2) { /* over the whole projection: this rank's heads */
        PIECE(MELBO_WEIGHT_QN, q_off, (int64_t)qd, 0, -1, w->q_norm);
        PIECE(MELBO_WEIGHT_KN, kv_off, (int64_t)kd, 0, -1, w->k_norm);
    }
    PIECE(MELBO_WEIGHT_O, 0, -1, q_off, (int64_t)qd, w->w_o);
    if (c->o_bias)
        PIECE(MELBO_WEIGHT_OB, 0, -1, 0, -1, w->b_o);
    if (!c->no_pre_norms)
        PIECE(MELBO_WEIGHT_MLP_NORM, 0, -1, 0, -1, w->mlp_norm);
    if (c->n_experts > 0) {
        ret = load_experts(ck, full, c, sl, l, w, err);
        if (ret)
            return ret;
    } else {
        PIECE(MELBO_WEIGHT_GATE, sl->ff0, (int64_t)ff, 0, -1, w->w_gu);
        PIECE(MELBO_WEIGHT_UP, sl->ff0, (int64_t)ff, 0, -1, at(w->w_gu, ff * d));
        PIECE(MELBO_WEIGHT_DOWN, 0, -1, sl->ff0, (int64_t)ff, w->w_down);
    }
    if (c->post_norms) {
        PIECE(MELBO_WEIGHT_POST_ATTN_NORM, 0, -1, 0, -1, w->post_attn_norm);
        PIECE(MELBO_WEIGHT_POST_MLP_NORM, 0, -1, 0, -1, w->post_mlp_norm);
    }
#undef PIECE
    if (c->norm_plus_one) { /* Gemma: (1 + w), rounded to fp32 as transformers does */
        plus_one(w->attn_norm, d);
        plus_one(w->mlp_norm, d);
        plus_one(w->post_attn_norm, d);
        plus_one(w->post_mlp_norm, d);
        plus_one(w->q_norm, hd);
        plus_one(w->k_norm, hd);
    }
    return 0;
}

/* Loads the embedding, final norm and head that m has room for (all NULL: checks all three). */
static int load_outer(const struct melbo_checkpoint *ck, const struct melbo_model *m,
                      struct melbo_err *err) {
    const struct melbo_model_config *c = &m->cfg;
    int dry = m->arena == NULL;
    int qwen1 = c->arch == MELBO_ARCH_QWEN, gguf = ck->gguf != NULL, ret;
    int64_t vd[2] = {c->vocab, c->d_model}, dn[1] = {c->d_model};
    char hf_embed[64], hf_norm[64];
    const char *pre = c->lm_prefix[0] ? c->lm_prefix : "model.";
    snprintf(hf_embed, sizeof hf_embed, "%sembed_tokens.weight", pre);
    snprintf(hf_norm, sizeof hf_norm, "%snorm.weight", pre);
    const char *embed = gguf    ? "token_embd.weight"
                        : qwen1 ? "transformer.wte.weight"
                                : hf_embed;
    const char *norm = gguf    ? "output_norm.weight"
                       : qwen1 ? "transformer.ln_f.weight"
                               : hf_norm;
    if (m->embed || dry) {
        ret = copy_rows(ck, embed, vd, 2, 0, -1, m->embed, err);
        if (ret)
            return ret;
    }
    if (m->final_norm || dry) {
        ret = copy_rows(ck, norm, dn, 1, 0, -1, m->final_norm, err);
        if (ret)
            return ret;
        if (c->norm_plus_one)
            plus_one(m->final_norm, (size_t)c->d_model);
    }
    if ((m->lm_head && m->lm_head != m->embed) || (dry && !c->tied_embeddings)) {
        ret =
            copy_rows(ck, gguf ? "output.weight" : "lm_head.weight", vd, 2, 0, -1, m->lm_head, err);
        if (ret)
            return ret;
    }
    return 0;
}

/*
 * Gemma 3 image-text checkpoints keep the language model under "language_model.model."
 * (transformers v4) or "model.language_model." (v5): finds which, or says that neither is there.
 */
static int find_lm_prefix(const struct melbo_checkpoint *ck, struct melbo_model_config *cfg,
                          struct melbo_err *err) {
    if (!cfg->lm_in_multimodal || ck->gguf)
        return 0;
    static const char *const prefixes[] = {"language_model.model.", "model.language_model."};
    for (int i = 0; i < 2; i++) {
        char name[96];
        snprintf(name, sizeof name, "%sembed_tokens.weight", prefixes[i]);
        if (melbo_checkpoint_find(ck, name)) {
            snprintf(cfg->lm_prefix, sizeof cfg->lm_prefix, "%s", prefixes[i]);
            return 0;
        }
    }
    return melbo_err_set(err, MELBO_EMISSING,
                         "checkpoint %s (model_type gemma3) has no language model: neither "
                         "'language_model.model.embed_tokens.weight' nor "
                         "'model.language_model.embed_tokens.weight' is present",
                         ck->dir);
}

int melbo_model_load(struct melbo_model *m, const char *dir, const struct melbo_load_opts *opts,
                     struct melbo_err *err) {
    struct melbo_checkpoint ck;
    struct slice sl;
    memset(m, 0, sizeof *m);
    int ret = melbo_config_load(&m->full, dir, err);
    if (ret)
        return ret;
    ret = melbo_config_check_runnable(&m->full, err);
    if (ret)
        return ret;
    ret = melbo_checkpoint_open(&ck, dir, err);
    if (ret)
        return ret;
    ret = find_lm_prefix(&ck, &m->full, err);
    if (ret)
        goto out;
    ret = resolve_opts(m, opts, err, &sl);
    if (ret)
        goto out;
    for (int l = m->layer_begin; l < m->layer_end && ret == 0; l++)
        ret = load_layer(&ck, &m->full, &m->cfg, &sl, l, &m->layers[l], err);
    if (ret == 0)
        ret = load_outer(&ck, m, err);
out:
    if (ret)
        melbo_model_free(m);
    melbo_checkpoint_close(&ck);
    return ret;
}

int melbo_model_check(const char *dir, struct melbo_model_config *cfg, struct melbo_err *err) {
    struct melbo_checkpoint ck;
    int ret = melbo_config_load(cfg, dir, err);
    if (ret)
        return ret;
    ret = melbo_config_check_runnable(cfg, err);
    if (ret)
        return ret;
    ret = melbo_checkpoint_open(&ck, dir, err);
    if (ret)
        return ret;
    ret = find_lm_prefix(&ck, cfg, err);
    if (ret) {
        melbo_checkpoint_close(&ck);
        return ret;
    }
    struct melbo_layer_weights none;
    struct slice all = {0, 0, 0, 0};
    memset(&none, 0, sizeof none);
    for (int l = 0; l < cfg->n_layers && ret == 0; l++)
        ret = load_layer(&ck, cfg, cfg, &all, l, &none, err);
    if (ret == 0) {
        struct melbo_model dry;
        memset(&dry, 0, sizeof dry);
        dry.cfg = *cfg;
        ret = load_outer(&ck, &dry, err);
    }
    melbo_checkpoint_close(&ck);
    return ret;
}

/* ---------------------------------------------------------------------------------------------
 * Random weights.
 */

static void fill_normal(float *p, size_t n, float mean, float std, uint64_t seed,
                        uint64_t *stream) {
    melbo_rng_normal_f32(seed, (*stream)++, p, n);
    for (size_t i = 0; i < n; i++)
        p[i] = mean + std * p[i];
}

void melbo_model_init_random(struct melbo_model *m, const struct melbo_model_config *cfg,
                             const struct melbo_load_opts *opts, uint64_t seed) {
    memset(m, 0, sizeof *m);
    m->full = *cfg;
    struct slice sl;
    if (resolve_opts(m, opts, NULL, &sl) != 0) {
        fprintf(stderr, "melbo: invalid layer range for a random model\n");
        abort();
    }
    const struct melbo_model_config *c = &m->cfg;
    size_t d = (size_t)c->d_model, hd = (size_t)c->head_dim, ff = (size_t)c->d_ff;
    size_t rows = (size_t)melbo_model_qkv_rows(c), qd = (size_t)c->n_heads * hd;
    uint64_t s = 0;
    for (int l = m->layer_begin; l < m->layer_end; l++) {
        struct melbo_layer_weights *w = &m->layers[l];
        s = (uint64_t)l << 8;
        if (w->attn_norm)
            fill_normal(w->attn_norm, d, 1.0f, 0.1f, seed, &s);
        fill_normal(w->w_qkv, rows * d, 0.0f, 1.0f / sqrtf((float)d), seed, &s);
        if (w->b_qkv)
            fill_normal(w->b_qkv, rows, 0.0f, 0.1f, seed, &s);
        if (w->q_norm) {
            size_t qn = c->qk_norm == 2 ? qd : hd;
            size_t kn = c->qk_norm == 2 ? (size_t)c->n_kv_heads * hd : hd;
            fill_normal(w->q_norm, qn, 1.0f, 0.1f, seed, &s);
            fill_normal(w->k_norm, kn, 1.0f, 0.1f, seed, &s);
        }
        fill_normal(w->w_o, d * qd, 0.0f, 1.0f / sqrtf((float)qd), seed, &s);
        if (w->b_o)
            fill_normal(w->b_o, d, 0.0f, 0.1f, seed, &s);
        if (w->mlp_norm)
            fill_normal(w->mlp_norm, d, 1.0f, 0.1f, seed, &s);
        size_t E = (size_t)c->n_experts;
        if (E) {
            fill_normal(w->w_router, E * d, 0.0f, 1.0f / sqrtf((float)d), seed, &s);
            fill_normal(w->w_gu_e, E * 2 * ff * d, 0.0f, 1.0f / sqrtf((float)d), seed, &s);
            fill_normal(w->w_down_e, E * d * ff, 0.0f, 1.0f / sqrtf((float)ff), seed, &s);
            size_t sff = (size_t)c->d_ff_shared;
            if (sff) {
                fill_normal(w->w_sh_gu, 2 * sff * d, 0.0f, 1.0f / sqrtf((float)d), seed, &s);
                fill_normal(w->w_sh_down, d * sff, 0.0f, 1.0f / sqrtf((float)sff), seed, &s);
                fill_normal(w->w_sh_gate, d, 0.0f, 1.0f / sqrtf((float)d), seed, &s);
            }
        } else {
            fill_normal(w->w_gu, 2 * ff * d, 0.0f, 1.0f / sqrtf((float)d), seed, &s);
            fill_normal(w->w_down, d * ff, 0.0f, 1.0f / sqrtf((float)ff), seed, &s);
        }
        if (w->post_attn_norm) {
            fill_normal(w->post_attn_norm, d, 1.0f, 0.1f, seed, &s);
            fill_normal(w->post_mlp_norm, d, 1.0f, 0.1f, seed, &s);
        }
    }
    s = (uint64_t)1 << 40;
    if (m->embed)
        fill_normal(m->embed, (size_t)c->vocab * d, 0.0f, 1.0f, seed, &s);
    if (m->final_norm)
        fill_normal(m->final_norm, d, 1.0f, 0.1f, seed, &s);
    if (m->lm_head && m->lm_head != m->embed)
        fill_normal(m->lm_head, (size_t)c->vocab * d, 0.0f, 1.0f / sqrtf((float)d), seed, &s);
}

void melbo_model_free(struct melbo_model *m) {
    free(m->arena);
    free(m->layers);
    memset(m, 0, sizeof *m);
}
