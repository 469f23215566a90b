/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The CLI as a client of `stockade serve` (docs/api.md): `--server URL` or
 * $STOCKADE_SERVER selects it, with a bearer token or a client certificate.
 * This file is the transport only (libcurl); the commands build the
 * requests and print the answers with the printers embedded mode uses, so
 * both modes print the same thing from the same record JSON.
 *
 * It is a private module (stockade-remote.so, docs/architecture.md): only
 * a command run with --server loads it and libcurl; the options it reads
 * (cli_remote) live in engine.c.
 *
 * The token is sent in a header and never printed: libcurl's verbose mode
 * stays off and error messages name the server, never the credentials.
 */
#include "cli.h"
#include "gateway/http.h"
#include "init/proto.h"
#include "session/session.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <string.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#define REMOTE_MAX_ANSWER   (64 * 1024 * 1024)
#define REMOTE_CONNECT_S    10
#define REMOTE_MAX_TOKEN    4096
#define REMOTE_UNIX_PREFIX  "unix:"
#define REMOTE_UNIX_BASEURL "http://localhost"

/* The token: --token / $STOCKADE_TOKEN, else the first line of the token
 * file. NULL without one (a client certificate may be the credential). */
static int token_get(const char *cmd, char **ret)
{
    *ret = NULL;
    if (cli_remote.token) {
        *ret = stk_xstrdup(cli_remote.token);
        return 0;
    }
    if (!cli_remote.token_file)
        return 0;
    _cleanup_fclose_ FILE *f = fopen(cli_remote.token_file, "re");
    if (!f) {
        fprintf(stderr, "stockade %s: cannot read the token file %s: %s\n", cmd,
                cli_remote.token_file, strerror(errno));
        return EXIT_USAGE;
    }
    char *line = stk_xcalloc(1, REMOTE_MAX_TOKEN + 2);
    if (!fgets(line, REMOTE_MAX_TOKEN + 2, f) || strlen(line) > REMOTE_MAX_TOKEN) {
        fprintf(stderr, "stockade %s: the token file %s is empty or too long\n", cmd,
                cli_remote.token_file);
        free(line);
        return EXIT_USAGE;
    }
    line[strcspn(line, "\r\n")] = '\0';
    *ret = line;
    return 0;
}

struct sink {
    CURL *curl;
    struct stk_buf body; /* the answer, or an error answer of a stream */
    int fd;              /* a stream's 2xx body goes here; -1: buffer it */
    bool failed;
};

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
    struct sink *s = ud;
    size_t len = size * n;
    long status = 0;
    curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &status);
    if (s->fd >= 0 && status >= 200 && status < 300) {
        for (size_t off = 0; off < len;) {
            ssize_t w = write(s->fd, p + off, len - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                s->failed = true;
                return 0;
            }
            off += (size_t)w;
        }
        return len;
    }
    if (s->body.len + len > REMOTE_MAX_ANSWER)
        return 0;
    stk_buf_append(&s->body, p, len);
    return len;
}

/* "stockade CMD: MESSAGE" from the server's JSON error (and its
 * diagnostics), else the status line. */
static void print_error(const char *cmd, long status, json_t *j)
{
    json_t *e = json_object_get(j, "error");
    const char *msg = json_string_value(json_object_get(e, "message"));
    if (msg && *msg)
        fprintf(stderr, "stockade %s: %s\n", cmd, msg);
    else
        fprintf(stderr, "stockade %s: the server answered HTTP %ld\n", cmd, status);
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(e, "diagnostics"), i, d)
    {
        if (json_is_string(d))
            fprintf(stderr, "%s\n", json_string_value(d));
    }
}

/* What every request to the server sets: its URL and socket, the
 * protocols, timeouts and the TLS material (libcurl copies the strings). */
static void remote_setup(CURL *c, const char *path)
{
    const char *base = cli_remote.server;
    bool unix_socket = !strncmp(base, REMOTE_UNIX_PREFIX, strlen(REMOTE_UNIX_PREFIX));
    if (unix_socket) {
        curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, base + strlen(REMOTE_UNIX_PREFIX));
        base = REMOTE_UNIX_BASEURL;
    }
    size_t blen = strlen(base);
    while (blen > 0 && base[blen - 1] == '/')
        blen--;
    _cleanup_free_ char *url = stk_xasprintf("%.*s%s", (int)blen, base, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)REMOTE_CONNECT_S);
    if (cli_remote.cacert)
        curl_easy_setopt(c, CURLOPT_CAINFO, cli_remote.cacert);
    if (cli_remote.cert) {
        curl_easy_setopt(c, CURLOPT_SSLCERT, cli_remote.cert);
        curl_easy_setopt(c, CURLOPT_SSLKEY, cli_remote.key);
    }
}

