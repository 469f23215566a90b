/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The worker's half of a port connection (ports.c has the server's): the
 * session connects to the declared port (stk_session_connect: the check and
 * the port_connect record) and the bytes are relayed between it and the
 * client's socket. Linked into the executable with worker.c: plain sockets,
 * no libevent, no TLS (over TLS the server's child holds the session and
 * hands this side a socketpair).
 */
#include "gateway/internal.h"
#include "gateway/http.h"
#include "gateway/worker.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

bool gw_send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

static void reply_error(int sock, int status, const char *code, const char *msg)
{
    json_t *j = gw_error_json(GW_E_BAD_REQUEST, msg);
    json_object_set_new(json_object_get(j, "error"), "code", json_string(code));
    char *body = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(j);
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     status,
                     status == 403   ? "Forbidden"
                     : status == 409 ? "Conflict"
                     : status == 501 ? "Not Implemented"
                     : status == 404 ? "Not Found"
                                     : "Bad Gateway",
                     strlen(body ? body : "{}") + 1);
    (void)!send(sock, head, (size_t)n, MSG_NOSIGNAL);
    (void)!send(sock, body ? body : "{}", strlen(body ? body : "{}"), MSG_NOSIGNAL);
    (void)!send(sock, "\n", 1, MSG_NOSIGNAL);
    free(body);
}

/* Blocking relay until both directions end; without upgrade only the
 * sandbox's answer flows (a second request on the connection would reach
 * the sandbox unchecked). The request is not followed by a half-close: a
 * Kubernetes port connection has none (pods/portforward), and the end of
 * the caller's side ended the connection before the answer came. */
static void relay(int sock, int sfd, bool upgrade)
{
    static char buf[GW_PORT_BUF];
    bool open_c = upgrade, open_s = true;
    while (open_c || open_s) {
        struct pollfd p[2] = {{.fd = open_c ? sock : -1, .events = POLLIN},
                              {.fd = open_s ? sfd : -1, .events = POLLIN}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        for (int i = 0; i < 2; i++) {
            if (!p[i].revents)
                continue;
            int from = i == 0 ? sock : sfd, to = i == 0 ? sfd : sock;
            ssize_t n = read(from, buf, sizeof(buf));
            if (n > 0 && gw_send_all(to, buf, (size_t)n))
                continue;
            if (n > 0)
                return; /* the other side is gone */
            (void)shutdown(to, SHUT_WR);
            if (i == 0)
                open_c = false;
            else
                open_s = false;
        }
    }
}

void gw_port_proxy(struct stk_session *s, const char *id, uint16_t port, const char *head,
                   bool upgrade, bool raw, int sock)
{
    signal(SIGPIPE, SIG_IGN);
    int sfd = -1;
    struct stk_error *err = NULL;
    int r = stk_session_connect(s, id, port, "gateway", &sfd, &err);
    if (r < 0) {
        int st = r == -EPERM ? 403 : r == -EBUSY ? 409 : r == -EOPNOTSUPP ? 501 : 502;
        const char *code = st == 403   ? "forbidden"
                           : st == 409 ? "conflict"
                           : st == 501 ? "not_implemented"
                                       : "bad_gateway";
        reply_error(sock, st, code, err ? err->msg : strerror(-r));
        stk_error_free(err);
        return;
    }
    static const char up101[] = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                                "Upgrade: " STK_GW_TCP_UPGRADE "\r\n\r\n";
    if (raw ? gw_send_all(sock, up101, sizeof(up101) - 1) : gw_send_all(sfd, head, strlen(head)))
        relay(sock, sfd, upgrade);
    close(sfd);
}
