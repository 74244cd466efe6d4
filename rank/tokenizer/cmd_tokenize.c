/*
 * rank/tokenizer/cmd_tokenize.c - `melbo-rank tokenize` and `melbo-rank detokenize`
 * (cmd_tokenize.h): command-line parsing, table and JSON output.
 */
#include "rank/tokenizer/cmd_tokenize.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/mem.h"                // defines: melbo_xstrdup
#include "rank/tokenizer/prompt.h"     // defines: melbo_prompt_opts, melbo_prompt_list
#include "rank/tokenizer/tok_impl.h"   // defines: tok_buf_put_lossy
#include "rank/tokenizer/tokenizer.h"

static const char tokenize_usage[] =
    "usage: melbo-rank tokenize (--model DIR | --tokenizer DIR) [--json]\n"
    "           [--prompt TEXT]... [--raw-prompt TEXT]... [--prompts FILE]...\n"
    "           [--system TEXT] [--chat-format chatml|qwen2.5|qwen3|llama3|llama2|mistral|raw]\n"
    "Shows the rendered prompt and its tokens: position from the start and from the end\n"
    "(what --target-tokens selects, e.g. -3: for the last three), id, token, text.\n";

static const char detokenize_usage[] =
    "usage: melbo-rank detokenize (--model DIR | --tokenizer DIR) [--skip-special] [--json]\n"
    "           [IDS...]   (\"1 2 3\", \"1,2,3\" or \"[1, 2, 3]\"; standard input when none)\n";

/* A string made valid UTF-8 (tiktoken token strings are raw bytes). Caller frees. */
static char *lossy(const char *s, size_t n) {
    char *b = NULL;
    size_t len = 0, cap = 0;
    tok_buf_put(&b, &len, &cap, "", 0);
    tok_buf_put_lossy(&b, &len, &cap, s, n);
    return b;
}

static void print_json(const struct melbo_tokenizer *tok, const char *text, const int32_t *ids,
                       size_t n) {
    cJSON *o = cJSON_CreateObject(), *a = cJSON_CreateArray(), *t = cJSON_CreateArray();
    char *safe = lossy(text, strlen(text));
    cJSON_AddStringToObject(o, "text", safe);
    free(safe);
    for (size_t i = 0; i < n; i++) {
        const char *s = melbo_tokenizer_token_str(tok, ids[i]);
        char *ls = lossy(s ? s : "", s ? strlen(s) : 0);
        cJSON_AddItemToArray(a, cJSON_CreateNumber(ids[i]));
        cJSON_AddItemToArray(t, cJSON_CreateString(ls));
        free(ls);
    }
    cJSON_AddItemToObject(o, "ids", a);
    cJSON_AddItemToObject(o, "tokens", t);
    char *out = cJSON_PrintUnformatted(o);
    printf("%s\n", out);
    free(out);
    cJSON_Delete(o);
}

/* Prints s JSON-style quoted, so spaces, newlines and tabs are visible. */
static void print_quoted(const char *s) {
    cJSON *j = cJSON_CreateString(s);
    char *q = cJSON_PrintUnformatted(j);
    fputs(q, stdout);
    free(q);
    cJSON_Delete(j);
}

static void print_table(const struct melbo_tokenizer *tok, const struct melbo_prompt *p,
                        size_t index, size_t count, const char *format) {
    printf("prompt %zu of %zu (chat format %s, %zu tokens):\n", index + 1, count, format,
           p->ids.n);
    print_quoted(p->text);
    printf("\n%6s %6s %8s  %-24s %s\n", "pos", "neg", "id", "token", "text");
    for (size_t i = 0; i < p->ids.n; i++) {
        int32_t id = p->ids.ids[i];
        const char *s = melbo_tokenizer_token_str(tok, id);
        char *ls = lossy(s ? s : "", s ? strlen(s) : 0);
        char *piece = NULL;
        struct melbo_err err = {0};
        if (melbo_tokenizer_decode(tok, &id, 1, 0, &piece, NULL, &err) != 0)
            piece = melbo_xstrdup("?");
        printf("%6zu %6ld %8d  %-24s ", i, (long)i - (long)p->ids.n, (int)id, ls);
        print_quoted(piece);
        printf("\n");
        free(ls);
        free(piece);
    }
}

/* Handles --model/--tokenizer; returns 1 if consumed, -1 on a missing value. */
static int dir_option(const char *opt, const char *val, const char **dir) {
    if (strcmp(opt, "--model") && strcmp(opt, "--tokenizer"))
        return 0;
    if (!val)
        return -1;
    *dir = val;
    return 1;
}

/* Splits "--opt=value" into opt (copied into buf) and value. */
static const char *split_eq(const char *arg, char *buf, size_t n, const char **val) {
    const char *eq = strchr(arg, '=');
    if (!eq || strncmp(arg, "--", 2) || (size_t)(eq - arg) >= n)
        return arg;
    memcpy(buf, arg, (size_t)(eq - arg));
    buf[eq - arg] = '\0';
    *val = eq + 1;
    return buf;
}

