/*
 * options/opt.h - one table per list of options, and the engine that every command line, help
 * page, job spec and bank file is driven from (the redis `standardConfig static_configs[]` idea).
 *
 * A table is an array of rows (struct melbo_opt); a row names an option (`--steps`), its kind
 * (how its text becomes a value), where the value is stored (an offset into a settings struct),
 * its default, the check its value must pass, what it is for (flags: recorded in banks, part of
 * a checkpoint's identity, chosen by the coordinator, ...) and its help text. A row of kind
 * TABLE nests another table (the generation settings inside the training settings), so a
 * command has exactly one root table. From the table come:
 *
 *   melbo_opts_init / _free / _copy   defaults, releasing and deep-copying a settings struct
 *   melbo_opts_parse                  the command line (`melbo-rank train`, `melbo submit`, ...)
 *   melbo_opts_usage                  the --help page
 *   melbo_opts_format                 a value as text: bank metadata and checkpoint settings
 *   melbo_opts_find                   a name to its row (the coordinator's spec -> argv)
 *
 * Tables whose settings struct is generated from the same list (options/train.h) are written as
 * X-macros: one entry declares the struct field and the row together, so adding an option is
 * one entry. Rows of kinds with an owned value (STR, PATH, LIST, PROMPTS) must be freed with
 * melbo_opts_free.
 *
 * No BLAS, MPI, CUDA, PCRE2 or utf8proc here: the coordinator and the client link this library.
 * Allocation failures abort (common/mem.h); parsing never does, it returns MELBO_EINVAL with a
 * message naming the option and the value.
 */
#ifndef MELBO_OPTIONS_OPT_H
#define MELBO_OPTIONS_OPT_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How an option's text becomes a value, and the C type of its field. */
enum melbo_opt_kind {
    MELBO_OPT_HEADING = 0, // not an option: a heading line of the help page (help is the text)
    MELBO_OPT_INT,         // int
    MELBO_OPT_U64,         // uint64_t, written without a sign
    MELBO_OPT_REAL,        // double, finite
    MELBO_OPT_STR,         // char *, owned; with choices, one of them
    MELBO_OPT_PATH,        // char *, owned: a file or directory (`melbo submit` makes it
                           // absolute; the coordinator refuses a relative one)
    MELBO_OPT_FLAG,        // int 0/1, set by --NAME and cleared by --no-NAME
    MELBO_OPT_CHOICE,      // int, the index of the value in choices ("token|dim": 0 or 1)
    MELBO_OPT_REAL_AUTO,   // double FIELD and int FIELD_auto: a number, or the word "auto"
    MELBO_OPT_PAIR,        // double FIELD[2]: "A,B"; the check applies to each
    MELBO_OPT_SLICE,       // struct melbo_slice (options/slice.h): a Python slice
    MELBO_OPT_LIST,        // struct melbo_str_list: every occurrence appended, owned
    MELBO_OPT_PROMPTS,     // struct melbo_prompt_opts (options/prompts.h): a group of options
                           // (--prompt, --raw-prompt, --prompts, --system, --chat-format,
                           // --prompt-ids) sharing one field; names come from options/prompts.c
    MELBO_OPT_TABLE,       // a nested table (sub) over the struct at offset
};

/* What a row is for (bits of struct melbo_opt.flags). */
enum {
    MELBO_OPT_REQUIRED = 1u << 0, // must be given (except where a parse skips its flags)
    MELBO_OPT_BANK = 1u << 1,     // recorded in a bank's metadata under its key (melbo_opt_key)
    MELBO_OPT_RESULT = 1u << 2,   // decides the numbers: part of a checkpoint's identity
                                  // ("setting.<key>"), compared on --resume
    MELBO_OPT_LOCAL = 1u << 3,    // about this process or machine, chosen by whoever starts the
                                  // ranks (--out, --checkpoint, --job-id, ...): `melbo submit`
                                  // refuses it
    MELBO_OPT_JOB = 1u << 4,      // a job setting the coordinator reads (Slurm layout, label);
                                  // never passed to the ranks
    MELBO_OPT_HIDDEN = 1u << 5,   // left out of the help page
};

/*
 * The check a value must pass. Numbers: lo <= x <= hi, each end open when *_open (an INT or
 * U64 must also be whole). STR and CHOICE: choices, "a|b|c"; a choice may carry aliases after
 * commas ("cuda,gpu" accepts gpu for cuda). NULL choices: any string.
 */
struct melbo_opt_check {
    double lo, hi;
    unsigned char lo_open, hi_open;
    const char *choices;
};

/* Initialisers of struct melbo_opt_check, for the check column of a table. */
#define MELBO_OPT_ANY {-INFINITY, INFINITY, 0, 0, NULL}
#define MELBO_OPT_GE(a) {(a), INFINITY, 0, 0, NULL}
#define MELBO_OPT_GT(a) {(a), INFINITY, 1, 0, NULL}
#define MELBO_OPT_IN(a, b) {(a), (b), 0, 0, NULL}
#define MELBO_OPT_IN_LO_OPEN(a, b) {(a), (b), 1, 0, NULL}
#define MELBO_OPT_IN_HI_OPEN(a, b) {(a), (b), 0, 1, NULL}
#define MELBO_OPT_CHOICES(s) {-INFINITY, INFINITY, 0, 0, (s)}

