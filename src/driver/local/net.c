/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The local sandbox network. Links, addresses and routes are made
 * in-process through rtnetlink (rtnl.c, libmnl): a cold run pays a few
 * round trips to the kernel instead of forks and execs of ip(8). The veth
 * pair is made with its peer already in the sandbox's namespace (no move),
 * and what must happen inside that namespace (its sysctls, a netlink socket
 * bound there) is done by this thread alone, which enters the namespace
 * and leaves it at once (in_netns()). A sandbox's rules are one nf_tables
 * batch built in-process (nftnl.c), so its chains, set memberships and
 * dispatch appear and vanish together, and neither create nor rm fetches
 * the ruleset (libnftables would, whatever its size). The shared objects
 * (tables, maps, base chains) go through libnftables, only when they are
 * missing or this configuration's differ from those applied (base_ensure()).
 *
 * Concurrency: every up/down/gc holds an flock on STK_NET_HOST_DIR/lock, so
 * the shared objects (bridge, tables, leases) are never raced. The bridge,
 * the nft tables, addresses and NFLOG groups belong to the host, not to a
 * run directory, so the lock and the address leases do too: two stockade
 * instances with different run directories never hand out the same
 * address, and each lease names the run directory that owns it, so one
 * instance's gc never takes another's sandboxes for dead.
 */
#include "driver/local/net.h"
#include "driver/local/nftnl.h"
#include "driver/local/rtnl.h"
#include "driver/local/steps.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <libmnl/libmnl.h>
#include <limits.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

struct stk_net {
    struct stk_net_config cfg; /* borrowed strings from the caller's config */
    char id[STK_NFT_MAX_ID + 1];
    char namespace[64];
    char veth[16];
    char netns[4096];
    unsigned index;
    struct stk_nft_facts facts;
};

void stk_net_config_default(struct stk_net_config *c)
{
    *c = (struct stk_net_config){
        .run_dir = STK_NET_RUN_DIR, .bridge = STK_NET_BRIDGE, .log_group_base = STK_NET_LOG_GROUP};
    (void)stk_cidr_parse(STK_NET_POOL4, &c->pool4, NULL);
    (void)stk_cidr_parse(STK_NET_POOL6, &c->pool6, NULL);
}

int stk_net_config_apply_env(struct stk_net_config *c, const struct stk_envconfig *env,
                             struct stk_error **err)
{
    if (!env || !env->data.local.meta.set)
        return 0;
    const struct stk_env_local *l = &env->data.local;
    if (l->address_pool.meta.set) {
        c->pool4 = (struct stk_cidr){0};
        c->pool6 = (struct stk_cidr){0};
        for (uint32_t i = 0; i < l->address_pool.n; i++) {
            const struct stk_cidr *p = &l->address_pool.items[i].v;
            struct stk_cidr *slot = p->family == STK_FAMILY_V4 ? &c->pool4 : &c->pool6;
            if (slot->family)
                return stk_error_make(err, EINVAL,
                                      "data.local.addressPool: one network per family");
            *slot = *p;
        }
    }
    if (l->resolver.meta.set) {
        c->resolver = l->resolver.v;
        unsigned full = c->resolver.family == STK_FAMILY_V4 ? 32 : 128;
        if (c->resolver.prefix != full)
            return stk_error_make(err, EINVAL, "data.local.resolver must be one address");
    }
    if (l->nat.meta.set)
        c->nat = l->nat.v;
    if (l->routed.meta.set)
        c->routed = l->routed.v;
    return 0;
}

/* ---- sysctls and namespaces ------------------------------------------------ */

static int write_file(const char *path, const char *value)
{
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t n = strlen(value);
    return write(fd, value, n) == (ssize_t)n ? 0 : -errno;
}

/* Writes sysctls (path, value pairs up to a NULL path) of the calling
 * thread's network namespace: /proc/sys/net shows the namespace of the
 * thread that opens it. A sysctl this kernel lacks (force_forwarding before
 * 6.17) is skipped. */
static int sysctls_write(const char *const *kv, struct stk_error **err)
{
    for (size_t i = 0; kv[i]; i += 2) {
        int r = write_file(kv[i], kv[i + 1]);
        if (r < 0 && r != -ENOENT)
            return stk_error_errno(err, -r, "setting %s=%s", kv[i], kv[i + 1]);
    }
    return 0;
}

/* Runs fn(arg) with this thread in the network namespace netns_fd, and
 * moves it back before returning. Only the calling thread moves (network
 * namespaces are per thread); if it cannot move back, nothing else may run
 * in the sandbox's namespace by mistake: the process aborts. */
static int in_netns(int netns_fd, int (*fn)(void *arg, struct stk_error **err), void *arg,
                    struct stk_error **err)
{
    _cleanup_close_ int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (self < 0)
        return stk_error_errno(err, errno, "open /proc/thread-self/ns/net");
    if (setns(netns_fd, CLONE_NEWNET) < 0)
        return stk_error_errno(err, errno, "entering the sandbox's network namespace");
    int r = fn(arg, err);
    if (setns(self, CLONE_NEWNET) < 0)
        abort();
    return r;
}

/* ---- nft ------------------------------------------------------------------- */

static unsigned long nft_library_calls;

unsigned long stk_net_nft_library_calls(void)
{
    return nft_library_calls;
}

/* Through libnftables (the module "nft"), which fetches the ruleset first:
 * for the shared objects and gc only. */
static int nft_apply(const char *text, struct stk_error **err)
{
    nft_library_calls++;
    __typeof__(&stk_nftlib_run) run = STK_MODULE_SYM("nft", stk_nftlib_run, err);
    if (!run)
        return -ENOENT;
    struct stk_error *e = NULL;
    if (run(text, false, NULL, &e) < 0) {
        int r = stk_error_make(err, EIO, "nft transaction failed: %s", e->msg);
        stk_error_free(e);
        return r;
    }
    return 0;
}

/* Lists stockade's table as JSON (NULL if there is none). */
static char *nft_list_json(const char *what)
{
    nft_library_calls++;
    struct stk_error *e = NULL;
    __typeof__(&stk_nftlib_run) run = STK_MODULE_SYM("nft", stk_nftlib_run, &e);
    char *out = NULL;
    if (run)
        (void)run(what, true, &out, &e);
    stk_error_free(e);
    return out;
}

/* ---- names, paths, leases ------------------------------------------------ */

/* "stk-" + at most 11 characters: the id itself when it fits, else its
 * first 3 characters and 40 bits of a hash of the whole id in base 32
 * (ids of one name share their start: with 20 bits, two of 1,000 such
 * sandboxes met at even odds; with 40, about once in two million). */
static void veth_name(const char *id, char out[16])
{
    size_t n = strlen(id);
    if (n <= 11) {
        snprintf(out, 16, "stk-%s", id);
        return;
    }
    uint64_t h = 14695981039346656037ull; /* FNV-1a, 64 bits */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)id[i]) * 1099511628211ull;
    static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";
    char tail[9];
    for (size_t i = 0; i < 8; i++)
        tail[i] = b32[(h >> (5 * i)) & 31];
    tail[8] = '\0';
    snprintf(out, 16, "stk-%.3s%s", id, tail);
}

/* The lock and the leases belong to the bridge, and a bridge to a network
 * namespace: STK_NET_HOST_DIR/<netns inode>-<bridge>/, whatever the run
 * directory (see the top of this file). */
static char *path_of(const struct stk_net_config *c, const char *a, const char *b)
{
    bool host_wide = !strcmp(a, "net/lock") || !strcmp(a, "net/leases") || !strcmp(a, "net/cookie");
    if (!host_wide)
        return b ? stk_xasprintf("%s/%s/%s", c->run_dir, a, b)
                 : stk_xasprintf("%s/%s", c->run_dir, a);
    /* this thread's: the one whose sockets (netns_cookie()) and links the
     * directory's contents describe */
    struct stat st = {0};
    (void)stat("/proc/thread-self/ns/net", &st);
    a += strlen("net/");
    return b ? stk_xasprintf("%s/%llu-%s/%s/%s", STK_NET_HOST_DIR, (unsigned long long)st.st_ino,
                             c->bridge, a, b)
             : stk_xasprintf("%s/%llu-%s/%s", STK_NET_HOST_DIR, (unsigned long long)st.st_ino,
                             c->bridge, a);
}

static int mkdir_p(const char *path)
{
    _cleanup_free_ char *p = stk_xstrdup(path);
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = '\0';
            if (mkdir(p, 0700) < 0 && errno != EEXIST)
                return -errno;
            *s = '/';
        }
    return mkdir(p, 0700) < 0 && errno != EEXIST ? -errno : 0;
}

