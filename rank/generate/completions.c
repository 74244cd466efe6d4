/* rank/generate/completions.c - completions under vectors (rank/generate/completions.h). */
#include "rank/generate/completions.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/mem.h"

/* The streaming side of a run (NULL stream: none): a decoder per job, how many of its ids were
 * fed, and whether it was announced done. */
struct stream_state {
    const struct melbo_gen_stream *s;
    const struct melbo_gen_settings *g;
    const struct melbo_gen_result *res; // the run's results, filled as they are decoded
    int n;
    struct melbo_detok_stream **dt;     // (n)
    int *fed;                           // (n)
    char **text;                        // (n) what was streamed so far, owned
    size_t *len;                        // (n)
    unsigned char *done;                // (n)
};

struct progress_ctx {
    const char *label;
    double t0, last;
    int tty;
    struct stream_state *st; // NULL: not streaming
};

static void stream_emit(struct stream_state *st, int j, const char *piece, size_t plen) {
    if (plen == 0)
        return;
    st->text[j] = melbo_xrealloc(st->text[j], st->len[j] + plen + 1);
    memcpy(st->text[j] + st->len[j], piece, plen);
    st->len[j] += plen;
    st->text[j][st->len[j]] = '\0';
    if (st->s->piece)
        st->s->piece(st->s->ctx, j, piece, plen);
}

