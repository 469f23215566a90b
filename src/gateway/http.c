/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The HTTP/JSON API of `stockade serve` (docs/api.md, docs/openapi.yaml):
 * libevent's evhttp, one thread, one event loop. A request is routed by the
 * table in request.c, authenticated and authorized through the injected
 * `struct stk_gw_auth`, and answered from the store (reads) or by a child
 * process (job.c: everything that may block).
 */
#include "gateway/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <signal.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define GW_STOP_GRACE_S  10 /* at shutdown, operations in flight may finish */
#define GW_STREAM_IDLE_S (24 * 3600)

int64_t gw_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- metrics ------------------------------------------------------------------------ */

void gw_count(struct stk_gw *g, enum gw_route route, int status)
{
    size_t r = (size_t)route <= _GW_ROUTE_N ? (size_t)route : _GW_ROUTE_N;
    for (size_t i = 0; i < GW_METRIC_STATUSES; i++) {
        if (g->statuses[i] == 0)
            g->statuses[i] = status;
        if (g->statuses[i] == status) {
            g->requests[r][i]++;
            return;
        }
    }
}

static void metrics_text(struct stk_gw *g, struct evbuffer *out)
{
    evbuffer_add_printf(out, "# TYPE stockade_http_requests_total counter\n");
    for (size_t r = 0; r <= _GW_ROUTE_N; r++)
        for (size_t i = 0; i < GW_METRIC_STATUSES && g->statuses[i]; i++)
            if (g->requests[r][i])
                evbuffer_add_printf(
                    out,
                    "stockade_http_requests_total{method=\"%s\",route=\"%s\",status=\"%d\"} %llu\n",
                    r < _GW_ROUTE_N ? gw_routes[r].method : "",
                    r < _GW_ROUTE_N ? gw_routes[r].pattern : "unknown", g->statuses[i],
                    (unsigned long long)g->requests[r][i]);
    evbuffer_add_printf(out,
                        "# TYPE stockade_authz_decisions_total counter\n"
                        "stockade_authz_decisions_total{decision=\"allow\"} %llu\n"
                        "stockade_authz_decisions_total{decision=\"deny\"} %llu\n",
                        (unsigned long long)g->decisions[1], (unsigned long long)g->decisions[0]);
    size_t by_phase[_STK_SB_N] = {0};
    struct stk_sb_rec *recs = NULL;
    size_t n = 0;
    if (stk_store_sb_list_brief(stk_session_store(g->session), false, &recs, &n, NULL) >= 0) {
        for (size_t i = 0; i < n; i++)
            by_phase[recs[i].phase]++;
        stk_sb_recs_free(recs, n);
    }
    evbuffer_add_printf(out, "# TYPE stockade_sandboxes gauge\n");
    for (size_t p = 0; p < _STK_SB_N; p++)
        if (p != STK_SB_DELETED)
            evbuffer_add_printf(out, "stockade_sandboxes{phase=\"%s\"} %zu\n",
                                stk_sb_phase_names[p], by_phase[p]);
    evbuffer_add_printf(out,
                        "# TYPE stockade_event_subscribers gauge\nstockade_event_subscribers %zu\n",
                        g->n_subs);
}

/* ---- access log ------------------------------------------------------------------------ */

/* One JSON line per request: jansson escapes what a client put in the path,
 * so no client can forge or split a line. Never a header, a query or a
 * body: tokens travel in headers. */
void gw_access_log(struct stk_gw *g, const char *method, const char *path, int status,
                   const char *who, int64_t t0_ms)
{
    if (!g->access_log)
        return;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    char ts[96];
    snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)(now.tv_nsec / 1000000));
    json_t *j =
        json_pack("{s:s,s:s,s:s,s:i,s:s,s:I}", "time", ts, "method", method ? method : "", "path",
                  path ? path : "", "status", status, "identity", who && *who ? who : "-",
                  "duration_ms", (json_int_t)(t0_ms > 0 ? gw_now_ms() - t0_ms : 0));
    char *line = j ? json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    json_decref(j);
    if (line) {
        fprintf(g->access_log, "%s\n", line);
        fflush(g->access_log);
    }
    free(line);
}

static const char *request_method(struct evhttp_request *req);

void gw_call_log(struct gw_call *c, int status)
{
    if (!c->req)
        return;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(c->req));
    gw_access_log(c->g, request_method(c->req), path, status, c->actor, c->t0_ms);
}

void gw_call_answered(struct gw_call *c, int status)
{
    gw_count(c->g, c->route, status);
    gw_call_log(c, status);
}

/* ---- replies ------------------------------------------------------------------------- */

void gw_call_free(struct gw_call *c)
{
    if (!c)
        return;
    if (c->conn && c->conn->call == c)
        c->conn->call = NULL;
    stk_principal_release(&c->who);
    free(c);
}

void gw_reply_json(struct gw_call *c, int status, json_t *json)
{
    char *s = json ? json_dumps(json, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    json_decref(json);
    if (c->req) {
        struct evbuffer *b = evbuffer_new();
        evbuffer_add_printf(b, "%s\n", s ? s : "{}");
        evhttp_add_header(evhttp_request_get_output_headers(c->req), "Content-Type",
                          "application/json");
        gw_call_answered(c, status);
        evhttp_send_reply(c->req, status, NULL, b);
        evbuffer_free(b);
    }
    free(s);
    gw_call_free(c);
}

/* The headers an error status promises: WWW-Authenticate on a 401 (how to
 * authenticate), Allow on a 405 (what the path takes). */
static void error_headers(struct gw_call *c, enum gw_err code, const char *msg)
{
    if (!c->req)
        return;
    struct evkeyvalq *h = evhttp_request_get_output_headers(c->req);
    if (code == GW_E_UNAUTHENTICATED)
        evhttp_add_header(h, "WWW-Authenticate",
                          !strcmp(msg, "invalid credentials") ? GW_WWW_AUTH_INVALID : GW_WWW_AUTH);
    if (code == GW_E_METHOD) {
        const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(c->req));
        char allow[64];
        gw_route_allow(path ? path : "/", allow, sizeof(allow));
        evhttp_add_header(h, "Allow", allow);
    }
}

void gw_reply_error(struct gw_call *c, enum gw_err code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *msg = stk_xvasprintf(fmt, ap);
    va_end(ap);
    error_headers(c, code, msg);
    gw_reply_json(c, gw_err_status[code], gw_error_json(code, msg));
}

/* The same answer for an object that does not exist and one the caller
 * may not know of. */
static void reply_not_found(struct gw_call *c)
{
    bool pool = c->route == GW_POOL_DELETE || c->route == GW_POOL_GET || c->claim_pool;
    gw_reply_error(c, GW_E_NOT_FOUND, "no %s \"%s\"", pool ? "pool" : "sandbox", c->arg);
}

/* ---- connections ----------------------------------------------------------------------- */

static void conn_closed(struct evhttp_connection *evcon, void *arg)
{
    struct stk_gw *g = arg;
    for (struct gw_conn **p = &g->conns; *p; p = &(*p)->next) {
        struct gw_conn *cn = *p;
        if (cn->evcon != evcon)
            continue;
        *p = cn->next;
        g->n_conns--;
        if (cn->call) {
            struct gw_call *c = cn->call;
            /* A client that left mid-stream: libevent detaches the request
             * from the connection and leaves it to us; ending the reply
             * frees it. Otherwise it goes with the connection. */
            if (c->req && !evhttp_request_get_connection(c->req))
                evhttp_send_reply_end(c->req);
            c->req = NULL;
            c->conn = NULL;
            /* the job no longer answers anyone; the call goes now */
            if (c->job)
                gw_job_detach(c->job);
            c->job = NULL;
            if (c->sub)
                gw_sub_detach(c->sub);
            gw_call_free(c);
        }
        free(cn);
        return;
    }
}

/* Connections that sent a request are tracked: their streams end with them.
 * The cap on connections is the gate's (gate.c), from the first byte. */
static struct gw_conn *conn_track(struct stk_gw *g, struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    for (struct gw_conn *cn = g->conns; cn; cn = cn->next)
        if (cn->evcon == evcon)
            return cn;
    struct gw_conn *cn = stk_xcalloc(1, sizeof(*cn));
    cn->evcon = evcon;
    cn->next = g->conns;
    g->conns = cn;
    g->n_conns++;
    evhttp_connection_set_closecb(evcon, conn_closed, g);
    return cn;
}

void gw_stream_begin(struct gw_call *c)
{
    c->conn->call = c;
    /* a stream may be quiet for long; the request timeout is for requests */
    evhttp_connection_set_timeout(evhttp_request_get_connection(c->req), GW_STREAM_IDLE_S);
}

void gw_stream_end(struct gw_call *c)
{
    /* a kept-alive connection waits for its next request as any other */
    evhttp_connection_set_timeout(evhttp_request_get_connection(c->req), c->g->timeout_s);
    evhttp_send_reply_end(c->req);
}

/* ---- authentication and authorization --------------------------------------------------- */

void gw_principal_name(const struct stk_principal *p, char *buf, size_t n)
{
    switch (p->kind) {
    case STK_PRINCIPAL_TOKEN:
        snprintf(buf, n, "token:%s", p->token_id);
        break;
    case STK_PRINCIPAL_JWT:
        snprintf(buf, n, "jwt:%.120s#%.120s", p->issuer, p->subject);
        break;
    case STK_PRINCIPAL_CERT:
        snprintf(buf, n, "cert:%.240s", p->cert_subject);
        break;
    case STK_PRINCIPAL_NONE:
        snprintf(buf, n, "anonymous");
        break;
    }
}

static const char *decision_name(const struct stk_authz_decision *d)
{
    return d->allow ? "allow" : d->hide ? "deny_hidden" : "deny";
}

/*
 * Group commit. Every decision is an audit record, and each record alone is
 * a synced transaction (~0.7 ms here): one per request would cap the server
 * near 1,400 decided requests a second. Decisions of verbs that only read
 * wait up to GW_AUDIT_BATCH_MS (or GW_AUDIT_BATCH_MAX records) and are
 * committed together; a decision of a verb that changes something commits
 * the waiting ones and itself before the change is made. A crash can lose
 * at most the last GW_AUDIT_BATCH_MS of read decisions, never a change's.
 */
