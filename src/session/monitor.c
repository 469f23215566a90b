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
#include <sys/resource.h>
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
    int pidfd; /* init's: signals go through it, never to a pid that may be reused */
    /* denied egress: the first STK_EGRESS_AUDIT_BUDGET events are records of
     * their own, then one counted summary per minute (the sandbox must not
     * be able to fill the disk with its own denials) */
    size_t egress_recorded, egress_unrecorded;
    int64_t egress_next_summary;
};

#define STK_EGRESS_AUDIT_BUDGET 1000
#define EGRESS_SUMMARY_MS       60000
/* How long past the stop grace period init may take before the monitor
 * kills it: stop and rm do not depend on init cooperating. */
#define STOP_OVERDUE_MS (STK_STOP_GRACE_MS + 5000)
/* How long a claimed member may stay without its workload before the
 * monitor starts it (the claimer died between its claim and the start). */
#define CLAIM_START_MS 5000

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
    /* our child (we are the subreaper the runtime left it to): its pid
     * cannot be reused before we reap it, so this pidfd is exact */
    m->pidfd = (int)syscall(SYS_pidfd_open, m->init_pid, 0);
    if ((r = stk_path_make(m->sock, sizeof(m->sock), err, "%s", inst.socket)) < 0)
        return r;
    if ((r = stk_store_sb_set_pids(m->s->st, m->id, getpid(), inst.init_pid, err)) < 0 ||
        (r = start_workload(m, err)) < 0)
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
    /* PID 1 of the sandbox's PID namespace: everything dies with it. The
     * pidfd names exactly that process, even once its pid is reused. */
    if (m->pidfd >= 0)
        (void)syscall(SYS_pidfd_send_signal, m->pidfd, SIGKILL, NULL, 0);
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
            if (m->egress_recorded >= STK_EGRESS_AUDIT_BUDGET) {
                m->egress_unrecorded++;
                continue;
            }
            m->egress_recorded++;
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

/* Past the budget: how many denials went unrecorded since the last summary. */
static void audit_egress_summary(struct monitor *m, int64_t now, bool final)
{
    if (!m->egress_unrecorded || (!final && now < m->egress_next_summary))
        return;
    char d[160];
    snprintf(d, sizeof(d), "{\"suppressed\":%zu,\"budget\":%d}", m->egress_unrecorded,
             STK_EGRESS_AUDIT_BUDGET);
    (void)stk_audit_append(m->s->st, m->id, "egress_denied_summary", "stockade-monitor", d, NULL);
    m->egress_unrecorded = 0;
    m->egress_next_summary = now + EGRESS_SUMMARY_MS;
}

/* What the store says since the last look: a claim (the deadline starts,
 * and the workload must start), a stop or rm that init is not honouring. */
struct watch {
    bool member;
    int64_t claimed_at, asked_at;
    int64_t deadline;
};

static void watch_store(struct monitor *m, struct watch *w, int64_t now)
{
    const struct stk_resolved_limits *l = &m->sb.b->limits;
    struct stk_sb_rec r = {0};
    if (stk_store_sb_get(m->s->st, m->id, &r, NULL) < 0)
        return;
    if (w->member && !r.pool_member) {
        w->member = false;
        w->claimed_at = now;
        if (l->wall_clock_ms > 0)
            w->deadline = now + l->wall_clock_ms;
    }
    if (w->claimed_at && now - w->claimed_at >= CLAIM_START_MS) {
        /* the claimer should have started the command by now; if init is
         * still idle, the claimer died: start it from the claimed record */
        struct stk_init_conn *c = NULL;
        struct stk_init_info info;
        struct stk_session_boundary sb = {0};
        if (session_init_connect(m->s, m->id, 1000, &c, NULL) >= 0 &&
            stk_init_hello(c, &info, NULL) >= 0 && info.state == STK_INIT_IDLE &&
            session_rec_boundary(&r, &sb, NULL) >= 0) {
            struct stk_init_proc proc = {.argv = sb.b->argv, .argc = sb.b->argc};
            if (stk_init_start(c, &proc, NULL) >= 0) {
                _cleanup_free_ char *dj = session_argv_json(
                    sb.b->argv, sb.b->argc, "why", json_string("the claimer did not start it"));
                (void)stk_audit_append(m->s->st, m->id, "started", "stockade-monitor", dj, NULL);
            }
        }
        stk_session_boundary_release(&sb);
        stk_init_close(c);
        w->claimed_at = 0;
    }
    bool asked = r.phase == STK_SB_STOPPING || r.phase == STK_SB_DELETING;
    if (asked && !w->asked_at)
        w->asked_at = now;
    if (asked && now - w->asked_at >= STOP_OVERDUE_MS && m->pidfd >= 0)
        /* not a kill reason: the sandbox was asked to end and did not */
        (void)syscall(SYS_pidfd_send_signal, m->pidfd, SIGKILL, NULL, 0);
    stk_sb_rec_free(&r);
}

