/* SPDX-License-Identifier: Apache-2.0 */
/* The egress proxy's pure parts: the request head, the authority, the
 * allowHosts entries and their matching, the TLS ClientHello's server name
 * and the address checks. The server itself is tested end to end
 * (tests/e2e/test_proxy.py). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy/proxy.h"

#define ROOT STK_SOURCE_ROOT

static int parse(const char *s, struct stk_proxy_request *r)
{
    const char *why = NULL;
    int n = stk_proxy_request_parse(s, strlen(s), r, &why);
    if (n < 0)
        assert_non_null(why);
    return n;
}

static void test_request_connect(void **state)
{
    (void)state;
    struct stk_proxy_request r;
    const char *s = "CONNECT PyPI.org:443 HTTP/1.1\r\nHost: pypi.org:443\r\n\r\nextra";
    assert_int_equal(parse(s, &r), (int)(strlen(s) - 5));
    assert_int_equal(r.kind, STK_PROXY_CONNECT);
    assert_string_equal(r.host, "pypi.org");
    assert_int_equal(r.port, 443);
    assert_int_equal(r.n_headers, 1);
    assert_int_equal(r.headers[0].value_len, strlen("pypi.org:443"));
}

static void test_request_absolute(void **state)
{
    (void)state;
    struct stk_proxy_request r;
    assert_true(parse("GET http://files.example.com:8080/a/b?c=d HTTP/1.0\r\nA:  b \r\n\r\n", &r) >
                0);
    assert_int_equal(r.kind, STK_PROXY_HTTP);
    assert_string_equal(r.method, "GET");
    assert_string_equal(r.host, "files.example.com");
    assert_int_equal(r.port, 8080);
    assert_int_equal(r.path_len, strlen("/a/b?c=d"));
    assert_memory_equal(r.path, "/a/b?c=d", r.path_len);
    assert_memory_equal(r.headers[0].value, "b", 1);
    assert_int_equal(r.headers[0].value_len, 1);
    assert_true(parse("GET http://example.com HTTP/1.1\r\n\r\n", &r) > 0);
    assert_int_equal(r.port, 80);
    assert_memory_equal(r.path, "/", 1);
}

static void test_request_incomplete_and_refused(void **state)
{
    (void)state;
    struct stk_proxy_request r;
    /* every strict prefix of a good head asks for more */
    const char *good = "GET http://example.com/ HTTP/1.1\r\nHost: x\r\n\r\n";
    for (size_t i = 0; i < strlen(good); i++) {
        const char *why;
        assert_int_equal(stk_proxy_request_parse(good, i, &r, &why), 0);
    }
    static const struct {
        const char *head;
        int err;
    } bad[] = {
        {"GET / HTTP/1.1\r\n\r\n", -EPROTONOSUPPORT},
        {"GET https://example.com/ HTTP/1.1\r\n\r\n", -EPROTONOSUPPORT},
        {"GET http://user@example.com/ HTTP/1.1\r\n\r\n", -EPROTONOSUPPORT},
        {"GET http://10.0.0.1/ HTTP/1.1\r\n\r\n", -EPROTONOSUPPORT},
        {"GET http://[::1]/ HTTP/1.1\r\n\r\n", -EPROTONOSUPPORT},
        {"CONNECT example.com HTTP/1.1\r\n\r\n", -EPROTONOSUPPORT},
        {"CONNECT example.com:0 HTTP/1.1\r\n\r\n", -EPROTONOSUPPORT},
        {"CONNECT example.com:65536 HTTP/1.1\r\n\r\n", -EPROTONOSUPPORT},
        {"CONNECT 169.254.169.254:443 HTTP/1.1\r\n\r\n", -EPROTONOSUPPORT},
        {"CONNECT a..b:443 HTTP/1.1\r\n\r\n", -EPROTONOSUPPORT},
        {"GET http://example.com/ HTTP/2.0\r\n\r\n", -EINVAL},
        {"GET http://example.com/ HTTP/1.1\n\n", -EINVAL},
        {"GET http://example.com/ HTTP/1.1\r\nA: b\r\n c\r\n\r\n", -EINVAL},
        {"GET http://example.com/ HTTP/1.1\r\nNo colon\r\n\r\n", -EINVAL},
        {"GET http://example.com/ HTTP/1.1\r\nA: b\x01\r\n\r\n", -EINVAL},
        {"GET http://example.com/a\x7f HTTP/1.1\r\n\r\n", -EINVAL},
        {"G(T http://example.com/ HTTP/1.1\r\n\r\n", -EINVAL},
    };
    for (size_t i = 0; i < STK_ARRAY_SIZE(bad); i++) {
        int n = parse(bad[i].head, &r);
        if (n != bad[i].err)
            fail_msg("%s: %d, want %d", bad[i].head, n, bad[i].err);
    }
}

