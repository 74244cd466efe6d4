/*
 * coord/export.c - a user's ExportRequest and ReportRequest (`melbo bank export`, `melbo bank
 * report`): the coordinator runs `melbo-rank bank export|report` on its stored bank and streams
 * what it wrote back to the client (coord/client.h).
 *
 * Why the coordinator runs melbo-rank: the bank is in the coordinator's store, and melbo-rank is
 * the one program that knows the export formats and the report (the coordinator links no bank
 * reader: tests/layout), so the client gets byte for byte what `melbo-rank bank export` writes
 * from the fetched bank, without fetching it, and a format added to melbo-rank is served with no
 * change here.
 *
 * One export, start to end:
 *   1. checked: a bank id that is stored, a format name of [a-z0-9-] (at most 64), an
 *      expression of printable ASCII (at most 4 KiB), an adapter index >= 0, not both;
 *   2. queued: at most EXPORTS_RUNNING melbo-ranks run at once, the others wait in arrival order;
 *   3. run: uv_spawn of co->rank_binary (the binary the ranks are launched with) with an argv,
 *      never a shell: `bank export BANK --format=F --vector=EXPR|--adapter=K -o DIR/export`
 *      (`bank report BANK -o DIR/report.html`), each user value glued to its option by '=' so
 *      that it can never be an option of its own. BANK is the stored bank's absolute path, DIR a
 *      new private directory STATE/exports/export-XXXXXX (mkdtemp, 0700), its working directory;
 *      the process has its own process group, stdin and stdout on /dev/null, and its stderr is
 *      kept (its last 16 KiB). It is killed (SIGKILL to the group) after co->export_timeout_s,
 *      or as soon as the client goes away;
 *   4. answered: exit 0: the output (DIR/export: one regular file, or a directory of regular
 *      files, found with lstat and opened O_NOFOLLOW) goes back as ExportChunk messages, paced
 *      by the connection's queue like a fetch; exit 1 or 2 (melbo-rank refused: a bad
 *      expression, an adapter bank to a control vector, an index out of range): Error
 *      ERROR_INVALID with melbo-rank's stderr, the bank's path written "bank ID"; anything else
 *      (a signal, the time limit, no output): ERROR_INTERNAL;
 *   5. DIR is removed when the export ends, however it ends; `serve` empties STATE/exports when
 *      it starts (what a killed coordinator left behind).
 *
 * Lifetime (style rule 8): a struct melbo_export is on co->exports from the request to its
 * end. The connection points at it (cl->export) and it at the connection (e->cl, NULL once the
 * connection closed). It is freed once it is finished (answered, or its client gone) and its
 * three handles (process, stderr pipe, timer; members of the struct) are closed, never while
 * the pump is sending from it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file.h"
#include "common/log.h"
#include "coord/banks.h"  // defines: melbo_bank_path, melbo_bank_id_valid
#include "coord/client.h" // defines: struct melbo_client, melbo_client_error
#include "coord/clock.h"  // defines: melbo_coord_now

#define EXPORTS_RUNNING    2           // melbo-rank bank export|report processes at once
#define EXPORT_STDERR_MAX  (16 * 1024) // of melbo-rank's stderr kept (its end) for the message
#define EXPORT_MESSAGE_MAX 900         // of it sent in an Error (they stay under 1 KiB)
#define EXPORT_FILES_MAX   64          // files in a directory output
#define EXPORT_EXPR_MAX    4096
#define EXPORT_FORMAT_MAX  64

enum export_state { EXPORT_QUEUED, EXPORT_RUNNING, EXPORT_SENDING, EXPORT_FINISHED };

struct export_file {
    char name[256]; // inside the output directory; "" for a single-file output
    uint64_t size;  // from lstat, before sending
};

struct melbo_export {
    struct melbo_coord *co;
    struct melbo_client *cl; // the asking connection; NULL once it closed
    uint64_t req;            // the request's envelope id (every reply carries it)
    enum export_state state;
    int report; // 1: bank report, 0: bank export
    char bank_id[72], bank_path[PATH_MAX];
    char *format, *vector; // owned; NULL when not asked
    int has_adapter, adapter;
    char dir[PATH_MAX]; // the private temporary directory ("" before mkdtemp)
    char out[PATH_MAX]; // what melbo-rank writes: DIR/export or DIR/report.html
    /* the run */
    uv_process_t proc;
    uv_pipe_t err_pipe;
    uv_timer_t timer;
    int handles; // initialised and not yet closed
    int pid, exited, eof, timed_out;
    int64_t status;
    int term_signal;
    double started;
    char err[EXPORT_STDERR_MAX + 1];
    size_t err_len;
    /* the answer */
    int directory;
    struct export_file files[EXPORT_FILES_MAX];
    int n_files, cur;
    uint64_t total, off;
    FILE *f; // the file being sent
    struct melbo_sha256 sha;
    int busy;                  // the pump is sending: not freed before it returns
    struct melbo_export *next; // on co->exports
};

