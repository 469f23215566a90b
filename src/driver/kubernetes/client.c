/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The REST client: one libcurl easy handle per client (kept between
 * requests so the TLS connection is reused), TLS always verified, every
 * answer bounded, HTTP errors turned into errno values and messages from the
 * Kubernetes Status object. Not thread-safe: one client per thread.
 */
#include "driver/kubernetes/internal.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <string.h>

/* ---- names and escaping --------------------------------------------------- */

static bool dns_label_n(const char *s, size_t n)
{
    if (n == 0 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
        if (!alnum && !(ch == '-' && i > 0 && i + 1 < n))
            return false;
    }
    return true;
}

bool kube_dns_label(const char *s)
{
    return s && dns_label_n(s, strlen(s));
}

bool kube_dns_subdomain(const char *s)
{
    if (!s)
        return false;
    size_t n = strlen(s);
    if (n == 0 || n > 253)
        return false;
    const char *p = s;
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        if (!dns_label_n(p, len))
            return false;
        if (!dot)
            return true;
        p = dot + 1;
    }
}

/* RBAC object names are path segments ("system:aggregate-to-view"). */
static bool path_segment(const char *s)
{
    if (!s || !*s || strlen(s) > 253 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return false;
    for (const char *p = s; *p; p++)
        if (*p == '/' || *p == '%' || (unsigned char)*p <= ' ' || *p == 0x7f)
            return false;
    return true;
}

void kube_query_escape(struct stk_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '.' || *p == '_' || *p == '~') {
            stk_buf_putc(b, (char)*p);
        } else {
            stk_buf_putc(b, '%');
            stk_buf_putc(b, hex[*p >> 4]);
            stk_buf_putc(b, hex[*p & 15]);
        }
    }
}

/* ---- errors ---------------------------------------------------------------- */

int kube_error(struct stk_kube *k, struct stk_error **err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *msg = stk_xvasprintf(fmt, ap);
    va_end(ap);
    return stk_error_make(err, code, "context %s (%s): %s", k->cfg->context, k->cfg->server, msg);
}

int kube_status_errno(long status, const json_t *st)
{
    const char *reason = json_string_value(json_object_get(st, "reason"));
    const char *msg = json_string_value(json_object_get(st, "message"));
    /* A real API server (checked on v1.32) answers a server-side apply with
     * a field its schema lacks with 500 and no reason: "failed to create
     * typed patch object (...): .spec: field not declared in schema". That
     * is the caller's invalid object, not a transient server failure. */
    if (status == 500 && msg && strstr(msg, "failed to create typed patch object"))
        return -EINVAL;
    switch (status) {
    case 400:
    case 422:
        return -EINVAL;
    case 401:
        return -EPERM;
    case 403:
        return -EACCES;
    case 404:
        return -ENOENT;
    case 409:
        return stk_streq(reason, "AlreadyExists") ? -EEXIST : -EAGAIN;
    case 410:
        return -ESTALE;
    case 408:
    case 504:
        return -ETIMEDOUT;
    default:
        if (status == 429 || status >= 500)
            return -EIO;
        return -EPROTO;
    }
}

/* Message, then the causes the message does not already say. */
static void status_text(const json_t *st, struct stk_buf *out)
{
    const char *msg = json_string_value(json_object_get(st, "message"));
    const char *reason = json_string_value(json_object_get(st, "reason"));
    if (reason && *reason)
        stk_buf_printf(out, " %s", reason);
    if (msg && *msg)
        stk_buf_printf(out, ": %.*s", 4000, msg);
    const json_t *causes = json_object_get(json_object_get(st, "details"), "causes");
    size_t i, shown = 0;
    const json_t *c;
    json_array_foreach(causes, i, c)
    {
        const char *cm = json_string_value(json_object_get(c, "message"));
        const char *cf = json_string_value(json_object_get(c, "field"));
        if (!cm || (msg && strstr(msg, cm)))
            continue;
        if (shown++ >= 20) {
            stk_buf_puts(out, "; ...");
            break;
        }
        stk_buf_printf(out, "; %s%s%.*s", cf ? cf : "", cf ? ": " : "", 1000, cm);
    }
}

int kube_status_error(struct stk_kube *k, long status, const char *body, size_t len,
                      const char *verb, const char *what, struct stk_error **err)
{
    json_auto_t *st = body && len ? json_loadb(body, len, 0, NULL) : NULL;
    _cleanup_buf_ struct stk_buf t = {0};
    int e = -kube_status_errno(status, st);
    stk_buf_printf(&t, "%s %s: %ld", verb, what, status);
    if (json_is_object(st) && stk_streq(json_string_value(json_object_get(st, "kind")), "Status"))
        status_text(st, &t);
    else if (len > 0 && !st)
        stk_buf_printf(&t, ": %.*s", (int)(len < 200 ? len : 200), body);
    if (e == EIO)
        stk_buf_puts(&t, " (transient: the server may answer later)");
    return kube_error(k, err, e, "%s", stk_buf_str(&t));
}

