/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The authorization engine (docs/gateway.md, "Authorization"). Default
 * deny: a request is allowed when one grant of the caller's identity lists
 * the verb and its whole scope holds for the target. A denied request on a
 * sandbox the caller cannot see is hidden (404), so existence never leaks.
 */
#include "gateway/authz.h"

#include <errno.h>
#include <fnmatch.h>
#include <jansson.h>
#include <string.h>

_Static_assert(STK_ACCESS_VERBS == _STK_VERB_N, "the spec's verb table is the gateway's");

#define OWNER_SIZE sizeof(((struct stk_authz_decision *)0)->owner)

struct grant {
    uint32_t index; /* in spec.grants: what reasons and validate's paths call it */
    const struct stk_access_grant *g;
    bool verbs[_STK_VERB_N];
};

struct identity {
    const struct stk_access_spec *spec; /* the policy's tenants */
    const struct stk_access_identity *id;
    const struct grant **grants; /* the grants naming it, in document order */
    size_t n_grants;
};

struct stk_authz {
    struct identity *ids;
    size_t n_ids;
    struct grant *grants;
    size_t n_grants;
};

/* A verdict of one scope condition: NULL when it holds, else why not. */
struct why {
    char text[200];
    /* the caller's own input that failed, when telling it reveals nothing
     * about anyone else ("" otherwise) */
    char field[32], value[128];
};

STK_PRINTF(2, 3) static bool fail(struct why *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->text, sizeof(w->text), fmt, ap);
    va_end(ap);
    return false;
}

/* fail(), naming the caller's own input that was refused. */
STK_PRINTF(4, 5)
static bool fail_on(struct why *w, const char *field, const char *value, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->text, sizeof(w->text), fmt, ap);
    va_end(ap);
    snprintf(w->field, sizeof(w->field), "%s", field);
    snprintf(w->value, sizeof(w->value), "%s", value ? value : "");
    return false;
}

STK_PRINTF(2, 3) static void reason(struct stk_authz_decision *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->reason, sizeof(d->reason), fmt, ap);
    va_end(ap);
}

/* ---- compiling --------------------------------------------------------------- */

static struct identity *identity_find(struct stk_authz *z, const char *name)
{
    for (size_t i = 0; i < z->n_ids; i++)
        if (!strcmp(z->ids[i].id->name.v, name))
            return &z->ids[i];
    return NULL;
}

static int attach_grant(struct stk_authz *z, const struct grant *gr, struct stk_error **err)
{
    for (uint32_t k = 0; k < gr->g->identities.n; k++) {
        const char *name = gr->g->identities.items[k].v;
        struct identity *ic = identity_find(z, name);
        if (!ic)
            return stk_error_make(err, EINVAL, "grant %u names no identity \"%s\"", gr->index,
                                  name);
        ic->grants = stk_xrealloc(ic->grants, (ic->n_grants + 1) * sizeof(*ic->grants));
        ic->grants[ic->n_grants++] = gr;
    }
    return 0;
}

/* The decoder only stores valid verbs; a hand-built policy is checked
 * rather than trusted with an index. */
static int compile_verbs(struct grant *gr, struct stk_error **err)
{
    for (uint32_t v = 0; v < gr->g->verbs.n; v++) {
        int verb = gr->g->verbs.items[v].v;
        if (verb < 0 || verb >= _STK_VERB_N)
            return stk_error_make(err, EINVAL, "grant %u: verb %d out of range", gr->index, verb);
        gr->verbs[verb] = true;
    }
    return 0;
}

int stk_authz_new(const struct stk_access_policy *ap, struct stk_authz **ret,
                  struct stk_error **err)
{
    const struct stk_access_spec *s = &ap->spec;
    struct stk_authz *z = stk_xcalloc(1, sizeof(*z));
    z->n_ids = s->identities.n;
    z->ids = stk_xcalloc(z->n_ids + 1, sizeof(*z->ids));
    for (size_t i = 0; i < z->n_ids; i++) {
        z->ids[i].id = &s->identities.items[i];
        z->ids[i].spec = s;
    }
    z->n_grants = s->grants.n;
    z->grants = stk_xcalloc(z->n_grants + 1, sizeof(*z->grants));
    for (uint32_t g = 0; g < s->grants.n; g++) {
        struct grant *gr = &z->grants[g];
        gr->index = g;
        gr->g = &s->grants.items[g];
        int r = compile_verbs(gr, err);
        if (r >= 0)
            r = attach_grant(z, gr, err);
        if (r < 0) {
            stk_authz_free(z);
            return r;
        }
    }
    *ret = z;
    return 0;
}

