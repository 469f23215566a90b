/* SPDX-License-Identifier: Apache-2.0 */
/*
 * spec — parse and validate user input: Sandbox, EnvironmentConfig and
 * AccessPolicy documents in YAML or JSON. One field table (schema.c) drives parsing,
 * validation and the generated reference page docs/spec.md.
 *
 * Parsing is all-or-nothing: a file with any error yields no documents, and
 * every problem found (bounded) is reported as a diagnostic with file,
 * line:column and field path.
 */
#ifndef STK_SPEC_H
#define STK_SPEC_H

#include "base/base.h"

#define STK_API_VERSION "stockade.dev/v1alpha1"

/* Hard limits on input. Each has its own error message. */
#define STK_LIMIT_FILE_BYTES   (1024 * 1024)
#define STK_LIMIT_DEPTH        32
#define STK_LIMIT_NODES        65536
#define STK_LIMIT_DOCUMENTS    64
#define STK_LIMIT_SCALAR_BYTES (64 * 1024)
#define STK_LIMIT_DIAGS        64

/* ---- diagnostics ------------------------------------------------------- */

struct stk_pos {
    uint32_t line; /* 1-based; 0 = not from a file */
    uint32_t col;  /* 1-based */
};

enum stk_severity {
    STK_SEV_ERROR,
    STK_SEV_WARNING,
};

struct stk_diag {
    enum stk_severity sev;
    char *file;
    struct stk_pos pos;
    char *path; /* "spec.security.policy"; "" for the document itself */
    char *msg;
};

struct stk_diags {
    struct stk_diag *items;
    size_t n;
    size_t cap;
    size_t n_errors;
    size_t n_warnings;
    size_t dropped; /* beyond STK_LIMIT_DIAGS */
};

STK_PRINTF(6, 7)
void stk_diags_add(struct stk_diags *d, enum stk_severity sev, const char *file, struct stk_pos pos,
                   const char *path, const char *fmt, ...);
void stk_diags_free(struct stk_diags *d);
#define _cleanup_diags_ _cleanup_(stk_diags_free)
/* "file:line:col: error: path: message" */
char *stk_diag_format(const struct stk_diag *diag);

/* ---- typed values ------------------------------------------------------ */

/* Every object starts with this: whether it appeared, and where. */
struct stk_meta {
    struct stk_pos pos;
    bool set;
};

struct stk_str {
    struct stk_meta meta;
    const char *v;
};
struct stk_bool {
    struct stk_meta meta;
    bool v;
};
/* Integers, quantities (CPU in millicores, bytes) and durations (ms). */
struct stk_num {
    struct stk_meta meta;
    int64_t v;
};
struct stk_enumv {
    struct stk_meta meta;
    int v;
};
struct stk_cidrv {
    struct stk_meta meta;
    struct stk_cidr v;
};
struct stk_kv {
    struct stk_pos pos;
    const char *key;
    const char *value;
};
struct stk_map {
    struct stk_meta meta;
    struct stk_kv *items;
    uint32_t n;
};

/* A list of T. The decoder fills every list through the same layout. */
#define STK_LIST(T)                                                                                \
    struct {                                                                                       \
        struct stk_meta meta;                                                                      \
        T *items;                                                                                  \
        uint32_t n;                                                                                \
    }

/* ---- enums (each with a names table; value 0 is the first name) -------- */

enum stk_policy {
    STK_POLICY_RESTRICTED,
    STK_POLICY_BASELINE,
    STK_POLICY_PRIVILEGED,
    _STK_POLICY_N
};
extern const char *const stk_policy_names[_STK_POLICY_N];

enum stk_role { STK_ROLE_VIEW, STK_ROLE_EDIT, STK_ROLE_ADMIN, _STK_ROLE_N };
extern const char *const stk_role_names[_STK_ROLE_N];

enum stk_runtime {
    STK_RUNTIME_DEFAULT,
    STK_RUNTIME_GVISOR,
    STK_RUNTIME_CRUN,
    STK_RUNTIME_RUNC,
    _STK_RUNTIME_N
};
extern const char *const stk_runtime_names[_STK_RUNTIME_N];

enum stk_model { STK_MODEL_STANDALONE, STK_MODEL_INJECTION, _STK_MODEL_N };
extern const char *const stk_model_names[_STK_MODEL_N];

enum stk_workload_kind {
    STK_WORKLOAD_DEPLOYMENT,
    STK_WORKLOAD_STATEFULSET,
    STK_WORKLOAD_DAEMONSET,
    _STK_WORKLOAD_N
};
extern const char *const stk_workload_kind_names[_STK_WORKLOAD_N];