/* ---- the client -------------------------------------------------------------- */

static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

int stk_kube_open(const struct stk_kubeconfig *c, struct stk_kube **ret, struct stk_error **err)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, curl_init_once);
    CURL *curl = curl_easy_init();
    if (!curl)
        return stk_error_make(err, ENOMEM, "context %s (%s): curl_easy_init failed", c->context,
                              c->server);
    struct stk_kube *k = stk_xcalloc(1, sizeof(*k));
    k->cfg = kubeconfig_dup(c);
    k->curl = curl;
    k->timeout_ms = STK_KUBE_TIMEOUT_MS;
    k->discovery = json_object();
    *ret = k;
    return 0;
}

void stk_kube_close(struct stk_kube *k)
{
    if (!k)
        return;
    curl_easy_cleanup(k->curl);
    json_decref(k->discovery);
    stk_kubeconfig_free(k->cfg);
    free(k);
}

void stk_kube_set_timeout(struct stk_kube *k, int timeout_ms)
{
    k->timeout_ms = timeout_ms > 0 ? timeout_ms : STK_KUBE_TIMEOUT_MS;
}

struct collect {
    const struct kube_http *h;
    struct stk_buf *out;
    bool too_big;
    bool stopped; /* the sink said stop */
    CURL *curl;
    bool status_known, to_sink; /* an error answer is collected, not streamed */
};

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct collect *c = ud;
    size_t n = size * nmemb;
    if (c->h->sink && !c->status_known) {
        long status = 0;
        curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
        c->status_known = true;
        c->to_sink = status >= 200 && status <= 299;
    }
    if (c->to_sink) {
        size_t w = c->h->sink(c->h->sink_ud, ptr, n);
        if (w != n)
            c->stopped = true;
        return w;
    }
    if (n > STK_KUBE_MAX_BODY - c->out->len) {
        c->too_big = true;
        return 0;
    }
    stk_buf_append(c->out, ptr, n);
    return n;
}

/* libcurl calls it about once a second while a transfer waits, and more
 * often while data flows */
static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    struct collect *c = ud;
    if (!atomic_load(c->h->cancel))
        return 0;
    c->stopped = true;
    return 1;
}

static inline void slist_freep(struct curl_slist **l)
{
    curl_slist_free_all(*l);
}

static void header_wipe_free(char *h)
{
    OPENSSL_cleanse(h, strlen(h));
    free(h);
}

int kube_http(struct stk_kube *k, const struct kube_http *h, long *ret_status,
              struct stk_buf *body_out, struct stk_error **err)
{
    CURL *c = k->curl;
    _cleanup_free_ char *token = NULL;
    int r = kubeconfig_token(k->cfg, &token, err);
    if (r < 0)
        return stk_error_wrap(err, "context %s (%s)", k->cfg->context, k->cfg->server);
    _cleanup_(slist_freep) struct curl_slist *hdrs = NULL;
    char *auth = token ? stk_xasprintf("Authorization: Bearer %s", token) : NULL;
    if (token)
        OPENSSL_cleanse(token, strlen(token));
    hdrs = curl_slist_append(hdrs, "Accept: application/json");
    if (auth) {
        hdrs = curl_slist_append(hdrs, auth);
        header_wipe_free(auth);
    }
    _cleanup_free_ char *ctype = NULL;
    if (h->body) {
        ctype = stk_xasprintf("Content-Type: %s",
                              h->content_type ? h->content_type : "application/json");
        hdrs = curl_slist_append(hdrs, ctype);
    }
    hdrs = curl_slist_append(hdrs, "Expect:"); /* no 100-continue round trip */
    if (!hdrs)
        stk_oom();
    _cleanup_free_ char *url = stk_xasprintf("%s%s", k->cfg->server, h->path);
    struct stk_buf scratch = {0};
    struct collect col = {.h = h, .out = body_out ? body_out : &scratch, .curl = c};
    char curl_err[CURL_ERROR_SIZE] = "";
    int timeout = h->timeout_ms ? h->timeout_ms : k->timeout_ms;

