/*
 * cli/submit.c - `melbo submit`: a job's command line sent as a JobSpec of options by name.
 *
 * The flags are the rows of the job table (options/job.h: every option of `melbo-rank train`
 * but the ones the coordinator chooses, plus the job's own), parsed here with the same engine
 * as the ranks' so that a misspelt flag or a bad value is refused before anything is sent. What
 * needs the model (layers, the tensor-parallel layout) is the coordinator's check, and its
 * refusal is printed as it comes. On success the job id is the only thing printed on stdout.
 *
 * The coordinator opens no file the user names (issue 20), so the files are read here, with the
 * user's own rights: a --prompts file is sent as its text ({prompts-jsonl: TEXT}, at most
 * PROMPTS_CAP bytes, a regular file only: a FIFO or a device is refused without blocking), and
 * an --init / --calibration-init file is uploaded in chunks (InputUpload) before the submit,
 * which names it "upload:init". --model is a name the coordinator's admin registered, or a path
 * (made absolute) under one of its model roots.
 *
 * Exactly once (issue 22): the submit carries a request id (random, or --request-id RID) that
 * the coordinator keeps with the job. When the reply is lost (the connection drops, the
 * coordinator restarts), the CLI connects again and sends the same request (uploads included)
 * up to SUBMIT_TRIES times; the coordinator answers a request id it has seen with that job, so
 * there is one job whatever happened. Interrupted (Ctrl-C, SIGTERM) once it started talking to
 * the coordinator, it prints the request id and how to find the job: the same command with
 * --request-id RID prints it, never a second.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/mem.h"
#include "common/sha256.h"
#include "options/job.h"

/* The most a --prompts file may hold: what one request frame carries, less room for the rest. */
#define PROMPTS_CAP (15u * 1024u * 1024u)
#define UPLOAD_CHUNK (1u << 20)
#define SUBMIT_TRIES 4

/* What Ctrl-C prints once the request may have reached the coordinator (async-signal-safe:
 * composed before the handler is installed). */
static char interrupted_msg[320];
static volatile sig_atomic_t interrupted_len;

static void on_interrupt(int sig) {
    (void)sig;
    if (interrupted_len > 0 && write(STDERR_FILENO, interrupted_msg, (size_t)interrupted_len) < 0)
        _exit(130);
    _exit(130);
}

/* rid: 24 random hex digits (/dev/urandom), or "" when it cannot be read. */
static void new_request_id(char *rid, size_t n) {
    unsigned char r[12];
    FILE *f = fopen("/dev/urandom", "rb");
    size_t got = f ? fread(r, 1, sizeof r, f) : 0;
    if (f)
        fclose(f);
    rid[0] = '\0';
    for (size_t i = 0; got == sizeof r && i < sizeof r && 2 * i + 2 < n; i++)
        snprintf(rid + 2 * i, 3, "%02x", r[i]);
}

static void submit_usage(void) {
    printf("usage: melbo submit --model DIR --radius R [prompts] [options]\n"
           "       melbo submit --model DIR --adapter-rank R [prompts] [options]\n"
           "\n"
           "Submits a training job to the coordinator and prints its id. Every option of\n"
           "`melbo-rank train` except --out, --checkpoint, --resume, --stop-on-signal and\n"
           "--job-id, which the coordinator chooses. --model is a registered model's name or a\n"
           "path under one of the coordinator's model roots; --prompts and --init files are read\n"
           "here and sent with the job.\n\n");
    melbo_job_usage(stdout);
}

/* p made absolute against the working directory (a new string). */
static char *abs_path(const char *p) {
    char cwd[4096];
    if (p[0] == '/' || getcwd(cwd, sizeof cwd) == NULL)
        return melbo_xstrdup(p);
    size_t n = strlen(cwd) + strlen(p) + 2;
    char *s = melbo_xmalloc(n);
    snprintf(s, n, "%s/%s", cwd, p);
    return s;
}

/* The spec being built: its options and the strings they point to, freed together; the
 * files to upload (by option: init, calibration-init). */
struct spec_build {
    Melbo__Option **opts;
    size_t n;
    char *upload[2];
};

static const char *const upload_names[2] = {"init", "calibration-init"};

