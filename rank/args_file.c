/* rank/args_file.c - options from a job's rank.args file (rank/args_file.h). */
#include "rank/args_file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/file.h"

int melbo_args_from_file(const char *cmd, int argc, char **argv, char ***out, char **buf) {
    struct melbo_err err = {0};
    size_t len = 0;
    *buf = NULL;
    if (melbo_file_read(argv[2], buf, &len, &err) != 0) {
        fprintf(stderr, "melbo-rank %s: --args-file: %s\n", cmd, err.msg);
        return -1;
    }
    if (len > 0 && (*buf)[len - 1] != '\0') {
        fprintf(stderr, "melbo-rank %s: --args-file %s: the last word has no NUL\n", cmd, argv[2]);
        return -1;
    }
    size_t words = 0;
    for (size_t i = 0; i < len; i++)
        words += (*buf)[i] == '\0';
    char **v = calloc(words + (size_t)argc, sizeof *v);
    if (v == NULL)
        return -1;
    int n = 0;
    v[n++] = argv[0];
    for (size_t i = 0; i < len; i += strlen(*buf + i) + 1)
        v[n++] = *buf + i;
    for (int i = 3; i < argc; i++)
        v[n++] = argv[i];
    v[n] = NULL;
    *out = v;
    return n;
}
