/* SPDX-License-Identifier: Apache-2.0 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <string.h>

#include "boundary/boundary.h"

#define EXAMPLES STK_SOURCE_ROOT "/examples/"

#define HEAD "apiVersion: stockade.dev/v1alpha1\nkind: Sandbox\nmetadata:\n  name: t\n"
#define ENV_HEAD                                                                                   \
    "apiVersion: stockade.dev/v1alpha1\nkind: EnvironmentConfig\nmetadata:\n  name: env\n"

struct fixture {
    struct stk_docset *sb;
    struct stk_docset *env;
    struct stk_boundary *b;
    struct stk_diags d;
};

static void fixture_free(struct fixture *f)
{
    stk_boundary_free(f->b);
    stk_docset_free(f->sb);
    stk_docset_free(f->env);
    stk_diags_free(&f->d);
    memset(f, 0, sizeof(*f));
}

static struct stk_docset *parse(struct fixture *f, const char *name, const char *text)
{
    struct stk_docset *ds = NULL;
    if (stk_docset_parse(name, text, strlen(text), &f->d, &ds) < 0)
        fail_msg("%s does not parse", name);
    return ds;
}

/* Resolves; returns the stk_resolve result. */
static int resolve(struct fixture *f, const char *sb, const char *env)
{
    f->sb = parse(f, "sb.yaml", sb);
    if (env)
        f->env = parse(f, "env.yaml", env);
    return stk_resolve(f->sb->docs[0].sandbox, "sb.yaml", env ? f->env->docs[0].env : NULL,
                       env ? "env.yaml" : NULL, &f->d, &f->b);
}

static void resolve_ok(struct fixture *f, const char *sb, const char *env)
{
    if (resolve(f, sb, env) < 0) {
        for (size_t i = 0; i < f->d.n; i++) {
            _cleanup_free_ char *line = stk_diag_format(&f->d.items[i]);
            print_message("%s\n", line);
        }
        fail_msg("expected the sandbox to resolve");
    }
}

static void assert_source(const struct stk_boundary *b, const char *path, const char *value,
                          enum stk_source src, uint32_t line)
{
    const struct stk_setting *s = stk_boundary_setting(b, path);
    if (!s)
        fail_msg("no setting %s", path);
    if (strcmp(s->value, value))
        fail_msg("%s = %s, want %s", path, s->value, value);
    if (s->origin.source != src)
        fail_msg("%s came from %s, want %s", path, stk_source_names[s->origin.source],
                 stk_source_names[src]);
    assert_int_equal(s->origin.pos.line, line);
}

/* ---- the defaults chain ------------------------------------------------------- */

static void test_hard_defaults_are_strict(void **state)
{
    (void)state;
    struct fixture f = {0};
    resolve_ok(&f, HEAD, NULL);
    const struct stk_boundary *b = f.b;
    assert_int_equal(b->policy, STK_POLICY_RESTRICTED);
    assert_false(b->kube_access);
    assert_int_equal(b->kube_role, STK_ROLE_VIEW);
    assert_false(b->external_egress);
    assert_int_equal(b->runtime, STK_RUNTIME_DEFAULT);
    assert_int_equal(b->n_caps, 0);
    assert_false(b->docker || b->registry || b->vcluster || b->home);
    assert_int_equal(b->limits.memory, INT64_C(512) << 20);
    assert_int_equal(b->limits.pids, 256);
    assert_int_equal(b->limits.wall_clock_ms, 0);
    assert_string_equal(b->namespace, "default");
    assert_string_equal(b->rootfs, "host");
    assert_int_equal(b->n_blacklist, 4);
    for (size_t i = 0; i < b->n_settings; i++)
        if (b->settings[i].origin.source != STK_SRC_DEFAULT)
            fail_msg("%s is not a default", b->settings[i].path);
    /* egress: deny + namespace only */
    assert_int_equal(b->egress.n, 2);
    assert_int_equal(b->egress.policies[0].id, STK_NETPOL_DENY);
    assert_int_equal(b->egress.policies[0].n_rules, 0);
    assert_int_equal(b->egress.policies[1].id, STK_NETPOL_NAMESPACE);
    fixture_free(&f);
}

