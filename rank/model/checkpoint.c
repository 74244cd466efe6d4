/* rank/model/checkpoint.c - single-file and sharded checkpoints (rank/model/checkpoint.h). */
#include "rank/model/checkpoint.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/file.h"
#include "common/mem.h"
#include "common/sha256.h"

/* Collects the distinct shard names of an index's weight_map, in first-seen order. */
static int index_shards(const cJSON *map, char ***names_out, int *n_out, const char *src,
                        struct melbo_err *err) {
    int n = 0, cap = 8;
    char **names = melbo_xcalloc((size_t)cap, sizeof *names);
    const cJSON *e;
    cJSON_ArrayForEach(e, map) {
        if (!cJSON_IsString(e)) {
            for (int i = 0; i < n; i++)
                free(names[i]);
            free(names);
            return melbo_err_set(err, MELBO_EFORMAT, "%s: weight_map entry '%s' is not a string",
                                 src, e->string);
        }
        const char *fn = e->valuestring;
        if (strchr(fn, '/') || strcmp(fn, "..") == 0) {
            for (int i = 0; i < n; i++)
                free(names[i]);
            free(names);
            return melbo_err_set(err, MELBO_EFORMAT, "%s: shard name '%s' is not a plain file name",
                                 src, fn);
        }
        int seen = 0;
        for (int i = 0; i < n && !seen; i++)
            seen = strcmp(names[i], fn) == 0;
        if (seen)
            continue;
        if (n == cap) {
            cap *= 2;
            names = melbo_xrealloc(names, (size_t)cap * sizeof *names);
        }
        names[n++] = melbo_xstrdup(fn);
    }
    *names_out = names;
    *n_out = n;
    return 0;
}

static int open_sharded(struct melbo_checkpoint *ck, const char *index_path, struct melbo_err *err) {
    char *text = NULL, **names = NULL;
    int n_names = 0, ret;
    cJSON *root = NULL;
    ret = melbo_file_read(index_path, &text, NULL, err);
    if (ret)
        goto out;
    root = cJSON_Parse(text);
    const cJSON *map = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
    if (!cJSON_IsObject(map)) {
        ret = melbo_err_set(err, MELBO_EFORMAT, "%s: invalid index (needs a \"weight_map\" object)",
                            index_path);
        goto out;
    }
    ret = index_shards(map, &names, &n_names, index_path, err);
    if (ret)
        goto out;
    ck->files = melbo_xcalloc((size_t)n_names + 1, sizeof *ck->files);
    for (int i = 0; i < n_names; i++) {
        char path[4096];
        melbo_path_join(path, sizeof path, ck->dir, names[i]);
        ret = melbo_st_open(&ck->files[i], path, err);
        if (ret)
            goto out;
        ck->n_files++;
    }
    /* Every tensor the index names must be in the shard it names. */
    const cJSON *e;
    cJSON_ArrayForEach(e, map) {
        int found = 0;
        for (int i = 0; i < ck->n_files && !found; i++)
            if (strcmp(names[i], e->valuestring) == 0)
                found = melbo_st_find(&ck->files[i], e->string) != NULL;
        if (!found) {
            ret = melbo_err_set(err, MELBO_EMISSING, "%s names tensor '%s' in %s, which lacks it",
                                index_path, e->string, e->valuestring);
            goto out;
        }
    }
out:
    for (int i = 0; i < n_names; i++)
        free(names[i]);
    free(names);
    cJSON_Delete(root);
    free(text);
    return ret;
}

int melbo_checkpoint_open(struct melbo_checkpoint *ck, const char *dir, struct melbo_err *err) {
    char path[4096];
    int ret = 0;
    memset(ck, 0, sizeof *ck);
    ck->dir = melbo_xstrdup(dir);
    if (melbo_gguf_is_path(dir)) {
        ck->gguf = melbo_xcalloc(1, sizeof *ck->gguf);
        ret = melbo_gguf_open(ck->gguf, dir, err);
        if (ret)
            goto fail;
        return 0;
    }
    if (melbo_path_join(path, sizeof path, dir, "model.safetensors.index.json") != 0) {
        ret = melbo_err_set(err, MELBO_ERANGE, "model path too long: %s", dir);
        goto fail;
    }
    if (access(path, F_OK) == 0) {
        ret = open_sharded(ck, path, err);
        if (ret)
            goto fail;
        return 0;
    }
    melbo_path_join(path, sizeof path, dir, "model.safetensors");
    if (access(path, F_OK) != 0) {
        ret = melbo_err_set(err, MELBO_ENOENT,
                            "%s has neither model.safetensors nor model.safetensors.index.json",
                            dir);
        goto fail;
    }
    ck->files = melbo_xcalloc(1, sizeof *ck->files);
    ret = melbo_st_open(&ck->files[0], path, err);
    if (ret)
        goto fail;
    ck->n_files = 1;
    return 0;
fail:
    melbo_checkpoint_close(ck);
    return ret;
}

