/* tests/unit/test_utf8.c - melbo_utf8_sanitize (common/utf8.h): valid text unchanged, every
 * malformed byte one U+FFFD, and a full buffer cut between characters. */
#include <stdio.h>
#include <string.h>

#include "common/utf8.h"
#include "tests/test.h"

static void expect(const char *in, const char *want) {
    char out[64];
    melbo_utf8_sanitize(out, sizeof out, in);
    if (strcmp(out, want) != 0)
        TEST_FAIL_("sanitize(\"%s\") gave \"%s\", expected \"%s\"", in, out, want);
}

int main(void) {
    expect("plain ascii", "plain ascii");
    expect("caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x98\x80");
    expect("a\xffz", "a\xef\xbf\xbdz");                   /* not a lead byte */
    expect("\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd");        /* overlong '/' */
    expect("\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"); /* a surrogate */
    expect("\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"); /* > U+10FFFF */
    expect("x\xe6\x97", "x\xef\xbf\xbd\xef\xbf\xbd");      /* truncated at the end */
    char small[5];
    melbo_utf8_sanitize(small, sizeof small, "ab\xe6\x97\xa5");
    ASSERT(strcmp(small, "ab") == 0); /* 2 + 3 + NUL does not fit in 5: cut before the character */
    fprintf(stderr, "ok   utf8: valid text kept, malformed bytes replaced, cut between characters\n");
    return test_exit_code();
}
