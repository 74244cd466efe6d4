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

struct melbo_train_params;
struct melbo_comm;
struct melbo_link;
struct melbo_err;
/*
 * `train --sweep` (rank/cmd_sweep.c): every point of p's grid on one load of the model. On rank
 * 0 with a link, the banks are uploaded and the link is ended (the caller must not use it
 * again) when it returns 0. Returns 0, MELBO_ESTATE (a point checkpointed on SIGUSR1), or a
 * negative code with err set.
 */
int melbo_train_sweep(const struct melbo_train_params *p, struct melbo_comm *comm,
                      struct melbo_link *link, int rank0, struct melbo_err *err);

#endif
