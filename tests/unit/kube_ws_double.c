/* SPDX-License-Identifier: Apache-2.0 */
/* The pods/exec WebSocket double; see kube_double.h. Test code. */
#include "kube_double.h"

#include "base/base.h"

#include <errno.h>
#include <fcntl.h>
#include <libwebsockets.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#define MSG_MAX 8

struct session {
    char cmd[256];
    char args[256];
    bool tty, v5;
    /* outgoing messages, one per writable callback */
    struct stk_buf out[MSG_MAX];
    int n_out;
    bool close_after;
    long stdin_bytes;
    bool size_done;
    int sizes;
    char msgch;  /* channel of the message being received */
    int pf_port; /* pods/portforward: the port asked for; 0: exec */
};

static void queue(struct session *s, unsigned char ch, const char *data, size_t n)
{
    if (s->n_out >= MSG_MAX)
        return;
    struct stk_buf *b = &s->out[s->n_out++];
    stk_buf_append(b, "0123456789abcdefghijklmnopqrstuvwxyz", LWS_PRE); /* headroom */
    stk_buf_putc(b, (char)ch);
    stk_buf_append(b, data, n);
}

static void finish(struct session *s, struct lws *wsi, int code)
{
    char st[512];
    if (code == 0)
        snprintf(st, sizeof(st), "{\"metadata\":{},\"status\":\"Success\"}");
    else if (code < 0)
        snprintf(st, sizeof(st),
                 "{\"metadata\":{},\"status\":\"Failure\",\"message\":\"container not found "
                 "(\\\"nope\\\")\",\"reason\":\"InternalError\",\"code\":500}");
    else
        snprintf(st, sizeof(st),
                 "{\"metadata\":{},\"status\":\"Failure\",\"message\":\"command terminated "
                 "with non-zero exit code: exit status %d\",\"reason\":\"NonZeroExitCode\","
                 "\"details\":{\"causes\":[{\"reason\":\"ExitCode\",\"message\":\"%d\"}]}}",
                 code, code);
    queue(s, 3, st, strlen(st));
    s->close_after = true;
    lws_callback_on_writable(wsi);
}

static int cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    struct session *s = user;
    switch ((int)reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
        char auth[128] = "";
        if (lws_hdr_copy(wsi, auth, sizeof(auth), WSI_TOKEN_HTTP_AUTHORIZATION) < 0 ||
            strcmp(auth, "Bearer " KUBE_DOUBLE_TOKEN) != 0)
            return 1; /* refused */
        memset(s, 0, sizeof(*s));
        char uri[512] = "", frag[256];
        (void)lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI);
        bool pf = strstr(uri, "/portforward") != NULL;
        for (int i = 0;
             lws_hdr_copy_fragment(wsi, frag, sizeof(frag), WSI_TOKEN_HTTP_URI_ARGS, i) > 0; i++) {
            if (strncmp(frag, "command=", 8) == 0) {
                if (!s->cmd[0])
                    snprintf(s->cmd, sizeof(s->cmd), "%s", frag + 8);
                else {
                    size_t n = strlen(s->args);
                    snprintf(s->args + n, sizeof(s->args) - n, "%s%s", n ? " " : "", frag + 8);
                }
            } else if (strcmp(frag, "tty=true") == 0) {
                s->tty = true;
            } else if (pf && strncmp(frag, "ports=", 6) == 0) {
                s->pf_port = atoi(frag + 6);
            }
        }
        if (pf && (s->pf_port <= 0 || s->pf_port > 65535 ||
                   strcmp(lws_get_protocol(wsi)->name, "v4.channel.k8s.io") != 0))
            return 1; /* a port is required; only v4 forwards */
        return 0;
    }
    case LWS_CALLBACK_ESTABLISHED:
        s->v5 = strcmp(lws_get_protocol(wsi)->name, "v5.channel.k8s.io") == 0;
        if (s->pf_port) {
            /* each channel opens with the port, little endian; port 9:
             * nothing listens (the kubelet's error, then the end) */
            char le[2] = {(char)(s->pf_port & 0xff), (char)(s->pf_port >> 8)};
            queue(s, 0, le, 2);
            queue(s, 1, le, 2);
            if (s->pf_port == 9) {
                static const char e[] = "error forwarding port 9: connection refused";
                queue(s, 1, e, sizeof(e) - 1);
                s->close_after = true;
            }
            lws_callback_on_writable(wsi);
        } else if (strcmp(s->cmd, "echo") == 0) {
            char line[300];
            int n = snprintf(line, sizeof(line), "%s\n", s->args);
            queue(s, 1, line, (size_t)n);
            queue(s, 2, "to stderr\n", 10);
            finish(s, wsi, 0);
        } else if (strcmp(s->cmd, "exit") == 0) {
            finish(s, wsi, atoi(s->args));
        } else if (strcmp(s->cmd, "fail") == 0) {
            finish(s, wsi, -1);
        }
        return 0;
    case LWS_CALLBACK_RECEIVE: {
        const unsigned char *d = in;
        if (lws_is_first_fragment(wsi)) {
            if (len == 0)
                return 0;
            s->msgch = (char)d[0];
            d++;
            len--;
        }
        if (s->pf_port && s->msgch == 0 && len > 0) {
            /* the "server" in the Pod: the port, then the bytes back */
            char line[300];
            int n = snprintf(line, sizeof(line), "%d:%.*s", s->pf_port,
                             (int)(len < 200 ? len : 200), (const char *)d);
            queue(s, 0, line, (size_t)n);
            lws_callback_on_writable(wsi);
        } else if (s->msgch == 0) {
            s->stdin_bytes += (long)len;
            if (strcmp(s->cmd, "cat") == 0 && len > 0) {
                queue(s, 1, (const char *)d, len);
                lws_callback_on_writable(wsi);
            }
        } else if ((unsigned char)s->msgch == 255 && len >= 1 && d[0] == 0) {
            if (strcmp(s->cmd, "wc") == 0) {
                char n[32];
                int l = snprintf(n, sizeof(n), "%ld\n", s->stdin_bytes);
                queue(s, 1, n, (size_t)l);
            }
            finish(s, wsi, 0);
        } else if (s->msgch == 4 && strcmp(s->cmd, "size") == 0 && !s->size_done) {
            s->size_done = true;
            queue(s, 1, (const char *)d, len);
            finish(s, wsi, 0);
        } else if (s->msgch == 4 && strcmp(s->cmd, "resize") == 0 && !s->size_done) {
            /* the first size, then the next one: a resize */
            queue(s, 1, (const char *)d, len);
            if (++s->sizes == 2) {
                s->size_done = true;
                finish(s, wsi, 0);
            }
        }
        /* a slow consumer: the client must hold back, not buffer */
        if (strcmp(s->cmd, "wc") == 0)
            usleep(200);
        return 0;
    }
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (s->n_out > 0) {
            struct stk_buf *b = &s->out[0];
            int r = lws_write(wsi, (unsigned char *)b->data + LWS_PRE, b->len - LWS_PRE,
                              LWS_WRITE_BINARY);
            stk_buf_free(b);
            memmove(&s->out[0], &s->out[1], sizeof(s->out[0]) * (size_t)(s->n_out - 1));
            memset(&s->out[s->n_out - 1], 0, sizeof(s->out[0]));
            s->n_out--;
            if (r < 0)
                return -1;
            lws_callback_on_writable(wsi);
            return 0;
        }
        if (s->close_after) {
            lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
            return -1;
        }
        return 0;
    case LWS_CALLBACK_CLOSED:
        for (int i = 0; i < s->n_out; i++)
            stk_buf_free(&s->out[i]);
        s->n_out = 0;
        return 0;
    default:
        return 0;
    }
}

