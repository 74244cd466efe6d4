/* rank/train/state.c - bank files and checkpoints (rank/train/state.h). */
#include "rank/train/state.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/mem.h"
#include "common/sha256.h"
#include "rank/model/safetensors.h"

static void meta_num(struct melbo_st_writer *w, const char *key, double v) {
    char buf[64];
    snprintf(buf, sizeof buf, "%.9g", v);
    melbo_st_writer_meta(w, key, buf);
}

static void meta_int(struct melbo_st_writer *w, const char *key, long v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%ld", v);
    melbo_st_writer_meta(w, key, buf);
}

/* sha256 hex of the prompts' ids (lengths included). */
static void prompts_hash(const struct melbo_trainer *tr, char hex[65]) {
    struct melbo_sha256 h;
    melbo_sha256_init(&h);
    for (int i = 0; i < tr->P; i++) {
        int32_t n = tr->lens[i];
        melbo_sha256_update(&h, &n, sizeof n);
        melbo_sha256_update(&h, tr->ids[i], sizeof(int32_t) * (size_t)n);
    }
    uint8_t dg[32];
    melbo_sha256_final(&h, dg);
    melbo_sha256_hex(dg, hex);
}

void melbo_trainer_settings(const struct melbo_trainer *tr, struct melbo_st_writer *w) {
    const struct melbo_train_params *p = tr->p;
    char buf[128], hex[65];
    melbo_st_writer_meta(w, "setting.model_fingerprint", tr->fingerprint);
    meta_int(w, "setting.source_layer", tr->s);
    meta_int(w, "setting.target_layer", tr->t);
    snprintf(buf, sizeof buf, "%.17g", p->radius);
    melbo_st_writer_meta(w, "setting.radius", buf);
    snprintf(buf, sizeof buf, "%.17g", p->p);
    melbo_st_writer_meta(w, "setting.p", buf);
    snprintf(buf, sizeof buf, "%.17g", p->q);
    melbo_st_writer_meta(w, "setting.q", buf);
    melbo_st_writer_meta(w, "setting.loss_axis",
                         p->loss_axis == MELBO_LOSS_AXIS_DIM ? "dim" : "token");
    melbo_st_writer_meta(w, "setting.target_tokens", p->target_tokens.text);
    meta_int(w, "setting.steps", tr->steps);
    meta_int(w, "setting.vectors", tr->N);
    meta_int(w, "setting.wave", tr->B);
    melbo_st_writer_meta(w, "setting.orthogonal", p->orthogonal ? "true" : "false");
    snprintf(buf, sizeof buf, "%.17g,%.17g,%.17g,%.17g", p->lr, p->beta1, p->beta2, p->eps);
    melbo_st_writer_meta(w, "setting.adam", buf);
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)p->seed);
    melbo_st_writer_meta(w, "setting.seed", buf);
    if (tr->init_draws) {
        struct melbo_sha256 h;
        uint8_t dg[32];
        melbo_sha256_init(&h);
        melbo_sha256_update(&h, tr->init_draws, sizeof(float) * (size_t)tr->N * tr->d);
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
    for (int i = 0; i < tr->P; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(tr->texts[i]));
    char *s = cJSON_PrintUnformatted(a);
    cJSON_Delete(a);
    return s;
}

int melbo_bank_write(const struct melbo_trainer *tr, const char *path, struct melbo_err *err) {
    const struct melbo_train_params *p = tr->p;
    struct melbo_st_writer w;
    melbo_st_writer_init(&w);
    int64_t vshape[2] = {tr->N, tr->d}, oshape[2] = {tr->N, tr->steps};
    melbo_st_writer_add(&w, "vectors", MELBO_DTYPE_F32, 2, vshape, tr->vectors);
    melbo_st_writer_add(&w, "objective", MELBO_DTYPE_F32, 2, oshape, tr->objective);
    int tmax = 0;
    for (int i = 0; i < tr->P; i++)
        tmax = tr->lens[i] > tmax ? tr->lens[i] : tmax;
    int32_t *pids = melbo_xmalloc(sizeof(int32_t) * (size_t)tr->P * tmax);
    int32_t *plens = melbo_xmalloc(sizeof(int32_t) * (size_t)tr->P);
    for (int i = 0; i < tr->P; i++) {
        plens[i] = tr->lens[i];
        for (int j = 0; j < tmax; j++)
            pids[(size_t)i * tmax + j] = j < tr->lens[i] ? tr->ids[i][j] : -1;
    }
    int64_t pshape[2] = {tr->P, tmax}, lshape[1] = {tr->P};
    melbo_st_writer_add(&w, "prompt_ids", MELBO_DTYPE_I32, 2, pshape, pids);
    melbo_st_writer_add(&w, "prompt_lengths", MELBO_DTYPE_I32, 1, lshape, plens);
    int64_t rshape[2] = {tr->K, tr->d};
    if (tr->K > 0)
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
    meta_int(&w, "source_layer", tr->s);
    meta_int(&w, "target_layer", tr->t);
    meta_num(&w, "radius", p->radius);
    meta_num(&w, "p", p->p);
    meta_num(&w, "q", p->q);
    melbo_st_writer_meta(&w, "loss_axis", p->loss_axis == MELBO_LOSS_AXIS_DIM ? "dim" : "token");
    melbo_st_writer_meta(&w, "target_tokens", p->target_tokens.text);
    meta_int(&w, "steps", tr->steps);
    meta_int(&w, "vectors", tr->N);
    meta_num(&w, "lr", p->lr);
    snprintf(buf, sizeof buf, "[%.9g, %.9g]", p->beta1, p->beta2);
    melbo_st_writer_meta(&w, "betas", buf);
    meta_num(&w, "eps", p->eps);
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)p->seed);
    melbo_st_writer_meta(&w, "seed", buf);
    melbo_st_writer_meta(&w, "init", p->init ? "file" : "generator");
    melbo_st_writer_meta(&w, "orthogonal", p->orthogonal ? "true" : "false");
    meta_int(&w, "wave", tr->B);
    melbo_st_writer_meta(&w, "chat_format", tr->chat_format);
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
    return ret;
}

