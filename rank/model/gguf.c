/*
 * rank/model/gguf.c - the strict GGUF v2/v3 reader (rank/model/gguf.h).
 *
 * The file is mapped once; a cursor walks the header, the metadata and the tensor infos,
 * checking every length against the bytes that remain before it reads, so a truncated or
 * corrupt file is an error naming the byte offset and the item, never a read past the map.
 */
#include "rank/model/gguf.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/mem.h"
#include "common/sha256.h"

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_ARRAY_DEPTH 4

static const char *vtype_names[MELBO_GGUF_VTYPE_COUNT] = {
    "U8", "I8", "U16", "I16", "U32", "I32", "F32", "BOOL", "STRING", "ARRAY", "U64", "I64", "F64"};
static const size_t vtype_sizes[MELBO_GGUF_VTYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

const char *melbo_gguf_vtype_name(enum melbo_gguf_vtype t) {
    return (unsigned)t < MELBO_GGUF_VTYPE_COUNT ? vtype_names[t] : "unknown";
}

/* ---------------------------------------------------------------------------------------------
 * Cursor over the mapping.
 */

struct cur {
    const uint8_t *base;
    size_t size, pos;
    const char *path;
    struct melbo_err *err;
};

static int need(struct cur *c, size_t n, const char *what) {
    if (n > c->size - c->pos)
        return melbo_err_set(c->err, MELBO_EFORMAT,
                             "%s: truncated at byte %zu: %s needs %zu bytes, %zu remain", c->path,
                             c->pos, what, n, c->size - c->pos);
    return 0;
}

static uint64_t le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static int rd_u32(struct cur *c, uint32_t *v, const char *what) {
    int ret = need(c, 4, what);
    if (ret)
        return ret;
    *v = (uint32_t)le(c->base + c->pos, 4);
    c->pos += 4;
    return 0;
}

static int rd_u64(struct cur *c, uint64_t *v, const char *what) {
    int ret = need(c, 8, what);
    if (ret)
        return ret;
    *v = le(c->base + c->pos, 8);
    c->pos += 8;
    return 0;
}

/* A GGUF string: u64 length + bytes. *s points into the map. */
static int rd_str(struct cur *c, const uint8_t **s, uint64_t *len, const char *what) {
    int ret = rd_u64(c, len, what);
    if (ret)
        return ret;
    if (*len > c->size - c->pos)
        return melbo_err_set(c->err, MELBO_EFORMAT,
                             "%s: truncated at byte %zu: %s is a string of %llu bytes, %zu remain",
                             c->path, c->pos, what, (unsigned long long)*len, c->size - c->pos);
    *s = c->base + c->pos;
    c->pos += (size_t)*len;
    return 0;
}

static double num_at(enum melbo_gguf_vtype t, const uint8_t *p, int64_t *as_int) {
    uint64_t u = le(p, (int)vtype_sizes[t]);
    union { uint32_t u; float f; } f32;
    union { uint64_t u; double f; } f64;
    switch (t) {
    case MELBO_GGUF_U8: case MELBO_GGUF_U16: case MELBO_GGUF_U32: case MELBO_GGUF_BOOL:
        *as_int = (int64_t)u;
        return (double)u;
    case MELBO_GGUF_U64:
        *as_int = u > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)u;
        return (double)u;
    case MELBO_GGUF_I8: *as_int = (int8_t)u; return (double)*as_int;
    case MELBO_GGUF_I16: *as_int = (int16_t)u; return (double)*as_int;
    case MELBO_GGUF_I32: *as_int = (int32_t)u; return (double)*as_int;
    case MELBO_GGUF_I64: *as_int = (int64_t)u; return (double)*as_int;
    case MELBO_GGUF_F32: f32.u = (uint32_t)u; *as_int = 0; return f32.f;
    case MELBO_GGUF_F64: f64.u = u; *as_int = 0; return f64.f;
    default: *as_int = 0; return 0;
    }
}

