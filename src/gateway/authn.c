/* SPDX-License-Identifier: Apache-2.0 */
/*
 * authn — credentials → a principal. See authn.h and docs/gateway.md.
 *
 * All cryptography is OpenSSL 3 (EVP); all JSON is jansson with duplicate
 * keys refused. The only parsing done here by hand is base64url, strictly.
 */
#include "gateway/authn.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#define KID_MAX      256
#define AUD_MAX      64             /* entries of an "aud" array */
#define NUMERIC_MAX  253402300799LL /* 9999-12-31T23:59:59Z, in seconds */
#define SHOW_MAX     64             /* bytes of a token-supplied string shown in `why` */
#define ES256_SIGLEN 64             /* r || s, 32 bytes each (RFC 7518 §3.4) */

/* ---- state ----------------------------------------------------------------- */

struct jwk {
    char *kid;    /* NULL when the JWK has none */
    unsigned alg; /* STK_AUTHN_RS256 or STK_AUTHN_ES256 */
    EVP_PKEY *pkey;
};

struct keyset {
    struct jwk *keys;
    size_t n;
};

struct issuer {
    char *iss, *aud;
    char *jwks_file, *jwks_url, *jwks_ca; /* one of file and url; ca: NULL = the system's */
    unsigned algorithms;                  /* never 0 here: 0 in the config means both */
    int64_t skew_ms;
    struct keyset ks;
};

struct token {
    char id[sizeof(((struct stk_principal *)0)->token_id)];
    unsigned char hash[32];
};

struct stk_authn {
    struct token *tokens;
    size_t n_tokens;
    struct issuer *issuers;
    size_t n_issuers;
};

static inline void authn_json_decrefp(json_t **j)
{
    json_decref(*j);
}
#define _cleanup_json_ _cleanup_(authn_json_decrefp)

static inline void bn_freep(BIGNUM **b)
{
    BN_free(*b);
}
static inline void pkey_freep(EVP_PKEY **k)
{
    EVP_PKEY_free(*k);
}
static inline void pkey_ctx_freep(EVP_PKEY_CTX **c)
{
    EVP_PKEY_CTX_free(*c);
}

static void keyset_free(struct keyset *ks)
{
    for (size_t i = 0; i < ks->n; i++) {
        free(ks->keys[i].kid);
        EVP_PKEY_free(ks->keys[i].pkey);
    }
    free(ks->keys);
    ks->keys = NULL;
    ks->n = 0;
}

static const char *alg_name(unsigned alg)
{
    return alg == STK_AUTHN_ES256 ? "ES256" : "RS256";
}

/* `why` is best effort: the reason for the audit log, truncated if long. */
STK_PRINTF(3, 4) static int refuse(char *why, size_t why_len, const char *fmt, ...)
{
    if (why && why_len) {
        va_list ap;
        va_start(ap, fmt);
        (void)vsnprintf(why, why_len, fmt, ap);
        va_end(ap);
    }
    return -EACCES;
}

/* Strings from a token end up in the audit log: bounded, and no control
 * bytes that could forge a log line. */
static const char *shown(const char *s, char buf[SHOW_MAX + 4])
{
    size_t i = 0;
    for (; s[i] && i < SHOW_MAX; i++)
        buf[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
    if (s[i]) {
        memcpy(buf + i, "...", 3);
        i += 3;
    }
    buf[i] = '\0';
    return buf;
}

/* ---- base64url (RFC 7515 §2: no padding) ---------------------------------- */

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Strict: the alphabet only, no padding, and the unused low bits of the
 * last character zero — each value has exactly one encoding, so a signature
 * or key cannot be altered without changing bytes that are checked. The
 * result is NUL-terminated (not counted in *ret_len). */
static int b64url_decode(const char *s, size_t len, unsigned char **ret, size_t *ret_len)
{
    if (len % 4 == 1)
        return -EINVAL;
    _cleanup_free_ unsigned char *out = stk_xmalloc(len / 4 * 3 + 3);
    size_t n = 0;
    uint32_t acc = 0;
    unsigned bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_value((unsigned char)s[i]);
        if (v < 0)
            return -EINVAL;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0)
        return -EINVAL;
    out[n] = '\0';
    *ret = TAKE_PTR(out);
    *ret_len = n;
    return 0;
}

/* ---- JWKS ------------------------------------------------------------------- */

/* The context of a key's error: "jwks FILE: key 2 (kid \"k1\")". */
struct key_where {
    const char *file;
    size_t idx;
    const char *kid;
};

STK_PRINTF(3, 4)
static int key_error(struct stk_error **err, const struct key_where *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *msg = stk_xvasprintf(fmt, ap);
    va_end(ap);
    char kid[SHOW_MAX + 4];
    if (w->kid)
        return stk_error_make(err, EINVAL, "jwks %s: key %zu (kid \"%s\"): %s", w->file, w->idx,
                              shown(w->kid, kid), msg);
    return stk_error_make(err, EINVAL, "jwks %s: key %zu: %s", w->file, w->idx, msg);
}

/* An optional string member: 0 present, 1 absent, <0 not a string. */
static int member_string(json_t *o, const char *name, const char **ret)
{
    json_t *v = json_object_get(o, name);
    if (!v)
        return 1;
    if (!json_is_string(v))
        return -EINVAL;
    *ret = json_string_value(v);
    return 0;
}

/* A required base64url member holding a big-endian number or point
 * coordinate. */
static int member_b64(json_t *k, const char *name, const struct key_where *w, unsigned char **ret,
                      size_t *ret_len, struct stk_error **err)
{
    const char *s = NULL;
    int r = member_string(k, name, &s);
    if (r == 1)
        return key_error(err, w, "%s: missing", name);
    if (r < 0)
        return key_error(err, w, "%s: not a string", name);
    if (b64url_decode(s, strlen(s), ret, ret_len) < 0)
        return key_error(err, w, "%s: not base64url (RFC 7515, no padding)", name);
    if (*ret_len == 0) {
        free(*ret);
        *ret = NULL; /* the caller's cleanup frees it otherwise, a second time */
        return key_error(err, w, "%s: empty", name);
    }
    return 0;
}

