/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The gate: every connection's bytes pass a bufferevent filter before
 * evhttp sees them, so that nothing is held for a caller who is not
 * allowed to send it (docs/gateway.md, "Limits").
 *
 * - A connection counts from its first byte (accept), not from its first
 *   finished request; at STK_GW_MAX_CONNECTIONS the oldest connection that
 *   has not passed an authenticated request is closed to make room (an attacker's
 *   half-sent requests never lock others out).
 * - A request's head (request line and headers, at most
 *   STK_GW_MAX_HEADERS) is read by the gate; a request with a body is
 *   authenticated, and its route's verb checked against the caller's
 *   grants, before a byte of the body is read: a refused one is answered
 *   (401, 403, 404, 503) from here and its body is read and dropped, never
 *   buffered. Only then does evhttp get the head, and the body as it
 *   arrives.
 * - Bodies passed on count against GW_BODY_BYTES_IN_FLIGHT in all: past
 *   it a request is refused (503) before its body is read.
 * evhttp still parses and authorizes every request itself; the gate only
 * decides what may be read.
 *
 * Plain and TLS connections alike: over TLS the filter sits above the TLS
 * bufferevent (it reads what that one decrypted), and its output is
 * written with SSL_write straight to the socket, never queued in the TLS
 * bufferevent, whose queued output would be lost when evhttp closes the
 * connection right after a reply.
 */
#include "gateway/server.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <string.h>
#include <sys/socket.h>

enum gate_state {
    GATE_HEAD,    /* reading a request's head */
    GATE_BODY,    /* passing an allowed body on */
    GATE_REFUSED, /* answered here: what comes is read and dropped */
    GATE_OPEN,    /* evhttp's from now on (a head evhttp refuses, then closes) */
    GATE_TAKEN,   /* after an exec's body: the relay owns the socket; nothing more is read */
};

struct gw_gate {
    struct stk_gw *g;
    struct bufferevent *under, *bev;
    SSL *ssl; /* the TLS connection under the gate; NULL on a plain socket */
    struct event *ev_flush, *ev_writable;
    enum gate_state state;
    bool passed;   /* an authenticated request went through: not evicted for room */
    bool evicted;  /* shut down to make room; closing */
    bool busy;     /* opened beyond the cap with nothing to evict: 503 */
    bool upgrade;  /* the body being passed is an exec's: frames follow */
    bool flushing; /* in gate_flush: output may go to the socket */
    int64_t body_left, in_flight;
    int64_t t0_ms; /* the head's arrival (the access log's duration) */
    struct gw_gate *prev, *next;
};

static void gate_flush(evutil_socket_t fd, short what, void *arg);

#define GATE_TLS_RECORD 16384

/* The verb a route's body is read for. */
static const enum stk_verb body_verbs[_GW_ROUTE_N] = {
    [GW_SB_CREATE] = STK_VERB_CREATE,   [GW_SB_STOP] = STK_VERB_STOP,
    [GW_SB_START] = STK_VERB_START,     [GW_SB_EXEC] = STK_VERB_EXEC,
    [GW_POOL_CREATE] = STK_VERB_CREATE, [GW_SB_FILE_PUT] = STK_VERB_EXEC,
};

static bool takes_body(enum gw_route r)
{
    return r == GW_SB_CREATE || r == GW_SB_STOP || r == GW_SB_START || r == GW_SB_EXEC ||
           r == GW_POOL_CREATE || r == GW_SB_FILE_PUT;
}

static void gate_unlink(struct gw_gate *k)
{
    struct stk_gw *g = k->g;
    if (k->prev)
        k->prev->next = k->next;
    else
        g->gates = k->next;
    if (k->next)
        k->next->prev = k->prev;
    else
        g->gates_tail = k->prev;
}

