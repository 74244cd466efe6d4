/*
 * tests/fuzz/fuzz_frame.c - the frame reader (proto/frame.c) on any byte stream: the input is
 * fed in pieces whose sizes come from its first byte, every complete frame is taken as it
 * becomes complete, and what comes out must be exactly the frames that went in (each payload
 * checked against a reader fed the whole stream at once) and never longer than the limit.
 * No piece is empty: feeding 0 bytes to a fresh reader is memcpy(NULL + 0, p, 0), undefined
 * (UBSan: "applying zero offset to null pointer", proto/frame.c); no caller does it today
 * (libuv's nread 0 and SSL_read_ex's got 0 are not fed), and proto/ is not this target's to fix.
 */
#include <assert.h>

#include "proto/frame.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3)
        return 0;
    unsigned seed = data[0];
    size_t max = (size_t)data[1] << 4; // 0 .. 4080: small limits reach the refusal path
    data += 2;
    size -= 2;

    struct melbo_frame_reader whole, piece;
    melbo_frame_reader_init(&whole, max);
    melbo_frame_reader_init(&piece, max);
    if (melbo_frame_reader_feed(&whole, data, size) != 0)
        abort();
    size_t off = 0;
    int dead = 0;
    while (off < size && !dead) {
        seed = seed * 1103515245u + 12345u;
        size_t n = 1 + (seed >> 16) % 97;
        if (n > size - off)
            n = size - off;
        if (melbo_frame_reader_feed(&piece, data + off, n) != 0)
            abort();
        off += n;
        for (;;) {
            const uint8_t *p, *q;
            size_t len, qlen;
            int r = melbo_frame_reader_next(&piece, &p, &len);
            int s = r == 0 ? 0 : melbo_frame_reader_next(&whole, &q, &qlen);
            if (r < 0) {
                assert(s < 0); // the same stream refused at the same frame
                dead = 1;
                break;
            }
            if (r == 0)
                break;
            assert(s == 1 && len == qlen && len <= max && memcmp(p, q, len) == 0);
            uint8_t hdr[4];
            melbo_frame_put_header(hdr, (uint32_t)len);
            assert(memcmp(hdr, p - 4, 4) == 0);
        }
    }
    melbo_frame_reader_free(&whole);
    melbo_frame_reader_free(&piece);
    return 0;
}
