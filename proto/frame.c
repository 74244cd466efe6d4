/* proto/frame.c - incremental reader for 4-byte big-endian length-prefixed frames. */
#include "proto/frame.h"

#include <stdlib.h>
#include <string.h>

#include "common/err.h"

void melbo_frame_reader_init(struct melbo_frame_reader *r, size_t max) {
    memset(r, 0, sizeof *r);
    r->max = max;
}

void melbo_frame_reader_free(struct melbo_frame_reader *r) {
    free(r->buf);
    memset(r, 0, sizeof *r);
}

int melbo_frame_reader_feed(struct melbo_frame_reader *r, const void *data, size_t n) {
    if (n == 0) /* nothing to add (and buf may still be NULL) */
        return 0;
    if (r->off > 0) {  // compact: drop consumed frames
        memmove(r->buf, r->buf + r->off, r->len - r->off);
        r->len -= r->off;
        r->off = 0;
    }
    if (r->len == 0 && r->cap > 65536) {  // a drained large frame gives its memory back
        free(r->buf);
        r->buf = NULL;
        r->cap = 0;
    }
    if (r->len + n > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + n)
            cap *= 2;
        uint8_t *nb = realloc(r->buf, cap);
        if (nb == NULL)
            return MELBO_ENOMEM;
        r->buf = nb;
        r->cap = cap;
    }
    memcpy(r->buf + r->len, data, n);
    r->len += n;
    return 0;
}

int melbo_frame_reader_next(struct melbo_frame_reader *r, const uint8_t **payload, size_t *len) {
    size_t avail = r->len - r->off;
    if (avail < MELBO_FRAME_HEADER)
        return 0;
    const uint8_t *h = r->buf + r->off;
    uint32_t n = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
    if (n > r->max)
        return MELBO_EPROTO;
    if (avail - MELBO_FRAME_HEADER < n)
        return 0;
    *payload = h + MELBO_FRAME_HEADER;
    *len = n;
    r->off += MELBO_FRAME_HEADER + n;
    if (r->off == r->len)
        r->off = r->len = 0;
    return 1;
}

void melbo_frame_put_header(uint8_t hdr[4], uint32_t n) {
    hdr[0] = (uint8_t)(n >> 24);
    hdr[1] = (uint8_t)(n >> 16);
    hdr[2] = (uint8_t)(n >> 8);
    hdr[3] = (uint8_t)n;
}
