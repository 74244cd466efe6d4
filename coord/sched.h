/*
 * coord/sched.h - the scheduler: starts queued jobs, oldest first, on the launcher in use, while
 * fewer than co->max_running run (a launcher that queues jobs itself, Slurm, gets every queued
 * job at once).
 *
 * Scheduling runs after a state change, never inside one. The scheduler subscribes to the job
 * table: a STATE event (a job queued, a slot freed, ...) only marks a pass as pending by starting
 * a uv_idle handle, and the idle callback stops the handle and runs one pass on the next loop
 * turn. So melbo_job_set_state() never re-enters the launchers, a pass sees every change made by
 * the callback that preceded it, and a freed slot starts the next queued job one loop turn
 * later. A pass's own launches and launch failures are state changes too; they only mark another
 * pass, which finds nothing to do.
 *
 * Ownership: struct melbo_sched embeds its idle handle; melbo_sched_close() closes it (shutdown),
 * after which requests are ignored. The memory must stay valid until the loop has run the close.
 *
 * Layer: above launcher.h; included by main.c only.
 */
#ifndef MELBO_COORD_SCHED_H
#define MELBO_COORD_SCHED_H

#include <uv.h>

#include "coord/coord.h"  // defines: struct melbo_coord

struct melbo_sched {
    uv_idle_t idle;                  // active while a pass is pending
    struct melbo_coord *co;          // borrowed
    int open;                        // idle initialised and not closed
};

/* Initialises the idle handle on co->loop and subscribes to co->jobs. Returns 0 or a negative
 * code (nothing to close then). */
int melbo_sched_init(struct melbo_sched *s, struct melbo_coord *co);

/* Marks a pass as pending (it runs on the next loop turn; several requests make one pass).
 * Ignored after melbo_sched_close(). */
void melbo_sched_request(struct melbo_sched *s);

/* Closes the idle handle; a pending pass does not run. Calling it again does nothing. */
void melbo_sched_close(struct melbo_sched *s);

#endif
