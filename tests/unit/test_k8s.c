/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of src/render (Kubernetes): object shapes, Datalab's golden
 * NetworkPolicies, identity, cluster roles, determinism, YAML round trips,
 * injection and eject. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "render/render.h"

#include <errno.h>
#include <string.h>

/* ---- fixtures -------------------------------------------------------------- */

static const char datalab_env[] = "apiVersion: stockade.dev/v1alpha1\n"
                                  "kind: EnvironmentConfig\n"
                                  "metadata: {name: datalab}\n"
                                  "data:\n"
                                  "  defaults:\n"
                                  "    security:\n"
                                  "      policy: baseline\n"
                                  "      kubernetesAccess: true\n"
                                  "      kubernetesRole: edit\n"
                                  "      externalEgress: true\n"
                                  "  network:\n"
                                  "    externalEgressCIDRs: [0.0.0.0/0, '::/0']\n"
                                  "    blacklistIPs:\n"
                                  "      - 169.254.169.254/32\n"
                                  "      - 169.254.42.42/32\n"
                                  "      - fd00:ec2::254/128\n"
                                  "      - fd00:42::42/128\n"
                                  "    podCIDRs: [10.42.0.0/16]\n"
                                  "    serviceCIDR: 10.43.0.0/16\n";

struct fixture {
    struct stk_docset *sb_ds, *env_ds;
    struct stk_boundary *b;
};

static void fixture_release(struct fixture *f)
{
    stk_boundary_free(f->b);
    stk_docset_free(f->sb_ds);
    stk_docset_free(f->env_ds);
}

/* Resolves a Sandbox document (and an optional EnvironmentConfig). */
static void resolve(struct fixture *f, const char *sandbox, const char *env)
{
    struct stk_diags d = {0};
    const struct stk_envconfig *ec = NULL;
    memset(f, 0, sizeof(*f));
    if (env) {
        assert_int_equal(stk_docset_parse("env.yaml", env, strlen(env), &d, &f->env_ds), 0);
        ec = stk_docset_find(f->env_ds, STK_KIND_ENVCONFIG, NULL)->env;
    }
    if (stk_docset_parse("sb.yaml", sandbox, strlen(sandbox), &d, &f->sb_ds) < 0) {
        for (size_t i = 0; i < d.n; i++)
            print_error("%s\n", d.items[i].msg);
        fail();
    }
    const struct stk_doc *doc = stk_docset_find(f->sb_ds, STK_KIND_SANDBOX, NULL);
    assert_non_null(doc);
    int r = stk_resolve(doc->sandbox, "sb.yaml", ec, env ? "env.yaml" : NULL, &d, &f->b);
    for (size_t i = 0; i < d.n; i++)
        if (d.items[i].sev == STK_SEV_ERROR)
            print_error("%s: %s\n", d.items[i].path, d.items[i].msg);
    assert_int_equal(r, 0);
    stk_diags_free(&d);
}

static json_t *render(const struct stk_boundary *b, bool job)
{
    struct stk_k8s_options opt = {.job = job};
    json_t *out = NULL;
    struct stk_error *err = NULL;
    int r = stk_k8s_render(b, &opt, &out, &err);
    if (r < 0)
        print_error("%s\n", err->msg);
    assert_int_equal(r, 0);
    return out;
}

static json_t *find(const json_t *objs, const char *kind, const char *name)
{
    size_t i;
    json_t *o;
    json_array_foreach(objs, i, o)
    {
        if (strcmp(json_string_value(json_object_get(o, "kind")), kind))
            continue;
        if (!name ||
            !strcmp(json_string_value(json_object_get(json_object_get(o, "metadata"), "name")),
                    name))
            return o;
    }
    return NULL;
}

static void assert_json(const json_t *got, const char *want_text)
{
    json_error_t e;
    json_t *want = json_loads(want_text, 0, &e);
    if (!want)
        print_error("bad expected JSON: %s\n", e.text);
    assert_non_null(want);
    if (!json_equal(got, want)) {
        char *g = json_dumps(got, JSON_COMPACT);
        print_error("got:  %s\nwant: %s\n", g, want_text);
        free(g);
        fail();
    }
    json_decref(want);
}

#define SB_HEAD                                                                                    \
    "apiVersion: stockade.dev/v1alpha1\nkind: Sandbox\nmetadata:\n  name: s-joe\n"                 \
    "  namespace: lab\n  labels: {owner: joe}\n"

static const char sb_basic[] = SB_HEAD "spec:\n  image: busybox:1.36\n";

/* ---- NetworkPolicies: Datalab's golden example ------------------------------- */

static void test_datalab_networkpolicies_golden(void **state)
{
    (void)state;
    struct fixture f;
    resolve(&f, sb_basic, datalab_env);
    json_t *objs = render(f.b, false);

    const char *names[] = {"deny-egress", "allow-namespace-egress", "allow-dns-egress",
                           "allow-external-egress", "allow-sandbox-ingress"};
    size_t i, k = 0;
    json_t *o;
    json_array_foreach(
        objs, i, o) if (!strcmp(json_string_value(json_object_get(o, "kind")), "NetworkPolicy"))
    {
        assert_true(k < 5);
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(o, "metadata"), "name")), names[k++]);
    }
    assert_int_equal(k, 5);
    /* no spec.ports: sandboxes only (their egress decides), no Service */
    assert_json(json_object_get(find(objs, "NetworkPolicy", "allow-sandbox-ingress"), "spec"),
                "{\"podSelector\":{},\"policyTypes\":[\"Ingress\"],"
                "\"ingress\":[{\"from\":[{\"podSelector\":{}},{\"namespaceSelector\":"
                "{\"matchLabels\":{\"app.kubernetes.io/managed-by\":\"stockade\"}}}]}]}");

    assert_json(json_object_get(find(objs, "NetworkPolicy", "deny-egress"), "spec"),
                "{\"podSelector\":{},\"policyTypes\":[\"Egress\"],\"egress\":[]}");
    assert_json(json_object_get(find(objs, "NetworkPolicy", "allow-namespace-egress"), "spec"),
                "{\"podSelector\":{},\"policyTypes\":[\"Egress\"],"
                "\"egress\":[{\"to\":[{\"podSelector\":{}}]}]}");
    assert_json(json_object_get(find(objs, "NetworkPolicy", "allow-dns-egress"), "spec"),
                "{\"podSelector\":{},\"policyTypes\":[\"Egress\"],\"egress\":[{\"to\":["
                "{\"namespaceSelector\":{\"matchLabels\":{\"kubernetes.io/metadata.name\":"
                "\"kube-system\"}}}],\"ports\":[{\"protocol\":\"UDP\",\"port\":53},"
                "{\"protocol\":\"TCP\",\"port\":53}]}]}");
    assert_json(json_object_get(find(objs, "NetworkPolicy", "allow-external-egress"), "spec"),
                "{\"podSelector\":{},\"policyTypes\":[\"Egress\"],\"egress\":["
                "{\"to\":[{\"ipBlock\":{\"cidr\":\"0.0.0.0/0\",\"except\":["
                "\"169.254.169.254/32\",\"169.254.42.42/32\",\"10.42.0.0/16\","
                "\"10.43.0.0/16\"]}}]},"
                "{\"to\":[{\"ipBlock\":{\"cidr\":\"::/0\",\"except\":["
                "\"fd00:ec2::254/128\",\"fd00:42::42/128\"]}}]}]}");
    json_decref(objs);
    fixture_release(&f);
}

