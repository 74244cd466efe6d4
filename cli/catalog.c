/*
 * cli/catalog.c - the lab catalog's subcommands of `melbo bank` (coord/catalog.h):
 *   label ID:K [LABEL] [--note TEXT] [--clear]   set, change, clear or (no LABEL, --note or
 *                                                --clear) read the label of vector K
 *   search TEXT [--limit N]                      FTS5 over labels, notes, prompts, completions
 *   near ID:K [--top N] [--model M]              the nearest vectors of the lab by cosine
 * A table for people, --json for scripts; texts from other users go through melbo_cli_safe.
 * Each connects, sends one request, prints the reply and returns an exit code (cli/cli.h).
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"

static void print_json(cJSON *o) {
    char *s = cJSON_PrintUnformatted(o);
    printf("%s\n", s);
    free(s);
    cJSON_Delete(o);
}

/* "ID:K" into id (n bytes) and *k. Returns 0, or MELBO_CLI_USAGE with a message printed. */
static int parse_ref(const char *cmd, const char *s, char *id, size_t n, int *k) {
    const char *colon = strrchr(s, ':');
    char *end;
    errno = 0;
    long v = colon ? strtol(colon + 1, &end, 10) : -1;
    if (colon == NULL || colon == s || (size_t)(colon - s) >= n || colon[1] < '0' ||
        colon[1] > '9' || *end || errno || v > 1000000000L) {
        fprintf(stderr,
                "melbo bank %s: '%s' is not ID:K (a bank id, a colon and a vector "
                "number, e.g. 3f2a9c0d1e4b5a67:9)\n",
                cmd, melbo_cli_safe(s, 0));
        return MELBO_CLI_USAGE;
    }
    memcpy(id, s, (size_t)(colon - s));
    id[colon - s] = '\0';
    *k = (int)v;
    return 0;
}

/* A positive count for --top / --limit into *v. Returns 0 or MELBO_CLI_USAGE. */
static int parse_count(const char *cmd, const char *flag, const char *s, uint32_t *v) {
    char *end;
    errno = 0;
    unsigned long long n = strtoull(s, &end, 10);
    if (*s < '0' || *s > '9' || *end || errno || n == 0 || n > UINT32_MAX) {
        fprintf(stderr, "melbo bank %s: %s '%s' is not a number of rows (1 or more)\n", cmd, flag,
                melbo_cli_safe(s, 0));
        return MELBO_CLI_USAGE;
    }
    *v = (uint32_t)n;
    return 0;
}

static void fmt_time(double t, char *buf, size_t n) {
    time_t s = (time_t)t;
    struct tm tm;
    localtime_r(&s, &tm);
    strftime(buf, n, "%Y-%m-%d %H:%M:%S", &tm);
}

/* The first line of s, at most 100 bytes, in buf (n bytes). */
static const char *first_line(const char *s, char *buf, size_t n) {
    size_t i = 0;
    s = s ? s : "";
    while (s[i] && s[i] != '\n' && i + 1 < n && i < 100)
        i++;
    memcpy(buf, s, i);
    buf[i] = '\0';
    return buf;
}

