/*
 * coord/catalog.c - the lab catalog: labels, full-text search, nearest vectors, provenance
 * (coord/catalog.h). Everything here runs on the loop thread and reads only the database; bank
 * files are read once, when a bank is indexed.
 */
#include "coord/catalog.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "coord/banks.h"  // defines: melbo_bank_id_valid, melbo_bank_is_adapter
#include "coord/client.h" // defines: struct melbo_client, melbo_coord_bank_hidden
#include "coord/clock.h"  // defines: melbo_coord_now

#define LABEL_MAX       1024  // bytes of a label
#define NOTE_MAX        16384 // bytes of a note
#define COMPLETION_MAX  4096  // bytes of a first completion kept per vector
#define SETTING_MAX     1024  // option values longer than this are kept as "<N bytes>"
#define SEARCH_DEFAULT  20
#define SEARCH_SCAN_MAX 100000 // FTS rows looked at for one search (hidden banks skipped)
#define NEAR_DEFAULT    10

static const char *const schema =
    "CREATE TABLE IF NOT EXISTS catalog_banks("
    "  bank_id TEXT PRIMARY KEY, provenance TEXT, indexed REAL);"
    "CREATE TABLE IF NOT EXISTS catalog_vectors("
    "  bank_id TEXT NOT NULL, vector INTEGER NOT NULL, fingerprint TEXT, source_layer INTEGER,"
    "  kind TEXT, module TEXT, rank INTEGER, d INTEGER, d_mlp INTEGER, data BLOB, norm REAL,"
    "  completion TEXT, PRIMARY KEY(bank_id, vector)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS catalog_vectors_space"
    "  ON catalog_vectors(fingerprint, source_layer, kind);"
    "CREATE TABLE IF NOT EXISTS catalog_labels("
    "  bank_id TEXT NOT NULL, vector INTEGER NOT NULL, label TEXT, note TEXT, user TEXT,"
    "  time REAL, PRIMARY KEY(bank_id, vector)) WITHOUT ROWID;"
    "CREATE VIRTUAL TABLE IF NOT EXISTS catalog_fts USING fts5(text, bank_id UNINDEXED,"
    "  vector UNINDEXED, field UNINDEXED, tokenize = 'porter unicode61 remove_diacritics 2');";

/* ---- small SQLite helpers -------------------------------------------------------------------- */

static int exec(sqlite3 *db, const char *sql) {
    return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : MELBO_EIO;
}

/* Runs sql with text parameters (NULL binds NULL) to completion. Returns 0 or MELBO_EIO. */
static int run(sqlite3 *db, const char *sql, int n, const char *const *params) {
    sqlite3_stmt *st = NULL;
    int ret = MELBO_EIO;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        for (int i = 0; i < n; i++)
            sqlite3_bind_text(st, i + 1, params[i], -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) == SQLITE_DONE)
            ret = 0;
    }
    sqlite3_finalize(st);
    return ret;
}

static const char *col_text(sqlite3_stmt *st, int i) {
    const unsigned char *s = sqlite3_column_text(st, i);
    return s ? (const char *)s : "";
}

/* s cut to at most n bytes, never inside a UTF-8 sequence (malloc'ed; NULL when out of memory). */
static char *dup_cut(const char *s, size_t n) {
    size_t len = strlen(s);
    if (len > n) {
        len = n;
        while (len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80)
            len--;
    }
    char *d = malloc(len + 1);
    if (d) {
        memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}

/* ---- provenance ------------------------------------------------------------------------------ */

/* Adds option name = value to settings: a string, true for a flag, an array for a repeated
 * option; values over SETTING_MAX bytes (a prompts file's text) as "<N bytes>". */
static void setting_add(cJSON *settings, const char *name, const char *value) {
    char big[64];
    if (value && strlen(value) > SETTING_MAX) {
        snprintf(big, sizeof big, "<%zu bytes>", strlen(value));
        value = big;
    }
    cJSON *v = value ? cJSON_CreateString(value) : cJSON_CreateTrue();
    cJSON *old = cJSON_GetObjectItemCaseSensitive(settings, name);
    if (old == NULL) {
        cJSON_AddItemToObject(settings, name, v);
    } else if (cJSON_IsArray(old)) {
        cJSON_AddItemToArray(old, v);
    } else {
        cJSON *a = cJSON_CreateArray();
        cJSON_AddItemToArray(a, cJSON_Duplicate(old, 1));
        cJSON_AddItemToArray(a, v);
        cJSON_ReplaceItemInObjectCaseSensitive(settings, name, a);
    }
}

/* The options of a packed JobSpec by name (protocol-1 specs: their main fields). */
static cJSON *settings_json(const uint8_t *spec_bytes, size_t len) {
    cJSON *s = cJSON_CreateObject();
    Melbo__JobSpec *spec = spec_bytes ? melbo__job_spec__unpack(NULL, len, spec_bytes) : NULL;
    if (spec == NULL)
        return s;
    if (spec->command && *spec->command)
        setting_add(s, "command", spec->command);
    for (size_t i = 0; i < spec->n_options; i++)
        if (spec->options[i]->name)
            setting_add(s, spec->options[i]->name, spec->options[i]->value);
    if (spec->n_options == 0) {
        char num[64];
        if (spec->model)
            setting_add(s, "model", spec->model);
#define FIELD(has, name, fmt, v)                                                                   \
    if (has) {                                                                                     \
        snprintf(num, sizeof num, fmt, v);                                                         \
        setting_add(s, name, num);                                                                 \
    }
        FIELD(spec->has_source_layer, "source-layer", "%d", spec->source_layer);
        FIELD(spec->has_target_layer, "target-layer", "%d", spec->target_layer);
        FIELD(spec->has_radius, "radius", "%.9g", spec->radius);
        FIELD(spec->has_vectors, "vectors", "%d", spec->vectors);
        FIELD(spec->has_steps, "steps", "%d", spec->steps);
        FIELD(spec->has_seed, "seed", "%llu", (unsigned long long)spec->seed);
#undef FIELD
    }
    melbo__job_spec__free_unpacked(spec, NULL);
    return s;
}

/*
 * The provenance of bank_id as JSON text (malloc'ed): its row of `banks` (user, time stored, job)
 * and the job's options, from job when given, else from the job table. NULL when the bank has no
 * row.
 */
static char *provenance_build(sqlite3 *db, const char *bank_id, const struct melbo_job *job) {
    sqlite3_stmt *st = NULL;
    char *out = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT b.user, b.created, b.job_id, j.spec FROM banks b LEFT JOIN "
                           "jobs j ON j.id = b.job_id WHERE b.id = ?",
                           -1, &st, NULL) != SQLITE_OK)
        return NULL;
    sqlite3_bind_text(st, 1, bank_id, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) == SQLITE_ROW) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "user", col_text(st, 0));
        cJSON_AddNumberToObject(o, "time", sqlite3_column_double(st, 1));
        cJSON_AddNumberToObject(o, "job", (double)sqlite3_column_int64(st, 2));
        if (job)
            cJSON_AddItemToObject(o, "settings", settings_json(job->spec, job->spec_len));
        else
            cJSON_AddItemToObject(
                o, "settings",
                settings_json(sqlite3_column_blob(st, 3), (size_t)sqlite3_column_bytes(st, 3)));
        cJSON_AddNullToObject(o, "sweep");
        out = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
    }
    sqlite3_finalize(st);
    return out;
}

