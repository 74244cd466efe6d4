/*
 * rank/cmd_bank.c - `melbo-rank bank FILE [--json]`: a bank's metadata and a table of its vectors
 * (final objective, norm, largest |cos| to any other vector, computed in fp64).
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "rank/commands.h"
#include "rank/generate/completions.h"
#include "rank/model/safetensors.h"
#include "rank/train/state.h"

static const char *shown_keys[] = {"model_name",
                                   "architecture",
                                   "model_fingerprint",
                                   "d_model",
                                   "n_layers",
                                   "source_layer",
                                   "target_layer",
                                   "radius",
                                   "p",
                                   "q",
                                   "loss_axis",
                                   "target_tokens",
                                   "steps",
                                   "vectors",
                                   "wave",
                                   "orthogonal",
                                   "lr",
                                   "betas",
                                   "seed",
                                   "chat_format",
                                   "prompts",
                                   "created",
                                   "job_id",
                                   "melbo_version"};

int melbo_cmd_bank(int argc, char **argv) {
    const char *path = NULL, *other = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!strcmp(argv[i], "--same-as") && i + 1 < argc)
            other = argv[++i];
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf(
                "usage: melbo-rank bank FILE [--json]\n"
                "       melbo-rank bank FILE --same-as OTHER\n"
                "Shows a bank's settings and its vectors, or checks that two banks are the same\n"
                "(every tensor bitwise, metadata except created, job_id, melbo_version): exit 0 "
                "if\n"
                "so, 1 if not.\n");
            return 0;
        } else if (path == NULL && argv[i][0] != '-')
            path = argv[i];
        else {
            fprintf(stderr, "melbo-rank bank: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (path == NULL) {
        fprintf(stderr, "usage: melbo-rank bank FILE [--json]\n");
        return 2;
    }
    struct melbo_err err = {0};
    if (other) {
        char why[512];
        int r = melbo_bank_equal(path, other, why, sizeof why, &err);
        if (r < 0) {
            fprintf(stderr, "melbo-rank bank: %s\n", err.msg);
            return 2;
        }
        printf("%s\n", r ? "same bank" : why);
        return r ? 0 : 1;
    }
    struct melbo_st_file f;
    if (melbo_st_open(&f, path, &err) != 0) {
        fprintf(stderr, "melbo-rank bank: %s\n", err.msg);
        return 1;
    }
    int status = 1;
    const char *fmt = melbo_st_meta(&f, "format");
    const struct melbo_st_tensor *V = melbo_st_find(&f, "vectors"),
                                 *O = melbo_st_find(&f, "objective");
    if (fmt == NULL || strcmp(fmt, "melbo-bank") != 0 || V == NULL || V->ndim != 2 ||
        V->dtype != MELBO_DTYPE_F32 || O == NULL || O->ndim != 2 || O->dtype != MELBO_DTYPE_F32 ||
        O->shape[0] != V->shape[0]) {
        fprintf(stderr,
                "melbo-rank bank: %s is not a melbo bank (needs format=melbo-bank, "
                "vectors F32 [N, d] and objective F32 [N, steps])\n",
                path);
        goto out;
    }
    int N = (int)V->shape[0], d = (int)V->shape[1], steps = (int)O->shape[1];
    const float *vec = V->data, *obj = O->data;
    double *norm = melbo_xcalloc((size_t)N + 1, sizeof(double));
    double *maxcos = melbo_xcalloc((size_t)N + 1, sizeof(double));
    for (int a = 0; a < N; a++) {
        for (int j = 0; j < d; j++)
            norm[a] += (double)vec[(size_t)a * d + j] * vec[(size_t)a * d + j];
        norm[a] = sqrt(norm[a]);
    }
    for (int a = 0; a < N; a++)
        for (int b = a + 1; b < N; b++) {
            double dot = 0;
            for (int j = 0; j < d; j++)
                dot += (double)vec[(size_t)a * d + j] * vec[(size_t)b * d + j];
            double c = fabs(dot / (norm[a] * norm[b]));
            maxcos[a] = c > maxcos[a] ? c : maxcos[a];
            maxcos[b] = c > maxcos[b] ? c : maxcos[b];
        }
    if (json) {
        cJSON *o = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(o, "metadata");
        for (int i = 0; i < f.n_meta; i++)
            cJSON_AddStringToObject(meta, f.meta_keys[i], f.meta_values[i]);
        cJSON *arr = cJSON_AddArrayToObject(o, "vectors");
        for (int a = 0; a < N; a++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddNumberToObject(e, "index", a);
            cJSON_AddNumberToObject(e, "objective", steps ? obj[(size_t)a * steps + steps - 1] : 0);
            cJSON_AddNumberToObject(e, "norm", norm[a]);
            cJSON_AddNumberToObject(e, "max_abs_cos", maxcos[a]);
            cJSON_AddItemToArray(arr, e);
        }
        char *s = cJSON_Print(o);
        printf("%s\n", s);
        free(s);
        cJSON_Delete(o);
    } else {
        printf("bank %s\n", path);
        for (size_t k = 0; k < sizeof shown_keys / sizeof shown_keys[0]; k++) {
            const char *v = melbo_st_meta(&f, shown_keys[k]);
            if (v)
                printf("  %-18s %s\n", shown_keys[k], v);
        }
        cJSON *comp =
            cJSON_Parse(melbo_st_meta(&f, "completions") ? melbo_st_meta(&f, "completions") : "{}");
        const cJSON *cv = cJSON_GetObjectItemCaseSensitive(comp, "vectors");
        char line[96];
        printf("\n  %6s  %12s  %12s  %9s  %10s  %s\n", "vector", "objective", "first step", "norm",
               "max |cos|", cJSON_IsArray(cv) ? "completion (prompt 0, first line)" : "");
        for (int a = 0; a < N; a++) {
            const cJSON *row = cJSON_GetArrayItem(cv, a), *t = cJSON_GetArrayItem(row, 0);
            line[0] = '\0';
            if (cJSON_IsString(t))
                melbo_first_line(t->valuestring, line, 60);
            printf("  %6d  %12.6g  %12.6g  %9.6g  %10.2e  %s\n", a,
                   steps ? obj[(size_t)a * steps + steps - 1] : 0.0,
                   steps ? obj[(size_t)a * steps] : 0.0, norm[a], maxcos[a], line);
        }
        const cJSON *un =
            cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(comp, "unsteered"), 0);
        if (cJSON_IsString(un)) {
            melbo_first_line(un->valuestring, line, 60);
            printf("  %6s  %12s  %12s  %9s  %10s  %s\n", "none", "", "", "", "", line);
        }
        const cJSON *rr, *rnd = cJSON_GetObjectItemCaseSensitive(comp, "random");
        int k = 0;
        cJSON_ArrayForEach(rr, rnd) {
            const cJSON *t = cJSON_GetArrayItem(rr, 0);
            char name[16];
            snprintf(name, sizeof name, "r%d", k++);
            line[0] = '\0';
            if (cJSON_IsString(t))
                melbo_first_line(t->valuestring, line, 60);
            printf("  %6s  %12s  %12s  %9s  %10s  %s\n", name, "", "", "", "", line);
        }
        if (cJSON_IsArray(cv))
            printf("\n  none = unsteered completion, rK = random baseline K (same norm, never "
                   "trained)\n");
        cJSON_Delete(comp);
    }
    free(norm);
    free(maxcos);
    status = 0;
out:
    melbo_st_close(&f);
    return status;
}
