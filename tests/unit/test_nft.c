/* SPDX-License-Identifier: Apache-2.0 */
/* The nftables compiler: golden rulesets (Datalab and strict defaults),
 * `nft -c` syntax checks, and facts validation. Agreement with
 * stk_egress_decide() on real packets is tests/e2e/test_egress_local.py.
 * Regenerate the goldens with STK_UPDATE_GOLDEN=1. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <errno.h>
#include <string.h>
#include <sys/wait.h>

#include "render/render.h"
#include "nft_facts.h"

#define ROOT STK_SOURCE_ROOT

static struct stk_boundary *load(const char *spec, const char *env, struct stk_docset **sb,
                                 struct stk_docset **ev)
{
    struct stk_diags d = {0};
    struct stk_boundary *b = NULL;
    _cleanup_free_ char *sp = stk_xasprintf("%s/%s", ROOT, spec);
    _cleanup_free_ char *ep = env ? stk_xasprintf("%s/%s", ROOT, env) : NULL;
    assert_int_equal(stk_docset_load(sp, &d, sb), 0);
    *ev = NULL;
    if (ep)
        assert_int_equal(stk_docset_load(ep, &d, ev), 0);
    assert_int_equal(
        stk_resolve((*sb)->docs[0].sandbox, sp, *ev ? (*ev)->docs[0].env : NULL, ep, &d, &b), 0);
    stk_diags_free(&d);
    return b;
}

static struct stk_nft_facts facts(const char *ns, bool resolver)
{
    return test_nft_facts(ns, resolver, 0);
}

static void golden(const char *name, const char *text)
{
    _cleanup_free_ char *path = stk_xasprintf("%s/tests/golden/%s", ROOT, name);
    if (getenv("STK_UPDATE_GOLDEN")) {
        FILE *w = fopen(path, "we");
        assert_non_null(w);
        fputs(text, w);
        fclose(w);
    }
    _cleanup_fclose_ FILE *r = fopen(path, "re");
    if (!r)
        fail_msg("missing golden %s (run with STK_UPDATE_GOLDEN=1)", path);
    _cleanup_buf_ struct stk_buf want = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), r)) > 0)
        stk_buf_append(&want, chunk, n);
    if (strcmp(stk_buf_str(&want), text))
        fail_msg("%s differs from the compiled ruleset:\n%s", path, text);
}

/* `nft -c -f FILE`: the kernel parses and checks the transaction without
 * committing it. Needs root and nft; skips otherwise. */
static int nft_check(const char *text)
{
    if (geteuid() != 0 || access("/usr/sbin/nft", X_OK) != 0)
        return 77;
    char path[] = "/tmp/stk-nft-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl("/usr/sbin/nft", "nft", "-c", "-f", path, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    unlink(path);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void check_both(const char *spec, const char *env, const char *ns, bool resolver,
                       const char *gold, const char *gold_rm)
{
    struct stk_docset *sb, *ev;
    struct stk_boundary *b = load(spec, env, &sb, &ev);
    struct stk_nft_facts f = facts(ns ? ns : b->namespace, resolver);
    _cleanup_free_ char *text = NULL, *rm = NULL;
    struct stk_error *err = NULL;
    assert_int_equal(stk_nft_render(b, &f, &text, &err), 0);
    golden(gold, text);
    assert_int_equal(stk_nft_render_remove(&f, &rm, &err), 0);
    if (gold_rm)
        golden(gold_rm, rm);
    int rc = nft_check(text);
    if (rc == 77)
        print_message("skipped nft -c: needs root and /usr/sbin/nft\n");
    else if (rc != 0)
        fail_msg("nft -c rejected %s", gold);
    stk_boundary_free(b);
    stk_docset_free(sb);
    stk_docset_free(ev);
}

static void test_datalab(void **state)
{
    (void)state;
    check_both("examples/datalab/s-jeff.yaml", "examples/datalab/environment.yaml", NULL, true,
               "nft-datalab-s-jeff.nft", "nft-remove-s-jeff.nft");
}

static void test_strict_defaults(void **state)
{
    (void)state;
    check_both("examples/datalab/s-jeff.yaml", NULL, NULL, true, "nft-strict-s-jeff.nft", NULL);
}

static void test_allowlist(void **state)
{
    (void)state;
    check_both("tests/data/nft-allowlist.yaml", "tests/data/nft-env.yaml", NULL, false,
               "nft-allowlist.nft", NULL);
}

/* spec.ports: the ingress chain admits exactly the declared ports (beyond
 * replies, neighbour discovery and the namespace's own sandboxes). */
static void test_ingress_ports(void **state)
{
    (void)state;
    check_both("examples/preview.yaml", NULL, NULL, false, "nft-ports-preview.nft", NULL);
    struct stk_docset *sb, *ev;
    struct stk_boundary *b = load("examples/preview.yaml", NULL, &sb, &ev);
    struct stk_nft_facts f = facts(b->namespace, false);
    _cleanup_free_ char *text = NULL, *rm = NULL;
    struct stk_error *err = NULL;
    assert_int_equal(stk_nft_render(b, &f, &text, &err), 0);
    assert_non_null(
        strstr(text, " tcp dport { 8080 } accept comment \"allow-declared-ingress\"\n"));
    /* the deny comes after every accept of the chain */
    const char *deny = strstr(text, "counter drop comment \"deny-ingress\"");
    assert_non_null(deny);
    assert_null(strstr(deny, "accept comment \"allow-declared-ingress\""));
    assert_int_equal(stk_nft_render_remove(&f, &rm, &err), 0);
    assert_non_null(strstr(rm, "delete chain inet stockade si-"));
    stk_boundary_free(b);
    stk_docset_free(sb);
    stk_docset_free(ev);
}

