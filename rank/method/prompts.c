/* rank/method/prompts.c - a job's prompts: text through the tokenizer, then ids; target positions
 * from --target-tokens (rank/method/prompts.h). */
#include "rank/method/prompts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "options/train.h"
#include "rank/tokenizer/prompt.h"
#include "rank/tokenizer/tokenizer.h"

static void add_prompt(struct melbo_prompts *pr, const int32_t *ids, int n, const char *text) {
    pr->ids = melbo_xrealloc(pr->ids, sizeof *pr->ids * (size_t)(pr->P + 1));
    pr->lens = melbo_xrealloc(pr->lens, sizeof *pr->lens * (size_t)(pr->P + 1));
    pr->texts = melbo_xrealloc(pr->texts, sizeof *pr->texts * (size_t)(pr->P + 1));
    pr->ids[pr->P] = melbo_xmalloc(sizeof(int32_t) * (size_t)n);
    memcpy(pr->ids[pr->P], ids, sizeof(int32_t) * (size_t)n);
    pr->lens[pr->P] = n;
    pr->texts[pr->P] = melbo_xstrdup(text);
    pr->P++;
}

/* Text prompts, rendered with the chat template; or, for id prompts only, the tokenizer that
 * turns completions into text when the model has one. */
static int load_text(struct melbo_prompts *pr, const struct melbo_train_params *p,
                     struct melbo_tokenizer **tok, struct melbo_err *err) {
    if (p->prompts.n == 0) {
        struct melbo_err ignored;
        if (p->generate && melbo_tokenizer_load(p->model, tok, &ignored) != 0)
            *tok = NULL;
        return 0;
    }
    struct melbo_prompt_list list = {0};
    int ret = melbo_tokenizer_load(p->model, tok, err);
    if (ret)
        return ret;
    ret = melbo_prompt_opts_render(&p->prompts, *tok, &list, err);
    if (ret == 0) {
        for (size_t i = 0; i < list.n; i++)
            add_prompt(pr, list.p[i].ids.ids, (int)list.p[i].ids.n, list.p[i].text);
        snprintf(pr->chat_format, sizeof pr->chat_format, "%s",
                 list.format_used ? melbo_chat_format_name(list.format) : "raw");
        if (list.format_used)
            pr->end_of_turn = list.end_of_turn;
    }
    melbo_prompt_list_free(&list);
    return ret;
}

int melbo_prompts_load(struct melbo_prompts *pr, const struct melbo_train_params *p,
                       const struct melbo_model_config *cfg, struct melbo_tokenizer **tok,
                       struct melbo_err *err) {
    memset(pr, 0, sizeof *pr);
    snprintf(pr->chat_format, sizeof pr->chat_format, "none");
    pr->end_of_turn = -1;
    *tok = NULL;
    int ret = load_text(pr, p, tok, err);
    if (ret)
        return ret;
    for (int i = 0; i < p->prompts.ids.n; i++)
        add_prompt(pr, p->prompts.ids.ids[i], p->prompts.ids.lens[i], "");
    pr->idx = melbo_xcalloc((size_t)pr->P, sizeof *pr->idx);
    pr->n_idx = melbo_xcalloc((size_t)pr->P, sizeof *pr->n_idx);
    for (int i = 0; i < pr->P; i++) {
        if (pr->lens[i] == 0)
            return melbo_err_set(err, MELBO_EINVAL, "prompt %d has no tokens", i);
        for (int j = 0; j < pr->lens[i]; j++)
            if (pr->ids[i][j] < 0 || pr->ids[i][j] >= cfg->vocab)
                return melbo_err_set(err, MELBO_ERANGE,
                                     "prompt %d: token id %d at position %d is outside the "
                                     "model's vocabulary of %d",
                                     i, pr->ids[i][j], j, cfg->vocab);
        pr->idx[i] = melbo_xmalloc(sizeof(int) * (size_t)pr->lens[i]);
        pr->n_idx[i] = melbo_slice_indices(&p->target_tokens, pr->lens[i], pr->idx[i]);
        if (pr->n_idx[i] == 0)
            return melbo_err_set(err, MELBO_EINVAL,
                                 "--target-tokens %s selects no token of prompt %d (%d tokens)",
                                 p->target_tokens.text, i, pr->lens[i]);
    }
    melbo_seqs_init(&pr->seqs, pr->lens, pr->P);
    return melbo_seqs_check(&pr->seqs, cfg, err);
}

void melbo_prompts_free(struct melbo_prompts *pr) {
    for (int i = 0; i < pr->P; i++) {
        free(pr->ids[i]);
        free(pr->texts[i]);
        if (pr->idx)
            free(pr->idx[i]);
    }
    free(pr->ids);
    free(pr->texts);
    free(pr->lens);
    free(pr->idx);
    free(pr->n_idx);
    melbo_seqs_free(&pr->seqs);
    memset(pr, 0, sizeof *pr);
}
