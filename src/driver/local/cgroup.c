/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Cgroups stockade owns: <hierarchy>/stockade/<id>, created before the
 * runtime is called and given to it as linux.cgroupsPath, so the kernel's
 * own counters (OOM kills, refused forks, CPU time) are readable until
 * stockade removes the directory. v1 (and hybrid) and v2 are two rows of one
 * table.
 */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

/* "key value" lines: the value of key, or -1. */
static int64_t keyed_value(const char *path, const char *key)
{
    char buf[4096];
    if (file_read(path, buf, sizeof(buf)) < 0)
        return -1;
    size_t klen = strlen(key);
    for (char *line = buf; line && *line;) {
        char *nl = strchr(line, '\n');
        if (!strncmp(line, key, klen) && line[klen] == ' ')
            return strtoll(line + klen + 1, NULL, 10);
        line = nl ? nl + 1 : NULL;
    }
    return -1;
}

static int64_t single_value(const char *path)
{
    char buf[64];
    if (file_read(path, buf, sizeof(buf)) <= 0)
        return -1;
    if (!strncmp(buf, "max", 3))
        return INT64_MAX;
    return strtoll(buf, NULL, 10);
}

static void set_max(int64_t *dst, int64_t v)
{
    if (v > *dst)
        *dst = v;
}

/* ---- v1 (and hybrid: the v1 controllers carry every limit) ---------------- */

static const char *const v1_controllers[] = {"memory", "pids", "cpu", "cpuacct"};

/* Writes a decimal value into <dir>/<file>; skipped when v is 0. */
static int cg_write(const char *dir, const char *file, int64_t v, bool optional,
                    struct stk_error **err)
{
    char path[300], text[32];
    if (v == 0)
        return 0;
    int r = stk_path_make(path, sizeof(path), err, "%s/%s", dir, file);
    if (r < 0)
        return r;
    snprintf(text, sizeof(text), "%lld", (long long)v);
    r = file_write(path, text, strlen(text));
    if (r < 0 && !(optional && r == -ENOENT))
        return stk_error_errno(err, -r, "writing %s to %s", text, path);
    return 0;
}

#define CPU_PERIOD_US 100000

/* A store's name in the mark: its state directory's real path, so a
 * relative or symlinked --state-dir names the same store. */
static const char *owner_key(const char *owner, char buf[PATH_MAX])
{
    return realpath(owner, buf) ? buf : owner;
}

/* Marks a sandbox's cgroup directory with the store that made it. */
static int mark_owner(const char *dir, const char *owner, struct stk_error **err)
{
    char buf[PATH_MAX];
    if (!owner)
        return 0;
    owner = owner_key(owner, buf);
    if (setxattr(dir, CG_OWNER_XATTR, owner, strlen(owner), 0) < 0)
        return stk_error_errno(err, errno, "marking cgroup %s with its owner", dir);
    return 0;
}

/* True when dir carries exactly owner's mark. */
static bool owned_by(const char *dir, const char *owner)
{
    char val[PATH_MAX], buf[PATH_MAX];
    owner = owner_key(owner, buf);
    size_t n = strlen(owner);
    ssize_t r = getxattr(dir, CG_OWNER_XATTR, val, sizeof(val));
    return r >= 0 && (size_t)r == n && !memcmp(val, owner, n);
}

static int v1_create(const char *id, const struct cg_limits *l, struct stk_error **err)
{
    char dir[4][256];
    for (size_t i = 0; i < STK_ARRAY_SIZE(v1_controllers); i++) {
        int r = stk_path_make(dir[i], sizeof(dir[i]), err, CG_ROOT "/%s/" CG_PARENT "/%s",
                              v1_controllers[i], id);
        if (r < 0)
            return r;
        if (mkdir_p(dir[i], 0755) < 0)
            return stk_error_errno(err, errno, "creating cgroup %s", dir[i]);
        if ((r = mark_owner(dir[i], l->owner, err)) < 0)
            return r;
    }
    int r;
    /* memsw after the memory limit: the kernel keeps memsw >= memory */
    if ((r = cg_write(dir[0], "memory.limit_in_bytes", l->memory, false, err)) < 0 ||
        (r = cg_write(dir[0], "memory.memsw.limit_in_bytes", l->memory, true, err)) < 0 ||
        (r = cg_write(dir[1], "pids.max", l->pids, false, err)) < 0 ||
        (r = cg_write(dir[2], "cpu.cfs_period_us", l->cpu_milli ? CPU_PERIOD_US : 0, false, err)) <
            0 ||
        (r = cg_write(dir[2], "cpu.cfs_quota_us", l->cpu_milli * CPU_PERIOD_US / 1000, false,
                      err)) < 0)
        return r;
    return 0;
}