static int dirs_make(const struct stk_net_config *c, struct stk_error **err)
{
    static const char *const sub[] = {"netns", "net/leases", "net/sandboxes"};
    for (size_t i = 0; i < STK_ARRAY_SIZE(sub); i++) {
        _cleanup_free_ char *p = path_of(c, sub[i], NULL);
        int r = mkdir_p(p);
        if (r < 0)
            return stk_error_errno(err, -r, "mkdir %s", p);
    }
    return 0;
}

static bool lease_read(const char *path, char id[STK_NFT_MAX_ID + 1], char dir[PATH_MAX]);

/* The network namespace this thread is in, by its cookie: unlike its
 * inode, never handed out again while the host runs (Linux 5.14). */
static int netns_cookie(uint64_t *ret)
{
    _cleanup_close_ int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    socklen_t len = sizeof(*ret);
    if (s < 0 || getsockopt(s, SOL_SOCKET, SO_NETNS_COOKIE, ret, &len) < 0)
        return -errno;
    return len == sizeof(*ret) ? 0 : -EINVAL;
}

/* The name of the veth of the sandbox id of run directory dir: its network
 * state's, or (none, or a name from before the state recorded it) by
 * today's rule. */
static void lease_veth(const char *dir, const char *id, char out[16])
{
    veth_name(id, out);
    _cleanup_free_ char *p = stk_xasprintf("%s/net/sandboxes/%s", dir, id);
    _cleanup_fclose_ FILE *f = fopen(p, "re");
    char line[128], name[16];
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "veth %15s", name) == 1 && stk_startswith(name, "stk-")) {
            memcpy(out, name, sizeof(name));
            return;
        }
}

/* Whether a link of this name is here: only the kernel's "no such device"
 * counts as absent (not a failure to ask). */
static bool link_surely_absent(const char *name)
{
    return if_nametoindex(name) == 0 && (errno == ENODEV || errno == ENXIO);
}

/* The host directory is named by the namespace's inode, which the kernel
 * gives to a new namespace once the old one is gone: a directory left by
 * a namespace that went with sandboxes in it (their process killed, a
 * test host removed) would hand its leases to the new one, whose network
 * then never counts as unused and whose pool shrinks. So the directory
 * names its namespace by cookie, checked under the lock. When it names
 * none (made just now, or by a stockade before this check) or another,
 * every lease whose sandbox's veth is not in this namespace goes, which
 * under the lock means it never will be (up makes the veth, and down
 * removes it, before they let the lock go); then the cookie is written.
 * A gone namespace's leases have no veth here; a live sandbox's always
 * has one, so a cookie that could not be written or reads wrong costs a
 * sweep, never a live lease. Without cookies (kernel before 5.14), or
 * without the namespace's inode, nothing is checked, as before. */
static void host_dir_claim(const struct stk_net_config *c)
{
    uint64_t cookie;
    struct stat ns;
    if (netns_cookie(&cookie) < 0 || stat("/proc/thread-self/ns/net", &ns) < 0 || !ns.st_ino)
        return;
    char want[32], have[32] = "";
    snprintf(want, sizeof(want), "%" PRIu64 "\n", cookie);
    _cleanup_free_ char *p = path_of(c, "net/cookie", NULL);
    _cleanup_close_ int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    ssize_t k = fd >= 0 ? read(fd, have, sizeof(have) - 1) : -1;
    if (k > 0 && (size_t)k == strlen(want) && !memcmp(have, want, (size_t)k))
        return;
    _cleanup_free_ char *ldir = path_of(c, "net/leases", NULL);
    DIR *d = opendir(ldir);
    if (!d && errno != ENOENT)
        return; /* not swept: not claimed */
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        _cleanup_free_ char *lease = path_of(c, "net/leases", de->d_name);
        char id[STK_NFT_MAX_ID + 1], dir[PATH_MAX], veth[16];
        if (!lease_read(lease, id, dir))
            continue; /* unreadable: not known to be stale */
        lease_veth(dir, id, veth);
        if (link_surely_absent(veth))
            (void)unlink(lease);
    }
    if (d)
        closedir(d);
    _cleanup_free_ char *tmp = stk_xasprintf("%s.new", p);
    _cleanup_close_ int out =
        open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (out >= 0 && stk_write_all(out, want, strlen(want)) == 0 && rename(tmp, p) == 0)
        return;
    (void)unlink(tmp);
    (void)unlink(p); /* a wrong cookie costs a sweep next time, nothing more */
}

/* The lock is a file in the network's host directory, which goes with the
 * network when its last sandbox does (host_dir_remove()). A lock taken on
 * a file that was unlinked meanwhile protects nothing: after the flock the
 * path must still name the same file, or it is taken again. */
static int lock_take(const struct stk_net_config *c, int wait_ms, struct stk_error **err)
{
    _cleanup_free_ char *p = path_of(c, "net/lock", NULL);
    for (int tries = 0;; tries++) {
        int r = dirs_make(c, err);
        if (r < 0)
            return r;
        int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) {
            /* the directory went between its mkdir and the open */
            if (errno == ENOENT && tries < 100)
                continue;
            return stk_error_errno(err, errno, "open %s", p);
        }
        int holder = 0;
        if ((r = stk_flock_wait(fd, LOCK_EX, wait_ms, &holder)) < 0) {
            close(fd);
            if (r == -ETIMEDOUT)
                return stk_error_make(err, ETIMEDOUT,
                                      "waited %d s for the network's lock %s, held by process %d",
                                      wait_ms / 1000, p, holder);
            return stk_error_errno(err, -r, "flock %s", p);
        }
        struct stat held, now;
        if (fstat(fd, &held) == 0 && stat(p, &now) == 0 && held.st_dev == now.st_dev &&
            held.st_ino == now.st_ino) {
            /* the leases directory may have gone before the lock file did */
            if ((r = dirs_make(c, err)) < 0) {
                close(fd);
                return r;
            }
            host_dir_claim(c);
            return fd;
        }
        close(fd);
        if (tries >= 100)
            return stk_error_make(err, EAGAIN, "%s: replaced on every attempt", p);
    }
}

/* With the network gone, its host directory goes too (under the lock): the
 * leases directory (empty), then the lock file, then the directory, which
 * stays if another process has made a new lock file there meanwhile. */
static void host_dir_remove(const struct stk_net_config *c)
{
    _cleanup_free_ char *leases = path_of(c, "net/leases", NULL);
    _cleanup_free_ char *lock = path_of(c, "net/lock", NULL);
    _cleanup_free_ char *cookie = path_of(c, "net/cookie", NULL);
    if (rmdir(leases) < 0 && errno != ENOENT)
        return; /* a lease left: the network is still someone's */
    _cleanup_free_ char *cookie_new = stk_xasprintf("%s.new", cookie);
    (void)unlink(cookie_new);
    (void)unlink(cookie);
    (void)unlink(lock);
    char *slash = strrchr(lock, '/');
    if (slash) {
        *slash = '\0';
        (void)rmdir(lock);
    }
}

/* Address number index inside pool (network + index). */
static struct stk_cidr pool_addr(const struct stk_cidr *pool, unsigned index)
{
    struct stk_cidr a = *pool;
    size_t len = a.family == STK_FAMILY_V4 ? 4 : 16;
    unsigned carry = index;
    for (size_t i = len; i-- > 0 && carry;) {
        carry += a.addr[i];
        a.addr[i] = (uint8_t)carry;
        carry >>= 8;
    }
    a.prefix = (uint8_t)(len * 8);
    return a;
}

static unsigned pool_size(const struct stk_net_config *c)
{
    unsigned n = STK_NET_MAX_SANDBOXES + 2;
    if (c->pool4.family == STK_FAMILY_V4 && 32 - c->pool4.prefix < 13)
        n = (1u << (32 - c->pool4.prefix)) - 1; /* the last is broadcast */
    if (c->pool6.family == STK_FAMILY_V6 && 128 - c->pool6.prefix < 13 &&
        (1u << (128 - c->pool6.prefix)) < n)
        n = 1u << (128 - c->pool6.prefix);
    return n;
}

/* Leases are files named after the index, created with O_EXCL: the lock
 * serialises stockade processes, O_EXCL keeps the pool consistent anyway. */
