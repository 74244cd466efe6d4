/*
 * cli/cmds.c - the short request/reply subcommands of `melbo`: ls, show, cancel, fetch and bank
 * (ls / show; export and report are cli/export.c's). Tables for people, --json for scripts.
 * Each connects, sends one request, prints the reply and returns an exit code (cli/cli.h); the
 * reply is freed before returning.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/sha256.h"

/* Seconds since the epoch as local "YYYY-MM-DD HH:MM:SS" in buf (n bytes). */
static void fmt_time(double t, char *buf, size_t n) {
    time_t s = (time_t)t;
    struct tm tm;
    localtime_r(&s, &tm);
    strftime(buf, n, "%Y-%m-%d %H:%M:%S", &tm);
}

/* The last path component of p (p itself when it ends in '/'); "" for NULL. Points into p. */
static const char *base(const char *p) {
    const char *s = strrchr(p ? p : "", '/');
    return s && s[1] ? s + 1 : p ? p : "";
}

/* 1 if the job trains adapters (--adapter-rank), 0 for steering vectors. */
static int job_is_adapter(const Melbo__JobSummary *j) {
    return j->has_adapter_rank && j->adapter_rank > 0;
}

/* 1 if the catalog entry b (NULL: none) is an adapter bank; absent kind: a vector bank. */
static int bank_is_adapter(const Melbo__BankInfo *b) {
    return b && b->kind && !strcmp(b->kind, "adapter");
}

/*
 * A job summary (borrowed) as a new JSON object the caller owns (--json of ls and show): "kind"
 * is "vector" or "adapter"; a vector job counts "vectors", an adapter job "adapters" and has its
 * "adapter_rank".
 */
static cJSON *job_json(const Melbo__JobSummary *j) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "job", (double)j->job_id);
    cJSON_AddStringToObject(o, "user", j->user ? j->user : "");
    cJSON_AddStringToObject(o, "state", melbo_job_state_name(j->state));
    cJSON_AddStringToObject(o, "model", j->model ? j->model : "");
    cJSON_AddStringToObject(o, "kind", j->command && *j->command ? j->command
                                       : job_is_adapter(j)                      ? "adapter"
                                                                                : "vector");
    cJSON_AddNumberToObject(o, "created", j->created);
    if (j->has_finished)
        cJSON_AddNumberToObject(o, "finished", j->finished);
    if (j->error && *j->error)
        cJSON_AddStringToObject(o, "error", j->error);
    if (j->bank_id && *j->bank_id)
        cJSON_AddStringToObject(o, "bank", j->bank_id);
    cJSON_AddNumberToObject(o, "events", (double)j->last_event);
    if (job_is_adapter(j)) {
        cJSON_AddNumberToObject(o, "adapters", j->vectors);
        cJSON_AddNumberToObject(o, "adapter_rank", j->adapter_rank);
    } else {
        cJSON_AddNumberToObject(o, "vectors", j->vectors);
    }
    cJSON_AddNumberToObject(o, "steps", j->steps);
    if (j->name && *j->name)
        cJSON_AddStringToObject(o, "name", j->name);
    return o;
}

/* Prints o as one line on stdout and frees it. */
static void print_json(cJSON *o) {
    char *s = cJSON_PrintUnformatted(o);
    printf("%s\n", s);
    free(s);
    cJSON_Delete(o);
}

