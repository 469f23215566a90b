/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of src/gateway/authz.c: the authorization matrix (every
 * identity x every verb x every target, each cell written out), the create
 * scope checks one by one, identify() for every match form, and reasons. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "gateway/authz.h"

#include <errno.h>
#include <string.h>

/* ---- fixtures -------------------------------------------------------------- */

#define HEAD "apiVersion: stockade.dev/v1alpha1\n"
#define SHA1 "c1642e5b544401b66b42479ef55919b9a732591acdc91090cd56e709e32afbd8"
#define SHA2 "0c848abb03307b06cf70cd4e29c157dc81af5e94ab3eb1d0c59a120269572376"
#define SHA3 "9f03ef1533a68d2f506f81ef463c1183a82a6bd40e45613f36e6fe1889cf1b99"
#define SHA4 "1111111111111111111111111111111111111111111111111111111111111aaa"
#define SHA5 "2222222222222222222222222222222222222222222222222222222222222bbb"

/* The matrix policy. Grant numbers (0-based, as in spec.grants[N]) appear
 * in the reasons the tests check. */
static const char matrix_policy[] =
    HEAD "kind: AccessPolicy\n"
         "metadata: {name: matrix}\n"
         "spec:\n"
         "  authentication:\n"
         "    tokens:\n"
         "      - {id: controller, sha256: " SHA1 "}\n"
         "      - {id: alice, sha256: " SHA2 "}\n"
         "      - {id: bob, sha256: " SHA3 "}\n"
         "    oidc:\n"
         "      - {issuer: https://id.example.com, audience: stockade, jwksFile: /etc/jwks.json}\n"
         "    clientCertificates: {caFile: /etc/ca.pem}\n"
         "  identities:\n"
         "    - {name: controller, kind: platform-controller, tenant: acme, match: {token: "
         "controller}}\n"
         "    - {name: alice, kind: end-user, tenant: acme, match: {token: alice}}\n"
         "    - {name: bob, kind: end-user, tenant: acme, match: {token: bob}}\n"
         "    - name: svc\n"
         "      kind: platform-controller\n"
         "      match: {issuer: https://id.example.com, subject: '1234'}\n"
         "    - name: ops\n"
         "      kind: end-user\n"
         "      tenant: acme\n"
         "      match: {issuer: https://id.example.com, claims: {groups: sre, org: acme}}\n"
         "    - name: auditor\n"
         "      kind: platform-controller\n"
         "      match: {certificateSubject: 'CN=auditor,O=acme'}\n"
         "  grants:\n"
         "    - identities: [controller]\n" /* 0 */
         "      verbs: [create, get, list, exec, logs, stop, start, delete, audit, pool]\n"
         "      scope: {tenants: [acme], namespaces: ['acme-*'], maxPolicy: baseline, "
         "onBehalfOf: true}\n"
         "    - identities: [alice, bob]\n" /* 1 */
         "      verbs: [get, list, exec, logs, stop, start, delete, audit]\n"
         "    - identities: [alice, bob]\n" /* 2 */
         "      verbs: [create]\n"
         "      scope: {maxPolicy: restricted}\n"
         "    - {identities: [bob], verbs: [connect]}\n" /* 3 */
         "    - identities: [ops]\n"                     /* 4 */
         "      verbs: [get, list, logs, audit]\n"
         "      scope: {owned: false}\n"
         "    - identities: [auditor]\n" /* 5 */
         "      verbs: [audit]\n"
         "      scope: {tenants: [acme, globex]}\n";

struct policy {
    struct stk_docset *ds;
    struct stk_authz *z;
};

static void policy_load(struct policy *p, const char *text)
{
    struct stk_diags d = {0};
    _cleanup_error_ struct stk_error *err = NULL;
    if (stk_docset_parse("ap.yaml", text, strlen(text), &d, &p->ds) < 0) {
        for (size_t i = 0; i < d.n; i++) {
            _cleanup_free_ char *line = stk_diag_format(&d.items[i]);
            print_error("%s\n", line);
        }
        fail_msg("the policy did not load");
    }
    stk_diags_free(&d);
    assert_int_equal(p->ds->docs[0].kind, STK_KIND_ACCESS_POLICY);
    assert_int_equal(stk_authz_new(p->ds->docs[0].access, &p->z, &err), 0);
}