static int lease_take(const struct stk_net_config *c, const char *id, unsigned *ret,
                      struct stk_error **err)
{
    unsigned n = pool_size(c);
    for (unsigned i = 2; i < n; i++) { /* .0 is the network, .1 the bridge */
        char name[16];
        snprintf(name, sizeof(name), "%u", i);
        _cleanup_free_ char *p = path_of(c, "net/leases", name);
        _cleanup_close_ int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 && errno == EEXIST)
            continue;
        if (fd < 0)
            return stk_error_errno(err, errno, "lease %s", p);
        _cleanup_free_ char *owner = stk_xasprintf("%s\n%s\n", id, c->run_dir);
        int w = stk_write_all(fd, owner, strlen(owner));
        if (w < 0) {
            unlink(p);
            return stk_error_errno(err, -w, "lease %s", p);
        }
        *ret = i;
        return 0;
    }
    return stk_error_make(err, ENOSPC, "address pool exhausted (%u sandboxes)", n - 2);
}

/* A lease file: "<id>\n<run dir>\n" (an id alone: written before leases
 * were host-wide, owned by the default run directory). */
static bool lease_read(const char *path, char id[STK_NFT_MAX_ID + 1], char dir[PATH_MAX])
{
    char buf[STK_NFT_MAX_ID + PATH_MAX + 4];
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t k = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
    if (k <= 0)
        return false;
    buf[k] = '\0';
    char *nl = strchr(buf, '\n');
    if (nl)
        *nl = '\0';
    size_t l = strnlen(buf, STK_NFT_MAX_ID);
    memcpy(id, buf, l);
    id[l] = '\0';
    const char *d = nl ? nl + 1 : "";
    char *nl2 = strchr(d, '\n');
    if (nl2)
        *nl2 = '\0';
    if (!*d)
        d = STK_NET_RUN_DIR;
    l = strnlen(d, PATH_MAX - 1);
    memcpy(dir, d, l);
    dir[l] = '\0';
    return true;
}

/* The ids leased by other run directories. */
struct others {
    char (*ids)[STK_NFT_MAX_ID + 1];
    size_t n;
};

static void others_collect(const struct stk_net_config *c, struct others *o)
{
    _cleanup_free_ char *ldir = path_of(c, "net/leases", NULL);
    DIR *d = opendir(ldir);
    struct dirent *de;
    size_t cap = 0;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        _cleanup_free_ char *p = path_of(c, "net/leases", de->d_name);
        char id[STK_NFT_MAX_ID + 1], dir[PATH_MAX];
        if (!lease_read(p, id, dir) || !strcmp(dir, c->run_dir))
            continue;
        if (o->n == cap) {
            cap = cap ? 2 * cap : 16;
            o->ids = stk_xrealloc(o->ids, cap * sizeof(*o->ids));
        }
        memcpy(o->ids[o->n++], id, sizeof(id));
    }
    if (d)
        closedir(d);
}

/* Who holds the lease of index: 1 this run directory's sandbox id, 0
 * nobody, -1 another (it went as stale, see host_dir_claim(), and the
 * address was handed out again). */
static int lease_holder(const struct stk_net_config *c, unsigned index, const char *id)
{
    char name[16], owner[STK_NFT_MAX_ID + 1], dir[PATH_MAX];
    snprintf(name, sizeof(name), "%u", index);
    _cleanup_free_ char *p = path_of(c, "net/leases", name);
    if (!lease_read(p, owner, dir))
        return access(p, F_OK) < 0 && errno == ENOENT ? 0 : -1;
    return !strcmp(owner, id) && !strcmp(dir, c->run_dir) ? 1 : -1;
}

/* The sandbox's own lease only: another's of the same index stays. */
static void lease_drop(const struct stk_net_config *c, unsigned index, const char *id)
{
    char name[16];
    snprintf(name, sizeof(name), "%u", index);
    _cleanup_free_ char *p = path_of(c, "net/leases", name);
    if (lease_holder(c, index, id) > 0)
        (void)unlink(p);
}

static void facts_fill(struct stk_net *n)
{
    const struct stk_net_config *c = &n->cfg;
    struct stk_nft_facts *f = &n->facts;
    *f = (struct stk_nft_facts){.id = n->id,
                                .namespace = n->namespace,
                                .bridge = c->bridge,
                                .veth = n->veth,
                                .resolver = c->resolver,
                                .services = c->services,
                                .n_services = c->n_services,
                                .log_group = (uint16_t)(c->log_group_base + n->index),
                                .nat = c->nat,
                                .routed = c->routed,
                                .pool4 = c->pool4,
                                .pool6 = c->pool6,
                                .proxy_port = (uint16_t)(STK_NFT_PROXY_PORT_BASE + n->index),
                                .proxy_host = c->proxy_host};
    if (c->pool4.family == STK_FAMILY_V4) {
        f->addr4 = pool_addr(&c->pool4, n->index);
        f->bridge4 = pool_addr(&c->pool4, 1);
    }
    if (c->pool6.family == STK_FAMILY_V6) {
        f->addr6 = pool_addr(&c->pool6, n->index);
        f->bridge6 = pool_addr(&c->pool6, 1);
    }
}

/* ---- state file: what down and gc need from another process ------------ */

static int state_write(const struct stk_net *n, struct stk_error **err)
{
    _cleanup_free_ char *p = path_of(&n->cfg, "net/sandboxes", n->id);
    _cleanup_free_ char *tmp = stk_xasprintf("%s.tmp", p);
    char a4[STK_CIDR_STRLEN] = "-", a6[STK_CIDR_STRLEN] = "-";
    if (n->facts.addr4.family)
        stk_cidr_format(&n->facts.addr4, a4);
    if (n->facts.addr6.family)
        stk_cidr_format(&n->facts.addr6, a6);
    /* the addresses too: teardown must not depend on today's pool setting */
    _cleanup_free_ char *text = stk_xasprintf("index %u\nnamespace %s\nveth %s\naddr %s %s\n",
                                              n->index, n->namespace, n->veth, a4, a6);
    _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text) || fsync(fd) < 0 ||
        rename(tmp, p) < 0) {
        int e = errno;
        (void)unlink(tmp);
        return stk_error_errno(err, e, "writing %s", p);
    }
    return 0;
}

static int state_read(const struct stk_net_config *c, const char *id, struct stk_net *n,
                      struct stk_error **err)
{
    _cleanup_free_ char *p = path_of(c, "net/sandboxes", id);
    _cleanup_fclose_ FILE *f = fopen(p, "re");
    if (!f)
        return stk_error_errno(err, errno, "sandbox %s has no network state (%s)", id, p);
    char ns[64] = "", veth[16] = "", a4[STK_CIDR_STRLEN] = "", a6[STK_CIDR_STRLEN] = "";
    if (fscanf(f, "index %u\nnamespace %63s\nveth %15s\naddr %49s %49s\n", &n->index, ns, veth, a4,
               a6) != 5)
        return stk_error_make(err, EINVAL, "%s: malformed", p);
    snprintf(n->namespace, sizeof(n->namespace), "%s", ns);
    snprintf(n->veth, sizeof(n->veth), "%s", veth);
    facts_fill(n);
    n->facts.addr4 = n->facts.addr6 = (struct stk_cidr){0};
    if (strcmp(a4, "-") && stk_cidr_parse(a4, &n->facts.addr4, NULL) < 0)
        return stk_error_make(err, EINVAL, "%s: malformed address %s", p, a4);
    if (strcmp(a6, "-") && stk_cidr_parse(a6, &n->facts.addr6, NULL) < 0)
        return stk_error_make(err, EINVAL, "%s: malformed address %s", p, a6);
    return 0;
}

/* ---- the steps ----------------------------------------------------------- */

/* Asks the kernel, not /sys: sysfs shows the namespace it was mounted in,
 * which need not be the caller's. */
static bool link_exists(const char *name)
{
    return if_nametoindex(name) != 0;
}

static void rtnl_closep(struct stk_rtnl **r)
{
    stk_rtnl_close(*r);
}
#define _cleanup_rtnl_ _cleanup_(rtnl_closep)

/* One request on a socket of its own, in this thread's namespace. */
static int rtnl_once(struct nlmsghdr *nlh, const char *what, struct stk_error **err)
{
    _cleanup_rtnl_ struct stk_rtnl *nl = NULL;
    int r = stk_rtnl_open(&nl, err);
    return r < 0 ? r : stk_rtnl_do(nl, nlh, what, NULL, err);
}

static int link_del(const char *name, struct stk_error **err)
{
    char buf[STK_RTNL_BUF] __attribute__((aligned(4)));
    _cleanup_free_ char *what = stk_xasprintf("removing link %s", name);
    return rtnl_once(stk_rtnl_dellink_msg(buf, name), what, err);
}

