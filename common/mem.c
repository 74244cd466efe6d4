/* common/mem.c - the fatal-on-OOM allocators of common/mem.h. */
#include "common/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void melbo__oom(size_t n, const char *file, int line) {
    fprintf(stderr, "melbo: out of memory allocating %zu bytes at %s:%d\n", n, file, line);
    abort();
}

void *melbo__xmalloc(size_t n, const char *file, int line) {
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        melbo__oom(n, file, line);
    return p;
}

void *melbo__xcalloc(size_t n, size_t size, const char *file, int line) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        melbo__oom(n * size, file, line);
    return p;
}

void *melbo__xrealloc(void *p, size_t n, const char *file, int line) {
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        melbo__oom(n, file, line);
    return q;
}

char *melbo__xstrdup(const char *s, const char *file, int line) {
    size_t n = strlen(s) + 1;
    char *p = melbo__xmalloc(n, file, line);
    memcpy(p, s, n);
    return p;
}

float *melbo__xalloc_f32(size_t n, const char *file, int line) {
    size_t bytes = (n * sizeof(float) + 63) & ~(size_t)63;
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0)
        melbo__oom(bytes, file, line);
    memset(p, 0, bytes);
    return p;
}
