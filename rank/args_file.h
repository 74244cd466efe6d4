/*
 * rank/args_file.h - `melbo-rank CMD --args-file FILE [more options]`: the options the
 * coordinator wrote to a job's 0600 rank.args file (each followed by a NUL), so that no prompt is
 * on a command line `ps` shows. Used by `train` and `gen`.
 */
#ifndef MELBO_RANK_ARGS_FILE_H
#define MELBO_RANK_ARGS_FILE_H

#ifdef __cplusplus
extern "C" {
#endif

/*
 * With argv = {CMD, "--args-file", FILE, more...}: fills *out (malloc'd, NULL-terminated array of
 * pointers into *buf, both the caller's to free): argv[0], the file's words, then argv[3..].
 * Returns the new argc, or -1 after printing why (prefixed "melbo-rank CMD").
 */
int melbo_args_from_file(const char *cmd, int argc, char **argv, char ***out, char **buf);

#ifdef __cplusplus
}
#endif
#endif
