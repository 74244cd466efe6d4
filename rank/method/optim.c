/* rank/method/optim.c - steering-vector updates (rank/method/optim.h). */
#include "rank/method/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "rank/method/adapter.h"

void melbo_project_out(double *x, const float *u, int n, int d) {
    for (int k = 0; k < n; k++) {
        const float *uk = u + (size_t)k * d;
        double dot = 0.0, nn = 0.0;
        for (int j = 0; j < d; j++) {
            dot += x[j] * uk[j];
            nn += (double)uk[j] * uk[j];
        }
        if (nn == 0.0)
            continue;
        double c = dot / nn;
        for (int j = 0; j < d; j++)
            x[j] -= c * uk[j];
    }
}

static void project_out_double(double *x, const double *u, int n, int d) {
    for (int k = 0; k < n; k++) {
        const double *uk = u + (size_t)k * d;
        double dot = 0.0, nn = 0.0;
        for (int j = 0; j < d; j++) {
            dot += x[j] * uk[j];
            nn += uk[j] * uk[j];
        }
        if (nn == 0.0)
            continue;
        for (int j = 0; j < d; j++)
            x[j] -= dot / nn * uk[j];
    }
}

static double norm2(const double *x, int d) {
    double s = 0.0;
    for (int j = 0; j < d; j++)
        s += x[j] * x[j];
    return sqrt(s);
}

void melbo_amsgrad_step(float *x, const float *g, float *m, float *v, float *vhat, size_t n, int t,
                        const struct melbo_adam *opt) {
    float b1 = (float)opt->beta1, b2 = (float)opt->beta2;
    double bc1 = 1.0 - pow(opt->beta1, t), bc2 = 1.0 - pow(opt->beta2, t);
    float step_size = (float)(opt->lr / bc1), bc2_sqrt = (float)sqrt(bc2), eps = (float)opt->eps;
    for (size_t j = 0; j < n; j++) {
        m[j] = m[j] + (1.0f - b1) * (g[j] - m[j]); /* exp_avg.lerp_(grad, 1 - beta1) */
        v[j] = v[j] * b2 + (1.0f - b2) * g[j] * g[j];
        vhat[j] = vhat[j] > v[j] ? vhat[j] : v[j];
        float denom = sqrtf(vhat[j]) / bc2_sqrt + eps;
        x[j] = x[j] - step_size * (m[j] / denom);
    }
}

void melbo_vector_update(float *theta, float *g, float *m, float *v, float *vhat, int d, int t,
                         double R, const struct melbo_adam *opt, const float *finished,
                         int n_finished, int orthogonal) {
    double *x = melbo_xmalloc(sizeof(double) * (size_t)d);
    /* gradient: off the finished vectors, then onto the tangent space at theta */
    for (int j = 0; j < d; j++)
        x[j] = g[j];
    if (orthogonal)
        melbo_project_out(x, finished, n_finished, d);
    double gt = 0.0;
    for (int j = 0; j < d; j++)
        gt += x[j] * theta[j];
    for (int j = 0; j < d; j++)
        g[j] = (float)(x[j] - gt * theta[j] / (R * R));

    melbo_amsgrad_step(theta, g, m, v, vhat, (size_t)d, t, opt);

    /* parameter: off the finished vectors, back onto the sphere of radius R */
    for (int j = 0; j < d; j++)
        x[j] = theta[j];
    if (orthogonal)
        melbo_project_out(x, finished, n_finished, d);
    double n = norm2(x, d);
    n = n > 1e-12 ? n : 1e-12;
    for (int j = 0; j < d; j++)
        theta[j] = (float)(x[j] / n * R);
    free(x);
}

void melbo_vector_init(float *theta, double *g, int d, double R, const float *finished,
                       int n_finished, const float *mates, int n_mates, int orthogonal) {
    if (orthogonal) {
        melbo_project_out(g, finished, n_finished, d);
        melbo_project_out(g, mates, n_mates, d);
    }
    double n = norm2(g, d);
    n = n > 1e-12 ? n : 1e-12;
    for (int j = 0; j < d; j++)
        theta[j] = (float)(g[j] / n * R);
}

void melbo_wave_orthogonalize(float *theta, int B, int d, double R, const float *finished,
                              int n_finished) {
    double *w = melbo_xmalloc(sizeof(double) * (size_t)B * d);
    for (int b = 0; b < B; b++) {
        double *x = w + (size_t)b * d;
        for (int j = 0; j < d; j++)
            x[j] = theta[(size_t)b * d + j];
        for (int pass = 0; pass < 2; pass++) {
            melbo_project_out(x, finished, n_finished, d);
            project_out_double(x, w, b, d);
        }
        double n = norm2(x, d);
        n = n > 1e-300 ? n : 1e-300;
        for (int j = 0; j < d; j++) {
            x[j] = x[j] / n * R;
            theta[(size_t)b * d + j] = (float)x[j];
        }
    }
    free(w);
}

/* ---------------------------------------------------------------------------------------------
 * A run's optimiser state.
 */

void melbo_wave_state_init(struct melbo_wave_state *ws, int N, int B, int d, int steps) {
    memset(ws, 0, sizeof *ws);
    ws->N = N;
    ws->B = B;
    ws->d = d;
    ws->steps = steps;
    size_t Bd = (size_t)B * d;
    ws->vectors = melbo_xalloc_f32((size_t)N * d);
    ws->objective = melbo_xalloc_f32((size_t)N * (steps ? steps : 1));
    ws->theta = melbo_xalloc_f32(Bd);
    ws->m = melbo_xalloc_f32(Bd);
    ws->v = melbo_xalloc_f32(Bd);
    ws->vhat = melbo_xalloc_f32(Bd);
    ws->grad = melbo_xalloc_f32(Bd);
}

void melbo_wave_state_free(struct melbo_wave_state *ws) {
    free(ws->vectors);
    free(ws->objective);
    free(ws->theta);
    free(ws->m);
    free(ws->v);
    free(ws->vhat);
    free(ws->grad);
    memset(ws, 0, sizeof *ws);
}

void melbo_wave_update(struct melbo_wave_state *ws, int t, const struct melbo_optim *o) {
    int Bw = ws->wave_B, d = ws->d;
    if (o->adapter) {
        for (int b = 0; b < Bw; b++) {
            size_t off = (size_t)b * d;
            melbo_adapter_update(ws->theta + off, ws->grad + off, ws->m + off, ws->v + off,
                                 ws->vhat + off, t, &o->adam, o->adapter);
        }
        return;
    }
    for (int b = 0; b < Bw; b++) {
        size_t off = (size_t)b * d;
        melbo_vector_update(ws->theta + off, ws->grad + off, ws->m + off, ws->v + off,
                            ws->vhat + off, d, t, o->R, &o->adam, ws->vectors, ws->n_done,
                            o->orthogonal);
    }
    if (o->orthogonal && Bw > 1)
        melbo_wave_orthogonalize(ws->theta, Bw, d, o->R, ws->vectors, ws->n_done);
}
