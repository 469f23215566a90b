/* SPDX-License-Identifier: Apache-2.0 */
/*
 * An AccessPolicy file loaded for `stockade serve`: its authentication
 * section becomes the authn configuration, the whole document the authz
 * engine, and the pair is the `struct stk_gw_auth` the HTTP layer asks.
 */
#include "gateway/policy.h"

#include "gateway/authn.h"
#include "gateway/authz.h"

#include <errno.h>
#include <string.h>
#include <time.h>

struct stk_gw_policy {
    struct stk_docset *ds;
    struct stk_authn *authn;
    struct stk_authz *authz;
    struct stk_gw_auth ops;
    const char *client_ca; /* clientCertificates.caFile (borrowed from ds) */
};

static int authenticate(void *ud, const char *authorization, const char *cert_subject,
                        struct stk_principal *ret)
{
    struct stk_gw_policy *p = ud;
    char why[STK_AUTHN_WHY_LEN];
    int r = stk_authn_check(p->authn, authorization, cert_subject, stk_clock_ms(CLOCK_REALTIME),
                            ret, why, sizeof(why));
    if (r == -EACCES)
        snprintf(ret->why, sizeof(ret->why), "%s", why);
    return r;
}

static void authorize(void *ud, const struct stk_principal *who, enum stk_verb verb,
                      const struct stk_authz_target *target, struct stk_authz_decision *ret)
{
    struct stk_gw_policy *p = ud;
    stk_authz_decide(p->authz, who, verb, target, ret);
}

static bool lists_verb(void *ud, const struct stk_principal *who, enum stk_verb verb,
                       bool *ret_known)
{
    struct stk_gw_policy *p = ud;
    return stk_authz_lists_verb(p->authz, who, verb, ret_known);
}

/* The spec's authentication section as authn's plain configuration. The
 * arrays live as long as the call; authn copies what it keeps. */
static int authn_build(const struct stk_access_authn *a, struct stk_authn **ret,
                       struct stk_error **err)
{
    struct stk_authn_token *tokens = stk_xcalloc(a->tokens.n + 1, sizeof(*tokens));
    struct stk_authn_issuer *issuers = stk_xcalloc(a->oidc.n + 1, sizeof(*issuers));
    for (uint32_t i = 0; i < a->tokens.n; i++)
        tokens[i] = (struct stk_authn_token){a->tokens.items[i].id.v, a->tokens.items[i].sha256.v};
    for (uint32_t i = 0; i < a->oidc.n; i++) {
        const struct stk_access_oidc *o = &a->oidc.items[i];
        unsigned algs = 0;
        for (uint32_t k = 0; k < o->algorithms.n; k++)
            algs |= o->algorithms.items[k].v == STK_JWT_ES256 ? STK_AUTHN_ES256 : STK_AUTHN_RS256;
        issuers[i] = (struct stk_authn_issuer){
            .issuer = o->issuer.v,
            .audience = o->audience.v,
            .jwks_file = o->jwks_file.meta.set ? o->jwks_file.v : NULL,
            .jwks_url = o->jwks_url.meta.set ? o->jwks_url.v : NULL,
            .algorithms = algs,
            .skew_ms = o->clock_skew.meta.set ? o->clock_skew.v : 60000,
        };
    }
    struct stk_authn_config c = {tokens, a->tokens.n, issuers, a->oidc.n};
    int r = stk_authn_new(&c, ret, err);
    free(tokens);
    free(issuers);
    return r;
}

int stk_gw_policy_load(const char *file, struct stk_diags *diags, struct stk_gw_policy **ret,
                       struct stk_error **err)
{
    struct stk_gw_policy *p = stk_xcalloc(1, sizeof(*p));
    size_t count = 0;
    int r = stk_docset_load(file, diags, &p->ds);
    const struct stk_doc *doc =
        r >= 0 ? stk_docset_find(p->ds, STK_KIND_ACCESS_POLICY, &count) : NULL;
    if (r < 0 || count != 1 || p->ds->n != 1) {
        if (r >= 0)
            stk_diags_add(diags, STK_SEV_ERROR, file, (struct stk_pos){0, 0}, "",
                          "--policy needs a file with exactly one AccessPolicy document");
        stk_gw_policy_free(p);
        return stk_error_make(err, EINVAL, "%s: not a valid AccessPolicy", file);
    }
    const struct stk_access_policy *ap = doc->access;
    if ((r = authn_build(&ap->spec.authentication, &p->authn, err)) < 0 ||
        (r = stk_authz_new(ap, &p->authz, err)) < 0) {
        stk_gw_policy_free(p);
        return r;
    }
    p->ops = (struct stk_gw_auth){
        .ud = p, .authenticate = authenticate, .authorize = authorize, .lists_verb = lists_verb};
    const struct stk_access_authn *an = &ap->spec.authentication;
    if (an->client_certificates.meta.set && an->client_certificates.ca_file.meta.set)
        p->client_ca = an->client_certificates.ca_file.v;
    *ret = p;
    return 0;
}

const struct stk_gw_auth *stk_gw_policy_auth(const struct stk_gw_policy *p)
{
    return &p->ops;
}

const char *stk_gw_policy_client_ca(const struct stk_gw_policy *p)
{
    return p->client_ca;
}

int stk_gw_policy_reload_keys(struct stk_gw_policy *p, struct stk_error **err)
{
    return stk_authn_reload(p->authn, err);
}

void stk_gw_policy_free(struct stk_gw_policy *p)
{
    if (!p)
        return;
    stk_authz_free(p->authz);
    stk_authn_free(p->authn);
    stk_docset_free(p->ds);
    free(p);
}
