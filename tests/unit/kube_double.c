/* SPDX-License-Identifier: Apache-2.0 */
/* The Kubernetes API server double; see kube_double.h. Test code. */
#include "kube_double.h"

#include "base/base.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <sys/queue.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

/* ---- the resource table, with the fields strict validation accepts ---- */

struct res {
    const char *prefix; /* "/api/v1", "/apis/apps/v1" */
    const char *api_version, *kind, *plural;
    bool namespaced;
    const char *const *top;  /* allowed top-level fields */
    const char *const *spec; /* allowed spec fields (NULL: no spec) */
};

static const char *const top_plain[] = {"apiVersion", "kind", "metadata", "spec", "status", NULL};
static const char *const top_cm[] = {"apiVersion", "kind",      "metadata", "data",
                                     "binaryData", "immutable", NULL};
static const char *const top_sa[] = {
    "apiVersion", "kind", "metadata", "automountServiceAccountToken", "secrets", NULL};
static const char *const spec_ns[] = {"finalizers", NULL};
static const char *const spec_pod[] = {"containers",
                                       "restartPolicy",
                                       "securityContext",
                                       "automountServiceAccountToken",
                                       "serviceAccountName",
                                       "runtimeClassName",
                                       "nodeSelector",
                                       "tolerations",
                                       "volumes",
                                       "terminationGracePeriodSeconds",
                                       "activeDeadlineSeconds",
                                       "hostname",
                                       NULL};
static const char *const spec_np[] = {"podSelector", "policyTypes", "ingress", "egress", NULL};

/* agents.x-k8s.io's extension API (kubernetes-sigs/agent-sandbox CRDs,
 * v1beta1): the spec fields their schemas declare */
static const char *const spec_sb_template[] = {"envVarsInjectionPolicy",
                                               "networkPolicy",
                                               "networkPolicyManagement",
                                               "podTemplate",
                                               "service",
                                               "volumeClaimTemplates",
                                               "volumeClaimTemplatesPolicy",
                                               NULL};
static const char *const spec_sb_warm_pool[] = {"replicas", "sandboxTemplateRef", "updateStrategy",
                                                NULL};
static const char *const spec_sb_claim[] = {
    "warmPoolRef", "lifecycle", "additionalPodMetadata", "env", "volumeClaimTemplates", NULL};
#define AGENTS_EXT "/apis/extensions.agents.x-k8s.io/v1beta1", "extensions.agents.x-k8s.io/v1beta1"

static const struct res resources[] = {
    {"/api/v1", "v1", "Namespace", "namespaces", false, top_plain, spec_ns},
    {"/api/v1", "v1", "Pod", "pods", true, top_plain, spec_pod},
    {"/api/v1", "v1", "ConfigMap", "configmaps", true, top_cm, NULL},
    {"/api/v1", "v1", "ServiceAccount", "serviceaccounts", true, top_sa, NULL},
    {"/apis/networking.k8s.io/v1", "networking.k8s.io/v1", "NetworkPolicy", "networkpolicies", true,
     top_plain, spec_np},
    {"/apis/agents.x-k8s.io/v1alpha1", "agents.x-k8s.io/v1alpha1", "Sandbox", "sandboxes", true,
     top_plain, NULL},
    {AGENTS_EXT, "SandboxTemplate", "sandboxtemplates", true, top_plain, spec_sb_template},
    {AGENTS_EXT, "SandboxWarmPool", "sandboxwarmpools", true, top_plain, spec_sb_warm_pool},
    {AGENTS_EXT, "SandboxClaim", "sandboxclaims", true, top_plain, spec_sb_claim},
};
static const char *const meta_fields[] = {
    "name",       "namespace",     "labels",     "annotations",     "resourceVersion",
    "uid",        "generateName",  "finalizers", "ownerReferences", "creationTimestamp",
    "generation", "managedFields", NULL};

/* ---- state ---- */

struct watcher {
    struct evhttp_request *req;
    char *coll; /* "<prefix>|<ns or empty>|<plural>" */
    char *selector;
    int sent;
    int drop_after; /* 0: never */
    struct watcher *next;
};

static struct {
    struct event_base *base;
    SSL_CTX *ssl;
    json_t *objects; /* key "<prefix>|<ns>|<plural>|<name>" → object */
    json_t *events;  /* [{rv, coll, type, object}] */
    json_t *log;     /* ["METHOD URI", ...] */
    json_t *faults;
    long rv;
    long min_rv; /* events before it are compacted: watches from older rvs get 410 */
    struct watcher *watchers;
    const char *data_dir;
    json_t *replay; /* [{"code": N, "body": JSON or text}]: the next answers */
} S;

static long fault_take(const char *name)
{
    json_t *f = json_object_get(S.faults, name);
    if (!f)
        return 0;
    long count = (long)json_integer_value(json_object_get(f, "count"));
    long value = (long)json_integer_value(json_object_get(f, "value"));
    if (count <= 1)
        json_object_del(S.faults, name);
    else
        json_object_set_new(f, "count", json_integer(count - 1));
    return value ? value : 1;
}

/* ---- replies ---- */

static void reply_json(struct evhttp_request *req, int code, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, text, strlen(text));
    free(text);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, code, NULL, b);
    evbuffer_free(b);
}