/* ---- v2 --------------------------------------------------------------------- */

static int v2_create(const char *id, const struct cg_limits *l, struct stk_error **err)
{
    char path[256];
    static const char enable[] = "+memory +pids +cpu";
    if (file_write(CG_ROOT "/cgroup.subtree_control", enable, strlen(enable)) < 0)
        return stk_error_errno(err, errno, "enabling controllers in " CG_ROOT);
    if (mkdir_p(CG_ROOT "/" CG_PARENT, 0755) < 0)
        return stk_error_errno(err, errno, "creating " CG_ROOT "/" CG_PARENT);
    if (file_write(CG_ROOT "/" CG_PARENT "/cgroup.subtree_control", enable, strlen(enable)) < 0)
        return stk_error_errno(err, errno, "enabling controllers in " CG_ROOT "/" CG_PARENT);
    int r = stk_path_make(path, sizeof(path), err, CG_ROOT "/" CG_PARENT "/%s", id);
    if (r < 0)
        return r;
    if (mkdir(path, 0755) < 0 && errno != EEXIST)
        return stk_error_errno(err, errno, "creating cgroup %s", path);
    if ((r = mark_owner(path, l->owner, err)) < 0)
        return r;
    if ((r = cg_write(path, "memory.max", l->memory, false, err)) < 0 ||
        (r = cg_write(path, "pids.max", l->pids, false, err)) < 0)
        return r;
    if (l->memory) {
        char p2[300];
        if (stk_path_fmt(p2, sizeof(p2), "%s/memory.swap.max", path) >= 0)
            (void)file_write(p2, "0", 1); /* absent without swap accounting */
    }
    if (l->cpu_milli) {
        char p2[300], text[64];
        if ((r = stk_path_make(p2, sizeof(p2), err, "%s/cpu.max", path)) < 0)
            return r;
        snprintf(text, sizeof(text), "%lld %d", (long long)(l->cpu_milli * CPU_PERIOD_US / 1000),
                 CPU_PERIOD_US);
        if ((r = file_write(p2, text, strlen(text))) < 0)
            return stk_error_errno(err, -r, "writing %s", p2);
    }
    return 0;
}

/* ---- counters: one table per cgroup version ---------------------------- */

/* How a counter file feeds struct cg_sample: the largest value seen (the
 * kernel's counters only grow, and a file may vanish as the cgroup dies). */
struct counter {
    const char *controller; /* v1 hierarchy; NULL on v2 */
    const char *file;
    const char *key; /* "key value" line in the file; NULL: the file is one number */
    size_t field;    /* offset in struct cg_sample */
    int64_t divisor; /* cpuacct.usage is in ns, cpu.stat in us */
    bool current;    /* pids.current: also the current count */
};

#define COUNTER(ctl, f, k, member, div, cur)                                                       \
    {                                                                                              \
        (ctl), (f), (k), offsetof(struct cg_sample, member), (div), (cur)                          \
    }

static const struct counter v1_counters[] = {
    COUNTER("memory", "memory.oom_control", "oom_kill", oom_kills, 1, false),
    COUNTER("memory", "memory.max_usage_in_bytes", NULL, mem_peak, 1, false),
    COUNTER("pids", "pids.events", "max", pids_max, 1, false),
    COUNTER("pids", "pids.current", NULL, pids_peak, 1, true),
    COUNTER("pids", "pids.peak", NULL, pids_peak, 1, false),
    COUNTER("cpuacct", "cpuacct.usage", NULL, cpu_usec, 1000, false),
};

