/* SPDX-License-Identifier: Apache-2.0 */
/* The host side of the stockade-init protocol; see client.h. */
#include "init/client.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>

#include "init/proto.h"

_Static_assert(STK_INIT_FILE_MAX == STK_INITP_FILE_MAX, "one file limit");

#define CONNECT_RETRY_MS 20
#define STDIN_CHUNK      32768
#define FILE_CHUNK       STK_INITP_MAX_PAYLOAD
#define OUT_CHUNK        4096 /* <= PIPE_BUF: a write after POLLOUT never blocks */
#define ERRMSG_MAX       1024

struct stk_init_conn {
    int fd;
    uint8_t buf[STK_INITP_MAX_FRAME]; /* received bytes, frames from offset 0 */
    size_t len;
    size_t consumed; /* bytes of the frame last returned, dropped on the next read */
};

int stk_init_connect(const char *path, int timeout_ms, struct stk_init_conn **ret,
                     struct stk_error **err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return stk_error_make(err, ENAMETOOLONG, "init: socket path too long: %s", path);
    strcpy(sa.sun_path, path);
    int64_t deadline = stk_clock_ms(CLOCK_MONOTONIC) + (timeout_ms > 0 ? timeout_ms : 0);
    for (;;) {
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return stk_error_errno(err, errno, "init: socket");
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            struct stk_init_conn *c = stk_xcalloc(1, sizeof(*c));
            c->fd = TAKE_FD(fd);
            *ret = c;
            return 0;
        }
        int e = errno;
        bool retry = e == ENOENT || e == ECONNREFUSED || e == EAGAIN || e == EINTR;
        if (!retry || stk_clock_ms(CLOCK_MONOTONIC) >= deadline)
            return stk_error_errno(err, e, "init: connect %s", path);
        struct timespec pause = {.tv_nsec = CONNECT_RETRY_MS * 1000000L};
        nanosleep(&pause, NULL);
    }
}

void stk_init_close(struct stk_init_conn *c)
{
    if (!c)
        return;
    if (c->fd >= 0)
        close(c->fd);
    free(c);
}

/* ---- framing ------------------------------------------------------------------ */

