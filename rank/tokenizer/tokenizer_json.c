/*
 * rank/tokenizer/tokenizer_json.c - Hugging Face's tokenizer.json and tokenizer_config.json
 * read into a struct melbo_tokenizer (loaders.h), on the building blocks of vocab.h.
 *
 * Only what melbo implements is accepted: the BPE model, the NFC/NFD/NFKC/NFKD, Prepend and
 * Replace normalizers, the Split (Isolated), ByteLevel and Metaspace pre-tokenizers, the
 * ByteLevel, Metaspace, Replace/ByteFallback/Fuse/Strip decoders and TemplateProcessing. Any
 * other type is refused with its name, so a model never silently tokenizes differently.
 */
#include "rank/tokenizer/loaders.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h" // defines: melbo_file_read
#include "common/mem.h"  // defines: melbo_xmalloc, melbo_xcalloc, melbo_xrealloc, melbo_xstrdup

#define GPT2_REGEX                                                                                 \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

/* ==== JSON accessors ======================================================================= */

static const char *json_str(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int json_bool(const cJSON *o, const char *key, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

/* ==== normalizer, pre-tokenizer, decoder, post-processor ================================ */

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

/* ==== the BPE model ======================================================================== */

/*
 * The model's vocab object ({"token": id, ...}): sizes tok->ent to cover it and the ids of the
 * added tokens, then fills the entries, tok->vocab and tok->byte_id.
 */
static int parse_vocab(struct melbo_tokenizer *tok, const cJSON *vocab, const cJSON *added,
                       const char *path, struct melbo_err *err) {
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
    free(buf);
    tok_find_byte_ids(tok);
    return 0;
}

/*
 * The merges list, in either format ("a b" strings or ["a", "b"] pairs), into tok->merges with
 * rank = position. Every part and their concatenation must be in the vocabulary.
 */
static int parse_merges(struct melbo_tokenizer *tok, const cJSON *merges, const char *path,
                        struct melbo_err *err) {
    char *buf = NULL;
    size_t buf_cap = 0;
    const cJSON *it;
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

/* The "model" object: a BPE without subword prefix or word suffix, its flags, vocab and merges. */
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
    int ret = parse_vocab(tok, vocab, added, path, err);
    if (ret)
        return ret;
    const char *unk = json_str(m, "unk_token");
    tok->unk_id = unk ? tok_strmap_get(&tok->vocab, unk, strlen(unk)) : -1;
    return parse_merges(tok, merges, path, err);
}

/* ==== added tokens and the whole file ====================================================== */

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

int tok_json_load(struct melbo_tokenizer *tok, const char *path, const char *text, size_t len,
                  struct melbo_err *err) {
    int ret = 0;
    /* JSON is UTF-8, but cJSON passes any bytes through, and the split regexes and the text
     * they match reach PCRE2 as trusted UTF-8 (PCRE2_NO_UTF_CHECK: tests/fuzz found
     * pcre2_compile reading past the end of a pattern with a broken sequence) */
    size_t bad = tok_utf8_check(text, len);
    if (bad != len)
        return melbo_err_set(err, MELBO_EFORMAT, "%s: not UTF-8 (byte %zu)", path, bad);
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

int tok_json_config_apply(struct melbo_tokenizer *tok, const char *path, struct melbo_err *err) {
    char *text = NULL;
    size_t len;
    int ret = melbo_file_read(path, &text, &len, err);
    if (ret)
        return ret;
    cJSON *cfg = tok_utf8_check(text, len) == len ? cJSON_ParseWithLength(text, len) : NULL;
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
