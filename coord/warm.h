/*
 * coord/warm.h - warm jobs (issue 19). `melbo warm --bank ID` (or --model NAME) starts ranks that
 * load the model once (`melbo-rank gen --warm`, rank/cmd_gen.c) and then serve the gen jobs of
 * that model the coordinator hands them: WarmWork on the warm job's rank link names the gen job,
 * its secret and its command line, and rank 0 runs it under that job's own link. A gen job so
 * served takes no launcher slot and starts in milliseconds instead of a process start and a
 * model load.
 *
 * Scheduling: at each scheduler pass a queued gen job goes to an idle, connected warm job of the
 * same model (the resolved path), if there is one; else it is launched cold. A warm job serves
 * one gen job at a time (chat turns are sequential; others wait or go cold).
 * Ending: after coord.conf limits.warm_idle_s seconds without work the coordinator sends
 * WarmRelease and the ranks report done (DONE, "released after N s idle"); a cancel stops them like any job.
 * A gen job whose warm job ends under it fails with that reason.
 *
 * State (not persisted: a restarted coordinator finds the warm job's rank reconnecting and
 * treats it as idle): job->warm_host on a gen job, job->warm_serving on a warm job.
 */
#ifndef MELBO_COORD_WARM_H
#define MELBO_COORD_WARM_H

#include "coord/coord.h"
#include "coord/job.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Subscribes to the job table (a gen job that ends frees its warm job; a warm job that ends
 * fails the gen job it served). Returns 0 or a negative code. */
int melbo_warm_init(struct melbo_coord *co);

/* Hands the queued gen job to an idle warm job of its model. Returns 1 when handed over (the job
 * is STARTING), 0 when there is none (launch it cold). */
int melbo_warm_dispatch(struct melbo_coord *co, struct melbo_job *gen);

/* Every second: warm jobs idle for limits.warm_idle_s are released. */
void melbo_warm_tick(struct melbo_coord *co);

#ifdef __cplusplus
}
#endif
#endif
