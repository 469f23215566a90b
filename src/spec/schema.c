/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The field table: every field of every document kind, its type, syntax,
 * limits and documentation. Parsing, validation messages and docs/spec.md
 * all come from here.
 */
#include "internal.h"

#include <stddef.h>

const char *const stk_policy_names[_STK_POLICY_N] = {"restricted", "baseline", "privileged"};
const char *const stk_role_names[_STK_ROLE_N] = {"view", "edit", "admin"};
const char *const stk_runtime_names[_STK_RUNTIME_N] = {"default", "gvisor", "crun", "runc"};
const char *const stk_model_names[_STK_MODEL_N] = {"standalone", "injection"};
const char *const stk_workload_kind_names[_STK_WORKLOAD_N] = {"Deployment", "StatefulSet",
                                                              "DaemonSet"};
const char *const stk_protocol_names[_STK_PROTO_N] = {"TCP", "UDP", "SCTP"};
const char *const stk_alloc_mode_names[_STK_ALLOC_N] = {"direct", "warmPool"};
const char *const stk_cred_source_names[_STK_CRED_N] = {"env", "file", "kubernetesSecret"};
const char *const stk_selector_op_names[_STK_SEL_N] = {"In", "NotIn", "Exists", "DoesNotExist"};
const char *const stk_toleration_op_names[_STK_TOL_N] = {"Equal", "Exists"};
const char *const stk_pull_policy_names[_STK_PULL_N] = {"Always", "IfNotPresent", "Never"};
const char *const stk_taint_effect_names[_STK_EFFECT_N] = {"", "NoSchedule", "PreferNoSchedule",
                                                           "NoExecute"};
const char *const stk_netpol_names[_STK_NETPOL_N] = {
    "deny-egress",           "allow-namespace-egress", "allow-dns-egress",
    "allow-external-egress", "allow-internal-egress",  "allow-sandbox-egress"};
const char *const stk_kind_names[_STK_KIND_N] = {"Sandbox", "EnvironmentConfig", "AccessPolicy"};
const char *const stk_jwt_alg_names[_STK_JWT_N] = {"RS256", "ES256"};
const char *const stk_identity_kind_names[_STK_IDENTITY_N] = {"platform-controller", "end-user"};
const char *const stk_access_verb_names[STK_ACCESS_VERBS] = {
    "create", "get",   "list",   "exec",  "logs", "connect",
    "stop",   "start", "delete", "audit", "pool", "metrics",
};
const char *const stk_allocation_kind_names[_STK_ALLOCATION_N] = {"cold", "warm"};

#define KiB (INT64_C(1024))
#define MiB (KiB * 1024)
#define GiB (MiB * 1024)
#define TiB (GiB * 1024)
#define SEC INT64_C(1000)
#define DAY (86400 * SEC)

#define AT(T, m)     .offset = offsetof(T, m)
#define STR(f)       .type = STK_F_STRING, .fmt = (f)
#define ENUM(tbl)    .type = STK_F_ENUM, .values = (tbl), .n_values = STK_ARRAY_SIZE(tbl)
#define OBJ(tbl)     .type = STK_F_OBJECT, .fields = (tbl)
#define LIST(ET, et) .type = STK_F_LIST, .elem = (et), .elem_size = sizeof(ET)
#define OBJLIST(ET, tb)                                                                            \
    .type = STK_F_LIST, .elem = STK_F_OBJECT, .elem_size = sizeof(ET), .fields = (tb)
#define REJECT(msg) .type = STK_F_REJECT, .doc = (msg)
#define END                                                                                        \
    {                                                                                              \
        .name = NULL                                                                               \
    }

/* ---- shared pieces -------------------------------------------------------- */

static const struct stk_field metadata_fields[] = {
    {"name", AT(struct stk_metadata, name), STR(STK_FMT_DNS_LABEL), .required = true,
     .doc = "Name of the object, unique in its namespace."},
    {"namespace", AT(struct stk_metadata, namespace), STR(STK_FMT_DNS_LABEL),
     .doc = "Namespace the sandbox belongs to. Sandboxes in one namespace may reach each other "
            "(namespace-local egress)."},
    {"labels", AT(struct stk_metadata, labels), .type = STK_F_MAP, .fmt = STK_FMT_QUALIFIED,
     .value_fmt = STK_FMT_LABEL_VALUE, .max_items = 64,
     .doc = "Labels copied onto every object stockade creates for the sandbox."},
    {"annotations", AT(struct stk_metadata, annotations), .type = STK_F_MAP,
     .fmt = STK_FMT_QUALIFIED, .value_fmt = STK_FMT_TEXT, .max_len = 8192, .max_items = 64,
     .doc = "Free-form annotations."},
    END,
};

static const struct stk_field port_fields[] = {
    {"protocol", AT(struct stk_port, protocol), ENUM(stk_protocol_names),
     .doc = "Transport protocol; TCP when omitted."},
    {"port", AT(struct stk_port, port), .type = STK_F_INT, .min = 1, .max = 65535,
     .doc = "Destination port; every port when omitted."},
    {"endPort", AT(struct stk_port, end_port), .type = STK_F_INT, .min = 1, .max = 65535,
     .doc = "Last port of a range starting at port."},
    END,
};

static const struct stk_field selector_req_fields[] = {
    {"key", AT(struct stk_selector_req, key), STR(STK_FMT_QUALIFIED), .required = true,
     .doc = "Label key."},
    {"operator", AT(struct stk_selector_req, op), ENUM(stk_selector_op_names), .required = true,
     .doc = "How the key's value is matched."},
    {"values", AT(struct stk_selector_req, values), LIST(struct stk_str, STK_F_STRING),
     .fmt = STK_FMT_LABEL_VALUE, .max_items = 32,
     .doc = "Values for In and NotIn; empty for Exists and DoesNotExist."},
    END,
};

static const struct stk_field label_selector_fields[] = {
    {"matchLabels", AT(struct stk_label_selector, match_labels), .type = STK_F_MAP,
     .fmt = STK_FMT_QUALIFIED, .value_fmt = STK_FMT_LABEL_VALUE, .max_items = 32,
     .doc = "Labels the destination pods must carry."},
    {"matchExpressions", AT(struct stk_label_selector, match_expressions),
     OBJLIST(struct stk_selector_req, selector_req_fields), .max_items = 16,
     .doc = "Label requirements, all of which must hold."},
    END,
};

