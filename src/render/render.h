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

/* Labels the kubernetes driver adds to every object of one sandbox: which
 * sandbox (its id, unique where the name is not) and which state directory
 * made it (gc removes only its own). */
#define STK_K8S_SANDBOX_ID_LABEL "stockade.dev/sandbox-id"
#define STK_K8S_STORE_LABEL      "stockade.dev/store"
/* On an injected workload's pod template: the sandbox's container. */
#define STK_K8S_CONTAINER_LABEL "stockade.dev/sandbox-container"

/* The egress proxy (spec.network.allowHosts, spec.bindings): a Deployment
 * of one Pod, its Service, ConfigMap, ServiceAccount and NetworkPolicies
 * in the sandbox's namespace, all named STK_K8S_PROXY_NAME; its Pods carry
 * STK_K8S_COMPONENT_LABEL=STK_K8S_PROXY_COMPONENT and never the sandbox
 * label. docs/kubernetes.md, "The egress proxy". */
#define STK_K8S_PROXY_NAME       "stockade-proxy"
#define STK_K8S_COMPONENT_LABEL  "stockade.dev/component"
#define STK_K8S_PROXY_COMPONENT  "egress-proxy"
#define STK_K8S_PROXY_CONFIG_DIR "/etc/stockade-proxy"
#define STK_K8S_PROXY_CONFIG_KEY "proxy.json"
/* the proxy container's resources, each at most the sandbox's own */
#define STK_K8S_PROXY_CPU_MILLI 200
#define STK_K8S_PROXY_MEMORY    (64 * 1024 * 1024)
#define STK_K8S_PROXY_STORAGE   (16 * 1024 * 1024)
/* Whether the sandbox needs the egress proxy. */
bool stk_k8s_needs_proxy(const struct stk_boundary *b);

