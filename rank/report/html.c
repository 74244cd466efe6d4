/* rank/report/html.c - the page buffer (rank/report/html.h). */
#include "rank/report/html.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"

void melbo_html_init(struct melbo_html *h) {
    h->cap = 4096;
    h->s = melbo_xmalloc(h->cap);
    h->s[0] = '\0';
    h->n = 0;
}

void melbo_html_free(struct melbo_html *h) {
    free(h->s);
    memset(h, 0, sizeof *h);
}

static void reserve(struct melbo_html *h, size_t more) {
    if (h->n + more + 1 <= h->cap)
        return;
    while (h->n + more + 1 > h->cap)
        h->cap *= 2;
    h->s = melbo_xrealloc(h->s, h->cap);
}

void melbo_html_printf(struct melbo_html *h, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (len <= 0)
        return;
    reserve(h, (size_t)len);
    va_start(ap, fmt);
    vsnprintf(h->s + h->n, (size_t)len + 1, fmt, ap);
    va_end(ap);
    h->n += (size_t)len;
}

void melbo_html_text(struct melbo_html *h, const char *text, size_t n) {
    reserve(h, n * 6);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[i];
        const char *rep = c == '&'    ? "&amp;"
                          : c == '<'  ? "&lt;"
                          : c == '>'  ? "&gt;"
                          : c == '"'  ? "&quot;"
                          : c == '\'' ? "&#39;"
                          : (c < 0x20 && c != '\n' && c != '\t') || c == 0x7f ? "\xef\xbf\xbd"
                                                                             : NULL;
        if (rep) {
            size_t l = strlen(rep);
            memcpy(h->s + h->n, rep, l);
            h->n += l;
        } else {
            h->s[h->n++] = (char)c;
        }
    }
    h->s[h->n] = '\0';
}
