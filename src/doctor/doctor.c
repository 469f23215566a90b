/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The operator checks of seed 001 ("Operator Checks"), as a table of small
 * functions over the parsed EnvironmentConfig. A check never resolves a
 * sandbox: it judges what every sandbox of this environment inherits.
 */
#include "doctor.h"

#include <jansson.h>
#include <string.h>

const char *const stk_check_status_names[_STK_CHECK_N] = {"pass", "warn", "fail"};

/* The metadata endpoints stockade's hard default blacklist blocks; an
 * operator's blacklistIPs must cover every one of them. */
static const struct {
    const char *cidr;
    const char *what;
} metadata_endpoints[] = {
    {"169.254.169.254/32", "AWS/GCP/Azure/OpenStack metadata, IPv4"},
    {"169.254.42.42/32", "Scaleway metadata, IPv4"},
    {"fd00:ec2::254/128", "AWS metadata, IPv6"},
    {"fd00:42::42/128", "Scaleway metadata, IPv6"},
};

struct ctx {
    const struct stk_envconfig *env;
    struct stk_arena *a;
};

typedef void (*check_fn)(const struct ctx *x, struct stk_check *c);

static void set(struct stk_check *c, enum stk_check_status st, const char *path, struct stk_pos pos,
                const char *why, const char *fix)
{
    c->status = st;
    c->path = path;
    c->pos = pos;
    c->why = why;
    c->fix = fix;
}

static void check_metadata_blacklist(const struct ctx *x, struct stk_check *c)
{
    const struct stk_env_network *net = &x->env->data.network;
    const char *path = "data.network.blacklistIPs";
    if (!net->blacklist_ips.meta.set) {
        set(c, STK_CHECK_PASS, path, net->meta.pos,
            stk_arena_printf(x->a,
                             "blacklistIPs is unset, so stockade's default blocks all %zu "
                             "well-known metadata endpoints (IPv4 and IPv6)",
                             STK_ARRAY_SIZE(metadata_endpoints)),
            NULL);
        return;
    }
    struct stk_buf missing = {0};
    size_t n_missing = 0;
    for (size_t i = 0; i < STK_ARRAY_SIZE(metadata_endpoints); i++) {
        struct stk_cidr ep;
        const char *why;
        if (stk_cidr_parse(metadata_endpoints[i].cidr, &ep, &why) < 0)
            abort(); /* the table is ours */
        bool covered = false;
        for (uint32_t j = 0; j < net->blacklist_ips.n && !covered; j++)
            covered = stk_cidr_contains(&net->blacklist_ips.items[j].v, &ep);
        if (!covered) {
            stk_buf_printf(&missing, "%s%s (%s)", n_missing ? ", " : "", metadata_endpoints[i].cidr,
                           metadata_endpoints[i].what);
            n_missing++;
        }
    }
    if (n_missing) {
        set(c, STK_CHECK_FAIL, path, net->blacklist_ips.meta.pos,
            stk_arena_printf(x->a, "blacklistIPs does not cover %s: broad egress reaches %s",
                             stk_buf_str(&missing),
                             n_missing == 1 ? "that endpoint" : "those endpoints"),
            "add the missing entries to data.network.blacklistIPs (or remove the list to use "
            "stockade's default)");
    } else {
        set(c, STK_CHECK_PASS, path, net->blacklist_ips.meta.pos,
            "blacklistIPs covers every well-known metadata endpoint, IPv4 and IPv6", NULL);
    }
    stk_buf_free(&missing);
}

static void check_cluster_cidrs(const struct ctx *x, struct stk_check *c)
{
    const struct stk_env_network *net = &x->env->data.network;
    bool pods = net->pod_cidrs.n > 0, svc = net->service_cidr.meta.set;
    bool broad = net->external_egress_cidrs.n > 0;
    const char *path = !pods ? "data.network.podCIDRs" : "data.network.serviceCIDR";
    if (pods && svc) {
        set(c, STK_CHECK_PASS, path, net->pod_cidrs.meta.pos,
            "podCIDRs and serviceCIDR are set, so broad egress excepts other sandboxes' pods and "
            "services",
            NULL);
        return;
    }
    const char *what = !pods && !svc ? "podCIDRs and serviceCIDR are"
                       : !pods       ? "podCIDRs is"
                                     : "serviceCIDR is";
    if (broad)
        set(c, STK_CHECK_FAIL, path, net->external_egress_cidrs.meta.pos,
            stk_arena_printf(x->a,
                             "%s unset while externalEgressCIDRs opens broad egress: sandboxes "
                             "can reach other sandboxes' pods and services by address",
                             what),
            "set data.network.podCIDRs and data.network.serviceCIDR to the cluster's ranges");
    else
        set(c, STK_CHECK_WARN, path, net->meta.pos,
            stk_arena_printf(x->a, "%s unset; harmless while no externalEgressCIDRs are configured",
                             what),
            "set data.network.podCIDRs and data.network.serviceCIDR before adding "
            "externalEgressCIDRs");
}

