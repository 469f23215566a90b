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

static int write_all(int fd, const void *data, size_t n)
{
    const char *p = data;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -errno;
        p += w;
        n -= (size_t)w;
    }
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

struct log_reader {
    int fd;
    char buf[LOG_RECORD_MAX + LOG_HEADER_MAX];
    size_t have;
};

/* Copies every whole record available in r's file. Returns 0, or -EBADMSG
 * when the file is not a log. */
static int copy_records(struct log_reader *r, int64_t since_ms, int out_fd, int err_fd)
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
            if (ms >= since_ms)
                (void)write_all(stream == 2 ? err_fd : out_fd, r->buf + off + h, len);
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
    if (s->drv->ops->logs) {
        /* the backend keeps them (a cluster's pods/log) */
        struct session_sb sb;
        int r = session_sb_load(s, id, false, &sb, err);
        if (r < 0)
            return r;
        struct stk_driver_logs_req req = {
            .since_ms = since_ms, .tail = -1, .follow = follow, .out_fd = out_fd, .err_fd = err_fd};
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
        r = copy_records(lr, since_ms, out_fd, err_fd);
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
            r = copy_records(lr, since_ms, out_fd, err_fd);
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
