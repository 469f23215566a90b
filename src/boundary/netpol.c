/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The egress evaluator: Kubernetes NetworkPolicy semantics over the egress
 * model. A sandbox selected by any policy is isolated for egress; a
 * connection is allowed when any rule of any policy allows it. `netpol
 * trace`, the simulator and the tests all ask this one function.
 */
#include "internal.h"

#include <errno.h>
#include <string.h>

static const char *label_of(const struct stk_dest *d, const char *key)
{
    for (size_t i = 0; i < d->n_labels; i++)
        if (!strcmp(d->labels[i].key, key))
            return d->labels[i].value;
    return NULL;
}

static bool selector_matches(const struct stk_label_selector *sel, const struct stk_dest *d)
{
    if (!sel)
        return true;
    for (uint32_t i = 0; i < sel->match_labels.n; i++) {
        const char *v = label_of(d, sel->match_labels.items[i].key);
        if (!v || strcmp(v, sel->match_labels.items[i].value))
            return false;
    }
    for (uint32_t i = 0; i < sel->match_expressions.n; i++) {
        const struct stk_selector_req *q = &sel->match_expressions.items[i];
        const char *v = label_of(d, q->key.v);
        bool in = false;
        for (uint32_t j = 0; v && j < q->values.n; j++)
            in |= !strcmp(v, q->values.items[j].v);
        bool ok = false;
        switch ((enum stk_selector_op)q->op.v) {
        case STK_SEL_IN:
            ok = in;
            break;
        case STK_SEL_NOTIN:
            ok = !in;
            break;
        case STK_SEL_EXISTS:
            ok = v != NULL;
            break;
        case STK_SEL_DOESNOTEXIST:
            ok = v == NULL;
            break;
        case _STK_SEL_N:
            break;
        }
        if (!ok)
            return false;
    }
    return true;
}

static bool ports_match(const struct stk_erule *r, const struct stk_dest *d)
{
    if (r->n_ports == 0)
        return true;
    for (size_t i = 0; i < r->n_ports; i++) {
        const struct stk_eport *p = &r->ports[i];
        if (p->protocol != d->protocol)
            continue;
        if (p->port == 0)
            return true;
        uint16_t last = p->end_port ? p->end_port : p->port;
        if (d->port && d->port >= p->port && d->port <= last)
            return true;
    }
    return false;
}

/* Whether the rule's peer is the destination; for an ipBlock that holds
 * the address in an except, reports which except. */
static bool peer_matches(const struct stk_boundary *b, const struct stk_erule *r,
                         const struct stk_dest *d, const struct stk_cidr **ret_except)
{
    switch (r->peer) {
    case STK_PEER_SAME_NAMESPACE:
        return d->namespace && !strcmp(d->namespace, b->namespace);
    case STK_PEER_NAMESPACE:
        return d->namespace && !strcmp(d->namespace, r->namespace) &&
               selector_matches(r->pod_selector, d);
    case STK_PEER_CLUSTER_DNS:
        return d->namespace && !strcmp(d->namespace, "kube-system");
    case STK_PEER_IPBLOCK:
        if (!d->has_addr || !stk_cidr_contains(&r->cidr, &d->addr))
            return false;
        for (size_t i = 0; i < r->n_except; i++)
            if (stk_cidr_contains(&r->except[i], &d->addr)) {
                *ret_except = &r->except[i];
                return false;
            }
        return true;
    }
    return false;
}

int stk_egress_decide(const struct stk_boundary *b, const struct stk_dest *d,
                      struct stk_verdict *ret)
{
    struct stk_verdict v = {.policy = STK_NETPOL_DENY};

    if (b->model == STK_MODEL_INJECTION)
        return -EINVAL;
    if (b->egress.n == 0) {
        v.allowed = true;
        *ret = v;
        return 0;
    }
    v.isolated = true;
    for (size_t i = 0; i < b->egress.n; i++) {
        const struct stk_epolicy *p = &b->egress.policies[i];
        for (size_t j = 0; j < p->n_rules; j++) {
            const struct stk_cidr *except = NULL;
            bool peer = peer_matches(b, &p->rules[j], d, &except);
            if (except && !v.excepted && ports_match(&p->rules[j], d)) {
                v.excepted = true;
                v.except_policy = p->id;
                v.except_rule = j;
                v.except_cidr = *except;
            }
            if (peer && ports_match(&p->rules[j], d)) {
                v.allowed = true;
                v.policy = p->id;
                v.rule = j;
                v.excepted = false;
                *ret = v;
                return 0;
            }
        }
    }
    *ret = v;
    return 0;
}