static void exports_schedule(struct melbo_coord *co);

/* ---------------------------------------------------------------------------------------------
 * The private directories.
 */

/* Removes path: a file or symlink (never followed), or a directory with what it holds (at most
 * depth levels below it). */
static void rm_tree(const char *path, int depth) {
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (!S_ISDIR(st.st_mode)) {
        unlink(path);
        return;
    }
    DIR *d = depth > 0 ? opendir(path) : NULL;
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        char child[PATH_MAX];
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
            melbo_path_join(child, sizeof child, path, de->d_name) == 0)
            rm_tree(child, depth - 1);
    }
    if (d)
        closedir(d);
    rmdir(path);
}

int melbo_coord_exports_init(struct melbo_coord *co, struct melbo_err *err) {
    char path[PATH_MAX];
    if (melbo_path_join(path, sizeof path, co->state_dir, "exports") != 0)
        return melbo_err_set(err, MELBO_ERANGE, "state directory path too long");
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return melbo_err_set(err, MELBO_EIO, "cannot create %s: %s", path, strerror(errno));
    chmod(path, 0700);
    DIR *d = opendir(path);
    if (d == NULL)
        return melbo_err_set(err, MELBO_EIO, "cannot read %s: %s", path, strerror(errno));
    struct dirent *de;
    while ((de = readdir(d)) != NULL) { /* what a coordinator that was killed left behind */
        char child[PATH_MAX];
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
            melbo_path_join(child, sizeof child, path, de->d_name) == 0)
            rm_tree(child, 3);
    }
    closedir(d);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * The end of an export.
 */

static const char *what(const struct melbo_export *e) {
    return e->report ? "melbo-rank bank report" : "melbo-rank bank export";
}

/* Frees e when it is finished, its handles are closed and the pump is not using it. */
static void export_release(struct melbo_export *e) {
    if (e->state != EXPORT_FINISHED || e->handles > 0 || e->busy)
        return;
    for (struct melbo_export **pp = &e->co->exports; *pp; pp = &(*pp)->next)
        if (*pp == e) {
            *pp = e->next;
            break;
        }
    free(e->format);
    free(e->vector);
    free(e);
}

/* Ends e however it went: closes the file being sent, removes the private directory, lets go of
 * the connection. e may be freed on return. */
static void export_finish(struct melbo_export *e) {
    if (e->f) {
        fclose(e->f);
        e->f = NULL;
    }
    if (e->dir[0]) {
        rm_tree(e->dir, 3);
        e->dir[0] = '\0';
    }
    if (e->cl) {
        e->cl->export = NULL;
        e->cl = NULL;
    }
    e->state = EXPORT_FINISHED;
    export_release(e);
}

/* Ends e, then answers its request with Error{code, message}: the private directory is gone
 * before the client can hear of the end. */
__attribute__((format(printf, 3, 4))) static void export_fail(struct melbo_export *e, int code,
                                                              const char *fmt, ...) {
    struct melbo_client *cl = e->cl; // freed only after its handle closed: valid below
    uint64_t req = e->req;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    export_finish(e); // e may be freed
    if (cl)
        melbo_client_error(cl, req, code, 0, "%s", msg);
}

