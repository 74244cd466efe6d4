/* rank/model/safetensors.c - mmap reader of rank/model/safetensors.h. */
#include "rank/model/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/mem.h"

int64_t melbo_st_numel(const struct melbo_st_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp(((const struct melbo_st_tensor *)a)->name,
                  ((const struct melbo_st_tensor *)b)->name);
}

static int cmp_begin(const void *a, const void *b) {
    const size_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

/* Reads a JSON number that must be a non-negative integer (exactly representable). */
static int json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v))
        return -1;
    double d = v->valuedouble;
    if (!(d >= 0) || d > 9007199254740992.0 || floor(d) != d)
        return -1;
    *out = (uint64_t)d;
    return 0;
}

/* Parses one tensor entry; base is the data buffer, blen its length. */
static int parse_tensor(const char *path, const cJSON *item, const unsigned char *base, size_t blen,
                        struct melbo_st_tensor *t, size_t *begin_out, struct melbo_err *err) {
    const char *name = item->string;
    if (!cJSON_IsObject(item))
        return melbo_err_set(err, MELBO_EFORMAT, "%s: tensor '%s': entry is not a JSON object",
                             path, name);
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsString(jd) || !cJSON_IsArray(js) || !cJSON_IsArray(jo) ||
        cJSON_GetArraySize(jo) != 2)
        return melbo_err_set(err, MELBO_EFORMAT,
                             "%s: tensor '%s': needs \"dtype\" (string), \"shape\" (array) and "
                             "\"data_offsets\" ([begin, end])",
                             path, name);
    int dt = melbo_dtype_parse(jd->valuestring);
    if (dt < 0)
        return melbo_err_set(err, MELBO_EUNSUPPORTED,
                             "%s: tensor '%s': unknown or unsupported dtype \"%s\"", path, name,
                             jd->valuestring);
    t->dtype = (enum melbo_dtype)dt;
    t->ndim = cJSON_GetArraySize(js);
    if (t->ndim > MELBO_ST_MAX_DIMS)
        return melbo_err_set(err, MELBO_EFORMAT, "%s: tensor '%s': %d dimensions (at most %d)",
                             path, name, t->ndim, MELBO_ST_MAX_DIMS);
    uint64_t numel = 1;
    for (int i = 0; i < t->ndim; i++) {
        uint64_t d;
        if (json_uint(cJSON_GetArrayItem(js, i), &d) != 0 || d > ((uint64_t)1 << 40))
            return melbo_err_set(err, MELBO_EFORMAT, "%s: tensor '%s': invalid shape entry %d",
                                 path, name, i);
        t->shape[i] = (int64_t)d;
        numel *= d;
        if (numel > ((uint64_t)1 << 44))
            return melbo_err_set(err, MELBO_EFORMAT, "%s: tensor '%s': shape too large", path,
                                 name);
    }
    uint64_t b, e;
    if (json_uint(cJSON_GetArrayItem(jo, 0), &b) != 0 ||
        json_uint(cJSON_GetArrayItem(jo, 1), &e) != 0 || e < b)
        return melbo_err_set(err, MELBO_EFORMAT, "%s: tensor '%s': invalid data_offsets", path,
                             name);
    if (e > blen)
        return melbo_err_set(err, MELBO_EFORMAT,
                             "%s: tensor '%s': data_offsets end %llu is past the end of the data "
                             "(%zu bytes; file truncated?)",
                             path, name, (unsigned long long)e, blen);
    if (e - b != numel * melbo_dtype_size(t->dtype))
        return melbo_err_set(err, MELBO_EFORMAT,
                             "%s: tensor '%s': %llu data bytes but shape and dtype %s need %llu",
                             path, name, (unsigned long long)(e - b), melbo_dtype_name(t->dtype),
                             (unsigned long long)(numel * melbo_dtype_size(t->dtype)));
    t->nbytes = (size_t)(e - b);
    t->data = base + b;
    *begin_out = (size_t)b;
    return 0;
}