/*
 * One row. A default in parentheses ("(L - 8)") describes a value decided later (from the
 * model, or from other options); the field then starts UNSET (MELBO_OPT_UNSET_INT for INT,
 * NaN for REAL) and the command resolves it. NULL def: zero, NULL, or "not given".
 */
struct melbo_opt {
    const char *name;                 // the option is --name; NULL for a HEADING
    enum melbo_opt_kind kind;
    size_t offset;                    // of the field in the settings struct
    size_t aux;                       // REAL_AUTO: offset of the int "auto" field
    const char *def;                  // the initial value as text (see above)
    struct melbo_opt_check check;
    unsigned flags;                   // MELBO_OPT_*
    const char *metavar;              // "N" in "--steps N"
    const char *help;                 // one line (a HEADING: the heading)
    const struct melbo_opt_table *sub; // TABLE: the nested table
};

struct melbo_opt_table {
    const struct melbo_opt *rows;
    size_t n;
};

/* The value of an INT field whose default is decided later and that was not given. */
#define MELBO_OPT_UNSET_INT (-2147483647 - 1)

/* Repeatable strings (kind LIST), owned. */
struct melbo_str_list {
    char **v;
    int n;
};

/* ---- Declaring a table from an X-macro list ------------------------------------------------
 * A list entry is X(KIND, field, "name", def, check, flags, metavar, help) or G(heading); the
 * struct of the settings is declared with MELBO_OPT_FIELD / MELBO_OPT_NO_HEADING and the rows
 * with MELBO_OPT_ROW / MELBO_OPT_HEADING_ROW after defining MELBO_OPT_STRUCT (options/train.h
 * shows both). KIND is the enum's suffix: INT, REAL, ...
 */
#define MELBO_OPT_DECL_INT(f) int f;
#define MELBO_OPT_DECL_U64(f) uint64_t f;
#define MELBO_OPT_DECL_REAL(f) double f;
#define MELBO_OPT_DECL_STR(f) char *f;
#define MELBO_OPT_DECL_PATH(f) char *f;
#define MELBO_OPT_DECL_FLAG(f) int f;
#define MELBO_OPT_DECL_CHOICE(f) int f;
#define MELBO_OPT_DECL_REAL_AUTO(f) double f; int f##_auto;
#define MELBO_OPT_DECL_PAIR(f) double f[2];
#define MELBO_OPT_DECL_SLICE(f) struct melbo_slice f;
#define MELBO_OPT_DECL_LIST(f) struct melbo_str_list f;
#define MELBO_OPT_DECL_PROMPTS(f) struct melbo_prompt_opts f;

#define MELBO_OPT_AUX_INT(st, f) 0
#define MELBO_OPT_AUX_U64(st, f) 0
#define MELBO_OPT_AUX_REAL(st, f) 0
#define MELBO_OPT_AUX_STR(st, f) 0
#define MELBO_OPT_AUX_PATH(st, f) 0
#define MELBO_OPT_AUX_FLAG(st, f) 0
#define MELBO_OPT_AUX_CHOICE(st, f) 0
#define MELBO_OPT_AUX_REAL_AUTO(st, f) offsetof(st, f##_auto)
#define MELBO_OPT_AUX_PAIR(st, f) 0
#define MELBO_OPT_AUX_SLICE(st, f) 0
#define MELBO_OPT_AUX_LIST(st, f) 0
#define MELBO_OPT_AUX_PROMPTS(st, f) 0

