/*
 * cli/main.c - melbo, the researcher's client of melbo-coord: global options, where the
 * coordinator and the token come from, connecting, and the subcommand table.
 *
 * Address and token, first found wins: --coord/--token-file FILE, MELBO_COORD/MELBO_TOKEN, then
 * ~/.config/melbo/config (lines MELBO_COORD=HOST:PORT and MELBO_TOKEN=..., as `melbo-coord init`
 * prints them; "coord = ..." and "token = ..." are accepted too). MELBO_COORD_FINGERPRINT (the
 * environment, else the config file's line) pins the coordinator's TLS certificate; without it
 * the CLI speaks plaintext (a coordinator with plaintext_loopback=1). A token is never an argument:
 * `ps` shows every process's command line to every local user, so `--token` is refused.
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
            "usage: melbo [--coord HOST:PORT] [--token-file FILE] <command> [options]\n"
            "\n"
            "commands:\n"
            "  submit [train options]   submit a training job; prints its id (melbo-rank train's\n"
            "                           flags, plus --name TEXT and Slurm's; see submit --help)\n"
            "  watch JOB [--json] [--from N]   follow a job live; exit 0 when DONE\n"
            "  ls [--json] [--limit N]  list jobs\n"
            "  show JOB [--json]        a job's vectors (or adapters): objective and first line\n"
            "                           of completion\n"
            "  gen --bank ID --vector EXPR [prompts] [decoding options]\n"
            "                           generate with a stored bank's vectors on the ranks where\n"
            "                           its model lives; the text streams to stdout (gen --help)\n"
            "  chat --bank ID --vector EXPR [--script FILE]   talk to the steered model\n"
            "                           (/vector EXPR switches, /save FILE writes the transcript)\n"
            "  warm --bank ID | --model NAME   keep the model loaded: later gen and chat of it\n"
            "                           start at once (until idle for limits.warm_idle_s)\n"
            "  cancel JOB               stop a job (all its ranks)\n"
            "  fetch JOB -o FILE        download the job's bank (or --bank ID -o FILE)\n"
            "  bank ls [--model M] [--prompt TEXT] [--user U] [--json]   the lab's banks\n"
            "  bank show ID [--json]    one bank's provenance, its vectors or adapters\n"
            "  bank label ID:K [LABEL] [--note TEXT] [--clear]   label a vector for the lab\n"
            "  bank search TEXT [--limit N] [--json]   labels, notes, prompts and completions\n"
            "  bank near ID:K [--top N] [--model M] [--json]   the lab's nearest vectors\n"
            "  bank export ID (--vector EXPR | --adapter K) --format F -o OUT\n"
            "                           one vector expression or adapter of a stored bank in\n"
            "                           another tool's format (gguf-control-vector: llama.cpp;\n"
            "                           peft: a directory; gguf-lora), written by the coordinator\n"
            "  bank report ID -o FILE.html   the bank's self-contained HTML report\n"
            "\n"
            "The coordinator and token come from --coord/--token-file FILE (the token, or a\n"
            "MELBO_TOKEN=... line), MELBO_COORD/MELBO_TOKEN, or ~/.config/melbo/config (the two\n"
            "lines melbo-coord init prints). A token is never given on the command line.\n"
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
        if ((!strcmp(k, "MELBO_COORD_FINGERPRINT") || !strcmp(k, "fingerprint")) &&
            c->fingerprint[0] == '\0')
            snprintf(c->fingerprint, sizeof c->fingerprint, "%s", v);
    }
    fclose(f);
}

/*
 * The token in file path (its first line; "MELBO_TOKEN=" before it is allowed) into c->token.
 * Returns 0, or MELBO_CLI_USAGE after saying why.
 */
static int read_token_file(struct melbo_cli *c, const char *path) {
    char line[512];
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "melbo: --token-file %s: %s\n", path, strerror(errno));
        return MELBO_CLI_USAGE;
    }
    int got = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    if (got)
        trim(line);
    const char *t = !strncmp(line, "MELBO_TOKEN=", 12) ? line + 12 : line;
    if (!got || *t == '\0' || strlen(t) >= sizeof c->token) {
        fprintf(stderr, "melbo: --token-file %s: no token on its first line\n", path);
        return MELBO_CLI_USAGE;
    }
    snprintf(c->token, sizeof c->token, "%s", t);
    return 0;
}

/* --token TOKEN is refused: the token would be on the command line for `ps` to show. */
static int token_refused(void) {
    fprintf(stderr, "melbo: --token is not accepted (a command line is visible to every local "
                    "user): put the token in a file only you can read and give --token-file FILE, "
                    "or set MELBO_TOKEN, or write MELBO_TOKEN=... to ~/.config/melbo/config\n");
    return MELBO_CLI_USAGE;
}

