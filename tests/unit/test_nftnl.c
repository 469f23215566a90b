/* SPDX-License-Identifier: Apache-2.0 */
/* The sandbox's rules without libnftables (src/driver/local/nftnl.c):
 * - the compiler takes every line the renderer writes for a sandbox and
 *   refuses anything else;
 * - as root, in private network namespaces: the kernel holds exactly what
 *   nft makes of the same text (the listing with each rule's bytecode),
 *   for every golden ruleset and its removal;
 * - a sandbox's network up and down (net.c) with others present runs no
 *   libnftables transaction and no dump request of this module. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <nftables/libnftables.h>
#include <sched.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "driver/local/net.h"
#include "driver/local/nftnl.h"
#include "nft_facts.h"

#define ROOT STK_SOURCE_ROOT

struct loaded {
    struct stk_docset *sb, *env;
    struct stk_boundary *b;
};

static void load(const char *spec, const char *env, struct loaded *l)
{
    struct stk_diags d = {0};
    _cleanup_free_ char *sp =
        spec[0] == '/' ? stk_xstrdup(spec) : stk_xasprintf("%s/%s", ROOT, spec);
    _cleanup_free_ char *ep = !env            ? NULL
                              : env[0] == '/' ? stk_xstrdup(env)
                                              : stk_xasprintf("%s/%s", ROOT, env);
    *l = (struct loaded){0};
    assert_int_equal(stk_docset_load(sp, &d, &l->sb), 0);
    if (ep)
        assert_int_equal(stk_docset_load(ep, &d, &l->env), 0);
    assert_int_equal(
        stk_resolve(l->sb->docs[0].sandbox, sp, l->env ? l->env->docs[0].env : NULL, ep, &d, &l->b),
        0);
    stk_diags_free(&d);
}

static void loaded_free(struct loaded *l)
{
    stk_boundary_free(l->b);
    stk_docset_free(l->sb);
    stk_docset_free(l->env);
}

static struct stk_nft_facts facts(const char *ns, bool resolver)
{
    return test_nft_facts(ns, resolver, 23130);
}

struct variant {
    const char *spec, *env;
    bool resolver, proxy_host, no_v4, no_v6, nat;
};

/* Written by write_inputs(): the largest except lists the spec allows
 * (256 blacklistIPs: runs of neighbours that merge into one interval,
 * nested and adjacent networks, the last address of each family) and a
 * sandbox with several declared ports. */
#define BIG_ENV    "/tmp/stk-nftnl-big-env.yaml"
#define PORTS_SPEC "/tmp/stk-nftnl-ports.yaml"

static void write_inputs(void)
{
    FILE *w = fopen(BIG_ENV, "we");
    assert_non_null(w);
    fputs("apiVersion: stockade.dev/v1alpha1\nkind: EnvironmentConfig\nmetadata:\n  name: big\n"
          "data:\n  defaults:\n    security:\n      externalEgress: true\n"
          "  network:\n    externalEgressCIDRs: [\"0.0.0.0/0\", \"::/0\"]\n"
          "    podCIDRs: [10.42.0.0/16, 10.43.0.0/16]\n    serviceCIDR: 10.96.0.0/12\n"
          "    blacklistIPs:\n",
          w);
    for (int i = 1; i <= 150; i++) /* 198.18.0.1-150: one interval */
        fprintf(w, "      - 198.18.0.%d/32\n", i);
    for (int i = 0; i < 40; i += 2) /* every other /24: twenty intervals */
        fprintf(w, "      - 100.64.%d.0/24\n", i);
    fputs("      - 100.65.0.0/16\n      - 100.66.0.0/16\n      - 172.16.0.0/12\n"
          "      - 172.16.5.0/24\n      - 255.255.255.255/32\n      - 169.254.169.254/32\n",
          w);
    for (int i = 1; i <= 60; i++)
        fprintf(w, "      - fd00:%x::/32\n", i);
    fputs("      - fd00:ec2::254/128\n      - ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128\n", w);
    fclose(w);
    w = fopen(PORTS_SPEC, "we");
    assert_non_null(w);
    fputs("apiVersion: stockade.dev/v1alpha1\nkind: Sandbox\nmetadata:\n  name: web\n"
          "  namespace: lab-009\nspec:\n  image: busybox\n  ports:\n"
          "    - {port: 8080, name: http}\n    - {port: 9090, name: metrics}\n"
          "    - {port: 22, name: ssh}\n",
          w);
    fclose(w);
}

