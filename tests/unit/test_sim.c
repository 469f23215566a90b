/* SPDX-License-Identifier: Apache-2.0 */
/* The simulator: its outcome model (kill reasons, the earliest one, exit
 * codes), its egress decisions (those of stk_egress_decide for the same
 * destinations), the hints' syntax and rules, and a sim session's records
 * (phases, audit, the state directory's backend). Nothing here needs root. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "session/session.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HEAD                                                                                       \
    "apiVersion: stockade.dev/v1alpha1\nkind: Sandbox\nmetadata:\n  name: t\n  namespace: lab\n"   \
    "spec:\n  command: [/bin/true]\n"
#define ENV_HEAD                                                                                   \
    "apiVersion: stockade.dev/v1alpha1\nkind: EnvironmentConfig\nmetadata:\n  name: env\n"

struct resolved {
    struct stk_docset *ds, *env_ds;
    struct stk_boundary *b;
};

/* HEAD + body against env (NULL: hard defaults); NULL b when it does not
 * resolve. */
static struct resolved resolve(const char *body, const char *env)
{
    struct resolved r = {0};
    struct stk_diags d = {0};
    _cleanup_free_ char *text = stk_xasprintf(HEAD "%s", body);
    _cleanup_free_ char *envt = env ? stk_xasprintf(ENV_HEAD "%s", env) : NULL;
    if (stk_docset_parse("sb", text, strlen(text), &d, &r.ds) < 0)
        goto out;
    if (envt && stk_docset_parse("env", envt, strlen(envt), &d, &r.env_ds) < 0)
        goto out;
    (void)stk_resolve(r.ds->docs[0].sandbox, "sb", r.env_ds ? r.env_ds->docs[0].env : NULL, "env",
                      &d, &r.b);
out:
    stk_diags_free(&d);
    return r;
}

static void release(struct resolved *r)
{
    stk_boundary_free(r->b);
    stk_docset_free(r->ds);
    stk_docset_free(r->env_ds);
}

static struct stk_sim_outcome model(const char *body)
{
    struct resolved r = resolve(body, NULL);
    if (!r.b)
        fail_msg("does not resolve: %s", body);
    struct stk_sim_outcome o;
    stk_sim_model(r.b, &o);
    release(&r);
    return o;
}

/* ---- the outcome model ------------------------------------------------------------ */

static void test_exits_on_its_own(void **state)
{
    (void)state;
    struct stk_sim_outcome o = model("  driverConfig: {sim: {runFor: 2s}}\n");
    assert_true(o.ends);
    assert_int_equal(o.at_ms, 2000);
    assert_int_equal(o.phase, STK_PHASE_SUCCEEDED);
    assert_int_equal(o.exit_code, 0);
    assert_int_equal(o.kill, STK_KILL_NONE);

    o = model("  driverConfig: {sim: {runFor: 1s, exitCode: 7}}\n");
    assert_int_equal(o.phase, STK_PHASE_FAILED);
    assert_int_equal(o.exit_code, 7);

    /* no hints: it runs until stopped (no wall clock by default) */
    o = model("");
    assert_false(o.ends);
    assert_int_equal(o.kill, STK_KILL_NONE);

    /* exactly at the deadline it exits: the deadline kills what runs past it */
    o = model("  resources: {wallClock: 5s}\n  driverConfig: {sim: {runFor: 5s}}\n");
    assert_int_equal(o.phase, STK_PHASE_SUCCEEDED);
    /* at its limit, not above: no kill */
    o = model("  resources: {memory: 256Mi}\n  driverConfig: {sim: {runFor: 1s, memoryPeak: "
              "256Mi}}\n");
    assert_int_equal(o.phase, STK_PHASE_SUCCEEDED);
    assert_int_equal(o.memory_bytes, 256 << 20);
}

