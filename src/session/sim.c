/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The simulator backend: long-lived sandboxes as records only.
 *
 * A sim sandbox has the same record, phases, audit trail, logs and pools
 * as a local one, and nothing on the host: no monitor, no container, no
 * cgroup, no network. What its workload does is declared in the spec's sim
 * hints (spec.driverConfig.sim) and modelled against the boundary's limits
 * and egress model; nothing is executed, and every result says so
 * ("simulated": true).
 *
 * Time: the outcome is computed when the workload starts (create, start,
 * a claim) and stored in the record's result with its modelled end
 * (endsAt, unix ms). Nothing runs in the background: whoever opens a sim
 * session (ls, get, logs, any command) applies every end whose time has
 * come, in one compare-and-set of the phase with its audit record, so a
 * sandbox with runFor: 2s reads as succeeded (or killed) 2 s later.
 */
#include "session/private.h"

#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <string.h>

#define SIM_ACTOR "stockade-sim"
#define SIM_NOTE  "simulated: nothing was executed"
/* An in-flight phase this old was left by a process that died: sim
 * operations take milliseconds. */
#define SIM_STALE_MS 10000

/* ---- the model ---------------------------------------------------------------------- */

/* Use grows linearly from 0 at start to `use` at `end_ms`: the first moment
 * it is above `limit` (use > limit > 0). */
static int64_t crossing_ms(int64_t end_ms, int64_t limit, int64_t use)
{
    return (int64_t)((double)end_ms * (double)limit / (double)use);
}

/* The use at t of something that reaches `use` at end_ms. */
static int64_t ramp(const struct stk_sim_outcome *o, int64_t run_for, int64_t use)
{
    if (!o->ends || run_for <= 0 || o->at_ms >= run_for)
        return use;
    return (int64_t)((double)use * (double)o->at_ms / (double)run_for);
}

static void kill_at(struct stk_sim_outcome *o, enum stk_kill_reason why, int64_t at)
{
    /* strictly earlier: a tie keeps the reason found first (the order of
     * the checks in stk_sim_model) */
    if (o->kill != STK_KILL_NONE && at >= o->at_ms)
        return;
    o->kill = why;
    o->at_ms = at;
    o->ends = true;
}

void stk_sim_model(const struct stk_boundary *b, struct stk_sim_outcome *ret)
{
    const struct stk_sim_config *h = b->sim;
    const struct stk_resolved_limits *l = &b->limits;
    bool ends = h && h->run_for.meta.set;
    int64_t run_for = ends ? h->run_for.v : 0;
    int64_t mem = h ? h->memory_peak.v : 0, pids = h ? h->pids.v : 0;
    int64_t cpu = h ? h->cpu_time.v : 0;
    struct stk_sim_outcome o = {.ends = ends, .at_ms = run_for, .kill = STK_KILL_NONE};

    /* without runFor the peaks are reached at start: a service that runs
     * until stopped allocates as it comes up */
    if (l->memory > 0 && mem > l->memory)
        kill_at(&o, STK_KILL_MEMORY, ends ? crossing_ms(run_for, l->memory, mem) : 0);
    if (l->pids > 0 && pids > l->pids)
        kill_at(&o, STK_KILL_PIDS, ends ? crossing_ms(run_for, l->pids, pids) : 0);
    if (l->cpu_time_ms > 0 && cpu > l->cpu_time_ms)
        kill_at(&o, STK_KILL_CPU, ends ? crossing_ms(run_for, l->cpu_time_ms, cpu) : 0);
    if (l->wall_clock_ms > 0 && (!ends || run_for > l->wall_clock_ms))
        kill_at(&o, STK_KILL_WALL_CLOCK, l->wall_clock_ms);

    o.memory_bytes = ramp(&o, run_for, mem);
    o.pids = ramp(&o, run_for, pids);
    o.cpu_ms = ramp(&o, run_for, cpu);
    if (o.kill != STK_KILL_NONE) {
        o.phase = STK_SB_KILLED;
        o.exit_code = -1;
        /* the kernel stops it at its limit, never beyond */
        if (o.kill == STK_KILL_MEMORY)
            o.memory_bytes = l->memory;
        if (o.kill == STK_KILL_PIDS)
            o.pids = l->pids;
        if (o.kill == STK_KILL_CPU)
            o.cpu_ms = l->cpu_time_ms;
    } else {
        o.exit_code = h && h->exit_code.meta.set ? (int)h->exit_code.v : 0;
        o.phase = o.exit_code == 0 ? STK_SB_SUCCEEDED : STK_SB_FAILED;
    }
    *ret = o;
}

