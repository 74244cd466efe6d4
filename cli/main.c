/*
 * cli/main.c - melbo, the researcher's client of melbo-coord: global options, where the
 * coordinator and the token come from, connecting, and the subcommand table.
 *
 * Address and token, first found wins: --coord/--token, MELBO_COORD/MELBO_TOKEN, then
 * ~/.config/melbo/config (lines MELBO_COORD=HOST:PORT and MELBO_TOKEN=..., as `melbo-coord init`
 * prints them; "coord = ..." and "token = ..." are accepted too).
 *
 * The process exits with the subcommand's exit code (cli/cli.h); main() closes the connection.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

#define MELBO_CLI_TIMEOUT_MS 30000

/* The global help text, to f (stdout for --help, stderr after a usage error). */
static void usage(FILE *f) {
    fprintf(f,
            "usage: melbo [--coord HOST:PORT] [--token TOKEN] <command> [options]\n"
            "\n"
            "commands:\n"
            "  submit [train options]   submit a training job; prints its id (melbo-rank train's\n"
            "                           flags, plus --name TEXT and Slurm's; see submit --help)\n"
            "  watch JOB [--json] [--from N]   follow a job live; exit 0 when DONE\n"
            "  ls [--json] [--limit N]  list jobs\n"
            "  show JOB [--json]        a job's vectors (or adapters): objective and first line\n"
            "                           of completion\n"
            "  cancel JOB               stop a job (all its ranks)\n"
            "  fetch JOB -o FILE        download the job's bank (or --bank ID -o FILE)\n"
            "  bank ls [--model M] [--prompt TEXT] [--user U] [--json]   the lab's banks\n"
            "  bank show ID [--json]    one bank's provenance, its vectors or adapters\n"
            "  bank export ID (--vector EXPR | --adapter K) --format F -o OUT\n"
            "                           one vector expression or adapter of a stored bank in\n"
            "                           another tool's format (gguf-control-vector: llama.cpp;\n"
            "                           peft: a directory; gguf-lora), written by the coordinator\n"
            "  bank report ID -o FILE.html   the bank's self-contained HTML report\n"
            "\n"
            "The coordinator and token come from --coord/--token, MELBO_COORD/MELBO_TOKEN, or\n"
            "~/.config/melbo/config (the two lines melbo-coord init prints).\n"
            "\n"
            "exit codes: 0 ok (watch: DONE), 1 refused by the coordinator, 2 usage error,\n"
            "3 coordinator unreachable or authentication failed, 4 job FAILED, 5 job CANCELLED\n");
}

/* Removes trailing newlines, carriage returns, spaces and tabs from s, in place. */
static void trim(char *s) {
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
}

/*
 * Fills c->coord and c->token, where still empty, from $XDG_CONFIG_HOME/melbo/config (else
 * ~/.config/melbo/config). A missing or unreadable file is not an error; lines without '=' and
 * lines starting with '#' are skipped.
 */
static void read_config(struct melbo_cli *c) {
    const char *home = getenv("HOME");
    const char *xdg = getenv("XDG_CONFIG_HOME");
    char path[4096], line[1024];
    if (xdg && *xdg)
        snprintf(path, sizeof path, "%s/melbo/config", xdg);
    else if (home && *home)
        snprintf(path, sizeof path, "%s/.config/melbo/config", home);
    else
        return;
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    while (fgets(line, sizeof line, f)) {
        trim(line);
        char *eq = strchr(line, '=');
        if (line[0] == '#' || eq == NULL)
            continue;
        *eq = '\0';
        char *k = line, *v = eq + 1;
        trim(k);
        while (*v == ' ' || *v == '\t')
            v++;
        if ((!strcmp(k, "MELBO_COORD") || !strcmp(k, "coord")) && c->coord[0] == '\0')
            snprintf(c->coord, sizeof c->coord, "%s", v);
        if ((!strcmp(k, "MELBO_TOKEN") || !strcmp(k, "token")) && c->token[0] == '\0')
            snprintf(c->token, sizeof c->token, "%s", v);
    }
    fclose(f);
}

int melbo_cli_error(const Melbo__Error *e) {
    fprintf(stderr, "melbo: %s\n", e->message ? e->message : "error");
    switch (e->code) {
    case MELBO__ERROR_CODE__ERROR_AUTH:
    case MELBO__ERROR_CODE__ERROR_VERSION:
        return MELBO_CLI_UNREACHABLE;
    default:
        return MELBO_CLI_REFUSED;
    }
}

int melbo_cli_connect(struct melbo_cli *c) {
    struct melbo_err err = {0};
    if (c->coord[0] == '\0') {
        fprintf(stderr, "melbo: no coordinator: give --coord HOST:PORT, set MELBO_COORD, or write "
                        "it to ~/.config/melbo/config\n");
        return MELBO_CLI_UNREACHABLE;
    }
    if (melbo_conn_open(&c->conn, c->coord, 5000, &err) != 0) {
        fprintf(stderr, "melbo: %s\n", err.msg);
        return MELBO_CLI_UNREACHABLE;
    }
    Melbo__Hello h = MELBO__HELLO__INIT;
    h.has_protocol_version = 1;
    h.protocol_version = MELBO_PROTOCOL_VERSION;
    h.token = c->token;
    h.client = "melbo " MELBO_VERSION;
    Melbo__Envelope env = MELBO__ENVELOPE__INIT;
    env.body_case = MELBO__ENVELOPE__BODY_HELLO;
    env.hello = &h;
    Melbo__Envelope *rep = NULL;
    int r = melbo_cli_call(c, &env, &rep);
    if (r != 0)
        return r == MELBO_CLI_REFUSED ? MELBO_CLI_UNREACHABLE : r;
    melbo__envelope__free_unpacked(rep, NULL);
    return 0;
}

