/*
 * rank/link/link.h - rank 0's link to the coordinator (DESIGN §2: "rank 0 dials back").
 *
 * When melbo-rank runs under the coordinator's launcher, the environment names the coordinator
 * (MELBO_COORD_ADDR=HOST:PORT), the job (MELBO_JOB_ID) and a 0600 file holding the job's secret
 * (MELBO_JOB_SECRET_FILE). Only rank 0 (OMPI_COMM_WORLD_RANK / PMIX_RANK, else 0) opens the link.
 * Standalone (no environment) nothing here runs and `melbo-rank train` behaves as before.
 *
 * Training never waits for the network: the observer hooks encode an event and append it to an
 * in-memory queue (bounded: past MELBO_LINK_MAX_QUEUED unacknowledged events, further step events
 * are dropped, state changes never); a background thread connects with backoff (0.1 s doubling to
 * 5 s), sends, and drops what the coordinator acknowledges. After a reconnect it resends
 * everything after the last number the coordinator says it stored. At the end the thread
 * uploads the bank in 1 MiB chunks with its sha256 and sends done (or failed with the error);
 * melbo_link_finish waits for the acknowledgement, with a bank up to MELBO_LINK_KEEP_BANK seconds
 * (link.keep_bank, default a day; the caller has released its peers and devices by then), else
 * MELBO_LINK_FINISH_TIMEOUT (default 600), so a coordinator down for a long time still receives
 * the bank; one that never comes back adopts it from the job's directory when it starts.
 */
#ifndef MELBO_RANK_LINK_LINK_H
#define MELBO_RANK_LINK_LINK_H

#include <stdint.h>

#include "rank/train/observer.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MELBO_LINK_MAX_QUEUED 200000

struct melbo_link;

/*
 * Starts the link when the environment asks for one and this process is rank 0; returns NULL
 * otherwise (also when the environment is incomplete: a warning names what is missing).
 */
struct melbo_link *melbo_link_start_from_env(void);

/* A link to the same coordinator (address, pinned certificate) as like, for job_id with its
 * secret: a warm job's rank 0 runs each gen job it is handed under that job's own link. */
struct melbo_link *melbo_link_start_for(const struct melbo_link *like, uint64_t job_id,
                                        const char *secret);

struct Melbo__WarmWork;
/*
 * A warm job's next piece of work: waits until the coordinator sends one (returns 0, *work owned
 * by the caller: melbo__warm_work__free_unpacked), releases the job (1), or the link is dead
 * (-1: refused, or stopped).
 */
int melbo_link_next_work(struct melbo_link *l, struct Melbo__WarmWork **work);

/* Hooks that turn training progress into events (ctx is the link). */
struct melbo_train_observer melbo_link_observer(struct melbo_link *l);

/* Queues a state change (STARTING, RUNNING, ...) with a detail text. */
void melbo_link_state(struct melbo_link *l, const char *state, const char *detail);
/* Queues a log line. */
void melbo_link_log(struct melbo_link *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* gen jobs: queues new text of completion seq (TOKENS), and a whole completion with what it
 * was (COMPLETION; label e.g. "vector 9, prompt 0"). Never dropped. */
void melbo_link_tokens(struct melbo_link *l, int seq, const char *text, size_t len);
void melbo_link_completion(struct melbo_link *l, int seq, const char *label, const char *text);

/* Ends a job that has no bank (gen): reports done once every event is stored; as
 * melbo_link_finish otherwise. */
int melbo_link_done(struct melbo_link *l);

/* A sweep: the step events that follow belong to point k of n ("radius=4 ..."). */
void melbo_link_set_point(struct melbo_link *l, int k, int n, const char *label);

/* A sweep's end: uploads the n banks (paths, each with its sweep JSON; BankUpload.sweep) in
 * order, then reports done; as melbo_link_finish otherwise. */
int melbo_link_finish_banks(struct melbo_link *l, const char *const *paths,
                            const char *const *sweep_json, int n);

/*
 * Ends the link: with bank_path, uploads that file and reports done; with bank_path NULL,
 * reports failed with error. Waits for the coordinator's acknowledgement (see above), then stops
 * the thread and frees l. Returns 0 when acknowledged, -1 otherwise. l may be NULL (no-op).
 */
int melbo_link_finish(struct melbo_link *l, const char *bank_path, const char *error);

#ifdef __cplusplus
}
#endif
#endif