static int bridge_up(const struct stk_net_config *c, const struct stk_nft_facts *f,
                     struct stk_error **err)
{
    /* A MAC of its own: a bridge without one takes the lowest of its ports'
     * and changes it when that port goes, and every other sandbox's
     * neighbour entry for the bridge address is stale until it is resolved
     * again (seconds without traffic). Locally administered, "STK". */
    static const uint8_t mac[6] = {0x02, 0x53, 0x54, 0x4b, 0x00, 0x01};
    char buf[STK_RTNL_BUF] __attribute__((aligned(4)));
    _cleanup_rtnl_ struct stk_rtnl *nl = NULL;
    int r = stk_rtnl_open(&nl, err);
    if (r < 0)
        return r;
    _cleanup_free_ char *what = stk_xasprintf("creating bridge %s", c->bridge);
    /* made with the network: another network's routes to the pool made
     * before would win over the bridge's (an existing bridge's are older) */
    if (!link_exists(c->bridge) &&
        ((r = stk_net_pool_check(c, err)) < 0 ||
         (r = stk_rtnl_do(nl, stk_rtnl_bridge_msg(buf, c->bridge, mac), what, NULL, err)) < 0))
        return r;
    unsigned ifindex = if_nametoindex(c->bridge);
    if (!ifindex)
        return stk_error_errno(err, errno, "bridge %s", c->bridge);
    const struct stk_cidr *addrs[] = {&f->bridge4, &f->bridge6};
    const uint8_t prefixes[] = {c->pool4.prefix, c->pool6.prefix};
    for (size_t i = 0; i < 2; i++) {
        if (!addrs[i]->family)
            continue;
        struct stk_cidr gw = *addrs[i];
        gw.prefix = prefixes[i];
        char cb[STK_CIDR_STRLEN];
        _cleanup_free_ char *w =
            stk_xasprintf("address %s on %s", stk_cidr_format(&gw, cb), c->bridge);
        if ((r = stk_rtnl_do(nl, stk_rtnl_addr_msg(buf, ifindex, &gw, true, true), w, NULL, err)) <
            0)
            return r;
    }
    _cleanup_free_ char *up = stk_xasprintf("setting %s up", c->bridge);
    if ((r = stk_rtnl_do(nl, stk_rtnl_up_msg(buf, ifindex), up, NULL, err)) < 0)
        return r;
    /* Route between sandboxes and out of the bridge. Sandboxes ignore ICMP
     * redirects (set inside), so the host's global send_redirects stays as
     * the operator left it; only the bridge's own is turned off. */
    _cleanup_free_ char *f4 = stk_xasprintf("/proc/sys/net/ipv4/conf/%s/forwarding", c->bridge);
    _cleanup_free_ char *f6 =
        stk_xasprintf("/proc/sys/net/ipv6/conf/%s/force_forwarding", c->bridge);
    _cleanup_free_ char *rd = stk_xasprintf("/proc/sys/net/ipv4/conf/%s/send_redirects", c->bridge);
    const char *kv[] = {f4, "1", f6, "1", rd, "0", NULL, NULL, NULL};
    if (c->nat) { /* the operator's switch: route out of the uplink */
        kv[6] = "/proc/sys/net/ipv4/ip_forward";
        kv[7] = "1";
    }
    return sysctls_write(kv, err);
}

/* Links enslaved to the bridge, asked of the kernel (an RTM_GETLINK dump
 * over rtnetlink: IFLA_MASTER names the bridge's index). -1: unknown. */
struct ports_count {
    unsigned master;
    long n;
};

static int port_cb(const struct nlmsghdr *nlh, void *data)
{
    struct ports_count *pc = data;
    struct nlattr *a;
    mnl_attr_for_each(a, nlh, sizeof(struct ifinfomsg))
    {
        if (mnl_attr_get_type(a) == IFLA_MASTER && mnl_attr_validate(a, MNL_TYPE_U32) >= 0 &&
            mnl_attr_get_u32(a) == pc->master)
            pc->n++;
    }
    return MNL_CB_OK;
}

/* One rtnetlink dump (type: RTM_GETLINK, RTM_GETROUTE) of this thread's
 * namespace, each message to cb. 0 when whole, -1 when not. */
static int rtnl_dump(uint16_t type, uint8_t family, mnl_cb_t cb, void *data)
{
    struct mnl_socket *nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
    if (!nl)
        return -1;
    char buf[16384] __attribute__((aligned(4)));
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = type;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    nlh->nlmsg_seq = 1;
    if (type == RTM_GETLINK) {
        struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));
        ifm->ifi_family = family;
    } else {
        struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
        rtm->rtm_family = family;
    }
    int r = -1;
    if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) >= 0 &&
        mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) >= 0) {
        uint32_t seq = nlh->nlmsg_seq, port = mnl_socket_get_portid(nl);
        ssize_t n;
        while ((n = mnl_socket_recvfrom(nl, buf, sizeof(buf))) > 0 &&
               (r = mnl_cb_run(buf, (size_t)n, seq, port, cb, data)) > MNL_CB_STOP)
            ;
    }
    mnl_socket_close(nl);
    return r == MNL_CB_STOP ? 0 : -1;
}

static long bridge_ports(const char *bridge)
{
    unsigned master = if_nametoindex(bridge);
    if (!master)
        return 0;
    struct ports_count pc = {.master = master};
    return rtnl_dump(RTM_GETLINK, AF_UNSPEC, port_cb, &pc) == 0 ? pc.n : -1;
}

/* A route of this namespace that would take the pool's traffic from the
 * bridge: to the pool or a part of it (as long a prefix or longer: the
 * kernel prefers it, or the first of equals, which is the older), not
 * through the bridge. Another network on the same addresses (podman's
 * default, 10.88.0.0/16 on cni-podman0, was this pool's until it moved)
 * would get every packet the host sends to a sandbox, and the sandboxes'
 * replies. */
struct route_clash {
    const struct stk_cidr *pool;
    unsigned bridge;
    bool found;
    struct stk_cidr dst;
    unsigned oif;
};

static int route_cb(const struct nlmsghdr *nlh, void *data)
{
    struct route_clash *rc = data;
    const struct rtmsg *rtm = mnl_nlmsg_get_payload(nlh);
    uint32_t table = rtm->rtm_table;
    uint8_t fam = rc->pool->family == STK_FAMILY_V4 ? AF_INET : AF_INET6;
    if (rc->found || rtm->rtm_family != fam || rtm->rtm_dst_len < rc->pool->prefix ||
        (rtm->rtm_type != RTN_UNICAST && rtm->rtm_type != RTN_LOCAL))
        return MNL_CB_OK;
    struct stk_cidr dst = {.family = rc->pool->family, .prefix = rtm->rtm_dst_len};
    unsigned oif = 0;
    struct nlattr *a;
    mnl_attr_for_each(a, nlh, sizeof(*rtm))
    {
        uint16_t t = mnl_attr_get_type(a);
        if (t == RTA_TABLE && mnl_attr_validate(a, MNL_TYPE_U32) >= 0)
            table = mnl_attr_get_u32(a);
        else if (t == RTA_OIF && mnl_attr_validate(a, MNL_TYPE_U32) >= 0)
            oif = mnl_attr_get_u32(a);
        else if (t == RTA_DST && mnl_attr_get_payload_len(a) == (fam == AF_INET ? 4 : 16))
            memcpy(dst.addr, mnl_attr_get_payload(a), mnl_attr_get_payload_len(a));
    }
    /* the tables every lookup consults first; policy routing is the
     * operator's own */
    if ((table != RT_TABLE_MAIN && table != RT_TABLE_LOCAL) || (oif && oif == rc->bridge) ||
        !stk_cidr_contains(rc->pool, &dst))
        return MNL_CB_OK;
    rc->found = true;
    rc->dst = dst;
    rc->oif = oif;
    return MNL_CB_OK;
}

int stk_net_pool_check(const struct stk_net_config *c, struct stk_error **err)
{
    const struct stk_cidr *pools[] = {&c->pool4, &c->pool6};
    unsigned bridge = if_nametoindex(c->bridge);
    for (size_t i = 0; i < STK_ARRAY_SIZE(pools); i++) {
        if (!pools[i]->family)
            continue;
        struct route_clash rc = {.pool = pools[i], .bridge = bridge};
        if (rtnl_dump(RTM_GETROUTE, pools[i]->family == STK_FAMILY_V4 ? AF_INET : AF_INET6,
                      route_cb, &rc) < 0 ||
            !rc.found)
            continue; /* not known to clash: the routes could not be read */
        char pb[STK_CIDR_STRLEN], db[STK_CIDR_STRLEN], ifname[IF_NAMESIZE] = "";
        if (!rc.oif || !if_indextoname(rc.oif, ifname))
            snprintf(ifname, sizeof(ifname), "%s", rc.oif ? "?" : "(no device)");
        return stk_error_make(err, EADDRINUSE,
                              "the address pool %s is another network's on this host: %s is "
                              "routed to %s, which would get the traffic for the sandboxes; "
                              "set data.local.addressPool in the EnvironmentConfig to a range "
                              "nothing else uses (or remove %s if it is unused)",
                              stk_cidr_format(pools[i], pb), stk_cidr_format(&rc.dst, db), ifname,
                              ifname);
    }
    return 0;
}