/* Skips one value of type t (validating it); depth bounds nested arrays. */
static int skip_value(struct cur *c, uint32_t t, const char *key, int depth) {
    if (t >= MELBO_GGUF_VTYPE_COUNT)
        return melbo_err_set(c->err, MELBO_EFORMAT,
                             "%s: metadata '%s' has unknown value type %u (byte %zu)", c->path, key,
                             t, c->pos);
    if (t == MELBO_GGUF_STRING) {
        const uint8_t *s;
        uint64_t n;
        return rd_str(c, &s, &n, key);
    }
    if (t == MELBO_GGUF_ARRAY) {
        uint32_t et;
        uint64_t n;
        int ret;
        if (depth >= GGUF_MAX_ARRAY_DEPTH)
            return melbo_err_set(c->err, MELBO_EFORMAT, "%s: metadata '%s' nests arrays too deep",
                                 c->path, key);
        if ((ret = rd_u32(c, &et, key)) || (ret = rd_u64(c, &n, key)))
            return ret;
        if (et >= MELBO_GGUF_VTYPE_COUNT)
            return melbo_err_set(c->err, MELBO_EFORMAT,
                                 "%s: metadata '%s' is an array of unknown type %u", c->path, key,
                                 et);
        if (vtype_sizes[et]) {
            if (n > (c->size - c->pos) / vtype_sizes[et])
                return melbo_err_set(c->err, MELBO_EFORMAT,
                                     "%s: truncated at byte %zu: array '%s' of %llu %s needs more "
                                     "bytes than remain", c->path, c->pos, key,
                                     (unsigned long long)n, vtype_names[et]);
            c->pos += (size_t)n * vtype_sizes[et];
            return 0;
        }
        for (uint64_t i = 0; i < n; i++)
            if ((ret = skip_value(c, et, key, depth + 1)))
                return ret;
        return 0;
    }
    if (t == MELBO_GGUF_BOOL) {
        int ret = need(c, 1, key);
        if (ret)
            return ret;
        if (c->base[c->pos] > 1)
            return melbo_err_set(c->err, MELBO_EFORMAT, "%s: metadata '%s' is a bool of value %u",
                                 c->path, key, c->base[c->pos]);
    }
    int ret = need(c, vtype_sizes[t], key);
    if (ret)
        return ret;
    c->pos += vtype_sizes[t];
    return 0;
}

static int read_kv(struct cur *c, struct melbo_gguf_kv *kv, int64_t idx) {
    const uint8_t *k;
    uint64_t klen;
    uint32_t t;
    char what[64];
    snprintf(what, sizeof what, "the key of metadata pair %lld", (long long)idx);
    int ret = rd_str(c, &k, &klen, what);
    if (ret)
        return ret;
    kv->key = melbo_xmalloc((size_t)klen + 1);
    memcpy(kv->key, k, (size_t)klen);
    kv->key[klen] = '\0';
    if (klen == 0 || memchr(k, 0, (size_t)klen))
        return melbo_err_set(c->err, MELBO_EFORMAT, "%s: metadata pair %lld has an empty or "
                             "NUL-containing key", c->path, (long long)idx);
    if ((ret = rd_u32(c, &t, kv->key)))
        return ret;
    if (t >= MELBO_GGUF_VTYPE_COUNT)
        return melbo_err_set(c->err, MELBO_EFORMAT,
                             "%s: metadata '%s' has unknown value type %u (byte %zu)", c->path,
                             kv->key, t, c->pos - 4);
    kv->type = (enum melbo_gguf_vtype)t;
    size_t start = c->pos;
    if (t == MELBO_GGUF_ARRAY) {
        uint32_t et;
        uint64_t n;
        if ((ret = rd_u32(c, &et, kv->key)) || (ret = rd_u64(c, &n, kv->key)))
            return ret;
        c->pos = start;
        kv->elem = (enum melbo_gguf_vtype)et;
        kv->n = n;
        if ((ret = skip_value(c, t, kv->key, 0)))
            return ret;
        kv->data = c->base + start + 12;
        kv->nbytes = c->pos - start - 12;
        return 0;
    }
    if ((ret = skip_value(c, t, kv->key, 0)))
        return ret;
    if (t == MELBO_GGUF_STRING) {
        kv->data = c->base + start + 8;
        kv->n = le(c->base + start, 8);
        kv->nbytes = (size_t)kv->n;
        return 0;
    }
    kv->data = c->base + start;
    kv->nbytes = vtype_sizes[t];
    kv->f = num_at(kv->type, kv->data, &kv->i);
    return 0;
}

