/* SPDX-License-Identifier: Apache-2.0 */
/* An AccessPolicy file as the gateway's authentication and authorization. */
#ifndef STK_GATEWAY_POLICY_H
#define STK_GATEWAY_POLICY_H

#include "gateway/gateway.h"
#include "spec/spec.h"

struct stk_gw_policy;

/* Loads FILE (exactly one AccessPolicy document; problems in diags with
 * file:line:col), reads every JWKS file it names and compiles the grants. */
int stk_gw_policy_load(const char *file, struct stk_diags *diags, struct stk_gw_policy **ret,
                       struct stk_error **err);
/* What the HTTP layer asks; valid as long as the policy. */
const struct stk_gw_auth *stk_gw_policy_auth(const struct stk_gw_policy *p);
/* spec.authentication.clientCertificates.caFile, or NULL: the CA client
 * certificates are verified against (serve's --client-ca must agree). */
const char *stk_gw_policy_client_ca(const struct stk_gw_policy *p);
/* Re-reads the JWKS files (key rotation); keeps the old keys on error. */
int stk_gw_policy_reload_keys(struct stk_gw_policy *p, struct stk_error **err);
void stk_gw_policy_free(struct stk_gw_policy *p);

#endif
