/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Denied attempts as events: the sandbox chains end in `log group N prefix
 * "stk:<id>:"`; this reader binds that NFLOG group over nfnetlink_log
 * (libmnl, no libnetfilter_log needed), decodes the packet's destination,
 * asks the egress evaluator which deny applied, and rate-limits per
 * sandbox with a counted summary of what it suppressed.
 */
#include "driver/local/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_log.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <time.h>

#define MAX_WATCH 1024
#define NL_BUF    8192 /* MNL_SOCKET_BUFFER_SIZE is a sysconf() call: a VLA */

struct watch {
    char id[STK_NFT_MAX_ID + 1];
    const struct stk_boundary *b; /* may be NULL: not watched, policy unknown */
    int64_t window;               /* the second the current count belongs to */
    unsigned count;
    uint64_t suppressed;
};

struct stk_egress_log {
    struct mnl_socket *nl;
    uint16_t group;
    unsigned rate;
    struct watch *w;
    size_t n;
    /* the read in progress */
    struct stk_egress_event *out;
    size_t max, got;
};

static int64_t now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

static int config_send(struct mnl_socket *nl, uint16_t group, uint16_t attr, const void *data,
                       size_t len, uint8_t family)
{
    char buf[NL_BUF];
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    nlh->nlmsg_seq = (uint32_t)time(NULL);
    struct nfgenmsg *g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
    g->nfgen_family = family;
    g->version = NFNETLINK_V0;
    g->res_id = htons(group);
    mnl_attr_put(nlh, attr, len, data);
    if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
        return -errno;
    ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
    if (n < 0)
        return -errno;
    if (mnl_cb_run(buf, (size_t)n, nlh->nlmsg_seq, mnl_socket_get_portid(nl), NULL, NULL) < 0)
        return -errno;
    return 0;
}

int stk_egress_log_open(uint16_t group, struct stk_egress_log **ret, struct stk_error **err)
{
    struct mnl_socket *nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
    if (!nl)
        return stk_error_errno(err, errno, "nfnetlink socket");
    if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
        int e = errno;
        mnl_socket_close(nl);
        return stk_error_errno(err, e, "nfnetlink bind");
    }
    struct nfulnl_msg_config_cmd bind = {.command = NFULNL_CFG_CMD_BIND};
    struct nfulnl_msg_config_mode mode = {.copy_range = htonl(128),
                                          .copy_mode = NFULNL_COPY_PACKET};
    uint32_t qthresh = htonl(1);
    int r;
    if ((r = config_send(nl, group, NFULA_CFG_CMD, &bind, sizeof(bind), AF_UNSPEC)) < 0 ||
        (r = config_send(nl, group, NFULA_CFG_MODE, &mode, sizeof(mode), AF_UNSPEC)) < 0 ||
        (r = config_send(nl, group, NFULA_CFG_QTHRESH, &qthresh, sizeof(qthresh), AF_UNSPEC)) < 0) {
        mnl_socket_close(nl);
        return stk_error_errno(err, -r, "binding NFLOG group %u%s", group,
                               r == -EBUSY ? " (another reader holds it)" : "");
    }
    struct stk_egress_log *l = stk_xcalloc(1, sizeof(*l));
    l->nl = nl;
    l->group = group;
    l->rate = STK_EGRESS_LOG_RATE;
    l->w = stk_xcalloc(MAX_WATCH, sizeof(*l->w));
    *ret = l;
    return 0;
}

static struct watch *watch_of(struct stk_egress_log *l, const char *id)
{
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->w[i].id, id))
            return &l->w[i];
    if (l->n == MAX_WATCH)
        return NULL;
    struct watch *w = &l->w[l->n++];
    snprintf(w->id, sizeof(w->id), "%s", id);
    return w;
}

void stk_egress_log_set_rate(struct stk_egress_log *l, unsigned per_second)
{
    l->rate = per_second;
}

int stk_egress_log_watch(struct stk_egress_log *l, const char *id, const struct stk_boundary *b)
{
    if (!stk_nft_id_valid(id))
        return -EINVAL;
    struct watch *w = watch_of(l, id);
    if (!w)
        return -ENOSPC;
    w->b = b;
    return 0;
}