static void spec_build_free(struct spec_build *b) {
    for (size_t i = 0; i < b->n; i++) {
        free(b->opts[i]->name);
        free(b->opts[i]->value);
        free(b->opts[i]);
    }
    free(b->opts);
    free(b->upload[0]);
    free(b->upload[1]);
}

/* The parser's visitor: every accepted option joins the spec in command-line order. */
static int add_option(void *ctx, const struct melbo_opt *row, const char *name, const char *val,
                      struct melbo_err *err) {
    struct spec_build *b = ctx;
    Melbo__Option *o = melbo_xmalloc(sizeof *o);
    melbo__option__init(o);
    o->name = melbo_xstrdup(name);
    o->value = val == NULL ? NULL : melbo_opt_is_path(row, name) ? abs_path(val)
                                                                 : melbo_xstrdup(val);
    if (val && !strcmp(name, "model") && strchr(val, '/') == NULL) { /* a registered name */
        free(o->value);
        o->value = melbo_xstrdup(val);
    }
    if (val && !strcmp(name, "prompts")) { /* sent as its text, read as the user */
        char *text = NULL;
        int ret = melbo_file_read_capped(o->value, PROMPTS_CAP, "--prompts", &text, NULL, err);
        if (ret) {
            free(o->name), free(o->value), free(o);
            return ret;
        }
        free(o->name), free(o->value);
        o->name = melbo_xstrdup("prompts-jsonl");
        o->value = text;
    }
    for (int k = 0; k < 2; k++)
        if (val && !strcmp(name, upload_names[k])) { /* uploaded before the submit */
            free(b->upload[k]);
            b->upload[k] = o->value;
            size_t n = strlen(name) + 8;
            o->value = melbo_xmalloc(n);
            snprintf(o->value, n, "upload:%s", name);
        }
    b->opts = melbo_xrealloc(b->opts, sizeof *b->opts * (b->n + 1));
    b->opts[b->n++] = o;
    return 0;
}

/* Uploads the regular file at path for option name in chunks (InputUpload, each acknowledged).
 * Returns 0 or an exit code (printed). */
static int upload_file(struct melbo_cli *c, const char *name, const char *path) {
    struct stat st;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY), status = 0;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "melbo submit: --%s %s: %s\n", name, path,
                fd < 0 ? strerror(errno) : "not a regular file");
        if (fd >= 0)
            close(fd);
        return MELBO_CLI_USAGE;
    }
    uint8_t *buf = melbo_xmalloc(UPLOAD_CHUNK);
    struct melbo_sha256 sha;
    uint64_t total = (uint64_t)st.st_size, off = 0;
    char hex[65];
    melbo_sha256_init(&sha);
    do {
        size_t want = total - off < UPLOAD_CHUNK ? (size_t)(total - off) : UPLOAD_CHUNK, got = 0;
        while (got < want) {
            ssize_t r = read(fd, buf + got, want - got);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            got += (size_t)r;
        }
        if (got < want) {
            fprintf(stderr, "melbo submit: --%s %s: cannot read it (did it shrink?)\n", name, path);
            status = MELBO_CLI_REFUSED;
            break;
        }
        melbo_sha256_update(&sha, buf, got);
        Melbo__InputUpload u = MELBO__INPUT_UPLOAD__INIT;
        u.option = (char *)name;
        u.has_offset = u.has_data = u.has_total_size = u.has_last = 1;
        u.offset = off;
        u.data.data = buf;
        u.data.len = got;
        u.total_size = total;
        off += got;
        u.last = off >= total;
        if (u.last) {
            uint8_t d[32];
            melbo_sha256_final(&sha, d);
            melbo_sha256_hex(d, hex);
            u.sha256 = hex;
        }
        Melbo__Envelope env = MELBO__ENVELOPE__INIT, *rep = NULL;
        env.body_case = MELBO__ENVELOPE__BODY_INPUT_UPLOAD;
        env.input_upload = &u;
        if ((status = melbo_cli_call(c, &env, &rep)) != 0)
            break;
        if (rep->body_case != MELBO__ENVELOPE__BODY_INPUT_UPLOAD_ACK) {
            fprintf(stderr, "melbo: unexpected reply to an upload\n");
            status = MELBO_CLI_UNREACHABLE;
        }
        melbo__envelope__free_unpacked(rep, NULL);
        if (status || u.last)
            break;
    } while (1);
    free(buf);
    close(fd);
    return status;
}

