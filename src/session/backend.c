/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The session's side of the driver seam (driver.h). The session owns
 * records, phases and the audit trail for every backend; a driver owns what
 * a sandbox holds and an opaque handle stored with the record. Here:
 *  - a record as a driver sees it (struct stk_driver_sandbox);
 *  - the driver's marks merged into every audit record and result;
 *  - the result of a status, and the phase a status ends a sandbox in;
 *  - for drivers without a watcher (no supervise: sim), bringing a workload
 *    up in the caller's process, and applying what observe reports whenever
 *    a record is read, so nothing needs to run in the background.
 */
#include "session/private.h"

#include <errno.h>
#include <jansson.h>
#include <string.h>
#include <unistd.h>

void session_backend_actor(const struct stk_session *s, char *buf, size_t n)
{
    fmt_into(buf, n, "stockade-%s", stk_backend_names[s->backend]);
}

/* ---- a record as a driver sees it ------------------------------------------------- */

/* The record only: d.b is NULL (observe needs the handle, not the spec). */
static int sb_load_record(struct stk_session *s, const char *id, struct session_sb *ret,
                          struct stk_error **err)
{
    *ret = (struct session_sb){0};
    int r = session_get(s, id, &ret->rec, err);
    if (r < 0)
        return r;
    const struct stk_sb_rec *rec = &ret->rec;
    ret->d = (struct stk_driver_sandbox){
        .id = rec->id,
        .name = rec->name,
        .handle = rec->handle,
        .pool = rec->pool[0] ? rec->pool : NULL,
        .pool_member = rec->pool_member,
        .lock_fd = -1,
        .runtime = rec->runtime,
    };
    return 0;
}

int session_sb_load(struct stk_session *s, const char *id, bool need_boundary,
                    struct session_sb *ret, struct stk_error **err)
{
    int r = sb_load_record(s, id, ret, err);
    if (r < 0)
        return r;
    struct stk_error *e = NULL;
    if (session_rec_boundary(&ret->rec, &ret->bd, &e) < 0) {
        if (need_boundary) {
            stk_sb_rec_free(&ret->rec);
            if (err)
                *err = e;
            else
                stk_error_free(e);
            return -EINVAL;
        }
        stk_error_free(e);
    }
    ret->d.b = ret->bd.b;
    ret->d.env = ret->bd.env;
    return 0;
}

void session_sb_release(struct session_sb *sb)
{
    stk_session_boundary_release(&sb->bd);
    stk_sb_rec_free(&sb->rec);
    *sb = (struct session_sb){0};
}

/* ---- errors across the seam --------------------------------------------------------- */

int session_drv_error(const struct stk_session *s, const char *verb, int r, struct stk_error **err)
{
    const char *be = stk_backend_names[s->backend];
    if (r >= 0)
        return r;
    switch (-r) {
    case STK_DRV_E_NOTSUP:
        /* exec: the command was not executed (125, never a made-up status) */
        if (!strcmp(verb, "exec"))
            return -ENOEXEC;
        (void)stk_error_wrap(err, "%s: the %s backend cannot do that", verb, be);
        return -EOPNOTSUPP;
    case STK_DRV_E_GONE:
        (void)stk_error_wrap(err, "%s: gone from the %s backend", verb, be);
        return -ENOENT;
    case STK_DRV_E_TRANSIENT:
        (void)stk_error_wrap(err, "%s: the %s backend did not answer; try again", verb, be);
        return -EAGAIN;
    default:
        return r; /* PHASE (EBUSY) and anything else: the driver's words */
    }
}

/* ---- marks, details, results ------------------------------------------------------ */

static void merge_marks(const struct stk_session *s, json_t *j)
{
    const char *marks = s->drv->ops->marks;
    if (!marks)
        return;
    json_t *m = json_loads(marks, 0, NULL);
    if (json_is_object(m))
        json_object_update(j, m);
    json_decref(m);
}

char *session_details(const struct stk_session *s, void *details)
{
    json_t *j = details;
    if (!j && !s->drv->ops->marks)
        return NULL;
    if (!j)
        j = json_object();
    merge_marks(s, j);
    char *out = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(j);
    return out;
}

int session_set_phase(struct stk_session *s, const char *id, int expect, enum stk_sb_phase to,
                      const char *reason, const char *msg, const char *actor, const char *event,
                      void *details, struct stk_error **err)
{
    _cleanup_free_ char *dj = event ? session_details(s, details) : NULL;
    if (!event)
        json_decref(details);
    return stk_store_sb_set_phase(s->st, id, expect, to, reason, msg, actor ? actor : s->actor,
                                  event, dj, err);
}

int session_audit(struct stk_session *s, const char *id, const char *event, const char *actor,
                  void *details, struct stk_error **err)
{
    _cleanup_free_ char *dj = session_details(s, details);
    return stk_audit_append(s->st, id, event, actor ? actor : s->actor, dj ? dj : "{}", err);
}