static void reply_status(struct evhttp_request *req, int code, const char *reason, json_t *details,
                         const char *fmt, ...) STK_PRINTF(5, 6);
static void reply_status(struct evhttp_request *req, int code, const char *reason, json_t *details,
                         const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = stk_xvasprintf(fmt, ap);
    va_end(ap);
    json_t *st =
        json_pack("{s:s, s:s, s:{}, s:s, s:s, s:s, s:i}", "kind", "Status", "apiVersion", "v1",
                  "metadata", "status", "Failure", "message", msg, "reason", reason, "code", code);
    free(msg);
    if (details)
        json_object_set_new(st, "details", details);
    reply_json(req, code, st);
}

/* ---- paths ---- */

struct target {
    const struct res *res;
    char ns[64], name[254], sub[32];
};

static bool dns_label(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return false;
    return true;
}

/* Parses PREFIX[/namespaces/NS]/PLURAL[/NAME[/SUB]]: namespaced forms
 * first, or "/api/v1/namespaces/ns1/pods" would read as a Namespace. */
static bool parse_target(const char *path, struct target *t)
{
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < STK_ARRAY_SIZE(resources); i++) {
            const struct res *r = &resources[i];
            size_t pl = strlen(r->prefix);
            memset(t, 0, sizeof(*t));
            if (strncmp(path, r->prefix, pl) != 0 || path[pl] != '/')
                continue;
            const char *p = path + pl + 1;
            if (pass == 0) {
                if (!r->namespaced || strncmp(p, "namespaces/", 11) != 0)
                    continue;
                const char *slash = strchr(p + 11, '/');
                if (!slash)
                    continue;
                snprintf(t->ns, sizeof(t->ns), "%.*s", (int)(slash - (p + 11)), p + 11);
                p = slash + 1;
            }
            size_t n = strlen(r->plural);
            if (strncmp(p, r->plural, n) != 0 || (p[n] != '\0' && p[n] != '/'))
                continue;
            p += n;
            if (*p == '/') {
                p++;
                const char *slash = strchr(p, '/');
                if (slash) {
                    snprintf(t->name, sizeof(t->name), "%.*s", (int)(slash - p), p);
                    snprintf(t->sub, sizeof(t->sub), "%s", slash + 1);
                } else {
                    snprintf(t->name, sizeof(t->name), "%s", p);
                }
            }
            t->res = r;
            return true;
        }
    return false;
}

static char *coll_key(const struct target *t)
{
    return stk_xasprintf("%s|%s|%s", t->res->prefix, t->ns, t->res->plural);
}

static char *obj_key(const struct target *t)
{
    return stk_xasprintf("%s|%s|%s|%s", t->res->prefix, t->ns, t->res->plural, t->name);
}

/* ---- label selectors: k=v, k!=v, k (comma-separated) ---- */

static bool selector_match(const char *sel, const json_t *obj)
{
    if (!sel || !*sel)
        return true;
    const json_t *labels = json_object_get(json_object_get(obj, "metadata"), "labels");
    char *copy = stk_xstrdup(sel), *save = NULL;
    bool ok = true;
    for (char *term = strtok_r(copy, ",", &save); term && ok; term = strtok_r(NULL, ",", &save)) {
        char *eq = strstr(term, "!=");
        bool neg = eq != NULL;
        if (!eq)
            eq = strchr(term, '=');
        if (!eq) {
            ok = json_object_get(labels, term) != NULL;
            continue;
        }
        *eq = '\0';
        const char *val = eq + (neg ? 2 : 1);
        const char *have = json_string_value(json_object_get(labels, term));
        ok = neg ? !stk_streq(have, val) : stk_streq(have, val);
    }
    free(copy);
    return ok;
}

/* ---- events and watchers ---- */

static void watcher_free(struct watcher *w)
{
    free(w->coll);
    free(w->selector);
    free(w);
}

static void watcher_remove(struct watcher *w)
{
    for (struct watcher **p = &S.watchers; *p; p = &(*p)->next)
        if (*p == w) {
            *p = w->next;
            watcher_free(w);
            return;
        }
}

static void drop_cb(evutil_socket_t fd, short what, void *ud)
{
    (void)fd;
    (void)what;
    struct evhttp_connection *c = ud;
    evhttp_connection_free(c); /* mid-stream: the client sees a cut chunked body */
}

static bool coll_matches(const char *watch_coll, const char *ev_coll)
{
    if (strcmp(watch_coll, ev_coll) == 0)
        return true;
    /* an all-namespaces watch ("prefix||plural") sees every namespace */
    const char *a = strchr(watch_coll, '|'), *b = strchr(ev_coll, '|');
    if (!a || !b || a[1] != '|' || (a - watch_coll) != (b - ev_coll) ||
        strncmp(watch_coll, ev_coll, (size_t)(a - watch_coll)) != 0)
        return false;
    return strcmp(a + 2, strchr(b + 1, '|') + 1) == 0;
}