static void test_exclude_policies(void **state)
{
    (void)state;
    char env[2048];
    snprintf(env, sizeof(env), "%s    excludePolicies: [allow-dns-egress, deny-egress]\n",
             datalab_env);
    struct fixture f;
    resolve(&f, sb_basic, env);
    json_t *objs = render(f.b, false);
    assert_null(find(objs, "NetworkPolicy", "allow-dns-egress"));
    assert_null(find(objs, "NetworkPolicy", "deny-egress"));
    assert_non_null(find(objs, "NetworkPolicy", "allow-external-egress"));
    json_decref(objs);
    fixture_release(&f);
}

static void test_strict_defaults_network(void **state)
{
    (void)state;
    struct fixture f;
    resolve(&f, sb_basic, NULL);
    json_t *objs = render(f.b, false);
    assert_non_null(find(objs, "NetworkPolicy", "deny-egress"));
    assert_non_null(find(objs, "NetworkPolicy", "allow-namespace-egress"));
    assert_null(find(objs, "NetworkPolicy", "allow-dns-egress"));
    assert_null(find(objs, "NetworkPolicy", "allow-external-egress"));
    json_decref(objs);
    fixture_release(&f);
}

static void test_allowlist_and_internal(void **state)
{
    (void)state;
    struct fixture f;
    resolve(&f,
            SB_HEAD "spec:\n  image: busybox:1.36\n  network:\n    egress:\n"
                    "      - cidr: 0.0.0.0/0\n        except: [192.168.0.0/16]\n"
                    "        ports: [{protocol: TCP, port: 443}]\n"
                    "    internalEgress:\n      - namespace: db\n"
                    "        podSelector: {matchLabels: {app: pg}}\n"
                    "        ports: [{port: 5432, endPort: 5433}]\n",
            NULL);
    json_t *objs = render(f.b, false);
    assert_json(json_object_get(find(objs, "NetworkPolicy", "allow-sandbox-egress"), "spec"),
                "{\"podSelector\":{},\"policyTypes\":[\"Egress\"],\"egress\":["
                "{\"to\":[{\"ipBlock\":{\"cidr\":\"0.0.0.0/0\",\"except\":["
                "\"192.168.0.0/16\",\"169.254.169.254/32\",\"169.254.42.42/32\"]}}],"
                "\"ports\":[{\"protocol\":\"TCP\",\"port\":443}]}]}");
    assert_json(json_object_get(find(objs, "NetworkPolicy", "allow-internal-egress"), "spec"),
                "{\"podSelector\":{},\"policyTypes\":[\"Egress\"],\"egress\":[{\"to\":[{"
                "\"namespaceSelector\":{\"matchLabels\":{\"kubernetes.io/metadata.name\":"
                "\"db\"}},\"podSelector\":{\"matchLabels\":{\"app\":\"pg\"}}}],"
                "\"ports\":[{\"protocol\":\"TCP\",\"port\":5432,\"endPort\":5433}]}]}");
    json_decref(objs);
    fixture_release(&f);
}

/* ---- namespace, labels, identity ----------------------------------------------- */

static void test_namespace_and_labels(void **state)
{
    (void)state;
    struct fixture f;
    resolve(&f, sb_basic, NULL);
    json_t *objs = render(f.b, false);
    json_t *ns = find(objs, "Namespace", NULL);
    assert_json(json_object_get(ns, "metadata"),
                "{\"name\":\"lab-s-joe\",\"labels\":{\"owner\":\"joe\","
                "\"app.kubernetes.io/managed-by\":\"stockade\",\"stockade.dev/sandbox\":"
                "\"s-joe\",\"pod-security.kubernetes.io/enforce\":\"restricted\","
                "\"pod-security.kubernetes.io/audit\":\"restricted\","
                "\"pod-security.kubernetes.io/warn\":\"restricted\"}}");
    size_t i;
    json_t *o;
    json_array_foreach(objs, i, o)
    {
        json_t *l = json_object_get(json_object_get(o, "metadata"), "labels");
        assert_string_equal(json_string_value(json_object_get(l, STK_K8S_MANAGED_BY_LABEL)),
                            "stockade");
        assert_string_equal(json_string_value(json_object_get(l, STK_K8S_SANDBOX_LABEL)), "s-joe");
        assert_string_equal(json_string_value(json_object_get(l, "owner")), "joe");
        if (strcmp(json_string_value(json_object_get(o, "kind")), "Namespace"))
            assert_string_equal(
                json_string_value(json_object_get(json_object_get(o, "metadata"), "namespace")),
                "lab-s-joe");
    }
    json_decref(objs);
    fixture_release(&f);
}

static void test_driver_namespace(void **state)
{
    (void)state;
    struct fixture f;
    resolve(&f,
            SB_HEAD "spec:\n  image: busybox:1.36\n  driverConfig:\n    kubernetes:\n"
                    "      namespace: sbx-joe\n      runtimeClassName: kata\n",
            NULL);
    json_t *objs = render(f.b, false);
    json_t *ns = find(objs, "Namespace", NULL);
    assert_string_equal(json_string_value(json_object_get(json_object_get(ns, "metadata"), "name")),
                        "sbx-joe");
    json_t *pod = find(objs, "Pod", NULL);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(pod, "spec"), "runtimeClassName")),
        "kata");
    json_decref(objs);
    fixture_release(&f);
}

