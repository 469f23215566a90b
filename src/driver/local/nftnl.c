/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The sandbox's rules as one nf_tables batch, built here (see nftnl.h).
 * Encodings follow what nft 1.0.6 sends for the same text, checked with
 * `nft --debug=mnl` and `nft --debug=netlink list ruleset`: dependencies
 * (meta nfproto / meta protocol / ether type, meta l4proto) once per rule,
 * byte-aligned prefixes matched on their bytes alone, other prefixes
 * masked, a one-element anonymous set compared directly, interval sets
 * sent as sorted, merged [start, end) pairs, and the anonymous sets'
 * user data (key byte order, typeof) so that `nft list` prints them alike.
 */
#include "driver/local/nftnl.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <endian.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <net/if.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

/* Bounds: a rule's except list holds at most a spec's 32 excepts, the
 * operator's 256 blacklistIPs, 16 podCIDRs, the service CIDR and the pool;
 * with names of at most MAX_NAME characters, no message outgrows MSG_ROOM
 * (at most 2 * MAX_ELEMS + 1 interval keys of 36 bytes; a line of at most
 * MAX_TOKENS tokens of elements, each at most 128 bytes per 4 tokens). */
#define MSG_ROOM   65536
#define MAX_TOKENS 1024
#define MAX_OPS    32
#define MAX_ELEMS  512
#define MAX_NAME   64

static unsigned long dump_requests;

unsigned long stk_nftnl_dump_requests(void)
{
    return dump_requests;
}

/* ---- the batch ------------------------------------------------------------- */

struct batch {
    struct stk_buf *out;
    uint32_t seq;
    uint32_t set_id;
    size_t n_msgs;
};

static struct nlmsghdr *msg_start(struct batch *b, uint16_t type, uint16_t flags, int family)
{
    if (b->out->cap - b->out->len < MSG_ROOM + 16) {
        size_t cap = b->out->cap ? b->out->cap * 2 : 65536;
        while (cap - b->out->len < MSG_ROOM + 16)
            cap *= 2;
        b->out->data = stk_xrealloc(b->out->data, cap);
        b->out->cap = cap;
    }
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(b->out->data + b->out->len);
    nlh->nlmsg_type = type;
    nlh->nlmsg_flags = NLM_F_REQUEST | flags;
    nlh->nlmsg_seq = b->seq++;
    struct nfgenmsg *g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
    g->nfgen_family = (uint8_t)family;
    g->version = NFNETLINK_V0;
    g->res_id = 0;
    return nlh;
}

static void msg_end(struct batch *b, struct nlmsghdr *nlh)
{
    b->out->len += nlh->nlmsg_len;
    b->out->data[b->out->len] = '\0';
}

static struct nlmsghdr *nft_msg(struct batch *b, int type, uint16_t flags, int family,
                                const char *table)
{
    struct nlmsghdr *nlh =
        msg_start(b, (uint16_t)((NFNL_SUBSYS_NFTABLES << 8) | type), flags | NLM_F_ACK, family);
    mnl_attr_put_strz(nlh, NFTA_TABLE_NAME, table); /* attribute 1 in every message used here */
    b->n_msgs++;
    return nlh;
}

static void batch_mark(struct batch *b, uint16_t type)
{
    struct nlmsghdr *nlh = msg_start(b, type, 0, AF_UNSPEC);
    ((struct nfgenmsg *)mnl_nlmsg_get_payload(nlh))->res_id = htons(NFNL_SUBSYS_NFTABLES);
    msg_end(b, nlh);
}

/* ---- tokens ---------------------------------------------------------------- */

struct line {
    char *tok[MAX_TOKENS];
    size_t n;
};

/* Splits on blanks; "quoted strings" stay whole (with their quotes); a
 * trailing ',' or ';' is cut from the others. */
static int tokenize(char *s, struct line *l)
{
    l->n = 0;
    while (*s) {
        while (*s == ' ' || *s == '\t')
            s++;
        if (!*s)
            break;
        if (l->n == MAX_TOKENS)
            return -E2BIG;
        char *start = s;
        if (*s == '"') {
            char *q = strchr(s + 1, '"');
            if (!q)
                return -EINVAL;
            s = q + 1;
        } else
            while (*s && *s != ' ' && *s != '\t')
                s++;
        if (*s)
            *s++ = '\0';
        size_t n = strlen(start);
        while (n > 1 && start[0] != '"' && (start[n - 1] == ',' || start[n - 1] == ';'))
            start[--n] = '\0';
        l->tok[l->n++] = start;
    }
    return 0;
}

/* "text" -> text (in place) or NULL when not quoted. */
static char *unquote(char *t)
{
    size_t n = strlen(t);
    if (n < 2 || t[0] != '"' || t[n - 1] != '"')
        return NULL;
    t[n - 1] = '\0';
    return t + 1;
}

static bool parse_u32(const char *s, uint32_t max, uint32_t *ret)
{
    if (!s || !isdigit((unsigned char)*s))
        return false;
    errno = 0;
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v > max)
        return false;
    *ret = (uint32_t)v;
    return true;
}

/* ---- keys ------------------------------------------------------------------ */

struct key {
    uint8_t b[16];
    uint8_t len;
    uint8_t prefix; /* bits; = len * 8 for a single value */
};

static bool parse_cidr(const char *s, int family, struct key *k)
{
    struct stk_cidr c;
    if (stk_cidr_parse(s, &c, NULL) < 0 && stk_addr_parse(s, &c) < 0)
        return false;
    if ((family == 4 && c.family != STK_FAMILY_V4) || (family == 6 && c.family != STK_FAMILY_V6))
        return false;
    k->len = c.family == STK_FAMILY_V4 ? 4 : 16;
    memcpy(k->b, c.addr, k->len);
    k->prefix = c.prefix;
    return true;
}

static void key_be16(struct key *k, uint16_t v)
{
    *k = (struct key){.len = 2, .prefix = 16};
    k->b[0] = (uint8_t)(v >> 8);
    k->b[1] = (uint8_t)v;
}

static void key_host32(struct key *k, uint32_t v)
{
    *k = (struct key){.len = 4, .prefix = 32};
    memcpy(k->b, &v, 4);
}

/* ---- expressions ----------------------------------------------------------- */

enum op_kind {
    OP_META,
    OP_CMP,
    OP_PAYLOAD,
    OP_BITWISE,
    OP_LOOKUP,
    OP_IMM,
    OP_COUNTER,
    OP_LIMIT,
    OP_LOG,
    OP_CT,
    OP_FIB
};

struct op {
    enum op_kind kind;
    uint32_t a, b, c; /* meta key / cmp op / payload base,offset,len / ... */
    struct key k, mask;
    char name[128]; /* lookup set, log prefix */
    uint32_t set_id;
};

