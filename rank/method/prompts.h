/*
 * rank/method/prompts.h - a training job's prompts, tokenized, with their target positions and
 * packed end to end, and the prefix computed from them (DESIGN §3 "prefix").
 *
 * Prompts come from the job's settings (options/train.h): text prompts first, rendered with
 * the model's chat template and tokenized, then id prompts, in the order given. The target
 * positions of prompt i are --target-tokens applied to its length. Every backend (rank/backend.h)
 * reads the prompts; the trainer owns them.
 */
#ifndef MELBO_RANK_METHOD_PROMPTS_H
#define MELBO_RANK_METHOD_PROMPTS_H

#include <stdint.h>

#include "common/err.h"
#include "rank/model/config.h"
#include "rank/model/seqs.h"

#ifdef __cplusplus
extern "C" {
#endif

struct melbo_train_params;
struct melbo_tokenizer;

struct melbo_prompts {
    int P;                  // number of prompts
    int *lens;              // (P)
    int32_t **ids;          // (P) each (lens[i]), owned
    char **texts;           // (P) rendered text, "" for id prompts, owned
    int **idx;              // (P) target positions of each prompt, owned
    int *n_idx;             // (P) how many (>= 1)
    struct melbo_seqs seqs; // the P prompts packed, prompt i at rows [start[i], start[i+1])
    char chat_format[32];   // the format text prompts were rendered with, "raw", or "none"
    int32_t end_of_turn;    // the chat format's end-of-turn id, or -1
};

/* The unsteered activations of the packed prompts, host fp32, owned by whoever allocates them. */
struct melbo_prefix {
    float *X; // (seqs.n_tok, d) hidden_states[s+1]: the residual after block s
    float *Y; // (seqs.n_tok, d) hidden_states[t]: blocks s+1..t-1 on X
};

/*
 * Renders and tokenizes p's prompts for a model of config cfg and finds their target positions.
 * *tok receives the model's tokenizer (caller frees) when text prompts need it or completions
 * will be decoded into text (p->generate), else NULL; a model without a tokenizer is an error
 * only for text prompts. Refuses empty prompts, ids outside the vocabulary, a --target-tokens
 * that selects nothing, and prompts longer than the model allows. On failure pr holds what was
 * loaded: melbo_prompts_free it.
 */
int melbo_prompts_load(struct melbo_prompts *pr, const struct melbo_train_params *p,
                       const struct melbo_model_config *cfg, struct melbo_tokenizer **tok,
                       struct melbo_err *err);
void melbo_prompts_free(struct melbo_prompts *pr);

#ifdef __cplusplus
}
#endif
#endif
