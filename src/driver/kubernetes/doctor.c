/* SPDX-License-Identifier: Apache-2.0 */
/*
 * doctor --kubeconfig: the checks of a live cluster. Each is one request (or
 * a few) that tells whether what stockade relies on holds there: the API
 * answers and lets stockade's identity do what the driver does, Pod
 * Security admission rejects what it must, the gvisor RuntimeClass and the
 * admission guard are installed, NetworkPolicies are accepted. Nothing is
 * changed but one short-lived namespace for the Pod Security probe, which
 * is deleted again.
 */
#include "doctor/doctor.h"
#include "driver/kubernetes/kube.h"
#include "render/render.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define PATH_CLUSTER "cluster"

struct doc {
    struct stk_kube *k;
    const struct stk_kubeconfig *cfg;
    struct stk_doctor_report *r;
};

static void add(struct doc *d, const char *id, const char *title, enum stk_check_status st,
                const char *fix, const char *path, const char *fmt, ...) STK_PRINTF(7, 8);
static void add(struct doc *d, const char *id, const char *title, enum stk_check_status st,
                const char *fix, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *why = stk_xvasprintf(fmt, ap);
    va_end(ap);
    stk_doctor_add(d->r, id, title, st, why, fix, path);
}

static bool check_reachable(struct doc *d)
{
    long status = 0;
    json_t *body = NULL;
    struct stk_error *err = NULL;
    int r = stk_kube_request(d->k, "GET", "/version", NULL, NULL, &status, &body, &err);
    const char *v = json_string_value(json_object_get(body, "gitVersion"));
    if (r >= 0 && status == 200 && v)
        add(d, "cluster-reachable", "API server reachable", STK_CHECK_PASS, NULL, PATH_CLUSTER,
            "context %s: %s answers, Kubernetes %s", stk_kubeconfig_context(d->cfg),
            stk_kubeconfig_server(d->cfg), v);
    else
        add(d, "cluster-reachable", "API server reachable", STK_CHECK_FAIL,
            "check the kubeconfig's server, CA and credentials", PATH_CLUSTER, "context %s: %s: %s",
            stk_kubeconfig_context(d->cfg), stk_kubeconfig_server(d->cfg),
            err ? err->msg : "no version in the answer");
    json_decref(body);
    stk_error_free(err);
    return r >= 0 && status == 200 && v;
}

/* What the driver does, as SelfSubjectAccessReviews. */
static const struct {
    const char *group, *resource, *verb;
} needs[] = {
    {"", "namespaces", "create"},
    {"", "namespaces", "delete"},
    {"", "pods", "patch"},
    {"", "pods", "watch"},
    {"", "pods/exec", "create"},
    {"", "pods/log", "get"},
    {"", "serviceaccounts", "patch"},
    {"", "resourcequotas", "patch"},
    {"", "limitranges", "patch"},
    {"", "persistentvolumeclaims", "patch"},
    {"", "configmaps", "patch"},
    {"", "services", "patch"},
    {"networking.k8s.io", "networkpolicies", "patch"},
    {"rbac.authorization.k8s.io", "rolebindings", "patch"},
    {"rbac.authorization.k8s.io", "roles", "patch"},
    {"rbac.authorization.k8s.io", "roles", "list"},
    {"rbac.authorization.k8s.io", "roles", "delete"},
    {"batch", "jobs", "patch"},
    {"apps", "deployments", "create"},
};

