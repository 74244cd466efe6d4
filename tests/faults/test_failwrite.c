/*
 * tests/faults/test_failwrite.c - the failwrite shim's self-test (tests/faults/failwrite.c).
 *
 *   test_failwrite SHIM SCRATCH
 * runs itself once per scenario with LD_PRELOAD=SHIM and the shim's environment, on
 * SCRATCH/full (the "full" directory) and SCRATCH/out (never affected):
 *   off      no MELBO_FAIL_WRITE_DIR: nothing fails
 *   full     every kind of write under full/ fails with ENOSPC (plain, positioned, stdio, fsync,
 *            growing, allocating), SQLite says SQLITE_FULL, out/ is written normally
 *   after    MELBO_FAIL_WRITE_AFTER=10: 8 bytes, then a short write of 2, then ENOSPC
 *   when     MELBO_FAIL_WRITE_WHEN=out/disk-full: a SQLite database under full/ takes rows, is
 *            refused them (SQLITE_FULL) while the control file exists, takes them again once it
 *            is gone, and passes integrity_check with exactly the rows that were accepted
 */
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/test.h"

static char full_[4096], out_[4096];

static const char *in(const char *dir, const char *name) {
    static char buf[4][4200];
    static int k;
    char *p = buf[k++ & 3];
    snprintf(p, 4200, "%s/%s", dir, name);
    return p;
}

static int open_w(const char *path) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT(fd >= 0);
    return fd;
}

