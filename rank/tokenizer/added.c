/*
 * rank/tokenizer/added.c - finding added and special tokens ("<|im_end|>", "<s>") in text.
 *
 * HF matches them with an Aho-Corasick automaton in leftmost-longest mode before any
 * normalisation (tokenizers/src/tokenizer/added_vocabulary.rs, find_matches): the match that
 * starts first wins, then the longest; the scan resumes after the match. Flags: single_word
 * drops a match glued to word characters, lstrip/rstrip widen the match over neighbouring
 * whitespace. Added tokens are few and rarely start at a given byte, so a first-byte index
 * with a memcmp per candidate is as fast as the automaton here.
 */
#include "rank/tokenizer/tok_impl.h"

#include <stdlib.h>
#include <string.h>

#include "common/mem.h" // defines: melbo_xmalloc

static int cmp_added(const void *a, const void *b) {
    const struct tok_added *x = *(struct tok_added *const *)a, *y = *(struct tok_added *const *)b;
    unsigned char cx = (unsigned char)x->content[0], cy = (unsigned char)y->content[0];
    if (cx != cy)
        return cx < cy ? -1 : 1;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;   // longest first
    return x->id < y->id ? -1 : x->id > y->id;
}

void tok_matcher_build(struct tok_matcher *m, struct tok_added *added, uint32_t n,
                       int normalized) {
    memset(m, 0, sizeof(*m));
    m->tok = melbo_xmalloc((n + 1) * sizeof(*m->tok));
    for (uint32_t i = 0; i < n; i++)
        if (added[i].len > 0 && !!added[i].normalized == !!normalized)
            m->tok[m->n++] = &added[i];
    qsort(m->tok, m->n, sizeof(*m->tok), cmp_added);
    uint32_t k = 0;
    for (int b = 0; b <= 256; b++) {
        while (k < m->n && (unsigned char)m->tok[k]->content[0] < b)
            k++;
        m->first[b] = k;
    }
}

void tok_matcher_free(struct tok_matcher *m) {
    free(m->tok);
    memset(m, 0, sizeof(*m));
}

/* Rust char::is_whitespace for the code point starting at s[i] (ASCII and common cases). */
static size_t ws_len_at(const char *s, size_t n, size_t i) {
    unsigned char c = (unsigned char)s[i];
    if (c == ' ' || (c >= '\t' && c <= '\r'))
        return 1;
    if (c < 0x80)
        return 0;
    uint32_t cp;
    int k = tok_utf8_next((const unsigned char *)s + i, n - i, &cp);
    if (k <= 0)
        return 0;
    if (cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
        cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000)
        return (size_t)k;
    return 0;
}

/* Length of the whitespace code point that ends at s[i) (0 if none). */
static size_t ws_len_before(const char *s, size_t i) {
    size_t k = 1;
    while (k <= 4 && k <= i && ((unsigned char)s[i - k] & 0xC0) == 0x80)
        k++;
    if (k > i)
        return 0;
    size_t l = ws_len_at(s, i, i - k);
    return l == k ? k : 0;
}

/* Word characters for single_word: alphanumerics and '_' (ASCII and any non-ASCII letter). */
static int is_word_byte_at(const char *s, size_t n, size_t i) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x80)
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
               c == '_';
    return ws_len_at(s, n, i) == 0;
}

int tok_matcher_find(const struct tok_matcher *m, const char *s, size_t n, size_t from,
                     size_t floor, unsigned flags, size_t *start, size_t *end, size_t *mend,
                     int32_t *id) {
    if (m->n == 0)
        return 0;
    for (size_t i = from; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        uint32_t lo = m->first[c], hi = m->first[c + 1];
        if (lo == hi)
            continue;
        for (uint32_t k = lo; k < hi; k++) {
            const struct tok_added *t = m->tok[k];
            if (t->len > n - i || memcmp(s + i, t->content, t->len) != 0)
                continue;
            if (t->special && (flags & MELBO_TOK_SPLIT_SPECIAL))
                continue;
            size_t st = i, en = i + t->len;
            if (t->single_word) {
                int before = 0;
                if (st > 0) {
                    size_t p = st - 1;
                    while (p > 0 && ((unsigned char)s[p] & 0xC0) == 0x80)
                        p--;
                    before = is_word_byte_at(s, n, p);
                }
                int after = en < n && is_word_byte_at(s, n, en);
                if (before || after) {
                    /* HF skips this match entirely and resumes after it */
                    from = en;
                    i = en - 1;
                    goto next_pos;
                }
            }
            if (t->lstrip) {
                size_t l;
                while (st > floor && (l = ws_len_before(s, st)) > 0)
                    st -= l;
            }
            *mend = en;
            if (t->rstrip) {
                size_t l;
                while (en < n && (l = ws_len_at(s, n, en)) > 0)
                    en += l;
            }
            *start = st;
            *end = en;
            *id = t->id;
            return 1;
        }
    next_pos:;
    }
    return 0;
}