static const struct stk_field internal_egress_fields[] = {
    {"namespace", AT(struct stk_internal_egress, namespace), STR(STK_FMT_DNS_LABEL),
     .required = true, .doc = "Namespace the sandbox may reach."},
    {"podSelector", AT(struct stk_internal_egress, pod_selector), OBJ(label_selector_fields),
     .doc = "Pods in that namespace it may reach; all pods when omitted."},
    {"ports", AT(struct stk_internal_egress, ports), OBJLIST(struct stk_port, port_fields),
     .max_items = 32, .doc = "Ports it may reach; all ports when omitted."},
    END,
};

static const struct stk_field resources_fields[] = {
    {"cpu", AT(struct stk_resources, cpu), .type = STK_F_CPU, .min = 10, .max = 256 * 1000,
     .doc = "CPU limit in cores (Kubernetes quantity: 500m, 2)."},
    {"memory", AT(struct stk_resources, memory), .type = STK_F_BYTES, .min = 16 * MiB, .max = TiB,
     .doc = "Memory limit, swap included (512Mi, 2Gi). Exceeding it kills the sandbox "
            "with memory_exceeded."},
    {"pids", AT(struct stk_resources, pids), .type = STK_F_INT, .min = 8, .max = 65536,
     .doc = "Maximum number of processes and threads. Fork attempts beyond it fail; the "
            "sandbox is killed with pids_exceeded."},
    {"wallClock", AT(struct stk_resources, wall_clock), .type = STK_F_DURATION, .min = SEC,
     .max = 30 * DAY, .doc = "Deadline from start (90s, 10m, 2h); then wall_clock_exceeded."},
    {"cpuTime", AT(struct stk_resources, cpu_time), .type = STK_F_DURATION, .min = SEC,
     .max = 30 * DAY, .doc = "CPU-time budget (all cores summed); then cpu_exceeded."},
    {"storage", AT(struct stk_resources, storage), .type = STK_F_BYTES, .min = MiB, .max = 10 * TiB,
     .doc = "Ephemeral writable storage (/workspace, /tmp)."},
    END,
};

/* ---- Sandbox ---------------------------------------------------------------- */

static const struct stk_field configmap_key_ref_fields[] = {
    {"name", AT(struct stk_configmap_key_ref, name), STR(STK_FMT_DNS_SUBDOMAIN), .required = true,
     .doc = "ConfigMap name."},
    {"key", AT(struct stk_configmap_key_ref, key), STR(STK_FMT_LINE), .max_len = 253,
     .required = true, .doc = "Key in the ConfigMap."},
    {"optional", AT(struct stk_configmap_key_ref, optional), .type = STK_F_BOOL,
     .doc = "Start even if the key is missing."},
    END,
};

static const struct stk_field env_source_fields[] = {
    {"configMapKeyRef", AT(struct stk_env_source, config_map_key_ref),
     OBJ(configmap_key_ref_fields), .doc = "Value from a ConfigMap key (Kubernetes only)."},
    {"secretKeyRef",
     REJECT("secrets never enter the sandbox: declare a spec.bindings entry and the egress "
            "proxy adds the credential on the way out")},
    {"fieldRef", REJECT("fieldRef is not supported: stockade sets the sandbox's own metadata")},
    END,
};

static const struct stk_field env_fields[] = {
    {"name", AT(struct stk_env_var, name), STR(STK_FMT_ENV_NAME), .required = true,
     .doc = "Variable name."},
    {"value", AT(struct stk_env_var, value), STR(STK_FMT_TEXT), .max_len = 32 * 1024,
     .doc = "Literal value. Never put a secret here: use bindings."},
    {"valueFrom", AT(struct stk_env_var, value_from), OBJ(env_source_fields),
     .doc = "Value from a ConfigMap."},
    END,
};

static const struct stk_field configmap_ref_fields[] = {
    {"name", AT(struct stk_configmap_ref, name), STR(STK_FMT_DNS_SUBDOMAIN), .required = true,
     .doc = "ConfigMap name."},
    {"optional", AT(struct stk_configmap_ref, optional), .type = STK_F_BOOL,
     .doc = "Start even if the ConfigMap is missing."},
    END,
};

static const struct stk_field env_from_fields[] = {
    {"prefix", AT(struct stk_env_from, prefix), STR(STK_FMT_ENV_NAME),
     .doc = "Prefix added to every variable name."},
    {"configMapRef", AT(struct stk_env_from, config_map_ref), OBJ(configmap_ref_fields),
     .required = true, .doc = "All keys of a ConfigMap (Kubernetes only)."},
    {"secretRef",
     REJECT("secrets never enter the sandbox: declare a spec.bindings entry and the egress "
            "proxy adds the credential on the way out")},
    END,
};

static const struct stk_field target_fields[] = {
    {"kind", AT(struct stk_target, kind), ENUM(stk_workload_kind_names), .required = true,
     .doc = "Kind of the workload to inject into."},
    {"name", AT(struct stk_target, name), STR(STK_FMT_DNS_SUBDOMAIN), .required = true,
     .doc = "Name of the workload."},
    {"namespace", AT(struct stk_target, namespace), STR(STK_FMT_DNS_LABEL),
     .doc = "Namespace of the workload; the sandbox's namespace when omitted."},
    {"container", AT(struct stk_target, container), STR(STK_FMT_DNS_LABEL),
     .doc = "Container to debug (its process is visible through the shared PID namespace)."},
    END,
};

static const struct stk_field deployment_fields[] = {
    {"model", AT(struct stk_deployment, model), ENUM(stk_model_names),
     .doc = "standalone: a dedicated sandbox. injection: a container added to an existing "
            "workload's pods, sharing their network and PID namespaces."},
    {"target", AT(struct stk_deployment, target), OBJ(target_fields),
     .doc = "The workload to inject into (injection only)."},
    END,
};

static const struct stk_field capabilities_fields[] = {
    {"add", AT(struct stk_capabilities, add), LIST(struct stk_str, STK_F_STRING),
     .fmt = STK_FMT_CAPABILITY, .max_items = 16,
     .doc = "Capabilities to add to an otherwise empty set. restricted allows only "
            "NET_BIND_SERVICE; baseline the Pod Security Standards list; anything else needs "
            "privileged."},
    {"drop", REJECT("all capabilities are always dropped; list only what to add")},
    END,
};