#define MELBO_OPT_FIELD(kind, f, name, def, check, flags, metavar, help) MELBO_OPT_DECL_##kind(f)
#define MELBO_OPT_NO_HEADING(text)
#define MELBO_OPT_ROW(kind, f, name, def, check, flags, metavar, help)                             \
    {(name), MELBO_OPT_##kind, offsetof(MELBO_OPT_STRUCT, f),                                      \
     MELBO_OPT_AUX_##kind(MELBO_OPT_STRUCT, f), (def), check, (flags), (metavar), (help), NULL},
#define MELBO_OPT_HEADING_ROW(text)                                                                \
    {NULL, MELBO_OPT_HEADING, 0, 0, NULL, MELBO_OPT_ANY, 0, NULL, (text), NULL},
/* A row nesting table (a struct melbo_opt_table *) over the struct field f. */
#define MELBO_OPT_TABLE_ROW(f, table)                                                              \
    {NULL, MELBO_OPT_TABLE, offsetof(MELBO_OPT_STRUCT, f), 0, NULL, MELBO_OPT_ANY, 0, NULL, NULL,   \
     (table)},

/* ---- The engine -------------------------------------------------------------------------- */

/* Sets every field of the table's struct at base to its default (owned values allocated). */
void melbo_opts_init(const struct melbo_opt_table *t, void *base);

/* Frees every owned value of the struct at base and zeroes those fields. */
void melbo_opts_free(const struct melbo_opt_table *t, void *base);

/* Deep copy: dst (uninitialised) becomes an independent copy of src; free both. Fields the
 * table does not describe are left alone (copy the struct first if it has any). */
void melbo_opts_copy(const struct melbo_opt_table *t, void *dst, const void *src);

/*
 * Called by melbo_opts_parse for every option of the command line, in order, once its name is
 * known and before its value is parsed: name as written without the dashes ("no-orthogonal",
 * "prompt"), val its value or NULL for a flag, and the row it belongs to. Returning a negative
 * code (with err set) stops the parse.
 */
typedef int (*melbo_opts_visit_fn)(void *ctx, const struct melbo_opt *row, const char *name,
                                   const char *val, struct melbo_err *err);

struct melbo_opts_parse_cfg {
    const char *command;       // "melbo-rank train": named in "unknown option" messages
    unsigned refuse;           // rows with any of these flags are refused ("--out is chosen by
                               // the coordinator" for LOCAL, "... is not an option of" else)
    unsigned skip_required;    // REQUIRED rows with any of these flags need not be given
    melbo_opts_visit_fn visit; // may be NULL
    void *ctx;
};

/*
 * Parses argv[1..argc) (argv[0] is the command's name) into the struct at base, which holds
 * defaults (melbo_opts_init) or an earlier parse. Every value is checked (syntax, range,
 * choices); REQUIRED rows must be given. Returns 0; 1 when --help or -h was given (nothing
 * else is checked; print melbo_opts_usage); or a negative code with err naming the option and
 * the value (an unknown option, a missing value, a bad value, a missing required option).
 * Positional arguments are refused. cfg may be NULL (no refusals, no visitor).
 */
int melbo_opts_parse(const struct melbo_opt_table *t, void *base, int argc, char **argv,
                     const struct melbo_opts_parse_cfg *cfg, struct melbo_err *err);

/*
 * Parses one option (name without the dashes, val its value or NULL) into base, as
 * melbo_opts_parse does for each. Returns 0, or a negative code (MELBO_ENOENT when name is no
 * option of the table; then err says so).
 */
int melbo_opts_parse_one(const struct melbo_opt_table *t, void *base, const char *name,
                         const char *val, struct melbo_err *err);

/*
 * The row of option name (without dashes; "no-X" finds flag X), searching nested tables; NULL
 * if none. When base is given, *field_base is set to the struct the row's offset applies to
 * (base, or the nested struct); *negated to 1 for "no-X".
 */
const struct melbo_opt *melbo_opts_find(const struct melbo_opt_table *t, const char *name,
                                        void *base, void **field_base, int *negated);

/* 1 if the row's options take a value, 0 if not (a flag). */
int melbo_opt_takes_value(const struct melbo_opt *row);

/* 1 if the value of option name is a path (PATH rows, --prompts FILE). */
int melbo_opt_is_path(const struct melbo_opt *row, const char *name);

/*
 * The help page of the table: headings and one line per option ("  --steps N   optimiser
 * steps per vector (default 300)"), leaving out rows with any flag of hide (and HIDDEN rows).
 */
void melbo_opts_usage(FILE *f, const struct melbo_opt_table *t, unsigned hide);

/* How melbo_opts_format writes numbers. */
enum melbo_opt_style {
    MELBO_OPT_STYLE_BANK,  // as DESIGN §4's bank metadata: %.9g, betas "[a, b]", true/false
    MELBO_OPT_STYLE_EXACT, // round-trip: %.17g, "a,b"; for a checkpoint's identity
};

/*
 * Writes the value of row (field in the struct at base) into buf (size n) as text. Returns 0,
 * or -1 when the kind has no single text form (LIST, PROMPTS, TABLE) or the value does not fit.
 */
int melbo_opts_format(const struct melbo_opt *row, const void *base, enum melbo_opt_style style,
                      char *buf, size_t n);

/* The row's key in banks and checkpoints: its name with '-' turned into '_' ("source_layer"). */
void melbo_opt_key(const struct melbo_opt *row, char *buf, size_t n);

/*
 * Calls fn for every row (nested tables walked, with the struct their offsets apply to) that
 * has all of the flags in want. For writing a bank's metadata and a checkpoint's settings.
 */
typedef void (*melbo_opts_each_fn)(void *ctx, const struct melbo_opt *row, const void *base);
void melbo_opts_each(const struct melbo_opt_table *t, const void *base, unsigned want,
                     melbo_opts_each_fn fn, void *ctx);

/* Frees a LIST value (and zeroes it). */
void melbo_str_list_free(struct melbo_str_list *l);

#ifdef __cplusplus
}
#endif
#endif
