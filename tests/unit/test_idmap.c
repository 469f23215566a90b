/* SPDX-License-Identifier: Apache-2.0 */
/* The local driver's host id ranges (idmap.c) against the real registry:
 * two directories get disjoint slots, a directory finds the slot it holds,
 * a release frees it, a slot whose directory is gone is taken back, the
 * user namespace is owned by the range and mapped to it, and a kept
 * filesystem moves to a new range. Needs root; skips otherwise. Touches
 * only the slots it takes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "driver/local/internal.h"

static char *tmpdir(void)
{
    char *d = stk_xstrdup("/tmp/stk-idmap-XXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

static void rm_tree(const char *d)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf -- '%s'", d);
    assert_int_equal(system(cmd), 0);
}

static int slot_of(const struct idmap *m)
{
    return (int)((m->base - IDMAP_FIRST) / IDMAP_SIZE);
}

static void test_disjoint_reuse_release(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip();
    char *a = tmpdir(), *b = tmpdir();
    struct idmap ma, mb, again;
    assert_int_equal(idmap_acquire(a, &ma, NULL), 0);
    assert_int_equal(idmap_acquire(b, &mb, NULL), 0);
    assert_int_equal(ma.size, IDMAP_SIZE);
    assert_true(ma.base >= IDMAP_FIRST && (ma.base - IDMAP_FIRST) % IDMAP_SIZE == 0);
    assert_true(ma.base + ma.size <= mb.base || mb.base + mb.size <= ma.base);
    /* the holder finds its own slot again */
    assert_int_equal(idmap_acquire(a, &again, NULL), 0);
    assert_int_equal(again.base, ma.base);
    /* the record names the directory */
    char path[128], who[4096];
    snprintf(path, sizeof(path), IDMAP_DIR "/%d", slot_of(&ma));
    assert_true(file_read(path, who, sizeof(who)) > 0);
    assert_non_null(strstr(who, a));
    /* released: the slot file is gone */
    assert_int_equal(idmap_release(a), 0);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(idmap_release(a), 0); /* nothing held: success */
    /* b's directory goes without a release: its slot is stale and the
     * next taker frees it */
    snprintf(path, sizeof(path), IDMAP_DIR "/%d", slot_of(&mb));
    rm_tree(b);
    assert_int_equal(idmap_acquire(a, &again, NULL), 0);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(idmap_release(a), 0);
    rm_tree(a);
    free(a);
    free(b);
}

static void test_userns_owned_by_range(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip();
    char *a = tmpdir();
    struct idmap m;
    char ns[64];
    assert_int_equal(idmap_acquire(a, &m, NULL), 0);
    assert_int_equal(idmap_userns(&m, ns, sizeof(ns), NULL), 0);
    /* made once: the second call finds it */
    assert_int_equal(idmap_userns(&m, ns, sizeof(ns), NULL), 0);
    int fd = open(ns, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    /* NS_GET_OWNER_UID */
    uid_t owner = 0;
    assert_int_equal(ioctl(fd, 0xb704, &owner), 0);
    assert_int_equal(owner, m.base);
    close(fd);
    assert_int_equal(idmap_release(a), 0);
    assert_int_equal(access(ns, F_OK), -1);
    rm_tree(a);
    free(a);
}

static void test_shift(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip();
    char *d = tmpdir(), f[128], g[128];
    snprintf(f, sizeof(f), "%s/f", d);
    snprintf(g, sizeof(g), "%s/host", d);
    assert_int_equal(file_write(f, "x", 1), 0);
    assert_int_equal(file_write(g, "x", 1), 0);
    /* made under slot 3's range, and one file of a host id beyond any range */
    uint32_t old = IDMAP_FIRST + 3 * IDMAP_SIZE;
    assert_int_equal(chown(d, old + 65534, old + 65534), 0);
    assert_int_equal(chown(f, old + 1000, old + 1001), 0);
    assert_int_equal(chown(g, 70000, 70000), 0);
    struct idmap m = {.base = IDMAP_FIRST + 7 * IDMAP_SIZE, .size = IDMAP_SIZE};
    assert_int_equal(idmap_shift(d, &m), 1);
    struct stat st;
    assert_int_equal(stat(d, &st), 0);
    assert_int_equal(st.st_uid, m.base + 65534);
    assert_int_equal(stat(f, &st), 0);
    assert_int_equal(st.st_uid, m.base + 1000);
    assert_int_equal(st.st_gid, m.base + 1001);
    assert_int_equal(stat(g, &st), 0);
    assert_int_equal(st.st_uid, 70000);
    /* already there: nothing to do */
    assert_int_equal(idmap_shift(d, &m), 0);
    /* made before ranges (host uid 65534) */
    assert_int_equal(chown(d, 65534, 65534), 0);
    assert_int_equal(idmap_shift(d, &m), 1);
    assert_int_equal(stat(d, &st), 0);
    assert_int_equal(st.st_uid, m.base + 65534);
    rm_tree(d);
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_disjoint_reuse_release),
        cmocka_unit_test(test_userns_owned_by_range),
        cmocka_unit_test(test_shift),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
