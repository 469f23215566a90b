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

#endif
