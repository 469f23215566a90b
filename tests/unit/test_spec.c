/* SPDX-License-Identifier: Apache-2.0 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "spec/internal.h"

#define DATA STK_SOURCE_ROOT "/tests/data/"

/* ---- helpers ------------------------------------------------------------ */

static struct stk_docset *parse_ok(const char *text)
{
    struct stk_diags d = {0};
    struct stk_docset *ds = NULL;
    int r = stk_docset_parse("t.yaml", text, strlen(text), &d, &ds);
    if (r < 0) {
        for (size_t i = 0; i < d.n; i++) {
            _cleanup_free_ char *line = stk_diag_format(&d.items[i]);
            print_message("%s\n", line);
        }
        fail_msg("expected the document to parse");
    }
    stk_diags_free(&d);
    return ds;
}

/* Parses text expecting failure; returns the first diagnostic, formatted. */
static char *parse_err(const char *text)
{
    struct stk_diags d = {0};
    struct stk_docset *ds = NULL;
    int r = stk_docset_parse("t.yaml", text, strlen(text), &d, &ds);
    assert_true(r < 0);
    assert_null(ds);
    assert_true(d.n_errors > 0);
    char *s = stk_diag_format(&d.items[0]);
    stk_diags_free(&d);
    return s;
}

#define HEAD "apiVersion: stockade.dev/v1alpha1\nkind: Sandbox\nmetadata:\n  name: t\n"

/* ---- enum tables round-trip ------------------------------------------------ */

static void test_enum_tables_round_trip(void **state)
{
    (void)state;
    static const struct {
        const char *const *names;
        size_t n;
    } tables[] = {
        {stk_policy_names, _STK_POLICY_N},
        {stk_role_names, _STK_ROLE_N},
        {stk_runtime_names, _STK_RUNTIME_N},
        {stk_model_names, _STK_MODEL_N},
        {stk_workload_kind_names, _STK_WORKLOAD_N},
        {stk_protocol_names, _STK_PROTO_N},
        {stk_alloc_mode_names, _STK_ALLOC_N},
        {stk_cred_source_names, _STK_CRED_N},
        {stk_selector_op_names, _STK_SEL_N},
        {stk_toleration_op_names, _STK_TOL_N},
        {stk_taint_effect_names, _STK_EFFECT_N},
        {stk_netpol_names, _STK_NETPOL_N},
        {stk_kind_names, _STK_KIND_N},
        {stk_jwt_alg_names, _STK_JWT_N},
        {stk_identity_kind_names, _STK_IDENTITY_N},
        {stk_access_verb_names, STK_ACCESS_VERBS},
        {stk_allocation_kind_names, _STK_ALLOCATION_N},
    };
    for (size_t t = 0; t < STK_ARRAY_SIZE(tables); t++)
        for (size_t i = 0; i < tables[t].n; i++) {
            assert_non_null(tables[t].names[i]);
            assert_int_equal(stk_enum_lookup(tables[t].names, tables[t].n, tables[t].names[i]),
                             (int)i);
        }
}

/* ---- quantities and durations ------------------------------------------------ */

static void test_quantities(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        enum stk_qty_unit unit;
        int64_t want;
    } ok[] = {
        {"500m", STK_QTY_MILLI, 500},
        {"2", STK_QTY_MILLI, 2000},
        {"0.5", STK_QTY_MILLI, 500},
        {"1.25", STK_QTY_MILLI, 1250},
        {".1", STK_QTY_MILLI, 100},
        {"512Mi", STK_QTY_BYTES, INT64_C(512) << 20},
        {"2Gi", STK_QTY_BYTES, INT64_C(2) << 30},
        {"1.5Gi", STK_QTY_BYTES, INT64_C(3) << 29},
        {"1G", STK_QTY_BYTES, 1000000000},
        {"1k", STK_QTY_BYTES, 1000},
        {"1Ki", STK_QTY_BYTES, 1024},
        {"1e9", STK_QTY_BYTES, 1000000000},
        {"1E", STK_QTY_BYTES, INT64_C(1000000000000000000)},
        {"1Ei", STK_QTY_BYTES, INT64_C(1) << 60},
        {"+7", STK_QTY_BYTES, 7},
        {"0", STK_QTY_BYTES, 0},
        {"1000000n", STK_QTY_MILLI, 1},
    };
    for (size_t i = 0; i < STK_ARRAY_SIZE(ok); i++) {
        int64_t v = -1;
        const char *why = NULL;
        if (stk_quantity_parse(ok[i].in, ok[i].unit, &v, &why) < 0)
            fail_msg("%s: %s", ok[i].in, why);
        assert_int_equal(v, ok[i].want);
    }
    static const struct {
        const char *in;
        enum stk_qty_unit unit;
        const char *why;
    } bad[] = {
        {"-1", STK_QTY_BYTES, "negative"},
        {"", STK_QTY_BYTES, "expected a number"},
        {"Mi", STK_QTY_BYTES, "expected a number"},
        {"1.5", STK_QTY_BYTES, "whole number of bytes"},
        {"0.1Ki", STK_QTY_BYTES, "whole number of bytes"},
        {"1000n", STK_QTY_MILLI, "finer than 1m"},
        {"0.0001", STK_QTY_MILLI, "finer than 1m"},
        {"12XB", STK_QTY_BYTES, "unknown suffix"},
        {"1mi", STK_QTY_BYTES, "unknown suffix"},
        {"9Ei", STK_QTY_BYTES, "too large"},
        {"1e40", STK_QTY_BYTES, "too large"},
        {"1234567890123456789", STK_QTY_BYTES, "significant digits"},
        {"1 Gi", STK_QTY_BYTES, "unknown suffix"},
    };
    for (size_t i = 0; i < STK_ARRAY_SIZE(bad); i++) {
        int64_t v = 42;
        const char *why = NULL;
        assert_true(stk_quantity_parse(bad[i].in, bad[i].unit, &v, &why) < 0);
        assert_int_equal(v, 42);
        if (!why || !strstr(why, bad[i].why))
            fail_msg("%s: reason \"%s\" lacks \"%s\"", bad[i].in, why, bad[i].why);
    }
}

