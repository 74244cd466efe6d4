/*
 * tests/tokenizer/test_tokenizer_errors.c - bad input gives clear errors, plus the smaller
 * contracts the goldens do not reach: streaming decode holding back partial characters,
 * special-token lookups, the prompt options and the tokenize/detokenize exit codes.
 *
 * usage: test_tokenizer_errors FIXTURES_DIR GOLDEN_DIR
 */
#include <sys/stat.h>
#include <unistd.h>

#include "rank/tokenizer/chat.h"
#include "rank/tokenizer/cmd_tokenize.h"
#include "rank/tokenizer/prompt.h"
#include "tests/test.h"

static char tmpdir[256];

/* Writes a file under the temporary directory; returns its path (static buffer per call). */
static const char *write_tmp(const char *sub, const char *name, const char *text) {
    static char path[1024];
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/%s", tmpdir, sub);
    mkdir(dir, 0755);
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    ASSERT(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static const char *sub_dir(const char *sub) {
    static char dir[512];
    snprintf(dir, sizeof(dir), "%s/%s", tmpdir, sub);
    return dir;
}

static struct melbo_tokenizer *load(const char *dir) {
    struct melbo_err err = {0};
    struct melbo_tokenizer *tok = NULL;
    if (melbo_tokenizer_load(dir, &tok, &err)) {
        fprintf(stderr, "load %s: %s\n", dir, err.msg);
        abort();
    }
    return tok;
}

static int run_cmd(int (*fn)(int, char **), const char **args) {
    char *argv[32];
    int argc = 0;
    while (args[argc]) {
        argv[argc] = (char *)args[argc];
        argc++;
    }
    fflush(stdout);
    return fn(argc, argv);
}

static void test_load_errors(void) {
    struct melbo_err err = {0};
    struct melbo_tokenizer *tok = NULL;
    /* missing tokenizer file */
    mkdir(sub_dir("empty"), 0755);
    ASSERT_EQ(melbo_tokenizer_load(sub_dir("empty"), &tok, &err), MELBO_ENOENT);
    ASSERT(tok == NULL);
    ASSERT_STR_CONTAINS(err.msg, "tokenizer.json");
    /* unsupported model type */
    write_tmp("wordpiece", "tokenizer.json",
              "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}");
    ASSERT_EQ(melbo_tokenizer_load(sub_dir("wordpiece"), &tok, &err), MELBO_EUNSUPPORTED);
    ASSERT_STR_CONTAINS(err.msg, "WordPiece");
    ASSERT_STR_CONTAINS(err.msg, "tokenizer.json");
    /* unsupported pre-tokenizer type */
    write_tmp("whitespace", "tokenizer.json",
              "{\"pre_tokenizer\": {\"type\": \"Whitespace\"}, \"model\": {\"type\": \"BPE\", "
              "\"vocab\": {\"a\": 0}, \"merges\": []}}");
    ASSERT_EQ(melbo_tokenizer_load(sub_dir("whitespace"), &tok, &err), MELBO_EUNSUPPORTED);
    ASSERT_STR_CONTAINS(err.msg, "pre-tokenizer type \"Whitespace\"");
    /* malformed JSON and a merge naming an unknown token */
    write_tmp("badjson", "tokenizer.json", "{\"model\": ");
    ASSERT_EQ(melbo_tokenizer_load(sub_dir("badjson"), &tok, &err), MELBO_EFORMAT);
    write_tmp("badmerge", "tokenizer.json",
              "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, "
              "\"merges\": [\"a b\"]}}");
    ASSERT_EQ(melbo_tokenizer_load(sub_dir("badmerge"), &tok, &err), MELBO_EFORMAT);
    ASSERT_STR_CONTAINS(err.msg, "merge 0");
    /* a tiny valid SentencePiece-style model, with an unknown chat template */
    write_tmp("tiny", "tokenizer.json",
              "{\"added_tokens\": [{\"id\": 3, \"content\": \"<s>\", \"special\": true}],"
              " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2, "
              "\"<s>\": 3}, \"merges\": [[\"a\", \"b\"]]}}");
    write_tmp("tiny", "tokenizer_config.json",
              "{\"bos_token\": {\"content\": \"<s>\"}, \"chat_template\": \"{{ foo }}\"}");
    tok = load(sub_dir("tiny"));
    struct melbo_ids ids = {0};
    ASSERT_OK(melbo_tokenizer_encode(tok, "abab<s>a", 8, 0, &ids, &err));
    ASSERT_EQ(ids.n, 4);
    ASSERT_EQ(ids.ids[0], 2);
    ASSERT_EQ(ids.ids[2], 3);
    ASSERT_EQ(melbo_tokenizer_bos_id(tok), 3);
    enum melbo_chat_format f;
    ASSERT_EQ(melbo_chat_detect(tok, &f, &err), MELBO_EUNSUPPORTED);
    ASSERT_STR_CONTAINS(err.msg, "--chat-format");
    melbo_ids_free(&ids);
    melbo_tokenizer_free(tok);
}

static void test_encode_decode_errors(struct melbo_tokenizer *qwen) {
    struct melbo_err err = {0};
    struct melbo_ids ids = {0};
    ASSERT_EQ(melbo_tokenizer_encode(qwen, "abc\xC3(x", 6, 0, &ids, &err), MELBO_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "byte offset 3");
    ASSERT_EQ(ids.n, 0);
    ASSERT_EQ(melbo_tokenizer_encode(qwen, "\xED\xA0\x80", 3, 0, &ids, &err), MELBO_EINVAL);
    int32_t bad[2] = {1, 999999};
    char *out = NULL;
    ASSERT_EQ(melbo_tokenizer_decode(qwen, bad, 2, 0, &out, NULL, &err), MELBO_ERANGE);
    ASSERT_STR_CONTAINS(err.msg, "position 1");
    /* the prompt path reports the bad prompt */
    struct melbo_prompt_opts o = {0};
    struct melbo_prompt_list l;
    ASSERT_EQ(melbo_prompt_opts_parse_one(&o, "--raw-prompt", "ok \xFF", &err), 1);
    ASSERT_EQ(melbo_prompt_opts_render(&o, qwen, &l, &err), MELBO_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "--raw-prompt 1");
    ASSERT_STR_CONTAINS(err.msg, "UTF-8");
    melbo_prompt_opts_free(&o);
}

static void test_lookups(struct melbo_tokenizer *qwen, struct melbo_tokenizer *llama,
                         struct melbo_tokenizer *mistral) {
    ASSERT_EQ(melbo_tokenizer_token_id(qwen, "<|im_end|>"), 151645);
    ASSERT_EQ(melbo_tokenizer_token_id(qwen, "<|endoftext|>"), 151643);
    ASSERT_EQ(melbo_tokenizer_eos_id(qwen), 151645);
    ASSERT_EQ(melbo_tokenizer_bos_id(qwen), -1);
    int32_t the = melbo_tokenizer_token_id(qwen, "\xC4\xA0the"); // "Ġthe"
    ASSERT(the > 0);
    ASSERT(!strcmp(melbo_tokenizer_token_str(qwen, the), "\xC4\xA0the"));
    ASSERT(melbo_tokenizer_is_special(qwen, 151645));
    ASSERT(!melbo_tokenizer_is_special(qwen, the));
    ASSERT_EQ(melbo_tokenizer_token_id(qwen, "no such token at all"), -1);
    ASSERT_EQ(melbo_tokenizer_bos_id(llama), 128000);
    ASSERT_EQ(melbo_tokenizer_token_id(llama, "<|eot_id|>"), 128009);
    ASSERT_EQ(melbo_tokenizer_bos_id(mistral), 1);
    ASSERT_EQ(melbo_tokenizer_eos_id(mistral), 2);
    ASSERT(!strcmp(melbo_tokenizer_kind(mistral), "bpe-sentencepiece"));
    ASSERT(melbo_tokenizer_n_vocab(llama) == 128256);
}

/* Streaming decode: a character split over byte-level tokens is held back until complete. */
static void test_stream(struct melbo_tokenizer *llama) {
    struct melbo_err err = {0};
    struct melbo_ids ids = {0};
    const char *s = "\xC3\xBF\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD ok"; // ÿ👍🏽 ok
    ASSERT_OK(melbo_tokenizer_encode(llama, s, strlen(s), 0, &ids, &err));
    ASSERT(ids.n >= 6);
    struct melbo_detok_stream *st = melbo_detok_stream_new(llama, 0);
    char cat[256] = {0};
    size_t held = 0;
    for (size_t i = 0; i < ids.n; i++) {
        const char *t;
        size_t n;
        ASSERT_OK(melbo_detok_stream_feed(st, ids.ids[i], &t, &n, &err));
        /* every piece handed out is whole UTF-8 characters */
        for (size_t k = 0; k < n; k++)
            ASSERT((unsigned char)t[k] != 0xEF || (unsigned char)t[k + 1] != 0xBF);
        held += n == 0;
        strncat(cat, t, n);
    }
    size_t n;
    const char *rest = melbo_detok_stream_finish(st, &n);
    ASSERT_EQ(n, 0);
    (void)rest;
    ASSERT(!strcmp(cat, s));
    ASSERT(held >= 2); // the first byte of ÿ and of each emoji came alone
    /* an unfinished character at the end comes out as U+FFFD */
    const char *t;
    ASSERT_OK(melbo_detok_stream_feed(st, ids.ids[0], &t, &n, &err));
    ASSERT_EQ(n, 0);
    rest = melbo_detok_stream_finish(st, &n);
    ASSERT(n == 3 && !memcmp(rest, "\xEF\xBF\xBD", 3));
    melbo_detok_stream_free(st);
    melbo_ids_free(&ids);
}

static void test_prompt_opts(struct melbo_tokenizer *qwen, struct melbo_tokenizer *mistral) {
    struct melbo_err err = {0};
    struct melbo_prompt_opts o = {0};
    const char *jsonl = write_tmp("prompts", "p.jsonl",
                                  "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"},"
                                  " {\"role\": \"assistant\", \"content\": \"Yo\"},"
                                  " {\"role\": \"user\", \"content\": \"Again\"}]}\n\n"
                                  "{\"text\": \"raw text\"}\n{\"prompt\": \"templated\"}\n");
    ASSERT_EQ(melbo_prompt_opts_parse_one(&o, "--model", "x", &err), 0);
    ASSERT_EQ(melbo_prompt_opts_parse_one(&o, "--prompt", "first", &err), 1);
    ASSERT_EQ(melbo_prompt_opts_parse_one(&o, "--prompts", jsonl, &err), 1);
    ASSERT_EQ(melbo_prompt_opts_parse_one(&o, "--raw-prompt", "last", &err), 1);
    ASSERT_EQ(melbo_prompt_opts_parse_one(&o, "--system", "Sys.", &err), 1);
    ASSERT_EQ(melbo_prompt_opts_parse_one(&o, "--system", "again", &err), MELBO_EINVAL);
    ASSERT_EQ(melbo_prompt_opts_parse_one(&o, "--chat-format", "vicuna", &err), MELBO_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "unknown --chat-format \"vicuna\"");
    ASSERT_EQ(melbo_prompt_opts_parse_one(&o, "--prompt", NULL, &err), MELBO_EINVAL);
    ASSERT_EQ(o.n, 5);
    struct melbo_prompt_list l;
    ASSERT_OK(melbo_prompt_opts_render(&o, qwen, &l, &err));
    ASSERT_EQ(l.n, 5);
    ASSERT_EQ(l.format, MELBO_CHAT_QWEN3);
    ASSERT_EQ(l.end_of_turn, 151645);
    ASSERT(!strcmp(l.p[0].text, "<|im_start|>system\nSys.<|im_end|>\n<|im_start|>user\nfirst"
                                "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"));
    ASSERT_STR_CONTAINS(l.p[1].text, "<|im_start|>user\nAgain<|im_end|>\n");
    ASSERT(!strstr(l.p[1].text, "Sys."));
    ASSERT(!strcmp(l.p[2].text, "raw text"));
    ASSERT_STR_CONTAINS(l.p[3].text, "Sys.<|im_end|>\n<|im_start|>user\ntemplated");
    ASSERT(!strcmp(l.p[4].text, "last"));
    ASSERT_EQ(l.p[0].ids.ids[0], 151644);
    melbo_prompt_list_free(&l);
    /* mistral has no system message: the --prompt with --system is refused */
    ASSERT_EQ(melbo_prompt_opts_parse_one(&o, "--chat-format", "mistral", &err), 1);
    ASSERT_EQ(melbo_prompt_opts_render(&o, mistral, &l, &err), MELBO_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "--prompt 1");
    ASSERT_STR_CONTAINS(err.msg, "system");
    melbo_prompt_opts_free(&o);
    /* a bad line names file:line */
    jsonl = write_tmp("prompts", "bad.jsonl", "{\"text\": \"ok\"}\n{\"msgs\": 1}\n");
    ASSERT_EQ(melbo_prompt_opts_parse_one(&o, "--prompts", jsonl, &err), MELBO_EFORMAT);
    ASSERT_STR_CONTAINS(err.msg, "bad.jsonl:2");
    melbo_prompt_opts_free(&o);
    /* a raw prompt on a Mistral model gets the BOS, as HF tokenizer(text) does */
    ASSERT_EQ(melbo_prompt_opts_parse_one(&o, "--raw-prompt", "Hello", &err), 1);
    ASSERT_OK(melbo_prompt_opts_render(&o, mistral, &l, &err));
    ASSERT_EQ(l.p[0].ids.n, 2);
    ASSERT_EQ(l.p[0].ids.ids[0], 1);
    melbo_prompt_list_free(&l);
    melbo_prompt_opts_free(&o);
}

static void test_commands(const char *fix) {
    char qdir[1024];
    snprintf(qdir, sizeof(qdir), "%s/qwen3", fix);
    const char *a0[] = {"tokenize", NULL};
    ASSERT_EQ(run_cmd(melbo_cmd_tokenize, a0), 2);
    const char *a1[] = {"tokenize", "--model", qdir, "--bogus", NULL};
    ASSERT_EQ(run_cmd(melbo_cmd_tokenize, a1), 2);
    const char *a2[] = {"tokenize", "--model", qdir, "--chat-format", "vicuna", "--prompt", "x",
                        NULL};
    ASSERT_EQ(run_cmd(melbo_cmd_tokenize, a2), 2);
    const char *a3[] = {"tokenize", "--model", "/nonexistent/model", "--prompt", "x", NULL};
    ASSERT_EQ(run_cmd(melbo_cmd_tokenize, a3), 1);
    const char *a4[] = {"tokenize", "--tokenizer", qdir, "--prompt", "Hi", "--json", NULL};
    ASSERT_EQ(run_cmd(melbo_cmd_tokenize, a4), 0);
    const char *a5[] = {"tokenize", "--model=" , NULL};
    ASSERT_EQ(run_cmd(melbo_cmd_tokenize, a5), 2);
    const char *d0[] = {"detokenize", "--model", qdir, "9707,", "1879", NULL};
    ASSERT_EQ(run_cmd(melbo_cmd_detokenize, d0), 0);
    const char *d1[] = {"detokenize", "--model", qdir, "abc", NULL};
    ASSERT_EQ(run_cmd(melbo_cmd_detokenize, d1), 2);
    const char *d2[] = {"detokenize", "--model", qdir, "[99999999]", NULL};
    ASSERT_EQ(run_cmd(melbo_cmd_detokenize, d2), 1);
}

int main(int argc, char **argv) {
    ASSERT(argc == 3);
    const char *fix = argv[1];
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/melbo_tok_test_%ld", (long)getpid());
    mkdir(tmpdir, 0755);
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s/qwen3", fix);
    struct melbo_tokenizer *qwen = load(dir);
    snprintf(dir, sizeof(dir), "%s/llama3.1", fix);
    struct melbo_tokenizer *llama = load(dir);
    snprintf(dir, sizeof(dir), "%s/mistral", fix);
    struct melbo_tokenizer *mistral = load(dir);

    test_load_errors();
    test_encode_decode_errors(qwen);
    test_lookups(qwen, llama, mistral);
    test_stream(llama);
    test_prompt_opts(qwen, mistral);
    test_commands(fix);

    melbo_tokenizer_free(qwen);
    melbo_tokenizer_free(llama);
    melbo_tokenizer_free(mistral);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    fprintf(stderr, "tokenizer errors: all checks passed\n");
    return test_exit_code();
}
