/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The egress proxy's decisions on Kubernetes as audit records: the proxy
 * Pod's log followed, read back as hostile input. See proxylog.h.
 */
#include "driver/kubernetes/proxylog.h"
#include "driver/kubernetes/internal.h"
#include "render/render.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* the container of the proxy's Pod (render/k8s.c) */
#define PROXY_CONTAINER "proxy"
#define IDLE_MS         1000

/* ---- ingesting ------------------------------------------------------------------------ */

void stk_kube_proxy_ingest_init(struct stk_kube_proxy_ingest *in, const char *id, const char *name)
{
    *in = (struct stk_kube_proxy_ingest){
        .id = id, .name = name, .budget = {.limit = STK_KUBE_PROXY_EVENTS_PER_SEC}};
}

static void emit(json_t *o, stk_kube_proxy_record_fn fn, void *ud)
{
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    if (!s)
        stk_oom();
    fn(ud, s);
    free(s);
}

/* What was dropped over the budget and the lines that were not records. */
static void report(struct stk_kube_proxy_ingest *in, uint64_t dropped, stk_kube_proxy_record_fn fn,
                   void *ud)
{
    if (!dropped && !in->invalid)
        return;
    json_t *o = stk_proxy_suppressed_record(in->id, dropped);
    if (in->invalid)
        json_object_set_new(o, "invalid", json_integer((json_int_t)in->invalid));
    in->invalid = 0;
    emit(o, fn, ud);
}

static bool pod_name(const char *s, size_t len)
{
    if (len == 0 || len > 253)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!(s[i] >= 'a' && s[i] <= 'z') && !(s[i] >= '0' && s[i] <= '9') && s[i] != '-' &&
            s[i] != '.')
            return false;
    return true;
}

/* One whole line (cut: only its start was kept). */
static bool ingest_line(struct stk_kube_proxy_ingest *in, const char *line, size_t len, bool cut,
                        stk_kube_proxy_record_fn fn, void *ud)
{
    if (len > 2 && !cut && line[0] == 'E' && line[1] == ' ') {
        /* the follower was refused (its own line: a log line starts with
         * the runtime's stamp), naming what; said in the trail with a
         * fixed text, nothing of the line copied */
        const char *what = len == 6 && !memcmp(line + 2, "list", 4)  ? "list pods"
                           : len == 5 && !memcmp(line + 2, "log", 3) ? "get pods/log"
                                                                     : NULL;
        if (!what)
            return false;
        char why[200];
        snprintf(why, sizeof(why),
                 "the API server refused %s (403): the proxy's decisions are not read into "
                 "the audit trail until it allows it",
                 what);
        json_t *o =
            json_pack("{s:s, s:s, s:s}", "sandbox", in->id, "decision", "unread", "reason", why);
        if (!o)
            stk_oom();
        emit(o, fn, ud);
        return false;
    }
    if (len > 2 && !cut && line[0] == 'S' && line[1] == ' ') {
        /* a new stream: of another Pod, whose log starts from nothing */
        if (!pod_name(line + 2, len - 2))
            return false;
        bool other = strlen(in->pod) != len - 2 || memcmp(in->pod, line + 2, len - 2);
        if (other) {
            memcpy(in->pod, line + 2, len - 2);
            in->pod[len - 2] = '\0';
            in->pos = (struct stk_kube_log_pos){0};
        }
        in->pos.seen = 0;
        return other;
    }
    const char *text;
    size_t n;
    int r = stk_kube_log_line(&in->pos, line, len, &text, &n);
    if (r == 0)
        return false; /* taken before */
    if (r < 0) {
        in->invalid++; /* the runtime stamps every line: not the log */
        return false;
    }
    if (n == 0 || text[0] != '{')
        return true; /* the proxy's messages (its stderr): not decisions */
    uint64_t dropped;
    bool fresh = in->pos.sec != in->budget.win;
    bool room = stk_proxy_budget_take(&in->budget, in->pos.sec, &dropped);
    if (fresh)
        report(in, dropped, fn, ud);
    if (!room)
        return true;
    json_t *rec = NULL;
    const char *why;
    if (cut || stk_proxy_record_parse(text, n, in->name, in->id, &rec, &why) < 0) {
        in->invalid++;
        return true;
    }
    emit(rec, fn, ud);
    return true;
}

bool stk_kube_proxy_ingest_feed(struct stk_kube_proxy_ingest *in, const char *data, size_t n,
                                stk_kube_proxy_record_fn fn, void *ud)
{
    bool moved = false;
    for (size_t i = 0; i < n; i++) {
        if (data[i] != '\n') {
            if (in->len < STK_KUBE_PROXY_LINE_MAX)
                in->line[in->len++] = data[i];
            else
                in->cut = true;
            continue;
        }
        in->line[in->len] = '\0';
        if (in->len > 0)
            moved |= ingest_line(in, in->line, in->len, in->cut, fn, ud);
        in->len = 0;
        in->cut = false;
    }
    return moved;
}