static void check_authorized(struct doc *d)
{
    _cleanup_buf_ struct stk_buf missing = {0};
    _cleanup_buf_ struct stk_buf failed = {0};
    for (size_t i = 0; i < STK_ARRAY_SIZE(needs); i++) {
        json_t *review =
            json_pack("{s:s, s:s, s:{s:{s:s, s:s, s:s}}}", "apiVersion", "authorization.k8s.io/v1",
                      "kind", "SelfSubjectAccessReview", "spec", "resourceAttributes", "group",
                      needs[i].group, "resource", needs[i].resource, "verb", needs[i].verb);
        long status = 0;
        json_t *body = NULL;
        struct stk_error *err = NULL;
        int r =
            stk_kube_request(d->k, "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                             NULL, review, &status, &body, &err);
        json_decref(review);
        json_t *allowed = json_object_get(json_object_get(body, "status"), "allowed");
        if (r < 0 || status >= 300)
            stk_buf_printf(&failed, "%s%s", failed.len ? "; " : "",
                           err ? err->msg : "the review was refused");
        else if (!json_is_true(allowed))
            stk_buf_printf(&missing, "%s%s %s%s%s", missing.len ? ", " : "", needs[i].verb,
                           needs[i].resource, needs[i].group[0] ? "." : "", needs[i].group);
        json_decref(body);
        stk_error_free(err);
    }
    if (failed.len)
        add(d, "cluster-authorized", "allowed what the driver does", STK_CHECK_FAIL, NULL,
            PATH_CLUSTER, "could not ask: %s", stk_buf_str(&failed));
    else if (missing.len)
        add(d, "cluster-authorized", "allowed what the driver does", STK_CHECK_FAIL,
            "bind the identity to the stockade-gateway ClusterRole (render --cluster-objects)",
            PATH_CLUSTER, "context %s may not: %s", stk_kubeconfig_context(d->cfg),
            stk_buf_str(&missing));
    else
        add(d, "cluster-authorized", "allowed what the driver does", STK_CHECK_PASS, NULL,
            PATH_CLUSTER, "every verb the kubernetes driver uses is allowed (%zu checked)",
            STK_ARRAY_SIZE(needs));
}

/* Pod Security admission: a privileged Pod in a namespace labelled
 * enforce=restricted must be rejected (a dry run: nothing is created but
 * the namespace, which goes again). */
static void check_pod_security(struct doc *d)
{
    char name[64];
    snprintf(name, sizeof(name), "stockade-doctor-%ld", (long)getpid());
    json_t *ns =
        json_pack("{s:s, s:s, s:{s:s, s:{s:s, s:s}}}", "apiVersion", "v1", "kind", "Namespace",
                  "metadata", "name", name, "labels", "pod-security.kubernetes.io/enforce",
                  "restricted", STK_K8S_MANAGED_BY_LABEL, STK_K8S_MANAGED_BY);
    struct stk_error *err = NULL;
    int r = stk_kube_apply(d->k, ns, NULL, &err);
    json_decref(ns);
    if (r < 0) {
        add(d, "pod-security", "Pod Security admission", STK_CHECK_WARN, NULL, PATH_CLUSTER,
            "could not make a namespace to probe it: %s", err ? err->msg : "?");
        stk_error_free(err);
        return;
    }
    json_t *pod = json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:[{s:s, s:s, s:{s:b}}]}}", "apiVersion",
                            "v1", "kind", "Pod", "metadata", "name", "probe", "namespace", name,
                            "spec", "containers", "name", "probe", "image",
                            "stockade.invalid/probe", "securityContext", "privileged", 1);
    char path[160];
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods?dryRun=All", name);
    long status = 0;
    json_t *body = NULL;
    r = stk_kube_request(d->k, "POST", path, NULL, pod, &status, &body, &err);
    json_decref(pod);
    const char *msg = json_string_value(json_object_get(body, "message"));
    if (r < 0)
        add(d, "pod-security", "Pod Security admission", STK_CHECK_WARN, NULL, PATH_CLUSTER,
            "the probe failed: %s", err ? err->msg : "?");
    else if (status == 403 && msg && strstr(msg, "PodSecurity"))
        add(d, "pod-security", "Pod Security admission", STK_CHECK_PASS, NULL, PATH_CLUSTER,
            "a privileged Pod is rejected in a namespace labelled enforce=restricted");
    else
        add(d, "pod-security", "Pod Security admission", STK_CHECK_FAIL,
            "enable the PodSecurity admission plugin (kube-apiserver --enable-admission-plugins)",
            PATH_CLUSTER,
            "a privileged Pod was %s in a namespace labelled enforce=restricted (HTTP %ld): the "
            "policy levels stockade labels namespaces with are not enforced",
            status < 300 ? "admitted" : "refused for another reason", status);
    json_decref(body);
    stk_error_free(err);
    err = NULL;
    struct stk_kube_ref ref = {"v1", "Namespace", NULL, name};
    (void)stk_kube_delete(d->k, &ref, "Background", NULL, NULL);
}