static void gate_free(void *ctx)
{
    struct gw_gate *k = ctx;
    event_free(k->ev_flush);
    if (k->ev_writable)
        event_free(k->ev_writable);
    /* the socket's bufferevent goes when the filter's last reference does
     * (libevent 2.1 drops it after this); until then nothing of it may call
     * back into the filter being destroyed */
    bufferevent_setcb(k->under, NULL, NULL, NULL, NULL);
    bufferevent_disable(k->under, EV_READ | EV_WRITE);

    k->g->n_open--;
    k->g->body_bytes -= k->in_flight;
    gate_unlink(k);
    free(k);
}

/* The answer to a refused request, written past evhttp (it never saw the
 * request) with Connection: close; h is NULL when no head was read. */
static void gate_reply(struct gw_gate *k, const struct gw_head *h, const char *who,
                       enum gw_route route, enum gw_err code, const char *msg)
{
    json_t *j = gw_error_json(code, msg);
    char *body = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(j);
    int status = gw_err_status[code];
    char extra[128] = "";
    if (code == GW_E_UNAUTHENTICATED)
        snprintf(extra, sizeof(extra), "WWW-Authenticate: %s\r\n",
                 !strcmp(msg, "invalid credentials") ? GW_WWW_AUTH_INVALID : GW_WWW_AUTH);
    if (code == GW_E_METHOD && h) {
        char allow[64];
        gw_route_allow(h->path, allow, sizeof(allow));
        snprintf(extra, sizeof(extra), "Allow: %s\r\n", allow);
    }
    evbuffer_add_printf(bufferevent_get_output(k->under),
                        "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n%s"
                        "Content-Length: %zu\r\nConnection: close\r\n\r\n%s\n",
                        status, gw_status_phrase(status), extra, strlen(body ? body : "{}") + 1,
                        body ? body : "{}");
    free(body);
    gw_count(k->g, route, status);
    gw_access_log(k->g, h ? h->method : "", h ? h->path : "", status, who, k->t0_ms);
    k->state = GATE_REFUSED;
}

/* Whether the request whose head is h may send its body: replies and
 * returns false when not. */
static bool gate_admit(struct gw_gate *k, const struct gw_head *h)
{
    struct stk_gw *g = k->g;
    enum gw_route route = _GW_ROUTE_N;
    char arg[64] = "";
    if (h->chunked) {
        gate_reply(k, h, NULL, route, GW_E_BAD_REQUEST,
                   "chunked request bodies are not accepted: send Content-Length");
        return false;
    }
    struct stk_principal who;
    int r = gw_authenticate(g, k->under, h->n_authorization ? h->authorization : NULL,
                            h->n_authorization, &who);
    if (r < 0) {
        gate_reply(k, h, NULL, route, GW_E_UNAUTHENTICATED,
                   r == -ENOENT ? "authentication required" : "invalid credentials");
        return false;
    }
    char name[256];
    gw_principal_name(&who, name, sizeof(name));
    int rr = gw_route_parse(h->method, h->path, &route, arg);
    if (rr < 0 || !takes_body(route)) {
        stk_principal_release(&who);
        gate_reply(k, h, name, rr < 0 ? _GW_ROUTE_N : route,
                   rr == -EPERM ? GW_E_METHOD : GW_E_NOT_FOUND,
                   rr == -EPERM ? "method not allowed" : "no such endpoint");
        return false;
    }
    bool known = true;
    bool ok =
        !g->auth->lists_verb || g->auth->lists_verb(g->auth->ud, &who, body_verbs[route], &known);
    if (!ok)
        gw_gate_denied(g, &who, body_verbs[route], arg[0] ? arg : gw_routes[route].pattern, known);
    /* on one sandbox: the whole decision on it, from the head */
    int target = ok && arg[0] ? gw_gate_target(g, &who, body_verbs[route], arg) : -1;
    stk_principal_release(&who);
    if (target >= 0) {
        char msg[128];
        if (target == GW_E_NOT_FOUND)
            snprintf(msg, sizeof(msg), "no sandbox \"%s\"", arg);
        else
            snprintf(msg, sizeof(msg), "%s on sandbox/%s is not allowed",
                     stk_verb_names[body_verbs[route]], arg);
        gate_reply(k, h, name, route, (enum gw_err)target, msg);
        return false;
    }
    if (!ok) {
        /* on one sandbox: the 404 of a missing one, whatever the caller may see */
        char msg[128];
        if (arg[0])
            snprintf(msg, sizeof(msg), "no sandbox \"%s\"", arg);
        else
            snprintf(msg, sizeof(msg), "%s on %s is not allowed", stk_verb_names[body_verbs[route]],
                     gw_routes[route].pattern);
        gate_reply(k, h, name, route, arg[0] ? GW_E_NOT_FOUND : GW_E_FORBIDDEN, msg);
        return false;
    }
    if (g->body_bytes + h->content_length > GW_BODY_BYTES_IN_FLIGHT) {
        gate_reply(k, h, name, route, GW_E_UNAVAILABLE, "too many request bodies in flight: retry");
        return false;
    }
    return true;
}

