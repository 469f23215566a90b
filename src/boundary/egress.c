/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The egress model: the set of NetworkPolicies a sandbox gets, built exactly
 * like Datalab's generated baseline (deny-egress, allow-namespace-egress,
 * allow-dns-egress, allow-external-egress, allow-internal-egress) plus the
 * sandbox's own allowlist. The Kubernetes renderer prints these policies,
 * the local driver compiles them to nftables and `netpol trace` evaluates
 * them: one model for every enforcer.
 */
#include "internal.h"

#include <string.h>

size_t stk_except_for(const struct stk_cidr *cidr, const struct stk_cidr *from, size_t n,
                      struct stk_cidr *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!stk_cidr_contains(cidr, &from[i]) || stk_cidr_equal(cidr, &from[i]))
            continue;
        bool dup = false;
        for (size_t j = 0; j < k && !dup; j++)
            dup = stk_cidr_equal(&out[j], &from[i]);
        if (!dup)
            out[k++] = from[i];
    }
    return k;
}

static struct stk_origin origin_of(enum stk_source src, const char *file, struct stk_pos pos,
                                   const char *path)
{
    return (struct stk_origin){.source = src, .file = file, .pos = pos, .path = path};
}

static struct stk_eport *ports_copy(struct stk_arena *a, const struct stk_port *in, uint32_t n)
{
    struct stk_eport *out = stk_arena_array(a, n, sizeof(*out));
    for (uint32_t i = 0; i < n; i++) {
        out[i].protocol =
            in[i].protocol.meta.set ? (enum stk_protocol)in[i].protocol.v : STK_PROTO_TCP;
        out[i].port = in[i].port.meta.set ? (uint16_t)in[i].port.v : 0;
        out[i].end_port = in[i].end_port.meta.set ? (uint16_t)in[i].end_port.v : 0;
    }
    return out;
}

struct policy_builder {
    struct stk_arena *a;
    struct stk_erule *rules;
    size_t n, cap;
};

static struct stk_erule *rule_add(struct policy_builder *pb)
{
    if (pb->n == pb->cap) {
        size_t cap = pb->cap ? pb->cap * 2 : 4;
        struct stk_erule *r = stk_arena_array(pb->a, cap, sizeof(*r));
        if (pb->n)
            memcpy(r, pb->rules, pb->n * sizeof(*r));
        pb->rules = r;
        pb->cap = cap;
    }
    return &pb->rules[pb->n++];
}

static void ipblock(struct stk_arena *a, struct stk_erule *r, const struct stk_cidr *cidr,
                    const struct stk_cidr *except1, size_t n1, const struct stk_cidr *except2,
                    size_t n2)
{
    struct stk_cidr *all = stk_arena_array(a, n1 + n2 + 1, sizeof(*all));
    if (n1)
        memcpy(all, except1, n1 * sizeof(*all));
    if (n2)
        memcpy(all + n1, except2, n2 * sizeof(*all));
    r->peer = STK_PEER_IPBLOCK;
    r->cidr = *cidr;
    r->except = stk_arena_array(a, n1 + n2 + 1, sizeof(*r->except));
    r->n_except = stk_except_for(cidr, all, n1 + n2, r->except);
}

static void internal_rules(struct policy_builder *pb, const struct stk_internal_egress *ie,
                           uint32_t n, struct stk_origin origin)
{
    for (uint32_t i = 0; i < n; i++) {
        struct stk_erule *r = rule_add(pb);
        r->peer = STK_PEER_NAMESPACE;
        r->namespace = ie[i].namespace.v;
        r->pod_selector = ie[i].pod_selector.meta.set ? &ie[i].pod_selector : NULL;
        r->ports = ports_copy(pb->a, ie[i].ports.items, ie[i].ports.n);
        r->n_ports = ie[i].ports.n;
        r->origin = origin;
        r->origin.pos = ie[i].meta.pos;
    }
}