struct rule {
    struct op ops[MAX_OPS];
    size_t n;
    bool l3, l4;
    const char *comment;
};

static struct op *op_add(struct rule *r, enum op_kind kind)
{
    if (r->n == MAX_OPS)
        return NULL;
    r->ops[r->n] = (struct op){.kind = kind};
    return &r->ops[r->n++];
}

static int put_meta(struct rule *r, uint32_t key)
{
    struct op *o = op_add(r, OP_META);
    return o ? (o->a = key, 0) : -E2BIG;
}

static int put_cmp(struct rule *r, uint32_t cmp_op, const struct key *k)
{
    struct op *o = op_add(r, OP_CMP);
    if (!o)
        return -E2BIG;
    o->a = cmp_op;
    o->k = *k;
    return 0;
}

static int put_payload(struct rule *r, uint32_t base, uint32_t offset, uint32_t len)
{
    struct op *o = op_add(r, OP_PAYLOAD);
    if (!o)
        return -E2BIG;
    o->a = base;
    o->b = offset;
    o->c = len;
    return 0;
}

static int put_cmp_u8(struct rule *r, uint8_t v)
{
    struct key k = {.len = 1, .prefix = 8, .b = {v}};
    return put_cmp(r, NFT_CMP_EQ, &k);
}

/* A value or prefix compared at base/offset (field of len bytes). */
static int put_match(struct rule *r, uint32_t base, uint32_t offset, const struct key *v,
                     uint32_t cmp_op)
{
    unsigned full = v->len * 8u;
    int rc;
    if (v->prefix == full || (v->prefix && v->prefix % 8 == 0)) {
        struct key k = *v;
        k.len = (uint8_t)(v->prefix / 8);
        if ((rc = put_payload(r, base, offset, k.len)) < 0)
            return rc;
        return put_cmp(r, cmp_op, &k);
    }
    if ((rc = put_payload(r, base, offset, v->len)) < 0)
        return rc;
    struct op *o = op_add(r, OP_BITWISE);
    if (!o)
        return -E2BIG;
    struct key mask = {.len = v->len}, val = *v;
    for (unsigned i = 0; i < v->prefix; i++)
        mask.b[i / 8] |= (uint8_t)(0x80 >> (i % 8));
    for (unsigned i = 0; i < v->len; i++)
        val.b[i] &= mask.b[i];
    o->mask = mask;
    o->c = v->len;
    return put_cmp(r, cmp_op, &val);
}

/* ---- anonymous sets ------------------------------------------------------ */

struct anon {
    int family;
    uint32_t key_type, key_len;
    const uint8_t *udata;
    size_t udata_len;
    struct key elems[MAX_ELEMS];
    size_t n;
};

static int key_cmp(const void *a, const void *b)
{
    const struct key *x = a, *y = b;
    return memcmp(x->b, y->b, x->len);
}

/* The last address of k's prefix. */
static struct key range_end(const struct key *k)
{
    struct key e = *k;
    for (unsigned i = k->prefix; i < k->len * 8u; i++)
        e.b[i / 8] |= (uint8_t)(0x80 >> (i % 8));
    return e;
}

/* k + 1; false when k is all ones. */
static bool key_next(struct key *k)
{
    for (size_t i = k->len; i-- > 0;)
        if (++k->b[i] != 0)
            return true;
    return false;
}

enum elem_kind { ELEM_KEY, ELEM_END, ELEM_OPEN };

static void put_elem(struct nlmsghdr *nlh, unsigned idx, const struct key *k, enum elem_kind kind)
{
    struct nlattr *e = mnl_attr_nest_start(nlh, idx);
    if (kind == ELEM_END)
        mnl_attr_put_u32(nlh, NFTA_SET_ELEM_FLAGS, htonl(NFT_SET_ELEM_INTERVAL_END));
    struct nlattr *kn = mnl_attr_nest_start(nlh, NFTA_SET_ELEM_KEY);
    mnl_attr_put(nlh, NFTA_DATA_VALUE, k->len, k->b);
    mnl_attr_nest_end(nlh, kn);
    if (kind == ELEM_OPEN) {
        /* an interval up to the last key has no end element; nft marks its
         * start (element flags: interval open) */
        static const uint8_t open[] = {0x01, 0x04, 0x01, 0x00, 0x00, 0x00};
        mnl_attr_put(nlh, NFTA_SET_ELEM_USERDATA, sizeof(open), open);
    }
    mnl_attr_nest_end(nlh, e);
}

