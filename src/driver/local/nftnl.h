/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A sandbox's own nftables rules without libnftables: the subset of nft's
 * language that src/render/nft.c writes for one sandbox (its chains, rules,
 * anonymous sets and set elements, by name) compiled to one nf_tables
 * netlink batch, sent over libmnl. libnftables fetches the kernel's cache
 * of the whole ruleset before every transaction (every chain and set of
 * every sandbox, and the elements of each interval set, one request per
 * set), so each create and rm grew with the number of sandboxes present;
 * this batch refers to everything by name and needs no cache at all.
 * The shared objects (tables, maps, base chains) stay libnftables' to make,
 * once (net.c). The compiled bytecode is what nft itself sends for the
 * same text (tests/unit/test_nftnl.c compares the two in private network
 * namespaces for every golden ruleset).
 */
#ifndef STK_DRIVER_LOCAL_NFTNL_H
#define STK_DRIVER_LOCAL_NFTNL_H

#include "base/base.h"

#include <stdint.h>

/* Compiles text (lines of the subset; '#' lines are skipped) to one batch
 * (begin, messages, end) appended to out; *n_msgs: messages that ask for
 * an acknowledgement. -ENOTSUP names the first line outside the subset;
 * nothing is sent. Pure. */
int stk_nftnl_compile(const char *text, uint32_t seq, struct stk_buf *out, size_t *n_msgs,
                      struct stk_error **err);

/* Compiles and applies text as one kernel transaction in the calling
 * thread's network namespace: all of it or nothing. */
int stk_nftnl_apply(const char *text, struct stk_error **err);

/* Whether table (family "inet" or "bridge") exists: one NFT_MSG_GETTABLE
 * of that table (not a dump). */
bool stk_nftnl_table_exists(const char *family, const char *table);

/* Whether the set (of table, family "inet" or "bridge") holds the element
 * key: one NFT_MSG_GETSETELEM of that element (not a dump). */
bool stk_nftnl_element_exists(const char *family, const char *table, const char *set,
                              const uint8_t *key, size_t len);

/* Test hook: netlink requests this module sent with NLM_F_DUMP (none, by
 * construction; tests/unit/test_nftnl.c checks it stays so). */
unsigned long stk_nftnl_dump_requests(void);

#endif
