/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The egress proxy's server: one libevent loop on a thread of the process
 * that owns the sandbox (the `run` process or the sandbox's monitor).
 *
 * A connection goes: head (parse, match an allowHosts rule) → resolve (the
 * proxy's own resolver; every answer checked) → connect → for CONNECT the
 * TLS ClientHello's server name checked against the CONNECT name, for plain
 * HTTP the head rewritten to origin form → splice, both ways, with
 * backpressure. Every decision is one record on the events pipe.
 */
#include "proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <jansson.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define SPLICE_HIGH (512u * 1024) /* bytes queued towards one side before reading stops */

struct conn;

/* A binding as the proxy keeps it: its own copies, never the value. */
struct pbinding {
    char *name, *url, *ref, *key, *header, *format;
    enum stk_cred_source source;
};

struct stk_proxy {
    char *sandbox, *hosts_file, *ca_file;
    struct pbinding *bindings;
    size_t n_bindings;
    SSL_CTX *tls;
    struct stk_proxy_config c;
    struct stk_allow_host *allow;
    struct stk_cidr *deny;
    struct event_base *base;
    struct evdns_base *dns;
    struct evconnlistener *lis;
    struct event *stop_ev;
    int wake[2], ev[2];
    pthread_t thread;
    bool running;
    struct conn *conns;
    unsigned n_conns;
    struct stk_cidr host[128];
    size_t n_host;
    int64_t host_at;
    /* the records' budget: a window of one second */
    struct stk_proxy_budget budget;
    /* the owner's side: a partial line */
    char rd[STK_PROXY_RECORD_MAX * 2];
    size_t n_rd;
};

/* C_HEAD (also between requests) → C_RESOLVE → C_CONNECT → CONNECT: C_HELLO →
 * C_SPLICE; HTTP: C_RESPONSE (the upstream's head) → C_BODY → C_HEAD again
 * when the connection persists. */
enum conn_state { C_HEAD, C_RESOLVE, C_CONNECT, C_HELLO, C_RESPONSE, C_BODY, C_SPLICE, C_CLOSING };

struct conn {
    struct stk_proxy *p;
    struct conn *prev, *next;
    struct bufferevent *cli, *up;
    enum conn_state st;
    enum stk_proxy_kind kind;
    char method[16];
    char host[254];
    uint16_t port;
    long rule;
    char addr[INET6_ADDRSTRLEN];
    struct evdns_getaddrinfo_request *dreq;
    struct evbuffer *head_out; /* HTTP: the rewritten head */
    /* a binding's request: which, its path (no query) for the record, and
     * the credential's value while the response head may echo it */
    long binding;
    char *path;
    char *secret;
    int status;        /* the upstream's answer to a binding's request */
    unsigned stripped; /* response headers dropped for echoing the credential */
    /* persistent connections: the exchange in flight and what k->up is */
    unsigned requests; /* answered on this connection */
    bool persist;      /* the client may send another request after this one */
    bool up_persist;   /* k->up may carry another request */
    bool head_req;     /* a HEAD: the response has no body */
    bool req_done, res_done;
    struct stk_http_framing req, res;
    struct stk_chunked req_ch, res_ch;
    long up_binding; /* what k->up is connected to (binding, host, port) */
    char up_host[254], up_addr[INET6_ADDRSTRLEN];
    uint16_t up_port;
};

/* ---- records ------------------------------------------------------------------ */

static int64_t now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

static void record_write(struct stk_proxy *p, json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!s)
        return;
    size_t n = strlen(s);
    if (n + 1 >= STK_PROXY_RECORD_MAX) {
        free(s);
        p->budget.dropped++;
        return;
    }
    s[n] = '\n';
    /* one write below PIPE_BUF is atomic; a full pipe drops, counted */
    if (write(p->ev[1], s, n + 1) != (ssize_t)(n + 1))
        p->budget.dropped++;
    free(s);
}

static void report_dropped(struct stk_proxy *p, uint64_t dropped)
{
    if (dropped)
        record_write(p, stk_proxy_suppressed_record(p->sandbox, dropped));
}

/* Whether the second's budget has room for one more record; counts the
 * drop when not (checked before a record is built: under load most are).
 * A new second first reports what the last ones dropped. */
static bool budget(struct stk_proxy *p)
{
    uint64_t dropped;
    bool room = stk_proxy_budget_take(&p->budget, now_s(), &dropped);
    report_dropped(p, dropped);
    return room;
}

static void record(struct stk_proxy *p, json_t *o)
{
    if (budget(p))
        record_write(p, o);
    else
        json_decref(o);
}

static void decision(struct conn *k, const char *what, const char *reason)
{
    if (!budget(k->p))
        return;
    json_t *o = json_pack("{s:s,s:s,s:s,s:s}", "sandbox", k->p->sandbox, "decision", what, "kind",
                          k->kind == STK_PROXY_CONNECT ? "connect" : "http", "method", k->method);
    if (k->host[0]) {
        json_object_set_new(o, "host", json_string(k->host));
        json_object_set_new(o, "port", json_integer(k->port));
    }
    if (k->binding >= 0) {
        json_object_set_new(o, "binding", json_string(k->p->bindings[k->binding].name));
        if (k->path)
            json_object_set_new(o, "path", json_string(k->path));
    }
    if (k->rule >= 0) {
        const struct stk_allow_host *h = &k->p->allow[k->rule];
        char rule[340];
        snprintf(rule, sizeof(rule), "spec.network.allowHosts[%ld] %s%s:%u", k->rule,
                 h->wildcard ? "*." : "", h->name, h->port);
        json_object_set_new(o, "rule", json_string(rule));
    }
    if (k->addr[0])
        json_object_set_new(o, "address", json_string(k->addr));
    if (k->status)
        json_object_set_new(o, "status", json_integer(k->status));
    if (k->stripped)
        json_object_set_new(o, "strippedHeaders", json_integer(k->stripped));
    if (reason)
        json_object_set_new(o, "reason", json_string(reason));
    record_write(k->p, o);
}

/* ---- connections ----------------------------------------------------------------- */

static void conn_free(struct conn *k)
{
    struct stk_proxy *p = k->p;
    if (k->dreq) {
        struct evdns_getaddrinfo_request *rq = k->dreq;
        k->dreq = NULL;
        k->st = C_CLOSING;
        evdns_getaddrinfo_cancel(rq); /* its callback runs, sees C_CLOSING */
    }
    if (k->cli)
        bufferevent_free(k->cli);
    if (k->up)
        bufferevent_free(k->up);
    if (k->head_out) {
        /* it held the credential */
        size_t n = evbuffer_get_length(k->head_out);
        unsigned char *b = n ? evbuffer_pullup(k->head_out, (ssize_t)n) : NULL;
        if (b)
            explicit_bzero(b, n);
        evbuffer_free(k->head_out);
    }
    stk_credential_free(k->secret);
    free(k->path);
    if (k->prev)
        k->prev->next = k->next;
    else
        p->conns = k->next;
    if (k->next)
        k->next->prev = k->prev;
    p->n_conns--;
    free(k);
}

/* Answers the client with an error and closes once it is written. */
static void on_drained_close(struct bufferevent *bev, void *ud)
{
    (void)bev;
    conn_free(ud);
}

static void on_closing_event(struct bufferevent *bev, short what, void *ud)
{
    (void)bev;
    (void)what;
    conn_free(ud);
}

static void close_after_flush(struct conn *k, struct bufferevent *side)
{
    k->st = C_CLOSING;
    if (!side || evbuffer_get_length(bufferevent_get_output(side)) == 0) {
        conn_free(k);
        return;
    }
    /* stop reading everywhere; free once side's output is written */
    if (k->cli)
        bufferevent_disable(k->cli, EV_READ);
    if (k->up)
        bufferevent_disable(k->up, EV_READ);
    bufferevent_setwatermark(side, EV_WRITE, 0, 0);
    bufferevent_setcb(side, NULL, on_drained_close, on_closing_event, k);
    bufferevent_enable(side, EV_WRITE);
}

static void refuse(struct conn *k, int status, const char *text, const char *why)
{
    if (!k->cli) {
        conn_free(k);
        return;
    }
    evbuffer_drain(bufferevent_get_input(k->cli),
                   evbuffer_get_length(bufferevent_get_input(k->cli)));
    evbuffer_add_printf(bufferevent_get_output(k->cli),
                        "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                        "Content-Length: %zu\r\n\r\n%s\n",
                        status, text, strlen(why) + 1, why);
    if (k->up) {
        bufferevent_free(k->up);
        k->up = NULL;
    }
    close_after_flush(k, k->cli);
}

/* ---- splice ------------------------------------------------------------------------ */

static struct bufferevent *other(struct conn *k, struct bufferevent *b)
{
    return b == k->cli ? k->up : k->cli;
}

static void on_splice_read(struct bufferevent *b, void *ud)
{
    struct conn *k = ud;
    struct bufferevent *o = other(k, b);
    bufferevent_write_buffer(o, bufferevent_get_input(b));
    if (evbuffer_get_length(bufferevent_get_output(o)) >= SPLICE_HIGH) {
        /* backpressure: read again once o has written half */
        bufferevent_disable(b, EV_READ);
        bufferevent_setwatermark(o, EV_WRITE, SPLICE_HIGH / 2, 0);
    }
}

static void on_splice_write(struct bufferevent *o, void *ud)
{
    struct conn *k = ud;
    struct bufferevent *b = other(k, o);
    /* called at o's low watermark: b may read again */
    if (b && k->st != C_CLOSING) {
        bufferevent_setwatermark(o, EV_WRITE, 0, 0);
        bufferevent_enable(b, EV_READ);
    }
}

static void on_splice_event(struct bufferevent *b, short what, void *ud)
{
    struct conn *k = ud;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
        struct bufferevent *o = other(k, b);
        /* what b sent before its end still goes to the other side */
        if (o && (what & BEV_EVENT_EOF))
            bufferevent_write_buffer(o, bufferevent_get_input(b));
        if (b == k->cli)
            k->cli = NULL;
        else
            k->up = NULL;
        bufferevent_free(b);
        close_after_flush(k, o);
    }
}

