/*
 * coord/clock.h - wall-clock time as the coordinator records it (job creation and end, event
 * times, bank catalog rows, half-closed connection ages): seconds since the epoch, as a double.
 *
 * Layer: a leaf; any coord/ file may include it.
 */
#ifndef MELBO_COORD_CLOCK_H
#define MELBO_COORD_CLOCK_H

#include <time.h>

/* Seconds since the epoch (CLOCK_REALTIME), with sub-microsecond resolution. Never fails. */
static inline double melbo_coord_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

#endif
