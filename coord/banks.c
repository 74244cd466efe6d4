/*
 * coord/banks.c - the bank store (STATE/banks/ID.bank.safetensors) and its catalog row
 * (coord/banks.h).
 *
 * An upload from rank 0 is written to STATE/banks/.upload-JOB.tmp as chunks arrive; when the last
 * chunk comes, the size and sha256 are checked, the file is fsynced and renamed into place (a
 * bank never exists half-written), opened with rank/model/safetensors.h to check that it is a
 * melbo bank, and its metadata recorded in the catalog (model, fingerprint, layers, R, p, q,
 * vectors, user, time, prompts; for an adapter bank its kind, rank, alpha, module and MLP width
 * instead of R). A bank's id is the first 16 hex digits of its sha256.
 *
 * Two kinds of bank (DESIGN §4): a vector bank (metadata kind=vector, or no kind: banks from
 * before adapters) holds `vectors` [K, d]; an adapter bank (kind=adapter) holds `lora_A`
 * [K, r, d_mlp] and `lora_B` [K, d, r], and its completions JSON lists them under "adapters"
 * instead of "vectors". Both hold `objective` [K, steps].
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <sys/statvfs.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coord/banks.h"

#include "common/file.h"
#include "common/log.h"
#include "coord/catalog.h"  // defines: melbo_catalog_index_bank
#include "coord/clock.h"  // defines: melbo_coord_now
#include "coord/db.h"     // defines: melbo_db_bank_insert
#include "rank/model/safetensors.h"

int melbo_bank_id_valid(const char *id) {
    size_t n = strlen(id);
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
            return 0;
    return 1;
}

int melbo_bank_path(const char *state_dir, const char *id, char *buf, size_t n) {
    if (!melbo_bank_id_valid(id))
        return MELBO_EINVAL;
    int w = snprintf(buf, n, "%s/banks/%s.bank.safetensors", state_dir, id);
    return w < 0 || (size_t)w >= n ? MELBO_ERANGE : 0;
}

static int meta_int(const struct melbo_st_file *f, const char *k) {
    const char *v = melbo_st_meta(f, k);
    return v ? atoi(v) : 0;
}

static double meta_double(const struct melbo_st_file *f, const char *k) {
    const char *v = melbo_st_meta(f, k);
    return v ? atof(v) : 0;
}

int melbo_bank_is_adapter(const struct melbo_st_file *f) {
    const char *kind = melbo_st_meta(f, "kind");
    return kind != NULL && strcmp(kind, "adapter") == 0;
}

/* The catalog fields of f read off its metadata and tensors into b (strings borrowed from f;
 * the caller sets the rest). */
static void bank_info_read(const struct melbo_st_file *f, Melbo__BankInfo *b) {
    const char *model = melbo_st_meta(f, "model_name"), *fp = melbo_st_meta(f, "model_fingerprint");
    b->model = (char *)(model ? model : "");
    b->fingerprint = (char *)(fp ? fp : "");
    b->has_source_layer = b->has_target_layer = b->has_p = b->has_q = 1;
    b->source_layer = meta_int(f, "source_layer");
    b->target_layer = meta_int(f, "target_layer");
    b->p = meta_double(f, "p");
    b->q = meta_double(f, "q");
    b->has_vectors = b->has_d_model = b->has_steps = 1;
    b->d_model = meta_int(f, "d_model");
    b->steps = meta_int(f, "steps");
    if (melbo_bank_is_adapter(f)) {
        const struct melbo_st_tensor *a = melbo_st_find(f, "lora_A");
        const char *module = melbo_st_meta(f, "adapter_module");
        b->kind = "adapter";
        b->vectors = a && a->ndim == 3 ? (int)a->shape[0] : 0;
        b->has_adapter_rank = b->has_adapter_alpha = b->has_d_mlp = 1;
        b->adapter_rank = meta_int(f, "adapter_rank");
        b->adapter_alpha = meta_double(f, "adapter_alpha");
        b->adapter_module = (char *)(module ? module : "");
        b->d_mlp = meta_int(f, "d_mlp");
    } else {
        const struct melbo_st_tensor *v = melbo_st_find(f, "vectors");
        b->kind = "vector";
        b->vectors = v && v->ndim == 2 ? (int)v->shape[0] : 0;
        b->has_radius = 1;
        b->radius = meta_double(f, "radius");
    }
}