static void test_provenance_spec_env_default(void **state)
{
    (void)state;
    struct fixture f = {0};
    resolve_ok(&f, HEAD "spec:\n  security:\n    policy: baseline\n  resources:\n    memory: 1Gi\n",
               ENV_HEAD "data:\n  defaults:\n    security:\n      policy: privileged\n"
                        "      kubernetesAccess: true\n    resources:\n      memory: 2Gi\n"
                        "      pids: 100\n    runtime: runc\n");
    const struct stk_boundary *b = f.b;
    /* spec beats environment beats default */
    assert_source(b, "spec.security.policy", "baseline", STK_SRC_SPEC, 7);
    assert_source(b, "spec.security.kubernetesAccess", "true", STK_SRC_ENVIRONMENT, 9);
    assert_source(b, "spec.security.kubernetesRole", "view", STK_SRC_DEFAULT, 0);
    assert_source(b, "spec.resources.memory", "1Gi", STK_SRC_SPEC, 9);
    assert_source(b, "spec.resources.pids", "100", STK_SRC_ENVIRONMENT, 12);
    assert_source(b, "spec.resources.cpu", "1", STK_SRC_DEFAULT, 0);
    assert_source(b, "spec.runtime", "runc", STK_SRC_ENVIRONMENT, 13);
    const struct stk_setting *s = stk_boundary_setting(b, "spec.security.kubernetesAccess");
    assert_string_equal(s->origin.file, "env.yaml");
    assert_string_equal(s->origin.path, "data.defaults.security.kubernetesAccess");
    assert_true(b->kube_access);
    assert_int_equal(b->policy, STK_POLICY_BASELINE);
    fixture_free(&f);
}

static void test_default_text_for_docs(void **state)
{
    (void)state;
    assert_string_equal(stk_boundary_default_text("spec.security.policy", NULL), "restricted");
    assert_string_equal(stk_boundary_default_text("spec.network.externalEgress", NULL), "false");
    assert_string_equal(stk_boundary_default_text("spec.resources.memory", NULL), "512Mi");
    assert_string_equal(stk_boundary_default_text("spec.resources.wallClock", NULL), "none");
    assert_null(stk_boundary_default_text("spec.image", NULL));
}

/* ---- cross-field rules ---------------------------------------------------------- */

struct rule_case {
    const char *name;
    const char *spec; /* appended to HEAD */
    const char *env;  /* appended to ENV_HEAD, or NULL */
    const char *want; /* the first diagnostic, formatted */
};

static void run_rule_cases(const struct rule_case *cases, size_t n, bool errors)
{
    for (size_t i = 0; i < n; i++) {
        struct fixture f = {0};
        _cleanup_free_ char *sb = stk_xasprintf(HEAD "%s", cases[i].spec);
        _cleanup_free_ char *env = cases[i].env ? stk_xasprintf(ENV_HEAD "%s", cases[i].env) : NULL;
        int r = resolve(&f, sb, env);
        if (errors != (r < 0))
            fail_msg("%s: expected %s", cases[i].name, errors ? "an error" : "success");
        if (f.d.n == 0)
            fail_msg("%s: no diagnostic", cases[i].name);
        _cleanup_free_ char *got = stk_diag_format(&f.d.items[0]);
        if (strcmp(got, cases[i].want))
            fail_msg("%s:\n got: %s\nwant: %s", cases[i].name, got, cases[i].want);
        fixture_free(&f);
    }
}

