/*
 * rank/train/trainer_gen.c - after training, what the bank shows of each vector
 * (melbo_trainer_generate, rank/train/trainer.h): the random baselines and the completions of
 * every prompt under every vector, none and every baseline, generated on the trainer's backend.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "rank/generate/completions.h"
#include "rank/method/triage.h"
#include "rank/train/trainer.h"

static cJSON *texts_json(const struct melbo_completions *c, int v0, int n_vec) {
    cJSON *outer = cJSON_CreateArray();
    for (int v = v0; v < v0 + n_vec; v++) {
        cJSON *row = cJSON_CreateArray();
        for (int i = 0; i < c->n_prompts; i++)
            cJSON_AddItemToArray(row, cJSON_CreateString(c->text[v * c->n_prompts + i]));
        cJSON_AddItemToArray(outer, row);
    }
    return outer;
}

/* Random baselines: draws N, N+1, ... orthogonalised like initial vectors, never trained; for
 * adapters normalised like initial adapters. */
static void draw_random(struct melbo_trainer *tr) {
    int d = tr->d, N = tr->N, K = tr->K;
    if (tr->adapters) {
        double *g = melbo_xmalloc(sizeof(double) * (size_t)tr->W);
        for (int k = 0; k < K; k++) {
            melbo_trainer_raw_draw(tr, N + k, g);
            melbo_adapter_init(tr->random + (size_t)k * tr->W, g, &tr->adapter);
        }
        free(g);
        return;
    }
    double *g = melbo_xmalloc(sizeof(double) * (size_t)d);
    float *all = melbo_xalloc_f32((size_t)(N + K) * d);
    memcpy(all, tr->ws.vectors, sizeof(float) * (size_t)N * d);
    for (int k = 0; k < K; k++) {
        melbo_trainer_raw_draw(tr, N + k, g);
        melbo_vector_init(tr->random + (size_t)k * d, g, d, tr->set.radius, all, N + k, NULL, 0,
                          tr->set.orthogonal);
        memcpy(all + (size_t)(N + k) * d, tr->random + (size_t)k * d, sizeof(float) * (size_t)d);
    }
    free(g);
    free(all);
}

/* Cosine between learned vectors i and j, or between adapters' weight changes B A. */
static double cosine(void *ctx, int i, int j) {
    const struct melbo_trainer *tr = ctx;
    const float *x = tr->ws.vectors + (size_t)i * tr->W, *y = tr->ws.vectors + (size_t)j * tr->W;
    double xy = 0, xx = 0, yy = 0;
    if (tr->adapters) {
        size_t nA = melbo_adapter_n_A(&tr->adapter);
        xy = melbo_adapter_dot(x, x + nA, y, y + nA, &tr->adapter);
        xx = melbo_adapter_dot(x, x + nA, x, x + nA, &tr->adapter);
        yy = melbo_adapter_dot(y, y + nA, y, y + nA, &tr->adapter);
    } else {
        for (int k = 0; k < tr->W; k++) {
            xy += (double)x[k] * y[k];
            xx += (double)x[k] * x[k];
            yy += (double)y[k] * y[k];
        }
    }
    return xx > 0 && yy > 0 ? xy / sqrt(xx * yy) : 0.0;
}

/* The bank's "triage" (rank/method/triage.h) of the completions c. */
static void triage(struct melbo_trainer *tr, const struct melbo_completions *c) {
    int rows = c->n_vec * c->n_prompts;
    const int32_t **ids = melbo_xcalloc((size_t)rows + 1, sizeof *ids);
    int *n_ids = melbo_xcalloc((size_t)rows + 1, sizeof *n_ids);
    for (int j = 0; j < rows; j++) {
        ids[j] = c->res[j].ids;
        n_ids[j] = c->res[j].n;
    }
    struct melbo_triage_input in = {tr->N, tr->K, c->n_prompts, (const char *const *)c->text,
                                    ids, n_ids, cosine, tr};
    free(tr->triage_json);
    tr->triage_json = melbo_triage_json(&in);
    free(ids);
    free(n_ids);
}

int melbo_trainer_generate(struct melbo_trainer *tr, struct melbo_err *err) {
    struct melbo_train_params *p = &tr->set;
    if (!p->generate || p->gen.max_new_tokens == 0)
        return 0;
    int W = tr->W, N = tr->N, K = tr->K;
    draw_random(tr);
    /* jobs: every learned vector (or adapter), then none, then every random baseline */
    int n_vec = N + 1 + K;
    const float **vecs = melbo_xcalloc((size_t)n_vec, sizeof *vecs);
    for (int v = 0; v < N; v++)
        vecs[v] = tr->ws.vectors + (size_t)v * W;
    vecs[N] = NULL;
    for (int k = 0; k < K; k++)
        vecs[N + 1 + k] = tr->random + (size_t)k * W;
    if (tr->obs.on_state)
        tr->obs.on_state(tr->obs.ctx, "GENERATING", "");
    struct melbo_completions c;
    melbo_backend_train_end(&tr->be); /* the training buffers make room for the decoder */
    int ret = melbo_completions_run(&tr->be, tr->s, &p->gen, tr->tok, tr->adapters ? NULL : vecs,
                                    tr->adapters ? vecs : NULL, &tr->adapter, n_vec, tr->pr.ids,
                                    tr->pr.lens, tr->pr.P, "generate", tr->comm, NULL, &c,
                                    err);
    free(vecs);
    if (ret)
        return ret;
    if (!tr->rank0) /* rank 0 holds the gathered results and writes the bank */
        return 0;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, tr->adapters ? "adapters" : "vectors", texts_json(&c, 0, N));
    cJSON *unsteered = texts_json(&c, N, 1);
    cJSON_AddItemToObject(o, "unsteered", cJSON_DetachItemFromArray(unsteered, 0));
    cJSON_Delete(unsteered);
    cJSON_AddItemToObject(o, "random", texts_json(&c, N + 1, K));
    free(tr->completions_json);
    tr->completions_json = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    free(tr->generation_json);
    tr->generation_json = melbo_gen_settings_json(&p->gen, 1.0, K);
    triage(tr, &c);
    melbo_completions_free(&c);
    return 0;
}