struct stk_k8s_options {
    bool job; /* a Job even without a wallClock deadline */
    /* Set by the driver: every object (and a Job's Pod template) gets the
     * two labels above, and the sandbox container STOCKADE_SANDBOX=name. */
    const char *sandbox_id, *store, *sandbox_name;
    /* instead of stk_k8s_namespace(b): a warm pool's members, each in a
     * namespace of its own */
    const char *namespace;
    /* instead of spec.image in the sandbox container: the same image pinned
     * to the digest stockade resolved (NAME@sha256:...); NULL: spec.image */
    const char *image;
    /* the kubernetes driver's agents.x-k8s.io pool (instead of
     * allocation.warmPool): its SandboxTemplate, a SandboxWarmPool of
     * agents_replicas and a SandboxClaim on it */
    const char *agents_pool;
    int agents_replicas;
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

/* `stockade serve --backend kubernetes` inside the cluster: the
 * stockade-system Namespace, the gateway's ServiceAccount, a ClusterRole
 * with exactly the verbs the kubernetes driver uses and its binding, a
 * Deployment (AccessPolicy from the Secret STK_K8S_GATEWAY_NAME-policy,
 * key access-policy.yaml) and a Service on port 8443. In each of
 * secret_namespaces (DNS labels, checked by the caller) a Role and
 * RoleBinding STK_K8S_GATEWAY_SECRETS give the gateway get on Secrets there:
 * what it needs to make the egress proxy's Role beside a binding's Secret
 * in that namespace (RBAC lets a Role grant only what its maker holds). */
#define STK_K8S_GATEWAY_NAME          "stockade-gateway"
#define STK_K8S_GATEWAY_SECRETS       "stockade-gateway-secrets"
#define STK_K8S_GATEWAY_IMAGE         "stockade/stockade:" STK_VERSION
#define STK_K8S_SECRET_NAMESPACES_MAX 16
json_t *stk_k8s_gateway_objects(const char *image, const char *const *secret_namespaces,
                                size_t n_secret_namespaces);

/* Injects the sandbox into a Deployment, StatefulSet or DaemonSet (a JSON
 * object, not modified) and returns the changed copy. */
int stk_k8s_inject(const struct stk_boundary *b, const json_t *workload, json_t **ret,
                   struct stk_error **err);
/*
 * What the kubernetes driver applies to a live workload (server-side apply,
 * field manager "stockade") to inject the sandbox: only the fields
 * injection adds — the sandbox's container and its volumes,
 * shareProcessNamespace, the stockade.dev/injected record, the ownership
 * labels (opt->sandbox_id, opt->store) on the workload and on its pod
 * template, the template label STK_K8S_CONTAINER_LABEL naming the
 * container. The server records exactly these as stockade's fields, which
 * makes eject exact: stk_k8s_eject_apply (nothing) with the same manager
 * removes them and nothing else. Same checks as stk_k8s_inject.
 */
int stk_k8s_inject_apply(const struct stk_boundary *b, const json_t *workload,
                         const struct stk_k8s_options *opt, json_t **ret, struct stk_error **err);
/* The apply configuration that ejects: the workload's identity, no fields. */
json_t *stk_k8s_eject_apply(const char *kind, const char *ns, const char *name);
/* Undoes stk_k8s_inject using the annotation it left. */
int stk_k8s_eject(const json_t *workload, json_t **ret, struct stk_error **err);

/* ---- YAML <-> JSON values (libyaml) ---- */

/* Writes each element of docs as one YAML document ("---" separated). */
int stk_yaml_dump(const json_t *docs, struct stk_buf *out, struct stk_error **err);
/* Parses every document of a YAML (or JSON) stream into a JSON array.
 * Scalars resolve by the YAML 1.2 core schema; aliases are refused. */
int stk_yaml_load(const char *data, size_t len, json_t **ret, struct stk_error **err);

/* ==== nftables (local egress enforcement) ================================ */

/*
 * The local driver compiles the boundary's egress model into one chain per
 * sandbox in stockade's own tables `inet stockade` (policy) and `bridge
 * stockade` (source-address binding per bridge port). See docs/egress.md.
 */

#define STK_NFT_TABLE        "stockade"
#define STK_NFT_MAX_ID       48 /* sandbox id: [a-z0-9][a-z0-9-]*, at most this long */
#define STK_NFT_MAX_SERVICES 16

/* A TCP/UDP service stockade itself offers on the bridge address. */
struct stk_nft_service {
    enum stk_protocol protocol;
    uint16_t port;
};

/* What the driver knows and the boundary does not. Addresses are
 * full-length prefixes; family STK_FAMILY_NONE means absent. */
struct stk_nft_facts {
    const char *id;        /* sandbox id */
    const char *namespace; /* the sandbox's metadata.namespace (b->namespace) */
    const char *bridge;    /* "stk0" */
    const char *veth;      /* host side of the sandbox's veth pair, "stk-<short id>" */
    struct stk_cidr addr4, addr6;
    struct stk_cidr bridge4, bridge6; /* the bridge's own addresses (gateway) */
    struct stk_cidr resolver;         /* the DNS resolver allow-dns-egress reaches */
    const struct stk_nft_service *services;
    size_t n_services;
    uint16_t log_group;           /* NFLOG group of the final log rule */
    bool nat;                     /* masquerade the pool to the uplink (operator switch) */
    bool routed;                  /* the operator routes the pool beyond the host */
    struct stk_cidr pool4, pool6; /* the address pool, for NAT */
    /* the port of the bridge address reserved for the sandbox's egress
     * proxy (STK_NFT_PROXY_PORT_BASE + its address index), and whether the
     * proxy listens there (gVisor, whose loopback is its own): then the
     * sandbox, and nothing else, may connect to it */
    uint16_t proxy_port;
    bool proxy_host;
};
/* where the host-side proxy ports start (below Linux's ephemeral range) */
#define STK_NFT_PROXY_PORT_BASE STK_PROXY_HOST_PORT_BASE

/* Whether id is a valid sandbox id ([a-z0-9][a-z0-9-]*, <= STK_NFT_MAX_ID). */
bool stk_nft_id_valid(const char *id);
/* The named set holding the addresses of namespace ns's sandboxes:
 * "ns4-<ns>" / "ns6-<ns>". */
void stk_nft_ns_set(const char *ns, enum stk_family family, struct stk_buf *out);

/*
 * The nft script (for `nft -f` / nft_run_cmd_from_buffer, applied as one
 * transaction) that installs the sandbox: stockade's base chains (idempotent),
 * the sandbox chain compiled from b->egress, its address in the source
 * vmaps and in its namespace's member sets, and its bridge-port binding.
 * Returns -EINVAL with *err set when the facts are malformed. The caller
 * frees *ret.
 */
int stk_nft_render(const struct stk_boundary *b, const struct stk_nft_facts *f, char **ret,
                   struct stk_error **err);
/* stk_nft_render's two parts: the shared objects (tables, maps, base
 * chains and their rules: the same for every sandbox of one network
 * configuration), and the sandbox's own (its member sets, chains, rules
 * and elements, with the comment line first). */
int stk_nft_render_base(const struct stk_nft_facts *f, char **ret, struct stk_error **err);
int stk_nft_render_own(const struct stk_boundary *b, const struct stk_nft_facts *f, char **ret,
                       struct stk_error **err);
/* The transaction that removes everything stk_nft_render added for the
 * sandbox (the base chains stay). */
int stk_nft_render_remove(const struct stk_nft_facts *f, char **ret, struct stk_error **err);

/* The log prefix of the sandbox's final deny rule, "stk:<id>:", and of its
 * host-input deny rule, "stk:<id>:host:". */
#define STK_NFT_LOG_PREFIX "stk:"
/* the tag of a denial the host's offhost rule made: "stk:<id>:offhost:"
 * (the model allowed it; without data.local.nat or routed it stays here) */
#define STK_NFT_OFFHOST "offhost"

/* ==== OCI runtime bundle (runtime-spec 1.0.x config.json) ================ */

/* The sandbox user. 65534 is "nobody"/"nogroup" on Debian: it owns nothing
 * on the host, so a file the sandbox could reach by accident is never its. */
#define STK_OCI_UID 65534
#define STK_OCI_GID 65534

/* Hard limits on what a rendered bundle may hold. */
#define STK_OCI_MAX_HOST_DIRS 16
#define STK_OCI_MAX_ENV       256
#define STK_OCI_MAX_ARGV      4096

struct stk_oci_bind {
    const char *src, *dst;
};
#define STK_OCI_MAX_CGROUP_BINDS 8

/* An image's config as the driver found it in the store (spec.image): the
 * root is root_path; the user is already resolved and under the policy. */
struct stk_oci_image {
    const char *digest;
    const char *const *entrypoint;
    size_t n_entrypoint;
    const char *const *cmd;
    size_t n_cmd;
    const char *const *env; /* "K=V" */
    size_t n_env;
    const char *workdir; /* NULL or "": unset */
    uint32_t uid, gid;
};

/* The process's argv under an image: spec.command replaces the image's
 * Entrypoint (and its Cmd), spec.args alone replace its Cmd (Kubernetes'
 * rule). Without an image, the boundary's argv. *ret is malloc'd (the
 * strings are borrowed), NULL-terminated. */
int stk_oci_argv(const struct stk_boundary *b, const struct stk_oci_image *img, const char ***ret,
                 size_t *ret_n, struct stk_error **err);

/* What the driver decides and the boundary does not say: host paths. */
struct stk_oci_options {
    const char *root_path; /* config root.path (the bundle's empty "rootfs" or the spec's DIR) */
    const char *workspace; /* host directory bound read-write at /workspace */
    const char *etc_dir;   /* rootfs host: the generated /etc, bound read-only */
    /* rootfs host: host directories bound read-only at the same path; the
     * driver lists those that exist (/usr, /bin, /sbin, /lib, /lib64, ...). */
    const char *const *host_dirs;
    size_t n_host_dirs;
    const char *cgroups_path; /* linux.cgroupsPath, owned by the driver */
    /* the sandbox's network namespace, prepared by the driver (veth, egress
     * rules); NULL: a new, empty one (loopback only) */
    const char *netns_path;
    /* where the egress proxy is, "http://HOST:PORT" (HTTP_PROXY and the
     * like, when the boundary needs the proxy); NULL: the sandbox's own
     * loopback, http://127.0.0.1:STK_PROXY_PORT */
    const char *proxy_url;
    /* extra environment ("K=V"), after the boundary's; may be NULL */
    const char *const *extra_env;
    size_t n_extra_env;
    /* A long-lived sandbox: this host directory (stockade-init and
     * stockade-probe, nothing else) is bound read-only at STK_OCI_INIT_DIR
     * and the process is stockade-init, which starts the workload when asked
     * (the command may then be empty: a warm pool member). NULL: the
     * process is the workload itself. */
    const char *init_dir;
    /* With init_dir, under a runtime that cannot hand stockade-init a
     * listening socket (gVisor): this host directory is bound read-write at
     * STK_OCI_INIT_SOCK_DIR and init binds its own socket there
     * (STK_OCI_INIT_SOCK), which the driver takes out of the sandbox's
     * reach before anything else runs in it. NULL: init inherits fd 3. */
    const char *init_sock_dir;
    /* the hostname; NULL: the boundary's name */
    const char *hostname;
    /* gVisor: its /sys/fs/cgroup is its own, read-only emulation, and it
     * refuses the remount entry that makes runc's and crun's read-only */
    bool no_cgroup_remount;
    /* gVisor: its seccomp answers every refusal with EPERM (errnoRet is not
     * honoured), and glibc's pthread_create falls back from clone3 to clone
     * only on ENOSYS; a clone3 rule would break every thread. clone3 then
     * reaches gVisor's own kernel, whose namespaces the host never sees. */
    bool no_clone3_rule;
    /* runc in a user namespace sets process.rlimits with prlimit(2) from
     * the host side, which needs CAP_SYS_RESOURCE over the sandbox's user
     * namespace (root may lack it: it does on the development VMs). Then
     * config.json names none and the driver sets stk_oci_rlimits on the
     * runtime process itself, whose container inherits them. */
    bool rlimits_inherited;
    /* spec.storage.home: the host directory bound read-write at
     * STK_HOME_PATH, which is then $HOME; NULL: no home (HOME=/workspace) */
    const char *home;
    /* A user namespace of the sandbox's own: ids 0..id_size-1 inside are
     * host ids id_base.. (the sandbox user is id_base + STK_OCI_UID). The
     * one place the mapping is rendered; the driver allocates the range.
     * id_size 0: no user namespace (host ids, as gVisor's own kernel has). */
    uint32_t id_base, id_size;
    /* the user namespace to join (its nsfs file), already mapped as above;
     * NULL: the runtime makes one */
    const char *userns_path;
    /* With a user namespace the runtime cannot mount a cgroup v1
     * filesystem (nor sysfs for a network namespace it does not own): it
     * would bind the host's whole hierarchies instead. These read-only
     * binds of the sandbox's own cgroup directories are its
     * /sys/fs/cgroup (dst "/sys/fs/cgroup" alone on a v2 host; one per
     * controller on v1, over cgroup_skeleton: a host directory holding
     * only their mount points, bound read-only at /sys/fs/cgroup). /sys is
     * then a read-only rbind of the host's sysfs (a plain bind is refused:
     * what is mounted under it is locked), its /sys/fs/cgroup covered. */
    const struct stk_oci_bind *cgroup_binds;
    size_t n_cgroup_binds;
    const char *cgroup_skeleton;
    /* spec.image: its config (root_path is its unpacked root); NULL:
     * rootfs host or a directory */
    const struct stk_oci_image *image;
};

#define STK_OCI_INIT_DIR  "/.stockade"
#define STK_OCI_INIT_PATH STK_OCI_INIT_DIR "/stockade-init"
/* the mount point (an empty directory of the init directory) and the name
 * init binds, for init_sock_dir */
#define STK_OCI_INIT_SOCK_DIR  STK_OCI_INIT_DIR "/sock"
#define STK_OCI_INIT_SOCK_NAME "init.sock"
#define STK_OCI_INIT_SOCK      STK_OCI_INIT_SOCK_DIR "/" STK_OCI_INIT_SOCK_NAME

/* The process rlimits every sandbox gets (resource: RLIMIT_* of
 * sys/resource.h); config.json names them, or with rlimits_inherited the
 * driver sets them on the runtime process. */
struct stk_oci_rlimit {
    const char *type; /* "RLIMIT_NOFILE" */
    int resource;
    uint64_t hard, soft;
};
#define STK_OCI_RLIMITS 2
extern const struct stk_oci_rlimit stk_oci_rlimits[STK_OCI_RLIMITS];

/* Renders config.json text (2-space indented, fixed key order, trailing
 * newline). The caller frees *ret. */
int stk_oci_render(const struct stk_boundary *b, const struct stk_oci_options *o, char **ret,
                   struct stk_error **err);

/* The minimal /etc of a `rootfs: host` sandbox: the sandbox user, hosts,
 * nsswitch; nothing from the host's /etc and no secrets. The same for every
 * sandbox, so the driver may share one copy. */
struct stk_oci_file {
    const char *name; /* relative to etc_dir */
    char *content;
};
#define STK_OCI_ETC_FILES 5
void stk_oci_etc_render(const struct stk_boundary *b, struct stk_oci_file ret[STK_OCI_ETC_FILES]);
void stk_oci_etc_free(struct stk_oci_file files[STK_OCI_ETC_FILES]);

/* The syscalls the default seccomp profile refuses with EPERM (for docs and
 * tests). NULL-terminated. */
extern const char *const stk_oci_denied_syscalls[];
/* socket(2) families the default profile refuses (EAFNOSUPPORT); ends with
 * {NULL, 0} */
struct stk_oci_family {
    const char *name;
    int family;
};
extern const struct stk_oci_family stk_oci_denied_families[];

#endif
