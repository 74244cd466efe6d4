/*
 * rank/tokenizer/gguf_vocab.c - a struct melbo_tokenizer from a GGUF file's tokenizer.ggml.*
 * metadata (tok_impl.h), the way llama.cpp's vocabulary code (src/llama-vocab.cpp) reads it.
 *
 *   tokenizer.ggml.model "gpt2"   byte-level BPE: tokens spelled in GPT-2's byte alphabet, merges
 *                                 "a b"; the split regexes are chosen by tokenizer.ggml.pre with
 *                                 llama.cpp's table (default, gpt2, llama-bpe/llama3, qwen2,
 *                                 smollm, gpt-4o and their aliases); unknown names are refused.
 *   tokenizer.ggml.model "llama"  SentencePiece: tokens with "▁", scores, byte tokens <0xNN>;
 *                                 merges are derived from the scores (highest score first, as
 *                                 transformers' generate_merges does), byte fallback, Metaspace
 *                                 ("first") when tokenizer.ggml.add_space_prefix (default true).
 * Token types: CONTROL (3) become special added tokens, USER_DEFINED (4) plain added tokens, as
 * llama.cpp and transformers both treat them; bos/eos come from tokenizer.ggml.*_token_id and
 * add_bos_token/add_eos_token (SentencePiece defaults to adding BOS); tokenizer.chat_template is
 * the chat template.
 */
#include "rank/tokenizer/loaders.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"      // defines: melbo_xmalloc, melbo_xcalloc, melbo_xrealloc, melbo_xstrdup
#include "rank/model/gguf.h" // defines: melbo_gguf_open, melbo_gguf_find_kv, melbo_gguf_strings

enum {
    TT_NORMAL = 1,
    TT_UNKNOWN = 2,
    TT_CONTROL = 3,
    TT_USER_DEFINED = 4,
    TT_UNUSED = 5,
    TT_BYTE = 6
};

/* ---------------------------------------------------------------------------------------------
 * llama.cpp's pre-tokenizer table (llm_tokenizer_bpe): tokenizer.ggml.pre -> split regexes.
 */

#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define RE_LLAMA3                                                                                  \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"     \
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN2                                                                                   \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"     \
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
/* llama.cpp's "original regex from tokenizer.json" for GPT-4o (PCRE2 has the classes it needs) */
#define RE_GPT4O                                                                                   \
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+"    \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+"    \
    "[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\\p{N}{1,3}| ?[^\\s\\p{L}"        \
    "\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

