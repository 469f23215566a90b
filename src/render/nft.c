/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The nftables compiler: boundary egress model + driver facts -> one nft
 * transaction. Pure: no kernel, no files; the same inputs give the same
 * bytes (tests/golden/nft-*.nft).
 *
 * Mapping (NetworkPolicy -> nft), see docs/egress.md:
 *   isolated + default deny      final `log group N` + `counter drop` in the sandbox chain
 *   replies                      `ct state established,related accept`
 *   podSelector: {} (namespace)  `ip daddr @ns4-<ns>` / `ip6 daddr @ns6-<ns>`
 *   namespaceSelector            the other namespace's member sets
 *   kube-system DNS              the configured resolver only, the rule's ports
 *   ipBlock cidr + except        `ip daddr C ip daddr != { except }` (same family)
 *   ports / endPort              `tcp dport P` / `tcp dport P-E` / `meta l4proto tcp`
 * Rules only accept, so their order does not matter — except stockade's own
 * host rule: traffic to the host itself is dropped before any allow, since
 * 0.0.0.0/0 would otherwise let a sandbox reach every host-local service.
 */
#include "render/render.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>

#define T  "inet " STK_NFT_TABLE
#define BT "bridge " STK_NFT_TABLE

/* Kernel rate limit on log lines; the event reader limits again per sandbox
 * and counts what it suppresses. */
#define LOG_LIMIT "limit rate 50/second burst 100 packets"

static const char *const proto_nft[_STK_PROTO_N] = {"tcp", "udp", "sctp"};
static const char *const family_kw[] = {[STK_FAMILY_V4] = "ip", [STK_FAMILY_V6] = "ip6"};

bool stk_nft_id_valid(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > STK_NFT_MAX_ID || id[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(islower((unsigned char)id[i]) || isdigit((unsigned char)id[i]) || id[i] == '-'))
            return false;
    return true;
}

void stk_nft_ns_set(const char *ns, enum stk_family family, struct stk_buf *out)
{
    stk_buf_printf(out, "ns%c-%s", family == STK_FAMILY_V4 ? '4' : '6', ns);
}

static const char *addr_text(const struct stk_cidr *c, char buf[STK_CIDR_STRLEN])
{
    stk_cidr_format(c, buf);
    unsigned full = c->family == STK_FAMILY_V4 ? 32 : 128;
    if (c->prefix == full)
        *strrchr(buf, '/') = '\0';
    return buf;
}

static bool has(const struct stk_cidr *c)
{
    return c->family == STK_FAMILY_V4 || c->family == STK_FAMILY_V6;
}

/* Kubernetes names (namespaces) are DNS labels; anything else must not
 * reach the nft parser. */
static bool name_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '-'))
            return false;
    return true;
}

static bool ifname_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 15)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '-' || s[i] == '_' || s[i] == '.'))
            return false;
    return true;
}

static int facts_check(const struct stk_nft_facts *f, struct stk_error **err)
{
    if (!stk_nft_id_valid(f->id))
        return stk_error_make(err, EINVAL, "invalid sandbox id \"%s\"", f->id ? f->id : "");
    if (!name_valid(f->namespace))
        return stk_error_make(err, EINVAL, "invalid namespace \"%s\"",
                              f->namespace ? f->namespace : "");
    if (!ifname_valid(f->bridge) || !ifname_valid(f->veth))
        return stk_error_make(err, EINVAL, "invalid interface name");
    if (!has(&f->addr4) && !has(&f->addr6))
        return stk_error_make(err, EINVAL, "sandbox %s has no address", f->id);
    if ((has(&f->addr4) && f->addr4.family != STK_FAMILY_V4) ||
        (has(&f->addr6) && f->addr6.family != STK_FAMILY_V6))
        return stk_error_make(err, EINVAL, "sandbox %s: address of the wrong family", f->id);
    if (f->n_services > STK_NFT_MAX_SERVICES)
        return stk_error_make(err, EINVAL, "too many bridge services (at most %d)",
                              STK_NFT_MAX_SERVICES);
    return 0;
}