int stk_egress_log_fd(const struct stk_egress_log *l)
{
    return mnl_socket_get_fd(l->nl);
}

static const char *proto_name(uint8_t p, enum stk_protocol *ret)
{
    switch (p) {
    case IPPROTO_TCP:
        *ret = STK_PROTO_TCP;
        return "TCP";
    case IPPROTO_UDP:
        *ret = STK_PROTO_UDP;
        return "UDP";
    case IPPROTO_SCTP:
        *ret = STK_PROTO_SCTP;
        return "SCTP";
    case IPPROTO_ICMP:
        return "ICMP";
    case IPPROTO_ICMPV6:
        return "ICMPv6";
    default:
        return "other";
    }
}

/* Destination address, L4 protocol and port from an IPv4/IPv6 packet. */
static bool packet_decode(const uint8_t *p, size_t n, struct stk_dest *d, uint8_t *ret_proto)
{
    size_t off;
    uint8_t proto;
    if (n >= 20 && (p[0] >> 4) == 4) {
        d->addr.family = STK_FAMILY_V4;
        d->addr.prefix = 32;
        memcpy(d->addr.addr, p + 16, 4);
        proto = p[9];
        off = (size_t)(p[0] & 0xf) * 4;
        if ((p[6] & 0x1f) || p[7]) /* a later fragment: no L4 header */
            off = n;
    } else if (n >= 40 && (p[0] >> 4) == 6) {
        d->addr.family = STK_FAMILY_V6;
        d->addr.prefix = 128;
        memcpy(d->addr.addr, p + 24, 16);
        proto = p[6]; /* extension headers: the port stays unknown */
        off = 40;
    } else {
        return false;
    }
    d->has_addr = true;
    *ret_proto = proto;
    if ((proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP) && n >= off + 4)
        d->port = (uint16_t)(p[off + 2] << 8 | p[off + 3]);
    return true;
}

static void emit(struct stk_egress_log *l, const struct stk_egress_event *e)
{
    if (l->got < l->max)
        l->out[l->got++] = *e;
}

static void summary(struct stk_egress_log *l, struct watch *w)
{
    if (!w->suppressed)
        return;
    struct stk_egress_event e = {.type = STK_EGRESS_SUPPRESSED, .suppressed = w->suppressed};
    snprintf(e.sandbox, sizeof(e.sandbox), "%s", w->id);
    e.policy = "";
    emit(l, &e);
    w->suppressed = 0;
}

static int packet_cb(const struct nlmsghdr *nlh, void *data)
{
    struct stk_egress_log *l = data;
    struct nlattr *tb[NFULA_MAX + 1] = {0};
    struct nlattr *a;
    if ((nlh->nlmsg_type & 0xff) != NFULNL_MSG_PACKET)
        return MNL_CB_OK;
    mnl_attr_for_each(a, nlh, sizeof(struct nfgenmsg))
    {
        uint16_t t = mnl_attr_get_type(a);
        if (t <= NFULA_MAX)
            tb[t] = a;
    }
    if (!tb[NFULA_PREFIX] || !tb[NFULA_PAYLOAD])
        return MNL_CB_OK;
    /* "stk:<id>:", "stk:<id>:host:" or "stk:<id>:offhost:" */
    const char *prefix = mnl_attr_get_str(tb[NFULA_PREFIX]);
    if (!stk_startswith(prefix, STK_NFT_LOG_PREFIX))
        return MNL_CB_OK;
    const char *id = prefix + strlen(STK_NFT_LOG_PREFIX);
    const char *colon = strchr(id, ':');
    if (!colon || (size_t)(colon - id) > STK_NFT_MAX_ID)
        return MNL_CB_OK;
    char idbuf[STK_NFT_MAX_ID + 1];
    memcpy(idbuf, id, (size_t)(colon - id));
    idbuf[colon - id] = '\0';
    if (!stk_nft_id_valid(idbuf))
        return MNL_CB_OK;
    bool host = !strcmp(colon, ":host:");
    bool offhost = !strcmp(colon, ":" STK_NFT_OFFHOST ":");

    struct stk_dest d = {0};
    uint8_t proto = 0;
    if (!packet_decode(mnl_attr_get_payload(tb[NFULA_PAYLOAD]),
                       mnl_attr_get_payload_len(tb[NFULA_PAYLOAD]), &d, &proto))
        return MNL_CB_OK;

    struct watch *w = watch_of(l, idbuf);
    if (!w)
        return MNL_CB_OK;
    int64_t now = now_sec();
    if (now != w->window) {
        summary(l, w);
        w->window = now;
        w->count = 0;
    }
    if (l->rate && w->count >= l->rate) {
        w->suppressed++;
        return MNL_CB_OK;
    }
    w->count++;

    struct stk_egress_event e = {.type = STK_EGRESS_DENIED, .port = d.port};
    snprintf(e.sandbox, sizeof(e.sandbox), "%s", idbuf);
    stk_cidr_format(&d.addr, e.dst);
    *strrchr(e.dst, '/') = '\0';
    snprintf(e.proto, sizeof(e.proto), "%s", proto_name(proto, &d.protocol));
    e.policy = stk_netpol_names[STK_NETPOL_DENY];
    struct stk_verdict v;
    if (host)
        e.policy = "host";
    else if (offhost)
        e.policy = STK_NFT_OFFHOST;
    else if (w->b && stk_egress_decide(w->b, &d, &v) == 0 && v.excepted) {
        e.policy = stk_netpol_names[v.except_policy];
        stk_cidr_format(&v.except_cidr, e.except);
    }
    emit(l, &e);
    return MNL_CB_OK;
}

