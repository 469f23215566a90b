/* SPDX-License-Identifier: Apache-2.0 */
/*
 * stockade-init — PID 1 of a long-lived local sandbox.
 *
 * It reaps orphans, supervises one main workload (started on request, not
 * at boot, so that warm sandboxes can wait idle), runs exec'd processes and
 * serves the host over the listening socket it inherits as fd 3. One thread,
 * one poll() loop, every buffer bounded: see docs/init-protocol.md.
 *
 * Libc only and linked statically: it runs in any rootfs.
 */
#include "init/proto.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/close_range.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define LISTEN_FD             3
#define MAX_CONNS             64
#define MAX_PROCS             (2 * MAX_CONNS)
#define READ_CHUNK            16384
#define FILE_CHUNK            65536 /* a file is read in whole frames: fewer turns of the loop */
#define CONN_DATA_MAX         (256 * 1024)           /* queued output per connection */
#define CONN_QUEUE_CAP        (CONN_DATA_MAX + 4096) /* room for control frames */
#define WORKLOAD_BUF_MAX      (1024 * 1024)          /* workload output kept without attacher */
#define SHUTDOWN_GRACE_MAX_MS 60000
#define SIGTERM_GRACE_MS      10000
#define PTY_DRAIN_MS          1000
#define ERRMSG_MAX            512

extern char **environ;

/* ---- bounded byte queue -------------------------------------------------- */

struct queue {
    uint8_t *data;
    size_t start, len, cap;
};

static void queue_init(struct queue *q, size_t cap)
{
    q->data = malloc(cap);
    if (!q->data) {
        fputs("stockade-init: out of memory\n", stderr);
        abort();
    }
    q->start = q->len = 0;
    q->cap = cap;
}

static void queue_free(struct queue *q)
{
    free(q->data);
    q->data = NULL;
    q->start = q->len = q->cap = 0;
}

/* Returns room for n more bytes at the tail, or NULL if the queue cannot
 * hold them. Compacts lazily so that steady streaming costs no memmove. */
static uint8_t *queue_reserve(struct queue *q, size_t n)
{
    if (q->cap - q->len < n)
        return NULL;
    if (q->cap - q->start - q->len < n) {
        memmove(q->data, q->data + q->start, q->len);
        q->start = 0;
    }
    return q->data + q->start + q->len;
}

static void queue_consume(struct queue *q, size_t n)
{
    q->start += n;
    q->len -= n;
    if (q->len == 0)
        q->start = 0;
}

static bool queue_push_frame(struct queue *q, uint8_t type, uint8_t stream, const void *payload,
                             size_t len)
{
    uint8_t *p = queue_reserve(q, STK_INITP_HDR + len);
    if (!p)
        return false;
    stk_initp_hdr_encode(p, type, stream, (uint32_t)len);
    if (len)
        memcpy(p + STK_INITP_HDR, payload, len);
    q->len += STK_INITP_HDR + len;
    return true;
}

/* ---- state ----------------------------------------------------------------- */

enum conn_role {
    ROLE_FREE,
    ROLE_CMD,        /* waiting for requests */
    ROLE_ATTACH,     /* receives the workload's output */
    ROLE_EXEC,       /* bound to one exec'd process */
    ROLE_SHUTDOWN,   /* waits for the shutdown to finish */
    ROLE_FILE_READ,  /* sends a file's content: DATA..., DATA_END */
    ROLE_FILE_WRITE, /* receives a file's content into a temporary file */
};

struct proc;

struct conn {
    enum conn_role role;
    int fd;
    unsigned gen; /* tells a reused slot from the one a poll entry saw */
    uint8_t *in;  /* one frame at most: STK_INITP_MAX_FRAME bytes */
    size_t in_len;
    size_t stdin_off; /* bytes of the STDIN frame at in[0] already written */
    bool stdin_blocked;
    bool close_after_flush;
    struct queue out;
    struct proc *proc;
    /* FILE_READ, FILE_WRITE */
    int file_fd, dir_fd; /* -1 when closed */
    uint64_t file_left;  /* bytes still to send or to receive */
    uint32_t file_mode;
    char tmp_name[64]; /* FILE_WRITE: the temporary file in dir_fd, "" once gone */
    char base[256];    /* FILE_WRITE: the name it becomes */
};

struct proc {
    pid_t pid; /* 0: slot free */
    unsigned gen;
    bool reaped;
    int status;
    bool tty;
    int in_fd;     /* stdin pipe or pty master dup; -1 when closed */
    int out_fd[2]; /* stdout (or pty master), stderr; -1 when closed */
    int64_t drain_deadline;
    struct conn *conn; /* exec owner; NULL for the workload or once detached */
};

enum workload_state {
    WL_IDLE,
    WL_RUNNING,
    WL_EXITED,
};

static struct {
    int sigfd;
    bool pid1;
    struct conn conns[MAX_CONNS];
    struct proc procs[MAX_PROCS];
    /* the workload */
    enum workload_state wl_state;
    struct proc wl;
    struct queue wl_buf;      /* OUTPUT frames waiting for an attacher */
    struct conn *attacher;    /* at most one */
    size_t attach_frame_left; /* bytes of a frame partly sent to the attacher */
    /* shutdown */
    bool shutting_down;
    int64_t shutdown_deadline;
} S;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