/* NEWSET "__set%d" and its elements; returns the set's id. */
static uint32_t anon_emit(struct batch *b, const char *table, const struct anon *a)
{
    bool interval = false;
    for (size_t i = 0; i < a->n; i++)
        interval |= a->elems[i].prefix != a->elems[i].len * 8u;
    /* what is sent: intervals sorted and merged into [start, end) pairs,
     * led by an end at zero when the first does not start there */
    _cleanup_free_ struct key *out = stk_xcalloc(2 * MAX_ELEMS + 1, sizeof(*out));
    _cleanup_free_ enum elem_kind *kind = stk_xcalloc(2 * MAX_ELEMS + 1, sizeof(*kind));
    size_t n = 0;
    if (!interval) {
        for (size_t i = 0; i < a->n; i++) {
            out[n] = a->elems[i];
            kind[n++] = ELEM_KEY;
        }
    } else {
        _cleanup_free_ struct key *s = stk_xcalloc(a->n, sizeof(*s));
        memcpy(s, a->elems, a->n * sizeof(*s));
        for (size_t i = 0; i < a->n; i++)
            for (unsigned j = s[i].prefix; j < s[i].len * 8u; j++)
                s[i].b[j / 8] &= (uint8_t) ~(0x80 >> (j % 8));
        qsort(s, a->n, sizeof(*s), key_cmp);
        struct key zero = {.len = (uint8_t)a->key_len};
        if (memcmp(s[0].b, zero.b, zero.len)) {
            out[n] = zero;
            kind[n++] = ELEM_END;
        }
        for (size_t i = 0; i < a->n;) {
            struct key start = s[i], last = range_end(&s[i]);
            bool open = false; /* the range runs to the end of the key space */
            for (i++; i < a->n; i++) {
                struct key after = last;
                if (!key_next(&after)) {
                    open = true;
                    break;
                }
                if (key_cmp(&s[i], &after) > 0)
                    break;
                struct key e = range_end(&s[i]);
                if (key_cmp(&e, &last) > 0)
                    last = e;
            }
            start.prefix = (uint8_t)(start.len * 8);
            struct key after = last;
            open = open || !key_next(&after);
            out[n] = start;
            kind[n++] = open ? ELEM_OPEN : ELEM_KEY;
            if (!open) {
                out[n] = after;
                kind[n++] = ELEM_END;
            }
            if (open)
                break;
        }
    }
    uint32_t id = ++b->set_id;
    struct nlmsghdr *nlh = nft_msg(b, NFT_MSG_NEWSET, NLM_F_CREATE, a->family, table);
    mnl_attr_put_strz(nlh, NFTA_SET_NAME, "__set%d");
    mnl_attr_put_u32(
        nlh, NFTA_SET_FLAGS,
        htonl(NFT_SET_ANONYMOUS | NFT_SET_CONSTANT | (interval ? NFT_SET_INTERVAL : 0)));
    mnl_attr_put_u32(nlh, NFTA_SET_KEY_TYPE, htonl(a->key_type));
    mnl_attr_put_u32(nlh, NFTA_SET_KEY_LEN, htonl(a->key_len));
    mnl_attr_put_u32(nlh, NFTA_SET_ID, htonl(id));
    struct nlattr *d = mnl_attr_nest_start(nlh, NFTA_SET_DESC);
    mnl_attr_put_u32(nlh, NFTA_SET_DESC_SIZE, htonl((uint32_t)n));
    mnl_attr_nest_end(nlh, d);
    /* key byte order, [merge elements,] typeof: as nft writes them */
    uint8_t ud[64];
    size_t ul = 0;
    memcpy(ud, a->udata, 6);
    ul = 6;
    if (interval) {
        static const uint8_t merge[] = {0x02, 0x04, 0x01, 0x00, 0x00, 0x00};
        memcpy(ud + ul, merge, sizeof(merge));
        ul += sizeof(merge);
    }
    memcpy(ud + ul, a->udata + 6, a->udata_len - 6);
    ul += a->udata_len - 6;
    mnl_attr_put(nlh, NFTA_SET_USERDATA, ul, ud);
    msg_end(b, nlh);

    nlh = nft_msg(b, NFT_MSG_NEWSETELEM, NLM_F_CREATE, a->family, table);
    mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_SET, "__set%d");
    mnl_attr_put_u32(nlh, NFTA_SET_ELEM_LIST_SET_ID, htonl(id));
    struct nlattr *list = mnl_attr_nest_start(nlh, NFTA_SET_ELEM_LIST_ELEMENTS);
    for (size_t i = 0; i < n; i++)
        put_elem(nlh, (unsigned)i + 1, &out[i], kind[i]);
    mnl_attr_nest_end(nlh, list);
    msg_end(b, nlh);
    return id;
}

/* The anonymous sets' user data: key byte order, then typeof (the
 * expression the key came from), as nft 1.0.6 writes them. */
#define UD_BE   0x00, 0x04, 0x02, 0x00, 0x00, 0x00
#define UD_HOST 0x00, 0x04, 0x01, 0x00, 0x00, 0x00
#define UD_TYPEOF(expr, a, b)                                                                      \
    0x03, 0x14, 0x00, 0x04, expr, 0x00, 0x00, 0x00, 0x01, 0x0c, 0x00, 0x04, a, 0x00, 0x00, 0x00,   \
        0x01, 0x04, b, 0x00, 0x00, 0x00
#define UD_PAYLOAD(desc, field) UD_TYPEOF(0x07, desc, field)
static const uint8_t ud_ip_saddr[] = {UD_BE, UD_PAYLOAD(0x0c, 11)};
static const uint8_t ud_ip_daddr[] = {UD_BE, UD_PAYLOAD(0x0c, 12)};
static const uint8_t ud_ip6_saddr[] = {UD_BE, UD_PAYLOAD(0x0d, 8)};
static const uint8_t ud_ip6_daddr[] = {UD_BE, UD_PAYLOAD(0x0d, 9)};
static const uint8_t ud_tcp_dport[] = {UD_BE, UD_PAYLOAD(0x08, 2)};
static const uint8_t ud_icmpv6_type[] = {UD_BE, UD_PAYLOAD(0x0e, 1)};
static const uint8_t ud_ether_type[] = {UD_BE, UD_PAYLOAD(0x11, 3)};
static const uint8_t ud_fib_type[] = {UD_HOST, UD_TYPEOF(0x1a, 3, 2)};

/* A value, "!=" value, "{ list }" or "!= { list }" at *i: one value is
 * compared, a list looked up in an anonymous set. parse(token, key) reads
 * one value. */
static int match_values(struct batch *b, const char *table, struct rule *r, struct line *l,
                        size_t *i, uint32_t base, uint32_t offset, struct anon *a,
                        bool (*parse)(const char *, int, struct key *), int pf)
{
    uint32_t cmp_op = NFT_CMP_EQ;
    if (*i < l->n && !strcmp(l->tok[*i], "!=")) {
        cmp_op = NFT_CMP_NEQ;
        (*i)++;
    }
    if (*i >= l->n)
        return -EINVAL;
    a->n = 0;
    if (!strcmp(l->tok[*i], "{")) {
        for ((*i)++; *i < l->n && strcmp(l->tok[*i], "}"); (*i)++) {
            if (a->n == MAX_ELEMS || !parse(l->tok[*i], pf, &a->elems[a->n]))
                return -EINVAL;
            a->n++;
        }
        if (*i >= l->n || a->n == 0)
            return -EINVAL;
    } else {
        if (!parse(l->tok[*i], pf, &a->elems[0]))
            return -EINVAL;
        a->n = 1;
    }
    (*i)++;
    if (a->n == 1)
        return put_match(r, base, offset, &a->elems[0], cmp_op);
    int rc = put_payload(r, base, offset, a->key_len);
    if (rc < 0)
        return rc;
    struct op *o = op_add(r, OP_LOOKUP);
    if (!o)
        return -E2BIG;
    o->set_id = anon_emit(b, table, a);
    snprintf(o->name, sizeof(o->name), "__set%%d");
    o->a = cmp_op == NFT_CMP_NEQ ? NFT_LOOKUP_F_INV : 0;
    return 0;
}

static bool parse_port(const char *s, int unused, struct key *k)
{
    (void)unused;
    uint32_t v;
    if (!parse_u32(s, 65535, &v))
        return false;
    key_be16(k, (uint16_t)v);
    return true;
}

static bool parse_ethertype(const char *s, int unused, struct key *k)
{
    (void)unused;
    static const struct {
        const char *name;
        uint16_t v;
    } t[] = {{"ip", 0x0800}, {"arp", 0x0806}, {"ip6", 0x86dd}};
    for (size_t i = 0; i < STK_ARRAY_SIZE(t); i++)
        if (!strcmp(s, t[i].name)) {
            key_be16(k, t[i].v);
            return true;
        }
    return false;
}