#define GW_AUDIT_BATCH_MS  2
#define GW_AUDIT_BATCH_MAX 512

void gw_audit_flush(struct stk_gw *g)
{
    if (!g->audit_n)
        return;
    struct stk_audit_entry *e = stk_xcalloc(g->audit_n, sizeof(*e));
    for (size_t i = 0; i < g->audit_n; i++)
        e[i] = (struct stk_audit_entry){g->audit_q[i].sandbox, "authz", g->audit_q[i].actor,
                                        g->audit_q[i].details};
    _cleanup_error_ struct stk_error *err = NULL;
    if (stk_audit_append_batch(stk_session_store(g->session), e, g->audit_n, &err) < 0)
        fprintf(stderr, "stockade serve: recording %zu decisions: %s\n", g->audit_n,
                err ? err->msg : "failed");
    for (size_t i = 0; i < g->audit_n; i++)
        free(g->audit_q[i].details);
    free(e);
    g->audit_n = 0;
}

static void on_audit_batch(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gw_audit_flush(arg);
}

static bool verb_reads(enum stk_verb verb)
{
    return verb == STK_VERB_GET || verb == STK_VERB_LIST || verb == STK_VERB_LOGS ||
           verb == STK_VERB_AUDIT;
}

/*
 * Denials are budgeted (docs/gateway.md, "Limits"): GW_DENY_PER_MIN records a
 * minute per principal and as many per target, the rest counted in the next
 * record of that principal (suppressedBefore) or target
 * (suppressedOnTarget). A denial the caller may not even know the target of
 * (hidden) goes to the global chain: another principal's requests never
 * fill a sandbox's own chain. false: the record is dropped.
 */
static bool denial_budget(struct gw_call *c, const char *object, json_t *details)
{
    struct stk_gw *g = c->g;
    int64_t now = gw_now_ms();
    uint64_t sp = 0, st = 0;
    if (!gw_ratelim_take(&g->rl_principal, c->principal, now, &sp))
        return false;
    if (!gw_ratelim_take(&g->rl_target, object, now, &st)) {
        gw_ratelim_undo(&g->rl_principal, c->principal, now, sp);
        return false;
    }
    json_object_set_new(details, "suppressedBefore", json_integer((json_int_t)sp));
    json_object_set_new(details, "suppressedOnTarget", json_integer((json_int_t)st));
    return true;
}

static void audit_decision(struct gw_call *c, enum stk_verb verb, const char *sandbox_id,
                           const char *object, const struct stk_authz_decision *d)
{
    struct stk_gw *g = c->g;
    json_t *j = json_pack("{s:s,s:s,s:s,s:s}", "verb", stk_verb_names[verb], "object", object,
                          "decision", decision_name(d), "reason", d->reason);
    if (!d->allow) {
        if (!denial_budget(c, object, j)) {
            json_decref(j);
            return;
        }
        if (d->hide)
            sandbox_id = NULL;
    }
    char *details = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (g->audit_n == GW_AUDIT_BATCH_MAX)
        gw_audit_flush(g);
    if (!g->audit_q)
        g->audit_q = stk_xcalloc(GW_AUDIT_BATCH_MAX, sizeof(*g->audit_q));
    struct gw_audit_pending *p = &g->audit_q[g->audit_n++];
    snprintf(p->sandbox, sizeof(p->sandbox), "%s", sandbox_id ? sandbox_id : "");
    snprintf(p->actor, sizeof(p->actor), "%s", c->actor);
    p->details = details;
    if (!verb_reads(verb) || !g->ev_audit) {
        gw_audit_flush(g); /* before the change is made */
        return;
    }
    if (g->audit_n == 1) {
        struct timeval tv = {0, GW_AUDIT_BATCH_MS * 1000};
        event_add(g->ev_audit, &tv);
    }
}

/* Asks the policy; counts; remembers the identity as the call's actor. */
static void ask(struct gw_call *c, enum stk_verb verb, const struct stk_authz_target *t,
                struct stk_authz_decision *ret)
{
    static const struct stk_authz_target none = {0};
    memset(ret, 0, sizeof(*ret));
    c->g->auth->authorize(c->g->auth->ud, &c->who, verb, t ? t : &none, ret);
    ret->identity[sizeof(ret->identity) - 1] = '\0';
    ret->owner[sizeof(ret->owner) - 1] = '\0';
    ret->reason[sizeof(ret->reason) - 1] = '\0';
    ret->refused_field[sizeof(ret->refused_field) - 1] = '\0';
    ret->refused_value[sizeof(ret->refused_value) - 1] = '\0';
    if (ret->identity[0])
        snprintf(c->actor, sizeof(c->actor), "%s", ret->identity);
    c->g->decisions[ret->allow ? 1 : 0]++;
}

bool gw_decide(struct gw_call *c, enum stk_verb verb, const struct stk_authz_target *t,
               const char *sandbox_id, const char *object, struct stk_authz_decision *ret)
{
    ask(c, verb, t, ret);
    audit_decision(c, verb, sandbox_id, object, ret);
    return ret->allow;
}

/*
 * A list's per-row decisions, recorded in batches: one audit record (host
 * chain) per ~12 KiB of {object, decision, reason}, not one per row — each
 * record is a synced transaction, and a list of thousands must not stall the
 * event loop for seconds.
 */
#define BATCH_BYTES 12000
struct decision_batch {
    struct gw_call *c;
    enum stk_verb verb;
    const char *what; /* NULL: "sandboxes (list rows)" */
    json_t *rows;
    size_t bytes;
};

static void batch_flush(struct decision_batch *b)
{
    if (!b->rows || json_array_size(b->rows) == 0)
        return;
    json_t *j = json_pack("{s:s,s:s,s:O}", "verb", stk_verb_names[b->verb], "object",
                          b->what ? b->what : "sandboxes (list rows)", "decisions", b->rows);
    _cleanup_free_ char *details = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    _cleanup_error_ struct stk_error *err = NULL;
    if (stk_audit_append(stk_session_store(b->c->g->session), "", "authz", b->c->actor, details,
                         &err) < 0)
        fprintf(stderr, "stockade serve: recording decisions: %s\n", err ? err->msg : "failed");
    json_array_clear(b->rows);
    b->bytes = 0;
}

static bool batch_decide(struct decision_batch *b, const struct stk_authz_target *t,
                         const char *object)
{
    struct stk_authz_decision d;
    ask(b->c, b->verb, t, &d);
    if (!b->rows)
        b->rows = json_array();
    json_array_append_new(b->rows, json_pack("{s:s,s:s,s:s}", "object", object, "decision",
                                             decision_name(&d), "reason", d.reason));
    /* the JSON escaping of a reason at most doubles it (\uXXXX is rare) */
    b->bytes += strlen(object) + 2 * strlen(d.reason) + 48;
    if (b->bytes > BATCH_BYTES)
        batch_flush(b);
    return d.allow;
}

static void batch_end(struct decision_batch *b)
{
    batch_flush(b);
    json_decref(b->rows);
}

/* A 403 that names the caller's own input the policy refused (the
 * decision says which only when that reveals nothing about others). */
static void reply_refused(struct gw_call *c, enum stk_verb verb, const char *object,
                          const struct stk_authz_decision *d)
{
    _cleanup_free_ char *msg =
        stk_xasprintf("%s on %s is not allowed: your grants do not allow %s \"%s\"",
                      stk_verb_names[verb], object, d->refused_field, d->refused_value);
    json_t *e = gw_error_json(GW_E_FORBIDDEN, msg);
    json_object_set_new(
        json_object_get(e, "error"), "refused",
        json_pack("{s:s,s:s}", "field", d->refused_field, "value", d->refused_value));
    gw_reply_json(c, 403, e);
}

bool gw_authorize(struct gw_call *c, enum stk_verb verb, const struct stk_authz_target *t,
                  const char *sandbox_id, const char *object, struct stk_authz_decision *ret)
{
    if (gw_decide(c, verb, t, sandbox_id, object, ret))
        return true;
    /* hide is about objects; a collection the caller may not use is a 403 */
    if (ret->hide && c->arg[0])
        reply_not_found(c);
    else if (ret->refused_field[0])
        reply_refused(c, verb, object, ret);
    else
        gw_reply_error(c, GW_E_FORBIDDEN, "%s on %s is not allowed", stk_verb_names[verb], object);
    return false;
}

int gw_cert_subject(struct bufferevent *bev, char *buf, size_t n)
{
    /* the gate's filter sits on top of the TLS bufferevent */
    struct bufferevent *under = bev ? bufferevent_get_underlying(bev) : NULL;
    SSL *ssl = bev ? bufferevent_openssl_get_ssl(under ? under : bev) : NULL;
    if (!ssl || SSL_get_verify_result(ssl) != X509_V_OK)
        return 0;
    X509 *cert = SSL_get1_peer_certificate(ssl);
    if (!cert)
        return 0;
    BIO *bio = BIO_new(BIO_s_mem());
    int ret = 0;
    if (bio && X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) >= 0) {
        /* a subject that does not fit is refused, never cut and matched */
        size_t pending = BIO_ctrl_pending(bio);
        if (pending >= n)
            ret = -E2BIG;
        else if (pending > 0 && BIO_read(bio, buf, (int)pending) == (int)pending) {
            buf[pending] = '\0';
            ret = 1;
        }
    }
    BIO_free(bio);
    X509_free(cert);
    return ret;
}

/* The budget key of a connection's source: its IPv4 address, its IPv6
 * /64 (one host holds a whole /64), or "unix". */
static void source_key(struct bufferevent *bev, char *buf, size_t n)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int fd = bev ? bufferevent_getfd(bev) : -1;
    snprintf(buf, n, "unix");
    if (fd < 0 || getpeername(fd, (struct sockaddr *)&ss, &len) < 0)
        return;
    char p[INET6_ADDRSTRLEN] = "";
    if (ss.ss_family == AF_INET) {
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, p, sizeof(p));
        snprintf(buf, n, "%s", p);
    } else if (ss.ss_family == AF_INET6) {
        struct in6_addr a6 = ((struct sockaddr_in6 *)&ss)->sin6_addr;
        memset(a6.s6_addr + 8, 0, 8);
        inet_ntop(AF_INET6, &a6, p, sizeof(p));
        snprintf(buf, n, "%s/64", p);
    }
}

