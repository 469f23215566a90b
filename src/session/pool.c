/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Warm pools: sandboxes provisioned ahead of time (network, cgroup, a
 * running stockade-init) with no workload. A claim takes one in a single
 * store transaction (so no member is ever handed to two claims), gives it
 * the claimer's name, labels and owner, and starts the claimer's command
 * in it. A claimed member is an ordinary sandbox from then on and never
 * returns to its pool; the pool is refilled in the background.
 *
 * A claim is only allowed when the claimer's spec gives exactly the
 * sandbox the pool's members are (the same fingerprint: OCI config and
 * egress chain with ids and addresses held fixed): a warm pool must never
 * hand out a boundary other than the one the spec asks for.
 */
#include "init/proto.h"
#include "session/private.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

static bool name_ok(const char *name);
static int claim_start(struct stk_session *s, const struct stk_create_req *req,
                       const struct stk_boundary *b, const char *pool_tenant,
                       struct stk_create_res *ret, struct stk_error **err);

static int pool_lock(struct stk_session *s, const char *name, struct stk_error **err)
{
    char path[PATH_MAX + 80];
    /* the name becomes a path: checked at the one place that makes it one */
    if (!name_ok(name))
        return stk_error_make(err, EINVAL,
                              "pool name '%s': 1 to 39 of a-z, 0-9 and '-', not starting with '-'",
                              name);
    int r = stk_path_make(path, sizeof(path), err, "%s/pools", s->p.state_dir);
    if (r < 0)
        return r;
    if ((r = mkdir_p(path, 0700)) < 0)
        return stk_error_errno(err, -r, "creating %s", path);
    if ((r = stk_path_make(path, sizeof(path), err, "%s/pools/%s.lock", s->p.state_dir, name)) < 0)
        return r;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return stk_error_errno(err, errno, "opening %s", path);
    int holder = 0;
    if ((r = stk_flock_wait(fd, LOCK_EX, STK_POOL_LOCK_WAIT_MS, &holder)) < 0) {
        close(fd);
        if (r != -ETIMEDOUT)
            return stk_error_errno(err, -r, "locking %s", path);
        char who[128];
        stk_pid_describe(holder, who, sizeof(who));
        return stk_error_make(err, EBUSY,
                              "waited %d s for pool %s's lock %s, held by %s all that time",
                              STK_POOL_LOCK_WAIT_MS / 1000, name, path, who);
    }
    return fd;
}

static bool name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 39)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
              (name[i] == '-' && i > 0)))
            return false;
    return true;
}

/* Whether rec is a member of the pool (tenant, name): members carry their
 * pool's tenant; a pool of tenant "" (an older state directory) has its
 * members in any. */
static bool member_of(const struct stk_sb_rec *rec, const char *tenant, const char *name)
{
    return rec->pool_member && !strcmp(rec->pool, name) &&
           (!tenant[0] || !strcmp(rec->tenant, tenant));
}

/* Members of the pool that are or will be ready for a claim. */
static int count_members(struct stk_session *s, const char *tenant, const char *name, size_t *ready,
                         size_t *coming, struct stk_error **err)
{
    struct stk_sb_rec *recs = NULL;
    size_t n = 0;
    int r = stk_store_sb_list_brief(s->st, false, &recs, &n, err);
    if (r < 0)
        return r;
    *ready = *coming = 0;
    for (size_t i = 0; i < n; i++) {
        if (member_of(&recs[i], tenant, name)) {
            if (recs[i].phase == STK_SB_READY)
                (*ready)++;
            else if (recs[i].phase == STK_SB_PENDING || recs[i].phase == STK_SB_PROVISIONING)
                (*coming)++;
        }
        stk_sb_rec_free(&recs[i]);
    }
    free(recs);
    return 0;
}

int stk_pool_ready(struct stk_session *s, const char *tenant, const char *name, size_t *ret,
                   struct stk_error **err)
{
    size_t coming;
    return count_members(s, tenant, name, ret, &coming, err);
}

/* Locks the pool (refills, claims' refills and rm serialise on it) and
 * reads it. Returns the lock's fd. */
static int pool_open(struct stk_session *s, const char *tenant, const char *name,
                     struct stk_pool_rec *ret, struct stk_error **err)
{
    int lock = pool_lock(s, name, err);
    if (lock < 0)
        return lock;
    int r = stk_store_pool_get(s->st, tenant, name, ret, err);
    if (r < 0) {
        close(lock);
        return r;
    }
    return lock;
}

