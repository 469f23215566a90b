/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pure half of the API: routes, request bodies and error codes. Nothing
 * here touches a socket or the store, so the fuzz target drives it directly.
 */
#include "gateway/internal.h"
#include "init/proto.h"
#include "session/session.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Routes as a table (h2o's style): adding an endpoint is one line here and
 * one handler in http.c's table, indexed by the same enum. */
const struct gw_route_def gw_routes[_GW_ROUTE_N] = {
    [GW_HEALTHZ] = {"GET", "/healthz"},
    [GW_METRICS] = {"GET", "/metrics"},
    [GW_WHOAMI] = {"GET", "/v1/whoami"},
    [GW_SB_LIST] = {"GET", "/v1/sandboxes"},
    [GW_SB_CREATE] = {"POST", "/v1/sandboxes"},
    [GW_SB_GET] = {"GET", "/v1/sandboxes/{}"},
    [GW_SB_DELETE] = {"DELETE", "/v1/sandboxes/{}"},
    [GW_SB_STOP] = {"POST", "/v1/sandboxes/{}:stop"},
    [GW_SB_START] = {"POST", "/v1/sandboxes/{}:start"},
    [GW_SB_EXEC] = {"POST", "/v1/sandboxes/{}:exec"},
    [GW_SB_LOGS] = {"GET", "/v1/sandboxes/{}/logs"},
    [GW_SB_AUDIT] = {"GET", "/v1/sandboxes/{}/audit"},
    [GW_SB_CONTRACT] = {"GET", "/v1/sandboxes/{}/contract"},
    [GW_POOL_LIST] = {"GET", "/v1/pools"},
    [GW_POOL_CREATE] = {"POST", "/v1/pools"},
    [GW_POOL_DELETE] = {"DELETE", "/v1/pools/{}"},
    [GW_POOL_GET] = {"GET", "/v1/pools/{}"},
    [GW_EVENTS] = {"GET", "/v1/events"},
    [GW_SB_FILE_GET] = {"GET", "/v1/sandboxes/{}/files"},
    [GW_SB_FILE_PUT] = {"PUT", "/v1/sandboxes/{}/files"},
    /* a prefix: gw_port_path() matches it */
    [GW_SB_PORT] = {"GET", "/v1/sandboxes/{}/ports/{port}/..."},
};

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

bool gw_name_ok(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!name_char(s[n]) || n >= 63)
            return false;
    return n > 0 && strcmp(s, ".") && strcmp(s, "..");
}

static bool pattern_match(const char *pat, const char *path, char arg[64])
{
    while (*pat) {
        if (pat[0] == '{' && pat[1] == '}') {
            size_t n = 0;
            while (name_char(path[n]) && n < 63)
                n++;
            if (n == 0 || name_char(path[n]))
                return false;
            memcpy(arg, path, n);
            arg[n] = '\0';
            if (!gw_name_ok(arg)) /* "." and ".." are not names */
                return false;
            path += n;
            pat += 2;
            continue;
        }
        if (*pat++ != *path++)
            return false;
    }
    return *path == '\0';
}

int gw_port_path(const char *path, char ret_id[64], uint16_t *ret_port, const char **ret_rest)
{
    static const char prefix[] = "/v1/sandboxes/";
    if (strncmp(path, prefix, sizeof(prefix) - 1))
        return -ENOENT;
    const char *p = path + sizeof(prefix) - 1;
    size_t n = 0;
    while (name_char(p[n]) && n < 63)
        n++;
    char id[64];
    memcpy(id, p, n);
    id[n] = '\0';
    p += n;
    if (!gw_name_ok(id) || strncmp(p, "/ports/", 7))
        return -ENOENT;
    p += 7;
    unsigned port = 0;
    size_t digits = 0;
    for (; p[digits] >= '0' && p[digits] <= '9' && digits < 6; digits++)
        port = port * 10 + (unsigned)(p[digits] - '0');
    if (digits == 0 || digits > 5 || p[0] == '0' || port > 65535 ||
        (p[digits] != '\0' && p[digits] != '/'))
        return -ENOENT;
    memcpy(ret_id, id, n + 1);
    *ret_port = (uint16_t)port;
    *ret_rest = p[digits] ? p + digits : "/";
    return 0;
}

