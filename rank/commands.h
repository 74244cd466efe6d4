/*
 * rank/commands.h - the subcommands of melbo-rank. Each takes (argc, argv) with argv[0] the
 * subcommand's name and returns the process exit status: 0 success, 1 failure (a message on
 * stderr names the problem), 2 a usage error.
 */
#ifndef MELBO_RANK_COMMANDS_H
#define MELBO_RANK_COMMANDS_H

int melbo_cmd_inspect(int argc, char **argv);
int melbo_cmd_train(int argc, char **argv);
int melbo_cmd_bank(int argc, char **argv);
int melbo_cmd_gen(int argc, char **argv);
int melbo_cmd_bench(int argc, char **argv);

#endif