static void splice_start(struct conn *k)
{
    struct timeval idle = {STK_PROXY_IDLE_SECONDS, 0};
    k->st = C_SPLICE;
    bufferevent_setcb(k->cli, on_splice_read, on_splice_write, on_splice_event, k);
    bufferevent_setcb(k->up, on_splice_read, on_splice_write, on_splice_event, k);
    bufferevent_set_timeouts(k->cli, &idle, NULL);
    bufferevent_set_timeouts(k->up, &idle, NULL);
    bufferevent_enable(k->cli, EV_READ | EV_WRITE);
    bufferevent_enable(k->up, EV_READ | EV_WRITE);
    if (evbuffer_get_length(bufferevent_get_input(k->cli)))
        on_splice_read(k->cli, k);
}

/* ---- the ClientHello ---------------------------------------------------------------- */

static void on_hello_read(struct bufferevent *b, void *ud)
{
    struct conn *k = ud;
    struct evbuffer *in = bufferevent_get_input(b);
    size_t n = evbuffer_get_length(in);
    size_t lim = 3 * STK_TLS_HELLO_MAX + 64;
    const uint8_t *bytes = evbuffer_pullup(in, (ssize_t)(n < lim ? n : lim));
    char sni[256];
    int r = stk_tls_client_hello_sni(bytes, n < lim ? n : lim, sni);
    if (r == 0 && n < lim)
        return;
    if (r == 1 && !strcmp(sni, k->host)) {
        decision(k, "allowed", NULL);
        splice_start(k);
        return;
    }
    char why[400];
    if (r == 1)
        snprintf(why, sizeof(why), "the TLS server name %s is not the CONNECT name", sni);
    else
        snprintf(why, sizeof(why), "%s",
                 r == -ENOENT ? "the TLS ClientHello names no server (SNI is required)"
                              : "the tunnel did not start with a TLS ClientHello");
    decision(k, "denied", why);
    /* the 200 was sent already: the tunnel just closes */
    bufferevent_free(k->cli);
    k->cli = NULL;
    conn_free(k);
}

static void on_hello_event(struct bufferevent *b, short what, void *ud)
{
    struct conn *k = ud;
    (void)b;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
        conn_free(k);
}

/* ---- an HTTP exchange: the request's body, the response's head and body ------ */

static void exchange_start(struct conn *k);
static void on_head_read(struct bufferevent *b, void *ud);
static void on_head_event(struct bufferevent *b, short what, void *ud);

static void up_drop(struct conn *k)
{
    if (k->up)
        bufferevent_free(k->up);
    k->up = NULL;
    k->up_persist = false;
    k->addr[0] = '\0';
}

/* Moves up to max bytes of b's input to the other side, with backpressure. */
static void pump(struct conn *k, struct bufferevent *b, size_t max)
{
    struct bufferevent *o = other(k, b);
    evbuffer_remove_buffer(bufferevent_get_input(b), bufferevent_get_output(o), max);
    if (evbuffer_get_length(bufferevent_get_output(o)) >= SPLICE_HIGH) {
        bufferevent_disable(b, EV_READ);
        bufferevent_setwatermark(o, EV_WRITE, SPLICE_HIGH / 2, 0);
    }
}

/* How many bytes of in belong to the message framed by f (its chunked
 * progress ch, the bytes left of a length); *done when it ends there. false
 * when a chunked body is malformed. */
