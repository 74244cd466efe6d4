/*
 * cli/export.c - `melbo bank export ID (--vector EXPR | --adapter K) --format F -o OUT` and
 * `melbo bank report ID -o FILE.html` (cli/cli.h): the coordinator runs `melbo-rank bank
 * export|report` on its stored bank and sends back what melbo-rank wrote, as ExportChunk
 * messages: one file, or a directory of files (peft), each in chunks with its size and sha256.
 *
 * Writing is atomic as melbo-rank's own: every file goes to a temporary name first and is
 * renamed only once every file arrived whole and matched its checksum:
 *   a file                     OUT.partPID, renamed to OUT;
 *   a directory, OUT new       OUT.partPID/NAME..., the directory renamed to OUT;
 *   a directory, OUT existing  OUT/NAME.partPID, each renamed to OUT/NAME.
 * The names of a directory's files come from the coordinator and are checked (no '/', not "."
 * or "..", in strictly increasing order), so nothing is written outside OUT.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/sha256.h"

/* How long the first chunk may take: the coordinator may queue the export and melbo-rank runs
 * under the coordinator's own time limit (serve --export-timeout, 300 s by default). */
#define EXPORT_WAIT_MS   (3600 * 1000)
#define EXPORT_FILES_MAX 64
#define CHUNK_WAIT_MS    30000

/* One file being received. */
struct rx_file {
    char name[256];   // "" for a single-file output
    char tmp[4400];   // where it is written
    char final[4400]; // where it goes
    uint64_t size;
    char sha256[65];
};

/* The output being received. */
struct rx {
    const char *out;
    int directory;     // from the first chunk
    int into_existing; // a directory output into an OUT directory that exists
    char tmpdir[4200]; // OUT.partPID when the directory is new, else ""
    uint32_t n_expected;
    uint64_t total;
    struct rx_file files[EXPORT_FILES_MAX];
    int n;        // files started
    FILE *f;      // the file being written (files[n - 1])
    uint64_t got; // bytes of it so far
    struct melbo_sha256 sha;
};

/* The usage of `bank export` or `bank report` to f (stdout for --help). Returns
 * MELBO_CLI_USAGE. */
static int usage(FILE *f, int report) {
    if (report)
        fprintf(f, "usage: melbo bank report ID -o FILE.html [--json]\n"
                   "  the bank's self-contained HTML report, written by melbo-rank on the "
                   "coordinator\n");
    else
        fprintf(f,
                "usage: melbo bank export ID (--vector EXPR | --adapter K) --format F -o OUT "
                "[--json]\n"
                "  formats (melbo-rank's): gguf-control-vector (llama.cpp, from a vector bank),\n"
                "  peft (a directory, from an adapter bank), gguf-lora (from an adapter bank)\n");
    return MELBO_CLI_USAGE;
}

/* 1 if name may be a file inside OUT: 1..255 bytes, no '/', not "." or "..". */
static int name_ok(const char *name) {
    size_t n = strlen(name);
    return n > 0 && n < 256 && strchr(name, '/') == NULL && strcmp(name, ".") && strcmp(name, "..");
}

/* Removes every temporary written so far (after a failure). */
static void rx_abort(struct rx *r) {
    if (r->f) {
        fclose(r->f);
        r->f = NULL;
    }
    for (int i = 0; i < r->n; i++)
        remove(r->files[i].tmp);
    if (r->tmpdir[0])
        rmdir(r->tmpdir);
}

/* The first chunk: the output's shape, and where its temporaries go. Returns 0 or an exit code
 * (message printed). */
static int rx_begin(struct rx *r, const Melbo__ExportChunk *xc) {
    struct stat st;
    r->directory = xc->directory;
    r->n_expected = xc->files;
    r->total = xc->total_size;
    if (r->n_expected == 0 || r->n_expected > EXPORT_FILES_MAX ||
        (!r->directory && r->n_expected != 1)) {
        fprintf(stderr, "melbo: the coordinator announced %u files\n", r->n_expected);
        return MELBO_CLI_UNREACHABLE;
    }
    if (!r->directory)
        return 0;
    if (stat(r->out, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) {
            fprintf(stderr, "melbo: %s exists and is not a directory (this format writes one)\n",
                    r->out);
            return MELBO_CLI_REFUSED;
        }
        r->into_existing = 1;
        return 0;
    }
    snprintf(r->tmpdir, sizeof r->tmpdir, "%s.part%d", r->out, (int)getpid());
    if (mkdir(r->tmpdir, 0777) != 0) {
        fprintf(stderr, "melbo: cannot create %s: %s\n", r->tmpdir, strerror(errno));
        r->tmpdir[0] = '\0';
        return MELBO_CLI_REFUSED;
    }
    return 0;
}

