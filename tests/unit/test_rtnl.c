/* SPDX-License-Identifier: Apache-2.0 */
/* The rtnetlink requests of the local network (src/driver/local/rtnl.c):
 * each builder's message parsed back attribute by attribute, then (as root,
 * in a private network namespace of a child process; skipped otherwise)
 * every request sent to the kernel, which must accept it and leave the
 * links, addresses and routes the network needs, and refuse a bad one with
 * a message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "driver/local/rtnl.h"

#define MAXA 64

/* Attributes of one level, by type (the last one of a type wins). */
struct attrs {
    const struct nlattr *a[MAXA];
};

static int collect(const struct nlattr *a, void *data)
{
    struct attrs *t = data;
    if (mnl_attr_get_type(a) < MAXA)
        t->a[mnl_attr_get_type(a)] = a;
    return MNL_CB_OK;
}

static void top(const struct nlmsghdr *nlh, size_t hdr, struct attrs *t)
{
    memset(t, 0, sizeof(*t));
    assert_int_equal(mnl_attr_parse(nlh, (unsigned)hdr, collect, t), MNL_CB_OK);
}

static void nested(const struct nlattr *a, struct attrs *t)
{
    memset(t, 0, sizeof(*t));
    assert_non_null(a);
    assert_int_equal(mnl_attr_parse_nested(a, collect, t), MNL_CB_OK);
}

/* "address/prefix", host bits allowed (an interface address) */
static struct stk_cidr cidr(const char *s)
{
    char a[64];
    const char *slash = strchr(s, '/');
    snprintf(a, sizeof(a), "%.*s", (int)(slash - s), s);
    struct stk_cidr c;
    assert_int_equal(stk_addr_parse(a, &c), 0);
    c.prefix = (uint8_t)atoi(slash + 1);
    return c;
}

static void test_bridge(void **state)
{
    (void)state;
    char buf[STK_RTNL_BUF] __attribute__((aligned(4)));
    static const uint8_t mac[6] = {2, 0x53, 0x54, 0x4b, 0, 1};
    struct nlmsghdr *nlh = stk_rtnl_bridge_msg(buf, "stk0", mac);
    assert_int_equal(nlh->nlmsg_type, RTM_NEWLINK);
    assert_true(nlh->nlmsg_flags & NLM_F_CREATE);
    assert_true(nlh->nlmsg_flags & NLM_F_EXCL);
    struct attrs t, info;
    top(nlh, sizeof(struct ifinfomsg), &t);
    assert_string_equal(mnl_attr_get_str(t.a[IFLA_IFNAME]), "stk0");
    assert_int_equal(mnl_attr_get_payload_len(t.a[IFLA_ADDRESS]), 6);
    assert_memory_equal(mnl_attr_get_payload(t.a[IFLA_ADDRESS]), mac, 6);
    nested(t.a[IFLA_LINKINFO], &info);
    assert_string_equal(mnl_attr_get_str(info.a[IFLA_INFO_KIND]), "bridge");
}

static void test_veth_peer_in_namespace(void **state)
{
    (void)state;
    char buf[STK_RTNL_BUF] __attribute__((aligned(4)));
    struct nlmsghdr *nlh = stk_rtnl_veth_msg(buf, "stk-abc", "eth0", 7, 42);
    assert_int_equal(nlh->nlmsg_type, RTM_NEWLINK);
    assert_true(nlh->nlmsg_flags & NLM_F_EXCL);
    struct attrs t, info, data, peer;
    top(nlh, sizeof(struct ifinfomsg), &t);
    assert_string_equal(mnl_attr_get_str(t.a[IFLA_IFNAME]), "stk-abc");
    assert_int_equal(mnl_attr_get_u32(t.a[IFLA_MASTER]), 42);
    assert_null(t.a[IFLA_NET_NS_FD]); /* the host end stays here */
    nested(t.a[IFLA_LINKINFO], &info);
    assert_string_equal(mnl_attr_get_str(info.a[IFLA_INFO_KIND]), "veth");
    nested(info.a[IFLA_INFO_DATA], &data);
    /* the peer: an ifinfomsg, then its attributes */
    const struct nlattr *p = data.a[VETH_INFO_PEER];
    assert_non_null(p);
    assert_true(mnl_attr_get_payload_len(p) > sizeof(struct ifinfomsg));
    memset(&peer, 0, sizeof(peer));
    const struct nlattr *a;
    size_t off = MNL_ALIGN(sizeof(struct ifinfomsg));
    for (a = (const struct nlattr *)((const char *)mnl_attr_get_payload(p) + off);
         mnl_attr_ok(a, (int)((const char *)p + p->nla_len - (const char *)a));
         a = mnl_attr_next(a))
        collect(a, &peer);
    assert_string_equal(mnl_attr_get_str(peer.a[IFLA_IFNAME]), "eth0");
    assert_int_equal(mnl_attr_get_u32(peer.a[IFLA_NET_NS_FD]), 7);

    /* no master, no namespace: neither attribute */
    nlh = stk_rtnl_veth_msg(buf, "a", "b", -1, 0);
    top(nlh, sizeof(struct ifinfomsg), &t);
    assert_null(t.a[IFLA_MASTER]);
}

