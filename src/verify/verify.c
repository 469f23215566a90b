/* SPDX-License-Identifier: Apache-2.0 */
/*
 * verify: the claims a boundary makes on the local backend, the probe's
 * argv that observes them, and the judge that holds one against the other.
 *
 * The expectations mirror what the local backend really enforces:
 * render/oci.c (uid 65534, no capabilities beyond spec.capabilities,
 * no_new_privs, the seccomp deny list, a read-only root, /workspace and
 * /tmp writable, cgroup limits) and, for the network, stk_egress_decide()
 * on a runtime that has a network. Where explain.c's backend facts say a
 * claim is not enforced (gVisor's pids), the row is a skip with the reason.
 */
#include "verify/verify.h"

#include <errno.h>
#include <jansson.h>
#include <string.h>

const char *const stk_verify_verdict_names[_STK_VERIFY_N] = {"pass", "FAIL", "skip"};

/* ---- claims ------------------------------------------------------------------- */

enum claim_kind {
    CLAIM_UID,
    CLAIM_IDMAP,
    CLAIM_CAPS,
    CLAIM_NNP,
    CLAIM_SECCOMP,
    CLAIM_DENIED,
    CLAIM_ROOT_RO,
    CLAIM_WRITABLE,
    CLAIM_READONLY,
    CLAIM_TOKEN,
    CLAIM_SOCKETS,
    CLAIM_MEMORY,
    CLAIM_PIDS,
    CLAIM_CPU,
    CLAIM_STORAGE,
    CLAIM_REACH,
};

struct claim {
    struct stk_verify_claim pub;
    enum claim_kind kind;
    uint64_t cap_mask;         /* CLAIM_CAPS */
    int64_t limit;             /* CLAIM_MEMORY, CLAIM_PIDS, CLAIM_STORAGE (bytes) */
    const char *path;          /* CLAIM_WRITABLE, CLAIM_READONLY, CLAIM_STORAGE */
    const char *target;        /* CLAIM_REACH: as the probe echoes it */
    bool allow;                /* CLAIM_REACH */
    bool kube;                 /* CLAIM_REACH: NetworkPolicy is the CNI's to enforce */
    uint32_t id_base, id_size; /* CLAIM_IDMAP */
    /* observed: judged; not observed: a skip for this reason, not a FAIL */
    const char *unobservable;
};

#define MAX_CLAIMS (16 + 2 * STK_VERIFY_MAX_PATHS + STK_VERIFY_MAX_TARGETS)
#define MAX_ARGV   (4 + 2 * (STK_VERIFY_MAX_TARGETS + 2 * STK_VERIFY_MAX_PATHS))

struct stk_verify_plan {
    struct stk_arena *arena;
    struct claim claims[MAX_CLAIMS];
    struct stk_verify_claim pub[MAX_CLAIMS];
    size_t n;
    const char *argv[MAX_ARGV + 1];
    size_t argc;
};

/* Linux capability numbers (include/uapi/linux/capability.h), by the names
 * spec.capabilities uses. */
static const char *const cap_names[] = {
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
};

static struct claim *claim_add(struct stk_verify_plan *p, enum claim_kind kind, const char *id)
{
    struct claim *c = &p->claims[p->n++];
    c->kind = kind;
    c->pub.id = id;
    return c;
}

STK_PRINTF(3, 4)
static void claim_say(struct stk_verify_plan *p, struct claim *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *t = stk_xvasprintf(fmt, ap);
    va_end(ap);
    c->pub.text = stk_arena_strdup(p->arena, t);
}

static void argv_add(struct stk_verify_plan *p, const char *a, const char *v)
{
    p->argv[p->argc++] = a;
    if (v)
        p->argv[p->argc++] = v;
}

static int caps_mask(const struct stk_boundary *b, uint64_t *ret, struct stk_error **err)
{
    uint64_t m = 0;
    for (size_t i = 0; i < b->n_caps; i++) {
        int bit = stk_enum_lookup(cap_names, STK_ARRAY_SIZE(cap_names), b->caps[i]);
        if (bit < 0)
            return stk_error_make(err, EINVAL, "capability %s has no known number", b->caps[i]);
        m |= UINT64_C(1) << bit;
    }
    *ret = m;
    return 0;
}

static void plan_identity(struct stk_verify_plan *p, const struct stk_boundary *b, uint64_t caps,
                          const struct stk_verify_opts *o, bool gvisor)
{
    struct claim *c = claim_add(p, CLAIM_UID, "uid");
    c->limit = o->kubernetes ? STK_VERIFY_KUBE_UID : 65534; /* the uid and gid claimed */
    claim_say(p, c, "runs as non-root (uid %lld)", (long long)c->limit);
    c->pub.expected = stk_arena_printf(p->arena, "uid=euid=%lld gid=egid=%lld, not in group 0",
                                       (long long)c->limit, (long long)c->limit);
    if (o->kubernetes && b->policy != STK_POLICY_RESTRICTED) {
        c->pub.text = "runs as non-root";
        c->pub.expected = "the image's user";
        c->pub.skip = stk_arena_printf(p->arena,
                                       "not enforced: policy %s sets no runAsUser, the image's "
                                       "user runs (only restricted pins uid %u)",
                                       stk_policy_names[b->policy], STK_VERIFY_KUBE_UID);
    }

    c = claim_add(p, CLAIM_IDMAP, "idmap");
    c->pub.text = "host ids of its own (user namespace)";
    c->id_base = o->id_base;
    c->id_size = o->id_size;
    c->pub.expected = "a host id range held by this sandbox alone";
    if (o->kubernetes)
        c->pub.skip = "not enforced: the Pod has no user namespace (hostUsers is not set), so "
                      "its ids are the node's";
    else if (gvisor)
        c->pub.skip = "gVisor: the workload's ids are those of gVisor's own kernel, never host "
                      "ids; per-user limits and signals stay inside it";
    else if (o->id_size)
        c->pub.expected = stk_arena_printf(
            p->arena, "uid_map = gid_map = 0 %u %u, a range no other sandbox holds", o->id_base,
            o->id_size);

    c = claim_add(p, CLAIM_CAPS, "caps");
    c->cap_mask = caps;
    if (!caps) {
        c->pub.text = "no capabilities";
        c->pub.expected = "CapEff=CapPrm=CapBnd=CapAmb=0";
    } else {
        struct stk_buf t = {0};
        for (size_t i = 0; i < b->n_caps; i++)
            stk_buf_printf(&t, "%s%s", i ? ", " : "", b->caps[i]);
        claim_say(p, c, "capabilities: %s only", stk_buf_str(&t));
        c->pub.expected = stk_arena_printf(p->arena, "no bit beyond %016llx in any set",
                                           (unsigned long long)caps);
        stk_buf_free(&t);
    }

    c = claim_add(p, CLAIM_NNP, "no_new_privs");
    c->pub.text = "no_new_privs";
    c->pub.expected = "NoNewPrivs 1";
    if (o->kubernetes && b->policy == STK_POLICY_PRIVILEGED)
        c->pub.skip = "not enforced: policy privileged renders no allowPrivilegeEscalation: false";

    c = claim_add(p, CLAIM_SECCOMP, "seccomp");
    c->pub.text = "seccomp filter on";
    c->pub.expected = "Seccomp 2 (filter)";

    c = claim_add(p, CLAIM_DENIED, "denied_syscalls");
    c->pub.text = "keyctl, add_key, unshare denied";
    c->pub.expected = "each fails with EPERM";
}

