/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A sandbox's logs: <sandbox dir>/logs/current and logs/previous, each at
 * most STK_LOG_FILE_MAX bytes; when current would grow past it, it becomes
 * previous (the old previous is dropped). So a sandbox never holds more
 * than STK_LOG_KEPT_BYTES of output on the host, and the newest output is
 * always kept.
 *
 * A file is a sequence of records: a header line "<unix ms> <stream>
 * <length>\n" followed by exactly <length> bytes of output (stream 1 is
 * stdout, 2 stderr). Output is stored as the workload wrote it, in the
 * chunks stockade-init read, so binary output survives unchanged.
 */
#include "session/private.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define LOG_HEADER_MAX 48

int log_writer_open(struct log_writer *w, const char *sandbox_dir, struct stk_error **err)
{
    char path[PATH_MAX + 16];
    int r = stk_path_make(w->dir, sizeof(w->dir), err, "%s/logs", sandbox_dir);
    if (r < 0)
        return r;
    if ((r = mkdir_p(w->dir, 0700)) < 0)
        return stk_error_errno(err, -r, "creating %s", w->dir);
    if ((r = stk_path_make(path, sizeof(path), err, "%s/current", w->dir)) < 0)
        return r;
    w->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (w->fd < 0)
        return stk_error_errno(err, errno, "opening %s", path);
    struct stat st;
    w->size = fstat(w->fd, &st) == 0 ? (size_t)st.st_size : 0;
    return 0;
}

