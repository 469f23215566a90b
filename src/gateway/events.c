/* SPDX-License-Identifier: Apache-2.0 */
/*
 * GET /v1/events: Server-Sent Events of sandbox lifecycle events. The audit
 * trail is the durable event log: an event's `id:` is its record's global
 * seq, so `Last-Event-ID` resumes exactly, across gateway restarts too. Each
 * subscriber reads the store at its own cursor, so the store is the queue;
 * what a subscriber holds in memory is bounded by its connection's output
 * buffer, and one that stays above the bound is disconnected (it resumes
 * with Last-Event-ID).
 */
#include "gateway/server.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <string.h>

#define SUB_BATCH        512          /* records read per subscriber per tick */
#define SUB_HIGH_WATER   (256 * 1024) /* bytes queued before it is fed no more */
#define SUB_BEHIND_MS    10000        /* that long above the mark: disconnected */
#define SUB_KEEPALIVE_MS 15000        /* a comment line keeps proxies from closing */
#define SUB_CACHE        64           /* decisions remembered per subscriber */

/* One GET decision per sandbox (as owned now), not per event: the trail
 * records each decision, and a busy sandbox must not double its trail. */
struct sub_seen {
    char id[64], owner[128], tenant[64];
    bool allow;
};

struct gw_sub {
    struct gw_call *call;
    int64_t cursor; /* the last seq considered */
    int64_t behind_since, last_write;
    struct sub_seen seen[SUB_CACHE];
    size_t next_seen;
    struct gw_sub *next;
};

static void sub_unlink(struct stk_gw *g, struct gw_sub *s)
{
    for (struct gw_sub **p = &g->subs; *p; p = &(*p)->next)
        if (*p == s) {
            *p = s->next;
            g->n_subs--;
            return;
        }
}

void gw_sub_detach(struct gw_sub *s)
{
    sub_unlink(s->call->g, s);
    s->call->sub = NULL;
    free(s);
}

void gw_events_subscribe(struct gw_call *c, int64_t after_seq)
{
    struct gw_sub *s = stk_xcalloc(1, sizeof(*s));
    s->call = c;
    s->last_write = gw_now_ms();
    if (after_seq < 0) {
        /* no Last-Event-ID: from now on */
        int64_t head = 0;
        (void)stk_audit_last_seq(stk_session_store(c->g->session), &head, NULL);
        after_seq = head;
    }
    s->cursor = after_seq;
    c->sub = s;
    s->next = c->g->subs;
    c->g->subs = s;
    c->g->n_subs++;
    gw_stream_begin(c);
    struct evkeyvalq *h = evhttp_request_get_output_headers(c->req);
    evhttp_add_header(h, "Content-Type", "text/event-stream");
    evhttp_add_header(h, "Cache-Control", "no-store");
    gw_call_log(c, 200);
    evhttp_send_reply_start(c->req, 200, "OK");
}

static bool sub_may_see(struct gw_sub *s, const struct stk_sb_rec *rec)
{
    for (size_t i = 0; i < SUB_CACHE; i++) {
        struct sub_seen *e = &s->seen[i];
        if (!strcmp(e->id, rec->id) && !strcmp(e->owner, rec->owner) &&
            !strcmp(e->tenant, rec->tenant))
            return e->allow;
    }
    _cleanup_free_ char *ns = gw_record_namespace(rec);
    struct stk_authz_target t = {
        .tenant = rec->tenant, .project = rec->project, .owner = rec->owner, .namespace = ns};
    struct stk_authz_decision d;
    char object[80];
    snprintf(object, sizeof(object), "sandbox/%s", rec->id);
    bool allow = gw_decide(s->call, STK_VERB_GET, &t, rec->id, object, &d);
    struct sub_seen *e = &s->seen[s->next_seen++ % SUB_CACHE];
    snprintf(e->id, sizeof(e->id), "%s", rec->id);
    snprintf(e->owner, sizeof(e->owner), "%s", rec->owner);
    snprintf(e->tenant, sizeof(e->tenant), "%s", rec->tenant);
    e->allow = allow;
    return allow;
}

struct feed {
    struct gw_sub *s;
    struct evbuffer *out;
};

static int feed_one(const struct stk_audit_rec *a, void *ud)
{
    struct feed *f = ud;
    f->s->cursor = a->seq;
    /* lifecycle events of sandboxes only: host records are not any one
     * caller's, and decisions about others are not events */
    if (!a->sandbox_id[0] || !strcmp(a->event, "authz"))
        return 0;
    struct stk_sb_rec rec = {0};
    if (stk_store_sb_get(stk_session_store(f->s->call->g->session), a->sandbox_id, &rec, NULL) < 0)
        return 0;
    bool ok = sub_may_see(f->s, &rec);
    stk_sb_rec_free(&rec);
    if (!ok)
        return 0;
    json_t *d = a->details ? json_loads(a->details, 0, NULL) : NULL;
    json_t *j = json_pack("{s:I,s:I,s:s,s:s,s:o}", "seq", (json_int_t)a->seq, "time_ms",
                          (json_int_t)a->time_ms, "sandbox", a->sandbox_id, "event", a->event,
                          "details", d ? d : json_object());
    char *data = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (data)
        evbuffer_add_printf(f->out, "id: %lld\nevent: %s\ndata: %s\n\n", (long long)a->seq,
                            a->event, data);
    free(data);
    return 0;
}

static size_t sub_queued(struct gw_sub *s)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(s->call->req);
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    return bev ? evbuffer_get_length(bufferevent_get_output(bev)) : 0;
}

/* Returns false when the subscriber was disconnected. */
static bool sub_feed(struct gw_sub *s, int64_t head, int64_t now)
{
    if (sub_queued(s) > SUB_HIGH_WATER) {
        if (!s->behind_since)
            s->behind_since = now;
        if (now - s->behind_since < SUB_BEHIND_MS)
            return true;
        /* too far behind: drop it; it resumes from its Last-Event-ID */
        evhttp_connection_free(evhttp_request_get_connection(s->call->req));
        return false;
    }
    s->behind_since = 0;
    struct feed f = {.s = s, .out = evbuffer_new()};
    if (s->cursor < head)
        (void)stk_audit_list_after(stk_session_store(s->call->g->session), s->cursor, SUB_BATCH,
                                   feed_one, &f, NULL);
    if (!evbuffer_get_length(f.out) && now - s->last_write >= SUB_KEEPALIVE_MS)
        evbuffer_add_printf(f.out, ": keepalive\n\n");
    if (evbuffer_get_length(f.out)) {
        s->last_write = now;
        evhttp_send_reply_chunk(s->call->req, f.out);
    }
    evbuffer_free(f.out);
    return true;
}

void gw_events_tick(struct stk_gw *g)
{
    if (!g->subs)
        return;
    int64_t head = 0;
    if (stk_audit_last_seq(stk_session_store(g->session), &head, NULL) < 0)
        return;
    int64_t now = gw_now_ms();
    struct gw_sub *next;
    for (struct gw_sub *s = g->subs; s; s = next) {
        next = s->next;
        (void)sub_feed(s, head, now);
    }
}

void gw_events_close_all(struct stk_gw *g)
{
    while (g->subs) {
        struct gw_call *c = g->subs->call;
        gw_count(g, c->route, 200);
        gw_stream_end(c);
        gw_sub_detach(g->subs);
        c->conn->call = NULL;
        gw_call_free(c);
    }
}
