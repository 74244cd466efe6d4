/*
 * tests/faults/failwrite.c - an LD_PRELOAD shim that makes the disk "full" for one directory,
 * for the fault-injection tests (label faults): SQLite, stdio and plain write() in any process
 * that has it preloaded get ENOSPC for files under that directory, as they would on a full
 * file system, while everything else is written normally.
 *
 * Contract (read from the environment once, when the shim is loaded):
 *   MELBO_FAIL_WRITE_DIR=DIR    required; files whose path (of the open descriptor, as
 *                               /proc/self/fd shows it) is DIR or below it are affected. DIR
 *                               is resolved with realpath at load, so symlinks in it are fine.
 *                               Unset or empty: the shim does nothing at all.
 *   MELBO_FAIL_WRITE_AFTER=N    the first N bytes written to affected files by this process
 *                               succeed (the write that crosses N is cut short, as a real disk
 *                               fills: a short count, then ENOSPC); default 0. Only bytes
 *                               written while the shim is active count.
 *   MELBO_FAIL_WRITE_WHEN=FILE  active only while FILE exists (checked on every call), so a
 *                               test turns the disk "full" and "free" at run time with touch
 *                               and rm; unset: always active.
 * What fails while active and the allowance is spent, with errno ENOSPC (posix_fallocate:
 * its return value): write, pwrite, pwrite64, writev, pwritev (these two all or nothing),
 * fsync, fdatasync, ftruncate (to grow a file), fallocate, posix_fallocate, and stdio on
 * affected streams: fwrite, fputs, fputc, fprintf, vfprintf (the stream's error flag is set),
 * fflush (which drops the buffered bytes, as the kernel would not take them) and fclose (the
 * file is still closed, its buffered bytes dropped, EOF returned). A stdio stream that glibc
 * flushes on its own when its buffer fills is flushed through glibc's internal write, which no
 * shim can see: the next fflush / fclose reports the failure instead. Callers built with
 * _FORTIFY_SOURCE call __fprintf_chk and friends, which are not wrapped either.
 * What is not touched: reads, open/creat (a full disk usually still lets a file be created),
 * rename, unlink, mkdir, mmap'd writes (SQLite does not use them unless mmap_size is set), and
 * files outside DIR. Each process counts its own bytes: children inherit the environment and
 * start from 0 (a parent that builds its children's environment from scratch, as the
 * coordinator's launchers do, drops LD_PRELOAD and the shim with it).
 *
 * Use (the library is $<TARGET_FILE:melbo_failwrite>, build/tests/faults/failwrite.so):
 *   LD_PRELOAD=build/tests/faults/failwrite.so MELBO_FAIL_WRITE_DIR=$state  *     MELBO_FAIL_WRITE_WHEN=$tmp/disk-full melbo-coord serve --state $state &
 *   touch $tmp/disk-full   # the state directory's disk is full from now on
 *   rm $tmp/disk-full      # and has room again
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static char dir_[PATH_MAX]; // resolved MELBO_FAIL_WRITE_DIR, "" when off
static size_t dir_len_;
static const char *when_; // MELBO_FAIL_WRITE_WHEN or NULL
static unsigned long long after_;
static atomic_ullong written_; // bytes let through to affected files while active

__attribute__((constructor)) static void failwrite_init(void) {
    const char *d = getenv("MELBO_FAIL_WRITE_DIR");
    if (d == NULL || *d == '\0' || realpath(d, dir_) == NULL) {
        dir_[0] = '\0';
        return;
    }
    dir_len_ = strlen(dir_);
    const char *a = getenv("MELBO_FAIL_WRITE_AFTER");
    after_ = a ? strtoull(a, NULL, 10) : 0;
    when_ = getenv("MELBO_FAIL_WRITE_WHEN");
    if (when_ && *when_ == '\0')
        when_ = NULL;
}

#define REAL(ret, name, ...)                                                                       \
    static ret (*real_##name)(__VA_ARGS__);                                                        \
    if (real_##name == NULL)                                                                       \
        real_##name = (ret(*)(__VA_ARGS__))dlsym(RTLD_NEXT, #name);

/* 1 when fd is a file under DIR and the disk is "full" now. */
static int affected(int fd) {
    if (dir_len_ == 0 || fd < 0)
        return 0;
    if (when_ && access(when_, F_OK) != 0)
        return 0;
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0)
        return 0;
    path[n] = '\0';
    return strncmp(path, dir_, dir_len_) == 0 && (path[dir_len_] == '/' || path[dir_len_] == '\0');
}

/*
 * How many of n bytes an affected write may still put on the "disk": all while under
 * MELBO_FAIL_WRITE_AFTER, a short count at the crossing, then 0. Reserves them.
 */
static size_t allowance(size_t n) {
    unsigned long long w = atomic_load(&written_);
    for (;;) {
        if (w >= after_)
            return 0;
        unsigned long long k = after_ - w < n ? after_ - w : n;
        if (atomic_compare_exchange_weak(&written_, &w, w + k))
            return (size_t)k;
    }
}

/* The allowance is spent: calls that need space but write no bytes (fsync, growing) fail. */
static int full(void) {
    return atomic_load(&written_) >= after_;
}

static ssize_t nospace(void) {
    errno = ENOSPC;
    return -1;
}