/* Failed authentications are audit records, but a caller must not be able
 * to fill the trail with them, nor spend another's budget: at most
 * AUTHN_AUDIT_PER_MIN a minute per source (and AUTHN_AUDIT_GLOBAL_PER_MIN in
 * all), then one record that counts the ones left out. */
#define AUTHN_AUDIT_PER_MIN        10
#define AUTHN_AUDIT_GLOBAL_PER_MIN 600

void gw_audit_authn_failure(struct stk_gw *g, struct bufferevent *bev, const char *why)
{
    char src[80];
    source_key(bev, src, sizeof(src));
    int64_t now = gw_now_ms();
    uint64_t sup = 0, all = 0;
    if (!gw_ratelim_take(&g->rl_source, src, now, &sup))
        return;
    if (!gw_ratelim_take(&g->rl_authn_all, "", now, &all)) {
        gw_ratelim_undo(&g->rl_source, src, now, sup);
        return;
    }
    json_t *d = json_pack("{s:s,s:s,s:I,s:I}", "reason", why && *why ? why : "invalid credentials",
                          "source", src, "suppressedBefore", (json_int_t)sup, "suppressedAll",
                          (json_int_t)all);
    char *dj = json_dumps(d, JSON_COMPACT);
    json_decref(d);
    (void)stk_audit_append(stk_session_store(g->session), "", "authn_failed", "unauthenticated", dj,
                           NULL);
    free(dj);
}

int gw_authenticate(struct stk_gw *g, struct bufferevent *bev, const char *authz, size_t n_authz,
                    struct stk_principal *ret)
{
    char subject[GW_CERT_SUBJECT_MAX];
    int cr = gw_cert_subject(bev, subject, sizeof(subject));
    memset(ret, 0, sizeof(*ret));
    /* which of two headers would count is a guess: neither does */
    const char *why = n_authz > 1    ? "two or more Authorization headers"
                      : cr == -E2BIG ? "client certificate subject longer than 511 bytes"
                                     : NULL;
    int r = why ? -EACCES : g->auth->authenticate(g->auth->ud, authz, cr > 0 ? subject : NULL, ret);
    if (why)
        snprintf(ret->why, sizeof(ret->why), "%s", why);
    if (r < 0 && r != -ENOENT)
        gw_audit_authn_failure(g, bev, ret->why);
    return r;
}

/* 401 unless the caller is someone; fills c->who and c->actor. */
static bool authenticate(struct gw_call *c)
{
    const char *authz = NULL;
    size_t n_authz = 0;
    const struct evkeyval *kv;
    TAILQ_FOREACH(kv, evhttp_request_get_input_headers(c->req), next)
    {
        if (!strcasecmp(kv->key, "Authorization") && n_authz++ == 0)
            authz = kv->value;
    }
    struct evhttp_connection *evcon = evhttp_request_get_connection(c->req);
    int r = gw_authenticate(c->g, evcon ? evhttp_connection_get_bufferevent(evcon) : NULL, authz,
                            n_authz, &c->who);
    if (r == -ENOENT) {
        gw_reply_error(c, GW_E_UNAUTHENTICATED, "authentication required");
        return false;
    }
    if (r < 0) {
        gw_reply_error(c, GW_E_UNAUTHENTICATED, "invalid credentials");
        return false;
    }
    gw_principal_name(&c->who, c->actor, sizeof(c->actor));
    snprintf(c->principal, sizeof(c->principal), "%s", c->actor);
    return true;
}

void gw_gate_denied(struct stk_gw *g, const struct stk_principal *who, enum stk_verb verb,
                    const char *object, bool known)
{
    struct gw_call c = {.g = g};
    gw_principal_name(who, c.principal, sizeof(c.principal));
    snprintf(c.actor, sizeof(c.actor), "%s", c.principal);
    struct stk_authz_decision d = {.hide = true};
    snprintf(d.reason, sizeof(d.reason), "%s (refused before the body was read)",
             known ? "no grant of the caller's identity lists the verb"
                   : "no identity matches the principal");
    audit_decision(&c, verb, NULL, object, &d);
}

/* ---- request helpers ----------------------------------------------------------------------- */

static const char *query_get(struct gw_call *c, const char *key, char *buf, size_t n)
{
    const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(c->req));
    struct evkeyvalq kv;
    TAILQ_INIT(&kv);
    if (!q || evhttp_parse_query_str(q, &kv) < 0)
        return NULL;
    const char *v = evhttp_find_header(&kv, key);
    const char *ret = NULL;
    if (v && strlen(v) < n) {
        memcpy(buf, v, strlen(v) + 1);
        ret = buf;
    }
    evhttp_clear_headers(&kv);
    return ret;
}

/* ?tenant=T: which tenant's pool a name means, for a caller who sees
 * several tenants' pools of that name. */
#define query_tenant(c) query_get((c), "tenant", (char[64]){0}, 64)

static bool query_flag(struct gw_call *c, const char *key)
{
    char v[8];
    const char *s = query_get(c, key, v, sizeof(v));
    return s && (!strcmp(s, "1") || !strcmp(s, "true"));
}

/* The body, NUL-terminated (the gate bounds it at STK_GW_MAX_BODY). */
char *gw_call_body(struct gw_call *c, size_t *ret_len)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(c->req);
    size_t n = evbuffer_get_length(in);
    char *s = stk_xmalloc(n + 1);
    evbuffer_copyout(in, s, n);
    s[n] = '\0';
    *ret_len = n;
    return s;
}

/* Resolving a stored spec (YAML, the defaults chain) is most of an
 * authorized read's CPU, and the answer changes only with the documents: a
 * small cache keyed by the record's id and a hash of its documents. The
 * gateway's loop is single-threaded; the cache is its own. */
#define NS_CACHE 256
static struct {
    char id[64];
    uint64_t docs;
    char ns[128];
    bool none; /* resolved to no namespace */
} ns_cache[NS_CACHE];

static uint64_t docs_hash(const struct stk_sb_rec *r)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (const char *t = r->spec; t && *t; t++)
        h = (h ^ (unsigned char)*t) * UINT64_C(0x100000001b3);
    h = (h ^ 0xff) * UINT64_C(0x100000001b3);
    for (const char *t = r->env; t && *t; t++)
        h = (h ^ (unsigned char)*t) * UINT64_C(0x100000001b3);
    return h;
}

static char *record_namespace_resolve(const struct stk_sb_rec *r);

char *gw_record_namespace(const struct stk_sb_rec *r)
{
    /* written with the documents since schema 6 */
    if (r->namespace_known)
        return r->namespace[0] ? stk_xstrdup(r->namespace) : NULL;
    if (!r->spec)
        return NULL;
    uint64_t h = docs_hash(r);
    size_t slot = (size_t)(h % NS_CACHE);
    if (!strcmp(ns_cache[slot].id, r->id) && ns_cache[slot].docs == h)
        return ns_cache[slot].none ? NULL : stk_xstrdup(ns_cache[slot].ns);
    char *ns = record_namespace_resolve(r);
    if (!ns || strlen(ns) < sizeof(ns_cache[slot].ns)) {
        snprintf(ns_cache[slot].id, sizeof(ns_cache[slot].id), "%s", r->id);
        ns_cache[slot].docs = h;
        ns_cache[slot].none = !ns;
        snprintf(ns_cache[slot].ns, sizeof(ns_cache[slot].ns), "%s", ns ? ns : "");
    }
    return ns;
}

static char *record_namespace_resolve(const struct stk_sb_rec *r)
{
    struct stk_session_docs d = {.spec_file = "spec",
                                 .spec = r->spec,
                                 .spec_len = strlen(r->spec),
                                 .env_file = r->env ? "env" : NULL,
                                 .env = r->env,
                                 .env_len = r->env ? strlen(r->env) : 0};
    _cleanup_diags_ struct stk_diags diags = {0};
    struct stk_session_boundary sb = {0};
    char *ns = NULL;
    if (stk_session_resolve(&d, &diags, &sb) == 0 && sb.b->namespace)
        ns = stk_xstrdup(sb.b->namespace);
    stk_session_boundary_release(&sb);
    return ns;
}

static void record_target(const struct stk_sb_rec *r, const char *ns, struct stk_authz_target *t)
{
    *t = (struct stk_authz_target){
        .tenant = r->tenant, .project = r->project, .owner = r->owner, .namespace = ns};
}

/* Whether the caller may see the sandbox (a `get` would be allowed): asked,
 * not recorded; the decision on the verb itself is. */
static bool visible(struct gw_call *c, const struct stk_sb_rec *r)
{
    _cleanup_free_ char *ns = gw_record_namespace(r);
    struct stk_authz_target t;
    record_target(r, ns, &t);
    struct stk_authz_decision d;
    memset(&d, 0, sizeof(d));
    c->g->auth->authorize(c->g->auth->ud, &c->who, STK_VERB_GET, &t, &d);
    return d.allow;
}

/*
 * An id names one sandbox; a name is unique per tenant only, so it is
 * looked up among the sandboxes the caller may see: another tenant's
 * sandbox of the same name neither makes it ambiguous nor shows that it
 * exists. 0, -ENOENT (none the caller sees), -EINVAL (several it sees).
 */
static int find_sandbox(struct gw_call *c, struct stk_sb_rec *ret, struct stk_error **err)
{
    struct stk_store *st = stk_session_store(c->g->session);
    int r = stk_store_sb_get_id(st, c->arg, ret, err);
    if (r != -ENOENT)
        return r;
    struct stk_sb_rec *recs = NULL;
    size_t n = 0, found = 0, pick = 0;
    if ((r = stk_store_sb_find_name(st, c->arg, &recs, &n, err)) < 0)
        return r;
    for (size_t i = 0; i < n; i++)
        if (visible(c, &recs[i]) && found++ == 0)
            pick = i;
    if (found == 1) {
        *ret = recs[pick];
        memset(&recs[pick], 0, sizeof(recs[pick]));
    }
    stk_sb_recs_free(recs, n);
    return found == 1 ? 0 : found == 0 ? -ENOENT : -EINVAL;
}

