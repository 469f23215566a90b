/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The tar reader: ustar headers with their checksum, pax extended headers
 * (path, linkpath, size, uid, gid, mtime), GNU long names and long links.
 * Everything it returns is bounded by the caller's limits; it touches no
 * file (unpack.c does), so the fuzz target drives it over memory.
 */
#include "image.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK 512

struct stk_tar_reader {
    stk_tar_read_fn fn;
    void *ctx;
    struct stk_tar_limits lim;
    uint64_t remaining; /* content left in the current entry */
    uint64_t pad;       /* padding after it */
    char *path, *link;  /* the current entry's, owned here */
    /* from a pax header or GNU long name/link, for the next entry */
    char *next_path, *next_link;
    bool has_size, has_uid, has_gid, has_mtime;
    uint64_t size;
    uint32_t uid, gid;
    int64_t mtime;
    bool ended;
};

struct stk_tar_reader *stk_tar_reader_new(stk_tar_read_fn fn, void *ctx,
                                          const struct stk_tar_limits *lim)
{
    struct stk_tar_reader *r = stk_xcalloc(1, sizeof(*r));
    r->fn = fn;
    r->ctx = ctx;
    r->lim = lim ? *lim
                 : (struct stk_tar_limits){STK_TAR_MAX_FILES, STK_TAR_MAX_BYTES, STK_TAR_MAX_PATH};
    if (r->lim.max_path == 0 || r->lim.max_path > STK_TAR_MAX_PATH)
        r->lim.max_path = STK_TAR_MAX_PATH;
    return r;
}

static void pending_clear(struct stk_tar_reader *r)
{
    free(r->next_path);
    free(r->next_link);
    r->next_path = r->next_link = NULL;
    r->has_size = r->has_uid = r->has_gid = r->has_mtime = false;
}

void stk_tar_reader_free(struct stk_tar_reader *r)
{
    if (!r)
        return;
    pending_clear(r);
    free(r->path);
    free(r->link);
    free(r);
}

/* Exactly n bytes, or an error (a short archive is malformed). */
static int read_full(struct stk_tar_reader *r, void *buf, size_t n, struct stk_error **err)
{
    size_t got = 0;
    while (got < n) {
        ssize_t k = r->fn(r->ctx, (char *)buf + got, n - got);
        if (k < 0)
            return stk_error_errno(err, (int)-k, "reading the layer");
        if (k == 0)
            return stk_error_make(err, EBADMSG,
                                  "layer: the archive ends in the middle of an "
                                  "entry");
        got += (size_t)k;
    }
    return 0;
}

static int skip(struct stk_tar_reader *r, uint64_t n, struct stk_error **err)
{
    char buf[4096];
    while (n > 0) {
        size_t k = n < sizeof(buf) ? (size_t)n : sizeof(buf);
        int e = read_full(r, buf, k, err);
        if (e < 0)
            return e;
        n -= k;
    }
    return 0;
}

/* An octal field (NUL- or space-terminated), or base-256 (GNU) when the
 * first byte's high bit is set. */
static int number(const unsigned char *f, size_t n, uint64_t *ret)
{
    uint64_t v = 0;
    if (f[0] & 0x80) {
        if (f[0] & 0x40)
            return -1; /* negative */
        v = f[0] & 0x3f;
        for (size_t i = 1; i < n; i++) {
            if (v >> 55)
                return -1;
            v = (v << 8) | f[i];
        }
        *ret = v;
        return 0;
    }
    size_t i = 0;
    while (i < n && f[i] == ' ')
        i++;
    for (; i < n && f[i] >= '0' && f[i] <= '7'; i++) {
        if (v >> 60)
            return -1;
        v = (v << 3) | (uint64_t)(f[i] - '0');
    }
    for (; i < n; i++)
        if (f[i] != ' ' && f[i] != '\0')
            return -1;
    *ret = v;
    return 0;
}

static bool zero_block(const unsigned char *b)
{
    for (size_t i = 0; i < BLOCK; i++)
        if (b[i])
            return false;
    return true;
}

static char *field_str(const unsigned char *f, size_t n)
{
    size_t len = strnlen((const char *)f, n);
    return stk_xstrndup((const char *)f, len);
}

