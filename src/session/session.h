/* SPDX-License-Identifier: Apache-2.0 */
/*
 * session — long-lived sandboxes: their lifecycle, kept in the store.
 *
 * Every sandbox has a record in the store (src/session/store.h) whose phase
 * tells the truth, and, while it holds anything on the host, a monitor: a
 * detached stockade process that provisioned it (or adopted it after a
 * crash), holds the lock of its directory, collects its output into bounded
 * logs, watches its cgroup counters, deadline and denied egress, and
 * records how it ended. CLI commands (and the gateway) act through the
 * store and the supervisor socket; none of them need the monitor alive to
 * make progress: whoever finds a dead monitor finishes its work
 * (stk_session_reconcile).
 */
#ifndef STK_SESSION_H
#define STK_SESSION_H

#include "boundary/boundary.h"
#include "driver/driver.h"
#include "init/client.h"
#include "session/audit.h"
#include "session/store.h"

/* Each sandbox keeps at most two log files of this size (the current one
 * and the one before): the last 8 to 16 MiB of its output. */
#define STK_LOG_FILE_MAX   (8 << 20)
#define STK_LOG_KEPT_BYTES (2 * STK_LOG_FILE_MAX)
/* How long stop waits for the workload after SIGTERM before SIGKILL. */
#define STK_STOP_GRACE_MS 5000
/* Extra environment variables an exec may add. */
#define STK_EXEC_MAX_ENV 128
/* Warm pool sizes. */
#define STK_POOL_MAX_SIZE 64
/* How long a refill or pool rm waits for the pool's lock (pool.c) before it
 * names the holder and gives up. A holder keeps it for one member's create
 * (seconds; 14.5 s median under gVisor on a loaded 2-core host); a waiter
 * waits for the creates still missing, at most a pool's size of them. */
#define STK_POOL_LOCK_WAIT_MS (15 * 60 * 1000)

struct stk_session;

/* Opens the store under p->state_dir and recovers what crashed stockade
 * processes left (stk_session_reconcile). actor names the caller in audit
 * records ("uid=0(root)" when NULL). */
int stk_session_open(const struct stk_local_paths *p, const char *actor, struct stk_session **ret,
                     struct stk_error **err);
/* The same for a backend: STK_BACKEND_LOCAL (stk_session_open) or
 * STK_BACKEND_SIM, the simulator: the same records, phases, audit trail and
 * pools, with every outcome modelled from the boundary and the spec's sim
 * hints and nothing executed (docs/sim.md); p->run_dir is not used. A state
 * directory belongs to one backend (<state_dir>/backend, written on first
 * use; a directory with a store but no such file is local's): opening it
 * with another is -EEXIST with a message. The gateway's `serve --backend`
 * opens its session with this. */
int stk_session_open_backend(const struct stk_local_paths *p, enum stk_backend backend,
                             const char *actor, struct stk_session **ret, struct stk_error **err);
/* What only some backends need. */
struct stk_session_opts {
    const char *kubeconfig; /* kubernetes: NULL: $KUBECONFIG, ~/.kube/config, in-cluster */
    const char *context;    /* kubernetes: NULL: the kubeconfig's current context */
};
/* stk_session_open_backend with opts (NULL: none): the driver of `backend`
 * is opened with {state_dir, run_dir, kubeconfig, context}; a backend not
 * built into this stockade is -EOPNOTSUPP with a message. */
int stk_session_open_opts(const struct stk_local_paths *p, enum stk_backend backend,
                          const char *actor, const struct stk_session_opts *opts,
                          struct stk_session **ret, struct stk_error **err);
enum stk_backend stk_session_backend(const struct stk_session *s);
/* Only the check of stk_session_open_backend, for readers that open the
 * store themselves (`stockade audit`): -EEXIST when an existing state
 * directory belongs to another backend; writes nothing. */
int stk_session_backend_check(const char *state_dir, enum stk_backend want, struct stk_error **err);
#define STK_SESSION_BACKEND_FILE "backend"
void stk_session_close(struct stk_session *s);
struct stk_store *stk_session_store(struct stk_session *s);

/* A sandbox's documents as text: the Sandbox and, optionally, the
 * EnvironmentConfig it was resolved with. The store keeps both, so the
 * boundary can be resolved again by any process, any time later. */