/*
 * melbo-rank's stderr as the message for the user, into buf (n bytes): trailing blank lines
 * cut, the stored bank's path written "bank ID" and the private directory "(output)" (neither
 * means anything to the user), and at most EXPORT_MESSAGE_MAX bytes (its end, where the error
 * is).
 */
static void export_message(const struct melbo_export *e, char *buf, size_t n) {
    char bank[96], *p = buf;
    const char *s = e->err;
    size_t o = 0, bl = strlen(e->bank_path), dl = strlen(e->dir);
    snprintf(bank, sizeof bank, "bank %s", e->bank_id);
    while (*s && o + 1 < n) {
        const char *rep = NULL;
        size_t skip = 0;
        if (bl && !strncmp(s, e->bank_path, bl))
            rep = bank, skip = bl;
        else if (dl && !strncmp(s, e->dir, dl))
            rep = "(output)", skip = dl;
        if (rep) {
            int w = snprintf(buf + o, n - o, "%s", rep);
            o += w > 0 && (size_t)w < n - o ? (size_t)w : 0;
            s += skip;
            continue;
        }
        buf[o++] = *s++;
    }
    buf[o] = '\0';
    while (o > 0 && (buf[o - 1] == '\n' || buf[o - 1] == '\r' || buf[o - 1] == ' '))
        buf[--o] = '\0';
    if (o > EXPORT_MESSAGE_MAX) {
        p = buf + o - EXPORT_MESSAGE_MAX;
        memmove(buf, p, EXPORT_MESSAGE_MAX + 1);
    }
}

static int name_cmp(const void *a, const void *b) {
    return strcmp(((const struct export_file *)a)->name, ((const struct export_file *)b)->name);
}

/* What melbo-rank wrote at e->out into e->files. Returns 0, or a negative code with err set. */
static int export_list(struct melbo_export *e, struct melbo_err *err) {
    struct stat st;
    if (lstat(e->out, &st) != 0)
        return melbo_err_set(err, MELBO_EMISSING, "%s exited 0 but wrote nothing", what(e));
    e->n_files = 0;
    e->total = 0;
    if (S_ISREG(st.st_mode)) {
        e->files[0].name[0] = '\0';
        e->files[0].size = (uint64_t)st.st_size;
        e->n_files = 1;
        e->total = (uint64_t)st.st_size;
        return 0;
    }
    if (!S_ISDIR(st.st_mode))
        return melbo_err_set(err, MELBO_EFORMAT, "%s wrote something that is not a file", what(e));
    e->directory = 1;
    DIR *d = opendir(e->out);
    if (d == NULL)
        return melbo_err_set(err, MELBO_EIO, "cannot read the output of %s", what(e));
    struct dirent *de;
    int ret = 0;
    while (ret == 0 && (de = readdir(d)) != NULL) {
        char path[PATH_MAX];
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (e->n_files == EXPORT_FILES_MAX || strlen(de->d_name) >= sizeof e->files[0].name ||
            melbo_path_join(path, sizeof path, e->out, de->d_name) != 0 || lstat(path, &st) != 0 ||
            !S_ISREG(st.st_mode)) {
            ret = melbo_err_set(err, MELBO_EFORMAT, "%s wrote an unexpected output (%s)", what(e),
                                de->d_name);
            break;
        }
        struct export_file *f = &e->files[e->n_files++];
        snprintf(f->name, sizeof f->name, "%s", de->d_name);
        f->size = (uint64_t)st.st_size;
        e->total += f->size;
    }
    closedir(d);
    if (ret == 0 && e->n_files == 0)
        ret = melbo_err_set(err, MELBO_EMISSING, "%s wrote an empty directory", what(e));
    qsort(e->files, (size_t)e->n_files, sizeof e->files[0], name_cmp);
    return ret;
}