static void test_cross_field_errors(void **state)
{
    (void)state;
    static const struct rule_case cases[] = {
        {"injection forbids home",
         "spec:\n  deployment:\n    model: injection\n    target: {kind: Deployment, name: web}\n"
         "  storage:\n    home: {size: 1Gi}\n",
         NULL,
         "sb.yaml:10:11: error: spec.storage.home: not available with injection: the workload "
         "may run several replicas, which would share one home volume and corrupt it"},
        {"injection forbids docker",
         "spec:\n  deployment:\n    model: injection\n    target: {kind: Deployment, name: web}\n"
         "  security: {policy: privileged, docker: true}\n",
         NULL,
         "sb.yaml:9:42: error: spec.security.docker: not available with injection: an injected "
         "sandbox debugs a running service; it does not build images"},
        {"injection forbids network policies",
         "spec:\n  deployment:\n    model: injection\n    target: {kind: DaemonSet, name: agent}\n"
         "  network: {externalEgress: true}\n",
         NULL,
         "sb.yaml:9:12: error: spec.network: not available with injection: the sandbox joins the "
         "workload's network namespace, so NetworkPolicies cannot apply to it alone; the "
         "workload's own policies govern its traffic"},
        {"injection needs a target", "spec:\n  deployment:\n    model: injection\n", NULL,
         "sb.yaml:7:12: error: spec.deployment.target: injection needs a target workload (kind, "
         "name)"},
        {"standalone takes no target",
         "spec:\n  deployment:\n    target: {kind: Deployment, name: web}\n", NULL,
         "sb.yaml:7:13: error: spec.deployment.target: applies only to deployment.model: "
         "injection"},
        {"docker needs privileged", "spec:\n  security:\n    docker: true\n", NULL,
         "sb.yaml:7:13: error: spec.security.docker: docker needs security.policy: privileged "
         "(the sidecar is a privileged Docker daemon); the policy is restricted (hard default)"},
        {"registry needs privileged, even with an environment default",
         "spec:\n  security:\n    registry: true\n",
         "data:\n  defaults:\n    security:\n      policy: baseline\n",
         "sb.yaml:7:15: error: spec.security.registry: registry needs security.policy: privileged "
         "(registry writes are an operator exception); the policy is baseline (environment "
         "env.yaml:8:15)"},
        {"restricted allows only NET_BIND_SERVICE",
         "spec:\n  security:\n    capabilities:\n      add: [NET_BIND_SERVICE, CHOWN]\n", NULL,
         "sb.yaml:8:31: error: spec.security.capabilities.add[1]: CHOWN is not allowed at policy "
         "restricted (hard default); it needs policy baseline"},
        {"SYS_PTRACE needs privileged",
         "spec:\n  security:\n    policy: baseline\n    capabilities:\n      add: [SYS_PTRACE]\n",
         NULL,
         "sb.yaml:9:13: error: spec.security.capabilities.add[0]: SYS_PTRACE is not allowed at "
         "policy baseline (spec sb.yaml:7:13); it needs policy privileged"},
        {"environment limit", "spec:\n  resources:\n    memory: 4Gi\n",
         "data:\n  limits:\n    resources:\n      memory: 2Gi\n",
         "sb.yaml:7:13: error: spec.resources.memory: 4Gi is above the environment's limit of "
         "2Gi (data.limits.resources.memory in env.yaml:8:15)"},
        {"limit on a deadline catches none", "spec: {}\n",
         "data:\n  limits:\n    resources:\n      wallClock: 1h\n",
         "sb.yaml: error: spec.resources.wallClock: no limit is above the environment's limit of "
         "1h (data.limits.resources.wallClock in env.yaml:8:18)"},
        {"except outside cidr",
         "spec:\n  network:\n    egress:\n      - cidr: 10.0.0.0/8\n        except: [11.0.0.0/8]\n",
         NULL,
         "sb.yaml:9:18: error: spec.network.egress[0].except[0]: 11.0.0.0/8 must lie strictly "
         "inside the rule's cidr 10.0.0.0/8 (same family)"},
        {"except of the other family",
         "spec:\n  network:\n    egress:\n      - cidr: 10.0.0.0/8\n        except: [\"::/0\"]\n",
         NULL,
         "sb.yaml:9:18: error: spec.network.egress[0].except[0]: ::/0 must lie strictly inside "
         "the rule's cidr 10.0.0.0/8 (same family)"},
        {"allowlist into the blacklist",
         "spec:\n  network:\n    egress:\n      - cidr: 169.254.169.254/32\n", NULL,
         "sb.yaml:8:15: error: spec.network.egress[0].cidr: 169.254.169.254/32 lies inside the "
         "blacklisted network 169.254.169.254/32 (hard default), which is never reachable"},
        {"endPort below port",
         "spec:\n  network:\n    egress:\n      - cidr: 10.0.0.0/8\n        ports: [{port: 90, "
         "endPort: 80}]\n",
         NULL,
         "sb.yaml:9:37: error: spec.network.egress[0].ports[0].endPort: endPort 80 is below port "
         "90"},
        {"endPort without port",
         "spec:\n  network:\n    egress:\n      - cidr: 10.0.0.0/8\n        ports: [{endPort: "
         "80}]\n",
         NULL,
         "sb.yaml:9:27: error: spec.network.egress[0].ports[0].endPort: endPort needs port (the "
         "first port of the range)"},
        {"selector In without values",
         "spec:\n  network:\n    internalEgress:\n      - namespace: db\n        podSelector:\n"
         "          matchExpressions: [{key: app, operator: In}]\n",
         NULL,
         "sb.yaml:10:30: error: spec.network.internalEgress[0].podSelector.matchExpressions[0]."
         "values: operator In needs at least one value"},
        {"duplicate env", "spec:\n  env: [{name: A, value: x}, {name: A, value: y}]\n", NULL,
         "sb.yaml:6:37: error: spec.env[1].name: duplicate variable \"A\" (first at line 6)"},
        {"reserved env prefix", "spec:\n  env: [{name: STOCKADE_TOKEN, value: x}]\n", NULL,
         "sb.yaml:6:16: error: spec.env[0].name: names starting with STOCKADE_ are reserved for "
         "stockade"},
        {"warm pool needs a name",
         "spec:\n  driverConfig:\n    kubernetes:\n      allocation: {mode: warmPool}\n", NULL,
         "sb.yaml:8:26: error: spec.driverConfig.kubernetes.allocation.warmPool: allocation mode "
         "warmPool needs the name of the warm pool"},
        {"secret ref syntax",
         "spec:\n  bindings:\n    - name: gh\n      url: https://api.github.com\n"
         "      credential: {source: kubernetesSecret, ref: \"a/b/c\", key: k}\n",
         NULL,
         "sb.yaml:9:51: error: spec.bindings[0].credential.ref: source kubernetesSecret needs "
         "NAME or NAMESPACE/NAME of a Secret"},
        {"duplicate binding",
         "spec:\n  bindings:\n    - {name: gh, url: \"https://a\", credential: {source: env, ref: "
         "A}}\n    - {name: gh, url: \"https://b\", credential: {source: env, ref: B}}\n",
         NULL, "sb.yaml:8:14: error: spec.bindings[1]: duplicate binding name \"gh\""},
        {"tmpfs within memory",
         "spec:\n  resources: {memory: 64Mi}\n  driverConfig:\n    local: {tmpSize: 32Mi, "
         "shmSize: 32Mi}\n",
         NULL,
         "sb.yaml:8:22: error: spec.driverConfig.local.tmpSize: tmpSize (32Mi) + shmSize (32Mi) "
         "must be below the memory limit (64Mi): tmpfs pages are charged to the sandbox's "
         "memory"},
        /* the size the spec set is named, and the defaulted one says so */
        {"explicit tmpSize over a small limit",
         "spec:\n  resources: {memory: 16Mi}\n  driverConfig:\n    local: {tmpSize: 12Mi}\n", NULL,
         "sb.yaml:8:22: error: spec.driverConfig.local.tmpSize: tmpSize (12Mi) + shmSize (4Mi, "
         "the default for this limit) must be below the memory limit (16Mi): tmpfs pages are "
         "charged to the sandbox's memory"},
    };
    run_rule_cases(cases, STK_ARRAY_SIZE(cases), true);
}