    curl_easy_reset(c);
    CURLcode cr = CURLE_OK;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (cr == CURLE_OK)                                                                        \
            cr = curl_easy_setopt(c, opt, val);                                                    \
    } while (0)
    SET(CURLOPT_URL, url);
    SET(CURLOPT_PROTOCOLS_STR, "https");
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_PROXY, ""); /* no proxy from the environment: exec could not use it either */
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    if (k->cfg->ca.data) {
        struct curl_blob b = {
            .data = k->cfg->ca.data, .len = k->cfg->ca.len, .flags = CURL_BLOB_COPY};
        SET(CURLOPT_CAINFO_BLOB, &b);
    }
    if (k->cfg->cert.data) {
        struct curl_blob cb = {
            .data = k->cfg->cert.data, .len = k->cfg->cert.len, .flags = CURL_BLOB_COPY};
        struct curl_blob kb = {
            .data = k->cfg->key.data, .len = k->cfg->key.len, .flags = CURL_BLOB_COPY};
        SET(CURLOPT_SSLCERT_BLOB, &cb);
        SET(CURLOPT_SSLCERTTYPE, "PEM");
        SET(CURLOPT_SSLKEY_BLOB, &kb);
        SET(CURLOPT_SSLKEYTYPE, "PEM");
    }
    SET(CURLOPT_HTTPHEADER, hdrs);
    SET(CURLOPT_CUSTOMREQUEST, h->method);
    if (strcmp(h->method, "GET") == 0)
        SET(CURLOPT_HTTPGET, 1L);
    if (h->body) {
        SET(CURLOPT_POSTFIELDS, h->body);
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)h->body_len);
    }
    SET(CURLOPT_CONNECTTIMEOUT_MS, timeout > 0 && timeout < 10000 ? (long)timeout : 10000L);
    if (timeout > 0)
        SET(CURLOPT_TIMEOUT_MS, (long)timeout);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_ACCEPT_ENCODING, "");
    SET(CURLOPT_WRITEFUNCTION, on_write);
    SET(CURLOPT_WRITEDATA, &col);
    SET(CURLOPT_ERRORBUFFER, curl_err);
    if (h->cancel) {
        SET(CURLOPT_NOPROGRESS, 0L);
        SET(CURLOPT_XFERINFOFUNCTION, on_progress);
        SET(CURLOPT_XFERINFODATA, &col);
    }
    SET(CURLOPT_USERAGENT, "stockade/" STK_VERSION);
#undef SET
    if (cr != CURLE_OK) {
        stk_buf_free(&scratch);
        curl_easy_reset(c);
        return kube_error(k, err, EINVAL, "%s %s: %s", h->method, h->path, curl_easy_strerror(cr));
    }
    cr = curl_easy_perform(c);
    /* the handle keeps no pointer into this frame (headers, key blobs) */
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_reset(c);
    stk_buf_free(&scratch);
    if (col.too_big)
        return kube_error(k, err, EMSGSIZE, "%s %s: answer larger than %u bytes", h->method,
                          h->path, STK_KUBE_MAX_BODY);
    if (col.stopped && (cr == CURLE_WRITE_ERROR || cr == CURLE_ABORTED_BY_CALLBACK)) {
        *ret_status = status;
        return 1; /* the sink stopped the transfer */
    }
    if (cr == CURLE_OPERATION_TIMEDOUT)
        return kube_error(k, err, ETIMEDOUT, "%s %s: timed out after %d ms", h->method, h->path,
                          timeout);
    if (cr == CURLE_PEER_FAILED_VERIFICATION || cr == CURLE_SSL_CERTPROBLEM ||
        cr == CURLE_SSL_CACERT_BADFILE || cr == CURLE_SSL_PINNEDPUBKEYNOTMATCH)
        return kube_error(k, err, EPROTO, "%s %s: TLS: %s", h->method, h->path,
                          curl_err[0] ? curl_err : curl_easy_strerror(cr));
    if (cr != CURLE_OK)
        return kube_error(k, err, EIO, "%s %s: %s (transient: the server may answer later)",
                          h->method, h->path, curl_err[0] ? curl_err : curl_easy_strerror(cr));
    *ret_status = status;
    return 0;
}

int stk_kube_request(struct stk_kube *k, const char *method, const char *path,
                     const char *content_type, const json_t *body, long *ret_status,
                     json_t **ret_body, struct stk_error **err)
{
    if (!path || path[0] != '/' || strpbrk(path, " \r\n#"))
        return kube_error(k, err, EINVAL, "%s %s: not a request path", method, path);
    _cleanup_free_ char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (body && !text)
        return kube_error(k, err, EINVAL, "%s %s: body is not serializable", method, path);
    _cleanup_buf_ struct stk_buf out = {0};
    struct kube_http h = {.method = method,
                          .path = path,
                          .content_type = content_type,
                          .body = text,
                          .body_len = text ? strlen(text) : 0};
    long status = 0;
    int r = kube_http(k, &h, &status, &out, err);
    if (r < 0)
        return r;
    json_t *j = out.len ? json_loadb(out.data, out.len, 0, NULL) : NULL;
    *ret_status = status;
    if (ret_body)
        *ret_body = j;
    else
        json_decref(j);
    return 0;
}

