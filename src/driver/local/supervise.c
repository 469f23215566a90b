/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Supervising a long-lived local sandbox (the monitor process hosts this):
 *  - a thread attached to stockade-init copies the workload's output to the
 *    sink and learns its exit status;
 *  - the main loop reads the cgroup counters (kill reasons come from the
 *    kernel's own counters, never from an exit status), the deadline, the
 *    denied-egress log (each denial an event) and init's pidfd, and asks the
 *    sink what the session wants (a claim starts the deadline; an overdue
 *    stop or rm is a SIGKILL): every 50 ms and 200 ms while the sandbox
 *    uses more than a tenth of one CPU, less and less often while it does
 *    not, down to once per STK_DRV_IDLE_POLL_MS (an idle sandbox costs the
 *    host no CPU), never so seldom that the CPU-time budget could pass
 *    unseen by more than one sample.
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
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define SAMPLE_MS        50
#define BUSY_USEC_PER_MS 100 /* of CPU per ms of wall clock: a tenth of one CPU */
#define ASK_EVERY_MS     200
#define INIT_WAIT_MS     10000

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
    m->cs = (struct cg_sample){.mem_peak = -1, .pids_peak = -1};
    int64_t deadline = INT64_MAX, next_ask = 0, interval = SAMPLE_MS, cpu_seen = -1, seen_at = 0;
    /* the most CPU it can use per ms of wall clock, in thousandths: every
     * CPU of the host, whatever its limit says (a bound, not a guess) */
    int64_t cpu_rate = 1000 * sysconf(_SC_NPROCESSORS_ONLN);
    bool member = m->sb->pool_member;
    if (!member && l->wall_clock_ms > 0)
        deadline = stk_clock_ms(CLOCK_MONOTONIC) + l->wall_clock_ms;

    for (;;) {
        cg->sample(id, &m->cs);
        if (m->cs.oom_kills > 0 && observable(m->rt, STK_KILL_MEMORY))
            kill_sandbox(m, STK_KILL_MEMORY);
        if (m->cs.pids_max > 0 && observable(m->rt, STK_KILL_PIDS))
            kill_sandbox(m, STK_KILL_PIDS);
        if (l->cpu_time_ms > 0 && m->cs.cpu_usec / 1000 >= l->cpu_time_ms)
            kill_sandbox(m, STK_KILL_CPU);
        int64_t now = stk_clock_ms(CLOCK_MONOTONIC);
        if (now >= deadline)
            kill_sandbox(m, STK_KILL_WALL_CLOCK);
        /* busy while it uses CPU: sample often; idle: less and less. Idle
         * is under a tenth of one CPU since the last look, not none: an
         * idle gVisor sandbox's own kernel keeps about 4% going */
        if (cpu_seen < 0 || (m->cs.cpu_usec - cpu_seen) > (now - seen_at) * BUSY_USEC_PER_MS)
            interval = SAMPLE_MS;
        else if (interval < STK_DRV_IDLE_POLL_MS)
            interval = interval * 2 < STK_DRV_IDLE_POLL_MS ? interval * 2 : STK_DRV_IDLE_POLL_MS;
        cpu_seen = m->cs.cpu_usec;
        seen_at = now;
        if (now >= next_ask && m->sink->poll) {
            int64_t ago = 0;
            switch (m->sink->poll(m->sink->ud, &ago)) {
            case STK_DRV_ASK_CLAIMED:
                /* a claimed member's deadline starts with its claim */
                if (member && l->wall_clock_ms > 0)
                    deadline = now - ago + l->wall_clock_ms;
                interval = SAMPLE_MS;
                member = false;
                break;
            case STK_DRV_ASK_KILL:
                /* not a kill reason: it was asked to end and did not */
                (void)syscall(SYS_pidfd_send_signal, m->pidfd, SIGKILL, NULL, 0);
                break;
            case STK_DRV_ASK_NONE:
                break;
            }
            next_ask = now + (interval > ASK_EVERY_MS ? interval : ASK_EVERY_MS);
        }
        struct pollfd pfd[4] = {
            {.fd = m->done_fd, .events = POLLIN},
            {.fd = m->pidfd, .events = POLLIN},
            {.fd = elog ? stk_egress_log_fd(elog) : -1, .events = POLLIN},
            {.fd = local_proxy_event_fd(c->proxy), .events = POLLIN},
        };
        int64_t wait = interval;
        if (l->cpu_time_ms > 0 && cpu_rate > 0) {
            /* the soonest the budget can be spent */
            int64_t left = (l->cpu_time_ms - m->cs.cpu_usec / 1000) * 1000 / cpu_rate;
            if (left < wait)
                wait = left > SAMPLE_MS ? left : SAMPLE_MS;
        }
        if (deadline != INT64_MAX && deadline - now < wait)
            wait = deadline - now > 0 ? deadline - now : 0;
        if (poll(pfd, 4, (int)wait) > 0) {
            interval = SAMPLE_MS;
            if (pfd[2].revents && elog)
                report_egress(m, elog, false);
            if (pfd[3].revents)
                local_proxy_events_read(c->proxy, on_proxy_record, m);
            if (pfd[0].revents || pfd[1].revents)
                break;
        }
        /* children the runtime left us (we are their subreaper) */
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
    }
    cg->sample(id, &m->cs);
    if (m->kill == STK_KILL_NONE && m->cs.oom_kills > 0 && observable(m->rt, STK_KILL_MEMORY))
        m->kill = STK_KILL_MEMORY;
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
    bool started = false;
    if (m.pidfd >= 0 && stk_local_socket_path(&c->p, sb->id, m.sock, sizeof(m.sock), NULL) >= 0) {
        m.done_fd = eventfd(0, EFD_CLOEXEC);
        m.attach_r = 0;
        started = m.done_fd >= 0 && pthread_create(&m.thread, NULL, attach_thread, &m) == 0;
        if (started)
            watch(&m, c);
        else
            m.attach_r = -EIO;
    }
    if (started)
        /* init's end closes the attach connection */
        pthread_join(m.thread, NULL);
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