static void test_link_changes(void **state)
{
    (void)state;
    char buf[STK_RTNL_BUF] __attribute__((aligned(4)));
    struct nlmsghdr *nlh = stk_rtnl_up_msg(buf, 9);
    const struct ifinfomsg *ifm = mnl_nlmsg_get_payload(nlh);
    assert_int_equal(ifm->ifi_index, 9);
    assert_int_equal(ifm->ifi_flags, IFF_UP);
    assert_int_equal(ifm->ifi_change, IFF_UP);
    assert_false(nlh->nlmsg_flags & NLM_F_CREATE);

    nlh = stk_rtnl_brport_msg(buf, 9, true, false);
    struct attrs t, info, slave;
    top(nlh, sizeof(struct ifinfomsg), &t);
    nested(t.a[IFLA_LINKINFO], &info);
    assert_string_equal(mnl_attr_get_str(info.a[IFLA_INFO_SLAVE_KIND]), "bridge");
    nested(info.a[IFLA_INFO_SLAVE_DATA], &slave);
    assert_int_equal(mnl_attr_get_u8(slave.a[IFLA_BRPORT_ISOLATED]), 1);
    assert_int_equal(mnl_attr_get_u8(slave.a[IFLA_BRPORT_LEARNING]), 0);

    nlh = stk_rtnl_dellink_msg(buf, "stk-x");
    assert_int_equal(nlh->nlmsg_type, RTM_DELLINK);
    top(nlh, sizeof(struct ifinfomsg), &t);
    assert_string_equal(mnl_attr_get_str(t.a[IFLA_IFNAME]), "stk-x");
    nlh = stk_rtnl_getlink_msg(buf, "eth0");
    assert_int_equal(nlh->nlmsg_type, RTM_GETLINK);
}

static void test_addresses(void **state)
{
    (void)state;
    char buf[STK_RTNL_BUF] __attribute__((aligned(4)));
    struct stk_cidr a4 = cidr("10.88.0.1/16"), a6 = cidr("fd88::2/128");
    struct nlmsghdr *nlh = stk_rtnl_addr_msg(buf, 3, &a4, true, true);
    const struct ifaddrmsg *ifa = mnl_nlmsg_get_payload(nlh);
    assert_int_equal(nlh->nlmsg_type, RTM_NEWADDR);
    assert_true(nlh->nlmsg_flags & NLM_F_REPLACE);
    assert_false(nlh->nlmsg_flags & NLM_F_EXCL);
    assert_int_equal(ifa->ifa_family, AF_INET);
    assert_int_equal(ifa->ifa_prefixlen, 16);
    assert_int_equal(ifa->ifa_index, 3);
    assert_int_equal(ifa->ifa_flags, 0); /* nodad is IPv6's only */
    struct attrs t;
    top(nlh, sizeof(*ifa), &t);
    assert_int_equal(mnl_attr_get_payload_len(t.a[IFA_LOCAL]), 4);
    assert_memory_equal(mnl_attr_get_payload(t.a[IFA_LOCAL]), a4.addr, 4);
    assert_memory_equal(mnl_attr_get_payload(t.a[IFA_ADDRESS]), a4.addr, 4);
    assert_null(t.a[IFA_FLAGS]);
    assert_null(t.a[IFA_BROADCAST]); /* as ip(8) without "brd" */

    nlh = stk_rtnl_addr_msg(buf, 4, &a6, false, true);
    ifa = mnl_nlmsg_get_payload(nlh);
    assert_true(nlh->nlmsg_flags & NLM_F_EXCL);
    assert_int_equal(ifa->ifa_family, AF_INET6);
    assert_int_equal(ifa->ifa_prefixlen, 128);
    assert_int_equal(ifa->ifa_flags, IFA_F_NODAD);
    top(nlh, sizeof(*ifa), &t);
    assert_int_equal(mnl_attr_get_payload_len(t.a[IFA_ADDRESS]), 16);
    assert_memory_equal(mnl_attr_get_payload(t.a[IFA_ADDRESS]), a6.addr, 16);
    assert_int_equal(mnl_attr_get_u32(t.a[IFA_FLAGS]), IFA_F_NODAD);
}