/* The ports part of one rule line: "" or " tcp dport 443" etc. */
static void port_match(const struct stk_eport *p, struct stk_buf *out)
{
    if (!p)
        return;
    if (p->port == 0)
        stk_buf_printf(out, " meta l4proto %s", proto_nft[p->protocol]);
    else if (p->end_port && p->end_port != p->port)
        stk_buf_printf(out, " %s dport %u-%u", proto_nft[p->protocol], p->port, p->end_port);
    else
        stk_buf_printf(out, " %s dport %u", proto_nft[p->protocol], p->port);
}

/* One accept line per port entry (or one without ports) for a peer match. */
static void accept_lines(struct stk_buf *out, const char *chain, const char *peer,
                         const struct stk_erule *r, const char *why)
{
    size_t n = r->n_ports ? r->n_ports : 1;
    for (size_t i = 0; i < n; i++) {
        stk_buf_printf(out, "add rule " T " %s %s", chain, peer);
        port_match(r->n_ports ? &r->ports[i] : NULL, out);
        stk_buf_printf(out, " accept comment \"%s\"\n", why);
    }
}

/* Excepts that another except of the list already covers say nothing more,
 * and nft rejects overlapping intervals in one set. */
static bool except_redundant(const struct stk_erule *r, size_t i)
{
    for (size_t j = 0; j < r->n_except; j++) {
        if (j == i || !stk_cidr_contains(&r->except[j], &r->except[i]))
            continue;
        if (!stk_cidr_equal(&r->except[j], &r->except[i]) || j < i)
            return true;
    }
    return false;
}

/* The except list of an ipBlock: its own excepts, minus those another one
 * covers; for allow-external-egress also the local address pool, which is
 * this machine's pod CIDR (Datalab excepts podCIDRs from broad egress so
 * that other namespaces are reached only through internal egress). */
static void ipblock_peer(const struct stk_erule *r, const struct stk_cidr *extra, size_t n_extra,
                         struct stk_buf *peer)
{
    char cb[STK_CIDR_STRLEN];
    const char *kw = family_kw[r->cidr.family];
    stk_buf_printf(peer, "%s daddr %s", kw, stk_cidr_format(&r->cidr, cb));
    bool first = true;
    for (size_t i = 0; i < r->n_except + n_extra; i++) {
        const struct stk_cidr *c = i < r->n_except ? &r->except[i] : &extra[i - r->n_except];
        if (i < r->n_except ? except_redundant(r, i) : !stk_cidr_contains(&r->cidr, c))
            continue;
        bool covered = false;
        for (size_t j = 0; i >= r->n_except && j < r->n_except && !covered; j++)
            covered = stk_cidr_contains(&r->except[j], c);
        if (covered)
            continue;
        if (first)
            stk_buf_printf(peer, " %s daddr != { ", kw);
        else
            stk_buf_puts(peer, ", ");
        stk_buf_puts(peer, addr_text(c, cb));
        first = false;
    }
    if (!first)
        stk_buf_puts(peer, " }");
}

static void rule_lines(const struct stk_boundary *b, const struct stk_nft_facts *f,
                       const struct stk_epolicy *p, size_t j, const char *chain,
                       struct stk_buf *out)
{
    const struct stk_erule *r = &p->rules[j];
    _cleanup_buf_ struct stk_buf why = {0};
    _cleanup_buf_ struct stk_buf peer = {0};
    char cb[STK_CIDR_STRLEN];

