/*
 * coord/maint.c - the admin's maintenance commands (issue 22), run with the coordinator's state
 * directory; `fsck` and `backup` also while it serves:
 *
 *   melbo-coord fsck --state DIR [--repair]
 *       checks the database (SQLite integrity_check), the bank store and the job directories
 *       against each other and prints one line per finding: a catalogued bank whose file is
 *       missing or whose bytes do not match its sha256, a bank file nobody catalogued, a job
 *       whose bank is not in the catalog, a job that is not DONE while a finished bank waits in
 *       its directory, a leftover temporary upload. --repair fixes what can be fixed without
 *       guessing: it catalogues stray bank files (the job named in their metadata), adopts
 *       waiting banks (the job becomes DONE, as `serve` does at start) and removes temporary
 *       uploads; a bank whose file is gone or damaged is reported, never deleted. Exit 0 when
 *       nothing is (left) wrong, 1 otherwise. Checking is safe while the coordinator serves;
 *       --repair changes the database behind it, so run it with the coordinator stopped.
 *   melbo-coord backup OUT --state DIR
 *       a consistent copy while serving: the database through SQLite's online backup API (one
 *       snapshot), then every bank file it catalogues (bank files never change once stored),
 *       the tokens, coord.conf, models and the TLS key and certificate; OUT must not exist.
 *   melbo-coord restore BACKUP --state NEWDIR
 *       a state directory from a backup (NEWDIR must not exist): the same jobs, events, banks,
 *       users and certificate. Jobs that were running when the backup was taken are FAILED
 *       (their ranks belong to the old coordinator); queued ones stay queued.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file.h"
#include "common/sha256.h"
#include "coord/banks.h"
#include "coord/db.h"
#include "coord/jobs.h"
#include "coord/launcher.h"
#include "coord/maint.h"

/* The files of a state directory a backup carries besides the database and the banks. */
static const char *const state_files[] = {"tokens", "coord.conf", "models", "tls.key", "tls.crt"};

static const char *arg(int argc, char **argv, const char *name) {
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], name))
            return argv[i + 1];
    return NULL;
}

/* Copies src to dst (created with mode; dst must not exist). Returns 0 or -1 (errno). */
static int copy_file(const char *src, const char *dst, mode_t mode) {
    FILE *in = fopen(src, "rb");
    if (in == NULL)
        return -1;
    int fd = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    FILE *out = fd >= 0 ? fdopen(fd, "wb") : NULL;
    char buf[1 << 16];
    size_t n;
    int ok = out != NULL;
    while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0)
        ok = fwrite(buf, 1, n, out) == n;
    ok = ok && !ferror(in) && fflush(out) == 0 && fsync(fileno(out)) == 0;
    fclose(in);
    if (out)
        ok = fclose(out) == 0 && ok;
    else if (fd >= 0)
        close(fd);
    return ok ? 0 : -1;
}

/* The sha256 (hex) of the file at path into hex; -1 if it cannot be read. */
static int file_sha256(const char *path, char hex[65]) {
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return -1;
    struct melbo_sha256 h;
    uint8_t buf[1 << 16], d[32];
    size_t n;
    melbo_sha256_init(&h);
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        melbo_sha256_update(&h, buf, n);
    int bad = ferror(f);
    fclose(f);
    melbo_sha256_final(&h, d);
    melbo_sha256_hex(d, hex);
    return bad ? -1 : 0;
}

/* Copies the live database at path into out (a new file) through SQLite's online backup. */
static int db_snapshot(const char *path, const char *out, struct melbo_err *err) {
    sqlite3 *src = NULL, *dst = NULL;
    int ret = 0;
    if (sqlite3_open_v2(path, &src, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_open(out, &dst) != SQLITE_OK) {
        ret = melbo_err_set(err, MELBO_EIO, "cannot open %s or %s", path, out);
        goto done;
    }
    sqlite3_busy_timeout(src, 10000);
    sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
    int rc = b ? sqlite3_backup_step(b, -1) : SQLITE_ERROR; /* one step: one snapshot */
    if (b)
        sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE)
        ret = melbo_err_set(err, MELBO_EIO, "the online backup of %s failed: %s", path,
                            sqlite3_errmsg(dst));
done:
    sqlite3_close(src);
    sqlite3_close(dst);
    return ret;
}

/* Calls fn(ctx, id, sha256) for every catalogued bank of db; returns the count or -1. */
static int each_bank(sqlite3 *db, int (*fn)(void *, const char *, const char *), void *ctx) {
    sqlite3_stmt *st = NULL;
    int n = 0;
    if (sqlite3_prepare_v2(db, "SELECT id, COALESCE(sha256, '') FROM banks ORDER BY id", -1, &st,
                           NULL) != SQLITE_OK)
        return -1;
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (fn(ctx, (const char *)sqlite3_column_text(st, 0),
               (const char *)sqlite3_column_text(st, 1)) != 0) {
            n = -1;
            break;
        }
        n++;
    }
    sqlite3_finalize(st);
    return n;
}

/* ---- backup / restore ------------------------------------------------------------------- */

