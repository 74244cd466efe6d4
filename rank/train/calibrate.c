/* rank/train/calibrate.c - `--radius auto` (rank/train/calibrate.h). */
#include "rank/train/calibrate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "common/rng.h"
#include "rank/model/safetensors.h"
#include "rank/cpu/span.h"

/*
 * D(theta_i) for m vectors thetas (m, d): out (m, P*d), each prompt's mean change of the target
 * activations over its target positions. One forward of m x P sequences through the span.
 */
static void deltas(const struct melbo_prompts *pr, const struct melbo_prefix *pre, int d,
                   struct melbo_cpu_span *sp, const float *thetas, int m, double *out) {
    int P = pr->P;
    int *lens = melbo_xmalloc(sizeof(int) * (size_t)m * P);
    for (int i = 0; i < m; i++)
        for (int p = 0; p < P; p++)
            lens[i * P + p] = pr->lens[p];
    struct melbo_seqs seqs;
    melbo_seqs_init(&seqs, lens, m * P);
    float *x = melbo_xalloc_f32((size_t)seqs.n_tok * d);
    for (int i = 0; i < m; i++)
        for (int p = 0; p < P; p++) {
            float *dst = x + (size_t)seqs.start[i * P + p] * d;
            const float *src = pre->X + (size_t)pr->seqs.start[p] * d;
            const float *th = thetas + (size_t)i * d;
            for (int r = 0; r < pr->lens[p]; r++)
                for (int j = 0; j < d; j++)
                    dst[(size_t)r * d + j] = src[(size_t)r * d + j] + th[j];
        }
    melbo_cpu_span_forward(sp, &seqs, x);
    for (int i = 0; i < m; i++)
        for (int p = 0; p < P; p++) {
            double *o = out + ((size_t)i * P + p) * d;
            const float *z = x + (size_t)seqs.start[i * P + p] * d;
            const float *y = pre->Y + (size_t)pr->seqs.start[p] * d;
            memset(o, 0, sizeof(double) * (size_t)d);
            for (int k = 0; k < pr->n_idx[p]; k++) {
                size_t row = (size_t)pr->idx[p][k] * d;
                for (int j = 0; j < d; j++)
                    o[j] += (double)z[row + j] - (double)y[row + j];
            }
            for (int j = 0; j < d; j++)
                o[j] /= pr->n_idx[p];
        }
    free(x);
    free(lens);
    melbo_seqs_free(&seqs);
}

struct cal {
    const struct melbo_prompts *pr;
    const struct melbo_prefix *pre;
    int d;
    struct melbo_cpu_span sp;
    const float *dirs; // (n, d) unit
    int n;
    double *jv; // (n, P*d)
    float *th;  // (n, d) scratch
    double *D;  // (n, P*d) scratch
};

static double ratio(struct cal *c, double R) {
    int d = c->d, w = c->pr->P * d;
    for (size_t k = 0; k < (size_t)c->n * d; k++)
        c->th[k] = (float)(R * c->dirs[k]);
    deltas(c->pr, c->pre, d, &c->sp, c->th, c->n, c->D);
    double acc = 0;
    for (int l = 0; l < c->n; l++) {
        double num = 0, den = 0;
        for (int j = 0; j < w; j++) {
            double lin = R * c->jv[(size_t)l * w + j];
            double e = c->D[(size_t)l * w + j] - lin;
            num += e * e;
            den += lin * lin;
        }
        acc += den > 0 ? num / den : 0.0;
    }
    return sqrt(acc / c->n);
}

static int load_directions(const struct melbo_calibration_opts *o, int n, int d, float *dirs,
                           struct melbo_err *err) {
    if (o->init) {
        struct melbo_st_file f;
        int ret = melbo_st_open(&f, o->init, err);
        if (ret)
            return melbo_err_prefix(err, "--calibration-init");
        const struct melbo_st_tensor *t = melbo_st_find(&f, "directions");
        if (t == NULL || t->ndim != 2 || t->shape[0] != n || t->shape[1] != d ||
            !melbo_dtype_is_weight(t->dtype)) {
            melbo_st_close(&f);
            return melbo_err_set(
                err, MELBO_EFORMAT,
                "--calibration-init %s needs a tensor 'directions' of shape [%d, %d]", o->init, n,
                d);
        }
        melbo_convert_to_f32(dirs, t->data, t->dtype, (size_t)n * d);
        melbo_st_close(&f);
    } else {
        double *g = melbo_xmalloc(sizeof(double) * (size_t)d);
        for (int l = 0; l < n; l++) {
            melbo_rng_normal_f64(o->seed, ((uint64_t)1 << 40) + (uint64_t)l, g, (size_t)d);
            for (int j = 0; j < d; j++)
                dirs[(size_t)l * d + j] = (float)g[j];
        }
        free(g);
    }
    for (int l = 0; l < n; l++) { /* unit length */
        double s = 0;
        for (int j = 0; j < d; j++)
            s += (double)dirs[(size_t)l * d + j] * dirs[(size_t)l * d + j];
        s = sqrt(s);
        for (int j = 0; j < d; j++)
            dirs[(size_t)l * d + j] = (float)(dirs[(size_t)l * d + j] / s);
    }
    return 0;
}