int melbo_cli_cmd_ls(struct melbo_cli *c, int argc, char **argv) {
    Melbo__ListJobsRequest q = MELBO__LIST_JOBS_REQUEST__INIT;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--limit") && i + 1 < argc) {
            char *end;
            const char *v = argv[++i];
            errno = 0;
            unsigned long long n = strtoull(v, &end, 10);
            if (*v < '0' || *v > '9' || *end || errno || n == 0 || n > UINT32_MAX) {
                fprintf(stderr, "melbo ls: --limit '%s' is not a number of rows (1 or more; the "
                                "coordinator's limits.max_list caps it)\n", v);
                return MELBO_CLI_USAGE;
            }
            q.has_limit = 1;
            q.limit = (uint32_t)n;
        } else if (!strcmp(argv[i], "--user") && i + 1 < argc) {
            q.user = argv[++i];
        } else {
            fprintf(stderr, "usage: melbo ls [--limit N] [--user NAME] [--json]\n");
            return MELBO_CLI_USAGE;
        }
    }
    Melbo__Envelope env = MELBO__ENVELOPE__INIT, *rep = NULL;
    env.body_case = MELBO__ENVELOPE__BODY_LIST_JOBS;
    env.list_jobs = &q;
    int st = melbo_cli_request(c, &env, &rep, MELBO__ENVELOPE__BODY_JOBS);
    if (st)
        return st;
    if (c->json) {
        cJSON *a = cJSON_CreateArray();
        for (size_t i = 0; i < rep->jobs->n_jobs; i++)
            cJSON_AddItemToArray(a, job_json(rep->jobs->jobs[i]));
        print_json(a);
    } else {
        printf("%-6s %-10s %-12s %-8s %-19s %-24s %s\n", "JOB", "USER", "STATE", "KIND", "CREATED",
               "MODEL", "BANK / ERROR");
        for (size_t i = 0; i < rep->jobs->n_jobs; i++) {
            const Melbo__JobSummary *j = rep->jobs->jobs[i];
            char t[32];
            fmt_time(j->created, t, sizeof t);
            printf("%-6llu %-10s %-12s %-8s %-19s %-24.24s %.60s\n", (unsigned long long)j->job_id,
                   melbo_cli_safe(j->user, 0), melbo_job_state_name(j->state),
                   j->command && *j->command ? melbo_cli_safe(j->command, 0)
                   : job_is_adapter(j)       ? "adapter"
                                             : "vector",
                   t,
                   melbo_cli_safe(base(j->model), 0),
                   melbo_cli_safe(j->bank_id && *j->bank_id ? j->bank_id
                                  : j->error                ? j->error
                                                            : "",
                                  0));
        }
    }
    melbo__envelope__free_unpacked(rep, NULL);
    return 0;
}

/* A sweep's points (options/sweep.h) as a JSON array (new, the caller's). */
static cJSON *sweep_json(const Melbo__ShowJobReply *r) {
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < r->n_sweep; i++) {
        const Melbo__SweepPoint *p = r->sweep[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "point", p->point);
        cJSON_AddStringToObject(o, "label", p->label ? p->label : "");
        cJSON_AddStringToObject(o, "bank", p->bank_id ? p->bank_id : "");
        if (p->has_radius)
            cJSON_AddNumberToObject(o, "radius", p->radius);
        if (p->has_median_z)
            cJSON_AddNumberToObject(o, "median_z", p->median_z);
        if (p->has_degenerate)
            cJSON_AddNumberToObject(o, "degenerate", p->degenerate);
        if (p->has_clusters)
            cJSON_AddNumberToObject(o, "clusters", p->clusters);
        cJSON_AddItemToArray(a, o);
    }
    return a;
}

/* A sweep's table: one line per point with its bank and triage summary, so that the R that
 * gives diverse but fluent completions can be read off (high median z, few degenerate). */
static void print_sweep(const Melbo__ShowJobReply *r) {
    printf("sweep: %zu points\n  %-32s %-16s %8s %9s %10s %8s\n", r->n_sweep, "POINT", "BANK", "R",
           "MEDIAN Z", "DEGENERATE", "CLUSTERS");
    for (size_t i = 0; i < r->n_sweep; i++) {
        const Melbo__SweepPoint *p = r->sweep[i];
        printf("  %-32.32s %-16.16s %8.3g %9.3g %9.0f%% %8d\n", melbo_cli_safe(p->label, 0),
               melbo_cli_safe(p->bank_id, 0), p->radius, p->median_z, 100 * p->degenerate,
               p->clusters);
    }
}