static void supervise(struct monitor *m)
{
    const struct stk_resolved_limits *l = &m->sb.b->limits;
    const struct cg_ops *cg = cg_detect();
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
    struct watch w = {.member = m->rec.pool_member, .deadline = INT64_MAX};
    int64_t next_db = 0;
    if (!w.member && l->wall_clock_ms > 0)
        w.deadline = stk_clock_ms(CLOCK_MONOTONIC) + l->wall_clock_ms;

    for (;;) {
        cg->sample(m->id, &m->cs);
        if (m->cs.oom_kills > 0 && observable(m->rt, STK_KILL_MEMORY))
            kill_sandbox(m, STK_KILL_MEMORY);
        if (m->cs.pids_max > 0 && observable(m->rt, STK_KILL_PIDS))
            kill_sandbox(m, STK_KILL_PIDS);
        if (l->cpu_time_ms > 0 && m->cs.cpu_usec / 1000 >= l->cpu_time_ms)
            kill_sandbox(m, STK_KILL_CPU);
        int64_t now = stk_clock_ms(CLOCK_MONOTONIC);
        if (now >= w.deadline)
            kill_sandbox(m, STK_KILL_WALL_CLOCK);
        if (now >= next_db) {
            watch_store(m, &w, now);
            audit_egress_summary(m, now, false);
            next_db = now + 200;
        }
        int64_t deadline = w.deadline;
        struct pollfd pfd[3] = {
            {.fd = m->done_fd, .events = POLLIN},
            {.fd = m->pidfd, .events = POLLIN},
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
    audit_egress_summary(m, stk_clock_ms(CLOCK_MONOTONIC), true);
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
static enum stk_sb_phase outcome(const struct monitor *m, enum stk_sb_phase now, bool have_status,
                                 const char **event, const char **reason, char *msg, size_t n)
{
    *reason = "";
    if (now == STK_SB_STOPPING) {
        *event = "stopped";
        return STK_SB_STOPPED;
    }
    if (now == STK_SB_DELETING) {
        *event = "deleted";
        return STK_SB_DELETED;
    }
    if (m->kill != STK_KILL_NONE) {
        *event = "killed";
        *reason = stk_kill_reason_names[m->kill];
        return STK_SB_KILLED;
    }
    if (!have_status) {
        *event = "failed";
        *reason = "lost";
        fmt_into(msg, n, "stockade-init ended without reporting the workload's status");
        return STK_SB_FAILED;
    }
    *event = "exited";
    return m->exit_code == 0 ? STK_SB_SUCCEEDED : STK_SB_FAILED;
}

static void conclude(struct monitor *m)
{
    if (m->thread_started) {
        /* init's end closes the attach connection */
        pthread_join(m->thread, NULL);
        m->thread_started = false;
    }
    bool have_status = m->attach_r >= 0;
    log_writer_close(&m->logs);
    /* act: release what the sandbox holds (its directory and logs stay
     * until the final phase is recorded, even for a delete) */
    struct stk_error *terr = NULL;
    int tr = stk_local_teardown(&m->s->p, m->id, m->rt, &m->net, false, &terr);
    _cleanup_free_ char *result = result_json(m, have_status);
    (void)stk_store_sb_set_result(m->s->st, m->id, have_status ? m->exit_code : -1, result, NULL);

    /* record: the phase that is now true; a stop or rm may land meanwhile
     * (the compare-and-set then fails and the new phase decides) */
    enum stk_sb_phase to = STK_SB_FAILED;
    for (int attempt = 0; attempt < 3; attempt++) {
        struct stk_sb_rec now = {0};
        if (stk_store_sb_get(m->s->st, m->id, &now, NULL) < 0)
            break;
        const char *event, *reason;
        char msg[512] = "";
        to = outcome(m, now.phase, have_status, &event, &reason, msg, sizeof(msg));
        if (tr < 0) {
            size_t len = strlen(msg);
            fmt_into(msg + len, sizeof(msg) - len, "%sleft on the host: %s (`stockade gc` retries)",
                     len ? "; " : "", terr ? terr->msg : "?");
        }
        int r = stk_store_sb_set_phase(m->s->st, m->id, (int)now.phase, to, reason, msg,
                                       "stockade-monitor", event, result, NULL);
        stk_sb_rec_free(&now);
        if (r != -ESTALE)
            break;
    }
    if (to == STK_SB_DELETED) {
        char dir[PATH_MAX];
        if (session_dir(m->s, m->id, dir, sizeof(dir)) >= 0)
            (void)rm_rf(dir);
    }
    stk_error_free(terr);
}

/* ---- the monitor process ------------------------------------------------------------ */

/* A pidfd for the sandbox's stockade-init after a crash: the pid from the
 * record is trusted only when, once the pidfd pins the process, it still
 * runs stockade-init inside this sandbox's own cgroup. */
static int adopt_pidfd(pid_t pid, const char *id)
{
    if (pid <= 1)
        return -ESRCH;
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0)
        return -errno;
    char path[64], exe[256], cg[4096];
    snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
    ssize_t n = readlink(path, exe, sizeof(exe) - 1);
    snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
    ssize_t k = file_read(path, cg, sizeof(cg));
    char want[96];
    snprintf(want, sizeof(want), "/" CG_PARENT "/%s\n", id);
    if (n > 0)
        exe[n] = '\0';
    if (n <= 0 || k <= 0 || !strstr(exe, STK_OCI_INIT_PATH) || !strstr(cg, want)) {
        close(fd);
        return -ESRCH;
    }
    return fd;
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
    if (r >= 0 && session_dir(m->s, m->id, dir, sizeof(dir)) < 0)
        r = stk_error_make(&err, ENAMETOOLONG, "the directory of sandbox %s", m->id);
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
        m->pidfd = adopt_pidfd(m->init_pid, m->id);
        if (stk_local_socket_path(&m->s->p, m->id, m->sock, sizeof(m->sock), &err) < 0 ||
            m->pidfd < 0)
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
        (void)stk_store_sb_set_pids(m->s->st, m->id, getpid(), m->init_pid, NULL);
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
    /* a pool refill starts monitors at low priority; supervising is not
     * background work */
    (void)setpriority(PRIO_PROCESS, 0, 0);
    (void)prctl(PR_SET_CHILD_SUBREAPER, 1);
    signal(SIGPIPE, SIG_IGN);
    /* stop and rm end sandboxes through init, never by signalling us */
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    struct stk_session s = {.p = *p};
    struct stk_error *err = NULL;
    if (stk_path_make(s.state_dir, sizeof(s.state_dir), &err, "%s", p->state_dir) < 0 ||
        stk_path_make(s.run_dir, sizeof(s.run_dir), &err, "%s", p->run_dir) < 0)
        i = -1;
    s.p.state_dir = s.state_dir;
    s.p.run_dir = s.run_dir;
    fmt_into(s.actor, sizeof(s.actor), "stockade-monitor");
    if (i < 0 || stk_store_open(s.p.state_dir, &s.st, &err) < 0) {
        char buf[600];
        int n = snprintf(buf, sizeof(buf), "error %s\n", err ? err->msg : "bad monitor mode");
        (void)!write(report_fd, buf, (size_t)n);
        stk_error_free(err);
        return 1;
    }
    /* neither may reach the runtimes and ip(8) this process starts: the
     * lock would outlive us in them, the report pipe would hold create */
    (void)fcntl(lock_fd, F_SETFD, FD_CLOEXEC);
    (void)fcntl(report_fd, F_SETFD, FD_CLOEXEC);
    struct monitor m = {
        .s = &s, .lock_fd = lock_fd, .report_fd = report_fd, .done_fd = -1, .pidfd = -1};
    /* the id names the sandbox's directory: whole, or no monitor */
    if (stk_path_fmt(m.id, sizeof(m.id), "%s", id) < 0) {
        static const char msg[] = "error sandbox id too long\n";
        (void)!write(report_fd, msg, sizeof(msg) - 1);
        stk_store_close(s.st);
        return 1;
    }
    int r = monitor_main(&m, (enum monitor_mode)i);
    stk_store_close(s.st);
    return r;
}

/* environ with the state and run directories set, built before the fork:
 * between fork and exec only async-signal-safe calls (the caller may be
 * the multi-threaded gateway). */
static char **child_environ(const struct stk_local_paths *p)
{
    extern char **environ;
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = stk_xcalloc(n + 3, sizeof(*env));
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!stk_startswith(environ[i], "STOCKADE_STATE_DIR=") &&
            !stk_startswith(environ[i], "STOCKADE_RUN_DIR="))
            env[k++] = environ[i];
    env[k++] = stk_xasprintf("STOCKADE_STATE_DIR=%s", p->state_dir);
    env[k++] = stk_xasprintf("STOCKADE_RUN_DIR=%s", p->run_dir);
    return env;
}

static void child_environ_free(char **env)
{
    size_t n = 0;
    while (env[n])
        n++;
    /* the last two are ours */
    free(env[n - 1]);
    free(env[n - 2]);
    free(env);
}

/* In the grandchild: a new session, stdio on /dev/null, keep[0..n) moved to
 * fds 3.., every other descriptor closed, then `stockade ARGV`. */
static _Noreturn void exec_self(int *keep, int n_keep, const char *const *argv, char **envp)
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
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    union {
        const char *const *c;
        char *const *m;
    } av = {.c = argv};
    execve("/proc/self/exe", av.m, envp);
    _exit(127);
}