/* Reads the content of a metadata entry (pax, GNU long name) whole. */
static int meta_read(struct stk_tar_reader *r, uint64_t size, char **ret, struct stk_error **err)
{
    if (size > STK_TAR_MAX_META)
        return stk_error_make(err, EFBIG, "layer: a %llu-byte extended header (limit %u)",
                              (unsigned long long)size, STK_TAR_MAX_META);
    char *buf = stk_xmalloc((size_t)size + 1);
    int e = read_full(r, buf, (size_t)size, err);
    if (e < 0) {
        free(buf);
        return e;
    }
    buf[size] = '\0';
    uint64_t pad = (BLOCK - size % BLOCK) % BLOCK;
    if ((e = skip(r, pad, err)) < 0) {
        free(buf);
        return e;
    }
    *ret = buf;
    return 0;
}

static int check_len(struct stk_tar_reader *r, const char *what, size_t len, struct stk_error **err)
{
    if (len > r->lim.max_path)
        return stk_error_make(err, ENAMETOOLONG, "layer: a %zu-byte %s (limit %zu)", len, what,
                              r->lim.max_path);
    return 0;
}

static int dec(const char *s, size_t n, uint64_t *ret)
{
    uint64_t v = 0;
    if (n == 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9' || v > UINT64_MAX / 10 - 1)
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *ret = v;
    return 0;
}

/* "LEN KEY=VALUE\n" records. */
static int pax_parse(struct stk_tar_reader *r, const char *buf, size_t n, struct stk_error **err)
{
    size_t off = 0;
    while (off < n) {
        const char *rec = buf + off;
        size_t room = n - off;
        const char *sp = memchr(rec, ' ', room < 24 ? room : 24);
        uint64_t len;
        if (!sp || dec(rec, (size_t)(sp - rec), &len) < 0 || len > room ||
            len <= (uint64_t)(sp - rec) + 1 || rec[len - 1] != '\n')
            return stk_error_make(err, EBADMSG, "layer: a malformed pax record");
        const char *kv = sp + 1;
        size_t kvn = (size_t)(rec + len - 1 - kv);
        const char *eq = memchr(kv, '=', kvn);
        if (!eq)
            return stk_error_make(err, EBADMSG, "layer: a pax record without '='");
        size_t kn = (size_t)(eq - kv);
        const char *v = eq + 1;
        size_t vn = kvn - kn - 1;
        int e = 0;
        uint64_t num;
#define KEY(k) (kn == sizeof(k) - 1 && !memcmp(kv, k, kn))
        if (KEY("path") || KEY("linkpath")) {
            bool path = KEY("path");
            if (memchr(v, '\0', vn))
                return stk_error_make(err, EBADMSG, "layer: a NUL byte in a pax path");
            if ((e = check_len(r, path ? "path" : "link target", vn, err)) < 0)
                return e;
            char **dst = path ? &r->next_path : &r->next_link;
            free(*dst);
            *dst = stk_xstrndup(v, vn);
        } else if (KEY("size")) {
            if (dec(v, vn, &num) < 0)
                return stk_error_make(err, EBADMSG, "layer: a malformed pax size");
            r->size = num;
            r->has_size = true;
        } else if (KEY("uid") || KEY("gid")) {
            if (dec(v, vn, &num) < 0 || num > UINT32_MAX - 1)
                return stk_error_make(err, EBADMSG, "layer: a malformed pax uid/gid");
            if (KEY("uid")) {
                r->uid = (uint32_t)num;
                r->has_uid = true;
            } else {
                r->gid = (uint32_t)num;
                r->has_gid = true;
            }
        } else if (KEY("mtime")) {
            const char *dot = memchr(v, '.', vn);
            if (dec(v, dot ? (size_t)(dot - v) : vn, &num) == 0 && num < INT64_MAX) {
                r->mtime = (int64_t)num;
                r->has_mtime = true;
            }
        }
#undef KEY
        off += (size_t)len;
    }
    return 0;
}

static enum stk_tar_type type_of(char t)
{
    switch (t) {
    case '0':
    case '\0':
    case '7':
        return STK_TAR_FILE;
    case '1':
        return STK_TAR_HARDLINK;
    case '2':
        return STK_TAR_SYMLINK;
    case '3':
        return STK_TAR_CHAR;
    case '4':
        return STK_TAR_BLOCK;
    case '5':
        return STK_TAR_DIR;
    case '6':
        return STK_TAR_FIFO;
    default:
        return STK_TAR_OTHER;
    }
}

int stk_tar_next(struct stk_tar_reader *r, struct stk_tar_entry *ret, struct stk_error **err)
{
    int e;
    if (r->ended)
        return 0;
    if ((e = skip(r, r->remaining + r->pad, err)) < 0)
        return e;
    r->remaining = r->pad = 0;
    for (;;) {
        unsigned char h[BLOCK];
        size_t got = 0;
        while (got < BLOCK) {
            ssize_t k = r->fn(r->ctx, h + got, BLOCK - got);
            if (k < 0)
                return stk_error_errno(err, (int)-k, "reading the layer");
            if (k == 0)
                break;
            got += (size_t)k;
        }
        /* the end: two zero blocks, or (leniently) one, or none at all */
        if (got == 0 || (got == BLOCK && zero_block(h))) {
            r->ended = true;
            if (r->next_path || r->next_link)
                return stk_error_make(err, EBADMSG, "layer: an extended header without entry");
            return 0;
        }
        if (got < BLOCK)
            return stk_error_make(err, EBADMSG, "layer: a truncated header");
        uint64_t sum_field, sum = 0;
        for (size_t i = 0; i < BLOCK; i++)
            sum += (i >= 148 && i < 156) ? ' ' : h[i];
        if (number(h + 148, 8, &sum_field) < 0 || sum_field != sum)
            return stk_error_make(err, EBADMSG,
                                  "layer: a header's checksum does not match (not "
                                  "a tar archive?)");
        uint64_t size, mode, uid, gid, mtime;
        if (number(h + 124, 12, &size) < 0 || number(h + 100, 8, &mode) < 0 ||
            number(h + 108, 8, &uid) < 0 || number(h + 116, 8, &gid) < 0 ||
            number(h + 136, 12, &mtime) < 0)
            return stk_error_make(err, EBADMSG, "layer: a malformed numeric header field");
        char t = (char)h[156];
        if (t == 'x' || t == 'g' || t == 'L' || t == 'K') {
            _cleanup_free_ char *meta = NULL;
            if ((e = meta_read(r, size, &meta, err)) < 0)
                return e;
            if (t == 'x' && (e = pax_parse(r, meta, (size_t)size, err)) < 0)
                return e;
            if (t == 'L' || t == 'K') {
                size_t len = strlen(meta);
                if ((e = check_len(r, t == 'L' ? "path" : "link target", len, err)) < 0)
                    return e;
                char **dst = t == 'L' ? &r->next_path : &r->next_link;
                free(*dst);
                *dst = TAKE_PTR(meta);
            }
            continue; /* 'g' (global) is read and ignored */
        }
        free(r->path);
        free(r->link);
        if (r->next_path) {
            r->path = TAKE_PTR(r->next_path);
        } else {
            _cleanup_free_ char *name = field_str(h, 100);
            _cleanup_free_ char *prefix =
                memcmp(h + 257, "ustar", 5) == 0 ? field_str(h + 345, 155) : stk_xstrdup("");
            r->path = prefix[0] ? stk_xasprintf("%s/%s", prefix, name) : TAKE_PTR(name);
        }
        r->link = r->next_link ? TAKE_PTR(r->next_link) : field_str(h + 157, 100);
        if (r->has_size)
            size = r->size;
        if (r->has_uid)
            uid = r->uid;
        if (r->has_gid)
            gid = r->gid;
        if (r->has_mtime)
            mtime = (uint64_t)r->mtime;
        pending_clear(r);
        if ((e = check_len(r, "path", strlen(r->path), err)) < 0 ||
            (e = check_len(r, "link target", strlen(r->link), err)) < 0)
            return e;
        if (uid > UINT32_MAX - 1 || gid > UINT32_MAX - 1)
            return stk_error_make(err, EBADMSG, "layer: %s: uid/gid out of range", r->path);
        enum stk_tar_type type = type_of(t);
        /* only regular files carry content; others' size is ignored */
        uint64_t content = type == STK_TAR_FILE || type == STK_TAR_OTHER ? size : 0;
        if (content > r->lim.max_bytes)
            return stk_error_make(err, EFBIG, "layer: %s: %llu bytes is over the limit of %llu",
                                  r->path, (unsigned long long)content,
                                  (unsigned long long)r->lim.max_bytes);
        r->remaining = content;
        r->pad = (BLOCK - content % BLOCK) % BLOCK;
        *ret = (struct stk_tar_entry){
            .type = type,
            .path = r->path,
            .link = r->link,
            .size = content,
            .mode = (uint32_t)(mode & 07777),
            .uid = (uint32_t)uid,
            .gid = (uint32_t)gid,
            .mtime = mtime > INT64_MAX ? 0 : (int64_t)mtime,
        };
        return 1;
    }
}

ssize_t stk_tar_data(struct stk_tar_reader *r, void *buf, size_t n, struct stk_error **err)
{
    if (r->remaining == 0)
        return 0;
    if (n > r->remaining)
        n = (size_t)r->remaining;
    int e = read_full(r, buf, n, err);
    if (e < 0)
        return e;
    r->remaining -= n;
    return (ssize_t)n;
}