static void policy_release(struct policy *p)
{
    stk_authz_free(p->z);
    stk_docset_free(p->ds);
}

struct sandbox {
    struct stk_docset *ds;
    struct stk_boundary *b;
};

/* Resolves a Sandbox whose spec body (below "spec:") is given. */
static void sandbox_resolve(struct sandbox *s, const char *ns, const char *spec_body)
{
    struct stk_diags d = {0};
    _cleanup_free_ char *text = stk_xasprintf(
        HEAD "kind: Sandbox\nmetadata: {name: s%s%s}\nspec:\n%s", ns ? ", namespace: " : "",
        ns ? ns : "", spec_body ? spec_body : "  command: [/bin/true]\n");
    if (stk_docset_parse("sb.yaml", text, strlen(text), &d, &s->ds) < 0 ||
        stk_resolve(s->ds->docs[0].sandbox, "sb.yaml", NULL, NULL, &d, &s->b) < 0) {
        for (size_t i = 0; i < d.n; i++) {
            _cleanup_free_ char *line = stk_diag_format(&d.items[i]);
            print_error("%s\n", line);
        }
        fail_msg("the sandbox did not resolve");
    }
    stk_diags_free(&d);
}

static void sandbox_release(struct sandbox *s)
{
    stk_boundary_free(s->b);
    stk_docset_free(s->ds);
}

static struct stk_principal token(const char *id)
{
    struct stk_principal p = {.kind = STK_PRINCIPAL_TOKEN};
    snprintf(p.token_id, sizeof(p.token_id), "%s", id);
    return p;
}

static struct stk_principal jwt(const char *iss, const char *sub, const char *claims)
{
    struct stk_principal p = {.kind = STK_PRINCIPAL_JWT};
    snprintf(p.issuer, sizeof(p.issuer), "%s", iss);
    snprintf(p.subject, sizeof(p.subject), "%s", sub);
    p.claims_json = claims ? stk_xstrdup(claims) : NULL;
    return p;
}

static struct stk_principal cert(const char *subject)
{
    struct stk_principal p = {.kind = STK_PRINCIPAL_CERT};
    snprintf(p.cert_subject, sizeof(p.cert_subject), "%s", subject);
    return p;
}

/* ---- the matrix ------------------------------------------------------------------------ */

enum { T_ALICE, T_BOB, T_OTHER_TENANT, T_OUTSIDE_NS, N_TARGETS };

/* A sandbox of each kind the matrix covers; for create, the same tenant,
 * project and namespace with a restricted, default-runtime spec. */
static const struct {
    const char *tenant, *project, *owner, *namespace;
} targets[N_TARGETS] = {
    [T_ALICE] = {"acme", "web", "alice", "acme-alice"},
    [T_BOB] = {"acme", "web", "bob", "acme-bob"},
    [T_OTHER_TENANT] = {"globex", "web", "carol", "acme-globex"}, /* namespace in acme-* */
    [T_OUTSIDE_NS] = {"acme", "web", "alice", "scratch"},         /* alice's, outside acme-* */
};

/* One row per caller, one string per target, one letter per verb in
 * stk_verb order (create get list exec logs connect stop start delete
 * audit pool metrics): A allow, F forbidden (403), H hidden (404). */
static const struct {
    const char *who;
    const char *cells[N_TARGETS];
} matrix[] = {
    {"controller", {"AAAAAFAAAAAF", "AAAAAFAAAAAF", "FHHHHHHHHHHH", "FHHHHHHHHHHH"}},
    {"alice", {"AAAAAFAAAAFF", "AHHHHHHHHHHH", "FHHHHHHHHHHH", "AAAAAFAAAAFF"}},
    {"bob", {"AHHHHHHHHHHH", "AAAAAAAAAAFF", "FHHHHHHHHHHH", "AHHHHHHHHHHH"}},
    {"ops", {"FAAFAFFFFAFF", "FAAFAFFFFAFF", "FHHHHHHHHHHH", "FAAFAFFFFAFF"}},
    {"auditor", {"FHHHHHHHHAHH", "FHHHHHHHHAHH", "FHHHHHHHHAHH", "FHHHHHHHHAHH"}},
    {"unknown", {"FHHHHHHHHHHH", "FHHHHHHHHHHH", "FHHHHHHHHHHH", "FHHHHHHHHHHH"}},
};

