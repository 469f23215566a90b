/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Sandbox + EnvironmentConfig -> boundary.
 *
 * Every defaultable value goes through one chain: the Sandbox's own value,
 * else the EnvironmentConfig's default, else stockade's hard default (strict:
 * DESIGN.md §2). Each resolved value records where it came from. Cross-field
 * rules run on the resolved values, so an environment default can make a
 * spec invalid (docker with a baseline default, say) and the error says so.
 */
#include "internal.h"

#include <errno.h>
#include <string.h>

#define MiB (INT64_C(1024) * 1024)
#define GiB (MiB * 1024)

/* Hard defaults. */
static const enum stk_policy default_policy = STK_POLICY_RESTRICTED;
static const bool default_kube_access = false;
static const enum stk_role default_kube_role = STK_ROLE_VIEW;
static const bool default_external_egress = false;
static const enum stk_runtime default_runtime = STK_RUNTIME_DEFAULT;
static const struct stk_resolved_limits default_limits = {
    .cpu_milli = 1000,
    .memory = 512 * MiB,
    .pids = 256,
    .wall_clock_ms = 0,
    .cpu_time_ms = 0,
    .storage = GiB,
};
static const int64_t default_home_size = GiB;
/* /tmp and /dev/shm, when the spec does not size them: a quarter of the
 * memory limit each (tmpfs pages are charged to it, so together they take at
 * most half), at least 1Mi and at most 64Mi; 64Mi without a memory limit.
 * Any memory limit from 4Mi up then works without sizing them. */
static const int64_t tmpfs_default_max = 64 * MiB;
static const int64_t tmpfs_default_min = MiB;

static int64_t tmpfs_default(int64_t memory)
{
    if (memory <= 0)
        return tmpfs_default_max;
    int64_t q = memory / 4 / 1024 * 1024; /* whole KiB: tmpfs sizes are in KiB */
    return q < tmpfs_default_min   ? tmpfs_default_min
           : q > tmpfs_default_max ? tmpfs_default_max
                                   : q;
}
static const char default_namespace[] = "default";
static const char default_rootfs[] = "host";
static const char default_working_dir[] = "/workspace";

const char *const stk_default_blacklist[] = {
    "169.254.169.254/32", /* AWS, GCP, Azure, OpenStack metadata */
    "169.254.42.42/32",   /* Scaleway metadata */
    "fd00:ec2::254/128",  /* AWS IPv6 metadata */
    "fd00:42::42/128",    /* Scaleway IPv6 metadata */
};
const size_t stk_default_blacklist_n = STK_ARRAY_SIZE(stk_default_blacklist);

const char *const stk_source_names[_STK_SRC_N] = {"default", "environment", "spec", "flag"};

/* Pod Security Standards, baseline: the capabilities it permits adding. */
static const char *const baseline_caps[] = {
    "AUDIT_WRITE",      "CHOWN",   "DAC_OVERRIDE", "FOWNER",  "FSETID", "KILL",       "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID",       "SETPCAP", "SETUID", "SYS_CHROOT",
};

bool stk_policy_allows_capability(enum stk_policy policy, const char *cap)
{
    switch (policy) {
    case STK_POLICY_RESTRICTED:
        return strcmp(cap, "NET_BIND_SERVICE") == 0;
    case STK_POLICY_BASELINE:
        return stk_enum_lookup(baseline_caps, STK_ARRAY_SIZE(baseline_caps), cap) >= 0;
    case STK_POLICY_PRIVILEGED:
        return true;
    case _STK_POLICY_N:
        break;
    }
    return false;
}

struct rctx {
    struct stk_boundary *b;
    struct stk_arena *a;
    struct stk_diags *d;
    const struct stk_sandbox *sb;
    const char *sb_file;
    const struct stk_envconfig *env;
    const char *env_file;
    struct stk_setting *settings;
    size_t n_settings, cap_settings;
};

static struct stk_origin spec_origin(const struct rctx *r, const struct stk_meta *m,
                                     const char *path)
{
    return (struct stk_origin){
        .source = STK_SRC_SPEC, .file = r->sb_file, .pos = m->pos, .path = path};
}

static struct stk_origin env_origin(const struct rctx *r, const struct stk_meta *m,
                                    const char *path)
{
    return (struct stk_origin){
        .source = STK_SRC_ENVIRONMENT, .file = r->env_file, .pos = m->pos, .path = path};
}

static struct stk_origin default_origin(const char *path)
{
    return (struct stk_origin){.source = STK_SRC_DEFAULT, .path = path};
}

static void setting(struct rctx *r, const char *path, const char *value, struct stk_origin o)
{
    if (r->n_settings == r->cap_settings) {
        r->cap_settings = r->cap_settings ? r->cap_settings * 2 : 32;
        r->settings = stk_xrealloc(r->settings, r->cap_settings * sizeof(*r->settings));
    }
    r->settings[r->n_settings++] =
        (struct stk_setting){.path = path, .value = stk_arena_strdup(r->a, value), .origin = o};
}

STK_PRINTF(4, 5)
static void rerr(struct rctx *r, const struct stk_origin *at, const char *path, const char *fmt,
                 ...)
{
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *msg = stk_xvasprintf(fmt, ap);
    va_end(ap);
    stk_diags_add(r->d, STK_SEV_ERROR, at->file ? at->file : r->sb_file, at->pos, path, "%s", msg);
}

STK_PRINTF(4, 5)
static void rwarn(struct rctx *r, const struct stk_origin *at, const char *path, const char *fmt,
                  ...)
{
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *msg = stk_xvasprintf(fmt, ap);
    va_end(ap);
    stk_diags_add(r->d, STK_SEV_WARNING, at->file ? at->file : r->sb_file, at->pos, path, "%s",
                  msg);
}

