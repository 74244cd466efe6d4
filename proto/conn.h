/*
 * proto/conn.h - a blocking framed connection to the coordinator, for processes without an event
 * loop: the `melbo` CLI and rank 0's coordinator link (rank/link/). Every call has a timeout, so
 * a silent peer can stall a caller for at most that long; nothing here ever retries.
 */
#ifndef MELBO_PROTO_CONN_H
#define MELBO_PROTO_CONN_H

#include "common/err.h"
#include "proto/frame.h"
#include "proto/wire.h"

#ifdef __cplusplus
extern "C" {
#endif

struct melbo_conn {
    int fd; // -1 when closed
    struct melbo_frame_reader rd;
};

/*
 * Connects to addr ("host:port", IPv4/IPv6 literal or a name) within timeout_ms. Returns 0, or
 * MELBO_EINVAL for a malformed address, MELBO_EIO when nothing accepts (err names the address).
 * On error c is left closed (safe to close again).
 */
int melbo_conn_open(struct melbo_conn *c, const char *addr, int timeout_ms, struct melbo_err *err);
void melbo_conn_close(struct melbo_conn *c);

/* Sends len bytes of an already encoded frame, blocking up to timeout_ms. 0 or MELBO_EIO. */
int melbo_conn_send_frame(struct melbo_conn *c, const uint8_t *frame, size_t len, int timeout_ms,
                          struct melbo_err *err);

/* Sends one built envelope (whole frame, blocking up to timeout_ms). 0 or MELBO_EIO. */
int melbo_conn_send(struct melbo_conn *c, const Melbo__Envelope *env, int timeout_ms,
                    struct melbo_err *err);

/*
 * Receives the next envelope within timeout_ms (< 0: wait forever). On success *out is an
 * unpacked envelope owned by the caller (melbo__envelope__free_unpacked). Returns 0, MELBO_EIO
 * (connection closed or broken), MELBO_EMISSING (nothing complete arrived within timeout_ms; the
 * connection is still usable), or MELBO_EPROTO for a frame that is not an envelope.
 */
int melbo_conn_recv(struct melbo_conn *c, int timeout_ms, Melbo__Envelope **out,
                    struct melbo_err *err);

/* Splits "host:port" into host (size n) and port; brackets around IPv6 hosts are removed. */
int melbo_addr_split(const char *addr, char *host, size_t n, int *port);

#ifdef __cplusplus
}
#endif
#endif