static const struct counter v2_counters[] = {
    COUNTER(NULL, "memory.events", "oom_kill", oom_kills, 1, false),
    COUNTER(NULL, "memory.peak", NULL, mem_peak, 1, false),
    COUNTER(NULL, "pids.events", "max", pids_max, 1, false),
    COUNTER(NULL, "pids.current", NULL, pids_peak, 1, true),
    COUNTER(NULL, "pids.peak", NULL, pids_peak, 1, false),
    COUNTER(NULL, "cpu.stat", "usage_usec", cpu_usec, 1, false),
};

static void sample_counters(const struct counter *t, size_t n, const char *id, struct cg_sample *s)
{
    for (size_t i = 0; i < n; i++) {
        char path[256];
        int w =
            t[i].controller
                ? stk_path_fmt(path, sizeof(path), CG_ROOT "/%s/" CG_PARENT "/%s/%s",
                               t[i].controller, id, t[i].file)
                : stk_path_fmt(path, sizeof(path), CG_ROOT "/" CG_PARENT "/%s/%s", id, t[i].file);
        if (w < 0)
            continue;
        int64_t v = t[i].key ? keyed_value(path, t[i].key) : single_value(path);
        if (v < 0)
            continue;
        if (t[i].current)
            s->pids_current = v;
        set_max((int64_t *)((char *)s + t[i].field), v / t[i].divisor);
    }
}

static void v1_sample(const char *id, struct cg_sample *s)
{
    sample_counters(v1_counters, STK_ARRAY_SIZE(v1_counters), id, s);
}

static void v2_sample(const char *id, struct cg_sample *s)
{
    sample_counters(v2_counters, STK_ARRAY_SIZE(v2_counters), id, s);
}

static const struct cg_ops cg_table[] = {
    {"v1", v1_create, v1_sample},
    {"v2", v2_create, v2_sample},
};

static bool is_cgroup2(const char *path)
{
    struct statfs st;
    return statfs(path, &st) == 0 && st.f_type == CGROUP2_SUPER_MAGIC;
}

/* ---- events: what wakes the supervisor (internal.h, struct cg_watch) ---- */

static int v1_oom_eventfd(const char *id)
{
    char ctl[256], oom[256], text[32];
    if (stk_path_fmt(ctl, sizeof(ctl), CG_ROOT "/memory/" CG_PARENT "/%s/cgroup.event_control",
                     id) < 0 ||
        stk_path_fmt(oom, sizeof(oom), CG_ROOT "/memory/" CG_PARENT "/%s/memory.oom_control", id) <
            0)
        return -1;
    int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    int ofd = open(oom, O_RDONLY | O_CLOEXEC);
    int cfd = open(ctl, O_WRONLY | O_CLOEXEC);
    int n = snprintf(text, sizeof(text), "%d %d", efd, ofd);
    /* the registration lives as long as the eventfd (or the cgroup) */
    bool ok = efd >= 0 && ofd >= 0 && cfd >= 0 && write(cfd, text, (size_t)n) == n;
    if (ofd >= 0)
        close(ofd);
    if (cfd >= 0)
        close(cfd);
    if (!ok && efd >= 0) {
        close(efd);
        efd = -1;
    }
    return efd;
}

void cg_watch_open(const char *id, struct cg_watch *w)
{
    *w = (struct cg_watch){.fd = {-1, -1}, .pids_fd = -1};
    if (is_cgroup2(CG_ROOT)) {
        w->fd[0] = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        static const char *const files[] = {"memory.events", "pids.events"};
        for (size_t i = 0; i < STK_ARRAY_SIZE(files); i++) {
            char path[256];
            if (w->fd[0] < 0 ||
                stk_path_fmt(path, sizeof(path), CG_ROOT "/" CG_PARENT "/%s/%s", id, files[i]) <
                    0 ||
                inotify_add_watch(w->fd[0], path, IN_MODIFY) < 0)
                w->unwatched = true;
        }
        return;
    }
    w->fd[0] = v1_oom_eventfd(id);
    w->fd[1] = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    /* only what is logged from now on: a refusal before is in the counter */
    if (w->fd[1] >= 0 && lseek(w->fd[1], 0, SEEK_END) < 0) {
        close(w->fd[1]);
        w->fd[1] = -1;
    }
    w->kmsg[1] = true;
    char path[256];
    if (stk_path_fmt(path, sizeof(path), CG_ROOT "/pids/" CG_PARENT "/%s/pids.events", id) >= 0)
        w->pids_fd = open(path, O_RDONLY | O_CLOEXEC);
    w->unwatched = w->fd[0] < 0 || w->fd[1] < 0;
}