static void plan_filesystem(struct stk_verify_plan *p, const struct stk_boundary *b,
                            const struct stk_verify_opts *o)
{
    struct claim *c = claim_add(p, CLAIM_ROOT_RO, "root_readonly");
    c->pub.text = "root filesystem read-only";
    c->pub.expected = "/, /etc, /usr: no file can be created";
    if (o->kubernetes && b->policy == STK_POLICY_PRIVILEGED)
        c->pub.skip = "not enforced: policy privileged renders readOnlyRootFilesystem: false";

    /* on a cluster the workspace volume is mounted at the working directory */
    const char *workspace = o->kubernetes && b->working_dir ? b->working_dir : "/workspace";
    const char *always[] = {workspace, "/tmp"};
    for (size_t i = 0; i < STK_ARRAY_SIZE(always) + o->n_writable; i++) {
        const char *path = i < STK_ARRAY_SIZE(always) ? always[i] : o->writable[i - 2];
        c = claim_add(p, CLAIM_WRITABLE, "writable");
        c->path = path;
        claim_say(p, c, "%s writable", path);
        c->pub.expected = "create, write, delete work";
    }
    /* each of /workspace and the home is a filesystem of its own, no larger
     * than its limit (the local driver's volumes) */
    for (int i = 0; i < 1 + b->home; i++) {
        const char *path = i ? STK_HOME_PATH : workspace;
        int64_t limit = i ? b->home_size : b->limits.storage;
        if (i) {
            c = claim_add(p, CLAIM_WRITABLE, "writable");
            c->path = path;
            claim_say(p, c, "%s writable", path);
            c->pub.expected = "create, write, delete work";
        }
        if (!i && o->host_workspace)
            continue;
        char bytes[32];
        stk_bytes_format(limit, bytes, sizeof(bytes));
        c = claim_add(p, CLAIM_STORAGE, "storage");
        c->path = path;
        c->limit = limit;
        claim_say(p, c, "%s holds at most %s", path, bytes);
        c->pub.expected =
            stk_arena_printf(p->arena, "a filesystem of at most %lld bytes", (long long)limit);
        if (o->kubernetes)
            c->pub.skip = "not enforced as a filesystem size on kubernetes: the volume is an "
                          "emptyDir on the node's disk, and the kubelet evicts a Pod past its "
                          "ephemeral-storage limit after the fact";
    }
    for (size_t i = 0; i < o->n_readonly; i++) {
        c = claim_add(p, CLAIM_READONLY, "readonly");
        c->path = o->readonly[i];
        claim_say(p, c, "%s not writable", c->path);
        c->pub.expected = "no file can be created";
    }
}

static void plan_secrets(struct stk_verify_plan *p, const struct stk_boundary *b,
                         const struct stk_verify_opts *o)
{
    if (o->kubernetes && b->kube_access) {
        /* the Pod mounts an expiring projected token by design */
        struct claim *c = claim_add(p, CLAIM_TOKEN, "no_token");
        c->pub.text = "service-account token (kubernetesAccess: true)";
        c->pub.expected = "an expiring projected token, by design";
        c->pub.skip = "kubernetesAccess grants a token: its absence is not claimed";
        c = claim_add(p, CLAIM_SOCKETS, "no_runtime_sockets");
        c->pub.text = "no container-runtime sockets";
        c->pub.expected = "none present or reachable";
        return;
    }
    /* explain.c: the local backend has no Kubernetes API and no token,
     * whatever kubernetesAccess says. */
    struct claim *c = claim_add(p, CLAIM_TOKEN, "no_token");
    c->pub.text = b->kube_access ? "no service-account token (kubernetesAccess is Kubernetes-only)"
                                 : "no service-account token";
    c->pub.expected = "absent";

    c = claim_add(p, CLAIM_SOCKETS, "no_runtime_sockets");
    c->pub.text = "no container-runtime sockets";
    c->pub.expected = "none present or reachable";
}

static void plan_limits(struct stk_verify_plan *p, const struct stk_boundary *b,
                        const struct stk_verify_opts *o, bool gvisor)
{
    char bytes[32];
    struct claim *c = claim_add(p, CLAIM_MEMORY, "memory");
    c->limit = b->limits.memory;
    stk_bytes_format(b->limits.memory, bytes, sizeof(bytes));
    claim_say(p, c, "memory limit = %s", bytes);
    c->pub.expected =
        stk_arena_printf(p->arena, "%lld bytes (page-rounded down)", (long long)b->limits.memory);
    /* gVisor enforces it through the host cgroup around the whole sandbox;
     * the cgroup files inside (none, or gVisor's own emulation, which shows
     * no limit) are not that cgroup: the probe cannot see it there. */
    if (gvisor)
        c->pub.skip = "under gVisor the host cgroup around the sandbox enforces the limit; the "
                      "cgroup files inside are gVisor's own and do not show it";

    c = claim_add(p, CLAIM_PIDS, "pids");
    c->limit = b->limits.pids;
    claim_say(p, c, "pids limit = %lld", (long long)b->limits.pids);
    c->pub.expected = stk_arena_printf(p->arena, "%lld", (long long)b->limits.pids);
    /* the caveat runtime.c gives for runsc */
    if (gvisor)
        c->pub.skip = "under gVisor the pids limit holds on the sandbox's host tasks, about two "
                      "per guest process: a fork past it ends the sandbox, which the probe "
                      "cannot report from inside";
    if (!o->kubernetes)
        return;
    c->pub.skip = "not enforced on kubernetes: a PodSpec has no pids limit (a node's "
                  "podPidsLimit, if its operator set one, is not the sandbox's)";

    /* the kubelet writes limits.cpu as a CFS quota: milli * period / 1000 */
    c = claim_add(p, CLAIM_CPU, "cpu");
    c->limit = b->limits.cpu_milli;
    claim_say(p, c, "cpu limit = %lldm", (long long)b->limits.cpu_milli);
    c->pub.expected = stk_arena_printf(p->arena, "a CFS quota of %lld/1000 of its period",
                                       (long long)b->limits.cpu_milli);
    if (!b->limits.cpu_milli)
        c->pub.skip = "no cpu limit in the spec";
}

static bool target_is_loopback(const struct stk_cidr *a)
{
    static const uint8_t v6_loop[16] = {[15] = 1};
    if (a->family == STK_FAMILY_V4)
        return a->addr[0] == 127;
    return !memcmp(a->addr, v6_loop, 16);
}

static int plan_reach(struct stk_verify_plan *p, const struct stk_boundary *b,
                      const struct stk_verify_opts *o, struct stk_error **err)
{
    for (size_t i = 0; i < o->n_to; i++) {
        const struct stk_verify_target *t = &o->to[i];
        const char *text = stk_arena_printf(
            p->arena, t->family == STK_FAMILY_V6 ? "[%s]:%u" : "%s:%u", t->host, t->port);
        struct stk_dest d = {.has_addr = true, .port = t->port, .protocol = STK_PROTO_TCP};
        if (stk_addr_parse(t->host, &d.addr) < 0)
            return stk_error_make(err, EINVAL, "%s: not an IP address", text);
        struct stk_verdict v;
        if (stk_egress_decide(b, &d, &v) < 0)
            return stk_error_make(err, EINVAL,
                                  "the egress model does not apply to this sandbox (injection)");
        struct claim *c = claim_add(p, CLAIM_REACH, "reach");
        c->target = text;
        argv_add(p, "--connect", text);
        if (target_is_loopback(&d.addr)) {
            claim_say(p, c, "reach %s", text);
            c->pub.expected = "n/a";
            c->pub.skip = "loopback stays inside the sandbox's network namespace; egress rules "
                          "do not apply";
            continue;
        }
        /* Without a network (--no-network) nothing leaves the sandbox:
         * stricter than the egress rules, and what is enforced. */
        bool has_net = o->network;
        c->allow = has_net && v.allowed;
        c->kube = o->kubernetes;
        claim_say(p, c, "reach %s -> %s", text, c->allow ? "allowed" : "denied");
        if (c->allow)
            c->pub.expected =
                stk_arena_printf(p->arena, "connected or refused (allowed by %s)",
                                 v.isolated ? stk_netpol_names[v.policy] : "no isolating policy");
        else if (!has_net)
            c->pub.expected =
                stk_arena_printf(p->arena, "timeout or unreachable (no network: loopback only%s)",
                                 v.allowed ? "; the egress rules would allow it" : "");
        else
            c->pub.expected = "timeout or unreachable (no rule allows it)";
    }
    return 0;
}

