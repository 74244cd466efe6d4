/*
 * tests/fuzz/fuzz_chat.c - chat templates (rank/tokenizer/chat.c): the input is
 *   TOKENIZER_CONFIG.JSON "\n@@messages@@\n" ROLE "\t" CONTENT ( "\n" ROLE "\t" CONTENT )*
 * The config (bos/eos tokens, chat_template) goes with a small byte-level tokenizer made here
 * (every byte is a token, plus the special tokens of the templates melbo knows). The template is
 * detected, the messages rendered in the detected format and in every format by name, and
 * rendered-and-encoded, as `--chat-format` and the prompt options do.
 */
#include <assert.h>

#include "options/prompts.h" // defines: MELBO_CHAT_N_FORMATS
#include "rank/tokenizer/chat.h"
#include "tests/fuzz/fuzz.h"

static const char *specials[] = {"<|endoftext|>",
                                 "<|im_start|>",
                                 "<|im_end|>",
                                 "<s>",
                                 "</s>",
                                 "<|begin_of_text|>",
                                 "<|eot_id|>",
                                 "<|start_header_id|>",
                                 "<|end_header_id|>",
                                 "[INST]",
                                 "[/INST]",
                                 "<think>",
                                 "</think>"};
enum { N_SPECIAL = sizeof specials / sizeof specials[0] };

/* GPT-2's bytes_to_unicode: byte b's character in a byte-level vocabulary, as UTF-8. */
static void byte_char(int b, char out[4]) {
    int cp = b, n = 0;
    if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))) {
        for (int k = 0; k < b; k++)
            n += !((k >= 33 && k <= 126) || (k >= 161 && k <= 172) || (k >= 174 && k <= 255));
        cp = 256 + n;
    }
    if (cp < 0x80) {
        out[0] = (char)cp, out[1] = 0;
    } else {
        out[0] = (char)(0xC0 | cp >> 6), out[1] = (char)(0x80 | (cp & 0x3F)), out[2] = 0;
    }
}

/* The tokenizer.json, written once. */
static const char *tokenizer_json(void) {
    static const char *path;
    if (path)
        return path;
    size_t cap = 65536, n = 0;
    char *j = malloc(cap);
    n += (size_t)snprintf(j + n, cap - n, "{\"version\":\"1.0\",\"added_tokens\":[");
    for (int i = 0; i < N_SPECIAL; i++)
        n += (size_t)snprintf(
            j + n, cap - n,
            "%s{\"id\":%d,\"content\":\"%s\",\"single_word\":false,\"lstrip\":false,"
            "\"rstrip\":false,\"normalized\":false,\"special\":true}",
            i ? "," : "", 256 + i, specials[i]);
    n += (size_t)snprintf(j + n, cap - n,
                          "],\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"ByteLevel\","
                          "\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true},"
                          "\"post_processor\":null,\"decoder\":{\"type\":\"ByteLevel\","
                          "\"add_prefix_space\":true,\"trim_offsets\":true,\"use_regex\":true},"
                          "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null,"
                          "\"byte_fallback\":false,\"vocab\":{");
    for (int b = 0; b < 256; b++) {
        char c[4];
        byte_char(b, c);
        n += (size_t)snprintf(j + n, cap - n, "%s\"%s%s\":%d", b ? "," : "",
                              c[0] == '"' || c[0] == '\\' ? "\\" : "", c, b);
    }
    for (int i = 0; i < N_SPECIAL; i++)
        n += (size_t)snprintf(j + n, cap - n, ",\"%s\":%d", specials[i], 256 + i);
    n += (size_t)snprintf(j + n, cap - n, "},\"merges\":[]}}");
    path = fuzz_file("chat_tokenizer.json", j, n);
    static char keep[512];
    snprintf(keep, sizeof keep, "%s", path);
    path = keep;
    free(j);
    return path;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *cfg;
    size_t cfg_n;
    if (!fuzz_split(&data, &size, "\n@@messages@@\n", &cfg, &cfg_n))
        return 0;
    const char *tj = tokenizer_json();
    const char *cpath = fuzz_file("tokenizer_config.json", cfg, cfg_n);
    struct melbo_tokenizer *tok = NULL;
    struct melbo_err err = {0};
    if (melbo_tokenizer_load_files(tj, cpath, &tok, &err) != 0)
        return 0;

    /* the messages: one a line, role TAB content (content may not hold a newline) */
    char *text = fuzz_strndup(data, size);
    struct melbo_chat_msg msgs[16];
    size_t n = 0;
    for (char *line = text, *next; line && n < 16; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        char *tab = strchr(line, '\t');
        if (!tab)
            continue;
        *tab = '\0';
        msgs[n].role = line;
        msgs[n++].content = tab + 1;
    }
    enum melbo_chat_format fmt;
    char *out = NULL;
    if (melbo_chat_detect(tok, &fmt, &err) == 0) {
        if (melbo_chat_render(tok, fmt, msgs, n, &out, &err) == 0)
            assert(out != NULL);
        free(out);
        out = NULL;
        struct melbo_ids ids = {0};
        melbo_chat_encode(tok, fmt, msgs, n, &out, &ids, &err);
        free(out);
        out = NULL;
        melbo_ids_free(&ids);
    }
    for (int f = MELBO_CHAT_RAW; f < MELBO_CHAT_N_FORMATS; f++) {
        enum melbo_chat_format g;
        assert(melbo_chat_format_parse(melbo_chat_format_name((enum melbo_chat_format)f), &g,
                                       &err) == 0 &&
               (int)g == f);
        if (melbo_chat_render(tok, g, msgs, n, &out, &err) == 0)
            free(out);
        out = NULL;
        melbo_chat_end_of_turn(tok, g);
    }
    free(text);
    melbo_tokenizer_free(tok);
    return 0;
}
