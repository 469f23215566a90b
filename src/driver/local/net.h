/* SPDX-License-Identifier: Apache-2.0 */
/*
 * net — the local backend's sandbox network: a network namespace per
 * sandbox (bind-mounted at <run_dir>/netns/<id> so an OCI runtime joins it
 * by path), a veth pair onto stockade's bridge, addresses from a pool, and
 * the sandbox's egress chain compiled by src/render/nft.c. Plus the reader
 * that turns the kernel's NFLOG lines into egress_denied events.
 *
 * Everything created here carries stockade's names (bridge stk0, links
 * stk-<id>, tables inet/bridge stockade, <run_dir>/netns/<id>, <run_dir>/net/);
 * stk_net_gc() looks for nothing else.
 */
#ifndef STK_DRIVER_LOCAL_NET_H
#define STK_DRIVER_LOCAL_NET_H

#include "render/render.h"

#define STK_NET_RUN_DIR "/run/stockade"
/* host-wide: the network lock and the address leases (one bridge, one set
 * of addresses and NFLOG groups per host, whatever the run directory) */
#define STK_NET_HOST_DIR "/run/stockade-net"
#define STK_NET_BRIDGE   "stk0"
/* not 10.88.0.0/16: podman's default network, whose cni-podman0 stays */
#define STK_NET_POOL4         "10.83.0.0/16"
#define STK_NET_POOL6         "fd88::/64"
#define STK_NET_LOG_GROUP     8801
#define STK_NET_MAX_SANDBOXES 4096

struct stk_net_config {
    const char *run_dir;          /* STK_NET_RUN_DIR */
    const char *bridge;           /* STK_NET_BRIDGE */
    struct stk_cidr pool4, pool6; /* either may be absent (family NONE), not both */
    struct stk_cidr resolver;     /* where allow-dns-egress goes; absent: DNS denied */
    bool nat;                     /* masquerade to the uplink (EnvironmentConfig data.local.nat) */
    bool routed;                  /* the operator routes the pool (data.local.routed) */
    uint16_t log_group_base;      /* sandbox with address index i logs to group base + i */
    const struct stk_nft_service *services; /* offered on the bridge address */
    size_t n_services;
    /* stk_net_up: the sandbox's egress proxy listens on the host side, at
     * the bridge address on stk_net_proxy_port() (gVisor) */
    bool proxy_host;
};

/* The hard defaults: /run/stockade, stk0, 10.83.0.0/16 + fd88::/64, no
 * resolver, no NAT. */
void stk_net_config_default(struct stk_net_config *c);
/* Refuses (EADDRINUSE, naming the device and the setting) a pool of c
 * that another device of this thread's network namespace is routed for:
 * it would get the host's traffic for the sandboxes. Checked before the
 * bridge is made; `doctor` asks it for the defaults. */
int stk_net_pool_check(const struct stk_net_config *c, struct stk_error **err);
/* Applies EnvironmentConfig data.local (addressPool, resolver, nat) over c.
 * env may be NULL. */
int stk_net_config_apply_env(struct stk_net_config *c, const struct stk_envconfig *env,
                             struct stk_error **err);

struct stk_net;

/*
 * Sets up sandbox id's network for boundary b, in order: address lease,
 * ruleset compiled (nothing touched yet), bridge, network namespace, veth
 * pair, addresses and routes inside, nft transaction. Each step undoes
 * itself when a later one fails. On success *ret holds the handle; its
 * netns path is what the OCI config's linux.namespaces[network].path gets.
 * userns (a user namespace's nsfs path, or NULL for the caller's) owns the
 * network namespace: the sandbox's own, so that a runtime that joins it
 * first may still join the network namespace; host root configures it
 * either way.
 */
int stk_net_up(const struct stk_net_config *c, const struct stk_boundary *b, const char *id,
               const char *userns, struct stk_net **ret, struct stk_error **err);
/* Re-opens a sandbox's network set up earlier (by another process). */
int stk_net_open(const struct stk_net_config *c, const char *id, struct stk_net **ret,
                 struct stk_error **err);
const char *stk_net_netns_path(const struct stk_net *n);
/* Where stk_net_up(c, ..., id) puts the namespace, known before it exists
 * (the OCI config is rendered before anything touches the kernel). */
