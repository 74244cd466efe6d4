/*
 * rank/tokenizer/prompt.c - the shared prompt options (prompt.h): collecting --prompt,
 * --raw-prompt, --prompts FILE, --system and --chat-format, then rendering and tokenizing.
 */
#include "rank/tokenizer/prompt.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h" // defines: melbo_file_read
#include "common/mem.h"  // defines: melbo_xmalloc, melbo_xcalloc, melbo_xstrdup

void melbo_prompt_opts_init(struct melbo_prompt_opts *o) { memset(o, 0, sizeof(*o)); }

static void item_free(struct melbo_prompt_item *it) {
    free(it->text);
    for (size_t i = 0; i < it->n_msgs; i++) {
        free((char *)it->msgs[i].role);
        free((char *)it->msgs[i].content);
    }
    free(it->msgs);
    free(it->where);
}

void melbo_prompt_opts_free(struct melbo_prompt_opts *o) {
    for (size_t i = 0; i < o->n; i++)
        item_free(&o->items[i]);
    free(o->items);
    free(o->system);
    free(o->chat_format);
    memset(o, 0, sizeof(*o));
}

static struct melbo_prompt_item *add_item(struct melbo_prompt_opts *o, enum melbo_prompt_kind k,
                                          const char *where) {
    if (o->n == o->cap) {
        o->cap = o->cap ? 2 * o->cap : 8;
        o->items = melbo_xrealloc(o->items, o->cap * sizeof(*o->items));
    }
    struct melbo_prompt_item *it = &o->items[o->n++];
    memset(it, 0, sizeof(*it));
    it->kind = k;
    it->where = melbo_xstrdup(where);
    return it;
}

/* Parses one JSONL line of a --prompts file into a new item. */
static int parse_line(struct melbo_prompt_opts *o, const char *line, size_t len,
                      const char *where, struct melbo_err *err) {
    int ret = 0;
    cJSON *j = cJSON_ParseWithLength(line, len);
    if (!cJSON_IsObject(j)) {
        ret = melbo_err_set(err, MELBO_EFORMAT, "%s: not a JSON object", where);
        goto out;
    }
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(j, "messages");
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(j, "text");
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(j, "prompt");
    if (cJSON_IsArray(msgs)) {
        size_t n = (size_t)cJSON_GetArraySize(msgs), k = 0;
        if (n == 0) {
            ret = melbo_err_set(err, MELBO_EFORMAT, "%s: \"messages\" is empty", where);
            goto out;
        }
        struct melbo_prompt_item *it = add_item(o, MELBO_PROMPT_MESSAGES, where);
        it->msgs = melbo_xcalloc(n, sizeof(*it->msgs));
        const cJSON *m;
        cJSON_ArrayForEach(m, msgs) {
            const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
            const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
            if (!cJSON_IsString(role) || !cJSON_IsString(content)) {
                ret = melbo_err_set(err, MELBO_EFORMAT,
                                    "%s: message %zu needs string \"role\" and \"content\"",
                                    where, k);
                goto out;
            }
            it->msgs[k].role = melbo_xstrdup(role->valuestring);
            it->msgs[k].content = melbo_xstrdup(content->valuestring);
            it->n_msgs = ++k;
        }
    } else if (cJSON_IsString(text)) {
        add_item(o, MELBO_PROMPT_RAW, where)->text = melbo_xstrdup(text->valuestring);
    } else if (cJSON_IsString(prompt)) {
        add_item(o, MELBO_PROMPT_USER, where)->text = melbo_xstrdup(prompt->valuestring);
    } else {
        ret = melbo_err_set(err, MELBO_EFORMAT,
                            "%s: expected {\"messages\": [...]}, {\"text\": ...} or "
                            "{\"prompt\": ...}", where);
    }
out:
    cJSON_Delete(j);
    return ret;
}

static int read_prompts_file(struct melbo_prompt_opts *o, const char *path,
                             struct melbo_err *err) {
    char *buf = NULL;
    size_t len = 0;
    int ret = melbo_file_read(path, &buf, &len, err);
    if (ret)
        return ret;
    size_t pos = 0, lineno = 0, before = o->n;
    while (pos < len && ret == 0) {
        size_t end = pos;
        while (end < len && buf[end] != '\n')
            end++;
        lineno++;
        size_t k = pos;
        while (k < end && (buf[k] == ' ' || buf[k] == '\t' || buf[k] == '\r'))
            k++;
        if (k < end) {
            char where[512];
            snprintf(where, sizeof(where), "%s:%zu", path, lineno);
            ret = parse_line(o, buf + pos, end - pos, where, err);
        }
        pos = end + 1;
    }
    if (ret == 0 && o->n == before)
        ret = melbo_err_set(err, MELBO_EFORMAT, "%s: no prompts in the file", path);
    free(buf);
    return ret;
}

int melbo_prompt_opts_parse_one(struct melbo_prompt_opts *o, const char *opt, const char *val,
                                struct melbo_err *err) {
    int ours = !strcmp(opt, "--prompt") || !strcmp(opt, "--raw-prompt") ||
               !strcmp(opt, "--prompts") || !strcmp(opt, "--system") ||
               !strcmp(opt, "--chat-format");
    if (!ours)
        return 0;
    if (!val)
        return melbo_err_set(err, MELBO_EINVAL, "%s needs a value", opt);
    char where[64];
    int ret;
    if (!strcmp(opt, "--prompt") || !strcmp(opt, "--raw-prompt")) {
        int raw = opt[2] == 'r';
        snprintf(where, sizeof(where), "%s %zu", opt, o->n + 1);
        add_item(o, raw ? MELBO_PROMPT_RAW : MELBO_PROMPT_USER, where)->text = melbo_xstrdup(val);
        return 1;
    }
    if (!strcmp(opt, "--prompts"))
        return (ret = read_prompts_file(o, val, err)) ? ret : 1;
    if (!strcmp(opt, "--system")) {
        if (o->system)
            return melbo_err_set(err, MELBO_EINVAL, "--system given twice");
        o->system = melbo_xstrdup(val);
        return 1;
    }
    enum melbo_chat_format fmt;
    if ((ret = melbo_chat_format_parse(val, &fmt, err)))
        return ret;
    free(o->chat_format);
    o->chat_format = melbo_xstrdup(val);
    return 1;
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
            ret = melbo_chat_encode(tok, out->format, it->msgs, it->n_msgs, &p->text, &p->ids,
                                    err);
        }
        if (ret)
            melbo_err_prefix(err, "%s", it->where);
    }
    if (ret)
        melbo_prompt_list_free(out);
    return ret;
}