enum stk_protocol { STK_PROTO_TCP, STK_PROTO_UDP, STK_PROTO_SCTP, _STK_PROTO_N };
extern const char *const stk_protocol_names[_STK_PROTO_N];

enum stk_alloc_mode { STK_ALLOC_DIRECT, STK_ALLOC_WARMPOOL, _STK_ALLOC_N };
extern const char *const stk_alloc_mode_names[_STK_ALLOC_N];

enum stk_cred_source { STK_CRED_ENV, STK_CRED_FILE, STK_CRED_KUBERNETES_SECRET, _STK_CRED_N };
extern const char *const stk_cred_source_names[_STK_CRED_N];

enum stk_selector_op {
    STK_SEL_IN,
    STK_SEL_NOTIN,
    STK_SEL_EXISTS,
    STK_SEL_DOESNOTEXIST,
    _STK_SEL_N
};
extern const char *const stk_selector_op_names[_STK_SEL_N];

enum stk_toleration_op { STK_TOL_EQUAL, STK_TOL_EXISTS, _STK_TOL_N };
extern const char *const stk_toleration_op_names[_STK_TOL_N];
enum stk_pull_policy { STK_PULL_ALWAYS, STK_PULL_IF_NOT_PRESENT, STK_PULL_NEVER, _STK_PULL_N };
extern const char *const stk_pull_policy_names[_STK_PULL_N];

enum stk_taint_effect {
    STK_EFFECT_ALL, /* "" in Kubernetes: every effect */
    STK_EFFECT_NOSCHEDULE,
    STK_EFFECT_PREFERNOSCHEDULE,
    STK_EFFECT_NOEXECUTE,
    _STK_EFFECT_N
};
extern const char *const stk_taint_effect_names[_STK_EFFECT_N];

/* The generated NetworkPolicies, in rendering order (Datalab's names). */
enum stk_netpol {
    STK_NETPOL_DENY,
    STK_NETPOL_NAMESPACE,
    STK_NETPOL_DNS,
    STK_NETPOL_EXTERNAL,
    STK_NETPOL_INTERNAL,
    STK_NETPOL_ALLOWLIST,
    _STK_NETPOL_N
};
extern const char *const stk_netpol_names[_STK_NETPOL_N];

/* ---- Sandbox ------------------------------------------------------------ */

struct stk_metadata {
    struct stk_meta meta;
    struct stk_str name;
    struct stk_str namespace;
    struct stk_map labels;
    struct stk_map annotations;
};

struct stk_configmap_key_ref {
    struct stk_meta meta;
    struct stk_str name;
    struct stk_str key;
    struct stk_bool optional;
};

struct stk_env_source {
    struct stk_meta meta;
    struct stk_configmap_key_ref config_map_key_ref;
};

struct stk_env_var {
    struct stk_meta meta;
    struct stk_str name;
    struct stk_str value;
    struct stk_env_source value_from;
};

struct stk_configmap_ref {
    struct stk_meta meta;
    struct stk_str name;
    struct stk_bool optional;
};

struct stk_env_from {
    struct stk_meta meta;
    struct stk_str prefix;
    struct stk_configmap_ref config_map_ref;
};

struct stk_target {
    struct stk_meta meta;
    struct stk_enumv kind; /* enum stk_workload_kind */
    struct stk_str name;
    struct stk_str namespace;
    struct stk_str container;
};

struct stk_deployment {
    struct stk_meta meta;
    struct stk_enumv model; /* enum stk_model */
    struct stk_target target;
};

struct stk_capabilities {
    struct stk_meta meta;
    STK_LIST(struct stk_str) add;
};

struct stk_security {
    struct stk_meta meta;
    struct stk_enumv policy; /* enum stk_policy */
    struct stk_bool kubernetes_access;
    struct stk_enumv kubernetes_role; /* enum stk_role */
    struct stk_capabilities capabilities;
    struct stk_bool registry;
    struct stk_bool docker;
};

struct stk_port {
    struct stk_meta meta;
    struct stk_enumv protocol; /* enum stk_protocol */
    struct stk_num port;
    struct stk_num end_port;
};

struct stk_egress_rule {
    struct stk_meta meta;
    struct stk_cidrv cidr;
    STK_LIST(struct stk_cidrv) except;
    STK_LIST(struct stk_port) ports;
};

