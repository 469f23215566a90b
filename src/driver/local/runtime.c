/* SPDX-License-Identifier: Apache-2.0 */
/*
 * OCI runtimes: the table, how each is called, and which ones work here.
 *
 * "Works" is decided by a smoke run of the real path (render, network,
 * cgroup, run, wait, delete) of what users run first (smoke() says what),
 * cached per binary path and mtime in <state>/runtimes.json.
 */
#include "internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

const char *const stk_oci_runtime_names[_STK_OCI_N] = {"runsc", "crun", "runc"};

static const char *const runsc_args[] = {
    /* gVisor ignores the OCI seccomp profile unless told; with it, the
     * profile applies to the workload inside the sandbox too. */
    "--oci-seccomp",
    NULL,
};
static const char *const no_args[] = {NULL};
static const char *const none[] = {NULL};

const struct rt_desc rt_table[_STK_OCI_N] = {
    /* --host-uds=create: the sandbox may bind Unix sockets on host mounts
     * (never connect to the host's own: that is "open") */
    [STK_OCI_RUNSC] = {"runsc", true, true, runsc_args, none, "--network=sandbox", "--network=none",
                       true, true, false, "--host-uds=create", false, true},
    [STK_OCI_CRUN] = {"crun", false, false, no_args, none, NULL, NULL, false, false, true, NULL,
                      false, false},
    /* runc 1.1 joins the user namespace before the prepared network
     * namespace: that one is therefore owned by the sandbox's user
     * namespace (net.c, netns_unshare_in), as it is under crun */
    [STK_OCI_RUNC] = {"runc", false, false, no_args, none, NULL, NULL, false, false, true, NULL,
                      true, false},
};

static const char *const runsc_caveats[] = {
    "the pids limit holds on the host tasks of gVisor's sandbox (about two per guest process, "
    "plus gVisor's own), so it is approximate: a workload reaches about the requested count, "
    "then the sandbox ends with pids_exceeded; peak pids are not reported",
    "egress is enforced by nftables on the host side of the sandbox's veth, where gVisor's "
    "packets pass (gVisor's own network stack runs inside the sandbox); an internalEgress rule "
    "narrowed by a podSelector allows nothing locally (pods carry no labels here)",
    "allowed traffic leaves this host only when the operator sets data.local.nat or "
    "data.local.routed; otherwise it stops at the bridge",
    "the workload's user and group ids are those of gVisor's own kernel: per-user limits, file "
    "ownership and signals stay inside it and never meet the host's; gVisor's own processes "
    "run as the host's nobody in a user namespace gVisor makes, not in a range of their own",
    "a long-lived sandbox's workload can end it by SIGKILLing its PID 1, stockade-init (gVisor "
    "delivers it; Linux ignores it): it is then recorded as failed",
    NULL,
};
/* explain already says that runc and crun share the host kernel */
static const char *const host_kernel_caveats[] = {
    "egress is enforced by nftables on stockade's bridge; an internalEgress rule narrowed by a "
    "podSelector allows nothing locally (pods carry no labels here)",
    "allowed traffic leaves this host only when the operator sets data.local.nat or "
    "data.local.routed; otherwise it stops at the bridge",
    NULL,
};

const char *const *stk_runtime_caveats(enum stk_oci_runtime rt)
{
    return rt == STK_OCI_RUNSC ? runsc_caveats : host_kernel_caveats;
}

bool rt_needs_private_mntns(enum stk_oci_runtime rt)
{
    /* crun 1.8 refuses hybrid hosts; without the cgroup2 mount it sees a
     * plain v1 host, which it supports. */
    return rt == STK_OCI_CRUN && cg_is_hybrid();
}