static void check_runtime_class(struct doc *d)
{
    struct stk_kube_ref ref = {"node.k8s.io/v1", "RuntimeClass", NULL, "gvisor"};
    json_t *rc = NULL;
    struct stk_error *err = NULL;
    int r = stk_kube_get(d->k, &ref, &rc, &err);
    if (r >= 0)
        add(d, "runtime-class-gvisor", "gvisor RuntimeClass", STK_CHECK_PASS, NULL, PATH_CLUSTER,
            "RuntimeClass gvisor exists (handler %s)",
            json_string_value(json_object_get(rc, "handler"))
                ? json_string_value(json_object_get(rc, "handler"))
                : "?");
    else if (r == -ENOENT)
        add(d, "runtime-class-gvisor", "gvisor RuntimeClass", STK_CHECK_WARN,
            "install gVisor's containerd shim on the nodes and apply render --cluster-objects",
            PATH_CLUSTER,
            "no RuntimeClass gvisor: sandboxes with runtime: gvisor are refused on this cluster");
    else
        add(d, "runtime-class-gvisor", "gvisor RuntimeClass", STK_CHECK_WARN, NULL, PATH_CLUSTER,
            "could not look: %s", err ? err->msg : "?");
    json_decref(rc);
    stk_error_free(err);
}