    stk_buf_printf(&why, "%s/%zu", stk_netpol_names[p->id], j);
    switch (r->peer) {
    case STK_PEER_SAME_NAMESPACE:
    case STK_PEER_NAMESPACE: {
        const char *ns = r->peer == STK_PEER_SAME_NAMESPACE ? b->namespace : r->namespace;
        const struct stk_label_selector *sel = r->pod_selector;
        if (sel && (sel->match_labels.n || sel->match_expressions.n)) {
            /* Sandboxes carry labels, but the member sets are per namespace:
             * a narrower selector is not compiled, so the rule allows
             * nothing here (fail closed). */
            _cleanup_buf_ struct stk_buf d = {0};
            stk_erule_describe(b, r, &d);
            stk_buf_printf(out, "# %s: %s: pod selectors are not enforced locally (denied)\n",
                           stk_buf_str(&why), stk_buf_str(&d));
            return;
        }
        if (!name_valid(ns)) {
            stk_buf_printf(out, "# %s: namespace not a DNS label (denied)\n", stk_buf_str(&why));
            return;
        }
        for (int fam = STK_FAMILY_V4; fam <= STK_FAMILY_V6; fam += 2) {
            stk_buf_free(&peer);
            stk_buf_printf(&peer, "%s daddr @", family_kw[fam]);
            stk_nft_ns_set(ns, fam, &peer);
            accept_lines(out, chain, stk_buf_str(&peer), r, stk_buf_str(&why));
        }
        return;
    }
    case STK_PEER_CLUSTER_DNS:
        if (!has(&f->resolver)) {
            stk_buf_printf(out, "# %s: no resolver configured (denied)\n", stk_buf_str(&why));
            return;
        }
        stk_buf_printf(&peer, "%s daddr %s", family_kw[f->resolver.family],
                       addr_text(&f->resolver, cb));
        accept_lines(out, chain, stk_buf_str(&peer), r, stk_buf_str(&why));
        return;
    case STK_PEER_IPBLOCK: {
        const struct stk_cidr pools[2] = {f->pool4, f->pool6};
        bool ext = p->id == STK_NETPOL_EXTERNAL;
        ipblock_peer(r, pools, ext ? 2 : 0, &peer);
        accept_lines(out, chain, stk_buf_str(&peer), r, stk_buf_str(&why));
        return;
    }
    }
}

static void base_lines(const struct stk_nft_facts *f, struct stk_buf *out)
{
    char cb[STK_CIDR_STRLEN];
    /* Base chains are flushed and refilled in every transaction, so each
     * apply leaves them exactly as this version of stockade wants them. */
    stk_buf_puts(out, "add table " T "\n"
                      "add map " T " sb4 { type ipv4_addr : verdict; }\n"
                      "add map " T " sb6 { type ipv6_addr : verdict; }\n"
                      "add map " T " off4 { type ipv4_addr : verdict; }\n"
                      "add map " T " off6 { type ipv6_addr : verdict; }\n");
    stk_buf_puts(out, "add chain " T " forward { type filter hook forward priority filter; "
                      "policy accept; }\n"
                      "add chain " T " input { type filter hook input priority filter; "
                      "policy accept; }\n"
                      "add chain " T " offhost { type filter hook forward priority filter + 10; "
                      "policy accept; }\n"
                      "flush chain " T " forward\n"
                      "flush chain " T " input\n"
                      "flush chain " T " offhost\n");
    /* Unless the operator masquerades or routes the pool, nothing a sandbox
     * sends leaves the bridge, whatever the host's own forwarding settings:
     * an allowed external destination is still never reached through this
     * host's uplink. A later base chain, so that the sandbox chains have
     * decided (and logged denials) first. */
    if (!f->nat && !f->routed)
        /* each sandbox's own so-<id> chain logs the drop as its denial */
        stk_buf_printf(out,
                       "add rule " T " offhost iifname \"%1$s\" oifname != \"%1$s\" ip saddr "
                       "vmap @off4\n"
                       "add rule " T " offhost iifname \"%1$s\" oifname != \"%1$s\" ip6 saddr "
                       "vmap @off6\n"
                       "add rule " T " offhost iifname \"%1$s\" oifname != \"%1$s\" counter "
                       "drop\n",
                       f->bridge);
    /* Neighbour discovery and multicast listener reports to the host carry
     * no data and would only fill the denial log. A sandbox is known by its
     * source address (bridged packets show the bridge as iifname); the
     * bridge table binds each address to its port. */
    /* The host-side egress proxies' ports (gVisor) on the bridge address
     * are the sandboxes': nothing but the bridge reaches them (each
     * sandbox's own chain admits its own port only). */
    stk_buf_puts(out, "add set " T " px { type inet_service; }\n");
    for (int fam = STK_FAMILY_V4; fam <= STK_FAMILY_V6; fam += 2) {
        const struct stk_cidr *gw = fam == STK_FAMILY_V4 ? &f->bridge4 : &f->bridge6;
        if (has(gw))
            stk_buf_printf(out,
                           "add rule " T " input iifname != \"%s\" %s daddr %s tcp dport @px "
                           "counter drop comment \"egress proxy ports\"\n",
                           f->bridge, family_kw[fam], addr_text(gw, cb));
    }
    stk_buf_printf(
        out,
        "add rule " T " forward iifname \"%1$s\" ip saddr vmap @sb4\n"
        "add rule " T " forward iifname \"%1$s\" ip6 saddr vmap @sb6\n"
        "add rule " T " forward iifname \"%1$s\" counter drop\n"
        "add rule " T " input iifname \"%1$s\" icmpv6 type { nd-neighbor-solicit, "
        "nd-neighbor-advert, nd-router-solicit, mld-listener-report, mld2-listener-report } "
        "accept\n"
        "add rule " T " input iifname \"%1$s\" ip saddr vmap @sb4\n"
        "add rule " T " input iifname \"%1$s\" ip6 saddr vmap @sb6\n"
        "add rule " T " input iifname \"%1$s\" counter drop\n",
        f->bridge);
    if (f->nat) {
        stk_buf_puts(out, "add chain " T " postrouting { type nat hook postrouting priority "
                          "srcnat; policy accept; }\n"
                          "flush chain " T " postrouting\n");
        for (int fam = STK_FAMILY_V4; fam <= STK_FAMILY_V6; fam += 2) {
            const struct stk_cidr *pool = fam == STK_FAMILY_V4 ? &f->pool4 : &f->pool6;
            if (has(pool))
                stk_buf_printf(out,
                               "add rule " T " postrouting %s saddr %s oifname != \"%s\" "
                               "masquerade\n",
                               family_kw[fam], stk_cidr_format(pool, cb), f->bridge);
        }
    }
    stk_buf_puts(out, "add table " BT "\n"
                      "add map " BT " ports { type ifname : verdict; }\n"
                      "add chain " BT " prerouting { type filter hook prerouting priority "
                      "filter; policy accept; }\n"
                      "flush chain " BT " prerouting\n"
                      "add rule " BT " prerouting iifname vmap @ports\n");
}