static int send_all(struct stk_init_conn *c, const uint8_t *p, size_t n, struct stk_error **err)
{
    while (n > 0) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return stk_error_errno(err, errno, "init: send");
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int send_frame(struct stk_init_conn *c, uint8_t type, const void *payload, size_t len,
                      struct stk_error **err)
{
    uint8_t hdr[STK_INITP_HDR];
    stk_initp_hdr_encode(hdr, type, 0, (uint32_t)len);
    int r = send_all(c, hdr, sizeof(hdr), err);
    if (r < 0 || len == 0)
        return r;
    return send_all(c, payload, len, err);
}

static void drop_consumed(struct stk_init_conn *c)
{
    if (!c->consumed)
        return;
    memmove(c->buf, c->buf + c->consumed, c->len - c->consumed);
    c->len -= c->consumed;
    c->consumed = 0;
}

/* A complete frame at the start of the buffer? 1 yes, 0 not yet, <0 bad. */
static int frame_ready(struct stk_init_conn *c, struct stk_initp_hdr *h, struct stk_error **err)
{
    drop_consumed(c);
    if (c->len < STK_INITP_HDR)
        return 0;
    if (stk_initp_hdr_decode(c->buf, h) < 0)
        return stk_error_make(err, EPROTO, "init: malformed frame from init");
    if (c->len < STK_INITP_HDR + h->len)
        return 0;
    c->consumed = STK_INITP_HDR + h->len;
    return 1;
}

/* Reads what is available into the buffer; 0 on EOF is an error here. */
static int fill(struct stk_init_conn *c, bool block, struct stk_error **err)
{
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, block ? 0 : MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return 0;
    if (n < 0)
        return stk_error_errno(err, errno, "init: receive");
    if (n == 0)
        return stk_error_make(err, ECONNRESET, "init: connection closed by init");
    c->len += (size_t)n;
    return 0;
}

static int recv_frame(struct stk_init_conn *c, struct stk_initp_hdr *h, const uint8_t **payload,
                      struct stk_error **err)
{
    for (;;) {
        int r = frame_ready(c, h, err);
        if (r < 0)
            return r;
        if (r > 0) {
            *payload = c->buf + STK_INITP_HDR;
            return 0;
        }
        r = fill(c, true, err);
        if (r < 0)
            return r;
    }
}

static int error_from_frame(const uint8_t *p, size_t n, uint8_t *ret_kind, struct stk_error **err)
{
    uint32_t code;
    uint8_t kind;
    char msg[ERRMSG_MAX];
    if (stk_initp_error_decode(p, n, &code, &kind, msg, sizeof(msg)) < 0)
        return stk_error_make(err, EPROTO, "init: malformed error frame");
    if (ret_kind)
        *ret_kind = kind;
    return stk_error_make(err, code > 0 && code < 4096 ? (int)code : EPROTO, "%s", msg);
}

static int unexpected(const struct stk_initp_hdr *h, const char *what, struct stk_error **err)
{
    return stk_error_make(err, EPROTO, "init: %s: unexpected %s frame", what,
                          stk_initp_type_name(h->type));
}

/* Sends a request and waits for OK (payload returned) or ERROR. */
static int request(struct stk_init_conn *c, uint8_t type, const void *payload, size_t len,
                   const char *what, const uint8_t **ret_payload, size_t *ret_len,
                   uint8_t *ret_kind, struct stk_error **err)
{
    int r = send_frame(c, type, payload, len, err);
    if (r < 0)
        return stk_error_wrap(err, "%s", what);
    struct stk_initp_hdr h;
    const uint8_t *p;
    r = recv_frame(c, &h, &p, err);
    if (r < 0)
        return stk_error_wrap(err, "%s", what);
    if (h.type == STK_INITP_ERROR)
        return error_from_frame(p, h.len, ret_kind, err);
    if (h.type != STK_INITP_OK)
        return unexpected(&h, what, err);
    if (ret_payload)
        *ret_payload = p;
    if (ret_len)
        *ret_len = h.len;
    return 0;
}

/* ---- simple requests ---------------------------------------------------------- */

int stk_init_hello(struct stk_init_conn *c, struct stk_init_info *ret, struct stk_error **err)
{
    const uint8_t *p;
    size_t n;
    int r = request(c, STK_INITP_HELLO, NULL, 0, "hello", &p, &n, NULL, err);
    if (r < 0)
        return r;
    struct stk_initp_hello h;
    if (stk_initp_hello_decode(p, n, &h) < 0)
        return stk_error_make(err, EPROTO, "init: hello: malformed reply");
    static const enum stk_init_state states[] = {
        [STK_INITP_STATE_IDLE] = STK_INIT_IDLE,
        [STK_INITP_STATE_RUNNING] = STK_INIT_RUNNING,
        [STK_INITP_STATE_EXITED] = STK_INIT_EXITED,
    };
    *ret = (struct stk_init_info){
        .version = h.version,
        .state = states[h.state],
        .pid = h.pid,
        .exit_code = h.exit_code,
        .signal = h.signal,
    };
    return 0;
}

static int encode_proc(const struct stk_init_proc *p, uint8_t *buf, size_t cap, size_t *ret_len,
                       struct stk_error **err)
{
    static struct stk_initp_proc wire; /* large; never used concurrently */
    if (p->argc > STK_INITP_MAX_ARGS || p->n_env > STK_INITP_MAX_ENV)
        return stk_error_make(err, E2BIG, "init: at most 256 argv and 256 env entries");
    wire.tty = p->tty;
    wire.rows = p->rows;
    wire.cols = p->cols;
    wire.cwd = p->cwd;
    wire.argc = p->argc;
    wire.n_env = p->n_env;
    for (size_t i = 0; i < p->argc; i++)
        wire.argv[i] = p->argv[i];
    for (size_t i = 0; i < p->n_env; i++)
        wire.env[i] = p->env[i];
    const char *why = "invalid process";
    ssize_t n = stk_initp_proc_encode(buf, cap, &wire, &why);
    if (n < 0)
        return stk_error_make(err, (int)-n, "init: %s", why);
    *ret_len = (size_t)n;
    return 0;
}

int stk_init_start(struct stk_init_conn *c, const struct stk_init_proc *p, struct stk_error **err)
{
    _cleanup_free_ uint8_t *buf = stk_xmalloc(STK_INITP_MAX_PAYLOAD);
    size_t n;
    int r = encode_proc(p, buf, STK_INITP_MAX_PAYLOAD, &n, err);
    if (r < 0)
        return r;
    return request(c, STK_INITP_START, buf, n, "start", NULL, NULL, NULL, err);
}

int stk_init_signal(struct stk_init_conn *c, int sig, struct stk_error **err)
{
    uint8_t p[4];
    stk_initp_u32_encode(p, (uint32_t)sig);
    return request(c, STK_INITP_SIGNAL, p, sizeof(p), "signal", NULL, NULL, NULL, err);
}

int stk_init_shutdown(struct stk_init_conn *c, int grace_ms, struct stk_error **err)
{
    uint8_t p[4];
    stk_initp_u32_encode(p, (uint32_t)(grace_ms < 0 ? 0 : grace_ms));
    return request(c, STK_INITP_SHUTDOWN, p, sizeof(p), "shutdown", NULL, NULL, NULL, err);
}

static int decode_exit(const uint8_t *p, size_t n, int *ret_code, int *ret_signal,
                       struct stk_error **err)
{
    int32_t code, sig;
    if (stk_initp_exit_decode(p, n, &code, &sig) < 0)
        return stk_error_make(err, EPROTO, "init: malformed exit frame");
    *ret_code = code;
    if (ret_signal)
        *ret_signal = sig;
    return 0;
}

int stk_init_attach(struct stk_init_conn *c, stk_init_output_fn cb, void *ud, int *ret_exit_code,
                    int *ret_signal, struct stk_error **err)
{
    int r = request(c, STK_INITP_ATTACH, NULL, 0, "attach", NULL, NULL, NULL, err);
    if (r < 0)
        return r;
    for (;;) {
        struct stk_initp_hdr h;
        const uint8_t *p;
        r = recv_frame(c, &h, &p, err);
        if (r < 0)
            return stk_error_wrap(err, "attach");
        switch (h.type) {
        case STK_INITP_OUTPUT:
            r = cb(ud, h.stream, p, h.len);
            if (r < 0)
                return r;
            break;
        case STK_INITP_EXIT:
            return decode_exit(p, h.len, ret_exit_code, ret_signal, err);
        case STK_INITP_ERROR:
            return error_from_frame(p, h.len, NULL, err);
        default:
            return unexpected(&h, "attach", err);
        }
    }
}

/* ---- exec ------------------------------------------------------------------------- */

/* Signals that arrive while an exec waits are written to this pipe and
 * forwarded from the loop. One exec with signal forwarding per process at a
 * time: the handlers are process-wide. */
static int exec_sigpipe = -1;

static void exec_on_signal(int sig)
{
    int saved = errno;
    uint8_t b = (uint8_t)sig;
    if (exec_sigpipe >= 0) {
        ssize_t w = write(exec_sigpipe, &b, 1);
        (void)w;
    }
    errno = saved;
}

#define N_FORWARDED 4
static const int forwarded_signals[N_FORWARDED] = {SIGINT, SIGTERM, SIGHUP, SIGWINCH};

struct exec_signals {
    int pipe[2];
    bool installed[N_FORWARDED];
    struct sigaction old[N_FORWARDED];
};

static int exec_signals_install(struct exec_signals *s, bool winch, struct stk_error **err)
{
    s->pipe[0] = s->pipe[1] = -1;
    for (int i = 0; i < N_FORWARDED; i++)
        s->installed[i] = false;
    if (pipe2(s->pipe, O_CLOEXEC | O_NONBLOCK) < 0)
        return stk_error_errno(err, errno, "init: exec: pipe");
    exec_sigpipe = s->pipe[1];
    struct sigaction sa = {.sa_handler = exec_on_signal, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < N_FORWARDED; i++) {
        if (forwarded_signals[i] == SIGWINCH && !winch)
            continue;
        s->installed[i] = sigaction(forwarded_signals[i], &sa, &s->old[i]) == 0;
    }
    return 0;
}

static void exec_signals_restore(struct exec_signals *s)
{
    for (int i = 0; i < N_FORWARDED; i++)
        if (s->installed[i])
            (void)sigaction(forwarded_signals[i], &s->old[i], NULL);
    exec_sigpipe = -1;
    for (int i = 0; i < 2; i++)
        if (s->pipe[i] >= 0)
            close(s->pipe[i]);
}

/* Everything one exec juggles: frames to send (bounded: stdin is read only
 * when the previous frame went out), output not yet written (the socket is
 * read only when it is written), and the end. */
struct exec_run {
    struct stk_init_conn *c;
    int in_fd, out_fd, err_fd;
    bool tty;
    bool in_open;
    bool send_dead; /* init stopped reading (it closed): keep receiving */
    uint8_t sendq[STK_INITP_MAX_FRAME + 256];
    size_t slen, soff;
    const uint8_t *pending; /* output payload not yet written */
    size_t pending_len;
    int pending_fd;
    bool done;
    int exit_code;
    /* p->ctl_fd: RESIZE and KILL frames to pass on, one at a time */
    int ctl_fd;
    uint8_t ctl[STK_INITP_HDR + 4];
    size_t ctl_len;
};

static void queue_frame(struct exec_run *x, uint8_t type, const void *payload, size_t len)
{
    if (x->send_dead || sizeof(x->sendq) - x->slen < STK_INITP_HDR + len)
        return;
    if (x->soff == x->slen)
        x->soff = x->slen = 0;
    stk_initp_hdr_encode(x->sendq + x->slen, type, 0, (uint32_t)len);
    if (len)
        memcpy(x->sendq + x->slen + STK_INITP_HDR, payload, len);
    x->slen += STK_INITP_HDR + len;
}

static void read_stdin(struct exec_run *x)
{
    if (x->slen > x->soff)
        return; /* a signal's frame was queued meanwhile: it goes first */
    uint8_t *dst = x->sendq + STK_INITP_HDR;
    ssize_t n = read(x->in_fd, dst, STDIN_CHUNK);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n > 0) {
        stk_initp_hdr_encode(x->sendq, STK_INITP_STDIN, 0, (uint32_t)n);
        x->soff = 0;
        x->slen = STK_INITP_HDR + (size_t)n;
        return;
    }
    /* EOF, or an error such as EIO on a terminal: the process sees EOF. */
    x->in_open = false;
    queue_frame(x, STK_INITP_STDIN_EOF, NULL, 0);
}

