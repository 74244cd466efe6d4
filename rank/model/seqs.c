/* rank/model/seqs.c - packed batches (rank/model/seqs.h). */
#include "rank/model/seqs.h"

#include <stdlib.h>
#include <string.h>

#include "common/mem.h"

void melbo_seqs_init(struct melbo_seqs *s, const int *lengths, int n) {
    memset(s, 0, sizeof *s);
    s->n_seq = n;
    s->start = melbo_xcalloc((size_t)n + 1, sizeof *s->start);
    for (int i = 0; i < n; i++) {
        s->start[i + 1] = s->start[i] + lengths[i];
        if (lengths[i] > s->max_len)
            s->max_len = lengths[i];
    }
    s->n_tok = s->start[n];
    s->pos = melbo_xcalloc((size_t)s->n_tok + 1, sizeof *s->pos);
    for (int i = 0; i < n; i++)
        for (int t = s->start[i]; t < s->start[i + 1]; t++)
            s->pos[t] = t - s->start[i];
}

void melbo_seqs_free(struct melbo_seqs *s) {
    free(s->start);
    free(s->pos);
    memset(s, 0, sizeof *s);
}

int melbo_seqs_check(const struct melbo_seqs *s, const struct melbo_model_config *cfg,
                     struct melbo_err *err) {
    for (int i = 0; i < s->n_seq; i++) {
        int len = s->start[i + 1] - s->start[i];
        if (len <= 0)
            return melbo_err_set(err, MELBO_EINVAL, "sequence %d is empty", i);
        int ret = melbo_config_check_seq_len(cfg, len, err);
        if (ret)
            return ret;
    }
    return 0;
}