int melbo_cli_cmd_bank_label(struct melbo_cli *c, int argc, char **argv) {
    Melbo__LabelRequest q = MELBO__LABEL_REQUEST__INIT;
    char id[128];
    int st, have_ref = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--note") && i + 1 < argc) {
            q.note = argv[++i];
        } else if (!strcmp(argv[i], "--clear")) {
            q.has_clear = q.clear = 1;
        } else if (argv[i][0] == '-' && argv[i][1] == '-') {
            goto usage;
        } else if (!have_ref) {
            if ((st = parse_ref("label", argv[i], id, sizeof id, &q.vector)) != 0)
                return st;
            have_ref = 1;
        } else if (q.label == NULL) {
            q.label = argv[i];
        } else {
            goto usage;
        }
    }
    if (!have_ref)
        goto usage;
    q.bank_id = id;
    q.has_vector = 1;
    Melbo__Envelope env = MELBO__ENVELOPE__INIT, *rep = NULL;
    env.body_case = MELBO__ENVELOPE__BODY_LABEL;
    env.label = &q;
    if ((st = melbo_cli_request(c, &env, &rep, MELBO__ENVELOPE__BODY_LABELLED)) != 0)
        return st;
    const Melbo__LabelReply *r = rep->labelled;
    if (c->json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "bank", r->bank_id ? r->bank_id : "");
        cJSON_AddNumberToObject(o, "vector", r->vector);
        if (r->label)
            cJSON_AddStringToObject(o, "label", r->label);
        if (r->note)
            cJSON_AddStringToObject(o, "note", r->note);
        if (r->user)
            cJSON_AddStringToObject(o, "user", r->user);
        if (r->has_time)
            cJSON_AddNumberToObject(o, "time", r->time);
        print_json(o);
    } else if (r->label == NULL && r->note == NULL) {
        printf("%s:%d  (no label)\n", melbo_cli_safe(r->bank_id, 0), r->vector);
    } else {
        char t[32];
        fmt_time(r->time, t, sizeof t);
        printf("%s:%d  %s\n", melbo_cli_safe(r->bank_id, 0), r->vector,
               melbo_cli_safe(r->label ? r->label : "(no label)", 0));
        if (r->note)
            printf("note: %s\n", melbo_cli_safe(r->note, 1));
        printf("by %s, %s\n", melbo_cli_safe(r->user, 0), t);
    }
    melbo__envelope__free_unpacked(rep, NULL);
    return 0;
usage:
    fprintf(stderr, "usage: melbo bank label ID:K [LABEL] [--note TEXT] [--clear] [--json]\n");
    return MELBO_CLI_USAGE;
}

int melbo_cli_cmd_bank_search(struct melbo_cli *c, int argc, char **argv) {
    Melbo__SearchRequest q = MELBO__SEARCH_REQUEST__INIT;
    char text[8192] = "";
    size_t used = 0;
    int st, words = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--limit") && i + 1 < argc) {
            if ((st = parse_count("search", "--limit", argv[++i], &q.limit)) != 0)
                return st;
            q.has_limit = 1;
        } else if (argv[i][0] == '-' && argv[i][1] == '-') {
            goto usage;
        } else { /* several words are one text, as if quoted together */
            int w = snprintf(text + used, sizeof text - used, "%s%s", words ? " " : "", argv[i]);
            if (w < 0 || (size_t)w >= sizeof text - used) {
                fprintf(stderr, "melbo bank search: the text is longer than %zu bytes\n",
                        sizeof text - 1);
                return MELBO_CLI_USAGE;
            }
            used += (size_t)w;
            words++;
        }
    }
    if (words == 0)
        goto usage;
    q.text = text;
    Melbo__Envelope env = MELBO__ENVELOPE__INIT, *rep = NULL;
    env.body_case = MELBO__ENVELOPE__BODY_SEARCH;
    env.search = &q;
    if ((st = melbo_cli_request(c, &env, &rep, MELBO__ENVELOPE__BODY_SEARCH_RESULTS)) != 0)
        return st;
    const Melbo__SearchReply *r = rep->search_results;
    if (c->json) {
        cJSON *a = cJSON_CreateArray();
        for (size_t i = 0; i < r->n_hits; i++) {
            const Melbo__SearchHit *h = r->hits[i];
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "bank", h->bank_id ? h->bank_id : "");
            if (h->vector >= 0)
                cJSON_AddNumberToObject(o, "vector", h->vector);
            else
                cJSON_AddNullToObject(o, "vector");
            cJSON_AddStringToObject(o, "field", h->field ? h->field : "");
            cJSON_AddStringToObject(o, "snippet", h->snippet ? h->snippet : "");
            cJSON_AddStringToObject(o, "model", h->model ? h->model : "");
            if (h->label)
                cJSON_AddStringToObject(o, "label", h->label);
            cJSON_AddItemToArray(a, o);
        }
        print_json(a);
    } else {
        printf("%-16s %-6s %-10s %-16s %s\n", "BANK", "VECTOR", "FIELD", "MODEL", "MATCH");
        for (size_t i = 0; i < r->n_hits; i++) {
            const Melbo__SearchHit *h = r->hits[i];
            char vec[16], line[128];
            const char *m = strrchr(h->model ? h->model : "", '/');
            if (h->vector >= 0)
                snprintf(vec, sizeof vec, "%d", h->vector);
            else
                snprintf(vec, sizeof vec, "-");
            printf("%-16s %-6s %-10s %-16.16s %s", melbo_cli_safe(h->bank_id, 0), vec,
                   melbo_cli_safe(h->field, 0), melbo_cli_safe(m && m[1] ? m + 1 : h->model, 0),
                   melbo_cli_safe(first_line(h->snippet, line, sizeof line), 0));
            if (h->label && strcmp(h->field ? h->field : "", "label") != 0)
                printf("  [%s]", melbo_cli_safe(h->label, 0));
            printf("\n");
        }
        if (r->n_hits == 0)
            fprintf(stderr, "melbo: no match\n");
    }
    melbo__envelope__free_unpacked(rep, NULL);
    return 0;