static bool body_take(struct stk_http_framing *f, struct stk_chunked *ch, struct evbuffer *in,
                      size_t *ret, bool *done)
{
    size_t n = evbuffer_get_length(in);
    *done = false;
    if (f->body == STK_BODY_CLOSE) {
        *ret = n;
        return true;
    }
    if (f->body == STK_BODY_LENGTH) {
        *ret = f->length < n ? (size_t)f->length : n;
        f->length -= *ret;
        *done = f->length == 0;
        return true;
    }
    size_t used = 0;
    struct evbuffer_iovec v[16];
    struct evbuffer_ptr at;
    evbuffer_ptr_set(in, &at, 0, EVBUFFER_PTR_SET);
    while (used < n) {
        int nv = evbuffer_peek(in, -1, &at, v, 16);
        for (int i = 0; i < nv && i < 16 && used < n; i++) {
            size_t u = 0;
            int r = stk_chunked_scan(ch, v[i].iov_base, v[i].iov_len, &u);
            if (r < 0)
                return false;
            used += u;
            if (r == 1) {
                *done = true;
                *ret = used;
                return true;
            }
        }
        if (nv <= 16)
            break;
        evbuffer_ptr_set(in, &at, used, EVBUFFER_PTR_SET);
    }
    *ret = used;
    return true;
}

static void on_idle_up_read(struct bufferevent *b, void *ud)
{
    (void)b;
    up_drop(ud);
}

static void on_idle_up_event(struct bufferevent *b, short what, void *ud)
{
    (void)b;
    (void)what;
    up_drop(ud);
}

/* The request's and the response's ends both passed: the next request, or
 * the end of the connection. */
static void exchange_end(struct conn *k)
{
    if (!k->req_done || !k->res_done || k->st == C_CLOSING)
        return;
    k->requests++;
    if (!k->up_persist)
        up_drop(k);
    if (!k->persist) {
        up_drop(k);
        close_after_flush(k, k->cli);
        return;
    }
    struct timeval idle = {STK_PROXY_KEEPALIVE_SECONDS, 0};
    k->st = C_HEAD;
    if (k->up) {
        /* idle: anything from it (data, its end) ends it */
        bufferevent_setcb(k->up, on_idle_up_read, NULL, on_idle_up_event, k);
        bufferevent_set_timeouts(k->up, &idle, NULL);
        bufferevent_enable(k->up, EV_READ);
    }
    bufferevent_setwatermark(k->cli, EV_WRITE, 0, 0);
    bufferevent_setcb(k->cli, on_head_read, NULL, on_head_event, k);
    bufferevent_set_timeouts(k->cli, &idle, &idle);
    bufferevent_enable(k->cli, EV_READ | EV_WRITE);
    if (evbuffer_get_length(bufferevent_get_input(k->cli)))
        on_head_read(k->cli, k); /* a pipelined request */
}

static void on_req_body(struct bufferevent *b, void *ud)
{
    struct conn *k = ud;
    size_t m;
    bool done;
    if (k->req_done) {
        bufferevent_disable(b, EV_READ); /* the next request waits */
        return;
    }
    if (!body_take(&k->req, &k->req_ch, bufferevent_get_input(b), &m, &done)) {
        decision(k, "denied", "a malformed chunked request body");
        up_drop(k);
        conn_free(k);
        return;
    }
    pump(k, b, m);
    if (done) {
        k->req_done = true;
        bufferevent_disable(b, EV_READ);
        exchange_end(k);
    }
}

static void on_res_body(struct bufferevent *b, void *ud)
{
    struct conn *k = ud;
    size_t m;
    bool done;
    if (k->res_done) { /* more than the response: the upstream is not reused */
        k->up_persist = false;
        bufferevent_disable(b, EV_READ);
        return;
    }
    if (!body_take(&k->res, &k->res_ch, bufferevent_get_input(b), &m, &done)) {
        k->persist = false;
        up_drop(k);
        close_after_flush(k, k->cli);
        return;
    }
    pump(k, b, m);
    if (done) {
        k->res_done = true; /* reading stays on: what comes now ends it */
        if (evbuffer_get_length(bufferevent_get_input(b)))
            k->up_persist = false;
        exchange_end(k);
    }
}

/* The low watermark of one side's output: the other side reads again if its
 * message has bytes left. */
static void on_exchange_write(struct bufferevent *o, void *ud)
{
    struct conn *k = ud;
    bufferevent_setwatermark(o, EV_WRITE, 0, 0);
    if (o == k->up && !k->req_done)
        bufferevent_enable(k->cli, EV_READ);
    else if (o == k->cli && k->up && !k->res_done)
        bufferevent_enable(k->up, EV_READ);
}

static void on_exchange_event(struct bufferevent *b, short what, void *ud)
{
    struct conn *k = ud;
    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)))
        return;
    if (b == k->cli) { /* the client went: nothing to answer */
        conn_free(k);
        return;
    }
    /* the upstream ended: a body read to its close ends here; anything else
     * is cut short, and the client's connection ends after what it got */
    if (k->st == C_RESPONSE) {
        decision(k, "failed", "the upstream closed before its response");
        up_drop(k);
        refuse(k, 502, "Bad Gateway", "the upstream closed before its response");
        return;
    }
    if (k->st == C_BODY && (what & BEV_EVENT_EOF))
        pump(k, b, evbuffer_get_length(bufferevent_get_input(b)));
    bool whole =
        k->res_done || (k->st == C_BODY && k->res.body == STK_BODY_CLOSE && (what & BEV_EVENT_EOF));
    up_drop(k);
    if (whole && k->req_done) {
        k->res_done = true;
        exchange_end(k);
        return;
    }
    k->persist = false;
    close_after_flush(k, k->cli);
}

/* The upstream's response head: hop-by-hop headers and any echo of a
 * binding's credential dropped; "Connection: close" when this is the
 * connection's last response. */
