/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proxy — the egress proxy of the local backend: an HTTP forward proxy
 * (absolute-URI plain HTTP and CONNECT host:port) on libevent, one per
 * sandbox, listening on 127.0.0.1:STK_PROXY_PORT *inside the sandbox's
 * network namespace* and connecting out from the host's. The listening
 * socket belongs to one namespace, so a connection is the sandbox's by
 * where it arrived; nothing the workload sends names it.
 *
 * Under gVisor the sandbox's loopback is gVisor's own: there the proxy
 * listens on the host side instead, at the bridge address (the sandbox's
 * gateway) on a port of the sandbox's own, which stockade's nftables admit
 * only from the sandbox's address arriving on its own bridge port (the
 * bridge table binds each port to its addresses), and it accepts only
 * connections whose peer is one of the sandbox's addresses.
 *
 * Decisions (allowed, denied with the rule or the reason) are JSON lines
 * the owner reads from stk_proxy_event_fd() and turns into audit records
 * or events; they are rate limited and what is dropped is counted.
 *
 * The pure parts (the request head, the authority, the TLS ClientHello's
 * server name) are separate functions with fuzz targets.
 */
#ifndef STK_PROXY_PROXY_H
#define STK_PROXY_PROXY_H

#include "base/base.h"
#include "boundary/boundary.h"
#include "proxy/record.h"
#include "spec/spec.h"

#include <stddef.h>
#include <stdint.h>

/* ---- the request head ------------------------------------------------------ */

#define STK_PROXY_HEAD_MAX    16384 /* bytes of request line and headers */
#define STK_PROXY_HEADERS_MAX 64

enum stk_proxy_kind { STK_PROXY_CONNECT, STK_PROXY_HTTP };

struct stk_proxy_header {
    const char *name, *value; /* into the parsed buffer, not terminated */
    size_t name_len, value_len;
};

struct stk_proxy_request {
    enum stk_proxy_kind kind;
    char method[16];
    char host[254]; /* lowercase DNS name */
    uint16_t port;
    const char *path; /* origin-form ("/..."), into the buffer; HTTP only */
    size_t path_len;
    struct stk_proxy_header headers[STK_PROXY_HEADERS_MAX];
    size_t n_headers;
    size_t head_len; /* bytes of the head, the blank line included */
    bool http10;
};

/*
 * Parses the request head at buf[0..n). Returns the head's length (> 0),
 * 0 when more bytes are needed, or a negative errno: -EMSGSIZE (head
 * larger than STK_PROXY_HEAD_MAX or too many headers), -EINVAL (malformed),
 * -EPROTONOSUPPORT (not an absolute http:// URI nor CONNECT host:port, or a
 * host that is not a DNS name). *ret_why says what, statically.
 */
int stk_proxy_request_parse(const char *buf, size_t n, struct stk_proxy_request *ret,
                            const char **ret_why);
/* Parses "host:port" (CONNECT) or "host[:port]" (default_port) into a
 * lowercase DNS name of 1..253 characters and a port; false otherwise. */
bool stk_proxy_authority_parse(const char *s, size_t n, uint16_t default_port, char host[254],
                               uint16_t *ret_port);

/* ---- message framing (persistent connections) ------------------------------- */

#define STK_PROXY_RESPONSE_HEAD_MAX (64u * 1024) /* an upstream's response head */
#define STK_PROXY_CHUNK_LINE_MAX    4096         /* a chunk-size line or a trailer line */
#define STK_PROXY_TRAILERS_MAX      16384        /* bytes of a chunked body's trailers */

/* How a message's body ends. */
enum stk_http_body {
    STK_BODY_NONE,    /* no body */
    STK_BODY_LENGTH,  /* Content-Length bytes */
    STK_BODY_CHUNKED, /* chunked transfer coding, to its last chunk and trailers */
    STK_BODY_CLOSE,   /* a response read until the upstream closes */
};

struct stk_http_framing {
    enum stk_http_body body;
    uint64_t length; /* STK_BODY_LENGTH */
    bool close;      /* the sender closes after this message (Connection: close, HTTP/1.0) */
};

/* A request's framing from its parsed head: Content-Length or chunked
 * Transfer-Encoding, never both, no other coding, no differing lengths
 * (request smuggling is refused, not guessed at). 0 or -EINVAL with *ret_why. */
