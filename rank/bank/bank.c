/* rank/bank/bank.c - opening and checking a bank file (rank/bank/bank.h). */
#include "rank/bank/bank.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"

const char *melbo_bank_kind_name(enum melbo_bank_kind kind) {
    return kind == MELBO_BANK_KIND_ADAPTER ? "adapter" : "vector";
}

const char *melbo_bank_meta(const struct melbo_bank *b, const char *key) {
    return melbo_st_meta(&b->f, key);
}

/* 1 when p points into the file's mapping (else it is one of aligned_copy's copies). */
static int in_mapping(const struct melbo_st_file *f, const void *p) {
    const char *lo = f->map;
    return lo && (const char *)p >= lo && (const char *)p < lo + f->size;
}

void melbo_bank_close(struct melbo_bank *b) {
    for (int i = 0; i < b->f.n_tensors; i++)
        if (b->f.tensors[i].data && !in_mapping(&b->f, b->f.tensors[i].data))
            free((void *)b->f.tensors[i].data);
    melbo_st_close(&b->f);
    memset(b, 0, sizeof *b);
    b->source_layer = -1;
}

/* ---------------------------------------------------------------------------------------------
 * Checks, each naming the file and what it expected.
 */

/* "[2, 8, 160]" into buf. */
static const char *shape_str(const struct melbo_st_tensor *t, char *buf, size_t n) {
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int k = 0; k < t->ndim && o < n; k++)
        o += (size_t)snprintf(buf + o, n - o, "%s%lld", k ? ", " : "", (long long)t->shape[k]);
    if (o < n)
        snprintf(buf + o, n - o, "]");
    return buf;
}

/*
 * Safetensors aligns nothing: a writer that pads its header to other than a multiple of 4 bytes
 * (one space is enough) leaves the floats misaligned in the mapping, and every reader of
 * b->vectors and the rest loads them as floats. Such a tensor is copied once into memory of its
 * own (freed by melbo_bank_close: the copies are the data pointers outside the mapping).
 */
static void aligned_copy(const struct melbo_st_tensor *t) {
    if (t->nbytes == 0 || (uintptr_t)t->data % _Alignof(float) == 0)
        return;
    void *copy = melbo_xmalloc(t->nbytes);
    memcpy(copy, t->data, t->nbytes);
    ((struct melbo_st_tensor *)t)->data = copy; /* f.tensors is the bank's own, not const */
}

/*
 * The F32 tensor name with ndim dims; want[k] >= 0 must match, want[k] < 0 is free. Sets *t
 * (NULL when absent and optional). what describes the expected shape for the message.
 */
static int want_tensor(const struct melbo_bank *b, const char *name, int ndim, const int64_t *want,
                       int optional, const char *what, const struct melbo_st_tensor **t,
                       struct melbo_err *err) {
    const char *path = b->f.path;
    *t = melbo_st_find(&b->f, name);
    if (*t == NULL) {
        if (optional)
            return 0;
        return melbo_err_set(err, MELBO_EMISSING,
                             "%s: missing tensor '%s' (%s %s bank holds %s F32 %s)", path, name,
                             b->kind == MELBO_BANK_KIND_ADAPTER ? "an" : "a",
                             melbo_bank_kind_name(b->kind), name, what);
    }
    char got[96];
    int ok = (*t)->dtype == MELBO_DTYPE_F32 && (*t)->ndim == ndim;
    for (int k = 0; ok && k < ndim; k++)
        ok = want[k] < 0 || (*t)->shape[k] == want[k];
    if (!ok)
        return melbo_err_set(err, MELBO_ESHAPE, "%s: tensor '%s' is %s %s, expected F32 %s", path,
                             name, melbo_dtype_name((*t)->dtype), shape_str(*t, got, sizeof got),
                             what);
    aligned_copy(*t);
    return 0;
}

/* A whole number >= 0 from metadata key into *out; 0 (and *out untouched) when absent and
 * optional. */
static int meta_int(const struct melbo_bank *b, const char *key, int optional, int *out,
                    struct melbo_err *err) {
    const char *v = melbo_st_meta(&b->f, key);
    if (v == NULL) {
        if (optional)
            return 0;
        return melbo_err_set(err, MELBO_EMISSING, "%s: missing metadata '%s' (%s %s bank needs it)",
                             b->f.path, key, b->kind == MELBO_BANK_KIND_ADAPTER ? "an" : "a",
                             melbo_bank_kind_name(b->kind));
    }
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < 0 || x > 1000000000)
        return melbo_err_set(err, MELBO_EFORMAT, "%s: metadata %s='%s' is not a whole number >= 0",
                             b->f.path, key, v);
    *out = (int)x;
    return 0;
}