int stk_sim_connect(const struct stk_boundary *b, size_t i, struct stk_sim_connect *ret)
{
    if (!b->sim || i >= b->sim->connects.n)
        return -EINVAL;
    struct stk_endpoint e;
    const char *why;
    if (!stk_endpoint_parse(b->sim->connects.items[i].v, &e, &why))
        return -EINVAL;
    struct stk_dest d = {.has_addr = true, .addr = e.addr, .port = e.port, .protocol = e.protocol};
    struct stk_verdict v;
    if (stk_egress_decide(b, &d, &v) < 0)
        return -EINVAL;
    struct stk_sim_connect c = {.port = e.port, .allowed = v.allowed};
    stk_cidr_format(&e.addr, c.dst);
    *strrchr(c.dst, '/') = '\0';
    c.proto = stk_protocol_names[e.protocol];
    /* the names the local driver's denial records carry */
    c.policy = !v.isolated ? "none" : stk_netpol_names[v.policy];
    if (!v.allowed && v.excepted) {
        c.policy = stk_netpol_names[v.except_policy];
        stk_cidr_format(&v.except_cidr, c.except);
    }
    *ret = c;
    return 0;
}

/* ---- records -------------------------------------------------------------------------- */

static char *dumps(json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(j);
    return s;
}

/* Audit details: the caller's object (or {}) marked as simulated. */
static char *sim_details(json_t *j)
{
    if (!j)
        j = json_object();
    json_object_set_new(j, "simulated", json_true());
    return dumps(j);
}

static int set_phase(struct stk_session *s, const char *id, int expect, enum stk_sb_phase to,
                     const char *reason, const char *event, json_t *details, struct stk_error **err)
{
    _cleanup_free_ char *dj = sim_details(details);
    return stk_store_sb_set_phase(s->st, id, expect, to, reason, "", s->actor, event, dj, err);
}

static json_t *usage_json(json_t *j, const struct stk_sim_outcome *o)
{
    json_object_set_new(j, "cpuSeconds", json_real((double)o->cpu_ms / 1000.0));
    json_object_set_new(j, "peakMemoryBytes", json_integer(o->memory_bytes));
    json_object_set_new(j, "peakPids", json_integer(o->pids));
    return j;
}

/* The result of a workload that started at started_ms: the local result's
 * keys (unknown until it ends) and the modelled outcome. */
static char *running_result(const struct stk_sim_outcome *o, int64_t started_ms)
{
    json_t *m = json_pack("{s:s,s:o,s:o}", "phase", stk_sb_phase_names[o->phase], "killReason",
                          o->kill ? json_string(stk_kill_reason_names[o->kill]) : json_null(),
                          "exitCode", o->exit_code >= 0 ? json_integer(o->exit_code) : json_null());
    json_t *j = json_pack("{s:b,s:s,s:s,s:I,s:o,s:n,s:n,s:n,s:n,s:n}", "simulated", 1, "note",
                          SIM_NOTE, "runtime", "sim", "startedAt", (json_int_t)started_ms, "endsAt",
                          o->ends ? json_integer(started_ms + o->at_ms) : json_null(), "exitCode",
                          "signal", "killReason", "cpuSeconds", "peakMemoryBytes");
    if (o->ends) {
        json_object_set_new(j, "modelled", usage_json(m, o));
    } else {
        json_decref(m);
        json_object_set_new(j, "modelled", json_null());
    }
    return dumps(j);
}