static bool gate_someone(struct gw_gate *k, const struct gw_head *h)
{
    struct stk_gw *g = k->g;
    char subject[GW_CERT_SUBJECT_MAX];
    if (h->n_authorization > 1)
        return false;
    int cr = gw_cert_subject(k->under, subject, sizeof(subject));
    struct stk_principal who;
    memset(&who, 0, sizeof(who));
    int r = g->auth->authenticate(g->auth->ud, h->n_authorization ? h->authorization : NULL,
                                  cr > 0 ? subject : NULL, &who);
    stk_principal_release(&who);
    return r >= 0;
}

/* At the end of a head: on to evhttp, or refused. */
static void gate_head(struct gw_gate *k, struct evbuffer *src, struct evbuffer *dst, size_t len)
{
    const char *buf = (const char *)evbuffer_pullup(src, (ev_ssize_t)len);
    struct gw_head h;
    bool has_body;
    k->t0_ms = gw_now_ms();
    if (gw_head_parse(buf, len, &h) < 0) {
        gate_reply(k, NULL, NULL, _GW_ROUTE_N, GW_E_BAD_REQUEST, "malformed request head");
        return;
    }
    has_body = h.chunked || h.content_length > 0;
    /* the file route's body is the file (16 MiB); every other's 1 MiB */
    enum gw_route route;
    char arg[64];
    bool file_put = gw_route_parse(h.method, h.path, &route, arg) == 0 && route == GW_SB_FILE_PUT;
    int64_t limit = file_put ? STK_GW_MAX_FILE_BODY : STK_GW_MAX_BODY;
    if (has_body && h.content_length > limit) {
        char msg[96];
        snprintf(msg, sizeof(msg), "the body is over %s", file_put ? "16 MiB" : "1 MiB");
        gate_reply(k, &h, NULL, file_put ? route : _GW_ROUTE_N, GW_E_TOO_LARGE, msg);
        return;
    } else if (has_body) {
        if (!gate_admit(k, &h))
            return;
        k->state = GATE_BODY;
        k->body_left = k->in_flight = h.content_length;
        k->g->body_bytes += k->in_flight;
        k->passed = true;
    } else if (!k->passed) {
        /* evhttp authenticates it (and records a failure); the gate only
         * asks whether the connection is someone's, so that an
         * unauthenticated one stays first to go at the cap */
        k->passed = gate_someone(k, &h);
    }
    evbuffer_remove_buffer(src, dst, len);
    /* after an exec's head and body the connection carries frames */
    if (k->state == GATE_BODY && gw_route_parse(h.method, h.path, &route, arg) == 0 &&
        route == GW_SB_EXEC)
        k->upgrade = true;
}

