/* common/err.c - the message slot of common/err.h. */
#include "common/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int melbo_err_set(struct melbo_err *err, int code, const char *fmt, ...) {
    if (err == NULL)
        return code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->code = code;
    return code;
}

int melbo_err_prefix(struct melbo_err *err, const char *fmt, ...) {
    if (err == NULL)
        return 0;
    char prefix[512], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    size_t n = strlen(prefix);
    if (n > sizeof err->msg - 3)
        n = sizeof err->msg - 3;
    memcpy(err->msg, prefix, n);
    memcpy(err->msg + n, ": ", 2);
    size_t rest = sizeof err->msg - n - 3, ol = strlen(old);
    if (ol > rest)
        ol = rest;
    memcpy(err->msg + n + 2, old, ol);
    err->msg[n + 2 + ol] = '\0';
    return err->code;
}

const char *melbo_err_name(int code) {
    switch (code) {
    case 0:
        return "OK";
#define XX(name, num, text) \
    case -(num):            \
        return #name;
        MELBO_ERR_MAP(XX)
#undef XX
    default:
        return "EUNKNOWN";
    }
}
