/*
 * rank/bank/export_peft.c - `--format peft`: one adapter as a PEFT LoRA directory.
 *
 * What PEFT's save_pretrained writes for LoraConfig(r, lora_alpha, target_modules,
 * layers_to_transform=[S], task_type CAUSAL_LM), and what PeftModel.from_pretrained(model, DIR)
 * reads back (checked against peft 0.22's own save_pretrained, tests/golden/README.md):
 *   adapter_config.json          peft_type LORA, r, lora_alpha = alpha, lora_dropout 0, bias
 *                                none, use_rslora false (scale alpha / r, melbo's), target
 *                                module, layers_to_transform [S], task_type CAUSAL_LM,
 *                                base_model_name_or_path (the bank's model_name)
 *   adapter_model.safetensors    base_model.model.<block S>.<module>.lora_A.weight F32 [r, d_mlp]
 *                                and .lora_B.weight F32 [d, r], the bank's factors bit for bit;
 *                                metadata format=pt (as PEFT) and melbo.* provenance
 * PEFT adds (lora_alpha / r) * lora_B(lora_A(x)) to the module's output: melbo's dW x.
 *
 * <block S>.<module> is model.layers.S.mlp.down_proj (Llama, Mistral, Qwen2, Qwen3) or
 * transformer.h.S.mlp.c_proj (Qwen-1, trust_remote_code). target_modules is "down_proj" or
 * "mlp.c_proj": PEFT matches a module whose name ends with ".<target>", and Qwen-1's attention
 * output projection is also called c_proj.
 *
 * The directory is written whole or not at all: a new directory is filled under a temporary
 * name and renamed; in an existing one both files are written under temporary names first.
 */
#include "rank/bank/export.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file.h"
#include "common/mem.h"
#include "rank/model/safetensors_write.h"

/* Where the adapter goes in the HF module tree. */
struct peft_target {
    const char *block;  // printf format of the block's module path, %d = S
    const char *module; // the module under the block
    const char *target; // target_modules entry
};

static const struct peft_target targets[] = {
    {"model.layers.%d", "mlp.down_proj", "down_proj"},
    {"transformer.h.%d", "mlp.c_proj", "mlp.c_proj"},
};

static const struct peft_target *find_target(const char *module) {
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++)
        if (!strcmp(module, targets[i].module))
            return &targets[i];
    return NULL;
}

/* adapter_config.json (cJSON_Print, 2-level, keys in PEFT's order), owned by the caller. */
static char *peft_config(const struct melbo_bank *b, const struct peft_target *t) {
    const char *name = melbo_bank_meta(b, "model_name");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "alpha_pattern", cJSON_CreateObject());
    if (name)
        cJSON_AddStringToObject(o, "base_model_name_or_path", name);
    else
        cJSON_AddNullToObject(o, "base_model_name_or_path");
    cJSON_AddStringToObject(o, "bias", "none");
    cJSON_AddFalseToObject(o, "fan_in_fan_out");
    cJSON_AddTrueToObject(o, "inference_mode");
    cJSON_AddTrueToObject(o, "init_lora_weights");
    cJSON_AddNullToObject(o, "layers_pattern");
    cJSON *layers = cJSON_AddArrayToObject(o, "layers_to_transform");
    cJSON_AddItemToArray(layers, cJSON_CreateNumber(b->source_layer));
    cJSON_AddNumberToObject(o, "lora_alpha", b->alpha);
    cJSON_AddNumberToObject(o, "lora_dropout", 0.0);
    cJSON_AddNullToObject(o, "modules_to_save");
    cJSON_AddStringToObject(o, "peft_type", "LORA");
    cJSON_AddNumberToObject(o, "r", b->rank);
    cJSON_AddItemToObject(o, "rank_pattern", cJSON_CreateObject());
    cJSON_AddNullToObject(o, "revision");
    cJSON *mods = cJSON_AddArrayToObject(o, "target_modules");
    cJSON_AddItemToArray(mods, cJSON_CreateString(t->target));
    cJSON_AddStringToObject(o, "task_type", "CAUSAL_LM");
    cJSON_AddFalseToObject(o, "use_dora");
    cJSON_AddFalseToObject(o, "use_rslora");
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    size_t n = strlen(s);
    s = melbo_xrealloc(s, n + 2);
    s[n] = '\n';
    s[n + 1] = '\0';
    return s;
}

/* adapter_model.safetensors in a new buffer; the tensors point into the bank's mapping. */
static void peft_weights(const struct melbo_export_job *job, const struct peft_target *t,
                         char **out, size_t *len) {
    const struct melbo_bank *b = job->bank;
    char block[64], name_a[192], name_b[192], buf[64];
    snprintf(block, sizeof block, t->block, b->source_layer);
    snprintf(name_a, sizeof name_a, "base_model.model.%s.%s.lora_A.weight", block, t->module);
    snprintf(name_b, sizeof name_b, "base_model.model.%s.%s.lora_B.weight", block, t->module);
    struct melbo_st_writer w;
    melbo_st_writer_init(&w);
    int64_t as[2] = {b->rank, b->d_mlp}, bs[2] = {b->d, b->rank};
    melbo_st_writer_add(&w, name_a, MELBO_DTYPE_F32, 2, as, melbo_bank_lora_A(b, job->adapter, 0));
    melbo_st_writer_add(&w, name_b, MELBO_DTYPE_F32, 2, bs, melbo_bank_lora_B(b, job->adapter, 0));
    melbo_st_writer_meta(&w, "format", "pt");
    snprintf(buf, sizeof buf, "%d", job->adapter);
    melbo_st_writer_meta(&w, "melbo.adapter", buf);
    const char *copied[] = {"model_name",
                            "model_fingerprint",
                            "architecture",
                            "source_layer",
                            "target_layer",
                            "adapter_module",
                            "p",
                            "q"};
    for (size_t i = 0; i < sizeof copied / sizeof copied[0]; i++) {
        const char *v = melbo_bank_meta(b, copied[i]);
        char key[64];
        snprintf(key, sizeof key, "melbo.%s", copied[i]);
        if (v)
            melbo_st_writer_meta(&w, key, v);
    }
    if (b->steps > 0) {
        snprintf(buf, sizeof buf, "%.9g",
                 b->objective[(size_t)job->adapter * b->steps + b->steps - 1]);
        melbo_st_writer_meta(&w, "melbo.objective", buf);
    }
    melbo_st_writer_serialize(&w, out, len);
    melbo_st_writer_free(&w);
}

