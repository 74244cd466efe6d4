/*
 * options/generate.h - the decoding settings (one table, shared by `melbo-rank train`'s
 * completions, `melbo-rank gen` and `melbo submit`), and the settings of `melbo-rank gen`.
 *
 * Greedy (plain argmax) by default; sampling with temperature, top-k and top-p, seeded and
 * reproducible. Which token ids stop a sequence is decided from the model
 * (rank/generate/settings.h): every EOS id it declares and the chat format's end-of-turn.
 */
#ifndef MELBO_OPTIONS_GENERATE_H
#define MELBO_OPTIONS_GENERATE_H

#include <stdint.h>

#include "options/opt.h"
#include "options/prompts.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The decoding options: X(KIND, field, "name", default, check, flags, metavar, help), see
 * options/opt.h. One entry here is the field, the option, its check and its help.
 */
#define MELBO_GEN_OPTIONS(X, G)                                                                    \
    X(INT, max_new_tokens, "max-new-tokens", "64", MELBO_OPT_IN(0, 1000000), 0, "N",              \
      "tokens per completion (0: none)")                                                           \
    X(REAL, temperature, "temperature", "0", MELBO_OPT_GE(0), 0, "T",                              \
      "sampling temperature (0: greedy)")                                                          \
    X(REAL, top_p, "top-p", "1", MELBO_OPT_IN_LO_OPEN(0, 1), 0, "P",                               \
      "sample from the likeliest tokens of total probability P (1: off)")                          \
    X(INT, top_k, "top-k", "0", MELBO_OPT_GE(0), 0, "K",                                           \
      "sample from the K likeliest tokens (0: off)")                                               \
    X(U64, seed, "gen-seed", "0", MELBO_OPT_ANY, 0, "S", "sampling seed")                          \
    X(REAL, repetition_penalty, "repetition-penalty", "1", MELBO_OPT_GT(0), 0, "X",                \
      "HF's repetition penalty (1: off)")                                                          \
    X(FLAG, use_generation_config, "use-generation-config", "0", MELBO_OPT_ANY, 0, NULL,           \
      "apply generation_config.json's sampling settings")                                          \
    X(FLAG, ignore_eos, "ignore-eos", "0", MELBO_OPT_ANY, 0, NULL,                                 \
      "never stop before --max-new-tokens (benchmarks)")                                           \
    X(INT, batch, "gen-batch", "64", MELBO_OPT_IN(1, 4096), 0, "N", "sequences decoded together")

#define MELBO_GEN_MAX_STOP 16

struct melbo_gen_settings {
    MELBO_GEN_OPTIONS(MELBO_OPT_FIELD, MELBO_OPT_NO_HEADING)
    int n_stop;                        // stop ids, from the model (rank/generate/settings.h)
    int32_t stop[MELBO_GEN_MAX_STOP];
    int keep_logits;                   // 1: each result keeps the logits that chose its first
                                       // new token (gen --logits, for tests; one process only)
};

/* The table of struct melbo_gen_settings. */
extern const struct melbo_opt_table melbo_gen_table;

/*
 * `melbo-rank gen`: explore a bank by generating under vector expressions. Decoding settings
 * the command line does not give default to the ones the bank's completions were made with.
 */
#define MELBO_GEN_CMD_OPTIONS(X, G)                                                                \
    X(PATH, model, "model", NULL, MELBO_OPT_ANY, MELBO_OPT_REQUIRED, "DIR",                        \
      "the model: a Hugging Face checkpoint directory or a .gguf file")                            \
    X(PATH, bank, "bank", NULL, MELBO_OPT_ANY, 0, "FILE", "the bank the vector expressions use")   \
    X(LIST, vectors, "vector", NULL, MELBO_OPT_ANY, 0, "EXPR",                                     \
      "9, -10*22, 9-22, 0.5*3+0.5*7, random, r2, none (repeatable; default none); indices are "    \
      "rows of the bank's vectors")                                                                \
    X(LIST, adapters, "adapter", NULL, MELBO_OPT_ANY, 0, "K",                                      \
      "an adapter bank's adapter K, rK for random baseline K, or none (repeatable; instead of "    \
      "--vector)")                                                                                 \
    X(REAL, scale, "scale", "1", MELBO_OPT_ANY, 0, "X", "multiplies every expression")             \
    X(INT, source_layer, "source-layer", "(the bank's source_layer, else 7)", MELBO_OPT_GE(0), 0,  \
      "S", "add the vector to the output of block S")                                              \
    X(FLAG, bank_prompts, "bank-prompts", "0", MELBO_OPT_ANY, 0, NULL,                             \
      "the bank's own prompts (its prompt_ids), after the others")                                 \
    X(STR, messages, "messages", NULL, MELBO_OPT_ANY, 0, "JSON",                                   \
      "a conversation to continue, [{\"role\": ..., \"content\": ...}, ...], rendered whole with "   \
      "the chat template (--chat-format or the model's) as the first prompt (melbo chat)")         \
    X(INT, tp, "tp", "1", MELBO_OPT_IN(1, 4096), 0, "N",                                          \
      "tensor-parallel ranks: start with mpirun -np N (a gen job: its ranks); N divides the "      \
      "heads")                                                                                     \
    X(FLAG, warm, "warm", "0", MELBO_OPT_ANY, 0, NULL,                                             \
      "under the coordinator: keep the model loaded and serve the gen jobs it hands over "         \
      "(melbo warm)")                                                                              \
    X(FLAG, json, "json", "0", MELBO_OPT_ANY, 0, NULL,                                             \
      "one JSON object per completion: vector, prompt, text, token_ids, stopped")                  \
    X(FLAG, logits, "logits", "0", MELBO_OPT_ANY, 0, NULL,                                         \
      "with --json: each object's 'logits', those that chose the first new token (for tests)")     \
    X(CHOICE, device, "device", "auto", MELBO_OPT_CHOICES("auto|cpu|cuda,gpu"), 0, NULL,           \
      "backend; auto: cuda when a GPU is visible")                                                 \
    X(CHOICE, gpu_bf16, "dtype", "bf16", MELBO_OPT_CHOICES("fp32|bf16"), 0, NULL,                  \
      "GPU weights and activations")                                                               \
    G("prompts (repeatable, kept in order; text prompts, then ids, then the bank's):")             \
    X(PROMPTS, prompts, NULL, NULL, MELBO_OPT_ANY, 0, NULL, NULL)                                  \
    G("decoding (default: as the bank's completions were made, else greedy, 64 tokens):")

struct melbo_gen_cmd_params {
    MELBO_GEN_CMD_OPTIONS(MELBO_OPT_FIELD, MELBO_OPT_NO_HEADING)
    struct melbo_gen_settings gen;
};

/* The table of `melbo-rank gen` (its rows, then the decoding table). */
extern const struct melbo_opt_table melbo_gen_cmd_table;

#ifdef __cplusplus
}
#endif
#endif