static struct stk_principal caller(const char *who)
{
    if (!strcmp(who, "ops"))
        return jwt("https://id.example.com", "u-77",
                   "{\"groups\": [\"dev\", \"sre\"], \"org\": "
                   "\"acme\"}");
    if (!strcmp(who, "auditor"))
        return cert("CN=auditor,O=acme");
    if (!strcmp(who, "unknown"))
        return token("stranger");
    return token(who);
}

static char cell(const struct stk_authz_decision *d)
{
    return d->allow ? 'A' : d->hide ? 'H' : 'F';
}

static void test_matrix(void **state)
{
    (void)state;
    struct policy p;
    struct sandbox sb[N_TARGETS];
    policy_load(&p, matrix_policy);
    for (int t = 0; t < N_TARGETS; t++)
        sandbox_resolve(&sb[t], targets[t].namespace, NULL);

    size_t cells = 0;
    for (size_t r = 0; r < STK_ARRAY_SIZE(matrix); r++) {
        struct stk_principal who = caller(matrix[r].who);
        for (int t = 0; t < N_TARGETS; t++) {
            assert_int_equal(strlen(matrix[r].cells[t]), _STK_VERB_N);
            for (int v = 0; v < _STK_VERB_N; v++) {
                struct stk_authz_target tg = {
                    .tenant = targets[t].tenant,
                    .project = targets[t].project,
                    .namespace = targets[t].namespace,
                };
                if (v == STK_VERB_CREATE)
                    tg.b = sb[t].b;
                else
                    tg.owner = targets[t].owner;
                struct stk_authz_decision d;
                stk_authz_decide(p.z, &who, (enum stk_verb)v, &tg, &d);
                char want = matrix[r].cells[t][v];
                if (cell(&d) != want)
                    fail_msg("%s %s on target %d: got %c, want %c (%s)", matrix[r].who,
                             stk_verb_names[v], t, cell(&d), want, d.reason);
                assert_true(d.reason[0] != '\0');
                cells++;
            }
        }
        stk_principal_release(&who);
    }
    assert_int_equal(cells, STK_ARRAY_SIZE(matrix) * N_TARGETS * _STK_VERB_N);
    for (int t = 0; t < N_TARGETS; t++)
        sandbox_release(&sb[t]);
    policy_release(&p);
}

/* ---- reasons and the decision's other fields ------------------------------------------ */

static void decide(const struct policy *p, const char *who, enum stk_verb v,
                   const struct stk_authz_target *t, struct stk_authz_decision *d)
{
    struct stk_principal pr = caller(who);
    stk_authz_decide(p->z, &pr, v, t, d);
    stk_principal_release(&pr);
}

