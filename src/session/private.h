/* SPDX-License-Identifier: Apache-2.0 */
/* Internal to the session module. */
#ifndef STK_SESSION_PRIVATE_H
#define STK_SESSION_PRIVATE_H

#include "render/render.h"
#include "session/session.h"

#include <limits.h>

struct stk_session {
    struct stk_local_paths p;
    char state_dir[PATH_MAX], run_dir[PATH_MAX];
    struct stk_store *st;
    char actor[128];
    enum stk_backend backend;
    struct stk_driver *drv; /* the backend's driver, open */
    char kubeconfig[PATH_MAX], context[256];
};

/* A driver with a watcher (supervise) gets a monitor process per sandbox;
 * one without is observed by whoever reads (the session's verbs). */
static inline bool session_supervised(const struct stk_session *s)
{
    return s->drv->ops->supervise != NULL;
}
/* The actor of what a backend reports without a monitor ("stockade-sim"). */
void session_backend_actor(const struct stk_session *s, char *buf, size_t n);

/* ---- logs ---- */
struct log_writer {
    char dir[PATH_MAX];
    int fd;
    size_t size;
};
int log_writer_open(struct log_writer *w, const char *sandbox_dir, struct stk_error **err);
/* Appends one chunk of output (stream 1 or 2) with the current time;
 * rotates past STK_LOG_FILE_MAX. */
int log_writer_put(struct log_writer *w, int stream, const void *data, size_t n);
void log_writer_close(struct log_writer *w);

/* ---- the seam (backend.c): a record as a driver sees it ---- */
struct session_sb {
    struct stk_sb_rec rec;
    struct stk_session_boundary bd; /* bd.b NULL: the stored spec no longer resolves */
    struct stk_driver_sandbox d;
};
/* The record (by id or name) and its boundary; the driver's view in ret->d.
 * need_boundary: a spec that no longer resolves is an error (otherwise d.b is
 * NULL). */
int session_sb_load(struct stk_session *s, const char *id, bool need_boundary,
                    struct session_sb *ret, struct stk_error **err);
void session_sb_release(struct session_sb *sb);
/* session_sb_load for a sandbox that must be ready (not a pool's unclaimed
 * member): otherwise -EBUSY saying that verb needs a ready one. */
int session_load_ready(struct stk_session *s, const char *id, const char *verb,
                       struct session_sb *ret, struct stk_error **err);
/* A driver's error (the fixed set, driver.h) as the session reports it to
 * the user of verb: NOTSUP, GONE, TRANSIENT get their meaning said once;
 * exec's NOTSUP is -ENOEXEC (nothing was executed). Returns the errno. */
int session_drv_error(const struct stk_session *s, const char *verb, int r, struct stk_error **err);
/* Audit details with the driver's marks merged in (details stolen, NULL:
 * {}); NULL when both are empty. The caller frees. */
char *session_details(const struct stk_session *s, void *details);
/* stk_store_sb_set_phase / stk_audit_append with the marks merged. */
int session_set_phase(struct stk_session *s, const char *id, int expect, enum stk_sb_phase to,
                      const char *reason, const char *msg, const char *actor, const char *event,
                      void *details, struct stk_error **err);
int session_audit(struct stk_session *s, const char *id, const char *event, const char *actor,
                  void *details, struct stk_error **err);
/* The result JSON of a status: the keys every backend's result has
 * (exitCode, signal, killReason, cpuSeconds, peakMemoryBytes, runtime),
 * then the driver's usage and marks. The caller frees. */
char *session_result(const struct stk_session *s, const char *runtime,
                     const struct stk_driver_status *st);
/* How a status ends a sandbox whose phase is `now`: the phase, its audit
 * event and reason (a stop or rm in flight decides over the workload). */
enum stk_sb_phase session_outcome(enum stk_sb_phase now, const struct stk_driver_status *st,
                                  const char **event, const char **reason);

/* What a driver reports while provisioning or starting (no monitor): output
 * goes to the logs at once; events are kept and become audit records once
 * the phase says the workload started. */
struct session_events {
    struct stk_session *s;
    const char *id;
    struct log_writer *logs;
    void *queue; /* json array of {type, details} */
    struct stk_driver_sink sink;
};
void session_events_init(struct session_events *e, struct stk_session *s, const char *id);
void session_events_flush(struct session_events *e);

/* Unsupervised drivers: the record as of now (its end applied when the
 * driver observes one). */
int session_current(struct stk_session *s, const char *id, struct stk_sb_rec *ret,
                    struct stk_error **err);
/* Applies what unsupervised drivers observe to every live record and
 * finishes in-flight phases a dead process left (older than
 * SESSION_STALE_MS). */
int session_advance_all(struct stk_session *s, struct stk_error **err);
#define SESSION_STALE_MS 10000
/* Brings a sandbox's workload up without a monitor: provision, the handle,
 * the result, the phase (ready), then the events. */
int session_up_inline(struct stk_session *s, const char *id, bool create, bool idle,
                      struct stk_error **err);

/* snprintf that cuts, for messages only (paths: stk_path_make); from the
 * local driver */
STK_PRINTF(3, 4) int fmt_into(char *buf, size_t n, const char *fmt, ...);
int mkdir_p(const char *path, mode_t mode);
int rm_rf(const char *path);
void random_hex(char *buf, size_t n);

