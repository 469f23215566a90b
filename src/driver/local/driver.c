/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The local driver's table: long-lived sandboxes on this host (an OCI
 * runtime, a network namespace with nftables, cgroups, stockade-init as
 * PID 1). The handle is {"runtime": "crun", "initPid": N}: with the
 * sandbox's id it names everything the sandbox holds (its directory, cgroup,
 * network, socket and the runtime's state are all found by id).
 * Supervision is supervise.c.
 */
#include "driver/local/internal.h"
#include "init/proto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* How long stockade-init may take to answer after the runtime started it. */
#define INIT_WAIT_MS 10000

static int local_open(const struct stk_driver_conf *conf, void **ret_ctx, struct stk_error **err)
{
    struct local_ctx *c = stk_xcalloc(1, sizeof(*c));
    int r = stk_path_make(c->state_dir, sizeof(c->state_dir), err, "%s",
                          conf->state_dir ? conf->state_dir : STK_LOCAL_STATE_DIR);
    if (r >= 0)
        r = stk_path_make(c->run_dir, sizeof(c->run_dir), err, "%s",
                          conf->run_dir ? conf->run_dir : STK_LOCAL_RUN_DIR);
    c->p = (struct stk_local_paths){.state_dir = c->state_dir, .run_dir = c->run_dir};
    if (r >= 0)
        r = stk_local_paths_check(&c->p, err);
    if (r < 0) {
        free(c);
        return r;
    }
    *ret_ctx = c;
    return 0;
}

static void local_close(void *ctx)
{
    struct local_ctx *c = ctx;
    if (c)
        local_proxy_stop(c->proxy, NULL, NULL);
    free(ctx);
}

static int local_facts(void *ctx, const struct stk_boundary *b, struct stk_driver_facts *ret,
                       struct stk_error **err)
{
    struct local_ctx *c = ctx;
    struct stk_runtime_status st[_STK_OCI_N];
    *ret = (struct stk_driver_facts){.facts = {.backend = STK_BACKEND_LOCAL}};
    int r = stk_runtimes_detect(&c->p, st, err);
    if (r < 0)
        return r;
    /* explain: the strongest runtime that works (`run` may use runsc) */
    enum stk_oci_runtime rt;
    const char *why = NULL;
    if (stk_runtime_choose(b->runtime, st, &rt, &why) < 0) {
        fmt_into(ret->runtime_note, sizeof(ret->runtime_note), "%s", why ? why : "");
        ret->facts.runtime_note = ret->runtime_note;
    } else {
        ret->facts.runtime = stk_oci_runtime_names[rt];
        ret->facts.runtime_is_gvisor = rt == STK_OCI_RUNSC;
        if (st[rt].version[0] && why)
            fmt_into(ret->runtime_note, sizeof(ret->runtime_note), "%s; %s", st[rt].version, why);
        else
            fmt_into(ret->runtime_note, sizeof(ret->runtime_note), "%s",
                     why ? why : st[rt].version);
        ret->facts.runtime_note = ret->runtime_note[0] ? ret->runtime_note : NULL;
        ret->facts.caveats = stk_runtime_caveats(rt);
    }
    local_image_facts(c->p.state_dir, b, ret);
    if (!ret->facts.runtime)
        return stk_error_make(err, ENOENT, "no runtime: %s", why ? why : "none works");
    ret->runtime = ret->facts.runtime;
    /* a long-lived sandbox gets what `run` gets, gVisor included */
    return 0;
}

/* ---- handles ------------------------------------------------------------------------ */

int local_handle_parse(const struct stk_driver_sandbox *sb, enum stk_oci_runtime *ret_rt,
                       pid_t *ret_init_pid)
{
    json_t *h = sb->handle ? json_loads(sb->handle, 0, NULL) : NULL;
    const char *rt = json_string_value(json_object_get(h, "runtime"));
    if (!rt)
        rt = sb->runtime;
    int i = rt ? stk_enum_lookup(stk_oci_runtime_names, _STK_OCI_N, rt) : -1;
    json_t *pid = json_object_get(h, "initPid");
    *ret_init_pid = json_is_integer(pid) ? (pid_t)json_integer_value(pid) : 0;
    json_decref(h);
    *ret_rt = i >= 0 ? (enum stk_oci_runtime)i : STK_OCI_CRUN;
    return i >= 0 ? 0 : -EINVAL;
}

int local_net_config(const struct local_ctx *c, const struct stk_envconfig *env,
                     struct stk_net_config *ret, struct stk_error **err)
{
    stk_net_config_default(ret);
    ret->run_dir = c->p.run_dir;
    return stk_net_config_apply_env(ret, env, err);
}