/* Loads the sandbox c->arg names and asks for verb on it. */
static bool load_sandbox(struct gw_call *c, enum stk_verb verb, struct stk_sb_rec *ret)
{
    _cleanup_error_ struct stk_error *err = NULL;
    int r = find_sandbox(c, ret, &err);
    if (r == -ENOENT) {
        /* recorded like any hidden denial (global chain, budgeted) */
        struct stk_authz_decision d = {.hide = true};
        snprintf(d.reason, sizeof(d.reason), "no sandbox %s the caller may see", c->arg);
        char object[80];
        snprintf(object, sizeof(object), "sandbox/%s", c->arg);
        audit_decision(c, verb, NULL, object, &d);
        reply_not_found(c);
        return false;
    }
    if (r == -EINVAL && !err) {
        gw_reply_error(c, GW_E_CONFLICT,
                       "'%s' is ambiguous: several sandboxes you may see are named so; use an id",
                       c->arg);
        return false;
    }
    if (r < 0) {
        gw_reply_error(c, gw_err_of_errno(r), "%s", err ? err->msg : "reading the store");
        return false;
    }
    _cleanup_free_ char *ns = gw_record_namespace(ret);
    struct stk_authz_target t;
    record_target(ret, ns, &t);
    struct stk_authz_decision d;
    char object[80];
    snprintf(object, sizeof(object), "sandbox/%s", ret->id);
    if (!gw_authorize(c, verb, &t, ret->id, object, &d)) {
        stk_sb_rec_free(ret);
        return false;
    }
    return true;
}

int gw_gate_target(struct stk_gw *g, const struct stk_principal *who, enum stk_verb verb,
                   const char *arg)
{
    struct gw_call c = {.g = g, .who = *who}; /* borrowed: never released here */
    snprintf(c.arg, sizeof(c.arg), "%s", arg);
    gw_principal_name(who, c.principal, sizeof(c.principal));
    snprintf(c.actor, sizeof(c.actor), "%s", c.principal);
    struct stk_sb_rec rec;
    char object[80];
    snprintf(object, sizeof(object), "sandbox/%s", arg);
    int r = find_sandbox(&c, &rec, NULL);
    if (r == -ENOENT) {
        struct stk_authz_decision d = {.hide = true};
        snprintf(d.reason, sizeof(d.reason),
                 "no sandbox %s the caller may see (refused before the body was read)", arg);
        audit_decision(&c, verb, NULL, object, &d);
        return GW_E_NOT_FOUND;
    }
    if (r < 0)
        return -1; /* the handler answers it, from the whole request */
    _cleanup_free_ char *ns = gw_record_namespace(&rec);
    struct stk_authz_target t;
    record_target(&rec, ns, &t);
    struct stk_authz_decision d;
    ask(&c, verb, &t, &d); /* the identity becomes the record's actor, as in a handler */
    int ret = -1;
    if (!d.allow) {
        /* recorded as the handler would: on the sandbox's chain when the
         * caller may see it, else hidden */
        snprintf(object, sizeof(object), "sandbox/%s", rec.id);
        audit_decision(&c, verb, d.hide ? NULL : rec.id, object, &d);
        ret = d.hide ? GW_E_NOT_FOUND : GW_E_FORBIDDEN;
    }
    stk_sb_rec_free(&rec);
    return ret;
}

/* The resolved boundary of spec (and env) text, or a 400 with the
 * diagnostics ("file:line:col: error: path: message") in the body. */
static bool resolve_docs(struct gw_call *c, const char *spec, const char *env,
                         struct stk_session_docs *docs, struct stk_session_boundary *ret)
{
    *docs = (struct stk_session_docs){.spec_file = "spec",
                                      .spec = spec,
                                      .spec_len = strlen(spec),
                                      .env_file = env ? "env" : NULL,
                                      .env = env,
                                      .env_len = env ? strlen(env) : 0};
    _cleanup_diags_ struct stk_diags diags = {0};
    if (stk_session_resolve(docs, &diags, ret) >= 0)
        return true;
    json_t *list = json_array();
    for (size_t i = 0; i < diags.n; i++) {
        _cleanup_free_ char *line = stk_diag_format(&diags.items[i]);
        json_array_append_new(list, json_string(line));
    }
    json_t *e = gw_error_json(GW_E_BAD_REQUEST, "the spec is not valid");
    json_object_set_new(json_object_get(e, "error"), "diagnostics", list);
    stk_session_boundary_release(ret);
    gw_reply_json(c, 400, e);
    return false;
}

/* ---- jobs ----------------------------------------------------------------------------------- */

static void start_job(struct gw_call *c, json_t *job, bool stream)
{
    int r = gw_job_start(c, job, stream);
    if (r == -EAGAIN)
        gw_reply_error(c, GW_E_UNAVAILABLE, "too many operations in progress (%d): retry",
                       GW_MAX_WORKERS);
    else if (r < 0)
        gw_reply_error(c, GW_E_UNAVAILABLE, "cannot start a worker: %s", strerror(-r));
}

static json_t *id_job(const char *op, const char *id)
{
    return json_pack("{s:s,s:s}", "op", op, "id", id);
}

/* ---- handlers -------------------------------------------------------------------------------- */

static void h_healthz(struct gw_call *c)
{
    gw_reply_json(c, 200, json_pack("{s:s}", "status", "ok"));
}

/* Metrics count every tenant's sandboxes: the caller needs their own verb,
 * `metrics`, which `list` does not imply. */
static void h_metrics(struct gw_call *c)
{
    struct stk_authz_decision d;
    if (!gw_authorize(c, STK_VERB_METRICS, NULL, NULL, "metrics", &d))
        return;
    struct evbuffer *b = evbuffer_new();
    metrics_text(c->g, b);
    evhttp_add_header(evhttp_request_get_output_headers(c->req), "Content-Type",
                      "text/plain; version=0.0.4");
    gw_call_answered(c, 200);
    evhttp_send_reply(c->req, 200, "OK", b);
    evbuffer_free(b);
    gw_call_free(c);
}

static json_t *principal_json(const struct stk_principal *p)
{
    static const char *const kinds[] = {"none", "token", "jwt", "cert"};
    json_t *j = json_pack("{s:s}", "kind", kinds[p->kind]);
    if (p->kind == STK_PRINCIPAL_TOKEN)
        json_object_set_new(j, "token_id", json_string(p->token_id));
    if (p->kind == STK_PRINCIPAL_JWT) {
        json_object_set_new(j, "issuer", json_string(p->issuer));
        json_object_set_new(j, "subject", json_string(p->subject));
    }
    if (p->kind == STK_PRINCIPAL_CERT)
        json_object_set_new(j, "cert_subject", json_string(p->cert_subject));
    return j;
}

/* The identity is what the policy matches: a `list` decision names it (and
 * is recorded like every other); whoami answers either way. */
static void h_whoami(struct gw_call *c)
{
    struct stk_authz_decision d;
    (void)gw_decide(c, STK_VERB_LIST, NULL, NULL, "whoami", &d);
    gw_reply_json(
        c, 200,
        json_pack("{s:o,s:s}", "principal", principal_json(&c->who), "identity", d.identity));
}

/* The namespace of a record of the brief list: recorded with its documents,
 * or (a record from before schema 6) read from them. false when the record
 * is gone meanwhile: it is not listed, never authorized without it. */
static bool brief_namespace(struct gw_call *c, const struct stk_sb_rec *brief, char **ret)
{
    if (brief->namespace_known) {
        *ret = gw_record_namespace(brief);
        return true;
    }
    struct stk_sb_rec full;
    if (stk_store_sb_get_id(stk_session_store(c->g->session), brief->id, &full, NULL) < 0)
        return false;
    *ret = gw_record_namespace(&full);
    stk_sb_rec_free(&full);
    return true;
}

/* The brief list (no documents: a record's may be a MiB each); a row shows
 * nothing of them, and authorization needs only the namespace. */
static void h_sb_list(struct gw_call *c)
{
    struct stk_authz_decision d;
    if (!gw_authorize(c, STK_VERB_LIST, NULL, NULL, "sandboxes", &d))
        return;
    struct stk_sb_rec *recs = NULL;
    size_t n = 0;
    _cleanup_error_ struct stk_error *err = NULL;
    int r = stk_store_sb_list_brief(stk_session_store(c->g->session), query_flag(c, "all"), &recs,
                                    &n, &err);
    if (r < 0) {
        gw_reply_error(c, GW_E_INTERNAL, "%s", err ? err->msg : "listing");
        return;
    }
    json_t *a = json_array();
    struct decision_batch batch = {.c = c, .verb = STK_VERB_GET};
    for (size_t i = 0; i < n; i++) {
        _cleanup_free_ char *ns = NULL;
        if (!brief_namespace(c, &recs[i], &ns))
            continue;
        struct stk_authz_target t = {.tenant = recs[i].tenant,
                                     .project = recs[i].project,
                                     .owner = recs[i].owner,
                                     .namespace = ns};
        char object[80];
        snprintf(object, sizeof(object), "sandbox/%s", recs[i].id);
        if (batch_decide(&batch, &t, object))
            json_array_append_new(a, stk_sb_rec_json(&recs[i], false));
    }
    batch_end(&batch);
    stk_sb_recs_free(recs, n);
    gw_reply_json(c, 200, json_pack("{s:o}", "items", a));
}

static void h_sb_get(struct gw_call *c)
{
    struct stk_sb_rec rec;
    if (!load_sandbox(c, STK_VERB_GET, &rec))
        return;
    gw_reply_json(c, 200, stk_sb_rec_json(&rec, true));
    stk_sb_rec_free(&rec);
}

/* A pool is authorized as the sandboxes it holds: its tenant, project,
 * owner and its template's namespace. */