/* The process has exited and its stderr is read: the answer. */
static void export_conclude(struct melbo_export *e) {
    char msg[EXPORT_STDERR_MAX + 256];
    struct melbo_err err = {0};
    if (e->cl == NULL) { /* the client went away and the process was killed */
        export_finish(e);
        return;
    }
    export_message(e, msg, sizeof msg);
    melbo_log(MELBO_LOG_INFO, "coord: %s of bank %s for %s: %s %lld after %.1f s", what(e),
              e->bank_id, e->cl->user, e->term_signal ? "signal" : "status",
              e->term_signal ? (long long)e->term_signal : (long long)e->status,
              melbo_coord_now() - e->started);
    if (e->timed_out) {
        export_fail(e, MELBO__ERROR_CODE__ERROR_INTERNAL,
                    "%s did not finish within %g s; it was stopped", what(e),
                    e->co->export_timeout_s);
    } else if (e->term_signal) {
        export_fail(e, MELBO__ERROR_CODE__ERROR_INTERNAL, "%s was killed by signal %d%s%s", what(e),
                    e->term_signal, msg[0] ? ": " : "", msg);
    } else if (e->status == 1 || e->status == 2) {
        /* melbo-rank refused the request: its message says why */
        export_fail(e, MELBO__ERROR_CODE__ERROR_INVALID, "%s",
                    msg[0] ? msg : "melbo-rank refused the export without a message");
    } else if (e->status != 0) {
        export_fail(e, MELBO__ERROR_CODE__ERROR_INTERNAL, "%s exited with status %lld%s%s", what(e),
                    (long long)e->status, msg[0] ? ": " : "", msg);
    } else if (export_list(e, &err) != 0) {
        export_fail(e, MELBO__ERROR_CODE__ERROR_INTERNAL, "%s", err.msg);
    } else {
        e->state = EXPORT_SENDING;
        e->cur = 0;
        melbo_coord_export_pump(e->cl);
    }
}

/* ---------------------------------------------------------------------------------------------
 * The run.
 */

static void on_handle_closed(uv_handle_t *h) {
    struct melbo_export *e = h->data;
    e->handles--;
    export_release(e);
}

/* Exited and stderr at its end: close the handles, free the slot, answer, start the next. */
static void export_maybe_done(struct melbo_export *e) {
    if (!e->exited || !e->eof || e->state != EXPORT_RUNNING)
        return;
    struct melbo_coord *co = e->co;
    uv_timer_stop(&e->timer);
    uv_close((uv_handle_t *)&e->proc, on_handle_closed);
    uv_close((uv_handle_t *)&e->err_pipe, on_handle_closed);
    uv_close((uv_handle_t *)&e->timer, on_handle_closed);
    co->exports_running--;
    e->err[e->err_len] = '\0';
    export_conclude(e); // e may be finished here; freed only after the close callbacks
    exports_schedule(co);
}

/* stderr is read into one scratch buffer (one loop thread: each read is consumed before the
 * next allocation) and appended to e->err, which keeps the last EXPORT_STDERR_MAX bytes. */
static char err_scratch[64 * 1024];

static void on_err_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
    (void)h, (void)suggested;
    b->base = err_scratch;
    b->len = sizeof err_scratch;
}

static void on_err_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
    struct melbo_export *e = s->data;
    if (n > 0) {
        size_t k = (size_t)n;
        const char *p = b->base;
        if (k >= EXPORT_STDERR_MAX) { /* only its end is kept */
            p += k - EXPORT_STDERR_MAX;
            k = EXPORT_STDERR_MAX;
            e->err_len = 0;
        } else if (e->err_len + k > EXPORT_STDERR_MAX) {
            size_t drop = e->err_len + k - EXPORT_STDERR_MAX;
            memmove(e->err, e->err + drop, e->err_len - drop);
            e->err_len -= drop;
        }
        memcpy(e->err + e->err_len, p, k);
        e->err_len += k;
    }
    if (n < 0) {
        uv_read_stop(s);
        e->eof = 1;
        export_maybe_done(e);
    }
}

/* melbo-rank exited. Whatever it left in its process group still holds stderr open (no end of
 * file yet: the group exists, so its id is not reused) and is killed, so that the answer does
 * not wait for it. */
static void on_exit_cb(uv_process_t *p, int64_t status, int term_signal) {
    struct melbo_export *e = p->data;
    e->exited = 1;
    e->status = status;
    e->term_signal = term_signal;
    if (!e->eof)
        kill(-e->pid, SIGKILL);
    export_maybe_done(e);
}

