/* rank/model/safetensors_write.c - safetensors writer (rank/model/safetensors_write.h). */
#include "rank/model/safetensors_write.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "common/mem.h"

void melbo_st_writer_init(struct melbo_st_writer *w) { memset(w, 0, sizeof *w); }

void melbo_st_writer_free(struct melbo_st_writer *w) {
    for (int i = 0; i < w->n; i++)
        free(w->tensors[i].name);
    free(w->tensors);
    for (int i = 0; i < w->n_meta; i++) {
        free(w->keys[i]);
        free(w->values[i]);
    }
    free(w->keys);
    free(w->values);
    memset(w, 0, sizeof *w);
}

void melbo_st_writer_add(struct melbo_st_writer *w, const char *name, enum melbo_dtype dtype,
                         int ndim, const int64_t *shape, const void *data) {
    int i;
    for (i = 0; i < w->n; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            break;
    if (i == w->n) {
        if (w->n == w->cap) {
            w->cap = w->cap ? 2 * w->cap : 16;
            w->tensors = melbo_xrealloc(w->tensors, (size_t)w->cap * sizeof *w->tensors);
        }
        w->tensors[w->n++].name = melbo_xstrdup(name);
    }
    struct melbo_st_wtensor *t = &w->tensors[i];
    t->dtype = dtype;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->data = data;
}

void melbo_st_writer_meta(struct melbo_st_writer *w, const char *key, const char *value) {
    for (int i = 0; i < w->n_meta; i++)
        if (strcmp(w->keys[i], key) == 0) {
            free(w->values[i]);
            w->values[i] = melbo_xstrdup(value);
            return;
        }
    if (w->n_meta == w->cap_meta) {
        w->cap_meta = w->cap_meta ? 2 * w->cap_meta : 16;
        w->keys = melbo_xrealloc(w->keys, (size_t)w->cap_meta * sizeof *w->keys);
        w->values = melbo_xrealloc(w->values, (size_t)w->cap_meta * sizeof *w->values);
    }
    w->keys[w->n_meta] = melbo_xstrdup(key);
    w->values[w->n_meta++] = melbo_xstrdup(value);
}

static size_t tensor_bytes(const struct melbo_st_wtensor *t) {
    size_t n = melbo_dtype_size(t->dtype);
    for (int i = 0; i < t->ndim; i++)
        n *= (size_t)t->shape[i];
    return n;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp((*(const struct melbo_st_wtensor *const *)a)->name,
                  (*(const struct melbo_st_wtensor *const *)b)->name);
}

void melbo_st_writer_serialize(const struct melbo_st_writer *w, char **out, size_t *len) {
    const struct melbo_st_wtensor **order = melbo_xcalloc((size_t)w->n + 1, sizeof *order);
    for (int i = 0; i < w->n; i++)
        order[i] = &w->tensors[i];
    qsort(order, (size_t)w->n, sizeof *order, cmp_name);

    cJSON *root = cJSON_CreateObject();
    if (w->n_meta) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; i < w->n_meta; i++)
            cJSON_AddStringToObject(meta, w->keys[i], w->values[i]);
    }
    size_t off = 0;
    for (int i = 0; i < w->n; i++) {
        cJSON *t = cJSON_AddObjectToObject(root, order[i]->name);
        cJSON_AddStringToObject(t, "dtype", melbo_dtype_name(order[i]->dtype));
        cJSON *shape = cJSON_AddArrayToObject(t, "shape");
        for (int d = 0; d < order[i]->ndim; d++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)order[i]->shape[d]));
        cJSON *offs = cJSON_AddArrayToObject(t, "data_offsets");
        size_t nb = tensor_bytes(order[i]);
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + nb)));
        off += nb;
    }
    char *hdr = cJSON_PrintUnformatted(root);
    size_t hlen = strlen(hdr), padded = (hlen + 7) & ~(size_t)7;
    *len = 8 + padded + off;
    char *buf = melbo_xmalloc(*len);
    for (int i = 0; i < 8; i++)
        buf[i] = (char)((uint64_t)padded >> (8 * i));
    memcpy(buf + 8, hdr, hlen);
    memset(buf + 8 + hlen, ' ', padded - hlen);
    char *p = buf + 8 + padded;
    for (int i = 0; i < w->n; i++) {
        size_t nb = tensor_bytes(order[i]);
        if (nb)
            memcpy(p, order[i]->data, nb);
        p += nb;
    }
    free(hdr);
    cJSON_Delete(root);
    free(order);
    *out = buf;
}

int melbo_st_writer_write(const struct melbo_st_writer *w, const char *path, struct melbo_err *err) {
    char *buf = NULL;
    size_t len = 0;
    melbo_st_writer_serialize(w, &buf, &len);
    int ret = melbo_file_write_atomic(path, buf, len, err);
    free(buf);
    return ret;
}