static long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static int sql(sqlite3 *db, const char *q) {
    char *msg = NULL;
    int rc = sqlite3_exec(db, q, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        fprintf(stderr, "  sqlite: %s -> %d (%s)\n", q, rc, msg ? msg : "?");
    sqlite3_free(msg);
    return rc;
}

static int scenario_off(void) {
    int fd = open_w(in(full_, "a"));
    ASSERT_EQ(write(fd, "hello", 5), 5);
    ASSERT_EQ(fsync(fd), 0);
    close(fd);
    return 0;
}

static int scenario_full(void) {
    int fd = open_w(in(full_, "a"));
    errno = 0;
    ASSERT_EQ(write(fd, "hello", 5), -1);
    ASSERT_EQ(errno, ENOSPC);
    ASSERT_EQ(pwrite(fd, "hello", 5, 0), -1);
    ASSERT_EQ(fsync(fd), -1);
    ASSERT_EQ(fdatasync(fd), -1);
    ASSERT_EQ(ftruncate(fd, 4096), -1);
    ASSERT_EQ(errno, ENOSPC);
    ASSERT_EQ(ftruncate(fd, 0), 0); // shrinking needs no space
    ASSERT_EQ(posix_fallocate(fd, 0, 4096), ENOSPC);
    close(fd);
    ASSERT_EQ(file_size(in(full_, "a")), 0);

    FILE *f = fopen(in(full_, "b"), "w");
    ASSERT(f != NULL);
    ASSERT(fprintf(f, "%d lines\n", 42) < 0);
    ASSERT_EQ(fwrite("xyz", 1, 3, f), 0u);
    ASSERT(ferror(f));
    clearerr(f);
    ASSERT_EQ(putc('x', f), 'x'); // buffered (no write yet): the close finds the disk full
    ASSERT_EQ(fclose(f), EOF);
    ASSERT_EQ(file_size(in(full_, "b")), 0);

    fd = open_w(in(out_, "a")); // outside the directory: untouched
    ASSERT_EQ(write(fd, "hello", 5), 5);
    ASSERT_EQ(fsync(fd), 0);
    close(fd);
    f = fopen(in(out_, "b"), "w");
    ASSERT(f != NULL && fprintf(f, "ok\n") == 3 && fclose(f) == 0);

    sqlite3 *db = NULL;
    ASSERT_EQ(sqlite3_open(in(full_, "db.sqlite"), &db), SQLITE_OK);
    int rc = sql(db, "CREATE TABLE t(x)");
    ASSERT(rc == SQLITE_FULL || (rc & 0xff) == SQLITE_IOERR);
    sqlite3_close(db);
    return 0;
}

static int scenario_after(void) {
    int fd = open_w(in(full_, "a"));
    ASSERT_EQ(write(fd, "12345678", 8), 8);
    ASSERT_EQ(write(fd, "abcdefgh", 8), 2); // the disk fills in the middle
    ASSERT_EQ(write(fd, "z", 1), -1);
    ASSERT_EQ(errno, ENOSPC);
    ASSERT_EQ(fsync(fd), -1);
    close(fd);
    ASSERT_EQ(file_size(in(full_, "a")), 10);
    return 0;
}

static long count_rows(sqlite3 *db) {
    sqlite3_stmt *st = NULL;
    long n = -1;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM t", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

static int scenario_when(void) {
    const char *ctl = in(out_, "disk-full");
    sqlite3 *db = NULL;
    ASSERT_EQ(sqlite3_open(in(full_, "db.sqlite"), &db), SQLITE_OK);
    ASSERT_EQ(sql(db, "CREATE TABLE t(x)"), SQLITE_OK);
    ASSERT_EQ(sql(db, "INSERT INTO t VALUES (1)"), SQLITE_OK);

    int fd = open_w(ctl); // the disk is full from now on
    close(fd);
    int rc = sql(db, "INSERT INTO t VALUES (zeroblob(100000))");
    ASSERT(rc == SQLITE_FULL || (rc & 0xff) == SQLITE_IOERR);
    fd = open_w(in(full_, "plain"));
    ASSERT_EQ(write(fd, "x", 1), -1);

    ASSERT_EQ(unlink(ctl), 0); // and free again
    ASSERT_EQ(write(fd, "x", 1), 1);
    close(fd);
    ASSERT_EQ(sql(db, "INSERT INTO t VALUES (3)"), SQLITE_OK);
    sqlite3_close(db);

    ASSERT_EQ(sqlite3_open(in(full_, "db.sqlite"), &db), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
    ASSERT(strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0);
    sqlite3_finalize(st);
    ASSERT_EQ(count_rows(db), 2); // the refused row is not there, the others are
    sqlite3_close(db);
    return 0;
}

/* Runs `self scenario NAME` with the shim preloaded and env (NULL-terminated KEY=VALUE list). */
static int run(const char *self, const char *shim, const char *name, const char *const *env) {
    pid_t pid = fork();
    if (pid == 0) {
        setenv("LD_PRELOAD", shim, 1);
        for (int i = 0; env[i]; i++)
            putenv((char *)env[i]);
        execl(self, self, "scenario", name, full_, out_, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    printf("failwrite %-6s %s\n", name, ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc == 5 && !strcmp(argv[1], "scenario")) {
        snprintf(full_, sizeof full_, "%s", argv[3]);
        snprintf(out_, sizeof out_, "%s", argv[4]);
        const char *s = argv[2];
        return !strcmp(s, "off")     ? scenario_off()
               : !strcmp(s, "full")  ? scenario_full()
               : !strcmp(s, "after") ? scenario_after()
                                     : scenario_when();
    }
    if (argc != 3) {
        fprintf(stderr, "usage: test_failwrite SHIM SCRATCH\n");
        return 2;
    }
    char cmd[8300];
    snprintf(full_, sizeof full_, "%s/full", argv[2]);
    snprintf(out_, sizeof out_, "%s/out", argv[2]);
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s' && mkdir -p '%s' '%s'", full_, out_, full_, out_);
    ASSERT_EQ(system(cmd), 0);
    static char dir_env[4200], when_env[4200];
    snprintf(dir_env, sizeof dir_env, "MELBO_FAIL_WRITE_DIR=%s", full_);
    snprintf(when_env, sizeof when_env, "MELBO_FAIL_WRITE_WHEN=%s/disk-full", out_);
    const char *off[] = {"MELBO_FAIL_WRITE_DIR=", NULL};
    const char *full[] = {dir_env, NULL};
    const char *after[] = {dir_env, "MELBO_FAIL_WRITE_AFTER=10", NULL};
    const char *when[] = {dir_env, when_env, NULL};
    int bad = run(argv[0], argv[1], "off", off) + run(argv[0], argv[1], "full", full) +
              run(argv[0], argv[1], "after", after) + run(argv[0], argv[1], "when", when);
    printf("%d passed, %d failed\n", 4 - bad, bad);
    return bad ? 1 : 0;
}
