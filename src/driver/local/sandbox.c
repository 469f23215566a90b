/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One local sandbox, start to finish.
 *
 * Parse first, act second: the id, every path, config.json and the /etc
 * files are computed before anything touches the kernel. Then setup_steps[]
 * runs in order through the one step runner (steps.h): when a step fails,
 * its own undo and then the earlier steps' undos run, last first; after a
 * run, teardown runs every undo in reverse, whether the workload succeeded,
 * failed, was killed or stockade was interrupted. Every path is built whole
 * (stk_path_make) or not at all.
 *
 * stockade is the child subreaper for the run: `<runtime> run --detach`
 * exits once the workload runs, so the container's init (or gVisor's
 * sandbox process) becomes stockade's child and its exit status is reaped
 * here. Kill reasons come from the cgroup
 * counters stockade reads from the cgroup it created (never from the exit
 * status): an OOM kill recorded by the memory cgroup, a fork the pids cgroup
 * refused, CPU time over the budget, or the deadline.
 */
#include "internal.h"
#include "steps.h"
#include "render/render.h"
#include "image/image.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

const char *const stk_kill_reason_names[_STK_KILL_N] = {
    "", "memory_exceeded", "pids_exceeded", "cpu_exceeded", "wall_clock_exceeded", "interrupted",
};
const char *const stk_phase_names[_STK_PHASE_N] = {"succeeded", "failed", "killed"};

#define SAMPLE_MS 50 /* how often the cgroup counters are read */

/* host tasks of a runsc sandbox: measured here, 37 idle (sentry, gofer,
 * their Go threads), then about 2 per guest process */
#define RUNSC_BASE_TASKS      64
#define RUNSC_TASKS_PER_GUEST 2

/* Host directories a `rootfs: host` sandbox sees read-only, when present. */
static const char *const host_dir_candidates[] = {"/usr",   "/bin",   "/sbin",  "/lib",
                                                  "/lib32", "/lib64", "/libx32"};

/* Mount points of the shared `rootfs: host` skeleton (see step_bundle). */
static const char *const rootfs_mount_points[] = {"/proc", "/dev", "/sys",
                                                  "/tmp",  "/etc", "/workspace"};

#define LD_CACHE_MAX (1 << 20)

struct sandbox {
    const struct stk_local_paths *p;
    const struct stk_run_request *req;
    const struct cg_ops *cg;
    enum stk_oci_runtime rt;
    char rt_path[256];
    char id[64];
    char dir[512], bundle[600], rootfs[640], etc[600], workspace[600], log[600];
    /* the volumes (volume.c): /workspace's image unless --workspace, and
     * the home's mount point and image when spec.storage.home */
    char workspace_img[600], home[600], home_img[600];
    char vol_templates[600]; /* <state>/volume-templates (volume.c) */
    const char *host_dirs[STK_ARRAY_SIZE(host_dir_candidates)];
    size_t n_host_dirs;
    /* the sandbox's host id range (idmap.c); size 0 under gVisor, whose
     * workload never meets the host kernel's identities */
    struct idmap ids;
    char userns[64];            /* its user namespace's nsfs file */
    struct stk_oci_options oci; /* what config.json is rendered from */
    char cgpath[128];
    char cg_src[STK_OCI_MAX_CGROUP_BINDS][160], cg_dst[STK_OCI_MAX_CGROUP_BINDS][48];
    struct stk_oci_bind cg_binds[STK_OCI_MAX_CGROUP_BINDS];
    char cg_skel[600];
    /* the same paths as a user-namespaced runtime sees them (viewed()) */
    char v_rootfs[700], v_workspace[700], v_etc[700], v_home[700], v_libexec[700], v_skel[700];
    char *config;   /* rendered config.json */
    char *ld_cache; /* the host's /etc/ld.so.cache, for the shared /etc */
    size_t n_ld_cache;
    struct stk_oci_file etc_files[STK_OCI_ETC_FILES];
    int lock_fd;
    int log_fd;
    sigset_t child_mask; /* the caller's mask, restored in every child */
    /* The pid file's process, our child once create has exited: the
     * container's init (runc, crun) or gVisor's sandbox (runsc), whose exit
     * status is the workload's. */
    pid_t init_pid;
    bool reaped; /* init_pid's exit status was collected */
    /* runsc: the workload's output comes through these and stockade copies
     * it to its own stdout/stderr */
    int out_pipe[2], err_pipe[2];
    /* the network: its namespace path (rendered into config.json), the
     * handle once it is up, and the reader of its denied attempts */
    char netns[700];
    struct stk_net *net;
    struct stk_egress_log *elog;
    struct stk_proxy *proxy; /* spec.network.allowHosts: the egress proxy */
    char proxy_url[80];      /* where it is, when on the host side (gVisor) */
    struct stk_buf events;   /* egress events, JSON Lines */
    size_t n_events;
    /* a long-lived sandbox (stk_local_provision): stockade-init is its
     * process and listens on listen_fd, which the runtime passes as fd 3 */
    bool session;
    char libexec[600], sock[256];
    int listen_fd;
    /* under a runtime that cannot pass fd 3 (rt_desc.init_binds_flag):
     * the host directory init binds its socket in */
    char sock_dir[256];
    /* --workspace DIR under a user namespace: DIR is bound (on the host,
     * as root) at <dir>/workspace, a path the sandbox's root can pass
     * through (DIR's own parents may be root-only) */
    bool ws_bind;
    /* the same for a rootfs DIR (bound at <dir>/rootfs) */
    bool rootfs_bind;
    /* step_dir made s->dir (undo_dir removes only what this run made) */
    bool made_dir;
    /* spec.image: the store's root and config; a run holds the image
     * (hold_fd) so that `image rm` passes it over */
    struct local_image image;
    int hold_fd;
};

static int sandbox_log_tail(struct sandbox *s, char *buf, size_t n)
{
    char all[4096];
    buf[0] = '\0';
    if (s->log_fd < 0)
        return 0;
    ssize_t r = pread(s->log_fd, all, sizeof(all) - 1, 0);
    if (r <= 0)
        return 0;
    all[r] = '\0';
    while (r > 0 && (all[r - 1] == '\n' || all[r - 1] == ' '))
        all[--r] = '\0';
    char *last = strrchr(all, '\n');
    fmt_into(buf, n, "%s", last ? last + 1 : all);
    return 1;
}

static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * UINT64_C(0x100000001b3);
    return h;
}

/* The generated /etc is the same for every sandbox: one read-only copy,
 * named after a hash of its content (the loader's cache included, so a
 * changed host gets a new copy), created once by whichever run needs it
 * first (write to a temporary name, then rename). */
static int shared_etc_name(struct sandbox *s, struct stk_error **err)
{
    s->ld_cache = stk_xmalloc(LD_CACHE_MAX);
    ssize_t n = file_read("/etc/ld.so.cache", s->ld_cache, LD_CACHE_MAX);
    /* absent or too large: the loader searches the directories instead */
    s->n_ld_cache = n > 0 && (size_t)n < LD_CACHE_MAX - 1 ? (size_t)n : 0;
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (size_t i = 0; i < STK_OCI_ETC_FILES; i++) {
        h = fnv1a(h, s->etc_files[i].name, strlen(s->etc_files[i].name) + 1);
        h = fnv1a(h, s->etc_files[i].content, strlen(s->etc_files[i].content) + 1);
    }
    h = fnv1a(h, s->ld_cache, s->n_ld_cache);
    return stk_path_make(s->etc, sizeof(s->etc), err, "%s/etc-%016llx", s->p->state_dir,
                         (unsigned long long)h);
}

static struct sandbox sandbox_new(const struct stk_local_paths *p,
                                  const struct stk_run_request *req, bool session)
{
    return (struct sandbox){
        .p = p,
        .req = req,
        .cg = cg_detect(),
        .rt = req->runtime,
        .lock_fd = -1,
        .log_fd = -1,
        .out_pipe = {-1, -1},
        .err_pipe = {-1, -1},
        .listen_fd = -1,
        .session = session,
        .hold_fd = -1,
    };
}

/* ---- parse: everything computed before acting --------------------------------- */