/* The chain: the Sandbox's value, else the environment's default, else the
 * hard default. Returns the chosen value (NULL: the hard default) and its
 * origin. Every typed value starts with its stk_meta. */
static const void *pick(const struct rctx *r, const char *path, const void *spec, const void *envv,
                        const char *env_path, struct stk_origin *ret_origin)
{
    const struct stk_meta *sm = spec, *em = envv;
    if (sm && sm->set) {
        *ret_origin = spec_origin(r, sm, path);
        return spec;
    }
    if (em && em->set) {
        *ret_origin = env_origin(r, em, env_path);
        return envv;
    }
    *ret_origin = default_origin(path);
    return NULL;
}

static int chain_enum(struct rctx *r, const char *path, const struct stk_enumv *spec,
                      const struct stk_enumv *envv, const char *env_path, int hard,
                      const char *const *names, struct stk_origin *ret_origin)
{
    const struct stk_enumv *v = pick(r, path, spec, envv, env_path, ret_origin);
    int value = v ? v->v : hard;
    setting(r, path, names[value], *ret_origin);
    return value;
}

static bool chain_bool(struct rctx *r, const char *path, const struct stk_bool *spec,
                       const struct stk_bool *envv, const char *env_path, bool hard,
                       struct stk_origin *ret_origin)
{
    const struct stk_bool *v = pick(r, path, spec, envv, env_path, ret_origin);
    bool value = v ? v->v : hard;
    setting(r, path, value ? "true" : "false", *ret_origin);
    return value;
}

enum num_kind { NUM_INT, NUM_CPU, NUM_BYTES, NUM_DURATION };

static void num_text(enum num_kind k, int64_t v, char *buf, size_t n)
{
    switch (k) {
    case NUM_INT:
        snprintf(buf, n, "%lld", (long long)v);
        break;
    case NUM_CPU:
        stk_cpu_format(v, buf, n);
        break;
    case NUM_BYTES:
        stk_bytes_format(v, buf, n);
        break;
    case NUM_DURATION:
        if (v == 0)
            snprintf(buf, n, "none");
        else
            stk_duration_format(v, buf, n);
        break;
    }
}

static int64_t chain_num(struct rctx *r, const char *path, const struct stk_num *spec,
                         const struct stk_num *envv, const char *env_path, int64_t hard,
                         enum num_kind kind, struct stk_origin *ret_origin)
{
    const struct stk_num *v = pick(r, path, spec, envv, env_path, ret_origin);
    int64_t value = v ? v->v : hard;
    char text[64];
    num_text(kind, value, text, sizeof(text));
    setting(r, path, text, *ret_origin);
    return value;
}

static const char *chain_str(struct rctx *r, const char *path, const struct stk_str *spec,
                             const char *hard, struct stk_origin *ret_origin)
{
    const struct stk_str *v = pick(r, path, spec, NULL, NULL, ret_origin);
    const char *value = v ? v->v : hard;
    setting(r, path, value ? value : "none", *ret_origin);
    return value;
}

/* ---- resources ----------------------------------------------------------- */

struct resource_desc {
    const char *path;
    const char *env_path;
    const char *limit_path;
    size_t spec_off;  /* offset of struct stk_num in struct stk_resources */
    size_t limit_off; /* offset in struct stk_resolved_limits */
    size_t origin_off;
    enum num_kind kind;
};

#define RES(name, member, lmember, omember, k)                                                     \
    {                                                                                              \
        "spec.resources." name, "data.defaults.resources." name, "data.limits.resources." name,    \
            offsetof(struct stk_resources, member), offsetof(struct stk_resolved_limits, lmember), \
            offsetof(struct stk_boundary, omember), k                                              \
    }

static const struct resource_desc resource_table[] = {
    RES("cpu", cpu, cpu_milli, cpu_origin, NUM_CPU),
    RES("memory", memory, memory, memory_origin, NUM_BYTES),
    RES("pids", pids, pids, pids_origin, NUM_INT),
    RES("wallClock", wall_clock, wall_clock_ms, wall_clock_origin, NUM_DURATION),
    RES("cpuTime", cpu_time, cpu_time_ms, cpu_time_origin, NUM_DURATION),
    RES("storage", storage, storage, storage_origin, NUM_BYTES),
};

static const struct stk_num *res_field(const struct stk_resources *res,
                                       const struct resource_desc *d)
{
    return res ? (const struct stk_num *)((const char *)res + d->spec_off) : NULL;
}

static void resolve_resources(struct rctx *r)
{
    struct stk_boundary *b = r->b;
    const struct stk_resources *spec = &r->sb->spec.resources;
    const struct stk_resources *def = r->env ? &r->env->data.defaults.resources : NULL;
    const struct stk_resources *lim = r->env ? &r->env->data.limits.resources : NULL;

    for (size_t i = 0; i < STK_ARRAY_SIZE(resource_table); i++) {
        const struct resource_desc *d = &resource_table[i];
        int64_t hard = *(const int64_t *)((const char *)&default_limits + d->limit_off);
        struct stk_origin *o = (struct stk_origin *)((char *)b + d->origin_off);
        int64_t v = chain_num(r, d->path, res_field(spec, d), res_field(def, d), d->env_path, hard,
                              d->kind, o);
        const struct stk_num *limit = res_field(lim, d);
        if (limit && limit->meta.set) {
            /* A missing deadline or budget is unbounded, so above any limit. */
            bool unbounded = v == 0 && d->kind == NUM_DURATION;
            if (unbounded || v > limit->v) {
                char vt[64], lt[64];
                num_text(d->kind, v, vt, sizeof(vt));
                num_text(d->kind, limit->v, lt, sizeof(lt));
                rerr(r, o, d->path, "%s is above the environment's limit of %s (%s in %s:%u:%u)",
                     unbounded ? "no limit" : vt, lt, d->limit_path, r->env_file,
                     limit->meta.pos.line, limit->meta.pos.col);
                continue;
            }
        }
        *(int64_t *)((char *)&b->limits + d->limit_off) = v;
    }
}