/* A chunk that starts a file: checks its name and opens its temporary. Returns 0 or an exit
 * code (message printed). */
static int rx_open(struct rx *r, const Melbo__ExportChunk *xc) {
    const char *name = xc->name ? xc->name : "";
    if (r->n == (int)r->n_expected || (r->directory && !name_ok(name)) ||
        (!r->directory && name[0]) || (r->n > 0 && strcmp(r->files[r->n - 1].name, name) >= 0)) {
        fprintf(stderr, "melbo: the coordinator sent an unexpected file '%.80s'\n", name);
        return MELBO_CLI_UNREACHABLE;
    }
    struct rx_file *f = &r->files[r->n++];
    memset(f, 0, sizeof *f);
    snprintf(f->name, sizeof f->name, "%s", name);
    f->size = xc->file_size;
    if (!r->directory) {
        snprintf(f->final, sizeof f->final, "%s", r->out);
        snprintf(f->tmp, sizeof f->tmp, "%s.part%d", r->out, (int)getpid());
    } else if (r->into_existing) {
        snprintf(f->final, sizeof f->final, "%s/%s", r->out, name);
        snprintf(f->tmp, sizeof f->tmp, "%s/%s.part%d", r->out, name, (int)getpid());
    } else {
        snprintf(f->final, sizeof f->final, "%s/%s", r->out, name);
        snprintf(f->tmp, sizeof f->tmp, "%s/%s", r->tmpdir, name);
    }
    if ((r->f = fopen(f->tmp, "wb")) == NULL) {
        fprintf(stderr, "melbo: cannot write %s: %s\n", f->tmp, strerror(errno));
        r->n--; // nothing to remove
        return MELBO_CLI_REFUSED;
    }
    r->got = 0;
    melbo_sha256_init(&r->sha);
    return 0;
}

/* One chunk. Returns 0 (1 in *done after the last one) or an exit code (message printed). */
static int rx_chunk(struct rx *r, const Melbo__ExportChunk *xc, int *done) {
    int st;
    if (r->f == NULL && (st = rx_open(r, xc)) != 0)
        return st;
    struct rx_file *f = &r->files[r->n - 1];
    if (strcmp(xc->name ? xc->name : "", f->name) || xc->offset != r->got ||
        xc->data.len > f->size - r->got) {
        fprintf(stderr, "melbo: transfer broken at byte %llu of %s\n", (unsigned long long)r->got,
                f->name[0] ? f->name : r->out);
        return MELBO_CLI_UNREACHABLE;
    }
    if (xc->data.len && fwrite(xc->data.data, 1, xc->data.len, r->f) != xc->data.len) {
        fprintf(stderr, "melbo: cannot write %s: %s\n", f->tmp, strerror(errno));
        return MELBO_CLI_REFUSED;
    }
    melbo_sha256_update(&r->sha, xc->data.data, xc->data.len);
    r->got += xc->data.len;
    if (!xc->file_last) {
        if (xc->last)
            goto broken;
        return 0;
    }
    uint8_t d[32];
    melbo_sha256_final(&r->sha, d);
    melbo_sha256_hex(d, f->sha256);
    if (r->got != f->size || xc->sha256 == NULL || strcmp(f->sha256, xc->sha256)) {
        fprintf(stderr, "melbo: %s: checksum mismatch\n", f->name[0] ? f->name : r->out);
        return MELBO_CLI_UNREACHABLE;
    }
    int ok = fflush(r->f) == 0 && fsync(fileno(r->f)) == 0;
    ok = fclose(r->f) == 0 && ok;
    r->f = NULL;
    if (!ok) {
        fprintf(stderr, "melbo: cannot write %s: %s\n", f->tmp, strerror(errno));
        return MELBO_CLI_REFUSED;
    }
    if (xc->last != (r->n == (int)r->n_expected))
        goto broken;
    *done = xc->last;
    return 0;
broken:
    fprintf(stderr, "melbo: the coordinator ended the transfer early\n");
    return MELBO_CLI_UNREACHABLE;
}

