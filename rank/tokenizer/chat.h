/*
 * rank/tokenizer/chat.h - chat templates: the text a model's own template renders for a
 * conversation, with the generation prompt appended.
 *
 * melbo embeds no Jinja engine. It recognises the template in tokenizer_config.json and
 * renders it with a hard-coded renderer that is tested against transformers'
 * apply_chat_template(..., add_generation_prompt=True, tokenize=False):
 *   chatml   <|im_start|>role\ncontent<|im_end|>\n ... <|im_start|>assistant\n; no default
 *            system prompt (Qwen-1 chat: pass --system "You are a helpful assistant.")
 *   qwen2.5  ChatML that inserts the template's default system prompt when none is given
 *            (Qwen2/2.5: "You are Qwen, created by Alibaba Cloud. You are a helpful
 *            assistant." or "You are a helpful assistant.", read from the template)
 *   qwen3    ChatML with thinking turned off: the generation prompt ends with the empty
 *            "<think>\n\n</think>\n\n" block; earlier assistant turns lose their reasoning
 *   llama3   <|begin_of_text|><|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>
 *            with contents trimmed (the Llama-3 / Llama-3.1 fixture template)
 *   llama2   <s>[INST] <<SYS>>\nsys\n<</SYS>>\n\nuser [/INST] answer </s><s>[INST] ...
 *   mistral  <s>[INST] user [/INST]answer</s>[INST] ... ; a system message is an error
 *   gemma    <bos><start_of_turn>user\ncontent<end_of_turn>\n ... <start_of_turn>model\n
 *            (assistant is "model", contents trimmed, roles alternate); a system message is
 *            merged into the first user turn as Gemma 3's template does ("sys\n\n" + user),
 *            an error under Gemma 2's template, which raises on it
 *   phi3     <|system|>\n...<|end|>\n<|user|>\n...<|end|>\n ... <|assistant|>\n (Phi-3/3.5)
 *   phi4     <|im_start|>user<|im_sep|>...<|im_end|> ... <|im_start|>assistant<|im_sep|>
 *   raw      the user text as it is (single user message only)
 * A template that is none of these is an error telling the user to pass --chat-format.
 */
#ifndef MELBO_RANK_TOKENIZER_CHAT_H
#define MELBO_RANK_TOKENIZER_CHAT_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "rank/tokenizer/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

enum melbo_chat_format {
    MELBO_CHAT_RAW = 0,
    MELBO_CHAT_CHATML,
    MELBO_CHAT_QWEN25,
    MELBO_CHAT_QWEN3,
    MELBO_CHAT_LLAMA3,
    MELBO_CHAT_LLAMA2,
    MELBO_CHAT_MISTRAL,
    MELBO_CHAT_GEMMA,
    MELBO_CHAT_PHI3,
    MELBO_CHAT_PHI4,
};

/* One message of a conversation; both strings are borrowed (UTF-8, NUL-terminated). Roles:
 * "system", "user", "assistant" (qwen3 also renders "tool"). */
struct melbo_chat_msg {
    const char *role;
    const char *content;
};

/* "chatml", "qwen2.5", ... (the --chat-format spelling) for a format. Static string. */
const char *melbo_chat_format_name(enum melbo_chat_format fmt);

/*
 * Parses a --chat-format name (chatml, qwen2.5 (also qwen2), qwen3, llama3, llama2, mistral,
 * gemma, phi3, phi4, raw). Unknown names are MELBO_EINVAL with a message listing the valid ones.
 */
int melbo_chat_format_parse(const char *name, enum melbo_chat_format *fmt,
                            struct melbo_err *err);

/*
 * Recognises the format of tok's chat template (melbo_tokenizer_chat_template). Returns 0 and
 * sets *fmt, or MELBO_EUNSUPPORTED when the directory has no template (Qwen-1) or an unknown
 * one; the message says to pass --chat-format.
 */
int melbo_chat_detect(const struct melbo_tokenizer *tok, enum melbo_chat_format *fmt,
                      struct melbo_err *err);

/*
 * Renders n messages in format fmt with the generation prompt appended, into a new
 * NUL-terminated string (*out, caller frees). BOS/EOS strings come from tok (the template's
 * bos_token/eos_token). Errors (MELBO_EINVAL) where the model's template raises: roles not
 * alternating user/assistant for llama2 and mistral, a system message for mistral, anything
 * but one user message for raw; also a missing role or content.
 */
int melbo_chat_render(const struct melbo_tokenizer *tok, enum melbo_chat_format fmt,
                      const struct melbo_chat_msg *msgs, size_t n, char **out,
                      struct melbo_err *err);

/*
 * The token that ends an assistant turn in this format (<|im_end|>, <|eot_id|>, </s>,
 * <end_of_turn>, <|end|>; the tokenizer's eos for raw), or -1 if the vocabulary lacks it. Generation stops on it.
 */
int32_t melbo_chat_end_of_turn(const struct melbo_tokenizer *tok, enum melbo_chat_format fmt);

/*
 * Renders and tokenizes in one step, the way transformers' apply_chat_template(...,
 * tokenize=True) does: the rendered text is encoded without the post-processor's BOS (the
 * template writes it). Appends to *ids; *text (may be NULL) receives the rendered string.
 */
int melbo_chat_encode(struct melbo_tokenizer *tok, enum melbo_chat_format fmt,
                      const struct melbo_chat_msg *msgs, size_t n, char **text,
                      struct melbo_ids *ids, struct melbo_err *err);

#ifdef __cplusplus
}
#endif
#endif
