/*
 * rank/tokenizer/bpe.c - the BPE model: one pre-token in, its ids out.
 *
 * The word starts as one symbol per byte (byte-level, tiktoken) or per character
 * (SentencePiece; a character missing from the vocabulary becomes its <0xNN> byte tokens
 * with byte_fallback, else the unknown token). Then the adjacent pair with the lowest merge
 * rank is merged, the leftmost on ties, until no pair has a merge - HF's Word::merge_all
 * (tokenizers/src/models/bpe/word.rs) without dropout. Short words use a linear scan over an
 * array; long ones (SentencePiece models see whole sentences) a binary heap with lazy
 * deletion, as HF does. A stale heap entry is recognised by its merged id: the merged token
 * is determined by the pair's bytes, so an entry whose pair changed no longer matches.
 *
 * Results for pre-tokens up to TOK_CACHE_MAX_KEY bytes are cached (HF caches words too);
 * the cache is cleared when it holds too many words.
 */
#include "rank/tokenizer/tok_impl.h"

#include <stdlib.h>
#include <string.h>

#include "common/mem.h" // defines: melbo_xmalloc, melbo_xrealloc

#define LINEAR_MAX 64          // symbols up to which the O(n^2) scan beats the heap
#define CACHE_MAX_WORDS 200000 // cleared beyond this

/* ---- cache -------------------------------------------------------------------------------- */

void tok_cache_free(struct tok_cache *c) {
    if (c->map.slots)
        tok_strmap_free(&c->map);
    free(c->ids);
    memset(c, 0, sizeof(*c));
}

static void cache_put(struct tok_cache *c, const char *w, size_t n, const int32_t *ids,
                      size_t k) {
    if (!c->map.slots || c->map.n >= CACHE_MAX_WORDS) {
        tok_cache_free(c);
        tok_strmap_init(&c->map, 4096);
    }
    if (c->n_ids + k + 1 > c->cap_ids) {
        c->cap_ids = (c->n_ids + k + 1) * 2 + 1024;
        c->ids = melbo_xrealloc(c->ids, c->cap_ids * sizeof(*c->ids));
    }
    tok_strmap_put(&c->map, w, n, (int32_t)c->n_ids);
    c->ids[c->n_ids++] = (int32_t)k;
    memcpy(c->ids + c->n_ids, ids, k * sizeof(*ids));
    c->n_ids += k;
}

/* ---- symbols ------------------------------------------------------------------------------ */

/* Appends the initial symbols of w to syms (grown as needed); returns the count. */
static size_t initial_symbols(const struct melbo_tokenizer *tok, const char *w, size_t n,
                              int32_t **syms, size_t *cap) {
    size_t m = 0;
    if (*cap < n) {
        *cap = n;
        *syms = melbo_xrealloc(*syms, n * sizeof(**syms));
    }
    int32_t *s = *syms;
    if (tok->model != TOK_SENTENCEPIECE) {
        for (size_t i = 0; i < n; i++) {
            int32_t id = tok->byte_id[(unsigned char)w[i]];
            s[m++] = id >= 0 ? id : tok->unk_id;
        }
        return m;
    }
    int prev_unk = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int l = tok_utf8_next((const unsigned char *)w + i, n - i, &cp);
        if (l <= 0)
            l = 1;
        int32_t id = tok_strmap_get(&tok->vocab, w + i, (size_t)l);
        if (id >= 0) {
            s[m++] = id;
            prev_unk = 0;
        } else if (tok->byte_fallback) {
            int all = 1;
            for (int k = 0; k < l; k++)
                all &= tok->byte_id[(unsigned char)w[i + k]] >= 0;
            for (int k = 0; k < l && all; k++)
                s[m++] = tok->byte_id[(unsigned char)w[i + k]];
            if (!all)
                s[m++] = tok->unk_id;
            prev_unk = 0;
        } else if (!(tok->fuse_unk && prev_unk)) {
            s[m++] = tok->unk_id;
            prev_unk = 1;
        }
        i += (size_t)l;
    }
    return m;
}

/* Merges in place with the linear scan; returns the new symbol count. */
static size_t merge_linear(const struct melbo_tokenizer *tok, int32_t *s, size_t m) {
    while (m > 1) {
        uint32_t best = UINT32_MAX;
        size_t at = 0;
        int32_t nid = -1;
        for (size_t i = 0; i + 1 < m; i++) {
            const struct tok_pairent *e = tok_pairmap_get(&tok->merges, s[i], s[i + 1]);
            if (e && e->rank < best) {
                best = e->rank;
                at = i;
                nid = e->id;
            }
        }
        if (nid < 0)
            break;
        s[at] = nid;
        memmove(s + at + 1, s + at + 2, (m - at - 2) * sizeof(*s));
        m--;
    }
    return m;
}