struct pool_target {
    struct stk_authz_target t;
    char *ns;
};

static void pool_target(const struct stk_pool_rec *p, struct pool_target *ret)
{
    struct stk_sb_rec as = {0};
    snprintf(as.id, sizeof(as.id), "pool/%.50s", p->name);
    as.spec = p->template_spec;
    as.env = p->env;
    ret->ns = gw_record_namespace(&as);
    ret->t = (struct stk_authz_target){
        .tenant = p->tenant, .project = p->project, .owner = p->owner, .namespace = ret->ns};
}

static json_t *pool_json(struct gw_call *c, const struct stk_pool_rec *p)
{
    size_t ready = 0;
    (void)stk_pool_ready(c->g->session, p->tenant, p->name, &ready, NULL);
    json_t *j = json_pack("{s:s,s:i,s:I,s:s,s:s}", "name", p->name, "size", p->size, "ready",
                          (json_int_t)ready, "tenant", p->tenant, "owner", p->owner);
    if (p->mechanism[0]) { /* the backend keeps it: its controller counts the ready ones */
        json_object_set_new(j, "mechanism", json_string(p->mechanism));
        json_object_set_new(j, "ready", json_null());
    }
    return j;
}

static void h_pool_list(struct gw_call *c)
{
    struct stk_authz_decision d;
    if (!gw_authorize(c, STK_VERB_POOL, NULL, NULL, "pools", &d))
        return;
    struct stk_pool_rec *pools = NULL;
    size_t n = 0;
    _cleanup_error_ struct stk_error *err = NULL;
    if (stk_store_pool_list(stk_session_store(c->g->session), &pools, &n, &err) < 0) {
        gw_reply_error(c, GW_E_INTERNAL, "%s", err ? err->msg : "listing pools");
        return;
    }
    json_t *a = json_array();
    struct decision_batch batch = {.c = c, .verb = STK_VERB_POOL, .what = "pools (list rows)"};
    for (size_t i = 0; i < n; i++) {
        struct pool_target pt;
        pool_target(&pools[i], &pt);
        char object[80];
        snprintf(object, sizeof(object), "pool/%s", pools[i].name);
        if (batch_decide(&batch, &pt.t, object))
            json_array_append_new(a, pool_json(c, &pools[i]));
        free(pt.ns);
    }
    batch_end(&batch);
    stk_pool_recs_free(pools, n);
    gw_reply_json(c, 200, json_pack("{s:o}", "items", a));
}

/* Whether the caller may see the pool (verb on it would be allowed): asked,
 * not recorded. */
static bool pool_visible(struct gw_call *c, const struct stk_pool_rec *p, enum stk_verb verb)
{
    struct pool_target pt;
    pool_target(p, &pt);
    struct stk_authz_decision d;
    memset(&d, 0, sizeof(d));
    c->g->auth->authorize(c->g->auth->ud, &c->who, verb, &pt.t, &d);
    free(pt.ns);
    return d.allow;
}

/* A pool name is unique per tenant only: it is looked up among the pools
 * the caller may see (of tenant, when not NULL), so that another tenant's
 * pool of the same name neither makes it ambiguous nor shows that it
 * exists. 0, -ENOENT (none the caller sees), -EINVAL (several). */
static int find_pool(struct gw_call *c, const char *name, const char *tenant, enum stk_verb verb,
                     struct stk_pool_rec *ret, struct stk_error **err)
{
    struct stk_pool_rec *pools = NULL;
    size_t n = 0, found = 0, pick = 0;
    int r = stk_store_pool_list(stk_session_store(c->g->session), &pools, &n, err);
    if (r < 0)
        return r;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(pools[i].name, name) && (!tenant || !strcmp(pools[i].tenant, tenant)) &&
            pool_visible(c, &pools[i], verb) && found++ == 0)
            pick = i;
    if (found == 1) {
        *ret = pools[pick];
        memset(&pools[pick], 0, sizeof(pools[pick]));
    }
    stk_pool_recs_free(pools, n);
    return found == 1 ? 0 : found == 0 ? -ENOENT : -EINVAL;
}

/* Loads pool `name` (of tenant, when not NULL) and asks for verb on it: 404
 * when it does not exist or the caller may not see it, 403 when it may see
 * but not do. */
static bool load_pool(struct gw_call *c, const char *name, const char *tenant, enum stk_verb verb,
                      struct stk_pool_rec *ret)
{
    _cleanup_error_ struct stk_error *err = NULL;
    int r = find_pool(c, name, tenant, verb, ret, &err);
    if (r == -ENOENT && !err) {
        /* recorded like any hidden denial (global chain, budgeted) */
        struct stk_authz_decision d = {.hide = true};
        snprintf(d.reason, sizeof(d.reason), "no pool %s the caller may see", name);
        char object[80];
        snprintf(object, sizeof(object), "pool/%s", name);
        audit_decision(c, verb, NULL, object, &d);
        reply_not_found(c);
        return false;
    }
    if (r == -EINVAL && !err) {
        gw_reply_error(c, GW_E_CONFLICT,
                       "'%s' is ambiguous: several pools you may see are named so (of tenants "
                       "you manage); give the tenant",
                       name);
        return false;
    }
    if (r < 0) {
        gw_reply_error(c, GW_E_INTERNAL, "%s", err ? err->msg : "reading a pool");
        return false;
    }
    struct pool_target pt;
    pool_target(ret, &pt);
    struct stk_authz_decision d;
    char object[80];
    snprintf(object, sizeof(object), "pool/%s", name);
    bool ok = gw_authorize(c, verb, &pt.t, NULL, object, &d);
    free(pt.ns);
    if (!ok)
        stk_pool_rec_free(ret);
    return ok;
}

static void h_pool_get(struct gw_call *c)
{
    struct stk_pool_rec p;
    if (!load_pool(c, c->arg, query_tenant(c), STK_VERB_POOL, &p))
        return;
    gw_reply_json(c, 200, pool_json(c, &p));
    stk_pool_rec_free(&p);
}

/* The namespaces a boundary occupies with the tenants they are bound to. */
struct ns_owners {
    struct stk_ns_owner o[3];
    char tenant[3][64];
    size_t n;
};

static void ns_owners_of(struct gw_call *c, const char *request_ns, const struct stk_boundary *b,
                         struct ns_owners *ret)
{
    const char *nss[3] = {request_ns, b->namespace,
                          b->kube && b->kube->namespace.meta.set ? b->kube->namespace.v : NULL};
    ret->n = 0;
    for (size_t i = 0; i < STK_ARRAY_SIZE(nss); i++) {
        if (!nss[i] || stk_store_ns_tenant(stk_session_store(c->g->session), nss[i],
                                           ret->tenant[ret->n], NULL) < 0)
            continue;
        ret->o[ret->n] = (struct stk_ns_owner){nss[i], ret->tenant[ret->n]};
        ret->n++;
    }
}

/* A claim is checked twice: the pool must be one the caller may see, of
 * the tenant the claim is for (404 otherwise, as for a missing pool), and
 * the claim itself is a create (below). */
static bool claim_ok(struct gw_call *c, const char *pool, const char *tenant)
{
    struct stk_pool_rec p;
    c->claim_pool = true;
    snprintf(c->arg, sizeof(c->arg), "%s", pool);
    /* only the claim's tenant's pools are candidates */
    if (!load_pool(c, pool, tenant ? tenant : "", STK_VERB_GET, &p))
        return false;
    stk_pool_rec_free(&p);
    c->claim_pool = false;
    c->arg[0] = '\0';
    return true;
}

static void create_authorized(struct gw_call *c, const struct gw_create_body *b,
                              struct stk_session_docs *docs, const struct stk_boundary *bd)
{
    const char *tenant = b->tenant ? b->tenant : bd->namespace;
    struct ns_owners nso;
    ns_owners_of(c, bd->namespace, bd, &nso);
    struct stk_authz_target t = {.tenant = tenant,
                                 .namespace = bd->namespace,
                                 .b = bd,
                                 .on_behalf_of = b->owner,
                                 .warm = b->pool != NULL,
                                 .ns_owners = nso.o,
                                 .n_ns_owners = nso.n};
    struct stk_authz_decision d;
    if (b->pool && !claim_ok(c, b->pool, tenant))
        return;
    if (!gw_authorize(c, STK_VERB_CREATE, &t, NULL, "sandboxes", &d))
        return;
    /* the record says what the decision allowed, not what was asked */
    const char *owner = d.owner[0] ? d.owner : b->owner ? b->owner : c->actor;
    json_t *job = json_pack("{s:s,s:s,s:s*,s:s*,s:s,s:s*,s:b}", "op", "create", "spec", docs->spec,
                            "env", docs->env, "pool", b->pool, "owner", owner, "tenant", tenant,
                            "accepted", b->accepted_only);
    start_job(c, job, false);
}

static void h_sb_create(struct gw_call *c)
{
    size_t len;
    _cleanup_free_ char *body = gw_call_body(c, &len);
    struct gw_create_body b;
    json_t *root = NULL;
    char why[256];
    if (gw_create_body_parse(body, len, &b, &root, why, sizeof(why)) < 0) {
        gw_reply_error(c, GW_E_BAD_REQUEST, "%s", why);
        return;
    }
    struct stk_session_docs docs;
    struct stk_session_boundary sb = {0};
    if (resolve_docs(c, b.spec, b.env, &docs, &sb)) {
        create_authorized(c, &b, &docs, sb.b);
        stk_session_boundary_release(&sb);
    }
    json_decref(root);
}

static void h_sb_delete(struct gw_call *c)
{
    struct stk_sb_rec rec;
    if (!load_sandbox(c, STK_VERB_DELETE, &rec))
        return;
    json_t *job = id_job("rm", rec.id);
    json_object_set_new(job, "force", json_boolean(query_flag(c, "force")));
    stk_sb_rec_free(&rec);
    start_job(c, job, false);
}

static void sb_op(struct gw_call *c, enum stk_verb verb, const char *op)
{
    struct stk_sb_rec rec;
    if (!load_sandbox(c, verb, &rec))
        return;
    json_t *job = id_job(op, rec.id);
    stk_sb_rec_free(&rec);
    start_job(c, job, false);
}

