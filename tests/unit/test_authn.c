/* SPDX-License-Identifier: Apache-2.0 */
/*
 * authn: static tokens, JWTs (RS256, ES256) against JWKS files and JWKS
 * URLs, client certificate subjects. The keys are generated here, the JWKS
 * files written from them and the tokens signed here, so every test can fail
 * for real. JWKS URLs are served by a TLS server thread on 127.0.0.1 with a
 * self-signed certificate made here: no test touches any other address.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "base/base.h"
#include "gateway/authn.h"

#define NOW_MS  1700000000000LL
#define NOW     1700000000LL
#define ISS     "https://idp.example"
#define ISS_RS  "https://rs-only.example"
#define AUD     "stockade"
#define TOKEN   "s3cret-static-token-0123456789"
#define SKEW_MS 60000

static struct {
    EVP_PKEY *rsa, *ec, *rsa_other, *ec_other;
    char dir[64];
    char jwks[128];    /* rsa "r1" + ec "e1" */
    char jwks_rs[128]; /* rsa "r1" + rsa_other "r2" */
    struct stk_authn *a;
    bool keep_der; /* sign(): leave an ECDSA signature in DER, as JWS must not */
} g;

/* ---- helpers ---------------------------------------------------------------- */

static char *b64url(const void *data, size_t len)
{
    char *out = stk_xmalloc(4 * ((len + 2) / 3) + 1);
    int n = EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    assert_true(n >= 0);
    for (int i = 0; i < n; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    while (n > 0 && out[n - 1] == '=')
        n--;
    out[n] = '\0';
    return out;
}

static char *bn_param_b64(EVP_PKEY *k, const char *name, int pad)
{
    BIGNUM *bn = NULL;
    assert_int_equal(EVP_PKEY_get_bn_param(k, name, &bn), 1);
    unsigned char buf[1024];
    int n = pad ? BN_bn2binpad(bn, buf, pad) : BN_bn2bin(bn, buf);
    assert_true(n > 0);
    BN_free(bn);
    return b64url(buf, (size_t)n);
}

static char *jwk_rsa(EVP_PKEY *k, const char *kid)
{
    _cleanup_free_ char *n = bn_param_b64(k, OSSL_PKEY_PARAM_RSA_N, 0);
    _cleanup_free_ char *e = bn_param_b64(k, OSSL_PKEY_PARAM_RSA_E, 0);
    return stk_xasprintf(
        "{\"kty\":\"RSA\",\"kid\":\"%s\",\"use\":\"sig\",\"alg\":\"RS256\",\"n\":\"%s\","
        "\"e\":\"%s\"}",
        kid, n, e);
}

static char *jwk_ec(EVP_PKEY *k, const char *kid)
{
    _cleanup_free_ char *x = bn_param_b64(k, OSSL_PKEY_PARAM_EC_PUB_X, 32);
    _cleanup_free_ char *y = bn_param_b64(k, OSSL_PKEY_PARAM_EC_PUB_Y, 32);
    return stk_xasprintf(
        "{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"%s\",\"x\":\"%s\",\"y\":\"%s\"}", kid, x, y);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "we");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static void write_jwks2(const char *path, const char *k1, const char *k2)
{
    _cleanup_free_ char *doc = stk_xasprintf("{\"keys\":[%s,%s]}", k1, k2);
    write_file(path, doc);
}

/* Signs header.payload (both JSON text) with k as alg would. */
static char *sign(EVP_PKEY *k, const char *header, const char *payload)
{
    _cleanup_free_ char *h = b64url(header, strlen(header));
    _cleanup_free_ char *p = b64url(payload, strlen(payload));
    _cleanup_free_ char *input = stk_xasprintf("%s.%s", h, p);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestSignInit_ex(md, NULL, "SHA256", NULL, NULL, k, NULL), 1);
    size_t n = 0;
    assert_int_equal(EVP_DigestSign(md, NULL, &n, (unsigned char *)input, strlen(input)), 1);
    _cleanup_free_ unsigned char *sig = stk_xmalloc(n);
    assert_int_equal(EVP_DigestSign(md, sig, &n, (unsigned char *)input, strlen(input)), 1);
    EVP_MD_CTX_free(md);
    if (EVP_PKEY_is_a(k, "EC") && !g.keep_der) {
        /* DER ECDSA-Sig-Value → JWS r || s */
        const unsigned char *q = sig;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &q, (long)n);
        assert_non_null(es);
        unsigned char rs[64];
        assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_r(es), rs, 32), 32);
        assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_s(es), rs + 32, 32), 32);
        ECDSA_SIG_free(es);
        memcpy(sig, rs, 64);
        n = 64;
    }
    _cleanup_free_ char *s = b64url(sig, n);
    return stk_xasprintf("%s.%s", input, s);
}

/* A payload with the usual claims; extra is spliced in (", ..." or ""). */
static char *claims(const char *iss, long long exp, const char *extra)
{
    return stk_xasprintf("{\"iss\":\"%s\",\"aud\":\"%s\",\"sub\":\"alice\",\"exp\":%lld%s}", iss,
                         AUD, exp, extra);
}

/* Runs a check on "Bearer tok"; returns its value, why in why. */
static int check(const char *tok, char *why, struct stk_principal *p)
{
    _cleanup_free_ char *h = stk_xasprintf("Bearer %s", tok);
    struct stk_principal local;
    return stk_authn_check(g.a, h, NULL, NOW_MS, p ? p : &local, why, STK_AUTHN_WHY_LEN);
}

static void refused(const char *tok, const char *why_part)
{
    char why[STK_AUTHN_WHY_LEN];
    struct stk_principal p = {0};
    int r = check(tok, why, &p);
    if (r != -EACCES || !strstr(why, why_part))
        fail_msg("expected -EACCES with \"%s\", got %d \"%s\"", why_part, r, why);
    assert_int_equal(p.kind, STK_PRINCIPAL_NONE); /* written only on success */
}