static void test_reasons(void **state)
{
    (void)state;
    struct policy p;
    struct sandbox sb;
    struct stk_authz_decision d;
    policy_load(&p, matrix_policy);
    sandbox_resolve(&sb, "acme-x", NULL);

    struct stk_authz_target alices = {.tenant = "acme", .owner = "alice", .namespace = "acme-a"};
    decide(&p, "bob", STK_VERB_DELETE, &alices, &d);
    assert_false(d.allow);
    assert_true(d.hide);
    assert_string_equal(d.identity, "bob");
    assert_string_equal(d.reason, "no grant of identity bob covers verb delete on sandbox owned "
                                  "by alice (grant 1: owned by alice, not bob)");

    decide(&p, "alice", STK_VERB_CONNECT, &alices, &d);
    assert_false(d.hide);
    assert_string_equal(d.reason,
                        "no grant of identity alice covers verb connect on sandbox owned by alice");

    decide(&p, "alice", STK_VERB_EXEC, &alices, &d);
    assert_true(d.allow);
    assert_string_equal(d.reason,
                        "grant 1 of identity alice allows exec on sandbox owned by alice");
    assert_string_equal(d.owner, "");

    decide(&p, "unknown", STK_VERB_GET, &alices, &d);
    assert_string_equal(d.identity, "");
    assert_string_equal(d.reason, "no identity matches principal token stranger (verb get)");

    struct stk_authz_target create = {.tenant = "globex", .namespace = "acme-x", .b = sb.b};
    decide(&p, "controller", STK_VERB_CREATE, &create, &d);
    assert_false(d.allow);
    assert_false(d.hide); /* nothing exists yet: create is never hidden */
    assert_string_equal(d.reason, "grant 0 of identity controller: tenant globex matches no "
                                  "tenants pattern");
    create.tenant = "acme";
    decide(&p, "controller", STK_VERB_CREATE, &create, &d);
    assert_true(d.allow);
    assert_string_equal(d.owner, "controller");
    assert_string_equal(d.reason, "grant 0 of identity controller allows create for owner "
                                  "controller");
    create.on_behalf_of = "alice";
    decide(&p, "controller", STK_VERB_CREATE, &create, &d);
    assert_true(d.allow);
    assert_string_equal(d.owner, "alice");

    /* naming oneself as the owner needs no onBehalfOf */
    decide(&p, "alice", STK_VERB_CREATE, &create, &d);
    assert_true(d.allow);
    assert_string_equal(d.owner, "alice");
    /* an end user may not create for someone else */
    create.on_behalf_of = "bob";
    decide(&p, "alice", STK_VERB_CREATE, &create, &d);
    assert_false(d.allow);
    assert_string_equal(d.owner, "");
    assert_string_equal(d.reason, "grant 2 of identity alice: may not create on behalf of bob "
                                  "(onBehalfOf is false)");

    decide(&p, "ops", STK_VERB_CREATE, &create, &d);
    assert_string_equal(d.reason, "no grant of identity ops covers verb create");
    sandbox_release(&sb);
    policy_release(&p);
}

/* A request on no sandbox (list, audit, pool as a whole): the verb alone. */
static void test_collection_targets(void **state)
{
    (void)state;
    struct policy p;
    struct stk_authz_decision d;
    struct stk_authz_target none = {0};
    policy_load(&p, matrix_policy);

    decide(&p, "alice", STK_VERB_LIST, NULL, &d);
    assert_true(d.allow);
    assert_string_equal(d.reason, "grant 1 of identity alice allows list");
    decide(&p, "auditor", STK_VERB_AUDIT, &none, &d);
    assert_true(d.allow);
    decide(&p, "auditor", STK_VERB_LIST, NULL, &d);
    assert_false(d.allow);
    assert_false(d.hide); /* nothing to hide */
    decide(&p, "alice", STK_VERB_POOL, NULL, &d);
    assert_false(d.allow);
    decide(&p, "controller", STK_VERB_POOL, NULL, &d);
    assert_true(d.allow);
    /* a verb that acts on one sandbox never reads "no sandbox" as "all" */
    decide(&p, "controller", STK_VERB_EXEC, NULL, &d);
    assert_false(d.allow);
    assert_string_equal(d.reason, "verb exec names no sandbox");
    decide(&p, "alice", STK_VERB_DELETE, &none, &d);
    assert_false(d.allow);
    decide(&p, "unknown", STK_VERB_LIST, NULL, &d);
    assert_false(d.allow);
    assert_false(d.hide);
    /* no principal at all */
    stk_authz_decide(p.z, NULL, STK_VERB_GET, NULL, &d);
    assert_false(d.allow);
    assert_string_equal(d.reason, "no identity matches principal none (verb get)");
    policy_release(&p);
}

/* ---- create: each scope field --------------------------------------------------------- */

static const char create_policy[] =
    HEAD "kind: AccessPolicy\n"
         "metadata: {name: create}\n"
         "spec:\n"
         "  authentication:\n"
         "    tokens:\n"
         "      - {id: maker, sha256: " SHA4 "}\n"
         "      - {id: proxy, sha256: " SHA5 "}\n"
         "  identities:\n"
         "    - {name: maker, kind: platform-controller, tenant: acme, match: {token: maker}}\n"
         "    - {name: proxy, kind: platform-controller, tenant: acme, match: {token: proxy}}\n"
         "  grants:\n"
         "    - identities: [maker]\n"
         "      verbs: [create]\n"
         "      scope:\n"
         "        tenants: [acme]\n"
         "        namespaces: ['acme-*']\n"
         "        projects: ['web', 'api-*']\n"
         "        maxPolicy: baseline\n"
         "        runtimes: [default, crun]\n"
         "        driverConfigKeys: [local.tmpSize, kubernetes.allocation, "
         "kubernetes.serviceAccountName]\n"
         "        credentialRefs: ['acme/*', 'env:ACME_*', 'file:/etc/acme/*', 'file:*TOKEN*']\n"
         "        serviceAccounts: ['acme-sa-*']\n"
         "        allocation: [cold]\n"
         "    - identities: [proxy]\n"
         "      verbs: [create]\n"
         "      scope: {onBehalfOf: true}\n";

