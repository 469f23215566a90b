/* SPDX-License-Identifier: Apache-2.0 */
/* verify: the plan a boundary makes, and the judge over synthetic probe
 * reports. Every deviation from a conforming report must fail exactly the
 * row that claims it, and nothing malformed may pass.
 *
 * With STK_VERIFY_REPORT=<file> set, test_real_report judges that file (a
 * report the real probe wrote) against the default plan and prints the
 * table; STK_VERIFY_EXPECT=fail|ok says which overall result to assert.
 * STK_VERIFY_RUNTIME (default crun), STK_VERIFY_NETWORK=0, STK_VERIFY_HOST_WORKSPACE=1
 * (run --workspace: no storage claim for /workspace), STK_VERIFY_TO
 * (comma-separated IP:PORT), STK_VERIFY_ID_RANGE (BASE:SIZE, the host id
 * range the sandbox held) and STK_VERIFY_SPEC (YAML after the Sandbox's
 * metadata) shape the plan. The end-to-end tests use it to judge real
 * reports: from the host (must fail) and from real sandboxes (must pass). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <errno.h>
#include <jansson.h>
#include <string.h>

#include "verify/verify.h"

#define HEAD                                                                                       \
    "apiVersion: stockade.dev/v1alpha1\nkind: Sandbox\nmetadata:\n  name: t\n  namespace: lab\n"
#define ENV_HEAD                                                                                   \
    "apiVersion: stockade.dev/v1alpha1\nkind: EnvironmentConfig\nmetadata:\n  name: env\n"
#define DATALAB_NET                                                                                \
    "data:\n  defaults:\n    security:\n      externalEgress: true\n"                              \
    "  network:\n    externalEgressCIDRs: [0.0.0.0/0, \"::/0\"]\n"                                 \
    "    blacklistIPs: [169.254.169.254/32, fd00:ec2::254/128]\n"                                  \
    "    podCIDRs: [10.42.0.0/16]\n    serviceCIDR: 10.43.0.0/16\n"
#define WIDE_SPEC                                                                                  \
    "spec:\n  security:\n    policy: baseline\n    capabilities:\n"                                \
    "      add: [NET_BIND_SERVICE, CHOWN]\n  resources:\n    memory: 256Mi\n    pids: 64\n"

/* the sandbox's host id range in the judged reports */
#define RANGE_BASE 1073807360
#define RANGE_SIZE 65536

struct fixture {
    struct stk_docset *sb, *env;
    struct stk_boundary *b;
};

static struct stk_boundary *boundary(struct fixture *f, const char *spec, const char *env)
{
    struct stk_diags d = {0};
    _cleanup_free_ char *sbt = stk_xasprintf(HEAD "%s", spec);
    _cleanup_free_ char *envt = env ? stk_xasprintf(ENV_HEAD "%s", env) : NULL;
    assert_int_equal(stk_docset_parse("sb", sbt, strlen(sbt), &d, &f->sb), 0);
    if (envt)
        assert_int_equal(stk_docset_parse("env", envt, strlen(envt), &d, &f->env), 0);
    if (stk_resolve(f->sb->docs[0].sandbox, "sb", f->env ? f->env->docs[0].env : NULL, "env", &d,
                    &f->b) < 0)
        fail_msg("does not resolve");
    stk_diags_free(&d);
    return f->b;
}

static void fixture_free(struct fixture *f)
{
    stk_boundary_free(f->b);
    stk_docset_free(f->sb);
    stk_docset_free(f->env);
}

static struct stk_verify_target target(const char *s)
{
    struct stk_verify_target t;
    _cleanup_error_ struct stk_error *err = NULL;
    if (stk_verify_parse_target(s, &t, &err) < 0)
        fail_msg("%s: %s", s, err->msg);
    return t;
}

/* The widened plan: baseline with two capabilities, external egress, one
 * allowed and one denied destination, crun with a network. */
static struct stk_verify_plan *wide_plan(struct fixture *f)
{
    static struct stk_verify_target to[2];
    to[0] = target("203.0.113.10:443");
    to[1] = target("169.254.169.254:80");
    struct stk_verify_opts o = {.runtime = "crun",
                                .network = true,
                                .to = to,
                                .n_to = 2,
                                .id_base = RANGE_BASE,
                                .id_size = RANGE_SIZE};
    struct stk_verify_plan *p = NULL;
    _cleanup_error_ struct stk_error *err = NULL;
    if (stk_verify_plan_make(boundary(f, WIDE_SPEC, DATALAB_NET), &o, &p, &err) < 0)
        fail_msg("plan: %s", err->msg);
    return p;
}

static const struct stk_verify_claim *claim_find(const struct stk_verify_plan *p, const char *text)
{
    const struct stk_verify_claim *c;
    size_t n = stk_verify_plan_claims(p, &c);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(c[i].text, text))
            return &c[i];
    fail_msg("no claim \"%s\"", text);
    return NULL;
}

/* ---- plans ------------------------------------------------------------------ */

static void test_plan_default(void **state)
{
    (void)state;
    struct fixture f = {0};
    struct stk_verify_opts o = {
        .runtime = "crun", .network = true, .id_base = RANGE_BASE, .id_size = RANGE_SIZE};
    _cleanup_verify_plan_ struct stk_verify_plan *p = NULL;
    assert_int_equal(stk_verify_plan_make(boundary(&f, "", NULL), &o, &p, NULL), 0);
    static const char *const want[] = {
        "runs as non-root (uid 65534)",
        "host ids of its own (user namespace)",
        "no capabilities",
        "no_new_privs",
        "seccomp filter on",
        "keyctl, add_key, unshare denied",
        "root filesystem read-only",
        "/workspace writable",
        "/tmp writable",
        "/workspace holds at most 1Gi",
        "no service-account token",
        "no container-runtime sockets",
        "memory limit = 512Mi",
        "pids limit = 256",
    };
    const struct stk_verify_claim *c;
    size_t n = stk_verify_plan_claims(p, &c);
    assert_int_equal(n, STK_ARRAY_SIZE(want));
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(c[i].text, want[i]);
        assert_null(c[i].skip);
    }
    const char *const *argv = stk_verify_plan_argv(p);
    assert_string_equal(argv[0], "/.stockade/stockade-probe");
    assert_string_equal(argv[1], "--timeout-ms");
    assert_string_equal(argv[2], "1500");
    assert_null(argv[3]);
    fixture_free(&f);
}

