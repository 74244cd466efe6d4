/*
 * rank/tokenizer/chat.c - recognising a model's chat template and rendering conversations
 * exactly as its Jinja source does (chat.h lists the formats).
 *
 * Each renderer transcribes one published template line by line; the comments quote the
 * Jinja it mirrors. Python's str.strip() (Jinja's trim filter and .strip()) strips Unicode
 * whitespace, reproduced by py_space().
 */
#include "rank/tokenizer/chat.h"

#include <stdlib.h>
#include <string.h>

#include "common/mem.h"                // defines: melbo_xmalloc, melbo_xstrdup
#include "options/prompts.h"            // defines: melbo_chat_format_names
#include "rank/tokenizer/tok_impl.h"   // defines: tok_buf_put, tok_utf8_next

/* The --chat-format spellings are the option table's (options/prompts.h), in enum order. */
_Static_assert(MELBO_CHAT_PHI4 + 1 == MELBO_CHAT_N_FORMATS, "one spelling per chat format");
_Static_assert(MELBO_CHAT_QWEN25 == 2, "melbo_chat_format_index's qwen2.5 aliases");

#define QWEN25_DEFAULT_SYSTEM "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

const char *melbo_chat_format_name(enum melbo_chat_format fmt) {
    return (unsigned)fmt < MELBO_CHAT_N_FORMATS ? melbo_chat_format_names[fmt] : "?";
}

int melbo_chat_format_parse(const char *name, enum melbo_chat_format *fmt,
                            struct melbo_err *err) {
    int i = melbo_chat_format_index(name, err);
    if (i < 0)
        return i;
    *fmt = (enum melbo_chat_format)i;
    return 0;
}

/* The literal system prompt between key and the next <|im_end|> in tpl, or NULL. */
static char *default_system_after(const char *tpl, const char *key) {
    for (const char *p = tpl; (p = strstr(p, key)) != NULL; p++) {
        const char *s = p + strlen(key);
        const char *e = strstr(s, "<|im_end|>");
        if (!e)
            return NULL;
        size_t n = (size_t)(e - s);
        if (n == 0 || memchr(s, '\'', n) || memchr(s, '"', n) || memchr(s, '{', n))
            continue; // '<|im_start|>system\n' + messages[0]... : not a literal
        char *r = melbo_xmalloc(n + 1);
        memcpy(r, s, n);
        r[n] = '\0';
        return r;
    }
    return NULL;
}

/*
 * The default system prompt of a Qwen2/2.5 template: the literal in
 * '<|im_start|>system\nDEFAULT<|im_end|>\n' (the branch taken when messages[0] is not a
 * system message). The newline is Jinja's escape in Qwen's templates and a real newline in
 * SmolLM2's. Returns a new string or NULL.
 */
static char *qwen_default_system(const char *tpl) {
    static const char *const keys[] = {"<|im_start|>system\\n", "<|im_start|>system\n"};
    for (int k = 0; k < 2; k++) {
        char *r = default_system_after(tpl, keys[k]);
        if (r)
            return r;
    }
    return NULL;
}

int melbo_chat_detect(const struct melbo_tokenizer *tok, enum melbo_chat_format *fmt,
                      struct melbo_err *err) {
    const char *t = melbo_tokenizer_chat_template(tok);
    if (!t)
        return melbo_err_set(err, MELBO_EUNSUPPORTED,
                             "the model has no chat template (tokenizer_config.json has no "
                             "chat_template); pass --chat-format (e.g. chatml for Qwen-1 chat, "
                             "with --system \"You are a helpful assistant.\") or use "
                             "--raw-prompt");
    if (strstr(t, "<|im_sep|>") && strstr(t, "<|im_start|>")) { /* Phi-4 */
        *fmt = MELBO_CHAT_PHI4;
        return 0;
    }
    if (strstr(t, "<start_of_turn>") && strstr(t, "<end_of_turn>")) { /* Gemma 2 and 3 */
        *fmt = MELBO_CHAT_GEMMA;
        return 0;
    }
    if (strstr(t, "<|user|>") && strstr(t, "<|end|>") && strstr(t, "<|assistant|>")) { /* Phi-3 */
        *fmt = MELBO_CHAT_PHI3;
        return 0;
    }
    if (strstr(t, "<|im_start|>")) {
        if (strstr(t, "<think>") || strstr(t, "enable_thinking"))
            *fmt = MELBO_CHAT_QWEN3;
        else {
            char *d = qwen_default_system(t);
            *fmt = d ? MELBO_CHAT_QWEN25 : MELBO_CHAT_CHATML;
            free(d);
        }
        return 0;
    }
    if (strstr(t, "<|start_header_id|>") && !strstr(t, "Cutting Knowledge Date")) {
        *fmt = MELBO_CHAT_LLAMA3;
        return 0;
    }
    if (strstr(t, "[INST]") && strstr(t, "<<SYS>>")) {
        *fmt = MELBO_CHAT_LLAMA2;
        return 0;
    }
    if (strstr(t, "[INST]") && !strstr(t, "[SYSTEM_PROMPT]") && !strstr(t, "[AVAILABLE_TOOLS]") &&
        !strstr(t, "system_message")) {
        *fmt = MELBO_CHAT_MISTRAL;
        return 0;
    }
    return melbo_err_set(err, MELBO_EUNSUPPORTED,
                         "the model's chat template is not one melbo recognises; pass "
                         "--chat-format chatml|qwen2.5|qwen3|llama3|llama2|mistral|gemma|phi3|"
                         "phi4|raw "
                         "(template starts: \"%.60s\")", t);
}

