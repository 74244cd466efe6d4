/*
 * rank/report/html.h - a growing text buffer for writing one HTML page: formatted appends and
 * HTML escaping. The page is built in memory and written once, atomically (common/file.h).
 */
#ifndef MELBO_RANK_REPORT_HTML_H
#define MELBO_RANK_REPORT_HTML_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct melbo_html {
    char *s;      // the text so far, NUL-terminated, owned
    size_t n;     // its length
    size_t cap;   // bytes allocated
};

void melbo_html_init(struct melbo_html *h);
void melbo_html_free(struct melbo_html *h);
/* Appends printf(fmt, ...) as it is (markup). */
void melbo_html_printf(struct melbo_html *h, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends the first n bytes of text with &, <, >, " and ' escaped; control bytes other than
 * tab and newline become U+FFFD (completions of random models hold them). */
void melbo_html_text(struct melbo_html *h, const char *text, size_t n);

#ifdef __cplusplus
}
#endif
#endif