/* One member per turn of the pool's lock, counted again each time: a
 * holder keeps it for one create (never for a whole pool's), so a waiter
 * (another refill, pool rm) waits for creates that are needed anyway, and
 * a claim made meanwhile is seen by the next count. At most the pool's
 * size of creates per refill: a member that ends at once is not counted
 * again and again. */
int stk_pool_refill(struct stk_session *s, const char *tenant, const char *name,
                    struct stk_error **err)
{
    for (size_t made = 0;; made++) {
        struct stk_pool_rec pool = {0};
        _cleanup_close_ int lock = pool_open(s, tenant, name, &pool, err);
        if (lock < 0)
            return lock;
        size_t ready = 0, coming = 0;
        int r = 0;
        if (!pool.mechanism[0]) /* else the backend keeps it full */
            r = count_members(s, pool.tenant, name, &ready, &coming, err);
        if (r < 0 || pool.mechanism[0] || ready + coming >= (size_t)pool.size ||
            made >= (size_t)pool.size) {
            stk_pool_rec_free(&pool);
            return r;
        }
        struct stk_create_req req = {
            .docs = {.spec_file = "pool template",
                     .spec = pool.template_spec,
                     .spec_len = strlen(pool.template_spec),
                     .env_file = "pool environment",
                     .env = pool.env,
                     .env_len = pool.env ? strlen(pool.env) : 0},
            .pool = name,
            .pool_member = true,
            /* members belong to whom the pool was authorized for */
            .tenant = pool.tenant[0] ? pool.tenant : NULL,
            .owner = pool.owner[0] ? pool.owner : NULL,
        };
        struct stk_create_res res;
        r = stk_session_create(s, &req, &res, err);
        stk_pool_rec_free(&pool);
        if (r < 0)
            return r;
    }
}

int stk_pool_create(struct stk_session *s, const char *name, int size,
                    const struct stk_session_docs *tmpl, struct stk_error **err)
{
    struct stk_pool_req req = {.name = name, .size = size, .tmpl = tmpl};
    return stk_pool_create_owned(s, &req, err);
}

int stk_pool_create_owned(struct stk_session *s, const struct stk_pool_req *req,
                          struct stk_error **err)
{
    const char *name = req->name;
    int size = req->size;
    const struct stk_session_docs *tmpl = req->tmpl;
    if (!name_ok(name))
        return stk_error_make(err, EINVAL,
                              "pool name '%s': 1 to 39 of a-z, 0-9 and '-', not starting with '-'",
                              name);
    if (size < 1 || size > STK_POOL_MAX_SIZE)
        return stk_error_make(err, EINVAL, "--size %d: a pool holds 1 to %d members", size,
                              STK_POOL_MAX_SIZE);
    _cleanup_diags_ struct stk_diags diags = {0};
    struct stk_session_boundary sb = {0};
    if (stk_session_resolve(tmpl, &diags, &sb) < 0) {
        _cleanup_free_ char *line = diags.n ? stk_diag_format(&diags.items[0]) : NULL;
        return stk_error_make(err, EINVAL, "%s", line ? line : "invalid template");
    }
    struct stk_pool_rec pool = {.size = size};
    fmt_into(pool.name, sizeof(pool.name), "%s", name);
    /* as a create would record them: the tenant decided on, else the
     * template's namespace; the owner asked for, else the actor */
    struct stk_create_req as_create = {.tenant = req->tenant};
    fmt_into(pool.tenant, sizeof(pool.tenant), "%s", session_tenant(&as_create, sb.b));
    fmt_into(pool.project, sizeof(pool.project), "%s", req->project ? req->project : "");
    fmt_into(pool.owner, sizeof(pool.owner), "%s", req->owner ? req->owner : s->actor);
    int r = session_bind_namespaces(s, sb.b, pool.tenant, err);
    if (r >= 0)
        r = session_fingerprint(s, sb.b, pool.fingerprint, err);
    /* a pool name taken in the store is refused before the backend makes
     * anything */
    struct stk_pool_rec taken = {0};
    if (r >= 0 && stk_store_pool_get(s->st, pool.tenant, name, &taken, NULL) >= 0) {
        stk_pool_rec_free(&taken);
        r = stk_error_make(err, EEXIST, "a pool named '%s' already exists", name);
    }
    /* the backend's own pools when it has them (agents.x-k8s.io on a
     * cluster that serves it), else stockade's members */
    const char *mechanism = NULL;
    const struct stk_driver_ops *ops = s->drv->ops;
    struct stk_driver_pool dp = {.name = name, .b = sb.b, .size = size};
    if (r >= 0 && ops->pool_apply)
        r = ops->pool_apply(s->drv->ctx, &dp, &mechanism, err);
    stk_session_boundary_release(&sb);
    if (r < 0)
        return r;
    fmt_into(pool.mechanism, sizeof(pool.mechanism), "%s", mechanism ? mechanism : "");
    pool.template_spec = stk_xstrndup(tmpl->spec, tmpl->spec_len);
    pool.env = tmpl->env ? stk_xstrndup(tmpl->env, tmpl->env_len) : NULL;
    r = stk_store_pool_insert(s->st, &pool, err);
    if (r < 0 && mechanism) {
        dp.b = NULL;
        (void)ops->pool_delete(s->drv->ctx, &dp, NULL);
    }
    if (r >= 0) {
        json_t *d =
            json_pack("{s:s,s:i,s:s,s:s,s:s}", "pool", name, "size", size, "tenant", pool.tenant,
                      "owner", pool.owner, "mechanism", mechanism ? mechanism : "stockade members");
        _cleanup_free_ char *dj = json_dumps(d, JSON_COMPACT);
        json_decref(d);
        (void)stk_audit_append(s->st, "", "pool_created", s->actor, dj, NULL);
        r = stk_pool_refill(s, pool.tenant, name, err);
    }
    stk_pool_rec_free(&pool);
    return r;
}

