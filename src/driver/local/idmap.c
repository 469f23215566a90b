/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Host id ranges: every sandbox its own uid/gid range through a user
 * namespace (as `podman --userns=auto` does), so per-user kernel limits
 * (inotify instances, RLIMIT_NPROC, message queues), file ownership and
 * signals never cross sandboxes.
 *
 * The ranges are host-wide, shared by every state and run directory:
 * slot k is host ids IDMAP_FIRST + k * IDMAP_SIZE .. + IDMAP_SIZE - 1,
 * taken by a file IDMAP_DIR/<k> (O_EXCL, under the flock IDMAP_DIR/lock)
 * that names its owner, the sandbox's directory. A slot is held while that
 * directory exists: released by the run's last undo or by rm, and a slot
 * whose directory is gone (a crashed run that gc cleaned up, a state
 * directory removed) is free for the next taker. The owner's directory
 * records its slot (<dir>/idmap), so a long-lived sandbox keeps its range
 * across stop and start, and gets it back after a reboot emptied /run when
 * nobody took it meanwhile; otherwise its kept home is shifted to the new
 * range (idmap_shift).
 *
 * Inside, ids 0..IDMAP_SIZE-1 map onto the range: the sandbox user
 * (STK_OCI_UID) is host id base + STK_OCI_UID, the sandbox's root is base.
 * Host files (the read-only /usr, the shared /etc) stay readable: their
 * owner shows as the overflow id inside and their "other" bits apply.
 */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>

#define IDMAP_OWNER_FILE "idmap"
#define NSFS_MAGIC       0x6e736673

