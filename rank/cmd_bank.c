/*
 * rank/cmd_bank.c - `melbo-rank bank FILE [--json] [--sort index|novelty|objective]`: a bank's
 * metadata and a table of its vectors (final objective, norm, largest |cos| to any other vector,
 * computed in fp64) or of its adapters (final objective, ||dW||_F = (alpha/r) ||B A||_F in fp64),
 * each with its triage (novelty z, cluster, degenerate: rank/method/triage.h) and the first line
 * of its completion, then the unsteered and random baselines' completions.
 *
 * `melbo-rank bank export ...` (rank/bank/export.h) and `melbo-rank bank report FILE -o HTML`
 * (rank/report/report.h) are subcommands: after `bank`, "export" and "report" are reserved
 * words, and a bank file with one of those names is shown as ./export.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "rank/bank/bank.h"
#include "rank/bank/export.h"
#include "rank/commands.h"
#include "rank/generate/completions.h"
#include "rank/method/adapter.h"
#include "rank/model/safetensors.h"
#include "rank/report/report.h"
#include "rank/train/state.h"

static const char *shown_keys[] = {"kind",
                                   "model_name",
                                   "architecture",
                                   "model_fingerprint",
                                   "d_model",
                                   "n_layers",
                                   "source_layer",
                                   "target_layer",
                                   "radius",
                                   "adapter_rank",
                                   "adapter_alpha",
                                   "adapter_module",
                                   "d_mlp",
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

/* --sort: the order of the table's rows (and of --json's). */
enum bank_sort { SORT_INDEX = 0, SORT_NOVELTY = 1, SORT_OBJECTIVE = 2 };
static const char *const sort_names[] = {"index", "novelty", "objective"};

/* What the command line asks for. */
struct bank_args {
    const char *path;   // the bank
    const char *other;  // --same-as OTHER, or NULL
    int json;           // --json
    enum bank_sort sort; // --sort
};

/* Reads the command line into a; returns -1 to go on, else the exit status (0 after --help,
 * 2 for a bad argument or a missing FILE). */
static int bank_parse_args(int argc, char **argv, struct bank_args *a) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            a->json = 1;
        else if (!strcmp(argv[i], "--same-as") && i + 1 < argc)
            a->other = argv[++i];
        else if (!strcmp(argv[i], "--sort") && i + 1 < argc) {
            const char *v = argv[++i];
            int k = 0;
            while (k < 3 && strcmp(v, sort_names[k]) != 0)
                k++;
            if (k == 3) {
                fprintf(stderr, "melbo-rank bank: --sort %s: choose index, novelty or objective\n",
                        v);
                return 2;
            }
            a->sort = (enum bank_sort)k;
        }
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf(
                "usage: melbo-rank bank FILE [--json] [--sort index|novelty|objective]\n"
                "       melbo-rank bank FILE --same-as OTHER\n"
                "       melbo-rank bank export BANK (--vector EXPR | --adapter K) --format F -o "
                "OUT\n"
                "       melbo-rank bank report BANK -o REPORT.html\n"
                "Shows a bank's settings and its vectors or adapters (--sort novelty: by the "
                "triage's z,\nhow much further each moved the completion than random "
                "baselines did), or checks that\ntwo banks are the same (every tensor bitwise, "
                "metadata except created, job_id,\nmelbo_version): exit 0 if so, 1 if not. "
                "`export` writes a vector or adapter for llama.cpp\nor PEFT (export --help); "
                "`report` one self-contained HTML page.\n");
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

/* ---------------------------------------------------------------------------------------------
 * What the table shows of each vector or adapter, computed in fp64.
 */

/* A bank's rows: per vector its norm and largest |cos| to any other vector; per adapter (and
 * per random baseline adapter) ||dW||_F. */
struct bank_stats {
    double *norm;      // (N) owned: vectors' norms, adapters' ||dW||_F
    double *maxcos;    // (N) owned: vectors only, the largest |cos| to any other vector
    double *rnorm;     // (n_random) owned: adapters only, the random baselines' ||dW||_F
};

static void bank_stats_free(struct bank_stats *st) {
    free(st->norm);
    free(st->maxcos);
    free(st->rnorm);
}

