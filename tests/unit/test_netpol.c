/* SPDX-License-Identifier: Apache-2.0 */
/* The egress evaluator, table-driven: one table of destinations and
 * expected verdicts per boundary. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <string.h>

#include "boundary/boundary.h"

#define HEAD                                                                                       \
    "apiVersion: stockade.dev/v1alpha1\nkind: Sandbox\nmetadata:\n  name: t\n  namespace: lab\n"
#define ENV_HEAD                                                                                   \
    "apiVersion: stockade.dev/v1alpha1\nkind: EnvironmentConfig\nmetadata:\n  name: env\n"

/* Datalab's network facts with its compatibility default (egress on). */
#define DATALAB_NET                                                                                \
    "  network:\n    externalEgressCIDRs: [0.0.0.0/0, \"::/0\"]\n"                                 \
    "    blacklistIPs: [169.254.169.254/32, 169.254.42.42/32, fd00:ec2::254/128, "                 \
    "fd00:42::42/128]\n    podCIDRs: [10.42.0.0/16]\n    serviceCIDR: 10.43.0.0/16\n"

struct probe {
    const char *addr; /* NULL: a pod named by namespace only */
    const char *ns;
    uint16_t port;
    enum stk_protocol proto;
    bool allowed;
    enum stk_netpol policy; /* allowing policy, or for a deny the excepting one */
    bool excepted;
};

struct table {
    const char *name;
    const char *spec;
    const char *env;
    const struct probe *probes;
    size_t n;
};

static void run_table(const struct table *t)
{
    struct stk_diags d = {0};
    struct stk_docset *sb = NULL, *env = NULL;
    struct stk_boundary *b = NULL;
    _cleanup_free_ char *sbt = stk_xasprintf(HEAD "%s", t->spec);
    _cleanup_free_ char *envt = t->env ? stk_xasprintf(ENV_HEAD "%s", t->env) : NULL;
    assert_int_equal(stk_docset_parse("sb", sbt, strlen(sbt), &d, &sb), 0);
    if (envt)
        assert_int_equal(stk_docset_parse("env", envt, strlen(envt), &d, &env), 0);
    if (stk_resolve(sb->docs[0].sandbox, "sb", env ? env->docs[0].env : NULL, "env", &d, &b) < 0)
        fail_msg("%s: does not resolve", t->name);
    for (size_t i = 0; i < t->n; i++) {
        const struct probe *p = &t->probes[i];
        struct stk_dest dest = {.namespace = p->ns, .port = p->port, .protocol = p->proto};
        if (p->addr) {
            assert_int_equal(stk_addr_parse(p->addr, &dest.addr), 0);
            dest.has_addr = true;
        }
        struct stk_verdict v;
        assert_int_equal(stk_egress_decide(b, &dest, &v), 0);
        if (v.allowed != p->allowed)
            fail_msg("%s: %s ns=%s port %u: expected %s", t->name, p->addr ? p->addr : "-",
                     p->ns ? p->ns : "-", p->port, p->allowed ? "allow" : "deny");
        if (p->allowed && v.isolated && v.policy != p->policy)
            fail_msg("%s: %s allowed by %s, expected %s", t->name, p->addr ? p->addr : p->ns,
                     stk_netpol_names[v.policy], stk_netpol_names[p->policy]);
        if (!p->allowed && v.excepted != p->excepted)
            fail_msg("%s: %s: excepted=%d, expected %d", t->name, p->addr ? p->addr : p->ns,
                     v.excepted, p->excepted);
        if (!p->allowed && p->excepted && v.except_policy != p->policy)
            fail_msg("%s: %s excepted by %s", t->name, p->addr, stk_netpol_names[v.except_policy]);
    }
    stk_boundary_free(b);
    stk_docset_free(sb);
    stk_docset_free(env);
    stk_diags_free(&d);
}

#define TCP  STK_PROTO_TCP
#define UDP  STK_PROTO_UDP
#define N(x) x, STK_ARRAY_SIZE(x)