char *melbo_catalog_provenance(sqlite3 *db, const char *bank_id) {
    sqlite3_stmt *st = NULL;
    char *out = NULL;
    if (sqlite3_prepare_v2(db, "SELECT provenance FROM catalog_banks WHERE bank_id = ?", -1, &st,
                           NULL) != SQLITE_OK)
        return NULL;
    sqlite3_bind_text(st, 1, bank_id, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_TEXT)
        out = strdup(col_text(st, 0));
    sqlite3_finalize(st);
    return out;
}

int melbo_catalog_set_sweep(sqlite3 *db, const char *bank_id, const char *sweep_json) {
    char *p = melbo_catalog_provenance(db, bank_id);
    if (p == NULL)
        return MELBO_ENOENT;
    cJSON *o = cJSON_Parse(p), *sw = sweep_json ? cJSON_Parse(sweep_json) : cJSON_CreateNull();
    free(p);
    int ret = 0;
    if (o == NULL || sw == NULL) {
        ret = o ? MELBO_EFORMAT : MELBO_EIO;
        cJSON_Delete(sw);
    } else {
        if (cJSON_GetObjectItemCaseSensitive(o, "sweep"))
            cJSON_ReplaceItemInObjectCaseSensitive(o, "sweep", sw);
        else
            cJSON_AddItemToObject(o, "sweep", sw);
        char *s = cJSON_PrintUnformatted(o);
        const char *params[] = {s, bank_id};
        ret = s ? run(db, "UPDATE catalog_banks SET provenance = ? WHERE bank_id = ?", 2, params)
                : MELBO_ENOMEM;
        free(s);
    }
    cJSON_Delete(o);
    return ret;
}

/* ---- indexing -------------------------------------------------------------------------------- */

static int meta_int(const struct melbo_st_file *f, const char *k) {
    const char *v = melbo_st_meta(f, k);
    return v ? atoi(v) : 0;
}

/* ||B A||_F^2 (or <B_x A_x, B_y A_y>) in fp64 from the r x r' products B_x^T B_y and A_x A_y^T:
 * A_x (rx, dm), B_x (d, rx), A_y (ry, dm), B_y (d, ry), all row-major. */
static double adapter_dot(const float *A_x, const float *B_x, int rx, const float *A_y,
                          const float *B_y, int ry, int d, int dm) {
    double sum = 0;
    for (int i = 0; i < rx; i++)
        for (int j = 0; j < ry; j++) {
            double bb = 0, aa = 0;
            for (int k = 0; k < d; k++)
                bb += (double)B_x[(size_t)k * rx + i] * B_y[(size_t)k * ry + j];
            for (int m = 0; m < dm; m++)
                aa += (double)A_x[(size_t)i * dm + m] * A_y[(size_t)j * dm + m];
            sum += bb * aa;
        }
    return sum;
}

/* One indexed vector (or adapter): data is copied by SQLite. */
struct vec_row {
    const char *bank_id, *fingerprint, *kind, *module, *completion;
    int vector, source_layer, rank, d, d_mlp;
    const void *data;
    size_t bytes;
    double norm;
};

static int insert_vector(sqlite3_stmt *st, const struct vec_row *v) {
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    sqlite3_bind_text(st, 1, v->bank_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 2, v->vector);
    sqlite3_bind_text(st, 3, v->fingerprint, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 4, v->source_layer);
    sqlite3_bind_text(st, 5, v->kind, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 6, v->module, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 7, v->rank);
    sqlite3_bind_int(st, 8, v->d);
    sqlite3_bind_int(st, 9, v->d_mlp);
    sqlite3_bind_blob64(st, 10, v->data, v->bytes, SQLITE_TRANSIENT);
    sqlite3_bind_double(st, 11, v->norm);
    sqlite3_bind_text(st, 12, v->completion, -1, SQLITE_TRANSIENT);
    return sqlite3_step(st) == SQLITE_DONE ? 0 : MELBO_EIO;
}

static int insert_fts(sqlite3_stmt *st, const char *text, const char *bank_id, int vector,
                      const char *field) {
    if (text == NULL || *text == '\0')
        return 0;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, text, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, bank_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 3, vector);
    sqlite3_bind_text(st, 4, field, -1, SQLITE_TRANSIENT);
    return sqlite3_step(st) == SQLITE_DONE ? 0 : MELBO_EIO;
}

/* The vectors (or adapters) of f into catalog_vectors, and their completions into catalog_fts.
 * A tensor that is not F32 of the expected shape indexes no vector (logged): such a bank is
 * searchable but has no neighbours. */