void melbo_bank_upload_abort(struct melbo_bank_upload *up) {
    if (up->f == NULL)
        return;
    fclose(up->f);
    up->f = NULL;
    remove(up->path);
}

int melbo_bank_store(const char *state_dir, sqlite3 *db, struct melbo_bank_upload *up,
                     const struct melbo_job *job, const char *sha256_hex, char *bank_id, size_t n,
                     struct melbo_err *err) {
    struct melbo_st_file f;
    uint8_t d[32];
    char hex[65], path[PATH_MAX];
    int ret = 0;
    memset(&f, 0, sizeof f);
    melbo_sha256_final(&up->sha, d);
    melbo_sha256_hex(d, hex);
    if (sha256_hex == NULL || strcmp(hex, sha256_hex) != 0) {
        ret = melbo_err_set(err, MELBO_EFORMAT, "bank upload corrupted: sha256 %s, announced %s",
                            hex, sha256_hex ? sha256_hex : "(none)");
        goto fail;
    }
    if (fflush(up->f) != 0 || fsync(fileno(up->f)) != 0) {
        ret = melbo_err_set(err, MELBO_EIO, "cannot write %s", up->path);
        goto fail;
    }
    fclose(up->f);
    up->f = NULL;
    snprintf(bank_id, n, "%.16s", hex);
    if ((ret = melbo_bank_path(state_dir, bank_id, path, sizeof path)) != 0)
        goto fail;
    if (rename(up->path, path) != 0) {
        ret = melbo_err_set(err, MELBO_EIO, "cannot store the bank as %s", path);
        goto fail;
    }
    if ((ret = melbo_st_open(&f, path, err)) != 0)
        goto fail_stored;
    const char *fmt = melbo_st_meta(&f, "format");
    if (fmt == NULL || strcmp(fmt, "melbo-bank") != 0) {
        ret = melbo_err_set(err, MELBO_EFORMAT, "the uploaded file is not a melbo bank");
        goto fail_stored;
    }
    Melbo__BankInfo b = MELBO__BANK_INFO__INIT;
    bank_info_read(&f, &b);
    b.bank_id = bank_id;
    b.has_job_id = 1, b.job_id = job->id;
    b.user = (char *)job->user;
    b.created = melbo_coord_now();
    b.prompts = (char *)(melbo_st_meta(&f, "prompts") ? melbo_st_meta(&f, "prompts") : "[]");
    b.size = f.size;
    b.sha256 = hex;
    if (melbo_db_bank_insert(db, &b, path) != 0) {
        ret = melbo_err_set(err, MELBO_EIO, "cannot record the bank in the catalog");
        goto fail_stored;
    }
    melbo_catalog_index_bank(db, bank_id, &f, job);  // search, near, provenance (logged on failure)
    melbo_st_close(&f);
    melbo_log(MELBO_LOG_INFO, "coord: job %llu: bank %s stored (%zu bytes)",
              (unsigned long long)job->id, bank_id, (size_t)b.size);
    return 0;
fail_stored:
    melbo_st_close(&f);
    remove(path);
    return ret;
fail:
    if (up->f) {
        fclose(up->f);
        up->f = NULL;
    }
    remove(up->path);
    return ret;
}

/* The first line of s, at most 200 bytes, into buf (n bytes). */
static void first_line(const char *s, char *buf, size_t n) {
    size_t i = 0;
    while (s[i] && s[i] != '\n' && i + 1 < n && i < 200)
        i++;
    memcpy(buf, s, i);
    buf[i] = '\0';
}

