/*
 * options/sweep.h - `--sweep NAME=V1,V2,...` (issue 19): a grid of training runs in one job.
 *
 * Each --sweep is one axis: a numeric option of `melbo-rank train` (INT, U64, REAL, or --radius
 * with auto) and its values; a value on an axis overrides the same option given plainly. The
 * points are the grid's cells in row-major order: the first --sweep varies slowest. Point k
 * runs with the base options plus its value of every axis, and gives the bank that the same
 * options would give in a job of their own.
 */
#ifndef MELBO_OPTIONS_SWEEP_H
#define MELBO_OPTIONS_SWEEP_H

#include <stddef.h>

#include "common/err.h"
#include "options/train.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MELBO_SWEEP_MAX_AXES 8
#define MELBO_SWEEP_MAX_VALUES 1024

struct melbo_sweep_axis {
    char name[48];  // the option, without dashes
    int n;          // its values
    char **values;  // (n) as given, owned
};

struct melbo_sweep {
    int n_axes;
    struct melbo_sweep_axis axis[MELBO_SWEEP_MAX_AXES];
    long long n_points; // product of the axes' counts (1 with no axis)
};

/*
 * Reads the --sweep values of p (p->sweep) into s, checking each: NAME a numeric option of the
 * training table that a sweep may vary (not --tp, --dp, --threads, --checkpoint-every), no
 * axis twice, at least one value, every value valid for its option. Returns 0 or MELBO_EINVAL
 * naming the --sweep. Free s with melbo_sweep_free (also after a failure).
 */
int melbo_sweep_parse(struct melbo_sweep *s, const struct melbo_train_params *p,
                      struct melbo_err *err);

/* Sets point k's value of every axis in p (0 <= k < n_points). Returns 0 or a negative code. */
int melbo_sweep_apply(const struct melbo_sweep *s, long long k, struct melbo_train_params *p,
                      struct melbo_err *err);

/* "radius=4 source-layer=5" for point k, into buf (n bytes). */
void melbo_sweep_label(const struct melbo_sweep *s, long long k, char *buf, size_t n);

void melbo_sweep_free(struct melbo_sweep *s);

#ifdef __cplusplus
}
#endif
#endif