static int index_vectors(sqlite3 *db, const char *bank_id, const struct melbo_st_file *f,
                         cJSON *per) {
    sqlite3_stmt *sv = NULL, *sf = NULL;
    int ret = MELBO_EIO, adapter = melbo_bank_is_adapter(f);
    const char *fp = melbo_st_meta(f, "model_fingerprint"),
               *mod = melbo_st_meta(f, "adapter_module");
    if (sqlite3_prepare_v2(db,
                           "INSERT OR REPLACE INTO catalog_vectors(bank_id, vector, fingerprint, "
                           "source_layer, kind, module, rank, d, d_mlp, data, norm, completion) "
                           "VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
                           -1, &sv, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db,
                           "INSERT INTO catalog_fts(text, bank_id, vector, field) "
                           "VALUES(?,?,?,?)",
                           -1, &sf, NULL) != SQLITE_OK)
        goto out;
    struct vec_row v = {.bank_id = bank_id,
                        .fingerprint = fp ? fp : "",
                        .kind = adapter ? "adapter" : "vector",
                        .module = adapter && mod ? mod : "",
                        .source_layer = meta_int(f, "source_layer")};
    const struct melbo_st_tensor *t = melbo_st_find(f, adapter ? "lora_A" : "vectors");
    const struct melbo_st_tensor *tb = adapter ? melbo_st_find(f, "lora_B") : NULL;
    int n = 0, ok = 0;
    if (!adapter && t && t->dtype == MELBO_DTYPE_F32 && t->ndim == 2) {
        n = (int)t->shape[0], v.d = (int)t->shape[1], ok = 1;
    } else if (adapter && t && tb && t->dtype == MELBO_DTYPE_F32 && tb->dtype == MELBO_DTYPE_F32 &&
               t->ndim == 3 && tb->ndim == 3 && tb->shape[0] == t->shape[0] &&
               tb->shape[2] == t->shape[1]) {
        n = (int)t->shape[0], v.rank = (int)t->shape[1], v.d_mlp = (int)t->shape[2];
        v.d = (int)tb->shape[1], ok = 1;
    } else {
        melbo_log(MELBO_LOG_WARN, "coord: catalog: bank %s has no F32 %s: no nearest vectors",
                  bank_id, adapter ? "lora_A / lora_B" : "vectors");
    }
    size_t na = (size_t)v.rank * v.d_mlp, nb = (size_t)v.d * v.rank;
    float *buf = ok && adapter ? malloc((na + nb) * sizeof(float) + 1) : NULL;
    if (ok && adapter && buf == NULL) {
        ret = MELBO_ENOMEM;
        goto out;
    }
    for (int k = 0; k < n; k++) {
        if (adapter) { /* one blob: A (r, d_mlp) then B (d, r); the mapping may be unaligned */
            memcpy(buf, (const char *)t->data + (size_t)k * na * 4, na * 4);
            memcpy(buf + na, (const char *)tb->data + (size_t)k * nb * 4, nb * 4);
            v.data = buf, v.bytes = (na + nb) * 4;
            v.norm = sqrt(
                fmax(0, adapter_dot(buf, buf + na, v.rank, buf, buf + na, v.rank, v.d, v.d_mlp)));
        } else {
            const char *row = (const char *)t->data + (size_t)k * v.d * 4;
            double s = 0;
            for (int i = 0; i < v.d; i++) {
                float x;
                memcpy(&x, row + (size_t)i * 4, 4);
                s += (double)x * x;
            }
            v.data = row, v.bytes = (size_t)v.d * 4, v.norm = sqrt(s);
        }
        cJSON *ci = per ? cJSON_GetArrayItem(per, k) : NULL;
        cJSON *c0 = ci ? cJSON_GetArrayItem(ci, 0) : NULL;
        char *first = dup_cut(cJSON_IsString(c0) ? c0->valuestring : "", COMPLETION_MAX);
        v.vector = k;
        v.completion = first ? first : "";
        int r = insert_vector(sv, &v);
        free(first);
        if (r != 0) {
            free(buf);
            goto out;
        }
    }
    free(buf);
    /* every completion of every vector, also of vectors the tensors did not give */
    int nc = per ? cJSON_GetArraySize(per) : 0;
    for (int k = 0; k < nc; k++) {
        cJSON *c;
        cJSON_ArrayForEach(c, cJSON_GetArrayItem(per, k)) {
            if (cJSON_IsString(c) && insert_fts(sf, c->valuestring, bank_id, k, "completion") != 0)
                goto out;
        }
    }
    ret = 0;
out:
    sqlite3_finalize(sv);
    sqlite3_finalize(sf);
    return ret;
}

/* The prompts of f (JSON array of strings) into catalog_fts as vector -1. */
static int index_prompts(sqlite3 *db, const char *bank_id, const struct melbo_st_file *f) {
    const char *pj = melbo_st_meta(f, "prompts");
    cJSON *prompts = pj ? cJSON_Parse(pj) : NULL, *p;
    sqlite3_stmt *sf = NULL;
    int ret = 0;
    if (prompts && sqlite3_prepare_v2(db,
                                      "INSERT INTO catalog_fts(text, bank_id, vector, field) "
                                      "VALUES(?,?,?,?)",
                                      -1, &sf, NULL) != SQLITE_OK)
        ret = MELBO_EIO;
    cJSON *list = ret == 0 ? prompts : NULL;
    cJSON_ArrayForEach(p, list) {
        if (cJSON_IsString(p) && (ret = insert_fts(sf, p->valuestring, bank_id, -1, "prompt")) != 0)
            break;
    }
    sqlite3_finalize(sf);
    cJSON_Delete(prompts);
    return ret;
}

/* Records bank_id as indexed, with its provenance. */
static int index_done(sqlite3 *db, const char *bank_id, const struct melbo_job *job) {
    char *prov = provenance_build(db, bank_id, job), when[64];
    snprintf(when, sizeof when, "%.6f", melbo_coord_now());
    const char *params[] = {bank_id, prov, when};
    int ret = run(db,
                  "INSERT OR REPLACE INTO catalog_banks(bank_id, provenance, indexed) "
                  "VALUES(?, ?, CAST(? AS REAL))",
                  3, params);
    free(prov);
    return ret;
}