static void test_plan_wide(void **state)
{
    (void)state;
    struct fixture f = {0};
    _cleanup_verify_plan_ struct stk_verify_plan *p = wide_plan(&f);
    claim_find(p, "capabilities: NET_BIND_SERVICE, CHOWN only");
    claim_find(p, "memory limit = 256Mi");
    claim_find(p, "pids limit = 64");
    const struct stk_verify_claim *a = claim_find(p, "reach 203.0.113.10:443 -> allowed");
    assert_non_null(strstr(a->expected, "external-egress"));
    claim_find(p, "reach 169.254.169.254:80 -> denied");
    const char *const *argv = stk_verify_plan_argv(p);
    assert_string_equal(argv[3], "--connect");
    assert_string_equal(argv[4], "203.0.113.10:443");
    assert_string_equal(argv[5], "--connect");
    assert_string_equal(argv[6], "169.254.169.254:80");
    assert_null(argv[7]);
    fixture_free(&f);
}

/* gVisor: no network (every destination denied, even allowed ones) and
 * the pids limit is a skip, as runtime.c's caveats say. */
static void test_plan_gvisor(void **state)
{
    (void)state;
    struct fixture f = {0};
    struct stk_verify_target to[2] = {target("203.0.113.10:443"), target("127.0.0.1:8080")};
    struct stk_verify_opts o = {.runtime = "runsc", .network = true, .to = to, .n_to = 2};
    _cleanup_verify_plan_ struct stk_verify_plan *p = NULL;
    assert_int_equal(stk_verify_plan_make(boundary(&f, "", DATALAB_NET), &o, &p, NULL), 0);
    /* gVisor has the same network as crun and runc: the egress rules judge */
    const struct stk_verify_claim *c = claim_find(p, "reach 203.0.113.10:443 -> allowed");
    assert_non_null(strstr(c->expected, "connected or refused"));
    assert_non_null(claim_find(p, "pids limit = 256")->skip);
    assert_non_null(claim_find(p, "reach 127.0.0.1:8080")->skip);
    /* the cgroup files inside gVisor are its own emulation, not the host
     * cgroup that enforces the limit */
    assert_non_null(claim_find(p, "memory limit = 512Mi")->skip);
    fixture_free(&f);
}

static void test_plan_limits(void **state)
{
    (void)state;
    struct fixture f = {0};
    struct stk_verify_target to[STK_VERIFY_MAX_TARGETS + 1];
    for (size_t i = 0; i < STK_ARRAY_SIZE(to); i++)
        to[i] = target("10.0.0.1:80");
    struct stk_verify_opts o = {.runtime = "crun", .to = to, .n_to = STK_ARRAY_SIZE(to)};
    struct stk_verify_plan *p = NULL;
    _cleanup_error_ struct stk_error *err = NULL;
    assert_int_equal(stk_verify_plan_make(boundary(&f, "", NULL), &o, &p, &err), -E2BIG);
    assert_null(p);
    const char *rel[] = {"relative"};
    struct stk_verify_opts o2 = {.runtime = "crun", .writable = rel, .n_writable = 1};
    stk_error_free(err);
    err = NULL;
    assert_int_equal(stk_verify_plan_make(f.b, &o2, &p, &err), -EINVAL);
    o.n_to = STK_VERIFY_MAX_TARGETS;
    assert_int_equal(stk_verify_plan_make(f.b, &o, &p, NULL), 0);
    stk_verify_plan_free(p);
    fixture_free(&f);
}

/* ---- targets --------------------------------------------------------------------- */

static void test_parse_target(void **state)
{
    (void)state;
    struct stk_verify_target t;
    assert_int_equal(stk_verify_parse_target("10.1.2.3:443", &t, NULL), 0);
    assert_string_equal(t.host, "10.1.2.3");
    assert_int_equal(t.port, 443);
    assert_int_equal(t.family, STK_FAMILY_V4);
    assert_int_equal(stk_verify_parse_target("[2001:DB8::1]:8080", &t, NULL), 0);
    assert_string_equal(t.host, "2001:db8::1");
    assert_int_equal(t.port, 8080);
    assert_int_equal(t.family, STK_FAMILY_V6);
    static const char *const bad[] = {
        "10.1.2.3",  "10.1.2.3:0",     "10.1.2.3:65536", "10.1.2.3:-1",     "10.1.2.3:+80",
        "10.1.2.3:", "10.1.2.3:80x",   "example.com:80", "localhost:80",    "[::1]",
        "[::1]80",   "2001:db8::1:80", "[10.0.0.1]:80",  "[2001:db8::1:80", "",
        ":80",       "10.1.2.300:80",  "[::1]:99999",    "1.2.3.4:80:90",
    };
    for (size_t i = 0; i < STK_ARRAY_SIZE(bad); i++) {
        struct stk_error *err = NULL;
        if (stk_verify_parse_target(bad[i], &t, &err) != -EINVAL)
            fail_msg("\"%s\" was accepted", bad[i]);
        stk_error_free(err);
    }
}

/* ---- judging ----------------------------------------------------------------------- */

/* What the probe prints in a sandbox that keeps the wide plan's contract. */
static void test_plan_home(void **state)
{
    (void)state;
    struct fixture f = {0};
    struct stk_verify_opts o = {.runtime = "crun"};
    _cleanup_verify_plan_ struct stk_verify_plan *p = NULL;
    assert_int_equal(
        stk_verify_plan_make(
            boundary(&f, "spec:\n  storage:\n    home: {persist: true, size: 40Mi}\n", NULL), &o,
            &p, NULL),
        0);
    claim_find(p, "/home/sandbox writable");
    const struct stk_verify_claim *c = claim_find(p, "/home/sandbox holds at most 40Mi");
    assert_non_null(strstr(c->expected, "41943040"));
    const char *const *argv = stk_verify_plan_argv(p);
    bool probed = false;
    for (size_t i = 1; argv[i] && argv[i + 1]; i++)
        probed |= !strcmp(argv[i], "--writable") && !strcmp(argv[i + 1], "/home/sandbox");
    assert_true(probed);
    fixture_free(&f);
}