/* format=melbo-bank, a format_version this reader knows, and the kind. */
static int check_header(struct melbo_bank *b, struct melbo_err *err) {
    const char *path = b->f.path, *fmt = melbo_st_meta(&b->f, "format");
    if (fmt == NULL || strcmp(fmt, "melbo-bank") != 0)
        return melbo_err_set(err, MELBO_EFORMAT,
                             "%s is not a melbo bank (its metadata has %s%s; a bank has "
                             "format=melbo-bank)",
                             path, fmt ? "format=" : "no format", fmt ? fmt : "");
    const char *ver = melbo_st_meta(&b->f, "format_version");
    if (ver == NULL)
        return melbo_err_set(err, MELBO_EMISSING, "%s: missing metadata 'format_version'", path);
    char *end;
    errno = 0;
    long v = strtol(ver, &end, 10);
    if (errno || end == ver || *end || v < 1)
        return melbo_err_set(err, MELBO_EFORMAT, "%s: format_version '%s' is not a version number",
                             path, ver);
    if (v > MELBO_BANK_READ_VERSION)
        return melbo_err_set(err, MELBO_EUNSUPPORTED,
                             "%s has bank format_version %ld, newer than this melbo reads (%d): "
                             "use a newer melbo",
                             path, v, MELBO_BANK_READ_VERSION);
    const char *kind = melbo_st_meta(&b->f, "kind");
    if (kind == NULL || !strcmp(kind, "vector"))
        b->kind = MELBO_BANK_KIND_VECTOR;
    else if (!strcmp(kind, "adapter"))
        b->kind = MELBO_BANK_KIND_ADAPTER;
    else
        return melbo_err_set(err, MELBO_EUNSUPPORTED,
                             "%s: unknown bank kind '%s' (this melbo reads vector and adapter "
                             "banks)",
                             path, kind);
    return 0;
}

/* objective (N, steps), the N and steps every other tensor is checked against. */
static int check_objective(struct melbo_bank *b, struct melbo_err *err) {
    const struct melbo_st_tensor *t;
    int64_t any[2] = {-1, -1};
    const char *what = b->kind == MELBO_BANK_KIND_ADAPTER ? "[K, steps]" : "[N, steps]";
    MELBO_TRY(want_tensor(b, "objective", 2, any, 0, what, &t, err));
    b->N = (int)t->shape[0];
    b->steps = (int)t->shape[1];
    b->objective = t->data;
    return 0;
}

static int check_vectors(struct melbo_bank *b, struct melbo_err *err) {
    const struct melbo_st_tensor *t;
    int64_t vs[2] = {b->N, -1};
    MELBO_TRY(want_tensor(b, "vectors", 2, vs, 0, "[N, d] (N as objective's)", &t, err));
    b->d = (int)t->shape[1];
    b->vectors = t->data;
    int64_t rs[2] = {-1, b->d};
    MELBO_TRY(want_tensor(b, "random_vectors", 2, rs, 1, "[Kr, d]", &t, err));
    if (t) {
        b->random_vectors = t->data;
        b->n_random = (int)t->shape[0];
    }
    return 0;
}

