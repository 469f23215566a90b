/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Kubernetes API client against the double in kube_double.c (HTTPS on
 * 127.0.0.1, the fixture CA in tests/data/kube/): kubeconfig and in-cluster
 * access, every verb, Status errors, watch faults (drops, 410, 5xx), logs.
 * With STOCKADE_TEST_KUBECONFIG set, test_kube_real.c does the same against a
 * real cluster.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <pty.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>

#include "driver/kubernetes/kube.h"
#include "driver/kubernetes/proxylog.h"
#include "kube_double.h"

#define DATA STK_SOURCE_ROOT "/tests/data/kube"

static struct {
    struct kube_double d, ws5, ws4;
    char ws5_cfg[128], ws4_cfg[128];
    char dir[64]; /* kubeconfigs with the double's port, fixture files linked */
    char data_cfg[128], files_cfg[128];
} G;

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "re");
    assert_non_null(f);
    struct stk_buf b = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        stk_buf_append(&b, chunk, n);
    fclose(f);
    return stk_buf_steal(&b);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "we");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

/* A fixture kubeconfig with @PORT@ replaced, written into G.dir. */
static void with_port_as(const char *name, int port_num, const char *as, char *out, size_t outsz)
{
    _cleanup_free_ char *src = stk_xasprintf("%s/%s", DATA, name);
    _cleanup_free_ char *text = slurp(src);
    struct stk_buf b = {0};
    char port[16];
    snprintf(port, sizeof(port), "%d", port_num);
    for (const char *p = text; *p;) {
        const char *at = strstr(p, "@PORT@");
        if (!at) {
            stk_buf_puts(&b, p);
            break;
        }
        stk_buf_append(&b, p, (size_t)(at - p));
        stk_buf_puts(&b, port);
        p = at + 6;
    }
    snprintf(out, outsz, "%s/%s", G.dir, as);
    write_file(out, stk_buf_str(&b));
    stk_buf_free(&b);
}

static void with_port(const char *name, char *out, size_t outsz)
{
    with_port_as(name, G.d.port, name, out, outsz);
}

static int group_setup(void **state)
{
    (void)state;
    unsetenv("KUBECONFIG");
    assert_int_equal(kube_double_start(DATA, &G.d), 0);
    snprintf(G.dir, sizeof(G.dir), "/tmp/stk-kube-XXXXXX");
    assert_non_null(mkdtemp(G.dir));
    static const char *const links[] = {"ca.crt", "client.crt", "client.key", "other-ca.crt",
                                        "token"};
    for (size_t i = 0; i < STK_ARRAY_SIZE(links); i++) {
        _cleanup_free_ char *from = stk_xasprintf("%s/%s", DATA, links[i]);
        _cleanup_free_ char *to = stk_xasprintf("%s/%s", G.dir, links[i]);
        assert_int_equal(symlink(from, to), 0);
    }
    with_port("kubeconfig-data.yaml", G.data_cfg, sizeof(G.data_cfg));
    with_port("kubeconfig-files.yaml", G.files_cfg, sizeof(G.files_cfg));
    assert_int_equal(kube_ws_double_start(DATA, true, &G.ws5), 0);
    assert_int_equal(kube_ws_double_start(DATA, false, &G.ws4), 0);
    with_port_as("kubeconfig-data.yaml", G.ws5.port, "ws5.yaml", G.ws5_cfg, sizeof(G.ws5_cfg));
    with_port_as("kubeconfig-data.yaml", G.ws4.port, "ws4.yaml", G.ws4_cfg, sizeof(G.ws4_cfg));
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    kube_double_stop(&G.d);
    kube_double_stop(&G.ws5);
    kube_double_stop(&G.ws4);
    _cleanup_free_ char *cmd = stk_xasprintf("rm -rf '%s'", G.dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static struct stk_kube *open_ctx(const char *cfg, const char *context)
{
    struct stk_kube_opts o = {.kubeconfig = cfg, .context = context};
    _cleanup_(stk_kubeconfig_freep) struct stk_kubeconfig *c = NULL;
    _cleanup_error_ struct stk_error *err = NULL;
    int r = stk_kubeconfig_load(&o, &c, &err);
    if (r < 0)
        fail_msg("%s", err->msg);
    struct stk_kube *k = NULL;
    assert_int_equal(stk_kube_open(c, &k, &err), 0);
    return k;
}

static struct stk_kube *open_double(void)
{
    return open_ctx(G.data_cfg, NULL);
}

static json_t *parse(const char *text)
{
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    if (!j)
        fail_msg("%s: %s", text, je.text);
    return j;
}

static void apply_text(struct stk_kube *k, const char *text)
{
    json_auto_t *o = parse(text);
    _cleanup_error_ struct stk_error *err = NULL;
    int r = stk_kube_apply(k, o, NULL, &err);
    if (r < 0)
        fail_msg("%s", err->msg);
}

static void fault(struct stk_kube *k, const char *name, int count, long value)
{
    _cleanup_free_ char *path =
        stk_xasprintf("/_double/fault?name=%s&count=%d&value=%ld", name, count, value);
    long status = 0;
    _cleanup_error_ struct stk_error *err = NULL;
    assert_int_equal(stk_kube_request(k, "POST", path, NULL, NULL, &status, NULL, &err), 0);
    assert_int_equal(status, 200);
}

static void ensure_ns(struct stk_kube *k, const char *ns)
{
    _cleanup_free_ char *t = stk_xasprintf(
        "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"%s\"}}", ns);
    apply_text(k, t);
}

/* ---- kubeconfig ---------------------------------------------------------- */

static void test_config_data(void **state)
{
    (void)state;
    struct stk_kube_opts o = {.kubeconfig = G.data_cfg};
    _cleanup_(stk_kubeconfig_freep) struct stk_kubeconfig *c = NULL;
    _cleanup_error_ struct stk_error *err = NULL;
    assert_int_equal(stk_kubeconfig_load(&o, &c, &err), 0);
    assert_string_equal(stk_kubeconfig_context(c), "double");
    char want[64];
    snprintf(want, sizeof(want), "https://127.0.0.1:%d", G.d.port);
    assert_string_equal(stk_kubeconfig_server(c), want);
    assert_string_equal(stk_kubeconfig_namespace(c), "team-a");

    o.context = "token";
    _cleanup_(stk_kubeconfig_freep) struct stk_kubeconfig *c2 = NULL;
    assert_int_equal(stk_kubeconfig_load(&o, &c2, &err), 0);
    assert_string_equal(stk_kubeconfig_namespace(c2), "default");

    o.context = "nope";
    _cleanup_(stk_kubeconfig_freep) struct stk_kubeconfig *c3 = NULL;
    assert_int_equal(stk_kubeconfig_load(&o, &c3, &err), -ENOENT);
    assert_non_null(strstr(err->msg, "no context named \"nope\""));
    assert_null(c3);
}

static void test_config_env_and_files(void **state)
{
    (void)state;
    /* $KUBECONFIG: the first file of the list */
    _cleanup_free_ char *list = stk_xasprintf("%s:/nonexistent", G.files_cfg);
    setenv("KUBECONFIG", list, 1);
    _cleanup_(stk_kubeconfig_freep) struct stk_kubeconfig *c = NULL;
    _cleanup_error_ struct stk_error *err = NULL;
    struct stk_kube_opts o = {0};
    int r = stk_kubeconfig_load(&o, &c, &err);
    unsetenv("KUBECONFIG");
    if (r < 0)
        fail_msg("%s", err->msg);
    assert_string_equal(stk_kubeconfig_context(c), "files");
    /* the trailing '/' of the server is dropped */
    assert_null(strstr(stk_kubeconfig_server(c) + 8, "/"));

    /* relative client certificate and key work against the double */
    _cleanup_(stk_kube_closep) struct stk_kube *k = open_ctx(G.files_cfg, NULL);
    ensure_ns(k, "files");
    /* tokenFile, relative */
    _cleanup_(stk_kube_closep) struct stk_kube *k2 = open_ctx(G.files_cfg, "tokenfile");
    ensure_ns(k2, "files");

    /* a context whose user does not exist */
    o.kubeconfig = G.files_cfg;
    o.context = "no-user";
    _cleanup_(stk_kubeconfig_freep) struct stk_kubeconfig *c2 = NULL;
    assert_int_equal(stk_kubeconfig_load(&o, &c2, &err), -ENOENT);
    assert_non_null(strstr(err->msg, "no user named \"nobody\""));

    /* a missing file */
    stk_error_free(err);
    err = NULL;
    o.kubeconfig = "/nonexistent/kubeconfig";
    o.context = NULL;
    assert_int_equal(stk_kubeconfig_load(&o, &c2, &err), -ENOENT);
    assert_non_null(strstr(err->msg, "/nonexistent/kubeconfig"));
}

static void test_config_refused(void **state)
{
    (void)state;
    static const struct {
        const char *context;
        int code;
        const char *msg;
    } cases[] = {
        {"insecure", -EPERM, "insecure-skip-tls-verify: true is refused"},
        {"plain-http", -EINVAL, "only https:// servers are supported"},
        {"exec", -ENOTSUP, "users[exec].user.exec: exec credential plugins are not supported"},
        {"auth-provider", -ENOTSUP, "auth-provider plugins are not supported"},
        {"both-ca", -EINVAL, "a client certificate needs its key"},
    };
    for (size_t i = 0; i < STK_ARRAY_SIZE(cases); i++) {
        struct stk_kube_opts o = {.kubeconfig = DATA "/kubeconfig-refused.yaml",
                                  .context = cases[i].context};
        _cleanup_(stk_kubeconfig_freep) struct stk_kubeconfig *c = NULL;
        _cleanup_error_ struct stk_error *err = NULL;
        assert_int_equal(stk_kubeconfig_load(&o, &c, &err), cases[i].code);
        if (!strstr(err->msg, cases[i].msg))
            fail_msg("%s: %s", cases[i].context, err->msg);
        assert_null(c);
    }
}

static void test_config_parse_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text, *msg;
    } cases[] = {
        {"- a\n- b\n", "not one kubeconfig document"},
        {"apiVersion: v1\nclusters: []\n", "no current-context"},
        {"current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\nclusters: [{name: "
         "c, cluster: {server: 'https://h', certificate-authority-data: '!!notbase64'}}]\n",
         "not base64"},
        {"current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\nclusters: [{name: "
         "c, cluster: {server: 'https://h', certificate-authority-data: aGVsbG8=}}]\n",
         "not PEM data"},
        {"current-context: x\ncontexts: [{name: x, context: {cluster: c, namespace: Bad_NS}}]\n"
         "clusters: [{name: c, cluster: {server: 'https://h'}}]\n",
         "is not a DNS label"},
        {"current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\nclusters: [{name: "
         "c, cluster: {server: 'https://h', proxy-url: 'http://p'}}]\n",
         "proxy-url: not supported"},
        {"current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\nclusters: [{name: "
         "c, cluster: {}}]\n",
         "server: missing"},
    };
    for (size_t i = 0; i < STK_ARRAY_SIZE(cases); i++) {
        _cleanup_(stk_kubeconfig_freep) struct stk_kubeconfig *c = NULL;
        _cleanup_error_ struct stk_error *err = NULL;
        int r =
            stk_kubeconfig_parse(cases[i].text, strlen(cases[i].text), "kc", NULL, NULL, &c, &err);
        assert_true(r < 0);
        if (!strstr(err->msg, cases[i].msg))
            fail_msg("case %zu: %s", i, err->msg);
    }
}

