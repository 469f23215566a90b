/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pods/exec and pods/attach over WebSocket (libwebsockets does the framing
 * and TLS). The Kubernetes channel protocol: every binary message starts
 * with its channel — 0 stdin, 1 stdout, 2 stderr, 3 the final Status, 4
 * terminal resize, and with v5.channel.k8s.io 255 "close this channel".
 *
 * One lws context per call, serviced on the caller's thread. stdin is a
 * dup of in_fd adopted as a raw file: while a chunk waits for the socket to
 * become writable, reading stops (flow control), so a fast producer cannot
 * grow memory and the loop never spins. lws closes that raw file, without
 * a read, when poll() reports a hang-up but no input it asked for: a pipe
 * whose writer is gone, if reading is stopped (before the upgrade, or with
 * a chunk pending) or the pipe is empty. stdin is then read straight from
 * in_fd, one chunk per writable socket, up to its end, and the end is
 * signalled. TLS trusts the kubeconfig's CA only and checks the server's
 * name or IP address through OpenSSL's own verification parameters; client
 * certificate and key come from memory.
 */
#include "driver/kubernetes/internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libwebsockets.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>

#define CH_STDIN  0
#define CH_STDOUT 1
#define CH_STDERR 2
#define CH_STATUS 3
#define CH_RESIZE 4
#define CH_CLOSE  255

#define STDIN_CHUNK (32u << 10)
#define STATUS_MAX  (64u << 10)

struct exec_state {
    struct stk_kube *k;
    const struct stk_kube_exec_req *q;
    const char *what;
    char *token;
    char host[256]; /* for the TLS name check */
    bool host_is_ip;
    struct lws *ws;
    struct lws *in_wsi; /* watches stdin; NULL once lws closed it */
    struct lws_vhost *vhost;
    bool v5;
    bool established, closed;
    /* stdin */
    unsigned char inbuf[LWS_PRE + 1 + STDIN_CHUNK];
    size_t in_len; /* pending bytes after the channel byte; 0: none */
    bool in_eof, in_eof_sent;
    /* resize */
    bool resize_pending;
    unsigned short cols, rows;
    /* incoming message */
    int channel; /* of the message being received; -1: none yet */
    struct stk_buf status;
    bool status_done, timed_out;
    uint64_t out_total;
    int exit_code;
    /* outcome */
    char *close_reason; /* from the server's close frame */
    struct kube_ws_failure f;
};

static __thread struct exec_state *tls_current; /* for the TLS context callback */
static volatile sig_atomic_t winch;
static struct lws_context *volatile winch_ctx;

static void on_winch(int sig)
{
    (void)sig;
    winch = 1;
    if (winch_ctx)
        lws_cancel_service(winch_ctx);
}

void kube_ws_fail(struct kube_ws_failure *f, int code, const char *fmt, ...)
{
    if (f->code)
        return;
    va_list ap;
    va_start(ap, fmt);
    f->msg = stk_xvasprintf(fmt, ap);
    va_end(ap);
    f->code = -code;
}

void kube_ws_connection_error(struct kube_ws_failure *f, struct lws *wsi, const char *in)
{
    int status = wsi ? (int)lws_http_client_http_response(wsi) : 0;
    const char *why = in ? in : "connection failed";
    if (status)
        kube_ws_fail(f, -kube_status_errno(status, NULL), "%s (HTTP %d)", why, status);
    else if (strstr(why, "SSL") || strstr(why, "TLS") || strstr(why, "tls"))
        kube_ws_fail(f, EPROTO, "TLS: %s", why);
    else
        kube_ws_fail(f, EIO, "%s (transient: the server may answer later)", why);
}

static bool tty_size(const struct stk_kube_exec_req *q, unsigned short *cols, unsigned short *rows)
{
    struct winsize ws;
    if ((q->in_fd >= 0 && ioctl(q->in_fd, TIOCGWINSZ, &ws) == 0) ||
        (q->out_fd >= 0 && ioctl(q->out_fd, TIOCGWINSZ, &ws) == 0)) {
        if (ws.ws_col == 0 || ws.ws_row == 0)
            return false;
        *cols = ws.ws_col;
        *rows = ws.ws_row;
        return true;
    }
    return false;
}