/* The goldens' inputs (tests/unit/test_nft.c) and a few more. */
static const struct variant variants[] = {
    {"examples/datalab/s-jeff.yaml", BIG_ENV, true, false, false, false, false},
    {PORTS_SPEC, BIG_ENV, false, true, false, false, false},
    {"examples/datalab/s-jeff.yaml", "examples/datalab/environment.yaml", true, false, false, false,
     false},
    {"examples/datalab/s-jeff.yaml", NULL, true, false, false, false, false},
    {"tests/data/nft-allowlist.yaml", "tests/data/nft-env.yaml", false, false, false, false, false},
    {"tests/data/nft-allowlist.yaml", "tests/data/nft-env.yaml", false, true, false, false, true},
    {"examples/preview.yaml", NULL, false, false, false, false, false},
    {"examples/datalab/s-jeff.yaml", "examples/datalab/environment.yaml", true, false, true, false,
     false},
    {"examples/datalab/s-jeff.yaml", "examples/datalab/environment.yaml", true, false, false, true,
     false},
};

struct texts {
    char *full, *base, *own, *rm;
};

static void render(const struct variant *v, struct loaded *l, struct texts *t)
{
    load(v->spec, v->env, l);
    struct stk_nft_facts f = facts(l->b->namespace, v->resolver);
    f.proxy_host = v->proxy_host;
    f.nat = v->nat;
    if (v->no_v4)
        f.addr4 = f.bridge4 = f.pool4 = (struct stk_cidr){0};
    if (v->no_v6)
        f.addr6 = f.bridge6 = f.pool6 = (struct stk_cidr){0};
    struct stk_error *err = NULL;
    assert_int_equal(stk_nft_render(l->b, &f, &t->full, &err), 0);
    assert_int_equal(stk_nft_render_base(&f, &t->base, &err), 0);
    assert_int_equal(stk_nft_render_own(l->b, &f, &t->own, &err), 0);
    assert_int_equal(stk_nft_render_remove(&f, &t->rm, &err), 0);
}

static void texts_free(struct texts *t)
{
    free(t->full);
    free(t->base);
    free(t->own);
    free(t->rm);
}

/* Every line of every variant compiles; the parts make the whole. */
static void test_compile_subset(void **state)
{
    (void)state;
    for (size_t i = 0; i < STK_ARRAY_SIZE(variants); i++) {
        struct loaded l;
        struct texts t = {0};
        render(&variants[i], &l, &t);
        /* render = comment line + base + the sandbox's own part */
        const char *own_body = strchr(t.own, '\n') + 1;
        _cleanup_free_ char *joined =
            stk_xasprintf("%.*s%s%s", (int)(own_body - t.own), t.own, t.base, own_body);
        assert_string_equal(joined, t.full);
        const char *parts[] = {t.own, t.rm};
        for (size_t p = 0; p < STK_ARRAY_SIZE(parts); p++) {
            _cleanup_buf_ struct stk_buf out = {0};
            size_t n = 0;
            struct stk_error *err = NULL;
            if (stk_nftnl_compile(parts[p], 1, &out, &n, &err) < 0)
                fail_msg("variant %zu: %s", i, err->msg);
            assert_true(n > 5);
            assert_true(out.len > 0);
        }
        texts_free(&t);
        loaded_free(&l);
    }
}

/* Anything outside the subset is refused with the line, and nothing is
 * half-built into a batch the caller would send. */
