/*
 * rank/bank/export_control_vector.c - `--vector EXPR --format gguf-control-vector`: one vector
 * expression of a vector bank as a llama.cpp control vector (llama-cli --control-vector F).
 *
 * What llama.cpp's loader (common/common.cpp, common_control_vector_load_one) accepts: a GGUF
 * whose every tensor is named direction.N (N a base-10 integer >= 1), F32, 1-D, all of one
 * length n_embd. Any other tensor, direction.0, another type or shape makes it drop the whole
 * file (and with it every other --control-vector file), so the file holds one tensor and
 * nothing else. The loader reads no metadata; the producers' keys are written as
 * cvector-generator writes them:
 *   general.architecture        "controlvector"
 *   controlvector.model_hint    the model's llama.cpp architecture (llama, qwen2, qwen3, qwen)
 *   controlvector.layer_count   I32, n_layers - 1: the direction.N a model of n_layers blocks
 *                               can hold (1 .. n_layers - 1), cvector-generator's count, so a
 *                               tool that reads direction.1 .. direction.layer_count finds ours
 * and provenance goes into melbo.* keys (bank metadata copied as text under melbo.<key>, the
 * bank's sha256, the expression, the vector's norm).
 *
 * Where the vector goes: llama.cpp adds direction.N to the output of block N (0-based, after the
 * block's last residual add, at every position: llama_adapter_cvec and build_cvec), which is
 * where melbo adds a vector trained at source layer S (the output of block S, HF
 * hidden_states[S+1]). So the vector is written as direction.S, unscaled: llama.cpp at scale 1
 * steers as `melbo-rank gen --vector EXPR` does. llama.cpp cannot steer the output of block 0
 * (there is no direction.0), so a bank trained at S = 0 is refused.
 */
#include "rank/bank/export.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/mem.h"
#include "common/sha256.h"
#include "rank/bank/gguf_write.h"
#include "rank/bank/vexpr.h"

/* The bank metadata copied into the file, each as the string melbo.<key>. */
static const char *const copied[] = {
    "model_name",
    "model_fingerprint",
    "architecture",
    "n_layers",
    "source_layer",
    "target_layer",
    "radius",
    "p",
    "q",
    "prompts",
    "chat_format",
    "melbo_version",
};

/* The last path component of path. */
static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* The bank's checks for a control vector: a known architecture, a source layer llama.cpp can
 * steer. Sets *n_layers (the model's blocks, or S + 1 when the bank does not say). */
static int check_bank(const struct melbo_export_job *job, const char **arch, int *n_layers,
                      struct melbo_err *err) {
    const struct melbo_bank *b = job->bank;
    const char *hf = melbo_bank_meta(b, "architecture");
    *arch = melbo_export_gguf_arch(hf);
    if (*arch == NULL)
        return melbo_err_set(err, MELBO_EUNSUPPORTED,
                             "%s: architecture '%s' has no llama.cpp architecture known to melbo "
                             "(Llama, Mistral, Qwen2, Qwen3, Qwen-1) for controlvector.model_hint",
                             job->bank_path, hf ? hf : "(none)");
    int s = b->source_layer;
    if (s < 0)
        return melbo_err_set(err, MELBO_EMISSING, "%s: missing metadata 'source_layer'",
                             job->bank_path);
    if (s == 0)
        return melbo_err_set(err, MELBO_EUNSUPPORTED,
                             "%s: the bank's vectors were trained at source layer 0 (added to the "
                             "output of block 0), which a llama.cpp control vector cannot steer: "
                             "its directions start at direction.1, the output of block 1 (train "
                             "with --source-layer 1 or more to export)",
                             job->bank_path);
    const char *nl = melbo_bank_meta(b, "n_layers");
    *n_layers = nl ? atoi(nl) : s + 1;
    if (s >= *n_layers)
        return melbo_err_set(err, MELBO_EFORMAT,
                             "%s: source_layer %d is outside the model's n_layers %d",
                             job->bank_path, s, *n_layers);
    return 0;
}

int melbo_export_control_vector(const struct melbo_export_job *job, struct melbo_err *err) {
    const struct melbo_bank *b = job->bank;
    const char *arch = NULL;
    int n_layers = 0, ret;
    if ((ret = check_bank(job, &arch, &n_layers, err)) != 0)
        return ret;
    struct stat st;
    if (stat(job->out, &st) == 0 && S_ISDIR(st.st_mode))
        return melbo_err_set(err, MELBO_EIO,
                             "-o %s is a directory (--format gguf-control-vector writes one file)",
                             job->out);

    /* the vector, exactly as gen --vector computes it (before its --scale, which is 1 here) */
    float *v = melbo_xalloc_f32((size_t)b->d);
    int none = 0;
    ret = melbo_vexpr_eval(job->vector, b->vectors, b->N, b->random_vectors, b->n_random, b->d, v,
                           &none, err);
    if (ret) {
        melbo_err_prefix(err, "%s", job->bank_path);
        free(v);
        return ret;
    }
    double norm2 = 0;
    for (int j = 0; j < b->d; j++)
        norm2 += (double)v[j] * v[j];
    if (!isfinite(norm2)) {
        free(v);
        return melbo_err_set(err, MELBO_EINVAL,
                             "--vector '%s': the vector is not finite (a coefficient inf or nan, "
                             "or an overflow); refusing to write it",
                             job->vector);
    }

    uint8_t digest[32];
    char sha[65], key[96];
    struct melbo_sha256 h;
    melbo_sha256_init(&h);
    melbo_sha256_update(&h, b->f.map, b->f.size);
    melbo_sha256_final(&h, digest);
    melbo_sha256_hex(digest, sha);

    struct melbo_gguf_writer w;
    melbo_gguf_writer_init(&w);
    melbo_gguf_writer_str(&w, "general.architecture", "controlvector");
    melbo_gguf_writer_str(&w, "controlvector.model_hint", arch);
    melbo_gguf_writer_i32(&w, "controlvector.layer_count", n_layers - 1);
    melbo_gguf_writer_str(&w, "melbo.vector", job->vector);
    melbo_gguf_writer_f32(&w, "melbo.vector_norm", (float)sqrt(norm2));
    melbo_gguf_writer_str(&w, "melbo.bank", base_name(job->bank_path));
    melbo_gguf_writer_str(&w, "melbo.bank_sha256", sha);
    for (size_t i = 0; i < sizeof copied / sizeof copied[0]; i++) {
        const char *val = melbo_bank_meta(b, copied[i]);
        snprintf(key, sizeof key, "melbo.%s", copied[i]);
        if (val)
            melbo_gguf_writer_str(&w, key, val);
    }
    int64_t ne[1] = {b->d};
    snprintf(key, sizeof key, "direction.%d", b->source_layer);
    melbo_gguf_writer_tensor_f32(&w, key, 1, ne, v);
    ret = melbo_gguf_writer_write(&w, job->out, err);
    if (ret)
        melbo_err_prefix(err, "cannot write -o %s", job->out);
    melbo_gguf_writer_free(&w);
    free(v);
    return ret;
}