#define BINDING(src, ref)                                                                          \
    "  bindings:\n    - name: gh\n      url: https://api.github.com\n"                             \
    "      credential: {source: " src ", ref: " ref "}\n"

/* A namespace is one tenant's: assigned by the operator (spec.tenants) or
 * bound by the store to the first tenant that created in it; no grant
 * reaches into another tenant's, and a grant without namespaces covers the
 * tenant's own (or unbound) ones only. */
static void test_namespace_ownership(void **state)
{
    (void)state;
    static const char text[] =
        HEAD "kind: AccessPolicy\nmetadata: {name: ns}\nspec:\n"
             "  authentication:\n"
             "    tokens:\n"
             "      - {id: a, sha256: " SHA1 "}\n"
             "      - {id: g, sha256: " SHA2 "}\n"
             "  tenants:\n"
             "    - {name: acme, namespaces: [\"acme-*\"]}\n"
             "  identities:\n"
             "    - {name: a, kind: end-user, tenant: acme, match: {token: a}}\n"
             "    - {name: g, kind: platform-controller, tenant: globex, match: {token: g}}\n"
             "  grants:\n"
             "    - {identities: [a], verbs: [create]}\n"
             "    - identities: [g]\n"
             "      verbs: [create]\n"
             "      scope: {tenants: [globex], namespaces: [\"*\"]}\n";
    static const struct stk_ns_owner bound[] = {{"shared", "acme"}, {"gns", "globex"}};
    static const struct {
        const char *who, *tenant, *ns;
        const char *reason; /* NULL: allowed */
    } cases[] = {
        {"g", "globex", "acme-x", "namespace acme-x belongs to tenant acme"},
        {"g", "globex", "shared", "namespace shared belongs to tenant acme"},
        {"g", "globex", "free", NULL},
        {"g", "globex", "gns", NULL},
        {"a", "acme", "gns", "namespace gns belongs to tenant globex"},
        {"a", "acme", "acme-1", NULL},
        {"a", "acme", "shared", NULL},
    };
    struct policy p;
    policy_load(&p, text);
    for (size_t i = 0; i < STK_ARRAY_SIZE(cases); i++) {
        struct sandbox sb;
        sandbox_resolve(&sb, cases[i].ns, NULL);
        struct stk_authz_target t = {.tenant = cases[i].tenant,
                                     .namespace = cases[i].ns,
                                     .b = sb.b,
                                     .ns_owners = bound,
                                     .n_ns_owners = STK_ARRAY_SIZE(bound)};
        struct stk_principal who = token(cases[i].who);
        struct stk_authz_decision d;
        stk_authz_decide(p.z, &who, STK_VERB_CREATE, &t, &d);
        if (d.allow != !cases[i].reason || (cases[i].reason && !strstr(d.reason, cases[i].reason)))
            fail_msg("case %zu: %s", i, d.reason);
        /* another tenant's namespace: naming it would tell that it is taken */
        if (cases[i].reason)
            assert_string_equal(d.refused_field, "");
        sandbox_release(&sb);
    }
    policy_release(&p);
}

