/* SPDX-License-Identifier: Apache-2.0 */
/*
 * http — the HTTP/JSON API of `stockade serve` (docs/api.md). It asks a
 * `struct stk_gw_auth` (gateway.h) who calls and what they may do, acts
 * through the session module, and records every decision in the audit trail.
 */
#ifndef STK_GATEWAY_HTTP_H
#define STK_GATEWAY_HTTP_H

#include "driver/driver.h"
#include "gateway/gateway.h"

#define STK_GW_MAX_BODY (1024 * 1024)
/* PUT .../files: its body is the file, up to the files limit (the
 * gate admits this one route's bodies up to it, decided from the head) */
#define STK_GW_MAX_FILE_BODY   (16 * 1024 * 1024)
#define STK_GW_MAX_HEADERS     (16 * 1024)
#define STK_GW_TIMEOUT_S       30
#define STK_GW_MAX_CONNECTIONS 1024

struct stk_gw_options {
    /* "127.0.0.1:8443", "[::1]:8443"; port 0 picks a free one (stk_gw_port);
     * "unix:/run/stockade/api.sock" (mode 0600) */
    const char *listen;
    /* NULL: plain HTTP, allowed on a loopback address only */
    const char *tls_cert, *tls_key;
    const char *client_ca; /* with TLS: ask for client certificates, verified against it */
    const struct stk_local_paths *paths;
    enum stk_backend backend; /* what the sandboxes run on (its driver) */
    /* kubernetes: the cluster (NULL: $KUBECONFIG, ~/.kube/config, in-cluster;
     * the current context) */
    const char *kubeconfig, *context;
    const struct stk_gw_auth *auth; /* required */
    int timeout_s;                  /* a request must arrive within; 0: STK_GW_TIMEOUT_S */
    /* the access log (one JSON line per request): NULL or "-" stderr, "off"
     * none, else a file appended to (created 0600) */
    const char *access_log;
    /* SIGHUP calls it on the loop (serve: re-read the policy's keys); SIGHUP
     * never ends the server, with or without it */
    void (*on_hup)(void *ud);
    void *on_hup_ud;
};

struct stk_gw;
int stk_gw_new(const struct stk_gw_options *o, struct stk_gw **ret, struct stk_error **err);
/* The port it listens on. */
int stk_gw_port(const struct stk_gw *g);
/* Serves until SIGINT or SIGTERM, then stops accepting, ends the streams and
 * waits (at most 10 s) for the operations in flight. */
int stk_gw_run(struct stk_gw *g);
void stk_gw_free(struct stk_gw *g);

/* The worker processes the server starts for operations that may block
 * (src/gateway/worker.c): the binary that runs the server must dispatch
 * this verb to stk_gw_worker_main. */
#define STK_GW_WORKER_VERB "__gateway-worker"

/* The port route's raw TCP upgrade (`port-forward --server`): after the
 * 101 the connection's bytes are the port's (docs/api.md, "Ports"). */
#define STK_GW_TCP_UPGRADE "stockade-tcp.v1"
int stk_gw_worker_main(int argc, char **argv);

#endif