static void test_tmpfs_defaults_scale_with_memory(void **state)
{
    (void)state;
    static const struct {
        const char *memory;
        int64_t each;
    } cases[] = {
        {"16Mi", 4 << 20},   {"64Mi", 16 << 20},  {"128Mi", 32 << 20},
        {"100Mi", 25 << 20}, {"256Mi", 64 << 20}, {"4Gi", 64 << 20},
    };
    for (size_t i = 0; i < STK_ARRAY_SIZE(cases); i++) {
        struct fixture f = {0};
        _cleanup_free_ char *sb =
            stk_xasprintf(HEAD "spec:\n  resources: {memory: %s}\n", cases[i].memory);
        resolve_ok(&f, sb, NULL);
        assert_int_equal(f.b->tmp_size, cases[i].each);
        assert_int_equal(f.b->shm_size, cases[i].each);
        assert_true(f.b->tmp_size + f.b->shm_size < f.b->limits.memory);
        fixture_free(&f);
    }
    /* one size set: the other still scales */
    struct fixture f = {0};
    resolve_ok(&f,
               HEAD "spec:\n  resources: {memory: 64Mi}\n  driverConfig:\n    local: "
                    "{shmSize: 8Mi}\n",
               NULL);
    assert_int_equal(f.b->tmp_size, 16 << 20);
    assert_int_equal(f.b->shm_size, 8 << 20);
    fixture_free(&f);
}