static void vector_stats(const struct melbo_bank *b, struct bank_stats *st) {
    int N = b->N, d = b->d;
    const float *vec = b->vectors;
    double *norm = melbo_xcalloc((size_t)N + 1, sizeof(double));
    double *maxcos = melbo_xcalloc((size_t)N + 1, sizeof(double));
    for (int a = 0; a < N; a++) {
        for (int j = 0; j < d; j++)
            norm[a] += (double)vec[(size_t)a * d + j] * vec[(size_t)a * d + j];
        norm[a] = sqrt(norm[a]);
    }
    for (int a = 0; a < N; a++)
        for (int c = a + 1; c < N; c++) {
            double dot = 0;
            for (int j = 0; j < d; j++)
                dot += (double)vec[(size_t)a * d + j] * vec[(size_t)c * d + j];
            double x = fabs(dot / (norm[a] * norm[c]));
            maxcos[a] = x > maxcos[a] ? x : maxcos[a];
            maxcos[c] = x > maxcos[c] ? x : maxcos[c];
        }
    st->norm = norm;
    st->maxcos = maxcos;
}

/* Every adapter's and random baseline adapter's ||dW||_F = (alpha / r) ||B A||_F, in fp64
 * without forming the d x d_mlp product (melbo_adapter_dot). */
static void adapter_stats(const struct melbo_bank *b, struct bank_stats *st) {
    struct melbo_adapter_shape s = {b->rank, b->d, b->d_mlp, b->alpha};
    st->norm = melbo_xcalloc((size_t)b->N + 1, sizeof(double));
    st->rnorm = melbo_xcalloc((size_t)b->n_random + 1, sizeof(double));
    for (int random = 0; random < 2; random++)
        for (int k = 0; k < (random ? b->n_random : b->N); k++) {
            const float *A = melbo_bank_lora_A(b, k, random), *B = melbo_bank_lora_B(b, k, random);
            double n2 = melbo_adapter_dot(A, B, A, B, &s);
            (random ? st->rnorm : st->norm)[k] = b->alpha / b->rank * sqrt(n2 > 0 ? n2 : 0);
        }
}

/* The objective of row a after the last (last = 1) or the first step; 0 without steps. */
static double objective_at(const struct melbo_bank *b, int a, int last) {
    if (b->steps == 0)
        return 0.0;
    return b->objective[(size_t)a * b->steps + (last ? b->steps - 1 : 0)];
}

/* ---------------------------------------------------------------------------------------------
 * The triage (rank/method/triage.h) and the order of the rows.
 */

/* The bank's triage items (an array of N objects), or NULL when the bank has none. */
static const cJSON *triage_items(const cJSON *triage, int N) {
    const cJSON *items = triage ? cJSON_GetObjectItemCaseSensitive(triage, "items") : NULL;
    return cJSON_GetArraySize(items) == N ? items : NULL;
}

static double item_num(const cJSON *items, int k, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(items, k), key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static int item_degenerate(const cJSON *items, int k) {
    return items != NULL &&
           cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(items, k),
                                                         "degenerate"));
}

static const double *sort_key; // qsort's context (one thread)

static int by_key_desc(const void *a, const void *b) {
    double x = sort_key[*(const int *)a], y = sort_key[*(const int *)b];
    return x < y ? 1 : x > y ? -1 : *(const int *)a - *(const int *)b;
}

/* order (N): row indices by --sort (novelty: z descending; objective: final F descending). */
static void row_order(const struct melbo_bank *b, const cJSON *items, enum bank_sort s,
                      int *order) {
    double *key = melbo_xcalloc((size_t)b->N + 1, sizeof *key);
    for (int k = 0; k < b->N; k++) {
        order[k] = k;
        key[k] = s == SORT_NOVELTY ? item_num(items, k, "z") : objective_at(b, k, 1);
    }
    if (s != SORT_INDEX && (s != SORT_NOVELTY || items)) {
        sort_key = key;
        qsort(order, (size_t)b->N, sizeof(int), by_key_desc);
    }
    free(key);
}

/* ---------------------------------------------------------------------------------------------
 * Output.
 */

/* --json: {"metadata": {every key}, "triage": the triage object or null, "vectors": [{index,
 * objective, norm, max_abs_cos, and with a triage z, d, cluster, degenerate}] in --sort's order;
 * for an adapter bank "kind": "adapter", "adapters": [{index, objective, delta_w_norm, ...}] and
 * "random_adapters": [{index, delta_w_norm}]. */
