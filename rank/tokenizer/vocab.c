/*
 * rank/tokenizer/vocab.c - the building blocks every tokenizer loader shares (vocab.h): a new
 * tokenizer, vocabulary entries, byte ids, decoded bytes, split regexes and the added-token
 * matchers; freeing a tokenizer; and the small lookups of tokenizer.h.
 *
 * Nothing here knows a file format: tokenizer_json.c, tiktoken.c and gguf_vocab.c call in, this
 * file calls none of them.
 */
#include "rank/tokenizer/vocab.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h" // defines: melbo_xmalloc, melbo_xcalloc

/* ==== a new tokenizer ====================================================================== */

struct melbo_tokenizer *tok_alloc(void) {
    struct melbo_tokenizer *tok = melbo_xcalloc(1, sizeof(*tok));
    tok->bos_id = tok->eos_id = tok->unk_id = -1;
    return tok;
}

/* ==== vocabulary entries =================================================================== */

long tok_bytelevel_to_bytes(const char *s, size_t n, char *buf) {
    size_t i = 0;
    long k = 0;
    while (i < n) {
        uint32_t cp;
        int l = tok_utf8_next((const unsigned char *)s + i, n - i, &cp);
        if (l <= 0)
            return -1;
        int b = tok_cp_to_byte(cp);
        if (b < 0)
            return -1;
        buf[k++] = (char)b;
        i += (size_t)l;
    }
    return k;
}

int32_t tok_model_lookup(const struct melbo_tokenizer *tok, const char *s, size_t n) {
    if (tok->model == TOK_BYTELEVEL) {
        char stack[256];
        char *buf = n <= sizeof(stack) ? stack : melbo_xmalloc(n);
        long k = tok_bytelevel_to_bytes(s, n, buf);
        int32_t id = k >= 0 ? tok_strmap_get(&tok->vocab, buf, (size_t)k)
                            : tok_strmap_get(&tok->vocab, s, n);
        if (buf != stack)
            free(buf);
        return id;
    }
    return tok_strmap_get(&tok->vocab, s, n);
}

void tok_set_entry(struct melbo_tokenizer *tok, int32_t id, const char *s, size_t n) {
    struct tok_entry *e = &tok->ent[id];
    if (e->bytes && e->bytes != e->str)
        free(e->bytes);
    free(e->str);
    e->str = melbo_xmalloc(n + 1);
    memcpy(e->str, s, n);
    e->str[n] = '\0';
    e->str_len = (uint32_t)n;
    e->bytes = e->str;
    e->nbytes = (uint32_t)n;
    e->byte = -1;
}

void tok_vocab_put(struct melbo_tokenizer *tok, int32_t id, const char *s, size_t n, char **buf,
                   size_t *buf_cap) {
    tok_set_entry(tok, id, s, n);
    if (n + 1 > *buf_cap) {
        *buf_cap = 2 * n + 16;
        *buf = melbo_xrealloc(*buf, *buf_cap);
    }
    long k = tok->model == TOK_BYTELEVEL ? tok_bytelevel_to_bytes(s, n, *buf) : -1;
    if (k >= 0)
        tok_strmap_put(&tok->vocab, *buf, (size_t)k, id);
    else
        tok_strmap_put(&tok->vocab, s, n, id);
}

void tok_find_byte_ids(struct melbo_tokenizer *tok) {
    for (int b = 0; b < 256; b++) {
        char key[8];
        if (tok->model == TOK_BYTELEVEL) {
            key[0] = (char)b;
            tok->byte_id[b] = tok_strmap_get(&tok->vocab, key, 1);
        } else {
            snprintf(key, sizeof(key), "<0x%02X>", b);
            tok->byte_id[b] = tok_strmap_get(&tok->vocab, key, 6);
        }
    }
}

void tok_fill_entry_bytes(struct melbo_tokenizer *tok) {
    for (int32_t id = 0; id < tok->n_vocab; id++) {
        struct tok_entry *e = &tok->ent[id];
        e->byte = -1;
        if (!e->str)
            continue;
        if (tok->dec_bytelevel) {
            char *buf = melbo_xmalloc(e->str_len + 1);
            long k = tok_bytelevel_to_bytes(e->str, e->str_len, buf);
            if (k >= 0) {
                e->bytes = buf;
                e->nbytes = (uint32_t)k;
            } else {
                free(buf);
            }
            continue;
        }
        if (tok->dec_byte_fallback && e->str_len == 6 && !strncmp(e->str, "<0x", 3) &&
            e->str[5] == '>') {
            unsigned v;
            if (sscanf(e->str + 3, "%2x", &v) == 1) {
                e->byte = (int16_t)v;
                continue;
            }
        }
        if (strstr(e->str, "\xE2\x96\x81")) {
            char *buf = melbo_xmalloc(e->str_len + 1);
            size_t k = 0;
            for (uint32_t i = 0; i < e->str_len;) {
                if (!strncmp(e->str + i, "\xE2\x96\x81", 3)) {
                    buf[k++] = ' ';
                    i += 3;
                } else {
                    buf[k++] = e->str[i++];
                }
            }
            buf[k] = '\0';
            e->bytes = buf;
            e->nbytes = (uint32_t)k;
        }
    }
}

