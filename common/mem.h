/*
 * common/mem.h - allocation with a stated out-of-memory policy.
 *
 * melbo_xmalloc and friends never return NULL: on failure they print the size and the call
 * site and abort the process (a rank cannot continue without its buffers; under MPI the abort
 * takes the job down rather than leaving peers blocked). Code that must survive OOM (the
 * coordinator) uses plain malloc and returns MELBO_ENOMEM.
 */
#ifndef MELBO_COMMON_MEM_H
#define MELBO_COMMON_MEM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define melbo_xmalloc(n) melbo__xmalloc((n), __FILE__, __LINE__)
#define melbo_xcalloc(n, size) melbo__xcalloc((n), (size), __FILE__, __LINE__)
#define melbo_xrealloc(p, n) melbo__xrealloc((p), (n), __FILE__, __LINE__)
#define melbo_xstrdup(s) melbo__xstrdup((s), __FILE__, __LINE__)
/* 64-byte aligned, zeroed; free with free(). For tensors that BLAS and SIMD loops touch. */
#define melbo_xalloc_f32(n) melbo__xalloc_f32((n), __FILE__, __LINE__)

void *melbo__xmalloc(size_t n, const char *file, int line);
void *melbo__xcalloc(size_t n, size_t size, const char *file, int line);
void *melbo__xrealloc(void *p, size_t n, const char *file, int line);
char *melbo__xstrdup(const char *s, const char *file, int line);
float *melbo__xalloc_f32(size_t n, const char *file, int line);

#define MELBO_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#ifdef __cplusplus
}
#endif
#endif