static void test_durations(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int64_t ms;
        const char *formatted;
    } ok[] = {
        {"90s", 90000, "1m30s"},      {"10m", 600000, "10m"},  {"1h30m", 5400000, "1h30m"},
        {"1.5h", 5400000, "1h30m"},   {"500ms", 500, "500ms"}, {"2d", 172800000, "2d"},
        {"1m0.5s", 60500, "1m500ms"}, {"0s", 0, "0s"},
    };
    for (size_t i = 0; i < STK_ARRAY_SIZE(ok); i++) {
        int64_t v = -1;
        const char *why = NULL;
        char buf[64];
        if (stk_duration_parse(ok[i].in, &v, &why) < 0)
            fail_msg("%s: %s", ok[i].in, why);
        assert_int_equal(v, ok[i].ms);
        stk_duration_format(v, buf, sizeof(buf));
        assert_string_equal(buf, ok[i].formatted);
    }
    static const struct {
        const char *in;
        const char *why;
    } bad[] = {
        {"90", "needs a unit"},       {"", "expected a duration"},
        {"5y", "unknown unit"},       {"0.5ms", "finer than a millisecond"},
        {"s", "expected a duration"}, {"1h-5m", "expected a duration"},
    };
    for (size_t i = 0; i < STK_ARRAY_SIZE(bad); i++) {
        int64_t v;
        const char *why = NULL;
        assert_true(stk_duration_parse(bad[i].in, &v, &why) < 0);
        if (!why || !strstr(why, bad[i].why))
            fail_msg("%s: reason \"%s\" lacks \"%s\"", bad[i].in, why, bad[i].why);
    }
}

static void test_formats(void **state)
{
    (void)state;
    char buf[32];
    stk_bytes_format(INT64_C(512) << 20, buf, sizeof(buf));
    assert_string_equal(buf, "512Mi");
    stk_bytes_format(1000, buf, sizeof(buf));
    assert_string_equal(buf, "1000");
    stk_cpu_format(1500, buf, sizeof(buf));
    assert_string_equal(buf, "1500m");
    stk_cpu_format(2000, buf, sizeof(buf));
    assert_string_equal(buf, "2");
}

/* ---- string syntaxes ---------------------------------------------------------- */