static void test_each_kill_reason(void **state)
{
    (void)state;
    /* memory grows linearly to 512Mi over 10s: above 256Mi at 5s */
    struct stk_sim_outcome o = model("  resources: {memory: 256Mi}\n"
                                     "  driverConfig: {sim: {runFor: 10s, memoryPeak: 512Mi}}\n");
    assert_int_equal(o.phase, STK_PHASE_KILLED);
    assert_int_equal(o.kill, STK_KILL_MEMORY);
    assert_int_equal(o.at_ms, 5000);
    assert_int_equal(o.exit_code, -1);
    assert_int_equal(o.memory_bytes, 256 << 20);

    o = model("  resources: {pids: 100}\n  driverConfig: {sim: {runFor: 10s, pids: 400}}\n");
    assert_int_equal(o.kill, STK_KILL_PIDS);
    assert_int_equal(o.at_ms, 2500);
    assert_int_equal(o.pids, 100);

    o = model("  resources: {cpuTime: 2s}\n  driverConfig: {sim: {runFor: 10s, cpuTime: 8s}}\n");
    assert_int_equal(o.kill, STK_KILL_CPU);
    assert_int_equal(o.at_ms, 2500);
    assert_int_equal(o.cpu_ms, 2000);

    o = model("  resources: {wallClock: 3s}\n  driverConfig: {sim: {runFor: 10s}}\n");
    assert_int_equal(o.kill, STK_KILL_WALL_CLOCK);
    assert_int_equal(o.at_ms, 3000);

    /* running until stopped: the deadline ends it */
    o = model("  resources: {wallClock: 1m}\n");
    assert_true(o.ends);
    assert_int_equal(o.kill, STK_KILL_WALL_CLOCK);
    assert_int_equal(o.at_ms, 60000);

    /* without runFor the peaks are there from the start */
    o = model("  resources: {memory: 256Mi}\n  driverConfig: {sim: {memoryPeak: 1Gi}}\n");
    assert_int_equal(o.kill, STK_KILL_MEMORY);
    assert_int_equal(o.at_ms, 0);
}

static void test_earliest_wins(void **state)
{
    (void)state;
    /* memory crosses at 5s, pids at 2.5s, cpu at 8s, the deadline at 9s */
    struct stk_sim_outcome o =
        model("  resources: {memory: 256Mi, pids: 100, cpuTime: 8s, wallClock: 9s}\n"
              "  driverConfig: {sim: {runFor: 10s, memoryPeak: 512Mi, pids: 400, cpuTime: 10s}}\n");
    assert_int_equal(o.kill, STK_KILL_PIDS);
    assert_int_equal(o.at_ms, 2500);
    /* the use when it is killed: what it had reached by then */
    assert_int_equal(o.memory_bytes, (512 << 20) / 4);
    assert_int_equal(o.cpu_ms, 2500);

    /* the deadline first */
    o = model("  resources: {memory: 256Mi, wallClock: 2s}\n"
              "  driverConfig: {sim: {runFor: 10s, memoryPeak: 512Mi}}\n");
    assert_int_equal(o.kill, STK_KILL_WALL_CLOCK);
    assert_int_equal(o.at_ms, 2000);

    /* a tie (both at start): memory, pids, cpu, wall clock, in that order */
    o = model("  resources: {memory: 256Mi, pids: 8}\n"
              "  driverConfig: {sim: {memoryPeak: 1Gi, pids: 100}}\n");
    assert_int_equal(o.kill, STK_KILL_MEMORY);
    o = model("  resources: {memory: 256Mi, pids: 100}\n"
              "  driverConfig: {sim: {runFor: 4s, memoryPeak: 512Mi, pids: 200}}\n");
    assert_int_equal(o.kill, STK_KILL_MEMORY);
    assert_int_equal(o.at_ms, 2000);
}

/* ---- the hints ------------------------------------------------------------------ */

