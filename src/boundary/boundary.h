/* SPDX-License-Identifier: Apache-2.0 */
/*
 * boundary — the single source of truth about what a sandbox may do.
 *
 * resolve: Sandbox + EnvironmentConfig -> boundary (defaults chain spec ->
 * environment -> hard defaults, cross-field rules, provenance of every
 * value). explain, assess, the renderers, the drivers and audit read the
 * boundary; none of them re-reads the spec, and none may widen it.
 */
#ifndef STK_BOUNDARY_H
#define STK_BOUNDARY_H

#include "spec/spec.h"

/* ---- provenance ---------------------------------------------------------- */

enum stk_source {
    STK_SRC_DEFAULT,     /* stockade's hard default */
    STK_SRC_ENVIRONMENT, /* the operator's EnvironmentConfig */
    STK_SRC_SPEC,        /* the Sandbox document */
    STK_SRC_FLAG,        /* a command-line flag overriding the spec */
    _STK_SRC_N
};
extern const char *const stk_source_names[_STK_SRC_N];

struct stk_origin {
    enum stk_source source;
    const char *file; /* NULL for defaults and flags */
    struct stk_pos pos;
    const char *path; /* field path in that source; the spec path for defaults */
};

/* One resolved value, as text, with where it came from. */
struct stk_setting {
    const char *path; /* spec path: "spec.security.policy" */
    const char *value;
    struct stk_origin origin;
};

/* ---- egress model (Kubernetes NetworkPolicy semantics) -------------------- */

enum stk_peer_kind {
    STK_PEER_SAME_NAMESPACE, /* podSelector: {} — every pod of the sandbox's namespace */
    STK_PEER_NAMESPACE,      /* another namespace, optionally narrowed by a pod selector */
    STK_PEER_CLUSTER_DNS,    /* the cluster resolver: namespace kube-system */
    STK_PEER_IPBLOCK,        /* cidr minus except */
};

struct stk_eport {
    enum stk_protocol protocol;
    uint16_t port;     /* 0 = every port */
    uint16_t end_port; /* 0 = just port */
};

struct stk_erule {
    enum stk_peer_kind peer;
    struct stk_cidr cidr;
    struct stk_cidr *except;
    size_t n_except;
    const char *namespace;                         /* STK_PEER_NAMESPACE */
    const struct stk_label_selector *pod_selector; /* may be NULL */
    struct stk_eport *ports;                       /* none = every port and protocol */
    size_t n_ports;
    struct stk_origin origin;
};

struct stk_epolicy {
    enum stk_netpol id;
    struct stk_erule *rules; /* none for deny-egress */
    size_t n_rules;
    struct stk_origin origin; /* what caused the policy */
};

struct stk_egress {
    struct stk_epolicy *policies; /* in stk_netpol order, excluded ones left out */
    size_t n;
    bool excluded[_STK_NETPOL_N];
    struct stk_origin exclude_origin;
};

/* ---- ingress --------------------------------------------------------------- */

struct stk_boundary;

struct stk_ingress_port {
    uint16_t port;
    const char *name; /* spec.ports[].name, else "p<port>" */
    struct stk_origin origin;
};

/* The ingress rules, as explain, netpol trace, the nft chains and the
 * Kubernetes NetworkPolicy name them (docs/egress.md, "Ingress"). */
#define STK_INGRESS_SANDBOX  "allow-sandbox-ingress"  /* from sandboxes, as their egress allows */
#define STK_INGRESS_DECLARED "allow-declared-ingress" /* to a port of spec.ports */
#define STK_INGRESS_DENY     "deny-ingress"           /* everything else */

struct stk_ingress_verdict {
    bool allowed;
    const char *rule;                    /* one of STK_INGRESS_* */
    const struct stk_ingress_port *port; /* allow-declared-ingress: the declared port */
};

/* Decides one inbound connection to the sandbox: from another sandbox
 * (from_sandbox: its own egress rules decide), or from anything else (the
 * host's port-forward and the gateway, a pod that is not a sandbox, a
 * Service's client), to port/protocol. -EINVAL for injection (the
 * workload's own policies). */
int stk_ingress_decide(const struct stk_boundary *b, bool from_sandbox, uint16_t port,
                       enum stk_protocol protocol, struct stk_ingress_verdict *ret);
