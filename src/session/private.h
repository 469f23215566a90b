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
    enum stk_backend backend; /* local or sim */
};

/* snprintf that cuts (paths, messages); from the local driver */
STK_PRINTF(3, 4) int fmt_into(char *buf, size_t n, const char *fmt, ...);
int mkdir_p(const char *path, mode_t mode);
int rm_rf(const char *path);
void random_hex(char *buf, size_t n);

/* Starts `stockade argv...` (/proc/self/exe) as a process of its own: a
 * new session, stdio on /dev/null, keep[0..n) as descriptors 3.., nothing
 * else inherited, the state and run directories in its environment.
 * Long-running helpers (monitors, pool refills) are fresh processes, never
 * bare forks: SQLite connections, locks and descriptors must not cross.
 * Returns once it is started (0) or could not be (negative errno). */
int session_spawn_self(const struct stk_local_paths *p, int *keep, int n_keep,
                       const char *const *argv);

/* {"argv": [...], key: value (a json_t *, stolen)} and the labels, as JSON
 * text; the caller frees. */
char *session_argv_json(const char *const *argv, size_t argc, const char *key, void *value);
char *session_labels_json(const struct stk_boundary *b);
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
/* Connects to the sandbox's stockade-init. */
int session_init_connect(const struct stk_session *s, const char *id, int timeout_ms,
                         struct stk_init_conn **ret, struct stk_error **err);

int session_get(struct stk_session *s, const char *id, struct stk_sb_rec *ret,
                struct stk_error **err);
int session_rec_boundary(const struct stk_sb_rec *rec, struct stk_session_boundary *ret,
                         struct stk_error **err);
int session_net_config(const struct stk_local_paths *p, const struct stk_envconfig *env,
                       struct stk_net_config *ret, struct stk_error **err);
int session_fingerprint(const struct stk_boundary *b, char ret[65], struct stk_error **err);
int session_runtime_of(const struct stk_sb_rec *rec, enum stk_oci_runtime *ret);

void session_dir(const struct stk_session *s, const char *id, char *buf, size_t n);
int session_lock_open(const struct stk_session *s, const char *id, bool create,
                      struct stk_error **err);
int session_lock(const struct stk_session *s, const char *id, int wait_ms, struct stk_error **err);

/* With the sandbox's lock held: completes (stopping, deleting) or rolls
 * back (pending, provisioning, starting) the operation its phase names,
 * or adopts a ready sandbox (a new monitor takes the lock over). The lock
 * may come from a dead monitor (recovery) or from a live one that has
 * just released it (stop, rm waiting for their monitor). Consumes lock_fd. */
int session_finish(struct stk_session *s, const char *id, int lock_fd, struct stk_error **err);

/* The monitor: a detached process per sandbox. It inherits lock_fd (the
 * lock stays held across the fork: flock belongs to the open file). mode
 * says what it does first; it returns once the monitor reported: ready, or
 * the error that made the sandbox fail. */
enum monitor_mode { MONITOR_CREATE, MONITOR_CREATE_IDLE, MONITOR_START, MONITOR_ADOPT };
int monitor_spawn(struct stk_session *s, const char *id, enum monitor_mode mode, int lock_fd,
                  struct stk_error **err);

int pool_claim(struct stk_session *s, const struct stk_create_req *req,
               const struct stk_boundary *b, struct stk_create_res *ret, struct stk_error **err);
/* Starts a detached process that refills the pool. */
void pool_refill_background(struct stk_session *s, const char *pool);

/* ---- the simulator (sim.c): the verbs of a session opened for sim ---- */
static inline bool session_sim(const struct stk_session *s)
{
    return s->backend == STK_BACKEND_SIM;
}
/* Applies what the model says has happened by now: a ready sandbox whose
 * modelled end has come ends, an in-flight phase a dead process left is
 * finished or rolled back. */
int sim_advance_all(struct stk_session *s, struct stk_error **err);
int sim_create(struct stk_session *s, const struct stk_create_req *req,
               const struct stk_boundary *b, struct stk_create_res *ret, struct stk_error **err);
/* A claimed pool member: its workload is modelled from now. */
int sim_claimed(struct stk_session *s, const char *id, const struct stk_boundary *b,
                const char *pool, struct stk_error **err);
int sim_exec(struct stk_session *s, const char *id, const struct stk_init_proc *proc,
             struct stk_error **err);
int sim_stop(struct stk_session *s, const char *id, struct stk_error **err);
int sim_start(struct stk_session *s, const char *id, struct stk_error **err);
int sim_rm(struct stk_session *s, const char *id, bool force, struct stk_error **err);
/* logs -f: waits until the sandbox ends (its output is written at start). */
int sim_logs_wait(struct stk_session *s, const char *id, struct stk_error **err);

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

/* Parses one record header "<unix ms> <stream> <length>\n" at the start of
 * buf (n bytes). Returns the header's length, 0 when incomplete, -EBADMSG
 * when malformed. Exposed for the fuzzer. */
int log_record_parse(const char *buf, size_t n, int64_t *ret_ms, int *ret_stream, size_t *ret_len);
#define LOG_RECORD_MAX (1 << 20)

#endif
