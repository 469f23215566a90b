/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The simulator driver: long-lived sandboxes that execute nothing.
 *
 * A sim sandbox holds nothing on the host and nothing on a cluster. What its
 * workload does is declared in the spec's sim hints (spec.driverConfig.sim)
 * and modelled against the boundary's limits and egress model when it
 * starts (provision, or start for a claimed pool member): the outcome is the
 * handle, {"startedAt", "endsAt", "modelled"}, and the session stores it
 * with the record. observe applies the model's time: the workload has ENDED
 * once endsAt has passed. Nothing runs in the background, so there is no
 * supervise: the session observes whenever it reads (docs/sim.md).
 *
 * Every record and result of a sim sandbox says "simulated": true (the
 * table's marks); exec refuses rather than inventing an exit status.
 */
#include "driver/driver.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define SIM_NOTE "simulated: nothing was executed"

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
        o.phase = STK_PHASE_KILLED;
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
        o.phase = o.exit_code == 0 ? STK_PHASE_SUCCEEDED : STK_PHASE_FAILED;
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

/* ---- the driver ---------------------------------------------------------------------- */

struct sim_ctx {
    int unused;
};

static int sim_open(const struct stk_driver_conf *conf, void **ret_ctx, struct stk_error **err)
{
    (void)conf;
    (void)err;
    *ret_ctx = stk_xcalloc(1, sizeof(struct sim_ctx));
    return 0;
}

static void sim_close(void *ctx)
{
    free(ctx);
}

static int sim_facts(void *ctx, const struct stk_boundary *b, struct stk_driver_facts *ret,
                     struct stk_error **err)
{
    (void)ctx;
    *ret = (struct stk_driver_facts){.facts = {.backend = STK_BACKEND_SIM}, .runtime = "sim"};
    if (b && b->model == STK_MODEL_INJECTION)
        return stk_error_make(err, EINVAL,
                              "injection needs a Kubernetes workload; the simulator models "
                              "standalone sandboxes");
    return 0;
}

static char *dumps(json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(j);
    return s;
}

/* What the workload does when it starts: its egress decisions and its
 * declared output, reported to the session. */
static void report_start(const struct stk_driver_sandbox *sb)
{
    const struct stk_driver_sink *k = sb->sink;
    const struct stk_boundary *b = sb->b;
    if (!k || !b)
        return;
    for (size_t i = 0; k->event && b->sim && i < b->sim->connects.n; i++) {
        struct stk_sim_connect c;
        if (stk_sim_connect(b, i, &c) < 0)
            continue;
        const char *type = c.allowed ? "egress_allowed" : "egress_denied";
        json_t *d = json_pack("{s:s,s:s,s:s,s:i,s:s,s:s}", "type", type, "sandbox", sb->id, "dst",
                              c.dst, "port", (int)c.port, "proto", c.proto, "policy", c.policy);
        if (c.except[0])
            json_object_set_new(d, "except", json_string(c.except));
        _cleanup_free_ char *dj = dumps(d);
        k->event(k->ud, type, dj);
    }
    if (k->output && b->sim && b->sim->output.meta.set && b->sim->output.v[0])
        (void)k->output(k->ud, 1, b->sim->output.v, strlen(b->sim->output.v));
}

/* The handle of a workload that starts now: its modelled outcome. */
static char *model_handle(const struct stk_boundary *b)
{
    struct stk_sim_outcome o;
    stk_sim_model(b, &o);
    int64_t now = stk_clock_ms(CLOCK_REALTIME);
    json_t *m = json_null();
    if (o.ends)
        m = json_pack("{s:s,s:o,s:o,s:f,s:I,s:I}", "phase", stk_phase_names[o.phase], "killReason",
                      o.kill ? json_string(stk_kill_reason_names[o.kill]) : json_null(), "exitCode",
                      o.exit_code >= 0 ? json_integer(o.exit_code) : json_null(), "cpuSeconds",
                      (double)o.cpu_ms / 1000.0, "peakMemoryBytes", (json_int_t)o.memory_bytes,
                      "peakPids", (json_int_t)o.pids);
    return dumps(json_pack("{s:I,s:o,s:o}", "startedAt", (json_int_t)now, "endsAt",
                           o.ends ? json_integer(now + o.at_ms) : json_null(), "modelled", m));
}

static int sim_provision(void *ctx, const struct stk_driver_sandbox *sb, bool restart,
                         char **ret_handle, struct stk_error **err)
{
    (void)ctx;
    (void)restart;
    if (sb->pool_member || sb->idle) {
        *ret_handle = stk_xstrdup("{\"idle\":true}");
        return 0;
    }
    if (!sb->b)
        return stk_error_make(err, EINVAL, "sandbox %s: no boundary to model", sb->id);
    *ret_handle = model_handle(sb->b);
    report_start(sb);
    return 0;
}

static bool handle_idle(const char *handle)
{
    json_t *h = handle ? json_loads(handle, 0, NULL) : NULL;
    bool idle = json_is_true(json_object_get(h, "idle"));
    json_decref(h);
    return idle;
}

static int sim_start(void *ctx, const struct stk_driver_sandbox *sb, char **ret_handle,
                     struct stk_error **err)
{
    (void)ctx;
    *ret_handle = NULL;
    if (!handle_idle(sb->handle))
        return stk_error_make(err, STK_DRV_E_PHASE, "sandbox %s: its workload runs already",
                              sb->id);
    if (!sb->b)
        return stk_error_make(err, EINVAL, "sandbox %s: no boundary to model", sb->id);
    *ret_handle = model_handle(sb->b);
    report_start(sb);
    return 0;
}

static int sim_exec(void *ctx, const struct stk_driver_sandbox *sb,
                    const struct stk_init_proc *proc, int in_fd, int out_fd, int err_fd,
                    int *ret_code, struct stk_error **err)
{
    (void)ctx, (void)proc, (void)in_fd, (void)out_fd, (void)err_fd, (void)ret_code;
    /* never a made-up exit status */
    return stk_error_make(err, STK_DRV_E_NOTSUP,
                          SIM_NOTE " (sandbox %s is simulated: the sim backend runs no process, "
                                   "so there is no exit status)",
                          sb->id);
}

static int sim_file_read(void *ctx, const struct stk_driver_sandbox *sb, const char *path,
                         stk_init_data_fn cb, void *ud, uint64_t *ret_size, struct stk_error **err)
{
    (void)ctx, (void)cb, (void)ud, (void)ret_size;
    /* never made-up content */
    return stk_error_make(err, STK_DRV_E_NOTSUP,
                          SIM_NOTE " (sandbox %s is simulated: it has no filesystem to read %s "
                                   "from)",
                          sb->id, path);
}

static int sim_file_write(void *ctx, const struct stk_driver_sandbox *sb, const char *path,
                          unsigned mode, uint64_t size, int in_fd, struct stk_error **err)
{
    (void)ctx, (void)mode, (void)size, (void)in_fd;
    return stk_error_make(err, STK_DRV_E_NOTSUP,
                          SIM_NOTE " (sandbox %s is simulated: it has no filesystem to write %s "
                                   "to)",
                          sb->id, path);
}

static int sim_stop(void *ctx, const struct stk_driver_sandbox *sb, int grace_ms,
                    struct stk_error **err)
{
    (void)ctx, (void)sb, (void)grace_ms, (void)err;
    return 0; /* nothing runs: the session records the stop */
}

static int sim_observe(void *ctx, const struct stk_driver_sandbox *sb,
                       struct stk_driver_status *ret, struct stk_error **err)
{
    (void)ctx;
    *ret = (struct stk_driver_status){.state = STK_DRV_RUNNING, .exit_code = -1};
    json_t *h = sb->handle ? json_loads(sb->handle, 0, NULL) : NULL;
    if (!json_is_object(h)) {
        json_decref(h);
        return stk_error_make(err, STK_DRV_E_GONE, "sandbox %s: no modelled workload", sb->id);
    }
    json_t *u = json_pack("{s:s}", "note", SIM_NOTE);
    if (json_is_true(json_object_get(h, "idle"))) {
        json_object_set_new(u, "endsAt", json_null());
        ret->usage = dumps(u);
        json_decref(h);
        return 0;
    }
    json_t *ends = json_object_get(h, "endsAt"), *m = json_object_get(h, "modelled");
    json_object_set(u, "startedAt", json_object_get(h, "startedAt"));
    json_object_set(u, "endsAt", ends);
    json_object_set(u, "modelled", m);
    if (json_is_integer(ends) && json_is_object(m) &&
        json_integer_value(ends) <= stk_clock_ms(CLOCK_REALTIME)) {
        /* its time has come: the modelled outcome is the status */
        json_t *code = json_object_get(m, "exitCode");
        const char *kill = json_string_value(json_object_get(m, "killReason"));
        int k = kill ? stk_enum_lookup(stk_kill_reason_names, _STK_KILL_N, kill) : STK_KILL_NONE;
        ret->state = STK_DRV_ENDED;
        ret->exit_code = json_is_integer(code) ? (int)json_integer_value(code) : -1;
        ret->kill = k > 0 ? (enum stk_kill_reason)k : STK_KILL_NONE;
        json_object_set(u, "modelledAt", ends);
        static const char *const keys[] = {"cpuSeconds", "peakMemoryBytes", "peakPids"};
        for (size_t i = 0; i < STK_ARRAY_SIZE(keys); i++)
            json_object_set(u, keys[i], json_object_get(m, keys[i]));
    }
    ret->usage = dumps(u);
    json_decref(h);
    return 0;
}

static int sim_teardown(void *ctx, const struct stk_driver_sandbox *sb, bool purge,
                        struct stk_error **err)
{
    (void)ctx, (void)sb, (void)purge, (void)err;
    return 0; /* it holds nothing; its logs are the session's */
}

const struct stk_driver_ops stk_sim_driver_ops = {
    .backend = STK_BACKEND_SIM,
    .marks = "{\"simulated\":true}",
    .models_only = true,
    .open = sim_open,
    .close = sim_close,
    .facts = sim_facts,
    .provision = sim_provision,
    .start = sim_start,
    .exec = sim_exec,
    .file_read = sim_file_read,
    .file_write = sim_file_write,
    .stop = sim_stop,
    .supervise = NULL, /* nothing runs: observe applies the model's time */
    .observe = sim_observe,
    .teardown = sim_teardown,
    .logs = NULL, /* the session's log files, written from the sink */
    .gc = NULL,   /* nothing is ever left behind */
};
