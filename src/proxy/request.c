/* SPDX-License-Identifier: Apache-2.0 */
/* The proxy's request head and authority parsers: pure, bounded, fuzzed
 * (tests/fuzz/fuzz_proxy_request.c). Strict on purpose: a head the proxy
 * does not understand exactly is refused, never guessed at. */
#include "proxy.h"

#include <errno.h>
#include <string.h>

static bool is_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

bool stk_proxy_authority_parse(const char *s, size_t n, uint16_t default_port, char host[254],
                               uint16_t *ret_port)
{
    const char *colon = memchr(s, ':', n);
    size_t hn = colon ? (size_t)(colon - s) : n;
    uint32_t port = default_port;
    if (hn == 0 || hn > 253)
        return false;
    if (colon) {
        size_t pn = n - hn - 1;
        if (pn == 0 || pn > 5 || colon[1] == '0')
            return false;
        port = 0;
        for (size_t i = 0; i < pn; i++) {
            if (colon[1 + i] < '0' || colon[1 + i] > '9')
                return false;
            port = port * 10 + (uint32_t)(colon[1 + i] - '0');
        }
        if (port < 1 || port > 65535)
            return false;
    } else if (!default_port) {
        return false;
    }
    /* a DNS name: letters, digits, '-' and '.', no empty label; addresses
     * and IPv6 literals are never proxied (allowHosts names hosts) */
    size_t label = 0;
    for (size_t i = 0; i < hn; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-') {
            if (++label > 63)
                return false;
        } else {
            return false;
        }
        host[i] = c;
    }
    if (label == 0)
        return false;
    /* a last label of digits only is an IPv4 address (or a form of one) */
    if (strspn(host + hn - label, "0123456789") == label)
        return false;
    host[hn] = '\0';
    *ret_port = (uint16_t)port;
    return true;
}

/* The next line of buf[at..end): its length without CRLF; -1 when no CRLF
 * yet, -2 when a bare LF or a NUL comes first. */
static long line_at(const char *buf, size_t at, size_t end)
{
    for (size_t i = at; i < end; i++) {
        if (buf[i] == '\0')
            return -2;
        if (buf[i] == '\n')
            return -2;
        if (buf[i] == '\r') {
            if (i + 1 >= end)
                return -1;
            return buf[i + 1] == '\n' ? (long)(i - at) : -2;
        }
    }
    return -1;
}

#define FAIL(e, w)                                                                                 \
    do {                                                                                           \
        *ret_why = (w);                                                                            \
        return -(e);                                                                               \
    } while (0)

static int parse_target(const char *t, size_t tn, struct stk_proxy_request *r, const char **ret_why)
{
    if (r->kind == STK_PROXY_CONNECT) {
        if (!stk_proxy_authority_parse(t, tn, 0, r->host, &r->port))
            FAIL(EPROTONOSUPPORT, "CONNECT needs host:port with a DNS name");
        return 0;
    }
    static const char scheme[] = "http://";
    if (tn < sizeof(scheme) - 1 || strncasecmp(t, scheme, sizeof(scheme) - 1) != 0)
        FAIL(EPROTONOSUPPORT, "this is a proxy: send an absolute http:// URI, or CONNECT for "
                              "https");
    const char *a = t + sizeof(scheme) - 1, *end = t + tn;
    const char *slash = memchr(a, '/', (size_t)(end - a));
    const char *auth_end = slash ? slash : end;
    for (const char *q = a; q < auth_end; q++)
        if (*q == '?' || *q == '#' || *q == '@')
            FAIL(EPROTONOSUPPORT, "the URI's authority must be host[:port] (no userinfo)");
    if (!stk_proxy_authority_parse(a, (size_t)(auth_end - a), 80, r->host, &r->port))
        FAIL(EPROTONOSUPPORT, "the URI's host must be a DNS name");
    if (slash) {
        r->path = slash;
        r->path_len = (size_t)(end - slash);
    } else {
        r->path = "/";
        r->path_len = 1;
    }
    for (size_t i = 0; i < r->path_len; i++)
        if ((unsigned char)r->path[i] <= 0x20 || r->path[i] == 0x7f)
            FAIL(EINVAL, "the URI holds a control character or a space");
    return 0;
}