/* Ingress (docs/egress.md, "Ingress"): what the host originates toward a
 * sandbox (output: port-forward, the gateway) goes through the
 * destination's ingress chain. What other sandboxes send is routed through
 * the host and decided by their egress chains (allow-sandbox-ingress). */
static void ingress_base_lines(const struct stk_nft_facts *f, struct stk_buf *out)
{
    stk_buf_printf(out,
                   "add map " T " in4 { type ipv4_addr : verdict; }\n"
                   "add map " T " in6 { type ipv6_addr : verdict; }\n"
                   "add chain " T " output { type filter hook output priority filter; "
                   "policy accept; }\n"
                   "flush chain " T " output\n"
                   "add rule " T " output oifname \"%1$s\" ip daddr vmap @in4\n"
                   "add rule " T " output oifname \"%1$s\" ip6 daddr vmap @in6\n",
                   f->bridge);
}

/* The sandbox's ingress chain (what the host sends it): replies, neighbour
 * discovery, its declared ports; nothing else. */
static void ingress_chain_lines(const struct stk_boundary *b, const struct stk_nft_facts *f,
                                struct stk_buf *out)
{
    char cb[STK_CIDR_STRLEN];
    _cleanup_free_ char *chain = stk_xasprintf("si-%s", f->id);
    stk_buf_printf(out,
                   "add chain " T " %1$s\nflush chain " T " %1$s\n"
                   "add rule " T " %1$s ct state established,related accept\n"
                   "add rule " T " %1$s icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } "
                   "accept\n",
                   chain);
    if (b->n_ports) {
        stk_buf_printf(out, "add rule " T " %s tcp dport { ", chain);
        for (size_t i = 0; i < b->n_ports; i++)
            stk_buf_printf(out, "%s%u", i ? ", " : "", b->ports[i].port);
        stk_buf_puts(out, " } accept comment \"" STK_INGRESS_DECLARED "\"\n");
    }
    stk_buf_printf(out, "add rule " T " %s counter drop comment \"" STK_INGRESS_DENY "\"\n", chain);
    for (int fam = STK_FAMILY_V4; fam <= STK_FAMILY_V6; fam += 2) {
        const struct stk_cidr *a = fam == STK_FAMILY_V4 ? &f->addr4 : &f->addr6;
        if (has(a))
            stk_buf_printf(out, "add element " T " in%c { %s : jump %s }\n",
                           fam == STK_FAMILY_V4 ? '4' : '6', addr_text(a, cb), chain);
    }
}

