/* SPDX-License-Identifier: Apache-2.0 */
/*
 * List then watch, the way client-go's reflector does it: list for a
 * consistent snapshot and its resourceVersion, then watch from there with
 * bookmarks; 410 Gone means the resourceVersion fell out of the server's
 * window, so list again; a dropped connection resumes from the last
 * resourceVersion seen after a backoff. Also pods/log, which streams the
 * same way.
 */
#include "driver/kubernetes/internal.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* ---- the newline splitter ------------------------------------------------ */

void stk_kube_lines_free(struct stk_kube_lines *l)
{
    stk_buf_free(&l->buf);
}

int stk_kube_lines_feed(struct stk_kube_lines *l, const char *data, size_t n, stk_kube_line_fn fn,
                        void *ud, struct stk_error **err)
{
    size_t max = l->max ? l->max : STK_KUBE_MAX_LINE;
    while (n > 0) {
        const char *nl = memchr(data, '\n', n);
        size_t take = nl ? (size_t)(nl - data) : n;
        if (take > max || l->buf.len > max - take)
            return stk_error_make(err, EMSGSIZE, "watch event longer than %zu bytes", max);
        if (!nl) {
            stk_buf_append(&l->buf, data, take);
            return 0;
        }
        /* copied even when whole: fn gets a NUL-terminated, writable line */
        stk_buf_append(&l->buf, data, take);
        char *line = l->buf.data;
        size_t len = l->buf.len;
        data += take + 1;
        n -= take + 1;
        if (len > 0 && line[len - 1] == '\r')
            line[--len] = '\0';
        int r = len > 0 ? fn(ud, line, len) : 0;
        l->buf.len = 0;
        if (l->buf.data)
            l->buf.data[0] = '\0';
        if (r != 0)
            return r;
    }
    return 0;
}

int stk_kube_event_parse(const char *line, size_t len, json_t **ret_event, const char **ret_type,
                         json_t **ret_obj, struct stk_error **err)
{
    json_error_t je;
    json_t *ev = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
    if (!ev)
        return stk_error_make(err, EPROTO, "watch event is not JSON: %s (column %d)", je.text,
                              je.column);
    const char *type = json_string_value(json_object_get(ev, "type"));
    json_t *obj = json_object_get(ev, "object");
    if (!type || !json_is_object(obj)) {
        json_decref(ev);
        return stk_error_make(err, EPROTO, "watch event without type and object");
    }
    *ret_event = ev;
    *ret_type = type;
    *ret_obj = obj;
    return 0;
}

/* ---- list + watch ---------------------------------------------------------- */

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
/* The server ends a watch after this (plus its own jitter); the client gives
 * up on a silent connection a little later. */
#define WATCH_SERVER_S 290
#define WATCH_SLACK_MS 30000

struct watch {
    struct stk_kube *k;
    const char *what;
    stk_kube_watch_fn fn;
    void *ud;
    char *rv;
    struct stk_kube_lines lines;
    int fn_result; /* non-zero: fn stopped the watch */
    bool gone;     /* 410: list again */
    bool progressed;
    int err_code; /* an ERROR event that is not 410 */
    char *err_msg;
};

