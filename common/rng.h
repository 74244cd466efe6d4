/*
 * common/rng.h - Philox4x32-10, a counter-based random generator (Salmon et al., SC'11).
 *
 * A stream is named by a 64-bit key and a 64-bit stream id; element i of the stream depends only
 * on (key, stream, i). That is what DESIGN §4 asks of the raw draws g_k: the same numbers for
 * any wave size, rank layout, backend or machine. Normals use Box-Muller on pairs of uniforms
 * computed in double, so they are identical wherever the code runs.
 */
#ifndef MELBO_COMMON_RNG_H
#define MELBO_COMMON_RNG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One Philox4x32-10 block: 4 x 32-bit outputs for counter ctr[4] and key key[2]. */
void melbo_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* Fills out[n] with standard normals: element i of the stream (seed, stream). */
void melbo_rng_normal_f64(uint64_t seed, uint64_t stream, double *out, size_t n);
void melbo_rng_normal_f32(uint64_t seed, uint64_t stream, float *out, size_t n);

#ifdef __cplusplus
}
#endif
#endif