static void accepted(const char *tok, const char *iss)
{
    char why[STK_AUTHN_WHY_LEN];
    struct stk_principal p = {0};
    int r = check(tok, why, &p);
    if (r != 0)
        fail_msg("expected success, got %d \"%s\"", r, why);
    assert_int_equal(p.kind, STK_PRINCIPAL_JWT);
    assert_string_equal(p.issuer, iss);
    assert_string_equal(p.subject, "alice");
    assert_non_null(strstr(p.claims_json, "\"sub\":\"alice\""));
    stk_principal_release(&p);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static char *sha256_hex(const char *s)
{
    unsigned char d[32];
    unsigned n;
    assert_int_equal(EVP_Digest(s, strlen(s), d, &n, EVP_sha256(), NULL), 1);
    char *out = stk_xmalloc(65);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
    return out;
}

static int new_authn(const char *jwks, const char *jwks_rs, struct stk_authn **ret,
                     struct stk_error **err)
{
    _cleanup_free_ char *hash = sha256_hex(TOKEN);
    _cleanup_free_ char *hash2 = sha256_hex("another-static-token-abcdef");
    struct stk_authn_token tokens[] = {{"other", hash2}, {"ci", hash}};
    struct stk_authn_issuer issuers[] = {
        {.issuer = ISS, .audience = AUD, .jwks_file = jwks, .skew_ms = SKEW_MS},
        {.issuer = ISS_RS,
         .audience = AUD,
         .jwks_file = jwks_rs,
         .algorithms = STK_AUTHN_RS256,
         .skew_ms = 0},
    };
    struct stk_authn_config c = {tokens, 2, issuers, jwks_rs ? 2 : 1};
    return stk_authn_new(&c, ret, err);
}

static int srv_start(const char *jwks);
static void srv_stop(void);

static int setup(void **state)
{
    (void)state;
    g.rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    g.rsa_other = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    g.ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    g.ec_other = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (!g.rsa || !g.rsa_other || !g.ec || !g.ec_other)
        return -1;
    snprintf(g.dir, sizeof(g.dir), "/tmp/stk-authn-XXXXXX");
    if (!mkdtemp(g.dir))
        return -1;
    snprintf(g.jwks, sizeof(g.jwks), "%s/jwks.json", g.dir);
    snprintf(g.jwks_rs, sizeof(g.jwks_rs), "%s/jwks-rs.json", g.dir);
    _cleanup_free_ char *r1 = jwk_rsa(g.rsa, "r1"), *r2 = jwk_rsa(g.rsa_other, "r2");
    _cleanup_free_ char *e1 = jwk_ec(g.ec, "e1");
    write_jwks2(g.jwks, r1, e1);
    write_jwks2(g.jwks_rs, r1, r2);
    _cleanup_error_ struct stk_error *err = NULL;
    if (new_authn(g.jwks, g.jwks_rs, &g.a, &err) < 0) {
        fprintf(stderr, "setup: %s\n", err->msg);
        return -1;
    }
    _cleanup_free_ char *doc = stk_xasprintf("{\"keys\":[%s,%s]}", r1, e1);
    if (srv_start(doc) < 0) {
        fprintf(stderr, "setup: the JWKS server on 127.0.0.1: %s\n", strerror(errno));
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    srv_stop();
    stk_authn_free(g.a);
    EVP_PKEY_free(g.rsa);
    EVP_PKEY_free(g.rsa_other);
    EVP_PKEY_free(g.ec);
    EVP_PKEY_free(g.ec_other);
    nftw(g.dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    return 0;
}

#define RS_H "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"r1\"}"
#define ES_H "{\"alg\":\"ES256\",\"kid\":\"e1\"}"

/* ---- JWT ------------------------------------------------------------------- */

static void test_jwt_valid(void **state)
{
    (void)state;
    _cleanup_free_ char *c = claims(ISS, NOW + 3600, ", \"iat\": 1699999990, \"nbf\": 1699999990");
    _cleanup_free_ char *rs = sign(g.rsa, RS_H, c), *es = sign(g.ec, ES_H, c);
    accepted(rs, ISS);
    accepted(es, ISS);
    /* no kid: the only key of the type */
    _cleanup_free_ char *es2 = sign(g.ec, "{\"alg\":\"ES256\"}", c);
    accepted(es2, ISS);
    /* the RS256-only issuer with its own keys */
    _cleanup_free_ char *c2 = claims(ISS_RS, NOW + 60, "");
    _cleanup_free_ char *rs2 = sign(g.rsa_other, "{\"alg\":\"RS256\",\"kid\":\"r2\"}", c2);
    accepted(rs2, ISS_RS);
    /* ... but without a kid, two RSA keys are ambiguous */
    _cleanup_free_ char *rs3 = sign(g.rsa_other, "{\"alg\":\"RS256\"}", c2);
    refused(rs3, "no kid, and 2 RS256 keys");
    /* the scheme is case-insensitive (RFC 7235) */
    char why[STK_AUTHN_WHY_LEN];
    struct stk_principal p;
    _cleanup_free_ char *h = stk_xasprintf("bearer %s", rs);
    assert_int_equal(stk_authn_check(g.a, h, NULL, NOW_MS, &p, why, sizeof(why)), 0);
    stk_principal_release(&p);
}

static void test_jwt_signature(void **state)
{
    (void)state;
    _cleanup_free_ char *c = claims(ISS, NOW + 3600, "");
    _cleanup_free_ char *wrong_rs = sign(g.rsa_other, RS_H, c);
    _cleanup_free_ char *wrong_es = sign(g.ec_other, ES_H, c);
    refused(wrong_rs, "signature does not verify");
    refused(wrong_es, "signature does not verify");

    /* tampered payload: a valid token's signature over other claims */
    _cleanup_free_ char *good = sign(g.rsa, RS_H, c);
    _cleanup_free_ char *evil = claims(ISS, NOW + 3600, ", \"admin\": true");
    _cleanup_free_ char *evil_b64 = b64url(evil, strlen(evil));
    char *d1 = strchr(good, '.'), *d2 = strchr(d1 + 1, '.');
    *d1 = '\0';
    _cleanup_free_ char *t1 = stk_xasprintf("%s.%s%s", good, evil_b64, d2);
    *d1 = '.';
    refused(t1, "signature does not verify");

    /* tampered header: same key and kid, one more header member */
    _cleanup_free_ char *hx = stk_xasprintf("%.*s,\"x\":1}", (int)strlen(RS_H) - 1, RS_H);
    _cleanup_free_ char *hx_b64 = b64url(hx, strlen(hx));
    _cleanup_free_ char *t2 = stk_xasprintf("%s%s", hx_b64, d1);
    refused(t2, "signature does not verify");

    /* an ES256 signature in DER (not r || s) is refused */
    g.keep_der = true;
    _cleanup_free_ char *der = sign(g.ec, ES_H, c);
    g.keep_der = false;
    refused(der, "signature does not verify");
    _cleanup_free_ char *es = sign(g.ec, ES_H, c);
    char *s = strrchr(es, '.');
    *s = '\0';
    /* an empty signature */
    _cleanup_free_ char *empty = stk_xasprintf("%s.", es);
    refused(empty, "signature does not verify");
}

static void test_jwt_header(void **state)
{
    (void)state;
    _cleanup_free_ char *c = claims(ISS, NOW + 3600, "");
    static const struct {
        const char *header, *why;
    } cases[] = {
        {"{\"alg\":\"none\"}", "alg \"none\" refused"},
        {"{\"alg\":\"None\",\"kid\":\"r1\"}", "alg \"none\" refused"},
        {"{\"alg\":\"HS256\",\"kid\":\"r1\"}", "alg \"HS256\" refused (symmetric)"},
        {"{\"alg\":\"PS256\",\"kid\":\"r1\"}", "is not RS256 or ES256"},
        {"{\"typ\":\"JWT\"}", "no alg string"},
        {"{\"alg\":7}", "no alg string"},
        {"{\"alg\":\"RS256\",\"kid\":\"nope\"}", "no RS256 key with kid \"nope\""},
        {"{\"alg\":\"ES256\",\"kid\":\"r1\"}", "no ES256 key with kid \"r1\""},
        {"{\"alg\":\"RS256\",\"kid\":\"\"}", "kid is not a string"},
        {"{\"alg\":\"RS256\",\"kid\":\"r1\",\"typ\":\"JOSE+JSON\"}", "typ is not"},
        {"{\"alg\":\"RS256\",\"kid\":\"r1\",\"jku\":\"https://evil/jwks\"}", "\"jku\" refused"},
        {"{\"alg\":\"RS256\",\"kid\":\"r1\",\"x5u\":\"https://evil/c\"}", "\"x5u\" refused"},
        {"{\"alg\":\"RS256\",\"kid\":\"r1\",\"jwk\":{\"kty\":\"RSA\"}}", "\"jwk\" refused"},
        {"{\"alg\":\"RS256\",\"kid\":\"r1\",\"crit\":[\"exp\"]}", "\"crit\" refused"},
        {"{\"alg\":\"RS256\",\"alg\":\"RS256\",\"kid\":\"r1\"}", "duplicate"},
        {"[\"RS256\"]", "header is not a JSON object"},
        {"{\"alg\":\"RS256\"", "jwt: header:"},
    };
    for (size_t i = 0; i < STK_ARRAY_SIZE(cases); i++) {
        _cleanup_free_ char *t = sign(g.rsa, cases[i].header, c);
        refused(t, cases[i].why);
    }
    /* alg none with no signature at all, as attacks send it */
    _cleanup_free_ char *h = b64url("{\"alg\":\"none\"}", 14), *p = b64url(c, strlen(c));
    _cleanup_free_ char *none = stk_xasprintf("%s.%s.", h, p);
    refused(none, "alg \"none\" refused");
    /* an issuer that allows RS256 only */
    _cleanup_free_ char *c2 = claims(ISS_RS, NOW + 60, "");
    _cleanup_free_ char *es = sign(g.ec, ES_H, c2);
    refused(es, "alg ES256 is not allowed for this issuer");
}

static void test_jwt_claims(void **state)
{
    (void)state;
    static const struct {
        const char *payload, *why; /* why NULL: accepted */
    } cases[] = {
        {"{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"alice\",\"exp\":1699999000}",
         "jwt: exp 1699999000 is before now 1700000000 - skew 60s"},
        /* exp within the skew, and just beyond it */
        {"{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"alice\",\"exp\":1699999941}", NULL},
        {"{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"alice\",\"exp\":1699999940}",
         "is before now"},
        {"{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"alice\",\"exp\":1699999940.5}", NULL},
        {"{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"alice\",\"exp\":1700003600,"
         "\"nbf\":1700000120}",
         "jwt: nbf 1700000120 is after now 1700000000 + skew 60s"},
        {"{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"alice\",\"exp\":1700003600,"
         "\"nbf\":1700000060}",
         NULL},
        {"{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"alice\",\"exp\":1700003600,"
         "\"iat\":1700000600}",
         "jwt: iat 1700000600 is after now"},
        {"{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"alice\"}", "jwt: no exp"},
        {"{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"alice\",\"exp\":\"1700003600\"}",
         "exp is not a number"},
        {"{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"alice\",\"exp\":1e300}",
         "exp is out of range"},
        {"{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":1700003600}", "jwt: no sub"},
        {"{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"\",\"exp\":1700003600}", "sub is 0"},
        {"{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"a\\nb\",\"exp\":1700003600}",
         "control characters"},
        {"{\"iss\":\"https://evil.example\",\"aud\":\"" AUD
         "\",\"sub\":\"alice\",\"exp\":1700003600}",
         "iss \"https://evil.example\" is not a configured issuer"},
        {"{\"aud\":\"" AUD "\",\"sub\":\"alice\",\"exp\":1700003600}", "no iss"},
        {"{\"iss\":\"" ISS "\",\"aud\":\"other\",\"sub\":\"alice\",\"exp\":1700003600}",
         "aud does not contain \"stockade\""},
        {"{\"iss\":\"" ISS "\",\"sub\":\"alice\",\"exp\":1700003600}", "no aud"},
        {"{\"iss\":\"" ISS "\",\"aud\":[\"x\",\"" AUD "\"],\"sub\":\"alice\",\"exp\":1700003600}",
         NULL},
        {"{\"iss\":\"" ISS "\",\"aud\":[\"x\",\"y\"],\"sub\":\"alice\",\"exp\":1700003600}",
         "aud does not contain"},
        {"{\"iss\":\"" ISS "\",\"aud\":[\"" AUD "\", 3],\"sub\":\"alice\",\"exp\":1700003600}",
         "aud[1] is not a string"},
        {"{\"iss\":\"" ISS "\",\"aud\":\"" AUD
         "\",\"sub\":\"alice\",\"sub\":\"root\",\"exp\":1700003600}",
         "duplicate"},
        {"{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"alice\",\"exp\":1700003600} x",
         "jwt: payload:"},
    };
    for (size_t i = 0; i < STK_ARRAY_SIZE(cases); i++) {
        _cleanup_free_ char *t = sign(g.rsa, RS_H, cases[i].payload);
        if (cases[i].why)
            refused(t, cases[i].why);
        else
            accepted(t, ISS);
    }
    /* skew 0: an exp of exactly now is expired */
    _cleanup_free_ char *c = claims(ISS_RS, NOW, "");
    _cleanup_free_ char *t = sign(g.rsa, RS_H, c);
    refused(t, "jwt: exp 1700000000 is before now 1700000000 - skew 0s");
}

static void test_jwt_syntax(void **state)
{
    (void)state;
    _cleanup_free_ char *c = claims(ISS, NOW + 3600, "");
    _cleanup_free_ char *good = sign(g.rsa, RS_H, c);
    accepted(good, ISS);

    _cleanup_free_ char *trailing_space = stk_xasprintf("%s x", good);
    refused(trailing_space, "b64token");
    _cleanup_free_ char *four = stk_xasprintf("%s.AAAA", good);
    refused(four, "not three dot-separated parts");
    _cleanup_free_ char *more = stk_xasprintf("%sAA", good);
    refused(more, "signature does not verify");
    _cleanup_free_ char *padded = stk_xasprintf("%s==", good);
    refused(padded, "signature is not base64url");
    refused("eyJhbGciOiJSUzI1NiJ9.e30", "no configured hash matches"); /* two parts: no JWT */

    /* bad base64url in the payload: '+' is standard base64, not base64url */
    _cleanup_free_ char *plus = stk_xstrdup(good);
    char *d1 = strchr(plus, '.');
    d1[3] = '+';
    refused(plus, "payload is not base64url");
    /* a non-canonical final character (unused bits set) */
    _cleanup_free_ char *h = b64url("{\"alg\":\"RS256\"}", 15);    /* 15 bytes: 20 chars, no pad */
    _cleanup_free_ char *h16 = b64url("{\"alg\":\"RS256\"} ", 16); /* 22 chars, 4 spare bits */
    size_t n = strlen(h16);
    h16[n - 1]++; /* A, Q, g, w (low bits zero) become B, R, h, x */
    _cleanup_free_ char *nc = stk_xasprintf("%s.e30.AAAA", h16);
    refused(nc, "header is not base64url");
    _cleanup_free_ char *hc = stk_xasprintf("%s.e30.AAAA", h);
    refused(hc, "no iss string"); /* the canonical form gets further */

    /* oversized */
    _cleanup_free_ char *big_claim = stk_xmalloc(STK_AUTHN_JWT_MAX);
    memset(big_claim, 'a', STK_AUTHN_JWT_MAX - 1);
    big_claim[STK_AUTHN_JWT_MAX - 1] = '\0';
    _cleanup_free_ char *extra = stk_xasprintf(", \"pad\": \"%s\"", big_claim);
    _cleanup_free_ char *bc = claims(ISS, NOW + 3600, extra);
    _cleanup_free_ char *big = sign(g.rsa, RS_H, bc);
    refused(big, "token: more than 16384 bytes");
    _cleanup_free_ char *just = stk_xmalloc(STK_AUTHN_JWT_MAX + 1);
    memset(just, 'a', STK_AUTHN_JWT_MAX);
    just[STK_AUTHN_JWT_MAX] = '\0';
    just[10] = just[20] = '.';
    refused(just, "jwt: header is not base64url");
}

/* ---- static tokens, certificates, no credentials --------------------------------- */

static void test_static_token(void **state)
{
    (void)state;
    char why[STK_AUTHN_WHY_LEN];
    struct stk_principal p;
    assert_int_equal(stk_authn_check(g.a, "Bearer " TOKEN, NULL, NOW_MS, &p, why, sizeof(why)), 0);
    assert_int_equal(p.kind, STK_PRINCIPAL_TOKEN);
    assert_string_equal(p.token_id, "ci");
    assert_null(p.claims_json);
    refused("s3cret-static-token-0123456788", "token: no configured hash matches");
    refused("short", "token: 5 bytes, outside 16..4096");
    _cleanup_free_ char *long_tok = stk_xmalloc(5001);
    memset(long_tok, 'x', 5000);
    long_tok[5000] = '\0';
    refused(long_tok, "token: 5000 bytes, outside 16..4096");
    refused("", "token: empty");
    refused(TOKEN " ", "b64token");
    assert_int_equal(stk_authn_check(g.a, "Basic " TOKEN, NULL, NOW_MS, &p, why, sizeof(why)),
                     -EACCES);
    assert_string_equal(why, "authorization: not a Bearer credential");
    assert_int_equal(stk_authn_check(g.a, "Bearer", NULL, NOW_MS, &p, why, sizeof(why)), -EACCES);
    /* a NULL why is fine */
    assert_int_equal(stk_authn_check(g.a, "Bearer nope-nope-nope-nope", NULL, NOW_MS, &p, NULL, 0),
                     -EACCES);
}

static void test_cert_and_none(void **state)
{
    (void)state;
    char why[STK_AUTHN_WHY_LEN];
    struct stk_principal p;
    assert_int_equal(stk_authn_check(g.a, NULL, NULL, NOW_MS, &p, why, sizeof(why)), -ENOENT);
    assert_int_equal(stk_authn_check(g.a, "", NULL, NOW_MS, &p, why, sizeof(why)), -ENOENT);
    assert_int_equal(stk_authn_check(g.a, NULL, "CN=alice,O=acme", NOW_MS, &p, why, sizeof(why)),
                     0);
    assert_int_equal(p.kind, STK_PRINCIPAL_CERT);
    assert_string_equal(p.cert_subject, "CN=alice,O=acme");
    assert_int_equal(stk_authn_check(g.a, NULL, "", NOW_MS, &p, why, sizeof(why)), -EACCES);
    /* a bad header is not rescued by a certificate */
    assert_int_equal(stk_authn_check(g.a, "Bearer wrong-wrong-wrong-wrong", "CN=alice", NOW_MS, &p,
                                     why, sizeof(why)),
                     -EACCES);
    /* a good header wins over a certificate */
    assert_int_equal(
        stk_authn_check(g.a, "Bearer " TOKEN, "CN=alice", NOW_MS, &p, why, sizeof(why)), 0);
    assert_int_equal(p.kind, STK_PRINCIPAL_TOKEN);

    /* the TLS layer's helper */
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    assert_int_equal(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                                (const unsigned char *)"acme", -1, -1, 0),
                     1);
    assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                                (const unsigned char *)"alice, jr", -1, -1, 0),
                     1);
    assert_int_equal(X509_set_subject_name(x, name), 1);
    char buf[64];
    assert_int_equal(stk_authn_cert_subject(x, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "CN=alice\\, jr,O=acme");
    assert_int_equal(stk_authn_cert_subject(x, buf, 5), -ENOBUFS);
    assert_int_equal(stk_authn_cert_subject(NULL, buf, sizeof(buf)), -EINVAL);
    X509_NAME_free(name);
    X509_free(x);
}

/* ---- JWKS files and configuration ---------------------------------------------- */

static void expect_new_error(const char *jwks_text, const char *msg_part)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/bad.json", g.dir);
    if (jwks_text)
        write_file(path, jwks_text);
    else
        (void)remove(path);
    struct stk_authn *a = NULL;
    _cleanup_error_ struct stk_error *err = NULL;
    int r = new_authn(path, NULL, &a, &err);
    if (r >= 0 || !err || !strstr(err->msg, msg_part))
        fail_msg("expected an error with \"%s\", got %d \"%s\"", msg_part, r,
                 err ? err->msg : "(none)");
    assert_null(a);
}