static json_t *good_report(void)
{
    json_error_t e;
    json_t *r = json_pack_ex(
        &e, 0,
        "{s:i,s:s,s:s,s:i,"
        "s:{s:i,s:i,s:i,s:i,s:[],s:i,s:i,s:s,s:s,s:s,s:s,s:n},"
        "s:[{s:s,s:i,s:s},{s:s,s:i,s:s},{s:s,s:i,s:s}],"
        "s:[{s:s,s:s,s:b,s:s},{s:s,s:s,s:b,s:s},{s:s,s:s,s:b,s:s},"
        "{s:s,s:s,s:b,s:n},{s:s,s:s,s:b,s:n}],"
        "s:[{s:s,s:b,s:s},{s:s,s:b,s:s}],"
        "s:[{s:s,s:b,s:b,s:n,s:s,s:b,s:n},{s:s,s:b,s:b,s:n,s:s,s:b,s:n},"
        "{s:s,s:b,s:b,s:s,s:n,s:b,s:s}],"
        "s:{s:i,s:{s:s,s:s,s:n},s:{s:s,s:s,s:n}},"
        "s:[{s:s,s:s,s:i,s:s},{s:s,s:s,s:i,s:s}]}",
        "schema", 1, "probe", "stockade-probe", "version", "0.1.0", "timeout_ms", 1500,
        /* identity */
        "identity", "uid", 65534, "euid", 65534, "gid", 65534, "egid", 65534, "groups",
        "no_new_privs", 1, "seccomp", 2, "cap_eff", "0000000000000401", "cap_prm",
        "0000000000000401", "cap_bnd", "0000000000000401", "cap_amb", "0000000000000401", "errno",
        /* syscalls */
        "syscalls", "name", "keyctl", "ret", -1, "errno", "EPERM", "name", "add_key", "ret", -1,
        "errno", "EPERM", "name", "unshare", "ret", -1, "errno", "EPERM",
        /* paths */
        "paths", "path", "/", "kind", "root", "writable", 0, "errno", "EROFS", "path", "/etc",
        "kind", "root", "writable", 0, "errno", "EROFS", "path", "/usr", "kind", "root", "writable",
        0, "errno", "EACCES", "path", "/workspace", "kind", "writable", "writable", 1, "errno",
        "path", "/tmp", "kind", "writable", "writable", 1, "errno",
        /* secrets */
        "secrets", "path", "/var/run/secrets/kubernetes.io/serviceaccount/token", "present", 0,
        "errno", "ENOENT", "path", "/run/secrets/kubernetes.io/serviceaccount", "present", 0,
        "errno", "ENOENT",
        /* sockets */
        "sockets", "path", "/run/docker.sock", "found_under_run", 0, "present", 0, "type", "errno",
        "ENOENT", "reachable", 0, "connect_errno", "path", "/run/stockade", "found_under_run", 0,
        "present", 0, "type", "errno", "ENOENT", "reachable", 0, "connect_errno", "path",
        "/run/dead.sock", "found_under_run", 1, "present", 1, "type", "socket", "errno",
        "reachable", 0, "connect_errno", "ECONNREFUSED",
        /* cgroup */
        "cgroup", "version", 1, "memory", "path", "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        "value", "268435456", "errno", "pids", "path", "/sys/fs/cgroup/pids/pids.max", "value",
        "64", "errno",
        /* connect */
        "connect", "target", "203.0.113.10:443", "result", "connected", "ms", 3, "errno",
        "EINPROGRESS", "target", "169.254.169.254:80", "result", "timeout", "ms", 1500, "errno",
        "ETIMEDOUT");
    if (!r)
        fail_msg("good_report: %s", e.text);
    /* /workspace is a filesystem of its own, below resources.storage */
    json_object_set_new(json_array_get(json_object_get(r, "paths"), 3), "fs_bytes",
                        json_integer(48073728));
    /* the user namespace: the sandbox's own range */
    json_t *id = json_object_get(r, "identity");
    json_object_set_new(id, "uid_map",
                        json_pack("[[i,I,i]]", 0, (json_int_t)RANGE_BASE, RANGE_SIZE));
    json_object_set_new(id, "gid_map",
                        json_pack("[[i,I,i]]", 0, (json_int_t)RANGE_BASE, RANGE_SIZE));
    /* errno must be null where the step worked: set_new replaces cleanly */
    json_object_set_new(json_array_get(json_object_get(r, "connect"), 0), "errno", json_null());
    return r;
}

static struct stk_verify_report *judge_json(const struct stk_verify_plan *p, json_t *r)
{
    _cleanup_free_ char *text = json_dumps(r, JSON_COMPACT);
    struct stk_verify_report *rep = NULL;
    _cleanup_error_ struct stk_error *err = NULL;
    if (stk_verify_judge(p, text, strlen(text), &rep, &err) < 0)
        fail_msg("judge: %s", err->msg);
    return rep;
}

static void test_judge_conforming(void **state)
{
    (void)state;
    struct fixture f = {0};
    _cleanup_verify_plan_ struct stk_verify_plan *p = wide_plan(&f);
    json_t *r = good_report();
    _cleanup_verify_report_ struct stk_verify_report *rep = judge_json(p, r);
    const struct stk_verify_row *rows;
    size_t n = stk_verify_report_rows(rep, &rows);
    for (size_t i = 0; i < n; i++)
        if (rows[i].verdict != STK_VERIFY_PASS)
            fail_msg("%s: %s (%s)", rows[i].claim, stk_verify_verdict_names[rows[i].verdict],
                     rows[i].reason ? rows[i].reason : "");
    assert_true(stk_verify_report_ok(rep));
    json_decref(r);
    /* gVisor has no ambient set: CapAmb null is judged through CapPrm */
    r = good_report();
    json_object_set_new(json_object_get(r, "identity"), "cap_amb", json_null());
    struct stk_verify_report *rep2 = judge_json(p, r);
    assert_true(stk_verify_report_ok(rep2));
    stk_verify_report_free(rep2);
    json_decref(r);
    fixture_free(&f);
}