ssize_t write(int fd, const void *buf, size_t n) {
    REAL(ssize_t, write, int, const void *, size_t);
    if (n > 0 && affected(fd)) {
        size_t k = allowance(n);
        if (k == 0)
            return nospace();
        n = k;
    }
    return real_write(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
    REAL(ssize_t, pwrite, int, const void *, size_t, off_t);
    if (n > 0 && affected(fd)) {
        size_t k = allowance(n);
        if (k == 0)
            return nospace();
        n = k;
    }
    return real_pwrite(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off) {
    REAL(ssize_t, pwrite64, int, const void *, size_t, off64_t);
    if (n > 0 && affected(fd)) {
        size_t k = allowance(n);
        if (k == 0)
            return nospace();
        n = k;
    }
    return real_pwrite64(fd, buf, n, off);
}

/* The vectored writes: all or nothing (a short count would need splitting the vector). */
static int vec_blocked(int fd, const struct iovec *iov, int cnt) {
    size_t n = 0;
    for (int i = 0; i < cnt; i++)
        n += iov[i].iov_len;
    if (n == 0 || !affected(fd))
        return 0;
    if (allowance(n) == n)
        return 0;
    return 1;
}

ssize_t writev(int fd, const struct iovec *iov, int cnt) {
    REAL(ssize_t, writev, int, const struct iovec *, int);
    return vec_blocked(fd, iov, cnt) ? nospace() : real_writev(fd, iov, cnt);
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off) {
    REAL(ssize_t, pwritev, int, const struct iovec *, int, off_t);
    return vec_blocked(fd, iov, cnt) ? nospace() : real_pwritev(fd, iov, cnt, off);
}

int fsync(int fd) {
    REAL(int, fsync, int);
    return affected(fd) && full() ? (int)nospace() : real_fsync(fd);
}

int fdatasync(int fd) {
    REAL(int, fdatasync, int);
    return affected(fd) && full() ? (int)nospace() : real_fdatasync(fd);
}

/* Growing a file needs space; shrinking never does. */
static int grows(int fd, off_t len) {
    off_t end = lseek(fd, 0, SEEK_END);
    return end >= 0 && len > end;
}

int ftruncate(int fd, off_t len) {
    REAL(int, ftruncate, int, off_t);
    if (affected(fd) && grows(fd, len) && full())
        return (int)nospace();
    return real_ftruncate(fd, len);
}

int ftruncate64(int fd, off64_t len) {
    REAL(int, ftruncate64, int, off64_t);
    if (affected(fd) && grows(fd, (off_t)len) && full())
        return (int)nospace();
    return real_ftruncate64(fd, len);
}

int fallocate(int fd, int mode, off_t off, off_t len) {
    REAL(int, fallocate, int, int, off_t, off_t);
    if (len > 0 && affected(fd) && full())
        return (int)nospace();
    return real_fallocate(fd, mode, off, len);
}

int fallocate64(int fd, int mode, off64_t off, off64_t len) {
    REAL(int, fallocate64, int, int, off64_t, off64_t);
    if (len > 0 && affected(fd) && full())
        return (int)nospace();
    return real_fallocate64(fd, mode, off, len);
}

int posix_fallocate(int fd, off_t off, off_t len) {
    REAL(int, posix_fallocate, int, off_t, off_t);
    if (len > 0 && affected(fd) && full())
        return ENOSPC;
    return real_posix_fallocate(fd, off, len);
}

int posix_fallocate64(int fd, off64_t off, off64_t len) {
    REAL(int, posix_fallocate64, int, off64_t, off64_t);
    if (len > 0 && affected(fd) && full())
        return ENOSPC;
    return real_posix_fallocate64(fd, off, len);
}

/* ---- stdio: the stream fails as a whole (no short counts: the buffer hides them) ------------- */

static int stream_blocked(FILE *f, size_t n) {
    if (n == 0 || !affected(fileno(f)))
        return 0;
    if (allowance(n) == n)
        return 0;
    __fpurge(f);         /* what the kernel would not take is gone */
    f->_flags |= 0x0020; /* glibc's _IO_ERR_SEEN: ferror(f) is true, as after a failed flush */
    errno = ENOSPC;
    return 1;
}

size_t fwrite(const void *p, size_t size, size_t n, FILE *f) {
    REAL(size_t, fwrite, const void *, size_t, size_t, FILE *);
    return stream_blocked(f, size * n) ? 0 : real_fwrite(p, size, n, f);
}

int fputs(const char *s, FILE *f) {
    REAL(int, fputs, const char *, FILE *);
    return stream_blocked(f, strlen(s)) ? EOF : real_fputs(s, f);
}

int fputc(int c, FILE *f) {
    REAL(int, fputc, int, FILE *);
    return stream_blocked(f, 1) ? EOF : real_fputc(c, f);
}

int vfprintf(FILE *f, const char *fmt, va_list ap) {
    REAL(int, vfprintf, FILE *, const char *, va_list);
    va_list aq;
    va_copy(aq, ap);
    int n = vsnprintf(NULL, 0, fmt, aq);
    va_end(aq);
    return stream_blocked(f, n > 0 ? (size_t)n : 0) ? -1 : real_vfprintf(f, fmt, ap);
}

int fprintf(FILE *f, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int r = vfprintf(f, fmt, ap);
    va_end(ap);
    return r;
}

int fflush(FILE *f) {
    REAL(int, fflush, FILE *);
    if (f && __fpending(f) > 0 && stream_blocked(f, __fpending(f)))
        return EOF;
    return real_fflush(f);
}

int fclose(FILE *f) {
    REAL(int, fclose, FILE *);
    int blocked = __fpending(f) > 0 && stream_blocked(f, __fpending(f));
    int r = real_fclose(f);
    if (blocked) {
        errno = ENOSPC;
        return EOF;
    }
    return r;
}
