/* SPDX-License-Identifier: Apache-2.0 */
/*
 * render — pure functions from a resolved boundary to the objects a backend
 * applies. Nothing here touches a cluster, a file or the kernel: same
 * boundary in, byte-identical objects out. Each backend has its own section
 * below.
 */
#ifndef STK_RENDER_H
#define STK_RENDER_H

#include "boundary/boundary.h"

#include <jansson.h>

/* ==== Kubernetes ========================================================== */

/* Labels every object stockade renders carries. */
#define STK_K8S_MANAGED_BY_LABEL "app.kubernetes.io/managed-by"
#define STK_K8S_MANAGED_BY       "stockade"
#define STK_K8S_SANDBOX_LABEL    "stockade.dev/sandbox"
/* Pod template label of a warm pool's Pods (instead of the sandbox label). */
#define STK_K8S_WARM_POOL_LABEL "stockade.dev/warm-pool"
/* Namespace label: the runtimeClassName every Pod there must use. */
#define STK_K8S_RUNTIME_CLASS_LABEL "stockade.dev/runtime-class"
/* Namespace label: an operator-approved exception (privileged Pods allowed). */
#define STK_K8S_EXCEPTION_LABEL "stockade.dev/operator-exception"
/* Workload annotation: what injection changed, so eject can undo it. */
#define STK_K8S_INJECTED_ANNOTATION "stockade.dev/injected"
/* The namespace stockade's own controller runs in; its service accounts are
 * the only identities the admission policies let change stockade's objects. */
#define STK_K8S_SYSTEM_NAMESPACE "stockade-system"
/* Image of the Docker-daemon sidecar (policy privileged with docker). */
#define STK_K8S_DOCKER_IMAGE "docker.io/library/docker:27-dind"
/* Lifetime of the projected service-account token, in seconds. */
#define STK_K8S_TOKEN_SECONDS 3600

/* Warm pools (allocation.mode warmPool): agents.x-k8s.io's extension API and
 * the replicas a rendered SandboxWarmPool keeps ready (operators scale it). */
#define STK_K8S_AGENTS_API         "extensions.agents.x-k8s.io/v1beta1"
#define STK_K8S_WARM_POOL_REPLICAS 1

struct stk_k8s_options {
    bool job; /* a Job even without a wallClock deadline */
};

/* The namespace a standalone sandbox's objects live in:
 * driverConfig.kubernetes.namespace, else "<metadata.namespace>-<name>".
 * Returns a string in b's arena. */
const char *stk_k8s_namespace(const struct stk_boundary *b);

/* The namespaced objects of a standalone sandbox, in apply order: Namespace,
 * ServiceAccount, RoleBinding, NetworkPolicies, ResourceQuota, LimitRange,
 * PersistentVolumeClaim, vcluster Namespace, and the Pod or Job (with a warm
 * pool: SandboxTemplate, SandboxWarmPool and SandboxClaim). *ret is a new
 * JSON array. */
int stk_k8s_render(const struct stk_boundary *b, const struct stk_k8s_options *opt, json_t **ret,
                   struct stk_error **err);

/* Which admission engine the guard policies are written for. */
enum stk_k8s_admission {
    STK_K8S_ADMISSION_VAP,     /* ValidatingAdmissionPolicy + binding (built in) */
    STK_K8S_ADMISSION_KYVERNO, /* Kyverno ClusterPolicy */
    _STK_K8S_ADMISSION_N
};
extern const char *const stk_k8s_admission_names[_STK_K8S_ADMISSION_N];

/* The cluster-scoped objects every cluster needs once: the stockade-view,
 * -edit and -admin ClusterRoles, the gvisor RuntimeClass and the admission
 * guard (same CEL for either engine). */
json_t *stk_k8s_cluster_objects(enum stk_k8s_admission admission);

/* Injects the sandbox into a Deployment, StatefulSet or DaemonSet (a JSON
 * object, not modified) and returns the changed copy. */
int stk_k8s_inject(const struct stk_boundary *b, const json_t *workload, json_t **ret,
                   struct stk_error **err);
/* Undoes stk_k8s_inject using the annotation it left. */
int stk_k8s_eject(const json_t *workload, json_t **ret, struct stk_error **err);

/* ---- YAML <-> JSON values (libyaml) ---- */

/* Writes each element of docs as one YAML document ("---" separated). */
int stk_yaml_dump(const json_t *docs, struct stk_buf *out, struct stk_error **err);
/* Parses every document of a YAML (or JSON) stream into a JSON array.
 * Scalars resolve by the YAML 1.2 core schema; aliases are refused. */
int stk_yaml_load(const char *data, size_t len, json_t **ret, struct stk_error **err);

#endif