/* ---- security ---------------------------------------------------------------- */

static void resolve_security(struct rctx *r)
{
    struct stk_boundary *b = r->b;
    const struct stk_security *sec = &r->sb->spec.security;
    const struct stk_security_defaults *def = r->env ? &r->env->data.defaults.security : NULL;

    b->policy = chain_enum(r, "spec.security.policy", &sec->policy, def ? &def->policy : NULL,
                           "data.defaults.security.policy", default_policy, stk_policy_names,
                           &b->policy_origin);
    b->kube_access =
        chain_bool(r, "spec.security.kubernetesAccess", &sec->kubernetes_access,
                   def ? &def->kubernetes_access : NULL, "data.defaults.security.kubernetesAccess",
                   default_kube_access, &b->kube_access_origin);
    b->kube_role =
        chain_enum(r, "spec.security.kubernetesRole", &sec->kubernetes_role,
                   def ? &def->kubernetes_role : NULL, "data.defaults.security.kubernetesRole",
                   default_kube_role, stk_role_names, &b->kube_role_origin);
    b->registry = chain_bool(r, "spec.security.registry", &sec->registry, NULL, NULL, false,
                             &b->registry_origin);
    b->docker =
        chain_bool(r, "spec.security.docker", &sec->docker, NULL, NULL, false, &b->docker_origin);
    b->vcluster = chain_bool(r, "spec.vcluster", &r->sb->spec.vcluster, NULL, NULL, false,
                             &b->vcluster_origin);

    char policy_from[256];
    stk_origin_format(&b->policy_origin, policy_from, sizeof(policy_from));

    /* Capabilities must be allowed by the resolved level. */
    const struct stk_capabilities *caps = &sec->capabilities;
    b->caps = stk_arena_array(r->a, caps->add.n + 1, sizeof(*b->caps));
    b->caps_origin = caps->add.meta.set
                         ? spec_origin(r, &caps->add.meta, "spec.security.capabilities.add")
                         : default_origin("spec.security.capabilities.add");
    for (uint32_t i = 0; i < caps->add.n; i++) {
        const struct stk_str *c = &caps->add.items[i];
        bool dup = false;
        for (size_t j = 0; j < b->n_caps && !dup; j++)
            dup = !strcmp(b->caps[j], c->v);
        if (dup)
            continue;
        if (!stk_policy_allows_capability(b->policy, c->v)) {
            enum stk_policy need = stk_policy_allows_capability(STK_POLICY_BASELINE, c->v)
                                       ? STK_POLICY_BASELINE
                                       : STK_POLICY_PRIVILEGED;
            struct stk_origin at = spec_origin(r, &c->meta, NULL);
            _cleanup_free_ char *path =
                stk_xasprintf("spec.security.capabilities.add[%u]", (unsigned)i);
            rerr(r, &at, path, "%s is not allowed at policy %s (%s); it needs policy %s", c->v,
                 stk_policy_names[b->policy], policy_from, stk_policy_names[need]);
            continue;
        }
        b->caps[b->n_caps++] = c->v;
    }
    setting(r, "spec.security.capabilities.add", b->n_caps ? "added" : "none", b->caps_origin);

    /* docker and registry need privileged. */
    if (b->docker && b->policy != STK_POLICY_PRIVILEGED)
        rerr(r, &b->docker_origin, "spec.security.docker",
             "docker needs security.policy: privileged (the sidecar is a privileged Docker "
             "daemon); the policy is %s (%s)",
             stk_policy_names[b->policy], policy_from);
    if (b->registry && b->policy != STK_POLICY_PRIVILEGED)
        rerr(r, &b->registry_origin, "spec.security.registry",
             "registry needs security.policy: privileged (registry writes are an operator "
             "exception); the policy is %s (%s)",
             stk_policy_names[b->policy], policy_from);

    if (sec->kubernetes_role.meta.set && !b->kube_access) {
        char from[256];
        stk_origin_format(&b->kube_access_origin, from, sizeof(from));
        rwarn(r, &b->kube_role_origin, "spec.security.kubernetesRole",
              "has no effect: kubernetesAccess is false (%s), so no token is mounted", from);
    }
    if (b->vcluster && !b->kube_access)
        rwarn(r, &b->vcluster_origin, "spec.vcluster",
              "the sandbox gets a virtual API server but no token to call it "
              "(kubernetesAccess is false)");
}

/* ---- deployment, process, storage ------------------------------------------- */