/* The time limit: the whole process group is killed; the exit callback answers. */
static void on_timeout(uv_timer_t *t) {
    struct melbo_export *e = t->data;
    melbo_log(MELBO_LOG_WARN, "coord: %s of bank %s: over %g s, killed", what(e), e->bank_id,
              e->co->export_timeout_s);
    e->timed_out = 1;
    kill(-e->pid, SIGKILL);
}

/* Makes the private directory and starts melbo-rank in it. Returns 0, or a negative code with
 * err set (the handles started are being closed then; the caller fails the export). */
static int export_spawn(struct melbo_export *e, struct melbo_err *err) {
    struct melbo_coord *co = e->co;
    char a_format[EXPORT_FORMAT_MAX + 16], a_adapter[32];
    char *a_vector = NULL;
    if (snprintf(e->dir, sizeof e->dir, "%s/exports/export-XXXXXX", co->state_dir) >=
            (int)sizeof e->dir ||
        mkdtemp(e->dir) == NULL) {
        e->dir[0] = '\0';
        return melbo_err_set(err, MELBO_EIO,
                             "cannot create a temporary directory under %s/exports: %s",
                             co->state_dir, strerror(errno));
    }
    melbo_path_join(e->out, sizeof e->out, e->dir, e->report ? "report.html" : "export");
    const char *args[12];
    int n = 0;
    args[n++] = co->rank_binary;
    args[n++] = "bank";
    args[n++] = e->report ? "report" : "export";
    args[n++] = e->bank_path; // absolute (the state directory is a realpath): never an option
    if (e->format) {
        snprintf(a_format, sizeof a_format, "--format=%s", e->format);
        args[n++] = a_format;
    }
    if (e->vector) {
        size_t len = strlen(e->vector) + 16;
        if ((a_vector = malloc(len)) == NULL)
            return melbo_err_set(err, MELBO_ENOMEM, "out of memory");
        snprintf(a_vector, len, "--vector=%s", e->vector);
        args[n++] = a_vector;
    }
    if (e->has_adapter) {
        snprintf(a_adapter, sizeof a_adapter, "--adapter=%d", e->adapter);
        args[n++] = a_adapter;
    }
    args[n++] = "-o"; // ours, and absolute: no '=' needed (`bank report` takes only -o)
    args[n++] = e->out;
    args[n] = NULL;
    uv_pipe_init(co->loop, &e->err_pipe, 0);
    uv_timer_init(co->loop, &e->timer);
    e->proc.data = e->err_pipe.data = e->timer.data = e;
    e->handles = 3; // the process handle counts from uv_spawn on, success or not
    uv_stdio_container_t stdio[3];
    stdio[0].flags = stdio[1].flags = UV_IGNORE; // /dev/null
    stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[2].data.stream = (uv_stream_t *)&e->err_pipe;
    uv_process_options_t opt;
    memset(&opt, 0, sizeof opt);
    opt.file = co->rank_binary;
    opt.args = (char **)args;
    opt.cwd = e->dir;
    opt.flags = UV_PROCESS_DETACHED; // its own process group: a kill reaches all of it
    opt.exit_cb = on_exit_cb;
    opt.stdio_count = 3;
    opt.stdio = stdio;
    int r = uv_spawn(co->loop, &e->proc, &opt);
    free(a_vector);
    if (r != 0) {
        uv_close((uv_handle_t *)&e->proc, on_handle_closed);
        uv_close((uv_handle_t *)&e->err_pipe, on_handle_closed);
        uv_close((uv_handle_t *)&e->timer, on_handle_closed);
        return melbo_err_set(err, r, "cannot start %s: %s", co->rank_binary, uv_strerror(r));
    }
    e->pid = e->proc.pid;
    e->started = melbo_coord_now();
    e->state = EXPORT_RUNNING;
    co->exports_running++;
    uv_read_start((uv_stream_t *)&e->err_pipe, on_err_alloc, on_err_read);
    uv_timer_start(&e->timer, on_timeout, (uint64_t)(co->export_timeout_s * 1000.0), 0);
    melbo_log(MELBO_LOG_INFO, "coord: %s of bank %s for %s: pid %d in %s", what(e), e->bank_id,
              e->cl ? e->cl->user : "-", e->pid, e->dir);
    return 0;
}