/* gVisor's own kernel (the Sentry) lives in the sandbox's memory cgroup:
 * below this it is killed before the workload runs (16Mi was, 32Mi runs). */
#define RUNSC_MIN_MEMORY (32ll << 20)

/* A path under the state directory as a user-namespaced runtime sees it:
 * under RT_VIEW, where rt_spawn binds the state directory, since the
 * sandbox's root must pass through every directory above what it mounts
 * and the state directory's own parents may be root-only. Other paths (a
 * rootfs DIR of the caller's) are what they are. */
static int viewed(const struct sandbox *s, const char *path, char *out, size_t n,
                  struct stk_error **err)
{
    size_t len = strlen(s->p->state_dir);
    if (!path[0] || strncmp(path, s->p->state_dir, len) || (path[len] && path[len] != '/'))
        return stk_path_make(out, n, err, "%s", path);
    return stk_path_make(out, n, err, RT_VIEW "%s", path + len);
}

static int sandbox_prepare(struct sandbox *s, struct stk_error **err)
{
    const struct stk_boundary *b = s->req->b;
    char rnd[9];
    int r;
    if (s->req->runtime == STK_OCI_RUNSC && b->limits.memory > 0 &&
        b->limits.memory < RUNSC_MIN_MEMORY)
        return stk_error_make(err, EINVAL,
                              "a memory limit of %lld MiB is below gVisor's floor of 32Mi: its "
                              "own kernel is charged to the sandbox's memory; give 32Mi or more, "
                              "or --runtime crun|runc",
                              (long long)(b->limits.memory >> 20));
    random_hex(rnd, 8);
    if ((r = local_image_open(s->p->state_dir, b, &s->image, err)) < 0)
        return r;
    if (s->image.img && !s->session &&
        (s->hold_fd = stk_image_hold(s->image.img, s->image.store, err)) < 0)
        return s->hold_fd;
    bool host = stk_streq(b->rootfs, "host") && !s->image.img;
    /* at most STK_NFT_MAX_ID: the id also names the sandbox's nft chain;
     * the name is cut on purpose, a path never is */
    if ((r = s->session ? stk_path_make(s->id, sizeof(s->id), err, "%s", s->req->id)
                        : stk_path_make(s->id, sizeof(s->id), err, "%.39s-%s",
                                        b->name ? b->name : "sandbox", rnd)) < 0 ||
        (r = stk_path_make(s->dir, sizeof(s->dir), err, "%s/sandboxes/%s", s->p->state_dir,
                           s->id)) < 0 ||
        (r = stk_path_make(s->bundle, sizeof(s->bundle), err, "%s/bundle", s->dir)) < 0 ||
        (r = stk_path_make(s->log, sizeof(s->log), err, "%s/runtime.log", s->dir)) < 0 ||
        (r = s->req->workspace && !rt_table[s->rt].userns
                 ? stk_path_make(s->workspace, sizeof(s->workspace), err, "%s", s->req->workspace)
                 : stk_path_make(s->workspace, sizeof(s->workspace), err, "%s/workspace", s->dir)) <
            0 ||
        (r = host ? stk_path_make(s->rootfs, sizeof(s->rootfs), err, "%s/rootfs-host",
                                  s->p->state_dir)
             : rt_table[s->rt].userns
                 ? stk_path_make(s->rootfs, sizeof(s->rootfs), err, "%s/rootfs", s->dir)
                 : stk_path_make(s->rootfs, sizeof(s->rootfs), err, "%s",
                                 s->image.img ? s->image.img->root : b->rootfs)) < 0 ||
        (r = stk_path_make(s->workspace_img, sizeof(s->workspace_img), err,
                           "%s/" VOL_WORKSPACE_IMAGE, s->dir)) < 0 ||
        (r = stk_path_make(s->home, sizeof(s->home), err, "%s/" VOL_HOME_DIR, s->dir)) < 0 ||
        (r = stk_path_make(s->home_img, sizeof(s->home_img), err, "%s/%s", s->dir,
                           b->home_persist ? VOL_HOME_IMAGE : VOL_SCRATCH_IMAGE)) < 0 ||
        (r = stk_path_make(s->vol_templates, sizeof(s->vol_templates), err, "%s/volume-templates",
                           s->p->state_dir)) < 0)
        return r;

    struct stat st;
    if (!rt_find(rt_table[s->rt].name, s->rt_path, sizeof(s->rt_path), &st))
        return stk_error_make(err, ENOENT, "%s is not installed", rt_table[s->rt].name);
    s->ws_bind = s->req->workspace && rt_table[s->rt].userns;
    s->rootfs_bind = !host && rt_table[s->rt].userns;
    if (s->req->workspace && (stat(s->req->workspace, &st) < 0 || !S_ISDIR(st.st_mode)))
        return stk_error_make(err, ENOTDIR, "--workspace %s is not a directory", s->req->workspace);
    if (!host && !s->image.img && (stat(b->rootfs, &st) < 0 || !S_ISDIR(st.st_mode)))
        return stk_error_make(err, ENOTDIR, "rootfs %s is not a directory", b->rootfs);
    if (host)
        for (size_t i = 0; i < STK_ARRAY_SIZE(host_dir_candidates); i++)
            if (stat(host_dir_candidates[i], &st) == 0 && S_ISDIR(st.st_mode))
                s->host_dirs[s->n_host_dirs++] = host_dir_candidates[i];

    if (host) {
        stk_oci_etc_render(b, s->etc_files);
        if ((r = shared_etc_name(s, err)) < 0)
            return r;
    }

    if (s->session && ((r = stk_local_libexec(s->p, s->libexec, sizeof(s->libexec), err)) < 0 ||
                       (r = stk_local_socket_path(s->p, s->id, s->sock, sizeof(s->sock), err)) < 0))
        return r;
    if (s->session && rt_table[s->rt].init_binds_flag &&
        (r = stk_path_make(s->sock_dir, sizeof(s->sock_dir), err, "%s/init/%s.d", s->p->run_dir,
                           s->id)) < 0)
        return r;

    if ((r = stk_path_make(s->cgpath, sizeof(s->cgpath), err, "/" CG_PARENT "/%s", s->id)) < 0 ||
        (s->req->net &&
         (r = stk_net_netns_path_for(s->req->net, s->id, s->netns, sizeof(s->netns), err)) < 0))
        return r;
    if (rt_table[s->rt].userns && s->image.img &&
        (s->image.oci.uid >= IDMAP_SIZE || s->image.oci.gid >= IDMAP_SIZE))
        return stk_error_make(err, EINVAL,
                              "image %s runs as uid %u gid %u: a sandbox's own host id range "
                              "holds ids below %u",
                              s->image.oci.digest ? s->image.oci.digest : "", s->image.oci.uid,
                              s->image.oci.gid, IDMAP_SIZE);
    s->oci = (struct stk_oci_options){
        .root_path = s->rootfs,
        .workspace = s->workspace,
        .etc_dir = host ? s->etc : NULL,
        .host_dirs = s->host_dirs,
        .n_host_dirs = s->n_host_dirs,
        .cgroups_path = s->cgpath,
        .netns_path = s->req->net ? s->netns : NULL,
        .extra_env = s->req->extra_env,
        .n_extra_env = s->req->n_extra_env,
        .init_dir = s->session ? s->libexec : NULL,
        .init_sock_dir = s->sock_dir[0] ? s->sock_dir : NULL,
        .hostname = s->req->hostname,
        .no_cgroup_remount = s->rt == STK_OCI_RUNSC,
        .no_clone3_rule = s->rt == STK_OCI_RUNSC,
        .rlimits_inherited = rt_table[s->rt].rlimits_inherited,
        .home = b->home ? s->home : NULL,
        .image = s->image.img ? &s->image.oci : NULL,
    };
    /* rendered now with a stand-in range, so a bad boundary fails before
     * anything is touched; step_ids renders it with the sandbox's own */
    if (rt_table[s->rt].userns) {
        /* every path the runtime mounts from, as it sees them (RT_VIEW) */
        if ((r = viewed(s, s->rootfs, s->v_rootfs, sizeof(s->v_rootfs), err)) < 0 ||
            (r = viewed(s, s->workspace, s->v_workspace, sizeof(s->v_workspace), err)) < 0 ||
            (r = viewed(s, s->etc, s->v_etc, sizeof(s->v_etc), err)) < 0 ||
            (r = viewed(s, s->home, s->v_home, sizeof(s->v_home), err)) < 0 ||
            (r = viewed(s, s->libexec, s->v_libexec, sizeof(s->v_libexec), err)) < 0)
            return r;
        s->oci.root_path = s->v_rootfs;
        s->oci.workspace = s->v_workspace;
        if (s->oci.etc_dir)
            s->oci.etc_dir = s->v_etc;
        if (s->oci.home)
            s->oci.home = s->v_home;
        if (s->oci.init_dir)
            s->oci.init_dir = s->v_libexec;
        s->oci.id_base = IDMAP_FIRST, s->oci.id_size = IDMAP_SIZE;
        size_t n = cg_own_dirs(s->id, s->cg_src, s->cg_dst, STK_OCI_MAX_CGROUP_BINDS);
        for (size_t i = 0; i < n; i++)
            s->cg_binds[i] = (struct stk_oci_bind){s->cg_src[i], s->cg_dst[i]};
        s->oci.cgroup_binds = s->cg_binds;
        s->oci.n_cgroup_binds = n;
        if (!(n == 1 && !strcmp(s->cg_dst[0], CG_ROOT))) {
            if ((r = stk_path_make(s->cg_skel, sizeof(s->cg_skel), err, "%s/cgroup-v1",
                                   s->p->state_dir)) < 0 ||
                (r = viewed(s, s->cg_skel, s->v_skel, sizeof(s->v_skel), err)) < 0)
                return r;
            s->oci.cgroup_skeleton = s->v_skel;
        }
    }
    return stk_oci_render(b, &s->oci, &s->config, err);
}