static void bank_print_json(const struct melbo_bank *b, const struct bank_stats *st,
                            const cJSON *triage, const int *order) {
    const struct melbo_st_file *f = &b->f;
    cJSON *o = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(o, "metadata");
    for (int i = 0; i < f->n_meta; i++)
        cJSON_AddStringToObject(meta, f->meta_keys[i], f->meta_values[i]);
    int adapters = b->kind == MELBO_BANK_KIND_ADAPTER;
    if (adapters)
        cJSON_AddStringToObject(o, "kind", "adapter");
    cJSON_AddItemToObject(o, "triage", triage ? cJSON_Duplicate(triage, 1) : cJSON_CreateNull());
    const cJSON *items = triage_items(triage, b->N);
    cJSON *arr = cJSON_AddArrayToObject(o, adapters ? "adapters" : "vectors");
    for (int r = 0; r < b->N; r++) {
        int a = order[r];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "index", a);
        cJSON_AddNumberToObject(e, "objective", objective_at(b, a, 1));
        if (items) {
            cJSON_AddNumberToObject(e, "z", item_num(items, a, "z"));
            cJSON_AddNumberToObject(e, "d", item_num(items, a, "d"));
            cJSON_AddNumberToObject(e, "cluster", item_num(items, a, "cluster"));
            cJSON_AddBoolToObject(e, "degenerate", item_degenerate(items, a));
        }
        if (adapters) {
            cJSON_AddNumberToObject(e, "delta_w_norm", st->norm[a]);
        } else {
            cJSON_AddNumberToObject(e, "norm", st->norm[a]);
            cJSON_AddNumberToObject(e, "max_abs_cos", st->maxcos[a]);
        }
        cJSON_AddItemToArray(arr, e);
    }
    if (adapters) {
        cJSON *rnd = cJSON_AddArrayToObject(o, "random_adapters");
        for (int k = 0; k < b->n_random; k++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddNumberToObject(e, "index", k);
            cJSON_AddNumberToObject(e, "delta_w_norm", st->rnorm[k]);
            cJSON_AddItemToArray(rnd, e);
        }
    }
    char *s = cJSON_Print(o);
    printf("%s\n", s);
    free(s);
    cJSON_Delete(o);
}

/* The table's rows after the vectors or adapters: the unsteered completion ("none") and each
 * random baseline's ("rK", with its ||dW||_F for adapters), first line of prompt 0's; comp is
 * the bank's "completions" JSON. */
static void bank_print_baselines(const cJSON *comp, const struct bank_stats *st, int n_random,
                                 int w) {
    char line[96];
    const cJSON *un = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(comp, "unsteered"), 0);
    if (cJSON_IsString(un)) {
        melbo_first_line(un->valuestring, line, 60);
        printf("  %*s  %12s  %12s  %9s  %10s  %s\n", w, "none", "", "", "", "", line);
    }
    const cJSON *rr, *rnd = cJSON_GetObjectItemCaseSensitive(comp, "random");
    int k = 0;
    cJSON_ArrayForEach(rr, rnd) {
        const cJSON *t = cJSON_GetArrayItem(rr, 0);
        char name[16], norm[32] = "";
        if (st->rnorm && k < n_random)
            snprintf(norm, sizeof norm, "%9.6g", st->rnorm[k]);
        snprintf(name, sizeof name, "r%d", k++);
        line[0] = '\0';
        if (cJSON_IsString(t))
            melbo_first_line(t->valuestring, line, 60);
        printf("  %*s  %12s  %12s  %9s  %10s  %s\n", w, name, "", "", norm, "", line);
    }
}

/* The default view: the settings in shown_keys, then one row per vector (objective at the last
 * and first step, norm, max |cos|) or per adapter (objective, ||dW||_F), its triage (z, cluster,
 * degenerate) and prompt 0's completion, in --sort's order, and the baselines' completions. */
