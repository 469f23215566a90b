/* SPDX-License-Identifier: Apache-2.0 */
/*
 * driver — runs a boundary. One interface, `struct stk_driver_ops`, with a
 * driver per backend behind it: local/ (OCI runtimes, network namespaces,
 * nftables, cgroups), kubernetes/ (the API server) and sim/ (a model that
 * executes nothing). The interface is the seam of backend parity:
 *
 *  - the session owns records, phases and the audit trail; a driver never
 *    writes them. It reports through a sink the session implements.
 *  - a driver owns host or cluster resources and an opaque handle (JSON
 *    text) that the session stores with the record, so every operation
 *    works from (id, handle) in a fresh process and recovery stays
 *    backend-neutral.
 *  - errors crossing the seam are a fixed set (STK_DRV_E_*), each with a
 *    message in *err that names the sandbox and what failed.
 */
#ifndef STK_DRIVER_H
#define STK_DRIVER_H

#include "boundary/boundary.h"
#include "driver/local/net.h"
#include "init/client.h"

#include <time.h>

/* ==== the driver interface =============================================== */

enum stk_kill_reason {
    STK_KILL_NONE,
    STK_KILL_MEMORY,      /* the memory cgroup recorded an OOM kill */
    STK_KILL_PIDS,        /* the pids cgroup refused a fork */
    STK_KILL_CPU,         /* CPU time used reached the budget */
    STK_KILL_WALL_CLOCK,  /* the deadline passed */
    STK_KILL_INTERRUPTED, /* stockade got SIGINT, SIGTERM or SIGHUP */
    _STK_KILL_N
};
extern const char *const stk_kill_reason_names[_STK_KILL_N];

/* The errors an operation returns (negative errno values); anything else
 * is reported to the user as is, with its message. */
#define STK_DRV_E_GONE   ENOENT     /* the sandbox's resources no longer exist */
#define STK_DRV_E_NOTSUP EOPNOTSUPP /* this backend cannot do that */
#define STK_DRV_E_PHASE  EBUSY      /* the resources are not in a state that allows it */
#define STK_DRV_E_TRANSIENT                                                                        \
    EAGAIN /* try again: a cluster or host that did not answer, a conflict */

/* file_read / file_write: the path does not exist inside the sandbox (not
 * ENOENT, which says the sandbox is gone) */
#define STK_DRV_E_NOFILE ENODATA

/* Where a backend keeps what it keeps, and how it reaches its cluster. */
struct stk_driver_conf {
    const char *state_dir;  /* the session's store, logs and per-sandbox directories */
    const char *run_dir;    /* local: runtime state, sockets (not used by others) */
    const char *kubeconfig; /* kubernetes: NULL: $KUBECONFIG, ~/.kube/config, in-cluster */
    const char *context;    /* kubernetes: NULL: the kubeconfig's current context */
};

/* One sandbox as an operation sees it: everything comes from its record. */
struct stk_driver_sandbox {
    const char *id;   /* the record's id: [a-z0-9][a-z0-9.-]*, at most 63 bytes */
    const char *name; /* the record's name (a claimed pool member: the claimer's) */
    /* NULL for exec, stop, observe and teardown when the stored spec no
     * longer resolves (what the sandbox holds must still go) */
    const struct stk_boundary *b;
    const struct stk_envconfig *env; /* NULL: none */
    const char *handle;              /* what provision returned; NULL before */
    const char *pool;                /* the pool it belongs or belonged to; NULL */
    bool pool_member;                /* an unclaimed warm member: no workload */
    bool idle;                       /* no workload (verify FILE) */
    /* provision returns once the backend accepted what it applied, without
     * waiting for the workload to run (create --wait accepted); a workload
     * that then fails to start is reported by supervise */
    bool accepted_only;
    int lock_fd;         /* local: the sandbox directory's lock, held by the caller */
    const char *runtime; /* the record's runtime (facts' runtime at create) */
    /* provision and start: what happens while the workload starts (sim:
     * its declared output and egress decisions) is reported here; only
     * output and event are called. NULL: nobody listens. */
    const struct stk_driver_sink *sink;
};

