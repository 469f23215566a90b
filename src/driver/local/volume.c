/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Volumes: a sandbox's /workspace and home are each a filesystem of their
 * own, so their size holds at the moment of the write (ENOSPC) and nothing
 * the sandbox writes lands on the host's filesystem or its reserved blocks.
 *
 * A volume is an ext4 image file in the sandbox's state directory, its
 * blocks allocated up front (fallocate), on a loop device, mounted at a
 * directory beside it. The loop device is configured with
 * LO_FLAGS_AUTOCLEAR: the kernel detaches it when the filesystem lets go
 * of it (the unmount) or when the process that configured it dies before
 * mounting, so a loop device never outlives its mount. Unmounting is
 * therefore the whole cleanup, and gc needs nothing but the mount points.
 *
 * Why an image and not a quota: this host's root filesystem is ext4
 * without the quota feature, and a quota would not keep uid 65534 out of
 * the reserved blocks it may use here (resuid=65534). Why not a tmpfs: a
 * persistent home must survive stop, and a tmpfs /workspace would be
 * charged to the memory limit.
 *
 * mkfs.ext4 is exec'd with fixed arguments: libext2fs has no call that
 * makes a complete ext4 filesystem (ext2fs_initialize leaves the root
 * directory, lost+found, the journal and the feature set to the caller,
 * which is most of mke2fs), and fallocate and mkfs of a 1 GiB image take
 * about 55 ms here (10 ms for 50 MiB). So mkfs.ext4 runs once per size and
 * kind, on a sparse template in the state directory, and a new volume is
 * the template's few written blocks copied into its allocated image.
 */
#include "internal.h"
#include "render/render.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>

#define VOL_FSTYPE      "ext4"
#define VOL_LOOP_TRIES  32 /* another process may take the free device first */
#define VOL_UMOUNT_WAIT 50 /* ms of retries while the last user lets go */
/* What a volume never takes of the host's filesystem: 5% of it, at least
 * 2 GiB. Volumes are allocated whole, so a thousand sandboxes at the
 * default 1 GiB would otherwise fill the disk under everything else the
 * host runs. */
#define VOL_RESERVE_PERCENT 5
#define VOL_RESERVE_MIN     (2LL << 30)
/* Templates kept per state directory (one per size and kind asked for). */
#define VOL_TEMPLATES_MAX 16
/* In a template's name: changed with mkfs()'s arguments, so a template made
 * by other arguments is never used. */
#define VOL_TEMPLATE_FORMAT "f1"

static const char *const mkfs_candidates[] = {"/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"};

int vol_mkfs_path(char *ret, size_t n)
{
    for (size_t i = 0; i < STK_ARRAY_SIZE(mkfs_candidates); i++)
        if (access(mkfs_candidates[i], X_OK) == 0)
            return stk_path_fmt(ret, n, "%s", mkfs_candidates[i]);
    return -ENOENT;
}

/* mkfs.ext4 on the image: no reserved blocks (the sandbox gets the whole
 * size), the root directory owned by the sandbox user, no discard (the
 * blocks must stay allocated). A scratch volume needs no journal. */
static int mkfs(const char *image, bool journal, uid_t uid, gid_t gid, struct stk_error **err)
{
    char bin[64];
    if (vol_mkfs_path(bin, sizeof(bin)) < 0)
        return stk_error_make(err, ENOENT,
                              "mkfs.ext4 not found (e2fsprogs): the sandbox's storage limit is "
                              "enforced with a filesystem image");
    char ext[96];
    (void)fmt_into(ext, sizeof(ext), "root_owner=%u:%u,nodiscard", (unsigned)uid, (unsigned)gid);
    const char *argv[] = {bin, "-q", "-F",           "-m", "0",   "-E",
                          ext, "-O", "^has_journal", "--", image, NULL};
    if (journal) {
        /* drop "-O ^has_journal" */
        argv[7] = "--";
        argv[8] = image;
        argv[9] = NULL;
    }
    /* a clean environment: no MKE2FS_CONFIG or the like from the caller */
    static const char path_env[] = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
    /* stdout /dev/null; its complaints go to stockade's stderr (the
     * runtime log under a monitor) */
    const char *const envp[] = {path_env, NULL};
    struct stk_spawn sp = {.path = bin, .argv = argv, .envp = envp};
    int status = 0, e = stk_spawn_wait(&sp, &status);
    if (e < 0)
        return stk_error_errno(err, -e, "running %s", bin);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return stk_error_make(err, EIO, "mkfs.ext4 %s failed (status %d)", image, status);
    return 0;
}

