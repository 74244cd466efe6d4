/* coord/genjob.c - gen jobs: a stored bank's vectors on new prompts (coord/genjob.h). */
#include "coord/genjob.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord/banks.h"    // defines: melbo_bank_path, melbo_bank_is_adapter
#include "coord/client.h"   // defines: struct melbo_client, melbo_coord_bank_hidden
#include "coord/launcher.h" // defines: melbo_launcher_write_secret
#include "coord/models.h"   // defines: melbo_models_config
#include "options/generate.h"
#include "rank/model/config.h"
#include "rank/model/safetensors.h"

/* Options a gen job's spec may not hold, each with why. */
static const char *const refused[][2] = {
    {"model", "a gen job runs on its bank's model (--bank ID)"},
    {"json", "--json shapes local output: give it to melbo gen"},
    {"logits", "--logits is for local tests (melbo-rank gen --json --logits)"},
    {"args-file", "--args-file is the coordinator's"},
    {"warm", "a warm job is started with melbo warm"},
    {"prompts", "--prompts FILE is read by melbo gen and sent as text"},
};

/* The job's own options, not melbo-rank gen's: kept in the spec, never passed to the ranks. */
static int job_option(const char *name) {
    return !strcmp(name, "name") || !strcmp(name, "private") || !strcmp(name, "no-private");
}

/* --tp N of a gen or warm job: within limits.max_tp, dividing the model's heads. */
static int check_tp(int tp, const struct melbo_model_config *cfg,
                    const struct melbo_coord_limits *lim, struct melbo_err *err) {
    if (tp > lim->max_tp)
        return melbo_err_set(err, MELBO_ERANGE, "--tp %d is over limits.max_tp = %lld (coord.conf)",
                             tp, (long long)lim->max_tp);
    return melbo_tp_check(cfg, tp, err);
}

/* The value of spec's last option name ("" for a flag), or NULL when it is not given. */
static const char *option(const Melbo__JobSpec *spec, const char *name) {
    const char *v = NULL;
    for (size_t i = 0; i < spec->n_options; i++)
        if (spec->options[i]->name && !strcmp(spec->options[i]->name, name))
            v = spec->options[i]->value ? spec->options[i]->value : "";
    return v; /* the last one given */
}

int melbo_genjob_of_spec(const Melbo__JobSpec *spec, struct melbo_err *err) {
    if (spec->command == NULL || spec->command[0] == '\0' || !strcmp(spec->command, "train"))
        return MELBO_GENJOB_TRAIN;
    if (!strcmp(spec->command, "gen"))
        return MELBO_GENJOB_GEN;
    if (!strcmp(spec->command, "warm"))
        return MELBO_GENJOB_WARM;
    return melbo_err_set(err, MELBO_EINVAL, "unknown job command '%.40s' (train, gen or warm)",
                         spec->command);
}

/* job->command: read off the stored spec once (1 train, 2 gen, 3 warm). */
static int command_of(struct melbo_job *job) {
    if (job->command == 0) {
        Melbo__JobSpec *spec = melbo__job_spec__unpack(NULL, job->spec_len, job->spec);
        struct melbo_err ignored;
        int c = spec ? melbo_genjob_of_spec(spec, &ignored) : 0;
        job->command = c < 0 ? 1 : c + 1;
        if (spec)
            melbo__job_spec__free_unpacked(spec, NULL);
    }
    return job->command;
}

int melbo_genjob_is(struct melbo_job *job) {
    return command_of(job) == 2;
}

int melbo_genjob_is_warm(struct melbo_job *job) {
    return command_of(job) == 3;
}

