/*
 * rank/tokenizer/tok_impl.h - the inside of struct melbo_tokenizer, shared by the files of
 * the tokenizer module only, and the lowest level of the module: the containers (maps.c), UTF-8
 * and the byte table (utf8.c), the BPE word loop (bpe.c) and the added-token matchers
 * (added.c). The loaders' building blocks are in vocab.h, the loaders in loaders.h.
 *
 * Representation: every token id has an entry with its string as written in tokenizer.json
 * (for display and lookup by name) and the bytes it decodes to. The BPE model works on ids:
 * a byte-string -> id map (for byte-level models the keys are the raw bytes, not the
 * "Ġ"-mapped characters, so pre-tokens are looked up without translation) and a
 * (left id, right id) -> (rank, merged id) map.
 */
#ifndef MELBO_RANK_TOKENIZER_TOK_IMPL_H
#define MELBO_RANK_TOKENIZER_TOK_IMPL_H

#include <stddef.h>
#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "rank/tokenizer/tokenizer.h"

/* ---- hash maps (maps.c) ------------------------------------------------------------------ */

/* Byte string -> int32. Keys are copied into an arena owned by the map. */
struct tok_strmap {
    uint32_t *slots; // entry index + 1, 0 = empty; cap slots (power of two)
    uint32_t cap;
    struct tok_strent {
        uint64_t hash;
        uint32_t off, len;
        int32_t val;
    } * ent;
    uint32_t n, ent_cap;
    char *arena;
    size_t arena_len, arena_cap;
};

void tok_strmap_init(struct tok_strmap *m, uint32_t expect);
void tok_strmap_free(struct tok_strmap *m);
/* Inserts or replaces key -> val. */
void tok_strmap_put(struct tok_strmap *m, const char *key, size_t len, int32_t val);
/* The value for key, or -1. */
int32_t tok_strmap_get(const struct tok_strmap *m, const char *key, size_t len);
uint64_t tok_hash_bytes(const char *p, size_t n);

/* (a, b) -> (rank, new id): the BPE merges. */
struct tok_pairmap {
    struct tok_pairent {
        uint64_t key; // (a << 32) | b, UINT64_MAX = empty
        uint32_t rank;
        int32_t id;
    } * ent;
    uint32_t cap, n;
};

void tok_pairmap_init(struct tok_pairmap *m, uint32_t expect);
void tok_pairmap_free(struct tok_pairmap *m);
/* Inserts (a, b) unless present (the first, lowest-ranked merge wins, as in HF). */
void tok_pairmap_put(struct tok_pairmap *m, int32_t a, int32_t b, uint32_t rank, int32_t id);

static inline const struct tok_pairent *tok_pairmap_get(const struct tok_pairmap *m, int32_t a,
                                                        int32_t b) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    uint32_t mask = m->cap - 1, i = (uint32_t)(h >> 32) & mask;
    for (;;) {
        const struct tok_pairent *e = &m->ent[i];
        if (e->key == key)
            return e;
        if (e->key == UINT64_MAX)
            return NULL;
        i = (i + 1) & mask;
    }
}

/* ---- the word cache (bpe.c) --------------------------------------------------------------- */

/* Pre-token bytes -> ids, for pre-tokens up to TOK_CACHE_MAX_KEY bytes; cleared when full. */
#define TOK_CACHE_MAX_KEY 64
struct tok_cache {
    struct tok_strmap map; // key -> offset into ids
    int32_t *ids;          // [count, id, id, ...] records
    size_t n_ids, cap_ids;
};

/* ---- the tokenizer ------------------------------------------------------------------------ */

#define TOK_MAX_RE 4 /* llama.cpp's "default" BPE pre-tokenizer chains four regexes */

enum tok_model {
    TOK_BYTELEVEL,     // byte-level BPE (vocab keys are raw bytes)
    TOK_SENTENCEPIECE, // BPE over characters with byte fallback (vocab keys are UTF-8)
    TOK_TIKTOKEN,      // tiktoken ranks (byte-level, ignore_merges)
};

enum tok_norm { TOK_NORM_NONE, TOK_NORM_NFC, TOK_NORM_NFD, TOK_NORM_NFKC, TOK_NORM_NFKD };

struct tok_entry {
    char *str; // as in tokenizer.json (NUL-terminated); NULL for a hole
    uint32_t str_len;
    uint32_t nbytes; // decoded bytes
    char *bytes;     // what it decodes to (points into str when identical)
    uint8_t special; // added token with special=true
    uint8_t added;   // any added token
    int16_t byte;    // 0..255 for a byte-fallback token <0xNN>, else -1
};

struct tok_added {
    int32_t id;
    char *content;
    size_t len;
    uint8_t special, lstrip, rstrip, single_word, normalized;
};

/* Post-normalisation pieces of one added-token matcher pass. */
struct tok_matcher {
    struct tok_added **tok; // sorted by first byte, longest first
    uint32_t n;
    uint32_t first[257]; // tok[first[b] .. first[b+1]) start with byte b
};

