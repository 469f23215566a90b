/* SPDX-License-Identifier: Apache-2.0 */
/*
 * GET /v1/sandboxes/{id}/ports/{port}/REST (docs/api.md, "Ports"): HTTP and
 * WebSocket to a declared port of the sandbox (spec.ports), authorized as
 * exec. After authorization the connection leaves the event loop (exec.c's
 * handover): a child starts a worker (its own session) that connects to the
 * port through stk_session_connect (the declared-port check, a port_connect
 * audit record) and relays. The request goes on as GET REST with the
 * client's headers but its credentials; one request per connection
 * (Connection: close), or an Upgrade (WebSocket) relayed both ways. The
 * gateway's own upgrade, stockade-tcp.v1 (port-forward --server), answers
 * 101 itself once the port is connected and relays raw bytes. Over TLS the
 * child keeps the connection's TLS state and relays between it and a
 * socketpair whose other end the worker gets.
 */
#include "gateway/server.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/queue.h>
#include <event2/keyvalq_struct.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define PORT_HEAD_MAX (32 * 1024)

/* Headers that stay at the gateway: the caller's credentials, hop-by-hop
 * headers the gateway decides itself. */
static bool header_dropped(const char *key)
{
    static const char *const dropped[] = {"Authorization",    "Proxy-Authorization",
                                          "Proxy-Connection", "Connection",
                                          "Keep-Alive",       "TE",
                                          "Trailer",          "Transfer-Encoding"};
    for (size_t i = 0; i < STK_ARRAY_SIZE(dropped); i++)
        if (!strcasecmp(key, dropped[i]))
            return true;
    return false;
}

/* NULL, or the Upgrade the client asks for. */
static const char *upgrade_asked(struct evhttp_request *req)
{
    struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    const char *up = evhttp_find_header(h, "Upgrade");
    const char *conn = evhttp_find_header(h, "Connection");
    return up && conn && strcasestr(conn, "upgrade") ? up : NULL;
}

struct port_child_arg {
    const char *id;
    uint16_t port;
    const char *head;
    bool upgrade, raw;
};

/* The relay's worker: a server that stops (SIGTERM to this child, as to
 * an exec's relay) ends the streams it relays. */
static volatile pid_t port_worker;

static void port_child_stop(int sig)
{
    if (port_worker > 0)
        kill(port_worker, sig);
    _exit(0);
}

static bool ssl_send_all(SSL *ssl, const char *p, size_t n)
{
    while (n) {
        int w = SSL_write(ssl, p, n > INT_MAX ? INT_MAX : (int)n);
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* Over TLS: between the client's TLS session (blocking) and the worker's
 * end of a socketpair, until the worker is done. Without an upgrade the
 * client is not read (the worker would not read it either). */
STK_NORETURN static void tls_relay(SSL *ssl, int sock, int pair, bool both_ways)
{
    static char buf[GW_PORT_BUF];
    bool open_c = both_ways;
    for (;;) {
        bool buffered = open_c && SSL_has_pending(ssl);
        struct pollfd p[2] = {{.fd = open_c ? sock : -1, .events = POLLIN},
                              {.fd = pair, .events = POLLIN}};
        if (poll(p, 2, buffered ? 0 : -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (buffered)
            p[0].revents |= POLLIN;
        if (p[0].revents) {
            int n = SSL_read(ssl, buf, sizeof(buf));
            if (n <= 0) {
                open_c = false; /* the client is done sending (or gone) */
                (void)shutdown(pair, SHUT_WR);
            } else if (!gw_send_all(pair, buf, (size_t)n)) {
                break;
            }
        }
        if (p[1].revents) {
            ssize_t n = read(pair, buf, sizeof(buf));
            if (n <= 0 || !ssl_send_all(ssl, buf, (size_t)n))
                break;
        }
    }
    (void)SSL_shutdown(ssl); /* close_notify: the end is the end */
    (void)shutdown(sock, SHUT_WR);
    _exit(0);
}

STK_NORETURN static void port_child(struct gw_call *c, int sock, SSL *ssl, int done_w, void *arg)
{
    struct port_child_arg *a = arg;
    gw_child_signals();
    signal(SIGPIPE, SIG_IGN);
    int keep[] = {sock, done_w};
    gw_child_fds(keep, 2);
    (void)fcntl(sock, F_SETFL, fcntl(sock, F_GETFL) & ~O_NONBLOCK);
    int res[2], pair[2] = {-1, -1};
    if (pipe2(res, O_CLOEXEC) < 0)
        _exit(1);
    if (ssl && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0)
        _exit(1);
    json_t *job = json_pack("{s:s,s:s,s:i,s:s,s:b,s:b}", "op", "port", "id", a->id, "port", a->port,
                            "head", a->head, "upgrade", a->upgrade || a->raw, "raw", a->raw);
    int fds[] = {res[1], ssl ? pair[1] : sock};
    pid_t pid;
    sigset_t block, old_mask;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigprocmask(SIG_BLOCK, &block, &old_mask);
    if (gw_worker_spawn(c->g, c->actor, job, fds, 2, &pid) < 0)
        _exit(1);
    port_worker = pid;
    struct sigaction sa = {.sa_handler = port_child_stop};
    sigaction(SIGTERM, &sa, NULL);
    sigprocmask(SIG_SETMASK, &old_mask, NULL);
    close(res[1]);
    if (ssl) {
        close(pair[1]);
        tls_relay(ssl, sock, pair[0], a->upgrade || a->raw);
    }
    close(sock);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    _exit(0);
}

void gw_port_start(struct gw_call *c, const char *id, uint16_t port, const char *rest)
{
    const char *up = upgrade_asked(c->req);
    if (up && !strcasecmp(up, STK_GW_TCP_UPGRADE)) {
        /* a raw connection to the port: no request goes to the sandbox */
        struct port_child_arg a = {id, port, "", false, true};
        gw_handover(c, port_child, &a);
        return;
    }
    struct stk_buf head = {0};
    const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(c->req));
    stk_buf_printf(&head, "GET %s%s%s HTTP/1.1\r\n", rest, q ? "?" : "", q ? q : "");
    const struct evkeyval *kv;
    TAILQ_FOREACH(kv, evhttp_request_get_input_headers(c->req), next)
    {
        if (!header_dropped(kv->key))
            stk_buf_printf(&head, "%s: %s\r\n", kv->key, kv->value);
    }
    bool upgrade = up != NULL;
    stk_buf_printf(&head, "Connection: %s\r\nX-Forwarded-Prefix: /v1/sandboxes/%s/ports/%u\r\n\r\n",
                   upgrade ? "Upgrade" : "close", id, port);
    if (head.len > PORT_HEAD_MAX) {
        stk_buf_free(&head);
        gw_reply_error(c, GW_E_BAD_REQUEST, "the request head is over %d bytes", PORT_HEAD_MAX);
        return;
    }
    struct port_child_arg a = {id, port, stk_buf_str(&head), upgrade, false};
    gw_handover(c, port_child, &a);
    stk_buf_free(&head);
}