static const char reject_host_ns[] =
    "host namespaces are never accepted: a sandbox always has its own network, PID and IPC "
    "namespaces (use deployment.model: injection to share a workload's pod)";
static const char reject_host_path[] =
    "host paths are never mounted into a sandbox: it gets /workspace and, when persistent, its "
    "home volume (storage.home)";

static const struct stk_field security_fields[] = {
    {"policy", AT(struct stk_security, policy), ENUM(stk_policy_names),
     .doc = "Pod Security Standards level the sandbox runs at."},
    {"kubernetesAccess", AT(struct stk_security, kubernetes_access), .type = STK_F_BOOL,
     .doc = "Mount an expiring service-account token so the sandbox can call the Kubernetes "
            "API."},
    {"kubernetesRole", AT(struct stk_security, kubernetes_role), ENUM(stk_role_names),
     .doc = "Role bound to that token in the sandbox's namespace (or vcluster). Stockade's "
            "roles never include networkpolicies or RBAC escalation."},
    {"capabilities", AT(struct stk_security, capabilities), OBJ(capabilities_fields),
     .doc = "Linux capabilities beyond the empty default set."},
    {"registry", AT(struct stk_security, registry), .type = STK_F_BOOL,
     .doc = "An image registry the sandbox can push to (privileged only)."},
    {"docker", AT(struct stk_security, docker), .type = STK_F_BOOL,
     .doc = "A Docker daemon sidecar (privileged only, never with injection)."},
    {"externalEgress",
     REJECT("externalEgress lives in spec.network.externalEgress in stockade "
            "(EnvironmentConfig keeps Datalab's data.defaults.security.externalEgress)")},
    {"privileged", REJECT("use spec.security.policy: privileged, an explicit and assessed "
                          "choice")},
    {"hostNetwork", REJECT(reject_host_ns)},
    {"hostPID", REJECT(reject_host_ns)},
    {"hostIPC", REJECT(reject_host_ns)},
    END,
};

static const struct stk_field egress_rule_fields[] = {
    {"cidr", AT(struct stk_egress_rule, cidr), .type = STK_F_CIDR, .required = true,
     .doc = "Destination network (normalised; host bits must be zero)."},
    {"except", AT(struct stk_egress_rule, except), LIST(struct stk_cidrv, STK_F_CIDR),
     .max_items = 32,
     .doc = "Networks inside cidr that stay unreachable. The operator's blacklistIPs are "
            "always added."},
    {"ports", AT(struct stk_egress_rule, ports), OBJLIST(struct stk_port, port_fields),
     .max_items = 32, .doc = "Ports allowed; all ports when omitted."},
    END,
};

static const struct stk_field network_fields[] = {
    {"externalEgress", AT(struct stk_network, external_egress), .type = STK_F_BOOL,
     .doc = "DNS and the operator's externalEgressCIDRs (minus blacklistIPs, pod and service "
            "CIDRs)."},
    {"egress", AT(struct stk_network, egress), OBJLIST(struct stk_egress_rule, egress_rule_fields),
     .max_items = 64, .doc = "Explicit allowlist of destination networks."},
    {"internalEgress", AT(struct stk_network, internal_egress),
     OBJLIST(struct stk_internal_egress, internal_egress_fields), .max_items = 32,
     .doc = "Other namespaces the sandbox may reach."},
    {"allowHosts", AT(struct stk_network, allow_hosts), LIST(struct stk_str, STK_F_STRING),
     .fmt = STK_FMT_ALLOW_HOST, .max_items = STK_LIMIT_ALLOW_HOSTS,
     .doc = "Host names reached through the egress proxy (HTTP_PROXY/HTTPS_PROXY): "
            "NAME[:PORT] or *.SUFFIX[:PORT], port 443 when omitted. The proxy resolves the "
            "name itself and refuses loopback, link-local, multicast, pod, service, "
            "blacklisted, sandbox and host "
            "addresses."},
    END,
};

static const struct stk_field container_port_fields[] = {
    {"port", AT(struct stk_container_port, port), .type = STK_F_INT, .min = 1, .max = 65535,
     .required = true, .doc = "TCP port the sandbox listens on."},
    {"name", AT(struct stk_container_port, name), STR(STK_FMT_DNS_LABEL), .max_len = 15,
     .doc = "Name of the port (the Service's port name); p<port> when omitted."},
    END,
};

static const struct stk_field home_fields[] = {
    {"size", AT(struct stk_home, size), .type = STK_F_BYTES, .min = MiB, .max = 10 * TiB,
     .doc = "Size of the home volume."},
    {"persist", AT(struct stk_home, persist), .type = STK_F_BOOL,
     .doc = "Keep the home volume across stop/start (it is deleted with the sandbox)."},
    {"storageClassName", AT(struct stk_home, storage_class_name), STR(STK_FMT_DNS_SUBDOMAIN),
     .doc = "Kubernetes StorageClass for the home volume."},
    END,
};

static const struct stk_field storage_fields[] = {
    {"home", AT(struct stk_storage, home), OBJ(home_fields),
     .doc = "The sandbox user's home directory."},
    {"hostPath", REJECT(reject_host_path)},
    END,
};

static const struct stk_field credential_fields[] = {
    {"source", AT(struct stk_credential, source), ENUM(stk_cred_source_names), .required = true,
     .doc = "Where the egress proxy reads the secret: an environment variable or file of the "
            "proxy, or a Kubernetes Secret."},
    {"ref", AT(struct stk_credential, ref), STR(STK_FMT_LINE), .max_len = 1024, .required = true,
     .doc = "Variable name, file path, or namespace/name of the Secret."},
    {"key", AT(struct stk_credential, key), STR(STK_FMT_LINE), .max_len = 253,
     .doc = "Key inside the Secret (kubernetesSecret only)."},
    END,
};

static const struct stk_field inject_fields[] = {
    {"header", AT(struct stk_inject, header), STR(STK_FMT_HEADER),
     .doc = "Request header the proxy sets; Authorization when omitted."},
    {"format", AT(struct stk_inject, format), STR(STK_FMT_INJECT_FORMAT),
     .doc = "Header value template; \"Bearer {value}\" when omitted."},
    END,
};