static int read_tensor_info(struct cur *c, struct melbo_gguf_tensor *t, int64_t idx) {
    const uint8_t *s;
    uint64_t len, v;
    uint32_t nd, type;
    char what[96];
    snprintf(what, sizeof what, "the name of tensor %lld", (long long)idx);
    int ret = rd_str(c, &s, &len, what);
    if (ret)
        return ret;
    t->name = melbo_xmalloc((size_t)len + 1);
    memcpy(t->name, s, (size_t)len);
    t->name[len] = '\0';
    if (len == 0 || memchr(s, 0, (size_t)len))
        return melbo_err_set(c->err, MELBO_EFORMAT, "%s: tensor %lld has an empty or "
                             "NUL-containing name", c->path, (long long)idx);
    if ((ret = rd_u32(c, &nd, t->name)))
        return ret;
    if (nd < 1 || nd > MELBO_GGUF_MAX_DIMS)
        return melbo_err_set(c->err, MELBO_EFORMAT, "%s: tensor '%s' has %u dimensions (1..%d)",
                             c->path, t->name, nd, MELBO_GGUF_MAX_DIMS);
    t->ndim = (int)nd;
    snprintf(what, sizeof what, "the shape, type and offset of tensor '%.40s'", t->name);
    int64_t numel = 1;
    for (int i = 0; i < MELBO_GGUF_MAX_DIMS; i++)
        t->ne[i] = 1;
    for (int i = 0; i < t->ndim; i++) {
        if ((ret = rd_u64(c, &v, what)))
            return ret;
        if (v == 0 || v > ((uint64_t)1 << 40) || numel > ((int64_t)1 << 48) / (int64_t)v)
            return melbo_err_set(c->err, MELBO_EFORMAT, "%s: tensor '%s' has dimension %d = %llu",
                                 c->path, t->name, i, (unsigned long long)v);
        t->ne[i] = (int64_t)v;
        numel *= (int64_t)v;
    }
    if ((ret = rd_u32(c, &type, what)) || (ret = rd_u64(c, &t->offset, what)))
        return ret;
    if (type >= MELBO_GGML_TYPE_LIMIT || !strcmp(melbo_ggml_type_name((int)type), "unknown"))
        return melbo_err_set(c->err, MELBO_EFORMAT, "%s: tensor '%s' has unknown ggml type %u",
                             c->path, t->name, type);
    t->type = (enum melbo_ggml_type)type;
    int64_t bv;
    size_t bb;
    melbo_ggml_block((int)type, &bv, &bb);
    if (bv > 0) {
        if (t->ne[0] % bv != 0)
            return melbo_err_set(c->err, MELBO_EFORMAT,
                                 "%s: tensor '%s' (%s) has rows of %lld values, not a multiple of "
                                 "its block size %lld", c->path, t->name,
                                 melbo_ggml_type_name((int)type), (long long)t->ne[0],
                                 (long long)bv);
        t->nbytes = (size_t)(numel / bv) * bb;
    }
    return 0;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp((*(struct melbo_gguf_tensor *const *)a)->name,
                  (*(struct melbo_gguf_tensor *const *)b)->name);
}