static EVP_PKEY *pkey_fromdata(const char *type, OSSL_PARAM_BLD *bld)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    _cleanup_(pkey_ctx_freep) EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    EVP_PKEY *pkey = NULL;
    if (params && ctx && EVP_PKEY_fromdata_init(ctx) > 0)
        (void)EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params);
    OSSL_PARAM_free(params);
    return pkey;
}

/* OpenSSL's own check of a public key: for EC that the point is on the
 * curve and not the identity; for RSA the SP 800-56B sanity of n and e. */
static bool pkey_public_ok(EVP_PKEY *pkey)
{
    _cleanup_(pkey_ctx_freep) EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    bool ok = ctx && EVP_PKEY_public_check(ctx) == 1;
    ERR_clear_error();
    return ok;
}

static int jwk_rsa(json_t *k, const struct key_where *w, EVP_PKEY **ret, struct stk_error **err)
{
    _cleanup_free_ unsigned char *n_bin = NULL, *e_bin = NULL;
    size_t n_len, e_len;
    int r = member_b64(k, "n", w, &n_bin, &n_len, err);
    if (r < 0)
        return r;
    r = member_b64(k, "e", w, &e_bin, &e_len, err);
    if (r < 0)
        return r;
    if (n_len > STK_AUTHN_RSA_MAX_BITS / 8 + 1)
        return key_error(err, w, "n: more than %d bits", STK_AUTHN_RSA_MAX_BITS);
    if (e_len > 32)
        return key_error(err, w, "e: more than 256 bits");
    _cleanup_(bn_freep) BIGNUM *n = BN_bin2bn(n_bin, (int)n_len, NULL);
    _cleanup_(bn_freep) BIGNUM *e = BN_bin2bn(e_bin, (int)e_len, NULL);
    if (!n || !e)
        stk_oom();
    int bits = BN_num_bits(n);
    if (bits < STK_AUTHN_RSA_MIN_BITS || bits > STK_AUTHN_RSA_MAX_BITS)
        return key_error(err, w, "n: %d-bit modulus, %d..%d bits required", bits,
                         STK_AUTHN_RSA_MIN_BITS, STK_AUTHN_RSA_MAX_BITS);
    /* What OpenSSL's public key check requires too (SP 800-56B). */
    if (!BN_is_odd(e) || BN_num_bits(e) <= 16)
        return key_error(err, w, "e: not an odd number >= 65537");

    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    if (!bld || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
        stk_oom();
    _cleanup_(pkey_freep) EVP_PKEY *pkey = pkey_fromdata("RSA", bld);
    OSSL_PARAM_BLD_free(bld);
    if (!pkey || !pkey_public_ok(pkey))
        return key_error(err, w, "not a valid RSA public key (n, e)");
    *ret = TAKE_PTR(pkey);
    return 0;
}

static int jwk_ec(json_t *k, const struct key_where *w, EVP_PKEY **ret, struct stk_error **err)
{
    _cleanup_free_ unsigned char *x = NULL, *y = NULL;
    size_t x_len, y_len;
    int r = member_b64(k, "x", w, &x, &x_len, err);
    if (r < 0)
        return r;
    r = member_b64(k, "y", w, &y, &y_len, err);
    if (r < 0)
        return r;
    /* RFC 7518 §6.2.1.2: the full coordinate size, leading zeros kept. */
    if (x_len != 32)
        return key_error(err, w, "x: %zu bytes, P-256 needs 32", x_len);
    if (y_len != 32)
        return key_error(err, w, "y: %zu bytes, P-256 needs 32", y_len);
    unsigned char point[65] = {0x04}; /* uncompressed SEC 1 point */
    memcpy(point + 1, x, 32);
    memcpy(point + 33, y, 32);

    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    if (!bld || !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "P-256", 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point)))
        stk_oom();
    _cleanup_(pkey_freep) EVP_PKEY *pkey = pkey_fromdata("EC", bld);
    OSSL_PARAM_BLD_free(bld);
    ERR_clear_error();
    if (!pkey || !pkey_public_ok(pkey))
        return key_error(err, w, "x, y: not a point on P-256");
    *ret = TAKE_PTR(pkey);
    return 0;
}

/* Which algorithm a JWK is for; 0 when it is not a signing key we use
 * (another kty, curve, alg or use), which is skipped, not an error: an
 * identity provider's JWKS may well hold such keys beside ours. */
static int jwk_kind(json_t *k, const struct key_where *w, unsigned *ret, struct stk_error **err)
{
    const char *kty = NULL, *use = NULL, *alg = NULL, *crv = NULL;
    int r = member_string(k, "kty", &kty);
    if (r == 1)
        return key_error(err, w, "kty: missing");
    if (r < 0)
        return key_error(err, w, "kty: not a string");
    if (member_string(k, "use", &use) < 0)
        return key_error(err, w, "use: not a string");
    if (member_string(k, "alg", &alg) < 0)
        return key_error(err, w, "alg: not a string");
    *ret = 0;
    if (use && strcmp(use, "sig") != 0)
        return 0;
    if (strcmp(kty, "RSA") == 0) {
        if (!alg || strcmp(alg, "RS256") == 0)
            *ret = STK_AUTHN_RS256;
        return 0;
    }
    if (strcmp(kty, "EC") == 0) {
        r = member_string(k, "crv", &crv);
        if (r == 1)
            return key_error(err, w, "crv: missing");
        if (r < 0)
            return key_error(err, w, "crv: not a string");
        if (strcmp(crv, "P-256") == 0 && (!alg || strcmp(alg, "ES256") == 0))
            *ret = STK_AUTHN_ES256;
    }
    return 0;
}

