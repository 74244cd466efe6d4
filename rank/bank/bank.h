/*
 * rank/bank/bank.h - a bank file (DESIGN §4) opened for reading: its kind, its settings and its
 * tensors, checked before anyone uses them.
 *
 * A bank is a safetensors file with metadata format=melbo-bank and a format_version. Its kind
 * (metadata `kind`; a bank without it is a vector bank, as every bank before adapters) says what
 * it holds:
 *   vector   vectors F32 [N, d], objective F32 [N, steps], random_vectors F32 [Kr, d] (optional)
 *   adapter  lora_A F32 [N, r, d_mlp], lora_B F32 [N, d, r] (unscaled, unit columns; the
 *            adapter is dW = (alpha / r) B A on the source block's MLP output projection),
 *            objective F32 [N, steps], random_lora_A / random_lora_B (optional, together) and
 *            metadata adapter_rank (= r), adapter_alpha (finite, > 0), adapter_module, d_mlp
 * Every shape must agree with the others and with the metadata (d_model, adapter_rank, d_mlp).
 * A file that is no bank, a newer format_version than this reader knows, an unknown kind, a
 * missing or misshapen tensor or a missing setting is an error whose message names the file
 * and the first problem (MELBO_EFORMAT, MELBO_EUNSUPPORTED for a newer version, MELBO_EMISSING
 * for a missing tensor or key).
 *
 * Depends only on common/ and rank/model/ (no BLAS, no tokenizer), so that whatever reads banks
 * (the coordinator included) can use it.
 *
 * Ownership: struct melbo_bank owns the open file; every pointer in it points into the mapping,
 * except F32 tensors that are not 4-byte aligned there (a header padded to an odd length), which
 * are copied once at open into buffers the bank owns; all stay valid until melbo_bank_close().
 */
#ifndef MELBO_RANK_BANK_BANK_H
#define MELBO_RANK_BANK_BANK_H

#include "common/err.h"
#include "rank/model/safetensors.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The newest bank format_version this reader knows. Keep it equal to MELBO_BANK_FORMAT_VERSION
 * (rank/train/state.h, the writer): tests/unit/test_bank_export.sh opens a freshly trained bank,
 * so a writer ahead of the reader fails there. */
#define MELBO_BANK_READ_VERSION 1

enum melbo_bank_kind {
    MELBO_BANK_KIND_VECTOR = 0,
    MELBO_BANK_KIND_ADAPTER = 1,
};

struct melbo_bank {
    struct melbo_st_file f; // the open file (metadata, every tensor)
    enum melbo_bank_kind kind;
    int N;                  // vectors or adapters
    int d;                  // d_model
    int steps;              // objective values per vector / adapter
    const float *objective; // (N, steps)
    int n_random;           // random baselines stored (0 when none)
    int source_layer;       // metadata source_layer, -1 when absent
    /* vector banks */
    const float *vectors;        // (N, d)
    const float *random_vectors; // (n_random, d) or NULL
    /* adapter banks */
    int rank, d_mlp;       // r and the MLP width
    double alpha;          // adapter_alpha: dW = (alpha / rank) B A
    const char *module;    // adapter_module: mlp.down_proj, mlp.c_proj or ffn_down
    const float *lora_A;   // (N, rank, d_mlp)
    const float *lora_B;   // (N, d, rank)
    const float *random_A; // (n_random, rank, d_mlp) or NULL
    const float *random_B; // (n_random, d, rank) or NULL
};

/* Opens and checks the bank at path. On error *b is left empty (safe to close) and err names
 * the file and the problem. */
int melbo_bank_open(struct melbo_bank *b, const char *path, struct melbo_err *err);
void melbo_bank_close(struct melbo_bank *b);

/* The metadata value for key, or NULL. */
const char *melbo_bank_meta(const struct melbo_bank *b, const char *key);

/* "vector" or "adapter". */
const char *melbo_bank_kind_name(enum melbo_bank_kind kind);

/* Adapter k's factors (k < N), or random baseline k's (k < n_random) with random set. */
const float *melbo_bank_lora_A(const struct melbo_bank *b, int k, int random);
const float *melbo_bank_lora_B(const struct melbo_bank *b, int k, int random);

/* 1 when the bank was trained on a GGUF model (adapter_module ffn_down, or a model_name ending
 * in .gguf), else 0. */
int melbo_bank_from_gguf(const struct melbo_bank *b);

#ifdef __cplusplus
}
#endif
#endif
