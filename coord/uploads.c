/* coord/uploads.c - uploaded job inputs (coord/uploads.h). */
#include "coord/uploads.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file.h"
#include "common/sha256.h"

struct upload {
    struct upload *next;
    uint64_t conn;
    char option[32];
    char path[PATH_MAX];
    int fd;                  // -1 once finished
    int done;
    uint64_t received, total;
    struct melbo_sha256 sha;
};

static struct upload *uploads; /* the coordinator has one loop thread: no lock */

static void drop(struct upload **pp) {
    struct upload *u = *pp;
    *pp = u->next;
    if (u->fd >= 0)
        close(u->fd);
    unlink(u->path);
    free(u);
}

/* Removes the uploads of connections that are gone. */
static void sweep(struct melbo_server *srv) {
    for (struct upload **pp = &uploads; *pp;)
        if (srv == NULL || melbo_server_find(srv, (*pp)->conn) == NULL)
            drop(pp);
        else
            pp = &(*pp)->next;
}

static struct upload **find(uint64_t conn, const char *option) {
    struct upload **pp = &uploads;
    while (*pp && ((*pp)->conn != conn || strcmp((*pp)->option, option) != 0))
        pp = &(*pp)->next;
    return pp;
}

void melbo_uploads_init(const char *state) {
    char dir[PATH_MAX], path[PATH_MAX];
    if (melbo_path_join(dir, sizeof dir, state, "uploads") != 0)
        return;
    mkdir(dir, 0700);
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        if (e->d_name[0] != '.' && melbo_path_join(path, sizeof path, dir, e->d_name) == 0)
            unlink(path);
    if (d)
        closedir(d);
}

int melbo_upload_chunk(struct melbo_server *srv, uint64_t conn, const char *state,
                       const struct melbo_coord_limits *lim, const Melbo__InputUpload *m,
                       uint64_t *received, struct melbo_err *err) {
    const char *opt = m->option ? m->option : "";
    sweep(srv);
    if (strcmp(opt, "init") != 0 && strcmp(opt, "calibration-init") != 0)
        return melbo_err_set(err, MELBO_EINVAL, "upload of '%.40s': only init and "
                             "calibration-init are uploaded", opt);
    struct upload **pp = find(conn, opt), *u = *pp;
    uint64_t off = m->has_offset ? m->offset : 0;
    if (off == 0) { /* a new upload replaces the connection's earlier one */
        if (u)
            drop(pp);
        if (!m->has_total_size)
            return melbo_err_set(err, MELBO_EINVAL, "--%s upload without total_size", opt);
        if (m->total_size > (uint64_t)lim->max_init_bytes)
            return melbo_err_set(err, MELBO_ERANGE, "--%s: %llu bytes: over %s = %lld", opt,
                                 (unsigned long long)m->total_size,
                                 MELBO_COORD_LIMIT_KEY(max_init_bytes),
                                 (long long)lim->max_init_bytes);
        u = calloc(1, sizeof *u);
        if (u == NULL)
            return melbo_err_set(err, MELBO_ENOMEM, "out of memory");
        u->conn = conn;
        snprintf(u->option, sizeof u->option, "%s", opt);
        u->total = m->total_size;
        melbo_sha256_init(&u->sha);
        char dir[PATH_MAX];
        melbo_path_join(dir, sizeof dir, state, "uploads");
        mkdir(dir, 0700);
        snprintf(u->path, sizeof u->path, "%s/%llu-%s.part", dir, (unsigned long long)conn, opt);
        unlink(u->path);
        u->fd = open(u->path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (u->fd < 0) {
            int e = errno;
            free(u);
            return melbo_err_set(err, MELBO_EIO, "cannot store the --%s upload: %s", opt,
                                 strerror(e));
        }
        u->next = uploads;
        uploads = u;
        pp = &uploads;
    } else if (u == NULL || u->done || off != u->received) {
        if (u)
            drop(pp);
        return melbo_err_set(err, MELBO_EINVAL, "--%s upload: chunk at offset %llu out of order",
                             opt, (unsigned long long)off);
    }
    size_t len = m->has_data ? m->data.len : 0;
    if (u->received + len > u->total) {
        drop(pp);
        return melbo_err_set(err, MELBO_ERANGE, "--%s upload: more bytes than its total_size",
                             opt);
    }
    for (size_t w = 0; w < len;) {
        ssize_t r = write(u->fd, m->data.data + w, len - w);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            drop(pp);
            return melbo_err_set(err, MELBO_EIO, "cannot store the --%s upload", opt);
        }
        w += (size_t)r;
    }
    melbo_sha256_update(&u->sha, m->data.data, len);
    u->received += len;
    *received = u->received;
    if (m->has_last && m->last) {
        uint8_t d[32];
        char hex[65];
        melbo_sha256_final(&u->sha, d);
        melbo_sha256_hex(d, hex);
        int bad = u->received != u->total || m->sha256 == NULL || strcmp(m->sha256, hex) != 0;
        if (bad || close(u->fd) != 0) {
            u->fd = -1;
            drop(pp);
            return melbo_err_set(err, MELBO_EINVAL, "--%s upload: %s", opt,
                                 bad ? "size or sha256 does not match" : "cannot store it");
        }
        u->fd = -1;
        u->done = 1;
    }
    return 0;
}

int melbo_upload_take(struct melbo_server *srv, uint64_t conn, const char *option, char *path,
                      size_t n, struct melbo_err *err) {
    sweep(srv);
    struct upload **pp = find(conn, option), *u = *pp;
    if (u == NULL || !u->done)
        return melbo_err_set(err, MELBO_EMISSING,
                             "--%s names an upload this connection has not finished", option);
    snprintf(path, n, "%s", u->path);
    *pp = u->next;
    free(u);
    return 0;
}