bool cg_watch_consume(struct cg_watch *w, int i, bool *any)
{
    *any = false;
    if (i < 0 || i >= CG_WATCH_FDS || w->fd[i] < 0)
        return false;
    char buf[8192];
    if (!w->kmsg[i]) {
        /* inotify events or the eventfd's count: either says "look" */
        while (read(w->fd[i], buf, sizeof(buf)) > 0)
            ;
        return *any = true;
    }
    /* the log: is there a new record (EPIPE: records were overwritten
     * before we read them)? Then skip them all and ask the counter itself:
     * cheaper than reading each record of a busy host's log */
    ssize_t n = read(w->fd[i], buf, sizeof(buf));
    if (n <= 0 && !(n < 0 && errno == EPIPE))
        return false;
    *any = true;
    (void)lseek(w->fd[i], 0, SEEK_END);
    if (w->pids_fd < 0)
        return true;
    n = pread(w->pids_fd, buf, sizeof(buf) - 1, 0);
    if (n <= 0)
        return true;
    buf[n] = '\0';
    char *max = strstr(buf, "max ");
    return !max || strtoll(max + 4, NULL, 10) > 0;
}

void cg_watch_close(struct cg_watch *w)
{
    for (int i = 0; i < CG_WATCH_FDS; i++)
        if (w->fd[i] >= 0)
            close(w->fd[i]);
    if (w->pids_fd >= 0)
        close(w->pids_fd);
    *w = (struct cg_watch){.fd = {-1, -1}, .pids_fd = -1};
}

size_t cg_own_dirs(const char *id, char src[][160], char dst[][48], size_t max)
{
    if (is_cgroup2(CG_ROOT)) {
        if (max < 1 || stk_path_fmt(src[0], 160, CG_ROOT "/" CG_PARENT "/%s", id) < 0)
            return 0;
        snprintf(dst[0], 48, CG_ROOT);
        return 1;
    }
    size_t n = 0;
    for (size_t i = 0; i < STK_ARRAY_SIZE(v1_controllers) && n < max; i++)
        if (stk_path_fmt(src[n], 160, CG_ROOT "/%s/" CG_PARENT "/%s", v1_controllers[i], id) >= 0)
            snprintf(dst[n++], 48, CG_ROOT "/%s", v1_controllers[i]);
    return n;
}

const struct cg_ops *cg_detect(void)
{
    return is_cgroup2(CG_ROOT) ? &cg_table[1] : &cg_table[0];
}

bool cg_is_hybrid(void)
{
    return !is_cgroup2(CG_ROOT) && is_cgroup2(CG_ROOT "/unified");
}

/* The hierarchies: CG_ROOT itself on v2, each mounted directory on v1. */
static size_t hierarchies(char out[][128], size_t max)
{
    size_t n = 0;
    if (is_cgroup2(CG_ROOT)) {
        snprintf(out[n++], 128, CG_ROOT);
        return n;
    }
    DIR *d = opendir(CG_ROOT);
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max) {
        if (e->d_name[0] == '.' || e->d_type != DT_DIR)
            continue;
        if (stk_path_fmt(out[n], 128, CG_ROOT "/%s", e->d_name) >= 0)
            n++;
    }
    closedir(d);
    return n;
}

static void kill_procs(const char *dir)
{
    char path[300], buf[8192];
    if (stk_path_fmt(path, sizeof(path), "%s/cgroup.procs", dir) < 0)
        return;
    if (file_read(path, buf, sizeof(buf)) <= 0)
        return;
    for (char *p = buf; *p;) {
        char *end;
        long pid = strtol(p, &end, 10);
        if (end == p)
            break;
        if (pid > 1)
            (void)kill((pid_t)pid, SIGKILL);
        p = *end ? end + 1 : end;
    }
}

