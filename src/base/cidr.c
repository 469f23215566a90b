/* SPDX-License-Identifier: Apache-2.0 */
#include "base.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

static unsigned family_bits(uint8_t family)
{
    return family == STK_FAMILY_V4 ? 32 : 128;
}

static int addr_parse(const char *s, size_t len, struct stk_cidr *c)
{
    char tmp[INET6_ADDRSTRLEN + 1];
    if (len == 0 || len >= sizeof(tmp))
        return -EINVAL;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    memset(c, 0, sizeof(*c));
    if (memchr(tmp, ':', len)) {
        if (inet_pton(AF_INET6, tmp, c->addr) != 1)
            return -EINVAL;
        c->family = STK_FAMILY_V6;
    } else {
        /* inet_pton(AF_INET) accepts only dotted quads: no octal, no short forms. */
        if (inet_pton(AF_INET, tmp, c->addr) != 1)
            return -EINVAL;
        c->family = STK_FAMILY_V4;
    }
    c->prefix = (uint8_t)family_bits(c->family);
    return 0;
}

int stk_addr_parse(const char *s, struct stk_cidr *ret)
{
    struct stk_cidr c;
    int r = addr_parse(s, strlen(s), &c);
    if (r < 0)
        return r;
    *ret = c;
    return 0;
}

static bool host_bits_set(const struct stk_cidr *c)
{
    unsigned bits = family_bits(c->family);
    for (unsigned i = c->prefix; i < bits; i++)
        if (c->addr[i / 8] & (0x80 >> (i % 8)))
            return true;
    return false;
}

void stk_cidr_normalise(struct stk_cidr *c)
{
    unsigned bits = family_bits(c->family);
    for (unsigned i = c->prefix; i < bits; i++)
        c->addr[i / 8] &= (uint8_t) ~(0x80 >> (i % 8));
}

int stk_cidr_parse(const char *s, struct stk_cidr *ret, const char **ret_why)
{
    const char *why = NULL;
    const char *slash = strchr(s, '/');
    struct stk_cidr c;

    if (!slash) {
        why = "expected ADDRESS/PREFIX (for one address use /32 or /128)";
        goto fail;
    }
    if (addr_parse(s, (size_t)(slash - s), &c) < 0) {
        why = "not a valid IPv4 or IPv6 address before '/'";
        goto fail;
    }
    const char *p = slash + 1;
    unsigned prefix = 0;
    if (!*p || strlen(p) > 3) {
        why = "prefix length must be a decimal number";
        goto fail;
    }
    for (; *p; p++) {
        if (*p < '0' || *p > '9') {
            why = "prefix length must be a decimal number";
            goto fail;
        }
        prefix = prefix * 10 + (unsigned)(*p - '0');
    }
    if ((slash[1] == '0' && slash[2]) || prefix > family_bits(c.family)) {
        why = c.family == STK_FAMILY_V4 ? "IPv4 prefix length must be 0..32 without leading zeros"
                                        : "IPv6 prefix length must be 0..128 without leading zeros";
        goto fail;
    }
    c.prefix = (uint8_t)prefix;
    if (host_bits_set(&c)) {
        why = "host bits are set (the address is not the first of its network)";
        goto fail;
    }
    *ret = c;
    return 0;
fail:
    if (ret_why)
        *ret_why = why;
    return -EINVAL;
}

const char *stk_cidr_format(const struct stk_cidr *c, char buf[STK_CIDR_STRLEN])
{
    char a[INET6_ADDRSTRLEN];
    if (!inet_ntop(c->family == STK_FAMILY_V4 ? AF_INET : AF_INET6, c->addr, a, sizeof(a)))
        snprintf(a, sizeof(a), "?");
    snprintf(buf, STK_CIDR_STRLEN, "%s/%u", a, c->prefix);
    return buf;
}

bool stk_cidr_contains(const struct stk_cidr *outer, const struct stk_cidr *inner)
{
    if (outer->family != inner->family || inner->prefix < outer->prefix)
        return false;
    unsigned full = outer->prefix / 8, rest = outer->prefix % 8;
    if (memcmp(outer->addr, inner->addr, full) != 0)
        return false;
    if (rest) {
        uint8_t mask = (uint8_t)(0xff << (8 - rest));
        if ((outer->addr[full] & mask) != (inner->addr[full] & mask))
            return false;
    }
    return true;
}

bool stk_cidr_equal(const struct stk_cidr *a, const struct stk_cidr *b)
{
    return a->family == b->family && a->prefix == b->prefix &&
           memcmp(a->addr, b->addr, a->family == STK_FAMILY_V4 ? 4 : 16) == 0;
}