static void test_compile_refuses(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "flush ruleset",
        "add table inet stockade",
        "add chain inet other c",
        "add chain ip stockade c",
        "add rule inet stockade c ip daddr 10.0.0.1 reject",
        "add rule inet stockade c jump sb-x",
        "add rule inet stockade c ip daddr 10.0.0.1/40 accept",
        "add rule inet stockade c ip daddr fd88::1 accept",
        "add rule inet stockade c ct state bogus accept",
        "add rule inet stockade c tcp dport 70000 accept",
        "add rule inet stockade c limit rate 50/minute burst 100 packets accept",
        "add rule inet stockade c log prefix \"x\" accept",
        "add rule inet stockade c comment \"unterminated",
        "add element inet stockade sb4 { 10.0.0.1 : goto x }",
        "add element inet stockade sb4 { 10.0.0.0/8 }",
        "add set inet stockade s { type ether_addr; }",
        "add rule inet stockade c udp dport { 1, 2 } accept",
        "add rule bridge stockade c arp saddr ip != { 10.0.0.1, 10.0.0.2 } drop",
        "add rule inet stockade c",
    };
    for (size_t i = 0; i < STK_ARRAY_SIZE(bad); i++) {
        _cleanup_buf_ struct stk_buf out = {0};
        size_t n = 0;
        struct stk_error *err = NULL;
        int r = stk_nftnl_compile(bad[i], 1, &out, &n, &err);
        if (r != -ENOTSUP)
            fail_msg("accepted: %s", bad[i]);
        assert_non_null(strstr(err->msg, bad[i]));
        stk_error_freep(&err);
    }
}

/* ---- in the kernel --------------------------------------------------------- */

static bool can_netns(void)
{
    return geteuid() == 0;
}

static int line_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The elements of a set in hash order, which differs from one set to the
 * next: each run of element lines sorted. */
static char *sorted_elements(const char *text)
{
    _cleanup_free_ char *copy = stk_xstrdup(text);
    char **lines = NULL;
    size_t n = 0;
    for (char *p = copy, *nl; *p; p = nl + 1) {
        nl = strchr(p, '\n');
        if (!nl)
            nl = p + strlen(p) - 1;
        else
            *nl = '\0';
        lines = stk_xrealloc(lines, (n + 1) * sizeof(*lines));
        lines[n++] = p;
    }
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && !strncmp(lines[j], "\telement ", 9))
            j++;
        if (j > i)
            qsort(lines + i, j - i, sizeof(*lines), line_cmp);
        i = j > i ? j : i + 1;
    }
    _cleanup_buf_ struct stk_buf out = {0};
    for (size_t i = 0; i < n; i++)
        stk_buf_printf(&out, "%s\n", lines[i]);
    free(lines);
    return stk_buf_steal(&out);
}

/* The ruleset as nft lists it, each rule's bytecode included. */
static char *listing(void)
{
    struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
    assert_non_null(ctx);
    nft_ctx_buffer_output(ctx);
    nft_ctx_buffer_error(ctx);
    nft_ctx_output_set_debug(ctx, NFT_DEBUG_NETLINK);
    assert_int_equal(nft_run_cmd_from_buffer(ctx, "list ruleset"), 0);
    char *out = sorted_elements(nft_ctx_get_output_buffer(ctx));
    nft_ctx_free(ctx);
    return out;
}

static void nft_lib(const char *text)
{
    struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
    assert_non_null(ctx);
    nft_ctx_buffer_output(ctx);
    nft_ctx_buffer_error(ctx);
    if (nft_run_cmd_from_buffer(ctx, text) != 0)
        fail_msg("nft: %s", nft_ctx_get_error_buffer(ctx));
    nft_ctx_free(ctx);
}

static void nftnl(const char *text)
{
    struct stk_error *err = NULL;
    if (stk_nftnl_apply(text, &err) < 0)
        fail_msg("nftnl: %s", err->msg);
}

static void fresh_netns(void)
{
    assert_int_equal(unshare(CLONE_NEWNET), 0);
}

/* Equal, or the first line that differs (cmocka cuts long messages). */
static void same(const char *what, size_t variant, const char *want, const char *got)
{
    if (!strcmp(want, got))
        return;
    size_t at = 0, line = 1;
    while (want[at] && want[at] == got[at]) {
        if (want[at] == '\n')
            line++;
        at++;
    }
    size_t start = at;
    while (start > 0 && want[start - 1] != '\n')
        start--;
    fail_msg("variant %zu, %s: the kernel's rules differ at line %zu\n--- nft:\n%.300s\n"
             "--- nftnl:\n%.300s",
             variant, what, line, want + start, got + start);
}

