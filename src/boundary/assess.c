/* SPDX-License-Identifier: Apache-2.0 */
/*
 * assess: findings about a boundary, each with a severity and a reason, and
 * an overall trust level. A critical finding makes the sandbox an operator
 * exception, a high one makes it fit for trusted automation only; otherwise
 * it is hardened. The levels follow the trust-level table of Datalab's
 * "Workspace Sessions as Sandboxes" (s-jeff / s-joe / s-jane).
 */
#include "internal.h"

#include <jansson.h>
#include <string.h>

const char *const stk_finding_severity_names[_STK_FINDING_N] = {"info", "low", "medium", "high",
                                                                "critical"};
const char *const stk_trust_names[_STK_TRUST_N] = {"hardened", "trusted-automation",
                                                   "operator-exception"};

static const char *const trust_summary[_STK_TRUST_N] = {
    [STK_TRUST_HARDENED] = "no API token and no privilege beyond the policy; nothing needs an "
                           "exception",
    [STK_TRUST_AUTOMATION] = "holds powers fit for trusted automation only; review the high "
                             "findings",
    [STK_TRUST_EXCEPTION] = "needs an explicit operator exception; review the critical findings",
};

struct builder {
    struct stk_assessment *as;
    size_t cap;
};

STK_PRINTF(6, 7)
static void finding(struct builder *bl, const char *id, enum stk_finding_severity sev,
                    const char *path, const struct stk_origin *origin, const char *fmt, ...)
{
    struct stk_assessment *as = bl->as;
    if (as->n == bl->cap) {
        bl->cap = bl->cap ? bl->cap * 2 : 16;
        struct stk_finding *f = stk_arena_array(as->arena, bl->cap, sizeof(*f));
        if (as->n)
            memcpy(f, as->findings, as->n * sizeof(*f));
        as->findings = f;
    }
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *reason = stk_xvasprintf(fmt, ap);
    va_end(ap);
    as->findings[as->n++] = (struct stk_finding){
        .id = stk_arena_strdup(as->arena, id),
        .severity = sev,
        .reason = stk_arena_strdup(as->arena, reason),
        .path = path,
        .origin = *origin,
    };
}

static void assess_privilege(struct builder *bl, const struct stk_boundary *b)
{
    if (b->policy == STK_POLICY_PRIVILEGED)
        finding(bl, "privileged", STK_FINDING_CRITICAL, "spec.security.policy", &b->policy_origin,
                "privileged containers may be run: the host kernel's own checks are the only "
                "boundary left");
    else if (b->policy == STK_POLICY_BASELINE)
        finding(bl, "baseline-policy", STK_FINDING_LOW, "spec.security.policy", &b->policy_origin,
                "baseline does not enforce a non-root user and permits adding its documented "
                "capabilities");
    if (b->docker)
        finding(bl, "docker", STK_FINDING_CRITICAL, "spec.security.docker", &b->docker_origin,
                "a privileged Docker daemon runs beside the sandbox and obeys it");
    if (b->registry)
        finding(bl, "registry", STK_FINDING_CRITICAL, "spec.security.registry", &b->registry_origin,
                "the sandbox can push images other workloads may pull: an operator exception");
    for (size_t i = 0; i < b->n_caps; i++) {
        const char *cap = b->caps[i];
        enum stk_finding_severity sev;
        const char *why;
        if (stk_policy_allows_capability(STK_POLICY_RESTRICTED, cap)) {
            sev = STK_FINDING_LOW;
            why = "binds ports below 1024";
        } else if (stk_policy_allows_capability(STK_POLICY_BASELINE, cap)) {
            sev = STK_FINDING_MEDIUM;
            why = "a baseline capability: more than a restricted sandbox gets";
        } else if (!strcmp(cap, "SYS_PTRACE")) {
            sev = STK_FINDING_HIGH;
            why = "can trace and inspect other processes it can see";
        } else {
            sev = STK_FINDING_CRITICAL;
            why = "a capability beyond baseline; it widens the kernel attack surface";
        }
        char id[64];
        snprintf(id, sizeof(id), "capability-%s", cap);
        finding(bl, id, sev, "spec.security.capabilities.add", &b->caps_origin, "adds %s: %s", cap,
                why);
    }
    if (b->model == STK_MODEL_INJECTION)
        finding(bl, "shared-namespaces", STK_FINDING_HIGH, "spec.deployment.model",
                &b->model_origin,
                "shares the network and PID namespaces of %s %s: it sees the workload's "
                "processes and reaches its ports over localhost",
                stk_workload_kind_names[b->target->kind.v], b->target->name.v);
    if (b->runtime == STK_RUNTIME_CRUN || b->runtime == STK_RUNTIME_RUNC)
        finding(bl, "host-kernel", STK_FINDING_LOW, "spec.runtime", &b->runtime_origin,
                "%s runs the workload on the host kernel, without gVisor in between",
                stk_runtime_names[b->runtime]);
}