/* Starts queued exports, oldest first, while fewer than EXPORTS_RUNNING run. */
static void exports_schedule(struct melbo_coord *co) {
    struct melbo_export *e = co->exports, *next;
    for (; e && co->exports_running < EXPORTS_RUNNING; e = next) {
        next = e->next; // e may be freed below
        if (e->state != EXPORT_QUEUED)
            continue;
        struct melbo_err err = {0};
        if (export_spawn(e, &err) != 0) {
            melbo_log(MELBO_LOG_ERROR, "coord: %s", err.msg);
            export_fail(e, MELBO__ERROR_CODE__ERROR_INTERNAL, "%s", err.msg);
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * Requests and the connection's side.
 */

/* 1 when s is 1..max bytes of [a-z0-9-]. */
static int format_valid(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > EXPORT_FORMAT_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return 0;
    return 1;
}

/* 1 when s is 1..EXPORT_EXPR_MAX bytes of printable ASCII. */
static int expr_valid(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > EXPORT_EXPR_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return 0;
    return 1;
}

void melbo_coord_export_request(struct melbo_client *cl, const Melbo__Envelope *env) {
    int report = env->body_case == MELBO__ENVELOPE__BODY_BANK_REPORT;
    const Melbo__ExportRequest *x = report ? NULL : env->bank_export;
    const char *id = report ? env->bank_report->bank_id : x->bank_id;
    const char *cmd = report ? "bank report" : "bank export";
    int invalid = MELBO__ERROR_CODE__ERROR_INVALID;
    char path[PATH_MAX];
    if (cl->export) {
        melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_STATE, 0,
                           "an export is already in progress on this connection");
        return;
    }
    if (id == NULL || !melbo_bank_id_valid(id)) {
        melbo_client_error(cl, env->id, invalid, 0,
                           "'%.80s' is not a bank id (expected hex digits)", id ? id : "");
        return;
    }
    if (melbo_bank_path(cl->co->state_dir, id, path, sizeof path) != 0 || access(path, R_OK) != 0 ||
        melbo_coord_bank_hidden(cl, id)) { /* a --private job's bank: its owner and admins only */
        melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_NOT_FOUND, 0, "no bank %s", id);
        return;
    }
    if (x && (x->format == NULL || x->format[0] == '\0')) {
        melbo_client_error(cl, env->id, invalid, 0, "%s: which format? (give --format F)", cmd);
        return;
    }
    if (x && !format_valid(x->format)) {
        melbo_client_error(cl, env->id, invalid, 0, "%s: '%.80s' is not a format name", cmd,
                           x->format);
        return;
    }
    if (x && x->vector && !expr_valid(x->vector)) {
        melbo_client_error(cl, env->id, invalid, 0,
                           "%s: a vector expression is 1 to %d printable ASCII characters", cmd,
                           EXPORT_EXPR_MAX);
        return;
    }
    if (x && x->has_adapter && x->adapter < 0) {
        melbo_client_error(cl, env->id, invalid, 0, "%s: --adapter must be >= 0 (got %d)", cmd,
                           x->adapter);
        return;
    }
    if (x && x->vector && x->has_adapter) {
        melbo_client_error(cl, env->id, invalid, 0,
                           "%s: give a vector expression (--vector) or an adapter (--adapter), "
                           "not both",
                           cmd);
        return;
    }
    struct melbo_export *e = calloc(1, sizeof *e);
    if (e == NULL || (x && (e->format = strdup(x->format)) == NULL) ||
        (x && x->vector && (e->vector = strdup(x->vector)) == NULL)) {
        if (e)
            free(e->format);
        free(e);
        melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_INTERNAL, 0, "out of memory");
        return;
    }
    e->co = cl->co;
    e->cl = cl;
    e->req = env->id;
    e->report = report;
    e->state = EXPORT_QUEUED;
    snprintf(e->bank_id, sizeof e->bank_id, "%s", id);
    snprintf(e->bank_path, sizeof e->bank_path, "%s", path);
    e->has_adapter = x && x->has_adapter;
    e->adapter = x ? x->adapter : 0;
    struct melbo_export **tail = &cl->co->exports; // queued in arrival order
    while (*tail)
        tail = &(*tail)->next;
    *tail = e;
    cl->export = e;
    exports_schedule(cl->co);
}