static void test_kernel_same_as_nft(void **state)
{
    (void)state;
    if (!can_netns())
        skip();
    _cleanup_close_ int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    assert_true(self >= 0);
    for (size_t i = 0; i < STK_ARRAY_SIZE(variants); i++) {
        struct loaded l;
        struct texts t = {0};
        render(&variants[i], &l, &t);

        /* nft: the whole transaction, then its removal */
        fresh_netns();
        nft_lib(t.full);
        _cleanup_free_ char *want = listing();
        nft_lib(t.rm);
        _cleanup_free_ char *want_rm = listing();

        /* the shared part through nft, the sandbox's through nftnl */
        fresh_netns();
        nft_lib(t.base);
        nftnl(t.own);
        _cleanup_free_ char *got = listing();
        nftnl(t.rm);
        _cleanup_free_ char *got_rm = listing();
        /* a second sandbox's worth on top: what the kernel refuses of a
         * repeated removal (elements gone) fails the whole batch */
        struct stk_error *err = NULL;
        assert_int_not_equal(stk_nftnl_apply(t.rm, &err), 0);
        assert_non_null(strstr(err->msg, "nft transaction failed at \"delete element"));
        stk_error_freep(&err);
        assert_int_equal(setns(self, CLONE_NEWNET), 0);

        same("up", i, want, got);
        same("removal", i, want_rm, got_rm);
        texts_free(&t);
        loaded_free(&l);
    }
}

/* A private network namespace, a run directory and a boundary for net.c,
 * as a test's fixture: the teardown, which runs after a failure too, goes
 * back to this process's namespace and removes what the test left (its
 * sandboxes' namespaces, the run directory, the host directory of the
 * private namespace, whose links and rules go with it). */
struct net_env {
    int self;
    ino_t ino;
    char dir[32];
    struct stk_net_config cfg;
    struct loaded l;
};

static int net_env_setup(void **state)
{
    *state = NULL;
    if (!can_netns())
        return 0;
    struct net_env *e = stk_xcalloc(1, sizeof(*e));
    e->self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    struct stat ns;
    if (e->self < 0 || unshare(CLONE_NEWNET) < 0 || stat("/proc/thread-self/ns/net", &ns) < 0)
        return -1;
    e->ino = ns.st_ino;
    snprintf(e->dir, sizeof(e->dir), "/tmp/stk-nftnl-XXXXXX");
    if (!mkdtemp(e->dir))
        return -1;
    stk_net_config_default(&e->cfg);
    e->cfg.run_dir = e->dir;
    load("examples/datalab/s-jeff.yaml", "examples/datalab/environment.yaml", &e->l);
    *state = e;
    return 0;
}

static int net_env_teardown(void **state)
{
    struct net_env *e = *state;
    if (!e)
        return 0;
    int r = setns(e->self, CLONE_NEWNET);
    close(e->self);
    _cleanup_free_ char *netns = stk_xasprintf("%s/netns", e->dir);
    DIR *d = opendir(netns);
    for (struct dirent *de; d && (de = readdir(d));)
        if (de->d_name[0] != '.') {
            _cleanup_free_ char *pin = stk_xasprintf("%s/%s", netns, de->d_name);
            (void)umount2(pin, MNT_DETACH);
        }
    if (d)
        closedir(d);
    _cleanup_free_ char *cmd = stk_xasprintf("rm -rf %s %s/%llu-%s", e->dir, STK_NET_HOST_DIR,
                                             (unsigned long long)e->ino, e->cfg.bridge);
    if (system(cmd) != 0)
        r = -1;
    loaded_free(&e->l);
    free(e);
    return r < 0 ? -1 : 0;
}

static struct net_env *net_env(void **state)
{
    if (!*state)
        skip();
    return *state;
}

/* net.c end to end in a private network namespace: with 12 sandboxes up, a
 * 13th comes up and goes down without libnftables (no ruleset fetched), and
 * what is left is the 12 others' rules, untouched. */
