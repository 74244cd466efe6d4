/*
 * rank/tokenizer/cmd_tokenize.h - the `melbo-rank tokenize` and `melbo-rank detokenize`
 * subcommands: show exactly what the model will see for a prompt, and turn ids back into
 * text.
 *
 *   melbo-rank tokenize (--model DIR | --tokenizer DIR) [prompt options] [--json]
 *   melbo-rank detokenize (--model DIR | --tokenizer DIR) [--skip-special] [--json] IDS...
 *
 * The prompt options are those of prompt.h. tokenize prints, per prompt, the rendered text
 * and a table of positions (from the start and from the end, the numbers --target-tokens
 * takes), ids, token strings and the text of each token; --json prints one line per prompt,
 * {"text": ..., "ids": [...], "tokens": [...]}. detokenize takes ids as arguments ("1 2 3",
 * "1,2,3" or "[1, 2, 3]") or, with none, from standard input, and prints the decoded text
 * (--json: the same object as tokenize).
 */
#ifndef MELBO_RANK_TOKENIZER_CMD_TOKENIZE_H
#define MELBO_RANK_TOKENIZER_CMD_TOKENIZE_H

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Entry points for melbo-rank's dispatcher: argv[0] is the subcommand name. Return the
 * process exit status: 0 on success, 2 for a usage error (with the usage on stderr), 1 for
 * any other error (with the message on stderr).
 */
int melbo_cmd_tokenize(int argc, char **argv);
int melbo_cmd_detokenize(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif
