/*
 * coord/banks.h - the bank store (STATE/banks/ID.bank.safetensors) and its catalog rows
 * (coord/banks.c).
 *
 * An upload from rank 0 is written to STATE/banks/.upload-JOB.tmp as chunks arrive (struct
 * melbo_bank_upload, held by the rank's connection); when the last chunk comes, its sha256 is
 * checked, the file is fsynced and renamed into place (a bank never exists half-written), opened
 * to check that it is a melbo bank, and its metadata recorded in the catalog. A bank's id is the
 * first 16 hex digits of its sha256.
 *
 * Layer: above job.h and db.h; included by client.h's handlers and main.c.
 */
#ifndef MELBO_COORD_BANKS_H
#define MELBO_COORD_BANKS_H

#include <limits.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>

#include "common/err.h"
#include "common/sha256.h"
#include "coord/job.h"  // defines: struct melbo_job
#include "proto/melbo.pb-c.h"
#include "rank/model/safetensors.h"

/* A bank upload in progress. Zeroed = none. */
struct melbo_bank_upload {
    FILE *f;                         // the temporary file, or NULL
    char path[PATH_MAX];             // its name
    uint64_t off;                    // bytes written so far
    struct melbo_sha256 sha;         // of those bytes
};

/* Closes and removes an upload's temporary file, if any (a connection that went away). */
void melbo_bank_upload_abort(struct melbo_bank_upload *up);

/*
 * Finishes up (all chunks written): checks the sha256 against sha256_hex, stores the file as
 * STATE/banks/ID.bank.safetensors under state_dir, checks that it is a melbo bank and records it
 * in the catalog of db as job's. Writes the id (16 hex digits) into bank_id (n bytes). Returns 0,
 * or a negative code with the reason in err; either way up->f is closed, and on failure the
 * temporary file (or the stored bank) is removed.
 */
int melbo_bank_store(const char *state_dir, sqlite3 *db, struct melbo_bank_upload *up,
                     const struct melbo_job *job, const char *sha256_hex, char *bank_id, size_t n,
                     struct melbo_err *err);

/*
 * Stores the finished bank at file (a job's out.bank.safetensors that was never uploaded: rank
 * 0 gave up waiting) as job's, exactly as an upload would (copied into the store, checked,
 * catalogued); bank_id as melbo_bank_store. The file itself is left in place.
 */
int melbo_bank_adopt(const char *state_dir, sqlite3 *db, const struct melbo_job *job,
                     const char *file, char *bank_id, size_t n, struct melbo_err *err);

/* 0 when the disk of state_dir keeps at least reserve_mb MB free after need more bytes, else
 * MELBO_ERANGE with err saying how much is free and naming limits.disk_reserve_mb. */
int melbo_disk_check(const char *state_dir, long long reserve_mb, unsigned long long need,
                     struct melbo_err *err);

/* 1 if id is a well-formed bank id (lowercase hex, 1..64 chars), else 0. */
int melbo_bank_id_valid(const char *id);

/* Writes the path of bank id under state_dir into buf (n bytes). Returns 0, MELBO_EINVAL (not a
 * bank id) or MELBO_ERANGE (too long). */
int melbo_bank_path(const char *state_dir, const char *id, char *buf, size_t n);

/* 1 if the open bank f is an adapter bank (metadata kind=adapter), 0 for a vector bank
 * (kind=vector, or no kind: a bank from before adapters). */
int melbo_bank_is_adapter(const struct melbo_st_file *f);

/*
 * What `show` lists of a stored bank: per vector (or adapter) its final objective and the first
 * line (at most 200 bytes) of its completion of prompt 0 ("" when the bank has no completions).
 * ptrs[0..n-1] point into rows, ready for a repeated VectorRow field; everything is owned here.
 */
struct melbo_bank_rows {
    int adapter;               // 1: an adapter bank (its completions are under "adapters")
    size_t n;                  // vectors or adapters (rows of the `objective` tensor)
    Melbo__VectorRow *rows;
    Melbo__VectorRow **ptrs;
    char (*lines)[256];        // the completions the rows point to
};

/* Reads the rows of bank bank_id under state_dir into r (melbo_bank_rows_free it after success).
 * Returns 0, MELBO_ENOENT (no such bank or not readable) or MELBO_ENOMEM; on failure r is empty. */
int melbo_bank_rows_read(const char *state_dir, const char *bank_id, struct melbo_bank_rows *r);
void melbo_bank_rows_free(struct melbo_bank_rows *r);

#endif