int melbo_catalog_index_bank(sqlite3 *db, const char *bank_id, const struct melbo_st_file *f,
                             const struct melbo_job *job) {
    int ret = exec(db, "SAVEPOINT catalog_index");
    if (ret != 0) {
        melbo_log(MELBO_LOG_ERROR, "coord: catalog: cannot index bank %s: %s", bank_id,
                  sqlite3_errmsg(db));
        return ret;
    }
    const char *cj = melbo_st_meta(f, "completions");
    cJSON *comp = cj ? cJSON_Parse(cj) : NULL;
    cJSON *per =
        comp ? cJSON_GetObjectItem(comp, melbo_bank_is_adapter(f) ? "adapters" : "vectors") : NULL;
    const char *id[] = {bank_id};
    ret = run(db, "DELETE FROM catalog_vectors WHERE bank_id = ?", 1, id);
    if (ret == 0) /* labels and notes too: put back from catalog_labels below */
        ret = run(db, "DELETE FROM catalog_fts WHERE bank_id = ?", 1, id);
    if (ret == 0)
        ret = run(db,
                  "INSERT INTO catalog_fts(text, bank_id, vector, field) SELECT label, "
                  "bank_id, vector, 'label' FROM catalog_labels WHERE bank_id = ?1 AND label "
                  "IS NOT NULL UNION ALL SELECT note, bank_id, vector, 'note' FROM "
                  "catalog_labels WHERE bank_id = ?1 AND note IS NOT NULL",
                  1, id);
    if (ret == 0)
        ret = index_vectors(db, bank_id, f, cJSON_IsArray(per) ? per : NULL);
    if (ret == 0)
        ret = index_prompts(db, bank_id, f);
    if (ret == 0)
        ret = index_done(db, bank_id, job);
    cJSON_Delete(comp);
    if (ret != 0) {
        melbo_log(MELBO_LOG_ERROR, "coord: catalog: cannot index bank %s: %s", bank_id,
                  sqlite3_errmsg(db));
        exec(db, "ROLLBACK TO catalog_index");
    }
    exec(db, "RELEASE catalog_index");
    return ret;
}

int melbo_catalog_open(sqlite3 *db, struct melbo_err *err) {
    char *msg = NULL;
    if (sqlite3_exec(db, schema, NULL, NULL, &msg) != SQLITE_OK) {
        int r = melbo_err_set(err, MELBO_EIO,
                              "cannot create the catalog's tables: %s (the lab "
                              "catalog needs SQLite with FTS5)",
                              msg ? msg : "?");
        sqlite3_free(msg);
        return r;
    }
    /* banks stored before the catalog: their ids and paths first, then each file once */
    sqlite3_stmt *st = NULL;
    char(*ids)[72] = NULL, **paths = NULL;
    size_t n = 0, cap = 0;
    int ret = 0;
    if (sqlite3_prepare_v2(db,
                           "SELECT id, path FROM banks WHERE id NOT IN (SELECT bank_id FROM "
                           "catalog_banks) ORDER BY created",
                           -1, &st, NULL) != SQLITE_OK)
        return melbo_err_set(err, MELBO_EIO, "cannot read the bank catalog: %s",
                             sqlite3_errmsg(db));
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            void *ni = realloc(ids, cap * sizeof *ids),
                 *np = ni ? realloc(paths, cap * sizeof *paths) : NULL;
            if (ni)
                ids = ni;
            if (np)
                paths = np;
            if (ni == NULL || np == NULL) {
                ret = melbo_err_set(err, MELBO_ENOMEM, "out of memory indexing the catalog");
                break;
            }
        }
        snprintf(ids[n], sizeof ids[n], "%s", col_text(st, 0));
        paths[n] = strdup(col_text(st, 1));
        if (paths[n] == NULL) {
            ret = melbo_err_set(err, MELBO_ENOMEM, "out of memory indexing the catalog");
            break;
        }
        n++;
    }
    sqlite3_finalize(st);
    /* a bank is STATE/banks/ID.bank.safetensors next to this database (the path recorded at
     * store time is tried when that fails: a state directory that moved still works) */
    const char *dbfile = sqlite3_db_filename(db, "main");
    const char *slash = dbfile ? strrchr(dbfile, '/') : NULL;
    char state[PATH_MAX] = "", here[PATH_MAX];
    if (slash && (size_t)(slash - dbfile) < sizeof state)
        snprintf(state, sizeof state, "%.*s", (int)(slash - dbfile), dbfile);
    for (size_t i = 0; i < n && ret == 0; i++) {
        struct melbo_st_file f;
        struct melbo_err ferr = {0};
        memset(&f, 0, sizeof f);
        if ((state[0] && melbo_bank_path(state, ids[i], here, sizeof here) == 0 &&
             melbo_st_open(&f, here, &ferr) == 0) ||
            melbo_st_open(&f, paths[i], &ferr) == 0) {
            melbo_catalog_index_bank(db, ids[i], &f, NULL);
            melbo_st_close(&f);
        } else { /* recorded without vectors, not tried again */
            melbo_log(MELBO_LOG_WARN, "coord: catalog: bank %s: cannot read %s: %s", ids[i],
                      paths[i], ferr.msg);
            index_done(db, ids[i], NULL);
        }
    }
    if (n)
        melbo_log(MELBO_LOG_INFO, "coord: catalog: indexed %zu banks stored before it", n);
    for (size_t i = 0; i < n; i++)
        free(paths[i]);
    free(paths);
    free(ids);
    return ret;
}

/* ---- requests -------------------------------------------------------------------------------- */

static void reply(struct melbo_client *cl, uint64_t id, Melbo__Envelope *env) {
    env->has_id = 1;
    env->id = id;
    melbo_client_send(cl, env);
}

/* What the catalog's `banks` row says of a bank the client may see. */
struct bank_ref {
    int vectors;
    int adapter;
    char model[512], fingerprint[128];
};

/*
 * Looks up bank id for cl: 0 with *b filled, or an Error already sent (not a bank id: INVALID;
 * unknown or hidden from cl: NOT_FOUND "no bank ID") and a nonzero return.
 */
