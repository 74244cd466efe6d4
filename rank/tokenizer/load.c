/*
 * rank/tokenizer/load.c - tokenizer.h's loading: which loader (loaders.h) reads which path.
 *
 * A GGUF file carries its own tokenizer (gguf_vocab.c). A model directory holds tokenizer.json
 * (tokenizer_json.c) or, for Qwen-1, qwen.tiktoken (tiktoken.c); tokenizer_config.json beside
 * either adds bos/eos and the chat template, and chat_template.jinja is the template when the
 * config has none. This file sits above the loaders: nothing in the module calls into it.
 */
#include "rank/tokenizer/loaders.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/file.h"     // defines: melbo_file_read, melbo_path_join
#include "rank/model/gguf.h" // defines: melbo_gguf_is_path

int melbo_tokenizer_load_files(const char *tokenizer_path, const char *config_path,
                               struct melbo_tokenizer **out, struct melbo_err *err) {
    char *text = NULL;
    size_t len = 0;
    struct melbo_tokenizer *tok = tok_alloc();
    int ret = melbo_file_read(tokenizer_path, &text, &len, err);
    if (ret)
        goto fail;
    size_t pl = strlen(tokenizer_path);
    if (pl >= 9 && !strcmp(tokenizer_path + pl - 9, ".tiktoken"))
        ret = tok_tiktoken_load(tok, tokenizer_path, text, len, err);
    else
        ret = tok_json_load(tok, tokenizer_path, text, len, err);
    if (ret)
        goto fail;
    if (config_path && (ret = tok_json_config_apply(tok, config_path, err)))
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
