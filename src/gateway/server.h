/* SPDX-License-Identifier: Apache-2.0 */
/* Internal to the HTTP server: its state and the pieces its files share
 * (http.c dispatches, job.c runs blocking session calls in children,
 * events.c streams the audit trail). */
#ifndef STK_GATEWAY_SERVER_H
#define STK_GATEWAY_SERVER_H

#include "gateway/http.h"
#include "gateway/internal.h"
#include "gateway/worker.h"
#include "session/session.h"

#include <event2/event.h>
#include <event2/http.h>
#include <openssl/ssl.h>
#include <sys/types.h>

/* statuses counted per route in /metrics */
#define GW_METRIC_STATUSES 16

struct gw_call;
struct gw_job;
struct gw_sub;
struct gw_exec;
struct gw_gate;

/* A client connection that sent a request. A call that outlives its
 * request callback (a job, a stream, an exec) is registered on it, so the
 * connection's close ends the call and the call never outlives it. */
struct gw_conn {
    struct evhttp_connection *evcon;
    struct gw_call *call; /* the call in progress on it, or NULL */
    struct gw_conn *next;
};

struct stk_gw {
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    SSL_CTX *ssl;
    const struct stk_gw_auth *auth;
    char state_dir[4096], run_dir[4096];
    char kubeconfig[4096], context[256];
    struct stk_local_paths paths;
    enum stk_backend backend;
    struct stk_session *session; /* the server's own: reads and decisions */
    /* read decisions waiting for the group commit (docs/gateway.md) */
    struct gw_audit_pending {
        char sandbox[64];
        char actor[256];
        char *details;
    } * audit_q;
    size_t audit_n;
    struct event *ev_audit; /* the commit, GW_AUDIT_BATCH_MS after the first waiting one */
    /* audit budgets: denials per principal and per target, failed
     * authentications per source and in all (docs/gateway.md, "Limits") */
    struct gw_ratelim rl_principal, rl_target, rl_source, rl_authn_all;
    struct event *ev_int, *ev_term, *ev_chld, *ev_tick, *ev_stop, *ev_hup;
    void (*on_hup)(void *ud);
    void *on_hup_ud;
    int port;
    int timeout_s;
    FILE *access_log;    /* stderr, a file of --access-log, or NULL (off) */
    char unix_path[108]; /* listening on a Unix socket: removed at the end */
    bool closing;
    struct gw_conn *conns;
    size_t n_conns;
    /* every open connection, oldest first (gate.c) */
    struct gw_gate *gates, *gates_tail;
    size_t n_open;
    int64_t body_bytes; /* request bodies passed on and not yet answered */
    struct gw_job *jobs;
    struct gw_exec *execs;
    size_t n_workers; /* jobs and exec relays running (GW_MAX_WORKERS) */
    struct gw_sub *subs;
    size_t n_subs;
    int64_t tick_ms; /* CLOCK_MONOTONIC ms of the last tick */
    /* metrics */
    uint64_t requests[_GW_ROUTE_N + 1][GW_METRIC_STATUSES];
    int statuses[GW_METRIC_STATUSES];
    uint64_t decisions[2]; /* deny, allow */
};

/* One request from authentication to the reply. */
struct gw_call {
    struct stk_gw *g;
    struct evhttp_request *req; /* NULL once the client went away */
    struct gw_conn *conn;
    enum gw_route route;
    char arg[64];
    struct stk_principal who;
    char actor[256];     /* the identity when the policy matched one, else the principal */
    char principal[256]; /* the principal ("token:ID", ...): the key of its audit budget */
    bool claim_pool;     /* a 404 now is the claimed pool's */
    int64_t t0_ms;       /* when the request arrived (the access log's duration) */
    struct gw_job *job;
    struct gw_sub *sub;
};

/* Denial records per principal and per target, a minute. */
#define GW_DENY_PER_MIN 30
/* RFC 2253 subjects longer than this - 1 are refused. */
#define GW_CERT_SUBJECT_MAX 512

/* The request body as received, NUL-terminated (caller frees). */
char *gw_call_body(struct gw_call *c, size_t *ret_len);
/* Authenticates the credentials of a request's headers and connection:
 * 0, -ENOENT (none), -EACCES (invalid; recorded, within the source's
 * budget). Two Authorization headers and an over-long certificate subject
 * are invalid. */
int gw_authenticate(struct stk_gw *g, struct bufferevent *bev, const char *authz, size_t n_authz,
                    struct stk_principal *ret);
/* The verified client certificate's subject: 1, 0 (none), -E2BIG. */
int gw_cert_subject(struct bufferevent *bev, char *buf, size_t n);
void gw_audit_authn_failure(struct stk_gw *g, struct bufferevent *bev, const char *why);
/* Records a denial the gate made before a body was read (hidden, global
 * chain, budgeted like every denial). */
void gw_gate_denied(struct stk_gw *g, const struct stk_principal *who, enum stk_verb verb,
                    const char *object, bool known);
/* The gate's decision on verb on sandbox arg (an id, or a name among those
 * the caller may see) from a request's head, before its body is read:
 * GW_E_NOT_FOUND or GW_E_FORBIDDEN (recorded as the handler would), or -1
 * to let the handler decide (allowed, or an answer that needs it). */
int gw_gate_target(struct stk_gw *g, const struct stk_principal *who, enum stk_verb verb,
                   const char *arg);
/* The gate over a new connection's bufferevent (under is taken). */
struct bufferevent *gw_gate_new(struct stk_gw *g, struct bufferevent *under);
/* Request bodies passed on and not yet answered, in all. */
#define GW_BODY_BYTES_IN_FLIGHT (64 * 1024 * 1024)
/* A head longer than this is evhttp's to refuse. */
#define GW_GATE_MAX_HEAD (STK_GW_MAX_HEADERS + 8192)