static void test_config_in_cluster(void **state)
{
    (void)state;
    char sa[128];
    snprintf(sa, sizeof(sa), "%s/sa", G.dir);
    mkdir(sa, 0700);
    _cleanup_free_ char *ca = stk_xasprintf("%s/ca.crt", sa);
    _cleanup_free_ char *tok = stk_xasprintf("%s/token", sa);
    _cleanup_free_ char *ns = stk_xasprintf("%s/namespace", sa);
    _cleanup_free_ char *ca_text = slurp(DATA "/ca.crt");
    write_file(ca, ca_text);
    write_file(tok, KUBE_DOUBLE_TOKEN "\n");
    write_file(ns, "sandboxes\n");
    _cleanup_free_ char *empty_home = stk_xasprintf("%s/home", G.dir);
    mkdir(empty_home, 0700);
    _cleanup_free_ char *old_home = getenv("HOME") ? stk_xstrdup(getenv("HOME")) : NULL;
    char port[16];
    snprintf(port, sizeof(port), "%d", G.d.port);
    setenv("HOME", empty_home, 1);
    setenv(STK_KUBE_SA_DIR_ENV, sa, 1);
    setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", port, 1);
    _cleanup_(stk_kubeconfig_freep) struct stk_kubeconfig *c = NULL;
    _cleanup_error_ struct stk_error *err = NULL;
    struct stk_kube_opts o = {0};
    int r = stk_kubeconfig_load(&o, &c, &err);
    unsetenv("KUBERNETES_SERVICE_HOST");
    _cleanup_(stk_kubeconfig_freep) struct stk_kubeconfig *none = NULL;
    _cleanup_error_ struct stk_error *err2 = NULL;
    int r2 = stk_kubeconfig_load(&o, &none, &err2);
    unsetenv("KUBERNETES_SERVICE_PORT");
    unsetenv(STK_KUBE_SA_DIR_ENV);
    if (old_home)
        setenv("HOME", old_home, 1);
    if (r < 0)
        fail_msg("%s", err->msg);
    assert_string_equal(stk_kubeconfig_context(c), "in-cluster");
    assert_string_equal(stk_kubeconfig_namespace(c), "sandboxes");
    assert_int_equal(r2, -ENOENT);
    assert_non_null(strstr(err2->msg, "not in a cluster"));

    /* the token file is read per request: a rotated token is used */
    _cleanup_(stk_kube_closep) struct stk_kube *k = NULL;
    assert_int_equal(stk_kube_open(c, &k, &err), 0);
    ensure_ns(k, "in-cluster");
    write_file(tok, "rotated-bad-token\n");
    json_auto_t *o2 = parse("{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":"
                            "{\"name\":\"x\"}}");
    assert_int_equal(stk_kube_apply(k, o2, NULL, &err), -EPERM);
    assert_non_null(strstr(err->msg, "401"));
    assert_null(strstr(err->msg, "rotated-bad-token"));
}

/* ---- verbs ------------------------------------------------------------------ */

static void test_apply_get_list_delete(void **state)
{
    (void)state;
    _cleanup_(stk_kube_closep) struct stk_kube *k = open_double();
    ensure_ns(k, "ns1");
    json_auto_t *cm = parse("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":"
                            "\"cm1\",\"namespace\":\"ns1\",\"labels\":{\"app\":\"x\"}},"
                            "\"data\":{\"a\":\"1\"}}");
    _cleanup_error_ struct stk_error *err = NULL;
    json_t *live = NULL;
    assert_int_equal(stk_kube_apply(k, cm, &live, &err), 0);
    json_auto_t *live1 = live;
    const char *uid = json_string_value(json_object_get(json_object_get(live1, "metadata"), "uid"));
    assert_non_null(uid);
    /* idempotent: the same uid, applied again */
    json_auto_t *live2 = NULL;
    assert_int_equal(stk_kube_apply(k, cm, &live2, &err), 0);
    assert_string_equal(
        uid, json_string_value(json_object_get(json_object_get(live2, "metadata"), "uid")));

    struct stk_kube_ref r = {
        .api_version = "v1", .kind = "ConfigMap", .namespace = "ns1", .name = "cm1"};
    json_auto_t *got = NULL;
    assert_int_equal(stk_kube_get(k, &r, &got, &err), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(got, "data"), "a")), "1");

    /* paged list with a selector */
    for (int i = 2; i <= 4; i++) {
        _cleanup_free_ char *t = stk_xasprintf(
            "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"cm%d\","
            "\"namespace\":\"ns1\",\"labels\":{\"app\":\"%s\"}}}",
            i, i == 4 ? "y" : "x");
        apply_text(k, t);
    }
    fault(k, "page_size", 5, 1);
    json_auto_t *lst = NULL;
    assert_int_equal(stk_kube_list(k, &r, "app=x", &lst, &err), 0);
    assert_int_equal(json_array_size(json_object_get(lst, "items")), 3);
    assert_non_null(
        json_string_value(json_object_get(json_object_get(lst, "metadata"), "resourceVersion")));
    assert_null(json_object_get(json_object_get(lst, "metadata"), "continue"));
    fault(k, "page_size", 0, 0); /* clear what is left */

    /* delete: a uid precondition that fails, then for real, then again */
    assert_int_equal(stk_kube_delete(k, &r, NULL, "not-the-uid", &err), -EAGAIN);
    assert_non_null(strstr(err->msg, "Precondition failed"));
    stk_error_free(err);
    err = NULL;
    assert_int_equal(stk_kube_delete(k, &r, NULL, uid, &err), 1);
    assert_int_equal(stk_kube_delete(k, &r, "Background", NULL, &err), 0);
    json_auto_t *gone = NULL;
    assert_int_equal(stk_kube_get(k, &r, &gone, &err), -ENOENT);
    char want[128];
    snprintf(want, sizeof(want),
             "context double (https://127.0.0.1:%d): get ConfigMap ns1/cm1: 404 NotFound: "
             "configmaps \"cm1\" not found",
             G.d.port);
    assert_string_equal(err->msg, want);
    assert_null(gone);
}

static void test_apply_strict(void **state)
{
    (void)state;
    _cleanup_(stk_kube_closep) struct stk_kube *k = open_double();
    ensure_ns(k, "ns1");
    json_auto_t *bad = parse("{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":"
                             "\"p\",\"namespace\":\"ns1\"},\"spec\":{\"containerz\":[]}}");
    _cleanup_error_ struct stk_error *err = NULL;
    assert_int_equal(stk_kube_apply(k, bad, NULL, &err), -EINVAL);
    if (!strstr(err->msg, "apply Pod ns1/p: 500: failed to create typed patch object (ns1/p; "
                          "/v1, Kind=Pod): .spec.containerz: field not declared in schema"))
        fail_msg("%s", err->msg);
    assert_null(strstr(err->msg, "transient"));
    assert_non_null(strstr(err->msg, "context double (https://127.0.0.1:"));

    /* an object without a name never leaves the client */
    stk_error_free(err);
    err = NULL;
    json_auto_t *anon = parse("{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{}}");
    assert_int_equal(stk_kube_apply(k, anon, NULL, &err), -EINVAL);
    assert_non_null(strstr(err->msg, "metadata.name are required"));

    /* a namespace that does not exist */
    stk_error_free(err);
    err = NULL;
    json_auto_t *orphan = parse("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{"
                                "\"name\":\"c\",\"namespace\":\"nope\"}}");
    assert_int_equal(stk_kube_apply(k, orphan, NULL, &err), -ENOENT);
}

static void test_patch_conflict(void **state)
{
    (void)state;
    _cleanup_(stk_kube_closep) struct stk_kube *k = open_double();
    ensure_ns(k, "ns1");
    apply_text(k, "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":"
                  "\"claim\",\"namespace\":\"ns1\"}}");
    struct stk_kube_ref r = {
        .api_version = "v1", .kind = "ConfigMap", .namespace = "ns1", .name = "claim"};
    _cleanup_error_ struct stk_error *err = NULL;
    json_auto_t *cur = NULL;
    assert_int_equal(stk_kube_get(k, &r, &cur, &err), 0);
    const char *rv =
        json_string_value(json_object_get(json_object_get(cur, "metadata"), "resourceVersion"));
    json_auto_t *p1 =
        json_pack("{s:{s:s, s:{s:s}}}", "metadata", "resourceVersion", rv, "labels", "owner", "a");
    json_auto_t *p2 =
        json_pack("{s:{s:s, s:{s:s}}}", "metadata", "resourceVersion", rv, "labels", "owner", "b");
    json_auto_t *won = NULL;
    assert_int_equal(stk_kube_patch(k, &r, "application/merge-patch+json", p1, &won, &err), 0);
    /* the second claim with the same resourceVersion loses */
    assert_int_equal(stk_kube_patch(k, &r, "application/merge-patch+json", p2, NULL, &err),
                     -EAGAIN);
    assert_non_null(strstr(err->msg, "409 Conflict"));
    stk_error_free(err);
    err = NULL;
    assert_int_equal(stk_kube_patch(k, &r, "text/plain", p2, NULL, &err), -EINVAL);
}

/* cfg with the value of its line "KEY: ..." replaced, written beside it
 * as name. */
static char *cfg_with(const char *cfg, const char *key, const char *value, const char *name)
{
    _cleanup_free_ char *text = slurp(cfg);
    _cleanup_free_ char *line = stk_xasprintf("%s: ", key);
    char *at = strstr(text, line);
    assert_non_null(at);
    at += strlen(line);
    char *end = strchr(at, '\n');
    assert_non_null(end);
    char *path = stk_xasprintf("%s/%s", G.dir, name);
    _cleanup_free_ char *text2 = stk_xasprintf("%.*s%s%s", (int)(at - text), text, value, end);
    write_file(path, text2);
    return path;
}

/* A kubeconfig of the double's authenticated-but-not-authorized user. */
static char *forbidden_cfg(void)
{
    return cfg_with(G.data_cfg, "token", KUBE_DOUBLE_FORBIDDEN, "forbid.yaml");
}

