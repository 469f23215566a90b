/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unpacking a layer beneath a directory and nowhere else.
 *
 * Every parent directory is opened with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV) from the
 * root's fd, and every entry is made with an *at() call on that parent that
 * follows no symlink (O_NOFOLLOW, O_EXCL, AT_SYMLINK_NOFOLLOW): a symlink
 * in the layer (or an earlier one) is written as a symlink and never
 * walked through, so nothing can land outside the root. A layer is read
 * twice: its whiteouts first (they apply to the earlier layers only), then
 * its entries.
 */
#include "image.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <zlib.h>

#define WHITEOUT        ".wh."
#define WHITEOUT_OPAQUE ".wh..wh..opq"

static int beneath(int root_fd, const char *path, int flags)
{
    struct open_how how = {
        .flags = (uint64_t)(flags | O_CLOEXEC),
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
    };
    int fd = (int)syscall(SYS_openat2, root_fd, path, &how, sizeof(how));
    return fd < 0 ? -errno : fd;
}

int stk_image_rmtree_at(int dir_fd, const char *name)
{
    struct stat st;
    if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISDIR(st.st_mode))
        return unlinkat(dir_fd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
    int fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = -errno;
        close(fd);
        return e;
    }
    int r = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && r == 0)
            r = stk_image_rmtree_at(dirfd(d), de->d_name);
    closedir(d);
    if (r < 0)
        return r;
    return unlinkat(dir_fd, name, AT_REMOVEDIR) < 0 && errno != ENOENT ? -errno : 0;
}

/* The archive's name as a clean relative path ("a/b/c"): no leading "/",
 * no "..", "." and empty components dropped. "" for the root itself. */
static int clean_path(const char *in, char *out, size_t n, const char **why)
{
    if (in[0] == '/') {
        *why = "an absolute path";
        return -1;
    }
    size_t o = 0;
    const char *p = in;
    while (*p) {
        const char *end = strchrnul(p, '/');
        size_t len = (size_t)(end - p);
        if (len == 2 && p[0] == '.' && p[1] == '.') {
            *why = "a \"..\" component";
            return -1;
        }
        if (len > 255) {
            *why = "a component longer than 255 bytes";
            return -1;
        }
        if (len > 0 && !(len == 1 && p[0] == '.')) {
            if (o + len + 2 > n) {
                *why = "a path too long";
                return -1;
            }
            if (o)
                out[o++] = '/';
            memcpy(out + o, p, len);
            o += len;
        }
        p = *end ? end + 1 : end;
    }
    out[o] = '\0';
    return 0;
}

/* Opens the directory rel (clean) beneath root, making missing components
 * when create. A symlink anywhere on the way is an error (ELOOP). */
static int open_dir(int root_fd, const char *rel, bool create)
{
    if (!rel[0])
        return beneath(root_fd, ".", O_PATH | O_DIRECTORY);
    int fd = beneath(root_fd, rel, O_PATH | O_DIRECTORY);
    if (fd != -ENOENT || !create)
        return fd;
    char buf[STK_TAR_MAX_PATH + 2];
    snprintf(buf, sizeof(buf), "%s", rel);
    int cur = beneath(root_fd, ".", O_PATH | O_DIRECTORY);
    for (char *tok = buf, *save = NULL; cur >= 0 && (tok = strtok_r(tok, "/", &save)); tok = NULL) {
        if (mkdirat(cur, tok, 0755) < 0 && errno != EEXIST) {
            int e = -errno;
            close(cur);
            return e;
        }
        int next = beneath(cur, tok, O_PATH | O_DIRECTORY);
        close(cur);
        cur = next;
    }
    return cur;
}

static void split(char *path, const char **ret_dir, const char **ret_base)
{
    char *slash = strrchr(path, '/');
    if (slash) {
        *slash = '\0';
        *ret_dir = path;
        *ret_base = slash + 1;
    } else {
        *ret_dir = "";
        *ret_base = path;
    }
}

