/*
 * tests/tokenizer/golden_jsonl.h - reading the tokenizer goldens (JSONL files written by the
 * make_*_goldens.py scripts) in C tests. Header-only like tests/test.h; include after it.
 */
#ifndef MELBO_TESTS_TOKENIZER_GOLDEN_JSONL_H
#define MELBO_TESTS_TOKENIZER_GOLDEN_JSONL_H

#include <cjson/cJSON.h>

#include "common/file.h"
#include "rank/tokenizer/tokenizer.h"

/* Reads a JSONL file into an array of parsed lines. */
static inline cJSON **read_jsonl(const char *path, size_t *n) {
    char *buf = NULL;
    size_t len = 0;
    struct melbo_err err = {0};
    if (melbo_file_read(path, &buf, &len, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        abort();
    }
    size_t cap = 1024, k = 0;
    cJSON **out = malloc(cap * sizeof(*out));
    for (char *p = buf; *p;) {
        char *e = strchr(p, '\n');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l > 0) {
            if (k == cap)
                out = realloc(out, (cap *= 2) * sizeof(*out));
            out[k] = cJSON_ParseWithLength(p, l);
            ASSERT(out[k] != NULL);
            k++;
        }
        p += l + (e ? 1 : 0);
    }
    free(buf);
    *n = k;
    return out;
}

/* 1 when the ids equal the JSON array b element for element. */
static inline int ids_equal(const struct melbo_ids *a, const cJSON *b) {
    if ((int)a->n != cJSON_GetArraySize(b))
        return 0;
    for (size_t i = 0; i < a->n; i++)
        if (a->ids[i] != (int32_t)cJSON_GetArrayItem(b, (int)i)->valuedouble)
            return 0;
    return 1;
}

#endif