static CURL *remote_curl(void)
{
    static bool inited;
    if (!inited) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        inited = true;
    }
    return curl_easy_init();
}

int cli_remote_call(const char *cmd, const char *method, const char *path, json_t *body, int fd,
                    json_t **ret)
{
    _cleanup_free_ char *payload = body ? json_dumps(body, JSON_COMPACT) : NULL;
    return cli_remote_call_raw(cmd, method, path, payload, payload ? strlen(payload) : 0,
                               payload ? "application/json" : NULL, fd, ret);
}

int cli_remote_call_raw(const char *cmd, const char *method, const char *path, const void *payload,
                        size_t payload_len, const char *content_type, int fd, json_t **ret)
{
    if (ret)
        *ret = NULL;
    _cleanup_free_ char *token = NULL;
    int r = token_get(cmd, &token);
    if (r != 0)
        return r;
    CURL *c = remote_curl();
    if (!c) {
        fprintf(stderr, "stockade %s: cannot set up an HTTP client\n", cmd);
        return EXIT_SETUP;
    }
    remote_setup(c, path);
    _cleanup_free_ char *auth = token ? stk_xasprintf("Authorization: Bearer %s", token) : NULL;
    _cleanup_free_ char *ctype =
        content_type ? stk_xasprintf("Content-Type: %s", content_type) : NULL;
    struct curl_slist *headers = NULL;
    if (auth)
        headers = curl_slist_append(headers, auth);
    if (ctype)
        headers = curl_slist_append(headers, ctype);
    headers = curl_slist_append(headers, "Accept: application/json");
    headers = curl_slist_append(headers, "Expect:");
    struct sink s = {.curl = c, .fd = fd};

    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    if (payload) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)payload_len);
    }
    char curl_err[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_err);

    CURLcode cr = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(headers);
    if (token)
        explicit_bzero(token, strlen(token));
    if (auth)
        explicit_bzero(auth, strlen(auth));
    curl_easy_cleanup(c);

    int status_out = 0;
    if (cr != CURLE_OK && !(s.failed || (fd >= 0 && status >= 200 && status < 300))) {
        fprintf(stderr, "stockade %s: %s: %s\n", cmd, cli_remote.server,
                curl_err[0] ? curl_err : curl_easy_strerror(cr));
        status_out = EXIT_SETUP;
    } else if (cr != CURLE_OK) {
        /* a stream ended early, or stdout went away */
        status_out = s.failed ? EXIT_INVALID : EXIT_SETUP;
        if (!s.failed)
            fprintf(stderr, "stockade %s: the stream ended early: %s\n", cmd,
                    curl_err[0] ? curl_err : curl_easy_strerror(cr));
    } else {
        json_t *j = s.body.len ? json_loadb(s.body.data, s.body.len, 0, NULL) : NULL;
        if (status < 200 || status >= 300) {
            print_error(cmd, status, j);
            json_decref(j);
            status_out = EXIT_INVALID;
        } else if (ret) {
            if (!j) {
                fprintf(stderr, "stockade %s: the server's answer is not JSON\n", cmd);
                status_out = EXIT_INVALID;
            }
            *ret = j;
        } else {
            json_decref(j);
        }
    }
    stk_buf_free(&s.body);
    return status_out;
}

char *cli_remote_escape(const char *s)
{
    char *e = curl_easy_escape(NULL, s, 0);
    char *r = stk_xstrdup(e ? e : "");
    curl_free(e);
    return r;
}

/* ---- exec: the server's upgrade (plain, TLS or a Unix socket) ------------------------ */

enum {
    FRAME_STDIN = STK_INITP_STDIN,
    FRAME_STDIN_EOF = STK_INITP_STDIN_EOF,
    FRAME_RESIZE = STK_INITP_RESIZE,
    FRAME_KILL = STK_INITP_KILL,
    FRAME_OUTPUT = 33,
    FRAME_EXIT = 34,
    FRAME_ERROR = 35
};
#define FRAME_HDR 6
#define FRAME_MAX 65536

/* The exec connection: libcurl connects (TCP, TLS with the same
 * certificates as every other request, or the Unix socket) and then only
 * carries bytes (CURLOPT_CONNECT_ONLY); the upgrade is spoken here. */
struct xconn {
    CURL *c;
    curl_socket_t fd;
};