static void check_resize(struct exec_state *s)
{
    unsigned short c, r;
    if (!s->q->tty || !tty_size(s->q, &c, &r) || (c == s->cols && r == s->rows))
        return;
    s->cols = c;
    s->rows = r;
    s->resize_pending = true;
    if (s->ws)
        lws_callback_on_writable(s->ws);
}

/* ---- TLS: the kubeconfig's CA, client certificate and key, from memory ---- */

int kube_ws_load_tls(const struct stk_kubeconfig *c, const char *host, bool host_is_ip,
                     SSL_CTX *ctx)
{
    if (c->ca.len) {
        X509_STORE *store = SSL_CTX_get_cert_store(ctx);
        BIO *bio = BIO_new_mem_buf(c->ca.data, (int)c->ca.len);
        int n = 0;
        X509 *x;
        while (bio && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL))) {
            if (X509_STORE_add_cert(store, x) == 1)
                n++;
            X509_free(x);
        }
        BIO_free(bio);
        if (n == 0)
            return -1;
    }
    if (c->cert.len) {
        BIO *bio = BIO_new_mem_buf(c->cert.data, (int)c->cert.len);
        X509 *x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
        int ok = x && SSL_CTX_use_certificate(ctx, x) == 1;
        X509_free(x);
        X509 *extra;
        while (ok && (extra = PEM_read_bio_X509(bio, NULL, NULL, NULL)))
            if (SSL_CTX_add_extra_chain_cert(ctx, extra) != 1) {
                X509_free(extra);
                ok = 0;
            }
        BIO_free(bio);
        bio = BIO_new_mem_buf(c->key.data, (int)c->key.len);
        EVP_PKEY *key = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
        BIO_free(bio);
        ok = ok && key && SSL_CTX_use_PrivateKey(ctx, key) == 1 &&
             SSL_CTX_check_private_key(ctx) == 1;
        EVP_PKEY_free(key);
        if (!ok)
            return -1;
    }
    X509_VERIFY_PARAM *param = SSL_CTX_get0_param(ctx);
    int ok = host_is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, host)
                        : X509_VERIFY_PARAM_set1_host(param, host, 0);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    return ok == 1 ? 0 : -1;
}

SSL_CTX *kube_ws_client_tls(const struct stk_kubeconfig *c, const char *host, bool host_is_ip)
{
    SSL_CTX *tls = SSL_CTX_new(TLS_client_method());
    if (tls && ((!c->ca.len && SSL_CTX_set_default_verify_paths(tls) != 1) ||
                kube_ws_load_tls(c, host, host_is_ip, tls) < 0)) {
        SSL_CTX_free(tls);
        tls = NULL;
    }
    return tls;
}

/* ---- stdin ---- */

/* Watches stdin (a dup lws may close) for data; reading as flow control says. */
static int watch_stdin(struct exec_state *s, bool read_now)
{
    int dupfd = fcntl(s->q->in_fd, F_DUPFD_CLOEXEC, 3);
    if (dupfd < 0)
        return -errno;
    lws_sock_file_fd_type fd = {.filefd = dupfd};
    s->in_wsi =
        lws_adopt_descriptor_vhost(s->vhost, LWS_ADOPT_RAW_FILE_DESC, fd, "stockade-stdin", NULL);
    if (!s->in_wsi)
        return -EIO; /* lws closed the dup */
    if (!read_now)
        lws_rx_flow_control(s->in_wsi, 0);
    return 0;
}

/*
 * stdin without a watcher: lws closed it on a hang-up. A hung-up pipe (or
 * terminal, or socket) answers read() at once, with data or its end; were
 * it quiet instead (a FIFO with a new writer), it is watched again.
 */