/* `melbo show` of a gen job (coord/genjob.h): its completions so far, in order. */
static void show_gen(const struct melbo_cli *c, const Melbo__ShowJobReply *r) {
    const Melbo__JobSummary *j = r->job;
    if (c->json) {
        cJSON *o = job_json(j);
        cJSON *a = cJSON_AddArrayToObject(o, "completions");
        for (size_t i = 0; i < r->n_completions; i++) {
            const Melbo__Completion *k = r->completions[i];
            cJSON *v = cJSON_CreateObject();
            cJSON_AddNumberToObject(v, "sequence", k->sequence);
            cJSON_AddStringToObject(v, "label", k->label ? k->label : "");
            cJSON_AddStringToObject(v, "text", k->text ? k->text : "");
            cJSON_AddItemToArray(a, v);
        }
        print_json(o);
        return;
    }
    printf("job %llu  %s  gen  %s  user %s\n", (unsigned long long)j->job_id,
           melbo_job_state_name(j->state), melbo_cli_safe(j->model, 0), melbo_cli_safe(j->user, 0));
    if (j->error && *j->error)
        printf("error: %s\n", melbo_cli_safe(j->error, 0));
    for (size_t i = 0; i < r->n_completions; i++)
        printf("=== %s ===\n%s\n\n", melbo_cli_safe(r->completions[i]->label, 0),
               melbo_cli_safe(r->completions[i]->text, 1));
}

int melbo_cli_cmd_show(struct melbo_cli *c, int argc, char **argv) {
    uint64_t id;
    if (argc != 2) {
        fprintf(stderr, "usage: melbo show JOB [--json]\n");
        return MELBO_CLI_USAGE;
    }
    int st = melbo_cli_job_id(argv[1], &id);
    if (st)
        return st;
    Melbo__ShowJobRequest q = MELBO__SHOW_JOB_REQUEST__INIT;
    q.has_job_id = 1;
    q.job_id = id;
    Melbo__Envelope env = MELBO__ENVELOPE__INIT, *rep = NULL;
    env.body_case = MELBO__ENVELOPE__BODY_SHOW_JOB;
    env.show_job = &q;
    if ((st = melbo_cli_request(c, &env, &rep, MELBO__ENVELOPE__BODY_JOB)) != 0)
        return st;
    const Melbo__ShowJobReply *r = rep->job;
    const Melbo__JobSummary *j = r->job;
    if (j->command && !strcmp(j->command, "gen")) { /* a gen job: its completions */
        show_gen(c, r);
        melbo__envelope__free_unpacked(rep, NULL);
        return MELBO_CLI_OK;
    }
    /* an adapter bank lists adapters; a job still running is known by its summary */
    int adapter = r->bank ? bank_is_adapter(r->bank) : job_is_adapter(j) || r->n_adapters > 0;
    const char *what = adapter ? "adapter" : "vector";
    size_t n_rows = adapter ? r->n_adapters : r->n_vectors;
    Melbo__VectorRow **rows = adapter ? r->adapters : r->vectors;
    if (c->json) {
        cJSON *o = job_json(j);
        if (adapter && r->bank) {
            cJSON_AddNumberToObject(o, "adapter_alpha", r->bank->adapter_alpha);
            cJSON_AddStringToObject(o, "adapter_module",
                                    r->bank->adapter_module ? r->bank->adapter_module : "");
        }
        /* the rows replace the count job_json put under the same key */
        cJSON_DeleteItemFromObjectCaseSensitive(o, adapter ? "adapters" : "vectors");
        if (r->n_sweep > 0)
            cJSON_AddItemToObject(o, "sweep", sweep_json(r));
        cJSON *a = cJSON_AddArrayToObject(o, adapter ? "adapters" : "vectors");
        for (size_t i = 0; i < n_rows; i++) {
            cJSON *v = cJSON_CreateObject();
            cJSON_AddNumberToObject(v, what, rows[i]->index);
            cJSON_AddNumberToObject(v, "objective", rows[i]->objective);
            cJSON_AddStringToObject(v, "completion",
                                    rows[i]->completion ? rows[i]->completion : "");
            cJSON_AddItemToArray(a, v);
        }
        print_json(o);
    } else {
        printf("job %llu  %s  %s  user %s\n", (unsigned long long)j->job_id,
               melbo_job_state_name(j->state), melbo_cli_safe(j->model, 0),
               melbo_cli_safe(j->user, 0));
        if (adapter && bank_is_adapter(r->bank))
            printf("adapters: rank %d, alpha %g, on %s\n", r->bank->adapter_rank,
                   r->bank->adapter_alpha, melbo_cli_safe(r->bank->adapter_module, 0));
        else if (adapter)
            printf("adapters: rank %d\n", j->adapter_rank);
        if (j->error && *j->error)
            printf("error: %s\n", melbo_cli_safe(j->error, 0));
        if (j->bank_id && *j->bank_id)
            printf("bank: %s\n", melbo_cli_safe(j->bank_id, 0));
        if (r->n_sweep > 0)
            print_sweep(r);
        if (n_rows) {
            printf("%-7s %-12s %s\n", adapter ? "ADAPTER" : "VECTOR", "OBJECTIVE",
                   "COMPLETION (first line)");
            for (size_t i = 0; i < n_rows; i++)
                printf("%-7d %-12.6g %s\n", rows[i]->index, rows[i]->objective,
                       melbo_cli_safe(rows[i]->completion, 1));
        } else if (r->last_step) {
            const Melbo__StepInfo *s = r->last_step;
            printf("wave %d/%d, step %d/%d\n%-7s %s\n", s->wave + 1, s->n_waves, s->step, s->steps,
                   adapter ? "ADAPTER" : "VECTOR", "OBJECTIVE");
            for (size_t i = 0; i < s->n_objective; i++)
                printf("%-7d %.6g\n", s->first_vector + (int)i, s->objective[i]);
        }
    }
    melbo__envelope__free_unpacked(rep, NULL);
    return 0;
}

