/*
 * options/slice.h - Python slice syntax for --target-tokens ("-3:", ":", "2:10:2", "5").
 *
 * A slice selects positions of each prompt relative to that prompt's length, exactly as
 * Python's slice.indices / integer indexing would on a list of the prompt's tokens.
 */
#ifndef MELBO_OPTIONS_SLICE_H
#define MELBO_OPTIONS_SLICE_H

#include "common/err.h"

#ifdef __cplusplus
extern "C" {
#endif

struct melbo_slice {
    char text[64];     // as given, normalised (no spaces)
    int is_index;      // "k": one position
    int has_start, has_stop;
    long start, stop, step;
};

/* Parses s; MELBO_EINVAL with a message for anything that is not a slice or an integer. */
int melbo_slice_parse(const char *s, struct melbo_slice *out, struct melbo_err *err);

/* Writes the selected positions of a length-len sequence into idx (room for len) in the order
 * Python yields them; returns how many. */
int melbo_slice_indices(const struct melbo_slice *s, int len, int *idx);

#ifdef __cplusplus
}
#endif
#endif