int gw_route_parse(const char *method, const char *path, enum gw_route *ret, char ret_arg[64])
{
    bool other_method = false;
    uint16_t port;
    const char *rest;
    if (gw_port_path(path, ret_arg, &port, &rest) == 0) {
        if (strcmp(method, "GET"))
            return -EPERM;
        *ret = GW_SB_PORT;
        return 0;
    }
    for (size_t i = 0; i < _GW_ROUTE_N; i++) {
        if (i == GW_SB_PORT) /* a prefix, matched above */
            continue;
        char arg[64] = "";
        if (!pattern_match(gw_routes[i].pattern, path, arg))
            continue;
        if (strcmp(gw_routes[i].method, method)) {
            other_method = true;
            continue;
        }
        *ret = (enum gw_route)i;
        memcpy(ret_arg, arg, sizeof(arg));
        return 0;
    }
    return other_method ? -EPERM : -ENOENT;
}

void gw_route_allow(const char *path, char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = '\0';
    char id[64];
    uint16_t port;
    const char *rest;
    if (gw_port_path(path, id, &port, &rest) == 0) {
        snprintf(buf, n, "GET");
        return;
    }
    for (size_t i = 0; i < _GW_ROUTE_N; i++) {
        if (i == GW_SB_PORT) /* a prefix, matched above */
            continue;
        char arg[64] = "";
        const char *m = gw_routes[i].method;
        if (!pattern_match(gw_routes[i].pattern, path, arg) || strstr(buf, m))
            continue;
        int w = snprintf(buf + used, n - used, "%s%s", used ? ", " : "", m);
        if (w < 0 || (size_t)w >= n - used) {
            buf[used] = '\0';
            return;
        }
        used += (size_t)w;
    }
}

const char *gw_status_phrase(int status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 503:
        return "Service Unavailable";
    default:
        return "Refused";
    }
}

const char *const gw_err_names[_GW_E_N] = {
    [GW_E_BAD_REQUEST] = "bad_request",
    [GW_E_UNAUTHENTICATED] = "unauthenticated",
    [GW_E_FORBIDDEN] = "forbidden",
    [GW_E_NOT_FOUND] = "not_found",
    [GW_E_METHOD] = "method_not_allowed",
    [GW_E_CONFLICT] = "conflict",
    [GW_E_TOO_LARGE] = "too_large",
    [GW_E_MEDIA_TYPE] = "unsupported_media_type",
    [GW_E_INTERNAL] = "internal",
    [GW_E_UNAVAILABLE] = "unavailable",
    [GW_E_NOT_IMPLEMENTED] = "not_implemented",
};

const int gw_err_status[_GW_E_N] = {
    [GW_E_BAD_REQUEST] = 400, [GW_E_UNAUTHENTICATED] = 401, [GW_E_FORBIDDEN] = 403,
    [GW_E_NOT_FOUND] = 404,   [GW_E_METHOD] = 405,          [GW_E_CONFLICT] = 409,
    [GW_E_TOO_LARGE] = 413,   [GW_E_MEDIA_TYPE] = 415,      [GW_E_INTERNAL] = 500,
    [GW_E_UNAVAILABLE] = 503, [GW_E_NOT_IMPLEMENTED] = 501,
};

json_t *gw_error_json(enum gw_err code, const char *message)
{
    return json_pack("{s:{s:s,s:s}}", "error", "code", gw_err_names[code], "message",
                     message ? message : "");
}

enum gw_err gw_err_of_errno(int e)
{
    switch (e < 0 ? -e : e) {
    case EINVAL:
    case E2BIG:
        return GW_E_BAD_REQUEST;
    case ENOENT:
    case ESRCH:
        return GW_E_NOT_FOUND;
    case EEXIST:
    case EBUSY:
    case ESTALE:
    case EDQUOT:
    case EPERM:
    case EALREADY:
        return GW_E_CONFLICT;
    case EAGAIN:
    case ENOSPC:
    case ETIMEDOUT:
        return GW_E_UNAVAILABLE;
    default:
        return GW_E_INTERNAL;
    }
}

enum gw_err gw_err_of_file_errno(int e)
{
    switch (e < 0 ? -e : e) {
    case EROFS:
    case EACCES:
        return GW_E_FORBIDDEN;
    case EFBIG:
    case ENOSPC: /* the sandbox's volume or tmpfs is full: this file does not fit */
    case EDQUOT:
        return GW_E_TOO_LARGE;
    case EISDIR:
    case ENOTDIR:
    case ELOOP:
    case ENAMETOOLONG:
        return GW_E_BAD_REQUEST;
    case EOPNOTSUPP:
        return GW_E_NOT_IMPLEMENTED;
    default:
        return gw_err_of_errno(e);
    }
}