static enum bufferevent_filter_result gate_in(struct evbuffer *src, struct evbuffer *dst,
                                              ev_ssize_t limit, enum bufferevent_flush_mode mode,
                                              void *ctx)
{
    (void)limit;
    (void)mode;
    struct gw_gate *k = ctx;
    bool out = false;
    if (k->busy) {
        k->busy = false;
        gate_reply(k, NULL, NULL, _GW_ROUTE_N, GW_E_UNAVAILABLE, "too many connections: retry");
    }
    for (;;) {
        size_t n = evbuffer_get_length(src);
        if (n == 0)
            break;
        if (k->state == GATE_OPEN) {
            evbuffer_add_buffer(dst, src);
            out = true;
            break;
        }
        if (k->state == GATE_REFUSED || k->state == GATE_TAKEN) {
            evbuffer_drain(src, n);
            break;
        }
        if (k->state == GATE_BODY) {
            size_t m = n < (size_t)k->body_left ? n : (size_t)k->body_left;
            evbuffer_remove_buffer(src, dst, m);
            out = true;
            k->body_left -= (int64_t)m;
            if (k->body_left == 0) {
                /* evhttp has it all and answers now */
                k->g->body_bytes -= k->in_flight;
                k->in_flight = 0;
                k->state = k->upgrade ? GATE_TAKEN : GATE_HEAD;
            }
            continue;
        }
        size_t scan = n < GW_GATE_MAX_HEAD ? n : GW_GATE_MAX_HEAD;
        const char *buf = (const char *)evbuffer_pullup(src, (ev_ssize_t)scan);
        ssize_t end = gw_head_end(buf, scan);
        if (end < 0) {
            if (n >= GW_GATE_MAX_HEAD) {
                k->state = GATE_OPEN; /* evhttp refuses a head this long */
                continue;
            }
            break;
        }
        gate_head(k, src, dst, (size_t)end);
        if (k->state != GATE_REFUSED)
            out = true;
    }
    return out ? BEV_OK : BEV_NEED_MORE;
}

/*
 * Plain sockets: output goes straight to the socket. The filter reports a
 * write as done once its own buffer is empty, and evhttp then may close the
 * connection (shutting the socket down): had the bytes only moved to the
 * bufferevent below, the end of a reply would be lost. What the socket does
 * not take stays here until it is writable.
 */
/* Writes from the start of src: bytes written, -EAGAIN (again when the
 * socket is writable), -EINPROGRESS (TLS wants to read first: again
 * shortly), or -EPIPE (the peer is gone). */
static int gate_write(struct gw_gate *k, int fd, struct evbuffer *src)
{
    if (!k->ssl) {
        int n = evbuffer_write(src, fd);
        if (n > 0)
            return n;
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? -EAGAIN : -EPIPE;
    }
    /* one TLS record of up to 16 KiB at a time: a reply's head and body
     * written apart would wait on Nagle and the peer's delayed ACK */
    size_t len = evbuffer_get_length(src);
    if (len > GATE_TLS_RECORD)
        len = GATE_TLS_RECORD;
    const unsigned char *p = evbuffer_pullup(src, (ev_ssize_t)len);
    if (!p)
        return -EPIPE;
    ERR_clear_error();
    int n = SSL_write(k->ssl, p, (int)len);
    if (n > 0) {
        evbuffer_drain(src, (size_t)n);
        return n;
    }
    int e = SSL_get_error(k->ssl, n);
    ERR_clear_error();
    return e == SSL_ERROR_WANT_WRITE ? -EAGAIN : e == SSL_ERROR_WANT_READ ? -EINPROGRESS : -EPIPE;
}

/*
 * Output goes straight to the socket (through SSL_write over TLS). The
 * filter reports a write as done once its own buffer is empty, and evhttp
 * then may close the connection (shutting the socket down): had the bytes
 * only moved to the bufferevent below, the end of a reply would be lost.
 * What the socket does not take stays here until it is writable.
 */