/* How a workload ended, or that it has not. */
enum stk_driver_state {
    STK_DRV_RUNNING, /* provisioned and running (or idle, waiting for a workload) */
    STK_DRV_ENDED,   /* the workload ended: see exit_code, kill */
    STK_DRV_LOST,    /* the resources are gone without a status (deleted behind our back) */
};
struct stk_driver_status {
    enum stk_driver_state state;
    int exit_code;             /* -1 unknown; 128+N when killed by signal N */
    int signal;                /* 0 none */
    enum stk_kill_reason kill; /* STK_KILL_NONE unless the backend saw a limit end it */
    char message[256];         /* the backend's words ("OOMKilled", ...), "" */
    /* JSON object text of measured use (cpuSeconds, peakMemoryBytes, ...),
     * owned; NULL when the backend measures nothing */
    char *usage;
};
void stk_driver_status_release(struct stk_driver_status *st);

/* How often a supervisor looks at what it has no event for (a sink without
 * a wake_fd; a cgroup file whose notification cannot be set up). */
#define STK_DRV_IDLE_POLL_MS 2000
/* A pool refill is background work: its process, the members' monitors and
 * their sandboxes run at this nice value (and autogroup nice) until a
 * claim, which gives the sandbox's threads back what is above it. */
#define STK_REFILL_NICE 10

enum stk_driver_ask {
    STK_DRV_ASK_NONE,
    STK_DRV_ASK_CLAIMED, /* a pool member was claimed: its deadline started *ago_ms ago */
    STK_DRV_ASK_KILL,    /* a stop or rm is overdue: end it now, whatever it does */
};

/* What supervise reports while it runs. The session writes logs and audit
 * records from these; the driver never touches the store. */
struct stk_driver_sink {
    void *ud;
    /* output may be called from another thread than event and poll (the
     * local driver's attach thread): the session's output callback touches
     * nothing else */
    /* the workload's output (stream 1 or 2); may be NULL when the backend
     * keeps logs itself (ops->logs) */
    int (*output)(void *ud, int stream, const void *data, size_t n);
    /* an event of the sandbox (egress_denied, a Pod condition, ...), its
     * details as JSON object text: becomes an audit record of type `type` */
    void (*event)(void *ud, const char *type, const char *details_json);
    /* what the session wants now. The local driver calls it once at the
     * start, whenever wake_fd is readable, after events it reported (at
     * most every 200 ms) and at *next_ms (CLOCK_MONOTONIC ms the session
     * wants to be asked again at; INT64_MAX: only on wake_fd), so an idle
     * sandbox costs no CPU; the kubernetes driver calls it every time it
     * looks at the Pod (next_ms may be NULL). With STK_DRV_ASK_CLAIMED it
     * sets *ago_ms to how long ago the claim was. */
    enum stk_driver_ask (*poll)(void *ud, int64_t *ago_ms, int64_t *next_ms);
    /* readable when what poll would say may have changed (the session's
     * records of this sandbox were written); poll consumes it. -1: none,
     * poll is then called every STK_DRV_IDLE_POLL_MS (fd 0 is never one:
     * a sink that leaves it 0 has none) */
    int wake_fd;
};

/* What a backend can tell and enforce, for explain, results and records. */
struct stk_driver_facts {
    /* set by the caller before facts: explain wants what costs the backend
     * a request to know (kubernetes: how warm pools are kept) */
    bool explain;
    struct stk_backend_facts facts; /* for stk_explain */
    const char *runtime;    /* what the record's `runtime` says: crun, runc, runsc, pod, sim */
    char note[512];         /* said to the user at create ("runs on crun, not gVisor: ...") */
    char runtime_note[512]; /* storage facts.runtime_note may point into */
    char image_digest[72], image_user[160]; /* storage for facts.image_* */
    char image_ports[1200];
};