static int jwk_parse(json_t *k, struct key_where *w, struct jwk *ret, struct stk_error **err)
{
    if (!json_is_object(k))
        return key_error(err, w, "not an object");
    const char *kid = NULL;
    if (member_string(k, "kid", &kid) < 0)
        return key_error(err, w, "kid: not a string");
    if (kid && (!*kid || strlen(kid) > KID_MAX))
        return key_error(err, w, "kid: must be 1..%d bytes", KID_MAX);
    w->kid = kid;
    /* A private key in a verification key set means it has leaked. */
    if (json_object_get(k, "d"))
        return key_error(err, w, "holds private key material (\"d\"); publish public keys only");
    unsigned alg = 0;
    int r = jwk_kind(k, w, &alg, err);
    if (r < 0)
        return r;
    *ret = (struct jwk){.alg = alg};
    if (!alg)
        return 0;
    r = alg == STK_AUTHN_RS256 ? jwk_rsa(k, w, &ret->pkey, err) : jwk_ec(k, w, &ret->pkey, err);
    if (r < 0)
        return r;
    ret->kid = kid ? stk_xstrdup(kid) : NULL;
    return 0;
}

/* Two usable keys under one kid would make the choice of key ambiguous. */
static int keyset_add(struct keyset *ks, struct jwk *k, const struct key_where *w,
                      struct stk_error **err)
{
    for (size_t i = 0; k->kid && i < ks->n; i++)
        if (stk_streq(ks->keys[i].kid, k->kid)) {
            free(k->kid);
            EVP_PKEY_free(k->pkey);
            return key_error(err, w, "kid: also the kid of another usable key");
        }
    ks->keys[ks->n++] = *k;
    return 0;
}

static int jwks_parse(const char *name, const char *data, size_t len, struct keyset *ret,
                      struct stk_error **err)
{
    json_error_t jerr;
    _cleanup_json_ json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return stk_error_make(err, EINVAL, "jwks %s:%d:%d: %s", name, jerr.line, jerr.column,
                              jerr.text);
    json_t *keys = json_is_object(root) ? json_object_get(root, "keys") : NULL;
    if (!json_is_array(keys))
        return stk_error_make(err, EINVAL, "jwks %s: not an object with a \"keys\" array", name);
    size_t n = json_array_size(keys);
    if (n > STK_AUTHN_JWKS_KEYS_MAX)
        return stk_error_make(err, EINVAL, "jwks %s: %zu keys, at most %d", name, n,
                              STK_AUTHN_JWKS_KEYS_MAX);

    struct keyset ks = {.keys = stk_xcalloc(n ? n : 1, sizeof(struct jwk))};
    for (size_t i = 0; i < n; i++) {
        struct key_where w = {.file = name, .idx = i};
        struct jwk k;
        int r = jwk_parse(json_array_get(keys, i), &w, &k, err);
        if (r >= 0 && k.alg)
            r = keyset_add(&ks, &k, &w, err);
        if (r < 0) {
            keyset_free(&ks);
            return r;
        }
    }
    *ret = ks;
    return 0;
}

static int jwks_read(const char *path, char **ret, size_t *ret_len, struct stk_error **err)
{
    /* O_NONBLOCK: opening a FIFO put in its place must not hang the gateway. */
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return stk_error_errno(err, errno, "jwks %s", path);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return stk_error_errno(err, errno, "jwks %s", path);
    if (!S_ISREG(st.st_mode))
        return stk_error_make(err, EINVAL, "jwks %s: not a regular file", path);
    /* Read one byte past the limit: a file growing under us is caught too. */
    _cleanup_free_ char *buf = stk_xmalloc(STK_AUTHN_JWKS_FILE_MAX + 1);
    size_t len = 0;
    for (;;) {
        ssize_t r = read(fd, buf + len, STK_AUTHN_JWKS_FILE_MAX + 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return stk_error_errno(err, errno, "jwks %s: read", path);
        if (r == 0)
            break;
        len += (size_t)r;
        if (len > STK_AUTHN_JWKS_FILE_MAX)
            return stk_error_make(err, EFBIG, "jwks %s: larger than %d bytes", path,
                                  STK_AUTHN_JWKS_FILE_MAX);
    }
    *ret = TAKE_PTR(buf);
    *ret_len = len;
    return 0;
}

/* ---- JWKS by URL ------------------------------------------------------------ */

struct fetch_buf {
    char *data;
    size_t len;
    bool too_big;
};

static size_t fetch_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct fetch_buf *b = ud;
    size_t n = size * nmemb;
    if (n > STK_AUTHN_JWKS_FILE_MAX - b->len) {
        b->too_big = true;
        return 0; /* aborts the transfer (CURLE_WRITE_ERROR) */
    }
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    return n;
}

static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static inline void curl_easy_cleanupp(CURL **c)
{
    if (*c)
        curl_easy_cleanup(*c);
}

/* GET url: https only (redirects too, at most STK_AUTHN_JWKS_REDIRECTS_MAX),
 * the peer and its name verified (against ca, or the system's CAs), bounded
 * in time and size, 200 only. Proxies: libcurl's environment variables. */
static int jwks_fetch(const char *url, const char *ca, char **ret, size_t *ret_len,
                      struct stk_error **err)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, curl_init_once);
    _cleanup_(curl_easy_cleanupp) CURL *c = curl_easy_init();
    if (!c)
        return stk_error_make(err, ENOMEM, "jwks %s: curl_easy_init failed", url);
    _cleanup_free_ char *data = stk_xmalloc(STK_AUTHN_JWKS_FILE_MAX + 1);
    struct fetch_buf b = {.data = data};
    char curl_err[CURL_ERROR_SIZE] = "";
    CURLcode cr = CURLE_OK;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (cr == CURLE_OK)                                                                        \
            cr = curl_easy_setopt(c, opt, val);                                                    \
    } while (0)
    SET(CURLOPT_URL, url);
    SET(CURLOPT_PROTOCOLS_STR, "https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "https");
    SET(CURLOPT_FOLLOWLOCATION, 1L);
    SET(CURLOPT_MAXREDIRS, (long)STK_AUTHN_JWKS_REDIRECTS_MAX);
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    if (ca)
        SET(CURLOPT_CAINFO, ca);
    SET(CURLOPT_CONNECTTIMEOUT, (long)STK_AUTHN_JWKS_CONNECT_S);
    SET(CURLOPT_TIMEOUT, (long)STK_AUTHN_JWKS_TIMEOUT_S);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)STK_AUTHN_JWKS_FILE_MAX);
    SET(CURLOPT_WRITEFUNCTION, fetch_write);
    SET(CURLOPT_WRITEDATA, &b);
    SET(CURLOPT_ERRORBUFFER, curl_err);
    SET(CURLOPT_USERAGENT, "stockade");