static void test_request_limits(void **state)
{
    (void)state;
    struct stk_proxy_request r;
    const char *why;
    char *big = malloc(STK_PROXY_HEAD_MAX + 64);
    int n = snprintf(big, 64, "GET http://example.com/ HTTP/1.1\r\nX: ");
    memset(big + n, 'a', STK_PROXY_HEAD_MAX + 64 - (size_t)n);
    assert_int_equal(stk_proxy_request_parse(big, STK_PROXY_HEAD_MAX + 64, &r, &why), -EMSGSIZE);
    free(big);
    struct stk_buf b = {0};
    stk_buf_printf(&b, "GET http://example.com/ HTTP/1.1\r\n");
    for (int i = 0; i <= STK_PROXY_HEADERS_MAX; i++)
        stk_buf_printf(&b, "H%d: v\r\n", i);
    stk_buf_printf(&b, "\r\n");
    assert_int_equal(stk_proxy_request_parse(stk_buf_str(&b), strlen(stk_buf_str(&b)), &r, &why),
                     -EMSGSIZE);
    stk_buf_free(&b);
}

static int framing(const char *head, struct stk_http_framing *f)
{
    struct stk_proxy_request r;
    const char *why = NULL;
    assert_true(parse(head, &r) > 0);
    int e = stk_proxy_request_framing(&r, f, &why);
    if (e < 0)
        assert_non_null(why);
    return e;
}