static void ns_sets(const char *ns, struct stk_buf *out)
{
    for (int fam = STK_FAMILY_V4; fam <= STK_FAMILY_V6; fam += 2) {
        stk_buf_puts(out, "add set " T " ");
        stk_nft_ns_set(ns, fam, out);
        stk_buf_printf(out, " { type %s; }\n", fam == STK_FAMILY_V4 ? "ipv4_addr" : "ipv6_addr");
    }
}

/* The sandbox's own part: its sets' declarations, chains, rules and
 * elements (after the shared part, or alone once that exists). */
static int render_own(const struct stk_boundary *b, const struct stk_nft_facts *f,
                      struct stk_buf *out, struct stk_error **err)
{
    _cleanup_free_ char *chain = NULL, *port_chain = NULL;
    char cb[STK_CIDR_STRLEN], cb2[STK_CIDR_STRLEN];
    if (b->model == STK_MODEL_INJECTION)
        return stk_error_make(err, EINVAL,
                              "injection sandboxes follow their workload's own policies");
    chain = stk_xasprintf("sb-%s", f->id);
    port_chain = stk_xasprintf("sp-%s", f->id);

    /* Member sets of every namespace the model names. */
    ns_sets(f->namespace, out);
    for (size_t i = 0; i < b->egress.n; i++)
        for (size_t j = 0; j < b->egress.policies[i].n_rules; j++) {
            const struct stk_erule *er = &b->egress.policies[i].rules[j];
            if (er->peer == STK_PEER_NAMESPACE && name_valid(er->namespace) &&
                strcmp(er->namespace, f->namespace))
                ns_sets(er->namespace, out);
        }

    stk_buf_printf(out, "add chain " T " %1$s\nflush chain " T " %1$s\n", chain);
    stk_buf_printf(out, "add rule " T " %s ct state established,related accept\n", chain);
    stk_buf_printf(out, "add rule " T " %s ct state invalid drop\n", chain);

    if (b->egress.n == 0) {
        /* No policy selects the sandbox: NetworkPolicy allows everything.
         * Only stockade's host rule still applies. */
        stk_buf_puts(out, "# not isolated: every destination is allowed\n");
    }

    /* DNS first: the resolver may be a service on the bridge address. */
    for (size_t i = 0; i < b->egress.n; i++)
        for (size_t j = 0; j < b->egress.policies[i].n_rules; j++)
            if (b->egress.policies[i].rules[j].peer == STK_PEER_CLUSTER_DNS)
                rule_lines(b, f, &b->egress.policies[i], j, chain, out);

    /* The host itself: only the services stockade offers on the bridge. */
    for (size_t i = 0; i < f->n_services; i++)
        for (int fam = STK_FAMILY_V4; fam <= STK_FAMILY_V6; fam += 2) {
            const struct stk_cidr *gw = fam == STK_FAMILY_V4 ? &f->bridge4 : &f->bridge6;
            if (has(gw))
                stk_buf_printf(out, "add rule " T " %s %s daddr %s %s dport %u accept\n", chain,
                               family_kw[fam], addr_text(gw, cb),
                               proto_nft[f->services[i].protocol], f->services[i].port);
        }
    /* its own egress proxy on the host side (gVisor), which listens on the
     * IPv4 bridge address, or the IPv6 one when the pool has no IPv4: that
     * address and port only */
    const struct stk_cidr *pgw = has(&f->bridge4) ? &f->bridge4 : &f->bridge6;
    if (f->proxy_host && has(pgw))
        stk_buf_printf(out,
                       "add rule " T " %1$s %2$s daddr %3$s tcp dport %4$u accept comment "
                       "\"egress proxy\"\n"
                       "add element " T " px { %4$u }\n",
                       chain, family_kw[pgw->family], addr_text(pgw, cb), f->proxy_port);
    stk_buf_printf(out,
                   "add rule " T " %1$s fib daddr type { local, broadcast, multicast } " LOG_LIMIT
                   " log group %2$u prefix \"" STK_NFT_LOG_PREFIX "%3$s:host:\"\n"
                   "add rule " T " %1$s fib daddr type { local, broadcast, multicast } "
                   "counter drop\n",
                   chain, f->log_group, f->id);

    if (b->egress.n == 0)
        stk_buf_printf(out, "add rule " T " %s accept\n", chain);
    for (size_t i = 0; i < b->egress.n; i++)
        for (size_t j = 0; j < b->egress.policies[i].n_rules; j++)
            if (b->egress.policies[i].rules[j].peer != STK_PEER_CLUSTER_DNS)
                rule_lines(b, f, &b->egress.policies[i], j, chain, out);