struct melbo_tokenizer {
    enum tok_model model;
    struct tok_entry *ent; // [n_vocab]
    int32_t n_vocab;
    struct tok_strmap vocab; // model vocabulary: bytes (byte-level) or UTF-8 -> id
    struct tok_pairmap merges;
    int32_t byte_id[256]; // byte-level: the id of each byte; SP: <0xNN>, or -1
    int ignore_merges, byte_fallback, fuse_unk;
    int32_t unk_id;

    /* added tokens */
    struct tok_added *added;
    uint32_t n_added;
    struct tok_matcher match_raw;  // normalized=false tokens, matched in the raw text
    struct tok_matcher match_norm; // normalized=true tokens, matched after normalisation

    /* normalizer: a unicode form, then Prepend, then Replace (the order of the sequence) */
    int norm_ops[4]; // up to 4 steps: 1 = unicode form, 2 = prepend, 3 = replace
    int n_norm_ops;
    enum tok_norm norm_form;
    char *prepend;             // Prepend normalizer string
    char *repl_from, *repl_to; // Replace normalizer (String pattern)

    /* pre-tokenizer */
    pcre2_code *re[TOK_MAX_RE]; // regex splits applied in order (Isolated behaviour)
    int n_re;
    int bytelevel_prefix_space; // ByteLevel add_prefix_space
    int metaspace;              // Metaspace pre-tokenizer present
    int metaspace_split;
    int metaspace_prepend; // 0 never, 1 always, 2 first
    char metaspace_repl[8];

    /* decoder */
    int dec_bytelevel;       // bytes via the byte-level table, then lossy UTF-8
    int dec_byte_fallback;   // <0xNN> runs to bytes
    int dec_strip_start;     // strip up to this many leading spaces of the whole text
    int dec_metaspace_first; // strip one leading space of the first token

    /* post-processor template: ids before and after the sequence */
    int32_t pre_ids[4], post_ids[4];
    int n_pre, n_post;

    /* config */
    char *bos_token, *eos_token, *chat_template;
    int32_t bos_id, eos_id;

    /* word cache and scratch, mutated by encode */
    struct tok_cache cache;
    pcre2_match_data *md;
    char *scratch;
    size_t scratch_cap;
};

/* ---- shared helpers ------------------------------------------------------------------------- */

/* utf8.c: the GPT-2 byte <-> character table (byte b is the code point tok_byte_to_cp[b]). */
extern const uint16_t tok_byte_to_cp[256];
/* The byte for a code point of the table, or -1. */
int tok_cp_to_byte(uint32_t cp);
/*
 * Decodes one UTF-8 sequence at s (n bytes available). Returns its length (1..4) and sets
 * *cp; returns 0 if s holds a valid but incomplete prefix; returns -k if the first k bytes
 * are a maximal invalid subpart (replace them with one U+FFFD, as Rust and Python do).
 */
int tok_utf8_next(const unsigned char *s, size_t n, uint32_t *cp);
/* Offset of the first invalid byte of s, or n if s is valid UTF-8. */
size_t tok_utf8_check(const char *s, size_t n);
/* Appends the UTF-8 encoding of cp to buf (at most 4 bytes); returns the count. */
int tok_utf8_put(char *buf, uint32_t cp);
/*
 * Appends s[0..n) to the growable, NUL-terminated buffer *buf (length *len, capacity *cap; grown
 * with melbo_xrealloc, the caller owns and frees it). The _lossy form replaces invalid UTF-8
 * sequences with U+FFFD.
 */
void tok_buf_put_lossy(char **buf, size_t *len, size_t *cap, const char *s, size_t n);
void tok_buf_put(char **buf, size_t *len, size_t *cap, const char *s, size_t n);

/* bpe.c: tokenizes one pre-token (bytes after normalisation) and appends its ids. */
void tok_bpe_word(struct melbo_tokenizer *tok, const char *w, size_t n, struct melbo_ids *out);
/* Frees the word cache and zeroes it (safe on a zeroed cache). */
void tok_cache_free(struct tok_cache *c);

/*
 * added.c: a matcher over the added tokens whose normalized flag equals `normalized`. It points
 * into added[0..n), which must outlive it; tok_matcher_free frees only the matcher's own index.
 */
void tok_matcher_build(struct tok_matcher *m, struct tok_added *added, uint32_t n, int normalized);
void tok_matcher_free(struct tok_matcher *m);
/*
 * Finds the next added token in s[from..n) (leftmost, then longest; single_word honoured).
 * Returns 1 and sets [*start, *end) to the span to replace (lstrip/rstrip whitespace
 * included, never before `floor`), *mend to the end of the content match, *id; 0 if none.
 */
int tok_matcher_find(const struct tok_matcher *m, const char *s, size_t n, size_t from,
                     size_t floor, unsigned flags, size_t *start, size_t *end, size_t *mend,
                     int32_t *id);

#endif