static int field_set(const struct gw_field *f, json_t *v, void *out, char *why, size_t why_n)
{
    if (json_is_null(v) && !f->required)
        return 0;
    if (f->type == GW_F_STRING) {
        if (!json_is_string(v)) {
            snprintf(why, why_n, "field \"%s\" must be a string", f->name);
            return -EINVAL;
        }
        *(const char **)((char *)out + f->off) = json_string_value(v);
        return 0;
    }
    if (f->type == GW_F_BOOL) {
        if (!json_is_boolean(v)) {
            snprintf(why, why_n, "field \"%s\" must be true or false", f->name);
            return -EINVAL;
        }
        *(bool *)((char *)out + f->off) = json_is_true(v);
        return 0;
    }
    if (f->type == GW_F_ARRAY) {
        if (!json_is_array(v)) {
            snprintf(why, why_n, "field \"%s\" must be an array", f->name);
            return -EINVAL;
        }
        *(json_t **)((char *)out + f->off) = v;
        return 0;
    }
    if (!json_is_integer(v)) {
        snprintf(why, why_n, "field \"%s\" must be an integer", f->name);
        return -EINVAL;
    }
    *(int64_t *)((char *)out + f->off) = json_integer_value(v);
    return 0;
}

static const struct gw_field *field_find(const struct gw_field *f, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(f[i].name, key))
            return &f[i];
    return NULL;
}

int gw_body_parse(const char *body, size_t len, const struct gw_field *f, size_t n, void *out,
                  json_t **ret_root, char *why, size_t why_n)
{
    json_error_t je;
    json_t *root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        snprintf(why, why_n, "malformed JSON: line %d, column %d: %s", je.line, je.column, je.text);
        return -EINVAL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        snprintf(why, why_n, "the body must be a JSON object");
        return -EINVAL;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        const struct gw_field *fd = field_find(f, n, key);
        if (!fd) {
            snprintf(why, why_n, "unknown field \"%.64s\"", key);
            json_decref(root);
            return -EINVAL;
        }
        if (field_set(fd, v, out, why, why_n) < 0) {
            json_decref(root);
            return -EINVAL;
        }
    }
    for (size_t i = 0; i < n; i++)
        if (f[i].required && !json_object_get(root, f[i].name)) {
            snprintf(why, why_n, "missing field \"%s\"", f[i].name);
            json_decref(root);
            return -EINVAL;
        }
    *ret_root = root;
    return 0;
}

static bool opt_name_ok(const char *what, const char *s, size_t max, char *why, size_t why_n)
{
    if (!s || (strlen(s) > 0 && strlen(s) < max))
        return true;
    snprintf(why, why_n, "field \"%s\" must be 1 to %zu characters", what, max - 1);
    return false;
}

int gw_create_body_parse(const char *body, size_t len, struct gw_create_body *ret,
                         json_t **ret_root, char *why, size_t why_n)
{
    static const struct gw_field fields[] = {
        {"spec", GW_F_STRING, true, offsetof(struct gw_create_body, spec)},
        {"env", GW_F_STRING, false, offsetof(struct gw_create_body, env)},
        {"pool", GW_F_STRING, false, offsetof(struct gw_create_body, pool)},
        {"owner", GW_F_STRING, false, offsetof(struct gw_create_body, owner)},
        {"tenant", GW_F_STRING, false, offsetof(struct gw_create_body, tenant)},
    };
    struct gw_create_body b = {0};
    json_t *root = NULL;
    int r = gw_body_parse(body, len, fields, STK_ARRAY_SIZE(fields), &b, &root, why, why_n);
    if (r < 0)
        return r;
    if (b.pool && !gw_name_ok(b.pool)) {
        snprintf(why, why_n, "field \"pool\" must match [A-Za-z0-9._-]{1,63}");
        r = -EINVAL;
    } else if (!opt_name_ok("owner", b.owner, 128, why, why_n) ||
               !opt_name_ok("tenant", b.tenant, 64, why, why_n)) {
        r = -EINVAL;
    }
    if (r < 0) {
        json_decref(root);
        return r;
    }
    *ret = b;
    *ret_root = root;
    return 0;
}

