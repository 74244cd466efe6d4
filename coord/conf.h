/*
 * coord/conf.h - the coordinator's limits and policies from STATE/coord.conf: one table
 * (MELBO_COORD_LIMITS), so that every limit has one name, one default, one range and one line of
 * help, and every refusal can name the limit it hit ("limits.max_dp = 64").
 *
 * coord.conf is "key=value" lines; '#' starts a comment. This reader takes the keys of the table
 * (all under "limits."), and leaves the other keys (listen=, launcher=, slurm.*, model_root=,
 * plaintext_loopback=: 1 turns TLS off, loopback listen addresses only) to their own readers.
 * A limits.* key it does not know, or a value out of its range, is an error at serve.
 *
 * Adding a limit is one X(...) line below; the field appears in struct melbo_coord_limits.
 * Layer: a leaf (common/ only).
 */
#ifndef MELBO_COORD_CONF_H
#define MELBO_COORD_CONF_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* X(field, "key", default, min, max, "what it bounds") - every value an integer (int64). */
#define MELBO_COORD_LIMITS(X)                                                                      \
    /* connections (coord/server.c) */                                                             \
    X(connections, "limits.connections", 1024, 1, 1000000, "open connections in total")           \
    X(connections_per_address, "limits.connections_per_address", 64, 1, 1000000,                  \
      "open connections from one peer address")                                                    \
    X(auth_timeout_ms, "limits.auth_timeout_ms", 5000, 100, 600000,                                \
      "time a connection has to authenticate")                                                     \
    X(preauth_frame_bytes, "limits.preauth_frame_bytes", 65536, 1024, 16777216,                    \
      "largest frame before authentication")                                                       \
    X(idle_timeout_s, "limits.idle_timeout_s", 3600, 1, 604800,                                    \
      "seconds an authenticated connection may stay silent (watchers excepted)")                   \
    X(auth_failures_per_minute, "limits.auth_failures_per_minute", 20, 1, 1000000,                 \
      "failed authentications from one address before it is made to wait")                         \
    X(output_bytes, "limits.output_bytes", 268435456, 1048576, 68719476736,                        \
      "bytes buffered for all clients together; the slowest watchers are cut off first")          \
    /* requests (coord/jobspec.c, coord/requests.c) */                                             \
    X(running_jobs_per_user, "limits.running_jobs_per_user", 8, 1, 100000,                         \
      "jobs of one user queued or running at once")                                                \
    X(ranks_per_user, "limits.ranks_per_user", 64, 1, 100000,                                      \
      "ranks (tp x dp) of one user's running jobs together")                                       \
    X(threads_per_user, "limits.threads_per_user", 1024, 1, 10000000,                              \
      "CPU threads of one user's queued and running jobs together (ranks x --threads; a job "     \
      "without --threads counts the coordinator's OMP_NUM_THREADS, else 1, per rank)")            \
    X(max_tp, "limits.max_tp", 64, 1, 4096, "--tp of one job")                                     \
    X(max_dp, "limits.max_dp", 64, 1, 4096, "--dp of one job")                                     \
    X(max_threads, "limits.max_threads", 256, 1, 100000, "--threads of one rank")                  \
    X(max_vectors, "limits.max_vectors", 4096, 1, 10000000, "--vectors of one job")                \
    X(max_steps, "limits.max_steps", 100000, 1, 100000000, "--steps of one job")                   \
    X(max_wave, "limits.max_wave", 1024, 1, 1000000, "--wave of one job")                          \
    X(max_new_tokens, "limits.max_new_tokens", 8192, 1, 10000000, "--max-new-tokens")              \
    X(max_prompts, "limits.max_prompts", 1024, 1, 10000000, "prompts of one job")                  \
    X(max_prompt_bytes, "limits.max_prompt_bytes", 1048576, 1024, 1073741824,                      \
      "bytes of all prompts and system prompts of one job together")                              \
    X(max_init_bytes, "limits.max_init_bytes", 1073741824, 1024, 68719476736,                      \
      "bytes of one job's uploaded --init file")                                                  \
    X(max_list, "limits.max_list", 10000, 1, 10000000, "rows of one ls / bank ls reply")        \
    X(max_sweep_points, "limits.max_sweep_points", 64, 1, 100000,                                  \
      "points of one sweep (--sweep grids; options/sweep.h)")                                      \
    X(disk_reserve_mb, "limits.disk_reserve_mb", 256, 0, 1099511627776LL,                          \
      "MB kept free on the state directory's disk: a submit or a bank that would leave less is "   \
      "refused (the rank keeps its bank and retries)")                                             \
    X(keepalive_s, "limits.keepalive_s", 10, 1, 3600,                                              \
      "seconds between keepalives to watching clients (melbo watch notices silence)")              \
    /* warm jobs (coord/warm.h) */                                                                 \
    X(warm_idle_s, "limits.warm_idle_s", 600, 1, 604800,                                           \
      "seconds a warm job keeps its model loaded without a request before it is released")

struct melbo_coord_limits {
#define MELBO_COORD_LIMIT_FIELD(field, key, def, lo, hi, help) int64_t field;
    MELBO_COORD_LIMITS(MELBO_COORD_LIMIT_FIELD)
#undef MELBO_COORD_LIMIT_FIELD
};

/* Every limit at its default. */
void melbo_coord_limits_defaults(struct melbo_coord_limits *l);

/*
 * Reads the limits.* lines of coord.conf's text into l (defaults first). Returns 0, or
 * MELBO_EINVAL with err naming the line: an unknown limits.* key, a value that is not a whole
 * number, or one outside the key's range.
 */
int melbo_coord_limits_parse(struct melbo_coord_limits *l, const char *text, struct melbo_err *err);

/* "limits.max_dp = 64" style: the key of the field at byte offset off of the struct, or NULL. */
const char *melbo_coord_limit_key(size_t off);

/* Prints every limit with its default and help (for `melbo-coord serve --help` and the docs). */
void melbo_coord_limits_usage(void *file);

#define MELBO_COORD_LIMIT_KEY(field)                                                              \
    melbo_coord_limit_key(offsetof(struct melbo_coord_limits, field))

#ifdef __cplusplus
}
#endif
#endif
