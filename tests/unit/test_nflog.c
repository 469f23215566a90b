/* SPDX-License-Identifier: Apache-2.0 */
/* The NFLOG reader: in a private network namespace, an output chain logs
 * with the sandbox chains' prefix format; the reader must turn the lines
 * into egress_denied events naming the deny that applied, rate-limited
 * with a counted summary. Needs root (skips otherwise). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <nftables/libnftables.h>
#include <sched.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "driver/local/net.h"

#define ROOT  STK_SOURCE_ROOT
#define GROUP 5

static struct stk_docset *sb_doc, *env_doc;
static struct stk_boundary *datalab;

static int run(const char *const *argv)
{
    pid_t pid = fork();
    if (pid == 0) {
        union {
            const char *const *c;
            char *const *m;
        } av = {.c = argv};
        execvp(argv[0], av.m);
        _exit(127);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static int setup(void **state)
{
    (void)state;
    if (geteuid() != 0 || unshare(CLONE_NEWNET) < 0)
        return 0; /* the tests skip */
    const char *lo[] = {"ip", "link", "set", "lo", "up", NULL};
    const char *svc[] = {"ip", "addr", "add", "10.43.0.10/32", "dev", "lo", NULL};
    if (run(lo) || run(svc))
        return -1;
    struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
    int r = nft_run_cmd_from_buffer(
        ctx, "table inet t {\n chain out {\n  type filter hook output priority 0;\n"
             "  ip daddr 127.0.0.2 log group 5 prefix \"stk:u1:host:\" drop\n"
             "  udp dport 9 log group 5 prefix \"stk:u1:\" drop\n"
             "  ip daddr 10.43.0.10 tcp dport 443 log group 5 prefix \"stk:u1:\" drop\n"
             "  udp dport 10 log group 5 prefix \"other:\" drop\n }\n}\n");
    nft_ctx_free(ctx);
    if (r)
        return -1;
    struct stk_diags d = {0};
    _cleanup_free_ char *sp = stk_xasprintf("%s/examples/datalab/s-jeff.yaml", ROOT);
    _cleanup_free_ char *ep = stk_xasprintf("%s/examples/datalab/environment.yaml", ROOT);
    if (stk_docset_load(sp, &d, &sb_doc) < 0 || stk_docset_load(ep, &d, &env_doc) < 0 ||
        stk_resolve(sb_doc->docs[0].sandbox, sp, env_doc->docs[0].env, ep, &d, &datalab) < 0)
        return -1;
    stk_diags_free(&d);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    stk_boundary_free(datalab);
    stk_docset_free(sb_doc);
    stk_docset_free(env_doc);
    return 0;
}

static void send_udp(const char *addr, uint16_t port)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, addr, &sa.sin_addr);
    (void)sendto(fd, "x", 1, 0, (struct sockaddr *)&sa, sizeof(sa));
    close(fd);
}

static void send_tcp(const char *addr, uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, addr, &sa.sin_addr);
    (void)connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    close(fd);
}

/* Everything readable within 300 ms. */
static size_t drain(struct stk_egress_log *l, struct stk_egress_event *ev, size_t max)
{
    size_t n = 0;
    struct stk_error *err = NULL;
    int r;
    while (n < max && (r = stk_egress_log_read(l, 300, ev + n, max - n, &err)) > 0)
        n += (size_t)r;
    assert_null(err);
    return n;
}

/* cmocka's skip(): needs root and a private network namespace */
static bool unavailable(void)
{
    return datalab == NULL;
}

static void test_events_name_the_deny(void **state)
{
    (void)state;
    if (unavailable())
        skip();
    struct stk_egress_log *l = NULL;
    struct stk_error *err = NULL;
    assert_int_equal(stk_egress_log_open(GROUP, &l, &err), 0);
    assert_int_equal(stk_egress_log_watch(l, "u1", datalab), 0);

    send_udp("127.0.0.1", 9);
    send_udp("127.0.0.2", 7);
    send_tcp("10.43.0.10", 443);
    send_udp("127.0.0.1", 10); /* not stockade's prefix: ignored */
    struct stk_egress_event ev[16];
    size_t n = drain(l, ev, 16);
    assert_int_equal(n, 3);

    assert_int_equal(ev[0].type, STK_EGRESS_DENIED);
    assert_string_equal(ev[0].sandbox, "u1");
    assert_string_equal(ev[0].dst, "127.0.0.1");
    assert_int_equal(ev[0].port, 9);
    assert_string_equal(ev[0].proto, "UDP");
    assert_string_equal(ev[0].policy, "deny-egress");

    assert_string_equal(ev[1].dst, "127.0.0.2");
    assert_string_equal(ev[1].policy, "host");

    /* the service CIDR is excepted from allow-external-egress */
    assert_string_equal(ev[2].dst, "10.43.0.10");
    assert_int_equal(ev[2].port, 443);
    assert_string_equal(ev[2].proto, "TCP");
    assert_string_equal(ev[2].policy, "allow-external-egress");
    assert_string_equal(ev[2].except, "10.43.0.0/16");

    struct stk_buf js = {0};
    stk_egress_event_json(&ev[2], &js);
    assert_string_equal(stk_buf_str(&js),
                        "{\"type\":\"egress_denied\",\"sandbox\":\"u1\",\"dst\":\"10.43.0.10\","
                        "\"port\":443,\"proto\":\"TCP\",\"policy\":\"allow-external-egress\","
                        "\"except\":\"10.43.0.0/16\"}");
    stk_buf_free(&js);
    stk_egress_log_close(l);
}

static void test_rate_limit_and_summary(void **state)
{
    (void)state;
    if (unavailable())
        skip();
    struct stk_egress_log *l = NULL;
    struct stk_error *err = NULL;
    assert_int_equal(stk_egress_log_open(GROUP, &l, &err), 0);
    stk_egress_log_set_rate(l, 4);
    for (int i = 0; i < 12; i++)
        send_udp("127.0.0.1", 9);
    struct stk_egress_event ev[32];
    size_t n = drain(l, ev, 32);
    size_t m = stk_egress_log_flush(l, ev + n, 32 - n);
    size_t denied = 0;
    uint64_t suppressed = 0;
    for (size_t i = 0; i < n + m; i++) {
        if (ev[i].type == STK_EGRESS_DENIED)
            denied++;
        else
            suppressed += ev[i].suppressed;
    }
    /* the sends may straddle a second: at most two windows' worth */
    assert_true(denied >= 4 && denied <= 8);
    assert_int_equal(denied + suppressed, 12);
    /* unwatched sandboxes are reported too, as plain deny-egress */
    assert_string_equal(ev[0].policy, "deny-egress");
    stk_egress_log_close(l);
}

static void test_group_taken(void **state)
{
    (void)state;
    if (unavailable())
        skip();
    struct stk_egress_log *a = NULL, *b = NULL;
    struct stk_error *err = NULL;
    assert_int_equal(stk_egress_log_open(GROUP, &a, &err), 0);
    assert_true(stk_egress_log_open(GROUP, &b, &err) < 0);
    assert_non_null(err);
    stk_error_freep(&err);
    stk_egress_log_close(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_events_name_the_deny),
        cmocka_unit_test(test_rate_limit_and_summary),
        cmocka_unit_test(test_group_taken),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
