/*
 * options/value.c - a value's life in the option engine (options/opt.h): the text of a command
 * line turned into a field by kind and checked, defaults, release, deep copies and the value
 * written back as text. options/opt_impl.h declares what the rest of the engine uses.
 */
#include "options/opt_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "options/prompts.h"
#include "options/slice.h"

/* The field of row in the struct at base. */
#define FIELD(base, row, type) ((type *)((char *)(base) + (row)->offset))

/* ---------------------------------------------------------------------------------------------
 * Choices: "a|b,alias|c" - alternatives separated by '|', aliases of one after ','.
 */

/* Index of the alternative that val spells (an alias counts), or -1. */
static int choice_index(const char *choices, const char *val) {
    int idx = 0;
    const char *p = choices;
    size_t vl = strlen(val);
    while (*p) {
        const char *end = p + strcspn(p, ",|");
        if ((size_t)(end - p) == vl && !strncmp(p, val, vl))
            return idx;
        if (*end == '|')
            idx++;
        p = *end ? end + 1 : end;
    }
    return -1;
}

/* The first spelling of alternative idx into buf. */
static void choice_name(const char *choices, int idx, char *buf, size_t n) {
    const char *p = choices;
    for (int i = 0; i < idx && p; i++) {
        p = strchr(p, '|');
        p = p ? p + 1 : NULL;
    }
    size_t len = p ? strcspn(p, ",|") : 0;
    snprintf(buf, n, "%.*s", (int)len, p ? p : "");
}

