/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Supervising a long-lived local sandbox (the monitor process hosts this):
 *  - a thread attached to stockade-init copies the workload's output to the
 *    sink and learns its exit status;
 *  - the main loop sleeps in one poll() without a timeout until something
 *    happens, and acts on it: init's pidfd (the end), the cgroup's event
 *    files (cg_watch_open: an OOM kill, a refused fork; kill reasons come
 *    from the kernel's own counters, never from an exit status), the
 *    denied-egress log and the proxy's records (each an event), the sink's
 *    wake_fd (the session's record changed: a claim starts the deadline; an
 *    overdue stop or rm is a SIGKILL), SIGCHLD (a signalfd: what the
 *    runtime left us to reap) and one timerfd, armed only at what has a
 *    time: the deadline, what the sink asked to be asked at, a burst of
 *    looks for a second after a cgroup event, and the soonest the CPU-time
 *    budget could be spent (CPU use has no event). An idle sandbox's
 *    monitor makes no system call.
 * It works the same for a sandbox this process provisioned and for one it
 * adopts after a monitor died: everything comes from (id, handle). The
 * thread is the only one, and this process clones nothing while it runs
 * (the runtimes it starts are started before, the teardown after).
 */
#include "driver/local/internal.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#define SAMPLE_MS    50
#define CG_BURST_MS  1000 /* looks every SAMPLE_MS this long after a cgroup event */
#define ASK_EVERY_MS 200
#define INIT_WAIT_MS 10000

int local_init_pidfd(pid_t pid, const char *id, enum stk_oci_runtime rt)
{
    if (pid <= 1)
        return -ESRCH;
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0)
        return -errno;
    /* under gVisor init is a guest task: the host process is gVisor's
     * sandbox, the runtime binary itself */
    char want_exe[PATH_MAX], found[256];
    struct stat st;
    want_exe[0] = '\0';
    if (!rt_table[rt].init_binds_flag)
        fmt_into(want_exe, sizeof(want_exe), "%s", STK_OCI_INIT_PATH);
    else if (!rt_find(rt_table[rt].name, found, sizeof(found), &st) || !realpath(found, want_exe))
        want_exe[0] = '\0';
    char path[64], exe[PATH_MAX], cg[4096];
    snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
    ssize_t n = readlink(path, exe, sizeof(exe) - 1);
    snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
    ssize_t k = file_read(path, cg, sizeof(cg));
    char want[96];
    snprintf(want, sizeof(want), "/" CG_PARENT "/%s\n", id);
    if (n > 0)
        exe[n] = '\0';
    bool exe_ok = n > 0 && want_exe[0] &&
                  (rt_table[rt].init_binds_flag ? !strcmp(exe, want_exe) : !!strstr(exe, want_exe));
    if (!exe_ok || k <= 0 || !strstr(cg, want)) {
        close(fd);
        return -ESRCH;
    }
    return fd;
}

struct sup {
    const struct stk_driver_sandbox *sb;
    const struct stk_driver_sink *sink;
    enum stk_oci_runtime rt;
    char sock[256];
    int pidfd;
    /* the attach thread */
    pthread_t thread;
    int done_fd;
    int attach_r, exit_code, signal;
    /* what the main loop saw */
    enum stk_kill_reason kill;
    struct cg_sample cs;
};

static int on_output(void *ud, int stream, const void *data, size_t n)
{
    struct sup *m = ud;
    if (m->sink->output)
        (void)m->sink->output(m->sink->ud, stream, data, n);
    return 0;
}