#undef SET
    if (cr != CURLE_OK)
        return stk_error_make(err, EINVAL, "jwks %s: %s", url, curl_easy_strerror(cr));
    cr = curl_easy_perform(c);
    if (b.too_big || cr == CURLE_FILESIZE_EXCEEDED)
        return stk_error_make(err, EFBIG, "jwks %s: larger than %d bytes", url,
                              STK_AUTHN_JWKS_FILE_MAX);
    if (cr != CURLE_OK)
        return stk_error_make(err, EIO, "jwks %s: %s", url,
                              curl_err[0] ? curl_err : curl_easy_strerror(cr));
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200)
        return stk_error_make(err, EIO, "jwks %s: HTTP %ld, 200 needed", url, status);
    *ret = TAKE_PTR(data);
    *ret_len = b.len;
    return 0;
}

/* Loads an issuer's key set; it must hold a key for an algorithm the issuer
 * allows, or no token of that issuer could ever be accepted. */
static int issuer_load(const struct issuer *is, struct keyset *ret, struct stk_error **err)
{
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    const char *name = is->jwks_url ? is->jwks_url : is->jwks_file;
    int r = is->jwks_url ? jwks_fetch(is->jwks_url, is->jwks_ca, &data, &len, err)
                         : jwks_read(is->jwks_file, &data, &len, err);
    if (r < 0)
        return r;
    struct keyset ks;
    r = jwks_parse(name, data, len, &ks, err);
    if (r < 0)
        return r;
    size_t usable = 0;
    for (size_t i = 0; i < ks.n; i++)
        usable += (ks.keys[i].alg & is->algorithms) != 0;
    if (usable == 0) {
        keyset_free(&ks);
        return stk_error_make(err, EINVAL,
                              "jwks %s: no signing key for %s (RSA \"RS256\" or EC P-256 "
                              "\"ES256\", use \"sig\")",
                              name,
                              is->algorithms == (STK_AUTHN_RS256 | STK_AUTHN_ES256)
                                  ? "RS256 or ES256"
                                  : alg_name(is->algorithms));
    }
    *ret = ks;
    return 0;
}

int stk_authn_jwks_check(const char *name, const char *data, size_t len, size_t *ret_n_keys,
                         struct stk_error **err)
{
    if (len > STK_AUTHN_JWKS_FILE_MAX)
        return stk_error_make(err, EFBIG, "jwks %s: larger than %d bytes", name,
                              STK_AUTHN_JWKS_FILE_MAX);
    struct keyset ks;
    int r = jwks_parse(name, data, len, &ks, err);
    if (r < 0)
        return r;
    size_t n = ks.n;
    keyset_free(&ks);
    if (n == 0)
        return stk_error_make(err, EINVAL, "jwks %s: no usable signing key", name);
    if (ret_n_keys)
        *ret_n_keys = n;
    return 0;
}

/* ---- configuration -------------------------------------------------------- */

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static int token_config(const struct stk_authn_token *t, size_t i, struct token *ret,
                        struct stk_error **err)
{
    if (!t->id || !*t->id || strlen(t->id) >= sizeof(ret->id))
        return stk_error_make(err, EINVAL, "tokens[%zu]: id must be 1..%zu bytes", i,
                              sizeof(ret->id) - 1);
    const char *h = t->sha256_hex;
    bool ok = h && strlen(h) == 2 * sizeof(ret->hash);
    for (size_t j = 0; ok && j < sizeof(ret->hash); j++) {
        int hi = hex_value(h[2 * j]), lo = hex_value(h[2 * j + 1]);
        ok = hi >= 0 && lo >= 0;
        if (ok)
            ret->hash[j] = (unsigned char)(hi << 4 | lo);
    }
    if (!ok)
        return stk_error_make(
            err, EINVAL, "tokens[%zu] (\"%s\"): sha256 must be 64 lowercase hex digits", i, t->id);
    snprintf(ret->id, sizeof(ret->id), "%s", t->id);
    return 0;
}

static int tokens_config(struct stk_authn *a, const struct stk_authn_config *c,
                         struct stk_error **err)
{
    a->tokens = stk_xcalloc(c->n_tokens ? c->n_tokens : 1, sizeof(struct token));
    for (size_t i = 0; i < c->n_tokens; i++) {
        struct token *t = &a->tokens[i];
        int r = token_config(&c->tokens[i], i, t, err);
        if (r < 0)
            return r;
        a->n_tokens++;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(a->tokens[j].id, t->id) == 0)
                return stk_error_make(err, EINVAL, "tokens[%zu]: id \"%s\" used twice", i, t->id);
            if (memcmp(a->tokens[j].hash, t->hash, sizeof(t->hash)) == 0)
                return stk_error_make(err, EINVAL, "tokens[%zu] (\"%s\"): same hash as \"%s\"", i,
                                      t->id, a->tokens[j].id);
        }
    }
    return 0;
}