/* ==== split regexes and added tokens ===================================================== */

int tok_compile_regex(struct melbo_tokenizer *tok, const char *pattern, const char *path,
                      struct melbo_err *err) {
    if (tok->n_re == TOK_MAX_RE)
        return melbo_err_set(err, MELBO_EUNSUPPORTED, "%s: more than four regex pre-tokenizers",
                             path);
    int code;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &code, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof(msg));
        return melbo_err_set(err, MELBO_EUNSUPPORTED,
                             "%s: split regex not supported by PCRE2 at offset %zu: %s", path,
                             (size_t)off, (const char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); // falls back to the interpreter if JIT fails
    tok->re[tok->n_re++] = re;
    return 0;
}

void tok_finish_added(struct melbo_tokenizer *tok) {
    for (uint32_t i = 0; i < tok->n_added; i++) {
        tok->ent[tok->added[i].id].added = 1;
        tok->ent[tok->added[i].id].special = tok->added[i].special;
    }
    tok_matcher_build(&tok->match_raw, tok->added, tok->n_added, 0);
    tok_matcher_build(&tok->match_norm, tok->added, tok->n_added, 1);
    tok->md = pcre2_match_data_create(16, NULL);
}

/* ==== freeing ============================================================================= */

void melbo_tokenizer_free(struct melbo_tokenizer *tok) {
    if (!tok)
        return;
    for (int32_t i = 0; i < tok->n_vocab; i++) {
        if (tok->ent[i].bytes != tok->ent[i].str)
            free(tok->ent[i].bytes);
        free(tok->ent[i].str);
    }
    free(tok->ent);
    for (uint32_t i = 0; i < tok->n_added; i++)
        free(tok->added[i].content);
    free(tok->added);
    tok_matcher_free(&tok->match_raw);
    tok_matcher_free(&tok->match_norm);
    tok_strmap_free(&tok->vocab);
    tok_pairmap_free(&tok->merges);
    for (int i = 0; i < tok->n_re; i++)
        pcre2_code_free(tok->re[i]);
    pcre2_match_data_free(tok->md);
    tok_cache_free(&tok->cache);
    free(tok->prepend);
    free(tok->repl_from);
    free(tok->repl_to);
    free(tok->bos_token);
    free(tok->eos_token);
    free(tok->chat_template);
    free(tok->scratch);
    free(tok);
}

/* ==== lookups ============================================================================== */

int32_t melbo_tokenizer_n_vocab(const struct melbo_tokenizer *tok) {
    return tok->n_vocab;
}

int32_t melbo_tokenizer_token_id(const struct melbo_tokenizer *tok, const char *token) {
    size_t n = strlen(token);
    for (uint32_t i = 0; i < tok->n_added; i++)
        if (tok->added[i].len == n && !memcmp(tok->added[i].content, token, n))
            return tok->added[i].id;
    if (!tok->vocab.slots)
        return -1;
    return tok->model == TOK_TIKTOKEN ? tok_strmap_get(&tok->vocab, token, n)
                                      : tok_model_lookup(tok, token, n);
}

const char *melbo_tokenizer_token_str(const struct melbo_tokenizer *tok, int32_t id) {
    return id >= 0 && id < tok->n_vocab ? tok->ent[id].str : NULL;
}

int melbo_tokenizer_is_special(const struct melbo_tokenizer *tok, int32_t id) {
    return id >= 0 && id < tok->n_vocab && tok->ent[id].special;
}

int32_t melbo_tokenizer_bos_id(const struct melbo_tokenizer *tok) {
    return tok->bos_id;
}
int32_t melbo_tokenizer_eos_id(const struct melbo_tokenizer *tok) {
    return tok->eos_id;
}
const char *melbo_tokenizer_bos_token(const struct melbo_tokenizer *tok) {
    return tok->bos_token ? tok->bos_token : "";
}
const char *melbo_tokenizer_eos_token(const struct melbo_tokenizer *tok) {
    return tok->eos_token ? tok->eos_token : "";
}
const char *melbo_tokenizer_chat_template(const struct melbo_tokenizer *tok) {
    return tok->chat_template;
}

const char *melbo_tokenizer_kind(const struct melbo_tokenizer *tok) {
    return tok->model == TOK_BYTELEVEL  ? "bpe-bytelevel"
           : tok->model == TOK_TIKTOKEN ? "tiktoken"
                                        : "bpe-sentencepiece";
}
