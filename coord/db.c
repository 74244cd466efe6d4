/* coord/db.c - SQLite persistence: jobs, events, bank catalog (coord/db.h). */
#include "coord/db.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "coord/catalog.h"  // defines: melbo_catalog_open

static const char *const schema =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=NORMAL;"
    "PRAGMA foreign_keys=ON;"
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);"
    "INSERT OR IGNORE INTO meta VALUES('schema_version', '1');"
    "CREATE TABLE IF NOT EXISTS jobs("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT, user TEXT NOT NULL, state INTEGER NOT NULL,"
    "  spec BLOB NOT NULL, secret TEXT NOT NULL, model TEXT, name TEXT, vectors INTEGER,"
    "  steps INTEGER, n_ranks INTEGER, created REAL, finished REAL, error TEXT,"
    "  failed_rank INTEGER, bank_id TEXT, pid INTEGER, cancel_requested INTEGER DEFAULT 0,"
    "  last_step BLOB, slurm_id TEXT, resubmits INTEGER DEFAULT 0, adapter_rank INTEGER DEFAULT 0,"
    "  threads INTEGER DEFAULT 0, request_id TEXT);"
    "CREATE TABLE IF NOT EXISTS events("
    "  job_id INTEGER NOT NULL, num INTEGER NOT NULL, rank_seq INTEGER NOT NULL,"
    "  body BLOB NOT NULL, PRIMARY KEY(job_id, num)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS banks("
    "  id TEXT PRIMARY KEY, job_id INTEGER, model TEXT, fingerprint TEXT, source_layer INTEGER,"
    "  target_layer INTEGER, radius REAL, p REAL, q REAL, vectors INTEGER, d_model INTEGER,"
    "  steps INTEGER, user TEXT, created REAL, prompts TEXT, size INTEGER, sha256 TEXT,"
    "  path TEXT, kind TEXT, adapter_rank INTEGER, adapter_alpha REAL, adapter_module TEXT,"
    "  d_mlp INTEGER);"
    "CREATE INDEX IF NOT EXISTS banks_model ON banks(model);";

