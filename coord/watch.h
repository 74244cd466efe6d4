/*
 * coord/watch.h - the watch fan-out: clients that watch a job receive its events as they are
 * stored (coord/watch.c).
 *
 * The fan-out subscribes to the job table (coord/jobs.h). When an event is stored it is encoded
 * once and pushed to every watcher of that job that is caught up (one shared frame, one
 * reference per write). A watcher that asked for old events, or fell behind, is "lagging": its
 * next events are read from the database in batches while its connection has fewer than
 * MELBO_WATCH_PACE bytes queued (so one loop turn sends at most that much to each watcher, and
 * 200 replays at once cannot hold the loop), and reading continues from the connection's drain
 * callback; it rejoins the live stream when it reaches the end of the log. Either way a watcher
 * sees every event exactly once, in order, and costs bounded memory. When a watcher has seen the
 * last event of a job in a final state (or of any job, without follow) it is sent WatchEnd and
 * forgotten.
 *
 * Ownership: the fan-out owns every struct melbo_watch; a connection only holds the head of its
 * own list (struct melbo_watch *, NULL when empty) and must call melbo_watch_drop_all() from its
 * closing callback. Watches removed while an event is being pushed are freed after the push, so
 * a watcher's connection may close at any point of it.
 *
 * Layer: above jobs.h and server.h; included by client.h and main.c.
 */
#ifndef MELBO_COORD_WATCH_H
#define MELBO_COORD_WATCH_H

#include <stdint.h>

#include "coord/jobs.h"    // defines: struct melbo_jobs, struct melbo_job
#include "coord/server.h"  // defines: struct melbo_peer

#define MELBO_WATCH_PACE (32u * 1024u)  // a replay continues while fewer bytes are queued
#define MELBO_WATCH_TURN_BYTES (2u * 1024u * 1024u)  // replayed by all watchers in one loop turn

struct melbo_watch_topic;

/* One connection's subscription to one job's events. */
struct melbo_watch {
    struct melbo_fanout *f;
    struct melbo_peer *conn;         // the watching connection (borrowed)
    struct melbo_watch **conn_head;  // the head of conn's list of watches
    struct melbo_job *job;
    uint64_t next;                   // number of the next event to send
    uint64_t req_id;                 // the WatchRequest's envelope id (WatchEnd carries it)
    int follow;
    int dead;                        // removed during a push; freed when the push ends
    int deferred;                    // its replay waits for the next loop turn's budget
    struct melbo_watch *next_in_topic, *next_in_conn;
};

/* The fan-out: the watchers of every watched job. */
struct melbo_fanout {
    struct melbo_jobs *jobs;         // borrowed: events are replayed from jobs->db
    struct melbo_watch_topic *topics;
    int pushing;                     // > 0 while events are pushed: removals are deferred
    int n_dead;                      // watches removed since the last sweep
    /* Replay budget: at most MELBO_WATCH_TURN_BYTES are read from the log and sent per loop
     * turn (uv_now), so hundreds of replays cannot hold the loop between two polls; the rest
     * continue from an idle handle (allocated while some replay waits, closed when none does). */
    uint64_t turn;
    size_t turn_bytes;
    uv_idle_t *idle;
};

/* Starts an empty fan-out over jobs and subscribes it to jobs' events. Returns 0, or what
 * melbo_jobs_subscribe returned. */
int melbo_fanout_init(struct melbo_fanout *f, struct melbo_jobs *jobs);

/* Sends a Keepalive to every connection that watches a job (once per connection), so that a
 * watcher can tell a quiet job from a coordinator gone silent (coord/main.c's tick). */
void melbo_fanout_keepalive(struct melbo_fanout *f, double now);

/* Frees every watch and topic (after the connections are gone: shutdown). */
void melbo_fanout_free(struct melbo_fanout *f);

/*
 * Subscribes conn to job's events from event number from (1 = everything) and sends what is
 * already stored, as far as conn's queue allows. follow: keep watching until a final state;
 * otherwise end at the last stored event. req_id is the WatchRequest's envelope id. The watch is
 * put on *conn_head. Returns 0 or MELBO_ENOMEM (nothing sent then). conn may be closed by the
 * time it returns (a send failed).
 */
int melbo_watch_add(struct melbo_fanout *f, struct melbo_peer *conn,
                    struct melbo_watch **conn_head, struct melbo_job *job, uint64_t from,
                    int follow, uint64_t req_id);

/* conn's queue fell below the low-water mark: the first lagging watch on the list continues
 * (the next drain continues the next one). */
void melbo_watch_drain(struct melbo_watch *conn_head);

/* Forgets every watch on *conn_head (the connection is closing) and empties the list. */
void melbo_watch_drop_all(struct melbo_watch **conn_head);

#endif