/* Sends one event line; false when the watcher was dropped. */
static bool watcher_send(struct watcher *w, const char *type, const json_t *obj)
{
    json_t *ev = json_pack("{s:s, s:O}", "type", type, "object", obj);
    char *text = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, text, strlen(text));
    evbuffer_add(b, "\n", 1);
    free(text);
    evhttp_send_reply_chunk(w->req, b);
    evbuffer_free(b);
    w->sent++;
    if (w->drop_after && w->sent >= w->drop_after) {
        struct evhttp_connection *c = evhttp_request_get_connection(w->req);
        watcher_remove(w);
        event_base_once(S.base, -1, EV_TIMEOUT, drop_cb, c, &(struct timeval){0, 1000});
        return false;
    }
    return true;
}

static void record_event(const struct target *t, const char *type, json_t *obj)
{
    _cleanup_free_ char *coll = coll_key(t);
    json_array_append_new(S.events, json_pack("{s:I, s:s, s:s, s:O}", "rv", (json_int_t)S.rv,
                                              "coll", coll, "type", type, "object", obj));
    for (struct watcher *w = S.watchers, *next; w; w = next) {
        next = w->next;
        if (coll_matches(w->coll, coll) && selector_match(w->selector, obj))
            (void)watcher_send(w, type, obj);
    }
}

static void watcher_closed(struct evhttp_connection *c, void *ud)
{
    (void)c;
    struct watcher *w = ud;
    for (struct watcher *p = S.watchers; p; p = p->next)
        if (p == w) {
            watcher_remove(w);
            return;
        }
}

/* ---- strict validation ---- */

static bool in_list(const char *const *l, const char *k)
{
    for (; l && *l; l++)
        if (strcmp(*l, k) == 0)
            return true;
    return false;
}

/* The first unknown field, as the API server names it (".spec.foo"). */
static char *unknown_field(const struct res *r, const json_t *obj)
{
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)(uintptr_t)obj, k, v)
    {
        if (!in_list(r->top, k))
            return stk_xasprintf(".%s", k);
    }
    json_object_foreach(json_object_get(obj, "metadata"), k, v)
    {
        if (!in_list(meta_fields, k))
            return stk_xasprintf(".metadata.%s", k);
    }
    if (r->spec)
        json_object_foreach(json_object_get(obj, "spec"), k, v)
        {
            if (!in_list(r->spec, k))
                return stk_xasprintf(".spec.%s", k);
        }
    return NULL;
}

/* ---- handlers ---- */

static const char *query(struct evkeyvalq *q, const char *k)
{
    return evhttp_find_header(q, k);
}

static json_t *body_json(struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    char *data = stk_xmalloc(n + 1);
    evbuffer_remove(in, data, n);
    data[n] = '\0';
    json_t *j = json_loadb(data, n, 0, NULL);
    free(data);
    return j;
}

static void stamp(json_t *obj, const struct target *t, bool create)
{
    json_t *meta = json_object_get(obj, "metadata");
    S.rv++;
    char rv[32];
    snprintf(rv, sizeof(rv), "%ld", S.rv);
    json_object_set_new(meta, "resourceVersion", json_string(rv));
    if (create) {
        char uid[64];
        snprintf(uid, sizeof(uid), "uid-%ld", S.rv);
        json_object_set_new(meta, "uid", json_string(uid));
        json_object_set_new(meta, "creationTimestamp", json_string("2026-12-04T00:00:00Z"));
    }
    if (t->res->namespaced)
        json_object_set_new(meta, "namespace", json_string(t->ns));
}

static void merge_patch(json_t *target, const json_t *patch)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)(uintptr_t)patch, k, v)
    {
        if (json_is_null(v))
            json_object_del(target, k);
        else if (json_is_object(v) && json_is_object(json_object_get(target, k)))
            merge_patch(json_object_get(target, k), v);
        else
            json_object_set(target, k, v);
    }
}