int melbo_cli_call(struct melbo_cli *c, Melbo__Envelope *req, Melbo__Envelope **out) {
    return melbo_cli_call_wait(c, req, out, MELBO_CLI_TIMEOUT_MS);
}

int melbo_cli_call_wait(struct melbo_cli *c, Melbo__Envelope *req, Melbo__Envelope **out,
                        int wait_ms) {
    struct melbo_err err = {0};
    req->has_id = 1;
    req->id = ++c->next_id;
    if (melbo_conn_send(&c->conn, req, MELBO_CLI_TIMEOUT_MS, &err) != 0) {
        fprintf(stderr, "melbo: %s\n", err.msg);
        return MELBO_CLI_UNREACHABLE;
    }
    for (;;) {
        Melbo__Envelope *rep = NULL;
        if (melbo_conn_recv(&c->conn, wait_ms, &rep, &err) != 0) {
            fprintf(stderr, "melbo: %s\n", err.msg);
            return MELBO_CLI_UNREACHABLE;
        }
        if (rep->body_case == MELBO__ENVELOPE__BODY_ERROR && (rep->id == req->id || rep->id == 0)) {
            int code = melbo_cli_error(rep->error);
            melbo__envelope__free_unpacked(rep, NULL);
            return code;
        }
        if (rep->id == req->id) {
            *out = rep;
            return 0;
        }
        melbo__envelope__free_unpacked(rep, NULL); // not ours (an event of another watch)
    }
}

int melbo_cli_job_id(const char *s, uint64_t *id) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s == '\0' || *s == '-' || *end != '\0' || errno || v == 0) {
        fprintf(stderr, "melbo: '%s' is not a job id\n", s);
        return MELBO_CLI_USAGE;
    }
    *id = v;
    return 0;
}

/* The subcommands, by the name typed after the global options (cli/cli.h documents each). */
struct command {
    const char *name;
    int (*run)(struct melbo_cli *c, int argc, char **argv);
};

static const struct command commands[] = {
    {"submit", melbo_cli_cmd_submit}, {"watch", melbo_cli_cmd_watch},   {"ls", melbo_cli_cmd_ls},
    {"show", melbo_cli_cmd_show}, {"cancel", melbo_cli_cmd_cancel}, {"fetch", melbo_cli_cmd_fetch},
    {"bank", melbo_cli_cmd_bank},
};

/*
 * Global options (--coord, --token, --help, --version) come before the command; --coord, --token
 * and --json may also appear among the command's options and are taken out before it runs.
 * Exits with the command's exit code, MELBO_CLI_USAGE for an unknown option or command.
 */
int main(int argc, char **argv) {
    struct melbo_cli c;
    memset(&c, 0, sizeof c);
    c.conn.fd = -1;
    signal(SIGPIPE, SIG_IGN);
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--version")) {
            printf("melbo %s\n", MELBO_VERSION);
            return 0;
        }
        if ((!strcmp(argv[i], "--coord") || !strcmp(argv[i], "--token")) && i + 1 < argc) {
            char *dst = argv[i][2] == 'c' ? c.coord : c.token;
            snprintf(dst, 256, "%s", argv[++i]);
            continue;
        }
        fprintf(stderr, "melbo: unknown option '%s'\n", argv[i]);
        usage(stderr);
        return MELBO_CLI_USAGE;
    }
    if (i >= argc) {
        usage(stderr);
        return MELBO_CLI_USAGE;
    }
    /* Subcommand options may also carry --coord/--token/--json; take them out here. */
    int n = 0;
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    for (int k = i; k < argc; k++) {
        if ((!strcmp(argv[k], "--coord") || !strcmp(argv[k], "--token")) && k + 1 < argc) {
            snprintf(argv[k][2] == 'c' ? c.coord : c.token, 256, "%s", argv[k + 1]);
            k++;
        } else if (!strcmp(argv[k], "--json")) {
            c.json = 1;
        } else {
            rest[n++] = argv[k];
        }
    }
    if (c.coord[0] == '\0' && getenv("MELBO_COORD"))
        snprintf(c.coord, sizeof c.coord, "%s", getenv("MELBO_COORD"));
    if (c.token[0] == '\0' && getenv("MELBO_TOKEN"))
        snprintf(c.token, sizeof c.token, "%s", getenv("MELBO_TOKEN"));
    read_config(&c);
    int status = -1;
    for (size_t k = 0; k < sizeof commands / sizeof commands[0]; k++)
        if (!strcmp(rest[0], commands[k].name))
            status = commands[k].run(&c, n, rest);
    if (status < 0) {
        fprintf(stderr, "melbo: unknown command '%s'\n", rest[0]);
        usage(stderr);
        status = MELBO_CLI_USAGE;
    }
    melbo_conn_close(&c.conn);
    free(rest);
    return status;
}