/* Starts `stockade argv...` (/proc/self/exe) as a process of its own: a
 * new session, stdio on /dev/null, keep[0..n) as descriptors 3.., nothing
 * else inherited, the state and run directories and the backend (with its
 * kubeconfig and context) in its environment.
 * Long-running helpers (monitors, pool refills) are fresh processes, never
 * bare forks: SQLite connections, locks and descriptors must not cross.
 * Returns once it is started (0) or could not be (negative errno). */
int session_spawn_self(const struct stk_session *s, int *keep, int n_keep, const char *const *argv);

/* {"argv": [...], key: value (a json_t *, stolen)} and the labels, as JSON
 * text; the caller frees. */
char *session_argv_json(const char *const *argv, size_t argc, const char *key, void *value);
/* {"argv": b's command, key: value (a json_t *, stolen)} as a json_t *. */
void *session_argv_details(const struct stk_boundary *b, const char *key, void *value);
char *session_labels_json(const struct stk_boundary *b);
/* rec's namespace as b (resolved from rec's documents) has it: what a
 * listing authorizes by without reading the documents again. */
void session_record_namespace(const struct stk_boundary *b, struct stk_sb_rec *rec);
/* The tenant a create records: the one asked for, else the namespace. */
const char *session_tenant(const struct stk_create_req *req, const struct stk_boundary *b);
/* Binds every namespace b occupies to tenant (the first tenant to use a
 * namespace owns it); -EPERM when one is another tenant's. */
int session_bind_namespaces(struct stk_session *s, const struct stk_boundary *b, const char *tenant,
                            struct stk_error **err);
/* A new sandbox's record (phase pending) from a create request: id, name,
 * owner, tenant, documents, labels; the caller frees it. */
void session_record_new(const struct stk_session *s, const struct stk_create_req *req,
                        const struct stk_boundary *b, const char *runtime, struct stk_sb_rec *rec);

int session_get(struct stk_session *s, const char *id, struct stk_sb_rec *ret,
                struct stk_error **err);
int session_rec_boundary(const struct stk_sb_rec *rec, struct stk_session_boundary *ret,
                         struct stk_error **err);
int session_fingerprint(const struct stk_session *s, const struct stk_boundary *b, char ret[65],
                        struct stk_error **err);
/* The default: the local rendering (OCI config, nft chain) with the name
 * fixed. */
int session_local_fingerprint(const struct stk_boundary *b, char ret[65], struct stk_error **err);

/* <state_dir>/sandboxes/<id>; -ENAMETOOLONG (buf empty) when it does not fit */
int session_dir(const struct stk_session *s, const char *id, char *buf, size_t n);
int session_lock_open(const struct stk_session *s, const char *id, bool create,
                      struct stk_error **err);
int session_lock(const struct stk_session *s, const char *id, int wait_ms, struct stk_error **err);

/* With the sandbox's lock held: completes (stopping, deleting) or rolls
 * back (pending, provisioning, starting) the operation its phase names,
 * or adopts a ready sandbox (a new monitor takes the lock over). The lock
 * may come from a dead monitor (recovery) or from a live one that has
 * just released it (stop, rm waiting for their monitor). Consumes lock_fd. */
int session_finish(struct stk_session *s, const char *id, int lock_fd, struct stk_error **err);
/* Completes (stopping, deleting) or rolls back (pending, provisioning,
 * starting) the operation sb's phase names: teardown, then the phase
 * (recovered), then a deleted sandbox's directory. Other phases: nothing. */
struct session_sb;
int session_settle(struct stk_session *s, const struct session_sb *sb, struct stk_error **err);

/* The monitor: a detached process per sandbox. It inherits lock_fd (the
 * lock stays held across the fork: flock belongs to the open file). mode
 * says what it does first; it returns once the monitor reported: ready, or
 * the error that made the sandbox fail. */
enum monitor_mode {
    MONITOR_CREATE,
    MONITOR_CREATE_IDLE,
    MONITOR_START,
    MONITOR_ADOPT,
    MONITOR_CREATE_ACCEPTED, /* create, ready once the backend accepted it */
};
/* The monitor's wake-up: it sleeps until something happens, and a change of
 * the sandbox's record it must act on (a claim, a stop or rm) is one only
 * when the writer says so. session_wake_watch (the monitor) creates
 * <dir>/wake and returns an inotify descriptor that is readable after
 * each session_nudge (the writer: after the record changed), -1 when it
 * cannot; session_nudge opens and closes the file (never creates it: no
 * file, no monitor that waits on it). */
int session_wake_watch(const struct stk_session *s, const char *id);
void session_nudge(const struct stk_session *s, const char *id);
int monitor_spawn(struct stk_session *s, const char *id, enum monitor_mode mode, int lock_fd,
                  struct stk_error **err);

/* 0 claimed; -ENOENT the pool is empty; 1 the backend keeps the pool
 * (mechanism: how, at most 64 bytes): the claim is a create of the pool. */
int pool_claim(struct stk_session *s, const struct stk_create_req *req,
               const struct stk_boundary *b, struct stk_create_res *ret, char mechanism[64],
               struct stk_error **err);
/* Starts a detached process that refills the pool. */
void pool_refill_background(struct stk_session *s, const char *tenant, const char *pool);

/* Parses one record header "<unix ms> <stream> <length>\n" at the start of
 * buf (n bytes). Returns the header's length, 0 when incomplete, -EBADMSG
 * when malformed. Exposed for the fuzzer. */
int log_record_parse(const char *buf, size_t n, int64_t *ret_ms, int *ret_stream, size_t *ret_len);
#define LOG_RECORD_MAX (1 << 20)

#endif