static void do_apply(struct evhttp_request *req, const struct target *t, struct evkeyvalq *q)
{
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    const char *fm = query(q, "fieldManager");
    json_auto_t *obj = body_json(req);
    if (!stk_streq(ct, "application/apply-patch+yaml"))
        return reply_status(req, 415, "UnsupportedMediaType", NULL,
                            "the body of the request was in an unknown format");
    if (!fm || !*fm)
        return reply_status(req, 400, "BadRequest", NULL,
                            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required "
                            "value: is required for apply patch");
    if (!json_is_object(obj))
        return reply_status(req, 400, "BadRequest", NULL, "error decoding YAML");
    const char *av = json_string_value(json_object_get(obj, "apiVersion"));
    const char *kind = json_string_value(json_object_get(obj, "kind"));
    const char *name = json_string_value(json_object_get(json_object_get(obj, "metadata"), "name"));
    if (!stk_streq(av, t->res->api_version) || !stk_streq(kind, t->res->kind))
        return reply_status(req, 400, "BadRequest", NULL,
                            "the API version in the data (%s) does not match the expected API "
                            "version (%s)",
                            av ? av : "", t->res->api_version);
    if (!stk_streq(name, t->name))
        return reply_status(req, 400, "BadRequest", NULL,
                            "the name of the object (%s) does not match the name on the URL (%s)",
                            name ? name : "", t->name);
    if (stk_streq(query(q, "fieldValidation"), "Strict")) {
        _cleanup_free_ char *bad = unknown_field(t->res, obj);
        if (bad) {
            /* what v1.32 answers (tests/data/kube/recorded/apply-unknown-field.json):
             * 500, no reason */
            const char *av_ = t->res->api_version;
            _cleanup_free_ char *gv =
                strchr(av_, '/') ? stk_xstrdup(av_) : stk_xasprintf("/%s", av_);
            json_t *st = json_pack("{s:s, s:s, s:{}, s:s, s:i}", "kind", "Status", "apiVersion",
                                   "v1", "metadata", "status", "Failure", "code", 500);
            char *msg = stk_xasprintf("failed to create typed patch object (%s%s%s; %s, "
                                      "Kind=%s): %s: field not declared in schema",
                                      t->ns, t->ns[0] ? "/" : "", t->name, gv, t->res->kind, bad);
            json_object_set_new(st, "message", json_string(msg));
            free(msg);
            return reply_json(req, 500, st);
        }
    }
    if (!dns_label(t->name) && strchr(t->name, '.') == NULL)
        return reply_status(req, 422, "Invalid", NULL, "%s \"%s\" is invalid: metadata.name",
                            t->res->kind, t->name);
    if (t->res->namespaced) {
        char nskey[128];
        snprintf(nskey, sizeof(nskey), "/api/v1||namespaces|%s", t->ns);
        if (!json_object_get(S.objects, nskey))
            return reply_status(req, 404, "NotFound", NULL, "namespaces \"%s\" not found", t->ns);
    }
    _cleanup_free_ char *key = obj_key(t);
    json_t *old = json_object_get(S.objects, key);
    json_t *live = old ? json_deep_copy(old) : json_deep_copy(obj);
    if (old) {
        /* applied fields replace; what the caller left out stays (the
         * double does not track field ownership) */
        const char *k;
        json_t *v;
        json_object_foreach(obj, k, v)
        {
            if (strcmp(k, "metadata") != 0)
                json_object_set(live, k, v);
        }
    }
    stamp(live, t, !old);
    if (strcmp(t->res->kind, "Pod") == 0 && !old)
        json_object_set_new(live, "status", json_pack("{s:s}", "phase", "Pending"));
    json_object_set(S.objects, key, live);
    record_event(t, old ? "MODIFIED" : "ADDED", live);
    reply_json(req, old ? 200 : 201, live);
}

/* A JSON patch (RFC 6902) on labels only, as the driver's claim sends it:
 * test, add, replace and remove of "/metadata/labels/KEY" ("~1" for '/').
 * false: a test failed or a path is missing (the server's 422). */
static bool json_patch_labels(json_t *live, const json_t *ops, bool *ret_bad)
{
    static const char prefix[] = "/metadata/labels/";
    json_t *meta = json_object_get(live, "metadata");
    json_t *labels = json_object_get(meta, "labels");
    if (!labels) {
        labels = json_object();
        json_object_set_new(meta, "labels", labels);
    }
    size_t i;
    const json_t *op;
    *ret_bad = false;
    json_array_foreach(ops, i, op)
    {
        const char *o = json_string_value(json_object_get(op, "op"));
        const char *path = json_string_value(json_object_get(op, "path"));
        const char *value = json_string_value(json_object_get(op, "value"));
        if (!o || !path || strncmp(path, prefix, strlen(prefix))) {
            *ret_bad = true;
            return false;
        }
        struct stk_buf key = {0};
        for (const char *c = path + strlen(prefix); *c; c++) {
            if (c[0] == '~' && c[1] == '1') {
                stk_buf_putc(&key, '/');
                c++;
            } else {
                stk_buf_putc(&key, *c);
            }
        }
        const char *k = stk_buf_str(&key);
        const char *have = json_string_value(json_object_get(labels, k));
        bool ok = true;
        if (!strcmp(o, "test"))
            ok = have && value && !strcmp(have, value);
        else if (!strcmp(o, "add") && value)
            json_object_set_new(labels, k, json_string(value));
        else if (!strcmp(o, "replace") && value)
            ok = have && !json_object_set_new(labels, k, json_string(value));
        else if (!strcmp(o, "remove"))
            ok = have && !json_object_del(labels, k);
        else
            *ret_bad = true;
        stk_buf_free(&key);
        if (!ok || *ret_bad)
            return false;
    }
    return true;
}

