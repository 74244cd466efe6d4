/*
 * coord/tokens.c - user tokens: STATE/tokens (0600) holds one line "NAME SHA256HEX" per user; the
 * token itself is shown once (by init / token add) and never stored. Lookups re-read the file,
 * so `melbo-coord token add` takes effect without a restart. Comparisons are constant-time
 * (coord/tokens.h).
 */
#include "coord/tokens.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
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

int melbo_tokens_check(const char *state_dir, const char *token, char *user, size_t n) {
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
        char name[128], h[128];
        if (sscanf(line, "%127s %127s", name, h) != 2 || name[0] == '#')
            continue;
        if (melbo_secret_equal(h, hex) && !found) {
            snprintf(user, n, "%s", name);
            found = 1;
        }
    }
    fclose(f);
    return found ? 0 : MELBO_EAUTH;
}

int melbo_tokens_add(const char *state_dir, const char *user, char token_out[65],
                     struct melbo_err *err) {
    char path[PATH_MAX], hex[65];
    for (const char *p = user; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_' || *p == '.'))
            return melbo_err_set(err, MELBO_EINVAL,
                                 "user name '%s': use letters, digits, '-', '_' and '.'", user);
    if (user[0] == '\0' || strlen(user) > 60)
        return melbo_err_set(err, MELBO_EINVAL, "user name must have 1 to 60 characters");
    if (melbo_path_join(path, sizeof path, state_dir, "tokens"))
        return melbo_err_set(err, MELBO_ERANGE, "state directory path too long");
    if (melbo_random_hex(token_out, 32) != 0)
        return melbo_err_set(err, MELBO_EIO, "cannot read /dev/urandom");
    token_hash(token_out, hex);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return melbo_err_set(err, MELBO_EIO, "cannot open %s: %s", path, strerror(errno));
    fchmod(fd, 0600);
    char line[256];
    int len = snprintf(line, sizeof line, "%s %s\n", user, hex);
    int ok = write(fd, line, (size_t)len) == len && fsync(fd) == 0;
    close(fd);
    return ok ? 0 : melbo_err_set(err, MELBO_EIO, "cannot write %s", path);
}