static void h_sb_stop(struct gw_call *c)
{
    sb_op(c, STK_VERB_STOP, "stop");
}

static void h_sb_start(struct gw_call *c)
{
    sb_op(c, STK_VERB_START, "start");
}

/* The live instances of an injected sandbox (what `exec --replica` picks
 * from): a worker asks the backend, authorized as get. */
static void h_sb_replicas(struct gw_call *c)
{
    sb_op(c, STK_VERB_GET, "replicas");
}

/* Exec: the connection is handed to a relay process (exec.c). */
static void h_sb_exec(struct gw_call *c)
{
    struct stk_sb_rec rec;
    if (!load_sandbox(c, STK_VERB_EXEC, &rec))
        return;
    char id[64];
    snprintf(id, sizeof(id), "%s", rec.id);
    stk_sb_rec_free(&rec);
    gw_exec_start(c, id);
}

/* Authorized as exec: the caller reaches a process of the sandbox. */
static void h_sb_port(struct gw_call *c)
{
    char id[64];
    uint16_t port;
    const char *rest;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(c->req));
    if (!path || gw_port_path(path, id, &port, &rest) < 0) {
        gw_reply_error(c, GW_E_NOT_FOUND, "no such endpoint");
        return;
    }
    struct stk_sb_rec rec;
    if (!load_sandbox(c, STK_VERB_EXEC, &rec))
        return;
    snprintf(id, sizeof(id), "%s", rec.id);
    stk_sb_rec_free(&rec);
    gw_port_start(c, id, port, rest);
}

static void h_sb_logs(struct gw_call *c)
{
    char v[32];
    int64_t since_ms = 0, until_ms = 0, tail = -1;
    const char *since = query_get(c, "since", v, sizeof(v));
    if (since && gw_parse_ms(since, &since_ms) < 0) {
        gw_reply_error(c, GW_E_BAD_REQUEST, "since must be unix milliseconds");
        return;
    }
    const char *until = query_get(c, "until", v, sizeof(v));
    if (until && gw_parse_ms(until, &until_ms) < 0) {
        gw_reply_error(c, GW_E_BAD_REQUEST, "until must be unix milliseconds");
        return;
    }
    /* tail: the last N lines (at most 10^8, as the CLI takes) */
    const char *t = query_get(c, "tail", v, sizeof(v));
    if (t && (gw_parse_ms(t, &tail) < 0 || tail > 100000000)) {
        gw_reply_error(c, GW_E_BAD_REQUEST, "tail must be a number of lines up to 100000000");
        return;
    }
    struct stk_sb_rec rec;
    if (!load_sandbox(c, STK_VERB_LOGS, &rec))
        return;
    json_t *job = id_job("logs", rec.id);
    json_object_set_new(job, "since", json_integer(since_ms));
    json_object_set_new(job, "until", json_integer(until_ms));
    json_object_set_new(job, "tail", json_integer(tail));
    json_object_set_new(job, "timestamps", json_boolean(query_flag(c, "timestamps")));
    json_object_set_new(job, "follow", json_boolean(query_flag(c, "follow")));
    stk_sb_rec_free(&rec);
    start_job(c, job, true);
}

/* ?path=... of the files API: absolute, at most STK_INITP's 4096 bytes, no
 * NUL (a %00 would cut the path the caller meant). */
static bool file_path_query(struct gw_call *c, char *buf, size_t n)
{
    const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(c->req));
    if (q && strcasestr(q, "%00")) {
        gw_reply_error(c, GW_E_BAD_REQUEST, "path must not contain a NUL byte");
        return false;
    }
    if (!query_get(c, "path", buf, n) || buf[0] != '/') {
        gw_reply_error(c, GW_E_BAD_REQUEST,
                       "files need ?path=ABSOLUTE_PATH (at most 4096 bytes, URL-escaped)");
        return false;
    }
    return true;
}

/* GET .../files?path=P: the file's bytes (a worker reads it into a memfd,
 * then the reply is that memfd). Authorized as exec. */
static void h_sb_file_get(struct gw_call *c)
{
    char path[GW_FILE_PATH_MAX + 1];
    if (!file_path_query(c, path, sizeof(path)))
        return;
    struct stk_sb_rec rec;
    if (!load_sandbox(c, STK_VERB_EXEC, &rec))
        return;
    json_t *job = id_job("file_read", rec.id);
    json_object_set_new(job, "path", json_string(path));
    stk_sb_rec_free(&rec);
    int r = gw_job_start_file(c, job, NULL);
    if (r < 0)
        gw_reply_error(c, GW_E_UNAVAILABLE, "cannot start a worker: %s", strerror(-r));
}

/* PUT .../files?path=P[&mode=0644]: the body becomes the file (at most
 * 16 MiB, which the gate enforced from the head). Authorized as exec. */
static void h_sb_file_put(struct gw_call *c)
{
    char path[GW_FILE_PATH_MAX + 1], m[8];
    if (!file_path_query(c, path, sizeof(path)))
        return;
    long mode = 0644;
    const char *ms = query_get(c, "mode", m, sizeof(m));
    if (ms) {
        char *end;
        mode = strtol(ms, &end, 8);
        if (!*ms || *end || mode < 0 || mode > 0777) {
            gw_reply_error(c, GW_E_BAD_REQUEST, "mode must be octal permission bits, 0 to 0777");
            return;
        }
    }
    struct stk_sb_rec rec;
    if (!load_sandbox(c, STK_VERB_EXEC, &rec))
        return;
    struct evbuffer *in = evhttp_request_get_input_buffer(c->req);
    size_t len = evbuffer_get_length(in);
    json_t *job = id_job("file_write", rec.id);
    json_object_set_new(job, "path", json_string(path));
    json_object_set_new(job, "mode", json_integer(mode));
    json_object_set_new(job, "size", json_integer((json_int_t)len));
    stk_sb_rec_free(&rec);
    int r = gw_job_start_file(c, job, in);
    if (r < 0)
        gw_reply_error(c, GW_E_UNAVAILABLE, "cannot start a worker: %s", strerror(-r));
}

static void h_sb_audit(struct gw_call *c)
{
    char v[32];
    int64_t after = 0, limit = GW_AUDIT_PAGE_DEFAULT;
    const char *s_after = query_get(c, "after", v, sizeof(v));
    if (s_after && gw_parse_ms(s_after, &after) < 0) {
        gw_reply_error(c, GW_E_BAD_REQUEST, "after must be a record's seq (a number)");
        return;
    }
    const char *s_limit = query_get(c, "limit", v, sizeof(v));
    if (s_limit && (gw_parse_ms(s_limit, &limit) < 0 || limit < 1 || limit > GW_AUDIT_PAGE_MAX)) {
        gw_reply_error(c, GW_E_BAD_REQUEST, "limit must be 1 to %d", GW_AUDIT_PAGE_MAX);
        return;
    }
    struct stk_sb_rec rec;
    if (!load_sandbox(c, STK_VERB_AUDIT, &rec))
        return;
    /* the trail as it stands, decisions waiting for the group commit included */
    gw_audit_flush(c->g);
    /* a worker reads the page in batches and streams it (worker.c): the
     * event loop reads no SQLite for it and holds one chunk at a time */
    json_t *job = id_job("audit", rec.id);
    json_object_set_new(job, "after", json_integer(after));
    json_object_set_new(job, "limit", json_integer(limit));
    stk_sb_rec_free(&rec);
    evhttp_add_header(evhttp_request_get_output_headers(c->req), "Content-Type",
                      "application/json");
    start_job(c, job, true);
}

/* What explain knows of the local backend for this sandbox: the runtime it
 * was given at create (not what `run` would choose now) and its caveats. */
/* explain's contract of the sandbox as recorded, on the session's backend
 * (its driver's facts) with the runtime it was given. */
static void h_sb_contract(struct gw_call *c)
{
    struct stk_sb_rec rec;
    if (!load_sandbox(c, STK_VERB_GET, &rec))
        return;
    struct stk_session_docs docs = {.spec_file = rec.id,
                                    .spec = rec.spec ? rec.spec : "",
                                    .spec_len = rec.spec ? strlen(rec.spec) : 0,
                                    .env_file = rec.env ? "env" : NULL,
                                    .env = rec.env,
                                    .env_len = rec.env ? strlen(rec.env) : 0};
    _cleanup_diags_ struct stk_diags diags = {0};
    struct stk_session_boundary sb = {0};
    _cleanup_contract_ struct stk_contract *contract = NULL;
    struct stk_driver_facts facts = {0};
    if (stk_session_resolve(&docs, &diags, &sb) < 0 ||
        stk_session_record_facts(c->g->session, &rec, sb.b, &facts, NULL) < 0 ||
        stk_explain(sb.b, &facts.facts, &contract) < 0)
        gw_reply_error(c, GW_E_INTERNAL, "the sandbox's recorded spec no longer resolves");
    else
        gw_reply_json(c, 200, stk_contract_json(contract));
    stk_session_boundary_release(&sb);
    stk_sb_rec_free(&rec);
}

/* A pool is created as the sandboxes it will hold: `pool` to manage pools,
 * and `create` on its template with every create-time limit (maxPolicy,
 * runtimes, driverConfigKeys, service accounts, credential references,
 * namespaces, warm allocation). Its members are recorded with the tenant
 * and owner decided here, and refilled from the template as decided. */
