/*
 * coord/tokens.c - user tokens: STATE/tokens (0600) holds one line "NAME SHA256HEX [admin]" per
 * user; the token itself is shown once (by init / token add / token rotate) and never stored.
 * Lookups re-read the file, so `melbo-coord token add|remove|rotate` takes effect at the next
 * authentication without a restart. Changes rewrite the file atomically (a 0600 temporary file,
 * fsync, rename) under an flock of STATE/tokens.lock. Comparisons are constant-time
 * (coord/tokens.h).
 */
#include "coord/tokens.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file.h"
#include "common/sha256.h"

int melbo_secret_equal(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = (unsigned char)(la != lb);
    for (size_t i = 0; i < la && i < lb; i++)
        diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

int melbo_random_hex(char *out, size_t n_bytes) {
    unsigned char buf[64];
    if (n_bytes > sizeof buf)
        return MELBO_ERANGE;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return MELBO_EIO;
    ssize_t got = read(fd, buf, n_bytes);
    close(fd);
    if (got != (ssize_t)n_bytes)
        return MELBO_EIO;
    for (size_t i = 0; i < n_bytes; i++)
        snprintf(out + 2 * i, 3, "%02x", buf[i]);
    return 0;
}

static void token_hash(const char *token, char hex[65]) {
    struct melbo_sha256 h;
    uint8_t d[32];
    melbo_sha256_init(&h);
    melbo_sha256_update(&h, token, strlen(token));
    melbo_sha256_final(&h, d);
    melbo_sha256_hex(d, hex);
}

int melbo_tokens_check_role(const char *state_dir, const char *token, char *user, size_t n,
                            int *admin) {
    char path[PATH_MAX], hex[65], line[512];
    if (token == NULL || token[0] == '\0' || strlen(token) > 256)
        return MELBO_EAUTH;
    if (melbo_path_join(path, sizeof path, state_dir, "tokens"))
        return MELBO_EAUTH;
    token_hash(token, hex);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return MELBO_EAUTH;
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        char name[128], h[128], role[32] = "";
        if (sscanf(line, "%127s %127s %31s", name, h, role) < 2 || name[0] == '#')
            continue;
        if (melbo_secret_equal(h, hex) && !found) {
            snprintf(user, n, "%s", name);
            if (admin)
                *admin = !strcmp(role, "admin");
            found = 1;
        }
    }
    fclose(f);
    return found ? 0 : MELBO_EAUTH;
}

int melbo_tokens_check(const char *state_dir, const char *token, char *user, size_t n) {
    return melbo_tokens_check_role(state_dir, token, user, n, NULL);
}

static int user_name_check(const char *user, struct melbo_err *err) {
    for (const char *p = user; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_' || *p == '.'))
            return melbo_err_set(err, MELBO_EINVAL,
                                 "user name '%.60s...': use letters, digits, '-', '_' and '.'",
                                 user);
    if (user[0] == '\0' || strlen(user) > 60)
        return melbo_err_set(err, MELBO_EINVAL, "user name must have 1 to 60 characters");
    return 0;
}

/* Writes text to path through a 0600 temporary file, fsync and rename. */
static int write_0600(const char *path, const char *text, size_t len, struct melbo_err *err) {
    char tmp[PATH_MAX + 16];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return melbo_err_set(err, MELBO_EIO, "cannot write %s: %s", tmp, strerror(errno));
    int ok = write(fd, text, len) == (ssize_t)len && fsync(fd) == 0;
    close(fd);
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return melbo_err_set(err, MELBO_EIO, "cannot write %s", path);
    }
    return 0;
}

int melbo_tokens_change(const char *state_dir, const char *user, enum melbo_token_change how,
                        char token_out[65], struct melbo_err *err) {
    char path[PATH_MAX], lock[PATH_MAX], hex[65] = "";
    MELBO_TRY(user_name_check(user, err));
    if (melbo_path_join(path, sizeof path, state_dir, "tokens") ||
        melbo_path_join(lock, sizeof lock, state_dir, "tokens.lock"))
        return melbo_err_set(err, MELBO_ERANGE, "state directory path too long");
    if (how != MELBO_TOKEN_REMOVE) {
        if (melbo_random_hex(token_out, 32) != 0)
            return melbo_err_set(err, MELBO_EIO, "cannot read /dev/urandom");
        token_hash(token_out, hex);
    }
    int lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lfd < 0 || flock(lfd, LOCK_EX) != 0) {
        if (lfd >= 0)
            close(lfd);
        return melbo_err_set(err, MELBO_EIO, "cannot lock %s: %s", lock, strerror(errno));
    }
    /* the file as it is, every line but user's kept; user's own line replaced or dropped */
    char *text = NULL, *out = NULL;
    size_t len = 0, o = 0;
    int had = 0, was_admin = 0, ret = 0;
    if (melbo_file_read(path, &text, &len, NULL) != 0) {
        text = NULL;
        len = 0;
    }
    out = malloc(len + 256);
    if (out == NULL) {
        ret = melbo_err_set(err, MELBO_ENOMEM, "out of memory");
        goto done;
    }
    for (char *p = text; p && *p;) {
        char *eol = strchr(p, '\n');
        size_t n = eol ? (size_t)(eol - p) : strlen(p);
        char name[128] = "", h[128], role[32] = "", line[512];
        snprintf(line, sizeof line, "%.*s", (int)(n < 511 ? n : 511), p);
        int mine = sscanf(line, "%127s %127s %31s", name, h, role) >= 2 && !strcmp(name, user);
        if (mine) {
            had = 1;
            was_admin |= !strcmp(role, "admin");
        } else if (n > 0) {
            memcpy(out + o, p, n);
            o += n;
            out[o++] = '\n';
        }
        p = eol ? eol + 1 : NULL;
    }
    if ((how == MELBO_TOKEN_ADD || how == MELBO_TOKEN_ADD_ADMIN) && had) {
        ret = melbo_err_set(err, MELBO_ESTATE,
                            "user %s already has a token (token rotate %s gives a new one)", user,
                            user);
        goto done;
    }
    if ((how == MELBO_TOKEN_REMOVE || how == MELBO_TOKEN_ROTATE) && !had) {
        ret = melbo_err_set(err, MELBO_ENOENT, "no user %s in %s", user, path);
        goto done;
    }
    int admin = how == MELBO_TOKEN_ADD_ADMIN || (how == MELBO_TOKEN_ROTATE && was_admin);
    if (how != MELBO_TOKEN_REMOVE)
        o += (size_t)snprintf(out + o, 256, "%s %s%s\n", user, hex, admin ? " admin" : "");
    ret = write_0600(path, out, o, err);
done:
    free(text);
    free(out);
    flock(lfd, LOCK_UN);
    close(lfd);
    return ret;
}

int melbo_tokens_add(const char *state_dir, const char *user, char token_out[65],
                     struct melbo_err *err) {
    return melbo_tokens_change(state_dir, user, MELBO_TOKEN_ADD, token_out, err);
}