static int lock_take(int wait_ms, struct stk_error **err)
{
    if (mkdir_p(IDMAP_DIR, 0700) < 0)
        return stk_error_errno(err, errno, "creating " IDMAP_DIR);
    int fd = open(IDMAP_DIR "/lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return stk_error_errno(err, errno, "opening " IDMAP_DIR "/lock");
    int holder = 0, r = stk_flock_wait(fd, LOCK_EX, wait_ms, &holder);
    if (r == -ETIMEDOUT) {
        close(fd);
        return stk_error_make(err, ETIMEDOUT,
                              "waited %d s for " IDMAP_DIR "/lock (the host id ranges), held by "
                              "process %d",
                              wait_ms / 1000, holder);
    }
    if (r < 0) {
        close(fd);
        return stk_error_errno(err, -r, "locking " IDMAP_DIR "/lock");
    }
    return fd;
}

/* A slot file's name: its index, decimal, nothing else. */
static int slot_index(const char *name)
{
    if (!name[0] || strlen(name) > 5)
        return -1;
    int k = 0;
    for (const char *c = name; *c; c++) {
        if (*c < '0' || *c > '9')
            return -1;
        k = k * 10 + (*c - '0');
    }
    return k < IDMAP_SLOTS ? k : -1;
}

static ssize_t slot_owner(int k, char *buf, size_t n)
{
    char path[64];
    fmt_into(path, sizeof(path), IDMAP_DIR "/%d", k);
    return file_read(path, buf, n);
}

static void ns_path(int k, char *buf, size_t n)
{
    fmt_into(buf, n, IDMAP_DIR "/ns-%d", k);
}

/* The slot's file and its user namespace (callers hold the lock). */
static int slot_free(int k)
{
    char path[64];
    ns_path(k, path, sizeof(path));
    (void)umount2(path, MNT_DETACH);
    (void)unlink(path);
    fmt_into(path, sizeof(path), IDMAP_DIR "/%d", k);
    return unlink(path) < 0 ? -errno : 0;
}

/* The slot the directory's record names, or -1. */
static int recorded_slot(const char *owner)
{
    char path[PATH_MAX + 16], buf[32];
    if (stk_path_fmt(path, sizeof(path), "%s/" IDMAP_OWNER_FILE, owner) < 0 ||
        file_read(path, buf, sizeof(buf)) <= 0)
        return -1;
    char *end;
    unsigned long base = strtoul(buf, &end, 10);
    if (end == buf || base < IDMAP_FIRST || (base - IDMAP_FIRST) % IDMAP_SIZE)
        return -1;
    unsigned long k = (base - IDMAP_FIRST) / IDMAP_SIZE;
    return k < IDMAP_SLOTS ? (int)k : -1;
}

int idmap_acquire(const char *dir, struct idmap *ret, struct stk_error **err)
{
    char owner[PATH_MAX];
    if (!realpath(dir, owner))
        return stk_error_errno(err, errno, "%s", dir);
    _cleanup_close_ int lock = lock_take(STK_HOST_LOCK_WAIT_MS, err);
    if (lock < 0)
        return lock;

    /* which slots are taken; stale ones (their directory is gone) freed */
    static bool taken[IDMAP_SLOTS];
    memset(taken, 0, sizeof(taken));
    int mine = -1;
    DIR *d = opendir(IDMAP_DIR);
    if (!d)
        return stk_error_errno(err, errno, "reading " IDMAP_DIR);
    for (struct dirent *e; (e = readdir(d));) {
        int k = slot_index(e->d_name);
        if (k < 0)
            continue;
        char who[PATH_MAX];
        ssize_t n = slot_owner(k, who, sizeof(who));
        if (n > 0 && !strcmp(who, owner)) {
            mine = k;
        } else if (n > 0 && who[0] == '/' && access(who, F_OK) < 0 && errno == ENOENT) {
            (void)slot_free(k);
            continue;
        }
        /* unreadable or empty: a taker mid-write, or damage; held */
        taken[k] = true;
    }
    closedir(d);

    if (mine < 0) {
        int want = recorded_slot(owner);
        if (want >= 0 && !taken[want])
            mine = want;
        for (int k = 0; mine < 0 && k < IDMAP_SLOTS; k++)
            if (!taken[k])
                mine = k;
        if (mine < 0)
            return stk_error_make(err, EAGAIN,
                                  "every host id range is taken (%d sandboxes on this host)",
                                  IDMAP_SLOTS);
        char path[64];
        fmt_into(path, sizeof(path), IDMAP_DIR "/%d", mine);
        _cleanup_close_ int fd =
            open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
            return stk_error_errno(err, errno, "creating %s", path);
        size_t len = strlen(owner);
        if (write(fd, owner, len) != (ssize_t)len) {
            int e = errno ? errno : EIO;
            (void)unlink(path);
            return stk_error_errno(err, e, "writing %s", path);
        }
    }
    *ret = (struct idmap){.base = IDMAP_FIRST + (uint32_t)mine * IDMAP_SIZE, .size = IDMAP_SIZE};
    char rec[PATH_MAX + 16], num[32];
    int r = stk_path_make(rec, sizeof(rec), err, "%s/" IDMAP_OWNER_FILE, owner);
    if (r < 0)
        return r;
    fmt_into(num, sizeof(num), "%u\n", ret->base);
    if ((r = file_write(rec, num, strlen(num))) < 0)
        return stk_error_errno(err, -r, "writing %s", rec);
    return 0;
}

int idmap_release(const char *dir)
{
    char owner[PATH_MAX];
    if (!realpath(dir, owner))
        return -errno;
    int k = recorded_slot(owner);
    if (k < 0)
        return 0;
    _cleanup_close_ int lock = lock_take(STK_HOST_LOCK_TEARDOWN_MS, NULL);
    if (lock < 0)
        return lock;
    char who[PATH_MAX];
    /* only our own: after a reboot the slot may be another's */
    if (slot_owner(k, who, sizeof(who)) > 0 && !strcmp(who, owner))
        return slot_free(k);
    return 0;
}

/* ---- the user namespace itself --------------------------------------------------- */

static bool is_nsfs(const char *path)
{
    struct statfs f;
    return statfs(path, &f) == 0 && f.f_type == NSFS_MAGIC;
}

static int write_map(pid_t pid, const char *which, const struct idmap *m)
{
    char path[64], line[64];
    fmt_into(path, sizeof(path), "/proc/%d/%s", (int)pid, which);
    fmt_into(line, sizeof(line), "0 %u %u\n", m->base, m->size);
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    return write(fd, line, strlen(line)) == (ssize_t)strlen(line) ? 0 : -errno;
}

/* The user namespace is made by a child that has become host id m->base
 * first: the namespace's owner is then that id, not root, and the kernel
 * charges every per-user count of the sandbox (inotify instances and
 * watches, user namespaces, message queues) at the host's level to the
 * sandbox's own id instead of to root, whom a runtime-made namespace
 * would have as owner: so one sandbox exhausting a per-user limit leaves
 * other sandboxes and the host untouched. Root maps the ids, then keeps the
 * namespace by binding its nsfs file at IDMAP_DIR/ns-<slot>. */
int idmap_userns(const struct idmap *m, char *path, size_t n, struct stk_error **err)
{
    int k = (int)((m->base - IDMAP_FIRST) / IDMAP_SIZE);
    ns_path(k, path, n);
    _cleanup_close_ int lock = lock_take(STK_HOST_LOCK_WAIT_MS, err);
    if (lock < 0)
        return lock;
    if (is_nsfs(path))
        return 0;
    _cleanup_close_ int f = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (f < 0)
        return stk_error_errno(err, errno, "creating %s", path);
    int go[2], done[2];
    if (pipe2(go, O_CLOEXEC) < 0)
        return stk_error_errno(err, errno, "pipe");
    if (pipe2(done, O_CLOEXEC) < 0) {
        int e = errno;
        close(go[0]);
        close(go[1]);
        return stk_error_errno(err, e, "pipe");
    }
    pid_t pid = fork();
    if (pid == 0) {
        char c = 0;
        close(go[0]);
        close(done[1]);
        gid_t g = m->base;
        uid_t u = m->base;
        if (setgroups(0, NULL) < 0 || setresgid(g, g, g) < 0 || setresuid(u, u, u) < 0 ||
            unshare(CLONE_NEWUSER) < 0)
            _exit(1);
        if (write(go[1], &c, 1) != 1)
            _exit(1);
        /* held until root has mapped and bound the namespace */
        while (read(done[0], &c, 1) < 0 && errno == EINTR)
            ;
        _exit(0);
    }
    close(go[1]);
    close(done[0]);
    int r = 0;
    char c;
    if (pid < 0)
        r = stk_error_errno(err, errno, "fork");
    else if (read(go[0], &c, 1) != 1)
        r = stk_error_make(err, EPERM, "making the sandbox's user namespace as host id %u failed",
                           m->base);
    else if ((r = write_map(pid, "uid_map", m)) < 0 || (r = write_map(pid, "gid_map", m)) < 0)
        r = stk_error_errno(err, -r, "writing the sandbox's id map");
    else {
        char ns[64];
        fmt_into(ns, sizeof(ns), "/proc/%d/ns/user", (int)pid);
        if (mount(ns, path, NULL, MS_BIND, NULL) < 0)
            r = stk_error_errno(err, errno, "binding the user namespace at %s", path);
    }
    close(go[0]);
    close(done[1]); /* the child goes */
    if (pid > 0)
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
    if (r < 0)
        (void)unlink(path);
    return r;
}

/* ---- a caller's directory, as the sandbox's ids see it ----------------------------- */

int idmap_bind(const char *src, const char *dst, const char *userns, struct stk_error **err)
{
    /* an idmapped clone of src: on-disk id k is the sandbox's id k */
    _cleanup_close_ int ns = open(userns, O_RDONLY | O_CLOEXEC);
    if (ns < 0)
        return stk_error_errno(err, errno, "opening %s", userns);
    _cleanup_close_ int tree = open_tree(AT_FDCWD, src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    if (tree < 0)
        return stk_error_errno(err, errno, "cloning %s", src);
    struct mount_attr a = {.attr_set = MOUNT_ATTR_IDMAP, .userns_fd = (uint64_t)ns};
    if (mount_setattr(tree, "", AT_EMPTY_PATH, &a, sizeof(a)) < 0) {
        /* a filesystem without idmapped mounts: a plain bind, where the
         * sandbox user meets the directory's "other" bits (narrower) */
        if (errno != EINVAL && errno != EOPNOTSUPP && errno != EPERM)
            return stk_error_errno(err, errno, "idmapping %s", src);
    }
    if (move_mount(tree, "", AT_FDCWD, dst, MOVE_MOUNT_F_EMPTY_PATH) < 0)
        return stk_error_errno(err, errno, "mounting %s at %s", src, dst);
    return 0;
}

/* ---- moving a kept filesystem to a new range ----------------------------------- */

static uint32_t shift_base;

static uint32_t shifted(uint32_t id)
{
    uint32_t in; /* the id inside the sandbox */
    if (id >= IDMAP_FIRST && id - IDMAP_FIRST < (uint32_t)IDMAP_SLOTS * IDMAP_SIZE)
        in = (id - IDMAP_FIRST) % IDMAP_SIZE;
    else if (id < IDMAP_SIZE) /* made before sandboxes had ranges */
        in = id;
    else
        return id;
    return shift_base + in;
}

static int shift_one(const char *path, const struct stat *st, int type, struct FTW *f)
{
    (void)type;
    (void)f;
    uid_t u = shifted(st->st_uid);
    gid_t g = shifted(st->st_gid);
    if ((u != st->st_uid || g != st->st_gid) && lchown(path, u, g) < 0)
        return -1;
    return 0;
}

int idmap_shift(const char *root, const struct idmap *m)
{
    struct stat st;
    if (lstat(root, &st) < 0)
        return -errno;
    if (st.st_uid == m->base + STK_OCI_UID && st.st_gid == m->base + STK_OCI_GID)
        return 0;
    shift_base = m->base;
    /* the volume is mounted privately and the sandbox is not running */
    if (nftw(root, shift_one, 32, FTW_PHYS | FTW_MOUNT) < 0)
        return errno ? -errno : -EIO;
    return 1;
}

int stk_local_idmap_of(const struct stk_local_paths *p, const char *id, uint32_t *ret_base,
                       uint32_t *ret_size)
{
    char dir[PATH_MAX], owner[PATH_MAX], who[PATH_MAX];
    if (stk_path_fmt(dir, sizeof(dir), "%s/sandboxes/%s", p->state_dir, id) < 0 ||
        !realpath(dir, owner))
        return -ENOENT;
    int k = recorded_slot(owner);
    if (k < 0)
        return -ENOENT;
    _cleanup_close_ int lock = lock_take(STK_HOST_LOCK_TEARDOWN_MS, NULL);
    if (lock < 0)
        return lock;
    if (slot_owner(k, who, sizeof(who)) <= 0 || strcmp(who, owner))
        return -ENOENT;
    *ret_base = IDMAP_FIRST + (uint32_t)k * IDMAP_SIZE;
    *ret_size = IDMAP_SIZE;
    return 0;
}
