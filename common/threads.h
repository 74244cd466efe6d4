/*
 * common/threads.h - the OpenMP wait policy every compute process starts with.
 *
 * libgomp's default (active) lets idle worker threads spin between parallel regions. On a
 * machine where anything else runs - a 2-core CI box, a node shared with other ranks - a spinning
 * worker steals the core its peer needs and a step takes up to 20x longer (measured on the tiny
 * golden models: 0.46 ms vs 11.7 ms per vector-step); on an idle machine the two policies run the
 * span benchmark at the same speed. libgomp reads OMP_WAIT_POLICY only at start-up, so
 * melbo_threads_init sets it to passive when the user has not chosen, and re-executes the
 * program once (before MPI or any thread starts).
 */
#ifndef MELBO_COMMON_THREADS_H
#define MELBO_COMMON_THREADS_H

#ifdef __cplusplus
extern "C" {
#endif

/* Call first thing in main(). Returns only when the policy is in place (or re-exec failed). */
void melbo_threads_init(char **argv);

#ifdef __cplusplus
}
#endif
#endif