static json_t *at(json_t *r, const char *list, size_t i)
{
    return json_array_get(json_object_get(r, list), i);
}

static void set_str(json_t *o, const char *k, const char *v)
{
    json_object_set_new(o, k, v ? json_string(v) : json_null());
}

/* ---- one deviation each ---- */

static void dev_uid0(json_t *r)
{
    json_object_set_new(json_object_get(r, "identity"), "uid", json_integer(0));
}
static void dev_host_ids(json_t *r)
{
    json_object_set_new(json_object_get(r, "identity"), "uid_map",
                        json_pack("[[i,i,I]]", 0, 0, (json_int_t)4294967295));
}
static void dev_other_range(json_t *r)
{
    /* the neighbour's range */
    json_object_set_new(json_object_get(r, "identity"), "gid_map",
                        json_pack("[[i,I,i]]", 0, (json_int_t)RANGE_BASE + RANGE_SIZE, RANGE_SIZE));
}
static void dev_map_unseen(json_t *r)
{
    json_object_set_new(json_object_get(r, "identity"), "uid_map", json_null());
}
static void dev_two_lines(json_t *r)
{
    json_array_append_new(json_object_get(json_object_get(r, "identity"), "uid_map"),
                          json_pack("[i,i,i]", 65536, 0, 1));
}
static void dev_group0(json_t *r)
{
    json_array_append_new(json_object_get(json_object_get(r, "identity"), "groups"),
                          json_integer(0));
}
static void dev_cap(json_t *r)
{
    /* CAP_SYS_ADMIN (bit 21) in the effective set */
    set_str(json_object_get(r, "identity"), "cap_eff", "0000000000200401");
}
static void dev_cap_bnd_unknown(json_t *r)
{
    set_str(json_object_get(r, "identity"), "cap_bnd", NULL);
}
static void dev_cap_prm_unknown(json_t *r)
{
    set_str(json_object_get(r, "identity"), "cap_amb", NULL);
    set_str(json_object_get(r, "identity"), "cap_prm", NULL);
}
static void dev_nnp0(json_t *r)
{
    json_object_set_new(json_object_get(r, "identity"), "no_new_privs", json_integer(0));
}
static void dev_seccomp0(json_t *r)
{
    json_object_set_new(json_object_get(r, "identity"), "seccomp", json_integer(0));
}
static void dev_keyctl(json_t *r)
{
    set_str(at(r, "syscalls", 0), "errno", "EOPNOTSUPP");
}
static void dev_root_writable(json_t *r)
{
    json_object_set_new(at(r, "paths", 0), "writable", json_true());
    set_str(at(r, "paths", 0), "errno", NULL);
}
static void dev_root_enospc(json_t *r)
{
    set_str(at(r, "paths", 1), "errno", "ENOSPC");
}
static void dev_workspace(json_t *r)
{
    json_object_set_new(at(r, "paths", 3), "writable", json_false());
    set_str(at(r, "paths", 3), "errno", "EROFS");
}
static void dev_workspace_large(json_t *r)
{
    /* a host directory: the host's filesystem, far above the limit */
    json_object_set_new(at(r, "paths", 3), "fs_bytes", json_integer(INT64_C(270) << 30));
}
static void dev_workspace_unseen(json_t *r)
{
    json_object_set_new(at(r, "paths", 3), "fs_bytes", json_null());
}
static void dev_token(json_t *r)
{
    json_object_set_new(at(r, "secrets", 0), "present", json_true());
    set_str(at(r, "secrets", 0), "errno", NULL);
}
static void dev_docker(json_t *r)
{
    json_t *s = at(r, "sockets", 0);
    json_object_set_new(s, "present", json_true());
    set_str(s, "type", "socket");
    set_str(s, "errno", NULL);
    json_object_set_new(s, "reachable", json_true());
}
static void dev_stockade_dir(json_t *r)
{
    json_t *s = at(r, "sockets", 1);
    json_object_set_new(s, "present", json_true());
    set_str(s, "type", "directory");
    set_str(s, "errno", NULL);
}
static void dev_memory_larger(json_t *r)
{
    set_str(json_object_get(json_object_get(r, "cgroup"), "memory"), "value", "536870912");
}
static void dev_memory_max(json_t *r)
{
    set_str(json_object_get(json_object_get(r, "cgroup"), "memory"), "value", "max");
}
static void dev_memory_unseen(json_t *r)
{
    json_t *m = json_object_get(json_object_get(r, "cgroup"), "memory");
    set_str(m, "value", NULL);
    set_str(m, "path", NULL);
    set_str(m, "errno", "ENOENT");
}
static void dev_pids(json_t *r)
{
    set_str(json_object_get(json_object_get(r, "cgroup"), "pids"), "value", "max");
}
static void dev_denied_connected(json_t *r)
{
    set_str(at(r, "connect", 1), "result", "connected");
    set_str(at(r, "connect", 1), "errno", NULL);
}
static void dev_denied_refused(json_t *r)
{
    set_str(at(r, "connect", 1), "result", "refused");
}
static void dev_allowed_timeout(json_t *r)
{
    set_str(at(r, "connect", 0), "result", "timeout");
}
static void dev_connect_missing(json_t *r)
{
    json_array_remove(json_object_get(r, "connect"), 0);
}

