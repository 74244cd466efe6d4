/*
 * rank/model/seqs.h - a batch of token sequences of different lengths, packed end to end.
 *
 * Every backend works on packed activations (n_tok, d): sequence i owns tokens
 * [start[i], start[i+1]), and pos[t] is token t's position inside its sequence (0-based). No
 * padding exists, so a sequence's numbers never depend on which other sequences share the batch.
 */
#ifndef MELBO_RANK_MODEL_SEQS_H
#define MELBO_RANK_MODEL_SEQS_H

#include "common/err.h"
#include "rank/model/config.h"

#ifdef __cplusplus
extern "C" {
#endif

struct melbo_seqs {
    int n_seq;
    int n_tok;      // sum of lengths
    int max_len;    // longest sequence
    int *start;     // (n_seq + 1), owned
    int *pos;       // (n_tok), owned
};

/* Builds the packing for lengths[n] (each >= 1). */
void melbo_seqs_init(struct melbo_seqs *s, const int *lengths, int n);
void melbo_seqs_free(struct melbo_seqs *s);

/* Refuses sequences the model cannot compute exactly (melbo_config_check_seq_len). */
int melbo_seqs_check(const struct melbo_seqs *s, const struct melbo_model_config *cfg,
                     struct melbo_err *err);

#ifdef __cplusplus
}
#endif
#endif
