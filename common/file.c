/* common/file.c - whole-file reads and atomic writes (common/file.h). */
#include "common/file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/mem.h"

int melbo_file_read(const char *path, char **out, size_t *len, struct melbo_err *err) {
    int ret = 0;
    char *buf = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return melbo_err_set(err, errno == ENOENT ? MELBO_ENOENT : MELBO_EIO, "cannot open %s: %s",
                             path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ret = melbo_err_set(err, MELBO_EIO, "%s is not a readable regular file", path);
        goto out;
    }
    size_t n = (size_t)st.st_size, got = 0;
    buf = melbo_xmalloc(n + 1);
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            ret = melbo_err_set(err, MELBO_EIO, "cannot read %s: %s", path,
                                r < 0 ? strerror(errno) : "unexpected end of file");
            goto out;
        }
        got += (size_t)r;
    }
    buf[n] = '\0';
    *out = buf;
    buf = NULL;
    if (len)
        *len = n;
out:
    free(buf);
    close(fd);
    return ret;
}

int melbo_file_write_atomic(const char *path, const void *data, size_t len, struct melbo_err *err) {
    int ret = 0, fd = -1;
    size_t n = strlen(path);
    char *tmp = melbo_xmalloc(n + 32);
    snprintf(tmp, n + 32, "%s.tmp.%ld", path, (long)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        ret = melbo_err_set(err, MELBO_EIO, "cannot create %s: %s", tmp, strerror(errno));
        goto out;
    }
    const char *p = data;
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(fd, p + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            ret = melbo_err_set(err, MELBO_EIO, "cannot write %s: %s", tmp, strerror(errno));
            goto out_unlink;
        }
        done += (size_t)w;
    }
    if (fsync(fd) != 0) {
        ret = melbo_err_set(err, MELBO_EIO, "cannot fsync %s: %s", tmp, strerror(errno));
        goto out_unlink;
    }
    close(fd);
    fd = -1;
    if (rename(tmp, path) != 0) {
        ret = melbo_err_set(err, MELBO_EIO, "cannot rename %s to %s: %s", tmp, path,
                            strerror(errno));
        goto out_unlink;
    }
    /* Make the rename itself durable. */
    char *dcopy = melbo_xstrdup(path);
    int dfd = open(dirname(dcopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(dcopy);
    goto out;
out_unlink:
    unlink(tmp);
out:
    if (fd >= 0)
        close(fd);
    free(tmp);
    return ret;
}

int melbo_file_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int melbo_path_join(char *buf, size_t n, const char *dir, const char *name) {
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/')
        dl--;
    int w = snprintf(buf, n, "%.*s/%s", (int)dl, dir, name);
    return (w < 0 || (size_t)w >= n) ? MELBO_ERANGE : 0;
}
