/* rank/gpu/prof.c - per-stage GPU time from events (rank/gpu/prof.h). */
#include "rank/gpu/prof.h"

#include <stdlib.h>
#include <string.h>

#define PROF_MAX_MARKS 65536
#define PROF_MAX_STAGES 96

int melbo_gpu_prof_on = 0;

static cudaStream_t prof_stream;
static cudaEvent_t *prof_events;   /* (PROF_MAX_MARKS + 1), created on the first start */
static const char **prof_names;    /* (PROF_MAX_MARKS + 1): stage of the interval ending here */
static int prof_n;

void melbo_gpu_prof_start(cudaStream_t s) {
    if (prof_events == NULL) {
        prof_events = calloc(PROF_MAX_MARKS + 1, sizeof *prof_events);
        prof_names = calloc(PROF_MAX_MARKS + 1, sizeof *prof_names);
        if (prof_events == NULL || prof_names == NULL)
            return;
        for (int i = 0; i <= PROF_MAX_MARKS; i++)
            cudaEventCreate(&prof_events[i]);
    }
    prof_stream = s;
    prof_n = 0;
    cudaEventRecord(prof_events[prof_n++], s);
    melbo_gpu_prof_on = 1;
}

void melbo_gpu_prof_mark(const char *stage) {
    if (prof_n > PROF_MAX_MARKS)
        return;
    prof_names[prof_n] = stage;
    cudaEventRecord(prof_events[prof_n++], prof_stream);
}

void melbo_gpu_prof_stop_print(FILE *f, int n_steps) {
    melbo_gpu_prof_on = 0;
    if (prof_events == NULL)
        return;
    cudaStreamSynchronize(prof_stream);
    const char *names[PROF_MAX_STAGES];
    double ms[PROF_MAX_STAGES], total = 0;
    int n_st = 0;
    for (int i = 1; i < prof_n; i++) {
        float t = 0;
        cudaEventElapsedTime(&t, prof_events[i - 1], prof_events[i]);
        int k = 0;
        while (k < n_st && strcmp(names[k], prof_names[i]) != 0)
            k++;
        if (k == n_st) {
            if (n_st == PROF_MAX_STAGES)
                continue;
            names[n_st] = prof_names[i];
            ms[n_st++] = 0;
        }
        ms[k] += t;
        total += t;
    }
    for (int i = 0; i < n_st; i++) /* largest first */
        for (int j = i + 1; j < n_st; j++)
            if (ms[j] > ms[i]) {
                double t = ms[i];
                const char *nm = names[i];
                ms[i] = ms[j], names[i] = names[j];
                ms[j] = t, names[j] = nm;
            }
    n_steps = n_steps > 0 ? n_steps : 1;
    fprintf(f, "profile: GPU time per step by stage (%d step%s, %.2f ms per step)\n", n_steps,
            n_steps > 1 ? "s" : "", total / n_steps);
    for (int i = 0; i < n_st; i++)
        fprintf(f, "  %-28s %9.3f ms  %5.1f%%\n", names[i], ms[i] / n_steps,
                total > 0 ? 100.0 * ms[i] / total : 0.0);
}