/* ---- kinds and paths ---------------------------------------------------------- */

struct kind {
    const char *group; /* "" for the core group */
    const char *kind, *plural;
    bool namespaced;
};

/* The kinds stockade renders, applies, watches or reads; everything else
 * is looked up by discovery. Scope and plural do not depend on the version. */
static const struct kind kinds[] = {
    {"", "Namespace", "namespaces", false},
    {"", "ServiceAccount", "serviceaccounts", true},
    {"", "Pod", "pods", true},
    {"", "PersistentVolumeClaim", "persistentvolumeclaims", true},
    {"", "ResourceQuota", "resourcequotas", true},
    {"", "LimitRange", "limitranges", true},
    {"", "Secret", "secrets", true},
    {"", "Service", "services", true},
    {"", "ConfigMap", "configmaps", true},
    {"", "Event", "events", true},
    {"", "Node", "nodes", false},
    {"rbac.authorization.k8s.io", "Role", "roles", true},
    {"rbac.authorization.k8s.io", "RoleBinding", "rolebindings", true},
    {"rbac.authorization.k8s.io", "ClusterRole", "clusterroles", false},
    {"rbac.authorization.k8s.io", "ClusterRoleBinding", "clusterrolebindings", false},
    {"networking.k8s.io", "NetworkPolicy", "networkpolicies", true},
    {"batch", "Job", "jobs", true},
    {"apps", "Deployment", "deployments", true},
    {"apps", "StatefulSet", "statefulsets", true},
    {"apps", "DaemonSet", "daemonsets", true},
    {"apps", "ReplicaSet", "replicasets", true},
    {"node.k8s.io", "RuntimeClass", "runtimeclasses", false},
    {"admissionregistration.k8s.io", "ValidatingAdmissionPolicy", "validatingadmissionpolicies",
     false},
    {"admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding",
     "validatingadmissionpolicybindings", false},
    {"apiextensions.k8s.io", "CustomResourceDefinition", "customresourcedefinitions", false},
};

/* "v1" → ("", "v1"); "apps/v1" → ("apps", "v1"). */
static bool split_gv(const char *gv, const char **ret_group, size_t *ret_glen)
{
    const char *slash = strchr(gv, '/');
    if (!slash) {
        *ret_group = "";
        *ret_glen = 0;
        return *gv != '\0';
    }
    if (slash == gv || slash[1] == '\0' || strchr(slash + 1, '/'))
        return false;
    *ret_group = gv;
    *ret_glen = (size_t)(slash - gv);
    return true;
}

static bool gv_valid(const char *gv)
{
    const char *g;
    size_t glen;
    if (!gv || !split_gv(gv, &g, &glen))
        return false;
    for (const char *p = gv; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' ||
              *p == '/'))
            return false;
    return true;
}

static const char *gv_base(const char *gv)
{
    return strchr(gv, '/') ? "/apis/" : "/api/";
}

/* The APIResourceList of a group/version, cached; *ret NULL when the
 * server does not serve it. */
static int discover(struct stk_kube *k, const char *gv, const json_t **ret, struct stk_error **err)
{
    json_t *cached = json_object_get(k->discovery, gv);
    if (cached) {
        *ret = json_is_null(cached) ? NULL : cached;
        return 0;
    }
    if (!gv_valid(gv))
        return kube_error(k, err, EINVAL, "discovery: \"%s\" is not a group/version", gv);
    _cleanup_free_ char *path = stk_xasprintf("%s%s", gv_base(gv), gv);
    long status = 0;
    json_t *body = NULL;
    int r = stk_kube_request(k, "GET", path, NULL, NULL, &status, &body, err);
    if (r < 0)
        return r;
    json_auto_t *b = body;
    if (status == 404) {
        json_object_set_new(k->discovery, gv, json_null());
        *ret = NULL;
        return 0;
    }
    if (status != 200 || !json_is_array(json_object_get(b, "resources"))) {
        _cleanup_free_ char *text = b ? json_dumps(b, JSON_COMPACT) : NULL;
        return kube_status_error(k, status, text, text ? strlen(text) : 0, "discovery", path, err);
    }
    json_object_set(k->discovery, gv, b);
    *ret = b;
    return 0;
}

int stk_kube_has_api(struct stk_kube *k, const char *group_version, struct stk_error **err)
{
    const json_t *list = NULL;
    int r = discover(k, group_version, &list, err);
    if (r < 0)
        return r;
    return list ? 1 : 0;
}