static int xconn_open(struct xconn *x, char *err, size_t err_n)
{
    x->c = remote_curl();
    x->fd = CURL_SOCKET_BAD;
    if (!x->c)
        return -ENOMEM;
    remote_setup(x->c, "/");
    curl_easy_setopt(x->c, CURLOPT_CONNECT_ONLY, 1L);
    char curl_err[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(x->c, CURLOPT_ERRORBUFFER, curl_err);
    CURLcode cr = curl_easy_perform(x->c);
    curl_easy_setopt(x->c, CURLOPT_ERRORBUFFER, NULL);
    if (cr != CURLE_OK || curl_easy_getinfo(x->c, CURLINFO_ACTIVESOCKET, &x->fd) != CURLE_OK ||
        x->fd == CURL_SOCKET_BAD) {
        snprintf(err, err_n, "%s", curl_err[0] ? curl_err : curl_easy_strerror(cr));
        return -ECONNREFUSED;
    }
    return 0;
}

static void xconn_close(struct xconn *x)
{
    if (x->c)
        curl_easy_cleanup(x->c);
    x->c = NULL;
}

static int xwait(struct xconn *x, short events)
{
    struct pollfd p = {.fd = x->fd, .events = events};
    int r;
    while ((r = poll(&p, 1, -1)) < 0 && errno == EINTR)
        ;
    return r < 0 ? -errno : 0;
}

static int write_all(struct xconn *x, const void *p, size_t n)
{
    for (size_t off = 0; off < n;) {
        size_t w = 0;
        CURLcode cr = curl_easy_send(x->c, (const char *)p + off, n - off, &w);
        if (cr == CURLE_AGAIN) {
            if (xwait(x, POLLOUT) < 0)
                return -1;
            continue;
        }
        if (cr != CURLE_OK)
            return -1;
        off += w;
    }
    return 0;
}

/* Bytes read (0: the server closed), -EAGAIN when nothing is there and
 * !wait, or another -errno. */
static ssize_t xrecv(struct xconn *x, void *p, size_t n, bool wait)
{
    for (;;) {
        size_t got = 0;
        CURLcode cr = curl_easy_recv(x->c, p, n, &got);
        if (cr == CURLE_OK)
            return (ssize_t)got;
        if (cr != CURLE_AGAIN)
            return -EIO;
        if (!wait)
            return -EAGAIN;
        if (xwait(x, POLLIN) < 0)
            return -EIO;
    }
}

static int send_frame(struct xconn *x, uint8_t type, const void *p, uint32_t n)
{
    uint8_t h[FRAME_HDR] = {type,      0, (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8),
                            (uint8_t)n};
    return write_all(x, h, sizeof(h)) < 0 || (n && write_all(x, p, n) < 0) ? -1 : 0;
}

/* The answer's head up to the blank line; anything read past it stays in
 * buf (frames, or an error's body). */
static int read_head(struct xconn *x, struct stk_buf *buf, size_t *ret_head_len)
{
    char tmp[4096];
    for (;;) {
        const char *end = buf->len ? memmem(buf->data, buf->len, "\r\n\r\n", 4) : NULL;
        if (end) {
            *ret_head_len = (size_t)(end - buf->data) + 4;
            return 0;
        }
        if (buf->len > 16 * 1024)
            return -1;
        ssize_t n = xrecv(x, tmp, sizeof(tmp), true);
        if (n <= 0)
            return -1;
        stk_buf_append(buf, tmp, (size_t)n);
    }
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Signals to pass on, as embedded mode does (stk_init_exec): SIGINT,
 * SIGTERM and SIGHUP become KILL frames (to the process's group), SIGWINCH
 * with a terminal a RESIZE. A self-pipe carries them into the loop; they
 * are caught only between the 101 and the end. */
static int xsig_pipe = -1;
static const int xsig_forwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGWINCH};

static void xsig_on(int sig)
{
    int saved = errno;
    uint8_t b = (uint8_t)sig;
    if (xsig_pipe >= 0)
        (void)!write(xsig_pipe, &b, 1);
    errno = saved;
}

struct xsigs {
    int pipe[2];
    struct sigaction old[STK_ARRAY_SIZE(xsig_forwarded)];
};

static void xsigs_install(struct xsigs *s, bool winch)
{
    if (pipe2(s->pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
        s->pipe[0] = s->pipe[1] = -1;
        return;
    }
    xsig_pipe = s->pipe[1];
    struct sigaction sa = {.sa_handler = xsig_on, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < STK_ARRAY_SIZE(xsig_forwarded); i++)
        if (winch || xsig_forwarded[i] != SIGWINCH)
            (void)sigaction(xsig_forwarded[i], &sa, &s->old[i]);
        else
            (void)sigaction(xsig_forwarded[i], NULL, &s->old[i]);
}

static void xsigs_restore(struct xsigs *s)
{
    if (s->pipe[0] < 0)
        return;
    for (size_t i = 0; i < STK_ARRAY_SIZE(xsig_forwarded); i++)
        (void)sigaction(xsig_forwarded[i], &s->old[i], NULL);
    xsig_pipe = -1;
    close(s->pipe[0]);
    close(s->pipe[1]);
}

/* The terminal's size, clamped to what the protocol carries; false when
 * fd is no terminal or does not know its size. */
static bool tty_winsize(int fd, uint16_t *ret_rows, uint16_t *ret_cols)
{
    struct winsize ws;
    if (fd < 0 || ioctl(fd, TIOCGWINSZ, &ws) < 0 || !ws.ws_row || !ws.ws_col)
        return false;
    *ret_rows = ws.ws_row > STK_INITP_WINSIZE_MAX ? STK_INITP_WINSIZE_MAX : ws.ws_row;
    *ret_cols = ws.ws_col > STK_INITP_WINSIZE_MAX ? STK_INITP_WINSIZE_MAX : ws.ws_col;
    return true;
}

static int forward_xsigs(struct xconn *x, int sigpipe, int tty_fd)
{
    uint8_t sigs[16];
    ssize_t n = read(sigpipe, sigs, sizeof(sigs));
    for (ssize_t i = 0; i < n; i++) {
        uint8_t p[4];
        uint16_t rows, cols;
        if (sigs[i] == SIGWINCH) {
            if (!tty_winsize(tty_fd, &rows, &cols))
                continue;
            stk_initp_resize_encode(p, rows, cols);
            if (send_frame(x, FRAME_RESIZE, p, 4) < 0)
                return -1;
            continue;
        }
        stk_initp_u32_encode(p, sigs[i]);
        if (send_frame(x, FRAME_KILL, p, 4) < 0)
            return -1;
    }
    return 0;
}

/* Relays until EXIT or ERROR. pending: bytes already read after the head.
 * tty_fd: the terminal whose size follows SIGWINCH, or -1. */
static int exec_relay(struct xconn *x, int in_fd, int tty_fd, struct stk_buf *pending,
                      int *ret_code)
{
    struct stk_buf in = {0};
    stk_buf_append(&in, pending->data ? pending->data : "", pending->len);
    char tmp[FRAME_MAX];
    int result = EXIT_SETUP;
    /* without -i the command's stdin is closed, as in embedded mode */
    bool done = in_fd < 0 && send_frame(x, FRAME_STDIN_EOF, NULL, 0) < 0;
    struct xsigs sigs;
    xsigs_install(&sigs, tty_fd >= 0);
    while (!done) {
        /* every whole frame received so far */
        while (in.len >= FRAME_HDR) {
            const uint8_t *h = (const uint8_t *)in.data;
            uint32_t n = be32(h + 2);
            if (n > FRAME_MAX) {
                fprintf(stderr, "stockade exec: the server sent a frame too large\n");
                done = true;
                break;
            }
            if (in.len < FRAME_HDR + n)
                break;
            const uint8_t *p = h + FRAME_HDR;
            if (h[0] == FRAME_OUTPUT) {
                if (stk_write_all(h[1] == 2 ? STDERR_FILENO : STDOUT_FILENO, p, n) < 0) {
                    done = true;
                    break;
                }
            } else if (h[0] == FRAME_EXIT && n >= 4) {
                *ret_code = (int)be32(p);
                result = 0;
                done = true;
            } else if (h[0] == FRAME_ERROR) {
                const char *msg = n > 5 ? (const char *)p + 5 : "";
                fprintf(stderr, "stockade exec: %.*s\n", (int)(n > 5 ? n - 5 : 0), msg);
                done = true;
            }
            memmove(in.data, in.data + FRAME_HDR + n, in.len - FRAME_HDR - n);
            in.len -= FRAME_HDR + n;
            if (done)
                break;
        }
        if (done)
            break;
        /* what TLS decrypted already does not show on the socket: read
         * until the connection has nothing more, then wait */
        ssize_t got = xrecv(x, tmp, sizeof(tmp), false);
        if (got > 0) {
            stk_buf_append(&in, tmp, (size_t)got);
            continue;
        }
        if (got != -EAGAIN) {
            fprintf(stderr, "stockade exec: the server closed the connection\n");
            break;
        }
        struct pollfd pfd[3] = {{.fd = x->fd, .events = POLLIN},
                                {.fd = in_fd, .events = POLLIN},
                                {.fd = sigs.pipe[0], .events = POLLIN}};
        if (poll(pfd, 3, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (pfd[2].revents && forward_xsigs(x, sigs.pipe[0], tty_fd) < 0)
            break;
        if (in_fd >= 0 && pfd[1].revents) {
            ssize_t n = read(in_fd, tmp, sizeof(tmp));
            if (n < 0 && errno == EINTR)
                continue;
            if (n > 0 ? send_frame(x, FRAME_STDIN, tmp, (uint32_t)n) < 0
                      : send_frame(x, FRAME_STDIN_EOF, NULL, 0) < 0)
                break;
            if (n <= 0)
                in_fd = -1;
        }
    }
    xsigs_restore(&sigs);
    stk_buf_free(&in);
    return result;
}

/* The Host header: the server URL's authority, "localhost" on a socket. */
static void exec_host(char *host, size_t n)
{
    const char *srv = cli_remote.server;
    const char *p = strstr(srv, "://");
    if (!strncmp(srv, REMOTE_UNIX_PREFIX, strlen(REMOTE_UNIX_PREFIX)) || !p) {
        snprintf(host, n, "localhost");
        return;
    }
    p += 3;
    snprintf(host, n, "%.*s", (int)strcspn(p, "/"), p);
}

/* Sends an upgrade request (what: "POST /v1/...:exec", upgrade: the
 * protocol, body: NULL or JSON) and reads the answer's head. 0 with the
 * bytes read past a 101 in *pending; otherwise the error is printed as
 * "stockade CMD: ..." and EXIT_SETUP returned. */
static int xconn_upgrade(struct xconn *x, const char *cmd, const char *what, const char *upgrade,
                         const char *body, const char *token, struct stk_buf *pending)
{
    char host[300];
    exec_host(host, sizeof(host));
    struct stk_buf req = {0};
    stk_buf_printf(&req, "%s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: %s\r\n", what,
                   host, upgrade);
    if (body)
        stk_buf_printf(&req, "Content-Type: application/json\r\nContent-Length: %zu\r\n",
                       strlen(body));
    if (token)
        stk_buf_printf(&req, "Authorization: Bearer %s\r\n", token);
    stk_buf_printf(&req, "\r\n%s", body ? body : "");
    int w = write_all(x, req.data, req.len);
    explicit_bzero(req.data, req.len);
    stk_buf_free(&req);
    struct stk_buf in = {0};
    size_t head = 0;
    if (w < 0 || read_head(x, &in, &head) < 0) {
        fprintf(stderr, "stockade %s: %s: no answer\n", cmd, cli_remote.server);
        stk_buf_free(&in);
        return EXIT_SETUP;
    }
    long status = 0;
    if (sscanf(in.data, "HTTP/1.%*d %ld", &status) != 1)
        status = 0;
    if (status != 101) {
        /* an ordinary JSON error; the body may still be on its way */
        const char *cl = strcasestr(in.data, "\r\ncontent-length:");
        size_t want =
            cl && cl < in.data + head ? strtoul(cl + strlen("\r\ncontent-length:"), NULL, 10) : 0;
        char tmp[4096];
        while (want <= REMOTE_MAX_ANSWER && in.len < head + want) {
            ssize_t n = xrecv(x, tmp, sizeof(tmp), true);
            if (n <= 0)
                break;
            stk_buf_append(&in, tmp, (size_t)n);
        }
        json_t *j = json_loadb(in.data + head, in.len - head, 0, NULL);
        print_error(cmd, status, j);
        json_decref(j);
        stk_buf_free(&in);
        return EXIT_SETUP;
    }
    stk_buf_append(pending, in.data + head, in.len - head);
    stk_buf_free(&in);
    return 0;
}

static int exec_over(struct xconn *x, const char *id, struct json_t *body, const char *token,
                     int in_fd, int tty_fd, int *ret_code)
{
    _cleanup_free_ char *eid = cli_remote_escape(id);
    _cleanup_free_ char *payload = json_dumps(body, JSON_COMPACT);
    _cleanup_free_ char *what = stk_xasprintf("POST /v1/sandboxes/%s:exec", eid);
    struct stk_buf pending = {0};
    int r = xconn_upgrade(x, "exec", what, "stockade-exec.v1", payload, token, &pending);
    if (r == 0)
        r = exec_relay(x, in_fd, tty_fd, &pending, ret_code);
    stk_buf_free(&pending);
    return r;
}

int cli_remote_exec(const char *id, struct json_t *body, int in_fd, int tty_fd, int *ret_code)
{
    _cleanup_free_ char *token = NULL;
    int r = token_get("exec", &token);
    if (r != 0)
        return r;
    struct xconn x;
    char err[CURL_ERROR_SIZE];
    if (xconn_open(&x, err, sizeof(err)) < 0) {
        fprintf(stderr, "stockade exec: %s: %s\n", cli_remote.server, err);
        xconn_close(&x);
        r = EXIT_SETUP;
    } else {
        r = exec_over(&x, id, body, token, in_fd, tty_fd, ret_code);
        xconn_close(&x);
    }
    if (token)
        explicit_bzero(token, strlen(token));
    return r;
}

/* ---- port-forward: the port route's raw upgrade ------------------------------------- */

/* Between the local end of a socketpair and the gateway's connection (TLS
 * inside libcurl), until the gateway's side ends. */
static void port_relay(struct xconn *x, int fd, struct stk_buf *pending)
{
    static char buf[FRAME_MAX];
    if (pending->len && stk_write_all(fd, pending->data, pending->len) < 0)
        return;
    bool local_open = true;
    for (;;) {
        /* what TLS decrypted already does not show on the socket */
        ssize_t got = xrecv(x, buf, sizeof(buf), false);
        if (got > 0) {
            if (stk_write_all(fd, buf, (size_t)got) < 0)
                return;
            continue;
        }
        if (got != -EAGAIN)
            return; /* the gateway (the sandbox's port) is done */
        struct pollfd p[2] = {{.fd = x->fd, .events = POLLIN},
                              {.fd = local_open ? fd : -1, .events = POLLIN}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        if (p[1].revents) {
            ssize_t n = read(fd, buf, sizeof(buf));
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                /* the local client is done sending: so is the connection */
                local_open = false;
                (void)shutdown(x->fd, SHUT_WR);
            } else if (write_all(x, buf, (size_t)n) < 0) {
                return;
            }
        }
    }
}

/* One connection to a declared port through GET .../ports/{port}/ with
 * Upgrade: stockade-tcp.v1. A process of its own (forked twice, so nothing
 * is left to reap) relays between the gateway and one end of a socketpair;
 * the caller gets the other, as if it were the port itself. A refusal is
 * printed by that process ("stockade port-forward: ..."), and the caller's
 * end then simply ends. Without ret_fd: whether the sandbox is there and
 * ready (the port itself is checked per connection, by the gateway). */
static int rem_connect(struct cli_engine *e, const char *id, uint16_t port, int *ret_fd)
{
    (void)e;
    _cleanup_free_ char *eid = cli_remote_escape(id);
    if (!ret_fd) {
        json_t *rec = NULL;
        _cleanup_free_ char *path = stk_xasprintf("/v1/sandboxes/%s", eid);
        int r = cli_remote_call("port-forward", "GET", path, NULL, -1, &rec);
        if (r != 0)
            return r;
        const char *phase = json_string_value(json_object_get(rec, "phase"));
        if (!phase || strcmp(phase, "ready")) {
            fprintf(stderr,
                    "stockade port-forward: sandbox %s is %s; a port needs a ready "
                    "sandbox\n",
                    id, phase ? phase : "in no phase");
            r = EXIT_INVALID;
        }
        json_decref(rec);
        return r;
    }
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
        return EXIT_SETUP;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(sp[0]);
        close(sp[1]);
        return EXIT_SETUP;
    }
    if (pid == 0) {
        close(sp[0]);
        if (fork() != 0)
            _exit(0);
        /* nothing of the port-forward's (its listeners, other connections)
         * stays open here: their ends must not wait for this one */
        if (sp[1] > 3)
            (void)close_range(3, (unsigned)sp[1] - 1, 0);
        (void)close_range((unsigned)sp[1] + 1, ~0U, 0);
        signal(SIGINT, SIG_IGN); /* the port-forward's Ctrl-C ends it through its socket */
        signal(SIGTERM, SIG_DFL);
        _cleanup_free_ char *token = NULL;
        struct xconn x;
        char err[CURL_ERROR_SIZE];
        if (token_get("port-forward", &token) != 0)
            _exit(1);
        if (xconn_open(&x, err, sizeof(err)) < 0) {
            fprintf(stderr, "stockade port-forward: %s: %s\n", cli_remote.server, err);
            _exit(1);
        }
        _cleanup_free_ char *what =
            stk_xasprintf("GET /v1/sandboxes/%s/ports/%u/", eid, (unsigned)port);
        struct stk_buf pending = {0};
        int r = xconn_upgrade(&x, "port-forward", what, STK_GW_TCP_UPGRADE, NULL, token, &pending);
        if (token)
            explicit_bzero(token, strlen(token));
        if (r == 0)
            port_relay(&x, sp[1], &pending);
        stk_buf_free(&pending);
        xconn_close(&x);
        _exit(r == 0 ? 0 : 1);
    }
    close(sp[1]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    *ret_fd = sp[0];
    return 0;
}

/* ---- the remote engine (cli_engine_ops over the gateway's API) ---------------------- */

static int rem_create(struct cli_engine *e, const struct cli_create_args *a,
                      struct stk_create_res *ret)
{
    (void)e;
    json_t *body = json_pack("{s:s%}", "spec", a->docs->spec, a->docs->spec_len);
    if (a->accepted_only)
        json_object_set_new(body, "wait", json_string("accepted"));
    if (a->docs->env)
        json_object_set_new(body, "env", json_stringn(a->docs->env, a->docs->env_len));
    if (a->pool)
        json_object_set_new(body, "pool", json_string(a->pool));
    if (a->owner)
        json_object_set_new(body, "owner", json_string(a->owner));
    if (a->tenant)
        json_object_set_new(body, "tenant", json_string(a->tenant));
    json_t *rec = NULL;
    int r = cli_remote_call("create", "POST", "/v1/sandboxes", body, -1, &rec);
    json_decref(body);
    if (r != 0)
        return r;
    const char *id = json_string_value(json_object_get(rec, "id"));
    snprintf(ret->id, sizeof(ret->id), "%s", id ? id : "");
    /* a claim keeps the pool's name; an empty pool means a cold create */
    ret->warm = a->pool && json_is_string(json_object_get(rec, "pool"));
    if (a->pool && !ret->warm)
        snprintf(ret->note, sizeof(ret->note), "pool %s had no ready member: cold create", a->pool);
    json_decref(rec);
    return 0;
}

static int rem_exec(struct cli_engine *e, const char *id, const struct stk_init_proc *proc,
                    bool interactive, int *ret_code)
{
    (void)e;
    json_t *argv = json_array(), *env = json_array();
    for (size_t i = 0; i < proc->argc; i++)
        json_array_append_new(argv, json_string(proc->argv[i]));
    for (size_t i = 0; i < proc->n_env; i++)
        json_array_append_new(env, json_string(proc->env[i]));
    json_t *body = json_pack("{s:o,s:o,s:b}", "argv", argv, "env", env, "tty", proc->tty);
    if (proc->cwd)
        json_object_set_new(body, "cwd", json_string(proc->cwd));
    if (proc->replica)
        json_object_set_new(body, "replica", json_string(proc->replica));
    /* a terminal inside starts with this one's size and follows it */
    int tty_fd = proc->tty && isatty(STDIN_FILENO)    ? STDIN_FILENO
                 : proc->tty && isatty(STDOUT_FILENO) ? STDOUT_FILENO
                                                      : -1;
    uint16_t rows, cols;
    if (tty_fd >= 0 && tty_winsize(tty_fd, &rows, &cols)) {
        json_object_set_new(body, "rows", json_integer(rows));
        json_object_set_new(body, "cols", json_integer(cols));
    }
    /* a terminal inside: this one passes keystrokes through untouched */
    struct termios saved;
    bool raw =
        proc->tty && interactive && isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0;
    if (raw) {
        struct termios t = saved;
        cfmakeraw(&t);
        (void)tcsetattr(STDIN_FILENO, TCSANOW, &t);
    }
    int r = cli_remote_exec(id, body, interactive ? STDIN_FILENO : -1, tty_fd, ret_code);
    if (raw)
        (void)tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    json_decref(body);
    return r;
}

static int rem_logs(struct cli_engine *e, const char *id, const struct stk_session_logs_req *q)
{
    (void)e;
    _cleanup_free_ char *eid = cli_remote_escape(id);
    _cleanup_free_ char *path =
        stk_xasprintf("/v1/sandboxes/%s/logs?since=%lld%s%s", eid, (long long)q->since_ms,
                      q->follow ? "&follow=1" : "", q->timestamps ? "&timestamps=1" : "");
    if (q->until_ms > 0) {
        char *p = stk_xasprintf("%s&until=%lld", path, (long long)q->until_ms);
        free(path);
        path = p;
    }
    if (q->tail >= 0) {
        char *p = stk_xasprintf("%s&tail=%lld", path, (long long)q->tail);
        free(path);
        path = p;
    }
    fflush(stdout);
    return cli_remote_call("logs", "GET", path, NULL, STDOUT_FILENO, NULL);
}

static int rem_act(struct cli_engine *e, enum cli_act act, const char *id, bool force)
{
    (void)e;
    static const char *const verbs[] = {"stop", "start", "rm"};
    _cleanup_free_ char *eid = cli_remote_escape(id);
    _cleanup_free_ char *path =
        act == CLI_ACT_RM ? stk_xasprintf("/v1/sandboxes/%s%s", eid, force ? "?force=1" : "")
                          : stk_xasprintf("/v1/sandboxes/%s:%s", eid, verbs[act]);
    return cli_remote_call(verbs[act], act == CLI_ACT_RM ? "DELETE" : "POST", path, NULL, -1, NULL);
}

/* The `items` of a list answer (an empty array when there are none). */
static int rem_items(const char *cmd, const char *path, json_t **ret)
{
    json_t *ans = NULL;
    int r = cli_remote_call(cmd, "GET", path, NULL, -1, &ans);
    if (r != 0)
        return r;
    json_t *items = json_object_get(ans, "items");
    *ret = json_is_array(items) ? json_incref(items) : json_array();
    json_decref(ans);
    return 0;
}

static int rem_list(struct cli_engine *e, bool all, json_t **ret)
{
    (void)e;
    return rem_items("ls", all ? "/v1/sandboxes?all=1" : "/v1/sandboxes", ret);
}

static int rem_get(struct cli_engine *e, const char *id, json_t **ret)
{
    (void)e;
    _cleanup_free_ char *eid = cli_remote_escape(id);
    _cleanup_free_ char *path = stk_xasprintf("/v1/sandboxes/%s", eid);
    int r = cli_remote_call("get", "GET", path, NULL, -1, ret);
    if (r != 0)
        return r;
    /* an injected sandbox's replicas, as the embedded engine shows them */
    _cleanup_free_ char *rpath = stk_xasprintf("/v1/sandboxes/%s/replicas", eid);
    json_t *rep = NULL;
    if (cli_remote_call("get", "GET", rpath, NULL, -1, &rep) == 0 &&
        json_is_array(json_object_get(rep, "items")))
        json_object_set(*ret, "replicas", json_object_get(rep, "items"));
    json_decref(rep);
    return 0;
}

static int rem_pool_create(struct cli_engine *e, const char *name, int size,
                           const struct stk_session_docs *docs, const char *tenant)
{
    (void)e;
    json_t *body =
        json_pack("{s:s,s:i,s:s%}", "name", name, "size", size, "spec", docs->spec, docs->spec_len);
    if (docs->env)
        json_object_set_new(body, "env", json_stringn(docs->env, docs->env_len));
    if (tenant)
        json_object_set_new(body, "tenant", json_string(tenant));
    int r = cli_remote_call("pool create", "POST", "/v1/pools", body, -1, NULL);
    json_decref(body);
    return r;
}

static int rem_pool_list(struct cli_engine *e, json_t **ret)
{
    (void)e;
    return rem_items("pool ls", "/v1/pools", ret);
}

static int rem_pool_rm(struct cli_engine *e, const char *name)
{
    (void)e;
    _cleanup_free_ char *en = cli_remote_escape(name);
    _cleanup_free_ char *path = stk_xasprintf("/v1/pools/%s", en);
    return cli_remote_call("pool rm", "DELETE", path, NULL, -1, NULL);
}

static int rem_file_read(struct cli_engine *e, const char *id, const char *path, int out_fd)
{
    (void)e;
    _cleanup_free_ char *eid = cli_remote_escape(id), *epath = cli_remote_escape(path);
    _cleanup_free_ char *url = stk_xasprintf("/v1/sandboxes/%s/files?path=%s", eid, epath);
    return cli_remote_call("cp", "GET", url, NULL, out_fd, NULL);
}

static int rem_file_write(struct cli_engine *e, const char *id, const char *path, unsigned mode,
                          const void *data, size_t size)
{
    (void)e;
    if (size > STK_GW_MAX_FILE_BODY) {
        fprintf(stderr, "stockade cp: %zu bytes: a file is at most %d bytes\n", size,
                STK_GW_MAX_FILE_BODY);
        return EXIT_INVALID;
    }
    _cleanup_free_ char *eid = cli_remote_escape(id), *epath = cli_remote_escape(path);
    _cleanup_free_ char *url =
        stk_xasprintf("/v1/sandboxes/%s/files?path=%s&mode=%04o", eid, epath, mode);
    /* an empty file is a body of 0 bytes, not no body */
    return cli_remote_call_raw("cp", "PUT", url, data ? data : "", size, "application/octet-stream",
                               -1, NULL);
}

const struct cli_engine_ops cli_remote_engine_ops = {
    .connect = rem_connect,
    .file_read = rem_file_read,
    .file_write = rem_file_write,
    .create = rem_create,
    .exec = rem_exec,
    .logs = rem_logs,
    .act = rem_act,
    .list = rem_list,
    .get = rem_get,
    .pool_create = rem_pool_create,
    .pool_list = rem_pool_list,
    .pool_rm = rem_pool_rm,
};