static void do_patch(struct evhttp_request *req, const struct target *t)
{
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    if (stk_streq(ct, "application/json-patch+json")) {
        json_auto_t *ops = body_json(req);
        _cleanup_free_ char *key = obj_key(t);
        json_t *old = json_object_get(S.objects, key);
        if (!json_is_array(ops))
            return reply_status(req, 400, "BadRequest", NULL, "invalid JSON patch");
        if (!old)
            return reply_status(req, 404, "NotFound", NULL, "%s \"%s\" not found", t->res->plural,
                                t->name);
        json_t *live = json_deep_copy(old);
        bool bad;
        if (!json_patch_labels(live, ops, &bad)) {
            json_decref(live);
            if (bad)
                return reply_status(req, 400, "BadRequest", NULL, "the double patches labels only");
            return reply_status(req, 422, "Invalid", NULL,
                                "the server rejected our request due to an error in our request");
        }
        stamp(live, t, false);
        json_object_set(S.objects, key, live);
        record_event(t, "MODIFIED", live);
        reply_json(req, 200, live);
        return;
    }
    if (!stk_streq(ct, "application/merge-patch+json") &&
        !stk_streq(ct, "application/strategic-merge-patch+json"))
        return reply_status(req, 415, "UnsupportedMediaType", NULL,
                            "the body of the request was in an unknown format");
    json_auto_t *patch = body_json(req);
    if (!json_is_object(patch))
        return reply_status(req, 400, "BadRequest", NULL, "invalid JSON patch");
    _cleanup_free_ char *key = obj_key(t);
    json_t *old = json_object_get(S.objects, key);
    if (!old)
        return reply_status(req, 404, "NotFound", NULL, "%s \"%s\" not found", t->res->plural,
                            t->name);
    const char *want =
        json_string_value(json_object_get(json_object_get(patch, "metadata"), "resourceVersion"));
    const char *have =
        json_string_value(json_object_get(json_object_get(old, "metadata"), "resourceVersion"));
    if (want && !stk_streq(want, have))
        return reply_status(req, 409, "Conflict",
                            json_pack("{s:s, s:s}", "name", t->name, "kind", t->res->plural),
                            "Operation cannot be fulfilled on %s \"%s\": the object has been "
                            "modified; please apply your changes to the latest version and try "
                            "again",
                            t->res->plural, t->name);
    json_t *live = json_deep_copy(old);
    merge_patch(live, patch);
    _cleanup_free_ char *bad = unknown_field(t->res, live);
    if (bad) {
        json_decref(live);
        return reply_status(req, 400, "BadRequest", NULL,
                            "strict decoding error: unknown field \"%s\"", bad + 1);
    }
    stamp(live, t, false);
    json_object_set_new(S.objects, key, live);
    record_event(t, "MODIFIED", live);
    reply_json(req, 200, json_incref(live));
}

static void do_delete(struct evhttp_request *req, const struct target *t)
{
    json_auto_t *opts = body_json(req);
    const char *prop = json_string_value(json_object_get(opts, "propagationPolicy"));
    if (prop && strcmp(prop, "Foreground") != 0 && strcmp(prop, "Background") != 0 &&
        strcmp(prop, "Orphan") != 0)
        return reply_status(req, 400, "BadRequest", NULL, "invalid propagationPolicy");
    _cleanup_free_ char *key = obj_key(t);
    json_t *old = json_object_get(S.objects, key);
    if (!old)
        return reply_status(req, 404, "NotFound",
                            json_pack("{s:s, s:s}", "name", t->name, "kind", t->res->plural),
                            "%s \"%s\" not found", t->res->plural, t->name);
    const char *uid =
        json_string_value(json_object_get(json_object_get(opts, "preconditions"), "uid"));
    const char *have = json_string_value(json_object_get(json_object_get(old, "metadata"), "uid"));
    if (uid && !stk_streq(uid, have))
        return reply_status(req, 409, "Conflict", NULL,
                            "Operation cannot be fulfilled on %s \"%s\": Precondition failed: "
                            "UID in precondition: %s, UID in object meta: %s",
                            t->res->plural, t->name, uid, have);
    json_auto_t *gone = json_incref(old);
    json_object_del(S.objects, key);
    S.rv++;
    char rv[32];
    snprintf(rv, sizeof(rv), "%ld", S.rv);
    json_object_set_new(json_object_get(gone, "metadata"), "resourceVersion", json_string(rv));
    record_event(t, "DELETED", gone);
    reply_json(req, 200, json_incref(gone));
}

static void do_list(struct evhttp_request *req, const struct target *t, struct evkeyvalq *q)
{
    const char *sel = query(q, "labelSelector");
    long limit = query(q, "limit") ? atol(query(q, "limit")) : 0;
    long page = fault_take("page_size");
    if (page)
        limit = page;
    long start = query(q, "continue") ? atol(query(q, "continue")) : 0;
    _cleanup_free_ char *coll = coll_key(t);
    json_t *items = json_array();
    const char *k;
    json_t *v;
    long idx = 0;
    bool more = false;
    json_object_foreach(S.objects, k, v)
    {
        char *last = strrchr(k, '|');
        _cleanup_free_ char *kc = stk_xstrndup(k, (size_t)(last - k));
        if (!coll_matches(coll, kc) || !selector_match(sel, v))
            continue;
        if (idx++ < start)
            continue;
        if (limit > 0 && (long)json_array_size(items) >= limit) {
            more = true;
            break;
        }
        json_array_append(items, v);
    }
    char rv[32];
    snprintf(rv, sizeof(rv), "%ld", S.rv);
    json_t *meta = json_pack("{s:s}", "resourceVersion", rv);
    if (more) {
        char cont[32];
        snprintf(cont, sizeof(cont), "%ld", start + limit);
        json_object_set_new(meta, "continue", json_string(cont));
    }
    _cleanup_free_ char *kind = stk_xasprintf("%sList", t->res->kind);
    reply_json(req, 200,
               json_pack("{s:s, s:s, s:o, s:o}", "apiVersion", t->res->api_version, "kind", kind,
                         "metadata", meta, "items", items));
}