static void check_admission(struct doc *d)
{
    static const char *const names[] = {"stockade-protect-networkpolicies", "stockade-pod-guard"};
    _cleanup_buf_ struct stk_buf missing = {0};
    const char *error = NULL;
    struct stk_error *err = NULL;
    for (size_t i = 0; i < STK_ARRAY_SIZE(names) && !error; i++) {
        const char *kinds[] = {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"};
        for (size_t k = 0; k < 2 && !error; k++) {
            struct stk_kube_ref ref = {"admissionregistration.k8s.io/v1", kinds[k], NULL, names[i]};
            json_t *o = NULL;
            int r = stk_kube_get(d->k, &ref, &o, &err);
            json_decref(o);
            if (r == -ENOENT) {
                stk_buf_printf(&missing, "%s%s %s", missing.len ? ", " : "", kinds[k], names[i]);
                stk_error_free(err);
                err = NULL;
            } else if (r < 0) {
                error = err ? err->msg : "?";
            }
        }
    }
    if (error)
        add(d, "admission-guard", "admission guard installed", STK_CHECK_WARN, NULL, PATH_CLUSTER,
            "could not look: %s", error);
    else if (missing.len)
        add(d, "admission-guard", "admission guard installed", STK_CHECK_FAIL,
            "stockade render --target kubernetes --cluster-objects | kubectl apply -f -",
            PATH_CLUSTER,
            "missing %s: a sandbox with edit rights could delete the NetworkPolicies that "
            "contain it",
            stk_buf_str(&missing));
    else
        add(d, "admission-guard", "admission guard installed", STK_CHECK_PASS, NULL, PATH_CLUSTER,
            "both ValidatingAdmissionPolicies and their bindings are installed");
    stk_error_free(err);
}

static void check_network_policy(struct doc *d)
{
    json_t *np = json_pack("{s:s, s:s, s:{s:s}, s:{s:{}, s:[s]}}", "apiVersion",
                           "networking.k8s.io/v1", "kind", "NetworkPolicy", "metadata", "name",
                           "stockade-doctor-probe", "spec", "podSelector", "policyTypes", "Egress");
    const char *ns = stk_kubeconfig_namespace(d->cfg);
    char path[200];
    snprintf(path, sizeof(path),
             "/apis/networking.k8s.io/v1/namespaces/%s/networkpolicies?dryRun=All", ns);
    long status = 0;
    json_t *body = NULL;
    struct stk_error *err = NULL;
    int r = stk_kube_request(d->k, "POST", path, NULL, np, &status, &body, &err);
    json_decref(np);
    if (r >= 0 && status < 300)
        add(d, "network-policy", "NetworkPolicy accepted", STK_CHECK_PASS, NULL, PATH_CLUSTER,
            "the API accepts NetworkPolicies (dry run in %s); whether the CNI enforces them is "
            "not visible from the API: explain says so",
            ns);
    else
        add(d, "network-policy", "NetworkPolicy accepted", STK_CHECK_FAIL, NULL, PATH_CLUSTER,
            "a NetworkPolicy was refused (dry run in %s, HTTP %ld): %s", ns, status,
            err ? err->msg : json_string_value(json_object_get(body, "message")));
    json_decref(body);
    stk_error_free(err);
}

/* agents.x-k8s.io (SandboxWarmPool, SandboxClaim): detected by discovery
 * and reported; the driver keeps warm pools through them when the cluster
 * serves STK_K8S_AGENTS_API, else as its own Pods. */
static void check_agents_api(struct doc *d)
{
    static const char *const groups[] = {"extensions.agents.x-k8s.io", "agents.x-k8s.io"};
    struct stk_buf served = {0};
    for (size_t i = 0; i < STK_ARRAY_SIZE(groups); i++) {
        char path[96];
        snprintf(path, sizeof(path), "/apis/%s", groups[i]);
        long status = 0;
        json_t *body = NULL;
        if (stk_kube_request(d->k, "GET", path, NULL, NULL, &status, &body, NULL) >= 0 &&
            status == 200) {
            size_t j;
            const json_t *v;
            json_array_foreach(json_object_get(body, "versions"), j, v)
                stk_buf_printf(&served, "%s%s", served.len ? ", " : "",
                               json_string_value(json_object_get(v, "groupVersion")) ?: "?");
        }
        json_decref(body);
    }
    bool ext = served.len && strstr(served.data, STK_K8S_AGENTS_API);
    if (ext)
        add(d, "agents-api", "agents.x-k8s.io warm pools", STK_CHECK_PASS, NULL, PATH_CLUSTER,
            "the cluster serves %s: `pool create` makes a SandboxTemplate and a SandboxWarmPool, "
            "`create --pool` a SandboxClaim, which the agent-sandbox controller must bind (a claim "
            "nobody binds fails after its wait)",
            served.data);
    else if (served.len)
        add(d, "agents-api", "agents.x-k8s.io warm pools", STK_CHECK_WARN,
            "nothing to do: pools work without it", PATH_CLUSTER,
            "the cluster serves %s but not %s, the version stockade uses: warm pools are "
            "stockade's own Pods, claimed under their resourceVersion",
            served.data, STK_K8S_AGENTS_API);
    else
        add(d, "agents-api", "agents.x-k8s.io warm pools", STK_CHECK_PASS, NULL, PATH_CLUSTER,
            "the cluster does not serve agents.x-k8s.io (discovery): warm pools are stockade's "
            "own Pods, claimed under their resourceVersion");
    stk_buf_free(&served);
}

int stk_kube_doctor(struct stk_kube *k, const struct stk_kubeconfig *cfg,
                    struct stk_doctor_report *r)
{
    struct doc d = {.k = k, .cfg = cfg, .r = r};
    if (!check_reachable(&d))
        return 0;
    check_authorized(&d);
    check_pod_security(&d);
    check_runtime_class(&d);
    check_admission(&d);
    check_network_policy(&d);
    check_agents_api(&d);
    return 0;
}