static int kind_of(struct stk_kube *k, const struct stk_kube_ref *r, const char **ret_plural,
                   bool *ret_namespaced, struct stk_error **err)
{
    const char *group;
    size_t glen;
    if (!r->api_version || !r->kind || !gv_valid(r->api_version) ||
        !split_gv(r->api_version, &group, &glen))
        return kube_error(k, err, EINVAL, "apiVersion \"%s\" of kind %s is not valid",
                          r->api_version ? r->api_version : "", r->kind ? r->kind : "?");
    for (size_t i = 0; i < STK_ARRAY_SIZE(kinds); i++) {
        if (strcmp(kinds[i].kind, r->kind) == 0 && strlen(kinds[i].group) == glen &&
            strncmp(kinds[i].group, group, glen) == 0) {
            *ret_plural = kinds[i].plural;
            *ret_namespaced = kinds[i].namespaced;
            return 0;
        }
    }
    const json_t *list = NULL;
    int e = discover(k, r->api_version, &list, err);
    if (e < 0)
        return e;
    size_t i;
    const json_t *res;
    json_array_foreach(json_object_get(list, "resources"), i, res)
    {
        const char *name = json_string_value(json_object_get(res, "name"));
        if (!name || strchr(name, '/') ||
            !stk_streq(json_string_value(json_object_get(res, "kind")), r->kind))
            continue;
        *ret_plural = name;
        *ret_namespaced = json_is_true(json_object_get(res, "namespaced"));
        return 0;
    }
    return kube_error(k, err, ENOENT, "the server does not serve kind %s in %s", r->kind,
                      r->api_version);
}

static bool rbac(const struct stk_kube_ref *r)
{
    return stk_startswith(r->api_version, "rbac.authorization.k8s.io/");
}

int stk_kube_path(struct stk_kube *k, const struct stk_kube_ref *r, struct stk_buf *out,
                  struct stk_error **err)
{
    const char *plural = NULL;
    bool namespaced = false;
    int e = kind_of(k, r, &plural, &namespaced, err);
    if (e < 0)
        return e;
    if (r->namespace && !kube_dns_label(r->namespace))
        return kube_error(k, err, EINVAL, "%s: namespace \"%s\" is not a DNS label", r->kind,
                          r->namespace);
    if (r->name && !(rbac(r) ? path_segment(r->name) : kube_dns_subdomain(r->name)))
        return kube_error(k, err, EINVAL, "%s: name \"%s\" is not a DNS subdomain", r->kind,
                          r->name);
    if (r->namespace && !namespaced)
        return kube_error(k, err, EINVAL, "%s is cluster-scoped; it has no namespace (\"%s\")",
                          r->kind, r->namespace);
    if (namespaced && !r->namespace && r->name)
        return kube_error(k, err, EINVAL, "%s %s: a namespaced kind needs a namespace", r->kind,
                          r->name);
    stk_buf_printf(out, "%s%s", gv_base(r->api_version), r->api_version);
    if (r->namespace)
        stk_buf_printf(out, "/namespaces/%s", r->namespace);
    stk_buf_printf(out, "/%s", plural);
    if (r->name) {
        stk_buf_putc(out, '/');
        kube_query_escape(out, r->name);
    }
    return 0;
}

int stk_kube_ref_of(const json_t *obj, struct stk_kube_ref *ret, struct stk_error **err)
{
    const char *av = json_string_value(json_object_get(obj, "apiVersion"));
    const char *kind = json_string_value(json_object_get(obj, "kind"));
    const json_t *meta = json_object_get(obj, "metadata");
    const char *name = json_string_value(json_object_get(meta, "name"));
    const json_t *ns = json_object_get(meta, "namespace");
    if (!av || !*av || !kind || !*kind || !name || !*name)
        return stk_error_make(err, EINVAL,
                              "object %s%s%s: apiVersion, kind and metadata.name "
                              "are required",
                              kind ? kind : "?", name ? " " : "", name ? name : "");
    if (ns && !json_is_string(ns) && !json_is_null(ns))
        return stk_error_make(err, EINVAL, "%s %s: metadata.namespace is not a string", kind, name);
    const char *nss = json_string_value(ns);
    *ret = (struct stk_kube_ref){
        .api_version = av, .kind = kind, .namespace = nss && *nss ? nss : NULL, .name = name};
    return 0;
}