int melbo_cli_cmd_cancel(struct melbo_cli *c, int argc, char **argv) {
    uint64_t id;
    if (argc != 2) {
        fprintf(stderr, "usage: melbo cancel JOB\n");
        return MELBO_CLI_USAGE;
    }
    int st = melbo_cli_job_id(argv[1], &id);
    if (st)
        return st;
    Melbo__CancelRequest q = MELBO__CANCEL_REQUEST__INIT;
    q.has_job_id = 1;
    q.job_id = id;
    Melbo__Envelope env = MELBO__ENVELOPE__INIT, *rep = NULL;
    env.body_case = MELBO__ENVELOPE__BODY_CANCEL;
    env.cancel = &q;
    if ((st = melbo_cli_request(c, &env, &rep, MELBO__ENVELOPE__BODY_CANCELLED)) != 0)
        return st;
    fprintf(stderr, "melbo: job %llu: cancel sent (%s)\n", (unsigned long long)id,
            melbo_job_state_name(rep->cancelled->state));
    melbo__envelope__free_unpacked(rep, NULL);
    return 0;
}

int melbo_cli_cmd_fetch(struct melbo_cli *c, int argc, char **argv) {
    uint64_t id = 0;
    const char *out = NULL, *bank = NULL;
    int st;
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-o") || !strcmp(argv[i], "--out")) && i + 1 < argc)
            out = argv[++i];
        else if (!strcmp(argv[i], "--bank") && i + 1 < argc)
            bank = argv[++i];
        else if (id == 0 && argv[i][0] != '-') {
            if ((st = melbo_cli_job_id(argv[i], &id)) != 0)
                return st;
        } else {
            id = 0, out = NULL;
            break;
        }
    }
    if (out == NULL || (id == 0 && bank == NULL)) {
        fprintf(stderr, "usage: melbo fetch JOB -o FILE   (or melbo fetch --bank ID -o FILE)\n");
        return MELBO_CLI_USAGE;
    }
    Melbo__FetchRequest q = MELBO__FETCH_REQUEST__INIT;
    q.has_job_id = id != 0;
    q.job_id = id;
    q.bank_id = (char *)bank;
    Melbo__Envelope env = MELBO__ENVELOPE__INIT, *rep = NULL;
    env.body_case = MELBO__ENVELOPE__BODY_FETCH;
    env.fetch = &q;
    if ((st = melbo_cli_request(c, &env, &rep, MELBO__ENVELOPE__BODY_BANK_CHUNK)) != 0)
        return st;
    /* Written to a temporary file next to out and renamed when complete and verified. Chunks
     * arrive in order as replies to the one request; each is checked to continue the file. */
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.part%d", out, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (f == NULL) {
        fprintf(stderr, "melbo: cannot write %s: %s\n", tmp, strerror(errno));
        melbo__envelope__free_unpacked(rep, NULL);
        return MELBO_CLI_REFUSED;
    }
    struct melbo_sha256 h;
    melbo_sha256_init(&h);
    uint64_t got = 0;
    st = 0;
    for (;;) {
        const Melbo__BankChunk *bc = rep->bank_chunk;
        if (bc->offset != got || fwrite(bc->data.data, 1, bc->data.len, f) != bc->data.len) {
            fprintf(stderr, "melbo: bank transfer broken at byte %llu\n", (unsigned long long)got);
            st = MELBO_CLI_UNREACHABLE;
            break;
        }
        melbo_sha256_update(&h, bc->data.data, bc->data.len);
        got += bc->data.len;
        if (bc->last) {
            uint8_t d[32];
            char hex[65];
            melbo_sha256_final(&h, d);
            melbo_sha256_hex(d, hex);
            if (bc->sha256 == NULL || strcmp(hex, bc->sha256) != 0) {
                fprintf(stderr, "melbo: bank checksum mismatch\n");
                st = MELBO_CLI_UNREACHABLE;
            }
            break;
        }
        melbo__envelope__free_unpacked(rep, NULL);
        rep = NULL;
        struct melbo_err err = {0};
        if (melbo_conn_recv(&c->conn, 30000, &rep, &err) != 0 ||
            rep->body_case != MELBO__ENVELOPE__BODY_BANK_CHUNK) {
            if (rep && rep->body_case == MELBO__ENVELOPE__BODY_ERROR)
                melbo_cli_error(rep->error);
            else
                fprintf(stderr, "melbo: %s\n", err.msg[0] ? err.msg : "unexpected reply");
            st = MELBO_CLI_UNREACHABLE;
            break;
        }
    }
    if (rep)
        melbo__envelope__free_unpacked(rep, NULL);
    if (fflush(f) != 0 || fsync(fileno(f)) != 0)
        st = st ? st : MELBO_CLI_REFUSED;
    fclose(f);
    if (st == 0 && rename(tmp, out) != 0) {
        fprintf(stderr, "melbo: cannot write %s: %s\n", out, strerror(errno));
        st = MELBO_CLI_REFUSED;
    }
    if (st)
        remove(tmp);
    else
        fprintf(stderr, "melbo: %llu bytes written to %s\n", (unsigned long long)got, out);
    return st;
}