struct stk_selector_req {
    struct stk_meta meta;
    struct stk_str key;
    struct stk_enumv op; /* enum stk_selector_op */
    STK_LIST(struct stk_str) values;
};

struct stk_label_selector {
    struct stk_meta meta;
    struct stk_map match_labels;
    STK_LIST(struct stk_selector_req) match_expressions;
};

struct stk_internal_egress {
    struct stk_meta meta;
    struct stk_str namespace;
    struct stk_label_selector pod_selector;
    STK_LIST(struct stk_port) ports;
};

struct stk_network {
    struct stk_meta meta;
    struct stk_bool external_egress;
    STK_LIST(struct stk_egress_rule) egress;
    STK_LIST(struct stk_internal_egress) internal_egress;
    STK_LIST(struct stk_str) allow_hosts; /* stk_allow_host_parse */
};

struct stk_resources {
    struct stk_meta meta;
    struct stk_num cpu;        /* millicores */
    struct stk_num memory;     /* bytes */
    struct stk_num pids;       /* count */
    struct stk_num wall_clock; /* ms */
    struct stk_num cpu_time;   /* ms */
    struct stk_num storage;    /* bytes */
};

struct stk_home {
    struct stk_meta meta;
    struct stk_num size; /* bytes */
    struct stk_bool persist;
    struct stk_str storage_class_name;
};

struct stk_storage {
    struct stk_meta meta;
    struct stk_home home;
};

struct stk_credential {
    struct stk_meta meta;
    struct stk_enumv source; /* enum stk_cred_source */
    struct stk_str ref;
    struct stk_str key;
};

struct stk_inject {
    struct stk_meta meta;
    struct stk_str header;
    struct stk_str format;
};

struct stk_binding {
    struct stk_meta meta;
    struct stk_str name;
    struct stk_str url;
    struct stk_credential credential;
    struct stk_inject inject;
};

struct stk_toleration {
    struct stk_meta meta;
    struct stk_str key;
    struct stk_enumv op; /* enum stk_toleration_op */
    struct stk_str value;
    struct stk_enumv effect; /* enum stk_taint_effect */
    struct stk_num toleration_seconds;
};

struct stk_allocation {
    struct stk_meta meta;
    struct stk_enumv mode; /* enum stk_alloc_mode */
    struct stk_str warm_pool;
};

struct stk_kube_config {
    struct stk_meta meta;
    struct stk_str namespace;
    struct stk_str runtime_class_name;
    struct stk_str service_account_name;
    struct stk_str priority_class_name;
    struct stk_enumv image_pull_policy;          /* enum stk_pull_policy */
    STK_LIST(struct stk_str) image_pull_secrets; /* names of Secrets, never their content */
    struct stk_map node_selector;
    STK_LIST(struct stk_toleration) tolerations;
    struct stk_allocation allocation;
    struct stk_str proxy_image; /* the egress proxy's Pod */
};

struct stk_local_config {
    struct stk_meta meta;
    struct stk_num tmp_size; /* bytes */
    struct stk_num shm_size; /* bytes */
};

/* The simulator's hints: the workload's declared behaviour, which the sim
 * backend models instead of running anything (docs/sim.md). */
#define STK_SIM_MAX_CONNECTS 64
#define STK_SIM_MAX_OUTPUT   4096
struct stk_sim_config {
    struct stk_meta meta;
    struct stk_num run_for;     /* ms; unset: until stopped */
    struct stk_num exit_code;   /* 0..255 */
    struct stk_num memory_peak; /* bytes */
    struct stk_num pids;
    struct stk_num cpu_time;           /* ms, used over run_for */
    STK_LIST(struct stk_str) connects; /* numeric endpoints (stk_endpoint_parse) */
    struct stk_str output;
};

struct stk_driver_config {
    struct stk_meta meta;
    struct stk_kube_config kubernetes;
    struct stk_local_config local;
    struct stk_sim_config sim;
};

/* A port the sandbox listens on, reachable from the host's forwarder (the
 * local backend) or through a Service (Kubernetes): ingress, TCP. */
struct stk_container_port {
    struct stk_meta meta;
    struct stk_num port;
    struct stk_str name; /* unset: "p<port>" */
};
#define STK_LIMIT_PORTS 16