/* Maps path whole into f->map (f->size its length); the descriptor is closed again. */
static int map_file(struct melbo_st_file *f, const char *path, struct melbo_err *err) {
    int ret = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return melbo_err_set(err, errno == ENOENT ? MELBO_ENOENT : MELBO_EIO, "cannot open %s: %s",
                             path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        ret = melbo_err_set(err, MELBO_EIO, "cannot stat %s: %s", path, strerror(errno));
        goto out;
    }
    f->size = (size_t)st.st_size;
    if (f->size < 8) {
        ret = melbo_err_set(err, MELBO_EFORMAT,
                            "%s: truncated safetensors file (%zu bytes, the header length alone "
                            "needs 8)",
                            path, f->size);
        goto out;
    }
    f->map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        ret = melbo_err_set(err, MELBO_EIO, "cannot mmap %s: %s", path, strerror(errno));
    }
out:
    close(fd);
    return ret;
}

/*
 * Parses the header of the mapped file: the 8-byte length *hlen (inside the file) and the strict
 * JSON object after it (nothing but whitespace or NULs after the object). *root receives the
 * object, owned by the caller (also on error, when it may be NULL).
 */
static int parse_header(const struct melbo_st_file *f, const char *path, cJSON **root,
                        uint64_t *hlen, struct melbo_err *err) {
    const unsigned char *bytes = f->map;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | bytes[i];
    *hlen = n;
    if (n > MELBO_ST_MAX_HEADER || n > f->size - 8)
        return melbo_err_set(err, MELBO_EFORMAT,
                             "%s: its header length is past the end of the file: truncated or "
                             "not a safetensors file",
                             path); /* no value read from the file: it may be anyone's */
    const char *hdr = (const char *)bytes + 8;
    if (n == 0 || hdr[0] != '{')
        return melbo_err_set(err, MELBO_EFORMAT, "%s: header does not start with '{'", path);
    const char *endp = NULL;
    *root = cJSON_ParseWithLengthOpts(hdr, (size_t)n, &endp, 0);
    if (*root == NULL || !cJSON_IsObject(*root))
        return melbo_err_set(err, MELBO_EFORMAT, "%s: invalid header JSON: not a safetensors file",
                             path);
    for (const char *p = endp; p && p < hdr + n; p++)
        if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t' && *p != '\0')
            return melbo_err_set(err, MELBO_EFORMAT, "%s: trailing bytes after the header JSON",
                                 path);
    return 0;
}

/* Copies the "__metadata__" object item (string values only, one per file) into f. */
static int read_metadata(struct melbo_st_file *f, const char *path, const cJSON *item,
                         struct melbo_err *err) {
    if (f->meta_keys)
        return melbo_err_set(err, MELBO_EFORMAT, "%s: duplicate __metadata__", path);
    int m = cJSON_GetArraySize(item);
    f->meta_keys = melbo_xcalloc((size_t)m + 1, sizeof(char *));
    f->meta_values = melbo_xcalloc((size_t)m + 1, sizeof(char *));
    const cJSON *kv;
    cJSON_ArrayForEach(kv, item) {
        if (!cJSON_IsString(kv))
            return melbo_err_set(err, MELBO_EFORMAT,
                                 "%s: __metadata__ value of '%s' is not a string", path,
                                 kv->string);
        f->meta_keys[f->n_meta] = melbo_xstrdup(kv->string);
        f->meta_values[f->n_meta++] = melbo_xstrdup(kv->valuestring);
    }
    return 0;
}

/*
 * Reads every entry of the header object root into f: the metadata, and each tensor (in header
 * order, f->tensors allocated here) with its byte range [begin, end) of the data buffer (base,
 * blen bytes) into ranges[2 i], ranges[2 i + 1] (room for every entry).
 */
