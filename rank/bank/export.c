/*
 * rank/bank/export.c - `melbo-rank bank export` (rank/bank/export.h): its options, its formats
 * and the checks made before a writer runs.
 *
 * The command line is BANK (the one positional argument, anywhere) and the options of the table
 * below, parsed by the options engine (options/opt.h); -o is --out. Usage errors (exit 2) are
 * found before the bank is opened, a selection that does not fit the format among them (--vector
 * with an adapter format, --adapter with a vector format); then the bank and the selection are
 * checked (exit 1): the format exports the bank's kind, an adapter index inside the bank. A
 * vector expression is checked by its writer, against the bank's rows (exit 1).
 */
#include "rank/bank/export.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "options/opt.h"

/* ---------------------------------------------------------------------------------------------
 * Options and formats.
 */

#define EXPORT_OPTIONS(X, G)                                                                       \
    X(INT, adapter, "adapter", NULL, MELBO_OPT_GE(0), 0, "K",                                      \
      "the adapter to export (row K of an adapter bank's lora_A / lora_B)")                        \
    X(STR, vector, "vector", NULL, MELBO_OPT_ANY, 0, "EXPR",                                       \
      "the vector to export, a vector expression as melbo-rank gen --vector reads it (3, -2*5, "   \
      "0.5*3+0.5*7, r0)")                                                                          \
    X(STR, format, "format", NULL, MELBO_OPT_ANY, 0, "F", "the output format (below)")             \
    X(PATH, out, "out", NULL, MELBO_OPT_ANY, 0, "OUT",                                             \
      "where to write (also -o): a directory for peft, a file for the GGUF formats")

struct export_params {
    EXPORT_OPTIONS(MELBO_OPT_FIELD, MELBO_OPT_NO_HEADING)
};

#define MELBO_OPT_STRUCT struct export_params
static const struct melbo_opt export_rows[] = {
    EXPORT_OPTIONS(MELBO_OPT_ROW, MELBO_OPT_HEADING_ROW)};
#undef MELBO_OPT_STRUCT
static const struct melbo_opt_table export_table = {export_rows,
                                                    sizeof export_rows / sizeof export_rows[0]};

/* One output format: what it exports and its writer. */
struct export_format {
    const char *name;          // --format NAME
    enum melbo_bank_kind kind; // the kind of bank it exports
    const char *out;           // what -o names
    const char *help;
    int (*write)(const struct melbo_export_job *job, struct melbo_err *err);
};

static const struct export_format formats[] = {
    {"peft", MELBO_BANK_KIND_ADAPTER, "DIR",
     "adapter_config.json + adapter_model.safetensors, for PEFT's\n      "
     "PeftModel.from_pretrained(model, DIR) on the Hugging Face checkpoint",
     melbo_export_peft},
    {"gguf-lora", MELBO_BANK_KIND_ADAPTER, "FILE.gguf",
     "a llama.cpp LoRA adapter (llama-cli --lora FILE.gguf) for the model in GGUF",
     melbo_export_gguf_lora},
    {"gguf-control-vector", MELBO_BANK_KIND_VECTOR, "FILE.gguf",
     "a llama.cpp control vector (llama-cli --control-vector FILE.gguf): the vector of\n      "
     "--vector EXPR as direction.S, S the bank's source layer (S >= 1); at scale 1 it\n      "
     "steers as melbo-rank gen --vector EXPR does",
     melbo_export_control_vector},
};
#define N_FORMATS (sizeof formats / sizeof formats[0])

static const struct export_format *find_format(const char *name) {
    for (size_t i = 0; i < N_FORMATS; i++)
        if (!strcmp(formats[i].name, name))
            return &formats[i];
    return NULL;
}

/* "peft, gguf-lora, gguf-control-vector" into buf. */
static const char *format_names(char *buf, size_t n) {
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < N_FORMATS && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%s", i ? ", " : "", formats[i].name);
    return buf;
}

static void export_usage(FILE *f) {
    fprintf(f, "usage: melbo-rank bank export BANK --adapter K --format peft -o DIR\n"
               "       melbo-rank bank export BANK --adapter K --format gguf-lora -o FILE.gguf\n"
               "       melbo-rank bank export BANK --vector EXPR --format gguf-control-vector "
               "-o FILE.gguf\n"
               "Writes one adapter or one vector of a bank in a format other tools load. The\n"
               "output is written atomically (whole or not at all).\n\noptions:\n");
    melbo_opts_usage(f, &export_table, 0);
    fprintf(f, "\nformats:\n");
    for (size_t i = 0; i < N_FORMATS; i++) {
        fprintf(f, "  %s -o %s  from %s banks (%s):\n      %s\n", formats[i].name, formats[i].out,
                melbo_bank_kind_name(formats[i].kind),
                formats[i].kind == MELBO_BANK_KIND_ADAPTER ? "--adapter K" : "--vector EXPR",
                formats[i].help);
    }
}