/* The declared port (NULL: none). */
const struct stk_ingress_port *stk_ingress_port(const struct stk_boundary *b, uint16_t port);

/* ---- egress decisions (one evaluator for trace, sim and tests) ------------ */

struct stk_boundary;

/* A destination as NetworkPolicy sees it: an address and/or a pod in a
 * namespace, a port and a protocol. */
struct stk_dest {
    bool has_addr;
    struct stk_cidr addr;        /* a full-length prefix */
    const char *namespace;       /* the destination pod's namespace; NULL = not a pod */
    const struct stk_kv *labels; /* the destination pod's labels */
    size_t n_labels;
    uint16_t port; /* 0 = unspecified */
    enum stk_protocol protocol;
};

struct stk_verdict {
    bool allowed;
    bool isolated;          /* false: no policy selects the sandbox, everything is allowed */
    enum stk_netpol policy; /* the allowing policy; when denied, the deny policy */
    size_t rule;            /* index of the allowing rule in that policy */
    /* when denied: the policy/rule whose CIDR held the address but excepted it */
    bool excepted;
    enum stk_netpol except_policy;
    size_t except_rule;
    struct stk_cidr except_cidr;
};

/* Decides one destination against b's egress model. Returns -EINVAL when
 * the model does not apply (injection: the workload's own policies govern
 * its traffic). */
/* A host name (lowercase) and TCP port through the egress proxy: the index
 * of the first spec.network.allowHosts entry that names it, or -1 (the
 * proxy refuses it). The proxy also refuses the name when it resolves only
 * to refused addresses, which no trace can know in advance. */
long stk_egress_host_rule(const struct stk_boundary *b, const char *name, uint16_t port);
int stk_egress_decide(const struct stk_boundary *b, const struct stk_dest *d,
                      struct stk_verdict *ret);

/* What the local backend enforces beyond the model (src/render/nft.c): the
 * host's own addresses are dropped (but for the services stockade offers on
 * the bridge address, and the cluster DNS rule, which comes first), and
 * without data.local.nat or routed nothing leaves the host. */
struct stk_local_facts {
    const struct stk_cidr *host_addrs; /* the host's own addresses, full length */
    size_t n_host_addrs;
    struct stk_cidr pool4, pool6; /* the sandboxes' address pool */
    bool nat, routed;
};

enum stk_local_path {
    STK_LOCAL_AS_MODELLED,     /* the model's verdict is what a connection observes */
    STK_LOCAL_LOOPBACK,        /* allowed: the sandbox's own loopback */
    STK_LOCAL_HOST_DROPPED,    /* denied: the host's own, broadcast or multicast address */
    STK_LOCAL_OFFHOST_DROPPED, /* denied: leaves the host without nat or routed */
    _STK_LOCAL_PATH_N
};
extern const char *const stk_local_path_reasons[_STK_LOCAL_PATH_N];

/* The local backend's word on a destination the model decided as v. Pure. */
enum stk_local_path stk_egress_local(const struct stk_local_facts *f, const struct stk_dest *d,
                                     const struct stk_verdict *v);

/* "0.0.0.0/0 except 169.254.169.254/32, all ports", "namespace db, pods
 * with app=pg, TCP 5432", ... */
void stk_erule_describe(const struct stk_boundary *b, const struct stk_erule *r,
                        struct stk_buf *out);

/* ---- the boundary ----------------------------------------------------------- */

struct stk_resolved_limits {
    int64_t cpu_milli;
    int64_t memory;
    int64_t pids;
    int64_t wall_clock_ms; /* 0 = no deadline */
    int64_t cpu_time_ms;   /* 0 = no budget */
    int64_t storage;
};

/* Where spec.storage.home is mounted and what $HOME then is, on every
 * backend (the Kubernetes pod, the local sandbox, verify's probe). */
#define STK_HOME_PATH "/home/sandbox"

struct stk_boundary {
    struct stk_arena *arena;
    const char *spec_file;
    const char *env_file; /* NULL when resolved against hard defaults only */
    const char *env_name;

    /* identity */
    const char *name;
    const char *namespace;
    struct stk_origin namespace_origin;
    const struct stk_map *labels;
    const struct stk_map *annotations;