int stk_verify_parse_target(const char *s, struct stk_verify_target *ret, struct stk_error **err)
{
    char host[64];
    const char *port;
    struct stk_verify_target t = {0};
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':' || (size_t)(close - s - 1) >= sizeof(host))
            return stk_error_make(err, EINVAL, "%s: expected [IPv6]:PORT", s);
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = '\0';
        port = close + 2;
        t.family = STK_FAMILY_V6;
    } else {
        const char *colon = strchr(s, ':');
        if (!colon || strchr(colon + 1, ':') || (size_t)(colon - s) >= sizeof(host))
            return stk_error_make(err, EINVAL, "%s: expected IPv4:PORT or [IPv6]:PORT", s);
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
        port = colon + 1;
        t.family = STK_FAMILY_V4;
    }
    char *end = NULL;
    errno = 0;
    long v = strtol(port, &end, 10);
    if (!*port || *end || errno || v < 1 || v > 65535 || port[0] == '+' || port[0] == '-')
        return stk_error_make(err, EINVAL, "%s: port must be 1-65535", s);
    struct stk_cidr a;
    if (stk_addr_parse(host, &a) < 0 || a.family != t.family)
        return stk_error_make(err, EINVAL,
                              "%s: not a numeric IP address (names are not resolved: "
                              "NetworkPolicy is IP-only)",
                              s);
    char cb[STK_CIDR_STRLEN];
    stk_cidr_format(&a, cb);
    *strchr(cb, '/') = '\0';
    if (strlen(cb) >= sizeof(t.host))
        return stk_error_make(err, EINVAL, "%s: address too long", s);
    memcpy(t.host, cb, strlen(cb) + 1);
    t.port = (uint16_t)v;
    *ret = t;
    return 0;
}

static int plan_check_opts(const struct stk_verify_opts *o, struct stk_error **err)
{
    if (o->n_to > STK_VERIFY_MAX_TARGETS)
        return stk_error_make(err, E2BIG, "too many destinations (%zu, limit %d)", o->n_to,
                              STK_VERIFY_MAX_TARGETS);
    if (o->n_writable > STK_VERIFY_MAX_PATHS || o->n_readonly > STK_VERIFY_MAX_PATHS)
        return stk_error_make(err, E2BIG, "too many paths (limit %d each)", STK_VERIFY_MAX_PATHS);
    if (o->timeout_ms < 0 || o->timeout_ms > STK_VERIFY_MAX_TIMEOUT_MS)
        return stk_error_make(err, EINVAL, "timeout must be 1-%d ms", STK_VERIFY_MAX_TIMEOUT_MS);
    for (size_t i = 0; i < o->n_writable + o->n_readonly; i++) {
        const char *path = i < o->n_writable ? o->writable[i] : o->readonly[i - o->n_writable];
        if (!path || path[0] != '/' || strlen(path) >= 1024)
            return stk_error_make(err, EINVAL, "%s: an absolute path under 1024 bytes is needed",
                                  path ? path : "(null)");
    }
    return 0;
}

int stk_verify_plan_make(const struct stk_boundary *b, const struct stk_verify_opts *o,
                         struct stk_verify_plan **ret, struct stk_error **err)
{
    int r = plan_check_opts(o, err);
    if (r < 0)
        return r;
    uint64_t caps = 0;
    if ((r = caps_mask(b, &caps, err)) < 0)
        return r;

    struct stk_verify_plan *p = stk_xcalloc(1, sizeof(*p));
    p->arena = stk_arena_new();
    bool gvisor = stk_streq(o->runtime, "runsc");
    int timeout = o->timeout_ms ? o->timeout_ms : STK_VERIFY_DEFAULT_TIMEOUT_MS;

    argv_add(p, STK_VERIFY_PROBE_PATH, NULL);
    argv_add(p, "--timeout-ms", stk_arena_printf(p->arena, "%d", timeout));
    for (size_t i = 0; i < o->n_writable; i++)
        argv_add(p, "--writable", o->writable[i]);
    for (size_t i = 0; i < o->n_readonly; i++)
        argv_add(p, "--readonly", o->readonly[i]);
    if (b->home)
        argv_add(p, "--writable", STK_HOME_PATH);

    plan_identity(p, b, caps, o, gvisor);
    plan_filesystem(p, b, o);
    plan_secrets(p, b, o);
    plan_limits(p, b, o, gvisor);
    if ((r = plan_reach(p, b, o, err)) < 0) {
        stk_verify_plan_free(p);
        return r;
    }
    /* The plan outlives opts: paths are copied. */
    for (size_t i = 0; i < p->argc; i++)
        p->argv[i] = stk_arena_strdup(p->arena, p->argv[i]);
    for (size_t i = 0; i < p->n; i++) {
        if (p->claims[i].path)
            p->claims[i].path = stk_arena_strdup(p->arena, p->claims[i].path);
        p->pub[i] = p->claims[i].pub;
    }
    p->argv[p->argc] = NULL;
    *ret = p;
    return 0;
}

const char *const *stk_verify_plan_argv(const struct stk_verify_plan *p)
{
    return p->argv;
}

size_t stk_verify_plan_claims(const struct stk_verify_plan *p, const struct stk_verify_claim **ret)
{
    *ret = p->pub;
    return p->n;
}

void stk_verify_plan_free(struct stk_verify_plan *p)
{
    if (!p)
        return;
    stk_arena_free(p->arena);
    free(p);
}

/* ---- the probe's report ----------------------------------------------------------- */

#define MAX_OBS 256 /* entries per list; the probe writes far fewer */

struct obs_path {
    const char *path, *kind, *err;
    bool writable;
    int64_t fs_bytes; /* the size of its filesystem; -1 unknown */
};
struct obs_secret {
    const char *path, *err;
    bool present;
};
struct obs_socket {
    const char *path, *type, *err, *connect_err;
    bool present, reachable;
};
struct obs_syscall {
    const char *name, *err;
    int64_t ret;
};
struct obs_limit {
    const char *path, *value, *err;
};
struct obs_connect {
    const char *target, *result, *err;
};

/* The report, validated; strings point into the parsed JSON. -1 = null. */
struct obs {
    int64_t uid, euid, gid, egid;
    /* uid_map, gid_map: lines of [inside, outside, count]; -1 not observed */
    int64_t idmap[2][8][3];
    int n_idmap[2];
    int64_t groups[MAX_OBS];
    int64_t n_groups; /* -1: unknown */
    int64_t nnp, seccomp;
    const char *caps_hex[4]; /* eff, prm, bnd, amb; NULL unknown */
    uint64_t caps[4];
    const char *status_err;
    struct obs_syscall syscalls[MAX_OBS];
    struct obs_path paths[MAX_OBS];
    struct obs_secret secrets[MAX_OBS];
    struct obs_socket sockets[MAX_OBS];
    struct obs_connect connect[MAX_OBS];
    size_t n_syscalls, n_paths, n_secrets, n_sockets, n_connect;
    struct obs_limit memory, pids, cpu;
};

/* Validation keeps the first problem's field path. */
struct reader {
    struct stk_error **err;
    int r;
};