int stk_proxy_request_framing(const struct stk_proxy_request *r, struct stk_http_framing *ret,
                              const char **ret_why);

struct stk_proxy_response {
    int status;
    struct stk_http_framing f;
    size_t head_len;
};
/* Parses an upstream's response head at buf[0..n) (at most
 * STK_PROXY_RESPONSE_HEAD_MAX); head_request: the answer to a HEAD (no
 * body). Returns the head's length, 0 for more bytes, -EMSGSIZE or -EINVAL. */
int stk_proxy_response_parse(const char *buf, size_t n, bool head_request,
                             struct stk_proxy_response *ret, const char **ret_why);

/* A chunked body's progress; zero it to start. */
struct stk_chunked {
    int st;
    uint64_t left;   /* of the current chunk's data */
    size_t line;     /* bytes of the current size or trailer line */
    size_t trailers; /* bytes of trailers so far */
};
/* Follows a chunked body through p[0..n) (bytes passed on unchanged).
 * Returns 1 when the body ended, with *ret_used the bytes of p that belong to
 * it; 0 when all n were used and more are needed; -EINVAL when malformed or
 * past the bounds. */
int stk_chunked_scan(struct stk_chunked *c, const uint8_t *p, size_t n, size_t *ret_used);

/* ---- bindings ---------------------------------------------------------------- */

/* A binding is reached at http://<name>.bindings.stockade.internal/PATH; the
 * proxy forwards to the binding's https upstream with the credential. */
#define STK_BINDING_DOMAIN STK_BINDING_DOMAIN_TEXT

/* The binding name of a request's (lowercase) host, or false. */
bool stk_binding_name(const char *host, char ret[64]);

struct stk_binding_target {
    bool tls;
    char host[254];
    uint16_t port;
    char path[STK_PROXY_HEAD_MAX]; /* the URL's path prefix + the request's path */
};
/* Maps a request path (origin form, with its query) onto the binding's URL.
 * Refuses a non-https upstream, dot segments (which could climb out of the
 * URL's path prefix) and control characters. 0 or a negative errno with
 * *ret_why. */
int stk_binding_map(const char *url, const char *path, size_t path_len,
                    struct stk_binding_target *ret, const char **ret_why);

/* ---- credential sources ----------------------------------------------------- */

#define STK_CREDENTIAL_MAX 8192

/* A credential as a binding names it; never the value. */
struct stk_cred_ref {
    enum stk_cred_source source;
    const char *ref; /* variable name, file path, or namespace/name of a Secret */
    const char *key; /* a Secret's key */
};
/* Reads the credential now (env: the serving process's environment; file:
 * a regular file of at most STK_CREDENTIAL_MAX bytes, trailing newlines cut;
 * kubernetesSecret: not on the local backend). The value is one header
 * line's worth of printable bytes. Free with stk_credential_free(). */
int stk_credential_read(const struct stk_cred_ref *c, char **ret_value, const char **ret_why);
/* Wipes and frees. */
void stk_credential_free(char *value);
/* kubernetesSecret on the kubernetes backend: the standalone proxy
 * (`stockade __proxy`) sets the reader, which fetches key of Secret
 * namespace/name through the API at request time (0, or a negative errno
 * with *why). Unset (the local backend): the source is refused. */
typedef int (*stk_credential_kube_fn)(const char *ns, const char *name, const char *key,
                                      char **ret_value, const char **why);
void stk_credential_set_kube(stk_credential_kube_fn fn);

/* ---- the standalone proxy's configuration (src/proxy/config.c) ------------- */

#define STK_PROXY_FILE_MAX          (64u * 1024)
#define STK_PROXY_FILE_DENY_MAX     256
#define STK_PROXY_FILE_BINDINGS_MAX 64

/* A sandbox's proxy configuration as the Kubernetes renderer writes it into
 * the proxy's ConfigMap (JSON; src/render/k8s.c): its allowHosts, the
 * networks never connected to (the boundary's proxy_deny) and its bindings
 * with credential references, never a value. */
struct stk_proxy_file {
    const char *sandbox;
    const struct stk_allow_host *allow;
    size_t n_allow;
    const struct stk_cidr *deny;
    size_t n_deny;
    const struct stk_binding *bindings;
    size_t n_bindings;
};
/* Parses and checks the file's text (unknown keys, bad entries and
 * anything past the limits are refused, naming the entry). */