static const struct {
    const char *name;
    void (*mutate)(json_t *);
    const char *row; /* the claim text that must be the one FAIL */
} deviations[] = {
    {"uid 0", dev_uid0, "runs as non-root (uid 65534)"},
    {"group 0", dev_group0, "runs as non-root (uid 65534)"},
    {"host identity map", dev_host_ids, "host ids of its own (user namespace)"},
    {"another sandbox's range", dev_other_range, "host ids of its own (user namespace)"},
    {"uid_map unseen", dev_map_unseen, "host ids of its own (user namespace)"},
    {"host root mapped too", dev_two_lines, "host ids of its own (user namespace)"},
    {"CAP_SYS_ADMIN", dev_cap, "capabilities: NET_BIND_SERVICE, CHOWN only"},
    {"CapBnd unseen", dev_cap_bnd_unknown, "capabilities: NET_BIND_SERVICE, CHOWN only"},
    {"CapPrm and CapAmb unseen", dev_cap_prm_unknown, "capabilities: NET_BIND_SERVICE, CHOWN only"},
    {"NoNewPrivs 0", dev_nnp0, "no_new_privs"},
    {"seccomp 0", dev_seccomp0, "seccomp filter on"},
    {"keyctl allowed", dev_keyctl, "keyctl, add_key, unshare denied"},
    {"root writable", dev_root_writable, "root filesystem read-only"},
    {"root test inconclusive", dev_root_enospc, "root filesystem read-only"},
    {"/workspace read-only", dev_workspace, "/workspace writable"},
    {"/workspace on the host's filesystem", dev_workspace_large, "/workspace holds at most 1Gi"},
    {"/workspace size unseen", dev_workspace_unseen, "/workspace holds at most 1Gi"},
    {"token present", dev_token, "no service-account token"},
    {"docker.sock reachable", dev_docker, "no container-runtime sockets"},
    {"/run/stockade visible", dev_stockade_dir, "no container-runtime sockets"},
    {"memory larger", dev_memory_larger, "memory limit = 256Mi"},
    {"memory max", dev_memory_max, "memory limit = 256Mi"},
    {"memory unobserved", dev_memory_unseen, "memory limit = 256Mi"},
    {"pids max", dev_pids, "pids limit = 64"},
    {"denied connected", dev_denied_connected, "reach 169.254.169.254:80 -> denied"},
    {"denied refused", dev_denied_refused, "reach 169.254.169.254:80 -> denied"},
    {"allowed timeout", dev_allowed_timeout, "reach 203.0.113.10:443 -> allowed"},
    {"allowed unobserved", dev_connect_missing, "reach 203.0.113.10:443 -> allowed"},
};

static void test_judge_deviations(void **state)
{
    (void)state;
    struct fixture f = {0};
    _cleanup_verify_plan_ struct stk_verify_plan *p = wide_plan(&f);
    for (size_t d = 0; d < STK_ARRAY_SIZE(deviations); d++) {
        json_t *r = good_report();
        deviations[d].mutate(r);
        struct stk_verify_report *rep = judge_json(p, r);
        const struct stk_verify_row *rows;
        size_t n = stk_verify_report_rows(rep, &rows), fails = 0;
        for (size_t i = 0; i < n; i++) {
            bool want = !strcmp(rows[i].claim, deviations[d].row);
            bool failed = rows[i].verdict == STK_VERIFY_FAIL;
            fails += failed;
            if (want != failed)
                fail_msg("%s: row \"%s\" is %s", deviations[d].name, rows[i].claim,
                         stk_verify_verdict_names[rows[i].verdict]);
            if (failed)
                assert_non_null(rows[i].reason);
        }
        assert_int_equal(fails, 1);
        assert_false(stk_verify_report_ok(rep));
        stk_verify_report_free(rep);
        json_decref(r);
    }
    fixture_free(&f);
}

/* gVisor shows no cgroup files: an unobserved memory limit is a skip there,
 * but a wrong one that is observed still fails. */
static void test_judge_gvisor_memory(void **state)
{
    (void)state;
    struct fixture f = {0};
    struct stk_verify_opts o = {.runtime = "runsc"};
    _cleanup_verify_plan_ struct stk_verify_plan *p = NULL;
    assert_int_equal(stk_verify_plan_make(boundary(&f, WIDE_SPEC, NULL), &o, &p, NULL), 0);
    json_t *r = good_report();
    json_array_clear(json_object_get(r, "connect"));
    dev_memory_unseen(r);
    struct stk_verify_report *rep = judge_json(p, r);
    const struct stk_verify_row *rows;
    size_t n = stk_verify_report_rows(rep, &rows);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(rows[i].id, "memory"))
            assert_int_equal(rows[i].verdict, STK_VERIFY_SKIP);
    assert_true(stk_verify_report_ok(rep));
    stk_verify_report_free(rep);
    json_decref(r);
    r = good_report();
    json_array_clear(json_object_get(r, "connect"));
    dev_memory_max(r);
    rep = judge_json(p, r);
    /* gVisor's own cgroupfs shows no limit (runsc 2024): still a skip, the
     * host cgroup around the sandbox is what enforces it */
    n = stk_verify_report_rows(rep, &rows);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(rows[i].id, "memory"))
            assert_int_equal(rows[i].verdict, STK_VERIFY_SKIP);
    assert_true(stk_verify_report_ok(rep));
    stk_verify_report_free(rep);
    json_decref(r);
    fixture_free(&f);
}

/* No range held for the sandbox (the registry does not name it): the
 * claim fails whatever the map says, under runc as under crun (both give
 * every sandbox a range; it is no skip). */
static void test_judge_no_range(void **state)
{
    (void)state;
    static const char *const runtimes[] = {"crun", "runc"};
    for (size_t k = 0; k < STK_ARRAY_SIZE(runtimes); k++) {
        struct fixture f = {0};
        struct stk_verify_opts o = {.runtime = runtimes[k]};
        _cleanup_verify_plan_ struct stk_verify_plan *p = NULL;
        assert_int_equal(stk_verify_plan_make(boundary(&f, WIDE_SPEC, NULL), &o, &p, NULL), 0);
        json_t *r = good_report();
        json_array_clear(json_object_get(r, "connect"));
        _cleanup_verify_report_ struct stk_verify_report *rep = judge_json(p, r);
        const struct stk_verify_row *rows;
        size_t n = stk_verify_report_rows(rep, &rows);
        bool seen = false;
        for (size_t i = 0; i < n; i++)
            if (!strcmp(rows[i].id, "idmap")) {
                assert_int_equal(rows[i].verdict, STK_VERIFY_FAIL);
                assert_non_null(strstr(rows[i].reason, "no host id range"));
                seen = true;
            }
        assert_true(seen);
        json_decref(r);
        fixture_free(&f);
    }
}