int stk_pool_rm(struct stk_session *s, const char *tenant, const char *name, struct stk_error **err)
{
    struct stk_pool_rec pool = {0};
    _cleanup_close_ int lock = pool_open(s, tenant, name, &pool, err);
    if (lock < 0)
        return lock;
    char pool_tenant[sizeof(pool.tenant)];
    memcpy(pool_tenant, pool.tenant, sizeof(pool_tenant));
    bool kept = pool.mechanism[0];
    stk_pool_rec_free(&pool);
    int r;
    const struct stk_driver_ops *ops = s->drv->ops;
    /* a pool the backend keeps: its objects first (a failure leaves the
     * record, so pool rm can be repeated); claimed sandboxes stay */
    struct stk_driver_pool dp = {.name = name};
    if (kept && ops->pool_delete && (r = ops->pool_delete(s->drv->ctx, &dp, err)) < 0)
        return r;
    /* the pool first: nothing can claim or refill it from now on */
    if ((r = stk_store_pool_delete(s->st, pool_tenant, name, err)) < 0)
        return r;
    struct stk_sb_rec *recs = NULL;
    size_t n = 0;
    r = stk_store_sb_list_brief(s->st, false, &recs, &n, err);
    for (size_t i = 0; r >= 0 && i < n; i++)
        if (member_of(&recs[i], pool_tenant, name))
            r = stk_session_rm(s, recs[i].id, true, err);
    for (size_t i = 0; i < n; i++)
        stk_sb_rec_free(&recs[i]);
    free(recs);
    if (r >= 0) {
        json_t *d = json_pack("{s:s,s:s}", "pool", name, "tenant", pool_tenant);
        _cleanup_free_ char *dj = json_dumps(d, JSON_COMPACT);
        json_decref(d);
        (void)stk_audit_append(s->st, "", "pool_deleted", s->actor, dj, NULL);
    }
    return r;
}

void pool_refill_background(struct stk_session *s, const char *tenant, const char *pool)
{
    const char *argv[] = {"stockade", STK_SESSION_REFILL_VERB, pool, tenant, NULL};
    (void)session_spawn_self(s, NULL, 0, argv);
}