static int issuer_config(const struct stk_authn_issuer *c, size_t i, struct issuer *ret,
                         struct stk_error **err)
{
    if (!c->issuer || !*c->issuer ||
        strlen(c->issuer) >= sizeof(((struct stk_principal *)0)->issuer))
        return stk_error_make(err, EINVAL, "issuers[%zu]: issuer must be 1..255 bytes", i);
    if (!c->audience || !*c->audience)
        return stk_error_make(err, EINVAL, "issuers[%zu] (%s): audience is required", i, c->issuer);
    bool file = c->jwks_file && *c->jwks_file, url = c->jwks_url && *c->jwks_url;
    if (file == url)
        return stk_error_make(
            err, EINVAL, "issuers[%zu] (%s): exactly one of jwks_file and jwks_url is required", i,
            c->issuer);
    /* A URL must say https itself: libcurl would guess a scheme for "host/x". */
    if (url && (strncmp(c->jwks_url, "https://", 8) != 0 || !c->jwks_url[8] ||
                strlen(c->jwks_url) > STK_AUTHN_JWKS_URL_MAX))
        return stk_error_make(
            err, EINVAL,
            "issuers[%zu] (%s): jwks_url \"%.64s\": must be an https:// URL of at "
            "most %d bytes",
            i, c->issuer, c->jwks_url, STK_AUTHN_JWKS_URL_MAX);
    if (c->jwks_ca_file && *c->jwks_ca_file && !url)
        return stk_error_make(err, EINVAL, "issuers[%zu] (%s): jwks_ca_file needs jwks_url", i,
                              c->issuer);
    if (c->algorithms & ~(unsigned)(STK_AUTHN_RS256 | STK_AUTHN_ES256))
        return stk_error_make(err, EINVAL, "issuers[%zu] (%s): unknown algorithm bits 0x%x", i,
                              c->issuer, c->algorithms);
    if (c->skew_ms < 0 || c->skew_ms > STK_AUTHN_SKEW_MAX_MS)
        return stk_error_make(err, EINVAL, "issuers[%zu] (%s): skew %" PRId64 "ms, 0..%dms", i,
                              c->issuer, c->skew_ms, STK_AUTHN_SKEW_MAX_MS);
    *ret = (struct issuer){
        .iss = stk_xstrdup(c->issuer),
        .aud = stk_xstrdup(c->audience),
        .jwks_file = file ? stk_xstrdup(c->jwks_file) : NULL,
        .jwks_url = url ? stk_xstrdup(c->jwks_url) : NULL,
        .jwks_ca = url && c->jwks_ca_file && *c->jwks_ca_file ? stk_xstrdup(c->jwks_ca_file) : NULL,
        .algorithms = c->algorithms ? c->algorithms : (STK_AUTHN_RS256 | STK_AUTHN_ES256),
        .skew_ms = c->skew_ms,
    };
    return 0;
}

static int issuers_config(struct stk_authn *a, const struct stk_authn_config *c,
                          struct stk_error **err)
{
    a->issuers = stk_xcalloc(c->n_issuers ? c->n_issuers : 1, sizeof(struct issuer));
    for (size_t i = 0; i < c->n_issuers; i++) {
        struct issuer *is = &a->issuers[i];
        int r = issuer_config(&c->issuers[i], i, is, err);
        if (r < 0)
            return r;
        a->n_issuers++;
        /* iss selects the issuer (and so the keys): it must be unique. */
        for (size_t j = 0; j < i; j++)
            if (strcmp(a->issuers[j].iss, is->iss) == 0)
                return stk_error_make(err, EINVAL, "issuers[%zu]: issuer \"%s\" listed twice", i,
                                      is->iss);
        r = issuer_load(is, &is->ks, err);
        if (r < 0)
            return r;
    }
    return 0;
}

int stk_authn_new(const struct stk_authn_config *c, struct stk_authn **ret, struct stk_error **err)
{
    if (!c || (c->n_tokens && !c->tokens) || (c->n_issuers && !c->issuers))
        return stk_error_make(err, EINVAL, "authn: no configuration");
    _cleanup_authn_ struct stk_authn *a = stk_xcalloc(1, sizeof(*a));
    int r = tokens_config(a, c, err);
    if (r < 0)
        return r;
    r = issuers_config(a, c, err);
    if (r < 0)
        return r;
    *ret = TAKE_PTR(a);
    return 0;
}

int stk_authn_reload(struct stk_authn *a, struct stk_error **err)
{
    _cleanup_free_ struct keyset *fresh = stk_xcalloc(a->n_issuers + 1, sizeof(*fresh));
    for (size_t i = 0; i < a->n_issuers; i++) {
        int r = issuer_load(&a->issuers[i], &fresh[i], err);
        if (r < 0) {
            while (i-- > 0)
                keyset_free(&fresh[i]);
            return r;
        }
    }
    for (size_t i = 0; i < a->n_issuers; i++) {
        keyset_free(&a->issuers[i].ks);
        a->issuers[i].ks = fresh[i];
    }
    return 0;
}

void stk_authn_free(struct stk_authn *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n_issuers; i++) {
        free(a->issuers[i].iss);
        free(a->issuers[i].aud);
        free(a->issuers[i].jwks_file);
        free(a->issuers[i].jwks_url);
        free(a->issuers[i].jwks_ca);
        keyset_free(&a->issuers[i].ks);
    }
    free(a->issuers);
    OPENSSL_cleanse(a->tokens, a->n_tokens * sizeof(*a->tokens));
    free(a->tokens);
    free(a);
}

/* ---- static tokens ------------------------------------------------------ */

/* Every configured hash is compared, in constant time, whatever matches:
 * neither the position of a match nor the length of a common prefix shows
 * in the time taken. Only the hash of the token is ever kept. */
static int token_check(const struct stk_authn *a, const char *tok, size_t len,
                       struct stk_principal *p, char *why, size_t why_len)
{
    if (len < STK_AUTHN_TOKEN_MIN || len > STK_AUTHN_TOKEN_MAX)
        return refuse(why, why_len, "token: %zu bytes, outside %d..%d", len, STK_AUTHN_TOKEN_MIN,
                      STK_AUTHN_TOKEN_MAX);
    unsigned char digest[32];
    unsigned int dlen = 0;
    if (EVP_Digest(tok, len, digest, &dlen, EVP_sha256(), NULL) != 1 || dlen != sizeof(digest))
        return refuse(why, why_len, "token: SHA-256 failed");
    const struct token *match = NULL;
    for (size_t i = 0; i < a->n_tokens; i++) {
        bool eq = CRYPTO_memcmp(digest, a->tokens[i].hash, sizeof(digest)) == 0;
        match = eq ? &a->tokens[i] : match;
    }
    OPENSSL_cleanse(digest, sizeof(digest));
    if (!match)
        return refuse(why, why_len, "token: no configured hash matches");
    p->kind = STK_PRINCIPAL_TOKEN;
    snprintf(p->token_id, sizeof(p->token_id), "%s", match->id);
    return 0;
}