static int need_bank(struct melbo_client *cl, uint64_t req, const char *id, struct bank_ref *b) {
    sqlite3_stmt *st = NULL;
    int found = 0;
    if (id == NULL || !melbo_bank_id_valid(id)) {
        melbo_client_error(cl, req, MELBO__ERROR_CODE__ERROR_INVALID, 0,
                           "'%.80s' is not a bank id (expected hex digits)", id ? id : "");
        return 1;
    }
    if (!melbo_coord_bank_hidden(cl, id) &&
        sqlite3_prepare_v2(cl->co->db,
                           "SELECT vectors, COALESCE(kind, 'vector'), model, fingerprint FROM "
                           "banks WHERE id = ?",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) == SQLITE_ROW) {
            found = 1;
            b->vectors = sqlite3_column_int(st, 0);
            b->adapter = !strcmp(col_text(st, 1), "adapter");
            snprintf(b->model, sizeof b->model, "%s", col_text(st, 2));
            snprintf(b->fingerprint, sizeof b->fingerprint, "%s", col_text(st, 3));
        }
    }
    sqlite3_finalize(st);
    if (!found)
        melbo_client_error(cl, req, MELBO__ERROR_CODE__ERROR_NOT_FOUND, 0, "no bank %s", id);
    return !found;
}

/* 0 when vector (has: given) indexes bank id's vectors; else an Error sent and nonzero. */
static int need_vector(struct melbo_client *cl, uint64_t req, const char *id,
                       const struct bank_ref *b, int has, int vector) {
    const char *what = b->adapter ? "adapter" : "vector";
    if (!has) {
        melbo_client_error(cl, req, MELBO__ERROR_CODE__ERROR_INVALID, 0,
                           "which %s of bank %s? (ID:K names %s K)", what, id, what);
        return 1;
    }
    if (vector < 0 || vector >= b->vectors) {
        melbo_client_error(cl, req, MELBO__ERROR_CODE__ERROR_INVALID, 0,
                           "bank %s has %d %ss (0..%d): there is no %s %d", id, b->vectors, what,
                           b->vectors - 1, what, vector);
        return 1;
    }
    return 0;
}

/* The label row of (id, vector) into r (strings malloc'ed: label_reply_free). */
static void label_read(sqlite3 *db, const char *id, int vector, Melbo__LabelReply *r) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT label, note, user, time FROM catalog_labels WHERE bank_id = ? "
                           "AND vector = ?",
                           -1, &st, NULL) != SQLITE_OK)
        return;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 2, vector);
    if (sqlite3_step(st) == SQLITE_ROW) {
        if (sqlite3_column_type(st, 0) == SQLITE_TEXT)
            r->label = strdup(col_text(st, 0));
        if (sqlite3_column_type(st, 1) == SQLITE_TEXT)
            r->note = strdup(col_text(st, 1));
        r->user = strdup(col_text(st, 2));
        r->has_time = 1, r->time = sqlite3_column_double(st, 3);
    }
    sqlite3_finalize(st);
}

static void label_reply_free(Melbo__LabelReply *r) {
    free(r->label), free(r->note), free(r->user);
}

/* Writes label and note (NULL: none) of (id, vector) by user: the row and its FTS rows; both
 * NULL removes the row. In one savepoint. Returns 0 or MELBO_EIO. */
static int label_write(sqlite3 *db, const char *id, int vector, const char *label, const char *note,
                       const char *user) {
    char vec[16], when[64];
    snprintf(vec, sizeof vec, "%d", vector);
    snprintf(when, sizeof when, "%.6f", melbo_coord_now());
    const char *key[] = {id, vec};
    int ret = exec(db, "SAVEPOINT catalog_label");
    if (ret)
        return ret;
    ret = run(db,
              "DELETE FROM catalog_fts WHERE bank_id = ? AND vector = CAST(? AS INTEGER) "
              "AND field IN ('label', 'note')",
              2, key);
    if (ret == 0 && label == NULL && note == NULL)
        ret = run(db,
                  "DELETE FROM catalog_labels WHERE bank_id = ? AND vector = CAST(? AS "
                  "INTEGER)",
                  2, key);
    if (ret == 0 && (label || note)) {
        const char *row[] = {id, vec, label, note, user, when};
        ret = run(db,
                  "INSERT OR REPLACE INTO catalog_labels(bank_id, vector, label, note, user, "
                  "time) VALUES(?, CAST(? AS INTEGER), ?, ?, ?, CAST(? AS REAL))",
                  6, row);
    }
    for (int i = 0; i < 2 && ret == 0; i++) {
        const char *text = i ? note : label;
        const char *fts[] = {text, id, vec, i ? "note" : "label"};
        if (text)
            ret = run(db,
                      "INSERT INTO catalog_fts(text, bank_id, vector, field) VALUES(?, ?, "
                      "CAST(? AS INTEGER), ?)",
                      4, fts);
    }
    if (ret)
        exec(db, "ROLLBACK TO catalog_label");
    exec(db, "RELEASE catalog_label");
    return ret;
}

void melbo_catalog_on_label(struct melbo_client *cl, const Melbo__Envelope *env) {
    const Melbo__LabelRequest *q = env->label;
    sqlite3 *db = cl->co->db;
    struct bank_ref b;
    if (need_bank(cl, env->id, q->bank_id, &b) ||
        need_vector(cl, env->id, q->bank_id, &b, q->has_vector, q->vector))
        return;
    const char *err = NULL;
    if (q->has_clear && q->clear && (q->label || q->note))
        err = "--clear removes the label and the note: give no label or note with it";
    else if (q->label && *q->label == '\0')
        err = "an empty label (--clear removes the label and the note)";
    else if (q->label && strlen(q->label) > LABEL_MAX)
        err = "the label is longer than 1024 bytes (put the rest in --note)";
    else if (q->note && strlen(q->note) > NOTE_MAX)
        err = "the note is longer than 16384 bytes";
    if (err) {
        melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_INVALID, 0, "%s", err);
        return;
    }
    Melbo__LabelReply r = MELBO__LABEL_REPLY__INIT;
    label_read(db, q->bank_id, q->vector, &r);
    int write = (q->has_clear && q->clear) || q->label || q->note;
    if (write) {
        /* absent: kept; a note "" removes the note */
        const char *label = q->has_clear && q->clear ? NULL : q->label ? q->label : r.label;
        const char *note = q->has_clear && q->clear ? NULL : q->note ? q->note : r.note;
        if (note && *note == '\0')
            note = NULL;
        if (label_write(db, q->bank_id, q->vector, label, note, cl->user) != 0) {
            melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_INTERNAL, 0,
                               "cannot store the label: %s", sqlite3_errmsg(db));
            label_reply_free(&r);
            return;
        }
        label_reply_free(&r);
        memset(&r, 0, sizeof r);
        melbo__label_reply__init(&r);
        label_read(db, q->bank_id, q->vector, &r);
        melbo_log(MELBO_LOG_INFO, "coord: catalog: %s %s %s:%d", cl->user,
                  r.user ? "labelled" : "cleared the label of", q->bank_id, q->vector);
    }
    r.bank_id = q->bank_id;
    r.has_vector = 1, r.vector = q->vector;
    Melbo__Envelope e = MELBO__ENVELOPE__INIT;
    e.body_case = MELBO__ENVELOPE__BODY_LABELLED;
    e.labelled = &r;
    reply(cl, env->id, &e);
    r.bank_id = NULL;
    label_reply_free(&r);
}

