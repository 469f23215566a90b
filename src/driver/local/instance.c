/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Long-lived sandboxes, the host-side pieces that need no supervisor: where
 * the supervisor's socket lives, the read-only directory that carries
 * stockade-init into every sandbox, and teardown from an id alone (the
 * process that set a sandbox up may be long gone: stop, rm and crash
 * recovery all start from the id).
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

/* The binaries every long-lived sandbox gets at /.stockade. */
static const char *const libexec_files[] = {"stockade-init", "stockade-probe"};

#define LIBEXEC_MAX_BYTES (64 << 20) /* per binary */

int stk_local_socket_path(const struct stk_local_paths *p, const char *id, char *buf, size_t n,
                          struct stk_error **err)
{
    size_t max = sizeof(((struct sockaddr_un *)0)->sun_path);
    int len = snprintf(buf, n, "%s/init/%s.sock", p->run_dir, id);
    if (len < 0 || (size_t)len >= n || (size_t)len >= max)
        return stk_error_make(err, ENAMETOOLONG,
                              "the supervisor socket path %s/init/%s.sock is longer than a Unix "
                              "socket path may be (%zu bytes); use a shorter STOCKADE_RUN_DIR",
                              p->run_dir, id, max - 1);
    return 0;
}

/* Where the binaries are: $STOCKADE_LIBEXEC_DIR, else the directory of the
 * running executable (the build tree, or the install prefix's bin). */
