/*
 * cli/cli.h - the `melbo` client's internals: the state every subcommand shares, the helpers
 * that talk to melbo-coord, and the subcommands.
 *
 * Files:
 *   main.c    global options, where the coordinator and the token come from, connecting, one
 *             request/reply exchange, and the subcommand table
 *   submit.c  `melbo submit`: a job spec of options by name, checked with options/job.h
 *   watch.c   `melbo watch`: a job's event log, live or as JSON lines
 *   cmds.c    the short request/reply subcommands: ls, show, cancel, fetch, bank
 *   export.c  `melbo bank export` and `melbo bank report`: files the coordinator writes with
 *             melbo-rank, received in chunks and written atomically
 *   catalog.c `melbo bank label`, `search` and `near`: the lab catalog
 *
 * Model: one process, one blocking connection (proto/conn.h), opened by the subcommand that
 * needs it with melbo_cli_connect and closed by main() when the subcommand returns. Requests
 * carry increasing ids; a reply is matched to its request by id. Messages sent are built on the
 * stack (MELBO__X__INIT, pointers borrowed from argv or locals, never freed); messages received
 * are unpacked, owned by whoever received them and freed with melbo__envelope__free_unpacked.
 *
 * Exit codes a script can rely on (also in `melbo --help` and the README's "melbo exit codes").
 * Every subcommand returns one of them and main() exits with it:
 *   0  success (watch: the job is DONE)
 *   1  the coordinator refused the request (bad spec, no such job or bank, wrong state, ...),
 *      or a local file could not be written
 *   2  usage error (bad flags)
 *   3  cannot reach the coordinator, or authentication failed, or the connection broke
 *   4  watch: the job ended FAILED
 *   5  watch: the job ended CANCELLED
 * Errors go to stderr as one line "melbo: ..."; stdout carries only the result.
 */
#ifndef MELBO_CLI_CLI_H
#define MELBO_CLI_CLI_H

#include <stdint.h>

#include "proto/conn.h"

/* The exit codes above. */
enum {
    MELBO_CLI_OK = 0,
    MELBO_CLI_REFUSED = 1,
    MELBO_CLI_USAGE = 2,
    MELBO_CLI_UNREACHABLE = 3,
    MELBO_CLI_JOB_FAILED = 4,
    MELBO_CLI_JOB_CANCELLED = 5,
};

/* The state of one `melbo` invocation; main() owns it and fills the first three fields. */
struct melbo_cli {
    char coord[256];        // HOST:PORT, "" when none was given anywhere
    char token[256];        // the user's token, "" when none was given
    char fingerprint[128];  // MELBO_COORD_FINGERPRINT (pinned TLS), "" for plaintext
    int json;               // --json: machine-readable output
    struct melbo_conn conn; // fd -1 until melbo_cli_connect; closed by main()
    uint64_t next_id;       // id of the last request sent on conn
};

/* ==== talking to the coordinator (main.c) ================================================== */

/*
 * Opens c->conn (closed on entry) to c->coord within 5 s and authenticates with c->token
 * (Hello). Returns 0, or MELBO_CLI_UNREACHABLE with a message printed: no address, no
 * connection, or any refusal of the Hello (token, protocol version). c->conn may be left open
 * on failure; melbo_conn_close is safe either way.
 */
int melbo_cli_connect(struct melbo_cli *c);

/*
 * Sends req (built by the caller, still the caller's; its id is set here) on the open c->conn and
 * waits, up to 30 s per frame, for the reply with the same id; other frames are dropped, except
 * an Error with id 0, which is the coordinator's answer to anything. Returns 0 with *out the
 * unpacked reply (the caller frees it), or, with *out untouched: MELBO_CLI_UNREACHABLE when
 * sending or receiving fails, or the exit code of an Error reply (printed; see
 * melbo_cli_error). The reply may be of any body; checking it is the caller's.
 */
int melbo_cli_call(struct melbo_cli *c, Melbo__Envelope *req, Melbo__Envelope **out);

/* melbo_cli_call on the open connection, for a reply of body `expect`: returns 0 with *out the
 * reply (the caller frees it), or an exit code with *out not to be freed (that of
 * melbo_cli_call, or MELBO_CLI_UNREACHABLE for a reply of another body, printed). */
int melbo_cli_call_expect(struct melbo_cli *c, Melbo__Envelope *req, Melbo__Envelope **out,
                          int expect);