static void set_rv(struct watch *w, const json_t *obj)
{
    const char *rv =
        json_string_value(json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
    if (rv && *rv) {
        free(w->rv);
        w->rv = stk_xstrdup(rv);
    }
}

/* One event. Non-zero stops the stream (its value is kept in w). */
static int on_line(void *ud, char *line, size_t len)
{
    struct watch *w = ud;
    json_auto_t *ev = NULL;
    json_t *obj = NULL;
    const char *type = NULL;
    if (stk_kube_event_parse(line, len, &ev, &type, &obj, NULL) < 0) {
        w->err_code = EPROTO;
        w->err_msg = stk_xstrdup("malformed watch event");
        return -EPROTO;
    }
    w->progressed = true;
    if (strcmp(type, "BOOKMARK") == 0) {
        set_rv(w, obj);
        return 0;
    }
    if (strcmp(type, "ERROR") == 0) {
        long code = (long)json_integer_value(json_object_get(obj, "code"));
        if (code == 410) {
            w->gone = true;
            return -ESTALE;
        }
        const char *msg = json_string_value(json_object_get(obj, "message"));
        w->err_code = -kube_status_errno(code, obj);
        free(w->err_msg);
        w->err_msg = stk_xasprintf("ERROR event %ld: %s", code, msg ? msg : "");
        return -w->err_code;
    }
    if (strcmp(type, "ADDED") != 0 && strcmp(type, "MODIFIED") != 0 && strcmp(type, "DELETED") != 0)
        return 0; /* a type this client does not know: skipped */
    set_rv(w, obj);
    int r = w->fn(w->ud, type, obj);
    if (r != 0) {
        w->fn_result = r;
        return r;
    }
    return 0;
}

static size_t watch_sink(void *ud, const char *data, size_t n)
{
    struct watch *w = ud;
    int r = stk_kube_lines_feed(&w->lines, data, n, on_line, w, NULL);
    if (r == -EMSGSIZE && !w->fn_result && !w->gone && !w->err_code) {
        w->err_code = EMSGSIZE;
        w->err_msg = stk_xasprintf("watch event longer than %u bytes", STK_KUBE_MAX_LINE);
    }
    return r == 0 ? n : 0;
}

static int64_t remaining_ms(int64_t deadline)
{
    if (deadline < 0)
        return -1;
    int64_t left = deadline - stk_clock_ms(CLOCK_MONOTONIC);
    return left > 0 ? left : 0;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

/* Waits out the backoff; false when the deadline comes first. */
static bool backoff(int *delay, int64_t deadline)
{
    int64_t left = remaining_ms(deadline);
    if (left == 0)
        return false;
    int64_t d = *delay;
    if (left > 0 && left < d)
        d = left;
    sleep_ms(d);
    *delay = *delay * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : *delay * 2;
    return remaining_ms(deadline) != 0;
}

static bool transient(int e)
{
    return e == -EIO || e == -ETIMEDOUT;
}

static int relist(struct watch *w, const struct stk_kube_ref *coll, const char *labels,
                  const char *fields, struct stk_error **err)
{
    json_t *lst = NULL;
    int r = kube_list(w->k, coll, labels, fields, &lst, err);
    if (r < 0)
        return r;
    json_auto_t *l = lst;
    size_t i;
    json_t *item;
    json_array_foreach(json_object_get(l, "items"), i, item)
    {
        r = w->fn(w->ud, "SYNC", item);
        if (r != 0) {
            w->fn_result = r;
            return r;
        }
    }
    json_object_del(l, "items");
    set_rv(w, l);
    r = w->fn(w->ud, "SYNCED", l);
    if (r != 0)
        w->fn_result = r;
    return r;
}

static int stopped(struct watch *w, struct stk_error **err)
{
    if (w->fn_result < 0)
        return kube_error(w->k, err, -w->fn_result, "watch %s: stopped by the caller (%s)", w->what,
                          strerror(-w->fn_result));
    return w->fn_result;
}

int stk_kube_watch(struct stk_kube *k, const struct stk_kube_ref *collection,
                   const char *label_selector, const char *field_selector, int timeout_ms,
                   stk_kube_watch_fn fn, void *ud, struct stk_error **err)
{
    struct stk_kube_ref coll = *collection;
    coll.name = NULL;
    _cleanup_buf_ struct stk_buf what = {0};
    _cleanup_buf_ struct stk_buf base = {0};
    stk_kube_ref_describe(&coll, &what);
    int r = stk_kube_path(k, &coll, &base, err);
    if (r < 0)
        return stk_error_wrap(err, "watch %s", stk_buf_str(&what));
    int64_t deadline = timeout_ms >= 0 ? stk_clock_ms(CLOCK_MONOTONIC) + timeout_ms : -1;
    struct watch w = {.k = k, .what = stk_buf_str(&what), .fn = fn, .ud = ud};
    bool need_list = true;
    int delay = BACKOFF_MIN_MS;
    struct stk_error *last = NULL;

    for (;;) {
        stk_error_free(last);
        last = NULL;
        if (remaining_ms(deadline) == 0) {
            r = kube_error(k, err, ETIMEDOUT, "watch %s: no end within %d ms", w.what, timeout_ms);
            break;
        }
        if (need_list) {
            w.gone = false;
            r = relist(&w, &coll, label_selector, field_selector, &last);
            if (w.fn_result) {
                r = stopped(&w, err);
                break;
            }
            if (r < 0 && transient(r) && backoff(&delay, deadline))
                continue;
            if (r < 0) {
                r = last ? stk_error_wrap(&last, "watch %s", w.what) : r;
                if (err)
                    *err = TAKE_PTR(last);
                break;
            }
            need_list = false;
        }
        _cleanup_buf_ struct stk_buf path = {0};
        stk_buf_printf(&path, "%s?watch=1&allowWatchBookmarks=true&timeoutSeconds=%d",
                       stk_buf_str(&base), WATCH_SERVER_S);
        if (w.rv) {
            stk_buf_puts(&path, "&resourceVersion=");
            kube_query_escape(&path, w.rv);
        }
        if (label_selector && *label_selector) {
            stk_buf_puts(&path, "&labelSelector=");
            kube_query_escape(&path, label_selector);
        }
        if (field_selector && *field_selector) {
            stk_buf_puts(&path, "&fieldSelector=");
            kube_query_escape(&path, field_selector);
        }
        int64_t left = remaining_ms(deadline);
        int limit = WATCH_SERVER_S * 1000 + WATCH_SLACK_MS;
        if (left >= 0 && left < limit)
            limit = (int)(left > 0 ? left : 1);
        _cleanup_buf_ struct stk_buf errbody = {0};
        struct kube_http h = {.method = "GET",
                              .path = stk_buf_str(&path),
                              .timeout_ms = limit,
                              .sink = watch_sink,
                              .sink_ud = &w};
        long status = 0;
        w.progressed = false;
        w.lines.buf.len = 0;
        r = kube_http(k, &h, &status, &errbody, &last);
        if (w.progressed)
            delay = BACKOFF_MIN_MS;
        if (w.fn_result) {
            r = stopped(&w, err);
            break;
        }
        if (w.gone) {
            need_list = true;
            continue;
        }
        if (w.err_code) {
            r = w.err_code;
            _cleanup_free_ char *m = TAKE_PTR(w.err_msg);
            w.err_code = 0;
            if (transient(-r) && backoff(&delay, deadline))
                continue;
            r = kube_error(k, err, r, "watch %s: %s", w.what, m);
            break;
        }
        if (r < 0) {
            if (r == -ETIMEDOUT && remaining_ms(deadline) == 0)
                continue; /* reported at the top */
            if (transient(r) && backoff(&delay, deadline))
                continue;
            r = stk_error_wrap(&last, "watch %s", w.what);
            if (err)
                *err = TAKE_PTR(last);
            break;
        }
        if (status == 410) {
            need_list = true;
            continue;
        }
        if (status < 200 || status > 299) {
            r = kube_status_error(k, status, errbody.data, errbody.len, "watch", w.what, &last);
            if (transient(r) && backoff(&delay, deadline))
                continue;
            if (err)
                *err = TAKE_PTR(last);
            break;
        }
        /* the server ended the watch (timeoutSeconds): resume at once */
    }
    stk_error_free(last);
    stk_kube_lines_free(&w.lines);
    free(w.rv);
    free(w.err_msg);
    return r;
}

/* ---- pods/log --------------------------------------------------------------- */

struct logs {
    int fd;
    int err; /* errno of a failed write */
};

static size_t logs_sink(void *ud, const char *data, size_t n)
{
    struct logs *l = ud;
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(l->fd, data + done, n - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd p = {.fd = l->fd, .events = POLLOUT};
            (void)poll(&p, 1, -1);
            continue;
        }
        if (w < 0) {
            l->err = errno;
            return 0;
        }
        done += (size_t)w;
    }
    return n;
}

int stk_kube_logs(struct stk_kube *k, const struct stk_kube_logs_req *q, struct stk_error **err)
{
    struct stk_kube_ref pod = {
        .api_version = "v1", .kind = "Pod", .namespace = q->namespace, .name = q->pod};
    _cleanup_buf_ struct stk_buf what = {0};
    _cleanup_buf_ struct stk_buf path = {0};
    stk_kube_ref_describe(&pod, &what);
    int r = stk_kube_path(k, &pod, &path, err);
    if (r < 0)
        return stk_error_wrap(err, "logs %s", stk_buf_str(&what));
    stk_buf_puts(&path, "/log?");
    if (q->container) {
        if (!kube_dns_label(q->container))
            return kube_error(k, err, EINVAL, "logs %s: container \"%s\" is not a DNS label",
                              stk_buf_str(&what), q->container);
        stk_buf_printf(&path, "container=%s&", q->container);
    }
    if (q->follow)
        stk_buf_puts(&path, "follow=true&");
    if (q->previous)
        stk_buf_puts(&path, "previous=true&");
    if (q->timestamps)
        stk_buf_puts(&path, "timestamps=true&");
    if (q->tail_lines >= 0)
        stk_buf_printf(&path, "tailLines=%ld&", q->tail_lines);
    if (q->since_ms > 0) {
        time_t t = (time_t)(q->since_ms / 1000);
        struct tm tm;
        char ts[32];
        gmtime_r(&t, &tm);
        strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
        stk_buf_printf(&path, "sinceTime=%s&", ts);
    }
    path.data[--path.len] = '\0'; /* the last '&' or '?' */
    struct logs l = {.fd = q->out_fd};
    _cleanup_buf_ struct stk_buf errbody = {0};
    struct kube_http h = {.method = "GET",
                          .path = stk_buf_str(&path),
                          .timeout_ms = q->follow ? -1 : 0,
                          .sink = q->sink ? q->sink : logs_sink,
                          .sink_ud = q->sink ? q->sink_ud : &l,
                          .cancel = q->cancel};
    long status = 0;
    r = kube_http(k, &h, &status, &errbody, err);
    if (r == 1 && l.err)
        return kube_error(k, err, l.err, "logs %s: writing the output: %s", stk_buf_str(&what),
                          strerror(l.err));
    if (r < 0)
        return stk_error_wrap(err, "logs %s", stk_buf_str(&what));
    if (r == 1 && q->cancel && atomic_load(q->cancel))
        return 0;
    if (status < 200 || status > 299)
        return kube_status_error(k, status, errbody.data, errbody.len, "logs", stk_buf_str(&what),
                                 err);
    return 0;
}

/* ---- where a log follower stands ------------------------------------------------------- */

/* "2026-12-05T03:12:53.989123456Z" → seconds and nanoseconds (UTC). */
static int log_stamp(const char *s, size_t len, int64_t *sec, int32_t *nsec)
{
    char buf[40];
    if (len < 20 || len >= sizeof(buf))
        return -EPROTO;
    memcpy(buf, s, len);
    buf[len] = '\0';
    struct tm tm = {0};
    const char *p = strptime(buf, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!p)
        return -EPROTO;
    int32_t ns = 0;
    if (*p == '.') {
        int digits = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, digits++)
            if (digits < 9)
                ns = ns * 10 + (*p - '0');
        if (digits == 0)
            return -EPROTO;
        for (; digits < 9; digits++)
            ns *= 10;
    }
    if (strcmp(p, "Z"))
        return -EPROTO;
    *sec = (int64_t)timegm(&tm);
    *nsec = ns;
    return 0;
}