static const struct stk_field binding_fields[] = {
    {"name", AT(struct stk_binding, name), STR(STK_FMT_DNS_LABEL), .required = true,
     .doc = "Binding name; the sandbox sees a base URL for it."},
    {"url", AT(struct stk_binding, url), STR(STK_FMT_URL), .required = true,
     .doc = "Upstream service the proxy forwards to."},
    {"credential", AT(struct stk_binding, credential), OBJ(credential_fields), .required = true,
     .doc = "The secret the proxy adds. It never enters the sandbox."},
    {"inject", AT(struct stk_binding, inject), OBJ(inject_fields),
     .doc = "How the proxy presents the secret."},
    END,
};

static const struct stk_field toleration_fields[] = {
    {"key", AT(struct stk_toleration, key), STR(STK_FMT_QUALIFIED), .doc = "Taint key."},
    {"operator", AT(struct stk_toleration, op), ENUM(stk_toleration_op_names),
     .doc = "Equal when omitted."},
    {"value", AT(struct stk_toleration, value), STR(STK_FMT_LABEL_VALUE), .doc = "Taint value."},
    {"effect", AT(struct stk_toleration, effect), ENUM(stk_taint_effect_names),
     .doc = "Taint effect; every effect when omitted."},
    {"tolerationSeconds", AT(struct stk_toleration, toleration_seconds), .type = STK_F_INT,
     .min = 0, .max = 86400 * 365, .doc = "How long a NoExecute taint is tolerated."},
    END,
};

static const struct stk_field allocation_fields[] = {
    {"mode", AT(struct stk_allocation, mode), ENUM(stk_alloc_mode_names),
     .doc = "direct creates the sandbox; warmPool claims a prepared one."},
    {"warmPool", AT(struct stk_allocation, warm_pool), STR(STK_FMT_DNS_SUBDOMAIN),
     .doc = "Warm pool to claim from (warmPool mode)."},
    END,
};

static const struct stk_field kube_fields[] = {
    {"namespace", AT(struct stk_kube_config, namespace), STR(STK_FMT_DNS_LABEL),
     .doc = "Namespace to create the sandbox in; one per sandbox when omitted."},
    {"runtimeClassName", AT(struct stk_kube_config, runtime_class_name), STR(STK_FMT_DNS_SUBDOMAIN),
     .doc = "RuntimeClass of the pod (gvisor for runtime: gvisor)."},
    {"serviceAccountName", AT(struct stk_kube_config, service_account_name),
     STR(STK_FMT_DNS_SUBDOMAIN), .doc = "Existing ServiceAccount to run as."},
    {"priorityClassName", AT(struct stk_kube_config, priority_class_name),
     STR(STK_FMT_DNS_SUBDOMAIN), .doc = "PriorityClass of the pod."},
    {"imagePullPolicy", AT(struct stk_kube_config, image_pull_policy), ENUM(stk_pull_policy_names),
     .doc = "When the node pulls spec.image; the cluster's default (Always for :latest) when "
            "omitted. Never for images loaded onto the nodes by hand."},
    {"imagePullSecrets", AT(struct stk_kube_config, image_pull_secrets),
     LIST(struct stk_str, STK_F_STRING), .fmt = STK_FMT_DNS_SUBDOMAIN, .max_items = 8,
     .doc = "Names of existing Secrets (kubernetes.io/dockerconfigjson) in the sandbox's "
            "namespace that the node pulls spec.image with. Only the names: the credentials "
            "stay in the cluster and never pass through stockade."},
    {"nodeSelector", AT(struct stk_kube_config, node_selector), .type = STK_F_MAP,
     .fmt = STK_FMT_QUALIFIED, .value_fmt = STK_FMT_LABEL_VALUE, .max_items = 32,
     .doc = "Node labels the pod must land on."},
    {"tolerations", AT(struct stk_kube_config, tolerations),
     OBJLIST(struct stk_toleration, toleration_fields), .max_items = 32,
     .doc = "Taints the pod tolerates."},
    {"allocation", AT(struct stk_kube_config, allocation), OBJ(allocation_fields),
     .doc = "How the pod is obtained."},
    {"proxyImage", AT(struct stk_kube_config, proxy_image), STR(STK_FMT_IMAGE),
     .doc = "Image of the egress proxy's Pod (it runs `stockade __proxy`), required when the "
            "sandbox has network.allowHosts or bindings. An operator setting: the proxy holds "
            "the bindings' credentials, so an AccessPolicy should not list this key in "
            "driverConfigKeys for callers."},
    END,
};

static const struct stk_field local_fields[] = {
    {"tmpSize", AT(struct stk_local_config, tmp_size), .type = STK_F_BYTES, .min = MiB,
     .max = 64 * GiB,
     .doc = "Size of the /tmp tmpfs (counted against memory). Default: a quarter of the "
            "memory limit, at least 1Mi and at most 64Mi."},
    {"shmSize", AT(struct stk_local_config, shm_size), .type = STK_F_BYTES, .min = MiB,
     .max = 64 * GiB,
     .doc = "Size of the /dev/shm tmpfs (counted against memory). Default: a quarter of the "
            "memory limit, at least 1Mi and at most 64Mi."},
    END,
};

/* Hard limits keep a declared workload within what a real one could be:
 * no modelled run beyond a year, no peak beyond 16 TiB or pid_max. */
static const struct stk_field sim_fields[] = {
    {"runFor", AT(struct stk_sim_config, run_for), .type = STK_F_DURATION, .min = 0,
     .max = 365 * DAY,
     .doc = "How long the workload runs before it exits on its own (30s, 10m); it runs until "
            "stopped when omitted."},
    {"exitCode", AT(struct stk_sim_config, exit_code), .type = STK_F_INT, .min = 0, .max = 255,
     .doc = "The exit status it ends with after runFor: 0 is succeeded, any other failed; 0 when "
            "omitted."},
    {"memoryPeak", AT(struct stk_sim_config, memory_peak), .type = STK_F_BYTES, .min = 0,
     .max = 16 * TiB,
     .doc = "Peak memory it would use (300Mi), reached linearly over runFor (at start without "
            "it); above resources.memory it is killed with memory_exceeded."},
    {"pids", AT(struct stk_sim_config, pids), .type = STK_F_INT, .min = 0, .max = 4194304,
     .doc = "Processes and threads it would start, reached like memoryPeak; above "
            "resources.pids it is killed with pids_exceeded."},
    {"cpuTime", AT(struct stk_sim_config, cpu_time), .type = STK_F_DURATION, .min = 0,
     .max = 365 * DAY,
     .doc = "CPU time it would use, evenly over runFor (needs runFor); above resources.cpuTime "
            "it is killed with cpu_exceeded."},
    {"connects", AT(struct stk_sim_config, connects), LIST(struct stk_str, STK_F_STRING),
     .fmt = STK_FMT_ENDPOINT, .max_items = STK_SIM_MAX_CONNECTS,
     .doc = "Numeric destinations it tries when it starts (10.0.0.5:5432, [2001:db8::1]:443, "
            "10.0.0.53:53/udp); each is decided by the egress model and audited as "
            "egress_allowed or egress_denied."},
    {"output", AT(struct stk_sim_config, output), STR(STK_FMT_TEXT), .max_len = STK_SIM_MAX_OUTPUT,
     .doc = "What it would print to stdout when it starts; `stockade logs` shows it."},
    END,
};