void stk_egress_build(struct stk_boundary *b, const struct stk_network *spec_net,
                      const char *spec_file, const struct stk_env_network *env_net,
                      const char *env_file)
{
    struct stk_arena *a = b->arena;
    struct stk_epolicy *pol = stk_arena_array(a, _STK_NETPOL_N, sizeof(*pol));
    size_t n = 0;
    struct stk_origin always =
        origin_of(STK_SRC_DEFAULT, NULL, (struct stk_pos){0, 0}, "spec.network");

    if (env_net && env_net->exclude_policies.meta.set) {
        for (uint32_t i = 0; i < env_net->exclude_policies.n; i++)
            b->egress.excluded[env_net->exclude_policies.items[i].v] = true;
        b->egress.exclude_origin =
            origin_of(STK_SRC_ENVIRONMENT, env_file, env_net->exclude_policies.meta.pos,
                      "data.network.excludePolicies");
    }

    for (int id = 0; id < _STK_NETPOL_N; id++) {
        struct policy_builder pb = {.a = a};
        struct stk_origin why = always;
        bool present = false;

        switch ((enum stk_netpol)id) {
        case STK_NETPOL_DENY:
            present = true;
            break;
        case STK_NETPOL_NAMESPACE: {
            present = true;
            struct stk_erule *r = rule_add(&pb);
            r->peer = STK_PEER_SAME_NAMESPACE;
            r->namespace = b->namespace;
            r->origin = why;
            break;
        }
        case STK_NETPOL_DNS:
            present = b->external_egress;
            why = b->external_egress_origin;
            if (present) {
                struct stk_erule *r = rule_add(&pb);
                r->peer = STK_PEER_CLUSTER_DNS;
                r->namespace = "kube-system";
                r->ports = stk_arena_array(a, 2, sizeof(*r->ports));
                r->ports[0] = (struct stk_eport){.protocol = STK_PROTO_UDP, .port = 53};
                r->ports[1] = (struct stk_eport){.protocol = STK_PROTO_TCP, .port = 53};
                r->n_ports = 2;
                r->origin = why;
            }
            break;
        case STK_NETPOL_EXTERNAL: {
            uint32_t ncidr = env_net ? env_net->external_egress_cidrs.n : 0;
            present = b->external_egress && ncidr > 0;
            why = b->external_egress_origin;
            if (!present)
                break;
            /* Datalab: except = blacklistIPs + podCIDRs + serviceCIDR, those
             * inside the rule's CIDR and of its family. */
            size_t nex = b->n_blacklist + env_net->pod_cidrs.n + 1;
            struct stk_cidr *ex = stk_arena_array(a, nex, sizeof(*ex));
            size_t k = 0;
            for (size_t i = 0; i < b->n_blacklist; i++)
                ex[k++] = b->blacklist[i];
            for (uint32_t i = 0; i < env_net->pod_cidrs.n; i++)
                ex[k++] = env_net->pod_cidrs.items[i].v;
            if (env_net->service_cidr.meta.set)
                ex[k++] = env_net->service_cidr.v;
            for (uint32_t i = 0; i < ncidr; i++) {
                struct stk_erule *r = rule_add(&pb);
                ipblock(a, r, &env_net->external_egress_cidrs.items[i].v, ex, k, NULL, 0);
                r->origin = origin_of(STK_SRC_ENVIRONMENT, env_file,
                                      env_net->external_egress_cidrs.items[i].meta.pos,
                                      "data.network.externalEgressCIDRs");
            }
            break;
        }
        case STK_NETPOL_INTERNAL:
            if (env_net && env_net->internal_egress.n)
                internal_rules(&pb, env_net->internal_egress.items, env_net->internal_egress.n,
                               origin_of(STK_SRC_ENVIRONMENT, env_file,
                                         env_net->internal_egress.meta.pos,
                                         "data.network.internalEgress"));
            if (spec_net && spec_net->internal_egress.n)
                internal_rules(&pb, spec_net->internal_egress.items, spec_net->internal_egress.n,
                               origin_of(STK_SRC_SPEC, spec_file,
                                         spec_net->internal_egress.meta.pos,
                                         "spec.network.internalEgress"));
            present = pb.n > 0;
            if (present)
                why = pb.rules[0].origin;
            break;
        case STK_NETPOL_ALLOWLIST:
            if (spec_net)
                for (uint32_t i = 0; i < spec_net->egress.n; i++) {
                    const struct stk_egress_rule *er = &spec_net->egress.items[i];
                    struct stk_cidr *own = stk_arena_array(a, er->except.n + 1, sizeof(*own));
                    for (uint32_t j = 0; j < er->except.n; j++)
                        own[j] = er->except.items[j].v;
                    struct stk_erule *r = rule_add(&pb);
                    ipblock(a, r, &er->cidr.v, own, er->except.n, b->blacklist, b->n_blacklist);
                    r->ports = ports_copy(a, er->ports.items, er->ports.n);
                    r->n_ports = er->ports.n;
                    r->origin =
                        origin_of(STK_SRC_SPEC, spec_file, er->meta.pos, "spec.network.egress");
                }
            present = pb.n > 0;
            if (present)
                why = pb.rules[0].origin;
            break;
        case _STK_NETPOL_N:
            break;
        }
        if (!present || b->egress.excluded[id])
            continue;
        pol[n++] = (struct stk_epolicy){
            .id = (enum stk_netpol)id, .rules = pb.rules, .n_rules = pb.n, .origin = why};
    }
    b->egress.policies = pol;
    b->egress.n = n;
}

