/* SPDX-License-Identifier: Apache-2.0 */
/*
 * render — pure functions boundary -> objects a backend applies. Nothing here
 * touches the kernel, the filesystem or the network: the same boundary and
 * options always give the same bytes (golden-tested).
 */
#ifndef STK_RENDER_H
#define STK_RENDER_H

#include "boundary/boundary.h"

/* ==== nftables (local egress enforcement) ================================ */

/*
 * The local driver compiles the boundary's egress model into one chain per
 * sandbox in stockade's own tables `inet stockade` (policy) and `bridge
 * stockade` (source-address binding per bridge port). See docs/egress.md.
 */

#define STK_NFT_TABLE        "stockade"
#define STK_NFT_MAX_ID       48 /* sandbox id: [a-z0-9][a-z0-9-]*, at most this long */
#define STK_NFT_MAX_SERVICES 16

/* A TCP/UDP service stockade itself offers on the bridge address. */
struct stk_nft_service {
    enum stk_protocol protocol;
    uint16_t port;
};

/* What the driver knows and the boundary does not. Addresses are
 * full-length prefixes; family STK_FAMILY_NONE means absent. */
struct stk_nft_facts {
    const char *id;        /* sandbox id */
    const char *namespace; /* the sandbox's metadata.namespace (b->namespace) */
    const char *bridge;    /* "stk0" */
    const char *veth;      /* host side of the sandbox's veth pair, "stk-<short id>" */
    struct stk_cidr addr4, addr6;
    struct stk_cidr bridge4, bridge6; /* the bridge's own addresses (gateway) */
    struct stk_cidr resolver;         /* the DNS resolver allow-dns-egress reaches */
    const struct stk_nft_service *services;
    size_t n_services;
    uint16_t log_group;           /* NFLOG group of the final log rule */
    bool nat;                     /* masquerade the pool to the uplink (operator switch) */
    struct stk_cidr pool4, pool6; /* the address pool, for NAT */
};

/* Whether id is a valid sandbox id ([a-z0-9][a-z0-9-]*, <= STK_NFT_MAX_ID). */
bool stk_nft_id_valid(const char *id);
/* The named set holding the addresses of namespace ns's sandboxes:
 * "ns4-<ns>" / "ns6-<ns>". */
void stk_nft_ns_set(const char *ns, enum stk_family family, struct stk_buf *out);

/*
 * The nft script (for `nft -f` / nft_run_cmd_from_buffer, applied as one
 * transaction) that installs the sandbox: stockade's base chains (idempotent),
 * the sandbox chain compiled from b->egress, its address in the source
 * vmaps and in its namespace's member sets, and its bridge-port binding.
 * Returns -EINVAL with *err set when the facts are malformed. The caller
 * frees *ret.
 */
int stk_nft_render(const struct stk_boundary *b, const struct stk_nft_facts *f, char **ret,
                   struct stk_error **err);
/* The transaction that removes everything stk_nft_render added for the
 * sandbox (the base chains stay). */
int stk_nft_render_remove(const struct stk_nft_facts *f, char **ret, struct stk_error **err);

/* The log prefix of the sandbox's final deny rule, "stk:<id>:", and of its
 * host-input deny rule, "stk:<id>:host:". */
#define STK_NFT_LOG_PREFIX "stk:"

#endif
