/*
 * rank/tokenizer/load.c - reading tokenizer.json and tokenizer_config.json into a
 * struct melbo_tokenizer (tok_impl.h), and the small lookups of tokenizer.h.
 *
 * Only what melbo implements is accepted: the BPE model, the NFC/NFD/NFKC/NFKD, Prepend and
 * Replace normalizers, the Split (Isolated), ByteLevel and Metaspace pre-tokenizers, the
 * ByteLevel, Metaspace, Replace/ByteFallback/Fuse/Strip decoders and TemplateProcessing. Any
 * other type is refused with its name, so a model never silently tokenizes differently.
 */
#include "rank/tokenizer/tok_impl.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/file.h"     // defines: melbo_file_read, melbo_path_join
#include "common/mem.h"      // defines: melbo_xmalloc, melbo_xcalloc, melbo_xstrdup
#include "rank/model/gguf.h" // defines: melbo_gguf_is_path

#define GPT2_REGEX                                                                                 \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

/* ==== ids ================================================================================== */

void melbo_ids_push(struct melbo_ids *v, int32_t id) {
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 64;
        v->ids = melbo_xrealloc(v->ids, v->cap * sizeof(*v->ids));
    }
    v->ids[v->n++] = id;
}

void melbo_ids_free(struct melbo_ids *v) {
    free(v->ids);
    memset(v, 0, sizeof(*v));
}

/* ==== helpers ============================================================================== */

/* Converts a byte-level vocabulary string to raw bytes in buf; returns the length, or -1 if
 * a character is outside the byte table (then the string is used as it is). */
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

/* The id of a token written as in tokenizer.json's model vocabulary, or -1. */
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

static const char *json_str(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int json_bool(const cJSON *o, const char *key, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
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

/* ==== tokenizer.json parts ================================================================= */

static int parse_normalizer(struct melbo_tokenizer *tok, const cJSON *n, const char *path,
                            struct melbo_err *err) {
    if (!n || cJSON_IsNull(n))
        return 0;
    const char *type = json_str(n, "type");
    if (!type)
        return melbo_err_set(err, MELBO_EFORMAT, "%s: normalizer without a type", path);
    if (!strcmp(type, "Sequence")) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(n, "normalizers")) {
            int r = parse_normalizer(tok, it, path, err);
            if (r)
                return r;
        }
        return 0;
    }
    if (tok->n_norm_ops == 4)
        return melbo_err_set(err, MELBO_EUNSUPPORTED, "%s: too many normalizers", path);
    enum tok_norm form = !strcmp(type, "NFC")    ? TOK_NORM_NFC
                         : !strcmp(type, "NFD")  ? TOK_NORM_NFD
                         : !strcmp(type, "NFKC") ? TOK_NORM_NFKC
                         : !strcmp(type, "NFKD") ? TOK_NORM_NFKD
                                                 : TOK_NORM_NONE;
    if (form != TOK_NORM_NONE && tok->norm_form == TOK_NORM_NONE) {
        tok->norm_form = form;
        tok->norm_ops[tok->n_norm_ops++] = 1;
        return 0;
    }
    if (!strcmp(type, "Prepend") && json_str(n, "prepend") && !tok->prepend) {
        tok->prepend = melbo_xstrdup(json_str(n, "prepend"));
        tok->norm_ops[tok->n_norm_ops++] = 2;
        return 0;
    }
    if (!strcmp(type, "Replace") && !tok->repl_from) {
        const char *from = json_str(cJSON_GetObjectItemCaseSensitive(n, "pattern"), "String");
        const char *to = json_str(n, "content");
        if (!from || !to || !*from)
            return melbo_err_set(err, MELBO_EUNSUPPORTED,
                                 "%s: Replace normalizer with a regex pattern is not supported",
                                 path);
        tok->repl_from = melbo_xstrdup(from);
        tok->repl_to = melbo_xstrdup(to);
        tok->norm_ops[tok->n_norm_ops++] = 3;
        return 0;
    }
    return melbo_err_set(err, MELBO_EUNSUPPORTED, "%s: normalizer type \"%s\" is not supported",
                         path, type);
}

