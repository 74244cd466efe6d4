/*
 * cli/chat.c - `melbo chat --bank ID --vector EXPR [--system TEXT] [decoding options]`: a
 * multi-turn conversation with the steered model. Each turn is a gen job (coord/genjob.h) whose
 * prompt is the whole conversation so far (--messages: the model's chat template renders the
 * history every turn, as the model was trained to see it); the reply streams to stdout as it
 * is decoded and joins the history.
 *
 * Lines starting with '/' are commands: /vector EXPR switches the vector for the next turns
 * (none: unsteered), /save FILE writes the transcript as JSONL (first line the settings, then
 * one line per message; assistant lines name the vector that produced them), /quit ends.
 * --script FILE reads the lines from FILE instead of the terminal (tests, demos); the user's
 * lines are then echoed to stderr as "you> ...". Exit: 0, or the exit code of the first turn
 * that failed.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/mem.h"
#include "options/generate.h"

static void chat_usage(void) {
    printf("usage: melbo chat --bank ID [--vector EXPR] [--system TEXT] [decoding options]\n"
           "                  [--script FILE]\n"
           "\n"
           "Talks to the model steered by a stored bank's vector: each line you type is a user\n"
           "turn; the reply streams as it is decoded. Commands: /vector EXPR (switch; none for\n"
           "the unsteered model), /save FILE (transcript as JSONL), /quit.\n"
           "Decoding options are melbo gen's (melbo gen --help); prompts come from the chat.\n");
}

/* The conversation and the settings every turn sends. */
struct chat {
    char *bank;             // bank id, owned
    char *vector;           // the current expression, owned
    char *system;           // the system prompt or NULL, owned
    Melbo__Option **opts;   // pass-through decoding options, owned
    size_t n_opts;
    cJSON *history;         // [{role, content[, vector]}]
    char *reply;            // the turn being received (owned), NULL between turns
    size_t reply_len;
};

static int chat_option(void *ctx, const struct melbo_opt *row, const char *name, const char *val,
                       struct melbo_err *err) {
    struct chat *ch = ctx;
    static const char *const refused[] = {"model", "logits", "prompt", "raw-prompt", "prompts",
                                          "prompt-ids", "bank-prompts", "messages", "adapter"};
    (void)row;
    for (size_t k = 0; k < sizeof refused / sizeof refused[0]; k++)
        if (!strcmp(name, refused[k]))
            return melbo_err_set(err, MELBO_EINVAL, "--%s is not an option of melbo chat (%s)",
                                 name, k < 2 ? "the bank's model is used"
                                       : k < 8 ? "the conversation is the prompt"
                                               : "chat steers with vectors");
    if (!strcmp(name, "bank")) {
        free(ch->bank);
        ch->bank = melbo_xstrdup(val);
    } else if (!strcmp(name, "vector")) {
        free(ch->vector);
        ch->vector = melbo_xstrdup(val);
    } else if (!strcmp(name, "system")) {
        free(ch->system);
        ch->system = melbo_xstrdup(val);
    } else {
        Melbo__Option *o = melbo_xmalloc(sizeof *o);
        melbo__option__init(o);
        o->name = melbo_xstrdup(name);
        o->value = val ? melbo_xstrdup(val) : NULL;
        ch->opts = melbo_xrealloc(ch->opts, sizeof *ch->opts * (ch->n_opts + 1));
        ch->opts[ch->n_opts++] = o;
    }
    return 0;
}

static void chat_free(struct chat *ch) {
    for (size_t i = 0; i < ch->n_opts; i++) {
        free(ch->opts[i]->name);
        free(ch->opts[i]->value);
        free(ch->opts[i]);
    }
    free(ch->opts);
    free(ch->bank);
    free(ch->vector);
    free(ch->system);
    free(ch->reply);
    cJSON_Delete(ch->history);
}