/* A pool member: no workload, nothing modelled. */
static char *idle_result(void)
{
    return dumps(json_pack("{s:b,s:s,s:s,s:n}", "simulated", 1, "note", SIM_NOTE, "runtime", "sim",
                           "endsAt"));
}

static void audit_connects(struct stk_session *s, const char *id, const struct stk_boundary *b)
{
    for (size_t i = 0; b->sim && i < b->sim->connects.n; i++) {
        struct stk_sim_connect c;
        if (stk_sim_connect(b, i, &c) < 0)
            continue;
        json_t *d = json_pack("{s:s,s:s,s:s,s:i,s:s,s:s}", "type",
                              c.allowed ? "egress_allowed" : "egress_denied", "sandbox", id, "dst",
                              c.dst, "port", (int)c.port, "proto", c.proto, "policy", c.policy);
        if (c.except[0])
            json_object_set_new(d, "except", json_string(c.except));
        _cleanup_free_ char *dj = sim_details(d);
        (void)stk_audit_append(s->st, id, c.allowed ? "egress_allowed" : "egress_denied", SIM_ACTOR,
                               dj, NULL);
    }
}

/* The declared output, into the same bounded logs local sandboxes have. */
static void write_output(struct stk_session *s, const char *id, const struct stk_boundary *b)
{
    if (!b->sim || !b->sim->output.meta.set || !b->sim->output.v[0])
        return;
    char dir[PATH_MAX];
    struct log_writer w = {.fd = -1};
    if (session_dir(s, id, dir, sizeof(dir)) < 0 || log_writer_open(&w, dir, NULL) < 0)
        return;
    (void)log_writer_put(&w, 1, b->sim->output.v, strlen(b->sim->output.v));
    log_writer_close(&w);
}

/* The workload starts: its outcome is modelled from now, its connects are
 * decided and its output is written; then the phase says ready. */
static int workload_start(struct stk_session *s, const char *id, const struct stk_boundary *b,
                          enum stk_sb_phase from, json_t *details, struct stk_error **err)
{
    struct stk_sim_outcome o;
    stk_sim_model(b, &o);
    _cleanup_free_ char *result = running_result(&o, stk_clock_ms(CLOCK_REALTIME));
    int r = stk_store_sb_set_result(s->st, id, -1, result, err);
    if (r < 0) {
        json_decref(details);
        return r;
    }
    if (!details)
        details = json_object();
    json_t *argv = json_array();
    for (size_t i = 0; i < b->argc; i++)
        json_array_append_new(argv, json_string(b->argv[i]));
    json_object_set_new(details, "argv", argv);
    if (from != STK_SB_READY &&
        (r = set_phase(s, id, (int)from, STK_SB_READY, "", "started", details, err)) < 0)
        return r;
    if (from == STK_SB_READY) {
        /* a claim: the member was ready already */
        _cleanup_free_ char *dj = sim_details(details);
        if ((r = stk_audit_append(s->st, id, "started", s->actor, dj, err)) < 0)
            return r;
    }
    audit_connects(s, id, b);
    write_output(s, id, b);
    return 0;
}

/* ---- ending: applied lazily by whoever reads ----------------------------------------- */

/* The record's modelled end, or false when it has none or it has not come. */
static bool end_due(const struct stk_sb_rec *rec, int64_t now, json_t **ret_result)
{
    if (rec->phase != STK_SB_READY || rec->pool_member || !rec->result)
        return false;
    json_t *j = json_loads(rec->result, 0, NULL);
    json_t *ends = json_object_get(j, "endsAt");
    if (!json_is_integer(ends) || json_integer_value(ends) > now ||
        !json_is_object(json_object_get(j, "modelled"))) {
        json_decref(j);
        return false;
    }
    *ret_result = j;
    return true;
}