/* Connects (melbo_cli_connect), then melbo_cli_call_expect: one request of a command. */
int melbo_cli_request(struct melbo_cli *c, Melbo__Envelope *req, Melbo__Envelope **out, int expect);

/* melbo_cli_call waiting up to wait_ms (not 30 s) for the first frame of the reply: for
 * requests the coordinator answers only once it has run something (bank export, report). */
int melbo_cli_call_wait(struct melbo_cli *c, Melbo__Envelope *req, Melbo__Envelope **out,
                        int wait_ms);

/*
 * Prints "melbo: <message>" for an Error reply (borrowed) and returns its exit code:
 * MELBO_CLI_UNREACHABLE for an authentication or protocol-version error, MELBO_CLI_REFUSED for
 * everything else.
 */
int melbo_cli_error(const Melbo__Error *e);

/*
 * s made safe for a terminal, for text that came from another user (model paths, names, labels,
 * completions, error messages): control characters (C0, DEL, C1) and bytes that are not UTF-8
 * become \xHH / \u00HH; newline and tab are kept when keep_nl_tab (completion text). The result
 * lives in one of 8 rotating buffers (valid until the 9th call after); NULL gives "".
 */
const char *melbo_cli_safe(const char *s, int keep_nl_tab);

/* Parses a job id (a positive decimal number) into *id. Returns 0, or MELBO_CLI_USAGE with a
 * message printed. */
int melbo_cli_job_id(const char *s, uint64_t *id);

/* ==== subcommands ========================================================================== */

/*
 * Every subcommand takes the invocation state and its own arguments: argv[0] is the command's
 * name, argv[1..argc) its options with --coord, --token and --json already taken out by main()
 * (argv is borrowed). It connects when it needs to, prints its result, and returns an exit code.
 */

/* `melbo submit`: the job table's flags (options/job.h) sent as options by name; prints the new
 * job's id (cli/submit.c). */
int melbo_cli_cmd_submit(struct melbo_cli *c, int argc, char **argv);

/* `melbo gen` (cli/gen.c): a gen job on a stored bank, its text streamed. */
int melbo_cli_cmd_gen(struct melbo_cli *c, int argc, char **argv);

/* `melbo warm` (cli/warm.c): a warm job keeping a model loaded for gen and chat. */
int melbo_cli_cmd_warm(struct melbo_cli *c, int argc, char **argv);

/* `melbo chat` (cli/chat.c): a conversation with the steered model, a gen job per turn. */
int melbo_cli_cmd_chat(struct melbo_cli *c, int argc, char **argv);

/* Submits a gen job (JobSpec command "gen") of the n options (borrowed), on the open connection
 * or a new one; sets *job. Returns 0 or an exit code (printed). */
int melbo_cli_gen_submit(struct melbo_cli *c, Melbo__Option **opts, size_t n, uint64_t *job);

/* Called with each event of a watched job (borrowed, valid during the call). */
typedef void (*melbo_cli_event_fn)(void *ctx, const Melbo__JobEvent *e);

/* How melbo_cli_follow listens: from event `from` (0: the first), reconnecting when nothing
 * (not even a keepalive) arrives for timeout_s, giving up after give_up_s without the
 * coordinator. melbo_cli_follow_defaults: 1, MELBO_WATCH_TIMEOUT or 30 s, 600 s. */
struct melbo_cli_follow_opts {
    uint64_t from;
    double timeout_s, give_up_s;
};
struct melbo_cli_follow_opts melbo_cli_follow_defaults(void);

/* Follows job's events (cli/watch.c), on the open connection or a new one, calling on_event with
 * each exactly once and in order until the job ends: a silent or lost coordinator is said on
 * stderr, reconnected to with back-off and jitter, and resumed from the next event. Returns 0
 * when the job is DONE, else the exit code (4 FAILED, 5 CANCELLED, 3 unreachable, ...). */
int melbo_cli_follow(struct melbo_cli *c, uint64_t job, const struct melbo_cli_follow_opts *o,
                     melbo_cli_event_fn on_event, void *ctx);

/* Prints one event (borrowed) as one JSON line on stdout and flushes (cli/watch.c). */
void melbo_cli_print_event_json(const Melbo__JobEvent *e);

