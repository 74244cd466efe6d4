/* options/job.c - the job table and job specs read by name (options/job.h). */
#include "options/job.h"

#include <stdlib.h>
#include <string.h>

#include "common/mem.h"

#define MELBO_OPT_STRUCT struct melbo_job_settings
static const struct melbo_opt settings_rows[] = {
    MELBO_JOB_OPTIONS(MELBO_OPT_ROW, MELBO_OPT_HEADING_ROW)};
#undef MELBO_OPT_STRUCT
static const struct melbo_opt_table settings_table = {
    settings_rows, sizeof settings_rows / sizeof settings_rows[0]};

#define MELBO_OPT_STRUCT struct melbo_job_params
static const struct melbo_opt job_rows[] = {
    MELBO_OPT_TABLE_ROW(train, &melbo_train_table) MELBO_OPT_TABLE_ROW(job, &settings_table)};
#undef MELBO_OPT_STRUCT

const struct melbo_opt_table melbo_job_table = {job_rows, sizeof job_rows / sizeof job_rows[0]};

void melbo_job_params_init(struct melbo_job_params *jp) {
    memset(jp, 0, sizeof *jp);
    melbo_opts_init(&melbo_job_table, jp);
}

void melbo_job_params_free(struct melbo_job_params *jp) {
    melbo_opts_free(&melbo_job_table, jp);
    memset(jp, 0, sizeof *jp);
}

void melbo_argv_push(struct melbo_argv *a, const char *s) {
    if (a->n + 2 > a->cap) {
        a->cap = a->cap ? a->cap * 2 : 32;
        a->v = melbo_xrealloc(a->v, sizeof *a->v * (size_t)a->cap);
    }
    a->v[a->n++] = melbo_xstrdup(s);
    a->v[a->n] = NULL;
}

void melbo_argv_free(struct melbo_argv *a) {
    for (int i = 0; i < a->n; i++)
        free(a->v[i]);
    free(a->v);
    memset(a, 0, sizeof *a);
}

/* The visitor of melbo_job_parse: a path must be absolute (the ranks run elsewhere). */
static int need_absolute(void *ctx, const struct melbo_opt *row, const char *name, const char *val,
                         struct melbo_err *err) {
    (void)ctx;
    if (melbo_opt_is_path(row, name) && val[0] != '/')
        return melbo_err_set(err, MELBO_EINVAL,
                             "--%s '%s' must be an absolute path on the coordinator's filesystem",
                             name, val);
    return 0;
}

int melbo_job_parse(struct melbo_job_params *jp, const struct melbo_job_option *opts, size_t n,
                    struct melbo_err *err) {
    struct melbo_argv av = {0};
    struct melbo_opts_parse_cfg cfg = {"melbo submit", MELBO_OPT_LOCAL, MELBO_OPT_LOCAL,
                                       need_absolute, NULL};
    int ret = 0;
    melbo_job_params_init(jp);
    melbo_argv_push(&av, "submit");
    /* "--name=value": a value can never be taken for the next option */
    for (size_t i = 0; i < n && ret == 0; i++) {
        const char *name = opts[i].name ? opts[i].name : "";
        const struct melbo_opt *row = melbo_opts_find(&melbo_job_table, name, NULL, NULL, NULL);
        size_t len = strlen(name) + (opts[i].value ? strlen(opts[i].value) : 0) + 4;
        char *arg = melbo_xmalloc(len);
        if (row && melbo_opt_takes_value(row) && opts[i].value == NULL)
            ret = melbo_err_set(err, MELBO_EINVAL, "--%s needs a value", name);
        snprintf(arg, len, "--%s%s%s", name, opts[i].value ? "=" : "",
                 opts[i].value ? opts[i].value : "");
        melbo_argv_push(&av, arg);
        free(arg);
    }
    if (ret == 0)
        ret = melbo_opts_parse(&melbo_job_table, jp, av.n, av.v, &cfg, err);
    if (ret == 1)
        ret = melbo_err_set(err, MELBO_EINVAL, "--help is not a job");
    if (ret == 0)
        ret = melbo_train_params_check(&jp->train, err);
    melbo_argv_free(&av);
    return ret;
}

void melbo_job_rank_argv(const struct melbo_job_option *opts, size_t n, struct melbo_argv *av) {
    melbo_argv_push(av, "train");
    for (size_t i = 0; i < n; i++) {
        const struct melbo_opt *row =
            melbo_opts_find(&melbo_job_table, opts[i].name, NULL, NULL, NULL);
        if (row == NULL || (row->flags & MELBO_OPT_JOB)) /* the coordinator's, not the ranks' */
            continue;
        char flag[160];
        snprintf(flag, sizeof flag, "--%s", opts[i].name);
        melbo_argv_push(av, flag);
        if (opts[i].value)
            melbo_argv_push(av, opts[i].value);
    }
}

int melbo_job_ranks(const struct melbo_job_params *jp) {
    return jp->train.tp * jp->train.dp;
}

void melbo_job_usage(FILE *f) {
    melbo_opts_usage(f, &melbo_job_table, MELBO_OPT_LOCAL);
}
