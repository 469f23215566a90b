/* SPDX-License-Identifier: Apache-2.0 */
/* `-o jsonpath=` templates and `-l` label selectors: what they print and
 * match, and that every bad input is refused with where it went wrong. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <string.h>

#include "render/jsonpath.h"

static char *expand(const char *json, const char *tmpl, int *ret)
{
    json_t *root = json_loads(json, JSON_DECODE_ANY, NULL);
    assert_non_null(root);
    struct stk_buf b = {0};
    struct stk_error *err = NULL;
    *ret = stk_jsonpath(root, tmpl, &b, &err);
    json_decref(root);
    char *out = *ret < 0 ? strdup(err->msg) : strdup(b.data ? b.data : "");
    stk_error_free(err);
    stk_buf_free(&b);
    return out;
}

static void check(const char *json, const char *tmpl, const char *want)
{
    int r;
    char *got = expand(json, tmpl, &r);
    assert_int_equal(r, 0);
    assert_string_equal(got, want);
    free(got);
}

static void refuse(const char *tmpl, const char *why)
{
    int r;
    char *got = expand("{}", tmpl, &r);
    assert_true(r < 0);
    if (!strstr(got, why))
        fail_msg("%s: got \"%s\", want \"%s\"", tmpl, got, why);
    free(got);
}

static const char rec[] = "{\"id\":\"a-1\",\"phase\":\"ready\",\"exitCode\":null,\"n\":3,"
                          "\"labels\":{\"team\":\"x\",\"k8s.io/app\":\"web\"},"
                          "\"items\":[{\"id\":\"p\"},{\"id\":\"q\"},{\"id\":\"r\"}]}";

static void test_paths(void **state)
{
    (void)state;
    check(rec, "{.id}", "a-1");
    check(rec, ".id", "a-1"); /* no braces: one path */
    check(rec, "$.phase", "ready");
    check(rec, "{.n}", "3"); /* not a string: JSON */
    check(rec, "{.exitCode}", "null");
    check(rec, "{.labels.team}", "x");
    check(rec, "{.labels.k8s.io/app}", ""); /* '.' separates: no such key */
    check(rec, "{.items[1].id}", "q");
    check(rec, "{.items[-1].id}", "r");
    check(rec, "{.items[*].id}", "p q r");
    check(rec, "{.items[9].id}", ""); /* missing prints nothing */
    check(rec, "{.nope.deeper}", "");
    check(rec, "{.labels.*}", "x web");
    check(rec, "id={.id}{\"\\n\"}", "id=a-1\n");
    check(rec, "{.id}{\"\\t\\\"}\"}", "a-1\t\"}");
    check("[1,2]", "{.}", "[1,2]");
}

static void test_bad_templates(void **state)
{
    (void)state;
    refuse("{.id", "'{' without '}'");
    refuse("{.id}}", "'}' without '{'");
    refuse(".id}", "expected");
    refuse("{id}", "expected '.' or '['");
    refuse("{.}x{.a..b}", "expected a name");
    refuse("{.a[x]}", "expected an index");
    refuse("{.a[1}", "expected ']'");
    refuse("{\"abc}", "without");
    refuse("{\"abc}\"x}", "unterminated");
    refuse("{\"a\\q\"}", "unknown escape");
    char big[STK_JSONPATH_MAX_LEN + 2];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    refuse(big, "longer than");
}

static bool matches(const char *sel_text, const char *labels_json)
{
    struct stk_lsel sel = {0};
    struct stk_error *err = NULL;
    assert_int_equal(stk_lsel_parse(sel_text, &sel, &err), 0);
    json_t *l = json_loads(labels_json, 0, NULL);
    bool m = stk_lsel_match(&sel, l);
    json_decref(l);
    return m;
}

static void test_selectors(void **state)
{
    (void)state;
    const char *l = "{\"team\":\"a\",\"tier\":\"web\"}";
    assert_true(matches("team=a", l));
    assert_true(matches("team==a,tier=web", l));
    assert_false(matches("team=a,tier=db", l));
    assert_true(matches("team!=b", l));
    assert_false(matches("team!=a", l));
    assert_true(matches("tier", l));
    assert_false(matches("owner", l));
    assert_true(matches("!owner", l));
    assert_false(matches("!team", l));
    assert_true(matches("x!=y", "{}"));
}

static void test_bad_selectors(void **state)
{
    (void)state;
    const char *bad[] = {"", "=a", "a=b=c", "!a=b", "a<b",
                         /* a value one byte over the limit */
                         ("a="
                          "0123456789012345678901234567890123456789012345678901234567890123"),
                         ",", "a=b,"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        struct stk_lsel sel = {0};
        struct stk_error *err = NULL;
        assert_true(stk_lsel_parse(bad[i], &sel, &err) < 0);
        assert_non_null(err);
        stk_error_free(err);
    }
    struct stk_lsel sel = {0};
    struct stk_error *err = NULL;
    for (int i = 0; i < STK_SELECTOR_MAX_TERMS; i++)
        assert_int_equal(stk_lsel_parse("a=b", &sel, &err), 0);
    assert_true(stk_lsel_parse("a=b", &sel, &err) < 0); /* one term too many */
    stk_error_free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_bad_templates),
        cmocka_unit_test(test_selectors),
        cmocka_unit_test(test_bad_selectors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