static void on_turn_event(void *ctx, const Melbo__JobEvent *e) {
    struct chat *ch = ctx;
    if (e->kind == MELBO__JOB_EVENT__KIND__TOKENS && e->text && e->sequence == 0) {
        size_t k = strlen(e->text);
        ch->reply = melbo_xrealloc(ch->reply, ch->reply_len + k + 1);
        memcpy(ch->reply + ch->reply_len, e->text, k + 1);
        ch->reply_len += k;
        fputs(e->text, stdout);
        fflush(stdout);
    } else if (e->kind == MELBO__JOB_EVENT__KIND__COMPLETION && e->sequence == 0 && e->text) {
        free(ch->reply); /* the whole text is the reply, whatever the stream showed */
        ch->reply = melbo_xstrdup(e->text);
        ch->reply_len = strlen(e->text);
    }
}

/* The messages of the next turn: the system prompt, the history (without our vector tags). */
static char *messages_json(const struct chat *ch) {
    cJSON *arr = cJSON_CreateArray(), *m;
    if (ch->system) {
        cJSON *s = cJSON_CreateObject();
        cJSON_AddStringToObject(s, "role", "system");
        cJSON_AddStringToObject(s, "content", ch->system);
        cJSON_AddItemToArray(arr, s);
    }
    cJSON_ArrayForEach(m, ch->history) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "role", cJSON_GetObjectItem(m, "role")->valuestring);
        cJSON_AddStringToObject(c, "content", cJSON_GetObjectItem(m, "content")->valuestring);
        cJSON_AddItemToArray(arr, c);
    }
    char *s = cJSON_PrintUnformatted(arr);
    cJSON_Delete(arr);
    return s;
}

/* One user turn: a gen job of the whole conversation; the reply joins the history. */
static int turn(struct melbo_cli *c, struct chat *ch, const char *text) {
    cJSON *u = cJSON_CreateObject();
    cJSON_AddStringToObject(u, "role", "user");
    cJSON_AddStringToObject(u, "content", text);
    cJSON_AddItemToArray(ch->history, u);
    char *msgs = messages_json(ch);
    size_t n = ch->n_opts + 3;
    Melbo__Option **opts = melbo_xcalloc(n, sizeof *opts), fixed[3];
    const char *names[3] = {"bank", "vector", "messages"}, *vals[3] = {ch->bank, ch->vector, msgs};
    for (int k = 0; k < 3; k++) {
        melbo__option__init(&fixed[k]);
        fixed[k].name = (char *)names[k];
        fixed[k].value = (char *)vals[k];
        opts[k] = &fixed[k];
    }
    for (size_t i = 0; i < ch->n_opts; i++)
        opts[3 + i] = ch->opts[i];
    uint64_t job = 0;
    int st = melbo_cli_gen_submit(c, opts, n, &job);
    struct melbo_cli_follow_opts fo = melbo_cli_follow_defaults();
    if (st == 0)
        st = melbo_cli_follow(c, job, &fo, on_turn_event, ch);
    fputc('\n', stdout);
    fflush(stdout);
    if (st == 0) {
        cJSON *a = cJSON_CreateObject();
        cJSON_AddStringToObject(a, "role", "assistant");
        cJSON_AddStringToObject(a, "content", ch->reply ? ch->reply : "");
        cJSON_AddStringToObject(a, "vector", ch->vector);
        cJSON_AddNumberToObject(a, "job", (double)job);
        cJSON_AddItemToArray(ch->history, a);
    } else { /* the turn did not happen: the user's line leaves the history again */
        cJSON_DeleteItemFromArray(ch->history, cJSON_GetArraySize(ch->history) - 1);
        if (job)
            fprintf(stderr, "melbo chat: turn failed (job %llu)\n", (unsigned long long)job);
        else
            fprintf(stderr, "melbo chat: the turn was refused (nothing was queued)\n");
    }
    free(ch->reply);
    ch->reply = NULL;
    ch->reply_len = 0;
    free(opts);
    free(msgs);
    return st;
}

