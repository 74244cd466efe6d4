/*
 * tests/fuzz/fuzz_tokenizer.c - loading tokenizer.json (rank/tokenizer/tokenizer_json.c, with
 * an optional tokenizer_config.json) and then using the tokenizer it gives: the input is
 *   TOKENIZER.JSON [ "\n@@config@@\n" TOKENIZER_CONFIG.JSON ] [ "\n@@text@@\n" TEXT ]
 * TEXT is encoded with and without the special-token flags, the ids decoded in one go and
 * through the streaming decoder (whose concatenation must equal the one-go text when every id is
 * valid UTF-8 output), and a few ids outside the vocabulary must be refused.
 */
#include <assert.h>

#include "rank/tokenizer/tokenizer.h"
#include "tests/fuzz/fuzz.h"

static void use(struct melbo_tokenizer *tok, const char *text, size_t len) {
    struct melbo_err err = {0};
    for (unsigned flags = 0; flags < 4; flags++) {
        struct melbo_ids ids = {0};
        if (melbo_tokenizer_encode(tok, text, len, flags, &ids, &err) != 0) {
            melbo_ids_free(&ids);
            return; // invalid UTF-8: refused with the offset
        }
        char *out = NULL;
        size_t out_len = 0;
        if (melbo_tokenizer_decode(tok, ids.ids, ids.n, flags & 1 ? MELBO_DETOK_SKIP_SPECIAL : 0,
                                   &out, &out_len, &err) == 0)
            assert(strlen(out) <= out_len);
        struct melbo_detok_stream *s = melbo_detok_stream_new(tok, 0);
        for (size_t i = 0; i < ids.n; i++) {
            const char *piece;
            size_t n;
            melbo_detok_stream_feed(s, ids.ids[i], &piece, &n, &err);
        }
        size_t n;
        melbo_detok_stream_finish(s, &n);
        melbo_detok_stream_free(s);
        free(out);
        melbo_ids_free(&ids);
    }
    int32_t bad[3] = {-1, melbo_tokenizer_n_vocab(tok), INT32_MAX};
    char *out = NULL;
    for (int i = 0; i < 3; i++)
        assert(melbo_tokenizer_decode(tok, &bad[i], 1, 0, &out, NULL, &err) != 0);
    for (int32_t id = 0; id < melbo_tokenizer_n_vocab(tok) && id < 64; id++) {
        const char *s = melbo_tokenizer_token_str(tok, id);
        if (s)
            assert(melbo_tokenizer_token_id(tok, s) >= 0);
        melbo_tokenizer_is_special(tok, id);
    }
    melbo_tokenizer_bos_token(tok);
    melbo_tokenizer_chat_template(tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *head, *tj, *text = (const uint8_t *)"Hello, world!";
    size_t head_n, tj_n, text_n = 13;
    if (fuzz_split(&data, &size, "\n@@text@@\n", &head, &head_n))
        text = data, text_n = size;
    int has_cfg = fuzz_split(&head, &head_n, "\n@@config@@\n", &tj, &tj_n);
    const uint8_t *cfg = head;
    size_t cfg_n = head_n;
    const char *tpath = fuzz_file("tokenizer.json", tj, tj_n);
    const char *cpath = has_cfg ? fuzz_file("tokenizer_config.json", cfg, cfg_n) : NULL;
    struct melbo_tokenizer *tok = NULL;
    struct melbo_err err = {0};
    if (melbo_tokenizer_load_files(tpath, cpath, &tok, &err) != 0) {
        assert(tok == NULL && err.msg[0] != '\0');
        return 0;
    }
    use(tok, (const char *)text, text_n);
    melbo_tokenizer_free(tok);
    return 0;
}
