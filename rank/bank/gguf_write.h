/*
 * rank/bank/gguf_write.h - writing a small GGUF file (llama.cpp's container) for the exporters:
 * LoRA adapters now, control vectors later. rank/model/gguf.h is the reader.
 *
 * Layout (ggml docs/gguf.md, version 3, little-endian), as gguf-py's GGUFWriter writes it: magic
 * "GGUF", u32 version 3, u64 tensor count, u64 metadata count; the metadata pairs in the order
 * they were added (key: u64 length + bytes; value: u32 type + payload); the tensor infos in the
 * order they were added (name, u32 n_dims, u64 ne[n_dims] with ne[0] the row length, u32 ggml
 * type, u64 offset into the data section); zero padding to the alignment (32, the default, so
 * no general.alignment key is written); each tensor's bytes, zero-padded to the alignment.
 *
 * Only what the exporters need: string, u32, i32 and f32 values and F32 tensors. The host is
 * assumed little-endian (as the reader and every platform melbo builds on).
 *
 * Ownership: the writer copies keys, names and strings; it borrows tensor data, which must stay
 * valid until melbo_gguf_writer_write (or _serialize) returns.
 */
#ifndef MELBO_RANK_BANK_GGUF_WRITE_H
#define MELBO_RANK_BANK_GGUF_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MELBO_GGUF_WRITE_ALIGNMENT 32
#define MELBO_GGUF_WRITE_MAX_DIMS  4

struct melbo_gguf_writer {
    uint64_t n_kv;
    char *kv; // the serialised metadata pairs, owned
    size_t kv_len, kv_cap;
    int n_tensors, cap_tensors;
    struct melbo_gguf_wtensor {
        char *name; // owned
        int ndim;
        int64_t ne[MELBO_GGUF_WRITE_MAX_DIMS]; // ne[0] = row length (fastest)
        const float *data;                     // borrowed: prod(ne) F32 values
    } * tensors;
};

void melbo_gguf_writer_init(struct melbo_gguf_writer *w);
void melbo_gguf_writer_free(struct melbo_gguf_writer *w);

/* Appends one metadata pair. Keys are not checked for duplicates: add each once. */
void melbo_gguf_writer_str(struct melbo_gguf_writer *w, const char *key, const char *value);
void melbo_gguf_writer_u32(struct melbo_gguf_writer *w, const char *key, uint32_t value);
void melbo_gguf_writer_i32(struct melbo_gguf_writer *w, const char *key, int32_t value);
void melbo_gguf_writer_f32(struct melbo_gguf_writer *w, const char *key, float value);

/* Appends an F32 tensor of ndim (1..4) dims ne (ne[0] the row length); data is borrowed. */
void melbo_gguf_writer_tensor_f32(struct melbo_gguf_writer *w, const char *name, int ndim,
                                  const int64_t *ne, const float *data);

/* The whole file in a new buffer (*out, caller frees) of *len bytes. */
void melbo_gguf_writer_serialize(const struct melbo_gguf_writer *w, char **out, size_t *len);

/* Serialises and writes path atomically (common/file.h). Returns 0 or MELBO_EIO. */
int melbo_gguf_writer_write(const struct melbo_gguf_writer *w, const char *path,
                            struct melbo_err *err);

#ifdef __cplusplus
}
#endif
#endif