/* text as an FTS5 query of plain words: each whitespace-separated word in double quotes (inner
 * quotes doubled), so that no character is an operator. malloc'ed; NULL when out of memory. */
static char *quote_words(const char *text) {
    size_t n = strlen(text);
    char *q = malloc(3 * n + 3), *o = q;
    if (q == NULL)
        return NULL;
    const char *s = text;
    while (*s) {
        while (*s && isspace((unsigned char)*s))
            s++;
        if (*s == '\0')
            break;
        if (o != q)
            *o++ = ' ';
        *o++ = '"';
        while (*s && !isspace((unsigned char)*s)) {
            if (*s == '"')
                *o++ = '"';
            *o++ = *s++;
        }
        *o++ = '"';
    }
    *o = '\0';
    return q;
}

/* Search hits copied out of the statement (strings malloc'ed). */
struct hits {
    Melbo__SearchHit *h;
    Melbo__SearchHit **p;
    size_t n, cap;
};

static void hits_free(struct hits *hs) {
    for (size_t i = 0; i < hs->n; i++) {
        free(hs->h[i].bank_id), free(hs->h[i].field), free(hs->h[i].snippet);
        free(hs->h[i].model), free(hs->h[i].label);
    }
    free(hs->h);
    free(hs->p);
}

/* Which banks cl may not see, each asked once (melbo_coord_bank_hidden walks the job table):
 * FTS hits come in rank order, banks interleaved. Open addressing on the id's first hex digits;
 * when full, banks are simply asked again. */
#define SEEN_SLOTS 4096
struct seen {
    char id[SEEN_SLOTS][24]; // "" = empty; ids longer than 23 are asked every time
    unsigned char hidden[SEEN_SLOTS];
};

static int hidden_cached(struct melbo_client *cl, struct seen *sn, const char *id) {
    if (strlen(id) >= sizeof sn->id[0])
        return melbo_coord_bank_hidden(cl, id);
    size_t h = (size_t)strtoull(id, NULL, 16) % SEEN_SLOTS;
    for (size_t i = 0; i < 32; i++, h = (h + 1) % SEEN_SLOTS) {
        if (!strcmp(sn->id[h], id))
            return sn->hidden[h];
        if (sn->id[h][0] == '\0') {
            snprintf(sn->id[h], sizeof sn->id[h], "%s", id);
            return sn->hidden[h] = (unsigned char)melbo_coord_bank_hidden(cl, id);
        }
    }
    return melbo_coord_bank_hidden(cl, id);
}

/*
 * Runs the FTS query match, collecting up to limit hits cl may see, one per (bank, vector,
 * field), best first. Returns 0, or MELBO_EINVAL when SQLite refused the query (err_out: its
 * message, n bytes), MELBO_ENOMEM.
 */
static int search_run(struct melbo_client *cl, const char *match, size_t limit, struct hits *hs,
                      char *err_out, size_t n) {
    sqlite3 *db = cl->co->db;
    sqlite3_stmt *st = NULL;
    const char *sql =
        "SELECT catalog_fts.bank_id, catalog_fts.vector, catalog_fts.field, "
        "snippet(catalog_fts, 0, '[', ']', '...', 12), b.model, l.label FROM catalog_fts "
        "JOIN banks b ON b.id = catalog_fts.bank_id LEFT JOIN catalog_labels l ON "
        "l.bank_id = catalog_fts.bank_id AND l.vector = catalog_fts.vector "
        "WHERE catalog_fts MATCH ? ORDER BY rank";
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        snprintf(err_out, n, "%s", sqlite3_errmsg(db));
        return MELBO_EINVAL;
    }
    sqlite3_bind_text(st, 1, match, -1, SQLITE_TRANSIENT);
    int rc = SQLITE_DONE, scanned = 0, ret = 0;
    struct seen *sn = calloc(1, sizeof *sn);
    if (sn == NULL) {
        sqlite3_finalize(st);
        return MELBO_ENOMEM;
    }
    while (hs->n < limit && scanned++ < SEARCH_SCAN_MAX && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *id = col_text(st, 0), *field = col_text(st, 2);
        int vector = sqlite3_column_int(st, 1);
        if (hidden_cached(cl, sn, id))
            continue;
        int dup = 0;
        for (size_t i = 0; i < hs->n && !dup; i++)
            dup = hs->h[i].vector == vector && !strcmp(hs->h[i].bank_id, id) &&
                  !strcmp(hs->h[i].field, field);
        if (dup)
            continue;
        if (hs->n == hs->cap) {
            size_t cap = hs->cap ? 2 * hs->cap : 16;
            Melbo__SearchHit *nh = realloc(hs->h, cap * sizeof *nh);
            if (nh == NULL) {
                ret = MELBO_ENOMEM;
                break;
            }
            hs->h = nh;
            hs->cap = cap;
        }
        Melbo__SearchHit *h = &hs->h[hs->n++];
        melbo__search_hit__init(h);
        h->bank_id = strdup(id);
        h->has_vector = 1, h->vector = vector;
        h->field = strdup(field);
        h->snippet = strdup(col_text(st, 3));
        h->model = strdup(col_text(st, 4));
        h->label = sqlite3_column_type(st, 5) == SQLITE_TEXT ? strdup(col_text(st, 5)) : NULL;
    }
    if (ret == 0 && rc != SQLITE_ROW && rc != SQLITE_DONE) {
        snprintf(err_out, n, "%s", sqlite3_errmsg(db));
        ret = MELBO_EINVAL;
    }
    free(sn);
    sqlite3_finalize(st);
    return ret;
}