int stk_proxy_request_parse(const char *buf, size_t n, struct stk_proxy_request *ret,
                            const char **ret_why)
{
    struct stk_proxy_request r = {0};
    size_t lim = n < STK_PROXY_HEAD_MAX ? n : STK_PROXY_HEAD_MAX;
    long ll = line_at(buf, 0, lim);
    if (ll == -2)
        FAIL(EINVAL, "malformed request line (lines end in CRLF)");
    if (ll == -1) {
        if (n >= STK_PROXY_HEAD_MAX)
            FAIL(EMSGSIZE, "request head too large");
        return 0;
    }
    /* METHOD SP TARGET SP HTTP/1.x */
    const char *line = buf, *le = buf + ll;
    const char *sp1 = memchr(line, ' ', (size_t)ll);
    if (!sp1 || sp1 == line || (size_t)(sp1 - line) >= sizeof(r.method))
        FAIL(EINVAL, "malformed request line");
    for (const char *q = line; q < sp1; q++)
        if (!is_tchar(*q))
            FAIL(EINVAL, "malformed method");
    memcpy(r.method, line, (size_t)(sp1 - line));
    const char *t = sp1 + 1;
    const char *sp2 = memchr(t, ' ', (size_t)(le - t));
    if (!sp2 || sp2 == t)
        FAIL(EINVAL, "malformed request line");
    static const char v10[] = " HTTP/1.0", v11[] = " HTTP/1.1";
    size_t vl = (size_t)(le - sp2);
    if (vl != sizeof(v11) - 1 ||
        (memcmp(sp2, v11, vl) != 0 && memcmp(sp2, v10, sizeof(v10) - 1) != 0))
        FAIL(EINVAL, "only HTTP/1.0 and HTTP/1.1");
    r.http10 = memcmp(sp2, v10, sizeof(v10) - 1) == 0;
    r.kind = !strcmp(r.method, "CONNECT") ? STK_PROXY_CONNECT : STK_PROXY_HTTP;
    int e = parse_target(t, (size_t)(sp2 - t), &r, ret_why);
    if (e < 0)
        return e;

    size_t at = (size_t)ll + 2;
    for (;;) {
        long hl = line_at(buf, at, lim);
        if (hl == -2)
            FAIL(EINVAL, "malformed header line (lines end in CRLF)");
        if (hl == -1) {
            if (n >= STK_PROXY_HEAD_MAX)
                FAIL(EMSGSIZE, "request head too large");
            return 0;
        }
        const char *h = buf + at;
        at += (size_t)hl + 2;
        if (hl == 0)
            break;
        if (r.n_headers == STK_PROXY_HEADERS_MAX)
            FAIL(EMSGSIZE, "too many request headers");
        const char *colon = memchr(h, ':', (size_t)hl);
        if (!colon || colon == h)
            FAIL(EINVAL, "malformed header line");
        for (const char *q = h; q < colon; q++)
            if (!is_tchar(*q))
                FAIL(EINVAL, "malformed header name (no folding, no spaces)");
        const char *v = colon + 1, *ve = h + hl;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        for (const char *q = v; q < ve; q++)
            if (((unsigned char)*q < 0x20 && *q != '\t') || *q == 0x7f)
                FAIL(EINVAL, "control character in a header value");
        r.headers[r.n_headers++] = (struct stk_proxy_header){
            .name = h, .name_len = (size_t)(colon - h), .value = v, .value_len = (size_t)(ve - v)};
    }
    r.head_len = at;
    *ret = r;
    return (int)at;
}

/* ---- bindings: http://<name>.bindings.stockade.internal/... ------------------ */

bool stk_binding_name(const char *host, char ret[64])
{
    static const char suffix[] = STK_BINDING_DOMAIN;
    size_t n = strlen(host), m = sizeof(suffix) - 1;
    if (n <= m || n - m > 63 || strcmp(host + n - m, suffix) != 0)
        return false;
    for (size_t i = 0; i < n - m; i++)
        if (host[i] == '.')
            return false; /* one label: the binding's name */
    memcpy(ret, host, n - m);
    ret[n - m] = '\0';
    return true;
}

/* A dot segment ("." or "..", also percent-encoded) would let a request
 * climb out of the binding's path prefix once the upstream normalises it. */
static bool dot_segment(const char *p, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && p[i] != '/' && p[i] != '?')
            continue;
        size_t len = i - start;
        const char *seg = p + start;
        size_t dots = 0, k = 0;
        while (k < len) {
            if (seg[k] == '.') {
                k++;
            } else if (len - k >= 3 && seg[k] == '%' && seg[k + 1] == '2' &&
                       (seg[k + 2] == 'e' || seg[k + 2] == 'E')) {
                k += 3;
            } else {
                break;
            }
            dots++;
        }
        if (k == len && dots >= 1 && dots <= 2 && len > 0)
            return true;
        if (i < n && p[i] == '?')
            return false;
        start = i + 1;
    }
    return false;
}

int stk_binding_map(const char *url, const char *path, size_t path_len,
                    struct stk_binding_target *ret, const char **ret_why)
{
    struct stk_binding_target t = {0};
    const char *rest;
    if (!strncmp(url, "https://", 8)) {
        rest = url + 8;
        t.tls = true;
    } else {
        FAIL(EPROTONOSUPPORT, "a binding's upstream must be https:// (the credential never "
                              "travels in clear)");
    }
    size_t alen = strcspn(rest, "/?#");
    if (!stk_proxy_authority_parse(rest, alen, 443, t.host, &t.port))
        FAIL(EPROTONOSUPPORT, "the binding's upstream host must be a DNS name");
    const char *prefix = rest + alen;
    size_t plen = strlen(prefix);
    if (strpbrk(prefix, "?#"))
        FAIL(EINVAL, "the binding's URL must not carry a query or fragment");
    while (plen && prefix[plen - 1] == '/')
        plen--;
    if (path_len == 0 || path[0] != '/')
        FAIL(EINVAL, "the request path must start with /");
    for (size_t i = 0; i < path_len; i++)
        if ((unsigned char)path[i] <= 0x20 || path[i] == 0x7f || path[i] == '#')
            FAIL(EINVAL, "the request path holds a control character, a space or a fragment");
    if (dot_segment(path, path_len))
        FAIL(EINVAL, "the request path must not hold . or .. segments");
    if (plen + path_len >= sizeof(t.path))
        FAIL(EMSGSIZE, "the upstream path is too long");
    memcpy(t.path, prefix, plen);
    memcpy(t.path + plen, path, path_len);
    t.path[plen + path_len] = '\0';
    *ret = t;
    return 0;
}

/* ---- message framing: where a body ends, for persistent connections ------------- */

static bool name_is(const char *n, size_t nl, const char *want)
{
    return nl == strlen(want) && !strncasecmp(n, want, nl);
}

/* Whether the comma-separated list v[0..vn) holds token (any case). */
static bool list_has(const char *v, size_t vn, const char *token, bool last_only)
{
    size_t tl = strlen(token);
    bool found = false;
    for (size_t i = 0; i <= vn;) {
        size_t j = i;
        while (j < vn && v[j] != ',')
            j++;
        size_t a = i, b = j;
        while (a < b && (v[a] == ' ' || v[a] == '\t'))
            a++;
        while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t'))
            b--;
        found = (b - a == tl && !strncasecmp(v + a, token, tl)) || (found && !last_only);
        if (found && !last_only)
            return true;
        i = j + 1;
    }
    return found;
}

/* A Content-Length value: digits only, below 2^62. */
static bool length_parse(const char *v, size_t vn, uint64_t *ret)
{
    uint64_t x = 0;
    if (vn == 0 || vn > 18)
        return false;
    for (size_t i = 0; i < vn; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        x = x * 10 + (uint64_t)(v[i] - '0');
    }
    *ret = x;
    return true;
}

/* What the headers say about the body: Content-Length (all equal),
 * Transfer-Encoding (chunked last, or not) and Connection: close. */
struct framing_headers {
    bool has_len, has_te, te_chunked, te_only_chunked, close;
    uint64_t len;
};

static int framing_header(struct framing_headers *f, const char *n, size_t nl, const char *v,
                          size_t vn, const char **ret_why)
{
    if (name_is(n, nl, "content-length")) {
        uint64_t x;
        if (!length_parse(v, vn, &x) || (f->has_len && x != f->len))
            FAIL(EINVAL, "a malformed or repeated Content-Length");
        f->has_len = true;
        f->len = x;
    } else if (name_is(n, nl, "transfer-encoding")) {
        if (f->has_te)
            FAIL(EINVAL, "a repeated Transfer-Encoding");
        f->has_te = true;
        f->te_chunked = list_has(v, vn, "chunked", true);
        f->te_only_chunked = vn == 7 && !strncasecmp(v, "chunked", 7);
    } else if (name_is(n, nl, "connection")) {
        f->close = f->close || list_has(v, vn, "close", false);
    }
    return 0;
}

int stk_proxy_request_framing(const struct stk_proxy_request *r, struct stk_http_framing *ret,
                              const char **ret_why)
{
    struct framing_headers f = {0};
    for (size_t i = 0; i < r->n_headers; i++) {
        const struct stk_proxy_header *h = &r->headers[i];
        int e = framing_header(&f, h->name, h->name_len, h->value, h->value_len, ret_why);
        if (e < 0)
            return e;
    }
    if (f.has_te && f.has_len)
        FAIL(EINVAL, "both Content-Length and Transfer-Encoding");
    if (f.has_te && !f.te_only_chunked)
        FAIL(EINVAL, "a Transfer-Encoding other than chunked");
    *ret = (struct stk_http_framing){
        .body = f.has_te             ? STK_BODY_CHUNKED
                : f.has_len && f.len ? STK_BODY_LENGTH
                                     : STK_BODY_NONE,
        .length = f.len,
        .close = f.close || r->http10,
    };
    return 0;
}

int stk_proxy_response_parse(const char *buf, size_t n, bool head_request,
                             struct stk_proxy_response *ret, const char **ret_why)
{
    size_t lim = n < STK_PROXY_RESPONSE_HEAD_MAX ? n : STK_PROXY_RESPONSE_HEAD_MAX;
    long ll = line_at(buf, 0, lim);
    if (ll == -2)
        FAIL(EINVAL, "a malformed status line");
    if (ll == -1)
        return n >= STK_PROXY_RESPONSE_HEAD_MAX ? -EMSGSIZE : 0;
    /* HTTP/1.x SP 3DIGIT [SP reason] */
    if (ll < 12 || memcmp(buf, "HTTP/1.", 7) != 0 || (buf[7] != '0' && buf[7] != '1') ||
        buf[8] != ' ' || (ll > 12 && buf[12] != ' '))
        FAIL(EINVAL, "a malformed status line");
    int status = 0;
    for (int i = 9; i < 12; i++) {
        if (buf[i] < '0' || buf[i] > '9')
            FAIL(EINVAL, "a malformed status code");
        status = status * 10 + (buf[i] - '0');
    }
    if (status < 100)
        FAIL(EINVAL, "a malformed status code");
    struct framing_headers f = {.close = buf[7] == '0'};
    size_t at = (size_t)ll + 2;
    for (;;) {
        long hl = line_at(buf, at, lim);
        if (hl == -2)
            FAIL(EINVAL, "a malformed header line (lines end in CRLF)");
        if (hl == -1)
            return n >= STK_PROXY_RESPONSE_HEAD_MAX ? -EMSGSIZE : 0;
        const char *h = buf + at;
        at += (size_t)hl + 2;
        if (hl == 0)
            break;
        const char *colon = memchr(h, ':', (size_t)hl);
        if (!colon || colon == h)
            FAIL(EINVAL, "a malformed header line");
        for (const char *q = h; q < colon; q++)
            if (!is_tchar(*q))
                FAIL(EINVAL, "a malformed header name");
        const char *v = colon + 1, *ve = h + hl;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        int e = framing_header(&f, h, (size_t)(colon - h), v, (size_t)(ve - v), ret_why);
        if (e < 0)
            return e;
    }
    struct stk_proxy_response r = {.status = status, .head_len = at, .f.close = f.close};
    if (head_request || (status >= 100 && status < 200 && status != 101) || status == 204 ||
        status == 304) {
        r.f.body = STK_BODY_NONE;
    } else if (status == 101) {
        r.f.body = STK_BODY_CLOSE;
        r.f.close = true;
    } else if (f.has_te) {
        /* chunked last: it ends the body; a Content-Length beside it is
         * ignored and the connection is not reused (RFC 9112 6.3) */
        r.f.body = f.te_chunked ? STK_BODY_CHUNKED : STK_BODY_CLOSE;
        r.f.close = r.f.close || f.has_len || !f.te_chunked;
    } else if (f.has_len) {
        r.f.body = f.len ? STK_BODY_LENGTH : STK_BODY_NONE;
        r.f.length = f.len;
    } else {
        r.f.body = STK_BODY_CLOSE;
        r.f.close = true;
    }
    *ret = r;
    return (int)at;
}

