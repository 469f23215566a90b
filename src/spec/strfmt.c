/* SPDX-License-Identifier: Apache-2.0 */
/* String syntaxes of spec fields: one checker, one limit and one line of
 * documentation per format. */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static bool is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
    return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

static bool has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

static bool dns_label(const char *s, size_t n)
{
    if (n == 0 || n > 63 || !is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_lower_alnum(s[i]) && s[i] != '-')
            return false;
    return true;
}

static bool dns_subdomain(const char *s, size_t n)
{
    if (n == 0 || n > 253)
        return false;
    size_t start = 0;
    for (size_t i = 0; i <= n; i++)
        if (i == n || s[i] == '.') {
            if (!dns_label(s + start, i - start))
                return false;
            start = i + 1;
        }
    return true;
}

/* Kubernetes "name" part of a qualified name and label values:
 * [A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])? */
static bool k8s_name(const char *s, size_t n)
{
    if (n == 0 || n > 63 || !is_alnum(s[0]) || !is_alnum(s[n - 1]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_alnum(s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
            return false;
    return true;
}

static bool abs_path(const char *s, const char **why)
{
    if (s[0] != '/') {
        *why = "must be an absolute path";
        return false;
    }
    if (has_control(s)) {
        *why = "must not contain control characters";
        return false;
    }
    if (strcmp(s, "/") == 0)
        return true;
    if (s[strlen(s) - 1] == '/') {
        *why = "must not end with '/'";
        return false;
    }
    for (const char *p = s; *p; p++) {
        if (p[0] != '/')
            continue;
        if (p[1] == '/') {
            *why = "must not contain '//'";
            return false;
        }
        if (p[1] == '.' && (p[2] == '/' || p[2] == '\0')) {
            *why = "must not contain '.' components";
            return false;
        }
        if (p[1] == '.' && p[2] == '.' && (p[3] == '/' || p[3] == '\0')) {
            *why = "must not contain '..' components";
            return false;
        }
    }
    return true;
}

static bool under(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

static bool rootfs(const char *s, const char **why)
{
    static const char *const forbidden[] = {"/proc", "/sys", "/dev", "/run", "/var/run"};
    if (strcmp(s, "host") == 0)
        return true;
    if (!abs_path(s, why)) {
        if (s[0] != '/')
            *why = "must be \"host\" or an absolute path to a root filesystem directory";
        return false;
    }
    if (strcmp(s, "/") == 0) {
        *why = "the host's whole root is never a sandbox root; use \"host\" for read-only "
               "system directories";
        return false;
    }
    for (size_t i = 0; i < STK_ARRAY_SIZE(forbidden); i++)
        if (under(s, forbidden[i])) {
            *why = "kernel interfaces and runtime sockets (/proc, /sys, /dev, /run) are never "
                   "a root filesystem";
            return false;
        }
    return true;
}

/* [host[:port]/]path[:tag][@digest], each path component
 * [a-z0-9]+([._-][a-z0-9]+)* (Distribution's reference grammar, simplified). */
static bool image_ref(const char *s, const char **why)
{
    char buf[513];
    size_t n = strlen(s);
    if (n == 0 || n >= sizeof(buf)) {
        *why = "must be an image reference such as registry.example.com/team/tool:1.2";
        return false;
    }
    /* the local store's transports (docs/images.md): an OCI layout or an
     * archive on this host, as podman names them */
    static const char *const transports[] = {"oci:", "oci-archive:", "docker-archive:"};
    for (size_t i = 0; i < STK_ARRAY_SIZE(transports); i++)
        if (stk_startswith(s, transports[i])) {
            const char *path = s + strlen(transports[i]);
            bool ok = path[0] == '/';
            for (const char *p = path; ok && *p; p++)
                ok = (unsigned char)*p > ' ' && *p != 0x7f;
            if (!ok)
                *why = "must name an absolute path after the transport (oci:/srv/img:tag)";
            return ok;
        }
    memcpy(buf, s, n + 1);
    char *digest = strchr(buf, '@');
    if (digest) {
        *digest++ = '\0';
        const char *hex = stk_startswith(digest, "sha256:") ? digest + 7 : NULL;
        bool ok = hex && strlen(hex) == 64;
        for (const char *p = hex; ok && *p; p++)
            ok = (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f');
        if (!ok) {
            *why = "digest must be sha256: followed by 64 lowercase hex digits";
            return false;
        }
    }
    char *slash = strrchr(buf, '/');
    char *colon = strrchr(slash ? slash : buf, ':');
    if (colon) {
        *colon++ = '\0';
        size_t tl = strlen(colon);
        bool ok = tl > 0 && tl <= 128 && (is_alnum(colon[0]) || colon[0] == '_');
        for (size_t i = 0; ok && i < tl; i++)
            ok = is_alnum(colon[i]) || colon[i] == '_' || colon[i] == '.' || colon[i] == '-';
        if (!ok) {
            *why = "tag must be 1-128 of [A-Za-z0-9_.-], not starting with '.' or '-'";
            return false;
        }
    }
    char *comp = buf;
    bool first = true;
    while (comp) {
        char *next = strchr(comp, '/');
        if (next)
            *next++ = '\0';
        /* The first component is a registry host when followed by more and it
         * looks like one (has '.' or ':' or is localhost). */
        bool host =
            first && next && (strchr(comp, '.') || strchr(comp, ':') || !strcmp(comp, "localhost"));
        if (host) {
            char *port = strchr(comp, ':');
            if (port) {
                *port++ = '\0';
                size_t pl = strlen(port);
                bool ok = pl > 0 && pl <= 5;
                for (size_t i = 0; ok && i < pl; i++)
                    ok = port[i] >= '0' && port[i] <= '9';
                if (!ok) {
                    *why = "registry port must be a number";
                    return false;
                }
            }
            size_t hl = strlen(comp);
            bool ok = hl > 0 && is_alnum(comp[0]) && is_alnum(comp[hl - 1]);
            for (size_t i = 0; ok && i < hl; i++)
                ok = is_alnum(comp[i]) || comp[i] == '.' || comp[i] == '-';
            if (!ok) {
                *why = "registry host is not a valid host name";
                return false;
            }
        } else {
            size_t cl = strlen(comp);
            bool ok = cl > 0 && is_lower_alnum(comp[0]) && is_lower_alnum(comp[cl - 1]);
            for (size_t i = 0; ok && i < cl; i++) {
                char c = comp[i];
                if (is_lower_alnum(c))
                    continue;
                /* separators: '.', '_', '__', '-'+ between alphanumerics */
                ok = (c == '.' || c == '_' || c == '-') && i + 1 < cl;
                if (ok && c == '.')
                    ok = is_lower_alnum(comp[i + 1]);
            }
            if (!ok) {
                *why = "repository path components must be lowercase letters, digits and "
                       "single separators (. _ -)";
                return false;
            }
        }
        first = false;
        comp = next;
    }
    return true;
}

static bool url(const char *s, const char **why)
{
    const char *rest;
    if (stk_startswith(s, "https://"))
        rest = s + 8;
    else if (stk_startswith(s, "http://"))
        rest = s + 7;
    else {
        *why = "must be an http:// or https:// URL";
        return false;
    }
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f) {
            *why = "must not contain spaces or control characters";
            return false;
        }
    size_t alen = strcspn(rest, "/?#");
    if (alen == 0) {
        *why = "URL has no host";
        return false;
    }
    if (memchr(rest, '@', alen)) {
        *why = "credentials in a URL are never accepted: name them in credential, and the "
               "egress proxy adds them";
        return false;
    }
    return true;
}

static bool header_name(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!is_alnum(*s) && !strchr("!#$%&'*+-.^_`|~", *s))
            return false;
    return true;
}

static const char *const capability_names[] = {
    "AUDIT_CONTROL",   "AUDIT_READ",   "AUDIT_WRITE",
    "BLOCK_SUSPEND",   "BPF",          "CHECKPOINT_RESTORE",
    "CHOWN",           "DAC_OVERRIDE", "DAC_READ_SEARCH",
    "FOWNER",          "FSETID",       "IPC_LOCK",
    "IPC_OWNER",       "KILL",         "LEASE",
    "LINUX_IMMUTABLE", "MAC_ADMIN",    "MAC_OVERRIDE",
    "MKNOD",           "NET_ADMIN",    "NET_BIND_SERVICE",
    "NET_BROADCAST",   "NET_RAW",      "PERFMON",
    "SETFCAP",         "SETGID",       "SETPCAP",
    "SETUID",          "SYSLOG",       "SYS_ADMIN",
    "SYS_BOOT",        "SYS_CHROOT",   "SYS_MODULE",
    "SYS_NICE",        "SYS_PACCT",    "SYS_PTRACE",
    "SYS_RAWIO",       "SYS_RESOURCE", "SYS_TIME",
    "SYS_TTY_CONFIG",  "WAKE_ALARM",
};

bool stk_capability_known(const char *name)
{
    return stk_enum_lookup(capability_names, STK_ARRAY_SIZE(capability_names), name) >= 0;
}

bool stk_env_name_valid(const char *s)
{
    const char *why;
    return strlen(s) <= 256 && stk_strfmt_check(STK_FMT_ENV_NAME, s, &why);
}

bool stk_dns_label_valid(const char *s)
{
    return dns_label(s, strlen(s));
}

bool stk_dns_subdomain_valid(const char *s)
{
    return dns_subdomain(s, strlen(s));
}

static const struct {
    uint32_t max_len;
    const char *doc;
} formats[_STK_FMT_N] = {
    [STK_FMT_TEXT] = {4096, "text"},
    [STK_FMT_LINE] = {1024, "one line of text"},
    [STK_FMT_DNS_LABEL] = {63, "DNS-1123 label"},
    [STK_FMT_DNS_SUBDOMAIN] = {253, "DNS-1123 subdomain"},
    [STK_FMT_QUALIFIED] = {317, "qualified name ([prefix/]name)"},
    [STK_FMT_LABEL_VALUE] = {63, "label value"},
    [STK_FMT_ABS_PATH] = {4096, "absolute path"},
    [STK_FMT_ROOTFS] = {4096, "\"host\" or absolute path"},
    [STK_FMT_IMAGE] = {512, "image reference"},
    [STK_FMT_ENV_NAME] = {256, "environment variable name"},
    [STK_FMT_CAPABILITY] = {32, "capability name"},
    [STK_FMT_URL] = {2048, "http(s) URL"},
    [STK_FMT_HEADER] = {128, "HTTP header name"},
    [STK_FMT_INJECT_FORMAT] = {256, "template with {value}"},
    [STK_FMT_API_VERSION] = {64, STK_API_VERSION},
    [STK_FMT_SHA256_HEX] = {64, "SHA-256, 64 lowercase hex digits"},
    [STK_FMT_HTTPS_URL] = {2048, "https URL"},
    [STK_FMT_GLOB] = {253, "glob pattern (fnmatch)"},
    [STK_FMT_ENDPOINT] = {64, "numeric ADDR:PORT[/PROTO]"},
    [STK_FMT_ALLOW_HOST] = {STK_ALLOW_HOST_MAX, "host name or *.suffix, optional :PORT (443)"},
};

uint32_t stk_strfmt_max_len(enum stk_strfmt fmt)
{
    return formats[fmt].max_len;
}

const char *stk_strfmt_doc(enum stk_strfmt fmt)
{
    return formats[fmt].doc;
}

bool stk_strfmt_check(enum stk_strfmt fmt, const char *s, const char **ret_why)
{
    const char *why = NULL;
    size_t n = strlen(s);

    switch (fmt) {
    case STK_FMT_TEXT:
        return true;
    case STK_FMT_LINE:
        if (has_control(s))
            why = "must be one line without control characters";
        break;
    case STK_FMT_DNS_LABEL:
        if (!dns_label(s, n))
            why = "must be a DNS-1123 label: at most 63 lowercase letters, digits and '-', "
                  "starting and ending with a letter or digit";
        break;
    case STK_FMT_DNS_SUBDOMAIN:
        if (!dns_subdomain(s, n))
            why = "must be a DNS-1123 subdomain: lowercase letters, digits, '-' and '.', at most "
                  "253 characters";
        break;
    case STK_FMT_QUALIFIED: {
        const char *slash = strchr(s, '/');
        if (slash
                ? !dns_subdomain(s, (size_t)(slash - s)) || !k8s_name(slash + 1, strlen(slash + 1))
                : !k8s_name(s, n))
            why = "must be a qualified name: an optional DNS subdomain prefix and '/', then at "
                  "most 63 of [A-Za-z0-9-_.] starting and ending with a letter or digit";
        break;
    }
    case STK_FMT_LABEL_VALUE:
        if (n && !k8s_name(s, n))
            why = "must be empty or at most 63 of [A-Za-z0-9-_.], starting and ending with a "
                  "letter or digit";
        break;
    case STK_FMT_ABS_PATH:
        (void)abs_path(s, &why);
        break;
    case STK_FMT_ROOTFS:
        (void)rootfs(s, &why);
        break;
    case STK_FMT_IMAGE:
        (void)image_ref(s, &why);
        break;
    case STK_FMT_ENV_NAME: {
        bool ok = n > 0 && !(s[0] >= '0' && s[0] <= '9');
        for (size_t i = 0; ok && i < n; i++)
            ok = is_alnum(s[i]) || s[i] == '_' || s[i] == '-' || s[i] == '.';
        if (!ok)
            why = "must consist of letters, digits, '_', '-' and '.', and not start with a digit";
        break;
    }
    case STK_FMT_CAPABILITY:
        if (stk_startswith(s, "CAP_"))
            why = "write capabilities without the CAP_ prefix, as Kubernetes does (e.g. "
                  "NET_BIND_SERVICE)";
        else if (!strcmp(s, "ALL"))
            why = "ALL is never granted; name each capability";
        else if (!stk_capability_known(s))
            why = "is not a Linux capability (uppercase, e.g. NET_BIND_SERVICE, SYS_PTRACE)";
        break;
    case STK_FMT_URL:
        (void)url(s, &why);
        break;
    case STK_FMT_HEADER:
        if (!header_name(s))
            why = "must be an HTTP header name (letters, digits and !#$%&'*+-.^_`|~)";
        break;
    case STK_FMT_INJECT_FORMAT: {
        const char *first = strstr(s, "{value}");
        if (has_control(s))
            why = "must be one line without control characters";
        else if (!first || strstr(first + 1, "{value}"))
            why = "must contain {value} exactly once, e.g. \"Bearer {value}\"";
        break;
    }
    case STK_FMT_API_VERSION:
        if (strcmp(s, STK_API_VERSION) != 0)
            why = "must be " STK_API_VERSION;
        break;
    case STK_FMT_SHA256_HEX:
        if (n != 64 || strspn(s, "0123456789abcdef") != 64)
            why = "must be a SHA-256 digest: 64 lowercase hex digits (sha256sum of the token)";
        break;
    case STK_FMT_HTTPS_URL:
        if (!stk_startswith(s, "https://"))
            why = "must be an https:// URL";
        else
            (void)url(s, &why);
        break;
    case STK_FMT_GLOB:
        if (n == 0 || has_control(s))
            why = "must be a non-empty pattern on one line (*, ? and [...] match as in a shell)";
        break;
    case STK_FMT_ENDPOINT: {
        struct stk_endpoint e;
        (void)stk_endpoint_parse(s, &e, &why);
        break;
    }
    case STK_FMT_ALLOW_HOST: {
        struct stk_allow_host h;
        (void)stk_allow_host_parse(s, &h, &why);
        break;
    }
    case _STK_FMT_N:
        break;
    }
    if (why) {
        *ret_why = why;
        return false;
    }
    return true;
}

/* Splits "ADDR:PORT" or "[V6]:PORT" in buf; returns the port text or NULL. */
static char *endpoint_split(char *buf, char **ret_addr, const char **why)
{
    if (buf[0] == '[') {
        char *close = strchr(buf, ']');
        if (!close || close[1] != ':') {
            *why = "must be written [ADDR]:PORT for an IPv6 address";
            return NULL;
        }
        *close = '\0';
        *ret_addr = buf + 1;
        return close + 2;
    }
    char *colon = strrchr(buf, ':');
    if (!colon || colon != strchr(buf, ':')) {
        *why = colon ? "must be written [ADDR]:PORT for an IPv6 address"
                     : "must name a port: ADDR:PORT";
        return NULL;
    }
    *colon = '\0';
    *ret_addr = buf;
    return colon + 1;
}

bool stk_endpoint_parse(const char *s, struct stk_endpoint *ret, const char **ret_why)
{
    char buf[80];
    const char *why = NULL;
    if (strlen(s) >= sizeof(buf)) {
        *ret_why = "must be at most 79 characters";
        return false;
    }
    strcpy(buf, s);
    struct stk_endpoint e = {.protocol = STK_PROTO_TCP};
    char *proto = strchr(buf, '/');
    if (proto) {
        *proto++ = '\0';
        static const char *const lower[_STK_PROTO_N] = {"tcp", "udp", "sctp"};
        int p = stk_enum_lookup(lower, _STK_PROTO_N, proto);
        if (p < 0)
            p = stk_enum_lookup(stk_protocol_names, _STK_PROTO_N, proto);
        if (p < 0) {
            *ret_why = "must name tcp, udp or sctp after '/'";
            return false;
        }
        e.protocol = (enum stk_protocol)p;
    }
    char *addr = NULL, *port = endpoint_split(buf, &addr, &why);
    if (!port) {
        *ret_why = why;
        return false;
    }
    char *end = NULL;
    long v = strtol(port, &end, 10);
    if (!*port || *end || v < 1 || v > 65535) {
        *ret_why = "must name a port from 1 to 65535";
        return false;
    }
    e.port = (uint16_t)v;
    if (stk_addr_parse(addr, &e.addr) < 0) {
        *ret_why = "must be a numeric IPv4 or IPv6 address (NetworkPolicy is IP-only; host names "
                   "belong to the egress proxy)";
        return false;
    }
    *ret = e;
    return true;
}

/* ---- allowHosts: NAME[:PORT] or *.SUFFIX[:PORT] -------------------------------- */

bool stk_allow_host_parse(const char *s, struct stk_allow_host *ret, const char **ret_why)
{
    struct stk_allow_host h = {.port = 443};
    const char *colon = strchr(s, ':');
    size_t n = colon ? (size_t)(colon - s) : strlen(s);
    if (colon) {
        char *end;
        errno = 0;
        unsigned long p = strtoul(colon + 1, &end, 10);
        if (!colon[1] || *end || errno || p < 1 || p > 65535 || colon[1] == '0' ||
            colon[1] == '+' || colon[1] == '-' || colon[1] == ' ') {
            *ret_why = "must end in :PORT with PORT in 1..65535 (443 when omitted)";
            return false;
        }
        h.port = (uint16_t)p;
    }
    if (n >= 2 && s[0] == '*' && s[1] == '.') {
        h.wildcard = true;
        s += 2;
        n -= 2;
    }
    /* at least two labels: a wildcard over a top-level domain ("*.com") or
     * a single-label name would allow far more than anyone means */
    if (n >= sizeof(h.name) || !dns_subdomain(s, n) || !memchr(s, '.', n)) {
        *ret_why = "must be a lowercase DNS name of two or more labels, or *. and such a name "
                   "(e.g. pypi.org:443, *.githubusercontent.com); no IP addresses, no other "
                   "wildcards";
        return false;
    }
    bool numeric = true;
    for (size_t i = 0; i < n; i++)
        if (!(s[i] >= '0' && s[i] <= '9') && s[i] != '.')
            numeric = false;
    if (numeric) {
        *ret_why = "names a host, not an address: allow addresses with spec.network.egress";
        return false;
    }
    memcpy(h.name, s, n);
    h.name[n] = '\0';
    *ret = h;
    return true;
}

bool stk_allow_host_match(const struct stk_allow_host *h, const char *name, uint16_t port)
{
    if (port != h->port)
        return false;
    if (!h->wildcard)
        return !strcmp(name, h->name);
    size_t n = strlen(name), m = strlen(h->name);
    /* *.example.com matches a.example.com and a.b.example.com, never
     * example.com itself */
    return n > m + 1 && name[n - m - 1] == '.' && !strcmp(name + n - m, h->name);
}