static void on_resp_read(struct bufferevent *b, void *ud)
{
    struct conn *k = ud;
    struct evbuffer *in = bufferevent_get_input(b);
    size_t n = evbuffer_get_length(in);
    size_t lim = n < STK_PROXY_RESPONSE_HEAD_MAX ? n : STK_PROXY_RESPONSE_HEAD_MAX;
    unsigned char *raw = evbuffer_pullup(in, (ssize_t)lim);
    const char *buf = (const char *)raw;
    struct stk_proxy_response rs;
    const char *why = NULL;
    int hl = stk_proxy_response_parse(buf, lim, k->head_req, &rs, &why);
    if (hl == 0)
        return;
    if (hl < 0) {
        why = hl == -EMSGSIZE ? "the upstream's response head is too large"
                              : "the upstream's response head is malformed";
        decision(k, "failed", why);
        up_drop(k);
        refuse(k, 502, "Bad Gateway", why);
        return;
    }
    bool interim = rs.status >= 100 && rs.status < 200 && rs.status != 101;
    if (!interim) {
        k->status = rs.status;
        k->res = rs.f;
        memset(&k->res_ch, 0, sizeof(k->res_ch));
        if (rs.f.close)
            k->up_persist = false;
        if (rs.f.body == STK_BODY_CLOSE)
            k->persist = false;
    }
    size_t slen = k->secret ? strlen(k->secret) : 0;
    struct evbuffer *out = bufferevent_get_output(k->cli);
    for (const char *line = buf, *end, *stop = buf + hl - 2; line < stop; line = end + 2) {
        end = memmem(line, (size_t)(stop - line) + 2, "\r\n", 2);
        size_t ln = (size_t)(end - line);
        if (line != buf) {
            const char *c = memchr(line, ':', ln);
            size_t nl = c ? (size_t)(c - line) : 0;
            static const char *const hop[] = {"connection", "keep-alive", "proxy-connection"};
            bool drop = false;
            for (size_t i = 0; i < STK_ARRAY_SIZE(hop) && !drop; i++)
                drop = nl == strlen(hop[i]) && !strncasecmp(line, hop[i], nl);
            if (drop && !(interim || rs.status == 101))
                continue;
            if (slen && memmem(line, ln, k->secret, slen)) {
                k->stripped++;
                continue;
            }
        }
        evbuffer_add(out, line, ln + 2);
    }
    if (!interim && !k->persist)
        evbuffer_add(out, "Connection: close\r\n", 19);
    evbuffer_add(out, "\r\n", 2);
    explicit_bzero(raw, (size_t)hl);
    evbuffer_drain(in, (size_t)hl);
    if (interim) {
        if (evbuffer_get_length(in))
            on_resp_read(b, k);
        return;
    }
    stk_credential_free(k->secret);
    k->secret = NULL;
    if (k->binding >= 0)
        decision(k, "binding", NULL);
    k->st = C_BODY;
    bufferevent_setcb(k->up, on_res_body, on_exchange_write, on_exchange_event, k);
    if (rs.f.body == STK_BODY_NONE) {
        k->res_done = true;
        if (evbuffer_get_length(in))
            k->up_persist = false;
        exchange_end(k);
    } else if (evbuffer_get_length(in)) {
        on_res_body(k->up, k);
    }
}

/* The request's head goes to the connected (or reused) upstream; its body
 * follows as the client sends it, the response is read meanwhile. */
static void exchange_start(struct conn *k)
{
    struct timeval idle = {STK_PROXY_IDLE_SECONDS, 0};
    if (k->binding < 0)
        decision(k, "allowed", NULL);
    bufferevent_write_buffer(k->up, k->head_out);
    evbuffer_free(k->head_out);
    k->head_out = NULL;
    k->st = C_RESPONSE;
    k->req_done = k->req.body == STK_BODY_NONE;
    k->res_done = false;
    memset(&k->req_ch, 0, sizeof(k->req_ch));
    bufferevent_setcb(k->cli, on_req_body, on_exchange_write, on_exchange_event, k);
    bufferevent_setcb(k->up, on_resp_read, on_exchange_write, on_exchange_event, k);
    bufferevent_set_timeouts(k->cli, &idle, NULL);
    bufferevent_set_timeouts(k->up, &idle, NULL);
    /* (enabling what is enabled already costs no system call; reading
     * from the client stays on: a pipelined head waits in on_req_body) */
    bufferevent_enable(k->up, EV_READ | EV_WRITE);
    bufferevent_enable(k->cli, EV_READ | EV_WRITE);
    if (!k->req_done && evbuffer_get_length(bufferevent_get_input(k->cli)))
        on_req_body(k->cli, k);
}

/* ---- connect --------------------------------------------------------------------------- */

static void on_up_event(struct bufferevent *b, short what, void *ud)
{
    struct conn *k = ud;
    (void)b;
    if (what & BEV_EVENT_CONNECTED) {
        bufferevent_disable(k->up, EV_READ); /* until the splice */
        if (k->kind == STK_PROXY_CONNECT) {
            struct timeval t = {STK_PROXY_HEAD_SECONDS, 0};
            k->st = C_HELLO;
            evbuffer_add_printf(bufferevent_get_output(k->cli),
                                "HTTP/1.1 200 Connection established\r\n\r\n");
            bufferevent_setcb(k->cli, on_hello_read, NULL, on_hello_event, k);
            bufferevent_set_timeouts(k->cli, &t, NULL);
            bufferevent_enable(k->cli, EV_READ | EV_WRITE);
            if (evbuffer_get_length(bufferevent_get_input(k->cli)))
                on_hello_read(k->cli, k);
        } else {
            k->up_persist = true;
            k->up_binding = k->binding;
            memcpy(k->up_host, k->host, sizeof(k->up_host));
            memcpy(k->up_addr, k->addr, sizeof(k->up_addr));
            k->up_port = k->port;
            exchange_start(k);
        }
        return;
    }
    const char *why = k->binding >= 0 ? "the upstream refused the connection or its TLS "
                                        "certificate did not verify"
                                      : "the upstream did not accept the connection";
    decision(k, "failed", why);
    refuse(k, 502, "Bad Gateway", why);
}

static void host_addrs(struct stk_cidr *ret, size_t max, size_t *n)
{
    struct ifaddrs *ifa = NULL;
    *n = 0;
    if (getifaddrs(&ifa) < 0)
        return;
    for (struct ifaddrs *i = ifa; i && *n < max; i = i->ifa_next) {
        if (!i->ifa_addr)
            continue;
        if (i->ifa_addr->sa_family == AF_INET) {
            ret[*n] = (struct stk_cidr){.family = STK_FAMILY_V4, .prefix = 32};
            memcpy(ret[*n].addr, &((struct sockaddr_in *)(void *)i->ifa_addr)->sin_addr, 4);
            (*n)++;
        } else if (i->ifa_addr->sa_family == AF_INET6) {
            ret[*n] = (struct stk_cidr){.family = STK_FAMILY_V6, .prefix = 128};
            memcpy(ret[*n].addr, &((struct sockaddr_in6 *)(void *)i->ifa_addr)->sin6_addr, 16);
            (*n)++;
        }
    }
    freeifaddrs(ifa);
}

static bool sa_cidr(const struct sockaddr *sa, struct stk_cidr *ret, char txt[INET6_ADDRSTRLEN])
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const void *)sa;
        *ret = (struct stk_cidr){.family = STK_FAMILY_V4, .prefix = 32};
        memcpy(ret->addr, &s4->sin_addr, 4);
        inet_ntop(AF_INET, &s4->sin_addr, txt, INET6_ADDRSTRLEN);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const void *)sa;
        *ret = (struct stk_cidr){.family = STK_FAMILY_V6, .prefix = 128};
        memcpy(ret->addr, &s6->sin6_addr, 16);
        inet_ntop(AF_INET6, &s6->sin6_addr, txt, INET6_ADDRSTRLEN);
        return true;
    }
    return false;
}

