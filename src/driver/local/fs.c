/* SPDX-License-Identifier: Apache-2.0 */
/* The few file operations the local driver needs, all O_CLOEXEC. */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>

int fmt_into(char *buf, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vsnprintf(buf, n, fmt, ap);
    va_end(ap);
    return r;
}

int file_write(const char *path, const char *data, size_t len)
{
    _cleanup_close_ int fd =
        open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return -errno;
    while (len > 0) {
        ssize_t w = write(fd, data, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        data += w;
        len -= (size_t)w;
    }
    return 0;
}

ssize_t file_read(const char *path, char *buf, size_t n)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t got = 0;
    while (got + 1 < n) {
        ssize_t r = read(fd, buf + got, n - 1 - got);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    buf[got] = '\0';
    return (ssize_t)got;
}

int mkdir_p(const char *path, mode_t mode)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, mode) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(tmp, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* The mount a path is on, by its mount id: a bind mount of a directory on
 * the same filesystem has the device of its parent but a mount id of its
 * own. */
static int mount_of(int at, const char *name, struct statx *stx)
{
    if (statx(at, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, STATX_TYPE | STATX_MNT_ID, stx) < 0)
        return -errno;
    if (!(stx->stx_mask & STATX_MNT_ID))
        return -EOPNOTSUPP;
    return 0;
}

static int rm_rf_at(int at, const char *name, uint64_t mnt_id, int depth)
{
    if (depth > 64)
        return -ELOOP;
    struct statx stx;
    int r = mount_of(at, name, &stx);
    if (r < 0)
        return r == -ENOENT ? 0 : r;
    if (!S_ISDIR(stx.stx_mode))
        return unlinkat(at, name, 0) < 0 && errno != ENOENT ? -errno : 0;
    /* Never cross into another mount (a bind mount left behind, even one
     * of a directory on the same filesystem). */
    if (stx.stx_mnt_id != mnt_id)
        return -EBUSY;
    int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -errno;
    }
    r = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        int q = rm_rf_at(dirfd(d), e->d_name, mnt_id, depth + 1);
        if (q < 0 && r == 0)
            r = q;
    }
    closedir(d);
    if (unlinkat(at, name, AT_REMOVEDIR) < 0 && errno != ENOENT && r == 0)
        r = -errno;
    return r;
}

int rm_rf(const char *path)
{
    struct statx stx;
    /* a path builder that refused leaves an empty path: nothing to remove */
    if (!path || !*path)
        return -EINVAL;
    int r = mount_of(AT_FDCWD, path, &stx);
    if (r < 0)
        return r == -ENOENT ? 0 : r;
    return rm_rf_at(AT_FDCWD, path, stx.stx_mnt_id, 0);
}

void random_hex(char *buf, size_t n)
{
    unsigned char raw[32];
    if (n > 2 * sizeof(raw))
        n = 2 * sizeof(raw);
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        for (size_t i = 0; i < sizeof(raw); i++)
            raw[i] = (unsigned char)((ts.tv_nsec >> (i % 8)) ^ (getpid() << (i % 3)) ^ i);
    }
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++)
        buf[i] = hex[(raw[i / 2] >> ((i % 2) ? 0 : 4)) & 0xf];
    buf[n] = '\0';
}

/* Whether a --root entry belongs to id: <id>, <id>_* or runsc-<id>.sock
 * (runsc's control socket since 2024). */
static bool entry_of(const char *name, const char *id, size_t len)
{
    if (!strncmp(name, "runsc-", 6) && !strncmp(name + 6, id, len) &&
        !strcmp(name + 6 + len, ".sock"))
        return true;
    return !strncmp(name, id, len) && (!name[len] || name[len] == '_');
}

/* Counts, or removes, what a runtime's --root holds for id. */
size_t runtime_entries(const char *root, const char *id, bool remove)
{
    DIR *d = opendir(root);
    if (!d)
        return 0;
    size_t n = 0, len = strlen(id);
    struct dirent *e;
    char path[700];
    while ((e = readdir(d))) {
        if (!entry_of(e->d_name, id, len))
            continue;
        if (stk_path_fmt(path, sizeof(path), "%s/%s", root, e->d_name) < 0)
            continue; /* never a cut path: it would name another entry */
        if (!remove || rm_rf(path) == 0)
            n++;
    }
    closedir(d);
    return n;
}