/* Every file arrived: the temporaries take their names. Returns 0 or MELBO_CLI_REFUSED. */
static int rx_commit(struct rx *r) {
    if (r->directory && !r->into_existing) {
        if (rename(r->tmpdir, r->out) != 0) {
            fprintf(stderr, "melbo: cannot write %s: %s\n", r->out, strerror(errno));
            return MELBO_CLI_REFUSED;
        }
        r->tmpdir[0] = '\0';
        return 0;
    }
    for (int i = 0; i < r->n; i++)
        if (rename(r->files[i].tmp, r->files[i].final) != 0) {
            fprintf(stderr, "melbo: cannot write %s: %s\n", r->files[i].final, strerror(errno));
            for (int k = i; k < r->n; k++)
                remove(r->files[k].tmp);
            return MELBO_CLI_REFUSED;
        }
    return 0;
}

/* What was written: a line on stderr, or with --json an object on stdout. */
static void rx_print(const struct melbo_cli *c, const struct rx *r, const char *bank) {
    if (c->json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "bank", bank);
        cJSON_AddStringToObject(o, "out", r->out);
        cJSON_AddBoolToObject(o, "directory", r->directory);
        cJSON_AddNumberToObject(o, "bytes", (double)r->total);
        cJSON *a = cJSON_AddArrayToObject(o, "files");
        for (int i = 0; i < r->n; i++) {
            cJSON *f = cJSON_CreateObject();
            cJSON_AddStringToObject(f, "path", r->files[i].final);
            cJSON_AddNumberToObject(f, "size", (double)r->files[i].size);
            cJSON_AddStringToObject(f, "sha256", r->files[i].sha256);
            cJSON_AddItemToArray(a, f);
        }
        char *s = cJSON_PrintUnformatted(o);
        printf("%s\n", s);
        free(s);
        cJSON_Delete(o);
        return;
    }
    if (!r->directory) {
        fprintf(stderr, "melbo: %llu bytes written to %s\n", (unsigned long long)r->total, r->out);
        return;
    }
    fprintf(stderr, "melbo: %llu bytes written to %s/ (", (unsigned long long)r->total, r->out);
    for (int i = 0; i < r->n; i++)
        fprintf(stderr, "%s%s", i ? ", " : "", r->files[i].name);
    fprintf(stderr, ")\n");
}

/*
 * Receives the export into r->out from its first reply rep (unpacked, freed here) to its last
 * chunk, every reply of request req, and commits it. Returns 0, or an exit code after printing
 * why (nothing at r->out changed then, no temporary left).
 */
static int rx_run(struct melbo_cli *c, struct rx *r, Melbo__Envelope *rep, uint64_t req) {
    int st = 0, done = 0, first = 1;
    for (;;) {
        if (rep->body_case == MELBO__ENVELOPE__BODY_ERROR) {
            st = melbo_cli_error(rep->error);
            break;
        }
        if (rep->body_case != MELBO__ENVELOPE__BODY_EXPORT_CHUNK || rep->id != req) {
            fprintf(stderr, "melbo: unexpected reply\n");
            st = MELBO_CLI_UNREACHABLE;
            break;
        }
        if (first && (st = rx_begin(r, rep->export_chunk)) != 0)
            break;
        first = 0;
        if ((st = rx_chunk(r, rep->export_chunk, &done)) != 0 || done)
            break;
        melbo__envelope__free_unpacked(rep, NULL);
        rep = NULL;
        struct melbo_err err = {0};
        if (melbo_conn_recv(&c->conn, CHUNK_WAIT_MS, &rep, &err) != 0) {
            fprintf(stderr, "melbo: %s\n", err.msg);
            st = MELBO_CLI_UNREACHABLE;
            break;
        }
    }
    if (rep)
        melbo__envelope__free_unpacked(rep, NULL);
    if (st == 0)
        st = rx_commit(r);
    if (st != 0)
        rx_abort(r);
    return st;
}

/* The value of option argv[*i] ("--name VALUE" or "--name=VALUE"; -o VALUE) when argv[*i] is
 * that option, else NULL; *i then points at the value. *missing is set when it has none. */
