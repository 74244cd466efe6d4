/*
 * coord/coord.h - the coordinator's shared types: the server, its connections, its jobs and the
 * watches that join them. melbo-coord runs one libuv loop on one thread; nothing here is locked.
 *
 * Error regime (style rule 3): every fallible function returns 0 or a negative MELBO_E* / UV_E*
 * code and names the problem in a struct melbo_err. A bad peer gets an Error message and its
 * connection closed; the server never exits because of what a peer sent.
 *
 * Ownership (style rule 8): struct melbo_client embeds its uv_tcp_t first and is freed only in
 * the close callback; every write bundles its uv_write_t with a reference to the bytes it sends
 * (struct melbo_frame_buf, shared by every watcher of one event). Jobs live as long as the
 * server; a job's uv_process_t and kill timer are separate allocations freed in their own close
 * callbacks.
 */
#ifndef MELBO_COORD_COORD_H
#define MELBO_COORD_COORD_H

#include <limits.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "common/err.h"
#include "common/sha256.h"
#include "proto/frame.h"
#include "proto/wire.h"
#include "coord/slurm.h"

#define MELBO_COORD_LOW_WATER (256u * 1024u)  // replay / fetch pump while below this
#define MELBO_COORD_CLIENT_CAP (8u * 1024u * 1024u)  // default hard cap on queued bytes
#define MELBO_COORD_MAX_CLIENTS 4096

struct melbo_job;
struct melbo_client;
struct melbo_argv;

enum melbo_launcher_kind {
    MELBO_LAUNCHER_LOCAL = 0,   // mpirun on the coordinator's host
    MELBO_LAUNCHER_SLURM = 1,   // sbatch / squeue / scancel
};

/* Bytes of one encoded frame, shared by every write that sends them (refcounted). */
struct melbo_frame_buf {
    int refs;
    size_t len;
    uint8_t data[];
};

/* One client's subscription to one job's events. */
struct melbo_watch {
    struct melbo_client *cl;
    struct melbo_job *job;
    uint64_t next;           // number of the next event to send
    uint64_t req_id;         // the WatchRequest's envelope id (WatchEnd carries it)
    int follow;
    struct melbo_watch *next_in_job, *next_in_client;
};

enum melbo_client_kind {
    MELBO_CLIENT_NEW = 0,    // before hello
    MELBO_CLIENT_USER,       // authenticated with a token
    MELBO_CLIENT_RANK,       // rank 0 of a job, authenticated with the job's secret
};

struct melbo_client {
    uv_tcp_t tcp;                    // first member: the handle is the client
    struct melbo_coord *co;
    struct melbo_frame_reader rd;
    enum melbo_client_kind kind;
    int closing;
    int linked;                      // in co->clients (unlinked in the close callback)
    double closed_at;
    char user[64];
    char peer[64];
    struct melbo_watch *watches;
    struct melbo_client *next, *prev;
    /* rank connections */
    struct melbo_job *job;
    FILE *up;                        // bank upload in progress, or NULL
    char up_path[PATH_MAX];
    uint64_t up_off;
    struct melbo_sha256 up_sha;
    int acked_in_read;               // events stored during this read callback (ack once)
    /* fetch in progress */
    FILE *fetch;
    uint64_t fetch_req, fetch_off, fetch_size;
    char fetch_id[72];
    struct melbo_sha256 fetch_sha;
};

struct melbo_job {
    struct melbo_coord *co;
    uint64_t id;
    char user[64];
    int state;                       // MELBO__JOB_STATE__*
    uint8_t *spec;                   // packed JobSpec, owned
    size_t spec_len;
    char secret[65];
    char model[512];
    char name[128];
    int vectors, steps, n_ranks;
    double created, finished;
    char error[1024];
    int failed_rank;
    char bank_id[72];
    uint64_t last_event;             // events 1..last_event are stored
    uint64_t rank_seq;               // last rank event stored
    uint8_t *last_step;              // packed StepInfo of the last STEP event, or NULL
    size_t last_step_len;
    /* launcher */
    uv_process_t *proc;              // while mpirun runs (our child), else NULL
    int pid;                         // mpirun's pid = its process group, 0 when none
    int adopted;                     // running ranks found at restart (not our child)
    int cancel_requested;
    uv_timer_t *kill_timer;
    struct melbo_client *rank;       // rank 0's connection, or NULL
    /* Slurm launcher (coord/slurm.c) */
    char slurm_id[32];               // Slurm's job id; "submitting" while sbatch runs; "" local
    int resubmits;                   // resubmissions after time limits (or local checkpoints)
    char reason[128];                // Slurm's last pending reason reported
    double ended_at;                 // when the job was first seen gone from Slurm (0: not yet)
    struct melbo_watch *watchers;
    struct melbo_job *next;
};

struct melbo_coord {
    uv_loop_t *loop;
    uv_tcp_t listener;
    uv_timer_t tick;
    uv_signal_t sigterm, sigint;
    sqlite3 *db;
    char state_dir[PATH_MAX];
    char address[128];               // host:port actually bound (ranks dial it)
    char rank_binary[PATH_MAX];
    char mpirun[PATH_MAX];
    size_t client_cap;
    int max_running;
    int launcher;                    // MELBO_LAUNCHER_LOCAL or MELBO_LAUNCHER_SLURM
    struct melbo_slurm_conf slurm;
    int slurm_polling;               // an squeue is running
    double slurm_last_poll;
    int n_clients;
    double started;
    struct melbo_client *clients;
    struct melbo_job *jobs;          // newest first
};