    /* privilege and API access */
    enum stk_policy policy;
    struct stk_origin policy_origin;
    bool kube_access;
    struct stk_origin kube_access_origin;
    enum stk_role kube_role;
    struct stk_origin kube_role_origin;
    const char **caps; /* added capabilities, validated against the policy */
    size_t n_caps;
    struct stk_origin caps_origin;
    bool registry, docker, vcluster;
    struct stk_origin registry_origin, docker_origin, vcluster_origin;

    /* placement */
    enum stk_runtime runtime;
    struct stk_origin runtime_origin;
    enum stk_model model;
    struct stk_origin model_origin;
    const struct stk_target *target; /* injection only */

    /* the process */
    const char *image;  /* NULL when unset */
    const char *rootfs; /* "host" or a directory */
    struct stk_origin rootfs_origin;
    const char **argv; /* command + args, NULL-terminated; empty when unset */
    size_t argc;
    size_t n_command; /* how many of argv are spec.command (the rest: args) */
    const struct stk_env_var *env;
    size_t n_env;
    const struct stk_env_from *env_from;
    size_t n_env_from;
    const char *working_dir;
    bool working_dir_default; /* the hard default, not said by anyone */

    /* quotas */
    struct stk_resolved_limits limits;
    struct stk_origin cpu_origin, memory_origin, pids_origin, wall_clock_origin, cpu_time_origin,
        storage_origin;

    /* storage */
    bool home;
    int64_t home_size;
    bool home_persist;
    const char *home_storage_class;
    struct stk_origin home_origin;

    /* network */
    bool external_egress;
    struct stk_origin external_egress_origin;
    struct stk_egress egress;
    const struct stk_cidr *blacklist; /* effective blacklistIPs */
    size_t n_blacklist;
    struct stk_origin blacklist_origin;

    /* host names reached through the egress proxy (spec.network.allowHosts),
     * and the networks the proxy never connects to whatever a name resolves
     * to: blacklistIPs, the pod CIDRs and the service CIDR */
#define STK_PROXY_PORT 3128 /* the proxy's port on the sandbox's own loopback */
/* under gVisor: the first of the host-side proxies' ports on the bridge
 * address (the sandbox with address index i gets base + i) */
#define STK_PROXY_HOST_PORT_BASE 23128
/* a binding is reached at http://<name>.bindings.stockade.internal/ */
#define STK_BINDING_DOMAIN_TEXT ".bindings.stockade.internal"
    const struct stk_allow_host *allow_hosts;
    size_t n_allow_hosts;
    struct stk_origin allow_hosts_origin;
    const struct stk_cidr *proxy_deny;
    size_t n_proxy_deny;
    /* ingress: the TCP ports the sandbox admits connections on (spec.ports) */
    const struct stk_ingress_port *ports;
    size_t n_ports;
    struct stk_origin ports_origin;

    /* credentials brokered by the egress proxy */
    const struct stk_binding *bindings;
    size_t n_bindings;

    /* backend-specific settings, forwarded untouched */
    const struct stk_kube_config *kube;
    const struct stk_sim_config *sim; /* the simulator's hints (docs/sim.md) */
    int64_t tmp_size, shm_size;       /* local tmpfs sizes */
    /* the dotted keys the spec sets under spec.driverConfig ("local.tmpSize"),
     * leaves only: what an AccessPolicy's driverConfigKeys scope is checked
     * against (the gateway never re-reads the spec) */
    const char **driver_config_keys;
    size_t n_driver_config_keys;

    /* operator retention (0 / false = not stated) */
    bool home_backup;
    int64_t home_backup_days;
    int64_t deleted_home_days;
    int64_t audit_days;
    struct stk_origin retention_origin;

    /* every defaultable value with its provenance, in table order */
    struct stk_setting *settings;
    size_t n_settings;
};

/* The hard-default blacklist: cloud metadata endpoints (AWS/GCP/Azure IPv4,
 * AWS IPv6, Scaleway IPv4/IPv6). */
extern const char *const stk_default_blacklist[];
extern const size_t stk_default_blacklist_n;

/*
 * Resolves a Sandbox against an EnvironmentConfig (NULL: hard defaults only).
 * Problems are reported to diags (errors and warnings); on any error returns
 * negative and *ret is untouched. The boundary borrows strings and lists from
 * sb and env: keep their docsets alive while the boundary is in use.
 */
int stk_resolve(const struct stk_sandbox *sb, const char *sb_file, const struct stk_envconfig *env,
                const char *env_file, struct stk_diags *diags, struct stk_boundary **ret);