static void test_no_token_by_default(void **state)
{
    (void)state;
    struct fixture f;
    resolve(&f, sb_basic, NULL);
    json_t *objs = render(f.b, false);
    assert_null(find(objs, "RoleBinding", NULL));
    json_t *spec = json_object_get(find(objs, "Pod", NULL), "spec");
    assert_true(json_is_false(json_object_get(spec, "automountServiceAccountToken")));
    json_t *sa = find(objs, "ServiceAccount", NULL);
    assert_true(json_is_false(json_object_get(sa, "automountServiceAccountToken")));
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(spec, "volumes"), i, v)
        assert_null(json_object_get(v, "projected"));
    json_decref(objs);
    fixture_release(&f);
}

static void test_token_when_access(void **state)
{
    (void)state;
    struct fixture f;
    resolve(&f, sb_basic, datalab_env); /* kubernetesAccess true, role edit */
    json_t *objs = render(f.b, false);
    json_t *rb = find(objs, "RoleBinding", NULL);
    assert_non_null(rb);
    assert_json(json_object_get(rb, "roleRef"),
                "{\"apiGroup\":\"rbac.authorization.k8s.io\",\"kind\":\"ClusterRole\","
                "\"name\":\"stockade-edit\"}");
    json_t *spec = json_object_get(find(objs, "Pod", NULL), "spec");
    assert_true(json_is_false(json_object_get(spec, "automountServiceAccountToken")));
    json_t *vol = NULL, *v;
    size_t i;
    json_array_foreach(json_object_get(spec, "volumes"), i, v) if (json_object_get(v, "projected"))
        vol = v;
    assert_non_null(vol);
    json_t *tok = json_object_get(
        json_array_get(json_object_get(json_object_get(vol, "projected"), "sources"), 0),
        "serviceAccountToken");
    assert_int_equal(json_integer_value(json_object_get(tok, "expirationSeconds")), 3600);
    json_decref(objs);
    fixture_release(&f);
}

/* ---- workload ------------------------------------------------------------------- */

static void test_restricted_security_context(void **state)
{
    (void)state;
    struct fixture f;
    resolve(&f, sb_basic, NULL);
    json_t *objs = render(f.b, false);
    json_t *spec = json_object_get(find(objs, "Pod", NULL), "spec");
    assert_json(json_object_get(spec, "securityContext"),
                "{\"runAsNonRoot\":true,\"runAsUser\":65532,\"runAsGroup\":65532,"
                "\"fsGroup\":65532,\"seccompProfile\":{\"type\":\"RuntimeDefault\"}}");
    json_t *c = json_array_get(json_object_get(spec, "containers"), 0);
    assert_json(json_object_get(c, "securityContext"),
                "{\"allowPrivilegeEscalation\":false,\"capabilities\":{\"drop\":[\"ALL\"]},"
                "\"privileged\":false,\"readOnlyRootFilesystem\":true,\"runAsNonRoot\":true,"
                "\"seccompProfile\":{\"type\":\"RuntimeDefault\"}}");
    assert_json(json_object_get(json_object_get(c, "resources"), "limits"),
                "{\"cpu\":\"1\",\"memory\":\"512Mi\",\"ephemeral-storage\":\"1Gi\"}");
    assert_string_equal(json_string_value(json_object_get(spec, "restartPolicy")), "Always");
    json_decref(objs);
    fixture_release(&f);
}

static void test_job_rule(void **state)
{
    (void)state;
    struct fixture f;
    resolve(&f, SB_HEAD "spec:\n  image: busybox:1.36\n  resources:\n    wallClock: 90s\n", NULL);
    json_t *objs = render(f.b, false);
    assert_null(find(objs, "Pod", NULL));
    json_t *job = find(objs, "Job", NULL);
    assert_non_null(job);
    json_t *spec = json_object_get(job, "spec");
    assert_int_equal(json_integer_value(json_object_get(spec, "backoffLimit")), 0);
    assert_int_equal(json_integer_value(json_object_get(spec, "activeDeadlineSeconds")), 90);
    assert_string_equal(
        json_string_value(json_object_get(
            json_object_get(json_object_get(spec, "template"), "spec"), "restartPolicy")),
        "Never");
    json_decref(objs);
    fixture_release(&f);

    resolve(&f, sb_basic, NULL);
    objs = render(f.b, true);
    job = find(objs, "Job", NULL);
    assert_non_null(job);
    assert_null(json_object_get(json_object_get(job, "spec"), "activeDeadlineSeconds"));
    json_decref(objs);
    fixture_release(&f);
}

static void test_docker_vcluster_home(void **state)
{
    (void)state;
    struct fixture f;
    resolve(&f,
            SB_HEAD "spec:\n  image: busybox:1.36\n  vcluster: true\n  security:\n"
                    "    policy: privileged\n    kubernetesAccess: true\n    docker: true\n"
                    "  storage:\n    home: {size: 2Gi, persist: true, storageClassName: ssd}\n",
            NULL);
    json_t *objs = render(f.b, false);
    json_t *spec = json_object_get(find(objs, "Pod", NULL), "spec");
    json_t *cs = json_object_get(spec, "containers");
    assert_int_equal(json_array_size(cs), 2);
    json_t *dind = json_array_get(cs, 1);
    assert_true(
        json_is_true(json_object_get(json_object_get(dind, "securityContext"), "privileged")));
    json_t *main_env = json_object_get(json_array_get(cs, 0), "env");
    assert_string_equal(json_string_value(json_object_get(json_array_get(main_env, 0), "name")),
                        "DOCKER_HOST");
    assert_non_null(find(objs, "Namespace", "lab-s-joe-vc"));
    json_t *pvc = find(objs, "PersistentVolumeClaim", "s-joe-home");
    assert_non_null(pvc);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(pvc, "spec"), "storageClassName")),
        "ssd");
    json_t *quota =
        json_object_get(json_object_get(find(objs, "ResourceQuota", NULL), "spec"), "hard");
    assert_string_equal(json_string_value(json_object_get(quota, "limits.memory")), "1Gi");
    assert_string_equal(json_string_value(json_object_get(quota, "requests.storage")), "2Gi");
    json_decref(objs);
    fixture_release(&f);
}