/* A skip stays a skip whatever was observed, and never makes the report fail. */
static void test_judge_skip(void **state)
{
    (void)state;
    struct fixture f = {0};
    struct stk_verify_opts o = {.runtime = "runsc"};
    _cleanup_verify_plan_ struct stk_verify_plan *p = NULL;
    assert_int_equal(stk_verify_plan_make(boundary(&f, WIDE_SPEC, NULL), &o, &p, NULL), 0);
    json_t *r = good_report();
    json_array_clear(json_object_get(r, "connect"));
    dev_pids(r);
    _cleanup_verify_report_ struct stk_verify_report *rep = judge_json(p, r);
    const struct stk_verify_row *rows;
    size_t n = stk_verify_report_rows(rep, &rows), skips = 0;
    for (size_t i = 0; i < n; i++)
        skips += rows[i].verdict == STK_VERIFY_SKIP;
    assert_int_equal(skips, 3); /* pids, memory and the id range under gVisor */
    assert_true(stk_verify_report_ok(rep));
    json_decref(r);
    fixture_free(&f);
}

static int judge_text(const struct stk_verify_plan *p, const char *text, size_t n)
{
    struct stk_verify_report *rep = NULL;
    struct stk_error *err = NULL;
    int r = stk_verify_judge(p, text, n, &rep, &err);
    if (r < 0) {
        assert_non_null(err);
        assert_null(rep);
        stk_error_free(err);
    }
    stk_verify_report_free(rep);
    return r;
}

static void test_judge_malformed(void **state)
{
    (void)state;
    struct fixture f = {0};
    _cleanup_verify_plan_ struct stk_verify_plan *p = wide_plan(&f);
    static const char *const bad[] = {
        "",
        "{",
        "[]",
        "null",
        "{}",
        "{\"schema\":2}",
        "{\"schema\":1,\"schema\":1}",
        "{\"schema\":1,\"probe\":\"other\"}",
    };
    for (size_t i = 0; i < STK_ARRAY_SIZE(bad); i++)
        if (judge_text(p, bad[i], strlen(bad[i])) != -EBADMSG)
            fail_msg("\"%s\" was accepted", bad[i]);

    /* every top-level field, removed in turn; and wrong types */
    static const char *const fields[] = {"probe",   "identity", "syscalls", "paths",
                                         "secrets", "sockets",  "cgroup",   "connect"};
    for (size_t i = 0; i < STK_ARRAY_SIZE(fields); i++) {
        json_t *r = good_report();
        json_object_del(r, fields[i]);
        _cleanup_free_ char *t = json_dumps(r, JSON_COMPACT);
        if (judge_text(p, t, strlen(t)) != -EBADMSG)
            fail_msg("report without %s was accepted", fields[i]);
        json_object_set_new(r, fields[i], json_string("x"));
        _cleanup_free_ char *t2 = json_dumps(r, JSON_COMPACT);
        if (judge_text(p, t2, strlen(t2)) != -EBADMSG)
            fail_msg("report with a string %s was accepted", fields[i]);
        json_decref(r);
    }
    static const struct {
        const char *obj, *key;
        json_t *(*val)(void);
    } wrong[] = {
        {"identity", "uid", json_null},
        {"identity", "groups", json_true},
        {"identity", "cap_eff", json_false},
    };
    for (size_t i = 0; i < STK_ARRAY_SIZE(wrong); i++) {
        json_t *r = good_report();
        json_object_set_new(json_object_get(r, wrong[i].obj), wrong[i].key, wrong[i].val());
        _cleanup_free_ char *t = json_dumps(r, JSON_COMPACT);
        if (judge_text(p, t, strlen(t)) != -EBADMSG)
            fail_msg("%s.%s of the wrong type was accepted", wrong[i].obj, wrong[i].key);
        json_decref(r);
    }
    /* inconsistent entries and values out of range */
    json_t *r = good_report();
    set_str(at(r, "paths", 0), "errno", NULL); /* not writable, but no errno */
    _cleanup_free_ char *t = json_dumps(r, JSON_COMPACT);
    assert_int_equal(judge_text(p, t, strlen(t)), -EBADMSG);
    json_decref(r);
    r = good_report();
    set_str(json_object_get(r, "identity"), "cap_eff", "xyz");
    _cleanup_free_ char *t2 = json_dumps(r, JSON_COMPACT);
    assert_int_equal(judge_text(p, t2, strlen(t2)), -EBADMSG);
    json_decref(r);
    r = good_report();
    set_str(at(r, "connect", 0), "result", "maybe");
    _cleanup_free_ char *t3 = json_dumps(r, JSON_COMPACT);
    assert_int_equal(judge_text(p, t3, strlen(t3)), -EBADMSG);
    json_decref(r);
    r = good_report();
    set_str(at(r, "syscalls", 0), "errno", "eperm; rm -rf");
    _cleanup_free_ char *t4 = json_dumps(r, JSON_COMPACT);
    assert_int_equal(judge_text(p, t4, strlen(t4)), -EBADMSG);
    json_decref(r);

    /* oversized: refused before parsing */
    size_t big = STK_VERIFY_MAX_REPORT + 1;
    char *huge = stk_xmalloc(big);
    memset(huge, ' ', big);
    assert_int_equal(judge_text(p, huge, big), -E2BIG);
    free(huge);
    fixture_free(&f);
}

static void test_print(void **state)
{
    (void)state;
    struct fixture f = {0};
    _cleanup_verify_plan_ struct stk_verify_plan *p = wide_plan(&f);
    json_t *r = good_report();
    dev_uid0(r);
    _cleanup_verify_report_ struct stk_verify_report *rep = judge_json(p, r);
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    stk_verify_report_print_text(rep, m);
    fclose(m);
    assert_non_null(strstr(buf, "CLAIM"));
    assert_non_null(strstr(buf, "FAIL: runs as uid 0"));
    assert_non_null(strstr(buf, "does NOT keep its contract"));
    free(buf);
    m = open_memstream(&buf, &len);
    stk_verify_report_print_json(rep, m);
    fclose(m);
    json_t *j = json_loads(buf, 0, NULL);
    assert_non_null(j);
    assert_true(json_is_false(json_object_get(j, "ok")));
    assert_string_equal(json_string_value(json_object_get(at(j, "rows", 0), "verdict")), "fail");
    json_decref(j);
    free(buf);
    json_decref(r);
    fixture_free(&f);
}

