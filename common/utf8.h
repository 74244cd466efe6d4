/*
 * common/utf8.h - making text valid UTF-8 before it goes into a protobuf string field (which
 * must hold UTF-8) or a user's terminal.
 */
#ifndef MELBO_COMMON_UTF8_H
#define MELBO_COMMON_UTF8_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Copies the NUL-terminated src into dst (n bytes, n >= 4), replacing every byte that does not
 * start or continue a well-formed UTF-8 sequence (RFC 3629: no overlong forms, no surrogates,
 * nothing above U+10FFFF) with U+FFFD, and cutting only between characters when dst is full.
 * Returns the length written (dst is always NUL-terminated).
 */
size_t melbo_utf8_sanitize(char *dst, size_t n, const char *src);

#ifdef __cplusplus
}
#endif
#endif