/* One pass: every thread at `above` or more gets `above` less; the number
 * changed. */
static size_t renice_pass(const char *path, int above)
{
    enum { TIDS_MAX = 65536 };
    _cleanup_free_ char *buf = stk_xmalloc(TIDS_MAX);
    size_t changed = 0;
    if (file_read(path, buf, TIDS_MAX) <= 0)
        return 0;
    for (char *p = buf; *p;) {
        char *end;
        long tid = strtol(p, &end, 10);
        if (end == p)
            break;
        errno = 0;
        int n = getpriority(PRIO_PROCESS, (id_t)tid);
        if (tid > 1 && errno == 0 && n >= above &&
            setpriority(PRIO_PROCESS, (id_t)tid, n - above) == 0)
            changed++;
        p = *end ? end + 1 : end;
    }
    return changed;
}

void cg_renice(const char *id, int above)
{
    char hier[32][128];
    size_t n = hierarchies(hier, 32);
    for (size_t i = 0; i < n; i++) {
        /* every thread: the kernel keeps nice values per thread */
        char path[300];
        if (stk_path_fmt(path, sizeof(path), "%s/" CG_PARENT "/%s/%s", hier[i], id,
                         is_cgroup2(hier[i]) ? "cgroup.threads" : "tasks") < 0 ||
            access(path, R_OK) < 0)
            continue;
        /* relative, so gVisor's own +1 threads keep their step; again
         * while a pass found some: a thread made during a pass by one not
         * yet lowered starts where its maker was */
        for (int pass = 0; pass < 8 && renice_pass(path, above) > 0; pass++)
            ;
        /* every hierarchy: gVisor places its own processes per hierarchy
         * (a thread lowered already is below `above`) */
    }
}

int cg_remove(const char *id)
{
    char hier[32][128];
    size_t n = hierarchies(hier, 32);
    int removed = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        char dir[300];
        if (stk_path_fmt(dir, sizeof(dir), "%s/" CG_PARENT "/%s", hier[i], id) < 0) {
            r = -ENAMETOOLONG;
            continue;
        }
        /* Empty after a normal end, so try first and kill only when busy;
         * a bounded wait, since killed tasks leave within milliseconds. */
        int tries = 0;
        bool existed = true;
        for (;;) {
            if (rmdir(dir) == 0)
                break;
            if (errno == ENOENT) {
                existed = false;
                break;
            }
            if (++tries == 200)
                break;
            kill_procs(dir);
            struct timespec ts = {0, 5 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        if (tries == 200)
            r = -EBUSY;
        else if (existed)
            removed++;
    }
    return r < 0 ? r : removed;
}

int cg_remove_idle(const char *id, int min_age, const char *owner)
{
    char hier[32][128], dir[32][300];
    size_t n = hierarchies(hier, 32), k = 0;
    bool ours = false;
    for (size_t i = 0; i < n; i++)
        if (stk_path_fmt(dir[k], sizeof(dir[k]), "%s/" CG_PARENT "/%s", hier[i], id) >= 0)
            ours |= owned_by(dir[k++], owner);
    /* the mark is on the directories stockade made; the runtime's own (the
     * other v1 controllers) belong to the same id */
    if (!ours)
        return 0;
    int removed = 0;
    time_t now = time(NULL);
    for (size_t i = 0; i < k; i++) {
        struct stat st;
        if (stat(dir[i], &st) < 0 || now - st.st_mtime < min_age)
            continue;
        if (rmdir(dir[i]) == 0) /* EBUSY when anything is inside: left alone */
            removed++;
    }
    return removed;
}

void cg_foreach_id(void (*fn)(const char *id, void *ud), void *ud)
{
    char hier[32][128];
    size_t n = hierarchies(hier, 32);
    for (size_t i = 0; i < n; i++) {
        char dir[300];
        if (stk_path_fmt(dir, sizeof(dir), "%s/" CG_PARENT, hier[i]) < 0)
            continue;
        DIR *d = opendir(dir);
        if (!d)
            continue;
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.' || e->d_type != DT_DIR)
                continue;
            fn(e->d_name, ud);
        }
        closedir(d);
    }
}