static void on_resolved(int result, struct evutil_addrinfo *res, void *ud)
{
    struct conn *k = ud;
    k->dreq = NULL;
    if (k->st != C_RESOLVE) { /* cancelled: k is being freed */
        if (res)
            evutil_freeaddrinfo(res);
        return;
    }
    if (result != 0 || !res) {
        if (res)
            evutil_freeaddrinfo(res);
        decision(k, "denied", "the name did not resolve");
        refuse(k, 502, "Bad Gateway", "the name did not resolve");
        return;
    }
    /* the host's addresses, read again at most once a second (a netlink
     * dump per request would cost more than the request) */
    struct stk_proxy *p = k->p;
    int64_t now = now_s();
    if (now != p->host_at) {
        host_addrs(p->host, STK_ARRAY_SIZE(p->host), &p->n_host);
        p->host_at = now;
    }
    const struct stk_cidr *host = p->host;
    size_t n_host = p->n_host;
    const struct sockaddr *pick = NULL;
    socklen_t pick_len = 0;
    char refused[INET6_ADDRSTRLEN] = "";
    const char *refused_why = NULL;
    for (struct evutil_addrinfo *a = res; a && !pick; a = a->ai_next) {
        struct stk_cidr c;
        char txt[INET6_ADDRSTRLEN];
        const char *why = NULL;
        if (!sa_cidr(a->ai_addr, &c, txt))
            continue;
        if (stk_proxy_addr_allowed(&k->p->c, &c, host, n_host, &why)) {
            pick = a->ai_addr;
            pick_len = (socklen_t)a->ai_addrlen;
            memcpy(k->addr, txt, sizeof(k->addr));
        } else if (!refused_why) {
            memcpy(refused, txt, sizeof(refused));
            refused_why = why;
        }
    }
    if (!pick) {
        char why[300];
        snprintf(why, sizeof(why), "the name resolves to %s, %s", refused,
                 refused_why ? refused_why : "no usable address");
        evutil_freeaddrinfo(res);
        decision(k, "denied", why);
        refuse(k, 403, "Forbidden", why);
        return;
    }
    struct sockaddr_storage ss;
    memcpy(&ss, pick, pick_len);
    if (ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&ss)->sin_port = htons(k->port);
    else
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons(k->port);
    evutil_freeaddrinfo(res);
    struct timeval t = {STK_PROXY_CONNECT_SECONDS, 0};
    k->st = C_CONNECT;
    if (k->binding >= 0) {
        /* verified TLS to the binding's upstream: its name in SNI and in
         * the certificate check */
        SSL *ssl = SSL_new(k->p->tls);
        if (!ssl || !SSL_set_tlsext_host_name(ssl, k->host) || !SSL_set1_host(ssl, k->host)) {
            SSL_free(ssl);
            decision(k, "failed", "TLS setup failed");
            refuse(k, 502, "Bad Gateway", "TLS setup failed");
            return;
        }
        k->up = bufferevent_openssl_socket_new(k->p->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                               BEV_OPT_CLOSE_ON_FREE);
        bufferevent_openssl_set_allow_dirty_shutdown(k->up, 1);
    } else {
        k->up = bufferevent_socket_new(k->p->base, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    bufferevent_setcb(k->up, NULL, NULL, on_up_event, k);
    bufferevent_set_timeouts(k->up, &t, &t);
    if (bufferevent_socket_connect(k->up, (struct sockaddr *)&ss, (int)pick_len) < 0) {
        decision(k, "failed", "connecting to the upstream failed");
        refuse(k, 502, "Bad Gateway", "connecting to the upstream failed");
    }
}

/* ---- the head -------------------------------------------------------------------------- */

static bool hop_header(const struct stk_proxy_header *h)
{
    static const char *const drop[] = {
        "host", "connection", "proxy-connection", "keep-alive", "proxy-authorization",
        "te",   "upgrade",    "trailer"};
    for (size_t i = 0; i < STK_ARRAY_SIZE(drop); i++)
        if (h->name_len == strlen(drop[i]) && !strncasecmp(h->name, drop[i], h->name_len))
            return true;
    return false;
}

static void header_line(struct evbuffer *out, const struct stk_proxy_request *rq, const char *drop)
{
    for (size_t i = 0; i < rq->n_headers; i++) {
        const struct stk_proxy_header *h = &rq->headers[i];
        if (hop_header(h) ||
            (drop && h->name_len == strlen(drop) && !strncasecmp(h->name, drop, h->name_len)))
            continue;
        evbuffer_add_printf(out, "%.*s: %.*s\r\n", (int)h->name_len, h->name, (int)h->value_len,
                            h->value);
    }
}

/* A request to http://<name>.bindings.stockade.internal/...: the head for
 * the binding's upstream with the credential read now. false when refused
 * (answered and recorded). */
static bool binding_head(struct conn *k, const struct stk_proxy_request *rq, const char *name)
{
    struct stk_proxy *p = k->p;
    for (size_t i = 0; i < p->n_bindings && k->binding < 0; i++)
        if (!strcmp(p->bindings[i].name, name))
            k->binding = (long)i;
    if (k->binding < 0) {
        decision(k, "denied", "the sandbox has no binding of that name");
        refuse(k, 404, "Not Found", "the sandbox has no binding of that name");
        return false;
    }
    const struct pbinding *bd = &p->bindings[k->binding];
    /* the path is not terminated: it points into the request head */
    const char *q = memchr(rq->path, '?', rq->path_len);
    k->path = strndup(rq->path, q ? (size_t)(q - rq->path) : rq->path_len);
    struct stk_binding_target *t = stk_xmalloc(sizeof(*t));
    const char *why = NULL;
    char *secret = NULL;
    int r = stk_binding_map(bd->url, rq->path, rq->path_len, t, &why);
    if (r < 0) {
        free(t);
        decision(k, "denied", why);
        refuse(k, 400, "Bad Request", why);
        return false;
    }
    struct stk_cred_ref cref = {.source = bd->source, .ref = bd->ref, .key = bd->key};
    if (stk_credential_read(&cref, &secret, &why) < 0) {
        free(t);
        decision(k, "failed", why);
        refuse(k, 502, "Bad Gateway", "the binding's credential is not available");
        return false;
    }
    memcpy(k->host, t->host, sizeof(k->host));
    k->port = t->port;
    k->head_out = evbuffer_new();
    evbuffer_add_printf(k->head_out, "%s %s HTTP/1.1\r\n", rq->method, t->path);
    free(t);
    if (k->port == 443)
        evbuffer_add_printf(k->head_out, "Host: %s\r\n", k->host);
    else
        evbuffer_add_printf(k->head_out, "Host: %s:%u\r\n", k->host, k->port);
    header_line(k->head_out, rq, bd->header);
    const char *at = strstr(bd->format, "{value}");
    evbuffer_add_printf(k->head_out, "%s: %.*s%s%s\r\n%s\r\n", bd->header, (int)(at - bd->format),
                        bd->format, secret, at + 7, k->persist ? "" : "Connection: close\r\n");
    k->secret = secret;
    return true;
}

static void resolve_start(struct conn *k)
{
    k->st = C_RESOLVE;
    struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    /* the callback may run before this returns (a hosts-file answer) and
     * may free k: touch k only when a request is pending */
    struct evdns_getaddrinfo_request *dr =
        evdns_getaddrinfo(k->p->dns, k->host, NULL, &hints, on_resolved, k);
    if (dr)
        k->dreq = dr;
}

/* Forgets the previous request of a persistent connection. */
static void request_reset(struct conn *k)
{
    k->rule = k->binding = -1;
    k->method[0] = k->host[0] = k->addr[0] = '\0';
    k->port = 0;
    free(k->path);
    k->path = NULL;
    stk_credential_free(k->secret);
    k->secret = NULL;
    k->status = 0;
    k->stripped = 0;
    k->head_req = false;
    k->persist = false;
}

/* The head is answered: to the upstream the connection already has (the
 * previous request's, same binding, host and port, its response read to its
 * end), or to a new one. */
static void request_go(struct conn *k)
{
    if (k->kind == STK_PROXY_HTTP && k->up && k->up_persist && k->up_binding == k->binding &&
        k->up_port == k->port && !strcmp(k->up_host, k->host)) {
        memcpy(k->addr, k->up_addr, sizeof(k->addr));
        exchange_start(k);
        return;
    }
    bufferevent_disable(k->cli, EV_READ); /* until the upstream is connected */
    up_drop(k);
    resolve_start(k);
}

static void on_head_read(struct bufferevent *b, void *ud)
{
    struct conn *k = ud;
    struct evbuffer *in = bufferevent_get_input(b);
    request_reset(k);
    size_t n = evbuffer_get_length(in);
    size_t lim = n < STK_PROXY_HEAD_MAX ? n : STK_PROXY_HEAD_MAX;
    const char *buf = (const char *)evbuffer_pullup(in, (ssize_t)lim);
    struct stk_proxy_request *rq = malloc(sizeof(*rq));
    if (!rq)
        abort();
    const char *why = NULL;
    int r = stk_proxy_request_parse(buf, lim, rq, &why);
    if (r == 0) {
        free(rq);
        if (k->requests) { /* a next request has begun: the head's bound */
            struct timeval t = {STK_PROXY_HEAD_SECONDS, 0};
            bufferevent_set_timeouts(b, &t, &t);
        }
        return;
    }
    struct stk_http_framing fr = {0};
    if (r > 0 && rq->kind == STK_PROXY_HTTP && stk_proxy_request_framing(rq, &fr, &why) < 0)
        r = -EINVAL;
    if (r < 0) {
        free(rq);
        decision(k, "denied", why);
        refuse(k, r == -EMSGSIZE ? 431 : 400, r == -EMSGSIZE ? "Too Large" : "Bad Request", why);
        return;
    }
    k->kind = rq->kind;
    memcpy(k->method, rq->method, sizeof(k->method));
    memcpy(k->host, rq->host, sizeof(k->host));
    k->port = rq->port;
    k->req = fr;
    k->persist =
        k->kind == STK_PROXY_HTTP && !fr.close && k->requests + 1 < STK_PROXY_REQUESTS_PER_CONN;
    k->head_req = !strcmp(k->method, "HEAD");
    char bname[64];
    if (k->kind == STK_PROXY_HTTP && stk_binding_name(k->host, bname)) {
        bool ok = binding_head(k, rq, bname);
        free(rq);
        if (ok) {
            evbuffer_drain(in, (size_t)r);
            request_go(k);
        }
        return;
    }
    for (size_t i = 0; i < k->p->c.n_allow; i++)
        if (stk_allow_host_match(&k->p->allow[i], k->host, k->port)) {
            k->rule = (long)i;
            break;
        }
    if (k->rule < 0) {
        free(rq);
        decision(k, "denied", "no spec.network.allowHosts rule names this host and port");
        refuse(k, 403, "Forbidden", "no spec.network.allowHosts rule names this host and port");
        return;
    }
    if (k->kind == STK_PROXY_HTTP) {
        k->head_out = evbuffer_new();
        evbuffer_add_printf(k->head_out, "%s %.*s HTTP/1.1\r\n", rq->method, (int)rq->path_len,
                            rq->path);
        if (k->port == 80)
            evbuffer_add_printf(k->head_out, "Host: %s\r\n", k->host);
        else
            evbuffer_add_printf(k->head_out, "Host: %s:%u\r\n", k->host, k->port);
        header_line(k->head_out, rq, NULL);
        evbuffer_add_printf(k->head_out, "%s\r\n", k->persist ? "" : "Connection: close\r\n");
    }
    evbuffer_drain(in, (size_t)r);
    free(rq);
    request_go(k);
}

static void on_head_event(struct bufferevent *b, short what, void *ud)
{
    (void)b;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
        conn_free(ud);
}

/* A host-side listener serves the sandbox's own addresses only: nftables
 * admit no other, and this holds even if a rule were missing. */
static bool peer_allowed(struct stk_proxy *p, const struct sockaddr *sa, int len)
{
    struct stk_cidr a;
    char txt[INET6_ADDRSTRLEN] = "?";
    if (len >= (int)sizeof(struct sockaddr_in) && sa_cidr(sa, &a, txt))
        for (size_t i = 0; i < p->c.n_peers; i++)
            if (stk_cidr_equal(&a, &p->c.peers[i]))
                return true;
    json_t *o =
        json_pack("{s:s,s:s,s:s,s:s}", "sandbox", p->sandbox, "decision", "denied", "peer", txt,
                  "reason", "a connection to the egress proxy from an address not the sandbox's");
    record(p, o);
    return false;
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                      void *ud)
{
    struct stk_proxy *p = ud;
    (void)l;
    if (p->c.n_peers && !peer_allowed(p, sa, len)) {
        evutil_closesocket(fd);
        return;
    }
    if (p->n_conns >= STK_PROXY_MAX_CONNS) {
        /* an idle persistent connection makes room: it is the client's to
         * open again; the oldest is last in the list */
        struct conn *idle = NULL;
        for (struct conn *c = p->conns; c; c = c->next)
            if (c->st == C_HEAD && c->requests &&
                !evbuffer_get_length(bufferevent_get_input(c->cli)))
                idle = c;
        if (idle)
            conn_free(idle);
    }
    if (p->n_conns >= STK_PROXY_MAX_CONNS) {
        json_t *o = json_pack("{s:s,s:s,s:s}", "sandbox", p->sandbox, "decision", "denied",
                              "reason", "too many connections to the egress proxy");
        record(p, o);
        evutil_closesocket(fd);
        return;
    }
    struct conn *k = calloc(1, sizeof(*k));
    if (!k)
        abort();
    k->p = p;
    k->rule = -1;
    k->binding = -1;
    k->next = p->conns;
    if (p->conns)
        p->conns->prev = k;
    p->conns = k;
    p->n_conns++;
    struct timeval t = {STK_PROXY_HEAD_SECONDS, 0};
    k->cli = bufferevent_socket_new(p->base, fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(k->cli, on_head_read, NULL, on_head_event, k);
    bufferevent_set_timeouts(k->cli, &t, &t);
    bufferevent_enable(k->cli, EV_READ | EV_WRITE);
}

/* ---- addresses ------------------------------------------------------------------------- */

bool stk_proxy_addr_allowed(const struct stk_proxy_config *c, const struct stk_cidr *addr,
                            const struct stk_cidr *host, size_t n_host, const char **ret_why)
{
    static const struct {
        const char *cidr, *why;
    } fixed[] = {
        {"0.0.0.0/8", "an unspecified address"},    {"127.0.0.0/8", "a loopback address"},
        {"169.254.0.0/16", "a link-local address"}, {"224.0.0.0/4", "a multicast address"},
        {"240.0.0.0/4", "a reserved address"},      {"::/128", "an unspecified address"},
        {"::1/128", "a loopback address"},          {"::ffff:0:0/96", "an IPv4-mapped address"},
        {"fe80::/10", "a link-local address"},      {"ff00::/8", "a multicast address"},
    };
    for (size_t i = 0; i < c->n_deny; i++)
        if (stk_cidr_contains(&c->deny[i], addr)) {
            *ret_why = "in blacklistIPs, the pod or the service CIDRs";
            return false;
        }
    for (size_t i = 0; i < STK_ARRAY_SIZE(fixed); i++) {
        struct stk_cidr f;
        if (stk_cidr_parse(fixed[i].cidr, &f, NULL) < 0)
            abort();
        if (stk_cidr_contains(&f, addr)) {
            *ret_why = fixed[i].why;
            return false;
        }
    }
    for (size_t i = 0; i < c->n_deny_extra; i++)
        if (stk_cidr_contains(&c->deny_extra[i], addr)) {
            *ret_why = "a sandbox address";
            return false;
        }
    for (size_t i = 0; i < n_host; i++)
        if (stk_cidr_contains(&host[i], addr)) {
            *ret_why = "an address of the host";
            return false;
        }
    return true;
}

/* ---- lifecycle --------------------------------------------------------------------------- */

static void on_stop(evutil_socket_t fd, short what, void *ud)
{
    (void)fd;
    (void)what;
    event_base_loopbreak(((struct stk_proxy *)ud)->base);
}

static void *serve(void *ud)
{
    struct stk_proxy *p = ud;
    /* signals stay with the owner's thread; a write to a closed peer is
     * EPIPE here, not SIGPIPE */
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    event_base_dispatch(p->base);
    while (p->conns)
        conn_free(p->conns);
    report_dropped(p, stk_proxy_budget_flush(&p->budget));
    return NULL;
}

/* Standalone (a Pod of its own on Kubernetes): every address of this
 * namespace; who may connect is the NetworkPolicy's business. */
static int listen_any(struct stk_error **err)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons(STK_PROXY_PORT),
                             .sin_addr.s_addr = htonl(INADDR_ANY)};
    if (fd < 0)
        return stk_error_make(err, errno, "egress proxy: socket");
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 128) < 0) {
        int e = errno;
        close(fd);
        return stk_error_make(err, e, "egress proxy: listening on 0.0.0.0:%d", STK_PROXY_PORT);
    }
    return fd;
}

