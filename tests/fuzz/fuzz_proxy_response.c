/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the egress proxy's message framing on persistent
 * connections: an upstream's response head, a request's framing headers and
 * the chunked-body scanner (fed whole and byte by byte: both must agree). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size copy, so a read past the end is caught */
    char *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    const char *why = NULL;
    struct stk_proxy_response rs;
    int n = stk_proxy_response_parse(buf, size, size & 1, &rs, &why);
    if (n > 0 && ((size_t)n > size || rs.status < 100 || rs.status > 999 ||
                  (rs.f.body == STK_BODY_CLOSE && !rs.f.close)))
        abort();
    if (n < 0 && !why)
        abort();
    struct stk_proxy_request *rq = malloc(sizeof(*rq));
    struct stk_http_framing f;
    if (stk_proxy_request_parse(buf, size, rq, &why) > 0 && rq->kind == STK_PROXY_HTTP &&
        stk_proxy_request_framing(rq, &f, &why) == 0 &&
        (f.body == STK_BODY_CLOSE || (f.body == STK_BODY_LENGTH && f.length == 0)))
        abort(); /* a request's body ends by its framing, never by a close */
    free(rq);
    struct stk_chunked whole = {0}, bytes = {0};
    size_t used = 0, at = 0;
    int r = stk_chunked_scan(&whole, data, size, &used);
    if (used > size)
        abort();
    int rb = 0;
    for (; at < size; at++) {
        size_t u = 0;
        rb = stk_chunked_scan(&bytes, data + at, 1, &u);
        if (rb != 0) {
            at += u;
            break;
        }
        if (u != 1)
            abort();
    }
    if (r != rb || (r == 1 && used != at))
        abort();
    free(buf);
    return 0;
}
