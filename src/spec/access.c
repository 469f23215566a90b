/* SPDX-License-Identifier: Apache-2.0 */
/*
 * AccessPolicy: the rules the field table cannot express (unique names,
 * references between sections, one match form per identity), and the
 * driverConfig key paths grants name. A policy that loads is one the
 * gateway can compile without surprises: an identity that matches nothing,
 * or two identities matching one principal, would silently change who may
 * do what, so both are refused here.
 */
#include "internal.h"

#include <ctype.h>

#include <string.h>

struct actx {
    const char *file;
    struct stk_diags *d;
    const struct stk_access_spec *s;
};

STK_PRINTF(4, 5)
static void aerr(struct actx *c, struct stk_pos pos, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *msg = stk_xvasprintf(fmt, ap);
    va_end(ap);
    stk_diags_add(c->d, STK_SEV_ERROR, c->file, pos, path, "%s", msg);
}

/* " did you mean \"x\"?" for the closest of n names, or "". */
static const char *suggest(const char *name, const char *const *names, size_t n, char *buf,
                           size_t bufsz)
{
    const char *best = NULL;
    unsigned best_d = 3;
    for (size_t i = 0; i < n; i++) {
        unsigned dist = stk_edit_distance(name, names[i], 2);
        if (dist < best_d) {
            best_d = dist;
            best = names[i];
        }
    }
    if (best)
        snprintf(buf, bufsz, "; did you mean \"%s\"?", best);
    else
        buf[0] = '\0';
    return buf;
}

/* ---- authentication ---------------------------------------------------------- */

static void check_tokens(struct actx *c)
{
    const struct stk_access_authn *au = &c->s->authentication;
    for (uint32_t i = 0; i < au->tokens.n; i++) {
        const struct stk_access_token *t = &au->tokens.items[i];
        for (uint32_t j = 0; j < i; j++) {
            const struct stk_access_token *o = &au->tokens.items[j];
            _cleanup_free_ char *path = NULL;
            if (!strcmp(t->id.v, o->id.v)) {
                path = stk_xasprintf("spec.authentication.tokens[%u].id", i);
                aerr(c, t->id.meta.pos, path, "duplicate token id \"%s\" (first at line %u)",
                     t->id.v, o->id.meta.pos.line);
            } else if (!strcmp(t->sha256.v, o->sha256.v)) {
                /* one secret under two ids: which identity it proves is ambiguous */
                path = stk_xasprintf("spec.authentication.tokens[%u].sha256", i);
                aerr(c, t->sha256.meta.pos, path, "the same token as \"%s\" (line %u)", o->id.v,
                     o->sha256.meta.pos.line);
            }
        }
    }
}

static void check_issuers(struct actx *c)
{
    const struct stk_access_authn *au = &c->s->authentication;
    for (uint32_t i = 0; i < au->oidc.n; i++) {
        const struct stk_access_oidc *o = &au->oidc.items[i];
        if (o->jwks_file.meta.set && o->jwks_url.meta.set) {
            _cleanup_free_ char *path = stk_xasprintf("spec.authentication.oidc[%u].jwksUrl", i);
            aerr(c, o->jwks_url.meta.pos, path,
                 "give exactly one of jwksFile and jwksUrl, not both (jwksFile at line %u)",
                 o->jwks_file.meta.pos.line);
        } else if (!o->jwks_file.meta.set && !o->jwks_url.meta.set) {
            _cleanup_free_ char *path = stk_xasprintf("spec.authentication.oidc[%u]", i);
            aerr(c, o->meta.pos, path, "needs exactly one of jwksFile and jwksUrl");
        }
    }
    for (uint32_t i = 0; i < au->oidc.n; i++)
        for (uint32_t j = 0; j < i; j++)
            if (!strcmp(au->oidc.items[i].issuer.v, au->oidc.items[j].issuer.v)) {
                _cleanup_free_ char *path = stk_xasprintf("spec.authentication.oidc[%u].issuer", i);
                aerr(c, au->oidc.items[i].issuer.meta.pos, path,
                     "duplicate issuer \"%s\" (first at line %u)", au->oidc.items[i].issuer.v,
                     au->oidc.items[j].issuer.meta.pos.line);
            }
}