/* A listening socket created inside the namespace at path; this thread
 * returns to its own namespace before anything else happens. */
static int listen_in(const char *path, struct stk_error **err)
{
    if (!path)
        return stk_error_make(err, EINVAL, "egress proxy: no network namespace to listen in");
    _cleanup_close_ int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    _cleanup_close_ int target = open(path, O_RDONLY | O_CLOEXEC);
    if (self < 0 || target < 0)
        return stk_error_make(err, errno, "egress proxy: opening network namespace %s", path);
    if (setns(target, CLONE_NEWNET) < 0)
        return stk_error_make(err, errno, "egress proxy: entering network namespace %s", path);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int e = fd < 0 ? errno : 0, one = 1;
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons(STK_PROXY_PORT),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd >= 0 && (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
                    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 128) < 0)) {
        e = errno;
        close(fd);
        fd = -1;
    }
    if (setns(self, CLONE_NEWNET) < 0)
        abort(); /* never serve from the sandbox's namespace */
    if (fd < 0)
        return stk_error_make(err, e, "egress proxy: listening on 127.0.0.1:%d in %s",
                              STK_PROXY_PORT, path);
    return fd;
}

/* The host-side listening socket at the bridge address (gVisor). */
static int listen_host(const struct stk_cidr *a, uint16_t port, struct stk_error **err)
{
    struct sockaddr_storage ss = {0};
    socklen_t sl;
    char txt[STK_CIDR_STRLEN];
    if (a->family == STK_FAMILY_V4) {
        struct sockaddr_in *s4 = (void *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        memcpy(&s4->sin_addr, a->addr, 4);
        sl = sizeof(*s4);
    } else if (a->family == STK_FAMILY_V6) {
        struct sockaddr_in6 *s6 = (void *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        memcpy(&s6->sin6_addr, a->addr, 16);
        sl = sizeof(*s6);
    } else {
        return stk_error_make(err, EINVAL, "egress proxy: no address to listen on");
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    if (fd >= 0 && (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
                    bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 128) < 0)) {
        int e = errno;
        close(fd);
        errno = e;
        fd = -1;
    }
    if (fd < 0)
        return stk_error_make(err, errno, "egress proxy: listening on %s port %u",
                              stk_cidr_format(a, txt), port);
    return fd;
}

static void proxy_free(struct stk_proxy *p)
{
    if (!p)
        return;
    if (p->lis)
        evconnlistener_free(p->lis);
    if (p->stop_ev)
        event_free(p->stop_ev);
    if (p->dns)
        evdns_base_free(p->dns, 1);
    if (p->base)
        event_base_free(p->base);
    for (int i = 0; i < 2; i++) {
        if (p->wake[i] >= 0)
            close(p->wake[i]);
        if (p->ev[i] >= 0)
            close(p->ev[i]);
    }
    for (size_t i = 0; i < p->n_bindings; i++) {
        struct pbinding *bd = &p->bindings[i];
        free(bd->name), free(bd->url), free(bd->ref), free(bd->key), free(bd->header);
        free(bd->format);
    }
    free(p->bindings);
    if (p->tls)
        SSL_CTX_free(p->tls);
    free(p->ca_file);
    free(p->allow);
    free(p->deny);
    free(p->sandbox);
    free(p->hosts_file);
    free(p);
}

int stk_proxy_start(const struct stk_proxy_config *c, struct stk_proxy **ret,
                    struct stk_error **err)
{
    struct stk_proxy *p = stk_xcalloc(1, sizeof(*p));
    p->wake[0] = p->wake[1] = p->ev[0] = p->ev[1] = -1;
    p->host_at = -1;
    p->sandbox = stk_xstrdup(c->sandbox);
    p->budget.limit = STK_PROXY_EVENTS_PER_SEC;
    p->c = *c;
    p->allow = stk_xcalloc(c->n_allow + 1, sizeof(*p->allow));
    memcpy(p->allow, c->allow, c->n_allow * sizeof(*p->allow));
    size_t nd = c->n_deny + c->n_deny_extra;
    p->deny = stk_xcalloc(nd + 1, sizeof(*p->deny));
    memcpy(p->deny, c->deny, c->n_deny * sizeof(*p->deny));
    memcpy(p->deny + c->n_deny, c->deny_extra, c->n_deny_extra * sizeof(*p->deny));
    p->c.allow = p->allow;
    p->c.deny = p->deny;
    p->c.deny_extra = p->deny + c->n_deny;
    p->c.sandbox = p->sandbox;
    p->c.netns_path = NULL;
    p->c.hosts_file = p->hosts_file = c->hosts_file ? stk_xstrdup(c->hosts_file) : NULL;
    p->c.ca_file = p->ca_file = c->ca_file ? stk_xstrdup(c->ca_file) : NULL;
    p->bindings = stk_xcalloc(c->n_bindings + 1, sizeof(*p->bindings));
    p->n_bindings = c->n_bindings;
    for (size_t i = 0; i < c->n_bindings; i++) {
        const struct stk_binding *bd = &c->bindings[i];
        p->bindings[i] = (struct pbinding){
            .name = stk_xstrdup(bd->name.v),
            .url = stk_xstrdup(bd->url.v),
            .ref = stk_xstrdup(bd->credential.ref.v),
            .key = stk_xstrdup(bd->credential.key.v ? bd->credential.key.v : ""),
            .header = stk_xstrdup(bd->inject.header.v ? bd->inject.header.v : "Authorization"),
            .format = stk_xstrdup(bd->inject.format.v ? bd->inject.format.v : "Bearer {value}"),
            .source = (enum stk_cred_source)bd->credential.source.v,
        };
    }
    p->c.bindings = NULL;
    if (c->n_bindings) {
        p->tls = SSL_CTX_new(TLS_client_method());
        if (!p->tls || !SSL_CTX_set_min_proto_version(p->tls, TLS1_2_VERSION) ||
            !(p->ca_file ? SSL_CTX_load_verify_locations(p->tls, p->ca_file, NULL)
                         : SSL_CTX_set_default_verify_paths(p->tls))) {
            proxy_free(p);
            return stk_error_make(err, EIO, "egress proxy: the CAs for binding upstreams (%s)",
                                  c->ca_file ? c->ca_file : "the system's");
        }
        SSL_CTX_set_verify(p->tls, SSL_VERIFY_PEER, NULL);
    }

    int fd = c->standalone   ? listen_any(err)
             : c->netns_path ? listen_in(c->netns_path, err)
                             : listen_host(&c->listen, c->listen_port, err);
    if (fd < 0) {
        proxy_free(p);
        return fd;
    }
    int r = 0;
    if (pipe2(p->wake, O_CLOEXEC | O_NONBLOCK) < 0 || pipe2(p->ev, O_CLOEXEC | O_NONBLOCK) < 0)
        r = stk_error_make(err, errno, "egress proxy: pipe");
    if (r >= 0 && !(p->base = event_base_new()))
        r = stk_error_make(err, ENOMEM, "egress proxy: event base");
    if (r >= 0) {
        /* test mode answers from the hosts file alone: no query leaves */
        p->dns = evdns_base_new(p->base, p->hosts_file ? 0 : EVDNS_BASE_INITIALIZE_NAMESERVERS);
        if (!p->dns)
            r = stk_error_make(err, EIO, "egress proxy: no resolver (/etc/resolv.conf)");
        else if (p->hosts_file && evdns_base_load_hosts(p->dns, p->hosts_file) != 0)
            r = stk_error_make(err, EIO, "egress proxy: reading hosts file %s", p->hosts_file);
        else
            /* a listed name is asked for as written: no search domain turns
             * pypi.org into pypi.org.corp.example */
            evdns_base_search_clear(p->dns);
    }
    if (r >= 0) {
        p->lis = evconnlistener_new(p->base, on_accept, p, LEV_OPT_CLOSE_ON_FREE, -1, fd);
        fd = -1;
        p->stop_ev = event_new(p->base, p->wake[0], EV_READ, on_stop, p);
        if (!p->lis || !p->stop_ev || event_add(p->stop_ev, NULL) < 0)
            r = stk_error_make(err, ENOMEM, "egress proxy: listener");
    }
    if (r >= 0 && (errno = pthread_create(&p->thread, NULL, serve, p)) != 0)
        r = stk_error_make(err, errno, "egress proxy: thread");
    if (fd >= 0)
        close(fd);
    if (r < 0) {
        proxy_free(p);
        return r;
    }
    p->running = true;
    *ret = p;
    return 0;
}

int stk_proxy_event_fd(const struct stk_proxy *p)
{
    return p ? p->ev[0] : -1;
}

size_t stk_proxy_events_read(struct stk_proxy *p, void (*fn)(void *ud, const char *json), void *ud)
{
    size_t count = 0;
    if (!p)
        return 0;
    for (;;) {
        ssize_t r = read(p->ev[0], p->rd + p->n_rd, sizeof(p->rd) - 1 - p->n_rd);
        if (r <= 0)
            break;
        p->n_rd += (size_t)r;
        p->rd[p->n_rd] = '\0';
        char *s = p->rd, *nl;
        while ((nl = strchr(s, '\n'))) {
            *nl = '\0';
            if (fn)
                fn(ud, s);
            count++;
            s = nl + 1;
        }
        p->n_rd -= (size_t)(s - p->rd);
        memmove(p->rd, s, p->n_rd);
        if (p->n_rd == sizeof(p->rd) - 1)
            p->n_rd = 0; /* cannot happen: records are shorter */
    }
    return count;
}

void stk_proxy_stop(struct stk_proxy *p, void (*fn)(void *ud, const char *json), void *ud)
{
    if (!p)
        return;
    if (p->running) {
        (void)!write(p->wake[1], "x", 1);
        pthread_join(p->thread, NULL);
    }
    stk_proxy_events_read(p, fn, ud);
    proxy_free(p);
}