/* ---- setup steps, in order; each undoes itself ------------------------------------ */

/* The entries of path but `self`, counting up to max. */
static size_t count_entries(const char *path, const char *self, size_t max)
{
    DIR *d = opendir(path);
    size_t n = 0;
    if (!d)
        return 0;
    for (struct dirent *e; n < max && (e = readdir(d));)
        if (e->d_name[0] != '.' && strcmp(e->d_name, self))
            n++;
    closedir(d);
    return n;
}

unsigned stk_local_max_sandboxes(const struct stk_envconfig *env)
{
    if (env && env->data.local.max_sandboxes.meta.set)
        return (unsigned)env->data.local.max_sandboxes.v;
    return STK_LOCAL_MAX_SANDBOXES;
}

static int step_dir(void *ctx, struct stk_error **err)
{
    struct sandbox *s = ctx;
    char parent[600];
    int r = stk_path_make(parent, sizeof(parent), err, "%s/sandboxes", s->p->state_dir);
    if (r < 0)
        return r;
    if ((r = mkdir_p(parent, 0700)) < 0)
        return stk_error_errno(err, -r, "creating %s", parent);
    /* every other sandbox of this state directory (a long-lived one's own
     * directory exists already), bounded by the hard maximum whatever the
     * request says */
    unsigned max = s->req->max_sandboxes && s->req->max_sandboxes < STK_LOCAL_MAX_SANDBOXES
                       ? s->req->max_sandboxes
                       : STK_LOCAL_MAX_SANDBOXES;
    size_t n = count_entries(parent, s->id, max);
    if (n >= max)
        return stk_error_make(
            err, EAGAIN,
            "%s already holds %zu sandboxes, its limit (%s %u); remove some "
            "(`stockade rm`), or, if some belong to crashed runs, `stockade gc` "
            "removes them",
            s->p->state_dir, n,
            max < STK_LOCAL_MAX_SANDBOXES ? "data.local.maxSandboxes" : "the hard maximum", max);
    char path[700];
    if (s->session) {
        /* the caller made the directory and holds its lock */
        if (access(s->dir, F_OK) < 0)
            return stk_error_errno(err, errno, "%s", s->dir);
    } else {
        if (mkdir(s->dir, 0700) < 0)
            return stk_error_errno(err, errno, "creating %s", s->dir);
        s->made_dir = true;
        if ((r = stk_path_make(path, sizeof(path), err, "%s/lock", s->dir)) < 0)
            return r;
        /* Held for the whole run: gc leaves a locked sandbox alone. */
        s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (s->lock_fd < 0 || flock(s->lock_fd, LOCK_EX) < 0)
            return stk_error_errno(err, errno, "locking %s", path);
    }
    if ((r = stk_path_make(path, sizeof(path), err, "%s/runtime", s->dir)) < 0)
        return r;
    const char *name = rt_table[s->rt].name;
    if ((r = file_write(path, name, strlen(name))) < 0)
        return stk_error_errno(err, -r, "writing %s", path);
    s->log_fd = open(s->log, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (s->log_fd < 0)
        return stk_error_errno(err, errno, "creating %s", s->log);
    return 0;
}

static void undo_dir(void *ctx)
{
    struct sandbox *s = ctx;
    /* a long-lived sandbox's directory outlives a failed start: its logs
     * and lock are the caller's */
    if (!s->session && s->made_dir)
        (void)rm_rf(s->dir);
    s->made_dir = false;
    if (s->log_fd >= 0)
        close(s->log_fd);
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    s->log_fd = s->lock_fd = -1;
}

/* The sandbox's own host id range, and config.json rendered with it. */
static int step_ids(void *ctx, struct stk_error **err)
{
    struct sandbox *s = ctx;
    if (!rt_table[s->rt].userns)
        return 0;
    int r = idmap_acquire(s->dir, &s->ids, err);
    if (r < 0)
        return r;
    /* The runtime mounts the sandbox's directories from inside its user
     * namespace, as the sandbox's root (host id base), which must pass
     * through the directories above them: search, never read (0711). The
     * workload never sees these paths (they are outside its root). */
    char parent[600];
    const char *dirs[] = {s->p->state_dir, parent, s->dir, s->session ? s->libexec : NULL};
    if ((r = stk_path_make(parent, sizeof(parent), err, "%s/sandboxes", s->p->state_dir)) < 0)
        return r;
    /* the mount points of a v1 host's controllers, shared and read-only */
    for (size_t i = 0; s->oci.cgroup_skeleton && i < s->oci.n_cgroup_binds; i++) {
        char mp[700];
        if ((r = stk_path_make(mp, sizeof(mp), err, "%s/%s", s->cg_skel,
                               s->cg_dst[i] + strlen(CG_ROOT "/"))) < 0)
            return r;
        if ((r = mkdir_p(mp, 0755)) < 0)
            return stk_error_errno(err, -r, "creating %s", mp);
    }
    for (size_t i = 0; i < STK_ARRAY_SIZE(dirs) && dirs[i]; i++) {
        struct stat st;
        if (stat(dirs[i], &st) < 0 ||
            ((st.st_mode & 0111) != 0111 && chmod(dirs[i], (st.st_mode & 07777) | 0111) < 0))
            return stk_error_errno(err, errno, "making %s searchable", dirs[i]);
    }
    if ((r = idmap_userns(&s->ids, s->userns, sizeof(s->userns), err)) < 0)
        return r;
    s->oci.id_base = s->ids.base;
    s->oci.id_size = s->ids.size;
    s->oci.userns_path = s->userns;
    free(s->config);
    s->config = NULL;
    return stk_oci_render(s->req->b, &s->oci, &s->config, err);
}

/* A run's range goes with it; a long-lived sandbox keeps its range until
 * rm (its kept home is owned by it). */
static void undo_ids(void *ctx)
{
    struct sandbox *s = ctx;
    if (!s->session && s->ids.size)
        (void)idmap_release(s->dir);
    s->ids = (struct idmap){0};
}

/* The host ids of the sandbox user: its own range's, or without one (gVisor) STK_OCI_UID. */
static uid_t sandbox_uid(const struct sandbox *s)
{
    uid_t in = s->image.img ? s->image.oci.uid : STK_OCI_UID;
    return s->ids.size ? s->ids.base + in : in;
}
static gid_t sandbox_gid(const struct sandbox *s)
{
    gid_t in = s->image.img ? s->image.oci.gid : STK_OCI_GID;
    return s->ids.size ? s->ids.base + in : in;
}

static int shared_etc(struct sandbox *s, struct stk_error **err)
{
    if (access(s->etc, F_OK) == 0)
        return 0;

    char tmp[700], path[800] = "";
    int r = stk_path_make(tmp, sizeof(tmp), err, "%s.%s", s->etc, s->id);
    if (r < 0)
        return r;
    if (mkdir(tmp, 0755) < 0)
        return stk_error_errno(err, errno, "creating %s", tmp);
    for (size_t i = 0; i < STK_OCI_ETC_FILES && r >= 0; i++)
        if ((r = stk_path_fmt(path, sizeof(path), "%s/%s", tmp, s->etc_files[i].name)) >= 0)
            r = file_write(path, s->etc_files[i].content, strlen(s->etc_files[i].content));
    if (r >= 0 && s->n_ld_cache > 0 &&
        (r = stk_path_fmt(path, sizeof(path), "%s/ld.so.cache", tmp)) >= 0)
        r = file_write(path, s->ld_cache, s->n_ld_cache);
    if (r < 0) {
        (void)rm_rf(tmp);
        return stk_error_errno(err, -r, "writing %s", path);
    }
    if (rename(tmp, s->etc) < 0) {
        int e = errno;
        (void)rm_rf(tmp);
        /* another run made the same copy first */
        if (e != EEXIST && e != ENOTEMPTY)
            return stk_error_errno(err, e, "renaming %s", tmp);
    }
    return 0;
}

static int step_bundle(void *ctx, struct stk_error **err)
{
    struct sandbox *s = ctx;
    char path[700];
    int r;
    if (s->session) {
        /* a restart renders afresh; what was there belongs to the
         * previous container */
        (void)rm_rf(s->bundle);
        if (!s->req->workspace && vol_unmount(s->workspace) == 0)
            (void)rm_rf(s->workspace);
    }
    if (mkdir(s->bundle, 0700) < 0)
        return stk_error_errno(err, errno, "creating %s", s->bundle);
    if (s->rootfs_bind) {
        /* the runtime would make missing mount points as the sandbox's
         * root, who may not write DIR: made here first, in DIR itself (as
         * the runtime did before ranges) */
        const char *dir = s->image.img ? s->image.img->root : s->req->b->rootfs;
        for (size_t i = 0; i < STK_ARRAY_SIZE(rootfs_mount_points) + 1; i++) {
            const char *mp = i < STK_ARRAY_SIZE(rootfs_mount_points) ? rootfs_mount_points[i]
                             : s->req->b->home                       ? STK_HOME_PATH
                                                                     : NULL;
            if (!mp || !strcmp(mp, "/etc"))
                continue;
            if ((r = stk_path_make(path, sizeof(path), err, "%s%s", dir, mp)) < 0)
                return r;
            if ((r = mkdir_p(path, 0755)) < 0)
                return stk_error_errno(err, -r, "creating %s", path);
        }
        if (mkdir(s->rootfs, 0755) < 0 && errno != EEXIST)
            return stk_error_errno(err, errno, "creating %s", s->rootfs);
        /* idmapped: DIR's root-owned files are the sandbox's root's */
        if ((r = idmap_bind(dir, s->rootfs, s->userns, err)) < 0)
            return r;
    }
    if ((r = stk_path_make(path, sizeof(path), err, "%s/config.json", s->bundle)) < 0)
        return r;
    if ((r = file_write(path, s->config, strlen(s->config))) < 0)
        return stk_error_errno(err, -r, "writing %s", path);
    if (s->ws_bind && mkdir(s->workspace, 0755) < 0)
        return stk_error_errno(err, errno, "creating %s", s->workspace);
    if (!s->req->workspace) {
        if (mkdir(s->workspace, 0755) < 0 ||
            chown(s->workspace, sandbox_uid(s), sandbox_gid(s)) < 0)
            return stk_error_errno(err, errno, "creating %s", s->workspace);
    }
    if (s->session) {
        /* the mount point of the supervisor's directory */
        /* (in a bound DIR itself: root has no id in its idmapped view) */
        if ((r = stk_path_make(path, sizeof(path), err, "%s" STK_OCI_INIT_DIR,
                               s->rootfs_bind
                                   ? (s->image.img ? s->image.img->root : s->req->b->rootfs)
                                   : s->rootfs)) < 0)
            return r;
        if ((r = mkdir_p(path, 0755)) < 0)
            return stk_error_errno(err, -r, "creating %s", path);
    }
    if (!stk_streq(s->req->b->rootfs, "host") || s->image.img)
        return 0;
    /* The root of every `rootfs: host` sandbox is one shared, empty
     * skeleton holding only mount points, mounted read-only. Sharing it
     * is not only tidy: removing a directory that was a mount point in a
     * container's dying mount namespace waits for that namespace to go
     * (tens of milliseconds), and a per-sandbox root paid that every run. */
    char done[700];
    if ((r = stk_path_make(done, sizeof(done), err, "%s.done", s->rootfs)) < 0)
        return r;
    if (access(done, F_OK) == 0)
        return shared_etc(s, err);
    if ((r = mkdir_p(s->rootfs, 0755)) < 0)
        return stk_error_errno(err, -r, "creating %s", s->rootfs);
    for (size_t i = 0; i < STK_ARRAY_SIZE(rootfs_mount_points); i++) {
        if ((r = stk_path_make(path, sizeof(path), err, "%s%s", s->rootfs,
                               rootfs_mount_points[i])) < 0)
            return r;
        if (mkdir(path, 0755) < 0 && errno != EEXIST)
            return stk_error_errno(err, errno, "creating %s", path);
        /* runc gives a tmpfs the mode of the directory it covers */
        if (!strcmp(rootfs_mount_points[i], "/tmp") && chmod(path, 01777) < 0)
            return stk_error_errno(err, errno, "chmod %s", path);
    }
    for (size_t i = 0; i < s->n_host_dirs; i++) {
        if ((r = stk_path_make(path, sizeof(path), err, "%s%s", s->rootfs, s->host_dirs[i])) < 0)
            return r;
        if (mkdir(path, 0755) < 0 && errno != EEXIST)
            return stk_error_errno(err, errno, "creating %s", path);
    }
    if ((r = file_write(done, "", 0)) < 0)
        return stk_error_errno(err, -r, "writing %s", done);
    return shared_etc(s, err);
}

/* The bundle stays with the directory; a bound rootfs DIR is unbound. */
static void undo_bundle(void *ctx)
{
    struct sandbox *s = ctx;
    if (s->rootfs_bind && vol_unmount(s->rootfs) == 0)
        (void)rmdir(s->rootfs);
}

/* /workspace and the home, each a filesystem of its own with the size the
 * spec gives it (volume.c): writing past it fails with ENOSPC, and nothing
 * lands on the host's filesystem. A `--workspace DIR` is the caller's and
 * stays a plain directory. */
static int step_storage(void *ctx, struct stk_error **err)
{
    struct sandbox *s = ctx;
    const struct stk_boundary *b = s->req->b;
    int r;
    /* the caller's directory keeps its owners on disk, idmapped: what
     * uid 65534 owns is the sandbox user's, as before ranges */
    if (s->ws_bind && (r = idmap_bind(s->req->workspace, s->workspace, s->userns, err)) < 0)
        return r;
    if (!s->req->workspace && b->limits.storage > 0) {
        struct vol ws = {.image = s->workspace_img,
                         .mnt = s->workspace,
                         .size = b->limits.storage,
                         .uid = sandbox_uid(s),
                         .gid = sandbox_gid(s),
                         .templates = s->vol_templates};
        if ((r = vol_mount(&ws, err)) < 0)
            return r;
        /* the volume's root belongs to the sandbox user; an image's own
         * non-root user gets it instead */
        if (s->image.img && chown(s->workspace, sandbox_uid(s), sandbox_gid(s)) < 0)
            return stk_error_errno(err, errno, "handing %s to the image's user", s->workspace);
    }
    if (!b->home)
        return 0;
    if (stk_streq(b->rootfs, "host") && !s->image.img) {
        /* the mount point in the shared skeleton (made before homes were) */
        char path[700];
        if ((r = stk_path_make(path, sizeof(path), err, "%s" STK_HOME_PATH, s->rootfs)) < 0)
            return r;
        if ((r = mkdir_p(path, 0755)) < 0)
            return stk_error_errno(err, -r, "creating %s", path);
    }
    struct vol home = {.image = s->home_img,
                       .mnt = s->home,
                       .size = b->home_size,
                       .keep = b->home_persist,
                       .uid = sandbox_uid(s),
                       .gid = sandbox_gid(s),
                       .templates = s->vol_templates};
    if ((r = vol_mount(&home, err)) < 0)
        return r;
    /* a kept home made under another range (or before ranges) */
    if (s->ids.size && b->home_persist && (r = idmap_shift(s->home, &s->ids)) < 0)
        return stk_error_errno(err, -r, "moving %s to the sandbox's ids", s->home);
    return 0;
}

/* Unmounts both volumes (the loop devices clear themselves). The images go
 * with the directory after a run; a long-lived sandbox whose start failed
 * keeps a persistent home's image, as a stop would. */
static void undo_storage(void *ctx)
{
    struct sandbox *s = ctx;
    if (!s->req->workspace && vol_unmount(s->workspace) == 0)
        (void)unlink(s->workspace_img);
    if (s->ws_bind && vol_unmount(s->workspace) == 0)
        (void)rmdir(s->workspace);
    if (vol_unmount(s->home) == 0) {
        (void)rmdir(s->home);
        if (!s->req->b->home_persist || !s->session)
            (void)unlink(s->home_img);
    }
}

/* The sandbox's network namespace with its veth and egress chain, and the
 * reader of its denied attempts. Without a network config the runtime makes
 * an empty namespace instead (loopback only). */
static int step_network(void *ctx, struct stk_error **err)
{
    struct sandbox *s = ctx;
    const struct stk_boundary *b = s->req->b;
    int r;
    if (!s->req->net)
        return 0;
    struct stk_net_config nc = *s->req->net;
    nc.proxy_host = rt_table[s->rt].proxy_host && local_proxy_needed(b);
    if ((r = stk_net_up(&nc, b, s->id, s->ids.size ? s->userns : NULL, &s->net, err)) < 0)
        return r;
    if ((r = stk_egress_log_open(stk_net_log_group(s->net), &s->elog, err)) < 0 ||
        (r = stk_egress_log_watch(s->elog, s->id, b)) < 0) {
        stk_egress_log_close(s->elog);
        s->elog = NULL;
        (void)stk_net_down(s->net, NULL);
        s->net = NULL;
        return r < 0 ? r : stk_error_make(err, EINVAL, "watching denied egress");
    }
    return 0;
}

static void events_add(struct sandbox *s, const struct stk_egress_event *ev, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s->n_events >= STK_RUN_MAX_EVENTS)
            return;
        stk_egress_event_json(&ev[i], &s->events);
        stk_buf_putc(&s->events, '\n');
        s->n_events++;
    }
}