int local_init_connect(const struct local_ctx *c, const char *id, int timeout_ms,
                       struct stk_init_conn **ret, struct stk_error **err)
{
    char sock[256];
    int r = stk_local_socket_path(&c->p, id, sock, sizeof(sock), err);
    return r < 0 ? r : stk_init_connect(sock, timeout_ms, ret, err);
}

/* ---- provision, start --------------------------------------------------------------- */

/* Starts the workload in an idle stockade-init; STK_DRV_E_PHASE when one
 * was started already. */
static int start_workload(const struct local_ctx *c, const struct stk_driver_sandbox *sb,
                          int wait_ms, struct stk_error **err)
{
    struct stk_init_conn *conn = NULL;
    struct stk_init_info info;
    int r;
    /* Under gVisor the first connection to a fresh init was seen reset, on
     * a loaded machine, twice in about a hundred creates (not understood:
     * init listened before its socket was moved): a hello is harmless to
     * repeat, so a reset one is, a few times. */
    for (int tries = 0;; tries++) {
        struct stk_error *e = NULL;
        r = local_init_connect(c, sb->id, wait_ms, &conn, &e);
        if (r >= 0)
            r = stk_init_hello(conn, &info, &e);
        if (r != -ECONNRESET || tries == 4) {
            if (err && !*err)
                *err = e;
            else
                stk_error_free(e);
            break;
        }
        stk_error_free(e);
        stk_init_close(conn);
        conn = NULL;
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (r >= 0 && info.state != STK_INIT_IDLE)
        r = stk_error_make(err, STK_DRV_E_PHASE, "sandbox %s: its workload was started already",
                           sb->id);
    if (r >= 0 && !sb->pool_member && !sb->idle) {
        /* a claimed member's own environment still names the pool's
         * template: the sandbox's name is the record's */
        char name_env[128];
        fmt_into(name_env, sizeof(name_env), "STOCKADE_SANDBOX=%s", sb->name ? sb->name : "");
        const char *env[] = {name_env};
        /* under an image, its Entrypoint and Cmd unless the spec says */
        struct local_image li = {0};
        _cleanup_free_ const char **argv = NULL;
        size_t argc = 0;
        if ((r = local_image_open(c->p.state_dir, sb->b, &li, err)) >= 0 &&
            (r = stk_oci_argv(sb->b, li.img ? &li.oci : NULL, &argv, &argc, err)) >= 0) {
            struct stk_init_proc proc = {.argv = argv, .argc = argc, .env = env, .n_env = 1};
            r = stk_init_start(conn, &proc, err);
        }
        local_image_free(&li);
    }
    stk_init_close(conn);
    return r;
}

static int local_provision(void *ctx, const struct stk_driver_sandbox *sb, bool restart,
                           char **ret_handle, struct stk_error **err)
{
    struct local_ctx *c = ctx;
    (void)restart; /* what persists across a stop is in the directory */
    enum stk_oci_runtime rt;
    pid_t unused;
    if (!sb->b || local_handle_parse(sb, &rt, &unused) < 0)
        return stk_error_make(err, EINVAL, "sandbox %s: unknown runtime %s", sb->id,
                              sb->runtime ? sb->runtime : "(none)");
    struct stk_net_config net;
    int r = local_net_config(c, sb->env, &net, err);
    if (r < 0)
        return r;
    struct stk_run_request req = {
        .b = sb->b,
        .runtime = rt,
        .net = &net,
        .max_sandboxes = stk_local_max_sandboxes(sb->env),
        .id = sb->id,
        .lock_fd = sb->lock_fd,
        /* a pool member keeps the pool's name: the hostname is fixed at
         * creation (the UTS namespace), before any claim */
        .hostname = sb->pool_member ? sb->pool : NULL,
    };
    struct stk_local_instance inst;
    if ((r = stk_local_provision(&c->p, &req, &inst, err)) < 0)
        return r;
    local_image_mark(&c->p, sb);
    local_proxy_stop(c->proxy, NULL, NULL);
    c->proxy = inst.proxy;
    stk_fault_point("provisioned");
    json_t *h =
        json_pack("{s:s,s:i}", "runtime", stk_oci_runtime_names[rt], "initPid", (int)inst.init_pid);
    char *handle = json_dumps(h, JSON_COMPACT);
    json_decref(h);
    if ((r = start_workload(c, sb, INIT_WAIT_MS, err)) < 0) {
        free(handle);
        local_proxy_stop(c->proxy, NULL, NULL);
        c->proxy = NULL;
        (void)stk_local_teardown(&c->p, sb->id, rt, &net, false, NULL);
        return r;
    }
    *ret_handle = handle;
    return 0;
}

static int local_start(void *ctx, const struct stk_driver_sandbox *sb, char **ret_handle,
                       struct stk_error **err)
{
    *ret_handle = NULL;
    if (!sb->b)
        return stk_error_make(err, EINVAL, "sandbox %s: no boundary to start", sb->id);
    /* a member a refill provisioned runs at the refill's low priority until
     * claimed (its init, the runtime's processes): the workload does not */
    cg_renice(sb->id, STK_REFILL_NICE);
    return start_workload(ctx, sb, 2000, err);
}

/* ---- exec, stop, observe, teardown, gc ------------------------------------------------ */

/* A connection to the sandbox's init; STK_DRV_E_GONE when it is gone. */
static int local_conn(void *ctx, const struct stk_driver_sandbox *sb, struct stk_init_conn **ret,
                      struct stk_error **err)
{
    struct stk_error *cerr = NULL;
    int r = local_init_connect(ctx, sb->id, 2000, ret, &cerr);
    if (r == -ENOENT || r == -ECONNREFUSED) {
        stk_error_free(cerr);
        return stk_error_make(err, STK_DRV_E_GONE, "sandbox %s: its stockade-init is gone", sb->id);
    }
    if (r < 0) {
        if (err)
            *err = cerr;
        else
            stk_error_free(cerr);
    }
    return r;
}

static int local_exec(void *ctx, const struct stk_driver_sandbox *sb,
                      const struct stk_init_proc *proc, int in_fd, int out_fd, int err_fd,
                      int *ret_code, struct stk_error **err)
{
    struct stk_init_conn *conn = NULL;
    int r = local_conn(ctx, sb, &conn, err);
    if (r < 0)
        return r;
    {
        /* a claimed pool member's own environment still names the pool's
         * template: the sandbox's name is the record's */
        const char *env[STK_INITP_MAX_ENV];
        char name_env[128];
        struct stk_init_proc p = *proc;
        size_t n = proc->n_env < STK_INITP_MAX_ENV - 1 ? proc->n_env : STK_INITP_MAX_ENV - 1;
        fmt_into(name_env, sizeof(name_env), "STOCKADE_SANDBOX=%s", sb->name ? sb->name : "");
        env[0] = name_env;
        for (size_t i = 0; i < n; i++)
            env[i + 1] = proc->env[i];
        p.env = env;
        p.n_env = 1 + n;
        r = stk_init_exec(conn, &p, in_fd, out_fd, err_fd, ret_code, err);
    }
    stk_init_close(conn);
    return r;
}

static int local_file_read(void *ctx, const struct stk_driver_sandbox *sb, const char *path,
                           stk_init_data_fn cb, void *ud, uint64_t *ret_size,
                           struct stk_error **err)
{
    _cleanup_init_conn_ struct stk_init_conn *conn = NULL;
    int r = local_conn(ctx, sb, &conn, err);
    if (r < 0)
        return r;
    r = stk_init_file_read(conn, path, cb, ud, ret_size, NULL, err);
    return r == -ENOENT ? -STK_DRV_E_NOFILE : r; /* init's: the path */
}

static int local_file_write(void *ctx, const struct stk_driver_sandbox *sb, const char *path,
                            unsigned mode, uint64_t size, int in_fd, struct stk_error **err)
{
    _cleanup_init_conn_ struct stk_init_conn *conn = NULL;
    int r = local_conn(ctx, sb, &conn, err);
    if (r < 0)
        return r;
    r = stk_init_file_write(conn, path, mode, size, in_fd, err);
    return r == -ENOENT ? -STK_DRV_E_NOFILE : r; /* init's: the path */
}

static int local_stop(void *ctx, const struct stk_driver_sandbox *sb, int grace_ms,
                      struct stk_error **err)
{
    (void)err;
    struct stk_init_conn *conn = NULL;
    /* no answer: init is gone already, and supervise reports the end */
    if (local_init_connect(ctx, sb->id, 500, &conn, NULL) >= 0) {
        (void)stk_init_shutdown(conn, grace_ms, NULL);
        stk_init_close(conn);
    }
    return 0;
}

/* From the host to the sandbox's address on the bridge: the ingress chain
 * (src/render/nft.c) admits the declared ports only. */
#define LOCAL_CONNECT_TIMEOUT_MS 5000

static int local_connect(void *ctx, const struct stk_driver_sandbox *sb, uint16_t port, int *ret_fd,
                         struct stk_error **err)
{
    struct local_ctx *c = ctx;
    struct stk_net_config cfg;
    if (local_net_config(c, sb->env, &cfg, NULL) < 0)
        (void)local_net_config(c, NULL, &cfg, NULL);
    struct stk_net *n = NULL;
    int r = stk_net_open(&cfg, sb->id, &n, err);
    if (r < 0)
        return r == -ENOENT ? stk_error_make(err, STK_DRV_E_GONE,
                                             "sandbox %s has no network (any more)", sb->id)
                            : r;
    struct stk_cidr a4, a6;
    stk_net_addresses(n, &a4, &a6);
    stk_net_forget_neighbours(n);
    stk_net_free(n);
    struct sockaddr_storage ss = {0};
    socklen_t len;
    if (a4.family == STK_FAMILY_V4) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        in->sin_port = htons(port);
        memcpy(&in->sin_addr, a4.addr, 4);
        len = sizeof(*in);
    } else if (a6.family == STK_FAMILY_V6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        memcpy(&in6->sin6_addr, a6.addr, 16);
        len = sizeof(*in6);
    } else {
        return stk_error_make(err, STK_DRV_E_GONE, "sandbox %s has no address", sb->id);
    }
    _cleanup_close_ int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return stk_error_errno(err, errno, "socket");
    if (connect(fd, (struct sockaddr *)&ss, len) < 0 && errno != EINPROGRESS)
        return stk_error_errno(err, errno, "connecting to port %u of sandbox %s", port, sb->id);
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int e = 0;
    socklen_t el = sizeof(e);
    if (poll(&p, 1, LOCAL_CONNECT_TIMEOUT_MS) <= 0)
        return stk_error_make(err, ETIMEDOUT, "port %u of sandbox %s: no answer within %d ms", port,
                              sb->id, LOCAL_CONNECT_TIMEOUT_MS);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0 || e)
        return stk_error_errno(err, e ? e : errno, "port %u of sandbox %s", port, sb->id);
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
        return stk_error_errno(err, errno, "fcntl");
    *ret_fd = TAKE_FD(fd);
    return 0;
}