static void resolve_deployment(struct rctx *r)
{
    struct stk_boundary *b = r->b;
    const struct stk_sandbox_spec *s = &r->sb->spec;
    const struct stk_deployment *dep = &s->deployment;

    b->model = chain_enum(r, "spec.deployment.model", &dep->model, NULL, NULL, STK_MODEL_STANDALONE,
                          stk_model_names, &b->model_origin);
    if (b->model == STK_MODEL_STANDALONE) {
        if (dep->target.meta.set) {
            struct stk_origin at = spec_origin(r, &dep->target.meta, NULL);
            rerr(r, &at, "spec.deployment.target", "applies only to deployment.model: injection");
        }
        return;
    }

    /* Injection: the sandbox is a container in someone else's pods. */
    if (!dep->target.meta.set)
        rerr(r, &b->model_origin, "spec.deployment.target",
             "injection needs a target workload (kind, name)");
    else
        b->target = &dep->target;

    struct stk_origin at;
    if (s->storage.home.meta.set) {
        at = spec_origin(r, &s->storage.home.meta, NULL);
        rerr(r, &at, "spec.storage.home",
             "not available with injection: the workload may run several replicas, which "
             "would share one home volume and corrupt it");
    }
    if (s->security.docker.meta.set && s->security.docker.v) {
        at = spec_origin(r, &s->security.docker.meta, NULL);
        rerr(r, &at, "spec.security.docker",
             "not available with injection: an injected sandbox debugs a running service; "
             "it does not build images");
    }
    if (s->network.meta.set) {
        at = spec_origin(r, &s->network.meta, NULL);
        rerr(r, &at, "spec.network",
             "not available with injection: the sandbox joins the workload's network "
             "namespace, so NetworkPolicies cannot apply to it alone; the workload's own "
             "policies govern its traffic");
    }
    if (s->vcluster.meta.set && s->vcluster.v) {
        at = spec_origin(r, &s->vcluster.meta, NULL);
        rerr(r, &at, "spec.vcluster",
             "not available with injection: a vcluster belongs to a "
             "standalone sandbox's namespace");
    }
    const struct stk_allocation *alloc = &s->driver_config.kubernetes.allocation;
    if (alloc->mode.meta.set && alloc->mode.v == STK_ALLOC_WARMPOOL) {
        at = spec_origin(r, &alloc->mode.meta, NULL);
        rerr(r, &at, "spec.driverConfig.kubernetes.allocation.mode",
             "warm pools hold standalone sandboxes; injection modifies an existing workload");
    }
}

static void resolve_process(struct rctx *r)
{
    struct stk_boundary *b = r->b;
    const struct stk_sandbox_spec *s = &r->sb->spec;
    struct stk_origin o;

    b->image = s->image.meta.set ? s->image.v : NULL;
    b->rootfs = chain_str(r, "spec.rootfs", &s->rootfs, default_rootfs, &b->rootfs_origin);
    b->working_dir = chain_str(r, "spec.workingDir", &s->working_dir, default_working_dir, &o);
    /* an image's WorkingDir comes before the hard default */
    b->working_dir_default = o.source == STK_SRC_DEFAULT;
    b->runtime =
        chain_enum(r, "spec.runtime", &s->runtime, r->env ? &r->env->data.defaults.runtime : NULL,
                   "data.defaults.runtime", default_runtime, stk_runtime_names, &b->runtime_origin);

    b->argc = s->command.n + s->args.n;
    b->n_command = s->command.n;
    b->argv = stk_arena_array(r->a, b->argc + 1, sizeof(*b->argv));
    for (uint32_t i = 0; i < s->command.n; i++)
        b->argv[i] = s->command.items[i].v;
    for (uint32_t i = 0; i < s->args.n; i++)
        b->argv[s->command.n + i] = s->args.items[i].v;

    b->env = s->env.items;
    b->n_env = s->env.n;
    for (uint32_t i = 0; i < s->env.n; i++) {
        const struct stk_env_var *e = &s->env.items[i];
        _cleanup_free_ char *path = stk_xasprintf("spec.env[%u].name", (unsigned)i);
        struct stk_origin at = spec_origin(r, &e->name.meta, NULL);
        if (stk_startswith(e->name.v, "STOCKADE_"))
            rerr(r, &at, path, "names starting with STOCKADE_ are reserved for stockade");
        for (uint32_t j = 0; j < i; j++)
            if (!strcmp(s->env.items[j].name.v, e->name.v)) {
                rerr(r, &at, path, "duplicate variable \"%s\" (first at line %u)", e->name.v,
                     s->env.items[j].name.meta.pos.line);
                break;
            }
        bool has_value = e->value.meta.set, has_from = e->value_from.meta.set;
        if (has_value && has_from)
            rerr(r, &at, path, "set either value or valueFrom, not both");
        if (has_from && !e->value_from.config_map_key_ref.meta.set) {
            struct stk_origin vf = spec_origin(r, &e->value_from.meta, NULL);
            _cleanup_free_ char *p2 = stk_xasprintf("spec.env[%u].valueFrom", (unsigned)i);
            rerr(r, &vf, p2, "needs configMapKeyRef");
        }
    }
    b->env_from = s->env_from.items;
    b->n_env_from = s->env_from.n;
}