static const char *opt_value(int argc, char **argv, int *i, const char *name, const char *alias,
                             int *missing) {
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (!strncmp(a, name, n) && a[n] == '=')
        return a + n + 1;
    if (strcmp(a, name) && (alias == NULL || strcmp(a, alias)))
        return NULL;
    if (*i + 1 >= argc) {
        *missing = 1;
        return NULL;
    }
    return argv[++*i];
}

int melbo_cli_cmd_bank_export(struct melbo_cli *c, int argc, char **argv) {
    int report = !strcmp(argv[0], "report"), missing = 0, st;
    const char *id = NULL, *out = NULL, *format = NULL, *vector = NULL, *adapter = NULL, *v;
    for (int i = 1; i < argc; i++) {
        if ((v = opt_value(argc, argv, &i, "--out", "-o", &missing)) != NULL)
            out = v;
        else if (!report && (v = opt_value(argc, argv, &i, "--format", NULL, &missing)) != NULL)
            format = v;
        else if (!report && (v = opt_value(argc, argv, &i, "--vector", NULL, &missing)) != NULL)
            vector = v;
        else if (!report && (v = opt_value(argc, argv, &i, "--adapter", NULL, &missing)) != NULL)
            adapter = v;
        else if (!missing && (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))) {
            usage(stdout, report);
            return MELBO_CLI_OK;
        } else if (!missing && id == NULL && argv[i][0] != '-')
            id = argv[i];
        else {
            if (missing)
                fprintf(stderr, "melbo: %s needs a value\n", argv[i]);
            else
                fprintf(stderr, "melbo: unexpected argument '%s'\n", argv[i]);
            return usage(stderr, report);
        }
    }
    const char *cmd = report ? "bank report" : "bank export";
    if (id == NULL || out == NULL || out[0] == '\0' || (!report && format == NULL)) {
        fprintf(stderr, "melbo: %s: %s\n", cmd,
                id == NULL                      ? "which bank? (its id, from melbo bank ls)"
                : out == NULL || out[0] == '\0' ? "missing -o OUT (where to write)"
                                                : "missing --format F");
        return usage(stderr, report);
    }
    if (!report && (vector == NULL) == (adapter == NULL)) {
        fprintf(stderr,
                "melbo: bank export: give --vector EXPR (a vector bank) or --adapter K (an "
                "adapter bank)%s\n",
                vector ? ", not both" : "");
        return usage(stderr, report);
    }
    Melbo__ExportRequest x = MELBO__EXPORT_REQUEST__INIT;
    Melbo__ReportRequest rq = MELBO__REPORT_REQUEST__INIT;
    Melbo__Envelope env = MELBO__ENVELOPE__INIT, *rep = NULL;
    if (report) {
        rq.bank_id = (char *)id;
        env.body_case = MELBO__ENVELOPE__BODY_BANK_REPORT;
        env.bank_report = &rq;
    } else {
        char *end;
        errno = 0;
        long k = adapter ? strtol(adapter, &end, 10) : 0;
        if (adapter && (*adapter == '\0' || *end || errno || k < 0 || k > 0x7fffffff)) {
            fprintf(stderr, "melbo: bank export: --adapter needs an index >= 0, not '%s'\n",
                    adapter);
            return MELBO_CLI_USAGE;
        }
        x.bank_id = (char *)id;
        x.format = (char *)format;
        x.vector = (char *)vector;
        x.has_adapter = adapter != NULL;
        x.adapter = (int32_t)k;
        env.body_case = MELBO__ENVELOPE__BODY_BANK_EXPORT;
        env.bank_export = &x;
    }
    if ((st = melbo_cli_connect(c)) != 0 ||
        (st = melbo_cli_call_wait(c, &env, &rep, EXPORT_WAIT_MS)) != 0)
        return st;
    struct rx *r = calloc(1, sizeof *r);
    if (r == NULL) {
        melbo__envelope__free_unpacked(rep, NULL);
        fprintf(stderr, "melbo: out of memory\n");
        return MELBO_CLI_REFUSED;
    }
    r->out = out;
    st = rx_run(c, r, rep, env.id);
    if (st == 0)
        rx_print(c, r, id);
    free(r);
    return st;
}
