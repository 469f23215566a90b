/* SPDX-License-Identifier: Apache-2.0 */
/*
 * authn — who is calling the gateway: credentials → a principal.
 *
 * Three kinds of credentials (docs/gateway.md, "Authentication"):
 *   - static bearer tokens; only their SHA-256 is configured, compared in
 *     constant time;
 *   - OIDC JWTs (compact JWS, RS256 or ES256) from configured issuers, keys
 *     from a JWKS file or an https URL per issuer (reloadable for key
 *     rotation);
 *   - the subject of a client certificate the TLS layer already verified.
 *
 * The configuration is plain structs, so this file does not depend on how
 * an AccessPolicy is decoded. Every failure's reason goes to `why` for the
 * audit log; the caller of the API only ever learns "invalid credentials".
 */
#ifndef STK_GATEWAY_AUTHN_H
#define STK_GATEWAY_AUTHN_H

#include "base/base.h"
#include "gateway/gateway.h"

#include <stddef.h>
#include <stdint.h>

/* Limits (each user-controlled quantity has one). */
#define STK_AUTHN_TOKEN_MIN     16          /* bytes of a static token */
#define STK_AUTHN_TOKEN_MAX     4096        /* bytes of a static token */
#define STK_AUTHN_JWT_MAX       (16 * 1024) /* bytes of a compact JWS */
#define STK_AUTHN_JWKS_FILE_MAX (256 * 1024)
#define STK_AUTHN_JWKS_KEYS_MAX 64     /* entries in "keys", usable or not */
#define STK_AUTHN_SKEW_MAX_MS   300000 /* 5 minutes */
#define STK_AUTHN_RSA_MIN_BITS  2048
#define STK_AUTHN_RSA_MAX_BITS  8192
#define STK_AUTHN_WHY_LEN       256 /* a comfortable size for `why` */

/* Fetching a JWKS URL. */
#define STK_AUTHN_JWKS_URL_MAX       2048 /* bytes of the URL */
#define STK_AUTHN_JWKS_CONNECT_S     5
#define STK_AUTHN_JWKS_TIMEOUT_S     10 /* the whole transfer, redirects included */
#define STK_AUTHN_JWKS_REDIRECTS_MAX 3

/* A static token: its id (the principal's token_id, < 64 bytes) and the
 * SHA-256 of the token as 64 lowercase hex digits. */
struct stk_authn_token {
    const char *id;
    const char *sha256_hex;
};

enum {
    STK_AUTHN_RS256 = 1,
    STK_AUTHN_ES256 = 2,
};

struct stk_authn_issuer {
    const char *issuer;   /* exact "iss" value, < 256 bytes */
    const char *audience; /* must appear in "aud" */
    /* Exactly one of jwks_file and jwks_url. */
    const char *jwks_file; /* a JWKS document on disk */
    const char *jwks_url;  /* an https:// URL, fetched with libcurl */
    /* The CA to verify the JWKS endpoint with (a PEM file), default: the
     * system's. Only with jwks_url. */
    const char *jwks_ca_file;
    unsigned algorithms; /* mask of STK_JWT_*; 0 = both */
    int64_t skew_ms;     /* allowed clock skew, 0..STK_AUTHN_SKEW_MAX_MS */
};

struct stk_authn_config {
    const struct stk_authn_token *tokens;
    size_t n_tokens;
    const struct stk_authn_issuer *issuers;
    size_t n_issuers;
};

struct stk_authn;

/* Copies the configuration, validates it and loads every JWKS file and
 * fetches every JWKS URL now. Errors are precise ("jwks /etc/x.json: key 2
 * (kid \"k1\"): n: not base64url", "jwks https://id.example/keys: HTTP
 * 500"). A URL is fetched over https only (redirects too, at most
 * STK_AUTHN_JWKS_REDIRECTS_MAX), the peer verified, within the timeouts
 * above, the body at most STK_AUTHN_JWKS_FILE_MAX bytes, status 200 only.
 * libcurl honours the proxy environment variables (https_proxy, no_proxy). */
int stk_authn_new(const struct stk_authn_config *c, struct stk_authn **ret, struct stk_error **err);
/* Re-reads every JWKS file and re-fetches every JWKS URL (key rotation;
 * blocks up to the fetch timeout per URL). All or nothing: on any error the
 * old keys stay in use. Not safe concurrently with stk_authn_check(); call
 * both from the same thread (the gateway's event loop). */
int stk_authn_reload(struct stk_authn *a, struct stk_error **err);
void stk_authn_free(struct stk_authn *a);
static inline void stk_authn_freep(struct stk_authn **a)
{
    stk_authn_free(*a);
}
#define _cleanup_authn_ _cleanup_(stk_authn_freep)

/*
 * authorization: the Authorization header value ("Bearer <token>", the
 * token a static one or a JWT) or NULL/"" when absent. cert_subject: the
 * subject of a client certificate the TLS layer verified, or NULL. When a
 * header is present it alone decides (a bad header is not rescued by a
 * certificate).
 *
 * Returns 0 with *ret filled (release with stk_principal_release()),
 * -ENOENT when there are no credentials, -EACCES when they are invalid. The
 * reason for a refusal is written to why (may be NULL) — for the audit log
 * and debug logging, never for the caller.
 */
int stk_authn_check(const struct stk_authn *a, const char *authorization, const char *cert_subject,
                    int64_t now_ms, struct stk_principal *ret, char *why, size_t why_len);

/* For the TLS layer: the RFC 2253 subject of a verified certificate (an
 * X509 *). 0, -EINVAL without a certificate or subject, -ENOBUFS when it
 * does not fit in n bytes. */
int stk_authn_cert_subject(void *x509, char *buf, size_t n);

/* Validates one JWKS document exactly as stk_authn_new() does with a file
 * (for tests and the fuzz target); *ret_n_keys: the usable keys. */
int stk_authn_jwks_check(const char *name, const char *data, size_t len, size_t *ret_n_keys,
                         struct stk_error **err);

#endif