static void check_external_egress_default(const struct ctx *x, struct stk_check *c)
{
    const struct stk_bool *d = &x->env->data.defaults.security.external_egress;
    const struct stk_env_network *net = &x->env->data.network;
    const char *path = "data.defaults.security.externalEgress";
    if (!d->meta.set || !d->v) {
        set(c, STK_CHECK_PASS, path, d->meta.pos,
            "sandboxes get no external egress unless they ask for it (stockade's default)", NULL);
        return;
    }
    if (net->external_egress_cidrs.n == 0) {
        set(c, STK_CHECK_WARN, path, d->meta.pos,
            "externalEgress defaults to true but externalEgressCIDRs is empty: sandboxes get DNS "
            "and no external address, which is probably not what was meant",
            "set data.network.externalEgressCIDRs, or the default to false");
        return;
    }
    set(c, STK_CHECK_WARN, path, d->meta.pos,
        "every sandbox that does not say otherwise reaches the internet (Datalab-compatible; "
        "stockade's default is false)",
        "set data.defaults.security.externalEgress: false and let sandboxes opt in");
}

static const char *annotation(const struct stk_map *m, const char *key)
{
    for (uint32_t i = 0; m && i < m->n; i++)
        if (!strcmp(m->items[i].key, key))
            return m->items[i].value;
    return NULL;
}

static void check_exclude_policies(const struct ctx *x, struct stk_check *c)
{
    const struct stk_env_network *net = &x->env->data.network;
    const char *path = "data.network.excludePolicies";
    if (!net->exclude_policies.n) {
        set(c, STK_CHECK_PASS, path, net->meta.pos, "every generated NetworkPolicy is rendered",
            NULL);
        return;
    }
    struct stk_buf names = {0};
    for (uint32_t i = 0; i < net->exclude_policies.n; i++)
        stk_buf_printf(&names, "%s%s", i ? ", " : "",
                       stk_netpol_names[net->exclude_policies.items[i].v]);
    const char *replacement =
        annotation(&x->env->metadata.annotations, STK_DOCTOR_REPLACEMENT_ANNOTATION);
    if (replacement)
        set(c, STK_CHECK_WARN, path, net->exclude_policies.meta.pos,
            stk_arena_printf(x->a, "skips %s; stated replacement: %s", stk_buf_str(&names),
                             replacement),
            "verify the replacement enforces the same egress limits");
    else
        set(c, STK_CHECK_FAIL, path, net->exclude_policies.meta.pos,
            stk_arena_printf(x->a,
                             "skips %s with no stated replacement: sandboxes lose those egress "
                             "controls",
                             stk_buf_str(&names)),
            "remove them, or name the replacing policy set in "
            "metadata.annotations[" STK_DOCTOR_REPLACEMENT_ANNOTATION "]");
    stk_buf_free(&names);
}

static void check_token_defaults(const struct ctx *x, struct stk_check *c)
{
    const struct stk_security_defaults *d = &x->env->data.defaults.security;
    const char *path = "data.defaults.security.kubernetesAccess";
    bool access = d->kubernetes_access.meta.set && d->kubernetes_access.v;
    enum stk_role role =
        d->kubernetes_role.meta.set ? (enum stk_role)d->kubernetes_role.v : STK_ROLE_VIEW;
    if (!access) {
        set(c, STK_CHECK_PASS, path, d->kubernetes_access.meta.pos,
            "sandboxes get no Kubernetes API token unless they ask for one", NULL);
        return;
    }
    if (role == STK_ROLE_ADMIN)
        set(c, STK_CHECK_FAIL, path, d->kubernetes_access.meta.pos,
            "every sandbox gets an API token with role admin by default",
            "set data.defaults.security.kubernetesAccess: false (or kubernetesRole: view) and "
            "grant admin per sandbox");
    else
        set(c, STK_CHECK_WARN, path, d->kubernetes_access.meta.pos,
            stk_arena_printf(x->a,
                             "every sandbox gets an API token with role %s by default; most "
                             "workloads never call the API",
                             stk_role_names[role]),
            "set data.defaults.security.kubernetesAccess: false and let sandboxes opt in");
}

static void check_policy_default(const struct ctx *x, struct stk_check *c)
{
    const struct stk_enumv *p = &x->env->data.defaults.security.policy;
    const char *path = "data.defaults.security.policy";
    enum stk_policy policy = p->meta.set ? (enum stk_policy)p->v : STK_POLICY_RESTRICTED;
    switch (policy) {
    case STK_POLICY_RESTRICTED:
        set(c, STK_CHECK_PASS, path, p->meta.pos,
            "sandboxes are restricted by default; privileged stays an explicit request that the "
            "stockade-pod-guard admission policy ties to an operator-exception namespace label",
            NULL);
        return;
    case STK_POLICY_BASELINE:
        set(c, STK_CHECK_WARN, path, p->meta.pos,
            "sandboxes are baseline by default (Datalab-compatible): root and some capabilities "
            "are allowed",
            "set data.defaults.security.policy: restricted and let sandboxes ask for baseline");
        return;
    case STK_POLICY_PRIVILEGED:
    case _STK_POLICY_N:
        break;
    }
    set(c, STK_CHECK_FAIL, path, p->meta.pos,
        "every sandbox is privileged by default: a container escape is one step away",
        "set data.defaults.security.policy: restricted; grant privileged per sandbox as an "
        "operator exception");
}