static void test_errors(void **state)
{
    (void)state;
    _cleanup_(stk_kube_closep) struct stk_kube *k = open_double();
    struct stk_kube_ref r = {.api_version = "v1", .kind = "Namespace", .name = "x"};
    _cleanup_error_ struct stk_error *err = NULL;
    json_auto_t *j = NULL;

    fault(k, "status_503", 1, 0);
    assert_int_equal(stk_kube_get(k, &r, &j, &err), -EIO);
    assert_non_null(strstr(err->msg, "503 ServiceUnavailable"));
    assert_non_null(strstr(err->msg, "transient"));
    stk_error_free(err);
    err = NULL;

    stk_kube_set_timeout(k, 300);
    fault(k, "slow_ms", 1, 2000);
    int64_t t0 = stk_clock_ms(CLOCK_MONOTONIC);
    assert_int_equal(stk_kube_get(k, &r, &j, &err), -ETIMEDOUT);
    assert_true(stk_clock_ms(CLOCK_MONOTONIC) - t0 < 1500);
    stk_error_free(err);
    err = NULL;
    stk_kube_set_timeout(k, 0);

    /* names are checked before anything is sent */
    struct stk_kube_ref bad = {
        .api_version = "v1", .kind = "Pod", .namespace = "ns1", .name = "../secrets"};
    assert_int_equal(stk_kube_get(k, &bad, &j, &err), -EINVAL);
    assert_non_null(strstr(err->msg, "is not a DNS subdomain"));
    stk_error_free(err);
    err = NULL;
    struct stk_kube_ref scoped = {
        .api_version = "v1", .kind = "Namespace", .namespace = "a", .name = "b"};
    assert_int_equal(stk_kube_get(k, &scoped, &j, &err), -EINVAL);
    stk_error_free(err);
    err = NULL;

    /* 403 and 401 */
    _cleanup_(stk_kube_closep) struct stk_kube *tk = open_ctx(G.data_cfg, "token");
    ensure_ns(tk, "tok");
    _cleanup_free_ char *forbid = forbidden_cfg();
    _cleanup_(stk_kube_closep) struct stk_kube *fk = open_ctx(forbid, "token");
    assert_int_equal(stk_kube_get(fk, &r, &j, &err), -EACCES);
    assert_non_null(strstr(err->msg, "403 Forbidden"));
    assert_null(strstr(err->msg, KUBE_DOUBLE_FORBIDDEN));

    /* a server whose certificate the configured CA did not sign */
    stk_error_free(err);
    err = NULL;
    _cleanup_(stk_kube_closep) struct stk_kube *ok = open_ctx(G.files_cfg, "other-ca");
    assert_int_equal(stk_kube_get(ok, &r, &j, &err), -EPROTO);
    assert_non_null(strstr(err->msg, "TLS"));
}

static void test_paths_and_discovery(void **state)
{
    (void)state;
    _cleanup_(stk_kube_closep) struct stk_kube *k = open_double();
    _cleanup_error_ struct stk_error *err = NULL;
    static const struct {
        struct stk_kube_ref r;
        const char *path;
    } cases[] = {
        {{"v1", "Namespace", NULL, "s1"}, "/api/v1/namespaces/s1"},
        {{"v1", "Pod", "ns1", NULL}, "/api/v1/namespaces/ns1/pods"},
        {{"v1", "Pod", NULL, NULL}, "/api/v1/pods"},
        {{"networking.k8s.io/v1", "NetworkPolicy", "ns1", "deny-all"},
         "/apis/networking.k8s.io/v1/namespaces/ns1/networkpolicies/deny-all"},
        {{"rbac.authorization.k8s.io/v1", "ClusterRole", NULL, "system:aggregate-to-view"},
         "/apis/rbac.authorization.k8s.io/v1/clusterroles/system%3Aaggregate-to-view"},
        {{"admissionregistration.k8s.io/v1beta1", "ValidatingAdmissionPolicyBinding", NULL, "g"},
         "/apis/admissionregistration.k8s.io/v1beta1/validatingadmissionpolicybindings/g"},
        {{"agents.x-k8s.io/v1alpha1", "Sandbox", "ns1", "sb"},
         "/apis/agents.x-k8s.io/v1alpha1/namespaces/ns1/sandboxes/sb"},
    };
    for (size_t i = 0; i < STK_ARRAY_SIZE(cases); i++) {
        _cleanup_buf_ struct stk_buf b = {0};
        int r = stk_kube_path(k, &cases[i].r, &b, &err);
        if (r < 0)
            fail_msg("%s", err->msg);
        assert_string_equal(stk_buf_str(&b), cases[i].path);
    }
    assert_int_equal(stk_kube_has_api(k, "agents.x-k8s.io/v1alpha1", &err), 1);
    assert_int_equal(stk_kube_has_api(k, "extensions.agents.x-k8s.io/v1beta1", &err), 1);
    assert_int_equal(stk_kube_has_api(k, "extensions.agents.x-k8s.io/v1alpha1", &err), 0);
    struct stk_kube_ref unknown = {"agents.x-k8s.io/v1alpha1", "Nope", "ns1", "x"};
    _cleanup_buf_ struct stk_buf b = {0};
    assert_int_equal(stk_kube_path(k, &unknown, &b, &err), -ENOENT);
    assert_non_null(strstr(err->msg, "does not serve kind Nope"));
}

/* ---- watch ---------------------------------------------------------------- */

struct seen {
    struct stk_kube *k2; /* a second client: fn must not reuse the watching one */
    int sync, synced, added, modified, deleted;
    int stop_added, stop_synced;
    char names[512];
    bool make;
};

static int on_event(void *ud, const char *type, const json_t *obj)
{
    struct seen *s = ud;
    const char *name = json_string_value(json_object_get(json_object_get(obj, "metadata"), "name"));
    if (strcmp(type, "SYNC") == 0)
        s->sync++;
    else if (strcmp(type, "SYNCED") == 0) {
        s->synced++;
        if (s->make) {
            s->make = false;
            for (int i = 1; i <= 3; i++) {
                _cleanup_free_ char *t = stk_xasprintf(
                    "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":"
                    "\"w%d\",\"namespace\":\"wns\",\"labels\":{\"w\":\"1\"}}}",
                    i);
                apply_text(s->k2, t);
            }
        }
        if (s->stop_synced && s->synced >= s->stop_synced)
            return 7;
    } else if (strcmp(type, "ADDED") == 0) {
        s->added++;
        size_t n = strlen(s->names);
        snprintf(s->names + n, sizeof(s->names) - n, "%s,", name);
        if (s->stop_added && s->added >= s->stop_added)
            return 1;
    } else if (strcmp(type, "MODIFIED") == 0)
        s->modified++;
    else if (strcmp(type, "DELETED") == 0)
        s->deleted++;
    return 0;
}

static void reset_wns(struct stk_kube *k)
{
    ensure_ns(k, "wns");
    struct stk_kube_ref r = {"v1", "ConfigMap", "wns", NULL};
    for (int i = 1; i <= 3; i++) {
        char name[8];
        snprintf(name, sizeof(name), "w%d", i);
        r.name = name;
        _cleanup_error_ struct stk_error *err = NULL;
        assert_true(stk_kube_delete(k, &r, "Background", NULL, &err) >= 0);
    }
}

static int count_in_log(struct stk_kube *k, const char *needle)
{
    long status = 0;
    json_t *body = NULL;
    _cleanup_error_ struct stk_error *err = NULL;
    if (stk_kube_request(k, "GET", "/_double/log", NULL, NULL, &status, &body, &err) < 0)
        fail_msg("%s", err->msg);
    json_auto_t *b = body;
    int n = 0;
    size_t i;
    json_t *line;
    json_array_foreach(json_object_get(b, "log"), i, line)
    {
        if (strstr(json_string_value(line), needle))
            n++;
    }
    return n;
}

static void test_watch_drop_reconnects(void **state)
{
    (void)state;
    _cleanup_(stk_kube_closep) struct stk_kube *k = open_double();
    _cleanup_(stk_kube_closep) struct stk_kube *k2 = open_double();
    reset_wns(k);
    struct seen s = {.k2 = k2, .stop_added = 3, .make = true};
    fault(k, "watch_drop_after", 1, 1); /* the first watch ends after one event */
    struct stk_kube_ref coll = {"v1", "ConfigMap", "wns", NULL};
    _cleanup_error_ struct stk_error *err = NULL;
    int before = count_in_log(k, "watch=1");
    int r = stk_kube_watch(k, &coll, "w=1", NULL, 10000, on_event, &s, &err);
    if (r < 0)
        fail_msg("%s", err->msg);
    assert_int_equal(r, 1);
    assert_int_equal(s.synced, 1);
    assert_string_equal(s.names, "w1,w2,w3,"); /* each once, in order */
    /* it reconnected, from the resourceVersion of the last event */
    assert_int_equal(count_in_log(k, "watch=1") - before, 2);
}

static void test_watch_gone_relists(void **state)
{
    (void)state;
    _cleanup_(stk_kube_closep) struct stk_kube *k = open_double();
    reset_wns(k);
    struct stk_kube_ref coll = {"v1", "ConfigMap", "wns", NULL};
    _cleanup_error_ struct stk_error *err = NULL;
    /* an ERROR event with code 410 */
    struct seen s = {.stop_synced = 2};
    fault(k, "watch_error_gone", 1, 1);
    assert_int_equal(stk_kube_watch(k, &coll, NULL, NULL, 10000, on_event, &s, &err), 7);
    assert_int_equal(s.synced, 2);
    /* HTTP 410 */
    struct seen s2 = {.stop_synced = 2};
    fault(k, "watch_http_gone", 1, 1);
    assert_int_equal(stk_kube_watch(k, &coll, NULL, NULL, 10000, on_event, &s2, &err), 7);
    assert_int_equal(s2.synced, 2);
}

static void test_watch_transient_and_timeout(void **state)
{
    (void)state;
    _cleanup_(stk_kube_closep) struct stk_kube *k = open_double();
    reset_wns(k);
    struct stk_kube_ref coll = {"v1", "ConfigMap", "wns", NULL};
    _cleanup_error_ struct stk_error *err = NULL;
    /* 503 on the list and on the first watch: retried with backoff */
    struct seen s = {0};
    fault(k, "status_503", 2, 0);
    int64_t t0 = stk_clock_ms(CLOCK_MONOTONIC);
    assert_int_equal(stk_kube_watch(k, &coll, NULL, NULL, 700, on_event, &s, &err), -ETIMEDOUT);
    int64_t took = stk_clock_ms(CLOCK_MONOTONIC) - t0;
    assert_true(took >= 650 && took < 3000);
    assert_int_equal(s.synced, 1);
    assert_non_null(strstr(err->msg, "watch ConfigMap wns (collection): no end within 700 ms"));
    stk_error_free(err);
    err = NULL;

    /* errors retrying cannot fix end the watch */
    struct stk_kube_ref bad = {"v1", "Pod", "Bad_NS", NULL};
    assert_int_equal(stk_kube_watch(k, &bad, NULL, NULL, 1000, on_event, &s, &err), -EINVAL);
    stk_error_free(err);
    err = NULL;

    /* fn < 0 stops it, with a message */
    struct seen s3 = {0};
    assert_int_equal(stk_kube_watch(k, &coll, NULL, NULL, 2000, on_event, &s3, &err), -ETIMEDOUT);
}

static int reject(void *ud, const char *type, const json_t *obj)
{
    (void)ud;
    (void)type;
    (void)obj;
    return -ECANCELED;
}

