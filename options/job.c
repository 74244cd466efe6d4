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

/* The visitor of melbo_job_parse: a path must be absolute (the ranks run elsewhere); a --model
 * without '/' is a registered model's name (the coordinator resolves it: coord/models.h). */
static int need_absolute(void *ctx, const struct melbo_opt *row, const char *name, const char *val,
                         struct melbo_err *err) {
    (void)ctx;
    if (!strcmp(name, "model") && strchr(val, '/') == NULL && val[0] != '\0')
        return 0;
    if (melbo_opt_is_path(row, name) && val[0] != '/')
        return melbo_err_set(err, MELBO_EINVAL,
                             "--%s '%s' must be an absolute path on the coordinator's filesystem",
                             name, val);
    return 0;
}

/* 1 when every byte of s is alphanumeric or in extra, and s has 1 to max bytes. */
static int word_of(const char *s, const char *extra, size_t max) {
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return 0;
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              (c && strchr(extra, c))))
            return 0;
    }
    return 1;
}

/* A Slurm time string: [D-]N[:N[:N]] (minutes, MM:SS, HH:MM:SS, D-HH, ...), at most 20 bytes. */
static int slurm_time_ok(const char *s) {
    if (strlen(s) == 0 || strlen(s) > 20 || strspn(s, "0123456789-:") != strlen(s))
        return 0;
    const char *p = s, *dash = strchr(s, '-');
    if (dash) {
        if (dash == s || strchr(dash + 1, '-'))
            return 0;
        p = dash + 1;
    }
    int fields = 0, digits = 0;
    for (; *p; p++) {
        if (*p == ':') {
            if (!digits)
                return 0;
            fields++;
            digits = 0;
        } else {
            digits++;
        }
    }
    return digits > 0 && fields <= 2;
}

/* value with control bytes, quotes and bytes >= 0x7f as \xHH, cut at 80 bytes, into buf. */
static void shown(char *buf, size_t n, const char *value) {
    size_t k = 0;
    for (const char *p = value; *p && k + 5 < n && p - value < 80; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c >= 0x7f || c == '\'' || c == '\\')
            k += (size_t)snprintf(buf + k, n - k, "\\x%02x", c);
        else
            buf[k++] = (char)c;
    }
    buf[k] = '\0';
}

int melbo_job_settings_check(const struct melbo_job_settings *js, struct melbo_err *err) {
    static const char name_extra[] = " _.,:;+=@/#%()[]{}<>!?^~|&*-";
    const struct {
        const char *flag, *value, *extra, *what;
        size_t max;
    } f[] = {
        {"partition", js->partition, "_.-,", "a Slurm partition (letters, digits, '_', '.', '-'; "
                                             "',' between several)", 128},
        {"account", js->account, "_.-", "a Slurm account (letters, digits, '_', '.', '-')", 128},
        {"qos", js->qos, "_.-", "a Slurm QoS (letters, digits, '_', '.', '-')", 128},
        {"constraint", js->constraint, "_.-&|,*[]():",
         "a Slurm constraint (letters, digits and _ . - & | , * [ ] ( ) :)", 256},
        {"name", js->name, name_extra, "a job name (printable ASCII without quotes, '\\', '$' "
                                       "or '`'; at most 64 bytes)", 64},
    };
    char buf[400];
    for (size_t i = 0; i < MELBO_ARRAY_SIZE(f); i++) {
        if (f[i].value == NULL || word_of(f[i].value, f[i].extra, f[i].max))
            continue;
        shown(buf, sizeof buf, f[i].value);
        return melbo_err_set(err, MELBO_EINVAL, "--%s '%s' is not %s", f[i].flag, buf, f[i].what);
    }
    if (js->time && !slurm_time_ok(js->time)) {
        shown(buf, sizeof buf, js->time);
        return melbo_err_set(err, MELBO_EINVAL,
                             "--time '%s' is not a Slurm time (MINUTES, MM:SS, HH:MM:SS, D-HH, "
                             "D-HH:MM or D-HH:MM:SS)",
                             buf);
    }
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
        ret = melbo_job_settings_check(&jp->job, err);
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