    stk_buf_printf(out,
                   "add rule " T " %1$s " LOG_LIMIT " log group %2$u prefix \"" STK_NFT_LOG_PREFIX
                   "%3$s:\"\n"
                   "add rule " T " %1$s counter drop comment \"%4$s\"\n",
                   chain, f->log_group, f->id, stk_netpol_names[STK_NETPOL_DENY]);

    /* Members and dispatch last: the chain exists before anything jumps. */
    for (int fam = STK_FAMILY_V4; fam <= STK_FAMILY_V6; fam += 2) {
        const struct stk_cidr *a = fam == STK_FAMILY_V4 ? &f->addr4 : &f->addr6;
        if (!has(a))
            continue;
        stk_buf_puts(out, "add element " T " ");
        stk_nft_ns_set(f->namespace, fam, out);
        stk_buf_printf(out, " { %s }\n", addr_text(a, cb));
        stk_buf_printf(out, "add element " T " sb%c { %s : jump %s }\n",
                       fam == STK_FAMILY_V4 ? '4' : '6', addr_text(a, cb), chain);
    }

    /* What the model allowed but the host does not forward (no nat, not
     * routed): logged as this sandbox's, then dropped (the offhost chain
     * jumps here only then). */
    stk_buf_printf(out,
                   "add chain " T " so-%1$s\nflush chain " T " so-%1$s\n"
                   "add rule " T " so-%1$s " LOG_LIMIT
                   " log group %2$u prefix \"" STK_NFT_LOG_PREFIX "%1$s:" STK_NFT_OFFHOST ":\"\n"
                   "add rule " T " so-%1$s counter drop\n",
                   f->id, f->log_group);
    for (int fam = STK_FAMILY_V4; fam <= STK_FAMILY_V6; fam += 2) {
        const struct stk_cidr *a = fam == STK_FAMILY_V4 ? &f->addr4 : &f->addr6;
        if (has(a))
            stk_buf_printf(out, "add element " T " off%c { %s : jump so-%s }\n",
                           fam == STK_FAMILY_V4 ? '4' : '6', addr_text(a, cb), f->id);
    }

    ingress_chain_lines(b, f, out);

    /* The bridge port may only speak with its own addresses (and IPv6
     * link-local and unspecified ones, for neighbour discovery), in
     * untagged IPv4, ARP and IPv6 frames. A sandbox that holds
     * CAP_NET_RAW over its network namespace (one it was granted: the
     * namespace is owned by its user namespace) could otherwise send
     * another sandbox's address inside two VLAN tags (802.1ad + 802.1Q,
     * VID 0): the address matches below see only the outer tag, and the
     * host strips both and takes the packet as the other sandbox's.
     * `ether type` sees the frame's own first type, tag included. */
    stk_buf_printf(out,
                   "add chain " BT " %1$s\nflush chain " BT " %1$s\n"
                   "add rule " BT " %1$s ether type != { ip, arp, ip6 } counter drop\n",
                   port_chain);
    if (has(&f->addr4))
        stk_buf_printf(out,
                       "add rule " BT " %1$s ip saddr != %2$s counter drop\n"
                       "add rule " BT " %1$s arp saddr ip != %2$s counter drop\n",
                       port_chain, addr_text(&f->addr4, cb));
    else
        stk_buf_printf(out, "add rule " BT " %s ether type { ip, arp } counter drop\n", port_chain);
    if (has(&f->addr6))
        stk_buf_printf(out, "add rule " BT " %s ip6 saddr != { %s, ::, fe80::/10 } counter drop\n",
                       port_chain, addr_text(&f->addr6, cb2));
    else
        stk_buf_printf(out, "add rule " BT " %s ether type ip6 counter drop\n", port_chain);
    stk_buf_printf(out, "add element " BT " ports { \"%s\" : jump %s }\n", f->veth, port_chain);
    return 0;
}

static void header_line(const struct stk_nft_facts *f, struct stk_buf *out)
{
    stk_buf_printf(out, "# stockade egress for sandbox %s (namespace %s)\n", f->id, f->namespace);
}

/* The parts of the ruleset the entry points below ask for, in this order. */
enum { PART_HEADER = 1, PART_BASE = 2, PART_OWN = 4 };