static void *attach_thread(void *ud)
{
    struct sup *m = ud;
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

static bool observable(enum stk_oci_runtime rt, enum stk_kill_reason k)
{
    for (const char *const *u = rt_table[rt].unobservable; *u; u++)
        if (!strcmp(*u, stk_kill_reason_names[k]))
            return false;
    return true;
}

static void kill_sandbox(struct sup *m, enum stk_kill_reason why)
{
    if (m->kill != STK_KILL_NONE)
        return;
    m->kill = why;
    /* PID 1 of the sandbox's PID namespace: everything dies with it. The
     * pidfd names exactly that process, even once its pid is reused. */
    (void)syscall(SYS_pidfd_send_signal, m->pidfd, SIGKILL, NULL, 0);
}

static void report_egress(struct sup *m, struct stk_egress_log *elog, bool flush)
{
    struct stk_egress_event ev[32];
    int n;
    struct stk_buf b = {0};
    while ((n = stk_egress_log_read(elog, 0, ev, STK_ARRAY_SIZE(ev), NULL)) > 0 || flush) {
        if (flush) {
            n = (int)stk_egress_log_flush(elog, ev, STK_ARRAY_SIZE(ev));
            flush = false;
        }
        for (int i = 0; i < n && m->sink->event; i++) {
            stk_egress_event_json(&ev[i], &b);
            _cleanup_free_ char *line = stk_buf_steal(&b);
            m->sink->event(m->sink->ud, "egress_denied", line);
        }
        if (n <= 0)
            break;
    }
    stk_buf_free(&b);
}

static void on_proxy_record(void *ud, const char *json)
{
    struct sup *m = ud;
    m->sink->event(m->sink->ud, "egress_proxy", json);
}

/* The soonest of a and b. */
static int64_t soonest(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* Arms the timer at `at` (CLOCK_MONOTONIC ms; INT64_MAX: disarmed). */
static void arm(int tfd, int64_t at)
{
    struct itimerspec its = {0};
    if (at != INT64_MAX) {
        at = at > 0 ? at : 1; /* 0 would disarm it */
        its.it_value.tv_sec = at / 1000;
        its.it_value.tv_nsec = (at % 1000) * 1000000;
    }
    (void)timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

enum {
    FD_DONE,
    FD_PID,
    FD_ELOG,
    FD_PROXY,
    FD_ASK,
    FD_TIMER,
    FD_CHLD,
    FD_CG,
    N_FD = FD_CG + CG_WATCH_FDS
};

static void watch(struct sup *m, struct local_ctx *c)
{
    const struct stk_resolved_limits *l = &m->sb->b->limits;
    const struct cg_ops *cg = cg_detect();
    const char *id = m->sb->id;
    struct stk_egress_log *elog = NULL;
    struct stk_net *net = NULL;
    struct stk_net_config ncfg;
    if (local_net_config(c, m->sb->env, &ncfg, NULL) >= 0 &&
        stk_net_open(&ncfg, id, &net, NULL) >= 0) {
        if (stk_egress_log_open(stk_net_log_group(net), &elog, NULL) < 0 ||
            stk_egress_log_watch(elog, id, m->sb->b) < 0) {
            stk_egress_log_close(elog);
            elog = NULL;
        }
        /* a sandbox adopted after its monitor died gets its proxy again */
        if (!c->proxy)
            (void)local_proxy_start(&ncfg, m->sb->b, id, net, rt_table[m->rt].proxy_host, &c->proxy,
                                    NULL);
        stk_net_free(net);
    }
    /* the events first, then the first look: nothing falls between */
    struct cg_watch cw;
    cg_watch_open(id, &cw);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    bool ask_fd = m->sink->poll && m->sink->wake_fd > 0;
    /* what ended before SIGCHLD was blocked (the runtime's own process) */
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;

    m->cs = (struct cg_sample){.mem_peak = -1, .pids_peak = -1};
    int64_t deadline = INT64_MAX, next_ask = 0, next_look = 0, burst_until = 0, last_ask = 0;
    int64_t armed_at = INT64_MAX; /* the timerfd starts disarmed */
    int64_t kmsg_back = 0;        /* when the kernel's log is polled again; 0: it is */
    /* the most CPU it can use per ms of wall clock, in thousandths: every
     * CPU of the host, whatever its limit says (a bound, not a guess) */
    int64_t cpu_rate = 1000 * sysconf(_SC_NPROCESSORS_ONLN);
    bool member = m->sb->pool_member, look = true, ask = true;
    if (!member && l->wall_clock_ms > 0)
        deadline = stk_clock_ms(CLOCK_MONOTONIC) + l->wall_clock_ms;

    for (;;) {
        int64_t now = stk_clock_ms(CLOCK_MONOTONIC);
        if (look || now >= next_look) {
            cg->sample(id, &m->cs);
            if (m->cs.oom_kills > 0 && observable(m->rt, STK_KILL_MEMORY))
                kill_sandbox(m, STK_KILL_MEMORY);
            if (m->cs.pids_max > 0 && observable(m->rt, STK_KILL_PIDS))
                kill_sandbox(m, STK_KILL_PIDS);
            if (l->cpu_time_ms > 0 && m->cs.cpu_usec / 1000 >= l->cpu_time_ms)
                kill_sandbox(m, STK_KILL_CPU);
            /* the next look without an event: the soonest the CPU-time
             * budget can be spent (the counter has no event), a burst
             * after an event (an OOM is signalled before its kill is
             * counted), a fallback where the counters have none */
            next_look = INT64_MAX;
            if (l->cpu_time_ms > 0 && cpu_rate > 0) {
                int64_t left = (l->cpu_time_ms - m->cs.cpu_usec / 1000) * 1000 / cpu_rate;
                next_look = now + (left > SAMPLE_MS ? left : SAMPLE_MS);
            }
            if (now < burst_until)
                next_look = soonest(next_look, now + SAMPLE_MS);
            if (cw.unwatched)
                next_look = soonest(next_look, now + STK_DRV_IDLE_POLL_MS);
            look = false;
        }
        if (now >= deadline)
            kill_sandbox(m, STK_KILL_WALL_CLOCK);
        if ((ask || now >= next_ask) && m->sink->poll) {
            int64_t ago = 0, next = INT64_MAX;
            switch (m->sink->poll(m->sink->ud, &ago, &next)) {
            case STK_DRV_ASK_CLAIMED:
                /* a claimed member's deadline starts with its claim */
                if (member && l->wall_clock_ms > 0)
                    deadline = now - ago + l->wall_clock_ms;
                member = false;
                break;
            case STK_DRV_ASK_KILL:
                /* not a kill reason: it was asked to end and did not */
                (void)syscall(SYS_pidfd_send_signal, m->pidfd, SIGKILL, NULL, 0);
                break;
            case STK_DRV_ASK_NONE:
                break;
            }
            if (!ask_fd)
                next = soonest(next, now + STK_DRV_IDLE_POLL_MS);
            /* never sooner than a sample from now: no spinning */
            next_ask = next == INT64_MAX        ? INT64_MAX
                       : next > now + SAMPLE_MS ? next
                                                : now + SAMPLE_MS;
            last_ask = now;
            ask = false;
        }
        struct pollfd pfd[N_FD] = {
            [FD_DONE] = {.fd = m->done_fd, .events = POLLIN},
            [FD_PID] = {.fd = m->pidfd, .events = POLLIN},
            [FD_ELOG] = {.fd = elog ? stk_egress_log_fd(elog) : -1, .events = POLLIN},
            [FD_PROXY] = {.fd = local_proxy_event_fd(c->proxy), .events = POLLIN},
            [FD_ASK] = {.fd = ask_fd ? m->sink->wake_fd : -1, .events = POLLIN},
            [FD_TIMER] = {.fd = tfd, .events = POLLIN},
            [FD_CHLD] = {.fd = sfd, .events = POLLIN},
        };
        /* the kernel's log is the host's: while others fill it, it is read
         * once per STK_DRV_IDLE_POLL_MS, not at each message */
        for (int i = 0; i < CG_WATCH_FDS; i++)
            pfd[FD_CG + i] =
                (struct pollfd){.fd = cw.kmsg[i] && kmsg_back ? -1 : cw.fd[i], .events = POLLIN};
        int64_t wake_at = soonest(soonest(deadline, next_ask), next_look);
        if (kmsg_back)
            wake_at = soonest(wake_at, kmsg_back);
        /* without a timerfd, poll's own timeout (never here in practice) */
        int timeout = -1;
        if (tfd >= 0 && wake_at != armed_at)
            arm(tfd, wake_at);
        if (tfd >= 0)
            armed_at = wake_at;
        else if (wake_at != INT64_MAX)
            timeout = (int)(wake_at - now > 0 ? soonest(wake_at - now, INT_MAX) : 0);
        if (poll(pfd, N_FD, timeout) <= 0)
            continue;
        now = stk_clock_ms(CLOCK_MONOTONIC);
        if (pfd[FD_TIMER].revents) {
            uint64_t ticks;
            (void)!read(tfd, &ticks, sizeof(ticks));
        }
        bool reported = false;
        if (pfd[FD_ELOG].revents && elog) {
            report_egress(m, elog, false);
            reported = true;
        }
        if (pfd[FD_PROXY].revents) {
            local_proxy_events_read(c->proxy, on_proxy_record, m);
            reported = true;
        }
        /* what it reported may want a summary later: ask, at most every
         * ASK_EVERY_MS */
        if (reported)
            next_ask = soonest(next_ask, last_ask + ASK_EVERY_MS);
        if (pfd[FD_ASK].revents)
            ask = true;
        for (int i = 0; i < CG_WATCH_FDS; i++) {
            bool due = cw.kmsg[i] && kmsg_back && now >= kmsg_back, any = false;
            if (!pfd[FD_CG + i].revents && !due)
                continue;
            if (cg_watch_consume(&cw, i, &any)) {
                look = true;
                burst_until = now + CG_BURST_MS;
            }
            /* quiet: polled again; not: read again after a pause */
            if (cw.kmsg[i])
                kmsg_back = any ? now + STK_DRV_IDLE_POLL_MS : 0;
        }
        if (pfd[FD_CHLD].revents) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof(si)) > 0)
                ;
            /* children the runtime left us (we are their subreaper) */
            while (waitpid(-1, NULL, WNOHANG) > 0)
                ;
        }
        if (pfd[FD_DONE].revents || pfd[FD_PID].revents)
            break;
    }
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
    if (sfd >= 0)
        close(sfd);
    if (tfd >= 0)
        close(tfd);
    cg_watch_close(&cw);
    /* the kernel killed for memory, or refused a fork (which ends the
     * sandbox: gVisor's own kernel ends it first when it cannot get a host
     * thread), and the sandbox ended before the look that would have */
    cg->sample(id, &m->cs);
    if (m->kill == STK_KILL_NONE && m->cs.oom_kills > 0 && observable(m->rt, STK_KILL_MEMORY))
        m->kill = STK_KILL_MEMORY;
    if (m->kill == STK_KILL_NONE && m->cs.pids_max > 0 && observable(m->rt, STK_KILL_PIDS))
        m->kill = STK_KILL_PIDS;
    if (elog) {
        report_egress(m, elog, true);
        stk_egress_log_close(elog);
    }
    local_proxy_stop(c->proxy, on_proxy_record, m);
    c->proxy = NULL;
}