static enum bufferevent_filter_result gate_out(struct evbuffer *src, struct evbuffer *dst,
                                               ev_ssize_t limit, enum bufferevent_flush_mode mode,
                                               void *ctx)
{
    (void)limit;
    (void)mode;
    struct gw_gate *k = ctx;
    int fd = bufferevent_getfd(k->under);
    /* Never while evhttp is adding to the output: the filter would report
     * the write done (and evhttp run its next step) in the middle of it. A
     * socket reports from the event loop; so does the gate (gate_flush). */
    if (!k->flushing)
        return BEV_NEED_MORE;
    if (fd < 0) {
        evbuffer_add_buffer(dst, src);
        return BEV_OK;
    }
    bool wrote = false;
    while (evbuffer_get_length(src)) {
        int n = gate_write(k, fd, src);
        if (n > 0) {
            wrote = true;
            continue;
        }
        if (n == -EAGAIN || n == -EINPROGRESS) {
            if (!k->ev_writable)
                k->ev_writable =
                    event_new(bufferevent_get_base(k->under), fd, EV_WRITE, gate_flush, k);
            /* a TLS write waiting on a read (renegotiation is refused, so
             * hardly ever) is retried shortly, not spun on; any other waits
             * for the socket */
            struct timeval retry = {.tv_usec = 10000};
            if (k->ev_writable)
                event_add(k->ev_writable, n == -EINPROGRESS ? &retry : NULL);
            break;
        }
        /* the peer is gone: evhttp learns it from the read side */
        evbuffer_drain(src, evbuffer_get_length(src));
        wrote = true;
    }
    return wrote ? BEV_OK : BEV_NEED_MORE;
}

/*
 * libevent 2.1's filter moves output on only while the filter's EV_WRITE is
 * enabled, and evhttp writes a reply before it enables EV_WRITE: the reply
 * would wait for the next write that never comes. What evhttp adds is
 * flushed once its callback has returned (write enabled by then).
 */
static void gate_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct gw_gate *k = arg;
    struct bufferevent *bev = k->bev;
    /* evhttp may close the connection from the write callback: the gate
     * lives until the reference taken here goes */
    bufferevent_incref(bev);
    k->flushing = true;
    bufferevent_flush(bev, EV_WRITE, BEV_NORMAL);
    k->flushing = false;
    bufferevent_decref(bev);
}

static void gate_out_added(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    (void)buf;
    struct gw_gate *k = arg;
    if (info->n_added)
        event_active(k->ev_flush, EV_TIMEOUT, 0);
}

/* Makes room at the cap: the oldest connection that never passed a
 * request is shut down (evhttp then closes it). */
static bool gate_evict(struct stk_gw *g)
{
    for (struct gw_gate *k = g->gates; k; k = k->next) {
        if (k->passed || k->evicted)
            continue;
        int fd = bufferevent_getfd(k->under);
        if (fd < 0)
            continue;
        k->evicted = true;
        (void)shutdown(fd, SHUT_RDWR);
        return true;
    }
    return false;
}

struct bufferevent *gw_gate_new(struct stk_gw *g, struct bufferevent *under)
{
    struct gw_gate *k = stk_xcalloc(1, sizeof(*k));
    k->g = g;
    k->under = under;
    k->ssl = bufferevent_openssl_get_ssl(under);
    k->ev_flush = event_new(bufferevent_get_base(under), -1, 0, gate_flush, k);
    struct bufferevent *bev =
        k->ev_flush
            ? bufferevent_filter_new(under, gate_in, gate_out, BEV_OPT_CLOSE_ON_FREE, gate_free, k)
            : NULL;
    if (!bev) {
        if (k->ev_flush)
            event_free(k->ev_flush);
        bufferevent_free(under);
        free(k);
        return NULL;
    }
    k->bev = bev;
    evbuffer_add_cb(bufferevent_get_output(bev), gate_out_added, k);
    k->prev = g->gates_tail;
    if (g->gates_tail)
        g->gates_tail->next = k;
    else
        g->gates = k;
    g->gates_tail = k;
    g->n_open++;
    if (g->n_open > STK_GW_MAX_CONNECTIONS && !gate_evict(g))
        k->busy = true;
    return bev;
}
