/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rtnetlink requests for the local network (rtnl.h), in-process: no ip(8)
 * to fork and exec per step. Each request asks for an acknowledgement, and
 * the kernel's extended acknowledgement (its reason in words) goes into the
 * error.
 */
#include "driver/local/rtnl.h"

#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/if.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

struct stk_rtnl {
    struct mnl_socket *nl;
    uint32_t seq, port;
};

static struct nlmsghdr *link_header(void *buf, uint16_t type, uint16_t flags, unsigned ifindex)
{
    memset(buf, 0, STK_RTNL_BUF);
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = type;
    nlh->nlmsg_flags = NLM_F_REQUEST | flags;
    struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));
    ifm->ifi_family = AF_UNSPEC;
    ifm->ifi_index = (int)ifindex;
    return nlh;
}

struct nlmsghdr *stk_rtnl_bridge_msg(void *buf, const char *name, const uint8_t mac[6])
{
    struct nlmsghdr *nlh = link_header(buf, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, 0);
    mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
    mnl_attr_put(nlh, IFLA_ADDRESS, 6, mac);
    struct nlattr *info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
    mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "bridge");
    mnl_attr_nest_end(nlh, info);
    return nlh;
}

struct nlmsghdr *stk_rtnl_veth_msg(void *buf, const char *name, const char *peer, int peer_netns_fd,
                                   unsigned master)
{
    struct nlmsghdr *nlh = link_header(buf, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, 0);
    mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
    if (master)
        mnl_attr_put_u32(nlh, IFLA_MASTER, master);
    struct nlattr *info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
    mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "veth");
    struct nlattr *data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
    /* the peer: an ifinfomsg, then its own link attributes */
    struct nlattr *p = mnl_attr_nest_start(nlh, VETH_INFO_PEER);
    struct ifinfomsg *pifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*pifm));
    pifm->ifi_family = AF_UNSPEC;
    mnl_attr_put_strz(nlh, IFLA_IFNAME, peer);
    if (peer_netns_fd >= 0)
        mnl_attr_put_u32(nlh, IFLA_NET_NS_FD, (uint32_t)peer_netns_fd);
    mnl_attr_nest_end(nlh, p);
    mnl_attr_nest_end(nlh, data);
    mnl_attr_nest_end(nlh, info);
    return nlh;
}

struct nlmsghdr *stk_rtnl_brport_msg(void *buf, unsigned ifindex, bool isolated, bool learning)
{
    struct nlmsghdr *nlh = link_header(buf, RTM_NEWLINK, 0, ifindex);
    struct nlattr *info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
    mnl_attr_put_strz(nlh, IFLA_INFO_SLAVE_KIND, "bridge");
    struct nlattr *data = mnl_attr_nest_start(nlh, IFLA_INFO_SLAVE_DATA);
    mnl_attr_put_u8(nlh, IFLA_BRPORT_ISOLATED, isolated);
    mnl_attr_put_u8(nlh, IFLA_BRPORT_LEARNING, learning);
    mnl_attr_nest_end(nlh, data);
    mnl_attr_nest_end(nlh, info);
    return nlh;
}

struct nlmsghdr *stk_rtnl_up_msg(void *buf, unsigned ifindex)
{
    struct nlmsghdr *nlh = link_header(buf, RTM_NEWLINK, 0, ifindex);
    struct ifinfomsg *ifm = mnl_nlmsg_get_payload(nlh);
    ifm->ifi_flags = IFF_UP;
    ifm->ifi_change = IFF_UP;
    return nlh;
}

struct nlmsghdr *stk_rtnl_dellink_msg(void *buf, const char *name)
{
    struct nlmsghdr *nlh = link_header(buf, RTM_DELLINK, 0, 0);
    mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
    return nlh;
}

struct nlmsghdr *stk_rtnl_getlink_msg(void *buf, const char *name)
{
    struct nlmsghdr *nlh = link_header(buf, RTM_GETLINK, 0, 0);
    mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
    return nlh;
}

static size_t addr_len(const struct stk_cidr *a)
{
    return a->family == STK_FAMILY_V4 ? 4 : 16;
}

static uint8_t af_of(const struct stk_cidr *a)
{
    return a->family == STK_FAMILY_V4 ? AF_INET : AF_INET6;
}

struct nlmsghdr *stk_rtnl_addr_msg(void *buf, unsigned ifindex, const struct stk_cidr *a,
                                   bool replace, bool nodad)
{
    memset(buf, 0, STK_RTNL_BUF);
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = RTM_NEWADDR;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_CREATE | (replace ? NLM_F_REPLACE : NLM_F_EXCL);
    struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
    ifa->ifa_family = af_of(a);
    ifa->ifa_prefixlen = a->prefix;
    ifa->ifa_scope = RT_SCOPE_UNIVERSE;
    ifa->ifa_index = ifindex;
    uint32_t flags = nodad && a->family == STK_FAMILY_V6 ? IFA_F_NODAD : 0;
    ifa->ifa_flags = (uint8_t)flags;
    mnl_attr_put(nlh, IFA_LOCAL, addr_len(a), a->addr);
    mnl_attr_put(nlh, IFA_ADDRESS, addr_len(a), a->addr);
    if (flags)
        mnl_attr_put_u32(nlh, IFA_FLAGS, flags);
    return nlh;
}

