/*
 * rank/model/flops.h - what a span of decoder blocks costs in floating-point operations, for the
 * TFLOP/s the trainer reports and the benchmarks print. Every backend runs the same products, so
 * the count depends only on the model's shape and the packed sequences.
 */
#ifndef MELBO_RANK_MODEL_FLOPS_H
#define MELBO_RANK_MODEL_FLOPS_H

#include "rank/model/config.h"
#include "rank/model/seqs.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Matrix-product FLOPs of one forward of blocks [a, b) over seqs (the backward costs the same). */
double melbo_span_gemm_flops(const struct melbo_model_config *c, int a, int b, int n_tok);
/* Attention FLOPs (scores and weighted sum) of one forward over seqs; backward is about 2x. */
double melbo_span_attention_flops(const struct melbo_model_config *c, int a, int b,
                                  const struct melbo_seqs *seqs);

#ifdef __cplusplus
}
#endif
#endif