STK_PRINTF(2, 3)
static void bad(struct reader *rd, const char *fmt, ...)
{
    if (rd->r < 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *m = stk_xvasprintf(fmt, ap);
    va_end(ap);
    rd->r = stk_error_make(rd->err, EBADMSG, "probe report: %s", m);
}

static json_t *get(struct reader *rd, json_t *o, const char *ctx, const char *k)
{
    json_t *v = json_object_get(o, k);
    if (!v)
        bad(rd, "%s.%s: missing", ctx, k);
    return v;
}

static int64_t get_int(struct reader *rd, json_t *o, const char *ctx, const char *k, int64_t min,
                       int64_t max, bool nullable)
{
    json_t *v = get(rd, o, ctx, k);
    if (v && nullable && json_is_null(v))
        return -1;
    if (v && (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)) {
        bad(rd, "%s.%s: expected an integer in %lld..%lld", ctx, k, (long long)min, (long long)max);
        return -1;
    }
    return v ? json_integer_value(v) : -1;
}

static bool get_bool(struct reader *rd, json_t *o, const char *ctx, const char *k)
{
    json_t *v = get(rd, o, ctx, k);
    if (v && !json_is_boolean(v))
        bad(rd, "%s.%s: expected true or false", ctx, k);
    return v && json_is_true(v);
}

static const char *get_str(struct reader *rd, json_t *o, const char *ctx, const char *k, size_t max,
                           bool nullable)
{
    json_t *v = get(rd, o, ctx, k);
    if (!v || (nullable && json_is_null(v)))
        return NULL;
    if (!json_is_string(v) || json_string_length(v) > max ||
        strlen(json_string_value(v)) != json_string_length(v)) {
        bad(rd, "%s.%s: expected a string of at most %zu bytes", ctx, k, max);
        return NULL;
    }
    return json_string_value(v);
}

/* "EPERM" or null: the errno name of a step that failed. */
static const char *get_errno(struct reader *rd, json_t *o, const char *ctx, const char *k)
{
    const char *s = get_str(rd, o, ctx, k, 31, true);
    if (s && (s[0] != 'E' || strlen(s) < 2 ||
              strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") != strlen(s)))
        bad(rd, "%s.%s: not an errno name: %s", ctx, k, s);
    return s;
}

static const char *get_enum(struct reader *rd, json_t *o, const char *ctx, const char *k,
                            const char *const *allowed, size_t n)
{
    const char *s = get_str(rd, o, ctx, k, 32, false);
    if (s && stk_enum_lookup(allowed, n, s) < 0)
        bad(rd, "%s.%s: unexpected value %s", ctx, k, s);
    return s;
}

static json_t *get_array(struct reader *rd, json_t *o, const char *ctx, const char *k)
{
    json_t *v = get(rd, o, ctx, k);
    if (v && (!json_is_array(v) || json_array_size(v) > MAX_OBS)) {
        bad(rd, "%s.%s: expected an array of at most %d entries", ctx, k, MAX_OBS);
        return NULL;
    }
    return v;
}

static json_t *get_object(struct reader *rd, json_t *o, const char *ctx, const char *k)
{
    json_t *v = get(rd, o, ctx, k);
    if (v && !json_is_object(v)) {
        bad(rd, "%s.%s: expected an object", ctx, k);
        return NULL;
    }
    return v;
}

static uint64_t hex64(const char *s)
{
    uint64_t v = 0;
    for (; *s; s++)
        v = v << 4 | (uint64_t)(*s <= '9' ? *s - '0' : (*s | 0x20) - 'a' + 10);
    return v;
}

#define ID_MAX INT64_C(4294967295)

static void read_identity(struct reader *rd, json_t *root, struct obs *o)
{
    json_t *id = get_object(rd, root, "report", "identity");
    if (!id)
        return;
    o->uid = get_int(rd, id, "identity", "uid", 0, ID_MAX, false);
    o->euid = get_int(rd, id, "identity", "euid", 0, ID_MAX, false);
    o->gid = get_int(rd, id, "identity", "gid", 0, ID_MAX, false);
    o->egid = get_int(rd, id, "identity", "egid", 0, ID_MAX, false);
    json_t *g = json_object_get(id, "groups");
    o->n_groups = -1;
    if (g && !json_is_null(g)) {
        g = get_array(rd, id, "identity", "groups");
        for (size_t i = 0; g && i < json_array_size(g); i++) {
            json_t *v = json_array_get(g, i);
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > ID_MAX)
                bad(rd, "identity.groups[%zu]: expected a group id", i);
            o->groups[i] = json_integer_value(v);
        }
        o->n_groups = g ? (int64_t)json_array_size(g) : -1;
    } else if (!g) {
        bad(rd, "identity.groups: missing");
    }
    o->nnp = get_int(rd, id, "identity", "no_new_privs", 0, 1, true);
    o->seccomp = get_int(rd, id, "identity", "seccomp", 0, 2, true);
    static const char *const keys[4] = {"cap_eff", "cap_prm", "cap_bnd", "cap_amb"};
    for (int i = 0; i < 4; i++) {
        const char *s = get_str(rd, id, "identity", keys[i], 16, true);
        if (s && (strlen(s) != 16 || strspn(s, "0123456789abcdefABCDEF") != 16)) {
            bad(rd, "identity.%s: expected 16 hex digits", keys[i]);
            s = NULL;
        }
        o->caps_hex[i] = s;
        o->caps[i] = s ? hex64(s) : 0;
    }
    o->status_err = get_errno(rd, id, "identity", "errno");
    static const char *const maps[2] = {"uid_map", "gid_map"};
    for (int m = 0; m < 2; m++) {
        o->n_idmap[m] = -1;
        json_t *a = json_object_get(id, maps[m]);
        if (!a || json_is_null(a))
            continue; /* not observed (or an older probe) */
        if (!json_is_array(a) || json_array_size(a) > 8) {
            bad(rd, "identity.%s: expected at most 8 lines", maps[m]);
            continue;
        }
        for (size_t i = 0; i < json_array_size(a); i++) {
            json_t *l = json_array_get(a, i);
            if (!json_is_array(l) || json_array_size(l) != 3) {
                bad(rd, "identity.%s[%zu]: expected [inside, outside, count]", maps[m], i);
                break;
            }
            for (size_t k = 0; k < 3; k++) {
                json_t *v = json_array_get(l, k);
                if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                    json_integer_value(v) > ID_MAX) {
                    bad(rd, "identity.%s[%zu][%zu]: expected an id", maps[m], i, k);
                    return;
                }
                o->idmap[m][i][k] = json_integer_value(v);
            }
        }
        o->n_idmap[m] = (int)json_array_size(a);
    }
}

static void read_syscalls(struct reader *rd, json_t *root, struct obs *o)
{
    json_t *a = get_array(rd, root, "report", "syscalls");
    for (size_t i = 0; a && i < json_array_size(a) && rd->r == 0; i++) {
        json_t *e = json_array_get(a, i);
        struct obs_syscall *s = &o->syscalls[o->n_syscalls++];
        if (!json_is_object(e)) {
            bad(rd, "syscalls[%zu]: expected an object", i);
            break;
        }
        s->name = get_str(rd, e, "syscalls[]", "name", 64, false);
        s->ret = get_int(rd, e, "syscalls[]", "ret", -1, INT64_MAX, false);
        s->err = get_errno(rd, e, "syscalls[]", "errno");
    }
}

static void read_paths(struct reader *rd, json_t *root, struct obs *o)
{
    static const char *const kinds[] = {"root", "writable", "readonly"};
    json_t *a = get_array(rd, root, "report", "paths");
    for (size_t i = 0; a && i < json_array_size(a) && rd->r == 0; i++) {
        json_t *e = json_array_get(a, i);
        struct obs_path *p = &o->paths[o->n_paths++];
        if (!json_is_object(e)) {
            bad(rd, "paths[%zu]: expected an object", i);
            break;
        }
        p->path = get_str(rd, e, "paths[]", "path", 4096, false);
        p->kind = get_enum(rd, e, "paths[]", "kind", kinds, STK_ARRAY_SIZE(kinds));
        p->writable = get_bool(rd, e, "paths[]", "writable");
        p->err = get_errno(rd, e, "paths[]", "errno");
        /* absent from a probe older than storage claims: not observed */
        p->fs_bytes = json_object_get(e, "fs_bytes")
                          ? get_int(rd, e, "paths[]", "fs_bytes", 0, INT64_MAX, true)
                          : -1;
        if (rd->r == 0 && p->writable == (p->err != NULL))
            bad(rd, "paths[%zu]: writable and errno disagree", i);
    }
}

static void read_secrets(struct reader *rd, json_t *root, struct obs *o)
{
    json_t *a = get_array(rd, root, "report", "secrets");
    for (size_t i = 0; a && i < json_array_size(a) && rd->r == 0; i++) {
        json_t *e = json_array_get(a, i);
        struct obs_secret *s = &o->secrets[o->n_secrets++];
        if (!json_is_object(e)) {
            bad(rd, "secrets[%zu]: expected an object", i);
            break;
        }
        s->path = get_str(rd, e, "secrets[]", "path", 4096, false);
        s->present = get_bool(rd, e, "secrets[]", "present");
        s->err = get_errno(rd, e, "secrets[]", "errno");
        if (rd->r == 0 && s->present == (s->err != NULL))
            bad(rd, "secrets[%zu]: present and errno disagree", i);
    }
}

static void read_sockets(struct reader *rd, json_t *root, struct obs *o)
{
    static const char *const types[] = {"socket", "directory", "file", "other"};
    json_t *a = get_array(rd, root, "report", "sockets");
    for (size_t i = 0; a && i < json_array_size(a) && rd->r == 0; i++) {
        json_t *e = json_array_get(a, i);
        struct obs_socket *s = &o->sockets[o->n_sockets++];
        if (!json_is_object(e)) {
            bad(rd, "sockets[%zu]: expected an object", i);
            break;
        }
        s->path = get_str(rd, e, "sockets[]", "path", 4096, false);
        s->present = get_bool(rd, e, "sockets[]", "present");
        json_t *t = json_object_get(e, "type");
        s->type = t && json_is_null(t)
                      ? NULL
                      : get_enum(rd, e, "sockets[]", "type", types, STK_ARRAY_SIZE(types));
        s->err = get_errno(rd, e, "sockets[]", "errno");
        s->reachable = get_bool(rd, e, "sockets[]", "reachable");
        s->connect_err = get_errno(rd, e, "sockets[]", "connect_errno");
        if (rd->r == 0 && (s->present != (s->type != NULL) || s->present == (s->err != NULL) ||
                           (s->reachable && !stk_streq(s->type, "socket"))))
            bad(rd, "sockets[%zu]: present, type, errno and reachable disagree", i);
    }
}

static void read_limit(struct reader *rd, json_t *cg, const char *k, struct obs_limit *l)
{
    json_t *v = get_object(rd, cg, "cgroup", k);
    if (!v)
        return;
    l->path = get_str(rd, v, k, "path", 4096, true);
    l->value = get_str(rd, v, k, "value", 64, true);
    l->err = get_errno(rd, v, k, "errno");
    if (rd->r == 0 && (l->value == NULL) == (l->err == NULL))
        bad(rd, "cgroup.%s: value and errno disagree", k);
}

static void read_cgroup(struct reader *rd, json_t *root, struct obs *o)
{
    json_t *cg = get_object(rd, root, "report", "cgroup");
    if (!cg)
        return;
    get_int(rd, cg, "cgroup", "version", 0, 2, false);
    read_limit(rd, cg, "memory", &o->memory);
    read_limit(rd, cg, "pids", &o->pids);
    /* absent from a probe older than the cpu claim: not observed */
    if (json_object_get(cg, "cpu"))
        read_limit(rd, cg, "cpu", &o->cpu);
    else
        o->cpu.err = "ENODATA";
}

static void read_connect(struct reader *rd, json_t *root, struct obs *o)
{
    static const char *const results[] = {"connected", "refused", "timeout", "unreachable",
                                          "error"};
    json_t *a = get_array(rd, root, "report", "connect");
    for (size_t i = 0; a && i < json_array_size(a) && rd->r == 0; i++) {
        json_t *e = json_array_get(a, i);
        struct obs_connect *c = &o->connect[o->n_connect++];
        if (!json_is_object(e)) {
            bad(rd, "connect[%zu]: expected an object", i);
            break;
        }
        c->target = get_str(rd, e, "connect[]", "target", 64, false);
        c->result = get_enum(rd, e, "connect[]", "result", results, STK_ARRAY_SIZE(results));
        c->err = get_errno(rd, e, "connect[]", "errno");
        get_int(rd, e, "connect[]", "ms", 0, INT64_MAX, false);
    }
}

static int obs_read(json_t *root, struct obs *o, struct stk_error **err)
{
    struct reader rd = {.err = err};
    if (!json_is_object(root))
        return stk_error_make(err, EBADMSG, "probe report: not a JSON object");
    if (get_int(&rd, root, "report", "schema", 1, 1, false) != 1 || rd.r < 0)
        return rd.r < 0 ? rd.r : stk_error_make(err, EBADMSG, "probe report: unsupported schema");
    const char *probe = get_str(&rd, root, "report", "probe", 64, false);
    if (probe && strcmp(probe, "stockade-probe"))
        bad(&rd, "report.probe: not stockade-probe");
    read_identity(&rd, root, o);
    read_syscalls(&rd, root, o);
    read_paths(&rd, root, o);
    read_secrets(&rd, root, o);
    read_sockets(&rd, root, o);
    read_cgroup(&rd, root, o);
    read_connect(&rd, root, o);
    return rd.r;
}

/* ---- judging ----------------------------------------------------------------------- */

struct stk_verify_report {
    struct stk_arena *arena;
    struct stk_verify_row rows[MAX_CLAIMS + STK_VERIFY_MAX_EXTRA_ROWS];
    size_t n_extra;
    size_t n;
    const char *image, *image_digest; /* what the sandbox runs, or NULL */
};

void stk_verify_report_set_image(struct stk_verify_report *r, const char *image, const char *digest)
{
    r->image = image ? stk_arena_strdup(r->arena, image) : NULL;
    r->image_digest = digest ? stk_arena_strdup(r->arena, digest) : NULL;
}

struct judge {
    struct stk_verify_report *r;
    struct stk_verify_row *row;
    struct stk_buf obs; /* the observed column */
    const char *skip;   /* set by a judge: this row is a skip, for this reason */
};

STK_PRINTF(2, 3)
static void observed(struct judge *j, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    stk_buf_vprintf(&j->obs, fmt, ap);
    va_end(ap);
}

STK_PRINTF(2, 3)
static void fail(struct judge *j, const char *fmt, ...)
{
    if (j->row->verdict == STK_VERIFY_FAIL)
        return; /* the first reason is kept */
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *m = stk_xvasprintf(fmt, ap);
    va_end(ap);
    j->row->verdict = STK_VERIFY_FAIL;
    j->row->reason = stk_arena_strdup(j->r->arena, m);
}

static void judge_uid(struct judge *j, const struct claim *c, const struct obs *o)
{
    observed(j, "uid=%lld euid=%lld gid=%lld egid=%lld groups=", (long long)o->uid,
             (long long)o->euid, (long long)o->gid, (long long)o->egid);
    if (o->n_groups < 0)
        observed(j, "?");
    for (int64_t i = 0; i < o->n_groups; i++)
        observed(j, "%s%lld", i ? "," : "", (long long)o->groups[i]);
    if (o->n_groups == 0)
        observed(j, "none");
    if (o->uid != c->limit || o->euid != c->limit)
        fail(j, "runs as uid %lld", (long long)(o->uid != c->limit ? o->uid : o->euid));
    if (o->gid != c->limit || o->egid != c->limit)
        fail(j, "runs as gid %lld", (long long)(o->gid != c->limit ? o->gid : o->egid));
    if (o->n_groups < 0)
        fail(j, "supplementary groups not observed");
    for (int64_t i = 0; i < o->n_groups; i++)
        if (o->groups[i] == 0)
            fail(j, "member of group 0");
}

/* One line, 0 -> the sandbox's range: its ids are its own. The host's
 * identity map ("0 0 4294967295") and any other range fail. */
static void judge_idmap(struct judge *j, const struct claim *c, const struct obs *o)
{
    static const char *const names[2] = {"uid_map", "gid_map"};
    for (int m = 0; m < 2; m++) {
        observed(j, "%s%s ", m ? "; " : "", names[m]);
        if (o->n_idmap[m] < 0) {
            observed(j, "?");
            fail(j, "%s not observed", names[m]);
            continue;
        }
        for (int i = 0; i < o->n_idmap[m]; i++)
            observed(j, "%s%lld %lld %lld", i ? ", " : "", (long long)o->idmap[m][i][0],
                     (long long)o->idmap[m][i][1], (long long)o->idmap[m][i][2]);
        if (o->n_idmap[m] == 0) {
            fail(j, "%s is empty", names[m]);
            continue;
        }
        const int64_t *l = o->idmap[m][0];
        if (l[0] == 0 && l[1] == 0 && l[2] == ID_MAX)
            fail(j, "the host's own ids (%s 0 0 4294967295): no user namespace", names[m]);
        else if (!c->id_size)
            fail(j, "no host id range is held for this sandbox");
        else if (o->n_idmap[m] != 1 || l[0] != 0 || l[1] != c->id_base || l[2] != c->id_size)
            fail(j, "%s is not the sandbox's range %u+%u", names[m], c->id_base, c->id_size);
    }
}

static void cap_list(struct stk_buf *out, uint64_t m)
{
    size_t k = 0;
    for (unsigned bit = 0; bit < 64; bit++)
        if (m & (UINT64_C(1) << bit)) {
            if (k++ == 3) {
                stk_buf_puts(out, ", ...");
                return;
            }
            if (bit < STK_ARRAY_SIZE(cap_names))
                stk_buf_printf(out, "%s%s", k > 1 ? ", " : "", cap_names[bit]);
            else
                stk_buf_printf(out, "%scap %u", k > 1 ? ", " : "", bit);
        }
}

static void judge_caps(struct judge *j, const struct claim *c, const struct obs *o)
{
    static const char *const sets[4] = {"CapEff", "CapPrm", "CapBnd", "CapAmb"};
    bool same = true;
    for (int i = 1; i < 4; i++)
        same &= o->caps_hex[i] && o->caps_hex[0] && o->caps[i] == o->caps[0];
    if (same)
        observed(j, "all four sets %s", o->caps_hex[0]);
    for (int i = 0; i < 4; i++) {
        if (!same)
            observed(j, "%s%s=%s", i ? " " : "", sets[i], o->caps_hex[i] ? o->caps_hex[i] : "?");
        /* The kernel keeps the ambient set inside the permitted one, so a
         * kernel without ambient capabilities (gVisor) is judged by CapPrm. */
        if (!o->caps_hex[i] && i == 3 && o->caps_hex[1]) {
            observed(j, " (within CapPrm)");
            continue;
        }
        if (!o->caps_hex[i]) {
            fail(j, "%s not observed", sets[i]);
            continue;
        }
        uint64_t extra = o->caps[i] & ~c->cap_mask;
        if (extra) {
            struct stk_buf t = {0};
            cap_list(&t, extra);
            fail(j, "%s holds %s", sets[i], stk_buf_str(&t));
            stk_buf_free(&t);
        }
    }
}

static void judge_nnp(struct judge *j, const struct obs *o)
{
    if (o->nnp < 0) {
        observed(j, "NoNewPrivs ?");
        fail(j, "NoNewPrivs not observed");
    } else {
        observed(j, "NoNewPrivs %lld", (long long)o->nnp);
        if (o->nnp != 1)
            fail(j, "privilege escalation through setuid files is possible");
    }
}

static void judge_seccomp(struct judge *j, const struct obs *o)
{
    if (o->seccomp < 0) {
        observed(j, "Seccomp ?");
        fail(j, "seccomp mode not observed");
    } else {
        observed(j, "Seccomp %lld", (long long)o->seccomp);
        if (o->seccomp != 2)
            fail(j, "no seccomp filter");
    }
}

static void judge_denied(struct judge *j, const struct obs *o)
{
    static const char *const want[] = {"keyctl", "add_key", "unshare"};
    for (size_t i = 0; i < STK_ARRAY_SIZE(want); i++) {
        const struct obs_syscall *s = NULL;
        for (size_t k = 0; k < o->n_syscalls && !s; k++)
            if (stk_streq(o->syscalls[k].name, want[i]))
                s = &o->syscalls[k];
        if (!s) {
            observed(j, "%s%s ?", i ? ", " : "", want[i]);
            fail(j, "%s not observed", want[i]);
            continue;
        }
        observed(j, "%s%s %s", i ? ", " : "", want[i], s->err ? s->err : "succeeded");
        if (!stk_streq(s->err, "EPERM"))
            fail(j, "%s was not denied by the filter (%s)", want[i], s->err ? s->err : "ok");
    }
}

static const struct obs_path *find_path(const struct obs *o, const char *kind, const char *path)
{
    for (size_t i = 0; i < o->n_paths; i++)
        if (stk_streq(o->paths[i].kind, kind) && stk_streq(o->paths[i].path, path))
            return &o->paths[i];
    return NULL;
}

/* Not writable, for a reason that means "refused", not "could not try". */
static bool refused_errno(const char *e, bool absent_ok)
{
    return stk_streq(e, "EROFS") || stk_streq(e, "EACCES") || stk_streq(e, "EPERM") ||
           (absent_ok && stk_streq(e, "ENOENT"));
}

static void judge_not_writable(struct judge *j, const struct obs_path *p, const char *path,
                               bool absent_ok)
{
    if (!p) {
        observed(j, "%s ?", path);
        fail(j, "%s not observed", path);
        return;
    }
    observed(j, "%s %s", path, p->writable ? "writable" : p->err);
    if (p->writable)
        fail(j, "%s is writable", path);
    else if (!refused_errno(p->err, absent_ok))
        fail(j, "%s: the write test failed with %s, which proves nothing", path, p->err);
}

static void judge_root_ro(struct judge *j, const struct obs *o)
{
    static const char *const paths[] = {"/", "/etc", "/usr"};
    for (size_t i = 0; i < STK_ARRAY_SIZE(paths); i++) {
        if (i)
            observed(j, ", ");
        /* "/" always exists; /etc and /usr may be absent in a rootfs dir */
        judge_not_writable(j, find_path(o, "root", paths[i]), paths[i], i > 0);
    }
}

static void judge_writable(struct judge *j, const struct claim *c, const struct obs *o)
{
    const struct obs_path *p = find_path(o, "writable", c->path);
    if (!p) {
        observed(j, "?");
        fail(j, "not observed");
        return;
    }
    observed(j, "%s", p->writable ? "writable" : p->err);
    if (!p->writable)
        fail(j, "the write test failed with %s", p->err);
}

static void judge_storage(struct judge *j, const struct claim *c, const struct obs *o)
{
    const struct obs_path *p = find_path(o, "writable", c->path);
    if (!p || p->fs_bytes < 0) {
        observed(j, "?");
        fail(j, "the size of %s's filesystem was not observed", c->path);
        return;
    }
    observed(j, "a filesystem of %lld bytes", (long long)p->fs_bytes);
    if (p->fs_bytes > c->limit)
        fail(j, "%s's filesystem holds %lld bytes, more than the limit", c->path,
             (long long)p->fs_bytes);
}

static void judge_readonly(struct judge *j, const struct claim *c, const struct obs *o)
{
    judge_not_writable(j, find_path(o, "readonly", c->path), c->path, true);
}

/* Absent, or hidden behind a directory the sandbox cannot search. */
static bool absent_errno(const char *e)
{
    return stk_streq(e, "ENOENT") || stk_streq(e, "ENOTDIR") || stk_streq(e, "EACCES");
}

static void judge_token(struct judge *j, const struct obs *o)
{
    static const char token[] = "/var/run/secrets/kubernetes.io/serviceaccount/token";
    bool seen = false;
    size_t present = 0;
    for (size_t i = 0; i < o->n_secrets; i++) {
        const struct obs_secret *s = &o->secrets[i];
        seen |= stk_streq(s->path, token);
        if (s->present || !absent_errno(s->err)) {
            observed(j, "%s%s %s", present++ ? ", " : "", s->path, s->present ? "present" : s->err);
            fail(j, "%s %s", s->path, s->present ? "is present" : "could not be checked");
        }
    }
    if (!present)
        observed(j, "absent (%zu paths)", o->n_secrets);
    if (!seen)
        fail(j, "%s not observed", token);
}

static void judge_sockets(struct judge *j, const struct obs *o)
{
    size_t bad_n = 0, seen = 0;
    for (size_t i = 0; i < o->n_sockets; i++) {
        const struct obs_socket *s = &o->sockets[i];
        seen += stk_streq(s->path, "/run/docker.sock") || stk_streq(s->path, "/run/stockade");
        /* A socket nobody answers on is harmless; anything else present
         * (a directory of stockade's state, a live socket) is a leak. */
        bool harmless =
            s->present ? stk_streq(s->type, "socket") && !s->reachable : absent_errno(s->err);
        if (harmless)
            continue;
        observed(j, "%s%s %s", bad_n++ ? ", " : "", s->path,
                 s->reachable ? "reachable"
                 : s->present ? s->type
                              : s->err);
        if (s->present)
            fail(j, "%s is %s", s->path, s->reachable ? "reachable" : "visible");
        else
            fail(j, "%s could not be checked (%s)", s->path, s->err);
    }
    if (!bad_n)
        observed(j, "none reachable (%zu checked)", o->n_sockets);
    if (seen < 2)
        fail(j, "the runtime socket paths were not observed");
}

/* A cgroup limit file as the kernel wrote it: "max" or a byte/count. */
static bool limit_value(const struct obs_limit *l, int64_t *ret)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(l->value, &end, 10);
    if (end == l->value || *end || errno || v < 0)
        return false;
    *ret = v;
    return true;
}