int melbo_genjob_validate_warm(const Melbo__JobSpec *spec, const char *state_dir, char *model,
                               size_t n, const struct melbo_coord_limits *lim, int *tp,
                               struct melbo_err *err) {
    static const char *const allowed[] = {"bank", "model", "tp",      "device",
                                          "dtype", "name", "private", "no-private"};
    const char *name_given = NULL;
    for (size_t i = 0; i < spec->n_options; i++) {
        const char *name = spec->options[i]->name ? spec->options[i]->name : "";
        size_t k = 0;
        while (k < sizeof allowed / sizeof allowed[0] && strcmp(name, allowed[k]))
            k++;
        if (k == sizeof allowed / sizeof allowed[0])
            return melbo_err_set(err, MELBO_EINVAL,
                                 "--%.60s is not an option of melbo warm (--bank ID or --model "
                                 "NAME, --tp, --device, --dtype, --name, --private)",
                                 name);
        if (!strcmp(name, "model"))
            name_given = spec->options[i]->value;
    }
    struct melbo_gen_cmd_params p; /* device and dtype checked as melbo-rank gen would */
    int ret = 0;
    melbo_opts_init(&melbo_gen_cmd_table, &p);
    for (size_t i = 0; i < spec->n_options && ret == 0; i++) {
        const char *name = spec->options[i]->name ? spec->options[i]->name : "";
        if (!strcmp(name, "device") || !strcmp(name, "dtype") || !strcmp(name, "tp"))
            ret = melbo_opts_parse_one(&melbo_gen_cmd_table, &p, name, spec->options[i]->value,
                                       err);
    }
    *tp = p.tp;
    melbo_opts_free(&melbo_gen_cmd_table, &p);
    if (ret)
        return ret;
    char root[PATH_MAX];
    struct melbo_model_config cfg;
    if (option(spec, "bank") == NULL) { /* else the loop resolved the bank's model */
        if (name_given == NULL)
            return melbo_err_set(err, MELBO_EINVAL, "melbo warm needs --bank ID or --model NAME");
        MELBO_TRY(melbo_models_resolve(state_dir, name_given, model, root, n, err));
    } else {
        snprintf(root, sizeof root, "%s", model);
    }
    MELBO_TRY(melbo_models_config(model, root, &cfg, err));
    return check_tp(*tp, &cfg, lim, err);
}


int melbo_genjob_bank(const struct melbo_client *cl, const Melbo__JobSpec *spec, char *bank,
                      char *model, size_t n, struct melbo_err *err) {
    const char *id = option(spec, "bank");
    if (id == NULL || *id == '\0')
        return melbo_err_set(err, MELBO_EINVAL, "a gen job needs --bank ID (melbo bank ls)");
    const struct melbo_job *owner = NULL;
    for (const struct melbo_job *j = cl->co->jobs.list; j; j = j->next)
        if (j->bank_id[0] && !strcmp(j->bank_id, id))
            owner = j;
    if (!melbo_bank_id_valid(id) || owner == NULL || melbo_coord_bank_hidden(cl, id))
        return melbo_err_set(err, MELBO_ENOENT, "no bank %.64s", id);
    if (melbo_bank_path(cl->co->state_dir, id, bank, n) != 0)
        return melbo_err_set(err, MELBO_ERANGE, "the bank store's path is too long");
    if ((size_t)snprintf(model, n, "%s", owner->model) >= n)
        return melbo_err_set(err, MELBO_ERANGE, "the bank's model path is too long");
    return 0;
}

