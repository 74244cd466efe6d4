/*
 * rank/tokenizer/decode.c - ids back to text, all at once or streamed during generation.
 *
 * Each id's decoded bytes are prepared at load (tok_impl.h, struct tok_entry). Decoding then
 * follows HF's decoder chains:
 *   - ByteLevel (and tiktoken): the bytes of all tokens, then one from_utf8_lossy pass
 *     (each maximal invalid subsequence becomes U+FFFD);
 *   - Replace("▁", " ") + ByteFallback + Fuse + Strip(" ", start): runs of <0xNN> tokens
 *     become their bytes if those are valid UTF-8, else one U+FFFD per byte; then up to
 *     `start` leading spaces of the whole text are removed;
 *   - Metaspace: "▁" to space and the first token loses its leading space.
 * The stream holds back the bytes of an unfinished character (tok_utf8_next returns 0 on a
 * valid prefix) so a caller printing tokens as they come never prints half a character.
 */
#include "rank/tokenizer/tok_impl.h"

#include <stdlib.h>
#include <string.h>

#include "common/mem.h" // defines: melbo_xcalloc

static int check_id(const struct melbo_tokenizer *tok, int32_t id, size_t pos,
                    struct melbo_err *err) {
    if (id < 0 || id >= tok->n_vocab || !tok->ent[id].str)
        return melbo_err_set(err, MELBO_ERANGE,
                             "token id %d at position %zu is not in the vocabulary (%d ids)",
                             (int)id, pos, (int)tok->n_vocab);
    return 0;
}

static void flush_bytes(char **buf, size_t *len, size_t *cap, const char *run, size_t n) {
    if (n == 0)
        return;
    if (tok_utf8_check(run, n) == n) {
        tok_buf_put(buf, len, cap, run, n);
        return;
    }
    for (size_t i = 0; i < n; i++)
        tok_buf_put(buf, len, cap, "\xEF\xBF\xBD", 3);
}

int melbo_tokenizer_decode(const struct melbo_tokenizer *tok, const int32_t *ids, size_t n,
                           unsigned flags, char **out, size_t *len, struct melbo_err *err) {
    int ret = 0;
    char *raw = NULL, *run = NULL, *res = NULL;
    size_t rlen = 0, rcap = 0, nrun = 0, runcap = 0, reslen = 0, rescap = 0;
    int first = 1;
    tok_buf_put(&raw, &rlen, &rcap, "", 0);
    for (size_t i = 0; i < n; i++) {
        if ((ret = check_id(tok, ids[i], i, err)))
            goto fail;
        const struct tok_entry *e = &tok->ent[ids[i]];
        if (e->special && (flags & MELBO_DETOK_SKIP_SPECIAL))
            continue;
        if (e->byte >= 0 && tok->dec_byte_fallback) {
            char b = (char)e->byte;
            tok_buf_put(&run, &nrun, &runcap, &b, 1);
            first = 0;
            continue;
        }
        flush_bytes(&raw, &rlen, &rcap, run, nrun);
        nrun = 0;
        const char *p = e->bytes;
        size_t m = e->nbytes;
        if (first && tok->dec_metaspace_first && m > 0 && p[0] == ' ') {
            p++;
            m--;
        }
        first = 0;
        tok_buf_put(&raw, &rlen, &rcap, p, m);
    }
    flush_bytes(&raw, &rlen, &rcap, run, nrun);
    tok_buf_put(&res, &reslen, &rescap, "", 0);
    tok_buf_put_lossy(&res, &reslen, &rescap, raw, rlen);
    size_t skip = 0;
    while ((int)skip < tok->dec_strip_start && skip < reslen && res[skip] == ' ')
        skip++;
    if (skip) {
        memmove(res, res + skip, reslen - skip + 1);
        reslen -= skip;
    }
    *out = res;
    if (len)
        *len = reslen;
    free(raw);
    free(run);
    return 0;
fail:
    free(raw);
    free(run);
    *out = NULL;
    return ret;
}

