/*
 * rank/model/safetensors_write.h - writing a .safetensors file (banks, checkpoints, tests).
 *
 * Layout as the reference writer: "__metadata__" (string to string), tensors sorted by name with
 * contiguous data offsets, the header padded with spaces to a multiple of 8 so every tensor is
 * 8-byte aligned. The file is written atomically (common/file.h): it never exists half-written.
 *
 * Ownership: the writer borrows tensor data (it must stay valid until write returns) and copies
 * names, keys and values.
 */
#ifndef MELBO_RANK_MODEL_SAFETENSORS_WRITE_H
#define MELBO_RANK_MODEL_SAFETENSORS_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "rank/model/dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

struct melbo_st_writer {
    int n, cap;
    struct melbo_st_wtensor {
        char *name;
        enum melbo_dtype dtype;
        int ndim;
        int64_t shape[8];
        const void *data;
    } *tensors;
    int n_meta, cap_meta;
    char **keys, **values;
};

void melbo_st_writer_init(struct melbo_st_writer *w);
void melbo_st_writer_free(struct melbo_st_writer *w);
/* Adds a tensor; data holds numel * element-size bytes. A second tensor of the same name
 * replaces the first. */
void melbo_st_writer_add(struct melbo_st_writer *w, const char *name, enum melbo_dtype dtype,
                         int ndim, const int64_t *shape, const void *data);
/* Sets a metadata string (replacing an earlier value of the key). */
void melbo_st_writer_meta(struct melbo_st_writer *w, const char *key, const char *value);
/* Serialises into a new buffer (*out, caller frees) of *len bytes. */
void melbo_st_writer_serialize(const struct melbo_st_writer *w, char **out, size_t *len);
/* Serialises and writes path atomically. */
int melbo_st_writer_write(const struct melbo_st_writer *w, const char *path, struct melbo_err *err);

#ifdef __cplusplus
}
#endif
#endif