int melbo_cmd_tokenize(int argc, char **argv) {
    int rc = 1, json = 0;
    const char *dir = NULL;
    struct melbo_err err = {0};
    struct melbo_prompt_opts opts;
    struct melbo_prompt_list list = {0};
    struct melbo_tokenizer *tok = NULL;
    melbo_prompt_opts_init(&opts);
    for (int i = 1; i < argc; i++) {
        char name[64];
        const char *val = NULL;
        const char *opt = split_eq(argv[i], name, sizeof(name), &val);
        int inline_val = val != NULL;
        if (!inline_val)
            val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(opt, "--help") || !strcmp(opt, "-h")) {
            fputs(tokenize_usage, stdout);
            rc = 0;
            goto out;
        }
        if (!strcmp(opt, "--json")) {
            json = 1;
            continue;
        }
        int r = dir_option(opt, val, &dir);
        if (r == 0)
            r = melbo_prompt_opts_parse_one(&opts, opt, val, &err);
        if (r == 0) {
            fprintf(stderr, "melbo-rank tokenize: unknown option %s\n%s", argv[i],
                    tokenize_usage);
            rc = 2;
            goto out;
        }
        if (r < 0) {
            fprintf(stderr, "melbo-rank tokenize: %s\n", val ? err.msg : "missing value");
            rc = !val || r == MELBO_EINVAL ? 2 : 1;
            goto out;
        }
        if (!inline_val)
            i++;
    }
    if (opts.ids.n > 0) {
        fprintf(stderr, "melbo-rank tokenize: --prompt-ids are tokens already (see detokenize)\n");
        rc = 2;
        goto out;
    }
    if (!dir || opts.n == 0) {
        fprintf(stderr, "melbo-rank tokenize: %s\n%s",
                !dir ? "--model or --tokenizer is required" : "no prompt given", tokenize_usage);
        rc = 2;
        goto out;
    }
    if (melbo_tokenizer_load(dir, &tok, &err) ||
        melbo_prompt_opts_render(&opts, tok, &list, &err)) {
        fprintf(stderr, "melbo-rank tokenize: %s\n", err.msg);
        goto out;
    }
    for (size_t i = 0; i < list.n; i++) {
        if (json)
            print_json(tok, list.p[i].text, list.p[i].ids.ids, list.p[i].ids.n);
        else
            print_table(tok, &list.p[i], i, list.n,
                        list.format_used ? melbo_chat_format_name(list.format) : "none (raw)");
    }
    rc = 0;
out:
    melbo_prompt_list_free(&list);
    melbo_prompt_opts_free(&opts);
    melbo_tokenizer_free(tok);
    return rc;
}

/* Parses ids from s ("1 2", "1,2", "[1, 2]") into v; returns 0 or -1 naming the bad text. */
static int parse_ids(const char *s, struct melbo_ids *v, struct melbo_err *err) {
    while (*s) {
        if (strchr(" \t\r\n,[]", *s)) {
            s++;
            continue;
        }
        char *end;
        errno = 0;
        long x = strtol(s, &end, 10);
        if (end == s || errno || x < 0 || x > INT32_MAX)
            return melbo_err_set(err, MELBO_EINVAL, "not a token id: \"%.20s\"", s);
        melbo_ids_push(v, (int32_t)x);
        s = end;
    }
    return 0;
}

int melbo_cmd_detokenize(int argc, char **argv) {
    int rc = 1, json = 0;
    unsigned flags = 0;
    const char *dir = NULL;
    char *input = NULL;
    struct melbo_err err = {0};
    struct melbo_ids ids = {0};
    struct melbo_tokenizer *tok = NULL;
    char *text = NULL;
    int have_ids = 0;
    for (int i = 1; i < argc; i++) {
        char name[64];
        const char *val = NULL;
        const char *opt = split_eq(argv[i], name, sizeof(name), &val);
        int inline_val = val != NULL;
        if (!inline_val)
            val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(opt, "--help") || !strcmp(opt, "-h")) {
            fputs(detokenize_usage, stdout);
            rc = 0;
            goto out;
        }
        if (!strcmp(opt, "--json") || !strcmp(opt, "--skip-special")) {
            if (opt[2] == 'j')
                json = 1;
            else
                flags |= MELBO_DETOK_SKIP_SPECIAL;
            continue;
        }
        int r = dir_option(opt, val, &dir);
        if (r > 0) {
            if (!inline_val)
                i++;
            continue;
        }
        if (r < 0 || (argv[i][0] == '-' && argv[i][1] == '-')) {
            fprintf(stderr, "melbo-rank detokenize: %s %s\n%s",
                    r < 0 ? "missing value for" : "unknown option", argv[i], detokenize_usage);
            rc = 2;
            goto out;
        }
        if (parse_ids(argv[i], &ids, &err)) {
            fprintf(stderr, "melbo-rank detokenize: %s\n%s", err.msg, detokenize_usage);
            rc = 2;
            goto out;
        }
        have_ids = 1;
    }
    if (!dir) {
        fprintf(stderr, "melbo-rank detokenize: --model or --tokenizer is required\n%s",
                detokenize_usage);
        rc = 2;
        goto out;
    }
    if (!have_ids) { // read ids from standard input
        size_t len = 0, cap = 0;
        char chunk[4096];
        size_t got;
        tok_buf_put(&input, &len, &cap, "", 0);
        while ((got = fread(chunk, 1, sizeof(chunk), stdin)) > 0)
            tok_buf_put(&input, &len, &cap, chunk, got);
        if (parse_ids(input, &ids, &err)) {
            fprintf(stderr, "melbo-rank detokenize: standard input: %s\n", err.msg);
            rc = 2;
            goto out;
        }
    }
    if (melbo_tokenizer_load(dir, &tok, &err) ||
        melbo_tokenizer_decode(tok, ids.ids, ids.n, flags, &text, NULL, &err)) {
        fprintf(stderr, "melbo-rank detokenize: %s\n", err.msg);
        goto out;
    }
    if (json)
        print_json(tok, text, ids.ids, ids.n);
    else
        printf("%s\n", text);
    rc = 0;
out:
    free(text);
    free(input);
    melbo_ids_free(&ids);
    melbo_tokenizer_free(tok);
    return rc;
}