/* ---- Python whitespace and strip() -------------------------------------------------------- */

static int py_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Python s.strip() (what == 3), lstrip() (1) or rstrip() (2); chars: NULL for whitespace,
 * else a set of ASCII characters. Sets [*b, *e) inside s. */
static void py_strip(const char *s, int what, const char *chars, size_t *b, size_t *e) {
    size_t n = strlen(s), i = 0, j = n;
    const unsigned char *u = (const unsigned char *)s;
    if (what & 1) {
        while (i < n) {
            uint32_t cp;
            int k = tok_utf8_next(u + i, n - i, &cp);
            if (k <= 0 || !(chars ? (cp < 0x80 && strchr(chars, (int)cp)) : py_space(cp)))
                break;
            i += (size_t)k;
        }
    }
    if (what & 2) {
        while (j > i) {
            size_t k = j - 1;
            while (k > i && (u[k] & 0xC0) == 0x80)
                k--;
            uint32_t cp;
            if (tok_utf8_next(u + k, j - k, &cp) <= 0 ||
                !(chars ? (cp < 0x80 && strchr(chars, (int)cp)) : py_space(cp)))
                break;
            j = k;
        }
    }
    *b = i;
    *e = j;
}

struct sbuf {
    char *p;
    size_t n, cap;
};

static void put(struct sbuf *b, const char *s) { tok_buf_put(&b->p, &b->n, &b->cap, s, strlen(s)); }
static void putn(struct sbuf *b, const char *s, size_t n) { tok_buf_put(&b->p, &b->n, &b->cap, s, n); }

static void put_stripped(struct sbuf *b, const char *s, int what, const char *chars) {
    size_t i, j;
    py_strip(s, what, chars, &i, &j);
    putn(b, s + i, j - i);
}

static int is_role(const struct melbo_chat_msg *m, const char *role) { return !strcmp(m->role, role); }

/* ---- renderers ----------------------------------------------------------------------------- */

/* ChatML; default_system inserted when messages[0] is not a system message (Qwen2.5). */
static void render_chatml(struct sbuf *b, const struct melbo_chat_msg *m, size_t n,
                          const char *default_system) {
    if (default_system && (n == 0 || !is_role(&m[0], "system"))) {
        put(b, "<|im_start|>system\n");
        put(b, default_system);
        put(b, "<|im_end|>\n");
    }
    for (size_t i = 0; i < n; i++) {
        put(b, "<|im_start|>");
        put(b, m[i].role);
        put(b, "\n");
        put(b, m[i].content);
        put(b, "<|im_end|>\n");
    }
    put(b, "<|im_start|>assistant\n");
}