/* Parses everything after the mapping exists. */
static int parse(struct melbo_gguf_file *f, struct melbo_err *err) {
    struct cur c = {f->map, f->size, 0, f->path, err};
    uint64_t nt, nkv;
    int ret;
    if (f->size < 4 || memcmp(f->map, "GGUF", 4) != 0) {
        const uint8_t *m = f->map;
        return melbo_err_set(err, MELBO_EFORMAT,
                             "%s: not a GGUF file (bad magic %02x %02x %02x %02x, expected "
                             "\"GGUF\")",
                             f->path, f->size > 0 ? m[0] : 0, f->size > 1 ? m[1] : 0,
                             f->size > 2 ? m[2] : 0, f->size > 3 ? m[3] : 0);
    }
    c.pos = 4;
    if ((ret = rd_u32(&c, &f->version, "the version")))
        return ret;
    if (f->version != 2 && f->version != 3)
        return melbo_err_set(err, MELBO_EUNSUPPORTED,
                             "%s: GGUF version %u is not supported (melbo reads versions 2 and 3)",
                             f->path, f->version);
    if ((ret = rd_u64(&c, &nt, "the tensor count")) ||
        (ret = rd_u64(&c, &nkv, "the metadata count")))
        return ret;
    /* every pair takes at least 12 bytes, every tensor info at least 28 */
    if (nkv > f->size / 12 || nt > f->size / 28)
        return melbo_err_set(err, MELBO_EFORMAT,
                             "%s: truncated or corrupt: %llu metadata pairs and %llu tensors "
                             "cannot fit in %zu bytes",
                             f->path, (unsigned long long)nkv, (unsigned long long)nt, f->size);
    f->kv = melbo_xcalloc((size_t)nkv + 1, sizeof *f->kv);
    for (uint64_t i = 0; i < nkv; i++) {
        f->n_kv = (int64_t)i + 1;
        if ((ret = read_kv(&c, &f->kv[i], (int64_t)i)))
            return ret;
        for (uint64_t j = 0; j < i; j++)
            if (!strcmp(f->kv[j].key, f->kv[i].key))
                return melbo_err_set(err, MELBO_EFORMAT, "%s: metadata key '%s' appears twice",
                                     f->path, f->kv[i].key);
    }
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const struct melbo_gguf_kv *al = melbo_gguf_find_kv(f, "general.alignment");
    if (al) {
        if (al->type != MELBO_GGUF_U32 || al->i == 0 || (al->i & (al->i - 1)) != 0)
            return melbo_err_set(err, MELBO_EFORMAT,
                                 "%s: general.alignment must be a U32 power of two (got %s %lld)",
                                 f->path, melbo_gguf_vtype_name(al->type), (long long)al->i);
        f->alignment = (size_t)al->i;
    }
    f->tensors = melbo_xcalloc((size_t)nt + 1, sizeof *f->tensors);
    for (uint64_t i = 0; i < nt; i++) {
        f->n_tensors = (int64_t)i + 1;
        if ((ret = read_tensor_info(&c, &f->tensors[i], (int64_t)i)))
            return ret;
    }
    f->info_end = c.pos;
    f->data_off = (c.pos + f->alignment - 1) / f->alignment * f->alignment;
    if (f->data_off > f->size && nt > 0)
        return melbo_err_set(err, MELBO_EFORMAT,
                             "%s: truncated: the data section would start at byte %zu of %zu",
                             f->path, f->data_off, f->size);
    f->by_name = melbo_xcalloc((size_t)nt + 1, sizeof *f->by_name);
    for (int64_t i = 0; i < f->n_tensors; i++)
        f->by_name[i] = &f->tensors[i];
    qsort(f->by_name, (size_t)f->n_tensors, sizeof *f->by_name, cmp_name);
    for (int64_t i = 1; i < f->n_tensors; i++)
        if (!strcmp(f->by_name[i]->name, f->by_name[i - 1]->name))
            return melbo_err_set(err, MELBO_EFORMAT, "%s: tensor '%s' appears twice", f->path,
                                 f->by_name[i]->name);
    for (int64_t i = 0; i < f->n_tensors; i++) {
        struct melbo_gguf_tensor *t = &f->tensors[i];
        if (t->offset % f->alignment != 0)
            return melbo_err_set(err, MELBO_EFORMAT,
                                 "%s: tensor '%s' has offset %llu, not a multiple of the alignment "
                                 "%zu", f->path, t->name, (unsigned long long)t->offset,
                                 f->alignment);
        size_t room = f->size - f->data_off;
        if (t->offset > room || t->nbytes > room - t->offset)
            return melbo_err_set(err, MELBO_EFORMAT,
                                 "%s: tensor '%s' (offset %llu, %zu bytes) lies outside the file's "
                                 "%zu data bytes", f->path, t->name, (unsigned long long)t->offset,
                                 t->nbytes, room);
        t->data = (const uint8_t *)f->map + f->data_off + t->offset;
    }
    return 0;
}

int melbo_gguf_open(struct melbo_gguf_file *f, const char *path, struct melbo_err *err) {
    struct stat st;
    int ret = 0;
    memset(f, 0, sizeof *f);
    f->path = melbo_xstrdup(path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ret = melbo_err_set(err, MELBO_ENOENT, "cannot open %s", path);
        goto fail;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        ret = melbo_err_set(err, MELBO_EIO, "%s is not a regular file", path);
        goto fail;
    }
    f->size = (size_t)st.st_size;
    if (f->size == 0) {
        close(fd);
        ret = melbo_err_set(err, MELBO_EFORMAT, "%s: empty file (not a GGUF file)", path);
        goto fail;
    }
    f->map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        ret = melbo_err_set(err, MELBO_EIO, "cannot map %s", path);
        goto fail;
    }
    ret = parse(f, err);
    if (ret)
        goto fail;
    return 0;
fail:
    melbo_gguf_close(f);
    return ret;
}

void melbo_gguf_close(struct melbo_gguf_file *f) {
    for (int64_t i = 0; i < f->n_kv; i++)
        free(f->kv[i].key);
    for (int64_t i = 0; i < f->n_tensors; i++)
        free(f->tensors[i].name);
    free(f->kv);
    free(f->tensors);
    free(f->by_name);
    if (f->map)
        munmap(f->map, f->size);
    free(f->path);
    memset(f, 0, sizeof *f);
}

int melbo_gguf_is_path(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return 0;
    size_t n = strlen(path);
    if (n >= 5 && !strcmp(path + n - 5, ".gguf"))
        return 1;
    char magic[4];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t r = read(fd, magic, 4);
    close(fd);
    return r == 4 && !memcmp(magic, "GGUF", 4);
}

