/*
 * coord/tokens.h - user tokens and the small secrets around them (coord/tokens.c).
 *
 * STATE/tokens (0600) holds one line "NAME SHA256HEX [admin]" per user; a token itself is printed
 * once (by `init`, `token add` and `token rotate`) and never stored. Lookups re-read the file, so
 * a user added, removed or given a new token while the coordinator runs is accepted or refused
 * at the next authentication (connections already authenticated keep their session). Every
 * comparison of secrets is constant-time.
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

/* melbo_tokens_check, and *admin (when not NULL) set to 1 for a user with the admin role. */
int melbo_tokens_check_role(const char *state_dir, const char *token, char *user, size_t n,
                            int *admin);

enum melbo_token_change {
    MELBO_TOKEN_ADD,        // a new user (refused when the name has a token)
    MELBO_TOKEN_ADD_ADMIN,  // a new user with the admin role
    MELBO_TOKEN_ROTATE,     // a new token for an existing user (role kept); the old one stops
    MELBO_TOKEN_REMOVE,     // the user's token stops working (token_out untouched)
};

/*
 * Changes user's line of STATE/tokens (rewritten atomically, 0600, under an flock of
 * STATE/tokens.lock); for ADD, ADD_ADMIN and ROTATE writes the fresh token (64 hex digits and a
 * NUL) into token_out. Returns 0, or MELBO_EINVAL (bad name), MELBO_ESTATE (add of a known user),
 * MELBO_ENOENT (remove / rotate of an unknown one), MELBO_EIO with the reason in err.
 */
int melbo_tokens_change(const char *state_dir, const char *user, enum melbo_token_change how,
                        char token_out[65], struct melbo_err *err);

/*
 * Adds user (letters, digits, '-', '_', '.'; 1 to 60 characters) with a fresh random token:
 * melbo_tokens_change(..., MELBO_TOKEN_ADD, ...).
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