void stk_authz_free(struct stk_authz *z)
{
    if (!z)
        return;
    for (size_t i = 0; i < z->n_ids; i++)
        free(z->ids[i].grants);
    free(z->ids);
    free(z->grants);
    free(z);
}

/* ---- identify ------------------------------------------------------------------- */

/* A string claim equal to want, or an array claim containing it. Numbers
 * and booleans never match: the policy's values are strings. */
static bool claim_matches(json_t *claims, const char *key, const char *want)
{
    json_t *v = json_object_get(claims, key);
    size_t i;
    json_t *item;
    if (json_is_string(v))
        return !strcmp(json_string_value(v), want);
    json_array_foreach(v, i, item)
    {
        if (json_is_string(item) && !strcmp(json_string_value(item), want))
            return true;
    }
    return false;
}

static bool claims_match(const struct stk_map *want, json_t *claims)
{
    if (!json_is_object(claims) || want->n == 0)
        return false;
    for (uint32_t i = 0; i < want->n; i++)
        if (!claim_matches(claims, want->items[i].key, want->items[i].value))
            return false;
    return true;
}

static bool jwt_matches(const struct stk_access_match *m, const struct stk_principal *p,
                        json_t *claims)
{
    if (!m->issuer.meta.set || strcmp(m->issuer.v, p->issuer) != 0)
        return false;
    if (m->subject.meta.set)
        return !strcmp(m->subject.v, p->subject);
    return m->claims.meta.set && claims_match(&m->claims, claims);
}

static bool matches(const struct stk_access_match *m, const struct stk_principal *p, json_t *claims)
{
    switch (p->kind) {
    case STK_PRINCIPAL_TOKEN:
        return m->token.meta.set && !strcmp(m->token.v, p->token_id);
    case STK_PRINCIPAL_JWT:
        return jwt_matches(m, p, claims);
    case STK_PRINCIPAL_CERT:
        return m->certificate_subject.meta.set &&
               !strcmp(m->certificate_subject.v, p->cert_subject);
    case STK_PRINCIPAL_NONE:
        return false;
    }
    return false;
}

static const struct identity *identify(const struct stk_authz *z, const struct stk_principal *p)
{
    json_t *claims = NULL;
    const struct identity *found = NULL;
    if (!p)
        return NULL;
    if (p->kind == STK_PRINCIPAL_JWT && p->claims_json)
        claims = json_loads(p->claims_json, JSON_REJECT_DUPLICATES, NULL);
    for (size_t i = 0; i < z->n_ids && !found; i++)
        if (matches(&z->ids[i].id->match, p, claims))
            found = &z->ids[i];
    json_decref(claims);
    return found;
}

const char *stk_authz_identify(const struct stk_authz *z, const struct stk_principal *p)
{
    const struct identity *ic = identify(z, p);
    return ic ? ic->id->name.v : NULL;
}

/* ---- scope conditions ------------------------------------------------------------- */

/* '*' also matches '/' (no FNM_PATHNAME): the pattern team-a/ followed by
 * '*' covers every Secret of namespace team-a. */
static bool glob_any(const struct stk_str *pats, uint32_t n, const char *s)
{
    for (uint32_t i = 0; i < n; i++)
        if (fnmatch(pats[i].v, s, 0) == 0)
            return true;
    return false;
}
#define GLOB_ANY(list, s) glob_any((list).items, (list).n, (s))

/* Unset tenants: the identity's own tenant only (none if it has none). */
static bool tenant_ok(const struct identity *ic, const struct stk_access_scope *sc,
                      const char *tenant, struct why *w)
{
    if (!tenant)
        return fail(w, "the sandbox has no tenant");
    if (sc->tenants.meta.set) {
        if (!GLOB_ANY(sc->tenants, tenant))
            return fail_on(w, "tenant", tenant, "tenant %s matches no tenants pattern", tenant);
        return true;
    }
    if (!ic->id->tenant.meta.set)
        return fail_on(w, "tenant", tenant,
                       "tenant %s: the identity has no tenant and the grant names none", tenant);
    if (strcmp(ic->id->tenant.v, tenant) != 0)
        return fail_on(w, "tenant", tenant, "tenant %s is not the identity's tenant %s", tenant,
                       ic->id->tenant.v);
    return true;
}

