/* options/generate.c - the decoding table and `melbo-rank gen`'s (options/generate.h). */
#include "options/generate.h"

#include <stddef.h>

#define MELBO_OPT_STRUCT struct melbo_gen_settings
static const struct melbo_opt gen_rows[] = {
    MELBO_GEN_OPTIONS(MELBO_OPT_ROW, MELBO_OPT_HEADING_ROW)};
#undef MELBO_OPT_STRUCT

const struct melbo_opt_table melbo_gen_table = {gen_rows, sizeof gen_rows / sizeof gen_rows[0]};

#define MELBO_OPT_STRUCT struct melbo_gen_cmd_params
static const struct melbo_opt gen_cmd_rows[] = {
    MELBO_GEN_CMD_OPTIONS(MELBO_OPT_ROW, MELBO_OPT_HEADING_ROW)
    MELBO_OPT_TABLE_ROW(gen, &melbo_gen_table)};
#undef MELBO_OPT_STRUCT

const struct melbo_opt_table melbo_gen_cmd_table = {gen_cmd_rows,
                                                    sizeof gen_cmd_rows / sizeof gen_cmd_rows[0]};
