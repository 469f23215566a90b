/* SPDX-License-Identifier: Apache-2.0 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/base.h"

static void test_arena_zeroed_and_aligned(void **state)
{
    (void)state;
    _cleanup_arena_ struct stk_arena *a = stk_arena_new();
    for (size_t n = 1; n < 40000; n = n * 3 + 1) {
        unsigned char *p = stk_arena_alloc(a, n);
        assert_int_equal((uintptr_t)p % 16, 0);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(p[i], 0);
        memset(p, 0xab, n);
    }
    assert_string_equal(stk_arena_printf(a, "%s-%d", "x", 42), "x-42");
    assert_string_equal(stk_arena_strndup(a, "abcdef", 3), "abc");
    assert_null(stk_arena_strdup(a, NULL));
    assert_true(stk_arena_used(a) > 40000);
}

static void test_buf(void **state)
{
    (void)state;
    _cleanup_buf_ struct stk_buf b = {0};
    assert_string_equal(stk_buf_str(&b), "");
    for (int i = 0; i < 1000; i++)
        stk_buf_printf(&b, "%d,", i);
    assert_int_equal(b.len, strlen(b.data));
    assert_true(stk_startswith(b.data, "0,1,2,"));
    char *s = stk_buf_steal(&b);
    assert_int_equal(b.len, 0);
    assert_null(b.data);
    free(s);
}

static void test_error_convention(void **state)
{
    (void)state;
    _cleanup_error_ struct stk_error *err = NULL;
    assert_int_equal(stk_error_make(&err, ENOENT, "no %s", "file"), -ENOENT);
    assert_string_equal(err->msg, "no file");
    /* the first error wins */
    assert_int_equal(stk_error_make(&err, EPERM, "later"), -EPERM);
    assert_string_equal(err->msg, "no file");
    assert_int_equal(stk_error_wrap(&err, "loading %s", "x.yaml"), -ENOENT);
    assert_string_equal(err->msg, "loading x.yaml: no file");

    _cleanup_error_ struct stk_error *e2 = NULL;
    assert_int_equal(stk_error_errno(&e2, EACCES, "open"), -EACCES);
    assert_string_equal(e2->msg, "open: Permission denied");
    assert_int_equal(stk_error_make(NULL, 0, "ignored"), -EINVAL);
}

static void test_edit_distance(void **state)
{
    (void)state;
    assert_int_equal(stk_edit_distance("policy", "policy", 2), 0);
    assert_int_equal(stk_edit_distance("polcy", "policy", 2), 1);
    assert_int_equal(stk_edit_distance("Policy", "policy", 2), 0);
    assert_int_equal(stk_edit_distance("kubernetesRole", "role", 2), 3);
    assert_int_equal(stk_edit_distance("", "abc", 5), 3);
}

static void test_enum_helpers(void **state)
{
    (void)state;
    static const char *const names[] = {"a", "bb", "ccc"};
    char buf[32];
    assert_int_equal(stk_enum_lookup(names, 3, "bb"), 1);
    assert_int_equal(stk_enum_lookup(names, 3, "d"), -1);
    assert_int_equal(stk_enum_lookup(names, 3, NULL), -1);
    assert_string_equal(stk_enum_join(names, 3, "|", buf, sizeof(buf)), "a|bb|ccc");
    assert_string_equal(stk_enum_join(names, 3, "|", buf, 5), "a|bb");
}

struct cidr_case {
    const char *in;
    int ok;
    const char *normal;
    const char *why; /* substring of the reason */
};

static void test_cidr_parse(void **state)
{
    (void)state;
    static const struct cidr_case cases[] = {
        {"10.0.0.0/8", 1, "10.0.0.0/8", NULL},
        {"0.0.0.0/0", 1, "0.0.0.0/0", NULL},
        {"169.254.169.254/32", 1, "169.254.169.254/32", NULL},
        {"::/0", 1, "::/0", NULL},
        {"fd00:ec2::254/128", 1, "fd00:ec2::254/128", NULL},
        {"FD00:EC2:0::254/128", 1, "fd00:ec2::254/128", NULL},
        {"2001:db8::/32", 1, "2001:db8::/32", NULL},
        {"10.0.0.1/8", 0, NULL, "host bits"},
        {"2001:db8::1/32", 0, NULL, "host bits"},
        {"10.0.0.0", 0, NULL, "ADDRESS/PREFIX"},
        {"10.0.0.0/33", 0, NULL, "0..32"},
        {"::/129", 0, NULL, "0..128"},
        {"10.0.0.0/08", 0, NULL, "leading zeros"},
        {"10.0.0.0/", 0, NULL, "decimal"},
        {"10.0.0.0/-1", 0, NULL, "decimal"},
        {"010.0.0.0/8", 0, NULL, "not a valid"},
        {"10.0.0/8", 0, NULL, "not a valid"},
        {"example.com/8", 0, NULL, "not a valid"},
        {"/8", 0, NULL, "not a valid"},
    };
    for (size_t i = 0; i < STK_ARRAY_SIZE(cases); i++) {
        struct stk_cidr c;
        const char *why = NULL;
        char buf[STK_CIDR_STRLEN];
        int r = stk_cidr_parse(cases[i].in, &c, &why);
        if (cases[i].ok) {
            assert_int_equal(r, 0);
            assert_string_equal(stk_cidr_format(&c, buf), cases[i].normal);
        } else {
            assert_int_equal(r, -EINVAL);
            assert_non_null(why);
            if (!strstr(why, cases[i].why))
                fail_msg("%s: reason \"%s\" lacks \"%s\"", cases[i].in, why, cases[i].why);
        }
    }
}

