/* options/sweep.c - grids of training runs (options/sweep.h). */
#include "options/sweep.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"

/* Numeric options a sweep may not vary: the layout and the machine, not the method. */
static const char *const not_swept[] = {"tp", "dp", "threads", "checkpoint-every", "gen-batch"};

static int sweepable(const char *name, struct melbo_err *err) {
    const struct melbo_opt *row = melbo_opts_find(&melbo_train_table, name, NULL, NULL, NULL);
    if (row == NULL)
        return melbo_err_set(err, MELBO_EINVAL, "--sweep %s: no such training option", name);
    for (size_t k = 0; k < sizeof not_swept / sizeof not_swept[0]; k++)
        if (!strcmp(name, not_swept[k]))
            return melbo_err_set(err, MELBO_EINVAL,
                                 "--sweep %s: the layout and the machine are not swept", name);
    if (row->kind != MELBO_OPT_INT && row->kind != MELBO_OPT_U64 && row->kind != MELBO_OPT_REAL &&
        row->kind != MELBO_OPT_REAL_AUTO)
        return melbo_err_set(err, MELBO_EINVAL,
                             "--sweep %s: only numeric options are swept (%s takes no number)",
                             name, name);
    return 0;
}

int melbo_sweep_parse(struct melbo_sweep *s, const struct melbo_train_params *p,
                      struct melbo_err *err) {
    memset(s, 0, sizeof *s);
    s->n_points = 1;
    for (int i = 0; i < p->sweep.n; i++) {
        const char *spec = p->sweep.v[i], *eq = strchr(spec, '=');
        if (s->n_axes == MELBO_SWEEP_MAX_AXES)
            return melbo_err_set(err, MELBO_ERANGE, "--sweep: at most %d axes",
                                 MELBO_SWEEP_MAX_AXES);
        struct melbo_sweep_axis *a = &s->axis[s->n_axes];
        size_t n = eq ? (size_t)(eq - spec) : 0;
        if (eq == NULL || n == 0 || n >= sizeof a->name)
            return melbo_err_set(err, MELBO_EINVAL, "--sweep '%.60s' is not NAME=V1,V2,...", spec);
        memcpy(a->name, spec, n);
        a->name[n] = '\0';
        MELBO_TRY(sweepable(a->name, err));
        for (int j = 0; j < s->n_axes; j++)
            if (!strcmp(s->axis[j].name, a->name))
                return melbo_err_set(err, MELBO_EINVAL, "--sweep %s is given twice", a->name);
        s->n_axes++;
        const char *v = eq + 1;
        if (*v == '\0')
            return melbo_err_set(err, MELBO_EINVAL, "--sweep %s= has no values: an empty grid",
                                 a->name);
        for (;;) {
            const char *comma = strchr(v, ',');
            size_t len = comma ? (size_t)(comma - v) : strlen(v);
            if (len == 0)
                return melbo_err_set(err, MELBO_EINVAL, "--sweep %s: an empty value", a->name);
            if (a->n == MELBO_SWEEP_MAX_VALUES)
                return melbo_err_set(err, MELBO_ERANGE, "--sweep %s: more than %d values",
                                     a->name, MELBO_SWEEP_MAX_VALUES);
            a->values = melbo_xrealloc(a->values, sizeof *a->values * (size_t)(a->n + 1));
            a->values[a->n] = melbo_xmalloc(len + 1);
            memcpy(a->values[a->n], v, len);
            a->values[a->n][len] = '\0';
            struct melbo_train_params t; /* the value checked as the option's own */
            melbo_train_params_init(&t);
            int ret = melbo_opts_parse_one(&melbo_train_table, &t, a->name, a->values[a->n], err);
            melbo_train_params_free(&t);
            a->n++;
            if (ret) {
                melbo_err_prefix(err, "--sweep");
                return ret;
            }
            if (comma == NULL)
                break;
            v = comma + 1;
        }
        s->n_points *= a->n;
    }
    return 0;
}

/* The value index on every axis of point k: the first axis varies slowest. */
static void indices(const struct melbo_sweep *s, long long k, int *idx) {
    for (int i = s->n_axes - 1; i >= 0; i--) {
        idx[i] = (int)(k % s->axis[i].n);
        k /= s->axis[i].n;
    }
}

int melbo_sweep_apply(const struct melbo_sweep *s, long long k, struct melbo_train_params *p,
                      struct melbo_err *err) {
    int idx[MELBO_SWEEP_MAX_AXES];
    indices(s, k, idx);
    for (int i = 0; i < s->n_axes; i++)
        MELBO_TRY(melbo_opts_parse_one(&melbo_train_table, p, s->axis[i].name,
                                       s->axis[i].values[idx[i]], err));
    return 0;
}

void melbo_sweep_label(const struct melbo_sweep *s, long long k, char *buf, size_t n) {
    int idx[MELBO_SWEEP_MAX_AXES];
    size_t used = 0;
    indices(s, k, idx);
    buf[0] = '\0';
    for (int i = 0; i < s->n_axes && used < n; i++) {
        int w = snprintf(buf + used, n - used, "%s%s=%s", i ? " " : "", s->axis[i].name,
                         s->axis[i].values[idx[i]]);
        used += w > 0 ? (size_t)w : 0;
    }
}

void melbo_sweep_free(struct melbo_sweep *s) {
    for (int i = 0; i < s->n_axes; i++) {
        for (int j = 0; j < s->axis[i].n; j++)
            free(s->axis[i].values[j]);
        free(s->axis[i].values);
    }
    memset(s, 0, sizeof *s);
}
