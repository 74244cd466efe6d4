/*
 * coord/banks.c - the bank store (STATE/banks/ID.bank.safetensors) and its catalog row
 * (coord/banks.h).
 *
 * An upload from rank 0 is written to STATE/banks/.upload-JOB.tmp as chunks arrive; when the last
 * chunk comes, the size and sha256 are checked, the file is fsynced and renamed into place (a
 * bank never exists half-written), opened with rank/model/safetensors.h to check that it is a
 * melbo bank, and its metadata recorded in the catalog (model, fingerprint, layers, R, p, q,
 * vectors, user, time, prompts). A bank's id is the first 16 hex digits of its sha256.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coord/banks.h"

#include "common/file.h"
#include "common/log.h"
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
    const struct melbo_st_tensor *vt = melbo_st_find(&f, "vectors");
    b.bank_id = bank_id;
    b.has_job_id = 1, b.job_id = job->id;
    b.model = (char *)(melbo_st_meta(&f, "model_name") ? melbo_st_meta(&f, "model_name") : "");
    b.fingerprint = (char *)(melbo_st_meta(&f, "model_fingerprint") ? melbo_st_meta(&f, "model_fingerprint") : "");
    b.source_layer = meta_int(&f, "source_layer");
    b.target_layer = meta_int(&f, "target_layer");
    b.radius = meta_double(&f, "radius");
    b.p = meta_double(&f, "p");
    b.q = meta_double(&f, "q");
    b.vectors = vt && vt->ndim == 2 ? (int)vt->shape[0] : 0;
    b.d_model = meta_int(&f, "d_model");
    b.steps = meta_int(&f, "steps");
    b.user = (char *)job->user;
    b.created = melbo_coord_now();
    b.prompts = (char *)(melbo_st_meta(&f, "prompts") ? melbo_st_meta(&f, "prompts") : "[]");
    b.size = f.size;
    b.sha256 = hex;
    if (melbo_db_bank_insert(db, &b, path) != 0) {
        ret = melbo_err_set(err, MELBO_EIO, "cannot record the bank in the catalog");
        goto fail_stored;
    }
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