struct stk_driver_logs_req {
    int64_t since_ms; /* unix ms, 0: all */
    long tail;        /* last N lines, -1: all */
    bool follow, timestamps;
    int out_fd, err_fd;
};

/* A warm pool the backend may keep itself (pool_apply, pool_delete). */
struct stk_driver_pool {
    const char *name;             /* unique per tenant; [a-z0-9-], at most 39 bytes */
    const struct stk_boundary *b; /* its template (pool_apply only) */
    int size;                     /* members kept ready */
};

struct stk_driver;
struct stk_driver_ops {
    enum stk_backend backend;
    /* JSON object text the session merges into every audit record and
     * result of this backend's sandboxes (sim: {"simulated":true}); NULL */
    const char *marks;
    /* runs nothing (sim): verify, which observes from inside, is refused */
    bool models_only;
    /* set when verify's probe cannot run in this backend's sandboxes yet:
     * why, said to the user instead of a failed exec */
    const char *no_verify;
    /* verify: stockade-probe is not in this backend's sandboxes (a Pod runs
     * its own image): it goes on the exec's stdin to `sh -c`, which writes
     * it to a fresh directory under /tmp, runs it and removes it */
    bool probe_stdin;
    /* Connects to the backend (a cluster's API server: credentials are
     * checked here). */
    int (*open)(const struct stk_driver_conf *conf, void **ret_ctx, struct stk_error **err);
    void (*close)(void *ctx);
    /* What b gets on this backend: the runtime it would use, what is not
     * enforced here. -EINVAL when b cannot run here at all, with why. */
    int (*facts)(void *ctx, const struct stk_boundary *b, struct stk_driver_facts *ret,
                 struct stk_error **err);
    /* Creates what the sandbox holds and starts it (its workload too, unless
     * pool_member or idle); returns once it is running, or failed (then
     * nothing it made stays). restart: after a stop, what persisted is
     * reused. *ret_handle: new JSON text, the caller frees. */
    int (*provision)(void *ctx, const struct stk_driver_sandbox *sb, bool restart,
                     char **ret_handle, struct stk_error **err);
    /* Starts the workload of a claimed pool member (sb: the claimed record).
     * STK_DRV_E_PHASE: it runs already. *ret_handle: a new handle (the
     * caller frees and stores it), or NULL when it is unchanged. */
    int (*start)(void *ctx, const struct stk_driver_sandbox *sb, char **ret_handle,
                 struct stk_error **err);
    /* Runs a process in the running sandbox; *ret_code as stk_init_exec. */
    int (*exec)(void *ctx, const struct stk_driver_sandbox *sb, const struct stk_init_proc *proc,
                int in_fd, int out_fd, int err_fd, int *ret_code, struct stk_error **err);
    /* Reads / writes one regular file inside the running sandbox as its
     * own supervisor sees it (never through the host's view of the
     * sandbox's filesystem, which the workload can race with symbolic
     * links); the semantics of stk_init_file_read / _write. NULL: this
     * backend cannot (the session refuses with why). */
    int (*file_read)(void *ctx, const struct stk_driver_sandbox *sb, const char *path,
                     stk_init_data_fn cb, void *ud, uint64_t *ret_size, struct stk_error **err);
    int (*file_write)(void *ctx, const struct stk_driver_sandbox *sb, const char *path,
                      unsigned mode, uint64_t size, int in_fd, struct stk_error **err);
    /* A TCP connection to port in the running sandbox, made from outside it
     * (what the sandbox's ingress admits: spec.ports); *ret_fd a connected
     * socket, O_CLOEXEC, blocking. NULL: the backend has no way in
     * (STK_DRV_E_NOTSUP). */
    int (*connect)(void *ctx, const struct stk_driver_sandbox *sb, uint16_t port, int *ret_fd,
                   struct stk_error **err);
    /* Asks the workload to end (SIGTERM, SIGKILL after grace_ms) and returns;
     * supervise (or observe) reports the end. */
    int (*stop)(void *ctx, const struct stk_driver_sandbox *sb, int grace_ms,
                struct stk_error **err);
    /* Blocks while the sandbox runs, reporting through the sink; fills *ret
     * once it ended. NULL: the backend needs no watcher (observe tells).
     * The session runs it in a monitor process per sandbox (a fresh exec of
     * stockade holding the sandbox directory's lock), right after provision
     * or start, and again with the same handle when a monitor died and a
     * new one adopts the sandbox: supervise must work from (id, handle)
     * alone. Without supervise the session observes a ready sandbox
     * whenever a command reads it and ends it when observe says ENDED or
     * LOST. */
    int (*supervise)(void *ctx, const struct stk_driver_sandbox *sb,
                     const struct stk_driver_sink *sink, struct stk_driver_status *ret,
                     struct stk_error **err);
    /* How the sandbox is now, from the backend alone (recovery, lazy status). */
    int (*observe)(void *ctx, const struct stk_driver_sandbox *sb, struct stk_driver_status *ret,
                   struct stk_error **err);
    /* Removes what the sandbox holds; keeps what persists across a stop
     * (a home volume, a cluster namespace) unless purge (rm). The session's
     * own directory (logs, lock) is the session's to remove. Idempotent:
     * what is already gone is success. */
    int (*teardown)(void *ctx, const struct stk_driver_sandbox *sb, bool purge,
                    struct stk_error **err);
    /* The workload's logs from the backend. NULL: the session's own log
     * files (written from the sink's output). */
    int (*logs)(void *ctx, const struct stk_driver_sandbox *sb,
                const struct stk_driver_logs_req *req, struct stk_error **err);
    /* What a warm pool's claim must match, as 64 hex digits: a digest of
     * everything this backend enforces for b except its name. NULL: the
     * session's own (the local rendering: OCI config and nft chain). */
    int (*fingerprint)(void *ctx, const struct stk_boundary *b, char ret[65],
                       struct stk_error **err);
    /* Removes what this state directory's sandboxes left and no record
     * keeps (keep: the ids of live records, and "pool.NAME" for each pool
     * the backend keeps itself). */
    int (*gc)(void *ctx, const char *const *keep, size_t n_keep, size_t *ret_removed,
              struct stk_error **err);
    /* The live instances of a sandbox injected into a workload, one per
     * replica that carries it: JSON array text [{"pod", "phase", "node",
     * "running"}] (*ret, the caller frees), or *ret NULL when the sandbox
     * is not injected (one instance: itself). exec reaches one of them by
     * stk_init_proc.replica. NULL: the backend has no replicas. */
    int (*replicas)(void *ctx, const struct stk_driver_sandbox *sb, char **ret,
                    struct stk_error **err);
    /* verify, from outside: what the backend holds for the running sandbox
     * against what it should (a cluster's live objects against their
     * rendering), as rows beside the probe's: JSON array text of {"id",
     * "claim", "expected", "observed", "verdict": "pass"|"fail"|"skip",
     * "reason"} (*ret, the caller frees). NULL: nothing to add. */
    int (*verify_outside)(void *ctx, const struct stk_driver_sandbox *sb, char **ret,
                          struct stk_error **err);
    /* Warm pools the backend keeps itself (kubernetes: agents.x-k8s.io
     * SandboxWarmPool, when the cluster serves it). pool_apply makes pool p
     * and sets *ret_mechanism (a static string naming how) when the backend
     * keeps it, or makes nothing and sets it NULL: the session's own
     * members. A claim of a kept pool is a provision of a record whose pool
     * is set and which is not a member (sb->pool, !sb->pool_member, no
     * handle): the backend hands out one of its members. pool_delete
     * removes a kept pool (its claimed sandboxes stay). NULL: never kept. */
    int (*pool_apply)(void *ctx, const struct stk_driver_pool *p, const char **ret_mechanism,
                      struct stk_error **err);
    int (*pool_delete)(void *ctx, const struct stk_driver_pool *p, struct stk_error **err);
};