static int end_workload(struct stk_session *s, const struct stk_sb_rec *rec, json_t *result,
                        struct stk_error **err)
{
    json_t *m = json_object_get(result, "modelled");
    const char *phase = json_string_value(json_object_get(m, "phase"));
    const char *kill = json_string_value(json_object_get(m, "killReason"));
    json_t *code = json_object_get(m, "exitCode");
    int to = stk_enum_lookup(stk_sb_phase_names, _STK_SB_N, phase ? phase : "");
    if (to != STK_SB_SUCCEEDED && to != STK_SB_FAILED && to != STK_SB_KILLED)
        return stk_error_make(err, EINVAL, "sandbox %s: its modelled outcome is damaged", rec->id);
    json_t *d =
        json_pack("{s:O,s:O}", "modelledAt", json_object_get(result, "endsAt"), "exitCode", code);
    _cleanup_free_ char *dj = sim_details(d);
    /* the phase first: a stop that landed meanwhile wins (-ESTALE) */
    int r = stk_store_sb_set_phase(s->st, rec->id, STK_SB_READY, (enum stk_sb_phase)to,
                                   kill ? kill : "", "", SIM_ACTOR, kill ? "killed" : "exited", dj,
                                   err);
    if (r < 0)
        return r;
    static const char *const keys[] = {"exitCode", "killReason", "cpuSeconds", "peakMemoryBytes",
                                       "peakPids"};
    for (size_t i = 0; i < STK_ARRAY_SIZE(keys); i++)
        json_object_set(result, keys[i], json_object_get(m, keys[i]));
    _cleanup_free_ char *rs = json_dumps(result, JSON_COMPACT | JSON_PRESERVE_ORDER);
    return stk_store_sb_set_result(
        s->st, rec->id, json_is_integer(code) ? (int)json_integer_value(code) : -1, rs, err);
}

/* An in-flight phase older than SIM_STALE_MS: its process died midway. */
static void recover_stale(struct stk_session *s, const struct stk_sb_rec *rec, int64_t now)
{
    if (now - rec->updated_ms < SIM_STALE_MS)
        return;
    json_t *d = json_pack("{s:b}", "recovered", 1);
    switch (rec->phase) {
    case STK_SB_PENDING:
    case STK_SB_PROVISIONING:
    case STK_SB_STARTING:
        (void)set_phase(s, rec->id, (int)rec->phase, STK_SB_FAILED, "interrupted", "failed", d,
                        NULL);
        return;
    case STK_SB_STOPPING:
        (void)set_phase(s, rec->id, STK_SB_STOPPING, STK_SB_STOPPED, NULL, "stopped", d, NULL);
        return;
    case STK_SB_DELETING:
        (void)set_phase(s, rec->id, STK_SB_DELETING, STK_SB_DELETED, NULL, "deleted", d, NULL);
        return;
    case STK_SB_READY:
    case STK_SB_STOPPED:
    case STK_SB_SUCCEEDED:
    case STK_SB_FAILED:
    case STK_SB_KILLED:
    case STK_SB_DELETED:
    case _STK_SB_N:
    default:
        json_decref(d);
        return;
    }
}

static void advance_rec(struct stk_session *s, const struct stk_sb_rec *rec, int64_t now)
{
    json_t *result = NULL;
    if (end_due(rec, now, &result)) {
        (void)end_workload(s, rec, result, NULL);
        json_decref(result);
        return;
    }
    recover_stale(s, rec, now);
}

int sim_advance_all(struct stk_session *s, struct stk_error **err)
{
    struct stk_sb_rec *recs = NULL;
    size_t n = 0;
    int r = stk_store_sb_list(s->st, false, &recs, &n, err);
    if (r < 0)
        return r;
    int64_t now = stk_clock_ms(CLOCK_REALTIME);
    for (size_t i = 0; i < n; i++)
        advance_rec(s, &recs[i], now);
    stk_sb_recs_free(recs, n);
    return 0;
}

/* The record as of now: its modelled end applied when due. */
static int sim_get(struct stk_session *s, const char *id, struct stk_sb_rec *ret,
                   struct stk_error **err)
{
    int r = session_get(s, id, ret, err);
    if (r < 0)
        return r;
    json_t *result = NULL;
    if (!end_due(ret, stk_clock_ms(CLOCK_REALTIME), &result))
        return 0;
    (void)end_workload(s, ret, result, NULL);
    json_decref(result);
    stk_sb_rec_free(ret);
    return session_get(s, id, ret, err);
}