/* The Qwen3 template without tools, enable_thinking=false. */
static void render_qwen3(struct sbuf *b, const struct melbo_chat_msg *m, size_t n) {
    if (n > 0 && is_role(&m[0], "system")) {
        put(b, "<|im_start|>system\n");
        put(b, m[0].content);
        put(b, "<|im_end|>\n");
    }
    /* ns.last_query_index: the last user message that is not a wrapped tool response */
    size_t last_query = n - 1;
    for (size_t k = n; k-- > 0;) {
        const char *c = m[k].content;
        size_t lc = strlen(c);
        int wrapped = !strncmp(c, "<tool_response>", 15) && lc >= 16 &&
                      !strcmp(c + lc - 16, "</tool_response>");
        if (is_role(&m[k], "user") && !wrapped) {
            last_query = k;
            break;
        }
    }
    for (size_t i = 0; i < n; i++) {
        const char *c = m[i].content;
        if (is_role(&m[i], "user") || (is_role(&m[i], "system") && i != 0)) {
            put(b, "<|im_start|>");
            put(b, m[i].role);
            put(b, "\n");
            put(b, c);
            put(b, "<|im_end|>\n");
        } else if (is_role(&m[i], "assistant")) {
            /* content = c.split('</think>')[-1].lstrip('\n');
             * reasoning = c.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') */
            const char *content = c, *rs = "", *re = "";
            const char *close = strstr(c, "</think>");
            if (close) {
                const char *last = close, *q;
                while ((q = strstr(last + 8, "</think>")) != NULL)
                    last = q;
                content = last + 8;
                while (*content == '\n')
                    content++;
                re = close;
                while (re > c && re[-1] == '\n')
                    re--;
                rs = c;
                for (const char *q2 = c; (q2 = strstr(q2, "<think>")) != NULL && q2 < re; q2++)
                    rs = q2 + 7;
                if (rs > re)
                    rs = re;
                while (rs < re && *rs == '\n')
                    rs++;
            }
            int has_reasoning = re > rs;
            put(b, "<|im_start|>assistant\n");
            if (i > last_query && (i == n - 1 || has_reasoning)) {
                /* '<think>\n' + reasoning.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') */
                while (re > rs && re[-1] == '\n')
                    re--;
                put(b, "<think>\n");
                putn(b, rs, (size_t)(re - rs));
                put(b, "\n</think>\n\n");
                while (*content == '\n')
                    content++;
            }
            put(b, content);
            put(b, "<|im_end|>\n");
        } else if (is_role(&m[i], "tool")) {
            if (i == 0 || !is_role(&m[i - 1], "tool"))
                put(b, "<|im_start|>user");
            put(b, "\n<tool_response>\n");
            put(b, c);
            put(b, "\n</tool_response>");
            if (i == n - 1 || !is_role(&m[i + 1], "tool"))
                put(b, "<|im_end|>\n");
        }
    }
    put(b, "<|im_start|>assistant\n<think>\n\n</think>\n\n");
}

/* Llama-3: bos + '<|start_header_id|>' + role + '<|end_header_id|>\n\n' + content|trim
 * + '<|eot_id|>' per message, then the assistant header. */
