/*
 * options/usage.c - the help page of a table (melbo_opts_usage, options/opt.h): headings, then
 * one line per option with its metavariable, its help and its default, wrapped at 100 columns.
 */
#include "options/opt_impl.h"

#include <string.h>

#include "options/prompts.h"

/* ---------------------------------------------------------------------------------------------
 * Help.
 */

/* Prints text from column col, wrapped at 100 columns with continuation lines at indent. */
static void print_wrapped(FILE *f, const char *text, int col, int indent) {
    const char *p = text;
    while (*p) {
        while (*p == ' ')
            p++;
        size_t w = strcspn(p, " ");
        if (col > indent && col + 1 + (int)w > 100) {
            fprintf(f, "\n%*s", indent, "");
            col = indent;
        } else if (col > indent) {
            fputc(' ', f);
            col++;
        }
        fprintf(f, "%.*s", (int)w, p);
        col += (int)w;
        p += w;
    }
    fputc('\n', f);
}

/* One option line: "  --name META" padded to column 27, then help. */
static void usage_line(FILE *f, const char *lhs, const char *help) {
    int col = fprintf(f, "  %s", lhs);
    if (col >= 27) {
        fputc('\n', f);
        col = 0;
    }
    fprintf(f, "%*s", 27 - col, "");
    print_wrapped(f, help, 27, 27);
}

static void usage_row(FILE *f, const struct melbo_opt *row) {
    char lhs[160], help[512], defv[96];
    if (row->kind == MELBO_OPT_PROMPTS) {
        for (size_t k = 0; k < melbo_prompt_opt_count; k++) {
            const struct melbo_prompt_opt_name *p = &melbo_prompt_opt_names[k];
            if (p->metavar == NULL) /* internal spelling, not for people */
                continue;
            snprintf(lhs, sizeof lhs, "--%s %s", p->name, p->metavar);
            usage_line(f, lhs, p->help);
        }
        return;
    }
    char choices[160] = ""; /* "a|b|c" without the aliases */
    for (const char *c = row->check.choices; c && *c;) {
        size_t w = strcspn(c, ",|"), l = strlen(choices);
        snprintf(choices + l, sizeof choices - l, "%s%.*s", l ? "|" : "", (int)w, c);
        c += w;
        c += strcspn(c, "|");
        c += *c == '|';
    }
    const char *meta = row->metavar ? row->metavar : choices[0] ? choices : NULL;
    if (row->kind == MELBO_OPT_FLAG)
        snprintf(lhs, sizeof lhs, "--[no-]%s", row->name);
    else
        snprintf(lhs, sizeof lhs, "--%s %s", row->name, meta ? meta : "X");
    defv[0] = '\0';
    if (row->kind == MELBO_OPT_FLAG)
        snprintf(defv, sizeof defv, " (default %s)",
                 row->def && !strcmp(row->def, "1") ? "on" : "off");
    else if (melbo__opt_is_later(row->def))
        snprintf(defv, sizeof defv, " (default %.*s)", (int)strlen(row->def) - 2, row->def + 1);
    else if (row->def && row->def[0])
        snprintf(defv, sizeof defv, " (default %s)", row->def);
    snprintf(help, sizeof help, "%s%s", row->help ? row->help : "", defv);
    usage_line(f, lhs, help);
}

static void usage_table(FILE *f, const struct melbo_opt_table *t, unsigned hide) {
    for (size_t i = 0; i < t->n; i++) {
        const struct melbo_opt *row = &t->rows[i];
        if (row->kind == MELBO_OPT_HEADING)
            fprintf(f, "%s\n", row->help);
        else if (row->kind == MELBO_OPT_TABLE)
            usage_table(f, row->sub, hide);
        else if (!(row->flags & (hide | MELBO_OPT_HIDDEN)))
            usage_row(f, row);
    }
}

void melbo_opts_usage(FILE *f, const struct melbo_opt_table *t, unsigned hide) {
    usage_table(f, t, hide);
}