static bool parse_icmpv6(const char *s, int unused, struct key *k)
{
    (void)unused;
    static const struct {
        const char *name;
        uint8_t v;
    } t[] = {{"nd-neighbor-solicit", 135},
             {"nd-neighbor-advert", 136},
             {"nd-router-solicit", 133},
             {"mld-listener-report", 131},
             {"mld2-listener-report", 143}};
    for (size_t i = 0; i < STK_ARRAY_SIZE(t); i++)
        if (!strcmp(s, t[i].name)) {
            *k = (struct key){.len = 1, .prefix = 8, .b = {t[i].v}};
            return true;
        }
    return false;
}

static bool parse_addrtype(const char *s, int unused, struct key *k)
{
    (void)unused;
    static const struct {
        const char *name;
        uint32_t v;
    } t[] = {{"unicast", 1}, {"local", 2}, {"broadcast", 3}, {"anycast", 4}, {"multicast", 5}};
    for (size_t i = 0; i < STK_ARRAY_SIZE(t); i++)
        if (!strcmp(s, t[i].name)) {
            key_host32(k, t[i].v);
            return true;
        }
    return false;
}

static int l3_dep(struct rule *r, int family, bool v6)
{
    if (r->l3)
        return 0;
    r->l3 = true;
    int rc;
    if (family == NFPROTO_INET) {
        if ((rc = put_meta(r, NFT_META_NFPROTO)) < 0)
            return rc;
        return put_cmp_u8(r, v6 ? NFPROTO_IPV6 : NFPROTO_IPV4);
    }
    struct key k;
    key_be16(&k, v6 ? 0x86dd : 0x0800);
    if ((rc = put_meta(r, NFT_META_PROTOCOL)) < 0)
        return rc;
    return put_cmp(r, NFT_CMP_EQ, &k);
}

static int l4_dep(struct rule *r, uint8_t proto)
{
    if (r->l4)
        return 0;
    r->l4 = true;
    int rc = put_meta(r, NFT_META_L4PROTO);
    return rc < 0 ? rc : put_cmp_u8(r, proto);
}

static int l4_proto(const char *s)
{
    return !strcmp(s, "tcp") ? 6 : !strcmp(s, "udp") ? 17 : !strcmp(s, "sctp") ? 132 : -1;
}