static void test_string_formats(void **state)
{
    (void)state;
    static const struct {
        enum stk_strfmt fmt;
        const char *in;
        bool ok;
    } cases[] = {
        {STK_FMT_DNS_LABEL, "a", true},
        {STK_FMT_DNS_LABEL, "web-1", true},
        {STK_FMT_DNS_LABEL, "-web", false},
        {STK_FMT_DNS_LABEL, "Web", false},
        {STK_FMT_DNS_LABEL, "a.b", false},
        {STK_FMT_DNS_LABEL, "0123456789012345678901234567890123456789012345678901234567890123",
         false},
        {STK_FMT_DNS_SUBDOMAIN, "a.b-c.d", true},
        {STK_FMT_DNS_SUBDOMAIN, "a..b", false},
        {STK_FMT_QUALIFIED, "app.kubernetes.io/name", true},
        {STK_FMT_QUALIFIED, "Name_1.x", true},
        {STK_FMT_QUALIFIED, "/name", false},
        {STK_FMT_QUALIFIED, "a/b/c", false},
        {STK_FMT_LABEL_VALUE, "", true},
        {STK_FMT_LABEL_VALUE, "v1.2-rc_3", true},
        {STK_FMT_LABEL_VALUE, "has space", false},
        {STK_FMT_ABS_PATH, "/", true},
        {STK_FMT_ABS_PATH, "/a/b", true},
        {STK_FMT_ABS_PATH, "a/b", false},
        {STK_FMT_ABS_PATH, "/a/../b", false},
        {STK_FMT_ABS_PATH, "/a/./b", false},
        {STK_FMT_ABS_PATH, "/a//b", false},
        {STK_FMT_ABS_PATH, "/a/", false},
        {STK_FMT_ABS_PATH, "/a/..b", true},
        {STK_FMT_ROOTFS, "host", true},
        {STK_FMT_ROOTFS, "/srv/root", true},
        {STK_FMT_ROOTFS, "/", false},
        {STK_FMT_ROOTFS, "/proc/1/root", false},
        {STK_FMT_ROOTFS, "/var/run/docker", false},
        {STK_FMT_ROOTFS, "/running", true},
        {STK_FMT_IMAGE, "busybox", true},
        {STK_FMT_IMAGE, "busybox:1.36", true},
        {STK_FMT_IMAGE, "localhost:5000/a/b:tag", true},
        {STK_FMT_IMAGE,
         "ghcr.io/org/img@sha256:"
         "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
         true},
        {STK_FMT_IMAGE, "Busybox", false},
        {STK_FMT_IMAGE, "busybox:", false},
        {STK_FMT_IMAGE, "img@sha256:abc", false},
        {STK_FMT_IMAGE, "a//b", false},
        {STK_FMT_ENV_NAME, "PATH", true},
        {STK_FMT_ENV_NAME, "my.var-1", true},
        {STK_FMT_ENV_NAME, "1ABC", false},
        {STK_FMT_ENV_NAME, "A=B", false},
        {STK_FMT_CAPABILITY, "NET_BIND_SERVICE", true},
        {STK_FMT_CAPABILITY, "CAP_NET_BIND_SERVICE", false},
        {STK_FMT_CAPABILITY, "ALL", false},
        {STK_FMT_CAPABILITY, "net_admin", false},
        {STK_FMT_URL, "https://api.example.com/v1", true},
        {STK_FMT_URL, "http://10.0.0.1:8080", true},
        {STK_FMT_URL, "https://user:pw@example.com", false},
        {STK_FMT_URL, "ftp://example.com", false},
        {STK_FMT_URL, "https://", false},
        {STK_FMT_URL, "https://a b", false},
        {STK_FMT_HEADER, "X-Api-Key", true},
        {STK_FMT_HEADER, "Bad Header", false},
        {STK_FMT_INJECT_FORMAT, "Bearer {value}", true},
        {STK_FMT_INJECT_FORMAT, "Bearer", false},
        {STK_FMT_INJECT_FORMAT, "{value}{value}", false},
        {STK_FMT_API_VERSION, "stockade.dev/v1alpha1", true},
        {STK_FMT_API_VERSION, "v1", false},
        {STK_FMT_LINE, "tab\there", false},
        {STK_FMT_TEXT, "tab\there\n", true},
    };
    for (size_t i = 0; i < STK_ARRAY_SIZE(cases); i++) {
        const char *why = NULL;
        bool got = stk_strfmt_check(cases[i].fmt, cases[i].in, &why);
        if (got != cases[i].ok)
            fail_msg("format %d, \"%s\": expected %s", cases[i].fmt, cases[i].in,
                     cases[i].ok ? "valid" : "invalid");
        if (!got)
            assert_non_null(why);
    }
}

/* ---- loader --------------------------------------------------------------------- */

static void test_yaml_and_json_agree(void **state)
{
    (void)state;
    struct stk_docset *y = parse_ok(HEAD "spec:\n  command: [a, b]\n  resources: {memory: 1Gi}\n");
    struct stk_docset *j = parse_ok(
        "{\"apiVersion\": \"stockade.dev/v1alpha1\", \"kind\": \"Sandbox\", \"metadata\": "
        "{\"name\": \"t\"}, \"spec\": {\"command\": [\"a\", \"b\"], \"resources\": {\"memory\": "
        "\"1Gi\"}}}");
    const struct stk_sandbox *a = y->docs[0].sandbox, *b = j->docs[0].sandbox;
    assert_string_equal(a->metadata.name.v, b->metadata.name.v);
    assert_int_equal(a->spec.command.n, 2);
    assert_int_equal(b->spec.command.n, 2);
    assert_string_equal(b->spec.command.items[1].v, "b");
    assert_int_equal(a->spec.resources.memory.v, b->spec.resources.memory.v);
    /* positions are real in JSON too */
    assert_int_equal(b->spec.resources.memory.meta.pos.line, 1);
    assert_true(b->spec.resources.memory.meta.pos.col > 100);
    stk_docset_free(y);
    stk_docset_free(j);
}