int melbo_calibrate_radius(const struct melbo_model *m, int s, int t,
                           const struct melbo_prompts *pr, const struct melbo_prefix *pre,
                           const struct melbo_calibration_opts *o, struct melbo_calibration *out,
                           struct melbo_err *err) {
    int n = o->samples, d = m->cfg.d_model, w = pr->P * d, ret;
    double lambda = o->lambda;
    struct cal c = {pr, pre, d, {0}, NULL, n, NULL, NULL, NULL};
    float *dirs = melbo_xalloc_f32((size_t)n * d), *pm = melbo_xalloc_f32((size_t)2 * n * d);
    double *dpm = melbo_xmalloc(sizeof(double) * (size_t)2 * n * w);
    c.jv = melbo_xmalloc(sizeof(double) * (size_t)n * w);
    c.th = melbo_xalloc_f32((size_t)2 * n * d);
    c.D = melbo_xmalloc(sizeof(double) * (size_t)n * w);
    c.dirs = dirs;
    ret = load_directions(o, n, d, dirs, err);
    if (ret)
        goto out;
    melbo_cpu_span_init(&c.sp, m, s + 1, t, 2 * n * pr->seqs.n_tok, 0);
    /* J v by central differences: D(h v) and D(-h v) in one batch */
    double h = MELBO_CAL_FD_STEP;
    for (int l = 0; l < n; l++)
        for (int j = 0; j < d; j++) {
            pm[(size_t)l * d + j] = (float)(h * dirs[(size_t)l * d + j]);
            pm[(size_t)(n + l) * d + j] = (float)(-h * dirs[(size_t)l * d + j]);
        }
    deltas(pr, pre, d, &c.sp, pm, 2 * n, dpm);
    for (int l = 0; l < n; l++)
        for (int j = 0; j < w; j++)
            c.jv[(size_t)l * w + j] =
                (dpm[(size_t)l * w + j] - dpm[(size_t)(n + l) * w + j]) / (2 * h);
    double lo = log(MELBO_CAL_R_MIN), hi = log(MELBO_CAL_R_MAX);
    double flo = ratio(&c, MELBO_CAL_R_MIN) - lambda, fhi = ratio(&c, MELBO_CAL_R_MAX) - lambda;
    out->ratio_lo = flo + lambda;
    out->ratio_hi = fhi + lambda;
    out->lambda = lambda;
    out->samples = n;
    if ((flo < 0) == (fhi < 0)) {
        ret =
            melbo_err_set(err, MELBO_ERANGE,
                          "--radius auto: no R in [%g, %g] gives the nonlinearity ratio %g: it is "
                          "%.4g at R = %g and %.4g at R = %g (choose --radius by hand, or change "
                          "--calibration-lambda or the layers)",
                          MELBO_CAL_R_MIN, MELBO_CAL_R_MAX, lambda, out->ratio_lo, MELBO_CAL_R_MIN,
                          out->ratio_hi, MELBO_CAL_R_MAX);
        goto out_span;
    }
    int it;
    /* bisection in log R until R is known to 1e-4 relative (about 17 halvings of the bracket) */
    for (it = 0; it < 60 && hi - lo > 1e-4; it++) {
        double mid = 0.5 * (lo + hi), fm = ratio(&c, exp(mid)) - lambda;
        if ((fm < 0) == (flo < 0)) {
            lo = mid;
            flo = fm;
        } else {
            hi = mid;
        }
    }
    out->iterations = it;
    out->radius = exp(0.5 * (lo + hi));
out_span:
    melbo_cpu_span_free(&c.sp);
out:
    free(dirs);
    free(pm);
    free(dpm);
    free(c.jv);
    free(c.th);
    free(c.D);
    return ret;
}