void melbo_checkpoint_close(struct melbo_checkpoint *ck) {
    for (int i = 0; i < ck->n_files; i++)
        melbo_st_close(&ck->files[i]);
    free(ck->files);
    if (ck->gguf)
        melbo_gguf_close(ck->gguf);
    free(ck->gguf);
    free(ck->dir);
    memset(ck, 0, sizeof *ck);
}

const struct melbo_st_tensor *melbo_checkpoint_find(const struct melbo_checkpoint *ck,
                                                    const char *name) {
    for (int i = 0; i < ck->n_files; i++) {
        const struct melbo_st_tensor *t = melbo_st_find(&ck->files[i], name);
        if (t)
            return t;
    }
    return NULL;
}

int64_t melbo_checkpoint_numel(const struct melbo_checkpoint *ck) {
    int64_t n = 0;
    for (int64_t i = 0; ck->gguf && i < ck->gguf->n_tensors; i++) {
        const struct melbo_gguf_tensor *t = &ck->gguf->tensors[i];
        n += t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
    }
    for (int i = 0; i < ck->n_files; i++)
        for (int j = 0; j < ck->files[i].n_tensors; j++)
            n += melbo_st_numel(&ck->files[i].tensors[j]);
    return n;
}

const char *melbo_checkpoint_main_dtype(const struct melbo_checkpoint *ck) {
    if (ck->gguf) {
        size_t gbytes[MELBO_GGML_TYPE_LIMIT] = {0};
        for (int64_t i = 0; i < ck->gguf->n_tensors; i++)
            gbytes[ck->gguf->tensors[i].type] += ck->gguf->tensors[i].nbytes;
        int best = 0;
        for (int t = 1; t < MELBO_GGML_TYPE_LIMIT; t++)
            if (gbytes[t] > gbytes[best])
                best = t;
        return melbo_ggml_type_name(best);
    }
    size_t bytes[MELBO_DTYPE_COUNT] = {0};
    for (int i = 0; i < ck->n_files; i++)
        for (int j = 0; j < ck->files[i].n_tensors; j++)
            bytes[ck->files[i].tensors[j].dtype] += ck->files[i].tensors[j].nbytes;
    int best = 0;
    for (int t = 1; t < MELBO_DTYPE_COUNT; t++)
        if (bytes[t] > bytes[best])
            best = t;
    return melbo_dtype_name((enum melbo_dtype)best);
}

static int cmp_tensor_ptr(const void *a, const void *b) {
    return strcmp((*(const struct melbo_st_tensor *const *)a)->name,
                  (*(const struct melbo_st_tensor *const *)b)->name);
}

int melbo_checkpoint_fingerprint(const struct melbo_checkpoint *ck, char hex[65],
                                 struct melbo_err *err) {
    char path[4096], *text = NULL;
    size_t len = 0;
    if (ck->gguf) {
        melbo_gguf_fingerprint(ck->gguf, hex);
        return 0;
    }
    melbo_path_join(path, sizeof path, ck->dir, "config.json");
    int ret = melbo_file_read(path, &text, &len, err);
    if (ret)
        return ret;
    struct melbo_sha256 h;
    melbo_sha256_init(&h);
    melbo_sha256_update(&h, text, len);
    free(text);
    int n = 0;
    for (int i = 0; i < ck->n_files; i++)
        n += ck->files[i].n_tensors;
    const struct melbo_st_tensor **all = melbo_xcalloc((size_t)n + 1, sizeof *all);
    n = 0;
    for (int i = 0; i < ck->n_files; i++)
        for (int j = 0; j < ck->files[i].n_tensors; j++)
            all[n++] = &ck->files[i].tensors[j];
    qsort(all, (size_t)n, sizeof *all, cmp_tensor_ptr);
    for (int i = 0; i < n; i++) {
        char line[1024];
        int w = snprintf(line, sizeof line, "%s %s [", all[i]->name, melbo_dtype_name(all[i]->dtype));
        for (int d = 0; d < all[i]->ndim && w < (int)sizeof line - 32; d++)
            w += snprintf(line + w, sizeof line - (size_t)w, d ? ", %lld" : "%lld",
                          (long long)all[i]->shape[d]);
        w += snprintf(line + w, sizeof line - (size_t)w, "]\n");
        melbo_sha256_update(&h, line, (size_t)w);
    }
    free(all);
    uint8_t digest[32];
    melbo_sha256_final(&h, digest);
    melbo_sha256_hex(digest, hex);
    return 0;
}
