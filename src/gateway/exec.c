/* SPDX-License-Identifier: Apache-2.0 */
/*
 * POST /v1/sandboxes/{id}:exec over an HTTP/1.1 Upgrade (docs/api.md).
 *
 * After authorization the connection leaves the event loop: a child process
 * takes its socket (and over TLS its TLS state), answers 101 and relays frames (the init protocol's
 * header: u8 type, u8 stream, u32 length) between the client and a worker
 * (worker.c) that runs stk_session_exec on pipes with its own session. The
 * server keeps the connection object, disabled, until the child exits, and
 * only then frees it: freeing shuts the socket down for writing, which
 * would cut the relay.
 */
#include "gateway/server.h"
#include "init/proto.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <limits.h>
#include <openssl/ssl.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>

#define FRAME_MAX 65536

enum {
    F_STDIN = STK_INITP_STDIN,
    F_STDIN_EOF = STK_INITP_STDIN_EOF,
    F_RESIZE = STK_INITP_RESIZE,
    F_KILL = STK_INITP_KILL,
    F_OUTPUT = 33,
    F_EXIT = 34,
    F_ERROR = 35,
};

struct gw_exec {
    struct stk_gw *g;
    struct evhttp_connection *evcon;
    pid_t pid;
    struct event *ev; /* the child's end-of-life pipe */
    int fd;
    struct gw_exec *next;
};

/* ---- the relay (in the child) ---- */

/* Over TLS, the connection's TLS state: the child has the server's copy of
 * it (the server never touches the connection again), and reads and
 * writes the socket (blocking) through it. */
static SSL *relay_ssl;

static bool sock_send(int sock, const void *p, size_t n)
{
    if (!relay_ssl)
        return send(sock, p, n, MSG_NOSIGNAL) == (ssize_t)n;
    for (size_t off = 0; off < n;) {
        size_t left = n - off;
        int w = SSL_write(relay_ssl, (const char *)p + off, left > INT_MAX ? INT_MAX : (int)left);
        if (w <= 0)
            return false;
        off += (size_t)w;
    }
    return true;
}

static bool sock_recv(int sock, void *p, size_t n)
{
    if (!relay_ssl)
        return recv(sock, p, n, MSG_WAITALL) == (ssize_t)n;
    for (size_t off = 0; off < n;) {
        size_t left = n - off;
        int r = SSL_read(relay_ssl, (char *)p + off, left > INT_MAX ? INT_MAX : (int)left);
        if (r <= 0)
            return false;
        off += (size_t)r;
    }
    return true;
}

static bool send_frame(int sock, uint8_t type, uint8_t stream, const void *p, size_t n)
{
    uint8_t h[6] = {type,      stream, (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8),
                    (uint8_t)n};
    return sock_send(sock, h, 6) && (n == 0 || sock_send(sock, p, n));
}

static void send_u32_pair(int sock, uint8_t type, uint32_t a, uint32_t b)
{
    uint8_t p[8] = {(uint8_t)(a >> 24), (uint8_t)(a >> 16), (uint8_t)(a >> 8), (uint8_t)a,
                    (uint8_t)(b >> 24), (uint8_t)(b >> 16), (uint8_t)(b >> 8), (uint8_t)b};
    (void)send_frame(sock, type, 0, p, 8);
}

static void send_error(int sock, int e, const char *msg)
{
    uint8_t p[5 + 512];
    uint32_t u = (uint32_t)(e < 0 ? -e : e);
    size_t n = strnlen(msg, 512);
    p[0] = (uint8_t)(u >> 24);
    p[1] = (uint8_t)(u >> 16);
    p[2] = (uint8_t)(u >> 8);
    p[3] = (uint8_t)u;
    p[4] = 0;
    memcpy(p + 5, msg, n);
    (void)send_frame(sock, F_ERROR, 0, p, 5 + n);
}

struct relay {
    int sock, in_w, out_r, err_r, res_r, ctl_w;
    uint8_t pending[FRAME_MAX]; /* stdin the process has not read yet */
    size_t pending_off, pending_n;
    /* a RESIZE or KILL frame the worker has not taken yet */
    uint8_t ctl[STK_INITP_HDR + 4];
    size_t ctl_off, ctl_n;
    bool stdin_eof, client_gone;
};

