/*
 * rank/model/gguf_model.c - llama-architecture GGUF metadata as a model config, and weight rows
 * in Hugging Face order (rank/model/gguf_model.h).
 */
#include "rank/model/gguf_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/mem.h"

/* A required positive integer llama.<key>. */
static int need_int(const struct melbo_gguf_file *f, const char *key, int *out,
                    struct melbo_err *err) {
    char full[128];
    int64_t v = 0;
    snprintf(full, sizeof full, "llama.%s", key);
    int r = melbo_gguf_get_int(f, full, &v, err);
    if (r < 0)
        return r;
    if (r == 0)
        return melbo_err_set(err, MELBO_EMISSING, "%s: missing metadata '%s'", f->path, full);
    if (v <= 0 || v > 1 << 30)
        return melbo_err_set(err, MELBO_EFORMAT, "%s: '%s' = %lld is out of range", f->path, full,
                             (long long)v);
    *out = (int)v;
    return 0;
}

/* An optional integer llama.<key>; returns 1 when present. */
static int opt_int(const struct melbo_gguf_file *f, const char *key, int *out,
                   struct melbo_err *err) {
    char full[128];
    int64_t v = 0;
    snprintf(full, sizeof full, "llama.%s", key);
    int r = melbo_gguf_get_int(f, full, &v, err);
    if (r == 1) {
        if (v < 0 || v > 1 << 30)
            return melbo_err_set(err, MELBO_EFORMAT, "%s: '%s' = %lld is out of range", f->path,
                                 full, (long long)v);
        *out = (int)v;
    }
    return r;
}

static int opt_float(const struct melbo_gguf_file *f, const char *key, float *out,
                     struct melbo_err *err) {
    char full[128];
    double v = 0;
    snprintf(full, sizeof full, "llama.%s", key);
    int r = melbo_gguf_get_float(f, full, &v, err);
    if (r == 1)
        *out = (float)v;
    return r;
}

/* RoPE: llama.rope.scaling.{type,factor,original_context_length}; llama3 files carry a tensor. */
static int gguf_rope(const struct melbo_gguf_file *f, struct melbo_model_config *cfg,
                     struct melbo_err *err) {
    const char *type = NULL;
    size_t tlen = 0;
    float factor = 0;
    MELBO_TRY(melbo_gguf_get_str(f, "llama.rope.scaling.type", &type, &tlen, err));
    MELBO_TRY(opt_float(f, "rope.scaling.factor", &factor, err));
    if (melbo_gguf_find(f, "rope_freqs.weight"))
        return melbo_err_set(err, MELBO_EUNSUPPORTED,
                             "%s: tensor 'rope_freqs.weight' (llama3-style RoPE frequency factors) "
                             "is not supported in GGUF files",
                             f->path);
    if (type == NULL || (tlen == 4 && !memcmp(type, "none", 4)))
        return 0;
    if (tlen == 6 && !memcmp(type, "linear", 6)) {
        if (!(factor > 0))
            return melbo_err_set(err, MELBO_EFORMAT,
                                 "%s: linear RoPE scaling needs a positive "
                                 "llama.rope.scaling.factor",
                                 f->path);
        if (factor != 1.0f) {
            cfg->rope_type = MELBO_ROPE_LINEAR;
            cfg->rope_factor = factor;
        }
        return 0;
    }
    return melbo_err_set(err, MELBO_EUNSUPPORTED,
                         "%s: RoPE scaling type \"%.*s\" (llama.rope.scaling.type) is not "
                         "supported (melbo supports none and linear in GGUF files)",
                         f->path, (int)tlen, type);
}

