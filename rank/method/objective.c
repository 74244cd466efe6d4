/* rank/method/objective.c - the MELBO objective (rank/method/objective.h). */
#include "rank/method/objective.h"

#include <math.h>
#include <string.h>

/* x^e for x >= 0, with 0^e = 0 for e > 0 and 0 otherwise (the subgradient torch uses). */
static double powz(double x, double e) {
    if (x == 0.0)
        return e > 0 ? 0.0 : (e == 0 ? 1.0 : 0.0);
    return pow(x, e);
}

double melbo_objective(const float *z, const float *y, int T, int d, const int *idx, int n_idx,
                       double p, double q, enum melbo_loss_axis axis, float *dz, double *n2) {
    double S = 0.0;
    if (dz)
        memset(dz, 0, sizeof(float) * (size_t)T * d);
    if (axis == MELBO_LOSS_AXIS_TOKEN) {
        for (int k = 0; k < n_idx; k++) {
            const float *zr = z + (size_t)idx[k] * d, *yr = y + (size_t)idx[k] * d;
            double s2 = 0.0;
            for (int j = 0; j < d; j++) {
                double dd = (double)zr[j] - (double)yr[j];
                s2 += dd * dd;
            }
            S += powz(sqrt(s2), p);
        }
    } else {
        memset(n2, 0, sizeof(double) * (size_t)d);
        for (int k = 0; k < n_idx; k++) {
            const float *zr = z + (size_t)idx[k] * d, *yr = y + (size_t)idx[k] * d;
            for (int j = 0; j < d; j++) {
                double dd = (double)zr[j] - (double)yr[j];
                n2[j] += dd * dd;
            }
        }
        for (int j = 0; j < d; j++)
            S += powz(sqrt(n2[j]), p);
    }
    double F = powz(S, 1.0 / q);
    if (dz == NULL || S == 0.0)
        return F;
    /* dLoss/dDelta = -(p/q) S^(1/q-1) * norm^(p-2) * Delta */
    double coef = -(p / q) * pow(S, 1.0 / q - 1.0);
    for (int k = 0; k < n_idx; k++) {
        const float *zr = z + (size_t)idx[k] * d, *yr = y + (size_t)idx[k] * d;
        float *g = dz + (size_t)idx[k] * d;
        if (axis == MELBO_LOSS_AXIS_TOKEN) {
            double s2 = 0.0;
            for (int j = 0; j < d; j++) {
                double dd = (double)zr[j] - (double)yr[j];
                s2 += dd * dd;
            }
            double c = coef * powz(sqrt(s2), p - 2.0);
            for (int j = 0; j < d; j++)
                g[j] = (float)(c * ((double)zr[j] - (double)yr[j]));
        } else {
            for (int j = 0; j < d; j++)
                g[j] = (float)(coef * powz(sqrt(n2[j]), p - 2.0) * ((double)zr[j] - (double)yr[j]));
        }
    }
    return F;
}
