/*
 * coord/tokens.h - user tokens and the small secrets around them (coord/tokens.c).
 *
 * STATE/tokens (0600) holds one line "NAME SHA256HEX" per user; a token itself is printed once
 * (by `init` and `token add`) and never stored. Lookups re-read the file, so a user added while
 * the coordinator runs is accepted at once. Every comparison of secrets is constant-time.
 *
 * Layer: a leaf (common/ only); included by main.c and client.h's request handlers.
 */
#ifndef MELBO_COORD_TOKENS_H
#define MELBO_COORD_TOKENS_H

#include <stddef.h>

#include "common/err.h"

/*
 * Looks token up in STATE/tokens. On a match copies the user's name into user (n bytes, NUL-
 * terminated) and returns 0; otherwise returns MELBO_EAUTH and leaves user untouched. A missing
 * or unreadable tokens file, an empty token or one over 256 bytes is MELBO_EAUTH too.
 */
int melbo_tokens_check(const char *state_dir, const char *token, char *user, size_t n);

/*
 * Adds user (letters, digits, '-', '_', '.'; 1 to 60 characters) with a fresh random token:
 * appends its hash to STATE/tokens (created 0600, fsynced) and writes the token (64 hex digits
 * and a NUL) into token_out. Returns 0, or MELBO_EINVAL / MELBO_ERANGE / MELBO_EIO with the
 * reason in err.
 */
int melbo_tokens_add(const char *state_dir, const char *user, char token_out[65],
                     struct melbo_err *err);

/*
 * Writes 2 * n_bytes lowercase hex digits from /dev/urandom and a NUL into out (2 * n_bytes + 1
 * bytes). n_bytes is at most 64. Returns 0, MELBO_ERANGE or MELBO_EIO.
 */
int melbo_random_hex(char *out, size_t n_bytes);

/* 1 when the two NUL-terminated strings are equal, else 0, in time that depends only on their
 * lengths (for job secrets and token hashes). */
int melbo_secret_equal(const char *a, const char *b);

#endif