static void resolve_storage(struct rctx *r)
{
    struct stk_boundary *b = r->b;
    const struct stk_home *home = &r->sb->spec.storage.home;
    struct stk_origin o;

    b->home = home->meta.set;
    b->home_origin = b->home ? spec_origin(r, &home->meta, "spec.storage.home")
                             : default_origin("spec.storage.home");
    setting(r, "spec.storage.home", b->home ? "enabled" : "none", b->home_origin);
    b->home_size = chain_num(r, "spec.storage.home.size", &home->size, NULL, NULL,
                             default_home_size, NUM_BYTES, &o);
    b->home_persist =
        chain_bool(r, "spec.storage.home.persist", &home->persist, NULL, NULL, false, &o);
    b->home_storage_class = home->storage_class_name.meta.set ? home->storage_class_name.v : NULL;

    const struct stk_local_config *local = &r->sb->spec.driver_config.local;
    int64_t dflt = tmpfs_default(b->limits.memory);
    b->tmp_size = chain_num(r, "spec.driverConfig.local.tmpSize", &local->tmp_size, NULL, NULL,
                            dflt, NUM_BYTES, &o);
    b->shm_size = chain_num(r, "spec.driverConfig.local.shmSize", &local->shm_size, NULL, NULL,
                            dflt, NUM_BYTES, &o);
    int64_t tmpfs = b->tmp_size + b->shm_size;
    if (b->limits.memory && tmpfs >= b->limits.memory) {
        char t[32], sh[32], m[32];
        stk_bytes_format(b->tmp_size, t, sizeof(t));
        stk_bytes_format(b->shm_size, sh, sizeof(sh));
        stk_bytes_format(b->limits.memory, m, sizeof(m));
        /* a size the spec set is the one to change; with both defaulted
         * the memory limit itself is too small */
        bool tmp_set = local->tmp_size.meta.set, shm_set = local->shm_size.meta.set;
        const struct stk_meta *at_meta = tmp_set   ? &local->tmp_size.meta
                                         : shm_set ? &local->shm_size.meta
                                                   : NULL;
        struct stk_origin at = at_meta ? spec_origin(r, at_meta, NULL) : r->b->memory_origin;
        rerr(r, &at,
             tmp_set   ? "spec.driverConfig.local.tmpSize"
             : shm_set ? "spec.driverConfig.local.shmSize"
                       : "spec.resources.memory",
             "tmpSize (%s%s) + shmSize (%s%s) must be below the memory limit (%s): tmpfs pages "
             "are charged to the sandbox's memory",
             t, tmp_set ? "" : ", the default for this limit", sh,
             shm_set ? "" : ", the default for this limit", m);
    }
}

/* ---- network ----------------------------------------------------------------- */

static void check_ports(struct rctx *r, const struct stk_port *ports, uint32_t n,
                        const char *prefix)
{
    for (uint32_t i = 0; i < n; i++) {
        const struct stk_port *p = &ports[i];
        if (!p->end_port.meta.set)
            continue;
        struct stk_origin at = spec_origin(r, &p->end_port.meta, NULL);
        _cleanup_free_ char *path = stk_xasprintf("%s[%u].endPort", prefix, (unsigned)i);
        if (!p->port.meta.set)
            rerr(r, &at, path, "endPort needs port (the first port of the range)");
        else if (p->end_port.v < p->port.v)
            rerr(r, &at, path, "endPort %lld is below port %lld", (long long)p->end_port.v,
                 (long long)p->port.v);
    }
}

static void check_selector(struct rctx *r, const struct stk_label_selector *sel, const char *prefix)
{
    for (uint32_t i = 0; i < sel->match_expressions.n; i++) {
        const struct stk_selector_req *q = &sel->match_expressions.items[i];
        bool needs_values = q->op.v == STK_SEL_IN || q->op.v == STK_SEL_NOTIN;
        if (needs_values == (q->values.n > 0))
            continue;
        struct stk_origin at = spec_origin(r, &q->meta, NULL);
        _cleanup_free_ char *path =
            stk_xasprintf("%s.matchExpressions[%u].values", prefix, (unsigned)i);
        rerr(r, &at, path,
             needs_values ? "operator %s needs at least one value" : "operator %s takes no values",
             stk_selector_op_names[q->op.v]);
    }
}

static void check_internal(struct rctx *r, const struct stk_internal_egress *ie, uint32_t n,
                           const char *prefix)
{
    for (uint32_t i = 0; i < n; i++) {
        _cleanup_free_ char *p = stk_xasprintf("%s[%u]", prefix, (unsigned)i);
        _cleanup_free_ char *pp = stk_xasprintf("%s.ports", p);
        _cleanup_free_ char *ps = stk_xasprintf("%s.podSelector", p);
        check_ports(r, ie[i].ports.items, ie[i].ports.n, pp);
        check_selector(r, &ie[i].pod_selector, ps);
    }
}

