/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The proxy's decision records as data: the budget both sides apply and
 * the parser of a record read back from where the proxy wrote it (the
 * proxy Pod's log on Kubernetes). See record.h.
 */
#include "proxy/record.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

/* ---- the budget ------------------------------------------------------------------- */

bool stk_proxy_budget_take(struct stk_proxy_budget *b, int64_t sec, uint64_t *ret_dropped)
{
    *ret_dropped = 0;
    if (sec != b->win) {
        b->win = sec;
        b->in_win = 0;
        *ret_dropped = stk_proxy_budget_flush(b);
    }
    if (b->in_win >= b->limit) {
        b->dropped++;
        return false;
    }
    b->in_win++;
    return true;
}

uint64_t stk_proxy_budget_flush(struct stk_proxy_budget *b)
{
    uint64_t n = b->dropped;
    b->dropped = 0;
    return n;
}

json_t *stk_proxy_suppressed_record(const char *sandbox, uint64_t dropped)
{
    json_t *o = json_pack("{s:s,s:s,s:I}", "sandbox", sandbox, "decision", "suppressed", "dropped",
                          (json_int_t)dropped);
    if (!o)
        stk_oom();
    return o;
}

/* ---- reading a record back ------------------------------------------------------------ */

enum syntax {
    S_DECISION, /* one of decisions[] */
    S_KIND,     /* connect | http */
    S_TOKEN,    /* an HTTP method */
    S_TEXT,     /* printable ASCII */
    S_LABEL,    /* a binding's name: [a-z0-9-] */
    S_PATH,     /* printable ASCII from '/' */
    S_ADDRESS,  /* an IPv4 or IPv6 address */
    S_INT,
};

static const struct field {
    const char *name;
    enum syntax syntax;
    long long max; /* S_INT: the largest value (the smallest is min); else the longest */
    long long min;
} fields[] = {
    {"kind", S_KIND, 7, 0},
    {"method", S_TOKEN, 15, 0},
    {"host", S_TEXT, 253, 0},
    {"port", S_INT, 65535, 1},
    {"binding", S_LABEL, 63, 0},
    {"path", S_PATH, STK_PROXY_RECORD_MAX, 0},
    {"rule", S_TEXT, 340, 0},
    {"address", S_ADDRESS, 45, 0},
    {"peer", S_TEXT, 45, 0},
    {"status", S_INT, 999, 100},
    {"strippedHeaders", S_INT, 100000, 0},
    {"reason", S_TEXT, 512, 0},
    {"dropped", S_INT, INT64_MAX, 0},
};

static const char *const decisions[] = {"allowed", "denied", "failed", "binding", "suppressed"};

/* No control character, C0 or C1 (jansson has checked the UTF-8): a record
 * may be printed on a terminal by `stockade audit`. */
static bool printable(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f || (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f))
            return false;
    return true;
}

static bool token(const char *s)
{
    for (; *s; s++)
        if (!(*s >= 'A' && *s <= 'Z') && !(*s >= 'a' && *s <= 'z') && !(*s >= '0' && *s <= '9') &&
            !strchr("!#$%&'*+-.^_`|~", *s))
            return false;
    return true;
}

static bool label(const char *s)
{
    for (; *s; s++)
        if (!(*s >= 'a' && *s <= 'z') && !(*s >= '0' && *s <= '9') && *s != '-')
            return false;
    return true;
}

static bool address(const char *s)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

static bool one_of(const char *s, const char *const *set, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(s, set[i]))
            return true;
    return false;
}

/* Whether v is a valid value of f. */
static bool valid(const struct field *f, const json_t *v)
{
    if (f->syntax == S_INT) {
        if (!json_is_integer(v))
            return false;
        json_int_t n = json_integer_value(v);
        return n >= f->min && n <= f->max;
    }
    const char *s = json_string_value(v);
    /* a string holding a NUL is shorter than its length: refused */
    if (!s || strlen(s) != json_string_length(v) || !*s || (long long)strlen(s) > f->max)
        return false;
    static const char *const kinds[] = {"connect", "http"};
    switch (f->syntax) {
    case S_DECISION:
        return one_of(s, decisions, STK_ARRAY_SIZE(decisions));
    case S_KIND:
        return one_of(s, kinds, STK_ARRAY_SIZE(kinds));
    case S_TOKEN:
        return token(s);
    case S_TEXT:
        return printable(s);
    case S_LABEL:
        return label(s);
    case S_PATH:
        return *s == '/' && printable(s);
    case S_ADDRESS:
        return address(s);
    case S_INT:
        break;
    }
    return false;
}

int stk_proxy_record_parse(const char *text, size_t len, const char *sandbox, const char *id,
                           json_t **ret, const char **ret_why)
{
    *ret_why = NULL;
    if (len >= STK_PROXY_RECORD_MAX) {
        *ret_why = "longer than a record";
        return -EINVAL;
    }
    json_auto_t *in = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(in)) {
        *ret_why = in ? "not a JSON object" : "not JSON";
        return -EINVAL;
    }
    const char *sb = json_string_value(json_object_get(in, "sandbox"));
    if (!sb || strcmp(sb, sandbox)) {
        *ret_why = "not a record of this sandbox";
        return -EINVAL;
    }
    static const struct field decision = {"decision", S_DECISION, 10, 0};
    const json_t *d = json_object_get(in, "decision");
    if (!d || !valid(&decision, d)) {
        *ret_why = "no decision, or one the proxy does not make";
        return -EINVAL;
    }
    bool suppressed = !strcmp(json_string_value(d), "suppressed");
    json_t *out = json_pack("{s:s,s:O}", "sandbox", id, "decision", d);
    if (!out)
        stk_oom();
    for (size_t i = 0; i < STK_ARRAY_SIZE(fields); i++) {
        const json_t *v = json_object_get(in, fields[i].name);
        if (!v)
            continue;
        /* `dropped` belongs to a suppressed record alone, and only it */
        if (!valid(&fields[i], v) || suppressed != !strcmp(fields[i].name, "dropped")) {
            json_decref(out);
            *ret_why = "a field of the wrong type, syntax or size";
            return -EINVAL;
        }
        json_object_set_new(out, fields[i].name, json_deep_copy(v));
    }
    if (suppressed && !json_object_get(out, "dropped")) {
        json_decref(out);
        *ret_why = "a suppressed record without its count";
        return -EINVAL;
    }
    *ret = out;
    return 0;
}
