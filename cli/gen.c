/*
 * cli/gen.c - `melbo gen --bank ID --vector EXPR [prompts] [decoding options]`: a stored bank's
 * vectors (or adapters) on new prompts, as a job on the ranks where the model lives (coord/
 * genjob.h), its text streamed to the terminal as it is decoded.
 *
 * The flags are melbo-rank gen's (options/generate.h, parsed here with the same engine, so a
 * misspelt flag or a bad value is refused before anything is sent) less --model (the bank's
 * model is used), plus the job's own --name and --private. --prompts FILE is read here, with the
 * user's rights, and sent as text.
 *
 * Output: without --json, standard output is exactly the completion text, one completion after
 * another, each followed by a newline (completions are decoded together; each is printed whole
 * and in order as soon as the ones before it are done, the first one live); the job id and
 * progress go to standard error. With --json, one JSON object per event (as `melbo watch
 * --json`: "tokens" events carry "sequence" and "text", "completion" events the whole text).
 * Exit: 0 DONE, 4 FAILED, 5 CANCELLED (cli/cli.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/file.h"
#include "common/mem.h"
#include "options/generate.h"

#define GEN_PROMPTS_CAP (15u * 1024u * 1024u)

static void gen_usage(void) {
    printf("usage: melbo gen --bank ID [--vector EXPR ...] [prompts] [options]\n"
           "\n"
           "Generates with a stored bank's vectors (or --adapter K of an adapter bank) on the\n"
           "ranks where its model lives, streaming the text as it is decoded. Every option of\n"
           "`melbo-rank gen` but --model (the bank's is used) and --logits; also --name NAME and\n"
           "--private as for melbo submit. Without --json, standard output is exactly the\n"
           "completions, one after another; the job id and progress go to standard error.\n\n");
    melbo_opts_usage(stdout, &melbo_gen_cmd_table, 0);
}

/* The spec's options being built (owned). */
struct gen_build {
    Melbo__Option **opts;
    size_t n;
};

static void add(struct gen_build *b, const char *name, char *value_owned) {
    Melbo__Option *o = melbo_xmalloc(sizeof *o);
    melbo__option__init(o);
    o->name = melbo_xstrdup(name);
    o->value = value_owned;
    b->opts = melbo_xrealloc(b->opts, sizeof *b->opts * (b->n + 1));
    b->opts[b->n++] = o;
}

static void gen_build_free(struct gen_build *b) {
    for (size_t i = 0; i < b->n; i++) {
        free(b->opts[i]->name);
        free(b->opts[i]->value);
        free(b->opts[i]);
    }
    free(b->opts);
}

/* The parser's visitor: accepted options join the spec in command-line order. */
static int add_option(void *ctx, const struct melbo_opt *row, const char *name, const char *val,
                      struct melbo_err *err) {
    struct gen_build *b = ctx;
    (void)row;
    if (!strcmp(name, "model"))
        return melbo_err_set(err, MELBO_EINVAL, "--model: melbo gen runs on the bank's model");
    if (!strcmp(name, "logits"))
        return melbo_err_set(err, MELBO_EINVAL, "--logits is for melbo-rank gen --json");
    if (val && !strcmp(name, "prompts")) { /* sent as its text, read as the user */
        char *text = NULL;
        int ret = melbo_file_read_capped(val, GEN_PROMPTS_CAP, "--prompts", &text, NULL, err);
        if (ret)
            return ret;
        add(b, "prompts-jsonl", text);
        return 0;
    }
    add(b, name, val ? melbo_xstrdup(val) : NULL);
    return 0;
}

/* What the stream printed so far: completions are printed in order, each when all before it
 * are; the one in front live. Texts of the ones behind are kept until their turn. */
struct gen_out {
    int cur;          // the completion being printed
    int n;            // size of the arrays
    char **pending;   // (n) text received for completions after cur, owned
    size_t *len;      // (n)
    unsigned char *done;
};

static void out_grow(struct gen_out *o, int seq) {
    if (seq < o->n)
        return;
    int n = seq + 16;
    o->pending = melbo_xrealloc(o->pending, sizeof *o->pending * (size_t)n);
    o->len = melbo_xrealloc(o->len, sizeof *o->len * (size_t)n);
    o->done = melbo_xrealloc(o->done, (size_t)n);
    for (int i = o->n; i < n; i++)
        o->pending[i] = NULL, o->len[i] = 0, o->done[i] = 0;
    o->n = n;
}

/* Prints completion cur's held text, and every following one that is already done. */
static void out_flush(struct gen_out *o) {
    while (o->cur < o->n) {
        if (o->len[o->cur])
            fwrite(o->pending[o->cur], 1, o->len[o->cur], stdout);
        free(o->pending[o->cur]);
        o->pending[o->cur] = NULL, o->len[o->cur] = 0;
        if (!o->done[o->cur])
            break;
        fputc('\n', stdout);
        o->cur++;
    }
    fflush(stdout);
}