const struct stk_field stk_driver_config_fields[] = {
    {"kubernetes", AT(struct stk_driver_config, kubernetes), OBJ(kube_fields),
     .doc = "Settings only the Kubernetes backend reads."},
    {"local", AT(struct stk_driver_config, local), OBJ(local_fields),
     .doc = "Settings only the local backend reads."},
    {"sim", AT(struct stk_driver_config, sim), OBJ(sim_fields),
     .doc = "The workload's declared behaviour, which the simulator models instead of running "
            "anything (docs/sim.md); other backends ignore it."},
    END,
};

static const struct stk_field sandbox_spec_fields[] = {
    {"image", AT(struct stk_sandbox_spec, image), STR(STK_FMT_IMAGE),
     .doc = "Container image. Kubernetes: the Pod's image. Local: an image in the store "
            "(stockade image pull; docs/images.md), also oci:/DIR[:tag], oci-archive:/FILE, "
            "docker-archive:/FILE; exclusive with rootfs."},
    {"rootfs", AT(struct stk_sandbox_spec, rootfs), STR(STK_FMT_ROOTFS),
     .doc = "Root filesystem on the local backend: \"host\" (read-only /usr, /bin, /lib*, /sbin "
            "and a minimal /etc) or a directory. Always read-only."},
    {"command", AT(struct stk_sandbox_spec, command), LIST(struct stk_str, STK_F_STRING),
     .fmt = STK_FMT_TEXT, .max_len = 4096, .max_items = 256,
     .doc = "Entrypoint; the image's when omitted."},
    {"args", AT(struct stk_sandbox_spec, args), LIST(struct stk_str, STK_F_STRING),
     .fmt = STK_FMT_TEXT, .max_len = 4096, .max_items = 256, .doc = "Arguments."},
    {"env", AT(struct stk_sandbox_spec, env), OBJLIST(struct stk_env_var, env_fields),
     .max_items = 128, .doc = "Environment variables."},
    {"envFrom", AT(struct stk_sandbox_spec, env_from),
     OBJLIST(struct stk_env_from, env_from_fields), .max_items = 16,
     .doc = "Environment from ConfigMaps."},
    {"workingDir", AT(struct stk_sandbox_spec, working_dir), STR(STK_FMT_ABS_PATH),
     .doc = "Working directory; /workspace when omitted."},
    {"deployment", AT(struct stk_sandbox_spec, deployment), OBJ(deployment_fields),
     .doc = "Standalone sandbox or injection into a workload."},
    {"runtime", AT(struct stk_sandbox_spec, runtime), ENUM(stk_runtime_names),
     .doc = "OCI runtime: gvisor (runsc, a user-space kernel), crun or runc (host kernel), or "
            "default: the strongest that works on the host."},
    {"security", AT(struct stk_sandbox_spec, security), OBJ(security_fields),
     .doc = "Privilege and API access."},
    {"network", AT(struct stk_sandbox_spec, network), OBJ(network_fields),
     .doc = "Egress. Default deny; allows are additive (Kubernetes NetworkPolicy semantics)."},
    {"ports", AT(struct stk_sandbox_spec, ports),
     OBJLIST(struct stk_container_port, container_port_fields), .max_items = STK_LIMIT_PORTS,
     .doc = "TCP ports the sandbox listens on: the only ingress it admits (from the host's "
            "port-forward and the gateway locally; through its Service on Kubernetes). None "
            "when omitted: nothing gets in."},
    {"resources", AT(struct stk_sandbox_spec, resources), OBJ(resources_fields),
     .doc = "Quotas; exceeding one kills the sandbox with a precise reason."},
    {"storage", AT(struct stk_sandbox_spec, storage), OBJ(storage_fields),
     .doc = "Persistent storage."},
    {"bindings", AT(struct stk_sandbox_spec, bindings), OBJLIST(struct stk_binding, binding_fields),
     .max_items = 32,
     .doc = "Services reached through the egress proxy, which adds their "
            "credentials."},
    {"vcluster", AT(struct stk_sandbox_spec, vcluster), .type = STK_F_BOOL,
     .doc = "Give the sandbox a virtual Kubernetes API (operator-installed vcluster)."},
    {"driverConfig", AT(struct stk_sandbox_spec, driver_config), OBJ(stk_driver_config_fields),
     .doc = "Backend-specific settings, keyed by backend."},
    {"hostNetwork", REJECT(reject_host_ns)},
    {"hostPID", REJECT(reject_host_ns)},
    {"hostIPC", REJECT(reject_host_ns)},
    {"volumes", REJECT(reject_host_path)},
    {"volumeMounts", REJECT(reject_host_path)},
    {"securityContext", REJECT("the security context is derived from spec.security.policy; it "
                               "is not set directly")},
    END,
};

const struct stk_field stk_sandbox_fields[] = {
    {"apiVersion", AT(struct stk_sandbox, api_version), STR(STK_FMT_API_VERSION), .required = true,
     .doc = "Always " STK_API_VERSION "."},
    {"kind", AT(struct stk_sandbox, kind), STR(STK_FMT_LINE), .required = true, .doc = "Sandbox."},
    {"metadata", AT(struct stk_sandbox, metadata), OBJ(metadata_fields), .required = true,
     .doc = "Name, namespace, labels."},
    {"spec", AT(struct stk_sandbox, spec), OBJ(sandbox_spec_fields),
     .doc = "What the sandbox runs and what it may do."},
    END,
};

/* ---- EnvironmentConfig ----------------------------------------------------- */

