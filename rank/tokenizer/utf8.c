/*
 * rank/tokenizer/utf8.c - UTF-8 decoding with Rust/Python replacement semantics, and the
 * GPT-2 byte <-> character table that byte-level vocabularies are written in.
 *
 * The table (tokenizers/src/pre_tokenizers/byte_level.rs, bytes_to_unicode): the printable
 * bytes '!'..'~', 0xA1..0xAC and 0xAE..0xFF stand for themselves; the 68 others, in byte
 * order, become U+0100, U+0101, ... (a space is 'Ġ' U+0120, a newline 'Ċ' U+010A).
 */
#include "rank/tokenizer/tok_impl.h"

#include <string.h>

#include "common/mem.h" // defines: melbo_xrealloc

static int printable(int b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

/* Filled on first use by tok_cp_to_byte's caller through table_init (load.c calls it). */
const uint16_t tok_byte_to_cp[256] = {
#define R(b) ((b) < 0x21 ? 0x100 + (b) : (b) < 0x7F ? (b) : (b) < 0xA1 ? 0x100 + (b) - 0x5E : \
              (b) == 0xAD ? 0x143 : (b))
    R(0x00), R(0x01), R(0x02), R(0x03), R(0x04), R(0x05), R(0x06), R(0x07), R(0x08), R(0x09),
    R(0x0A), R(0x0B), R(0x0C), R(0x0D), R(0x0E), R(0x0F), R(0x10), R(0x11), R(0x12), R(0x13),
    R(0x14), R(0x15), R(0x16), R(0x17), R(0x18), R(0x19), R(0x1A), R(0x1B), R(0x1C), R(0x1D),
    R(0x1E), R(0x1F), R(0x20), R(0x21), R(0x22), R(0x23), R(0x24), R(0x25), R(0x26), R(0x27),
    R(0x28), R(0x29), R(0x2A), R(0x2B), R(0x2C), R(0x2D), R(0x2E), R(0x2F), R(0x30), R(0x31),
    R(0x32), R(0x33), R(0x34), R(0x35), R(0x36), R(0x37), R(0x38), R(0x39), R(0x3A), R(0x3B),
    R(0x3C), R(0x3D), R(0x3E), R(0x3F), R(0x40), R(0x41), R(0x42), R(0x43), R(0x44), R(0x45),
    R(0x46), R(0x47), R(0x48), R(0x49), R(0x4A), R(0x4B), R(0x4C), R(0x4D), R(0x4E), R(0x4F),
    R(0x50), R(0x51), R(0x52), R(0x53), R(0x54), R(0x55), R(0x56), R(0x57), R(0x58), R(0x59),
    R(0x5A), R(0x5B), R(0x5C), R(0x5D), R(0x5E), R(0x5F), R(0x60), R(0x61), R(0x62), R(0x63),
    R(0x64), R(0x65), R(0x66), R(0x67), R(0x68), R(0x69), R(0x6A), R(0x6B), R(0x6C), R(0x6D),
    R(0x6E), R(0x6F), R(0x70), R(0x71), R(0x72), R(0x73), R(0x74), R(0x75), R(0x76), R(0x77),
    R(0x78), R(0x79), R(0x7A), R(0x7B), R(0x7C), R(0x7D), R(0x7E), R(0x7F), R(0x80), R(0x81),
    R(0x82), R(0x83), R(0x84), R(0x85), R(0x86), R(0x87), R(0x88), R(0x89), R(0x8A), R(0x8B),
    R(0x8C), R(0x8D), R(0x8E), R(0x8F), R(0x90), R(0x91), R(0x92), R(0x93), R(0x94), R(0x95),
    R(0x96), R(0x97), R(0x98), R(0x99), R(0x9A), R(0x9B), R(0x9C), R(0x9D), R(0x9E), R(0x9F),
    R(0xA0), R(0xA1), R(0xA2), R(0xA3), R(0xA4), R(0xA5), R(0xA6), R(0xA7), R(0xA8), R(0xA9),
    R(0xAA), R(0xAB), R(0xAC), R(0xAD), R(0xAE), R(0xAF), R(0xB0), R(0xB1), R(0xB2), R(0xB3),
    R(0xB4), R(0xB5), R(0xB6), R(0xB7), R(0xB8), R(0xB9), R(0xBA), R(0xBB), R(0xBC), R(0xBD),
    R(0xBE), R(0xBF), R(0xC0), R(0xC1), R(0xC2), R(0xC3), R(0xC4), R(0xC5), R(0xC6), R(0xC7),
    R(0xC8), R(0xC9), R(0xCA), R(0xCB), R(0xCC), R(0xCD), R(0xCE), R(0xCF), R(0xD0), R(0xD1),
    R(0xD2), R(0xD3), R(0xD4), R(0xD5), R(0xD6), R(0xD7), R(0xD8), R(0xD9), R(0xDA), R(0xDB),
    R(0xDC), R(0xDD), R(0xDE), R(0xDF), R(0xE0), R(0xE1), R(0xE2), R(0xE3), R(0xE4), R(0xE5),
    R(0xE6), R(0xE7), R(0xE8), R(0xE9), R(0xEA), R(0xEB), R(0xEC), R(0xED), R(0xEE), R(0xEF),
    R(0xF0), R(0xF1), R(0xF2), R(0xF3), R(0xF4), R(0xF5), R(0xF6), R(0xF7), R(0xF8), R(0xF9),
    R(0xFA), R(0xFB), R(0xFC), R(0xFD), R(0xFE), R(0xFF),
#undef R
};