/*
 * A bank's catalog entry (borrowed) as a new JSON object the caller owns; its prompts (a JSON
 * text in the entry) are parsed into an array. "kind" is "vector" (with "radius" and a count of
 * "vectors") or "adapter" (a count of "adapters", "adapter_rank", "adapter_alpha",
 * "adapter_module", "d_mlp"); the rows of `bank show`, when the entry has them, are "rows".
 */
static cJSON *bank_json(const Melbo__BankInfo *b) {
    int adapter = bank_is_adapter(b);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "bank", b->bank_id);
    cJSON_AddNumberToObject(o, "job", (double)b->job_id);
    cJSON_AddStringToObject(o, "model", b->model);
    cJSON_AddStringToObject(o, "fingerprint", b->fingerprint);
    cJSON_AddNumberToObject(o, "source_layer", b->source_layer);
    cJSON_AddNumberToObject(o, "target_layer", b->target_layer);
    cJSON_AddStringToObject(o, "kind", adapter ? "adapter" : "vector");
    if (adapter) {
        cJSON_AddNumberToObject(o, "adapter_rank", b->adapter_rank);
        cJSON_AddNumberToObject(o, "adapter_alpha", b->adapter_alpha);
        cJSON_AddStringToObject(o, "adapter_module", b->adapter_module ? b->adapter_module : "");
        cJSON_AddNumberToObject(o, "d_mlp", b->d_mlp);
    } else {
        cJSON_AddNumberToObject(o, "radius", b->radius);
    }
    cJSON_AddNumberToObject(o, "p", b->p);
    cJSON_AddNumberToObject(o, "q", b->q);
    cJSON_AddNumberToObject(o, adapter ? "adapters" : "vectors", b->vectors);
    cJSON_AddNumberToObject(o, "d_model", b->d_model);
    cJSON_AddNumberToObject(o, "steps", b->steps);
    cJSON_AddStringToObject(o, "user", b->user);
    cJSON_AddNumberToObject(o, "created", b->created);
    cJSON *pr = cJSON_Parse(b->prompts ? b->prompts : "[]");
    cJSON_AddItemToObject(o, "prompts", pr ? pr : cJSON_CreateArray());
    cJSON_AddNumberToObject(o, "size", (double)b->size);
    cJSON_AddStringToObject(o, "sha256", b->sha256);
    if (b->provenance) { /* user, time, job, settings, sweep: the catalog's (coord/catalog.h) */
        cJSON *pv = cJSON_Parse(b->provenance);
        cJSON_AddItemToObject(o, "provenance", pv ? pv : cJSON_CreateString(b->provenance));
    }
    if (b->n_rows) {
        cJSON *a = cJSON_AddArrayToObject(o, "rows");
        for (size_t i = 0; i < b->n_rows; i++) {
            cJSON *v = cJSON_CreateObject();
            cJSON_AddNumberToObject(v, adapter ? "adapter" : "vector", b->rows[i]->index);
            cJSON_AddNumberToObject(v, "objective", b->rows[i]->objective);
            cJSON_AddStringToObject(v, "completion",
                                    b->rows[i]->completion ? b->rows[i]->completion : "");
            cJSON_AddItemToArray(a, v);
        }
    }
    return o;
}