static void assess_api(struct builder *bl, const struct stk_boundary *b)
{
    if (!b->kube_access)
        return;
    const char *role = stk_role_names[b->kube_role];
    const char *where = b->vcluster ? "its vcluster" : "its namespace";
    switch (b->kube_role) {
    case STK_ROLE_VIEW:
        finding(bl, "kubernetes-token", STK_FINDING_MEDIUM, "spec.security.kubernetesAccess",
                &b->kube_access_origin,
                "a mounted service-account token can read objects in %s (role view)", where);
        break;
    case STK_ROLE_EDIT:
        finding(bl, "kubernetes-token", STK_FINDING_HIGH, "spec.security.kubernetesAccess",
                &b->kube_access_origin,
                "a mounted service-account token can create and change workloads in %s (role "
                "edit)",
                where);
        break;
    case STK_ROLE_ADMIN:
        if (b->vcluster)
            finding(bl, "vcluster-admin", STK_FINDING_HIGH, "spec.security.kubernetesRole",
                    &b->kube_role_origin,
                    "admin of its virtual cluster; its workloads still run under the host "
                    "namespace's policy");
        else
            finding(bl, "kubernetes-admin", STK_FINDING_CRITICAL, "spec.security.kubernetesRole",
                    &b->kube_role_origin,
                    "a mounted service-account token is admin of its namespace (role %s)", role);
        break;
    case _STK_ROLE_N:
        break;
    }
}

/* The well-known metadata endpoints, whatever the operator's list says. */
static const char *const metadata_addrs[] = {"169.254.169.254", "169.254.42.42", "fd00:ec2::254",
                                             "fd00:42::42"};

static bool rule_reaches(const struct stk_erule *r, const struct stk_cidr *addr)
{
    if (r->peer != STK_PEER_IPBLOCK || !stk_cidr_contains(&r->cidr, addr))
        return false;
    for (size_t i = 0; i < r->n_except; i++)
        if (stk_cidr_contains(&r->except[i], addr))
            return false;
    return true;
}

static void assess_network(struct builder *bl, const struct stk_boundary *b)
{
    const struct stk_egress *eg = &b->egress;
    if (b->model == STK_MODEL_INJECTION)
        return; /* reported as shared-namespaces */
    if (eg->n == 0) {
        finding(bl, "egress-unrestricted", STK_FINDING_CRITICAL, "data.network.excludePolicies",
                &eg->exclude_origin,
                "every generated policy is excluded: egress is unrestricted, cloud metadata "
                "endpoints included");
        return;
    }
    bool any_excluded = false;
    for (int i = 0; i < _STK_NETPOL_N; i++)
        any_excluded |= eg->excluded[i];
    if (any_excluded)
        finding(bl, "policies-excluded", STK_FINDING_MEDIUM, "data.network.excludePolicies",
                &eg->exclude_origin,
                "some generated policies are skipped; another policy system must supply "
                "equivalent controls");

    for (size_t i = 0; i < eg->n; i++) {
        const struct stk_epolicy *p = &eg->policies[i];
        if (p->id == STK_NETPOL_EXTERNAL) {
            char cb[STK_CIDR_STRLEN];
            struct stk_buf t = {0};
            for (size_t j = 0; j < p->n_rules; j++)
                stk_buf_printf(&t, "%s%s", j ? ", " : "", stk_cidr_format(&p->rules[j].cidr, cb));
            finding(bl, "open-egress", STK_FINDING_MEDIUM, "spec.network.externalEgress",
                    &b->external_egress_origin,
                    "can reach external networks %s and resolve "
                    "names through cluster DNS",
                    stk_buf_str(&t));
            stk_buf_free(&t);
        } else if (p->id == STK_NETPOL_ALLOWLIST) {
            finding(bl, "allowlist-egress", STK_FINDING_LOW, "spec.network.egress", &p->origin,
                    "reaches %zu explicitly allowed network%s", p->n_rules,
                    p->n_rules == 1 ? "" : "s");
        } else if (p->id == STK_NETPOL_INTERNAL) {
            finding(bl, "internal-egress", STK_FINDING_LOW, "spec.network.internalEgress",
                    &p->origin, "reaches pods in %zu other namespace rule%s", p->n_rules,
                    p->n_rules == 1 ? "" : "s");
        }
    }
    for (size_t k = 0; k < STK_ARRAY_SIZE(metadata_addrs); k++) {
        struct stk_cidr addr;
        if (stk_addr_parse(metadata_addrs[k], &addr) < 0)
            continue;
        for (size_t i = 0; i < eg->n; i++) {
            const struct stk_epolicy *p = &eg->policies[i];
            bool hit = false;
            for (size_t j = 0; j < p->n_rules && !hit; j++)
                hit = rule_reaches(&p->rules[j], &addr);
            if (!hit)
                continue;
            finding(bl, "metadata-exposed", STK_FINDING_HIGH, "data.network.blacklistIPs",
                    &b->blacklist_origin,
                    "the cloud metadata endpoint %s is reachable through %s: add it to "
                    "blacklistIPs",
                    metadata_addrs[k], stk_netpol_names[p->id]);
            break;
        }
    }
}

