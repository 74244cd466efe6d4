/*
 * rank/tokenizer/maps.c - the containers of the tokenizer module: the two hash maps (tok_impl.h),
 * byte string -> id for the vocabulary and the word cache and (id, id) -> merge for the BPE
 * merges, and tokenizer.h's growable list of ids (struct melbo_ids).
 *
 * Both are open-addressing tables with linear probing, grown at 50% load, never shrunk.
 * Lookups are on the encoder's hot path, so the hash reads 8 bytes at a time.
 */
#include "rank/tokenizer/tok_impl.h"

#include <stdlib.h>
#include <string.h>

#include "common/mem.h" // defines: melbo_xmalloc, melbo_xcalloc, melbo_xrealloc

uint64_t tok_hash_bytes(const char *p, size_t n) {
    uint64_t h = 0x243F6A8885A308D3ull ^ (n * 0x9E3779B97F4A7C15ull);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        h = (h ^ v) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    uint64_t v = 0;
    memcpy(&v, p, n);
    h = (h ^ v) * 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 32;
    return h;
}

static uint32_t pow2_at_least(uint64_t n) {
    uint32_t c = 16;
    while (c < n)
        c <<= 1;
    return c;
}

void tok_strmap_init(struct tok_strmap *m, uint32_t expect) {
    memset(m, 0, sizeof(*m));
    m->cap = pow2_at_least((uint64_t)expect * 2);
    m->slots = melbo_xcalloc(m->cap, sizeof(*m->slots));
    m->ent_cap = expect > 16 ? expect : 16;
    m->ent = melbo_xmalloc(m->ent_cap * sizeof(*m->ent));
    m->arena_cap = (size_t)m->ent_cap * 8;
    m->arena = melbo_xmalloc(m->arena_cap);
}

void tok_strmap_free(struct tok_strmap *m) {
    free(m->slots);
    free(m->ent);
    free(m->arena);
    memset(m, 0, sizeof(*m));
}

static void strmap_grow(struct tok_strmap *m) {
    free(m->slots);
    m->cap *= 2;
    m->slots = melbo_xcalloc(m->cap, sizeof(*m->slots));
    uint32_t mask = m->cap - 1;
    for (uint32_t k = 0; k < m->n; k++) {
        uint32_t i = (uint32_t)m->ent[k].hash & mask;
        while (m->slots[i])
            i = (i + 1) & mask;
        m->slots[i] = k + 1;
    }
}

int32_t tok_strmap_get(const struct tok_strmap *m, const char *key, size_t len) {
    uint64_t h = tok_hash_bytes(key, len);
    uint32_t mask = m->cap - 1, i = (uint32_t)h & mask;
    for (;;) {
        uint32_t s = m->slots[i];
        if (!s)
            return -1;
        const struct tok_strent *e = &m->ent[s - 1];
        if (e->hash == h && e->len == len && memcmp(m->arena + e->off, key, len) == 0)
            return e->val;
        i = (i + 1) & mask;
    }
}

void tok_strmap_put(struct tok_strmap *m, const char *key, size_t len, int32_t val) {
    uint64_t h = tok_hash_bytes(key, len);
    uint32_t mask = m->cap - 1, i = (uint32_t)h & mask;
    for (;;) {
        uint32_t s = m->slots[i];
        if (!s)
            break;
        struct tok_strent *e = &m->ent[s - 1];
        if (e->hash == h && e->len == len && memcmp(m->arena + e->off, key, len) == 0) {
            e->val = val;
            return;
        }
        i = (i + 1) & mask;
    }
    if (m->n == m->ent_cap) {
        m->ent_cap *= 2;
        m->ent = melbo_xrealloc(m->ent, m->ent_cap * sizeof(*m->ent));
    }
    while (m->arena_len + len > m->arena_cap) {
        m->arena_cap *= 2;
        m->arena = melbo_xrealloc(m->arena, m->arena_cap);
    }
    memcpy(m->arena + m->arena_len, key, len);
    m->ent[m->n] = (struct tok_strent){h, (uint32_t)m->arena_len, (uint32_t)len, val};
    m->arena_len += len;
    m->slots[i] = ++m->n;
    if ((uint64_t)m->n * 2 > m->cap)
        strmap_grow(m);
}

void tok_pairmap_init(struct tok_pairmap *m, uint32_t expect) {
    m->cap = pow2_at_least((uint64_t)expect * 2 + 16);
    m->n = 0;
    m->ent = melbo_xmalloc(m->cap * sizeof(*m->ent));
    memset(m->ent, 0xff, m->cap * sizeof(*m->ent));
}

void tok_pairmap_free(struct tok_pairmap *m) {
    free(m->ent);
    memset(m, 0, sizeof(*m));
}

static void pairmap_insert(struct tok_pairmap *m, uint64_t key, uint32_t rank, int32_t id) {
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    uint32_t mask = m->cap - 1, i = (uint32_t)(h >> 32) & mask;
    while (m->ent[i].key != UINT64_MAX) {
        if (m->ent[i].key == key)
            return;
        i = (i + 1) & mask;
    }
    m->ent[i] = (struct tok_pairent){key, rank, id};
    m->n++;
}

void tok_pairmap_put(struct tok_pairmap *m, int32_t a, int32_t b, uint32_t rank, int32_t id) {
    if ((uint64_t)(m->n + 1) * 2 > m->cap) {
        struct tok_pairent *old = m->ent;
        uint32_t old_cap = m->cap;
        m->cap *= 2;
        m->n = 0;
        m->ent = melbo_xmalloc(m->cap * sizeof(*m->ent));
        memset(m->ent, 0xff, m->cap * sizeof(*m->ent));
        for (uint32_t k = 0; k < old_cap; k++)
            if (old[k].key != UINT64_MAX)
                pairmap_insert(m, old[k].key, old[k].rank, old[k].id);
        free(old);
    }
    pairmap_insert(m, ((uint64_t)(uint32_t)a << 32) | (uint32_t)b, rank, id);
}

/* ==== struct melbo_ids ===================================================================== */

void melbo_ids_push(struct melbo_ids *v, int32_t id) {
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 64;
        v->ids = melbo_xrealloc(v->ids, v->cap * sizeof(*v->ids));
    }
    v->ids[v->n++] = id;
}

void melbo_ids_free(struct melbo_ids *v) {
    free(v->ids);
    memset(v, 0, sizeof(*v));
}
