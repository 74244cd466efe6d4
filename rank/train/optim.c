/* rank/train/optim.c - steering-vector updates (rank/train/optim.h). */
#include "rank/train/optim.h"

#include <math.h>
#include <stdlib.h>

#include "common/mem.h"

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

    /* AMSGrad exactly as torch.optim.AdamW(amsgrad=True, weight_decay=0) on fp32 tensors */
    float b1 = (float)opt->beta1, b2 = (float)opt->beta2;
    double bc1 = 1.0 - pow(opt->beta1, t), bc2 = 1.0 - pow(opt->beta2, t);
    float step_size = (float)(opt->lr / bc1), bc2_sqrt = (float)sqrt(bc2), eps = (float)opt->eps;
    for (int j = 0; j < d; j++) {
        m[j] = m[j] + (1.0f - b1) * (g[j] - m[j]); /* exp_avg.lerp_(grad, 1 - beta1) */
        v[j] = v[j] * b2 + (1.0f - b2) * g[j] * g[j];
        vhat[j] = vhat[j] > v[j] ? vhat[j] : v[j];
        float denom = sqrtf(vhat[j]) / bc2_sqrt + eps;
        theta[j] = theta[j] - step_size * (m[j] / denom);
    }

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