static void test_net_up_down_no_dump(void **state)
{
    struct net_env *env = net_env(state);
    struct stk_net_config cfg = env->cfg;
    struct stk_error *err = NULL;
    enum { N = 12 };
    struct stk_net *nets[N + 1] = {0};
    unsigned long before = stk_net_nft_library_calls();
    for (int i = 0; i < N; i++) {
        _cleanup_free_ char *id = stk_xasprintf("t-%d", i);
        if (stk_net_up(&cfg, env->l.b, id, NULL, &nets[i], &err) < 0)
            fail_msg("up %s: %s", id, err->msg);
    }
    /* the first made the shared objects, through libnftables */
    assert_true(stk_net_nft_library_calls() > before);
    _cleanup_free_ char *others = listing();

    before = stk_net_nft_library_calls();
    if (stk_net_up(&cfg, env->l.b, "t-new", NULL, &nets[N], &err) < 0)
        fail_msg("up t-new: %s", err->msg);
    _cleanup_free_ char *with_new = listing();
    assert_non_null(strstr(with_new, "chain sb-t-new {"));
    assert_int_equal(stk_net_down(nets[N], &err), 0);
    assert_int_equal(stk_net_nft_library_calls(), before);
    assert_int_equal(stk_nftnl_dump_requests(), 0);
    /* the others' chains and dispatch, untouched; nothing of t-new */
    _cleanup_free_ char *after = listing();
    assert_null(strstr(after, "t-new"));
    for (int i = 0; i < N; i++) {
        _cleanup_free_ char *chain = stk_xasprintf("\tchain sb-t-%d {\n", i);
        _cleanup_free_ char *jump = stk_xasprintf(": jump -> sb-t-%d 0 [end]\n", i);
        assert_non_null(strstr(after, chain));
        assert_non_null(strstr(after, jump));
    }
    assert_int_equal(strlen(others), strlen(after));

    /* shared objects made from another text (another version or
     * configuration; here: its mark gone) are made again, once */
    nft_lib("flush set inet stockade base\n");
    before = stk_net_nft_library_calls();
    if (stk_net_up(&cfg, env->l.b, "t-new", NULL, &nets[N], &err) < 0)
        fail_msg("up t-new again: %s", err->msg);
    assert_int_equal(stk_net_nft_library_calls(), before + 1);
    assert_int_equal(stk_net_down(nets[N], &err), 0);
    assert_int_equal(stk_net_nft_library_calls(), before + 1);

    for (int i = 0; i < N; i++)
        assert_int_equal(stk_net_down(nets[i], &err), 0);
    /* the last one took the shared objects with it */
    assert_false(stk_nftnl_table_exists("inet", STK_NFT_TABLE));
    assert_false(stk_nftnl_table_exists("bridge", STK_NFT_TABLE));
}

static void put(const char *path, const char *text)
{
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
}

