/*
 * tests/tokenizer/test_chat_golden.c - chat rendering against transformers'
 * apply_chat_template(..., add_generation_prompt=True) goldens (golden/chat.jsonl): the text
 * (tokenize=False) and the ids (tokenize=True), for qwen3 (enable_thinking=False) and llama3
 * (the fixtures' own templates), qwen2.5 and chatml (published templates set on the Qwen3
 * fixture), llama2 and mistral (published templates set on the Mistral fixture), and Qwen-1
 * chatml with tiktoken ids. A golden recording an error must be refused by melbo too.
 * Also checks that melbo_chat_detect recognises the fixtures' templates.
 *
 * usage: test_chat_golden FIXTURES_DIR GOLDEN_DIR
 */
#include <cjson/cJSON.h>

#include "common/file.h"
#include "rank/tokenizer/chat.h"
#include "tests/test.h"

static struct melbo_tokenizer *load(const char *fix, const char *gold, const char *name) {
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/%s", !strcmp(name, "qwen1") ? gold : fix, name);
    struct melbo_err err = {0};
    struct melbo_tokenizer *tok = NULL;
    if (melbo_tokenizer_load(dir, &tok, &err)) {
        fprintf(stderr, "load %s: %s\n", dir, err.msg);
        abort();
    }
    return tok;
}

int main(int argc, char **argv) {
    ASSERT(argc == 3);
    const char *fix = argv[1], *gold = argv[2];
    const char *names[] = {"qwen3", "llama3.1", "mistral", "qwen1"};
    struct melbo_tokenizer *toks[4];
    for (int i = 0; i < 4; i++)
        toks[i] = load(fix, gold, names[i]);
    struct melbo_err err = {0};

    /* detection from the fixtures' own templates */
    enum melbo_chat_format f;
    ASSERT_OK(melbo_chat_detect(toks[0], &f, &err));
    ASSERT_EQ(f, MELBO_CHAT_QWEN3);
    ASSERT_OK(melbo_chat_detect(toks[1], &f, &err));
    ASSERT_EQ(f, MELBO_CHAT_LLAMA3);
    ASSERT(melbo_chat_detect(toks[2], &f, &err) == MELBO_EUNSUPPORTED);
    ASSERT_STR_CONTAINS(err.msg, "--chat-format");
    ASSERT(melbo_chat_detect(toks[3], &f, &err) == MELBO_EUNSUPPORTED);
    ASSERT_STR_CONTAINS(err.msg, "--chat-format");
    ASSERT_EQ(melbo_chat_end_of_turn(toks[0], MELBO_CHAT_QWEN3), 151645);
    ASSERT_EQ(melbo_chat_end_of_turn(toks[1], MELBO_CHAT_LLAMA3), 128009);
    ASSERT_EQ(melbo_chat_end_of_turn(toks[2], MELBO_CHAT_MISTRAL), 2);
    ASSERT_EQ(melbo_chat_end_of_turn(toks[3], MELBO_CHAT_CHATML), 151645);

    char path[4096], *buf = NULL;
    size_t len, n_ok = 0, n_err_ok = 0, n_tj = 0, n = 0;
    snprintf(path, sizeof(path), "%s/chat.jsonl", gold);
    ASSERT_OK(melbo_file_read(path, &buf, &len, &err));
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        ASSERT(j);
        n++;
        const char *name = cJSON_GetObjectItem(j, "tok")->valuestring;
        const char *fmt_name = cJSON_GetObjectItem(j, "format")->valuestring;
        struct melbo_tokenizer *tok = NULL;
        for (int i = 0; i < 4; i++)
            if (!strcmp(names[i], name))
                tok = toks[i];
        ASSERT(tok);
        enum melbo_chat_format fmt;
        ASSERT_OK(melbo_chat_format_parse(fmt_name, &fmt, &err));
        const cJSON *msgs = cJSON_GetObjectItem(j, "messages"), *m;
        struct melbo_chat_msg mv[16];
        size_t nm = 0;
        cJSON_ArrayForEach(m, msgs) {
            mv[nm].role = cJSON_GetObjectItem(m, "role")->valuestring;
            mv[nm].content = cJSON_GetObjectItem(m, "content")->valuestring;
            nm++;
        }
        char *text = NULL;
        struct melbo_ids ids = {0};
        int r = melbo_chat_encode(tok, fmt, mv, nm, &text, &ids, &err);
        const cJSON *want_err = cJSON_GetObjectItem(j, "error");
        if (want_err) {
            if (r == 0) {
                fprintf(stderr, "%s/%s conversation %zu: HF refuses (%s) but melbo rendered "
                        "\"%s\"\n", name, fmt_name, n, want_err->valuestring, text);
                test_failures++;
            } else {
                n_err_ok++;
            }
        } else if (r != 0) {
            fprintf(stderr, "%s/%s conversation %zu: melbo error: %s\n", name, fmt_name, n,
                    err.msg);
            test_failures++;
        } else {
            const char *want = cJSON_GetObjectItem(j, "text")->valuestring;
            const cJSON *wids = cJSON_GetObjectItem(j, "ids");
            int same_ids = (int)ids.n == cJSON_GetArraySize(wids);
            for (size_t k = 0; same_ids && k < ids.n; k++)
                same_ids = ids.ids[k] == (int32_t)cJSON_GetArrayItem(wids, (int)k)->valuedouble;
            const cJSON *tj = cJSON_GetObjectItem(j, "ids_tokenizer_json");
            int same_tj = tj && (int)ids.n == cJSON_GetArraySize(tj);
            for (size_t k = 0; same_tj && k < ids.n; k++)
                same_tj = ids.ids[k] == (int32_t)cJSON_GetArrayItem(tj, (int)k)->valuedouble;
            if (!strcmp(text, want) && !same_ids && same_tj) {
                /* transformers 5's rebuilt LlamaTokenizer (Metaspace, no normalizer) differs
                 * from tokenizer.json after a special token followed by a space; melbo
                 * follows tokenizer.json, as PyPI tokenizers does */
                fprintf(stderr, "%s/%s conversation %zu: ids equal tokenizer.json's (PyPI "
                        "tokenizers), not transformers 5's rebuilt Llama pipeline\n", name,
                        fmt_name, n);
                n_tj++;
            } else if (strcmp(text, want) || !same_ids) {
                fprintf(stderr, "%s/%s conversation %zu differs (%s)\n  melbo: %s\n  HF:    %s\n",
                        name, fmt_name, n, strcmp(text, want) ? "text" : "ids", text, want);
                test_failures++;
            } else {
                n_ok++;
            }
        }
        free(text);
        melbo_ids_free(&ids);
        cJSON_Delete(j);
    }
    fprintf(stderr, "chat: %zu/%zu conversations equal (text and ids; %zu refusals), %zu "
            "equal to tokenizer.json where transformers 5 differs\n", n_ok + n_err_ok, n,
            n_err_ok, n_tj);
    free(buf);
    for (int i = 0; i < 4; i++)
        melbo_tokenizer_free(toks[i]);
    return test_exit_code();
}
