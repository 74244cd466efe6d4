/*
 * tests/fuzz/fuzz.h - what the fuzz targets share: the parsers under test read paths, so an
 * input is written to a file first (one per process, under a private temporary directory on
 * TMPDIR, removed at exit), and inputs that carry several parts split on a separator.
 */
#ifndef MELBO_TESTS_FUZZ_FUZZ_H
#define MELBO_TESTS_FUZZ_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char fuzz_dir_[256];

static void fuzz_cleanup_(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fuzz_dir_);
    if (fuzz_dir_[0] && system(cmd) != 0)
        fprintf(stderr, "fuzz: could not remove %s\n", fuzz_dir_);
}

/* The private directory (made on first use). */
static const char *fuzz_dir(void) {
    if (!fuzz_dir_[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(fuzz_dir_, sizeof fuzz_dir_, "%s/melbo-fuzz-XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(fuzz_dir_)) {
            perror("fuzz: mkdtemp");
            abort();
        }
        atexit(fuzz_cleanup_);
    }
    return fuzz_dir_;
}

/* Writes n bytes to fuzz_dir()/name and returns the path (static storage, one per name slot). */
static const char *fuzz_file(const char *name, const void *data, size_t n) {
    static char paths[4][512];
    static int next;
    char *path = paths[next++ & 3];
    snprintf(path, 512, "%s/%s", fuzz_dir(), name);
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) {
        perror(path);
        abort();
    }
    return path;
}

/* A NUL-terminated copy of n bytes (caller frees). */
static char *fuzz_strndup(const void *data, size_t n) {
    char *s = malloc(n + 1);
    if (!s)
        abort();
    if (n)
        memcpy(s, data, n);
    s[n] = '\0';
    return s;
}

/*
 * Cuts [*data, *data + *n) at the first occurrence of sep: the part before it is returned in
 * *part / *part_n and *data / *n move past the separator (or to the end when there is none).
 * Returns 1 when the separator was found.
 */
static int fuzz_split(const uint8_t **data, size_t *n, const char *sep, const uint8_t **part,
                      size_t *part_n) {
    size_t k = strlen(sep);
    const uint8_t *p = *n >= k ? memmem(*data, *n, sep, k) : NULL;
    *part = *data;
    if (p == NULL) {
        *part_n = *n;
        *data += *n;
        *n = 0;
        return 0;
    }
    *part_n = (size_t)(p - *data);
    *n -= *part_n + k;
    *data = p + k;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