/* Checks an EnvironmentConfig on its own (defaults within limits, ...). */
int stk_envconfig_check(const struct stk_envconfig *env, const char *file, struct stk_diags *diags);
void stk_boundary_free(struct stk_boundary *b);
static inline void stk_boundary_freep(struct stk_boundary **b)
{
    stk_boundary_free(*b);
}
#define _cleanup_boundary_ _cleanup_(stk_boundary_freep)

/* Hard default of a field path as text, or NULL if it has none; what
 * docs/spec.md shows (computed by resolving an empty Sandbox). */
const char *stk_boundary_default_text(const char *path, void *unused);

const struct stk_setting *stk_boundary_setting(const struct stk_boundary *b, const char *path);

/* "spec (file:3:5)", "environment (env.yaml:8:7 data.defaults.security.policy)",
 * "default". */
void stk_origin_format(const struct stk_origin *o, char *buf, size_t n);

/* Capabilities allowed at a Pod Security Standards level. */
bool stk_policy_allows_capability(enum stk_policy policy, const char *cap);

/* ---- explain ------------------------------------------------------------------ */

enum stk_backend { STK_BACKEND_LOCAL, STK_BACKEND_KUBERNETES, STK_BACKEND_SIM, _STK_BACKEND_N };
extern const char *const stk_backend_names[_STK_BACKEND_N];

/* What the caller knows about the backend the sandbox would run on. */
struct stk_backend_facts {
    enum stk_backend backend;
    /* local: the runtime that would be used (NULL when none works) and why */
    const char *runtime;
    const char *runtime_note;
    bool runtime_is_gvisor;
    /* extra caveats the backend knows about (NULL-terminated, may be NULL) */
    const char *const *caveats;
    /* local, spec.image: the digest of the stored image it names (NULL: not
     * in the store), and what became of its user ("wants root: runs as the
     * sandbox user 65534"; NULL: its own user) */
    const char *image_digest;
    const char *image_user;
    /* spec.image: the ports its config declares (ExposedPorts, "8080/tcp,
     * 9090/udp"), which stockade never exposes; NULL: none or unknown */
    const char *image_ports;
    /* kubernetes, explain: how this cluster keeps warm pools (NULL: not
     * asked, or no cluster) */
    const char *warm_pools;
};

struct stk_contract;
int stk_explain(const struct stk_boundary *b, const struct stk_backend_facts *facts,
                struct stk_contract **ret);
void stk_contract_free(struct stk_contract *c);
static inline void stk_contract_freep(struct stk_contract **c)
{
    stk_contract_free(*c);
}
#define _cleanup_contract_ _cleanup_(stk_contract_freep)
void stk_contract_text(const struct stk_contract *c, struct stk_buf *out);
/* Returns a jansson json_t* (as void* to keep jansson out of this header). */
void *stk_contract_json(const struct stk_contract *c);

/* ---- assess ------------------------------------------------------------------- */

enum stk_finding_severity {
    STK_FINDING_INFO,
    STK_FINDING_LOW,
    STK_FINDING_MEDIUM,
    STK_FINDING_HIGH,
    STK_FINDING_CRITICAL,
    _STK_FINDING_N
};
extern const char *const stk_finding_severity_names[_STK_FINDING_N];

enum stk_trust { STK_TRUST_HARDENED, STK_TRUST_AUTOMATION, STK_TRUST_EXCEPTION, _STK_TRUST_N };
extern const char *const stk_trust_names[_STK_TRUST_N];

struct stk_finding {
    const char *id; /* stable identifier, e.g. "privileged" */
    enum stk_finding_severity severity;
    const char *reason;
    const char *path; /* the field responsible */
    struct stk_origin origin;
};

struct stk_assessment {
    struct stk_arena *arena;
    const char *name;
    enum stk_trust level;
    const char *summary;
    struct stk_finding *findings;
    size_t n;
};

int stk_assess(const struct stk_boundary *b, struct stk_assessment **ret);
void stk_assessment_free(struct stk_assessment *a);
static inline void stk_assessment_freep(struct stk_assessment **a)
{
    stk_assessment_free(*a);
}
#define _cleanup_assessment_ _cleanup_(stk_assessment_freep)
void stk_assessment_text(const struct stk_assessment *a, struct stk_buf *out);
void *stk_assessment_json(const struct stk_assessment *a);

#endif
