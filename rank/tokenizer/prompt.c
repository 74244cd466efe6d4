/*
 * rank/tokenizer/prompt.c - rendering and tokenizing the shared prompt options (prompt.h); the
 * options themselves are collected by options/prompts.c.
 */
#include "rank/tokenizer/prompt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"  // defines: melbo_xmalloc, melbo_xcalloc, melbo_xstrdup

/* A conversation of a --prompts file as the chat renderer takes it (new array, strings
 * borrowed from it). */
static struct melbo_chat_msg *chat_msgs(const struct melbo_prompt_item *it) {
    struct melbo_chat_msg *m = melbo_xcalloc(it->n_msgs ? it->n_msgs : 1, sizeof *m);
    for (size_t k = 0; k < it->n_msgs; k++) {
        m[k].role = it->msgs[k].role;
        m[k].content = it->msgs[k].content;
    }
    return m;
}

void melbo_prompt_list_free(struct melbo_prompt_list *l) {
    for (size_t i = 0; i < l->n; i++) {
        free(l->p[i].text);
        melbo_ids_free(&l->p[i].ids);
    }
    free(l->p);
    memset(l, 0, sizeof(*l));
}

int melbo_prompt_opts_render(const struct melbo_prompt_opts *o, struct melbo_tokenizer *tok,
                             struct melbo_prompt_list *out, struct melbo_err *err) {
    int ret = 0;
    memset(out, 0, sizeof(*out));
    out->end_of_turn = melbo_tokenizer_eos_id(tok);
    if (o->n == 0)
        return melbo_err_set(err, MELBO_EINVAL,
                             "no prompt given (use --prompt, --raw-prompt or --prompts FILE)");
    int need_template = 0;
    for (size_t i = 0; i < o->n; i++)
        need_template |= o->items[i].kind != MELBO_PROMPT_RAW;
    if (o->system && !need_template)
        return melbo_err_set(err, MELBO_EINVAL, "--system applies to --prompt only; there is none");
    if (o->chat_format)
        ret = melbo_chat_format_parse(o->chat_format, &out->format, err);
    else if (need_template)
        ret = melbo_chat_detect(tok, &out->format, err);
    if (ret)
        return ret;
    if (need_template) {
        out->format_used = 1;
        out->end_of_turn = melbo_chat_end_of_turn(tok, out->format);
    }
    out->p = melbo_xcalloc(o->n, sizeof(*out->p));
    for (size_t i = 0; i < o->n && ret == 0; i++) {
        const struct melbo_prompt_item *it = &o->items[i];
        struct melbo_prompt *p = &out->p[out->n++];
        if (it->kind == MELBO_PROMPT_RAW) {
            p->text = melbo_xstrdup(it->text);
            ret = melbo_tokenizer_encode(tok, it->text, strlen(it->text), MELBO_TOK_ADD_SPECIAL,
                                         &p->ids, err);
        } else if (it->kind == MELBO_PROMPT_USER) {
            struct melbo_chat_msg m[2] = {{"system", o->system}, {"user", it->text}};
            ret = o->system ? melbo_chat_encode(tok, out->format, m, 2, &p->text, &p->ids, err)
                            : melbo_chat_encode(tok, out->format, m + 1, 1, &p->text, &p->ids,
                                                err);
        } else {
            struct melbo_chat_msg *m = chat_msgs(it);
            ret = melbo_chat_encode(tok, out->format, m, it->n_msgs, &p->text, &p->ids, err);
            free(m);
        }
        if (ret)
            melbo_err_prefix(err, "%s", it->where);
    }
    if (ret)
        melbo_prompt_list_free(out);
    return ret;
}