static int local_observe(void *ctx, const struct stk_driver_sandbox *sb,
                         struct stk_driver_status *ret, struct stk_error **err)
{
    (void)ctx;
    (void)err;
    *ret = (struct stk_driver_status){.state = STK_DRV_LOST, .exit_code = -1};
    enum stk_oci_runtime rt;
    pid_t pid;
    (void)local_handle_parse(sb, &rt, &pid);
    int fd = local_init_pidfd(pid, sb->id, rt);
    if (fd >= 0) {
        ret->state = STK_DRV_RUNNING;
        close(fd);
    } else {
        fmt_into(ret->message, sizeof(ret->message), "stockade-init of sandbox %s is gone", sb->id);
    }
    return 0;
}

static int local_teardown(void *ctx, const struct stk_driver_sandbox *sb, bool purge,
                          struct stk_error **err)
{
    struct local_ctx *c = ctx;
    enum stk_oci_runtime rt;
    pid_t pid;
    (void)local_handle_parse(sb, &rt, &pid);
    struct stk_net_config net;
    if (local_net_config(c, sb->env, &net, NULL) < 0)
        (void)local_net_config(c, NULL, &net, NULL);
    /* nothing of a local sandbox outlives a stop but its directory (logs,
     * lock and a persistent home's image; its volumes are unmounted); rm
     * (purge) removes the home's image too, and the session the directory
     * once "deleted" is recorded */
    int r = stk_local_teardown(&c->p, sb->id, rt, &net, false, err);
    char dir[700];
    if (r >= 0 && purge &&
        (r = stk_path_make(dir, sizeof(dir), err, "%s/sandboxes/%s", c->p.state_dir, sb->id)) >=
            0 &&
        stk_local_volumes_release(dir, true) < 0)
        r = stk_error_make(err, EBUSY, "sandbox %s: a volume stays mounted under %s", sb->id, dir);
    /* its host id range, kept across stops for its home, goes with rm */
    if (r >= 0 && purge)
        (void)idmap_release(dir);
    return r < 0 ? r : 0;
}

static int local_gc(void *ctx, const char *const *keep, size_t n_keep, size_t *ret_removed,
                    struct stk_error **err)
{
    struct local_ctx *c = ctx;
    struct stk_gc_stats st = {0};
    int r = stk_local_gc(&c->p, keep, n_keep, &st, err);
    if (r >= 0 && ret_removed)
        *ret_removed = st.sandboxes + st.cgroups + st.runtime_states + st.network;
    return r;
}

const struct stk_driver_ops stk_local_driver_ops = {
    .backend = STK_BACKEND_LOCAL,
    .marks = NULL,
    .models_only = false,
    .open = local_open,
    .close = local_close,
    .facts = local_facts,
    .provision = local_provision,
    .start = local_start,
    .exec = local_exec,
    .file_read = local_file_read,
    .file_write = local_file_write,
    .connect = local_connect,
    .stop = local_stop,
    .supervise = local_supervise,
    .observe = local_observe,
    .teardown = local_teardown,
    .logs = NULL, /* the session's log files, written from the sink */
    .gc = local_gc,
};
