/* SPDX-License-Identifier: Apache-2.0 */
/*
 * store — stockade's durable state: sandboxes, warm pools and the audit trail
 * (audit.h) in one SQLite database, <state_dir>/stockade.db.
 *
 * Several processes use it at once (CLI commands, one monitor per sandbox):
 * the database runs in WAL mode so readers never wait for a writer, every
 * read-modify-write runs in one BEGIN IMMEDIATE transaction taken under an
 * exclusive lock file (waited for up to STK_STORE_LOCK_WAIT_MS, fairly), so
 * two writers never interleave, and SQLite's own locks (a WAL recovery, a
 * last connection's checkpoint) are waited for up to STK_STORE_BUSY_MS. A connection must not
 * cross fork(): open the store in the process that uses it.
 */
#ifndef STK_SESSION_STORE_H
#define STK_SESSION_STORE_H

#include "base/base.h"

#define STK_STORE_DB_FILE   "stockade.db"
#define STK_STORE_LOCK_FILE "stockade.lock"
#define STK_STORE_BUSY_MS   5000
/* How long a writer waits for the lock file (store_lock) before it names the
 * holder and gives up. A write transaction holds it for one commit (the
 * WAL's fsync, the audit head file's): 8 to 23 ms per commit here with 100
 * concurrent writers on a loaded 2-core host (docs/sessions.md, "Locks"); a
 * writer behind one operation of every live sandbox (1024) waits about
 * 1024 commits, 24 s at 23 ms. */
#define STK_STORE_LOCK_WAIT_MS  60000
#define STK_STORE_SCHEMA        6             /* PRAGMA user_version this code writes */
#define STK_STORE_MAX_LIVE      10000         /* sandboxes not yet deleted */
#define STK_STORE_MAX_DOC       (1024 * 1024) /* spec, env, template_spec: as the docset bound */
#define STK_STORE_MAX_JSON      (64 * 1024)   /* labels, result */
#define STK_STORE_MAX_POOL      1000          /* a pool's size */
#define STK_STORE_MAX_SAME_NAME 256           /* live sandboxes one name lookup returns */

struct stk_store;

/* Opens (creating the directory 0700 and the database 0600 when missing) and
 * migrates the schema to STK_STORE_SCHEMA. -EPROTO when the database was
 * written by a newer stockade. */
int stk_store_open(const char *state_dir, struct stk_store **ret, struct stk_error **err);
/* Like stk_store_open, but -ENOENT (creating nothing) when the database does
 * not exist: for commands that only read, such as `stockade audit`. */
int stk_store_open_existing(const char *state_dir, struct stk_store **ret, struct stk_error **err);
void stk_store_close(struct stk_store *st);
/* How long this connection's writers wait for the lock file (default, and
 * for ms <= 0, STK_STORE_LOCK_WAIT_MS). */
void stk_store_set_lock_wait_ms(struct stk_store *st, int ms);
/* Frees what the connection caches (pages, lookaside) while it stays open:
 * a long-lived idle process (the monitor) keeps no copy of the database. */
void stk_store_release_memory(struct stk_store *st);
static inline void stk_store_closep(struct stk_store **st)
{
    stk_store_close(*st);
}
#define _cleanup_store_ _cleanup_(stk_store_closep)
const char *stk_store_dir(const struct stk_store *st);

/* ---- sandboxes ----------------------------------------------------------- */

enum stk_sb_phase {
    STK_SB_PENDING,
    STK_SB_PROVISIONING,
    STK_SB_READY,
    STK_SB_STOPPING,
    STK_SB_STOPPED,
    STK_SB_STARTING,
    STK_SB_SUCCEEDED,
    STK_SB_FAILED,
    STK_SB_KILLED,
    STK_SB_DELETING,
    STK_SB_DELETED,
    _STK_SB_N
};
extern const char *const stk_sb_phase_names[_STK_SB_N]; /* "pending", ... */

/*
 * The allowed transitions (from → to); nothing else, and never to itself:
 *
 *   pending       → provisioning, failed, deleting
 *   provisioning  → ready, succeeded, failed, killed, deleting
 *   ready         → stopping, succeeded, failed, killed, deleting
 *   stopping      → stopped, succeeded, failed, killed, deleting
 *   stopped       → starting, deleting
 *   starting      → ready, succeeded, failed, killed, deleting
 *   succeeded     → deleting
 *   failed        → deleting
 *   killed        → deleting
 *   deleting      → deleted
 *   deleted       → (nothing)
 *
 * Every live phase may go to deleting (`rm -f`); a workload can end
 * (succeeded|failed|killed) whenever something runs; pending fails before
 * anything runs, so it cannot be killed or succeed. A delete that fails
 * midway stays in deleting and is retried; there is no way back.
 */