static void test_hint_rules(void **state)
{
    (void)state;
    struct resolved r = resolve("  driverConfig: {sim: {cpuTime: 1s}}\n", NULL);
    assert_null(r.b); /* cpuTime needs runFor */
    release(&r);
    r = resolve("  driverConfig: {sim: {exitCode: 1}}\n", NULL);
    assert_null(r.b); /* exitCode needs runFor */
    release(&r);
    static const char *const bad[] = {
        "  driverConfig: {sim: {exitCode: 256, runFor: 1s}}\n",
        "  driverConfig: {sim: {runFor: 400d}}\n",
        "  driverConfig: {sim: {connects: [\"db.example.com:5432\"]}}\n",
        "  driverConfig: {sim: {connects: [\"10.0.0.1\"]}}\n",
        "  driverConfig: {sim: {connects: [\"10.0.0.1:0\"]}}\n",
        "  driverConfig: {sim: {connects: [\"2001:db8::1:443\"]}}\n",
        "  driverConfig: {sim: {connects: [\"10.0.0.1:80/icmp\"]}}\n",
        "  driverConfig: {sim: {pids: -1}}\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = resolve(bad[i], NULL);
        if (r.b)
            fail_msg("accepted: %s", bad[i]);
        release(&r);
    }
    /* at most STK_SIM_MAX_CONNECTS destinations */
    struct stk_buf b = {0};
    stk_buf_puts(&b, "  driverConfig:\n    sim:\n      connects:\n");
    for (int i = 0; i <= STK_SIM_MAX_CONNECTS; i++)
        stk_buf_printf(&b, "        - 10.0.0.%d:80\n", i);
    r = resolve(stk_buf_str(&b), NULL);
    assert_null(r.b);
    release(&r);
    stk_buf_free(&b);
}

static void test_endpoint_parse(void **state)
{
    (void)state;
    struct stk_endpoint e;
    const char *why = NULL;
    assert_true(stk_endpoint_parse("10.0.0.5:5432", &e, &why));
    assert_int_equal(e.port, 5432);
    assert_int_equal(e.protocol, STK_PROTO_TCP);
    assert_true(stk_endpoint_parse("[2001:db8::1]:443/udp", &e, &why));
    assert_int_equal(e.addr.family, STK_FAMILY_V6);
    assert_int_equal(e.protocol, STK_PROTO_UDP);
    assert_true(stk_endpoint_parse("10.0.0.53:53/SCTP", &e, &why));
    assert_int_equal(e.protocol, STK_PROTO_SCTP);
    assert_false(stk_endpoint_parse("[2001:db8::1]443", &e, &why));
    assert_false(stk_endpoint_parse("10.0.0.5:65536", &e, &why));
    assert_false(stk_endpoint_parse("localhost:80", &e, &why));
}

/* ---- egress: the same answers as stk_egress_decide --------------------------------- */

#define DATALAB_ENV                                                                                \
    "data:\n  network:\n    externalEgressCIDRs: [0.0.0.0/0, \"::/0\"]\n"                          \
    "    blacklistIPs: [169.254.169.254/32, fd00:ec2::254/128]\n    podCIDRs: [10.42.0.0/16]\n"    \
    "    serviceCIDR: 10.43.0.0/16\n"

static void check_connects(const char *body, const char *env, const bool *expect, size_t n)
{
    struct resolved r = resolve(body, env);
    if (!r.b)
        fail_msg("does not resolve: %s", body);
    assert_int_equal(r.b->sim->connects.n, n);
    for (size_t i = 0; i < n; i++) {
        struct stk_sim_connect c;
        assert_int_equal(stk_sim_connect(r.b, i, &c), 0);
        struct stk_endpoint e;
        const char *why;
        assert_true(stk_endpoint_parse(r.b->sim->connects.items[i].v, &e, &why));
        struct stk_dest d = {
            .has_addr = true, .addr = e.addr, .port = e.port, .protocol = e.protocol};
        struct stk_verdict v;
        assert_int_equal(stk_egress_decide(r.b, &d, &v), 0);
        if (c.allowed != v.allowed || c.allowed != expect[i])
            fail_msg("%s: sim says %s, the evaluator %s, expected %s",
                     r.b->sim->connects.items[i].v, c.allowed ? "allow" : "deny",
                     v.allowed ? "allow" : "deny", expect[i] ? "allow" : "deny");
        if (v.allowed && v.isolated)
            assert_string_equal(c.policy, stk_netpol_names[v.policy]);
        if (!v.allowed && v.excepted) {
            char cb[STK_CIDR_STRLEN];
            assert_string_equal(c.policy, stk_netpol_names[v.except_policy]);
            assert_string_equal(c.except, stk_cidr_format(&v.except_cidr, cb));
        }
        if (!v.allowed && !v.excepted)
            assert_string_equal(c.policy, stk_netpol_names[STK_NETPOL_DENY]);
    }
    release(&r);
}