/* ---- server.c: connections and writes ---- */
int melbo_coord_listen(struct melbo_coord *co, const char *addr, struct melbo_err *err);
/* Sends env (built) to cl. Returns 0, or a negative code (the client is then being closed). */
int melbo_client_send(struct melbo_client *cl, const Melbo__Envelope *env);
/* Sends a shared frame (takes a reference). Same returns. */
int melbo_client_send_frame(struct melbo_client *cl, struct melbo_frame_buf *fb);
/* Sends Error{code, message} with request id and, when close_after, closes the connection. */
void melbo_client_error(struct melbo_client *cl, uint64_t id, int code, int close_after,
                        const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void melbo_client_close(struct melbo_client *cl);
/* Closes connections that stayed half-closed for more than 5 s (called by the tick timer). */
void melbo_coord_sweep_clients(struct melbo_coord *co);
/* Closes every connection now (server shutdown); callbacks run on the next loop turn. */
void melbo_coord_close_all(struct melbo_coord *co);
size_t melbo_client_queued(const struct melbo_client *cl);
struct melbo_frame_buf *melbo_frame_buf_encode(const Melbo__Envelope *env);
void melbo_frame_buf_unref(struct melbo_frame_buf *fb);

/* ---- requests.c: client requests (after the frame was decoded) ---- */
void melbo_coord_on_client_message(struct melbo_client *cl, const Melbo__Envelope *env);
/* Continues a fetch while cl's queue is below the low-water mark. */
void melbo_coord_fetch_pump(struct melbo_client *cl);

/* ---- ranks.c: rank 0 messages ---- */
void melbo_coord_on_rank_message(struct melbo_client *cl, const Melbo__Envelope *env);
void melbo_coord_rank_hello(struct melbo_client *cl, const Melbo__Envelope *env);
void melbo_coord_rank_after_read(struct melbo_client *cl);
void melbo_coord_rank_gone(struct melbo_client *cl);

/* ---- jobs.c: job table, state machine, event log, watches ---- */
struct melbo_job *melbo_job_find(struct melbo_coord *co, uint64_t id);
/*
 * Appends an event to job's log: number and time are set here, the job's state follows
 * ev->state (which must be set), the event is stored (SQLite) and pushed to every watcher.
 * ev is built by the caller and not kept. Returns 0 or a negative code (the database failed).
 */
int melbo_job_append(struct melbo_coord *co, struct melbo_job *job, Melbo__JobEvent *ev);
/* The same for an event from rank 0 numbered rank_seq (stored with it, for resends). */
int melbo_job_append_ranked(struct melbo_coord *co, struct melbo_job *job, Melbo__JobEvent *ev,
                            uint64_t rank_seq);
/* Appends a STATE event moving job to state (detail/error may be NULL). */
int melbo_job_set_state(struct melbo_coord *co, struct melbo_job *job, int state,
                        const char *detail, const char *error);
int melbo_watch_add(struct melbo_client *cl, struct melbo_job *job, uint64_t from, int follow,
                    uint64_t req_id);
void melbo_watch_pump(struct melbo_watch *w);
void melbo_watch_drop_client(struct melbo_client *cl);
void melbo_jobs_summary(const struct melbo_job *job, Melbo__JobSummary *s);
/* Launches queued jobs while fewer than max_running run. */
void melbo_jobs_schedule(struct melbo_coord *co);

/* ---- launcher.c: the local launcher ---- */
int melbo_launcher_start(struct melbo_coord *co, struct melbo_job *job, struct melbo_err *err);
int melbo_launcher_cancel(struct melbo_coord *co, struct melbo_job *job);
/* Called every second: notices adopted ranks that died while nobody was connected. */
void melbo_launcher_tick(struct melbo_coord *co);
/* Lets go of the mpirun handles (server shutdown; the ranks keep running). */
void melbo_launcher_close_all(struct melbo_coord *co);
int melbo_job_dir(const struct melbo_coord *co, uint64_t id, char *buf, size_t n);
/*
 * Creates job's directory (0700, returned in dir, PATH_MAX bytes) with its secret file and appends
 * `train` and the job's options to av, resuming from the job's checkpoint when an earlier launch
 * left one. Shared by the local and the Slurm launcher.
 */
int melbo_launcher_prepare(struct melbo_coord *co, struct melbo_job *job, const Melbo__JobSpec *spec,
                           char *dir, struct melbo_argv *av, struct melbo_err *err);
/* Writes the job's secret to path (0600). */
int melbo_launcher_write_secret(const char *path, const char *secret, struct melbo_err *err);

/* ---- banks.c: bank store and catalog ---- */
/* Stores the finished upload of cl (verified against sha256 hex) and records it. */
int melbo_bank_store(struct melbo_coord *co, struct melbo_client *cl, const char *sha256_hex,
                     char *bank_id, size_t n, struct melbo_err *err);
/* 1 if id is a well-formed bank id (lowercase hex, 1..64 chars). */
int melbo_bank_id_valid(const char *id);
int melbo_bank_path(const struct melbo_coord *co, const char *id, char *buf, size_t n);

/* ---- tokens.c ---- */
/* Looks up token in the tokens file; fills user (size n). 0, or MELBO_EAUTH. */
int melbo_tokens_check(const char *state_dir, const char *token, char *user, size_t n);
/* Adds user with a fresh token (printed into token_out, 65 bytes). */
int melbo_tokens_add(const char *state_dir, const char *user, char token_out[65],
                     struct melbo_err *err);
int melbo_random_hex(char *out, size_t n_bytes);
/* Constant-time comparison of two NUL-terminated strings. */
int melbo_secret_equal(const char *a, const char *b);

double melbo_coord_now(void);

#endif
