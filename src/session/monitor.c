/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The monitor: one detached process per live sandbox of a backend whose
 * driver supervises (conmon's role). It provisions the sandbox through the
 * driver (or adopts one a dead monitor left), holds the lock of the
 * sandbox's directory for as long as the sandbox holds anything, and runs
 * the driver's supervise with a sink:
 *  - output: the workload's output, into the bounded logs;
 *  - event: an audit record each (egress denials within a budget, then a
 *    counted summary per minute: a sandbox must not fill the disk with its
 *    own denials);
 *  - poll: what the store says (a claim starts the deadline and, when the
 *    claimer died before starting it, the workload; a stop or rm that is
 *    overdue becomes a kill).
 * When supervise returns, it removes what the sandbox held (teardown) and
 * records the final phase from the status, in that order, so the phase
 * never claims a state the backend is not in. Adoption is the same
 * supervise with the handle of a running sandbox.
 */
#include "session/private.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define REPORT_WAIT_MS 120000
#define MONITOR_ACTOR  "stockade-monitor"

#define STK_EGRESS_AUDIT_BUDGET 1000
#define EGRESS_SUMMARY_MS       60000
/* How long past the stop grace period the workload may take before the
 * monitor has it killed: stop and rm do not depend on it cooperating. */
#define STOP_OVERDUE_MS (STK_STOP_GRACE_MS + 5000)
/* How long a claimed member may stay without its workload before the
 * monitor starts it (the claimer died between its claim and the start). */
#define CLAIM_START_MS 5000

struct monitor {
    struct stk_session *s;
    char id[64];
    struct session_sb sb;
    int lock_fd, report_fd;
    /* inotify on the sandbox's wake file (session_nudge): the sink's wake_fd */
    int wake_fd;
    struct log_writer logs;
    /* the store as poll last saw it */
    bool member;
    int64_t claimed_at, asked_at, next_summary, polled_at;
    /* denied egress: the first STK_EGRESS_AUDIT_BUDGET events are records of
     * their own, then one counted summary per minute */
    size_t egress_recorded, egress_unrecorded;
};

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

/* ---- the sink --------------------------------------------------------------------- */

/* Called from the driver's attach thread: touches the logs only. */
static int on_output(void *ud, int stream, const void *data, size_t n)
{
    struct monitor *m = ud;
    (void)log_writer_put(&m->logs, stream, data, n);
    return 0;
}

static void on_event(void *ud, const char *type, const char *details_json)
{
    struct monitor *m = ud;
    if (!strcmp(type, "egress_denied")) {
        if (m->egress_recorded >= STK_EGRESS_AUDIT_BUDGET) {
            m->egress_unrecorded++;
            return;
        }
        m->egress_recorded++;
    }
    json_t *d = json_loads(details_json, 0, NULL);
    if (json_is_object(d))
        (void)session_audit(m->s, m->id, type, MONITOR_ACTOR, d, NULL);
    else
        json_decref(d);
}

/* Past the budget: how many denials went unrecorded since the last summary. */
static void egress_summary(struct monitor *m, int64_t now, bool final)
{
    if (!m->egress_unrecorded || (!final && now < m->next_summary))
        return;
    (void)session_audit(m->s, m->id, "egress_denied_summary", MONITOR_ACTOR,
                        json_pack("{s:I,s:i}", "suppressed", (json_int_t)m->egress_unrecorded,
                                  "budget", STK_EGRESS_AUDIT_BUDGET),
                        NULL);
    m->egress_unrecorded = 0;
    m->next_summary = now + EGRESS_SUMMARY_MS;
}

/* The claimer should have started the command by now; if it did not (it
 * died), start it from the claimed record. */
static void start_claimed(struct monitor *m)
{
    struct session_sb sb;
    if (session_sb_load(m->s, m->id, true, &sb, NULL) < 0)
        return;
    _cleanup_free_ char *handle = NULL;
    if (m->s->drv->ops->start(m->s->drv->ctx, &sb.d, &handle, NULL) >= 0) {
        if (handle)
            (void)stk_store_sb_set_handle(m->s->st, m->id, handle, NULL);
        (void)session_audit(
            m->s, m->id, "started", MONITOR_ACTOR,
            session_argv_details(sb.bd.b, "why", json_string("the claimer did not start it")),
            NULL);
    }
    session_sb_release(&sb);
}

/* When the monitor next wants to be asked, whatever the store says: the
 * start of a claimed member whose claimer died, an overdue stop, the next
 * summary of unrecorded denials. */
static int64_t next_poll(const struct monitor *m, int64_t now, bool killed)
{
    int64_t next = INT64_MAX;
    if (m->claimed_at)
        next = m->claimed_at + CLAIM_START_MS;
    if (m->asked_at) {
        int64_t at = killed ? now + STOP_OVERDUE_MS : m->asked_at + STOP_OVERDUE_MS;
        next = at < next ? at : next;
    }
    if (m->egress_unrecorded && m->next_summary < next)
        next = m->next_summary;
    return next;
}

static enum stk_driver_ask on_poll(void *ud, int64_t *ago_ms, int64_t *next_ms)
{
    struct monitor *m = ud;
    enum stk_driver_ask ask = STK_DRV_ASK_NONE;
    int64_t now = stk_clock_ms(CLOCK_MONOTONIC), since = now - m->polled_at;
    m->polled_at = now;
    /* what woke us: consumed before the store is read, so a write after
     * the read wakes us again */
    if (m->wake_fd >= 0) {
        char buf[4096];
        while (read(m->wake_fd, buf, sizeof(buf)) > 0)
            ;
    }
    egress_summary(m, now, false);
    struct stk_sb_rec r = {0};
    if (stk_store_sb_get(m->s->st, m->id, &r, NULL) < 0) {
        if (next_ms)
            *next_ms = now + STK_DRV_IDLE_POLL_MS; /* the store did not answer: again */
        return ask;
    }
    if (m->member && !r.pool_member) {
        /* the claimer wakes us (session_nudge); the claim was when the
         * record last changed, at most since the last look (the deadline
         * starts then) */
        int64_t ago = stk_clock_ms(CLOCK_REALTIME) - r.updated_ms;
        ago = ago < 0 ? 0 : ago > since ? since : ago;
        m->member = false;
        m->claimed_at = now - ago;
        *ago_ms = ago;
        ask = STK_DRV_ASK_CLAIMED;
        /* no longer the refill's background work */
        stk_set_nice(0);
    }
    if (m->claimed_at && now - m->claimed_at >= CLAIM_START_MS) {
        start_claimed(m);
        m->claimed_at = 0;
    }
    bool asked = r.phase == STK_SB_STOPPING || r.phase == STK_SB_DELETING;
    if (asked && !m->asked_at)
        m->asked_at = now;
    if (asked && now - m->asked_at >= STOP_OVERDUE_MS)
        ask = STK_DRV_ASK_KILL;
    stk_sb_rec_free(&r);
    if (next_ms)
        *next_ms = next_poll(m, now, ask == STK_DRV_ASK_KILL);
    /* between looks an idle monitor keeps no cache: the database's pages and
     * what malloc holds free go back */
    stk_store_release_memory(m->s->st);
    (void)malloc_trim(0);
    return ask;
}

/* ---- being woken ------------------------------------------------------------------ */

#define WAKE_FILE "wake"

static int wake_path(const struct stk_session *s, const char *id, char *buf, size_t n)
{
    char dir[PATH_MAX];
    if (session_dir(s, id, dir, sizeof(dir)) < 0)
        return -ENAMETOOLONG;
    return stk_path_fmt(buf, n, "%s/" WAKE_FILE, dir);
}

int session_wake_watch(const struct stk_session *s, const char *id)
{
    char path[PATH_MAX];
    if (wake_path(s, id, path, sizeof(path)) < 0)
        return -1;
    int f = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
    if (f < 0)
        return -1;
    close(f);
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd >= 0 && inotify_add_watch(fd, path, IN_CLOSE_WRITE) < 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

void session_nudge(const struct stk_session *s, const char *id)
{
    char path[PATH_MAX];
    if (wake_path(s, id, path, sizeof(path)) < 0)
        return;
    int f = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (f >= 0)
        close(f);
}

/* ---- concluding ---------------------------------------------------------------------- */

/* The workload ended, was killed, or a stop or rm ended it: release what
 * the sandbox holds, then record the phase that is now true. */
static void conclude(struct monitor *m, const struct stk_driver_status *st)
{
    struct stk_session *s = m->s;
    log_writer_close(&m->logs);
    /* act: release what the sandbox holds (its directory and logs stay
     * until the final phase is recorded, even for a delete) */
    struct stk_error *terr = NULL;
    struct stk_sb_rec was = {0};
    bool purge = stk_store_sb_get(s->st, m->id, &was, NULL) >= 0 && was.phase == STK_SB_DELETING;
    stk_sb_rec_free(&was);
    int tr = s->drv->ops->teardown(s->drv->ctx, &m->sb.d, purge, &terr);
    _cleanup_free_ char *result = session_result(s, m->sb.rec.runtime, st);
    bool have_status = st->state == STK_DRV_ENDED && st->exit_code >= 0;
    (void)stk_store_sb_set_result(s->st, m->id, have_status ? st->exit_code : -1, result, NULL);

    /* record: the phase that is now true; a stop or rm may land meanwhile
     * (the compare-and-set then fails and the new phase decides) */
    enum stk_sb_phase to = STK_SB_FAILED;
    for (int attempt = 0; attempt < 3; attempt++) {
        struct stk_sb_rec now = {0};
        if (stk_store_sb_get(s->st, m->id, &now, NULL) < 0)
            break;
        const char *event, *reason;
        char msg[512];
        to = session_outcome(now.phase, st, &event, &reason);
        fmt_into(msg, sizeof(msg), "%s",
                 to == STK_SB_FAILED && !strcmp(reason, "lost") ? st->message : "");
        if (tr < 0) {
            size_t len = strlen(msg);
            fmt_into(msg + len, sizeof(msg) - len, "%sleft on the host: %s (`stockade gc` retries)",
                     len ? "; " : "", terr ? terr->msg : "?");
        }
        int r = session_set_phase(s, m->id, (int)now.phase, to, reason, msg, MONITOR_ACTOR, event,
                                  json_loads(result, 0, NULL), NULL);
        stk_sb_rec_free(&now);
        if (r != -ESTALE)
            break;
    }
    if (to == STK_SB_DELETED) {
        /* an rm that landed after the teardown: what persists goes too */
        if (!purge)
            (void)s->drv->ops->teardown(s->drv->ctx, &m->sb.d, true, NULL);
        char dir[PATH_MAX];
        if (session_dir(s, m->id, dir, sizeof(dir)) >= 0)
            (void)rm_rf(dir);
    }
    stk_error_free(terr);
}

/* ---- the monitor process ------------------------------------------------------------ */

static int monitor_main(struct monitor *m, enum monitor_mode mode)
{
    struct stk_session *s = m->s;
    const struct stk_driver_ops *ops = s->drv->ops;
    struct stk_error *err = NULL;
    int r = session_sb_load(s, m->id, true, &m->sb, &err);
    char dir[PATH_MAX];
    if (r >= 0 && session_dir(s, m->id, dir, sizeof(dir)) < 0)
        r = stk_error_make(&err, ENAMETOOLONG, "the directory of sandbox %s", m->id);
    if (r >= 0)
        r = log_writer_open(&m->logs, dir, &err);
    m->sb.d.lock_fd = m->lock_fd;
    m->sb.d.idle = mode == MONITOR_CREATE_IDLE;
    m->sb.d.accepted_only = mode == MONITOR_CREATE_ACCEPTED;
    m->member = m->sb.rec.pool_member;
    /* an unclaimed member stays at the priority of the refill that started
     * it (the runtime and init it starts inherit it); anything else is not
     * background work */
    if (!m->member)
        stk_set_nice(0);

    bool creating =
        mode == MONITOR_CREATE || mode == MONITOR_CREATE_IDLE || mode == MONITOR_CREATE_ACCEPTED;
    enum stk_sb_phase from = creating ? STK_SB_PROVISIONING : STK_SB_STARTING;
    if (r >= 0 && creating)
        r = session_set_phase(s, m->id, STK_SB_PENDING, STK_SB_PROVISIONING, NULL, NULL,
                              MONITOR_ACTOR, NULL, NULL, &err);
    _cleanup_free_ char *handle = NULL;
    if (r >= 0 && mode != MONITOR_ADOPT) {
        r = ops->provision(s->drv->ctx, &m->sb.d, mode == MONITOR_START, &handle, &err);
        if (r >= 0) {
            m->sb.d.handle = handle;
            r = stk_store_sb_set_handle(s->st, m->id, handle, &err);
        }
        if (r >= 0)
            r = stk_store_sb_set_pids(s->st, m->id, getpid(), 0, &err);
        bool workload = !m->sb.rec.pool_member && !m->sb.d.idle;
        if (r >= 0)
            r = session_set_phase(s, m->id, (int)from, STK_SB_READY, "", "", MONITOR_ACTOR,
                                  workload ? "started" : "ready",
                                  workload ? session_argv_details(m->sb.bd.b, NULL, NULL) : NULL,
                                  &err);
    }
    if (r < 0) {
        report(m, "error", err ? err->msg : "failed");
        if (m->sb.rec.id[0]) {
            (void)ops->teardown(s->drv->ctx, &m->sb.d, false, NULL);
            struct stk_sb_rec now = {0};
            if (stk_store_sb_get(s->st, m->id, &now, NULL) >= 0)
                (void)session_set_phase(s, m->id, (int)now.phase, STK_SB_FAILED,
                                        "provisioning_failed", err ? err->msg : "", MONITOR_ACTOR,
                                        "failed", NULL, NULL);
            stk_sb_rec_free(&now);
        }
        stk_error_free(err);
        return 1;
    }
    if (mode == MONITOR_ADOPT) {
        (void)stk_store_sb_set_pids(s->st, m->id, getpid(), 0, NULL);
        (void)session_audit(s, m->id, "adopted", MONITOR_ACTOR,
                            json_pack("{s:s}", "why", "its previous monitor was gone"), NULL);
    }
    report(m, "ok", m->id);
    /* what provisioning allocated and freed goes back before the long idle */
    (void)malloc_trim(0);

    m->wake_fd = session_wake_watch(s, m->id);
    struct stk_driver_sink sink = {
        .ud = m, .output = on_output, .event = on_event, .poll = on_poll, .wake_fd = m->wake_fd};
    struct stk_driver_status st = {.state = STK_DRV_LOST, .exit_code = -1};
    if (ops->supervise(s->drv->ctx, &m->sb.d, &sink, &st, &err) < 0)
        fmt_into(st.message, sizeof(st.message), "%s", err ? err->msg : "supervising failed");
    if (m->wake_fd >= 0)
        close(m->wake_fd);
    m->wake_fd = -1;
    egress_summary(m, stk_clock_ms(CLOCK_MONOTONIC), true);
    conclude(m, &st);
    stk_driver_status_release(&st);
    session_sb_release(&m->sb);
    stk_error_free(err);
    return 0;
}

static const char *const mode_names[] = {"create", "create-idle", "start", "adopt",
                                         "create-accepted"};

/* The monitor's process: a fresh exec of stockade (never a bare fork of the
 * caller: SQLite connections, locks and descriptors must not cross into a
 * process that lives as long as the sandbox). lock_fd and report_fd are
 * the only descriptors it inherits. */
int stk_session_monitor_main(const struct stk_local_paths *p, enum stk_backend backend,
                             const struct stk_session_opts *opts, const char *id, const char *mode,
                             int lock_fd, int report_fd)
{
    int i = stk_enum_lookup(mode_names, STK_ARRAY_SIZE(mode_names), mode);
    (void)prctl(PR_SET_NAME, "stockade-mon");
    /* one malloc arena: the attach thread's output is all it allocates, and
     * an arena per thread is private memory each idle sandbox would pay */
    (void)mallopt(M_ARENA_MAX, 1);
    /* a pool refill starts monitors at low priority: so is this session's
     * autogroup (it leads a new session), until monitor_main knows whether
     * it supervises an unclaimed member */
    stk_set_nice(getpriority(PRIO_PROCESS, 0));
    (void)prctl(PR_SET_CHILD_SUBREAPER, 1);
    signal(SIGPIPE, SIG_IGN);
    /* stop and rm end sandboxes through init, never by signalling us */
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    struct stk_session *s = stk_xcalloc(1, sizeof(*s));
    s->p = *p;
    s->backend = backend;
    fmt_into(s->state_dir, sizeof(s->state_dir), "%s", p->state_dir);
    fmt_into(s->run_dir, sizeof(s->run_dir), "%s", p->run_dir);
    s->p.state_dir = s->state_dir;
    s->p.run_dir = s->run_dir;
    fmt_into(s->actor, sizeof(s->actor), MONITOR_ACTOR);
    struct stk_driver_conf conf = {.state_dir = s->state_dir,
                                   .run_dir = s->run_dir,
                                   .kubeconfig = opts ? opts->kubeconfig : NULL,
                                   .context = opts ? opts->context : NULL};
    struct stk_error *err = NULL;
    if (i < 0 || stk_driver_open(backend, &conf, &s->drv, &err) < 0 ||
        stk_store_open(s->p.state_dir, &s->st, &err) < 0) {
        char buf[600];
        int n = snprintf(buf, sizeof(buf), "error %s\n", err ? err->msg : "bad monitor mode");
        (void)!write(report_fd, buf, (size_t)n);
        stk_error_free(err);
        stk_session_close(s);
        return 1;
    }
    /* neither may reach the runtimes and ip(8) this process starts: the
     * lock would outlive us in them, the report pipe would hold create */
    (void)fcntl(lock_fd, F_SETFD, FD_CLOEXEC);
    (void)fcntl(report_fd, F_SETFD, FD_CLOEXEC);
    struct monitor m = {.s = s, .lock_fd = lock_fd, .report_fd = report_fd, .wake_fd = -1};
    m.logs.fd = -1;
    /* the id names the sandbox's directory: whole, or no monitor */
    if (stk_path_fmt(m.id, sizeof(m.id), "%s", id) < 0) {
        static const char msg[] = "error sandbox id too long\n";
        (void)!write(report_fd, msg, sizeof(msg) - 1);
        stk_session_close(s);
        return 1;
    }
    int r = monitor_main(&m, (enum monitor_mode)i);
    stk_session_close(s);
    return r;
}

/* environ with the state and run directories and the backend set, built
 * before the fork: between fork and exec only async-signal-safe calls (the
 * caller may be the multi-threaded gateway). The first `ours` entries are
 * this function's. */
#define CHILD_ENV_OURS 5
static char **child_environ(const struct stk_session *s)
{
    extern char **environ;
    static const char *const set[] = {
        "STOCKADE_STATE_DIR=", "STOCKADE_RUN_DIR=", "STOCKADE_BACKEND=", "STOCKADE_KUBECONFIG=",
        "STOCKADE_CONTEXT="};
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = stk_xcalloc(n + CHILD_ENV_OURS + 1, sizeof(*env));
    size_t k = 0;
    env[k++] = stk_xasprintf("STOCKADE_STATE_DIR=%s", s->p.state_dir);
    env[k++] = stk_xasprintf("STOCKADE_RUN_DIR=%s", s->p.run_dir);
    env[k++] = stk_xasprintf("STOCKADE_BACKEND=%s", stk_backend_names[s->backend]);
    env[k++] = stk_xasprintf("STOCKADE_KUBECONFIG=%s", s->kubeconfig);
    env[k++] = stk_xasprintf("STOCKADE_CONTEXT=%s", s->context);
    for (size_t i = 0; i < n; i++) {
        bool ours = false;
        for (size_t j = 0; j < STK_ARRAY_SIZE(set); j++)
            ours = ours || stk_startswith(environ[i], set[j]);
        if (!ours)
            env[k++] = environ[i];
    }
    return env;
}

static void child_environ_free(char **env)
{
    for (size_t i = 0; i < CHILD_ENV_OURS; i++)
        free(env[i]);
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

int session_spawn_self(const struct stk_session *s, int *keep, int n_keep, const char *const *argv)
{
    char **envp = child_environ(s);
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
    int r = session_spawn_self(s, keep, 2, argv);
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