/* /save FILE: the settings, then one line per message. */
static int save(const struct chat *ch, const char *path) {
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        perror(path);
        return -1;
    }
    cJSON *s = cJSON_CreateObject(), *o = cJSON_AddObjectToObject(s, "settings"), *m;
    cJSON_AddStringToObject(o, "bank", ch->bank);
    if (ch->system)
        cJSON_AddStringToObject(o, "system", ch->system);
    for (size_t i = 0; i < ch->n_opts; i++)
        cJSON_AddStringToObject(o, ch->opts[i]->name,
                                ch->opts[i]->value ? ch->opts[i]->value : "true");
    char *line = cJSON_PrintUnformatted(s);
    fprintf(f, "%s\n", line);
    free(line);
    cJSON_Delete(s);
    cJSON_ArrayForEach(m, ch->history) {
        line = cJSON_PrintUnformatted(m);
        fprintf(f, "%s\n", line);
        free(line);
    }
    return fclose(f) == 0 ? 0 : -1;
}

int melbo_cli_cmd_chat(struct melbo_cli *c, int argc, char **argv) {
    struct chat ch = {0};
    struct melbo_gen_cmd_params p;
    struct melbo_err err = {0};
    const char *script = NULL;
    char **rest = melbo_xcalloc((size_t)argc + 1, sizeof *rest);
    int n_rest = 0, status = MELBO_CLI_OK;
    for (int i = 0; i < argc; i++) {
        if (i > 0 && !strcmp(argv[i], "--script") && i + 1 < argc)
            script = argv[++i];
        else
            rest[n_rest++] = argv[i];
    }
    struct melbo_opts_parse_cfg cfg = {"melbo chat", 0, MELBO_OPT_REQUIRED, chat_option, &ch};
    melbo_opts_init(&melbo_gen_cmd_table, &p);
    int ret = melbo_opts_parse(&melbo_gen_cmd_table, &p, n_rest, rest, &cfg, &err);
    melbo_opts_free(&melbo_gen_cmd_table, &p);
    FILE *in = NULL;
    if (ret == 1) {
        chat_usage();
        goto out;
    }
    if (ret == 0 && ch.bank == NULL)
        ret = melbo_err_set(&err, MELBO_EINVAL, "--bank ID is required (melbo bank ls)");
    if (ret == 0 && script && (in = fopen(script, "r")) == NULL)
        ret = melbo_err_set(&err, MELBO_EIO, "--script %s: cannot open it", script);
    if (ret < 0) {
        fprintf(stderr, "melbo chat: %s\n", err.msg);
        status = MELBO_CLI_USAGE;
        goto out;
    }
    if (ch.vector == NULL)
        ch.vector = melbo_xstrdup("none");
    ch.history = cJSON_CreateArray();
    if ((status = melbo_cli_connect(c)) != 0)
        goto out;
    int tty = script == NULL && isatty(STDIN_FILENO);
    char *line = NULL;
    size_t cap = 0;
    for (;;) {
        if (tty)
            fprintf(stderr, "you (vector %s)> ", melbo_cli_safe(ch.vector, 0));
        ssize_t len = getline(&line, &cap, in ? in : stdin);
        if (len < 0)
            break;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0)
            continue;
        if (script)
            fprintf(stderr, "you> %s\n", melbo_cli_safe(line, 0));
        if (!strcmp(line, "/quit") || !strcmp(line, "/exit"))
            break;
        if (!strncmp(line, "/vector ", 8)) {
            free(ch.vector);
            ch.vector = melbo_xstrdup(line + 8);
            fprintf(stderr, "melbo chat: vector %s from the next turn\n",
                    melbo_cli_safe(ch.vector, 0));
        } else if (!strncmp(line, "/save ", 6)) {
            if (save(&ch, line + 6) == 0)
                fprintf(stderr, "melbo chat: transcript saved to %s\n",
                        melbo_cli_safe(line + 6, 0));
        } else if (line[0] == '/') {
            fprintf(stderr, "melbo chat: commands are /vector EXPR, /save FILE, /quit\n");
        } else if ((status = turn(c, &ch, line)) != 0) {
            if (script || status == MELBO_CLI_UNREACHABLE)
                break; /* a script stops at the first failed turn */
            status = MELBO_CLI_OK;
        }
    }
    free(line);
out:
    if (in)
        fclose(in);
    chat_free(&ch);
    free(rest);
    return status;
}