static void test_multiple_documents(void **state)
{
    (void)state;
    struct stk_docset *ds =
        parse_ok(HEAD "---\n" HEAD "---\n---\napiVersion: stockade.dev/v1alpha1\nkind: "
                      "EnvironmentConfig\nmetadata: {name: e}\n");
    assert_int_equal(ds->n, 3);
    size_t count;
    assert_non_null(stk_docset_find(ds, STK_KIND_SANDBOX, &count));
    assert_int_equal(count, 2);
    assert_non_null(stk_docset_find(ds, STK_KIND_ENVCONFIG, &count));
    assert_int_equal(count, 1);
    stk_docset_free(ds);

    ds = parse_ok("[{\"apiVersion\": \"stockade.dev/v1alpha1\", \"kind\": \"Sandbox\", "
                  "\"metadata\": {\"name\": \"a\"}}, {\"apiVersion\": \"stockade.dev/v1alpha1\", "
                  "\"kind\": \"Sandbox\", \"metadata\": {\"name\": \"b\"}}]");
    assert_int_equal(ds->n, 2);
    assert_string_equal(ds->docs[1].sandbox->metadata.name.v, "b");
    stk_docset_free(ds);
}

static void test_loader_errors(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        const char *want;
    } cases[] = {
        {HEAD "spec:\n  image: a\n  image: b\n",
         "t.yaml:7:3: error: duplicate key \"image\" (first at line 6, column 3)"},
        {HEAD "spec: &x {}\nother: *x\n",
         "t.yaml:6:8: error: YAML aliases (*x) are not supported: write the value out"},
        {HEAD "spec: !!binary abc\n",
         "t.yaml:5:7: error: YAML tag \"tag:yaml.org,2002:binary\" is not supported (only !!str, "
         "!!map, !!seq)"},
        {HEAD "spec: {image: \"a\\0b\"}\n", "t.yaml:5:15: error: value contains a NUL character"},
        {"{\"apiVersion\": \"x\",}", "t.yaml:1:20: error: JSON syntax error: string or '}' "
                                     "expected near '}'"},
        {"{\"a\": 1, \"a\": 2}",
         "t.yaml:1:12: error: JSON syntax error: duplicate object key near '\"a\"'"},
        {HEAD "spec: [\n", "t.yaml:6:1: error: YAML syntax error: did not find expected node "
                           "content while parsing a flow node"},
        {"- 1\n- 2\n", "t.yaml:1:3: error: a document must be a mapping (apiVersion, kind, ...), "
                       "not an integer"},
        {"", "t.yaml: error: no documents found"},
        {"apiVersion: stockade.dev/v1alpha1\nkind: Pod\nmetadata: {name: x}\n",
         "t.yaml:2:7: error: kind: \"Pod\" is not one of Sandbox|EnvironmentConfig|AccessPolicy"},
        {"apiVersion: stockade.dev/v1alpha1\nmetadata: {name: x}\n",
         "t.yaml:1:1: error: kind: missing required field \"kind\" (one of "
         "Sandbox|EnvironmentConfig|AccessPolicy)"},
        {"? [a]\n: b\n", "t.yaml:1:3: error: a mapping key must be a string, not a list"},
        /* control characters in quoted input never reach the terminal raw */
        {HEAD "spec: {runtime: \"\\e[31mred\"}\n",
         "t.yaml:5:17: error: spec.runtime: \"\\x1b[31mred\" is not one of "
         "default|gvisor|crun|runc"},
    };
    for (size_t i = 0; i < STK_ARRAY_SIZE(cases); i++) {
        _cleanup_free_ char *got = parse_err(cases[i].in);
        if (strcmp(got, cases[i].want))
            fail_msg("case %zu:\n got: %s\nwant: %s", i, got, cases[i].want);
    }
}

static void test_loader_limits(void **state)
{
    (void)state;
    /* depth */
    struct stk_buf deep = {0};
    stk_buf_puts(&deep, HEAD "spec: ");
    for (int i = 0; i < STK_LIMIT_DEPTH + 2; i++)
        stk_buf_putc(&deep, '[');
    _cleanup_free_ char *e1 = parse_err(stk_buf_str(&deep));
    assert_non_null(strstr(e1, "nesting deeper than 32 levels"));
    stk_buf_free(&deep);

    /* documents per file */
    struct stk_buf many = {0};
    for (int i = 0; i < STK_LIMIT_DOCUMENTS + 1; i++)
        stk_buf_puts(&many, "---\n" HEAD);
    _cleanup_free_ char *e2 = parse_err(stk_buf_str(&many));
    assert_non_null(strstr(e2, "more than 64 documents in one file"));
    stk_buf_free(&many);

    /* file size */
    size_t big = STK_LIMIT_FILE_BYTES + 1;
    char *huge = stk_xmalloc(big + 1);
    memset(huge, '#', big);
    huge[big] = '\0';
    _cleanup_free_ char *e3 = parse_err(huge);
    assert_non_null(strstr(e3, "input is 1048577 bytes; the limit is 1048576 bytes"));
    free(huge);

    /* values per document */
    struct stk_buf wide = {0};
    stk_buf_puts(&wide, HEAD "spec:\n  args: [");
    for (int i = 0; i < STK_LIMIT_NODES; i++)
        stk_buf_puts(&wide, "1,");
    stk_buf_puts(&wide, "1]\n");
    _cleanup_free_ char *e4 = parse_err(stk_buf_str(&wide));
    assert_non_null(strstr(e4, "more than 65536 values"));
    stk_buf_free(&wide);

    /* list length from the field table */
    struct stk_buf list = {0};
    stk_buf_puts(&list, HEAD "spec:\n  command: [");
    for (int i = 0; i < 257; i++)
        stk_buf_puts(&list, "x,");
    stk_buf_puts(&list, "x]\n");
    _cleanup_free_ char *e5 = parse_err(stk_buf_str(&list));
    assert_string_equal(e5, "t.yaml:6:12: error: spec.command: has 258 items; the limit is 256");
    stk_buf_free(&list);

    /* string length from the field table */
    struct stk_buf str = {0};
    stk_buf_puts(&str, HEAD "spec:\n  workingDir: /");
    for (int i = 0; i < 4100; i++)
        stk_buf_putc(&str, 'a');
    stk_buf_putc(&str, '\n');
    _cleanup_free_ char *e6 = parse_err(stk_buf_str(&str));
    assert_string_equal(
        e6, "t.yaml:6:15: error: spec.workingDir: is 4101 bytes long; the limit is 4096");
    stk_buf_free(&str);
}