struct stk_session_docs {
    const char *spec_file, *spec;
    size_t spec_len;
    const char *env_file, *env; /* NULL: none */
    size_t env_len;
};

/* A resolved sandbox with the documents that keep its strings alive. */
struct stk_session_boundary {
    struct stk_docset *ds, *env_ds;
    const struct stk_envconfig *env;
    struct stk_boundary *b;
};
/* Resolves docs; diagnostics go to diags. Returns -EINVAL when invalid. */
int stk_session_resolve(const struct stk_session_docs *d, struct stk_diags *diags,
                        struct stk_session_boundary *ret);
void stk_session_boundary_release(struct stk_session_boundary *sb);

struct stk_create_req {
    struct stk_session_docs docs;
    const char *pool; /* claim a warm member of this pool; cold create when it is empty */
    bool pool_member; /* instead: create an idle member of `pool` (no workload) */
    bool idle;        /* start no workload (verify FILE), even when the spec has one */
    /* ready once the backend accepted the sandbox (kubernetes: every object
     * applied), not once its workload runs; create --wait accepted */
    bool accepted_only;
    const char *owner; /* NULL: the actor */
    /* NULL: the spec's metadata.namespace. The gateway records the tenant
     * its authorization decided on. */
    const char *tenant;
};
struct stk_create_res {
    char id[64];
    bool warm;      /* a pool member was claimed */
    char note[512]; /* e.g. why a pool claim fell back to a cold create */
};
/* Creates a sandbox and returns once it is ready (its workload started),
 * or once it failed (then the record says why and nothing stays up). */
int stk_session_create(struct stk_session *s, const struct stk_create_req *req,
                       struct stk_create_res *ret, struct stk_error **err);

/* Runs argv in a ready sandbox; *ret_code is the process's exit code
 * (128+N when killed by signal N). The audit trail records argv and the
 * caller. */
/* A TCP connection to a declared port (spec.ports) of a ready sandbox,
 * recorded in its trail (event port_connect, details {port, via}). EPERM: the
 * port is not declared; EOPNOTSUPP: the backend has no way in. */
int stk_session_connect(struct stk_session *s, const char *id, uint16_t port, const char *via,
                        int *ret_fd, struct stk_error **err);
/* The same checks, without connecting or recording anything. */
int stk_session_port_check(struct stk_session *s, const char *id, uint16_t port,
                           struct stk_error **err);
int stk_session_exec(struct stk_session *s, const char *id, const struct stk_init_proc *proc,
                     int in_fd, int out_fd, int err_fd, int *ret_code, struct stk_error **err);

/* Files (`stockade cp`, the gateway's files API): one regular file per
 * transfer, at most STK_FILE_MAX bytes, through the sandbox's own
 * supervisor; symbolic links inside the sandbox are never followed. Every
 * transfer is an audit record (file_read / file_write: direction, path,
 * size; never the content). A read's content is written to out_fd only
 * after its record. A write reads exactly size bytes from in_fd (mode:
 * permission bits, at most 0777) into a new file renamed over path at the
 * end: a failed write changes nothing. */
#define STK_FILE_MAX STK_INIT_FILE_MAX
int stk_session_file_read(struct stk_session *s, const char *id, const char *path, int out_fd,
                          uint64_t *ret_size, struct stk_error **err);
int stk_session_file_write(struct stk_session *s, const char *id, const char *path, unsigned mode,
                           int in_fd, uint64_t size, struct stk_error **err);

/* The live instances of a sandbox injected into a workload (one per
 * replica that carries it) as JSON array text, *ret the caller's; *ret
 * NULL when the sandbox is not injected. */
int stk_session_replicas(struct stk_session *s, const char *id, char **ret, struct stk_error **err);

int stk_session_stop(struct stk_session *s, const char *id, struct stk_error **err);
int stk_session_start(struct stk_session *s, const char *id, struct stk_error **err);
/* force: also a sandbox that is still running (it is stopped first). */
int stk_session_rm(struct stk_session *s, const char *id, bool force, struct stk_error **err);

/* Copies the sandbox's logs, oldest first, to out_fd / err_fd by stream.
 * since_ms: only output recorded at or after (unix ms; 0: all). follow:
 * keep copying until the sandbox ends. */