static void flush_sendq(struct exec_run *x)
{
    ssize_t w = send(x->c->fd, x->sendq + x->soff, x->slen - x->soff, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (w < 0) {
        /* init closed its side: what it said last (EXIT or ERROR) is still
         * in our receive buffer. */
        x->send_dead = true;
        x->in_open = false;
        x->soff = x->slen = 0;
        return;
    }
    x->soff += (size_t)w;
}

static uint16_t winsize_clamp(unsigned v)
{
    return (uint16_t)(v > STK_INITP_WINSIZE_MAX ? STK_INITP_WINSIZE_MAX : v);
}

/* One RESIZE or KILL frame from the control stream, checked as init will
 * check it; anything else (or its end) ends the stream. */
static void read_ctl(struct exec_run *x)
{
    ssize_t n = read(x->ctl_fd, x->ctl + x->ctl_len, sizeof(x->ctl) - x->ctl_len);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n <= 0) {
        x->ctl_fd = -1;
        return;
    }
    x->ctl_len += (size_t)n;
    if (x->ctl_len < sizeof(x->ctl))
        return;
    x->ctl_len = 0;
    struct stk_initp_hdr h;
    const uint8_t *p = x->ctl + STK_INITP_HDR;
    uint16_t rows, cols;
    uint32_t sig;
    if (stk_initp_hdr_decode(x->ctl, &h) < 0 || h.len != 4 ||
        (h.type == STK_INITP_RESIZE ? stk_initp_resize_decode(p, 4, &rows, &cols)
         : h.type == STK_INITP_KILL ? stk_initp_kill_decode(p, 4, &sig)
                                    : -EBADMSG) < 0) {
        x->ctl_fd = -1;
        return;
    }
    queue_frame(x, h.type, p, 4);
}