int session_spawn_self(const struct stk_local_paths *p, int *keep, int n_keep,
                       const char *const *argv)
{
    char **envp = child_environ(p);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        /* double fork: the new process is nobody's child but init's (or
         * the nearest subreaper's), and the caller has no zombie to reap */
        if (fork() != 0)
            _exit(0);
        exec_self(keep, n_keep, argv, envp);
    }
    int r = pid < 0 ? -errno : 0;
    while (pid > 0 && waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    child_environ_free(envp);
    return r;
}

int monitor_spawn(struct stk_session *s, const char *id, enum monitor_mode mode, int lock_fd,
                  struct stk_error **err)
{
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) < 0)
        return stk_error_errno(err, errno, "pipe");
    int keep[2] = {lock_fd, pfd[1]};
    const char *argv[] = {"stockade", STK_SESSION_MONITOR_VERB, mode_names[mode], id, NULL};
    int r = session_spawn_self(&s->p, keep, 2, argv);
    close(pfd[1]);
    /* the lock now belongs to the monitor (same open file) */
    close(lock_fd);
    if (r < 0) {
        close(pfd[0]);
        return stk_error_errno(err, -r, "starting the monitor");
    }
    char buf[1024];
    size_t got = 0;
    struct pollfd p = {.fd = pfd[0], .events = POLLIN};
    for (int64_t deadline = stk_clock_ms(CLOCK_MONOTONIC) + REPORT_WAIT_MS;
         got < sizeof(buf) - 1;) {
        int64_t left = deadline - stk_clock_ms(CLOCK_MONOTONIC);
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