struct stk_sandbox_spec {
    struct stk_meta meta;
    struct stk_str image;
    struct stk_str rootfs; /* "host" or an absolute directory */
    STK_LIST(struct stk_str) command;
    STK_LIST(struct stk_str) args;
    STK_LIST(struct stk_env_var) env;
    STK_LIST(struct stk_env_from) env_from;
    struct stk_str working_dir;
    struct stk_deployment deployment;
    struct stk_enumv runtime; /* enum stk_runtime */
    struct stk_security security;
    struct stk_network network;
    STK_LIST(struct stk_container_port) ports;
    struct stk_resources resources;
    struct stk_storage storage;
    STK_LIST(struct stk_binding) bindings;
    struct stk_bool vcluster;
    struct stk_driver_config driver_config;
};

struct stk_sandbox {
    struct stk_meta meta;
    struct stk_str api_version;
    struct stk_str kind;
    struct stk_metadata metadata;
    struct stk_sandbox_spec spec;
};

/* ---- EnvironmentConfig --------------------------------------------------- */

struct stk_security_defaults {
    struct stk_meta meta;
    struct stk_enumv policy;
    struct stk_bool kubernetes_access;
    struct stk_enumv kubernetes_role;
    struct stk_bool external_egress;
};

struct stk_env_defaults {
    struct stk_meta meta;
    struct stk_security_defaults security;
    struct stk_resources resources;
    struct stk_enumv runtime;
};

struct stk_env_limits {
    struct stk_meta meta;
    struct stk_resources resources;
};

struct stk_env_network {
    struct stk_meta meta;
    STK_LIST(struct stk_cidrv) external_egress_cidrs;
    STK_LIST(struct stk_cidrv) blacklist_ips;
    STK_LIST(struct stk_cidrv) pod_cidrs;
    struct stk_cidrv service_cidr;
    STK_LIST(struct stk_internal_egress) internal_egress;
    STK_LIST(struct stk_enumv) exclude_policies; /* enum stk_netpol */
};

struct stk_retention {
    struct stk_meta meta;
    struct stk_bool home_backup;
    struct stk_num home_backup_days;
    struct stk_num deleted_home_days;
    struct stk_num audit_days;
};

/* The local backend's network (src/driver/local/net.c). */
struct stk_env_local {
    struct stk_meta meta;
    STK_LIST(struct stk_cidrv) address_pool; /* at most one network per family */
    struct stk_cidrv resolver;               /* one address, as /32 or /128 */
    struct stk_bool nat;                     /* masquerade sandboxes to the uplink */
    struct stk_bool routed;       /* the operator routes the pool itself: forward without NAT */
    struct stk_num max_sandboxes; /* sandboxes one state directory holds at once */
};
/* The hard maximum of data.local.maxSandboxes: what one state directory
 * holds (the host's id ranges and the default pool's addresses, 4096 of
 * each, are shared by every state directory). */
#define STK_LIMIT_LOCAL_SANDBOXES 1024

struct stk_env_data {
    struct stk_meta meta;
    struct stk_env_defaults defaults;
    struct stk_env_limits limits;
    struct stk_env_network network;
    struct stk_env_local local;
    struct stk_retention retention;
};

struct stk_envconfig {
    struct stk_meta meta;
    struct stk_str api_version;
    struct stk_str kind;
    struct stk_metadata metadata;
    struct stk_env_data data;
};

/* ---- AccessPolicy (the gateway: who may do what; docs/gateway.md) ------- */

enum stk_jwt_alg { STK_JWT_RS256, STK_JWT_ES256, _STK_JWT_N };
extern const char *const stk_jwt_alg_names[_STK_JWT_N];

enum stk_identity_kind { STK_IDENTITY_PLATFORM_CONTROLLER, STK_IDENTITY_END_USER, _STK_IDENTITY_N };
extern const char *const stk_identity_kind_names[_STK_IDENTITY_N];

/* The verbs a grant lists. Same order and spelling as the gateway's enum
 * stk_verb (src/gateway/gateway.h); the spec module cannot include it, so a
 * unit test holds the two tables together. */
#define STK_ACCESS_VERBS 12
extern const char *const stk_access_verb_names[STK_ACCESS_VERBS];

/* How a sandbox is obtained: created from nothing, or claimed from a warm pool. */
enum stk_allocation_kind { STK_ALLOCATION_COLD, STK_ALLOCATION_WARM, _STK_ALLOCATION_N };
extern const char *const stk_allocation_kind_names[_STK_ALLOCATION_N];

/* Limits of an AccessPolicy (each list also has its own line in schema.c). */
#define STK_LIMIT_AP_TOKENS     256
#define STK_LIMIT_AP_ISSUERS    32
#define STK_LIMIT_AP_IDENTITIES 1024
#define STK_LIMIT_AP_GRANTS     1024
#define STK_LIMIT_AP_PATTERNS   64