static void ports_describe(const struct stk_eport *p, size_t n, struct stk_buf *out)
{
    if (n == 0) {
        stk_buf_puts(out, "all ports");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        stk_buf_printf(out, "%s%s", i ? ", " : "", stk_protocol_names[p[i].protocol]);
        if (p[i].port && p[i].end_port)
            stk_buf_printf(out, " %u-%u", p[i].port, p[i].end_port);
        else if (p[i].port)
            stk_buf_printf(out, " %u", p[i].port);
        else
            stk_buf_puts(out, " (all ports)");
    }
}

static void selector_describe(const struct stk_label_selector *sel, struct stk_buf *out)
{
    if (!sel || (sel->match_labels.n == 0 && sel->match_expressions.n == 0)) {
        stk_buf_puts(out, "all pods");
        return;
    }
    stk_buf_puts(out, "pods with ");
    for (uint32_t i = 0; i < sel->match_labels.n; i++)
        stk_buf_printf(out, "%s%s=%s", i ? ", " : "", sel->match_labels.items[i].key,
                       sel->match_labels.items[i].value);
    for (uint32_t i = 0; i < sel->match_expressions.n; i++) {
        const struct stk_selector_req *q = &sel->match_expressions.items[i];
        stk_buf_printf(out, "%s%s %s", (i || sel->match_labels.n) ? ", " : "", q->key.v,
                       stk_selector_op_names[q->op.v]);
        for (uint32_t j = 0; j < q->values.n; j++)
            stk_buf_printf(out, "%s%s", j ? "," : " ", q->values.items[j].v);
    }
}

void stk_erule_describe(const struct stk_boundary *b, const struct stk_erule *r,
                        struct stk_buf *out)
{
    char cb[STK_CIDR_STRLEN];
    switch (r->peer) {
    case STK_PEER_SAME_NAMESPACE:
        stk_buf_printf(out, "other sandboxes in namespace %s", b->namespace);
        return;
    case STK_PEER_CLUSTER_DNS:
        stk_buf_puts(out, "DNS (UDP and TCP 53) to the cluster resolver in kube-system");
        return;
    case STK_PEER_NAMESPACE:
        stk_buf_printf(out, "namespace %s, ", r->namespace);
        selector_describe(r->pod_selector, out);
        stk_buf_puts(out, ", ");
        ports_describe(r->ports, r->n_ports, out);
        return;
    case STK_PEER_IPBLOCK:
        stk_buf_puts(out, stk_cidr_format(&r->cidr, cb));
        for (size_t i = 0; i < r->n_except; i++)
            stk_buf_printf(out, "%s%s", i ? ", " : " except ", stk_cidr_format(&r->except[i], cb));
        stk_buf_puts(out, ", ");
        ports_describe(r->ports, r->n_ports, out);
        return;
    }
}