static void resolve_network(struct rctx *r)
{
    struct stk_boundary *b = r->b;
    const struct stk_network *net = &r->sb->spec.network;
    const struct stk_env_network *env_net = r->env ? &r->env->data.network : NULL;

    b->external_egress = chain_bool(r, "spec.network.externalEgress", &net->external_egress,
                                    r->env ? &r->env->data.defaults.security.external_egress : NULL,
                                    "data.defaults.security.externalEgress",
                                    default_external_egress, &b->external_egress_origin);

    /* The blacklist: the operator's list replaces the default one. */
    if (env_net && env_net->blacklist_ips.meta.set) {
        struct stk_cidr *bl = stk_arena_array(r->a, env_net->blacklist_ips.n + 1, sizeof(*bl));
        for (uint32_t i = 0; i < env_net->blacklist_ips.n; i++)
            bl[i] = env_net->blacklist_ips.items[i].v;
        b->blacklist = bl;
        b->n_blacklist = env_net->blacklist_ips.n;
        b->blacklist_origin =
            env_origin(r, &env_net->blacklist_ips.meta, "data.network.blacklistIPs");
    } else {
        struct stk_cidr *bl = stk_arena_array(r->a, stk_default_blacklist_n, sizeof(*bl));
        for (size_t i = 0; i < stk_default_blacklist_n; i++)
            if (stk_cidr_parse(stk_default_blacklist[i], &bl[i], NULL) < 0)
                abort(); /* a constant above is wrong */
        b->blacklist = bl;
        b->n_blacklist = stk_default_blacklist_n;
        b->blacklist_origin = default_origin("data.network.blacklistIPs");
    }
    {
        struct stk_buf t = {0};
        char cb[STK_CIDR_STRLEN];
        for (size_t i = 0; i < b->n_blacklist; i++)
            stk_buf_printf(&t, "%s%s", i ? ", " : "", stk_cidr_format(&b->blacklist[i], cb));
        setting(r, "data.network.blacklistIPs", b->n_blacklist ? stk_buf_str(&t) : "none",
                b->blacklist_origin);
        stk_buf_free(&t);
    }

    /* Host names for the egress proxy (each entry was checked by the field
     * table), and what it refuses whatever a name resolves to. */
    {
        struct stk_allow_host *ah = stk_arena_array(r->a, net->allow_hosts.n + 1, sizeof(*ah));
        for (uint32_t i = 0; i < net->allow_hosts.n; i++) {
            const char *why;
            if (!stk_allow_host_parse(net->allow_hosts.items[i].v, &ah[i], &why))
                abort(); /* the field table checked the format */
        }
        b->allow_hosts = ah;
        b->n_allow_hosts = net->allow_hosts.n;
        if (net->allow_hosts.n)
            b->allow_hosts_origin = spec_origin(r, &net->allow_hosts.meta, NULL);
        size_t nd = b->n_blacklist + (env_net ? env_net->pod_cidrs.n + 1 : 0);
        struct stk_cidr *d = stk_arena_array(r->a, nd + 1, sizeof(*d));
        size_t k = 0;
        for (size_t i = 0; i < b->n_blacklist; i++)
            d[k++] = b->blacklist[i];
        if (env_net) {
            for (uint32_t i = 0; i < env_net->pod_cidrs.n; i++)
                d[k++] = env_net->pod_cidrs.items[i].v;
            if (env_net->service_cidr.meta.set)
                d[k++] = env_net->service_cidr.v;
        }
        b->proxy_deny = d;
        b->n_proxy_deny = k;
    }

    /* The allowlist: excepts inside the rule, never to a blacklisted network. */
    for (uint32_t i = 0; i < net->egress.n; i++) {
        const struct stk_egress_rule *er = &net->egress.items[i];
        char cb[STK_CIDR_STRLEN], eb[STK_CIDR_STRLEN];
        for (uint32_t j = 0; j < er->except.n; j++) {
            const struct stk_cidrv *ex = &er->except.items[j];
            if (stk_cidr_contains(&er->cidr.v, &ex->v) && !stk_cidr_equal(&er->cidr.v, &ex->v))
                continue;
            struct stk_origin at = spec_origin(r, &ex->meta, NULL);
            _cleanup_free_ char *path =
                stk_xasprintf("spec.network.egress[%u].except[%u]", (unsigned)i, (unsigned)j);
            rerr(r, &at, path, "%s must lie strictly inside the rule's cidr %s (same family)",
                 stk_cidr_format(&ex->v, eb), stk_cidr_format(&er->cidr.v, cb));
        }
        for (size_t j = 0; j < b->n_blacklist; j++) {
            if (!stk_cidr_contains(&b->blacklist[j], &er->cidr.v))
                continue;
            struct stk_origin at = spec_origin(r, &er->cidr.meta, NULL);
            _cleanup_free_ char *path = stk_xasprintf("spec.network.egress[%u].cidr", (unsigned)i);
            char from[256];
            stk_origin_format(&b->blacklist_origin, from, sizeof(from));
            rerr(r, &at, path,
                 "%s lies inside the blacklisted network %s (%s), which is "
                 "never reachable",
                 stk_cidr_format(&er->cidr.v, cb), stk_cidr_format(&b->blacklist[j], eb), from);
            break;
        }
        _cleanup_free_ char *pp = stk_xasprintf("spec.network.egress[%u].ports", (unsigned)i);
        check_ports(r, er->ports.items, er->ports.n, pp);
    }
    check_internal(r, net->internal_egress.items, net->internal_egress.n,
                   "spec.network.internalEgress");

    stk_egress_build(b, net, r->sb_file, env_net, r->env_file);
}

/* ---- credentials and driver config --------------------------------------------- */

static bool secret_ref_valid(const char *ref)
{
    const char *slash = strchr(ref, '/');
    if (!slash)
        return stk_dns_subdomain_valid(ref);
    char ns[64];
    size_t n = (size_t)(slash - ref);
    if (n >= sizeof(ns))
        return false;
    memcpy(ns, ref, n);
    ns[n] = '\0';
    return stk_dns_label_valid(ns) && stk_dns_subdomain_valid(slash + 1);
}

