/* rank/generate/settings.c - decoding settings (rank/generate/settings.h). */
#include "rank/generate/settings.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/file.h"

void melbo_gen_settings_init(struct melbo_gen_settings *g) {
    memset(g, 0, sizeof *g);
    melbo_opts_init(&melbo_gen_table, g);
}

void melbo_gen_add_stop(struct melbo_gen_settings *g, int32_t id) {
    if (id < 0 || g->n_stop >= MELBO_GEN_MAX_STOP || g->ignore_eos)
        return;
    for (int i = 0; i < g->n_stop; i++)
        if (g->stop[i] == id)
            return;
    g->stop[g->n_stop++] = id;
}

static void add_ids(struct melbo_gen_settings *g, const cJSON *v) {
    if (cJSON_IsNumber(v))
        melbo_gen_add_stop(g, (int32_t)v->valuedouble);
    else if (cJSON_IsArray(v)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, v) if (cJSON_IsNumber(e)) melbo_gen_add_stop(g, (int32_t)e->valuedouble);
    }
}

int melbo_gen_settings_from_model(struct melbo_gen_settings *g, const struct melbo_model_config *cfg,
                                  const char *dir, struct melbo_err *err) {
    for (int i = 0; i < cfg->n_eos; i++)
        melbo_gen_add_stop(g, cfg->eos_ids[i]);
    char path[4096], *text = NULL;
    melbo_path_join(path, sizeof path, dir, "generation_config.json");
    if (access(path, F_OK) != 0)
        return 0;
    int ret = melbo_file_read(path, &text, NULL, err);
    if (ret)
        return ret;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return melbo_err_set(err, MELBO_EFORMAT, "%s: invalid JSON", path);
    }
    add_ids(g, cJSON_GetObjectItemCaseSensitive(root, "eos_token_id"));
    if (g->use_generation_config) {
        const cJSON *v;
        int sample = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "do_sample"));
        if (sample && cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(root, "temperature")))
            g->temperature = v->valuedouble;
        else if (sample)
            g->temperature = 1.0;
        if (sample && cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(root, "top_p")))
            g->top_p = v->valuedouble;
        if (sample && cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(root, "top_k")))
            g->top_k = (int)v->valuedouble;
        if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(root, "repetition_penalty")))
            g->repetition_penalty = v->valuedouble;
    }
    cJSON_Delete(root);
    return 0;
}

char *melbo_gen_settings_json(const struct melbo_gen_settings *g, double scale, int random_baselines) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "decoding", g->temperature > 0 ? "sample" : "greedy");
    cJSON_AddNumberToObject(o, "max_new_tokens", g->max_new_tokens);
    cJSON_AddNumberToObject(o, "temperature", g->temperature);
    cJSON_AddNumberToObject(o, "top_k", g->top_k);
    cJSON_AddNumberToObject(o, "top_p", g->top_p);
    cJSON_AddNumberToObject(o, "repetition_penalty", g->repetition_penalty);
    cJSON_AddNumberToObject(o, "seed", (double)g->seed);
    cJSON *stop = cJSON_AddArrayToObject(o, "stop_ids");
    for (int i = 0; i < g->n_stop; i++)
        cJSON_AddItemToArray(stop, cJSON_CreateNumber(g->stop[i]));
    cJSON_AddNumberToObject(o, "scale", scale);
    cJSON_AddNumberToObject(o, "random_baselines", random_baselines);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}