static bool project_ok(const struct stk_access_scope *sc, const char *project, struct why *w)
{
    if (!sc->projects.meta.set || GLOB_ANY(sc->projects, project ? project : ""))
        return true;
    return fail_on(w, "project", project, "project %s matches no projects pattern",
                   project ? project : "(none)");
}

static bool namespace_ok(const struct stk_access_scope *sc, const char *ns, struct why *w)
{
    if (!sc->namespaces.meta.set)
        return true;
    if (!ns)
        return fail(w, "the sandbox has no namespace");
    if (!GLOB_ANY(sc->namespaces, ns))
        return fail_on(w, "namespace", ns, "namespace %s matches no namespaces pattern", ns);
    return true;
}

static bool owned_default(const struct identity *ic, const struct stk_access_scope *sc)
{
    if (sc->owned.meta.set)
        return sc->owned.v;
    return ic->id->kind.v == STK_IDENTITY_END_USER;
}

static bool owner_ok(const struct identity *ic, const struct stk_access_scope *sc,
                     const char *owner, struct why *w)
{
    if (!owned_default(ic, sc) || stk_streq(owner, ic->id->name.v))
        return true;
    return fail(w, "owned by %s, not %s", owner ? owner : "nobody", ic->id->name.v);
}

/* The conditions every verb on an existing sandbox checks. */
static bool sandbox_ok(const struct identity *ic, const struct grant *gr,
                       const struct stk_authz_target *t, struct why *w)
{
    const struct stk_access_scope *sc = &gr->g->scope;
    return tenant_ok(ic, sc, t->tenant, w) && project_ok(sc, t->project, w) &&
           namespace_ok(sc, t->namespace, w) && owner_ok(ic, sc, t->owner, w);
}

/* A request on no sandbox in particular (list, audit or pool as a whole). */
static bool is_collection(const struct stk_authz_target *t)
{
    return !t || (!t->tenant && !t->project && !t->owner && !t->namespace);
}

/* Only these verbs have a form without a sandbox; exec or delete without
 * one is a caller's bug, and must not read as "every sandbox". */
static bool has_collection_form(enum stk_verb v)
{
    return v == STK_VERB_LIST || v == STK_VERB_AUDIT || v == STK_VERB_POOL || v == STK_VERB_METRICS;
}

/* ---- create --------------------------------------------------------------------------- */

/* The operator's assignment (spec.tenants) first, then the store's binding
 * (the first tenant that created in it). */
static const char *ns_owner(const struct identity *ic, const struct stk_authz_target *t,
                            const char *ns)
{
    for (uint32_t i = 0; i < ic->spec->tenants.n; i++)
        if (GLOB_ANY(ic->spec->tenants.items[i].namespaces, ns))
            return ic->spec->tenants.items[i].name.v;
    for (size_t i = 0; i < t->n_ns_owners; i++)
        if (t->ns_owners[i].ns && !strcmp(t->ns_owners[i].ns, ns))
            return t->ns_owners[i].tenant;
    return NULL;
}

/* A namespace is its tenant's: bound to another one, no grant reaches into
 * it; with no namespaces pattern, a grant covers the tenant's own (bound to
 * it, or unbound: the create binds it), never any. */
static bool ns_tenant_ok(const struct identity *ic, const struct stk_access_scope *sc,
                         const struct stk_authz_target *t, const char *ns, struct why *w)
{
    const char *owner = ns_owner(ic, t, ns);
    if (owner && !stk_streq(owner, t->tenant))
        return fail(w, "namespace %s belongs to tenant %s", ns, owner);
    return namespace_ok(sc, ns, w);
}

static bool create_namespaces_ok(const struct identity *ic, const struct stk_access_scope *sc,
                                 const struct stk_authz_target *t, struct why *w)
{
    const struct stk_boundary *b = t->b;
    /* every namespace the sandbox would occupy: the request's, the spec's
     * metadata.namespace (resolved), and the Kubernetes placement */
    const char *nss[3] = {t->namespace, b->namespace, NULL};
    if (b->kube && b->kube->namespace.meta.set)
        nss[2] = b->kube->namespace.v;
    for (size_t i = 0; i < STK_ARRAY_SIZE(nss); i++)
        if (nss[i] && !ns_tenant_ok(ic, sc, t, nss[i], w))
            return false;
    return true;
}

