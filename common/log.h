/*
 * common/log.h - one-line log messages on stderr.
 *
 * Level from MELBO_LOG_LEVEL (error, warn, info, debug; default info). Each line is written
 * with one write() so that lines from several ranks do not interleave, prefixed with
 * "host:rank" once melbo_log_set_rank() has been called.
 */
#ifndef MELBO_COMMON_LOG_H
#define MELBO_COMMON_LOG_H

#ifdef __cplusplus
extern "C" {
#endif

enum melbo_log_level {
    MELBO_LOG_ERROR = 0,
    MELBO_LOG_WARN = 1,
    MELBO_LOG_INFO = 2,
    MELBO_LOG_DEBUG = 3,
};

void melbo_log_set_rank(int rank);
int melbo_log_enabled(enum melbo_log_level level);
void melbo_log(enum melbo_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#ifdef __cplusplus
}
#endif
#endif
