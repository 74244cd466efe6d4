/*
 * rank/tokenizer/tokenizer.h - text to token ids and back, exactly as Hugging Face does it.
 *
 * A struct melbo_tokenizer is loaded from a model directory: tokenizer.json (the HF
 * `tokenizers` serialisation) with tokenizer_config.json beside it, or Qwen-1's qwen.tiktoken.
 * Supported models (anything else is refused at load with the reason):
 *   - byte-level BPE: a Split regex pre-tokenizer followed by ByteLevel, or ByteLevel with its
 *     own GPT-2 regex (Qwen2/2.5/3, Llama-3.x, GPT-2, SmolLM), NFC normalizer, ignore_merges,
 *     merges stored as "a b" strings or as ["a", "b"] pairs;
 *   - SentencePiece-style BPE with byte_fallback, the Prepend/Replace normalizers or a
 *     Metaspace pre-tokenizer (Llama-2, Mistral);
 *   - tiktoken ranks (qwen.tiktoken: base64 token and rank per line) with Qwen-1's split regex
 *     and special tokens.
 * The pipeline is HF's: added/special tokens are matched in the raw text first (longest match,
 * honouring their lstrip/rstrip/single_word/normalized flags), the rest is normalised,
 * pre-tokenized (PCRE2 regex) and merged by the BPE model; the post-processor template (BOS)
 * is applied only when asked.
 *
 * Threading: a tokenizer is immutable after load except for its word cache, so encode must
 * not run on one tokenizer from two threads at once; decode and the lookups may.
 */
