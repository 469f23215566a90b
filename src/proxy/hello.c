/* SPDX-License-Identifier: Apache-2.0 */
/* The server name of a TLS ClientHello, read without a TLS library: the
 * proxy only needs to compare it with the CONNECT name before the tunnel
 * carries anything. Bounded (STK_TLS_HELLO_MAX), every length checked
 * against what holds it; fuzzed (tests/fuzz/fuzz_tls_hello.c). */
#include "proxy.h"

#include <errno.h>
#include <string.h>

struct rd {
    const uint8_t *p;
    size_t n, at;
};

static bool take(struct rd *r, size_t k, const uint8_t **ret)
{
    if (r->n - r->at < k)
        return false;
    *ret = r->p + r->at;
    r->at += k;
    return true;
}

static bool u8(struct rd *r, size_t *ret)
{
    const uint8_t *q;
    if (!take(r, 1, &q))
        return false;
    *ret = q[0];
    return true;
}

static bool u16(struct rd *r, size_t *ret)
{
    const uint8_t *q;
    if (!take(r, 2, &q))
        return false;
    *ret = (size_t)q[0] << 8 | q[1];
    return true;
}

/* A vector with a length prefix of w bytes, as a reader of its own. */
static bool vec(struct rd *r, int w, struct rd *ret)
{
    size_t len;
    const uint8_t *q;
    if (!(w == 1 ? u8(r, &len) : u16(r, &len)) || !take(r, len, &q))
        return false;
    *ret = (struct rd){.p = q, .n = len};
    return true;
}

/* The SNI extension's body: a server_name_list with one host_name. */
static int sni_ext(struct rd *e, char ret[256])
{
    struct rd list;
    size_t type;
    struct rd name;
    if (!vec(e, 2, &list) || e->at != e->n)
        return -EINVAL;
    while (list.at < list.n) {
        if (!u8(&list, &type) || !vec(&list, 2, &name))
            return -EINVAL;
        if (type != 0)
            continue;
        if (name.n == 0 || name.n > 255)
            return -EINVAL;
        for (size_t i = 0; i < name.n; i++) {
            char c = (char)name.p[i];
            if (c >= 'A' && c <= 'Z')
                c = (char)(c - 'A' + 'a');
            if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
                return -EINVAL;
            ret[i] = c;
        }
        ret[name.n] = '\0';
        return 1;
    }
    return -ENOENT;
}

static int hello_body(const uint8_t *p, size_t n, char ret[256])
{
    struct rd r = {.p = p, .n = n}, v;
    const uint8_t *q;
    size_t ext_type;
    /* client_version, random, session_id, cipher_suites, compression */
    if (!take(&r, 2 + 32, &q) || !vec(&r, 1, &v) || !vec(&r, 2, &v) || !vec(&r, 1, &v))
        return -EINVAL;
    if (r.at == r.n)
        return -ENOENT; /* no extensions at all */
    struct rd exts;
    if (!vec(&r, 2, &exts) || r.at != r.n)
        return -EINVAL;
    while (exts.at < exts.n) {
        struct rd e;
        if (!u16(&exts, &ext_type) || !vec(&exts, 2, &e))
            return -EINVAL;
        if (ext_type == 0)
            return sni_ext(&e, ret);
    }
    return -ENOENT;
}

int stk_tls_client_hello_sni(const uint8_t *p, size_t n, char ret[256])
{
    /* the handshake message may span records: gather their fragments */
    uint8_t hs[STK_TLS_HELLO_MAX];
    size_t have = 0, at = 0;
    for (;;) {
        if (at > 2 * STK_TLS_HELLO_MAX)
            return -EMSGSIZE; /* a ClientHello cut into tiny records */
        if (n - at < 5)
            return at == 0 && n > 0 && p[0] != 0x16 ? -EINVAL : 0;
        if (p[at] != 0x16 || p[at + 1] != 0x03)
            return -EINVAL; /* not a handshake record */
        size_t len = (size_t)p[at + 3] << 8 | p[at + 4];
        if (len == 0 || len > STK_TLS_HELLO_MAX)
            return -EINVAL;
        if (have + len > sizeof(hs))
            return -EMSGSIZE;
        if (n - at - 5 < len)
            return 0;
        memcpy(hs + have, p + at + 5, len);
        have += len;
        at += 5 + len;
        if (have >= 4) {
            if (hs[0] != 0x01)
                return -EINVAL; /* not a ClientHello */
            size_t mlen = (size_t)hs[1] << 16 | (size_t)hs[2] << 8 | hs[3];
            if (mlen + 4 > sizeof(hs))
                return -EMSGSIZE;
            if (have >= mlen + 4)
                return hello_body(hs + 4, mlen, ret);
        }
    }
}