const struct melbo_gguf_kv *melbo_gguf_find_kv(const struct melbo_gguf_file *f, const char *key) {
    for (int64_t i = 0; i < f->n_kv; i++)
        if (!strcmp(f->kv[i].key, key))
            return &f->kv[i];
    return NULL;
}

const struct melbo_gguf_tensor *melbo_gguf_find(const struct melbo_gguf_file *f, const char *name) {
    int64_t lo = 0, hi = f->n_tensors;
    while (lo < hi) {
        int64_t mid = (lo + hi) / 2;
        int c = strcmp(f->by_name[mid]->name, name);
        if (c == 0)
            return f->by_name[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static int wrong_type(const struct melbo_gguf_file *f, const struct melbo_gguf_kv *kv,
                      const char *want, struct melbo_err *err) {
    return melbo_err_set(err, MELBO_EFORMAT, "%s: metadata '%s' is %s, expected %s", f->path,
                         kv->key, melbo_gguf_vtype_name(kv->type), want);
}

int melbo_gguf_get_int(const struct melbo_gguf_file *f, const char *key, int64_t *out,
                       struct melbo_err *err) {
    const struct melbo_gguf_kv *kv = melbo_gguf_find_kv(f, key);
    if (!kv)
        return 0;
    switch (kv->type) {
    case MELBO_GGUF_U8: case MELBO_GGUF_I8: case MELBO_GGUF_U16: case MELBO_GGUF_I16:
    case MELBO_GGUF_U32: case MELBO_GGUF_I32: case MELBO_GGUF_U64: case MELBO_GGUF_I64:
        *out = kv->i;
        return 1;
    default:
        return wrong_type(f, kv, "an integer", err);
    }
}

int melbo_gguf_get_float(const struct melbo_gguf_file *f, const char *key, double *out,
                         struct melbo_err *err) {
    const struct melbo_gguf_kv *kv = melbo_gguf_find_kv(f, key);
    if (!kv)
        return 0;
    if (kv->type == MELBO_GGUF_STRING || kv->type == MELBO_GGUF_ARRAY ||
        kv->type == MELBO_GGUF_BOOL)
        return wrong_type(f, kv, "a number", err);
    *out = kv->f;
    return 1;
}

int melbo_gguf_get_bool(const struct melbo_gguf_file *f, const char *key, int *out,
                        struct melbo_err *err) {
    const struct melbo_gguf_kv *kv = melbo_gguf_find_kv(f, key);
    if (!kv)
        return 0;
    if (kv->type != MELBO_GGUF_BOOL)
        return wrong_type(f, kv, "BOOL", err);
    *out = kv->i != 0;
    return 1;
}

int melbo_gguf_get_str(const struct melbo_gguf_file *f, const char *key, const char **out,
                       size_t *len, struct melbo_err *err) {
    const struct melbo_gguf_kv *kv = melbo_gguf_find_kv(f, key);
    if (!kv)
        return 0;
    if (kv->type != MELBO_GGUF_STRING)
        return wrong_type(f, kv, "STRING", err);
    *out = (const char *)kv->data;
    if (len)
        *len = (size_t)kv->n;
    return 1;
}

int melbo_gguf_strings(const struct melbo_gguf_kv *kv, const char **ptrs, uint64_t *lens,
                       struct melbo_err *err) {
    if (kv->type != MELBO_GGUF_ARRAY || kv->elem != MELBO_GGUF_STRING)
        return melbo_err_set(err, MELBO_EFORMAT, "metadata '%s' is not an array of strings",
                             kv->key);
    const uint8_t *p = kv->data;
    for (uint64_t k = 0; k < kv->n; k++) { /* lengths were checked at open */
        lens[k] = le(p, 8);
        ptrs[k] = (const char *)p + 8;
        p += 8 + lens[k];
    }
    return 0;
}

double melbo_gguf_array_num(const struct melbo_gguf_kv *kv, uint64_t k) {
    int64_t ignored;
    return num_at(kv->elem, kv->data + (size_t)k * vtype_sizes[kv->elem], &ignored);
}

void melbo_gguf_fingerprint(const struct melbo_gguf_file *f, char hex[65]) {
    struct melbo_sha256 h;
    uint8_t digest[32];
    melbo_sha256_init(&h);
    melbo_sha256_update(&h, f->map, f->info_end);
    melbo_sha256_final(&h, digest);
    melbo_sha256_hex(digest, hex);
}