static void bank_print_table(const struct melbo_bank *b, const char *path,
                             const struct bank_stats *st, const cJSON *triage, const int *order) {
    const cJSON *items = triage_items(triage, b->N);
    int adapters = b->kind == MELBO_BANK_KIND_ADAPTER, w = adapters ? 7 : 6;
    printf("bank %s\n", path);
    for (size_t k = 0; k < sizeof shown_keys / sizeof shown_keys[0]; k++) {
        const char *v = melbo_bank_meta(b, shown_keys[k]);
        if (v)
            printf("  %-18s %s\n", shown_keys[k], v);
    }
    const char *cj = melbo_bank_meta(b, "completions");
    cJSON *comp = cJSON_Parse(cj ? cj : "{}");
    const cJSON *cv = cJSON_GetObjectItemCaseSensitive(comp, adapters ? "adapters" : "vectors");
    char line[96];
    printf("\n  %*s  %12s  %12s  %9s  %10s  %7s  %3s  %s\n", w, adapters ? "adapter" : "vector",
           "objective", "first step", adapters ? "||dW||_F" : "norm", adapters ? "" : "max |cos|",
           items ? "z" : "", items ? "cl" : "",
           cJSON_IsArray(cv) ? "completion (prompt 0, first line)" : "");
    for (int r = 0; r < b->N; r++) {
        int a = order[r];
        const cJSON *row = cJSON_GetArrayItem(cv, a), *t = cJSON_GetArrayItem(row, 0);
        char cos[16] = "", z[16] = "", cl[16] = "";
        line[0] = '\0';
        if (cJSON_IsString(t))
            melbo_first_line(t->valuestring, line, 60);
        if (!adapters)
            snprintf(cos, sizeof cos, "%10.2e", st->maxcos[a]);
        if (items) {
            snprintf(z, sizeof z, "%7.2f", item_num(items, a, "z"));
            snprintf(cl, sizeof cl, "%3.0f", item_num(items, a, "cluster"));
        }
        printf("  %*d  %12.6g  %12.6g  %9.6g  %10s  %7s  %3s  %s%s\n", w, a, objective_at(b, a, 1),
               objective_at(b, a, 0), st->norm[a], cos, z, cl,
               item_degenerate(items, a) ? "[degenerate] " : "", line);
    }
    bank_print_baselines(comp, st, b->n_random, w);
    if (cJSON_IsArray(cv))
        printf("\n  none = unsteered completion, rK = random baseline K (%s, never trained)\n",
               adapters ? "unit-column factors like the adapters'" : "same norm");
    if (items)
        printf("  z = (token edit distance to the unsteered completions - the random baselines' "
               "mean) / max(their sd, 1); cl = cluster of %ss whose completions share >= half "
               "their word 3-grams\n",
               adapters ? "adapter" : "vector");
    else
        printf("  triage: none (%s): no novelty, clusters or degeneration flags\n",
               !cJSON_IsArray(cv) ? "the bank has no completions"
               : cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(comp, "random")) == 0
                   ? "the bank has no random baselines to compare with"
                   : "the bank was written before melbo computed triage");
    cJSON_Delete(comp);
}

/* `melbo-rank bank report FILE -o OUT.html`. */
static int bank_report_main(int argc, char **argv) {
    const char *path = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-o") || !strcmp(argv[i], "--out")) && i + 1 < argc)
            out = argv[++i];
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: melbo-rank bank report BANK -o REPORT.html\n"
                   "Writes one self-contained HTML page (no network, no script): the settings, "
                   "the %s\nranked by novelty with their clusters, every objective curve, the "
                   "cosine heat map and\nevery completion beside the unsteered one with the "
                   "changed words marked.\n",
                   "vectors or adapters");
            return 0;
        } else if (path == NULL && argv[i][0] != '-')
            path = argv[i];
        else {
            fprintf(stderr, "melbo-rank bank report: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (path == NULL || out == NULL) {
        fprintf(stderr, "usage: melbo-rank bank report BANK -o REPORT.html\n");
        return 2;
    }
    struct melbo_err err = {0};
    struct melbo_bank b;
    if (melbo_bank_open(&b, path, &err) != 0 || melbo_report_write(&b, out, &err) != 0) {
        fprintf(stderr, "melbo-rank bank report: %s\n", err.msg);
        melbo_bank_close(&b);
        return 1;
    }
    melbo_bank_close(&b);
    printf("%s\n", out);
    return 0;
}

int melbo_cmd_bank(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "export"))
        return melbo_bank_export_main(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "report"))
        return bank_report_main(argc - 1, argv + 1);
    struct bank_args a = {NULL, NULL, 0, SORT_INDEX};
    int status = bank_parse_args(argc, argv, &a);
    if (status >= 0)
        return status;
    if (a.other)
        return bank_same_as(a.path, a.other);
    struct melbo_err err = {0};
    struct melbo_bank b;
    if (melbo_bank_open(&b, a.path, &err) != 0) {
        fprintf(stderr, "melbo-rank bank: %s\n", err.msg);
        return 1;
    }
    struct bank_stats st = {0};
    if (b.kind == MELBO_BANK_KIND_ADAPTER)
        adapter_stats(&b, &st);
    else
        vector_stats(&b, &st);
    const char *tj = melbo_bank_meta(&b, "triage");
    cJSON *triage = tj ? cJSON_Parse(tj) : NULL;
    if (triage && !cJSON_IsObject(triage)) {
        cJSON_Delete(triage);
        triage = NULL;
    }
    if (a.sort == SORT_NOVELTY && !triage_items(triage, b.N))
        fprintf(stderr, "melbo-rank bank: %s has no triage (no completions or no random "
                        "baselines): --sort novelty keeps the index order\n",
                a.path);
    int *order = melbo_xcalloc((size_t)b.N + 1, sizeof *order);
    row_order(&b, triage_items(triage, b.N), a.sort, order);
    if (a.json)
        bank_print_json(&b, &st, triage, order);
    else
        bank_print_table(&b, a.path, &st, triage, order);
    free(order);
    cJSON_Delete(triage);
    bank_stats_free(&st);
    melbo_bank_close(&b);
    return 0;
}