static void rotate(struct log_writer *w)
{
    char cur[PATH_MAX + 16], prev[PATH_MAX + 16];
    if (stk_path_fmt(cur, sizeof(cur), "%s/current", w->dir) < 0 ||
        stk_path_fmt(prev, sizeof(prev), "%s/previous", w->dir) < 0 || rename(cur, prev) < 0)
        return;
    int fd = open(cur, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return;
    close(w->fd);
    w->fd = fd;
    w->size = 0;
}

int log_writer_put(struct log_writer *w, int stream, const void *data, size_t n)
{
    if (w->fd < 0 || n == 0)
        return 0;
    if (n > LOG_RECORD_MAX)
        n = LOG_RECORD_MAX;
    char hdr[LOG_HEADER_MAX];
    int h = snprintf(hdr, sizeof(hdr), "%lld %d %zu\n", (long long)stk_clock_ms(CLOCK_REALTIME),
                     stream == 2 ? 2 : 1, n);
    if (w->size + (size_t)h + n > STK_LOG_FILE_MAX && w->size > 0)
        rotate(w);
    /* header and data in one writev; a short or failed write (the disk is
     * full: /workspace shares it) is cut off again, so the file always
     * holds whole records and stays readable */
    struct iovec iov[2] = {{hdr, (size_t)h}, {(void *)(uintptr_t)data, n}};
    size_t want = (size_t)h + n;
    ssize_t wr;
    do
        wr = writev(w->fd, iov, 2);
    while (wr < 0 && errno == EINTR);
    if (wr != (ssize_t)want) {
        int e = wr < 0 ? errno : EIO;
        if (ftruncate(w->fd, (off_t)w->size) < 0)
            w->size = (size_t)lseek(w->fd, 0, SEEK_END); /* cannot cut: at least count right */
        return -e;
    }
    w->size += want;
    return 0;
}

void log_writer_close(struct log_writer *w)
{
    if (w->fd >= 0)
        close(w->fd);
    w->fd = -1;
}

/* Digits up to a stop character; false on anything else or an overflow. */
static bool parse_uint(const char **p, const char *end, char stop, uint64_t max, uint64_t *ret)
{
    const char *s = *p;
    uint64_t v = 0;
    if (s >= end || *s < '0' || *s > '9')
        return false;
    for (; s < end && *s >= '0' && *s <= '9'; s++) {
        uint64_t d = (uint64_t)(*s - '0');
        if (d > max || v > (max - d) / 10)
            return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    if (s >= end || *s != stop)
        return false;
    *p = s + 1;
    *ret = v;
    return true;
}

int log_record_parse(const char *buf, size_t n, int64_t *ret_ms, int *ret_stream, size_t *ret_len)
{
    const char *nl = memchr(buf, '\n', n < LOG_HEADER_MAX ? n : LOG_HEADER_MAX);
    if (!nl)
        return n < LOG_HEADER_MAX ? 0 : -EBADMSG;
    const char *p = buf, *end = nl + 1;
    uint64_t ms, stream, len;
    if (!parse_uint(&p, end, ' ', INT64_MAX, &ms) || !parse_uint(&p, end, ' ', 2, &stream) ||
        !parse_uint(&p, end, '\n', LOG_RECORD_MAX, &len) || p != end || stream < 1)
        return -EBADMSG;
    *ret_ms = (int64_t)ms;
    *ret_stream = (int)stream;
    *ret_len = (size_t)len;
    return (int)(end - buf);
}

/* ---- reading ------------------------------------------------------------------------ */

/* Where records go: counted (the first pass of --tail) or written, with
 * the lines before the tail skipped and each line stamped on request. */
struct log_emit {
    const struct stk_session_logs_req *req;
    int out_fd, err_fd;
    bool counting;
    uint64_t lines; /* counting: lines seen ('\n', and a last partial one) */
    bool open_line; /* counting: the last record did not end a line */
    uint64_t skip;  /* writing: lines still to skip */
    bool at_bol[3]; /* per stream: the next byte starts a line */
};

static void emit(struct log_emit *e, int64_t ms, int stream, const char *data, size_t len)
{
    if (ms < e->req->since_ms || (e->req->until_ms > 0 && ms > e->req->until_ms) || !len)
        return;
    if (e->counting) {
        for (size_t i = 0; i < len; i++)
            e->lines += data[i] == '\n';
        e->open_line = data[len - 1] != '\n';
        return;
    }
    while (e->skip > 0 && len > 0) {
        const char *nl = memchr(data, '\n', len);
        if (!nl)
            return; /* inside a skipped line */
        len -= (size_t)(nl + 1 - data);
        data = nl + 1;
        e->skip--;
    }
    int fd = stream == 2 ? e->err_fd : e->out_fd;
    if (!e->req->timestamps) {
        (void)stk_write_all(fd, data, len);
        return;
    }
    char stamp[48];
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    stk_time_format(&ts, stamp);
    size_t slen = strlen(stamp);
    stamp[slen++] = ' ';
    bool *bol = &e->at_bol[stream == 2 ? 2 : 1];
    while (len > 0) {
        const char *nl = memchr(data, '\n', len);
        size_t n = nl ? (size_t)(nl + 1 - data) : len;
        if (*bol)
            (void)stk_write_all(fd, stamp, slen);
        (void)stk_write_all(fd, data, n);
        *bol = nl != NULL;
        data += n;
        len -= n;
    }
}

struct log_reader {
    int fd;
    char buf[LOG_RECORD_MAX + LOG_HEADER_MAX];
    size_t have;
};

/* Copies every whole record available in r's file. Returns 0, or -EBADMSG
 * when the file is not a log. */
static int copy_records(struct log_reader *r, struct log_emit *e)
{
    for (;;) {
        ssize_t n = read(r->fd, r->buf + r->have, sizeof(r->buf) - r->have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n > 0)
            r->have += (size_t)n;
        size_t off = 0;
        for (;;) {
            int64_t ms;
            int stream;
            size_t len;
            int h = log_record_parse(r->buf + off, r->have - off, &ms, &stream, &len);
            if (h < 0)
                return h;
            if (h == 0 || r->have - off < (size_t)h + len)
                break;
            emit(e, ms, stream, r->buf + off + h, len);
            off += (size_t)h + len;
        }
        memmove(r->buf, r->buf + off, r->have - off);
        r->have -= off;
        if (n <= 0)
            return 0;
    }
}

static bool ended(struct stk_session *s, const char *id)
{
    struct stk_sb_rec rec = {0};
    /* a backend without a monitor: what it observes is applied first */
    if (session_current(s, id, &rec, NULL) < 0)
        return true;
    bool e = rec.phase != STK_SB_READY && rec.phase != STK_SB_STARTING &&
             rec.phase != STK_SB_PROVISIONING && rec.phase != STK_SB_PENDING;
    stk_sb_rec_free(&rec);
    return e;
}

int stk_session_logs(struct stk_session *s, const char *id, int64_t since_ms, bool follow,
                     int out_fd, int err_fd, struct stk_error **err)
{
    struct stk_session_logs_req req = {.since_ms = since_ms, .tail = -1, .follow = follow};
    return stk_session_logs_req(s, id, &req, out_fd, err_fd, err);
}

/* Reads previous then current once, into e. Returns 0 or -EBADMSG. */
static int read_once(struct log_reader *lr, const char *dir, struct log_emit *e)
{
    static const char *const files[] = {"previous", "current"};
    char path[PATH_MAX + 32];
    int r = 0;
    for (size_t i = 0; i < 2 && r >= 0; i++) {
        if (stk_path_fmt(path, sizeof(path), "%s/logs/%s", dir, files[i]) < 0)
            continue;
        lr->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        lr->have = 0;
        if (lr->fd < 0)
            continue;
        r = copy_records(lr, e);
        close(lr->fd);
        lr->fd = -1;
    }
    return r;
}

int stk_session_logs_req(struct stk_session *s, const char *id,
                         const struct stk_session_logs_req *q, int out_fd, int err_fd,
                         struct stk_error **err)
{
    int64_t since_ms = q->since_ms;
    bool follow = q->follow;
    struct log_emit e = {
        .req = q, .out_fd = out_fd, .err_fd = err_fd, .at_bol = {true, true, true}};
    if (s->drv->ops->logs) {
        /* the backend keeps them (a cluster's pods/log) */
        struct session_sb sb;
        int r = session_sb_load(s, id, false, &sb, err);
        if (r < 0)
            return r;
        if (q->timestamps || q->until_ms > 0)
            return stk_error_make(err, ENOTSUP,
                                  "--timestamps and --until: this backend's logs do not have them");
        struct stk_driver_logs_req req = {.since_ms = since_ms,
                                          .tail = q->tail,
                                          .follow = follow,
                                          .out_fd = out_fd,
                                          .err_fd = err_fd};
        r = s->drv->ops->logs(s->drv->ctx, &sb.d, &req, err);
        session_sb_release(&sb);
        return r;
    }
    struct stk_sb_rec rec = {0};
    int r = session_get(s, id, &rec, err);
    if (r < 0)
        return r;
    char dir[PATH_MAX], path[PATH_MAX + 32];
    r = session_dir(s, rec.id, dir, sizeof(dir));
    stk_sb_rec_free(&rec);
    if (r < 0)
        return stk_error_make(err, -r, "the directory of sandbox %s", id);
    struct log_reader *lr = stk_xcalloc(1, sizeof(*lr));
    lr->fd = -1;
    if (q->tail >= 0) {
        /* --tail N: count the lines, then skip all but the last N */
        e.counting = true;
        r = read_once(lr, dir, &e);
        uint64_t total = e.lines + (e.open_line ? 1 : 0);
        e.counting = false;
        e.skip = total > (uint64_t)q->tail ? total - (uint64_t)q->tail : 0;
    }
    static const char *const files[] = {"previous", "current"};
    struct stat cur_st = {0};
    for (size_t i = 0; i < 2 && r >= 0; i++) {
        if (stk_path_fmt(path, sizeof(path), "%s/logs/%s", dir, files[i]) < 0)
            continue;
        lr->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        lr->have = 0;
        if (lr->fd < 0)
            continue;
        if (i == 1)
            (void)fstat(lr->fd, &cur_st);
        r = copy_records(lr, &e);
        if (i == 0 || !follow) {
            close(lr->fd);
            lr->fd = -1;
        }
    }
    /* follow: poll the current file; it may be rotated under us (then the
     * old one is read to its end and the new one from its start) */
    while (r >= 0 && follow) {
        bool done = ended(s, id);
        struct stat st;
        bool rotated = stk_path_fmt(path, sizeof(path), "%s/logs/current", dir) >= 0 &&
                       stat(path, &st) == 0 && (lr->fd < 0 || st.st_ino != cur_st.st_ino);
        if (lr->fd >= 0)
            r = copy_records(lr, &e);
        if (r < 0)
            break;
        if (rotated) {
            if (lr->fd >= 0)
                close(lr->fd);
            lr->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
            lr->have = 0;
            cur_st = st;
            continue;
        }
        if (done)
            break;
        poll(NULL, 0, 100);
    }
    if (lr->fd >= 0)
        close(lr->fd);
    free(lr);
    if (r < 0)
        return stk_error_make(err, EBADMSG, "%s/logs: not a stockade log (damaged?)", dir);
    return 0;
}
