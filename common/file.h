/*
 * common/file.h - whole-file reads and atomic writes.
 */
#ifndef MELBO_COMMON_FILE_H
#define MELBO_COMMON_FILE_H

#include <stddef.h>

#include "common/err.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Reads the whole file at path into a new NUL-terminated buffer (*out, owned by the caller,
 * free()) of *len bytes (the terminator not counted). Returns 0 or MELBO_ENOENT/MELBO_EIO with
 * a message naming the path.
 */
int melbo_file_read(const char *path, char **out, size_t *len, struct melbo_err *err);

/*
 * Writes len bytes to path atomically: a temporary file in the same directory, fsync, rename,
 * fsync of the directory. The file never exists half-written. Returns 0 or MELBO_EIO.
 */
int melbo_file_write_atomic(const char *path, const void *data, size_t len, struct melbo_err *err);

/* 1 if path names an existing directory, else 0. */
int melbo_file_is_dir(const char *path);

/* Joins dir and name with one '/' into buf (size n). Returns 0, or MELBO_ERANGE if too long. */
int melbo_path_join(char *buf, size_t n, const char *dir, const char *name);

#ifdef __cplusplus
}
#endif
#endif