void melbo_catalog_on_search(struct melbo_client *cl, const Melbo__Envelope *env) {
    const Melbo__SearchRequest *q = env->search;
    const char *text = q->text ? q->text : "";
    long long max = cl->co->limits.max_list;
    const char *s = text;
    while (*s && isspace((unsigned char)*s))
        s++;
    if (*s == '\0') {
        melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_INVALID, 0,
                           "empty search text: give words to look for in labels, notes, prompts "
                           "and completions");
        return;
    }
    if (q->has_limit && (long long)q->limit > max) {
        melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_INVALID, 0,
                           "--limit %lu is over %s = %lld (coord.conf); ask for fewer hits",
                           (unsigned long)q->limit, MELBO_COORD_LIMIT_KEY(max_list), max);
        return;
    }
    size_t limit = q->has_limit && q->limit > 0 ? q->limit : SEARCH_DEFAULT;
    struct hits hs = {0};
    char why[256] = "";
    int ret = search_run(cl, text, limit, &hs, why, sizeof why);
    if (ret == MELBO_EINVAL) { /* not FTS5 syntax: the same words, quoted */
        char *quoted = quote_words(text);
        hits_free(&hs);
        memset(&hs, 0, sizeof hs);
        char why2[256];
        ret = quoted ? search_run(cl, quoted, limit, &hs, why2, sizeof why2) : MELBO_ENOMEM;
        free(quoted);
    }
    if (ret != 0) {
        melbo_client_error(cl, env->id,
                           ret == MELBO_EINVAL ? MELBO__ERROR_CODE__ERROR_INVALID
                                               : MELBO__ERROR_CODE__ERROR_INTERNAL,
                           0, "cannot search for '%.200s': %s", text,
                           ret == MELBO_EINVAL ? why : "out of memory");
        hits_free(&hs);
        return;
    }
    hs.p = calloc(hs.n + 1, sizeof *hs.p);
    if (hs.p == NULL) {
        melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_INTERNAL, 0, "out of memory");
        hits_free(&hs);
        return;
    }
    for (size_t i = 0; i < hs.n; i++)
        hs.p[i] = &hs.h[i];
    Melbo__SearchReply sr = MELBO__SEARCH_REPLY__INIT;
    sr.n_hits = hs.n;
    sr.hits = hs.p;
    Melbo__Envelope e = MELBO__ENVELOPE__INIT;
    e.body_case = MELBO__ENVELOPE__BODY_SEARCH_RESULTS;
    e.search_results = &sr;
    reply(cl, env->id, &e);
    hits_free(&hs);
}

/* The last path component of p. */
static const char *base(const char *p) {
    const char *s = strrchr(p, '/');
    return s && s[1] ? s + 1 : p;
}

/* 1 when the user's --model names the bank's model: its name, the last component of either, its
 * fingerprint, or a prefix of at least 8 hex digits of it. */
static int model_matches(const char *given, const struct bank_ref *b) {
    size_t n = strlen(given);
    if (!strcmp(given, b->model) || !strcmp(given, b->fingerprint))
        return 1;
    if (*b->model && !strcmp(base(given), base(b->model)))
        return 1;
    return n >= 8 && !strncmp(given, b->fingerprint, n);
}

/* One neighbour kept while scanning (strings malloc'ed). */
struct near_hit {
    char bank_id[72];
    int vector;
    double cosine;
    char *label, *completion;
    uint64_t job_id;
};