static const struct stk_field security_defaults_fields[] = {
    {"policy", AT(struct stk_security_defaults, policy), ENUM(stk_policy_names),
     .doc = "Default for spec.security.policy."},
    {"kubernetesAccess", AT(struct stk_security_defaults, kubernetes_access), .type = STK_F_BOOL,
     .doc = "Default for spec.security.kubernetesAccess."},
    {"kubernetesRole", AT(struct stk_security_defaults, kubernetes_role), ENUM(stk_role_names),
     .doc = "Default for spec.security.kubernetesRole."},
    {"externalEgress", AT(struct stk_security_defaults, external_egress), .type = STK_F_BOOL,
     .doc = "Default for spec.network.externalEgress (Datalab's location)."},
    END,
};

static const struct stk_field env_defaults_fields[] = {
    {"security", AT(struct stk_env_defaults, security), OBJ(security_defaults_fields),
     .doc = "Security defaults."},
    {"resources", AT(struct stk_env_defaults, resources), OBJ(resources_fields),
     .doc = "Resource defaults."},
    {"runtime", AT(struct stk_env_defaults, runtime), ENUM(stk_runtime_names),
     .doc = "Default for spec.runtime."},
    END,
};

static const struct stk_field env_limits_fields[] = {
    {"resources", AT(struct stk_env_limits, resources), OBJ(resources_fields),
     .doc = "The most a sandbox may request; a larger request is an error."},
    END,
};

static const struct stk_field env_network_fields[] = {
    {"externalEgressCIDRs", AT(struct stk_env_network, external_egress_cidrs),
     LIST(struct stk_cidrv, STK_F_CIDR), .max_items = 64,
     .doc = "Networks broad external egress targets; none means no broad external rule."},
    {"blacklistIPs", AT(struct stk_env_network, blacklist_ips), LIST(struct stk_cidrv, STK_F_CIDR),
     .max_items = 256,
     .doc = "Networks excepted from every external and allowlist rule (cloud metadata "
            "endpoints). Setting it replaces the default list."},
    {"podCIDRs", AT(struct stk_env_network, pod_cidrs), LIST(struct stk_cidrv, STK_F_CIDR),
     .max_items = 16, .doc = "Cluster pod networks, excepted from broad external egress."},
    {"serviceCIDR", AT(struct stk_env_network, service_cidr), .type = STK_F_CIDR,
     .doc = "Cluster service network, excepted from broad external egress."},
    {"internalEgress", AT(struct stk_env_network, internal_egress),
     OBJLIST(struct stk_internal_egress, internal_egress_fields), .max_items = 32,
     .doc = "Namespaces every sandbox may reach."},
    {"excludePolicies", AT(struct stk_env_network, exclude_policies),
     LIST(struct stk_enumv, STK_F_ENUM), .values = stk_netpol_names,
     .n_values = STK_ARRAY_SIZE(stk_netpol_names), .max_items = _STK_NETPOL_N,
     .doc = "Generated policies to skip (an escape hatch for clusters with their own policy "
            "set; assess reports it)."},
    END,
};

static const struct stk_field retention_fields[] = {
    {"homeBackup", AT(struct stk_retention, home_backup), .type = STK_F_BOOL,
     .doc = "The operator backs up persistent home volumes."},
    {"homeBackupDays", AT(struct stk_retention, home_backup_days), .type = STK_F_INT, .min = 1,
     .max = 3650, .doc = "How long home backups are kept."},
    {"deletedHomeDays", AT(struct stk_retention, deleted_home_days), .type = STK_F_INT, .min = 0,
     .max = 3650, .doc = "How long a deleted sandbox's home volume is kept before removal."},
    {"auditDays", AT(struct stk_retention, audit_days), .type = STK_F_INT, .min = 1, .max = 36500,
     .doc = "How long audit records are kept."},
    END,
};

static const struct stk_field env_local_fields[] = {
    {"addressPool", AT(struct stk_env_local, address_pool), LIST(struct stk_cidrv, STK_F_CIDR),
     .max_items = 2,
     .doc = "Networks sandbox addresses come from, at most one IPv4 and one IPv6 (default "
            "10.83.0.0/16 and fd88::/64); the first address of each is the bridge stk0."},
    {"resolver", AT(struct stk_env_local, resolver), .type = STK_F_CIDR,
     .doc = "The DNS resolver allow-dns-egress reaches, one address as a /32 or /128 CIDR; "
            "unset, sandboxes get no DNS locally."},
    {"nat", AT(struct stk_env_local, nat), .type = STK_F_BOOL,
     .doc = "Masquerade sandbox traffic to the host's uplink (default false: sandboxes reach "
            "only what is routed to them without NAT)."},
    {"routed", AT(struct stk_env_local, routed), .type = STK_F_BOOL,
     .doc = "The operator routes the address pool beyond this host without NAT. Unless this or "
            "nat is set, sandbox traffic never leaves the bridge: nothing a sandbox sends is "
            "routed off the machine."},
    {"maxSandboxes", AT(struct stk_env_local, max_sandboxes), .type = STK_F_INT, .min = 1,
     .max = STK_LIMIT_LOCAL_SANDBOXES,
     .doc = "How many sandboxes one state directory holds at once (long-lived ones and "
            "running `stockade run`s; default and hard maximum 1024); a create or run past it "
            "is refused."},
    END,
};

static const struct stk_field env_data_fields[] = {
    {"defaults", AT(struct stk_env_data, defaults), OBJ(env_defaults_fields),
     .doc = "Defaults applied where a Sandbox is silent."},
    {"limits", AT(struct stk_env_data, limits), OBJ(env_limits_fields),
     .doc = "Upper bounds on what a Sandbox may request."},
    {"network", AT(struct stk_env_data, network), OBJ(env_network_fields),
     .doc = "The operator's network facts and egress policy inputs."},
    {"local", AT(struct stk_env_data, local), OBJ(env_local_fields),
     .doc = "The local backend's sandbox network."},
    {"retention", AT(struct stk_env_data, retention), OBJ(retention_fields),
     .doc = "What the operator backs up and keeps."},
    END,
};

const struct stk_field stk_envconfig_fields[] = {
    {"apiVersion", AT(struct stk_envconfig, api_version), STR(STK_FMT_API_VERSION),
     .required = true, .doc = "Always " STK_API_VERSION "."},
    {"kind", AT(struct stk_envconfig, kind), STR(STK_FMT_LINE), .required = true,
     .doc = "EnvironmentConfig."},
    {"metadata", AT(struct stk_envconfig, metadata), OBJ(metadata_fields), .required = true,
     .doc = "Name of the environment."},
    {"data", AT(struct stk_envconfig, data), OBJ(env_data_fields),
     .doc = "The operator's settings."},
    END,
};

