/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the gateway's authentication parsers. The first byte
 * picks the path (modulo 4):
 *   0  the rest is a JWKS document (what stk_authn_new() reads from a file);
 *   1  the rest is an Authorization header value, taken as is;
 *   2  the rest is "HEADER\nPAYLOAD" (JSON text): the target encodes and
 *      signs it with the issuer's ES256 key, so the claim checks behind a
 *      valid signature are reached too;
 *   3  the rest is a "Bearer" token and, separately, a certificate subject.
 * Whatever the input: no crash or leak, an acceptance always names a
 * principal, a refusal always says why. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>

#include "gateway/authn.h"

#define NOW_MS 1700000000000LL

static EVP_PKEY *ec_key;
static struct stk_authn *authn;
static bool debug;

static char *b64url(const void *data, size_t len)
{
    char *out = stk_xmalloc(4 * ((len + 2) / 3) + 1);
    int n = EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    for (int i = 0; i < n; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    while (n > 0 && out[n - 1] == '=')
        n--;
    out[n] = '\0';
    return out;
}

/* A key parameter as base64url; pad: the fixed width (EC), or 0. */
static char *param(EVP_PKEY *k, const char *name, int pad)
{
    BIGNUM *bn = NULL;
    unsigned char buf[512];
    if (EVP_PKEY_get_bn_param(k, name, &bn) != 1)
        abort();
    int n = pad ? BN_bn2binpad(bn, buf, pad) : BN_bn2bin(bn, buf);
    if (n <= 0)
        abort();
    BN_free(bn);
    return b64url(buf, (size_t)n);
}

/* One issuer, "https://fz" for audience "fz", whose JWKS holds this
 * process's P-256 key ("k") and an RSA key ("r1", so RS256 tokens reach the
 * signature check); and one static token. */
static void init(void)
{
    debug = getenv("FUZZ_JWT_DEBUG") != NULL;
    ec_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    char dir[] = "/tmp/stk-fuzz-jwt-XXXXXX";
    if (!ec_key || !rsa || !mkdtemp(dir))
        abort();
    char path[64];
    snprintf(path, sizeof(path), "%s/jwks.json", dir);
    char *x = param(ec_key, OSSL_PKEY_PARAM_EC_PUB_X, 32);
    char *y = param(ec_key, OSSL_PKEY_PARAM_EC_PUB_Y, 32);
    char *n = param(rsa, OSSL_PKEY_PARAM_RSA_N, 0), *e = param(rsa, OSSL_PKEY_PARAM_RSA_E, 0);
    FILE *f = fopen(path, "we");
    if (!f)
        abort();
    fprintf(f,
            "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"k\",\"x\":\"%s\",\"y\":\"%s\"},"
            "{\"kty\":\"RSA\",\"kid\":\"r1\",\"n\":\"%s\",\"e\":\"%s\"}]}",
            x, y, n, e);
    fclose(f);
    free(x);
    free(y);
    free(n);
    free(e);
    EVP_PKEY_free(rsa);
    static const char token[] = "fuzz-static-token-0123";
    unsigned char d[32];
    unsigned dn = 0;
    char hex[65];
    if (EVP_Digest(token, strlen(token), d, &dn, EVP_sha256(), NULL) != 1)
        abort();
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
    const struct stk_authn_token tokens[] = {{"ci", hex}};
    struct stk_authn_issuer issuers[] = {
        {.issuer = "https://fz", .audience = "fz", .jwks_file = path, .skew_ms = 60000},
    };
    struct stk_authn_config c = {tokens, 1, issuers, 1};
    struct stk_error *err = NULL;
    if (stk_authn_new(&c, &authn, &err) < 0) {
        fprintf(stderr, "fuzz_jwt: %s\n", err->msg);
        abort();
    }
    unlink(path);
    rmdir(dir);
}

/* header.payload.signature, signed with the issuer's key as ES256 does. */
static char *sign_es256(const char *header, size_t hlen, const char *payload, size_t plen)
{
    char *h = b64url(header, hlen), *p = b64url(payload, plen);
    char *input = stk_xasprintf("%s.%s", h, p);
    free(h);
    free(p);
    unsigned char der[128], rs[64];
    size_t n = sizeof(der);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md || EVP_DigestSignInit_ex(md, NULL, "SHA256", NULL, NULL, ec_key, NULL) != 1 ||
        EVP_DigestSign(md, der, &n, (unsigned char *)input, strlen(input)) != 1)
        abort();
    EVP_MD_CTX_free(md);
    const unsigned char *q = der;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &q, (long)n);
    if (!es || BN_bn2binpad(ECDSA_SIG_get0_r(es), rs, 32) != 32 ||
        BN_bn2binpad(ECDSA_SIG_get0_s(es), rs + 32, 32) != 32)
        abort();
    ECDSA_SIG_free(es);
    char *s = b64url(rs, sizeof(rs));
    char *tok = stk_xasprintf("Bearer %s.%s", input, s);
    free(input);
    free(s);
    return tok;
}

static void check(const char *authorization, const char *cert)
{
    struct stk_principal p = {.kind = STK_PRINCIPAL_NONE};
    char why[STK_AUTHN_WHY_LEN];
    int r = stk_authn_check(authn, authorization, cert, NOW_MS, &p, why, sizeof(why));
    if (debug) /* FUZZ_JWT_DEBUG=1: what each input came to, to check the seeds */
        fprintf(stderr, "fuzz_jwt: %d %s\n", r, r == 0 ? "accepted" : why);
    if (r == 0) {
        if (p.kind == STK_PRINCIPAL_NONE)
            abort();
        if (p.kind == STK_PRINCIPAL_JWT && (!p.claims_json || !p.subject[0] || !p.issuer[0]))
            abort();
        stk_principal_release(&p);
        return;
    }
    if ((r != -EACCES && r != -ENOENT) || !why[0] || p.kind != STK_PRINCIPAL_NONE)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!authn)
        init();
    if (size < 1 || size > 64 * 1024)
        return 0;
    const char *rest = (const char *)data + 1;
    size_t n = size - 1;
    char *s = stk_xstrndup(rest, n); /* up to the first NUL, as a header arrives */
    switch (data[0] % 4) {
    case 0: {
        struct stk_error *err = NULL;
        size_t keys = 0;
        if (stk_authn_jwks_check("fuzz", rest, n, &keys, &err) < 0) {
            if (!err || !err->msg[0])
                abort();
            stk_error_free(err);
        } else if (keys == 0 || keys > STK_AUTHN_JWKS_KEYS_MAX) {
            abort();
        }
        break;
    }
    case 1:
        check(s, NULL);
        break;
    case 2: {
        const char *nl = memchr(rest, '\n', n);
        if (nl) {
            char *tok = sign_es256(rest, (size_t)(nl - rest), nl + 1, n - (size_t)(nl + 1 - rest));
            check(tok, NULL);
            free(tok);
        }
        break;
    }
    default: {
        char *h = stk_xasprintf("Bearer %s", s);
        check(h, NULL);
        check(NULL, s);
        free(h);
        break;
    }
    }
    free(s);
    return 0;
}