static bool owner_create_ok(const struct identity *ic, const struct stk_access_scope *sc,
                            const char *on_behalf_of, struct why *w)
{
    const char *self = ic->id->name.v;
    if (!on_behalf_of || !strcmp(on_behalf_of, self))
        return true;
    /* the owner is recorded from decision.owner: it must fit whole, or two
     * long names could end up as one owner */
    if (!on_behalf_of[0] || strlen(on_behalf_of) >= OWNER_SIZE)
        return fail(w, "owner of %zu bytes: must be 1 to %zu", strlen(on_behalf_of),
                    OWNER_SIZE - 1);
    if (!sc->on_behalf_of.v)
        return fail_on(w, "owner", on_behalf_of,
                       "may not create on behalf of %s (onBehalfOf is false)", on_behalf_of);
    if (owned_default(ic, sc))
        return fail_on(w, "owner", on_behalf_of,
                       "owned: true allows creating only for itself, not for %s", on_behalf_of);
    return true;
}

static bool policy_ok(const struct stk_access_scope *sc, enum stk_policy p, struct why *w)
{
    int max = sc->max_policy.meta.set ? sc->max_policy.v : STK_POLICY_RESTRICTED;
    if ((int)p <= max)
        return true;
    return fail_on(w, "security.policy", stk_policy_names[p], "policy %s above maxPolicy %s",
                   stk_policy_names[p], stk_policy_names[max]);
}

static bool runtime_ok(const struct stk_access_scope *sc, enum stk_runtime rt, struct why *w)
{
    if (!sc->runtimes.meta.set)
        return rt == STK_RUNTIME_DEFAULT ||
               fail_on(w, "runtime", stk_runtime_names[rt],
                       "runtime %s is not in runtimes (default)", stk_runtime_names[rt]);
    for (uint32_t i = 0; i < sc->runtimes.n; i++)
        if (sc->runtimes.items[i].v == (int)rt)
            return true;
    return fail_on(w, "runtime", stk_runtime_names[rt], "runtime %s is not in runtimes",
                   stk_runtime_names[rt]);
}

/* A grant key covers itself and everything below it ("kubernetes" covers
 * "kubernetes.nodeSelector"). */
static bool key_covered(const struct stk_access_scope *sc, const char *key)
{
    for (uint32_t i = 0; i < sc->driver_config_keys.n; i++) {
        const char *k = sc->driver_config_keys.items[i].v;
        size_t n = strlen(k);
        if (!strncmp(key, k, n) && (key[n] == '\0' || key[n] == '.'))
            return true;
    }
    return false;
}

static bool driver_config_ok(const struct stk_access_scope *sc, const struct stk_boundary *b,
                             struct why *w)
{
    for (size_t i = 0; i < b->n_driver_config_keys; i++)
        if (!key_covered(sc, b->driver_config_keys[i]))
            return fail_on(w, "driverConfig", b->driver_config_keys[i],
                           "driverConfig key %s is not in driverConfigKeys",
                           b->driver_config_keys[i]);
    return true;
}

static bool service_account_ok(const struct stk_access_scope *sc, const struct stk_boundary *b,
                               struct why *w)
{
    if (!b->kube || !b->kube->service_account_name.meta.set)
        return true;
    const char *sa = b->kube->service_account_name.v;
    if (GLOB_ANY(sc->service_accounts, sa))
        return true;
    return fail_on(w, "serviceAccountName", sa,
                   "service account %s matches no serviceAccounts pattern", sa);
}

/* A credentialRefs pattern "SOURCE:GLOB" (env, file, kubernetesSecret)
 * grants refs of that source only; a bare GLOB grants a ref of any source. */