bool stk_sb_transition_ok(enum stk_sb_phase from, enum stk_sb_phase to);
/* succeeded|failed|killed|deleted: the workload will not run again. */
bool stk_sb_phase_terminal(enum stk_sb_phase p);

/* Every fixed-size field must be NUL-terminated inside its array; the store
 * also checks the owned strings against STK_STORE_MAX_DOC / _JSON. */
struct stk_sb_rec {
    char id[64];   /* unique, [A-Za-z0-9._-], e.g. "agent-3f2a9c1b" */
    char name[64]; /* metadata.name (not unique across deleted ones) */
    char tenant[64], project[64], owner[128];
    char runtime[16]; /* "" | crun | runc | runsc | sim */
    char pool[64];    /* "" unless a pool member or claimed from one */
    bool pool_member; /* true while it is an unclaimed warm pool member */
    enum stk_sb_phase phase;
    char reason[64]; /* kill reason (memory_exceeded, ...) or a failure reason; "" */
    char message[512];
    int exit_code;                  /* -1 unknown */
    int64_t created_ms, updated_ms; /* unix ms; the store sets updated_ms */
    int monitor_pid;                /* 0 none */
    int64_t monitor_start;          /* its /proc start time (pid reuse) */
    int init_pid;                   /* 0 none */
    char *spec;                     /* the Sandbox document text as given (owned, may be NULL) */
    char *env;                      /* the EnvironmentConfig text used (owned, may be NULL) */
    char *labels;                   /* JSON object text (owned, may be NULL) */
    char *result; /* JSON object text: the last run's result (owned, may be NULL) */
    char *handle; /* the driver's handle (driver.h), JSON text (owned, may be NULL) */
    /* The namespace spec and env resolve to ("" none), written with them;
     * namespace_known false for a record from before schema 6, whose
     * documents say it. In the brief list too. */
    char namespace[64];
    bool namespace_known;
};
void stk_sb_rec_free(struct stk_sb_rec *r); /* frees the owned strings */
/* The record as the CLI (`get -o json`, `ls -o json`) and the gateway show
 * it: a jansson json_t * (void * keeps jansson out of this header). full:
 * also message, labels and result. */
void *stk_sb_rec_json(const struct stk_sb_rec *r, bool full);
void stk_sb_recs_free(struct stk_sb_rec *r, size_t n); /* a list and its array */

/* created_ms 0 means now. -EEXIST on a duplicate id, -EDQUOT beyond
 * STK_STORE_MAX_LIVE live sandboxes, -EINVAL naming the field that is too long
 * or malformed. Appends no audit record (the caller knows the actor: use
 * stk_store_sb_set_phase or stk_audit_append). */
int stk_store_sb_insert(struct stk_store *st, const struct stk_sb_rec *r, struct stk_error **err);
/* By id, else by name among sandboxes that are not deleted. -ENOENT; -EINVAL
 * "ambiguous" when a name matches several. */
int stk_store_sb_get(struct stk_store *st, const char *id_or_name, struct stk_sb_rec *ret,
                     struct stk_error **err);
/* From now on, this connection's inserts and claims refuse a name a live
 * sandbox of the same tenant has (-EEXIST): the gateway's names are unique
 * per tenant, as Kubernetes' are per namespace. Embedded mode (one user)
 * keeps reusable names. */
void stk_store_unique_names(struct stk_store *st, bool on);
/* Whether stk_store_unique_names is on. */
bool stk_store_names_per_tenant(const struct stk_store *st);
/* By id only; -ENOENT (no message). */
int stk_store_sb_get_id(struct stk_store *st, const char *id, struct stk_sb_rec *ret,
                        struct stk_error **err);
/* The live sandboxes (unclaimed pool members aside) named `name`, of every
 * tenant, oldest first, at most STK_STORE_MAX_SAME_NAME: the gateway picks
 * among those the caller may see (see stk_store_unique_names). */
int stk_store_sb_find_name(struct stk_store *st, const char *name, struct stk_sb_rec **ret,
                           size_t *ret_n, struct stk_error **err);
/* Oldest first. Free with stk_sb_recs_free. */
int stk_store_sb_list(struct stk_store *st, bool include_deleted, struct stk_sb_rec **ret,
                      size_t *ret_n, struct stk_error **err);
/* The same without what a listing does not show: spec, env, labels, result
 * and handle are NULL, and SQLite reads none of their pages. What ls, gc,
 * pools and metrics read (a record's documents may be a MiB each). */
int stk_store_sb_list_brief(struct stk_store *st, bool include_deleted, struct stk_sb_rec **ret,
                            size_t *ret_n, struct stk_error **err);
/* The ids of sandboxes whose phase names an operation in flight (pending,
 * provisioning, ready, stopping, starting, deleting). The caller frees *ret. */