/* Collects what the kernel logged; non-blocking. */
static void events_poll(struct sandbox *s, bool flush)
{
    struct stk_egress_event ev[32];
    int n;
    if (!s->elog)
        return;
    while ((n = stk_egress_log_read(s->elog, 0, ev, STK_ARRAY_SIZE(ev), NULL)) > 0)
        events_add(s, ev, (size_t)n);
    if (flush)
        events_add(s, ev, stk_egress_log_flush(s->elog, ev, STK_ARRAY_SIZE(ev)));
}

/* The proxy module's entry points, set by the first local_proxy_start()
 * that needs a proxy; a proxy exists only after that. */
static struct {
    __typeof__(&stk_proxy_start) start;
    __typeof__(&stk_proxy_event_fd) event_fd;
    __typeof__(&stk_proxy_events_read) events_read;
    __typeof__(&stk_proxy_stop) stop;
} proxy_mod;

static int proxy_mod_load(struct stk_error **err)
{
    if (proxy_mod.stop)
        return 0;
    if (!(proxy_mod.start = STK_MODULE_SYM("proxy", stk_proxy_start, err)) ||
        !(proxy_mod.event_fd = STK_MODULE_SYM("proxy", stk_proxy_event_fd, err)) ||
        !(proxy_mod.events_read = STK_MODULE_SYM("proxy", stk_proxy_events_read, err)))
        return -ENOENT;
    proxy_mod.stop = STK_MODULE_SYM("proxy", stk_proxy_stop, err);
    return proxy_mod.stop ? 0 : -ENOENT;
}