static bool credential_granted(const struct stk_access_scope *sc, const struct stk_binding *bd)
{
    const char *src = stk_cred_source_names[bd->credential.source.v];
    size_t sl = strlen(src);
    for (uint32_t i = 0; i < sc->credential_refs.n; i++) {
        const char *pat = sc->credential_refs.items[i].v;
        const char *colon = strchr(pat, ':');
        bool scoped = false;
        for (size_t k = 0; colon && k < _STK_CRED_N && !scoped; k++)
            scoped = (size_t)(colon - pat) == strlen(stk_cred_source_names[k]) &&
                     !strncmp(pat, stk_cred_source_names[k], (size_t)(colon - pat));
        if (!scoped && fnmatch(pat, bd->credential.ref.v, 0) == 0)
            return true;
        if (scoped && (size_t)(colon - pat) == sl && !strncmp(pat, src, sl) &&
            fnmatch(colon + 1, bd->credential.ref.v, 0) == 0)
            return true;
    }
    return false;
}

static bool credentials_ok(const struct stk_access_scope *sc, const struct stk_boundary *b,
                           struct why *w)
{
    for (size_t i = 0; i < b->n_bindings; i++) {
        const struct stk_binding *bd = &b->bindings[i];
        if (!credential_granted(sc, bd))
            return fail_on(w, "credential", bd->credential.ref.v,
                           "credential ref %s (binding %s, source %s) matches no credentialRefs "
                           "pattern",
                           bd->credential.ref.v, bd->name.v,
                           stk_cred_source_names[bd->credential.source.v]);
    }
    return true;
}

static bool allocation_ok(const struct stk_access_scope *sc, const struct stk_authz_target *t,
                          struct why *w)
{
    const struct stk_kube_config *k = t->b->kube;
    bool warm =
        t->warm || (k && k->allocation.mode.meta.set && k->allocation.mode.v == STK_ALLOC_WARMPOOL);
    int want = warm ? STK_ALLOCATION_WARM : STK_ALLOCATION_COLD;
    if (!sc->allocation.meta.set)
        return true;
    for (uint32_t i = 0; i < sc->allocation.n; i++)
        if (sc->allocation.items[i].v == want)
            return true;
    return fail_on(w, "allocation", stk_allocation_kind_names[want],
                   "allocation %s is not in allocation", stk_allocation_kind_names[want]);
}

/* Every condition of one grant for a create, in the order docs/gateway.md
 * lists them; the first that fails is the reason. */
static bool create_ok(const struct identity *ic, const struct grant *gr,
                      const struct stk_authz_target *t, const char *owner, struct why *w)
{
    const struct stk_access_scope *sc = &gr->g->scope;
    if (!t->b)
        return fail(w, "create without a sandbox spec");
    return tenant_ok(ic, sc, t->tenant, w) && project_ok(sc, t->project, w) &&
           create_namespaces_ok(ic, sc, t, w) && owner_create_ok(ic, sc, t->on_behalf_of, w) &&
           owner_ok(ic, sc, owner, w) && policy_ok(sc, t->b->policy, w) &&
           runtime_ok(sc, t->b->runtime, w) && driver_config_ok(sc, t->b, w) &&
           service_account_ok(sc, t->b, w) && credentials_ok(sc, t->b, w) &&
           allocation_ok(sc, t, w);
}

/* ---- decisions ------------------------------------------------------------------------- */

static void copy_str(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src ? src : "");
}

static void describe_principal(const struct stk_principal *p, char *buf, size_t n)
{
    if (!p) {
        snprintf(buf, n, "none");
        return;
    }
    switch (p->kind) {
    case STK_PRINCIPAL_TOKEN:
        snprintf(buf, n, "token %s", p->token_id);
        return;
    case STK_PRINCIPAL_JWT:
        snprintf(buf, n, "jwt %.80s subject %.60s", p->issuer, p->subject);
        return;
    case STK_PRINCIPAL_CERT:
        snprintf(buf, n, "certificate %.140s", p->cert_subject);
        return;
    case STK_PRINCIPAL_NONE:
        break;
    }
    snprintf(buf, n, "none");
}

