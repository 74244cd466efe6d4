/* common/rng.c - Philox4x32-10 and Box-Muller normals (common/rng.h). */
#include "common/rng.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void melbo_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3], k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0, p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        uint32_t n3 = (uint32_t)p0;
        c0 = n0;
        c1 = n1;
        c2 = n2;
        c3 = n3;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

/* Uniform in (0, 1] from 64 random bits (53 used): never 0, so log() is finite. */
static double u01(uint32_t hi, uint32_t lo) {
    uint64_t x = ((uint64_t)hi << 32 | lo) >> 11;
    return ((double)x + 1.0) * (1.0 / 9007199254740992.0);
}

/* Normals 2*block and 2*block+1 of the stream (seed, stream). */
static void normal_pair(uint64_t seed, uint64_t stream, uint64_t block, double out[2]) {
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    uint32_t ctr[4] = {(uint32_t)block, (uint32_t)(block >> 32), (uint32_t)stream,
                       (uint32_t)(stream >> 32)};
    uint32_t r[4];
    melbo_philox4x32(ctr, key, r);
    double rad = sqrt(-2.0 * log(u01(r[0], r[1]))), ang = 2.0 * M_PI * u01(r[2], r[3]);
    out[0] = rad * cos(ang);
    out[1] = rad * sin(ang);
}

void melbo_rng_normal_f64(uint64_t seed, uint64_t stream, double *out, size_t n) {
    for (size_t i = 0; i < n; i += 2) {
        double pair[2];
        normal_pair(seed, stream, i / 2, pair);
        out[i] = pair[0];
        if (i + 1 < n)
            out[i + 1] = pair[1];
    }
}

void melbo_rng_normal_f32(uint64_t seed, uint64_t stream, float *out, size_t n) {
    for (size_t i = 0; i < n; i += 2) {
        double pair[2];
        normal_pair(seed, stream, i / 2, pair);
        out[i] = (float)pair[0];
        if (i + 1 < n)
            out[i + 1] = (float)pair[1];
    }
}