static void read_unwatched(struct exec_state *s)
{
    struct pollfd pf = {.fd = s->q->in_fd, .events = POLLIN};
    int r;
    do
        r = poll(&pf, 1, 0);
    while (r < 0 && errno == EINTR);
    ssize_t n = -1;
    if (r > 0 && !(pf.revents & POLLNVAL)) {
        do
            n = read(s->q->in_fd, s->inbuf + LWS_PRE + 1, STDIN_CHUNK);
        while (n < 0 && errno == EINTR);
    }
    if (r == 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))) {
        r = watch_stdin(s, true);
        if (r < 0)
            kube_ws_fail(&s->f, -r, "stdin could not be watched: %s", strerror(-r));
        return;
    }
    if (n > 0)
        s->in_len = (size_t)n;
    else
        s->in_eof = true; /* its end, or an error: either ends stdin */
}

/* ---- sending ---- */

static void send_pending(struct exec_state *s, struct lws *wsi)
{
    if (!s->resize_pending && s->in_len == 0 && !s->in_eof && !s->in_wsi && s->q->in_fd >= 0)
        read_unwatched(s);
    if (s->resize_pending) {
        unsigned char buf[LWS_PRE + 64];
        int n = snprintf((char *)buf + LWS_PRE + 1, sizeof(buf) - LWS_PRE - 1,
                         "{\"Width\":%u,\"Height\":%u}", s->cols, s->rows);
        buf[LWS_PRE] = CH_RESIZE;
        s->resize_pending = false;
        if (lws_write(wsi, buf + LWS_PRE, (size_t)n + 1, LWS_WRITE_BINARY) < n + 1) {
            kube_ws_fail(&s->f, EIO, "sending the terminal size failed");
            return;
        }
        lws_callback_on_writable(wsi);
        return;
    }
    if (s->in_len > 0) {
        s->inbuf[LWS_PRE] = CH_STDIN;
        size_t n = s->in_len + 1;
        s->in_len = 0;
        if (lws_write(wsi, s->inbuf + LWS_PRE, n, LWS_WRITE_BINARY) < (int)n) {
            kube_ws_fail(&s->f, EIO, "sending stdin failed");
            return;
        }
        if (s->in_wsi)
            lws_rx_flow_control(s->in_wsi, 1); /* room again: read more */
        else if (!s->in_eof || s->v5)
            lws_callback_on_writable(wsi); /* the next chunk, or the end */
        return;
    }
    if (s->in_eof && !s->in_eof_sent && s->v5 && !s->q->keep_stdin_open) {
        unsigned char buf[LWS_PRE + 2];
        buf[LWS_PRE] = CH_CLOSE;
        buf[LWS_PRE + 1] = CH_STDIN;
        s->in_eof_sent = true;
        if (lws_write(wsi, buf + LWS_PRE, 2, LWS_WRITE_BINARY) < 2)
            kube_ws_fail(&s->f, EIO, "sending the end of stdin failed");
    }
}

/* ---- receiving ---- */

static void on_status(struct exec_state *s)
{
    json_auto_t *st = json_loadb(s->status.data ? s->status.data : "", s->status.len, 0, NULL);
    s->status_done = true;
    if (!json_is_object(st)) {
        /* older protocols, and some runtime failures, send plain text */
        kube_ws_fail(&s->f, EIO, "%.*s", (int)(s->status.len < 1000 ? s->status.len : 1000),
                     s->status.data ? s->status.data : "");
        return;
    }
    const char *status = json_string_value(json_object_get(st, "status"));
    const char *reason = json_string_value(json_object_get(st, "reason"));
    const char *msg = json_string_value(json_object_get(st, "message"));
    if (stk_streq(status, "Success"))
        return;
    if (stk_streq(reason, "NonZeroExitCode")) {
        size_t i;
        json_t *c;
        json_array_foreach(json_object_get(json_object_get(st, "details"), "causes"), i, c)
        {
            if (!stk_streq(json_string_value(json_object_get(c, "reason")), "ExitCode"))
                continue;
            const char *m = json_string_value(json_object_get(c, "message"));
            char *end = NULL;
            long code = m ? strtol(m, &end, 10) : -1;
            if (m && *end == '\0' && code >= 0 && code <= 255) {
                s->exit_code = (int)code;
                return;
            }
        }
        kube_ws_fail(&s->f, EPROTO, "exit status without an exit code: %s", msg ? msg : "");
        return;
    }
    long code = (long)json_integer_value(json_object_get(st, "code"));
    kube_ws_fail(&s->f, code ? -kube_status_errno(code, st) : EIO, "%s%s%s",
                 reason ? reason : "Failure", msg ? ": " : "", msg ? msg : "");
}