int gw_pool_body_parse(const char *body, size_t len, struct gw_pool_body *ret, json_t **ret_root,
                       char *why, size_t why_n)
{
    static const struct gw_field fields[] = {
        {"name", GW_F_STRING, true, offsetof(struct gw_pool_body, name)},
        {"size", GW_F_INT, true, offsetof(struct gw_pool_body, size)},
        {"spec", GW_F_STRING, true, offsetof(struct gw_pool_body, spec)},
        {"env", GW_F_STRING, false, offsetof(struct gw_pool_body, env)},
        {"tenant", GW_F_STRING, false, offsetof(struct gw_pool_body, tenant)},
        {"owner", GW_F_STRING, false, offsetof(struct gw_pool_body, owner)},
    };
    struct gw_pool_body b = {0};
    json_t *root = NULL;
    int r = gw_body_parse(body, len, fields, STK_ARRAY_SIZE(fields), &b, &root, why, why_n);
    if (r < 0)
        return r;
    if (!gw_name_ok(b.name)) {
        snprintf(why, why_n, "field \"name\" must match [A-Za-z0-9._-]{1,63}");
        r = -EINVAL;
    } else if (b.size < 1 || b.size > STK_POOL_MAX_SIZE) {
        snprintf(why, why_n, "field \"size\" must be 1 to %d", STK_POOL_MAX_SIZE);
        r = -EINVAL;
    } else if (!opt_name_ok("tenant", b.tenant, 64, why, why_n) ||
               !opt_name_ok("owner", b.owner, 128, why, why_n)) {
        r = -EINVAL;
    }
    if (r < 0) {
        json_decref(root);
        return r;
    }
    *ret = b;
    *ret_root = root;
    return 0;
}

int gw_parse_ms(const char *s, int64_t *ret)
{
    if (!s || !*s || strlen(s) > 15)
        return -EINVAL;
    int64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -EINVAL;
        v = v * 10 + (*s - '0');
    }
    *ret = v;
    return 0;
}

/* The strings of a JSON array into out[0..max); false with why set. */
static bool string_list(const char *name, json_t *a, const char **out, size_t max, size_t *ret_n,
                        char *why, size_t why_n)
{
    size_t n = a ? json_array_size(a) : 0;
    if (n > max) {
        snprintf(why, why_n, "field \"%s\" has more than %zu entries", name, max);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        out[i] = json_string_value(json_array_get(a, i));
        if (!out[i] || strlen(out[i]) > 4096) {
            snprintf(why, why_n, "field \"%s\" must hold strings of at most 4096 bytes", name);
            return false;
        }
    }
    *ret_n = n;
    return true;
}

static bool exec_body_check(const struct gw_exec_body *b, char *why, size_t why_n)
{
    if (b->argc == 0 || !b->argv[0][0]) {
        snprintf(why, why_n, "field \"argv\" needs a program");
        return false;
    }
    for (size_t i = 0; i < b->n_env; i++) {
        const char *eq = strchr(b->env[i], '=');
        if (!eq || eq == b->env[i]) {
            snprintf(why, why_n, "field \"env\" needs NAME=VALUE entries");
            return false;
        }
    }
    if (b->cwd && b->cwd[0] != '/') {
        snprintf(why, why_n, "field \"cwd\" must be an absolute path");
        return false;
    }
    return true;
}

int gw_exec_body_parse(const char *body, size_t len, struct gw_exec_body *ret, json_t **ret_root,
                       char *why, size_t why_n)
{
    struct raw {
        json_t *argv, *env;
        const char *cwd;
        bool tty;
        int64_t rows, cols;
    } raw = {0};
    static const struct gw_field fields[] = {
        {"argv", GW_F_ARRAY, true, offsetof(struct raw, argv)},
        {"env", GW_F_ARRAY, false, offsetof(struct raw, env)},
        {"cwd", GW_F_STRING, false, offsetof(struct raw, cwd)},
        {"tty", GW_F_BOOL, false, offsetof(struct raw, tty)},
        {"rows", GW_F_INT, false, offsetof(struct raw, rows)},
        {"cols", GW_F_INT, false, offsetof(struct raw, cols)},
    };
    json_t *root = NULL;
    int r = gw_body_parse(body, len, fields, STK_ARRAY_SIZE(fields), &raw, &root, why, why_n);
    if (r < 0)
        return r;
    memset(ret, 0, sizeof(*ret));
    ret->cwd = raw.cwd;
    ret->tty = raw.tty;
    if (raw.rows < 0 || raw.rows > STK_INITP_WINSIZE_MAX || raw.cols < 0 ||
        raw.cols > STK_INITP_WINSIZE_MAX || !raw.rows != !raw.cols) {
        snprintf(why, why_n, "fields \"rows\" and \"cols\" must both be 1..%d",
                 STK_INITP_WINSIZE_MAX);
        json_decref(root);
        return -EINVAL;
    }
    ret->rows = (unsigned short)raw.rows;
    ret->cols = (unsigned short)raw.cols;
    if (!string_list("argv", raw.argv, ret->argv, GW_EXEC_MAX_ARGV, &ret->argc, why, why_n) ||
        !string_list("env", raw.env, ret->env, STK_EXEC_MAX_ENV, &ret->n_env, why, why_n) ||
        !exec_body_check(ret, why, why_n)) {
        json_decref(root);
        return -EINVAL;
    }
    *ret_root = root;
    return 0;
}