static void test_all_errors_in_one_pass(void **state)
{
    (void)state;
    const char *text = HEAD "spec:\n  runtime: kata\n  security:\n    polcy: baseline\n"
                            "  resources:\n    memory: lots\n    pids: 1\n";
    struct stk_diags d = {0};
    struct stk_docset *ds = NULL;
    assert_true(stk_docset_parse("t.yaml", text, strlen(text), &d, &ds) < 0);
    assert_int_equal(d.n_errors, 4);
    static const char *const want[] = {
        "t.yaml:6:12: error: spec.runtime: \"kata\" is not one of default|gvisor|crun|runc",
        "t.yaml:8:5: error: spec.security.polcy: unknown field \"polcy\"; did you mean \"policy\"?",
        ("t.yaml:10:13: error: spec.resources.memory: \"lots\": expected a number with an "
         "optional suffix, e.g. 500m, 2, 512Mi, 1Gi"),
        "t.yaml:11:11: error: spec.resources.pids: 1 is below the minimum of 8",
    };
    for (size_t i = 0; i < STK_ARRAY_SIZE(want); i++) {
        _cleanup_free_ char *got = stk_diag_format(&d.items[i]);
        assert_string_equal(got, want[i]);
    }
    stk_diags_free(&d);
}

/* ---- every field ------------------------------------------------------------------ */

/* Walks the field table and fails on any field that none of the objects
 * sets: the full example must exercise every field (alternatives, like an
 * env var's value or valueFrom, may be spread over a list's items). */
static void assert_all_set(const struct stk_field *fields, const void *const *objs, size_t n,
                           const char *prefix)
{
    for (const struct stk_field *f = fields; f->name; f++) {
        if (f->type == STK_F_REJECT)
            continue;
        if (!f->doc || !f->doc[0])
            fail_msg("field %s%s has no documentation", prefix, f->name);
        if (f->type == STK_F_ENUM)
            assert_true(f->values && f->n_values > 0);
        /* the values of this field in every object that sets it */
        size_t cap = 0, m = 0;
        const void **sub = NULL;
        for (size_t i = 0; i < n; i++) {
            const void *v = (const char *)objs[i] + f->offset;
            if (!((const struct stk_meta *)v)->set)
                continue;
            if (f->type == STK_F_LIST) {
                struct {
                    struct stk_meta meta;
                    void *items;
                    uint32_t n;
                } list;
                memcpy(&list, v, sizeof(list));
                for (uint32_t j = 0; j < list.n; j++) {
                    if (m == cap)
                        sub = stk_xrealloc(sub, (cap = cap * 2 + 8) * sizeof(*sub));
                    sub[m++] = (const char *)list.items + j * f->elem_size;
                }
            } else {
                if (m == cap)
                    sub = stk_xrealloc(sub, (cap = cap * 2 + 8) * sizeof(*sub));
                sub[m++] = v;
            }
        }
        if (m == 0)
            fail_msg("field %s%s is not set by the full example", prefix, f->name);
        _cleanup_free_ char *path = stk_xasprintf("%s%s.", prefix, f->name);
        if (f->type == STK_F_OBJECT || (f->type == STK_F_LIST && f->elem == STK_F_OBJECT))
            assert_all_set(f->fields, sub, m, path);
        free(sub);
    }
}

static struct stk_docset *load_ok(const char *path)
{
    struct stk_diags d = {0};
    struct stk_docset *ds = NULL;
    if (stk_docset_load(path, &d, &ds) < 0) {
        for (size_t i = 0; i < d.n; i++) {
            _cleanup_free_ char *line = stk_diag_format(&d.items[i]);
            print_message("%s\n", line);
        }
        fail_msg("%s did not load", path);
    }
    stk_diags_free(&d);
    return ds;
}