/* ---- JWT ------------------------------------------------------------------ */

/* One compact JWS, split and decoded. */
struct jws {
    const char *signing_input; /* header.payload, as sent: what is signed */
    size_t signing_len;
    json_t *header, *payload;
    unsigned char *sig;
    size_t sig_len;
};

static void jws_done(struct jws *j)
{
    json_decref(j->header);
    json_decref(j->payload);
    free(j->sig);
}

static int jws_part_json(const char *s, size_t len, const char *what, json_t **ret, char *why,
                         size_t why_len)
{
    _cleanup_free_ unsigned char *raw = NULL;
    size_t raw_len;
    if (len == 0 || b64url_decode(s, len, &raw, &raw_len) < 0)
        return refuse(why, why_len, "jwt: %s is not base64url", what);
    json_error_t jerr;
    json_t *j = json_loadb((const char *)raw, raw_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!j)
        return refuse(why, why_len, "jwt: %s: %s", what, jerr.text);
    if (!json_is_object(j)) {
        json_decref(j);
        return refuse(why, why_len, "jwt: %s is not a JSON object", what);
    }
    *ret = j;
    return 0;
}

static int jws_split(const char *tok, size_t len, struct jws *ret, char *why, size_t why_len)
{
    const char *d1 = memchr(tok, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - tok)) : NULL;
    if (!d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - tok)))
        return refuse(why, why_len, "jwt: not three dot-separated parts");
    const char *sig = d2 + 1;
    size_t sig_len = len - (size_t)(sig - tok);
    *ret = (struct jws){.signing_input = tok, .signing_len = (size_t)(d2 - tok)};
    int r = jws_part_json(tok, (size_t)(d1 - tok), "header", &ret->header, why, why_len);
    if (r < 0)
        return r;
    r = jws_part_json(d1 + 1, (size_t)(d2 - d1 - 1), "payload", &ret->payload, why, why_len);
    if (r < 0)
        return r;
    /* An empty signature decodes (to nothing) so that "alg": "none" is
     * refused by name below; no key accepts it. */
    if (b64url_decode(sig, sig_len, &ret->sig, &ret->sig_len) < 0)
        return refuse(why, why_len, "jwt: signature is not base64url");
    return 0;
}

/* The protected header. Keys are only ever the configured ones: headers
 * that name or carry a key (jku, x5u, jwk, x5c) are refused outright, as
 * is crit (no extension is understood, RFC 7515 §4.1.11). */
static int jws_header(json_t *h, unsigned *ret_alg, const char **ret_kid, char *why, size_t why_len)
{
    static const char *const refused[] = {"crit", "jku", "x5u", "jwk", "x5c"};
    char buf[SHOW_MAX + 4];
    for (size_t i = 0; i < STK_ARRAY_SIZE(refused); i++)
        if (json_object_get(h, refused[i]))
            return refuse(why, why_len, "jwt: header \"%s\" refused", refused[i]);
    const char *alg = NULL, *typ = NULL, *kid = NULL;
    int r = member_string(h, "alg", &alg);
    if (r != 0)
        return refuse(why, why_len, "jwt: header has no alg string");
    if (strcasecmp(alg, "none") == 0)
        return refuse(why, why_len, "jwt: alg \"none\" refused");
    if (strncmp(alg, "HS", 2) == 0)
        return refuse(why, why_len, "jwt: alg \"%s\" refused (symmetric)", shown(alg, buf));
    if (strcmp(alg, "RS256") == 0)
        *ret_alg = STK_AUTHN_RS256;
    else if (strcmp(alg, "ES256") == 0)
        *ret_alg = STK_AUTHN_ES256;
    else
        return refuse(why, why_len, "jwt: alg \"%s\" is not RS256 or ES256", shown(alg, buf));
    r = member_string(h, "typ", &typ);
    if (r < 0 || (r == 0 && strcasecmp(typ, "JWT") != 0))
        return refuse(why, why_len, "jwt: typ is not \"JWT\"");
    r = member_string(h, "kid", &kid);
    if (r < 0 || (r == 0 && (!*kid || strlen(kid) > KID_MAX)))
        return refuse(why, why_len, "jwt: kid is not a string of 1..%d bytes", KID_MAX);
    *ret_kid = kid;
    return 0;
}

/* The issuer is chosen by the (still unverified) iss, and then only its
 * keys can verify: one issuer's key never vouches for another's tokens. */
static const struct issuer *issuer_find(const struct stk_authn *a, json_t *payload, char *why,
                                        size_t why_len)
{
    const char *iss = NULL;
    if (member_string(payload, "iss", &iss) != 0) {
        refuse(why, why_len, "jwt: no iss string");
        return NULL;
    }
    for (size_t i = 0; i < a->n_issuers; i++)
        if (strcmp(a->issuers[i].iss, iss) == 0)
            return &a->issuers[i];
    char buf[SHOW_MAX + 4];
    refuse(why, why_len, "jwt: iss \"%s\" is not a configured issuer", shown(iss, buf));
    return NULL;
}

/* kid picks the key; without one, the only key of the algorithm's type. */
static const struct jwk *key_find(const struct issuer *is, unsigned alg, const char *kid, char *why,
                                  size_t why_len)
{
    const struct jwk *found = NULL;
    size_t n = 0;
    for (size_t i = 0; i < is->ks.n; i++) {
        const struct jwk *k = &is->ks.keys[i];
        if (k->alg != alg || (kid && !stk_streq(k->kid, kid)))
            continue;
        found = k;
        n++;
    }
    char buf[SHOW_MAX + 4];
    if (n == 0 && kid)
        refuse(why, why_len, "jwt: no %s key with kid \"%s\"", alg_name(alg), shown(kid, buf));
    else if (n == 0)
        refuse(why, why_len, "jwt: no %s key", alg_name(alg));
    else if (n > 1)
        refuse(why, why_len, "jwt: no kid, and %zu %s keys to choose from", n, alg_name(alg));
    return n == 1 ? found : NULL;
}

