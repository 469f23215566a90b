/* SPDX-License-Identifier: Apache-2.0 */
/*
 * driver — runs a boundary. For now the local backend: an OCI bundle
 * rendered by src/render, run by runsc, crun or runc, in a cgroup stockade
 * owns so that kill reasons come from the kernel's own counters.
 */
#ifndef STK_DRIVER_H
#define STK_DRIVER_H

#include "boundary/boundary.h"
#include "driver/local/net.h"

#include <time.h>

/* ==== local backend ====================================================== */

#define STK_LOCAL_STATE_DIR "/var/lib/stockade"
#define STK_LOCAL_RUN_DIR   "/run/stockade"
/* Sandboxes one state directory holds at once. */
#define STK_LOCAL_MAX_SANDBOXES 256

/* Where stockade keeps its state. Everything it creates lives under these
 * paths or under the cgroup "stockade" in each hierarchy; gc looks nowhere
 * else. */
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

enum stk_phase { STK_PHASE_SUCCEEDED, STK_PHASE_FAILED, STK_PHASE_KILLED, _STK_PHASE_N };
extern const char *const stk_phase_names[_STK_PHASE_N];

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

/* ---- long-lived sandboxes ------------------------------------------------------ */

/* Where the host side of a long-lived sandbox's supervisor socket lives:
 * <run_dir>/init/<id>.sock, root only. */
int stk_local_socket_path(const struct stk_local_paths *p, const char *id, char *buf, size_t n,
                          struct stk_error **err);

struct stk_local_instance {
    pid_t init_pid; /* stockade-init, PID 1 of the sandbox (a host pid) */
    char socket[256];
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

/* A run directory belongs to one state directory (recorded in
 * <run_dir>/state-dir on first use): gc and recovery judge what is theirs
 * by the state directory, so two must never share a run directory. Returns
 * -EEXIST with a message naming both when they would. */
int stk_local_paths_check(const struct stk_local_paths *p, struct stk_error **err);

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