/* ---- the verbs -------------------------------------------------------------------------- */

int sim_create(struct stk_session *s, const struct stk_create_req *req,
               const struct stk_boundary *b, struct stk_create_res *ret, struct stk_error **err)
{
    if (b->model == STK_MODEL_INJECTION)
        return stk_error_make(err, EINVAL,
                              "injection needs a Kubernetes workload; the simulator models "
                              "standalone sandboxes");
    if (!req->pool_member && !req->idle && b->argc == 0)
        return stk_error_make(err, EINVAL, "%s has no spec.command: nothing to run",
                              req->docs.spec_file ? req->docs.spec_file : "the spec");
    struct stk_sb_rec rec;
    session_record_new(s, req, b, "sim", &rec);
    int r = stk_store_sb_insert(s->st, &rec, err);
    if (r >= 0) {
        _cleanup_free_ char *dj =
            sim_details(json_pack("{s:s,s:s,s:b}", "name", rec.name, "runtime", rec.runtime,
                                  "poolMember", rec.pool_member));
        r = stk_audit_append(s->st, rec.id, "created", s->actor, dj, err);
    }
    fmt_into(ret->id, sizeof(ret->id), "%s", rec.id);
    stk_sb_rec_free(&rec);
    if (r >= 0)
        r = set_phase(s, ret->id, STK_SB_PENDING, STK_SB_PROVISIONING, NULL, NULL, NULL, err);
    if (r < 0)
        return r;
    if (req->pool_member || req->idle) {
        _cleanup_free_ char *result = idle_result();
        if ((r = stk_store_sb_set_result(s->st, ret->id, -1, result, err)) < 0)
            return r;
        return set_phase(s, ret->id, STK_SB_PROVISIONING, STK_SB_READY, "", "ready", NULL, err);
    }
    return workload_start(s, ret->id, b, STK_SB_PROVISIONING, NULL, err);
}

int sim_claimed(struct stk_session *s, const char *id, const struct stk_boundary *b,
                const char *pool, struct stk_error **err)
{
    return workload_start(s, id, b, STK_SB_READY, json_pack("{s:s}", "pool", pool), err);
}

static const char *phase_name(enum stk_sb_phase p)
{
    return p < _STK_SB_N ? stk_sb_phase_names[p] : "?";
}

int sim_exec(struct stk_session *s, const char *id, const struct stk_init_proc *proc,
             struct stk_error **err)
{
    struct stk_sb_rec rec = {0};
    int r = sim_get(s, id, &rec, err);
    if (r < 0)
        return r;
    if (rec.phase != STK_SB_READY || rec.pool_member) {
        r = rec.pool_member
                ? stk_error_make(err, EBUSY, "sandbox %s is an unclaimed member of pool %s", rec.id,
                                 rec.pool)
                : stk_error_make(err, EBUSY, "sandbox %s is %s; exec needs a ready sandbox", rec.id,
                                 phase_name(rec.phase));
        stk_sb_rec_free(&rec);
        return r;
    }
    /* the request is audited like any exec; the answer is never a made-up
     * exit status */
    _cleanup_free_ char *dj = session_argv_json(proc->argv, proc->argc, "simulated", json_true());
    r = stk_audit_append(s->st, rec.id, "exec", s->actor, dj, err);
    if (r >= 0)
        r = stk_error_make(err, ENOEXEC,
                           SIM_NOTE " (sandbox %s is simulated: the sim backend runs no process, "
                                    "so there is no exit status)",
                           rec.id);
    stk_sb_rec_free(&rec);
    return r;
}

