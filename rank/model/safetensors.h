/*
 * rank/model/safetensors.h - read-only view of one .safetensors file through mmap.
 *
 * Format (huggingface/safetensors README): an 8-byte little-endian header length N, N bytes of
 * JSON {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}, then
 * the byte buffer; offsets are relative to the buffer. melbo validates everything it relies on
 * (header inside the file, strict JSON, no duplicate names, known dtype, offsets inside the
 * buffer and matching numel * element size, offsets tiling the buffer) and reports the first
 * violation with the file name and the tensor it concerns.
 *
 * Ownership: struct melbo_st_file owns the mapping, the tensor table and the metadata; tensor
 * data pointers point into the mapping and stay valid until melbo_st_close().
 */
#ifndef MELBO_RANK_MODEL_SAFETENSORS_H
#define MELBO_RANK_MODEL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "rank/model/dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MELBO_ST_MAX_DIMS 8
#define MELBO_ST_MAX_HEADER 100000000u /* the reference implementation's MAX_HEADER_SIZE */

struct melbo_st_tensor {
    char *name;                       // owned
    enum melbo_dtype dtype;
    int ndim;
    int64_t shape[MELBO_ST_MAX_DIMS];
    size_t nbytes;
    const void *data;                 // into the mapping; any alignment
};

struct melbo_st_file {
    char *path;                       // owned copy
    void *map;                        // whole file, PROT_READ
    size_t size;                      // file size in bytes
    int n_tensors;
    struct melbo_st_tensor *tensors;  // [n_tensors], sorted by name
    int n_meta;
    char **meta_keys, **meta_values;  // [n_meta] each, owned
};

/* Opens and validates path. On error *f is left empty (safe to close) and err names the problem. */
int melbo_st_open(struct melbo_st_file *f, const char *path, struct melbo_err *err);
void melbo_st_close(struct melbo_st_file *f);

/* The tensor called name, or NULL. Binary search. */
const struct melbo_st_tensor *melbo_st_find(const struct melbo_st_file *f, const char *name);
/* The __metadata__ value for key, or NULL. */
const char *melbo_st_meta(const struct melbo_st_file *f, const char *key);
/* Product of the shape (1 for a 0-dim tensor). */
int64_t melbo_st_numel(const struct melbo_st_tensor *t);

#ifdef __cplusplus
}
#endif
#endif
