/* SPDX-License-Identifier: Apache-2.0 */
/*
 * authz — the authorization engine: a compiled AccessPolicy answers "which
 * identity is this principal" and "may it do this verb to this target".
 * Pure: no I/O and no clock (a JWT's claims are parsed per decision, that
 * is all it allocates). The semantics are in docs/gateway.md
 * ("Authorization").
 */
#ifndef STK_GATEWAY_AUTHZ_H
#define STK_GATEWAY_AUTHZ_H

#include "gateway/gateway.h"
#include "spec/spec.h"

struct stk_authz;

/* Compiles ap (grants indexed per identity, verbs as bitmaps). ap is
 * borrowed: keep its docset alive while z is in use. A policy that loaded
 * through stk_docset_parse() always compiles; a hand-built one with a
 * dangling reference gets -EINVAL and a message. */
int stk_authz_new(const struct stk_access_policy *ap, struct stk_authz **ret,
                  struct stk_error **err);
void stk_authz_free(struct stk_authz *z);
static inline void stk_authz_freep(struct stk_authz **z)
{
    stk_authz_free(*z);
}
#define _cleanup_authz_ _cleanup_(stk_authz_freep)

/* The name of the identity p is (the first in document order that matches
 * it), or NULL when none does. */
const char *stk_authz_identify(const struct stk_authz *z, const struct stk_principal *p);

/* Whether a grant of p's identity lists verb (*ret_known: p is an
 * identity). No target is checked: a yes only means "read on". */
bool stk_authz_lists_verb(const struct stk_authz *z, const struct stk_principal *p,
                          enum stk_verb verb, bool *ret_known);

/* The decision for p doing verb to t (t may be NULL: a request on no
 * sandbox, such as list). Always fills *ret. */
void stk_authz_decide(const struct stk_authz *z, const struct stk_principal *p, enum stk_verb verb,
                      const struct stk_authz_target *t, struct stk_authz_decision *ret);

#endif
