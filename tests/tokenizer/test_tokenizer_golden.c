/*
 * tests/tokenizer/test_tokenizer_golden.c - melbo's encoder and decoder against the goldens
 * that make_tokenizer_goldens.py wrote from PyPI tokenizers (Qwen3, Llama-3.1, Mistral
 * fixtures) and tiktoken (the Qwen-1-format test vocabulary).
 *
 * usage: test_tokenizer_golden FIXTURES_DIR GOLDEN_DIR NAME
 *   NAME is qwen3, llama3.1, mistral (FIXTURES_DIR/NAME) or qwen1 (GOLDEN_DIR/qwen1).
 * For every golden string: ids equal exactly; decode equals HF's decode; the first 20 also
 * with add_special_tokens=True; and the streamed decode concatenates to the full decode.
 * Every mismatch is printed with the string, and counted.
 */
#include <cjson/cJSON.h>

#include "common/file.h"
#include "rank/tokenizer/tokenizer.h"
#include "tests/test.h"
#include "tests/tokenizer/golden_jsonl.h"

static void print_ids(const char *what, const int32_t *ids, size_t n) {
    fprintf(stderr, "  %s:", what);
    for (size_t i = 0; i < n && i < 40; i++)
        fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, n > 40 ? " ...\n" : "\n");
}

int main(int argc, char **argv) {
    ASSERT(argc == 4);
    const char *fix = argv[1], *gold = argv[2], *name = argv[3];
    char dir[4096], path[4096];
    if (!strcmp(name, "qwen1"))
        snprintf(dir, sizeof(dir), "%s/qwen1", gold);
    else
        snprintf(dir, sizeof(dir), "%s/%s", fix, name);
    struct melbo_err err = {0};
    struct melbo_tokenizer *tok = NULL;
    if (melbo_tokenizer_load(dir, &tok, &err)) {
        fprintf(stderr, "load %s: %s\n", dir, err.msg);
        return 1;
    }
    size_t ns, ng;
    snprintf(path, sizeof(path), "%s/strings.jsonl", gold);
    cJSON **strs = read_jsonl(path, &ns);
    snprintf(path, sizeof(path), "%s/%s.jsonl", gold, name);
    cJSON **gl = read_jsonl(path, &ng);
    ASSERT_EQ(ns, ng);
    size_t id_ok = 0, dec_ok = 0, sp_checked = 0;
    for (size_t i = 0; i < ns; i++) {
        char *text = NULL;
        size_t len;
        const cJSON *s = cJSON_GetObjectItem(strs[i], "s");
        if (s) {
            text = strdup(s->valuestring);
            len = strlen(text);
        } else {
            snprintf(path, sizeof(path), "%s/%s", gold,
                     cJSON_GetObjectItem(strs[i], "file")->valuestring);
            ASSERT_OK(melbo_file_read(path, &text, &len, &err));
        }
        struct melbo_ids ids = {0};
        ASSERT_OK(melbo_tokenizer_encode(tok, text, len, 0, &ids, &err));
        const cJSON *want = cJSON_GetObjectItem(gl[i], "ids");
        if (ids_equal(&ids, want)) {
            id_ok++;
        } else {
            fprintf(stderr, "%s: ids differ for string %zu \"%.200s\"\n", name, i, text);
            print_ids("melbo", ids.ids, ids.n);
            struct melbo_ids w = {0};
            const cJSON *x;
            cJSON_ArrayForEach(x, want) melbo_ids_push(&w, (int32_t)x->valuedouble);
            print_ids("HF   ", w.ids, w.n);
            melbo_ids_free(&w);
            test_failures++;
        }
        /* decode HF's ids, so decode is checked even where encode differed */
        struct melbo_ids hf = {0};
        const cJSON *x;
        cJSON_ArrayForEach(x, want) melbo_ids_push(&hf, (int32_t)x->valuedouble);
        char *dec = NULL;
        size_t dlen;
        ASSERT_OK(melbo_tokenizer_decode(tok, hf.ids, hf.n, 0, &dec, &dlen, &err));
        const char *wdec = cJSON_GetObjectItem(gl[i], "dec")->valuestring;
        if (strlen(wdec) == dlen && !memcmp(dec, wdec, dlen)) {
            dec_ok++;
        } else {
            fprintf(stderr, "%s: decode differs for string %zu\n  melbo: \"%.200s\"\n  HF:    "
                    "\"%.200s\"\n", name, i, dec, wdec);
            test_failures++;
        }
        /* streaming decode: concatenation equals the full decode */
        struct melbo_detok_stream *st = melbo_detok_stream_new(tok, 0);
        char *cat = calloc(1, dlen * 2 + 64);
        size_t clen = 0;
        for (size_t k = 0; k < hf.n; k++) {
            const char *piece;
            size_t pl;
            ASSERT_OK(melbo_detok_stream_feed(st, hf.ids[k], &piece, &pl, &err));
            ASSERT(clen + pl <= dlen * 2 + 32);
            memcpy(cat + clen, piece, pl);
            clen += pl;
        }
        size_t pl;
        const char *piece = melbo_detok_stream_finish(st, &pl);
        memcpy(cat + clen, piece, pl);
        clen += pl;
        if (strcmp(name, "mistral") != 0 || !strstr(dec, "\xEF\xBF\xBD")) {
            if (clen != dlen || memcmp(cat, dec, dlen)) {
                fprintf(stderr, "%s: streamed decode differs for string %zu\n", name, i);
                test_failures++;
            }
        }
        melbo_detok_stream_free(st);
        free(cat);
        const cJSON *wsp = cJSON_GetObjectItem(gl[i], "ids_sp");
        if (wsp) {
            struct melbo_ids sp = {0};
            ASSERT_OK(melbo_tokenizer_encode(tok, text, len, MELBO_TOK_ADD_SPECIAL, &sp, &err));
            CHECK(ids_equal(&sp, wsp));
            sp_checked++;
            melbo_ids_free(&sp);
        }
        melbo_ids_free(&hf);
        melbo_ids_free(&ids);
        free(dec);
        free(text);
    }
    fprintf(stderr, "%s: %zu/%zu strings with equal ids, %zu/%zu equal decodes, %zu with "
            "special tokens added\n", name, id_ok, ns, dec_ok, ns, sp_checked);
    for (size_t i = 0; i < ns; i++) {
        cJSON_Delete(strs[i]);
        cJSON_Delete(gl[i]);
    }
    free(strs);
    free(gl);
    melbo_tokenizer_free(tok);
    return test_exit_code();
}