static int read_entries(struct melbo_st_file *f, const char *path, const cJSON *root,
                        const unsigned char *base, size_t blen, size_t *ranges,
                        struct melbo_err *err) {
    const cJSON *item;
    cJSON_ArrayForEach(item, root) {
        if (strcmp(item->string, "__metadata__") == 0) {
            MELBO_TRY(read_metadata(f, path, item, err));
            continue;
        }
        struct melbo_st_tensor *t = &f->tensors[f->n_tensors];
        size_t begin = 0;
        int ret = parse_tensor(path, item, base, blen, t, &begin, err);
        if (ret)
            return ret;
        t->name = melbo_xstrdup(item->string);
        ranges[2 * f->n_tensors] = begin;
        ranges[2 * f->n_tensors + 1] = begin + t->nbytes;
        f->n_tensors++;
    }
    return 0;
}

/*
 * Sorts f's tensors by name and refuses a name given twice; then checks that the byte ranges
 * (ranges, as read_entries fills it) tile the buffer exactly: sorted, contiguous from 0 to blen.
 */
static int check_tensors(struct melbo_st_file *f, const char *path, size_t *ranges, size_t blen,
                         struct melbo_err *err) {
    qsort(f->tensors, (size_t)f->n_tensors, sizeof *f->tensors, cmp_tensor_name);
    for (int i = 1; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i - 1].name, f->tensors[i].name) == 0)
            return melbo_err_set(err, MELBO_EFORMAT, "%s: duplicate tensor name '%s'", path,
                                 f->tensors[i].name);
    qsort(ranges, (size_t)f->n_tensors, 2 * sizeof *ranges, cmp_begin);
    size_t pos = 0;
    for (int i = 0; i < f->n_tensors; i++) {
        if (ranges[2 * i] != pos)
            return melbo_err_set(err, MELBO_EFORMAT,
                                 "%s: tensor data ranges overlap or leave a hole at byte %zu", path,
                                 pos);
        pos = ranges[2 * i + 1];
    }
    if (pos != blen)
        return melbo_err_set(err, MELBO_EFORMAT,
                             "%s: %zu bytes of data after the last tensor (the buffer must be "
                             "entirely indexed)",
                             path, blen - pos);
    return 0;
}

int melbo_st_open(struct melbo_st_file *f, const char *path, struct melbo_err *err) {
    cJSON *root = NULL;
    size_t *ranges = NULL;
    uint64_t hlen = 0;
    memset(f, 0, sizeof *f);
    f->path = melbo_xstrdup(path);
    int ret = map_file(f, path, err);
    if (ret == 0)
        ret = parse_header(f, path, &root, &hlen, err);
    if (ret == 0) {
        const unsigned char *base = (const unsigned char *)f->map + 8 + hlen;
        size_t blen = f->size - 8 - (size_t)hlen;
        int n = cJSON_GetArraySize(root);
        f->tensors = melbo_xcalloc((size_t)n + 1, sizeof *f->tensors);
        ranges = melbo_xcalloc((size_t)n + 1, 2 * sizeof *ranges);
        ret = read_entries(f, path, root, base, blen, ranges, err);
        if (ret == 0)
            ret = check_tensors(f, path, ranges, blen, err);
    }
    if (ret)
        melbo_st_close(f);
    free(ranges);
    cJSON_Delete(root);
    return ret;
}

void melbo_st_close(struct melbo_st_file *f) {
    if (f->map)
        munmap(f->map, f->size);
    for (int i = 0; i < f->n_tensors; i++)
        free(f->tensors[i].name);
    free(f->tensors);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->meta_keys);
    free(f->meta_values);
    free(f->path);
    memset(f, 0, sizeof *f);
}

const struct melbo_st_tensor *melbo_st_find(const struct melbo_st_file *f, const char *name) {
    int lo = 0, hi = f->n_tensors - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        int c = strcmp(f->tensors[mid].name, name);
        if (c == 0)
            return &f->tensors[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}

const char *melbo_st_meta(const struct melbo_st_file *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0)
            return f->meta_values[i];
    return NULL;
}