int stk_proxy_file_parse(const char *data, size_t len, struct stk_proxy_file **ret,
                         struct stk_error **err);
void stk_proxy_file_free(struct stk_proxy_file *f);

/* ---- the TLS ClientHello --------------------------------------------------- */

#define STK_TLS_HELLO_MAX 16384

/*
 * Reads the server name (SNI host_name) of the TLS ClientHello at the start
 * of p[0..n), across records up to STK_TLS_HELLO_MAX bytes. Returns 1 with
 * the lowercased name in ret, 0 when more bytes are needed, -ENOENT when
 * the ClientHello names no server, -EINVAL when the bytes are not a TLS
 * ClientHello or are malformed, -EMSGSIZE when it is larger than the bound.
 */
int stk_tls_client_hello_sni(const uint8_t *p, size_t n, char ret[256]);

/* ---- the server -------------------------------------------------------------- */

#define STK_PROXY_MAX_CONNS       256 /* per sandbox */
#define STK_PROXY_IDLE_SECONDS    300 /* an idle tunnel is closed */
#define STK_PROXY_HEAD_SECONDS    10  /* to send the head, and the ClientHello */
#define STK_PROXY_CONNECT_SECONDS 10
/* persistent client connections (plain HTTP and bindings; a CONNECT tunnel
 * is the rest of its connection) */
#define STK_PROXY_KEEPALIVE_SECONDS 30   /* idle between requests */
#define STK_PROXY_REQUESTS_PER_CONN 1000 /* the last response says Connection: close */

struct stk_proxy_config {
    const char *sandbox;    /* the id, in every record */
    const char *netns_path; /* listen on 127.0.0.1:STK_PROXY_PORT in this namespace, or */
    /* (netns_path NULL) on the host side at listen:listen_port, serving only
     * peers whose address is one of peers[] (the sandbox's own) */
    struct stk_cidr listen;
    uint16_t listen_port;
    struct stk_cidr peers[2];
    size_t n_peers;
    /* instead of either: every address of the caller's namespace (a proxy
     * Pod on Kubernetes, where NetworkPolicy admits only the sandbox's Pod) */
    bool standalone;
    const struct stk_allow_host *allow;
    size_t n_allow;
    /* networks never connected to besides loopback, link-local, multicast,
     * unspecified and the host's own addresses: blacklistIPs, pod and
     * service CIDRs (the boundary's proxy_deny) and the sandbox pool */
    const struct stk_cidr *deny;
    size_t n_deny;
    const struct stk_cidr *deny_extra;
    size_t n_deny_extra;
    /* test mode: names resolve from this hosts file only, no DNS query is
     * ever sent; NULL: the host's resolver (/etc/resolv.conf) */
    const char *hosts_file;
    /* bindings (copied); their credentials are read at request time */
    const struct stk_binding *bindings;
    size_t n_bindings;
    /* the CAs that verify binding upstreams; NULL: the system's */
    const char *ca_file;
};

struct stk_proxy;

/* Listens (in the namespace, or on the host side) and starts serving on a
 * thread of its own. */
int stk_proxy_start(const struct stk_proxy_config *c, struct stk_proxy **ret,
                    struct stk_error **err);
/* Readable when decision records are waiting. */
int stk_proxy_event_fd(const struct stk_proxy *p);
/* Calls fn with each waiting record (one JSON object, no newline);
 * non-blocking. Returns how many. */
size_t stk_proxy_events_read(struct stk_proxy *p, void (*fn)(void *ud, const char *json), void *ud);
/* Stops serving, closes every connection, joins the thread, reports the
 * records still waiting through fn (may be NULL), frees p. NULL is fine. */
void stk_proxy_stop(struct stk_proxy *p, void (*fn)(void *ud, const char *json), void *ud);

/* Whether addr may be connected to: not in the fixed ranges (loopback,
 * link-local, multicast, unspecified), not in c's deny lists and not one
 * of the host's addresses (host, n_host). Sets *ret_why. */
bool stk_proxy_addr_allowed(const struct stk_proxy_config *c, const struct stk_cidr *addr,
                            const struct stk_cidr *host, size_t n_host, const char **ret_why);

#endif