static void test_strict_defaults(void **state)
{
    (void)state;
    static const struct probe probes[] = {
        {NULL, "lab", 8080, TCP, true, STK_NETPOL_NAMESPACE, false},
        {"10.42.0.7", "lab", 80, TCP, true, STK_NETPOL_NAMESPACE, false},
        {NULL, "kube-system", 53, UDP, false, STK_NETPOL_DENY, false},
        {NULL, "other", 80, TCP, false, STK_NETPOL_DENY, false},
        {"169.254.169.254", NULL, 80, TCP, false, STK_NETPOL_DENY, false},
        {"203.0.113.10", NULL, 443, TCP, false, STK_NETPOL_DENY, false},
        {"2001:db8::10", NULL, 443, TCP, false, STK_NETPOL_DENY, false},
    };
    static const struct table t = {"strict defaults", "", NULL, N(probes)};
    run_table(&t);
}

static void test_datalab_external_egress(void **state)
{
    (void)state;
    static const struct probe probes[] = {
        {NULL, "kube-system", 53, UDP, true, STK_NETPOL_DNS, false},
        {NULL, "kube-system", 53, TCP, true, STK_NETPOL_DNS, false},
        {NULL, "kube-system", 443, TCP, false, STK_NETPOL_DENY, false},
        {"203.0.113.10", NULL, 443, TCP, true, STK_NETPOL_EXTERNAL, false},
        {"203.0.113.10", NULL, 0, UDP, true, STK_NETPOL_EXTERNAL, false},
        {"2001:db8::10", NULL, 443, TCP, true, STK_NETPOL_EXTERNAL, false},
        /* the four metadata endpoints, each excepted in its own family */
        {"169.254.169.254", NULL, 80, TCP, false, STK_NETPOL_EXTERNAL, true},
        {"169.254.42.42", NULL, 80, TCP, false, STK_NETPOL_EXTERNAL, true},
        {"fd00:ec2::254", NULL, 80, TCP, false, STK_NETPOL_EXTERNAL, true},
        {"fd00:42::42", NULL, 80, TCP, false, STK_NETPOL_EXTERNAL, true},
        /* pod and service networks are excepted from broad egress */
        {"10.42.3.4", NULL, 80, TCP, false, STK_NETPOL_EXTERNAL, true},
        {"10.43.0.1", NULL, 443, TCP, false, STK_NETPOL_EXTERNAL, true},
        /* ... but a pod in the same namespace is reachable as a pod */
        {"10.42.3.4", "lab", 80, TCP, true, STK_NETPOL_NAMESPACE, false},
        /* an address next to the metadata one is not excepted */
        {"169.254.169.253", NULL, 80, TCP, true, STK_NETPOL_EXTERNAL, false},
    };
    static const struct table t = {"datalab", "",
                                   "data:\n  defaults:\n    security:\n"
                                   "      externalEgress: true\n" DATALAB_NET,
                                   N(probes)};
    run_table(&t);
}

static void test_external_egress_off_by_spec(void **state)
{
    (void)state;
    /* the spec's false beats the environment's true: no DNS, no internet */
    static const struct probe probes[] = {
        {NULL, "kube-system", 53, UDP, false, STK_NETPOL_DENY, false},
        {"203.0.113.10", NULL, 443, TCP, false, STK_NETPOL_DENY, false},
        {NULL, "lab", 80, TCP, true, STK_NETPOL_NAMESPACE, false},
    };
    static const struct table t = {"spec overrides environment",
                                   "spec:\n  network:\n    externalEgress: false\n",
                                   "data:\n  defaults:\n    security:\n"
                                   "      externalEgress: true\n" DATALAB_NET,
                                   N(probes)};
    run_table(&t);
}