int melbo_genjob_validate(const Melbo__JobSpec *spec, const char *model, const char *bank,
                          const struct melbo_coord_limits *lim, int *n_vec, int *tp,
                          struct melbo_err *err) {
    long long max_new_tokens = lim->max_new_tokens;
    struct melbo_gen_cmd_params p;
    struct melbo_st_file f;
    struct melbo_model_config cfg;
    int ret = 0, have_bank = 0;
    melbo_opts_init(&melbo_gen_cmd_table, &p);
    for (size_t i = 0; i < spec->n_options && ret == 0; i++) {
        const char *name = spec->options[i]->name ? spec->options[i]->name : "";
        const char *val = spec->options[i]->value;
        for (size_t k = 0; k < sizeof refused / sizeof refused[0]; k++)
            if (!strcmp(name, refused[k][0]))
                ret = melbo_err_set(err, MELBO_EINVAL, "--%s: %s", name, refused[k][1]);
        if (ret || job_option(name) || !strcmp(name, "bank") || !strcmp(name, "prompts-jsonl"))
            continue;
        ret = melbo_opts_parse_one(&melbo_gen_cmd_table, &p, name, val, err);
    }
    if (ret == 0 && p.gen.max_new_tokens > max_new_tokens)
        ret = melbo_err_set(err, MELBO_ERANGE,
                            "--max-new-tokens %d is over limits.max_new_tokens = %lld (coord.conf)",
                            p.gen.max_new_tokens, max_new_tokens);
    if (ret == 0 && (ret = melbo_st_open(&f, bank, err)) == 0) {
        have_bank = 1;
        int adapters = melbo_bank_is_adapter(&f);
        if (adapters && p.vectors.n > 0)
            ret = melbo_err_set(err, MELBO_EINVAL,
                                "the bank holds adapters: choose with --adapter K, not --vector");
        else if (!adapters && p.adapters.n > 0)
            ret = melbo_err_set(err, MELBO_EINVAL,
                                "the bank holds steering vectors: --adapter needs an adapter bank "
                                "(use --vector EXPR)");
    }
    if (ret == 0 && (ret = melbo_models_config(model, model, &cfg, err)) == 0 &&
        p.source_layer >= cfg.n_layers)
        ret = melbo_err_set(err, MELBO_ERANGE, "--source-layer %d is outside the model's %d layers",
                            p.source_layer, cfg.n_layers);
    if (ret == 0)
        ret = check_tp(p.tp, &cfg, lim, err);
    *tp = p.tp;
    if (ret == 0) {
        int n = p.vectors.n + p.adapters.n;
        *n_vec = n > 0 ? n : 1;
    }
    if (have_bank)
        melbo_st_close(&f);
    melbo_opts_free(&melbo_gen_cmd_table, &p);
    return ret;
}

int melbo_genjob_argv(const struct melbo_coord *co, const struct melbo_job *job,
                      const Melbo__JobSpec *spec, const char *dir, struct melbo_argv *words,
                      struct melbo_err *err) {
    char bank[PATH_MAX], path[PATH_MAX + 32];
    const char *id = option(spec, "bank");
    if (melbo_genjob_is_warm((struct melbo_job *)job)) { /* the model, loaded once */
        melbo_argv_push(words, "--model");
        melbo_argv_push(words, job->model);
        melbo_argv_push(words, "--warm");
        for (size_t i = 0; i < spec->n_options; i++) {
            const char *name = spec->options[i]->name ? spec->options[i]->name : "";
            if (!strcmp(name, "device") || !strcmp(name, "dtype") || !strcmp(name, "tp")) {
                snprintf(path, sizeof path, "--%s", name);
                melbo_argv_push(words, path);
                melbo_argv_push(words, spec->options[i]->value ? spec->options[i]->value : "");
            }
        }
        return 0;
    }
    if (id == NULL || melbo_bank_path(co->state_dir, id, bank, sizeof bank) != 0)
        return melbo_err_set(err, MELBO_EINVAL, "the gen job's bank id is missing or invalid");
    melbo_argv_push(words, "--model");
    melbo_argv_push(words, job->model);
    melbo_argv_push(words, "--bank");
    melbo_argv_push(words, bank);
    int k_prompts = 0;
    for (size_t i = 0; i < spec->n_options; i++) {
        const char *name = spec->options[i]->name ? spec->options[i]->name : "";
        const char *val = spec->options[i]->value;
        if (job_option(name) || !strcmp(name, "bank"))
            continue;
        if (!strcmp(name, "prompts-jsonl")) { /* the text melbo gen read, as the ranks' file */
            snprintf(path, sizeof path, "%s/prompts-%d.jsonl", dir, ++k_prompts);
            int ret = melbo_launcher_write_secret(path, val ? val : "", err);
            if (ret)
                return ret;
            melbo_argv_push(words, "--prompts");
            melbo_argv_push(words, path);
            continue;
        }
        char flag[160];
        snprintf(flag, sizeof flag, "--%s", name);
        melbo_argv_push(words, flag);
        if (val)
            melbo_argv_push(words, val);
    }
    return 0;
}
