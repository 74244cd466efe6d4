/* options/train.c - the training table and its checks (options/train.h). */
#include "options/train.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include "options/sweep.h"

#define MELBO_OPT_STRUCT struct melbo_train_params
static const struct melbo_opt train_rows[] = {
    MELBO_TRAIN_OPTIONS(MELBO_OPT_ROW, MELBO_OPT_HEADING_ROW)
    MELBO_OPT_TABLE_ROW(gen, &melbo_gen_table)};
#undef MELBO_OPT_STRUCT

const struct melbo_opt_table melbo_train_table = {train_rows,
                                                  sizeof train_rows / sizeof train_rows[0]};

void melbo_train_params_init(struct melbo_train_params *p) {
    memset(p, 0, sizeof *p);
    melbo_opts_init(&melbo_train_table, p);
}

void melbo_train_params_free(struct melbo_train_params *p) {
    melbo_opts_free(&melbo_train_table, p);
    memset(p, 0, sizeof *p);
}

void melbo_train_params_copy(struct melbo_train_params *dst, const struct melbo_train_params *src) {
    *dst = *src; /* the fields the table does not describe (stop ids, ranks) */
    melbo_opts_copy(&melbo_train_table, dst, src);
}

void melbo_train_usage(void) {
    printf("usage: melbo-rank train --model DIR --radius R --out FILE.bank.safetensors [prompts] "
           "[options]\n"
           "       melbo-rank train --model DIR --adapter-rank R --out FILE.bank.safetensors "
           "[prompts] [options]\n\n"
           "Trains N orthogonal steering vectors (MELBO), or N unsteering adapters, and writes "
           "them to a bank file.\n\n");
    melbo_opts_usage(stdout, &melbo_train_table, 0);
}

int melbo_train_params_check(const struct melbo_train_params *p, struct melbo_err *err) {
    struct melbo_sweep sw;
    int ret = melbo_sweep_parse(&sw, p, err), given_radius = p->radius_auto || p->radius > 0;
    for (int i = 0; ret == 0 && i < sw.n_axes; i++)
        given_radius |= !strcmp(sw.axis[i].name, "radius");
    melbo_sweep_free(&sw);
    if (ret)
        return ret;
    if (melbo_prompt_opts_count(&p->prompts) == 0)
        return melbo_err_set(err, MELBO_EINVAL,
                             "no prompt: give --prompt, --raw-prompt, --prompts or --prompt-ids");
    if (p->adapter_rank == 0 && !given_radius)
        return melbo_err_set(err, MELBO_EINVAL,
                             "--radius is required for steering vectors (a number, or auto)");
    if (p->adapter_rank > 0 && given_radius)
        return melbo_err_set(err, MELBO_EINVAL,
                             "--radius does not apply to adapters (--adapter-rank): their factors "
                             "have unit columns and --adapter-alpha sets their scale");
    if (p->adapter_rank > 0 && p->orthogonal == 1)
        return melbo_err_set(err, MELBO_EINVAL,
                             "--orthogonal does not apply to adapters (--adapter-rank): adapters "
                             "train independently, as in method.md 3");
    if (p->adapter_rank > 0 && p->calibration_init)
        return melbo_err_set(err, MELBO_EINVAL,
                             "--calibration-init is for --radius auto, which adapters do not use");
    return 0;
}

int melbo_train_params_parse(struct melbo_train_params *p, int argc, char **argv,
                             struct melbo_err *err) {
    struct melbo_opts_parse_cfg cfg = {"melbo-rank train", 0, 0, NULL, NULL};
    int ret = melbo_opts_parse(&melbo_train_table, p, argc, argv, &cfg, err);
    return ret ? ret : melbo_train_params_check(p, err);
}

int melbo_train_params_resolve(struct melbo_train_params *p, int L, int d, int d_mlp,
                               struct melbo_err *err) {
    int s = p->source_layer;
    if (p->target_layer == MELBO_OPT_UNSET_INT)
        p->target_layer = L - 8;
    int t = p->target_layer;
    if (s + 2 > L - 1)
        return melbo_err_set(err, MELBO_ERANGE,
                             "--source-layer %d is out of range for a %d-layer model (valid 0..%d)",
                             s, L, L - 3);
    if (t < s + 2 || t > L - 1)
        return melbo_err_set(err, MELBO_ERANGE,
                             "--target-layer %d is out of range: with --source-layer %d it must be "
                             "in %d..%d (s + 2 <= t <= L - 1, L = %d)",
                             t, s, s + 2, L - 1, L);
    if (isnan(p->q))
        p->q = p->p;
    if (p->wave == MELBO_OPT_UNSET_INT)
        p->wave = p->vectors < 64 ? p->vectors : 64;
    if (p->wave > p->vectors)
        p->wave = p->vectors;
    if (p->orthogonal < 0)
        p->orthogonal = p->adapter_rank == 0;
    int r_max = d < d_mlp ? d : d_mlp;
    if (p->adapter_rank > r_max)
        return melbo_err_set(err, MELBO_ERANGE,
                             "--adapter-rank %d is more than min(d_model %d, MLP width %d) = %d",
                             p->adapter_rank, d, d_mlp, r_max);
    if (p->orthogonal && p->vectors > d)
        return melbo_err_set(err, MELBO_ERANGE,
                             "--vectors %d is more than d_model %d: that many vectors cannot be "
                             "orthogonal (use --no-orthogonal or fewer vectors)",
                             p->vectors, d);
    return 0;
}
