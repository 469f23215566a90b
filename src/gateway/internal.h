/* SPDX-License-Identifier: Apache-2.0 */
/* Internal to the gateway's HTTP layer: the pure parts (routes, bodies,
 * errors) that the server, the unit tests and the fuzz target share. */
#ifndef STK_GATEWAY_INTERNAL_H
#define STK_GATEWAY_INTERNAL_H

#include "gateway/gateway.h"

#include "session/session.h"

#include <jansson.h>
#include <sys/types.h>

enum gw_route {
    GW_HEALTHZ,
    GW_METRICS,
    GW_WHOAMI,
    GW_SB_LIST,
    GW_SB_CREATE,
    GW_SB_GET,
    GW_SB_DELETE,
    GW_SB_STOP,
    GW_SB_START,
    GW_SB_EXEC,
    GW_SB_LOGS,
    GW_SB_AUDIT,
    GW_SB_CONTRACT,
    GW_POOL_LIST,
    GW_POOL_CREATE,
    GW_POOL_DELETE,
    GW_EVENTS,
    GW_POOL_GET,
    GW_SB_FILE_GET,
    GW_SB_FILE_PUT,
    GW_SB_PORT,
    _GW_ROUTE_N
};

struct gw_route_def {
    const char *method;  /* "GET", "POST", "DELETE" */
    const char *pattern; /* "{}" matches one id or name */
};
extern const struct gw_route_def gw_routes[_GW_ROUTE_N];

/* Finds the route of method and path (no query). *ret_arg gets the "{}"
 * part. -ENOENT when no route has the path, -EPERM when one has it with
 * another method. */
int gw_route_parse(const char *method, const char *path, enum gw_route *ret, char ret_arg[64]);
/* "/v1/sandboxes/{id}/ports/{port}[/REST]": the id, the port (1..65535) and
 * the rest of the path the sandbox gets ("/" when none). -ENOENT otherwise. */
int gw_port_path(const char *path, char ret_id[64], uint16_t *ret_port, const char **ret_rest);
/* The methods path takes, as an Allow header lists them ("GET, DELETE");
 * "" when no route matches it. */
void gw_route_allow(const char *path, char *buf, size_t n);

/* The stable error codes of docs/api.md and their HTTP statuses. */
enum gw_err {
    GW_E_BAD_REQUEST,
    GW_E_UNAUTHENTICATED,
    GW_E_FORBIDDEN,
    GW_E_NOT_FOUND,
    GW_E_METHOD,
    GW_E_CONFLICT,
    GW_E_TOO_LARGE,
    GW_E_MEDIA_TYPE,
    GW_E_INTERNAL,
    GW_E_UNAVAILABLE,
    GW_E_NOT_IMPLEMENTED,
    _GW_E_N
};
extern const char *const gw_err_names[_GW_E_N];
extern const int gw_err_status[_GW_E_N];
/* The reason phrase of the statuses the gate answers with. */
const char *gw_status_phrase(int status);
/* {"error":{"code":..,"message":..}} */
json_t *gw_error_json(enum gw_err code, const char *message);
/* The error a session call's errno maps to. */
enum gw_err gw_err_of_errno(int e);
/* The same for the files API: what a path inside a sandbox can be (not
 * writable, too large, a directory, a symbolic link) as well. */
enum gw_err gw_err_of_file_errno(int e);

/* Request bodies: a JSON object whose fields a table names; anything else is
 * an error that names it. */
enum gw_ftype { GW_F_STRING, GW_F_INT, GW_F_BOOL, GW_F_ARRAY };
struct gw_field {
    const char *name;
    enum gw_ftype type;
    bool required;
    size_t off; /* of a `const char *` (borrowed from the root), an int64_t, a bool or a
                 * json_t * (borrowed) */
};
/* *ret_root keeps the strings alive. why: "line 3, column 7: ..." or what
 * is wrong with which field. */
int gw_body_parse(const char *body, size_t len, const struct gw_field *f, size_t n, void *out,
                  json_t **ret_root, char *why, size_t why_n);

struct gw_create_body {
    const char *spec, *env, *pool, *owner, *tenant;
};
int gw_create_body_parse(const char *body, size_t len, struct gw_create_body *ret,
                         json_t **ret_root, char *why, size_t why_n);

struct gw_pool_body {
    const char *name, *spec, *env, *tenant, *owner;
    int64_t size;
};
int gw_pool_body_parse(const char *body, size_t len, struct gw_pool_body *ret, json_t **ret_root,
                       char *why, size_t why_n);

#define GW_EXEC_MAX_ARGV 256
struct gw_exec_body {
    const char *argv[GW_EXEC_MAX_ARGV + 1];
    size_t argc;
    const char *env[STK_EXEC_MAX_ENV];
    size_t n_env;
    const char *cwd;
    bool tty;
    unsigned short rows, cols; /* the terminal's size; 0: unknown */
};
/* {"argv": [...], "tty": bool, "env": ["K=V"], "cwd": "/abs", "rows": N, "cols": N}
 * (rows and cols 1..4096, both or neither) */
int gw_exec_body_parse(const char *body, size_t len, struct gw_exec_body *ret, json_t **ret_root,
                       char *why, size_t why_n);

/* "[A-Za-z0-9._-]{1,63}": ids, names and pools. */
bool gw_name_ok(const char *s);
/* A query value as unix milliseconds ("since"). */
int gw_parse_ms(const char *s, int64_t *ret);

/* The head of a request (request line and headers), as the gate reads it
 * before any body: what authentication and the body's size need. */
struct gw_head {
    char method[8];
    char path[128];         /* the target without its query (cut: no route is that long) */
    int64_t content_length; /* -1: none */
    bool chunked;           /* a Transfer-Encoding header */
    char authorization[4200];
    size_t n_authorization; /* Authorization headers */
};
/* The length of the head in buf (through its blank line), or -1 when it
 * has not all arrived. */
ssize_t gw_head_end(const char *buf, size_t n);
/* Parses a head gw_head_end found. -EINVAL: malformed, a folded line, or
 * two Content-Lengths that disagree. */
int gw_head_parse(const char *buf, size_t n, struct gw_head *ret);

/* Audit budgets (ratelim.c): at most per_window records per key in each
 * window of window_ms; the rest are counted and reported by the next one. */
#define GW_RL_SLOTS 4096
#define GW_RL_PROBE 16
struct gw_rl_slot {
    uint8_t key[16]; /* SHA-256 of the key, truncated */
    bool used;
    unsigned n;
    int64_t window_ms;
    uint64_t suppressed;
};
struct gw_ratelim {
    unsigned per_window;
    int64_t window_ms;
    uint64_t evicted; /* suppressed counts of keys pushed out of the table */
    struct gw_rl_slot slots[GW_RL_SLOTS];
};
/* true: write the record, *ret_suppressed (may be NULL) being how many of
 * this key's were dropped since its last one; false: drop it (counted). */
bool gw_ratelim_take(struct gw_ratelim *rl, const char *key, int64_t now_ms,
                     uint64_t *ret_suppressed);
/* Gives back a take whose record was not written after all (another key's
 * budget dropped it), with the suppressed count that take returned. */
void gw_ratelim_undo(struct gw_ratelim *rl, const char *key, int64_t now_ms, uint64_t suppressed);

#endif
