/* rank/train/state.c - bank files and checkpoints (rank/train/state.h). */
#include "rank/train/state.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/mem.h"
#include "common/sha256.h"
#include "rank/model/gguf.h"
#include "rank/model/safetensors.h"

static void meta_int(struct melbo_st_writer *w, const char *key, long v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%ld", v);
    melbo_st_writer_meta(w, key, buf);
}

/* sha256 hex of the prompts' ids (lengths included). */
static void prompts_hash(const struct melbo_trainer *tr, char hex[65]) {
    struct melbo_sha256 h;
    melbo_sha256_init(&h);
    for (int i = 0; i < tr->pr.P; i++) {
        int32_t n = tr->pr.lens[i];
        melbo_sha256_update(&h, &n, sizeof n);
        melbo_sha256_update(&h, tr->pr.ids[i], sizeof(int32_t) * (size_t)n);
    }
    uint8_t dg[32];
    melbo_sha256_final(&h, dg);
    melbo_sha256_hex(dg, hex);
}

/* melbo_opts_each's callback: one option as "<prefix><key>" metadata in style (skip: a key left
 * out, e.g. radius in an adapter bank, or NULL). */
struct meta_out {
    struct melbo_st_writer *w;
    const char *prefix;
    enum melbo_opt_style style;
    const char *skip;
};

static void meta_option(void *ctx, const struct melbo_opt *row, const void *base) {
    const struct meta_out *o = ctx;
    char key[96], name[64], value[256];
    melbo_opt_key(row, name, sizeof name);
    if (o->skip && strcmp(name, o->skip) == 0)
        return;
    snprintf(key, sizeof key, "%s%s", o->prefix, name);
    if (melbo_opts_format(row, base, o->style, value, sizeof value) == 0)
        melbo_st_writer_meta(o->w, key, value);
}

void melbo_trainer_settings(const struct melbo_trainer *tr, struct melbo_st_writer *w) {
    char hex[65];
    struct meta_out out = {w, "setting.", MELBO_OPT_STYLE_EXACT, NULL};
    melbo_st_writer_meta(w, "setting.model_fingerprint", tr->fingerprint);
    melbo_opts_each(&melbo_train_table, &tr->set, MELBO_OPT_RESULT, meta_option, &out);
    if (tr->init_draws) {
        struct melbo_sha256 h;
        uint8_t dg[32];
        melbo_sha256_init(&h);
        melbo_sha256_update(&h, tr->init_draws, sizeof(float) * (size_t)tr->N * tr->W);
        melbo_sha256_final(&h, dg);
        melbo_sha256_hex(dg, hex);
        melbo_st_writer_meta(w, "setting.init", hex);
    } else {
        melbo_st_writer_meta(w, "setting.init", "generator");
    }
    prompts_hash(tr, hex);
    melbo_st_writer_meta(w, "setting.prompt_ids", hex);
}

/* ---------------------------------------------------------------------------------------------
 * Bank.
 */

static char *json_prompts(const struct melbo_trainer *tr) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < tr->pr.P; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(tr->pr.texts[i]));
    char *s = cJSON_PrintUnformatted(a);
    cJSON_Delete(a);
    return s;
}

/* The module an adapter bank's factors belong to, as the model's own files name it. */
static const char *adapter_module(const struct melbo_trainer *tr) {
    if (melbo_gguf_is_path(tr->set.model))
        return "ffn_down";
    return tr->model.cfg.arch == MELBO_ARCH_QWEN ? "mlp.c_proj" : "mlp.down_proj";
}

/* n adapter rows (n, W) as the bank's two factor tensors <prefix>lora_A [n, r, ff] and
 * <prefix>lora_B [n, d, r]; the copies are added to fac (freed by the caller). */