/* ---------------------------------------------------------------------------------------------
 * Checkpoint.
 */

int melbo_trainer_checkpoint(const struct melbo_trainer *tr, const char *path,
                             struct melbo_err *err) {
    struct melbo_st_writer w;
    melbo_st_writer_init(&w);
    int64_t fin[2] = {tr->n_done, tr->d}, wave[2] = {tr->wave_B, tr->d};
    int64_t obj[2] = {tr->N, tr->steps};
    melbo_st_writer_add(&w, "finished", MELBO_DTYPE_F32, 2, fin, tr->vectors);
    melbo_st_writer_add(&w, "objective", MELBO_DTYPE_F32, 2, obj, tr->objective);
    melbo_st_writer_add(&w, "theta", MELBO_DTYPE_F32, 2, wave, tr->theta);
    melbo_st_writer_add(&w, "m", MELBO_DTYPE_F32, 2, wave, tr->m);
    melbo_st_writer_add(&w, "v", MELBO_DTYPE_F32, 2, wave, tr->v);
    melbo_st_writer_add(&w, "vhat", MELBO_DTYPE_F32, 2, wave, tr->vhat);
    melbo_st_writer_meta(&w, "format", "melbo-checkpoint");
    melbo_st_writer_meta(&w, "format_version", "1");
    meta_int(&w, "n_done", tr->n_done);
    meta_int(&w, "wave_step", tr->wave_step);
    meta_int(&w, "wave_B", tr->wave_B);
    meta_int(&w, "next_draw", tr->n_done + tr->wave_B);
    melbo_trainer_settings(tr, &w);
    int ret = melbo_st_writer_write(&w, path, err);
    melbo_st_writer_free(&w);
    return ret;
}

static const char *names[] = {"model_fingerprint",
                              "source_layer",
                              "target_layer",
                              "radius",
                              "p",
                              "q",
                              "loss_axis",
                              "target_tokens",
                              "steps",
                              "vectors",
                              "wave",
                              "orthogonal",
                              "adam",
                              "seed",
                              "init",
                              "prompt_ids"};

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

int melbo_trainer_resume(struct melbo_trainer *tr, const char *path, struct melbo_err *err) {
    struct melbo_st_file f;
    struct melbo_st_writer mine;
    int ret = melbo_st_open(&f, path, err);
    if (ret)
        return melbo_err_prefix(err, "--resume");
    melbo_st_writer_init(&mine);
    const char *fmt = melbo_st_meta(&f, "format");
    if (fmt == NULL || strcmp(fmt, "melbo-checkpoint") != 0) {
        ret = melbo_err_set(err, MELBO_EFORMAT, "--resume %s is not a melbo checkpoint", path);
        goto out;
    }
    melbo_trainer_settings(tr, &mine);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char key[64];
        snprintf(key, sizeof key, "setting.%s", names[i]);
        const char *theirs = melbo_st_meta(&f, key), *ours = NULL;
        for (int k = 0; k < mine.n_meta; k++)
            if (strcmp(mine.keys[k], key) == 0)
                ours = mine.values[k];
        if (theirs == NULL || strcmp(theirs, ours) != 0) {
            ret = melbo_err_set(err, MELBO_EINVAL,
                                "--resume %s was written by a different run: its %s is %s, this "
                                "run's is %s (a checkpoint resumes only the same model, prompts "
                                "and settings)",
                                path, names[i], theirs ? theirs : "(missing)", ours);
            goto out;
        }
    }
    const char *nd = melbo_st_meta(&f, "n_done"), *ws = melbo_st_meta(&f, "wave_step"),
               *wb = melbo_st_meta(&f, "wave_B");
    if (!nd || !ws || !wb) {
        ret = melbo_err_set(err, MELBO_EFORMAT, "checkpoint %s: missing position", path);
        goto out;
    }
    tr->n_done = atoi(nd);
    tr->wave_step = atoi(ws);
    tr->wave_B = atoi(wb);
    if (tr->n_done < 0 || tr->n_done > tr->N || tr->wave_B < 0 || tr->wave_B > tr->B ||
        tr->wave_step < 0 || tr->wave_step > tr->steps) {
        ret = melbo_err_set(err, MELBO_EFORMAT, "checkpoint %s: inconsistent position", path);
        goto out;
    }
    if ((ret = take(&f, "finished", tr->n_done, tr->d, tr->vectors, err)) ||
        (ret = take(&f, "objective", tr->N, tr->steps, tr->objective, err)) ||
        (ret = take(&f, "theta", tr->wave_B, tr->d, tr->theta, err)) ||
        (ret = take(&f, "m", tr->wave_B, tr->d, tr->m, err)) ||
        (ret = take(&f, "v", tr->wave_B, tr->d, tr->v, err)) ||
        (ret = take(&f, "vhat", tr->wave_B, tr->d, tr->vhat, err)))
        goto out;
    if (tr->wave_step == 0)
        tr->wave_B = 0;
out:
    melbo_st_writer_free(&mine);
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