/* Judges a report the real probe wrote (see the top of this file). */
static void test_real_report(void **state)
{
    (void)state;
    const char *file = getenv("STK_VERIFY_REPORT");
    const char *expect = getenv("STK_VERIFY_EXPECT");
    if (!file || !*file)
        skip();
    FILE *in = fopen(file, "re");
    assert_non_null(in);
    static char text[STK_VERIFY_MAX_REPORT + 1];
    size_t n = fread(text, 1, sizeof(text), in);
    fclose(in);
    struct fixture f = {0};
    const char *rt = getenv("STK_VERIFY_RUNTIME");
    const char *to_env = getenv("STK_VERIFY_TO");
    struct stk_verify_target to[STK_VERIFY_MAX_TARGETS];
    size_t n_to = 0;
    _cleanup_free_ char *list = stk_xstrdup(to_env ? to_env : "");
    for (char *save = NULL, *t = strtok_r(list, ",", &save); t && n_to < STK_ARRAY_SIZE(to);
         t = strtok_r(NULL, ",", &save))
        to[n_to++] = target(t);
    struct stk_verify_opts o = {.runtime = rt ? rt : "crun",
                                .network = !stk_streq(getenv("STK_VERIFY_NETWORK"), "0"),
                                .to = to,
                                .n_to = n_to,
                                .host_workspace =
                                    stk_streq(getenv("STK_VERIFY_HOST_WORKSPACE"), "1")};
    /* STK_VERIFY_ID_RANGE=BASE:SIZE: the range the sandbox held */
    const char *range = getenv("STK_VERIFY_ID_RANGE");
    if (range && sscanf(range, "%u:%u", &o.id_base, &o.id_size) != 2)
        fail_msg("STK_VERIFY_ID_RANGE=%s: expected BASE:SIZE", range);
    _cleanup_verify_plan_ struct stk_verify_plan *p = NULL;
    const char *spec = getenv("STK_VERIFY_SPEC");
    assert_int_equal(stk_verify_plan_make(boundary(&f, spec ? spec : "", NULL), &o, &p, NULL), 0);
    _cleanup_verify_report_ struct stk_verify_report *rep = NULL;
    _cleanup_error_ struct stk_error *err = NULL;
    if (stk_verify_judge(p, text, n, &rep, &err) < 0)
        fail_msg("%s", err->msg);
    stk_verify_report_print_text(rep, stdout);
    stk_verify_report_print_json(rep, stdout);
    if (expect && !strcmp(expect, "fail"))
        assert_false(stk_verify_report_ok(rep));
    else if (expect && !strcmp(expect, "ok"))
        assert_true(stk_verify_report_ok(rep));
    fixture_free(&f);
}

/* ---- the kubernetes backend ----------------------------------------------------- */

static const struct stk_verify_row *row_find(const struct stk_verify_report *rep, const char *id)
{
    const struct stk_verify_row *rows;
    size_t n = stk_verify_report_rows(rep, &rows);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(rows[i].id, id))
            return &rows[i];
    fail_msg("no row %s", id);
    return NULL;
}

/* A restricted Pod as the probe sees it: uid 65532 with fsGroup, no
 * capabilities, a CFS quota of 1500m, the node's ids, a big emptyDir, no
 * pids limit. */
static json_t *kube_report(void)
{
    json_t *r = good_report();
    json_t *id = json_object_get(r, "identity");
    static const char *const ids[] = {"uid", "euid", "gid", "egid"};
    for (size_t i = 0; i < 4; i++)
        json_object_set_new(id, ids[i], json_integer(65532));
    json_object_set_new(id, "groups", json_pack("[i]", 65532));
    static const char *const caps[] = {"cap_eff", "cap_prm", "cap_bnd", "cap_amb"};
    for (size_t i = 0; i < 4; i++)
        json_object_set_new(id, caps[i], json_string("0000000000000000"));
    json_object_set_new(id, "uid_map", json_pack("[[i,i,I]]", 0, 0, (json_int_t)4294967295));
    json_object_set_new(id, "gid_map", json_pack("[[i,i,I]]", 0, 0, (json_int_t)4294967295));
    json_object_set_new(json_array_get(json_object_get(r, "paths"), 3), "fs_bytes",
                        json_integer(270553174016));
    json_t *cg = json_object_get(r, "cgroup");
    json_object_set_new(json_object_get(cg, "pids"), "value", json_string("max"));
    json_object_set_new(cg, "cpu",
                        json_pack("{s:s,s:s,s:n}", "path", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
                                  "value", "150000 100000", "errno"));
    json_array_remove(json_object_get(r, "connect"), 0);
    return r;
}

static struct stk_verify_plan *kube_plan(struct fixture *f, const char *spec)
{
    const struct stk_boundary *b = boundary(f, spec, NULL);
    struct stk_verify_target to = target("169.254.169.254:80");
    struct stk_verify_opts o = {
        .runtime = "pod", .network = true, .kubernetes = true, .to = &to, .n_to = 1};
    struct stk_verify_plan *p = NULL;
    _cleanup_error_ struct stk_error *err = NULL;
    if (stk_verify_plan_make(b, &o, &p, &err) < 0)
        fail_msg("plan: %s", err->msg);
    return p;
}

#define KUBE_SPEC "spec:\n  resources:\n    cpu: 1500m\n    memory: 256Mi\n    pids: 64\n"