struct gz_src {
    gzFile gz;
};

static ssize_t gz_read(void *ctx, void *buf, size_t n)
{
    struct gz_src *s = ctx;
    if (n > INT32_MAX)
        n = INT32_MAX;
    int k = gzread(s->gz, buf, (unsigned)n);
    if (k < 0) {
        int e;
        (void)gzerror(s->gz, &e);
        return e == Z_ERRNO ? -errno : -EBADMSG;
    }
    return k;
}

static int fail(struct stk_error **err, int code, const char *path, const char *what)
{
    return stk_error_make(err, code, "layer: %s: %s", path, what);
}

/* Removes whatever is at base in pd (any type, a tree too). */
static int clear(int pd, const char *base)
{
    return stk_image_rmtree_at(pd, base);
}

static int whiteout(int root_fd, const struct stk_tar_entry *e, struct stk_error **err)
{
    char rel[STK_TAR_MAX_PATH + 2];
    const char *why, *dir, *base;
    if (clean_path(e->path, rel, sizeof(rel), &why) < 0)
        return fail(err, EPERM, e->path, why);
    split(rel, &dir, &base);
    if (!stk_startswith(base, WHITEOUT))
        return 0;
    int pd = open_dir(root_fd, dir, false);
    if (pd == -ENOENT || pd == -ENOTDIR)
        return 0; /* nothing below to hide */
    if (pd < 0)
        return stk_error_errno(err, -pd, "layer: %s: opening its directory beneath the root",
                               e->path);
    int r = 0;
    if (!strcmp(base, WHITEOUT_OPAQUE)) {
        int fd = openat(pd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d = fd < 0 ? NULL : fdopendir(fd);
        if (!d) {
            r = -errno;
            if (fd >= 0)
                close(fd);
        }
        struct dirent *de;
        while (d && r == 0 && (de = readdir(d)))
            if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
                r = clear(dirfd(d), de->d_name);
        if (d)
            closedir(d);
    } else {
        const char *victim = base + strlen(WHITEOUT);
        if (!victim[0] || !strcmp(victim, ".") || !strcmp(victim, ".."))
            r = -EINVAL;
        else
            r = clear(pd, victim);
    }
    close(pd);
    return r < 0 ? stk_error_errno(err, -r, "layer: %s: applying the whiteout", e->path) : 0;
}

static int write_file(struct stk_tar_reader *rd, int pd, const char *base,
                      const struct stk_tar_entry *e, struct stk_error **err)
{
    int fd = openat(pd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return stk_error_errno(err, errno, "layer: %s: creating it", e->path);
    char buf[65536];
    ssize_t k;
    int r = 0;
    while ((k = stk_tar_data(rd, buf, sizeof(buf), err)) > 0) {
        for (ssize_t off = 0; off < k;) {
            ssize_t w = write(fd, buf + off, (size_t)(k - off));
            if (w < 0) {
                r = stk_error_errno(err, errno, "layer: %s: writing it", e->path);
                break;
            }
            off += w;
        }
        if (r < 0)
            break;
    }
    if (k < 0)
        r = (int)k;
    if (r == 0 && (fchown(fd, e->uid, e->gid) < 0 ||
                   /* setuid/setgid bits are dropped: no_new_privs makes them
                    * inert anyway, and an image never gains privilege here */
                   fchmod(fd, e->mode & 01777) < 0))
        r = stk_error_errno(err, errno, "layer: %s: setting its owner and mode", e->path);
    if (r == 0) {
        struct timespec ts[2] = {{e->mtime, 0}, {e->mtime, 0}};
        (void)futimens(fd, ts);
    }
    close(fd);
    return r;
}

static int hardlink(int root_fd, int pd, const char *base, const struct stk_tar_entry *e,
                    struct stk_error **err)
{
    char rel[STK_TAR_MAX_PATH + 2];
    const char *why, *dir, *tbase;
    if (clean_path(e->link, rel, sizeof(rel), &why) < 0)
        return fail(err, EPERM, e->path, "a hard link to a target outside the root");
    split(rel, &dir, &tbase);
    if (!tbase[0])
        return fail(err, EPERM, e->path, "a hard link to the root");
    int tpd = open_dir(root_fd, dir, false);
    if (tpd < 0)
        return stk_error_errno(err, -tpd, "layer: %s: its link target %s", e->path, e->link);
    struct stat st;
    int r = 0;
    if (fstatat(tpd, tbase, &st, AT_SYMLINK_NOFOLLOW) < 0)
        r = stk_error_errno(err, errno, "layer: %s: its link target %s", e->path, e->link);
    else if (!S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode))
        r = fail(err, EPERM, e->path, "a hard link to something not a file");
    else if ((r = clear(pd, base)) < 0 || linkat(tpd, tbase, pd, base, 0) < 0)
        r = stk_error_errno(err, r < 0 ? -r : errno, "layer: %s: linking it", e->path);
    close(tpd);
    return r;
}

static int entry(struct stk_tar_reader *rd, int root_fd, const struct stk_tar_entry *e,
                 const struct stk_tar_limits *lim, struct stk_tar_counts *c, struct stk_error **err)
{
    char rel[STK_TAR_MAX_PATH + 2];
    const char *why, *dir, *base;
    if (clean_path(e->path, rel, sizeof(rel), &why) < 0)
        return fail(err, EPERM, e->path, why);
    if (!rel[0])
        return 0; /* "./": the root itself keeps the store's owner and mode */
    split(rel, &dir, &base);
    if (stk_startswith(base, WHITEOUT))
        return 0; /* applied in the first pass */
    if (e->type == STK_TAR_CHAR || e->type == STK_TAR_BLOCK)
        return fail(err, EPERM, e->path, "a device node (never unpacked)");
    if (e->type == STK_TAR_OTHER)
        return fail(err, ENOTSUP, e->path, "an entry type stockade does not unpack");
    if (++c->files > lim->max_files)
        return stk_error_make(err, EFBIG, "layer: more than %llu files",
                              (unsigned long long)lim->max_files);
    if (e->size > lim->max_bytes - c->bytes)
        return stk_error_make(err, EFBIG, "layer: %s: the image is over its limit of %llu bytes",
                              e->path, (unsigned long long)lim->max_bytes);
    c->bytes += e->size;

    int pd = open_dir(root_fd, dir, true);
    if (pd < 0)
        return stk_error_errno(err, -pd,
                               pd == -ELOOP ? "layer: %s: its directory is reached through a "
                                              "symlink (refused)"
                                            : "layer: %s: opening its directory beneath the root",
                               e->path);
    int r = 0;
    struct stat st;
    bool exists = fstatat(pd, base, &st, AT_SYMLINK_NOFOLLOW) == 0;
    switch (e->type) {
    case STK_TAR_DIR:
        if (exists && !S_ISDIR(st.st_mode) && (r = clear(pd, base)) < 0)
            break;
        if ((!exists || !S_ISDIR(st.st_mode)) && mkdirat(pd, base, 0700) < 0) {
            r = -errno;
            break;
        }
        if (fchownat(pd, base, e->uid, e->gid, AT_SYMLINK_NOFOLLOW) < 0 ||
            fchmodat(pd, base, e->mode & 07777 & ~(mode_t)S_ISUID, 0) < 0)
            r = -errno;
        break;
    case STK_TAR_FILE:
        if (exists && (r = clear(pd, base)) < 0)
            break;
        close(pd);
        pd = open_dir(root_fd, dir, false);
        if (pd < 0) {
            r = pd;
            break;
        }
        {
            int w = write_file(rd, pd, base, e, err);
            close(pd);
            return w;
        }
    case STK_TAR_SYMLINK:
        if (exists && (r = clear(pd, base)) < 0)
            break;
        if (symlinkat(e->link, pd, base) < 0 ||
            fchownat(pd, base, e->uid, e->gid, AT_SYMLINK_NOFOLLOW) < 0)
            r = -errno;
        break;
    case STK_TAR_HARDLINK: {
        int h = hardlink(root_fd, pd, base, e, err);
        close(pd);
        return h;
    }
    case STK_TAR_FIFO:
        if (exists && (r = clear(pd, base)) < 0)
            break;
        if (mkfifoat(pd, base, e->mode & 0777) < 0 ||
            fchownat(pd, base, e->uid, e->gid, AT_SYMLINK_NOFOLLOW) < 0)
            r = -errno;
        break;
    case STK_TAR_CHAR:
    case STK_TAR_BLOCK:
    case STK_TAR_OTHER:
        break;
    }
    if (r == 0 && e->type != STK_TAR_FILE) {
        struct timespec ts[2] = {{e->mtime, 0}, {e->mtime, 0}};
        (void)utimensat(pd, base, ts, AT_SYMLINK_NOFOLLOW);
    }
    close(pd);
    return r < 0 ? stk_error_errno(err, -r, "layer: %s: unpacking it", e->path) : 0;
}

static int pass(int root_fd, const char *layer_path, bool whiteouts,
                const struct stk_tar_limits *lim, struct stk_tar_counts *c, struct stk_error **err)
{
    int fd = open(layer_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return stk_error_errno(err, errno, "opening layer %s", layer_path);
    unsigned char magic[4] = {0};
    if (pread(fd, magic, sizeof(magic), 0) == 4 && magic[0] == 0x28 && magic[1] == 0xb5 &&
        magic[2] == 0x2f && magic[3] == 0xfd) {
        close(fd);
        return stk_error_make(err, ENOTSUP,
                              "layer %s is zstd-compressed; stockade reads plain "
                              "and gzip layers",
                              layer_path);
    }
    struct gz_src src = {gzdopen(fd, "rb")};
    if (!src.gz) {
        close(fd);
        return stk_error_make(err, ENOMEM, "opening layer %s", layer_path);
    }
    struct stk_tar_reader *rd = stk_tar_reader_new(gz_read, &src, lim);
    struct stk_tar_entry e;
    int r;
    while ((r = stk_tar_next(rd, &e, err)) > 0) {
        r = whiteouts ? whiteout(root_fd, &e, err) : entry(rd, root_fd, &e, lim, c, err);
        if (r < 0)
            break;
    }
    stk_tar_reader_free(rd);
    gzclose(src.gz);
    return r < 0 ? r : 0;
}

int stk_layer_unpack(int root_fd, const char *layer_path, const struct stk_tar_limits *lim,
                     struct stk_tar_counts *counts, struct stk_error **err)
{
    struct stk_tar_limits dflt = {STK_TAR_MAX_FILES, STK_TAR_MAX_BYTES, STK_TAR_MAX_PATH};
    if (!lim)
        lim = &dflt;
    int r = pass(root_fd, layer_path, true, lim, counts, err);
    return r < 0 ? r : pass(root_fd, layer_path, false, lim, counts, err);
}

int stk_image_mountpoints(int root_fd)
{
    /* where the runtime mounts /proc, /dev, ... and stockade binds
     * /workspace, the home and stockade-init: made here, once, so the
     * runtime never writes into the shared root */
    static const char *const dirs[] = {"proc", "sys",       "dev",          "tmp",
                                       "etc",  "workspace", "home/sandbox", ".stockade"};
    for (size_t i = 0; i < STK_ARRAY_SIZE(dirs); i++) {
        int fd = open_dir(root_fd, dirs[i], true);
        if (fd >= 0)
            close(fd);
        else if (fd != -ELOOP && fd != -ENOTDIR && fd != -EXDEV)
            return fd; /* a symlink in the image's way is the image's choice */
    }
    return 0;
}