static void test_connects_decided_by_the_model(void **state)
{
    (void)state;
    static const char hints[] =
        "  driverConfig:\n    sim:\n      connects: [\"10.0.0.5:5432\", \"169.254.169.254:80\", "
        "\"1.1.1.1:443\", \"[2606:4700::1111]:443\", \"[fd00:ec2::254]:80\", \"10.42.3.4:8080\", "
        "\"10.43.0.10:53/udp\"]\n";
    /* hard defaults: external egress off, everything outside the namespace
     * denied */
    static const bool closed[] = {false, false, false, false, false, false, false};
    check_connects(hints, NULL, closed, 7);
    /* external egress on (Datalab's facts): public addresses allowed; the
     * metadata endpoints, pod and service ranges excepted */
    _cleanup_free_ char *open_body = stk_xasprintf("  network: {externalEgress: true}\n%s", hints);
    static const bool open[] = {true, false, true, true, false, false, false};
    check_connects(open_body, DATALAB_ENV, open, 7);
    /* the sandbox's own allowlist */
    static const char allow[] =
        "  network:\n    egress:\n      - cidr: 10.0.0.0/24\n        ports: [{port: 5432}]\n";
    _cleanup_free_ char *allow_body = stk_xasprintf("%s%s", allow, hints);
    static const bool allowed[] = {true, false, false, false, false, false, false};
    check_connects(allow_body, NULL, allowed, 7);
}

/* ---- a sim session: records only -------------------------------------------------- */

struct events {
    char names[64][32];
    size_t n;
    bool all_simulated;
};

static int collect(const struct stk_audit_rec *r, void *ud)
{
    struct events *e = ud;
    if (e->n < 64)
        snprintf(e->names[e->n++], 32, "%s", r->event);
    if (!strstr(r->details, "\"simulated\":true"))
        e->all_simulated = false;
    return 0;
}

static bool has_event(const struct events *e, const char *name)
{
    for (size_t i = 0; i < e->n; i++)
        if (!strcmp(e->names[i], name))
            return true;
    return false;
}

static char state_dir[] = "/tmp/stk-test-sim-XXXXXX";

static struct stk_session *open_sim(void)
{
    struct stk_local_paths p = {.state_dir = state_dir, .run_dir = "/nonexistent/run"};
    struct stk_session *s = NULL;
    struct stk_error *err = NULL;
    if (stk_session_open_backend(&p, STK_BACKEND_SIM, "tester", &s, &err) < 0)
        fail_msg("open: %s", err->msg);
    return s;
}

static enum stk_sb_phase phase_of(const char *id)
{
    struct stk_session *s = open_sim(); /* opening applies what is due */
    struct stk_sb_rec rec = {0};
    assert_int_equal(stk_store_sb_get(stk_session_store(s), id, &rec, NULL), 0);
    enum stk_sb_phase ph = rec.phase;
    assert_string_equal(rec.runtime, "sim");
    assert_non_null(strstr(rec.result, "\"simulated\":true"));
    stk_sb_rec_free(&rec);
    stk_session_close(s);
    return ph;
}