static void test_request_framing(void **state)
{
    (void)state;
    struct stk_http_framing f;
    assert_int_equal(framing("GET http://a.example/ HTTP/1.1\r\n\r\n", &f), 0);
    assert_int_equal(f.body, STK_BODY_NONE);
    assert_false(f.close);
    assert_int_equal(framing("POST http://a.example/ HTTP/1.1\r\nContent-Length: 12\r\n\r\n", &f),
                     0);
    assert_int_equal(f.body, STK_BODY_LENGTH);
    assert_int_equal(f.length, 12);
    assert_int_equal(framing("POST http://a.example/ HTTP/1.1\r\ncontent-length: 0\r\n"
                             "Connection: keep-alive, Close\r\n\r\n",
                             &f),
                     0);
    assert_int_equal(f.body, STK_BODY_NONE);
    assert_true(f.close);
    assert_int_equal(
        framing("POST http://a.example/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", &f), 0);
    assert_int_equal(f.body, STK_BODY_CHUNKED);
    assert_int_equal(framing("GET http://a.example/ HTTP/1.0\r\n\r\n", &f), 0);
    assert_true(f.close);
    /* what a smuggler sends is refused */
    static const char *const bad[] = {
        "POST http://a.example/ HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: "
        "chunked\r\n\r\n",
        "POST http://a.example/ HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        "POST http://a.example/ HTTP/1.1\r\nContent-Length: +3\r\n\r\n",
        "POST http://a.example/ HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n",
        "POST http://a.example/ HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "POST http://a.example/ HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        "POST http://a.example/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
        "Transfer-Encoding: chunked\r\n\r\n",
        "POST http://a.example/ HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        if (framing(bad[i], &f) != -EINVAL)
            fail_msg("accepted: %s", bad[i]);
}

static int response(const char *head, bool head_req, struct stk_proxy_response *r)
{
    const char *why = NULL;
    int n = stk_proxy_response_parse(head, strlen(head), head_req, r, &why);
    if (n < 0)
        assert_non_null(why);
    return n;
}

static void test_response_parse(void **state)
{
    (void)state;
    struct stk_proxy_response r;
    const char *h = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    assert_int_equal(response(h, false, &r), (int)strlen(h) - 5);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.f.body, STK_BODY_LENGTH);
    assert_int_equal(r.f.length, 5);
    assert_false(r.f.close);
    assert_int_equal(response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", false, &r), 0);
    assert_true(response(h, true, &r) > 0); /* HEAD: no body */
    assert_int_equal(r.f.body, STK_BODY_NONE);
    assert_true(response("HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n", false, &r) > 0);
    assert_int_equal(r.f.body, STK_BODY_NONE);
    assert_true(response("HTTP/1.1 100 Continue\r\n\r\n", false, &r) > 0);
    assert_int_equal(r.status, 100);
    assert_int_equal(r.f.body, STK_BODY_NONE);
    assert_true(response("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", false, &r) >
                0);
    assert_int_equal(r.f.body, STK_BODY_CHUNKED);
    assert_false(r.f.close);
    /* chunked beside a length: chunked ends it, the connection is not reused */
    assert_true(
        response("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                 false, &r) > 0);
    assert_int_equal(r.f.body, STK_BODY_CHUNKED);
    assert_true(r.f.close);
    assert_true(response("HTTP/1.1 200 OK\r\nX: y\r\n\r\n", false, &r) > 0);
    assert_int_equal(r.f.body, STK_BODY_CLOSE);
    assert_true(response("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false, &r) > 0);
    assert_true(r.f.close);
    assert_true(
        response("HTTP/1.1 200\r\nConnection: close\r\nContent-Length: 1\r\n\r\n", false, &r) > 0);
    assert_true(r.f.close);
    static const char *const bad[] = {
        "HTTP/2 200 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 099 OK\r\n\r\n",
        "HTTP/1.1 200OK\r\n\r\n",
        "HTTP/1.1 200 OK\nX: y\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX y\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        if (response(bad[i], false, &r) != -EINVAL)
            fail_msg("accepted: %s", bad[i]);
    size_t big = STK_PROXY_RESPONSE_HEAD_MAX + 16;
    char *b = malloc(big);
    memcpy(b, "HTTP/1.1 200 OK\r\nX: ", 20);
    memset(b + 20, 'a', big - 20);
    const char *why;
    assert_int_equal(stk_proxy_response_parse(b, big, false, &r, &why), -EMSGSIZE);
    free(b);
}

/* Scans s in pieces of step bytes; returns where the body ended or -1. */
static long chunked(const char *s, size_t step)
{
    struct stk_chunked c = {0};
    size_t n = strlen(s), at = 0;
    while (at < n) {
        size_t len = n - at < step ? n - at : step, used = 0;
        int r = stk_chunked_scan(&c, (const uint8_t *)s + at, len, &used);
        if (r < 0)
            return -2;
        assert_true(used <= len);
        at += used;
        if (r == 1)
            return (long)at;
        assert_int_equal(used, len);
    }
    return -1;
}

static void test_chunked(void **state)
{
    (void)state;
    const char *body = "5\r\nhello\r\nA;ext=1\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nNEXT";
    for (size_t step = 1; step < 60; step++)
        assert_int_equal(chunked(body, step), (long)strlen(body) - 4);
    assert_int_equal(chunked("0\r\n\r\n", 100), 5);
    assert_int_equal(chunked("5\r\nhel", 100), -1);
    static const char *const bad[] = {
        "\r\n",         "g\r\n",    "5\r\nhelloXX\r\n",       "5\nhello\r\n",     "-1\r\n",
        "0\r\nX\n\r\n", "0\r\n\rX", "ffffffffffffffffff\r\n", "5 \r\nhelloX\r\n", "0\r\nX: 1\rY",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        if (chunked(bad[i], 100) != -2)
            fail_msg("accepted: %s", bad[i]);
    /* a size line, an extension or trailers past their bounds */
    char *ext = malloc(STK_PROXY_CHUNK_LINE_MAX + 16);
    memset(ext, 'e', STK_PROXY_CHUNK_LINE_MAX + 15);
    ext[0] = '1';
    ext[1] = ';';
    ext[STK_PROXY_CHUNK_LINE_MAX + 15] = '\0';
    assert_int_equal(chunked(ext, 100), -2);
    free(ext);
    struct stk_buf b = {0};
    stk_buf_printf(&b, "0\r\n");
    for (int i = 0; i < 600; i++)
        stk_buf_printf(&b, "X-Trailer-%d: %s\r\n", i, "vvvvvvvvvvvvvvvvvvvv");
    stk_buf_printf(&b, "\r\n");
    assert_int_equal(chunked(stk_buf_str(&b), 100), -2);
    stk_buf_free(&b);
}

static void test_allow_hosts(void **state)
{
    (void)state;
    struct stk_allow_host h;
    const char *why;
    assert_true(stk_allow_host_parse("pypi.org", &h, &why));
    assert_string_equal(h.name, "pypi.org");
    assert_false(h.wildcard);
    assert_int_equal(h.port, 443);
    assert_true(stk_allow_host_match(&h, "pypi.org", 443));
    assert_false(stk_allow_host_match(&h, "pypi.org", 80));
    assert_false(stk_allow_host_match(&h, "x.pypi.org", 443));
    assert_false(stk_allow_host_match(&h, "evilpypi.org", 443));
    assert_true(stk_allow_host_parse("*.githubusercontent.com:8443", &h, &why));
    assert_true(h.wildcard);
    assert_int_equal(h.port, 8443);
    assert_true(stk_allow_host_match(&h, "raw.githubusercontent.com", 8443));
    assert_true(stk_allow_host_match(&h, "a.b.githubusercontent.com", 8443));
    assert_false(stk_allow_host_match(&h, "githubusercontent.com", 8443));
    assert_false(stk_allow_host_match(&h, "xgithubusercontent.com", 8443));
    assert_false(stk_allow_host_match(&h, "raw.githubusercontent.com", 443));
    static const char *const bad[] = {
        "",          "*",          "*.com",          "com",           "localhost",
        "PyPI.org",  "pypi.org:0", "pypi.org:65536", "pypi.org:",     "pypi.org:+1",
        "a.*.org",   "*pypi.org",  "10.0.0.1",       "10.0.0.1:443",  "[::1]:443",
        "pypi.org.", "-a.org",     "a_b.org",        "pypi.org:443x", "**.pypi.org",
    };
    for (size_t i = 0; i < STK_ARRAY_SIZE(bad); i++) {
        why = NULL;
        if (stk_allow_host_parse(bad[i], &h, &why))
            fail_msg("\"%s\" was accepted", bad[i]);
        assert_non_null(why);
    }
}

static size_t read_corpus(const char *name, uint8_t *buf, size_t n)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/tests/fuzz/corpus/tls_hello/%s", ROOT, name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t got = fread(buf, 1, n, f);
    fclose(f);
    assert_true(got > 50);
    return got;
}

static void test_client_hello(void **state)
{
    (void)state;
    uint8_t hello[4096], split[4200];
    char sni[256];
    size_t n = read_corpus("openssl-sni", hello, sizeof(hello));
    assert_int_equal(stk_tls_client_hello_sni(hello, n, sni), 1);
    assert_string_equal(sni, "pypi.org");
    for (size_t i = 0; i < n; i++)
        assert_int_equal(stk_tls_client_hello_sni(hello, i, sni), 0);
    /* the same handshake in two records */
    size_t body = n - 5, first = 40;
    memcpy(split, hello, 3);
    split[3] = 0;
    split[4] = (uint8_t)first;
    memcpy(split + 5, hello + 5, first);
    memcpy(split + 5 + first, hello, 3);
    split[5 + first + 3] = (uint8_t)((body - first) >> 8);
    split[5 + first + 4] = (uint8_t)(body - first);
    memcpy(split + 10 + first, hello + 5 + first, body - first);
    assert_int_equal(stk_tls_client_hello_sni(split, n + 5, sni), 1);
    assert_string_equal(sni, "pypi.org");

    n = read_corpus("openssl-nosni", hello, sizeof(hello));
    assert_int_equal(stk_tls_client_hello_sni(hello, n, sni), -ENOENT);
    static const uint8_t plain[] = "GET / HTTP/1.1\r\n\r\n";
    assert_int_equal(stk_tls_client_hello_sni(plain, sizeof(plain) - 1, sni), -EINVAL);
    /* a handshake that is not a ClientHello */
    static const uint8_t server_hello[] = {0x16, 3, 3, 0, 4, 2, 0, 0, 0};
    assert_int_equal(stk_tls_client_hello_sni(server_hello, sizeof(server_hello), sni), -EINVAL);
    /* a message claiming more than the bound */
    static const uint8_t huge[] = {0x16, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff};
    assert_int_equal(stk_tls_client_hello_sni(huge, sizeof(huge), sni), -EMSGSIZE);
}

static void test_addresses(void **state)
{
    (void)state;
    struct stk_cidr deny[1], pool[1], host[1], a;
    assert_int_equal(stk_cidr_parse("10.43.0.0/16", &deny[0], NULL), 0);
    assert_int_equal(stk_cidr_parse("10.88.0.0/16", &pool[0], NULL), 0);
    assert_int_equal(stk_addr_parse("192.0.2.7", &host[0]), 0);
    struct stk_proxy_config c = {.deny = deny, .n_deny = 1, .deny_extra = pool, .n_deny_extra = 1};
    static const struct {
        const char *addr;
        bool ok;
    } cases[] = {
        {"93.184.216.34", true},    {"2606:4700::1", true},      {"127.0.0.53", false},
        {"169.254.169.254", false}, {"0.0.0.0", false},          {"::1", false},
        {"fe80::1", false},         {"::ffff:127.0.0.1", false}, {"224.0.0.1", false},
        {"10.43.0.10", false},      {"10.88.0.1", false},        {"192.0.2.7", false},
        {"192.0.2.8", true},
    };
    for (size_t i = 0; i < STK_ARRAY_SIZE(cases); i++) {
        const char *why = NULL;
        assert_int_equal(stk_addr_parse(cases[i].addr, &a), 0);
        bool ok = stk_proxy_addr_allowed(&c, &a, host, 1, &why);
        if (ok != cases[i].ok)
            fail_msg("%s: %s", cases[i].addr, ok ? "allowed" : why);
        if (!ok)
            assert_non_null(why);
    }
}

static void test_binding_map(void **state)
{
    (void)state;
    char name[64];
    assert_true(stk_binding_name("github.bindings.stockade.internal", name));
    assert_string_equal(name, "github");
    assert_false(stk_binding_name("a.b.bindings.stockade.internal", name));
    assert_false(stk_binding_name("bindings.stockade.internal", name));
    assert_false(stk_binding_name("github.bindings.stockade.internal.evil.com", name));
    struct stk_binding_target *t = malloc(sizeof(*t));
    const char *why;
    static const char path[] = "/repos/x?page=2";
    assert_int_equal(stk_binding_map("https://api.github.com/v3/", path, strlen(path), t, &why), 0);
    assert_true(t->tls);
    assert_string_equal(t->host, "api.github.com");
    assert_int_equal(t->port, 443);
    assert_string_equal(t->path, "/v3/repos/x?page=2");
    assert_int_equal(stk_binding_map("https://Store.example.com:8443", "/", 1, t, &why), 0);
    assert_string_equal(t->host, "store.example.com");
    assert_int_equal(t->port, 8443);
    assert_string_equal(t->path, "/");
    static const char *const bad_paths[] = {"/../admin", "/a/..", "/%2e%2E/x", "/a/./b",
                                            "/.%2e",     "x",     "/a b",      "/a#f"};
    for (size_t i = 0; i < STK_ARRAY_SIZE(bad_paths); i++)
        if (stk_binding_map("https://api.github.com/v3", bad_paths[i], strlen(bad_paths[i]), t,
                            &why) == 0)
            fail_msg("%s was mapped to %s", bad_paths[i], t->path);
    /* dots inside a segment are a name, not a climb */
    assert_int_equal(stk_binding_map("https://h.example.com", "/a..b/.c/x?q=..", 15, t, &why), 0);
    assert_int_equal(stk_binding_map("http://h.example.com", "/", 1, t, &why), -EPROTONOSUPPORT);
    assert_int_equal(stk_binding_map("https://10.0.0.1", "/", 1, t, &why), -EPROTONOSUPPORT);
    free(t);
}

static void test_credential_sources(void **state)
{
    (void)state;
    char *v = NULL;
    const char *why = NULL;
    setenv("STK_TEST_CRED", "s3cr3t-value", 1);
    struct stk_cred_ref env = {.source = STK_CRED_ENV, .ref = "STK_TEST_CRED"};
    assert_int_equal(stk_credential_read(&env, &v, &why), 0);
    assert_string_equal(v, "s3cr3t-value");
    stk_credential_free(v);
    setenv("STK_TEST_CRED", "a\r\nX-Injected: 1", 1);
    assert_int_equal(stk_credential_read(&env, &v, &why), -EINVAL);
    unsetenv("STK_TEST_CRED");
    assert_int_equal(stk_credential_read(&env, &v, &why), -ENOENT);

    char path[] = "/tmp/stk-cred-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "file-secret\n", 12), 12);
    close(fd);
    struct stk_cred_ref file = {.source = STK_CRED_FILE, .ref = path};
    assert_int_equal(stk_credential_read(&file, &v, &why), 0);
    assert_string_equal(v, "file-secret");
    stk_credential_free(v);
    unlink(path);
    assert_true(stk_credential_read(&file, &v, &why) < 0);
    struct stk_cred_ref dir = {.source = STK_CRED_FILE, .ref = "/tmp"};
    assert_int_equal(stk_credential_read(&dir, &v, &why), -EINVAL);
    struct stk_cred_ref kube = {.source = STK_CRED_KUBERNETES_SECRET, .ref = "ns/name", .key = "k"};
    assert_int_equal(stk_credential_read(&kube, &v, &why), -ENOTSUP);
    assert_non_null(why);
}

static void file_refused(const char *text, const char *needle)
{
    struct stk_proxy_file *f = NULL;
    struct stk_error *err = NULL;
    assert_true(stk_proxy_file_parse(text, strlen(text), &f, &err) < 0);
    if (!strstr(err->msg, needle))
        print_error("%s\n", err->msg);
    assert_non_null(strstr(err->msg, needle));
    stk_error_free(err);
}

static void test_proxy_file(void **state)
{
    (void)state;
    const char *ok = "{\"sandbox\":\"s1\",\"allowHosts\":[\"pypi.org:443\",\"*.ex.com:80\"],"
                     "\"deny\":[\"169.254.169.254/32\"],\"bindings\":[{\"name\":\"gh\","
                     "\"url\":\"https://api.github.com\",\"source\":\"kubernetesSecret\","
                     "\"ref\":\"ns/gh\",\"key\":\"token\",\"header\":\"X-Key\"}]}";
    struct stk_proxy_file *f = NULL;
    struct stk_error *err = NULL;
    assert_int_equal(stk_proxy_file_parse(ok, strlen(ok), &f, &err), 0);
    assert_string_equal(f->sandbox, "s1");
    assert_int_equal(f->n_allow, 2);
    assert_true(f->allow[1].wildcard);
    assert_int_equal(f->allow[1].port, 80);
    assert_int_equal(f->n_deny, 1);
    assert_int_equal(f->n_bindings, 1);
    assert_int_equal(f->bindings[0].credential.source.v, STK_CRED_KUBERNETES_SECRET);
    assert_string_equal(f->bindings[0].credential.key.v, "token");
    assert_string_equal(f->bindings[0].inject.header.v, "X-Key");
    assert_false(f->bindings[0].inject.format.meta.set);
    stk_proxy_file_free(f);

    file_refused("{\"sandbox\":\"s\",\"extra\":1}", "unknown key \"extra\"");
    file_refused("{\"allowHosts\":[]}", "sandbox");
    file_refused("{\"sandbox\":\"s\",\"allowHosts\":[\"1.2.3.4\"]}", "allowHosts[0]");
    file_refused("{\"sandbox\":\"s\",\"deny\":[\"nope\"]}", "deny[0]");
    file_refused("{\"sandbox\":\"s\",\"bindings\":[{\"name\":\"a\",\"url\":\"http://x\","
                 "\"source\":\"env\",\"ref\":\"T\"}]}",
                 "not https");
    file_refused("{\"sandbox\":\"s\",\"bindings\":[{\"name\":\"a\",\"url\":\"https://x\","
                 "\"source\":\"kubernetesSecret\",\"ref\":\"n/s\"}]}",
                 "key is required");
    file_refused("{\"sandbox\":\"s\",\"bindings\":[{\"name\":\"a\",\"url\":\"https://x\","
                 "\"source\":\"env\",\"ref\":\"T\",\"header\":\"Bad Header\"}]}",
                 "HTTP field name");
    file_refused("{\"sandbox\":\"s\",\"bindings\":[{\"name\":\"a\",\"url\":\"https://x\","
                 "\"source\":\"env\",\"ref\":\"T\"},{\"name\":\"a\",\"url\":\"https://y\","
                 "\"source\":\"env\",\"ref\":\"U\"}]}",
                 "a second binding");
    file_refused("{\"sandbox\":\"s\",\"sandbox\":\"t\"}", "line");
}

static int fake_kube(const char *ns, const char *name, const char *key, char **ret,
                     const char **why)
{
    (void)why;
    *ret = stk_xasprintf("%s|%s|%s", ns, name, key);
    return 0;
}

static void test_credential_kube_reader(void **state)
{
    (void)state;
    char *v = NULL;
    const char *why = NULL;
    struct stk_cred_ref c = {.source = STK_CRED_KUBERNETES_SECRET, .ref = "ns1/sec", .key = "k"};
    stk_credential_set_kube(fake_kube);
    assert_int_equal(stk_credential_read(&c, &v, &why), 0);
    assert_string_equal(v, "ns1|sec|k");
    stk_credential_free(v);
    c.ref = "no-namespace";
    assert_true(stk_credential_read(&c, &v, &why) < 0);
    assert_non_null(strstr(why, "NAMESPACE/NAME"));
    stk_credential_set_kube(NULL);
    c.ref = "ns1/sec";
    assert_int_equal(stk_credential_read(&c, &v, &why), -ENOTSUP);
}

/* ---- records read back (the proxy Pod's log on Kubernetes) ---------------------- */

static json_t *parse_ok(const char *text)
{
    json_t *o = NULL;
    const char *why = NULL;
    int r = stk_proxy_record_parse(text, strlen(text), "canary", "sb-1", &o, &why);
    if (r < 0)
        fail_msg("%s: %s", text, why);
    return o;
}

static const char *parse_bad(const char *text, size_t len)
{
    json_t *o = NULL;
    const char *why = NULL;
    assert_int_equal(stk_proxy_record_parse(text, len, "canary", "sb-1", &o, &why), -EINVAL);
    assert_null(o);
    assert_non_null(why);
    return why;
}

static void test_record_parse(void **state)
{
    (void)state;
    /* the proxy's own records: every field kept, the sandbox's id set */
    json_auto_t *a = parse_ok(
        "{\"sandbox\":\"canary\",\"decision\":\"allowed\",\"kind\":\"connect\",\"method\":"
        "\"CONNECT\",\"host\":\"pypi.org\",\"port\":443,\"rule\":\"spec.network.allowHosts[0] "
        "pypi.org:443\",\"address\":\"151.101.0.223\"}");
    json_auto_t *want =
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:i,s:s,s:s}", "sandbox", "sb-1", "decision", "allowed",
                  "kind", "connect", "method", "CONNECT", "host", "pypi.org", "port", 443, "rule",
                  "spec.network.allowHosts[0] pypi.org:443", "address", "151.101.0.223");
    assert_true(json_equal(a, want));
    json_auto_t *b = parse_ok(
        "{\"sandbox\":\"canary\",\"decision\":\"binding\",\"kind\":\"http\",\"method\":\"GET\","
        "\"host\":\"api.github.com\",\"port\":443,\"binding\":\"github\",\"path\":\"/user\","
        "\"address\":\"2001:db8::1\",\"status\":200,\"strippedHeaders\":1}");
    assert_int_equal(json_object_size(b), 11);
    assert_int_equal(json_integer_value(json_object_get(b, "status")), 200);
    json_auto_t *p = parse_ok("{\"sandbox\":\"canary\",\"decision\":\"denied\",\"peer\":"
                              "\"10.88.0.9\",\"reason\":\"a connection from elsewhere\"}");
    assert_string_equal(json_string_value(json_object_get(p, "peer")), "10.88.0.9");
    json_auto_t *s = parse_ok("{\"sandbox\":\"canary\",\"decision\":\"suppressed\",\"dropped\":7}");
    assert_int_equal(json_integer_value(json_object_get(s, "dropped")), 7);

    /* fields no record has are not copied, whatever they hold */
    json_auto_t *c = parse_ok(
        "{\"sandbox\":\"canary\",\"decision\":\"binding\",\"binding\":\"github\",\"status\":200,"
        "\"authorization\":\"Bearer stk-secret\",\"headers\":{\"Authorization\":\"Bearer x\"},"
        "\"credential\":\"stk-secret\",\"X-Api-Key\":\"stk-secret\",\"value\":[1]}");
    assert_int_equal(json_object_size(c), 4);
    char *text = json_dumps(c, JSON_COMPACT);
    assert_null(strstr(text, "stk-secret"));
    assert_null(strstr(text, "Bearer"));
    free(text);

    /* not a record */
    parse_bad("", 0);
    parse_bad("not json", 8);
    parse_bad("[1,2]", 5);
    parse_bad("{\"decision\":\"allowed\"}", 22); /* no sandbox */
    const char *other = "{\"sandbox\":\"other\",\"decision\":\"allowed\"}";
    assert_string_equal(parse_bad(other, strlen(other)), "not a record of this sandbox");
    const char *bad[] = {
        "{\"sandbox\":\"canary\"}",
        "{\"sandbox\":\"canary\",\"decision\":\"maybe\"}",
        "{\"sandbox\":\"canary\",\"decision\":7}",
        "{\"sandbox\":\"canary\",\"decision\":\"allowed\",\"port\":\"443\"}",
        "{\"sandbox\":\"canary\",\"decision\":\"allowed\",\"port\":70000}",
        "{\"sandbox\":\"canary\",\"decision\":\"allowed\",\"port\":4.5}",
        "{\"sandbox\":\"canary\",\"decision\":\"allowed\",\"port\":99999999999999999999999}",
        "{\"sandbox\":\"canary\",\"decision\":\"allowed\",\"host\":{\"a\":1}}",
        "{\"sandbox\":\"canary\",\"decision\":\"allowed\",\"host\":\"\"}",
        "{\"sandbox\":\"canary\",\"decision\":\"allowed\",\"host\":\"a\\u001b[31mred\"}",
        "{\"sandbox\":\"canary\",\"decision\":\"allowed\",\"host\":\"a\\u009b31m\"}",
        "{\"sandbox\":\"canary\",\"decision\":\"allowed\",\"reason\":\"two\\nlines\"}",
        "{\"sandbox\":\"canary\",\"decision\":\"allowed\",\"method\":\"GE T\"}",
        "{\"sandbox\":\"canary\",\"decision\":\"allowed\",\"method\":\"AVERYLONGMETHODNAME\"}",
        "{\"sandbox\":\"canary\",\"decision\":\"allowed\",\"kind\":\"udp\"}",
        "{\"sandbox\":\"canary\",\"decision\":\"allowed\",\"address\":\"pypi.org\"}",
        "{\"sandbox\":\"canary\",\"decision\":\"binding\",\"binding\":\"Git_Hub\"}",
        "{\"sandbox\":\"canary\",\"decision\":\"binding\",\"path\":\"user\"}",
        "{\"sandbox\":\"canary\",\"decision\":\"binding\",\"status\":42}",
        "{\"sandbox\":\"canary\",\"decision\":\"allowed\",\"dropped\":3}",
        "{\"sandbox\":\"canary\",\"decision\":\"suppressed\"}",
        "{\"sandbox\":\"canary\",\"decision\":\"suppressed\",\"dropped\":-1}",
        "{\"sandbox\":\"canary\",\"decision\":\"allowed\",\"decision\":\"denied\"}",
        "{\"sandbox\":\"canary\",\"decision\":\"allowed\",\"host\":\"a\\u0000b\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        parse_bad(bad[i], strlen(bad[i]));
    /* bounded before it is parsed */
    char *big = malloc(STK_PROXY_RECORD_MAX + 100);
    int n = snprintf(big, STK_PROXY_RECORD_MAX + 100,
                     "{\"sandbox\":\"canary\",\"decision\":\"denied\",\"reason\":\"");
    memset(big + n, 'x', STK_PROXY_RECORD_MAX);
    strcpy(big + n + STK_PROXY_RECORD_MAX - 20, "\"}");
    assert_string_equal(parse_bad(big, strlen(big)), "longer than a record");
    free(big);
}

static void test_record_budget(void **state)
{
    (void)state;
    struct stk_proxy_budget b = {.limit = 3};
    uint64_t dropped = 99;
    for (int i = 0; i < 3; i++) {
        assert_true(stk_proxy_budget_take(&b, 100, &dropped));
        assert_int_equal(dropped, 0);
    }
    assert_false(stk_proxy_budget_take(&b, 100, &dropped));
    assert_false(stk_proxy_budget_take(&b, 100, &dropped));
    assert_int_equal(dropped, 0);
    /* the next second reports the two dropped, once */
    assert_true(stk_proxy_budget_take(&b, 101, &dropped));
    assert_int_equal(dropped, 2);
    assert_true(stk_proxy_budget_take(&b, 102, &dropped));
    assert_int_equal(dropped, 0);
    b.dropped = 5;
    assert_int_equal(stk_proxy_budget_flush(&b), 5);
    assert_int_equal(stk_proxy_budget_flush(&b), 0);
    json_auto_t *o = stk_proxy_suppressed_record("sb-1", 2);
    char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(text, "{\"decision\":\"suppressed\",\"dropped\":2,\"sandbox\":\"sb-1\"}");
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_connect),
        cmocka_unit_test(test_request_absolute),
        cmocka_unit_test(test_request_incomplete_and_refused),
        cmocka_unit_test(test_request_limits),
        cmocka_unit_test(test_request_framing),
        cmocka_unit_test(test_response_parse),
        cmocka_unit_test(test_chunked),
        cmocka_unit_test(test_allow_hosts),
        cmocka_unit_test(test_client_hello),
        cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_binding_map),
        cmocka_unit_test(test_credential_sources),
        cmocka_unit_test(test_proxy_file),
        cmocka_unit_test(test_credential_kube_reader),
        cmocka_unit_test(test_record_parse),
        cmocka_unit_test(test_record_budget),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
