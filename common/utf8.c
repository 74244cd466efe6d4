/* common/utf8.c - UTF-8 repair (common/utf8.h). */
#include "common/utf8.h"

#include <string.h>

/* Length of the well-formed sequence at s (1..4), or 0 if s does not start one. */
static size_t sequence_len(const unsigned char *s) {
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (len == 0)
        return 0;
    unsigned char lo = 0x80, hi = 0xBF; /* the second byte's range (RFC 3629 table) */
    if (c == 0xE0)
        lo = 0xA0;
    else if (c == 0xED)
        hi = 0x9F;
    else if (c == 0xF0)
        lo = 0x90;
    else if (c == 0xF4)
        hi = 0x8F;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t k = 2; k < len; k++)
        if (s[k] < 0x80 || s[k] > 0xBF)
            return 0;
    return len;
}

size_t melbo_utf8_sanitize(char *dst, size_t n, const char *src) {
    const unsigned char *s = (const unsigned char *)src;
    size_t o = 0;
    while (*s) {
        size_t len = sequence_len(s);
        const char *piece = len ? (const char *)s : "\xEF\xBF\xBD";
        size_t plen = len ? len : 3;
        if (o + plen + 1 > n)
            break;
        memcpy(dst + o, piece, plen);
        o += plen;
        s += len ? len : 1;
    }
    dst[o] = '\0';
    return o;
}