static void judge_limit(struct judge *j, const struct claim *c, const struct obs_limit *l,
                        int64_t slack)
{
    int64_t v;
    if (!l->value) {
        observed(j, "? (%s)", l->err);
        if (c->unobservable)
            j->skip = c->unobservable;
        else
            fail(j, "limit not observed");
        return;
    }
    observed(j, "%s (%s)", l->value, l->path ? l->path : "?");
    if (stk_streq(l->value, "max"))
        fail(j, "no limit");
    else if (!limit_value(l, &v))
        fail(j, "unreadable limit %s", l->value);
    else if (v > c->limit)
        fail(j, "limit %lld is larger than %lld", (long long)v, (long long)c->limit);
    else if (v < c->limit - slack)
        fail(j, "limit %lld is not the claimed %lld", (long long)v, (long long)c->limit);
}

static void judge_reach(struct judge *j, const struct claim *c, const struct obs *o)
{
    const struct obs_connect *x = NULL;
    for (size_t i = 0; i < o->n_connect && !x; i++)
        if (stk_streq(o->connect[i].target, c->target))
            x = &o->connect[i];
    if (!x) {
        observed(j, "?");
        fail(j, "not observed");
        return;
    }
    observed(j, "%s%s%s%s", x->result, x->err ? " (" : "", x->err ? x->err : "", x->err ? ")" : "");
    bool got_there = stk_streq(x->result, "connected") || stk_streq(x->result, "refused");
    bool blocked = stk_streq(x->result, "timeout") || stk_streq(x->result, "unreachable");
    if (!got_there && !blocked)
        fail(j, "the connect test failed, which proves nothing");
    else if (c->allow && blocked)
        fail(j, "an allowed destination is not reachable");
    else if (!c->allow && got_there)
        fail(j, c->kube ? "a denied destination answered: the cluster's CNI does not enforce "
                          "the sandbox's NetworkPolicies"
                        : "a denied destination answered");
    else if (!c->allow && c->kube)
        /* no answer proves no policy: a missing route looks the same */
        j->skip = "not provable: NetworkPolicy enforcement is up to the cluster's CNI, and a "
                  "destination without a route looks the same from inside";
}