/* ---- heap merge for long words ------------------------------------------------------------- */

struct hnode {
    uint64_t key; // rank << 32 | pos
    int32_t id;   // merged id
};

static void heap_push(struct hnode *h, size_t *n, struct hnode x) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p].key <= x.key)
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

static struct hnode heap_pop(struct hnode *h, size_t *n) {
    struct hnode top = h[0], x = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && h[c + 1].key < h[c].key)
            c++;
        if (x.key <= h[c].key)
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
    return top;
}

static size_t merge_heap(const struct melbo_tokenizer *tok, int32_t *s, size_t m) {
    int32_t *next = melbo_xmalloc(m * sizeof(*next)), *prev = melbo_xmalloc(m * sizeof(*prev));
    uint8_t *dead = melbo_xcalloc(m, 1);
    struct hnode *h = melbo_xmalloc((2 * m + 1) * sizeof(*h));
    size_t nh = 0;
    for (size_t i = 0; i < m; i++) {
        next[i] = i + 1 < m ? (int32_t)(i + 1) : -1;
        prev[i] = (int32_t)i - 1;
        if (i + 1 < m) {
            const struct tok_pairent *e = tok_pairmap_get(&tok->merges, s[i], s[i + 1]);
            if (e)
                heap_push(h, &nh, (struct hnode){((uint64_t)e->rank << 32) | i, e->id});
        }
    }
    while (nh > 0) {
        struct hnode t = heap_pop(h, &nh);
        size_t pos = (size_t)(t.key & 0xFFFFFFFFu);
        if (dead[pos] || next[pos] < 0)
            continue;
        int32_t r = next[pos];
        const struct tok_pairent *e = tok_pairmap_get(&tok->merges, s[pos], s[r]);
        if (!e || e->id != t.id)
            continue;
        s[pos] = t.id;
        dead[r] = 1;
        next[pos] = next[r];
        if (next[r] >= 0)
            prev[next[r]] = (int32_t)pos;
        if (prev[pos] >= 0) {
            int32_t p = prev[pos];
            e = tok_pairmap_get(&tok->merges, s[p], s[pos]);
            if (e)
                heap_push(h, &nh, (struct hnode){((uint64_t)e->rank << 32) | (uint32_t)p, e->id});
        }
        if (next[pos] >= 0) {
            e = tok_pairmap_get(&tok->merges, s[pos], s[next[pos]]);
            if (e)
                heap_push(h, &nh, (struct hnode){((uint64_t)e->rank << 32) | pos, e->id});
        }
    }
    size_t k = 0;
    for (int32_t i = 0; i >= 0; i = next[i])
        s[k++] = s[i];
    free(next);
    free(prev);
    free(dead);
    free(h);
    return k;
}

/* ---- entry point -------------------------------------------------------------------------- */

void tok_bpe_word(struct melbo_tokenizer *tok, const char *w, size_t n, struct melbo_ids *out) {
    if (n == 0)
        return;
    int cacheable = n <= TOK_CACHE_MAX_KEY;
    if (cacheable && tok->cache.map.slots) {
        int32_t off = tok_strmap_get(&tok->cache.map, w, n);
        if (off >= 0) {
            const int32_t *rec = tok->cache.ids + off;
            for (int32_t i = 0; i < rec[0]; i++)
                melbo_ids_push(out, rec[1 + i]);
            return;
        }
    }
    if (tok->ignore_merges) {
        int32_t id = tok_strmap_get(&tok->vocab, w, n);
        if (id >= 0) {
            melbo_ids_push(out, id);
            return;
        }
    }
    int32_t stack[LINEAR_MAX];
    int32_t *s = NULL;
    size_t cap = 0, m;
    if (n <= LINEAR_MAX) {
        s = stack;
        cap = LINEAR_MAX;
    }
    m = initial_symbols(tok, w, n, &s, &cap);
    m = m <= LINEAR_MAX ? merge_linear(tok, s, m) : merge_heap(tok, s, m);
    for (size_t i = 0; i < m; i++)
        melbo_ids_push(out, s[i]);
    if (cacheable)
        cache_put(&tok->cache, w, n, s, m);
    if (s != stack)
        free(s);
}