static void test_warm_pool(void **state)
{
    (void)state;
    static const char pool[] = "  driverConfig:\n    kubernetes:\n      namespace: pool\n"
                               "      allocation: {mode: warmPool, warmPool: small}\n";
    char sb[512];
    struct fixture f;
    snprintf(sb, sizeof(sb), SB_HEAD "spec:\n  image: busybox:1.36\n%s", pool);
    resolve(&f, sb, NULL);
    json_t *objs = render(f.b, false);
    assert_null(find(objs, "Pod", NULL));
    assert_null(find(objs, "Job", NULL));
    json_t *tpl = find(objs, "SandboxTemplate", "small");
    assert_non_null(tpl);
    json_t *pt = json_object_get(json_object_get(tpl, "spec"), "podTemplate");
    assert_json(json_object_get(json_object_get(pt, "metadata"), "labels"),
                "{\"owner\":\"joe\",\"app.kubernetes.io/managed-by\":\"stockade\","
                "\"stockade.dev/warm-pool\":\"small\"}");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(pt, "spec"), "serviceAccountName")),
        "small");
    assert_json(json_object_get(find(objs, "SandboxWarmPool", "small"), "spec"),
                "{\"replicas\":1,\"sandboxTemplateRef\":{\"name\":\"small\"}}");
    assert_json(json_object_get(find(objs, "SandboxClaim", "s-joe"), "spec"),
                "{\"warmPoolRef\":{\"name\":\"small\"}}");
    json_decref(objs);
    fixture_release(&f);

    /* a deadline cannot be kept by a pooled Pod */
    snprintf(sb, sizeof(sb),
             SB_HEAD "spec:\n  image: busybox:1.36\n  resources: {wallClock: 1m}\n%s", pool);
    resolve(&f, sb, NULL);
    json_t *out = NULL;
    struct stk_error *err = NULL;
    assert_true(stk_k8s_render(f.b, NULL, &out, &err) < 0);
    assert_non_null(strstr(err->msg, "wallClock"));
    stk_error_free(err);
    fixture_release(&f);
}

/* The kubernetes driver's agents.x-k8s.io pool (pool create on a cluster
 * that serves it): the pool's objects from any template, sized, with a
 * quota for the ready replicas and as many claimed ones. */
static void test_agents_pool_option(void **state)
{
    (void)state;
    struct fixture f;
    resolve(&f, sb_basic, NULL);
    struct stk_k8s_options opt = {.sandbox_id = "pool.ap",
                                  .store = "0123",
                                  .sandbox_name = "ap",
                                  .namespace = "pool-ap-1234abcd",
                                  .agents_pool = "ap",
                                  .agents_replicas = 3};
    json_t *objs = NULL;
    struct stk_error *err = NULL;
    assert_int_equal(stk_k8s_render(f.b, &opt, &objs, &err), 0);
    assert_null(find(objs, "Pod", NULL));
    json_t *wp = find(objs, "SandboxWarmPool", "ap");
    assert_json(json_object_get(wp, "spec"),
                "{\"replicas\":3,\"sandboxTemplateRef\":{\"name\":\"ap\"}}");
    json_t *tpl = find(objs, "SandboxTemplate", "ap");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(tpl, "metadata"), "namespace")),
        "pool-ap-1234abcd");
    assert_string_equal(
        json_string_value(json_object_get(
            json_object_get(json_object_get(tpl, "metadata"), "labels"), STK_K8S_SANDBOX_ID_LABEL)),
        "pool.ap");
    /* the pooled Pods carry the pool, not one sandbox */
    json_t *pl = json_object_get(
        json_object_get(json_object_get(json_object_get(tpl, "spec"), "podTemplate"), "metadata"),
        "labels");
    assert_null(json_object_get(pl, STK_K8S_SANDBOX_ID_LABEL));
    assert_string_equal(json_string_value(json_object_get(pl, STK_K8S_WARM_POOL_LABEL)), "ap");
    json_t *rq = find(objs, "ResourceQuota", NULL);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_object_get(rq, "spec"), "hard"), "pods")),
                        "6");
    assert_non_null(find(objs, "SandboxClaim", NULL));
    json_decref(objs);
    fixture_release(&f);

    /* what a pooled Pod cannot keep is refused for these pools too */
    char sb[256];
    snprintf(sb, sizeof(sb),
             SB_HEAD "spec:\n  image: busybox:1.36\n  resources: {wallClock: 1m}\n");
    resolve(&f, sb, NULL);
    objs = NULL;
    assert_true(stk_k8s_render(f.b, &opt, &objs, &err) < 0);
    assert_non_null(strstr(err->msg, "wallClock"));
    stk_error_free(err);
    fixture_release(&f);
}

static void test_image_required(void **state)
{
    (void)state;
    struct fixture f;
    resolve(&f, SB_HEAD "spec:\n  rootfs: host\n", NULL);
    json_t *out = NULL;
    struct stk_error *err = NULL;
    assert_true(stk_k8s_render(f.b, NULL, &out, &err) < 0);
    assert_non_null(strstr(err->msg, "spec.image"));
    stk_error_free(err);
    fixture_release(&f);
}

static void test_deterministic(void **state)
{
    (void)state;
    struct fixture f;
    resolve(&f, sb_basic, datalab_env);
    json_t *a = render(f.b, false), *b = render(f.b, false);
    struct stk_buf ya = {0}, yb = {0};
    assert_int_equal(stk_yaml_dump(a, &ya, NULL), 0);
    assert_int_equal(stk_yaml_dump(b, &yb, NULL), 0);
    assert_string_equal(stk_buf_str(&ya), stk_buf_str(&yb));
    /* and the YAML reads back as the same objects */
    json_t *back = NULL;
    assert_int_equal(stk_yaml_load(ya.data, ya.len, &back, NULL), 0);
    assert_true(json_equal(back, a));
    json_decref(back);
    stk_buf_free(&ya);
    stk_buf_free(&yb);
    json_decref(a);
    json_decref(b);
    fixture_release(&f);
}

/* ---- cluster objects ---------------------------------------------------------------- */