enum {
    CH_SIZE0,
    CH_SIZE,
    CH_EXT,
    CH_SIZE_LF,
    CH_DATA,
    CH_DATA_CR,
    CH_DATA_LF,
    CH_TRAILER0,
    CH_TRAILER,
    CH_TRAILER_LF,
    CH_END_LF,
    CH_DONE
};

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int stk_chunked_scan(struct stk_chunked *c, const uint8_t *p, size_t n, size_t *ret_used)
{
    size_t i = 0;
    while (i < n && c->st != CH_DONE) {
        uint8_t b = p[i];
        if (c->st == CH_DATA) {
            size_t take = n - i < c->left ? n - i : (size_t)c->left;
            i += take;
            c->left -= take;
            if (!c->left)
                c->st = CH_DATA_CR;
            continue;
        }
        i++;
        if (c->st != CH_SIZE_LF && c->st != CH_DATA_CR && c->st != CH_DATA_LF &&
            c->st != CH_END_LF && ++c->line > STK_PROXY_CHUNK_LINE_MAX)
            return -EINVAL;
        switch (c->st) {
        case CH_SIZE0:
        case CH_SIZE: {
            int h = hexval(b);
            if (h >= 0) {
                if (c->left >> 56)
                    return -EINVAL; /* a chunk of 2^60 bytes or more */
                c->left = c->left * 16 + (uint64_t)h;
                c->st = CH_SIZE;
            } else if (c->st == CH_SIZE && (b == ';' || b == ' ' || b == '\t')) {
                c->st = CH_EXT;
            } else if (c->st == CH_SIZE && b == '\r') {
                c->st = CH_SIZE_LF;
            } else {
                return -EINVAL;
            }
            break;
        }
        case CH_EXT:
            if (b == '\r')
                c->st = CH_SIZE_LF;
            else if (b == '\n' || b == 0 || b == 0x7f)
                return -EINVAL;
            break;
        case CH_SIZE_LF:
            if (b != '\n')
                return -EINVAL;
            c->line = 0;
            c->st = c->left ? CH_DATA : CH_TRAILER0;
            break;
        case CH_DATA_CR:
            if (b != '\r')
                return -EINVAL;
            c->st = CH_DATA_LF;
            break;
        case CH_DATA_LF:
            if (b != '\n')
                return -EINVAL;
            c->st = CH_SIZE0;
            c->line = 0;
            break;
        case CH_TRAILER0:
        case CH_TRAILER:
            if (++c->trailers > STK_PROXY_TRAILERS_MAX)
                return -EINVAL;
            if (b == '\r')
                c->st = c->st == CH_TRAILER0 ? CH_END_LF : CH_TRAILER_LF;
            else if (b == '\n' || b == 0)
                return -EINVAL;
            else
                c->st = CH_TRAILER;
            break;
        case CH_TRAILER_LF:
            if (b != '\n')
                return -EINVAL;
            c->line = 0;
            c->st = CH_TRAILER0;
            break;
        case CH_END_LF:
            if (b != '\n')
                return -EINVAL;
            c->st = CH_DONE;
            break;
        default:
            return -EINVAL;
        }
    }
    *ret_used = i;
    return c->st == CH_DONE;
}