/* The driver of a backend (a static table); NULL when not built in. */
const struct stk_driver_ops *stk_driver_ops(enum stk_backend backend);
/* The same, saying why not: a backend in a private module (kubernetes) is
 * loaded here, on first use. */
const struct stk_driver_ops *stk_driver_ops_load(enum stk_backend backend, struct stk_error **err);

/* An open driver: its operations and its context. */
struct stk_driver {
    const struct stk_driver_ops *ops;
    void *ctx;
};
int stk_driver_open(enum stk_backend backend, const struct stk_driver_conf *conf,
                    struct stk_driver **ret, struct stk_error **err);
void stk_driver_close(struct stk_driver *d);

/* The tables (driver/<backend>/driver.c); stk_driver_ops() is the way in. */
extern const struct stk_driver_ops stk_local_driver_ops;
extern const struct stk_driver_ops stk_sim_driver_ops;
extern const struct stk_driver_ops stk_kube_driver_ops;

/* How a workload ended (stk_local_run, the sim model). */
enum stk_phase { STK_PHASE_SUCCEEDED, STK_PHASE_FAILED, STK_PHASE_KILLED, _STK_PHASE_N };
extern const char *const stk_phase_names[_STK_PHASE_N];

/* ==== sim backend (docs/sim.md) ========================================== */