static void test_allowlist_ports_and_ranges(void **state)
{
    (void)state;
    static const struct probe probes[] = {
        {"203.0.113.10", NULL, 443, TCP, true, STK_NETPOL_ALLOWLIST, false},
        {"203.0.113.10", NULL, 80, TCP, false, STK_NETPOL_DENY, false},
        {"203.0.113.10", NULL, 443, UDP, false, STK_NETPOL_DENY, false},
        {"203.0.113.200", NULL, 443, TCP, false, STK_NETPOL_ALLOWLIST, true},
        {"198.51.100.1", NULL, 8000, TCP, true, STK_NETPOL_ALLOWLIST, false},
        {"198.51.100.1", NULL, 8080, TCP, true, STK_NETPOL_ALLOWLIST, false},
        {"198.51.100.1", NULL, 8081, TCP, false, STK_NETPOL_DENY, false},
        {"198.51.100.1", NULL, 7999, TCP, false, STK_NETPOL_DENY, false},
        {"198.51.100.1", NULL, 0, TCP, false, STK_NETPOL_DENY, false},
        {"2001:db8::1", NULL, 53, UDP, true, STK_NETPOL_ALLOWLIST, false},
        /* the default blacklist is added to an allowlist rule of its family */
        {"169.254.169.254", NULL, 80, TCP, false, STK_NETPOL_ALLOWLIST, true},
        {"169.254.1.1", NULL, 80, TCP, true, STK_NETPOL_ALLOWLIST, false},
        {"fd00:ec2::254", NULL, 53, UDP, false, STK_NETPOL_ALLOWLIST, true},
    };
    static const struct table t = {
        "allowlist",
        "spec:\n  network:\n    egress:\n"
        "      - cidr: 203.0.113.0/24\n        except: [203.0.113.128/25]\n"
        "        ports: [{port: 443}]\n"
        "      - cidr: 198.51.100.0/24\n        ports: [{protocol: TCP, port: 8000, endPort: "
        "8080}]\n"
        "      - cidr: \"fd00::/8\"\n        ports: [{protocol: UDP, port: 53}]\n"
        "      - cidr: \"2001:db8::/32\"\n        ports: [{protocol: UDP}]\n"
        "      - cidr: 169.254.0.0/16\n",
        NULL, N(probes)};
    run_table(&t);
}

static void test_internal_egress_selectors(void **state)
{
    (void)state;
    static const struct kv_probe {
        const char *ns;
        const char *app;
        uint16_t port;
        bool allowed;
    } probes[] = {
        {"db", "pg", 5432, true},  {"db", "pg", 5433, false}, {"db", "redis", 5432, false},
        {"db", NULL, 5432, false}, {"mon", NULL, 9090, true}, {"mon", "x", 1, true},
    };
    struct stk_diags d = {0};
    struct stk_docset *sb = NULL, *env = NULL;
    struct stk_boundary *b = NULL;
    const char *spec = HEAD "spec:\n  network:\n    internalEgress:\n      - namespace: db\n"
                            "        podSelector: {matchLabels: {app: pg}}\n"
                            "        ports: [{port: 5432}]\n";
    const char *envt = ENV_HEAD "data:\n  network:\n    internalEgress: [{namespace: mon}]\n";
    assert_int_equal(stk_docset_parse("sb", spec, strlen(spec), &d, &sb), 0);
    assert_int_equal(stk_docset_parse("env", envt, strlen(envt), &d, &env), 0);
    assert_int_equal(stk_resolve(sb->docs[0].sandbox, "sb", env->docs[0].env, "env", &d, &b), 0);
    for (size_t i = 0; i < STK_ARRAY_SIZE(probes); i++) {
        struct stk_kv label = {.key = "app", .value = probes[i].app};
        struct stk_dest dest = {.namespace = probes[i].ns,
                                .port = probes[i].port,
                                .labels = &label,
                                .n_labels = probes[i].app ? 1 : 0};
        struct stk_verdict v;
        assert_int_equal(stk_egress_decide(b, &dest, &v), 0);
        if (v.allowed != probes[i].allowed)
            fail_msg("internal %zu: %s", i, v.allowed ? "allowed" : "denied");
        if (v.allowed)
            assert_int_equal(v.policy, STK_NETPOL_INTERNAL);
    }
    stk_boundary_free(b);
    stk_docset_free(sb);
    stk_docset_free(env);
    stk_diags_free(&d);
}

