/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Kubernetes objects of a standalone sandbox, built from the boundary alone.
 * Object and key order is construction order (jansson keeps insertion
 * order), so the same boundary always yields byte-identical output.
 */
#include "internal.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>

#define KiB ((int64_t)1024)
#define MiB (1024 * KiB)
#define GiB (1024 * MiB)

#define HOME_PATH  STK_HOME_PATH
#define TOKEN_PATH "/var/run/secrets/kubernetes.io/serviceaccount"
#define DOCKER_DIR "/var/run/docker"
#define NONROOT_ID 65532

/* ---- small builders --------------------------------------------------------- */

/* Exact Kubernetes quantities: never rounded, so the cluster enforces exactly
 * the resolved value. */
static json_t *qty_cpu(int64_t milli)
{
    if (milli % 1000 == 0)
        return json_sprintf("%lld", (long long)(milli / 1000));
    return json_sprintf("%lldm", (long long)milli);
}

static json_t *qty_bytes(int64_t bytes)
{
    static const struct {
        int64_t unit;
        const char *suffix;
    } units[] = {{GiB, "Gi"}, {MiB, "Mi"}, {KiB, "Ki"}};
    for (size_t i = 0; i < STK_ARRAY_SIZE(units); i++)
        if (bytes >= units[i].unit && bytes % units[i].unit == 0)
            return json_sprintf("%lld%s", (long long)(bytes / units[i].unit), units[i].suffix);
    return json_sprintf("%lld", (long long)bytes);
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

static json_t *map_json(const struct stk_map *m)
{
    json_t *o = json_object();
    if (m)
        for (uint32_t i = 0; i < m->n; i++)
            json_object_set_new(o, m->items[i].key, json_string(m->items[i].value));
    return o;
}

/* The sandbox's own labels, then stockade's (which win on a clash). */
static json_t *labels_json(const struct stk_boundary *b)
{
    json_t *l = map_json(b->labels);
    json_object_set_new(l, STK_K8S_MANAGED_BY_LABEL, json_string(STK_K8S_MANAGED_BY));
    json_object_set_new(l, STK_K8S_SANDBOX_LABEL, json_string(b->name));
    return l;
}

static json_t *object_new(const char *api_version, const char *kind, const char *name,
                          const char *ns, json_t *labels)
{
    json_t *meta = PACK("{s:s}", "name", name);
    if (ns)
        json_object_set_new(meta, "namespace", json_string(ns));
    json_object_set_new(meta, "labels", labels);
    return PACK("{s:s, s:s, s:o}", "apiVersion", api_version, "kind", kind, "metadata", meta);
}

static json_t *strings_json(const char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

/* ---- namespace ------------------------------------------------------------- */

const char *stk_k8s_namespace(const struct stk_boundary *b)
{
    if (b->kube && b->kube->namespace.meta.set)
        return b->kube->namespace.v;
    return stk_arena_printf(b->arena, "%s-%s", b->namespace, b->name);
}

static const char *runtime_class(const struct stk_boundary *b)
{
    if (b->kube && b->kube->runtime_class_name.meta.set)
        return b->kube->runtime_class_name.v;
    switch (b->runtime) {
    case STK_RUNTIME_GVISOR:
        return "gvisor";
    case STK_RUNTIME_DEFAULT:
    case STK_RUNTIME_CRUN:
    case STK_RUNTIME_RUNC:
    case _STK_RUNTIME_N:
        break;
    }
    return NULL; /* the cluster's default runtime */
}

static json_t *namespace_json(const struct stk_boundary *b, const char *name)
{
    static const char *const psa_modes[] = {"enforce", "audit", "warn"};
    json_t *l = labels_json(b);
    for (size_t i = 0; i < STK_ARRAY_SIZE(psa_modes); i++) {
        char key[64];
        snprintf(key, sizeof(key), "pod-security.kubernetes.io/%s", psa_modes[i]);
        json_object_set_new(l, key, json_string(stk_policy_names[b->policy]));
    }
    const char *rc = runtime_class(b);
    if (rc)
        json_object_set_new(l, STK_K8S_RUNTIME_CLASS_LABEL, json_string(rc));
    if (b->policy == STK_POLICY_PRIVILEGED)
        json_object_set_new(l, STK_K8S_EXCEPTION_LABEL, json_string("true"));
    return object_new("v1", "Namespace", name, NULL, l);
}

/* ---- warm pools ------------------------------------------------------------------- */

static const char *warm_pool(const struct stk_boundary *b)
{
    const struct stk_allocation *al = b->kube ? &b->kube->allocation : NULL;
    if (al && al->mode.meta.set && al->mode.v == STK_ALLOC_WARMPOOL)
        return al->warm_pool.v;
    return NULL;
}

/* Pods the namespace holds at once: the sandbox's, or with a warm pool the
 * pool's ready replicas plus the one a claim has just adopted. */
static int64_t pod_count(const struct stk_boundary *b)
{
    return warm_pool(b) ? STK_K8S_WARM_POOL_REPLICAS + 1 : 1;
}

/* ---- identity ------------------------------------------------------------------ */

/* Pooled Pods are interchangeable, so they run as the pool's account. */
static const char *service_account(const struct stk_boundary *b)
{
    if (b->kube && b->kube->service_account_name.meta.set)
        return b->kube->service_account_name.v;
    return warm_pool(b) ? warm_pool(b) : b->name;
}

static json_t *service_account_json(const struct stk_boundary *b, const char *name, const char *ns)
{
    json_t *o = object_new("v1", "ServiceAccount", name, ns, labels_json(b));
    json_object_set_new(o, "automountServiceAccountToken", json_false());
    return o;
}

static json_t *role_binding_json(const struct stk_boundary *b, const char *ns)
{
    const char *role = stk_arena_printf(b->arena, "stockade-%s", stk_role_names[b->kube_role]);
    json_t *o = object_new("rbac.authorization.k8s.io/v1", "RoleBinding",
                           stk_arena_printf(b->arena, "%s-%s", service_account(b), role), ns,
                           labels_json(b));
    json_object_set_new(o, "roleRef",
                        PACK("{s:s, s:s, s:s}", "apiGroup", "rbac.authorization.k8s.io", "kind",
                             "ClusterRole", "name", role));
    json_object_set_new(o, "subjects",
                        PACK("[{s:s, s:s, s:s}]", "kind", "ServiceAccount", "name",
                             service_account(b), "namespace", ns));
    return o;
}

/* ---- NetworkPolicies ------------------------------------------------------------ */

static json_t *selector_json(const struct stk_label_selector *s)
{
    json_t *o = json_object();
    if (s->match_labels.meta.set)
        json_object_set_new(o, "matchLabels", map_json(&s->match_labels));
    if (s->match_expressions.n) {
        json_t *exprs = json_array();
        for (uint32_t i = 0; i < s->match_expressions.n; i++) {
            const struct stk_selector_req *r = &s->match_expressions.items[i];
            json_t *e =
                PACK("{s:s, s:s}", "key", r->key.v, "operator", stk_selector_op_names[r->op.v]);
            if (r->values.n) {
                json_t *vals = json_array();
                for (uint32_t j = 0; j < r->values.n; j++)
                    json_array_append_new(vals, json_string(r->values.items[j].v));
                json_object_set_new(e, "values", vals);
            }
            json_array_append_new(exprs, e);
        }
        json_object_set_new(o, "matchExpressions", exprs);
    }
    return o;
}

static json_t *namespace_selector(const char *ns)
{
    return PACK("{s:{s:s}}", "matchLabels", "kubernetes.io/metadata.name", ns);
}

static json_t *peer_json(const struct stk_erule *r)
{
    char buf[STK_CIDR_STRLEN];
    switch (r->peer) {
    case STK_PEER_SAME_NAMESPACE:
        return PACK("{s:{}}", "podSelector");
    case STK_PEER_CLUSTER_DNS:
        return PACK("{s:o}", "namespaceSelector", namespace_selector(r->namespace));
    case STK_PEER_NAMESPACE: {
        json_t *p = PACK("{s:o}", "namespaceSelector", namespace_selector(r->namespace));
        if (r->pod_selector)
            json_object_set_new(p, "podSelector", selector_json(r->pod_selector));
        return p;
    }
    case STK_PEER_IPBLOCK: {
        json_t *ib = PACK("{s:s}", "cidr", stk_cidr_format(&r->cidr, buf));
        if (r->n_except) {
            json_t *ex = json_array();
            for (size_t i = 0; i < r->n_except; i++)
                json_array_append_new(ex, json_string(stk_cidr_format(&r->except[i], buf)));
            json_object_set_new(ib, "except", ex);
        }
        return PACK("{s:o}", "ipBlock", ib);
    }
    }
    return json_object();
}

static json_t *ports_json(const struct stk_eport *ports, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *p = PACK("{s:s}", "protocol", stk_protocol_names[ports[i].protocol]);
        if (ports[i].port)
            json_object_set_new(p, "port", json_integer(ports[i].port));
        if (ports[i].end_port)
            json_object_set_new(p, "endPort", json_integer(ports[i].end_port));
        json_array_append_new(a, p);
    }
    return a;
}

static json_t *network_policy_json(const struct stk_boundary *b, const struct stk_epolicy *pol,
                                   const char *ns)
{
    json_t *rules = json_array();
    for (size_t i = 0; i < pol->n_rules; i++) {
        const struct stk_erule *r = &pol->rules[i];
        json_t *rule = PACK("{s:[o]}", "to", peer_json(r));
        if (r->n_ports)
            json_object_set_new(rule, "ports", ports_json(r->ports, r->n_ports));
        json_array_append_new(rules, rule);
    }
    json_t *o = object_new("networking.k8s.io/v1", "NetworkPolicy", stk_netpol_names[pol->id], ns,
                           labels_json(b));
    json_object_set_new(
        o, "spec",
        PACK("{s:{}, s:[s], s:o}", "podSelector", "policyTypes", "Egress", "egress", rules));
    return o;
}

/* Ingress (docs/egress.md, "Ingress"), one policy per rule as egress has:
 * sandboxes (its namespace's pods and stockade's namespaces: their own
 * egress policies decide), and the declared ports from anywhere the cluster
 * lets reach them (the Service's clients). A policy with Ingress in policyTypes isolates the
 * pods: nothing else gets in. */
static json_t *ingress_policy_json(const struct stk_boundary *b, const char *ns, bool declared)
{
    json_t *rule;
    if (declared) {
        json_t *ports = json_array();
        for (size_t i = 0; i < b->n_ports; i++)
            json_array_append_new(ports,
                                  PACK("{s:s, s:i}", "protocol", "TCP", "port", b->ports[i].port));
        rule = PACK("{s:o}", "ports", ports);
    } else {
        rule = PACK("{s:[{s:{}}, {s:{s:{s:s}}}]}", "from", "podSelector", "namespaceSelector",
                    "matchLabels", STK_K8S_MANAGED_BY_LABEL, STK_K8S_MANAGED_BY);
    }
    json_t *o =
        object_new("networking.k8s.io/v1", "NetworkPolicy",
                   declared ? STK_INGRESS_DECLARED : STK_INGRESS_SANDBOX, ns, labels_json(b));
    /* the egress proxy's Pod is not a sandbox: its own policy admits the
     * sandbox's Pod alone */
    json_t *pods = stk_k8s_needs_proxy(b)
                       ? PACK("{s:[{s:s, s:s}]}", "matchExpressions", "key",
                              STK_K8S_COMPONENT_LABEL, "operator", "DoesNotExist")
                       : json_object();
    json_object_set_new(o, "spec",
                        PACK("{s:o, s:[s], s:[o]}", "podSelector", pods, "policyTypes", "Ingress",
                             "ingress", rule));
    return o;
}

/* The declared ports as a ClusterIP Service selecting the sandbox's Pod. */
static json_t *service_json(const struct stk_boundary *b, const char *ns)
{
    json_t *ports = json_array();
    for (size_t i = 0; i < b->n_ports; i++)
        json_array_append_new(ports, PACK("{s:s, s:s, s:i, s:i}", "name", b->ports[i].name,
                                          "protocol", "TCP", "port", b->ports[i].port, "targetPort",
                                          b->ports[i].port));
    json_t *o = object_new("v1", "Service", b->name, ns, labels_json(b));
    json_object_set_new(o, "spec",
                        PACK("{s:s, s:{s:s}, s:o}", "type", "ClusterIP", "selector",
                             STK_K8S_SANDBOX_LABEL, b->name, "ports", ports));
    return o;
}

/* ---- quotas and storage ------------------------------------------------------------ */

/* Containers in the sandbox's Pod: each gets the sandbox's limits, so the
 * namespace quota is that many times the limits. */
static int n_containers(const struct stk_boundary *b)
{
    return b->docker ? 2 : 1;
}

static json_t *resource_quota_json(const struct stk_boundary *b, const char *ns, int64_t pods)
{
    const struct stk_resolved_limits *l = &b->limits;
    int64_t k = n_containers(b) * pods;
    json_t *hard = json_object();
    /* the egress proxy's Pod (one, Recreate) on top */
    bool proxy = stk_k8s_needs_proxy(b);
    int64_t cpu = k * l->cpu_milli, mem = k * l->memory, storage = k * l->storage;
    if (proxy) {
        pods++;
        cpu += min64(STK_K8S_PROXY_CPU_MILLI, l->cpu_milli);
        mem += min64(STK_K8S_PROXY_MEMORY, l->memory);
        storage += min64(STK_K8S_PROXY_STORAGE, l->storage);
    }
    json_object_set_new(hard, "pods", json_sprintf("%lld", (long long)pods));
    json_object_set_new(hard, "limits.cpu", qty_cpu(cpu));
    json_object_set_new(hard, "requests.cpu", qty_cpu(cpu));
    json_object_set_new(hard, "limits.memory", qty_bytes(mem));
    json_object_set_new(hard, "requests.memory", qty_bytes(mem));
    if (l->storage) {
        json_object_set_new(hard, "limits.ephemeral-storage", qty_bytes(storage));
        json_object_set_new(hard, "requests.ephemeral-storage", qty_bytes(storage));
    }
    bool pvc = b->home && b->home_persist;
    json_object_set_new(hard, "persistentvolumeclaims", json_string(pvc ? "1" : "0"));
    json_object_set_new(hard, "requests.storage", pvc ? qty_bytes(b->home_size) : json_string("0"));
    json_object_set_new(hard, "services.loadbalancers", json_string("0"));
    json_object_set_new(hard, "services.nodeports", json_string("0"));
    json_t *o = object_new("v1", "ResourceQuota", "sandbox-quota", ns, labels_json(b));
    json_object_set_new(o, "spec", PACK("{s:o}", "hard", hard));
    return o;
}

json_t *stk_k8s_container_limits(const struct stk_boundary *b)
{
    json_t *r = json_object();
    json_object_set_new(r, "cpu", qty_cpu(b->limits.cpu_milli));
    json_object_set_new(r, "memory", qty_bytes(b->limits.memory));
    if (b->limits.storage)
        json_object_set_new(r, "ephemeral-storage", qty_bytes(b->limits.storage));
    return r;
}

static json_t *limit_range_json(const struct stk_boundary *b, const char *ns)
{
    json_t *limits = json_array();
    json_array_append_new(limits,
                          PACK("{s:s, s:o, s:o, s:o}", "type", "Container", "max",
                               stk_k8s_container_limits(b), "default", stk_k8s_container_limits(b),
                               "defaultRequest", stk_k8s_container_limits(b)));
    if (b->home && b->home_persist)
        json_array_append_new(limits, PACK("{s:s, s:{s:o}}", "type", "PersistentVolumeClaim", "max",
                                           "storage", qty_bytes(b->home_size)));
    json_t *o = object_new("v1", "LimitRange", "sandbox-limits", ns, labels_json(b));
    json_object_set_new(o, "spec", PACK("{s:o}", "limits", limits));
    return o;
}

static const char *home_claim(const struct stk_boundary *b)
{
    return stk_arena_printf(b->arena, "%s-home", b->name);
}

static json_t *home_pvc_json(const struct stk_boundary *b, const char *ns)
{
    json_t *spec = PACK("{s:[s], s:{s:{s:o}}}", "accessModes", "ReadWriteOnce", "resources",
                        "requests", "storage", qty_bytes(b->home_size));
    if (b->home_storage_class)
        json_object_set_new(spec, "storageClassName", json_string(b->home_storage_class));
    json_t *o = object_new("v1", "PersistentVolumeClaim", home_claim(b), ns, labels_json(b));
    json_object_set_new(o, "spec", spec);
    return o;
}

/* ---- the workload ------------------------------------------------------------------ */

/* What each Pod Security Standards level means for the sandbox container.
 * Every level drops all capabilities (adding back only the granted ones) and
 * keeps the runtime's default seccomp profile; the Docker sidecar is the only
 * privileged container stockade ever renders. */
static const struct level_context {
    bool run_as_non_root; /* runAsNonRoot + runAsUser/Group 65532 */
    bool no_escalation;   /* allowPrivilegeEscalation: false */
    bool read_only_root;  /* readOnlyRootFilesystem: true */
} level_contexts[_STK_POLICY_N] = {
    [STK_POLICY_RESTRICTED] = {true, true, true},
    [STK_POLICY_BASELINE] = {false, true, true},
    [STK_POLICY_PRIVILEGED] = {false, false, false},
};

static json_t *pod_security_context(const struct stk_boundary *b)
{
    const struct level_context *lc = &level_contexts[b->policy];
    json_t *sc = json_object();
    if (lc->run_as_non_root) {
        json_object_set_new(sc, "runAsNonRoot", json_true());
        json_object_set_new(sc, "runAsUser", json_integer(NONROOT_ID));
        json_object_set_new(sc, "runAsGroup", json_integer(NONROOT_ID));
        json_object_set_new(sc, "fsGroup", json_integer(NONROOT_ID));
    }
    json_object_set_new(sc, "seccompProfile", PACK("{s:s}", "type", "RuntimeDefault"));
    return sc;
}

json_t *stk_k8s_container_security_context(const struct stk_boundary *b)
{
    const struct level_context *lc = &level_contexts[b->policy];
    json_t *sc = json_object();
    if (lc->no_escalation)
        json_object_set_new(sc, "allowPrivilegeEscalation", json_false());
    json_t *caps = PACK("{s:[s]}", "drop", "ALL");
    if (b->n_caps)
        json_object_set_new(caps, "add", strings_json(b->caps, b->n_caps));
    json_object_set_new(sc, "capabilities", caps);
    json_object_set_new(sc, "privileged", json_false());
    json_object_set_new(sc, "readOnlyRootFilesystem", json_boolean(lc->read_only_root));
    if (lc->run_as_non_root)
        json_object_set_new(sc, "runAsNonRoot", json_true());
    json_object_set_new(sc, "seccompProfile", PACK("{s:s}", "type", "RuntimeDefault"));
    return sc;
}

json_t *stk_k8s_env(const struct stk_boundary *b)
{
    json_t *env = json_array();
    for (size_t i = 0; i < b->n_env; i++) {
        const struct stk_env_var *e = &b->env[i];
        json_t *v = PACK("{s:s}", "name", e->name.v);
        if (e->value.meta.set)
            json_object_set_new(v, "value", json_string(e->value.v));
        const struct stk_configmap_key_ref *ref = &e->value_from.config_map_key_ref;
        if (ref->meta.set) {
            json_t *r = PACK("{s:s, s:s}", "name", ref->name.v, "key", ref->key.v);
            if (ref->optional.meta.set)
                json_object_set_new(r, "optional", json_boolean(ref->optional.v));
            json_object_set_new(v, "valueFrom", PACK("{s:o}", "configMapKeyRef", r));
        }
        json_array_append_new(env, v);
    }
    return env;
}

json_t *stk_k8s_env_from(const struct stk_boundary *b)
{
    json_t *a = json_array();
    for (size_t i = 0; i < b->n_env_from; i++) {
        const struct stk_env_from *f = &b->env_from[i];
        json_t *v = json_object();
        if (f->prefix.meta.set)
            json_object_set_new(v, "prefix", json_string(f->prefix.v));
        if (f->config_map_ref.meta.set) {
            json_t *r = PACK("{s:s}", "name", f->config_map_ref.name.v);
            if (f->config_map_ref.optional.meta.set)
                json_object_set_new(r, "optional", json_boolean(f->config_map_ref.optional.v));
            json_object_set_new(v, "configMapRef", r);
        }
        json_array_append_new(a, v);
    }
    return a;
}

static bool env_has(const struct stk_boundary *b, const char *name)
{
    for (size_t i = 0; i < b->n_env; i++)
        if (!strcmp(b->env[i].name.v, name))
            return true;
    return false;
}

static void add_volume(json_t *volumes, json_t *mounts, const char *name, const char *path,
                       bool read_only, json_t *source_key_value)
{
    json_t *v = PACK("{s:s}", "name", name);
    json_object_update(v, source_key_value);
    json_decref(source_key_value);
    json_array_append_new(volumes, v);
    json_t *m = PACK("{s:s, s:s}", "name", name, "mountPath", path);
    if (read_only)
        json_object_set_new(m, "readOnly", json_true());
    json_array_append_new(mounts, m);
}

json_t *stk_k8s_empty_dir(const char *medium, int64_t size)
{
    json_t *ed = json_object();
    if (medium)
        json_object_set_new(ed, "medium", json_string(medium));
    if (size)
        json_object_set_new(ed, "sizeLimit", qty_bytes(size));
    return PACK("{s:o}", "emptyDir", ed);
}

static json_t *token_volume(void)
{
    return PACK("{s:{s:[{s:{s:s, s:i}}, {s:{s:s, s:[{s:s, s:s}]}}, "
                "{s:{s:[{s:s, s:{s:s, s:s}}]}}]}}",
                "projected", "sources", "serviceAccountToken", "path", "token", "expirationSeconds",
                STK_K8S_TOKEN_SECONDS, "configMap", "name", "kube-root-ca.crt", "items", "key",
                "ca.crt", "path", "ca.crt", "downwardAPI", "items", "path", "namespace", "fieldRef",
                "apiVersion", "v1", "fieldPath", "metadata.namespace");
}

static json_t *docker_sidecar(const struct stk_boundary *b)
{
    json_t *c = PACK("{s:s, s:s, s:[s], s:[{s:s, s:s}]}", "name", "docker", "image",
                     STK_K8S_DOCKER_IMAGE, "args", "--host=unix://" DOCKER_DIR "/docker.sock",
                     "env", "name", "DOCKER_TLS_CERTDIR", "value", "");
    json_object_set_new(c, "resources",
                        PACK("{s:o, s:o}", "limits", stk_k8s_container_limits(b), "requests",
                             stk_k8s_container_limits(b)));
    json_object_set_new(c, "securityContext", PACK("{s:b}", "privileged", 1));
    json_object_set_new(c, "volumeMounts",
                        PACK("[{s:s, s:s}, {s:s, s:s}]", "name", "docker-socket", "mountPath",
                             DOCKER_DIR, "name", "docker-data", "mountPath", "/var/lib/docker"));
    return c;
}

static json_t *pod_spec_json(const struct stk_boundary *b, bool job)
{
    json_t *spec = json_object();
    json_t *volumes = json_array();
    json_t *mounts = json_array();

    json_object_set_new(spec, "serviceAccountName", json_string(service_account(b)));
    /* Never the implicit token: when API access is granted the token is an
     * explicit, expiring projected volume below. */
    json_object_set_new(spec, "automountServiceAccountToken", json_false());
    json_object_set_new(spec, "enableServiceLinks", json_false());
    const char *rc = runtime_class(b);
    if (rc)
        json_object_set_new(spec, "runtimeClassName", json_string(rc));
    if (b->kube && b->kube->priority_class_name.meta.set)
        json_object_set_new(spec, "priorityClassName", json_string(b->kube->priority_class_name.v));
    if (b->kube && b->kube->node_selector.meta.set)
        json_object_set_new(spec, "nodeSelector", map_json(&b->kube->node_selector));
    if (b->kube && b->kube->tolerations.n) {
        json_t *tols = json_array();
        for (uint32_t i = 0; i < b->kube->tolerations.n; i++) {
            const struct stk_toleration *t = &b->kube->tolerations.items[i];
            json_t *o = json_object();
            if (t->key.meta.set)
                json_object_set_new(o, "key", json_string(t->key.v));
            json_object_set_new(
                o, "operator",
                json_string(stk_toleration_op_names[t->op.meta.set ? t->op.v : STK_TOL_EQUAL]));
            if (t->value.meta.set)
                json_object_set_new(o, "value", json_string(t->value.v));
            if (t->effect.meta.set && t->effect.v != STK_EFFECT_ALL)
                json_object_set_new(o, "effect", json_string(stk_taint_effect_names[t->effect.v]));
            if (t->toleration_seconds.meta.set)
                json_object_set_new(o, "tolerationSeconds", json_integer(t->toleration_seconds.v));
            json_array_append_new(tols, o);
        }
        json_object_set_new(spec, "tolerations", tols);
    }
    json_object_set_new(spec, "restartPolicy", json_string(job ? "Never" : "Always"));
    json_object_set_new(spec, "securityContext", pod_security_context(b));

    /* the sandbox container */
    json_t *c = PACK("{s:s, s:s}", "name", "sandbox", "image", b->image);
    if (b->kube && b->kube->image_pull_policy.meta.set)
        json_object_set_new(c, "imagePullPolicy",
                            json_string(stk_pull_policy_names[b->kube->image_pull_policy.v]));
    if (b->argc)
        json_object_set_new(c, "command", strings_json(b->argv, b->argc));
    if (b->working_dir)
        json_object_set_new(c, "workingDir", json_string(b->working_dir));
    json_t *env = stk_k8s_env(b);
    if (b->docker && !env_has(b, "DOCKER_HOST"))
        json_array_append_new(env, PACK("{s:s, s:s}", "name", "DOCKER_HOST", "value",
                                        "unix://" DOCKER_DIR "/docker.sock"));
    if (b->home && !env_has(b, "HOME"))
        json_array_append_new(env, PACK("{s:s, s:s}", "name", "HOME", "value", HOME_PATH));
    if (json_array_size(env))
        json_object_set_new(c, "env", env);
    else
        json_decref(env);
    if (b->n_env_from)
        json_object_set_new(c, "envFrom", stk_k8s_env_from(b));
    json_object_set_new(c, "resources",
                        PACK("{s:o, s:o}", "limits", stk_k8s_container_limits(b), "requests",
                             stk_k8s_container_limits(b)));
    json_object_set_new(c, "securityContext", stk_k8s_container_security_context(b));

    add_volume(volumes, mounts, "workspace", b->working_dir ? b->working_dir : "/workspace", false,
               stk_k8s_empty_dir(NULL, 0));
    add_volume(volumes, mounts, "tmp", "/tmp", false, stk_k8s_empty_dir("Memory", b->tmp_size));
    add_volume(volumes, mounts, "shm", "/dev/shm", false, stk_k8s_empty_dir("Memory", b->shm_size));
    if (b->home)
        add_volume(volumes, mounts, "home", HOME_PATH, false,
                   b->home_persist
                       ? PACK("{s:{s:s}}", "persistentVolumeClaim", "claimName", home_claim(b))
                       : stk_k8s_empty_dir(NULL, b->home_size));
    if (b->kube_access)
        add_volume(volumes, mounts, "kube-api-access", TOKEN_PATH, true, token_volume());
    if (b->docker) {
        add_volume(volumes, mounts, "docker-socket", DOCKER_DIR, false, stk_k8s_empty_dir(NULL, 0));
        json_array_append_new(volumes, PACK("{s:s, s:{}}", "name", "docker-data", "emptyDir"));
    }
    json_object_set_new(c, "volumeMounts", mounts);

    json_t *containers = PACK("[o]", c);
    if (b->docker)
        json_array_append_new(containers, docker_sidecar(b));
    json_object_set_new(spec, "containers", containers);
    json_object_set_new(spec, "volumes", volumes);
    return spec;
}

/* The Pod specs among objs (a Pod's, a Job's or a SandboxTemplate's
 * template): the sandbox container's image pinned (image: NAME@DIGEST) and
 * the pull secrets by name. */
static json_t *template_spec(json_t *o)
{
    json_t *spec = json_object_get(o, "spec");
    const char *kind = json_string_value(json_object_get(o, "kind"));
    if (stk_streq(kind, "Pod"))
        return spec;
    if (stk_streq(kind, "Job"))
        return json_object_get(json_object_get(spec, "template"), "spec");
    if (stk_streq(kind, "SandboxTemplate"))
        return json_object_get(json_object_get(spec, "podTemplate"), "spec");
    return NULL;
}

static void pod_image(const struct stk_boundary *b, const char *image, json_t *objs)
{
    size_t n_secrets = b->kube ? b->kube->image_pull_secrets.n : 0;
    size_t i, j;
    json_t *o, *c;
    json_array_foreach(objs, i, o)
    {
        json_t *spec = template_spec(o);
        if (!spec)
            continue;
        json_array_foreach(json_object_get(spec, "containers"), j, c)
        {
            if (image && stk_streq(json_string_value(json_object_get(c, "name")), "sandbox"))
                json_object_set_new(c, "image", json_string(image));
        }
        if (n_secrets) {
            json_t *v = json_array();
            for (size_t k = 0; k < n_secrets; k++)
                json_array_append_new(
                    v, PACK("{s:s}", "name", b->kube->image_pull_secrets.items[k].v));
            json_object_set_new(spec, "imagePullSecrets", v);
        }
    }
}

static json_t *workload_json(const struct stk_boundary *b, const char *ns, bool job)
{
    if (!job) {
        json_t *pod = object_new("v1", "Pod", b->name, ns, labels_json(b));
        json_object_set_new(pod, "spec", pod_spec_json(b, false));
        return pod;
    }
    json_t *o = object_new("batch/v1", "Job", b->name, ns, labels_json(b));
    json_t *spec = json_object();
    json_object_set_new(spec, "backoffLimit", json_integer(0));
    if (b->limits.wall_clock_ms)
        json_object_set_new(spec, "activeDeadlineSeconds",
                            json_integer((b->limits.wall_clock_ms + 999) / 1000));
    json_object_set_new(spec, "template",
                        PACK("{s:{s:o}, s:o}", "metadata", "labels", labels_json(b), "spec",
                             pod_spec_json(b, true)));
    json_object_set_new(o, "spec", spec);
    return o;
}

/* allocation.mode warmPool: the Pod spec becomes a SandboxTemplate, a
 * SandboxWarmPool keeps replicas of it ready, and the sandbox is a
 * SandboxClaim on that pool (agents.x-k8s.io). The pool's controller must
 * not add its own NetworkPolicy: stockade's cover the namespace. */
static json_t *warm_pool_json(const struct stk_boundary *b, const char *ns, const char *pool,
                              int replicas)
{
    json_t *out = json_array();
    /* A pooled Pod belongs to whichever sandbox claims it: labelled with its
     * pool, not with one sandbox. */
    json_t *pool_labels = labels_json(b);
    json_object_del(pool_labels, STK_K8S_SANDBOX_LABEL);
    json_object_set_new(pool_labels, STK_K8S_WARM_POOL_LABEL, json_string(pool));
    json_t *tpl = object_new(STK_K8S_AGENTS_API, "SandboxTemplate", pool, ns, labels_json(b));
    json_object_set_new(tpl, "spec",
                        PACK("{s:{s:{s:o}, s:o}, s:s}", "podTemplate", "metadata", "labels",
                             pool_labels, "spec", pod_spec_json(b, false),
                             "networkPolicyManagement", "Unmanaged"));
    json_array_append_new(out, tpl);
    json_t *wp = object_new(STK_K8S_AGENTS_API, "SandboxWarmPool", pool, ns, labels_json(b));
    json_object_set_new(
        wp, "spec",
        PACK("{s:i, s:{s:s}}", "replicas", replicas, "sandboxTemplateRef", "name", pool));
    json_array_append_new(out, wp);
    json_t *claim = object_new(STK_K8S_AGENTS_API, "SandboxClaim", b->name, ns, labels_json(b));
    json_object_set_new(claim, "spec", PACK("{s:{s:s}}", "warmPoolRef", "name", pool));
    json_array_append_new(out, claim);
    return out;
}

/* ---- the egress proxy ----------------------------------------------------------------- */

bool stk_k8s_needs_proxy(const struct stk_boundary *b)
{
    return b->n_allow_hosts || b->n_bindings;
}

static const char *proxy_image(const struct stk_boundary *b)
{
    return b->kube && b->kube->proxy_image.meta.set ? b->kube->proxy_image.v : NULL;
}

/* The Secret's namespace of a kubernetesSecret reference: NAMESPACE/NAME,
 * or NAME in the sandbox's namespace. */
static const char *secret_namespace(const struct stk_boundary *b, const char *ref, const char *ns)
{
    const char *slash = strchr(ref, '/');
    return slash ? stk_arena_strndup(b->arena, ref, (size_t)(slash - ref)) : ns;
}

static const char *secret_name(const char *ref)
{
    const char *slash = strchr(ref, '/');
    return slash ? slash + 1 : ref;
}

/* Where a binding's Secret is: in the sandbox's namespace it is mounted
 * into the proxy's Pod (and read as a file at each request); elsewhere the
 * proxy reads it through the API, allowed by a Role there on exactly it. */
static bool secret_mounted(const struct stk_boundary *b, const struct stk_binding *bd,
                           const char *ns)
{
    return !strcmp(secret_namespace(b, bd->credential.ref.v, ns), ns);
}

static bool proxy_reads_secrets(const struct stk_boundary *b, const char *ns, bool mounted)
{
    for (size_t i = 0; i < b->n_bindings; i++)
        if (secret_mounted(b, &b->bindings[i], ns) == mounted)
            return true;
    return false;
}

#define PROXY_CREDENTIALS_DIR "/var/run/stockade-proxy/credentials"

/* What the kubernetes target cannot give a sandbox with the proxy. */
static int proxy_check(const struct stk_boundary *b, const char *pool, struct stk_error **err)
{
    if (!stk_k8s_needs_proxy(b))
        return 0;
    if (!proxy_image(b))
        return stk_error_make(err, EINVAL,
                              "spec.network.allowHosts and spec.bindings need the egress proxy, "
                              "and on kubernetes it runs in a Pod of its own: set "
                              "spec.driverConfig.kubernetes.proxyImage to an image holding "
                              "stockade (an operator setting)");
    if (pool)
        return stk_error_make(err, EINVAL,
                              "spec.network.allowHosts and spec.bindings are not available with "
                              "a warm pool on kubernetes: the egress proxy admits one sandbox's "
                              "Pod by its labels, and a pooled Pod belongs to no sandbox until "
                              "it is claimed");
    if (b->kube_access && b->kube_role != STK_ROLE_VIEW)
        return stk_error_make(err, EINVAL,
                              "spec.security.kubernetesRole %s cannot be combined with "
                              "spec.network.allowHosts or spec.bindings on kubernetes: it could "
                              "exec into the egress proxy's Pod or run Pods as its service "
                              "account, which holds the credentials (use view)",
                              stk_role_names[b->kube_role]);
    if (b->n_ports && !strcmp(b->name, STK_K8S_PROXY_NAME))
        return stk_error_make(err, EINVAL,
                              "a sandbox named %s with spec.ports would share its Service's name "
                              "with the egress proxy's; choose another metadata.name",
                              STK_K8S_PROXY_NAME);
    for (size_t i = 0; i < b->n_bindings; i++)
        if (b->bindings[i].credential.source.v != STK_CRED_KUBERNETES_SECRET)
            return stk_error_make(
                err, EINVAL,
                "spec.bindings[%zu] (%s): credential source %s is not available on kubernetes: "
                "the egress proxy runs in a Pod of its own, with no environment or files of "
                "the operator's; use source kubernetesSecret",
                i, b->bindings[i].name.v,
                stk_cred_source_names[b->bindings[i].credential.source.v]);
    return 0;
}

static json_t *proxy_labels(const struct stk_boundary *b, bool pod)
{
    json_t *l = pod ? json_object() : labels_json(b);
    if (pod)
        json_object_set_new(l, STK_K8S_MANAGED_BY_LABEL, json_string(STK_K8S_MANAGED_BY));
    json_object_set_new(l, STK_K8S_COMPONENT_LABEL, json_string(STK_K8S_PROXY_COMPONENT));
    return l;
}

static json_t *proxy_selector(void)
{
    return PACK("{s:{s:s}}", "matchLabels", STK_K8S_COMPONENT_LABEL, STK_K8S_PROXY_COMPONENT);
}

/* The configuration the proxy reads (src/proxy/config.c): names, networks
 * and credential references, never a value. */
static char *proxy_config_text(const struct stk_boundary *b, const char *ns)
{
    char buf[STK_CIDR_STRLEN];
    json_t *allow = json_array(), *deny = json_array(), *bindings = json_array();
    for (size_t i = 0; i < b->n_allow_hosts; i++)
        json_array_append_new(allow, json_sprintf("%s%s:%u", b->allow_hosts[i].wildcard ? "*." : "",
                                                  b->allow_hosts[i].name,
                                                  (unsigned)b->allow_hosts[i].port));
    for (size_t i = 0; i < b->n_proxy_deny; i++)
        json_array_append_new(deny, json_string(stk_cidr_format(&b->proxy_deny[i], buf)));
    for (size_t i = 0; i < b->n_bindings; i++) {
        const struct stk_binding *bd = &b->bindings[i];
        const char *ref = bd->credential.ref.v;
        json_t *o;
        if (secret_mounted(b, bd, ns))
            o = PACK("{s:s, s:s, s:s, s:o}", "name", bd->name.v, "url", bd->url.v, "source",
                     stk_cred_source_names[STK_CRED_FILE], "ref",
                     json_sprintf(PROXY_CREDENTIALS_DIR "/%s/%s", secret_name(ref),
                                  bd->credential.key.v));
        else
            o = PACK("{s:s, s:s, s:s, s:o, s:s}", "name", bd->name.v, "url", bd->url.v, "source",
                     stk_cred_source_names[bd->credential.source.v], "ref",
                     json_sprintf("%s/%s", secret_namespace(b, ref, ns), secret_name(ref)), "key",
                     bd->credential.key.v);
        if (bd->inject.header.meta.set)
            json_object_set_new(o, "header", json_string(bd->inject.header.v));
        if (bd->inject.format.meta.set)
            json_object_set_new(o, "format", json_string(bd->inject.format.v));
        json_array_append_new(bindings, o);
    }
    json_t *cfg = PACK("{s:s, s:o, s:o, s:o}", "sandbox", b->name, "allowHosts", allow, "deny",
                       deny, "bindings", bindings);
    char *text = json_dumps(cfg, JSON_COMPACT);
    json_decref(cfg);
    if (!text)
        abort();
    return text;
}

/* The proxy container's limits (= requests): small, and never above the
 * sandbox's own (the namespace's LimitRange caps every container there). */
static json_t *proxy_limits(const struct stk_boundary *b)
{
    json_t *r = json_object();
    json_object_set_new(r, "cpu", qty_cpu(min64(STK_K8S_PROXY_CPU_MILLI, b->limits.cpu_milli)));
    json_object_set_new(r, "memory", qty_bytes(min64(STK_K8S_PROXY_MEMORY, b->limits.memory)));
    if (b->limits.storage)
        json_object_set_new(r, "ephemeral-storage",
                            qty_bytes(min64(STK_K8S_PROXY_STORAGE, b->limits.storage)));
    return r;
}

static json_t *proxy_deployment(const struct stk_boundary *b, const char *ns)
{
    json_t *c = PACK("{s:s, s:s, s:[s, s, s, s], s:[{s:s, s:i, s:s}]}", "name", "proxy", "image",
                     proxy_image(b), "command", "stockade", "__proxy", "--config",
                     STK_K8S_PROXY_CONFIG_DIR "/" STK_K8S_PROXY_CONFIG_KEY, "ports", "name",
                     "proxy", "containerPort", STK_PROXY_PORT, "protocol", "TCP");
    if (b->kube && b->kube->image_pull_policy.meta.set)
        json_object_set_new(c, "imagePullPolicy",
                            json_string(stk_pull_policy_names[b->kube->image_pull_policy.v]));
    json_object_set_new(c, "resources",
                        PACK("{s:o, s:o}", "limits", proxy_limits(b), "requests", proxy_limits(b)));
    /* as strict as the restricted level whatever the sandbox's */
    json_object_set_new(c, "securityContext",
                        PACK("{s:b, s:{s:[s]}, s:b, s:b, s:b, s:{s:s}}", "allowPrivilegeEscalation",
                             0, "capabilities", "drop", "ALL", "privileged", 0,
                             "readOnlyRootFilesystem", 1, "runAsNonRoot", 1, "seccompProfile",
                             "type", "RuntimeDefault"));
    json_object_set_new(
        c, "readinessProbe",
        PACK("{s:{s:i}, s:i}", "tcpSocket", "port", STK_PROXY_PORT, "periodSeconds", 2));
    json_t *volumes = json_array(), *mounts = json_array();
    add_volume(volumes, mounts, "config", STK_K8S_PROXY_CONFIG_DIR, true,
               PACK("{s:{s:s}}", "configMap", "name", STK_K8S_PROXY_NAME));
    /* the API token only where a Secret is read (its Role: get on exactly
     * those Secrets) */
    if (proxy_reads_secrets(b, ns, false))
        add_volume(volumes, mounts, "kube-api-access", TOKEN_PATH, true, token_volume());
    /* the Secrets of its own namespace: only the keys the bindings name,
     * readable by the proxy's group alone */
    if (proxy_reads_secrets(b, ns, true)) {
        json_t *sources = json_array();
        for (size_t i = 0; i < b->n_bindings; i++) {
            const struct stk_binding *bd = &b->bindings[i];
            bool dup = !secret_mounted(b, bd, ns);
            for (size_t j = 0; j < i && !dup; j++)
                dup = secret_mounted(b, &b->bindings[j], ns) &&
                      !strcmp(secret_name(b->bindings[j].credential.ref.v),
                              secret_name(bd->credential.ref.v)) &&
                      !strcmp(b->bindings[j].credential.key.v, bd->credential.key.v);
            if (dup)
                continue;
            const char *name = secret_name(bd->credential.ref.v);
            /* optional: the Secret may be made after the sandbox (its
             * namespace is the sandbox's); the proxy starts and serves
             * meanwhile, a binding answering that its credential file is
             * missing until the kubelet syncs the Secret in */
            json_array_append_new(sources, PACK("{s:{s:s, s:[{s:s, s:o}], s:b}}", "secret", "name",
                                                name, "items", "key", bd->credential.key.v, "path",
                                                json_sprintf("%s/%s", name, bd->credential.key.v),
                                                "optional", 1));
        }
        add_volume(volumes, mounts, "credentials", PROXY_CREDENTIALS_DIR, true,
                   PACK("{s:{s:o, s:i}}", "projected", "sources", sources, "defaultMode", 0440));
    }
    json_object_set_new(c, "volumeMounts", mounts);
    json_t *spec = PACK("{s:s, s:b, s:b}", "serviceAccountName", STK_K8S_PROXY_NAME,
                        "automountServiceAccountToken", 0, "enableServiceLinks", 0);
    const char *rc = runtime_class(b);
    if (rc)
        json_object_set_new(spec, "runtimeClassName", json_string(rc));
    json_object_set_new(spec, "securityContext",
                        PACK("{s:b, s:i, s:i, s:i, s:{s:s}}", "runAsNonRoot", 1, "runAsUser",
                             NONROOT_ID, "runAsGroup", NONROOT_ID, "fsGroup", NONROOT_ID,
                             "seccompProfile", "type", "RuntimeDefault"));
    json_object_set_new(spec, "containers", PACK("[o]", c));
    json_object_set_new(spec, "volumes", volumes);
    json_t *o = object_new("apps/v1", "Deployment", STK_K8S_PROXY_NAME, ns, proxy_labels(b, false));
    /* Recreate: the namespace's quota holds one proxy Pod, never two */
    json_object_set_new(o, "spec",
                        PACK("{s:i, s:{s:s}, s:o, s:{s:{s:o}, s:o}}", "replicas", 1, "strategy",
                             "type", "Recreate", "selector", proxy_selector(), "template",
                             "metadata", "labels", proxy_labels(b, true), "spec", spec));
    return o;
}

/* The sandbox's proxy: everything but the workload's side (its env and the
 * policy that lets it reach the proxy), in apply order. */
static void proxy_objects(const struct stk_boundary *b, const char *ns, json_t *out)
{
    json_array_append_new(out, service_account_json(b, STK_K8S_PROXY_NAME, ns));
    /* get on exactly the named Secrets, one Role per Secret namespace */
    for (size_t i = 0; i < b->n_bindings; i++) {
        const struct stk_credential *cr = &b->bindings[i].credential;
        const char *sns = secret_namespace(b, cr->ref.v, ns);
        bool seen = secret_mounted(b, &b->bindings[i], ns);
        for (size_t j = 0; j < i; j++)
            seen |= !strcmp(secret_namespace(b, b->bindings[j].credential.ref.v, ns), sns);
        if (seen)
            continue;
        json_t *names = json_array();
        for (size_t j = i; j < b->n_bindings; j++) {
            const char *ref = b->bindings[j].credential.ref.v;
            if (strcmp(secret_namespace(b, ref, ns), sns))
                continue;
            bool dup = false;
            size_t k;
            json_t *v;
            json_array_foreach(names, k, v) dup |= !strcmp(json_string_value(v), secret_name(ref));
            if (!dup)
                json_array_append_new(names, json_string(secret_name(ref)));
        }
        const char *rname = stk_arena_printf(b->arena, "%s-%s", STK_K8S_PROXY_NAME, ns);
        json_t *role =
            object_new("rbac.authorization.k8s.io/v1", "Role", rname, sns, proxy_labels(b, false));
        json_object_set_new(role, "rules",
                            PACK("[{s:[s], s:[s], s:o, s:[s]}]", "apiGroups", "", "resources",
                                 "secrets", "resourceNames", names, "verbs", "get"));
        json_array_append_new(out, role);
        json_t *rb = object_new("rbac.authorization.k8s.io/v1", "RoleBinding", rname, sns,
                                proxy_labels(b, false));
        json_object_set_new(rb, "roleRef",
                            PACK("{s:s, s:s, s:s}", "apiGroup", "rbac.authorization.k8s.io", "kind",
                                 "Role", "name", rname));
        json_object_set_new(rb, "subjects",
                            PACK("[{s:s, s:s, s:s}]", "kind", "ServiceAccount", "name",
                                 STK_K8S_PROXY_NAME, "namespace", ns));
        json_array_append_new(out, rb);
    }
    char *text = proxy_config_text(b, ns);
    json_t *cm = object_new("v1", "ConfigMap", STK_K8S_PROXY_NAME, ns, proxy_labels(b, false));
    json_object_set_new(cm, "data", PACK("{s:s}", STK_K8S_PROXY_CONFIG_KEY, text));
    free(text);
    json_array_append_new(out, cm);

    /* ingress: the sandbox's Pod alone (by its label), to the proxy's port.
     * This is how the proxy knows the sandbox: only its Pod gets in. */
    json_t *in = object_new("networking.k8s.io/v1", "NetworkPolicy", STK_K8S_PROXY_NAME "-ingress",
                            ns, proxy_labels(b, false));
    json_object_set_new(in, "spec",
                        PACK("{s:o, s:[s], s:[{s:[{s:{s:{s:s}}}], s:[{s:s, s:i}]}]}", "podSelector",
                             proxy_selector(), "policyTypes", "Ingress", "ingress", "from",
                             "podSelector", "matchLabels", STK_K8S_SANDBOX_LABEL, b->name, "ports",
                             "protocol", "TCP", "port", STK_PROXY_PORT));
    json_array_append_new(out, in);
    /* egress: DNS to the cluster resolver and any address but the denied
     * networks (the proxy refuses them itself too, and decides by name) */
    json_t *v4 = PACK("{s:s}", "cidr", "0.0.0.0/0"), *v6 = PACK("{s:s}", "cidr", "::/0");
    json_t *ex4 = json_array(), *ex6 = json_array();
    char buf[STK_CIDR_STRLEN];
    for (size_t i = 0; i < b->n_proxy_deny; i++) {
        const struct stk_cidr *d = &b->proxy_deny[i];
        if (d->prefix == 0)
            continue; /* an except must be inside the block, not all of it */
        json_array_append_new(d->family == STK_FAMILY_V4 ? ex4 : ex6,
                              json_string(stk_cidr_format(d, buf)));
    }
    if (json_array_size(ex4))
        json_object_set_new(v4, "except", ex4);
    else
        json_decref(ex4);
    if (json_array_size(ex6))
        json_object_set_new(v6, "except", ex6);
    else
        json_decref(ex6);
    json_t *eg = object_new("networking.k8s.io/v1", "NetworkPolicy", STK_K8S_PROXY_NAME "-egress",
                            ns, proxy_labels(b, false));
    json_object_set_new(
        eg, "spec",
        PACK("{s:o, s:[s], s:[{s:[{s:o}], s:[{s:s, s:i}, {s:s, s:i}]}, {s:[{s:o}, {s:o}]}]}",
             "podSelector", proxy_selector(), "policyTypes", "Egress", "egress", "to",
             "namespaceSelector", namespace_selector("kube-system"), "ports", "protocol", "UDP",
             "port", 53, "protocol", "TCP", "port", 53, "to", "ipBlock", v4, "ipBlock", v6));
    json_array_append_new(out, eg);
    /* the workload's egress to the proxy, whatever else its policies allow */
    json_t *wl = object_new("networking.k8s.io/v1", "NetworkPolicy", "allow-proxy-egress", ns,
                            labels_json(b));
    json_object_set_new(wl, "spec",
                        PACK("{s:{s:{s:s}}, s:[s], s:[{s:[{s:o}], s:[{s:s, s:i}]}]}", "podSelector",
                             "matchLabels", STK_K8S_SANDBOX_LABEL, b->name, "policyTypes", "Egress",
                             "egress", "to", "podSelector", proxy_selector(), "ports", "protocol",
                             "TCP", "port", STK_PROXY_PORT));
    json_array_append_new(out, wl);
    json_array_append_new(out, proxy_deployment(b, ns));
    json_t *svc = object_new("v1", "Service", STK_K8S_PROXY_NAME, ns, proxy_labels(b, false));
    json_object_set_new(
        svc, "spec",
        PACK("{s:s, s:o, s:[{s:s, s:s, s:i, s:i}]}", "type", "ClusterIP", "selector",
             PACK("{s:s}", STK_K8S_COMPONENT_LABEL, STK_K8S_PROXY_COMPONENT), "ports", "name",
             "proxy", "protocol", "TCP", "port", STK_PROXY_PORT, "targetPort", STK_PROXY_PORT));
    json_array_append_new(out, svc);
}

/* The workload's side: the proxy's address from the Service's environment
 * variables (service links: no DNS needed, which the sandbox's egress may
 * not allow), and each binding's base URL. A Service missing at the Pod's
 * start leaves the reference unexpanded: the proxy is then unreachable,
 * nothing else is. */
static void proxy_env(const struct stk_boundary *b, json_t *pod_spec)
{
    static const char *const names[] = {"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"};
    json_object_set_new(pod_spec, "enableServiceLinks", json_true());
    json_t *c = json_array_get(json_object_get(pod_spec, "containers"), 0);
    json_t *env = json_object_get(c, "env");
    if (!env) {
        env = json_array();
        json_object_set_new(c, "env", env);
    }
    for (size_t i = 0; i < STK_ARRAY_SIZE(names); i++)
        json_array_append_new(env, PACK("{s:s, s:s}", "name", names[i], "value",
                                        "http://$(STOCKADE_PROXY_SERVICE_HOST):"
                                        "$(STOCKADE_PROXY_SERVICE_PORT)"));
    json_array_append_new(
        env, PACK("{s:s, s:s}", "name", "NO_PROXY", "value", "localhost,127.0.0.1,::1"));
    json_array_append_new(
        env, PACK("{s:s, s:s}", "name", "no_proxy", "value", "localhost,127.0.0.1,::1"));
    for (size_t i = 0; i < b->n_bindings; i++) {
        const char *name = b->bindings[i].name.v;
        char *var = stk_xasprintf("STOCKADE_BINDING_%s_URL", name);
        for (char *q = var + strlen("STOCKADE_BINDING_"); *q; q++)
            *q = *q == '-' ? '_' : (char)toupper((unsigned char)*q);
        json_array_append_new(env, PACK("{s:s, s:o}", "name", var, "value",
                                        json_sprintf("http://%s" STK_BINDING_DOMAIN_TEXT, name)));
        free(var);
    }
}

/* ---- the whole stream ------------------------------------------------------------------ */

/* The driver's identity labels on one object's labels (created if absent). */
static void identity_labels(json_t *meta, const struct stk_k8s_options *opt)
{
    json_t *l = json_object_get(meta, "labels");
    if (!l) {
        l = json_object();
        json_object_set_new(meta, "labels", l);
    }
    json_object_set_new(l, STK_K8S_SANDBOX_ID_LABEL, json_string(opt->sandbox_id));
    json_object_set_new(l, STK_K8S_STORE_LABEL, json_string(opt->store));
}

static void identity_container(json_t *pod_spec, const struct stk_k8s_options *opt)
{
    json_t *c = json_array_get(json_object_get(pod_spec, "containers"), 0);
    json_t *env = json_object_get(c, "env");
    if (!c)
        return;
    if (!env) {
        env = json_array();
        json_object_set_new(c, "env", env);
    }
    json_array_append_new(env, PACK("{s:s, s:s}", "name", "STOCKADE_SANDBOX", "value",
                                    opt->sandbox_name ? opt->sandbox_name : opt->sandbox_id));
}

static void identity(json_t *objs, const struct stk_k8s_options *opt)
{
    size_t i;
    json_t *o;
    json_array_foreach(objs, i, o)
    {
        identity_labels(json_object_get(o, "metadata"), opt);
        const char *kind = json_string_value(json_object_get(o, "kind"));
        json_t *spec = json_object_get(o, "spec");
        if (!strcmp(kind, "Pod")) {
            identity_container(spec, opt);
        } else if (!strcmp(kind, "Job")) {
            json_t *tpl = json_object_get(spec, "template");
            identity_labels(json_object_get(tpl, "metadata"), opt);
            identity_container(json_object_get(tpl, "spec"), opt);
        }
    }
}

static int check_name(const char *what, const char *name, struct stk_error **err)
{
    if (!stk_dns_label_valid(name))
        return stk_error_make(err, EINVAL,
                              "%s \"%s\" is not a valid Kubernetes namespace name (a DNS label of "
                              "at most 63 characters); set spec.driverConfig.kubernetes.namespace",
                              what, name);
    return 0;
}

int stk_k8s_render(const struct stk_boundary *b, const struct stk_k8s_options *opt, json_t **ret,
                   struct stk_error **err)
{
    int r;
    if (b->model == STK_MODEL_INJECTION)
        return stk_error_make(err, EINVAL,
                              "sandbox \"%s\" uses deployment.model: injection; give the target "
                              "workload with --workload FILE",
                              b->name);
    if (!b->image)
        return stk_error_make(err, EINVAL,
                              "spec.image is required for the kubernetes target: a Pod runs an "
                              "image, not the host's root filesystem");
    const char *pool = opt && opt->agents_pool ? opt->agents_pool : warm_pool(b);
    if (pool && b->limits.wall_clock_ms)
        return stk_error_make(err, EINVAL,
                              "resources.wallClock cannot be enforced with allocation.mode "
                              "warmPool: a pooled Pod starts before it is claimed");
    if (pool && b->home && b->home_persist)
        return stk_error_make(err, EINVAL,
                              "storage.home.persist is not available with allocation.mode "
                              "warmPool: pooled sandboxes are interchangeable, a persistent home "
                              "belongs to one");
    if (pool && opt && opt->job)
        return stk_error_make(err, EINVAL, "--job does not apply to allocation.mode warmPool");
    if ((r = proxy_check(b, pool, err)) < 0)
        return r;
    const char *ns = opt && opt->namespace ? opt->namespace : stk_k8s_namespace(b);
    if ((r = check_name("namespace", ns, err)) < 0)
        return r;
    const char *vc_ns = stk_arena_printf(b->arena, "%s-vc", ns);
    if (b->vcluster && (r = check_name("vcluster namespace", vc_ns, err)) < 0)
        return r;

    json_t *out = json_array();
    json_array_append_new(out, namespace_json(b, ns));
    json_array_append_new(out, service_account_json(b, service_account(b), ns));
    if (b->kube_access)
        json_array_append_new(out, role_binding_json(b, ns));
    for (size_t i = 0; i < b->egress.n; i++)
        json_array_append_new(out, network_policy_json(b, &b->egress.policies[i], ns));
    json_array_append_new(out, ingress_policy_json(b, ns, false));
    if (b->n_ports)
        json_array_append_new(out, ingress_policy_json(b, ns, true));
    /* the driver's agents pool: its ready replicas and as many claimed */
    int64_t pods = opt && opt->agents_pool ? 2 * (int64_t)opt->agents_replicas : pod_count(b);
    json_array_append_new(out, resource_quota_json(b, ns, pods));
    json_array_append_new(out, limit_range_json(b, ns));
    if (b->home && b->home_persist)
        json_array_append_new(out, home_pvc_json(b, ns));
    if (b->vcluster) {
        /* The vcluster itself is operator-installed; stockade owns its
         * namespace and switches the host token off there. */
        json_t *vns = namespace_json(b, vc_ns);
        json_object_set_new(json_object_get(json_object_get(vns, "metadata"), "labels"),
                            "stockade.dev/vcluster-for", json_string(ns));
        json_array_append_new(out, vns);
        json_array_append_new(out, service_account_json(b, "default", vc_ns));
    }
    if (pool) {
        json_t *pool_objs = warm_pool_json(b, ns, pool,
                                           opt && opt->agents_pool ? opt->agents_replicas
                                                                   : STK_K8S_WARM_POOL_REPLICAS);
        json_array_extend(out, pool_objs);
        json_decref(pool_objs);
    } else {
        bool job = (opt && opt->job) || b->limits.wall_clock_ms > 0;
        /* the proxy's Service before the workload: its address is in the
         * workload's environment (proxy_env) */
        if (stk_k8s_needs_proxy(b))
            proxy_objects(b, ns, out);
        json_t *w = workload_json(b, ns, job);
        if (stk_k8s_needs_proxy(b))
            proxy_env(b, template_spec(w));
        json_array_append_new(out, w);
    }
    if (b->n_ports)
        json_array_append_new(out, service_json(b, ns));
    if (opt && opt->sandbox_id && opt->store)
        identity(out, opt);
    pod_image(b, opt ? opt->image : NULL, out);
    *ret = out;
    return 0;
}

/* ---- cluster-scoped objects ------------------------------------------------------------- */

/* stockade's copies of view/edit/admin. They never name networkpolicies (a
 * sandbox must not remove the policies that contain it), never grant bind,
 * escalate or impersonate, never write roles or rolebindings, never use
 * wildcards, and never mint tokens (serviceaccounts/token). Each row belongs
 * to the lowest role that has it; higher roles include lower rows. */
enum verbs { READ, WRITE, CREATE };
static const char *const read_verbs[] = {"get", "list", "watch"};
static const char *const write_verbs[] = {"create", "delete", "deletecollection", "patch",
                                          "update"};

static const struct rbac_row {
    enum stk_role role;
    const char *group;
    enum verbs verbs;
    const char *resources[16];
} rbac_rows[] = {
    {STK_ROLE_VIEW,
     "",
     READ,
     {"configmaps", "endpoints", "events", "limitranges", "persistentvolumeclaims", "pods",
      "pods/log", "pods/status", "replicationcontrollers", "replicationcontrollers/scale",
      "resourcequotas", "serviceaccounts", "services", "namespaces"}},
    {STK_ROLE_VIEW,
     "apps",
     READ,
     {"controllerrevisions", "daemonsets", "deployments", "deployments/scale", "replicasets",
      "replicasets/scale", "statefulsets", "statefulsets/scale"}},
    {STK_ROLE_VIEW, "autoscaling", READ, {"horizontalpodautoscalers"}},
    {STK_ROLE_VIEW, "batch", READ, {"cronjobs", "jobs"}},
    {STK_ROLE_VIEW, "discovery.k8s.io", READ, {"endpointslices"}},
    {STK_ROLE_VIEW, "networking.k8s.io", READ, {"ingresses"}},
    {STK_ROLE_VIEW, "policy", READ, {"poddisruptionbudgets"}},
    {STK_ROLE_EDIT, "", READ, {"secrets"}},
    {STK_ROLE_EDIT,
     "",
     WRITE,
     {"configmaps", "endpoints", "persistentvolumeclaims", "pods", "replicationcontrollers",
      "replicationcontrollers/scale", "secrets", "serviceaccounts", "services"}},
    {STK_ROLE_EDIT, "", CREATE, {"pods/attach", "pods/eviction", "pods/exec", "pods/portforward"}},
    {STK_ROLE_EDIT,
     "apps",
     WRITE,
     {"daemonsets", "deployments", "deployments/rollback", "deployments/scale", "replicasets",
      "replicasets/scale", "statefulsets", "statefulsets/scale"}},
    {STK_ROLE_EDIT, "autoscaling", WRITE, {"horizontalpodautoscalers"}},
    {STK_ROLE_EDIT, "batch", WRITE, {"cronjobs", "jobs"}},
    {STK_ROLE_EDIT, "networking.k8s.io", WRITE, {"ingresses"}},
    {STK_ROLE_EDIT, "policy", WRITE, {"poddisruptionbudgets"}},
    {STK_ROLE_ADMIN, "rbac.authorization.k8s.io", READ, {"rolebindings", "roles"}},
    {STK_ROLE_ADMIN, "authorization.k8s.io", CREATE, {"localsubjectaccessreviews"}},
};

static json_t *verbs_json(enum verbs v)
{
    switch (v) {
    case READ:
        return strings_json(read_verbs, STK_ARRAY_SIZE(read_verbs));
    case WRITE:
        return strings_json(write_verbs, STK_ARRAY_SIZE(write_verbs));
    case CREATE:
        return PACK("[s]", "create");
    }
    return json_array();
}

static json_t *cluster_labels(void)
{
    return PACK("{s:s}", STK_K8S_MANAGED_BY_LABEL, STK_K8S_MANAGED_BY);
}

static json_t *cluster_role_json(enum stk_role role)
{
    char name[32];
    snprintf(name, sizeof(name), "stockade-%s", stk_role_names[role]);
    json_t *rules = json_array();
    for (size_t i = 0; i < STK_ARRAY_SIZE(rbac_rows); i++) {
        const struct rbac_row *row = &rbac_rows[i];
        if (row->role > role)
            continue;
        json_t *res = json_array();
        for (size_t j = 0; j < STK_ARRAY_SIZE(row->resources) && row->resources[j]; j++)
            json_array_append_new(res, json_string(row->resources[j]));
        json_array_append_new(rules, PACK("{s:[s], s:o, s:o}", "apiGroups", row->group, "resources",
                                          res, "verbs", verbs_json(row->verbs)));
    }
    json_t *o =
        object_new("rbac.authorization.k8s.io/v1", "ClusterRole", name, NULL, cluster_labels());
    json_object_set_new(o, "rules", rules);
    return o;
}

#define MANAGED_NS_SELECTOR "{s:{s:s}}", "matchLabels", STK_K8S_MANAGED_BY_LABEL, STK_K8S_MANAGED_BY

static const char protect_policies_match[] =
    "has(oldObject.metadata.labels) && "
    "'" STK_K8S_MANAGED_BY_LABEL "' in oldObject.metadata.labels && "
    "oldObject.metadata.labels['" STK_K8S_MANAGED_BY_LABEL "'] == '" STK_K8S_MANAGED_BY "'";
/* stockade's own identities, and the controllers that empty a namespace
 * being deleted (with or without per-controller service accounts): a
 * namespace stockade removes must still go away. */
static const char protect_policies_rule[] =
    "request.userInfo.username.startsWith('system:serviceaccount:" STK_K8S_SYSTEM_NAMESPACE ":') "
    "|| request.userInfo.username == "
    "'system:serviceaccount:kube-system:namespace-controller' "
    "|| request.userInfo.username == "
    "'system:serviceaccount:kube-system:generic-garbage-collector' "
    "|| request.userInfo.username == 'system:kube-controller-manager'";

/* CEL without optionals or ternaries, so every Kubernetes release with
 * admissionregistration.k8s.io/v1 type-checks it the same way. */
#define NS_LABELS         "namespaceObject.metadata.labels"
#define HAS_NS_LABEL(key) "(has(" NS_LABELS ") && '" key "' in " NS_LABELS ")"
#define PRIVILEGED_IN(list)                                                                        \
    "(has(object.spec." list ") && object.spec." list ".exists(c, has(c.securityContext) && "      \
    "has(c.securityContext.privileged) && c.securityContext.privileged))"

static const char pod_runtime_rule[] =
    "!" HAS_NS_LABEL(STK_K8S_RUNTIME_CLASS_LABEL) " || (has(object.spec.runtimeClassName) && "
                                                  "object.spec.runtimeClassName == " NS_LABELS
                                                  "['" STK_K8S_RUNTIME_CLASS_LABEL "'])";
static const char pod_privileged_rule[] = "(" HAS_NS_LABEL(
    STK_K8S_EXCEPTION_LABEL) " && " NS_LABELS "['" STK_K8S_EXCEPTION_LABEL
                             "'] == 'true') || !(" PRIVILEGED_IN("containers") " || " PRIVILEGED_IN(
                                 "initContainers") " || " PRIVILEGED_IN("ephemeralContainers") ")";

/* The admission guard, one table for both engines: ValidatingAdmissionPolicy
 * (built in, Kubernetes 1.30+) and Kyverno ClusterPolicies. Both evaluate
 * the same CEL, so they decide the same way. */
struct admission_rule {
    const char *expression;
    const char *message;
};

static const struct admission_policy {
    const char *name;
    const char *group;    /* API group of the guarded resource */
    const char *resource; /* its plural, for the built-in engine */
    const char *kind;     /* its kind, for Kyverno */
    const char *operations[2];
    const char *precondition; /* NULL: every matching request */
    struct admission_rule rules[2];
} admission_policies[] = {
    {"stockade-protect-networkpolicies",
     "networking.k8s.io",
     "networkpolicies",
     "NetworkPolicy",
     {"UPDATE", "DELETE"},
     protect_policies_match,
     {{protect_policies_rule,
       "stockade's NetworkPolicies may only be changed or deleted by stockade"}}},
    {"stockade-pod-guard",
     "",
     "pods",
     "Pod",
     {"CREATE", "UPDATE"},
     NULL,
     {{pod_runtime_rule, "Pods in this stockade namespace must use the namespace's "
                         "runtimeClassName (label " STK_K8S_RUNTIME_CLASS_LABEL ")"},
      {pod_privileged_rule,
       "privileged containers need the namespace label " STK_K8S_EXCEPTION_LABEL
       "=true (an operator exception)"}}},
};

const char *const stk_k8s_admission_names[_STK_K8S_ADMISSION_N] = {"vap", "kyverno"};

static json_t *rules_json(const struct admission_policy *p)
{
    json_t *a = json_array();
    for (size_t i = 0; i < STK_ARRAY_SIZE(p->rules) && p->rules[i].expression; i++)
        json_array_append_new(a, PACK("{s:s, s:s}", "expression", p->rules[i].expression, "message",
                                      p->rules[i].message));
    return a;
}

static json_t *precondition_json(const struct admission_policy *p)
{
    return PACK("[{s:s, s:s}]", "name", "managed-by-stockade", "expression", p->precondition);
}

static void vap_json(json_t *out, const struct admission_policy *p)
{
    json_t *o = object_new("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy", p->name,
                           NULL, cluster_labels());
    json_t *spec = PACK("{s:s, s:{s:o, s:[{s:[s], s:[s], s:[s, s], s:[s]}]}}", "failurePolicy",
                        "Fail", "matchConstraints", "namespaceSelector", PACK(MANAGED_NS_SELECTOR),
                        "resourceRules", "apiGroups", p->group, "apiVersions", "v1", "operations",
                        p->operations[0], p->operations[1], "resources", p->resource);
    if (p->precondition)
        json_object_set_new(spec, "matchConditions", precondition_json(p));
    json_object_set_new(spec, "validations", rules_json(p));
    json_object_set_new(o, "spec", spec);
    json_array_append_new(out, o);

    json_t *bind = object_new("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding",
                              p->name, NULL, cluster_labels());
    json_object_set_new(bind, "spec",
                        PACK("{s:s, s:[s], s:{s:o}}", "policyName", p->name, "validationActions",
                             "Deny", "matchResources", "namespaceSelector",
                             PACK(MANAGED_NS_SELECTOR)));
    json_array_append_new(out, bind);
}

/* Kyverno: admission only (background: false), since the rules read the
 * request; failure blocks (Enforce). */
static void kyverno_json(json_t *out, const struct admission_policy *p)
{
    json_t *o = object_new("kyverno.io/v1", "ClusterPolicy", p->name, NULL, cluster_labels());
    json_t *rule =
        PACK("{s:s, s:{s:[{s:{s:[s], s:[s, s], s:o}}]}}", "name", p->name + strlen("stockade-"),
             "match", "any", "resources", "kinds", p->kind, "operations", p->operations[0],
             p->operations[1], "namespaceSelector", PACK(MANAGED_NS_SELECTOR));
    if (p->precondition)
        json_object_set_new(rule, "celPreconditions", precondition_json(p));
    json_object_set_new(rule, "validate", PACK("{s:{s:o}}", "cel", "expressions", rules_json(p)));
    json_object_set_new(o, "spec",
                        PACK("{s:s, s:b, s:[o]}", "validationFailureAction", "Enforce",
                             "background", 0, "rules", rule));
    json_array_append_new(out, o);
}

/* ---- the gateway inside the cluster ---------------------------------------------------- */

/* Exactly what the kubernetes driver calls, nothing more: a row a resource
 * set. SSA is patch; a WebSocket exec is a GET upgrade (create since 1.30). */
static const struct gateway_rule {
    const char *group;
    const char *resources[8];
    const char *verbs[8];
} gateway_rules[] = {
    {"",
     {"namespaces", "serviceaccounts", "resourcequotas", "limitranges", "persistentvolumeclaims",
      "pods"},
     {"get", "list", "watch", "create", "patch", "delete"}},
    {"", {"pods/exec", "pods/attach"}, {"get", "create"}},
    {"", {"pods/log"}, {"get"}},
    /* the egress proxy's ConfigMap and Service (applied, read back) */
    {"", {"configmaps", "services"}, {"get", "create", "patch"}},
    /* roles: the proxy's beside a Secret in another namespace (rm and gc
     * list them across namespaces by their labels) */
    {"rbac.authorization.k8s.io",
     {"rolebindings", "roles"},
     {"get", "list", "create", "patch", "delete"}},
    {"networking.k8s.io", {"networkpolicies"}, {"get", "list", "create", "patch", "delete"}},
    {"batch", {"jobs"}, {"get", "list", "watch", "create", "patch", "delete"}},
    /* injection patches workloads; the egress proxy is a Deployment */
    {"apps", {"deployments"}, {"get", "list", "create", "patch"}},
    {"apps", {"statefulsets", "daemonsets"}, {"get", "list", "patch"}},
    {"node.k8s.io", {"runtimeclasses"}, {"get"}},
    {"admissionregistration.k8s.io",
     {"validatingadmissionpolicies", "validatingadmissionpolicybindings"},
     {"get", "list"}},
};

static json_t *nul_strings(const char *const *v, size_t max)
{
    json_t *a = json_array();
    for (size_t i = 0; i < max && v[i]; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

json_t *stk_k8s_gateway_objects(const char *image, const char *const *secret_namespaces,
                                size_t n_secret_namespaces)
{
    const char *ns = STK_K8S_SYSTEM_NAMESPACE, *name = STK_K8S_GATEWAY_NAME;
    json_t *out = json_array();

    json_t *nso = object_new("v1", "Namespace", ns, NULL, cluster_labels());
    json_t *l = json_object_get(json_object_get(nso, "metadata"), "labels");
    json_object_set_new(l, "pod-security.kubernetes.io/enforce", json_string("restricted"));
    json_array_append_new(out, nso);

    json_t *sa = object_new("v1", "ServiceAccount", name, ns, cluster_labels());
    json_object_set_new(sa, "automountServiceAccountToken", json_false());
    json_array_append_new(out, sa);

    json_t *rules = json_array();
    for (size_t i = 0; i < STK_ARRAY_SIZE(gateway_rules); i++) {
        const struct gateway_rule *g = &gateway_rules[i];
        json_array_append_new(rules, PACK("{s:[s], s:o, s:o}", "apiGroups", g->group, "resources",
                                          nul_strings(g->resources, 8), "verbs",
                                          nul_strings(g->verbs, 8)));
    }
    /* RoleBindings to stockade's roles only: bind, by name */
    json_array_append_new(rules, PACK("{s:[s], s:[s], s:[s], s:[s, s, s]}", "apiGroups",
                                      "rbac.authorization.k8s.io", "resources", "clusterroles",
                                      "verbs", "bind", "resourceNames", "stockade-view",
                                      "stockade-edit", "stockade-admin"));
    json_t *role =
        object_new("rbac.authorization.k8s.io/v1", "ClusterRole", name, NULL, cluster_labels());
    json_object_set_new(role, "rules", rules);
    json_array_append_new(out, role);

    json_t *crb = object_new("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", name, NULL,
                             cluster_labels());
    json_object_set_new(crb, "roleRef",
                        PACK("{s:s, s:s, s:s}", "apiGroup", "rbac.authorization.k8s.io", "kind",
                             "ClusterRole", "name", name));
    json_object_set_new(
        crb, "subjects",
        PACK("[{s:s, s:s, s:s}]", "kind", "ServiceAccount", "name", name, "namespace", ns));
    json_array_append_new(out, crb);

    /* get on the Secrets of the namespaces named, and nowhere else: the
     * egress proxy's Role there grants get on a Secret, and Kubernetes
     * lets a Role (and its binding) grant only what its maker holds */
    for (size_t i = 0; i < n_secret_namespaces; i++) {
        const char *sns = secret_namespaces[i];
        json_t *sr = object_new("rbac.authorization.k8s.io/v1", "Role", STK_K8S_GATEWAY_SECRETS,
                                sns, cluster_labels());
        json_object_set_new(sr, "rules",
                            PACK("[{s:[s], s:[s], s:[s]}]", "apiGroups", "", "resources", "secrets",
                                 "verbs", "get"));
        json_array_append_new(out, sr);
        json_t *srb = object_new("rbac.authorization.k8s.io/v1", "RoleBinding",
                                 STK_K8S_GATEWAY_SECRETS, sns, cluster_labels());
        json_object_set_new(srb, "roleRef",
                            PACK("{s:s, s:s, s:s}", "apiGroup", "rbac.authorization.k8s.io", "kind",
                                 "Role", "name", STK_K8S_GATEWAY_SECRETS));
        json_object_set_new(
            srb, "subjects",
            PACK("[{s:s, s:s, s:s}]", "kind", "ServiceAccount", "name", name, "namespace", ns));
        json_array_append_new(out, srb);
    }

    /* stockade serve --backend kubernetes: in-cluster credentials (a
     * projected, expiring token), the AccessPolicy from a Secret the
     * operator creates, the state on a volume */
    json_t *sel = PACK("{s:s}", "app.kubernetes.io/name", name);
    json_t *container = PACK("{s:s, s:s, s:[s, s, s, s, s, s, s]}", "name", "gateway", "image",
                             image, "args", "serve", "--backend", "kubernetes", "--policy",
                             "/etc/stockade/access-policy.yaml", "--listen", "0.0.0.0:8443");
    json_object_set_new(container, "env",
                        PACK("[{s:s, s:s}]", "name", "STOCKADE_STATE_DIR", "value",
                             "/var/lib/stockade/kubernetes"));
    json_object_set_new(container, "ports",
                        PACK("[{s:s, s:i}]", "name", "http", "containerPort", 8443));
    json_object_set_new(container, "securityContext",
                        PACK("{s:b, s:b, s:b, s:{s:[s]}, s:{s:s}}", "allowPrivilegeEscalation", 0,
                             "runAsNonRoot", 1, "readOnlyRootFilesystem", 1, "capabilities", "drop",
                             "ALL", "seccompProfile", "type", "RuntimeDefault"));
    json_object_set_new(container, "volumeMounts",
                        PACK("[{s:s, s:s, s:b}, {s:s, s:s}, {s:s, s:s, s:b}]", "name", "policy",
                             "mountPath", "/etc/stockade", "readOnly", 1, "name", "state",
                             "mountPath", "/var/lib/stockade", "name", "token", "mountPath",
                             "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly", 1));
    json_t *token =
        PACK("{s:s, s:{s:[{s:{s:s, s:i}}, {s:{s:s, s:[{s:s, s:s}]}}, {s:{s:[{s:s, s:{s:s}}]}}]}}",
             "name", "token", "projected", "sources", "serviceAccountToken", "path", "token",
             "expirationSeconds", STK_K8S_TOKEN_SECONDS, "configMap", "name", "kube-root-ca.crt",
             "items", "key", "ca.crt", "path", "ca.crt", "downwardAPI", "items", "path",
             "namespace", "fieldRef", "fieldPath", "metadata.namespace");
    json_t *pod =
        PACK("{s:s, s:b, s:{s:b, s:i, s:i}, s:[o], s:[{s:s, s:{s:s}}, {s:s, s:{}}, o]}",
             "serviceAccountName", name, "automountServiceAccountToken", 0, "securityContext",
             "runAsNonRoot", 1, "runAsUser", STK_OCI_UID, "fsGroup", STK_OCI_GID, "containers",
             container, "volumes", "name", "policy", "secret", "secretName",
             STK_K8S_GATEWAY_NAME "-policy", "name", "state", "emptyDir", token);
    json_t *dep = object_new("apps/v1", "Deployment", name, ns, cluster_labels());
    json_object_set_new(dep, "spec",
                        PACK("{s:i, s:{s:o}, s:{s:{s:o}, s:o}}", "replicas", 1, "selector",
                             "matchLabels", sel, "template", "metadata", "labels",
                             json_deep_copy(sel), "spec", pod));
    json_array_append_new(out, dep);

    json_t *svc = object_new("v1", "Service", name, ns, cluster_labels());
    json_object_set_new(svc, "spec",
                        PACK("{s:O, s:[{s:s, s:i, s:s}]}", "selector", sel, "ports", "name", "http",
                             "port", 8443, "targetPort", "http"));
    json_array_append_new(out, svc);
    return out;
}

json_t *stk_k8s_cluster_objects(enum stk_k8s_admission admission)
{
    json_t *out = json_array();
    for (int role = 0; role < _STK_ROLE_N; role++)
        json_array_append_new(out, cluster_role_json((enum stk_role)role));

    json_t *rc = object_new("node.k8s.io/v1", "RuntimeClass", "gvisor", NULL, cluster_labels());
    json_object_set_new(rc, "handler", json_string("runsc"));
    json_array_append_new(out, rc);

    for (size_t i = 0; i < STK_ARRAY_SIZE(admission_policies); i++)
        switch (admission) {
        case STK_K8S_ADMISSION_VAP:
            vap_json(out, &admission_policies[i]);
            break;
        case STK_K8S_ADMISSION_KYVERNO:
            kyverno_json(out, &admission_policies[i]);
            break;
        case _STK_K8S_ADMISSION_N:
            break;
        }
    return out;
}
