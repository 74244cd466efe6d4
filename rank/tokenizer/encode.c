/*
 * rank/tokenizer/encode.c - the encoding pipeline of melbo_tokenizer_encode, in HF's order
 * (tokenizers/src/tokenizer/mod.rs, encode_single_sequence):
 *
 *   1. added tokens with normalized=false are matched in the raw text (added.c);
 *   2. each stretch of text between them is normalised (NFC etc. via utf8proc, Prepend,
 *      Replace), then added tokens with normalized=true are matched in it;
 *   3. each remaining stretch is pre-tokenized: Metaspace, or the Split/ByteLevel regexes
 *      (PCRE2, JIT-compiled; every match and every gap between matches is a pre-token);
 *   4. each pre-token goes through the BPE model (bpe.c);
 *   5. with MELBO_TOK_ADD_SPECIAL the post-processor's ids (BOS) go around the result.
 */
#include "rank/tokenizer/tok_impl.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "common/mem.h" // defines: melbo_xmalloc

/* A byte string that may own its memory. */
struct span {
    const char *p;
    size_t n;
    char *own;
};

static void span_set_owned(struct span *s, char *buf, size_t n) {
    free(s->own);
    s->own = buf;
    s->p = buf;
    s->n = n;
}

/* ---- normalisation ------------------------------------------------------------------------ */

static int needs_unicode_norm(enum tok_norm form, const char *s, size_t n) {
    unsigned char lim = form == TOK_NORM_NFC ? 0xCC : 0x80; // below U+0300 NFC is the identity
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= lim)
            return 1;
    return 0;
}

static void unicode_norm(enum tok_norm form, struct span *s) {
    if (!needs_unicode_norm(form, s->p, s->n))
        return;
    int opt = UTF8PROC_STABLE;
    opt |= form == TOK_NORM_NFC || form == TOK_NORM_NFKC ? UTF8PROC_COMPOSE : UTF8PROC_DECOMPOSE;
    if (form == TOK_NORM_NFKC || form == TOK_NORM_NFKD)
        opt |= UTF8PROC_COMPAT;
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s->p, (utf8proc_ssize_t)s->n,
                                      &dst, (utf8proc_option_t)opt);
    if (r < 0) { // cannot happen on validated UTF-8; leave the text as it is
        free(dst);
        return;
    }
    span_set_owned(s, (char *)dst, (size_t)r);
}

static void replace_all(struct span *s, const char *from, const char *to) {
    size_t lf = strlen(from), lt = strlen(to), count = 0;
    for (size_t i = 0; i + lf <= s->n;) {
        if (!memcmp(s->p + i, from, lf)) {
            count++;
            i += lf;
        } else {
            i++;
        }
    }
    if (!count)
        return;
    char *buf = melbo_xmalloc(s->n + count * lt + 1), *o = buf;
    for (size_t i = 0; i < s->n;) {
        if (i + lf <= s->n && !memcmp(s->p + i, from, lf)) {
            memcpy(o, to, lt);
            o += lt;
            i += lf;
        } else {
            *o++ = s->p[i++];
        }
    }
    span_set_owned(s, buf, (size_t)(o - buf));
}

static void prepend(struct span *s, const char *pre) {
    size_t lp = strlen(pre);
    char *buf = melbo_xmalloc(s->n + lp + 1);
    memcpy(buf, pre, lp);
    memcpy(buf + lp, s->p, s->n);
    span_set_owned(s, buf, s->n + lp);
}

static void normalize(const struct melbo_tokenizer *tok, struct span *s) {
    for (int i = 0; i < tok->n_norm_ops && s->n > 0; i++) {
        if (tok->norm_ops[i] == 1)
            unicode_norm(tok->norm_form, s);
        else if (tok->norm_ops[i] == 2)
            prepend(s, tok->prepend);
        else
            replace_all(s, tok->repl_from, tok->repl_to);
    }
}

/* ---- pre-tokenization ---------------------------------------------------------------------- */