static int render_parts(const struct stk_boundary *b, const struct stk_nft_facts *f, unsigned parts,
                        char **ret, struct stk_error **err)
{
    _cleanup_buf_ struct stk_buf out = {0};
    int r = facts_check(f, err);
    if (r < 0)
        return r;
    if (parts & PART_HEADER)
        header_line(f, &out);
    if (parts & PART_BASE) {
        base_lines(f, &out);
        ingress_base_lines(f, &out);
    }
    if ((parts & PART_OWN) && (r = render_own(b, f, &out, err)) < 0)
        return r;
    *ret = stk_buf_steal(&out);
    return 0;
}

int stk_nft_render(const struct stk_boundary *b, const struct stk_nft_facts *f, char **ret,
                   struct stk_error **err)
{
    return render_parts(b, f, PART_HEADER | PART_BASE | PART_OWN, ret, err);
}

int stk_nft_render_base(const struct stk_nft_facts *f, char **ret, struct stk_error **err)
{
    return render_parts(NULL, f, PART_BASE, ret, err);
}

int stk_nft_render_own(const struct stk_boundary *b, const struct stk_nft_facts *f, char **ret,
                       struct stk_error **err)
{
    return render_parts(b, f, PART_HEADER | PART_OWN, ret, err);
}

int stk_nft_render_remove(const struct stk_nft_facts *f, char **ret, struct stk_error **err)
{
    _cleanup_buf_ struct stk_buf out = {0};
    char cb[STK_CIDR_STRLEN];
    int r = facts_check(f, err);
    if (r < 0)
        return r;
    stk_buf_printf(&out, "# remove stockade egress for sandbox %s\n", f->id);
    stk_buf_printf(&out, "delete element " BT " ports { \"%s\" }\n", f->veth);
    for (int fam = STK_FAMILY_V4; fam <= STK_FAMILY_V6; fam += 2) {
        const struct stk_cidr *a = fam == STK_FAMILY_V4 ? &f->addr4 : &f->addr6;
        if (!has(a))
            continue;
        stk_buf_printf(&out, "delete element " T " sb%c { %s }\n", fam == STK_FAMILY_V4 ? '4' : '6',
                       addr_text(a, cb));
        stk_buf_puts(&out, "delete element " T " ");
        stk_nft_ns_set(f->namespace, fam, &out);
        stk_buf_printf(&out, " { %s }\n", addr_text(a, cb));
    }
    for (int fam = STK_FAMILY_V4; fam <= STK_FAMILY_V6; fam += 2) {
        const struct stk_cidr *a = fam == STK_FAMILY_V4 ? &f->addr4 : &f->addr6;
        /* the off map and chain made first (adding what exists is no
         * error): a sandbox set up before they were is removed too */
        if (has(a))
            stk_buf_printf(&out,
                           "delete element " T " in%1$c { %2$s }\n"
                           "add map " T " off%1$c { type %3$s : verdict; }\n"
                           "add chain " T " so-%4$s\n"
                           "add element " T " off%1$c { %2$s : jump so-%4$s }\n"
                           "delete element " T " off%1$c { %2$s }\n",
                           fam == STK_FAMILY_V4 ? '4' : '6', addr_text(a, cb),
                           fam == STK_FAMILY_V4 ? "ipv4_addr" : "ipv6_addr", f->id);
    }
    stk_buf_printf(
        &out, "add chain " T " so-%1$s\nflush chain " T " so-%1$s\ndelete chain " T " so-%1$s\n",
        f->id);
    /* the proxy port, whether the sandbox had one (adding what exists is no
     * error) */
    if (f->proxy_port)
        stk_buf_printf(&out,
                       "add set " T " px { type inet_service; }\n"
                       "add element " T " px { %1$u }\ndelete element " T " px { %1$u }\n",
                       f->proxy_port);
    stk_buf_printf(&out, "flush chain " T " si-%1$s\ndelete chain " T " si-%1$s\n", f->id);
    stk_buf_printf(&out,
                   "flush chain " T " sb-%1$s\ndelete chain " T " sb-%1$s\n"
                   "flush chain " BT " sp-%1$s\ndelete chain " BT " sp-%1$s\n",
                   f->id);
    *ret = stk_buf_steal(&out);
    return 0;
}