/* One frame from the client; false when the client is gone or broke the
 * protocol. The header goes through the init protocol's decoder (types and
 * the lengths each allows), RESIZE and KILL payloads through theirs, so
 * the worker passes on only what init accepts. */
static bool read_client_frame(struct relay *rl)
{
    uint8_t h[STK_INITP_HDR];
    if (!sock_recv(rl->sock, h, sizeof(h)))
        return false;
    struct stk_initp_hdr hd;
    if (stk_initp_hdr_decode(h, &hd) < 0 || (hd.type != F_STDIN && hd.type != F_STDIN_EOF &&
                                             hd.type != F_RESIZE && hd.type != F_KILL)) {
        send_error(rl->sock, EPROTO, "expected STDIN, STDIN_EOF, RESIZE or KILL frames");
        return false;
    }
    if (hd.type == F_STDIN && rl->stdin_eof) {
        send_error(rl->sock, EPROTO, "STDIN after STDIN_EOF");
        return false;
    }
    if (hd.type == F_RESIZE || hd.type == F_KILL) {
        uint8_t *p = rl->ctl + STK_INITP_HDR;
        uint16_t rows, cols;
        uint32_t sig;
        if (!sock_recv(rl->sock, p, hd.len))
            return false;
        if (hd.type == F_RESIZE && stk_initp_resize_decode(p, hd.len, &rows, &cols) < 0) {
            send_error(rl->sock, EINVAL, "RESIZE: rows and columns must be 1..4096");
            return false;
        }
        if (hd.type == F_KILL && stk_initp_kill_decode(p, hd.len, &sig) < 0) {
            send_error(rl->sock, EINVAL,
                       "KILL: the signal is not one of HUP INT QUIT KILL USR1 USR2 TERM CONT "
                       "STOP TSTP WINCH");
            return false;
        }
        memcpy(rl->ctl, h, sizeof(h));
        rl->ctl_off = 0;
        rl->ctl_n = sizeof(rl->ctl);
        return true;
    }
    if (hd.len && !sock_recv(rl->sock, rl->pending, hd.len))
        return false;
    rl->pending_off = 0;
    rl->pending_n = hd.len;
    if (hd.type == F_STDIN_EOF)
        rl->stdin_eof = true;
    return true;
}

/* The held control frame to the worker (a pipe: 10 bytes go whole). */
static void flush_ctl(struct relay *rl)
{
    while (rl->ctl_off < rl->ctl_n) {
        ssize_t w = write(rl->ctl_w, rl->ctl + rl->ctl_off, rl->ctl_n - rl->ctl_off);
        if (w < 0 && errno == EAGAIN)
            return;
        if (w <= 0)
            break; /* the worker is gone: its end comes through the output */
        rl->ctl_off += (size_t)w;
    }
    rl->ctl_off = rl->ctl_n = 0;
}

static void flush_stdin(struct relay *rl)
{
    while (rl->pending_off < rl->pending_n) {
        ssize_t w = write(rl->in_w, rl->pending + rl->pending_off, rl->pending_n - rl->pending_off);
        if (w <= 0) {
            if (w < 0 && errno == EAGAIN)
                return;
            rl->pending_n = rl->pending_off = 0; /* the process closed stdin */
            break;
        }
        rl->pending_off += (size_t)w;
    }
    rl->pending_n = rl->pending_off = 0;
    if (rl->stdin_eof && rl->in_w >= 0) {
        close(rl->in_w);
        rl->in_w = -1;
    }
}

static bool relay_output(struct relay *rl, int *fd, uint8_t stream)
{
    static uint8_t buf[FRAME_MAX];
    ssize_t n = read(*fd, buf, sizeof(buf));
    if (n <= 0) {
        close(*fd);
        *fd = -1;
        return true;
    }
    return send_frame(rl->sock, F_OUTPUT, stream, buf, (size_t)n);
}

/* Until both output pipes end; false when the client went away. A frame
 * held for the process (stdin) or the worker (RESIZE, KILL) stops reading
 * the client until it is taken; after STDIN_EOF the client may still send
 * RESIZE and KILL, and its going away (a read that ends) ends the exec. */