int melbo_db_open(const char *path, sqlite3 **db, struct melbo_err *err) {
    *db = NULL;
    if (sqlite3_open_v2(path, db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        int r = melbo_err_set(err, MELBO_EIO, "cannot open the database %s: %s", path,
                              *db ? sqlite3_errmsg(*db) : "out of memory");
        sqlite3_close(*db);
        *db = NULL;
        return r;
    }
    sqlite3_busy_timeout(*db, 5000);
    char *msg = NULL;
    /* state directories from before the Slurm launcher or adapters: add their columns (errors:
     * already there, or a new database whose schema below has them) */
    static const char *const added[] = {
        "ALTER TABLE jobs ADD COLUMN slurm_id TEXT",
        "ALTER TABLE jobs ADD COLUMN resubmits INTEGER DEFAULT 0",
        "ALTER TABLE jobs ADD COLUMN adapter_rank INTEGER DEFAULT 0",
        "ALTER TABLE jobs ADD COLUMN threads INTEGER DEFAULT 0",
        "ALTER TABLE jobs ADD COLUMN request_id TEXT",
        "ALTER TABLE banks ADD COLUMN kind TEXT",
        "ALTER TABLE banks ADD COLUMN adapter_rank INTEGER",
        "ALTER TABLE banks ADD COLUMN adapter_alpha REAL",
        "ALTER TABLE banks ADD COLUMN adapter_module TEXT",
        "ALTER TABLE banks ADD COLUMN d_mlp INTEGER"};
    for (size_t i = 0; i < sizeof added / sizeof added[0]; i++)
        sqlite3_exec(*db, added[i], NULL, NULL, NULL);
    if (sqlite3_exec(*db, schema, NULL, NULL, &msg) != SQLITE_OK) {
        int r = melbo_err_set(err, MELBO_EIO, "cannot create the schema in %s: %s", path, msg);
        sqlite3_free(msg);
        sqlite3_close(*db);
        *db = NULL;
        return r;
    }
    int r = melbo_catalog_open(*db, err);  // the lab catalog's tables; banks from before it
    if (r != 0) {
        sqlite3_close(*db);
        *db = NULL;
    }
    return r;
}

int melbo_db_begin(sqlite3 *db) {
    return sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK ? 0 : MELBO_EIO;
}

int melbo_db_commit(sqlite3 *db) {
    return sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK ? 0 : MELBO_EIO;
}

static void bind_text(sqlite3_stmt *st, int i, const char *s) {
    sqlite3_bind_text(st, i, s ? s : "", -1, SQLITE_TRANSIENT);
}

int melbo_db_job_insert(sqlite3 *db, struct melbo_job *job, struct melbo_err *err) {
    sqlite3_stmt *st = NULL;
    int ret = 0;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO jobs(user, state, spec, secret, model, name, vectors, "
                           "steps, n_ranks, created, adapter_rank, threads, request_id) "
                           "VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)",
                           -1, &st, NULL) != SQLITE_OK) {
        ret = MELBO_EIO;
        goto out;
    }
    bind_text(st, 1, job->user);
    sqlite3_bind_int(st, 2, job->state);
    sqlite3_bind_blob(st, 3, job->spec, (int)job->spec_len, SQLITE_TRANSIENT);
    bind_text(st, 4, job->secret);
    bind_text(st, 5, job->model);
    bind_text(st, 6, job->name);
    sqlite3_bind_int(st, 7, job->vectors);
    sqlite3_bind_int(st, 8, job->steps);
    sqlite3_bind_int(st, 9, job->n_ranks);
    sqlite3_bind_double(st, 10, job->created);
    sqlite3_bind_int(st, 11, job->adapter_rank);
    sqlite3_bind_int(st, 12, job->threads);
    bind_text(st, 13, job->request_id);
    if (sqlite3_step(st) != SQLITE_DONE) {
        ret = MELBO_EIO;
        goto out;
    }
    job->id = (uint64_t)sqlite3_last_insert_rowid(db);
out:
    if (ret)
        melbo_err_set(err, ret, "cannot record the job: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return ret;
}

int melbo_db_job_update(sqlite3 *db, const struct melbo_job *job) {
    sqlite3_stmt *st = NULL;
    int ret = 0;
    if (sqlite3_prepare_v2(db,
                           "UPDATE jobs SET state=?, finished=?, error=?, failed_rank=?, "
                           "bank_id=?, pid=?, cancel_requested=?, last_step=?, slurm_id=?, "
                           "resubmits=? WHERE id=?",
                           -1, &st, NULL) != SQLITE_OK) {
        ret = MELBO_EIO;
        goto out;
    }
    sqlite3_bind_int(st, 1, job->state);
    sqlite3_bind_double(st, 2, job->finished);
    bind_text(st, 3, job->error);
    sqlite3_bind_int(st, 4, job->failed_rank);
    bind_text(st, 5, job->bank_id);
    sqlite3_bind_int(st, 6, job->pid);
    sqlite3_bind_int(st, 7, job->cancel_requested);
    if (job->last_step)
        sqlite3_bind_blob(st, 8, job->last_step, (int)job->last_step_len, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, 8);
    bind_text(st, 9, isdigit((unsigned char)job->slurm_id[0]) ? job->slurm_id : "");
    sqlite3_bind_int(st, 10, job->resubmits);
    sqlite3_bind_int64(st, 11, (sqlite3_int64)job->id);
    if (sqlite3_step(st) != SQLITE_DONE)
        ret = MELBO_EIO;
out:
    if (ret)
        melbo_log(MELBO_LOG_ERROR, "coord: cannot update job %llu: %s",
                  (unsigned long long)job->id, sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return ret;
}

static void copy_col(sqlite3_stmt *st, int i, char *dst, size_t n) {
    const unsigned char *s = sqlite3_column_text(st, i);
    snprintf(dst, n, "%s", s ? (const char *)s : "");
}

int melbo_db_jobs_load(sqlite3 *db, struct melbo_job **list, struct melbo_err *err) {
    sqlite3_stmt *st = NULL;
    int ret = 0;
    const char *sql =
        "SELECT id, user, state, spec, secret, model, name, vectors, steps, n_ranks, created, "
        "finished, error, failed_rank, bank_id, pid, cancel_requested, last_step, "
        "COALESCE(slurm_id, ''), COALESCE(resubmits, 0), "
        "(SELECT COALESCE(MAX(num), 0) FROM events e WHERE e.job_id = jobs.id), "
        "(SELECT COALESCE(MAX(rank_seq), 0) FROM events e WHERE e.job_id = jobs.id), "
        "COALESCE(adapter_rank, 0), COALESCE(threads, 0), COALESCE(request_id, '') FROM jobs "
        "ORDER BY id ASC";
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        ret = melbo_err_set(err, MELBO_EIO, "cannot read the job table: %s", sqlite3_errmsg(db));
        goto out;
    }
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct melbo_job *j = calloc(1, sizeof *j);
        if (j == NULL) {
            ret = melbo_err_set(err, MELBO_ENOMEM, "out of memory loading jobs");
            goto out;
        }
        j->next = *list;  // owned by the list from here on, also when a copy below fails
        *list = j;
        j->id = (uint64_t)sqlite3_column_int64(st, 0);
        copy_col(st, 1, j->user, sizeof j->user);
        j->state = sqlite3_column_int(st, 2);
        j->spec_len = (size_t)sqlite3_column_bytes(st, 3);
        j->spec = malloc(j->spec_len ? j->spec_len : 1);
        if (j->spec == NULL) {
            ret = melbo_err_set(err, MELBO_ENOMEM, "out of memory loading jobs");
            goto out;
        }
        if (j->spec_len)
            memcpy(j->spec, sqlite3_column_blob(st, 3), j->spec_len);
        copy_col(st, 4, j->secret, sizeof j->secret);
        copy_col(st, 5, j->model, sizeof j->model);
        copy_col(st, 6, j->name, sizeof j->name);
        j->vectors = sqlite3_column_int(st, 7);
        j->steps = sqlite3_column_int(st, 8);
        j->n_ranks = sqlite3_column_int(st, 9);
        j->created = sqlite3_column_double(st, 10);
        j->finished = sqlite3_column_double(st, 11);
        copy_col(st, 12, j->error, sizeof j->error);
        j->failed_rank = sqlite3_column_int(st, 13);
        copy_col(st, 14, j->bank_id, sizeof j->bank_id);
        j->pid = sqlite3_column_int(st, 15);
        j->cancel_requested = sqlite3_column_int(st, 16);
        if (sqlite3_column_type(st, 17) == SQLITE_BLOB) {
            j->last_step_len = (size_t)sqlite3_column_bytes(st, 17);
            j->last_step = malloc(j->last_step_len ? j->last_step_len : 1);
            if (j->last_step == NULL) {
                ret = melbo_err_set(err, MELBO_ENOMEM, "out of memory loading jobs");
                goto out;
            }
            memcpy(j->last_step, sqlite3_column_blob(st, 17), j->last_step_len);
        }
        copy_col(st, 18, j->slurm_id, sizeof j->slurm_id);
        j->resubmits = sqlite3_column_int(st, 19);
        j->last_event = (uint64_t)sqlite3_column_int64(st, 20);
        j->rank_seq = (uint64_t)sqlite3_column_int64(st, 21);
        j->adapter_rank = sqlite3_column_int(st, 22);
        j->threads = sqlite3_column_int(st, 23);
        copy_col(st, 24, j->request_id, sizeof j->request_id);
    }
    if (rc != SQLITE_DONE)
        ret = melbo_err_set(err, MELBO_EIO, "cannot read the job table: %s", sqlite3_errmsg(db));
out:
    sqlite3_finalize(st);
    return ret;
}

