/*
 * options/prompts.c - the prompt option group (options/prompts.h): collecting --prompt,
 * --raw-prompt, --prompts FILE, --system, --chat-format and --prompt-ids.
 */
#include "options/prompts.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/mem.h"  // defines: melbo_xmalloc, melbo_xcalloc, melbo_xstrdup

const char *const melbo_chat_format_names[MELBO_CHAT_N_FORMATS] = {
    "raw", "chatml", "qwen2.5", "qwen3", "llama3", "llama2", "mistral", "gemma", "phi3", "phi4"};

const struct melbo_prompt_opt_name melbo_prompt_opt_names[] = {
    {"prompt", "TEXT", "a user message rendered with the model's chat template", 0},
    {"system", "TEXT", "the system message of every --prompt (at most once)", 0},
    {"raw-prompt", "TEXT", "text tokenized as it is", 0},
    {"prompts", "FILE",
     "JSONL: {\"messages\": [...]}, {\"prompt\": ...} or {\"text\": ...} per line", 1},
    {"chat-format", "NAME",
     "raw|chatml|qwen2.5|qwen3|llama3|llama2|mistral|gemma|phi3|phi4 (default: detected from the "
     "model)", 0},
    {"prompt-ids", "1,2,3", "a prompt given as token ids", 0},
    /* the lines of a --prompts file, as `melbo submit` sends them (no metavar: not listed) */
    {"prompts-jsonl", NULL, "JSONL text, as in a --prompts file", 0},
};
const size_t melbo_prompt_opt_count = MELBO_ARRAY_SIZE(melbo_prompt_opt_names);

const struct melbo_prompt_opt_name *melbo_prompt_opt_find(const char *name) {
    for (size_t i = 0; i < melbo_prompt_opt_count; i++)
        if (!strcmp(name, melbo_prompt_opt_names[i].name))
            return &melbo_prompt_opt_names[i];
    return NULL;
}

void melbo_prompt_opts_init(struct melbo_prompt_opts *o) {
    memset(o, 0, sizeof(*o));
}

static void item_free(struct melbo_prompt_item *it) {
    free(it->text);
    for (size_t i = 0; i < it->n_msgs; i++) {
        free(it->msgs[i].role);
        free(it->msgs[i].content);
    }
    free(it->msgs);
    free(it->where);
}

void melbo_id_list_add(struct melbo_id_list *l, const int32_t *ids, int n) {
    l->ids = melbo_xrealloc(l->ids, sizeof *l->ids * (size_t)(l->n + 1));
    l->lens = melbo_xrealloc(l->lens, sizeof *l->lens * (size_t)(l->n + 1));
    l->ids[l->n] = melbo_xmalloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
    memcpy(l->ids[l->n], ids, sizeof(int32_t) * (size_t)n);
    l->lens[l->n++] = n;
}

void melbo_id_list_free(struct melbo_id_list *l) {
    for (int i = 0; i < l->n; i++)
        free(l->ids[i]);
    free(l->ids);
    free(l->lens);
    memset(l, 0, sizeof(*l));
}

void melbo_prompt_opts_free(struct melbo_prompt_opts *o) {
    for (size_t i = 0; i < o->n; i++)
        item_free(&o->items[i]);
    free(o->items);
    free(o->system);
    free(o->chat_format);
    melbo_id_list_free(&o->ids);
    memset(o, 0, sizeof(*o));
}

static char *dup_or_null(const char *s) {
    return s ? melbo_xstrdup(s) : NULL;
}

void melbo_prompt_opts_copy(struct melbo_prompt_opts *dst, const struct melbo_prompt_opts *src) {
    melbo_prompt_opts_init(dst);
    dst->cap = dst->n = src->n;
    dst->items = melbo_xcalloc(src->n ? src->n : 1, sizeof(*dst->items));
    for (size_t i = 0; i < src->n; i++) {
        const struct melbo_prompt_item *s = &src->items[i];
        struct melbo_prompt_item *d = &dst->items[i];
        d->kind = s->kind;
        d->text = dup_or_null(s->text);
        d->where = dup_or_null(s->where);
        d->n_msgs = s->n_msgs;
        d->msgs = s->n_msgs ? melbo_xcalloc(s->n_msgs, sizeof(*d->msgs)) : NULL;
        for (size_t k = 0; k < s->n_msgs; k++) {
            d->msgs[k].role = melbo_xstrdup(s->msgs[k].role);
            d->msgs[k].content = melbo_xstrdup(s->msgs[k].content);
        }
    }
    dst->system = dup_or_null(src->system);
    dst->chat_format = dup_or_null(src->chat_format);
    for (int i = 0; i < src->ids.n; i++)
        melbo_id_list_add(&dst->ids, src->ids.ids[i], src->ids.lens[i]);
}