void stk_kube_ref_describe(const struct stk_kube_ref *r, struct stk_buf *out)
{
    stk_buf_puts(out, r->kind ? r->kind : "?");
    if (r->name)
        stk_buf_printf(out, " %s%s%s", r->namespace ? r->namespace : "", r->namespace ? "/" : "",
                       r->name);
    else
        stk_buf_printf(out, " %s%s(collection)", r->namespace ? r->namespace : "",
                       r->namespace ? " " : "");
}

/* ---- verbs ------------------------------------------------------------------- */

/* One JSON request on a ref's path; 2xx → *ret (parsed), else the Status
 * error. ok404: a 404 returns 0 with *ret NULL. */
struct call {
    const char *verb; /* for messages: "apply", "get", ... */
    const char *method, *query, *content_type;
    const json_t *body;
    bool ok404;
};

static int call(struct stk_kube *k, const struct stk_kube_ref *r, const struct call *c,
                long *ret_status, json_t **ret, struct stk_error **err)
{
    _cleanup_buf_ struct stk_buf what = {0};
    _cleanup_buf_ struct stk_buf path = {0};
    stk_kube_ref_describe(r, &what);
    int e = stk_kube_path(k, r, &path, err);
    if (e < 0)
        return stk_error_wrap(err, "%s %s", c->verb, stk_buf_str(&what));
    if (c->query)
        stk_buf_printf(&path, "?%s", c->query);
    _cleanup_free_ char *text = c->body ? json_dumps(c->body, JSON_COMPACT) : NULL;
    if (c->body && !text)
        return kube_error(k, err, EINVAL, "%s %s: body is not serializable", c->verb,
                          stk_buf_str(&what));
    _cleanup_buf_ struct stk_buf out = {0};
    struct kube_http h = {.method = c->method,
                          .path = stk_buf_str(&path),
                          .content_type = c->content_type,
                          .body = text,
                          .body_len = text ? strlen(text) : 0};
    long status = 0;
    e = kube_http(k, &h, &status, &out, err);
    if (e < 0) {
        /* kube_http named the path; say which object it was */
        return stk_error_wrap(err, "%s %s", c->verb, stk_buf_str(&what));
    }
    if (status == 404 && c->ok404) {
        *ret_status = status;
        *ret = NULL;
        return 0;
    }
    if (status < 200 || status > 299)
        return kube_status_error(k, status, out.data, out.len, c->verb, stk_buf_str(&what), err);
    json_error_t je;
    json_t *j = json_loadb(out.data ? out.data : "", out.len, 0, &je);
    if (!j)
        return kube_error(k, err, EPROTO, "%s %s: %ld answer is not JSON: %s", c->verb,
                          stk_buf_str(&what), status, je.text);
    *ret_status = status;
    *ret = j;
    return 0;
}

#define APPLY_QUERY "fieldManager=" STK_KUBE_FIELD_MANAGER "&fieldValidation=Strict&force=true"

int stk_kube_apply(struct stk_kube *k, const json_t *obj, json_t **ret_live, struct stk_error **err)
{
    struct stk_kube_ref r;
    int e = stk_kube_ref_of(obj, &r, err);
    if (e < 0)
        return stk_error_wrap(err, "context %s (%s): apply", k->cfg->context, k->cfg->server);
    struct call c = {.verb = "apply",
                     .method = "PATCH",
                     .query = APPLY_QUERY,
                     .content_type = "application/apply-patch+yaml",
                     .body = obj};
    long status = 0;
    json_t *live = NULL;
    e = call(k, &r, &c, &status, &live, err);
    if (e < 0)
        return e;
    if (ret_live)
        *ret_live = live;
    else
        json_decref(live);
    return 0;
}

int stk_kube_get(struct stk_kube *k, const struct stk_kube_ref *r, json_t **ret,
                 struct stk_error **err)
{
    if (!r->name)
        return kube_error(k, err, EINVAL, "get %s: no name (use list)", r->kind);
    struct call c = {.verb = "get", .method = "GET"};
    long status = 0;
    json_t *j = NULL;
    int e = call(k, r, &c, &status, &j, err);
    if (e < 0)
        return e;
    *ret = j;
    return 0;
}

int stk_kube_list(struct stk_kube *k, const struct stk_kube_ref *r, const char *label_selector,
                  json_t **ret, struct stk_error **err)
{
    return kube_list(k, r, label_selector, NULL, ret, err);
}

