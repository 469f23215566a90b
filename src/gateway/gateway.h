/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gateway — stockade as a service (`stockade serve`): who is calling
 * (authentication), what they may do (authorization, kind: AccessPolicy),
 * and the HTTP/JSON API over the session module.
 *
 * This header holds the types the three parts share:
 *   authn.c  credentials → a principal (static token, OIDC JWT, client cert)
 *   authz.c  principal → the policy's identity; identity × verb × target →
 *            a decision (allow, deny, or deny as "not found")
 *   http.c   the API; it asks `struct stk_gw_auth` for both answers, so it
 *            depends on neither implementation.
 */
#ifndef STK_GATEWAY_H
#define STK_GATEWAY_H

#include "base/base.h"
#include "boundary/boundary.h"

#include <stdbool.h>
#include <stddef.h>

/* ---- who is calling -------------------------------------------------------- */

enum stk_principal_kind {
    STK_PRINCIPAL_NONE,
    STK_PRINCIPAL_TOKEN,
    STK_PRINCIPAL_JWT,
    STK_PRINCIPAL_CERT
};

struct stk_principal {
    enum stk_principal_kind kind;
    char token_id[64];      /* STK_PRINCIPAL_TOKEN: the token's id in the policy */
    char issuer[256];       /* STK_PRINCIPAL_JWT */
    char subject[256];      /* STK_PRINCIPAL_JWT: sub */
    char *claims_json;      /* STK_PRINCIPAL_JWT: the verified claims, a JSON object (owned) */
    char cert_subject[512]; /* STK_PRINCIPAL_CERT: the verified client certificate's subject,
                             * RFC 2253 ("CN=alice,O=acme") */
    /* when authentication failed: why, for the audit trail only (never
     * sent to the caller) */
    char why[256];
};
void stk_principal_release(struct stk_principal *p);

/* ---- what they may do ---------------------------------------------------- */

enum stk_verb {
    STK_VERB_CREATE,
    STK_VERB_GET,
    STK_VERB_LIST,
    STK_VERB_EXEC,
    STK_VERB_LOGS,
    STK_VERB_CONNECT,
    STK_VERB_STOP,
    STK_VERB_START,
    STK_VERB_DELETE,
    STK_VERB_AUDIT,
    STK_VERB_POOL,
    STK_VERB_METRICS,
    _STK_VERB_N
};
extern const char *const stk_verb_names[_STK_VERB_N]; /* "create", "get", ... */

/* What a request acts on. For a verb on one sandbox: its record's tenant,
 * project, owner and namespace. For create: also what the new sandbox asks
 * for (its boundary) and for whom. For list: all NULL (the decision says
 * whether the caller may list at all; each row is then checked as GET). */
struct stk_authz_target {
    const char *tenant, *project, *owner, *namespace;
    const struct stk_boundary *b; /* create: the requested sandbox */
    const char *on_behalf_of;     /* create: the owner requested; NULL = the caller */
    bool warm;                    /* create: a warm-pool claim (allocation "warm") */
    /* create: the tenants the namespaces it would occupy are bound to (a
     * namespace belongs to the first tenant that used it); a namespace not
     * listed is unbound */
    const struct stk_ns_owner {
        const char *ns, *tenant;
    } * ns_owners;
    size_t n_ns_owners;
};

struct stk_authz_decision {
    bool allow;
    /* denied, and the caller may not even see the object: answer 404, not
     * 403, so its existence does not leak */
    bool hide;
    char identity[128]; /* the policy identity matched ("" when none) */
    char owner[128];    /* create, when allowed: the owner to record */
    char reason[256];   /* for the audit record; never sent to the caller */
    /* denied: the caller's own input that was refused (a create's
     * "tenant", "runtime", ...), only when naming it tells nothing about
     * other tenants; "" otherwise. Sent to the caller. */
    char refused_field[32], refused_value[128];
};

/* How the HTTP layer asks. ud is the implementation's. */
struct stk_gw_auth {
    void *ud;
    /* From the request's Authorization header (may be NULL) and the
     * verified client certificate subject (NULL without mTLS). Returns 0
     * with *ret filled, -ENOENT when there are no credentials (401), -EACCES
     * when they are invalid (401, no detail). */
    int (*authenticate)(void *ud, const char *authorization, const char *cert_subject,
                        struct stk_principal *ret);
    void (*authorize)(void *ud, const struct stk_principal *who, enum stk_verb verb,
                      const struct stk_authz_target *target, struct stk_authz_decision *ret);
    /* Whether a grant of who's identity lists verb at all (*ret_known: an
     * identity matched): the check made before a request body is read. */
    bool (*lists_verb)(void *ud, const struct stk_principal *who, enum stk_verb verb,
                       bool *ret_known);
};

#endif
