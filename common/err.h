/*
 * common/err.h - error codes and error messages shared by every melbo process.
 *
 * Two regimes (style rule 3): code that a long-running process calls (config and checkpoint
 * loading, the coordinator) returns an int, 0 on success or a negative MELBO_E* code, and fills
 * a caller-owned struct melbo_err with a human-readable message naming the problem. Rank code
 * turns such an error into a fatal exit at the top level (MPI_Abort when running under MPI).
 */
#ifndef MELBO_COMMON_ERR_H
#define MELBO_COMMON_ERR_H

#ifdef __cplusplus
extern "C" {
#endif

/* The one table of error codes: the enum and melbo_err_name() are generated from it. */
#define MELBO_ERR_MAP(XX)                                                                          \
    XX(EINVAL, 1, "invalid argument")                                                              \
    XX(ENOENT, 2, "no such file or directory")                                                     \
    XX(EIO, 3, "input/output error")                                                               \
    XX(ENOMEM, 4, "out of memory")                                                                 \
    XX(EFORMAT, 5, "malformed input")                                                              \
    XX(EUNSUPPORTED, 6, "unsupported")                                                             \
    XX(ERANGE, 7, "value out of range")                                                            \
    XX(ESHAPE, 8, "tensor shape mismatch")                                                         \
    XX(EMISSING, 9, "missing item")                                                                \
    XX(EPROTO, 10, "protocol error")                                                               \
    XX(EAUTH, 11, "authentication failed")                                                         \
    XX(ESTATE, 12, "invalid state")

enum melbo_err_code {
    MELBO_OK = 0,
#define XX(name, num, text) MELBO_##name = -(num),
    MELBO_ERR_MAP(XX)
#undef XX
};

/* A caller-owned error slot. code is 0 or a negative MELBO_E* value; msg is NUL-terminated. */
struct melbo_err {
    int code;
    char msg[1024];
};

/*
 * Records code and a printf-style message in err (err may be NULL, then only the code is
 * returned). Returns code, so that `return melbo_err_set(err, MELBO_EIO, "...")` reads well.
 * A message already recorded is replaced.
 */
int melbo_err_set(struct melbo_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes the message already in err with "prefix: " (adds context on the way up). */
int melbo_err_prefix(struct melbo_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Returns from the enclosing int function when expr yields a negative MELBO_E* code. */
#define MELBO_TRY(expr)                                                                            \
    do {                                                                                           \
        int melbo_r_ = (expr);                                                                     \
        if (melbo_r_ < 0)                                                                          \
            return melbo_r_;                                                                       \
    } while (0)

/* "EINVAL", "EIO", ... for a code; "OK" for 0; "EUNKNOWN" otherwise. Static strings. */
const char *melbo_err_name(int code);

#ifdef __cplusplus
}
#endif
#endif
