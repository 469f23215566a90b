/* SPDX-License-Identifier: Apache-2.0 */
/* Internal to the local driver: cgroup backends and the runtime table. */
#ifndef STK_DRIVER_LOCAL_INTERNAL_H
#define STK_DRIVER_LOCAL_INTERNAL_H

#include "driver/driver.h"
#include "proxy/proxy.h"

#include <signal.h>
#include <sys/types.h>

#define CG_ROOT   "/sys/fs/cgroup"
#define CG_PARENT "stockade" /* every sandbox cgroup is <hierarchy>/stockade/<id> */

/* ---- cgroups: v1 (and hybrid) or v2, behind one table ---------------------- */

struct cg_sample {
    int64_t oom_kills; /* OOM kills the memory cgroup recorded */
    int64_t pids_max;  /* forks the pids cgroup refused */
    int64_t cpu_usec;  /* CPU time used */
    int64_t mem_peak;  /* bytes, -1 unknown */
    int64_t pids_peak; /* -1 unknown */
    int64_t pids_current;
};

/* Limits stockade writes itself, so they hold even when a runtime does not
 * apply config.json's resources to the host cgroup (runsc). 0 = leave. */
struct cg_limits {
    int64_t memory; /* bytes; swap is held to the same figure */
    int64_t pids;
    int64_t cpu_milli;
    /* the state directory that owns the cgroup: kept as the xattr
     * CG_OWNER_XATTR, so gc removes only its own store's leftovers */
    const char *owner;
};

/* trusted.*: only CAP_SYS_ADMIN sets or reads it, so no workload forges it */
#define CG_OWNER_XATTR "trusted.stockade.owner"

struct cg_ops {
    const char *name;
    /* Creates <hierarchy>/stockade/<id> with the limits; stockade reads
     * its counters there. */
    int (*create)(const char *id, const struct cg_limits *l, struct stk_error **err);
    /* Reads the counters; fields it cannot read are left as they were. */
    void (*sample)(const char *id, struct cg_sample *s);
};

const struct cg_ops *cg_detect(void);

/* What wakes the supervisor when a counter that ends a sandbox (OOM kills,
 * refused forks) may have changed, so it needs no timer for them:
 *  - v2: inotify on memory.events and pids.events (the kernel notifies
 *    every change of those files);
 *  - v1: memory.oom_control's eventfd (cgroup.event_control), and for the
 *    pids controller, which notifies nothing on v1, the kernel log: the
 *    first fork the controller refuses in a cgroup is logged with the
 *    cgroup's path ("cgroup: fork rejected by pids controller in ..."), and
 *    the first refusal is the one that ends the sandbox. The log is the
 *    host's: its records are skipped, not read, and a new one is a reason
 *    to read pids.events; the caller polls it at most every
 *    STK_DRV_IDLE_POLL_MS.
 * A wake is a reason to read the counters, never a verdict: the counters
 * decide. */
#define CG_WATCH_FDS 2
struct cg_watch {
    int fd[CG_WATCH_FDS]; /* -1 unused; readable (POLLIN) on a change */
    /* something has no event here (a v1 file that would not register, no
     * /dev/kmsg): the caller reads the counters every STK_DRV_IDLE_POLL_MS */
    bool unwatched;
    bool kmsg[CG_WATCH_FDS]; /* fd[i] is /dev/kmsg */
    int pids_fd;             /* v1: pids.events, read when the log moved */
};
void cg_watch_open(const char *id, struct cg_watch *w);
/* fd[i] was readable: consumes what woke it (*any: there was something);
 * true when the counters may have changed. */
bool cg_watch_consume(struct cg_watch *w, int i, bool *any);
void cg_watch_close(struct cg_watch *w);
/* True on a hybrid host: v1 controllers plus a cgroup2 mount at unified/. */
bool cg_is_hybrid(void);
/* Kills what is left in <every hierarchy>/stockade/<id> and removes it.
 * Returns how many directories were removed; negative if one stays. */
int cg_remove(const char *id);
/* Sets the nice value of every thread in <hierarchy>/stockade/<id>: a pool
 * member provisioned by a low-priority refill is of normal priority once
 * claimed. */
/* every thread of the sandbox at `above` or more gets `above` less */
void cg_renice(const char *id, int above);
/* Removes <every hierarchy>/stockade/<id> that is empty, older than
 * min_age seconds and marked as owned by the state directory owner (another
 * store's cgroups, and unmarked ones, are left alone); kills nothing.
 * Returns how many were removed. */