/* How a sandbox of b would end, from the sim hints against its limits. The
 * declared use grows linearly from nothing at start to its peak at runFor
 * (memory and pids: reached at start when there is no runFor); the first
 * limit crossed kills it, ties in the order memory, pids, cpu, wall clock. */
struct stk_sim_outcome {
    bool ends;                 /* false: it runs until stopped */
    int64_t at_ms;             /* when it ends, after its start */
    enum stk_phase phase;      /* succeeded, failed or killed (when it ends) */
    enum stk_kill_reason kill; /* STK_KILL_NONE unless killed */
    int exit_code;             /* -1 when killed */
    /* modelled use when it ends (a kill: the limit it reached) */
    int64_t memory_bytes, pids, cpu_ms;
};
void stk_sim_model(const struct stk_boundary *b, struct stk_sim_outcome *ret);

/* The decision on the i-th of the hints' connects, by stk_egress_decide(). */
struct stk_sim_connect {
    char dst[STK_CIDR_STRLEN]; /* the address, no prefix */
    uint16_t port;
    const char *proto; /* "TCP", "UDP", "SCTP" (as the local NFLOG reader) */
    bool allowed;
    const char *policy;           /* allowing policy; when denied the deny or excepting one */
    char except[STK_CIDR_STRLEN]; /* the except that held dst, "" when none */
};
/* -EINVAL when the egress model does not apply (injection) or the entry is
 * not a destination. */
int stk_sim_connect(const struct stk_boundary *b, size_t i, struct stk_sim_connect *ret);

/* ==== local backend ====================================================== */

#define STK_LOCAL_STATE_DIR "/var/lib/stockade"
#define STK_LOCAL_RUN_DIR   "/run/stockade"
/* Sandboxes one state directory holds at once: the default and hard
 * maximum of EnvironmentConfig data.local.maxSandboxes. */
#define STK_LOCAL_MAX_SANDBOXES STK_LIMIT_LOCAL_SANDBOXES
/* The bound env sets (data.local.maxSandboxes), else the default. */
unsigned stk_local_max_sandboxes(const struct stk_envconfig *env);

/* Where stockade keeps its state. Everything it creates lives under these
 * paths or under the cgroup "stockade" in each hierarchy; gc looks nowhere
 * else. */
/* The file in a long-lived local sandbox's directory that names its
 * image's digest (what `image rm` checks). */
#define STK_LOCAL_IMAGE_MARK "image"

struct stk_local_paths {
    const char *state_dir; /* sandboxes/<id>/ bundles, runtimes.json cache */
    const char *run_dir;   /* <runtime>/ : the runtimes' --root */
};