/* ---- AccessPolicy ------------------------------------------------------------ */

static const struct stk_field access_token_fields[] = {
    {"id", AT(struct stk_access_token, id), STR(STK_FMT_DNS_LABEL), .required = true,
     .doc = "The token's name, unique; identities match it with match.token."},
    {"sha256", AT(struct stk_access_token, sha256), STR(STK_FMT_SHA256_HEX), .required = true,
     .doc = "SHA-256 of the bearer token, in lowercase hex. The token itself is never stored."},
    END,
};

static const struct stk_field access_oidc_fields[] = {
    {"issuer", AT(struct stk_access_oidc, issuer), STR(STK_FMT_HTTPS_URL), .max_len = 256,
     .required = true, .doc = "The issuer (iss) of accepted JWTs, unique."},
    {"audience", AT(struct stk_access_oidc, audience), STR(STK_FMT_LINE), .max_len = 256,
     .required = true, .doc = "The audience (aud) a JWT must name."},
    {"jwksFile", AT(struct stk_access_oidc, jwks_file), STR(STK_FMT_ABS_PATH),
     .doc = "The issuer's signing keys (a JWK Set) in a local file; exactly one of jwksFile and "
            "jwksUrl."},
    {"jwksUrl", AT(struct stk_access_oidc, jwks_url), STR(STK_FMT_HTTPS_URL), .max_len = 2048,
     .doc = "The issuer's signing keys (a JWK Set) fetched over https (the provider's jwks_uri) "
            "when the gateway starts and at each key reload; TLS verified with the system's CAs, "
            "at most 3 redirects (https only), 256 KiB, status 200; the proxy environment "
            "variables apply. Exactly one of jwksFile and jwksUrl."},
    {"algorithms", AT(struct stk_access_oidc, algorithms), LIST(struct stk_enumv, STK_F_ENUM),
     .values = stk_jwt_alg_names, .n_values = _STK_JWT_N, .max_items = _STK_JWT_N,
     .doc = "Signature algorithms accepted; RS256 and ES256 when omitted."},
    {"clockSkew", AT(struct stk_access_oidc, clock_skew), .type = STK_F_DURATION, .min = 0,
     .max = 5 * 60 * SEC, .doc = "Tolerance on exp and nbf; 60s when omitted."},
    END,
};

static const struct stk_field access_client_certs_fields[] = {
    {"caFile", AT(struct stk_access_client_certs, ca_file), STR(STK_FMT_ABS_PATH), .required = true,
     .doc = "CA bundle (PEM); client certificates it signed are accepted (mTLS)."},
    END,
};

static const struct stk_field access_authn_fields[] = {
    {"tokens", AT(struct stk_access_authn, tokens),
     OBJLIST(struct stk_access_token, access_token_fields), .max_items = STK_LIMIT_AP_TOKENS,
     .doc = "Static bearer tokens."},
    {"oidc", AT(struct stk_access_authn, oidc), OBJLIST(struct stk_access_oidc, access_oidc_fields),
     .max_items = STK_LIMIT_AP_ISSUERS, .doc = "OIDC issuers whose JWTs are accepted."},
    {"clientCertificates", AT(struct stk_access_authn, client_certificates),
     OBJ(access_client_certs_fields), .doc = "Client certificates (mTLS)."},
    END,
};

static const struct stk_field access_match_fields[] = {
    {"token", AT(struct stk_access_match, token), STR(STK_FMT_DNS_LABEL),
     .doc = "The id of a token in spec.authentication.tokens."},
    {"issuer", AT(struct stk_access_match, issuer), STR(STK_FMT_HTTPS_URL), .max_len = 256,
     .doc = "The issuer of a spec.authentication.oidc entry; with subject or claims."},
    {"subject", AT(struct stk_access_match, subject), STR(STK_FMT_LINE), .max_len = 255,
     .doc = "The JWT's sub."},
    {"claims", AT(struct stk_access_match, claims), .type = STK_F_MAP, .fmt = STK_FMT_LINE,
     .value_fmt = STK_FMT_LINE, .max_len = 256, .max_items = 16,
     .doc = "Claims the JWT must carry, all of them: a string claim equal to the value, or an "
            "array claim containing it."},
    {"certificateSubject", AT(struct stk_access_match, certificate_subject), STR(STK_FMT_LINE),
     .max_len = 511,
     .doc = "The client certificate's subject, RFC 2253 (\"CN=alice,O=acme\"), compared exactly; "
            "needs spec.authentication.clientCertificates."},
    END,
};

static const struct stk_field access_identity_fields[] = {
    {"name", AT(struct stk_access_identity, name), STR(STK_FMT_DNS_LABEL), .required = true,
     .doc = "The identity's name, unique; recorded as the actor of its requests and as the "
            "owner of the sandboxes it creates."},
    {"kind", AT(struct stk_access_identity, kind), ENUM(stk_identity_kind_names), .required = true,
     .doc = "platform-controller: a trusted control plane acting for others. end-user: a person "
            "or agent acting for itself."},
    {"match", AT(struct stk_access_identity, match), OBJ(access_match_fields), .required = true,
     .doc = "Which authenticated principal this identity is: exactly one of token, issuer with "
            "subject, issuer with claims, certificateSubject."},
    {"tenant", AT(struct stk_access_identity, tenant), STR(STK_FMT_DNS_LABEL),
     .doc = "The identity's tenant; required for end-user identities."},
    {"project", AT(struct stk_access_identity, project), STR(STK_FMT_DNS_LABEL),
     .doc = "The identity's project."},
    END,
};