int stk_local_libexec_source(char *ret, size_t n, struct stk_error **err)
{
    const char *env = getenv("STOCKADE_LIBEXEC_DIR");
    if (env && *env)
        return stk_path_make(ret, n, err, "%s", env) < 0 ? -ENAMETOOLONG : 0;
    char self[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (len <= 0)
        return stk_error_errno(err, errno, "reading /proc/self/exe");
    self[len] = '\0';
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = '\0';
    return stk_path_make(ret, n, err, "%s", self) < 0 ? -ENAMETOOLONG : 0;
}

static uint64_t mix(uint64_t h, uint64_t v)
{
    for (int i = 0; i < 8; i++, v >>= 8)
        h = (h ^ (v & 0xff)) * UINT64_C(0x100000001b3);
    return h;
}

static int copy_file(const char *from, const char *to, struct stk_error **err)
{
    _cleanup_close_ int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return stk_error_errno(err, errno, "opening %s", from);
    _cleanup_close_ int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0555);
    if (out < 0)
        return stk_error_errno(err, errno, "creating %s", to);
    char buf[65536];
    size_t total = 0;
    for (;;) {
        ssize_t r = read(in, buf, sizeof(buf));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return stk_error_errno(err, errno, "reading %s", from);
        if (r == 0)
            break;
        if ((total += (size_t)r) > LIBEXEC_MAX_BYTES)
            return stk_error_make(err, EFBIG, "%s is larger than %d MiB", from,
                                  LIBEXEC_MAX_BYTES >> 20);
        for (ssize_t off = 0; off < r;) {
            ssize_t w = write(out, buf + off, (size_t)(r - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0)
                return stk_error_errno(err, errno, "writing %s", to);
            off += w;
        }
    }
    return 0;
}

int stk_local_libexec(const struct stk_local_paths *p, char *ret, size_t n, struct stk_error **err)
{
    char src[PATH_MAX], path[PATH_MAX + 64];
    int r = stk_local_libexec_source(src, sizeof(src), err);
    if (r < 0)
        return r;
    /* Named after what the binaries are (size, mtime, inode): a new build
     * gets a new copy, and a sandbox never sees a binary change under it. */
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (size_t i = 0; i < STK_ARRAY_SIZE(libexec_files); i++) {
        struct stat st;
        if ((r = stk_path_make(path, sizeof(path), err, "%s/%s", src, libexec_files[i])) < 0)
            return r;
        if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
            return stk_error_make(err, ENOENT,
                                  "%s not found (it is built next to stockade; set "
                                  "STOCKADE_LIBEXEC_DIR to the directory that holds it)",
                                  path);
        h = mix(mix(mix(h, (uint64_t)st.st_size), (uint64_t)st.st_mtim.tv_sec),
                (uint64_t)st.st_mtim.tv_nsec ^ (uint64_t)st.st_ino);
    }
    if ((r = stk_path_make(ret, n, err, "%s/libexec-%016llx", p->state_dir,
                           (unsigned long long)h)) < 0)
        return r;
    /* the mount point of a gVisor sandbox's socket directory
     * (STK_OCI_INIT_SOCK_DIR), empty in every other sandbox */
    static const char *const sock_dir = &STK_OCI_INIT_SOCK_DIR[sizeof(STK_OCI_INIT_DIR)];
    if (access(ret, F_OK) == 0) {
        /* a copy made before the mount point was */
        if ((r = stk_path_make(path, sizeof(path), err, "%s/%s", ret, sock_dir)) < 0)
            return r;
        if (mkdir(path, 0755) < 0 && errno != EEXIST)
            return stk_error_errno(err, errno, "creating %s", path);
        return 0;
    }

    /* copied under a temporary name, then renamed: a concurrent create
     * sees the whole directory or none */
    char tmp[PATH_MAX + 32];
    char rnd[9];
    random_hex(rnd, 8);
    if ((r = stk_path_make(tmp, sizeof(tmp), err, "%s.%s", ret, rnd)) < 0)
        return r;
    if ((r = mkdir_p(p->state_dir, 0700)) < 0)
        return stk_error_errno(err, -r, "creating %s", p->state_dir);
    if (mkdir(tmp, 0755) < 0)
        return stk_error_errno(err, errno, "creating %s", tmp);
    for (size_t i = 0; i < STK_ARRAY_SIZE(libexec_files) && r >= 0; i++) {
        char to[PATH_MAX + 64];
        if ((r = stk_path_make(path, sizeof(path), err, "%s/%s", src, libexec_files[i])) >= 0 &&
            (r = stk_path_make(to, sizeof(to), err, "%s/%s", tmp, libexec_files[i])) >= 0)
            r = copy_file(path, to, err);
    }
    if (r >= 0 && (r = stk_path_make(path, sizeof(path), err, "%s/%s", tmp, sock_dir)) >= 0 &&
        mkdir(path, 0755) < 0)
        r = stk_error_errno(err, errno, "creating %s", path);
    if (r >= 0 && rename(tmp, ret) < 0 && errno != EEXIST && errno != ENOTEMPTY)
        r = stk_error_errno(err, errno, "renaming %s", tmp);
    if (access(tmp, F_OK) == 0)
        (void)rm_rf(tmp);
    return r < 0 ? r : 0;
}

int stk_local_volumes_release(const char *dir, bool purge)
{
    char path[760];
    int failed = 0;
    /* rootfs: a bound root (an image's or a rootfs DIR under a user
     * namespace) is the caller's data; it must be unbound before anything
     * under the sandbox directory is removed, or rm_rf would walk into it
     * (a bind stays on the same device) */
    static const char *const mounts[] = {"rootfs", "workspace", VOL_HOME_DIR};
    for (size_t i = 0; i < STK_ARRAY_SIZE(mounts); i++)
        if (stk_path_fmt(path, sizeof(path), "%s/%s", dir, mounts[i]) < 0 || vol_unmount(path) < 0)
            failed = -EBUSY;
    if (failed)
        return failed;
    /* a stop keeps a persistent home's image, rm (purge) does not */
    static const char *const scratch[] = {VOL_WORKSPACE_IMAGE, VOL_SCRATCH_IMAGE, VOL_HOME_IMAGE};
    for (size_t i = 0; i < STK_ARRAY_SIZE(scratch) - !purge; i++)
        if (stk_path_fmt(path, sizeof(path), "%s/%s", dir, scratch[i]) >= 0)
            (void)unlink(path);
    if (stk_path_fmt(path, sizeof(path), "%s/" VOL_HOME_DIR, dir) >= 0)
        (void)rmdir(path);
    return 0;
}

int stk_local_teardown(const struct stk_local_paths *p, const char *id, enum stk_oci_runtime rt,
                       const struct stk_net_config *net, bool purge, struct stk_error **err)
{
    char path[700], bin[256];
    struct stat st;
    int failed = 0;

    /* The container first: it may still hold processes. delete --force
     * kills what is left; then the runtime's state is gone. */
    if (stk_path_make(path, sizeof(path), err, "%s/%s", p->run_dir, rt_table[rt].name) < 0)
        return -ENAMETOOLONG;
    if (runtime_entries(path, id, false) && rt_find(rt_table[rt].name, bin, sizeof(bin), &st)) {
        const char *args[] = {"delete", "--force", id, NULL};
        (void)rt_exec_reaping(p, rt, bin, args, RT_IO_LOG(RT_NULL), NULL);
        (void)runtime_entries(path, id, true);
    }
    stk_fault_point("teardown-container-gone");
    if (cg_remove(id) < 0)
        failed = EBUSY;
    if (net) {
        struct stk_net *n = NULL;
        if (stk_net_open(net, id, &n, NULL) >= 0 && stk_net_down(n, NULL) < 0)
            failed = EBUSY;
    }
    char sock[256];
    if (stk_local_socket_path(p, id, sock, sizeof(sock), NULL) >= 0)
        (void)unlink(sock);
    /* under gVisor, the directory init bound it in (sandbox.c) */
    if (stk_path_fmt(path, sizeof(path), "%s/init/%s.d", p->run_dir, id) >= 0 &&
        lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
        (void)rm_rf(path);

    /* every removal below takes a path built whole */
    char sub[760];
    if (stk_path_fmt(path, sizeof(path), "%s/sandboxes/%s", p->state_dir, id) < 0) {
        failed = ENAMETOOLONG;
    } else if (stk_local_volumes_release(path, purge) < 0) {
        /* a volume stays mounted: nothing below it may be removed */
        failed = EBUSY;
    } else if (purge) {
        if (stat(path, &st) == 0 && rm_rf(path) < 0)
            failed = EBUSY;
    } else {
        /* what explain says goes on stop: the bundle and /workspace */
        if (stk_path_fmt(sub, sizeof(sub), "%s/bundle", path) >= 0)
            (void)rm_rf(sub);
        if (stk_path_fmt(sub, sizeof(sub), "%s/workspace", path) >= 0 && stat(sub, &st) == 0 &&
            rm_rf(sub) < 0)
            failed = EBUSY;
    }
    /* reap what the runtime left as our children, if any */
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
    if (failed)
        return stk_error_make(err, failed, "sandbox %s: some of its resources could not be removed",
                              id);
    return 0;
}

int stk_local_paths_check(const struct stk_local_paths *p, struct stk_error **err)
{
    char state[PATH_MAX], path[PATH_MAX + 16], owner[PATH_MAX];
    int r;
    if ((r = mkdir_p(p->state_dir, 0700)) < 0)
        return stk_error_errno(err, -r, "creating %s", p->state_dir);
    if ((r = mkdir_p(p->run_dir, 0700)) < 0)
        return stk_error_errno(err, -r, "creating %s", p->run_dir);
    if (!realpath(p->state_dir, state))
        return stk_error_errno(err, errno, "%s", p->state_dir);
    if ((r = stk_path_make(path, sizeof(path), err, "%s/state-dir", p->run_dir)) < 0)
        return r;
    ssize_t n = file_read(path, owner, sizeof(owner));
    if (n == -ENOENT) {
        /* first use: this run directory is the state directory's, for
         * good. The mark appears whole (written beside it, then linked to
         * its name, which fails if another process was first): a
         * concurrent first use never reads it half written. */
        char tmp[PATH_MAX + 48];
        if ((r = stk_path_make(tmp, sizeof(tmp), err, "%s/.state-dir.%d", p->run_dir,
                               (int)getpid())) < 0)
            return r;
        (void)unlink(tmp);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
            return stk_error_errno(err, errno, "creating %s", tmp);
        size_t len = strlen(state);
        state[len] = '\n';
        int w = stk_write_all(fd, state, len + 1);
        state[len] = '\0';
        close(fd);
        if (w < 0) {
            (void)unlink(tmp);
            return stk_error_errno(err, -w, "writing %s", tmp);
        }
        r = link(tmp, path) < 0 ? -errno : 0;
        (void)unlink(tmp);
        if (r == 0)
            return 0;
        if (r != -EEXIST)
            return stk_error_errno(err, -r, "creating %s", path);
        n = file_read(path, owner, sizeof(owner));
    }
    if (n > 0 && owner[n - 1] == '\n')
        owner[--n] = '\0';
    if (n <= 0 || strcmp(owner, state))
        return stk_error_make(err, EEXIST,
                              "run directory %s belongs to state directory %s, not %s: two "
                              "state directories must not share one (gc would take the other's "
                              "sandboxes for its own); set STOCKADE_RUN_DIR too",
                              p->run_dir, n > 0 ? owner : "(unreadable)", state);
    return 0;
}
