/*
 * coord/catalog.h - the lab catalog (issue 19) in the coordinator's database: labels and notes
 * on a bank's vectors, full-text search (SQLite FTS5) over labels, notes, prompts and
 * completions, the nearest vectors across the lab's banks by cosine, and every bank's
 * provenance (who, when, which job, the job's options by name, the sweep it came from).
 *
 * Tables (created by melbo_catalog_open next to db.c's; all keyed by bank id):
 *   catalog_banks    one row per indexed bank: its provenance JSON and when it was indexed
 *   catalog_vectors  one row per vector (or adapter) of a bank: the model fingerprint, source
 *                    layer and kind it is comparable within, the raw float32 vector (adapters:
 *                    lora_A and lora_B rows) with its norm (adapters: ||B A||_F), and its first
 *                    completion
 *   catalog_labels   the label and note of a vector, who set them last and when
 *   catalog_fts      FTS5 (porter, unicode61 without diacritics): one row per label, note,
 *                    prompt (vector -1) and completion, with its bank id, vector and field
 *
 * A bank is indexed once, when it is stored (melbo_catalog_index_bank, called by banks.c with the
 * file still open), or, for banks stored before the catalog existed, when the database is opened
 * (melbo_catalog_open reads their files once). After that `near` is a query and dot products in
 * memory: the loop never opens a bank file to answer label, search or near.
 *
 * Near: cosine in fp64 between the query and every vector of the same fingerprint, source layer
 * and kind, highest first (equal cosines: by bank id, then vector). Vector banks: <v, w> / (||v||
 * ||w||). Adapter banks: the cosine of the weight changes, <B A, B' A'>_F / (||B A||_F ||B'
 * A'||_F), from the r x r' products B^T B' and A A'^T (the d x d_mlp matrices are never formed);
 * adapters are compared only with adapters of the same module.
 *
 * Visibility: the banks of private jobs that the asking user may not see (coord/requests.c
 * melbo_coord_bank_hidden) are never in a search or near reply, and labelling one, or asking
 * near from one, is answered "no bank ID", as for a bank that does not exist.
 *
 * Layer: the database part (melbo_catalog_open, _index_bank, _provenance, _set_sweep) is below
 * client.h and called by db.c, banks.c and requests.c; the request handlers (melbo_catalog_on_*)
 * belong to requests.c's dispatch and are the only part that knows a client.
 */
#ifndef MELBO_COORD_CATALOG_H
#define MELBO_COORD_CATALOG_H

#include <sqlite3.h>

#include "common/err.h"
#include "coord/job.h" // defines: struct melbo_job
#include "proto/melbo.pb-c.h"
#include "rank/model/safetensors.h"

struct melbo_client;

/*
 * Creates the catalog's tables if needed (db open, schema of db.c already there), then indexes
 * every bank of the `banks` table that the catalog does not know yet (a state directory from
 * before the catalog), reading each file once: banks/ID.bank.safetensors next to the database,
 * else the path recorded when it was stored. A bank whose file cannot be read is logged and
 * recorded without vectors (not retried). Returns 0 or MELBO_EIO with err set.
 */
int melbo_catalog_open(sqlite3 *db, struct melbo_err *err);

/*
 * Indexes bank bank_id, stored as job's and open as f: its vectors (or adapters), their first
 * completions, its prompts and completions (and the labels and notes the catalog holds for it)
 * for search, and its provenance. job may be NULL: the job's spec is then read from the job
 * table. Replaces what the catalog held for bank_id, labels excepted. Returns 0 or MELBO_EIO /
 * MELBO_ENOMEM (logged; the bank itself stays stored).
 */
int melbo_catalog_index_bank(sqlite3 *db, const char *bank_id, const struct melbo_st_file *f,
                             const struct melbo_job *job);

/* The provenance JSON of bank_id (malloc'ed, the caller frees it), or NULL when the catalog has
 * none. */
char *melbo_catalog_provenance(sqlite3 *db, const char *bank_id);

/* Sets the "sweep" of bank_id's provenance to the JSON text sweep_json (the grid and this point's
 * values; NULL: null). For the sweeps of issue 19. Returns 0, MELBO_ENOENT (no such bank in the
 * catalog), MELBO_EFORMAT (sweep_json is not JSON) or MELBO_EIO. */
int melbo_catalog_set_sweep(sqlite3 *db, const char *bank_id, const char *sweep_json);

/* ---- the requests (coord/requests.c's dispatch; env valid during the call) ---- */

/* LabelRequest: sets, changes or clears the label and note of one vector; answers LabelReply with
 * the row as it is now (a request with neither label, note nor clear only reads it). */
void melbo_catalog_on_label(struct melbo_client *cl, const Melbo__Envelope *env);
/* SearchRequest: FTS5 over labels, notes, prompts and completions; answers SearchReply, best
 * first, one hit per (bank, vector, field). A text that is not a valid FTS5 query is searched as
 * plain words (each quoted). */
void melbo_catalog_on_search(struct melbo_client *cl, const Melbo__Envelope *env);
/* NearRequest: the top vectors by cosine within the query's model fingerprint, source layer and
 * kind (the query vector itself left out); answers NearReply, highest cosine first. */
void melbo_catalog_on_near(struct melbo_client *cl, const Melbo__Envelope *env);

#endif
