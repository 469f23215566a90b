/* SPDX-License-Identifier: Apache-2.0 */
/*
 * boundary -> OCI runtime bundle config.json (runtime-spec 1.0.x).
 *
 * Pure: reads the boundary and the driver's host paths, writes text. Every
 * list is bounded (STK_OCI_MAX_*), every value comes from the boundary or a
 * constant below, so the output is a function of the inputs alone.
 */
#include "render.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <string.h>
#include <sys/resource.h>

#define KiB INT64_C(1024)

static const char default_path[] =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/*
 * The default seccomp profile: allow, except these, which fail with EPERM.
 * Each is either a way out of the sandbox's namespaces and mounts, a kernel
 * attack surface a workload has no use for, or needs a capability the
 * sandbox does not hold (so refusing it early costs nothing).
 */
const char *const stk_oci_denied_syscalls[] = {
    /* mounts and namespaces */
    "mount", "umount2", "pivot_root", "unshare", "setns", "open_tree", "move_mount", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr",
    /* kernel keyring, bpf, perf, userfaultfd */
    "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
    /* modules, kexec, reboot, swap, accounting */
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot",
    "swapon", "swapoff", "acct", "quotactl",
    /* file handles bypass path lookup (the "shocker" escape) */
    "open_by_handle_at", "name_to_handle_at",
    /* raw hardware, clock, syslog */
    "iopl", "ioperm", "settimeofday", "clock_settime", "syslog", "lookup_dcookie", "uselib",
    "vhangup",
    /* io_uring bypasses the seccomp filter for the operations it queues */
    "io_uring_setup", "io_uring_enter", "io_uring_register", NULL};

/* Refused unless SYS_PTRACE is granted: they read or write another
 * process's memory, or take its file descriptors (pidfd_getfd) or steer its
 * memory (process_madvise). Docker's default profile gates the same six on
 * CAP_SYS_PTRACE. */
static const char *const ptrace_syscalls[] = {"ptrace", "process_vm_readv", "process_vm_writev",
                                              "kcmp",   "pidfd_getfd",      "process_madvise",
                                              NULL};

/* Socket families socket(2) refuses with EAFNOSUPPORT (what a kernel
 * without the family answers, so programs fall back cleanly). Docker's
 * default profile refuses AF_VSOCK alone; stockade refuses AF_ALG too.
 * Every other family stays, as under Docker: the ones that need a
 * capability (AF_PACKET, raw sockets) fail without it anyway. */
const struct stk_oci_family stk_oci_denied_families[] = {
    /* not namespaced: vsock ports are the VM's, shared with the host and
     * every other sandbox, and outside nftables */
    {"AF_VSOCK", 40},
    /* the kernel crypto API as a socket: a large attack surface with a
     * history of kernel bugs, which gVisor does not offer at all; user-space
     * crypto (OpenSSL, libsodium) needs none of it */
    {"AF_ALG", 38},
    {NULL, 0},
};

/* clone(2) flags that create namespaces: refused one by one, since runtime-spec
 * arguments within one rule are ANDed. */
static const uint64_t clone_ns_flags[] = {
    0x00020000, /* CLONE_NEWNS */
    0x02000000, /* CLONE_NEWCGROUP */
    0x04000000, /* CLONE_NEWUTS */
    0x08000000, /* CLONE_NEWIPC */
    0x10000000, /* CLONE_NEWUSER */
    0x20000000, /* CLONE_NEWPID */
    0x40000000, /* CLONE_NEWNET */
};

/* Docker's masked and read-only /proc and /sys paths. */
static const char *const masked_paths[] = {
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
};
static const char *const readonly_paths[] = {
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
};

static const char *const namespaces[] = {"pid", "ipc", "uts", "mount", "cgroup", "network"};

