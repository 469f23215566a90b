/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the egress proxy's Pod log as the Kubernetes monitor
 * reads it back (stk_kube_proxy_ingest_feed, src/driver/kubernetes/
 * proxylog.c, and stk_proxy_record_parse, src/proxy/record.c): whatever
 * the log holds, every record handed on is an object of the known fields
 * only, of this sandbox, within the budget. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "driver/kubernetes/proxylog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const known[] = {
    "sandbox", "decision", "kind",    "method", "host",   "port",   "binding",
    "path",    "rule",     "address", "peer",   "status", "reason", "strippedHeaders",
    "dropped", "invalid",
};

static size_t records;

static void on_record(void *ud, const char *json)
{
    (void)ud;
    json_t *o = json_loads(json, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(o) ||
        strcmp(json_string_value(json_object_get(o, "sandbox")) ?: "", "sb-1"))
        abort();
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        size_t i = 0;
        while (i < sizeof(known) / sizeof(known[0]) && strcmp(k, known[i]))
            i++;
        if (i == sizeof(known) / sizeof(known[0]) || json_is_object(v) || json_is_array(v))
            abort();
        for (const char *s = json_string_value(v); s && *s; s++)
            if ((unsigned char)*s < 0x20)
                abort();
    }
    json_decref(o);
    records++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct stk_kube_proxy_ingest in;
    stk_kube_proxy_ingest_init(&in, "sb-1", "canary");
    records = 0;
    /* in two pieces, split where the first byte says */
    size_t cut = size ? data[0] % (size + 1) : 0;
    stk_kube_proxy_ingest_feed(&in, (const char *)data, cut, on_record, NULL);
    stk_kube_proxy_ingest_feed(&in, (const char *)data + cut, size - cut, on_record, NULL);
    stk_kube_proxy_ingest_flush(&in, on_record, NULL);
    /* each record, and each summary but the last, comes of a stamped line
     * of at least 22 bytes that yields at most two */
    if (records > size / 11 + 2)
        abort();
    if (in.len > STK_KUBE_PROXY_LINE_MAX)
        abort();
    return 0;
}