static void add_adapters(struct melbo_st_writer *w, const struct melbo_trainer *tr,
                         const char *prefix, const float *rows, int n, float **fac) {
    const struct melbo_adapter_shape *a = &tr->adapter;
    size_t nA = melbo_adapter_n_A(a), nB = (size_t)tr->W - nA;
    fac[0] = melbo_xalloc_f32((size_t)(n ? n : 1) * nA);
    fac[1] = melbo_xalloc_f32((size_t)(n ? n : 1) * nB);
    for (int k = 0; k < n; k++) {
        memcpy(fac[0] + k * nA, rows + (size_t)k * tr->W, sizeof(float) * nA);
        memcpy(fac[1] + k * nB, rows + (size_t)k * tr->W + nA, sizeof(float) * nB);
    }
    char name[64];
    int64_t sA[3] = {n, a->r, a->ff}, sB[3] = {n, a->d, a->r};
    snprintf(name, sizeof name, "%slora_A", prefix);
    melbo_st_writer_add(w, name, MELBO_DTYPE_F32, 3, sA, fac[0]);
    snprintf(name, sizeof name, "%slora_B", prefix);
    melbo_st_writer_add(w, name, MELBO_DTYPE_F32, 3, sB, fac[1]);
}

int melbo_bank_write(const struct melbo_trainer *tr, const char *path, struct melbo_err *err) {
    const struct melbo_train_params *p = &tr->set;
    struct melbo_st_writer w;
    float *fac[4] = {NULL, NULL, NULL, NULL}; // adapter factors (trained, random), owned
    melbo_st_writer_init(&w);
    int64_t vshape[2] = {tr->N, tr->d}, oshape[2] = {tr->N, tr->steps};
    if (tr->adapters)
        add_adapters(&w, tr, "", tr->ws.vectors, tr->N, fac);
    else
        melbo_st_writer_add(&w, "vectors", MELBO_DTYPE_F32, 2, vshape, tr->ws.vectors);
    melbo_st_writer_add(&w, "objective", MELBO_DTYPE_F32, 2, oshape, tr->ws.objective);
    const struct melbo_prompts *pr = &tr->pr;
    int tmax = 0;
    for (int i = 0; i < pr->P; i++)
        tmax = pr->lens[i] > tmax ? pr->lens[i] : tmax;
    int32_t *pids = melbo_xmalloc(sizeof(int32_t) * (size_t)pr->P * tmax);
    int32_t *plens = melbo_xmalloc(sizeof(int32_t) * (size_t)pr->P);
    for (int i = 0; i < pr->P; i++) {
        plens[i] = pr->lens[i];
        for (int j = 0; j < tmax; j++)
            pids[(size_t)i * tmax + j] = j < pr->lens[i] ? pr->ids[i][j] : -1;
    }
    int64_t pshape[2] = {pr->P, tmax}, lshape[1] = {pr->P};
    melbo_st_writer_add(&w, "prompt_ids", MELBO_DTYPE_I32, 2, pshape, pids);
    melbo_st_writer_add(&w, "prompt_lengths", MELBO_DTYPE_I32, 1, lshape, plens);
    int64_t rshape[2] = {tr->K, tr->d};
    if (tr->K > 0 && tr->adapters)
        add_adapters(&w, tr, "random_", tr->random, tr->K, fac + 2);
    else if (tr->K > 0)
        melbo_st_writer_add(&w, "random_vectors", MELBO_DTYPE_F32, 2, rshape, tr->random);

    char buf[128];
    melbo_st_writer_meta(&w, "format", "melbo-bank");
    melbo_st_writer_meta(&w, "format_version", MELBO_BANK_FORMAT_VERSION);
    melbo_st_writer_meta(&w, "model_name", tr->model_name);
    melbo_st_writer_meta(&w, "model_fingerprint", tr->fingerprint);
    melbo_st_writer_meta(&w, "architecture",
                         tr->model.cfg.architecture[0] ? tr->model.cfg.architecture
                                                       : tr->model.cfg.model_type);
    meta_int(&w, "d_model", tr->d);
    meta_int(&w, "n_layers", tr->L);
    melbo_st_writer_meta(&w, "kind", tr->adapters ? "adapter" : "vector");
    if (tr->adapters) {
        meta_int(&w, "d_mlp", tr->adapter.ff);
        meta_int(&w, "adapter_rank", tr->adapter.r);
        snprintf(buf, sizeof buf, "%.9g", tr->adapter.alpha);
        melbo_st_writer_meta(&w, "adapter_alpha", buf);
        melbo_st_writer_meta(&w, "adapter_module", adapter_module(tr));
    }
    /* every option of the table flagged MELBO_OPT_BANK, as the run resolved it */
    struct meta_out out = {&w, "", MELBO_OPT_STYLE_BANK, tr->adapters ? "radius" : NULL};
    melbo_opts_each(&melbo_train_table, p, MELBO_OPT_BANK, meta_option, &out);
    melbo_st_writer_meta(&w, "init", p->init ? "file" : "generator");
    melbo_st_writer_meta(&w, "chat_format", tr->pr.chat_format);
    char *prompts = json_prompts(tr);
    melbo_st_writer_meta(&w, "prompts", prompts);
    free(prompts);
    if (tr->cal.samples > 0) {
        char cal[512];
        snprintf(cal, sizeof cal,
                 "{\"method\": \"relative lambda rule\", \"lambda\": %.9g, \"samples\": %d, "
                 "\"radius\": %.9g, \"bracket\": [%g, %g], \"ratio_at_bracket\": [%.9g, %.9g]}",
                 tr->cal.lambda, tr->cal.samples, tr->cal.radius, MELBO_CAL_R_MIN, MELBO_CAL_R_MAX,
                 tr->cal.ratio_lo, tr->cal.ratio_hi);
        melbo_st_writer_meta(&w, "radius_calibration", cal);
    }
    melbo_st_writer_meta(&w, "generation", tr->generation_json);
    melbo_st_writer_meta(&w, "completions", tr->completions_json);
    melbo_st_writer_meta(&w, "triage", tr->triage_json);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    melbo_st_writer_meta(&w, "created", buf);
    melbo_st_writer_meta(&w, "job_id", p->job_id);
    melbo_st_writer_meta(&w, "melbo_version", MELBO_VERSION);
    int ret = melbo_st_writer_write(&w, path, err);
    melbo_st_writer_free(&w);
    free(pids);
    free(plens);
    for (int k = 0; k < 4; k++)
        free(fac[k]);
    return ret;
}

