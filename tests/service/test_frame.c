/*
 * tests/service/test_frame.c - the frame reader (proto/frame.h) and envelope codec
 * (proto/wire.h): byte-at-a-time feeding, several frames in one read, a zero-length frame, the
 * 16 MiB limit refused from the header alone, garbage and unknown bodies refused by decode.
 */
#include "common/err.h"
#include "proto/frame.h"
#include "proto/wire.h"
#include "tests/test.h"

int main(void) {
    Melbo__Hello h = MELBO__HELLO__INIT;
    h.has_protocol_version = 1;
    h.protocol_version = 1;
    h.token = "abc";
    Melbo__Envelope env = MELBO__ENVELOPE__INIT;
    env.has_id = 1;
    env.id = 7;
    env.body_case = MELBO__ENVELOPE__BODY_HELLO;
    env.hello = &h;
    uint8_t *f;
    size_t n;
    ASSERT_OK(melbo_wire_encode(&env, 0, &f, &n));
    /* two frames plus a zero-length one, fed one byte at a time */
    uint8_t stream[512];
    memcpy(stream, f, n);
    memcpy(stream + n, f, n);
    memset(stream + 2 * n, 0, 4);
    size_t total = 2 * n + 4;
    struct melbo_frame_reader r;
    melbo_frame_reader_init(&r, MELBO_FRAME_MAX);
    int frames = 0, empty = 0;
    for (size_t i = 0; i < total; i++) {
        ASSERT_OK(melbo_frame_reader_feed(&r, stream + i, 1));
        const uint8_t *p;
        size_t len;
        int k;
        while ((k = melbo_frame_reader_next(&r, &p, &len)) == 1) {
            if (len == 0) {
                empty++;
                ASSERT(melbo_wire_decode(p, len) == NULL);  // no body: refused
                continue;
            }
            Melbo__Envelope *e = melbo_wire_decode(p, len);
            ASSERT(e != NULL);
            ASSERT_EQ(e->id, 7);
            ASSERT(strcmp(e->hello->token, "abc") == 0);
            melbo__envelope__free_unpacked(e, NULL);
            frames++;
        }
        ASSERT_EQ(k, 0);
    }
    ASSERT_EQ(frames, 2);
    ASSERT_EQ(empty, 1);
    /* all in one read */
    ASSERT_OK(melbo_frame_reader_feed(&r, stream, total));
    const uint8_t *p;
    size_t len;
    ASSERT_EQ(melbo_frame_reader_next(&r, &p, &len), 1);
    ASSERT_EQ(melbo_frame_reader_next(&r, &p, &len), 1);
    ASSERT_EQ(melbo_frame_reader_next(&r, &p, &len), 1);
    ASSERT_EQ(melbo_frame_reader_next(&r, &p, &len), 0);
    /* oversized: refused from the 4 header bytes, nothing allocated for it */
    uint8_t big[4];
    melbo_frame_put_header(big, MELBO_FRAME_MAX + 1);
    ASSERT_OK(melbo_frame_reader_feed(&r, big, 4));
    ASSERT_EQ(melbo_frame_reader_next(&r, &p, &len), MELBO_EPROTO);
    ASSERT(r.cap < 1024 * 1024);
    melbo_frame_reader_free(&r);
    /* garbage and unknown bodies */
    uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff};
    ASSERT(melbo_wire_decode(junk, sizeof junk) == NULL);
    uint8_t unknown[] = {0x08, 0x01, 0x9a, 0x06, 0x01, 0x00};  // id 1, field 99
    ASSERT(melbo_wire_decode(unknown, sizeof unknown) == NULL);
    free(f);
    printf("ok   frame reader and envelope codec\n");
    return test_exit_code();
}