int kube_list(struct stk_kube *k, const struct stk_kube_ref *r, const char *label_selector,
              const char *field_selector, json_t **ret, struct stk_error **err)
{
    struct stk_kube_ref coll = *r;
    coll.name = NULL;
    json_auto_t *result = NULL;
    json_t *items = json_array();
    _cleanup_free_ char *cont = NULL;
    for (int page = 0;; page++) {
        _cleanup_buf_ struct stk_buf q = {0};
        stk_buf_puts(&q, "limit=500");
        if (label_selector && *label_selector) {
            stk_buf_puts(&q, "&labelSelector=");
            kube_query_escape(&q, label_selector);
        }
        if (field_selector && *field_selector) {
            stk_buf_puts(&q, "&fieldSelector=");
            kube_query_escape(&q, field_selector);
        }
        if (cont) {
            stk_buf_puts(&q, "&continue=");
            kube_query_escape(&q, cont);
        }
        struct call c = {.verb = "list", .method = "GET", .query = stk_buf_str(&q)};
        long status = 0;
        json_t *j = NULL;
        int e = call(k, &coll, &c, &status, &j, err);
        if (e < 0) {
            json_decref(items);
            return e;
        }
        json_auto_t *lst = j;
        json_t *its = json_object_get(lst, "items");
        if (!json_is_array(its) && !json_is_null(its)) {
            json_decref(items);
            return kube_error(k, err, EPROTO, "list %s: answer has no items", r->kind);
        }
        if (json_array_size(its) > STK_KUBE_MAX_ITEMS - json_array_size(items)) {
            json_decref(items);
            return kube_error(k, err, EMSGSIZE, "list %s: more than %d items", r->kind,
                              STK_KUBE_MAX_ITEMS);
        }
        json_array_extend(items, its);
        free(cont);
        const char *next =
            json_string_value(json_object_get(json_object_get(lst, "metadata"), "continue"));
        cont = next && *next ? stk_xstrdup(next) : NULL;
        json_decref(result);
        result = json_incref(lst);
        if (!cont)
            break;
    }
    /* the last page's metadata (its resourceVersion is the list's) */
    json_object_set_new(result, "items", items);
    json_object_del(json_object_get(result, "metadata"), "continue");
    json_object_del(json_object_get(result, "metadata"), "remainingItemCount");
    *ret = TAKE_PTR(result);
    return 0;
}

int stk_kube_delete(struct stk_kube *k, const struct stk_kube_ref *r, const char *propagation,
                    const char *uid_precondition, struct stk_error **err)
{
    if (!r->name)
        return kube_error(k, err, EINVAL, "delete %s: no name", r->kind);
    const char *prop = propagation ? propagation : "Foreground";
    if (strcmp(prop, "Foreground") != 0 && strcmp(prop, "Background") != 0 &&
        strcmp(prop, "Orphan") != 0)
        return kube_error(k, err, EINVAL,
                          "delete %s: propagation \"%s\" is not one of "
                          "Foreground|Background|Orphan",
                          r->name, prop);
    json_auto_t *opts = json_pack("{s:s, s:s, s:s}", "apiVersion", "v1", "kind", "DeleteOptions",
                                  "propagationPolicy", prop);
    if (uid_precondition)
        json_object_set_new(opts, "preconditions", json_pack("{s:s}", "uid", uid_precondition));
    struct call c = {.verb = "delete", .method = "DELETE", .body = opts, .ok404 = true};
    long status = 0;
    json_t *j = NULL;
    int e = call(k, r, &c, &status, &j, err);
    if (e < 0)
        return e;
    json_decref(j);
    return status == 404 ? 0 : 1;
}

int stk_kube_patch(struct stk_kube *k, const struct stk_kube_ref *r, const char *patch_type,
                   const json_t *patch, json_t **ret, struct stk_error **err)
{
    static const char *const types[] = {"application/merge-patch+json",
                                        "application/strategic-merge-patch+json",
                                        "application/json-patch+json"};
    if (stk_enum_lookup(types, STK_ARRAY_SIZE(types), patch_type) < 0)
        return kube_error(k, err, EINVAL,
                          "patch %s: type \"%s\" is not one of merge, "
                          "strategic-merge or json patch",
                          r->name ? r->name : r->kind, patch_type ? patch_type : "");
    if (!r->name)
        return kube_error(k, err, EINVAL, "patch %s: no name", r->kind);
    struct call c = {.verb = "patch",
                     .method = "PATCH",
                     .query = "fieldManager=" STK_KUBE_FIELD_MANAGER "&fieldValidation=Strict",
                     .content_type = patch_type,
                     .body = patch};
    long status = 0;
    json_t *j = NULL;
    int e = call(k, r, &c, &status, &j, err);
    if (e < 0)
        return e;
    if (ret)
        *ret = j;
    else
        json_decref(j);
    return 0;
}

/* ---- does a live object hold what was applied ---------------------------------------- */

#define HOLDS_MAX_DEPTH 32