/* JWS carries an ECDSA signature as r || s (RFC 7518 §3.4); EVP wants the
 * DER ECDSA-Sig-Value. */
static int es256_der(const unsigned char *sig, unsigned char **ret, size_t *ret_len)
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
    if (!es || !r || !s || !ECDSA_SIG_set0(es, r, s))
        stk_oom();
    unsigned char *der = NULL;
    int n = i2d_ECDSA_SIG(es, &der);
    ECDSA_SIG_free(es);
    if (n <= 0)
        return -EINVAL;
    *ret = der;
    *ret_len = (size_t)n;
    return 0;
}

static bool jws_signature_ok(const struct jws *j, const struct jwk *k)
{
    unsigned char *der = NULL;
    const unsigned char *sig = j->sig;
    size_t sig_len = j->sig_len;
    if (k->alg == STK_AUTHN_ES256) {
        if (sig_len != ES256_SIGLEN || es256_der(j->sig, &der, &sig_len) < 0)
            return false;
        sig = der;
    } else if (sig_len != (size_t)EVP_PKEY_get_size(k->pkey)) {
        return false;
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL; /* owned by md */
    bool ok = md && EVP_DigestVerifyInit_ex(md, &pctx, "SHA256", NULL, NULL, k->pkey, NULL) == 1;
    if (ok && k->alg == STK_AUTHN_RS256)
        ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) == 1;
    ok = ok && EVP_DigestVerify(md, sig, sig_len, (const unsigned char *)j->signing_input,
                                j->signing_len) == 1;
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    ERR_clear_error();
    return ok;
}

/* A NumericDate (RFC 7519 §2) in ms: 0 present, 1 absent, -EACCES bad. */
static int claim_time(json_t *payload, const char *name, int64_t *ret_ms, char *why, size_t why_len)
{
    json_t *v = json_object_get(payload, name);
    if (!v)
        return 1;
    double d;
    if (json_is_integer(v))
        d = (double)json_integer_value(v);
    else if (json_is_real(v))
        d = json_real_value(v);
    else
        return refuse(why, why_len, "jwt: %s is not a number", name);
    if (!(d >= 0 && d <= (double)NUMERIC_MAX))
        return refuse(why, why_len, "jwt: %s is out of range", name);
    *ret_ms = (int64_t)(d * 1000.0); /* d >= 0: truncation is floor */
    return 0;
}

/* "60s" or "1500ms". */
static const char *skew_str(int64_t ms, char buf[32])
{
    if (ms % 1000 == 0)
        snprintf(buf, 32, "%" PRId64 "s", ms / 1000);
    else
        snprintf(buf, 32, "%" PRId64 "ms", ms);
    return buf;
}

static int claims_times(json_t *payload, const struct issuer *is, int64_t now_ms, char *why,
                        size_t why_len)
{
    int64_t exp, nbf, iat, skew = is->skew_ms;
    char sk[32];
    int r = claim_time(payload, "exp", &exp, why, why_len);
    if (r < 0)
        return r;
    if (r == 1)
        return refuse(why, why_len, "jwt: no exp");
    if (exp <= now_ms - skew)
        return refuse(why, why_len, "jwt: exp %" PRId64 " is before now %" PRId64 " - skew %s",
                      exp / 1000, now_ms / 1000, skew_str(skew, sk));
    r = claim_time(payload, "nbf", &nbf, why, why_len);
    if (r < 0)
        return r;
    if (r == 0 && nbf > now_ms + skew)
        return refuse(why, why_len, "jwt: nbf %" PRId64 " is after now %" PRId64 " + skew %s",
                      nbf / 1000, now_ms / 1000, skew_str(skew, sk));
    r = claim_time(payload, "iat", &iat, why, why_len);
    if (r < 0)
        return r;
    if (r == 0 && iat > now_ms + skew)
        return refuse(why, why_len, "jwt: iat %" PRId64 " is after now %" PRId64 " + skew %s",
                      iat / 1000, now_ms / 1000, skew_str(skew, sk));
    return 0;
}

static int claims_aud(json_t *payload, const struct issuer *is, char *why, size_t why_len)
{
    json_t *aud = json_object_get(payload, "aud");
    if (json_is_string(aud)) {
        if (strcmp(json_string_value(aud), is->aud) == 0)
            return 0;
    } else if (json_is_array(aud)) {
        if (json_array_size(aud) > AUD_MAX)
            return refuse(why, why_len, "jwt: aud has more than %d entries", AUD_MAX);
        size_t i;
        json_t *v;
        bool found = false;
        json_array_foreach(aud, i, v)
        {
            if (!json_is_string(v))
                return refuse(why, why_len, "jwt: aud[%zu] is not a string", i);
            found = found || strcmp(json_string_value(v), is->aud) == 0;
        }
        if (found)
            return 0;
    } else {
        return refuse(why, why_len, "jwt: no aud string or array");
    }
    char buf[SHOW_MAX + 4];
    return refuse(why, why_len, "jwt: aud does not contain \"%s\"", shown(is->aud, buf));
}

static int claims_sub(json_t *payload, const char **ret, char *why, size_t why_len)
{
    const char *sub = NULL;
    if (member_string(payload, "sub", &sub) != 0)
        return refuse(why, why_len, "jwt: no sub string");
    size_t n = strlen(sub);
    if (n == 0 || n >= sizeof(((struct stk_principal *)0)->subject))
        return refuse(why, why_len, "jwt: sub is %zu bytes, 1..255 allowed", n);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)sub[i] < 0x20 || sub[i] == 0x7f)
            return refuse(why, why_len, "jwt: sub holds control characters");
    *ret = sub;
    return 0;
}