/* One statement at *i. */
static int statement(struct batch *b, const char *table, int family, struct rule *r, struct line *l,
                     size_t *i)
{
    const char *t = l->tok[*i];
    const char *t1 = *i + 1 < l->n ? l->tok[*i + 1] : "";
    struct anon a = {.family = family};
    int rc;
    if (!strcmp(t, "ct") && !strcmp(t1, "state") && *i + 2 < l->n) {
        uint32_t bits = 0;
        _cleanup_free_ char *v = stk_xstrdup(l->tok[*i + 2]);
        char *save = NULL;
        for (char *s = strtok_r(v, ",", &save); s; s = strtok_r(NULL, ",", &save))
            bits |= !strcmp(s, "invalid")       ? 1u
                    : !strcmp(s, "established") ? 2u
                    : !strcmp(s, "related")     ? 4u
                    : !strcmp(s, "new")         ? 8u
                                                : 1u << 31;
        if (!bits || bits & (1u << 31))
            return -EINVAL;
        *i += 3;
        struct op *o = op_add(r, OP_CT);
        struct op *bw = o ? op_add(r, OP_BITWISE) : NULL;
        if (!bw)
            return -E2BIG;
        o->a = NFT_CT_STATE;
        key_host32(&bw->mask, bits);
        bw->c = 4;
        struct key zero = {.len = 4, .prefix = 32};
        return put_cmp(r, NFT_CMP_NEQ, &zero);
    }
    if ((!strcmp(t, "ip") || !strcmp(t, "ip6")) && (!strcmp(t1, "saddr") || !strcmp(t1, "daddr"))) {
        bool v6 = !strcmp(t, "ip6"), daddr = !strcmp(t1, "daddr");
        uint32_t off = v6 ? (daddr ? 24 : 8) : (daddr ? 16 : 12);
        *i += 2;
        if (*i >= l->n)
            return -EINVAL;
        if ((rc = l3_dep(r, family, v6)) < 0)
            return rc;
        if (l->tok[*i][0] == '@') { /* a named set */
            if ((rc = put_payload(r, NFT_PAYLOAD_NETWORK_HEADER, off, v6 ? 16 : 4)) < 0)
                return rc;
            struct op *o = op_add(r, OP_LOOKUP);
            if (!o || strlen(l->tok[*i] + 1) > MAX_NAME)
                return -E2BIG;
            snprintf(o->name, sizeof(o->name), "%s", l->tok[*i] + 1);
            (*i)++;
            return 0;
        }
        a.key_type = v6 ? 8 : 7;
        a.key_len = v6 ? 16 : 4;
        a.udata = v6 ? (daddr ? ud_ip6_daddr : ud_ip6_saddr) : (daddr ? ud_ip_daddr : ud_ip_saddr);
        a.udata_len = sizeof(ud_ip_daddr);
        return match_values(b, table, r, l, i, NFT_PAYLOAD_NETWORK_HEADER, off, &a, parse_cidr,
                            v6 ? 6 : 4);
    }
    if (!strcmp(t, "arp") && !strcmp(t1, "saddr") && *i + 2 < l->n &&
        !strcmp(l->tok[*i + 2], "ip") && family == NFPROTO_BRIDGE) {
        *i += 3;
        if (!r->l3) {
            r->l3 = true;
            struct key k;
            key_be16(&k, 0x0806);
            if ((rc = put_payload(r, NFT_PAYLOAD_LL_HEADER, 12, 2)) < 0 ||
                (rc = put_cmp(r, NFT_CMP_EQ, &k)) < 0)
                return rc;
        }
        if ((*i < l->n && !strcmp(l->tok[*i], "{")) ||
            (*i + 1 < l->n && !strcmp(l->tok[*i + 1], "{")))
            return -EINVAL; /* one address only: no typeof for a list here */
        a.key_type = 7;
        a.key_len = 4;
        return match_values(b, table, r, l, i, NFT_PAYLOAD_NETWORK_HEADER, 14, &a, parse_cidr, 4);
    }
    if (!strcmp(t, "ether") && !strcmp(t1, "type") && family == NFPROTO_BRIDGE) {
        *i += 2;
        a.key_type = 10;
        a.key_len = 2;
        a.udata = ud_ether_type;
        a.udata_len = sizeof(ud_ether_type);
        return match_values(b, table, r, l, i, NFT_PAYLOAD_LL_HEADER, 12, &a, parse_ethertype, 0);
    }
    if (l4_proto(t) > 0 && !strcmp(t1, "dport")) {
        int proto = l4_proto(t);
        *i += 2;
        if (*i >= l->n)
            return -EINVAL;
        if ((rc = l4_dep(r, (uint8_t)proto)) < 0)
            return rc;
        const char *v = l->tok[*i];
        const char *dash = strchr(v, '-');
        if (dash) { /* a range: A-B */
            _cleanup_free_ char *lo = stk_xstrndup(v, (size_t)(dash - v));
            struct key k1, k2;
            if (!parse_port(lo, 0, &k1) || !parse_port(dash + 1, 0, &k2))
                return -EINVAL;
            (*i)++;
            if ((rc = put_payload(r, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2)) < 0 ||
                (rc = put_cmp(r, NFT_CMP_GTE, &k1)) < 0)
                return rc;
            return put_cmp(r, NFT_CMP_LTE, &k2);
        }
        if (!strcmp(v, "{") && proto != 6)
            return -EINVAL; /* only tcp's typeof is known here */
        a.key_type = 13;
        a.key_len = 2;
        a.udata = ud_tcp_dport;
        a.udata_len = sizeof(ud_tcp_dport);
        return match_values(b, table, r, l, i, NFT_PAYLOAD_TRANSPORT_HEADER, 2, &a, parse_port, 0);
    }
    if (!strcmp(t, "meta") && !strcmp(t1, "l4proto") && *i + 2 < l->n &&
        l4_proto(l->tok[*i + 2]) > 0) {
        int proto = l4_proto(l->tok[*i + 2]);
        *i += 3;
        r->l4 = true;
        if ((rc = put_meta(r, NFT_META_L4PROTO)) < 0)
            return rc;
        return put_cmp_u8(r, (uint8_t)proto);
    }
    if (!strcmp(t, "icmpv6") && !strcmp(t1, "type") && family == NFPROTO_INET) {
        *i += 2;
        if ((rc = l3_dep(r, family, true)) < 0 || (rc = l4_dep(r, 58)) < 0)
            return rc;
        a.key_type = 29;
        a.key_len = 1;
        a.udata = ud_icmpv6_type;
        a.udata_len = sizeof(ud_icmpv6_type);
        return match_values(b, table, r, l, i, NFT_PAYLOAD_TRANSPORT_HEADER, 0, &a, parse_icmpv6,
                            0);
    }
    if (!strcmp(t, "fib") && !strcmp(t1, "daddr") && *i + 2 < l->n &&
        !strcmp(l->tok[*i + 2], "type") && *i + 3 < l->n && !strcmp(l->tok[*i + 3], "{")) {
        *i += 3;
        struct op *o = op_add(r, OP_FIB);
        if (!o)
            return -E2BIG;
        a.key_type = 38;
        a.key_len = 4;
        a.udata = ud_fib_type;
        a.udata_len = sizeof(ud_fib_type);
        size_t before = r->n;
        /* match_values adds a payload load first; the fib result is the key */
        rc = match_values(b, table, r, l, i, 0, 0, &a, parse_addrtype, 0);
        if (rc < 0)
            return rc;
        if (r->n < before + 2 || r->ops[before].kind != OP_PAYLOAD)
            return -EINVAL;
        memmove(&r->ops[before], &r->ops[before + 1], (r->n - before - 1) * sizeof(r->ops[0]));
        r->n--;
        return 0;
    }
    if (!strcmp(t, "limit") && !strcmp(t1, "rate") && *i + 5 < l->n &&
        !strcmp(l->tok[*i + 3], "burst") && !strcmp(l->tok[*i + 5], "packets")) {
        const char *rate = l->tok[*i + 2];
        const char *slash = strchr(rate, '/');
        uint32_t n, burst;
        _cleanup_free_ char *num = slash ? stk_xstrndup(rate, (size_t)(slash - rate)) : NULL;
        if (!slash || strcmp(slash, "/second") || !parse_u32(num, UINT32_MAX, &n) ||
            !parse_u32(l->tok[*i + 4], UINT32_MAX, &burst))
            return -EINVAL;
        *i += 6;
        struct op *o = op_add(r, OP_LIMIT);
        if (!o)
            return -E2BIG;
        o->a = n;
        o->b = burst;
        return 0;
    }
    if (!strcmp(t, "log")) {
        struct op *o = op_add(r, OP_LOG);
        if (!o)
            return -E2BIG;
        bool group = false;
        for ((*i)++; *i + 1 < l->n;) {
            if (!strcmp(l->tok[*i], "group")) {
                if (!parse_u32(l->tok[*i + 1], 65535, &o->a))
                    return -EINVAL;
                group = true;
            } else if (!strcmp(l->tok[*i], "prefix")) {
                char *p = unquote(l->tok[*i + 1]);
                if (!p || strlen(p) >= sizeof(o->name))
                    return -EINVAL;
                snprintf(o->name, sizeof(o->name), "%s", p);
            } else
                break;
            *i += 2;
        }
        return group ? 0 : -EINVAL; /* the subset always logs to a group */
    }
    if (!strcmp(t, "counter")) {
        (*i)++;
        return op_add(r, OP_COUNTER) ? 0 : -E2BIG;
    }
    if (!strcmp(t, "accept") || !strcmp(t, "drop")) {
        (*i)++;
        struct op *o = op_add(r, OP_IMM);
        if (!o)
            return -E2BIG;
        o->a = !strcmp(t, "accept") ? NF_ACCEPT : NF_DROP;
        return 0;
    }
    if (!strcmp(t, "comment") && *i + 1 < l->n) {
        r->comment = unquote(l->tok[*i + 1]);
        *i += 2;
        return r->comment && strlen(r->comment) < 128 ? 0 : -EINVAL;
    }
    return -EINVAL;
}

static void put_data(struct nlmsghdr *nlh, uint16_t type, const struct key *k)
{
    struct nlattr *n = mnl_attr_nest_start(nlh, type);
    mnl_attr_put(nlh, NFTA_DATA_VALUE, k->len, k->b);
    mnl_attr_nest_end(nlh, n);
}

static void put_verdict(struct nlmsghdr *nlh, uint16_t type, int code, const char *chain)
{
    struct nlattr *d = mnl_attr_nest_start(nlh, type);
    struct nlattr *v = mnl_attr_nest_start(nlh, NFTA_DATA_VERDICT);
    mnl_attr_put_u32(nlh, NFTA_VERDICT_CODE, htonl((uint32_t)code));
    if (chain)
        mnl_attr_put_strz(nlh, NFTA_VERDICT_CHAIN, chain);
    mnl_attr_nest_end(nlh, v);
    mnl_attr_nest_end(nlh, d);
}

