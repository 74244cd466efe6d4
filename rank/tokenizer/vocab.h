/*
 * rank/tokenizer/vocab.h - the building blocks every tokenizer loader shares (vocab.c): a new
 * tokenizer, its vocabulary entries and byte ids, the decoded bytes of each entry, split regexes
 * and the added-token matchers that finish a load.
 *
 * Layering inside rank/tokenizer/ (each level calls only the levels below it):
 *   load.c                                   which loader for which path (tokenizer.h's loading)
 *   tokenizer_json.c, tiktoken.c, gguf_vocab.c   one file format each (loaders.h)
 *   vocab.c                                  this header; also freeing and tokenizer.h's lookups
 *   maps.c, utf8.c, added.c, bpe.c           containers, UTF-8, matchers, the BPE word loop
 * A loader fills a struct melbo_tokenizer (tok_impl.h) in this order: tok_alloc, the model kind
 * and decoder flags, tok_vocab_put for every token (or tok_set_entry for tokens outside the
 * model vocabulary), tok_find_byte_ids, the merges, the added tokens, then tok_fill_entry_bytes
 * and tok_finish_added.
 */
#ifndef MELBO_RANK_TOKENIZER_VOCAB_H
#define MELBO_RANK_TOKENIZER_VOCAB_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "rank/tokenizer/tok_impl.h"

/*
 * A zeroed tokenizer with no bos, eos or unknown token (ids -1). Aborts on OOM like every
 * melbo_x* allocation; the caller owns it and frees it with melbo_tokenizer_free, which accepts
 * a tokenizer abandoned at any point of a load.
 */
struct melbo_tokenizer *tok_alloc(void);

/*
 * Converts a byte-level vocabulary string s[0..n) (GPT-2's byte alphabet) to the raw bytes it
 * stands for in buf (at least n bytes). Returns the byte count, or -1 if a character is outside
 * the byte table (then callers use the string as it is).
 */
long tok_bytelevel_to_bytes(const char *s, size_t n, char *buf);

/* The id of a token written as in the model vocabulary (byte alphabet for byte-level models),
 * or -1. */
int32_t tok_model_lookup(const struct melbo_tokenizer *tok, const char *s, size_t n);

/*
 * Sets entry id's string (and its decoded bytes, for now the same) to a copy of s[0..n),
 * freeing what the entry held. id must be below tok->n_vocab.
 */
void tok_set_entry(struct melbo_tokenizer *tok, int32_t id, const char *s, size_t n);

/*
 * Sets entry id to s[0..n) and records it in tok->vocab (as raw bytes for byte-level models).
 * *buf (capacity *buf_cap, caller-owned, grown here) is scratch space reused across calls.
 */
void tok_vocab_put(struct melbo_tokenizer *tok, int32_t id, const char *s, size_t n, char **buf,
                   size_t *buf_cap);

/* Fills tok->byte_id from tok->vocab: single bytes (byte-level) or <0xXX> tokens (byte
 * fallback); -1 where the vocabulary has none. */
void tok_find_byte_ids(struct melbo_tokenizer *tok);

/*
 * Fills each entry's decoded bytes from its string, per the decoder flags: byte-level strings
 * become their bytes, <0xNN> entries get .byte under byte fallback, and "▁" becomes a space.
 */
void tok_fill_entry_bytes(struct melbo_tokenizer *tok);

/*
 * Compiles a split regex (Oniguruma syntax as tokenizers writes it) with PCRE2 and appends it to
 * tok->re. Returns 0, or MELBO_EUNSUPPORTED with a message naming path when PCRE2 refuses the
 * pattern or tok already holds TOK_MAX_RE regexes.
 */
int tok_compile_regex(struct melbo_tokenizer *tok, const char *pattern, const char *path,
                      struct melbo_err *err);

/*
 * Finishes the parts common to every loader once tok->added is complete: marks added and
 * special entries, builds both added-token matchers and the PCRE2 match data.
 */
void tok_finish_added(struct melbo_tokenizer *tok);

#endif