static void test_cluster_roles_safe(void **state)
{
    (void)state;
    static const char *const forbidden_verbs[] = {"bind", "escalate", "impersonate", "*"};
    json_t *objs = stk_k8s_cluster_objects(STK_K8S_ADMISSION_VAP);
    const char *roles[] = {"stockade-view", "stockade-edit", "stockade-admin"};
    for (size_t r = 0; r < 3; r++) {
        json_t *role = find(objs, "ClusterRole", roles[r]);
        assert_non_null(role);
        size_t i, j;
        json_t *rule, *x;
        json_array_foreach(json_object_get(role, "rules"), i, rule)
        {
            const char *group =
                json_string_value(json_array_get(json_object_get(rule, "apiGroups"), 0));
            bool rbac = !strcmp(group, "rbac.authorization.k8s.io");
            json_array_foreach(json_object_get(rule, "resources"), j, x)
            {
                assert_null(strstr(json_string_value(x), "networkpolicies"));
                assert_string_not_equal(json_string_value(x), "*");
                assert_string_not_equal(json_string_value(x), "serviceaccounts/token");
            }
            json_array_foreach(json_object_get(rule, "verbs"), j, x)
            {
                for (size_t k = 0; k < STK_ARRAY_SIZE(forbidden_verbs); k++)
                    assert_string_not_equal(json_string_value(x), forbidden_verbs[k]);
                if (rbac)
                    assert_true(!strcmp(json_string_value(x), "get") ||
                                !strcmp(json_string_value(x), "list") ||
                                !strcmp(json_string_value(x), "watch"));
            }
        }
    }
    json_t *rc = find(objs, "RuntimeClass", "gvisor");
    assert_string_equal(json_string_value(json_object_get(rc, "handler")), "runsc");
    assert_non_null(find(objs, "ValidatingAdmissionPolicy", "stockade-protect-networkpolicies"));
    assert_non_null(
        find(objs, "ValidatingAdmissionPolicyBinding", "stockade-protect-networkpolicies"));
    assert_non_null(find(objs, "ValidatingAdmissionPolicy", "stockade-pod-guard"));
    json_decref(objs);
}

/* ---- YAML -------------------------------------------------------------------------- */

static void test_yaml_round_trip(void **state)
{
    (void)state;
    json_t *v = json_pack("[{s:[s,s,s,s,s,s,s,s,s,s,s,s,s,s,s], s:i, s:b, s:n, s:f, s:{}, s:[]}]",
                          "strings", "true", "0.0.0.0/0", "", "a: b", "#x", "-c", "null", "1e3",
                          "multi\nline", "ünï", "yes", "~", "  padded ", "'q'", "\"dq\"", "int",
                          -42, "bool", 1, "null", "real", 1.5, "empty", "list");
    struct stk_buf out = {0};
    assert_int_equal(stk_yaml_dump(v, &out, NULL), 0);
    json_t *back = NULL;
    assert_int_equal(stk_yaml_load(out.data, out.len, &back, NULL), 0);
    if (!json_equal(back, v))
        print_error("%s\n", out.data);
    assert_true(json_equal(back, v));
    json_decref(back);
    json_decref(v);
    stk_buf_free(&out);
}

static void test_yaml_load_errors(void **state)
{
    (void)state;
    static const char *const bad[] = {"a: 1\na: 2\n", "a: &x 1\nb: *x\n", "a: [1, 2\n"};
    for (size_t i = 0; i < STK_ARRAY_SIZE(bad); i++) {
        json_t *v = NULL;
        struct stk_error *err = NULL;
        assert_true(stk_yaml_load(bad[i], strlen(bad[i]), &v, &err) < 0);
        assert_non_null(err);
        stk_error_free(err);
    }
    json_t *v = NULL;
    const char *modes = "a: 0644\nb: 0o17\nc: 0x1F\nd: 010.5\ne: 09\nf: -12\ng: on\n";
    assert_int_equal(stk_yaml_load(modes, strlen(modes), &v, NULL), 0);
    assert_json(json_array_get(v, 0), "{\"a\":420,\"b\":15,\"c\":31,\"d\":10.5,\"e\":\"09\","
                                      "\"f\":-12,\"g\":\"on\"}");
    json_decref(v);
    const char *json_text = "{\"a\": [1, \"2\", true, null]}";
    assert_int_equal(stk_yaml_load(json_text, strlen(json_text), &v, NULL), 0);
    assert_json(json_array_get(v, 0), "{\"a\":[1,\"2\",true,null]}");
    json_decref(v);
}

/* ---- injection ------------------------------------------------------------------------ */

static const char sb_inject_fmt[] =
    "apiVersion: stockade.dev/v1alpha1\nkind: Sandbox\nmetadata: {name: dbg, namespace: shop}\n"
    "spec:\n  image: tools:1\n  deployment:\n    model: injection\n"
    "    target: {kind: %s, name: web}\n  security:\n    policy: privileged\n%s";

static json_t *workload(const char *kind, const char *share)
{
    char text[1024];
    snprintf(text, sizeof(text),
             "{\"apiVersion\":\"apps/v1\",\"kind\":\"%s\",\"metadata\":{\"name\":\"web\"},"
             "\"spec\":{\"template\":{\"spec\":{%s\"containers\":[{\"name\":\"app\","
             "\"image\":\"nginx\"}]}}}}",
             kind, share);
    json_t *w = json_loads(text, 0, NULL);
    assert_non_null(w);
    return w;
}

static void resolve_inject(struct fixture *f, const char *kind, const char *extra)
{
    char sb[1024];
    snprintf(sb, sizeof(sb), sb_inject_fmt, kind, extra);
    resolve(f, sb, NULL);
}

static void test_inject_eject_round_trip(void **state)
{
    (void)state;
    static const char *const kinds[] = {"Deployment", "StatefulSet", "DaemonSet"};
    static const char *const shares[] = {"", "\"shareProcessNamespace\":true,",
                                         "\"shareProcessNamespace\":false,"};
    for (size_t k = 0; k < 3; k++)
        for (size_t s = 0; s < 3; s++) {
            struct fixture f;
            resolve_inject(&f, kinds[k], "");
            json_t *w = workload(kinds[k], shares[s]);
            json_t *in = NULL, *out = NULL;
            struct stk_error *err = NULL;
            assert_int_equal(stk_k8s_inject(f.b, w, &in, &err), 0);
            json_t *ps =
                json_object_get(json_object_get(json_object_get(in, "spec"), "template"), "spec");
            assert_true(json_is_true(json_object_get(ps, "shareProcessNamespace")));
            json_t *c = json_array_get(json_object_get(ps, "containers"), 1);
            assert_string_equal(json_string_value(json_object_get(c, "name")), "dbg-sandbox");
            /* SYS_PTRACE was not granted */
            assert_null(json_object_get(
                json_object_get(json_object_get(c, "securityContext"), "capabilities"), "add"));
            assert_non_null(
                json_object_get(json_object_get(json_object_get(in, "metadata"), "annotations"),
                                STK_K8S_INJECTED_ANNOTATION));
            /* through YAML, as the CLI does */
            struct stk_buf y = {0};
            json_t *docs = json_pack("[O]", in), *back = NULL;
            assert_int_equal(stk_yaml_dump(docs, &y, NULL), 0);
            assert_int_equal(stk_yaml_load(y.data, y.len, &back, NULL), 0);
            assert_int_equal(stk_k8s_eject(json_array_get(back, 0), &out, &err), 0);
            assert_true(json_equal(out, w));
            json_decref(out);
            json_decref(back);
            json_decref(docs);
            stk_buf_free(&y);
            json_decref(in);
            json_decref(w);
            fixture_release(&f);
        }
}