int pool_claim(struct stk_session *s, const struct stk_create_req *req,
               const struct stk_boundary *b, struct stk_create_res *ret, char mechanism[64],
               struct stk_error **err)
{
    struct stk_pool_rec pool = {0};
    if (!name_ok(req->pool))
        return stk_error_make(err, EINVAL,
                              "pool name '%s': 1 to 39 of a-z, 0-9 and '-', not starting with '-'",
                              req->pool);
    /* the claim's tenant's pool; the operator's CLI, which decides no
     * tenant, finds it in any (when only one tenant has that name) — never
     * the gateway's workers (names per tenant), whose claim was authorized
     * for the one pool of the claim's tenant */
    int r = stk_store_pool_get(s->st, session_tenant(req, b), req->pool, &pool, err);
    if (r == -ENOENT && !req->tenant && !stk_store_names_per_tenant(s->st)) {
        stk_error_free(*err);
        *err = NULL;
        r = stk_store_pool_get(s->st, NULL, req->pool, &pool, err);
    }
    if (r == -ENOENT) {
        stk_error_free(*err);
        *err = NULL;
        return stk_error_make(err, ESRCH, "no pool %s (stockade pool ls lists them)", req->pool);
    }
    if (r < 0)
        return r;
    char fp[65];
    if ((r = session_fingerprint(s, b, fp, err)) < 0)
        goto out;
    if (strcmp(fp, pool.fingerprint)) {
        r = stk_error_make(err, EPERM,
                           "the spec does not give the sandbox pool %s holds (its security, "
                           "resources, network or rootfs differ from the pool's template); "
                           "create it without --pool, or make a pool from this spec",
                           req->pool);
        goto out;
    }
    if (pool.mechanism[0]) {
        /* the backend hands out one of its members: a create of a record
         * of this pool */
        fmt_into(mechanism, 64, "%s", pool.mechanism);
        r = 1;
        goto out;
    }
    if (b->argc == 0 || b->argc > STK_INITP_MAX_ARGS) {
        r = stk_error_make(err, EINVAL, "spec.command: %zu arguments (1 to %d can be started)",
                           b->argc, STK_INITP_MAX_ARGS);
        goto out;
    }
    struct stk_sb_rec claim = {.exit_code = -1};
    fmt_into(claim.name, sizeof(claim.name), "%s", b->name);
    fmt_into(claim.owner, sizeof(claim.owner), "%s", req->owner ? req->owner : s->actor);
    fmt_into(claim.tenant, sizeof(claim.tenant), "%s", session_tenant(req, b));
    claim.labels = session_labels_json(b);
    claim.spec = stk_xstrndup(req->docs.spec, req->docs.spec_len);
    claim.env = req->docs.env ? stk_xstrndup(req->docs.env, req->docs.env_len) : NULL;
    session_record_namespace(b, &claim);
    r = stk_store_pool_claim(s->st, pool.tenant, req->pool, &claim, s->actor, ret->id, err);
    stk_sb_rec_free(&claim);
    if (r < 0)
        goto out; /* -ENOENT: empty; the caller creates cold */
    ret->warm = true;
    /* the member's monitor: its deadline starts now */
    session_nudge(s, ret->id);

    r = claim_start(s, req, b, pool.tenant, ret, err);
out:
    stk_pool_rec_free(&pool);
    return r;
}

/* The member is the claimer's now: start its command. */
static int claim_start(struct stk_session *s, const struct stk_create_req *req,
                       const struct stk_boundary *b, const char *pool_tenant,
                       struct stk_create_res *ret, struct stk_error **err)
{
    const struct stk_driver_ops *ops = s->drv->ops;
    int r;
    struct session_sb sb;
    if ((r = session_sb_load(s, ret->id, true, &sb, err)) < 0)
        return -EIO; /* not -ENOENT: that would read as "the pool is empty" */
    struct session_events ev;
    session_events_init(&ev, s, sb.rec.id);
    sb.d.sink = &ev.sink;
    _cleanup_free_ char *handle = NULL;
    r = ops->start(s->drv->ctx, &sb.d, &handle, err);
    if (r >= 0 && handle) {
        (void)stk_store_sb_set_handle(s->st, sb.rec.id, handle, NULL);
        sb.d.handle = handle;
    }
    if (r >= 0 && !session_supervised(s)) {
        /* no monitor: the result says what the driver sees now */
        struct stk_driver_status st = {.state = STK_DRV_RUNNING, .exit_code = -1};
        if (ops->observe(s->drv->ctx, &sb.d, &st, NULL) >= 0) {
            _cleanup_free_ char *result = session_result(s, sb.rec.runtime, &st);
            (void)stk_store_sb_set_result(s->st, sb.rec.id, -1, result, NULL);
        }
        stk_driver_status_release(&st);
    }
    if (r >= 0) {
        (void)session_audit(s, ret->id, "started", NULL,
                            session_argv_details(b, "pool", json_string(req->pool)), NULL);
        session_events_flush(&ev);
    } else {
        json_decref(ev.queue);
        ev.queue = json_array();
        session_events_flush(&ev);
        /* claimed, so never back to the pool; its monitor starts the
         * command from the claimed record once it can */
        stk_error_wrap(err, "sandbox %s (claimed from pool %s)", ret->id, req->pool);
        r = -EIO; /* not -ENOENT: that would read as "the pool is empty" */
    }
    session_sb_release(&sb);
    if (session_supervised(s))
        pool_refill_background(s, pool_tenant, req->pool);
    else if (r >= 0)
        /* records and API calls only: as quick as any create of this backend */
        (void)stk_pool_refill(s, pool_tenant, req->pool, NULL);
    return r;
}