void stk_kube_proxy_ingest_flush(struct stk_kube_proxy_ingest *in, stk_kube_proxy_record_fn fn,
                                 void *ud)
{
    report(in, stk_proxy_budget_flush(&in->budget), fn, ud);
}

void stk_kube_proxy_pos_format(const struct stk_kube_proxy_ingest *in, char buf[320])
{
    char pos[64];
    stk_kube_log_pos_format(&in->pos, pos);
    snprintf(buf, 320, "%s %s", in->pod, pos);
}

int stk_kube_proxy_pos_parse(struct stk_kube_proxy_ingest *in, const char *s)
{
    const char *sp = strchr(s, ' ');
    struct stk_kube_log_pos pos;
    if (!sp || !pod_name(s, (size_t)(sp - s)) || stk_kube_log_pos_parse(sp + 1, &pos) < 0)
        return -EINVAL;
    memcpy(in->pod, s, (size_t)(sp - s));
    in->pod[sp - s] = '\0';
    in->pos = pos;
    return 0;
}

/* ---- small state files ---------------------------------------------------------------- */

int stk_kube_state_read(const char *path, char *buf, size_t n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    ssize_t r = read(fd, buf, n - 1);
    int e = errno;
    close(fd);
    if (r < 0)
        return -e;
    buf[r] = '\0';
    return 0;
}

void stk_kube_state_write(const char *path, const char *text)
{
    char tmp[PATH_MAX + 8];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
        return;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return;
    bool ok = write(fd, text, strlen(text)) == (ssize_t)strlen(text);
    close(fd);
    if (!ok || rename(tmp, path) < 0)
        (void)unlink(tmp);
}

/* ---- the follower ------------------------------------------------------------------- */

struct stk_kube_proxy_follower {
    struct stk_kube *k; /* the thread's */
    char ns[64];
    const char *state_file;
    atomic_bool stop;
    pthread_t thread;
    int rfd, wfd;
    bool refused; /* the thread's: a refusal was said and nothing read since */
    /* where the owner stands, for the thread's next request */
    pthread_mutex_t mu;
    char acked_pod[254];
    int64_t acked_sec;
    /* the owner's */
    struct stk_kube_proxy_ingest in;
};

