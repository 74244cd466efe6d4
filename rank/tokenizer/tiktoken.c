/*
 * rank/tokenizer/tiktoken.c - Qwen-1's vocabulary: qwen.tiktoken (one "base64-token rank"
 * line per token), its split regex and its special tokens, as Qwen-1's tokenization_qwen.py
 * builds a tiktoken Encoding.
 *
 * tiktoken merges, inside each pre-token, the adjacent pair of parts whose concatenation has
 * the lowest rank (leftmost on ties), after a whole-piece lookup. That is the BPE loop of
 * bpe.c with ignore_merges and a merge table holding, for every token, each split of it
 * into two tokens, ranked by the token's own rank (= its id). Qwen-1 also NFC-normalises
 * the text first and matches its special tokens anywhere (allowed_special="all").
 */
#include "rank/tokenizer/loaders.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h" // defines: melbo_xmalloc, melbo_xcalloc, melbo_xstrdup

/* Qwen-1 (tokenization_qwen.py): PAT_STR, SPECIAL_START_ID and the special token names. */
#define QWEN_PAT                                                                                   \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"      \
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define QWEN_SPECIAL_START 151643
#define QWEN_N_EXTRA       205

static int b64_val(int c) {
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Decodes n base64 characters into out; returns the byte count or -1. */
static long b64_decode(const char *s, size_t n, char *out) {
    long k = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '=')
            break;
        int v = b64_val((unsigned char)s[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[k++] = (char)((acc >> bits) & 0xFF);
        }
    }
    return k;
}

/* The lines of a qwen.tiktoken file: each token's decoded bytes (back to back in raw) and rank. */
struct ranks {
    struct line {
        uint32_t off, len;
        int32_t rank;
    } * lines; // [n]
    size_t n;
    char *raw; // decoded tokens, back to back
    int32_t max_rank;
};

/*
 * Pass 1: decodes every "<base64 token> <rank>" line of text[0..len) into r (allocated here;
 * the caller frees r->lines and r->raw even on failure) and tok->vocab, then finds the id of
 * every byte. 0, or MELBO_EFORMAT naming the line or the byte without a rank.
 */
static int read_ranks(struct melbo_tokenizer *tok, const char *path, const char *text, size_t len,
                      struct ranks *r, struct melbo_err *err) {
    size_t n_lines = 0;
    for (size_t i = 0; i < len; i++)
        n_lines += text[i] == '\n';
    tok_strmap_init(&tok->vocab, (uint32_t)n_lines + 1);
    r->lines = melbo_xmalloc((n_lines + 1) * sizeof(*r->lines));
    r->raw = melbo_xmalloc(len + 1);
    r->n = 0;
    r->max_rank = -1;
    size_t pos = 0, lineno = 0, raw_len = 0;
    while (pos < len) {
        size_t end = pos;
        while (end < len && text[end] != '\n')
            end++;
        lineno++;
        size_t l = end - pos;
        if (l && text[pos + l - 1] == '\r')
            l--;
        if (l > 0) {
            const char *sp = memchr(text + pos, ' ', l);
            char *endp;
            long rank = sp ? strtol(sp + 1, &endp, 10) : -1;
            long k =
                sp ? b64_decode(text + pos, (size_t)(sp - (text + pos)), r->raw + raw_len) : -1;
            if (!sp || k <= 0 || rank < 0 || rank > 10000000 || endp != text + pos + l)
                return melbo_err_set(err, MELBO_EFORMAT,
                                     "%s:%zu: expected \"<base64 token> <rank>\"", path, lineno);
            r->lines[r->n++] = (struct line){(uint32_t)raw_len, (uint32_t)k, (int32_t)rank};
            tok_strmap_put(&tok->vocab, r->raw + raw_len, (size_t)k, (int32_t)rank);
            raw_len += (size_t)k;
            if (rank > r->max_rank)
                r->max_rank = (int32_t)rank;
        }
        pos = end + 1;
    }
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        tok->byte_id[b] = tok_strmap_get(&tok->vocab, &c, 1);
        if (tok->byte_id[b] < 0)
            return melbo_err_set(err, MELBO_EFORMAT, "%s: byte 0x%02X has no rank", path, b);
    }
    return 0;
}