static void test_full_sandbox_every_field(void **state)
{
    (void)state;
    static const char *const files[] = {DATA "full-sandbox.yaml", DATA "full-sandbox.json"};
    for (size_t fi = 0; fi < STK_ARRAY_SIZE(files); fi++) {
        struct stk_docset *ds = load_ok(files[fi]);
        assert_int_equal(ds->n, 1);
        const struct stk_sandbox *sb = ds->docs[0].sandbox;
        const void *objs[] = {sb};
        assert_all_set(stk_sandbox_fields, objs, 1, "");
        const struct stk_sandbox_spec *s = &sb->spec;

        assert_string_equal(sb->metadata.name.v, "full");
        assert_string_equal(sb->metadata.namespace.v, "team-a");
        assert_string_equal(sb->metadata.labels.items[0].key, "app.kubernetes.io/name");
        assert_string_equal(sb->metadata.annotations.items[0].value, "any text: here");
        assert_true(stk_startswith(s->image.v, "registry.example.com:5000/team/tool:1.2@sha256:"));
        assert_string_equal(s->rootfs.v, "/srv/rootfs/debian");
        assert_string_equal(s->command.items[1].v, "-c");
        assert_string_equal(s->args.items[0].v, "echo multi\necho line\n");
        assert_string_equal(s->env.items[0].value.v, "hello");
        assert_string_equal(s->env.items[1].value_from.config_map_key_ref.key.v, "greeting");
        assert_true(s->env.items[1].value_from.config_map_key_ref.optional.v);
        assert_string_equal(s->env_from.items[0].prefix.v, "CFG_");
        assert_false(s->env_from.items[0].config_map_ref.optional.v);
        assert_string_equal(s->working_dir.v, "/workspace/src");
        assert_int_equal(s->deployment.model.v, STK_MODEL_INJECTION);
        assert_int_equal(s->deployment.target.kind.v, STK_WORKLOAD_STATEFULSET);
        assert_string_equal(s->deployment.target.container.v, "postgres");
        assert_int_equal(s->runtime.v, STK_RUNTIME_GVISOR);
        assert_int_equal(s->security.policy.v, STK_POLICY_BASELINE);
        assert_true(s->security.kubernetes_access.v);
        assert_int_equal(s->security.kubernetes_role.v, STK_ROLE_EDIT);
        assert_string_equal(s->security.capabilities.add.items[1].v, "CHOWN");
        assert_false(s->security.registry.v);
        assert_false(s->security.docker.v);
        assert_true(s->network.external_egress.v);
        char cb[STK_CIDR_STRLEN];
        assert_string_equal(stk_cidr_format(&s->network.egress.items[0].cidr.v, cb),
                            "203.0.113.0/24");
        assert_string_equal(stk_cidr_format(&s->network.egress.items[0].except.items[0].v, cb),
                            "203.0.113.128/25");
        assert_int_equal(s->network.egress.items[0].ports.items[0].end_port.v, 8080);
        const struct stk_internal_egress *ie = &s->network.internal_egress.items[0];
        assert_string_equal(ie->namespace.v, "monitoring");
        assert_string_equal(ie->pod_selector.match_labels.items[0].value, "prometheus");
        assert_int_equal(ie->pod_selector.match_expressions.items[0].op.v, STK_SEL_IN);
        assert_int_equal(ie->ports.items[0].protocol.v, STK_PROTO_UDP);
        assert_int_equal(s->resources.cpu.v, 1500);
        assert_int_equal(s->resources.memory.v, INT64_C(3) << 29);
        assert_int_equal(s->resources.pids.v, 512);
        assert_int_equal(s->resources.wall_clock.v, 5400000);
        assert_int_equal(s->resources.cpu_time.v, 90000);
        assert_int_equal(s->resources.storage.v, INT64_C(10) << 30);
        assert_int_equal(s->storage.home.size.v, INT64_C(20) << 30);
        assert_true(s->storage.home.persist.v);
        assert_string_equal(s->storage.home.storage_class_name.v, "fast-ssd");
        const struct stk_binding *bd = &s->bindings.items[0];
        assert_string_equal(bd->url.v, "https://api.github.com");
        assert_int_equal(bd->credential.source.v, STK_CRED_KUBERNETES_SECRET);
        assert_string_equal(bd->credential.ref.v, "team-a/github-token");
        assert_string_equal(bd->inject.format.v, "token {value}");
        assert_true(s->vcluster.v);
        const struct stk_kube_config *k = &s->driver_config.kubernetes;
        assert_string_equal(k->runtime_class_name.v, "gvisor");
        assert_string_equal(k->node_selector.items[0].value, "untrusted");
        assert_int_equal(k->tolerations.items[0].effect.v, STK_EFFECT_NOEXECUTE);
        assert_int_equal(k->tolerations.items[0].toleration_seconds.v, 60);
        assert_int_equal(k->allocation.mode.v, STK_ALLOC_WARMPOOL);
        assert_string_equal(k->allocation.warm_pool.v, "small");
        assert_int_equal(s->driver_config.local.tmp_size.v, INT64_C(128) << 20);
        assert_int_equal(s->driver_config.local.shm_size.v, INT64_C(32) << 20);
        stk_docset_free(ds);
    }
}

