/*
 * rank/model/gguf.h - read-only view of one GGUF file (llama.cpp's model container) through mmap.
 *
 * Format (ggml docs/gguf.md), all little-endian: magic "GGUF", u32 version (2 or 3), u64 tensor
 * count, u64 metadata count; the metadata key/value pairs (key: u64 length + bytes; value: u32
 * type + payload; strings are u64 length + bytes, arrays u32 element type + u64 count +
 * elements, arrays of arrays allowed); the tensor infos (name, u32 n_dims, u64 ne[n_dims] with
 * ne[0] the fastest-varying dimension, i.e. the row length, u32 ggml type, u64 offset); padding
 * to `general.alignment` (default 32); the tensor data, each tensor's offset relative to the
 * start of that section and a multiple of the alignment.
 *
 * melbo validates everything it relies on before anything is read through it: the magic and
 * version, every length against the bytes left, every value type, unique keys and tensor names,
 * dims positive, a row length that is a whole number of quantisation blocks, offsets aligned and
 * every tensor's bytes inside the file. The first violation is reported with the file name, the
 * byte offset and the key or tensor concerned (MELBO_EFORMAT; MELBO_EUNSUPPORTED for a version
 * other than 2 or 3).
 *
 * Ownership: struct melbo_gguf_file owns the mapping and the tables; keys, names and the data
 * and string pointers point into the mapping and stay valid until melbo_gguf_close().
 */
#ifndef MELBO_RANK_MODEL_GGUF_H
#define MELBO_RANK_MODEL_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "rank/model/quant.h"

#ifdef __cplusplus
extern "C" {
#endif

enum melbo_gguf_vtype {
    MELBO_GGUF_U8 = 0,
    MELBO_GGUF_I8 = 1,
    MELBO_GGUF_U16 = 2,
    MELBO_GGUF_I16 = 3,
    MELBO_GGUF_U32 = 4,
    MELBO_GGUF_I32 = 5,
    MELBO_GGUF_F32 = 6,
    MELBO_GGUF_BOOL = 7,
    MELBO_GGUF_STRING = 8,
    MELBO_GGUF_ARRAY = 9,
    MELBO_GGUF_U64 = 10,
    MELBO_GGUF_I64 = 11,
    MELBO_GGUF_F64 = 12,
    MELBO_GGUF_VTYPE_COUNT
};

#define MELBO_GGUF_MAX_DIMS 4

/* One metadata pair. Scalars are decoded; strings and arrays point into the mapping. */
struct melbo_gguf_kv {
    char *key;                     // owned, NUL-terminated copy
    enum melbo_gguf_vtype type;
    enum melbo_gguf_vtype elem;    // arrays: the element type
    uint64_t n;                    // arrays: element count; strings: byte length
    const uint8_t *data;           // string bytes, or the first array element (raw)
    size_t nbytes;                 // bytes of the payload at data
    int64_t i;                     // integer and bool scalars (u64 above INT64_MAX: saturated)
    double f;                      // every numeric scalar, as a double
};

struct melbo_gguf_tensor {
    char *name;                    // owned, NUL-terminated copy
    int ndim;
    int64_t ne[MELBO_GGUF_MAX_DIMS];  // ne[0] = row length (fastest); unused dims are 1
    enum melbo_ggml_type type;
    uint64_t offset;               // relative to the data section
    size_t nbytes;                 // 0 when the type's block size is unknown to melbo
    const void *data;
};

struct melbo_gguf_file {
    char *path;                    // owned copy
    void *map;                     // whole file, PROT_READ
    size_t size;
    uint32_t version;
    int64_t n_kv;
    struct melbo_gguf_kv *kv;      // [n_kv], file order
    int64_t n_tensors;
    struct melbo_gguf_tensor *tensors;  // [n_tensors], file order
    struct melbo_gguf_tensor **by_name;  // [n_tensors] sorted by name
    size_t alignment;
    size_t info_end;               // end of the tensor-info table (the fingerprinted bytes)
    size_t data_off;               // start of the data section
};

/* Opens and validates path. On error *f is left empty (safe to close) and err names the problem. */
int melbo_gguf_open(struct melbo_gguf_file *f, const char *path, struct melbo_err *err);
void melbo_gguf_close(struct melbo_gguf_file *f);

/* 1 when path is a regular file that starts with the GGUF magic or whose name ends in ".gguf". */
int melbo_gguf_is_path(const char *path);

/* The pair called key, or NULL. */
const struct melbo_gguf_kv *melbo_gguf_find_kv(const struct melbo_gguf_file *f, const char *key);
/* The tensor called name, or NULL (binary search). */
const struct melbo_gguf_tensor *melbo_gguf_find(const struct melbo_gguf_file *f, const char *name);

/*
 * Typed getters for optional keys: 0 when absent (*out untouched), 1 when read, MELBO_EFORMAT
 * (err names the key and both types) when present with another type. get_int accepts every
 * integer type, get_float every numeric type, get_str only STRING (*out points into the map,
 * *len bytes, not NUL-terminated; len may be NULL).
 */
int melbo_gguf_get_int(const struct melbo_gguf_file *f, const char *key, int64_t *out,
                       struct melbo_err *err);
int melbo_gguf_get_float(const struct melbo_gguf_file *f, const char *key, double *out,
                         struct melbo_err *err);
int melbo_gguf_get_bool(const struct melbo_gguf_file *f, const char *key, int *out,
                        struct melbo_err *err);
int melbo_gguf_get_str(const struct melbo_gguf_file *f, const char *key, const char **out,
                       size_t *len, struct melbo_err *err);

/*
 * The elements of an array of strings: ptrs[k] / lens[k] for k < kv->n (arrays sized by the
 * caller). Returns 0, or MELBO_EFORMAT when kv is not an array of strings.
 */
int melbo_gguf_strings(const struct melbo_gguf_kv *kv, const char **ptrs, uint64_t *lens,
                       struct melbo_err *err);

/* Element k of a numeric array as a double (the array was validated at open). */
double melbo_gguf_array_num(const struct melbo_gguf_kv *kv, uint64_t k);

/* "U8", "STRING", ... */
const char *melbo_gguf_vtype_name(enum melbo_gguf_vtype t);

/*
 * DESIGN §4 model_fingerprint for a GGUF: lowercase hex sha256 of the file's bytes from the
 * magic to the end of the tensor-info table (the header, every metadata pair and every tensor's
 * name, shape, type and offset), so it changes with the metadata, the names, the shapes and the
 * quantisation but is cheap to compute. hex must hold 65 bytes.
 */
void melbo_gguf_fingerprint(const struct melbo_gguf_file *f, char hex[65]);

#ifdef __cplusplus
}
#endif
#endif