static void test_watch_fn_error(void **state)
{
    (void)state;
    _cleanup_(stk_kube_closep) struct stk_kube *k = open_double();
    ensure_ns(k, "wns");
    struct stk_kube_ref coll = {"v1", "Namespace", NULL, NULL};
    _cleanup_error_ struct stk_error *err = NULL;
    assert_int_equal(stk_kube_watch(k, &coll, NULL, NULL, 2000, reject, NULL, &err), -ECANCELED);
    assert_non_null(strstr(err->msg, "stopped by the caller"));
}

/* ---- answers recorded from a real API server (v1.32) ---------------------- */

static void replay(struct stk_kube *k, const char *file)
{
    _cleanup_free_ char *path = stk_xasprintf("/_double/replay?file=%s", file);
    long status = 0;
    _cleanup_error_ struct stk_error *err = NULL;
    if (stk_kube_request(k, "POST", path, NULL, NULL, &status, NULL, &err) < 0)
        fail_msg("%s", err->msg);
    assert_int_equal(status, 200);
}

static void test_recorded_errors(void **state)
{
    (void)state;
    _cleanup_(stk_kube_closep) struct stk_kube *k = open_double();
    static const struct {
        const char *file;
        int code;
        const char *msg;
    } cases[] = {
        {"apply-unknown-field.json", -EINVAL,
         "apply ConfigMap ns1/cm: 500: failed to create typed patch object (stk-record/cm; /v1, "
         "Kind=ConfigMap): .spec: field not declared in schema"},
        {"apply-pod-unknown-field.json", -EINVAL, ".spec.containerz: field not declared"},
        {"apply-invalid.json", -EINVAL,
         "422 Invalid: Pod \"p\" is invalid: spec.containers[0].name: Invalid value: "
         "\"Bad_Name\""},
        {"create-alreadyexists.json", -EEXIST,
         "409 AlreadyExists: namespaces \"stk-record\" "
         "already exists"},
        {"patch-conflict.json", -EAGAIN,
         "409 Conflict: Operation cannot be fulfilled on "
         "configmaps \"cm\": the object has been modified"},
        {"delete-precondition.json", -EAGAIN, "does not match the UID in record"},
        {"get-notfound.json", -ENOENT, "404 NotFound: configmaps \"missing\" not found"},
        {"namespace-in-path-mismatch.json", -EINVAL,
         "400 BadRequest: the name of the object (cm) does not match the name on the URL"},
    };
    json_auto_t *cm = parse("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{"
                            "\"name\":\"cm\",\"namespace\":\"ns1\"}}");
    for (size_t i = 0; i < STK_ARRAY_SIZE(cases); i++) {
        _cleanup_error_ struct stk_error *err = NULL;
        replay(k, cases[i].file);
        int r = stk_kube_apply(k, cm, NULL, &err);
        if (r != cases[i].code || !strstr(err->msg, cases[i].msg))
            fail_msg("%s: %d %s", cases[i].file, r, err ? err->msg : "");
        assert_null(strstr(err->msg, "transient"));
    }
}

static void test_recorded_answers(void **state)
{
    (void)state;
    _cleanup_(stk_kube_closep) struct stk_kube *k = open_double();
    _cleanup_error_ struct stk_error *err = NULL;
    /* discovery: a group the table does not know */
    replay(k, "discovery-networking.json");
    struct stk_kube_ref ic = {"networking.k8s.io/v1", "IngressClass", NULL, "nginx"};
    _cleanup_buf_ struct stk_buf b = {0};
    if (stk_kube_path(k, &ic, &b, &err) < 0)
        fail_msg("%s", err->msg);
    assert_string_equal(stk_buf_str(&b), "/apis/networking.k8s.io/v1/ingressclasses/nginx");
    replay(k, "discovery-missing.json");
    assert_int_equal(stk_kube_has_api(k, "agents.x-k8s.io/v1beta1", &err), 0);

    /* a recorded list and watch stream: SYNC, SYNCED, then the events */
    replay(k, "list-configmaps.json");
    replay(k, "watch-configmaps.json");
    struct seen s = {.stop_added = 0};
    struct stk_kube_ref coll = {"v1", "ConfigMap", "stk-record", NULL};
    int r = stk_kube_watch(k, &coll, "app=x", NULL, 1500, on_event, &s, &err);
    assert_int_equal(r, -ETIMEDOUT); /* then the double's own (empty) watch */
    assert_int_equal(s.sync, 1);
    assert_int_equal(s.synced, 1);
    assert_int_equal(s.added, 1);
    assert_int_equal(s.modified, 1);
    assert_int_equal(s.deleted, 1);
    assert_string_equal(s.names, "w1,");
}

/* agents.x-k8s.io's extension API (the warm pools the driver uses when a
 * cluster serves it): the objects as the driver sends them pass strict
 * validation; an unknown field is refused, by the double (400) and as a
 * real API server with the CRDs installed answered (recorded). */
static void test_agents_objects(void **state)
{
    (void)state;
    _cleanup_(stk_kube_closep) struct stk_kube *k = open_double();
    _cleanup_error_ struct stk_error *err = NULL;
    replay(k, "discovery-agents.json");
    assert_int_equal(stk_kube_has_api(k, "extensions.agents.x-k8s.io/v1beta1", &err), 1);
    json_auto_t *ns = parse("{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{"
                            "\"name\":\"pool-ap-1\"}}");
    if (stk_kube_apply(k, ns, NULL, &err) < 0)
        fail_msg("%s", err->msg);
    json_auto_t *wp =
        parse("{\"apiVersion\":\"extensions.agents.x-k8s.io/v1beta1\",\"kind\":\"SandboxWarmPool\","
              "\"metadata\":{\"name\":\"ap\",\"namespace\":\"pool-ap-1\",\"labels\":{"
              "\"stockade.dev/sandbox-id\":\"pool.ap\"}},\"spec\":{\"replicas\":2,"
              "\"sandboxTemplateRef\":{\"name\":\"ap\"}}}");
    if (stk_kube_apply(k, wp, NULL, &err) < 0)
        fail_msg("%s", err->msg);
    json_auto_t *claim =
        parse("{\"apiVersion\":\"extensions.agents.x-k8s.io/v1beta1\",\"kind\":\"SandboxClaim\","
              "\"metadata\":{\"name\":\"s-1\",\"namespace\":\"pool-ap-1\"},\"spec\":{"
              "\"warmPoolRef\":{\"name\":\"ap\"},\"additionalPodMetadata\":{\"labels\":{"
              "\"stockade.dev/sandbox-id\":\"s-1\"}}}}");
    if (stk_kube_apply(k, claim, NULL, &err) < 0)
        fail_msg("%s", err->msg);
    json_t *live = NULL;
    struct stk_kube_ref ref = {"extensions.agents.x-k8s.io/v1beta1", "SandboxClaim", "pool-ap-1",
                               "s-1"};
    assert_int_equal(stk_kube_get(k, &ref, &live, &err), 0);
    json_decref(live);
    json_auto_t *bad =
        parse("{\"apiVersion\":\"extensions.agents.x-k8s.io/v1beta1\",\"kind\":\"SandboxClaim\","
              "\"metadata\":{\"name\":\"s-2\",\"namespace\":\"pool-ap-1\"},\"spec\":{"
              "\"warmPoolRefs\":{\"name\":\"ap\"}}}");
    stk_error_free(err);
    err = NULL;
    assert_int_equal(stk_kube_apply(k, bad, NULL, &err), -EINVAL);
    /* as the real server answers a server-side apply (apply-sandboxclaim-
     * unknown-field.json below); a create is 400 "unknown field" */
    if (!strstr(err->msg, ".spec.warmPoolRefs: field not declared in schema"))
        fail_msg("%s", err->msg);
    assert_int_equal(stk_kube_get(k,
                                  &(struct stk_kube_ref){"extensions.agents.x-k8s.io/v1beta1",
                                                         "SandboxClaim", "pool-ap-1", "s-2"},
                                  &live, NULL),
                     -ENOENT);
    static const struct {
        const char *file, *msg;
    } rec[] = {
        {"apply-sandboxclaim-unknown-field.json",
         ".spec.warmPoolRefs: field not declared in schema"},
        {"apply-sandboxwarmpool-invalid.json", "422 Invalid: SandboxWarmPool"},
    };
    for (size_t i = 0; i < STK_ARRAY_SIZE(rec); i++) {
        stk_error_free(err);
        err = NULL;
        replay(k, rec[i].file);
        assert_int_equal(stk_kube_apply(k, bad, NULL, &err), -EINVAL);
        if (!strstr(err->msg, rec[i].msg))
            fail_msg("%s: %s", rec[i].file, err->msg);
    }
}

/* The warm claim's one request: a JSON patch whose `test` makes two claims
 * on one Pod exclusive (the second is 422, nothing changed). */
static void test_claim_json_patch(void **state)
{
    (void)state;
    _cleanup_(stk_kube_closep) struct stk_kube *k = open_double();
    _cleanup_error_ struct stk_error *err = NULL;
    json_auto_t *ns = parse("{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{"
                            "\"name\":\"m1\"}}");
    json_auto_t *pod = parse("{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":"
                             "\"p\",\"namespace\":\"m1\",\"labels\":{\"stockade.dev/claimed\":"
                             "\"false\"}},\"spec\":{\"containers\":[{\"name\":\"c\",\"image\":"
                             "\"i\"}]}}");
    if (stk_kube_apply(k, ns, NULL, &err) < 0 || stk_kube_apply(k, pod, NULL, &err) < 0)
        fail_msg("%s", err->msg);
    struct stk_kube_ref ref = {"v1", "Pod", "m1", "p"};
    static const char *const claimers[] = {"a", "b"};
    for (size_t i = 0; i < 2; i++) {
        json_auto_t *patch = json_pack(
            "[{s:s, s:s, s:s}, {s:s, s:s, s:s}, {s:s, s:s, s:s}]", "op", "test", "path",
            "/metadata/labels/stockade.dev~1claimed", "value", "false", "op", "replace", "path",
            "/metadata/labels/stockade.dev~1claimed", "value", "true", "op", "add", "path",
            "/metadata/labels/stockade.dev~1sandbox", "value", claimers[i]);
        stk_error_free(err);
        err = NULL;
        int r = stk_kube_patch(k, &ref, "application/json-patch+json", patch, NULL, &err);
        assert_int_equal(r, i == 0 ? 0 : -EINVAL);
    }
    json_t *live = NULL;
    assert_int_equal(stk_kube_get(k, &ref, &live, NULL), 0);
    const json_t *labels = json_object_get(json_object_get(live, "metadata"), "labels");
    assert_string_equal(json_string_value(json_object_get(labels, "stockade.dev/sandbox")), "a");
    assert_string_equal(json_string_value(json_object_get(labels, "stockade.dev/claimed")), "true");
    json_decref(live);
}

/* ---- the line splitter ------------------------------------------------------ */

struct lines_seen {
    char all[256];
    int n;
};

static int on_line(void *ud, char *line, size_t len)
{
    struct lines_seen *s = ud;
    assert_int_equal(strlen(line), len);
    size_t n = strlen(s->all);
    snprintf(s->all + n, sizeof(s->all) - n, "[%s]", line);
    s->n++;
    return 0;
}

