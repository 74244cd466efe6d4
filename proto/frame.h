/*
 * proto/frame.h - length-prefixed framing of DESIGN §4: every message on a socket is a 4-byte
 * big-endian length followed by that many bytes; a length over MELBO_FRAME_MAX is refused.
 *
 * The reader is incremental (style rule 9, modelled on redis' multibulk parser): bytes are fed
 * as they arrive, in pieces of any size, and melbo_frame_reader_next() has three outcomes: "need
 * more bytes" (0), "here is a frame" (1) and "protocol error" (negative). Memory grows only with
 * bytes actually received, never with a declared length, so a peer announcing 16 MiB and sending
 * nothing costs nothing. No protobuf here: frames are opaque bytes.
 */
#ifndef MELBO_PROTO_FRAME_H
#define MELBO_PROTO_FRAME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MELBO_FRAME_HEADER 4u
#define MELBO_FRAME_MAX (16u * 1024u * 1024u)  // largest payload accepted (16 MiB)
#define MELBO_CHUNK_MAX (1u * 1024u * 1024u)   // banks travel in chunks of at most 1 MiB

struct melbo_frame_reader {
    uint8_t *buf;   // owned; bytes [off, len) are unconsumed
    size_t len;     // bytes held
    size_t cap;     // allocated
    size_t off;     // start of the next frame
    size_t max;     // largest payload accepted
};

void melbo_frame_reader_init(struct melbo_frame_reader *r, size_t max);
void melbo_frame_reader_free(struct melbo_frame_reader *r);

/*
 * Appends n bytes. Returns 0, or MELBO_ENOMEM (the reader is unchanged). Consumed bytes are
 * compacted away first, so the buffer never holds more than one partial frame plus n bytes.
 */
int melbo_frame_reader_feed(struct melbo_frame_reader *r, const void *data, size_t n);

/*
 * Takes the next complete frame. Returns 1 with *payload and *len pointing into the reader (valid
 * until the next feed or free), 0 when more bytes are needed, or MELBO_EPROTO when the declared
 * length is over r->max (the stream is unusable after that; close the connection).
 */
int melbo_frame_reader_next(struct melbo_frame_reader *r, const uint8_t **payload, size_t *len);

/* Writes the 4-byte big-endian header for a payload of n bytes. */
void melbo_frame_put_header(uint8_t hdr[4], uint32_t n);

#ifdef __cplusplus
}
#endif
#endif
