/* SPDX-License-Identifier: Apache-2.0 */
/* Kubernetes quantities and Go-style durations, parsed exactly (no floats). */
#include "internal.h"

#include <errno.h>
#include <string.h>

/* Results stay far below INT64_MAX so sums and unit conversions downstream
 * cannot overflow. Field limits are much smaller still. */
#define VALUE_LIMIT ((__int128)1 << 62)

struct decimal {
    uint64_t mantissa;
    int exp10; /* value = mantissa * 10^exp10 */
};

/* Reads [0-9]*[.[0-9]*] with at least one digit; returns characters used,
 * 0 when there is no number, -1 when it has too many significant digits. */
static int decimal_read(const char *s, struct decimal *ret)
{
    struct decimal d = {0, 0};
    int i = 0, digits = 0, significant = 0;
    bool frac = false;
    for (;; i++) {
        char c = s[i];
        if (c == '.' && !frac) {
            frac = true;
            continue;
        }
        if (c < '0' || c > '9')
            break;
        digits++;
        if (frac)
            d.exp10--;
        if (significant == 0 && c == '0') {
            continue;
        }
        if (++significant > 18)
            return -1;
        d.mantissa = d.mantissa * 10 + (uint64_t)(c - '0');
    }
    if (!digits)
        return 0;
    *ret = d;
    return i;
}

/* mantissa * 10^exp10 * 2^shift, exactly, as an integer within VALUE_LIMIT. */
static int scale(struct decimal d, int shift, int64_t *ret, const char **why, const char *inexact)
{
    __int128 v = d.mantissa;
    int e = d.exp10;
    for (; shift > 0; shift--) {
        v <<= 1;
        if (v > VALUE_LIMIT)
            goto too_large;
    }
    for (; e > 0; e--) {
        v *= 10;
        if (v > VALUE_LIMIT)
            goto too_large;
    }
    for (; e < 0 && v != 0; e++) {
        if (v % 10) {
            *why = inexact;
            return -EINVAL;
        }
        v /= 10;
    }
    *ret = (int64_t)v;
    return 0;
too_large:
    *why = "value is too large";
    return -ERANGE;
}

int stk_quantity_parse(const char *s, enum stk_qty_unit unit, int64_t *ret, const char **ret_why)
{
    static const struct {
        const char *suffix;
        int exp10;
        int shift;
    } suffixes[] = {
        {"", 0, 0},    {"n", -9, 0},  {"u", -6, 0},  {"m", -3, 0},  {"k", 3, 0},   {"M", 6, 0},
        {"G", 9, 0},   {"T", 12, 0},  {"P", 15, 0},  {"E", 18, 0},  {"Ki", 0, 10}, {"Mi", 0, 20},
        {"Gi", 0, 30}, {"Ti", 0, 40}, {"Pi", 0, 50}, {"Ei", 0, 60},
    };
    const char *why = NULL;
    struct decimal d;
    int r;

    if (*s == '-') {
        *ret_why = "must not be negative";
        return -EINVAL;
    }
    if (*s == '+')
        s++;
    int used = decimal_read(s, &d);
    if (used < 0) {
        *ret_why = "too many significant digits (at most 18)";
        return -EINVAL;
    }
    if (used == 0) {
        *ret_why = "expected a number with an optional suffix, e.g. 500m, 2, 512Mi, 1Gi";
        return -EINVAL;
    }
    const char *suffix = s + used;
    int exp10 = 0, shift = 0;
    bool found = false;
    for (size_t i = 0; i < STK_ARRAY_SIZE(suffixes); i++)
        if (!strcmp(suffix, suffixes[i].suffix)) {
            exp10 = suffixes[i].exp10;
            shift = suffixes[i].shift;
            found = true;
            break;
        }
    if (!found && (suffix[0] == 'e' || suffix[0] == 'E')) {
        const char *p = suffix + 1;
        int sign = 1, e = 0, nd = 0;
        if (*p == '+' || *p == '-')
            sign = *p++ == '-' ? -1 : 1;
        for (; *p >= '0' && *p <= '9' && nd < 4; p++, nd++)
            e = e * 10 + (*p - '0');
        if (nd > 0 && *p == '\0') {
            exp10 = sign * e;
            found = true;
        }
    }
    if (!found) {
        *ret_why = "unknown suffix (use m, k, M, G, T, P, E or Ki, Mi, Gi, Ti, Pi, Ei)";
        return -EINVAL;
    }
    d.exp10 += exp10 + (unit == STK_QTY_MILLI ? 3 : 0);
    if (d.exp10 > 40) {
        *ret_why = "value is too large";
        return -ERANGE;
    }
    r = scale(d, shift, ret, &why,
              unit == STK_QTY_MILLI ? "finer than 1m (a thousandth of a CPU)"
                                    : "not a whole number of bytes");
    if (r < 0)
        *ret_why = why;
    return r;
}