static int jwt_verified(const struct jws *j, const struct issuer *is, int64_t now_ms,
                        struct stk_principal *p, char *why, size_t why_len)
{
    int r = claims_times(j->payload, is, now_ms, why, why_len);
    if (r < 0)
        return r;
    r = claims_aud(j->payload, is, why, why_len);
    if (r < 0)
        return r;
    const char *sub = NULL;
    r = claims_sub(j->payload, &sub, why, why_len);
    if (r < 0)
        return r;
    char *claims = json_dumps(j->payload, JSON_COMPACT);
    if (!claims)
        stk_oom();
    p->kind = STK_PRINCIPAL_JWT;
    snprintf(p->issuer, sizeof(p->issuer), "%s", is->iss);
    snprintf(p->subject, sizeof(p->subject), "%s", sub);
    p->claims_json = claims;
    return 0;
}

static int jwt_check(const struct stk_authn *a, const char *tok, size_t len, int64_t now_ms,
                     struct stk_principal *p, char *why, size_t why_len)
{
    if (len > STK_AUTHN_JWT_MAX)
        return refuse(why, why_len, "jwt: more than %d bytes", STK_AUTHN_JWT_MAX);
    _cleanup_(jws_done) struct jws j = {0};
    int r = jws_split(tok, len, &j, why, why_len);
    if (r < 0)
        return r;
    unsigned alg = 0;
    const char *kid = NULL;
    r = jws_header(j.header, &alg, &kid, why, why_len);
    if (r < 0)
        return r;
    const struct issuer *is = issuer_find(a, j.payload, why, why_len);
    if (!is)
        return -EACCES;
    if (!(is->algorithms & alg))
        return refuse(why, why_len, "jwt: alg %s is not allowed for this issuer", alg_name(alg));
    const struct jwk *k = key_find(is, alg, kid, why, why_len);
    if (!k)
        return -EACCES;
    if (!jws_signature_ok(&j, k))
        return refuse(why, why_len, "jwt: signature does not verify");
    return jwt_verified(&j, is, now_ms, p, why, why_len);
}

/* ---- entry points -------------------------------------------------------- */

/* RFC 6750 b64token: ALPHA DIGIT - . _ ~ + / then '='s. It covers both a
 * static token and a JWT, and refuses spaces and trailing garbage. */
static bool b64token_ok(const char *s, size_t len)
{
    size_t i = 0;
    for (; i < len && (isalnum((unsigned char)s[i]) || strchr("-._~+/", s[i])); i++)
        ;
    for (; i < len && s[i] == '='; i++)
        ;
    return i == len;
}

static int bearer_check(const struct stk_authn *a, const char *authorization, int64_t now_ms,
                        struct stk_principal *p, char *why, size_t why_len)
{
    static const char scheme[] = "Bearer ";
    if (strncasecmp(authorization, scheme, sizeof(scheme) - 1) != 0)
        return refuse(why, why_len, "authorization: not a Bearer credential");
    const char *tok = authorization + sizeof(scheme) - 1;
    size_t len = strnlen(tok, STK_AUTHN_JWT_MAX + 1);
    if (len == 0)
        return refuse(why, why_len, "token: empty");
    if (len > STK_AUTHN_JWT_MAX)
        return refuse(why, why_len, "token: more than %d bytes", STK_AUTHN_JWT_MAX);
    if (!b64token_ok(tok, len))
        return refuse(why, why_len, "token: characters outside RFC 6750 b64token");
    /* A static token may contain dots too, so the static tokens get the
     * first say; only what none of them matches is tried as a JWT. */
    if (len <= STK_AUTHN_TOKEN_MAX && token_check(a, tok, len, p, why, why_len) == 0)
        return 0;
    size_t dots = 0;
    for (size_t i = 0; i < len; i++)
        dots += tok[i] == '.';
    if (dots < 2)
        return len <= STK_AUTHN_TOKEN_MAX ? -EACCES
                                          : refuse(why, why_len, "token: %zu bytes, outside %d..%d",
                                                   len, STK_AUTHN_TOKEN_MIN, STK_AUTHN_TOKEN_MAX);
    if (a->n_issuers == 0)
        return refuse(why, why_len, "jwt: no issuers are configured");
    return jwt_check(a, tok, len, now_ms, p, why, why_len);
}

static int cert_check(const char *subject, struct stk_principal *p, char *why, size_t why_len)
{
    size_t n = strnlen(subject, sizeof(p->cert_subject));
    if (n == 0)
        return refuse(why, why_len, "cert: empty subject");
    if (n >= sizeof(p->cert_subject))
        return refuse(why, why_len, "cert: subject longer than %zu bytes",
                      sizeof(p->cert_subject) - 1);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)subject[i] < 0x20 || subject[i] == 0x7f)
            return refuse(why, why_len, "cert: subject holds control characters");
    p->kind = STK_PRINCIPAL_CERT;
    memcpy(p->cert_subject, subject, n + 1);
    return 0;
}

int stk_authn_check(const struct stk_authn *a, const char *authorization, const char *cert_subject,
                    int64_t now_ms, struct stk_principal *ret, char *why, size_t why_len)
{
    if (why && why_len)
        why[0] = '\0';
    struct stk_principal p = {.kind = STK_PRINCIPAL_NONE};
    int r;
    if (authorization && *authorization)
        r = bearer_check(a, authorization, now_ms, &p, why, why_len);
    else if (cert_subject)
        r = cert_check(cert_subject, &p, why, why_len);
    else {
        (void)refuse(why, why_len, "no credentials");
        return -ENOENT;
    }
    if (r < 0) {
        stk_principal_release(&p);
        return -EACCES;
    }
    *ret = p;
    return 0;
}

int stk_authn_cert_subject(void *x509, char *buf, size_t n)
{
    X509_NAME *name = x509 ? X509_get_subject_name(x509) : NULL;
    if (!name || n == 0)
        return -EINVAL;
    BIO *bio = BIO_new(BIO_s_mem());
    if (!bio)
        stk_oom();
    int r = -EINVAL;
    if (X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) >= 0) {
        char *data;
        long len = BIO_get_mem_data(bio, &data);
        r = len < 0 ? -EINVAL : (size_t)len >= n ? -ENOBUFS : 0;
        if (r == 0) {
            memcpy(buf, data, (size_t)len);
            buf[len] = '\0';
        }
    }
    BIO_free(bio);
    ERR_clear_error();
    return r;
}
