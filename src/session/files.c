/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Files in and out of a ready sandbox (`stockade cp`, the gateway's files
 * API): one regular file per transfer, at most STK_FILE_MAX bytes, moved by
 * the driver through the sandbox's own supervisor. Each transfer is one
 * audit record (direction, path, size; never the content).
 */
#include "session/private.h"

#include <errno.h>
#include <jansson.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* A read is held here, in a memfd, until its audit record is written. */
struct held {
    int fd;
    size_t len;
};

static int hold(void *ud, const void *data, size_t n)
{
    struct held *h = ud;
    if (h->len + n > STK_FILE_MAX)
        return -EFBIG;
    int r = stk_write_all(h->fd, data, n);
    if (r < 0)
        return r;
    h->len += n;
    return 0;
}

/* The held content to out_fd, from its start. */
static int release(const struct held *h, int out_fd)
{
    char buf[65536];
    for (off_t off = 0; (size_t)off < h->len;) {
        ssize_t n = pread(h->fd, buf, sizeof(buf), off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        int r = stk_write_all(out_fd, buf, (size_t)n);
        if (r < 0)
            return r;
        off += n;
    }
    return 0;
}

static int check_path(const char *id, const char *path, struct stk_error **err)
{
    if (!path || path[0] != '/')
        return stk_error_make(err, EINVAL, "sandbox %s: %s: a path inside a sandbox is absolute",
                              id, path ? path : "");
    return 0;
}

/* What the local backend mounts writable (src/render/oci.c): said when a
 * write meets the read-only root, so the refusal names the way out. */
static void writable_hint(struct stk_session *s, const struct session_sb *sb, const char *path,
                          struct stk_error **err)
{
    if (stk_session_backend(s) != STK_BACKEND_LOCAL)
        return;
    (void)stk_error_wrap(err,
                         "sandbox %s: %s is not writable: the boundary makes the root filesystem "
                         "read-only; writable: /workspace, /tmp, /dev/shm%s",
                         sb->rec.id, path, sb->d.b && sb->d.b->home ? ", " STK_HOME_PATH : "");
}

int stk_session_file_read(struct stk_session *s, const char *id, const char *path, int out_fd,
                          uint64_t *ret_size, struct stk_error **err)
{
    int r = check_path(id, path, err);
    if (r < 0)
        return r;
    struct session_sb sb;
    if ((r = session_load_ready(s, id, "cp", &sb, err)) < 0)
        return r;
    const struct stk_driver_ops *ops = s->drv->ops;
    _cleanup_close_ int mfd = memfd_create("stockade-cp", MFD_CLOEXEC);
    struct held data = {.fd = mfd};
    uint64_t size = 0;
    if (mfd < 0)
        r = stk_error_errno(err, errno, "cp: memfd");
    else if (!ops->file_read)
        r = stk_error_make(err, STK_DRV_E_NOTSUP,
                           "sandbox %s: copying files is not implemented on this backend yet",
                           sb.rec.id);
    else
        r = ops->file_read(s->drv->ctx, &sb.d, path, hold, &data, &size, err);
    r = session_drv_error(s, "cp", r, err);
    if (r == -STK_DRV_E_NOFILE)
        r = -ENOENT;
    /* the record comes before the content leaves */
    json_t *d = json_pack("{s:s,s:s}", "direction", "out", "path", path);
    if (r >= 0)
        json_object_set_new(d, "size", json_integer((json_int_t)size));
    else
        json_object_set_new(d, "error", json_string(err && *err ? (*err)->msg : strerror(-r)));
    int ra = session_audit(s, sb.rec.id, "file_read", NULL, d, r < 0 ? NULL : err);
    if (r >= 0 && ra < 0)
        r = ra;
    if (r >= 0 && (r = release(&data, out_fd)) < 0)
        r = stk_error_errno(err, -r, "cp: writing %s's content", path);
    if (r >= 0 && ret_size)
        *ret_size = size;
    session_sb_release(&sb);
    return r;
}

int stk_session_file_write(struct stk_session *s, const char *id, const char *path, unsigned mode,
                           int in_fd, uint64_t size, struct stk_error **err)
{
    int r = check_path(id, path, err);
    if (r < 0)
        return r;
    if (size > STK_FILE_MAX)
        return stk_error_make(err, EFBIG, "%s: %llu bytes is larger than the limit of 16 MiB", path,
                              (unsigned long long)size);
    if (mode > 0777)
        return stk_error_make(err, EINVAL, "%s: mode %o has bits other than 0777", path, mode);
    struct session_sb sb;
    if ((r = session_load_ready(s, id, "cp", &sb, err)) < 0)
        return r;
    const struct stk_driver_ops *ops = s->drv->ops;
    r = session_audit(s, sb.rec.id, "file_write", NULL,
                      json_pack("{s:s,s:s,s:I,s:i}", "direction", "in", "path", path, "size",
                                (json_int_t)size, "mode", (int)mode),
                      err);
    if (r >= 0)
        r = ops->file_write
                ? ops->file_write(s->drv->ctx, &sb.d, path, mode, size, in_fd, err)
                : stk_error_make(err, STK_DRV_E_NOTSUP,
                                 "sandbox %s: copying files is not implemented on this backend yet",
                                 sb.rec.id);
    /* gVisor answers a write under its read-only root with EACCES */
    static const char *const writable[] = {"/workspace/", "/tmp/", "/dev/shm/", STK_HOME_PATH "/"};
    bool in_writable = false;
    for (size_t i = 0; i < STK_ARRAY_SIZE(writable); i++)
        in_writable |= !strncmp(path, writable[i], strlen(writable[i]));
    if (r == -EROFS || (r == -EACCES && !in_writable))
        writable_hint(s, &sb, path, err);
    r = session_drv_error(s, "cp", r, err);
    if (r == -STK_DRV_E_NOFILE)
        r = -ENOENT;
    session_sb_release(&sb);
    return r;
}