const struct stk_oci_rlimit stk_oci_rlimits[STK_OCI_RLIMITS] = {
    {"RLIMIT_NOFILE", RLIMIT_NOFILE, 1024, 1024},
    {"RLIMIT_CORE", RLIMIT_CORE, 0, 0},
};

static json_t *str_array(const char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

static void mount_add(json_t *mounts, const char *dst, const char *type, const char *src,
                      const char *const *opts, size_t n_opts)
{
    json_t *m = json_object();
    json_object_set_new(m, "destination", json_string(dst));
    json_object_set_new(m, "type", json_string(type));
    json_object_set_new(m, "source", json_string(src));
    json_object_set_new(m, "options", str_array(opts, n_opts));
    json_array_append_new(mounts, m);
}

static void tmpfs_add(json_t *mounts, const char *dst, int64_t size, const char *mode)
{
    char sz[48], md[24];
    snprintf(sz, sizeof(sz), "size=%lldk", (long long)((size + KiB - 1) / KiB));
    snprintf(md, sizeof(md), "mode=%s", mode);
    const char *opts[] = {"nosuid", "nodev", "noexec", md, sz};
    /* /tmp keeps exec: scripts and build tools run from it. */
    if (!strcmp(dst, "/tmp")) {
        const char *topts[] = {"nosuid", "nodev", md, sz};
        mount_add(mounts, dst, "tmpfs", "tmpfs", topts, STK_ARRAY_SIZE(topts));
        return;
    }
    mount_add(mounts, dst, "tmpfs", "tmpfs", opts, STK_ARRAY_SIZE(opts));
}

static void bind_add(json_t *mounts, const char *dst, const char *src, bool ro)
{
    const char *opts[] = {"rbind", "nosuid", "nodev", ro ? "ro" : "rw"};
    mount_add(mounts, dst, "bind", src, opts, STK_ARRAY_SIZE(opts));
}

static json_t *render_mounts(const struct stk_boundary *b, const struct stk_oci_options *o)
{
    json_t *m = json_array();
    const char *proc[] = {"nosuid", "noexec", "nodev"};
    mount_add(m, "/proc", "proc", "proc", proc, STK_ARRAY_SIZE(proc));
    const char *dev[] = {"nosuid", "strictatime", "mode=755", "size=65536k"};
    mount_add(m, "/dev", "tmpfs", "tmpfs", dev, STK_ARRAY_SIZE(dev));
    const char *pts[] = {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"};
    mount_add(m, "/dev/pts", "devpts", "devpts", pts, STK_ARRAY_SIZE(pts));
    tmpfs_add(m, "/dev/shm", b->shm_size, "1777");
    const char *mq[] = {"nosuid", "noexec", "nodev"};
    mount_add(m, "/dev/mqueue", "mqueue", "mqueue", mq, STK_ARRAY_SIZE(mq));
    const char *sys[] = {"nosuid", "noexec", "nodev", "ro"};
    const char *cg[] = {"nosuid", "noexec", "nodev", "relatime", "ro"};
    const char *own[] = {"bind", "nosuid", "noexec", "nodev", "ro"};
    if (o->id_size) {
        const char *rsys[] = {"rbind", "nosuid", "noexec", "nodev", "ro"};
        mount_add(m, "/sys", "bind", "/sys", rsys, STK_ARRAY_SIZE(rsys));
        if (o->cgroup_skeleton)
            mount_add(m, "/sys/fs/cgroup", "bind", o->cgroup_skeleton, own, STK_ARRAY_SIZE(own));
        for (size_t i = 0; i < o->n_cgroup_binds; i++)
            mount_add(m, o->cgroup_binds[i].dst, "bind", o->cgroup_binds[i].src, own,
                      STK_ARRAY_SIZE(own));
    } else {
        mount_add(m, "/sys", "sysfs", "sysfs", sys, STK_ARRAY_SIZE(sys));
        mount_add(m, "/sys/fs/cgroup", "cgroup", "cgroup", cg, STK_ARRAY_SIZE(cg));
    }
    /* On a v1 or hybrid host the runtime puts the controllers under a
     * tmpfs at /sys/fs/cgroup, and crun leaves that tmpfs writable (mode
     * 1777) whatever the options say. Remounting the mount point read-only
     * (MS_REMOUNT|MS_BIND|MS_RDONLY acts on what is mounted there; the
     * source is not used) makes it read-only under every runtime. */
    const char *cg_ro[] = {"bind", "remount", "ro", "nosuid", "noexec", "nodev"};
    if (!o->no_cgroup_remount && !o->id_size)
        mount_add(m, "/sys/fs/cgroup", "bind", "/sys/fs/cgroup", cg_ro, STK_ARRAY_SIZE(cg_ro));
    tmpfs_add(m, "/tmp", b->tmp_size, "1777");
    bind_add(m, "/workspace", o->workspace, false);
    if (o->home)
        bind_add(m, STK_HOME_PATH, o->home, false);
    if (stk_streq(b->rootfs, "host") && !o->image) {
        for (size_t i = 0; i < o->n_host_dirs; i++)
            bind_add(m, o->host_dirs[i], o->host_dirs[i], true);
        bind_add(m, "/etc", o->etc_dir, true);
    }
    if (o->init_dir)
        bind_add(m, STK_OCI_INIT_DIR, o->init_dir, true);
    if (o->init_dir && o->init_sock_dir)
        bind_add(m, STK_OCI_INIT_SOCK_DIR, o->init_sock_dir, false);
    return m;
}

static json_t *render_caps(const struct stk_boundary *b)
{
    json_t *caps = json_array();
    for (size_t i = 0; i < b->n_caps; i++) {
        char name[64];
        snprintf(name, sizeof(name), "CAP_%s", b->caps[i]);
        json_array_append_new(caps, json_string(name));
    }
    json_t *set = json_object();
    static const char *const sets[] = {"bounding", "effective", "permitted", "inheritable",
                                       "ambient"};
    for (size_t i = 0; i < STK_ARRAY_SIZE(sets); i++)
        json_object_set_new(set, sets[i], json_deep_copy(caps));
    json_decref(caps);
    return set;
}

static bool has_cap(const struct stk_boundary *b, const char *cap)
{
    for (size_t i = 0; i < b->n_caps; i++)
        if (!strcmp(b->caps[i], cap))
            return true;
    return false;
}

static json_t *deny_rule(const char *const *names, int errno_ret)
{
    json_t *r = json_object();
    json_t *a = json_array();
    for (const char *const *n = names; *n; n++)
        json_array_append_new(a, json_string(*n));
    json_object_set_new(r, "names", a);
    json_object_set_new(r, "action", json_string("SCMP_ACT_ERRNO"));
    json_object_set_new(r, "errnoRet", json_integer(errno_ret));
    return r;
}

static json_t *render_seccomp(const struct stk_boundary *b, const struct stk_oci_options *o)
{
    json_t *s = json_object();
    json_object_set_new(s, "defaultAction", json_string("SCMP_ACT_ALLOW"));
    /* x86_64 only: 32-bit (int 0x80) and x32 entry points hit the
     * bad-architecture action and never reach a syscall. */
    json_object_set_new(s, "architectures", json_pack("[s]", "SCMP_ARCH_X86_64"));
    json_t *rules = json_array();
    json_array_append_new(rules, deny_rule(stk_oci_denied_syscalls, EPERM));
    if (!has_cap(b, "SYS_PTRACE"))
        json_array_append_new(rules, deny_rule(ptrace_syscalls, EPERM));
    for (size_t i = 0; i < STK_ARRAY_SIZE(clone_ns_flags); i++) {
        static const char *const clone[] = {"clone", NULL};
        json_t *r = deny_rule(clone, EPERM);
        json_object_set_new(r, "args",
                            json_pack("[{s:i,s:I,s:I,s:s}]", "index", 0, "value",
                                      (json_int_t)clone_ns_flags[i], "valueTwo",
                                      (json_int_t)clone_ns_flags[i], "op", "SCMP_CMP_MASKED_EQ"));
        json_array_append_new(rules, r);
    }
    /* socket(2)'s family is an int: compared on the low 32 bits (value is
     * the mask, valueTwo the datum), so garbage in the upper half cannot
     * slip a family past the rule */
    for (const struct stk_oci_family *f = stk_oci_denied_families; f->name; f++) {
        static const char *const sock[] = {"socket", NULL};
        json_t *r = deny_rule(sock, EAFNOSUPPORT);
        json_object_set_new(r, "args",
                            json_pack("[{s:i,s:I,s:I,s:s}]", "index", 0, "value",
                                      (json_int_t)0xffffffff, "valueTwo", (json_int_t)f->family,
                                      "op", "SCMP_CMP_MASKED_EQ"));
        json_array_append_new(rules, r);
    }
    /* clone3 passes its flags in memory seccomp cannot read: ENOSYS makes
     * the C library fall back to clone, whose flags are checked above. */
    static const char *const clone3[] = {"clone3", NULL};
    if (!o->no_clone3_rule)
        json_array_append_new(rules, deny_rule(clone3, ENOSYS));
    json_object_set_new(s, "syscalls", rules);
    return s;
}

static json_t *render_resources(const struct stk_boundary *b)
{
    const struct stk_resolved_limits *l = &b->limits;
    json_t *r = json_object();
    /* swap == memory: no swap beyond the memory limit. */
    json_object_set_new(r, "memory",
                        json_pack("{s:I,s:I,s:b}", "limit", (json_int_t)l->memory, "swap",
                                  (json_int_t)l->memory, "disableOOMKiller", 0));
    const int64_t period = 100000;
    json_object_set_new(r, "cpu",
                        json_pack("{s:I,s:I}", "quota", (json_int_t)(l->cpu_milli * period / 1000),
                                  "period", (json_int_t)period));
    json_object_set_new(r, "pids", json_pack("{s:I}", "limit", (json_int_t)l->pids));
    /* No device access beyond the runtime's default /dev nodes. */
    json_object_set_new(r, "devices", json_pack("[{s:b,s:s}]", "allow", 0, "access", "rwm"));
    return r;
}

static int render_env(const struct stk_boundary *b, const struct stk_oci_options *o, json_t **ret,
                      struct stk_error **err)
{
    /* the egress proxy listens on the sandbox's own loopback, or under
     * gVisor on the host side at o->proxy_url (src/proxy) */
    static const char *const proxy_vars[] = {"HTTP_PROXY", "HTTPS_PROXY", "http_proxy",
                                             "https_proxy"};
    static const char *const no_proxy[] = {"NO_PROXY=localhost,127.0.0.1,::1",
                                           "no_proxy=localhost,127.0.0.1,::1"};
    const char *url = o->proxy_url ? o->proxy_url : "http://127.0.0.1:" STK_STR(STK_PROXY_PORT);
    bool proxy = o->netns_path && (b->n_allow_hosts || b->n_bindings);
    size_t n_img = o->image ? o->image->n_env : 0;
    size_t n = 3 + n_img + b->n_env + o->n_extra_env +
               (proxy ? STK_ARRAY_SIZE(proxy_vars) + STK_ARRAY_SIZE(no_proxy) + b->n_bindings : 0);
    if (n > STK_OCI_MAX_ENV)
        return stk_error_make(err, E2BIG, "too many environment variables (%zu, limit %d)", n,
                              STK_OCI_MAX_ENV);
    if (b->n_env_from)
        return stk_error_make(err, ENOTSUP,
                              "spec.envFrom reads Kubernetes ConfigMaps; the local backend has "
                              "none");
    json_t *env = json_array();
    bool has_path = false;
    /* the image's Env first: the spec's variables come later and win */
    for (size_t i = 0; i < n_img; i++) {
        has_path |= stk_startswith(o->image->env[i], "PATH=");
        json_array_append_new(env, json_string(o->image->env[i]));
    }
    if (!has_path)
        json_array_append_new(env, json_string(default_path));
    json_array_append_new(env, json_string(o->home ? "HOME=" STK_HOME_PATH : "HOME=/workspace"));
    char sb[256];
    snprintf(sb, sizeof(sb), "STOCKADE_SANDBOX=%s", b->name ? b->name : "");
    json_array_append_new(env, json_string(sb));
    for (size_t i = 0; i < b->n_env; i++) {
        const struct stk_env_var *e = &b->env[i];
        if (e->value_from.meta.set) {
            json_decref(env);
            return stk_error_make(err, ENOTSUP,
                                  "spec.env[%zu] (%s): valueFrom reads a Kubernetes ConfigMap; "
                                  "the local backend has none",
                                  i, e->name.v);
        }
        _cleanup_free_ char *kv = stk_xasprintf("%s=%s", e->name.v, e->value.v ? e->value.v : "");
        json_array_append_new(env, json_string(kv));
    }
    for (size_t i = 0; proxy && i < STK_ARRAY_SIZE(proxy_vars); i++) {
        _cleanup_free_ char *kv = stk_xasprintf("%s=%s", proxy_vars[i], url);
        json_array_append_new(env, json_string(kv));
    }
    for (size_t i = 0; proxy && i < STK_ARRAY_SIZE(no_proxy); i++)
        json_array_append_new(env, json_string(no_proxy[i]));
    /* each binding's base URL: STOCKADE_BINDING_<NAME>_URL (the name is a
     * DNS label: upper-cased, '-' as '_') */
    for (size_t i = 0; proxy && i < b->n_bindings; i++) {
        const char *name = b->bindings[i].name.v;
        _cleanup_free_ char *kv =
            stk_xasprintf("STOCKADE_BINDING_%s_URL=http://%s" STK_BINDING_DOMAIN_TEXT, name, name);
        for (char *q = kv + strlen("STOCKADE_BINDING_"); *q != '='; q++)
            *q = *q == '-' ? '_' : (char)toupper((unsigned char)*q);
        json_array_append_new(env, json_string(kv));
    }
    for (size_t i = 0; i < o->n_extra_env; i++)
        json_array_append_new(env, json_string(o->extra_env[i]));
    *ret = env;
    return 0;
}

int stk_oci_argv(const struct stk_boundary *b, const struct stk_oci_image *img, const char ***ret,
                 size_t *ret_n, struct stk_error **err)
{
    const char *const *parts[2] = {b->argv, NULL};
    size_t ns[2] = {b->argc, 0};
    if (img && b->n_command == 0) {
        parts[0] = img->entrypoint;
        ns[0] = img->n_entrypoint;
        parts[1] = b->argc ? b->argv : img->cmd;
        ns[1] = b->argc ? b->argc : img->n_cmd;
    }
    size_t n = ns[0] + ns[1];
    if (n > STK_OCI_MAX_ARGV)
        return stk_error_make(err, E2BIG, "too many arguments (%zu, limit %d)", n,
                              STK_OCI_MAX_ARGV);
    const char **v = stk_xcalloc(n + 1, sizeof(*v));
    size_t k = 0;
    for (size_t p = 0; p < 2; p++)
        for (size_t i = 0; i < ns[p]; i++)
            v[k++] = parts[p][i];
    *ret = v;
    *ret_n = n;
    return 0;
}

static json_t *render_process(const struct stk_boundary *b, const struct stk_oci_options *o,
                              json_t *env, const char *const *argv, size_t argc)
{
    static const char *const init_argv[] = {STK_OCI_INIT_PATH, "--listen", STK_OCI_INIT_SOCK};
    json_t *p = json_object();
    json_object_set_new(p, "terminal", json_false());
    json_object_set_new(p, "user",
                        json_pack("{s:i,s:i}", "uid", o->image ? (int)o->image->uid : STK_OCI_UID,
                                  "gid", o->image ? (int)o->image->gid : STK_OCI_GID));
    json_object_set_new(p, "args",
                        o->init_dir ? str_array(init_argv, o->init_sock_dir ? 3 : 1)
                                    : str_array(argv, argc));
    json_object_set_new(p, "env", env);
    bool image_wd = o->image && o->image->workdir && o->image->workdir[0] &&
                    (!b->working_dir || b->working_dir_default);
    const char *cwd = image_wd ? o->image->workdir : b->working_dir ? b->working_dir : "/workspace";
    json_object_set_new(p, "cwd", json_string(cwd));
    json_object_set_new(p, "capabilities", render_caps(b));
    if (!o->rlimits_inherited) {
        json_t *rl = json_array();
        for (size_t i = 0; i < STK_OCI_RLIMITS; i++) {
            const struct stk_oci_rlimit *l = &stk_oci_rlimits[i];
            json_array_append_new(rl, json_pack("{s:s,s:I,s:I}", "type", l->type, "hard",
                                                (json_int_t)l->hard, "soft", (json_int_t)l->soft));
        }
        json_object_set_new(p, "rlimits", rl);
    }
    json_object_set_new(p, "noNewPrivileges", json_true());
    return p;
}

static json_t *render_linux(const struct stk_boundary *b, const struct stk_oci_options *o)
{
    json_t *l = json_object();
    json_t *ns = json_array();
    if (o->id_size) {
        json_array_append_new(
            ns, o->userns_path ? json_pack("{s:s,s:s}", "type", "user", "path", o->userns_path)
                               : json_pack("{s:s}", "type", "user"));
        json_t *map = json_pack("[{s:i,s:I,s:I}]", "containerID", 0, "hostID",
                                (json_int_t)o->id_base, "size", (json_int_t)o->id_size);
        json_object_set_new(l, "uidMappings", json_deep_copy(map));
        json_object_set_new(l, "gidMappings", map);
    }
    for (size_t i = 0; i < STK_ARRAY_SIZE(namespaces); i++)
        if (o->netns_path && !strcmp(namespaces[i], "network"))
            json_array_append_new(
                ns, json_pack("{s:s,s:s}", "type", namespaces[i], "path", o->netns_path));
        else
            json_array_append_new(ns, json_pack("{s:s}", "type", namespaces[i]));
    json_object_set_new(l, "namespaces", ns);
    json_object_set_new(l, "cgroupsPath", json_string(o->cgroups_path));
    json_object_set_new(l, "resources", render_resources(b));
    json_object_set_new(l, "seccomp", render_seccomp(b, o));
    json_t *masked = str_array(masked_paths, STK_ARRAY_SIZE(masked_paths));
    /* the host's sysfs (see cgroup_binds): what a fresh one in the
     * sandbox's network namespace would not show, and debug interfaces
     * another host may mount there */
    static const char *const host_sys[] = {"/sys/class/net",    "/sys/devices/virtual/net",
                                           "/sys/kernel/debug", "/sys/kernel/tracing",
                                           "/sys/fs/bpf",       "/sys/kernel/security"};
    for (size_t i = 0; o->id_size && i < STK_ARRAY_SIZE(host_sys); i++)
        json_array_append_new(masked, json_string(host_sys[i]));
    json_object_set_new(l, "maskedPaths", masked);
    json_object_set_new(l, "readonlyPaths",
                        str_array(readonly_paths, STK_ARRAY_SIZE(readonly_paths)));
    return l;
}

int stk_oci_render(const struct stk_boundary *b, const struct stk_oci_options *o, char **ret,
                   struct stk_error **err)
{
    if (o->n_host_dirs > STK_OCI_MAX_HOST_DIRS)
        return stk_error_make(err, E2BIG, "too many host directories (%zu, limit %d)",
                              o->n_host_dirs, STK_OCI_MAX_HOST_DIRS);
    if (b->image && !o->image)
        return stk_error_make(err, ENOTSUP,
                              "spec.image %s: the driver found no image for it (stockade image "
                              "pull)",
                              b->image);
    if (o->n_cgroup_binds > STK_OCI_MAX_CGROUP_BINDS)
        return stk_error_make(err, E2BIG, "too many cgroup directories (%zu, limit %d)",
                              o->n_cgroup_binds, STK_OCI_MAX_CGROUP_BINDS);
    if (o->id_size && (o->id_size <= STK_OCI_UID || o->id_size <= STK_OCI_GID ||
                       o->id_base > UINT32_MAX - o->id_size || o->id_base == 0))
        return stk_error_make(err, EINVAL,
                              "render: the id range %u+%u cannot hold the sandbox user", o->id_base,
                              o->id_size);
    if (!o->root_path || !o->workspace || !o->cgroups_path ||
        (stk_streq(b->rootfs, "host") && !o->image && !o->etc_dir))
        return stk_error_make(err, EINVAL, "render: missing host paths");
    _cleanup_free_ const char **argv = NULL;
    size_t argc = 0;
    int r = stk_oci_argv(b, o->image, &argv, &argc, err);
    if (r < 0)
        return r;
    if (argc == 0 && !o->init_dir)
        return stk_error_make(err, EINVAL,
                              o->image ? "no command: the image has no Entrypoint or Cmd; set "
                                         "spec.command or pass one after --"
                                       : "no command: set spec.command or pass one after --");

    json_t *env = NULL;
    if ((r = render_env(b, o, &env, err)) < 0)
        return r;

    json_t *c = json_object();
    json_object_set_new(c, "ociVersion", json_string("1.0.2"));
    json_object_set_new(c, "process", render_process(b, o, env, argv, argc));
    json_object_set_new(c, "root", json_pack("{s:s,s:b}", "path", o->root_path, "readonly", 1));
    json_object_set_new(c, "hostname", json_string(o->hostname ? o->hostname : b->name));
    json_object_set_new(c, "mounts", render_mounts(b, o));
    json_object_set_new(c, "linux", render_linux(b, o));

    char *text = json_dumps(c, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(c);
    if (!text)
        stk_oom();
    *ret = stk_xasprintf("%s\n", text);
    free(text);
    return 0;
}

void stk_oci_etc_render(const struct stk_boundary *b, struct stk_oci_file ret[STK_OCI_ETC_FILES])
{
    /* Nothing here depends on the sandbox (the hostname is set through the
     * UTS namespace), so one generated /etc serves every sandbox. */
    (void)b;
    ret[0] = (struct stk_oci_file){
        "passwd", stk_xasprintf("root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n"
                                "sandbox:x:%d:%d:stockade sandbox:/workspace:/bin/sh\n",
                                STK_OCI_UID, STK_OCI_GID)};
    ret[1] =
        (struct stk_oci_file){"group", stk_xasprintf("root:x:0:\nsandbox:x:%d:\n", STK_OCI_GID)};
    ret[2] = (struct stk_oci_file){
        "hosts", stk_xstrdup("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")};
    ret[3] = (struct stk_oci_file){"nsswitch.conf",
                                   stk_xstrdup("passwd: files\ngroup: files\nshadow: files\n"
                                               "hosts: files\n")};
    /* No resolver: the sandbox has no network until egress rules say so. */
    ret[4] = (struct stk_oci_file){"resolv.conf", stk_xstrdup("")};
}

void stk_oci_etc_free(struct stk_oci_file files[STK_OCI_ETC_FILES])
{
    for (size_t i = 0; i < STK_OCI_ETC_FILES; i++) {
        free(files[i].content);
        files[i].content = NULL;
    }
}
