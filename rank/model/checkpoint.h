/*
 * rank/model/checkpoint.h - the weight files of one model: the safetensors files of a Hugging
 * Face checkpoint directory, or one GGUF file.
 *
 * A directory holds either model.safetensors, or model.safetensors.index.json naming the shard
 * of every tensor. A path that is a GGUF file (rank/model/gguf.h) is opened as one; then `gguf`
 * is set, `files` is empty and melbo_checkpoint_find finds nothing (the model loader reads GGUF
 * tensors through rank/model/gguf_model.h); numel, main_dtype and the fingerprint cover both. Every file is mmap'ed (rank/model/safetensors.h), so opening a 140 GB model
 * reads only the headers; tensor bytes are paged in when a loader copies them, which is how a
 * rank reads only the layers (and later the tensor-parallel slices) it owns.
 */
#ifndef MELBO_RANK_MODEL_CHECKPOINT_H
#define MELBO_RANK_MODEL_CHECKPOINT_H

#include <stdint.h>

#include "common/err.h"
#include "rank/model/gguf.h"
#include "rank/model/safetensors.h"

#ifdef __cplusplus
extern "C" {
#endif

struct melbo_checkpoint {
    char *dir;                      // owned copy
    int n_files;
    struct melbo_st_file *files;    // [n_files]
    struct melbo_gguf_file *gguf;   // the GGUF file when dir is one, else NULL
};

/* Opens dir's safetensors (single file or sharded with an index), or the GGUF file dir. */
int melbo_checkpoint_open(struct melbo_checkpoint *ck, const char *dir, struct melbo_err *err);
void melbo_checkpoint_close(struct melbo_checkpoint *ck);

/* The tensor called name in any file of the checkpoint, or NULL. */
const struct melbo_st_tensor *melbo_checkpoint_find(const struct melbo_checkpoint *ck,
                                                    const char *name);

/* Total number of elements over all tensors (what `inspect` prints as parameters). */
int64_t melbo_checkpoint_numel(const struct melbo_checkpoint *ck);

/* The dtype most tensor bytes are stored in ("BF16", "F32", ...; for GGUF the ggml type: "Q4_1"). */
const char *melbo_checkpoint_main_dtype(const struct melbo_checkpoint *ck);

/*
 * DESIGN §4 model_fingerprint: lowercase hex sha256 of config.json's bytes followed by one line
 * "name dtype [d0, d1, ...]\n" per tensor, sorted by name; for a GGUF file melbo_gguf_fingerprint
 * (sha256 of its metadata and tensor table). hex must hold 65 bytes.
 */
int melbo_checkpoint_fingerprint(const struct melbo_checkpoint *ck, char hex[65],
                                 struct melbo_err *err);

#ifdef __cplusplus
}
#endif
#endif