char *session_result(const struct stk_session *s, const char *runtime,
                     const struct stk_driver_status *st)
{
    bool ended = st->state == STK_DRV_ENDED;
    json_t *j = json_object();
    json_object_set_new(j, "exitCode",
                        ended && st->exit_code >= 0 ? json_integer(st->exit_code) : json_null());
    json_object_set_new(j, "signal", ended && st->signal ? json_integer(st->signal) : json_null());
    json_object_set_new(j, "killReason",
                        st->kill ? json_string(stk_kill_reason_names[st->kill]) : json_null());
    json_object_set_new(j, "cpuSeconds", json_null());
    json_object_set_new(j, "peakMemoryBytes", json_null());
    json_object_set_new(j, "runtime", json_string(runtime ? runtime : ""));
    json_t *u = st->usage ? json_loads(st->usage, 0, NULL) : NULL;
    if (json_is_object(u))
        json_object_update(j, u);
    json_decref(u);
    merge_marks(s, j);
    char *out = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(j);
    return out;
}

enum stk_sb_phase session_outcome(enum stk_sb_phase now, const struct stk_driver_status *st,
                                  const char **event, const char **reason)
{
    *reason = "";
    if (now == STK_SB_STOPPING) {
        *event = "stopped";
        return STK_SB_STOPPED;
    }
    if (now == STK_SB_DELETING) {
        *event = "deleted";
        return STK_SB_DELETED;
    }
    if (st->kill != STK_KILL_NONE) {
        *event = "killed";
        *reason = stk_kill_reason_names[st->kill];
        return STK_SB_KILLED;
    }
    if (st->state != STK_DRV_ENDED) {
        *event = "failed";
        *reason = "lost";
        return STK_SB_FAILED;
    }
    *event = "exited";
    return st->exit_code == 0 ? STK_SB_SUCCEEDED : STK_SB_FAILED;
}

/* ---- what a driver reports while a workload starts ---------------------------------- */

static int events_output(void *ud, int stream, const void *data, size_t n)
{
    struct session_events *e = ud;
    if (!e->logs) {
        char dir[PATH_MAX];
        e->logs = stk_xcalloc(1, sizeof(*e->logs));
        e->logs->fd = -1;
        session_dir(e->s, e->id, dir, sizeof(dir));
        if (log_writer_open(e->logs, dir, NULL) < 0)
            return 0;
    }
    if (e->logs->fd >= 0)
        (void)log_writer_put(e->logs, stream, data, n);
    return 0;
}

static void events_event(void *ud, const char *type, const char *details_json)
{
    struct session_events *e = ud;
    json_t *d = json_loads(details_json, 0, NULL);
    if (!json_is_object(d)) {
        json_decref(d);
        return;
    }
    json_array_append_new(e->queue, json_pack("{s:s,s:o}", "type", type, "details", d));
}

void session_events_init(struct session_events *e, struct stk_session *s, const char *id)
{
    *e = (struct session_events){.s = s, .id = id, .queue = json_array()};
    e->sink = (struct stk_driver_sink){
        .ud = e, .output = events_output, .event = events_event, .wake_fd = -1};
}

void session_events_flush(struct session_events *e)
{
    char actor[64];
    session_backend_actor(e->s, actor, sizeof(actor));
    size_t i;
    json_t *v;
    json_array_foreach((json_t *)e->queue, i, v)
    {
        json_t *d = json_object_get(v, "details");
        json_incref(d);
        (void)session_audit(e->s, e->id, json_string_value(json_object_get(v, "type")), actor, d,
                            NULL);
    }
    json_decref(e->queue);
    e->queue = NULL;
    if (e->logs) {
        log_writer_close(e->logs);
        free(e->logs);
        e->logs = NULL;
    }
}

int session_up_inline(struct stk_session *s, const char *id, bool create, bool idle,
                      struct stk_error **err)
{
    const struct stk_driver_ops *ops = s->drv->ops;
    struct session_sb sb;
    int r = session_sb_load(s, id, true, &sb, err);
    if (r < 0)
        return r;
    enum stk_sb_phase from = create ? STK_SB_PROVISIONING : STK_SB_STARTING;
    if (create)
        r = session_set_phase(s, id, STK_SB_PENDING, STK_SB_PROVISIONING, NULL, NULL, NULL, NULL,
                              NULL, err);
    struct session_events ev;
    session_events_init(&ev, s, sb.rec.id);
    sb.d.idle = idle;
    sb.d.sink = &ev.sink;
    _cleanup_free_ char *handle = NULL;
    if (r >= 0 &&
        (r = session_drv_error(s, "provision",
                               ops->provision(s->drv->ctx, &sb.d, !create, &handle, err), err)) < 0)
        (void)session_set_phase(s, id, (int)from, STK_SB_FAILED, "provisioning_failed",
                                err && *err ? (*err)->msg : "", NULL, "failed", NULL, NULL);
    if (r >= 0)
        r = stk_store_sb_set_handle(s->st, id, handle, err);
    struct stk_driver_status st = {.state = STK_DRV_RUNNING, .exit_code = -1};
    sb.d.handle = handle;
    if (r >= 0 && ops->observe(s->drv->ctx, &sb.d, &st, NULL) >= 0) {
        _cleanup_free_ char *result = session_result(s, sb.rec.runtime, &st);
        r = stk_store_sb_set_result(s->st, id, -1, result, err);
    }
    stk_driver_status_release(&st);
    bool workload = !sb.rec.pool_member && !idle;
    if (r >= 0)
        r = session_set_phase(s, id, (int)from, STK_SB_READY, "", "", NULL,
                              workload ? "started" : "ready",
                              workload ? session_argv_details(sb.bd.b, NULL, NULL) : NULL, err);
    /* the workload started: then what it did as it started */
    if (r >= 0)
        session_events_flush(&ev);
    else {
        json_decref(ev.queue);
        ev.queue = json_array();
        session_events_flush(&ev);
    }
    session_sb_release(&sb);
    return r;
}