__attribute__((format(printf, 1, 2))) static void log_msg(const char *fmt, ...)
{
    char line[ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    dprintf(STDERR_FILENO, "stockade-init: %s\n", line);
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* ---- replies ----------------------------------------------------------------- */

static void send_error(struct conn *c, int code, uint8_t kind, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Errors end the connection: after a refused request or a malformed frame
 * the stream may be out of step, and a fresh connection is cheap. */
static void send_error(struct conn *c, int code, uint8_t kind, const char *fmt, ...)
{
    char msg[ERRMSG_MAX];
    uint8_t payload[ERRMSG_MAX + STK_INITP_ERROR_MIN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    size_t n = stk_initp_error_encode(payload, sizeof(payload), (uint32_t)code, kind, msg);
    (void)queue_push_frame(&c->out, STK_INITP_ERROR, 0, payload, n);
    c->close_after_flush = true;
}

static void send_ok(struct conn *c, const void *payload, size_t len)
{
    (void)queue_push_frame(&c->out, STK_INITP_OK, 0, payload, len);
}

static void encode_status(int status, int32_t *code, int32_t *sig)
{
    *code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    *sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

static void send_exit(struct conn *c, int status)
{
    int32_t code, sig;
    uint8_t payload[STK_INITP_EXIT_LEN];
    encode_status(status, &code, &sig);
    stk_initp_exit_encode(payload, code, sig);
    (void)queue_push_frame(&c->out, STK_INITP_EXIT, 0, payload, sizeof(payload));
}

/* ---- spawning -------------------------------------------------------------- */

/* init's own environment (the sandbox's, from config.json) with the
 * request's K=V entries laid over it. */
static char **build_env(const struct stk_initp_proc *req)
{
    size_t n = 0;
    while (environ && environ[n])
        n++;
    char **env = calloc(n + req->n_env + 1, sizeof(*env));
    if (!env)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *eq = strchr(environ[i], '=');
        size_t klen = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        bool overridden = false;
        for (size_t j = 0; j < req->n_env && !overridden; j++)
            overridden = strncmp(req->env[j], environ[i], klen) == 0 && req->env[j][klen] == '=';
        if (!overridden)
            env[k++] = environ[i];
    }
    for (size_t j = 0; j < req->n_env; j++)
        env[k++] = (char *)(uintptr_t)req->env[j];
    env[k] = NULL;
    return env;
}

/* What the child reports through the error pipe when it cannot exec. */
struct spawn_failure {
    int err;
    int stage; /* 0 exec, 1 chdir, 2 tty, 3 setup */
};

struct spawn_fds {
    int child_in, child_out, child_err; /* the child's 0, 1, 2 */
    int pty_slave;                      /* >= 0: make it the controlling tty */
};

static void child_fail(int errpipe, int stage)
{
    struct spawn_failure f = {errno, stage};
    ssize_t w = write(errpipe, &f, sizeof(f));
    (void)w;
    _exit(127);
}

/* Runs in the forked child: nothing here may allocate or return. */
__attribute__((noreturn)) static void child_exec(const struct stk_initp_proc *req, char **env,
                                                 const struct spawn_fds *fds, int errpipe)
{
    sigset_t none;
    sigemptyset(&none);
    signal(SIGPIPE, SIG_DFL);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* Own session and process group: signals and the final SIGKILL reach the
     * whole job, and a tty can become the controlling terminal. */
    if (setsid() < 0)
        child_fail(errpipe, 3);
    if (fds->pty_slave >= 0 && ioctl(fds->pty_slave, TIOCSCTTY, 0) < 0)
        child_fail(errpipe, 2);
    if (dup2(fds->child_in, 0) < 0 || dup2(fds->child_out, 1) < 0 || dup2(fds->child_err, 2) < 0)
        child_fail(errpipe, 3);
    if (req->cwd && chdir(req->cwd) < 0)
        child_fail(errpipe, 1);
    /* Everything init holds is O_CLOEXEC already (fd 3 included); this is the
     * belt to those braces, so no descriptor of init survives execve. */
    if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
        long max = sysconf(_SC_OPEN_MAX);
        for (int fd = 3; fd < (max > 0 && max < 65536 ? max : 65536); fd++)
            (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    environ = env;
    execvp(req->argv[0], (char *const *)(uintptr_t)req->argv);
    child_fail(errpipe, 0);
    _exit(127);
}

static const char *const stage_names[] = {"exec", "chdir", "tty", "setup"};

/* Sets up the child's stdio for a pipe-based process: stdin from a pipe (or
 * /dev/null for the workload), stdout and stderr into pipes. */
static int make_pipes(bool with_stdin, struct proc *p, struct spawn_fds *fds)
{
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
    if (with_stdin ? pipe2(in, O_CLOEXEC) < 0
                   : (in[0] = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)
        return -errno;
    if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
        int e = -errno;
        close_fd(&in[0]);
        close_fd(&in[1]);
        close_fd(&out[0]);
        close_fd(&out[1]);
        return e;
    }
    fds->child_in = in[0];
    fds->child_out = out[1];
    fds->child_err = err[1];
    fds->pty_slave = -1;
    p->in_fd = in[1];
    p->out_fd[0] = out[0];
    p->out_fd[1] = err[0];
    return 0;
}

/* A pty from the sandbox's own /dev/pts (ptmxmode=0666): the slave becomes
 * the child's controlling terminal, stdout and stderr are merged. The slave
 * stays open in init until the fork so the master never sees a hangup
 * before the child holds it. */
static int make_pty(const struct stk_initp_proc *req, struct proc *p, struct spawn_fds *fds)
{
    int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0)
        return -errno;
    char name[64];
    if (grantpt(master) < 0 || unlockpt(master) < 0 || ptsname_r(master, name, sizeof(name))) {
        int e = -errno;
        close(master);
        return e;
    }
    int slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (slave < 0) {
        int e = -errno;
        close(master);
        return e;
    }
    if (req->rows && req->cols) {
        struct winsize ws = {.ws_row = req->rows, .ws_col = req->cols};
        (void)ioctl(master, TIOCSWINSZ, &ws);
    }
    int in = fcntl(master, F_DUPFD_CLOEXEC, 0);
    if (in < 0) {
        int e = -errno;
        close(master);
        close(slave);
        return e;
    }
    fds->child_in = fds->child_out = fds->child_err = fds->pty_slave = slave;
    p->in_fd = in;
    p->out_fd[0] = master;
    p->out_fd[1] = -1;
    p->tty = true;
    return 0;
}

static void close_child_ends(struct spawn_fds *fds)
{
    int seen[3] = {-1, -1, -1};
    int all[3] = {fds->child_in, fds->child_out, fds->child_err};
    for (int i = 0; i < 3; i++) {
        bool dup = false;
        for (int j = 0; j < i; j++)
            dup = dup || seen[j] == all[i];
        if (!dup && all[i] >= 0)
            close(all[i]);
        seen[i] = all[i];
    }
}

static void proc_close_fds(struct proc *p)
{
    close_fd(&p->in_fd);
    close_fd(&p->out_fd[0]);
    close_fd(&p->out_fd[1]);
}

/* Forks and execs req. On failure fills msg and returns the kind of error
 * (request or spawn) as a negative errno with *ret_kind. */
static int spawn(const struct stk_initp_proc *req, bool with_stdin, struct proc *p, char *msg,
                 size_t msgsz, uint8_t *ret_kind)
{
    struct spawn_fds fds = {-1, -1, -1, -1};
    p->in_fd = p->out_fd[0] = p->out_fd[1] = -1;
    p->tty = false;
    *ret_kind = STK_INITP_ERR_REQUEST;
    int r = req->tty ? make_pty(req, p, &fds) : make_pipes(with_stdin, p, &fds);
    if (r < 0) {
        snprintf(msg, msgsz, "init: %s: %s", req->tty ? "pty" : "pipe", strerror(-r));
        return r;
    }
    int errpipe[2];
    char **env = build_env(req);
    if (!env || pipe2(errpipe, O_CLOEXEC) < 0) {
        r = env ? -errno : -ENOMEM;
        free(env);
        close_child_ends(&fds);
        proc_close_fds(p);
        snprintf(msg, msgsz, "init: spawn: %s", strerror(-r));
        return r;
    }
    pid_t pid = fork();
    if (pid == 0)
        child_exec(req, env, &fds, errpipe[1]);
    r = pid < 0 ? -errno : 0;
    free(env);
    close_child_ends(&fds);
    close(errpipe[1]);
    struct spawn_failure f;
    ssize_t n = 0;
    if (pid > 0)
        do
            n = read(errpipe[0], &f, sizeof(f));
        while (n < 0 && errno == EINTR);
    close(errpipe[0]);
    if (pid < 0 || n > 0) {
        proc_close_fds(p);
        if (pid < 0) {
            snprintf(msg, msgsz, "init: fork: %s", strerror(-r));
            return r;
        }
        (void)waitpid(pid, NULL, 0);
        if (f.err <= 0)
            f.err = EIO; /* a failure must never read as success */
        const char *what = f.stage == 1 ? req->cwd : req->argv[0];
        snprintf(msg, msgsz, "init: %s: %s: %s", stage_names[f.stage & 3], what, strerror(f.err));
        *ret_kind = STK_INITP_ERR_SPAWN;
        return -f.err;
    }
    for (int i = 0; i < 2; i++)
        if (p->out_fd[i] >= 0)
            (void)set_nonblock(p->out_fd[i]);
    if (p->in_fd >= 0)
        (void)set_nonblock(p->in_fd);
    p->pid = pid;
    p->gen++;
    p->reaped = false;
    p->status = 0;
    p->drain_deadline = 0;
    return 0;
}

/* ---- requests -------------------------------------------------------------- */

enum frame_result {
    FRAME_DONE,    /* consumed */
    FRAME_BLOCKED, /* keep it; resume when the process's stdin is writable */
};

static enum stk_initp_state wire_state(void)
{
    switch (S.wl_state) {
    case WL_IDLE:
        return STK_INITP_STATE_IDLE;
    case WL_RUNNING:
        return STK_INITP_STATE_RUNNING;
    case WL_EXITED:
        return STK_INITP_STATE_EXITED;
    }
    return STK_INITP_STATE_IDLE;
}

static void handle_hello(struct conn *c)
{
    struct stk_initp_hello h = {
        .version = STK_INITP_VERSION,
        .state = (uint8_t)wire_state(),
        .pid = S.wl.pid,
    };
    if (S.wl_state == WL_EXITED)
        encode_status(S.wl.status, &h.exit_code, &h.signal);
    uint8_t payload[STK_INITP_HELLO_LEN];
    stk_initp_hello_encode(payload, &h);
    send_ok(c, payload, sizeof(payload));
}

static void handle_start(struct conn *c, const uint8_t *p, size_t n)
{
    struct stk_initp_proc req;
    const char *why = NULL;
    if (stk_initp_proc_decode(p, n, &req, &why) < 0)
        return send_error(c, EINVAL, STK_INITP_ERR_REQUEST, "init: start: %s", why);
    if (req.tty)
        return send_error(c, EINVAL, STK_INITP_ERR_REQUEST,
                          "init: start: the workload has no tty (use exec)");
    if (S.wl_state != WL_IDLE)
        return send_error(c, EBUSY, STK_INITP_ERR_REQUEST,
                          "init: start: the workload was already started");
    char msg[ERRMSG_MAX];
    uint8_t kind;
    int r = spawn(&req, false, &S.wl, msg, sizeof(msg), &kind);
    if (r < 0)
        return send_error(c, -r, kind, "%s", msg);
    /* The workload's stdin is /dev/null; its fd was closed with the child's ends. */
    S.wl.conn = NULL;
    S.wl_state = WL_RUNNING;
    uint8_t pid[4];
    stk_initp_u32_encode(pid, (uint32_t)S.wl.pid);
    send_ok(c, pid, sizeof(pid));
}

static void handle_attach(struct conn *c)
{
    if (S.attacher)
        return send_error(c, EBUSY, STK_INITP_ERR_REQUEST,
                          "init: attach: another client is attached");
    c->role = ROLE_ATTACH;
    S.attacher = c;
    send_ok(c, NULL, 0);
}

static struct proc *proc_slot(void)
{
    for (size_t i = 0; i < MAX_PROCS; i++)
        if (S.procs[i].pid == 0)
            return &S.procs[i];
    return NULL;
}

static void handle_exec(struct conn *c, const uint8_t *p, size_t n)
{
    struct stk_initp_proc req;
    const char *why = NULL;
    if (stk_initp_proc_decode(p, n, &req, &why) < 0)
        return send_error(c, EINVAL, STK_INITP_ERR_REQUEST, "init: exec: %s", why);
    struct proc *slot = proc_slot();
    if (!slot)
        return send_error(c, EAGAIN, STK_INITP_ERR_REQUEST, "init: exec: too many processes");
    char msg[ERRMSG_MAX];
    uint8_t kind;
    int r = spawn(&req, true, slot, msg, sizeof(msg), &kind);
    if (r < 0)
        return send_error(c, -r, kind, "%s", msg);
    slot->conn = c;
    c->proc = slot;
    c->role = ROLE_EXEC;
    uint8_t pid[4];
    stk_initp_u32_encode(pid, (uint32_t)slot->pid);
    send_ok(c, pid, sizeof(pid));
}

static bool signal_ok(uint32_t sig)
{
    return sig >= 1 && sig <= 64;
}

static void handle_signal(struct conn *c, const uint8_t *p, size_t n)
{
    uint32_t sig;
    if (stk_initp_u32_decode(p, n, &sig) < 0 || !signal_ok(sig))
        return send_error(c, EINVAL, STK_INITP_ERR_REQUEST, "init: signal: invalid signal");
    if (S.wl_state != WL_RUNNING)
        return send_error(c, ESRCH, STK_INITP_ERR_REQUEST, "init: signal: no running workload");
    if (kill(S.wl.pid, (int)sig) < 0)
        return send_error(c, errno, STK_INITP_ERR_REQUEST, "init: signal: %s", strerror(errno));
    send_ok(c, NULL, 0);
}

static void signal_all(int sig)
{
    if (S.wl_state == WL_RUNNING) {
        (void)kill(-S.wl.pid, sig);
        (void)kill(S.wl.pid, sig);
    }
    for (size_t i = 0; i < MAX_PROCS; i++)
        if (S.procs[i].pid > 0 && !S.procs[i].reaped) {
            (void)kill(-S.procs[i].pid, sig);
            (void)kill(S.procs[i].pid, sig);
        }
}

static void begin_shutdown(int grace_ms)
{
    if (grace_ms > SHUTDOWN_GRACE_MAX_MS)
        grace_ms = SHUTDOWN_GRACE_MAX_MS;
    if (grace_ms < 0)
        grace_ms = 0;
    int64_t deadline = now_ms() + grace_ms;
    if (S.shutting_down && deadline >= S.shutdown_deadline)
        return;
    S.shutting_down = true;
    S.shutdown_deadline = deadline;
    signal_all(SIGTERM);
}

static void handle_shutdown(struct conn *c, const uint8_t *p, size_t n)
{
    uint32_t grace;
    if (stk_initp_u32_decode(p, n, &grace) < 0)
        return send_error(c, EINVAL, STK_INITP_ERR_REQUEST, "init: shutdown: bad payload");
    c->role = ROLE_SHUTDOWN;
    begin_shutdown(grace > SHUTDOWN_GRACE_MAX_MS ? SHUTDOWN_GRACE_MAX_MS : (int)grace);
}

/* ---- files ---------------------------------------------------------------------- */

/* Opens path (absolute, no `..`: the decoder checked) inside this
 * sandbox's mount namespace without following any symbolic link: a
 * workload that swaps a component for a link between the host's request
 * and this open gets ELOOP, not the link's target. openat2 where the
 * kernel has it; otherwise a walk, one component at a time, O_NOFOLLOW. */
static int open_beneath(const char *path, int flags, mode_t mode)
{
    int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        return -errno;
    const char *rel = path + strspn(path, "/");
    if (*rel == '\0')
        rel = ".";
    struct open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC),
                           .mode = (flags & O_CREAT) ? mode : 0,
                           .resolve =
                               RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_BENEATH};
    long fd = syscall(SYS_openat2, root, rel, &how, sizeof(how));
    if (fd >= 0 || (errno != ENOSYS && errno != EPERM)) {
        int e = errno;
        close(root);
        return fd >= 0 ? (int)fd : -e;
    }
    /* no openat2 (an older kernel or gVisor, or a filter that refuses it) */
    char comp[256];
    int dir = root;
    for (;;) {
        size_t len = strcspn(rel, "/");
        if (len >= sizeof(comp)) {
            close(dir);
            return -ENAMETOOLONG;
        }
        memcpy(comp, rel, len);
        comp[len] = '\0';
        const char *next = rel + len + strspn(rel + len, "/");
        bool last = *next == '\0';
        int nfd = last ? openat(dir, comp, flags | O_NOFOLLOW | O_CLOEXEC, mode)
                       : openat(dir, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int e = errno;
        struct stat st;
        /* a link where a directory is wanted: ENOTDIR, which says less than
         * openat2's ELOOP */
        if (nfd < 0 && e == ENOTDIR && fstatat(dir, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISLNK(st.st_mode))
            e = ELOOP;
        close(dir);
        if (nfd < 0)
            return -e;
        if (last)
            return nfd;
        dir = nfd;
        rel = next;
    }
}

/* Why an open failed, in the words of this protocol's rules. */
static const char *open_problem(int e)
{
    return e == ELOOP || e == EXDEV ? "a component is a symbolic link (none is followed here)"
                                    : strerror(e);
}

static void file_close(struct conn *c)
{
    close_fd(&c->file_fd);
    if (c->tmp_name[0] && c->dir_fd >= 0)
        (void)unlinkat(c->dir_fd, c->tmp_name, 0);
    c->tmp_name[0] = '\0';
    close_fd(&c->dir_fd);
}

static void file_fail(struct conn *c, int e, const char *what, const char *path)
{
    file_close(c);
    send_error(c, e, STK_INITP_ERR_REQUEST, "init: %s: %s: %s", what, path, strerror(e));
}

static const char *not_regular(mode_t m)
{
    return S_ISDIR(m) ? "is a directory (only regular files are copied)"
                      : "is not a regular file (a device, socket, FIFO or link is not copied)";
}

static void handle_file_read(struct conn *c, const uint8_t *p, size_t n)
{
    static struct stk_initp_file f;
    const char *why = NULL;
    int r = stk_initp_file_decode(STK_INITP_FILE_READ, p, n, &f, &why);
    if (r < 0)
        return send_error(c, -r, STK_INITP_ERR_REQUEST, "init: read: %s", why);
    /* O_NONBLOCK: opening a FIFO the workload put there must not stall init */
    int fd = open_beneath(f.path, O_RDONLY | O_NONBLOCK | O_NOCTTY, 0);
    if (fd < 0)
        return send_error(c, -fd, STK_INITP_ERR_REQUEST, "init: read: %s: %s", f.path,
                          open_problem(-fd));
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return send_error(c, e, STK_INITP_ERR_REQUEST, "init: read: %s: %s", f.path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        int e = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
        close(fd);
        return send_error(c, e, STK_INITP_ERR_REQUEST, "init: read: %s: %s", f.path,
                          not_regular(st.st_mode));
    }
    if (st.st_size > STK_INITP_FILE_MAX) {
        close(fd);
        return send_error(c, EFBIG, STK_INITP_ERR_REQUEST,
                          "init: read: %s: %lld bytes is larger than the limit of 16 MiB", f.path,
                          (long long)st.st_size);
    }
    uint8_t info[STK_INITP_FILE_INFO_LEN];
    stk_initp_file_info_encode(info, (uint64_t)st.st_size, st.st_mode & 07777);
    send_ok(c, info, sizeof(info));
    c->role = ROLE_FILE_READ;
    c->file_fd = fd;
    c->file_left = (uint64_t)st.st_size;
}

/* Sends what fits of the file being read: a DATA frame whenever the
 * connection's queue has room for one, DATA_END after the size announced. */
static void file_read_progress(struct conn *c)
{
    while (c->file_fd >= 0 && c->out.len + STK_INITP_HDR + FILE_CHUNK <= CONN_DATA_MAX) {
        if (c->file_left == 0) {
            close_fd(&c->file_fd);
            (void)queue_push_frame(&c->out, STK_INITP_DATA_END, 0, NULL, 0);
            c->close_after_flush = true;
            return;
        }
        size_t want = c->file_left < FILE_CHUNK ? (size_t)c->file_left : FILE_CHUNK;
        uint8_t *dst = queue_reserve(&c->out, STK_INITP_HDR + want);
        if (!dst)
            return;
        ssize_t n = read(c->file_fd, dst + STK_INITP_HDR, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;
            file_close(c);
            return send_error(c, e, STK_INITP_ERR_REQUEST, "init: read: %s",
                              n < 0 ? strerror(e) : "the file shrank while it was read");
        }
        stk_initp_hdr_encode(dst, STK_INITP_DATA, 0, (uint32_t)n);
        c->out.len += STK_INITP_HDR + (size_t)n;
        c->file_left -= (uint64_t)n;
    }
}

static void handle_file_write(struct conn *c, const uint8_t *p, size_t n)
{
    static struct stk_initp_file f;
    static unsigned counter;
    const char *why = NULL;
    int r = stk_initp_file_decode(STK_INITP_FILE_WRITE, p, n, &f, &why);
    if (r < 0)
        return send_error(c, -r, STK_INITP_ERR_REQUEST, "init: write: %s", why);
    static char dir[STK_INITP_PATH_MAX + 1];
    const char *slash = strrchr(f.path, '/');
    const char *base = slash + 1;
    if (strlen(base) >= sizeof(c->base) || !strcmp(base, "."))
        return send_error(c, EINVAL, STK_INITP_ERR_REQUEST, "init: write: %s: not a file name",
                          f.path);
    snprintf(c->base, sizeof(c->base), "%s", base);
    size_t dlen = slash == f.path ? 1 : (size_t)(slash - f.path);
    memcpy(dir, f.path, dlen);
    dir[dlen] = '\0';
    int dfd = open_beneath(dir, O_PATH | O_DIRECTORY, 0);
    if (dfd < 0)
        return send_error(c, -dfd, STK_INITP_ERR_REQUEST, "init: write: %s: its directory: %s",
                          f.path, open_problem(-dfd));
    c->dir_fd = dfd;
    struct stat st;
    if (fstatat(dfd, c->base, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(st.st_mode)) {
        file_close(c);
        return send_error(c, S_ISDIR(st.st_mode) ? EISDIR : EEXIST, STK_INITP_ERR_REQUEST,
                          "init: write: %s: exists and %s", f.path, not_regular(st.st_mode));
    }
    /* the content goes to a new file beside it, renamed over it at the end:
     * a transfer cut short changes nothing */
    int fd = -1;
    /* a name the workload took already is passed over (a few times) */
    for (int i = 0; i < 8 && (fd < 0 && (i == 0 || errno == EEXIST)); i++) {
        snprintf(c->tmp_name, sizeof(c->tmp_name), ".stockade-cp.%d.%u", (int)getpid(), ++counter);
        fd = openat(dfd, c->tmp_name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    }
    if (fd < 0) {
        c->tmp_name[0] = '\0';
        return file_fail(c, errno, "write", f.path);
    }
    c->file_fd = fd;
    c->file_left = f.size;
    c->file_mode = f.mode;
    c->role = ROLE_FILE_WRITE;
    send_ok(c, NULL, 0);
}

static void file_write_data(struct conn *c, const uint8_t *p, size_t n)
{
    if (n > c->file_left) {
        file_close(c);
        return send_error(c, EFBIG, STK_INITP_ERR_REQUEST,
                          "init: write: more data than the size announced");
    }
    for (size_t off = 0; off < n;) {
        ssize_t w = write(c->file_fd, p + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = w < 0 ? errno : EIO;
            file_close(c);
            return send_error(c, e, STK_INITP_ERR_REQUEST, "init: write: %s", strerror(e));
        }
        off += (size_t)w;
    }
    c->file_left -= n;
}

static void file_write_end(struct conn *c)
{
    if (c->file_left != 0) {
        file_close(c);
        return send_error(c, EPROTO, STK_INITP_ERR_REQUEST,
                          "init: write: the data ended %llu bytes short of the size announced",
                          (unsigned long long)c->file_left);
    }
    if (fchmod(c->file_fd, c->file_mode) < 0 || close(c->file_fd) < 0) {
        c->file_fd = -1;
        int e = errno;
        file_close(c);
        return send_error(c, e, STK_INITP_ERR_REQUEST, "init: write: %s", strerror(e));
    }
    c->file_fd = -1;
    if (renameat(c->dir_fd, c->tmp_name, c->dir_fd, c->base) < 0) {
        int e = errno;
        file_close(c);
        return send_error(c, e, STK_INITP_ERR_REQUEST, "init: write: %s: %s", c->base, strerror(e));
    }
    c->tmp_name[0] = '\0';
    file_close(c);
    send_ok(c, NULL, 0);
    c->close_after_flush = true;
}

static void handle_file_frame(struct conn *c, const struct stk_initp_hdr *h, const uint8_t *p)
{
    if (c->role == ROLE_FILE_WRITE && c->file_fd >= 0 && h->type == STK_INITP_DATA)
        return file_write_data(c, p, h->len);
    if (c->role == ROLE_FILE_WRITE && c->file_fd >= 0 && h->type == STK_INITP_DATA_END)
        return file_write_end(c);
    file_close(c);
    send_error(c, EPROTO, STK_INITP_ERR_REQUEST, "init: unexpected %s frame during a file transfer",
               stk_initp_type_name(h->type));
}

/* Requests allowed on a fresh (command) connection. */
static void handle_request(struct conn *c, const struct stk_initp_hdr *h, const uint8_t *p)
{
    if (S.shutting_down && h->type != STK_INITP_HELLO && h->type != STK_INITP_SHUTDOWN)
        return send_error(c, ESHUTDOWN, STK_INITP_ERR_REQUEST, "init: shutting down");
    switch (h->type) {
    case STK_INITP_HELLO:
        return handle_hello(c);
    case STK_INITP_START:
        return handle_start(c, p, h->len);
    case STK_INITP_ATTACH:
        return handle_attach(c);
    case STK_INITP_EXEC:
        return handle_exec(c, p, h->len);
    case STK_INITP_SIGNAL:
        return handle_signal(c, p, h->len);
    case STK_INITP_SHUTDOWN:
        return handle_shutdown(c, p, h->len);
    case STK_INITP_FILE_READ:
        return handle_file_read(c, p, h->len);
    case STK_INITP_FILE_WRITE:
        return handle_file_write(c, p, h->len);
    default:
        return send_error(c, EPROTO, STK_INITP_ERR_REQUEST, "init: unexpected %s frame",
                          stk_initp_type_name(h->type));
    }
}

/* STDIN data for an exec'd process. Partial writes keep the frame in the
 * connection's input buffer and stop reading the socket: the client's
 * stdin is throttled to the speed of the process. */
static enum frame_result exec_stdin(struct conn *c, const uint8_t *p, size_t n)
{
    struct proc *pr = c->proc;
    while (pr->in_fd >= 0 && c->stdin_off < n) {
        ssize_t w = write(pr->in_fd, p + c->stdin_off, n - c->stdin_off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN) {
            c->stdin_blocked = true;
            return FRAME_BLOCKED;
        }
        if (w < 0) /* EPIPE: the process closed its stdin; drop the rest */
            close_fd(&pr->in_fd);
        else
            c->stdin_off += (size_t)w;
    }
    c->stdin_off = 0;
    c->stdin_blocked = false;
    return FRAME_DONE;
}

/* On a tty, end of input is the terminal's EOF character (if the line
 * discipline is canonical); on a pipe it is closing the write end. */
static void exec_stdin_eof(struct proc *pr)
{
    if (pr->in_fd < 0)
        return;
    if (pr->tty) {
        struct termios t;
        if (tcgetattr(pr->in_fd, &t) == 0 && (t.c_lflag & ICANON)) {
            ssize_t w = write(pr->in_fd, &t.c_cc[VEOF], 1);
            (void)w;
        }
        return;
    }
    close_fd(&pr->in_fd);
}

/* Signals every process group of session sid (at most 64 groups). */
static void session_signal(pid_t sid, int sig)
{
    DIR *d = opendir("/proc");
    if (!d)
        return;
    pid_t seen[64];
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < sizeof(seen) / sizeof(seen[0])) {
        char path[64], buf[512];
        if (e->d_name[0] < '1' || e->d_name[0] > '9' ||
            snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name) >= (int)sizeof(path))
            continue;
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t len = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (len <= 0)
            continue;
        buf[len] = '\0';
        /* "pid (comm) state ppid pgrp session ...": comm may hold anything */
        char *rp = strrchr(buf, ')');
        int ppid, pgrp, session;
        char state;
        if (!rp || sscanf(rp + 1, " %c %d %d %d", &state, &ppid, &pgrp, &session) != 4 ||
            session != sid || pgrp <= 1)
            continue;
        bool dup = false;
        for (size_t i = 0; i < n && !dup; i++)
            dup = seen[i] == pgrp;
        if (!dup) {
            seen[n++] = pgrp;
            (void)kill(-pgrp, sig);
        }
    }
    closedir(d);
}

static void exec_resize(struct conn *c, const uint8_t *p, size_t n)
{
    uint16_t rows, cols;
    if (stk_initp_resize_decode(p, n, &rows, &cols) < 0)
        return send_error(c, EINVAL, STK_INITP_ERR_REQUEST,
                          "init: resize: rows and columns must be 1..%d", STK_INITP_WINSIZE_MAX);
    if (!c->proc->tty || c->proc->out_fd[0] < 0)
        return;
    int master = c->proc->out_fd[0];
    struct winsize was = {0}, ws = {.ws_row = rows, .ws_col = cols};
    bool changed = ioctl(master, TIOCGWINSZ, &was) < 0 || was.ws_row != rows || was.ws_col != cols;
    if (ioctl(master, TIOCSWINSZ, &ws) < 0 || !changed || c->proc->reaped)
        return;
    /* Linux's tty layer sends SIGWINCH to the pty's foreground process
     * group on a change; gVisor's does not, and its master does not name
     * that group, so init sends it too: to the foreground group when the
     * pty tells it (a second SIGWINCH under Linux: a program asks for the
     * size again, no more), else to every group of the exec's session. */
    pid_t pg = 0;
    if (ioctl(master, TIOCGPGRP, &pg) == 0 && pg > 1)
        (void)kill(-pg, SIGWINCH);
    else
        session_signal(c->proc->pid, SIGWINCH);
}

static void exec_kill(struct conn *c, const uint8_t *p, size_t n)
{
    uint32_t sig;
    if (stk_initp_kill_decode(p, n, &sig) < 0)
        return send_error(c, EINVAL, STK_INITP_ERR_REQUEST,
                          "init: kill: not a signal a client may send");
    /* the exec'd process leads its own process group (setsid): the signal
     * reaches what it started too, as a terminal's Ctrl-C would */
    if (!c->proc->reaped && kill(-c->proc->pid, (int)sig) < 0)
        (void)kill(c->proc->pid, (int)sig);
}

static enum frame_result handle_exec_frame(struct conn *c, const struct stk_initp_hdr *h,
                                           const uint8_t *p)
{
    switch (h->type) {
    case STK_INITP_STDIN:
        return exec_stdin(c, p, h->len);
    case STK_INITP_STDIN_EOF:
        exec_stdin_eof(c->proc);
        return FRAME_DONE;
    case STK_INITP_RESIZE:
        exec_resize(c, p, h->len);
        return FRAME_DONE;
    case STK_INITP_KILL:
        exec_kill(c, p, h->len);
        return FRAME_DONE;
    default:
        send_error(c, EPROTO, STK_INITP_ERR_REQUEST, "init: unexpected %s frame during exec",
                   stk_initp_type_name(h->type));
        return FRAME_DONE;
    }
}

static enum frame_result dispatch(struct conn *c, const struct stk_initp_hdr *h, const uint8_t *p)
{
    switch (c->role) {
    case ROLE_CMD:
        handle_request(c, h, p);
        return FRAME_DONE;
    case ROLE_EXEC:
        if (!c->proc) { /* process gone, EXIT queued: ignore late input */
            return FRAME_DONE;
        }
        return handle_exec_frame(c, h, p);
    case ROLE_FILE_READ:
    case ROLE_FILE_WRITE:
        handle_file_frame(c, h, p);
        return FRAME_DONE;
    case ROLE_ATTACH:
    case ROLE_SHUTDOWN:
    case ROLE_FREE:
        break;
    }
    send_error(c, EPROTO, STK_INITP_ERR_REQUEST, "init: unexpected %s frame",
               stk_initp_type_name(h->type));
    return FRAME_DONE;
}

/* Handles every complete frame in the input buffer, in order. */
static void conn_process_input(struct conn *c)
{
    size_t off = 0;
    while (!c->close_after_flush && c->in_len - off >= STK_INITP_HDR) {
        struct stk_initp_hdr h;
        int r = stk_initp_hdr_decode(c->in + off, &h);
        if (r < 0) {
            send_error(c, -r, STK_INITP_ERR_REQUEST, "init: malformed frame: %s",
                       r == -EMSGSIZE ? "bad length for the frame type" : "unknown type");
            break;
        }
        if (c->in_len - off < STK_INITP_HDR + h.len)
            break;
        if (dispatch(c, &h, c->in + off + STK_INITP_HDR) == FRAME_BLOCKED)
            break;
        off += STK_INITP_HDR + h.len;
    }
    if (off) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
}

/* ---- connections ------------------------------------------------------------ */

/* A detached exec'd process must not outlive its client: the host CLI may be
 * killed mid-exec and nothing may be left running in the sandbox. */
static void proc_detach(struct proc *p)
{
    p->conn = NULL;
    proc_close_fds(p);
    if (p->reaped) {
        p->pid = 0;
        return;
    }
    (void)kill(-p->pid, SIGKILL);
    (void)kill(p->pid, SIGKILL);
}

static void attach_detach(void)
{
    /* Drop the rest of a frame the attacher got half of, so the next
     * attacher starts on a frame boundary. */
    queue_consume(&S.wl_buf, S.attach_frame_left);
    S.attach_frame_left = 0;
    S.attacher = NULL;
}

static void conn_close(struct conn *c)
{
    if (c == S.attacher)
        attach_detach();
    if (c->proc)
        proc_detach(c->proc);
    c->proc = NULL;
    file_close(c);
    close_fd(&c->fd);
    free(c->in);
    c->in = NULL;
    queue_free(&c->out);
    c->role = ROLE_FREE;
}

static void conn_read(struct conn *c)
{
    ssize_t n = read(c->fd, c->in + c->in_len, STK_INITP_MAX_FRAME - c->in_len);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0)
        return conn_close(c);
    c->in_len += (size_t)n;
    conn_process_input(c);
}

/* Consumes n bytes of the workload buffer that went to the attacher, keeping
 * track of where the current frame ends. */
static void attach_consumed(size_t n)
{
    size_t pos = S.wl_buf.start;
    size_t left = n;
    while (left > 0) {
        if (S.attach_frame_left == 0) {
            const uint8_t *h = S.wl_buf.data + pos;
            uint32_t len = (uint32_t)h[2] << 24 | (uint32_t)h[3] << 16 | (uint32_t)h[4] << 8 | h[5];
            S.attach_frame_left = STK_INITP_HDR + len;
        }
        size_t k = left < S.attach_frame_left ? left : S.attach_frame_left;
        S.attach_frame_left -= k;
        left -= k;
        pos += k;
    }
    queue_consume(&S.wl_buf, n);
}

static void conn_write(struct conn *c)
{
    bool from_wl = c->out.len == 0 && c == S.attacher;
    struct queue *q = from_wl ? &S.wl_buf : &c->out;
    if (q->len == 0)
        return;
    ssize_t n = send(c->fd, q->data + q->start, q->len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n < 0)
        return conn_close(c);
    if (from_wl)
        attach_consumed((size_t)n);
    else
        queue_consume(q, (size_t)n);
}

static bool conn_has_output(const struct conn *c)
{
    return c->out.len > 0 || (c == S.attacher && S.wl_buf.len > 0);
}

static bool conn_wants_input(const struct conn *c)
{
    if (c->close_after_flush || c->stdin_blocked || c->in_len >= STK_INITP_MAX_FRAME)
        return false;
    /* A client that sends requests without reading replies stops being read. */
    return !(c->role == ROLE_CMD && c->out.len > CONN_DATA_MAX);
}

static struct conn *conn_slot(void)
{
    for (size_t i = 0; i < MAX_CONNS; i++)
        if (S.conns[i].role == ROLE_FREE)
            return &S.conns[i];
    return NULL;
}

static void accept_conn(void)
{
    int fd = accept4(LISTEN_FD, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0)
        return;
    struct conn *c = conn_slot();
    if (!c) {
        uint8_t frame[STK_INITP_HDR + 64];
        size_t n = stk_initp_error_encode(frame + STK_INITP_HDR, 64, EMFILE, STK_INITP_ERR_REQUEST,
                                          "init: too many connections");
        stk_initp_hdr_encode(frame, STK_INITP_ERROR, 0, (uint32_t)n);
        (void)send(fd, frame, STK_INITP_HDR + n, MSG_NOSIGNAL | MSG_DONTWAIT);
        close(fd);
        return;
    }
    c->gen++;
    c->fd = fd;
    c->role = ROLE_CMD;
    c->in_len = c->stdin_off = 0;
    c->stdin_blocked = c->close_after_flush = false;
    c->proc = NULL;
    c->file_fd = c->dir_fd = -1;
    c->file_left = 0;
    c->tmp_name[0] = '\0';
    c->in = malloc(STK_INITP_MAX_FRAME);
    if (!c->in) {
        log_msg("out of memory");
        abort();
    }
    queue_init(&c->out, CONN_QUEUE_CAP);
}

/* ---- processes ------------------------------------------------------------ */

static struct queue *proc_queue(struct proc *p, size_t *ret_limit)
{
    if (p == &S.wl) {
        *ret_limit = WORKLOAD_BUF_MAX;
        return &S.wl_buf;
    }
    *ret_limit = CONN_DATA_MAX;
    return p->conn ? &p->conn->out : NULL;
}

/* Output is read only while its queue has room: when nobody drains it, the
 * pipe fills and the process blocks in write(). That is the backpressure. */
static bool proc_can_read(struct proc *p)
{
    size_t limit;
    struct queue *q = proc_queue(p, &limit);
    return q && q->len + STK_INITP_HDR + READ_CHUNK <= limit;
}

static void proc_read(struct proc *p, int i)
{
    size_t limit;
    struct queue *q = proc_queue(p, &limit);
    if (!q || q->len + STK_INITP_HDR + READ_CHUNK > limit)
        return;
    uint8_t *dst = queue_reserve(q, STK_INITP_HDR + READ_CHUNK);
    if (!dst)
        return;
    ssize_t n = read(p->out_fd[i], dst + STK_INITP_HDR, READ_CHUNK);
    if (n > 0) {
        stk_initp_hdr_encode(dst, STK_INITP_OUTPUT, (uint8_t)(i + 1), (uint32_t)n);
        q->len += STK_INITP_HDR + (size_t)n;
        return;
    }
    if (n < 0 && errno == EINTR)
        return;
    /* EOF, EIO (pty with no slave left) or an error end the stream. After
     * the process was reaped, an empty pipe is as good as EOF: whatever it
     * wrote is in the pipe already; an orphan that inherited the pipe must not
     * hold the exit status back. A pty gets a short grace instead, because
     * the tty layer hands data to the master asynchronously. */
    if (n == 0 || errno != EAGAIN || (p->reaped && !p->tty))
        close_fd(&p->out_fd[i]);
}

static void proc_write_stdin(struct proc *p)
{
    if (p->conn)
        conn_process_input(p->conn);
}

static struct proc *proc_by_pid(pid_t pid)
{
    if (S.wl.pid == pid && S.wl_state == WL_RUNNING)
        return &S.wl;
    for (size_t i = 0; i < MAX_PROCS; i++)
        if (S.procs[i].pid == pid && !S.procs[i].reaped)
            return &S.procs[i];
    return NULL;
}

/* PID 1's first duty: every child, ours or an orphan, is reaped. */
static void reap_children(void)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        struct proc *p = proc_by_pid(pid);
        if (!p)
            continue;
        p->reaped = true;
        p->status = status;
        p->drain_deadline = now_ms() + PTY_DRAIN_MS;
        if (p == &S.wl)
            S.wl_state = WL_EXITED;
        else if (!p->conn)
            p->pid = 0;
    }
}

/* A reaped process's pipes are read until empty right away: an orphan that
 * inherited them may keep them open and silent forever, so no poll event
 * would come. */
static void proc_drain_exited(struct proc *p)
{
    if (!p->reaped || p->tty)
        return;
    for (int i = 0; i < 2; i++)
        while (p->out_fd[i] >= 0 && proc_can_read(p))
            proc_read(p, i);
}

static bool proc_drained(const struct proc *p)
{
    return p->reaped && p->out_fd[0] < 0 && p->out_fd[1] < 0;
}

/* Finished exec: EXIT frame, then the connection closes once flushed. */
static void exec_progress(struct proc *p, int64_t now)
{
    proc_drain_exited(p);
    if (p->reaped && p->tty && now >= p->drain_deadline)
        proc_close_fds(p);
    if (!p->conn || !proc_drained(p))
        return;
    struct conn *c = p->conn;
    send_exit(c, p->status);
    c->close_after_flush = true;
    c->proc = NULL;
    c->stdin_blocked = false;
    proc_close_fds(p);
    p->conn = NULL;
    p->pid = 0;
}

static void attach_progress(void)
{
    struct conn *c = S.attacher;
    if (!c || c->close_after_flush || S.wl_state != WL_EXITED || !proc_drained(&S.wl))
        return;
    if (S.wl_buf.len > 0 || c->out.len > 0)
        return;
    send_exit(c, S.wl.status);
    c->close_after_flush = true;
}

/* ---- shutdown and signals ------------------------------------------------------ */

static bool anything_running(void)
{
    if (S.wl_state == WL_RUNNING)
        return true;
    for (size_t i = 0; i < MAX_PROCS; i++)
        if (S.procs[i].pid > 0 && !S.procs[i].reaped)
            return true;
    return false;
}

static void wait_tracked(void)
{
    if (S.wl_state == WL_RUNNING && waitpid(S.wl.pid, &S.wl.status, 0) == S.wl.pid)
        S.wl_state = WL_EXITED;
    for (size_t i = 0; i < MAX_PROCS; i++)
        if (S.procs[i].pid > 0 && !S.procs[i].reaped)
            (void)waitpid(S.procs[i].pid, NULL, 0);
}

static void send_blocking(int fd, const uint8_t *p, size_t n)
{
    struct timeval tv = {.tv_sec = 1};
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    int fl = fcntl(fd, F_GETFL);
    (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

/* Grace is over (or nothing is left): kill what remains, reap it, answer the
 * shutdown requests and exit. As PID 1 the kernel then kills everything else
 * in the namespace; in subreaper mode (tests) we kill only what is ours. */
__attribute__((noreturn)) static void finish_shutdown(void)
{
    signal_all(SIGKILL);
    if (S.pid1)
        (void)kill(-1, SIGKILL);
    wait_tracked();
    while (waitpid(-1, NULL, S.pid1 ? 0 : WNOHANG) > 0)
        ;
    for (size_t i = 0; i < MAX_CONNS; i++) {
        struct conn *c = &S.conns[i];
        if (c->role == ROLE_FILE_WRITE)
            file_close(c); /* no half-written temporary file stays */
        if (c->role != ROLE_SHUTDOWN)
            continue;
        send_ok(c, NULL, 0);
        send_blocking(c->fd, c->out.data + c->out.start, c->out.len);
    }
    exit(0);
}

static void handle_signals(void)
{
    struct signalfd_siginfo si;
    while (read(S.sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        int sig = (int)si.ssi_signo;
        if (sig == SIGCHLD) {
            reap_children();
            continue;
        }
        if (sig == SIGTERM) {
            /* As PID 1, a SIGTERM from inside the sandbox (ssi_pid != 0) is
             * the workload's, not the runtime's: it must not stop the
             * supervisor the host relies on. */
            if (S.pid1 && si.ssi_pid != 0)
                continue;
            begin_shutdown(SIGTERM_GRACE_MS);
            continue;
        }
        if (S.wl_state == WL_RUNNING)
            (void)kill(S.wl.pid, sig);
    }
}

/* ---- the loop ------------------------------------------------------------------ */

enum entry_kind {
    ENT_SIGNALS,
    ENT_LISTEN,
    ENT_CONN,
    ENT_PROC_OUT,
    ENT_PROC_IN,
};

struct entry {
    enum entry_kind kind;
    void *ptr;
    unsigned gen;
    int idx;
};

#define MAX_ENTRIES (2 + MAX_CONNS + 3 * (MAX_PROCS + 1))

struct pollset {
    struct pollfd fds[MAX_ENTRIES];
    struct entry ents[MAX_ENTRIES];
    nfds_t n;
};

static void add_entry(struct pollset *ps, int fd, short events, enum entry_kind kind, void *ptr,
                      unsigned gen, int idx)
{
    ps->fds[ps->n] = (struct pollfd){.fd = fd, .events = events};
    ps->ents[ps->n] = (struct entry){.kind = kind, .ptr = ptr, .gen = gen, .idx = idx};
    ps->n++;
}

static void add_proc(struct pollset *ps, struct proc *p)
{
    if (p->pid == 0)
        return;
    bool readable = proc_can_read(p);
    for (int i = 0; i < 2; i++)
        if (p->out_fd[i] >= 0 && readable)
            add_entry(ps, p->out_fd[i], POLLIN, ENT_PROC_OUT, p, p->gen, i);
    if (p->in_fd >= 0 && p->conn && p->conn->stdin_blocked)
        add_entry(ps, p->in_fd, POLLOUT, ENT_PROC_IN, p, p->gen, 0);
}

static void build_pollset(struct pollset *ps)
{
    ps->n = 0;
    add_entry(ps, S.sigfd, POLLIN, ENT_SIGNALS, NULL, 0, 0);
    if (!S.shutting_down)
        add_entry(ps, LISTEN_FD, POLLIN, ENT_LISTEN, NULL, 0, 0);
    for (size_t i = 0; i < MAX_CONNS; i++) {
        struct conn *c = &S.conns[i];
        if (c->role == ROLE_FREE)
            continue;
        short ev = (short)((conn_wants_input(c) ? POLLIN : 0) | (conn_has_output(c) ? POLLOUT : 0));
        add_entry(ps, c->fd, ev, ENT_CONN, c, c->gen, 0);
    }
    add_proc(ps, &S.wl);
    for (size_t i = 0; i < MAX_PROCS; i++)
        add_proc(ps, &S.procs[i]);
}

static void handle_conn_event(struct conn *c, short rev)
{
    if (rev & POLLOUT)
        conn_write(c);
    if (c->role != ROLE_FREE && (rev & POLLIN))
        conn_read(c);
    /* Peer gone with nothing more to read (POLLIN would have come first). */
    if (c->role != ROLE_FREE && (rev & (POLLERR | POLLHUP | POLLNVAL)) && !(rev & POLLIN))
        conn_close(c);
}

static void dispatch_entry(const struct entry *e, short rev)
{
    switch (e->kind) {
    case ENT_SIGNALS:
        return handle_signals();
    case ENT_LISTEN:
        return accept_conn();
    case ENT_CONN: {
        struct conn *c = e->ptr;
        if (c->role != ROLE_FREE && c->gen == e->gen)
            handle_conn_event(c, rev);
        return;
    }
    case ENT_PROC_OUT: {
        struct proc *p = e->ptr;
        if (p->pid && p->gen == e->gen && p->out_fd[e->idx] >= 0)
            proc_read(p, e->idx);
        return;
    }
    case ENT_PROC_IN: {
        struct proc *p = e->ptr;
        if (p->pid && p->gen == e->gen)
            proc_write_stdin(p);
        return;
    }
    }
}

/* Everything that moves without an fd event: EXIT frames, attach flushes,
 * connections done flushing, pty drain deadlines, the shutdown clock. */
static void make_progress(void)
{
    int64_t now = now_ms();
    for (size_t i = 0; i < MAX_PROCS; i++)
        if (S.procs[i].pid)
            exec_progress(&S.procs[i], now);
    proc_drain_exited(&S.wl);
    attach_progress();
    for (size_t i = 0; i < MAX_CONNS; i++) {
        struct conn *c = &S.conns[i];
        if (c->role == ROLE_FILE_READ && !c->close_after_flush)
            file_read_progress(c);
        if (c->role != ROLE_FREE && c->close_after_flush && !conn_has_output(c))
            conn_close(c);
    }
    if (S.shutting_down && (!anything_running() || now >= S.shutdown_deadline))
        finish_shutdown();
}

static int poll_timeout(void)
{
    int64_t now = now_ms(), next = -1;
    if (S.shutting_down)
        next = S.shutdown_deadline;
    for (size_t i = 0; i < MAX_PROCS; i++) {
        struct proc *p = &S.procs[i];
        if (p->pid && p->reaped && p->tty && p->out_fd[0] >= 0)
            next = next < 0 || p->drain_deadline < next ? p->drain_deadline : next;
    }
    if (next < 0)
        return -1;
    return next <= now ? 0 : (int)(next - now);
}

static void run_loop(void)
{
    static struct pollset ps;
    for (;;) {
        make_progress();
        build_pollset(&ps);
        int r = poll(ps.fds, ps.n, poll_timeout());
        if (r < 0 && errno != EINTR) {
            log_msg("poll: %s", strerror(errno));
            abort();
        }
        for (nfds_t i = 0; r > 0 && i < ps.n; i++)
            if (ps.fds[i].revents)
                dispatch_entry(&ps.ents[i], ps.fds[i].revents);
    }
}

/* ---- setup ---------------------------------------------------------------------- */

static int check_listen_fd(void)
{
    int acc = 0;
    socklen_t len = sizeof(acc);
    if (getsockopt(LISTEN_FD, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) < 0 || !acc)
        return -ENOTSOCK;
    if (fcntl(LISTEN_FD, F_SETFD, FD_CLOEXEC) < 0)
        return -errno;
    return set_nonblock(LISTEN_FD);
}

/* --listen PATH (gVisor, which cannot hand a listening socket in): init
 * binds its own at PATH, in a host directory the driver moves it out of
 * before anything else runs here, and serves it as fd 3. The driver takes
 * a connection that succeeds as the sign that init listens, and then
 * changes the directory: init must make no call on it after listen(2). */
static int listen_at(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(path);
    if (len >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, path, len + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    mode_t old = umask(0077);
    int r = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 64) < 0 ? -errno : 0;
    umask(old);
    if (r == 0 && fd != LISTEN_FD && dup3(fd, LISTEN_FD, O_CLOEXEC) < 0)
        r = -errno;
    if (fd != LISTEN_FD)
        close(fd);
    return r;
}

static int setup_signals(void)
{
    static const int handled[] = {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
    sigset_t set;
    sigemptyset(&set);
    for (size_t i = 0; i < sizeof(handled) / sizeof(handled[0]); i++)
        sigaddset(&set, handled[i]);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        return -errno;
    S.sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (S.sigfd < 0)
        return -errno;
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        printf("stockade-init %s (protocol %d)\n", STK_VERSION, STK_INITP_VERSION);
        return 0;
    }
    S.pid1 = getpid() == 1;
    /* Same uid as the workload: without this, it could ptrace init or open
     * /proc/1/fd/3 and talk to the host socket. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        log_msg("PR_SET_DUMPABLE: %s", strerror(errno));
    if (!S.pid1 && prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
        log_msg("PR_SET_CHILD_SUBREAPER: %s", strerror(errno));
    int r = 0;
    if (argc == 3 && strcmp(argv[1], "--listen") == 0 && (r = listen_at(argv[2])) < 0) {
        log_msg("listening on %s: %s", argv[2], strerror(-r));
        return 1;
    }
    r = check_listen_fd();
    if (r < 0) {
        log_msg("fd 3 is not a listening socket: %s", strerror(-r));
        return 1;
    }
    r = setup_signals();
    if (r < 0) {
        log_msg("signals: %s", strerror(-r));
        return 1;
    }
    for (size_t i = 0; i < MAX_CONNS; i++)
        S.conns[i].fd = S.conns[i].file_fd = S.conns[i].dir_fd = -1;
    for (size_t i = 0; i < MAX_PROCS; i++)
        S.procs[i].in_fd = S.procs[i].out_fd[0] = S.procs[i].out_fd[1] = -1;
    S.wl.in_fd = S.wl.out_fd[0] = S.wl.out_fd[1] = -1;
    queue_init(&S.wl_buf, WORKLOAD_BUF_MAX);
    run_loop();
    return 0;
}
