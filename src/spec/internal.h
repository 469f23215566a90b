/* SPDX-License-Identifier: Apache-2.0 */
/* Internal to src/spec: the document tree, the field table and the decoder. */
#ifndef STK_SPEC_INTERNAL_H
#define STK_SPEC_INTERNAL_H

#include "spec.h"

/* ---- document tree (format-neutral, with positions) ------------------- */

enum stk_node_kind {
    STK_NODE_SCALAR,
    STK_NODE_MAP,
    STK_NODE_SEQ,
};

struct stk_node;

struct stk_node_pair {
    const char *key;
    struct stk_pos pos;
    struct stk_node *value;
};

struct stk_node {
    enum stk_node_kind kind;
    struct stk_pos pos;
    /* scalar */
    const char *s;
    size_t len;
    bool plain; /* unquoted: subject to null/bool/number resolution */
    /* map / sequence */
    struct stk_node_pair *pairs;
    struct stk_node **items;
    uint32_t n;
};

/* Parses YAML (libyaml) or JSON (validated by jansson first) into document
 * roots. Each root is a mapping; a top-level sequence contributes each of its
 * items as a document. Returns negative when any error was recorded. */
int stk_nodes_parse(const char *file, const char *data, size_t len, struct stk_arena *a,
                    struct stk_diags *d, struct stk_node ***ret_roots, size_t *ret_n);

/* What a plain scalar resolves to (YAML 1.2 core schema). */
enum stk_scalar_type {
    STK_SCALAR_STRING,
    STK_SCALAR_NULL,
    STK_SCALAR_BOOL,
    STK_SCALAR_INT,
    STK_SCALAR_FLOAT,
};
enum stk_scalar_type stk_node_scalar_type(const struct stk_node *n);
const char *stk_node_kind_name(const struct stk_node *n);

/* ---- the field table ---------------------------------------------------- */

enum stk_ftype {
    STK_F_STRING,   /* struct stk_str */
    STK_F_BOOL,     /* struct stk_bool */
    STK_F_INT,      /* struct stk_num */
    STK_F_CPU,      /* struct stk_num, millicores */
    STK_F_BYTES,    /* struct stk_num, bytes */
    STK_F_DURATION, /* struct stk_num, ms */
    STK_F_ENUM,     /* struct stk_enumv */
    STK_F_CIDR,     /* struct stk_cidrv */
    STK_F_MAP,      /* struct stk_map: string -> string */
    STK_F_OBJECT,   /* an embedded struct starting with struct stk_meta */
    STK_F_LIST,     /* STK_LIST(elem) */
    STK_F_REJECT,   /* never accepted; the field's doc is the error message */
};

/* Syntax checks for strings (and for map keys/values). */
enum stk_strfmt {
    STK_FMT_TEXT,          /* anything but NUL */
    STK_FMT_LINE,          /* printable, no control characters */
    STK_FMT_DNS_LABEL,     /* RFC 1123 label */
    STK_FMT_DNS_SUBDOMAIN, /* RFC 1123 subdomain */
    STK_FMT_QUALIFIED,     /* Kubernetes qualified name: [prefix/]name */
    STK_FMT_LABEL_VALUE,   /* Kubernetes label value */
    STK_FMT_ABS_PATH,      /* absolute, normalised path */
    STK_FMT_ROOTFS,        /* "host" or an absolute, normalised directory */
    STK_FMT_IMAGE,         /* OCI image reference */
    STK_FMT_ENV_NAME,      /* environment variable name */
    STK_FMT_CAPABILITY,    /* Linux capability, Kubernetes spelling */
    STK_FMT_URL,           /* http:// or https:// URL */
    STK_FMT_HEADER,        /* HTTP header field name */
    STK_FMT_INJECT_FORMAT, /* header value template containing {value} once */
    STK_FMT_API_VERSION,   /* exactly STK_API_VERSION */
    STK_FMT_SHA256_HEX,    /* 64 lowercase hex digits */
    STK_FMT_HTTPS_URL,     /* https:// URL (an OIDC issuer) */
    STK_FMT_GLOB,          /* fnmatch(3) pattern, one line */
    STK_FMT_ENDPOINT,      /* numeric ADDR:PORT[/PROTO] (stk_endpoint_parse) */
    STK_FMT_ALLOW_HOST,    /* NAME[:PORT] or *.SUFFIX[:PORT] (stk_allow_host_parse) */
    _STK_FMT_N
};

struct stk_field {
    const char *name;
    enum stk_ftype type;
    size_t offset;
    /* STK_F_LIST: the element's type and size */
    enum stk_ftype elem;
    size_t elem_size;
    /* STK_F_OBJECT, or a list of objects: the children (NULL-name terminated) */
    const struct stk_field *fields;
    /* STK_F_ENUM, or a list of enums */
    const char *const *values;
    size_t n_values;
    /* strings (and map keys / list elements of strings) */
    enum stk_strfmt fmt;
    enum stk_strfmt value_fmt; /* STK_F_MAP values */
    uint32_t max_len;          /* bytes; 0 = the format's own limit */
    uint32_t max_items;        /* lists and maps */
    int64_t min, max;          /* numbers, in the stored unit */
    bool required;
    const char *doc;
};

extern const struct stk_field stk_sandbox_fields[];
extern const struct stk_field stk_envconfig_fields[];
extern const struct stk_field stk_access_policy_fields[];
/* spec.driverConfig's own table: what driverConfigKeys may name. */
extern const struct stk_field stk_driver_config_fields[];

/* The cross-field rules of an AccessPolicy that decoded cleanly (unique
 * names, references that resolve, one match form per identity); problems go
 * to d with the field's position and path. */
void stk_access_policy_check(const struct stk_access_policy *ap, const char *file,
                             struct stk_diags *d);

/* Decodes one mapping into `out` following `fields`. `path` is the prefix
 * for diagnostics ("" for a document root). */
void stk_decode_object(const char *file, struct stk_arena *a, struct stk_diags *d,
                       const struct stk_field *fields, const struct stk_node *node, void *out,
                       const char *path);

/* A number of a field type in its human unit: "500m", "512Mi", "1h30m". */
void stk_num_format(enum stk_ftype t, int64_t v, char *buf, size_t n);

/* Checks a string against a format; on failure returns false and sets
 * *ret_why (static text). */
bool stk_strfmt_check(enum stk_strfmt fmt, const char *s, const char **ret_why);
uint32_t stk_strfmt_max_len(enum stk_strfmt fmt);
const char *stk_strfmt_doc(enum stk_strfmt fmt);

#endif