int cg_remove_idle(const char *id, int min_age, const char *owner);
/* The sandbox's own cgroup directories (the ones stockade creates) and
 * where a user-namespaced sandbox sees them. Returns how many. */
size_t cg_own_dirs(const char *id, char src[][160], char dst[][48], size_t max);
/* Calls fn for each id found under <every hierarchy>/stockade/. */
void cg_foreach_id(void (*fn)(const char *id, void *ud), void *ud);

/* ---- runtimes --------------------------------------------------------------- */

struct rt_desc {
    const char *name; /* binary name */
    /* teardown must call `delete` even after the workload exited (runsc:
     * its gofer and sandbox processes outlive the workload) */
    bool needs_delete;
    /* stdout/stderr through pipes stockade copies: gVisor writes a regular
     * file at its own offset, over what others wrote to the same file */
    bool relay_output;
    const char *const *global_args; /* after --root DIR */
    const char *const *unobservable;
    /* global flags for `run` with a prepared network namespace and
     * without one (NULL: the namespace in config.json says it all) */
    const char *net_on, *net_off;
    /* every call runs in a private mount namespace whose /proc/sys/net is
     * an empty tmpfs (runtime.c says why) */
    bool hide_proc_sys_net;
    /* the workload's tasks are not host tasks (gVisor): the host pids
     * limit is scaled to gVisor's cost per guest task, and the host's pids
     * counters are not the workload's */
    bool guest_tasks;
    /* config.json gets a user namespace with the sandbox's own host id
     * range (idmap.c) */
    bool userns;
    /* a long-lived sandbox's stockade-init cannot inherit its listening
     * socket (runsc has no --preserve-fds): this global flag lets it bind
     * one in a host directory (STK_OCI_INIT_SOCK_DIR), which the driver
     * moves out of the sandbox's reach once it appears. NULL: fd 3. */
    const char *init_binds_flag;
    /* the runtime would set the container's rlimits by prlimit(2) from
     * the host side (runc), which a user namespace owned by the sandbox's
     * range refuses to a root without CAP_SYS_RESOURCE: rt_spawn sets
     * them on `run` itself instead, and the container inherits them
     * (stk_oci_options.rlimits_inherited) */
    bool rlimits_inherited;
    /* the workload's loopback is the runtime's own network stack (gVisor):
     * the egress proxy listens on the host side, at the bridge address on
     * the sandbox's own port, instead of on the namespace's loopback */
    bool proxy_host;
};
extern const struct rt_desc rt_table[_STK_OCI_N];

/* A runtime that maps the sandbox into a user namespace (rt_desc.userns)
 * runs in a private mount namespace where the state directory is bound
 * here: config.json names paths under it (sandbox.c), which the sandbox's
 * root can reach whatever the state directory's parents allow. On the
 * host it stays an empty directory. */
#define RT_VIEW "/run/stockade-view"

/* A child's fds 0, 1, 2: a descriptor, or one of these. */
#define RT_NULL    (-1) /* /dev/null */
#define RT_INHERIT (-2) /* stockade's own */
struct rt_stdio {
    int fd[3];
    int pass_fd; /* becomes the child's fd 3 (--preserve-fds 1); -1: none */
};
#define RT_IO_INHERIT                                                                              \
    (struct rt_stdio)                                                                              \
    {                                                                                              \
        .fd = {RT_INHERIT, RT_INHERIT, RT_INHERIT}, .pass_fd = -1                                  \
    }
#define RT_IO_LOG(f)                                                                               \
    (struct rt_stdio)                                                                              \
    {                                                                                              \
        .fd = {RT_NULL, (f), (f)}, .pass_fd = -1                                                   \
    }

/* Runs `<runtime> --root <run_dir>/<name> <global args> args...` and waits.
 * crun on a hybrid host runs in a private mount namespace without the
 * cgroup2 mount. Returns the exit status (0..255) or negative. */
int rt_exec(const struct stk_local_paths *p, enum stk_oci_runtime rt, const char *path,
            const char *const *args, struct rt_stdio io, const sigset_t *child_mask);
/* Same, reaping every other child of the caller while it waits: runsc
 * delete waits until gVisor's sandbox and gofer are gone, and when the
 * caller is their subreaper they stay zombies unless it reaps them. */
int rt_exec_reaping(const struct stk_local_paths *p, enum stk_oci_runtime rt, const char *path,
                    const char *const *args, struct rt_stdio io, const sigset_t *child_mask);