static struct stk_cidr cidr(const char *s)
{
    struct stk_cidr c;
    assert_int_equal(stk_cidr_parse(s, &c, NULL), 0);
    return c;
}

static void test_cidr_contains(void **state)
{
    (void)state;
    struct stk_cidr all4 = cidr("0.0.0.0/0"), all6 = cidr("::/0"), ten = cidr("10.0.0.0/8");
    struct stk_cidr meta = cidr("169.254.169.254/32"), meta6 = cidr("fd00:ec2::254/128");
    assert_true(stk_cidr_contains(&all4, &meta));
    assert_false(stk_cidr_contains(&all4, &meta6)); /* families never mix */
    assert_true(stk_cidr_contains(&all6, &meta6));
    assert_false(stk_cidr_contains(&ten, &meta));
    assert_true(stk_cidr_contains(&ten, &ten));
    assert_false(stk_cidr_contains(&meta, &ten));
    struct stk_cidr a = cidr("10.128.0.0/9"), b = cidr("10.0.0.0/9");
    assert_true(stk_cidr_contains(&ten, &a));
    assert_false(stk_cidr_contains(&b, &a));
    assert_true(stk_cidr_equal(&ten, &ten));
    assert_false(stk_cidr_equal(&a, &b));

    struct stk_cidr addr;
    assert_int_equal(stk_addr_parse("10.1.2.3", &addr), 0);
    assert_int_equal(addr.prefix, 32);
    assert_true(stk_cidr_contains(&ten, &addr));
    addr.prefix = 8;
    stk_cidr_normalise(&addr);
    assert_true(stk_cidr_equal(&addr, &ten));
}

static void test_path_never_truncates(void **state)
{
    (void)state;
    char buf[16];
    /* fits: 15 characters and the NUL */
    assert_int_equal(stk_path_fmt(buf, sizeof(buf), "%s/%s", "/run", "abcdefghij"), 15);
    assert_string_equal(buf, "/run/abcdefghij");
    /* one byte more: an error and an empty buffer, never "/run/abcdefghij" */
    assert_int_equal(stk_path_fmt(buf, sizeof(buf), "%s/%s", "/run", "abcdefghijk"), -ENAMETOOLONG);
    assert_string_equal(buf, "");
    assert_int_equal(stk_path_fmt(buf, 0, "x"), -ENAMETOOLONG);

    struct stk_error *err = NULL;
    assert_int_equal(stk_path_make(buf, sizeof(buf), &err, "/state/%s", "sandboxes/0123456789"),
                     -ENAMETOOLONG);
    assert_string_equal(buf, "");
    assert_non_null(err);
    assert_int_equal(err->code, ENAMETOOLONG);
    assert_non_null(strstr(err->msg, "/state/sandbox")); /* where it started */
    assert_non_null(strstr(err->msg, "27 bytes"));
    stk_error_free(err);
    err = NULL;
    assert_int_equal(stk_path_make(buf, sizeof(buf), &err, "/state/%s", "ok"), 9);
    assert_null(err);
    assert_string_equal(buf, "/state/ok");
}

/* A lock held by another process: the wait ends at its bound, naming the
 * holder; once released, it is taken. */
static void test_flock_wait_bounded_names_holder(void **state)
{
    (void)state;
    char path[] = "/tmp/stk-flock-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        int c = open(path, O_RDWR);
        if (c < 0 || flock(c, LOCK_EX) < 0)
            _exit(1);
        (void)!write(ready[1], "x", 1);
        pause();
        _exit(0);
    }
    char x;
    assert_int_equal(read(ready[0], &x, 1), 1);
    int holder = -1;
    assert_int_equal(stk_flock_wait(fd, LOCK_EX, 50, &holder), -ETIMEDOUT);
    assert_int_equal(holder, child);
    assert_int_equal(stk_flock_wait(fd, LOCK_SH, 0, NULL), -ETIMEDOUT);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    assert_int_equal(stk_flock_wait(fd, LOCK_EX, 5000, &holder), 0);
    close(fd);
    close(ready[0]);
    close(ready[1]);
    unlink(path);
}