static void test_jwks_errors(void **state)
{
    (void)state;
    _cleanup_free_ char *r1 = jwk_rsa(g.rsa, "r1"), *e1 = jwk_ec(g.ec, "e1");
    EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    _cleanup_free_ char *r1024 = jwk_rsa(small, "small");
    EVP_PKEY_free(small);
    /* an EC key with y off the curve */
    _cleanup_free_ char *bad_pt = stk_xstrdup(e1);
    char *y = strstr(bad_pt, "\"y\":\"") + 5;
    y[0] = y[0] == 'A' ? 'B' : 'A';

    _cleanup_free_ char *t = NULL;
#define CASE(doc, part)                                                                            \
    do {                                                                                           \
        free(t);                                                                                   \
        t = (doc);                                                                                 \
        expect_new_error(t, part);                                                                 \
    } while (0)
    CASE(stk_xstrdup("{\"keys\": ["), "bad.json:1:");
    CASE(stk_xstrdup("{\"keys\": {}}"), "not an object with a \"keys\" array");
    CASE(stk_xstrdup("[]"), "not an object with a \"keys\" array");
    CASE(stk_xasprintf("{\"keys\": [%s, 3]}", r1), "bad.json: key 1: not an object");
    CASE(stk_xstrdup("{\"keys\": [{\"kid\":\"a\"}]}"), "key 0 (kid \"a\"): kty: missing");
    CASE(stk_xstrdup("{\"keys\": [{\"kty\":1}]}"), "key 0: kty: not a string");
    CASE(stk_xstrdup("{\"keys\": [{\"kty\":\"RSA\",\"kid\":\"a\",\"e\":\"AQAB\"}]}"),
         "key 0 (kid \"a\"): n: missing");
    CASE(stk_xstrdup("{\"keys\": [{\"kty\":\"RSA\",\"n\":\"ab+/\",\"e\":\"AQAB\"}]}"),
         "key 0: n: not base64url");
    CASE(stk_xasprintf("{\"keys\": [%s, %s]}", e1, r1024),
         "key 1 (kid \"small\"): n: 1024-bit modulus, 2048..8192 bits required");
    CASE(stk_xstrdup("{\"keys\": [{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":5}]}"), "e: not a string");
    CASE(stk_xstrdup(
             "{\"keys\": [{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AQAB\",\"y\":\"AQAB\"}]}"),
         "key 0: x: 3 bytes, P-256 needs 32");
    /* found by fuzz_jwt: an empty member was freed twice */
    CASE(stk_xstrdup("{\"keys\": [{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"e1\",\"x\":\"\"}]}"),
         "key 0 (kid \"e1\"): x: empty");
    CASE(stk_xstrdup("{\"keys\": [{\"kty\":\"RSA\",\"n\":\"\",\"e\":\"AQAB\"}]}"),
         "key 0: n: empty");
    CASE(stk_xstrdup("{\"keys\": [{\"kty\":\"EC\",\"x\":\"AQAB\",\"y\":\"AQAB\"}]}"),
         "crv: missing");
    CASE(stk_xasprintf("{\"keys\": [%s, %s]}", r1, bad_pt),
         "key 1 (kid \"e1\"): x, y: not a point");
    CASE(stk_xstrdup("{\"keys\": [{\"kty\":\"EC\",\"crv\":\"P-256\",\"d\":\"AA\"}]}"),
         "holds private key material");
    CASE(stk_xasprintf("{\"keys\": [%s, %s]}", r1, r1), "key 1 (kid \"r1\"): kid: also the kid");
    CASE(stk_xstrdup("{\"keys\": [{\"kty\":\"RSA\",\"use\":\"enc\"}, {\"kty\":\"oct\"},"
                     "{\"kty\":\"EC\",\"crv\":\"P-384\"}]}"),
         "no signing key for RS256 or ES256");
    CASE(stk_xstrdup("{\"keys\": [], \"keys\": []}"), "duplicate");
    CASE(stk_xstrdup("{\"keys\": [{\"kty\":\"RSA\",\"kid\":\"\"}]}"), "kid: must be 1..256 bytes");
    CASE(stk_xstrdup("{\"keys\": [{\"kty\":\"RSA\",\"use\":7}]}"), "use: not a string");

    struct stk_buf many = {0};
    stk_buf_puts(&many, "{\"keys\":[");
    for (int i = 0; i < STK_AUTHN_JWKS_KEYS_MAX + 1; i++)
        stk_buf_puts(&many, i ? ",{}" : "{}");
    stk_buf_puts(&many, "]}");
    CASE(stk_buf_steal(&many), "65 keys, at most 64");

    char *huge = stk_xmalloc(STK_AUTHN_JWKS_FILE_MAX + 2);
    memset(huge, ' ', STK_AUTHN_JWKS_FILE_MAX + 1);
    huge[STK_AUTHN_JWKS_FILE_MAX + 1] = '\0';
    CASE(huge, "larger than 262144 bytes");
    _cleanup_free_ char *e3 = stk_xstrdup(r1);
    memcpy(strstr(e3, "\"e\":\"AQAB\"") + 5, "Aw\"}", 5); /* e = 3 */
    CASE(stk_xasprintf("{\"keys\": [%s]}", e3),
         "key 0 (kid \"r1\"): e: not an odd number >= 65537");
    expect_new_error(NULL, "bad.json: No such file or directory");
    char fifo[160];
    snprintf(fifo, sizeof(fifo), "%s/fifo.json", g.dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    struct stk_authn *a = NULL;
    _cleanup_error_ struct stk_error *ferr = NULL;
    assert_int_equal(new_authn(fifo, NULL, &a, &ferr), -EINVAL);
    assert_non_null(strstr(ferr->msg, "fifo.json: not a regular file"));
    expect_new_error("", "bad.json:");
#undef CASE

    /* the same checks for a document in memory (what the fuzzer drives) */
    _cleanup_error_ struct stk_error *err = NULL;
    _cleanup_free_ char *ok = stk_xasprintf("{\"keys\":[%s,%s,{\"kty\":\"oct\"}]}", r1, e1);
    size_t n = 0;
    assert_int_equal(stk_authn_jwks_check("mem", ok, strlen(ok), &n, &err), 0);
    assert_int_equal(n, 2);
}

