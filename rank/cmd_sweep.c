/*
 * rank/cmd_sweep.c - `melbo-rank train --sweep NAME=V1,V2,... [--sweep ...]`: the grid of
 * options/sweep.h in one run. The model is loaded once (every block: the points may move the
 * layers) and every point trains on it (melbo_trainer_init_shared) with the base options plus
 * its values, as if it ran alone: its bank is what the same options give in a job of their own.
 *
 * Files, for --out DIR/out.bank.safetensors and --checkpoint C: point k writes
 * DIR/out.pK.bank.safetensors and checkpoints to C.pK. Resuming is per point and automatic: a
 * point whose bank exists is done (bank files are written atomically), one with a checkpoint
 * resumes from it, the others start fresh. So a sweep killed at any moment and started again
 * with the same command line ends with the banks an uninterrupted run gives.
 *
 * Progress: the STEP events of point k carry it (StepInfo.point / points / point_label). At the
 * end rank 0 prints one line per point - its values, R, and its triage summary: the median z of
 * its vectors against the random baselines (novelty), the share of degenerate completions, the
 * number of clusters - and uploads every bank, each with that row as JSON (BankUpload.sweep).
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/mem.h"
#include "options/sweep.h"
#include "rank/commands.h"
#include "rank/link/link.h"
#include "rank/model/safetensors.h"
#include "rank/train/state.h"
#include "rank/train/trainer.h"

/* path with ".pK" before ".bank.safetensors" (or at the end), into buf (n bytes). */
static void point_path(const char *path, long long k, char *buf, size_t n) {
    static const char ext[] = ".bank.safetensors";
    size_t len = strlen(path), el = sizeof ext - 1;
    if (len > el && !strcmp(path + len - el, ext))
        snprintf(buf, n, "%.*s.p%lld%s", (int)(len - el), path, k, ext);
    else
        snprintf(buf, n, "%s.p%lld", path, k);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The point's row: values, R and the triage summary of its bank's "triage" JSON. Owned. */
static char *point_json(const struct melbo_sweep *sw, long long k, const char *triage,
                        double radius) {
    cJSON *o = cJSON_CreateObject(), *axes = cJSON_AddObjectToObject(o, "axes");
    cJSON *values = cJSON_CreateObject();
    char label[512];
    melbo_sweep_label(sw, k, label, sizeof label);
    long long rest = k;
    for (int i = sw->n_axes - 1; i >= 0; i--) {
        cJSON *a = cJSON_CreateArray();
        for (int j = 0; j < sw->axis[i].n; j++)
            cJSON_AddItemToArray(a, cJSON_CreateString(sw->axis[i].values[j]));
        cJSON_AddItemToObject(axes, sw->axis[i].name, a);
        cJSON_AddStringToObject(values, sw->axis[i].name,
                                sw->axis[i].values[rest % sw->axis[i].n]);
        rest /= sw->axis[i].n;
    }
    cJSON_AddItemToObject(o, "values", values);
    cJSON_AddNumberToObject(o, "point", (double)k);
    cJSON_AddNumberToObject(o, "points", (double)sw->n_points);
    cJSON_AddStringToObject(o, "label", label);
    if (radius > 0)
        cJSON_AddNumberToObject(o, "radius", radius);
    cJSON *t = cJSON_Parse(triage ? triage : "null"), *items = cJSON_GetObjectItem(t, "items"), *it;
    int n = cJSON_GetArraySize(items), degenerate = 0, clusters = 0;
    if (n > 0) {
        double *z = melbo_xcalloc((size_t)n, sizeof *z);
        int i = 0;
        cJSON_ArrayForEach(it, items) {
            z[i++] = cJSON_GetNumberValue(cJSON_GetObjectItem(it, "z"));
            degenerate += cJSON_IsTrue(cJSON_GetObjectItem(it, "degenerate"));
            int c = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(it, "cluster"));
            clusters = c + 1 > clusters ? c + 1 : clusters;
        }
        qsort(z, (size_t)n, sizeof *z, cmp_double);
        cJSON_AddNumberToObject(o, "median_z", n % 2 ? z[n / 2] : 0.5 * (z[n / 2 - 1] + z[n / 2]));
        cJSON_AddNumberToObject(o, "degenerate", (double)degenerate / n);
        cJSON_AddNumberToObject(o, "clusters", clusters);
        free(z);
    }
    cJSON_Delete(t);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* The triage and R of a point finished before (its bank), for its row. */
static char *done_point_json(const struct melbo_sweep *sw, long long k, const char *bank) {
    struct melbo_st_file f;
    struct melbo_err ignored;
    if (melbo_st_open(&f, bank, &ignored) != 0)
        return point_json(sw, k, NULL, 0);
    const char *r = melbo_st_meta(&f, "radius");
    char *s = point_json(sw, k, melbo_st_meta(&f, "triage"), r ? atof(r) : 0);
    melbo_st_close(&f);
    return s;
}

static void print_table(const char *const *rows, long long n) {
    fprintf(stderr, "train: sweep of %lld points:\n  %-40s %8s %9s %11s %8s\n", n, "point", "R",
            "median z", "degenerate", "clusters");
    for (long long k = 0; k < n; k++) {
        cJSON *o = cJSON_Parse(rows[k]);
        fprintf(stderr, "  %-40s %8.3g %9.3g %10.0f%% %8d\n",
                cJSON_GetStringValue(cJSON_GetObjectItem(o, "label")),
                cJSON_GetNumberValue(cJSON_GetObjectItem(o, "radius")),
                cJSON_GetNumberValue(cJSON_GetObjectItem(o, "median_z")),
                100 * cJSON_GetNumberValue(cJSON_GetObjectItem(o, "degenerate")),
                (int)cJSON_GetNumberValue(cJSON_GetObjectItem(o, "clusters")));
        cJSON_Delete(o);
    }
}

/* One point: trained on the shared model (resumed from its checkpoint if it has one), its bank
 * written by rank 0. Returns 0, MELBO_ESTATE (checkpointed on SIGUSR1), or a negative code. */
static int run_point(const struct melbo_train_params *base, const struct melbo_sweep *sw,
                     long long k, const char *out, const struct melbo_model *shared,
                     struct melbo_comm *comm, struct melbo_link *link, char **row,
                     struct melbo_err *err) {
    struct melbo_train_params p;
    struct melbo_trainer tr;
    char ckpt[4096];
    int ret;
    memset(&tr, 0, sizeof tr);
    melbo_train_params_copy(&p, base);
    melbo_opts_parse_one(&melbo_train_table, &p, "out", out, err);
    for (int i = 0; i < p.sweep.n; i++) /* the point is a run of its own, not a sweep */
        free(p.sweep.v[i]);
    p.sweep.n = 0;
    free(p.resume);
    p.resume = NULL;
    if (base->checkpoint) {
        point_path(base->checkpoint, k, ckpt, sizeof ckpt);
        melbo_opts_parse_one(&melbo_train_table, &p, "checkpoint", ckpt, err);
    }
    if ((ret = melbo_sweep_apply(sw, k, &p, err)) != 0 ||
        (ret = melbo_train_params_check(&p, err)) != 0 ||
        (ret = melbo_trainer_init_shared(&tr, &p, comm, shared, err)) != 0)
        goto out;
    if (link)
        tr.obs = melbo_link_observer(link);
    if (p.checkpoint && access(p.checkpoint, R_OK) == 0) {
        if ((ret = melbo_trainer_resume(&tr, p.checkpoint, err)) != 0)
            goto out;
        if (tr.rank0)
            fprintf(stderr, "train: point %lld resumed from %s\n", k, p.checkpoint);
    }
    if ((ret = melbo_trainer_run(&tr, err)) != 0 || (ret = melbo_trainer_generate(&tr, err)) != 0)
        goto out;
    if (tr.rank0 && (ret = melbo_bank_write(&tr, out, err)) == 0) {
        *row = point_json(sw, k, tr.triage_json, tr.adapters ? 0 : tr.set.radius);
        fprintf(stderr, "train: point %lld bank written to %s\n", k, out);
    }
out:
    if (ret && ret != MELBO_ESTATE)
        melbo_err_prefix(err, "sweep point %lld", k);
    melbo_trainer_free(&tr);
    melbo_train_params_free(&p);
    return ret;
}

int melbo_train_sweep(const struct melbo_train_params *p, struct melbo_comm *comm,
                      struct melbo_link *link, int rank0, struct melbo_err *err) {
    struct melbo_sweep sw;
    struct melbo_model shared;
    int ret = melbo_sweep_parse(&sw, p, err), loaded = 0;
    long long n = sw.n_points, k = 0;
    char **paths = melbo_xcalloc((size_t)n + 1, sizeof *paths);
    char **rows = melbo_xcalloc((size_t)n + 1, sizeof *rows);
    memset(&shared, 0, sizeof shared);
    if (ret == 0 && (ret = melbo_trainer_load_shared(&shared, p, err)) == 0)
        loaded = 1;
    if (ret == 0 && rank0)
        fprintf(stderr, "train: sweep of %lld points over %d axes, the model loaded once\n", n,
                sw.n_axes);
    for (k = 0; ret == 0 && k < n; k++) {
        char path[4096], label[512];
        point_path(p->out, k, path, sizeof path);
        paths[k] = melbo_xstrdup(path);
        melbo_sweep_label(&sw, k, label, sizeof label);
        melbo_link_set_point(link, (int)k, (int)n, label);
        if (access(path, R_OK) == 0) { /* done before this start */
            if (rank0) {
                rows[k] = done_point_json(&sw, k, path);
                fprintf(stderr, "train: point %lld (%s) done before: %s\n", k, label, path);
            }
            continue;
        }
        if (rank0)
            fprintf(stderr, "train: point %lld of %lld: %s\n", k + 1, n, label);
        ret = run_point(p, &sw, k, path, &shared, comm, link, &rows[k], err);
    }
    if (ret == 0 && rank0) {
        print_table((const char *const *)rows, n);
        if (link && melbo_link_finish_banks(link, (const char *const *)paths,
                                            (const char *const *)rows, (int)n) != 0)
            fprintf(stderr, "train: the coordinator did not confirm the banks' upload\n");
    }
    for (long long i = 0; i < n; i++)
        free(paths[i]), free(rows[i]);
    free(paths);
    free(rows);
    if (loaded)
        melbo_model_free(&shared);
    melbo_sweep_free(&sw);
    return ret;
}