/* ---------------------------------------------------------------------------------------------
 * Checkpoint.
 */

int melbo_train_checkpoint_write(const struct melbo_wave_state *ws,
                                 const struct melbo_st_writer *settings, const char *path,
                                 struct melbo_err *err) {
    struct melbo_st_writer w;
    melbo_st_writer_init(&w);
    int64_t fin[2] = {ws->n_done, ws->d}, wave[2] = {ws->wave_B, ws->d};
    int64_t obj[2] = {ws->N, ws->steps};
    melbo_st_writer_add(&w, "finished", MELBO_DTYPE_F32, 2, fin, ws->vectors);
    melbo_st_writer_add(&w, "objective", MELBO_DTYPE_F32, 2, obj, ws->objective);
    melbo_st_writer_add(&w, "theta", MELBO_DTYPE_F32, 2, wave, ws->theta);
    melbo_st_writer_add(&w, "m", MELBO_DTYPE_F32, 2, wave, ws->m);
    melbo_st_writer_add(&w, "v", MELBO_DTYPE_F32, 2, wave, ws->v);
    melbo_st_writer_add(&w, "vhat", MELBO_DTYPE_F32, 2, wave, ws->vhat);
    melbo_st_writer_meta(&w, "format", "melbo-checkpoint");
    melbo_st_writer_meta(&w, "format_version", MELBO_CHECKPOINT_FORMAT_VERSION);
    meta_int(&w, "n_done", ws->n_done);
    meta_int(&w, "wave_step", ws->wave_step);
    meta_int(&w, "wave_B", ws->wave_B);
    meta_int(&w, "next_draw", ws->n_done + ws->wave_B);
    for (int k = 0; k < settings->n_meta; k++)
        melbo_st_writer_meta(&w, settings->keys[k], settings->values[k]);
    int ret = melbo_st_writer_write(&w, path, err);
    melbo_st_writer_free(&w);
    return ret;
}

/* The value of key in the writer's metadata, or NULL. */
static const char *writer_meta(const struct melbo_st_writer *w, const char *key) {
    for (int k = 0; k < w->n_meta; k++)
        if (strcmp(w->keys[k], key) == 0)
            return w->values[k];
    return NULL;
}

/* 0 when the checkpoint f records exactly this run's settings (mine), else MELBO_EINVAL naming
 * the first that differs either way. */