static int check_adapters(struct melbo_bank *b, struct melbo_err *err) {
    const char *path = b->f.path;
    MELBO_TRY(meta_int(b, "adapter_rank", 0, &b->rank, err));
    MELBO_TRY(meta_int(b, "d_model", 0, &b->d, err));
    MELBO_TRY(meta_int(b, "d_mlp", 0, &b->d_mlp, err));
    if (b->rank < 1 || b->d < 1 || b->d_mlp < 1)
        return melbo_err_set(err, MELBO_EFORMAT,
                             "%s: adapter_rank %d, d_model %d and d_mlp %d must be positive", path,
                             b->rank, b->d, b->d_mlp);
    const char *alpha = melbo_st_meta(&b->f, "adapter_alpha");
    char *end = NULL;
    b->alpha = alpha ? strtod(alpha, &end) : NAN;
    if (alpha == NULL)
        return melbo_err_set(err, MELBO_EMISSING, "%s: missing metadata 'adapter_alpha'", path);
    if (end == alpha || *end || !isfinite(b->alpha) || b->alpha <= 0)
        return melbo_err_set(err, MELBO_EFORMAT,
                             "%s: adapter_alpha '%s' is not a finite number > 0", path, alpha);
    b->module = melbo_st_meta(&b->f, "adapter_module");
    if (b->module == NULL)
        return melbo_err_set(err, MELBO_EMISSING, "%s: missing metadata 'adapter_module'", path);
    const struct melbo_st_tensor *ta, *tb;
    int64_t as[3] = {b->N, b->rank, b->d_mlp}, bs[3] = {b->N, b->d, b->rank};
    char wa[96], wb[96];
    snprintf(wa, sizeof wa, "[K, r, d_mlp] = [%d, %d, %d]", b->N, b->rank, b->d_mlp);
    snprintf(wb, sizeof wb, "[K, d, r] = [%d, %d, %d]", b->N, b->d, b->rank);
    MELBO_TRY(want_tensor(b, "lora_A", 3, as, 0, wa, &ta, err));
    MELBO_TRY(want_tensor(b, "lora_B", 3, bs, 0, wb, &tb, err));
    b->lora_A = ta->data;
    b->lora_B = tb->data;
    as[0] = bs[0] = -1;
    snprintf(wa, sizeof wa, "[Kr, r, d_mlp] = [Kr, %d, %d]", b->rank, b->d_mlp);
    snprintf(wb, sizeof wb, "[Kr, d, r] = [Kr, %d, %d]", b->d, b->rank);
    MELBO_TRY(want_tensor(b, "random_lora_A", 3, as, 1, wa, &ta, err));
    MELBO_TRY(want_tensor(b, "random_lora_B", 3, bs, 1, wb, &tb, err));
    if ((ta == NULL) != (tb == NULL) || (ta && ta->shape[0] != tb->shape[0]))
        return melbo_err_set(err, MELBO_ESHAPE,
                             "%s: random_lora_A and random_lora_B must come together, with as many "
                             "adapters each",
                             path);
    if (ta) {
        b->random_A = ta->data;
        b->random_B = tb->data;
        b->n_random = (int)ta->shape[0];
    }
    if (melbo_st_find(&b->f, "vectors"))
        return melbo_err_set(err, MELBO_EFORMAT,
                             "%s: an adapter bank holds no 'vectors' tensor (is kind=adapter "
                             "right?)",
                             path);
    return 0;
}

int melbo_bank_open(struct melbo_bank *b, const char *path, struct melbo_err *err) {
    memset(b, 0, sizeof *b);
    b->source_layer = -1;
    int ret = melbo_st_open(&b->f, path, err);
    if (ret == MELBO_EFORMAT || ret == MELBO_EUNSUPPORTED)
        melbo_err_prefix(err, "%s is not a melbo bank (not a readable safetensors file)", path);
    if (ret)
        return ret;
    ret = check_header(b, err);
    if (ret == 0)
        ret = check_objective(b, err);
    if (ret == 0)
        ret = b->kind == MELBO_BANK_KIND_ADAPTER ? check_adapters(b, err) : check_vectors(b, err);
    if (ret == 0)
        ret = meta_int(b, "source_layer", 1, &b->source_layer, err);
    if (ret)
        melbo_bank_close(b);
    return ret;
}

/* ---------------------------------------------------------------------------------------------
 * Accessors.
 */

const float *melbo_bank_lora_A(const struct melbo_bank *b, int k, int random) {
    const float *base = random ? b->random_A : b->lora_A;
    return base + (size_t)k * b->rank * b->d_mlp;
}

const float *melbo_bank_lora_B(const struct melbo_bank *b, int k, int random) {
    const float *base = random ? b->random_B : b->lora_B;
    return base + (size_t)k * b->d * b->rank;
}

int melbo_bank_from_gguf(const struct melbo_bank *b) {
    if (b->module && !strcmp(b->module, "ffn_down"))
        return 1;
    const char *name = melbo_st_meta(&b->f, "model_name");
    size_t n = name ? strlen(name) : 0;
    return n >= 5 && !strcmp(name + n - 5, ".gguf");
}