int melbo_db_event_insert(sqlite3 *db, uint64_t job_id, uint64_t num, uint64_t rank_seq,
                          const uint8_t *blob, size_t len) {
    static sqlite3_stmt *st;  // one loop thread: a cached statement is safe
    static sqlite3 *st_db;
    if (st == NULL || st_db != db) {
        sqlite3_finalize(st);
        st = NULL;
        if (sqlite3_prepare_v2(db, "INSERT INTO events(job_id, num, rank_seq, body) VALUES(?,?,?,?)",
                               -1, &st, NULL) != SQLITE_OK)
            return MELBO_EIO;
        st_db = db;
    }
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, (sqlite3_int64)job_id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)num);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)rank_seq);
    sqlite3_bind_blob(st, 4, blob, (int)len, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE) {
        melbo_log(MELBO_LOG_ERROR, "coord: cannot store event %llu of job %llu: %s",
                  (unsigned long long)num, (unsigned long long)job_id, sqlite3_errmsg(db));
        return MELBO_EIO;
    }
    return 0;
}

int melbo_db_events_read(sqlite3 *db, uint64_t job_id, uint64_t from, int max,
                         int (*fn)(void *ctx, uint64_t num, const uint8_t *blob, size_t len),
                         void *ctx) {
    sqlite3_stmt *st = NULL;
    int n = 0;
    if (sqlite3_prepare_v2(db,
                           "SELECT num, body FROM events WHERE job_id=? AND num>=? ORDER BY num "
                           "LIMIT ?",
                           -1, &st, NULL) != SQLITE_OK)
        return MELBO_EIO;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)job_id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)from);
    sqlite3_bind_int(st, 3, max);
    while (sqlite3_step(st) == SQLITE_ROW) {
        n++;
        if (fn(ctx, (uint64_t)sqlite3_column_int64(st, 0), sqlite3_column_blob(st, 1),
               (size_t)sqlite3_column_bytes(st, 1)))
            break;
    }
    sqlite3_finalize(st);
    return n;
}

