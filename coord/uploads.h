/*
 * coord/uploads.h - files a user uploads for a job (`melbo submit --init FILE`): InputUpload
 * chunks written to STATE/uploads/CONN-OPTION.part (0600) while the connection lasts, then
 * taken by that connection's SubmitRequest and moved into the job's directory. The coordinator
 * never opens the path the user named; it only writes the bytes it was sent, up to
 * limits.max_init_bytes.
 *
 * One upload per (connection, option). An upload whose connection is gone is removed the next
 * time any upload or submit runs; `serve` start empties STATE/uploads.
 * Layer: above server.h and conf.h (a connection is known by its id only).
 */
#ifndef MELBO_COORD_UPLOADS_H
#define MELBO_COORD_UPLOADS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "coord/conf.h"
#include "coord/server.h"
#include "proto/melbo.pb-c.h"

/*
 * One chunk from connection conn (of srv) under state; lim->max_init_bytes bounds total_size.
 * Returns 0 (the chunk is stored; *received is the upload's size so far), or a negative code
 * with err set (the upload is dropped).
 */
int melbo_upload_chunk(struct melbo_server *srv, uint64_t conn, const char *state,
                       const struct melbo_coord_limits *lim, const Melbo__InputUpload *u,
                       uint64_t *received, struct melbo_err *err);

/*
 * Takes connection conn's finished upload of option: its file's path into path (n bytes); the
 * caller now owns the file (renames or unlinks it). Returns 0, or MELBO_EMISSING with err.
 */
int melbo_upload_take(struct melbo_server *srv, uint64_t conn, const char *option, char *path,
                      size_t n, struct melbo_err *err);

/* `serve` start: creates STATE/uploads (0700) and removes what an earlier run left there. */
void melbo_uploads_init(const char *state);

#endif