static void test_config_errors(void **state)
{
    (void)state;
    struct stk_authn *a = NULL;
    struct stk_authn_token bad_hash[] = {{"ci", "ABCDEF"}};
    struct stk_authn_config c = {.tokens = bad_hash, .n_tokens = 1};
    _cleanup_error_ struct stk_error *e1 = NULL, *e2 = NULL, *e3 = NULL, *e4 = NULL;
    assert_int_equal(stk_authn_new(&c, &a, &e1), -EINVAL);
    assert_string_equal(e1->msg, "tokens[0] (\"ci\"): sha256 must be 64 lowercase hex digits");

    struct stk_authn_issuer skew[] = {
        {.issuer = ISS, .audience = AUD, .jwks_file = g.jwks, .skew_ms = 300001}};
    c = (struct stk_authn_config){.issuers = skew, .n_issuers = 1};
    assert_int_equal(stk_authn_new(&c, &a, &e2), -EINVAL);
    assert_non_null(strstr(e2->msg, "skew 300001ms"));

    struct stk_authn_issuer twice[] = {{.issuer = ISS, .audience = AUD, .jwks_file = g.jwks},
                                       {.issuer = ISS, .audience = AUD, .jwks_file = g.jwks}};
    c = (struct stk_authn_config){.issuers = twice, .n_issuers = 2};
    assert_int_equal(stk_authn_new(&c, &a, &e3), -EINVAL);
    assert_string_equal(e3->msg, "issuers[1]: issuer \"" ISS "\" listed twice");

    /* ES256 only, but the file holds only RSA keys */
    struct stk_authn_issuer es_only[] = {
        {.issuer = ISS, .audience = AUD, .jwks_file = g.jwks_rs, .algorithms = STK_AUTHN_ES256}};
    c = (struct stk_authn_config){.issuers = es_only, .n_issuers = 1};
    assert_int_equal(stk_authn_new(&c, &a, &e4), -EINVAL);
    assert_non_null(strstr(e4->msg, "no signing key for ES256"));
    assert_null(a);

    /* no tokens and no issuers: valid, and nothing is accepted */
    c = (struct stk_authn_config){0};
    assert_int_equal(stk_authn_new(&c, &a, NULL), 0);
    char why[STK_AUTHN_WHY_LEN];
    struct stk_principal p;
    assert_int_equal(stk_authn_check(a, "Bearer " TOKEN, NULL, NOW_MS, &p, why, sizeof(why)),
                     -EACCES);
    stk_authn_free(a);
}

