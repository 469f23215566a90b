/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pods/portforward over WebSocket: one TCP connection to one port of a Pod
 * per WebSocket, subprotocol v4.channel.k8s.io (the kubelet's own; the API
 * server passes the upgrade through). Channel 0 carries the data both ways,
 * channel 1 the kubelet's error text; the server opens each channel with
 * the port (2 bytes, little endian), which is skipped here. The protocol
 * has no half-close: the end of either side ends the connection.
 *
 * The caller gets one end of a socketpair; a thread of its own per
 * connection runs an lws context that moves bytes between the other end
 * and the WebSocket (reading stops while a chunk waits for the socket: flow
 * control, bounded memory) and ends with either side. The thread blocks
 * every signal, so they stay with the caller's threads.
 */
#include "driver/kubernetes/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <libwebsockets.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CH_DATA    0
#define CH_ERROR   1
#define PF_CHUNK   (32u << 10)
#define PF_ERR_MAX 512

struct pf_state {
    struct stk_kubeconfig *cfg; /* a copy: the thread outlives the caller's client */
    char *token;
    char host[256];
    bool host_is_ip;
    int api_port;
    char *path;
    uint16_t port;
    int fd;       /* our end of the socketpair: written from the WebSocket */
    int ready_fd; /* the caller waits on it: one byte once connected or failed */
    struct lws *ws, *fd_wsi;
    struct lws_vhost *vhost;
    bool established, closed, fd_eof;
    int channel;    /* of the message being received; -1: none yet */
    size_t skip[2]; /* port prefix bytes still to skip on channels 0, 1 */
    unsigned char buf[LWS_PRE + 1 + PF_CHUNK];
    size_t len; /* pending bytes for the WebSocket after the channel byte */
    char errtext[PF_ERR_MAX];
    size_t errlen;
    struct kube_ws_failure f;
};

static __thread struct pf_state *pf_current;
/* connection threads not yet ended (each detaches once connected) */
static atomic_int pf_live;

int stk_kube_port_connections(void)
{
    return atomic_load(&pf_live);
}

static void pf_free(struct pf_state *s)
{
    if (!s)
        return;
    if (s->token) {
        OPENSSL_cleanse(s->token, strlen(s->token));
        free(s->token);
    }
    stk_kubeconfig_free(s->cfg);
    free(s->path);
    free(s->f.msg);
    if (s->fd >= 0)
        close(s->fd);
    if (s->ready_fd >= 0)
        close(s->ready_fd);
    OPENSSL_cleanse(s->buf, sizeof(s->buf));
    free(s);
}

static int send_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pf = {.fd = fd, .events = POLLOUT};
            (void)poll(&pf, 1, -1);
            continue;
        }
        if (w < 0)
            return -errno;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void signal_ready(struct pf_state *s)
{
    if (s->ready_fd < 0)
        return;
    char b = s->f.code ? 1 : 0;
    ssize_t w;
    do
        w = write(s->ready_fd, &b, 1);
    while (w < 0 && errno == EINTR);
    close(s->ready_fd);
    s->ready_fd = -1;
}

static void pf_receive(struct pf_state *s, struct lws *wsi, const unsigned char *data, size_t len)
{
    if (lws_is_first_fragment(wsi)) {
        if (len == 0)
            return;
        s->channel = data[0];
        data++;
        len--;
    }
    if (s->channel != CH_DATA && s->channel != CH_ERROR)
        return; /* channels of other ports: none were asked for */
    size_t k = s->skip[s->channel] < len ? s->skip[s->channel] : len;
    s->skip[s->channel] -= k;
    data += k;
    len -= k;
    if (len == 0)
        return;
    if (s->channel == CH_ERROR) {
        size_t room = sizeof(s->errtext) - 1 - s->errlen;
        size_t n = len < room ? len : room;
        memcpy(s->errtext + s->errlen, data, n);
        s->errlen += n;
        s->errtext[s->errlen] = '\0';
        kube_ws_fail(&s->f, ECONNREFUSED, "%s", s->errtext);
        return;
    }
    int r = send_all(s->fd, data, len);
    if (r < 0)
        s->fd_eof = true; /* the caller closed its end: the connection ends */
}

