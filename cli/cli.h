/*
 * cli/cli.h - the `melbo` client: shared pieces of its subcommands.
 *
 * Exit codes a script can rely on (also in `melbo --help` and the README):
 *   0  success (watch: the job is DONE)
 *   1  the coordinator refused the request (bad spec, no such job or bank, wrong state, ...)
 *   2  usage error (bad flags)
 *   3  cannot reach the coordinator, or authentication failed
 *   4  watch: the job ended FAILED
 *   5  watch: the job ended CANCELLED
 * Errors go to stderr as one line "melbo: ..."; stdout carries only the result.
 */
#ifndef MELBO_CLI_CLI_H
#define MELBO_CLI_CLI_H

#include <stdint.h>

#include "proto/conn.h"

enum {
    MELBO_CLI_OK = 0,
    MELBO_CLI_REFUSED = 1,
    MELBO_CLI_USAGE = 2,
    MELBO_CLI_UNREACHABLE = 3,
    MELBO_CLI_JOB_FAILED = 4,
    MELBO_CLI_JOB_CANCELLED = 5,
};

struct melbo_cli {
    char coord[256];       // HOST:PORT
    char token[256];
    int json;              // --json
    struct melbo_conn conn;
    uint64_t next_id;
};

/* Connects and authenticates. Returns 0 or an exit code (message printed). */
int melbo_cli_connect(struct melbo_cli *c);
/*
 * Sends req (built; its id is set here) and waits for the reply with the same id. On success
 * *out is unpacked (caller frees). An Error reply is printed and mapped to an exit code.
 */
int melbo_cli_call(struct melbo_cli *c, Melbo__Envelope *req, Melbo__Envelope **out);
/* Prints "melbo: <message>" for an Error and returns its exit code. */
int melbo_cli_error(const Melbo__Error *e);
/* Parses a job id ("42"); 0 on success. */
int melbo_cli_job_id(const char *s, uint64_t *id);

int melbo_cmd_submit(struct melbo_cli *c, int argc, char **argv);
int melbo_cmd_watch(struct melbo_cli *c, int argc, char **argv);
int melbo_cmd_ls(struct melbo_cli *c, int argc, char **argv);
int melbo_cmd_show(struct melbo_cli *c, int argc, char **argv);
int melbo_cmd_cancel(struct melbo_cli *c, int argc, char **argv);
int melbo_cmd_fetch(struct melbo_cli *c, int argc, char **argv);
int melbo_cmd_bank(struct melbo_cli *c, int argc, char **argv);

#endif