static void split_regex(struct melbo_tokenizer *tok, int level, const char *s, size_t n,
                        struct melbo_ids *out) {
    if (level == tok->n_re) {
        tok_bpe_word(tok, s, n, out);
        return;
    }
    const pcre2_code *re = tok->re[level];
    size_t pos = 0, last = 0;
    while (pos < n) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, tok->md, NULL);
        if (rc < 0)
            break;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(tok->md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) { // an empty match: step over one character
            pos = ms + 1;
            while (pos < n && ((unsigned char)s[pos] & 0xC0) == 0x80)
                pos++;
            continue;
        }
        if (ms > last)
            split_regex(tok, level + 1, s + last, ms - last, out);
        split_regex(tok, level + 1, s + ms, me - ms, out);
        last = pos = me;
    }
    if (last < n)
        split_regex(tok, level + 1, s + last, n - last, out);
}

static void metaspace(struct melbo_tokenizer *tok, struct span *s, int first,
                      struct melbo_ids *out) {
    const char *rep = tok->metaspace_repl;
    size_t lr = strlen(rep);
    replace_all(s, " ", rep);
    int pre = tok->metaspace_prepend == 1 || (tok->metaspace_prepend == 2 && first);
    if (pre && !(s->n >= lr && !memcmp(s->p, rep, lr)))
        prepend(s, rep);
    if (!tok->metaspace_split) {
        tok_bpe_word(tok, s->p, s->n, out);
        return;
    }
    size_t start = 0;
    for (size_t i = lr; i + lr <= s->n; i++) {
        if (!memcmp(s->p + i, rep, lr)) {
            tok_bpe_word(tok, s->p + start, i - start, out);
            start = i;
        }
    }
    tok_bpe_word(tok, s->p + start, s->n - start, out);
}

static void pretokenize(struct melbo_tokenizer *tok, const char *p, size_t n, int first,
                        struct melbo_ids *out) {
    if (n == 0)
        return;
    if (tok->metaspace) {
        struct span s = {p, n, NULL};
        metaspace(tok, &s, first, out);
        free(s.own);
        return;
    }
    if (tok->bytelevel_prefix_space && p[0] != ' ') {
        struct span s = {p, n, NULL};
        prepend(&s, " ");
        split_regex(tok, 0, s.p, s.n, out);
        free(s.own);
        return;
    }
    split_regex(tok, 0, p, n, out);
}

/* ---- segments ------------------------------------------------------------------------------ */

/* Normalises one stretch between raw-matched added tokens and encodes it. */
static void encode_segment(struct melbo_tokenizer *tok, const char *p, size_t n, int first,
                           unsigned flags, struct melbo_ids *out) {
    struct span s = {p, n, NULL};
    normalize(tok, &s);
    size_t pos = 0, floor = 0;
    for (;;) {
        size_t st = s.n, en = s.n, mend;
        int32_t id = -1;
        int found = tok_matcher_find(&tok->match_norm, s.p, s.n, pos, floor, flags, &st, &en,
                                     &mend, &id);
        if (!found)
            st = s.n;
        pretokenize(tok, s.p + floor, st - floor, first && floor == 0, out);
        if (!found)
            break;
        melbo_ids_push(out, id);
        floor = pos = en;
    }
    free(s.own);
}

int melbo_tokenizer_encode(struct melbo_tokenizer *tok, const char *text, size_t len,
                           unsigned flags, struct melbo_ids *out, struct melbo_err *err) {
    size_t bad = tok_utf8_check(text, len);
    if (bad < len)
        return melbo_err_set(err, MELBO_EINVAL,
                             "text is not valid UTF-8: bad byte 0x%02X at byte offset %zu",
                             (unsigned char)text[bad], bad);
    if (flags & MELBO_TOK_ADD_SPECIAL)
        for (int i = 0; i < tok->n_pre; i++)
            melbo_ids_push(out, tok->pre_ids[i]);
    size_t pos = 0, floor = 0;
    for (;;) {
        size_t st = len, en = len, mend;
        int32_t id = -1;
        int found = tok_matcher_find(&tok->match_raw, text, len, pos, floor, flags, &st, &en,
                                     &mend, &id);
        if (!found)
            st = len;
        if (st > floor)
            encode_segment(tok, text + floor, st - floor, floor == 0, flags, out);
        if (!found)
            break;
        melbo_ids_push(out, id);
        floor = pos = en;
    }
    if (flags & MELBO_TOK_ADD_SPECIAL)
        for (int i = 0; i < tok->n_post; i++)
            melbo_ids_push(out, tok->post_ids[i]);
    return 0;
}