int stk_net_netns_path_for(const struct stk_net_config *c, const char *id, char *buf, size_t n,
                           struct stk_error **err);
const char *stk_net_veth(const struct stk_net *n);
/* The NFLOG group of the sandbox's denials: its own, so that each run's
 * reader (stk_egress_log_open) binds only its sandbox's group. */
uint16_t stk_net_log_group(const struct stk_net *n);
/* The port of the bridge address reserved for the sandbox's host-side
 * egress proxy, and the bridge address it listens on (IPv4 when the pool
 * has it, else IPv6). */
uint16_t stk_net_proxy_port(const struct stk_net *n);
struct stk_cidr stk_net_gateway(const struct stk_net *n);
/* The sandbox's addresses (family NONE when absent). */
void stk_net_addresses(const struct stk_net *n, struct stk_cidr *ret4, struct stk_cidr *ret6);
/* Drops the host's neighbour entries for the sandbox's addresses on the
 * bridge (a previous owner's MAC), so that the host's next packet asks. */
void stk_net_forget_neighbours(const struct stk_net *n);
/* Removes everything stk_net_up created, and the bridge and tables when no
 * sandbox uses them any more. Keeps going past failures, reports the
 * first. Frees n. */
int stk_net_down(struct stk_net *n, struct stk_error **err);
void stk_net_free(struct stk_net *n);
/* Removes leftovers of sandboxes not in live (by stockade's names only):
 * their state, leases, namespaces, stk-* links, chains; the bridge and the
 * tables when nothing is live. Returns how many objects it removed. */
int stk_net_gc(const struct stk_net_config *c, const char *const *live, size_t n_live,
               struct stk_error **err);
/* Test hook: transactions and listings this process ran through
 * libnftables (which fetches the ruleset first). A sandbox's own up and
 * down run none once the shared objects exist. */
unsigned long stk_net_nft_library_calls(void);
/* In the module "nft" (nftlib.c; load it with STK_MODULE_SYM): text run
 * through libnftables; with ret_out, its output (JSON when json), to free.
 * Errors carry libnftables' message. */
int stk_nftlib_run(const char *text, bool json, char **ret_out, struct stk_error **err);

/* ---- denied attempts as events ------------------------------------------ */

#define STK_EGRESS_LOG_RATE 10 /* events per sandbox per second, then a summary */

struct stk_egress_event {
    enum { STK_EGRESS_DENIED, STK_EGRESS_SUPPRESSED } type;
    char sandbox[STK_NFT_MAX_ID + 1];
    char dst[STK_CIDR_STRLEN];
    uint16_t port;
    char proto[8];      /* "TCP", "UDP", "SCTP", "ICMP", ... */
    const char *policy; /* the deny that applied: "deny-egress", "host", or the excepting policy */
    char except[STK_CIDR_STRLEN]; /* the except that held dst, "" when none */
    uint64_t suppressed;          /* STK_EGRESS_SUPPRESSED: how many were not reported */
};

struct stk_egress_log;
/* Binds the NFLOG group in the calling thread's network namespace. */
int stk_egress_log_open(uint16_t group, struct stk_egress_log **ret, struct stk_error **err);
/* Events per sandbox per second before suppression (default
 * STK_EGRESS_LOG_RATE; 0 = no limit). */
void stk_egress_log_set_rate(struct stk_egress_log *l, unsigned per_second);
/* Tells the reader sandbox id's boundary, so events name the policy. */
int stk_egress_log_watch(struct stk_egress_log *l, const char *id, const struct stk_boundary *b);
int stk_egress_log_fd(const struct stk_egress_log *l);
/* Waits up to timeout_ms for log lines and reports at most max events;
 * returns how many (0 on timeout). Non-blocking with timeout_ms 0. */
int stk_egress_log_read(struct stk_egress_log *l, int timeout_ms, struct stk_egress_event *ret,
                        size_t max, struct stk_error **err);
/* Reports pending summaries of suppressed events (call before closing). */
size_t stk_egress_log_flush(struct stk_egress_log *l, struct stk_egress_event *ret, size_t max);
void stk_egress_log_close(struct stk_egress_log *l);
/* One event as a JSON line (no newline), for the run's event output. */
void stk_egress_event_json(const struct stk_egress_event *e, struct stk_buf *out);

#endif
