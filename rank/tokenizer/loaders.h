/*
 * rank/tokenizer/loaders.h - the three tokenizer file formats melbo reads, one file each. Only
 * load.c (which loader for which path) calls them; they build on vocab.h and never on load.c.
 *
 *   tokenizer_json.c   Hugging Face tokenizer.json, and tokenizer_config.json beside it
 *   tiktoken.c         Qwen-1's qwen.tiktoken
 *   gguf_vocab.c       the tokenizer.ggml.* metadata of a GGUF file
 *
 * Every loader returns 0 or a negative MELBO_E* code with a message naming the file and the
 * problem (MELBO_EFORMAT malformed input, MELBO_EUNSUPPORTED a part melbo does not implement,
 * MELBO_ENOENT / MELBO_EMISSING something absent).
 */
#ifndef MELBO_RANK_TOKENIZER_LOADERS_H
#define MELBO_RANK_TOKENIZER_LOADERS_H

#include <stddef.h>

#include "rank/tokenizer/vocab.h"

/*
 * Fills tok (fresh from tok_alloc) from the tokenizer.json text[0..len) read from path. On
 * failure tok is half-filled and the caller frees it with melbo_tokenizer_free.
 */
int tok_json_load(struct melbo_tokenizer *tok, const char *path, const char *text, size_t len,
                  struct melbo_err *err);

/*
 * Applies the tokenizer_config.json at path to a loaded tok: bos_token / eos_token (replacing
 * the loader's), the chat template (a string, or the "default" entry of a list) and
 * add_bos_token / add_eos_token when the loader set no post-processor ids. tok keeps its state
 * on failure; the caller frees it.
 */
int tok_json_config_apply(struct melbo_tokenizer *tok, const char *path, struct melbo_err *err);

/* Fills tok (fresh from tok_alloc) from the qwen.tiktoken text[0..len) read from path; on
 * failure the caller frees tok. */
int tok_tiktoken_load(struct melbo_tokenizer *tok, const char *path, const char *text, size_t len,
                      struct melbo_err *err);

/*
 * The tokenizer of the GGUF file at path (its tokenizer.ggml.* metadata and
 * tokenizer.chat_template). On success *out owns everything (melbo_tokenizer_free); on failure
 * *out is NULL and nothing is left allocated.
 */
int tok_gguf_load(const char *path, struct melbo_tokenizer **out, struct melbo_err *err);

#endif
