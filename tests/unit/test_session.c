/* SPDX-License-Identifier: Apache-2.0 */
/* The session module's pure parts: log records and rotation, pool
 * fingerprints. (The lifecycle runs end to end in tests/e2e/test_sessions.py.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "session/private.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_log_record_parse(void **state)
{
    (void)state;
    int64_t ms;
    int stream;
    size_t len;
    const char ok[] = "1700000000123 2 5\nhello";
    assert_int_equal(log_record_parse(ok, strlen(ok), &ms, &stream, &len), 18);
    assert_int_equal(ms, 1700000000123);
    assert_int_equal(stream, 2);
    assert_int_equal(len, 5);
    /* incomplete header: wait for more */
    assert_int_equal(log_record_parse("17000", 5, &ms, &stream, &len), 0);
    /* malformed: every one is refused, none read past its buffer */
    static const char *const bad[] = {
        "1 3 5\n",           /* no stream 3 */
        "1 1 -5\n",          /* negative length */
        "x 1 5\n",           /* not a number */
        "1 1 5 6\n",         /* a field too many */
        "1  1 5\n1",         /* doubled space */
        "1 1 99999999999\n", /* longer than a record may be */
        "\n",
        "1 1\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(log_record_parse(bad[i], strlen(bad[i]), &ms, &stream, &len), -EBADMSG);
    char longline[100];
    memset(longline, '1', sizeof(longline));
    assert_int_equal(log_record_parse(longline, sizeof(longline), &ms, &stream, &len), -EBADMSG);
}

static size_t file_size(const char *dir, const char *name)
{
    char path[512];
    struct stat st;
    snprintf(path, sizeof(path), "%s/logs/%s", dir, name);
    return stat(path, &st) == 0 ? (size_t)st.st_size : 0;
}

static void test_log_rotation_bounds_bytes(void **state)
{
    (void)state;
    char dir[] = "/tmp/stk-logs-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct log_writer w = {.fd = -1};
    assert_int_equal(log_writer_open(&w, dir, NULL), 0);
    static char chunk[65536];
    memset(chunk, 'x', sizeof(chunk));
    /* 40 MiB through the writer */
    for (int i = 0; i < 640; i++)
        assert_int_equal(log_writer_put(&w, 1 + (i & 1), chunk, sizeof(chunk)), 0);
    log_writer_close(&w);
    size_t cur = file_size(dir, "current"), prev = file_size(dir, "previous");
    assert_true(cur > 0 && cur <= STK_LOG_FILE_MAX);
    assert_true(prev > STK_LOG_FILE_MAX - 65536 - 64 && prev <= STK_LOG_FILE_MAX);
    assert_true(cur + prev <= STK_LOG_KEPT_BYTES);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static int resolve_text(const char *text, struct stk_session_boundary *ret)
{
    struct stk_diags diags = {0};
    struct stk_session_docs d = {.spec_file = "t.yaml", .spec = text, .spec_len = strlen(text)};
    int r = stk_session_resolve(&d, &diags, ret);
    stk_diags_free(&diags);
    return r;
}

#define DOC(name, extra)                                                                           \
    "apiVersion: stockade.dev/v1alpha1\nkind: Sandbox\nmetadata:\n  name: " name                   \
    "\nspec:\n  command: [/bin/true]\n" extra

static void test_fingerprint(void **state)
{
    (void)state;
    struct stk_session_boundary a = {0}, b = {0}, c = {0}, d = {0};
    assert_int_equal(resolve_text(DOC("one", ""), &a), 0);
    /* another name and command: the same sandbox */
    assert_int_equal(resolve_text("apiVersion: stockade.dev/v1alpha1\nkind: Sandbox\n"
                                  "metadata:\n  name: two\n  labels: {a: b}\n"
                                  "spec:\n  command: [/bin/sh, -c, 'echo hi']\n",
                                  &b),
                     0);
    assert_int_equal(resolve_text(DOC("one", "  resources: {memory: 1Gi}\n"), &c), 0);
    assert_int_equal(resolve_text(DOC("one", "  network: {externalEgress: true}\n"), &d), 0);
    /* what the monitor enforces and the runtime asked for count too */
    static const char *const also_differ[] = {
        DOC("one", "  resources: {wallClock: 100h}\n"),
        DOC("one", "  resources: {cpuTime: 90m}\n"),
        DOC("one", "  runtime: runc\n"),
    };
    char fa[65], fb[65], fc[65], fd[65];
    assert_int_equal(session_local_fingerprint(a.b, fa, NULL), 0);
    assert_int_equal(session_local_fingerprint(b.b, fb, NULL), 0);
    assert_int_equal(session_local_fingerprint(c.b, fc, NULL), 0);
    assert_int_equal(session_local_fingerprint(d.b, fd, NULL), 0);
    assert_string_equal(fa, fb);
    assert_string_not_equal(fa, fc);
    assert_string_not_equal(fa, fd);
    assert_int_equal(strlen(fa), 64);
    for (size_t i = 0; i < sizeof(also_differ) / sizeof(also_differ[0]); i++) {
        struct stk_session_boundary e = {0};
        char fe[65];
        assert_int_equal(resolve_text(also_differ[i], &e), 0);
        assert_int_equal(session_local_fingerprint(e.b, fe, NULL), 0);
        assert_string_not_equal(fa, fe);
        stk_session_boundary_release(&e);
    }
    stk_session_boundary_release(&a);
    stk_session_boundary_release(&b);
    stk_session_boundary_release(&c);
    stk_session_boundary_release(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_record_parse),
        cmocka_unit_test(test_log_rotation_bounds_bytes),
        cmocka_unit_test(test_fingerprint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
