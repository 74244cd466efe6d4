/*
 * rank/bank/vexpr.h - vector expressions over a bank's vectors: `melbo-rank gen --vector EXPR`
 * and `melbo-rank bank export --vector EXPR` (one grammar, one arithmetic, so an exported vector
 * is the one gen steers with). python/melbo/vexpr.py is the same grammar in Python.
 *
 *   expr  := term (('+' | '-') term)*
 *   term  := [number '*'] atom | '-' term
 *   atom  := INDEX            a learned vector (0-based row of the bank's vectors)
 *          | 'random' | 'rK'  the bank's random baseline 0, or K
 *          | 'none'           the zero vector (unsteered)
 * Examples: "9", "-10*22", "9-22", "0.5*3+0.5*7", "random", "none". Spaces are ignored.
 *
 * It lives in rank/bank/ (not rank/generate/, where it began) because the bank exporters need it
 * and rank/bank may include only common/, options/ and rank/model/ (tests/layout/check_layout.py);
 * it depends on common/ alone.
 */
#ifndef MELBO_RANK_BANK_VEXPR_H
#define MELBO_RANK_BANK_VEXPR_H

#include "common/err.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Evaluates expr into out (d floats): vectors (n_vec, d), randoms (n_rand, d) may be NULL when
 * the counts are 0. *is_none is set when the expression is exactly "none". Errors name the
 * position in the expression or the index out of range.
 */
int melbo_vexpr_eval(const char *expr, const float *vectors, int n_vec, const float *randoms,
                     int n_rand, int d, float *out, int *is_none, struct melbo_err *err);

#ifdef __cplusplus
}
#endif
#endif