static void test_lines(void **state)
{
    (void)state;
    static const char in[] = "{\"a\":1}\n\n{\"b\":2}\r\n{\"c\"";
    _cleanup_error_ struct stk_error *err = NULL;
    /* byte by byte and all at once give the same lines */
    for (int mode = 0; mode < 2; mode++) {
        struct stk_kube_lines l = {0};
        struct lines_seen s = {0};
        if (mode == 0) {
            for (size_t i = 0; i < sizeof(in) - 1; i++)
                assert_int_equal(stk_kube_lines_feed(&l, in + i, 1, on_line, &s, &err), 0);
        } else {
            assert_int_equal(stk_kube_lines_feed(&l, in, sizeof(in) - 1, on_line, &s, &err), 0);
        }
        assert_string_equal(s.all, "[{\"a\":1}][{\"b\":2}]");
        assert_int_equal(l.buf.len, 4); /* the incomplete tail waits */
        stk_kube_lines_free(&l);
    }
    struct stk_kube_lines l = {.max = 8};
    struct lines_seen s = {0};
    assert_int_equal(stk_kube_lines_feed(&l, "12345", 5, on_line, &s, &err), 0);
    assert_int_equal(stk_kube_lines_feed(&l, "67890", 5, on_line, &s, &err), -EMSGSIZE);
    stk_kube_lines_free(&l);

    json_t *ev = NULL, *obj = NULL;
    const char *type = NULL;
    static const char good[] = "{\"type\":\"ADDED\",\"object\":{\"kind\":\"Pod\"}}";
    assert_int_equal(stk_kube_event_parse(good, strlen(good), &ev, &type, &obj, &err), 0);
    assert_string_equal(type, "ADDED");
    json_decref(ev);
    stk_error_free(err);
    err = NULL;
    assert_int_equal(stk_kube_event_parse("{\"type\":1}", 10, &ev, &type, &obj, &err), -EPROTO);
}

/* ---- logs ---------------------------------------------------------------------- */

static char *read_all(int fd)
{
    struct stk_buf b = {0};
    char chunk[256];
    ssize_t n;
    lseek(fd, 0, SEEK_SET);
    while ((n = read(fd, chunk, sizeof(chunk))) > 0)
        stk_buf_append(&b, chunk, (size_t)n);
    return b.data ? stk_buf_steal(&b) : stk_xstrdup("");
}

static size_t to_buf(void *ud, const char *data, size_t n)
{
    stk_buf_append(ud, data, n);
    return n;
}