static const struct pre {
    const char *names; // space-separated tokenizer.ggml.pre values
    const char *re[TOK_MAX_RE];
    int ignore_merges; // llama.cpp sets it for the llama3 family
} pres[] = {
    {"default", {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"}, 0},
    {"gpt2 mpt olmo jais trillion", {RE_GPT2}, 0},
    {"llama3 llama-v3 llama-bpe falcon3 pixtral midm-2.0 lfm2 dbrx smaug-bpe", {RE_LLAMA3}, 1},
    {"qwen2 deepseek-r1-qwen megrez stablelm2 hunyuan", {RE_QWEN2}, 0},
    {"smollm starcoder refact command-r codeshell exaone minerva-7b", {"\\p{N}", RE_GPT2}, 0},
    {"gpt-4o llama4 minimax-m2", {RE_GPT4O}, 0},
};

static const struct pre *find_pre(const char *name, size_t n) {
    for (size_t i = 0; i < sizeof pres / sizeof pres[0]; i++) {
        for (const char *p = pres[i].names; *p;) {
            size_t l = strcspn(p, " ");
            if (l == n && !memcmp(p, name, n))
                return &pres[i];
            p += l + (p[l] == ' ');
        }
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * SentencePiece merges from scores (transformers' generate_merges with vocab_scores).
 */

struct cand {
    float score;
    uint32_t len_l, len_r; // in code points
    int32_t a, b, id;
    uint32_t order; // position before sorting (stable ties)
};

static int cmp_cand(const void *x, const void *y) {
    const struct cand *p = x, *q = y;
    if (p->score != q->score)
        return p->score > q->score ? -1 : 1;
    if (p->len_l != q->len_l)
        return p->len_l > q->len_l ? -1 : 1;
    if (p->len_r != q->len_r)
        return p->len_r > q->len_r ? -1 : 1;
    return p->order < q->order ? -1 : p->order > q->order;
}

static int cmp_local(const void *x, const void *y) {
    const struct cand *p = x, *q = y;
    if (p->a != q->a)
        return p->a < q->a ? -1 : 1;
    return p->b < q->b ? -1 : p->b > q->b;
}

static void sp_merges(struct melbo_tokenizer *tok, const char **str, const uint64_t *len,
                      const float *scores, int32_t n) {
    size_t cap = 1024, nc = 0;
    struct cand *c = melbo_xmalloc(cap * sizeof *c);
    for (int32_t id = 0; id < n; id++) {
        size_t first = nc;
        uint32_t cps = 0;
        for (size_t off = 0; off < len[id];) { /* every code point boundary */
            uint32_t cp;
            int l = tok_utf8_next((const unsigned char *)str[id] + off, (size_t)len[id] - off, &cp);
            if (l <= 0)
                break;
            off += (size_t)l;
            cps++;
            if (off >= len[id])
                break;
            int32_t a = tok_strmap_get(&tok->vocab, str[id], off);
            int32_t b = tok_strmap_get(&tok->vocab, str[id] + off, (size_t)len[id] - off);
            if (a < 0 || b < 0)
                continue;
            if (nc == cap)
                c = melbo_xrealloc(c, (cap *= 2) * sizeof *c);
            c[nc++] = (struct cand){scores[id], cps, 0, a, b, id, 0};
        }
        qsort(c + first, nc - first, sizeof *c, cmp_local);
        for (size_t k = first; k < nc; k++) { /* right length in code points */
            const char *r = str[c[k].b];
            for (uint64_t o = 0; o < len[c[k].b]; o++)
                c[k].len_r += ((unsigned char)r[o] & 0xC0) != 0x80;
        }
    }
    for (size_t k = 0; k < nc; k++)
        c[k].order = (uint32_t)k;
    qsort(c, nc, sizeof *c, cmp_cand);
    tok_pairmap_init(&tok->merges, (uint32_t)nc + 1);
    for (size_t k = 0; k < nc; k++)
        tok_pairmap_put(&tok->merges, c[k].a, c[k].b, (uint32_t)k, c[k].id);
    free(c);
}

/* ---------------------------------------------------------------------------------------------
 * Loading.
 */

static int get_id(const struct melbo_gguf_file *f, const char *key, int32_t n, int32_t *out,
                  struct melbo_err *err) {
    int64_t v;
    int r = melbo_gguf_get_int(f, key, &v, err);
    if (r <= 0)
        return r;
    if (v < 0 || v >= n)
        return melbo_err_set(err, MELBO_EFORMAT, "%s: %s = %lld is outside the %d tokens", f->path,
                             key, (long long)v, n);
    *out = (int32_t)v;
    return 1;
}

/*
 * The token types of the n tokens into *types (allocated here, caller frees; TT_NORMAL where the
 * file has no tokenizer.ggml.token_type). 0, or MELBO_EFORMAT when the array is malformed.
 */
static int read_types(const struct melbo_gguf_file *f, int32_t n, int32_t **types,
                      struct melbo_err *err) {
    const struct melbo_gguf_kv *tt = melbo_gguf_find_kv(f, "tokenizer.ggml.token_type");
    *types = melbo_xcalloc((size_t)n + 1, sizeof **types);
    for (int32_t i = 0; i < n; i++)
        (*types)[i] = TT_NORMAL;
    if (tt) {
        if (tt->type != MELBO_GGUF_ARRAY || tt->n != (uint64_t)n || tt->elem == MELBO_GGUF_STRING ||
            tt->elem == MELBO_GGUF_ARRAY)
            return melbo_err_set(err, MELBO_EFORMAT,
                                 "%s: tokenizer.ggml.token_type must be an "
                                 "integer array of %d entries",
                                 f->path, n);
        for (int32_t i = 0; i < n; i++)
            (*types)[i] = (int32_t)melbo_gguf_array_num(tt, (uint64_t)i);
    }
    return 0;
}

/*
 * tokenizer.ggml.merges ("a b" strings, rank = position) into tok->merges; tok->vocab is filled.
 * *buf / *buf_cap is the caller's scratch buffer, grown here. 0, or MELBO_EFORMAT naming the
 * first merge that is not two tokens whose concatenation is a third.
 */
static int read_merges(struct melbo_tokenizer *tok, const struct melbo_gguf_file *f,
                       const struct melbo_gguf_kv *mg, char **buf, size_t *buf_cap,
                       struct melbo_err *err) {
    int ret = 0;
    if (mg->type != MELBO_GGUF_ARRAY || mg->elem != MELBO_GGUF_STRING)
        return melbo_err_set(err, MELBO_EFORMAT,
                             "%s: tokenizer.ggml.merges must be an array of "
                             "strings",
                             f->path);
    const char **ms = melbo_xcalloc((size_t)mg->n + 1, sizeof *ms);
    uint64_t *ml = melbo_xcalloc((size_t)mg->n + 1, sizeof *ml);
    melbo_gguf_strings(mg, ms, ml, NULL);
    tok_pairmap_init(&tok->merges, (uint32_t)mg->n + 1);
    for (uint64_t r = 0; r < mg->n && ret == 0; r++) {
        const char *sp = memchr(ms[r], ' ', (size_t)ml[r]);
        size_t la = sp ? (size_t)(sp - ms[r]) : 0, lb = sp ? (size_t)ml[r] - la - 1 : 0;
        if (ml[r] + 1 > *buf_cap)
            *buf = melbo_xrealloc(*buf, *buf_cap = 2 * (size_t)ml[r] + 16);
        if (sp) {
            memcpy(*buf, ms[r], la);
            memcpy(*buf + la, sp + 1, lb);
        }
        int32_t a = sp ? tok_model_lookup(tok, ms[r], la) : -1;
        int32_t b = sp ? tok_model_lookup(tok, sp + 1, lb) : -1;
        int32_t c = sp ? tok_model_lookup(tok, *buf, la + lb) : -1;
        if (a < 0 || b < 0 || c < 0)
            ret = melbo_err_set(err, MELBO_EFORMAT,
                                "%s: tokenizer.ggml.merges[%llu] \"%.*s\" is not two tokens of "
                                "the vocabulary whose concatenation is one",
                                f->path, (unsigned long long)r, (int)(ml[r] > 100 ? 100 : ml[r]),
                                ms[r]);
        else
            tok_pairmap_put(&tok->merges, a, b, (uint32_t)r, c);
    }
    free(ms);
    free(ml);
    return ret;
}

/*
 * A llama tokenizer without merges: merges derived from tokenizer.ggml.scores (sp_merges). The
 * n token strings str/len are borrowed. 0, or MELBO_EMISSING when the scores are absent or not
 * n numbers.
 */
static int score_merges(struct melbo_tokenizer *tok, const struct melbo_gguf_file *f,
                        const char **str, const uint64_t *len, int32_t n, struct melbo_err *err) {
    const struct melbo_gguf_kv *sc = melbo_gguf_find_kv(f, "tokenizer.ggml.scores");
    if (!sc || sc->type != MELBO_GGUF_ARRAY || sc->n != (uint64_t)n ||
        sc->elem == MELBO_GGUF_STRING || sc->elem == MELBO_GGUF_ARRAY)
        return melbo_err_set(err, MELBO_EMISSING,
                             "%s: a llama tokenizer without merges needs "
                             "tokenizer.ggml.scores (%d numbers)",
                             f->path, n);
    float *scores = melbo_xcalloc((size_t)n + 1, sizeof *scores);
    for (int32_t i = 0; i < n; i++)
        scores[i] = (float)melbo_gguf_array_num(sc, (uint64_t)i);
    sp_merges(tok, str, len, scores, n);
    free(scores);
    return 0;
}

/*
 * Added tokens: CONTROL special, USER_DEFINED plain; the unknown token is special too. buf is
 * scratch of at least the longest token's length (the vocabulary loop's buffer).
 */
static void add_tokens(struct melbo_tokenizer *tok, const int32_t *types, const char **str,
                       const uint64_t *len, int32_t n, char *buf) {
    tok->added = melbo_xcalloc((size_t)n + 1, sizeof *tok->added);
    for (int32_t id = 0; id < n; id++) {
        int control = types[id] == TT_CONTROL || (types[id] == TT_UNKNOWN && id == tok->unk_id);
        if (!control && types[id] != TT_USER_DEFINED)
            continue;
        if (control && tok->model == TOK_BYTELEVEL &&
            tok_bytelevel_to_bytes(str[id], len[id], buf) < 0)
            continue; /* a mislabelled token outside the byte alphabet: transformers skips it */
        struct tok_added *a = &tok->added[tok->n_added++];
        a->id = id;
        a->content = melbo_xmalloc((size_t)len[id] + 1);
        memcpy(a->content, str[id], (size_t)len[id]);
        a->content[len[id]] = '\0';
        a->len = (size_t)len[id];
        a->special = (uint8_t)control;
    }
}

/* Vocabulary, merges and added tokens; f is open, tok zeroed with its model kind set. */
static int build(struct melbo_tokenizer *tok, const struct melbo_gguf_file *f,
                 const struct melbo_gguf_kv *tokens, struct melbo_err *err) {
    int32_t n = (int32_t)tokens->n;
    const char **str = melbo_xcalloc((size_t)n + 1, sizeof *str);
    uint64_t *len = melbo_xcalloc((size_t)n + 1, sizeof *len);
    int32_t *types = NULL;
    char *buf = NULL;
    size_t buf_cap = 0;
    int ret = melbo_gguf_strings(tokens, str, len, err);
    if (ret || (ret = read_types(f, n, &types, err)))
        goto out;
    tok->n_vocab = n;
    tok->ent = melbo_xcalloc((size_t)n, sizeof *tok->ent);
    tok_strmap_init(&tok->vocab, (uint32_t)n);
    for (int32_t id = 0; id < n; id++)
        tok_vocab_put(tok, id, str[id], (size_t)len[id], &buf, &buf_cap);
    tok_find_byte_ids(tok);
    const struct melbo_gguf_kv *mg = melbo_gguf_find_kv(f, "tokenizer.ggml.merges");
    if (mg)
        ret = read_merges(tok, f, mg, &buf, &buf_cap, err);
    else if (tok->model == TOK_BYTELEVEL)
        ret = melbo_err_set(err, MELBO_EMISSING, "%s: a gpt2 tokenizer needs tokenizer.ggml.merges",
                            f->path);
    else
        ret = score_merges(tok, f, str, len, n, err);
    if (ret)
        goto out;
    add_tokens(tok, types, str, len, n, buf);
out:
    free(buf);
    free(str);
    free(len);
    free(types);
    return ret;
}

static char *dup_token(const struct melbo_tokenizer *tok, int32_t id) {
    return id >= 0 ? melbo_xstrdup(tok->ent[id].str) : NULL;
}

/*
 * The model kind from tokenizer.ggml.model ("gpt2" or "llama", model[0..mlen)) and what follows
 * from it: the byte-level split regexes chosen by tokenizer.ggml.pre, or SentencePiece's
 * Metaspace settings; *add_bos is set to the kind's default. 0, or a negative code.
 */
static int set_model(struct melbo_tokenizer *tok, const struct melbo_gguf_file *f,
                     const char *model, size_t mlen, int *add_bos, struct melbo_err *err) {
    const char *path = f->path, *pre = NULL;
    size_t plen = 0;
    int ret, add_space = 1;
    if (mlen == 4 && !memcmp(model, "gpt2", 4)) {
        tok->model = TOK_BYTELEVEL;
        tok->dec_bytelevel = 1;
        if ((ret = melbo_gguf_get_str(f, "tokenizer.ggml.pre", &pre, &plen, err)) < 0)
            return ret;
        const struct pre *p = pre ? find_pre(pre, plen) : find_pre("default", 7);
        if (p == NULL)
            return melbo_err_set(err, MELBO_EUNSUPPORTED,
                                 "%s: pre-tokenizer \"%.*s\" (tokenizer.ggml.pre) is not supported "
                                 "(melbo knows default, gpt2, llama-bpe, qwen2, smollm, gpt-4o and "
                                 "their llama.cpp aliases)",
                                 path, (int)(plen > 64 ? 64 : plen), pre);
        tok->ignore_merges = p->ignore_merges;
        for (int i = 0; i < TOK_MAX_RE && p->re[i]; i++)
            if ((ret = tok_compile_regex(tok, p->re[i], path, err)))
                return ret;
        return 0;
    }
    if (mlen == 5 && !memcmp(model, "llama", 5)) {
        tok->model = TOK_SENTENCEPIECE;
        tok->byte_fallback = tok->fuse_unk = 1;
        tok->dec_byte_fallback = 1;
        *add_bos = 1; /* llama.cpp and transformers add BOS unless the file says otherwise */
        if ((ret = melbo_gguf_get_bool(f, "tokenizer.ggml.add_space_prefix", &add_space, err)) < 0)
            return ret;
        tok->metaspace = 1;
        tok->metaspace_split = 0;
        tok->metaspace_prepend = add_space ? 2 : 0;
        snprintf(tok->metaspace_repl, sizeof tok->metaspace_repl, "\xE2\x96\x81");
        tok->dec_strip_start = add_space ? 1 : 0;
        return 0;
    }
    return melbo_err_set(err, MELBO_EUNSUPPORTED,
                         "%s: tokenizer model \"%.*s\" (tokenizer.ggml.model) is not supported "
                         "(melbo reads gpt2 and llama)",
                         path, (int)(mlen > 64 ? 64 : mlen), model);
}

int tok_gguf_load(const char *path, struct melbo_tokenizer **out, struct melbo_err *err) {
    struct melbo_gguf_file f;
    struct melbo_tokenizer *tok = NULL;
    const char *model = NULL, *tpl = NULL;
    size_t mlen = 0, tlen = 0;
    *out = NULL;
    int ret = melbo_gguf_open(&f, path, err);
    if (ret)
        return ret;
    tok = tok_alloc();
    if ((ret = melbo_gguf_get_str(&f, "tokenizer.ggml.model", &model, &mlen, err)) < 0)
        goto fail;
    const struct melbo_gguf_kv *tokens = melbo_gguf_find_kv(&f, "tokenizer.ggml.tokens");
    if (model == NULL || tokens == NULL) {
        ret = melbo_err_set(err, MELBO_ENOENT,
                            "%s has no tokenizer (tokenizer.ggml.model and "
                            "tokenizer.ggml.tokens)",
                            path);
        goto fail;
    }
    if (tokens->type != MELBO_GGUF_ARRAY || tokens->elem != MELBO_GGUF_STRING || tokens->n == 0 ||
        tokens->n > 100000000) {
        ret = melbo_err_set(err, MELBO_EFORMAT,
                            "%s: tokenizer.ggml.tokens must be a non-empty "
                            "array of strings",
                            path);
        goto fail;
    }
    int32_t n = (int32_t)tokens->n;
    int add_bos = 0, add_eos = 0;
    if ((ret = set_model(tok, &f, model, mlen, &add_bos, err)) < 0)
        goto fail;
    int32_t bos = -1, eos = -1, unk = -1;
    if ((ret = get_id(&f, "tokenizer.ggml.bos_token_id", n, &bos, err)) < 0 ||
        (ret = get_id(&f, "tokenizer.ggml.eos_token_id", n, &eos, err)) < 0 ||
        (ret = get_id(&f, "tokenizer.ggml.unknown_token_id", n, &unk, err)) < 0 ||
        (ret = melbo_gguf_get_bool(&f, "tokenizer.ggml.add_bos_token", &add_bos, err)) < 0 ||
        (ret = melbo_gguf_get_bool(&f, "tokenizer.ggml.add_eos_token", &add_eos, err)) < 0 ||
        (ret = melbo_gguf_get_str(&f, "tokenizer.chat_template", &tpl, &tlen, err)) < 0)
        goto fail;
    tok->unk_id = tok->model == TOK_SENTENCEPIECE ? unk : -1;
    if ((ret = build(tok, &f, tokens, err)))
        goto fail;
    tok_fill_entry_bytes(tok);
    tok_finish_added(tok);
    tok->bos_token = dup_token(tok, bos);
    tok->eos_token = dup_token(tok, eos);
    tok->bos_id = bos;
    tok->eos_id = eos;
    if (add_bos && bos >= 0)
        tok->pre_ids[tok->n_pre++] = bos;
    if (add_eos && eos >= 0)
        tok->post_ids[tok->n_post++] = eos;
    if (tpl) {
        tok->chat_template = melbo_xmalloc(tlen + 1);
        memcpy(tok->chat_template, tpl, tlen);
        tok->chat_template[tlen] = '\0';
    }
    melbo_gguf_close(&f);
    *out = tok;
    return 0;
fail:
    melbo_tokenizer_free(tok);
    melbo_gguf_close(&f);
    return ret < 0 ? ret : MELBO_EFORMAT;
}