int melbo_cli_cmd_bank(struct melbo_cli *c, int argc, char **argv) {
    Melbo__Envelope env = MELBO__ENVELOPE__INIT, *rep = NULL;
    int st;
    if (argc >= 2 && (!strcmp(argv[1], "export") || !strcmp(argv[1], "report")))
        return melbo_cli_cmd_bank_export(c, argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "label"))  /* the lab catalog: cli/catalog.c */
        return melbo_cli_cmd_bank_label(c, argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "search"))
        return melbo_cli_cmd_bank_search(c, argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "near"))
        return melbo_cli_cmd_bank_near(c, argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "ls")) {
        Melbo__ListBanksRequest q = MELBO__LIST_BANKS_REQUEST__INIT;
        for (int i = 2; i < argc; i++) {
            if (i + 1 >= argc)
                goto usage;
            if (!strcmp(argv[i], "--model"))
                q.model = argv[++i];
            else if (!strcmp(argv[i], "--prompt"))
                q.prompt = argv[++i];
            else if (!strcmp(argv[i], "--user"))
                q.user = argv[++i];
            else if (!strcmp(argv[i], "--fingerprint"))
                q.fingerprint = argv[++i];
            else
                goto usage;
        }
        env.body_case = MELBO__ENVELOPE__BODY_LIST_BANKS;
        env.list_banks = &q;
        if ((st = melbo_cli_request(c, &env, &rep, MELBO__ENVELOPE__BODY_BANKS)) != 0)
            return st;
        if (c->json) {
            cJSON *a = cJSON_CreateArray();
            for (size_t i = 0; i < rep->banks->n_banks; i++)
                cJSON_AddItemToArray(a, bank_json(rep->banks->banks[i]));
            print_json(a);
        } else {
            printf("%-16s %-5s %-24s %-7s %-10s %-4s %-8s %-10s %s\n", "BANK", "JOB", "MODEL",
                   "LAYERS", "KIND", "N", "USER", "CREATED", "PROMPTS");
            for (size_t i = 0; i < rep->banks->n_banks; i++) {
                const Melbo__BankInfo *b = rep->banks->banks[i];
                char t[32], layers[16], kind[32];
                fmt_time(b->created, t, sizeof t);
                snprintf(layers, sizeof layers, "%d-%d", b->source_layer, b->target_layer);
                if (bank_is_adapter(b))
                    snprintf(kind, sizeof kind, "lora r=%d", b->adapter_rank);
                else
                    snprintf(kind, sizeof kind, "vec R=%g", b->radius);
                printf("%-16s %-5llu %-24.24s %-7s %-10s %-4d %-8s %.10s %.50s\n",
                       melbo_cli_safe(b->bank_id, 0), (unsigned long long)b->job_id,
                       melbo_cli_safe(b->model, 0), layers, kind, b->vectors,
                       melbo_cli_safe(b->user, 0), t, melbo_cli_safe(b->prompts, 0));
            }
        }
        melbo__envelope__free_unpacked(rep, NULL);
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "show")) {
        Melbo__ShowBankRequest q = MELBO__SHOW_BANK_REQUEST__INIT;
        q.bank_id = argv[2];
        env.body_case = MELBO__ENVELOPE__BODY_SHOW_BANK;
        env.show_bank = &q;
        if ((st = melbo_cli_request(c, &env, &rep, MELBO__ENVELOPE__BODY_BANK)) != 0)
            return st;
        const Melbo__BankInfo *b = rep->bank;
        cJSON *o = bank_json(b);
        if (c->json) {
            print_json(o);
        } else { /* the entry as indented JSON, then its vectors or adapters as a table */
            cJSON_DeleteItemFromObjectCaseSensitive(o, "rows");
            char *s = cJSON_Print(o);
            printf("%s\n", melbo_cli_safe(s, 1)); /* cJSON escapes C0, not C1 or bad bytes */
            free(s);
            cJSON_Delete(o);
            if (b->n_rows)
                printf("%-7s %-12s %s\n", bank_is_adapter(b) ? "ADAPTER" : "VECTOR", "OBJECTIVE",
                       "COMPLETION (first line)");
            for (size_t i = 0; i < b->n_rows; i++)
                printf("%-7d %-12.6g %s\n", b->rows[i]->index, b->rows[i]->objective,
                       melbo_cli_safe(b->rows[i]->completion, 1));
        }
        melbo__envelope__free_unpacked(rep, NULL);
        return 0;
    }
usage:
    fprintf(stderr, "usage: melbo bank ls [--model M] [--prompt TEXT] [--user U] [--json]\n"
                    "       melbo bank show ID [--json]\n"
                    "       melbo bank export ID (--vector EXPR | --adapter K) --format F -o OUT\n"
                    "       melbo bank report ID -o FILE.html\n"
                    "       melbo bank label ID:K [LABEL] [--note TEXT] [--clear] [--json]\n"
                    "       melbo bank search TEXT [--limit N] [--json]\n"
                    "       melbo bank near ID:K [--top N] [--model M] [--json]\n"
                    "label: vector K's label and note in the lab catalog (none given: print them)\n"
                    "search: full-text search (SQLite FTS5: words, \"phrases\", OR, prefix*) over\n"
                    "        labels, notes, prompts and completions\n"
                    "near: the lab's vectors nearest to vector K by cosine, same model and source\n"
                    "      layer only (adapters: cosine of their weight changes B A)\n");
    return MELBO_CLI_USAGE;
}
