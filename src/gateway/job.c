/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Jobs: the session calls that block (create waits for ready, stop waits
 * out a grace period, logs --follow waits for the end) run in a worker
 * process (worker.c) that writes its answer to a pipe. The event loop only
 * ever reads pipes.
 */
#include "gateway/server.h"

#include <errno.h>
#include <event2/buffer.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define JOB_MAX_RESULT (4 * 1024 * 1024) /* a reply from a child */
#define JOB_CHUNK      (64 * 1024)       /* relayed per write: the stream's buffer bound */

struct gw_job {
    struct stk_gw *g;
    struct gw_call *call; /* NULL once detached */
    pid_t pid;
    int fd;
    bool stream;
    bool done;       /* EOF seen */
    int file_fd;     /* the files API's memfd (fd 5 of the worker), -1 */
    bool reply_file; /* a read: a 200 answer is the memfd's bytes */
    struct event *ev;
    struct evbuffer *buf;
    struct gw_job *next;
};

static void job_unlink(struct gw_job *j)
{
    for (struct gw_job **p = &j->g->jobs; *p; p = &(*p)->next)
        if (*p == j) {
            *p = j->next;
            return;
        }
}

static void job_free(struct gw_job *j)
{
    job_unlink(j);
    j->g->n_workers--;
    if (j->call)
        j->call->job = NULL;
    event_free(j->ev);
    evbuffer_free(j->buf);
    if (j->fd >= 0)
        close(j->fd);
    if (j->file_fd >= 0)
        close(j->file_fd);
    /* reaped by the SIGCHLD handler (gw_jobs_reap) */
    free(j);
}

/* A read's content: the memfd the worker filled, sent as the body
 * (evbuffer_add_file takes a descriptor of its own). */
static void job_reply_file(struct gw_call *c, struct gw_job *j, json_int_t size)
{
    struct stat st;
    int fd = fstat(j->file_fd, &st) == 0 && st.st_size == size ? dup(j->file_fd) : -1;
    if (fd < 0) {
        gw_reply_error(c, GW_E_INTERNAL, "the file's content did not arrive whole");
        return;
    }
    struct evbuffer *b = evbuffer_new();
    if (!b)
        stk_oom();
    if (size > 0 && evbuffer_add_file(b, fd, 0, size) < 0) {
        evbuffer_free(b);
        gw_reply_error(c, GW_E_INTERNAL, "cannot send the file's content");
        return;
    }
    if (size == 0)
        close(fd);
    struct evkeyvalq *h = evhttp_request_get_output_headers(c->req);
    evhttp_add_header(h, "Content-Type", "application/octet-stream");
    gw_count(c->g, c->route, 200);
    evhttp_send_reply(c->req, 200, "OK", b);
    evbuffer_free(b);
    gw_call_free(c);
}

static void job_finish_result(struct gw_job *j)
{
    struct gw_call *c = j->call;
    j->call = NULL;
    if (!c) {
        job_free(j);
        return;
    }
    c->job = NULL;
    size_t n = evbuffer_get_length(j->buf);
    const char *data = (const char *)evbuffer_pullup(j->buf, -1);
    json_t *res = n ? json_loadb(data, n, 0, NULL) : NULL;
    json_t *status = json_object_get(res, "status"), *body = json_object_get(res, "body");
    if (j->reply_file && json_integer_value(status) == 200)
        job_reply_file(c, j, json_integer_value(json_object_get(body, "size")));
    else if (json_is_integer(status) && body)
        gw_reply_json(c, (int)json_integer_value(status), json_incref(body));
    else
        gw_reply_error(c, GW_E_INTERNAL, "the operation's worker ended without an answer");
    json_decref(res);
    job_free(j);
}

static void job_chunk_written(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    struct gw_job *j = arg;
    /* the previous chunk reached the socket: read the next one */
    if (j->call && !j->done)
        event_add(j->ev, NULL);
}

static void job_relay(struct gw_job *j)
{
    struct gw_call *c = j->call;
    if (!c) {
        job_free(j);
        return;
    }
    if (j->done) {
        gw_count(c->g, c->route, 200);
        gw_stream_end(c);
        c->job = NULL;
        j->call = NULL;
        gw_call_free(c);
        job_free(j);
        return;
    }
    /* one chunk in flight at a time: the child blocks on a full pipe while
     * a slow client drains, and the server holds at most JOB_CHUNK */
    event_del(j->ev);
    evhttp_send_reply_chunk_with_cb(c->req, j->buf, job_chunk_written, j);
}

static void job_readable(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct gw_job *j = arg;
    int n = evbuffer_read(j->buf, fd, JOB_CHUNK);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0)
        j->done = true;
    if (j->stream) {
        job_relay(j);
        return;
    }
    if (evbuffer_get_length(j->buf) > JOB_MAX_RESULT) {
        evbuffer_drain(j->buf, evbuffer_get_length(j->buf));
        j->done = true;
    }
    if (j->done)
        job_finish_result(j);
}