/* The blocks of src that hold data (SEEK_DATA/SEEK_HOLE) written to the same
 * offsets of dst; src's holes are zeros and dst's blocks, allocated and not
 * yet written, read as zeros too, so dst ends up holding what src holds.
 * Written, not copy_file_range(2)'d: on a filesystem with reflinks (XFS,
 * btrfs) that would share the template's blocks instead of filling the
 * image's own, and a later write of ext4's metadata would then need a block
 * the host may no longer have. */
static int copy_data(int src, int dst, off_t size)
{
    char buf[64 * 1024];
    off_t pos = 0;
    while (pos < size) {
        off_t data = lseek(src, pos, SEEK_DATA);
        if (data < 0)
            return errno == ENXIO ? 0 : -errno; /* ENXIO: no data past pos */
        off_t hole = lseek(src, data, SEEK_HOLE);
        if (hole < 0)
            return -errno;
        if (hole > size)
            hole = size;
        for (off_t at = data; at < hole;) {
            size_t want = (size_t)(hole - at) < sizeof(buf) ? (size_t)(hole - at) : sizeof(buf);
            ssize_t k = pread(src, buf, want, at);
            if (k < 0 && errno == EINTR)
                continue;
            if (k <= 0)
                return k < 0 ? -errno : -EIO; /* src shrank under us */
            for (ssize_t done = 0; done < k;) {
                ssize_t w = pwrite(dst, buf + done, (size_t)(k - done), at + done);
                if (w < 0 && errno == EINTR)
                    continue;
                if (w <= 0)
                    return w < 0 ? -errno : -EIO;
                done += w;
            }
            at += k;
        }
        pos = hole;
    }
    return 0;
}

/* The template of a fresh scratch filesystem (no journal) of this size:
 * mkfs.ext4 run once (root owned by root: the sandbox's owner is set after
 * the mount), kept sparse in the state directory's volume-templates/, made under a temporary
 * name and renamed once whole. Copying its few allocated blocks costs a
 * fraction of a millisecond where exec'ing mkfs.ext4 costs ~11 ms here, for
 * every volume of every create and run. Returns an fd open on it, or < 0
 * (then the caller runs mkfs on the image itself). Only a regular file owned
 * by root, not writable by others, of exactly this size is used. */
static int template_path(const struct vol *v, int64_t size, char *ret, size_t n)
{
    return stk_path_fmt(ret, n, "%s/ext4-" VOL_TEMPLATE_FORMAT "-%lld.img", v->templates,
                        (long long)size);
}

static int template_open(const struct vol *v, int64_t size)
{
    if (!v->templates)
        return -ENOENT;
    char path[760];
    if (template_path(v, size, path, sizeof(path)) < 0)
        return -ENAMETOOLONG;
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd >= 0) {
            struct stat st;
            if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == 0 &&
                !(st.st_mode & 022) && st.st_size == size)
                return fd;
            close(fd);
            return -EINVAL;
        }
        if (errno != ENOENT || attempt)
            return -errno;
        /* bounded: a host asked for many sizes keeps the first few */
        if (mkdir(v->templates, 0700) < 0 && errno != EEXIST)
            return -errno;
        /* root's directory alone (no symlink, no one else may write) */
        struct stat dst;
        if (lstat(v->templates, &dst) < 0)
            return -errno;
        if (!S_ISDIR(dst.st_mode) || dst.st_uid != 0 || (dst.st_mode & 022))
            return -EPERM;
        DIR *d = opendir(v->templates);
        if (!d)
            return -errno;
        size_t n = 0;
        for (struct dirent *e; (e = readdir(d));) {
            const char *dot = strrchr(e->d_name, '.');
            if (e->d_name[0] == '.' || !dot)
                continue;
            /* a maker that died half way (ext4-<size>.img.<pid>.new) */
            int pid = 0;
            if (!strcmp(dot, ".new") && sscanf(e->d_name, "%*[^.].img.%d.new", &pid) == 1 &&
                pid > 0 && kill(pid, 0) < 0 && errno == ESRCH)
                (void)unlinkat(dirfd(d), e->d_name, 0);
            else
                n += !strcmp(dot, ".img");
        }
        closedir(d);
        if (n >= VOL_TEMPLATES_MAX)
            return -ENOSPC;
        char tmp[800];
        if (stk_path_fmt(tmp, sizeof(tmp), "%s.%d.new", path, (int)getpid()) < 0)
            return -ENAMETOOLONG;
        (void)unlink(tmp);
        int t = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (t < 0)
            return -errno;
        int r = ftruncate(t, (off_t)size) < 0 ? -errno : 0;
        struct stk_error *e = NULL;
        if (r >= 0 && mkfs(tmp, false, 0, 0, &e) < 0) {
            stk_error_free(e);
            r = -EIO;
        }
        /* on disk before it has its name: every later volume is made of it */
        if (r >= 0 && fsync(t) < 0)
            r = -errno;
        close(t);
        /* concurrent makers each rename a whole template: either one is fine */
        if (r >= 0 && rename(tmp, path) < 0)
            r = -errno;
        if (r < 0) {
            (void)unlink(tmp);
            return r;
        }
    }
    return -ENOENT;
}