static void resolve_bindings(struct rctx *r)
{
    struct stk_boundary *b = r->b;
    const struct stk_sandbox_spec *s = &r->sb->spec;
    b->bindings = s->bindings.items;
    b->n_bindings = s->bindings.n;
    for (uint32_t i = 0; i < s->bindings.n; i++) {
        const struct stk_binding *bd = &s->bindings.items[i];
        const struct stk_credential *c = &bd->credential;
        struct stk_origin at = spec_origin(r, &bd->name.meta, NULL);
        _cleanup_free_ char *path = stk_xasprintf("spec.bindings[%u]", (unsigned)i);
        for (uint32_t j = 0; j < i; j++)
            if (!strcmp(s->bindings.items[j].name.v, bd->name.v)) {
                rerr(r, &at, path, "duplicate binding name \"%s\"", bd->name.v);
                break;
            }
        if (!c->meta.set || !c->ref.meta.set)
            continue;
        struct stk_origin ref_at = spec_origin(r, &c->ref.meta, NULL);
        _cleanup_free_ char *ref_path = stk_xasprintf("%s.credential.ref", path);
        _cleanup_free_ char *key_path = stk_xasprintf("%s.credential.key", path);
        switch ((enum stk_cred_source)c->source.v) {
        case STK_CRED_ENV:
            if (!stk_env_name_valid(c->ref.v))
                rerr(r, &ref_at, ref_path,
                     "source env needs the name of a variable of the "
                     "egress proxy");
            break;
        case STK_CRED_FILE:
            if (c->ref.v[0] != '/')
                rerr(r, &ref_at, ref_path,
                     "source file needs an absolute path on the egress "
                     "proxy's host");
            break;
        case STK_CRED_KUBERNETES_SECRET:
            if (!c->key.meta.set)
                rerr(r, &ref_at, key_path,
                     "source kubernetesSecret needs the key inside the "
                     "Secret");
            if (!secret_ref_valid(c->ref.v))
                rerr(r, &ref_at, ref_path,
                     "source kubernetesSecret needs NAME or "
                     "NAMESPACE/NAME of a Secret");
            break;
        case _STK_CRED_N:
            break;
        }
        if (c->key.meta.set && c->source.v != STK_CRED_KUBERNETES_SECRET) {
            struct stk_origin key_at = spec_origin(r, &c->key.meta, NULL);
            rerr(r, &key_at, key_path, "key applies only to source kubernetesSecret");
        }
    }
}

/* The simulator spreads cpuTime over runFor: without an end there is no
 * rate to model, and guessing one would be pretending. */
static void resolve_sim(struct rctx *r)
{
    const struct stk_sim_config *sim = &r->sb->spec.driver_config.sim;
    r->b->sim = sim;
    if (sim->cpu_time.meta.set && sim->cpu_time.v > 0 && !sim->run_for.meta.set) {
        struct stk_origin at = spec_origin(r, &sim->cpu_time.meta, NULL);
        rerr(r, &at, "spec.driverConfig.sim.cpuTime",
             "needs runFor: the CPU time is modelled as used evenly over runFor");
    }
    if (sim->exit_code.meta.set && !sim->run_for.meta.set) {
        struct stk_origin at = spec_origin(r, &sim->exit_code.meta, NULL);
        rerr(r, &at, "spec.driverConfig.sim.exitCode",
             "needs runFor: a workload that runs until stopped never exits on its own");
    }
}

static void resolve_kube(struct rctx *r)
{
    const struct stk_kube_config *k = &r->sb->spec.driver_config.kubernetes;
    const struct stk_allocation *al = &k->allocation;
    struct stk_origin o;
    r->b->kube = k;
    r->b->n_driver_config_keys =
        stk_driver_config_keys(&r->sb->spec.driver_config, r->a, &r->b->driver_config_keys);

    int mode = chain_enum(r, "spec.driverConfig.kubernetes.allocation.mode", &al->mode, NULL, NULL,
                          STK_ALLOC_DIRECT, stk_alloc_mode_names, &o);
    if (mode == STK_ALLOC_WARMPOOL && !al->warm_pool.meta.set)
        rerr(r, &o, "spec.driverConfig.kubernetes.allocation.warmPool",
             "allocation mode warmPool needs the name of the warm pool");
    if (mode == STK_ALLOC_DIRECT && al->warm_pool.meta.set) {
        struct stk_origin at = spec_origin(r, &al->warm_pool.meta, NULL);
        rerr(r, &at, "spec.driverConfig.kubernetes.allocation.warmPool",
             "applies only to allocation mode warmPool");
    }
    for (uint32_t i = 0; i < k->tolerations.n; i++) {
        const struct stk_toleration *t = &k->tolerations.items[i];
        struct stk_origin at = spec_origin(r, &t->meta, NULL);
        _cleanup_free_ char *path =
            stk_xasprintf("spec.driverConfig.kubernetes.tolerations[%u]", (unsigned)i);
        bool exists = t->op.meta.set && t->op.v == STK_TOL_EXISTS;
        if (exists && t->value.meta.set && t->value.v[0])
            rerr(r, &at, path, "operator Exists takes no value");
        if (!t->key.meta.set && !exists)
            rerr(r, &at, path, "an empty key needs operator Exists");
        if (t->toleration_seconds.meta.set &&
            !(t->effect.meta.set && t->effect.v == STK_EFFECT_NOEXECUTE))
            rerr(r, &at, path, "tolerationSeconds applies only to effect NoExecute");
    }
}

static void resolve_retention(struct rctx *r)
{
    struct stk_boundary *b = r->b;
    if (!r->env || !r->env->data.retention.meta.set) {
        b->retention_origin = default_origin("data.retention");
        return;
    }
    const struct stk_retention *rt = &r->env->data.retention;
    b->home_backup = rt->home_backup.meta.set && rt->home_backup.v;
    b->home_backup_days = rt->home_backup_days.meta.set ? rt->home_backup_days.v : 0;
    b->deleted_home_days = rt->deleted_home_days.meta.set ? rt->deleted_home_days.v : 0;
    b->audit_days = rt->audit_days.meta.set ? rt->audit_days.v : 0;
    b->retention_origin = env_origin(r, &rt->meta, "data.retention");
}

/* ---- entry points ------------------------------------------------------------------ */

