/* SPDX-License-Identifier: Apache-2.0 */
/* The image config's User, resolved inside the image's root. */
#include "image.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define DB_MAX (1u << 20)

static bool numeric(const char *s, uint32_t *ret)
{
    if (!*s || strlen(s) > 10)
        return false;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    if (v >= UINT32_MAX)
        return false;
    *ret = (uint32_t)v;
    return true;
}

/* /etc/passwd or /etc/group of the root, read with symlinks resolved as
 * if the root were "/" (RESOLVE_IN_ROOT), never outside it. */
static char *db_read(const char *root, const char *name)
{
    int rfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rfd < 0)
        return NULL;
    struct open_how how = {.flags = O_RDONLY | O_CLOEXEC,
                           .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV};
    int fd = (int)syscall(SYS_openat2, rfd, name, &how, sizeof(how));
    close(rfd);
    if (fd < 0)
        return NULL;
    char *buf = stk_xmalloc(DB_MAX + 1);
    size_t got = 0;
    ssize_t k;
    while (got < DB_MAX && (k = read(fd, buf + got, DB_MAX - got)) > 0)
        got += (size_t)k;
    close(fd);
    buf[got] = '\0';
    return buf;
}

/* Field 2 (uid or gid) and, for passwd, field 3 (gid) of the line whose
 * first field is name. */
static bool db_lookup(const char *db, const char *name, uint32_t *ret_id, uint32_t *ret_gid)
{
    if (!db)
        return false;
    size_t nl = strlen(name);
    for (const char *line = db; *line;) {
        const char *end = strchrnul(line, '\n');
        if ((size_t)(end - line) > nl && !strncmp(line, name, nl) && line[nl] == ':') {
            const char *f = line + nl + 1;
            const char *c = memchr(f, ':', (size_t)(end - f)); /* past the password */
            char idb[16] = "", gidb[16] = "";
            if (c) {
                const char *c2 = memchr(c + 1, ':', (size_t)(end - c - 1));
                size_t n1 = c2 ? (size_t)(c2 - c - 1) : (size_t)(end - c - 1);
                if (n1 < sizeof(idb))
                    memcpy(idb, c + 1, n1);
                if (c2) {
                    const char *c3 = memchr(c2 + 1, ':', (size_t)(end - c2 - 1));
                    size_t n2 = c3 ? (size_t)(c3 - c2 - 1) : (size_t)(end - c2 - 1);
                    if (n2 < sizeof(gidb))
                        memcpy(gidb, c2 + 1, n2);
                }
            }
            uint32_t g = 0;
            if (numeric(idb, ret_id)) {
                if (ret_gid && numeric(gidb, &g))
                    *ret_gid = g;
                return true;
            }
            return false;
        }
        line = *end ? end + 1 : end;
    }
    return false;
}

int stk_image_user(const struct stk_image *img, uint32_t *ret_uid, uint32_t *ret_gid,
                   struct stk_error **err)
{
    char spec[256];
    if (strlen(img->user) >= sizeof(spec))
        return stk_error_make(err, EINVAL, "image %s: User is too long", img->digest);
    snprintf(spec, sizeof(spec), "%s", img->user);
    if (!spec[0]) {
        *ret_uid = *ret_gid = 0; /* an image without User runs as root */
        return 0;
    }
    char *colon = strchr(spec, ':');
    const char *group = NULL;
    if (colon) {
        *colon = '\0';
        group = colon + 1;
    }
    uint32_t uid, gid = 0;
    bool have_gid = false;
    if (!numeric(spec, &uid)) {
        _cleanup_free_ char *pw = db_read(img->root, "/etc/passwd");
        if (!db_lookup(pw, spec, &uid, &gid))
            return stk_error_make(err, ENOENT, "image %s: User %s is not in its /etc/passwd",
                                  img->digest, spec);
        have_gid = true;
    } else {
        _cleanup_free_ char *pw = db_read(img->root, "/etc/passwd");
        /* a numeric user's primary group, when the image lists it */
        char name[32];
        snprintf(name, sizeof(name), "%u", uid);
        have_gid = false;
        for (const char *line = pw; line && *line;) {
            const char *end = strchrnul(line, '\n');
            char buf[512];
            size_t n = (size_t)(end - line) < sizeof(buf) - 1 ? (size_t)(end - line) : 0;
            memcpy(buf, line, n);
            buf[n] = '\0';
            char *f[4] = {NULL};
            char *save = NULL, *s = buf;
            for (int i = 0; i < 4 && (f[i] = strsep(&s, ":")); i++)
                ;
            (void)save;
            uint32_t u, g;
            if (f[2] && f[3] && numeric(f[2], &u) && u == uid && numeric(f[3], &g)) {
                gid = g;
                have_gid = true;
                break;
            }
            line = *end ? end + 1 : end;
        }
    }
    if (group && group[0]) {
        if (!numeric(group, &gid)) {
            _cleanup_free_ char *gr = db_read(img->root, "/etc/group");
            if (!db_lookup(gr, group, &gid, NULL))
                return stk_error_make(err, ENOENT, "image %s: group %s is not in its /etc/group",
                                      img->digest, group);
        }
        have_gid = true;
    }
    *ret_uid = uid;
    *ret_gid = have_gid ? gid : uid;
    return 0;
}