static int parse_pretok(struct melbo_tokenizer *tok, const cJSON *p, const char *path,
                        struct melbo_err *err) {
    if (!p || cJSON_IsNull(p))
        return 0;
    const char *type = json_str(p, "type");
    if (!type)
        return melbo_err_set(err, MELBO_EFORMAT, "%s: pre_tokenizer without a type", path);
    if (!strcmp(type, "Sequence")) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(p, "pretokenizers")) {
            int r = parse_pretok(tok, it, path, err);
            if (r)
                return r;
        }
        return 0;
    }
    if (!strcmp(type, "Split")) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(p, "pattern");
        const char *behavior = json_str(p, "behavior");
        if (!behavior || strcmp(behavior, "Isolated") || json_bool(p, "invert", 0))
            return melbo_err_set(err, MELBO_EUNSUPPORTED,
                                 "%s: Split pre-tokenizer behaviour \"%s\"%s is not supported "
                                 "(only Isolated)",
                                 path, behavior ? behavior : "?",
                                 json_bool(p, "invert", 0) ? " with invert" : "");
        if (json_str(pat, "Regex"))
            return tok_compile_regex(tok, json_str(pat, "Regex"), path, err);
        if (json_str(pat, "String")) {
            size_t n = strlen(json_str(pat, "String"));
            char *q = melbo_xmalloc(n + 5);
            snprintf(q, n + 5, "\\Q%s\\E", json_str(pat, "String"));
            int r = tok_compile_regex(tok, q, path, err);
            free(q);
            return r;
        }
        return melbo_err_set(err, MELBO_EFORMAT, "%s: Split pre-tokenizer without a pattern", path);
    }
    if (!strcmp(type, "ByteLevel")) {
        tok->model = TOK_BYTELEVEL;
        tok->bytelevel_prefix_space = json_bool(p, "add_prefix_space", 0);
        if (json_bool(p, "use_regex", 1))
            return tok_compile_regex(tok, GPT2_REGEX, path, err);
        return 0;
    }
    if (!strcmp(type, "Metaspace")) {
        const char *r = json_str(p, "replacement");
        const char *scheme = json_str(p, "prepend_scheme");
        tok->metaspace = 1;
        snprintf(tok->metaspace_repl, sizeof(tok->metaspace_repl), "%s", r ? r : "\xE2\x96\x81");
        tok->metaspace_split = json_bool(p, "split", 1);
        tok->metaspace_prepend = scheme ? (!strcmp(scheme, "always")  ? 1
                                           : !strcmp(scheme, "first") ? 2
                                                                      : 0)
                                        : json_bool(p, "add_prefix_space", 1);
        return 0;
    }
    return melbo_err_set(err, MELBO_EUNSUPPORTED, "%s: pre-tokenizer type \"%s\" is not supported",
                         path, type);
}

static int parse_decoder(struct melbo_tokenizer *tok, const cJSON *d, const char *path,
                         struct melbo_err *err) {
    if (!d || cJSON_IsNull(d))
        return 0;
    const char *type = json_str(d, "type");
    if (!type)
        return melbo_err_set(err, MELBO_EFORMAT, "%s: decoder without a type", path);
    if (!strcmp(type, "Sequence")) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(d, "decoders")) {
            int r = parse_decoder(tok, it, path, err);
            if (r)
                return r;
        }
        return 0;
    }
    if (!strcmp(type, "ByteLevel")) {
        tok->dec_bytelevel = 1;
        return 0;
    }
    if (!strcmp(type, "ByteFallback")) {
        tok->dec_byte_fallback = 1;
        return 0;
    }
    if (!strcmp(type, "Fuse"))
        return 0;
    if (!strcmp(type, "Metaspace")) {
        const char *scheme = json_str(d, "prepend_scheme");
        tok->dec_metaspace_first =
            scheme ? strcmp(scheme, "never") != 0 : json_bool(d, "add_prefix_space", 1);
        return 0;
    }
    if (!strcmp(type, "Replace")) {
        const char *from = json_str(cJSON_GetObjectItemCaseSensitive(d, "pattern"), "String");
        const char *to = json_str(d, "content");
        if (from && to && !strcmp(from, "\xE2\x96\x81") && !strcmp(to, " "))
            return 0; // SentencePiece entries decode "▁" to a space (see tok_fill_entry_bytes)
    }
    if (!strcmp(type, "Strip")) {
        const char *c = json_str(d, "content");
        const cJSON *start = cJSON_GetObjectItemCaseSensitive(d, "start");
        const cJSON *stop = cJSON_GetObjectItemCaseSensitive(d, "stop");
        if (c && !strcmp(c, " ") && cJSON_IsNumber(start) && cJSON_IsNumber(stop) &&
            stop->valueint == 0) {
            tok->dec_strip_start = start->valueint;
            return 0;
        }
    }
    return melbo_err_set(err, MELBO_EUNSUPPORTED,
                         "%s: decoder \"%s\" (with these settings) is not supported", path, type);
}

