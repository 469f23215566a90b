/* SPDX-License-Identifier: Apache-2.0 */
/* driver/local: the pure parts — runtime choice, name tables, time format. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "driver/driver.h"
#include "driver/local/steps.h"

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

/* ---- the setup-steps runner -------------------------------------------------- */

#define N_STEPS 5

struct log {
    int fail_at;           /* the step that fails, -1: none */
    char ran[16];          /* run order: '0'.. */
    char undone[16];       /* undo order */
    bool partial[N_STEPS]; /* a failing step's partial work, still there */
};

static int step_run(struct log *l, int i, struct stk_error **err)
{
    size_t n = strlen(l->ran);
    l->ran[n] = (char)('0' + i);
    if (i == l->fail_at) {
        l->partial[i] = true;
        return stk_error_make(err, EIO, "step %d broke", i);
    }
    return 0;
}

static void step_undo(struct log *l, int i)
{
    size_t n = strlen(l->undone);
    l->undone[n] = (char)('0' + i);
    l->partial[i] = false;
}

#define STEP(i)                                                                                    \
    static int run##i(void *c, struct stk_error **err)                                             \
    {                                                                                              \
        return step_run(c, i, err);                                                                \
    }                                                                                              \
    static __attribute__((unused)) void undo##i(void *c)                                           \
    {                                                                                              \
        step_undo(c, i);                                                                           \
    }
STEP(0)
STEP(1)
STEP(2)
STEP(3)
STEP(4)

/* step 2 has nothing to undo */
static const struct stk_step steps[N_STEPS] = {
    {"zero", run0, undo0},  {"one", run1, undo1},  {"two", run2, NULL},
    {"three", run3, undo3}, {"four", run4, undo4},
};

static void test_steps_fail_each_in_turn(void **state)
{
    (void)state;
    /* failing step k: steps 0..k ran, then k's undo, then k-1 .. 0 (step
     * 2 has none); nothing after k ran or was undone */
    static const char *const want_undone[N_STEPS] = {"0", "10", "10", "310", "4310"};
    for (int k = 0; k < N_STEPS; k++) {
        struct log l = {.fail_at = k};
        struct stk_error *err = NULL;
        assert_int_equal(stk_steps_run(steps, N_STEPS, &l, &err), -EIO);
        char want_ran[16] = "";
        for (int i = 0; i <= k; i++)
            want_ran[i] = (char)('0' + i);
        assert_string_equal(l.ran, want_ran);
        assert_string_equal(l.undone, want_undone[k]);
        /* the failing step's partial work is gone (unless it has no undo) */
        assert_int_equal(l.partial[k], k == 2);
        /* the message names the failing step */
        assert_non_null(err);
        assert_true(stk_startswith(err->msg, steps[k].name));
        assert_non_null(strstr(err->msg, "broke"));
        stk_error_free(err);
    }
}

static void test_steps_success_then_teardown(void **state)
{
    (void)state;
    struct log l = {.fail_at = -1};
    assert_int_equal(stk_steps_run(steps, N_STEPS, &l, NULL), 0);
    assert_string_equal(l.ran, "01234");
    assert_string_equal(l.undone, "");
    stk_steps_undo(steps, N_STEPS, &l);
    assert_string_equal(l.undone, "4310");
    /* a failure without an error object still undoes */
    struct log f = {.fail_at = 4};
    assert_int_equal(stk_steps_run(steps, N_STEPS, &f, NULL), -EIO);
    assert_string_equal(f.undone, "4310");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_takes_the_strongest),
        cmocka_unit_test(test_named_runtime_is_required),
        cmocka_unit_test(test_tables),
        cmocka_unit_test(test_time_format),
        cmocka_unit_test(test_steps_fail_each_in_turn),
        cmocka_unit_test(test_steps_success_then_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
