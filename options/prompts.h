/*
 * options/prompts.h - the prompt options every command shares (one group of the option tables,
 * kind MELBO_OPT_PROMPTS), and what they hold once parsed:
 *
 *   --prompt TEXT       a user message, rendered with the chat template (plus --system)
 *   --raw-prompt TEXT   text tokenized as it is (HF tokenizer(text): the post-processor's BOS
 *                       is added for Llama/Mistral, nothing for Qwen)
 *   --prompts FILE      JSONL, one prompt per line: {"messages": [{"role", "content"}, ...]}
 *                       (a conversation, rendered with the template), {"text": "..."} (raw,
 *                       as --raw-prompt) or {"prompt": "..."} (as --prompt)
 *   --system TEXT       the system message of every --prompt / {"prompt"} (at most once)
 *   --chat-format NAME  one of melbo_chat_format_names; default: detected from the model's
 *                       chat template (rank/tokenizer/chat.h)
 *   --prompt-ids 1,2,3  a prompt given as token ids (no tokenizer needed)
 *
 * --prompt, --raw-prompt and --prompts repeat and keep the order they were given in; a
 * --prompts file is read when the option is parsed, so its prompts take their place in that
 * order. Id prompts are kept apart (commands put them after the text prompts). Rendering and
 * tokenizing is rank/tokenizer/prompt.h's job; nothing here needs a tokenizer.
 */
#ifndef MELBO_OPTIONS_PROMPTS_H
#define MELBO_OPTIONS_PROMPTS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#ifdef __cplusplus
extern "C" {
#endif

enum melbo_prompt_kind {
    MELBO_PROMPT_USER,     // --prompt / {"prompt"}: one user message (+ --system)
    MELBO_PROMPT_RAW,      // --raw-prompt / {"text"}
    MELBO_PROMPT_MESSAGES, // {"messages": [...]}
};

/* One message of a conversation from a --prompts file; both strings owned. */
struct melbo_prompt_msg {
    char *role;
    char *content;
};

/* One text prompt as given; every string is owned by the item. */
struct melbo_prompt_item {
    enum melbo_prompt_kind kind;
    char *text;                    // USER and RAW
    struct melbo_prompt_msg *msgs; // MESSAGES
    size_t n_msgs;
    char *where;                   // "--prompt 2", "prompts.jsonl:7": for error messages
};

/* Prompts given as token ids, owned. */
struct melbo_id_list {
    int n;
    int32_t **ids; // (n) arrays of lens[i] ids
    int *lens;     // (n)
};

/* The parsed group. Zero-initialise or melbo_prompt_opts_init; free with _free. */
struct melbo_prompt_opts {
    struct melbo_prompt_item *items; // text prompts in order
    size_t n, cap;
    char *system;                    // --system, or NULL
    char *chat_format;               // --chat-format as given, or NULL (detect)
    struct melbo_id_list ids;        // --prompt-ids in order
};

/* The --chat-format spellings, in the order of enum melbo_chat_format (rank/tokenizer/chat.h). */
#define MELBO_CHAT_N_FORMATS 10
extern const char *const melbo_chat_format_names[MELBO_CHAT_N_FORMATS];

/* The index in melbo_chat_format_names of a --chat-format spelling (aliases: qwen2, qwen25 for
 * qwen2.5), or MELBO_EINVAL with err listing the spellings. */
int melbo_chat_format_index(const char *name, struct melbo_err *err);

void melbo_prompt_opts_init(struct melbo_prompt_opts *o);
void melbo_prompt_opts_free(struct melbo_prompt_opts *o);
/* dst (uninitialised) becomes an independent copy of src. */
void melbo_prompt_opts_copy(struct melbo_prompt_opts *dst, const struct melbo_prompt_opts *src);

/* One option of the group, for the engine's lookup and help page. */
struct melbo_prompt_opt_name {
    const char *name;    // without the dashes
    const char *metavar;
    const char *help;
    int is_path;         // the value is a file (`melbo submit` makes it absolute)
};
extern const struct melbo_prompt_opt_name melbo_prompt_opt_names[];
extern const size_t melbo_prompt_opt_count;

/* The entry of name (without dashes) in melbo_prompt_opt_names, or NULL. */
const struct melbo_prompt_opt_name *melbo_prompt_opt_find(const char *name);

/*
 * Offers one option to the group: name without the dashes ("prompt"), val its value (every
 * prompt option takes one). Returns 1 if consumed, 0 if name is not a prompt option, or a
 * negative code: MELBO_EINVAL for a missing value, an unknown --chat-format, a second --system
 * or malformed ids; MELBO_ENOENT / MELBO_EFORMAT for a --prompts file that cannot be read or
 * has a bad line (the message names file:line).
 */
int melbo_prompt_opts_offer(struct melbo_prompt_opts *o, const char *name, const char *val,
                            struct melbo_err *err);

/* The same for a command line's "--prompt" spelling (tools with their own parsers). */
int melbo_prompt_opts_parse_one(struct melbo_prompt_opts *o, const char *opt, const char *val,
                                struct melbo_err *err);

/*
 * Reads the regular file at path into a new NUL-terminated buffer (*out, caller frees) of *len
 * bytes, refusing without reading: anything that is not a regular file (a FIFO, a device, a
 * directory; opened O_NONBLOCK, so a FIFO never blocks) and a file over cap bytes. Reads at most
 * cap + 1 bytes, so a file that grows is refused too. what names the file in messages
 * ("--prompts"). Returns 0, or MELBO_ENOENT / MELBO_EIO / MELBO_EINVAL / MELBO_ERANGE with err.
 */
int melbo_file_read_capped(const char *path, size_t cap, const char *what, char **out,
                           size_t *len, struct melbo_err *err);

/* The cap melbo_prompt_opts_offer reads a --prompts file with (default 1 GiB; `melbo submit`
 * lowers it to what one request can carry). */
extern size_t melbo_prompts_file_cap;

/* Number of prompts given, text and ids. */
int melbo_prompt_opts_count(const struct melbo_prompt_opts *o);

/* Parses "1,2,3" (non-negative ids) into a new array (*out, caller frees). 0, or -1 if malformed
 * or empty. */
int melbo_parse_id_list(const char *s, int32_t **out, int *n_out);

/* Appends ids[n] (copied) to l. */
void melbo_id_list_add(struct melbo_id_list *l, const int32_t *ids, int n);
void melbo_id_list_free(struct melbo_id_list *l);

#ifdef __cplusplus
}
#endif
#endif