static void test_excluded_everything_is_unrestricted(void **state)
{
    (void)state;
    static const struct probe probes[] = {
        {"169.254.169.254", NULL, 80, TCP, true, STK_NETPOL_DENY, false},
        {NULL, "other", 80, TCP, true, STK_NETPOL_DENY, false},
    };
    static const struct table t = {
        "nothing left", "",
        "data:\n  network:\n    excludePolicies: [deny-egress, allow-namespace-egress]\n",
        N(probes)};
    run_table(&t);
}

/* What the local backend adds to the model's verdict: one row per class of
 * destination, allowed or denied by the model, with and without NAT. */
/* The ingress evaluator: declared TCP ports from anywhere, the namespace's
 * own sandboxes on any port, nothing else. */
static void test_ingress(void **state)
{
    (void)state;
    static const struct {
        const char *ports; /* spec text under spec: */
        bool from_ns;
        uint16_t port;
        enum stk_protocol proto;
        const char *rule;
    } cases[] = {
        {"  ports: [{port: 8080, name: http}, {port: 3000}]\n", false, 8080, TCP,
         STK_INGRESS_DECLARED},
        {"  ports: [{port: 8080, name: http}, {port: 3000}]\n", false, 3000, TCP,
         STK_INGRESS_DECLARED},
        {"  ports: [{port: 8080, name: http}, {port: 3000}]\n", false, 8081, TCP, STK_INGRESS_DENY},
        {"  ports: [{port: 8080, name: http}, {port: 3000}]\n", false, 8080, UDP, STK_INGRESS_DENY},
        {"  ports: [{port: 8080, name: http}, {port: 3000}]\n", true, 22, TCP, STK_INGRESS_SANDBOX},
        {"  command: [x]\n", false, 8080, TCP, STK_INGRESS_DENY},
        {"  command: [x]\n", false, 0, TCP, STK_INGRESS_DENY},
        {"  command: [x]\n", true, 8080, UDP, STK_INGRESS_SANDBOX},
    };
    for (size_t i = 0; i < STK_ARRAY_SIZE(cases); i++) {
        struct stk_diags d = {0};
        struct stk_docset *sb = NULL;
        struct stk_boundary *b = NULL;
        _cleanup_free_ char *text = stk_xasprintf(HEAD "spec:\n%s", cases[i].ports);
        assert_int_equal(stk_docset_parse("sb", text, strlen(text), &d, &sb), 0);
        assert_int_equal(stk_resolve(sb->docs[0].sandbox, "sb", NULL, NULL, &d, &b), 0);
        struct stk_ingress_verdict v;
        assert_int_equal(stk_ingress_decide(b, cases[i].from_ns, cases[i].port, cases[i].proto, &v),
                         0);
        if (strcmp(v.rule, cases[i].rule) || v.allowed != (strcmp(v.rule, STK_INGRESS_DENY) != 0))
            fail_msg("case %zu: %s (%s)", i, v.rule, v.allowed ? "allowed" : "denied");
        if (v.port && v.port->port != cases[i].port)
            fail_msg("case %zu: declared port %u", i, v.port->port);
        assert_true(!strcmp(v.rule, STK_INGRESS_DECLARED) == (v.port != NULL));
        stk_boundary_free(b);
        stk_docset_free(sb);
        stk_diags_free(&d);
    }
}