static void on_receive(struct exec_state *s, struct lws *wsi, const unsigned char *data, size_t len)
{
    if (lws_is_first_fragment(wsi)) {
        if (len == 0)
            return;
        s->channel = data[0];
        data++;
        len--;
    }
    int r = 0;
    switch (s->channel) {
    case CH_STDOUT:
        if (s->q->out_max && len > s->q->out_max - s->out_total) {
            kube_ws_fail(&s->f, EFBIG, "the output is larger than %llu bytes",
                         (unsigned long long)s->q->out_max);
            return;
        }
        s->out_total += len;
        r = s->q->out_fd >= 0 ? stk_write_all(s->q->out_fd, data, len) : 0;
        break;
    case CH_STDERR:
        if (s->q->out_max && len > s->q->out_max - s->out_total) {
            kube_ws_fail(&s->f, EFBIG, "the output is larger than %llu bytes",
                         (unsigned long long)s->q->out_max);
            return;
        }
        s->out_total += len;
        r = s->q->err_fd >= 0 ? stk_write_all(s->q->err_fd, data, len) : 0;
        break;
    case CH_STATUS:
        if (s->status_done)
            break;
        if (len > STATUS_MAX - s->status.len) {
            kube_ws_fail(&s->f, EMSGSIZE, "exit status larger than %u bytes", STATUS_MAX);
            break;
        }
        stk_buf_append(&s->status, data, len);
        /* an empty message on a channel only says it is open */
        if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0 &&
            s->status.len > 0)
            on_status(s);
        break;
    default:
        break; /* another channel: ignored */
    }
    if (r < 0)
        kube_ws_fail(&s->f, -r, "writing the output: %s", strerror(-r));
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    (void)user;
    struct exec_state *s = tls_current;
    if (!s)
        return 0;
    switch ((int)reason) {
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
        return kube_ws_add_bearer(wsi, s->token, in, len);
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
        /* a refused upgrade (403, 404, ...) or a transport or TLS failure */
        kube_ws_connection_error(&s->f, wsi, in);
        s->closed = true;
        s->ws = NULL;
        return 0;
    }
    case LWS_CALLBACK_CLIENT_ESTABLISHED: {
        const struct lws_protocols *p = lws_get_protocol(wsi);
        s->v5 = p && strcmp(p->name, "v5.channel.k8s.io") == 0;
        s->established = true;
        s->channel = -1;
        if (s->q->tty) {
            s->cols = s->rows = 0;
            check_resize(s);
        }
        if (s->in_wsi)
            lws_rx_flow_control(s->in_wsi, 1);
        if (s->q->timeout_s > 0)
            lws_set_timer_usecs(wsi, (lws_usec_t)s->q->timeout_s * LWS_US_PER_SEC);
        lws_callback_on_writable(wsi);
        return 0;
    }

    case LWS_CALLBACK_TIMER: /* the time limit */
        if (!s->status_done)
            kube_ws_fail(&s->f, ETIMEDOUT, "no exit status within %d s: the command was cut off",
                         s->q->timeout_s);
        lws_cancel_service(lws_get_context(wsi)); /* out of the poll it is in */
        return -1;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        on_receive(s, wsi, in, len);
        return s->f.code ? -1 : 0;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        send_pending(s, wsi);
        return s->f.code ? -1 : 0;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        /* a close frame: 2 bytes of code, then the server's reason */
        if (len > 2 && !s->close_reason)
            s->close_reason =
                stk_xasprintf("%.*s", (int)(len - 2 < 500 ? len - 2 : 500), (const char *)in + 2);
        return 0;
    case LWS_CALLBACK_CLIENT_CLOSED:
        s->closed = true;
        s->ws = NULL;
        return 0;
    case LWS_CALLBACK_RAW_RX_FILE:
        return kube_ws_pump_read(wsi, s->ws, s->established, s->inbuf + LWS_PRE + 1, STDIN_CHUNK,
                                 &s->in_len, &s->in_eof, &s->in_wsi);
    case LWS_CALLBACK_RAW_CLOSE_FILE:
        /* not at its end: lws saw a hang-up; what is left is read directly */
        if (s->in_wsi == wsi) {
            s->in_wsi = NULL;
            if (s->established && s->ws && !s->closed && !s->f.code)
                lws_callback_on_writable(s->ws);
        }
        return 0;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (winch) {
            winch = 0;
            check_resize(s);
        }
        return 0;
    default:
        return 0;
    }
}

