/*
 * coord/db.h - the coordinator's SQLite database (STATE/melbo.db, WAL): the job table, every
 * job's numbered event log and the bank catalog. All persistence goes through here.
 *
 * Durability: WAL with synchronous=NORMAL survives a kill -9 of the coordinator (what the issue
 * asks); every event is committed before it is sent to any watcher, so a watcher never sees an
 * event that a restart forgets.
 *
 * Layer: above job.h only; included by jobs.c, the launchers, the request handlers and main.c.
 * Every function returns 0 or a negative MELBO_E* code unless it says otherwise.
 */
#ifndef MELBO_COORD_DB_H
#define MELBO_COORD_DB_H

#include <sqlite3.h>
#include <stdint.h>

#include "common/err.h"
#include "coord/job.h"  // defines: struct melbo_job
#include "proto/melbo.pb-c.h"

/* Opens (creating if needed) the database at path and its schema. */
int melbo_db_open(const char *path, sqlite3 **db, struct melbo_err *err);

/* Inserts a new job (its id is assigned and written to job->id). */
int melbo_db_job_insert(sqlite3 *db, struct melbo_job *job, struct melbo_err *err);
/* Writes the job's mutable columns (state, error, bank, pid, finished, ...). */
int melbo_db_job_update(sqlite3 *db, const struct melbo_job *job);
/*
 * Loads every job of the table and prepends each to *list, so that *list ends newest first;
 * last_event and rank_seq come from the event log. The jobs are malloc'ed and owned by the list
 * (coord/jobs.h frees them). On failure the jobs loaded so far stay on *list.
 */
int melbo_db_jobs_load(sqlite3 *db, struct melbo_job **list, struct melbo_err *err);

/* Stores one event (packed JobEvent) of job; rank_seq is 0 for coordinator events. */
int melbo_db_event_insert(sqlite3 *db, uint64_t job_id, uint64_t num, uint64_t rank_seq,
                          const uint8_t *blob, size_t len);
/*
 * Calls fn for events number >= from of job, in order, at most max of them. fn gets the packed
 * JobEvent (valid during the call) and returns 0 to go on. Returns the number of events visited
 * or a negative code.
 */
int melbo_db_events_read(sqlite3 *db, uint64_t job_id, uint64_t from, int max,
                         int (*fn)(void *ctx, uint64_t num, const uint8_t *blob, size_t len),
                         void *ctx);

/* The bank catalog. info is built (strings borrowed). */
int melbo_db_bank_insert(sqlite3 *db, const Melbo__BankInfo *info, const char *path);
/*
 * Visits catalog rows matching filter (NULL fields match all; model and prompt are substrings),
 * newest first, at most limit. fn gets a BankInfo whose strings are valid during the call.
 */
int melbo_db_banks_query(sqlite3 *db, const Melbo__ListBanksRequest *filter, const char *id,
                         int (*fn)(void *ctx, const Melbo__BankInfo *info), void *ctx);

int melbo_db_begin(sqlite3 *db);
int melbo_db_commit(sqlite3 *db);

#endif