struct stk_access_token {
    struct stk_meta meta;
    struct stk_str id;
    struct stk_str sha256; /* 64 lowercase hex digits: the token itself is never stored */
};

struct stk_access_oidc {
    struct stk_meta meta;
    struct stk_str issuer;
    struct stk_str audience;
    struct stk_str jwks_file; /* exactly one of jwks_file and jwks_url */
    struct stk_str jwks_url;
    STK_LIST(struct stk_enumv) algorithms; /* enum stk_jwt_alg; unset = all */
    struct stk_num clock_skew;             /* ms; unset = 60s */
};

struct stk_access_client_certs {
    struct stk_meta meta;
    struct stk_str ca_file;
};

struct stk_access_authn {
    struct stk_meta meta;
    STK_LIST(struct stk_access_token) tokens;
    STK_LIST(struct stk_access_oidc) oidc;
    struct stk_access_client_certs client_certificates;
};

/* Exactly one form: token | issuer+subject | issuer+claims | certificateSubject
 * (checked after decoding, src/spec/access.c). */
struct stk_access_match {
    struct stk_meta meta;
    struct stk_str token;
    struct stk_str issuer;
    struct stk_str subject;
    struct stk_map claims;
    struct stk_str certificate_subject;
};

struct stk_access_identity {
    struct stk_meta meta;
    struct stk_str name;
    struct stk_enumv kind; /* enum stk_identity_kind */
    struct stk_access_match match;
    struct stk_str tenant;
    struct stk_str project;
};

/* Every field optional; an unset field has the strictest meaning documented
 * in schema.c (and docs/gateway.md). */
struct stk_access_scope {
    struct stk_meta meta;
    struct stk_bool owned;
    STK_LIST(struct stk_str) namespaces;         /* fnmatch patterns */
    STK_LIST(struct stk_str) tenants;            /* fnmatch patterns */
    STK_LIST(struct stk_str) projects;           /* fnmatch patterns */
    struct stk_enumv max_policy;                 /* enum stk_policy */
    STK_LIST(struct stk_enumv) runtimes;         /* enum stk_runtime */
    STK_LIST(struct stk_str) driver_config_keys; /* "local.tmpSize", "kubernetes" */
    STK_LIST(struct stk_str) credential_refs;    /* fnmatch patterns */
    STK_LIST(struct stk_str) service_accounts;   /* fnmatch patterns */
    STK_LIST(struct stk_enumv) allocation;       /* enum stk_allocation_kind */
    struct stk_bool on_behalf_of;
};

struct stk_access_grant {
    struct stk_meta meta;
    STK_LIST(struct stk_str) identities;
    STK_LIST(struct stk_enumv) verbs; /* index into stk_access_verb_names */
    struct stk_access_scope scope;
};

/* Namespaces the operator assigns to a tenant. */
struct stk_access_tenant {
    struct stk_meta meta;
    struct stk_str name;
    STK_LIST(struct stk_str) namespaces; /* fnmatch patterns */
};

struct stk_access_spec {
    struct stk_meta meta;
    struct stk_access_authn authentication;
    STK_LIST(struct stk_access_tenant) tenants;
    STK_LIST(struct stk_access_identity) identities;
    STK_LIST(struct stk_access_grant) grants;
};

struct stk_access_policy {
    struct stk_meta meta;
    struct stk_str api_version;
    struct stk_str kind;
    struct stk_metadata metadata;
    struct stk_access_spec spec;
};

/* The dotted keys a Sandbox sets under spec.driverConfig, leaves only
 * ("kubernetes.nodeSelector", "local.tmpSize"), in table order; what an
 * AccessPolicy's driverConfigKeys scope is checked against. Returns the
 * count; the array and its strings live in a. */
size_t stk_driver_config_keys(const struct stk_driver_config *dc, struct stk_arena *a,
                              const char ***ret);
/* Whether key names a field under spec.driverConfig, a leaf or a section
 * ("kubernetes", "kubernetes.allocation"). */
bool stk_driver_config_key_known(const char *key);

/* A numeric destination: ADDR:PORT, [V6ADDR]:PORT, optionally /tcp, /udp or
 * /sctp (TCP when omitted). Host names are not destinations: NetworkPolicy
 * is IP-only. On failure returns false with *ret_why (static text). */
