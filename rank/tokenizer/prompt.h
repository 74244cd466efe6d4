/*
 * rank/tokenizer/prompt.h - the prompt options every melbo-rank command shares, and turning
 * them into rendered, tokenized prompts.
 *
 *   --prompt TEXT       a user message, rendered with the chat template (plus --system)
 *   --raw-prompt TEXT   text tokenized as it is (HF tokenizer(text): the post-processor's BOS
 *                       is added for Llama/Mistral, nothing for Qwen)
 *   --prompts FILE      JSONL, one prompt per line: {"messages": [{"role", "content"}, ...]}
 *                       (a conversation, rendered with the template), {"text": "..."} (raw,
 *                       as --raw-prompt) or {"prompt": "..."} (as --prompt)
 *   --system TEXT       the system message of every --prompt / {"prompt"} (at most once)
 *   --chat-format NAME  chatml|qwen2.5|qwen3|llama3|llama2|mistral|raw; default: detected
 *                       from the model's chat template (chat.h)
 * --prompt, --raw-prompt and --prompts repeat; prompts keep the order they were given in.
 * Every rendered prompt ends with the generation prompt (the assistant header).
 */
#ifndef MELBO_RANK_TOKENIZER_PROMPT_H
#define MELBO_RANK_TOKENIZER_PROMPT_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "rank/tokenizer/chat.h"
#include "rank/tokenizer/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

enum melbo_prompt_kind {
    MELBO_PROMPT_USER,     // --prompt / {"prompt"}: one user message (+ --system)
    MELBO_PROMPT_RAW,      // --raw-prompt / {"text"}
    MELBO_PROMPT_MESSAGES, // {"messages": [...]}
};

/* One prompt as given; every string is owned by the item. */
struct melbo_prompt_item {
    enum melbo_prompt_kind kind;
    char *text;                   // USER and RAW
    struct melbo_chat_msg *msgs;  // MESSAGES: roles and contents owned (cast away const)
    size_t n_msgs;
    char *where;                  // "--prompt 2", "prompts.jsonl:7": for error messages
};

/* The parsed options. Zero-initialise ({0}) or melbo_prompt_opts_init; free with _free. */
struct melbo_prompt_opts {
    struct melbo_prompt_item *items;
    size_t n, cap;
    char *system;                 // --system, or NULL
    char *chat_format;            // --chat-format as given, or NULL (detect)
};

void melbo_prompt_opts_init(struct melbo_prompt_opts *o);
void melbo_prompt_opts_free(struct melbo_prompt_opts *o);

/*
 * Offers one command-line option to the prompt options: opt is the option name ("--prompt")
 * and val its value (every prompt option takes one; val may be NULL when the command line
 * ended, which is an error). Returns 1 if the option was consumed, 0 if it is not a prompt
 * option (the caller handles it), or a negative code: MELBO_EINVAL for a missing value, an
 * unknown --chat-format or a second --system; MELBO_ENOENT / MELBO_EFORMAT for a --prompts
 * file that cannot be read or has a bad line (the message names file:line). The file is read
 * at once, so its prompts take their place in the order.
 */
int melbo_prompt_opts_parse_one(struct melbo_prompt_opts *o, const char *opt, const char *val,
                                struct melbo_err *err);

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