static void put_op(struct nlmsghdr *nlh, const struct op *o)
{
    static const char *const names[] = {
        [OP_META] = "meta",       [OP_CMP] = "cmp",       [OP_PAYLOAD] = "payload",
        [OP_BITWISE] = "bitwise", [OP_LOOKUP] = "lookup", [OP_IMM] = "immediate",
        [OP_COUNTER] = "counter", [OP_LIMIT] = "limit",   [OP_LOG] = "log",
        [OP_CT] = "ct",           [OP_FIB] = "fib"};
    struct nlattr *elem = mnl_attr_nest_start(nlh, NFTA_LIST_ELEM);
    mnl_attr_put_strz(nlh, NFTA_EXPR_NAME, names[o->kind]);
    struct nlattr *data = mnl_attr_nest_start(nlh, NFTA_EXPR_DATA);
    switch (o->kind) {
    case OP_META:
        mnl_attr_put_u32(nlh, NFTA_META_KEY, htonl(o->a));
        mnl_attr_put_u32(nlh, NFTA_META_DREG, htonl(NFT_REG_1));
        break;
    case OP_CMP:
        mnl_attr_put_u32(nlh, NFTA_CMP_SREG, htonl(NFT_REG_1));
        mnl_attr_put_u32(nlh, NFTA_CMP_OP, htonl(o->a));
        put_data(nlh, NFTA_CMP_DATA, &o->k);
        break;
    case OP_PAYLOAD:
        mnl_attr_put_u32(nlh, NFTA_PAYLOAD_DREG, htonl(NFT_REG_1));
        mnl_attr_put_u32(nlh, NFTA_PAYLOAD_BASE, htonl(o->a));
        mnl_attr_put_u32(nlh, NFTA_PAYLOAD_OFFSET, htonl(o->b));
        mnl_attr_put_u32(nlh, NFTA_PAYLOAD_LEN, htonl(o->c));
        break;
    case OP_BITWISE: {
        struct key zero = {.len = o->mask.len};
        mnl_attr_put_u32(nlh, NFTA_BITWISE_SREG, htonl(NFT_REG_1));
        mnl_attr_put_u32(nlh, NFTA_BITWISE_DREG, htonl(NFT_REG_1));
        mnl_attr_put_u32(nlh, NFTA_BITWISE_LEN, htonl(o->c));
        put_data(nlh, NFTA_BITWISE_MASK, &o->mask);
        put_data(nlh, NFTA_BITWISE_XOR, &zero);
        break;
    }
    case OP_LOOKUP:
        mnl_attr_put_u32(nlh, NFTA_LOOKUP_SREG, htonl(NFT_REG_1));
        mnl_attr_put_strz(nlh, NFTA_LOOKUP_SET, o->name);
        if (o->set_id)
            mnl_attr_put_u32(nlh, NFTA_LOOKUP_SET_ID, htonl(o->set_id));
        if (o->a)
            mnl_attr_put_u32(nlh, NFTA_LOOKUP_FLAGS, htonl(o->a));
        break;
    case OP_IMM:
        mnl_attr_put_u32(nlh, NFTA_IMMEDIATE_DREG, htonl(NFT_REG_VERDICT));
        put_verdict(nlh, NFTA_IMMEDIATE_DATA, (int)o->a, NULL);
        break;
    case OP_COUNTER:
        break;
    case OP_LIMIT:
        mnl_attr_put_u64(nlh, NFTA_LIMIT_RATE, htobe64(o->a));
        mnl_attr_put_u64(nlh, NFTA_LIMIT_UNIT, htobe64(1));
        mnl_attr_put_u32(nlh, NFTA_LIMIT_BURST, htonl(o->b));
        mnl_attr_put_u32(nlh, NFTA_LIMIT_TYPE, htonl(NFT_LIMIT_PKTS));
        mnl_attr_put_u32(nlh, NFTA_LIMIT_FLAGS, 0);
        break;
    case OP_LOG:
        if (o->name[0])
            mnl_attr_put_strz(nlh, NFTA_LOG_PREFIX, o->name);
        mnl_attr_put_u16(nlh, NFTA_LOG_GROUP, htons((uint16_t)o->a));
        break;
    case OP_CT:
        mnl_attr_put_u32(nlh, NFTA_CT_KEY, htonl(o->a));
        mnl_attr_put_u32(nlh, NFTA_CT_DREG, htonl(NFT_REG_1));
        break;
    case OP_FIB:
        mnl_attr_put_u32(nlh, NFTA_FIB_FLAGS, htonl(NFTA_FIB_F_DADDR));
        mnl_attr_put_u32(nlh, NFTA_FIB_RESULT, htonl(NFT_FIB_RESULT_ADDRTYPE));
        mnl_attr_put_u32(nlh, NFTA_FIB_DREG, htonl(NFT_REG_1));
        break;
    }
    mnl_attr_nest_end(nlh, data);
    mnl_attr_nest_end(nlh, elem);
}

/* ---- commands ---------------------------------------------------------------- */

static int family_of(const char *s)
{
    return !strcmp(s, "inet") ? NFPROTO_INET : !strcmp(s, "bridge") ? NFPROTO_BRIDGE : -1;
}

/* A set element's key, by its spelling: an address, a quoted interface
 * name, a port. */
static bool elem_key(const char *t, struct key *k)
{
    size_t n = strlen(t);
    if (t[0] == '"') {
        if (n < 3 || n - 2 >= IFNAMSIZ || t[n - 1] != '"')
            return false;
        *k = (struct key){.len = IFNAMSIZ, .prefix = IFNAMSIZ * 8};
        memcpy(k->b, t + 1, n - 2);
        return true;
    }
    if (parse_port(t, 0, k))
        return true;
    return parse_cidr(t, 0, k) && k->prefix == k->len * 8u;
}

static int cmd_elements(struct batch *b, struct line *l, int family, bool add)
{
    /* add|delete element F T SET { K [: jump CHAIN], ... } */
    if (l->n < 8 || strcmp(l->tok[5], "{") || strcmp(l->tok[l->n - 1], "}"))
        return -EINVAL;
    struct nlmsghdr *nlh = nft_msg(b, add ? NFT_MSG_NEWSETELEM : NFT_MSG_DELSETELEM,
                                   add ? NLM_F_CREATE : 0, family, l->tok[3]);
    mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_SET, l->tok[4]);
    struct nlattr *list = mnl_attr_nest_start(nlh, NFTA_SET_ELEM_LIST_ELEMENTS);
    unsigned idx = 0;
    for (size_t i = 6; i < l->n - 1;) {
        struct key k;
        if (!elem_key(l->tok[i], &k))
            return -EINVAL;
        struct nlattr *e = mnl_attr_nest_start(nlh, ++idx);
        struct nlattr *kn = mnl_attr_nest_start(nlh, NFTA_SET_ELEM_KEY);
        mnl_attr_put(nlh, NFTA_DATA_VALUE, k.len, k.b);
        mnl_attr_nest_end(nlh, kn);
        i++;
        if (i + 2 < l->n && !strcmp(l->tok[i], ":")) {
            if (strcmp(l->tok[i + 1], "jump") || strlen(l->tok[i + 2]) > MAX_NAME)
                return -EINVAL;
            put_verdict(nlh, NFTA_SET_ELEM_DATA, NFT_JUMP, l->tok[i + 2]);
            i += 3;
        }
        mnl_attr_nest_end(nlh, e);
    }
    mnl_attr_nest_end(nlh, list);
    msg_end(b, nlh);
    return 0;
}