static void test_create_scope(void **state)
{
    (void)state;
    static const struct {
        const char *who, *ns, *spec;
        const char *tenant, *project, *on_behalf_of;
        bool warm;
        const char *reason; /* NULL: allowed */
    } cases[] = {
        {"maker", "acme-1", "  security: {policy: baseline}\n", "acme", "web", NULL, false, NULL},
        {"maker", "acme-1", "  security: {policy: privileged}\n", "acme", "web", NULL, false,
         "policy privileged above maxPolicy baseline"},
        {"maker", "acme-1", "  runtime: crun\n", "acme", "api-x", NULL, false, NULL},
        {"maker", "acme-1", "  runtime: runc\n", "acme", "web", NULL, false,
         "runtime runc is not in runtimes"},
        {"maker", "acme-1", "  driverConfig: {local: {tmpSize: 16Mi}}\n", "acme", "web", NULL,
         false, NULL},
        {"maker", "acme-1", "  driverConfig: {local: {shmSize: 16Mi}}\n", "acme", "web", NULL,
         false, "driverConfig key local.shmSize is not in driverConfigKeys"},
        {"maker", "acme-1", "  driverConfig: {kubernetes: {nodeSelector: {pool: gpu}}}\n", "acme",
         "web", NULL, false, "driverConfig key kubernetes.nodeSelector is not in driverConfigKeys"},
        /* a section covers what is under it */
        {"maker", "acme-1", "  driverConfig: {kubernetes: {allocation: {mode: direct}}}\n", "acme",
         "web", NULL, false, NULL},
        {"maker", "acme-1",
         "  bindings:\n    - name: gh\n      url: https://api.github.com\n"
         "      credential: {source: kubernetesSecret, ref: acme/github, key: token}\n",
         "acme", "web", NULL, false, NULL},
        {"maker", "acme-1",
         "  bindings:\n    - name: gh\n      url: https://api.github.com\n"
         "      credential: {source: kubernetesSecret, ref: globex/github, key: token}\n",
         "acme", "web", NULL, false,
         "credential ref globex/github (binding gh, source kubernetesSecret) matches no "
         "credentialRefs pattern"},
        /* a SOURCE: pattern grants refs of that source only */
        {"maker", "acme-1", BINDING("env", "ACME_TOKEN"), "acme", "web", NULL, false, NULL},
        {"maker", "acme-1", BINDING("file", "/etc/acme/key"), "acme", "web", NULL, false, NULL},
        {"maker", "acme-1", BINDING("file", "/srv/TOKEN"), "acme", "web", NULL, false, NULL},
        {"maker", "acme-1", BINDING("env", "GH_TOKEN"), "acme", "web", NULL, false,
         "credential ref GH_TOKEN (binding gh, source env) matches no credentialRefs pattern"},
        {"maker", "acme-1", BINDING("file", "/srv/key"), "acme", "web", NULL, false,
         "credential ref /srv/key (binding gh, source file) matches no credentialRefs pattern"},
        {"maker", "acme-1", "  driverConfig: {kubernetes: {serviceAccountName: acme-sa-build}}\n",
         "acme", "web", NULL, false, NULL},
        {"maker", "acme-1", "  driverConfig: {kubernetes: {serviceAccountName: default}}\n", "acme",
         "web", NULL, false, "service account default matches no serviceAccounts pattern"},
        {"maker", "acme-1", NULL, "acme", "web", NULL, true,
         "allocation warm is not in allocation"},
        {"maker", "acme-1",
         "  driverConfig: {kubernetes: {allocation: {mode: warmPool, warmPool: small}}}\n", "acme",
         "web", NULL, false, "allocation warm is not in allocation"},
        {"maker", "acme-1", NULL, "acme", "web", "alice", false,
         "may not create on behalf of alice (onBehalfOf is false)"},
        {"maker", "acme-1", NULL, "acme", "web", "maker", false, NULL}, /* itself */
        {"proxy", NULL, NULL, "acme", NULL, "", false, "owner of 0 bytes: must be 1 to 127"},
        {"proxy", NULL, NULL, "acme", NULL, "alice", false, NULL},
        {"maker", "acme-1", NULL, "globex", "web", NULL, false,
         "tenant globex matches no tenants pattern"},
        {"maker", "acme-1", NULL, NULL, "web", NULL, false, "the sandbox has no tenant"},
        {"proxy", NULL, NULL, "globex", NULL, NULL, false,
         "tenant globex is not the identity's tenant acme"},
        {"maker", "acme-1", NULL, "acme", "db", NULL, false,
         "project db matches no projects pattern"},
        {"maker", "acme-1", NULL, "acme", NULL, NULL, false,
         "project (none) matches no projects pattern"},
        {"maker", "prod", NULL, "acme", "web", NULL, false,
         "namespace prod matches no namespaces pattern"},
        {"maker", NULL, NULL, "acme", "web", NULL, false,
         "namespace default matches no namespaces pattern"},
        /* the Kubernetes placement is a namespace too */
        {"maker", "acme-1", "  driverConfig: {kubernetes: {namespace: kube-system}}\n", "acme",
         "web", NULL, false, "namespace kube-system matches no namespaces pattern"},
        /* proxy: every create-only scope at its strictest default */
        {"proxy", NULL, "  security: {policy: baseline}\n", "acme", NULL, NULL, false,
         "policy baseline above maxPolicy restricted"},
        {"proxy", NULL, "  runtime: gvisor\n", "acme", NULL, NULL, false,
         "runtime gvisor is not in runtimes (default)"},
        {"proxy", NULL, "  driverConfig: {local: {tmpSize: 16Mi}}\n", "acme", NULL, NULL, false,
         "driverConfig key local.tmpSize is not in driverConfigKeys"},
        {"proxy", NULL,
         "  bindings:\n    - name: gh\n      url: https://api.github.com\n"
         "      credential: {source: env, ref: GH_TOKEN}\n",
         "acme", NULL, NULL, false,
         "credential ref GH_TOKEN (binding gh, source env) matches no credentialRefs pattern"},
        {"proxy", NULL, NULL, "acme", NULL, NULL, true, NULL}, /* allocation: both by default */
    };
    struct policy p;
    policy_load(&p, create_policy);
    for (size_t i = 0; i < STK_ARRAY_SIZE(cases); i++) {
        struct sandbox sb;
        struct stk_authz_decision d;
        sandbox_resolve(&sb, cases[i].ns, cases[i].spec);
        struct stk_authz_target t = {.tenant = cases[i].tenant,
                                     .project = cases[i].project,
                                     .namespace = cases[i].ns,
                                     .b = sb.b,
                                     .on_behalf_of = cases[i].on_behalf_of,
                                     .warm = cases[i].warm};
        struct stk_principal who = token(cases[i].who);
        stk_authz_decide(p.z, &who, STK_VERB_CREATE, &t, &d);
        if (!cases[i].reason) {
            if (!d.allow)
                fail_msg("case %zu: denied: %s", i, d.reason);
            assert_string_equal(d.owner,
                                cases[i].on_behalf_of ? cases[i].on_behalf_of : cases[i].who);
        } else {
            _cleanup_free_ char *want =
                stk_xasprintf("grant %d of identity %s: %s", strcmp(cases[i].who, "maker") ? 1 : 0,
                              cases[i].who, cases[i].reason);
            if (d.allow)
                fail_msg("case %zu: allowed, want \"%s\"", i, want);
            assert_string_equal(d.reason, want);
            assert_false(d.hide);
            /* the caller is told which of their own inputs was refused,
             * and its value appears in the reason */
            bool unnamed = strstr(cases[i].reason, "has no tenant") ||
                           strstr(cases[i].reason, "owner of 0 bytes") ||
                           strstr(cases[i].reason, "project (none)");
            if (!unnamed && (!d.refused_field[0] || !strstr(d.reason, d.refused_value)))
                fail_msg("case %zu: refused input not named: %s / %s", i, d.refused_field,
                         d.refused_value);
        }
        sandbox_release(&sb);
    }
    policy_release(&p);
}