static int parse_post(struct melbo_tokenizer *tok, const cJSON *p, const char *path,
                      struct melbo_err *err) {
    if (!p || cJSON_IsNull(p))
        return 0;
    const char *type = json_str(p, "type");
    if (type && !strcmp(type, "Sequence")) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(p, "processors")) {
            int r = parse_post(tok, it, path, err);
            if (r)
                return r;
        }
        return 0;
    }
    if (type && !strcmp(type, "ByteLevel"))
        return 0; // offsets only
    if (type && !strcmp(type, "TemplateProcessing")) {
        int seen_seq = 0;
        const cJSON *it, *specials = cJSON_GetObjectItemCaseSensitive(p, "special_tokens");
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(p, "single")) {
            const cJSON *sp = cJSON_GetObjectItemCaseSensitive(it, "SpecialToken");
            if (!sp) {
                seen_seq = 1;
                continue;
            }
            const cJSON *def = cJSON_GetObjectItemCaseSensitive(specials, json_str(sp, "id"));
            const cJSON *x;
            cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(def, "ids")) {
                int32_t *arr = seen_seq ? tok->post_ids : tok->pre_ids;
                int *n = seen_seq ? &tok->n_post : &tok->n_pre;
                if (*n < 4 && cJSON_IsNumber(x))
                    arr[(*n)++] = (int32_t)x->valuedouble;
            }
        }
        return 0;
    }
    return melbo_err_set(err, MELBO_EUNSUPPORTED, "%s: post_processor type \"%s\" is not supported",
                         path, type ? type : "?");
}

/* Fills each entry's decoded bytes from its string, per the decoder. */
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

static int parse_model(struct melbo_tokenizer *tok, const cJSON *m, const cJSON *added,
                       const char *path, struct melbo_err *err) {
    const char *type = json_str(m, "type");
    if (type && strcmp(type, "BPE"))
        return melbo_err_set(err, MELBO_EUNSUPPORTED,
                             "%s: model type \"%s\" is not supported (only BPE)", path, type);
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(m, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(m, "merges");
    if (!cJSON_IsObject(vocab) || !cJSON_IsArray(merges))
        return melbo_err_set(err, MELBO_EFORMAT, "%s: model has no vocab object or merges list",
                             path);
    const char *pre = json_str(m, "continuing_subword_prefix");
    const char *suf = json_str(m, "end_of_word_suffix");
    if ((pre && *pre) || (suf && *suf))
        return melbo_err_set(err, MELBO_EUNSUPPORTED,
                             "%s: BPE with continuing_subword_prefix/end_of_word_suffix is not "
                             "supported",
                             path);
    tok->ignore_merges = json_bool(m, "ignore_merges", 0);
    tok->byte_fallback = json_bool(m, "byte_fallback", 0);
    tok->fuse_unk = json_bool(m, "fuse_unk", 0);

    int32_t max_id = -1;
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble > 1e8)
            return melbo_err_set(err, MELBO_EFORMAT, "%s: vocab entry \"%s\" has no valid id", path,
                                 it->string);
        if ((int32_t)it->valuedouble > max_id)
            max_id = (int32_t)it->valuedouble;
    }
    cJSON_ArrayForEach(it, added) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        if (cJSON_IsNumber(id) && (int32_t)id->valuedouble > max_id)
            max_id = (int32_t)id->valuedouble;
    }
    tok->n_vocab = max_id + 1;
    tok->ent = melbo_xcalloc((size_t)tok->n_vocab, sizeof(*tok->ent));
    tok_strmap_init(&tok->vocab, (uint32_t)cJSON_GetArraySize(vocab));
    char *buf = NULL;
    size_t buf_cap = 0;
    cJSON_ArrayForEach(it, vocab) {
        tok_vocab_put(tok, (int32_t)it->valuedouble, it->string, strlen(it->string), &buf,
                      &buf_cap);
    }
    tok_find_byte_ids(tok);
    const char *unk = json_str(m, "unk_token");
    tok->unk_id = unk ? tok_strmap_get(&tok->vocab, unk, strlen(unk)) : -1;

    int ret = 0;
    uint32_t rank = 0;
    tok_pairmap_init(&tok->merges, (uint32_t)cJSON_GetArraySize(merges));
    cJSON_ArrayForEach(it, merges) {
        const char *a, *b;
        size_t la, lb;
        if (cJSON_IsString(it)) {
            const char *sp = strchr(it->valuestring, ' ');
            if (!sp) {
                ret = melbo_err_set(err, MELBO_EFORMAT, "%s: merge %u \"%s\" has no space", path,
                                    rank, it->valuestring);
                goto out;
            }
            a = it->valuestring;
            la = (size_t)(sp - a);
            b = sp + 1;
            lb = strlen(b);
        } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 &&
                   cJSON_IsString(cJSON_GetArrayItem(it, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(it, 1))) {
            a = cJSON_GetArrayItem(it, 0)->valuestring;
            b = cJSON_GetArrayItem(it, 1)->valuestring;
            la = strlen(a);
            lb = strlen(b);
        } else {
            ret = melbo_err_set(err, MELBO_EFORMAT, "%s: merge %u is neither \"a b\" nor [a, b]",
                                path, rank);
            goto out;
        }
        if (la + lb + 1 > buf_cap) {
            buf_cap = 2 * (la + lb) + 16;
            buf = melbo_xrealloc(buf, buf_cap);
        }
        memcpy(buf, a, la);
        memcpy(buf + la, b, lb);
        int32_t ia = tok_model_lookup(tok, a, la), ib = tok_model_lookup(tok, b, lb);
        int32_t ic = tok_model_lookup(tok, buf, la + lb);
        if (ia < 0 || ib < 0 || ic < 0) {
            buf[la + lb] = '\0';
            ret = melbo_err_set(err, MELBO_EFORMAT,
                                "%s: merge %u (\"%.*s\" + \"%.*s\") names a token missing from "
                                "the vocab",
                                path, rank, (int)la, a, (int)lb, b);
            goto out;
        }
        tok_pairmap_put(&tok->merges, ia, ib, rank, ic);
        rank++;
    }
