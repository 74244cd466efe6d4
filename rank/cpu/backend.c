/* rank/cpu/backend.c - the CPU backend's table (rank/cpu/backend.h, rank/backend.h). */
#include "rank/cpu/backend.h"

#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "rank/cpu/decode.h"
#include "rank/cpu/wave.h"

struct cpu_backend {
    const struct melbo_model *m; // borrowed host model
    struct melbo_cpu_wave w;     // the training state, after prefix
    float *U;                    // (n_tok, ff) block s's down-projection input, adapters only
    int training;                // w is allocated
    double p, q;                 // the task's objective
    enum melbo_loss_axis axis;
};

static const char *cpu_describe(void *ctx) {
    (void)ctx;
    return "cpu, fp32";
}

static int cpu_prefix(void *ctx, const struct melbo_train_task *task, float *X, float *Y,
                      struct melbo_err *err) {
    struct cpu_backend *c = ctx;
    if (task->adapter && (c->m->cfg.post_norms || c->m->cfg.n_experts))
        return melbo_err_set(err, MELBO_EUNSUPPORTED,
                             "adapters (--adapter-rank) on model_type \"%s\" are not supported: "
                             "its MLP output passes through a post-norm or a mixture of experts, "
                             "so a down-projection LoRA is not one additive term of the block "
                             "output",
                             c->m->cfg.model_type);
    if (task->adapter)
        c->U = melbo_xalloc_f32((size_t)task->prompts->seqs.n_tok * c->m->cfg.d_ff);
    melbo_cpu_prefix(c->m, task->prompts, task->source, task->target, X, Y, c->U);
    melbo_cpu_wave_init(&c->w, c->m, task->source, task->target, task->prompts, task->cap_B, X, Y,
                        task->adapter, c->U);
    c->training = 1;
    c->p = task->p;
    c->q = task->q;
    c->axis = task->axis;
    return 0;
}

static void cpu_wave_objective(void *ctx, const float *theta, int Bw, int k0, int k1, double *F,
                               float *grad) {
    struct cpu_backend *c = ctx;
    melbo_cpu_wave_batch(&c->w, Bw, k0, k1);
    melbo_cpu_wave_step(&c->w, theta, c->p, c->q, c->axis, F, grad);
}

static void cpu_update(void *ctx, struct melbo_wave_state *ws, int t, const struct melbo_optim *o) {
    (void)ctx;
    melbo_wave_update(ws, t, o);
}

static void cpu_train_end(void *ctx) {
    struct cpu_backend *c = ctx;
    if (c->training)
        melbo_cpu_wave_free(&c->w);
    c->training = 0;
    free(c->U);
    c->U = NULL;
}

static int cpu_decoder_init(void *ctx, int n_slots, int cap, int cap_tok, int source_layer,
                            const struct melbo_adapter_shape *adapter, void **dec,
                            struct melbo_err *err) {
    struct cpu_backend *c = ctx;
    if (adapter && (c->m->cfg.post_norms || c->m->cfg.n_experts))
        return melbo_err_set(err, MELBO_EUNSUPPORTED,
                             "adapters on model_type \"%s\" are not supported (post-norm or "
                             "mixture-of-experts MLP)",
                             c->m->cfg.model_type);
    struct melbo_cpu_decoder *d = melbo_xcalloc(1, sizeof *d);
    melbo_cpu_decoder_init(d, c->m, n_slots, cap, cap_tok, source_layer, adapter);
    *dec = d;
    return 0;
}

static int cpu_decoder_forward(void *ctx, void *dec, const int32_t *tokens, int n_runs,
                               const int *slot, const int *run_len, const float *const *steer,
                               const float *const *adapter, float *logits, struct melbo_err *err) {
    (void)ctx;
    return melbo_cpu_decoder_forward(dec, tokens, n_runs, slot, run_len, steer, adapter, logits,
                                     err);
}

static void cpu_decoder_reset(void *ctx, void *dec, int slot) {
    (void)ctx;
    melbo_cpu_decoder_reset(dec, slot);
}

static void cpu_decoder_free(void *ctx, void *dec) {
    (void)ctx;
    melbo_cpu_decoder_free(dec);
    free(dec);
}

static void cpu_free(void *ctx) {
    cpu_train_end(ctx);
    free(ctx);
}

static const struct melbo_backend_i cpu_iface = {
    .describe = cpu_describe,
    .prefix = cpu_prefix,
    .wave_objective = cpu_wave_objective,
    .update = cpu_update,
    .train_end = cpu_train_end,
    .decoder_init = cpu_decoder_init,
    .decoder_forward = cpu_decoder_forward,
    .decoder_reset = cpu_decoder_reset,
    .decoder_free = cpu_decoder_free,
    .free = cpu_free,
};

void melbo_cpu_backend_open(struct melbo_backend *be, const struct melbo_model *host) {
    struct cpu_backend *c = melbo_xcalloc(1, sizeof *c);
    c->m = host;
    be->iface = &cpu_iface;
    be->ctx = c;
    be->host = host;
}