/* ---- ingress ------------------------------------------------------------------ */

const struct stk_ingress_port *stk_ingress_port(const struct stk_boundary *b, uint16_t port)
{
    for (size_t i = 0; i < b->n_ports; i++)
        if (b->ports[i].port == port)
            return &b->ports[i];
    return NULL;
}

int stk_ingress_decide(const struct stk_boundary *b, bool from_sandbox, uint16_t port,
                       enum stk_protocol protocol, struct stk_ingress_verdict *ret)
{
    if (b->model == STK_MODEL_INJECTION)
        return -EINVAL;
    *ret = (struct stk_ingress_verdict){.rule = STK_INGRESS_DENY};
    if (from_sandbox) {
        ret->allowed = true;
        ret->rule = STK_INGRESS_SANDBOX;
        return 0;
    }
    const struct stk_ingress_port *p = protocol == STK_PROTO_TCP ? stk_ingress_port(b, port) : NULL;
    if (p) {
        ret->allowed = true;
        ret->rule = STK_INGRESS_DECLARED;
        ret->port = p;
    }
    return 0;
}

/* ---- what the local backend adds ---------------------------------------------- */

const char *const stk_local_path_reasons[_STK_LOCAL_PATH_N] = {
    [STK_LOCAL_AS_MODELLED] = "",
    [STK_LOCAL_LOOPBACK] = "the sandbox's own loopback: it never leaves the sandbox's network "
                           "namespace, so egress rules do not apply",
    [STK_LOCAL_HOST_DROPPED] =
        "dropped by the local backend: the host's own, broadcast and multicast addresses are "
        "reachable only at the services stockade offers on the bridge address (nftables rule "
        "`fib daddr type { local, broadcast, multicast } drop`)",
    [STK_LOCAL_OFFHOST_DROPPED] =
        "dropped by the local backend: traffic leaves this host only when the operator sets "
        "data.local.nat or data.local.routed (nftables chain offhost)",
};

static bool in_cidr(const char *cidr, const struct stk_cidr *a)
{
    struct stk_cidr c;
    return stk_cidr_parse(cidr, &c, NULL) == 0 && stk_cidr_contains(&c, a);
}

enum stk_local_path stk_egress_local(const struct stk_local_facts *f, const struct stk_dest *d,
                                     const struct stk_verdict *v)
{
    if (!d->has_addr)
        return STK_LOCAL_AS_MODELLED; /* a pod: another sandbox, through the bridge */
    const struct stk_cidr *a = &d->addr;
    if (in_cidr("127.0.0.0/8", a) || in_cidr("::1/128", a))
        return STK_LOCAL_LOOPBACK;
    /* denied by the model: denied here too, by the sandbox's chain */
    if (!v->allowed)
        return STK_LOCAL_AS_MODELLED;
    bool host =
        in_cidr("224.0.0.0/4", a) || in_cidr("255.255.255.255/32", a) || in_cidr("ff00::/8", a);
    for (size_t i = 0; i < f->n_host_addrs && !host; i++)
        host = stk_cidr_contains(&f->host_addrs[i], a);
    /* the cluster DNS rule comes before the host rule (the resolver may be
     * a service on the bridge address); a resolver off the host still
     * passes the offhost rule, as everything leaving does */
    if (host)
        return v->isolated && v->policy == STK_NETPOL_DNS ? STK_LOCAL_AS_MODELLED
                                                          : STK_LOCAL_HOST_DROPPED;
    const struct stk_cidr *pool = a->family == STK_FAMILY_V4 ? &f->pool4 : &f->pool6;
    if (pool->family == a->family && stk_cidr_contains(pool, a))
        return STK_LOCAL_AS_MODELLED; /* another sandbox: routed through the host */
    return f->nat || f->routed ? STK_LOCAL_AS_MODELLED : STK_LOCAL_OFFHOST_DROPPED;
}

long stk_egress_host_rule(const struct stk_boundary *b, const char *name, uint16_t port)
{
    for (size_t i = 0; i < b->n_allow_hosts; i++)
        if (stk_allow_host_match(&b->allow_hosts[i], name, port))
            return (long)i;
    return -1;
}