out:
    free(buf);
    return ret;
}

static int parse_added(struct melbo_tokenizer *tok, const cJSON *added, const char *path,
                       struct melbo_err *err) {
    tok->added = melbo_xcalloc((size_t)cJSON_GetArraySize(added) + 1, sizeof(*tok->added));
    const cJSON *it;
    cJSON_ArrayForEach(it, added) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        const char *content = json_str(it, "content");
        if (!cJSON_IsNumber(id) || !content)
            return melbo_err_set(err, MELBO_EFORMAT, "%s: added token without id or content", path);
        struct tok_added *a = &tok->added[tok->n_added++];
        a->id = (int32_t)id->valuedouble;
        a->content = melbo_xstrdup(content);
        a->len = strlen(content);
        a->special = (uint8_t)json_bool(it, "special", 0);
        a->lstrip = (uint8_t)json_bool(it, "lstrip", 0);
        a->rstrip = (uint8_t)json_bool(it, "rstrip", 0);
        a->single_word = (uint8_t)json_bool(it, "single_word", 0);
        a->normalized = (uint8_t)json_bool(it, "normalized", !a->special);
        tok_set_entry(tok, a->id, content, a->len);
    }
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

static int parse_tokenizer_json(struct melbo_tokenizer *tok, const char *path, const char *text,
                                size_t len, struct melbo_err *err) {
    int ret = 0;
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root)
        return melbo_err_set(err, MELBO_EFORMAT, "%s: not valid JSON (near byte %zu)", path,
                             (size_t)(cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() - text : 0));
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (!cJSON_IsObject(model)) {
        ret = melbo_err_set(err, MELBO_EFORMAT, "%s: no \"model\" object", path);
        goto out;
    }
    /* the model kind decides how vocab keys are stored, so read the pre-tokenizer first */
    tok->model = TOK_SENTENCEPIECE;
    if ((ret = parse_pretok(tok, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), path,
                            err)) ||
        (ret = parse_decoder(tok, cJSON_GetObjectItemCaseSensitive(root, "decoder"), path, err)))
        goto out;
    if (tok->dec_bytelevel)
        tok->model = TOK_BYTELEVEL;
    if ((ret = parse_normalizer(tok, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), path,
                                err)) ||
        (ret = parse_model(tok, model, added, path, err)) ||
        (ret = parse_added(tok, added, path, err)) ||
        (ret =
             parse_post(tok, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), path, err)))
        goto out;
    tok_fill_entry_bytes(tok);
    tok_finish_added(tok);
out:
    cJSON_Delete(root);
    return ret;
}

/* ==== tokenizer_config.json ================================================================ */

/* bos_token / eos_token are strings or AddedToken objects {"content": ...}. */
static char *config_token(const cJSON *cfg, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsString(v))
        return melbo_xstrdup(v->valuestring);
    if (cJSON_IsObject(v) && json_str(v, "content"))
        return melbo_xstrdup(json_str(v, "content"));
    return NULL;
}