/* Same without waiting; returns the pid. */
pid_t rt_spawn(const struct stk_local_paths *p, enum stk_oci_runtime rt, const char *path,
               const char *const *args, struct rt_stdio io, const sigset_t *child_mask);
bool rt_needs_private_mntns(enum stk_oci_runtime rt);
/* Finds a runtime binary in the system directories (not $PATH). */
struct stat;
bool rt_find(const char *name, char *ret, size_t n, struct stat *st);

/* snprintf for messages and names, where cutting is intended; never for a
 * path (stk_path_fmt / stk_path_make refuse to cut) */
STK_PRINTF(3, 4) int fmt_into(char *buf, size_t n, const char *fmt, ...);

/* ---- small file helpers ------------------------------------------------------ */

int file_write(const char *path, const char *data, size_t len);
/* Reads up to n-1 bytes; NUL-terminates. Returns bytes read or negative. */
ssize_t file_read(const char *path, char *buf, size_t n);
/* Removes a directory tree without following symlinks or crossing mounts. */
int rm_rf(const char *path);
int mkdir_p(const char *path, mode_t mode);
/* Counts, or removes, what a runtime's --root holds for a sandbox:
 * <root>/<id> (runc, crun), <root>/<id>_* and <root>/runsc-<id>.sock (runsc). */
size_t runtime_entries(const char *root, const char *id, bool remove);
/* Random lowercase hex id of n characters. */
void random_hex(char *buf, size_t n);

/* ---- volumes (volume.c): size-limited filesystems ------------------------------ */

/* The names of a sandbox's volumes in its directory <state>/sandboxes/<id>:
 * each is an image file and the mount point beside it. A persistent home's
 * image outlives a stop; the others are removed by it. */
#define VOL_WORKSPACE_IMAGE "workspace.img"
#define VOL_HOME_IMAGE      "home.img"         /* storage.home.persist */
#define VOL_SCRATCH_IMAGE   "home-scratch.img" /* storage.home without persist */
#define VOL_HOME_DIR        "home"

/* spec.image (image.c): the image found in the store and its config for
 * the renderer; img NULL when the sandbox has no image. */
struct stk_image;
struct local_image {
    char store[600];
    struct stk_image *img;
    struct stk_oci_image oci;
    uint32_t wanted_uid; /* the image's own */
    bool root_refused;   /* it wanted root and gets the sandbox user */
};
int local_image_open(const char *state_dir, const struct stk_boundary *b, struct local_image *ret,
                     struct stk_error **err);
void local_image_free(struct local_image *li);
void local_image_facts(const char *state_dir, const struct stk_boundary *b,
                       struct stk_driver_facts *ret);
void local_image_mark(const struct stk_local_paths *p, const struct stk_driver_sandbox *sb);

struct vol {
    const char *image; /* the ext4 image file */
    const char *mnt;   /* where it is mounted on the host */
    int64_t size;      /* bytes */
    /* reuse an existing image (a persistent home; it gets a journal);
     * false: a fresh filesystem every time */
    bool keep;
    /* the owner of its root: the sandbox user's host ids */
    uid_t uid;
    gid_t gid;
    /* where fresh filesystems' templates are kept (<state>/volume-templates);
     * NULL: mkfs.ext4 on every image */
    const char *templates;
};
/* Makes (unless kept) the image, binds it to a free autoclearing loop
 * device and mounts it at v->mnt (created when missing), nosuid, nodev,
 * private. On failure nothing of this call is left but v->mnt. */
int vol_mount(const struct vol *v, struct stk_error **err);
/* Unmounts whatever is mounted at mnt (nothing mounted: success); the loop
 * device clears itself. Negative errno when it stays mounted. */
int vol_unmount(const char *mnt);
/* Unmounts the volumes of the sandbox directory dir and removes the
 * images a stop removes (all but a persistent home's), with purge every
 * image. -EBUSY when one stays mounted (then nothing is removed). */
int stk_local_volumes_release(const char *dir, bool purge);
/* The mkfs.ext4 this host has, or -ENOENT. */
int vol_mkfs_path(char *ret, size_t n);

/* ---- host id ranges (idmap.c): a user namespace of its own per sandbox ------- */

#define IDMAP_DIR   "/run/stockade-ids" /* host-wide: every state and run directory */
#define IDMAP_FIRST 1073741824u         /* 2^30: far above users and /etc/subuid ranges */
#define IDMAP_SIZE  65536u              /* ids 0..65535 inside */
#define IDMAP_SLOTS 4096