/* ---- observing: unsupervised drivers ------------------------------------------------- */

/* A ready sandbox's workload ended (or its resources went): release what it
 * holds, then record the phase and the result. */
static void conclude_observed(struct stk_session *s, struct session_sb *sb,
                              const struct stk_driver_status *st)
{
    const struct stk_driver_ops *ops = s->drv->ops;
    char actor[64];
    session_backend_actor(s, actor, sizeof(actor));
    (void)ops->teardown(s->drv->ctx, &sb->d, false, NULL);
    const char *event, *reason;
    enum stk_sb_phase to = session_outcome(STK_SB_READY, st, &event, &reason);
    _cleanup_free_ char *result = session_result(s, sb->rec.runtime, st);
    json_t *d = json_loads(result, 0, NULL);
    /* the phase first: a stop that landed meanwhile wins (-ESTALE) */
    if (session_set_phase(s, sb->rec.id, STK_SB_READY, to, reason, st->message, actor, event, d,
                          NULL) < 0)
        return;
    (void)stk_store_sb_set_result(s->st, sb->rec.id,
                                  st->state == STK_DRV_ENDED ? st->exit_code : -1, result, NULL);
}

/* An in-flight phase older than SESSION_STALE_MS: its process died midway. */
static void recover_stale(struct stk_session *s, struct session_sb *sb, int64_t now)
{
    if (now - sb->rec.updated_ms >= SESSION_STALE_MS)
        (void)session_settle(s, sb, NULL);
}

/* Returns true when the record changed. */
static bool advance(struct stk_session *s, const char *id, int64_t now)
{
    struct session_sb sb;
    /* every command reads every live record here: the spec is resolved
     * only when something has to be done with it */
    if (sb_load_record(s, id, &sb, NULL) < 0)
        return false;
    bool changed = false;
    if (sb.rec.phase == STK_SB_READY && !sb.rec.pool_member) {
        struct stk_driver_status st = {.exit_code = -1};
        if (s->drv->ops->observe(s->drv->ctx, &sb.d, &st, NULL) >= 0 &&
            st.state != STK_DRV_RUNNING) {
            /* its teardown gets the boundary when it still resolves */
            struct session_sb full;
            if (session_sb_load(s, id, false, &full, NULL) >= 0) {
                conclude_observed(s, &full, &st);
                session_sb_release(&full);
            }
            changed = true;
        }
        stk_driver_status_release(&st);
    } else if (!stk_sb_phase_terminal(sb.rec.phase) && sb.rec.phase != STK_SB_STOPPED &&
               now - sb.rec.updated_ms >= SESSION_STALE_MS) {
        session_sb_release(&sb);
        if (session_sb_load(s, id, false, &sb, NULL) < 0)
            return false;
        recover_stale(s, &sb, now);
        changed = true;
    }
    session_sb_release(&sb);
    return changed;
}

int session_advance_all(struct stk_session *s, struct stk_error **err)
{
    struct stk_sb_rec *recs = NULL;
    size_t n = 0;
    int r = stk_store_sb_list_brief(s->st, false, &recs, &n, err);
    if (r < 0)
        return r;
    int64_t now = stk_clock_ms(CLOCK_REALTIME);
    for (size_t i = 0; i < n; i++)
        if (!stk_sb_phase_terminal(recs[i].phase) && recs[i].phase != STK_SB_STOPPED)
            (void)advance(s, recs[i].id, now);
    stk_sb_recs_free(recs, n);
    return 0;
}

int session_current(struct stk_session *s, const char *id, struct stk_sb_rec *ret,
                    struct stk_error **err)
{
    int r = session_get(s, id, ret, err);
    if (r < 0 || session_supervised(s) || stk_sb_phase_terminal(ret->phase) ||
        ret->phase == STK_SB_STOPPED)
        return r;
    if (!advance(s, ret->id, stk_clock_ms(CLOCK_REALTIME)))
        return r;
    char rid[64];
    fmt_into(rid, sizeof(rid), "%s", ret->id);
    stk_sb_rec_free(ret);
    return session_get(s, rid, ret, err);
}
