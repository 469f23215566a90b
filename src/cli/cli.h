/* SPDX-License-Identifier: Apache-2.0 */
/* cli — subcommands and their shared plumbing. Commands return the process
 * exit status (docs/cli.md, "Exit status"): 0 success, 1 a negative answer
 * (invalid, refused, not found, a failed check), 125 stockade's own error
 * (usage included); run and exec: 126 not executable, 127 not found,
 * otherwise the workload's status. */
#ifndef STK_CLI_H
#define STK_CLI_H

#include "boundary/boundary.h"

#include <getopt.h>

#define EXIT_INVALID 1
#define EXIT_USAGE   125 /* as podman: every error of stockade's own is 125 */
#define EXIT_SETUP   125 /* stockade could not do what was asked (or reach the server) */

struct cli_command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
    const char *usage; /* full --help text after the "Usage:" line */
};

extern const struct cli_command cli_commands[];

/* Prints "Usage: ..." for the command to stdout (help); to stderr (an
 * error, already reported) only "see 'stockade COMMAND --help'". */
int cli_usage(const char *command, FILE *to, int status);

/* `stockade --help`'s text; the exit status table (help, man page). */
void cli_main_usage(FILE *to);
extern const char cli_exit_status_text[];
int cmd_completion(int argc, char **argv);
int cmd_internal_man(int argc, char **argv);

/* The command being run ("" before dispatch), for messages. */
extern const char *cli_command_name;
/* getopt_long without getopt's messages: an unknown option or a missing
 * value is reported on one line, with the closest long option when one is
 * close, and returns '?'. */
int cli_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts);
/* Levenshtein distance (SIZE_MAX for names over 64 characters). */
size_t cli_edit_distance(const char *a, size_t la, const char *b, size_t lb);
/* The name name_at(ctx, 0, 1, ...) (until NULL) closest to word, or NULL
 * when none is close enough to suggest. */
const char *cli_closest(const char *word, size_t len, const char *(*name_at)(const void *, size_t),
                        const void *ctx);
/* Reports a usage problem and returns EXIT_USAGE. */
STK_PRINTF(2, 3) int cli_usage_error(const char *command, const char *fmt, ...);

enum cli_output { CLI_OUT_TEXT, CLI_OUT_JSON, _CLI_OUT_N };
int cli_parse_output(const char *command, const char *arg, enum cli_output *ret);
int cli_parse_backend(const char *command, const char *arg, enum stk_backend *ret);

void cli_print_diags(const struct stk_diags *d);
/* Prints a jansson value (stolen) to stdout, indented, with a newline. */
void cli_print_json(void *json);

/* A Sandbox file (exactly one Sandbox document) resolved against an optional
 * EnvironmentConfig file. */
struct cli_sandbox {
    struct stk_docset *ds;
    struct stk_docset *env_ds;
    struct stk_boundary *b;
};
/* Loads and resolves; prints diagnostics (warnings too). Returns 0 or an
 * exit status. */
int cli_sandbox_load(const char *file, const char *env_file, struct cli_sandbox *ret);
void cli_sandbox_release(struct cli_sandbox *s);
#define _cleanup_cli_sandbox_ _cleanup_(cli_sandbox_release)

/* Loads an EnvironmentConfig file (exactly one document of that kind). */
int cli_env_load(const char *file, struct stk_diags *diags, struct stk_docset **ret_ds,
                 const struct stk_envconfig **ret);

/* explain's contract for b on a backend, printed as text or JSON. Returns
 * the exit status. */
int cli_print_contract(const struct stk_boundary *b, enum stk_backend backend, enum cli_output out);

/* What explain tells about a backend on this host. */
void cli_backend_facts(enum stk_backend backend, const struct stk_boundary *b,
                       struct stk_backend_facts *ret);

/* The local backend's paths: --state-dir, else $STOCKADE_STATE_DIR, else
 * /var/lib/stockade; runtime state under $STOCKADE_RUN_DIR or /run/stockade. */
struct stk_local_paths;
void cli_local_paths(const char *state_dir, struct stk_local_paths *ret);
/* spec.image pinned to what `image pull` verified into this state
 * directory (stk_image_pin): 1 with *ret_digest (and *ret_image unless the
 * reference pins itself), 0 when nothing is known. */
