/* coord/jobspec.c - JobSpec <-> melbo-rank train argv, and submit-time validation. */
#include "coord/jobspec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "rank/model/model.h"
#include "rank/train/params.h"

void melbo_argv_push(struct melbo_argv *a, const char *s) {
    if (a->n + 2 > a->cap) {
        a->cap = a->cap ? a->cap * 2 : 32;
        a->v = melbo_xrealloc(a->v, sizeof *a->v * (size_t)a->cap);
    }
    a->v[a->n++] = melbo_xstrdup(s);
    a->v[a->n] = NULL;
}

void melbo_argv_free(struct melbo_argv *a) {
    for (int i = 0; i < a->n; i++)
        free(a->v[i]);
    free(a->v);
    memset(a, 0, sizeof *a);
}

static void opt_s(struct melbo_argv *a, const char *opt, const char *v) {
    melbo_argv_push(a, opt);
    melbo_argv_push(a, v);
}

static void opt_i(struct melbo_argv *a, const char *opt, long long v) {
    char b[32];
    snprintf(b, sizeof b, "%lld", v);
    opt_s(a, opt, b);
}

static void opt_u(struct melbo_argv *a, const char *opt, unsigned long long v) {
    char b[32];
    snprintf(b, sizeof b, "%llu", v);
    opt_s(a, opt, b);
}

static void opt_d(struct melbo_argv *a, const char *opt, double v) {
    char b[64];
    snprintf(b, sizeof b, "%.17g", v);
    opt_s(a, opt, b);
}

static int need_abs(const char *what, const char *path, struct melbo_err *err) {
    if (path == NULL || path[0] != '/')
        return melbo_err_set(err, MELBO_EINVAL,
                             "%s '%s' must be an absolute path on the coordinator's filesystem",
                             what, path ? path : "");
    return 0;
}

int melbo_jobspec_to_argv(const Melbo__JobSpec *s, const char *out, const char *ckpt,
                          const char *resume, const char *job_id, struct melbo_argv *av,
                          struct melbo_err *err) {
    int r;
    melbo_argv_push(av, "train");
    if (s->model == NULL || s->model[0] == '\0')
        return melbo_err_set(err, MELBO_EINVAL, "--model DIR is required");
    if ((r = need_abs("--model", s->model, err)))
        return r;
    opt_s(av, "--model", s->model);
    if (s->system)
        opt_s(av, "--system", s->system);
    if (s->chat_format)
        opt_s(av, "--chat-format", s->chat_format);
    for (size_t i = 0; i < s->n_text_prompts; i++) {
        const Melbo__TextPrompt *tp = s->text_prompts[i];
        const char *text = tp->text ? tp->text : "";
        if (tp->kind == MELBO__TEXT_PROMPT__KIND__FILE) {
            if ((r = need_abs("--prompts", text, err)))
                return r;
            opt_s(av, "--prompts", text);
        } else {
            opt_s(av, tp->kind == MELBO__TEXT_PROMPT__KIND__RAW ? "--raw-prompt" : "--prompt", text);
        }
    }
    for (size_t i = 0; i < s->n_id_prompts; i++) {
        const Melbo__IdPrompt *ip = s->id_prompts[i];
        size_t cap = ip->n_ids * 12 + 1, len = 0;
        char *b = melbo_xmalloc(cap);
        b[0] = '\0';
        for (size_t k = 0; k < ip->n_ids; k++)
            len += (size_t)snprintf(b + len, cap - len, "%s%d", k ? "," : "", ip->ids[k]);
        opt_s(av, "--prompt-ids", b);
        free(b);
    }
    if (s->has_source_layer) opt_i(av, "--source-layer", s->source_layer);
    if (s->has_target_layer) opt_i(av, "--target-layer", s->target_layer);
    if (s->has_radius_auto && s->radius_auto)
        opt_s(av, "--radius", "auto");
    else if (s->has_radius)
        opt_d(av, "--radius", s->radius);
    if (s->has_calibration_samples) opt_i(av, "--calibration-samples", s->calibration_samples);
    if (s->has_calibration_lambda) opt_d(av, "--calibration-lambda", s->calibration_lambda);
    if (s->has_p) opt_d(av, "--p", s->p);
    if (s->has_q) opt_d(av, "--q", s->q);
    if (s->loss_axis) opt_s(av, "--loss-axis", s->loss_axis);
    if (s->target_tokens) opt_s(av, "--target-tokens", s->target_tokens);
    if (s->has_steps) opt_i(av, "--steps", s->steps);
    if (s->has_vectors) opt_i(av, "--vectors", s->vectors);
    if (s->has_wave) opt_i(av, "--wave", s->wave);
    if (s->has_orthogonal) melbo_argv_push(av, s->orthogonal ? "--orthogonal" : "--no-orthogonal");
    if (s->has_lr) opt_d(av, "--lr", s->lr);
    if (s->has_beta1 || s->has_beta2) {
        char b[80];
        snprintf(b, sizeof b, "%.17g,%.17g", s->has_beta1 ? s->beta1 : 0.9,
                 s->has_beta2 ? s->beta2 : 0.98);
        opt_s(av, "--betas", b);
    }
    if (s->has_eps) opt_d(av, "--eps", s->eps);
    if (s->has_seed) opt_u(av, "--seed", s->seed);
    if (s->init) {
        if ((r = need_abs("--init", s->init, err)))
            return r;
        opt_s(av, "--init", s->init);
    }
    if (s->has_checkpoint_every) opt_i(av, "--checkpoint-every", s->checkpoint_every);
    if (s->has_threads) opt_i(av, "--threads", s->threads);
    if (s->has_generate && !s->generate) melbo_argv_push(av, "--no-generate");
    if (s->has_random_baselines) opt_i(av, "--random-baselines", s->random_baselines);
    if (s->has_max_new_tokens) opt_i(av, "--max-new-tokens", s->max_new_tokens);
    if (s->has_temperature) opt_d(av, "--temperature", s->temperature);
    if (s->has_top_p) opt_d(av, "--top-p", s->top_p);
    if (s->has_top_k) opt_i(av, "--top-k", s->top_k);
    if (s->has_gen_seed) opt_u(av, "--gen-seed", s->gen_seed);
    if (s->has_repetition_penalty) opt_d(av, "--repetition-penalty", s->repetition_penalty);
    if (s->has_use_generation_config && s->use_generation_config)
        melbo_argv_push(av, "--use-generation-config");
    if (s->has_ignore_eos && s->ignore_eos) melbo_argv_push(av, "--ignore-eos");
    if (s->has_gen_batch) opt_i(av, "--gen-batch", s->gen_batch);
    /* --tp/--dp only when > 1: melbo-rank gains them with the MPI work. */
    if (s->has_tp && s->tp > 1) opt_i(av, "--tp", s->tp);
    if (s->has_dp && s->dp > 1) opt_i(av, "--dp", s->dp);
    opt_s(av, "--out", out);
    if (ckpt)
        opt_s(av, "--checkpoint", ckpt);
    if (resume)
        opt_s(av, "--resume", resume);
    if (ckpt) /* near a time limit the ranks checkpoint, stop, and the job is resubmitted */
        melbo_argv_push(av, "--stop-on-signal");
    opt_s(av, "--job-id", job_id);
    return 0;
}

