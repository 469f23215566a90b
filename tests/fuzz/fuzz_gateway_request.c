/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: what the gateway makes of a request before it touches
 * the store: the route of a method and path, and the JSON bodies of
 * POST /v1/sandboxes, POST /v1/pools and POST ...:exec. The first byte picks the parser.
 * Invariants: a route match names a route with that method and an argument
 * that is a valid name; a body that parses has its required fields.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_route(const char *text)
{
    static const char *const methods[] = {"GET", "POST", "DELETE", "PUT"};
    enum gw_route rt;
    char arg[64];
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        if (gw_route_parse(methods[i], text, &rt, arg) < 0)
            continue;
        if ((size_t)rt >= _GW_ROUTE_N || strcmp(gw_routes[rt].method, methods[i]))
            abort();
        if (strstr(gw_routes[rt].pattern, "{}") && !gw_name_ok(arg))
            abort();
    }
    char id[64];
    uint16_t port;
    const char *rest;
    if (gw_port_path(text, id, &port, &rest) == 0 &&
        (!gw_name_ok(id) || port == 0 || rest[0] != '/' || !strstr(text, rest)))
        abort();
}

static void fuzz_bodies(const char *text, size_t n)
{
    char why[256];
    json_t *root = NULL;
    struct gw_create_body c;
    if (gw_create_body_parse(text, n, &c, &root, why, sizeof(why)) == 0) {
        if (!c.spec || c.accepted_only != (c.wait && !strcmp(c.wait, "accepted")))
            abort();
        json_decref(root);
    } else if (!why[0]) {
        abort();
    }
    struct gw_pool_body p;
    why[0] = '\0';
    if (gw_pool_body_parse(text, n, &p, &root, why, sizeof(why)) == 0) {
        if (!p.name || !p.spec || !gw_name_ok(p.name))
            abort();
        json_decref(root);
    } else if (!why[0]) {
        abort();
    }
    struct gw_exec_body e;
    why[0] = '\0';
    if (gw_exec_body_parse(text, n, &e, &root, why, sizeof(why)) == 0) {
        if (e.argc < 1 || !e.argv[0] || e.argv[e.argc])
            abort();
        /* a replica is a Pod name: nothing that could leave a path segment */
        if (e.replica && (!e.replica[0] || strlen(e.replica) > 253 || strchr(e.replica, '/')))
            abort();
        json_decref(root);
    } else if (!why[0]) {
        abort();
    }
}

/* The gate's head reader: bounded, NUL-terminated fields, a length that
 * is a number or none. */
static void fuzz_head(const char *text, size_t n)
{
    ssize_t end = gw_head_end(text, n);
    if (end > (ssize_t)n)
        abort();
    struct gw_head h;
    if (gw_head_parse(text, end > 0 ? (size_t)end : n, &h) < 0)
        return;
    if (strlen(h.method) >= sizeof(h.method) || strlen(h.path) >= sizeof(h.path) ||
        strlen(h.authorization) >= sizeof(h.authorization) || h.content_length < -1)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 64 * 1024)
        return 0;
    char *text = malloc(size);
    if (!text)
        return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    if (data[0] & 2)
        fuzz_head(text, size - 1);
    else if (data[0] & 1)
        fuzz_route(text);
    else
        fuzz_bodies(text, size - 1);
    free(text);
    return 0;
}