static const struct {
    const char *id;
    const char *title;
    check_fn fn;
} checks[] = {
    {"metadata-blacklist", "metadata endpoints blocked", check_metadata_blacklist},
    {"cluster-cidrs", "pods and services excepted", check_cluster_cidrs},
    {"external-egress-default", "external egress default", check_external_egress_default},
    {"exclude-policies", "generated policies kept", check_exclude_policies},
    {"token-defaults", "API token default", check_token_defaults},
    {"policy-default", "privilege default", check_policy_default},
};

struct stk_doctor_report *stk_doctor_report_new(const char *file)
{
    struct stk_arena *a = stk_arena_new();
    struct stk_doctor_report *r = stk_arena_alloc(a, sizeof(*r));
    r->arena = a;
    r->file = file ? stk_arena_strdup(a, file) : NULL;
    return r;
}

void stk_doctor_add(struct stk_doctor_report *r, const char *id, const char *title,
                    enum stk_check_status status, const char *why, const char *fix,
                    const char *path)
{
    /* reports are a handful of rows: grow by copying within the arena */
    struct stk_check *checks_new = stk_arena_array(r->arena, r->n + 1, sizeof(*checks_new));
    if (r->n)
        memcpy(checks_new, r->checks, r->n * sizeof(*checks_new));
    checks_new[r->n] = (struct stk_check){
        .id = stk_arena_strdup(r->arena, id),
        .title = stk_arena_strdup(r->arena, title),
        .status = status,
        .why = stk_arena_strdup(r->arena, why),
        .fix = fix ? stk_arena_strdup(r->arena, fix) : NULL,
        .path = stk_arena_strdup(r->arena, path),
    };
    r->checks = checks_new;
    r->n++;
    r->n_status[status]++;
}

int stk_doctor(const struct stk_envconfig *env, const char *file, struct stk_doctor_report **ret)
{
    struct stk_doctor_report *r = stk_doctor_report_new(file);
    struct stk_arena *a = r->arena;
    r->n = STK_ARRAY_SIZE(checks);
    r->checks = stk_arena_array(a, r->n, sizeof(*r->checks));
    struct ctx x = {.env = env, .a = a};
    for (size_t i = 0; i < r->n; i++) {
        r->checks[i].id = checks[i].id;
        r->checks[i].title = checks[i].title;
        checks[i].fn(&x, &r->checks[i]);
        r->n_status[r->checks[i].status]++;
    }
    *ret = r;
    return 0;
}

void stk_doctor_report_free(struct stk_doctor_report *r)
{
    if (r)
        stk_arena_free(r->arena);
}

void stk_doctor_text(const struct stk_doctor_report *r, struct stk_buf *out)
{
    static const char *const tags[_STK_CHECK_N] = {"PASS", "WARN", "FAIL"};
    for (size_t i = 0; i < r->n; i++) {
        const struct stk_check *c = &r->checks[i];
        stk_buf_printf(out, "%s  %-24s %s\n", tags[c->status], c->id, c->why);
        if (c->status != STK_CHECK_PASS) {
            if (r->file && c->pos.line)
                stk_buf_printf(out, "      at %s:%u:%u %s\n", r->file, c->pos.line, c->pos.col,
                               c->path);
            else
                stk_buf_printf(out, "      at %s\n", c->path);
            if (c->fix)
                stk_buf_printf(out, "      fix: %s\n", c->fix);
        }
    }
    stk_buf_printf(out, "checks: %zu pass, %zu warn, %zu fail\n", r->n_status[STK_CHECK_PASS],
                   r->n_status[STK_CHECK_WARN], r->n_status[STK_CHECK_FAIL]);
}

void *stk_doctor_json(const struct stk_doctor_report *r)
{
    json_t *list = json_array();
    for (size_t i = 0; i < r->n; i++) {
        const struct stk_check *c = &r->checks[i];
        json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s}", "id", c->id, "title", c->title, "status",
                              stk_check_status_names[c->status], "why", c->why, "path", c->path);
        if (c->fix)
            json_object_set_new(o, "fix", json_string(c->fix));
        if (c->pos.line) {
            json_object_set_new(o, "line", json_integer(c->pos.line));
            json_object_set_new(o, "column", json_integer(c->pos.col));
        }
        json_array_append_new(list, o);
    }
    json_t *out = json_object();
    if (r->file)
        json_object_set_new(out, "file", json_string(r->file));
    json_object_set_new(out, "checks", list);
    json_object_set_new(out, "summary",
                        json_pack("{s:I, s:I, s:I}", "pass",
                                  (json_int_t)r->n_status[STK_CHECK_PASS], "warn",
                                  (json_int_t)r->n_status[STK_CHECK_WARN], "fail",
                                  (json_int_t)r->n_status[STK_CHECK_FAIL]));
    return out;
}