static void h_pool_create(struct gw_call *c)
{
    size_t len;
    _cleanup_free_ char *body = gw_call_body(c, &len);
    struct gw_pool_body b;
    json_t *root = NULL;
    char why[256];
    if (gw_pool_body_parse(body, len, &b, &root, why, sizeof(why)) < 0) {
        gw_reply_error(c, GW_E_BAD_REQUEST, "%s", why);
        return;
    }
    struct stk_session_docs docs;
    struct stk_session_boundary sb = {0};
    if (resolve_docs(c, b.spec, b.env, &docs, &sb)) {
        struct ns_owners nso;
        ns_owners_of(c, sb.b->namespace, sb.b, &nso);
        /* as for create: the tenant asked for, else the template's namespace */
        const char *tenant = b.tenant ? b.tenant : sb.b->namespace;
        struct stk_authz_target t = {.tenant = tenant,
                                     .namespace = sb.b->namespace,
                                     .b = sb.b,
                                     .on_behalf_of = b.owner,
                                     .warm = true,
                                     .ns_owners = nso.o,
                                     .n_ns_owners = nso.n};
        struct stk_authz_decision d, dc;
        char object[80];
        snprintf(object, sizeof(object), "pool/%s", b.name);
        if (gw_authorize(c, STK_VERB_CREATE, &t, NULL, object, &dc) &&
            gw_authorize(c, STK_VERB_POOL, NULL, NULL, object, &d)) {
            const char *owner = dc.owner[0] ? dc.owner : c->actor;
            start_job(c,
                      json_pack("{s:s,s:s,s:I,s:s,s:s*,s:s*,s:s}", "op", "pool_create", "name",
                                b.name, "size", (json_int_t)b.size, "spec", b.spec, "env", b.env,
                                "tenant", tenant, "owner", owner),
                      false);
        }
        stk_session_boundary_release(&sb);
    }
    json_decref(root);
}

static void h_pool_delete(struct gw_call *c)
{
    struct stk_pool_rec p;
    if (!load_pool(c, c->arg, query_tenant(c), STK_VERB_POOL, &p))
        return;
    start_job(c, json_pack("{s:s,s:s,s:s}", "op", "pool_rm", "name", c->arg, "tenant", p.tenant),
              false);
    stk_pool_rec_free(&p);
}

/* Last-Event-ID (a reconnecting EventSource sends it), else ?after=SEQ. */
static void h_events(struct gw_call *c)
{
    char v[32];
    const char *last =
        evhttp_find_header(evhttp_request_get_input_headers(c->req), "Last-Event-ID");
    if (!last)
        last = query_get(c, "after", v, sizeof(v));
    int64_t after = -1;
    if (last && gw_parse_ms(last, &after) < 0) {
        gw_reply_error(c, GW_E_BAD_REQUEST, "Last-Event-ID must be an event id (a number)");
        return;
    }
    struct stk_authz_decision d;
    if (!gw_authorize(c, STK_VERB_LIST, NULL, NULL, "events", &d))
        return;
    gw_events_subscribe(c, after);
}

typedef void (*gw_handler)(struct gw_call *c);
static const gw_handler handlers[_GW_ROUTE_N] = {
    [GW_HEALTHZ] = h_healthz,         [GW_METRICS] = h_metrics,
    [GW_WHOAMI] = h_whoami,           [GW_SB_LIST] = h_sb_list,
    [GW_SB_CREATE] = h_sb_create,     [GW_SB_GET] = h_sb_get,
    [GW_SB_DELETE] = h_sb_delete,     [GW_SB_STOP] = h_sb_stop,
    [GW_SB_START] = h_sb_start,       [GW_SB_EXEC] = h_sb_exec,
    [GW_SB_LOGS] = h_sb_logs,         [GW_SB_AUDIT] = h_sb_audit,
    [GW_SB_CONTRACT] = h_sb_contract, [GW_POOL_LIST] = h_pool_list,
    [GW_POOL_CREATE] = h_pool_create, [GW_POOL_DELETE] = h_pool_delete,
    [GW_EVENTS] = h_events,           [GW_POOL_GET] = h_pool_get,
    [GW_SB_FILE_GET] = h_sb_file_get, [GW_SB_FILE_PUT] = h_sb_file_put,
    [GW_SB_PORT] = h_sb_port,         [GW_SB_REPLICAS] = h_sb_replicas,
};

/* ---- dispatch ----------------------------------------------------------------------------------
 */

/* The method as routes name it; "" for one no route takes. */
static const char *method_name(enum evhttp_cmd_type m)
{
    switch (m) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_HEAD:
    case EVHTTP_REQ_OPTIONS:
    case EVHTTP_REQ_TRACE:
    case EVHTTP_REQ_CONNECT:
    case EVHTTP_REQ_PATCH:
        break;
    }
    return "";
}

/* The method as the client sent it, for the access log. */
static const char *request_method(struct evhttp_request *req)
{
    switch (evhttp_request_get_command(req)) {
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_PATCH:
        return "PATCH";
    case EVHTTP_REQ_OPTIONS:
        return "OPTIONS";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_TRACE:
        return "TRACE";
    case EVHTTP_REQ_CONNECT:
        return "CONNECT";
    case EVHTTP_REQ_GET:
    case EVHTTP_REQ_POST:
    case EVHTTP_REQ_DELETE:
        break;
    }
    return method_name(evhttp_request_get_command(req));
}

/* POST bodies are JSON: anything else is refused before it is parsed. */
static bool content_type_ok(struct gw_call *c)
{
    if (evhttp_request_get_command(c->req) != EVHTTP_REQ_POST ||
        evbuffer_get_length(evhttp_request_get_input_buffer(c->req)) == 0)
        return true;
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(c->req), "Content-Type");
    size_t n = strlen("application/json");
    if (ct && !strncasecmp(ct, "application/json", n) && (ct[n] == '\0' || ct[n] == ';'))
        return true;
    gw_reply_error(c, GW_E_MEDIA_TYPE, "the body must be application/json");
    return false;
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct stk_gw *g = arg;
    struct gw_call *c = stk_xcalloc(1, sizeof(*c));
    *c = (struct gw_call){.g = g, .req = req, .route = _GW_ROUTE_N, .t0_ms = gw_now_ms()};
    c->conn = conn_track(g, req);
    if (g->closing) {
        gw_reply_error(c, GW_E_UNAVAILABLE, "the server is shutting down");
        return;
    }
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    int r = gw_route_parse(method_name(evhttp_request_get_command(req)), path ? path : "/",
                           &c->route, c->arg);
    if (r < 0) {
        c->route = _GW_ROUTE_N;
        if (r == -EPERM)
            gw_reply_error(c, GW_E_METHOD, "method not allowed on %s", path);
        else
            gw_reply_error(c, GW_E_NOT_FOUND, "no such endpoint");
        return;
    }
    if (c->route != GW_HEALTHZ && !authenticate(c))
        return;
    if (!content_type_ok(c))
        return;
    handlers[c->route](c);
}

/* ---- lifecycle
 * ------------------------------------------------------------------------------------ */

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct stk_gw *g = arg;
    gw_events_tick(g);
    if (g->closing && !g->jobs && !g->execs)
        event_base_loopexit(g->base, NULL);
}

static void on_sighup(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct stk_gw *g = arg;
    if (g->on_hup)
        g->on_hup(g->on_hup_ud);
}

static void on_sigchld(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gw_jobs_reap(arg);
}

/* Log streams are cut (the client resumes with ?since), event streams end
 * (it resumes with Last-Event-ID); operations in flight may finish. */
static void on_stop_signal(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct stk_gw *g = arg;
    if (g->closing)
        return;
    g->closing = true;
    if (g->bound)
        evhttp_del_accept_socket(g->http, g->bound);
    g->bound = NULL;
    gw_events_close_all(g);
    gw_execs_stop(g);
    struct gw_conn *next;
    for (struct gw_conn *cn = g->conns; cn; cn = next) {
        next = cn->next;
        if (cn->call && cn->call->job)
            evhttp_connection_free(cn->evcon);
    }
    struct timeval grace = {.tv_sec = GW_STOP_GRACE_S};
    event_base_loopexit(g->base, &grace);
}

/* Every connection: a plain socket or a TLS one, under the gate (gate.c). */
static struct bufferevent *conn_bev(struct event_base *base, void *arg)
{
    struct stk_gw *g = arg;
    struct bufferevent *under;
    if (g->ssl) {
        SSL *ssl = SSL_new(g->ssl);
        if (!ssl)
            return NULL;
        under = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                               BEV_OPT_CLOSE_ON_FREE);
    } else {
        under = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    return under ? gw_gate_new(g, under) : NULL;
}

static int tls_setup(struct stk_gw *g, const struct stk_gw_options *o, struct stk_error **err)
{
    g->ssl = SSL_CTX_new(TLS_server_method());
    if (!g->ssl)
        return stk_error_make(err, ENOMEM, "TLS: cannot create a context");
    SSL_CTX_set_min_proto_version(g->ssl, TLS1_2_VERSION);
    /* the gate writes with SSL_write beside the TLS bufferevent's reads: no
     * renegotiation may make a write wait on a read */
    SSL_CTX_set_options(g->ssl, SSL_OP_NO_RENEGOTIATION);
    /* an idle connection holds no TLS buffers (about 34 KiB each otherwise);
     * the gate retries a write from a buffer that may have moved, and takes
     * what a write took */
    SSL_CTX_set_mode(g->ssl, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                 SSL_MODE_ENABLE_PARTIAL_WRITE);
    if (SSL_CTX_use_certificate_chain_file(g->ssl, o->tls_cert) != 1)
        return stk_error_make(err, EINVAL, "TLS: cannot load the certificate %s", o->tls_cert);
    if (SSL_CTX_use_PrivateKey_file(g->ssl, o->tls_key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(g->ssl) != 1)
        return stk_error_make(err, EINVAL, "TLS: cannot load the key %s (or it does not match)",
                              o->tls_key);
    if (o->client_ca) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->client_ca);
        if (!names || SSL_CTX_load_verify_locations(g->ssl, o->client_ca, NULL) != 1)
            return stk_error_make(err, EINVAL, "TLS: cannot load the client CA %s", o->client_ca);
        SSL_CTX_set_client_CA_list(g->ssl, names);
        /* a certificate is asked for, not required: tokens work too; an
         * unverified one is never a principal (cert_subject) */
        SSL_CTX_set_verify(g->ssl, SSL_VERIFY_PEER, NULL);
    }
    return 0;
}

/* "HOST:PORT" or "[V6]:PORT", numeric. Plain HTTP only on loopback: tokens
 * must not cross a network in clear. */