static const struct lws_protocols with_v5[] = {
    {"http", lws_callback_http_dummy, 0, 0, 0, NULL, 0},
    {"v5.channel.k8s.io", cb, sizeof(struct session), 64 << 10, 0, NULL, 0},
    {"v4.channel.k8s.io", cb, sizeof(struct session), 64 << 10, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};
static const struct lws_protocols v4_only[] = {
    {"http", lws_callback_http_dummy, 0, 0, 0, NULL, 0},
    {"v4.channel.k8s.io", cb, sizeof(struct session), 64 << 10, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static volatile sig_atomic_t stop;
static void on_term(int sig)
{
    (void)sig;
    stop = 1;
}

int kube_ws_double_start(const char *data_dir, bool v5, struct kube_double *ret)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -errno;
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        close(p[0]);
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a test killed by its watchdog */
        signal(SIGTERM, on_term);
        signal(SIGPIPE, SIG_IGN);
        lws_set_log_level(0, NULL);
        char cert[4096], key[4096];
        snprintf(cert, sizeof(cert), "%s/server.crt", data_dir);
        snprintf(key, sizeof(key), "%s/server.key", data_dir);
        struct lws_context_creation_info ci = {0};
        ci.port = 0;
        ci.iface = "127.0.0.1";
        ci.protocols = v5 ? with_v5 : v4_only;
        ci.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT | LWS_SERVER_OPTION_DISABLE_IPV6;
        ci.ssl_cert_filepath = cert;
        ci.ssl_private_key_filepath = key;
        ci.gid = (gid_t)-1;
        ci.uid = (uid_t)-1;
        struct lws_context *ctx = lws_create_context(&ci);
        if (!ctx)
            _exit(2);
        int port = lws_get_vhost_listen_port(lws_get_vhost_by_name(ctx, "default"));
        if (write(p[1], &port, sizeof(port)) != sizeof(port))
            _exit(2);
        close(p[1]);
        while (!stop)
            if (lws_service(ctx, 0) < 0)
                break;
        _exit(0);
    }
    close(p[1]);
    int port = 0;
    ssize_t n = read(p[0], &port, sizeof(port));
    close(p[0]);
    if (n != sizeof(port) || port <= 0) {
        waitpid(pid, NULL, 0);
        return -EIO;
    }
    ret->pid = pid;
    ret->port = port;
    return 0;
}