/* OCI runtimes, strongest isolation first. */
enum stk_oci_runtime { STK_OCI_RUNSC, STK_OCI_CRUN, STK_OCI_RUNC, _STK_OCI_N };
extern const char *const stk_oci_runtime_names[_STK_OCI_N];

struct stk_runtime_status {
    bool installed;
    bool works;
    char path[256];
    char version[64];
    char note[512]; /* why it does not work, or how it is run */
};

/* Finds each runtime and smoke-runs it (/bin/true in a default sandbox).
 * Results are cached in <state_dir>/runtimes.json, keyed by binary path and
 * mtime, so the smoke run happens once per installed binary. */
int stk_runtimes_detect(const struct stk_local_paths *p, struct stk_runtime_status ret[_STK_OCI_N],
                        struct stk_error **err);

/* The runtime a boundary's `runtime:` asks for, given what works. Returns
 * -ENOENT with *ret_note saying why when none fits. *ret_note is static or
 * points into st. */
int stk_runtime_choose(enum stk_runtime want, const struct stk_runtime_status st[_STK_OCI_N],
                       enum stk_oci_runtime *ret, const char **ret_note);

/* Caveats of a runtime for explain and results (NULL-terminated, static). */
const char *const *stk_runtime_caveats(enum stk_oci_runtime rt);

/* At most this many egress events are kept per run (the NFLOG reader's
 * rate limit already summarises floods). */
#define STK_RUN_MAX_EVENTS 1000

struct stk_run_request {
    const struct stk_boundary *b;
    enum stk_oci_runtime runtime;
    const char *workspace;        /* NULL: a fresh directory in the sandbox's state dir */
    const char *const *extra_env; /* "K=V" */
    size_t n_extra_env;
    bool quiet; /* workload stdio to a log file (smoke runs) */
    /* The sandbox's network (veth on stockade's bridge, egress compiled to
     * nftables). NULL: an empty network namespace, loopback only. */
    const struct stk_net_config *net;
    /* sandboxes this state directory may hold, this one included
     * (stk_local_max_sandboxes()); 0: STK_LOCAL_MAX_SANDBOXES */
    unsigned max_sandboxes;
    /* Long-lived sandboxes (stk_local_provision) only: */
    const char *id;       /* the sandbox's id, chosen by the caller */
    int lock_fd;          /* the caller holds the sandbox directory's lock */
    const char *hostname; /* NULL: the boundary's name */
};

struct stk_run_result {
    char id[64];
    enum stk_phase phase;
    int exit_code; /* the workload's; 128+N when killed by signal N */
    enum stk_kill_reason kill_reason;
    enum stk_oci_runtime runtime;
    struct timespec started, finished; /* CLOCK_REALTIME */
    double cpu_seconds;
    int64_t peak_memory; /* bytes; -1 unknown */
    int64_t peak_pids;   /* -1 unknown */
    /* kill reasons this runtime cannot observe (NULL-terminated, static) */
    const char *const *unobservable;
    char note[256]; /* extra words about the result, "" when none */
    bool network;   /* it had a network (veth, egress rules); false: loopback only */
    /* egress_denied events, JSON Lines; NULL when none. The caller frees. */
    char *events;
    size_t n_events;
};

/* Creates, runs and tears down one sandbox; blocks until the workload ends.
 * SIGINT, SIGTERM and SIGHUP are taken for the duration (they tear the
 * sandbox down: kill reason "interrupted"). Returns negative when the sandbox could
 * not be set up; the workload's own failure is a result, not an error. */
int stk_local_run(const struct stk_local_paths *p, const struct stk_run_request *req,
                  struct stk_run_result *ret, struct stk_error **err);

/* The host id range the sandbox <id> of this state directory holds (its
 * user namespace: ids 0..size-1 inside are base.. on the host): 0 when its
 * directory records one and the host-wide registry names that directory
 * as the range's only holder; -ENOENT when it holds none (gVisor, or the
 * record is gone). */