/*
 * `melbo watch JOB [--from N]`: follows the job's events from number N (default 1) until the
 * coordinator ends the watch: a live view on a terminal, JSON lines otherwise or with --json.
 * A dropped connection (or a slow-consumer disconnect) is retried 1 s apart, up to 30 times
 * without progress, resuming after the last event printed. Returns MELBO_CLI_OK when the job
 * ended DONE, MELBO_CLI_JOB_FAILED, MELBO_CLI_JOB_CANCELLED, MELBO_CLI_REFUSED when the watch
 * ended in another state or the coordinator refused it, MELBO_CLI_UNREACHABLE when it cannot
 * connect (at once while it is still to receive event 1) or the coordinator stayed away,
 * MELBO_CLI_USAGE.
 */
int melbo_cli_cmd_watch(struct melbo_cli *c, int argc, char **argv);

/* `melbo ls [--limit N] [--user NAME]`: the jobs, a table or a JSON array. Exit 0, 1, 2 or 3. */
int melbo_cli_cmd_ls(struct melbo_cli *c, int argc, char **argv);

/* `melbo show JOB`: one job with its vectors' (an adapter job: its adapters') objectives and
 * first completion lines (or the last step's objectives while it runs). Exit 0, 1, 2 or 3. */
int melbo_cli_cmd_show(struct melbo_cli *c, int argc, char **argv);

/* `melbo cancel JOB`: asks the coordinator to stop the job; prints the state it reported to
 * stderr. Exit 0, 1, 2 or 3. */
int melbo_cli_cmd_cancel(struct melbo_cli *c, int argc, char **argv);

/*
 * `melbo fetch JOB -o FILE` or `melbo fetch --bank ID -o FILE`: downloads the bank into
 * FILE.partPID, checks the coordinator's sha256, syncs, and renames it to FILE; on any failure
 * the partial file is removed and FILE is untouched. Exit 0, 1 (refused, or FILE cannot be
 * written), 2, or 3 (the transfer broke or the checksum differs).
 */
int melbo_cli_cmd_fetch(struct melbo_cli *c, int argc, char **argv);

/* `melbo bank ls [--model M] [--prompt TEXT] [--user U] [--fingerprint F]` and `melbo bank show
 * ID`: the bank catalog, a table or JSON; `show` adds the bank's vectors or adapters (objective,
 * first line of completion). Exit 0, 1, 2 or 3. */
int melbo_cli_cmd_bank(struct melbo_cli *c, int argc, char **argv);

/*
 * `melbo bank export ID (--vector EXPR | --adapter K) --format F -o OUT` and `melbo bank report
 * ID -o FILE.html` (argv[0] is "export" or "report"; cli/export.c): the coordinator runs
 * `melbo-rank bank export|report` on its stored bank and sends the output back. A file output is
 * written to OUT.partPID and renamed; a directory output (peft) is built as OUT.partPID/ and
 * renamed, or, into an OUT directory that exists, written as OUT/NAME.partPID and each renamed
 * once all arrived (as melbo-rank does). Every file's size and sha256 are checked first; on any
 * failure nothing at OUT changes and the temporaries are removed. Prints what it wrote to stderr
 * (--json: a JSON object on stdout). Exit 0, 1 (refused: melbo-rank's message, no such bank; or
 * OUT cannot be written), 2, or 3 (unreachable, or the transfer broke).
 */
int melbo_cli_cmd_bank_export(struct melbo_cli *c, int argc, char **argv);

/*
 * The lab catalog (cli/catalog.c; argv[0] is "label", "search" or "near"):
 *   `melbo bank label ID:K [LABEL] [--note TEXT] [--clear]`: sets the label (and note) of
 *   vector K, clears both, or with neither only prints them; prints the row as stored.
 *   `melbo bank search TEXT [--limit N]`: full-text search over labels, notes, prompts and
 *   completions; one line per hit naming its bank and vector.
 *   `melbo bank near ID:K [--top N] [--model M]`: the vectors of the lab nearest to vector K by
 *   cosine, within its model and source layer (--model naming another model is refused).
 * A table, or JSON with --json. Exit 0, 1 (refused: no bank, vector out of range, ...), 2 or 3.
 */
int melbo_cli_cmd_bank_label(struct melbo_cli *c, int argc, char **argv);
int melbo_cli_cmd_bank_search(struct melbo_cli *c, int argc, char **argv);
int melbo_cli_cmd_bank_near(struct melbo_cli *c, int argc, char **argv);

#endif