/* "QUOTA PERIOD" (cgroup v2's cpu.max, or v1's joined by the probe) against
 * the kubelet's quota for limits.cpu: milli * period / 1000, at least
 * 1000 us. */
static void judge_cpu(struct judge *j, const struct claim *c, const struct obs_limit *l)
{
    if (!l->value) {
        observed(j, "? (%s)", l->err);
        fail(j, "cpu quota not observed");
        return;
    }
    observed(j, "%s (%s)", l->value, l->path ? l->path : "?");
    long long quota = 0, period = 0;
    char q[32];
    if (sscanf(l->value, "%31s %lld", q, &period) != 2 || period <= 0) {
        fail(j, "unreadable quota %s", l->value);
        return;
    }
    if (!strcmp(q, "max")) {
        fail(j, "no cpu quota");
        return;
    }
    char *end = NULL;
    errno = 0;
    quota = strtoll(q, &end, 10);
    long long want = c->limit * period / 1000;
    if (want < 1000)
        want = 1000;
    if (*end || errno || quota <= 0)
        fail(j, "unreadable quota %s", l->value);
    else if (quota > want)
        fail(j, "quota %lld us per %lld us is more than %lldm", quota, period, (long long)c->limit);
    else if (quota < want)
        fail(j, "quota %lld us per %lld us is not the claimed %lldm", quota, period,
             (long long)c->limit);
}