static void test_routes(void **state)
{
    (void)state;
    char buf[STK_RTNL_BUF] __attribute__((aligned(4)));
    struct stk_cidr gw4 = cidr("10.88.0.1/32"), any4 = {.family = STK_FAMILY_V4};
    struct stk_cidr gw6 = cidr("fd88::1/128"), any6 = {.family = STK_FAMILY_V6};

    struct nlmsghdr *nlh = stk_rtnl_route_msg(buf, 2, &gw4, NULL);
    const struct rtmsg *rtm = mnl_nlmsg_get_payload(nlh);
    assert_int_equal(nlh->nlmsg_type, RTM_NEWROUTE);
    assert_int_equal(rtm->rtm_family, AF_INET);
    assert_int_equal(rtm->rtm_dst_len, 32);
    assert_int_equal(rtm->rtm_scope, RT_SCOPE_LINK);
    assert_int_equal(rtm->rtm_table, RT_TABLE_MAIN);
    struct attrs t;
    top(nlh, sizeof(*rtm), &t);
    assert_memory_equal(mnl_attr_get_payload(t.a[RTA_DST]), gw4.addr, 4);
    assert_null(t.a[RTA_GATEWAY]);
    assert_int_equal(mnl_attr_get_u32(t.a[RTA_OIF]), 2);

    nlh = stk_rtnl_route_msg(buf, 2, &any4, &gw4);
    rtm = mnl_nlmsg_get_payload(nlh);
    assert_int_equal(rtm->rtm_dst_len, 0);
    assert_int_equal(rtm->rtm_scope, RT_SCOPE_UNIVERSE);
    top(nlh, sizeof(*rtm), &t);
    assert_null(t.a[RTA_DST]); /* the default route */
    assert_memory_equal(mnl_attr_get_payload(t.a[RTA_GATEWAY]), gw4.addr, 4);

    nlh = stk_rtnl_route_msg(buf, 2, &gw6, NULL);
    rtm = mnl_nlmsg_get_payload(nlh);
    assert_int_equal(rtm->rtm_family, AF_INET6);
    assert_int_equal(rtm->rtm_scope, RT_SCOPE_UNIVERSE);
    nlh = stk_rtnl_route_msg(buf, 2, &any6, &gw6);
    top(nlh, sizeof(*rtm), &t);
    assert_int_equal(mnl_attr_get_payload_len(t.a[RTA_GATEWAY]), 16);
}

/* ---- against the kernel, in a private network namespace ---------------- */

static int kernel_checks_in(struct stk_error **errp);

static int kernel_checks(void)
{
    struct stk_error *err = NULL;
    int r = kernel_checks_in(&err);
    if (r && err)
        fprintf(stderr, "%s\n", err->msg);
    stk_error_freep(&err);
    return r;
}