int stk_duration_parse(const char *s, int64_t *ret_ms, const char **ret_why)
{
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
    __int128 total = 0;

    if (!*s) {
        *ret_why = "expected a duration such as 90s, 10m, 1h30m";
        return -EINVAL;
    }
    while (*s) {
        struct decimal d;
        int used = decimal_read(s, &d);
        if (used <= 0) {
            *ret_why = used < 0 ? "too many significant digits"
                                : "expected a duration such as 90s, 10m, 1h30m (units ms, s, m, "
                                  "h, d)";
            return -EINVAL;
        }
        s += used;
        size_t ulen = 0;
        while (s[ulen] >= 'a' && s[ulen] <= 'z')
            ulen++;
        int64_t mult = 0;
        for (size_t i = 0; i < STK_ARRAY_SIZE(units); i++)
            if (strlen(units[i].unit) == ulen && !strncmp(s, units[i].unit, ulen))
                mult = units[i].ms;
        if (!mult) {
            *ret_why = ulen ? "unknown unit (use ms, s, m, h or d)"
                            : "a duration needs a unit, e.g. 90s or 10m";
            return -EINVAL;
        }
        s += ulen;
        int64_t part;
        const char *why = NULL;
        struct decimal scaled = d;
        int shift = 0;
        /* part = d * mult, exactly */
        __int128 m = mult;
        while (m % 10 == 0) {
            m /= 10;
            scaled.exp10++;
        }
        if (scale(scaled, shift, &part, &why, "finer than a millisecond") < 0) {
            *ret_why = why;
            return -EINVAL;
        }
        total += (__int128)part * m;
        if (total > VALUE_LIMIT) {
            *ret_why = "value is too large";
            return -ERANGE;
        }
    }
    *ret_ms = (int64_t)total;
    return 0;
}

void stk_bytes_format(int64_t bytes, char *buf, size_t n)
{
    static const char *const units[] = {"Ki", "Mi", "Gi", "Ti", "Pi", "Ei"};
    int u = -1;
    int64_t v = bytes;
    while (v != 0 && v % 1024 == 0 && u < 5) {
        v /= 1024;
        u++;
    }
    if (u < 0)
        snprintf(buf, n, "%lld", (long long)bytes);
    else
        snprintf(buf, n, "%lld%s", (long long)v, units[u]);
}

void stk_cpu_format(int64_t milli, char *buf, size_t n)
{
    if (milli % 1000 == 0)
        snprintf(buf, n, "%lld", (long long)(milli / 1000));
    else
        snprintf(buf, n, "%lldm", (long long)milli);
}

void stk_duration_format(int64_t ms, char *buf, size_t n)
{
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1}};
    size_t off = 0;
    if (ms == 0) {
        snprintf(buf, n, "0s");
        return;
    }
    buf[0] = '\0';
    for (size_t i = 0; i < STK_ARRAY_SIZE(units) && off < n; i++) {
        if (ms >= units[i].ms) {
            int w = snprintf(buf + off, n - off, "%lld%s", (long long)(ms / units[i].ms),
                             units[i].unit);
            if (w < 0)
                return;
            off += (size_t)w;
            ms %= units[i].ms;
        }
    }
}

void stk_num_format(enum stk_ftype t, int64_t v, char *buf, size_t n)
{
    switch (t) {
    case STK_F_CPU:
        stk_cpu_format(v, buf, n);
        return;
    case STK_F_BYTES:
        stk_bytes_format(v, buf, n);
        return;
    case STK_F_DURATION:
        stk_duration_format(v, buf, n);
        return;
    case STK_F_INT:
    case STK_F_STRING:
    case STK_F_BOOL:
    case STK_F_ENUM:
    case STK_F_CIDR:
    case STK_F_MAP:
    case STK_F_OBJECT:
    case STK_F_LIST:
    case STK_F_REJECT:
        snprintf(buf, n, "%lld", (long long)v);
        return;
    }
}