static void holds_say(struct stk_buf *diff, const struct stk_buf *path, const char *what,
                      const json_t *live, const json_t *want)
{
    _cleanup_free_ char *l = live ? json_dumps(live, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    _cleanup_free_ char *w = json_dumps(want, JSON_COMPACT | JSON_ENCODE_ANY);
    stk_buf_printf(diff, "%s: ", path->len ? path->data : "(object)");
    if (what)
        stk_buf_printf(diff, "%s", what);
    else
        stk_buf_printf(diff, "%.120s", l ? l : "absent");
    stk_buf_printf(diff, ", applied %.120s", w ? w : "?");
}

static bool holds_rec(json_t *want, json_t *live, struct stk_buf *path, struct stk_buf *diff,
                      size_t *n, int depth)
{
    if (depth > HOLDS_MAX_DEPTH) {
        holds_say(diff, path, "nested too deeply to compare", live, want);
        return false;
    }
    /* the server omits an empty list or map: absent means the same (and
     * only absent: a NetworkPolicy's egress [] denies all, [{}] allows all) */
    if ((json_is_array(want) && !json_array_size(want)) ||
        (json_is_object(want) && !json_object_size(want))) {
        (*n)++;
        if (!live || json_is_null(live) || (json_is_array(live) && !json_array_size(live)) ||
            (json_is_object(live) && !json_object_size(live)))
            return true;
        holds_say(diff, path, NULL, live, want);
        return false;
    }
    if (json_is_object(want)) {
        if (!json_is_object(live)) {
            holds_say(diff, path, NULL, live, want);
            return false;
        }
        const char *k;
        json_t *v;
        json_object_foreach(want, k, v)
        {
            size_t mark = path->len;
            stk_buf_printf(path, "%s%s", mark ? "." : "", k);
            bool ok = holds_rec(v, json_object_get(live, k), path, diff, n, depth + 1);
            path->len = mark;
            if (path->data)
                path->data[mark] = '\0';
            if (!ok)
                return false;
        }
        return true;
    }
    if (json_is_array(want)) {
        if (!json_is_array(live)) {
            holds_say(diff, path, NULL, live, want);
            return false;
        }
        size_t i, k, named = 0;
        json_t *v, *lv;
        json_array_foreach(want, i, v)
        {
            named += json_string_value(json_object_get(v, "name")) != NULL;
        }
        /* an element the server or someone else added to a list of rules
         * (an egress rule, a capability) widens it: such lists hold exactly
         * what was applied. Named elements (containers, volumes, env) and a
         * Pod's tolerations (the server adds default ones) may have more. */
        size_t plen = strlen(stk_buf_str(path));
        bool tolerations = plen >= 11 && !strcmp(stk_buf_str(path) + plen - 11, "tolerations");
        if (named < json_array_size(want) && !tolerations &&
            json_array_size(live) != json_array_size(want)) {
            holds_say(diff, path, "a list of another length", live, want);
            return false;
        }
        json_array_foreach(want, i, v)
        {
            const char *name = json_string_value(json_object_get(v, "name"));
            size_t mark = path->len;
            bool ok = false;
            if (name) {
                /* by name: the one live element of that name must hold it */
                stk_buf_printf(path, "[%s]", name);
                json_t *match = NULL;
                json_array_foreach(live, k, lv)
                {
                    if (!match && stk_streq(json_string_value(json_object_get(lv, "name")), name))
                        match = lv;
                }
                ok = holds_rec(v, match, path, diff, n, depth + 1);
            } else {
                stk_buf_printf(path, "[%zu]", i);
                struct stk_buf scratch = {0};
                size_t before = *n;
                json_array_foreach(live, k, lv)
                {
                    struct stk_buf sp = {0};
                    stk_buf_puts(&sp, stk_buf_str(path));
                    *n = before;
                    ok = holds_rec(v, lv, &sp, &scratch, n, depth + 1);
                    stk_buf_free(&sp);
                    scratch.len = 0;
                    if (ok)
                        break;
                }
                stk_buf_free(&scratch);
                if (!ok)
                    holds_say(diff, path, "no live element equals it", NULL, v);
            }
            path->len = mark;
            if (path->data)
                path->data[mark] = '\0';
            if (!ok)
                return false;
        }
        return true;
    }
    (*n)++;
    if (!live || !json_equal(want, live)) {
        holds_say(diff, path, NULL, live, want);
        return false;
    }
    return true;
}

int stk_kube_holds(json_t *want, json_t *live, struct stk_buf *ret_diff, size_t *ret_n)
{
    struct stk_buf path = {0};
    size_t n = 0;
    bool ok = holds_rec(want, live, &path, ret_diff, &n, 0);
    stk_buf_free(&path);
    if (ret_n)
        *ret_n = n;
    return ok ? 1 : 0;
}
