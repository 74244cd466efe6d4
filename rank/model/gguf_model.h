/*
 * rank/model/gguf_model.h - a llama-architecture GGUF as a melbo model: the config from its
 * metadata, its tensor names, and rows of its (possibly quantised) weights in Hugging Face order.
 *
 * Only general.architecture "llama" is accepted (Llama 2/3 style decoders, SmolLM, TinyLlama,
 * Mistral converted as llama); anything else, MoE, Q/K/V biases, partial rotary, llama3-style
 * RoPE frequency tensors (rope_freqs.weight) and RoPE scaling other than linear are refused with
 * the name of what is unsupported.
 *
 * Orientation: a GGUF lists dims fastest-first, so a Hugging Face weight [rows, cols] is stored
 * with ne = {cols, rows}. llama.cpp's converter (convert_hf_to_gguf.py, LlamaModel.permute)
 * reorders the rows of attn_q and attn_k inside each head for its RoPE kernel: Hugging Face row
 * j * hd/2 + i of a head (j in {0, 1}, i < hd/2) is stored at row 2 i + j. Reading undoes it, so
 * the fused layout melbo builds is exactly the Hugging Face model's.
 */
#ifndef MELBO_RANK_MODEL_GGUF_MODEL_H
#define MELBO_RANK_MODEL_GGUF_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "rank/model/config.h"
#include "rank/model/gguf.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Fills cfg from f's llama.* and tokenizer.ggml.* metadata (model_type "llama", architecture
 * "LlamaForCausalLM (GGUF)"). Missing required keys are MELBO_EMISSING, another architecture or
 * an unsupported feature MELBO_EUNSUPPORTED, each naming the key.
 */
int melbo_gguf_config(const struct melbo_gguf_file *f, struct melbo_model_config *cfg,
                      struct melbo_err *err);

/* Opens path and runs melbo_gguf_config. */
int melbo_gguf_config_load(struct melbo_model_config *cfg, const char *path,
                           struct melbo_err *err);

/*
 * Copies rows [row0, row0 + nrows) and columns [col0, col0 + ncols) of t, seen as the Hugging
 * Face matrix [ne[1], ne[0]] (a 1-D tensor is one column: rows = ne[0], ncols = 1), into dst as
 * packed fp32. rope_heads > 0 un-permutes llama.cpp's Q/K row order for that many heads of
 * ne[1] / rope_heads rows each. Whole rows are dequantised, then cut, so any column slice
 * works for any block format. The mapped pages read are released afterwards. Returns 0, or
 * MELBO_EUNSUPPORTED naming a quantisation melbo does not dequantise.
 */
int melbo_gguf_read_block(const struct melbo_gguf_file *f, const struct melbo_gguf_tensor *t,
                          int64_t row0, int64_t nrows, int64_t col0, int64_t ncols,
                          int rope_heads, float *dst, struct melbo_err *err);

#ifdef __cplusplus
}
#endif
#endif