static void pf_send(struct pf_state *s, struct lws *wsi)
{
    if (s->len == 0)
        return;
    s->buf[LWS_PRE] = CH_DATA;
    size_t n = s->len + 1;
    s->len = 0;
    if (lws_write(wsi, s->buf + LWS_PRE, n, LWS_WRITE_BINARY) < (int)n) {
        kube_ws_fail(&s->f, EIO, "sending to the port failed");
        return;
    }
    if (s->fd_wsi)
        lws_rx_flow_control(s->fd_wsi, 1);
}

static int pf_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                       size_t len)
{
    (void)user;
    struct pf_state *s = pf_current;
    if (!s)
        return 0;
    switch ((int)reason) {
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
        return kube_ws_add_bearer(wsi, s->token, in, len);
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
        kube_ws_connection_error(&s->f, wsi, in);
        s->closed = true;
        s->ws = NULL;
        return 0;
    }
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        s->established = true;
        s->channel = -1;
        s->skip[0] = s->skip[1] = 2;
        if (s->fd_wsi)
            lws_rx_flow_control(s->fd_wsi, 1);
        signal_ready(s);
        return 0;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        pf_receive(s, wsi, in, len);
        return s->f.code || s->fd_eof ? -1 : 0;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        pf_send(s, wsi);
        return s->f.code || (s->fd_eof && s->len == 0) ? -1 : 0;
    case LWS_CALLBACK_CLIENT_CLOSED:
        s->closed = true;
        s->ws = NULL;
        return 0;
    case LWS_CALLBACK_RAW_RX_FILE:
        return kube_ws_pump_read(wsi, s->ws, s->established, s->buf + LWS_PRE + 1, PF_CHUNK,
                                 &s->len, &s->fd_eof, &s->fd_wsi);
    case LWS_CALLBACK_RAW_CLOSE_FILE:
        if (s->fd_wsi == wsi) { /* a hang-up: the caller is gone */
            s->fd_wsi = NULL;
            s->fd_eof = true;
            if (s->ws)
                lws_callback_on_writable(s->ws);
        }
        return 0;
    default:
        return 0;
    }
}

