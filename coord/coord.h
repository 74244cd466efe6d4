/*
 * coord/coord.h - struct melbo_coord: the coordinator's settings and the state that the
 * launchers, the scheduler and the request handlers share: the loop, the database, the job
 * table, where ranks find the coordinator, and which launchers exist. It holds no connection:
 * the server, the watch fan-out and the scheduler are separate pieces that main.c wires
 * together (the layering of coord/ is written at the top of main.c).
 *
 * melbo-coord runs one libuv loop on one thread; nothing here is locked. Error regime (style
 * rule 3): every fallible coord/ function returns 0 or a negative MELBO_E* / UV_E* code and
 * names the problem in a struct melbo_err; a bad peer gets an Error message and its connection
 * closed, and the server never exits because of what a peer sent.
 *
 * Layer: above jobs.h and slurm.h (for the site defaults only); included by launcher.h,
 * slurm.c, sched.h, client.h and main.c. Never by jobs.*, server.*, watch.*, db.*, banks.*.
 */
#ifndef MELBO_COORD_COORD_H
#define MELBO_COORD_COORD_H

#include <limits.h>
#include <sqlite3.h>
#include <uv.h>

#include "coord/conf.h"   // defines: struct melbo_coord_limits
#include "coord/jobs.h"   // defines: struct melbo_jobs
#include "coord/slurm.h"  // defines: struct melbo_slurm_conf

#define MELBO_COORD_MAX_LAUNCHERS 4

struct melbo_launcher;
struct melbo_slurm_cmd;
struct melbo_export;

struct melbo_server;

struct melbo_coord {
    uv_loop_t *loop;                 // loop->data points back here (launcher callbacks use it)
    sqlite3 *db;                     // STATE/melbo.db, owned (closed by main.c)
    struct melbo_jobs jobs;          // the job table, its state machine and event log
    char state_dir[PATH_MAX];
    char address[128];               // host:port the server bound (ranks dial it)
    char fingerprint[80];            // "sha256:HEX" of the TLS certificate; "": plaintext
    int plaintext_loopback;          // coord.conf plaintext_loopback=1: no TLS (loopback only)
    char rank_binary[PATH_MAX];
    char mpirun[PATH_MAX];
    int max_running;                 // jobs running at once under a launcher that does not queue
    const struct melbo_launcher *launcher;  // where new jobs start (serve --launcher)
    /* every launcher that may hold a job (a restart may find jobs of another one): ticked every
     * second, asked to cancel the jobs it holds */
    const struct melbo_launcher *launchers[MELBO_COORD_MAX_LAUNCHERS];
    int n_launchers;
    struct melbo_slurm_conf slurm;   // Slurm launcher: site defaults (coord/slurm.h)
    struct melbo_coord_limits limits; // coord.conf's limits.* (coord/conf.h)
    int slurm_polling;               // Slurm launcher: an squeue is running
    double slurm_last_poll;
    struct melbo_slurm_cmd *slurm_cmds;  // Slurm launcher: sbatch / squeue / scancel running
    /* bank exports and reports (coord/export.c): melbo-rank runs on stored banks */
    double export_timeout_s;         // time limit of one run (serve --export-timeout, 300)
    struct melbo_export *exports;    // every export from request to end, in arrival order
    int exports_running;
    struct melbo_server *server;     // the connections (warm jobs send on their rank link)
};

#endif