/* add set|map F T NAME { type K [: verdict] } */
static int cmd_set(struct batch *b, struct line *l, int family)
{
    bool map = !strcmp(l->tok[1], "map");
    if (l->n != (map ? 11u : 9u) || strcmp(l->tok[5], "{") || strcmp(l->tok[6], "type") ||
        strcmp(l->tok[l->n - 1], "}") ||
        (map && (strcmp(l->tok[8], ":") || strcmp(l->tok[9], "verdict"))))
        return -EINVAL;
    uint32_t type, len;
    if (!strcmp(l->tok[7], "ipv4_addr"))
        type = 7, len = 4;
    else if (!strcmp(l->tok[7], "ipv6_addr"))
        type = 8, len = 16;
    else if (!strcmp(l->tok[7], "inet_service") && !map)
        type = 13, len = 2;
    else
        return -EINVAL;
    struct nlmsghdr *nlh = nft_msg(b, NFT_MSG_NEWSET, NLM_F_CREATE, family, l->tok[3]);
    mnl_attr_put_strz(nlh, NFTA_SET_NAME, l->tok[4]);
    mnl_attr_put_u32(nlh, NFTA_SET_FLAGS, htonl(map ? NFT_SET_MAP : 0));
    mnl_attr_put_u32(nlh, NFTA_SET_KEY_TYPE, htonl(type));
    mnl_attr_put_u32(nlh, NFTA_SET_KEY_LEN, htonl(len));
    if (map) {
        mnl_attr_put_u32(nlh, NFTA_SET_DATA_TYPE, htonl(NFT_DATA_VERDICT));
        mnl_attr_put_u32(nlh, NFTA_SET_DATA_LEN, 0);
    }
    mnl_attr_put_u32(nlh, NFTA_SET_ID, htonl(++b->set_id));
    static const uint8_t ud_set[] = {UD_BE};
    static const uint8_t ud_map[] = {UD_BE, 0x01, 0x04, 0, 0, 0, 0, 0x06, 0x04, 0, 0, 0, 0};
    if (map)
        mnl_attr_put(nlh, NFTA_SET_USERDATA, sizeof(ud_map), ud_map);
    else
        mnl_attr_put(nlh, NFTA_SET_USERDATA, sizeof(ud_set), ud_set);
    msg_end(b, nlh);
    return 0;
}

static int cmd_rule(struct batch *b, struct line *l, int family)
{
    struct rule r = {0};
    const char *table = l->tok[3];
    for (size_t i = 5; i < l->n;) {
        int rc = statement(b, table, family, &r, l, &i);
        if (rc < 0)
            return rc;
    }
    if (r.n == 0)
        return -EINVAL;
    struct nlmsghdr *nlh = nft_msg(b, NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, family, table);
    mnl_attr_put_strz(nlh, NFTA_RULE_CHAIN, l->tok[4]);
    struct nlattr *exprs = mnl_attr_nest_start(nlh, NFTA_RULE_EXPRESSIONS);
    for (size_t i = 0; i < r.n; i++)
        put_op(nlh, &r.ops[i]);
    mnl_attr_nest_end(nlh, exprs);
    if (r.comment) {
        uint8_t ud[132];
        size_t n = strlen(r.comment) + 1;
        ud[0] = 0; /* NFTNL_UDATA_RULE_COMMENT */
        ud[1] = (uint8_t)n;
        memcpy(ud + 2, r.comment, n);
        mnl_attr_put(nlh, NFTA_RULE_USERDATA, n + 2, ud);
    }
    if (nlh->nlmsg_len > MSG_ROOM)
        return -E2BIG;
    msg_end(b, nlh);
    return 0;
}

static int command(struct batch *b, struct line *l)
{
    if (l->n < 5 || strcmp(l->tok[3], "stockade"))
        return -EINVAL;
    int family = family_of(l->tok[2]);
    if (family < 0 || strlen(l->tok[4]) > MAX_NAME)
        return -EINVAL;
    const char *verb = l->tok[0], *obj = l->tok[1];
    struct nlmsghdr *nlh;
    if (!strcmp(obj, "chain") && l->n == 5) {
        if (!strcmp(verb, "add"))
            nlh = nft_msg(b, NFT_MSG_NEWCHAIN, NLM_F_CREATE, family, l->tok[3]);
        else if (!strcmp(verb, "flush"))
            nlh = nft_msg(b, NFT_MSG_DELRULE, 0, family, l->tok[3]);
        else if (!strcmp(verb, "delete"))
            nlh = nft_msg(b, NFT_MSG_DELCHAIN, 0, family, l->tok[3]);
        else
            return -EINVAL;
        /* a flush names the chain whose rules go: without it, every rule
         * of the table would */
        mnl_attr_put_strz(nlh, !strcmp(verb, "flush") ? NFTA_RULE_CHAIN : NFTA_CHAIN_NAME,
                          l->tok[4]);
        msg_end(b, nlh);
        return 0;
    }
    if (!strcmp(obj, "element") && (!strcmp(verb, "add") || !strcmp(verb, "delete")))
        return cmd_elements(b, l, family, !strcmp(verb, "add"));
    if ((!strcmp(obj, "set") || !strcmp(obj, "map")) && !strcmp(verb, "add"))
        return cmd_set(b, l, family);
    if (!strcmp(obj, "rule") && !strcmp(verb, "add"))
        return cmd_rule(b, l, family);
    return -EINVAL;
}

int stk_nftnl_compile(const char *text, uint32_t seq, struct stk_buf *out, size_t *n_msgs,
                      struct stk_error **err)
{
    struct batch b = {.out = out, .seq = seq};
    batch_mark(&b, NFNL_MSG_BATCH_BEGIN);
    _cleanup_free_ char *copy = stk_xstrdup(text ? text : "");
    char *save = NULL;
    for (char *ln = strtok_r(copy, "\n", &save); ln; ln = strtok_r(NULL, "\n", &save)) {
        if (ln[0] == '#' || !ln[strspn(ln, " \t")])
            continue;
        _cleanup_free_ char *shown = stk_xstrdup(ln);
        struct line l;
        int rc = tokenize(ln, &l);
        if (rc == 0)
            rc = command(&b, &l);
        if (rc < 0)
            return stk_error_make(err, ENOTSUP, "nft line outside stockade's subset: %s", shown);
    }
    batch_mark(&b, NFNL_MSG_BATCH_END);
    *n_msgs = b.n_msgs;
    return 0;
}