int stk_egress_log_read(struct stk_egress_log *l, int timeout_ms, struct stk_egress_event *ret,
                        size_t max, struct stk_error **err)
{
    l->out = ret;
    l->max = max;
    l->got = 0;
    /* summaries of windows that ended while nothing arrived */
    int64_t now = now_sec();
    for (size_t i = 0; i < l->n; i++)
        if (l->w[i].window != now)
            summary(l, &l->w[i]);
    struct pollfd pfd = {.fd = mnl_socket_get_fd(l->nl), .events = POLLIN};
    while (l->got < max) {
        int pr = poll(&pfd, 1, l->got ? 0 : timeout_ms);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr < 0)
            return stk_error_errno(err, errno, "poll");
        if (pr == 0)
            break;
        char buf[NL_BUF];
        ssize_t n = mnl_socket_recvfrom(l->nl, buf, sizeof(buf));
        if (n < 0 && errno == ENOBUFS)
            continue; /* the kernel dropped log lines; the chain's counter has them */
        if (n < 0)
            return stk_error_errno(err, errno, "reading NFLOG group %u", l->group);
        (void)mnl_cb_run(buf, (size_t)n, 0, 0, packet_cb, l);
    }
    return (int)l->got;
}

size_t stk_egress_log_flush(struct stk_egress_log *l, struct stk_egress_event *ret, size_t max)
{
    l->out = ret;
    l->max = max;
    l->got = 0;
    for (size_t i = 0; i < l->n; i++)
        summary(l, &l->w[i]);
    return l->got;
}

void stk_egress_log_close(struct stk_egress_log *l)
{
    if (!l)
        return;
    struct nfulnl_msg_config_cmd unbind = {.command = NFULNL_CFG_CMD_UNBIND};
    (void)config_send(l->nl, l->group, NFULA_CFG_CMD, &unbind, sizeof(unbind), AF_UNSPEC);
    mnl_socket_close(l->nl);
    free(l->w);
    free(l);
}

void stk_egress_event_json(const struct stk_egress_event *e, struct stk_buf *out)
{
    if (e->type == STK_EGRESS_SUPPRESSED) {
        stk_buf_printf(out,
                       "{\"type\":\"egress_denied_suppressed\",\"sandbox\":\"%s\",\"count\":%llu}",
                       e->sandbox, (unsigned long long)e->suppressed);
        return;
    }
    stk_buf_printf(out,
                   "{\"type\":\"egress_denied\",\"sandbox\":\"%s\",\"dst\":\"%s\",\"port\":%u,"
                   "\"proto\":\"%s\",\"policy\":\"%s\"",
                   e->sandbox, e->dst, e->port, e->proto, e->policy);
    if (e->except[0])
        stk_buf_printf(out, ",\"except\":\"%s\"", e->except);
    stk_buf_putc(out, '}');
}