static const struct lws_protocols protocols[] = {
    {"v5.channel.k8s.io", callback, 0, 64 << 10, 0, NULL, 0},
    {"v4.channel.k8s.io", callback, 0, 64 << 10, 0, NULL, 0},
    {"stockade-stdin", callback, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

int kube_ws_split_server(const char *server, char *host, size_t hostsz, int *port,
                         const char **prefix, bool *is_ip)
{
    const char *p = server + strlen("https://");
    const char *end;
    if (*p == '[') {
        end = strchr(p, ']');
        if (!end)
            return -EINVAL;
        snprintf(host, hostsz, "%.*s", (int)(end - p - 1), p + 1);
        end++;
        *is_ip = true;
    } else {
        end = p + strcspn(p, ":/");
        snprintf(host, hostsz, "%.*s", (int)(end - p), p);
        struct in_addr a4;
        *is_ip = inet_pton(AF_INET, host, &a4) == 1;
    }
    *port = 443;
    if (*end == ':') {
        char *e = NULL;
        long v = strtol(end + 1, &e, 10);
        if (v <= 0 || v > 65535)
            return -EINVAL;
        *port = (int)v;
        end = e;
    }
    *prefix = end;
    return 0;
}

void kube_ws_log_nothing(int level, const char *line)
{
    (void)level;
    (void)line;
}

struct lws_context *kube_ws_context(const struct stk_kubeconfig *c,
                                    const struct lws_protocols *protos, int timeout_s,
                                    void *client_ctx)
{
    lws_set_log_level(LLL_ERR, kube_ws_log_nothing); /* library code never prints */
    struct lws_context_creation_info ci = {0};
    ci.port = CONTEXT_PORT_NO_LISTEN;
    ci.protocols = protos;
    ci.gid = (gid_t)-1;
    ci.uid = (uid_t)-1;
    ci.timeout_secs = (unsigned)timeout_s;
    ci.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    if (c->ca.len)
        ci.options |= LWS_SERVER_OPTION_DISABLE_OS_CA_CERTS;
    ci.provided_client_ssl_ctx = client_ctx;
    return lws_create_context(&ci);
}

struct lws *kube_ws_connect(struct lws_context *ctx, const char *host, int port, bool host_is_ip,
                            const char *path, const char *subprotocols, struct lws **pwsi)
{
    struct lws_client_connect_info cc = {0};
    cc.context = ctx;
    cc.address = host;
    cc.port = port;
    cc.ssl_connection = LCCSCF_USE_SSL;
    if (host_is_ip) /* lws would compare an IP with DNS names: OpenSSL checks it */
        cc.ssl_connection |= LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK;
    cc.path = path;
    cc.host = host;
    cc.origin = host;
    cc.protocol = subprotocols;
    cc.alpn = "http/1.1";
    cc.pwsi = pwsi;
    return lws_client_connect_via_info(&cc);
}

int kube_ws_add_bearer(struct lws *wsi, const char *token, void *in, size_t len)
{
    if (!token)
        return 0;
    unsigned char **p = in, *end = *p + len;
    _cleanup_free_ char *v = stk_xasprintf("Bearer %s", token);
    int r = lws_add_http_header_by_name(wsi, (const unsigned char *)"authorization:",
                                        (const unsigned char *)v, (int)strlen(v), p, end);
    OPENSSL_cleanse(v, strlen(v));
    return r ? -1 : 0;
}

int kube_ws_pump_read(struct lws *wsi, struct lws *ws, bool established, unsigned char *buf,
                      size_t cap, size_t *len, bool *eof, struct lws **fd_wsi)
{
    if (*len > 0 || !established) {
        lws_rx_flow_control(wsi, 0);
        return 0;
    }
    ssize_t n = read(lws_get_socket_fd(wsi), buf, cap);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return 0;
    if (n <= 0) {
        *eof = true;
        *fd_wsi = NULL;
        if (ws)
            lws_callback_on_writable(ws);
        return -1; /* closes the adopted dup */
    }
    *len = (size_t)n;
    lws_rx_flow_control(wsi, 0); /* until it was sent */
    if (ws)
        lws_callback_on_writable(ws);
    return 0;
}

static void exec_state_free(struct exec_state *s)
{
    if (s->token) {
        OPENSSL_cleanse(s->token, strlen(s->token));
        free(s->token);
    }
    stk_buf_free(&s->status);
    free(s->f.msg);
    free(s->close_reason);
    OPENSSL_cleanse(s->inbuf, sizeof(s->inbuf));
}

int stk_kube_exec(struct stk_kube *k, const struct stk_kube_exec_req *q, int *ret_code,
                  struct stk_error **err)
{
    struct stk_kube_ref pod = {
        .api_version = "v1", .kind = "Pod", .namespace = q->namespace, .name = q->pod};
    const char *verb = q->attach ? "attach" : "exec";
    _cleanup_buf_ struct stk_buf what = {0};
    _cleanup_buf_ struct stk_buf path = {0};
    stk_kube_ref_describe(&pod, &what);
    int r = stk_kube_path(k, &pod, &path, err);
    if (r < 0)
        return stk_error_wrap(err, "%s %s", verb, stk_buf_str(&what));
    if (q->in_fd < 0 && q->out_fd < 0 && q->err_fd < 0)
        return kube_error(k, err, EINVAL, "%s %s: no stdin, stdout or stderr", verb,
                          stk_buf_str(&what));
    if (!q->attach && q->argc == 0)
        return kube_error(k, err, EINVAL, "exec %s: no command", stk_buf_str(&what));
    if (q->container && !kube_dns_label(q->container))
        return kube_error(k, err, EINVAL, "%s %s: container \"%s\" is not a DNS label", verb,
                          stk_buf_str(&what), q->container);
    stk_buf_printf(&path, "/%s?stdout=%s&stderr=%s&stdin=%s&tty=%s", verb,
                   q->out_fd >= 0 ? "true" : "false", q->err_fd >= 0 && !q->tty ? "true" : "false",
                   q->in_fd >= 0 ? "true" : "false", q->tty ? "true" : "false");
    if (q->container)
        stk_buf_printf(&path, "&container=%s", q->container);
    for (size_t i = 0; !q->attach && i < q->argc; i++) {
        stk_buf_puts(&path, "&command=");
        kube_query_escape(&path, q->argv[i]);
    }

    struct exec_state *s = stk_xcalloc(1, sizeof(*s));
    s->k = k;
    s->q = q;
    s->what = stk_buf_str(&what);
    s->channel = -1;
    const char *prefix = "";
    int port = 0;
    if (kube_ws_split_server(k->cfg->server, s->host, sizeof(s->host), &port, &prefix,
                             &s->host_is_ip) < 0) {
        free(s);
        return kube_error(k, err, EINVAL, "%s %s: server URL not understood", verb,
                          stk_buf_str(&what));
    }
    r = kubeconfig_token(k->cfg, &s->token, err);
    if (r < 0) {
        exec_state_free(s);
        free(s);
        return stk_error_wrap(err, "context %s (%s)", k->cfg->context, k->cfg->server);
    }
    _cleanup_free_ char *full = stk_xasprintf("%s%s", prefix, stk_buf_str(&path));

    /* The TLS context is ours, freed after lws's (lws 4.1 sometimes kept
     * the one it made past lws_context_destroy(): portforward.c) */
    SSL_CTX *tls = kube_ws_client_tls(k->cfg, s->host, s->host_is_ip);
    if (!tls) {
        r = kube_error(k, err, EPROTO,
                       "%s %s: TLS: the CA, client certificate or key could not "
                       "be loaded",
                       verb, s->what);
        exec_state_free(s);
        free(s);
        return r;
    }
    tls_current = s;
    struct lws_context *ctx = kube_ws_context(k->cfg, protocols, 0, tls);
    if (!ctx) {
        tls_current = NULL;
        SSL_CTX_free(tls);
        r = kube_error(k, err, s->f.code ? -s->f.code : ENOMEM, "%s %s: %s", verb, s->what,
                       s->f.msg ? s->f.msg : "lws_create_context failed");
        exec_state_free(s);
        free(s);
        return r;
    }

    /* stdin: a dup, so lws may close it without closing the caller's fd;
     * nothing is read before the upgrade */
    s->vhost = lws_get_vhost_by_name(ctx, "default");
    if (q->in_fd >= 0) {
        r = watch_stdin(s, false);
        if (r < 0) {
            lws_context_destroy(ctx);
            SSL_CTX_free(tls);
            tls_current = NULL;
            exec_state_free(s);
            free(s);
            return kube_error(k, err, -r, "%s: stdin could not be watched", verb);
        }
    }

    struct termios saved;
    bool raw = false;
    struct sigaction old_winch, sa = {.sa_handler = on_winch};
    if (q->tty) {
        if (q->in_fd >= 0 && isatty(q->in_fd) && tcgetattr(q->in_fd, &saved) == 0) {
            struct termios t = saved;
            cfmakeraw(&t);
            raw = tcsetattr(q->in_fd, TCSANOW, &t) == 0;
        }
        winch = 0;
        winch_ctx = ctx;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGWINCH, &sa, &old_winch);
    }

    if (!kube_ws_connect(ctx, s->host, port, s->host_is_ip, full,
                         "v5.channel.k8s.io,v4.channel.k8s.io", &s->ws) &&
        !s->f.code)
        kube_ws_fail(&s->f, EIO, "connection failed");

    while (!s->closed && !s->f.code) {
        /* 0: lws sleeps in poll() until something happens */
        if (lws_service(ctx, 0) < 0)
            break;
    }

    if (q->tty) {
        sigaction(SIGWINCH, &old_winch, NULL);
        winch_ctx = NULL;
        if (raw)
            tcsetattr(q->in_fd, TCSANOW, &saved);
    }
    lws_context_destroy(ctx);
    SSL_CTX_free(tls);
    tls_current = NULL;

    if (s->f.code)
        r = kube_error(k, err, -s->f.code, "%s %s: %s", verb, s->what, s->f.msg);
    else if (!s->status_done && s->close_reason)
        r = kube_error(k, err, EIO, "%s %s: the server closed the stream: %s", verb, s->what,
                       s->close_reason);
    else if (!s->status_done)
        r = kube_error(k, err, EIO,
                       "%s %s: the connection ended without an exit status (transient: the "
                       "server may answer later)",
                       verb, s->what);
    else {
        *ret_code = s->exit_code;
        r = 0;
    }
    exec_state_free(s);
    free(s);
    return r;
}
