/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The monitor: one detached process per live sandbox (conmon's role).
 *
 * It provisions the sandbox (or adopts one a dead monitor left), holds the
 * lock of the sandbox's directory for as long as the sandbox holds anything
 * on the host, and watches it:
 *  - a thread attached to stockade-init copies the workload's output into
 *    the bounded logs and learns its exit status;
 *  - the main loop reads the cgroup counters (kill reasons come from the
 *    kernel's own counters, never from an exit status), the deadline, the
 *    denied-egress log (each event an audit record) and init's pidfd.
 * When the workload ends (or is killed, or a stop or rm asked init to shut
 * down) it removes what the sandbox held and records the final phase, in
 * that order, so the phase never claims a state the host is not in.
 */
#include "driver/local/internal.h"
#include "session/private.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define SAMPLE_MS      50
#define INIT_WAIT_MS   10000 /* for stockade-init to answer after the runtime started it */
#define REPORT_WAIT_MS 120000

struct monitor {
    struct stk_session *s;
    char id[64];
    struct stk_sb_rec rec;
    struct stk_session_boundary sb;
    enum stk_oci_runtime rt;
    struct stk_net_config net;
    char sock[256];
    pid_t init_pid;
    int lock_fd, report_fd;
    /* the attach thread */
    pthread_t thread;
    bool thread_started;
    int done_fd; /* eventfd: the attach ended */
    int attach_r, exit_code, signal;
    struct log_writer logs;
    /* what the main loop saw */
    enum stk_kill_reason kill;
    struct cg_sample cs;
    int64_t started_ms;
    bool idle; /* no workload: an idle sandbox for verify */
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int session_runtime_of(const struct stk_sb_rec *rec, enum stk_oci_runtime *ret)
{
    int i = stk_enum_lookup(stk_oci_runtime_names, _STK_OCI_N, rec->runtime);
    if (i < 0)
        return -EINVAL;
    *ret = (enum stk_oci_runtime)i;
    return 0;
}

/* "ok <id>\n" or "error <message>\n" to whoever waits for the sandbox. */
static void report(struct monitor *m, const char *what, const char *msg)
{
    if (m->report_fd < 0)
        return;
    char buf[1024];
    int n = snprintf(buf, sizeof(buf), "%s %s\n", what, msg ? msg : "");
    if (n > 0)
        (void)!write(m->report_fd, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
    close(m->report_fd);
    m->report_fd = -1;
}

/* ---- provisioning ----------------------------------------------------------------- */

static int start_workload(struct monitor *m, struct stk_error **err)
{
    struct stk_init_conn *c = NULL;
    struct stk_init_info info;
    int r = stk_init_connect(m->sock, INIT_WAIT_MS, &c, err);
    if (r >= 0)
        r = stk_init_hello(c, &info, err);
    if (r >= 0 && !m->rec.pool_member && !m->idle) {
        const struct stk_boundary *b = m->sb.b;
        struct stk_init_proc proc = {.argv = b->argv, .argc = b->argc};
        r = stk_init_start(c, &proc, err);
    }
    stk_init_close(c);
    return r;
}

static int provision(struct monitor *m, enum stk_sb_phase from, struct stk_error **err)
{
    struct stk_run_request req = {
        .b = m->sb.b,
        .runtime = m->rt,
        .net = &m->net,
        .id = m->id,
        .lock_fd = m->lock_fd,
        /* a pool member keeps the pool's name: the hostname is fixed at
         * creation (the UTS namespace), before any claim */
        .hostname = m->rec.pool_member ? m->rec.pool : NULL,
    };
    struct stk_local_instance inst;
    int r = stk_local_provision(&m->s->p, &req, &inst, err);
    if (r < 0)
        return r;
    stk_fault_point("provisioned");
    m->init_pid = inst.init_pid;
    fmt_into(m->sock, sizeof(m->sock), "%s", inst.socket);
    m->rec.init_pid = inst.init_pid;
    m->rec.monitor_pid = getpid();
    if ((r = stk_store_sb_update(m->s->st, &m->rec, err)) < 0 || (r = start_workload(m, err)) < 0)
        return r;
    bool workload = !m->rec.pool_member && !m->idle;
    _cleanup_free_ char *dj = session_argv_json(m->sb.b->argv, m->sb.b->argc, NULL, NULL);
    return stk_store_sb_set_phase(m->s->st, m->id, (int)from, STK_SB_READY, "", "",
                                  "stockade-monitor", workload ? "started" : "ready",
                                  workload ? dj : NULL, err);
}

/* ---- the attach thread -------------------------------------------------------------- */

static int on_output(void *ud, int stream, const void *data, size_t n)
{
    struct monitor *m = ud;
    (void)log_writer_put(&m->logs, stream, data, n);
    return 0;
}

static void *attach_thread(void *ud)
{
    struct monitor *m = ud;
    struct stk_init_conn *c = NULL;
    struct stk_error *err = NULL;
    int r = stk_init_connect(m->sock, INIT_WAIT_MS, &c, &err);
    if (r >= 0)
        r = stk_init_attach(c, on_output, m, &m->exit_code, &m->signal, &err);
    stk_init_close(c);
    stk_error_free(err);
    m->attach_r = r;
    uint64_t one = 1;
    (void)!write(m->done_fd, &one, sizeof(one));
    return NULL;
}

/* ---- supervising ------------------------------------------------------------------ */

static bool observable(enum stk_oci_runtime rt, enum stk_kill_reason k)
{
    for (const char *const *u = rt_table[rt].unobservable; *u; u++)
        if (!strcmp(*u, stk_kill_reason_names[k]))
            return false;
    return true;
}

static void kill_sandbox(struct monitor *m, enum stk_kill_reason why)
{
    if (m->kill != STK_KILL_NONE)
        return;
    m->kill = why;
    /* PID 1 of the sandbox's PID namespace: everything dies with it */
    if (m->init_pid > 1)
        (void)kill(m->init_pid, SIGKILL);
}

static void audit_egress(struct monitor *m, struct stk_egress_log *elog, bool flush)
{
    struct stk_egress_event ev[32];
    int n;
    struct stk_buf b = {0};
    while ((n = stk_egress_log_read(elog, 0, ev, STK_ARRAY_SIZE(ev), NULL)) > 0 || flush) {
        if (flush) {
            n = (int)stk_egress_log_flush(elog, ev, STK_ARRAY_SIZE(ev));
            flush = false;
        }
        for (int i = 0; i < n; i++) {
            stk_egress_event_json(&ev[i], &b);
            _cleanup_free_ char *line = stk_buf_steal(&b);
            (void)stk_audit_append(m->s->st, m->id, "egress_denied", "stockade-monitor", line,
                                   NULL);
        }
        if (n <= 0)
            break;
    }
    stk_buf_free(&b);
}

static void supervise(struct monitor *m)
{
    const struct stk_resolved_limits *l = &m->sb.b->limits;
    const struct cg_ops *cg = cg_detect();
    int pidfd = (int)syscall(SYS_pidfd_open, m->init_pid, 0);
    struct stk_egress_log *elog = NULL;
    struct stk_net *net = NULL;
    if (stk_net_open(&m->net, m->id, &net, NULL) >= 0) {
        if (stk_egress_log_open(stk_net_log_group(net), &elog, NULL) < 0 ||
            stk_egress_log_watch(elog, m->id, m->sb.b) < 0) {
            stk_egress_log_close(elog);
            elog = NULL;
        }
        stk_net_free(net);
    }
    m->cs = (struct cg_sample){.mem_peak = -1, .pids_peak = -1};
    int64_t deadline = INT64_MAX;
    int64_t next_db = 0;
    bool member = m->rec.pool_member;
    if (!member && l->wall_clock_ms > 0)
        deadline = mono_ms() + l->wall_clock_ms;

    for (;;) {
        cg->sample(m->id, &m->cs);
        if (m->cs.oom_kills > 0 && observable(m->rt, STK_KILL_MEMORY))
            kill_sandbox(m, STK_KILL_MEMORY);
        if (m->cs.pids_max > 0 && observable(m->rt, STK_KILL_PIDS))
            kill_sandbox(m, STK_KILL_PIDS);
        if (l->cpu_time_ms > 0 && m->cs.cpu_usec / 1000 >= l->cpu_time_ms)
            kill_sandbox(m, STK_KILL_CPU);
        int64_t now = mono_ms();
        if (now >= deadline)
            kill_sandbox(m, STK_KILL_WALL_CLOCK);
        /* a pool member's deadline starts when it is claimed */
        if (member && now >= next_db) {
            struct stk_sb_rec r = {0};
            if (stk_store_sb_get(m->s->st, m->id, &r, NULL) >= 0 && !r.pool_member) {
                member = false;
                if (l->wall_clock_ms > 0)
                    deadline = now + l->wall_clock_ms;
            }
            stk_sb_rec_free(&r);
            next_db = now + 200;
        }
        struct pollfd pfd[3] = {
            {.fd = m->done_fd, .events = POLLIN},
            {.fd = pidfd, .events = POLLIN},
            {.fd = elog ? stk_egress_log_fd(elog) : -1, .events = POLLIN},
        };
        int64_t wait = SAMPLE_MS;
        if (deadline != INT64_MAX && deadline - now < wait)
            wait = deadline - now > 0 ? deadline - now : 0;
        if (poll(pfd, 3, (int)wait) > 0) {
            if (pfd[2].revents && elog)
                audit_egress(m, elog, false);
            if (pfd[0].revents || pfd[1].revents)
                break;
        }
        /* children the runtime left us (we are their subreaper) */
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
    }
    cg->sample(m->id, &m->cs);
    if (m->kill == STK_KILL_NONE && m->cs.oom_kills > 0 && observable(m->rt, STK_KILL_MEMORY))
        m->kill = STK_KILL_MEMORY;
    if (elog) {
        audit_egress(m, elog, true);
        stk_egress_log_close(elog);
    }
    if (pidfd >= 0)
        close(pidfd);
}

static char *result_json(struct monitor *m, bool have_status)
{
    json_t *j = json_object();
    json_object_set_new(j, "exitCode", have_status ? json_integer(m->exit_code) : json_null());
    json_object_set_new(j, "signal",
                        have_status && m->signal ? json_integer(m->signal) : json_null());
    json_object_set_new(j, "killReason",
                        m->kill ? json_string(stk_kill_reason_names[m->kill]) : json_null());
    json_object_set_new(j, "cpuSeconds", json_real((double)m->cs.cpu_usec / 1e6));
    json_object_set_new(j, "peakMemoryBytes",
                        m->cs.mem_peak >= 0 ? json_integer(m->cs.mem_peak) : json_null());
    json_object_set_new(j, "runtime", json_string(stk_oci_runtime_names[m->rt]));
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(j);
    return s;
}

/* The workload ended, was killed, or a stop or rm shut init down: release
 * the host's resources, then record the phase that is now true. */
static void conclude(struct monitor *m)
{
    if (m->thread_started) {
        /* init's end closes the attach connection */
        pthread_join(m->thread, NULL);
        m->thread_started = false;
    }
    struct stk_sb_rec now = {0};
    if (stk_store_sb_get(m->s->st, m->id, &now, NULL) < 0)
        now.phase = STK_SB_READY;
    bool have_status = m->attach_r >= 0;
    bool purge = now.phase == STK_SB_DELETING;
    log_writer_close(&m->logs);
    (void)stk_local_teardown(&m->s->p, m->id, m->rt, &m->net, purge, NULL);

    _cleanup_free_ char *result = result_json(m, have_status);
    /* the record as it is now (a claim may have renamed the sandbox since
     * this monitor started), with this run's result */
    free(now.result);
    now.result = stk_xstrdup(result);
    now.exit_code = have_status ? m->exit_code : -1;
    now.monitor_pid = 0;
    now.init_pid = 0;
    if (!purge && now.id[0])
        (void)stk_store_sb_update(m->s->st, &now, NULL);

    enum stk_sb_phase to;
    const char *event, *reason = "";
    char msg[256] = "";
    if (now.phase == STK_SB_STOPPING) {
        to = STK_SB_STOPPED;
        event = "stopped";
    } else if (purge) {
        to = STK_SB_DELETED;
        event = "deleted";
    } else if (m->kill != STK_KILL_NONE) {
        to = STK_SB_KILLED;
        event = "killed";
        reason = stk_kill_reason_names[m->kill];
    } else if (!have_status) {
        to = STK_SB_FAILED;
        event = "failed";
        reason = "lost";
        fmt_into(msg, sizeof(msg), "stockade-init ended without reporting the workload's status");
    } else {
        to = m->exit_code == 0 ? STK_SB_SUCCEEDED : STK_SB_FAILED;
        event = "exited";
    }
    (void)stk_store_sb_set_phase(m->s->st, m->id, (int)now.phase, to, reason, msg,
                                 "stockade-monitor", event, result, NULL);
    stk_sb_rec_free(&now);
}

/* ---- the monitor process ------------------------------------------------------------ */

/* Is pid still the sandbox's stockade-init (and not a reused pid)? */
static bool is_init(pid_t pid)
{
    char path[64], exe[256];
    if (pid <= 1)
        return false;
    snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
    ssize_t n = readlink(path, exe, sizeof(exe) - 1);
    if (n <= 0)
        return false;
    exe[n] = '\0';
    return strstr(exe, STK_OCI_INIT_PATH) != NULL;
}

static int monitor_main(struct monitor *m, enum monitor_mode mode)
{
    struct stk_error *err = NULL;
    int r = stk_store_sb_get(m->s->st, m->id, &m->rec, &err);
    if (r >= 0)
        r = session_rec_boundary(&m->rec, &m->sb, &err);
    if (r >= 0 && session_runtime_of(&m->rec, &m->rt) < 0)
        r = stk_error_make(&err, EINVAL, "unknown runtime %s", m->rec.runtime);
    if (r >= 0)
        r = session_net_config(&m->s->p, m->sb.env, &m->net, &err);
    char dir[PATH_MAX];
    session_dir(m->s, m->id, dir, sizeof(dir));
    if (r >= 0)
        r = log_writer_open(&m->logs, dir, &err);

    bool creating = mode == MONITOR_CREATE || mode == MONITOR_CREATE_IDLE;
    m->idle = mode == MONITOR_CREATE_IDLE;
    if (r >= 0 && creating)
        r = stk_store_sb_set_phase(m->s->st, m->id, STK_SB_PENDING, STK_SB_PROVISIONING, NULL, NULL,
                                   "stockade-monitor", NULL, NULL, &err);
    if (r >= 0 && mode != MONITOR_ADOPT)
        r = provision(m, creating ? STK_SB_PROVISIONING : STK_SB_STARTING, &err);
    if (r >= 0 && mode == MONITOR_ADOPT) {
        m->init_pid = m->rec.init_pid;
        if (stk_local_socket_path(&m->s->p, m->id, m->sock, sizeof(m->sock), &err) < 0 ||
            !is_init(m->init_pid))
            m->attach_r = -ESRCH; /* nothing to adopt: conclude as lost */
    }
    if (r < 0) {
        report(m, "error", err ? err->msg : "failed");
        if (m->rec.id[0]) {
            (void)stk_local_teardown(&m->s->p, m->id, m->rt, &m->net, false, NULL);
            struct stk_sb_rec now = {0};
            if (stk_store_sb_get(m->s->st, m->id, &now, NULL) >= 0)
                (void)stk_store_sb_set_phase(m->s->st, m->id, (int)now.phase, STK_SB_FAILED,
                                             "provisioning_failed", err ? err->msg : "",
                                             "stockade-monitor", "failed", NULL, NULL);
            stk_sb_rec_free(&now);
        }
        stk_error_free(err);
        return 1;
    }
    if (mode == MONITOR_ADOPT) {
        m->rec.monitor_pid = getpid();
        (void)stk_store_sb_update(m->s->st, &m->rec, NULL);
        (void)stk_audit_append(m->s->st, m->id, "adopted", "stockade-monitor",
                               "{\"why\":\"its previous monitor was gone\"}", NULL);
    }
    report(m, "ok", m->id);

    if (m->attach_r == 0) {
        m->done_fd = eventfd(0, EFD_CLOEXEC);
        m->thread_started =
            m->done_fd >= 0 && pthread_create(&m->thread, NULL, attach_thread, m) == 0;
        if (m->thread_started)
            supervise(m);
        else
            m->attach_r = -EIO;
    }
    conclude(m);
    stk_error_free(err);
    return 0;
}

static const char *const mode_names[] = {"create", "create-idle", "start", "adopt"};

/* The monitor's process: a fresh exec of stockade (never a bare fork of the
 * caller: SQLite connections, locks and descriptors must not cross into a
 * process that lives as long as the sandbox). lock_fd and report_fd are
 * the only descriptors it inherits. */
int stk_session_monitor_main(const struct stk_local_paths *p, const char *id, const char *mode,
                             int lock_fd, int report_fd)
{
    int i = stk_enum_lookup(mode_names, STK_ARRAY_SIZE(mode_names), mode);
    (void)prctl(PR_SET_NAME, "stockade-mon");
    (void)prctl(PR_SET_CHILD_SUBREAPER, 1);
    signal(SIGPIPE, SIG_IGN);
    /* stop and rm end sandboxes through init, never by signalling us */
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    struct stk_session s = {.p = *p};
    fmt_into(s.state_dir, sizeof(s.state_dir), "%s", p->state_dir);
    fmt_into(s.run_dir, sizeof(s.run_dir), "%s", p->run_dir);
    s.p.state_dir = s.state_dir;
    s.p.run_dir = s.run_dir;
    fmt_into(s.actor, sizeof(s.actor), "stockade-monitor");
    struct stk_error *err = NULL;
    if (i < 0 || stk_store_open(s.p.state_dir, &s.st, &err) < 0) {
        char buf[600];
        int n = snprintf(buf, sizeof(buf), "error %s\n", err ? err->msg : "bad monitor mode");
        (void)!write(report_fd, buf, (size_t)n);
        stk_error_free(err);
        return 1;
    }
    struct monitor m = {.s = &s, .lock_fd = lock_fd, .report_fd = report_fd, .done_fd = -1};
    fmt_into(m.id, sizeof(m.id), "%s", id);
    int r = monitor_main(&m, (enum monitor_mode)i);
    stk_store_close(s.st);
    return r;
}

/* In a child of the caller: a new session, stdio on /dev/null, keep[0..n)
 * moved to fds 3.., every other descriptor closed, then `stockade ARGV`.
 * Never returns. */
_Noreturn void session_exec_self(const struct stk_local_paths *p, int *keep, int n_keep,
                                 const char *const *argv)
{
    (void)setsid();
    int high[4];
    for (int i = 0; i < n_keep && i < 4; i++)
        high[i] = fcntl(keep[i], F_DUPFD, 100);
    for (int i = 0; i < n_keep && i < 4; i++)
        if (high[i] < 0 || dup2(high[i], 3 + i) < 0)
            _exit(126);
    (void)close_range((unsigned)(3 + n_keep), ~0U, 0);
    int null = open("/dev/null", O_RDWR);
    if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0)
        _exit(126);
    if (null > 2 + n_keep)
        close(null);
    setenv("STOCKADE_STATE_DIR", p->state_dir, 1);
    setenv("STOCKADE_RUN_DIR", p->run_dir, 1);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    union {
        const char *const *c;
        char *const *m;
    } av = {.c = argv};
    execv("/proc/self/exe", av.m);
    _exit(127);
}

int monitor_spawn(struct stk_session *s, const char *id, enum monitor_mode mode, int lock_fd,
                  struct stk_error **err)
{
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) < 0)
        return stk_error_errno(err, errno, "pipe");
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(pfd[0]);
        close(pfd[1]);
        return stk_error_errno(err, errno, "fork");
    }
    if (pid == 0) {
        close(pfd[0]);
        /* double fork: the monitor is nobody's child but init's (or the
         * nearest subreaper's), and the caller has no zombie to reap */
        pid_t m = fork();
        if (m != 0)
            _exit(m < 0 ? 1 : 0);
        int keep[2] = {lock_fd, pfd[1]};
        const char *argv[] = {"stockade", STK_SESSION_MONITOR_VERB, mode_names[mode], id, NULL};
        session_exec_self(&s->p, keep, 2, argv);
    }
    close(pfd[1]);
    /* the lock now belongs to the monitor (same open file) */
    close(lock_fd);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    char buf[1024];
    size_t got = 0;
    struct pollfd p = {.fd = pfd[0], .events = POLLIN};
    for (int64_t deadline = mono_ms() + REPORT_WAIT_MS; got < sizeof(buf) - 1;) {
        int64_t left = deadline - mono_ms();
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            break;
        ssize_t n = read(pfd[0], buf + got, sizeof(buf) - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(pfd[0]);
    buf[got] = '\0';
    char *nl = strchr(buf, '\n');
    if (nl)
        *nl = '\0';
    if (!strncmp(buf, "ok ", 3))
        return 0;
    if (!strncmp(buf, "error ", 6))
        return stk_error_make(err, EIO, "sandbox %s: %s", id, buf + 6);
    return stk_error_make(err, EIO,
                          "sandbox %s: its monitor ended without reporting; `stockade get %s` "
                          "shows what is known",
                          id, id);
}