static void forward_signals(struct exec_run *x, int sigpipe)
{
    uint8_t sigs[16];
    ssize_t n = read(sigpipe, sigs, sizeof(sigs));
    for (ssize_t i = 0; i < n; i++) {
        if (sigs[i] == SIGWINCH) {
            struct winsize ws;
            if (ioctl(x->in_fd, TIOCGWINSZ, &ws) == 0 && ws.ws_row && ws.ws_col) {
                uint8_t p[STK_INITP_RESIZE_LEN];
                stk_initp_resize_encode(p, winsize_clamp(ws.ws_row), winsize_clamp(ws.ws_col));
                queue_frame(x, STK_INITP_RESIZE, p, sizeof(p));
            }
            continue;
        }
        uint8_t p[4];
        stk_initp_u32_encode(p, sigs[i]);
        queue_frame(x, STK_INITP_KILL, p, sizeof(p));
    }
}

static int write_pending(struct exec_run *x, struct stk_error **err)
{
    size_t n = x->pending_len < OUT_CHUNK ? x->pending_len : OUT_CHUNK;
    ssize_t w = write(x->pending_fd, x->pending, n);
    if (w < 0 && (errno == EINTR || errno == EAGAIN))
        return 0;
    if (w < 0)
        return stk_error_errno(err, errno, "init: exec: write output");
    x->pending += w;
    x->pending_len -= (size_t)w;
    return 0;
}