static int parse_listen(const char *listen, bool tls, char host[64], uint16_t *port,
                        struct stk_error **err)
{
    const char *colon = strrchr(listen, ':');
    const char *h = listen;
    size_t hn = colon ? (size_t)(colon - listen) : 0;
    if (hn >= 2 && h[0] == '[' && h[hn - 1] == ']') {
        h++;
        hn -= 2;
    }
    char *end = NULL;
    unsigned long p = colon ? strtoul(colon + 1, &end, 10) : 0;
    if (!colon || hn == 0 || hn >= 64 || !end || *end || end == colon + 1 || p > 65535)
        return stk_error_make(err, EINVAL, "--listen needs HOST:PORT, not '%s'", listen);
    memcpy(host, h, hn);
    host[hn] = '\0';
    struct in6_addr a6;
    struct in_addr a4;
    bool v4 = inet_pton(AF_INET, host, &a4) == 1, v6 = inet_pton(AF_INET6, host, &a6) == 1;
    if (!v4 && !v6)
        return stk_error_make(err, EINVAL, "--listen needs a numeric address, not '%s'", host);
    bool loopback = v4 ? (ntohl(a4.s_addr) >> 24) == 127 : IN6_IS_ADDR_LOOPBACK(&a6);
    if (!tls && !loopback)
        return stk_error_make(err, EPERM,
                              "refusing to serve plain HTTP on %s: give --tls-cert and --tls-key, "
                              "or listen on a loopback address",
                              host);
    *port = (uint16_t)p;
    return 0;
}

/* "unix:/path": a socket only this host's users with access to the path
 * reach (0600); a stale socket there is replaced, any other file is not. */
static int gw_bind_unix(struct stk_gw *g, const char *path, struct stk_error **err)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (path[0] != '/' || strlen(path) >= sizeof(a.sun_path))
        return stk_error_make(err, EINVAL,
                              "--listen unix: needs an absolute path of at most %zu "
                              "bytes, not '%s'",
                              sizeof(a.sun_path) - 1, path);
    memcpy(a.sun_path, path, strlen(path) + 1);
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        (void)unlink(path);
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || chmod(path, 0600) < 0 ||
        listen(fd, 128) < 0)
        return stk_error_errno(err, errno, "cannot listen on %s", path);
    struct evconnlistener *l = evconnlistener_new(
        g->base, NULL, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
    if (!l)
        return stk_error_make(err, ENOMEM, "cannot listen on %s", path);
    TAKE_FD(fd);
    g->bound = evhttp_bind_listener(g->http, l);
    if (!g->bound) {
        evconnlistener_free(l);
        return stk_error_make(err, ENOMEM, "cannot listen on %s", path);
    }
    snprintf(g->unix_path, sizeof(g->unix_path), "%s", path);
    return 0;
}

static int gw_bind(struct stk_gw *g, const char *listen, bool tls, struct stk_error **err)
{
    if (stk_startswith(listen, "unix:"))
        return gw_bind_unix(g, listen + 5, err);
    char host[64];
    uint16_t port = 0;
    int r = parse_listen(listen, tls, host, &port, err);
    if (r < 0)
        return r;
    g->bound = evhttp_bind_socket_with_handle(g->http, host, port);
    if (!g->bound)
        return stk_error_errno(err, errno ? errno : EADDRINUSE, "cannot listen on %s", listen);
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(evhttp_bound_socket_get_fd(g->bound), (struct sockaddr *)&ss, &len) == 0)
        g->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
    return 0;
}

static int gw_events_setup(struct stk_gw *g)
{
    g->ev_int = evsignal_new(g->base, SIGINT, on_stop_signal, g);
    g->ev_term = evsignal_new(g->base, SIGTERM, on_stop_signal, g);
    g->ev_chld = evsignal_new(g->base, SIGCHLD, on_sigchld, g);
    g->ev_hup = evsignal_new(g->base, SIGHUP, on_sighup, g);
    g->ev_tick = event_new(g->base, -1, EV_PERSIST, on_tick, g);
    g->ev_audit = event_new(g->base, -1, 0, on_audit_batch, g);
    if (!g->ev_int || !g->ev_term || !g->ev_chld || !g->ev_tick || !g->ev_hup || !g->ev_audit)
        return -ENOMEM;
    struct timeval tick = {.tv_usec = 100 * 1000};
    event_add(g->ev_int, NULL);
    event_add(g->ev_term, NULL);
    event_add(g->ev_chld, NULL);
    event_add(g->ev_hup, NULL);
    event_add(g->ev_tick, &tick);
    return 0;
}

static int gw_http_setup(struct stk_gw *g, const struct stk_gw_options *o, struct stk_error **err)
{
    g->base = event_base_new();
    g->http = g->base ? evhttp_new(g->base) : NULL;
    if (!g->http)
        return stk_error_make(err, ENOMEM, "cannot create the event loop");
    /* the gate refuses a body over its route's limit from the head */
    evhttp_set_max_body_size(g->http, STK_GW_MAX_FILE_BODY);
    evhttp_set_max_headers_size(g->http, STK_GW_MAX_HEADERS);
    g->timeout_s = o->timeout_s > 0 ? o->timeout_s : STK_GW_TIMEOUT_S;
    g->on_hup = o->on_hup;
    g->on_hup_ud = o->on_hup_ud;
    evhttp_set_timeout(g->http, g->timeout_s);
    if (!o->access_log || !strcmp(o->access_log, "-"))
        g->access_log = stderr;
    else if (strcmp(o->access_log, "off") != 0) {
        int fd = open(o->access_log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        g->access_log = fd >= 0 ? fdopen(fd, "a") : NULL;
        if (!g->access_log) {
            int e = errno;
            if (fd >= 0)
                close(fd);
            return stk_error_errno(err, e, "cannot open the access log %s", o->access_log);
        }
    }
    /* the others reach the router too, so a wrong method is a JSON 405 */
    evhttp_set_allowed_methods(g->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_PATCH | EVHTTP_REQ_OPTIONS);
    evhttp_set_gencb(g->http, on_request, g);
    evhttp_set_bevcb(g->http, conn_bev, g);
    if (gw_events_setup(g) < 0)
        return stk_error_make(err, ENOMEM, "cannot set up signal handling");
    return 0;
}

static int options_check(const struct stk_gw_options *o, struct stk_error **err)
{
    if (!o->auth || !o->auth->authenticate || !o->auth->authorize)
        return stk_error_make(err, EINVAL, "the gateway needs authentication and authorization");
    if (!o->paths || !o->listen)
        return stk_error_make(err, EINVAL, "the gateway needs a listen address and paths");
    if (!o->tls_cert != !o->tls_key)
        return stk_error_make(err, EINVAL, "TLS needs both a certificate and a key");
    if (o->client_ca && !o->tls_cert)
        return stk_error_make(err, EINVAL, "client certificates need TLS");
    return 0;
}

int stk_gw_new(const struct stk_gw_options *o, struct stk_gw **ret, struct stk_error **err)
{
    int r = options_check(o, err);
    if (r < 0)
        return r;
    struct stk_gw *g = stk_xcalloc(1, sizeof(*g));
    g->auth = o->auth;
    g->rl_principal.per_window = g->rl_target.per_window = GW_DENY_PER_MIN;
    g->rl_source.per_window = AUTHN_AUDIT_PER_MIN;
    g->rl_authn_all.per_window = AUTHN_AUDIT_GLOBAL_PER_MIN;
    g->rl_principal.window_ms = g->rl_target.window_ms = g->rl_source.window_ms =
        g->rl_authn_all.window_ms = 60000;
    snprintf(g->state_dir, sizeof(g->state_dir), "%s", o->paths->state_dir);
    snprintf(g->run_dir, sizeof(g->run_dir), "%s", o->paths->run_dir);
    g->paths = (struct stk_local_paths){.state_dir = g->state_dir, .run_dir = g->run_dir};
    /* a client gone mid-write is an error on that connection, not the end */
    signal(SIGPIPE, SIG_IGN);
    g->backend = o->backend;
    snprintf(g->kubeconfig, sizeof(g->kubeconfig), "%s", o->kubeconfig ? o->kubeconfig : "");
    snprintf(g->context, sizeof(g->context), "%s", o->context ? o->context : "");
    struct stk_session_opts sopts = {.kubeconfig = g->kubeconfig[0] ? g->kubeconfig : NULL,
                                     .context = g->context[0] ? g->context : NULL};
    if ((r = stk_session_open_opts(&g->paths, g->backend, "stockade-gateway", &sopts, &g->session,
                                   err)) < 0 ||
        (r = gw_http_setup(g, o, err)) < 0 || (o->tls_cert && (r = tls_setup(g, o, err)) < 0) ||
        (r = gw_bind(g, o->listen, o->tls_cert != NULL, err)) < 0) {
        stk_gw_free(g);
        return r;
    }
    *ret = g;
    return 0;
}

int stk_gw_port(const struct stk_gw *g)
{
    return g->port;
}

int stk_gw_run(struct stk_gw *g)
{
    return event_base_dispatch(g->base) < 0 ? -EIO : 0;
}

void stk_gw_free(struct stk_gw *g)
{
    if (!g)
        return;
    /* first the connections: their close callbacks still use the server */
    if (g->http)
        evhttp_free(g->http);
    while (g->subs)
        gw_sub_detach(g->subs);
    while (g->jobs)
        gw_job_detach(g->jobs);
    gw_exec_free_all(g);
    if (g->session)
        gw_audit_flush(g); /* nothing decided is left out at a clean stop */
    free(g->audit_q);
    struct event *evs[] = {g->ev_int, g->ev_term, g->ev_chld, g->ev_tick, g->ev_hup, g->ev_audit};
    for (size_t i = 0; i < STK_ARRAY_SIZE(evs); i++)
        if (evs[i])
            event_free(evs[i]);
    if (g->base)
        event_base_free(g->base);
    if (g->ssl)
        SSL_CTX_free(g->ssl);
    if (g->unix_path[0])
        (void)unlink(g->unix_path);
    if (g->access_log && g->access_log != stderr)
        fclose(g->access_log);
    stk_session_close(g->session);
    free(g);
}