/* Made under a temporary name and renamed once whole: a crash half way
 * never leaves a kept image that does not mount. *ret_templated: made from
 * the template, whose root is root's (vol_mount() hands it over). */
static int image_create(const struct vol *v, const char *image, int64_t size, bool journal,
                        bool *ret_templated, struct stk_error **err)
{
    char tmp[760];
    *ret_templated = false;
    if (stk_path_fmt(tmp, sizeof(tmp), "%s.new", image) < 0)
        return stk_error_make(err, ENAMETOOLONG, "%s: path too long", image);
    (void)unlink(tmp);
    _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return stk_error_errno(err, errno, "creating %s", tmp);
    /* Every block taken now, by stockade: the sandbox's writes then only
     * fill space it was given, never the host's free or reserved blocks
     * (the loop device writes as the kernel, which may use them). A host
     * without the space refuses the sandbox here. */
    int r = 0;
    struct statvfs fs;
    if (fstatvfs(fd, &fs) == 0) {
        long long total = (long long)fs.f_blocks * (long long)fs.f_frsize;
        long long avail = (long long)fs.f_bavail * (long long)fs.f_frsize;
        long long reserve = total / 100 * VOL_RESERVE_PERCENT;
        if (reserve < VOL_RESERVE_MIN)
            reserve = VOL_RESERVE_MIN;
        if (avail - size < reserve)
            r = stk_error_make(err, ENOSPC,
                               "the sandbox's %lld MiB of storage (%s) would leave %lld MiB "
                               "free on the host's filesystem, under the %lld MiB stockade "
                               "keeps for the host (%d%%, at least %lld MiB): remove sandboxes "
                               "or ask for less spec.resources.storage",
                               (long long)(size >> 20), image, (avail - size) >> 20, reserve >> 20,
                               VOL_RESERVE_PERCENT, VOL_RESERVE_MIN >> 20);
    }
    if (r >= 0 && fallocate(fd, 0, 0, (off_t)size) < 0)
        r = errno == ENOSPC ? stk_error_make(err, ENOSPC,
                                             "the host has not got %lld MiB free for %s (the "
                                             "sandbox's storage is taken when it starts)",
                                             (long long)(size >> 20), image)
                            : stk_error_errno(err, errno, "allocating %s", tmp);
    if (r >= 0) {
        /* A kept image (a persistent home) is made once and named only when
         * whole with its owner inside: by mkfs, as before templates (a
         * template's root is root's until vol_mount() hands it over, and a
         * crash between the two would keep it so). */
        _cleanup_close_ int t = v->keep ? -1 : template_open(v, size);
        if (t >= 0 && copy_data(t, fd, (off_t)size) == 0)
            *ret_templated = true;
        else
            r = mkfs(tmp, journal, v->uid, v->gid, err);
    }
    if (r >= 0 && rename(tmp, image) < 0)
        r = stk_error_errno(err, errno, "renaming %s", tmp);
    if (r < 0)
        (void)unlink(tmp);
    return r;
}