struct copy_ctx {
    const char *from, *to; // state dirs: banks/ID.bank.safetensors copied across
    int failed;
};

static int copy_bank(void *vctx, const char *id, const char *sha) {
    struct copy_ctx *c = vctx;
    char src[PATH_MAX], dst[PATH_MAX];
    (void)sha;
    if (melbo_bank_path(c->from, id, src, sizeof src) != 0 ||
        melbo_bank_path(c->to, id, dst, sizeof dst) != 0 || copy_file(src, dst, 0600) != 0) {
        fprintf(stderr, "melbo-coord: cannot copy bank %s: %s\n", id, strerror(errno));
        c->failed = 1;
    }
    return 0;
}

/* from (a state directory or a backup) into to (a new directory of the same layout). */
static int copy_state(const char *from, const char *to, const char *verb) {
    char path[PATH_MAX], out[PATH_MAX];
    struct melbo_err err = {0};
    sqlite3 *db = NULL;
    if (mkdir(to, 0700) != 0) {
        fprintf(stderr, "melbo-coord %s: %s: %s (it must not exist)\n", verb, to, strerror(errno));
        return 1;
    }
    snprintf(path, sizeof path, "%s/banks", to);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/jobs", to);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/melbo.db", from);
    snprintf(out, sizeof out, "%s/melbo.db", to);
    if (db_snapshot(path, out, &err) != 0) {
        fprintf(stderr, "melbo-coord %s: %s\n", verb, err.msg);
        return 1;
    }
    for (size_t i = 0; i < sizeof state_files / sizeof state_files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", from, state_files[i]);
        snprintf(out, sizeof out, "%s/%s", to, state_files[i]);
        if (access(path, F_OK) == 0 && copy_file(path, out, 0600) != 0) {
            fprintf(stderr, "melbo-coord %s: cannot copy %s: %s\n", verb, path, strerror(errno));
            return 1;
        }
    }
    struct copy_ctx c = {from, to, 0};
    snprintf(out, sizeof out, "%s/melbo.db", to);
    int n = -1;
    if (sqlite3_open_v2(out, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK)
        n = each_bank(db, copy_bank, &c);
    sqlite3_close(db);
    if (n < 0 || c.failed) {
        fprintf(stderr, "melbo-coord %s: the banks were not all copied\n", verb);
        return 1;
    }
    printf("melbo-coord %s: %s -> %s: the database and %d banks\n", verb, from, to, n);
    return 0;
}

int melbo_coord_cmd_backup(int argc, char **argv) {
    const char *state = arg(argc, argv, "--state");
    if (argc < 4 || state == NULL || argv[1][0] == '-') {
        fprintf(stderr, "usage: melbo-coord backup OUT --state DIR\n");
        return 2;
    }
    return copy_state(state, argv[1], "backup");
}

int melbo_coord_cmd_restore(int argc, char **argv) {
    const char *state = arg(argc, argv, "--state");
    if (argc < 4 || state == NULL || argv[1][0] == '-') {
        fprintf(stderr, "usage: melbo-coord restore BACKUP --state NEWDIR\n");
        return 2;
    }
    int ret = copy_state(argv[1], state, "restore");
    if (ret)
        return ret;
    /* the jobs that ran when the backup was taken have no ranks here: FAILED, named so (queued
     * ones stay queued and run in the restored coordinator) */
    char path[PATH_MAX], sql[512];
    sqlite3 *db = NULL;
    snprintf(path, sizeof path, "%s/melbo.db", state);
    snprintf(sql, sizeof sql,
             "UPDATE jobs SET state = %d, pid = 0, failed_rank = -1, finished = "
             "strftime('%%s','now'), error = 'running when the backup was taken; restored "
             "without its ranks' WHERE state IN (%d, %d, %d, %d)",
             MELBO__JOB_STATE__FAILED, MELBO__JOB_STATE__STARTING, MELBO__JOB_STATE__RUNNING,
             MELBO__JOB_STATE__GENERATING, MELBO__JOB_STATE__CHECKPOINTED);
    char *msg = NULL;
    if (sqlite3_open(path, &db) != SQLITE_OK ||
        sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "melbo-coord restore: %s: %s\n", path, msg ? msg : sqlite3_errmsg(db));
        ret = 1;
    } else if (sqlite3_changes(db) > 0) {
        printf("melbo-coord restore: %d job(s) running at the backup are FAILED\n",
               sqlite3_changes(db));
    }
    sqlite3_free(msg);
    sqlite3_close(db);
    return ret;
}

/* ---- fsck ------------------------------------------------------------------------------ */

struct fsck {
    const char *state;
    sqlite3 *db;
    int repair;
    int problems; // findings left (not repaired)
    int repaired;
};

static void finding(struct fsck *f, int fixed, const char *fmt, const char *a, const char *b) {
    printf("%s ", fixed ? "repaired:" : "problem: ");
    printf(fmt, a, b);
    printf("\n");
    if (fixed)
        f->repaired++;
    else
        f->problems++;
}