int tok_cp_to_byte(uint32_t cp) {
    if (cp < 0x100)
        return printable((int)cp) ? (int)cp : -1;
    if (cp < 0x100 + 68) {
        /* the n-th non-printable byte */
        int n = (int)(cp - 0x100);
        for (int b = 0; b < 256; b++)
            if (!printable(b) && n-- == 0)
                return b;
    }
    return -1;
}

int tok_utf8_next(const unsigned char *s, size_t n, uint32_t *cp) {
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int need;
    uint32_t v;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
        v = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        v = c & 0x0F;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        v = c & 0x07;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return -1;
    }
    for (int k = 1; k <= need; k++) {
        if ((size_t)k >= n)
            return 0;
        unsigned b = s[k];
        if (b < lo || b > hi)
            return -k;
        lo = 0x80;
        hi = 0xBF;
        v = (v << 6) | (b & 0x3F);
    }
    *cp = v;
    return need + 1;
}

size_t tok_utf8_check(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        int k = tok_utf8_next(u + i, n - i, &cp);
        if (k <= 0)
            return i;
        i += (size_t)k;
    }
    return n;
}

int tok_utf8_put(char *buf, uint32_t cp) {
    unsigned char *b = (unsigned char *)buf;
    if (cp < 0x80) {
        b[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        b[0] = (unsigned char)(0xC0 | (cp >> 6));
        b[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        b[0] = (unsigned char)(0xE0 | (cp >> 12));
        b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    b[0] = (unsigned char)(0xF0 | (cp >> 18));
    b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    b[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

void tok_buf_put(char **buf, size_t *len, size_t *cap, const char *s, size_t n) {
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 64;
        while (*len + n + 1 > c)
            c *= 2;
        *buf = melbo_xrealloc(*buf, c);
        *cap = c;
    }
    if (n > 0) /* s may be NULL with n == 0 (an empty run): memcpy's arguments must not be */
        memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
}

void tok_buf_put_lossy(char **buf, size_t *len, size_t *cap, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0;
    while (i < n) {
        uint32_t cp;
        int k = u[i] < 0x80 ? 1 : tok_utf8_next(u + i, n - i, &cp);
        if (k > 0) {
            i += (size_t)k;
            continue;
        }
        tok_buf_put(buf, len, cap, s + run, i - run);
        tok_buf_put(buf, len, cap, "\xEF\xBF\xBD", 3);
        i += k == 0 ? n - i : (size_t)-k;
        run = i;
    }
    tok_buf_put(buf, len, cap, s + run, n - run);
}
