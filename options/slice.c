/* options/slice.c - Python slices (options/slice.h). */
#include "options/slice.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parses an optional integer in [p, end); returns 0 (absent), 1 (read) or -1 (bad). */
static int parse_part(const char *p, const char *end, long *out) {
    while (p < end && isspace((unsigned char)*p))
        p++;
    while (end > p && isspace((unsigned char)end[-1]))
        end--;
    if (p == end)
        return 0;
    char buf[32];
    if (end - p >= (long)sizeof buf)
        return -1;
    memcpy(buf, p, (size_t)(end - p));
    buf[end - p] = '\0';
    char *q;
    errno = 0;
    long v = strtol(buf, &q, 10);
    if (*q != '\0' || errno != 0)
        return -1;
    *out = v;
    return 1;
}

int melbo_slice_parse(const char *s, struct melbo_slice *out, struct melbo_err *err) {
    memset(out, 0, sizeof *out);
    out->step = 1;
    const char *c1 = strchr(s, ':'), *end = s + strlen(s);
    int w = 0;
    for (const char *p = s; *p && w < (int)sizeof out->text - 1; p++)
        if (!isspace((unsigned char)*p))
            out->text[w++] = *p;
    if (c1 == NULL) {
        if (parse_part(s, end, &out->start) != 1)
            goto bad;
        out->is_index = 1;
        return 0;
    }
    const char *c2 = strchr(c1 + 1, ':');
    if (c2 && strchr(c2 + 1, ':'))
        goto bad;
    int r1 = parse_part(s, c1, &out->start);
    int r2 = parse_part(c1 + 1, c2 ? c2 : end, &out->stop);
    int r3 = c2 ? parse_part(c2 + 1, end, &out->step) : 0;
    if (r1 < 0 || r2 < 0 || r3 < 0)
        goto bad;
    if (out->step == 0)
        return melbo_err_set(err, MELBO_EINVAL, "--target-tokens %s: slice step cannot be zero", s);
    out->has_start = r1 == 1;
    out->has_stop = r2 == 1;
    return 0;
bad:
    return melbo_err_set(err, MELBO_EINVAL,
                         "--target-tokens '%s' is not a Python slice or index (examples: \":\", "
                         "\"-3:\", \"2:10:2\", \"-1\")",
                         s);
}

int melbo_slice_indices(const struct melbo_slice *s, int len, int *idx) {
    if (s->is_index) {
        long k = s->start < 0 ? s->start + len : s->start;
        if (k < 0 || k >= len)
            return 0;
        idx[0] = (int)k;
        return 1;
    }
    long step = s->step, start, stop;
    /* CPython's PySlice_AdjustIndices */
    if (s->has_start) {
        start = s->start;
        if (start < 0) {
            start += len;
            if (start < 0)
                start = step < 0 ? -1 : 0;
        } else if (start >= len) {
            start = step < 0 ? len - 1 : len;
        }
    } else {
        start = step < 0 ? len - 1 : 0;
    }
    if (s->has_stop) {
        stop = s->stop;
        if (stop < 0) {
            stop += len;
            if (stop < 0)
                stop = step < 0 ? -1 : 0;
        } else if (stop >= len) {
            stop = step < 0 ? len - 1 : len;
        }
    } else {
        stop = step < 0 ? -1 : len;
    }
    int n = 0;
    if (step > 0)
        for (long i = start; i < stop; i += step)
            idx[n++] = (int)i;
    else
        for (long i = start; i > stop; i += step)
            idx[n++] = (int)i;
    return n;
}