/* Takes frames off the receive buffer while output can be held. */
static int handle_frames(struct exec_run *x, struct stk_error **err)
{
    while (!x->done && x->pending_len == 0) {
        struct stk_initp_hdr h;
        int r = frame_ready(x->c, &h, err);
        if (r <= 0)
            return r;
        const uint8_t *p = x->c->buf + STK_INITP_HDR;
        switch (h.type) {
        case STK_INITP_OUTPUT:
            x->pending = p;
            x->pending_len = h.len;
            x->pending_fd = h.stream == 2 && !x->tty ? x->err_fd : x->out_fd;
            break;
        case STK_INITP_EXIT:
            r = decode_exit(p, h.len, &x->exit_code, NULL, err);
            if (r < 0)
                return r;
            x->done = true;
            break;
        case STK_INITP_ERROR:
            return error_from_frame(p, h.len, NULL, err);
        default:
            return unexpected(&h, "exec", err);
        }
    }
    return 0;
}

enum {
    PFD_SOCK,
    PFD_IN,
    PFD_OUT,
    PFD_SIG,
    PFD_CTL,
    PFD_N,
};

static int exec_loop(struct exec_run *x, int sigpipe, struct stk_error **err)
{
    while (!x->done) {
        int r = handle_frames(x, err);
        if (r < 0 || x->done)
            return r;
        bool sending = x->slen > x->soff;
        /* Receive only when every complete frame was handled: EOF is then
         * an error, and not a race with frames still in the buffer. */
        bool receiving = x->pending_len == 0;
        /* room for a control frame beside a full STDIN frame */
        bool ctl_room = sizeof(x->sendq) - x->slen >= sizeof(x->ctl);
        struct pollfd pfd[PFD_N] = {
            [PFD_SOCK] = {.fd = x->c->fd,
                          .events =
                              (short)((x->pending_len ? 0 : POLLIN) | (sending ? POLLOUT : 0))},
            [PFD_IN] = {.fd = x->in_open && !sending ? x->in_fd : -1, .events = POLLIN},
            [PFD_OUT] = {.fd = x->pending_len ? x->pending_fd : -1, .events = POLLOUT},
            [PFD_SIG] = {.fd = sigpipe, .events = POLLIN},
            [PFD_CTL] = {.fd = ctl_room && !x->send_dead ? x->ctl_fd : -1, .events = POLLIN},
        };
        if (poll(pfd, PFD_N, -1) < 0) {
            if (errno == EINTR)
                continue;
            return stk_error_errno(err, errno, "init: exec: poll");
        }
        if (pfd[PFD_SIG].revents)
            forward_signals(x, sigpipe);
        if (pfd[PFD_CTL].revents)
            read_ctl(x);
        if (pfd[PFD_OUT].revents && (r = write_pending(x, err)) < 0)
            return r;
        if (pfd[PFD_IN].revents)
            read_stdin(x);
        if (pfd[PFD_SOCK].revents & POLLOUT)
            flush_sendq(x);
        if (pfd[PFD_SOCK].revents & (POLLIN | POLLHUP | POLLERR) && receiving &&
            (r = fill(x->c, false, err)) < 0)
            return stk_error_wrap(err, "exec");
    }
    return 0;
}

struct raw_mode {
    int fd;
    struct termios saved;
};

static void raw_mode_restore(struct raw_mode *m)
{
    if (m->fd >= 0)
        (void)tcsetattr(m->fd, TCSADRAIN, &m->saved);
}