/* The live-cluster injection: the apply configuration carries stockade's
 * fields and none of the workload's (server-side apply would make stockade
 * their co-owner, and eject would then remove them); eject applies nothing. */
static void test_inject_apply_config(void **state)
{
    (void)state;
    static const char *const kinds[] = {"Deployment", "StatefulSet", "DaemonSet"};
    for (size_t k = 0; k < 3; k++) {
        struct fixture f;
        resolve_inject(&f, kinds[k], "");
        json_t *w = workload(kinds[k], "\"hostname\":\"h\",");
        json_object_set_new(json_object_get(w, "metadata"), "namespace", json_string("shop"));
        json_object_set_new(json_object_get(w, "spec"), "replicas", json_integer(3));
        struct stk_k8s_options opt = {.sandbox_id = "dbg-1234", .store = "abcd"};
        json_t *cfg = NULL;
        struct stk_error *err = NULL;
        assert_int_equal(stk_k8s_inject_apply(f.b, w, &opt, &cfg, &err), 0);
        char want[2048];
        snprintf(want, sizeof(want),
                 "{\"apiVersion\":\"apps/v1\",\"kind\":\"%s\",\"metadata\":{\"name\":\"web\","
                 "\"labels\":{\"app.kubernetes.io/managed-by\":\"stockade\","
                 "\"stockade.dev/sandbox-id\":\"dbg-1234\",\"stockade.dev/store\":\"abcd\"}",
                 kinds[k]);
        char *text = json_dumps(cfg, JSON_COMPACT | JSON_PRESERVE_ORDER);
        assert_non_null(strstr(text, want));
        free(text);
        /* exactly: identity, metadata, and spec.template's stockade parts */
        assert_int_equal(json_object_size(cfg), 4);
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(cfg, "metadata"), "namespace")),
            "shop");
        json_t *spec = json_object_get(cfg, "spec");
        assert_int_equal(json_object_size(spec), 1); /* no replicas, no selector */
        json_t *tpl = json_object_get(spec, "template");
        json_t *labels = json_object_get(json_object_get(tpl, "metadata"), "labels");
        assert_int_equal(json_object_size(labels), 2);
        assert_string_equal(json_string_value(json_object_get(labels, STK_K8S_CONTAINER_LABEL)),
                            "dbg-sandbox");
        json_t *ps = json_object_get(tpl, "spec");
        assert_int_equal(json_object_size(ps), 3); /* no hostname: the workload's */
        json_t *cs = json_object_get(ps, "containers");
        assert_int_equal(json_array_size(cs), 1); /* not "app" */
        assert_string_equal(json_string_value(json_object_get(json_array_get(cs, 0), "name")),
                            "dbg-sandbox");
        assert_int_equal(json_array_size(json_object_get(ps, "volumes")), 2);
        assert_true(json_is_true(json_object_get(ps, "shareProcessNamespace")));
        const char *rec = json_string_value(
            json_object_get(json_object_get(json_object_get(cfg, "metadata"), "annotations"),
                            STK_K8S_INJECTED_ANNOTATION));
        assert_non_null(rec);
        assert_non_null(strstr(rec, "\"containers\":[\"dbg-sandbox\"]"));
        json_decref(cfg);
        /* the same checks as render: a workload that carries a sandbox */
        json_object_set_new(json_object_get(w, "metadata"), "annotations",
                            json_pack("{s:s}", STK_K8S_INJECTED_ANNOTATION, "{}"));
        assert_int_equal(stk_k8s_inject_apply(f.b, w, &opt, &cfg, &err), -EINVAL);
        assert_non_null(strstr(err->msg, "eject it first"));
        stk_error_free(err);
        json_decref(w);
        json_t *ej = stk_k8s_eject_apply(kinds[k], "shop", "web");
        snprintf(want, sizeof(want),
                 "{\"apiVersion\":\"apps/v1\",\"kind\":\"%s\",\"metadata\":{\"name\":\"web\","
                 "\"namespace\":\"shop\"}}",
                 kinds[k]);
        text = json_dumps(ej, JSON_COMPACT | JSON_PRESERVE_ORDER);
        assert_string_equal(text, want);
        free(text);
        json_decref(ej);
        fixture_release(&f);
    }
}

static void test_inject_ptrace_when_granted(void **state)
{
    (void)state;
    struct fixture f;
    resolve_inject(&f, "Deployment", "    capabilities: {add: [SYS_PTRACE]}\n");
    json_t *w = workload("Deployment", "");
    json_t *in = NULL;
    assert_int_equal(stk_k8s_inject(f.b, w, &in, NULL), 0);
    json_t *ps = json_object_get(json_object_get(json_object_get(in, "spec"), "template"), "spec");
    json_t *c = json_array_get(json_object_get(ps, "containers"), 1);
    assert_json(json_object_get(json_object_get(c, "securityContext"), "capabilities"),
                "{\"drop\":[\"ALL\"],\"add\":[\"SYS_PTRACE\"]}");
    json_decref(in);
    json_decref(w);
    fixture_release(&f);
}