/* Feeds job j's new ids to its decoder; when final, the held-back rest and done. */
static void stream_advance(struct stream_state *st, int j, int final) {
    const struct melbo_gen_result *r = &st->res[j];
    struct melbo_err ignored;
    if (st->done[j])
        return;
    for (; st->fed[j] < r->n; st->fed[j]++) {
        const char *piece = NULL;
        size_t plen = 0;
        if (melbo_detok_stream_feed(st->dt[j], r->ids[st->fed[j]], &piece, &plen, &ignored) == 0)
            stream_emit(st, j, piece, plen);
    }
    if (final || r->stopped || (st->g->max_new_tokens > 0 && r->n >= st->g->max_new_tokens)) {
        size_t plen = 0;
        const char *rest = melbo_detok_stream_finish(st->dt[j], &plen);
        stream_emit(st, j, rest, plen);
        st->done[j] = 1;
        if (st->s->done)
            st->s->done(st->s->ctx, j, st->text[j] ? st->text[j] : "");
    }
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void on_progress(void *vctx, int done, int n, long tokens) {
    struct progress_ctx *c = vctx;
    for (int j = 0; c->st && j < c->st->n; j++)
        stream_advance(c->st, j, 0);
    double t = now();
    if (!c->tty && t - c->last < 2.0 && done < n)
        return;
    c->last = t;
    double rate = tokens / (t - c->t0 > 1e-9 ? t - c->t0 : 1e-9);
    if (c->tty)
        fprintf(stderr, "\r\033[K%s: %d/%d sequences, %ld tokens, %.1f tokens/s", c->label, done, n,
                tokens, rate);
    else
        fprintf(stderr, "%s: %d/%d sequences, %ld tokens, %.1f tokens/s\n", c->label, done, n, tokens,
                rate);
    if (c->tty && done == n)
        fprintf(stderr, "\n");
}

static char *decode_text(struct melbo_tokenizer *tok, const int32_t *ids, int n,
                         struct melbo_err *err) {
    if (tok == NULL)
        return melbo_xstrdup("");
    struct melbo_detok_stream *st = melbo_detok_stream_new(tok, MELBO_DETOK_SKIP_SPECIAL);
    size_t len = 0, cap = 64;
    char *buf = melbo_xmalloc(cap);
    for (int i = 0; i <= n; i++) {
        const char *piece;
        size_t plen = 0;
        if (i < n) {
            if (melbo_detok_stream_feed(st, ids[i], &piece, &plen, err) != 0)
                plen = 0;
        } else {
            piece = melbo_detok_stream_finish(st, &plen);
        }
        if (plen) {
            while (len + plen + 1 > cap) {
                cap *= 2;
                buf = melbo_xrealloc(buf, cap);
            }
            memcpy(buf + len, piece, plen);
            len += plen;
        }
    }
    buf[len] = '\0';
    melbo_detok_stream_free(st);
    return buf;
}

/* Results of jobs as bytes: per job int32 n, int32 stopped, n ids. */
static void pack(const struct melbo_gen_result *r, int n, char **buf, size_t *len) {
    size_t total = 0;
    for (int j = 0; j < n; j++)
        total += sizeof(int32_t) * (2 + (size_t)r[j].n);
    char *b = melbo_xmalloc(total + 1), *p = b;
    for (int j = 0; j < n; j++) {
        int32_t hdr[2] = {r[j].n, r[j].stopped};
        memcpy(p, hdr, sizeof hdr);
        p += sizeof hdr;
        memcpy(p, r[j].ids, sizeof(int32_t) * (size_t)r[j].n);
        p += sizeof(int32_t) * (size_t)r[j].n;
    }
    *buf = b;
    *len = total;
}

static void unpack(const char *p, int n, struct melbo_gen_result *r) {
    for (int j = 0; j < n; j++) {
        int32_t hdr[2];
        memcpy(hdr, p, sizeof hdr);
        p += sizeof hdr;
        r[j].n = hdr[0];
        r[j].stopped = hdr[1];
        r[j].ids = melbo_xmalloc(sizeof(int32_t) * (size_t)(hdr[0] + 1));
        memcpy(r[j].ids, p, sizeof(int32_t) * (size_t)hdr[0]);
        p += sizeof(int32_t) * (size_t)hdr[0];
    }
}

int melbo_completions_run(struct melbo_backend *be, int source_layer,
                          const struct melbo_gen_settings *g, struct melbo_tokenizer *tok,
                          const float *const *vectors, const float *const *adapters,
                          const struct melbo_adapter_shape *shape, int n_vec,
                          int32_t *const *prompts,
                          const int *lens, int n_prompts, const char *label,
                          struct melbo_comm *comm, const struct melbo_gen_stream *stream,
                          struct melbo_completions *out, struct melbo_err *err) {
    memset(out, 0, sizeof *out);
    int n = n_vec * n_prompts, dp = comm ? melbo_comm_dp_size(comm) : 1;
    int rank0 = comm == NULL || melbo_comm_rank(comm) == 0;
    int chunk = (n + dp - 1) / dp, dr = comm ? melbo_comm_dp_rank(comm) : 0;
    int j0 = dr * chunk < n ? dr * chunk : n, j1 = j0 + chunk < n ? j0 + chunk : n;
    struct melbo_gen_job *jobs = melbo_xcalloc((size_t)n + 1, sizeof *jobs);
    for (int v = 0; v < n_vec; v++)
        for (int i = 0; i < n_prompts; i++) {
            struct melbo_gen_job *j = &jobs[v * n_prompts + i];
            j->prompt = prompts[i];
            j->prompt_len = lens[i];
            j->steer = vectors ? vectors[v] : NULL;
            j->adapter = adapters ? adapters[v] : NULL;
            j->adapter_shape = j->adapter ? shape : NULL;
            j->stream = (uint64_t)i;
        }
    struct melbo_gen_result *mine = melbo_xcalloc((size_t)(j1 - j0) + 1, sizeof *mine);
    struct stream_state st = {stream, g, mine, j1 - j0, NULL, NULL, NULL, NULL, NULL};
    int streaming = stream && tok && dp == 1 && rank0;
    if (streaming) {
        st.dt = melbo_xcalloc((size_t)st.n + 1, sizeof *st.dt);
        st.fed = melbo_xcalloc((size_t)st.n + 1, sizeof *st.fed);
        st.text = melbo_xcalloc((size_t)st.n + 1, sizeof *st.text);
        st.len = melbo_xcalloc((size_t)st.n + 1, sizeof *st.len);
        st.done = melbo_xcalloc((size_t)st.n + 1, 1);
        for (int j = 0; j < st.n; j++)
            st.dt[j] = melbo_detok_stream_new(tok, MELBO_DETOK_SKIP_SPECIAL);
    }
    struct progress_ctx pc = {label, now(), 0, isatty(STDERR_FILENO), streaming ? &st : NULL};
    int ret = melbo_generate(be, source_layer, g, jobs + j0, j1 - j0, mine,
                             rank0 ? on_progress : NULL, &pc, err);
    for (int j = 0; streaming && j < st.n; j++) {
        if (ret == 0)
            stream_advance(&st, j, 1);
        melbo_detok_stream_free(st.dt[j]);
        free(st.text[j]);
    }
    if (streaming) {
        free(st.dt), free(st.fed), free(st.text), free(st.len), free(st.done);
    }
    free(jobs);
    if (ret) {
        free(mine);
        return ret;
    }
    out->n_vec = n_vec;
    out->n_prompts = n_prompts;
    if (dp > 1) {
        char *buf = NULL, *all = NULL;
        size_t len = 0;
        pack(mine, j1 - j0, &buf, &len);
        melbo_gen_results_free(mine, j1 - j0);
        free(mine);
        melbo_comm_gather_dp(comm, buf, len, rank0 ? (void **)&all : NULL, NULL);
        free(buf);
        if (!rank0)
            return 0;
        out->res = melbo_xcalloc((size_t)n + 1, sizeof *out->res);
        unpack(all, n, out->res);
        free(all);
    } else {
        out->res = mine;
    }
    if (!rank0) { /* a TP peer of rank 0: rank 0 owns the results */
        melbo_gen_results_free(out->res, n);
        free(out->res);
        out->res = NULL;
        out->n_vec = out->n_prompts = 0;
        return 0;
    }
    out->text = melbo_xcalloc((size_t)n + 1, sizeof *out->text);
    for (int k = 0; k < n; k++)
        out->text[k] = decode_text(tok, out->res[k].ids, out->res[k].n, err);
    return 0;
}

void melbo_completions_free(struct melbo_completions *c) {
    int n = c->n_vec * c->n_prompts;
    if (c->res)
        melbo_gen_results_free(c->res, n);
    for (int k = 0; c->text && k < n; k++)
        free(c->text[k]);
    free(c->res);
    free(c->text);
    memset(c, 0, sizeof *c);
}

void melbo_first_line(const char *text, char *buf, size_t max_chars) {
    while (*text == '\n' || *text == ' ')
        text++;
    size_t n = 0;
    while (text[n] && text[n] != '\n' && n < max_chars)
        n++;
    /* do not cut a UTF-8 character in half */
    if (text[n] && text[n] != '\n')
        while (n > 0 && ((unsigned char)text[n] & 0xC0) == 0x80)
            n--;
    memcpy(buf, text, n);
    buf[n] = '\0';
    for (size_t i = 0; i < n; i++) /* control bytes would drive the terminal */
        if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
            buf[i] = ' ';
    if (text[n] && text[n] != '\n' && n + 4 <= max_chars + 3)
        strcat(buf, "...");
}