int stk_store_sb_in_flight(struct stk_store *st, char (**ret)[64], size_t *ret_n,
                           struct stk_error **err);
/*
 * Compare-and-set of the phase in one IMMEDIATE transaction together with an
 * audit record: both commit or neither does. expect: the phase the caller
 * believes the sandbox is in, or -1 for any; -ESTALE when it is not, -EINVAL
 * when the transition is not allowed, -ENOENT when there is no such sandbox.
 * reason/message: NULL leaves them, "" clears them. audit_event: e.g.
 * "started", "stopped", "killed", "exited", "deleted", or NULL for no record;
 * audit_details_json: a JSON object or NULL; "from" and "to" (and "reason"
 * when given) are added unless present.
 */
int stk_store_sb_set_phase(struct stk_store *st, const char *id, int expect, enum stk_sb_phase to,
                           const char *reason, const char *message, const char *actor,
                           const char *audit_event, const char *audit_details_json,
                           struct stk_error **err);
/* Targeted updates for a monitor (no snapshot written back): its own and
 * init's pid; the last run's exit code and result (pids cleared). */
int stk_store_sb_set_pids(struct stk_store *st, const char *id, int monitor_pid, int init_pid,
                          struct stk_error **err);
int stk_store_sb_set_result(struct stk_store *st, const char *id, int exit_code,
                            const char *result_json, struct stk_error **err);
/* Updates the non-phase fields from r, found by r->id: name, tenant, project,
 * owner, pool, pool_member, exit_code, monitor_pid, monitor_start, init_pid,
 * labels, result. runtime, spec, env, created_ms, phase, reason and message
 * are left. -ENOENT. */
/* The driver's handle (NULL clears it). */
int stk_store_sb_set_handle(struct stk_store *st, const char *id, const char *handle,
                            struct stk_error **err);
int stk_store_sb_update(struct stk_store *st, const struct stk_sb_rec *r, struct stk_error **err);

/* ---- warm pools ----------------------------------------------------------- */

struct stk_pool_rec {
    char name[64];       /* [A-Za-z0-9._-] */
    int size;            /* 0..STK_STORE_MAX_POOL */
    char *template_spec; /* owned, may be NULL */
    char *env;           /* owned, may be NULL */
    char fingerprint[65];
    int64_t created_ms; /* 0 means now */
    /* who the pool and its members belong to, as a sandbox's record */
    char tenant[64], project[64], owner[128];
    /* "" stockade's own members; else the backend keeps the pool and
     * this names how (the driver's pool_apply) */
    char mechanism[64];
};
void stk_pool_rec_free(struct stk_pool_rec *p);
void stk_pool_recs_free(struct stk_pool_rec *p, size_t n);
int stk_store_pool_insert(struct stk_store *st, const struct stk_pool_rec *p,
                          struct stk_error **err); /* -EEXIST */
/* Pool names are unique per tenant. tenant NULL: the one pool of that name
 * in any tenant (-ENOTUNIQ when several tenants have one). -ENOENT. */
int stk_store_pool_get(struct stk_store *st, const char *tenant, const char *name,
                       struct stk_pool_rec *ret, struct stk_error **err);
int stk_store_pool_list(struct stk_store *st, struct stk_pool_rec **ret, size_t *ret_n,
                        struct stk_error **err);
/* Removes the pool's row only: its members keep their pool name and are the
 * caller's to delete. -ENOENT. */
int stk_store_pool_delete(struct stk_store *st, const char *tenant, const char *name,
                          struct stk_error **err);
/*
 * Atomically takes one ready, unclaimed member of the pool (the oldest):
 * clears pool_member, copies name, labels, owner, tenant and project (and
 * spec and env, when claim has them) from claim and appends a "claimed"
 * audit record, in one transaction. A member is
 * never returned twice. -ENOENT when none is ready. The pool is tenant's
 * (its members are recorded with the pool's tenant; a pool of tenant ""
 * from an older state directory takes members of any tenant).
 */
int stk_store_pool_claim(struct stk_store *st, const char *tenant, const char *pool,
                         const struct stk_sb_rec *claim, const char *actor, char ret_id[64],
                         struct stk_error **err);

/* ---- namespaces ------------------------------------------------------------ */

/* The tenant a namespace belongs to (ret: 64 bytes); -ENOENT when unbound. */
int stk_store_ns_tenant(struct stk_store *st, const char *ns, char ret[64], struct stk_error **err);
/* Binds ns to tenant when unbound (1), or checks that it is tenant's (0);
 * -EPERM when another tenant's. */
int stk_store_ns_bind(struct stk_store *st, const char *ns, const char *tenant,
                      struct stk_error **err);

#endif