static void test_inject_errors(void **state)
{
    (void)state;
    struct fixture f;
    resolve_inject(&f, "Deployment", "");
    struct {
        json_t *w;
        const char *msg;
    } cases[] = {
        {workload("StatefulSet", ""), "target.kind"},
        {json_loads("{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"name\":"
                    "\"other\"},\"spec\":{\"template\":{\"spec\":{\"containers\":[]}}}}",
                    0, NULL),
         "target.name"},
        {json_loads("{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"web\"}}", 0,
                    NULL),
         "only Deployment"},
        {json_loads("{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"name\":"
                    "\"web\"},\"spec\":{}}",
                    0, NULL),
         "containers"},
    };
    for (size_t i = 0; i < STK_ARRAY_SIZE(cases); i++) {
        json_t *out = NULL;
        struct stk_error *err = NULL;
        assert_true(stk_k8s_inject(f.b, cases[i].w, &out, &err) < 0);
        if (!strstr(err->msg, cases[i].msg))
            print_error("case %zu: %s\n", i, err->msg);
        assert_non_null(strstr(err->msg, cases[i].msg));
        stk_error_free(err);
        json_decref(cases[i].w);
    }
    /* twice is an error; eject of a clean workload is an error */
    json_t *w = workload("Deployment", ""), *once = NULL, *twice = NULL, *ej = NULL;
    struct stk_error *err = NULL;
    assert_int_equal(stk_k8s_inject(f.b, w, &once, NULL), 0);
    assert_true(stk_k8s_inject(f.b, once, &twice, &err) < 0);
    stk_error_free(err);
    err = NULL;
    assert_true(stk_k8s_eject(w, &ej, &err) < 0);
    stk_error_free(err);
    json_decref(once);
    json_decref(w);
    fixture_release(&f);

    /* a standalone sandbox cannot be injected */
    resolve(&f, sb_basic, NULL);
    w = workload("Deployment", "");
    err = NULL;
    assert_true(stk_k8s_inject(f.b, w, &once, &err) < 0);
    stk_error_free(err);
    json_decref(w);
    fixture_release(&f);
}

/* The Pod names the pinned image and the pull secrets by name (a Job's
 * template too); the sidecar's image is left alone. */
static const char *sandbox_image(json_t *spec)
{
    return json_string_value(
        json_object_get(json_array_get(json_object_get(spec, "containers"), 0), "image"));
}

/* The Pod names the pinned image and the pull secrets by name (a Job's
 * template too). */
static void test_pinned_image_and_pull_secrets(void **state)
{
    (void)state;
    struct fixture f;
    resolve(&f,
            SB_HEAD "spec:\n  image: localhost:5000/py:3.12\n  driverConfig:\n    kubernetes:\n"
                    "      imagePullSecrets: [regcred, other]\n",
            NULL);
    for (int job = 0; job < 2; job++) {
        struct stk_k8s_options opt = {.job = job, .image = "localhost:5000/py@sha256:abc"};
        json_t *out = NULL;
        struct stk_error *err = NULL;
        assert_int_equal(stk_k8s_render(f.b, &opt, &out, &err), 0);
        json_t *w = find(out, job ? "Job" : "Pod", NULL);
        assert_non_null(w);
        json_t *spec = json_object_get(w, "spec");
        if (job)
            spec = json_object_get(json_object_get(spec, "template"), "spec");
        assert_string_equal(sandbox_image(spec), "localhost:5000/py@sha256:abc");
        assert_json(json_object_get(spec, "imagePullSecrets"),
                    "[{\"name\":\"regcred\"},{\"name\":\"other\"}]");
        json_decref(out);
    }
    /* no pin: spec.image as written */
    json_t *out = render(f.b, false);
    assert_string_equal(sandbox_image(json_object_get(find(out, "Pod", NULL), "spec")),
                        "localhost:5000/py:3.12");
    json_decref(out);
    fixture_release(&f);
}

/* ---- the egress proxy ----------------------------------------------------------------- */

#define SB_PROXY                                                                                   \
    SB_HEAD "spec:\n  image: busybox:1.36\n  network:\n    allowHosts: [pypi.org]\n"               \
            "  bindings:\n"                                                                        \
            "    - {name: gh, url: \"https://api.github.com\", credential: {source: "              \
            "kubernetesSecret, ref: tok, key: token}}\n"                                           \
            "    - {name: other, url: \"https://o.example.com\", credential: {source: "            \
            "kubernetesSecret, ref: vault/o, key: k}}\n"