static void decide_create(const struct identity *ic, const struct stk_authz_target *t,
                          struct stk_authz_decision *ret)
{
    const char *name = ic->id->name.v;
    static const struct stk_authz_target empty;
    if (!t)
        t = &empty;
    const char *owner = t->on_behalf_of ? t->on_behalf_of : name;
    struct why first = {0};
    const struct grant *first_gr = NULL;
    for (size_t i = 0; i < ic->n_grants; i++) {
        const struct grant *gr = ic->grants[i];
        struct why w = {0};
        if (!gr->verbs[STK_VERB_CREATE])
            continue;
        if (create_ok(ic, gr, t, owner, &w)) {
            ret->allow = true;
            copy_str(ret->owner, sizeof(ret->owner), owner);
            reason(ret, "grant %u of identity %s allows create for owner %s", gr->index, name,
                   owner);
            return;
        }
        if (!first_gr) {
            first_gr = gr;
            first = w;
        }
    }
    if (first_gr) {
        reason(ret, "grant %u of identity %s: %s", first_gr->index, name, first.text);
        copy_str(ret->refused_field, sizeof(ret->refused_field), first.field);
        copy_str(ret->refused_value, sizeof(ret->refused_value), first.value);
    } else
        reason(ret, "no grant of identity %s covers verb create", name);
}

/* Whether one of the identity's grants with verb covers the sandbox;
 * *ret_first gets the first grant with the verb that does not, and why. */
static const struct grant *covering(const struct identity *ic, enum stk_verb verb,
                                    const struct stk_authz_target *t,
                                    const struct grant **ret_first, struct why *ret_why)
{
    for (size_t i = 0; i < ic->n_grants; i++) {
        const struct grant *gr = ic->grants[i];
        struct why w = {0};
        if (!gr->verbs[verb])
            continue;
        if (is_collection(t) || sandbox_ok(ic, gr, t, &w))
            return gr;
        if (ret_first && !*ret_first) {
            *ret_first = gr;
            *ret_why = w;
        }
    }
    return NULL;
}

static void decide_object(const struct identity *ic, enum stk_verb verb,
                          const struct stk_authz_target *t, struct stk_authz_decision *ret)
{
    const char *name = ic->id->name.v, *vname = stk_verb_names[verb];
    const struct grant *first = NULL;
    struct why w = {0};
    const struct grant *gr = covering(ic, verb, t, &first, &w);
    char on[160] = "";

    if (is_collection(t) && !has_collection_form(verb)) {
        reason(ret, "verb %s names no sandbox", vname);
        return;
    }
    if (!is_collection(t))
        snprintf(on, sizeof(on), " on sandbox owned by %.100s", t->owner ? t->owner : "nobody");
    if (gr) {
        ret->allow = true;
        reason(ret, "grant %u of identity %s allows %s%s", gr->index, name, vname, on);
        return;
    }
    /* 404 unless a grant with get covers the sandbox: a caller who may
     * not see it must not learn that it exists */
    ret->hide = !is_collection(t) && !covering(ic, STK_VERB_GET, t, NULL, NULL);
    if (first)
        reason(ret, "no grant of identity %s covers verb %s%s (grant %u: %s)", name, vname, on,
               first->index, w.text);
    else
        reason(ret, "no grant of identity %s covers verb %s%s", name, vname, on);
}

bool stk_authz_lists_verb(const struct stk_authz *z, const struct stk_principal *p,
                          enum stk_verb verb, bool *ret_known)
{
    const struct identity *ic = z ? identify(z, p) : NULL;
    *ret_known = ic != NULL;
    if (!ic || (unsigned)verb >= _STK_VERB_N)
        return false;
    for (size_t i = 0; i < ic->n_grants; i++)
        if (ic->grants[i]->verbs[verb])
            return true;
    return false;
}

void stk_authz_decide(const struct stk_authz *z, const struct stk_principal *p, enum stk_verb verb,
                      const struct stk_authz_target *t, struct stk_authz_decision *ret)
{
    memset(ret, 0, sizeof(*ret));
    const struct identity *ic = z ? identify(z, p) : NULL;
    if ((unsigned)verb >= _STK_VERB_N) {
        reason(ret, "unknown verb %d", (int)verb);
        ret->hide = true;
        return;
    }
    if (!ic) {
        char who[160];
        describe_principal(p, who, sizeof(who));
        /* an unknown caller learns nothing about any sandbox */
        ret->hide = verb != STK_VERB_CREATE && !is_collection(t);
        reason(ret, "no identity matches principal %s (verb %s)", who, stk_verb_names[verb]);
        return;
    }
    copy_str(ret->identity, sizeof(ret->identity), ic->id->name.v);
    if (verb == STK_VERB_CREATE)
        decide_create(ic, t, ret);
    else
        decide_object(ic, verb, t, ret);
}