static void test_cross_field_warnings(void **state)
{
    (void)state;
    static const struct rule_case cases[] = {
        {"role without access", "spec:\n  security:\n    kubernetesRole: edit\n", NULL,
         "sb.yaml:7:21: warning: spec.security.kubernetesRole: has no effect: kubernetesAccess is "
         "false (hard default), so no token is mounted"},
        {"vcluster without token", "spec:\n  vcluster: true\n", NULL,
         "sb.yaml:6:13: warning: spec.vcluster: the sandbox gets a virtual API server but no "
         "token to call it (kubernetesAccess is false)"},
    };
    run_rule_cases(cases, STK_ARRAY_SIZE(cases), false);
}

static void test_policy_capabilities(void **state)
{
    (void)state;
    assert_true(stk_policy_allows_capability(STK_POLICY_RESTRICTED, "NET_BIND_SERVICE"));
    assert_false(stk_policy_allows_capability(STK_POLICY_RESTRICTED, "CHOWN"));
    assert_true(stk_policy_allows_capability(STK_POLICY_BASELINE, "CHOWN"));
    assert_true(stk_policy_allows_capability(STK_POLICY_BASELINE, "SYS_CHROOT"));
    assert_false(stk_policy_allows_capability(STK_POLICY_BASELINE, "SYS_PTRACE"));
    assert_false(stk_policy_allows_capability(STK_POLICY_BASELINE, "NET_RAW"));
    assert_true(stk_policy_allows_capability(STK_POLICY_PRIVILEGED, "SYS_ADMIN"));
}

/* ---- the egress model ------------------------------------------------------------ */