/* ---------------------------------------------------------------------------------------------
 * The command line.
 */

/* Which selection options the command line gave (--adapter 0 is a valid index, so the value
 * cannot tell). */
struct export_given {
    int adapter, vector;
};

/* melbo_opts_parse's visitor: fills struct export_given. */
static int export_visit(void *ctx, const struct melbo_opt *row, const char *name, const char *val,
                        struct melbo_err *err) {
    (void)row, (void)val, (void)err;
    struct export_given *g = ctx;
    if (!strcmp(name, "adapter"))
        g->adapter = 1;
    else if (!strcmp(name, "vector"))
        g->vector = 1;
    return 0;
}

/*
 * Splits argv into BANK and the options (with -o spelled --out) and parses them into p. Returns
 * -1 to go on, 0 after --help, 2 for a usage error (message printed).
 */
static int export_parse(int argc, char **argv, struct export_params *p, const char **bank,
                        struct export_given *given) {
    char **opt = melbo_xcalloc((size_t)argc + 1, sizeof(char *));
    int n = 0, status = -1;
    opt[n++] = argv[0];
    *bank = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            export_usage(stdout);
            status = 0;
            goto out;
        }
        if (!strcmp(a, "-o")) {
            opt[n++] = "--out";
            if (i + 1 < argc)
                opt[n++] = argv[++i];
        } else if (!strncmp(a, "--", 2)) {
            opt[n++] = argv[i];
            /* the value of an option that takes one is not BANK, even when it looks like it */
            const struct melbo_opt *row =
                strchr(a, '=') ? NULL : melbo_opts_find(&export_table, a + 2, NULL, NULL, NULL);
            if (row && melbo_opt_takes_value(row) && i + 1 < argc)
                opt[n++] = argv[++i];
        } else if (*bank == NULL && a[0] != '-') {
            *bank = a;
        } else {
            fprintf(stderr, "melbo-rank bank export: unexpected argument '%s' (see --help)\n", a);
            status = 2;
            goto out;
        }
    }
    struct melbo_err err = {0};
    struct melbo_opts_parse_cfg cfg = {"melbo-rank bank export", 0, 0, export_visit, given};
    int ret = melbo_opts_parse(&export_table, p, n, opt, &cfg, &err);
    if (ret < 0) {
        fprintf(stderr, "melbo-rank bank export: %s\n", err.msg);
        status = 2;
    } else if (*bank == NULL) {
        fprintf(stderr, "melbo-rank bank export: which bank? (usage: melbo-rank bank export BANK "
                        "(--vector EXPR | --adapter K) --format F -o OUT)\n");
        status = 2;
    } else if (p->out == NULL || p->out[0] == '\0') {
        fprintf(stderr, "melbo-rank bank export: missing -o OUT (where to write the export)\n");
        status = 2;
    }
out:
    free(opt);
    return status;
}

/* The selection against the format, before the bank is opened. Returns -1 to go on or 2 (a
 * usage error, message printed). */
static int export_check_selection(const struct export_format *fmt, const struct export_given *g) {
    if (g->adapter && g->vector) {
        fprintf(stderr, "melbo-rank bank export: give --vector EXPR or --adapter K, not both (one "
                        "export holds one vector or one adapter)\n");
        return 2;
    }
    if (fmt->kind == MELBO_BANK_KIND_VECTOR && g->adapter) {
        fprintf(stderr,
                "melbo-rank bank export: --format %s writes one vector (--vector EXPR), not an "
                "adapter: there is no export of an adapter bank to a control vector (--adapter K "
                "goes with --format peft or gguf-lora)\n",
                fmt->name);
        return 2;
    }
    if (fmt->kind == MELBO_BANK_KIND_ADAPTER && g->vector) {
        fprintf(stderr,
                "melbo-rank bank export: --format %s writes one adapter (--adapter K), not a "
                "vector (--vector EXPR goes with --format gguf-control-vector)\n",
                fmt->name);
        return 2;
    }
    return -1;
}