static void test_logs(void **state)
{
    (void)state;
    _cleanup_(stk_kube_closep) struct stk_kube *k = open_double();
    ensure_ns(k, "lns");
    apply_text(k, "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"p\","
                  "\"namespace\":\"lns\"},\"spec\":{\"containers\":[{\"name\":\"c\","
                  "\"image\":\"busybox\"}]}}");
    _cleanup_error_ struct stk_error *err = NULL;
    for (int follow = 0; follow < 2; follow++) {
        _cleanup_close_ int fd = open(G.dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        struct stk_kube_logs_req q = {.namespace = "lns",
                                      .pod = "p",
                                      .container = "c",
                                      .follow = follow,
                                      .tail_lines = -1,
                                      .out_fd = fd};
        int r = stk_kube_logs(k, &q, &err);
        if (r < 0)
            fail_msg("%s", err->msg);
        _cleanup_free_ char *out = read_all(fd);
        assert_string_equal(out, follow ? "line 1\nline 2\nline 3\n" : "line 0\nline 1\n");
    }
    struct stk_kube_logs_req q = {.namespace = "lns", .pod = "nope", .tail_lines = 1, .out_fd = 1};
    assert_int_equal(stk_kube_logs(k, &q, &err), -ENOENT);
    assert_non_null(strstr(err->msg, "logs Pod lns/nope: 404"));
    assert_true(count_in_log(k, "/pods/p/log?container=c&follow=true") == 1);
    /* the previous instance of a restarted container, from a second on */
    {
        _cleanup_buf_ struct stk_buf got = {0};
        struct stk_kube_logs_req pq = {.namespace = "lns",
                                       .pod = "p",
                                       .container = "c",
                                       .previous = true,
                                       .timestamps = true,
                                       .since_ms = 1796464800123,
                                       .tail_lines = -1,
                                       .out_fd = -1,
                                       .sink = to_buf,
                                       .sink_ud = &got};
        assert_int_equal(stk_kube_logs(k, &pq, &err), 0);
        assert_true(count_in_log(k, "/pods/p/log?container=c&previous=true&timestamps=true&"
                                    "sinceTime=2026-12-05T10:00:00Z") == 1);
    }
    /* a follow cancelled (the proxy's log follower stopping): success, at
     * once rather than when the stream ends, what arrived delivered */
    {
        atomic_bool cancel = true;
        _cleanup_buf_ struct stk_buf got = {0};
        struct stk_kube_logs_req cq = {.namespace = "lns",
                                       .pod = "p",
                                       .container = "c",
                                       .follow = true,
                                       .tail_lines = -1,
                                       .out_fd = -1,
                                       .sink = to_buf,
                                       .sink_ud = &got,
                                       .cancel = &cancel};
        assert_int_equal(stk_kube_logs(k, &cq, &err), 0);
        assert_true(got.len < strlen("line 1\nline 2\nline 3\n"));
        atomic_store(&cancel, false);
        assert_int_equal(stk_kube_logs(k, &cq, &err), 0);
        assert_string_equal(stk_buf_str(&got), "line 1\nline 2\nline 3\n");
    }
}

/* ---- exec ------------------------------------------------------------------ */

static int tmpfd(void)
{
    int fd = open(G.dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    return fd;
}

static int run_exec(const char *cfg, const char *const *argv, size_t argc, int in_fd,
                    char **ret_out, char **ret_err, int *ret_code, struct stk_error **err)
{
    _cleanup_(stk_kube_closep) struct stk_kube *k = open_ctx(cfg, "token");
    _cleanup_close_ int out = tmpfd(), errfd = tmpfd();
    struct stk_kube_exec_req q = {.namespace = "ns1",
                                  .pod = "p",
                                  .container = "c",
                                  .argv = argv,
                                  .argc = argc,
                                  .in_fd = in_fd,
                                  .out_fd = out,
                                  .err_fd = errfd};
    int r = stk_kube_exec(k, &q, ret_code, err);
    *ret_out = read_all(out);
    *ret_err = read_all(errfd);
    return r;
}

/* A follower that takes over (a new monitor) drops what the last one
 * delivered: stamps before, and the first `count` lines of the same stamp. */
static void test_log_position(void **state)
{
    (void)state;
    static const char *const stream[] = {
        "2026-12-05T03:12:53.1Z a", "2026-12-05T03:12:53.100000000Z b",  "2026-12-05T03:12:53.5Z c",
        "2026-12-05T03:12:54Z d",   "2026-12-05T03:12:54.000000001Z e ",
    };
    struct stk_kube_log_pos pos = {0};
    const char *text;
    size_t n;
    for (size_t i = 0; i < 3; i++) /* a, b (the same stamp), c delivered */
        assert_int_equal(stk_kube_log_line(&pos, stream[i], strlen(stream[i]), &text, &n), 1);
    assert_int_equal(n, 1);
    assert_memory_equal(text, "c", 1);
    /* stored and read back by the next process */
    char buf[64];
    stk_kube_log_pos_format(&pos, buf);
    assert_string_equal(buf, "1796440373.500000000 1\n");
    struct stk_kube_log_pos again;
    assert_int_equal(stk_kube_log_pos_parse(buf, &again), 0);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(stk_kube_log_line(&again, stream[i], strlen(stream[i]), &text, &n), 0);
    for (size_t i = 3; i < 5; i++)
        assert_int_equal(stk_kube_log_line(&again, stream[i], strlen(stream[i]), &text, &n), 1);
    assert_int_equal(n, 2);
    assert_memory_equal(text, "e ", 2);
    /* two lines of one stamp, one of them delivered */
    struct stk_kube_log_pos p2 = {0};
    assert_int_equal(stk_kube_log_line(&p2, stream[0], strlen(stream[0]), &text, &n), 1);
    p2.seen = 0;
    assert_int_equal(stk_kube_log_line(&p2, stream[0], strlen(stream[0]), &text, &n), 0);
    assert_int_equal(stk_kube_log_line(&p2, stream[1], strlen(stream[1]), &text, &n), 1);
    assert_int_equal(p2.count, 2);
    /* no stamp: the whole line, the position unchanged */
    assert_int_equal(stk_kube_log_line(&p2, "plain", 5, &text, &n), -EPROTO);
    assert_int_equal(n, 5);
    assert_int_equal(stk_kube_log_line(&p2, "2026-13-45T99:00:00Z x", 22, &text, &n), -EPROTO);
    assert_int_equal(stk_kube_log_line(&p2, "2026-12-05T03:12:53+01:00 x", 27, &text, &n), -EPROTO);
    assert_int_equal(stk_kube_log_pos_parse("12 3", &again), -EINVAL);
    assert_int_equal(stk_kube_log_pos_parse("-1.0 3", &again), -EINVAL);
    assert_int_equal(stk_kube_log_pos_parse("1.5 3 junk", &again), -EINVAL);
}

static void test_exec(void **state)
{
    (void)state;
    _cleanup_error_ struct stk_error *err = NULL;
    for (int v = 0; v < 2; v++) {
        const char *cfg = v ? G.ws4_cfg : G.ws5_cfg;
        static const char *const echo[] = {"echo", "hi", "there"};
        _cleanup_free_ char *out = NULL, *errs = NULL;
        int code = -1;
        int r = run_exec(cfg, echo, 3, -1, &out, &errs, &code, &err);
        if (r < 0)
            fail_msg("%s", err->msg);
        assert_int_equal(code, 0);
        assert_string_equal(out, "hi there\n");
        assert_string_equal(errs, "to stderr\n");

        static const char *const ex[] = {"exit", "3"};
        _cleanup_free_ char *out2 = NULL, *errs2 = NULL;
        assert_int_equal(run_exec(cfg, ex, 2, -1, &out2, &errs2, &code, &err), 0);
        assert_int_equal(code, 3);

        static const char *const fl[] = {"fail"};
        _cleanup_free_ char *out3 = NULL, *errs3 = NULL;
        assert_int_equal(run_exec(cfg, fl, 1, -1, &out3, &errs3, &code, &err), -EIO);
        assert_non_null(strstr(err->msg, "exec Pod ns1/p: InternalError: container not found"));
        stk_error_free(err);
        err = NULL;
    }
}

static void test_exec_stdin(void **state)
{
    (void)state;
    _cleanup_error_ struct stk_error *err = NULL;
    /* v5: stdin's end reaches the command (close signal) */
    _cleanup_close_ int in = tmpfd();
    assert_int_equal(write(in, "abc", 3), 3);
    lseek(in, 0, SEEK_SET);
    static const char *const cat[] = {"cat"};
    _cleanup_free_ char *out = NULL, *errs = NULL;
    int code = -1;
    int r = run_exec(G.ws5_cfg, cat, 1, in, &out, &errs, &code, &err);
    if (r < 0)
        fail_msg("%s", err->msg);
    assert_string_equal(out, "abc");

    /* 4 MiB through a slow reader: flow control, no buffering of it all */
    _cleanup_close_ int big = tmpfd();
    static char chunk[1 << 16];
    memset(chunk, 'x', sizeof(chunk));
    for (int i = 0; i < 64; i++)
        assert_int_equal(write(big, chunk, sizeof(chunk)), (ssize_t)sizeof(chunk));
    lseek(big, 0, SEEK_SET);
    static const char *const wc[] = {"wc"};
    _cleanup_free_ char *out2 = NULL, *errs2 = NULL;
    r = run_exec(G.ws5_cfg, wc, 1, big, &out2, &errs2, &code, &err);
    if (r < 0)
        fail_msg("%s", err->msg);
    assert_string_equal(out2, "4194304\n");
    assert_int_equal(code, 0);
}

/* The read end of a pipe that holds data and whose writer has already gone. */
static int closed_pipe(const char *data, size_t n)
{
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    if (n > 0)
        assert_int_equal(write(p[1], data, n), (ssize_t)n);
    close(p[1]);
    return p[0];
}

/* a hang is a failure: the exec must end well before the watchdog (SIGALRM) */
static int run_exec_watched(const char *const *argv, size_t argc, int in_fd, char **ret_out,
                            int *ret_code, struct stk_error **err)
{
    _cleanup_free_ char *errs = NULL;
    alarm(8);
    int r = run_exec(G.ws5_cfg, argv, argc, in_fd, ret_out, &errs, ret_code, err);
    alarm(0);
    if (r < 0)
        fail_msg("%s", (*err)->msg);
    return r;
}

static void test_exec_stdin_pipe_at_eof(void **state)
{
    (void)state;
    _cleanup_error_ struct stk_error *err = NULL;
    static const char *const cat[] = {"cat"};
    static const char *const wc[] = {"wc"};
    int code = -1;

    /* `echo piped | stockade exec -i`: written and closed before the upgrade */
    _cleanup_close_ int in = closed_pipe("piped\n", 6);
    _cleanup_free_ char *out = NULL;
    run_exec_watched(cat, 1, in, &out, &code, &err);
    assert_string_equal(out, "piped\n");
    assert_int_equal(code, 0);

    /* a full pipe buffer, more than one chunk, at EOF: all of it, then the end */
    int probe[2];
    assert_int_equal(pipe2(probe, O_CLOEXEC), 0);
    int cap = fcntl(probe[0], F_GETPIPE_SZ);
    close(probe[0]);
    close(probe[1]);
    assert_true(cap >= 4096);
    _cleanup_free_ char *fill = stk_xcalloc(1, (size_t)cap);
    memset(fill, 'y', (size_t)cap);
    _cleanup_close_ int full = closed_pipe(fill, (size_t)cap);
    _cleanup_free_ char *out2 = NULL;
    run_exec_watched(wc, 1, full, &out2, &code, &err);
    _cleanup_free_ char *want = stk_xasprintf("%d\n", cap);
    assert_string_equal(out2, want);
}

static void test_exec_stdin_empty_at_eof(void **state)
{
    (void)state;
    _cleanup_error_ struct stk_error *err = NULL;
    static const char *const cat[] = {"cat"};
    int code = -1;

    /* an empty pipe whose writer is gone: only the end of stdin */
    _cleanup_close_ int in = closed_pipe(NULL, 0);
    _cleanup_free_ char *out = NULL;
    run_exec_watched(cat, 1, in, &out, &code, &err);
    assert_string_equal(out, "");
    assert_int_equal(code, 0);

    /* `exec -i ... </dev/null` */
    _cleanup_close_ int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(null >= 0);
    _cleanup_free_ char *out2 = NULL;
    run_exec_watched(cat, 1, null, &out2, &code, &err);
    assert_string_equal(out2, "");
    assert_int_equal(code, 0);
}

static void test_exec_stdin_pipe_live(void **state)
{
    (void)state;
    _cleanup_error_ struct stk_error *err = NULL;
    static const char *const cat[] = {"cat"};
    int code = -1;
    /* data before the upgrade, more while the stream runs, then the writer goes */
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        if (write(p[1], "early\n", 6) != 6)
            _exit(1);
        usleep(300 * 1000);
        if (write(p[1], "late\n", 5) != 5)
            _exit(1);
        usleep(100 * 1000);
        _exit(0);
    }
    close(p[1]);
    _cleanup_close_ int in = p[0];
    _cleanup_free_ char *out = NULL;
    run_exec_watched(cat, 1, in, &out, &code, &err);
    int st = -1;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_string_equal(out, "early\nlate\n");
    assert_int_equal(code, 0);
}

static void test_exec_refused(void **state)
{
    (void)state;
    /* the WebSocket double takes no client certificate: the upgrade is refused */
    _cleanup_(stk_kube_closep) struct stk_kube *k = open_ctx(G.ws5_cfg, NULL);
    static const char *const echo[] = {"echo"};
    struct stk_kube_exec_req q = {.namespace = "ns1",
                                  .pod = "p",
                                  .argv = echo,
                                  .argc = 1,
                                  .in_fd = -1,
                                  .out_fd = -1,
                                  .err_fd = -1};
    _cleanup_error_ struct stk_error *err = NULL;
    int code = -1;
    assert_int_equal(stk_kube_exec(k, &q, &code, &err), -EINVAL); /* no stream at all */
    stk_error_free(err);
    err = NULL;
    q.out_fd = 1;
    assert_true(stk_kube_exec(k, &q, &code, &err) < 0);
    assert_non_null(strstr(err->msg, "exec Pod ns1/p: "));
    assert_int_equal(code, -1);
    stk_error_free(err);
    err = NULL;
    q.argc = 0;
    assert_int_equal(stk_kube_exec(k, &q, &code, &err), -EINVAL);
    stk_error_free(err);
    err = NULL;

    /* a server the configured CA did not sign: no exec */
    char cfg[128];
    with_port_as("kubeconfig-files.yaml", G.ws5.port, "ws5-files.yaml", cfg, sizeof(cfg));
    _cleanup_(stk_kube_closep) struct stk_kube *other = open_ctx(cfg, "other-ca");
    q.argc = 1;
    assert_int_equal(stk_kube_exec(other, &q, &code, &err), -EPROTO);
    assert_non_null(strstr(err->msg, "TLS"));
    assert_int_equal(code, -1);
}

/* The output bound and the time limit; stdin kept open (no close signal):
 * a command waiting for the end of stdin is cut off by the time limit. */
static void test_exec_bounds(void **state)
{
    (void)state;
    _cleanup_error_ struct stk_error *err = NULL;
    _cleanup_(stk_kube_closep) struct stk_kube *k = open_ctx(G.ws5_cfg, "token");
    _cleanup_close_ int out = tmpfd(), errfd = tmpfd();
    static const char *const echo[] = {"echo", "hi", "there"};
    struct stk_kube_exec_req q = {.namespace = "ns1",
                                  .pod = "p",
                                  .argv = echo,
                                  .argc = 3,
                                  .in_fd = -1,
                                  .out_fd = out,
                                  .err_fd = errfd,
                                  .out_max = 5};
    int code = -1;
    assert_int_equal(stk_kube_exec(k, &q, &code, &err), -EFBIG);
    assert_non_null(strstr(err->msg, "larger than 5 bytes"));
    stk_error_free(err);
    err = NULL;
    q.out_max = 19; /* "hi there\n" + "to stderr\n": exactly */
    assert_int_equal(stk_kube_exec(k, &q, &code, &err), 0);

    _cleanup_close_ int in = tmpfd();
    assert_int_equal(write(in, "abc", 3), 3);
    lseek(in, 0, SEEK_SET);
    static const char *const wc[] = {"wc"};
    q = (struct stk_kube_exec_req){.namespace = "ns1",
                                   .pod = "p",
                                   .argv = wc,
                                   .argc = 1,
                                   .in_fd = in,
                                   .out_fd = out,
                                   .err_fd = -1,
                                   .timeout_s = 1,
                                   .keep_stdin_open = true};
    int64_t t0 = stk_clock_ms(CLOCK_MONOTONIC);
    assert_int_equal(stk_kube_exec(k, &q, &code, &err), -ETIMEDOUT);
    assert_true(stk_clock_ms(CLOCK_MONOTONIC) - t0 < 5000);
    assert_non_null(strstr(err->msg, "no exit status within 1 s"));
}

/* pods/portforward: the socket carries bytes both ways past the port
 * prefixes; a port nothing listens on ends the connection; refusals are
 * errors at connect. */
/* A certificate authority that did not sign the double's certificate
 * (a self-signed "not-the-double"): exec and port-forward, whose TLS
 * contexts they build themselves, refuse the server. */
#define OTHER_CA_B64                                                                               \
    "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJpVENDQVMrZ0F3SUJBZ0lVWkI1aE4r"                     \
    "bFA0MzZkMFZ6cHdUMjFGNC9JeG5zd0NnWUlLb1pJemowRUF3SXcKR1RFWE1CVUdBMVVFQXd3"                     \
    "T2JtOTBMWFJvWlMxa2IzVmliR1V3SUJjTk1qWXhNakExTVRjd01qQXlXaGdQTWpFeQpOakV4"                     \
    "TVRFeE56QXlNREphTUJreEZ6QVZCZ05WQkFNTURtNXZkQzEwYUdVdFpHOTFZbXhsTUZrd0V3"                     \
    "WUhLb1pJCnpqMENBUVlJS29aSXpqMERBUWNEUWdBRWQzT2t6TkRFcVEwK05hNENhbWZTSnhu"                     \
    "VVBFTmtBNllhWVdZZEJ3MHEKWnYrN2RVWktYeWJlT3pnbWxRMEt0R0ZoeWlyNDZlS2pnWnRz"                     \
    "UTAwK1AxWHA0Nk5UTUZFd0hRWURWUjBPQkJZRQpGT2Q0NDVnT00vMmIyeUtyQWZkaHlhdUVG"                     \
    "UXRSTUI4R0ExVWRJd1FZTUJhQUZPZDQ0NWdPTS8yYjJ5S3JBZmRoCnlhdUVGUXRSTUE4R0Ex"                     \
    "VWRFd0VCL3dRRk1BTUJBZjh3Q2dZSUtvWkl6ajBFQXdJRFNBQXdSUUloQUkweTRNdjMKOGl1"                     \
    "NEhvMExIZmtTTUFUMXZlZFN1WStuZ3l6aVBRZURlckUxQWlCMXNjcXhHcGY0aTI3eE5pYTdN"                     \
    "bWxEWWkxNwo3Mm0rYUloM3lkQkZmRU5UWlE9PQotLS0tLUVORCBDRVJUSUZJQ0FURS0tLS0t"                     \
    "Cg=="

/* cfg with its CA replaced by OTHER_CA_B64, written beside it. */
static char *other_ca_cfg(const char *cfg, const char *name)
{
    return cfg_with(cfg, "certificate-authority-data", OTHER_CA_B64, name);
}

static void test_ws_untrusted_server_is_refused(void **state)
{
    (void)state;
    static const char *const echo[] = {"echo", "hi", "there"};
    _cleanup_error_ struct stk_error *err = NULL;
    /* the same exec and port-forward with the double's own CA work
     * (test_exec, test_port_connect); with another CA nothing is sent */
    _cleanup_free_ char *exec_cfg = other_ca_cfg(G.ws5_cfg, "ws5-other-ca.yaml");
    _cleanup_free_ char *out = NULL, *errs = NULL;
    int code = -1;
    assert_true(run_exec(exec_cfg, echo, 3, -1, &out, &errs, &code, &err) < 0);
    assert_int_equal(code, -1);
    assert_string_equal(out, "");
    /* refused by verification, not for material that did not load */
    assert_null(strstr(err->msg, "could not be loaded"));
    stk_error_free(err);
    err = NULL;

    _cleanup_free_ char *pf_cfg = other_ca_cfg(G.ws4_cfg, "ws4-other-ca.yaml");
    _cleanup_(stk_kube_closep) struct stk_kube *k = open_ctx(pf_cfg, "token");
    int fd = -1;
    assert_true(stk_kube_port_connect(k, "ns1", "p", 8080, &fd, &err) < 0);
    assert_int_equal(fd, -1);
    assert_null(strstr(err->msg, "could not be loaded"));
}

static void test_port_connect(void **state)
{
    (void)state;
    _cleanup_error_ struct stk_error *err = NULL;
    _cleanup_(stk_kube_closep) struct stk_kube *k = open_ctx(G.ws4_cfg, "token");
    int fd = -1;
    int r = stk_kube_port_connect(k, "ns1", "p", 8080, &fd, &err);
    if (r < 0)
        fail_msg("%s", err->msg);
    for (int i = 0; i < 3; i++) {
        char msg[32], want[48], got[64] = "";
        int n = snprintf(msg, sizeof(msg), "hello %d", i);
        snprintf(want, sizeof(want), "8080:%s", msg);
        assert_int_equal(write(fd, msg, (size_t)n), n);
        size_t have = 0;
        while (have < strlen(want)) {
            ssize_t k2 = read(fd, got + have, sizeof(got) - 1 - have);
            assert_true(k2 > 0);
            have += (size_t)k2;
        }
        assert_string_equal(got, want);
    }
    close(fd);

    /* nothing listens: connected, then the end, no data */
    fd = -1;
    assert_int_equal(stk_kube_port_connect(k, "ns1", "p", 9, &fd, &err), 0);
    char b;
    assert_int_equal(read(fd, &b, 1), 0);
    close(fd);

    /* a token the server refuses: an error now, no socket */
    _cleanup_(stk_kube_closep) struct stk_kube *bad = open_ctx(G.ws4_cfg, NULL);
    fd = -1;
    assert_true(stk_kube_port_connect(bad, "ns1", "p", 8080, &fd, &err) < 0);
    assert_int_equal(fd, -1);
    assert_non_null(strstr(err->msg, "port-forward Pod ns1/p port 8080"));
    stk_error_free(err);
    err = NULL;
    assert_int_equal(stk_kube_port_connect(k, "ns1", "p", 0, &fd, &err), -EINVAL);

    /* the connections' threads end after their callers closed: nothing of
     * theirs is left (LeakSanitizer found a context once they were not
     * waited for) */
    for (int i = 0; i < 300 && stk_kube_port_connections() > 0; i++)
        nanosleep(&(struct timespec){0, 50 * 1000000L}, NULL);
    assert_int_equal(stk_kube_port_connections(), 0);
}

static void test_exec_tty(void **state)
{
    (void)state;
    int master = -1, slave = -1;
    struct winsize ws = {.ws_row = 40, .ws_col = 100};
    assert_int_equal(openpty(&master, &slave, NULL, NULL, &ws), 0);
    struct termios before, after;
    assert_int_equal(tcgetattr(slave, &before), 0);
    _cleanup_(stk_kube_closep) struct stk_kube *k = open_ctx(G.ws5_cfg, "token");
    _cleanup_close_ int out = tmpfd();
    static const char *const size[] = {"size"};
    struct stk_kube_exec_req q = {.namespace = "ns1",
                                  .pod = "p",
                                  .argv = size,
                                  .argc = 1,
                                  .tty = true,
                                  .in_fd = slave,
                                  .out_fd = out,
                                  .err_fd = -1};
    _cleanup_error_ struct stk_error *err = NULL;
    int code = -1;
    int r = stk_kube_exec(k, &q, &code, &err);
    if (r < 0)
        fail_msg("%s", err->msg);
    _cleanup_free_ char *got = read_all(out);
    assert_string_equal(got, "{\"Width\":100,\"Height\":40}");
    /* the terminal's mode is given back */
    assert_int_equal(tcgetattr(slave, &after), 0);
    assert_int_equal(before.c_lflag, after.c_lflag);

    /* a resize while exec runs: SIGWINCH, then channel 4 again */
    pid_t parent = getpid();
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        /* a new size every 100 ms: whenever exec starts, a change follows
         * (a signal before its handler is in place is ignored, as by default) */
        for (unsigned short i = 1; i <= 100; i++) {
            usleep(100000);
            struct winsize ws2 = {.ws_row = 50, .ws_col = (unsigned short)(100 + i)};
            ioctl(master, TIOCSWINSZ, &ws2);
            kill(parent, SIGWINCH);
        }
        _exit(0);
    }
    static const char *const resize[] = {"resize"};
    _cleanup_close_ int out2 = tmpfd();
    q.argv = resize;
    q.out_fd = out2;
    r = stk_kube_exec(k, &q, &code, &err);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    if (r < 0)
        fail_msg("%s", err->msg);
    _cleanup_free_ char *got2 = read_all(out2);
    unsigned w1 = 0, h1 = 0, w2 = 0, h2 = 0;
    assert_int_equal(sscanf(got2, "{\"Width\":%u,\"Height\":%u}{\"Width\":%u,\"Height\":%u}", &w1,
                            &h1, &w2, &h2),
                     4);
    assert_true(w2 > w1 && w2 > 100);
    assert_int_equal(h2, 50);
    close(master);
    close(slave);
}