struct idmap {
    uint32_t base; /* host id of the sandbox's id 0 */
    uint32_t size;
};
/* Takes a free host range for the sandbox directory dir (or finds the one
 * it holds), records it in <dir>/idmap and returns it. Host-wide, under a
 * lock. The range is held while dir exists or until idmap_release. */
int idmap_acquire(const char *dir, struct idmap *ret, struct stk_error **err);
/* The range's user namespace, made when missing (after a reboot), owned
 * by the range's first id; *path is the nsfs file that keeps it. */
int idmap_userns(const struct idmap *m, char *path, size_t n, struct stk_error **err);
/* Mounts directory src at dst idmapped through the user namespace file
 * userns (on-disk id k is the sandbox's id k: a directory owned by 65534
 * is the sandbox user's, one owned by 0 its root's); a plain bind where
 * the filesystem cannot be idmapped. Not recursive. */
int idmap_bind(const char *src, const char *dst, const char *userns, struct stk_error **err);
/* Gives back dir's range and its namespace (nothing held: success). */
int idmap_release(const char *dir);
/* Moves the ownership of a kept filesystem (a persistent home made under
 * another range, or before ranges) onto m. 0: it was there already, 1:
 * shifted, negative errno. */
int idmap_shift(const char *root, const struct idmap *m);

/* ---- the driver (driver.c, supervise.c) -------------------------------------- */

struct local_ctx {
    struct stk_local_paths p;
    char state_dir[4096], run_dir[4096];
    /* the egress proxy of the sandbox this process provisioned or
     * supervises (a monitor serves one sandbox) */
    struct stk_proxy *proxy;
};
/* Test mode of the egress proxy: names resolve from this hosts file only
 * and no DNS query is ever sent (tests use names like pypi.org). */
#define STK_PROXY_HOSTS_ENV "STOCKADE_PROXY_HOSTS"
/* The CAs (a PEM file) that verify binding upstreams instead of the
 * system's: a private CA of the operator's, or a test's. */
#define STK_PROXY_CA_ENV "STOCKADE_PROXY_CA_FILE"
/* Starts sandbox id's egress proxy on its network net: on the loopback of
 * its namespace, or with host_side (rt_desc.proxy_host) at the bridge
 * address on the sandbox's own port, serving only its addresses. *ret NULL
 * when the boundary allows no host names and has no bindings. */
int local_proxy_start(const struct stk_net_config *nc, const struct stk_boundary *b, const char *id,
                      const struct stk_net *net, bool host_side, struct stk_proxy **ret,
                      struct stk_error **err);
/* Whether boundary b needs the egress proxy (allowHosts or bindings). */
bool local_proxy_needed(const struct stk_boundary *b);
/* The URL of a host-side proxy ("http://10.83.0.1:23130"). */
void local_proxy_url(const struct stk_net *net, char *buf, size_t n);
/* A proxy record as an event line (no newline) of the run's events. */
void local_proxy_event(struct stk_buf *out, const char *json);
/* The proxy lives in a private module (libevent, OpenSSL's TLS) that
 * local_proxy_start() loads: a sandbox without one never loads it. These
 * take the proxy it returned (NULL is fine) and call into the module. */
int local_proxy_event_fd(const struct stk_proxy *p);
size_t local_proxy_events_read(struct stk_proxy *p, void (*fn)(void *ud, const char *json),
                               void *ud);
void local_proxy_stop(struct stk_proxy *p, void (*fn)(void *ud, const char *json), void *ud);
/* The handle's runtime (the record's when the handle has none) and init's
 * pid (0: none). -EINVAL when the runtime is unknown (*ret_rt: crun). */
int local_handle_parse(const struct stk_driver_sandbox *sb, enum stk_oci_runtime *ret_rt,
                       pid_t *ret_init_pid);
int local_net_config(const struct local_ctx *c, const struct stk_envconfig *env,
                     struct stk_net_config *ret, struct stk_error **err);
int local_init_connect(const struct local_ctx *c, const char *id, int timeout_ms,
                       struct stk_init_conn **ret, struct stk_error **err);
/* A pidfd for the sandbox's stockade-init, trusted only when, once the pidfd
 * pins the process, it still runs stockade-init inside this sandbox's own
 * cgroup. -ESRCH otherwise. */
int local_init_pidfd(pid_t pid, const char *id, enum stk_oci_runtime rt);
int local_supervise(void *ctx, const struct stk_driver_sandbox *sb,
                    const struct stk_driver_sink *sink, struct stk_driver_status *ret,
                    struct stk_error **err);

#endif