#ifndef MELBO_RANK_TOKENIZER_TOKENIZER_H
#define MELBO_RANK_TOKENIZER_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#ifdef __cplusplus
extern "C" {
#endif

struct melbo_tokenizer;

/* A growable list of token ids. Zero-initialise it ({0}); free with melbo_ids_free(). */
struct melbo_ids {
    int32_t *ids;
    size_t n, cap;
};

/* Appends one id (grows the array; aborts on OOM like every melbo_x* allocation). */
void melbo_ids_push(struct melbo_ids *v, int32_t id);
/* Frees the array and zeroes the struct (safe on a zeroed struct). */
void melbo_ids_free(struct melbo_ids *v);

/* ==== loading ============================================================================== */

/*
 * Loads the tokenizer of a model directory: dir/tokenizer.json (plus dir/tokenizer_config.json
 * for bos/eos, add_bos_token and the chat template, and dir/chat_template.jinja when the
 * config has no template), or else dir/qwen.tiktoken (Qwen-1). On success *out owns
 * everything (free with melbo_tokenizer_free) and 0 is returned; otherwise a negative code
 * with a message naming the file and the problem: MELBO_ENOENT when no tokenizer file exists,
 * MELBO_EUNSUPPORTED for a model, normalizer, pre-tokenizer or decoder type melbo does not
 * implement, MELBO_EFORMAT for malformed JSON or a merge naming an unknown token.
 */
int melbo_tokenizer_load(const char *dir, struct melbo_tokenizer **out, struct melbo_err *err);

/*
 * Like melbo_tokenizer_load but from explicit files: tokenizer_path is a tokenizer.json or a
 * *.tiktoken file; config_path (may be NULL) a tokenizer_config.json.
 */
int melbo_tokenizer_load_files(const char *tokenizer_path, const char *config_path,
                               struct melbo_tokenizer **out, struct melbo_err *err);

/* Frees everything the tokenizer owns. NULL is allowed. */
void melbo_tokenizer_free(struct melbo_tokenizer *tok);

/* ==== encoding ============================================================================= */

/* Flags for melbo_tokenizer_encode. */
enum {
    /* Apply the post-processor template (HF add_special_tokens=True): Llama's and Mistral's
     * BOS. A chat template already writes its own BOS, so rendered prompts leave this off. */
    MELBO_TOK_ADD_SPECIAL = 1u << 0,
    /* Do not match special tokens written in the text (HF split_special_tokens=True); added
     * tokens that are not special are still matched. */
    MELBO_TOK_SPLIT_SPECIAL = 1u << 1,
};

/*
 * Tokenizes len bytes of text (not necessarily NUL-terminated) and appends the ids to *out.
 * The text must be valid UTF-8: otherwise MELBO_EINVAL with the byte offset of the first bad
 * byte, and *out is left as it was. flags is a mask of MELBO_TOK_*. Not thread-safe on one
 * tokenizer (the word cache is updated).
 */
int melbo_tokenizer_encode(struct melbo_tokenizer *tok, const char *text, size_t len,
                           unsigned flags, struct melbo_ids *out, struct melbo_err *err);

/* ==== decoding ============================================================================= */

/* Flags for decoding. */
enum {
    /* Leave out special tokens (HF skip_special_tokens=True). */
    MELBO_DETOK_SKIP_SPECIAL = 1u << 0,
};

/*
 * Decodes n ids into a new NUL-terminated UTF-8 string (*out, caller frees; *len its length
 * without the terminator, len may be NULL), as HF's decoder chain does: byte-level bytes with
 * invalid sequences replaced by U+FFFD, or SentencePiece's "▁" to space with byte-fallback
 * tokens and the leading-space strip. An id outside the vocabulary is MELBO_ERANGE naming its
 * position.
 */
int melbo_tokenizer_decode(const struct melbo_tokenizer *tok, const int32_t *ids, size_t n,
                           unsigned flags, char **out, size_t *len, struct melbo_err *err);

/*
 * Streaming decode for generation: feed ids one at a time and get back the text that is now
 * complete. Bytes of a UTF-8 character that is not complete yet are held back until the ids
 * that complete it arrive; a sequence that can no longer become valid is emitted as U+FFFD.
 * The concatenation of every feed and the finish equals melbo_tokenizer_decode of all the
 * ids (except inside invalid byte-fallback runs, which the stream replaces per maximal
 * invalid subsequence).
 */
struct melbo_detok_stream;

/* A new stream over tok (which must outlive it); flags as for decode. Never NULL. */
struct melbo_detok_stream *melbo_detok_stream_new(const struct melbo_tokenizer *tok,
                                                  unsigned flags);

/*
 * Feeds one id. On success *text points at the newly completed text (*len bytes, possibly 0,
 * NUL-terminated), valid until the next call on this stream. MELBO_ERANGE for an unknown id.
 */
int melbo_detok_stream_feed(struct melbo_detok_stream *s, int32_t id, const char **text,
                            size_t *len, struct melbo_err *err);

/* Ends the stream: returns whatever is still held back (as U+FFFD) and resets the stream. */
const char *melbo_detok_stream_finish(struct melbo_detok_stream *s, size_t *len);

/* Frees a stream. NULL is allowed. */
void melbo_detok_stream_free(struct melbo_detok_stream *s);

/* ==== vocabulary =========================================================================== */

/* Number of ids (largest id + 1, added tokens included). */
int32_t melbo_tokenizer_n_vocab(const struct melbo_tokenizer *tok);

/*
 * The id of a token given by its string as written in tokenizer.json ("<|im_end|>", "Ġthe",
 * "▁the"; for tiktoken the raw bytes), added tokens first; -1 if there is none.
 */
int32_t melbo_tokenizer_token_id(const struct melbo_tokenizer *tok, const char *token);

/*
 * The string of id as written in tokenizer.json (what HF convert_ids_to_tokens returns; for
 * tiktoken the raw bytes, which need not be valid UTF-8), NUL-terminated; NULL for an id
 * outside the vocabulary. Owned by the tokenizer.
 */
const char *melbo_tokenizer_token_str(const struct melbo_tokenizer *tok, int32_t id);

/* 1 if id is an added token marked special (<|im_end|>, <s>), else 0. */
int melbo_tokenizer_is_special(const struct melbo_tokenizer *tok, int32_t id);

/* The BOS / EOS ids from tokenizer_config.json (bos_token, eos_token); -1 when unset. */
int32_t melbo_tokenizer_bos_id(const struct melbo_tokenizer *tok);
int32_t melbo_tokenizer_eos_id(const struct melbo_tokenizer *tok);

/* The bos_token / eos_token strings ("" when unset). Owned by the tokenizer. */
const char *melbo_tokenizer_bos_token(const struct melbo_tokenizer *tok);
const char *melbo_tokenizer_eos_token(const struct melbo_tokenizer *tok);

/* The chat template text from the model directory, or NULL when there is none. */
const char *melbo_tokenizer_chat_template(const struct melbo_tokenizer *tok);

/* "bpe-bytelevel", "bpe-sentencepiece" or "tiktoken": for messages and `tokenize` output. */
const char *melbo_tokenizer_kind(const struct melbo_tokenizer *tok);

#ifdef __cplusplus
}
#endif
#endif
