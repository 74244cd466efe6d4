/*
 * options/opt_impl.h - what the files of the option engine share and nobody else uses
 * (options/opt.c: lookup and parsing; options/value.c: values; options/usage.c: help).
 */
#ifndef MELBO_OPTIONS_OPT_IMPL_H
#define MELBO_OPTIONS_OPT_IMPL_H

#include "options/opt.h"

/* 1 if def is a default in parentheses: decided later, the field starts UNSET. */
int melbo__opt_is_later(const char *def);

/*
 * Parses val (NULL for a flag) into the field of row in the struct at base, checking it. name is
 * how the option was spelled (prompt options, "no-" flags), negated 1 for "no-X". Returns 0 or
 * MELBO_EINVAL (or a prompt file's error) with err naming the option and the value.
 */
int melbo__opt_parse_value(const struct melbo_opt *row, void *base, const char *name, int negated,
                           const char *val, struct melbo_err *err);

#endif