/* A free loop device bound to the image, autoclearing. Returns its fd. */
static int loop_attach(const char *image, char *ret_dev, size_t n, struct stk_error **err)
{
    _cleanup_close_ int file = open(image, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (file < 0)
        return stk_error_errno(err, errno, "opening %s", image);
    _cleanup_close_ int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (ctl < 0)
        return stk_error_errno(err, errno, "opening /dev/loop-control");
    for (int i = 0; i < VOL_LOOP_TRIES; i++) {
        int nr = ioctl(ctl, LOOP_CTL_GET_FREE);
        if (nr < 0)
            return stk_error_errno(err, errno, "finding a free loop device");
        if (stk_path_fmt(ret_dev, n, "/dev/loop%d", nr) < 0)
            return stk_error_make(err, ENAMETOOLONG, "loop device name");
        int fd = open(ret_dev, O_RDWR | O_CLOEXEC);
        if (fd < 0)
            return stk_error_errno(err, errno, "opening %s", ret_dev);
        struct loop_config cfg = {.fd = (__u32)file};
        cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR;
        /* names the image in losetup's listing */
        (void)fmt_into((char *)cfg.info.lo_file_name, sizeof(cfg.info.lo_file_name), "%s", image);
        if (ioctl(fd, LOOP_CONFIGURE, &cfg) == 0)
            return fd;
        int e = errno;
        close(fd);
        if (e != EBUSY)
            return stk_error_errno(err, e, "configuring %s for %s", ret_dev, image);
    }
    return stk_error_make(err, EBUSY, "no free loop device for %s", image);
}

int vol_unmount(const char *mnt)
{
    for (int i = 0; i < VOL_UMOUNT_WAIT; i++) {
        if (umount2(mnt, UMOUNT_NOFOLLOW) == 0)
            continue; /* a mount stacked below (a crash's leftover) goes too */
        if (errno == EINVAL || errno == ENOENT)
            return 0; /* not (or no longer) a mount point */
        if (errno != EBUSY)
            return -errno;
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    /* still busy: detach it from the tree; the kernel lets go of the
     * filesystem (and autoclears the loop device) once its last user does */
    if (umount2(mnt, MNT_DETACH | UMOUNT_NOFOLLOW) < 0 && errno != EINVAL && errno != ENOENT)
        return -errno;
    return 0;
}

int vol_mount(const struct vol *v, struct stk_error **err)
{
    int r;
    if (mkdir(v->mnt, 0755) < 0 && errno != EEXIST)
        return stk_error_errno(err, errno, "creating %s", v->mnt);
    /* a crash may have left it mounted */
    if ((r = vol_unmount(v->mnt)) < 0)
        return stk_error_errno(err, -r, "unmounting %s", v->mnt);
    struct stat st;
    bool fresh = !v->keep || stat(v->image, &st) < 0, templated = false;
    if (fresh && (r = image_create(v, v->image, v->size, v->keep, &templated, err)) < 0)
        return r;
    char dev[64];
    _cleanup_close_ int loop = loop_attach(v->image, dev, sizeof(dev), err);
    if (loop < 0) {
        if (fresh)
            (void)unlink(v->image);
        return loop;
    }
    if (mount(dev, v->mnt, VOL_FSTYPE, MS_NOSUID | MS_NODEV, "") < 0) {
        int e = errno;
        if (fresh)
            (void)unlink(v->image);
        if (templated) {
            /* a template that does not mount (a disk error, a crash while
             * it was made) is dropped, and this volume made by mkfs */
            char path[760];
            if (template_path(v, v->size, path, sizeof(path)) >= 0)
                (void)unlink(path);
            close(TAKE_FD(loop)); /* clears the loop device */
            struct vol plain = *v;
            plain.templates = NULL;
            return vol_mount(&plain, err);
        }
        return stk_error_errno(err, e, "mounting %s (%s) at %s", v->image, dev, v->mnt);
        /* closing the loop device's fd clears it */
    }
    /* no propagation to or from other mount namespaces: a copy made there
     * would keep the filesystem (and its loop device) alive past teardown */
    (void)mount(NULL, v->mnt, NULL, MS_PRIVATE, NULL);
    if (fresh) {
        /* the sandbox sees its volume's root and nothing of ext4's own */
        char lf[700];
        if (stk_path_fmt(lf, sizeof(lf), "%s/lost+found", v->mnt) >= 0)
            (void)rmdir(lf);
    }
    /* a template's root is root's: the sandbox user's, as mkfs's root_owner
     * would have made it, before anything runs in the sandbox */
    if (templated && chown(v->mnt, v->uid, v->gid) < 0) {
        r = stk_error_errno(err, errno, "handing %s to the sandbox user", v->mnt);
        (void)vol_unmount(v->mnt);
        (void)unlink(v->image);
        return r;
    }
    return 0;
}
