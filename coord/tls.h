/*
 * coord/tls.h - the coordinator's TLS (OpenSSL, TLS 1.3 only): the key and self-signed
 * certificate in the state directory (STATE/tls.key, 0600, EC P-256; STATE/tls.crt), the server
 * context made from them, and the certificate's fingerprint ("sha256:" and the hex of the
 * SHA-256 of its DER encoding) that clients pin: MELBO_COORD_FINGERPRINT. No CA, no host names:
 * the fingerprint is the trust.
 *
 * One connection's TLS runs over two memory BIOs (server.c): bytes read from the socket go into
 * the read BIO, SSL_read gives the plaintext to the frame reader, SSL_write encrypts a frame and
 * the write BIO's bytes are sent with uv_write. Nothing here touches a socket.
 *
 * Layer: a leaf (OpenSSL and common/ only).
 */
#ifndef MELBO_COORD_TLS_H
#define MELBO_COORD_TLS_H

#include <stddef.h>

#include "common/err.h"

/*
 * Makes STATE/tls.key and STATE/tls.crt when the key is missing (*created set to 1), and writes
 * the certificate's fingerprint into fp (at least 80 bytes). Returns 0 or MELBO_EIO with err.
 */
int melbo_tls_ensure(const char *state_dir, char *fp, size_t n, int *created,
                     struct melbo_err *err);

/* A TLS 1.3-only server context (an OpenSSL SSL_CTX *) from STATE/tls.key and STATE/tls.crt, or
 * NULL with err. */
void *melbo_tls_server_ctx(const char *state_dir, struct melbo_err *err);

/* Frees a context melbo_tls_server_ctx returned (NULL: nothing). */
void melbo_tls_ctx_free(void *ctx);

/* Nonzero when host (of a listen address) is a loopback address: 127.0.0.0/8, ::1, localhost. */
int melbo_tls_is_loopback(const char *host);

#endif