int local_proxy_event_fd(const struct stk_proxy *p)
{
    return p ? proxy_mod.event_fd(p) : -1;
}

size_t local_proxy_events_read(struct stk_proxy *p, void (*fn)(void *ud, const char *json),
                               void *ud)
{
    return p ? proxy_mod.events_read(p, fn, ud) : 0;
}

void local_proxy_stop(struct stk_proxy *p, void (*fn)(void *ud, const char *json), void *ud)
{
    if (p)
        proxy_mod.stop(p, fn, ud);
}

bool local_proxy_needed(const struct stk_boundary *b)
{
    return b->n_allow_hosts || b->n_bindings;
}

void local_proxy_url(const struct stk_net *net, char *buf, size_t n)
{
    struct stk_cidr gw = stk_net_gateway(net);
    char a[INET6_ADDRSTRLEN] = "";
    (void)inet_ntop(gw.family == STK_FAMILY_V4 ? AF_INET : AF_INET6, gw.addr, a, sizeof(a));
    snprintf(buf, n, gw.family == STK_FAMILY_V4 ? "http://%s:%u" : "http://[%s]:%u", a,
             stk_net_proxy_port(net));
}

int local_proxy_start(const struct stk_net_config *nc, const struct stk_boundary *b, const char *id,
                      const struct stk_net *net, bool host_side, struct stk_proxy **ret,
                      struct stk_error **err)
{
    *ret = NULL;
    if (!local_proxy_needed(b))
        return 0;
    int r = proxy_mod_load(err);
    if (r < 0)
        return stk_error_wrap(err, "the egress proxy");
    /* other sandboxes are never reached through the proxy */
    struct stk_cidr pools[2];
    size_t n_pools = 0;
    if (nc->pool4.family != STK_FAMILY_NONE)
        pools[n_pools++] = nc->pool4;
    if (nc->pool6.family != STK_FAMILY_NONE)
        pools[n_pools++] = nc->pool6;
    const char *hosts = getenv(STK_PROXY_HOSTS_ENV), *ca = getenv(STK_PROXY_CA_ENV);
    struct stk_proxy_config pc = {
        .sandbox = id,
        .netns_path = host_side ? NULL : stk_net_netns_path(net),
        .allow = b->allow_hosts,
        .n_allow = b->n_allow_hosts,
        .deny = b->proxy_deny,
        .n_deny = b->n_proxy_deny,
        .deny_extra = pools,
        .n_deny_extra = n_pools,
        .hosts_file = hosts && *hosts ? hosts : NULL,
        .bindings = b->bindings,
        .n_bindings = b->n_bindings,
        .ca_file = ca && *ca ? ca : NULL,
    };
    if (host_side) {
        struct stk_cidr a4, a6;
        stk_net_addresses(net, &a4, &a6);
        pc.listen = stk_net_gateway(net);
        pc.listen_port = stk_net_proxy_port(net);
        if (a4.family == STK_FAMILY_V4)
            pc.peers[pc.n_peers++] = a4;
        if (a6.family == STK_FAMILY_V6)
            pc.peers[pc.n_peers++] = a6;
    }
    return proxy_mod.start(&pc, ret, err);
}

void local_proxy_event(struct stk_buf *out, const char *json)
{
    /* a record is one JSON object: tag it as the run's other events are */
    if (json[0] != '{' || json[1] == '}')
        return;
    stk_buf_printf(out, "{\"type\":\"egress_proxy\",%s", json + 1);
}