/* A host-side egress proxy (gVisor): the sandbox's chain admits the
 * bridge address on its own port only, the port joins the set that nothing
 * but the bridge reaches, and removal takes it out (whether it was there). */
static void test_proxy_host(void **state)
{
    (void)state;
    struct stk_docset *sb, *ev;
    struct stk_boundary *b =
        load("tests/data/nft-allowlist.yaml", "tests/data/nft-env.yaml", &sb, &ev);
    struct stk_nft_facts f = facts(b->namespace, false);
    _cleanup_free_ char *text = NULL, *plain = NULL, *rm = NULL;
    struct stk_error *err = NULL;
    f.proxy_port = 23130;
    assert_int_equal(stk_nft_render(b, &f, &plain, &err), 0);
    assert_null(strstr(plain, "23130"));
    f.proxy_host = true;
    assert_int_equal(stk_nft_render(b, &f, &text, &err), 0);
    assert_non_null(strstr(text, "add rule inet stockade sb-s-jeff-1 ip daddr 10.88.0.1 tcp dport "
                                 "23130 accept comment \"egress proxy\"\n"));
    assert_non_null(strstr(text, "add element inet stockade px { 23130 }\n"));
    /* the proxy listens on the IPv4 bridge address: nothing else opens */
    assert_null(strstr(text, "fd88::1 tcp dport 23130"));
    assert_non_null(strstr(text, "add rule inet stockade input iifname != \"stk0\" ip daddr "
                                 "10.88.0.1 tcp dport @px counter drop"));
    /* admitted before the host rule drops what is addressed to the host */
    assert_true(strstr(text, "dport 23130 accept") < strstr(text, "fib daddr type { local"));
    assert_int_equal(stk_nft_render_remove(&f, &rm, &err), 0);
    assert_non_null(strstr(rm, "add element inet stockade px { 23130 }\n"
                               "delete element inet stockade px { 23130 }\n"));
    int rc = nft_check(text);
    if (rc != 77)
        assert_int_equal(rc, 0);
    stk_boundary_free(b);
    stk_docset_free(sb);
    stk_docset_free(ev);
}

static void test_text_checks(void **state)
{
    (void)state;
    struct stk_docset *sb, *ev;
    struct stk_boundary *b =
        load("examples/datalab/s-jeff.yaml", "examples/datalab/environment.yaml", &sb, &ev);
    struct stk_nft_facts f = facts(b->namespace, true);
    _cleanup_free_ char *text = NULL;
    struct stk_error *err = NULL;

    /* the metadata endpoints are excepted, per family */
    assert_int_equal(stk_nft_render(b, &f, &text, &err), 0);
    assert_non_null(strstr(text, "ip daddr 0.0.0.0/0 ip daddr != { 169.254.169.254, "
                                 "169.254.42.42, 10.42.0.0/16, 10.43.0.0/16, 10.88.0.0/16 }"));
    assert_non_null(
        strstr(text, "ip6 daddr ::/0 ip6 daddr != { fd00:ec2::254, fd00:42::42, fd88::/64 }"));
    assert_non_null(strstr(text, "log group 7 prefix \"stk:s-jeff-1:\""));
    assert_null(strstr(text, "masquerade"));
    free(TAKE_PTR(text));

    /* NAT only when the operator switch is on */
    f.nat = true;
    assert_int_equal(stk_cidr_parse("10.88.0.0/16", &f.pool4, NULL), 0);
    assert_int_equal(stk_nft_render(b, &f, &text, &err), 0);
    assert_non_null(strstr(text, "ip saddr 10.88.0.0/16 oifname != \"stk0\" masquerade"));
    free(TAKE_PTR(text));
    f.nat = false;

    /* malformed facts never reach nft */
    static const char *const bad_ids[] = {
        "", "A", "-x", "a b", "a;b", "a\"b", "0123456789012345678901234567890123456789012345678"};
    for (size_t i = 0; i < STK_ARRAY_SIZE(bad_ids); i++) {
        f.id = bad_ids[i];
        assert_int_equal(stk_nft_render(b, &f, &text, &err), -EINVAL);
        stk_error_freep(&err);
    }
    f.id = "ok";
    f.veth = "stk-\"; flush ruleset";
    assert_int_equal(stk_nft_render(b, &f, &text, &err), -EINVAL);
    stk_error_freep(&err);
    f.veth = "stk-ok";
    f.addr4.family = STK_FAMILY_V6;
    assert_int_equal(stk_nft_render(b, &f, &text, &err), -EINVAL);
    stk_error_freep(&err);

    stk_boundary_free(b);
    stk_docset_free(sb);
    stk_docset_free(ev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_datalab),     cmocka_unit_test(test_strict_defaults),
        cmocka_unit_test(test_allowlist),   cmocka_unit_test(test_ingress_ports),
        cmocka_unit_test(test_text_checks), cmocka_unit_test(test_proxy_host),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