int stk_kube_log_line(struct stk_kube_log_pos *pos, const char *line, size_t len,
                      const char **ret_text, size_t *ret_len)
{
    const char *sp = memchr(line, ' ', len);
    int64_t sec;
    int32_t nsec;
    *ret_text = line;
    *ret_len = len;
    if (!sp || log_stamp(line, (size_t)(sp - line), &sec, &nsec) < 0)
        return -EPROTO;
    *ret_text = sp + 1;
    *ret_len = len - (size_t)(sp + 1 - line);
    if (sec < pos->sec || (sec == pos->sec && nsec < pos->nsec))
        return 0; /* before what was delivered */
    if (sec == pos->sec && nsec == pos->nsec) {
        /* lines with the same stamp: the first `count` were delivered */
        if (pos->seen < pos->count) {
            pos->seen++;
            return 0;
        }
        pos->count++;
        pos->seen++;
        return 1;
    }
    pos->sec = sec;
    pos->nsec = nsec;
    pos->count = pos->seen = 1;
    return 1;
}

void stk_kube_log_pos_format(const struct stk_kube_log_pos *pos, char buf[64])
{
    snprintf(buf, 64, "%" PRId64 ".%09" PRId32 " %" PRIu32 "\n", pos->sec, pos->nsec, pos->count);
}

int stk_kube_log_pos_parse(const char *s, struct stk_kube_log_pos *ret)
{
    long long sec;
    long nsec;
    unsigned long count;
    int n = 0;
    if (sscanf(s, "%lld.%9ld %lu%n", &sec, &nsec, &count, &n) != 3 || sec < 0 || nsec < 0 ||
        count > UINT32_MAX || (s[n] && strcmp(s + n, "\n")))
        return -EINVAL;
    *ret = (struct stk_kube_log_pos){.sec = sec, .nsec = (int32_t)nsec, .count = (uint32_t)count};
    return 0;
}
