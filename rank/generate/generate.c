/* rank/generate/generate.c - continuous-batching decode loop (rank/generate/generate.h). */
#include "rank/generate/generate.h"

#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "rank/cpu/decode.h"
#include "rank/generate/sampler.h"
#ifdef MELBO_HAVE_CUDA
#include "rank/gpu/decode.h"
#endif

/* The KV-cache decoder of the backend the settings name: the CPU's, or the GPU's when
 * settings->gpu holds a device copy of the model. Same contract (rank/cpu/decode.h). */
struct decoder {
    struct melbo_cpu_decoder cpu;
#ifdef MELBO_HAVE_CUDA
    struct melbo_gpu_decoder gpu;
#endif
    int on_gpu;
};

static int decoder_init(struct decoder *dec, const struct melbo_model *m,
                        const struct melbo_gen_settings *g, int slots, int cap, int cap_tok,
                        int source_layer, struct melbo_err *err) {
    memset(dec, 0, sizeof *dec);
#ifdef MELBO_HAVE_CUDA
    if (g->gpu) {
        dec->on_gpu = 1;
        return melbo_gpu_decoder_init(&dec->gpu, g->gpu, slots, cap, cap_tok, source_layer, err);
    }
#else
    (void)g;
    (void)err;
#endif
    melbo_cpu_decoder_init(&dec->cpu, m, slots, cap, cap_tok, source_layer);
    return 0;
}

static void decoder_reset(struct decoder *dec, int slot) {
#ifdef MELBO_HAVE_CUDA
    if (dec->on_gpu) {
        melbo_gpu_decoder_reset(&dec->gpu, slot);
        return;
    }
#endif
    melbo_cpu_decoder_reset(&dec->cpu, slot);
}

static int decoder_forward(struct decoder *dec, const int32_t *tokens, int n_runs, const int *slot,
                           const int *run_len, const float *const *steer, float *logits,
                           struct melbo_err *err) {
#ifdef MELBO_HAVE_CUDA
    if (dec->on_gpu)
        return melbo_gpu_decoder_forward(&dec->gpu, tokens, n_runs, slot, run_len, steer, logits,
                                         err);
#endif
    return melbo_cpu_decoder_forward(&dec->cpu, tokens, n_runs, slot, run_len, steer, logits, err);
}

static void decoder_free(struct decoder *dec) {
#ifdef MELBO_HAVE_CUDA
    if (dec->on_gpu) {
        melbo_gpu_decoder_free(&dec->gpu);
        return;
    }
#endif
    melbo_cpu_decoder_free(&dec->cpu);
}

void melbo_gen_results_free(struct melbo_gen_result *r, int n) {
    for (int i = 0; i < n; i++) {
        free(r[i].ids);
        r[i].ids = NULL;
    }
}

static int is_stop(const struct melbo_gen_settings *g, int32_t t) {
    for (int i = 0; i < g->n_stop; i++)
        if (g->stop[i] == t)
            return 1;
    return 0;
}

int melbo_generate(const struct melbo_model *m, int source_layer, const struct melbo_gen_settings *g,
                   const struct melbo_gen_job *jobs, int n_jobs, struct melbo_gen_result *out,
                   melbo_gen_progress_cb cb, void *ctx, struct melbo_err *err) {
    int V = m->cfg.vocab, ret = 0, max_prompt = 1;
    for (int j = 0; j < n_jobs; j++) {
        memset(&out[j], 0, sizeof out[j]);
        if (jobs[j].prompt_len < 1)
            return melbo_err_set(err, MELBO_EINVAL, "generation job %d has an empty prompt", j);
        max_prompt = jobs[j].prompt_len > max_prompt ? jobs[j].prompt_len : max_prompt;
    }
    if (n_jobs == 0)
        return 0;
    int slots = g->batch < n_jobs ? g->batch : n_jobs;
    int cap = max_prompt + g->max_new_tokens + 1;
    struct decoder dec;
    ret = decoder_init(&dec, m, g, slots, cap, slots * max_prompt, source_layer, err);
    if (ret) {
        decoder_free(&dec);
        return ret;
    }

    int *slot_job = melbo_xmalloc(sizeof(int) * (size_t)slots);       // job in each slot, -1 free
    int32_t **hist = melbo_xcalloc((size_t)slots, sizeof *hist);      // prompt + generated
    int *hist_n = melbo_xcalloc((size_t)slots, sizeof *hist_n);
    const float **steer = melbo_xcalloc((size_t)slots, sizeof *steer);
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
                decoder_reset(&dec, s);
                memcpy(hist[s], jb->prompt, sizeof(int32_t) * (size_t)jb->prompt_len);
                hist_n[s] = jb->prompt_len;
                steer[s] = jb->steer;
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
        ret = decoder_forward(&dec, tokens, n_runs, run_slot, run_len, steer, logits, err);
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
                res->ids = melbo_xrealloc(res->ids, sizeof(int32_t) * (size_t)(res->n + 1));
                res->ids[res->n++] = tok;
                hist[s][hist_n[s]++] = tok;
                n_tokens++;
                res->stopped = is_stop(g, tok);
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
    free(tokens);
    free(run_slot);
    free(run_len);
    free(logits);
    free(scratch);
    free(slot_job);
    decoder_free(&dec);
    if (ret)
        melbo_gen_results_free(out, n_jobs);
    return ret;
}