/* A child that takes the lock on path, says so on ready, then stops itself
 * (SIGSTOP, as `kill -STOP` would) or waits hold_ms and exits. */
static pid_t lock_holder(const char *path, int ready, bool stop, int hold_ms)
{
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        int c = open(path, O_RDWR);
        if (c < 0 || flock(c, LOCK_EX) < 0)
            _exit(1);
        (void)!write(ready, "x", 1);
        if (stop)
            raise(SIGSTOP);
        else
            (void)nanosleep(&(struct timespec){hold_ms / 1000, (long)(hold_ms % 1000) * 1000000},
                            NULL);
        _exit(0);
    }
    return child;
}

static void wait_ready(int fd)
{
    char x;
    assert_int_equal(read(fd, &x, 1), 1);
}

static bool wake_pending(void)
{
    sigset_t p;
    sigpending(&p);
    return sigismember(&p, SIGRTMIN + STK_FLOCK_WAKE_SIGNAL);
}

/* A holder that is stopped (SIGSTOP) keeps the lock forever: the blocking
 * wait ends at its deadline, names the holder as stopped, and leaves no
 * signal pending and the thread's mask as it was. */
static void test_flock_wait_stopped_holder(void **state)
{
    (void)state;
    char path[] = "/tmp/stk-flock-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t child = lock_holder(path, ready[1], true, 0);
    wait_ready(ready[0]);
    sigset_t before, after;
    pthread_sigmask(SIG_SETMASK, NULL, &before);
    int holder = -1;
    int64_t t0 = stk_clock_ms(CLOCK_MONOTONIC);
    assert_int_equal(stk_flock_wait(fd, LOCK_EX, 300, &holder), -ETIMEDOUT);
    assert_true(stk_clock_ms(CLOCK_MONOTONIC) - t0 >= 300);
    assert_int_equal(holder, child);
    char who[128], want[64];
    stk_pid_describe(holder, who, sizeof(who));
    snprintf(want, sizeof(want), "process %d (", child);
    assert_non_null(strstr(who, want));
    assert_non_null(strstr(who, ", stopped)"));
    assert_false(wake_pending());
    pthread_sigmask(SIG_SETMASK, NULL, &after);
    for (int sig = 1; sig < SIGRTMAX; sig++)
        assert_int_equal(sigismember(&before, sig), sigismember(&after, sig));
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    assert_int_equal(stk_flock_wait(fd, LOCK_EX, 5000, NULL), 0);
    close(fd);
    close(ready[0]);
    close(ready[1]);
    unlink(path);
    stk_pid_describe(0, who, sizeof(who));
    assert_string_equal(who, "a process /proc/locks does not name");
}

/* A blocked waiter is woken when the holder lets go, well before its
 * deadline, also in a thread that blocks every signal (as a monitor's do). */
struct waiter {
    const char *path;
    int r;
    int64_t waited_ms;
};

static void *waiter_thread(void *arg)
{
    struct waiter *w = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    int fd = open(w->path, O_RDWR);
    int64_t t0 = stk_clock_ms(CLOCK_MONOTONIC);
    w->r = stk_flock_wait(fd, LOCK_EX, 200, NULL); /* held for 2 s: times out */
    if (w->r == -ETIMEDOUT)
        w->r = stk_flock_wait(fd, LOCK_EX, 60000, NULL);
    w->waited_ms = stk_clock_ms(CLOCK_MONOTONIC) - t0;
    close(fd);
    return NULL;
}

static void test_flock_wait_woken_at_release(void **state)
{
    (void)state;
    char path[] = "/tmp/stk-flock-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t child = lock_holder(path, ready[1], false, 2000);
    wait_ready(ready[0]);
    struct waiter w = {.path = path, .r = 1};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, waiter_thread, &w), 0);
    pthread_join(t, NULL);
    assert_int_equal(w.r, 0);
    /* released after 2 s; a waiter hung until its 60 s bound would be far past */
    assert_true(w.waited_ms < 30000);
    assert_false(wake_pending());
    waitpid(child, NULL, 0);
    close(fd);
    close(ready[0]);
    close(ready[1]);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arena_zeroed_and_aligned),
        cmocka_unit_test(test_buf),
        cmocka_unit_test(test_flock_wait_bounded_names_holder),
        cmocka_unit_test(test_flock_wait_stopped_holder),
        cmocka_unit_test(test_flock_wait_woken_at_release),
        cmocka_unit_test(test_error_convention),
        cmocka_unit_test(test_edit_distance),
        cmocka_unit_test(test_enum_helpers),
        cmocka_unit_test(test_cidr_parse),
        cmocka_unit_test(test_cidr_contains),
        cmocka_unit_test(test_path_never_truncates),
    };
    return cmocka_run_group_tests_name("base", tests, NULL, NULL);
}