static void raw_mode_enter(struct raw_mode *m, int fd)
{
    m->fd = -1;
    if (tcgetattr(fd, &m->saved) < 0)
        return;
    struct termios raw = m->saved;
    cfmakeraw(&raw);
    if (tcsetattr(fd, TCSADRAIN, &raw) == 0)
        m->fd = fd;
}

/* The EXEC request and its answer; on a spawn failure, the shell's way. */
static int exec_begin(struct stk_init_conn *c, const struct stk_init_proc *p, int in_fd, int err_fd,
                      bool *ret_spawned, int *ret_exit_code, struct stk_error **err)
{
    struct stk_init_proc q = *p;
    if (q.tty && (q.rows == 0 || q.cols == 0) && in_fd >= 0 && isatty(in_fd)) {
        struct winsize ws;
        if (ioctl(in_fd, TIOCGWINSZ, &ws) == 0) {
            q.rows = winsize_clamp(ws.ws_row);
            q.cols = winsize_clamp(ws.ws_col);
        }
    }
    _cleanup_free_ uint8_t *buf = stk_xmalloc(STK_INITP_MAX_PAYLOAD);
    size_t n;
    int r = encode_proc(&q, buf, STK_INITP_MAX_PAYLOAD, &n, err);
    if (r < 0)
        return r;
    uint8_t kind = STK_INITP_ERR_REQUEST;
    _cleanup_error_ struct stk_error *e = NULL;
    r = request(c, STK_INITP_EXEC, buf, n, "exec", NULL, NULL, &kind, &e);
    if (r < 0 && kind == STK_INITP_ERR_SPAWN) {
        dprintf(err_fd, "%s\n", e->msg);
        *ret_exit_code = e->code == ENOENT ? 127 : 126;
        *ret_spawned = false;
        return 0;
    }
    if (r < 0) {
        *err = TAKE_PTR(e);
        return r;
    }
    *ret_spawned = true;
    return 0;
}

int stk_init_exec(struct stk_init_conn *c, const struct stk_init_proc *p, int in_fd, int out_fd,
                  int err_fd, int *ret_exit_code, struct stk_error **err)
{
    bool spawned = false;
    int code = 0;
    int r = exec_begin(c, p, in_fd, err_fd, &spawned, &code, err);
    if (r < 0)
        return r;
    if (!spawned) {
        *ret_exit_code = code;
        return 0;
    }
    _cleanup_free_ struct exec_run *x = stk_xcalloc(1, sizeof(*x));
    x->c = c;
    x->in_fd = in_fd;
    x->out_fd = out_fd;
    x->err_fd = err_fd;
    x->tty = p->tty;
    x->in_open = in_fd >= 0;
    x->ctl_fd = p->ctl_fd > 0 ? p->ctl_fd : -1;
    if (!x->in_open)
        queue_frame(x, STK_INITP_STDIN_EOF, NULL, 0);
    bool term = p->tty && in_fd >= 0 && isatty(in_fd);
    struct raw_mode raw = {.fd = -1};
    if (term)
        raw_mode_enter(&raw, in_fd);
    struct exec_signals sigs;
    r = exec_signals_install(&sigs, term, err);
    if (r == 0)
        r = exec_loop(x, sigs.pipe[0], err);
    exec_signals_restore(&sigs);
    raw_mode_restore(&raw);
    if (r < 0)
        return r;
    *ret_exit_code = x->exit_code;
    return 0;
}

/* ---- files ------------------------------------------------------------------------ */

static int file_request(struct stk_init_conn *c, uint8_t type, const struct stk_initp_file *f,
                        const char *what, const uint8_t **ret_payload, size_t *ret_len,
                        struct stk_error **err)
{
    static uint8_t buf[STK_INITP_FILE_WRITE_FIXED + STK_INITP_PATH_MAX];
    const char *why = "invalid request";
    ssize_t n = stk_initp_file_encode(type, buf, sizeof(buf), f, &why);
    if (n < 0)
        return stk_error_make(err, (int)-n, "%s: %s", f->path, why);
    return request(c, type, buf, (size_t)n, what, ret_payload, ret_len, NULL, err);
}

static int file_path(struct stk_initp_file *f, const char *path, struct stk_error **err)
{
    if (strlen(path) > STK_INITP_PATH_MAX)
        return stk_error_make(err, ENAMETOOLONG, "%.64s...: the path is longer than 4096 bytes",
                              path);
    snprintf(f->path, sizeof(f->path), "%s", path);
    return 0;
}