void gw_child_signals(void)
{
    /* libevent's signal handlers write to the parent's socketpair */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

void gw_child_fds(const int *keep, size_t n)
{
    unsigned from = 3;
    for (;;) {
        /* the lowest kept descriptor at or above from */
        unsigned next = ~0U;
        for (size_t i = 0; i < n; i++)
            if (keep[i] >= (int)from && (unsigned)keep[i] < next)
                next = (unsigned)keep[i];
        if (next > from)
            (void)close_range(from, next == ~0U ? ~0U : next - 1, 0);
        if (next == ~0U)
            return;
        from = next + 1;
    }
}

static int job_start(struct gw_call *c, json_t *job, bool stream, int file_fd, bool reply_file)
{
    int p[2];
    if (c->g->n_workers >= GW_MAX_WORKERS) {
        json_decref(job);
        if (file_fd >= 0)
            close(file_fd);
        return -EAGAIN;
    }
    if (pipe2(p, O_CLOEXEC) < 0) {
        json_decref(job);
        if (file_fd >= 0)
            close(file_fd);
        return -errno;
    }
    pid_t pid;
    int fds[2] = {p[1], file_fd};
    int r = gw_worker_spawn(c->g, c->actor, job, fds, file_fd >= 0 ? 2 : 1, &pid);
    close(p[1]);
    if (r < 0) {
        close(p[0]);
        if (file_fd >= 0)
            close(file_fd);
        return r;
    }
    (void)fcntl(p[0], F_SETFL, O_NONBLOCK);
    struct gw_job *j = stk_xcalloc(1, sizeof(*j));
    *j = (struct gw_job){.g = c->g,
                         .call = c,
                         .pid = pid,
                         .fd = p[0],
                         .stream = stream,
                         .file_fd = file_fd,
                         .reply_file = reply_file};
    j->buf = evbuffer_new();
    j->ev = event_new(c->g->base, p[0], EV_READ | EV_PERSIST, job_readable, j);
    if (!j->buf || !j->ev)
        stk_oom();
    event_add(j->ev, NULL);
    j->next = c->g->jobs;
    c->g->jobs = j;
    c->g->n_workers++;
    c->job = j;
    /* if the client leaves first, the connection's close ends the call */
    c->conn->call = c;
    if (stream) {
        gw_stream_begin(c);
        struct evkeyvalq *h = evhttp_request_get_output_headers(c->req);
        if (!evhttp_find_header(h, "Content-Type"))
            evhttp_add_header(h, "Content-Type", "application/octet-stream");
        gw_call_log(c, 200);
        evhttp_send_reply_start(c->req, 200, "OK");
    }
    return 0;
}

int gw_job_start(struct gw_call *c, json_t *job, bool stream)
{
    return job_start(c, job, stream, -1, false);
}

int gw_job_start_file(struct gw_call *c, json_t *job, struct evbuffer *data)
{
    bool to_sandbox = data != NULL;
    int fd = memfd_create("stockade-file", MFD_CLOEXEC);
    if (fd < 0) {
        json_decref(job);
        return -errno;
    }
    /* moved, not copied: each chunk of the body is freed once in the memfd
     * (a memfd write of at most the files limit does not block) */
    while (to_sandbox && evbuffer_get_length(data) > 0) {
        int w = evbuffer_write(data, fd);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = w < 0 ? errno : EIO;
            close(fd);
            json_decref(job);
            return -e;
        }
    }
    if (lseek(fd, 0, SEEK_SET) < 0) {
        int e = errno;
        close(fd);
        json_decref(job);
        return -e;
    }
    return job_start(c, job, false, fd, !to_sandbox);
}

void gw_job_detach(struct gw_job *j)
{
    j->call = NULL;
    if (j->stream) {
        /* nobody reads a stream any more: stop its child */
        kill(j->pid, SIGTERM);
        job_free(j);
    }
    /* an operation runs to its end: half a create is worse than none */
}

void gw_jobs_reap(struct stk_gw *g)
{
    (void)g;
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
}

int gw_worker_spawn(struct stk_gw *g, const char *actor, json_t *job, const int *fds, size_t n,
                    pid_t *ret)
{
    if (!job)
        return -EINVAL;
    json_object_set_new(job, "state_dir", json_string(g->paths.state_dir));
    json_object_set_new(job, "run_dir", json_string(g->paths.run_dir));
    json_object_set_new(job, "backend", json_string(stk_backend_names[g->backend]));
    json_object_set_new(job, "kubeconfig", json_string(g->kubeconfig));
    json_object_set_new(job, "context", json_string(g->context));
    json_object_set_new(job, "actor", json_string(actor));
    _cleanup_free_ char *text = json_dumps(job, JSON_COMPACT);
    json_decref(job);
    /* a memfd, not a pipe: a 1 MiB spec must not block the event loop */
    _cleanup_close_ int mfd = memfd_create("stockade-job", MFD_CLOEXEC);
    if (!text)
        return -EINVAL;
    if (mfd < 0)
        return -errno;
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t w = write(mfd, text + off, len - off);
        if (w <= 0)
            return -EIO;
        off += (size_t)w;
    }
    if (lseek(mfd, 0, SEEK_SET) < 0)
        return -errno;
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        gw_child_signals();
        /* fds[i] → 4 + i, the job → 3; each dup'd above the range first,
         * so no move overwrites a descriptor still to be moved */
        int tmp[8];
        int job_tmp = fcntl(mfd, F_DUPFD, 64);
        for (size_t i = 0; i < n && i < 8; i++)
            tmp[i] = fcntl(fds[i], F_DUPFD, 64);
        if (job_tmp < 0 || dup2(job_tmp, GW_W_JOB_FD) < 0)
            _exit(127);
        for (size_t i = 0; i < n && i < 8; i++)
            if (tmp[i] < 0 || dup2(tmp[i], GW_W_OUT_FD + (int)i) < 0)
                _exit(127);
        (void)close_range((unsigned)GW_W_OUT_FD + (unsigned)n, ~0U, 0);
        char arg0[] = "stockade", arg1[] = STK_GW_WORKER_VERB;
        char *args[] = {arg0, arg1, NULL};
        execv("/proc/self/exe", args);
        _exit(127);
    }
    *ret = pid;
    return 0;
}