/* ---- identities ------------------------------------------------------------------ */

static bool token_known(const struct stk_access_authn *au, const char *id)
{
    for (uint32_t i = 0; i < au->tokens.n; i++)
        if (!strcmp(au->tokens.items[i].id.v, id))
            return true;
    return false;
}

static bool issuer_known(const struct stk_access_authn *au, const char *iss)
{
    for (uint32_t i = 0; i < au->oidc.n; i++)
        if (!strcmp(au->oidc.items[i].issuer.v, iss))
            return true;
    return false;
}

static void unknown_token(struct actx *c, const struct stk_access_match *m, uint32_t i)
{
    const struct stk_access_authn *au = &c->s->authentication;
    _cleanup_free_ const char **ids = stk_xcalloc(au->tokens.n + 1, sizeof(*ids));
    for (uint32_t k = 0; k < au->tokens.n; k++)
        ids[k] = au->tokens.items[k].id.v;
    char hint[128];
    _cleanup_free_ char *path = stk_xasprintf("spec.identities[%u].match.token", i);
    aerr(c, m->token.meta.pos, path, "no token \"%s\" in spec.authentication.tokens%s", m->token.v,
         suggest(m->token.v, ids, au->tokens.n, hint, sizeof(hint)));
}

/* Exactly one form; a reference that resolves. */
static void check_match(struct actx *c, const struct stk_access_identity *id, uint32_t i)
{
    const struct stk_access_match *m = &id->match;
    const struct stk_access_authn *au = &c->s->authentication;
    _cleanup_free_ char *path = stk_xasprintf("spec.identities[%u].match", i);
    unsigned forms = m->token.meta.set + m->issuer.meta.set + m->certificate_subject.meta.set;

    if (forms > 1) {
        aerr(c, m->meta.pos, path,
             "gives several match forms; give exactly one of token, issuer (with subject or "
             "claims), certificateSubject");
        return;
    }
    if ((m->subject.meta.set || m->claims.meta.set) && !m->issuer.meta.set) {
        aerr(c, m->meta.pos, path, "subject and claims need issuer");
        return;
    }
    if (forms == 0) {
        aerr(c, m->meta.pos, path,
             "needs exactly one of token, issuer (with subject or claims), certificateSubject");
        return;
    }
    if (m->issuer.meta.set && m->subject.meta.set == m->claims.meta.set) {
        aerr(c, m->meta.pos, path, "issuer needs exactly one of subject or claims");
        return;
    }
    if (m->claims.meta.set && m->claims.n == 0) {
        _cleanup_free_ char *cp = stk_xasprintf("%s.claims", path);
        aerr(c, m->claims.meta.pos, cp, "must not be empty: it would match everyone");
        return;
    }
    if (m->token.meta.set && !token_known(au, m->token.v))
        unknown_token(c, m, i);
    if (m->issuer.meta.set && !issuer_known(au, m->issuer.v)) {
        _cleanup_free_ char *ip = stk_xasprintf("%s.issuer", path);
        aerr(c, m->issuer.meta.pos, ip, "no issuer \"%s\" in spec.authentication.oidc",
             m->issuer.v);
    }
    if (m->certificate_subject.meta.set && !au->client_certificates.meta.set) {
        _cleanup_free_ char *cp = stk_xasprintf("%s.certificateSubject", path);
        aerr(c, m->certificate_subject.meta.pos, cp,
             "needs spec.authentication.clientCertificates");
    }
}

/* Two identities matching the same principal would make the policy's
 * answer depend on their order: refused for the exact forms. (Claims may
 * overlap by design; the first identity wins, docs/gateway.md.) */
static bool same_principal(const struct stk_access_match *a, const struct stk_access_match *b)
{
    if (a->token.meta.set)
        return b->token.meta.set && !strcmp(a->token.v, b->token.v);
    if (a->certificate_subject.meta.set)
        return b->certificate_subject.meta.set &&
               !strcmp(a->certificate_subject.v, b->certificate_subject.v);
    return a->subject.meta.set && b->subject.meta.set && a->issuer.meta.set && b->issuer.meta.set &&
           !strcmp(a->issuer.v, b->issuer.v) && !strcmp(a->subject.v, b->subject.v);
}