static void proxy_event(void *ud, const char *json)
{
    struct sandbox *s = ud;
    if (s->n_events >= STK_RUN_MAX_EVENTS)
        return;
    local_proxy_event(&s->events, json);
    stk_buf_putc(&s->events, '\n');
    s->n_events++;
}

/* The egress proxy, before the workload starts: on the sandbox's loopback,
 * or under gVisor on the host side, whose address and port (known now that
 * the network has its lease) config.json's environment then names. */
static int step_proxy(void *ctx, struct stk_error **err)
{
    struct sandbox *s = ctx;
    if (!s->net)
        return 0;
    bool host = rt_table[s->rt].proxy_host;
    int r = local_proxy_start(s->req->net, s->req->b, s->id, s->net, host, &s->proxy, err);
    if (r < 0 || !s->proxy || !host)
        return r;
    char path[700];
    local_proxy_url(s->net, s->proxy_url, sizeof(s->proxy_url));
    s->oci.proxy_url = s->proxy_url;
    free(s->config);
    s->config = NULL;
    if ((r = stk_oci_render(s->req->b, &s->oci, &s->config, err)) < 0 ||
        (r = stk_path_make(path, sizeof(path), err, "%s/config.json", s->bundle)) < 0)
        return r;
    if ((r = file_write(path, s->config, strlen(s->config))) < 0)
        return stk_error_errno(err, -r, "writing %s", path);
    return 0;
}

static void undo_proxy(void *ctx)
{
    struct sandbox *s = ctx;
    local_proxy_stop(s->proxy, proxy_event, s);
    s->proxy = NULL;
}

static void undo_network(void *ctx)
{
    struct sandbox *s = ctx;
    stk_egress_log_close(s->elog);
    s->elog = NULL;
    if (s->net)
        (void)stk_net_down(s->net, NULL);
    s->net = NULL;
}

static bool observable(const struct sandbox *s, enum stk_kill_reason k)
{
    for (const char *const *u = rt_table[s->rt].unobservable; *u; u++)
        if (!strcmp(*u, stk_kill_reason_names[k]))
            return false;
    return true;
}

static int step_cgroup(void *ctx, struct stk_error **err)
{
    struct sandbox *s = ctx;
    const struct stk_resolved_limits *l = &s->req->b->limits;
    struct cg_limits cl = {
        .memory = l->memory,
        .pids = l->pids,
        .cpu_milli = l->cpu_milli,
        .owner = s->p->state_dir,
    };
    /* gVisor's guest tasks are not host tasks, but on its systrap platform
     * each guest task costs the sandbox about two host tasks (a stub and
     * its thread), on top of the sentry's and gofer's own threads. The
     * host limit holds the guest to about the requested count; what a fork
     * beyond it meets is gVisor's answer (EAGAIN, or the sandbox ends). */
    if (rt_table[s->rt].guest_tasks && l->pids > 0)
        cl.pids = RUNSC_BASE_TASKS + RUNSC_TASKS_PER_GUEST * l->pids;
    return s->cg->create(s->id, &cl, err);
}

static void undo_cgroup(void *ctx)
{
    struct sandbox *s = ctx;
    (void)cg_remove(s->id);
}

static int runtime_failed(struct sandbox *s, const char *what, int status, struct stk_error **err)
{
    char tail[400];
    sandbox_log_tail(s, tail, sizeof(tail));
    if (status < 0)
        return stk_error_errno(err, -status, "%s %s", rt_table[s->rt].name, what);
    return stk_error_make(err, EIO, "%s %s failed (exit %d)%s%s", rt_table[s->rt].name, what,
                          status, tail[0] ? ": " : "", tail);
}

/* Copies what is waiting in a relay pipe to stockade's fd `to`. Closes the
 * pipe at end of file. Bounded per call so one chatty stream cannot starve
 * the supervisor. */
static void relay(int *from, int to)
{
    char buf[65536];
    for (int i = 0; *from >= 0 && i < 16; i++) {
        ssize_t n = read(*from, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            close(*from);
            *from = -1;
            return;
        }
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(to, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                break; /* our own output is gone: drop, keep supervising */
            off += w;
        }
    }
}

/* The supervisor's socket: listening here, on the host, before the
 * container exists; stockade-init inherits it as fd 3. Nothing inside the
 * sandbox can reach the path: it is not mounted there.
 * Under gVisor (rt_desc.init_binds_flag) init binds it itself, in the
 * directory made here (bound at STK_OCI_INIT_SOCK_DIR, owned by the sandbox
 * user); take_init_socket moves it out. */
static int step_socket(void *ctx, struct stk_error **err)
{
    struct sandbox *s = ctx;
    if (!s->session)
        return 0;
    char dir[256];
    int r = stk_path_make(dir, sizeof(dir), err, "%s/init", s->p->run_dir);
    if (r < 0)
        return r;
    if ((r = mkdir_p(dir, 0700)) < 0)
        return stk_error_errno(err, -r, "creating %s", dir);
    (void)unlink(s->sock);
    if (s->sock_dir[0]) {
        /* a crashed create's is stale: nothing runs that bound it */
        (void)rm_rf(s->sock_dir);
        if (mkdir(s->sock_dir, 0700) < 0 || chown(s->sock_dir, sandbox_uid(s), sandbox_gid(s)) < 0)
            return stk_error_errno(err, errno, "creating %s", s->sock_dir);
        return 0;
    }
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, s->sock, strlen(s->sock) + 1);
    s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s->listen_fd < 0)
        return stk_error_errno(err, errno, "socket");
    mode_t old = umask(0077);
    r = bind(s->listen_fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (r < 0 || listen(s->listen_fd, 64) < 0) {
        r = errno;
        close(s->listen_fd);
        s->listen_fd = -1;
        return stk_error_errno(err, r, "listening on %s", s->sock);
    }
    return 0;
}

static void undo_socket(void *ctx)
{
    struct sandbox *s = ctx;
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    s->listen_fd = -1;
    if (s->session)
        (void)unlink(s->sock);
    if (s->sock_dir[0])
        (void)rm_rf(s->sock_dir);
}

#define INIT_SOCKET_WAIT_MS 20000

/* Connects to NAME in the directory dfd, through /proc/self/fd so that the
 * length of the directory's path does not matter. 0, or -errno. */
static int connect_in(int dfd, const char *name)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int n = snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/%s", dfd, name);
    if (n < 0 || (size_t)n >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    return connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? -errno : 0;
}

/* Under gVisor: waits until stockade-init listens on the socket it binds in
 * s->sock_dir and moves it to s->sock, the host-only path every client
 * connects to, then makes the directory root's and read-only. Nothing but
 * init runs in the sandbox yet (the workload starts on a request over this
 * very socket), so what appears there is init's; afterwards nothing in the
 * sandbox can reach the socket's name, nor put another in its place.
 *
 * "Listens" is seen here as a connection that succeeds (init accepts it and
 * sees it closed): init does nothing in the directory after listen(2), so
 * the directory is not touched under gVisor's feet. A ready file that init
 * made after listening was acted on (unlinked, the directory closed) while
 * gVisor still had calls to make on it: under load its open(2) failed,
 * init exited and every later connection was refused. */