static bool exists(const char *dir, const char *name)
{
    _cleanup_free_ char *p = stk_xasprintf("%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

static char *lease_text(const char *dir, const char *index)
{
    _cleanup_free_ char *p = stk_xasprintf("%s/%s", dir, index);
    char buf[256] = "";
    _cleanup_close_ int fd = open(p, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_true(read(fd, buf, sizeof(buf) - 1) > 0);
    return stk_xstrdup(buf);
}

/* The host directory is named by the namespace's inode, which a new
 * namespace gets again once the old one is gone: what a gone namespace
 * left there (leases of sandboxes killed with it) is not the new one's.
 * With another namespace's cookie or none, a lease goes when its
 * sandbox's veth is not here, and a live sandbox's stays; with this
 * namespace's, nothing is swept. A sandbox whose address went and was
 * handed out again leaves the new holder's lease alone when it goes. */
static void test_host_dir_of_a_gone_namespace(void **state)
{
    struct net_env *env = net_env(state);
    struct stk_net_config cfg = env->cfg;
    _cleanup_free_ char *host =
        stk_xasprintf("%s/%llu-%s", STK_NET_HOST_DIR, (unsigned long long)env->ino, cfg.bridge);
    _cleanup_free_ char *leases = stk_xasprintf("%s/leases", host);
    /* root's alone, as stockade makes them */
    assert_true(mkdir(STK_NET_HOST_DIR, 0700) == 0 || errno == EEXIST);
    assert_true(mkdir(host, 0700) == 0 || errno == EEXIST);
    assert_true(mkdir(leases, 0700) == 0 || errno == EEXIST);
    _cleanup_free_ char *cookie = stk_xasprintf("%s/cookie", host);
    _cleanup_free_ char *l2 = stk_xasprintf("%s/2", leases);
    _cleanup_free_ char *l3 = stk_xasprintf("%s/3", leases);
    _cleanup_free_ char *l9 = stk_xasprintf("%s/9", leases);
    static const char gone_cookie[] = "18446744073709551615\n";
    static const char gone[] = "t-gone\n/somewhere\n";
    _cleanup_free_ char *mine_a = stk_xasprintf("t-a\n%s\n", env->dir);
    struct stk_error *err = NULL;
    struct stk_net *a = NULL, *b = NULL, *c = NULL, *d = NULL;

    /* a gone namespace's: its cookie, and the first two addresses */
    put(cookie, gone_cookie);
    put(l2, "t-a\n/somewhere\n");
    put(l3, gone);
    if (stk_net_up(&cfg, env->l.b, "t-a", NULL, &a, &err) < 0)
        fail_msg("up t-a: %s", err->msg);
    _cleanup_free_ char *owner = lease_text(leases, "2");
    assert_string_equal(owner, mine_a);
    assert_false(exists(leases, "3"));
    assert_true(exists(host, "cookie"));

    /* another's cookie again: t-a's veth is here, its lease stays */
    put(cookie, gone_cookie);
    put(l9, gone);
    if (stk_net_up(&cfg, env->l.b, "t-b", NULL, &b, &err) < 0)
        fail_msg("up t-b: %s", err->msg);
    assert_true(exists(leases, "2") && exists(leases, "3"));
    assert_false(exists(leases, "9"));

    /* this namespace's cookie: no sweep (one read per lock) */
    put(l9, gone);
    if (stk_net_up(&cfg, env->l.b, "t-c", NULL, &c, &err) < 0)
        fail_msg("up t-c: %s", err->msg);
    assert_true(exists(leases, "4") && exists(leases, "9"));

    /* none (an older stockade's directory): the same check as another's */
    assert_int_equal(unlink(cookie), 0);
    if (stk_net_up(&cfg, env->l.b, "t-d", NULL, &d, &err) < 0)
        fail_msg("up t-d: %s", err->msg);
    assert_false(exists(leases, "9"));
    assert_true(exists(leases, "2") && exists(leases, "3") && exists(leases, "4"));
    assert_true(exists(leases, "5"));

    /* t-a's address handed out again (its lease went as stale): its down
     * leaves the new holder's lease */
    put(l2, gone);
    assert_int_equal(stk_net_down(a, &err), 0);
    _cleanup_free_ char *kept = lease_text(leases, "2");
    assert_string_equal(kept, gone);
    assert_int_equal(unlink(l2), 0);

    assert_int_equal(stk_net_down(b, &err), 0);
    assert_int_equal(stk_net_down(c, &err), 0);
    assert_int_equal(stk_net_down(d, &err), 0);
    /* t-a's chains were left to gc (their set elements may be the new
     * holder's); gc takes them, and with them the shared objects and the
     * directory */
    assert_true(stk_nftnl_table_exists("inet", STK_NFT_TABLE));
    assert_true(stk_net_gc(&cfg, NULL, 0, &err) > 0);
    assert_false(stk_nftnl_table_exists("inet", STK_NFT_TABLE));
    assert_int_equal(access(host, F_OK), -1);
}

static int setup(void **state)
{
    (void)state;
    write_inputs();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (!getenv("STK_NFTNL_KEEP"))
        (void)unlink(BIG_ENV);
    (void)unlink(PORTS_SPEC);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compile_subset),
        cmocka_unit_test(test_compile_refuses),
        cmocka_unit_test(test_kernel_same_as_nft),
        cmocka_unit_test_setup_teardown(test_net_up_down_no_dump, net_env_setup, net_env_teardown),
        cmocka_unit_test_setup_teardown(test_host_dir_of_a_gone_namespace, net_env_setup,
                                        net_env_teardown),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
