/*
 * bench/tokenizer/bench_tokenizer.c - encode throughput of melbo's tokenizer.
 *
 * usage: bench_tokenizer TOKENIZER_DIR TEXT_FILE [SECONDS]
 * The text file holds one document per line (JSON-free, lines split at '\n'); every line is
 * encoded separately, as the HF side (bench_tokenizer.py) does with encode_batch on one
 * thread. The whole file is encoded repeatedly for at least SECONDS (default 3) after one
 * warm-up pass; prints "melbo MB/s <x> tokens <n>" on stdout.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/file.h"
#include "rank/tokenizer/tokenizer.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Encodes every line once; returns the number of tokens. */
static size_t pass(struct melbo_tokenizer *tok, const char *text, size_t len,
                   struct melbo_ids *ids) {
    size_t total = 0;
    struct melbo_err err = {0};
    for (size_t pos = 0; pos < len;) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;
        ids->n = 0;
        if (melbo_tokenizer_encode(tok, text + pos, end - pos, 0, ids, &err)) {
            fprintf(stderr, "encode: %s\n", err.msg);
            exit(1);
        }
        total += ids->n;
        pos = end + 1;
    }
    return total;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: bench_tokenizer TOKENIZER_DIR TEXT_FILE [SECONDS]\n");
        return 2;
    }
    double secs = argc > 3 ? atof(argv[3]) : 3.0;
    struct melbo_err err = {0};
    struct melbo_tokenizer *tok = NULL;
    char *text = NULL;
    size_t len = 0;
    if (melbo_tokenizer_load(argv[1], &tok, &err) || melbo_file_read(argv[2], &text, &len, &err)) {
        fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
        return 1;
    }
    struct melbo_ids ids = {0};
    size_t tokens = pass(tok, text, len, &ids); // warm-up (and the word cache)
    int reps = 0;
    double t0 = now(), t;
    do {
        pass(tok, text, len, &ids);
        reps++;
        t = now() - t0;
    } while (t < secs);
    printf("melbo MB/s %.2f tokens %zu\n", (double)len * reps / t / 1e6, tokens);
    melbo_ids_free(&ids);
    free(text);
    melbo_tokenizer_free(tok);
    return 0;
}
