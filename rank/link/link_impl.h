/*
 * rank/link/link_impl.h - the inside of struct melbo_link, shared by link.c (the queue the
 * training thread fills, the events, start and finish) and sender.c (the background thread that
 * drains the queue to the coordinator and uploads the bank). Nothing outside rank/link/ includes
 * it.
 *
 * Queue: a singly linked list of encoded RankEvent envelopes, numbered consecutively from a start
 * taken from the wall clock (melbo_link_start_from_env says why).
 * `sent` points at the first one not yet written on the current connection; acknowledged ones
 * are freed from the head. A reconnect rewinds `sent` to the head after dropping what the
 * coordinator says it has (RankHelloOk.last_seq).
 *
 * Locking: mu guards the queue and the end-of-job flags; the training thread holds it only to
 * number, link or count items, the sender thread never holds it during I/O. bank_path and error
 * are set by melbo_link_finish under mu together with `finishing`; from then on only the sender
 * thread touches them (send_end replaces an unreadable bank by an error) until
 * melbo_link_finish has joined it and frees them.
 */
#ifndef MELBO_RANK_LINK_LINK_IMPL_H
#define MELBO_RANK_LINK_LINK_IMPL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "rank/link/link.h"

/* Reconnecting (issue 22): exponential back-off from the floor (MELBO_LINK_FLOOR seconds in the
 * environment overrides it) doubling to the maximum, +-25% jitter, reset only once the
 * coordinator acknowledges something; a refusal that repeats is logged once per
 * MELBO_LINK_LOG_EVERY seconds with the count of repeats. */
#define MELBO_LINK_FLOOR_S 0.1
#define MELBO_LINK_BACKOFF_MAX_S 30.0
#define MELBO_LINK_LOG_EVERY 60.0

/* One queued event: owned by the queue from enqueue until acknowledged (or the link ends). */
struct melbo__link_item {
    uint64_t seq;
    int is_step;
    uint8_t *frame; // encoded envelope (header + payload)
    size_t len;
    struct melbo__link_item *next;
};

/* The link; allocated by melbo_link_start_from_env, freed by melbo_link_finish. */
struct melbo_link {
    char addr[256];
    uint64_t job_id;
    char secret[128];
    char fingerprint[80];  // the coordinator's certificate (secret file's 2nd line); "": plaintext
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv; // signalled on new items, finish, and ack of done
    struct melbo__link_item *head, *tail, *sent;
    size_t n_items;
    uint64_t next_seq;
    long dropped;
    /* end of the job */
    int finishing;   // 1 once melbo_link_finish was called
    char *bank_path; // upload this (or NULL with error)
    char **banks;    // melbo_link_finish_banks: upload these (n_banks), each with its sweep JSON
    char **sweeps;
    int n_banks;
    int point, points; // the sweep point of the step events (points 0: no sweep)
    char point_label[128];
    int no_bank;     // melbo_link_done: done without a bank
    char *error;
    int acked_done; // the coordinator acknowledged done / failed
    int dead;       // refused by the coordinator (wrong secret): stop trying
    /* a warm job's work from the coordinator (read by the sender thread, taken by
     * melbo_link_next_work); a fixed ring, the coordinator sends one at a time */
    struct Melbo__WarmWork *work[8];
    int n_work;
    int released;   // WarmRelease arrived
    /* the sender thread's own (no lock): back-off reset and repeated-error logging */
    int progress;            // an acknowledgement arrived since the last turn
    char last_error[256];    // the last refusal logged
    double last_error_at;    // when (mono_s)
    long repeats;            // times it came again since
    int stop;
};

/* Frees the queued items with seq <= upto, advancing head (and sent, tail). Caller holds mu. */
void melbo__link_drop_acked(struct melbo_link *l, uint64_t upto);

/* The sender thread (sender.c): runs until stop, a refusal (dead) or the acknowledged end. */
void *melbo__link_thread(void *arg);

#endif