struct nlmsghdr *stk_rtnl_route_msg(void *buf, unsigned ifindex, const struct stk_cidr *dst,
                                    const struct stk_cidr *gw)
{
    memset(buf, 0, STK_RTNL_BUF);
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = RTM_NEWROUTE;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL;
    struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
    rtm->rtm_family = af_of(dst);
    rtm->rtm_dst_len = dst->prefix;
    rtm->rtm_table = RT_TABLE_MAIN;
    rtm->rtm_protocol = RTPROT_BOOT;
    rtm->rtm_type = RTN_UNICAST;
    /* IPv4: a route without a gateway is on the link; IPv6 routes are
     * always universe (as ip(8) makes them) */
    rtm->rtm_scope = !gw && dst->family == STK_FAMILY_V4 ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE;
    if (dst->prefix)
        mnl_attr_put(nlh, RTA_DST, addr_len(dst), dst->addr);
    if (gw)
        mnl_attr_put(nlh, RTA_GATEWAY, addr_len(gw), gw->addr);
    mnl_attr_put_u32(nlh, RTA_OIF, ifindex);
    return nlh;
}

int stk_rtnl_open(struct stk_rtnl **ret, struct stk_error **err)
{
    struct mnl_socket *nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
    if (!nl)
        return stk_error_errno(err, errno, "rtnetlink socket");
    int one = 1;
    /* the kernel's reason in words; older kernels lack it (ignored) */
    (void)mnl_socket_setsockopt(nl, NETLINK_EXT_ACK, &one, sizeof(one));
    if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
        int e = errno;
        mnl_socket_close(nl);
        return stk_error_errno(err, e, "rtnetlink bind");
    }
    struct stk_rtnl *r = stk_xcalloc(1, sizeof(*r));
    r->nl = nl;
    r->port = mnl_socket_get_portid(nl);
    r->seq = (uint32_t)time(NULL);
    *ret = r;
    return 0;
}

void stk_rtnl_close(struct stk_rtnl *r)
{
    if (!r)
        return;
    mnl_socket_close(r->nl);
    free(r);
}

/* The extended acknowledgement's message, if the kernel sent one. */
static const char *ext_ack_msg(const struct nlmsghdr *nlh)
{
    if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS))
        return NULL;
    const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);
    size_t off = sizeof(*e);
    if (!(nlh->nlmsg_flags & NLM_F_CAPPED))
        off += e->msg.nlmsg_len - sizeof(struct nlmsghdr);
    struct nlattr *a; /* libmnl's macro casts it to a mutable pointer */
    mnl_attr_for_each(a, nlh, off)
    {
        if (mnl_attr_get_type(a) == NLMSGERR_ATTR_MSG &&
            mnl_attr_validate(a, MNL_TYPE_NUL_STRING) >= 0)
            return mnl_attr_get_str(a);
    }
    return NULL;
}

int stk_rtnl_do(struct stk_rtnl *r, struct nlmsghdr *nlh, const char *what, unsigned *ret_ifindex,
                struct stk_error **err)
{
    nlh->nlmsg_flags |= NLM_F_ACK;
    nlh->nlmsg_seq = ++r->seq;
    if (mnl_socket_sendto(r->nl, nlh, nlh->nlmsg_len) < 0)
        return stk_error_errno(err, errno, "%s: sending to rtnetlink", what);
    char buf[8192] __attribute__((aligned(4)));
    for (;;) {
        ssize_t n = mnl_socket_recvfrom(r->nl, buf, sizeof(buf));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return stk_error_errno(err, errno, "%s: reading rtnetlink", what);
        }
        int len = (int)n;
        for (struct nlmsghdr *m = (struct nlmsghdr *)buf; mnl_nlmsg_ok(m, len);
             m = mnl_nlmsg_next(m, &len)) {
            if (m->nlmsg_seq != r->seq || m->nlmsg_pid != r->port)
                continue;
            if (m->nlmsg_type == RTM_NEWLINK && ret_ifindex &&
                m->nlmsg_len >= mnl_nlmsg_size(sizeof(struct ifinfomsg))) {
                const struct ifinfomsg *ifm = mnl_nlmsg_get_payload(m);
                *ret_ifindex = (unsigned)ifm->ifi_index;
                continue;
            }
            if (m->nlmsg_type != NLMSG_ERROR)
                continue;
            if (m->nlmsg_len < mnl_nlmsg_size(sizeof(struct nlmsgerr)))
                return stk_error_make(err, EIO, "%s: truncated rtnetlink answer", what);
            const struct nlmsgerr *e = mnl_nlmsg_get_payload(m);
            if (e->error == 0)
                return 0;
            const char *why = ext_ack_msg(m);
            return why ? stk_error_make(err, -e->error, "%s: %s (%s)", what, why,
                                        strerror(-e->error))
                       : stk_error_errno(err, -e->error, "%s", what);
        }
    }
}