static bool relay_loop(struct relay *rl)
{
    while (rl->out_r >= 0 || rl->err_r >= 0) {
        bool holding = rl->pending_off < rl->pending_n || rl->ctl_off < rl->ctl_n;
        /* what TLS has read already does not show on the socket */
        bool buffered = relay_ssl && !holding && SSL_has_pending(relay_ssl);
        struct pollfd p[5] = {
            {.fd = holding ? -1 : rl->sock, .events = POLLIN},
            {.fd = rl->pending_off < rl->pending_n ? rl->in_w : -1, .events = POLLOUT},
            {.fd = rl->out_r, .events = POLLIN},
            {.fd = rl->err_r, .events = POLLIN},
            {.fd = rl->ctl_off < rl->ctl_n ? rl->ctl_w : -1, .events = POLLOUT},
        };
        if (poll(p, 5, buffered ? 0 : -1) < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        if (buffered)
            p[0].revents |= POLLIN;
        if (p[0].revents && !read_client_frame(rl))
            return false;
        if (p[0].revents || p[1].revents)
            flush_stdin(rl);
        if (p[0].revents || p[4].revents)
            flush_ctl(rl);
        if (p[2].revents && !relay_output(rl, &rl->out_r, 1))
            return false;
        if (p[3].revents && !relay_output(rl, &rl->err_r, 2))
            return false;
    }
    return true;
}

static void pipe_or_die(int p[2])
{
    if (pipe2(p, O_CLOEXEC) < 0)
        _exit(1);
}

/* The worker's {"r","code","message"}, once the output has ended. */
static void send_result(int sock, int res_r)
{
    char buf[2048];
    size_t n = 0;
    ssize_t got;
    while (n < sizeof(buf) - 1 && (got = read(res_r, buf + n, sizeof(buf) - 1 - n)) > 0)
        n += (size_t)got;
    buf[n] = '\0';
    json_t *res = json_loads(buf, 0, NULL);
    json_t *r = json_object_get(res, "r");
    const char *msg = json_string_value(json_object_get(res, "message"));
    if (!json_is_integer(r))
        send_error(sock, EIO, "the exec ended without a result");
    else if (json_integer_value(r) < 0)
        send_error(sock, (int)json_integer_value(r), msg ? msg : "exec failed");
    else
        send_u32_pair(sock, F_EXIT, (uint32_t)json_integer_value(json_object_get(res, "code")), 0);
    json_decref(res);
}

STK_NORETURN static void exec_child(struct gw_call *c, const char *id, json_t *body, int sock,
                                    SSL *ssl, int done_w)
{
    relay_ssl = ssl;
    gw_child_signals();
    signal(SIGPIPE, SIG_IGN); /* a process that closed its stdin is not the relay's end */
    int keep[] = {sock, done_w};
    gw_child_fds(keep, 2);
    (void)fcntl(sock, F_SETFL, fcntl(sock, F_GETFL) & ~O_NONBLOCK);
    static const char up[] = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                             "Upgrade: stockade-exec.v1\r\n\r\n";
    if (!sock_send(sock, up, sizeof(up) - 1))
        _exit(1);
    int in[2], out[2], errp[2], res[2], ctl[2];
    pipe_or_die(in);
    pipe_or_die(out);
    pipe_or_die(errp);
    pipe_or_die(res);
    pipe_or_die(ctl);
    /* the exec itself runs in a worker with its own session */
    pid_t pid;
    json_t *job = json_pack("{s:s,s:s,s:O}", "op", "exec", "id", id, "exec", body);
    int fds[] = {res[1], in[0], out[1], errp[1], ctl[0]};
    if (gw_worker_spawn(c->g, c->actor, job, fds, 5, &pid) < 0) {
        send_error(sock, EAGAIN, "cannot start the exec worker");
        _exit(1);
    }
    close(in[0]);
    close(out[1]);
    close(errp[1]);
    close(res[1]);
    close(ctl[0]);
    (void)fcntl(in[1], F_SETFL, O_NONBLOCK);
    (void)fcntl(ctl[1], F_SETFL, O_NONBLOCK);
    static struct relay rl;
    rl = (struct relay){.sock = sock,
                        .in_w = in[1],
                        .out_r = out[0],
                        .err_r = errp[0],
                        .res_r = res[0],
                        .ctl_w = ctl[1]};
    if (!relay_loop(&rl)) {
        kill(pid, SIGTERM); /* the client is gone */
        _exit(0);
    }
    send_result(sock, rl.res_r);
    if (ssl)
        (void)SSL_shutdown(ssl); /* close_notify: the client knows the end is the end */
    shutdown(sock, SHUT_WR);
    _exit(0);
}

/* ---- the server side ---- */

static void exec_free(struct gw_exec *x)
{
    x->g->n_workers--;
    for (struct gw_exec **p = &x->g->execs; *p; p = &(*p)->next)
        if (*p == x) {
            *p = x->next;
            break;
        }
    event_free(x->ev);
    close(x->fd);
    free(x);
}

static void exec_done(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct gw_exec *x = arg;
    struct evhttp_connection *evcon = x->evcon;
    exec_free(x);
    /* its close callback frees the call */
    evhttp_connection_free(evcon);
}

void gw_execs_stop(struct stk_gw *g)
{
    for (struct gw_exec *x = g->execs; x; x = x->next)
        kill(x->pid, SIGTERM);
}

void gw_exec_free_all(struct stk_gw *g)
{
    while (g->execs)
        exec_free(g->execs);
}

static bool upgrade_asked(struct evhttp_request *req)
{
    struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    const char *up = evhttp_find_header(h, "Upgrade");
    const char *conn = evhttp_find_header(h, "Connection");
    return up && !strcasecmp(up, "stockade-exec.v1") && conn && strcasestr(conn, "upgrade");
}

struct exec_child_arg {
    const char *id;
    json_t *body;
};

static void exec_child_run(struct gw_call *c, int sock, SSL *ssl, int done_w, void *arg)
{
    struct exec_child_arg *a = arg;
    exec_child(c, a->id, a->body, sock, ssl, done_w);
}

static void exec_handover(struct gw_call *c, const char *id, json_t *body)
{
    struct exec_child_arg a = {id, body};
    gw_handover(c, exec_child_run, &a);
}

void gw_handover(struct gw_call *c,
                 void (*child)(struct gw_call *c, int sock, SSL *ssl, int done_w, void *arg),
                 void *arg)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(c->req);
    struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
    /* the socket (plain or TLS) is under the gate's filter */
    struct bufferevent *under = bufferevent_get_underlying(bev);
    int sock = bufferevent_getfd(under ? under : bev);
    SSL *ssl = bufferevent_openssl_get_ssl(under ? under : bev);
    int done[2];
    if (c->g->n_workers >= GW_MAX_WORKERS) {
        gw_reply_error(c, GW_E_UNAVAILABLE, "too many operations in progress (%d): retry",
                       GW_MAX_WORKERS);
        return;
    }
    if (sock < 0 || pipe2(done, O_CLOEXEC) < 0) {
        gw_reply_error(c, GW_E_UNAVAILABLE, "cannot start the relay");
        return;
    }
    pid_t pid = fork();
    if (pid < 0) {
        close(done[0]);
        close(done[1]);
        gw_reply_error(c, GW_E_UNAVAILABLE, "cannot start the relay: %s", strerror(errno));
        return;
    }
    if (pid == 0) {
        close(done[0]);
        child(c, sock, ssl, done[1], arg);
        _exit(0);
    }
    close(done[1]);
    /* the event loop must not read the client's frames or time it out */
    bufferevent_disable(bev, EV_READ | EV_WRITE);
    struct gw_exec *x = stk_xcalloc(1, sizeof(*x));
    *x = (struct gw_exec){.g = c->g, .evcon = evcon, .pid = pid, .fd = done[0]};
    x->ev = event_new(c->g->base, done[0], EV_READ, exec_done, x);
    if (!x->ev)
        stk_oom();
    event_add(x->ev, NULL);
    x->next = c->g->execs;
    c->g->execs = x;
    c->g->n_workers++;
    c->conn->call = c; /* freed when the connection is */
    gw_call_answered(c, 101);
}

void gw_exec_start(struct gw_call *c, const char *id)
{
    if (!upgrade_asked(c->req)) {
        gw_reply_error(c, GW_E_BAD_REQUEST,
                       "exec needs Connection: Upgrade and Upgrade: stockade-exec.v1");
        return;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(c->req);
    size_t len = evbuffer_get_length(in);
    _cleanup_free_ char *body = stk_xmalloc(len + 1);
    evbuffer_copyout(in, body, len);
    body[len] = '\0';
    struct gw_exec_body b;
    json_t *root = NULL;
    char why[256];
    if (gw_exec_body_parse(body, len, &b, &root, why, sizeof(why)) < 0) {
        gw_reply_error(c, GW_E_BAD_REQUEST, "%s", why);
        return;
    }
    exec_handover(c, id, root);
    json_decref(root);
}