/* ---- identify ------------------------------------------------------------------------- */

static void test_identify(void **state)
{
    (void)state;
    static const struct {
        enum stk_principal_kind kind;
        const char *a, *b, *claims; /* token id | issuer, subject, claims | cert subject */
        const char *want;
    } cases[] = {
        {STK_PRINCIPAL_TOKEN, "controller", NULL, NULL, "controller"},
        {STK_PRINCIPAL_TOKEN, "alice", NULL, NULL, "alice"},
        {STK_PRINCIPAL_TOKEN, "stranger", NULL, NULL, NULL},
        {STK_PRINCIPAL_JWT, "https://id.example.com", "1234", NULL, "svc"},
        {STK_PRINCIPAL_JWT, "https://id.example.com", "1235", NULL, NULL},
        {STK_PRINCIPAL_JWT, "https://evil.example.com", "1234", NULL, NULL},
        /* claims: an array containing the value, or a string equal to it */
        {STK_PRINCIPAL_JWT, "https://id.example.com", "u",
         "{\"groups\":[\"dev\",\"sre\"],\"org\":\"acme\"}", "ops"},
        {STK_PRINCIPAL_JWT, "https://id.example.com", "u", "{\"groups\":\"sre\",\"org\":\"acme\"}",
         "ops"},
        {STK_PRINCIPAL_JWT, "https://id.example.com", "u",
         "{\"groups\":[\"dev\"],\"org\":\"acme\"}", NULL},
        {STK_PRINCIPAL_JWT, "https://id.example.com", "u", "{\"groups\":[\"sre\"]}", NULL},
        {STK_PRINCIPAL_JWT, "https://id.example.com", "u", "{\"groups\":\"sres\",\"org\":\"acme\"}",
         NULL},
        {STK_PRINCIPAL_JWT, "https://id.example.com", "u", "{\"groups\":[\"sre\"],\"org\":7}",
         NULL},
        {STK_PRINCIPAL_JWT, "https://id.example.com", "u", "not json", NULL},
        {STK_PRINCIPAL_JWT, "https://evil.example.com", "u",
         "{\"groups\":\"sre\",\"org\":\"acme\"}", NULL},
        {STK_PRINCIPAL_CERT, "CN=auditor,O=acme", NULL, NULL, "auditor"},
        {STK_PRINCIPAL_CERT, "CN=auditor,O=acme,OU=x", NULL, NULL, NULL},
        {STK_PRINCIPAL_CERT, "cn=auditor,o=acme", NULL, NULL, NULL},
        {STK_PRINCIPAL_NONE, "", NULL, NULL, NULL},
    };
    struct policy p;
    policy_load(&p, matrix_policy);
    for (size_t i = 0; i < STK_ARRAY_SIZE(cases); i++) {
        struct stk_principal pr = {.kind = cases[i].kind};
        if (cases[i].kind == STK_PRINCIPAL_TOKEN)
            pr = token(cases[i].a);
        else if (cases[i].kind == STK_PRINCIPAL_JWT)
            pr = jwt(cases[i].a, cases[i].b, cases[i].claims);
        else if (cases[i].kind == STK_PRINCIPAL_CERT)
            pr = cert(cases[i].a);
        const char *got = stk_authz_identify(p.z, &pr);
        if (!stk_streq(got, cases[i].want))
            fail_msg("case %zu: got %s, want %s", i, got ? got : "(none)",
                     cases[i].want ? cases[i].want : "(none)");
        stk_principal_release(&pr);
    }
    assert_null(stk_authz_identify(p.z, NULL));
    policy_release(&p);
}