static void check_identity(struct actx *c, uint32_t i)
{
    const struct stk_access_identity *id = &c->s->identities.items[i];
    for (uint32_t j = 0; j < i; j++) {
        const struct stk_access_identity *o = &c->s->identities.items[j];
        if (!strcmp(id->name.v, o->name.v)) {
            _cleanup_free_ char *path = stk_xasprintf("spec.identities[%u].name", i);
            aerr(c, id->name.meta.pos, path, "duplicate identity \"%s\" (first at line %u)",
                 id->name.v, o->name.meta.pos.line);
        } else if (same_principal(&id->match, &o->match)) {
            _cleanup_free_ char *path = stk_xasprintf("spec.identities[%u].match", i);
            aerr(c, id->match.meta.pos, path, "matches the same principal as identity \"%s\"",
                 o->name.v);
        }
    }
    check_match(c, id, i);
    if (id->kind.v == STK_IDENTITY_END_USER && !id->tenant.meta.set) {
        _cleanup_free_ char *path = stk_xasprintf("spec.identities[%u]", i);
        aerr(c, id->meta.pos, path,
             "missing required field \"tenant\" (an end-user identity belongs to a tenant)");
    }
}

/* ---- grants ------------------------------------------------------------------------ */

static void check_grant_identity(struct actx *c, uint32_t g, uint32_t k)
{
    const struct stk_str *name = &c->s->grants.items[g].identities.items[k];
    const struct stk_access_spec *s = c->s;
    for (uint32_t i = 0; i < s->identities.n; i++)
        if (!strcmp(s->identities.items[i].name.v, name->v))
            return;
    _cleanup_free_ const char **names = stk_xcalloc(s->identities.n + 1, sizeof(*names));
    for (uint32_t i = 0; i < s->identities.n; i++)
        names[i] = s->identities.items[i].name.v;
    char hint[128];
    _cleanup_free_ char *path = stk_xasprintf("spec.grants[%u].identities[%u]", g, k);
    aerr(c, name->meta.pos, path, "no identity \"%s\" in spec.identities%s", name->v,
         suggest(name->v, names, s->identities.n, hint, sizeof(hint)));
}

/* Every key driverConfigKeys accepts, sections included, for "did you
 * mean"; the table is small and fixed (at most 32 keys of 63 bytes). */
static size_t all_keys(const struct stk_field *fields, const char *prefix, char (*out)[64],
                       size_t n)
{
    for (const struct stk_field *f = fields; f->name && n < 32; f++) {
        if (f->type == STK_F_REJECT)
            continue;
        snprintf(out[n], 64, "%s%s%s", prefix, prefix[0] ? "." : "", f->name);
        n++;
        if (f->type == STK_F_OBJECT) {
            char sub[64];
            snprintf(sub, sizeof(sub), "%s", out[n - 1]);
            n = all_keys(f->fields, sub, out, n);
        }
    }
    return n;
}

/* "SOURCE:PATTERN" names a credential source; a word before the first ':'
 * that is none of them is a typo that would grant nothing (a path's
 * prefix starts with '/', and env names hold no ':'). */
static void check_credential_ref(struct actx *c, uint32_t g, uint32_t k)
{
    const struct stk_str *ref = &c->s->grants.items[g].scope.credential_refs.items[k];
    const char *colon = strchr(ref->v, ':');
    if (!colon || colon == ref->v)
        return;
    for (const char *p = ref->v; p < colon; p++)
        if (!isalpha((unsigned char)*p))
            return;
    size_t len = (size_t)(colon - ref->v);
    for (size_t i = 0; i < _STK_CRED_N; i++)
        if (strlen(stk_cred_source_names[i]) == len &&
            !strncmp(ref->v, stk_cred_source_names[i], len))
            return;
    _cleanup_free_ char *path = stk_xasprintf("spec.grants[%u].scope.credentialRefs[%u]", g, k);
    aerr(c, ref->meta.pos, path,
         "\"%.*s\" is not a credential source (env, file, kubernetesSecret): write SOURCE:PATTERN "
         "or a bare PATTERN",
         (int)len, ref->v);
}