static void create(struct stk_session *s, const char *body, char id[64])
{
    _cleanup_free_ char *text = stk_xasprintf(HEAD "%s", body);
    struct stk_create_req req = {.docs = {.spec = text, .spec_len = strlen(text)}};
    struct stk_create_res res;
    struct stk_error *err = NULL;
    if (stk_session_create(s, &req, &res, &err) < 0)
        fail_msg("create: %s", err->msg);
    snprintf(id, 64, "%s", res.id);
}

static void test_session_lifecycle(void **state)
{
    (void)state;
    assert_non_null(mkdtemp(state_dir));
    struct stk_session *s = open_sim();
    char done[64], hog[64], svc[64];
    create(s, "  driverConfig: {sim: {runFor: 0s, exitCode: 4}}\n", done);
    create(s,
           "  resources: {memory: 256Mi}\n  driverConfig: {sim: {memoryPeak: 1Gi, connects: "
           "[\"169.254.169.254:80\"]}}\n",
           hog);
    create(s, "  driverConfig: {sim: {output: \"hi\\n\"}}\n", svc);
    stk_session_close(s);
    assert_int_equal(phase_of(done), STK_SB_FAILED);
    assert_int_equal(phase_of(hog), STK_SB_KILLED);
    assert_int_equal(phase_of(svc), STK_SB_READY);

    s = open_sim();
    struct stk_error *err = NULL;
    const char *argv[] = {"id"};
    struct stk_init_proc proc = {.argv = argv, .argc = 1};
    int code = -1;
    assert_int_equal(stk_session_exec(s, svc, &proc, -1, 1, 2, &code, &err), -ENOEXEC);
    assert_non_null(strstr(err->msg, "nothing was executed"));
    assert_int_equal(code, -1);
    stk_error_free(err);
    err = NULL;
    assert_int_equal(stk_session_stop(s, svc, &err), 0);
    assert_int_equal(stk_session_start(s, svc, &err), 0);
    assert_int_equal(stk_session_rm(s, svc, false, &err), -EBUSY);
    stk_error_free(err);
    err = NULL;
    assert_int_equal(stk_session_rm(s, svc, true, &err), 0);

    struct events ev = {.all_simulated = true};
    assert_int_equal(stk_audit_list(stk_session_store(s), hog, collect, &ev, NULL), 0);
    assert_true(has_event(&ev, "egress_denied"));
    assert_true(has_event(&ev, "killed"));
    assert_true(ev.all_simulated);
    ev = (struct events){.all_simulated = true};
    assert_int_equal(stk_audit_list(stk_session_store(s), svc, collect, &ev, NULL), 0);
    static const char *const want[] = {"created",  "started", "exec",     "stopping", "stopped",
                                       "starting", "started", "deleting", "deleted"};
    assert_int_equal(ev.n, sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < ev.n; i++)
        assert_string_equal(ev.names[i], want[i]);
    assert_true(ev.all_simulated);
    struct stk_audit_verify_result vr;
    assert_int_equal(stk_audit_verify(stk_session_store(s), NULL, &vr, NULL), 0);
    assert_true(vr.ok);
    stk_session_close(s);
    assert_int_equal(phase_of(svc), STK_SB_DELETED);

    /* the directory is sim's: local refuses it, and says why */
    struct stk_local_paths p = {.state_dir = state_dir, .run_dir = "/nonexistent/run"};
    assert_int_equal(stk_session_open(&p, NULL, &s, &err), -EEXIST);
    assert_non_null(strstr(err->msg, "holds sim sandboxes"));
    stk_error_free(err);
    _cleanup_free_ char *cmd = stk_xasprintf("rm -rf '%s'", state_dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exits_on_its_own),
        cmocka_unit_test(test_each_kill_reason),
        cmocka_unit_test(test_earliest_wins),
        cmocka_unit_test(test_hint_rules),
        cmocka_unit_test(test_endpoint_parse),
        cmocka_unit_test(test_connects_decided_by_the_model),
        cmocka_unit_test(test_session_lifecycle),
    };
    return cmocka_run_group_tests_name("sim", tests, NULL, NULL);
}