int melbo_db_bank_insert(sqlite3 *db, const Melbo__BankInfo *b, const char *path) {
    sqlite3_stmt *st = NULL;
    int ret = 0;
    if (sqlite3_prepare_v2(db,
                           "INSERT OR REPLACE INTO banks(id, job_id, model, fingerprint, "
                           "source_layer, target_layer, radius, p, q, vectors, d_model, steps, "
                           "user, created, prompts, size, sha256, path, kind, adapter_rank, "
                           "adapter_alpha, adapter_module, d_mlp) "
                           "VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                           -1, &st, NULL) != SQLITE_OK) {
        ret = MELBO_EIO;
        goto out;
    }
    bind_text(st, 1, b->bank_id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)b->job_id);
    bind_text(st, 3, b->model);
    bind_text(st, 4, b->fingerprint);
    sqlite3_bind_int(st, 5, b->source_layer);
    sqlite3_bind_int(st, 6, b->target_layer);
    sqlite3_bind_double(st, 7, b->radius);
    sqlite3_bind_double(st, 8, b->p);
    sqlite3_bind_double(st, 9, b->q);
    sqlite3_bind_int(st, 10, b->vectors);
    sqlite3_bind_int(st, 11, b->d_model);
    sqlite3_bind_int(st, 12, b->steps);
    bind_text(st, 13, b->user);
    sqlite3_bind_double(st, 14, b->created);
    bind_text(st, 15, b->prompts);
    sqlite3_bind_int64(st, 16, (sqlite3_int64)b->size);
    bind_text(st, 17, b->sha256);
    bind_text(st, 18, path);
    bind_text(st, 19, b->kind ? b->kind : "vector");
    sqlite3_bind_int(st, 20, b->adapter_rank);
    sqlite3_bind_double(st, 21, b->adapter_alpha);
    bind_text(st, 22, b->adapter_module);
    sqlite3_bind_int(st, 23, b->d_mlp);
    if (sqlite3_step(st) != SQLITE_DONE)
        ret = MELBO_EIO;
out:
    if (ret)
        melbo_log(MELBO_LOG_ERROR, "coord: cannot record bank %s: %s", b->bank_id,
                  sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return ret;
}

int melbo_db_banks_query(sqlite3 *db, const Melbo__ListBanksRequest *f, const char *id,
                         int (*fn)(void *ctx, const Melbo__BankInfo *info), void *ctx) {
    sqlite3_stmt *st = NULL;
    int n = 0;
    const char *sql =
        "SELECT id, job_id, model, fingerprint, source_layer, target_layer, radius, p, q, "
        "vectors, d_model, steps, user, created, prompts, size, sha256, COALESCE(kind, 'vector'), "
        "COALESCE(adapter_rank, 0), COALESCE(adapter_alpha, 0), COALESCE(adapter_module, ''), "
        "COALESCE(d_mlp, 0) FROM banks WHERE "
        "(?1 IS NULL OR id = ?1) AND (?2 IS NULL OR instr(model, ?2) > 0) AND "
        "(?3 IS NULL OR fingerprint = ?3) AND (?4 IS NULL OR user = ?4) AND "
        "(?5 IS NULL OR instr(prompts, ?5) > 0) ORDER BY created DESC LIMIT ?6";
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return MELBO_EIO;
    if (id)
        sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    if (f && f->model && *f->model)
        sqlite3_bind_text(st, 2, f->model, -1, SQLITE_TRANSIENT);
    if (f && f->fingerprint && *f->fingerprint)
        sqlite3_bind_text(st, 3, f->fingerprint, -1, SQLITE_TRANSIENT);
    if (f && f->user && *f->user)
        sqlite3_bind_text(st, 4, f->user, -1, SQLITE_TRANSIENT);
    if (f && f->prompt && *f->prompt)
        sqlite3_bind_text(st, 5, f->prompt, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 6, f && f->has_limit && f->limit > 0 ? (int)f->limit : 1000);
    while (sqlite3_step(st) == SQLITE_ROW) {
        Melbo__BankInfo b = MELBO__BANK_INFO__INIT;
        b.bank_id = (char *)sqlite3_column_text(st, 0);
        b.has_job_id = 1, b.job_id = (uint64_t)sqlite3_column_int64(st, 1);
        b.model = (char *)sqlite3_column_text(st, 2);
        b.fingerprint = (char *)sqlite3_column_text(st, 3);
        b.has_source_layer = 1, b.source_layer = sqlite3_column_int(st, 4);
        b.has_target_layer = 1, b.target_layer = sqlite3_column_int(st, 5);
        b.kind = (char *)sqlite3_column_text(st, 17);
        if (strcmp(b.kind, "adapter") == 0) {  // no radius; rank, alpha, module, MLP width
            b.has_adapter_rank = 1, b.adapter_rank = sqlite3_column_int(st, 18);
            b.has_adapter_alpha = 1, b.adapter_alpha = sqlite3_column_double(st, 19);
            b.adapter_module = (char *)sqlite3_column_text(st, 20);
            b.has_d_mlp = 1, b.d_mlp = sqlite3_column_int(st, 21);
        } else {
            b.has_radius = 1, b.radius = sqlite3_column_double(st, 6);
        }
        b.has_p = 1, b.p = sqlite3_column_double(st, 7);
        b.has_q = 1, b.q = sqlite3_column_double(st, 8);
        b.has_vectors = 1, b.vectors = sqlite3_column_int(st, 9);
        b.has_d_model = 1, b.d_model = sqlite3_column_int(st, 10);
        b.has_steps = 1, b.steps = sqlite3_column_int(st, 11);
        b.user = (char *)sqlite3_column_text(st, 12);
        b.has_created = 1, b.created = sqlite3_column_double(st, 13);
        b.prompts = (char *)sqlite3_column_text(st, 14);
        b.has_size = 1, b.size = (uint64_t)sqlite3_column_int64(st, 15);
        b.sha256 = (char *)sqlite3_column_text(st, 16);
        n++;
        if (fn(ctx, &b))
            break;
    }
    sqlite3_finalize(st);
    return n;
}
