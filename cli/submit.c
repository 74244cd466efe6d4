/*
 * cli/submit.c - `melbo submit`: a job's command line sent as a JobSpec of options by name.
 *
 * The flags are the rows of the job table (options/job.h: every option of `melbo-rank train`
 * but the ones the coordinator chooses, plus the job's own), parsed here with the same engine
 * as the ranks' so that a misspelt flag or a bad value is refused before anything is sent. What
 * needs the model (layers, the tensor-parallel layout) is the coordinator's check, and its
 * refusal is printed as it comes. Paths (--model, --init, --prompts, ...) are made absolute,
 * since the ranks run in the job's directory. On success the job id is the only thing printed
 * on stdout.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/mem.h"
#include "options/job.h"

static void submit_usage(void) {
    printf("usage: melbo submit --model DIR --radius R [prompts] [options]\n"
           "       melbo submit --model DIR --adapter-rank R [prompts] [options]\n"
           "\n"
           "Submits a training job to the coordinator and prints its id. Every option of\n"
           "`melbo-rank train` except --out, --checkpoint, --resume, --stop-on-signal and\n"
           "--job-id, which the coordinator chooses; paths are made absolute and must be readable\n"
           "on the coordinator's host.\n\n");
    melbo_job_usage(stdout);
}

/* p made absolute against the working directory (a new string). */
static char *abs_path(const char *p) {
    char cwd[4096];
    if (p[0] == '/' || getcwd(cwd, sizeof cwd) == NULL)
        return melbo_xstrdup(p);
    size_t n = strlen(cwd) + strlen(p) + 2;
    char *s = melbo_xmalloc(n);
    snprintf(s, n, "%s/%s", cwd, p);
    return s;
}

/* The spec being built: its options and the strings they point to, freed together. */
struct spec_build {
    Melbo__Option **opts;
    size_t n;
};

static void spec_build_free(struct spec_build *b) {
    for (size_t i = 0; i < b->n; i++) {
        free(b->opts[i]->name);
        free(b->opts[i]->value);
        free(b->opts[i]);
    }
    free(b->opts);
}

/* The parser's visitor: every accepted option joins the spec in command-line order. */
static int add_option(void *ctx, const struct melbo_opt *row, const char *name, const char *val,
                      struct melbo_err *err) {
    struct spec_build *b = ctx;
    (void)err;
    Melbo__Option *o = melbo_xmalloc(sizeof *o);
    melbo__option__init(o);
    o->name = melbo_xstrdup(name);
    o->value = val == NULL ? NULL : melbo_opt_is_path(row, name) ? abs_path(val)
                                                                 : melbo_xstrdup(val);
    b->opts = melbo_xrealloc(b->opts, sizeof *b->opts * (b->n + 1));
    b->opts[b->n++] = o;
    return 0;
}

int melbo_cli_cmd_submit(struct melbo_cli *c, int argc, char **argv) {
    struct spec_build b = {NULL, 0};
    struct melbo_job_params jp;
    struct melbo_err err = {0};
    struct melbo_opts_parse_cfg cfg = {"melbo submit", MELBO_OPT_LOCAL, MELBO_OPT_LOCAL,
                                       add_option, &b};
    Melbo__Envelope *rep = NULL;
    melbo_job_params_init(&jp);
    int status = melbo_opts_parse(&melbo_job_table, &jp, argc, argv, &cfg, &err);
    if (status == 0 && melbo_train_params_check(&jp.train, &err) != 0)
        status = -1;
    melbo_job_params_free(&jp);
    if (status == 1) {
        submit_usage();
        status = MELBO_CLI_OK;
        goto out;
    }
    if (status < 0) {
        fprintf(stderr, "melbo submit: %s\n", err.msg);
        status = MELBO_CLI_USAGE;
        goto out;
    }
    if ((status = melbo_cli_connect(c)) != 0)
        goto out;
    Melbo__JobSpec spec = MELBO__JOB_SPEC__INIT;
    spec.n_options = b.n;
    spec.options = b.opts;
    Melbo__SubmitRequest sr = MELBO__SUBMIT_REQUEST__INIT;
    sr.spec = &spec;
    Melbo__Envelope env = MELBO__ENVELOPE__INIT;
    env.body_case = MELBO__ENVELOPE__BODY_SUBMIT;
    env.submit = &sr;
    if ((status = melbo_cli_call(c, &env, &rep)) != 0)
        goto out;
    if (rep->body_case != MELBO__ENVELOPE__BODY_SUBMITTED) {
        fprintf(stderr, "melbo: unexpected reply to submit\n");
        status = MELBO_CLI_UNREACHABLE;
    } else {
        printf("%llu\n", (unsigned long long)rep->submitted->job_id);
    }
out:
    melbo__envelope__free_unpacked(rep, NULL);
    spec_build_free(&b);
    return status;
}
