/* SPDX-License-Identifier: Apache-2.0 */
/* driver/local: the pure parts — runtime choice, name tables, time format. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "driver/driver.h"

static void set(struct stk_runtime_status st[_STK_OCI_N], bool runsc, bool crun, bool runc)
{
    memset(st, 0, sizeof(struct stk_runtime_status) * _STK_OCI_N);
    st[STK_OCI_RUNSC].works = runsc;
    st[STK_OCI_CRUN].works = crun;
    st[STK_OCI_RUNC].works = runc;
    for (int i = 0; i < _STK_OCI_N; i++)
        if (!st[i].works)
            snprintf(st[i].note, sizeof(st[i].note), "%s broken", stk_oci_runtime_names[i]);
}

static void test_default_takes_the_strongest(void **state)
{
    (void)state;
    struct stk_runtime_status st[_STK_OCI_N];
    enum stk_oci_runtime rt;
    const char *note = NULL;

    set(st, true, true, true);
    assert_int_equal(stk_runtime_choose(STK_RUNTIME_DEFAULT, st, &rt, &note), 0);
    assert_int_equal(rt, STK_OCI_RUNSC);

    set(st, false, true, true);
    assert_int_equal(stk_runtime_choose(STK_RUNTIME_DEFAULT, st, &rt, &note), 0);
    assert_int_equal(rt, STK_OCI_CRUN);
    assert_non_null(note);
    assert_non_null(strstr(note, "runsc skipped (runsc broken)"));

    set(st, false, false, true);
    assert_int_equal(stk_runtime_choose(STK_RUNTIME_DEFAULT, st, &rt, &note), 0);
    assert_int_equal(rt, STK_OCI_RUNC);

    set(st, false, false, false);
    assert_int_equal(stk_runtime_choose(STK_RUNTIME_DEFAULT, st, &rt, &note), -ENOENT);
    assert_non_null(strstr(note, "runc skipped"));
}

static void test_named_runtime_is_required(void **state)
{
    (void)state;
    struct stk_runtime_status st[_STK_OCI_N];
    enum stk_oci_runtime rt = STK_OCI_RUNC;
    const char *note = NULL;

    set(st, false, true, true);
    assert_int_equal(stk_runtime_choose(STK_RUNTIME_GVISOR, st, &rt, &note), -ENOENT);
    assert_non_null(strstr(note, "gvisor needs runsc"));
    assert_int_equal(rt, STK_OCI_RUNC); /* untouched on failure */

    assert_int_equal(stk_runtime_choose(STK_RUNTIME_RUNC, st, &rt, &note), 0);
    assert_int_equal(rt, STK_OCI_RUNC);
    assert_int_equal(stk_runtime_choose(STK_RUNTIME_CRUN, st, &rt, &note), 0);
    assert_int_equal(rt, STK_OCI_CRUN);
}

static void test_tables(void **state)
{
    (void)state;
    for (int i = 0; i < _STK_OCI_N; i++)
        assert_int_equal(
            stk_enum_lookup(stk_oci_runtime_names, _STK_OCI_N, stk_oci_runtime_names[i]), i);
    for (int i = 1; i < _STK_KILL_N; i++)
        assert_int_equal(
            stk_enum_lookup(stk_kill_reason_names, _STK_KILL_N, stk_kill_reason_names[i]), i);
    assert_string_equal(stk_kill_reason_names[STK_KILL_MEMORY], "memory_exceeded");
    assert_string_equal(stk_kill_reason_names[STK_KILL_PIDS], "pids_exceeded");
    assert_string_equal(stk_kill_reason_names[STK_KILL_CPU], "cpu_exceeded");
    assert_string_equal(stk_kill_reason_names[STK_KILL_WALL_CLOCK], "wall_clock_exceeded");
    for (int i = 0; i < _STK_PHASE_N; i++)
        assert_int_equal(stk_enum_lookup(stk_phase_names, _STK_PHASE_N, stk_phase_names[i]), i);
    /* gVisor admits what it cannot see; the host-kernel runtimes see all */
    assert_non_null(stk_runtime_caveats(STK_OCI_RUNSC)[0]);
    assert_non_null(strstr(stk_runtime_caveats(STK_OCI_RUNSC)[0], "pids_exceeded"));
}

static void test_time_format(void **state)
{
    (void)state;
    struct timespec ts = {.tv_sec = 1795000000, .tv_nsec = 123456789};
    char buf[40];
    stk_time_format(&ts, buf);
    assert_string_equal(buf, "2026-11-18T11:06:40.123Z");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_takes_the_strongest),
        cmocka_unit_test(test_named_runtime_is_required),
        cmocka_unit_test(test_tables),
        cmocka_unit_test(test_time_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
