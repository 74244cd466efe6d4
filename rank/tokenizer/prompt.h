/*
 * rank/tokenizer/prompt.h - turning the prompt options every command shares (options/prompts.h:
 * --prompt, --raw-prompt, --prompts, --system, --chat-format) into rendered, tokenized prompts.
 * Every rendered prompt ends with the generation prompt (the assistant header).
 */
#ifndef MELBO_RANK_TOKENIZER_PROMPT_H
#define MELBO_RANK_TOKENIZER_PROMPT_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "options/prompts.h"
#include "rank/tokenizer/chat.h"
#include "rank/tokenizer/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One rendered prompt: the exact text and its ids (what the model sees). */
struct melbo_prompt {
    char *text;
    struct melbo_ids ids;
};

struct melbo_prompt_list {
    struct melbo_prompt *p;
    size_t n;
    enum melbo_chat_format format;  // the format used for chat prompts
    int format_used;                // 1 if any prompt went through the chat template
    int32_t end_of_turn;            // melbo_chat_end_of_turn for that format (or EOS), or -1
};

/*
 * Renders and tokenizes every prompt in order into *out (owned by the caller; free with
 * melbo_prompt_list_free). The chat format is --chat-format, else detected from tok's
 * template (only when some prompt needs a template, so raw prompts work on models without
 * one). Errors (negative code, message naming the prompt): no prompts, undetectable
 * template, a conversation the format refuses, invalid UTF-8.
 */
int melbo_prompt_opts_render(const struct melbo_prompt_opts *o, struct melbo_tokenizer *tok,
                             struct melbo_prompt_list *out, struct melbo_err *err);

void melbo_prompt_list_free(struct melbo_prompt_list *l);

#ifdef __cplusplus
}
#endif
#endif