/* ---- the head of a request, as the gate reads it ---- */

static bool head_name_is(const char *line, size_t name_len, const char *want)
{
    return name_len == strlen(want) && !strncasecmp(line, want, name_len);
}

static void head_value(const char *v, size_t n, const char **ret, size_t *ret_n)
{
    while (n && (*v == ' ' || *v == '\t')) {
        v++;
        n--;
    }
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    *ret = v;
    *ret_n = n;
}

static int head_content_length(const char *v, size_t n, int64_t *cl)
{
    int64_t x = 0;
    if (n == 0 || n > 12)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -EINVAL;
        x = x * 10 + (v[i] - '0');
    }
    if (*cl >= 0 && *cl != x)
        return -EINVAL; /* two lengths that disagree */
    *cl = x;
    return 0;
}

/* One header line (no line end) into the head. */
static int head_line(struct gw_head *h, const char *line, size_t n)
{
    if (line[0] == ' ' || line[0] == '\t')
        return -EINVAL; /* obs-fold: what it continues is a guess */
    const char *colon = memchr(line, ':', n);
    if (!colon)
        return -EINVAL;
    size_t name_len = (size_t)(colon - line);
    const char *v;
    size_t vn;
    head_value(colon + 1, n - name_len - 1, &v, &vn);
    if (head_name_is(line, name_len, "Content-Length"))
        return head_content_length(v, vn, &h->content_length);
    if (head_name_is(line, name_len, "Transfer-Encoding"))
        h->chunked = true;
    else if (head_name_is(line, name_len, "Authorization") && h->n_authorization++ == 0) {
        if (vn >= sizeof(h->authorization))
            return -EINVAL;
        memcpy(h->authorization, v, vn);
        h->authorization[vn] = '\0';
    }
    return 0;
}

static int head_request_line(struct gw_head *h, const char *line, size_t n)
{
    const char *sp1 = memchr(line, ' ', n);
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', n - (size_t)(sp1 + 1 - line)) : NULL;
    if (!sp1 || !sp2 || (size_t)(sp1 - line) >= sizeof(h->method))
        return -EINVAL;
    memcpy(h->method, line, (size_t)(sp1 - line));
    h->method[sp1 - line] = '\0';
    const char *t = sp1 + 1;
    size_t tn = (size_t)(sp2 - t);
    const char *q = memchr(t, '?', tn);
    if (q)
        tn = (size_t)(q - t);
    if (tn >= sizeof(h->path))
        tn = sizeof(h->path) - 1; /* longer than any route: no route matches */
    memcpy(h->path, t, tn);
    h->path[tn] = '\0';
    return 0;
}

ssize_t gw_head_end(const char *buf, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (buf[i] != '\n')
            continue;
        if (i + 1 < n && buf[i + 1] == '\n')
            return (ssize_t)(i + 2);
        if (i + 2 < n && buf[i + 1] == '\r' && buf[i + 2] == '\n')
            return (ssize_t)(i + 3);
    }
    return -1;
}

int gw_head_parse(const char *buf, size_t n, struct gw_head *ret)
{
    *ret = (struct gw_head){.content_length = -1};
    size_t at = 0, lineno = 0;
    while (at < n) {
        const char *nl = memchr(buf + at, '\n', n - at);
        size_t len = nl ? (size_t)(nl - (buf + at)) : n - at;
        size_t used = len + (nl ? 1 : 0);
        if (len && buf[at + len - 1] == '\r')
            len--;
        if (len == 0)
            break; /* the blank line */
        int r =
            lineno++ == 0 ? head_request_line(ret, buf + at, len) : head_line(ret, buf + at, len);
        if (r < 0)
            return r;
        at += used;
    }
    return lineno ? 0 : -EINVAL;
}