int melbo_cli_cmd_submit(struct melbo_cli *c, int argc, char **argv) {
    struct spec_build b = {NULL, 0, {NULL, NULL}};
    struct melbo_job_params jp;
    struct melbo_err err = {0};
    struct melbo_opts_parse_cfg cfg = {"melbo submit", MELBO_OPT_LOCAL, MELBO_OPT_LOCAL,
                                       add_option, &b};
    Melbo__Envelope *rep = NULL;
    char rid[72] = "";
    int n_rest = 0;
    char **rest = melbo_xcalloc((size_t)argc + 1, sizeof *rest);
    for (int i = 0; i < argc; i++) /* --request-id RID: the CLI's own, not a job option */
        if (i > 0 && !strcmp(argv[i], "--request-id") && i + 1 < argc)
            snprintf(rid, sizeof rid, "%s", argv[++i]);
        else
            rest[n_rest++] = argv[i];
    melbo_job_params_init(&jp);
    melbo_prompts_file_cap = PROMPTS_CAP; /* read as the user, at most what a request carries */
    int status = melbo_opts_parse(&melbo_job_table, &jp, n_rest, rest, &cfg, &err);
    if (status == 0 && melbo_train_params_check(&jp.train, &err) != 0)
        status = -1;
    melbo_job_params_free(&jp);
    if (status == 1) {
        submit_usage();
        status = MELBO_CLI_OK;
        goto out;
    }
    if (status < 0) {
        fprintf(stderr, "melbo submit: %s\n", err.msg);
        status = MELBO_CLI_USAGE;
        goto out;
    }
    if (rid[0] == '\0')
        new_request_id(rid, sizeof rid);
    Melbo__JobSpec spec = MELBO__JOB_SPEC__INIT;
    spec.n_options = b.n;
    spec.options = b.opts;
    Melbo__SubmitRequest sr = MELBO__SUBMIT_REQUEST__INIT;
    sr.spec = &spec;
    sr.request_id = rid[0] ? rid : NULL;
    interrupted_len = snprintf(interrupted_msg, sizeof interrupted_msg,
                               "\nmelbo submit: interrupted; request %s may have reached the "
                               "coordinator: the same command with --request-id %s prints its "
                               "job's id (and never makes a second job)\n",
                               rid, rid);
    signal(SIGINT, on_interrupt); /* from the first byte sent until the reply */
    signal(SIGTERM, on_interrupt);
    for (int attempt = 1;; attempt++) {
        if ((status = melbo_cli_connect(c)) == 0)
            for (int k = 0; k < 2 && status == 0; k++)
                if (b.upload[k])
                    status = upload_file(c, upload_names[k], b.upload[k]);
        if (status == 0) {
            Melbo__Envelope env = MELBO__ENVELOPE__INIT;
            env.body_case = MELBO__ENVELOPE__BODY_SUBMIT;
            env.submit = &sr;
            status = melbo_cli_call(c, &env, &rep);
        }
        if (status != MELBO_CLI_UNREACHABLE || attempt == SUBMIT_TRIES || rid[0] == '\0')
            break;
        melbo_conn_close(&c->conn); /* the reply was lost: send the same request again */
        fprintf(stderr, "melbo submit: no reply; sending request %s again (%d of %d)\n", rid,
                attempt + 1, SUBMIT_TRIES);
        sleep((unsigned)attempt);
    }
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    if (status != 0)
        goto out;
    if (rep->body_case != MELBO__ENVELOPE__BODY_SUBMITTED) {
        fprintf(stderr, "melbo: unexpected reply to submit\n");
        status = MELBO_CLI_UNREACHABLE;
    } else {
        if (rep->submitted->existing)
            fprintf(stderr, "melbo submit: request %s was submitted before: its job is %llu\n",
                    rid, (unsigned long long)rep->submitted->job_id);
        printf("%llu\n", (unsigned long long)rep->submitted->job_id);
    }
out:
    melbo__envelope__free_unpacked(rep, NULL);
    spec_build_free(&b);
    free(rest);
    return status;
}
