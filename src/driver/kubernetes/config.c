/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Cluster access: a kubeconfig (YAML through the project's libyaml loader)
 * or the in-cluster service-account files. Everything is checked and read
 * here, before any connection: key material is held in memory and handed to
 * libcurl and libwebsockets as PEM blobs, never written to a file. What would
 * weaken TLS or run a program (insecure-skip-tls-verify, exec and
 * auth-provider plugins) is refused, never ignored.
 */
#include "driver/kubernetes/internal.h"
#include "render/render.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <string.h>
#include <sys/stat.h>

void kube_blob_free(struct kube_blob *b)
{
    if (b->data) {
        OPENSSL_cleanse(b->data, b->len);
        free(b->data);
    }
    b->data = NULL;
    b->len = 0;
}

void kube_blob_set(struct kube_blob *b, const void *data, size_t len)
{
    kube_blob_free(b);
    b->data = stk_xmalloc(len + 1);
    memcpy(b->data, data, len);
    b->data[len] = '\0';
    b->len = len;
}

void stk_kubeconfig_free(struct stk_kubeconfig *c)
{
    if (!c)
        return;
    free(c->context);
    free(c->source);
    free(c->server);
    free(c->namespace);
    kube_blob_free(&c->ca);
    kube_blob_free(&c->cert);
    kube_blob_free(&c->key);
    kube_blob_free(&c->token);
    free(c->token_file);
    free(c);
}

static char *dup_or_null(const char *s)
{
    return s ? stk_xstrdup(s) : NULL;
}

static void blob_copy(struct kube_blob *to, const struct kube_blob *from)
{
    if (from->data)
        kube_blob_set(to, from->data, from->len);
}

struct stk_kubeconfig *kubeconfig_dup(const struct stk_kubeconfig *c)
{
    struct stk_kubeconfig *d = stk_xcalloc(1, sizeof(*d));
    d->context = dup_or_null(c->context);
    d->source = dup_or_null(c->source);
    d->server = dup_or_null(c->server);
    d->namespace = dup_or_null(c->namespace);
    blob_copy(&d->ca, &c->ca);
    blob_copy(&d->cert, &c->cert);
    blob_copy(&d->key, &c->key);
    blob_copy(&d->token, &c->token);
    d->token_file = dup_or_null(c->token_file);
    return d;
}

const char *stk_kubeconfig_context(const struct stk_kubeconfig *c)
{
    return c->context;
}

const char *stk_kubeconfig_server(const struct stk_kubeconfig *c)
{
    return c->server;
}

const char *stk_kubeconfig_namespace(const struct stk_kubeconfig *c)
{
    return c->namespace ? c->namespace : "default";
}

int kube_read_file(const char *path, size_t max, char **ret, size_t *ret_len,
                   struct stk_error **err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return stk_error_errno(err, errno, "%s", path);
    struct stk_buf b = {0};
    char chunk[8192];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            stk_buf_free(&b);
            return stk_error_errno(err, e, "%s", path);
        }
        if (n == 0)
            break;
        if ((size_t)n > max - b.len) {
            OPENSSL_cleanse(b.data, b.len);
            stk_buf_free(&b);
            return stk_error_make(err, EFBIG, "%s: larger than %zu bytes", path, max);
        }
        stk_buf_append(&b, chunk, (size_t)n);
    }
    OPENSSL_cleanse(chunk, sizeof(chunk));
    *ret_len = b.len;
    *ret = b.data ? stk_buf_steal(&b) : stk_xstrdup("");
    return 0;
}