static int same_settings(const struct melbo_st_file *f, const struct melbo_st_writer *mine,
                         struct melbo_err *err) {
    /* vectors against adapters first: the plainest way to say why */
    const char *ours = writer_meta(mine, "setting.adapter_rank"),
               *theirs = melbo_st_meta(f, "setting.adapter_rank");
    if (ours && theirs && (strcmp(ours, "0") == 0) != (strcmp(theirs, "0") == 0))
        return melbo_err_set(err, MELBO_EINVAL,
                             "--resume %s holds %s but this run trains %s (--adapter-rank %s)",
                             f->path, strcmp(theirs, "0") ? "adapters" : "steering vectors",
                             strcmp(ours, "0") ? "adapters" : "steering vectors", ours);
    for (int pass = 0; pass < 2; pass++) {
        int n = pass == 0 ? mine->n_meta : f->n_meta;
        for (int k = 0; k < n; k++) {
            const char *key = pass == 0 ? mine->keys[k] : f->meta_keys[k];
            if (strncmp(key, "setting.", 8) != 0)
                continue;
            const char *ours = writer_meta(mine, key), *theirs = melbo_st_meta(f, key);
            if (theirs && ours && strcmp(theirs, ours) == 0)
                continue;
            return melbo_err_set(err, MELBO_EINVAL,
                                 "--resume %s was written by a different run: its %s is %s, this "
                                 "run's is %s (a checkpoint resumes only the same model, prompts "
                                 "and settings)",
                                 f->path, key + 8, theirs ? theirs : "(missing)",
                                 ours ? ours : "(missing)");
        }
    }
    return 0;
}

/* Copies the F32 tensor name of shape (rows, cols) into dst. */
static int take(const struct melbo_st_file *f, const char *name, long rows, long cols, float *dst,
                struct melbo_err *err) {
    const struct melbo_st_tensor *t = melbo_st_find(f, name);
    if (t == NULL || t->dtype != MELBO_DTYPE_F32 || t->ndim != 2 || t->shape[0] != rows ||
        t->shape[1] != cols)
        return melbo_err_set(err, MELBO_EFORMAT,
                             "checkpoint %s: tensor '%s' missing or not F32 [%ld, %ld]", f->path,
                             name, rows, cols);
    if (rows > 0 && cols > 0)
        memcpy(dst, t->data, sizeof(float) * (size_t)(rows * cols));
    return 0;
}

int melbo_train_checkpoint_read(struct melbo_wave_state *ws, const struct melbo_st_writer *mine,
                                const char *path, struct melbo_err *err) {
    struct melbo_st_file f;
    int ret = melbo_st_open(&f, path, err);
    if (ret)
        return melbo_err_prefix(err, "--resume");
    const char *fmt = melbo_st_meta(&f, "format");
    if (fmt == NULL || strcmp(fmt, "melbo-checkpoint") != 0) {
        ret = melbo_err_set(err, MELBO_EFORMAT, "--resume %s is not a melbo checkpoint", path);
        goto out;
    }
    const char *version = melbo_st_meta(&f, "format_version");
    if (version == NULL || strcmp(version, MELBO_CHECKPOINT_FORMAT_VERSION) != 0) {
        ret = melbo_err_set(err, MELBO_EFORMAT,
                            "--resume %s is a checkpoint of format %s; this melbo reads format %s "
                            "(start the run again)",
                            path, version ? version : "(none)", MELBO_CHECKPOINT_FORMAT_VERSION);
        goto out;
    }
    if ((ret = same_settings(&f, mine, err)) != 0)
        goto out;
    const char *nd = melbo_st_meta(&f, "n_done"), *st = melbo_st_meta(&f, "wave_step"),
               *wb = melbo_st_meta(&f, "wave_B");
    if (!nd || !st || !wb) {
        ret = melbo_err_set(err, MELBO_EFORMAT, "checkpoint %s: missing position", path);
        goto out;
    }
    ws->n_done = atoi(nd);
    ws->wave_step = atoi(st);
    ws->wave_B = atoi(wb);
    if (ws->n_done < 0 || ws->n_done > ws->N || ws->wave_B < 0 || ws->wave_B > ws->B ||
        ws->wave_step < 0 || ws->wave_step > ws->steps) {
        ret = melbo_err_set(err, MELBO_EFORMAT, "checkpoint %s: inconsistent position", path);
        goto out;
    }
    if ((ret = take(&f, "finished", ws->n_done, ws->d, ws->vectors, err)) ||
        (ret = take(&f, "objective", ws->N, ws->steps, ws->objective, err)) ||
        (ret = take(&f, "theta", ws->wave_B, ws->d, ws->theta, err)) ||
        (ret = take(&f, "m", ws->wave_B, ws->d, ws->m, err)) ||
        (ret = take(&f, "v", ws->wave_B, ws->d, ws->v, err)) ||
        (ret = take(&f, "vhat", ws->wave_B, ws->d, ws->vhat, err)))
        goto out;
    if (ws->wave_step == 0)
        ws->wave_B = 0;
out:
    melbo_st_close(&f);
    return ret;
}