static void assert_rule(const struct stk_erule *r, const char *cidr, const char *const *except,
                        size_t n)
{
    char cb[STK_CIDR_STRLEN];
    assert_int_equal(r->peer, STK_PEER_IPBLOCK);
    assert_string_equal(stk_cidr_format(&r->cidr, cb), cidr);
    assert_int_equal(r->n_except, n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(stk_cidr_format(&r->except[i], cb), except[i]);
}

static void test_egress_datalab_example(void **state)
{
    (void)state;
    struct fixture f = {0};
    struct stk_diags d = {0};
    assert_int_equal(stk_docset_load(EXAMPLES "datalab/environment.yaml", &d, &f.env), 0);
    f.sb = parse(&f, "sb.yaml", HEAD "  namespace: lab\n");
    assert_int_equal(
        stk_resolve(f.sb->docs[0].sandbox, "sb.yaml", f.env->docs[0].env, "env.yaml", &f.d, &f.b),
        0);
    const struct stk_egress *eg = &f.b->egress;
    assert_int_equal(eg->n, 4);
    assert_int_equal(eg->policies[0].id, STK_NETPOL_DENY);
    assert_int_equal(eg->policies[1].id, STK_NETPOL_NAMESPACE);
    assert_int_equal(eg->policies[1].rules[0].peer, STK_PEER_SAME_NAMESPACE);
    assert_int_equal(eg->policies[2].id, STK_NETPOL_DNS);
    const struct stk_erule *dns = &eg->policies[2].rules[0];
    assert_int_equal(dns->peer, STK_PEER_CLUSTER_DNS);
    assert_int_equal(dns->n_ports, 2);
    assert_int_equal(dns->ports[0].protocol, STK_PROTO_UDP);
    assert_int_equal(dns->ports[1].protocol, STK_PROTO_TCP);
    assert_int_equal(dns->ports[1].port, 53);
    assert_int_equal(eg->policies[3].id, STK_NETPOL_EXTERNAL);
    assert_int_equal(eg->policies[3].n_rules, 2);
    static const char *const ex4[] = {"169.254.169.254/32", "169.254.42.42/32", "10.42.0.0/16",
                                      "10.43.0.0/16"};
    static const char *const ex6[] = {"fd00:ec2::254/128", "fd00:42::42/128"};
    assert_rule(&eg->policies[3].rules[0], "0.0.0.0/0", ex4, 4);
    assert_rule(&eg->policies[3].rules[1], "::/0", ex6, 2);
    stk_diags_free(&d);
    fixture_free(&f);
}

static void test_egress_toggles(void **state)
{
    (void)state;
    /* externalEgress without CIDRs: DNS only; the allowlist gets the blacklist */
    struct fixture f = {0};
    resolve_ok(&f,
               HEAD "spec:\n  network:\n    externalEgress: true\n    egress:\n"
                    "      - cidr: 169.254.0.0/16\n        ports: [{port: 443}]\n",
               NULL);
    const struct stk_egress *eg = &f.b->egress;
    assert_int_equal(eg->n, 4);
    assert_int_equal(eg->policies[2].id, STK_NETPOL_DNS);
    assert_int_equal(eg->policies[3].id, STK_NETPOL_ALLOWLIST);
    static const char *const ex[] = {"169.254.169.254/32", "169.254.42.42/32"};
    assert_rule(&eg->policies[3].rules[0], "169.254.0.0/16", ex, 2);
    assert_int_equal(eg->policies[3].rules[0].ports[0].protocol, STK_PROTO_TCP);
    fixture_free(&f);

    /* excludePolicies removes generated policies; the operator's blacklist replaces ours */
    resolve_ok(&f, HEAD "spec:\n  network:\n    externalEgress: true\n",
               ENV_HEAD "data:\n  network:\n    externalEgressCIDRs: [0.0.0.0/0]\n"
                        "    blacklistIPs: []\n    excludePolicies: [allow-dns-egress]\n");
    eg = &f.b->egress;
    assert_true(eg->excluded[STK_NETPOL_DNS]);
    assert_int_equal(eg->n, 3);
    assert_int_equal(eg->policies[2].id, STK_NETPOL_EXTERNAL);
    assert_int_equal(eg->policies[2].rules[0].n_except, 0);
    assert_int_equal(f.b->n_blacklist, 0);
    fixture_free(&f);

    /* excluding everything leaves no policy: egress unrestricted */
    resolve_ok(&f, HEAD,
               ENV_HEAD "data:\n  network:\n    excludePolicies: [deny-egress, "
                        "allow-namespace-egress]\n");
    assert_int_equal(f.b->egress.n, 0);
    fixture_free(&f);
}

/* ---- assess: Datalab's trust-level table, row by row ----------------------------- */

static enum stk_trust assess_example(const char *file, struct stk_assessment **ret)
{
    struct fixture f = {0};
    assert_int_equal(stk_docset_load(EXAMPLES "datalab/environment.yaml", &f.d, &f.env), 0);
    assert_int_equal(stk_docset_load(file, &f.d, &f.sb), 0);
    assert_int_equal(
        stk_resolve(f.sb->docs[0].sandbox, file, f.env->docs[0].env, "env.yaml", &f.d, &f.b), 0);
    assert_int_equal(stk_assess(f.b, ret), 0);
    enum stk_trust level = (*ret)->level;
    fixture_free(&f);
    return level;
}

static bool has_finding(const struct stk_assessment *a, const char *id,
                        enum stk_finding_severity sev)
{
    for (size_t i = 0; i < a->n; i++)
        if (!strcmp(a->findings[i].id, id) && a->findings[i].severity == sev)
            return true;
    return false;
}

static void test_assess_trust_table(void **state)
{
    (void)state;
    struct stk_assessment *a = NULL;
    assert_int_equal(assess_example(EXAMPLES "datalab/s-jeff.yaml", &a), STK_TRUST_HARDENED);
    assert_false(has_finding(a, "kubernetes-token", STK_FINDING_HIGH));
    assert_true(has_finding(a, "open-egress", STK_FINDING_MEDIUM));
    assert_true(has_finding(a, "baseline-policy", STK_FINDING_LOW));
    stk_assessment_free(a);

    static const char *const row2[] = {EXAMPLES "datalab/s-joe.yaml",
                                       EXAMPLES "datalab/s-john.yaml"};
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(assess_example(row2[i], &a), STK_TRUST_AUTOMATION);
        assert_true(has_finding(a, "kubernetes-token", STK_FINDING_HIGH));
        stk_assessment_free(a);
    }

    assert_int_equal(assess_example(EXAMPLES "datalab/s-jane.yaml", &a), STK_TRUST_EXCEPTION);
    assert_true(has_finding(a, "privileged", STK_FINDING_CRITICAL));
    assert_true(has_finding(a, "registry", STK_FINDING_CRITICAL));
    assert_true(has_finding(a, "vcluster-admin", STK_FINDING_HIGH));
    stk_assessment_free(a);
}