/* ---------------------------------------------------------------------------------------------
 * Writing the directory whole or not at all.
 */

#define PEFT_FILES 2
static const char *const peft_names[PEFT_FILES] = {"adapter_model.safetensors",
                                                   "adapter_config.json"};

/* Into a directory that did not exist: fill DIR.tmp.PID, then rename it to dir. */
static int write_new_dir(const char *dir, char *const *data, const size_t *len,
                         struct melbo_err *err) {
    size_t n = strlen(dir) + 32;
    char *tmp = melbo_xmalloc(n), path[4096];
    snprintf(tmp, n, "%s.tmp.%ld", dir, (long)getpid());
    int ret = 0, made = 0;
    if (mkdir(tmp, 0755) != 0) {
        ret = melbo_err_set(err, MELBO_EIO, "cannot create the directory %s: %s", dir,
                            strerror(errno));
        goto out;
    }
    for (; made < PEFT_FILES; made++) {
        ret = melbo_path_join(path, sizeof path, tmp, peft_names[made]);
        if (ret == 0)
            ret = melbo_file_write_atomic(path, data[made], len[made], err);
        if (ret)
            goto undo;
    }
    if (rename(tmp, dir) == 0)
        goto out;
    ret = melbo_err_set(err, MELBO_EIO, "cannot rename %s to %s: %s", tmp, dir, strerror(errno));
undo:
    for (int i = 0; i < made; i++)
        if (melbo_path_join(path, sizeof path, tmp, peft_names[i]) == 0)
            unlink(path);
    rmdir(tmp);
out:
    free(tmp);
    return ret;
}

/* Into an existing directory: both files under temporary names, then both renamed. */
static int write_existing_dir(const char *dir, char *const *data, const size_t *len,
                              struct melbo_err *err) {
    char final[PEFT_FILES][4096], tmp[PEFT_FILES][4200];
    int ret = 0, made = 0;
    for (; made < PEFT_FILES; made++) {
        ret = melbo_path_join(final[made], sizeof final[made], dir, peft_names[made]);
        if (ret) {
            ret = melbo_err_set(err, MELBO_ERANGE, "the path %s is too long", dir);
            goto undo;
        }
        snprintf(tmp[made], sizeof tmp[made], "%s.melbo-export.%ld", final[made], (long)getpid());
        ret = melbo_file_write_atomic(tmp[made], data[made], len[made], err);
        if (ret)
            goto undo;
    }
    for (int i = 0; i < PEFT_FILES; i++)
        if (rename(tmp[i], final[i]) != 0) {
            ret = melbo_err_set(err, MELBO_EIO, "cannot rename %s to %s: %s", tmp[i], final[i],
                                strerror(errno));
            made = PEFT_FILES;
            goto undo;
        }
    return 0;
undo:
    for (int i = 0; i < made; i++)
        unlink(tmp[i]);
    return ret;
}

int melbo_export_peft(const struct melbo_export_job *job, struct melbo_err *err) {
    const struct melbo_bank *b = job->bank;
    if (melbo_bank_from_gguf(b)) {
        const char *name = melbo_bank_meta(b, "model_name");
        return melbo_err_set(err, MELBO_EUNSUPPORTED,
                             "%s was trained on a GGUF model (%s): --format peft is for banks "
                             "of a Hugging Face checkpoint; use --format gguf-lora",
                             job->bank_path, name ? name : "adapter_module ffn_down");
    }
    const struct peft_target *t = find_target(b->module);
    if (t == NULL)
        return melbo_err_set(err, MELBO_EUNSUPPORTED,
                             "%s: adapter_module '%s' has no PEFT equivalent known to melbo "
                             "(mlp.down_proj, mlp.c_proj)",
                             job->bank_path, b->module);
    if (b->source_layer < 0)
        return melbo_err_set(err, MELBO_EMISSING, "%s: missing metadata 'source_layer'",
                             job->bank_path);
    struct stat st;
    int exists = stat(job->out, &st) == 0;
    if (exists && !S_ISDIR(st.st_mode))
        return melbo_err_set(err, MELBO_EIO,
                             "-o %s exists and is not a directory (--format peft writes a "
                             "directory)",
                             job->out);
    char *data[PEFT_FILES];
    size_t len[PEFT_FILES];
    peft_weights(job, t, &data[0], &len[0]);
    data[1] = peft_config(b, t);
    len[1] = strlen(data[1]);
    int ret = exists ? write_existing_dir(job->out, data, len, err)
                     : write_new_dir(job->out, data, len, err);
    for (int i = 0; i < PEFT_FILES; i++)
        free(data[i]);
    return ret;
}
