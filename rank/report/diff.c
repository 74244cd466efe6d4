/* rank/report/diff.c - word differences (rank/report/diff.h). */
#include "rank/report/diff.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"

void melbo_words_split(const char *text, struct melbo_words *w) {
    memset(w, 0, sizeof *w);
    int cap = 0;
    for (size_t i = 0; text[i];) {
        while (text[i] && isspace((unsigned char)text[i]))
            i++;
        if (!text[i])
            break;
        size_t s = i;
        while (text[i] && !isspace((unsigned char)text[i]))
            i++;
        if (w->n == cap) {
            cap = cap ? 2 * cap : 64;
            w->off = melbo_xrealloc(w->off, sizeof(size_t) * (size_t)cap);
            w->len = melbo_xrealloc(w->len, sizeof(size_t) * (size_t)cap);
        }
        w->off[w->n] = s;
        w->len[w->n++] = i - s;
    }
}

void melbo_words_free(struct melbo_words *w) {
    free(w->off);
    free(w->len);
    memset(w, 0, sizeof *w);
}

static int same_word(const char *a, const struct melbo_words *wa, int i, const char *b,
                     const struct melbo_words *wb, int j) {
    return wa->len[i] == wb->len[j] && memcmp(a + wa->off[i], b + wb->off[j], wa->len[i]) == 0;
}

void melbo_words_changed(const char *a, const struct melbo_words *wa, const char *b,
                         const struct melbo_words *wb, unsigned char *changed) {
    int n = wa->n, m = wb->n;
    /* L[i][j] = LCS of a's words i.. and b's words j.., kept as a full table of small ints */
    int *L = melbo_xcalloc((size_t)(n + 1) * (size_t)(m + 1), sizeof *L);
#define AT(i, j) L[(size_t)(i) * (size_t)(m + 1) + (size_t)(j)]
    for (int i = n - 1; i >= 0; i--)
        for (int j = m - 1; j >= 0; j--)
            AT(i, j) = same_word(a, wa, i, b, wb, j) ? AT(i + 1, j + 1) + 1
                       : AT(i + 1, j) > AT(i, j + 1) ? AT(i + 1, j)
                                                     : AT(i, j + 1);
    int i = 0, j = 0;
    for (int k = 0; k < n; k++)
        changed[k] = 1;
    while (i < n && j < m) {
        if (same_word(a, wa, i, b, wb, j)) {
            changed[i] = 0;
            i++, j++;
        } else if (AT(i + 1, j) >= AT(i, j + 1)) {
            i++;
        } else {
            j++;
        }
    }
#undef AT
    free(L);
}