/* "a, b or c" (first spellings) into buf. */
static void choice_list(const char *choices, char *buf, size_t n) {
    int count = 1;
    for (const char *p = choices; *p; p++)
        count += *p == '|';
    buf[0] = '\0';
    for (int i = 0; i < count; i++) {
        char one[64];
        choice_name(choices, i, one, sizeof one);
        size_t l = strlen(buf);
        snprintf(buf + l, n - l, "%s%s", i == 0 ? "" : i == count - 1 ? " or " : ", ", one);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Checks.
 */

int melbo__opt_is_later(const char *def) {
    return def && def[0] == '(';
}

/* "must be >= 0", "must be positive", "must be in (0, 1]", ... for a number check. */
static void range_text(const struct melbo_opt_check *c, int whole, char *buf, size_t n) {
    int has_lo = isfinite(c->lo), has_hi = isfinite(c->hi);
    if (has_lo && has_hi && whole && !c->lo_open && !c->hi_open)
        snprintf(buf, n, "must be an integer in %.17g..%.17g", c->lo, c->hi);
    else if (has_lo && has_hi)
        snprintf(buf, n, "must be in %c%.17g, %.17g%c", c->lo_open ? '(' : '[', c->lo, c->hi,
                 c->hi_open ? ')' : ']');
    else if (has_lo && c->lo_open && c->lo == 0)
        snprintf(buf, n, "must be positive");
    else if (has_lo)
        snprintf(buf, n, "must be %s %.17g", c->lo_open ? ">" : ">=", c->lo);
    else if (has_hi)
        snprintf(buf, n, "must be %s %.17g", c->hi_open ? "<" : "<=", c->hi);
    else
        snprintf(buf, n, "must be a number");
}

static int in_range(const struct melbo_opt_check *c, double x) {
    if (c->lo_open ? !(x > c->lo) : !(x >= c->lo))
        return 0;
    return c->hi_open ? x < c->hi : x <= c->hi;
}

static int range_err(const struct melbo_opt *row, const char *val, int whole,
                     struct melbo_err *err) {
    char why[128];
    range_text(&row->check, whole, why, sizeof why);
    return melbo_err_set(err, MELBO_EINVAL, "--%s %s (got %s)", row->name, why, val);
}

/* ---------------------------------------------------------------------------------------------
 * Parsing one value.
 */

static int parse_real(const char *name, const char *val, double *out, struct melbo_err *err) {
    char *end;
    errno = 0;
    double x = strtod(val, &end);
    if (*val == '\0' || *end != '\0')
        return melbo_err_set(err, MELBO_EINVAL, "--%s: '%s' is not a number", name, val);
    if (errno != 0 || !isfinite(x))
        return melbo_err_set(err, MELBO_EINVAL, "--%s: '%s' is not a finite number", name, val);
    *out = x;
    return 0;
}

static int parse_int(const struct melbo_opt *row, const char *val, int *out,
                     struct melbo_err *err) {
    char *end;
    errno = 0;
    long v = strtol(val, &end, 10);
    if (*val == '\0' || *end != '\0' || errno != 0 || v < -2000000000L || v > 2000000000L)
        return melbo_err_set(err, MELBO_EINVAL, "--%s: '%s' is not an integer", row->name, val);
    if (!in_range(&row->check, (double)v))
        return range_err(row, val, 1, err);
    *out = (int)v;
    return 0;
}

static int parse_u64(const struct melbo_opt *row, const char *val, uint64_t *out,
                     struct melbo_err *err) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(val, &end, 10);
    if (*val == '\0' || *val == '-' || *val == '+' || *end != '\0' || errno != 0)
        return melbo_err_set(err, MELBO_EINVAL, "--%s: '%s' is not a non-negative integer",
                             row->name, val);
    if (!in_range(&row->check, (double)v))
        return range_err(row, val, 1, err);
    *out = v;
    return 0;
}

static int parse_checked_real(const struct melbo_opt *row, const char *val, double *out,
                              struct melbo_err *err) {
    MELBO_TRY(parse_real(row->name, val, out, err));
    return in_range(&row->check, *out) ? 0 : range_err(row, val, 0, err);
}

static int parse_pair(const struct melbo_opt *row, const char *val, double out[2],
                      struct melbo_err *err) {
    const char *comma = strchr(val, ',');
    char first[64];
    if (comma == NULL || (size_t)(comma - val) >= sizeof first)
        return melbo_err_set(err, MELBO_EINVAL, "--%s '%s': expected %s", row->name, val,
                             row->metavar ? row->metavar : "A,B");
    snprintf(first, sizeof first, "%.*s", (int)(comma - val), val);
    double x[2];
    if (parse_real(row->name, first, &x[0], err) || parse_real(row->name, comma + 1, &x[1], err))
        return melbo_err_set(err, MELBO_EINVAL, "--%s '%s': expected %s", row->name, val,
                             row->metavar ? row->metavar : "A,B");
    if (!in_range(&row->check, x[0]) || !in_range(&row->check, x[1]))
        return range_err(row, val, 0, err);
    out[0] = x[0];
    out[1] = x[1];
    return 0;
}

static int parse_choice(const struct melbo_opt *row, const char *val, int *idx,
                        struct melbo_err *err) {
    *idx = choice_index(row->check.choices, val);
    if (*idx >= 0)
        return 0;
    char list[256];
    choice_list(row->check.choices, list, sizeof list);
    return melbo_err_set(err, MELBO_EINVAL, "--%s must be %s, not '%s'", row->name, list, val);
}

static void set_str(char **dst, const char *v) {
    free(*dst);
    *dst = v ? melbo_xstrdup(v) : NULL;
}

/*
 * Parses val (NULL for a flag) into the field of row in the struct at base. name is how it was
 * spelled (prompt options, "no-" flags), negated 1 for "no-X".
 */
int melbo__opt_parse_value(const struct melbo_opt *row, void *base, const char *name, int negated,
                           const char *val, struct melbo_err *err) {
    int idx;
    switch (row->kind) {
    case MELBO_OPT_INT:
        return parse_int(row, val, FIELD(base, row, int), err);
    case MELBO_OPT_U64:
        return parse_u64(row, val, FIELD(base, row, uint64_t), err);
    case MELBO_OPT_REAL:
        return parse_checked_real(row, val, FIELD(base, row, double), err);
    case MELBO_OPT_REAL_AUTO: {
        int *is_auto = (int *)((char *)base + row->aux);
        if (!strcmp(val, "auto")) {
            *is_auto = 1;
            return 0;
        }
        MELBO_TRY(parse_checked_real(row, val, FIELD(base, row, double), err));
        *is_auto = 0;
        return 0;
    }
    case MELBO_OPT_STR:
        if (row->check.choices && choice_index(row->check.choices, val) < 0)
            return parse_choice(row, val, &idx, err);
        /* fall through */
    case MELBO_OPT_PATH:
        if (val[0] == '\0')
            return melbo_err_set(err, MELBO_EINVAL, "--%s needs a non-empty value", row->name);
        set_str(FIELD(base, row, char *), val);
        return 0;
    case MELBO_OPT_FLAG:
        *FIELD(base, row, int) = !negated;
        return 0;
    case MELBO_OPT_CHOICE:
        MELBO_TRY(parse_choice(row, val, &idx, err));
        *FIELD(base, row, int) = idx;
        return 0;
    case MELBO_OPT_PAIR:
        return parse_pair(row, val, FIELD(base, row, double), err);
    case MELBO_OPT_SLICE:
        return melbo_slice_parse(val, FIELD(base, row, struct melbo_slice), err);
    case MELBO_OPT_LIST: {
        struct melbo_str_list *l = FIELD(base, row, struct melbo_str_list);
        l->v = melbo_xrealloc(l->v, sizeof *l->v * (size_t)(l->n + 1));
        l->v[l->n++] = melbo_xstrdup(val);
        return 0;
    }
    case MELBO_OPT_PROMPTS: {
        int r = melbo_prompt_opts_offer(FIELD(base, row, struct melbo_prompt_opts), name, val, err);
        return r < 0 ? r : 0;
    }
    case MELBO_OPT_HEADING:
    case MELBO_OPT_TABLE:
        break;
    }
    return melbo_err_set(err, MELBO_EINVAL, "--%s is not an option", name);
}

/* ---------------------------------------------------------------------------------------------
 * Defaults, release, copy.
 */

void melbo_opts_init(const struct melbo_opt_table *t, void *base) {
    struct melbo_err ignored;
    for (size_t i = 0; i < t->n; i++) {
        const struct melbo_opt *row = &t->rows[i];
        const char *def = row->def;
        int later = melbo__opt_is_later(def);
        switch (row->kind) {
        case MELBO_OPT_HEADING:
            break;
        case MELBO_OPT_TABLE:
            melbo_opts_init(row->sub, FIELD(base, row, char));
            break;
        case MELBO_OPT_INT:
            *FIELD(base, row, int) = later ? MELBO_OPT_UNSET_INT : def ? atoi(def) : 0;
            break;
        case MELBO_OPT_U64:
            *FIELD(base, row, uint64_t) = def && !later ? strtoull(def, NULL, 10) : 0;
            break;
        case MELBO_OPT_REAL:
            *FIELD(base, row, double) = later ? NAN : def ? strtod(def, NULL) : 0.0;
            break;
        case MELBO_OPT_REAL_AUTO:
            *FIELD(base, row, double) =
                def && !later && strcmp(def, "auto") ? strtod(def, NULL) : 0.0;
            *(int *)((char *)base + row->aux) = def && !strcmp(def, "auto");
            break;
        case MELBO_OPT_STR:
        case MELBO_OPT_PATH:
            *FIELD(base, row, char *) = def && !later ? melbo_xstrdup(def) : NULL;
            break;
        case MELBO_OPT_FLAG: /* -1: decided later (the command resolves it) */
            *FIELD(base, row, int) = later ? -1 : def && !strcmp(def, "1");
            break;
        case MELBO_OPT_CHOICE:
            *FIELD(base, row, int) = def && !later ? choice_index(row->check.choices, def) : 0;
            break;
        case MELBO_OPT_PAIR: {
            double *x = FIELD(base, row, double);
            x[0] = x[1] = 0.0;
            if (def && !later)
                parse_pair(row, def, x, &ignored);
            break;
        }
        case MELBO_OPT_SLICE:
            melbo_slice_parse(def && !later ? def : ":", FIELD(base, row, struct melbo_slice),
                              &ignored);
            break;
        case MELBO_OPT_LIST:
            memset(FIELD(base, row, struct melbo_str_list), 0, sizeof(struct melbo_str_list));
            break;
        case MELBO_OPT_PROMPTS:
            melbo_prompt_opts_init(FIELD(base, row, struct melbo_prompt_opts));
            break;
        }
    }
}

void melbo_str_list_free(struct melbo_str_list *l) {
    for (int i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

void melbo_opts_free(const struct melbo_opt_table *t, void *base) {
    for (size_t i = 0; i < t->n; i++) {
        const struct melbo_opt *row = &t->rows[i];
        switch (row->kind) {
        case MELBO_OPT_TABLE:
            melbo_opts_free(row->sub, FIELD(base, row, char));
            break;
        case MELBO_OPT_STR:
        case MELBO_OPT_PATH:
            set_str(FIELD(base, row, char *), NULL);
            break;
        case MELBO_OPT_LIST:
            melbo_str_list_free(FIELD(base, row, struct melbo_str_list));
            break;
        case MELBO_OPT_PROMPTS:
            melbo_prompt_opts_free(FIELD(base, row, struct melbo_prompt_opts));
            break;
        default:
            break;
        }
    }
}

void melbo_opts_copy(const struct melbo_opt_table *t, void *dst, const void *src) {
    for (size_t i = 0; i < t->n; i++) {
        const struct melbo_opt *row = &t->rows[i];
        const void *from = (const char *)src + row->offset;
        void *to = (char *)dst + row->offset;
        switch (row->kind) {
        case MELBO_OPT_HEADING:
            break;
        case MELBO_OPT_TABLE:
            melbo_opts_copy(row->sub, to, from);
            break;
        case MELBO_OPT_INT:
        case MELBO_OPT_FLAG:
        case MELBO_OPT_CHOICE:
            memcpy(to, from, sizeof(int));
            break;
        case MELBO_OPT_U64:
            memcpy(to, from, sizeof(uint64_t));
            break;
        case MELBO_OPT_REAL:
            memcpy(to, from, sizeof(double));
            break;
        case MELBO_OPT_REAL_AUTO:
            memcpy(to, from, sizeof(double));
            memcpy((char *)dst + row->aux, (const char *)src + row->aux, sizeof(int));
            break;
        case MELBO_OPT_PAIR:
            memcpy(to, from, 2 * sizeof(double));
            break;
        case MELBO_OPT_SLICE:
            memcpy(to, from, sizeof(struct melbo_slice));
            break;
        case MELBO_OPT_STR:
        case MELBO_OPT_PATH: {
            const char *s = *(char *const *)from;
            *(char **)to = s ? melbo_xstrdup(s) : NULL;
            break;
        }
        case MELBO_OPT_LIST: {
            const struct melbo_str_list *s = from;
            struct melbo_str_list *d = to;
            d->n = s->n;
            d->v = s->n ? melbo_xcalloc((size_t)s->n, sizeof *d->v) : NULL;
            for (int k = 0; k < s->n; k++)
                d->v[k] = melbo_xstrdup(s->v[k]);
            break;
        }
        case MELBO_OPT_PROMPTS:
            melbo_prompt_opts_copy(to, from);
            break;
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * Formatting.
 */

void melbo_opt_key(const struct melbo_opt *row, char *buf, size_t n) {
    snprintf(buf, n, "%s", row->name ? row->name : "");
    for (char *p = buf; *p; p++)
        if (*p == '-')
            *p = '_';
}

int melbo_opts_format(const struct melbo_opt *row, const void *base, enum melbo_opt_style style,
                      char *buf, size_t n) {
    const char *num = style == MELBO_OPT_STYLE_BANK ? "%.9g" : "%.17g";
    const void *field = (const char *)base + row->offset;
    int w = -1;
    switch (row->kind) {
    case MELBO_OPT_INT:
        w = snprintf(buf, n, "%d", *(const int *)field);
        break;
    case MELBO_OPT_U64:
        w = snprintf(buf, n, "%llu", (unsigned long long)*(const uint64_t *)field);
        break;
    case MELBO_OPT_REAL:
    case MELBO_OPT_REAL_AUTO:
        w = snprintf(buf, n, num, *(const double *)field);
        break;
    case MELBO_OPT_STR:
    case MELBO_OPT_PATH: {
        const char *s = *(char *const *)field;
        w = snprintf(buf, n, "%s", s ? s : "");
        break;
    }
    case MELBO_OPT_FLAG:
        w = snprintf(buf, n, "%s", *(const int *)field ? "true" : "false");
        break;
    case MELBO_OPT_CHOICE:
        choice_name(row->check.choices, *(const int *)field, buf, n);
        w = (int)strlen(buf);
        break;
    case MELBO_OPT_PAIR: {
        const double *x = field;
        w = style == MELBO_OPT_STYLE_BANK ? snprintf(buf, n, "[%.9g, %.9g]", x[0], x[1])
                                          : snprintf(buf, n, "%.17g,%.17g", x[0], x[1]);
        break;
    }
    case MELBO_OPT_SLICE:
        w = snprintf(buf, n, "%s", ((const struct melbo_slice *)field)->text);
        break;
    default:
        return -1;
    }
    return w < 0 || (size_t)w >= n ? -1 : 0;
}

void melbo_opts_each(const struct melbo_opt_table *t, const void *base, unsigned want,
                     melbo_opts_each_fn fn, void *ctx) {
    for (size_t i = 0; i < t->n; i++) {
        const struct melbo_opt *row = &t->rows[i];
        if (row->kind == MELBO_OPT_TABLE)
            melbo_opts_each(row->sub, (const char *)base + row->offset, want, fn, ctx);
        else if (row->kind != MELBO_OPT_HEADING && (row->flags & want) == want)
            fn(ctx, row, base);
    }
}