/* verify's comparison: the live object holds what was applied */
static void test_holds(void **state)
{
    (void)state;
    json_t *want = json_loads(
        "{\"kind\":\"Pod\",\"metadata\":{\"labels\":{\"a\":\"1\"}},\"spec\":{\"containers\":"
        "[{\"name\":\"sandbox\",\"securityContext\":{\"privileged\":false,\"capabilities\":"
        "{\"drop\":[\"ALL\"]}}}],\"tolerations\":[{\"key\":\"k\"}],\"egress\":[]}}",
        0, NULL);
    static const struct {
        const char *live;
        int holds;
        const char *diff; /* in the message */
    } cases[] = {
        /* defaults added, an extra container, a default toleration, [] omitted */
        {"{\"kind\":\"Pod\",\"metadata\":{\"labels\":{\"a\":\"1\",\"b\":\"2\"},\"uid\":\"u\"},"
         "\"spec\":{\"containers\":[{\"name\":\"app\"},{\"name\":\"sandbox\",\"image\":\"i\","
         "\"securityContext\":{\"privileged\":false,\"capabilities\":{\"drop\":[\"ALL\"]}}}],"
         "\"tolerations\":[{\"key\":\"default\"},{\"key\":\"k\"}]}}",
         1, NULL},
        {"{\"kind\":\"Pod\",\"metadata\":{\"labels\":{\"a\":\"2\"}},\"spec\":{}}", 0,
         "metadata.labels.a: \"2\", applied \"1\""},
        {"{\"kind\":\"Pod\",\"metadata\":{\"labels\":{\"a\":\"1\"}},\"spec\":{\"containers\":"
         "[{\"name\":\"sandbox\",\"securityContext\":{\"privileged\":true,\"capabilities\":"
         "{\"drop\":[\"ALL\"]}}}],\"tolerations\":[{\"key\":\"k\"}]}}",
         0, "spec.containers[sandbox].securityContext.privileged: true, applied false"},
        {"{\"kind\":\"Pod\",\"metadata\":{\"labels\":{\"a\":\"1\"}},\"spec\":{\"containers\":"
         "[{\"name\":\"sandbox\",\"securityContext\":{\"privileged\":false,\"capabilities\":"
         "{\"drop\":[\"NET_RAW\"]}}}],\"tolerations\":[{\"key\":\"k\"}]}}",
         0, "capabilities.drop[0]: no live element equals it"},
        {"{\"kind\":\"Pod\",\"metadata\":{\"labels\":{\"a\":\"1\"}},\"spec\":{\"containers\":"
         "[{\"name\":\"other\"}],\"tolerations\":[{\"key\":\"k\"}]}}",
         0, "spec.containers[sandbox]: absent"},
        {"{\"kind\":\"Pod\",\"metadata\":{\"labels\":{\"a\":\"1\"}},\"spec\":{\"containers\":"
         "[{\"name\":\"sandbox\",\"securityContext\":{\"privileged\":false,\"capabilities\":"
         "{\"drop\":[\"ALL\"]}}}],\"tolerations\":[{\"key\":\"k\"}],\"egress\":[{}]}}",
         0, "spec.egress: [{}], applied []"}, /* [] denies all, [{}] allows all */
        {"{\"kind\":\"Pod\",\"metadata\":{\"labels\":{\"a\":\"1\"}},\"spec\":{\"containers\":"
         "[{\"name\":\"sandbox\",\"securityContext\":{\"privileged\":false,\"capabilities\":"
         "{\"drop\":[\"ALL\"],\"add\":[\"NET_RAW\"]}}}],\"tolerations\":[{\"key\":\"k\"}]}}",
         1, NULL}, /* add was not applied: another manager's, not compared */
        {"{\"kind\":\"Pod\",\"metadata\":{\"labels\":{\"a\":\"1\"}},\"spec\":{\"containers\":"
         "[{\"name\":\"sandbox\",\"securityContext\":{\"privileged\":false,\"capabilities\":"
         "{\"drop\":[\"ALL\",\"X\"]}}}],\"tolerations\":[{\"key\":\"k\"}]}}",
         0, "capabilities.drop: a list of another length"},
    };
    for (size_t i = 0; i < STK_ARRAY_SIZE(cases); i++) {
        json_t *live = json_loads(cases[i].live, 0, NULL);
        assert_non_null(live);
        struct stk_buf diff = {0};
        size_t n = 0;
        int r = stk_kube_holds(want, live, &diff, &n);
        if (r != cases[i].holds || (cases[i].diff && !strstr(stk_buf_str(&diff), cases[i].diff)))
            fail_msg("case %zu: %d %s", i, r, stk_buf_str(&diff));
        if (r)
            assert_true(n >= 5);
        stk_buf_free(&diff);
        json_decref(live);
    }
    json_decref(want);
}

/* ---- the proxy's log as audit records ------------------------------------------- */

struct got {
    json_t *recs;
};

static void got_record(void *ud, const char *json)
{
    struct got *g = ud;
    json_t *o = json_loads(json, 0, NULL);
    assert_non_null(o);
    json_array_append_new(g->recs, o);
}