int stk_envconfig_check(const struct stk_envconfig *env, const char *file, struct stk_diags *diags)
{
    size_t before = diags->n_errors;
    struct rctx r = {.d = diags, .sb_file = file, .env = env, .env_file = file};
    const struct stk_resources *def = &env->data.defaults.resources;
    const struct stk_resources *lim = &env->data.limits.resources;

    for (size_t i = 0; i < STK_ARRAY_SIZE(resource_table); i++) {
        const struct resource_desc *d = &resource_table[i];
        const struct stk_num *dv = res_field(def, d), *lv = res_field(lim, d);
        if (!dv->meta.set || !lv->meta.set || dv->v <= lv->v)
            continue;
        struct stk_origin at = env_origin(&r, &dv->meta, NULL);
        char dt[64], lt[64];
        num_text(d->kind, dv->v, dt, sizeof(dt));
        num_text(d->kind, lv->v, lt, sizeof(lt));
        rerr(&r, &at, d->env_path, "the default %s is above the limit of %s (%s, line %u)", dt, lt,
             d->limit_path, lv->meta.pos.line);
    }
    const struct stk_env_network *net = &env->data.network;
    for (uint32_t i = 0; i < net->exclude_policies.n; i++)
        for (uint32_t j = 0; j < i; j++)
            if (net->exclude_policies.items[i].v == net->exclude_policies.items[j].v) {
                struct stk_origin at = env_origin(&r, &net->exclude_policies.items[i].meta, NULL);
                rerr(&r, &at, "data.network.excludePolicies", "\"%s\" is listed twice",
                     stk_netpol_names[net->exclude_policies.items[i].v]);
            }
    const struct stk_cidrv *svc = &net->service_cidr;
    (void)svc;
    /* check_internal reports through spec_origin; point it at this file. */
    check_internal(&r, net->internal_egress.items, net->internal_egress.n,
                   "data.network.internalEgress");
    const struct stk_security_defaults *sd = &env->data.defaults.security;
    if (sd->kubernetes_role.meta.set && sd->kubernetes_access.meta.set &&
        !sd->kubernetes_access.v) {
        struct stk_origin at = env_origin(&r, &sd->kubernetes_role.meta, NULL);
        rwarn(&r, &at, "data.defaults.security.kubernetesRole",
              "has no effect unless a sandbox sets kubernetesAccess: true");
    }
    return diags->n_errors > before ? -EINVAL : 0;
}

int stk_resolve(const struct stk_sandbox *sb, const char *sb_file, const struct stk_envconfig *env,
                const char *env_file, struct stk_diags *diags, struct stk_boundary **ret)
{
    size_t before = diags->n_errors;
    _cleanup_arena_ struct stk_arena *a = stk_arena_new();
    struct stk_boundary *b = stk_arena_alloc(a, sizeof(*b));
    struct rctx r = {
        .b = b, .a = a, .d = diags, .sb = sb, .sb_file = sb_file, .env = env, .env_file = env_file};

    if (env && stk_envconfig_check(env, env_file, diags) < 0)
        return -EINVAL;

    b->arena = a;
    b->spec_file = sb_file;
    b->env_file = env ? env_file : NULL;
    b->env_name = env ? env->metadata.name.v : NULL;
    b->name = sb->metadata.name.v;
    b->namespace = chain_str(&r, "metadata.namespace", &sb->metadata.namespace, default_namespace,
                             &b->namespace_origin);
    b->labels = &sb->metadata.labels;
    b->annotations = &sb->metadata.annotations;

    resolve_security(&r);
    resolve_deployment(&r);
    resolve_process(&r);
    resolve_resources(&r);
    resolve_storage(&r);
    resolve_network(&r);
    resolve_bindings(&r);
    resolve_kube(&r);
    resolve_sim(&r);
    resolve_retention(&r);

    b->settings = stk_arena_array(a, r.n_settings, sizeof(*b->settings));
    if (r.n_settings)
        memcpy(b->settings, r.settings, r.n_settings * sizeof(*b->settings));
    b->n_settings = r.n_settings;
    free(r.settings);

    if (diags->n_errors > before)
        return -EINVAL;
    a = NULL; /* owned by b from here */
    *ret = b;
    return 0;
}

void stk_boundary_free(struct stk_boundary *b)
{
    if (b)
        stk_arena_free(b->arena);
}

const struct stk_setting *stk_boundary_setting(const struct stk_boundary *b, const char *path)
{
    for (size_t i = 0; i < b->n_settings; i++)
        if (!strcmp(b->settings[i].path, path))
            return &b->settings[i];
    return NULL;
}

const char *stk_boundary_default_text(const char *path, void *unused)
{
    static struct stk_boundary *defaults;
    (void)unused;
    if (!defaults) {
        static struct stk_sandbox empty;
        struct stk_diags d = {0};
        empty.metadata.name.v = "example";
        empty.metadata.name.meta.set = true;
        if (stk_resolve(&empty, "<defaults>", NULL, NULL, &d, &defaults) < 0)
            abort(); /* the hard defaults must always resolve */
        stk_diags_free(&d);
    }
    const struct stk_setting *s = stk_boundary_setting(defaults, path);
    return s ? s->value : NULL;
}

void stk_origin_format(const struct stk_origin *o, char *buf, size_t n)
{
    switch (o->source) {
    case STK_SRC_DEFAULT:
        snprintf(buf, n, "hard default");
        return;
    case STK_SRC_FLAG:
        snprintf(buf, n, "command-line flag");
        return;
    case STK_SRC_ENVIRONMENT:
        snprintf(buf, n, "environment %s:%u:%u", o->file ? o->file : "?", o->pos.line, o->pos.col);
        return;
    case STK_SRC_SPEC:
        snprintf(buf, n, "spec %s:%u:%u", o->file ? o->file : "?", o->pos.line, o->pos.col);
        return;
    case _STK_SRC_N:
        break;
    }
    snprintf(buf, n, "?");
}
