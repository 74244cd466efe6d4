/*
 * tests/test.h - assertions for melbo's C tests (libuv task.h style: our own asserts, never
 * compiled out, printing the expression and both values).
 *
 * Every test is its own executable registered with CTest (tests/CMakeLists.txt) with a label
 * (cpu, mpi, slurm, gpu) and a timeout. A test returns 0 only when every assertion held:
 * ASSERT_* abort the test at the first failure; CHECK_* record the failure and go on, and
 * test_exit_code() turns the record into the exit status.
 */
#ifndef MELBO_TESTS_TEST_H
#define MELBO_TESTS_TEST_H

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_failures = 0;

#define TEST_FAIL_(...)                                                 \
    do {                                                                \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                 \
        fprintf(stderr, __VA_ARGS__);                                   \
        fprintf(stderr, "\n");                                          \
    } while (0)

#define ASSERT(expr)                                                    \
    do {                                                                \
        if (!(expr)) {                                                  \
            TEST_FAIL_("assertion failed: %s", #expr);                  \
            abort();                                                    \
        }                                                               \
    } while (0)

#define ASSERT_EQ(a, b)                                                                \
    do {                                                                               \
        int64_t a_ = (int64_t)(a), b_ = (int64_t)(b);                                  \
        if (a_ != b_) {                                                                \
            TEST_FAIL_("%s == %s failed: %" PRId64 " vs %" PRId64, #a, #b, a_, b_);    \
            abort();                                                                   \
        }                                                                              \
    } while (0)

#define ASSERT_OK(expr) ASSERT_EQ((expr), 0)

#define ASSERT_STR_CONTAINS(hay, needle)                                            \
    do {                                                                            \
        const char *h_ = (hay), *n_ = (needle);                                     \
        if (h_ == NULL || strstr(h_, n_) == NULL) {                                 \
            TEST_FAIL_("expected \"%s\" in \"%s\"", n_, h_ ? h_ : "(null)");        \
            abort();                                                                \
        }                                                                           \
    } while (0)

/* Records a failure when rel > tol, prints the measured value either way. */
#define CHECK_REL(what, rel, tol)                                                           \
    do {                                                                                    \
        double r_ = (rel), t_ = (tol);                                                      \
        int ok_ = r_ <= t_;                                                                 \
        fprintf(stderr, "%-4s %-48s rel %.3e (tol %.0e)\n", ok_ ? "ok" : "FAIL", (what), r_, t_); \
        if (!ok_)                                                                           \
            test_failures++;                                                                \
    } while (0)

#define CHECK(expr)                                                     \
    do {                                                                \
        if (!(expr)) {                                                  \
            TEST_FAIL_("check failed: %s", #expr);                      \
            test_failures++;                                            \
        }                                                               \
    } while (0)

static inline int test_exit_code(void) {
    if (test_failures)
        fprintf(stderr, "%d check(s) failed\n", test_failures);
    return test_failures ? 1 : 0;
}

/* DESIGN §7: rel(a, b) = max|a - b| / max|b| over the whole tensor, b the reference. */
static inline double test_rel(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > num || d != d)
            num = d;
        if (fabs((double)b[i]) > den)
            den = fabs((double)b[i]);
    }
    return den > 0 ? num / den : num;
}

#endif
