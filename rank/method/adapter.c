/* rank/method/adapter.c - adapter init and update (rank/method/adapter.h). */
#include "rank/method/adapter.h"

#include <math.h>
#include <stdlib.h>

#include "common/mem.h"

/* The columns of a (rows, cols) row-major matrix x: each column scaled to unit norm (fp64 sums),
 * or, with g, g's columns projected onto the tangent space at x's unit columns. */
static void normalize_columns(float *x, int rows, int cols) {
    double *nn = melbo_xcalloc((size_t)cols, sizeof *nn);
    for (int i = 0; i < rows; i++)
        for (int n = 0; n < cols; n++) {
            double v = x[(size_t)i * cols + n];
            nn[n] += v * v;
        }
    for (int n = 0; n < cols; n++) {
        double l = sqrt(nn[n]);
        nn[n] = l > 1e-12 ? l : 1e-12;
    }
    for (int i = 0; i < rows; i++)
        for (int n = 0; n < cols; n++)
            x[(size_t)i * cols + n] = (float)(x[(size_t)i * cols + n] / nn[n]);
    free(nn);
}

static void tangent_columns(float *g, const float *x, int rows, int cols) {
    double *dot = melbo_xcalloc((size_t)cols, sizeof *dot);
    for (int i = 0; i < rows; i++)
        for (int n = 0; n < cols; n++)
            dot[n] += (double)g[(size_t)i * cols + n] * x[(size_t)i * cols + n];
    for (int i = 0; i < rows; i++)
        for (int n = 0; n < cols; n++) {
            size_t o = (size_t)i * cols + n;
            g[o] = (float)(g[o] - dot[n] * x[o]);
        }
    free(dot);
}

void melbo_adapter_normalize(float *par, const struct melbo_adapter_shape *s) {
    normalize_columns(par, s->r, s->ff);
    normalize_columns(par + melbo_adapter_n_A(s), s->d, s->r);
}

void melbo_adapter_init(float *par, const double *g, const struct melbo_adapter_shape *s) {
    size_t w = melbo_adapter_width(s);
    for (size_t j = 0; j < w; j++)
        par[j] = (float)g[j];
    melbo_adapter_normalize(par, s);
}

double melbo_adapter_dot(const float *x, const float *y, const struct melbo_adapter_shape *s) {
    int r = s->r;
    size_t nA = melbo_adapter_n_A(s);
    const float *Ax = x, *Ay = y, *Bx = x + nA, *By = y + nA;
    double dot = 0;
    for (int i = 0; i < r; i++)
        for (int j = 0; j < r; j++) {
            double bb = 0, aa = 0; /* (B_x^T B_y)_ij and (A_x A_y^T)_ij */
            for (int k = 0; k < s->d; k++)
                bb += (double)Bx[(size_t)k * r + i] * By[(size_t)k * r + j];
            for (int n = 0; n < s->ff; n++)
                aa += (double)Ax[(size_t)i * s->ff + n] * Ay[(size_t)j * s->ff + n];
            dot += bb * aa;
        }
    return dot;
}

void melbo_adapter_update(float *par, float *g, float *m, float *v, float *vhat, int t,
                          const struct melbo_adam *opt, const struct melbo_adapter_shape *s) {
    size_t nA = melbo_adapter_n_A(s);
    tangent_columns(g, par, s->r, s->ff);
    tangent_columns(g + nA, par + nA, s->d, s->r);
    melbo_amsgrad_step(par, g, m, v, vhat, melbo_adapter_width(s), t, opt);
    melbo_adapter_normalize(par, s);
}