/* Addresses are reused: the host's neighbour entry for one may still hold
 * the MAC of the sandbox that had it before (STALE), and the first packet
 * the host sends would wait seconds for the kernel to probe it. Deleting
 * the entry (RTM_DELNEIGH; none there is fine) makes the next packet ask. */
void stk_net_forget_neighbours(const struct stk_net *n)
{
    unsigned ifindex = if_nametoindex(n->cfg.bridge);
    struct mnl_socket *nl = ifindex ? mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC) : NULL;
    if (!nl)
        return;
    if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) >= 0) {
        const struct stk_cidr *addrs[] = {&n->facts.addr4, &n->facts.addr6};
        for (size_t i = 0; i < STK_ARRAY_SIZE(addrs); i++) {
            const struct stk_cidr *a = addrs[i];
            if (a->family != STK_FAMILY_V4 && a->family != STK_FAMILY_V6)
                continue;
            char buf[256] __attribute__((aligned(4)));
            struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
            nlh->nlmsg_type = RTM_DELNEIGH;
            nlh->nlmsg_flags = NLM_F_REQUEST;
            struct ndmsg *nd = mnl_nlmsg_put_extra_header(nlh, sizeof(*nd));
            nd->ndm_family = a->family == STK_FAMILY_V4 ? AF_INET : AF_INET6;
            nd->ndm_ifindex = (int)ifindex;
            mnl_attr_put(nlh, NDA_DST, a->family == STK_FAMILY_V4 ? 4 : 16, a->addr);
            (void)mnl_socket_sendto(nl, nlh, nlh->nlmsg_len);
        }
    }
    mnl_socket_close(nl);
}

/* Sandboxes of any run directory hold a lease (taken first, dropped
 * last), in the lease directory every run directory shares. */
static size_t leases_count(const struct stk_net_config *c)
{
    _cleanup_free_ char *p = path_of(c, "net/leases", NULL);
    DIR *d = opendir(p);
    size_t n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    if (d)
        closedir(d);
    return n;
}

/* The bridge and the tables are the network namespace's, shared by every
 * run and state directory: in use while any sandbox holds a lease or a
 * port of the bridge, whichever run directory it belongs to. Asked under
 * the host-wide lock, so no sandbox comes up meanwhile. */
static bool network_unused(const struct stk_net_config *c)
{
    return leases_count(c) == 0 && bridge_ports(c->bridge) == 0;
}

static void bridge_down_if_unused(const struct stk_net_config *c)
{
    struct stk_error *e = NULL;
    if (link_exists(c->bridge) && network_unused(c)) {
        (void)link_del(c->bridge, &e);
        stk_error_freep(&e);
    }
}

/* Pins the namespace open as fd (any process's) by a bind mount at path. */
static int netns_pin(int fd, const char *path, struct stk_error **err)
{
    char src[64];
    snprintf(src, sizeof(src), "/proc/self/fd/%d", fd);
    if (mount(src, path, NULL, MS_BIND, NULL) < 0)
        return stk_error_errno(err, errno, "creating the network namespace at %s (bind mount)",
                               path);
    return 0;
}

/* A new network namespace owned by the user namespace at userns: made by a
 * forked child (single-threaded, as setns(CLONE_NEWUSER) requires) that
 * has joined that user namespace first, so the kernel records it as the
 * owner. An OCI runtime that joins the sandbox's user namespace before its
 * other namespaces (runc 1.1) may then still join this one, and host root,
 * capable in every user namespace, configures it as before. The child
 * only waits until the parent holds the namespace by a descriptor. */
static int netns_unshare_in(const char *userns, int *ret_fd, struct stk_error **err)
{
    _cleanup_close_ int uns = open(userns, O_RDONLY | O_CLOEXEC);
    if (uns < 0)
        return stk_error_errno(err, errno, "opening the sandbox's user namespace %s", userns);
    int go[2], done[2];
    if (pipe2(go, O_CLOEXEC) < 0)
        return stk_error_errno(err, errno, "pipe");
    if (pipe2(done, O_CLOEXEC) < 0) {
        int e = errno;
        close(go[0]);
        close(go[1]);
        return stk_error_errno(err, e, "pipe");
    }
    pid_t pid = fork();
    if (pid == 0) {
        /* async-signal-safe calls only, then _exit */
        int e = 0;
        close(go[0]);
        close(done[1]);
        if (setns(uns, CLONE_NEWUSER) < 0 || unshare(CLONE_NEWNET) < 0)
            e = errno ? errno : EPERM;
        if (write(go[1], &e, sizeof(e)) != sizeof(e))
            _exit(1);
        char c;
        while (read(done[0], &c, 1) < 0 && errno == EINTR)
            ;
        _exit(0);
    }
    int fork_errno = errno;
    close(go[1]);
    close(done[0]);
    int r = 0, e = 0;
    if (pid < 0)
        r = stk_error_errno(err, fork_errno, "fork");
    else if (read(go[0], &e, sizeof(e)) != sizeof(e))
        r = stk_error_make(err, EIO, "the network namespace's maker ended early");
    else if (e)
        r = stk_error_errno(err, e, "creating a network namespace in the user namespace %s",
                            userns);
    else {
        char ns[64];
        snprintf(ns, sizeof(ns), "/proc/%d/ns/net", (int)pid);
        if ((*ret_fd = open(ns, O_RDONLY | O_CLOEXEC)) < 0)
            r = stk_error_errno(err, errno, "open %s", ns);
    }
    close(go[0]);
    close(done[1]); /* the child goes */
    if (pid > 0)
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
    return r;
}

/* A new network namespace in this thread's user namespace: this thread
 * makes it (unshare) and leaves it at once for the one it was in. */
static int netns_unshare_here(int *ret_fd, struct stk_error **err)
{
    _cleanup_close_ int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (self < 0)
        return stk_error_errno(err, errno, "open /proc/thread-self/ns/net");
    if (unshare(CLONE_NEWNET) < 0)
        return stk_error_errno(err, errno, "creating a network namespace (unshare)");
    int ns = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    int ns_errno = errno;
    if (setns(self, CLONE_NEWNET) < 0)
        abort(); /* see in_netns() */
    if (ns < 0)
        return stk_error_errno(err, ns_errno, "creating a network namespace (open)");
    *ret_fd = ns;
    return 0;
}

/* A new network namespace, pinned by a bind mount at path; owned by the
 * user namespace at userns, or by this thread's when userns is NULL. */
static int netns_make(const char *path, const char *userns, struct stk_error **err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
    if (fd < 0)
        return stk_error_errno(err, errno, "creating %s", path);
    _cleanup_close_ int ns = -1;
    int r = userns ? netns_unshare_in(userns, &ns, err) : netns_unshare_here(&ns, err);
    if (r >= 0)
        r = netns_pin(ns, path, err);
    if (r < 0)
        (void)unlink(path);
    return r;
}

static void netns_remove(const char *path)
{
    (void)umount2(path, MNT_DETACH);
    (void)unlink(path);
}

/* The pair, its peer made as eth0 directly in the sandbox's namespace (no
 * create-then-move), the host end a port of the bridge. Isolated ports only
 * reach the bridge itself: sandbox-to-sandbox traffic is routed through the
 * host, where the chains see it. The host end goes up last. */
static int veth_make(const struct stk_net *n, struct stk_error **err)
{
    char buf[STK_RTNL_BUF] __attribute__((aligned(4)));
    _cleanup_close_ int ns = open(n->netns, O_RDONLY | O_CLOEXEC);
    if (ns < 0)
        return stk_error_errno(err, errno, "open %s", n->netns);
    unsigned master = if_nametoindex(n->cfg.bridge);
    if (!master)
        return stk_error_errno(err, errno, "bridge %s", n->cfg.bridge);
    _cleanup_rtnl_ struct stk_rtnl *nl = NULL;
    int r = stk_rtnl_open(&nl, err);
    if (r < 0)
        return r;
    _cleanup_free_ char *what =
        stk_xasprintf("veth pair %s (eth0 in the sandbox) on master %s", n->veth, n->cfg.bridge);
    if ((r = stk_rtnl_do(nl, stk_rtnl_veth_msg(buf, n->veth, "eth0", ns, master), what, NULL,
                         err)) < 0)
        return r;
    unsigned ifindex = if_nametoindex(n->veth);
    if (!ifindex)
        return stk_error_errno(err, errno, "%s", what);
    _cleanup_free_ char *port = stk_xasprintf("bridge port flags of %s", n->veth);
    _cleanup_free_ char *up = stk_xasprintf("setting %s up", n->veth);
    if ((r = stk_rtnl_do(nl, stk_rtnl_brport_msg(buf, ifindex, true, true), port, NULL, err)) < 0 ||
        (r = stk_rtnl_do(nl, stk_rtnl_up_msg(buf, ifindex), up, NULL, err)) < 0)
        return r;
    return 0;
}

