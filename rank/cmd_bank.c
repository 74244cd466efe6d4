/*
 * rank/cmd_bank.c - `melbo-rank bank FILE [--json]`: a bank's metadata and a table of its vectors
 * (final objective, norm, largest |cos| to any other vector, computed in fp64) or of its adapters
 * (final objective, ||dW||_F = (alpha/r) ||B A||_F in fp64), each with the first line of its
 * completion, then the unsteered and random baselines' completions.
 *
 * `melbo-rank bank export ...` (rank/bank/export.h) and `melbo-rank bank report ...` are
 * subcommands: after `bank`, "export" and "report" are reserved words, and a bank file with one
 * of those names is shown as ./export.
 */
#include <cblas.h>
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
#include "rank/model/safetensors.h"
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
                "       melbo-rank bank export BANK --adapter K --format peft|gguf-lora -o OUT\n"
                "Shows a bank's settings and its vectors or adapters, or checks that two banks "
                "are the\nsame (every tensor bitwise, metadata except created, job_id, "
                "melbo_version): exit 0 if\nso, 1 if not. `export` writes one adapter for "
                "PEFT or llama.cpp (export --help).\n");
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

/*
 * ||dW||_F = (alpha / r) ||B A||_F for A (r, d_mlp) and B (d, r), in fp64 without forming the
 * d x d_mlp product: ||B A||_F^2 = trace((B^T B)(A A^T)), two r x r Gram matrices (upper
 * triangles, dsyrk). ga, gb and the copies are scratch of r*r and max(d, d_mlp)*r doubles.
 */
static double adapter_norm(const float *A, const float *B, int r, int d, int d_mlp, double alpha,
                           double *ga, double *gb, double *copy) {
    for (size_t i = 0; i < (size_t)r * d_mlp; i++)
        copy[i] = A[i];
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, r, d_mlp, 1.0, copy, d_mlp, 0.0, ga, r);
    for (size_t i = 0; i < (size_t)d * r; i++)
        copy[i] = B[i];
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, r, d, 1.0, copy, r, 0.0, gb, r);
    double s = 0;
    for (int i = 0; i < r; i++) {
        s += ga[(size_t)i * r + i] * gb[(size_t)i * r + i];
        for (int j = i + 1; j < r; j++)
            s += 2.0 * ga[(size_t)i * r + j] * gb[(size_t)i * r + j];
    }
    return alpha / r * sqrt(s > 0 ? s : 0);
}

static void adapter_stats(const struct melbo_bank *b, struct bank_stats *st) {
    int r = b->rank, big = b->d > b->d_mlp ? b->d : b->d_mlp;
    double *ga = melbo_xmalloc(sizeof(double) * (size_t)r * r);
    double *gb = melbo_xmalloc(sizeof(double) * (size_t)r * r);
    double *copy = melbo_xmalloc(sizeof(double) * (size_t)big * r);
    st->norm = melbo_xcalloc((size_t)b->N + 1, sizeof(double));
    st->rnorm = melbo_xcalloc((size_t)b->n_random + 1, sizeof(double));
    for (int k = 0; k < b->N; k++)
        st->norm[k] = adapter_norm(melbo_bank_lora_A(b, k, 0), melbo_bank_lora_B(b, k, 0), r, b->d,
                                   b->d_mlp, b->alpha, ga, gb, copy);
    for (int k = 0; k < b->n_random; k++)
        st->rnorm[k] = adapter_norm(melbo_bank_lora_A(b, k, 1), melbo_bank_lora_B(b, k, 1), r,
                                    b->d, b->d_mlp, b->alpha, ga, gb, copy);
    free(ga);
    free(gb);
    free(copy);
}

/* The objective of row a after the last (last = 1) or the first step; 0 without steps. */
static double objective_at(const struct melbo_bank *b, int a, int last) {
    if (b->steps == 0)
        return 0.0;
    return b->objective[(size_t)a * b->steps + (last ? b->steps - 1 : 0)];
}

/* ---------------------------------------------------------------------------------------------
 * Output.
 */

/* --json: {"metadata": {every key}, "vectors": [{index, objective, norm, max_abs_cos}]}; for an
 * adapter bank "kind": "adapter", "adapters": [{index, objective, delta_w_norm}] and
 * "random_adapters": [{index, delta_w_norm}]. */
static void bank_print_json(const struct melbo_bank *b, const struct bank_stats *st) {
    const struct melbo_st_file *f = &b->f;
    cJSON *o = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(o, "metadata");
    for (int i = 0; i < f->n_meta; i++)
        cJSON_AddStringToObject(meta, f->meta_keys[i], f->meta_values[i]);
    int adapters = b->kind == MELBO_BANK_KIND_ADAPTER;
    if (adapters)
        cJSON_AddStringToObject(o, "kind", "adapter");
    cJSON *arr = cJSON_AddArrayToObject(o, adapters ? "adapters" : "vectors");
    for (int a = 0; a < b->N; a++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "index", a);
        cJSON_AddNumberToObject(e, "objective", objective_at(b, a, 1));
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
 * and first step, norm, max |cos|) or per adapter (objective, ||dW||_F) with prompt 0's
 * completion, and the baselines' completions. */
static void bank_print_table(const struct melbo_bank *b, const char *path,
                             const struct bank_stats *st) {
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
    printf("\n  %*s  %12s  %12s  %9s  %10s  %s\n", w, adapters ? "adapter" : "vector", "objective",
           "first step", adapters ? "||dW||_F" : "norm", adapters ? "" : "max |cos|",
           cJSON_IsArray(cv) ? "completion (prompt 0, first line)" : "");
    for (int a = 0; a < b->N; a++) {
        const cJSON *row = cJSON_GetArrayItem(cv, a), *t = cJSON_GetArrayItem(row, 0);
        char cos[16] = "";
        line[0] = '\0';
        if (cJSON_IsString(t))
            melbo_first_line(t->valuestring, line, 60);
        if (!adapters)
            snprintf(cos, sizeof cos, "%10.2e", st->maxcos[a]);
        printf("  %*d  %12.6g  %12.6g  %9.6g  %10s  %s\n", w, a, objective_at(b, a, 1),
               objective_at(b, a, 0), st->norm[a], cos, line);
    }
    bank_print_baselines(comp, st, b->n_random, w);
    if (cJSON_IsArray(cv))
        printf("\n  none = unsteered completion, rK = random baseline K (%s, never trained)\n",
               adapters ? "unit-column factors like the adapters'" : "same norm");
    cJSON_Delete(comp);
}

int melbo_cmd_bank(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "export"))
        return melbo_bank_export_main(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "report")) {
        fprintf(stderr, "melbo-rank bank report: not available yet (to show a bank file named "
                        "'report', write ./report)\n");
        return 2;
    }
    struct bank_args a = {NULL, NULL, 0};
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
    if (a.json)
        bank_print_json(&b, &st);
    else
        bank_print_table(&b, a.path, &st);
    bank_stats_free(&st);
    melbo_bank_close(&b);
    return 0;
}
