/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A Kubernetes API server double for the client's unit tests: HTTPS on
 * 127.0.0.1 (the fixture CA in tests/data/kube/), in a forked child, with
 * objects kept in memory, strict server-side apply, merge patches with
 * resourceVersion preconditions, paged lists, watches with bookmarks, and
 * faults a test asks for through /_double/fault.
 */
#ifndef KUBE_DOUBLE_H
#define KUBE_DOUBLE_H

#include <stdbool.h>
#include <sys/types.h>

struct kube_double {
    pid_t pid;
    int port;
};

/* Token the double accepts (a verified client certificate works too). */
#define KUBE_DOUBLE_TOKEN     "double-token"
#define KUBE_DOUBLE_FORBIDDEN "forbidden-token" /* authenticated, never authorized */

int kube_double_start(const char *data_dir, struct kube_double *ret);
void kube_double_stop(struct kube_double *d);

/* pods/exec over WebSocket (libwebsockets as the server), TLS with the same
 * certificates, bearer token only. Commands: "echo ARGS..." (stdout, exit
 * 0), "exit N", "fail" (a Failure Status that is not an exit code), "cat"
 * (stdin back to stdout until stdin is closed), "wc" (the byte count of
 * stdin at its close), "size" (prints the first terminal size received), "resize" (prints the
 * first two).
 * pods/portforward?ports=N (v4.channel.k8s.io only): both channels open
 * with the port (little endian); each message on channel 0 is answered
 * with "N:" and the message (up to 200 bytes); port 9 sends an error on
 * channel 1 and closes.
 * v5: offer v5.channel.k8s.io too (else v4 only). */
int kube_ws_double_start(const char *data_dir, bool v5, struct kube_double *ret);

#endif
