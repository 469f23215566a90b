/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the egress proxy's request head parser, its authority
 * parser, the binding URL mapping and the allowHosts entries requests are
 * matched against. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A ".." segment in the path (the query is not normalised by servers). */
static bool climbs(const char *path)
{
    size_t n = strcspn(path, "?");
    for (size_t i = 0; i + 2 <= n; i++)
        if (path[i] == '.' && path[i + 1] == '.' && (i == 0 || path[i - 1] == '/') &&
            (i + 2 == n || path[i + 2] == '/'))
            return true;
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size copy, so a read past the end is caught */
    char *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    struct stk_proxy_request *r = malloc(sizeof(*r));
    const char *why = NULL;
    int n = stk_proxy_request_parse(buf, size, r, &why);
    if (n > 0) {
        if ((size_t)n > size || !r->host[0] || strlen(r->host) > 253 || r->port == 0)
            abort();
        for (size_t i = 0; i < r->n_headers; i++)
            if (r->headers[i].name < buf || r->headers[i].name + r->headers[i].name_len > buf + n)
                abort();
        char name[64];
        struct stk_binding_target *t = malloc(sizeof(*t));
        if (stk_binding_name(r->host, name) && r->kind == STK_PROXY_HTTP &&
            stk_binding_map("https://api.example.com/v1/", r->path, r->path_len, t, &why) == 0 &&
            (strncmp(t->path, "/v1/", 4) != 0 || !t->tls || climbs(t->path)))
            abort(); /* a mapped path stays under the binding's prefix */
        free(t);
    } else if (n < 0 && !why) {
        abort();
    }
    char host[254];
    uint16_t port;
    (void)stk_proxy_authority_parse(buf, size, 80, host, &port);
    char line[STK_ALLOW_HOST_MAX + 1];
    if (size < sizeof(line)) {
        memcpy(line, data, size);
        line[size] = '\0';
        struct stk_allow_host h;
        if (stk_allow_host_parse(line, &h, &why) && !stk_allow_host_match(&h, h.name, h.port) &&
            !h.wildcard)
            abort(); /* an exact entry matches its own name */
    }
    free(r);
    free(buf);
    return 0;
}