/* general.architecture must be "llama": sets cfg's architecture fields. */
static int gguf_arch(const struct melbo_gguf_file *f, struct melbo_model_config *cfg,
                     struct melbo_err *err) {
    const char *arch = NULL;
    size_t alen = 0;
    MELBO_TRY(melbo_gguf_get_str(f, "general.architecture", &arch, &alen, err));
    if (arch == NULL)
        return melbo_err_set(err, MELBO_EMISSING, "%s: missing metadata 'general.architecture'",
                             f->path);
    if (alen != 5 || memcmp(arch, "llama", 5) != 0)
        return melbo_err_set(err, MELBO_EUNSUPPORTED,
                             "%s: GGUF architecture \"%.*s\" is not supported (melbo reads "
                             "general.architecture \"llama\")",
                             f->path, (int)(alen > 64 ? 64 : alen), arch);
    cfg->arch = MELBO_ARCH_LLAMA;
    snprintf(cfg->model_type, sizeof cfg->model_type, "llama");
    snprintf(cfg->architecture, sizeof cfg->architecture, "LlamaForCausalLM (GGUF)");
    return 0;
}

/* Blocks, widths and heads: n_layers, d_model, n_heads, d_ff, n_kv_heads (dividing n_heads);
 * mixture-of-experts models are refused. */
static int gguf_sizes(const struct melbo_gguf_file *f, struct melbo_model_config *cfg,
                      struct melbo_err *err) {
    MELBO_TRY(need_int(f, "block_count", &cfg->n_layers, err));
    MELBO_TRY(need_int(f, "embedding_length", &cfg->d_model, err));
    MELBO_TRY(need_int(f, "attention.head_count", &cfg->n_heads, err));
    MELBO_TRY(need_int(f, "feed_forward_length", &cfg->d_ff, err));
    cfg->n_kv_heads = cfg->n_heads;
    MELBO_TRY(opt_int(f, "attention.head_count_kv", &cfg->n_kv_heads, err));
    int experts = 0;
    MELBO_TRY(opt_int(f, "expert_count", &experts, err));
    if (experts > 0)
        return melbo_err_set(err, MELBO_EUNSUPPORTED,
                             "%s: mixture-of-experts models (llama.expert_count = %d) are not "
                             "supported",
                             f->path, experts);
    if (cfg->n_kv_heads <= 0 || cfg->n_heads % cfg->n_kv_heads != 0)
        return melbo_err_set(err, MELBO_EFORMAT,
                             "%s: llama.attention.head_count %d is not a multiple of "
                             "llama.attention.head_count_kv %d",
                             f->path, cfg->n_heads, cfg->n_kv_heads);
    return 0;
}

/* head_dim (llama.attention.key_length, else d_model / n_heads; the value length must match)
 * and rope_dim, which must be all of it (no partial rotary). Needs gguf_sizes first. */
static int gguf_head_dim(const struct melbo_gguf_file *f, struct melbo_model_config *cfg,
                         struct melbo_err *err) {
    cfg->head_dim = cfg->d_model / cfg->n_heads;
    int klen = 0, vlen = 0;
    int r = opt_int(f, "attention.key_length", &klen, err);
    if (r < 0)
        return r;
    if (r == 1)
        cfg->head_dim = klen;
    r = opt_int(f, "attention.value_length", &vlen, err);
    if (r < 0)
        return r;
    if (r == 1 && vlen != cfg->head_dim)
        return melbo_err_set(err, MELBO_EUNSUPPORTED,
                             "%s: llama.attention.value_length %d differs from the key length %d",
                             f->path, vlen, cfg->head_dim);
    if (klen == 0 && cfg->d_model % cfg->n_heads != 0)
        return melbo_err_set(err, MELBO_EFORMAT,
                             "%s: embedding_length %d is not a multiple of head_count %d and no "
                             "llama.attention.key_length is given",
                             f->path, cfg->d_model, cfg->n_heads);
    if (cfg->head_dim <= 0 || cfg->head_dim % 2 != 0 || cfg->head_dim > 1024)
        return melbo_err_set(err, MELBO_EFORMAT, "%s: head_dim %d must be even and in [2, 1024]",
                             f->path, cfg->head_dim);
    cfg->rope_dim = cfg->head_dim;
    int rdim = cfg->head_dim;
    MELBO_TRY(opt_int(f, "rope.dimension_count", &rdim, err));
    if (rdim != cfg->head_dim)
        return melbo_err_set(err, MELBO_EUNSUPPORTED,
                             "%s: llama.rope.dimension_count %d differs from head_dim %d (partial "
                             "rotary is not supported)",
                             f->path, rdim, cfg->head_dim);
    return 0;
}

