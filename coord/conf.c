/* coord/conf.c - the limits of coord.conf (coord/conf.h). */
#include "coord/conf.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct limit_row {
    const char *key;
    size_t off;
    int64_t def, lo, hi;
    const char *help;
};

static const struct limit_row rows[] = {
#define MELBO_COORD_LIMIT_ROW(field, key, def, lo, hi, help)                                       \
    {key, offsetof(struct melbo_coord_limits, field), def, lo, hi, help},
    MELBO_COORD_LIMITS(MELBO_COORD_LIMIT_ROW)
#undef MELBO_COORD_LIMIT_ROW
};

#define N_ROWS (sizeof rows / sizeof rows[0])

void melbo_coord_limits_defaults(struct melbo_coord_limits *l) {
    for (size_t i = 0; i < N_ROWS; i++)
        *(int64_t *)((char *)l + rows[i].off) = rows[i].def;
}

const char *melbo_coord_limit_key(size_t off) {
    for (size_t i = 0; i < N_ROWS; i++)
        if (rows[i].off == off)
            return rows[i].key;
    return NULL;
}

void melbo_coord_limits_usage(void *file) {
    FILE *f = file;
    for (size_t i = 0; i < N_ROWS; i++)
        fprintf(f, "  %-34s %12lld  %s\n", rows[i].key, (long long)rows[i].def, rows[i].help);
}

/* One "key=value" line (key and value trimmed) into l. */
static int parse_line(struct melbo_coord_limits *l, const char *key, const char *val, int lineno,
                      struct melbo_err *err) {
    for (size_t i = 0; i < N_ROWS; i++) {
        if (strcmp(rows[i].key, key) != 0)
            continue;
        char *end;
        errno = 0;
        long long x = strtoll(val, &end, 10);
        if (*val == '\0' || *end != '\0' || errno != 0)
            return melbo_err_set(err, MELBO_EINVAL,
                                 "coord.conf line %d: %s needs a whole number, not '%s'", lineno,
                                 key, val);
        if (x < rows[i].lo || x > rows[i].hi)
            return melbo_err_set(err, MELBO_EINVAL,
                                 "coord.conf line %d: %s = %lld is outside %lld..%lld (%s)",
                                 lineno, key, x, (long long)rows[i].lo, (long long)rows[i].hi,
                                 rows[i].help);
        *(int64_t *)((char *)l + rows[i].off) = x;
        return 0;
    }
    return melbo_err_set(err, MELBO_EINVAL, "coord.conf line %d: unknown limit '%s'", lineno, key);
}

int melbo_coord_limits_parse(struct melbo_coord_limits *l, const char *text,
                             struct melbo_err *err) {
    melbo_coord_limits_defaults(l);
    int lineno = 0;
    for (const char *p = text; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        char line[512];
        lineno++;
        if (n >= sizeof line)
            n = sizeof line - 1;
        memcpy(line, p, n);
        line[n] = '\0';
        p = nl ? nl + 1 : NULL;
        char *hash = strchr(line, '#'), *k = line;
        if (hash)
            *hash = '\0';
        while (*k == ' ' || *k == '\t')
            k++;
        if (strncmp(k, "limits.", 7) != 0)
            continue; /* other readers' keys */
        char *eq = strchr(k, '=');
        if (eq == NULL)
            return melbo_err_set(err, MELBO_EINVAL, "coord.conf line %d: '%s' has no '='",
                                 lineno, k);
        *eq = '\0';
        char *v = eq + 1, *e = eq;
        while (e > k && (e[-1] == ' ' || e[-1] == '\t'))
            *--e = '\0';
        while (*v == ' ' || *v == '\t')
            v++;
        for (e = v + strlen(v); e > v && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r');)
            *--e = '\0';
        int ret = parse_line(l, k, v, lineno, err);
        if (ret)
            return ret;
    }
    return 0;
}