int melbo_bank_rows_read(const char *state_dir, const char *bank_id, struct melbo_bank_rows *r) {
    struct melbo_st_file f;
    struct melbo_err err = {0};
    char path[PATH_MAX];
    int ret = 0;
    memset(r, 0, sizeof *r);
    memset(&f, 0, sizeof f);
    if (melbo_bank_path(state_dir, bank_id, path, sizeof path) != 0 ||
        melbo_st_open(&f, path, &err) != 0)
        return MELBO_ENOENT;
    r->adapter = melbo_bank_is_adapter(&f);
    const struct melbo_st_tensor *obj = melbo_st_find(&f, "objective");
    const char *cj = melbo_st_meta(&f, "completions");
    cJSON *comp = cj ? cJSON_Parse(cj) : NULL;
    cJSON *per = comp ? cJSON_GetObjectItem(comp, r->adapter ? "adapters" : "vectors") : NULL;
    size_t N = obj && obj->ndim == 2 && obj->dtype == MELBO_DTYPE_F32 ? (size_t)obj->shape[0] : 0;
    size_t S = N ? (size_t)obj->shape[1] : 0;
    r->rows = calloc(N + 1, sizeof *r->rows);
    r->ptrs = calloc(N + 1, sizeof *r->ptrs);
    r->lines = calloc(N + 1, sizeof *r->lines);
    if (r->rows == NULL || r->ptrs == NULL || r->lines == NULL) {
        ret = MELBO_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < N; i++) {
        Melbo__VectorRow *row = &r->rows[i];
        melbo__vector_row__init(row);
        row->has_index = row->has_objective = 1;
        row->index = (int)i;
        float v = 0;
        if (S > 0)
            memcpy(&v, (const char *)obj->data + (i * S + S - 1) * 4, 4);
        row->objective = v;
        cJSON *ci = per ? cJSON_GetArrayItem(per, (int)i) : NULL;
        cJSON *c0 = ci ? cJSON_GetArrayItem(ci, 0) : NULL;
        first_line(cJSON_IsString(c0) ? c0->valuestring : "", r->lines[i], sizeof r->lines[i]);
        row->completion = r->lines[i];
        r->ptrs[i] = row;
    }
    r->n = N;
out:
    if (ret)
        melbo_bank_rows_free(r);
    cJSON_Delete(comp);
    melbo_st_close(&f);
    return ret;
}

void melbo_bank_rows_free(struct melbo_bank_rows *r) {
    free(r->rows);
    free(r->ptrs);
    free(r->lines);
    memset(r, 0, sizeof *r);
}

int melbo_bank_adopt(const char *state_dir, sqlite3 *db, const struct melbo_job *job,
                     const char *file, char *bank_id, size_t n, struct melbo_err *err) {
    struct melbo_bank_upload up;
    char hex[65];
    uint8_t d[32], buf[1 << 16];
    memset(&up, 0, sizeof up);
    FILE *in = fopen(file, "rb");
    if (in == NULL)
        return melbo_err_set(err, MELBO_EIO, "cannot read %s", file);
    snprintf(up.path, sizeof up.path, "%s/banks/.adopt-%llu.tmp", state_dir,
             (unsigned long long)job->id);
    up.f = fopen(up.path, "wb");
    struct melbo_sha256 whole;
    melbo_sha256_init(&up.sha);
    melbo_sha256_init(&whole);
    size_t got;
    int ok = up.f != NULL;
    while (ok && (got = fread(buf, 1, sizeof buf, in)) > 0) {
        melbo_sha256_update(&up.sha, buf, got);
        melbo_sha256_update(&whole, buf, got);
        ok = fwrite(buf, 1, got, up.f) == got;
    }
    ok = ok && !ferror(in);
    fclose(in);
    if (!ok) {
        melbo_bank_upload_abort(&up);
        return melbo_err_set(err, MELBO_EIO, "cannot copy %s into the bank store", file);
    }
    melbo_sha256_final(&whole, d);
    melbo_sha256_hex(d, hex);
    return melbo_bank_store(state_dir, db, &up, job, hex, bank_id, n, err);
}

int melbo_disk_check(const char *state_dir, long long reserve_mb, unsigned long long need,
                     struct melbo_err *err) {
    struct statvfs v;
    if (reserve_mb <= 0 || statvfs(state_dir, &v) != 0)
        return 0; /* no reserve, or nothing to measure with: the writes themselves will tell */
    unsigned long long avail = (unsigned long long)v.f_bavail * v.f_frsize;
    if (avail >= need + (unsigned long long)reserve_mb * 1048576ull)
        return 0;
    if (need == 0)
        return melbo_err_set(err, MELBO_ERANGE,
                             "the coordinator's disk has %llu MB free, under limits.disk_reserve_mb "
                             "= %lld (coord.conf): nothing is accepted until room is made",
                             avail >> 20, reserve_mb);
    return melbo_err_set(err, MELBO_ERANGE,
                         "the coordinator's disk has %llu MB free; %llu MB more would leave less "
                         "than limits.disk_reserve_mb = %lld (coord.conf)",
                         avail >> 20, (need + 1048575ull) >> 20, reserve_mb);
}