static void test_full_environment_every_field(void **state)
{
    (void)state;
    struct stk_docset *ds = load_ok(DATA "full-environment.yaml");
    const struct stk_envconfig *e = ds->docs[0].env;
    assert_int_equal(ds->docs[0].kind, STK_KIND_ENVCONFIG);
    const void *objs[] = {e};
    assert_all_set(stk_envconfig_fields, objs, 1, "");
    assert_int_equal(e->data.defaults.security.policy.v, STK_POLICY_BASELINE);
    assert_true(e->data.defaults.security.external_egress.v);
    assert_int_equal(e->data.defaults.runtime.v, STK_RUNTIME_RUNC);
    assert_int_equal(e->data.limits.resources.wall_clock.v, 86400000);
    assert_int_equal(e->data.network.external_egress_cidrs.n, 2);
    assert_int_equal(e->data.network.exclude_policies.items[0].v, STK_NETPOL_INTERNAL);
    assert_int_equal(e->data.retention.audit_days.v, 400);
    stk_docset_free(ds);
}

static void test_full_access_policy_every_field(void **state)
{
    (void)state;
    struct stk_docset *ds = load_ok(DATA "full-access-policy.yaml");
    assert_int_equal(ds->docs[0].kind, STK_KIND_ACCESS_POLICY);
    const struct stk_access_policy *ap = ds->docs[0].access;
    const void *objs[] = {ap};
    assert_all_set(stk_access_policy_fields, objs, 1, "");
    const struct stk_access_spec *s = &ap->spec;
    assert_string_equal(s->authentication.tokens.items[0].id.v, "controller");
    assert_int_equal(s->authentication.oidc.items[0].algorithms.items[0].v, STK_JWT_ES256);
    assert_int_equal(s->authentication.oidc.items[0].clock_skew.v, 90000);
    assert_false(s->authentication.oidc.items[0].jwks_url.meta.set);
    assert_string_equal(s->authentication.oidc.items[1].jwks_url.v,
                        "https://login.example.com/.well-known/jwks.json");
    assert_false(s->authentication.oidc.items[1].jwks_file.meta.set);
    assert_string_equal(s->authentication.client_certificates.ca_file.v,
                        "/etc/stockade/clients-ca.pem");
    assert_int_equal(s->identities.n, 4);
    assert_int_equal(s->identities.items[0].kind.v, STK_IDENTITY_PLATFORM_CONTROLLER);
    assert_string_equal(s->identities.items[1].match.subject.v, "1234");
    assert_string_equal(s->identities.items[2].match.claims.items[1].value, "ops@example.com");
    assert_string_equal(s->identities.items[3].match.certificate_subject.v, "CN=auditor,O=acme");
    const struct stk_access_scope *sc = &s->grants.items[0].scope;
    assert_int_equal(s->grants.items[0].verbs.n, STK_ACCESS_VERBS);
    assert_false(sc->owned.v);
    assert_int_equal(sc->max_policy.v, STK_POLICY_BASELINE);
    assert_int_equal(sc->runtimes.items[1].v, STK_RUNTIME_CRUN);
    assert_string_equal(sc->driver_config_keys.items[1].v, "kubernetes.allocation");
    assert_int_equal(sc->allocation.items[1].v, STK_ALLOCATION_WARM);
    assert_true(sc->on_behalf_of.v);
    assert_false(s->grants.items[1].scope.meta.set);
    stk_docset_free(ds);
}

#define AP_HEAD                                                                                    \
    "apiVersion: stockade.dev/v1alpha1\nkind: AccessPolicy\nmetadata: {name: p}\nspec:\n"
#define SHA_A "c1642e5b544401b66b42479ef55919b9a732591acdc91090cd56e709e32afbd8"

/* The limits have their own messages, and a clean document passes the
 * cross-field rules. */
static void test_access_policy_limits(void **state)
{
    (void)state;
    struct stk_buf b = {0};
    stk_buf_puts(&b, AP_HEAD "  authentication:\n    tokens:\n");
    for (int i = 0; i < STK_LIMIT_AP_TOKENS + 1; i++)
        stk_buf_printf(&b, "      - {id: t%d, sha256: \"%064x\"}\n", i, i);
    _cleanup_free_ char *e = parse_err(stk_buf_str(&b));
    assert_string_equal(e, "t.yaml:7:7: error: spec.authentication.tokens: has 257 items; the "
                           "limit is 256");
    stk_buf_free(&b);

    stk_buf_puts(&b, AP_HEAD "  grants:\n    - identities: [x]\n      verbs: [get]\n"
                             "      scope:\n        namespaces: [");
    for (int i = 0; i < STK_LIMIT_AP_PATTERNS + 1; i++)
        stk_buf_printf(&b, "%sns-%d", i ? ", " : "", i);
    stk_buf_puts(&b, "]\n");
    _cleanup_free_ char *e2 = parse_err(stk_buf_str(&b));
    assert_string_equal(e2, "t.yaml:9:21: error: spec.grants[0].scope.namespaces: has 65 items; "
                            "the limit is 64");
    stk_buf_free(&b);

    /* exactly at the limit is fine */
    stk_buf_puts(&b, AP_HEAD "  authentication:\n    tokens:\n");
    for (int i = 0; i < STK_LIMIT_AP_TOKENS; i++)
        stk_buf_printf(&b, "      - {id: t%d, sha256: \"%064x\"}\n", i, i);
    stk_docset_free(parse_ok(stk_buf_str(&b)));
    stk_buf_free(&b);
}