/* The format's kind against the bank's and the selection. Returns 0, 1 or 2 (exit status). */
static int export_check(const struct export_format *fmt, const struct melbo_bank *b,
                        const char *path, const struct export_params *p,
                        const struct export_given *g) {
    int given_adapter = g->adapter;
    if (b->kind == MELBO_BANK_KIND_ADAPTER && fmt->kind == MELBO_BANK_KIND_VECTOR) {
        fprintf(stderr,
                "melbo-rank bank export: %s is an adapter bank: there is no export of an adapter "
                "bank to a control vector (--format %s writes one vector of a vector bank; "
                "export an adapter with --adapter K --format peft or gguf-lora)\n",
                path, fmt->name);
        return 1;
    }
    if (given_adapter && b->kind != MELBO_BANK_KIND_ADAPTER) {
        fprintf(stderr,
                "melbo-rank bank export: %s is a %s bank: --adapter needs an adapter bank "
                "(trained with --adapter-rank)\n",
                path, melbo_bank_kind_name(b->kind));
        return 1;
    }
    if (b->kind != fmt->kind) {
        fprintf(stderr, "melbo-rank bank export: %s is a %s bank; --format %s exports %ss\n", path,
                melbo_bank_kind_name(b->kind), fmt->name, melbo_bank_kind_name(fmt->kind));
        return 1;
    }
    if (fmt->kind == MELBO_BANK_KIND_ADAPTER && !given_adapter) {
        fprintf(stderr,
                "melbo-rank bank export: --format %s exports one adapter: give --adapter K "
                "(0..%d)\n",
                fmt->name, b->N - 1);
        return 2;
    }
    if (fmt->kind == MELBO_BANK_KIND_VECTOR && !g->vector) {
        fprintf(stderr,
                "melbo-rank bank export: --format %s exports one vector: give --vector EXPR "
                "(a row 0..%d of the bank, or an expression of rows as melbo-rank gen --vector "
                "reads it)\n",
                fmt->name, b->N - 1);
        return 2;
    }
    if (fmt->kind == MELBO_BANK_KIND_ADAPTER && p->adapter >= b->N) {
        fprintf(stderr,
                "melbo-rank bank export: adapter %d is out of range (the bank has %d: "
                "0..%d)\n",
                p->adapter, b->N, b->N - 1);
        return 1;
    }
    return 0;
}

int melbo_bank_export_main(int argc, char **argv) {
    struct export_params p;
    melbo_opts_init(&export_table, &p);
    const char *bank_path = NULL;
    struct export_given given = {0, 0};
    int status = export_parse(argc, argv, &p, &bank_path, &given);
    const struct export_format *fmt = status < 0 && p.format ? find_format(p.format) : NULL;
    if (status < 0 && fmt == NULL) {
        char names[128];
        format_names(names, sizeof names);
        if (p.format)
            fprintf(stderr, "melbo-rank bank export: unknown --format '%s' (one of: %s)\n",
                    p.format, names);
        else
            fprintf(stderr, "melbo-rank bank export: missing --format F (one of: %s)\n", names);
        status = 2;
    }
    if (status < 0)
        status = export_check_selection(fmt, &given);
    if (status >= 0) {
        melbo_opts_free(&export_table, &p);
        return status;
    }
    struct melbo_err err = {0};
    struct melbo_bank bank;
    if (melbo_bank_open(&bank, bank_path, &err) != 0) {
        fprintf(stderr, "melbo-rank bank export: %s\n", err.msg);
        melbo_opts_free(&export_table, &p);
        return 1;
    }
    status = export_check(fmt, &bank, bank_path, &p, &given);
    if (status == 0) {
        struct melbo_export_job job = {&bank, bank_path, p.adapter, p.vector, p.out};
        if (fmt->write(&job, &err) != 0) {
            fprintf(stderr, "melbo-rank bank export: %s\n", err.msg);
            status = 1;
        } else if (fmt->kind == MELBO_BANK_KIND_VECTOR) {
            printf("wrote %s (%s, vector '%s' of %s as direction.%d)\n", p.out, fmt->name, p.vector,
                   bank_path, bank.source_layer);
        } else {
            printf("wrote %s (%s, adapter %d of %s)\n", p.out, fmt->name, p.adapter, bank_path);
        }
    }
    melbo_bank_close(&bank);
    melbo_opts_free(&export_table, &p);
    return status;
}
