/* SPDX-License-Identifier: Apache-2.0 */
/* The local driver's volumes against the real kernel: size held at the
 * write, a kept image survives an unmount, and the loop device goes with
 * the mount. Needs root and loop devices; skips otherwise. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "driver/local/internal.h"

struct paths {
    char dir[64], image[128], mnt[128];
};

static bool usable(void)
{
    char mkfs[64];
    return geteuid() == 0 && access("/dev/loop-control", R_OK | W_OK) == 0 &&
           vol_mkfs_path(mkfs, sizeof(mkfs)) >= 0;
}

static void paths_make(struct paths *p)
{
    snprintf(p->dir, sizeof(p->dir), "/tmp/stk-volume-XXXXXX");
    assert_non_null(mkdtemp(p->dir));
    snprintf(p->image, sizeof(p->image), "%s/v.img", p->dir);
    snprintf(p->mnt, sizeof(p->mnt), "%s/v", p->dir);
}

static void paths_remove(struct paths *p)
{
    assert_int_equal(vol_unmount(p->mnt), 0);
    (void)unlink(p->image);
    (void)rmdir(p->mnt);
    assert_int_equal(rmdir(p->dir), 0);
}

/* How many loop devices are bound to the image. */
static int loops_on(const char *image)
{
    glob_t g;
    int n = 0;
    if (glob("/sys/block/loop*/loop/backing_file", 0, NULL, &g) != 0)
        return 0;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        char buf[256] = "";
        FILE *f = fopen(g.gl_pathv[i], "r");
        if (f && fgets(buf, sizeof(buf), f))
            buf[strcspn(buf, "\n")] = '\0';
        if (f)
            fclose(f);
        n += !strcmp(buf, image);
    }
    globfree(&g);
    return n;
}

/* Writes up to n bytes to path; returns the errno that stopped it, 0 when
 * all of it fit. */
static int fill(const char *path, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    static char block[1 << 16];
    int e = 0;
    for (size_t done = 0; done < n && !e;) {
        ssize_t w = write(fd, block, sizeof(block));
        if (w < 0)
            e = errno;
        else
            done += (size_t)w;
    }
    if (!e && fsync(fd) < 0)
        e = errno;
    close(fd);
    return e;
}

static void test_size_holds_and_loop_goes(void **state)
{
    (void)state;
    if (!usable())
        skip();
    struct paths p;
    paths_make(&p);
    /* the root is the given owner's (the sandbox user's host ids) */
    struct vol v = {.image = p.image,
                    .mnt = p.mnt,
                    .size = 8 << 20,
                    .uid = 1073807360 + 65534,
                    .gid = 1073807361};
    assert_int_equal(vol_mount(&v, NULL), 0);
    assert_int_equal(loops_on(p.image), 1);

    struct statvfs vfs;
    assert_int_equal(statvfs(p.mnt, &vfs), 0);
    assert_true((int64_t)(vfs.f_blocks * vfs.f_frsize) <= v.size);
    struct stat st;
    assert_int_equal(stat(p.mnt, &st), 0);
    assert_int_equal(st.st_uid, 1073807360 + 65534);
    assert_int_equal(st.st_gid, 1073807361);
    /* ext4's own lost+found is not the sandbox's */
    char lf[160];
    snprintf(lf, sizeof(lf), "%s/lost+found", p.mnt);
    assert_int_equal(access(lf, F_OK), -1);

    char big[160];
    snprintf(big, sizeof(big), "%s/big", p.mnt);
    assert_int_equal(fill(big, 32 << 20), ENOSPC);
    assert_int_equal(stat(big, &st), 0);
    assert_true(st.st_size <= v.size);
    /* the image is its size, every block taken up front (the sandbox's
     * writes never allocate on the host) */
    assert_int_equal(stat(p.image, &st), 0);
    assert_int_equal(st.st_size, v.size);
    assert_true((int64_t)st.st_blocks * 512 >= v.size);

    assert_int_equal(vol_unmount(p.mnt), 0);
    assert_int_equal(loops_on(p.image), 0);
    assert_int_equal(vol_unmount(p.mnt), 0); /* nothing mounted: success */
    paths_remove(&p);
}

static void test_kept_image_survives(void **state)
{
    (void)state;
    if (!usable())
        skip();
    struct paths p;
    paths_make(&p);
    struct vol v = {.image = p.image, .mnt = p.mnt, .size = 4 << 20, .keep = true};
    char note[160];
    snprintf(note, sizeof(note), "%s/note", p.mnt);
    assert_int_equal(vol_mount(&v, NULL), 0);
    assert_int_equal(fill(note, 100), 0);
    assert_int_equal(vol_unmount(p.mnt), 0);
    assert_int_equal(access(note, F_OK), -1);

    assert_int_equal(vol_mount(&v, NULL), 0);
    assert_int_equal(access(note, F_OK), 0);
    assert_int_equal(vol_unmount(p.mnt), 0);

    /* not kept: a fresh, empty filesystem over the same image */
    v.keep = false;
    assert_int_equal(vol_mount(&v, NULL), 0);
    assert_int_equal(access(note, F_OK), -1);
    paths_remove(&p);
    assert_int_equal(loops_on(p.image), 0);
}

/* rm_rf stops at a bind mount of a directory on the same filesystem (same
 * st_dev, another mount id) and leaves what is behind it. */
static void test_rm_rf_stops_at_a_bind(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip();
    char top[64] = "/tmp/stk-rmrf-XXXXXX", victim[64] = "/tmp/stk-rmrf-victim-XXXXXX";
    char sub[128], keep[128], mine[128];
    assert_non_null(mkdtemp(top));
    assert_non_null(mkdtemp(victim));
    snprintf(sub, sizeof(sub), "%s/bound", top);
    snprintf(keep, sizeof(keep), "%s/keep", victim);
    snprintf(mine, sizeof(mine), "%s/mine", top);
    assert_int_equal(mkdir(sub, 0755), 0);
    assert_int_equal(fill(keep, 1), 0);
    assert_int_equal(fill(mine, 1), 0);
    assert_int_equal(mount(victim, sub, NULL, MS_BIND, NULL), 0);

    assert_int_equal(rm_rf(top), -EBUSY);
    assert_int_equal(access(keep, F_OK), 0);  /* behind the bind: untouched */
    assert_int_equal(access(mine, F_OK), -1); /* the rest is gone */

    assert_int_equal(umount2(sub, MNT_DETACH), 0);
    assert_int_equal(rm_rf(top), 0);
    assert_int_equal(access(top, F_OK), -1);
    assert_int_equal(rm_rf(victim), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_size_holds_and_loop_goes),
        cmocka_unit_test(test_kept_image_survives),
        cmocka_unit_test(test_rm_rf_stops_at_a_bind),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