static void test_reload(void **state)
{
    (void)state;
    char path[160];
    snprintf(path, sizeof(path), "%s/rotate.json", g.dir);
    _cleanup_free_ char *r1 = jwk_rsa(g.rsa, "r1"), *e1 = jwk_ec(g.ec, "e1");
    _cleanup_free_ char *r_new = jwk_rsa(g.rsa_other, "r1");
    write_jwks2(path, r1, e1);
    _cleanup_authn_ struct stk_authn *a = NULL;
    assert_int_equal(new_authn(path, NULL, &a, NULL), 0);
    _cleanup_free_ char *c = claims(ISS, NOW + 3600, "");
    _cleanup_free_ char *old_tok = sign(g.rsa, RS_H, c), *new_tok = sign(g.rsa_other, RS_H, c);
    _cleanup_free_ char *h_old = stk_xasprintf("Bearer %s", old_tok);
    _cleanup_free_ char *h_new = stk_xasprintf("Bearer %s", new_tok);
    char why[STK_AUTHN_WHY_LEN];
    struct stk_principal p;
    assert_int_equal(stk_authn_check(a, h_old, NULL, NOW_MS, &p, why, sizeof(why)), 0);
    stk_principal_release(&p);

    /* a broken file: the error is precise and the old keys stay */
    write_file(path, "{\"keys\": [{\"kty\":\"RSA\",\"kid\":\"r1\",\"n\":\"*\",\"e\":\"AQAB\"}]}");
    _cleanup_error_ struct stk_error *err = NULL;
    assert_int_equal(stk_authn_reload(a, &err), -EINVAL);
    assert_non_null(strstr(err->msg, "rotate.json: key 0 (kid \"r1\"): n: not base64url"));
    assert_int_equal(stk_authn_check(a, h_old, NULL, NOW_MS, &p, why, sizeof(why)), 0);
    stk_principal_release(&p);
    assert_int_equal(stk_authn_check(a, h_new, NULL, NOW_MS, &p, why, sizeof(why)), -EACCES);

    /* rotated: the new key verifies, the old one no longer does */
    write_jwks2(path, r_new, e1);
    assert_int_equal(stk_authn_reload(a, NULL), 0);
    assert_int_equal(stk_authn_check(a, h_new, NULL, NOW_MS, &p, why, sizeof(why)), 0);
    stk_principal_release(&p);
    assert_int_equal(stk_authn_check(a, h_old, NULL, NOW_MS, &p, why, sizeof(why)), -EACCES);
    assert_string_equal(why, "jwt: signature does not verify");
}