/* Length of the valid UTF-8 sequence at p (1 to 4), or 0 when it is not one. */
static int utf8_len(const unsigned char *p) {
    int n = p[0] < 0x80 ? 1 : (p[0] & 0xe0) == 0xc0 ? 2 : (p[0] & 0xf0) == 0xe0 ? 3
            : (p[0] & 0xf8) == 0xf0 ? 4 : 0;
    if (n == 0 || (n == 2 && p[0] < 0xc2) || (n == 4 && p[0] > 0xf4))
        return 0;
    for (int i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    if ((n == 3 && p[0] == 0xe0 && p[1] < 0xa0) || (n == 3 && p[0] == 0xed && p[1] >= 0xa0) ||
        (n == 4 && p[0] == 0xf0 && p[1] < 0x90) || (n == 4 && p[0] == 0xf4 && p[1] >= 0x90))
        return 0; // overlong, surrogate or beyond U+10FFFF
    return n;
}

const char *melbo_cli_safe(const char *s, int keep_nl_tab) {
    static char *ring[8];
    static int next;
    if (s == NULL)
        return "";
    char **slot = &ring[next++ % 8];
    free(*slot);
    size_t n = strlen(s), k = 0;
    char *out = malloc(6 * n + 1);
    if (out == NULL)
        return "?";
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        int len = utf8_len(p);
        int kept = keep_nl_tab && (*p == '\n' || *p == '\t');
        if (len == 1 && ((*p < 0x20 && !kept) || *p == 0x7f)) {
            k += (size_t)sprintf(out + k, "\\x%02x", *p);
        } else if (len == 2 && p[0] == 0xc2 && p[1] < 0xa0) { /* C1 controls: U+0080..U+009F */
            k += (size_t)sprintf(out + k, "\\u%04x", p[1]);
        } else if (len == 0) {
            k += (size_t)sprintf(out + k, "\\x%02x", *p);
            len = 1;
        } else {
            memcpy(out + k, p, (size_t)len);
            k += (size_t)len;
        }
        p += len;
    }
    out[k] = '\0';
    *slot = out;
    return out;
}

int melbo_cli_error(const Melbo__Error *e) {
    fprintf(stderr, "melbo: %s\n", melbo_cli_safe(e->message ? e->message : "error", 0));
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
    if (melbo_conn_open(&c->conn, c->coord, c->fingerprint, 5000, &err) != 0) {
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
    if (r == MELBO_CLI_UNREACHABLE && c->fingerprint[0] == '\0')
        fprintf(stderr, "melbo: (no MELBO_COORD_FINGERPRINT was set, so this spoke plaintext; a "
                        "coordinator with TLS needs the fingerprint `melbo-coord init` printed, "
                        "in the environment or ~/.config/melbo/config)\n");
    if (r != 0)
        return r == MELBO_CLI_REFUSED ? MELBO_CLI_UNREACHABLE : r;
    melbo__envelope__free_unpacked(rep, NULL);
    return 0;
}

int melbo_cli_call(struct melbo_cli *c, Melbo__Envelope *req, Melbo__Envelope **out) {
    return melbo_cli_call_wait(c, req, out, MELBO_CLI_TIMEOUT_MS);
}

int melbo_cli_call_expect(struct melbo_cli *c, Melbo__Envelope *req, Melbo__Envelope **out,
                          int expect) {
    int st = melbo_cli_call(c, req, out);
    if (st == 0 && (int)(*out)->body_case != expect) {
        fprintf(stderr, "melbo: unexpected reply\n");
        melbo__envelope__free_unpacked(*out, NULL);
        *out = NULL;
        st = MELBO_CLI_UNREACHABLE;
    }
    return st;
}

int melbo_cli_request(struct melbo_cli *c, Melbo__Envelope *req, Melbo__Envelope **out,
                      int expect) {
    int st = melbo_cli_connect(c);
    return st ? st : melbo_cli_call_expect(c, req, out, expect);
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
    {"bank", melbo_cli_cmd_bank},     {"gen", melbo_cli_cmd_gen}, {"chat", melbo_cli_cmd_chat},
    {"warm", melbo_cli_cmd_warm},
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
        if (!strcmp(argv[i], "--token") || !strncmp(argv[i], "--token=", 8))
            return token_refused();
        if (!strcmp(argv[i], "--coord") && i + 1 < argc) {
            snprintf(c.coord, sizeof c.coord, "%s", argv[++i]);
            continue;
        }
        if (!strcmp(argv[i], "--token-file") && i + 1 < argc) {
            if (read_token_file(&c, argv[++i]) != 0)
                return MELBO_CLI_USAGE;
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
    /* Subcommand options may also carry --coord/--token-file/--json; take them out here. */
    int n = 0;
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    for (int k = i; k < argc; k++) {
        if (!strcmp(argv[k], "--token") || !strncmp(argv[k], "--token=", 8)) {
            free(rest);
            return token_refused();
        } else if (!strcmp(argv[k], "--token-file") && k + 1 < argc) {
            if (read_token_file(&c, argv[++k]) != 0) {
                free(rest);
                return MELBO_CLI_USAGE;
            }
        } else if (!strcmp(argv[k], "--coord") && k + 1 < argc) {
            snprintf(c.coord, sizeof c.coord, "%s", argv[k + 1]);
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
    if (getenv("MELBO_COORD_FINGERPRINT"))
        snprintf(c.fingerprint, sizeof c.fingerprint, "%s", getenv("MELBO_COORD_FINGERPRINT"));
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