int stk_init_file_read(struct stk_init_conn *c, const char *path, stk_init_data_fn cb, void *ud,
                       uint64_t *ret_size, unsigned *ret_mode, struct stk_error **err)
{
    static struct stk_initp_file f;
    int r = file_path(&f, path, err);
    if (r < 0)
        return r;
    const uint8_t *p;
    size_t n;
    if ((r = file_request(c, STK_INITP_FILE_READ, &f, "read", &p, &n, err)) < 0)
        return r;
    uint64_t size, got = 0;
    uint32_t mode;
    if (stk_initp_file_info_decode(p, n, &size, &mode) < 0)
        return stk_error_make(err, EPROTO, "init: read: malformed reply");
    for (;;) {
        struct stk_initp_hdr h;
        if ((r = recv_frame(c, &h, &p, err)) < 0)
            return stk_error_wrap(err, "read %s", path);
        if (h.type == STK_INITP_ERROR)
            return error_from_frame(p, h.len, NULL, err);
        if (h.type == STK_INITP_DATA_END)
            break;
        if (h.type != STK_INITP_DATA)
            return unexpected(&h, "read", err);
        if (h.len > size - got)
            return stk_error_make(err, EPROTO, "init: read: more data than announced");
        got += h.len;
        if (h.len && (r = cb(ud, p, h.len)) < 0)
            return r;
    }
    if (got != size)
        return stk_error_make(err, EPROTO, "init: read: %llu of %llu bytes arrived",
                              (unsigned long long)got, (unsigned long long)size);
    if (ret_size)
        *ret_size = size;
    if (ret_mode)
        *ret_mode = mode;
    return 0;
}

/* A send failed: init may have said why before it closed. */
static int file_send_failed(struct stk_init_conn *c, struct stk_error **err)
{
    struct stk_error *mine = NULL;
    struct stk_initp_hdr h;
    const uint8_t *p;
    if (recv_frame(c, &h, &p, &mine) == 0 && h.type == STK_INITP_ERROR) {
        stk_error_free(*err);
        *err = NULL;
        return error_from_frame(p, h.len, NULL, err);
    }
    stk_error_free(mine);
    return stk_error_wrap(err, "write");
}

int stk_init_file_write(struct stk_init_conn *c, const char *path, unsigned mode, uint64_t size,
                        int in_fd, struct stk_error **err)
{
    static struct stk_initp_file f;
    int r = file_path(&f, path, err);
    if (r < 0)
        return r;
    f.mode = mode;
    f.size = size;
    if ((r = file_request(c, STK_INITP_FILE_WRITE, &f, "write", NULL, NULL, err)) < 0)
        return r;
    _cleanup_free_ uint8_t *buf = stk_xmalloc(STK_INITP_HDR + FILE_CHUNK);
    uint64_t sent = 0;
    for (;;) {
        size_t want = size - sent < FILE_CHUNK ? (size_t)(size - sent) : FILE_CHUNK;
        /* one byte more than announced would be an error: ask for it */
        ssize_t n = read(in_fd, buf + STK_INITP_HDR, want ? want : 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return stk_error_errno(err, errno, "write %s: reading the source", path);
        if (n == 0 && sent < size)
            return stk_error_make(err, EIO, "write %s: the source ended after %llu of %llu bytes",
                                  path, (unsigned long long)sent, (unsigned long long)size);
        if (n > 0 && sent == size)
            return stk_error_make(err, EIO, "write %s: the source is longer than %llu bytes", path,
                                  (unsigned long long)size);
        if (n == 0)
            break;
        stk_initp_hdr_encode(buf, STK_INITP_DATA, 0, (uint32_t)n);
        if (send_all(c, buf, STK_INITP_HDR + (size_t)n, err) < 0)
            return file_send_failed(c, err);
        sent += (uint64_t)n;
    }
    if (send_frame(c, STK_INITP_DATA_END, NULL, 0, err) < 0)
        return file_send_failed(c, err);
    struct stk_initp_hdr h;
    const uint8_t *p;
    if ((r = recv_frame(c, &h, &p, err)) < 0)
        return stk_error_wrap(err, "write %s", path);
    if (h.type == STK_INITP_ERROR)
        return error_from_frame(p, h.len, NULL, err);
    if (h.type != STK_INITP_OK)
        return unexpected(&h, "write", err);
    return 0;
}
