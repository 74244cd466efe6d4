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

/* What the command line asks for. */
struct bank_args {
    const char *path;   // the bank
    const char *other;  // --same-as OTHER, or NULL
    int json;           // --json
};

/* Reads the command line into a; returns -1 to go on, else the exit status (0 after --help,
 * 2 for a bad argument or a missing FILE). */
static int bank_parse_args(int argc, char **argv, struct bank_args *a) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            a->json = 1;
        else if (!strcmp(argv[i], "--same-as") && i + 1 < argc)
            a->other = argv[++i];
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf(
                "usage: melbo-rank bank FILE [--json]\n"
                "       melbo-rank bank FILE --same-as OTHER\n"
                "Shows a bank's settings and its vectors, or checks that two banks are the same\n"
                "(every tensor bitwise, metadata except created, job_id, melbo_version): exit 0 "
                "if\n"
                "so, 1 if not.\n");
            return 0;
        } else if (a->path == NULL && argv[i][0] != '-')
            a->path = argv[i];
        else {
            fprintf(stderr, "melbo-rank bank: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (a->path == NULL) {
        fprintf(stderr, "usage: melbo-rank bank FILE [--json]\n");
        return 2;
    }
    return -1;
}

/* --same-as: prints "same bank" (exit 0) or the first difference (exit 1); 2 if unreadable. */
static int bank_same_as(const char *path, const char *other) {
    struct melbo_err err = {0};
    char why[512];
    int r = melbo_bank_equal(path, other, why, sizeof why, &err);
    if (r < 0) {
        fprintf(stderr, "melbo-rank bank: %s\n", err.msg);
        return 2;
    }
    printf("%s\n", r ? "same bank" : why);
    return r ? 0 : 1;
}

/* A bank's vectors and what the table shows of each (norm and max |cos| in fp64). */
struct bank_stats {
    int N, d, steps;
    const float *vec;  // (N, d), in the mapping
    const float *obj;  // (N, steps), the objective after each step, in the mapping
    double *norm;      // (N) owned
    double *maxcos;    // (N) owned: the largest |cos| to any other vector
};

/* Finds f's vectors and objective (refusing a file that is not a bank, naming path) and computes
 * their norms and largest |cos|; free st->norm and st->maxcos afterwards. Returns 0 or 1. */
static int bank_stats_compute(const struct melbo_st_file *f, const char *path,
                              struct bank_stats *st) {
    const char *fmt = melbo_st_meta(f, "format");
    const struct melbo_st_tensor *V = melbo_st_find(f, "vectors"),
                                 *O = melbo_st_find(f, "objective");
    if (fmt == NULL || strcmp(fmt, "melbo-bank") != 0 || V == NULL || V->ndim != 2 ||
        V->dtype != MELBO_DTYPE_F32 || O == NULL || O->ndim != 2 || O->dtype != MELBO_DTYPE_F32 ||
        O->shape[0] != V->shape[0]) {
        fprintf(stderr,
                "melbo-rank bank: %s is not a melbo bank (needs format=melbo-bank, "
                "vectors F32 [N, d] and objective F32 [N, steps])\n",
                path);
        return 1;
    }
    int N = (int)V->shape[0], d = (int)V->shape[1];
    const float *vec = V->data;
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
    st->N = N;
    st->d = d;
    st->steps = (int)O->shape[1];
    st->vec = vec;
    st->obj = O->data;
    st->norm = norm;
    st->maxcos = maxcos;
    return 0;
}

/* --json: {"metadata": {every key}, "vectors": [{index, objective, norm, max_abs_cos}]}. */
static void bank_print_json(const struct melbo_st_file *f, const struct bank_stats *st) {
    cJSON *o = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(o, "metadata");
    for (int i = 0; i < f->n_meta; i++)
        cJSON_AddStringToObject(meta, f->meta_keys[i], f->meta_values[i]);
    cJSON *arr = cJSON_AddArrayToObject(o, "vectors");
    for (int a = 0; a < st->N; a++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "index", a);
        cJSON_AddNumberToObject(e, "objective",
                                st->steps ? st->obj[(size_t)a * st->steps + st->steps - 1] : 0);
        cJSON_AddNumberToObject(e, "norm", st->norm[a]);
        cJSON_AddNumberToObject(e, "max_abs_cos", st->maxcos[a]);
        cJSON_AddItemToArray(arr, e);
    }
    char *s = cJSON_Print(o);
    printf("%s\n", s);
    free(s);
    cJSON_Delete(o);
}

/* The table's rows after the vectors: the unsteered completion ("none") and each random
 * baseline's ("rK"), first line of prompt 0's; comp is the bank's "completions" JSON. */
static void bank_print_baselines(const cJSON *comp) {
    char line[96];
    const cJSON *un = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(comp, "unsteered"), 0);
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
}

/* The default view: the settings in shown_keys, then one row per vector (objective at the last
 * and first step, norm, max |cos|, prompt 0's completion) and the baselines' completions. */
static void bank_print_table(const struct melbo_st_file *f, const char *path,
                             const struct bank_stats *st) {
    printf("bank %s\n", path);
    for (size_t k = 0; k < sizeof shown_keys / sizeof shown_keys[0]; k++) {
        const char *v = melbo_st_meta(f, shown_keys[k]);
        if (v)
            printf("  %-18s %s\n", shown_keys[k], v);
    }
    cJSON *comp =
        cJSON_Parse(melbo_st_meta(f, "completions") ? melbo_st_meta(f, "completions") : "{}");
    const cJSON *cv = cJSON_GetObjectItemCaseSensitive(comp, "vectors");
    char line[96];
    printf("\n  %6s  %12s  %12s  %9s  %10s  %s\n", "vector", "objective", "first step", "norm",
           "max |cos|", cJSON_IsArray(cv) ? "completion (prompt 0, first line)" : "");
    int steps = st->steps;
    for (int a = 0; a < st->N; a++) {
        const cJSON *row = cJSON_GetArrayItem(cv, a), *t = cJSON_GetArrayItem(row, 0);
        line[0] = '\0';
        if (cJSON_IsString(t))
            melbo_first_line(t->valuestring, line, 60);
        printf("  %6d  %12.6g  %12.6g  %9.6g  %10.2e  %s\n", a,
               steps ? st->obj[(size_t)a * steps + steps - 1] : 0.0,
               steps ? st->obj[(size_t)a * steps] : 0.0, st->norm[a], st->maxcos[a], line);
    }
    bank_print_baselines(comp);
    if (cJSON_IsArray(cv))
        printf("\n  none = unsteered completion, rK = random baseline K (same norm, never "
               "trained)\n");
    cJSON_Delete(comp);
}

int melbo_cmd_bank(int argc, char **argv) {
    struct bank_args a = {NULL, NULL, 0};
    int status = bank_parse_args(argc, argv, &a);
    if (status >= 0)
        return status;
    if (a.other)
        return bank_same_as(a.path, a.other);
    struct melbo_err err = {0};
    struct melbo_st_file f;
    if (melbo_st_open(&f, a.path, &err) != 0) {
        fprintf(stderr, "melbo-rank bank: %s\n", err.msg);
        return 1;
    }
    struct bank_stats st = {0};
    status = bank_stats_compute(&f, a.path, &st);
    if (status == 0) {
        if (a.json)
            bank_print_json(&f, &st);
        else
            bank_print_table(&f, a.path, &st);
    }
    free(st.norm);
    free(st.maxcos);
    melbo_st_close(&f);
    return status;
}