static void test_assess_metadata_exposure(void **state)
{
    (void)state;
    struct fixture f = {0};
    struct stk_assessment *a = NULL;
    resolve_ok(&f, HEAD "spec:\n  network:\n    externalEgress: true\n",
               ENV_HEAD "data:\n  network:\n    externalEgressCIDRs: [0.0.0.0/0, \"::/0\"]\n"
                        "    blacklistIPs: [169.254.169.254/32]\n");
    assert_int_equal(stk_assess(f.b, &a), 0);
    /* Scaleway's v4 and both v6 endpoints stay reachable */
    size_t exposed = 0;
    for (size_t i = 0; i < a->n; i++)
        exposed += !strcmp(a->findings[i].id, "metadata-exposed");
    assert_int_equal(exposed, 3);
    assert_int_equal(a->level, STK_TRUST_AUTOMATION);
    stk_assessment_free(a);
    fixture_free(&f);

    resolve_ok(&f, HEAD,
               ENV_HEAD "data:\n  network:\n    excludePolicies: [deny-egress, "
                        "allow-namespace-egress]\n");
    assert_int_equal(stk_assess(f.b, &a), 0);
    assert_true(has_finding(a, "egress-unrestricted", STK_FINDING_CRITICAL));
    assert_int_equal(a->level, STK_TRUST_EXCEPTION);
    stk_assessment_free(a);
    fixture_free(&f);
}

static void test_assess_strict_defaults_are_hardened(void **state)
{
    (void)state;
    struct fixture f = {0};
    struct stk_assessment *a = NULL;
    resolve_ok(&f, HEAD, NULL);
    assert_int_equal(stk_assess(f.b, &a), 0);
    assert_int_equal(a->n, 0);
    assert_int_equal(a->level, STK_TRUST_HARDENED);
    stk_assessment_free(a);
    fixture_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hard_defaults_are_strict),
        cmocka_unit_test(test_provenance_spec_env_default),
        cmocka_unit_test(test_default_text_for_docs),
        cmocka_unit_test(test_cross_field_errors),
        cmocka_unit_test(test_tmpfs_defaults_scale_with_memory),
        cmocka_unit_test(test_cross_field_warnings),
        cmocka_unit_test(test_policy_capabilities),
        cmocka_unit_test(test_egress_datalab_example),
        cmocka_unit_test(test_egress_toggles),
        cmocka_unit_test(test_assess_trust_table),
        cmocka_unit_test(test_assess_metadata_exposure),
        cmocka_unit_test(test_assess_strict_defaults_are_hardened),
    };
    return cmocka_run_group_tests_name("boundary", tests, NULL, NULL);
}