/* ---- tables and compile errors ----------------------------------------------------------- */

static void test_verb_tables_agree(void **state)
{
    (void)state;
    for (int v = 0; v < _STK_VERB_N; v++)
        assert_string_equal(stk_verb_names[v], stk_access_verb_names[v]);
}

static void test_dangling_identity(void **state)
{
    (void)state;
    struct stk_access_policy ap = {0};
    struct stk_str names[] = {{.meta = {.set = true}, .v = "ghost"}};
    struct stk_access_grant g = {0};
    struct stk_authz *z = NULL;
    _cleanup_error_ struct stk_error *err = NULL;
    g.identities.items = names;
    g.identities.n = 1;
    ap.spec.grants.items = &g;
    ap.spec.grants.n = 1;
    assert_int_equal(stk_authz_new(&ap, &z, &err), -EINVAL);
    assert_null(z);
    assert_string_equal(err->msg, "grant 0 names no identity \"ghost\"");

    struct stk_enumv bad_verb = {.meta = {.set = true}, .v = _STK_VERB_N};
    stk_error_free(TAKE_PTR(err));
    g.identities.n = 0;
    g.verbs.items = &bad_verb;
    g.verbs.n = 1;
    assert_int_equal(stk_authz_new(&ap, &z, &err), -EINVAL);
    assert_string_equal(err->msg, "grant 0: verb 12 out of range");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matrix),
        cmocka_unit_test(test_reasons),
        cmocka_unit_test(test_collection_targets),
        cmocka_unit_test(test_create_scope),
        cmocka_unit_test(test_namespace_ownership),
        cmocka_unit_test(test_identify),
        cmocka_unit_test(test_verb_tables_agree),
        cmocka_unit_test(test_dangling_identity),
    };
    return cmocka_run_group_tests_name("authz", tests, NULL, NULL);
}