#define REC(stamp, rest) stamp " {\"sandbox\":\"canary\"," rest "}\n"

static void feed(struct stk_kube_proxy_ingest *in, struct got *g, const char *text)
{
    stk_kube_proxy_ingest_feed(in, text, strlen(text), got_record, g);
}

static const char *dec(struct got *g, size_t i)
{
    return json_string_value(json_object_get(json_array_get(g->recs, i), "decision"));
}

static void test_proxy_log_ingest(void **state)
{
    (void)state;
    struct stk_kube_proxy_ingest in;
    struct got g = {json_array()};
    stk_kube_proxy_ingest_init(&in, "sb-1", "canary");
    feed(&in, &g, "\nS stockade-proxy-1\n");
    assert_string_equal(in.pod, "stockade-proxy-1");
    feed(&in, &g,
         "2026-12-05T10:00:00.100000000Z stockade __proxy: sandbox canary: listening\n"
         /* a record, in two pieces */
         "2026-12-05T10:00:00.200000000Z {\"sandbox\":\"canary\",\"decision\":\"allo");
    assert_int_equal(json_array_size(g.recs), 0);
    feed(&in, &g,
         "wed\",\"kind\":\"http\",\"method\":\"GET\",\"host\":\"a.test\",\"port\":80}\n" REC(
             "2026-12-05T10:00:00.300000000Z",
             "\"decision\":\"binding\",\"binding\":\"up\",\"status\":200,"
             "\"authorization\":\"Bearer stk-canary\",\"headers\":{\"X-Api-Key\":\"stk-canary\"}")
             REC("2026-12-05T10:00:00.400000000Z", "\"decision\":\"allowed\",\"port\":\"80\"")
                 REC("2026-12-05T10:00:00.500000000Z",
                     "\"decision\":\"denied\",\"host\":\"b.test\",\"port\":80,\"reason\":\"no\""));
    assert_int_equal(json_array_size(g.recs), 3);
    assert_string_equal(dec(&g, 0), "allowed");
    assert_string_equal(dec(&g, 1), "binding");
    assert_string_equal(dec(&g, 2), "denied");
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(
            json_string_value(json_object_get(json_array_get(g.recs, i), "sandbox")), "sb-1");
    char *all = json_dumps(g.recs, JSON_COMPACT);
    assert_null(strstr(all, "stk-canary"));
    free(all);
    assert_int_equal(in.invalid, 1); /* the port of the wrong type */

    /* the next stream of the same Pod (a reconnect from that second on):
     * nothing twice */
    char pos[320];
    stk_kube_proxy_pos_format(&in, pos);
    assert_string_equal(pos, "stockade-proxy-1 1796464800.500000000 1\n");
    struct stk_kube_proxy_ingest again;
    stk_kube_proxy_ingest_init(&again, "sb-1", "canary");
    assert_int_equal(stk_kube_proxy_pos_parse(&again, pos), 0);
    again.budget = in.budget;
    feed(&again, &g,
         "\nS stockade-proxy-1\n" REC("2026-12-05T10:00:00.200000000Z", "\"decision\":\"allowed\"")
             REC("2026-12-05T10:00:00."
                 "500000000Z",
                 "\"decision\":\"denied\"")
                 REC("2026-12-05T10:00:01.000000000Z", "\"decision\":\"failed\",\"reason\":\"x\""));
    /* a new second: the invalid line is reported, then the new record */
    assert_int_equal(json_array_size(g.recs), 4);
    assert_string_equal(dec(&g, 3), "failed");
    stk_kube_proxy_ingest_flush(&in, got_record, &g);
    assert_int_equal(json_array_size(g.recs), 5);
    assert_string_equal(dec(&g, 4), "suppressed");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(g.recs, 4), "invalid")), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(g.recs, 4), "dropped")), 0);

    /* another Pod (the proxy replaced): its log from its start, even with
     * stamps before the last one (another node's clock) */
    feed(
        &again, &g,
        "\nS stockade-proxy-2\n" REC("2026-12-05T09:59:59.000000000Z", "\"decision\":\"allowed\""));
    assert_int_equal(json_array_size(g.recs), 6);
    assert_string_equal(again.pod, "stockade-proxy-2");

    /* hostile lines: no stamp, too long, a fake stream, another sandbox */
    char *longline = malloc(3 * STK_KUBE_PROXY_LINE_MAX);
    int n = snprintf(longline, 3 * STK_KUBE_PROXY_LINE_MAX,
                     "2026-12-05T10:00:02.000000000Z {\"sandbox\":\"canary\",\"decision\":"
                     "\"denied\",\"reason\":\"");
    memset(longline + n, 'x', 2 * STK_KUBE_PROXY_LINE_MAX);
    strcpy(longline + n + 2 * STK_KUBE_PROXY_LINE_MAX, "\"}\n");
    stk_kube_proxy_ingest_init(&in, "sb-1", "canary");
    json_array_clear(g.recs);
    feed(&in, &g, "\nS p\n{\"sandbox\":\"canary\",\"decision\":\"allowed\"}\n");
    feed(&in, &g, longline);
    feed(&in, &g,
         "2026-12-05T10:00:02.000000000Z S evil\n" REC(
             "2026-12-05T10:00:02.100000000Z",
             "\"decision\":\"allowed\"") "2026-12-05T10:00:02.200000000Z "
                                         "{\"sandbox\":\"other\",\"decision\":\"allowed\"}\n");
    free(longline);
    assert_string_equal(in.pod, "p");
    /* the line without a stamp reported as the next second began, then the
     * one record; the cut line and the other sandbox's wait for the next */
    assert_int_equal(json_array_size(g.recs), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(g.recs, 0), "invalid")), 1);
    assert_string_equal(dec(&g, 1), "allowed");
    assert_int_equal(in.invalid, 2);
    assert_int_equal(in.pos.sec, 1796464802);
    assert_int_equal(in.pos.count, 1);

    /* a flood: the budget by the runtime's stamps, what it drops counted */
    stk_kube_proxy_ingest_init(&in, "sb-1", "canary");
    json_array_clear(g.recs);
    feed(&in, &g, "\nS p\n");
    for (int i = 0; i < 100; i++) {
        char line[200];
        snprintf(line, sizeof(line), REC("2026-12-05T10:00:03.%09dZ", "\"decision\":\"allowed\""),
                 i);
        feed(&in, &g, line);
    }
    feed(&in, &g, REC("2026-12-05T10:00:04.000000000Z", "\"decision\":\"allowed\""));
    assert_int_equal(json_array_size(g.recs), STK_KUBE_PROXY_EVENTS_PER_SEC + 2);
    json_t *sup = json_array_get(g.recs, STK_KUBE_PROXY_EVENTS_PER_SEC);
    assert_string_equal(json_string_value(json_object_get(sup, "decision")), "suppressed");
    assert_int_equal(json_integer_value(json_object_get(sup, "dropped")),
                     100 - STK_KUBE_PROXY_EVENTS_PER_SEC);

    assert_int_equal(stk_kube_proxy_pos_parse(&in, "bad pod! 1.0 1\n"), -EINVAL);
    assert_int_equal(stk_kube_proxy_pos_parse(&in, "p 1.0"), -EINVAL);
    assert_int_equal(stk_kube_proxy_pos_parse(&in, "nospace"), -EINVAL);
    json_decref(g.recs);
}

/* A follower the API server refuses says so, once, as a record of the
 * trail: its decisions would otherwise go unrecorded without a word. */
static void test_proxy_log_refused_is_said_once(void **state)
{
    (void)state;
    _cleanup_free_ char *forbid = forbidden_cfg();
    struct stk_kube_opts o = {.kubeconfig = forbid, .context = "token"};
    _cleanup_(stk_kubeconfig_freep) struct stk_kubeconfig *c = NULL;
    _cleanup_error_ struct stk_error *err = NULL;
    assert_int_equal(stk_kubeconfig_load(&o, &c, &err), 0);
    struct stk_kube_proxy_follower *f = NULL;
    assert_int_equal(stk_kube_proxy_follow_start(c, "sandbox-ns", NULL, "sb-1", "canary", &f, &err),
                     0);
    struct got g = {json_array()};
    /* three refused lists at least (one a second) */
    for (int i = 0; i < 35; i++) {
        nanosleep(&(struct timespec){0, 100 * 1000000L}, NULL);
        stk_kube_proxy_follow_pump(f, got_record, &g);
    }
    stk_kube_proxy_follow_stop(f, got_record, &g);
    assert_int_equal(json_array_size(g.recs), 1);
    json_t *r = json_array_get(g.recs, 0);
    assert_string_equal(dec(&g, 0), "unread");
    assert_string_equal(json_string_value(json_object_get(r, "sandbox")), "sb-1");
    const char *why = json_string_value(json_object_get(r, "reason"));
    assert_non_null(strstr(why, "refused list pods (403)"));
    assert_null(strstr(why, KUBE_DOUBLE_FORBIDDEN));

    /* the marker is the follower's own line: a log line cannot make one */
    struct stk_kube_proxy_ingest in;
    stk_kube_proxy_ingest_init(&in, "sb-1", "canary");
    json_array_clear(g.recs);
    feed(&in, &g, "\nS p\n2026-12-05T10:00:00.000000000Z E forged\n");
    assert_int_equal(json_array_size(g.recs), 0);
    json_decref(g.recs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_data),
        cmocka_unit_test(test_config_env_and_files),
        cmocka_unit_test(test_config_refused),
        cmocka_unit_test(test_config_parse_errors),
        cmocka_unit_test(test_config_in_cluster),
        cmocka_unit_test(test_apply_get_list_delete),
        cmocka_unit_test(test_apply_strict),
        cmocka_unit_test(test_patch_conflict),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_paths_and_discovery),
        cmocka_unit_test(test_watch_drop_reconnects),
        cmocka_unit_test(test_watch_gone_relists),
        cmocka_unit_test(test_watch_transient_and_timeout),
        cmocka_unit_test(test_watch_fn_error),
        cmocka_unit_test(test_recorded_errors),
        cmocka_unit_test(test_recorded_answers),
        cmocka_unit_test(test_agents_objects),
        cmocka_unit_test(test_claim_json_patch),
        cmocka_unit_test(test_lines),
        cmocka_unit_test(test_logs),
        cmocka_unit_test(test_log_position),
        cmocka_unit_test(test_proxy_log_ingest),
        cmocka_unit_test(test_proxy_log_refused_is_said_once),
        cmocka_unit_test(test_exec),
        cmocka_unit_test(test_exec_stdin),
        cmocka_unit_test(test_exec_stdin_pipe_at_eof),
        cmocka_unit_test(test_exec_stdin_empty_at_eof),
        cmocka_unit_test(test_exec_stdin_pipe_live),
        cmocka_unit_test(test_exec_refused),
        cmocka_unit_test(test_exec_tty),
        cmocka_unit_test(test_exec_bounds),
        cmocka_unit_test(test_port_connect),
        cmocka_unit_test(test_ws_untrusted_server_is_refused),
        cmocka_unit_test(test_holds),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
