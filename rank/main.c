/*
 * rank/main.c - melbo-rank: one rank of a melbo job, or a standalone tool.
 *
 * Dispatches to a subcommand (rank/commands.h). Subcommands run standalone without MPI; the
 * training and generation commands join an MPI world when started under mpirun or srun.
 */
#include <stdio.h>
#include <string.h>

#include "common/threads.h"
#include "rank/commands.h"
#include "rank/tokenizer/cmd_tokenize.h"

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
};

static const struct command commands[] = {
    {"inspect", melbo_cmd_inspect, "show what a checkpoint holds (--model DIR [--json])"},
    {"tokenize", melbo_cmd_tokenize, "render and tokenize prompts (--model DIR --prompt TEXT)"},
    {"detokenize", melbo_cmd_detokenize, "turn token ids back into text"},
    {"train", melbo_cmd_train,
     "train steering vectors or adapters (--adapter-rank) into a bank (--help for options)"},
    {"gen", melbo_cmd_gen, "generate with a bank's vectors or adapters (--vector/--adapter, --help)"},
    {"bank", melbo_cmd_bank,
     "show a bank (FILE [--json] [--sort novelty]); bank export ...; bank report FILE -o HTML"},
    {"bench", melbo_cmd_bench, "time training and generation on the GPU (--config F --random-weights)"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: melbo-rank <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n'melbo-rank <command> --help' describes a command's options.\n");
}

int main(int argc, char **argv) {
    melbo_threads_init(argv);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("melbo-rank %s\n", MELBO_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "melbo-rank: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