static void put(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

/* What a stream delivers, whole lines only: a line the stream ended in the
 * middle of (a cancel, a dropped connection) is not handed over half, so
 * that its stamp does not count it as taken; the next stream brings it
 * whole. A line past the bound goes as it comes (it is cut anyway). */
struct relay {
    int fd;
    char hold[STK_KUBE_PROXY_LINE_MAX + 1];
    size_t n;
};

static size_t relay_sink(void *ud, const char *data, size_t n)
{
    struct relay *r = ud;
    size_t total = n;
    const char *nl = memrchr(data, '\n', n);
    if (nl) {
        size_t upto = (size_t)(nl + 1 - data);
        put(r->fd, r->hold, r->n);
        put(r->fd, data, upto);
        r->n = 0;
        data += upto;
        n -= upto;
    }
    if (r->n + n > STK_KUBE_PROXY_LINE_MAX) {
        put(r->fd, r->hold, r->n);
        put(r->fd, data, n);
        r->n = 0;
        return total;
    }
    memcpy(r->hold + r->n, data, n);
    r->n += n;
    return total;
}

static void idle(struct stk_kube_proxy_follower *f, int ms)
{
    for (; ms > 0 && !atomic_load(&f->stop); ms -= 100)
        nanosleep(&(struct timespec){0, 100 * 1000000L}, NULL);
}

/* The API server refused what following needs (403: the driver's identity
 * lacks pods list or pods/log get): the decisions would go unrecorded
 * without a word, so the owner is told, once until a read succeeds. Other
 * failures (the Pod going, the network) are retried quietly. */
static void refused(struct stk_kube_proxy_follower *f, int r, const char *what)
{
    if (r != -EACCES || f->refused)
        return;
    f->refused = true;
    char line[16];
    int n = snprintf(line, sizeof(line), "\nE %s\n", what);
    put(f->wfd, line, (size_t)n);
}

/* One pods/log request for pod: a stream announced to the owner. */
static void stream(struct stk_kube_proxy_follower *f, const char *pod, bool follow, bool previous)
{
    int64_t since = 0;
    pthread_mutex_lock(&f->mu);
    if (!strcmp(f->acked_pod, pod))
        since = f->acked_sec * 1000;
    pthread_mutex_unlock(&f->mu);
    char mark[300];
    int n = snprintf(mark, sizeof(mark), "\nS %s\n", pod);
    put(f->wfd, mark, (size_t)n);
    struct relay rl = {.fd = f->wfd};
    struct stk_kube_logs_req q = {.namespace = f->ns,
                                  .pod = pod,
                                  .container = PROXY_CONTAINER,
                                  .follow = follow,
                                  .previous = previous,
                                  .timestamps = true,
                                  .since_ms = since,
                                  .tail_lines = -1,
                                  .out_fd = -1,
                                  .sink = relay_sink,
                                  .sink_ud = &rl,
                                  .cancel = follow ? &f->stop : NULL};
    int r = stk_kube_logs(f->k, &q, NULL);
    if (r >= 0)
        f->refused = false;
    refused(f, r, "log");
}

static const char *pstr(const json_t *pod, const char *a, const char *b)
{
    return json_string_value(json_object_get(json_object_get(pod, a), b)) ?: "";
}

static const json_t *container_status(const json_t *pod)
{
    size_t i;
    const json_t *cs;
    json_array_foreach(json_object_get(json_object_get(pod, "status"), "containerStatuses"), i,
                       cs) if (!strcmp(json_string_value(json_object_get(cs, "name")) ?: "",
                                       PROXY_CONTAINER)) return cs;
    return NULL;
}

/* "running", "terminated", "waiting" or "" for the proxy's container. */
static const char *container_state(const json_t *pod)
{
    const json_t *cs = container_status(pod);
    if (cs) {
        const json_t *st = json_object_get(cs, "state");
        return json_object_get(st, "running")      ? "running"
               : json_object_get(st, "terminated") ? "terminated"
                                                   : "waiting";
    }
    return "";
}

/* The oldest Pod created after `after` (by creation time, then name). */
static const json_t *next_pod(const json_t *items, const json_t *after)
{
    const json_t *best = NULL, *p;
    size_t i;
    json_array_foreach(items, i, p)
    {
        if (p == after)
            continue;
        const char *c = pstr(p, "metadata", "creationTimestamp"), *n = pstr(p, "metadata", "name");
        if (after) {
            int o = strcmp(c, pstr(after, "metadata", "creationTimestamp"));
            if (o < 0 || (o == 0 && strcmp(n, pstr(after, "metadata", "name")) < 0))
                continue;
        }
        if (best) {
            int o = strcmp(c, pstr(best, "metadata", "creationTimestamp"));
            if (o > 0 || (o == 0 && strcmp(n, pstr(best, "metadata", "name")) > 0))
                continue;
        }
        best = p;
    }
    return best;
}

static void *follow_thread(void *ud)
{
    struct stk_kube_proxy_follower *f = ud;
    char cur[254];
    pthread_mutex_lock(&f->mu);
    snprintf(cur, sizeof(cur), "%s", f->acked_pod);
    pthread_mutex_unlock(&f->mu);
    char seen_pod[254] = "";
    json_int_t seen_restarts = 0;
    struct stk_kube_ref pods = {"v1", "Pod", f->ns, NULL};
    while (!atomic_load(&f->stop)) {
        json_t *list = NULL;
        int r = stk_kube_list(f->k, &pods, STK_K8S_COMPONENT_LABEL "=" STK_K8S_PROXY_COMPONENT,
                              &list, NULL);
        if (r < 0) {
            refused(f, r, "list");
            idle(f, IDLE_MS);
            continue;
        }
        const json_t *items = json_object_get(list, "items"), *now = NULL, *p;
        size_t i;
        json_array_foreach(items, i, p) if (!strcmp(pstr(p, "metadata", "name"), cur)) now = p;
        const json_t *next = next_pod(items, now);
        const char *st = now ? container_state(now) : "";
        const json_t *target = NULL;
        if (now && (!strcmp(st, "running") || (!next && !strcmp(st, "terminated")))) {
            target = now;
        } else if (next) {
            /* the Pod was replaced: what it logged last, then the next */
            if (now)
                stream(f, cur, false, false);
            target = next;
        }
        if (target && strcmp(container_state(target), "running") &&
            strcmp(container_state(target), "terminated"))
            target = NULL; /* not started: pods/log has nothing yet */
        if (target) {
            snprintf(cur, sizeof(cur), "%s", pstr(target, "metadata", "name"));
            /* the container restarted since this thread last looked (or
             * before it started: a monitor adopting the sandbox): what its
             * previous instance logged after the position first */
            json_int_t restarts =
                json_integer_value(json_object_get(container_status(target), "restartCount"));
            if (restarts > 0 && (strcmp(seen_pod, cur) || restarts != seen_restarts))
                stream(f, cur, false, true);
            snprintf(seen_pod, sizeof(seen_pod), "%s", cur);
            seen_restarts = restarts;
            int64_t t0 = stk_clock_ms(CLOCK_MONOTONIC);
            stream(f, cur, true, false);
            /* a stream that ended at once (a container that ended): not
             * again right away */
            if (stk_clock_ms(CLOCK_MONOTONIC) - t0 < IDLE_MS)
                idle(f, IDLE_MS);
        } else {
            idle(f, IDLE_MS);
        }
        json_decref(list);
    }
    /* what the Pod logged until now */
    if (cur[0])
        stream(f, cur, false, false);
    close(f->wfd);
    return NULL;
}

int stk_kube_proxy_follow_start(const struct stk_kubeconfig *cfg, const char *ns,
                                const char *state_file, const char *id, const char *name,
                                struct stk_kube_proxy_follower **ret, struct stk_error **err)
{
    struct stk_kube_proxy_follower *f = stk_xcalloc(1, sizeof(*f));
    f->state_file = state_file;
    f->rfd = f->wfd = -1;
    snprintf(f->ns, sizeof(f->ns), "%s", ns);
    stk_kube_proxy_ingest_init(&f->in, id, name);
    char buf[320];
    if (state_file && stk_kube_state_read(state_file, buf, sizeof(buf)) >= 0 &&
        stk_kube_proxy_pos_parse(&f->in, buf) < 0)
        f->in.pos = (struct stk_kube_log_pos){0};
    snprintf(f->acked_pod, sizeof(f->acked_pod), "%s", f->in.pod);
    f->acked_sec = f->in.pos.sec;
    pthread_mutex_init(&f->mu, NULL);
    int fds[2];
    int r = stk_kube_open(cfg, &f->k, err);
    if (r >= 0 && pipe2(fds, O_CLOEXEC) < 0)
        r = stk_error_make(err, errno, "the proxy's log: pipe: %s", strerror(errno));
    if (r >= 0) {
        f->rfd = fds[0];
        f->wfd = fds[1];
        (void)fcntl(f->rfd, F_SETFL, O_NONBLOCK);
        if ((errno = pthread_create(&f->thread, NULL, follow_thread, f)) != 0) {
            r = stk_error_make(err, errno, "the proxy's log: thread: %s", strerror(errno));
            close(f->rfd);
            close(f->wfd);
        }
    }
    if (r < 0) {
        stk_kube_close(f->k);
        pthread_mutex_destroy(&f->mu);
        free(f);
        return r;
    }
    *ret = f;
    return 0;
}

/* Where the owner stands: for the thread's next request, and for the
 * next monitor. */
static void keep(struct stk_kube_proxy_follower *f, bool moved)
{
    pthread_mutex_lock(&f->mu);
    snprintf(f->acked_pod, sizeof(f->acked_pod), "%s", f->in.pod);
    f->acked_sec = f->in.pos.sec;
    pthread_mutex_unlock(&f->mu);
    if (moved && f->state_file && f->in.pod[0]) {
        char pos[320];
        stk_kube_proxy_pos_format(&f->in, pos);
        stk_kube_state_write(f->state_file, pos);
    }
}

/* Reads what the pipe holds: until its end when block, else at most
 * PUMP_MAX bytes (a log that floods does not keep the owner from its
 * sandbox; the rest waits in the pipe and, behind it, in the stream). */
#define PUMP_MAX (1u << 20)
static void take(struct stk_kube_proxy_follower *f, bool block, stk_kube_proxy_record_fn fn,
                 void *ud)
{
    char buf[16384];
    ssize_t n;
    size_t total = 0;
    bool moved = false;
    (void)fcntl(f->rfd, F_SETFL, block ? 0 : O_NONBLOCK);
    while ((block || total < PUMP_MAX) &&
           ((n = read(f->rfd, buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR)))
        if (n > 0) {
            total += (size_t)n;
            moved |= stk_kube_proxy_ingest_feed(&f->in, buf, (size_t)n, fn, ud);
        }
    keep(f, moved);
}

void stk_kube_proxy_follow_pump(struct stk_kube_proxy_follower *f, stk_kube_proxy_record_fn fn,
                                void *ud)
{
    if (f)
        take(f, false, fn, ud);
}

void stk_kube_proxy_follow_stop(struct stk_kube_proxy_follower *f, stk_kube_proxy_record_fn fn,
                                void *ud)
{
    if (!f)
        return;
    atomic_store(&f->stop, true);
    /* drained while the thread ends: it may be writing */
    take(f, true, fn, ud);
    pthread_join(f->thread, NULL);
    stk_kube_proxy_ingest_flush(&f->in, fn, ud);
    close(f->rfd);
    stk_kube_close(f->k);
    pthread_mutex_destroy(&f->mu);
    free(f);
}