int melbo_prompt_opts_count(const struct melbo_prompt_opts *o) {
    return (int)o->n + o->ids.n;
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

/* The messages of a {"messages": [...]} line into a new MESSAGES item. */
static int parse_messages(struct melbo_prompt_opts *o, const cJSON *msgs, const char *where,
                          struct melbo_err *err) {
    size_t n = (size_t)cJSON_GetArraySize(msgs), k = 0;
    if (n == 0)
        return melbo_err_set(err, MELBO_EFORMAT, "%s: \"messages\" is empty", where);
    struct melbo_prompt_item *it = add_item(o, MELBO_PROMPT_MESSAGES, where);
    it->msgs = melbo_xcalloc(n, sizeof(*it->msgs));
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!cJSON_IsString(role) || !cJSON_IsString(content))
            return melbo_err_set(err, MELBO_EFORMAT,
                                 "%s: message %zu needs string \"role\" and \"content\"", where, k);
        it->msgs[k].role = melbo_xstrdup(role->valuestring);
        it->msgs[k].content = melbo_xstrdup(content->valuestring);
        it->n_msgs = ++k;
    }
    return 0;
}

/* Parses one JSONL line of a --prompts file into a new item. */
static int parse_line(struct melbo_prompt_opts *o, const char *line, size_t len,
                      const char *where, struct melbo_err *err) {
    int ret = 0;
    cJSON *j = cJSON_ParseWithLength(line, len);
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(j, "messages");
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(j, "text");
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(j, "prompt");
    if (!cJSON_IsObject(j))
        ret = melbo_err_set(err, MELBO_EFORMAT, "%s: not a JSON object", where);
    else if (cJSON_IsArray(msgs))
        ret = parse_messages(o, msgs, where, err);
    else if (cJSON_IsString(text))
        add_item(o, MELBO_PROMPT_RAW, where)->text = melbo_xstrdup(text->valuestring);
    else if (cJSON_IsString(prompt))
        add_item(o, MELBO_PROMPT_USER, where)->text = melbo_xstrdup(prompt->valuestring);
    else
        ret = melbo_err_set(err, MELBO_EFORMAT,
                            "%s: expected {\"messages\": [...]}, {\"text\": ...} or "
                            "{\"prompt\": ...}",
                            where);
    cJSON_Delete(j);
    return ret;
}

size_t melbo_prompts_file_cap = (size_t)1 << 30;

int melbo_file_read_capped(const char *path, size_t cap, const char *what, char **out,
                           size_t *len, struct melbo_err *err) {
    struct stat st;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return melbo_err_set(err, errno == ENOENT ? MELBO_ENOENT : MELBO_EIO,
                             "%s %s: cannot open: %s", what, path, strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return melbo_err_set(err, MELBO_EINVAL, "%s %s: not a regular file", what, path);
    }
    if ((uint64_t)st.st_size > (uint64_t)cap) {
        close(fd);
        return melbo_err_set(err, MELBO_ERANGE, "%s %s: %llu bytes, over the %zu allowed", what,
                             path, (unsigned long long)st.st_size, cap);
    }
    /* a regular file: clear O_NONBLOCK (no effect on reads, but be plain) */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    size_t n = 0, want = (size_t)st.st_size + 1 > cap + 1 ? cap + 1 : (size_t)st.st_size + 1;
    char *buf = melbo_xmalloc(want + 1);
    for (;;) {
        if (n == want) { /* grew while we read: at most cap + 1 bytes are ever taken */
            if (n > cap) {
                free(buf);
                close(fd);
                return melbo_err_set(err, MELBO_ERANGE, "%s %s: over the %zu bytes allowed",
                                     what, path, cap);
            }
            want = want * 2 > cap + 1 ? cap + 1 : want * 2;
            buf = melbo_xrealloc(buf, want + 1);
        }
        ssize_t r = read(fd, buf + n, want - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            free(buf);
            close(fd);
            return melbo_err_set(err, MELBO_EIO, "%s %s: cannot read: %s", what, path,
                                 strerror(errno));
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *out = buf;
    if (len)
        *len = n;
    return 0;
}

/* The JSONL lines buf[len] (named label in messages) into new items. */
static int parse_jsonl(struct melbo_prompt_opts *o, const char *buf, size_t len,
                       const char *label, struct melbo_err *err) {
    size_t pos = 0, lineno = 0, before = o->n;
    int ret = 0;
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
            snprintf(where, sizeof(where), "%s:%zu", label, lineno);
            ret = parse_line(o, buf + pos, end - pos, where, err);
        }
        pos = end + 1;
    }
    if (ret == 0 && o->n == before)
        ret = melbo_err_set(err, MELBO_EFORMAT, "%s: no prompts in the file", label);
    return ret;
}

