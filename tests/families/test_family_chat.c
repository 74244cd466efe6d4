/*
 * tests/families/test_family_chat.c - the chat formats of the issue-21 families (gemma, phi3,
 * phi4) against transformers' apply_chat_template(..., add_generation_prompt=True) on the
 * published templates (tests/golden/make_family_chat_goldens.py): the text (tokenize=False) and
 * the ids (tokenize=True) of every conversation (user only, system + user, multi-turn, contents
 * to trim, non-alternating roles); where the template raises, melbo must refuse. Also: the
 * format each fixture's template is detected as, and the end-of-turn token.
 *
 * usage: test_family_chat GOLDEN_DIR
 */
#include <cjson/cJSON.h>

#include "common/file.h"
#include "rank/tokenizer/chat.h"
#include "tests/test.h"

static const char *const names[] = {"gemma2", "gemma3", "phi3", "phi4"};
static const enum melbo_chat_format formats[] = {MELBO_CHAT_GEMMA, MELBO_CHAT_GEMMA,
                                                 MELBO_CHAT_PHI3, MELBO_CHAT_PHI4};
static const char *const end_tokens[] = {"<end_of_turn>", "<end_of_turn>", "<|end|>",
                                         "<|im_end|>"};

int main(int argc, char **argv) {
    ASSERT(argc == 2);
    struct melbo_err err = {0};
    struct melbo_tokenizer *toks[4];
    for (int i = 0; i < 4; i++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/chat/%s", argv[1], names[i]);
        if (melbo_tokenizer_load(dir, &toks[i], &err)) {
            fprintf(stderr, "load %s: %s\n", dir, err.msg);
            return 1;
        }
        enum melbo_chat_format f;
        ASSERT_OK(melbo_chat_detect(toks[i], &f, &err));
        ASSERT_EQ(f, formats[i]);
        ASSERT_EQ(melbo_chat_end_of_turn(toks[i], f), melbo_tokenizer_token_id(toks[i], end_tokens[i]));
        ASSERT(melbo_chat_end_of_turn(toks[i], f) >= 256);
        fprintf(stderr, "ok   %s: template detected as %s, end of turn %s\n", names[i],
                melbo_chat_format_name(f), end_tokens[i]);
    }
    char path[4096], *buf = NULL;
    size_t len, n_ok = 0, n_err_ok = 0;
    snprintf(path, sizeof path, "%s/data/chat_families.jsonl", argv[1]);
    ASSERT_OK(melbo_file_read(path, &buf, &len, &err));
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        ASSERT(j);
        const char *name = cJSON_GetObjectItem(j, "fixture")->valuestring;
        int cs = (int)cJSON_GetObjectItem(j, "case")->valuedouble, k = 0;
        while (k < 4 && strcmp(names[k], name))
            k++;
        ASSERT(k < 4);
        const cJSON *m;
        struct melbo_chat_msg mv[16];
        size_t nm = 0;
        cJSON_ArrayForEach(m, cJSON_GetObjectItem(j, "messages")) {
            mv[nm].role = cJSON_GetObjectItem(m, "role")->valuestring;
            mv[nm].content = cJSON_GetObjectItem(m, "content")->valuestring;
            nm++;
        }
        char *text = NULL;
        struct melbo_ids ids = {0};
        int r = melbo_chat_encode(toks[k], formats[k], mv, nm, &text, &ids, &err);
        const cJSON *want_err = cJSON_GetObjectItem(j, "error");
        if (want_err) {
            if (r == 0) {
                fprintf(stderr, "FAIL %s case %d: the template raises (%s) but melbo rendered "
                                "\"%s\"\n", name, cs, want_err->valuestring, text);
                test_failures++;
            } else {
                fprintf(stderr, "ok   %s case %d refused like the template (%s): %s\n", name, cs,
                        want_err->valuestring, err.msg);
                n_err_ok++;
            }
        } else if (r != 0) {
            fprintf(stderr, "FAIL %s case %d: melbo error: %s\n", name, cs, err.msg);
            test_failures++;
        } else {
            const char *want = cJSON_GetObjectItem(j, "text")->valuestring;
            const cJSON *wids = cJSON_GetObjectItem(j, "ids");
            int same_ids = (int)ids.n == cJSON_GetArraySize(wids);
            for (size_t q = 0; same_ids && q < ids.n; q++)
                same_ids = ids.ids[q] == (int32_t)cJSON_GetArrayItem(wids, (int)q)->valuedouble;
            if (strcmp(text, want) || !same_ids) {
                fprintf(stderr, "FAIL %s case %d differs (%s)\n  melbo: %s\n  HF:    %s\n", name,
                        cs, strcmp(text, want) ? "text" : "ids", text, want);
                test_failures++;
            } else {
                n_ok++;
            }
        }
        free(text);
        melbo_ids_free(&ids);
        cJSON_Delete(j);
    }
    fprintf(stderr, "%-4s %zu renderings equal to apply_chat_template (text and ids), %zu "
                    "refusals where the template raises\n",
            test_failures ? "FAIL" : "ok", n_ok, n_err_ok);
    free(buf);
    for (int i = 0; i < 4; i++)
        melbo_tokenizer_free(toks[i]);
    return test_exit_code();
}
