/* rank/generate/generate.c - continuous-batching decode loop (rank/generate/generate.h). */
#include "rank/generate/generate.h"

#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "rank/generate/sampler.h"

void melbo_gen_results_free(struct melbo_gen_result *r, int n) {
    for (int i = 0; i < n; i++) {
        free(r[i].ids);
        free(r[i].logits0);
        r[i].ids = NULL;
        r[i].logits0 = NULL;
    }
}

static int is_stop(const struct melbo_gen_settings *g, int32_t t) {
    for (int i = 0; i < g->n_stop; i++)
        if (g->stop[i] == t)
            return 1;
    return 0;
}

/* Appends the sampled token tok to res (and, for the first one with keep_logits, the logits
 * (V) that chose it); marks res stopped at a stop token. */
static void record(const struct melbo_gen_settings *g, struct melbo_gen_result *res, int32_t tok,
                   const float *logits, int V) {
    if (res->n == 0 && g->keep_logits) {
        res->logits0 = melbo_xalloc_f32((size_t)V);
        memcpy(res->logits0, logits, sizeof(float) * (size_t)V);
    }
    res->ids = melbo_xrealloc(res->ids, sizeof(int32_t) * (size_t)(res->n + 1));
    res->ids[res->n++] = tok;
    res->stopped = is_stop(g, tok);
}

/* *max_prompt = the longest prompt and *shape = the one shape of the jobs' adapters (NULL
 * without adapters); refuses an empty prompt, an adapter without a shape, or two shapes. */
static int check_jobs(const struct melbo_gen_job *jobs, int n_jobs, int *max_prompt,
                      const struct melbo_adapter_shape **shape, struct melbo_err *err) {
    for (int j = 0; j < n_jobs; j++) {
        if (jobs[j].prompt_len < 1)
            return melbo_err_set(err, MELBO_EINVAL, "generation job %d has an empty prompt", j);
        *max_prompt = jobs[j].prompt_len > *max_prompt ? jobs[j].prompt_len : *max_prompt;
        const struct melbo_adapter_shape *a = jobs[j].adapter ? jobs[j].adapter_shape : NULL, *s = *shape;
        if (a && s && (a->r != s->r || a->d != s->d || a->ff != s->ff || a->alpha != s->alpha))
            return melbo_err_set(err, MELBO_EINVAL,
                                 "generation job %d has an adapter of another shape", j);
        if (jobs[j].adapter && a == NULL)
            return melbo_err_set(err, MELBO_EINVAL, "generation job %d has no adapter shape", j);
        *shape = a ? a : s;
    }
    return 0;
}

int melbo_generate(struct melbo_backend *be, int source_layer, const struct melbo_gen_settings *g,
                   const struct melbo_gen_job *jobs, int n_jobs, struct melbo_gen_result *out,
                   melbo_gen_progress_cb cb, void *ctx, struct melbo_err *err) {
    int V = be->host->cfg.vocab, ret = 0, max_prompt = 1;
    const struct melbo_adapter_shape *shape = NULL; /* the adapters' (one for all jobs) */
    for (int j = 0; j < n_jobs; j++)
        memset(&out[j], 0, sizeof out[j]);
    if (n_jobs == 0 || (ret = check_jobs(jobs, n_jobs, &max_prompt, &shape, err)) != 0)
        return ret;
    int slots = g->batch < n_jobs ? g->batch : n_jobs;
    int cap = max_prompt + g->max_new_tokens + 1;
    struct melbo_backend_decoder dec;
    ret = melbo_backend_decoder_init(&dec, be, slots, cap, slots * max_prompt, source_layer, shape,
                                     err);
    if (ret)
        return ret;

    int *slot_job = melbo_xmalloc(sizeof(int) * (size_t)slots);       // job in each slot, -1 free
    int32_t **hist = melbo_xcalloc((size_t)slots, sizeof *hist);      // prompt + generated
    int *hist_n = melbo_xcalloc((size_t)slots, sizeof *hist_n);
    const float **steer = melbo_xcalloc((size_t)slots, sizeof *steer);
    const float **adapter = melbo_xcalloc((size_t)slots, sizeof *adapter);
    int32_t *tokens = melbo_xmalloc(sizeof(int32_t) * (size_t)slots * max_prompt);
    int *run_slot = melbo_xmalloc(sizeof(int) * (size_t)slots);
    int *run_len = melbo_xmalloc(sizeof(int) * (size_t)slots);
    float *logits = melbo_xalloc_f32((size_t)slots * V);
    void *scratch = melbo_xmalloc(melbo_sampler_scratch_bytes(V));
    for (int s = 0; s < slots; s++) {
        slot_job[s] = -1;
        hist[s] = melbo_xmalloc(sizeof(int32_t) * (size_t)cap);
    }
    int next = 0, done = 0;
    long n_tokens = 0;
    while (done < n_jobs) {
        int n_runs = 0, n_tok = 0;
        for (int s = 0; s < slots; s++) {
            if (slot_job[s] < 0 && next < n_jobs) { /* admit the next job: its prompt is the run */
                const struct melbo_gen_job *jb = &jobs[next];
                slot_job[s] = next++;
                melbo_backend_decoder_reset(&dec, s);
                memcpy(hist[s], jb->prompt, sizeof(int32_t) * (size_t)jb->prompt_len);
                hist_n[s] = jb->prompt_len;
                steer[s] = jb->steer;
                adapter[s] = jb->adapter;
                memcpy(tokens + n_tok, jb->prompt, sizeof(int32_t) * (size_t)jb->prompt_len);
                run_slot[n_runs] = s;
                run_len[n_runs++] = jb->prompt_len;
                n_tok += jb->prompt_len;
            } else if (slot_job[s] >= 0) { /* feed the last generated token */
                tokens[n_tok++] = hist[s][hist_n[s] - 1];
                run_slot[n_runs] = s;
                run_len[n_runs++] = 1;
            }
        }
        ret = melbo_backend_decoder_forward(&dec, tokens, n_runs, run_slot, run_len, steer,
                                            shape ? adapter : NULL, logits, err);
        if (ret)
            break;
        for (int r = 0; r < n_runs; r++) {
            int s = run_slot[r], j = slot_job[s];
            struct melbo_gen_result *res = &out[j];
            int step = res->n;
            int32_t tok = g->max_new_tokens > 0
                              ? melbo_sample(g, logits + (size_t)r * V, V, hist[s], hist_n[s],
                                             jobs[j].stream, step, scratch)
                              : -1;
            if (tok >= 0) {
                record(g, res, tok, logits + (size_t)r * V, V);
                hist[s][hist_n[s]++] = tok;
                n_tokens++;
            }
            if (tok < 0 || res->stopped || res->n >= g->max_new_tokens) {
                slot_job[s] = -1;
                done++;
            }
        }
        if (cb)
            cb(ctx, done, n_jobs, n_tokens);
    }
    for (int s = 0; s < slots; s++)
        free(hist[s]);
    free(hist);
    free(hist_n);
    free(steer);
    free(adapter);
    free(tokens);
    free(run_slot);
    free(run_len);
    free(logits);
    free(scratch);
    free(slot_job);
    melbo_backend_decoder_free(&dec);
    if (ret)
        melbo_gen_results_free(out, n_jobs);
    return ret;
}