/* ---- JWKS by URL: an https server on 127.0.0.1 ------------------------------- */

#define BIG_LEN (STK_AUTHN_JWKS_FILE_MAX + 40 * 1024)

static struct {
    SSL_CTX *ctx;
    int fd, port;
    pthread_t thread;
    pthread_mutex_t lock;
    char ca[160];    /* the server's self-signed certificate (PEM): the CA to trust */
    char *jwks;      /* GET /jwks */
    char *rotate;    /* GET /rotate: 200 with this, 500 when NULL */
    unsigned served; /* requests answered */
} srv = {.fd = -1, .lock = PTHREAD_MUTEX_INITIALIZER};

static void add_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    assert_non_null(e);
    assert_int_equal(X509_add_ext(x, e, -1), 1);
    X509_EXTENSION_free(e);
}

/* A self-signed certificate for IP 127.0.0.1, written to srv.ca. */
static int srv_tls_setup(void)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *x = X509_new();
    if (!k || !x)
        return -1;
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, k);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"127.0.0.1", -1, -1,
                               0);
    X509_set_issuer_name(x, name);
    add_ext(x, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(x, NID_subject_key_identifier, "hash");
    add_ext(x, NID_authority_key_identifier, "keyid:always");
    add_ext(x, NID_subject_alt_name, "IP:127.0.0.1");
    if (X509_sign(x, k, EVP_sha256()) <= 0)
        return -1;
    snprintf(srv.ca, sizeof(srv.ca), "%s/jwks-ca.pem", g.dir);
    FILE *f = fopen(srv.ca, "we");
    if (!f || PEM_write_X509(f, x) != 1 || fclose(f) != 0)
        return -1;
    srv.ctx = SSL_CTX_new(TLS_server_method());
    if (!srv.ctx || SSL_CTX_use_certificate(srv.ctx, x) != 1 ||
        SSL_CTX_use_PrivateKey(srv.ctx, k) != 1)
        return -1;
    X509_free(x);
    EVP_PKEY_free(k);
    return 0;
}