static int kernel_checks_in(struct stk_error **errp)
{
    char buf[STK_RTNL_BUF] __attribute__((aligned(4)));
    struct stk_rtnl *nl = NULL;
#define err (*errp)
    static const uint8_t mac[6] = {2, 0x53, 0x54, 0x4b, 0, 9};
    int ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (ns < 0 || stk_rtnl_open(&nl, &err) < 0)
        return 1;
    if (stk_rtnl_do(nl, stk_rtnl_up_msg(buf, 1), "lo", NULL, &err) < 0 ||
        stk_rtnl_do(nl, stk_rtnl_bridge_msg(buf, "tbr0", mac), "bridge", NULL, &err) < 0)
        return 2;
    /* a second create is refused, with the kernel's errno */
    if (stk_rtnl_do(nl, stk_rtnl_bridge_msg(buf, "tbr0", mac), "again", NULL, &err) != -EEXIST ||
        !strstr(err->msg, "again"))
        return 3;
    stk_error_freep(&err);
    unsigned br = if_nametoindex("tbr0");
    struct stk_cidr b4 = cidr("10.77.0.1/16"), b6 = cidr("fd77::1/64");
    if (!br || stk_rtnl_do(nl, stk_rtnl_addr_msg(buf, br, &b4, true, true), "a4", NULL, &err) < 0 ||
        stk_rtnl_do(nl, stk_rtnl_addr_msg(buf, br, &b4, true, true), "a4 again", NULL, &err) < 0 ||
        stk_rtnl_do(nl, stk_rtnl_addr_msg(buf, br, &b6, true, true), "a6", NULL, &err) < 0 ||
        stk_rtnl_do(nl, stk_rtnl_up_msg(buf, br), "up", NULL, &err) < 0)
        return 4;
    /* the pair with its peer made in a namespace given by fd (here: this one) */
    if (stk_rtnl_do(nl, stk_rtnl_veth_msg(buf, "tv-host", "tv-peer", ns, br), "veth", NULL, &err) <
        0)
        return 5;
    unsigned host = if_nametoindex("tv-host"), peer = 0;
    if (!host ||
        stk_rtnl_do(nl, stk_rtnl_brport_msg(buf, host, true, true), "port", NULL, &err) < 0 ||
        stk_rtnl_do(nl, stk_rtnl_up_msg(buf, host), "host up", NULL, &err) < 0 ||
        stk_rtnl_do(nl, stk_rtnl_getlink_msg(buf, "tv-peer"), "find", &peer, &err) < 0 ||
        peer != if_nametoindex("tv-peer"))
        return 6;
    struct stk_cidr a4 = cidr("10.77.0.2/32"), a6 = cidr("fd77::2/128");
    if (stk_rtnl_do(nl, stk_rtnl_addr_msg(buf, peer, &a4, false, true), "p4", NULL, &err) < 0 ||
        stk_rtnl_do(nl, stk_rtnl_addr_msg(buf, peer, &a6, false, true), "p6", NULL, &err) < 0 ||
        stk_rtnl_do(nl, stk_rtnl_up_msg(buf, peer), "peer up", NULL, &err) < 0)
        return 7;
    /* as inside a sandbox: the gateway's route on the link, then the
     * default via it (gateways that are not this namespace's own) */
    struct stk_cidr gw4 = cidr("10.66.0.1/32"), any4 = {.family = STK_FAMILY_V4};
    struct stk_cidr gw6 = cidr("fd66::1/128"), any6 = {.family = STK_FAMILY_V6};
    if (stk_rtnl_do(nl, stk_rtnl_route_msg(buf, peer, &gw4, NULL), "r4", NULL, &err) < 0 ||
        stk_rtnl_do(nl, stk_rtnl_route_msg(buf, peer, &any4, &gw4), "d4", NULL, &err) < 0 ||
        stk_rtnl_do(nl, stk_rtnl_route_msg(buf, peer, &gw6, NULL), "r6", NULL, &err) < 0 ||
        stk_rtnl_do(nl, stk_rtnl_route_msg(buf, peer, &any6, &gw6), "d6", NULL, &err) < 0)
        return 8;
    /* a second default route is refused (create, exclusive) */
    if (stk_rtnl_do(nl, stk_rtnl_route_msg(buf, peer, &any4, &gw4), "d4 again", NULL, &err) !=
        -EEXIST)
        return 9;
    stk_error_freep(&err);
    /* the port is isolated: the bridge says so */
    FILE *f = fopen("/sys/class/net/tv-host/brport/isolated", "re");
    int iso = -1;
    if (f) {
        if (fscanf(f, "%d", &iso) != 1)
            iso = -1;
        fclose(f);
    }
    if (f && iso != 1) /* sysfs may show another namespace: only a present 0 fails */
        return 10;
    /* removal; then a missing link is refused */
    if (stk_rtnl_do(nl, stk_rtnl_dellink_msg(buf, "tv-host"), "del", NULL, &err) < 0 ||
        if_nametoindex("tv-peer") != 0)
        return 11;
    if (stk_rtnl_do(nl, stk_rtnl_dellink_msg(buf, "tv-host"), "del again", NULL, &err) != -ENODEV)
        return 12;
    stk_error_freep(&err);
    stk_rtnl_close(nl);
    close(ns);
    return 0;
#undef err
}

static void test_kernel_accepts(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip(); /* needs root for a network namespace */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (unshare(CLONE_NEWNET) < 0)
            _exit(100);
        int r = kernel_checks();
        if (r)
            fprintf(stderr, "kernel check %d failed\n", r);
        _exit(r);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    if (WEXITSTATUS(st) == 100)
        skip(); /* no network namespaces here */
    assert_int_equal(WEXITSTATUS(st), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bridge),       cmocka_unit_test(test_veth_peer_in_namespace),
        cmocka_unit_test(test_link_changes), cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_routes),       cmocka_unit_test(test_kernel_accepts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