struct stk_endpoint {
    struct stk_cidr addr; /* full-length prefix */
    uint16_t port;        /* 1..65535 */
    enum stk_protocol protocol;
};
bool stk_endpoint_parse(const char *s, struct stk_endpoint *ret, const char **ret_why);

/* spec.network.allowHosts entries: an exact host name or "*." and a
 * suffix (any name below it, never the suffix itself), with a port (443
 * when omitted). The egress proxy allows CONNECT and plain HTTP only to a
 * matching name (src/proxy). */
#define STK_ALLOW_HOST_MAX    260
#define STK_LIMIT_ALLOW_HOSTS 64
struct stk_allow_host {
    char name[254];
    bool wildcard;
    uint16_t port;
};
bool stk_allow_host_parse(const char *s, struct stk_allow_host *ret, const char **ret_why);
/* name must be lowercase (the proxy lowercases what it was sent). */
bool stk_allow_host_match(const struct stk_allow_host *h, const char *name, uint16_t port);

/* ---- documents ------------------------------------------------------------ */

enum stk_kind { STK_KIND_SANDBOX, STK_KIND_ENVCONFIG, STK_KIND_ACCESS_POLICY, _STK_KIND_N };
extern const char *const stk_kind_names[_STK_KIND_N];

struct stk_doc {
    enum stk_kind kind;
    struct stk_pos pos;
    union {
        struct stk_sandbox *sandbox;
        struct stk_envconfig *env;
        struct stk_access_policy *access;
    };
};

/* Everything parsed from one file; documents borrow from its arena. */
struct stk_docset {
    struct stk_arena *arena;
    char *file;
    struct stk_doc *docs;
    size_t n;
};

/* On any error: returns negative, *ret untouched, problems in *diags.
 * `name` is what diagnostics call the input. */
int stk_docset_parse(const char *name, const char *data, size_t len, struct stk_diags *diags,
                     struct stk_docset **ret);
/* Reads the file, bounded by STK_LIMIT_FILE_BYTES ("-" is standard input);
 * problems go to diags. The caller frees *ret. */
int stk_docset_read(const char *path, struct stk_diags *diags, char **ret, size_t *ret_len);
/* Reads the file (bounded by STK_LIMIT_FILE_BYTES) and parses it. "-" is
 * standard input. */
int stk_docset_load(const char *path, struct stk_diags *diags, struct stk_docset **ret);
void stk_docset_free(struct stk_docset *ds);
static inline void stk_docset_freep(struct stk_docset **ds)
{
    stk_docset_free(*ds);
}
#define _cleanup_docset_ _cleanup_(stk_docset_freep)

/* Counts documents of a kind; returns the first one (or NULL). */
const struct stk_doc *stk_docset_find(const struct stk_docset *ds, enum stk_kind kind,
                                      size_t *ret_count);

/* ---- value syntaxes (exported for the CLI's flags and for tests) --------- */

enum stk_qty_unit {
    STK_QTY_MILLI, /* CPU: result in millicores */
    STK_QTY_BYTES, /* memory, storage: result in bytes */
};
/* Kubernetes quantity ("500m", "1.5", "512Mi", "2G", "1e3"). On failure
 * returns -EINVAL and sets *ret_why. */
int stk_quantity_parse(const char *s, enum stk_qty_unit unit, int64_t *ret, const char **ret_why);
/* Duration with units ms, s, m, h, d ("90s", "1h30m", "1.5h"). Result in ms. */
int stk_duration_parse(const char *s, int64_t *ret_ms, const char **ret_why);
/* Human forms used by explain: "512Mi", "1500m", "1h30m". */
void stk_bytes_format(int64_t bytes, char *buf, size_t n);
void stk_cpu_format(int64_t milli, char *buf, size_t n);
void stk_duration_format(int64_t ms, char *buf, size_t n);

/* Linux capability names as Kubernetes spells them (no CAP_ prefix). */
bool stk_capability_known(const char *name);
bool stk_env_name_valid(const char *s);
bool stk_dns_label_valid(const char *s);
bool stk_dns_subdomain_valid(const char *s);

/* ---- the field table, for docs and tools ---------------------------------- */

/* Writes the Markdown reference page (docs/spec.md). `defaults` maps a field
 * path to the text of its hard default, or NULL when it has none; the
 * boundary module provides it so the page shows what resolve really does. */
typedef const char *(*stk_default_text_fn)(const char *path, void *userdata);
void stk_spec_reference(struct stk_buf *out, stk_default_text_fn defaults, void *userdata);

#endif