static void srv_respond(SSL *ssl, int status, const char *headers, const char *body, size_t len,
                        bool length)
{
    _cleanup_free_ char *cl = length ? stk_xasprintf("Content-Length: %zu\r\n", len) : NULL;
    _cleanup_free_ char *head = stk_xasprintf(
        "HTTP/1.1 %d X\r\nConnection: close\r\nContent-Type: application/json\r\n%s%s\r\n", status,
        headers, cl ? cl : "");
    if (SSL_write(ssl, head, (int)strlen(head)) <= 0)
        return;
    for (size_t off = 0; off < len;) {
        int n = SSL_write(ssl, body + off, (int)(len - off > 16384 ? 16384 : len - off));
        if (n <= 0)
            return; /* the client gave up (a refused body): fine */
        off += (size_t)n;
    }
}

static void srv_route(SSL *ssl, const char *req)
{
    char path[64] = "";
    if (sscanf(req, "GET %63s ", path) != 1)
        return;
    pthread_mutex_lock(&srv.lock);
    srv.served++;
    _cleanup_free_ char *rotate = srv.rotate ? stk_xstrdup(srv.rotate) : NULL;
    pthread_mutex_unlock(&srv.lock);
    _cleanup_free_ char *to_jwks =
        stk_xasprintf("Location: https://127.0.0.1:%d/jwks\r\n", srv.port);
    _cleanup_free_ char *to_http =
        stk_xasprintf("Location: http://127.0.0.1:%d/jwks\r\n", srv.port);
    if (!strcmp(path, "/jwks")) {
        srv_respond(ssl, 200, "", srv.jwks, strlen(srv.jwks), true);
    } else if (!strcmp(path, "/rotate")) {
        if (rotate)
            srv_respond(ssl, 200, "", rotate, strlen(rotate), true);
        else
            srv_respond(ssl, 500, "", "boom", 4, true);
    } else if (!strcmp(path, "/500")) {
        srv_respond(ssl, 500, "", srv.jwks, strlen(srv.jwks), true); /* a body, but not 200 */
    } else if (!strcmp(path, "/big") || !strcmp(path, "/big-cl")) {
        _cleanup_free_ char *big = stk_xmalloc(BIG_LEN);
        memset(big, ' ', BIG_LEN);
        srv_respond(ssl, 200, "", big, BIG_LEN, !strcmp(path, "/big-cl"));
    } else if (!strcmp(path, "/redirect")) {
        srv_respond(ssl, 302, to_jwks, "", 0, true);
    } else if (!strcmp(path, "/to-http")) {
        srv_respond(ssl, 302, to_http, "", 0, true);
    } else if (!strcmp(path, "/loop")) {
        srv_respond(ssl, 302, "Location: /loop\r\n", "", 0, true);
    } else {
        srv_respond(ssl, 404, "", "", 0, true);
    }
}