int stk_local_idmap_of(const struct stk_local_paths *p, const char *id, uint32_t *ret_base,
                       uint32_t *ret_size);

/* ---- long-lived sandboxes ------------------------------------------------------ */

/* Where the host side of a long-lived sandbox's supervisor socket lives:
 * <run_dir>/init/<id>.sock, root only. */
int stk_local_socket_path(const struct stk_local_paths *p, const char *id, char *buf, size_t n,
                          struct stk_error **err);

struct stk_proxy;
struct stk_local_instance {
    pid_t init_pid; /* stockade-init, PID 1 of the sandbox (a host pid) */
    char socket[256];
    /* the egress proxy serving it (a thread of this process), NULL when
     * the sandbox has no allowHosts; the caller stops it (stk_proxy_stop) */
    struct stk_proxy *proxy;
};

/* Sets up a long-lived sandbox and leaves it running: the same steps as
 * stk_local_run (directory, bundle, network, cgroup) with stockade-init as
 * the container's process, idle until asked to start the workload. The
 * directory may exist already (a restart); req->id and req->lock_fd are
 * required. On failure everything this call set up is undone. */
int stk_local_provision(const struct stk_local_paths *p, const struct stk_run_request *req,
                        struct stk_local_instance *ret, struct stk_error **err);

/* Removes what a long-lived sandbox holds on the host, from its id alone
 * (another process may have provisioned it): the container, its network,
 * cgroup, socket, bundle and workspace. With purge, its whole directory
 * (logs included). Idempotent; best effort; returns negative only when
 * something stays. */
int stk_local_teardown(const struct stk_local_paths *p, const char *id, enum stk_oci_runtime rt,
                       const struct stk_net_config *net, bool purge, struct stk_error **err);

/* The directory that holds stockade-init and stockade-probe, bound into
 * sandboxes read-only: a copy under the state directory, made once per
 * build of the binaries. The binaries are looked up next to the running
 * executable, or in $STOCKADE_LIBEXEC_DIR. */
int stk_local_libexec(const struct stk_local_paths *p, char *ret, size_t n, struct stk_error **err);
/* Where those binaries are built or installed: $STOCKADE_LIBEXEC_DIR, else
 * the running executable's directory. */
int stk_local_libexec_source(char *ret, size_t n, struct stk_error **err);

/* A run directory belongs to one state directory (recorded in
 * <run_dir>/state-dir on first use): gc and recovery judge what is theirs
 * by the state directory, so two must never share a run directory. Returns
 * -EEXIST with a message naming both when they would. */
int stk_local_paths_check(const struct stk_local_paths *p, struct stk_error **err);

/* `stockade doctor` on this host, read-only: root, each OCI runtime (the
 * cached smoke runs of stk_runtimes_detect), the cgroup controllers, and
 * nftables. Fills up to max checks. */
enum stk_host_status { STK_HOST_PASS, STK_HOST_WARN, STK_HOST_FAIL };
struct stk_host_check {
    const char *id, *title;
    enum stk_host_status status;
    char why[600];
    const char *fix; /* static; NULL: nothing to change */
    char id_buf[32], title_buf[64];
};
int stk_local_host_checks(const struct stk_local_paths *p, struct stk_host_check *ret, size_t max,
                          size_t *ret_n);

/* Removes what crashed runs left: sandbox dirs not locked by a live run,
 * their runtime state, processes and cgroups. */
struct stk_gc_stats {
    size_t sandboxes, cgroups, runtime_states;
    size_t network; /* namespaces, links, leases and nft chains */
};
/* keep: ids whose sandboxes stay whatever their locks say (the store's
 * long-lived sandboxes: a stopped one holds no lock but keeps its logs). */
int stk_local_gc(const struct stk_local_paths *p, const char *const *keep, size_t n_keep,
                 struct stk_gc_stats *ret, struct stk_error **err);

/* RFC 3339 UTC with milliseconds. */
void stk_time_format(const struct timespec *ts, char buf[40]);

#endif
