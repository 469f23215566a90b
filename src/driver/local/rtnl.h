/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The rtnetlink the local network needs, through libmnl: links (a bridge, a
 * veth pair whose peer is made directly in the sandbox's namespace), bridge
 * port flags, addresses, routes and link removal. The builders only fill a
 * buffer (unit-tested by parsing their output back); stk_rtnl_do() sends
 * one request and waits for the kernel's acknowledgement.
 */
#ifndef STK_DRIVER_LOCAL_RTNL_H
#define STK_DRIVER_LOCAL_RTNL_H

#include "base/base.h"

#include <linux/netlink.h>
#include <stdbool.h>
#include <stdint.h>

/* Every builder's buffer: large enough for any of the messages below, with
 * link names of at most IFNAMSIZ - 1 characters (the kernel's own limit;
 * callers pass no longer ones). */
#define STK_RTNL_BUF 512

/* RTM_NEWLINK (create, exclusive): a bridge called name with mac. */
struct nlmsghdr *stk_rtnl_bridge_msg(void *buf, const char *name, const uint8_t mac[6]);
/* RTM_NEWLINK (create, exclusive): a veth pair name <-> peer, the peer made
 * in the network namespace peer_netns_fd, name enslaved to master (0:
 * none). Both ends are left down. */
struct nlmsghdr *stk_rtnl_veth_msg(void *buf, const char *name, const char *peer, int peer_netns_fd,
                                   unsigned master);
/* RTM_NEWLINK on an existing link: bridge port flags (its master must be a
 * bridge). */
struct nlmsghdr *stk_rtnl_brport_msg(void *buf, unsigned ifindex, bool isolated, bool learning);
/* RTM_NEWLINK on an existing link: administratively up. */
struct nlmsghdr *stk_rtnl_up_msg(void *buf, unsigned ifindex);
/* RTM_DELLINK by name. */
struct nlmsghdr *stk_rtnl_dellink_msg(void *buf, const char *name);
/* RTM_GETLINK by name (the answer is one RTM_NEWLINK). */
struct nlmsghdr *stk_rtnl_getlink_msg(void *buf, const char *name);
/* RTM_NEWADDR: a (with its prefix) on ifindex; replace: an existing one is
 * updated instead of refused; nodad: IPv6 without duplicate detection. */
struct nlmsghdr *stk_rtnl_addr_msg(void *buf, unsigned ifindex, const struct stk_cidr *a,
                                   bool replace, bool nodad);
/* RTM_NEWROUTE in the main table: dst out of ifindex, via gw (NULL: dst is
 * on the link). */
struct nlmsghdr *stk_rtnl_route_msg(void *buf, unsigned ifindex, const struct stk_cidr *dst,
                                    const struct stk_cidr *gw);

/* A route netlink socket, bound, in the caller's thread's network
 * namespace at the time of stk_rtnl_open(). */
struct stk_rtnl;
int stk_rtnl_open(struct stk_rtnl **ret, struct stk_error **err);
void stk_rtnl_close(struct stk_rtnl *r);
/* Sends nlh (a request built above) asking for an acknowledgement and waits
 * for it; a refusal is an error "<what>: <kernel's reason>". With ret_ifindex
 * (RTM_GETLINK), the answer's interface index. */
int stk_rtnl_do(struct stk_rtnl *r, struct nlmsghdr *nlh, const char *what, unsigned *ret_ifindex,
                struct stk_error **err);

#endif