int cli_image_pin(const char *image, char *ret_image, size_t n, char ret_digest[72]);
/* The same for a backend: its default state directory is
 * /var/lib/stockade/<backend> unless it is local (a state directory holds
 * one backend's sandboxes). */
void cli_backend_paths(const char *state_dir, enum stk_backend backend,
                       struct stk_local_paths *ret);
/* --kubeconfig and --context ($STOCKADE_KUBECONFIG, $STOCKADE_CONTEXT). */
struct stk_session_opts;
void cli_session_opts(struct stk_session_opts *ret);
/* The backend of the embedded session commands: $STOCKADE_BACKEND (set by
 * `stockade --backend B COMMAND` too), local when unset; a backend not built
 * in is a usage error. */
int cli_session_backend(const char *command, enum stk_backend *ret);
/* Opens the embedded session for that backend; prints why not and returns
 * an exit status. */
struct stk_session;
int cli_session_open(const char *command, const char *state_dir, struct stk_session **ret);

int cmd_validate(int argc, char **argv);
int cmd_explain(int argc, char **argv);
int cmd_assess(int argc, char **argv);
int cmd_reference(int argc, char **argv);
int cmd_netpol(int argc, char **argv);
int cmd_render(int argc, char **argv);
int cmd_eject(int argc, char **argv);
int cmd_doctor(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_gc(int argc, char **argv);
int cmd_image(int argc, char **argv);
int cmd_create(int argc, char **argv);
int cmd_exec(int argc, char **argv);
int cmd_cp(int argc, char **argv);
int cmd_port_forward(int argc, char **argv);
int cmd_logs(int argc, char **argv);
int cmd_stop(int argc, char **argv);
int cmd_start(int argc, char **argv);
int cmd_rm(int argc, char **argv);
int cmd_ls(int argc, char **argv);
int cmd_get(int argc, char **argv);
int cmd_pool(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_internal_monitor(int argc, char **argv);
int cmd_internal_refill(int argc, char **argv);
int cmd_audit(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_internal_gateway_worker(int argc, char **argv);
int cmd_internal_proxy(int argc, char **argv);

/* The gateway's authentication and authorization from an AccessPolicy file
 * (src/cli/serve.c); prints diagnostics. Returns 0 or an exit status. */
struct stk_gw_policy;
int cli_gateway_auth(const char *policy_file, struct stk_gw_policy **ret);

/* ---- the CLI as a client of `stockade serve` (src/cli/remote.c) ---- */

/* The global options (before the command) and their environment variables. */
struct cli_remote_opts {
    const char *server;     /* --server URL, $STOCKADE_SERVER; "unix:/path" too */
    const char *token;      /* --token, $STOCKADE_TOKEN */
    const char *token_file; /* --token-file, $STOCKADE_TOKEN_FILE */
    const char *cacert;     /* --cacert FILE */
    const char *cert, *key; /* --cert FILE --key FILE (mTLS) */
};
extern struct cli_remote_opts cli_remote;
void cli_remote_from_env(void);
bool cli_remote_active(void);
/* One request: body (not stolen) as JSON; a 2xx answer is parsed into *ret
 * (when ret), or written to fd (when fd >= 0: a stream). Any other answer
 * prints the server's error message. Returns 0, EXIT_INVALID (refused or
 * failed) or EXIT_SETUP (the server could not be reached). */
struct json_t;
int cli_remote_call(const char *cmd, const char *method, const char *path, struct json_t *body,
                    int fd, struct json_t **ret);
/* The same with a body of bytes (content_type: its Content-Type, NULL:
 * none). */
int cli_remote_call_raw(const char *cmd, const char *method, const char *path, const void *payload,
                        size_t payload_len, const char *content_type, int fd, struct json_t **ret);
/* exec over the server's upgrade (docs/api.md, Exec): body is the exec
 * request; stdin from in_fd (-1: none), output to stdout and stderr;
 * SIGINT/SIGTERM/SIGHUP go on as KILL frames, SIGWINCH as tty_fd's size
 * (-1: no terminal). Returns 0 with the command's exit code, or EXIT_SETUP (it could not run). */
int cli_remote_exec(const char *id, struct json_t *body, int in_fd, int tty_fd, int *ret_code);
/* s escaped for a URL path segment or query value (caller frees). */
char *cli_remote_escape(const char *s);
/* The client above is a private module (stockade-remote.so, libcurl) that a
 * command loads only with --server: name's address there. A missing module
 * ends the command with a message. */
void *cli_remote_sym(const char *cmd, const char *name);
#define CLI_REMOTE_FN(cmd, fn) ((__typeof__(&(fn)))cli_remote_sym(cmd, #fn))

/* ---- the client interface of the sandbox commands (src/cli/engine.c) ---- */

/* Embedded (the session in this process) or remote (`stockade serve`):
 * commands call the table and never ask which. Each operation prints its
 * own failure and returns 0 or an exit status. */
struct cli_engine;
struct stk_session_docs;
struct stk_create_res;
struct stk_init_proc;
struct stk_session_logs_req;
struct cli_create_args {
    const struct stk_session_docs *docs;
    const char *pool, *owner, *tenant; /* NULL: none */
    bool idle;                         /* start no workload (run -i/-t execs one) */
    bool accepted_only;                /* --wait accepted */
};
enum cli_act { CLI_ACT_STOP, CLI_ACT_START, CLI_ACT_RM };
struct cli_engine_ops {
    int (*create)(struct cli_engine *e, const struct cli_create_args *a,
                  struct stk_create_res *ret);
    /* 0 with the command's exit code in *ret_code, or an exit status */
    int (*exec)(struct cli_engine *e, const char *id, const struct stk_init_proc *proc,
                bool interactive, int *ret_code);
    int (*logs)(struct cli_engine *e, const char *id, const struct stk_session_logs_req *q);
    /* port-forward: check (ret_fd NULL) or open a connection to a declared
     * port; NULL when this engine has no way to ports */
    int (*connect)(struct cli_engine *e, const char *id, uint16_t port, int *ret_fd);
    int (*act)(struct cli_engine *e, enum cli_act act, const char *id, bool force);
    /* records as stk_sb_rec_json() makes them (a json_t *, the caller's) */
    int (*list)(struct cli_engine *e, bool all, struct json_t **ret);
    int (*get)(struct cli_engine *e, const char *id, struct json_t **ret);
    int (*pool_create)(struct cli_engine *e, const char *name, int size,
                       const struct stk_session_docs *docs, const char *tenant);
    /* [{name, size, ready}] */
    int (*pool_list)(struct cli_engine *e, struct json_t **ret);
    int (*pool_rm)(struct cli_engine *e, const char *name);
    /* cp: a file of the sandbox to out_fd; size bytes of data to a file of
     * the sandbox (mode: permission bits) */
    int (*file_read)(struct cli_engine *e, const char *id, const char *path, int out_fd);
    int (*file_write)(struct cli_engine *e, const char *id, const char *path, unsigned mode,
                      const void *data, size_t size);
};
extern const struct cli_engine_ops cli_remote_engine_ops;
/* exec with the terminal's size and, with tty, the caller's TERM (unless
 * env sets one): what `exec` and `run -it` share. */
struct cli_exec_args {
    const char *const *argv;
    size_t argc;
    const char *const *env; /* "K=V" */
    size_t n_env;
    const char *cwd;
    const char *replica; /* exec --replica POD: that replica of an injected sandbox */
    bool tty, interactive;
};
int cli_exec(struct cli_engine *e, const char *id, const struct cli_exec_args *a, int *ret_code);
/* The engine for cmd (its name in messages): remote with --server or
 * $STOCKADE_SERVER, embedded otherwise. */
struct cli_engine *cli_engine_open(const char *cmd);
const struct cli_engine_ops *cli_engine_ops_of(const struct cli_engine *e);
void cli_engine_close(struct cli_engine *e);
static inline void cli_engine_closep(struct cli_engine **e)
{
    cli_engine_close(*e);
}
#define _cleanup_engine_ _cleanup_(cli_engine_closep)

#endif