static void do_watch(struct evhttp_request *req, const struct target *t, struct evkeyvalq *q)
{
    const char *rvs = query(q, "resourceVersion");
    long from = rvs ? atol(rvs) : 0;
    if (fault_take("watch_http_gone") || (rvs && from < S.min_rv))
        return reply_status(req, 410, "Expired", NULL, "too old resource version: %ld (%ld)", from,
                            S.min_rv);
    struct watcher *w = stk_xcalloc(1, sizeof(*w));
    w->req = req;
    w->coll = coll_key(t);
    w->selector = query(q, "labelSelector") ? stk_xstrdup(query(q, "labelSelector")) : NULL;
    w->drop_after = (int)fault_take("watch_drop_after");
    w->next = S.watchers;
    S.watchers = w;
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply_start(req, 200, "OK");
    evhttp_connection_set_closecb(evhttp_request_get_connection(req), watcher_closed, w);
    if (fault_take("watch_error_gone")) {
        json_auto_t *st = json_pack("{s:s, s:s, s:s, s:s, s:i}", "kind", "Status", "apiVersion",
                                    "v1", "status", "Failure", "reason", "Expired", "code", 410);
        json_object_set_new(st, "message", json_string("too old resource version"));
        (void)watcher_send(w, "ERROR", st);
        return;
    }
    size_t i;
    json_t *ev;
    json_array_foreach(S.events, i, ev)
    {
        long rv = (long)json_integer_value(json_object_get(ev, "rv"));
        const json_t *obj = json_object_get(ev, "object");
        if (rv <= from || !coll_matches(w->coll, json_string_value(json_object_get(ev, "coll"))) ||
            !selector_match(w->selector, obj))
            continue;
        if (!watcher_send(w, json_string_value(json_object_get(ev, "type")), obj))
            return;
    }
    if (stk_streq(query(q, "allowWatchBookmarks"), "true")) {
        char rv[32];
        snprintf(rv, sizeof(rv), "%ld", S.rv);
        json_auto_t *bm = json_pack("{s:s, s:s, s:{s:s}}", "apiVersion", t->res->api_version,
                                    "kind", t->res->kind, "metadata", "resourceVersion", rv);
        (void)watcher_send(w, "BOOKMARK", bm);
    }
}

struct log_stream {
    struct evhttp_request *req;
    int left;
};

static void log_tick(evutil_socket_t fd, short what, void *ud)
{
    (void)fd;
    (void)what;
    struct log_stream *ls = ud;
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_printf(b, "line %d\n", 4 - ls->left);
    evhttp_send_reply_chunk(ls->req, b);
    evbuffer_free(b);
    if (--ls->left > 0) {
        event_base_once(S.base, -1, EV_TIMEOUT, log_tick, ls, &(struct timeval){0, 50000});
        return;
    }
    evhttp_send_reply_end(ls->req);
    free(ls);
}

static void do_log(struct evhttp_request *req, const struct target *t, struct evkeyvalq *q)
{
    _cleanup_free_ char *key = obj_key(t);
    if (!json_object_get(S.objects, key))
        return reply_status(req, 404, "NotFound", NULL, "pods \"%s\" not found", t->name);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/plain");
    if (stk_streq(query(q, "follow"), "true")) {
        evhttp_send_reply_start(req, 200, "OK");
        struct log_stream *ls = stk_xcalloc(1, sizeof(*ls));
        ls->req = req;
        ls->left = 3;
        event_base_once(S.base, -1, EV_TIMEOUT, log_tick, ls, &(struct timeval){0, 50000});
        return;
    }
    struct evbuffer *b = evbuffer_new();
    const char *tail = query(q, "tailLines");
    if (tail && atol(tail) == 1)
        evbuffer_add_printf(b, "line 1\n");
    else
        evbuffer_add_printf(b, "line 0\nline 1\n");
    evhttp_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
}

static void do_discovery(struct evhttp_request *req, const char *path)
{
    json_t *res = json_array();
    for (size_t i = 0; i < STK_ARRAY_SIZE(resources); i++) {
        if (strcmp(resources[i].prefix, path) != 0)
            continue;
        json_array_append_new(res, json_pack("{s:s, s:b, s:s}", "name", resources[i].plural,
                                             "namespaced", resources[i].namespaced, "kind",
                                             resources[i].kind));
    }
    if (json_array_size(res) == 0) {
        json_decref(res);
        return reply_status(req, 404, "NotFound", NULL,
                            "the server could not find the "
                            "requested resource");
    }
    reply_json(req, 200,
               json_pack("{s:s, s:s, s:o}", "kind", "APIResourceList", "groupVersion",
                         strchr(path + 1, '/') + 1, "resources", res));
}