static void render_llama3(struct sbuf *b, const struct melbo_tokenizer *tok,
                          const struct melbo_chat_msg *m, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (i == 0)
            put(b, melbo_tokenizer_bos_token(tok));
        put(b, "<|start_header_id|>");
        put(b, m[i].role);
        put(b, "<|end_header_id|>\n\n");
        put_stripped(b, m[i].content, 3, NULL);
        put(b, "<|eot_id|>");
    }
    put(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

/* Llama-2-chat and Mistral-Instruct-v0.1; both require user/assistant alternation. */
static int render_inst(struct sbuf *b, const struct melbo_tokenizer *tok,
                       const struct melbo_chat_msg *m, size_t n, int llama2,
                       struct melbo_err *err) {
    const char *bos = melbo_tokenizer_bos_token(tok), *eos = melbo_tokenizer_eos_token(tok);
    const char *sys = NULL;
    if (llama2 && n > 0 && is_role(&m[0], "system")) {
        sys = m[0].content;
        m++;
        n--;
    }
    if (!llama2)
        put(b, bos);
    for (size_t i = 0; i < n; i++) {
        int user = is_role(&m[i], "user");
        if (user != (i % 2 == 0))
            return melbo_err_set(err, MELBO_EINVAL,
                                 "%s chat format: conversation roles must alternate "
                                 "user/assistant/user/assistant/... (message %zu is \"%s\")%s",
                                 llama2 ? "llama2" : "mistral", i + (sys ? 1 : 0), m[i].role,
                                 !llama2 && is_role(&m[i], "system")
                                     ? "; Mistral's template has no system message" : "");
        if (!llama2 && !user && !is_role(&m[i], "assistant"))
            return melbo_err_set(err, MELBO_EINVAL,
                                 "mistral chat format: only user and assistant roles are "
                                 "supported (message %zu is \"%s\")", i, m[i].role);
        if (!llama2) {
            if (user) {
                put(b, "[INST] ");
                put(b, m[i].content);
                put(b, " [/INST]");
            } else {
                put(b, m[i].content);
                put(b, eos);
            }
            continue;
        }
        /* content = '<<SYS>>\n' + sys + '\n<</SYS>>\n\n' + content (first message only) */
        struct sbuf c = {0};
        if (i == 0 && sys) {
            put(&c, "<<SYS>>\n");
            put(&c, sys);
            put(&c, "\n<</SYS>>\n\n");
        }
        put(&c, m[i].content);
        if (user) {
            put(b, bos);
            put(b, "[INST] ");
            put_stripped(b, c.p, 3, NULL);
            put(b, " [/INST]");
        } else if (is_role(&m[i], "assistant")) {
            put(b, " ");
            put_stripped(b, c.p, 3, NULL);
            put(b, " ");
            put(b, eos);
        }
        free(c.p);
    }
    return 0;
}

/*
 * Gemma 3 (Gemma 2 without the system branch):
 *   {{ bos_token }} system: first_user_prefix = messages[0]['content'] + '\n\n', rest of messages;
 *   roles must alternate user/assistant; role = 'model' for assistant;
 *   '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first) + content | trim +
 *   '<end_of_turn>\n'; generation prompt '<start_of_turn>model\n'.
 * Gemma 2's template raises 'System role not supported' instead of merging.
 */
static int render_gemma(struct sbuf *b, const struct melbo_tokenizer *tok,
                        const struct melbo_chat_msg *m, size_t n, struct melbo_err *err) {
    const char *prefix = NULL;
    if (n > 0 && is_role(&m[0], "system")) {
        const char *t = melbo_tokenizer_chat_template(tok);
        if (t && strstr(t, "System role not supported"))
            return melbo_err_set(err, MELBO_EINVAL,
                                 "gemma chat format: this model's template (Gemma 2) does not "
                                 "support a system message (\"System role not supported\"); put "
                                 "it into the user message");
        prefix = m[0].content;
        m++;
        n--;
    }
    put(b, melbo_tokenizer_bos_token(tok));
    for (size_t i = 0; i < n; i++) {
        int user = is_role(&m[i], "user");
        if (user != (i % 2 == 0))
            return melbo_err_set(err, MELBO_EINVAL,
                                 "gemma chat format: conversation roles must alternate "
                                 "user/assistant/user/assistant/... (message %zu is \"%s\")",
                                 i + (prefix ? 1 : 0), m[i].role);
        put(b, "<start_of_turn>");
        put(b, is_role(&m[i], "assistant") ? "model" : m[i].role);
        put(b, "\n");
        if (i == 0 && prefix) {
            put(b, prefix);
            put(b, "\n\n");
        }
        put_stripped(b, m[i].content, 3, NULL);
        put(b, "<end_of_turn>\n");
    }
    put(b, "<start_of_turn>model\n");
    return 0;
}

/*
 * Phi-3 / Phi-3.5: '<|' + role + '|>\n' + content + '<|end|>\n' for system, user and assistant
 * (other roles are skipped), then '<|assistant|>\n'; templates that start with {{ bos_token }}
 * (early Phi-3 revisions) get it first. Phi-4: '<|im_start|>' + role + '<|im_sep|>' + content +
 * '<|im_end|>', then '<|im_start|>assistant<|im_sep|>'.
 */
static void render_phi(struct sbuf *b, const struct melbo_tokenizer *tok,
                       const struct melbo_chat_msg *m, size_t n, int phi4) {
    const char *t = melbo_tokenizer_chat_template(tok);
    if (!phi4 && t && !strncmp(t, "{{ bos_token }}", 15))
        put(b, melbo_tokenizer_bos_token(tok));
    for (size_t i = 0; i < n; i++) {
        if (!is_role(&m[i], "system") && !is_role(&m[i], "user") && !is_role(&m[i], "assistant"))
            continue;
        put(b, phi4 ? "<|im_start|>" : "<|");
        put(b, m[i].role);
        put(b, phi4 ? "<|im_sep|>" : "|>\n");
        put(b, m[i].content);
        put(b, phi4 ? "<|im_end|>" : "<|end|>\n");
    }
    put(b, phi4 ? "<|im_start|>assistant<|im_sep|>" : "<|assistant|>\n");
}

int melbo_chat_render(const struct melbo_tokenizer *tok, enum melbo_chat_format fmt,
                      const struct melbo_chat_msg *msgs, size_t n, char **out,
                      struct melbo_err *err) {
    int ret = 0;
    struct sbuf b = {0};
    char *dsys = NULL;
    *out = NULL;
    if (n == 0)
        return melbo_err_set(err, MELBO_EINVAL, "a conversation needs at least one message");
    for (size_t i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content)
            return melbo_err_set(err, MELBO_EINVAL, "message %zu has no role or no content", i);
    put(&b, "");
    switch (fmt) {
    case MELBO_CHAT_RAW:
        if (n != 1 || !is_role(&msgs[0], "user")) {
            ret = melbo_err_set(err, MELBO_EINVAL,
                                "the raw chat format takes exactly one user message (got %zu "
                                "messages); choose a --chat-format for conversations", n);
            goto out;
        }
        put(&b, msgs[0].content);
        break;
    case MELBO_CHAT_CHATML:
        render_chatml(&b, msgs, n, NULL);
        break;
    case MELBO_CHAT_QWEN25: {
        const char *t = melbo_tokenizer_chat_template(tok);
        dsys = t ? qwen_default_system(t) : NULL;
        render_chatml(&b, msgs, n, dsys ? dsys : QWEN25_DEFAULT_SYSTEM);
        break;
    }
    case MELBO_CHAT_QWEN3:
        render_qwen3(&b, msgs, n);
        break;
    case MELBO_CHAT_LLAMA3:
        render_llama3(&b, tok, msgs, n);
        break;
    case MELBO_CHAT_LLAMA2:
    case MELBO_CHAT_MISTRAL:
        ret = render_inst(&b, tok, msgs, n, fmt == MELBO_CHAT_LLAMA2, err);
        break;
    case MELBO_CHAT_GEMMA:
        ret = render_gemma(&b, tok, msgs, n, err);
        break;
    case MELBO_CHAT_PHI3:
    case MELBO_CHAT_PHI4:
        render_phi(&b, tok, msgs, n, fmt == MELBO_CHAT_PHI4);
        break;
    default:
        ret = melbo_err_set(err, MELBO_EINVAL, "unknown chat format %d", (int)fmt);
    }
out:
    free(dsys);
    if (ret) {
        free(b.p);
        return ret;
    }
    *out = b.p;
    return 0;
}

int32_t melbo_chat_end_of_turn(const struct melbo_tokenizer *tok, enum melbo_chat_format fmt) {
    switch (fmt) {
    case MELBO_CHAT_CHATML:
    case MELBO_CHAT_QWEN25:
    case MELBO_CHAT_QWEN3:
        return melbo_tokenizer_token_id(tok, "<|im_end|>");
    case MELBO_CHAT_LLAMA3:
        return melbo_tokenizer_token_id(tok, "<|eot_id|>");
    case MELBO_CHAT_GEMMA:
        return melbo_tokenizer_token_id(tok, "<end_of_turn>");
    case MELBO_CHAT_PHI3:
        return melbo_tokenizer_token_id(tok, "<|end|>");
    case MELBO_CHAT_PHI4:
        return melbo_tokenizer_token_id(tok, "<|im_end|>");
    default:
        return melbo_tokenizer_eos_id(tok);
    }
}

int melbo_chat_encode(struct melbo_tokenizer *tok, enum melbo_chat_format fmt,
                      const struct melbo_chat_msg *msgs, size_t n, char **text,
                      struct melbo_ids *ids, struct melbo_err *err) {
    char *s = NULL;
    int ret = melbo_chat_render(tok, fmt, msgs, n, &s, err);
    if (ret)
        return ret;
    /* the raw format is a plain prompt: HF adds the post-processor's BOS to it */
    unsigned flags = fmt == MELBO_CHAT_RAW ? MELBO_TOK_ADD_SPECIAL : 0;
    ret = melbo_tokenizer_encode(tok, s, strlen(s), flags, ids, err);
    if (ret == 0 && text)
        *text = s;
    else
        free(s);
    return ret;
}