/* What `logs` asks for beyond that. */
struct stk_session_logs_req {
    int64_t since_ms; /* 0: from the start */
    int64_t until_ms; /* 0: to the end; else only output recorded at or before */
    int64_t tail;     /* -1: all; else only the last N lines (stdout and stderr together) */
    bool timestamps;  /* each line begins with the RFC 3339 time it was recorded */
    bool follow;
};
int stk_session_logs_req(struct stk_session *s, const char *id,
                         const struct stk_session_logs_req *req, int out_fd, int err_fd,
                         struct stk_error **err);
int stk_session_logs(struct stk_session *s, const char *id, int64_t since_ms, bool follow,
                     int out_fd, int err_fd, struct stk_error **err);

/* Proves the contract from inside: runs stockade-probe in the ready
 * sandbox and judges every claim of its boundary (src/verify). to: the
 * destinations to try, each judged against the egress model. replica: the
 * replica Pod of an injected sandbox to probe (NULL: its only one). */
struct stk_verify_target;
struct stk_verify_report;
int stk_session_verify(struct stk_session *s, const char *id, const struct stk_verify_target *to,
                       size_t n_to, int timeout_ms, const char *replica,
                       struct stk_verify_report **ret, struct stk_error **err);

/* Finishes what dead monitors left: a create or start cut short is rolled
 * back (failed), a stop or delete is completed, a running sandbox whose
 * monitor died is adopted by a new monitor. Every action is audited. */
int stk_session_reconcile(struct stk_session *s, struct stk_error **err);

/* ---- internal verbs: the processes stockade starts for itself ---- */
#define STK_SESSION_MONITOR_VERB "__monitor"
#define STK_SESSION_REFILL_VERB  "__pool-refill"
/* A pool refill starts this long after the claim that asked for it (it
 * runs at STK_REFILL_NICE, driver.h). */
#define STK_REFILL_DELAY_MS 100
/* `stockade __monitor MODE ID` with the lock on fd 3 and the report pipe on
 * fd 4. Returns the exit status. */
int stk_session_monitor_main(const struct stk_local_paths *p, enum stk_backend backend,
                             const struct stk_session_opts *opts, const char *id, const char *mode,
                             int lock_fd, int report_fd);

/* ---- warm pools ---- */
int stk_pool_create(struct stk_session *s, const char *name, int size,
                    const struct stk_session_docs *tmpl, struct stk_error **err);
/* A pool that belongs to a tenant and an owner (the gateway's, after a
 * create decision on the template): its members are recorded with them. */
struct stk_pool_req {
    const char *name;
    int size;
    const struct stk_session_docs *tmpl;
    const char *tenant;  /* NULL: the template's namespace */
    const char *project; /* NULL: none */
    const char *owner;   /* NULL: the actor */
};
int stk_pool_create_owned(struct stk_session *s, const struct stk_pool_req *req,
                          struct stk_error **err);
/* Pool names are unique per tenant: tenant NULL finds the one pool of that
 * name in any tenant (-ENOTUNIQ when several have one). */
int stk_pool_rm(struct stk_session *s, const char *tenant, const char *name,
                struct stk_error **err);
/* Creates members until the pool has `size` of them ready or starting. */
int stk_pool_refill(struct stk_session *s, const char *tenant, const char *name,
                    struct stk_error **err);
/* Counts the unclaimed members that are ready of the pool (its record's
 * tenant and name). */
int stk_pool_ready(struct stk_session *s, const char *tenant, const char *name, size_t *ret,
                   struct stk_error **err);

/* What the session's backend enforces for b, from its driver (explain,
 * the gateway's contract of a record). -EINVAL when b cannot run there. */
int stk_session_facts(struct stk_session *s, const struct stk_boundary *b,
                      struct stk_driver_facts *ret, struct stk_error **err);
/* The same for a recorded sandbox: with the runtime its record names. */
int stk_session_record_facts(struct stk_session *s, const struct stk_sb_rec *rec,
                             const struct stk_boundary *b, struct stk_driver_facts *ret,
                             struct stk_error **err);
/* Removes what this state directory's sandboxes left on the backend and no
 * record keeps (the driver's gc); -EOPNOTSUPP when it has none. */
int stk_session_gc(struct stk_session *s, size_t *ret_removed, struct stk_error **err);

#endif
