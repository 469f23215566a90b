/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proxylog — the egress proxy's decisions on Kubernetes as audit records of
 * the sandbox: the monitor follows the proxy Pod's log (pods/log, follow,
 * timestamped) and turns each decision line into an `egress_proxy` event,
 * the same records the local backend's proxy makes (proxy/record.h).
 *
 * The log is untrusted input: the proxy parses what the workload sends, so
 * a workload that took it over writes what it likes there. Every line is
 * bounded, each record is checked field by field and copied without
 * anything it does not define, and the proxy's own budget of records per
 * second applies again, by the stamps the container runtime put on the
 * lines (which the proxy cannot write): what it drops, and the lines that
 * were not records, are counted in a `suppressed` record.
 */
#ifndef STK_DRIVER_KUBE_PROXYLOG_H
#define STK_DRIVER_KUBE_PROXYLOG_H

#include "driver/kubernetes/kube.h"
#include "proxy/record.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The longest line of the proxy's log kept: its stamp and a record. A longer
 * line is cut there (its stamp still counts) and is not a record. */
#define STK_KUBE_PROXY_LINE_MAX (STK_PROXY_RECORD_MAX + 64)
/* The budget by the runtime's stamps: two of the proxy's one-second windows
 * meet in one stamped second, each with its own `suppressed` record. */
#define STK_KUBE_PROXY_EVENTS_PER_SEC (2 * (STK_PROXY_EVENTS_PER_SEC + 1))

typedef void (*stk_kube_proxy_record_fn)(void *ud, const char *json);

/* What the monitor has taken from the proxy's log, and where it stands:
 * the Pod whose log it reads and the position in it (the stamp of the last
 * line and how many lines carried it). */
struct stk_kube_proxy_ingest {
    const char *id;   /* the sandbox's id: what the records say */
    const char *name; /* its name: what the proxy's records say */
    char pod[254];
    struct stk_kube_log_pos pos;
    struct stk_proxy_budget budget;
    uint64_t invalid; /* lines that were not records, not yet reported */
    /* the line being read */
    char line[STK_KUBE_PROXY_LINE_MAX + 1];
    size_t len;
    bool cut;
};

void stk_kube_proxy_ingest_init(struct stk_kube_proxy_ingest *in, const char *id, const char *name);
/*
 * What the follower hands over: the log's bytes, each stream (one pods/log
 * request) announced by a line "\nS POD\n" (a log line always starts with
 * its stamp, so no line of the log can look like it). A stream of another
 * Pod than in->pod starts that Pod's log from its beginning. Calls fn with
 * each record to append (JSON object text). Returns whether the position
 * moved.
 */
bool stk_kube_proxy_ingest_feed(struct stk_kube_proxy_ingest *in, const char *data, size_t n,
                                stk_kube_proxy_record_fn fn, void *ud);
/* The counts not reported yet, as a `suppressed` record (none when zero). */
void stk_kube_proxy_ingest_flush(struct stk_kube_proxy_ingest *in, stk_kube_proxy_record_fn fn,
                                 void *ud);
/* "POD SEC.NSEC COUNT\n" and back (-EINVAL when malformed). */
void stk_kube_proxy_pos_format(const struct stk_kube_proxy_ingest *in, char buf[320]);
int stk_kube_proxy_pos_parse(struct stk_kube_proxy_ingest *in, const char *s);

/* ---- the follower ------------------------------------------------------------------- */

/* A thread with a client of its own that follows the log of the proxy's
 * current Pod in namespace ns (the Pod replaced or its container
 * restarted: the next one, from where it stood), handing the bytes over
 * on a pipe; the owner ingests them between its looks at the sandbox. */
struct stk_kube_proxy_follower;
/* state_file: where the position is kept between monitors (NULL: not
 * kept); id and name as for the ingest; borrowed until stop. */
int stk_kube_proxy_follow_start(const struct stk_kubeconfig *cfg, const char *ns,
                                const char *state_file, const char *id, const char *name,
                                struct stk_kube_proxy_follower **ret, struct stk_error **err);
/* Records what arrived (non-blocking), then keeps the position. */
void stk_kube_proxy_follow_pump(struct stk_kube_proxy_follower *f, stk_kube_proxy_record_fn fn,
                                void *ud);
/* Stops following after one last read of what the Pod logged until now,
 * records it and the counts not reported yet, keeps the position, frees f.
 * NULL is fine. */
void stk_kube_proxy_follow_stop(struct stk_kube_proxy_follower *f, stk_kube_proxy_record_fn fn,
                                void *ud);

/* Small state files of the driver: read (NUL-terminated, at most n - 1
 * bytes; -errno) and replaced whole (a temporary file renamed over it). */
int stk_kube_state_read(const char *path, char *buf, size_t n);
void stk_kube_state_write(const char *path, const char *text);

#endif