/* ---- sending ----------------------------------------------------------------- */

struct acks {
    size_t n;
    int error;
    uint32_t error_seq;
};

/* Acknowledgements and errors (NLMSG_ERROR) in one read: counted, the
 * first error kept. */
static void acks_read(const void *buf, size_t len, uint32_t port, struct acks *a)
{
    int left = (int)len;
    for (const struct nlmsghdr *nlh = buf; mnl_nlmsg_ok(nlh, left);
         nlh = mnl_nlmsg_next(nlh, &left)) {
        if (nlh->nlmsg_type != NLMSG_ERROR || nlh->nlmsg_pid != port ||
            nlh->nlmsg_len < mnl_nlmsg_size(sizeof(struct nlmsgerr)))
            continue;
        const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);
        a->n++;
        if (e->error && !a->error) {
            a->error = -e->error;
            a->error_seq = nlh->nlmsg_seq;
        }
    }
}

/* The line of text that message seq (counted from base) came from. */
static char *line_of(const char *text, uint32_t base, uint32_t seq)
{
    struct stk_buf one = {0};
    size_t n_msgs = 0;
    _cleanup_free_ char *copy = stk_xstrdup(text);
    char *save = NULL;
    uint32_t at = base + 1; /* after the batch begin */
    for (char *ln = strtok_r(copy, "\n", &save); ln; ln = strtok_r(NULL, "\n", &save)) {
        if (ln[0] == '#' || !ln[strspn(ln, " \t")])
            continue;
        one.len = 0;
        if (stk_nftnl_compile(ln, 0, &one, &n_msgs, NULL) < 0)
            break;
        if (seq < at + n_msgs) {
            stk_buf_free(&one);
            return stk_xstrdup(ln);
        }
        at += (uint32_t)n_msgs;
    }
    stk_buf_free(&one);
    return stk_xstrdup("(unknown line)");
}

static int transact(const void *buf, size_t len, size_t n_msgs, struct acks *a,
                    struct stk_error **err)
{
    struct mnl_socket *nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
    if (!nl)
        return stk_error_errno(err, errno, "netlink (netfilter) socket");
    int r = 0;
    /* the kernel answers at once; never wait forever under the network's lock */
    struct timeval tv = {.tv_sec = 10};
    if (setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
        mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0 || mnl_socket_sendto(nl, buf, len) < 0)
        r = stk_error_errno(err, errno, "sending the nftables batch");
    uint32_t port = mnl_socket_get_portid(nl);
    char rbuf[32768] __attribute__((aligned(4)));
    while (r == 0 && a->n < n_msgs) {
        ssize_t got = mnl_socket_recvfrom(nl, rbuf, sizeof(rbuf));
        if (got < 0) {
            r = stk_error_errno(err, errno, "reading the nftables batch's answer");
            break;
        }
        acks_read(rbuf, (size_t)got, port, a);
        if (a->error) /* the kernel aborted the batch */
            break;
    }
    mnl_socket_close(nl);
    return r;
}

int stk_nftnl_apply(const char *text, struct stk_error **err)
{
    _cleanup_buf_ struct stk_buf batch = {0};
    size_t n_msgs = 0;
    uint32_t seq = (uint32_t)time(NULL);
    int r = stk_nftnl_compile(text, seq, &batch, &n_msgs, err);
    if (r < 0)
        return r;
    struct acks a = {0};
    if ((r = transact(batch.data, batch.len, n_msgs, &a, err)) < 0)
        return r;
    if (a.error) {
        _cleanup_free_ char *line = line_of(text, seq, a.error_seq);
        return stk_error_errno(err, a.error, "nft transaction failed at \"%s\"", line);
    }
    return 0;
}

/* One request (not a dump) and whether the kernel answered with an object
 * rather than an error. */
static bool get_one(struct nlmsghdr *nlh)
{
    if (nlh->nlmsg_flags & NLM_F_DUMP)
        dump_requests++;
    struct mnl_socket *nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
    if (!nl)
        return false;
    bool found = false;
    struct timeval tv = {.tv_sec = 10};
    if (setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0 &&
        mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) >= 0 &&
        mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) >= 0) {
        char rbuf[32768] __attribute__((aligned(4)));
        ssize_t got = mnl_socket_recvfrom(nl, rbuf, sizeof(rbuf));
        /* the object, then the ack; or an error alone */
        if (got > 0) {
            const struct nlmsghdr *m = (const struct nlmsghdr *)rbuf;
            found = mnl_nlmsg_ok(m, (int)got) && m->nlmsg_type != NLMSG_ERROR;
        }
    }
    mnl_socket_close(nl);
    return found;
}

static struct nlmsghdr *get_msg(void *buf, int type, int family, const char *table)
{
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = (uint16_t)((NFNL_SUBSYS_NFTABLES << 8) | type);
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK; /* one object, not a dump */
    nlh->nlmsg_seq = 1;
    struct nfgenmsg *g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
    g->nfgen_family = (uint8_t)family;
    g->version = NFNETLINK_V0;
    mnl_attr_put_strz(nlh, NFTA_TABLE_NAME, table);
    return nlh;
}

bool stk_nftnl_table_exists(const char *family, const char *table)
{
    int f = family_of(family);
    char buf[512] __attribute__((aligned(4)));
    if (f < 0 || strlen(table) > MAX_NAME)
        return false;
    return get_one(get_msg(buf, NFT_MSG_GETTABLE, f, table));
}

bool stk_nftnl_element_exists(const char *family, const char *table, const char *set,
                              const uint8_t *key, size_t len)
{
    int f = family_of(family);
    char buf[1024] __attribute__((aligned(4)));
    if (f < 0 || strlen(table) > MAX_NAME || strlen(set) > MAX_NAME || len > 64)
        return false;
    struct nlmsghdr *nlh = get_msg(buf, NFT_MSG_GETSETELEM, f, table);
    mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_SET, set);
    struct nlattr *list = mnl_attr_nest_start(nlh, NFTA_SET_ELEM_LIST_ELEMENTS);
    struct nlattr *e = mnl_attr_nest_start(nlh, 1);
    struct nlattr *k = mnl_attr_nest_start(nlh, NFTA_SET_ELEM_KEY);
    mnl_attr_put(nlh, NFTA_DATA_VALUE, len, key);
    mnl_attr_nest_end(nlh, k);
    mnl_attr_nest_end(nlh, e);
    mnl_attr_nest_end(nlh, list);
    return get_one(nlh);
}