static int check_bank(void *vctx, const char *id, const char *sha) {
    struct fsck *f = vctx;
    char path[PATH_MAX], hex[65];
    if (melbo_bank_path(f->state, id, path, sizeof path) != 0 || access(path, R_OK) != 0)
        finding(f, 0, "bank %s is catalogued but its file %s is missing", id, path);
    else if (sha[0] && (file_sha256(path, hex) != 0 || strcmp(hex, sha) != 0))
        finding(f, 0, "bank %s: the file %s does not match its sha256 (damaged)", id, path);
    return 0;
}

/* 1 when bank id is in the catalog. */
static int catalogued(sqlite3 *db, const char *id) {
    sqlite3_stmt *st = NULL;
    int yes = 0;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM banks WHERE id = ?", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
        yes = sqlite3_step(st) == SQLITE_ROW;
    }
    sqlite3_finalize(st);
    return yes;
}

int melbo_coord_cmd_fsck(int argc, char **argv) {
    struct fsck f = {arg(argc, argv, "--state"), NULL, 0, 0, 0};
    struct melbo_err err = {0};
    char path[PATH_MAX];
    for (int i = 1; i < argc; i++)
        f.repair |= !strcmp(argv[i], "--repair");
    if (f.state == NULL) {
        fprintf(stderr, "usage: melbo-coord fsck --state DIR [--repair]\n");
        return 2;
    }
    snprintf(path, sizeof path, "%s/melbo.db", f.state);
    if (access(path, R_OK) != 0 || melbo_db_open(path, &f.db, &err) != 0) {
        fprintf(stderr, "melbo-coord fsck: %s: %s\n", path, err.msg[0] ? err.msg : strerror(errno));
        return 1;
    }
    sqlite3_busy_timeout(f.db, 10000);
    /* 1. the database itself */
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(f.db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        const char *r = (const char *)sqlite3_column_text(st, 0);
        if (r && strcmp(r, "ok") != 0)
            finding(&f, 0, "the database: %s%s", r, "");
    }
    sqlite3_finalize(st);
    /* 2. catalogued banks against their files */
    each_bank(f.db, check_bank, &f);
    /* 3. files in the store: uncatalogued banks, leftover temporary uploads */
    snprintf(path, sizeof path, "%s/banks", f.state);
    DIR *d = opendir(path);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        char file[PATH_MAX + 256], id[72];
        snprintf(file, sizeof file, "%s/%s", path, e->d_name);
        if (e->d_name[0] == '.' && strstr(e->d_name, ".tmp")) {
            int fixed = f.repair && unlink(file) == 0;
            finding(&f, fixed, "a temporary upload %s%s left behind", file,
                    fixed ? " (removed)" : "");
            continue;
        }
        const char *dot = strstr(e->d_name, ".bank.safetensors");
        if (dot == NULL || (size_t)(dot - e->d_name) >= sizeof id)
            continue;
        snprintf(id, sizeof id, "%.*s", (int)(dot - e->d_name), e->d_name);
        if (!catalogued(f.db, id))
            finding(&f, 0, "bank file %s is in no catalog row (id %s)", file, id);
    }
    if (d)
        closedir(d);
    /* 4. jobs against the catalog and their directories */
    struct melbo_job *list = NULL;
    if (melbo_db_jobs_load(f.db, &list, &err) != 0)
        finding(&f, 0, "the job table cannot be read: %s%s", err.msg, "");
    struct melbo_jobs jobs;
    melbo_jobs_init(&jobs, f.db);
    jobs.list = list;
    for (struct melbo_job *j = list; j; j = j->next) {
        char jid[32], file[PATH_MAX + 64];
        snprintf(jid, sizeof jid, "%llu", (unsigned long long)j->id);
        if (j->bank_id[0] && !catalogued(f.db, j->bank_id))
            finding(&f, 0, "job %s names bank %s, which is not in the catalog", jid, j->bank_id);
        snprintf(file, sizeof file, "%s/jobs/%s/out.bank.safetensors", f.state, jid);
        if (j->bank_id[0] || j->state == MELBO__JOB_STATE__DONE || access(file, R_OK) != 0)
            continue;
        int fixed = 0;
        char id[72];
        if (f.repair && melbo_bank_adopt(f.state, f.db, j, file, id, sizeof id, &err) == 0) {
            snprintf(j->bank_id, sizeof j->bank_id, "%s", id);
            fixed = (j->state == MELBO__JOB_STATE__FAILED
                         ? melbo_job_rescue(&jobs, j, "bank adopted by melbo-coord fsck")
                         : melbo_job_set_state(&jobs, j, MELBO__JOB_STATE__DONE,
                                               "bank adopted by melbo-coord fsck", NULL)) == 0;
        }
        finding(&f, fixed, "job %s is not DONE but its finished bank waits in %s", jid, file);
    }
    melbo_jobs_free(&jobs);
    sqlite3_close(f.db);
    printf("melbo-coord fsck: %s: %d problem(s)%s, %d repaired\n", f.state, f.problems,
           f.repair || f.problems == 0 ? "" : " (--repair fixes what can be fixed)", f.repaired);
    return f.problems ? 1 : 0;
}
