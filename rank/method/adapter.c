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

double melbo_adapter_dot(const float *A_x, const float *B_x, const float *A_y, const float *B_y,
                         const struct melbo_adapter_shape *s) {
    size_t r = (size_t)s->r, ff = (size_t)s->ff;
    double *gb = melbo_xcalloc(r * r, sizeof *gb); /* B_x^T B_y, accumulated row by row of B */
    for (size_t k = 0; k < (size_t)s->d; k++)
        for (size_t i = 0; i < r; i++) {
            double bx = B_x[k * r + i];
            for (size_t j = 0; j < r; j++)
                gb[i * r + j] += bx * B_y[k * r + j];
        }
    double dot = 0;
    for (size_t i = 0; i < r; i++) /* (A_x A_y^T)_ij: rows of A are contiguous */
        for (size_t j = 0; j < r; j++) {
            double aa = 0;
            for (size_t n = 0; n < ff; n++)
                aa += (double)A_x[i * ff + n] * A_y[j * ff + n];
            dot += gb[i * r + j] * aa;
        }
    free(gb);
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