static const struct lws_protocols pf_protocols[] = {
    {"v4.channel.k8s.io", pf_callback, 0, 64 << 10, 0, NULL, 0},
    {"stockade-port", pf_callback, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void *pf_thread(void *arg)
{
    struct pf_state *s = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    pf_current = s;

    /* The TLS context is this thread's, freed after lws's: lws 4.1 made its
     * own per context and, now and then, kept it past lws_context_destroy()
     * (about 20 KiB a connection: LeakSanitizer saw it in test_kube). */
    SSL_CTX *tls = kube_ws_client_tls(s->cfg, s->host, s->host_is_ip);
    /* 30 s for the upgrade: connecting, TLS, the answer */
    struct lws_context *ctx = tls ? kube_ws_context(s->cfg, pf_protocols, 30, tls) : NULL;
    if (!tls)
        kube_ws_fail(&s->f, EPROTO, "the kubeconfig's TLS material could not be loaded");
    else if (!ctx)
        kube_ws_fail(&s->f, ENOMEM, "lws_create_context failed");
    int dupfd = ctx ? fcntl(s->fd, F_DUPFD_CLOEXEC, 3) : -1;
    if (ctx && dupfd < 0)
        kube_ws_fail(&s->f, errno, "dup: %s", strerror(errno));
    if (dupfd >= 0) {
        s->vhost = lws_get_vhost_by_name(ctx, "default");
        lws_sock_file_fd_type fd = {.filefd = dupfd};
        s->fd_wsi = lws_adopt_descriptor_vhost(s->vhost, LWS_ADOPT_RAW_FILE_DESC, fd,
                                               "stockade-port", NULL);
        if (!s->fd_wsi)
            kube_ws_fail(&s->f, EIO, "the connection's socket could not be watched");
        else
            lws_rx_flow_control(s->fd_wsi, 0); /* nothing is read before the upgrade */
    }
    if (!s->f.code) {
        if (!kube_ws_connect(ctx, s->host, s->api_port, s->host_is_ip, s->path, "v4.channel.k8s.io",
                             &s->ws))
            kube_ws_fail(&s->f, EIO, "connection failed");
    }
    while (ctx && !s->closed && !s->f.code)
        if (lws_service(ctx, 0) < 0)
            break;
    bool handed_off = s->established; /* the caller got the socket: this thread owns s */
    if (!s->established && !s->f.code)
        kube_ws_fail(&s->f, EIO, "the connection closed before the upgrade");
    signal_ready(s); /* before the context goes: the caller waits no longer than needed */
    if (ctx)
        lws_context_destroy(ctx);
    SSL_CTX_free(tls);
    pf_current = NULL;
    if (handed_off)
        pf_free(s);
    atomic_fetch_sub(&pf_live, 1);
    return NULL;
}

int stk_kube_port_connect(struct stk_kube *k, const char *namespace, const char *pod, uint16_t port,
                          int *ret_fd, struct stk_error **err)
{
    struct stk_kube_ref ref = {
        .api_version = "v1", .kind = "Pod", .namespace = namespace, .name = pod};
    _cleanup_buf_ struct stk_buf what = {0};
    _cleanup_buf_ struct stk_buf path = {0};
    stk_kube_ref_describe(&ref, &what);
    if (port == 0)
        return kube_error(k, err, EINVAL, "port-forward %s: port 0", stk_buf_str(&what));
    int r = stk_kube_path(k, &ref, &path, err);
    if (r < 0)
        return stk_error_wrap(err, "port-forward %s", stk_buf_str(&what));
    stk_buf_printf(&path, "/portforward?ports=%u", port);

    struct pf_state *s = stk_xcalloc(1, sizeof(*s));
    s->fd = s->ready_fd = -1;
    s->port = port;
    const char *prefix = "";
    if (kube_ws_split_server(k->cfg->server, s->host, sizeof(s->host), &s->api_port, &prefix,
                             &s->host_is_ip) < 0) {
        pf_free(s);
        return kube_error(k, err, EINVAL, "port-forward %s: server URL not understood",
                          stk_buf_str(&what));
    }
    s->path = stk_xasprintf("%s%s", prefix, stk_buf_str(&path));
    if ((r = kubeconfig_token(k->cfg, &s->token, err)) < 0) {
        pf_free(s);
        return stk_error_wrap(err, "context %s (%s)", k->cfg->context, k->cfg->server);
    }
    s->cfg = kubeconfig_dup(k->cfg);
    int sp[2], rp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) {
        pf_free(s);
        return kube_error(k, err, errno, "port-forward %s: socketpair", stk_buf_str(&what));
    }
    if (pipe2(rp, O_CLOEXEC) < 0) {
        r = errno;
        close(sp[0]);
        close(sp[1]);
        pf_free(s);
        return kube_error(k, err, r, "port-forward %s: pipe", stk_buf_str(&what));
    }
    s->fd = sp[1];
    s->ready_fd = rp[1];
    pthread_t t;
    atomic_fetch_add(&pf_live, 1);
    if ((r = pthread_create(&t, NULL, pf_thread, s)) != 0) {
        atomic_fetch_sub(&pf_live, 1);
        close(sp[0]);
        close(rp[0]);
        pf_free(s);
        return kube_error(k, err, r, "port-forward %s: a thread", stk_buf_str(&what));
    }
    char b = 1;
    ssize_t n;
    do
        n = read(rp[0], &b, 1);
    while (n < 0 && errno == EINTR);
    close(rp[0]);
    if (n == 1 && b == 0) { /* connected: the thread owns s now */
        pthread_detach(t);
        *ret_fd = sp[0];
        return 0;
    }
    pthread_join(t, NULL);
    close(sp[0]);
    r = kube_error(k, err, s->f.code ? -s->f.code : EIO, "port-forward %s port %u: %s",
                   stk_buf_str(&what), port, s->f.msg ? s->f.msg : "no answer");
    pf_free(s);
    return r;
}