/* Entries: the ranks, then Qwen-1's special tokens (added, special) from SPECIAL_START. */
static void fill_entries(struct melbo_tokenizer *tok, const struct ranks *r) {
    int32_t n_special = 3 + QWEN_N_EXTRA;
    int32_t start = r->max_rank + 1 > QWEN_SPECIAL_START ? r->max_rank + 1 : QWEN_SPECIAL_START;
    tok->n_vocab = start + n_special;
    tok->ent = melbo_xcalloc((size_t)tok->n_vocab, sizeof(*tok->ent));
    for (size_t i = 0; i < r->n; i++) {
        struct tok_entry *e = &tok->ent[r->lines[i].rank];
        free(e->str);
        e->str = melbo_xmalloc(r->lines[i].len + 1);
        memcpy(e->str, r->raw + r->lines[i].off, r->lines[i].len);
        e->str[r->lines[i].len] = '\0';
        e->str_len = e->nbytes = r->lines[i].len;
        e->bytes = e->str;
        e->byte = -1;
    }
    tok->added = melbo_xcalloc((size_t)n_special, sizeof(*tok->added));
    for (int32_t i = 0; i < n_special; i++) {
        char name[32];
        if (i < 3)
            snprintf(name, sizeof(name), "%s",
                     i == 0   ? "<|endoftext|>"
                     : i == 1 ? "<|im_start|>"
                              : "<|im_end|>");
        else
            snprintf(name, sizeof(name), "<|extra_%d|>", i - 3);
        struct tok_added *a = &tok->added[tok->n_added++];
        a->id = start + i;
        a->content = melbo_xstrdup(name);
        a->len = strlen(name);
        a->special = 1;
        struct tok_entry *e = &tok->ent[a->id];
        e->str = melbo_xstrdup(name);
        e->str_len = e->nbytes = (uint32_t)a->len;
        e->bytes = e->str;
        e->byte = -1;
    }
}

/* Merges: every split of every token into two tokens, ranked by the token. */
static void build_merges(struct melbo_tokenizer *tok, const struct ranks *r) {
    tok_pairmap_init(&tok->merges, (uint32_t)r->n * 4);
    for (size_t i = 0; i < r->n; i++) {
        const char *t = r->raw + r->lines[i].off;
        for (uint32_t k = 1; k < r->lines[i].len; k++) {
            int32_t a = tok_strmap_get(&tok->vocab, t, k);
            int32_t b = a >= 0 ? tok_strmap_get(&tok->vocab, t + k, r->lines[i].len - k) : -1;
            if (b >= 0)
                tok_pairmap_put(&tok->merges, a, b, (uint32_t)r->lines[i].rank, r->lines[i].rank);
        }
    }
}

int tok_tiktoken_load(struct melbo_tokenizer *tok, const char *path, const char *text, size_t len,
                      struct melbo_err *err) {
    struct ranks r = {0};
    tok->model = TOK_TIKTOKEN;
    tok->ignore_merges = 1;
    tok->norm_form = TOK_NORM_NFC;
    tok->norm_ops[tok->n_norm_ops++] = 1;
    int ret = read_ranks(tok, path, text, len, &r, err);
    if (ret)
        goto out;
    fill_entries(tok, &r);
    build_merges(tok, &r);
    if ((ret = tok_compile_regex(tok, QWEN_PAT, path, err)))
        goto out;
    tok->eos_token = melbo_xstrdup("<|endoftext|>");
    tok_finish_added(tok);
out:
    free(r.lines);
    free(r.raw);
    return ret;
}
