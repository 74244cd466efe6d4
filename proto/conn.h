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
    void *ssl; // the TLS session (an OpenSSL SSL *), NULL on a plaintext connection
    struct melbo_frame_reader rd;
};

/* "sha256:<64 hex digits>": the length of a certificate fingerprint string, with its NUL. */
#define MELBO_FINGERPRINT_LEN 72

/*
 * Connects to addr ("host:port", IPv4/IPv6 literal or a name) within timeout_ms. With a
 * fingerprint ("sha256:HEX", MELBO_COORD_FINGERPRINT) the connection is TLS 1.3 and the
 * coordinator's certificate must have that fingerprint (pinning: no CA, no host name check);
 * NULL or "" connects in plaintext (a coordinator configured with plaintext_loopback=1).
 * Returns 0, or MELBO_EINVAL for a malformed address or fingerprint, MELBO_EIO when nothing
 * accepts or the handshake fails, MELBO_EAUTH when the certificate's fingerprint differs (err
 * names the first 16 hex digits of both). On error c is left closed (safe to close again).
 */
int melbo_conn_open(struct melbo_conn *c, const char *addr, const char *fingerprint,
                    int timeout_ms, struct melbo_err *err);

/* Writes "sha256:<hex>" of the DER encoding of x509 (an OpenSSL X509 *) into out (at least
 * MELBO_FINGERPRINT_LEN bytes). 0, or MELBO_EINVAL. */
int melbo_cert_fingerprint(const void *x509, char *out, size_t n);
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