pid_t rt_spawn(const struct stk_local_paths *p, enum stk_oci_runtime rt, const char *path,
               const char *const *args, struct rt_stdio io, const sigset_t *child_mask)
{
    const char *argv[64];
    size_t n = 0;
    char root[512];
    snprintf(root, sizeof(root), "%s/%s", p->run_dir, rt_table[rt].name);
    bool limits = rt_table[rt].rlimits_inherited && args[0] && !strcmp(args[0], "run");
    argv[n++] = path;
    argv[n++] = "--root";
    argv[n++] = root;
    for (const char *const *a = rt_table[rt].global_args; *a; a++)
        argv[n++] = *a;
    for (; *args && n < STK_ARRAY_SIZE(argv) - 1; args++)
        argv[n++] = *args;
    argv[n] = NULL;
    bool private_ns = rt_needs_private_mntns(rt);
    bool hide_net = rt_table[rt].hide_proc_sys_net;
    bool view = rt_table[rt].userns;
    if (view && mkdir(RT_VIEW, 0755) < 0 && errno != EEXIST)
        return -errno;

    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid > 0)
        return pid;

    /* child: only async-signal-safe calls from here, then exec or _exit */
    if (child_mask)
        sigprocmask(SIG_SETMASK, child_mask, NULL);
    /* stockade ignores SIGPIPE while it relays output; the sandbox must not
     * inherit that */
    signal(SIGPIPE, SIG_DFL);
    /* a refill's low priority stops at gVisor: its own kernel makes
     * threads at will, some from ones a claim's renice has not reached
     * yet, so a claimed sandbox kept low-priority threads */
    if (rt == STK_OCI_RUNSC)
        (void)setpriority(PRIO_PROCESS, 0, 0);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0)
        _exit(126);
    for (int i = 0; i < 3; i++) {
        if (io.fd[i] == RT_INHERIT)
            continue;
        if (dup2(io.fd[i] >= 0 ? io.fd[i] : null, i) < 0)
            _exit(126);
    }
    /* dup2 clears FD_CLOEXEC on the copy: the runtime hands fd 3 on */
    if (io.pass_fd >= 0 && dup2(io.pass_fd, 3) < 0)
        _exit(126);
    if (private_ns || hide_net || view) {
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
            _exit(125);
        if (private_ns && umount2(CG_ROOT "/unified", MNT_DETACH) < 0)
            _exit(125);
        /* recursive: the sandboxes' volumes are mounted inside */
        if (view && mount(p->state_dir, RT_VIEW, NULL, MS_BIND | MS_REC, NULL) < 0)
            _exit(125);
        /* gVisor refuses to run a network stack when it believes it is in
         * the host's network namespace, and believes so when
         * /proc/sys/net/core/rmem_default exists, which 6.x kernels show in
         * every namespace. Only this runtime process and the sandbox and
         * gofer it starts see the empty directory. */
        if (hide_net && mount("tmpfs", "/proc/sys/net", "tmpfs",
                              MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=555") < 0)
            _exit(125);
    }
    for (size_t i = 0; limits && i < STK_OCI_RLIMITS; i++) {
        const struct stk_oci_rlimit *l = &stk_oci_rlimits[i];
        if (setrlimit(l->resource, &(struct rlimit){l->soft, l->hard}) < 0)
            _exit(125);
    }
    union {
        const char **c;
        char **m;
    } av = {.c = argv};
    /* not stockade's environment: it may hold a binding's credential (an
     * `env` source), and gVisor's sandbox and gofer keep what they were
     * started with for the sandbox's lifetime */
    static char clean_path[] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    char *clean_env[] = {clean_path, NULL};
    execve(path, av.m, clean_env);
    _exit(127);
}

int rt_exec(const struct stk_local_paths *p, enum stk_oci_runtime rt, const char *path,
            const char *const *args, struct rt_stdio io, const sigset_t *child_mask)
{
    pid_t pid = rt_spawn(p, rt, path, args, io, child_mask);
    if (pid < 0)
        return pid;
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -errno;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

int rt_exec_reaping(const struct stk_local_paths *p, enum stk_oci_runtime rt, const char *path,
                    const char *const *args, struct rt_stdio io, const sigset_t *child_mask)
{
    pid_t pid = rt_spawn(p, rt, path, args, io, child_mask);
    if (pid < 0)
        return pid;
    int status;
    for (pid_t w; (w = waitpid(-1, &status, 0)) != pid;)
        if (w < 0 && errno != EINTR)
            return -errno;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

/* ---- detection ---------------------------------------------------------------- */

static const char *const search_dirs[] = {"/usr/local/sbin", "/usr/local/bin", "/usr/sbin",
                                          "/usr/bin",        "/sbin",          "/bin"};

bool rt_find(const char *name, char *ret, size_t n, struct stat *st)
{
    for (size_t i = 0; i < STK_ARRAY_SIZE(search_dirs); i++) {
        if (stk_path_fmt(ret, n, "%s/%s", search_dirs[i], name) < 0)
            return false;
        if (stat(ret, st) == 0 && S_ISREG(st->st_mode) && (st->st_mode & 0111))
            return true;
    }
    return false;
}

static void version_of(const struct stk_local_paths *p, enum stk_oci_runtime rt, const char *path,
                       char *ret, size_t n)
{
    char tmpl[] = "/tmp/stockade-version-XXXXXX";
    _cleanup_close_ int fd = mkostemp(tmpl, O_CLOEXEC);
    ret[0] = '\0';
    if (fd < 0)
        return;
    (void)unlink(tmpl);
    (void)p;
    /* --version is a global flag; no --root needed, but harmless. */
    static const char *const args[] = {"--version", NULL};
    if (rt_exec(p, rt, path, args, RT_IO_LOG(fd), NULL) != 0)
        return;
    char buf[512];
    ssize_t r = pread(fd, buf, sizeof(buf) - 1, 0);
    if (r <= 0)
        return;
    buf[r] = '\0';
    char *nl = strchr(buf, '\n');
    if (nl)
        *nl = '\0';
    fmt_into(ret, n, "%s", buf);
}

/* What a user runs first, in a default sandbox with a network: a listing
 * and a stat of the root (Debian 12's runsc answers coreutils' statx with
 * EINVAL), then a connection to the bridge's own address, which the host
 * rule drops and logs: the denial event proves that the sandbox's packets
 * cross its veth to the bridge, where egress is enforced. */
#define SMOKE_CHECKS                                                                               \
    "ls -la / >/dev/null || { echo 'ls -la / failed' >&2; exit 3; }; "                             \
    "stat / >/dev/null || { echo 'stat / failed' >&2; exit 4; }; "                                 \
    "timeout 1 bash -c ': </dev/tcp/%s/9' 2>/dev/null; exit 0"

static void smoke(const struct stk_local_paths *p, enum stk_oci_runtime rt,
                  struct stk_runtime_status *st)
{
    struct stk_net_config net;
    stk_net_config_default(&net);
    net.run_dir = p->run_dir;
    char bridge[INET_ADDRSTRLEN] = "";
    uint8_t a[4];
    memcpy(a, net.pool4.addr, 4);
    a[3] += 1; /* the bridge holds the pool's first address */
    inet_ntop(AF_INET, a, bridge, sizeof(bridge));
    char script[512];
    fmt_into(script, sizeof(script), SMOKE_CHECKS, bridge);

    struct stk_sandbox sb = {0};
    struct stk_str cmd[3] = {
        {.meta = {.set = true}, .v = "/bin/sh"},
        {.meta = {.set = true}, .v = "-c"},
        {.meta = {.set = true}, .v = script},
    };
    char name[64];
    snprintf(name, sizeof(name), "smoke-%s", rt_table[rt].name);
    sb.metadata.name = (struct stk_str){.meta = {.set = true}, .v = name};
    sb.spec.command.items = cmd;
    sb.spec.command.n = 3;
    sb.spec.command.meta.set = true;
    _cleanup_diags_ struct stk_diags diags = {0};
    _cleanup_boundary_ struct stk_boundary *b = NULL;
    if (stk_resolve(&sb, "<smoke>", NULL, NULL, &diags, &b) < 0) {
        fmt_into(st->note, sizeof(st->note), "internal error: the smoke sandbox does not resolve");
        return;
    }
    struct stk_run_request req = {.b = b, .runtime = rt, .quiet = true, .net = &net};
    struct stk_run_result res;
    _cleanup_error_ struct stk_error *err = NULL;
    if (stk_local_run(p, &req, &res, &err) < 0) {
        fmt_into(st->note, sizeof(st->note), "smoke run failed: %s", err->msg);
        return;
    }
    bool crossed = res.events && strstr(res.events, "\"policy\":\"host\"");
    free(res.events);
    if (res.phase != STK_PHASE_SUCCEEDED) {
        fmt_into(st->note, sizeof(st->note), "smoke run (ls -la /, stat /) ended %s (exit %d)%s%s",
                 stk_phase_names[res.phase], res.exit_code, res.note[0] ? ": " : "", res.note);
        return;
    }
    if (!crossed) {
        fmt_into(st->note, sizeof(st->note),
                 "smoke run: a connection to the bridge (%s) never reached it (no denial event): "
                 "the sandbox's network does not pass the veth",
                 bridge);
        return;
    }
    st->works = true;
    if (rt_needs_private_mntns(rt))
        fmt_into(st->note, sizeof(st->note),
                 "run in a private mount namespace without the cgroup2 'unified' mount (this "
                 "host's cgroups are hybrid, which crun refuses)%s",
                 rt_table[rt].userns ? "; every sandbox runs as host ids of its own (a user "
                                       "namespace owned by its range: per-user limits, file "
                                       "ownership and signals never cross sandboxes)"
                                     : "");
    else if (rt_table[rt].userns)
        fmt_into(st->note, sizeof(st->note),
                 "every sandbox runs as host ids of its own (a user namespace owned by its "
                 "range: per-user limits, file ownership and signals never cross sandboxes)");
}

/* Smoke runs of three runtimes take a few seconds, up to a minute on a
 * loaded host. */
#define DETECT_WAIT_MS 180000

static json_t *cache_load(const char *path)
{
    return json_load_file(path, 0, NULL);
}

int stk_runtimes_detect(const struct stk_local_paths *p, struct stk_runtime_status ret[_STK_OCI_N],
                        struct stk_error **err)
{
    char cache_path[512];
    if (stk_path_make(cache_path, sizeof(cache_path), err, "%s/runtimes.json", p->state_dir) < 0)
        return -ENAMETOOLONG;
    int r = geteuid() == 0 ? mkdir_p(p->state_dir, 0700) : 0;
    if (r < 0)
        return stk_error_errno(err, -r, "creating state dir %s", p->state_dir);
    /* One detection at a time per state directory: concurrent creates on a
     * fresh one would each run every smoke run (three sandboxes apiece, all
     * queueing on the host's network lock); the others wait and read the
     * cache the first one wrote. */
    _cleanup_close_ int lock = -1;
    if (geteuid() == 0) {
        char lock_path[520];
        if (stk_path_make(lock_path, sizeof(lock_path), err, "%s/runtimes.lock", p->state_dir) < 0)
            return -ENAMETOOLONG;
        lock = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (lock < 0)
            return stk_error_errno(err, errno, "opening %s", lock_path);
        int holder = 0;
        if ((r = stk_flock_wait(lock, LOCK_EX, DETECT_WAIT_MS, &holder)) == -ETIMEDOUT)
            return stk_error_make(err, ETIMEDOUT,
                                  "waited %d s for %s: process %d is still detecting the "
                                  "runtimes (smoke runs)",
                                  DETECT_WAIT_MS / 1000, lock_path, holder);
        if (r < 0)
            return stk_error_errno(err, -r, "locking %s", lock_path);
    }

    json_t *cache = cache_load(cache_path);
    if (!json_is_object(cache)) {
        json_decref(cache);
        cache = json_object();
    }
    bool hybrid = cg_is_hybrid();
    bool dirty = false;
    for (int i = 0; i < _STK_OCI_N; i++) {
        struct stk_runtime_status *st = &ret[i];
        memset(st, 0, sizeof(*st));
        struct stat sb;
        if (!rt_find(rt_table[i].name, st->path, sizeof(st->path), &sb)) {
            st->path[0] = '\0';
            fmt_into(st->note, sizeof(st->note), "not installed");
            continue;
        }
        st->installed = true;
        if (geteuid() != 0) {
            fmt_into(st->note, sizeof(st->note),
                     "the local backend needs root (cgroups, namespaces, runtime state)");
            continue;
        }
        json_t *e = json_object_get(cache, rt_table[i].name);
        if (json_is_object(e) &&
            stk_streq(json_string_value(json_object_get(e, "path")), st->path) &&
            json_integer_value(json_object_get(e, "mtime")) == (json_int_t)sb.st_mtime &&
            json_is_true(json_object_get(e, "hybrid")) == hybrid &&
            /* a result from before this runtime ran in a user namespace
             * (runc did not) says nothing of how it runs now */
            json_is_true(json_object_get(e, "userns")) == rt_table[i].userns) {
            st->works = json_is_true(json_object_get(e, "works"));
            fmt_into(st->note, sizeof(st->note), "%s",
                     json_string_value(json_object_get(e, "note")) ?: "");
            snprintf(st->version, sizeof(st->version), "%s",
                     json_string_value(json_object_get(e, "version")) ?: "");
            continue;
        }
        version_of(p, (enum stk_oci_runtime)i, st->path, st->version, sizeof(st->version));
        smoke(p, (enum stk_oci_runtime)i, st);
        json_object_set_new(cache, rt_table[i].name,
                            json_pack("{s:s,s:I,s:b,s:b,s:b,s:s,s:s}", "path", st->path, "mtime",
                                      (json_int_t)sb.st_mtime, "hybrid", hybrid, "userns",
                                      rt_table[i].userns, "works", st->works, "note", st->note,
                                      "version", st->version));
        dirty = true;
    }
    if (dirty && geteuid() == 0) {
        char tmp[600];
        if (stk_path_fmt(tmp, sizeof(tmp), "%s.tmp", cache_path) >= 0 &&
            json_dump_file(cache, tmp, JSON_INDENT(2)) == 0)
            (void)rename(tmp, cache_path);
    }
    json_decref(cache);
    return 0;
}

int stk_runtime_choose(enum stk_runtime want, const struct stk_runtime_status st[_STK_OCI_N],
                       enum stk_oci_runtime *ret, const char **ret_note)
{
    static const enum stk_oci_runtime wanted[_STK_RUNTIME_N] = {
        [STK_RUNTIME_DEFAULT] = _STK_OCI_N,
        [STK_RUNTIME_GVISOR] = STK_OCI_RUNSC,
        [STK_RUNTIME_CRUN] = STK_OCI_CRUN,
        [STK_RUNTIME_RUNC] = STK_OCI_RUNC,
    };
    static char note[1024];
    enum stk_oci_runtime w = wanted[want];
    if (w != _STK_OCI_N) {
        if (!st[w].works) {
            fmt_into(note, sizeof(note), "runtime %s needs %s, which does not work here: %s",
                     stk_runtime_names[want], stk_oci_runtime_names[w], st[w].note);
            *ret_note = note;
            return -ENOENT;
        }
        *ret = w;
        *ret_note = st[w].note[0] ? st[w].note : NULL;
        return 0;
    }
    /* default: the strongest that works, saying what was passed over */
    size_t len = 0;
    note[0] = '\0';
    for (int i = 0; i < _STK_OCI_N; i++) {
        if (st[i].works) {
            if (st[i].note[0])
                fmt_into(note + len, sizeof(note) - len, "%s%s", len ? "; " : "", st[i].note);
            *ret = (enum stk_oci_runtime)i;
            *ret_note = note[0] ? note : NULL;
            return 0;
        }
        int w2 = fmt_into(note + len, sizeof(note) - len, "%s%s skipped (%s)", len ? "; " : "",
                          stk_oci_runtime_names[i], st[i].note);
        if (w2 > 0 && (size_t)w2 < sizeof(note) - len)
            len += (size_t)w2;
    }
    *ret_note = note;
    return -ENOENT;
}
