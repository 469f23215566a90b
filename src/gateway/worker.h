/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The worker side of the gateway's jobs (`stockade __gateway-worker`): what
 * worker.c and port_worker.c share with the server's side (job.c, exec.c,
 * ports.c). This side is linked into the executable, not the gateway
 * module, so a worker maps no libevent, libssl or libcurl
 * (docs/architecture.md, "Modules loaded on demand"): nothing here may need
 * them, and the build fails if it does (the executable does not link them).
 */
#ifndef STK_GATEWAY_WORKER_H
#define STK_GATEWAY_WORKER_H

#include "session/session.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A worker's descriptors: the job (JSON, a memfd), the answer, then what
 * the job passes on (exec's stdio pipes and its RESIZE/KILL frames; the
 * files API's memfd or a port's client socket on the first of them). */
#define GW_W_JOB_FD    3
#define GW_W_OUT_FD    4
#define GW_W_STDIN_FD  5
#define GW_W_STDOUT_FD 6
#define GW_W_STDERR_FD 7
#define GW_W_CTL_FD    8

/* Audit pages (GET .../audit?after=SEQ&limit=N). */
#define GW_AUDIT_PAGE_DEFAULT 100
#define GW_AUDIT_PAGE_MAX     1000
#define GW_AUDIT_PAGE_BYTES   (1024 * 1024)
/* records read from SQLite at a time for a page (streamed by a worker) */
#define GW_AUDIT_BATCH 100

/* In the worker: the reply ({"status":N,"body":...}; body is stolen). */
void gw_job_result(int out_fd, int status, json_t *body);
void gw_job_error(int out_fd, int err, const char *message);

/* In the worker: the proxying of a port, on the client's socket (over TLS,
 * the relay's socketpair). raw: the gateway's own TCP upgrade. */
void gw_port_proxy(struct stk_session *s, const char *id, uint16_t port, const char *head,
                   bool upgrade, bool raw, int sock);
/* what a port's relay moves at a time, on either side */
#define GW_PORT_BUF 65536
/* All of p to a socket (MSG_NOSIGNAL); false when it is gone. */
bool gw_send_all(int fd, const char *p, size_t n);

#endif