/* Tokens are one line; the newline files end with is not part of them. */
static size_t trim_len(const char *s, size_t len)
{
    while (len > 0 &&
           (s[len - 1] == '\n' || s[len - 1] == '\r' || s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    return len;
}

int kubeconfig_token(const struct stk_kubeconfig *c, char **ret, struct stk_error **err)
{
    if (!c->token_file) {
        *ret = c->token.data ? stk_xstrndup(c->token.data, c->token.len) : NULL;
        return 0;
    }
    char *data = NULL;
    size_t len = 0;
    int r = kube_read_file(c->token_file, 64 << 10, &data, &len, err);
    if (r < 0)
        return stk_error_wrap(err, "token file");
    len = trim_len(data, len);
    data[len] = '\0';
    if (len == 0 || memchr(data, '\n', len)) {
        OPENSSL_cleanse(data, len);
        free(data);
        return stk_error_make(err, EINVAL, "token file %s: not one non-empty line", c->token_file);
    }
    *ret = data;
    return 0;
}

/* ---- kubeconfig ---------------------------------------------------------- */

struct kc {
    const char *name; /* the kubeconfig's path, for messages */
    const char *dir;  /* relative paths are relative to this */
    struct stk_kubeconfig *c;
};

/* One entry of a named list (clusters, contexts, users): its inner map. */
static int named(const struct kc *kc, const json_t *root, const char *list, const char *inner,
                 const char *want, const json_t **ret, struct stk_error **err)
{
    const json_t *arr = json_object_get(root, list);
    if (arr && !json_is_array(arr) && !json_is_null(arr))
        return stk_error_make(err, EINVAL, "%s: %s: not a list", kc->name, list);
    size_t i;
    const json_t *e;
    json_array_foreach(arr, i, e)
    {
        const json_t *n = json_object_get(e, "name");
        if (!json_is_string(n) || strcmp(json_string_value(n), want) != 0)
            continue;
        const json_t *v = json_object_get(e, inner);
        if (json_is_null(v) || !v)
            v = NULL;
        else if (!json_is_object(v))
            return stk_error_make(err, EINVAL, "%s: %s[%zu] (%s).%s: not a map", kc->name, list, i,
                                  want, inner);
        *ret = v;
        return 0;
    }
    return stk_error_make(err, ENOENT, "%s: no %s named \"%s\"", kc->name,
                          strcmp(list, "contexts") == 0   ? "context"
                          : strcmp(list, "clusters") == 0 ? "cluster"
                                                          : "user",
                          want);
}

/* A string member, or NULL; non-strings are errors. */
static int str_member(const struct kc *kc, const json_t *m, const char *what, const char *key,
                      const char **ret, struct stk_error **err)
{
    const json_t *v = json_object_get(m, key);
    if (!v || json_is_null(v)) {
        *ret = NULL;
        return 0;
    }
    if (!json_is_string(v))
        return stk_error_make(err, EINVAL, "%s: %s.%s: not a string", kc->name, what, key);
    *ret = json_string_value(v);
    if (**ret == '\0')
        *ret = NULL;
    return 0;
}

static char *resolve_path(const struct kc *kc, const char *p)
{
    if (p[0] == '/' || !kc->dir)
        return stk_xstrdup(p);
    return stk_xasprintf("%s/%s", kc->dir, p);
}

static int base64_decode(const char *in, struct kube_blob *out)
{
    size_t n = strlen(in);
    _cleanup_free_ unsigned char *buf = stk_xmalloc(n / 4 * 3 + 4);
    EVP_ENCODE_CTX *ctx = EVP_ENCODE_CTX_new();
    if (!ctx)
        stk_oom();
    int len1 = 0, len2 = 0;
    EVP_DecodeInit(ctx);
    int r = EVP_DecodeUpdate(ctx, buf, &len1, (const unsigned char *)in, (int)n);
    if (r >= 0)
        r = EVP_DecodeFinal(ctx, buf + len1, &len2);
    EVP_ENCODE_CTX_free(ctx);
    if (r < 0 || len1 + len2 == 0)
        return -EINVAL;
    kube_blob_set(out, buf, (size_t)(len1 + len2));
    OPENSSL_cleanse(buf, (size_t)(len1 + len2));
    return 0;
}

/* "X" (a file) or "X-data" (base64): at most one, loaded into *out. */
static int pem_member(const struct kc *kc, const json_t *m, const char *what, const char *key,
                      struct kube_blob *out, struct stk_error **err)
{
    _cleanup_free_ char *data_key = stk_xasprintf("%s-data", key);
    const char *file = NULL, *data = NULL;
    int r = str_member(kc, m, what, key, &file, err);
    if (r >= 0)
        r = str_member(kc, m, what, data_key, &data, err);
    if (r < 0)
        return r;
    if (file && data)
        return stk_error_make(err, EINVAL, "%s: %s: both %s and %s are set; keep one", kc->name,
                              what, key, data_key);
    if (data) {
        if (base64_decode(data, out) < 0)
            return stk_error_make(err, EINVAL, "%s: %s.%s: not base64", kc->name, what, data_key);
    } else if (file) {
        _cleanup_free_ char *path = resolve_path(kc, file);
        char *buf = NULL;
        size_t len = 0;
        r = kube_read_file(path, STK_KUBE_MAX_KUBECONFIG, &buf, &len, err);
        if (r < 0)
            return stk_error_wrap(err, "%s: %s.%s", kc->name, what, key);
        kube_blob_set(out, buf, len);
        OPENSSL_cleanse(buf, len);
        free(buf);
    } else {
        return 0;
    }
    if (!memmem(out->data, out->len, "-----BEGIN ", 11))
        return stk_error_make(err, EINVAL, "%s: %s.%s: not PEM data", kc->name, what,
                              data ? data_key : key);
    return 0;
}

/* Members that would change how stockade authenticates or verifies, and
 * that it does not implement: refusing beats silently doing something else. */
static const struct {
    const char *key, *why;
} refused_user[] = {
    {"exec", "exec credential plugins are not supported; use a token, tokenFile or a client "
             "certificate"},
    {"auth-provider", "auth-provider plugins are not supported; use a token, tokenFile or a "
                      "client certificate"},
    {"username", "basic authentication is not supported"},
    {"password", "basic authentication is not supported"},
    {"as", "impersonation is not supported"},
    {"as-uid", "impersonation is not supported"},
    {"as-groups", "impersonation is not supported"},
    {"as-user-extra", "impersonation is not supported"},
};

static int load_user(const struct kc *kc, const json_t *u, const char *uname,
                     struct stk_error **err)
{
    _cleanup_free_ char *what = stk_xasprintf("users[%s].user", uname);
    for (size_t i = 0; i < STK_ARRAY_SIZE(refused_user); i++) {
        const json_t *v = json_object_get(u, refused_user[i].key);
        if (v && !json_is_null(v))
            return stk_error_make(err, ENOTSUP, "%s: %s.%s: %s", kc->name, what,
                                  refused_user[i].key, refused_user[i].why);
    }
    int r = pem_member(kc, u, what, "client-certificate", &kc->c->cert, err);
    if (r >= 0)
        r = pem_member(kc, u, what, "client-key", &kc->c->key, err);
    if (r < 0)
        return r;
    if (!kc->c->cert.data != !kc->c->key.data)
        return stk_error_make(err, EINVAL,
                              "%s: %s: a client certificate needs its key and a key "
                              "its certificate",
                              kc->name, what);
    const char *token = NULL, *token_file = NULL;
    r = str_member(kc, u, what, "token", &token, err);
    if (r >= 0)
        r = str_member(kc, u, what, "tokenFile", &token_file, err);
    if (r < 0)
        return r;
    if (token) {
        size_t len = trim_len(token, strlen(token));
        if (memchr(token, '\n', len) || memchr(token, '\r', len))
            return stk_error_make(err, EINVAL, "%s: %s.token: not one line", kc->name, what);
        kube_blob_set(&kc->c->token, token, len);
    } else if (token_file) {
        /* kubectl prefers token over tokenFile too */
        kc->c->token_file = resolve_path(kc, token_file);
        _cleanup_free_ char *t = NULL;
        r = kubeconfig_token(kc->c, &t, err);
        if (t)
            OPENSSL_cleanse(t, strlen(t));
        if (r < 0)
            return stk_error_wrap(err, "%s: %s.tokenFile", kc->name, what);
    }
    return 0;
}

static int check_server(const char *name, const char *server, struct stk_error **err)
{
    if (!stk_startswith(server, "https://"))
        return stk_error_make(err, EINVAL,
                              "%s: server %s: only https:// servers are supported (TLS "
                              "verification is never switched off)",
                              name, server);
    const char *host = server + strlen("https://");
    if (*host == '\0' || *host == '/' || strpbrk(server, " \t\r\n?#@"))
        return stk_error_make(err, EINVAL, "%s: server %s: not a valid URL", name, server);
    return 0;
}

static int load_cluster(const struct kc *kc, const json_t *cl, const char *cname,
                        struct stk_error **err)
{
    _cleanup_free_ char *what = stk_xasprintf("clusters[%s].cluster", cname);
    const json_t *insecure = json_object_get(cl, "insecure-skip-tls-verify");
    if (json_is_true(insecure))
        return stk_error_make(err, EPERM,
                              "%s: %s: insecure-skip-tls-verify: true is refused: stockade never "
                              "switches TLS verification off; give certificate-authority or "
                              "certificate-authority-data",
                              kc->name, what);
    static const char *const unsupported[] = {"proxy-url", "tls-server-name"};
    for (size_t i = 0; i < STK_ARRAY_SIZE(unsupported); i++) {
        const json_t *v = json_object_get(cl, unsupported[i]);
        if (v && !json_is_null(v))
            return stk_error_make(err, ENOTSUP, "%s: %s.%s: not supported", kc->name, what,
                                  unsupported[i]);
    }
    const char *server = NULL;
    int r = str_member(kc, cl, what, "server", &server, err);
    if (r < 0)
        return r;
    if (!server)
        return stk_error_make(err, EINVAL, "%s: %s.server: missing", kc->name, what);
    r = check_server(kc->name, server, err);
    if (r < 0)
        return r;
    size_t n = strlen(server);
    while (n > 0 && server[n - 1] == '/')
        n--;
    kc->c->server = stk_xstrndup(server, n);
    return pem_member(kc, cl, what, "certificate-authority", &kc->c->ca, err);
}

int stk_kubeconfig_parse(const char *data, size_t len, const char *name, const char *dir,
                         const char *context, struct stk_kubeconfig **ret, struct stk_error **err)
{
    if (len > STK_KUBE_MAX_KUBECONFIG)
        return stk_error_make(err, EFBIG, "%s: larger than %u bytes", name,
                              STK_KUBE_MAX_KUBECONFIG);
    json_t *docs_raw = NULL;
    int r = stk_yaml_load(data, len, &docs_raw, err);
    if (r < 0)
        return stk_error_wrap(err, "%s", name);
    json_auto_t *docs = docs_raw;
    if (json_array_size(docs) != 1 || !json_is_object(json_array_get(docs, 0)))
        return stk_error_make(err, EINVAL, "%s: not one kubeconfig document (a map)", name);
    const json_t *root = json_array_get(docs, 0);

    _cleanup_(stk_kubeconfig_freep) struct stk_kubeconfig *c = stk_xcalloc(1, sizeof(*c));
    struct kc kc = {.name = name, .dir = dir, .c = c};
    const char *ctx = context;
    if (!ctx) {
        r = str_member(&kc, root, "kubeconfig", "current-context", &ctx, err);
        if (r < 0)
            return r;
        if (!ctx)
            return stk_error_make(err, EINVAL, "%s: no current-context; name one with --context",
                                  name);
    }
    c->context = stk_xstrdup(ctx);
    c->source = stk_xstrdup(name);

    const json_t *cx = NULL, *cl = NULL, *u = NULL;
    r = named(&kc, root, "contexts", "context", ctx, &cx, err);
    if (r < 0)
        return r;
    _cleanup_free_ char *what = stk_xasprintf("contexts[%s].context", ctx);
    const char *cluster = NULL, *user = NULL, *ns = NULL;
    r = str_member(&kc, cx, what, "cluster", &cluster, err);
    if (r >= 0)
        r = str_member(&kc, cx, what, "user", &user, err);
    if (r >= 0)
        r = str_member(&kc, cx, what, "namespace", &ns, err);
    if (r < 0)
        return r;
    if (!cluster)
        return stk_error_make(err, EINVAL, "%s: %s.cluster: missing", name, what);
    if (ns && !kube_dns_label(ns))
        return stk_error_make(err, EINVAL, "%s: %s.namespace: \"%s\" is not a DNS label", name,
                              what, ns);
    c->namespace = dup_or_null(ns);
    r = named(&kc, root, "clusters", "cluster", cluster, &cl, err);
    if (r < 0)
        return r;
    if (!cl)
        return stk_error_make(err, EINVAL, "%s: clusters[%s].cluster: missing", name, cluster);
    r = load_cluster(&kc, cl, cluster, err);
    if (r < 0)
        return r;
    if (user) {
        r = named(&kc, root, "users", "user", user, &u, err);
        if (r < 0)
            return r;
        if (u) {
            r = load_user(&kc, u, user, err);
            if (r < 0)
                return r;
        }
    }
    *ret = TAKE_PTR(c);
    return 0;
}

static int load_file(const char *path, const char *context, struct stk_kubeconfig **ret,
                     struct stk_error **err)
{
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    int r = kube_read_file(path, STK_KUBE_MAX_KUBECONFIG, &data, &len, err);
    if (r < 0)
        return stk_error_wrap(err, "kubeconfig");
    _cleanup_free_ char *dir = NULL;
    const char *slash = strrchr(path, '/');
    if (slash)
        dir = slash == path ? stk_xstrdup("/") : stk_xstrndup(path, (size_t)(slash - path));
    r = stk_kubeconfig_parse(data, len, path, dir, context, ret, err);
    OPENSSL_cleanse(data, len);
    return r;
}

static int load_in_cluster(const char *context, struct stk_kubeconfig **ret, struct stk_error **err)
{
    const char *dir = getenv(STK_KUBE_SA_DIR_ENV);
    if (!dir || !*dir)
        dir = STK_KUBE_SA_DIR;
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    if (!host || !*host || !port || !*port)
        return stk_error_make(err, ENOENT,
                              "no kubeconfig: none given, $KUBECONFIG unset, no ~/.kube/config, "
                              "and not in a cluster (KUBERNETES_SERVICE_HOST/PORT unset)");
    if (context && strcmp(context, "in-cluster") != 0)
        return stk_error_make(err, ENOENT, "in-cluster credentials have no context \"%s\"",
                              context);
    _cleanup_(stk_kubeconfig_freep) struct stk_kubeconfig *c = stk_xcalloc(1, sizeof(*c));
    c->context = stk_xstrdup("in-cluster");
    c->source = stk_xstrdup(dir);
    c->server = strchr(host, ':') ? stk_xasprintf("https://[%s]:%s", host, port)
                                  : stk_xasprintf("https://%s:%s", host, port);
    int r = check_server("in-cluster", c->server, err);
    if (r < 0)
        return r;
    _cleanup_free_ char *ca_path = stk_xasprintf("%s/ca.crt", dir);
    _cleanup_free_ char *ns_path = stk_xasprintf("%s/namespace", dir);
    char *buf = NULL;
    size_t len = 0;
    r = kube_read_file(ca_path, STK_KUBE_MAX_KUBECONFIG, &buf, &len, err);
    if (r < 0)
        return stk_error_wrap(err, "in-cluster");
    kube_blob_set(&c->ca, buf, len);
    free(buf);
    c->token_file = stk_xasprintf("%s/token", dir);
    _cleanup_free_ char *t = NULL;
    r = kubeconfig_token(c, &t, err);
    if (t)
        OPENSSL_cleanse(t, strlen(t));
    if (r < 0)
        return stk_error_wrap(err, "in-cluster");
    if (kube_read_file(ns_path, 256, &buf, &len, NULL) >= 0) {
        len = trim_len(buf, len);
        buf[len] = '\0';
        if (kube_dns_label(buf))
            c->namespace = buf;
        else
            free(buf);
    }
    *ret = TAKE_PTR(c);
    return 0;
}

int stk_kubeconfig_load(const struct stk_kube_opts *o, struct stk_kubeconfig **ret,
                        struct stk_error **err)
{
    const char *context = o ? o->context : NULL;
    if (o && o->kubeconfig)
        return load_file(o->kubeconfig, context, ret, err);
    const char *env = getenv("KUBECONFIG");
    if (env && *env) {
        /* kubectl merges the list; stockade reads the first file only */
        const char *colon = strchr(env, ':');
        _cleanup_free_ char *first =
            colon ? stk_xstrndup(env, (size_t)(colon - env)) : stk_xstrdup(env);
        if (*first)
            return load_file(first, context, ret, err);
    }
    const char *home = getenv("HOME");
    if (home && *home) {
        _cleanup_free_ char *path = stk_xasprintf("%s/.kube/config", home);
        if (access(path, F_OK) == 0)
            return load_file(path, context, ret, err);
    }
    return load_in_cluster(context, ret, err);
}