/* Norm epsilon, RoPE base and scaling, context length (each optional, over cfg's defaults). */
static int gguf_norm_rope(const struct melbo_gguf_file *f, struct melbo_model_config *cfg,
                          struct melbo_err *err) {
    MELBO_TRY(opt_float(f, "attention.layer_norm_rms_epsilon", &cfg->norm_eps, err));
    MELBO_TRY(opt_float(f, "rope.freq_base", &cfg->rope_theta, err));
    MELBO_TRY(opt_int(f, "context_length", &cfg->max_positions, err));
    if (!(cfg->norm_eps > 0) || !(cfg->rope_theta > 0))
        return melbo_err_set(err, MELBO_EFORMAT,
                             "%s: norm epsilon and rope.freq_base must be "
                             "positive",
                             f->path);
    return gguf_rope(f, cfg, err);
}

/* The vocabulary size (llama.vocab_size, else the token list, else the embedding's rows), tied
 * embeddings (no output.weight); attention biases and MoE tensors are refused. */
static int gguf_vocab_tensors(const struct melbo_gguf_file *f, struct melbo_model_config *cfg,
                              struct melbo_err *err) {
    const struct melbo_gguf_tensor *emb = melbo_gguf_find(f, "token_embd.weight");
    const struct melbo_gguf_kv *toks = melbo_gguf_find_kv(f, "tokenizer.ggml.tokens");
    MELBO_TRY(opt_int(f, "vocab_size", &cfg->vocab, err));
    if (cfg->vocab <= 0 && toks && toks->type == MELBO_GGUF_ARRAY)
        cfg->vocab = (int)toks->n;
    if (cfg->vocab <= 0 && emb && emb->ndim == 2)
        cfg->vocab = (int)emb->ne[1];
    if (cfg->vocab <= 0)
        return melbo_err_set(err, MELBO_EMISSING,
                             "%s: no vocabulary size (llama.vocab_size, tokenizer.ggml.tokens or "
                             "token_embd.weight)",
                             f->path);
    cfg->tied_embeddings = melbo_gguf_find(f, "output.weight") == NULL;
    if (melbo_gguf_find(f, "blk.0.attn_q.bias") || melbo_gguf_find(f, "blk.0.attn_output.bias"))
        return melbo_err_set(err, MELBO_EUNSUPPORTED,
                             "%s: attention biases (blk.N.attn_*.bias) are not supported in llama "
                             "GGUF files",
                             f->path);
    if (melbo_gguf_find(f, "blk.0.ffn_gate_inp.weight"))
        return melbo_err_set(err, MELBO_EUNSUPPORTED,
                             "%s: mixture-of-experts tensors (blk.N.ffn_gate_inp) are not "
                             "supported",
                             f->path);
    return 0;
}

int melbo_gguf_config(const struct melbo_gguf_file *f, struct melbo_model_config *cfg,
                      struct melbo_err *err) {
    memset(cfg, 0, sizeof *cfg);
    cfg->rope_theta = 10000.0f;
    cfg->rope_factor = 1.0f;
    cfg->norm_eps = 1e-5f;
    cfg->bos_token_id = -1;
    MELBO_TRY(gguf_arch(f, cfg, err));
    MELBO_TRY(gguf_sizes(f, cfg, err));
    MELBO_TRY(gguf_head_dim(f, cfg, err));
    MELBO_TRY(gguf_norm_rope(f, cfg, err));
    MELBO_TRY(gguf_vocab_tensors(f, cfg, err));
    /* special tokens: optional, read without complaint */
    int64_t id;
    if (melbo_gguf_get_int(f, "tokenizer.ggml.bos_token_id", &id, NULL) == 1)
        cfg->bos_token_id = (int)id;
    if (melbo_gguf_get_int(f, "tokenizer.ggml.eos_token_id", &id, NULL) == 1)
        cfg->eos_ids[cfg->n_eos++] = (int)id;
    return 0;
}

