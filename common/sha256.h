/*
 * common/sha256.h - SHA-256 (FIPS 180-4), streaming. Used for model fingerprints and bank
 * upload checksums.
 */
#ifndef MELBO_COMMON_SHA256_H
#define MELBO_COMMON_SHA256_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct melbo_sha256 {
    uint32_t state[8];
    uint64_t n_bytes;   // total bytes fed so far
    uint8_t block[64];  // pending partial block
    size_t n_block;     // bytes in block
};

void melbo_sha256_init(struct melbo_sha256 *h);
void melbo_sha256_update(struct melbo_sha256 *h, const void *data, size_t len);
/* Writes the 32-byte digest; h must be re-initialised before reuse. */
void melbo_sha256_final(struct melbo_sha256 *h, uint8_t digest[32]);
/* Writes the lowercase hex digest of digest into hex (65 bytes with the terminator). */
void melbo_sha256_hex(const uint8_t digest[32], char hex[65]);

#ifdef __cplusplus
}
#endif
#endif