static void srv_one(int cfd)
{
    struct timeval tv = {5, 0};
    setsockopt(cfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(cfd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    SSL *ssl = SSL_new(srv.ctx);
    char req[4096];
    size_t n = 0;
    req[0] = '\0';
    if (!ssl || SSL_set_fd(ssl, cfd) != 1 || SSL_accept(ssl) != 1)
        goto out;
    while (!strstr(req, "\r\n\r\n") && n < sizeof(req) - 1) {
        int r = SSL_read(ssl, req + n, (int)(sizeof(req) - 1 - n));
        if (r <= 0)
            goto out;
        n += (size_t)r;
        req[n] = '\0';
    }
    srv_route(ssl, req);
out:
    SSL_free(ssl);
    close(cfd);
}

static void *srv_run(void *ud)
{
    (void)ud;
    for (;;) {
        int cfd = accept4(srv.fd, NULL, NULL, SOCK_CLOEXEC);
        if (cfd < 0 && (errno == EINTR || errno == ECONNABORTED))
            continue;
        if (cfd < 0)
            return NULL; /* shutdown() by srv_stop() */
        srv_one(cfd);
    }
}

static int srv_start(const char *jwks)
{
    if (srv_tls_setup() < 0)
        return -1;
    srv.jwks = stk_xstrdup(jwks);
    srv.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    if (srv.fd < 0 || bind(srv.fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(srv.fd, 16) < 0 || getsockname(srv.fd, (struct sockaddr *)&sa, &sl) < 0)
        return -1;
    srv.port = ntohs(sa.sin_port);
    return pthread_create(&srv.thread, NULL, srv_run, NULL) == 0 ? 0 : -1;
}

static void srv_stop(void)
{
    if (srv.fd < 0)
        return;
    shutdown(srv.fd, SHUT_RDWR);
    pthread_join(srv.thread, NULL);
    close(srv.fd);
    SSL_CTX_free(srv.ctx);
    free(srv.jwks);
    free(srv.rotate);
}

static char *srv_url(const char *path)
{
    return stk_xasprintf("https://127.0.0.1:%d%s", srv.port, path);
}

static void srv_set_rotate(const char *doc)
{
    pthread_mutex_lock(&srv.lock);
    free(srv.rotate);
    srv.rotate = doc ? stk_xstrdup(doc) : NULL;
    pthread_mutex_unlock(&srv.lock);
}

static unsigned srv_served(void)
{
    pthread_mutex_lock(&srv.lock);
    unsigned n = srv.served;
    pthread_mutex_unlock(&srv.lock);
    return n;
}

static int url_authn(const char *url, const char *ca, struct stk_authn **ret,
                     struct stk_error **err)
{
    struct stk_authn_issuer is[] = {
        {.issuer = ISS, .audience = AUD, .jwks_url = url, .jwks_ca_file = ca, .skew_ms = SKEW_MS}};
    struct stk_authn_config c = {.issuers = is, .n_issuers = 1};
    return stk_authn_new(&c, ret, err);
}

static int check_with(struct stk_authn *a, const char *tok)
{
    _cleanup_free_ char *h = stk_xasprintf("Bearer %s", tok);
    char why[STK_AUTHN_WHY_LEN];
    struct stk_principal p;
    int r = stk_authn_check(a, h, NULL, NOW_MS, &p, why, sizeof(why));
    if (r == 0)
        stk_principal_release(&p);
    return r;
}

/* stk_authn_new() on path of the server fails with code and msg_part, and
 * the error names the URL. */
static void expect_url_error(const char *path, const char *ca, int code, const char *msg_part)
{
    _cleanup_free_ char *url = srv_url(path);
    struct stk_authn *a = NULL;
    _cleanup_error_ struct stk_error *err = NULL;
    int r = url_authn(url, ca, &a, &err);
    if (r != code || !err || !strstr(err->msg, msg_part) || !strstr(err->msg, url))
        fail_msg("%s: expected %d with \"%s\", got %d \"%s\"", path, code, msg_part, r,
                 err ? err->msg : "");
    assert_null(a);
}

static void test_jwks_url_valid(void **state)
{
    (void)state;
    _cleanup_free_ char *c = claims(ISS, NOW + 3600, "");
    _cleanup_free_ char *rs = sign(g.rsa, RS_H, c), *es = sign(g.ec, ES_H, c);
    _cleanup_free_ char *other = sign(g.rsa_other, RS_H, c);
    const char *paths[] = {"/jwks", "/redirect"};
    for (size_t i = 0; i < 2; i++) {
        _cleanup_free_ char *url = srv_url(paths[i]);
        _cleanup_authn_ struct stk_authn *a = NULL;
        _cleanup_error_ struct stk_error *err = NULL;
        unsigned before = srv_served();
        if (url_authn(url, srv.ca, &a, &err) < 0)
            fail_msg("%s: %s", url, err->msg);
        assert_int_equal(srv_served() - before, i + 1); /* fetched once (+ the redirect) */
        assert_int_equal(check_with(a, rs), 0);
        assert_int_equal(check_with(a, es), 0);
        assert_int_equal(check_with(a, other), -EACCES);
    }
}

static void test_jwks_url_errors(void **state)
{
    (void)state;
    /* at config time, before any connection */
    unsigned before = srv_served();
    _cleanup_free_ char *http = stk_xasprintf("http://127.0.0.1:%d/jwks", srv.port);
    struct stk_authn *a = NULL;
    _cleanup_error_ struct stk_error *e1 = NULL, *e2 = NULL, *e3 = NULL;
    assert_int_equal(url_authn(http, srv.ca, &a, &e1), -EINVAL);
    assert_non_null(strstr(e1->msg, "must be an https:// URL"));
    _cleanup_free_ char *url = srv_url("/jwks");
    struct stk_authn_issuer both[] = {
        {.issuer = ISS, .audience = AUD, .jwks_file = g.jwks, .jwks_url = url}};
    struct stk_authn_config c = {.issuers = both, .n_issuers = 1};
    assert_int_equal(stk_authn_new(&c, &a, &e2), -EINVAL);
    assert_non_null(strstr(e2->msg, "exactly one of jwks_file and jwks_url"));
    struct stk_authn_issuer ca_file[] = {
        {.issuer = ISS, .audience = AUD, .jwks_file = g.jwks, .jwks_ca_file = srv.ca}};
    c = (struct stk_authn_config){.issuers = ca_file, .n_issuers = 1};
    assert_int_equal(stk_authn_new(&c, &a, &e3), -EINVAL);
    assert_non_null(strstr(e3->msg, "jwks_ca_file needs jwks_url"));
    assert_null(a);
    assert_int_equal(srv_served(), before);

    /* the fetch */
    expect_url_error("/big", srv.ca, -EFBIG, "larger than 262144 bytes");
    expect_url_error("/big-cl", srv.ca, -EFBIG, "larger than 262144 bytes");
    expect_url_error("/500", srv.ca, -EIO, "HTTP 500");
    expect_url_error("/nothing", srv.ca, -EIO, "HTTP 404");
    expect_url_error("/loop", srv.ca, -EIO, "(3) redirects");
    before = srv_served();
    expect_url_error("/to-http", srv.ca, -EIO, ""); /* redirected to http: not followed */
    assert_int_equal(srv_served() - before, 1);
    /* TLS is verified: without our CA (the system's CAs) the server is refused */
    before = srv_served();
    expect_url_error("/jwks", NULL, -EIO, "");
    assert_int_equal(srv_served(), before);
}

static void test_jwks_url_reload(void **state)
{
    (void)state;
    _cleanup_free_ char *r1 = jwk_rsa(g.rsa, "r1"), *e1 = jwk_ec(g.ec, "e1");
    _cleanup_free_ char *r_new = jwk_rsa(g.rsa_other, "r1");
    _cleanup_free_ char *doc_old = stk_xasprintf("{\"keys\":[%s,%s]}", r1, e1);
    _cleanup_free_ char *doc_new = stk_xasprintf("{\"keys\":[%s,%s]}", r_new, e1);
    srv_set_rotate(doc_old);
    _cleanup_free_ char *url = srv_url("/rotate");
    _cleanup_authn_ struct stk_authn *a = NULL;
    assert_int_equal(url_authn(url, srv.ca, &a, NULL), 0);
    _cleanup_free_ char *c = claims(ISS, NOW + 3600, "");
    _cleanup_free_ char *old_tok = sign(g.rsa, RS_H, c), *new_tok = sign(g.rsa_other, RS_H, c);
    assert_int_equal(check_with(a, old_tok), 0);

    /* the URL fails: the error names it, the old keys stay */
    srv_set_rotate(NULL);
    _cleanup_error_ struct stk_error *err = NULL;
    assert_int_equal(stk_authn_reload(a, &err), -EIO);
    assert_non_null(strstr(err->msg, url));
    assert_non_null(strstr(err->msg, "HTTP 500"));
    assert_int_equal(check_with(a, old_tok), 0);
    assert_int_equal(check_with(a, new_tok), -EACCES);

    /* rotated */
    srv_set_rotate(doc_new);
    assert_int_equal(stk_authn_reload(a, NULL), 0);
    assert_int_equal(check_with(a, new_tok), 0);
    assert_int_equal(check_with(a, old_tok), -EACCES);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jwt_valid),       cmocka_unit_test(test_jwt_signature),
        cmocka_unit_test(test_jwt_header),      cmocka_unit_test(test_jwt_claims),
        cmocka_unit_test(test_jwt_syntax),      cmocka_unit_test(test_static_token),
        cmocka_unit_test(test_cert_and_none),   cmocka_unit_test(test_jwks_errors),
        cmocka_unit_test(test_config_errors),   cmocka_unit_test(test_reload),
        cmocka_unit_test(test_jwks_url_valid),  cmocka_unit_test(test_jwks_url_errors),
        cmocka_unit_test(test_jwks_url_reload),
    };
    /* A refused body leaves the server writing to a closed connection. */
    signal(SIGPIPE, SIG_IGN);
    /* Only 127.0.0.1 is ever contacted: no proxy from the environment. */
    const char *proxies[] = {"https_proxy", "HTTPS_PROXY", "http_proxy", "all_proxy", "ALL_PROXY"};
    for (size_t i = 0; i < sizeof(proxies) / sizeof(*proxies); i++)
        unsetenv(proxies[i]);
    setenv("no_proxy", "*", 1);
    setenv("NO_PROXY", "*", 1);
    return cmocka_run_group_tests(tests, setup, teardown);
}