static void judge_claim(struct judge *j, const struct claim *c, const struct obs *o)
{
    switch (c->kind) {
    case CLAIM_UID:
        judge_uid(j, c, o);
        break;
    case CLAIM_IDMAP:
        judge_idmap(j, c, o);
        break;
    case CLAIM_CAPS:
        judge_caps(j, c, o);
        break;
    case CLAIM_NNP:
        judge_nnp(j, o);
        break;
    case CLAIM_SECCOMP:
        judge_seccomp(j, o);
        break;
    case CLAIM_DENIED:
        judge_denied(j, o);
        break;
    case CLAIM_ROOT_RO:
        judge_root_ro(j, o);
        break;
    case CLAIM_WRITABLE:
        judge_writable(j, c, o);
        break;
    case CLAIM_READONLY:
        judge_readonly(j, c, o);
        break;
    case CLAIM_TOKEN:
        judge_token(j, o);
        break;
    case CLAIM_SOCKETS:
        judge_sockets(j, o);
        break;
    case CLAIM_MEMORY:
        /* the kernel rounds a memory limit down to its page size */
        judge_limit(j, c, &o->memory, 65535);
        break;
    case CLAIM_PIDS:
        judge_limit(j, c, &o->pids, 0);
        break;
    case CLAIM_CPU:
        judge_cpu(j, c, &o->cpu);
        break;
    case CLAIM_STORAGE:
        judge_storage(j, c, o);
        break;
    case CLAIM_REACH:
        judge_reach(j, c, o);
        break;
    }
}