static int read_prompts_file(struct melbo_prompt_opts *o, const char *path,
                             struct melbo_err *err) {
    char *buf = NULL;
    size_t len = 0;
    int ret = melbo_file_read_capped(path, melbo_prompts_file_cap, "--prompts", &buf, &len, err);
    if (ret)
        return ret;
    ret = parse_jsonl(o, buf, len, path, err);
    free(buf);
    return ret;
}

int melbo_parse_id_list(const char *s, int32_t **out, int *n_out) {
    int n = 0, cap = 16;
    int32_t *ids = melbo_xmalloc(sizeof *ids * (size_t)cap);
    const char *q = s;
    while (*q) {
        char *end;
        errno = 0;
        long v = strtol(q, &end, 10);
        if (end == q || errno != 0 || v < 0 || v > 0x7fffffffL || (*end != ',' && *end != '\0')) {
            free(ids);
            return -1;
        }
        if (n == cap) {
            cap *= 2;
            ids = melbo_xrealloc(ids, sizeof *ids * (size_t)cap);
        }
        ids[n++] = (int32_t)v;
        q = *end ? end + 1 : end;
    }
    if (n == 0) {
        free(ids);
        return -1;
    }
    *out = ids;
    *n_out = n;
    return 0;
}

int melbo_chat_format_index(const char *name, struct melbo_err *err) {
    for (int i = 0; i < MELBO_CHAT_N_FORMATS; i++)
        if (!strcmp(name, melbo_chat_format_names[i]))
            return i;
    if (!strcmp(name, "qwen2") || !strcmp(name, "qwen25")) /* spellings of qwen2.5 */
        return 2;
    return melbo_err_set(err, MELBO_EINVAL,
                         "unknown --chat-format \"%s\" (use one of chatml, qwen2.5, qwen3, "
                         "llama3, llama2, mistral, gemma, phi3, phi4, raw)",
                         name);
}

int melbo_prompt_opts_offer(struct melbo_prompt_opts *o, const char *name, const char *val,
                            struct melbo_err *err) {
    if (melbo_prompt_opt_find(name) == NULL)
        return 0;
    if (!val)
        return melbo_err_set(err, MELBO_EINVAL, "--%s needs a value", name);
    char where[64];
    int ret;
    if (!strcmp(name, "prompt") || !strcmp(name, "raw-prompt")) {
        int raw = name[0] == 'r';
        snprintf(where, sizeof(where), "--%s %zu", name, o->n + 1);
        add_item(o, raw ? MELBO_PROMPT_RAW : MELBO_PROMPT_USER, where)->text = melbo_xstrdup(val);
        return 1;
    }
    if (!strcmp(name, "prompts"))
        return (ret = read_prompts_file(o, val, err)) ? ret : 1;
    if (!strcmp(name, "prompts-jsonl")) {
        snprintf(where, sizeof(where), "--prompts %zu", o->n + 1);
        return (ret = parse_jsonl(o, val, strlen(val), where, err)) ? ret : 1;
    }
    if (!strcmp(name, "prompt-ids")) {
        int32_t *ids;
        int n;
        if (melbo_parse_id_list(val, &ids, &n) != 0)
            return melbo_err_set(err, MELBO_EINVAL,
                                 "--prompt-ids '%s': expected comma-separated non-negative ids",
                                 val);
        melbo_id_list_add(&o->ids, ids, n);
        free(ids);
        return 1;
    }
    if (!strcmp(name, "system")) {
        if (o->system)
            return melbo_err_set(err, MELBO_EINVAL, "--system given twice");
        o->system = melbo_xstrdup(val);
        return 1;
    }
    if ((ret = melbo_chat_format_index(val, err)) < 0)
        return ret;
    free(o->chat_format);
    o->chat_format = melbo_xstrdup(val);
    return 1;
}

int melbo_prompt_opts_parse_one(struct melbo_prompt_opts *o, const char *opt, const char *val,
                                struct melbo_err *err) {
    if (strncmp(opt, "--", 2) != 0)
        return 0;
    return melbo_prompt_opts_offer(o, opt + 2, val, err);
}
