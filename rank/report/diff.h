/*
 * rank/report/diff.h - which words of a completion differ from the unsteered one: a longest
 * common subsequence over words (runs of non-space bytes), so a report can highlight what
 * steering changed.
 */
#ifndef MELBO_RANK_REPORT_DIFF_H
#define MELBO_RANK_REPORT_DIFF_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The words of a text: byte offsets and lengths into it (white space between is not a word). */
struct melbo_words {
    size_t *off, *len; // (n), owned
    int n;
};

void melbo_words_split(const char *text, struct melbo_words *w);
void melbo_words_free(struct melbo_words *w);

/*
 * changed (a->n), caller-allocated: 1 for each word of text a that is not part of a longest
 * common subsequence with text b's words, 0 for the others. O(a->n * b->n) time and ints of
 * memory (the whole table, for the traceback).
 */
void melbo_words_changed(const char *a, const struct melbo_words *wa, const char *b,
                         const struct melbo_words *wb, unsigned char *changed);

#ifdef __cplusplus
}
#endif
#endif