int melbo_gguf_config_load(struct melbo_model_config *cfg, const char *path,
                           struct melbo_err *err) {
    struct melbo_gguf_file f;
    int ret = melbo_gguf_open(&f, path, err);
    if (ret)
        return ret;
    ret = melbo_gguf_config(&f, cfg, err);
    melbo_gguf_close(&f);
    return ret;
}

/* The stored row of Hugging Face row r when rows are in llama.cpp's RoPE order (hd per head). */
static int64_t unpermute_row(int64_t r, int64_t hd) {
    int64_t h = r / hd, w = r % hd, half = hd / 2;
    return h * hd + 2 * (w % half) + w / half;
}

int melbo_gguf_read_block(const struct melbo_gguf_file *f, const struct melbo_gguf_tensor *t,
                          int64_t row0, int64_t nrows, int64_t col0, int64_t ncols, int rope_heads,
                          float *dst, struct melbo_err *err) {
    int64_t row_len = t->ndim == 1 ? 1 : t->ne[0];
    int64_t n_rows = t->ndim == 1 ? t->ne[0] : t->ne[1];
    if (!melbo_ggml_can_dequant(t->type))
        return melbo_err_set(err, MELBO_EUNSUPPORTED,
                             "%s: tensor '%s' is quantised as %s, which melbo does not dequantise "
                             "(supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K)",
                             f->path, t->name, melbo_ggml_type_name(t->type));
    if (row0 < 0 || nrows < 0 || row0 + nrows > n_rows || col0 < 0 || ncols < 0 ||
        col0 + ncols > row_len)
        return melbo_err_set(err, MELBO_ERANGE, "%s: block outside tensor '%s'", f->path, t->name);
    if (dst == NULL || nrows == 0)
        return 0;
    if (t->ndim == 1) { /* a vector: its elements are the "rows" */
        int64_t bv;
        size_t bb;
        melbo_ggml_block(t->type, &bv, &bb);
        float *all = melbo_xalloc_f32((size_t)t->ne[0]);
        melbo_dequant_f32(t->type, t->data, all, t->ne[0]);
        memcpy(dst, all + row0, sizeof(float) * (size_t)nrows);
        free(all);
        return 0;
    }
    int64_t bv, hd = rope_heads > 0 ? n_rows / rope_heads : 0;
    size_t bb;
    melbo_ggml_block(t->type, &bv, &bb);
    size_t row_bytes = (size_t)(row_len / bv) * bb;
    float *tmp = ncols == row_len ? NULL : melbo_xalloc_f32((size_t)row_len);
    int64_t lo = n_rows, hi = 0;
    for (int64_t r = 0; r < nrows; r++) {
        int64_t src = rope_heads > 0 ? unpermute_row(row0 + r, hd) : row0 + r;
        lo = src < lo ? src : lo;
        hi = src + 1 > hi ? src + 1 : hi;
        const uint8_t *p = (const uint8_t *)t->data + (size_t)src * row_bytes;
        if (tmp) {
            melbo_dequant_f32(t->type, p, tmp, row_len);
            memcpy(dst + r * ncols, tmp + col0, sizeof(float) * (size_t)ncols);
        } else {
            melbo_dequant_f32(t->type, p, dst + r * ncols, row_len);
        }
    }
    free(tmp);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)t->data + (size_t)lo * row_bytes;
    uintptr_t b = (uintptr_t)t->data + (size_t)hi * row_bytes;
    a &= ~(uintptr_t)(page - 1);
    madvise((void *)a, b - a, MADV_DONTNEED);
    return 0;
}