/* /_double/fault?name=N&count=C&value=V, /_double/log, /_double/compact */
static void do_control(struct evhttp_request *req, const char *path, struct evkeyvalq *q)
{
    if (strcmp(path, "/_double/fault") == 0) {
        const char *name = query(q, "name");
        json_object_set_new(
            S.faults, name ? name : "",
            json_pack("{s:I, s:I}", "count",
                      (json_int_t)atol(query(q, "count") ? query(q, "count") : "1"), "value",
                      (json_int_t)atol(query(q, "value") ? query(q, "value") : "0")));
        return reply_json(req, 200, json_object());
    }
    if (strcmp(path, "/_double/log") == 0)
        return reply_json(req, 200, json_pack("{s:O}", "log", S.log));
    if (strcmp(path, "/_double/replay") == 0) {
        /* the next request gets a response recorded from a real API server */
        const char *file = query(q, "file");
        char fpath[4096];
        snprintf(fpath, sizeof(fpath), "%s/recorded/%s", S.data_dir, file ? file : "");
        json_t *r = file && !strchr(file, '/') ? json_load_file(fpath, 0, NULL) : NULL;
        if (!json_is_object(r)) {
            json_decref(r);
            return reply_status(req, 404, "NotFound", NULL, "no recording %s", fpath);
        }
        json_array_append_new(S.replay, r);
        return reply_json(req, 200, json_object());
    }
    if (strcmp(path, "/_double/compact") == 0) {
        S.min_rv = S.rv + 1;
        return reply_json(req, 200, json_object());
    }
    reply_status(req, 404, "NotFound", NULL, "no such control");
}

static bool authenticated(struct evhttp_request *req, bool *forbidden)
{
    const char *auth = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    *forbidden = stk_streq(auth, "Bearer " KUBE_DOUBLE_FORBIDDEN);
    if (stk_streq(auth, "Bearer " KUBE_DOUBLE_TOKEN) || *forbidden)
        return true;
    struct bufferevent *bev = evhttp_connection_get_bufferevent(evhttp_request_get_connection(req));
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    return ssl && SSL_get0_peer_certificate(ssl) && SSL_get_verify_result(ssl) == X509_V_OK;
}

struct slow {
    struct evhttp_request *req;
};
static void handle(struct evhttp_request *req, void *ud);

static void slow_cb(evutil_socket_t fd, short what, void *ud)
{
    (void)fd;
    (void)what;
    handle(ud, NULL);
}

static void handle(struct evhttp_request *req, void *ud)
{
    const char *uri = evhttp_request_get_uri(req);
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *path = evhttp_uri_get_path(u);
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    const char *method = cmd == EVHTTP_REQ_GET      ? "GET"
                         : cmd == EVHTTP_REQ_PATCH  ? "PATCH"
                         : cmd == EVHTTP_REQ_DELETE ? "DELETE"
                         : cmd == EVHTTP_REQ_POST   ? "POST"
                         : cmd == EVHTTP_REQ_PUT    ? "PUT"
                                                    : "OTHER";
    if (ud) { /* first pass: log, faults that delay */
        if (!stk_startswith(path, "/_double/")) {
            _cleanup_free_ char *line = stk_xasprintf("%s %s", method, uri);
            json_array_append_new(S.log, json_string(line));
            long slow = fault_take("slow_ms");
            if (slow) {
                event_base_once(S.base, -1, EV_TIMEOUT, slow_cb, req,
                                &(struct timeval){slow / 1000, (slow % 1000) * 1000});
                return;
            }
        }
    }
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    const char *qs = evhttp_uri_get_query(u);
    if (qs && evhttp_parse_query_str(qs, &q) < 0) {
        reply_status(req, 400, "BadRequest", NULL, "bad query");
        return;
    }
    bool forbidden = false;
    struct target t;
    if (!authenticated(req, &forbidden)) {
        reply_status(req, 401, "Unauthorized", NULL, "Unauthorized");
    } else if (forbidden) {
        reply_status(req, 403, "Forbidden", NULL,
                     "%s is forbidden: User \"forbidden\" cannot %s resource", path, method);
    } else if (stk_startswith(path, "/_double/")) {
        do_control(req, path, &q);
    } else if (json_array_size(S.replay) > 0) {
        json_auto_t *r = json_incref(json_array_get(S.replay, 0));
        json_array_remove(S.replay, 0);
        int code = (int)json_integer_value(json_object_get(r, "code"));
        json_t *body = json_object_get(r, "body");
        if (json_is_null(body) || !body) {
            evhttp_send_reply(req, code, NULL, NULL);
        } else if (json_is_string(body)) {
            struct evbuffer *b = evbuffer_new();
            evbuffer_add(b, json_string_value(body), json_string_length(body));
            evhttp_send_reply(req, code, NULL, b);
            evbuffer_free(b);
        } else {
            reply_json(req, code, json_incref(body));
        }
    } else if (fault_take("status_503")) {
        reply_status(req, 503, "ServiceUnavailable", NULL,
                     "the server is currently unable to "
                     "handle the request");
    } else if (cmd == EVHTTP_REQ_GET && !parse_target(path, &t) &&
               (strcmp(path, "/api/v1") == 0 ||
                (stk_startswith(path, "/apis/") && strchr(path + 6, '/') &&
                 !strchr(strchr(path + 6, '/') + 1, '/')))) {
        do_discovery(req, path);
    } else if (!parse_target(path, &t)) {
        reply_status(req, 404, "NotFound", NULL,
                     "the server could not find the requested "
                     "resource");
    } else if (t.res->namespaced && t.ns[0] && !dns_label(t.ns)) {
        reply_status(req, 400, "BadRequest", NULL, "invalid namespace");
    } else if (t.sub[0]) {
        if (cmd == EVHTTP_REQ_GET && strcmp(t.sub, "log") == 0 && strcmp(t.res->kind, "Pod") == 0)
            do_log(req, &t, &q);
        else
            reply_status(req, 404, "NotFound", NULL, "no such subresource");
    } else if (!t.name[0]) {
        if (cmd != EVHTTP_REQ_GET)
            reply_status(req, 405, "MethodNotAllowed", NULL, "method not allowed");
        else if (stk_streq(query(&q, "watch"), "1") || stk_streq(query(&q, "watch"), "true"))
            do_watch(req, &t, &q);
        else
            do_list(req, &t, &q);
    } else if (cmd == EVHTTP_REQ_GET) {
        _cleanup_free_ char *key = obj_key(&t);
        json_t *o = json_object_get(S.objects, key);
        if (o)
            reply_json(req, 200, json_incref(o));
        else
            reply_status(req, 404, "NotFound",
                         json_pack("{s:s, s:s}", "name", t.name, "kind", t.res->plural),
                         "%s \"%s\" not found", t.res->plural, t.name);
    } else if (cmd == EVHTTP_REQ_PATCH) {
        const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
        if (stk_streq(ct, "application/apply-patch+yaml"))
            do_apply(req, &t, &q);
        else
            do_patch(req, &t);
    } else if (cmd == EVHTTP_REQ_DELETE) {
        do_delete(req, &t);
    } else {
        reply_status(req, 405, "MethodNotAllowed", NULL, "method not allowed");
    }
    evhttp_clear_headers(&q);
}