static void test_access_policy_messages(void **state)
{
    (void)state;
    static const struct {
        const char *text, *want;
    } cases[] = {
        {AP_HEAD "  authentication:\n    oidc:\n      - {issuer: https://i.example, audience: a, "
                 "jwksFile: /j, clockSkew: 6m}\n",
         "t.yaml:7:75: error: spec.authentication.oidc[0].clockSkew: 6m is above the limit of 5m"},
        {AP_HEAD "  identities:\n    - {name: u, kind: end-user, match: {token: t}}\n",
         "t.yaml:6:48: error: spec.identities[0].match.token: no token \"t\" in "
         "spec.authentication.tokens"},
        {AP_HEAD "  authentication: {tokens: [{id: t, sha256: " SHA_A "}]}\n"
                 "  identities:\n    - {name: u, kind: end-user, match: {token: t}}\n",
         "t.yaml:7:7: error: spec.identities[0]: missing required field \"tenant\" (an end-user "
         "identity belongs to a tenant)"},
        {AP_HEAD "  grants:\n    - {identities: [ghost], verbs: [get]}\n",
         "t.yaml:6:21: error: spec.grants[0].identities[0]: no identity \"ghost\" in "
         "spec.identities"},
        {AP_HEAD "  grants:\n    - {identities: [], verbs: [get], scope: {ownd: true}}\n",
         "t.yaml:6:46: error: spec.grants[0].scope.ownd: unknown field \"ownd\"; did you mean "
         "\"owned\"?"},
        {AP_HEAD "  grants:\n    - {identities: [], verbs: [get], scope: {driverConfigKeys: "
                 "[kubernetes.allocaton]}}\n",
         "t.yaml:6:65: error: spec.grants[0].scope.driverConfigKeys[0]: "
         "\"kubernetes.allocaton\" is not a key under spec.driverConfig; did you mean "
         "\"kubernetes.allocation\"?"},
        {AP_HEAD "  authentication: {oidc: [{issuer: https://i.example, audience: a, jwksFile: "
                 "/j}]}\n  identities:\n    - {name: u, kind: end-user, tenant: t, match: "
                 "{issuer: https://i.example, claims: {}}}\n",
         "t.yaml:7:87: error: spec.identities[0].match.claims: must not be empty: it would match "
         "everyone"},
    };
    for (size_t i = 0; i < STK_ARRAY_SIZE(cases); i++) {
        _cleanup_free_ char *got = parse_err(cases[i].text);
        assert_string_equal(got, cases[i].want);
    }
}

static void test_driver_config_keys(void **state)
{
    (void)state;
    struct stk_docset *ds = parse_ok(HEAD "spec:\n  driverConfig:\n    local: {shmSize: 8Mi}\n"
                                          "    kubernetes:\n      nodeSelector: {a: b}\n"
                                          "      allocation: {mode: direct}\n");
    _cleanup_arena_ struct stk_arena *a = stk_arena_new();
    const char **keys = NULL;
    size_t n = stk_driver_config_keys(&ds->docs[0].sandbox->spec.driver_config, a, &keys);
    assert_int_equal(n, 3);
    assert_string_equal(keys[0], "kubernetes.nodeSelector");
    assert_string_equal(keys[1], "kubernetes.allocation.mode");
    assert_string_equal(keys[2], "local.shmSize");
    assert_true(stk_driver_config_key_known("kubernetes"));
    assert_true(stk_driver_config_key_known("kubernetes.allocation.warmPool"));
    assert_false(stk_driver_config_key_known("kubernetes.nodeSelector.a"));
    assert_false(stk_driver_config_key_known("local."));
    assert_false(stk_driver_config_key_known(""));
    stk_docset_free(ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_enum_tables_round_trip),
        cmocka_unit_test(test_quantities),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_formats),
        cmocka_unit_test(test_string_formats),
        cmocka_unit_test(test_yaml_and_json_agree),
        cmocka_unit_test(test_multiple_documents),
        cmocka_unit_test(test_loader_errors),
        cmocka_unit_test(test_loader_limits),
        cmocka_unit_test(test_all_errors_in_one_pass),
        cmocka_unit_test(test_full_sandbox_every_field),
        cmocka_unit_test(test_full_environment_every_field),
        cmocka_unit_test(test_full_access_policy_every_field),
        cmocka_unit_test(test_access_policy_limits),
        cmocka_unit_test(test_access_policy_messages),
        cmocka_unit_test(test_driver_config_keys),
    };
    return cmocka_run_group_tests_name("spec", tests, NULL, NULL);
}