static int take_init_socket(struct sandbox *s, struct stk_error **err)
{
    char from[300];
    int r = stk_path_make(from, sizeof(from), err, "%s/" STK_OCI_INIT_SOCK_NAME, s->sock_dir);
    if (r < 0)
        return r;
    _cleanup_close_ int dfd = open(s->sock_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return stk_error_errno(err, errno, "opening %s", s->sock_dir);
    struct stat st;
    for (int waited = 0;; waited += 2) {
        /* a socket or nothing: connect(2) would follow a symlink */
        if (fstatat(dfd, STK_OCI_INIT_SOCK_NAME, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            !S_ISSOCK(st.st_mode))
            return stk_error_make(err, EPERM, "%s is not stockade-init's socket", from);
        /* ENOENT: not bound yet; ECONNREFUSED: bound, not listening yet */
        if ((r = connect_in(dfd, STK_OCI_INIT_SOCK_NAME)) == 0)
            break;
        if (r != -ENOENT && r != -ECONNREFUSED)
            return stk_error_errno(err, -r, "stockade-init's socket %s", from);
        if (waited >= INIT_SOCKET_WAIT_MS || (kill(s->init_pid, 0) < 0 && errno == ESRCH)) {
            char tail[512] = "";
            (void)sandbox_log_tail(s, tail, sizeof(tail));
            return stk_error_make(err, EIO, "stockade-init did not listen in the sandbox%s%s",
                                  tail[0] ? ": " : "", tail);
        }
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (fstatat(dfd, STK_OCI_INIT_SOCK_NAME, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return stk_error_errno(err, errno, "%s", from);
    if (!S_ISSOCK(st.st_mode) || st.st_uid != sandbox_uid(s))
        return stk_error_make(err, EPERM, "%s is not stockade-init's socket", from);
    if (rename(from, s->sock) < 0)
        return stk_error_errno(err, errno, "moving %s to %s", from, s->sock);
    if (chown(s->sock_dir, 0, 0) < 0 || chmod(s->sock_dir, 0555) < 0)
        return stk_error_errno(err, errno, "closing %s", s->sock_dir);
    return 0;
}

/* One runtime call creates and starts the container (run --detach): the
 * runtime exits once the workload runs, and the workload's process becomes
 * stockade's child. */
static int step_run(void *ctx, struct stk_error **err)
{
    struct sandbox *s = ctx;
    char pidfile[700];
    int r = stk_path_make(pidfile, sizeof(pidfile), err, "%s/pid", s->dir);
    if (r < 0)
        return r;
    const char *args[12];
    size_t n = 0;
    const char *net_flag = s->net ? rt_table[s->rt].net_on : rt_table[s->rt].net_off;
    if (net_flag)
        args[n++] = net_flag; /* a global flag: before the command */
    if (s->sock_dir[0])
        args[n++] = rt_table[s->rt].init_binds_flag;
    args[n++] = "run";
    args[n++] = "--detach";
    args[n++] = "--bundle";
    args[n++] = s->bundle;
    args[n++] = "--pid-file";
    args[n++] = pidfile;
    if (s->session && !s->sock_dir[0])
        args[n++] = "--preserve-fds=1";
    args[n++] = s->id;
    args[n] = NULL;
    struct rt_stdio io = RT_IO_INHERIT;
    if (s->session) {
        /* stockade-init's diagnostics go to the runtime log; the workload's
         * output goes through init's socket */
        io = RT_IO_LOG(s->log_fd);
        io.pass_fd = s->listen_fd;
    } else if (s->req->quiet) {
        io = RT_IO_LOG(s->log_fd);
    } else if (rt_table[s->rt].relay_output) {
        if (pipe2(s->out_pipe, O_CLOEXEC) < 0 || pipe2(s->err_pipe, O_CLOEXEC) < 0)
            return stk_error_errno(err, errno, "creating output pipes");
        io.fd[1] = s->out_pipe[1];
        io.fd[2] = s->err_pipe[1];
    }
    r = rt_exec(s->p, s->rt, s->rt_path, args, io, &s->child_mask);
    if (s->out_pipe[0] >= 0) {
        (void)fcntl(s->out_pipe[0], F_SETFL, O_NONBLOCK);
        (void)fcntl(s->err_pipe[0], F_SETFL, O_NONBLOCK);
    }
    /* the sandbox holds the write ends now */
    for (int i = 0; i < 2; i++) {
        int *w = i ? &s->err_pipe[1] : &s->out_pipe[1];
        if (*w >= 0)
            close(*w);
        *w = -1;
    }
    if (r != 0) {
        /* under relay, the runtime's own complaint is in the pipes */
        relay(&s->err_pipe[0], STDERR_FILENO);
        relay(&s->out_pipe[0], STDOUT_FILENO);
        return runtime_failed(s, "run", r, err);
    }
    char buf[32];
    if (file_read(pidfile, buf, sizeof(buf)) <= 0 || (s->init_pid = atoi(buf)) <= 1)
        return stk_error_make(err, EIO, "%s run wrote no pid file", rt_table[s->rt].name);
    return s->sock_dir[0] ? take_init_socket(s, err) : 0;
}

/* Waits, bounded, until stockade has no children left (gVisor's gofer
 * exits right after its sandbox). True when none are left. */
static bool reap_all(int64_t max_ms)
{
    for (int64_t waited = 0; waited <= max_ms; waited++) {
        pid_t pid;
        while ((pid = waitpid(-1, NULL, WNOHANG)) > 0)
            ;
        if (pid < 0 && errno == ECHILD)
            return true;
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return false;
}

static void undo_run(void *ctx)
{
    struct sandbox *s = ctx;
    /* a run that failed after the workload started: it goes first */
    if (s->init_pid > 1 && !s->reaped)
        (void)kill(s->init_pid, SIGKILL);
    /* Once every process of the container is gone (runc, crun: its PID
     * namespace died with init; runsc: the sandbox and gofer, stockade's
     * children, have exited) and stockade removes the cgroup itself, what
     * is left of the runtime's state is in our --root. Removing it directly
     * saves a runtime exec (for runsc, most of its teardown time). */
    char root[600];
    if (s->reaped && (!rt_table[s->rt].needs_delete || reap_all(500)) &&
        stk_path_fmt(root, sizeof(root), "%s/%s", s->p->run_dir, rt_table[s->rt].name) >= 0) {
        (void)runtime_entries(root, s->id, true);
        return;
    }
    const char *args[] = {"delete", "--force", s->id, NULL};
    /* the workload's status was collected before teardown */
    (void)rt_exec_reaping(s->p, s->rt, s->rt_path, args, RT_IO_LOG(s->log_fd), &s->child_mask);
}

/* The order matters: the directory first (gc finds a run by it) and last
 * out; the cgroup before the runtime is told to use it. */
static const struct stk_step setup_steps[] = {
    {"state directory", step_dir, undo_dir},
    {"host id range", step_ids, undo_ids},
    {"bundle", step_bundle, undo_bundle}, /* inside the state directory */
    {"storage", step_storage, undo_storage},
    {"network", step_network, undo_network},
    {"egress proxy", step_proxy, undo_proxy},
    {"cgroup", step_cgroup, undo_cgroup},
    {"supervisor socket", step_socket, undo_socket},
    {"runtime run", step_run, undo_run},
};

/* ---- supervise ----------------------------------------------------------------- */

static void sandbox_kill(struct sandbox *s, enum stk_kill_reason why, struct stk_run_result *res)
{
    if (res->kill_reason != STK_KILL_NONE)
        return;
    res->kill_reason = why;
    /* init of a PID namespace, or gVisor's whole sandbox: everything in
     * the sandbox dies with it */
    if (s->init_pid > 1)
        (void)kill(s->init_pid, SIGKILL);
}

static void supervise(struct sandbox *s, int sfd, struct stk_run_result *res)
{
    const struct stk_resolved_limits *l = &s->req->b->limits;
    int64_t deadline =
        l->wall_clock_ms > 0 ? stk_clock_ms(CLOCK_MONOTONIC) + l->wall_clock_ms : INT64_MAX;
    pid_t watch = s->init_pid;
    struct cg_sample cs = {.mem_peak = -1, .pids_peak = -1};
    int status = 0;

    for (;;) {
        pid_t pid;
        bool done = false;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
            if (pid == watch) {
                done = s->reaped = true;
                break;
            }
        if (done || (pid < 0 && errno == ECHILD))
            break;

        s->cg->sample(s->id, &cs);
        if (cs.oom_kills > 0 && observable(s, STK_KILL_MEMORY))
            sandbox_kill(s, STK_KILL_MEMORY, res);
        if (cs.pids_max > 0 && observable(s, STK_KILL_PIDS))
            sandbox_kill(s, STK_KILL_PIDS, res);
        if (l->cpu_time_ms > 0 && cs.cpu_usec / 1000 >= l->cpu_time_ms)
            sandbox_kill(s, STK_KILL_CPU, res);
        int64_t now = stk_clock_ms(CLOCK_MONOTONIC);
        if (now >= deadline)
            sandbox_kill(s, STK_KILL_WALL_CLOCK, res);

        int64_t wait_ms = SAMPLE_MS;
        if (deadline != INT64_MAX && deadline - now < wait_ms)
            wait_ms = deadline - now > 0 ? deadline - now : 0;
        struct pollfd pfd[5] = {
            {.fd = sfd, .events = POLLIN},
            {.fd = s->out_pipe[0], .events = POLLIN},
            {.fd = s->err_pipe[0], .events = POLLIN},
            {.fd = s->elog ? stk_egress_log_fd(s->elog) : -1, .events = POLLIN},
            {.fd = local_proxy_event_fd(s->proxy), .events = POLLIN},
        };
        if (poll(pfd, 5, (int)wait_ms) > 0) {
            if (pfd[3].revents)
                events_poll(s, false);
            if (pfd[4].revents)
                local_proxy_events_read(s->proxy, proxy_event, s);
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
                if (si.ssi_signo == SIGINT || si.ssi_signo == SIGTERM || si.ssi_signo == SIGHUP)
                    sandbox_kill(s, STK_KILL_INTERRUPTED, res);
            if (pfd[1].revents)
                relay(&s->out_pipe[0], STDOUT_FILENO);
            if (pfd[2].revents)
                relay(&s->err_pipe[0], STDERR_FILENO);
        }
    }
    /* what the workload wrote before it ended (gVisor's gofer may hold the
     * write ends open past that, so no waiting for end of file) */
    relay(&s->out_pipe[0], STDOUT_FILENO);
    relay(&s->err_pipe[0], STDERR_FILENO);
    clock_gettime(CLOCK_REALTIME, &res->finished);
    events_poll(s, true);

    s->cg->sample(s->id, &cs);
    if (!s->reaped) {
        /* no children left and the workload was not among them: its
         * status is lost, and saying "succeeded" would be a guess */
        res->exit_code = -1;
        fmt_into(res->note, sizeof(res->note), "the workload's exit status was lost");
    } else if (WIFEXITED(status)) {
        res->exit_code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        res->exit_code = 128 + WTERMSIG(status);
    }
    /* The kernel killed something for memory and the workload ended. */
    if (res->kill_reason == STK_KILL_NONE && cs.oom_kills > 0 && observable(s, STK_KILL_MEMORY))
        res->kill_reason = STK_KILL_MEMORY;
    res->cpu_seconds = (double)cs.cpu_usec / 1e6;
    res->peak_memory = cs.mem_peak;
    /* under gVisor the host pids counters count gVisor's threads, not the
     * workload's processes: unknown rather than wrong */
    res->peak_pids = rt_table[s->rt].guest_tasks ? -1 : cs.pids_peak;
    s->init_pid = 0;
}

/* Reaps what the runtime left as our children (gVisor's sandbox and gofer
 * exit once the container is deleted). Bounded. */
static void reap_leftovers(void)
{
    for (int i = 0; i < 400; i++) {
        pid_t pid = waitpid(-1, NULL, WNOHANG);
        if (pid < 0 && errno == ECHILD)
            return;
        if (pid == 0) {
            struct timespec ts = {0, 5 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
}

int stk_local_run(const struct stk_local_paths *p, const struct stk_run_request *req,
                  struct stk_run_result *ret, struct stk_error **err)
{
    struct sandbox s = sandbox_new(p, req, false);
    struct stk_run_result res = {.runtime = req->runtime, .peak_memory = -1, .peak_pids = -1};
    _cleanup_close_ int sfd = -1;
    void (*old_pipe)(int) = SIG_ERR;
    int was_subreaper = 0;
    sigset_t mask;
    int r = sandbox_prepare(&s, err);
    if (r < 0)
        goto out_free;
    snprintf(res.id, sizeof(res.id), "%s", s.id);
    res.unobservable = rt_table[s.rt].unobservable;

    /* Signals: SIGCHLD wakes the supervisor; SIGINT, SIGTERM and SIGHUP (the
     * terminal went away) tear down. */
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGHUP);
    sigprocmask(SIG_BLOCK, &mask, &s.child_mask);
    sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    /* A closed stdout must not kill stockade mid-run: that would leave the
     * sandbox behind. Writes fail with EPIPE instead. */
    old_pipe = signal(SIGPIPE, SIG_IGN);
    (void)prctl(PR_GET_CHILD_SUBREAPER, &was_subreaper);
    if (sfd < 0 || prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) {
        r = stk_error_errno(err, errno, "setting up the supervisor");
        goto out_mask;
    }

    clock_gettime(CLOCK_REALTIME, &res.started);
    /* on failure the runner has undone what ran */
    r = stk_steps_run(setup_steps, STK_ARRAY_SIZE(setup_steps), &s, err);
    if (r >= 0) {
        supervise(&s, sfd, &res);
        if (res.kill_reason != STK_KILL_NONE)
            res.phase = STK_PHASE_KILLED;
        else
            res.phase = res.exit_code == 0 ? STK_PHASE_SUCCEEDED : STK_PHASE_FAILED;
        if (res.phase != STK_PHASE_SUCCEEDED && req->quiet && !res.note[0])
            sandbox_log_tail(&s, res.note, sizeof(res.note));
        stk_steps_undo(setup_steps, STK_ARRAY_SIZE(setup_steps), &s);
    }
    reap_leftovers();
    (void)prctl(PR_SET_CHILD_SUBREAPER, was_subreaper);
out_mask:
    if (old_pipe != SIG_ERR)
        signal(SIGPIPE, old_pipe);
    sigprocmask(SIG_SETMASK, &s.child_mask, NULL);
out_free:
    for (int i = 0; i < 2; i++) {
        if (s.out_pipe[i] >= 0)
            close(s.out_pipe[i]);
        if (s.err_pipe[i] >= 0)
            close(s.err_pipe[i]);
    }
    free(s.config);
    free(s.ld_cache);
    stk_oci_etc_free(s.etc_files);
    local_image_free(&s.image);
    if (s.hold_fd >= 0)
        close(s.hold_fd);
    if (r >= 0) {
        if (!res.finished.tv_sec)
            clock_gettime(CLOCK_REALTIME, &res.finished);
        res.network = req->net != NULL;
        res.n_events = s.n_events;
        res.events = s.n_events ? stk_buf_steal(&s.events) : NULL;
        *ret = res;
    }
    stk_buf_free(&s.events);
    return r < 0 ? r : 0;
}

void stk_time_format(const struct timespec *ts, char buf[40])
{
    struct tm tm;
    gmtime_r(&ts->tv_sec, &tm);
    size_t n = strftime(buf, 40, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, 40 - n, ".%03ldZ", ts->tv_nsec / 1000000);
}

/* ---- long-lived sandboxes ---------------------------------------------------------- */

int stk_local_provision(const struct stk_local_paths *p, const struct stk_run_request *req,
                        struct stk_local_instance *ret, struct stk_error **err)
{
    if (!req->id || req->lock_fd < 0)
        return stk_error_make(err, EINVAL, "provision: no id or lock");
    struct sandbox s = sandbox_new(p, req, true);
    sigprocmask(SIG_SETMASK, NULL, &s.child_mask);
    int r = sandbox_prepare(&s, err);
    /* on failure the runner has undone what ran */
    if (r >= 0)
        r = stk_steps_run(setup_steps, STK_ARRAY_SIZE(setup_steps), &s, err);
    if (r >= 0) {
        *ret = (struct stk_local_instance){.init_pid = s.init_pid, .proxy = s.proxy};
        /* s.sock was built whole, in a buffer of the same size */
        (void)stk_path_fmt(ret->socket, sizeof(ret->socket), "%s", s.sock);
        /* what stays up is the caller's now; these handles are not */
        stk_egress_log_close(s.elog);
        stk_net_free(s.net);
        if (s.listen_fd >= 0)
            close(s.listen_fd);
        if (s.log_fd >= 0)
            close(s.log_fd);
    }
    free(s.config);
    free(s.ld_cache);
    stk_oci_etc_free(s.etc_files);
    local_image_free(&s.image);
    if (s.hold_fd >= 0)
        close(s.hold_fd);
    stk_buf_free(&s.events);
    return r < 0 ? r : 0;
}
