/* rank/model/flops.c - FLOP counts of a span of blocks (rank/model/flops.h). */
#include "rank/model/flops.h"

#include "rank/model/model.h" // defines: melbo_model_qkv_rows

double melbo_span_gemm_flops(const struct melbo_model_config *c, int a, int b, int n_tok) {
    double d = c->d_model, qd = (double)c->n_heads * c->head_dim, ff = c->d_ff;
    double rows = melbo_model_qkv_rows(c);
    double per_tok = 2.0 * (d * rows + qd * d + d * 2.0 * ff + ff * d);
    return per_tok * n_tok * (b - a);
}

double melbo_span_attention_flops(const struct melbo_model_config *c, int a, int b,
                                  const struct melbo_seqs *seqs) {
    double pairs = 0;
    for (int i = 0; i < seqs->n_seq; i++) {
        double T = seqs->start[i + 1] - seqs->start[i];
        pairs += T * (T + 1) / 2;
    }
    return 4.0 * pairs * c->head_dim * c->n_heads * (b - a);
}