static int parse_config(struct melbo_tokenizer *tok, const char *path, struct melbo_err *err) {
    char *text = NULL;
    size_t len;
    int ret = melbo_file_read(path, &text, &len, err);
    if (ret)
        return ret;
    cJSON *cfg = cJSON_ParseWithLength(text, len);
    if (!cfg) {
        ret = melbo_err_set(err, MELBO_EFORMAT, "%s: not valid JSON", path);
        goto out;
    }
    char *bos = config_token(cfg, "bos_token"), *eos = config_token(cfg, "eos_token");
    if (bos) {
        free(tok->bos_token);
        tok->bos_token = bos;
    }
    if (eos) {
        free(tok->eos_token);
        tok->eos_token = eos;
    }
    const cJSON *tpl = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
    if (cJSON_IsString(tpl)) {
        tok->chat_template = melbo_xstrdup(tpl->valuestring);
    } else if (cJSON_IsArray(tpl)) { // [{"name": "default", "template": ...}, ...]
        const cJSON *it;
        cJSON_ArrayForEach(it, tpl) {
            if (json_str(it, "name") && !strcmp(json_str(it, "name"), "default") &&
                json_str(it, "template"))
                tok->chat_template = melbo_xstrdup(json_str(it, "template"));
        }
    }
    if (tok->n_pre == 0 && json_bool(cfg, "add_bos_token", 0) && tok->bos_token &&
        melbo_tokenizer_token_id(tok, tok->bos_token) >= 0)
        tok->pre_ids[tok->n_pre++] = melbo_tokenizer_token_id(tok, tok->bos_token);
    if (tok->n_post == 0 && json_bool(cfg, "add_eos_token", 0) && tok->eos_token &&
        melbo_tokenizer_token_id(tok, tok->eos_token) >= 0)
        tok->post_ids[tok->n_post++] = melbo_tokenizer_token_id(tok, tok->eos_token);
out:
    cJSON_Delete(cfg);
    free(text);
    return ret;
}

/* ==== public entry points ================================================================== */

int melbo_tokenizer_load_files(const char *tokenizer_path, const char *config_path,
                               struct melbo_tokenizer **out, struct melbo_err *err) {
    char *text = NULL;
    size_t len = 0;
    struct melbo_tokenizer *tok = melbo_xcalloc(1, sizeof(*tok));
    tok->bos_id = tok->eos_id = tok->unk_id = -1;
    int ret = melbo_file_read(tokenizer_path, &text, &len, err);
    if (ret)
        goto fail;
    size_t pl = strlen(tokenizer_path);
    if (pl >= 9 && !strcmp(tokenizer_path + pl - 9, ".tiktoken"))
        ret = tok_tiktoken_load(tok, tokenizer_path, text, len, err);
    else
        ret = parse_tokenizer_json(tok, tokenizer_path, text, len, err);
    if (ret)
        goto fail;
    if (config_path && (ret = parse_config(tok, config_path, err)))
        goto fail;
    tok->bos_id = tok->bos_token ? melbo_tokenizer_token_id(tok, tok->bos_token) : -1;
    tok->eos_id = tok->eos_token ? melbo_tokenizer_token_id(tok, tok->eos_token) : -1;
    free(text);
    *out = tok;
    return 0;
fail:
    free(text);
    melbo_tokenizer_free(tok);
    *out = NULL;
    return ret;
}

int melbo_tokenizer_load(const char *dir, struct melbo_tokenizer **out, struct melbo_err *err) {
    char tj[4096], cfg[4096], tt[4096], jinja[4096];
    if (melbo_gguf_is_path(dir))
        return tok_gguf_load(dir, out, err);
    if (melbo_path_join(tj, sizeof(tj), dir, "tokenizer.json") ||
        melbo_path_join(cfg, sizeof(cfg), dir, "tokenizer_config.json") ||
        melbo_path_join(tt, sizeof(tt), dir, "qwen.tiktoken") ||
        melbo_path_join(jinja, sizeof(jinja), dir, "chat_template.jinja"))
        return melbo_err_set(err, MELBO_ERANGE, "path too long: %s", dir);
    const char *tpath = access(tj, F_OK) == 0 ? tj : access(tt, F_OK) == 0 ? tt : NULL;
    if (!tpath) {
        *out = NULL;
        return melbo_err_set(err, MELBO_ENOENT,
                             "no tokenizer in %s: expected tokenizer.json (or qwen.tiktoken for "
                             "Qwen-1)",
                             dir);
    }
    int ret = melbo_tokenizer_load_files(tpath, access(cfg, F_OK) == 0 ? cfg : NULL, out, err);
    if (ret == 0 && !(*out)->chat_template && access(jinja, F_OK) == 0) {
        char *t = NULL;
        if ((ret = melbo_file_read(jinja, &t, NULL, err)) == 0)
            (*out)->chat_template = t;
        else {
            melbo_tokenizer_free(*out);
            *out = NULL;
        }
    }
    return ret;
}

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