void melbo_coord_export_pump(struct melbo_client *cl) {
    static uint8_t chunk[MELBO_CHUNK_MAX];
    struct melbo_export *e = cl->export;
    if (e == NULL || e->state != EXPORT_SENDING)
        return;
    e->busy = 1;
    while (e->cl && e->state == EXPORT_SENDING && !cl->conn.closing &&
           melbo_client_queued(cl) < MELBO_COORD_LOW_WATER) {
        struct export_file *file = &e->files[e->cur];
        if (e->f == NULL) {
            char path[PATH_MAX];
            int fd = -1;
            if (!e->directory)
                snprintf(path, sizeof path, "%s", e->out);
            if ((e->directory && melbo_path_join(path, sizeof path, e->out, file->name) != 0) ||
                (fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0 ||
                (e->f = fdopen(fd, "rb")) == NULL) {
                if (fd >= 0)
                    close(fd);
                export_fail(e, MELBO__ERROR_CODE__ERROR_INTERNAL, "cannot read the output of %s",
                            what(e));
                break;
            }
            e->off = 0;
            melbo_sha256_init(&e->sha);
        }
        uint64_t want =
            file->size - e->off < MELBO_CHUNK_MAX ? file->size - e->off : MELBO_CHUNK_MAX;
        size_t got = want ? fread(chunk, 1, (size_t)want, e->f) : 0;
        if (got != want) {
            export_fail(e, MELBO__ERROR_CODE__ERROR_INTERNAL, "cannot read the output of %s",
                        what(e));
            break;
        }
        melbo_sha256_update(&e->sha, chunk, got);
        Melbo__ExportChunk xc = MELBO__EXPORT_CHUNK__INIT;
        char hex[65];
        xc.bank_id = e->bank_id;
        xc.has_directory = xc.has_files = xc.has_total_size = xc.has_file_size = 1;
        xc.directory = e->directory;
        xc.files = (uint32_t)e->n_files;
        xc.total_size = e->total;
        xc.name = file->name;
        xc.file_size = file->size;
        xc.has_offset = xc.has_data = xc.has_file_last = xc.has_last = 1;
        xc.offset = e->off;
        xc.data.data = chunk;
        xc.data.len = got;
        e->off += got;
        xc.file_last = e->off >= file->size;
        xc.last = xc.file_last && e->cur == e->n_files - 1;
        if (xc.file_last) {
            uint8_t d[32];
            melbo_sha256_final(&e->sha, d);
            melbo_sha256_hex(d, hex);
            xc.sha256 = hex;
            fclose(e->f);
            e->f = NULL;
            e->cur++;
        }
        if (xc.last) { /* everything is read: the directory goes before the client hears */
            rm_tree(e->dir, 3);
            e->dir[0] = '\0';
        }
        Melbo__Envelope r = MELBO__ENVELOPE__INIT;
        r.has_id = 1;
        r.id = e->req;
        r.body_case = MELBO__ENVELOPE__BODY_EXPORT_CHUNK;
        r.export_chunk = &xc;
        melbo_client_send(cl, &r); // a failure closes cl: melbo_coord_export_gone ends e
        if (xc.last && e->cl) {
            melbo_log(MELBO_LOG_INFO, "coord: %s of bank %s: %llu bytes in %d file(s) sent to %s",
                      what(e), e->bank_id, (unsigned long long)e->total, e->n_files, cl->user);
            export_finish(e);
        }
    }
    e->busy = 0;
    export_release(e);
}

void melbo_coord_export_gone(struct melbo_client *cl) {
    struct melbo_export *e = cl->export;
    if (e == NULL)
        return;
    cl->export = NULL;
    e->cl = NULL;
    if (e->state == EXPORT_RUNNING) { /* killed; the exit callback ends it */
        uv_timer_stop(&e->timer);
        if (!e->eof)
            kill(-e->pid, SIGKILL);
    } else {
        export_finish(e);
    }
}