static struct bufferevent *tls_bev(struct event_base *base, void *ud)
{
    (void)ud;
    return bufferevent_openssl_socket_new(base, -1, SSL_new(S.ssl), BUFFEREVENT_SSL_ACCEPTING,
                                          BEV_OPT_CLOSE_ON_FREE);
}

static void on_term(evutil_socket_t fd, short what, void *ud)
{
    (void)fd;
    (void)what;
    (void)ud;
    _exit(0);
}

static STK_NORETURN void serve(const char *dir, int lfd, int report)
{
    char path[4096];
    S.ssl = SSL_CTX_new(TLS_server_method());
    snprintf(path, sizeof(path), "%s/server.crt", dir);
    if (SSL_CTX_use_certificate_chain_file(S.ssl, path) != 1)
        _exit(2);
    snprintf(path, sizeof(path), "%s/server.key", dir);
    if (SSL_CTX_use_PrivateKey_file(S.ssl, path, SSL_FILETYPE_PEM) != 1)
        _exit(2);
    snprintf(path, sizeof(path), "%s/ca.crt", dir);
    if (SSL_CTX_load_verify_locations(S.ssl, path, NULL) != 1)
        _exit(2);
    /* ask for a client certificate; authentication decides if none came */
    SSL_CTX_set_verify(S.ssl, SSL_VERIFY_PEER, NULL);
    /* resumed sessions (libcurl reconnecting) need one with peer verification */
    static const unsigned char sid[] = "kube-double";
    SSL_CTX_set_session_id_context(S.ssl, sid, sizeof(sid) - 1);
    S.objects = json_object();
    S.events = json_array();
    S.log = json_array();
    S.faults = json_object();
    S.rv = 100;
    S.data_dir = dir;
    S.replay = json_array();
    S.base = event_base_new();
    struct evhttp *http = evhttp_new(S.base);
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_PATCH | EVHTTP_REQ_DELETE |
                                         EVHTTP_REQ_POST | EVHTTP_REQ_PUT);
    evhttp_set_bevcb(http, tls_bev, NULL);
    evhttp_set_gencb(http, handle, (void *)1);
    if (!evhttp_accept_socket_with_handle(http, lfd))
        _exit(2);
    struct event *term = evsignal_new(S.base, SIGTERM, on_term, NULL);
    event_add(term, NULL);
    char ok = 'k';
    if (write(report, &ok, 1) != 1)
        _exit(2);
    close(report);
    event_base_dispatch(S.base);
    _exit(0);
}

int kube_double_start(const char *data_dir, struct kube_double *ret)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 64) < 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &alen) < 0)
        return -errno;
    evutil_make_socket_nonblocking(lfd);
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -errno;
    sigset_t mask, old;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigprocmask(SIG_BLOCK, &mask, &old);
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        close(p[0]);
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a test killed by its watchdog */
        sigprocmask(SIG_SETMASK, &old, NULL);
        signal(SIGPIPE, SIG_IGN);
        serve(data_dir, lfd, p[1]);
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    close(p[1]);
    close(lfd);
    char ok = 0;
    ssize_t n = read(p[0], &ok, 1);
    close(p[0]);
    if (n != 1) {
        waitpid(pid, NULL, 0);
        return -EIO;
    }
    ret->pid = pid;
    ret->port = ntohs(a.sin_port);
    return 0;
}

void kube_double_stop(struct kube_double *d)
{
    if (d->pid > 0) {
        kill(d->pid, SIGTERM);
        waitpid(d->pid, NULL, 0);
        d->pid = 0;
    }
}
