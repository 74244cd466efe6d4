/* rank/train/progress.c - progress display (rank/train/progress.h). */
#include "rank/train/progress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double melbo_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void melbo_progress_init(struct melbo_progress *pr, long total, long already) {
    memset(pr, 0, sizeof *pr);
    pr->tty = isatty(STDERR_FILENO);
    const char *iv = getenv("MELBO_PROGRESS_SECONDS");
    pr->interval = iv ? atof(iv) : 2.0;
    pr->t_start = pr->t_last = melbo_now();
    pr->total = total;
    pr->done = pr->done_at_start = already;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

static void fmt_eta(char *buf, size_t n, double s) {
    long t = s > 0 && s < 1e9 ? (long)(s + 0.5) : 0;
    if (t >= 3600)
        snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

void melbo_progress_step(struct melbo_progress *pr, int wave, int n_waves, int step, int steps,
                         const float *F, int B) {
    pr->done += B;
    if (pr->quiet)
        return;
    double now = melbo_now();
    int due = pr->tty || now - pr->t_last >= pr->interval || step == steps;
    if (!due)
        return;
    float sorted[256];
    int n = B < 256 ? B : 256;
    memcpy(sorted, F, sizeof(float) * (size_t)n);
    qsort(sorted, (size_t)n, sizeof(float), cmp_float);
    double el = now - pr->t_start, rate = (double)(pr->done - pr->done_at_start) / (el > 0 ? el : 1e-9);
    char eta[32];
    fmt_eta(eta, sizeof eta, (double)(pr->total - pr->done) / (rate > 0 ? rate : 1e-9));
    double steps_per_s = rate / (B > 0 ? B : 1);
    if (pr->tty) {
        char bar[21];
        int fill = steps > 0 ? 20 * step / steps : 20;
        for (int i = 0; i < 20; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[20] = '\0';
        snprintf(pr->last, sizeof pr->last,
                 "wave %d/%d [%s] step %d/%d  best %.6g  median %.6g  %.2f steps/s  ETA %s",
                 wave + 1, n_waves, bar, step, steps, sorted[n - 1], sorted[n / 2], steps_per_s, eta);
        fprintf(stderr, "\r\033[K%s", pr->last);
    } else {
        fprintf(stderr, "train: wave %d/%d step %d/%d best %.6g median %.6g %.2f steps/s ETA %s\n",
                wave + 1, n_waves, step, steps, sorted[n - 1], sorted[n / 2], steps_per_s, eta);
    }
    pr->t_last = now;
}

void melbo_progress_wave_done(struct melbo_progress *pr, int wave, int n_waves) {
    if (pr->quiet)
        return;
    if (pr->tty)
        fprintf(stderr, "\n");
    fprintf(stderr, "train: wave %d/%d done\n", wave + 1, n_waves);
}

void melbo_progress_finish(struct melbo_progress *pr) { (void)pr; }