/* Replies and frees the call (json is stolen). */
void gw_reply_json(struct gw_call *c, int status, json_t *json);
STK_PRINTF(3, 4) void gw_reply_error(struct gw_call *c, enum gw_err code, const char *fmt, ...);
void gw_call_free(struct gw_call *c);
/* Commits the read decisions waiting for the group commit. */
void gw_audit_flush(struct stk_gw *g);
void gw_count(struct stk_gw *g, enum gw_route route, int status);
/* One access log line (docs/api.md, "Access log"): method, path (no query),
 * status, who ("-" before authentication) and the time since t0_ms. */
void gw_access_log(struct stk_gw *g, const char *method, const char *path, int status,
                   const char *who, int64_t t0_ms);
/* A call's answer is decided: counted and logged. A stream is logged when
 * its answer starts and counted when it ends. */
void gw_call_answered(struct gw_call *c, int status);
void gw_call_log(struct gw_call *c, int status);
/* "token:ID", "jwt:ISS#SUB", "cert:SUBJECT", "anonymous". */
void gw_principal_name(const struct stk_principal *p, char *buf, size_t n);
/* The values of WWW-Authenticate on a 401 (RFC 6750): no credentials, and
 * credentials that did not verify. */
#define GW_WWW_AUTH         "Bearer realm=\"stockade\""
#define GW_WWW_AUTH_INVALID "Bearer realm=\"stockade\", error=\"invalid_token\""
int64_t gw_now_ms(void);
/* Makes the call's connection live as long as its stream does. */
void gw_stream_begin(struct gw_call *c);
/* Ends the stream's reply. */
void gw_stream_end(struct gw_call *c);

/* Runs job ({"op": ..., its fields}, stolen) in a worker process
 * (worker.c) acting with the caller's identity as its audit actor, so the
 * event loop never waits on a create, a stop grace period or a follow.
 * stream: the worker's bytes are relayed as a chunked 200 reply with
 * backpressure; else its JSON reply ({"status":N,"body":...}) is sent. */
/* Operations that run in a process of their own (jobs, exec relays) at
 * once: past it a request gets 503 before any process starts. */
#define GW_MAX_WORKERS 128
/* -EAGAIN at GW_MAX_WORKERS. */
int gw_job_start(struct gw_call *c, json_t *job, bool stream);
/* The files API's job: a memfd is the worker's fd 5, holding the content
 * of a write (data: the request's body, drained into it), or empty for a
 * read to fill (data NULL). A 200 answer of a read ({"path","size"}) is
 * replied as the memfd's bytes. */
int gw_job_start_file(struct gw_call *c, json_t *job, struct evbuffer *data);
#define GW_FILE_PATH_MAX 4096
/* Starts `stockade __gateway-worker` with the job on fd 3 and fds[i] on
 * 4 + i (job.c; the worker's side is worker.c, in the executable). */
int gw_worker_spawn(struct stk_gw *g, const char *actor, json_t *job, const int *fds, size_t n,
                    pid_t *ret);
/* The client went away: a stream's child is stopped, an operation's child
 * finishes (its result is dropped). */
void gw_job_detach(struct gw_job *j);
void gw_jobs_reap(struct stk_gw *g);

/* In a child of the server: closes every descriptor from 3 up except keep
 * (other clients' sockets, the listener, the parent's database), so a long
 * child never holds a connection the server closed. */
void gw_child_fds(const int *keep, size_t n);
/* ... and puts the signals libevent handles back to their defaults. */
void gw_child_signals(void);

/* POST /v1/sandboxes/{id}:exec, after authorization (exec.c). */
void gw_exec_start(struct gw_call *c, const char *id);
/* The connection leaves the event loop: a forked child runs child() with
 * the client's socket (and its TLS session, NULL on plain HTTP) and ends;
 * the server frees the connection once it has (exec.c). The answer is
 * counted as a 101. */
void gw_handover(struct gw_call *c,
                 void (*child)(struct gw_call *c, int sock, SSL *ssl, int done_w, void *arg),
                 void *arg);
/* GET /v1/sandboxes/{id}/ports/{port}/..., after authorization (ports.c). */
void gw_port_start(struct gw_call *c, const char *id, uint16_t port, const char *rest);
void gw_execs_stop(struct stk_gw *g);
void gw_exec_free_all(struct stk_gw *g);

/* SSE: starts the stream of GET /v1/events. */
void gw_events_subscribe(struct gw_call *c, int64_t after_seq);
void gw_events_tick(struct stk_gw *g);
void gw_sub_detach(struct gw_sub *s);
void gw_events_close_all(struct stk_gw *g);

/* A stored sandbox's namespace for authorization: the record keeps the
 * documents, not the namespace, so its spec is resolved as create resolved
 * it. NULL when there is no spec or it no longer resolves. Caller frees. */
char *gw_record_namespace(const struct stk_sb_rec *r);

/* Asks the policy; records the decision; on deny replies (404 when hidden,
 * else 403) and returns false. object: "sandbox/ID", "pools", ... */
bool gw_authorize(struct gw_call *c, enum stk_verb verb, const struct stk_authz_target *t,
                  const char *sandbox_id, const char *object, struct stk_authz_decision *ret);
/* Like gw_authorize, without a reply: for filtering rows and events. */
bool gw_decide(struct gw_call *c, enum stk_verb verb, const struct stk_authz_target *t,
               const char *sandbox_id, const char *object, struct stk_authz_decision *ret);

#endif
