/* SPDX-License-Identifier: Apache-2.0 */
/* What the files of the Kubernetes client share; not for other modules. */
#ifndef STK_DRIVER_KUBE_INTERNAL_H
#define STK_DRIVER_KUBE_INTERNAL_H

#include "driver/kubernetes/kube.h"

#include <curl/curl.h>
#include <stdatomic.h>

/* Key material held in memory (PEM), wiped when freed. */
struct kube_blob {
    char *data;
    size_t len;
};

struct stk_kubeconfig {
    char *context;                  /* "in-cluster" for in-cluster credentials */
    char *source;                   /* the kubeconfig's path, or the service-account dir */
    char *server;                   /* https://host[:port][/prefix], no trailing '/' */
    char *namespace;                /* default namespace */
    struct kube_blob ca, cert, key; /* PEM; ca.len 0: the system's CAs */
    struct kube_blob token;         /* bearer token (no trailing newline) */
    char *token_file;               /* re-read for every request when set */
};

struct stk_kube {
    struct stk_kubeconfig *cfg; /* a copy */
    CURL *curl;                 /* reused: keeps the connection alive */
    int timeout_ms;
    json_t *discovery; /* group/version → APIResourceList (or null) */
};

void kube_blob_free(struct kube_blob *b);
void kube_blob_set(struct kube_blob *b, const void *data, size_t len);
struct stk_kubeconfig *kubeconfig_dup(const struct stk_kubeconfig *c);
/* The current bearer token (re-read from token_file); *ret NULL when none. */
int kubeconfig_token(const struct stk_kubeconfig *c, char **ret, struct stk_error **err);
/* Reads a whole small file (at most max bytes). */
int kube_read_file(const char *path, size_t max, char **ret, size_t *ret_len,
                   struct stk_error **err);

/* "context NAME (SERVER)" prefix for every error. */
int kube_error(struct stk_kube *k, struct stk_error **err, int code, const char *fmt, ...)
    STK_PRINTF(4, 5);

/* One request on the shared handle. body_out collects the body, bounded by
 * STK_KUBE_MAX_BODY. */
struct kube_http {
    const char *method, *path, *content_type;
    const char *body;
    size_t body_len;
    int timeout_ms; /* 0: the client's; < 0: none */
    /* streaming: a 2xx answer's body goes to sink chunk by chunk (a short
     * count stops the transfer: kube_http returns 1); other answers are
     * collected into body_out as usual */
    size_t (*sink)(void *ud, const char *data, size_t n);
    void *sink_ud;
    /* non-NULL: the transfer ends (kube_http returns 1) within about a
     * second of *cancel becoming true, even while nothing arrives */
    const atomic_bool *cancel;
};
/* 0 done (*ret_status set), 1 the sink stopped it, < 0 transport errors */
int kube_http(struct stk_kube *k, const struct kube_http *h, long *ret_status,
              struct stk_buf *body_out, struct stk_error **err);
/* An HTTP error status with its Status body → the negative errno and message
 * ("VERB WHAT: CODE ...: message"). */
int kube_status_error(struct stk_kube *k, long status, const char *body, size_t len,
                      const char *verb, const char *what, struct stk_error **err);
int kube_status_errno(long status, const json_t *st);

/* LIST with label and field selectors, pages joined. */
int kube_list(struct stk_kube *k, const struct stk_kube_ref *r, const char *label_selector,
              const char *field_selector, json_t **ret, struct stk_error **err);

/* Appends s URL-escaped (query values). */
void kube_query_escape(struct stk_buf *b, const char *s);
bool kube_dns_label(const char *s);
bool kube_dns_subdomain(const char *s);

/* The WebSocket side (exec.c, portforward.c): https://HOST[:PORT][/PREFIX]
 * split for lws; TLS trusting the kubeconfig's CA only, with its client
 * certificate and key, the server's name or address checked by OpenSSL;
 * lws's own logging silenced. */
int kube_ws_split_server(const char *server, char *host, size_t hostsz, int *port,
                         const char **prefix, bool *is_ip);
typedef struct ssl_ctx_st SSL_CTX;
int kube_ws_load_tls(const struct stk_kubeconfig *c, const char *host, bool host_is_ip,
                     SSL_CTX *ctx);
/* A client TLS context loaded with kube_ws_load_tls() (the system's CAs
 * when the kubeconfig names none); NULL when the material does not load.
 * The caller frees it, after the lws context it was given to. */
SSL_CTX *kube_ws_client_tls(const struct stk_kubeconfig *c, const char *host, bool host_is_ip);
void kube_ws_log_nothing(int level, const char *line);

/* What exec.c and portforward.c do alike with lws. */
struct lws;
struct lws_context;
struct lws_protocols;
/* A client-only context (no listener), trusting the kubeconfig's CA alone
 * when it has one; timeout_s bounds the upgrade (0: lws's default).
 * client_ctx: the caller's TLS context (ssl_ctx_st *), already loaded with
 * kube_ws_client_tls(), that lws uses and never frees. */
struct lws_context *kube_ws_context(const struct stk_kubeconfig *c,
                                    const struct lws_protocols *protocols, int timeout_s,
                                    void *client_ctx);
/* Starts the upgrade to https://host:port path asking for the given
 * subprotocols; *pwsi is the WebSocket while it lives. NULL: not started. */
struct lws *kube_ws_connect(struct lws_context *ctx, const char *host, int port, bool host_is_ip,
                            const char *path, const char *subprotocols, struct lws **pwsi);
/* The first failure of an exchange: a negative errno and its message
 * (later ones are dropped). */
struct kube_ws_failure {
    int code;
    char *msg;
};
void kube_ws_fail(struct kube_ws_failure *f, int code, const char *fmt, ...) STK_PRINTF(3, 4);
/* LWS_CALLBACK_CLIENT_CONNECTION_ERROR: a refused upgrade (its HTTP status
 * as the errno), a TLS failure, or a transport one (transient). */
void kube_ws_connection_error(struct kube_ws_failure *f, struct lws *wsi, const char *in);
/* The handshake's "Authorization: Bearer" header (none without a token). */
int kube_ws_add_bearer(struct lws *wsi, const char *token, void *in, size_t len);
/* A readable descriptor lws watches for data to send (stdin, a forwarded
 * connection): read into buf (cap bytes) when the last chunk was sent and
 * the WebSocket is up, then paused until it is sent; at its end *eof is
 * set, *fd_wsi cleared and -1 returned (lws closes the adopted dup). */
int kube_ws_pump_read(struct lws *wsi, struct lws *ws, bool established, unsigned char *buf,
                      size_t cap, size_t *len, bool *eof, struct lws **fd_wsi);

#endif