/* ==== streaming ============================================================================ */

struct melbo_detok_stream {
    const struct melbo_tokenizer *tok;
    unsigned flags;
    char *pend;          // bytes not emitted yet (an unfinished character)
    size_t npend, cap_pend;
    char *out;           // the text returned by the last call
    size_t nout, cap_out;
    int started;         // a token has been fed (for the Metaspace first-token strip)
    int strip_left;      // leading spaces still to strip (Strip decoder)
};

struct melbo_detok_stream *melbo_detok_stream_new(const struct melbo_tokenizer *tok,
                                                  unsigned flags) {
    struct melbo_detok_stream *s = melbo_xcalloc(1, sizeof(*s));
    s->tok = tok;
    s->flags = flags;
    s->strip_left = tok->dec_strip_start;
    return s;
}

static void emit(struct melbo_detok_stream *s, const char *p, size_t n) {
    while (s->strip_left > 0 && n > 0) {
        if (p[0] != ' ') {
            s->strip_left = 0;
            break;
        }
        p++;
        n--;
        s->strip_left--;
    }
    tok_buf_put(&s->out, &s->nout, &s->cap_out, p, n);
}

/* Emits the complete characters of pend (U+FFFD for invalid ones), keeps an unfinished
 * tail unless `all`. */
static void drain(struct melbo_detok_stream *s, int all) {
    const unsigned char *u = (const unsigned char *)s->pend;
    size_t i = 0, done = 0;
    while (i < s->npend) {
        uint32_t cp;
        int k = u[i] < 0x80 ? 1 : tok_utf8_next(u + i, s->npend - i, &cp);
        if (k > 0) {
            i += (size_t)k;
            continue;
        }
        if (k == 0 && !all)
            break;
        emit(s, s->pend + done, i - done);
        emit(s, "\xEF\xBF\xBD", 3);
        i += k == 0 ? s->npend - i : (size_t)-k;
        done = i;
    }
    emit(s, s->pend ? s->pend + done : "", i - done); /* always: it makes the text "" */
    if (s->npend > i) /* pend is NULL until the first byte is held back */
        memmove(s->pend, s->pend + i, s->npend - i);
    s->npend -= i;
}

int melbo_detok_stream_feed(struct melbo_detok_stream *s, int32_t id, const char **text,
                            size_t *len, struct melbo_err *err) {
    const struct melbo_tokenizer *tok = s->tok;
    s->nout = 0;
    tok_buf_put(&s->out, &s->nout, &s->cap_out, "", 0);
    int ret = check_id(tok, id, 0, err);
    if (ret)
        return ret;
    const struct tok_entry *e = &tok->ent[id];
    if (!(e->special && (s->flags & MELBO_DETOK_SKIP_SPECIAL))) {
        if (e->byte >= 0 && tok->dec_byte_fallback) {
            char b = (char)e->byte;
            tok_buf_put(&s->pend, &s->npend, &s->cap_pend, &b, 1);
        } else {
            const char *p = e->bytes;
            size_t m = e->nbytes;
            if (!s->started && tok->dec_metaspace_first && m > 0 && p[0] == ' ') {
                p++;
                m--;
            }
            tok_buf_put(&s->pend, &s->npend, &s->cap_pend, p, m);
        }
        s->started = 1;
        drain(s, 0);
    }
    *text = s->out;
    *len = s->nout;
    return 0;
}

const char *melbo_detok_stream_finish(struct melbo_detok_stream *s, size_t *len) {
    s->nout = 0;
    tok_buf_put(&s->out, &s->nout, &s->cap_out, "", 0);
    drain(s, 1);
    s->started = 0;
    s->strip_left = s->tok->dec_strip_start;
    *len = s->nout;
    return s->out;
}

void melbo_detok_stream_free(struct melbo_detok_stream *s) {
    if (!s)
        return;
    free(s->pend);
    free(s->out);
    free(s);
}