int melbo_jobspec_ranks(const Melbo__JobSpec *s) {
    int tp = s->has_tp && s->tp > 1 ? s->tp : 1, dp = s->has_dp && s->dp > 1 ? s->dp : 1;
    return tp * dp;
}

int melbo_jobspec_validate(const Melbo__JobSpec *s, int *vectors, int *steps,
                           struct melbo_err *err) {
    struct melbo_argv av = {0};
    struct melbo_train_params p;
    struct melbo_model_config cfg;
    int ret;
    melbo_train_params_init(&p);
    if ((s->has_tp && (s->tp < 1 || s->tp > 4096)) || (s->has_dp && (s->dp < 1 || s->dp > 4096))) {
        ret = melbo_err_set(err, MELBO_EINVAL, "--tp and --dp must be between 1 and 4096");
        goto out;
    }
    if ((ret = melbo_jobspec_to_argv(s, "/coordinator/validation.bank.safetensors", NULL, NULL,
                                     "0", &av, err)))
        goto out;
    ret = melbo_train_params_parse(&p, av.n, av.v, err);
    if (ret == 1)
        ret = melbo_err_set(err, MELBO_EINVAL, "--help is not a job");
    if (ret)
        goto out;
    if ((ret = melbo_model_check(p.model, &cfg, err)))
        goto out;
    if ((ret = melbo_train_params_resolve(&p, cfg.n_layers, cfg.d_model, err)))
        goto out;
    if ((ret = melbo_tp_check(&cfg, s->has_tp && s->tp > 1 ? s->tp : 1, err)))
        goto out;
    /* the layout must fill what is asked of Slurm: one rank per GPU, or per CPU task */
    int ranks = melbo_jobspec_ranks(s), nodes = s->has_nodes && s->nodes > 0 ? s->nodes : 1;
    if (s->has_gpus && s->gpus > 0 && ranks != nodes * s->gpus) {
        ret = melbo_err_set(err, MELBO_EINVAL,
                            "--tp x --dp = %d ranks, but --nodes %d x --gpus %d = %d GPUs (one rank "
                            "per GPU)",
                            ranks, nodes, s->gpus, nodes * s->gpus);
        goto out;
    }
    if (ranks % nodes != 0) {
        ret = melbo_err_set(err, MELBO_EINVAL,
                            "--tp x --dp = %d ranks cannot be spread evenly over --nodes %d", ranks,
                            nodes);
        goto out;
    }
    if (vectors)
        *vectors = p.vectors;
    if (steps)
        *steps = p.steps;
out:
    melbo_train_params_free(&p);
    melbo_argv_free(&av);
    return ret;
}