static void test_proxy_objects(void **state)
{
    (void)state;
    struct fixture f;
    resolve(&f,
            SB_PROXY "  driverConfig:\n    kubernetes: {proxyImage: \"example.com/stockade:1\"}\n",
            NULL);
    json_t *objs = render(f.b, false);
    const char *ns = "lab-s-joe";
    json_t *dep = find(objs, "Deployment", STK_K8S_PROXY_NAME);
    assert_non_null(dep);
    assert_non_null(find(objs, "Service", STK_K8S_PROXY_NAME));
    assert_non_null(find(objs, "ServiceAccount", STK_K8S_PROXY_NAME));
    /* the Service before the workload (its variables are the workload's) */
    size_t i, svc_at = 0, pod_at = 0;
    json_t *o;
    json_array_foreach(objs, i, o)
    {
        const char *kind = json_string_value(json_object_get(o, "kind"));
        if (!strcmp(kind, "Service"))
            svc_at = i;
        if (!strcmp(kind, "Pod"))
            pod_at = i;
    }
    assert_true(svc_at && svc_at < pod_at);
    /* the ConfigMap: references, the same-namespace Secret as a mounted file */
    json_t *cm = find(objs, "ConfigMap", STK_K8S_PROXY_NAME);
    json_t *cfg = json_loads(
        json_string_value(json_object_get(json_object_get(cm, "data"), STK_K8S_PROXY_CONFIG_KEY)),
        0, NULL);
    assert_non_null(cfg);
    assert_json(json_object_get(cfg, "allowHosts"), "[\"pypi.org:443\"]");
    assert_json(json_object_get(cfg, "bindings"),
                "[{\"name\":\"gh\",\"url\":\"https://api.github.com\",\"source\":\"file\","
                "\"ref\":\"/var/run/stockade-proxy/credentials/tok/token\"},"
                "{\"name\":\"other\",\"url\":\"https://o.example.com\",\"source\":"
                "\"kubernetesSecret\",\"ref\":\"vault/o\",\"key\":\"k\"}]");
    json_decref(cfg);
    /* a Role on exactly the other namespace's Secret */
    json_t *role = find(objs, "Role", "stockade-proxy-lab-s-joe");
    assert_non_null(role);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(role, "metadata"), "namespace")),
        "vault");
    assert_json(json_object_get(role, "rules"), "[{\"apiGroups\":[\"\"],\"resources\":"
                                                "[\"secrets\"],\"resourceNames\":[\"o\"],"
                                                "\"verbs\":[\"get\"]}]");
    /* the proxy's Pod: strict, bounded, never labelled as the sandbox */
    json_t *tpl = json_object_get(json_object_get(dep, "spec"), "template");
    json_t *labels = json_object_get(json_object_get(tpl, "metadata"), "labels");
    assert_null(json_object_get(labels, STK_K8S_SANDBOX_LABEL));
    json_t *c = json_array_get(json_object_get(json_object_get(tpl, "spec"), "containers"), 0);
    assert_string_equal(json_string_value(json_object_get(c, "image")), "example.com/stockade:1");
    json_t *sc = json_object_get(c, "securityContext");
    assert_true(json_is_true(json_object_get(sc, "readOnlyRootFilesystem")));
    assert_true(json_is_true(json_object_get(sc, "runAsNonRoot")));
    assert_true(json_is_false(json_object_get(sc, "allowPrivilegeEscalation")));
    /* Ready means listening: create --wait running waits for it */
    assert_json(json_object_get(c, "readinessProbe"),
                "{\"tcpSocket\":{\"port\":3128},\"periodSeconds\":2}");
    /* the same-namespace Secret, optional (it may be made after create) */
    json_t *vol = NULL, *v;
    json_array_foreach(json_object_get(json_object_get(tpl, "spec"), "volumes"), i,
                       v) if (!strcmp(json_string_value(json_object_get(v, "name")), "credentials"))
        vol = v;
    assert_json(json_object_get(json_object_get(vol, "projected"), "sources"),
                "[{\"secret\":{\"name\":\"tok\",\"items\":[{\"key\":\"token\",\"path\":"
                "\"tok/token\"}],\"optional\":true}}]");
    assert_json(json_object_get(c, "resources"),
                "{\"limits\":{\"cpu\":\"200m\",\"memory\":\"64Mi\",\"ephemeral-storage\":"
                "\"16Mi\"},\"requests\":{\"cpu\":\"200m\",\"memory\":\"64Mi\","
                "\"ephemeral-storage\":\"16Mi\"}}");
    /* the workload references no Secret and gets the proxy's address */
    json_t *pod = find(objs, "Pod", "s-joe");
    char *text = json_dumps(pod, JSON_COMPACT);
    assert_null(strstr(text, "ecret"));
    assert_non_null(strstr(text,
                           "\"HTTP_PROXY\",\"value\":\"http://"
                           "$(STOCKADE_PROXY_SERVICE_HOST):$(STOCKADE_PROXY_SERVICE_PORT)\""));
    assert_non_null(strstr(text, "STOCKADE_BINDING_GH_URL"));
    free(text);
    assert_true(json_is_true(json_object_get(json_object_get(pod, "spec"), "enableServiceLinks")));
    /* the proxy admits the sandbox's Pod alone; the sandbox ingress skips it */
    json_t *in = find(objs, "NetworkPolicy", STK_K8S_PROXY_NAME "-ingress");
    assert_json(json_object_get(json_object_get(in, "spec"), "ingress"),
                "[{\"from\":[{\"podSelector\":{\"matchLabels\":{\"stockade.dev/sandbox\":"
                "\"s-joe\"}}}],\"ports\":[{\"protocol\":\"TCP\",\"port\":3128}]}]");
    json_t *sin = find(objs, "NetworkPolicy", "allow-sandbox-ingress");
    assert_json(json_object_get(json_object_get(sin, "spec"), "podSelector"),
                "{\"matchExpressions\":[{\"key\":\"stockade.dev/component\",\"operator\":"
                "\"DoesNotExist\"}]}");
    assert_non_null(find(objs, "NetworkPolicy", "allow-proxy-egress"));
    /* the quota holds the proxy's Pod too */
    json_t *q = find(objs, "ResourceQuota", NULL);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_object_get(q, "spec"), "hard"), "pods")),
                        "2");
    (void)ns;
    json_decref(objs);
    fixture_release(&f);
}

static void proxy_refused(const char *sb, const char *needle)
{
    struct fixture f;
    resolve(&f, sb, NULL);
    json_t *out = NULL;
    struct stk_error *err = NULL;
    assert_true(stk_k8s_render(f.b, NULL, &out, &err) < 0);
    if (!strstr(err->msg, needle))
        print_error("%s\n", err->msg);
    assert_non_null(strstr(err->msg, needle));
    stk_error_free(err);
    fixture_release(&f);
}

static void test_proxy_refusals(void **state)
{
    (void)state;
    proxy_refused(SB_PROXY, "spec.driverConfig.kubernetes.proxyImage");
    proxy_refused(SB_HEAD "spec:\n  image: busybox:1.36\n  network:\n    allowHosts: [pypi.org]\n"
                          "  bindings:\n    - {name: e, url: \"https://e.example.com\", "
                          "credential: {source: env, ref: TOKEN}}\n"
                          "  driverConfig:\n    kubernetes: {proxyImage: \"x.io/s:1\"}\n",
                  "source env is not available on kubernetes");
    proxy_refused(SB_HEAD "spec:\n  image: busybox:1.36\n  network:\n    allowHosts: [pypi.org]\n"
                          "  security: {kubernetesAccess: true, kubernetesRole: edit}\n"
                          "  driverConfig:\n    kubernetes: {proxyImage: \"x.io/s:1\"}\n",
                  "kubernetesRole edit");
    proxy_refused(SB_HEAD "spec:\n  image: busybox:1.36\n  network:\n    allowHosts: [pypi.org]\n"
                          "  driverConfig:\n    kubernetes:\n      proxyImage: \"x.io/s:1\"\n"
                          "      allocation: {mode: warmPool, warmPool: p}\n",
                  "warm pool");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_datalab_networkpolicies_golden),
        cmocka_unit_test(test_exclude_policies),
        cmocka_unit_test(test_strict_defaults_network),
        cmocka_unit_test(test_allowlist_and_internal),
        cmocka_unit_test(test_namespace_and_labels),
        cmocka_unit_test(test_driver_namespace),
        cmocka_unit_test(test_no_token_by_default),
        cmocka_unit_test(test_token_when_access),
        cmocka_unit_test(test_restricted_security_context),
        cmocka_unit_test(test_job_rule),
        cmocka_unit_test(test_docker_vcluster_home),
        cmocka_unit_test(test_warm_pool),
        cmocka_unit_test(test_agents_pool_option),
        cmocka_unit_test(test_image_required),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_cluster_roles_safe),
        cmocka_unit_test(test_yaml_round_trip),
        cmocka_unit_test(test_yaml_load_errors),
        cmocka_unit_test(test_inject_eject_round_trip),
        cmocka_unit_test(test_inject_apply_config),
        cmocka_unit_test(test_inject_ptrace_when_granted),
        cmocka_unit_test(test_inject_errors),
        cmocka_unit_test(test_pinned_image_and_pull_secrets),
        cmocka_unit_test(test_proxy_objects),
        cmocka_unit_test(test_proxy_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