int stk_verify_judge(const struct stk_verify_plan *p, const char *probe_json, size_t n,
                     struct stk_verify_report **ret, struct stk_error **err)
{
    if (n > STK_VERIFY_MAX_REPORT)
        return stk_error_make(err, E2BIG, "probe report: %zu bytes, limit %d", n,
                              STK_VERIFY_MAX_REPORT);
    json_error_t je;
    json_t *root = json_loadb(probe_json, n, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return stk_error_make(err, EBADMSG, "probe report: line %d: %s", je.line, je.text);
    struct obs *o = stk_xcalloc(1, sizeof(*o));
    int r = obs_read(root, o, err);
    if (r < 0) {
        free(o);
        json_decref(root);
        return r;
    }

    struct stk_verify_report *rep = stk_xcalloc(1, sizeof(*rep));
    rep->arena = stk_arena_new();
    for (size_t i = 0; i < p->n; i++) {
        const struct claim *c = &p->claims[i];
        struct stk_verify_row *row = &rep->rows[rep->n++];
        struct judge j = {.r = rep, .row = row};
        row->id = c->pub.id;
        row->claim = stk_arena_strdup(rep->arena, c->pub.text);
        row->expected = stk_arena_strdup(rep->arena, c->pub.expected);
        row->verdict = STK_VERIFY_PASS;
        judge_claim(&j, c, o);
        row->observed = stk_arena_strdup(rep->arena, stk_buf_str(&j.obs));
        stk_buf_free(&j.obs);
        /* Not enforced here: whatever was seen, it neither passes nor fails. */
        if (c->pub.skip || j.skip) {
            row->verdict = STK_VERIFY_SKIP;
            row->reason = stk_arena_strdup(rep->arena, c->pub.skip ? c->pub.skip : j.skip);
        }
    }
    free(o);
    json_decref(root);
    *ret = rep;
    return 0;
}

int stk_verify_report_add(struct stk_verify_report *r, const struct stk_verify_row *row,
                          struct stk_error **err)
{
    if (r->n_extra >= STK_VERIFY_MAX_EXTRA_ROWS)
        return stk_error_make(err, E2BIG, "more than %d rows beyond the probe's",
                              STK_VERIFY_MAX_EXTRA_ROWS);
    struct stk_verify_row *d = &r->rows[r->n++];
    r->n_extra++;
    d->id = stk_arena_strdup(r->arena, row->id);
    d->claim = stk_arena_strdup(r->arena, row->claim);
    d->expected = stk_arena_strdup(r->arena, row->expected);
    d->observed = stk_arena_strdup(r->arena, row->observed);
    d->verdict = row->verdict;
    d->reason = row->reason ? stk_arena_strdup(r->arena, row->reason) : NULL;
    return 0;
}

int stk_verify_report_add_json(struct stk_verify_report *r, const char *rows_json,
                               struct stk_error **err)
{
    json_t *a = json_loads(rows_json, JSON_REJECT_DUPLICATES, NULL);
    int rc = 0;
    if (!json_is_array(a))
        rc = stk_error_make(err, EBADMSG, "the driver's rows are not a JSON array");
    size_t i;
    json_t *e;
    json_array_foreach(a, i, e)
    {
        if (rc < 0)
            break;
        static const char *const verdicts[] = {"pass", "fail", "skip"};
        const char *v = json_string_value(json_object_get(e, "verdict"));
        int vi = v ? stk_enum_lookup(verdicts, 3, v) : -1;
        struct stk_verify_row row = {
            .id = json_string_value(json_object_get(e, "id")),
            .claim = json_string_value(json_object_get(e, "claim")),
            .expected = json_string_value(json_object_get(e, "expected")),
            .observed = json_string_value(json_object_get(e, "observed")),
            .verdict = (enum stk_verify_verdict)vi,
            .reason = json_string_value(json_object_get(e, "reason")),
        };
        /* a row that says nothing clearly is a failure, never a pass */
        if (!row.id || !row.claim || !row.expected || !row.observed || vi < 0 ||
            (vi != STK_VERIFY_PASS && !row.reason))
            rc = stk_error_make(err, EBADMSG, "the driver's row %zu is incomplete", i);
        else
            rc = stk_verify_report_add(r, &row, err);
    }
    json_decref(a);
    return rc;
}

bool stk_verify_report_ok(const struct stk_verify_report *r)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->rows[i].verdict == STK_VERIFY_FAIL)
            return false;
    return true;
}

size_t stk_verify_report_rows(const struct stk_verify_report *r, const struct stk_verify_row **ret)
{
    *ret = r->rows;
    return r->n;
}

void stk_verify_report_free(struct stk_verify_report *r)
{
    if (!r)
        return;
    stk_arena_free(r->arena);
    free(r);
}

/* ---- output ------------------------------------------------------------------------- */

#define COL_MAX 60 /* wider cells overflow their column rather than widen it */

static size_t col_width(const struct stk_verify_report *r, size_t off, const char *title)
{
    size_t w = strlen(title);
    for (size_t i = 0; i < r->n; i++) {
        size_t l = strlen(*(const char *const *)((const char *)&r->rows[i] + off));
        if (l > w)
            w = l < COL_MAX ? l : COL_MAX;
    }
    return w;
}

void stk_verify_report_print_text(const struct stk_verify_report *r, FILE *f)
{
    int wc = (int)col_width(r, offsetof(struct stk_verify_row, claim), "CLAIM");
    int we = (int)col_width(r, offsetof(struct stk_verify_row, expected), "EXPECTED");
    int wo = (int)col_width(r, offsetof(struct stk_verify_row, observed), "OBSERVED");
    size_t n[_STK_VERIFY_N] = {0};
    if (r->image)
        fprintf(f, "image %s (%s)\n\n", r->image,
                r->image_digest ? r->image_digest : "digest unknown");
    fprintf(f, "%-*s  %-*s  %-*s  %s\n", wc, "CLAIM", we, "EXPECTED", wo, "OBSERVED", "VERDICT");
    for (size_t i = 0; i < r->n; i++) {
        const struct stk_verify_row *row = &r->rows[i];
        n[row->verdict]++;
        fprintf(f, "%-*s  %-*s  %-*s  %s%s%s\n", wc, row->claim, we, row->expected, wo,
                row->observed, stk_verify_verdict_names[row->verdict], row->reason ? ": " : "",
                row->reason ? row->reason : "");
    }
    fprintf(f, "\n%zu pass, %zu FAIL, %zu skip: %s\n", n[STK_VERIFY_PASS], n[STK_VERIFY_FAIL],
            n[STK_VERIFY_SKIP],
            stk_verify_report_ok(r) ? "the sandbox keeps its contract"
                                    : "the sandbox does NOT keep its contract");
}

void stk_verify_report_print_json(const struct stk_verify_report *r, FILE *f)
{
    json_t *root = json_object();
    json_t *rows = json_array();
    for (size_t i = 0; i < r->n; i++) {
        const struct stk_verify_row *row = &r->rows[i];
        json_t *j = json_pack(
            "{s:s,s:s,s:s,s:s,s:s}", "id", row->id, "claim", row->claim, "expected", row->expected,
            "observed", row->observed, "verdict",
            row->verdict == STK_VERIFY_FAIL ? "fail" : stk_verify_verdict_names[row->verdict]);
        json_object_set_new(j, "reason", row->reason ? json_string(row->reason) : json_null());
        json_array_append_new(rows, j);
    }
    json_object_set_new(root, "ok", json_boolean(stk_verify_report_ok(r)));
    if (r->image)
        json_object_set_new(root, "image",
                            json_pack("{s:s,s:s?}", "ref", r->image, "digest", r->image_digest));
    json_object_set_new(root, "rows", rows);
    json_dumpf(root, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', f);
    json_decref(root);
}