int local_supervise(void *ctx, const struct stk_driver_sandbox *sb,
                    const struct stk_driver_sink *sink, struct stk_driver_status *ret,
                    struct stk_error **err)
{
    struct local_ctx *c = ctx;
    *ret = (struct stk_driver_status){.state = STK_DRV_LOST, .exit_code = -1};
    if (!sb->b)
        return stk_error_make(err, EINVAL, "sandbox %s: no boundary to supervise", sb->id);
    struct sup m = {.sb = sb, .sink = sink, .done_fd = -1, .attach_r = -ESRCH};
    pid_t pid = 0;
    (void)local_handle_parse(sb, &m.rt, &pid);
    m.pidfd = local_init_pidfd(pid, sb->id, m.rt);
    bool started = false, masked = false;
    sigset_t was;
    if (m.pidfd >= 0 && stk_local_socket_path(&c->p, sb->id, m.sock, sizeof(m.sock), NULL) >= 0) {
        m.done_fd = eventfd(0, EFD_CLOEXEC);
        m.attach_r = 0;
        /* SIGCHLD comes through watch's signalfd: blocked in both threads
         * (the thread inherits the mask) while it runs */
        sigset_t chld;
        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        pthread_sigmask(SIG_BLOCK, &chld, &was);
        started = m.done_fd >= 0 && pthread_create(&m.thread, NULL, attach_thread, &m) == 0;
        if (started)
            watch(&m, c);
        else
            m.attach_r = -EIO;
        masked = true;
    }
    if (started)
        /* init's end closes the attach connection */
        pthread_join(m.thread, NULL);
    if (masked)
        pthread_sigmask(SIG_SETMASK, &was, NULL);
    if (m.done_fd >= 0)
        close(m.done_fd);
    if (m.pidfd >= 0)
        close(m.pidfd);
    json_t *u = json_object();
    json_object_set_new(u, "cpuSeconds", json_real((double)m.cs.cpu_usec / 1e6));
    json_object_set_new(u, "peakMemoryBytes",
                        m.cs.mem_peak >= 0 ? json_integer(m.cs.mem_peak) : json_null());
    ret->usage = json_dumps(u, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(u);
    ret->kill = m.kill;
    if (m.attach_r >= 0) {
        ret->state = STK_DRV_ENDED;
        ret->exit_code = m.exit_code;
        ret->signal = m.signal;
    } else if (m.kill != STK_KILL_NONE) {
        ret->state = STK_DRV_ENDED;
    } else {
        fmt_into(ret->message, sizeof(ret->message),
                 "stockade-init ended without reporting the workload's status");
    }
    return 0;
}