usage:
    fprintf(stderr, "usage: melbo bank search TEXT [--limit N] [--json]\n");
    return MELBO_CLI_USAGE;
}

int melbo_cli_cmd_bank_near(struct melbo_cli *c, int argc, char **argv) {
    Melbo__NearRequest q = MELBO__NEAR_REQUEST__INIT;
    char id[128];
    int st, have_ref = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--top") && i + 1 < argc) {
            if ((st = parse_count("near", "--top", argv[++i], &q.top)) != 0)
                return st;
            q.has_top = 1;
        } else if (!strcmp(argv[i], "--model") && i + 1 < argc) {
            q.model = argv[++i];
        } else if (!have_ref && argv[i][0] != '-') {
            if ((st = parse_ref("near", argv[i], id, sizeof id, &q.vector)) != 0)
                return st;
            have_ref = 1;
        } else {
            goto usage;
        }
    }
    if (!have_ref)
        goto usage;
    q.bank_id = id;
    q.has_vector = 1;
    Melbo__Envelope env = MELBO__ENVELOPE__INIT, *rep = NULL;
    env.body_case = MELBO__ENVELOPE__BODY_NEAR;
    env.near = &q;
    if ((st = melbo_cli_request(c, &env, &rep, MELBO__ENVELOPE__BODY_NEAR_RESULTS)) != 0)
        return st;
    const Melbo__NearReply *r = rep->near_results;
    if (c->json) {
        cJSON *a = cJSON_CreateArray();
        for (size_t i = 0; i < r->n_hits; i++) {
            const Melbo__NearHit *h = r->hits[i];
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "bank", h->bank_id ? h->bank_id : "");
            cJSON_AddNumberToObject(o, "vector", h->vector);
            cJSON_AddNumberToObject(o, "cosine", h->cosine);
            cJSON_AddNumberToObject(o, "job", (double)h->job_id);
            if (h->label)
                cJSON_AddStringToObject(o, "label", h->label);
            cJSON_AddStringToObject(o, "completion", h->completion ? h->completion : "");
            cJSON_AddItemToArray(a, o);
        }
        print_json(a);
    } else {
        printf("%-16s %-6s %-9s %-5s %-28s %s\n", "BANK", "VECTOR", "COSINE", "JOB", "LABEL",
               "COMPLETION (first line)");
        for (size_t i = 0; i < r->n_hits; i++) {
            const Melbo__NearHit *h = r->hits[i];
            char line[128];
            printf("%-16s %-6d %-9.6f %-5llu %-28.28s %s\n", melbo_cli_safe(h->bank_id, 0),
                   h->vector, h->cosine, (unsigned long long)h->job_id,
                   melbo_cli_safe(h->label ? h->label : "-", 0),
                   melbo_cli_safe(first_line(h->completion, line, sizeof line), 0));
        }
        if (r->n_hits == 0)
            fprintf(stderr, "melbo: no other vector of this model and source layer\n");
    }
    melbo__envelope__free_unpacked(rep, NULL);
    return 0;
usage:
    fprintf(stderr, "usage: melbo bank near ID:K [--top N] [--model M] [--json]\n");
    return MELBO_CLI_USAGE;
}
