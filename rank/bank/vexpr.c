/* rank/bank/vexpr.c - vector expressions (rank/bank/vexpr.h). */
#include "rank/bank/vexpr.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"

struct parser {
    const char *s, *p;
    const float *vec, *rnd;
    int n_vec, n_rand, d;
    double *acc;   // (d) result
    struct melbo_err *err;
};

static void skip(struct parser *ps) {
    while (isspace((unsigned char)*ps->p))
        ps->p++;
}

static int fail(struct parser *ps, const char *what) {
    return melbo_err_set(ps->err, MELBO_EINVAL,
                         "--vector '%s': %s at position %d (examples: 9, -10*22, 9-22, "
                         "0.5*3+0.5*7, random, none)",
                         ps->s, what, (int)(ps->p - ps->s) + 1);
}

/* atom with coefficient c, added into acc */
static int atom(struct parser *ps, double c) {
    skip(ps);
    const float *row = NULL; /* any alignment: `gen --bank` passes the file's mapping */
    if (isdigit((unsigned char)*ps->p)) {
        char *end;
        long k = strtol(ps->p, &end, 10);
        if (k < 0 || k >= ps->n_vec)
            return melbo_err_set(ps->err, MELBO_ERANGE,
                                 "--vector '%s': vector %ld is out of range (the bank has %d: 0..%d)",
                                 ps->s, k, ps->n_vec, ps->n_vec - 1);
        row = ps->vec + (size_t)k * ps->d;
        ps->p = end;
    } else if (!strncmp(ps->p, "random", 6) || (ps->p[0] == 'r' && isdigit((unsigned char)ps->p[1]))) {
        long k = 0;
        if (ps->p[1] == 'a') {
            ps->p += 6;
        } else {
            char *end;
            k = strtol(ps->p + 1, &end, 10);
            ps->p = end;
        }
        if (k < 0 || k >= ps->n_rand)
            return melbo_err_set(ps->err, MELBO_ERANGE,
                                 "--vector '%s': random baseline %ld is out of range (the bank has %d)",
                                 ps->s, k, ps->n_rand);
        row = ps->rnd + (size_t)k * ps->d;
    } else if (!strncmp(ps->p, "none", 4)) {
        ps->p += 4;
        return 0;
    } else {
        return fail(ps, "expected a vector index, random, rK or none");
    }
    const unsigned char *bytes = (const unsigned char *)row;
    for (int j = 0; j < ps->d; j++) {
        float x;
        memcpy(&x, bytes + sizeof(float) * (size_t)j, sizeof x); /* never a misaligned load */
        ps->acc[j] += c * x;
    }
    return 0;
}

static int term(struct parser *ps, double sign) {
    skip(ps);
    if (*ps->p == '-') {
        ps->p++;
        return term(ps, -sign);
    }
    /* a number followed by '*' is a coefficient; a bare integer is an index */
    const char *save = ps->p;
    char *end;
    double c = strtod(ps->p, &end);
    if (end != ps->p) {
        const char *q = end;
        while (isspace((unsigned char)*q))
            q++;
        if (*q == '*') {
            ps->p = q + 1;
            return atom(ps, sign * c);
        }
    }
    ps->p = save;
    return atom(ps, sign);
}

int melbo_vexpr_eval(const char *expr, const float *vectors, int n_vec, const float *randoms,
                     int n_rand, int d, float *out, int *is_none, struct melbo_err *err) {
    struct parser ps = {expr, expr, vectors, randoms, n_vec, n_rand, d, NULL, err};
    ps.acc = melbo_xcalloc((size_t)d, sizeof(double));
    const char *q = expr;
    while (isspace((unsigned char)*q))
        q++;
    *is_none = strncmp(q, "none", 4) == 0;
    int ret = 0;
    if (*q == '\0') {
        ret = fail(&ps, "empty expression");
        goto out;
    }
    if ((ret = term(&ps, 1.0)) != 0)
        goto out;
    for (;;) {
        skip(&ps);
        if (*ps.p == '\0')
            break;
        if (*ps.p != '+' && *ps.p != '-') {
            ret = fail(&ps, "expected + or -");
            goto out;
        }
        double sign = *ps.p == '-' ? -1.0 : 1.0;
        ps.p++;
        if ((ret = term(&ps, sign)) != 0)
            goto out;
    }
    if (*is_none) {
        const char *r = q + 4;
        while (isspace((unsigned char)*r))
            r++;
        *is_none = *r == '\0';
    }
    for (int j = 0; j < d; j++)
        out[j] = (float)ps.acc[j];
out:
    free(ps.acc);
    return ret;
}