static void test_local_paths(void **state)
{
    (void)state;
    struct stk_cidr host[2];
    assert_int_equal(stk_cidr_parse("192.0.2.7/32", &host[0], NULL), 0);
    assert_int_equal(stk_cidr_parse("10.88.0.1/32", &host[1], NULL), 0); /* the bridge */
    struct stk_local_facts f = {.host_addrs = host, .n_host_addrs = 2};
    assert_int_equal(stk_cidr_parse("10.88.0.0/16", &f.pool4, NULL), 0);
    assert_int_equal(stk_cidr_parse("fd88::/64", &f.pool6, NULL), 0);
    static const struct {
        const char *addr;
        bool allowed;
        enum stk_netpol policy;
        bool nat;
        enum stk_local_path want;
    } rows[] = {
        {"192.0.2.7", true, STK_NETPOL_EXTERNAL, false, STK_LOCAL_HOST_DROPPED},
        {"192.0.2.7", true, STK_NETPOL_EXTERNAL, true, STK_LOCAL_HOST_DROPPED},
        {"10.88.0.1", true, STK_NETPOL_ALLOWLIST, false, STK_LOCAL_HOST_DROPPED},
        {"10.88.0.1", true, STK_NETPOL_DNS, false, STK_LOCAL_AS_MODELLED}, /* DNS first */
        /* a resolver off the host: DNS passes the host rule, not the offhost one */
        {"203.0.113.53", true, STK_NETPOL_DNS, false, STK_LOCAL_OFFHOST_DROPPED},
        {"203.0.113.53", true, STK_NETPOL_DNS, true, STK_LOCAL_AS_MODELLED},
        {"224.0.0.251", true, STK_NETPOL_EXTERNAL, true, STK_LOCAL_HOST_DROPPED},
        {"ff02::fb", true, STK_NETPOL_EXTERNAL, true, STK_LOCAL_HOST_DROPPED},
        {"192.0.2.7", false, STK_NETPOL_DENY, false, STK_LOCAL_AS_MODELLED},
        {"10.88.3.4", true, STK_NETPOL_NAMESPACE, false, STK_LOCAL_AS_MODELLED},
        {"fd88::9", true, STK_NETPOL_NAMESPACE, false, STK_LOCAL_AS_MODELLED},
        {"203.0.113.10", true, STK_NETPOL_EXTERNAL, false, STK_LOCAL_OFFHOST_DROPPED},
        {"2001:db8::10", true, STK_NETPOL_EXTERNAL, false, STK_LOCAL_OFFHOST_DROPPED},
        {"203.0.113.10", true, STK_NETPOL_EXTERNAL, true, STK_LOCAL_AS_MODELLED},
        {"203.0.113.10", false, STK_NETPOL_DENY, false, STK_LOCAL_AS_MODELLED},
        {"127.0.0.1", false, STK_NETPOL_DENY, false, STK_LOCAL_LOOPBACK},
        {"::1", true, STK_NETPOL_EXTERNAL, false, STK_LOCAL_LOOPBACK},
    };
    for (size_t i = 0; i < STK_ARRAY_SIZE(rows); i++) {
        struct stk_dest d = {.has_addr = true};
        assert_int_equal(stk_addr_parse(rows[i].addr, &d.addr), 0);
        struct stk_verdict v = {
            .allowed = rows[i].allowed, .isolated = true, .policy = rows[i].policy};
        f.nat = rows[i].nat;
        enum stk_local_path got = stk_egress_local(&f, &d, &v);
        if (got != rows[i].want)
            fail_msg("%s (allowed %d by %s, nat %d): got %d, want %d", rows[i].addr,
                     rows[i].allowed, stk_netpol_names[rows[i].policy], rows[i].nat, got,
                     rows[i].want);
    }
    /* routed, like nat, lets allowed traffic leave; a pod by namespace
     * only is another sandbox */
    struct stk_dest d = {.has_addr = true};
    assert_int_equal(stk_addr_parse("203.0.113.10", &d.addr), 0);
    struct stk_verdict v = {.allowed = true, .isolated = true, .policy = STK_NETPOL_EXTERNAL};
    f.nat = false;
    f.routed = true;
    assert_int_equal(stk_egress_local(&f, &d, &v), STK_LOCAL_AS_MODELLED);
    struct stk_dest pod = {.namespace = "lab"};
    assert_int_equal(stk_egress_local(&f, &pod, &v), STK_LOCAL_AS_MODELLED);
    for (int p = 0; p < _STK_LOCAL_PATH_N; p++)
        assert_non_null(stk_local_path_reasons[p]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strict_defaults),
        cmocka_unit_test(test_ingress),
        cmocka_unit_test(test_datalab_external_egress),
        cmocka_unit_test(test_external_egress_off_by_spec),
        cmocka_unit_test(test_allowlist_ports_and_ranges),
        cmocka_unit_test(test_internal_egress_selectors),
        cmocka_unit_test(test_excluded_everything_is_unrestricted),
        cmocka_unit_test(test_local_paths),
    };
    return cmocka_run_group_tests_name("netpol", tests, NULL, NULL);
}
