/*
 * proto/wire.h - Envelope helpers over the generated protobuf-c code (proto/melbo.pb-c.h in the
 * build tree): encoding an envelope into one frame, decoding a frame into an envelope, and the
 * names of job states and error codes as DESIGN §3 writes them.
 *
 * Ownership (style rule 10): an envelope passed to melbo_wire_encode is *built* by the caller
 * (MELBO__ENVELOPE__INIT on the stack, pointers borrowed) and is never freed here; an envelope
 * returned by melbo_wire_decode is *unpacked* and owns everything: free it with
 * melbo__envelope__free_unpacked(env, NULL).
 */
#ifndef MELBO_PROTO_WIRE_H
#define MELBO_PROTO_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "proto/frame.h"
#include "proto/melbo.pb-c.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MELBO_PROTOCOL_VERSION 1u

/*
 * Packs env into a new frame (header + payload) of *len bytes in *frame (malloc, owned by the
 * caller). When reserve > 0, that many bytes are left free in front of the frame (for a caller
 * that bundles a header struct with the bytes): *frame then points at the allocation and the
 * frame starts at *frame + reserve. Returns 0, MELBO_ERANGE over MELBO_FRAME_MAX, or
 * MELBO_ENOMEM.
 */
int melbo_wire_encode(const Melbo__Envelope *env, size_t reserve, uint8_t **frame, size_t *len);

/*
 * Unpacks one frame payload. Returns the unpacked envelope, or NULL when the bytes are not a
 * valid Envelope or carry no body (an unknown message type decodes with no body and is refused
 * the same way).
 */
Melbo__Envelope *melbo_wire_decode(const uint8_t *payload, size_t len);

/* "QUEUED", "RUNNING", ... (DESIGN §3); "UNKNOWN" for anything else. Static strings. */
const char *melbo_job_state_name(int state);
/* Parses a state word (any case); returns the enum value or -1. */
int melbo_job_state_parse(const char *s);
/* 1 for DONE, FAILED and CANCELLED. */
int melbo_job_state_terminal(int state);
/* "ERROR_AUTH" -> "auth", ... a short word for an error code. Static strings. */
const char *melbo_wire_error_name(int code);

#ifdef __cplusplus
}
#endif
#endif