static void test_kube_plan_and_judge(void **state)
{
    (void)state;
    struct fixture f = {0};
    _cleanup_verify_plan_ struct stk_verify_plan *p = kube_plan(&f, KUBE_SPEC);
    assert_non_null(claim_find(p, "runs as non-root (uid 65532)"));
    assert_non_null(claim_find(p, "cpu limit = 1500m"));
    json_t *r = kube_report();
    struct stk_verify_report *rep = judge_json(p, r);
    assert_int_equal(row_find(rep, "uid")->verdict, STK_VERIFY_PASS);
    assert_int_equal(row_find(rep, "cpu")->verdict, STK_VERIFY_PASS);
    assert_int_equal(row_find(rep, "memory")->verdict, STK_VERIFY_PASS);
    /* what a cluster does not enforce is a skip with its reason, never a pass */
    assert_int_equal(row_find(rep, "idmap")->verdict, STK_VERIFY_SKIP);
    assert_int_equal(row_find(rep, "pids")->verdict, STK_VERIFY_SKIP);
    assert_int_equal(row_find(rep, "storage")->verdict, STK_VERIFY_SKIP);
    /* a denied destination that did not answer: NetworkPolicy is not proved */
    assert_int_equal(row_find(rep, "reach")->verdict, STK_VERIFY_SKIP);
    assert_non_null(strstr(row_find(rep, "reach")->reason, "CNI"));
    assert_true(stk_verify_report_ok(rep));
    stk_verify_report_free(rep);
    json_decref(r);

    /* each deviation fails its row */
    static const struct {
        const char *row, *cpu;
        int64_t uid;
        const char *reach;
    } dev[] = {
        {"cpu", "max 100000", 65532, NULL},    {"cpu", "300000 100000", 65532, NULL},
        {"cpu", "100000 100000", 65532, NULL}, {"cpu", NULL, 65532, NULL}, /* not observed */
        {"uid", "150000 100000", 65534, NULL}, {"reach", "150000 100000", 65532, "connected"},
    };
    for (size_t i = 0; i < STK_ARRAY_SIZE(dev); i++) {
        r = kube_report();
        json_t *cg = json_object_get(r, "cgroup");
        if (dev[i].cpu)
            json_object_set_new(json_object_get(cg, "cpu"), "value", json_string(dev[i].cpu));
        else
            json_object_del(cg, "cpu");
        json_object_set_new(json_object_get(r, "identity"), "uid", json_integer(dev[i].uid));
        if (dev[i].reach)
            json_object_set_new(json_array_get(json_object_get(r, "connect"), 0), "result",
                                json_string(dev[i].reach));
        rep = judge_json(p, r);
        const struct stk_verify_row *row = row_find(rep, dev[i].row);
        if (row->verdict != STK_VERIFY_FAIL)
            fail_msg("deviation %zu: %s is %s", i, dev[i].row,
                     stk_verify_verdict_names[row->verdict]);
        if (dev[i].reach)
            assert_non_null(strstr(row->reason, "does not enforce"));
        assert_false(stk_verify_report_ok(rep));
        stk_verify_report_free(rep);
        json_decref(r);
    }
    fixture_free(&f);

    /* baseline sets no runAsUser: the image's user, not claimed */
    struct fixture g = {0};
    _cleanup_verify_plan_ struct stk_verify_plan *pb =
        kube_plan(&g, "spec:\n  security:\n    policy: baseline\n");
    const struct stk_verify_claim *c = claim_find(pb, "runs as non-root");
    assert_non_null(c->skip);
    fixture_free(&g);
}

static void test_report_add_rows(void **state)
{
    (void)state;
    struct fixture f = {0};
    _cleanup_verify_plan_ struct stk_verify_plan *p = kube_plan(&f, KUBE_SPEC);
    json_t *r = kube_report();
    _cleanup_verify_report_ struct stk_verify_report *rep = judge_json(p, r);
    json_decref(r);
    const struct stk_verify_row *rows;
    size_t n0 = stk_verify_report_rows(rep, &rows);
    _cleanup_error_ struct stk_error *err = NULL;
    /* incomplete rows are errors: nothing unclear passes */
    static const char *const bad[] = {
        "{}",
        "[{\"id\":\"object\",\"claim\":\"c\",\"expected\":\"e\",\"observed\":\"o\"}]",
        "[{\"id\":\"object\",\"claim\":\"c\",\"expected\":\"e\",\"observed\":\"o\","
        "\"verdict\":\"ok\",\"reason\":null}]",
        "[{\"id\":\"object\",\"claim\":\"c\",\"expected\":\"e\",\"observed\":\"o\","
        "\"verdict\":\"fail\",\"reason\":null}]",
    };
    for (size_t i = 0; i < STK_ARRAY_SIZE(bad); i++) {
        assert_true(stk_verify_report_add_json(rep, bad[i], &err) < 0);
        stk_error_freep(&err);
    }
    assert_int_equal(stk_verify_report_add_json(
                         rep,
                         "[{\"id\":\"object\",\"claim\":\"Pod a/b as rendered\",\"expected\":\"e\","
                         "\"observed\":\"as rendered\",\"verdict\":\"pass\",\"reason\":null}]",
                         &err),
                     0);
    assert_true(stk_verify_report_ok(rep));
    assert_int_equal(stk_verify_report_add_json(
                         rep,
                         "[{\"id\":\"object\",\"claim\":\"Pod a/b as rendered\",\"expected\":\"e\","
                         "\"observed\":\"x\",\"verdict\":\"fail\",\"reason\":\"differs\"}]",
                         &err),
                     0);
    assert_false(stk_verify_report_ok(rep));
    assert_int_equal(stk_verify_report_rows(rep, &rows), n0 + 2);
    /* bounded */
    const struct stk_verify_row row = {
        .id = "x", .claim = "c", .expected = "e", .observed = "o", .verdict = STK_VERIFY_PASS};
    int rc = 0;
    for (int i = 0; i < STK_VERIFY_MAX_EXTRA_ROWS && rc == 0; i++)
        rc = stk_verify_report_add(rep, &row, &err);
    assert_int_equal(rc, -E2BIG);
    fixture_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan_default),
        cmocka_unit_test(test_plan_home),
        cmocka_unit_test(test_plan_wide),
        cmocka_unit_test(test_plan_gvisor),
        cmocka_unit_test(test_plan_limits),
        cmocka_unit_test(test_parse_target),
        cmocka_unit_test(test_judge_conforming),
        cmocka_unit_test(test_judge_deviations),
        cmocka_unit_test(test_judge_skip),
        cmocka_unit_test(test_judge_no_range),
        cmocka_unit_test(test_judge_gvisor_memory),
        cmocka_unit_test(test_judge_malformed),
        cmocka_unit_test(test_print),
        cmocka_unit_test(test_real_report),
        cmocka_unit_test(test_kube_plan_and_judge),
        cmocka_unit_test(test_report_add_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
