/* common/log.c - stderr logger of common/log.h. */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static int log_rank = -1;
static int log_level = -1;

void melbo_log_set_rank(int rank) { log_rank = rank; }

int melbo_log_enabled(enum melbo_log_level level) {
    if (log_level < 0) {
        const char *env = getenv("MELBO_LOG_LEVEL");
        log_level = MELBO_LOG_INFO;
        if (env) {
            if (!strcasecmp(env, "error")) log_level = MELBO_LOG_ERROR;
            else if (!strcasecmp(env, "warn")) log_level = MELBO_LOG_WARN;
            else if (!strcasecmp(env, "debug")) log_level = MELBO_LOG_DEBUG;
        }
    }
    return (int)level <= log_level;
}

void melbo_log(enum melbo_log_level level, const char *fmt, ...) {
    static const char *names[] = {"error", "warn", "info", "debug"};
    if (!melbo_log_enabled(level))
        return;
    char line[2048];
    int n = 0;
    if (log_rank >= 0) {
        char host[64] = "?";
        gethostname(host, sizeof host - 1);
        n = snprintf(line, sizeof line, "%s:%d ", host, log_rank);
    }
    n += snprintf(line + n, sizeof line - (size_t)n, "melbo %s: ", names[level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    n += m < 0 ? 0 : m;
    if (n > (int)sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}