static void out_event(struct gen_out *o, const Melbo__JobEvent *e) {
    if (!e->has_sequence || e->sequence < 0 || e->sequence > 1000000)
        return;
    int seq = e->sequence;
    out_grow(o, seq);
    if (e->kind == MELBO__JOB_EVENT__KIND__TOKENS && e->text && seq >= o->cur) {
        size_t k = strlen(e->text);
        o->pending[seq] = melbo_xrealloc(o->pending[seq], o->len[seq] + k + 1);
        memcpy(o->pending[seq] + o->len[seq], e->text, k);
        o->len[seq] += k;
    } else if (e->kind == MELBO__JOB_EVENT__KIND__COMPLETION) {
        o->done[seq] = 1;
    }
    out_flush(o);
}

static void out_free(struct gen_out *o) {
    for (int i = 0; i < o->n; i++)
        free(o->pending[i]);
    free(o->pending);
    free(o->len);
    free(o->done);
}

int melbo_cli_gen_submit(struct melbo_cli *c, Melbo__Option **opts, size_t n, uint64_t *job) {
    Melbo__JobSpec spec = MELBO__JOB_SPEC__INIT;
    spec.n_options = n;
    spec.options = opts;
    spec.command = "gen";
    Melbo__SubmitRequest sr = MELBO__SUBMIT_REQUEST__INIT;
    sr.spec = &spec;
    Melbo__Envelope env = MELBO__ENVELOPE__INIT, *rep = NULL;
    env.body_case = MELBO__ENVELOPE__BODY_SUBMIT;
    env.submit = &sr;
    int want = MELBO__ENVELOPE__BODY_SUBMITTED;
    int status = c->conn.fd >= 0 ? melbo_cli_call_expect(c, &env, &rep, want)
                                 : melbo_cli_request(c, &env, &rep, want);
    if (status == 0) {
        *job = rep->submitted->job_id;
        melbo__envelope__free_unpacked(rep, NULL);
    }
    return status;
}

struct gen_cli_ctx {
    int json;
    uint64_t job;
    struct gen_out out;
};

static void on_gen_event(void *vctx, const Melbo__JobEvent *e) {
    struct gen_cli_ctx *g = vctx;
    if (!g->json && e->kind == MELBO__JOB_EVENT__KIND__STATE) /* progress: stderr */
        fprintf(stderr, "melbo gen: job %llu %s%s%s\n", (unsigned long long)g->job,
                melbo_job_state_name(e->state), e->detail && *e->detail ? ": " : "",
                melbo_cli_safe(e->detail, 0));
    if (g->json)
        melbo_cli_print_event_json(e);
    else
        out_event(&g->out, e);
}

int melbo_cli_cmd_gen(struct melbo_cli *c, int argc, char **argv) {
    struct gen_build b = {NULL, 0};
    struct melbo_gen_cmd_params p;
    struct melbo_err err = {0};
    struct gen_cli_ctx g = {c->json, 0, {0, 0, NULL, NULL, NULL}};
    char **rest = melbo_xcalloc((size_t)argc + 1, sizeof *rest);
    int n_rest = 0, status;
    uint64_t job = 0;
    /* the job's own options first (not melbo-rank gen's) */
    for (int i = 0; i < argc; i++) {
        if (i > 0 && !strcmp(argv[i], "--name") && i + 1 < argc) {
            add(&b, "name", melbo_xstrdup(argv[++i]));
        } else if (i > 0 && (!strcmp(argv[i], "--private") || !strcmp(argv[i], "--no-private"))) {
            add(&b, argv[i] + 2, NULL);
        } else if (i > 0 && !strcmp(argv[i], "--json")) {
            g.json = 1;
        } else {
            rest[n_rest++] = argv[i];
        }
    }
    struct melbo_opts_parse_cfg cfg = {"melbo gen", 0, MELBO_OPT_REQUIRED, add_option, &b};
    melbo_opts_init(&melbo_gen_cmd_table, &p);
    status = melbo_opts_parse(&melbo_gen_cmd_table, &p, n_rest, rest, &cfg, &err);
    int have_bank = p.bank != NULL;
    melbo_opts_free(&melbo_gen_cmd_table, &p);
    if (status == 1) {
        gen_usage();
        status = MELBO_CLI_OK;
        goto out;
    }
    if (status == 0 && !have_bank)
        status = melbo_err_set(&err, MELBO_EINVAL, "--bank ID is required (melbo bank ls)");
    if (status < 0) {
        fprintf(stderr, "melbo gen: %s\n", err.msg);
        status = MELBO_CLI_USAGE;
        goto out;
    }
    if ((status = melbo_cli_connect(c)) != 0 ||
        (status = melbo_cli_gen_submit(c, b.opts, b.n, &job)) != 0)
        goto out;
    fprintf(stderr, "melbo gen: job %llu\n", (unsigned long long)job);
    g.job = job;
    struct melbo_cli_follow_opts fo = melbo_cli_follow_defaults();
    status = melbo_cli_follow(c, job, &fo, on_gen_event, &g);
    if (!g.json)
        out_flush(&g.out);
out:
    out_free(&g.out);
    gen_build_free(&b);
    free(rest);
    return status;
}