/* In the sandbox's namespace: its sysctls, and a route netlink socket bound
 * there (a socket stays in the namespace it was made in). */
struct inside_enter {
    struct stk_rtnl *nl;
};

static int inside_enter(void *arg, struct stk_error **err)
{
    struct inside_enter *in = arg;
    static const char *const kv[] = {"/proc/sys/net/ipv4/conf/all/accept_redirects",
                                     "0",
                                     "/proc/sys/net/ipv6/conf/all/accept_redirects",
                                     "0",
                                     "/proc/sys/net/ipv6/conf/default/accept_ra",
                                     "0",
                                     NULL};
    int r = sysctls_write(kv, err);
    return r < 0 ? r : stk_rtnl_open(&in->nl, err);
}

/* Inside the namespace: lo, eth0 with host-length addresses and routes via
 * the bridge, so every packet — even to a neighbour — crosses the host. */
static int inside_setup(const struct stk_net *n, struct stk_error **err)
{
    const struct stk_nft_facts *f = &n->facts;
    _cleanup_close_ int fd = open(n->netns, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return stk_error_errno(err, errno, "open %s", n->netns);
    struct inside_enter in = {0};
    int r = in_netns(fd, inside_enter, &in, err);
    if (r < 0)
        return r;
    _cleanup_rtnl_ struct stk_rtnl *nl = in.nl;
    char buf[STK_RTNL_BUF] __attribute__((aligned(4)));
    unsigned eth0 = 0;
    /* lo is always interface 1 of a namespace */
    if ((r = stk_rtnl_do(nl, stk_rtnl_up_msg(buf, 1), "setting lo up", NULL, err)) < 0 ||
        (r = stk_rtnl_do(nl, stk_rtnl_getlink_msg(buf, "eth0"), "finding eth0", &eth0, err)) < 0)
        return r;
    if (!eth0)
        return stk_error_make(err, ENODEV, "finding eth0: no index in the answer");
    const struct stk_cidr *addrs[] = {&f->addr4, &f->addr6}, *gws[] = {&f->bridge4, &f->bridge6};
    for (size_t i = 0; i < 2; i++) {
        if (!addrs[i]->family)
            continue;
        char cb[STK_CIDR_STRLEN];
        _cleanup_free_ char *w = stk_xasprintf("address %s on eth0", stk_cidr_format(addrs[i], cb));
        if ((r = stk_rtnl_do(nl, stk_rtnl_addr_msg(buf, eth0, addrs[i], false, true), w, NULL,
                             err)) < 0)
            return r;
    }
    if ((r = stk_rtnl_do(nl, stk_rtnl_up_msg(buf, eth0), "setting eth0 up", NULL, err)) < 0)
        return r;
    for (size_t i = 0; i < 2; i++) {
        if (!addrs[i]->family)
            continue;
        struct stk_cidr gw = *gws[i], any = {.family = gw.family};
        gw.prefix = gw.family == STK_FAMILY_V4 ? 32 : 128;
        char cb[STK_CIDR_STRLEN];
        stk_cidr_format(&gw, cb);
        _cleanup_free_ char *w1 = stk_xasprintf("route to %s on eth0", cb);
        _cleanup_free_ char *w2 = stk_xasprintf("default route via %s", cb);
        if ((r = stk_rtnl_do(nl, stk_rtnl_route_msg(buf, eth0, &gw, NULL), w1, NULL, err)) < 0 ||
            (r = stk_rtnl_do(nl, stk_rtnl_route_msg(buf, eth0, &any, &gw), w2, NULL, err)) < 0)
            return r;
    }
    return 0;
}

/* id is valid (stk_nft_id_valid): it fits n->id */
static int net_new(const struct stk_net_config *c, const char *id, struct stk_net **ret,
                   struct stk_error **err)
{
    _cleanup_free_ struct stk_net *n = stk_xcalloc(1, sizeof(*n));
    n->cfg = *c;
    snprintf(n->id, sizeof(n->id), "%s", id);
    veth_name(id, n->veth);
    int r = stk_net_netns_path_for(c, id, n->netns, sizeof(n->netns), err);
    if (r < 0)
        return r;
    *ret = TAKE_PTR(n);
    return 0;
}

int stk_net_netns_path_for(const struct stk_net_config *c, const char *id, char *buf, size_t n,
                           struct stk_error **err)
{
    return stk_path_make(buf, n, err, "%s/netns/%s", c->run_dir, id);
}

void stk_net_free(struct stk_net *n)
{
    free(n);
}

static void net_freep(struct stk_net **n)
{
    stk_net_free(*n);
}

static int config_check(const struct stk_net_config *c, struct stk_error **err)
{
    if (!c->run_dir || c->run_dir[0] != '/')
        return stk_error_make(err, EINVAL, "run directory must be absolute");
    /* the run directory is a line of every lease file and goes into messages */
    for (const char *p = c->run_dir; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == '"' || *p == '\'' || *p == '\\' || *p == '#')
            return stk_error_make(err, EINVAL,
                                  "run directory %s: blanks, quotes, '#' and control "
                                  "characters are not allowed",
                                  c->run_dir);
    /* a link name (rtnl.h's buffers are sized for such names) */
    if (!c->bridge || !*c->bridge || strlen(c->bridge) >= IFNAMSIZ)
        return stk_error_make(err, EINVAL, "bridge name must have 1 to %d characters",
                              IFNAMSIZ - 1);
    if (c->pool4.family != STK_FAMILY_V4 && c->pool6.family != STK_FAMILY_V6)
        return stk_error_make(err, EINVAL, "the address pool has no network");
    if (c->pool4.family == STK_FAMILY_V4 && c->pool4.prefix > 29)
        return stk_error_make(err, EINVAL, "IPv4 address pool too small (at most /29)");
    if (c->pool6.family == STK_FAMILY_V6 && c->pool6.prefix > 125)
        return stk_error_make(err, EINVAL, "IPv6 address pool too small (at most /125)");
    if ((unsigned)c->log_group_base + STK_NET_MAX_SANDBOXES + 2 > UINT16_MAX)
        return stk_error_make(err, EINVAL, "NFLOG group base %u too high (at most %u)",
                              c->log_group_base, UINT16_MAX - STK_NET_MAX_SANDBOXES - 2);
    return 0;
}

/* ---- setup as a list of steps ------------------------------------------- */

static void shared_down_if_unused(const struct stk_net_config *c);

struct setup {
    struct stk_net *n;
    const struct stk_boundary *b;
    const char *userns; /* the namespace's owner; NULL: the caller's */
    char *base, *rules, *undo_rules;
};

static int step_lease(void *ctx, struct stk_error **err)
{
    struct setup *s = ctx;
    int r = lease_take(&s->n->cfg, s->n->id, &s->n->index, err);
    if (r >= 0)
        facts_fill(s->n);
    return r;
}

/* Last out: with the lease gone, the bridge and tables go too when no
 * other sandbox (of any run directory) holds one. */
static void undo_lease(void *ctx)
{
    struct setup *s = ctx;
    if (s->n->index) /* 0: none was taken */
        lease_drop(&s->n->cfg, s->n->index, s->n->id);
    shared_down_if_unused(&s->n->cfg);
}

/* Nothing is touched when the model does not compile. */
static int step_compile(void *ctx, struct stk_error **err)
{
    struct setup *s = ctx;
    int r = stk_nft_render_base(&s->n->facts, &s->base, err);
    if (r == 0)
        r = stk_nft_render_own(s->b, &s->n->facts, &s->rules, err);
    return r < 0 ? r : stk_nft_render_remove(&s->n->facts, &s->undo_rules, err);
}

static int step_bridge(void *ctx, struct stk_error **err)
{
    struct setup *s = ctx;
    return bridge_up(&s->n->cfg, &s->n->facts, err);
}

static int step_netns(void *ctx, struct stk_error **err)
{
    struct setup *s = ctx;
    return netns_make(s->n->netns, s->userns, err);
}

static void undo_netns(void *ctx)
{
    struct setup *s = ctx;
    netns_remove(s->n->netns);
}

static int step_veth(void *ctx, struct stk_error **err)
{
    struct setup *s = ctx;
    return veth_make(s->n, err);
}

static void undo_veth(void *ctx)
{
    struct setup *s = ctx;
    struct stk_error *e = NULL;
    if (link_exists(s->n->veth))
        (void)link_del(s->n->veth, &e);
    stk_error_freep(&e);
}

/* Undone with the namespace. */
static int step_inside(void *ctx, struct stk_error **err)
{
    struct setup *s = ctx;
    return inside_setup(s->n, err);
}

/* The shared objects, through libnftables, when they are missing or were
 * made from another text (another version or configuration). The text's
 * hash is kept in the kernel with them, in the same transaction: the one
 * element of the set `base` (an IPv6-address key holds 64 bits of it),
 * so that whichever text was applied last is the one its mark names, and
 * asking for that element is one request, not a dump. Callers hold the
 * lock. */
static int base_ensure(const char *base, struct stk_error **err)
{
    uint64_t h = 14695981039346656037ull; /* FNV-1a */
    for (const char *p = base; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    char mark[48];
    snprintf(mark, sizeof(mark), "%x:%x:%x:%x::", (unsigned)(h >> 48) & 0xffff,
             (unsigned)(h >> 32) & 0xffff, (unsigned)(h >> 16) & 0xffff, (unsigned)h & 0xffff);
    struct stk_cidr key;
    if (stk_addr_parse(mark, &key) < 0)
        return stk_error_make(err, EINVAL, "base mark %s", mark);
    if (stk_nftnl_element_exists("inet", STK_NFT_TABLE, "base", key.addr, 16) &&
        stk_nftnl_table_exists("bridge", STK_NFT_TABLE))
        return 0;
    _cleanup_free_ char *text =
        stk_xasprintf("%s"
                      "add set inet " STK_NFT_TABLE " base { type ipv6_addr; }\n"
                      "flush set inet " STK_NFT_TABLE " base\n"
                      "add element inet " STK_NFT_TABLE " base { %s }\n",
                      base, mark);
    return nft_apply(text, err);
}

/* One transaction: all or nothing. A text the in-process compiler does
 * not know (none the renderer writes within the spec's bounds:
 * tests/unit/test_nftnl.c) goes through libnftables instead, to the same
 * rules. */
static int step_rules(void *ctx, struct stk_error **err)
{
    struct setup *s = ctx;
    struct stk_error *e = NULL;
    int r = base_ensure(s->base, err);
    if (r < 0)
        return r;
    if ((r = stk_nftnl_apply(s->rules, &e)) == -ENOTSUP) {
        stk_error_freep(&e);
        return nft_apply(s->rules, err);
    }
    if (r < 0 && err)
        *err = TAKE_PTR(e);
    stk_error_freep(&e);
    return r;
}

/* The removal as one transaction; when some piece is gone already, what
 * is left, one line at a time. */
static int rules_remove(const char *text, struct stk_error **err)
{
    struct stk_error *e = NULL;
    int (*apply)(const char *, struct stk_error **) = stk_nftnl_apply;
    int r = apply(text, &e);
    if (r == -ENOTSUP) { /* see step_rules() */
        stk_error_freep(&e);
        apply = nft_apply;
        r = apply(text, &e);
    }
    if (r == 0)
        return 0;
    if (err) {
        *err = e;
        e = NULL;
    }
    stk_error_freep(&e);
    _cleanup_free_ char *copy = stk_xstrdup(text);
    char *save = NULL;
    for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
        if (l[0] != '#') {
            (void)apply(l, &e);
            stk_error_freep(&e);
        }
    return r;
}

static void undo_rules(void *ctx)
{
    struct setup *s = ctx;
    (void)rules_remove(s->undo_rules, NULL);
}

static int step_state(void *ctx, struct stk_error **err)
{
    struct setup *s = ctx;
    return state_write(s->n, err);
}

/* In order (nsjail's containProc, bubblewrap's SetupOp list), through the
 * one runner (steps.h): a failing step's undo, then the earlier steps'
 * undos, last first. */
static const struct stk_step setup_steps[] = {
    {"address lease", step_lease, undo_lease},
    {"ruleset", step_compile, NULL},
    {"bridge", step_bridge, NULL /* shared: undo_lease */},
    {"network namespace", step_netns, undo_netns},
    {"veth pair", step_veth, undo_veth},
    {"addresses and routes", step_inside, NULL},
    {"nftables", step_rules, undo_rules},
    {"state", step_state, NULL},
};

int stk_net_up(const struct stk_net_config *c, const struct stk_boundary *b, const char *id,
               const char *userns, struct stk_net **ret, struct stk_error **err)
{
    _cleanup_(net_freep) struct stk_net *n = NULL;
    _cleanup_close_ int lock = -1;
    int r;

    if (!stk_nft_id_valid(id))
        return stk_error_make(err, EINVAL, "invalid sandbox id \"%s\"", id);
    if ((r = config_check(c, err)) < 0 || (r = net_new(c, id, &n, err)) < 0)
        return r;
    snprintf(n->namespace, sizeof(n->namespace), "%s", b->namespace);

    if ((lock = lock_take(c, STK_HOST_LOCK_WAIT_MS, err)) < 0)
        return lock;
    _cleanup_free_ char *state = path_of(c, "net/sandboxes", id);
    if (access(state, F_OK) == 0)
        return stk_error_make(err, EEXIST, "sandbox %s already has a network", id);
    if (link_exists(n->veth))
        return stk_error_make(err, EEXIST, "link %s exists (another sandbox id?)", n->veth);

    struct setup s = {.n = n, .b = b, .userns = userns};
    if ((r = stk_steps_run(setup_steps, STK_ARRAY_SIZE(setup_steps), &s, err)) < 0 && err && *err)
        (void)stk_error_wrap(err, "sandbox %s network", id);
    free(s.base);
    free(s.rules);
    free(s.undo_rules);
    if (r < 0)
        return r;
    *ret = TAKE_PTR(n);
    return 0;
}

int stk_net_open(const struct stk_net_config *c, const char *id, struct stk_net **ret,
                 struct stk_error **err)
{
    if (!stk_nft_id_valid(id))
        return stk_error_make(err, EINVAL, "invalid sandbox id \"%s\"", id);
    _cleanup_(net_freep) struct stk_net *n = NULL;
    int r = net_new(c, id, &n, err);
    if (r < 0 || (r = state_read(c, id, n, err)) < 0)
        return r;
    *ret = TAKE_PTR(n);
    return 0;
}

const char *stk_net_netns_path(const struct stk_net *n)
{
    return n->netns;
}

uint16_t stk_net_log_group(const struct stk_net *n)
{
    return n->facts.log_group;
}

const char *stk_net_veth(const struct stk_net *n)
{
    return n->veth;
}

uint16_t stk_net_proxy_port(const struct stk_net *n)
{
    return n->facts.proxy_port;
}

struct stk_cidr stk_net_gateway(const struct stk_net *n)
{
    return n->facts.bridge4.family == STK_FAMILY_V4 ? n->facts.bridge4 : n->facts.bridge6;
}

void stk_net_addresses(const struct stk_net *n, struct stk_cidr *ret4, struct stk_cidr *ret6)
{
    *ret4 = n->facts.addr4;
    *ret6 = n->facts.addr6;
}

static void first_error(struct stk_error **err, struct stk_error **e, int r, int *ret)
{
    if (r < 0 && *ret == 0) {
        *ret = r;
        if (err) {
            *err = *e;
            *e = NULL;
        }
    }
    stk_error_freep(e);
}

/* Sandbox chains (sb-<id>, sp-<id>) in a listing of one of the tables. */
static size_t sandbox_chains(const char *listing)
{
    json_t *root = listing ? json_loads(listing, 0, NULL) : NULL;
    json_t *items = json_object_get(root, "nftables"), *it;
    size_t i, n = 0;
    json_array_foreach(items, i, it)
    {
        const char *name = json_string_value(json_object_get(json_object_get(it, "chain"), "name"));
        if (name && (stk_startswith(name, "sb-") || stk_startswith(name, "sp-")))
            n++;
    }
    json_decref(root);
    return n;
}

/* A table goes only when no sandbox's chain is left in it: another bridge's
 * sandboxes (another lock) may still use it. */
static void tables_remove(void)
{
    static const char *const tables[] = {"inet " STK_NFT_TABLE, "bridge " STK_NFT_TABLE};
    for (size_t i = 0; i < STK_ARRAY_SIZE(tables); i++) {
        _cleanup_free_ char *list = stk_xasprintf("list table %s", tables[i]);
        _cleanup_free_ char *text = nft_list_json(list);
        if (!text || sandbox_chains(text) > 0)
            continue;
        _cleanup_free_ char *del = stk_xasprintf("delete table %s\n", tables[i]);
        struct stk_error *e = NULL;
        (void)nft_apply(del, &e);
        stk_error_freep(&e);
    }
}

/* The bridge and the tables, when no sandbox of any run directory is left. */
static void shared_down_if_unused(const struct stk_net_config *c)
{
    if (!network_unused(c))
        return;
    bridge_down_if_unused(c);
    tables_remove();
    host_dir_remove(c);
}

/* Down without the lock (callers hold it). */
static int net_down_locked(struct stk_net *n, struct stk_error **err)
{
    struct stk_error *e = NULL;
    int ret = 0, r;
    _cleanup_free_ char *rm = NULL;

    /* an address handed out again is another sandbox's now, and so are
     * the set elements keyed by it: this one's chains go with gc */
    if (lease_holder(&n->cfg, n->index, n->id) >= 0) {
        if ((r = stk_nft_render_remove(&n->facts, &rm, &e)) == 0 && rules_remove(rm, NULL) < 0)
            r = 0; /* what was left is removed: an error here says nothing more */
        first_error(err, &e, r, &ret);
    }
    if (link_exists(n->veth)) {
        r = link_del(n->veth, &e);
        first_error(err, &e, r, &ret);
    }
    netns_remove(n->netns);
    lease_drop(&n->cfg, n->index, n->id);
    _cleanup_free_ char *state = path_of(&n->cfg, "net/sandboxes", n->id);
    (void)unlink(state);
    shared_down_if_unused(&n->cfg);
    return ret;
}

int stk_net_down(struct stk_net *n, struct stk_error **err)
{
    if (!n)
        return 0;
    _cleanup_(net_freep) struct stk_net *owned = n;
    _cleanup_close_ int lock = lock_take(&n->cfg, STK_HOST_LOCK_TEARDOWN_MS, err);
    if (lock < 0)
        return lock;
    return net_down_locked(owned, err);
}

/* ---- gc -------------------------------------------------------------------- */

static bool is_live(const char *id, const char *const *live, size_t n_live)
{
    for (size_t i = 0; i < n_live; i++)
        if (!strcmp(live[i], id))
            return true;
    return false;
}

static bool veth_is_live(const char *link, const char *const *live, size_t n_live)
{
    char name[16];
    for (size_t i = 0; i < n_live; i++) {
        veth_name(live[i], name);
        if (!strcmp(name, link))
            return true;
    }
    return false;
}

/* Chains sb-<id> / sp-<id> of sandboxes not in live, with the map elements
 * that jump to them (found in nft's JSON listing, by stockade's names). */
static int chains_gc(const char *const *live, size_t n_live)
{
    static const char *const lists[] = {"list table inet " STK_NFT_TABLE,
                                        "list table bridge " STK_NFT_TABLE};
    _cleanup_buf_ struct stk_buf cmd = {0};
    int removed = 0;
    for (size_t t = 0; t < STK_ARRAY_SIZE(lists); t++) {
        _cleanup_free_ char *text = nft_list_json(lists[t]);
        json_t *root = text ? json_loads(text, 0, NULL) : NULL;
        json_t *items = json_object_get(root, "nftables"), *it;
        size_t i;
        json_array_foreach(items, i, it)
        {
            json_t *ch = json_object_get(it, "chain"), *map = json_object_get(it, "map");
            const char *name = json_string_value(json_object_get(ch ? ch : map, "name"));
            const char *family = json_string_value(json_object_get(ch ? ch : map, "family"));
            if (!name || !family)
                continue;
            if (ch && (stk_startswith(name, "sb-") || stk_startswith(name, "sp-")) &&
                stk_nft_id_valid(name + 3) && !is_live(name + 3, live, n_live)) {
                stk_buf_printf(&cmd,
                               "flush chain %1$s " STK_NFT_TABLE " %2$s\n"
                               "delete chain %1$s " STK_NFT_TABLE " %2$s\n",
                               family, name);
                removed++;
            }
            json_t *elems = map ? json_object_get(map, "elem") : NULL, *el;
            size_t k;
            json_array_foreach(elems, k, el)
            {
                json_t *key = json_array_get(el, 0);
                const char *target = json_string_value(
                    json_object_get(json_object_get(json_array_get(el, 1), "jump"), "target"));
                if (!target || strlen(target) < 4 || is_live(target + 3, live, n_live))
                    continue;
                const char *kv = json_string_value(key);
                if (!kv)
                    continue;
                /* ifname keys are strings to nft; addresses are not */
                _cleanup_free_ char *k_text =
                    strcmp(name, "ports") ? stk_xstrdup(kv) : stk_xasprintf("\"%s\"", kv);
                /* prepend: elements go before the chains they jump to */
                _cleanup_free_ char *rest = stk_buf_steal(&cmd);
                stk_buf_printf(&cmd, "delete element %s " STK_NFT_TABLE " %s { %s }\n%s", family,
                               name, k_text, rest ? rest : "");
            }
        }
        json_decref(root);
    }
    if (cmd.len) {
        struct stk_error *e = NULL;
        if (nft_apply(stk_buf_str(&cmd), &e) < 0)
            removed = 0;
        stk_error_freep(&e);
    }
    return removed;
}

static int net_gc_locked(const struct stk_net_config *c, const char *const *live, size_t n_live);

int stk_net_gc(const struct stk_net_config *c, const char *const *own_live, size_t n_own,
               struct stk_error **err)
{
    _cleanup_close_ int lock = lock_take(c, STK_HOST_LOCK_TEARDOWN_MS, err);
    if (lock < 0)
        return lock;
    /* live: ours as the caller says, and every sandbox another run
     * directory holds a lease for (not ours to judge) */
    struct others o = {0};
    others_collect(c, &o);
    const char **live = stk_xcalloc(n_own + o.n + 1, sizeof(*live));
    size_t n_live = 0;
    for (size_t i = 0; i < n_own; i++)
        live[n_live++] = own_live[i];
    for (size_t i = 0; i < o.n; i++)
        live[n_live++] = o.ids[i];
    int r = net_gc_locked(c, live, n_live);
    free(live);
    free(o.ids);
    return r;
}

static int net_gc_locked(const struct stk_net_config *c, const char *const *live, size_t n_live)
{
    int removed = 0;
    struct stk_error *e = NULL;

    /* 1. recorded sandboxes: the orderly way */
    _cleanup_free_ char *sdir = path_of(c, "net/sandboxes", NULL);
    DIR *d = opendir(sdir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.' || !stk_nft_id_valid(de->d_name) ||
            is_live(de->d_name, live, n_live))
            continue;
        struct stk_net *n = NULL;
        if (stk_net_open(c, de->d_name, &n, &e) == 0) {
            (void)net_down_locked(n, &e);
            stk_net_free(n);
            removed++;
        }
        stk_error_freep(&e);
    }
    if (d)
        closedir(d);

    /* 2. anything else with stockade's names */
    struct if_nameindex *ifs = if_nameindex();
    for (struct if_nameindex *x = ifs; x && x->if_index; x++)
        if (stk_startswith(x->if_name, "stk-") && !veth_is_live(x->if_name, live, n_live)) {
            (void)link_del(x->if_name, &e);
            stk_error_freep(&e);
            removed++;
        }
    if (ifs)
        if_freenameindex(ifs);
    _cleanup_free_ char *ndir = path_of(c, "netns", NULL);
    d = opendir(ndir);
    while (d && (de = readdir(d)))
        if (de->d_name[0] != '.' && !is_live(de->d_name, live, n_live)) {
            _cleanup_free_ char *p = path_of(c, "netns", de->d_name);
            netns_remove(p);
            removed++;
        }
    if (d)
        closedir(d);
    _cleanup_free_ char *ldir = path_of(c, "net/leases", NULL);
    d = opendir(ldir);
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        _cleanup_free_ char *p = path_of(c, "net/leases", de->d_name);
        char owner[STK_NFT_MAX_ID + 1], dir[PATH_MAX];
        if (lease_read(p, owner, dir) && !strcmp(dir, c->run_dir) &&
            !is_live(owner, live, n_live)) {
            (void)unlink(p);
            removed++;
        }
    }
    if (d)
        closedir(d);

    /* 3. chains of dead sandboxes, after their dispatch elements; then
     * the shared objects, only when no sandbox of any run directory is
     * left (live holds every other run directory's leased ids) */
    removed += chains_gc(live, n_live);
    shared_down_if_unused(c);
    return removed;
}
