/* SPDX-License-Identifier: Apache-2.0 */
/*
 * record — the egress proxy's decision records as data, shared by the two
 * sides that handle them: the proxy, which writes them within a budget of
 * records per second and counts what the budget drops (a `suppressed`
 * record), and the Kubernetes driver's monitor, which reads them back from
 * the proxy Pod's log and must treat them as untrusted input: the same
 * budget, and a parser that copies only the fields a record has, each
 * checked.
 *
 * Core code, not the proxy module's (`stockade-proxy.so`): the kubernetes
 * module (`stockade-kube.so`) calls it too, and neither module links the
 * other. The executable links it whole, so both find it there.
 */
#ifndef STK_PROXY_RECORD_H
#define STK_PROXY_RECORD_H

#include "base/base.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Records per second per sandbox (the proxy's budget). */
#define STK_PROXY_EVENTS_PER_SEC 20
/* The longest record the proxy writes (one JSON object, newline included). */
#define STK_PROXY_RECORD_MAX 2048

/* A budget of `limit` records per one-second window. */
struct stk_proxy_budget {
    unsigned limit;
    int64_t win;
    unsigned in_win;
    uint64_t dropped; /* since the last `suppressed` record */
};

/* Whether one more record fits in second `sec`; when not, counts it as
 * dropped. When `sec` starts a new window and records were dropped before
 * it, *ret_dropped is their number (report it first, in a `suppressed`
 * record, which the budget does not count) and the count restarts;
 * otherwise 0. */
bool stk_proxy_budget_take(struct stk_proxy_budget *b, int64_t sec, uint64_t *ret_dropped);
/* The drops counted and not yet reported (the last window's), zeroed. */
uint64_t stk_proxy_budget_flush(struct stk_proxy_budget *b);

/* {"sandbox": sandbox, "decision": "suppressed", "dropped": dropped} */
json_t *stk_proxy_suppressed_record(const char *sandbox, uint64_t dropped);

/* One record as the proxy wrote it (text, len: one JSON object), checked as
 * hostile input: at most STK_PROXY_RECORD_MAX bytes, an object without
 * duplicate keys whose `sandbox` is `sandbox`, whose `decision` is one the
 * proxy makes, and whose known fields (kind, method, host, port, binding,
 * path, rule, address, peer, status, strippedHeaders, reason, dropped) have
 * their type and syntax (printable ASCII, bounded). *ret is a new object of
 * the known fields only — anything else is dropped, so nothing the record
 * does not define (a header, a credential) is ever copied — with `sandbox`
 * set to `id`. -EINVAL with *ret_why (static) when the record is not one. */
int stk_proxy_record_parse(const char *text, size_t len, const char *sandbox, const char *id,
                           json_t **ret, const char **ret_why);

#endif