void melbo_catalog_on_near(struct melbo_client *cl, const Melbo__Envelope *env) {
    const Melbo__NearRequest *q = env->near;
    sqlite3 *db = cl->co->db;
    struct bank_ref b;
    if (need_bank(cl, env->id, q->bank_id, &b) ||
        need_vector(cl, env->id, q->bank_id, &b, q->has_vector, q->vector))
        return;
    long long max = cl->co->limits.max_list;
    if (q->has_top && q->top == 0) {
        melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_INVALID, 0,
                           "--top 0: ask for at least one neighbour");
        return;
    }
    if (q->has_top && (long long)q->top > max) {
        melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_INVALID, 0,
                           "--top %lu is over %s = %lld (coord.conf)", (unsigned long)q->top,
                           MELBO_COORD_LIMIT_KEY(max_list), max);
        return;
    }
    if (q->model && *q->model && !model_matches(q->model, &b)) {
        melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_INVALID, 0,
                           "near compares vectors of one model only: bank %s is of model %s "
                           "(fingerprint %.12s), not '%.200s'",
                           q->bank_id, b.model, b.fingerprint, q->model);
        return;
    }
    size_t top = q->has_top ? q->top : NEAR_DEFAULT;
    /* the query */
    sqlite3_stmt *st = NULL;
    void *qdata = NULL;
    size_t qbytes = 0;
    char fp[128] = "", kind[16] = "", module[128] = "";
    int layer = 0, qrank = 0, qd = 0, qdm = 0;
    double qnorm = 0;
    if (sqlite3_prepare_v2(db,
                           "SELECT fingerprint, source_layer, kind, module, rank, d, d_mlp, data, "
                           "norm FROM catalog_vectors WHERE bank_id = ? AND vector = ?",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, q->bank_id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(st, 2, q->vector);
        if (sqlite3_step(st) == SQLITE_ROW) {
            snprintf(fp, sizeof fp, "%s", col_text(st, 0));
            layer = sqlite3_column_int(st, 1);
            snprintf(kind, sizeof kind, "%s", col_text(st, 2));
            snprintf(module, sizeof module, "%s", col_text(st, 3));
            qrank = sqlite3_column_int(st, 4), qd = sqlite3_column_int(st, 5);
            qdm = sqlite3_column_int(st, 6);
            qbytes = (size_t)sqlite3_column_bytes(st, 7);
            qdata = malloc(qbytes + 1);
            if (qdata)
                memcpy(qdata, sqlite3_column_blob(st, 7), qbytes);
            qnorm = sqlite3_column_double(st, 8);
        }
    }
    sqlite3_finalize(st);
    st = NULL;
    if (qdata == NULL || qnorm <= 0) {
        melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_STATE, 0,
                           qdata ? "%s %d of bank %s is zero: it has no direction"
                                 : "%s %d of bank %s is not in the catalog (its file could not be "
                                   "read when it was indexed)",
                           b.adapter ? "adapter" : "vector", q->vector, q->bank_id);
        free(qdata);
        return;
    }
    int adapter = !strcmp(kind, "adapter");
    struct near_hit *best = calloc(top + 1, sizeof *best);
    size_t rowcap = qbytes + 1;
    float *row = malloc(rowcap); /* each candidate copied here: SQLite's blobs may be unaligned */
    size_t n = 0;
    char last_id[72] = "";
    int last_hidden = 0;
    if (best == NULL || row == NULL ||
        sqlite3_prepare_v2(db,
                           "SELECT v.bank_id, v.vector, v.rank, v.d, v.d_mlp, v.data, v.norm, "
                           "v.completion, l.label, b.job_id FROM catalog_vectors v JOIN banks b "
                           "ON b.id = v.bank_id LEFT JOIN catalog_labels l ON l.bank_id = "
                           "v.bank_id AND l.vector = v.vector WHERE v.fingerprint = ? AND "
                           "v.source_layer = ? AND v.kind = ? AND v.module = ? ORDER BY v.bank_id",
                           -1, &st, NULL) != SQLITE_OK) {
        melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_INTERNAL, 0,
                           "cannot read the catalog: %s", sqlite3_errmsg(db));
        goto out;
    }
    sqlite3_bind_text(st, 1, fp, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 2, layer);
    sqlite3_bind_text(st, 3, kind, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, module, -1, SQLITE_TRANSIENT);
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *id = col_text(st, 0);
        int vector = sqlite3_column_int(st, 1), rank = sqlite3_column_int(st, 2);
        int d = sqlite3_column_int(st, 3), dm = sqlite3_column_int(st, 4);
        const void *blob = sqlite3_column_blob(st, 5);
        size_t bytes = (size_t)sqlite3_column_bytes(st, 5);
        double norm = sqlite3_column_double(st, 6);
        if (vector == q->vector && !strcmp(id, q->bank_id))
            continue; /* the query itself */
        if (strcmp(id, last_id) != 0) {
            snprintf(last_id, sizeof last_id, "%s", id);
            last_hidden = melbo_coord_bank_hidden(cl, id);
        }
        if (last_hidden || norm <= 0 || d != qd || blob == NULL)
            continue;
        if (bytes > rowcap) { /* an adapter of a higher rank */
            float *nr = realloc(row, bytes);
            if (nr == NULL)
                continue;
            row = nr, rowcap = bytes;
        }
        memcpy(row, blob, bytes);
        const float *data = row;
        double dot = 0;
        if (adapter) { /* same d and d_mlp; any rank */
            if (dm != qdm || bytes != ((size_t)rank * dm + (size_t)d * rank) * 4)
                continue;
            const float *qa = qdata;
            dot = adapter_dot(qa, qa + (size_t)qrank * qdm, qrank, data, data + (size_t)rank * dm,
                              rank, d, dm);
        } else {
            if (bytes != qbytes)
                continue;
            const float *x = qdata;
            for (int i = 0; i < d; i++)
                dot += (double)x[i] * data[i];
        }
        double cosine = dot / (qnorm * norm);
        /* keep the top: insertion into best[0..n), highest first */
        if (n == top && cosine <= best[n - 1].cosine)
            continue;
        size_t at = n < top ? n : top - 1;
        if (n == top) {
            free(best[at].label), free(best[at].completion);
        } else {
            n++;
        }
        while (at > 0 && best[at - 1].cosine < cosine) {
            best[at] = best[at - 1];
            at--;
        }
        struct near_hit *h = &best[at];
        snprintf(h->bank_id, sizeof h->bank_id, "%s", id);
        h->vector = vector;
        h->cosine = cosine;
        h->label = sqlite3_column_type(st, 8) == SQLITE_TEXT ? strdup(col_text(st, 8)) : NULL;
        h->completion = strdup(col_text(st, 7));
        h->job_id = (uint64_t)sqlite3_column_int64(st, 9);
    }
    {
        Melbo__NearHit *hits = calloc(n + 1, sizeof *hits);
        Melbo__NearHit **ptrs = calloc(n + 1, sizeof *ptrs);
        if (hits == NULL || ptrs == NULL) {
            melbo_client_error(cl, env->id, MELBO__ERROR_CODE__ERROR_INTERNAL, 0, "out of memory");
        } else {
            for (size_t i = 0; i < n; i++) {
                melbo__near_hit__init(&hits[i]);
                hits[i].bank_id = best[i].bank_id;
                hits[i].has_vector = 1, hits[i].vector = best[i].vector;
                hits[i].has_cosine = 1, hits[i].cosine = best[i].cosine;
                hits[i].label = best[i].label;
                hits[i].completion = best[i].completion;
                hits[i].has_job_id = 1, hits[i].job_id = best[i].job_id;
                ptrs[i] = &hits[i];
            }
            Melbo__NearReply nr = MELBO__NEAR_REPLY__INIT;
            nr.n_hits = n;
            nr.hits = ptrs;
            Melbo__Envelope e = MELBO__ENVELOPE__INIT;
            e.body_case = MELBO__ENVELOPE__BODY_NEAR_RESULTS;
            e.near_results = &nr;
            reply(cl, env->id, &e);
        }
        free(hits);
        free(ptrs);
    }
out:
    sqlite3_finalize(st);
    for (size_t i = 0; best && i < n; i++)
        free(best[i].label), free(best[i].completion);
    free(best);
    free(row);
    free(qdata);
}