int sim_stop(struct stk_session *s, const char *id, struct stk_error **err)
{
    struct stk_sb_rec rec = {0};
    int r = sim_get(s, id, &rec, err);
    if (r < 0)
        return r;
    if (rec.phase != STK_SB_READY || rec.pool_member) {
        r = rec.phase == STK_SB_STOPPED
                ? 0
                : stk_error_make(
                      err, EBUSY, "sandbox %s is %s%s; only a ready sandbox can be stopped", rec.id,
                      phase_name(rec.phase),
                      rec.pool_member ? " (an unclaimed pool member: pool rm removes it)" : "");
        stk_sb_rec_free(&rec);
        return r;
    }
    stk_sb_rec_free(&rec);
    r = stk_store_sb_set_phase(s->st, id, STK_SB_READY, STK_SB_STOPPING, "", "stop requested",
                               s->actor, "stopping", "{\"simulated\":true}", err);
    if (r >= 0)
        r = set_phase(s, id, STK_SB_STOPPING, STK_SB_STOPPED, "", "stopped", NULL, err);
    return r;
}

int sim_start(struct stk_session *s, const char *id, struct stk_error **err)
{
    struct stk_sb_rec rec = {0};
    int r = sim_get(s, id, &rec, err);
    if (r < 0)
        return r;
    if (rec.phase != STK_SB_STOPPED) {
        r = rec.phase == STK_SB_READY
                ? 0
                : stk_error_make(err, EBUSY,
                                 "sandbox %s is %s; only a stopped sandbox can be started", rec.id,
                                 phase_name(rec.phase));
        stk_sb_rec_free(&rec);
        return r;
    }
    struct stk_session_boundary sb = {0};
    r = session_rec_boundary(&rec, &sb, err);
    if (r >= 0)
        r = stk_store_sb_set_phase(s->st, rec.id, STK_SB_STOPPED, STK_SB_STARTING, "",
                                   "start requested", s->actor, "starting", "{\"simulated\":true}",
                                   err);
    if (r >= 0)
        r = workload_start(s, rec.id, sb.b, STK_SB_STARTING, NULL, err);
    stk_session_boundary_release(&sb);
    stk_sb_rec_free(&rec);
    return r;
}

int sim_rm(struct stk_session *s, const char *id, bool force, struct stk_error **err)
{
    struct stk_sb_rec rec = {0};
    int r = sim_get(s, id, &rec, err);
    if (r < 0)
        return r;
    enum stk_sb_phase ph = rec.phase;
    bool running = ph == STK_SB_READY || ph == STK_SB_STARTING || ph == STK_SB_PROVISIONING ||
                   ph == STK_SB_PENDING || ph == STK_SB_STOPPING;
    if (ph == STK_SB_DELETED || (running && !force && !rec.pool_member)) {
        r = ph == STK_SB_DELETED
                ? 0
                : stk_error_make(err, EBUSY,
                                 "sandbox %s is %s; stop it first, or rm -f stops and removes it",
                                 rec.id, phase_name(ph));
        stk_sb_rec_free(&rec);
        return r;
    }
    char dir[PATH_MAX];
    bool have_dir = session_dir(s, rec.id, dir, sizeof(dir)) >= 0;
    r = stk_store_sb_set_phase(s->st, rec.id, (int)ph, STK_SB_DELETING, NULL, "delete requested",
                               s->actor, "deleting", "{\"simulated\":true}", err);
    if (r >= 0)
        r = set_phase(s, rec.id, STK_SB_DELETING, STK_SB_DELETED, NULL, "deleted", NULL, err);
    if (r >= 0 && have_dir)
        (void)rm_rf(dir); /* its logs: all a sim sandbox holds */
    stk_sb_rec_free(&rec);
    return r;
}

int sim_logs_wait(struct stk_session *s, const char *id, struct stk_error **err)
{
    for (;;) {
        struct stk_sb_rec rec = {0};
        int r = sim_get(s, id, &rec, err);
        if (r < 0)
            return r;
        bool live = rec.phase == STK_SB_READY || rec.phase == STK_SB_STARTING ||
                    rec.phase == STK_SB_PROVISIONING || rec.phase == STK_SB_PENDING;
        stk_sb_rec_free(&rec);
        if (!live)
            return 0;
        poll(NULL, 0, 100);
    }
}
