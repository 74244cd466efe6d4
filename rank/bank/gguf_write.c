/* rank/bank/gguf_write.c - the small GGUF v3 writer (rank/bank/gguf_write.h). */
#include "rank/bank/gguf_write.h"

#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "common/mem.h"

/* GGUF value types and the ggml tensor type used here (rank/model/gguf.h has the full lists). */
enum { GGUF_U32 = 4, GGUF_I32 = 5, GGUF_F32 = 6, GGUF_STRING = 8 };
enum { GGML_TYPE_F32 = 0 };

void melbo_gguf_writer_init(struct melbo_gguf_writer *w) {
    memset(w, 0, sizeof *w);
}

void melbo_gguf_writer_free(struct melbo_gguf_writer *w) {
    free(w->kv);
    for (int i = 0; i < w->n_tensors; i++)
        free(w->tensors[i].name);
    free(w->tensors);
    memset(w, 0, sizeof *w);
}

/* ---------------------------------------------------------------------------------------------
 * A growing byte buffer (the metadata section, then the whole file).
 */

struct buf {
    char *p;
    size_t len, cap;
};

static void put(struct buf *b, const void *data, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        b->p = melbo_xrealloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void put_u32(struct buf *b, uint32_t v) {
    put(b, &v, 4);
}
static void put_u64(struct buf *b, uint64_t v) {
    put(b, &v, 8);
}

static void put_str(struct buf *b, const char *s) {
    size_t n = strlen(s);
    put_u64(b, n);
    put(b, s, n);
}

static void put_zeros(struct buf *b, size_t n) {
    static const char zeros[MELBO_GGUF_WRITE_ALIGNMENT];
    while (n > 0) {
        size_t k = n < sizeof zeros ? n : sizeof zeros;
        put(b, zeros, k);
        n -= k;
    }
}

static size_t align_up(size_t n) {
    return (n + MELBO_GGUF_WRITE_ALIGNMENT - 1) / MELBO_GGUF_WRITE_ALIGNMENT *
           MELBO_GGUF_WRITE_ALIGNMENT;
}

/* ---------------------------------------------------------------------------------------------
 * Metadata and tensors.
 */

/* Appends key and the value's type to the metadata section; the caller appends the payload. */
static struct buf kv_begin(struct melbo_gguf_writer *w, const char *key, uint32_t type) {
    struct buf b = {w->kv, w->kv_len, w->kv_cap};
    put_str(&b, key);
    put_u32(&b, type);
    w->n_kv++;
    return b;
}

static void kv_end(struct melbo_gguf_writer *w, const struct buf *b) {
    w->kv = b->p;
    w->kv_len = b->len;
    w->kv_cap = b->cap;
}

void melbo_gguf_writer_str(struct melbo_gguf_writer *w, const char *key, const char *value) {
    struct buf b = kv_begin(w, key, GGUF_STRING);
    put_str(&b, value);
    kv_end(w, &b);
}

void melbo_gguf_writer_u32(struct melbo_gguf_writer *w, const char *key, uint32_t value) {
    struct buf b = kv_begin(w, key, GGUF_U32);
    put_u32(&b, value);
    kv_end(w, &b);
}

void melbo_gguf_writer_i32(struct melbo_gguf_writer *w, const char *key, int32_t value) {
    struct buf b = kv_begin(w, key, GGUF_I32);
    put(&b, &value, 4);
    kv_end(w, &b);
}

void melbo_gguf_writer_f32(struct melbo_gguf_writer *w, const char *key, float value) {
    struct buf b = kv_begin(w, key, GGUF_F32);
    put(&b, &value, 4);
    kv_end(w, &b);
}

void melbo_gguf_writer_tensor_f32(struct melbo_gguf_writer *w, const char *name, int ndim,
                                  const int64_t *ne, const float *data) {
    if (w->n_tensors == w->cap_tensors) {
        w->cap_tensors = w->cap_tensors ? 2 * w->cap_tensors : 4;
        w->tensors = melbo_xrealloc(w->tensors, sizeof *w->tensors * (size_t)w->cap_tensors);
    }
    struct melbo_gguf_wtensor *t = &w->tensors[w->n_tensors++];
    memset(t, 0, sizeof *t);
    t->name = melbo_xstrdup(name);
    t->ndim = ndim < 1 ? 1 : ndim > MELBO_GGUF_WRITE_MAX_DIMS ? MELBO_GGUF_WRITE_MAX_DIMS : ndim;
    for (int k = 0; k < t->ndim; k++)
        t->ne[k] = ne[k];
    t->data = data;
}

static size_t tensor_bytes(const struct melbo_gguf_wtensor *t) {
    size_t n = sizeof(float);
    for (int k = 0; k < t->ndim; k++)
        n *= (size_t)t->ne[k];
    return n;
}

void melbo_gguf_writer_serialize(const struct melbo_gguf_writer *w, char **out, size_t *len) {
    struct buf b = {0};
    put(&b, "GGUF", 4);
    put_u32(&b, 3);
    put_u64(&b, (uint64_t)w->n_tensors);
    put_u64(&b, w->n_kv);
    if (w->kv_len)
        put(&b, w->kv, w->kv_len);
    size_t offset = 0;
    for (int i = 0; i < w->n_tensors; i++) {
        const struct melbo_gguf_wtensor *t = &w->tensors[i];
        put_str(&b, t->name);
        put_u32(&b, (uint32_t)t->ndim);
        for (int k = 0; k < t->ndim; k++)
            put_u64(&b, (uint64_t)t->ne[k]);
        put_u32(&b, GGML_TYPE_F32);
        put_u64(&b, offset);
        offset += align_up(tensor_bytes(t));
    }
    put_zeros(&b, align_up(b.len) - b.len);
    for (int i = 0; i < w->n_tensors; i++) {
        size_t n = tensor_bytes(&w->tensors[i]);
        put(&b, w->tensors[i].data, n);
        put_zeros(&b, align_up(n) - n);
    }
    *out = b.p;
    *len = b.len;
}

int melbo_gguf_writer_write(const struct melbo_gguf_writer *w, const char *path,
                            struct melbo_err *err) {
    char *data = NULL;
    size_t len = 0;
    melbo_gguf_writer_serialize(w, &data, &len);
    int ret = melbo_file_write_atomic(path, data, len, err);
    free(data);
    return ret;
}