static void check_grant(struct actx *c, uint32_t g)
{
    const struct stk_access_grant *gr = &c->s->grants.items[g];
    for (uint32_t k = 0; k < gr->identities.n; k++)
        check_grant_identity(c, g, k);
    for (uint32_t k = 0; k < gr->scope.driver_config_keys.n; k++) {
        const struct stk_str *key = &gr->scope.driver_config_keys.items[k];
        if (stk_driver_config_key_known(key->v))
            continue;
        _cleanup_free_ char *path =
            stk_xasprintf("spec.grants[%u].scope.driverConfigKeys[%u]", g, k);
        char known[32][64], hint[160];
        const char *names[32];
        size_t n = all_keys(stk_driver_config_fields, "", known, 0);
        for (size_t i = 0; i < n; i++)
            names[i] = known[i];
        if (!suggest(key->v, names, n, hint, sizeof(hint))[0])
            snprintf(hint, sizeof(hint), " (for example local.tmpSize, kubernetes.nodeSelector)");
        aerr(c, key->meta.pos, path, "\"%s\" is not a key under spec.driverConfig%s", key->v, hint);
    }
    for (uint32_t k = 0; k < gr->scope.credential_refs.n; k++)
        check_credential_ref(c, g, k);
}

void stk_access_policy_check(const struct stk_access_policy *ap, const char *file,
                             struct stk_diags *d)
{
    struct actx c = {.file = file, .d = d, .s = &ap->spec};
    check_tokens(&c);
    check_issuers(&c);
    for (uint32_t i = 0; i < ap->spec.identities.n; i++)
        check_identity(&c, i);
    for (uint32_t g = 0; g < ap->spec.grants.n; g++)
        check_grant(&c, g);
}

/* ---- driverConfig keys ------------------------------------------------------------ */

static const struct stk_field *field_named(const struct stk_field *fields, const char *name,
                                           size_t len)
{
    for (const struct stk_field *f = fields; f->name; f++)
        if (f->type != STK_F_REJECT && strlen(f->name) == len && !strncmp(f->name, name, len))
            return f;
    return NULL;
}

bool stk_driver_config_key_known(const char *key)
{
    const struct stk_field *fields = stk_driver_config_fields;
    const char *p = key;
    for (;;) {
        size_t len = strcspn(p, ".");
        const struct stk_field *f = field_named(fields, p, len);
        if (!f)
            return false;
        if (p[len] == '\0')
            return true;
        if (f->type != STK_F_OBJECT)
            return false; /* nothing below a leaf */
        fields = f->fields;
        p += len + 1;
    }
}

struct keys {
    struct stk_arena *a;
    const char **items;
    size_t n;
};

/* Every value struct starts with struct stk_meta, so "is it set" reads the
 * same for all of them. */
static void collect_keys(struct keys *k, const struct stk_field *fields, const void *obj,
                         const char *prefix)
{
    for (const struct stk_field *f = fields; f->name; f++) {
        if (f->type == STK_F_REJECT)
            continue;
        const void *v = (const char *)obj + f->offset;
        const struct stk_meta *m = v;
        if (!m->set)
            continue;
        const char *key = prefix[0] ? stk_arena_printf(k->a, "%s.%s", prefix, f->name) : f->name;
        if (f->type == STK_F_OBJECT) {
            collect_keys(k, f->fields, v, key);
            continue;
        }
        const char **grown = stk_arena_array(k->a, k->n + 1, sizeof(*grown));
        if (k->n)
            memcpy(grown, k->items, k->n * sizeof(*grown));
        grown[k->n++] = key;
        k->items = grown;
    }
}

size_t stk_driver_config_keys(const struct stk_driver_config *dc, struct stk_arena *a,
                              const char ***ret)
{
    struct keys k = {.a = a};
    collect_keys(&k, stk_driver_config_fields, dc, "");
    *ret = k.items;
    return k.n;
}
