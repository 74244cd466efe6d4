/*
 * options/opt.c - the option engine's lookup and command-line parsing (options/opt.h): names to
 * rows, argv to values (through options/value.c), required and once-only options.
 */
#include "options/opt_impl.h"

#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "options/prompts.h"

/* ---------------------------------------------------------------------------------------------
 * Lookup.
 */

static int row_matches(const struct melbo_opt *row, const char *name, int *negated) {
    *negated = 0;
    if (row->kind == MELBO_OPT_PROMPTS)
        return melbo_prompt_opt_find(name) != NULL;
    if (row->name == NULL)
        return 0;
    if (!strcmp(row->name, name))
        return 1;
    if (row->kind == MELBO_OPT_FLAG && !strncmp(name, "no-", 3) && !strcmp(row->name, name + 3))
        return *negated = 1;
    return 0;
}

const struct melbo_opt *melbo_opts_find(const struct melbo_opt_table *t, const char *name,
                                        void *base, void **field_base, int *negated) {
    int neg = 0;
    for (size_t i = 0; i < t->n; i++) {
        const struct melbo_opt *row = &t->rows[i];
        if (row->kind == MELBO_OPT_TABLE) {
            void *sub_base = base ? (char *)base + row->offset : NULL;
            const struct melbo_opt *r =
                melbo_opts_find(row->sub, name, sub_base, field_base, negated);
            if (r)
                return r;
        } else if (row_matches(row, name, &neg)) {
            if (field_base)
                *field_base = base;
            if (negated)
                *negated = neg;
            return row;
        }
    }
    return NULL;
}

int melbo_opt_takes_value(const struct melbo_opt *row) {
    return row->kind != MELBO_OPT_FLAG;
}

int melbo_opt_is_path(const struct melbo_opt *row, const char *name) {
    if (row->kind == MELBO_OPT_PROMPTS) {
        const struct melbo_prompt_opt_name *p = melbo_prompt_opt_find(name);
        return p && p->is_path;
    }
    return row->kind == MELBO_OPT_PATH;
}

/* ---------------------------------------------------------------------------------------------
 * Parsing a command line.
 */

/* The rows given so far (for REQUIRED). */
struct given {
    const struct melbo_opt **rows;
    size_t n;
};

static int was_given(const struct given *g, const struct melbo_opt *row) {
    for (size_t i = 0; i < g->n; i++)
        if (g->rows[i] == row)
            return 1;
    return 0;
}

static int check_required(const struct melbo_opt_table *t, const struct given *g, unsigned skip,
                          struct melbo_err *err) {
    for (size_t i = 0; i < t->n; i++) {
        const struct melbo_opt *row = &t->rows[i];
        if (row->kind == MELBO_OPT_TABLE)
            MELBO_TRY(check_required(row->sub, g, skip, err));
        else if ((row->flags & MELBO_OPT_REQUIRED) && !(row->flags & skip) && !was_given(g, row))
            return melbo_err_set(err, MELBO_EINVAL, "--%s%s%s is required", row->name,
                                 row->metavar ? " " : "", row->metavar ? row->metavar : "");
    }
    return 0;
}

int melbo_opts_parse_one(const struct melbo_opt_table *t, void *base, const char *name,
                         const char *val, struct melbo_err *err) {
    void *fb = base;
    int neg = 0;
    const struct melbo_opt *row = melbo_opts_find(t, name, base, &fb, &neg);
    if (row == NULL)
        return melbo_err_set(err, MELBO_ENOENT, "unknown option --%s", name);
    if (melbo_opt_takes_value(row) && val == NULL)
        return melbo_err_set(err, MELBO_EINVAL, "--%s needs a value", name);
    return melbo__opt_parse_value(row, fb, name, neg, val, err);
}

/* One argv element "--name" or "--name=value" at argv[*i]; advances *i past its value. */
static int parse_arg(const struct melbo_opt_table *t, void *base, int argc, char **argv, int *i,
                     const struct melbo_opts_parse_cfg *cfg, struct given *g,
                     struct melbo_err *err) {
    const char *arg = argv[*i], *command = cfg && cfg->command ? cfg->command : "this command";
    if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0')
        return melbo_err_set(err, MELBO_EINVAL, "unexpected argument '%s'", arg);
    char name[128];
    const char *eq = strchr(arg, '='), *val = NULL;
    size_t len = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
    if (len >= sizeof name)
        return melbo_err_set(err, MELBO_EINVAL, "unknown option %.200s (see %s --help)", arg,
                             command);
    snprintf(name, sizeof name, "%.*s", (int)len, arg + 2);
    void *fb = base;
    int neg = 0;
    const struct melbo_opt *row = melbo_opts_find(t, name, base, &fb, &neg);
    if (row == NULL)
        return melbo_err_set(err, MELBO_EINVAL, "unknown option --%s (see %s --help)", name,
                             command);
    if (cfg && (row->flags & cfg->refuse))
        return melbo_err_set(err, MELBO_EINVAL, "--%s %s", name,
                             row->flags & MELBO_OPT_LOCAL
                                 ? "is chosen by the coordinator (fetch the bank with melbo "
                                   "fetch JOB -o FILE)"
                                 : "is not an option of this command");
    if (melbo_opt_takes_value(row)) {
        if (eq)
            val = eq + 1;
        else if (*i + 1 < argc)
            val = argv[++*i];
        else
            return melbo_err_set(err, MELBO_EINVAL, "--%s needs a value", name);
    } else if (eq) {
        return melbo_err_set(err, MELBO_EINVAL, "--%s takes no value", name);
    }
    if (cfg && cfg->visit)
        MELBO_TRY(cfg->visit(cfg->ctx, row, name, val, err));
    g->rows = melbo_xrealloc(g->rows, sizeof *g->rows * (g->n + 1));
    g->rows[g->n++] = row;
    return melbo__opt_parse_value(row, fb, name, neg, val, err);
}

int melbo_opts_parse(const struct melbo_opt_table *t, void *base, int argc, char **argv,
                     const struct melbo_opts_parse_cfg *cfg, struct melbo_err *err) {
    struct given g = {NULL, 0};
    int ret = 0;
    for (int i = 1; i < argc && ret == 0; i++)
        ret = !strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")
                  ? 1
                  : parse_arg(t, base, argc, argv, &i, cfg, &g, err);
    if (ret == 0)
        ret = check_required(t, &g, cfg ? cfg->skip_required : 0, err);
    free(g.rows);
    return ret;
}