static const struct stk_field access_scope_fields[] = {
    {"owned", AT(struct stk_access_scope, owned), .type = STK_F_BOOL,
     .doc = "Only sandboxes the identity owns. Default true for end-user identities, false for "
            "platform controllers."},
    {"namespaces", AT(struct stk_access_scope, namespaces), LIST(struct stk_str, STK_F_STRING),
     .fmt = STK_FMT_GLOB, .max_items = STK_LIMIT_AP_PATTERNS,
     .doc = "Namespace patterns (fnmatch: team-*); any namespace of the tenants in scope when "
            "omitted."},
    {"tenants", AT(struct stk_access_scope, tenants), LIST(struct stk_str, STK_F_STRING),
     .fmt = STK_FMT_GLOB, .max_items = STK_LIMIT_AP_PATTERNS,
     .doc = "Tenant patterns; the identity's own tenant when omitted (none if it has none)."},
    {"projects", AT(struct stk_access_scope, projects), LIST(struct stk_str, STK_F_STRING),
     .fmt = STK_FMT_GLOB, .max_items = STK_LIMIT_AP_PATTERNS,
     .doc = "Project patterns (a sandbox without a project is matched as \"\"); any project "
            "when omitted."},
    {"maxPolicy", AT(struct stk_access_scope, max_policy), ENUM(stk_policy_names),
     .doc = "create: the highest spec.security.policy the sandbox may resolve to; restricted "
            "when omitted."},
    {"runtimes", AT(struct stk_access_scope, runtimes), LIST(struct stk_enumv, STK_F_ENUM),
     .values = stk_runtime_names, .n_values = _STK_RUNTIME_N, .max_items = _STK_RUNTIME_N,
     .doc = "create: the runtimes the sandbox may resolve to; [default] when omitted."},
    {"driverConfigKeys", AT(struct stk_access_scope, driver_config_keys),
     LIST(struct stk_str, STK_F_STRING), .fmt = STK_FMT_LINE, .max_len = 128,
     .max_items = STK_LIMIT_AP_PATTERNS,
     .doc = "create: the keys under spec.driverConfig the sandbox may set, dotted "
            "(local.tmpSize, kubernetes.nodeSelector); a section (kubernetes.allocation) "
            "covers every key in it. None when omitted."},
    {"credentialRefs", AT(struct stk_access_scope, credential_refs),
     LIST(struct stk_str, STK_F_STRING), .fmt = STK_FMT_GLOB, .max_len = 1024,
     .max_items = STK_LIMIT_AP_PATTERNS,
     .doc = "create: patterns over spec.bindings[].credential.ref; SOURCE:PATTERN (env, file, "
            "kubernetesSecret) grants refs of that credential source only, a bare PATTERN "
            "refs of any source; another word before the first colon is refused. No binding "
            "when omitted."},
    {"serviceAccounts", AT(struct stk_access_scope, service_accounts),
     LIST(struct stk_str, STK_F_STRING), .fmt = STK_FMT_GLOB, .max_items = STK_LIMIT_AP_PATTERNS,
     .doc = "create: patterns over spec.driverConfig.kubernetes.serviceAccountName (the key must "
            "also be in driverConfigKeys); none when omitted."},
    {"allocation", AT(struct stk_access_scope, allocation), LIST(struct stk_enumv, STK_F_ENUM),
     .values = stk_allocation_kind_names, .n_values = _STK_ALLOCATION_N,
     .max_items = _STK_ALLOCATION_N,
     .doc = "create: cold (a new sandbox) and/or warm (a warm-pool claim); both when omitted."},
    {"onBehalfOf", AT(struct stk_access_scope, on_behalf_of), .type = STK_F_BOOL,
     .doc = "create: may record another identity as the owner (platform controllers); false "
            "when omitted."},
    END,
};

static const struct stk_field access_grant_fields[] = {
    {"identities", AT(struct stk_access_grant, identities), LIST(struct stk_str, STK_F_STRING),
     .fmt = STK_FMT_DNS_LABEL, .max_items = STK_LIMIT_AP_PATTERNS, .required = true,
     .doc = "Names from spec.identities."},
    {"verbs", AT(struct stk_access_grant, verbs), LIST(struct stk_enumv, STK_F_ENUM),
     .values = stk_access_verb_names, .n_values = STK_ACCESS_VERBS, .max_items = STK_ACCESS_VERBS,
     .required = true,
     .doc = "What the identities may do. `metrics` reads /metrics (every tenant's counts); "
            "`pool` manages warm pools."},
    {"scope", AT(struct stk_access_grant, scope), OBJ(access_scope_fields),
     .doc = "On which sandboxes, and what a create may ask for. Every field narrows."},
    END,
};

static const struct stk_field access_tenant_fields[] = {
    {"name", AT(struct stk_access_tenant, name), STR(STK_FMT_DNS_LABEL), .required = true,
     .doc = "A tenant, as identities and grants name it."},
    {"namespaces", AT(struct stk_access_tenant, namespaces), LIST(struct stk_str, STK_F_STRING),
     .fmt = STK_FMT_GLOB, .max_items = STK_LIMIT_AP_PATTERNS, .required = true,
     .doc = "Namespace patterns (fnmatch) that are this tenant's: no other tenant creates in "
            "them, whoever used them first. Other namespaces belong to the first tenant that "
            "creates in them."},
    END,
};

static const struct stk_field access_spec_fields[] = {
    {"authentication", AT(struct stk_access_spec, authentication), OBJ(access_authn_fields),
     .doc = "How callers prove who they are."},
    {"tenants", AT(struct stk_access_spec, tenants),
     OBJLIST(struct stk_access_tenant, access_tenant_fields), .max_items = STK_LIMIT_AP_IDENTITIES,
     .doc = "Namespaces assigned to tenants by the operator; the first tenant whose pattern "
            "matches a namespace owns it."},
    {"identities", AT(struct stk_access_spec, identities),
     OBJLIST(struct stk_access_identity, access_identity_fields),
     .max_items = STK_LIMIT_AP_IDENTITIES,
     .doc = "Named identities, each matching authenticated principals. A principal is the "
            "first identity that matches it."},
    {"grants", AT(struct stk_access_spec, grants),
     OBJLIST(struct stk_access_grant, access_grant_fields), .max_items = STK_LIMIT_AP_GRANTS,
     .doc = "What identities may do. Default deny: a request is allowed when one grant of the "
            "caller's identity lists the verb and its whole scope holds."},
    END,
};

const struct stk_field stk_access_policy_fields[] = {
    {"apiVersion", AT(struct stk_access_policy, api_version), STR(STK_FMT_API_VERSION),
     .required = true, .doc = "Always " STK_API_VERSION "."},
    {"kind", AT(struct stk_access_policy, kind), STR(STK_FMT_LINE), .required = true,
     .doc = "AccessPolicy."},
    {"metadata", AT(struct stk_access_policy, metadata), OBJ(metadata_fields), .required = true,
     .doc = "Name of the policy."},
    {"spec", AT(struct stk_access_policy, spec), OBJ(access_spec_fields), .required = true,
     .doc = "Authentication, identities and grants (docs/gateway.md)."},
    END,
};