/* ---------------------------------------------------------------------------------------------
 * Bank equality.
 */

static int meta_ignored(const char *k) {
    return !strcmp(k, "created") || !strcmp(k, "job_id") || !strcmp(k, "melbo_version");
}

/* 1 if every (non-ignored) key of x has the same value in y; else 0 with why. */
static int meta_subset(const struct melbo_st_file *x, const struct melbo_st_file *y, char *why,
                       size_t n) {
    for (int i = 0; i < x->n_meta; i++) {
        if (meta_ignored(x->meta_keys[i]))
            continue;
        const char *v = melbo_st_meta(y, x->meta_keys[i]);
        if (v == NULL || strcmp(v, x->meta_values[i]) != 0) {
            snprintf(why, n, "metadata '%s' differs: %.200s vs %.200s", x->meta_keys[i],
                     x->meta_values[i], v ? v : "(missing)");
            return 0;
        }
    }
    return 1;
}

int melbo_bank_equal(const char *a, const char *b, char *why, size_t why_len,
                     struct melbo_err *err) {
    struct melbo_st_file fa, fb;
    int ret = melbo_st_open(&fa, a, err);
    if (ret)
        return ret;
    ret = melbo_st_open(&fb, b, err);
    if (ret) {
        melbo_st_close(&fa);
        return ret;
    }
    ret = 1;
    if (fa.n_tensors != fb.n_tensors) {
        snprintf(why, why_len, "%d tensors vs %d", fa.n_tensors, fb.n_tensors);
        ret = 0;
    }
    for (int i = 0; ret == 1 && i < fa.n_tensors; i++) {
        const struct melbo_st_tensor *x = &fa.tensors[i], *y = melbo_st_find(&fb, x->name);
        if (y == NULL || y->dtype != x->dtype || y->ndim != x->ndim || y->nbytes != x->nbytes ||
            memcmp(y->shape, x->shape, sizeof(int64_t) * (size_t)x->ndim) != 0) {
            snprintf(why, why_len, "tensor '%s' differs in name, dtype or shape", x->name);
            ret = 0;
        } else if (x->nbytes && memcmp(x->data, y->data, x->nbytes) != 0) {
            snprintf(why, why_len, "tensor '%s' differs in value", x->name);
            ret = 0;
        }
    }
    if (ret == 1)
        ret = meta_subset(&fa, &fb, why, why_len) && meta_subset(&fb, &fa, why, why_len);
    if (ret == 1)
        snprintf(why, why_len, "equal");
    melbo_st_close(&fa);
    melbo_st_close(&fb);
    return ret;
}

/* ---------------------------------------------------------------------------------------------
 * The trainer's checkpoints: its optimiser state and the settings that decide the result.
 */

int melbo_trainer_checkpoint(const struct melbo_trainer *tr, const char *path,
                             struct melbo_err *err) {
    struct melbo_st_writer settings;
    melbo_st_writer_init(&settings);
    melbo_trainer_settings(tr, &settings);
    int ret = melbo_train_checkpoint_write(&tr->ws, &settings, path, err);
    melbo_st_writer_free(&settings);
    return ret;
}

int melbo_trainer_resume(struct melbo_trainer *tr, const char *path, struct melbo_err *err) {
    struct melbo_st_writer settings;
    melbo_st_writer_init(&settings);
    melbo_trainer_settings(tr, &settings);
    int ret = melbo_train_checkpoint_read(&tr->ws, &settings, path, err);
    melbo_st_writer_free(&settings);
    return ret;
}