static void assess_storage(struct builder *bl, const struct stk_boundary *b)
{
    const int64_t broad = INT64_C(100) << 30;
    if (b->home && b->home_persist)
        finding(bl, "persistent-home", STK_FINDING_LOW, "spec.storage.home", &b->home_origin,
                "writes to a volume that outlives stop and start");
    if ((b->home && b->home_size >= broad) || b->limits.storage >= broad)
        finding(bl, "broad-storage", STK_FINDING_MEDIUM,
                b->home && b->home_size >= broad ? "spec.storage.home.size"
                                                 : "spec.resources.storage",
                b->home && b->home_size >= broad ? &b->home_origin : &b->storage_origin,
                "100Gi or more of writable storage");
    if (b->n_bindings) {
        struct stk_origin o = {.source = STK_SRC_SPEC,
                               .file = b->spec_file,
                               .pos = b->bindings[0].meta.pos,
                               .path = "spec.bindings"};
        finding(bl, "brokered-credentials", STK_FINDING_LOW, "spec.bindings", &o,
                "can use %zu service credential%s through the egress proxy (the secrets stay "
                "outside the sandbox)",
                b->n_bindings, b->n_bindings == 1 ? "" : "s");
    }
}

int stk_assess(const struct stk_boundary *b, struct stk_assessment **ret)
{
    struct stk_arena *a = stk_arena_new();
    struct stk_assessment *as = stk_arena_alloc(a, sizeof(*as));
    struct builder bl = {.as = as};
    as->arena = a;
    as->name = b->name;

    assess_privilege(&bl, b);
    assess_api(&bl, b);
    assess_network(&bl, b);
    assess_storage(&bl, b);

    enum stk_trust level = STK_TRUST_HARDENED;
    for (size_t i = 0; i < as->n; i++) {
        if (as->findings[i].severity == STK_FINDING_CRITICAL)
            level = STK_TRUST_EXCEPTION;
        else if (as->findings[i].severity == STK_FINDING_HIGH && level < STK_TRUST_AUTOMATION)
            level = STK_TRUST_AUTOMATION;
    }
    as->level = level;
    as->summary = trust_summary[level];
    *ret = as;
    return 0;
}

void stk_assessment_free(struct stk_assessment *a)
{
    if (a)
        stk_arena_free(a->arena);
}

void stk_assessment_text(const struct stk_assessment *as, struct stk_buf *out)
{
    stk_buf_printf(out, "%s: %s (%s)\n", as->name, stk_trust_names[as->level], as->summary);
    if (as->n == 0)
        stk_buf_puts(out, "  no findings\n");
    /* Most severe first; stable within a severity. */
    for (int sev = STK_FINDING_CRITICAL; sev >= STK_FINDING_INFO; sev--)
        for (size_t i = 0; i < as->n; i++) {
            const struct stk_finding *f = &as->findings[i];
            if ((int)f->severity != sev)
                continue;
            char where[512];
            stk_origin_format(&f->origin, where, sizeof(where));
            stk_buf_printf(out, "  %-8s  %-22s %s\n", stk_finding_severity_names[f->severity],
                           f->id, f->reason);
            if (f->origin.source == STK_SRC_ENVIRONMENT && f->origin.path)
                stk_buf_printf(out, "            from %s [%s, %s]\n", f->path, where,
                               f->origin.path);
            else
                stk_buf_printf(out, "            from %s [%s]\n", f->path, where);
        }
}

void *stk_assessment_json(const struct stk_assessment *as)
{
    json_t *root = json_object();
    json_t *items = json_array();
    json_object_set_new(root, "sandbox", json_string(as->name));
    json_object_set_new(root, "level", json_string(stk_trust_names[as->level]));
    json_object_set_new(root, "summary", json_string(as->summary));
    for (int sev = STK_FINDING_CRITICAL; sev >= STK_FINDING_INFO; sev--)
        for (size_t i = 0; i < as->n; i++) {
            const struct stk_finding *f = &as->findings[i];
            if ((int)f->severity != sev)
                continue;
            json_t *j = json_object();
            json_object_set_new(j, "id", json_string(f->id));
            json_object_set_new(j, "severity", json_string(stk_finding_severity_names[sev]));
            json_object_set_new(j, "reason", json_string(f->reason));
            json_object_set_new(j, "path", json_string(f->path));
            json_object_set_new(j, "source", json_string(stk_source_names[f->origin.source]));
            if (f->origin.file) {
                json_object_set_new(j, "file", json_string(f->origin.file));
                json_object_set_new(j, "line", json_integer(f->origin.pos.line));
                json_object_set_new(j, "column", json_integer(f->origin.pos.col));
            }
            json_array_append_new(items, j);
        }
    json_object_set_new(root, "findings", items);
    return root;
}
