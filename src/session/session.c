/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Long-lived sandboxes: create, exec, stop, start, rm and crash recovery.
 *
 * The order of every operation is "record, then act, then record": a phase
 * change is committed (with its audit record) before the host is touched,
 * and the final phase only after the host is in that state. A stockade
 * process killed between the two leaves a phase that names an operation in
 * flight (provisioning, starting, stopping, deleting) and a sandbox
 * directory nobody holds the lock of; stk_session_reconcile() finishes or
 * rolls back that operation. The lock of <state>/sandboxes/<id>/lock is held
 * by whichever process owns the sandbox's host resources at the moment: its
 * monitor while it runs, or the command finishing a dead monitor's work.
 */
#include "session/private.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- open / close ------------------------------------------------------------------ */

int stk_session_open(const struct stk_local_paths *p, const char *actor, struct stk_session **ret,
                     struct stk_error **err)
{
    return stk_session_open_backend(p, STK_BACKEND_LOCAL, actor, ret, err);
}

enum stk_backend stk_session_backend(const struct stk_session *s)
{
    return s->backend;
}

/* A state directory holds one backend's sandboxes: a sim record read by a
 * local command would be "adopted" by a monitor that finds nothing, and a
 * local one read by sim would be modelled instead of supervised. had_store:
 * the store existed before this open (a directory from before the backend
 * file is local's). */
static int backend_claim(const char *state_dir, enum stk_backend want, bool had_store,
                         struct stk_error **err)
{
    char path[PATH_MAX + 16], have[32] = "";
    int w = stk_path_make(path, sizeof(path), err, "%s/" STK_SESSION_BACKEND_FILE, state_dir);
    if (w < 0)
        return w;
    FILE *f = fopen(path, "re");
    if (f) {
        if (!fgets(have, sizeof(have), f))
            have[0] = '\0';
        fclose(f);
        have[strcspn(have, "\n")] = '\0';
    } else if (had_store) {
        fmt_into(have, sizeof(have), "%s", stk_backend_names[STK_BACKEND_LOCAL]);
    } else {
        /* written whole, then linked: a reader never sees a half-written
         * file, and of two first users exactly one wins */
        char tmp[PATH_MAX + 48];
        if ((w = stk_path_make(tmp, sizeof(tmp), err, "%s.%d", path, (int)getpid())) < 0)
            return w;
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
            return stk_error_errno(err, errno, "writing %s", tmp);
        char line[32];
        int n = snprintf(line, sizeof(line), "%s\n", stk_backend_names[want]);
        bool ok = write(fd, line, (size_t)n) == n;
        close(fd);
        int e = ok && link(tmp, path) < 0 ? errno : 0;
        unlink(tmp);
        if (!ok || (e && e != EEXIST))
            return stk_error_errno(err, ok ? e : EIO, "writing %s", path);
        if (!e)
            return 0;
        /* another process claimed it first: judge by what it wrote */
        return backend_claim(state_dir, want, true, err);
    }
    if (strcmp(have, stk_backend_names[want]) != 0)
        return stk_error_make(err, EEXIST,
                              "state directory %s holds %s sandboxes (%s), not %s ones: use "
                              "another state directory (--state-dir or STOCKADE_STATE_DIR) for "
                              "the %s backend, or --backend %s for this one",
                              state_dir, have[0] ? have : "unknown", path, stk_backend_names[want],
                              stk_backend_names[want], have);
    return 0;
}

int stk_session_backend_check(const char *state_dir, enum stk_backend want, struct stk_error **err)
{
    return backend_claim(state_dir, want, true, err);
}

int stk_session_open_backend(const struct stk_local_paths *p, enum stk_backend backend,
                             const char *actor, struct stk_session **ret, struct stk_error **err)
{
    return stk_session_open_opts(p, backend, actor, NULL, ret, err);
}

int stk_session_open_opts(const struct stk_local_paths *p, enum stk_backend backend,
                          const char *actor, const struct stk_session_opts *opts,
                          struct stk_session **ret, struct stk_error **err)
{
    if (backend >= _STK_BACKEND_N)
        return stk_error_make(err, EINVAL, "unknown backend %d", (int)backend);
    _cleanup_error_ struct stk_error *why = NULL;
    if (!stk_driver_ops_load(backend, &why))
        return stk_error_make(err, EOPNOTSUPP, "the %s backend is not available: %s",
                              stk_backend_names[backend], why ? why->msg : "unknown");
    struct stk_session *s = stk_xcalloc(1, sizeof(*s));
    s->backend = backend;
    s->p = *p;
    if (stk_path_make(s->state_dir, sizeof(s->state_dir), err, "%s", p->state_dir) < 0 ||
        stk_path_make(s->run_dir, sizeof(s->run_dir), err, "%s", p->run_dir) < 0) {
        free(s);
        return -ENAMETOOLONG;
    }
    s->p.state_dir = s->state_dir;
    s->p.run_dir = s->run_dir;
    if (opts && opts->kubeconfig)
        fmt_into(s->kubeconfig, sizeof(s->kubeconfig), "%s", opts->kubeconfig);
    if (opts && opts->context)
        fmt_into(s->context, sizeof(s->context), "%s", opts->context);
    if (actor) {
        fmt_into(s->actor, sizeof(s->actor), "%s", actor);
    } else {
        /* the kernel's word only: a name would cost an NSS lookup on every
         * command, and $USER is the caller's to set */
        fmt_into(s->actor, sizeof(s->actor), "uid=%u", (unsigned)getuid());
    }
    char db[PATH_MAX + 16];
    if (stk_path_make(db, sizeof(db), err, "%s/%s", p->state_dir, STK_STORE_DB_FILE) < 0) {
        free(s);
        return -ENAMETOOLONG;
    }
    bool had_store = access(db, F_OK) == 0;
    /* the backend first: its mismatch is the message that helps */
    int r = had_store ? backend_claim(p->state_dir, backend, true, err) : 0;
    struct stk_driver_conf conf = {
        .state_dir = s->state_dir,
        .run_dir = s->run_dir,
        .kubeconfig = s->kubeconfig[0] ? s->kubeconfig : NULL,
        .context = s->context[0] ? s->context : NULL,
    };
    if (r >= 0)
        r = stk_driver_open(backend, &conf, &s->drv, err);
    if (r < 0) {
        free(s);
        return r;
    }
    if ((r = stk_store_open(p->state_dir, &s->st, err)) < 0) {
        stk_session_close(s);
        return r;
    }
    r = backend_claim(p->state_dir, backend, had_store, err);
    if (r >= 0)
        r = stk_session_reconcile(s, err);
    if (r < 0) {
        stk_session_close(s);
        return r;
    }
    *ret = s;
    return 0;
}

void stk_session_close(struct stk_session *s)
{
    if (!s)
        return;
    stk_store_close(s->st);
    stk_driver_close(s->drv);
    free(s);
}

int stk_session_facts(struct stk_session *s, const struct stk_boundary *b,
                      struct stk_driver_facts *ret, struct stk_error **err)
{
    return s->drv->ops->facts(s->drv->ctx, b, ret, err);
}

int stk_session_record_facts(struct stk_session *s, const struct stk_sb_rec *rec,
                             const struct stk_boundary *b, struct stk_driver_facts *ret,
                             struct stk_error **err)
{
    /* an OCI runtime it was given: its caveats are known without asking
     * the driver (which would detect runtimes, smoke runs included, in the
     * caller: the gateway's event loop) */
    int rt = stk_enum_lookup(stk_oci_runtime_names, _STK_OCI_N, rec->runtime);
    if (rt < 0)
        return stk_session_facts(s, b, ret, err);
    *ret = (struct stk_driver_facts){.facts = {.backend = s->backend}};
    ret->runtime = stk_oci_runtime_names[rt];
    ret->facts.runtime = ret->runtime;
    ret->facts.runtime_is_gvisor = rt == STK_OCI_RUNSC;
    ret->facts.caveats = stk_runtime_caveats((enum stk_oci_runtime)rt);
    return 0;
}

int stk_session_gc(struct stk_session *s, size_t *ret_removed, struct stk_error **err)
{
    const struct stk_driver_ops *ops = s->drv->ops;
    if (!ops->gc)
        return stk_error_make(err, EOPNOTSUPP, "the %s backend leaves nothing behind to collect",
                              stk_backend_names[s->backend]);
    struct stk_sb_rec *recs = NULL;
    size_t n = 0;
    int r = stk_store_sb_list_brief(s->st, false, &recs, &n, err);
    if (r < 0)
        return r;
    struct stk_pool_rec *pools = NULL;
    size_t n_pools = 0;
    if ((r = stk_store_pool_list(s->st, &pools, &n_pools, err)) < 0) {
        stk_sb_recs_free(recs, n);
        return r;
    }
    const char **keep = stk_xcalloc(n + n_pools + 1, sizeof(*keep));
    char **pool_keys = stk_xcalloc(n_pools + 1, sizeof(*pool_keys));
    size_t n_keep = 0;
    for (size_t i = 0; i < n; i++)
        keep[n_keep++] = recs[i].id;
    for (size_t i = 0; i < n_pools; i++)
        if (pools[i].mechanism[0])
            keep[n_keep++] = pool_keys[i] = stk_xasprintf("pool.%s", pools[i].name);
    r = ops->gc(s->drv->ctx, keep, n_keep, ret_removed, err);
    for (size_t i = 0; i < n_pools; i++)
        free(pool_keys[i]);
    free(pool_keys);
    free(keep);
    stk_pool_recs_free(pools, n_pools);
    stk_sb_recs_free(recs, n);
    return r;
}

struct stk_store *stk_session_store(struct stk_session *s)
{
    return s->st;
}

/* ---- documents and boundary ------------------------------------------------------- */

int stk_session_resolve(const struct stk_session_docs *d, struct stk_diags *diags,
                        struct stk_session_boundary *ret)
{
    struct stk_session_boundary sb = {0};
    size_t count = 0;
    int r = -EINVAL;
    if (d->env) {
        if (stk_docset_parse(d->env_file ? d->env_file : "environment", d->env, d->env_len, diags,
                             &sb.env_ds) < 0)
            goto out;
        const struct stk_doc *e = stk_docset_find(sb.env_ds, STK_KIND_ENVCONFIG, &count);
        if (count != 1) {
            stk_diags_add(diags, STK_SEV_ERROR, sb.env_ds->file, (struct stk_pos){0, 0}, "",
                          "expected exactly one EnvironmentConfig document, found %zu", count);
            goto out;
        }
        sb.env = e->env;
    }
    if (stk_docset_parse(d->spec_file ? d->spec_file : "spec", d->spec, d->spec_len, diags,
                         &sb.ds) < 0)
        goto out;
    const struct stk_doc *doc = stk_docset_find(sb.ds, STK_KIND_SANDBOX, &count);
    if (count != 1) {
        stk_diags_add(diags, STK_SEV_ERROR, sb.ds->file, (struct stk_pos){0, 0}, "",
                      "expected exactly one Sandbox document, found %zu", count);
        goto out;
    }
    if (stk_resolve(doc->sandbox, sb.ds->file, sb.env, sb.env ? sb.env_ds->file : NULL, diags,
                    &sb.b) < 0)
        goto out;
    *ret = sb;
    return 0;
out:
    stk_session_boundary_release(&sb);
    return r;
}

void stk_session_boundary_release(struct stk_session_boundary *sb)
{
    stk_boundary_free(sb->b);
    stk_docset_free(sb->ds);
    stk_docset_free(sb->env_ds);
    *sb = (struct stk_session_boundary){0};
}

/* The boundary of a stored sandbox. */
int session_rec_boundary(const struct stk_sb_rec *rec, struct stk_session_boundary *ret,
                         struct stk_error **err)
{
    _cleanup_diags_ struct stk_diags diags = {0};
    struct stk_session_docs d = {
        .spec_file = "stored spec",
        .spec = rec->spec ? rec->spec : "",
        .spec_len = rec->spec ? strlen(rec->spec) : 0,
        .env_file = "stored environment",
        .env = rec->env,
        .env_len = rec->env ? strlen(rec->env) : 0,
    };
    if (stk_session_resolve(&d, &diags, ret) < 0)
        return stk_error_make(err, EINVAL, "sandbox %s: its stored spec no longer resolves%s%s",
                              rec->id, diags.n ? ": " : "", diags.n ? diags.items[0].msg : "");
    return 0;
}

/* ---- records -------------------------------------------------------------------- */

int session_get(struct stk_session *s, const char *id, struct stk_sb_rec *ret,
                struct stk_error **err)
{
    int r = stk_store_sb_get(s->st, id, ret, err);
    if (r == -ENOENT) {
        stk_error_free(*err);
        *err = NULL;
        return stk_error_make(err, ENOENT, "no sandbox %s (stockade ls lists them)", id);
    }
    return r;
}

static const char *phase_name(enum stk_sb_phase p)
{
    return p < _STK_SB_N ? stk_sb_phase_names[p] : "?";
}

/* ---- the sandbox directory and its lock --------------------------------------------- */

int session_dir(const struct stk_session *s, const char *id, char *buf, size_t n)
{
    return stk_path_fmt(buf, n, "%s/sandboxes/%s", s->p.state_dir, id);
}

int session_lock_open(const struct stk_session *s, const char *id, bool create,
                      struct stk_error **err)
{
    char dir[600], path[700];
    int r = session_dir(s, id, dir, sizeof(dir));
    if (r < 0 || (r = stk_path_make(path, sizeof(path), err, "%s/lock", dir)) < 0)
        return err && *err ? r : stk_error_make(err, -r, "the directory of sandbox %s", id);
    if (create) {
        r = mkdir_p(dir, 0700);
        if (r < 0)
            return stk_error_errno(err, -r, "creating %s", dir);
    }
    int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT : 0), 0600);
    if (fd < 0)
        return stk_error_errno(err, errno, "opening %s", path);
    return fd;
}

/* Takes the sandbox's lock, waiting up to wait_ms. Returns the fd, -EAGAIN
 * when someone else still holds it, -ENOENT when the directory is gone. */
int session_lock(const struct stk_session *s, const char *id, int wait_ms, struct stk_error **err)
{
    for (int waited = 0;;) {
        int fd = session_lock_open(s, id, false, NULL);
        if (fd < 0)
            return err ? stk_error_make(err, ENOENT, "sandbox %s has no directory on this host", id)
                       : -ENOENT;
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
            /* the lock file may have been removed (a delete finished) while
             * we waited: a lock on an unlinked file guards nothing */
            char dir[PATH_MAX], path[PATH_MAX + 8];
            struct stat a, b;
            if (session_dir(s, id, dir, sizeof(dir)) >= 0 &&
                stk_path_fmt(path, sizeof(path), "%s/lock", dir) >= 0 && fstat(fd, &a) == 0 &&
                stat(path, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev)
                return fd;
            close(fd);
            continue;
        }
        int e = errno;
        close(fd);
        if (e != EWOULDBLOCK || waited >= wait_ms)
            return err ? stk_error_make(err, EAGAIN,
                                        "sandbox %s is busy (another stockade process holds it)",
                                        id)
                       : -EAGAIN;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
        waited += 10;
    }
}

/* ---- fingerprints (warm pools) ------------------------------------------------------ */

/* What a local sandbox enforces, with everything that differs between two
 * sandboxes of the same boundary (ids, paths, addresses) held fixed: the OCI
 * config and the nftables chain. Two specs with the same fingerprint get the
 * same sandbox, whatever their names, labels and commands. */
int session_fingerprint(const struct stk_session *s, const struct stk_boundary *b, char ret[65],
                        struct stk_error **err)
{
    if (s->drv->ops->fingerprint)
        return s->drv->ops->fingerprint(s->drv->ctx, b, ret, err);
    return session_local_fingerprint(b, ret, err);
}

int session_local_fingerprint(const struct stk_boundary *b, char ret[65], struct stk_error **err)
{
    static const char *const no_dirs[] = {NULL};
    struct stk_oci_options o = {
        .root_path = "/rootfs",
        .workspace = "/workspace",
        .etc_dir = "/etc",
        .host_dirs = no_dirs,
        .cgroups_path = "/stockade/x",
        .netns_path = "/netns/x",
        .init_dir = "/libexec",
        .hostname = "x",
    };
    _cleanup_free_ char *oci = NULL, *nft = NULL;
    /* the name is the claimer's (STOCKADE_SANDBOX is set when the workload
     * starts); everything else must match */
    struct stk_boundary fixed = *b;
    fixed.name = "x";
    int r = stk_oci_render(&fixed, &o, &oci, err);
    if (r < 0)
        return r;
    struct stk_nft_facts f = {
        .id = "x",
        .namespace = b->namespace,
        .bridge = "stk0",
        .veth = "stk-x",
        .log_group = 1,
    };
    (void)stk_cidr_parse("10.0.0.2/32", &f.addr4, NULL);
    (void)stk_cidr_parse("10.0.0.1/32", &f.bridge4, NULL);
    (void)stk_cidr_parse("10.0.0.0/16", &f.pool4, NULL);
    if ((r = stk_nft_render(&fixed, &f, &nft, err)) < 0)
        return r;
    /* the command is the workload's, not the sandbox's */
    /* and what neither holds: the limits the monitor enforces and the
     * runtime the spec asks for (a claim must not get a longer deadline or
     * another runtime than the spec says) */
    char extra[160];
    snprintf(extra, sizeof(extra), "wallClock=%lld cpuTime=%lld runtime=%s",
             (long long)b->limits.wall_clock_ms, (long long)b->limits.cpu_time_ms,
             stk_runtime_names[b->runtime]);
    unsigned char md[32];
    unsigned int n = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) ||
        !EVP_DigestUpdate(ctx, oci, strlen(oci)) || !EVP_DigestUpdate(ctx, "\0", 1) ||
        !EVP_DigestUpdate(ctx, nft, strlen(nft)) || !EVP_DigestUpdate(ctx, "\0", 1) ||
        !EVP_DigestUpdate(ctx, extra, strlen(extra)) || !EVP_DigestFinal_ex(ctx, md, &n)) {
        EVP_MD_CTX_free(ctx);
        return stk_error_make(err, EIO, "sha256 failed");
    }
    EVP_MD_CTX_free(ctx);
    for (unsigned i = 0; i < 32; i++)
        snprintf(ret + 2 * i, 3, "%02x", md[i]);
    return 0;
}

/* ---- create ----------------------------------------------------------------------- */

void session_record_new(const struct stk_session *s, const struct stk_create_req *req,
                        const struct stk_boundary *b, const char *runtime, struct stk_sb_rec *rec)
{
    *rec = (struct stk_sb_rec){.phase = STK_SB_PENDING, .exit_code = -1};
    char rnd[9];
    random_hex(rnd, 8);
    const char *base = req->pool_member ? req->pool : b->name;
    fmt_into(rec->id, sizeof(rec->id), "%.39s-%s", base ? base : "sandbox", rnd);
    fmt_into(rec->name, sizeof(rec->name), "%s", req->pool_member ? rec->id : b->name);
    fmt_into(rec->owner, sizeof(rec->owner), "%s", req->owner ? req->owner : s->actor);
    /* the gateway records the tenant its authorization decided on */
    fmt_into(rec->tenant, sizeof(rec->tenant), "%s", session_tenant(req, b));
    fmt_into(rec->runtime, sizeof(rec->runtime), "%s", runtime);
    if (req->pool)
        fmt_into(rec->pool, sizeof(rec->pool), "%s", req->pool);
    rec->pool_member = req->pool_member;
    rec->spec = stk_xstrndup(req->docs.spec, req->docs.spec_len);
    rec->env = req->docs.env ? stk_xstrndup(req->docs.env, req->docs.env_len) : NULL;
    rec->labels = session_labels_json(b);
    session_record_namespace(b, rec);
}

void session_record_namespace(const struct stk_boundary *b, struct stk_sb_rec *rec)
{
    const char *ns = b->namespace ? b->namespace : "";
    /* one that does not fit stays unrecorded: a listing resolves it */
    rec->namespace_known = strlen(ns) < sizeof(rec->namespace);
    fmt_into(rec->namespace, sizeof(rec->namespace), "%s", rec->namespace_known ? ns : "");
}

char *session_labels_json(const struct stk_boundary *b)
{
    json_t *l = json_object();
    for (size_t i = 0; b->labels && i < b->labels->n; i++)
        json_object_set_new(l, b->labels->items[i].key, json_string(b->labels->items[i].value));
    char *s = json_dumps(l, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(l);
    return s;
}

char *session_argv_json(const char *const *argv, size_t argc, const char *key, void *value)
{
    json_t *a = json_array();
    for (size_t i = 0; i < argc; i++)
        json_array_append_new(a, json_string(argv[i]));
    json_t *d = json_pack("{s:o}", "argv", a);
    if (key)
        json_object_set_new(d, key, value);
    char *s = json_dumps(d, JSON_COMPACT);
    json_decref(d);
    return s;
}

void *session_argv_details(const struct stk_boundary *b, const char *key, void *value)
{
    json_t *a = json_array();
    for (size_t i = 0; b && i < b->argc; i++)
        json_array_append_new(a, json_string(b->argv[i]));
    json_t *d = json_pack("{s:o}", "argv", a);
    if (key)
        json_object_set_new(d, key, value);
    return d;
}

/* The create record's details; the image's digest when it runs one (what
 * ran is then fixed in the trail, whatever the tag says later). */
static json_t *created_details(const struct stk_sb_rec *rec, const struct stk_driver_facts *f,
                               const char *claimed_through)
{
    json_t *d = json_pack("{s:s,s:s,s:b}", "name", rec->name, "runtime", rec->runtime, "poolMember",
                          rec->pool_member);
    if (claimed_through)
        json_object_set_new(
            d, "claimed", json_pack("{s:s,s:s}", "pool", rec->pool, "mechanism", claimed_through));
    if (f->facts.image_digest)
        json_object_set_new(d, "imageDigest", json_string(f->facts.image_digest));
    return d;
}

/* claimed_through: a claim of a pool the backend keeps (its mechanism) */
static int cold_create(struct stk_session *s, const struct stk_create_req *req,
                       const struct stk_boundary *b, const char *claimed_through,
                       struct stk_create_res *ret, struct stk_error **err)
{
    struct stk_driver_facts facts = {0};
    int r = stk_session_facts(s, b, &facts, err);
    if (r < 0)
        return r;
    /* explain names what the backend would do; where this sandbox gets
     * less, say so, never silently */
    size_t len = strlen(ret->note);
    if (facts.note[0])
        fmt_into(ret->note + len, sizeof(ret->note) - len, "%s%s", len ? "; " : "", facts.note);
    if (!req->pool_member && !req->idle && b->argc == 0 && !b->image)
        return stk_error_make(err, EINVAL, "%s has no spec.command: nothing to run",
                              req->docs.spec_file ? req->docs.spec_file : "the spec");
    /* an image the driver cannot find fails here, before any record */
    if (b->image && s->backend == STK_BACKEND_LOCAL && !facts.facts.image_digest)
        return stk_error_make(err, ENOENT,
                              "image %s is not in the local store (stockade image pull %s)",
                              b->image, b->image);

    struct stk_sb_rec rec;
    session_record_new(s, req, b, facts.runtime ? facts.runtime : "", &rec);

    /* locked before the record exists: recovery never mistakes a sandbox
     * being created for one whose creator died (a monitor takes it over) */
    int lock = -1;
    if (session_supervised(s)) {
        lock = session_lock_open(s, rec.id, true, err);
        if (lock < 0 || flock(lock, LOCK_EX | LOCK_NB) < 0) {
            stk_sb_rec_free(&rec);
            if (lock >= 0)
                close(lock);
            return lock < 0 ? lock : stk_error_errno(err, errno, "locking sandbox %s", rec.id);
        }
    }
    r = stk_store_sb_insert(s->st, &rec, err);
    if (r < 0 && r != -EEXIST && lock >= 0) {
        /* no record: nothing will ever look at the directory just made
         * for its lock (a store busy beyond its bound left them behind);
         * -EEXIST: the id is another record's, and so is the directory */
        char dir[600], path[700];
        if (session_dir(s, rec.id, dir, sizeof(dir)) >= 0 &&
            stk_path_fmt(path, sizeof(path), "%s/lock", dir) >= 0 && unlink(path) == 0)
            (void)rmdir(dir);
    }
    if (r >= 0)
        r = session_audit(s, rec.id, "created", NULL,
                          created_details(&rec, &facts, claimed_through), err);
    if (r >= 0)
        fmt_into(ret->id, sizeof(ret->id), "%s", rec.id);
    stk_sb_rec_free(&rec);
    if (r < 0) {
        if (lock >= 0)
            close(lock);
        return r;
    }
    if (!session_supervised(s))
        return session_up_inline(s, ret->id, true, req->idle, err);
    return monitor_spawn(s, ret->id,
                         req->idle            ? MONITOR_CREATE_IDLE
                         : req->accepted_only ? MONITOR_CREATE_ACCEPTED
                                              : MONITOR_CREATE,
                         lock, err);
}

const char *session_tenant(const struct stk_create_req *req, const struct stk_boundary *b)
{
    return req->tenant ? req->tenant : b->namespace ? b->namespace : "";
}

int session_bind_namespaces(struct stk_session *s, const struct stk_boundary *b, const char *tenant,
                            struct stk_error **err)
{
    /* every namespace the sandbox occupies, as authorization counts them */
    const char *nss[] = {b->namespace,
                         b->kube && b->kube->namespace.meta.set ? b->kube->namespace.v : NULL};
    for (size_t i = 0; i < STK_ARRAY_SIZE(nss); i++) {
        if (!nss[i] || !*nss[i] || !*tenant)
            continue;
        int r = stk_store_ns_bind(s->st, nss[i], tenant, err);
        if (r < 0)
            return r;
    }
    return 0;
}

int stk_session_create(struct stk_session *s, const struct stk_create_req *req,
                       struct stk_create_res *ret, struct stk_error **err)
{
    _cleanup_diags_ struct stk_diags diags = {0};
    struct stk_session_boundary sb = {0};
    *ret = (struct stk_create_res){0};
    if (stk_session_resolve(&req->docs, &diags, &sb) < 0) {
        struct stk_buf msg = {0};
        for (size_t i = 0; i < diags.n; i++) {
            _cleanup_free_ char *line = stk_diag_format(&diags.items[i]);
            stk_buf_printf(&msg, "%s%s", i ? "\n" : "", line);
        }
        int r = stk_error_make(err, EINVAL, "%s", msg.data ? msg.data : "invalid spec");
        stk_buf_free(&msg);
        return r;
    }
    /* a namespace is its first tenant's; no other tenant creates in it */
    int r = session_bind_namespaces(s, sb.b, session_tenant(req, sb.b), err);
    if (r < 0)
        goto out;
    if (req->pool && !req->pool_member) {
        char mechanism[64] = "";
        r = pool_claim(s, req, sb.b, ret, mechanism, err);
        if (r == 1) {
            /* a pool the backend keeps: its claim is this create */
            ret->warm = true;
            fmt_into(ret->note, sizeof(ret->note), "claimed from pool %s through the %s", req->pool,
                     mechanism);
            r = cold_create(s, req, sb.b, mechanism, ret, err);
            goto out;
        }
        if (r != -ENOENT)
            goto out;
        /* empty: a cold create, and the caller is told */
        stk_error_free(*err);
        *err = NULL;
        fmt_into(ret->note, sizeof(ret->note), "pool %s had no ready member: cold create",
                 req->pool);
        struct stk_create_req cold = *req;
        cold.pool = NULL;
        r = cold_create(s, &cold, sb.b, NULL, ret, err);
        goto out;
    }
    r = cold_create(s, req, sb.b, NULL, ret, err);
out:
    if (r < 0 && ret->id[0] && !req->pool_member) {
        /* nothing half-applied: a sandbox that never became ready is
         * removed (phase deleted; its record and audit trail say what
         * happened), so no user has to clean it up */
        struct stk_error *rm_err = NULL;
        /* its monitor may still be recording the failure (the audit trail
         * says why it failed): wait for that, bounded, then remove it; a
         * monitor that died is recovered first, as the next command would */
        for (int i = 0; i < 50; i++) {
            if (i == 10)
                (void)stk_session_reconcile(s, NULL);
            struct stk_sb_rec rec = {0};
            if (session_get(s, ret->id, &rec, NULL) < 0)
                break;
            bool settling = rec.phase == STK_SB_PENDING || rec.phase == STK_SB_PROVISIONING ||
                            rec.phase == STK_SB_STARTING;
            stk_sb_rec_free(&rec);
            if (!settling)
                break;
            (void)nanosleep(&(struct timespec){.tv_nsec = 100 * 1000 * 1000}, NULL);
        }
        int rr = -1;
        for (int i = 0; i < 50 && rr < 0; i++) {
            if (i)
                (void)nanosleep(&(struct timespec){.tv_nsec = 100 * 1000 * 1000}, NULL);
            stk_error_free(rm_err);
            rm_err = NULL;
            rr = stk_session_rm(s, ret->id, true, &rm_err);
        }
        if (rr < 0 && err && *err) {
            struct stk_error *both = NULL;
            stk_error_make(&both, (*err)->code, "%s (and it stays: %s)", (*err)->msg,
                           rm_err ? rm_err->msg : "removing it failed");
            stk_error_free(*err);
            *err = both;
        }
        stk_error_free(rm_err);
    }
    stk_session_boundary_release(&sb);
    return r;
}

/* ---- exec --------------------------------------------------------------------------- */

int session_load_ready(struct stk_session *s, const char *id, const char *verb,
                       struct session_sb *ret, struct stk_error **err)
{
    struct stk_sb_rec rec = {0};
    int r = session_current(s, id, &rec, err);
    if (r < 0)
        return r;
    if (rec.phase != STK_SB_READY || rec.pool_member) {
        r = rec.pool_member
                ? stk_error_make(err, EBUSY, "sandbox %s is an unclaimed member of pool %s", rec.id,
                                 rec.pool)
                : stk_error_make(err, EBUSY, "sandbox %s is %s; %s needs a ready sandbox", rec.id,
                                 phase_name(rec.phase), verb);
        stk_sb_rec_free(&rec);
        return r;
    }
    r = session_sb_load(s, rec.id, false, ret, err);
    stk_sb_rec_free(&rec);
    return r;
}

int stk_session_exec(struct stk_session *s, const char *id, const struct stk_init_proc *proc,
                     int in_fd, int out_fd, int err_fd, int *ret_code, struct stk_error **err)
{
    if (proc->n_env > STK_EXEC_MAX_ENV)
        return stk_error_make(err, E2BIG, "%zu environment variables (at most %d)", proc->n_env,
                              STK_EXEC_MAX_ENV);
    if (proc->replica && !s->drv->ops->replicas)
        return stk_error_make(err, STK_DRV_E_NOTSUP,
                              "exec --replica: the %s backend runs no sandbox in a workload's "
                              "replicas",
                              stk_backend_names[s->drv->ops->backend]);
    struct session_sb sb;
    int r = session_load_ready(s, id, "exec", &sb, err);
    if (r < 0)
        return r;
    json_t *argv = json_array();
    for (size_t i = 0; i < proc->argc; i++)
        json_array_append_new(argv, json_string(proc->argv[i]));
    json_t *details = json_pack("{s:o,s:b}", "argv", argv, "tty", proc->tty);
    if (proc->replica)
        json_object_set_new(details, "replica", json_string(proc->replica));
    r = session_audit(s, sb.rec.id, "exec", NULL, details, err);
    if (r >= 0) {
        r = s->drv->ops->exec(s->drv->ctx, &sb.d, proc, in_fd, out_fd, err_fd, ret_code, err);
        r = session_drv_error(s, "exec", r, err);
    }
    session_sb_release(&sb);
    return r;
}

/* ---- ports ------------------------------------------------------------------------- */

static int session_port(struct stk_session *s, const char *id, uint16_t port, const char *via,
                        int *ret_fd, struct stk_error **err);

int stk_session_connect(struct stk_session *s, const char *id, uint16_t port, const char *via,
                        int *ret_fd, struct stk_error **err)
{
    return session_port(s, id, port, via, ret_fd, err);
}

int stk_session_port_check(struct stk_session *s, const char *id, uint16_t port,
                           struct stk_error **err)
{
    return session_port(s, id, port, NULL, NULL, err);
}

/* ret_fd NULL: only whether a connection would be attempted. */
static int session_port(struct stk_session *s, const char *id, uint16_t port, const char *via,
                        int *ret_fd, struct stk_error **err)
{
    struct stk_sb_rec rec = {0};
    int r = session_current(s, id, &rec, err);
    if (r < 0)
        return r;
    if (rec.phase != STK_SB_READY || rec.pool_member) {
        r = stk_error_make(err, EBUSY, "sandbox %s is %s; a port needs a ready sandbox", rec.id,
                           rec.pool_member ? "an unclaimed pool member" : phase_name(rec.phase));
        stk_sb_rec_free(&rec);
        return r;
    }
    stk_sb_rec_free(&rec);
    struct session_sb sb;
    if ((r = session_sb_load(s, id, true, &sb, err)) < 0)
        return r;
    if (!s->drv->ops->connect) {
        r = stk_error_make(err, STK_DRV_E_NOTSUP,
                           "sandbox %s runs on the %s backend, which has no way to its ports "
                           "from here (no network namespace of its own on this host)",
                           sb.rec.id, stk_backend_names[s->drv->ops->backend]);
    } else if (!stk_ingress_port(sb.d.b, port)) {
        struct stk_buf t = {0};
        for (size_t i = 0; i < sb.d.b->n_ports; i++)
            stk_buf_printf(&t, "%s%u", i ? ", " : "", sb.d.b->ports[i].port);
        r = stk_error_make(err, EPERM,
                           "port %u of sandbox %s is not declared in spec.ports (%s%s): its "
                           "ingress admits nothing else",
                           port, sb.rec.id, t.len ? "declared: " : "none declared",
                           stk_buf_str(&t));
        stk_buf_free(&t);
    } else if (ret_fd) {
        r = session_audit(s, sb.rec.id, "port_connect", NULL,
                          json_pack("{s:i,s:s}", "port", port, "via", via ? via : "cli"), err);
        if (r >= 0)
            r = session_drv_error(s, "connect",
                                  s->drv->ops->connect(s->drv->ctx, &sb.d, port, ret_fd, err), err);
    }
    session_sb_release(&sb);
    return r;
}

int stk_session_replicas(struct stk_session *s, const char *id, char **ret, struct stk_error **err)
{
    *ret = NULL;
    if (!s->drv->ops->replicas)
        return 0;
    struct session_sb sb;
    int r = session_sb_load(s, id, false, &sb, err);
    if (r < 0)
        return r;
    r = s->drv->ops->replicas(s->drv->ctx, &sb.d, ret, err);
    r = session_drv_error(s, "replicas", r, err);
    session_sb_release(&sb);
    return r;
}

/* ---- stop / start / rm ------------------------------------------------------------ */

/* The phase (stopping or deleting) is recorded: ask the workload to end and
 * finish the operation. A supervised sandbox's monitor sees the end, tears
 * down and records the phase; the lock it releases says it is done (or
 * that it is gone: then the operation is finished here). Without a
 * monitor, it is all done here. */
static int end_and_finish(struct stk_session *s, const char *id, enum stk_sb_phase now,
                          bool running, struct stk_error **err)
{
    const struct stk_driver_ops *ops = s->drv->ops;
    /* the monitor counts the grace period from when it sees the phase */
    if (session_supervised(s))
        session_nudge(s, id);
    struct session_sb sb;
    int r = session_sb_load(s, id, false, &sb, err);
    if (r < 0)
        return r;
    if (running)
        r = session_drv_error(s, "stop", ops->stop(s->drv->ctx, &sb.d, STK_STOP_GRACE_MS, err),
                              err);
    if (r >= 0 && session_supervised(s)) {
        session_sb_release(&sb);
        /* the monitor's grace period, its overdue kill, its teardown */
        int lock = session_lock(s, id, STK_STOP_GRACE_MS + 30000, NULL);
        if (lock == -ENOENT)
            return 0; /* deleted: the directory went after the phase was recorded */
        if (lock < 0)
            return stk_error_make(err, EAGAIN,
                                  "sandbox %s: its monitor did not finish in time; `stockade get "
                                  "%s` shows its phase, and the next command finishes the work",
                                  id, id);
        r = session_finish(s, id, lock, err);
        close(lock);
        return r;
    }
    bool purge = now == STK_SB_DELETING;
    if (r >= 0)
        r = session_drv_error(s, "teardown", ops->teardown(s->drv->ctx, &sb.d, purge, err), err);
    if (r >= 0)
        r = session_set_phase(s, sb.rec.id, (int)now, purge ? STK_SB_DELETED : STK_SB_STOPPED,
                              purge ? NULL : "", "", NULL, purge ? "deleted" : "stopped", NULL,
                              err);
    if (r >= 0 && purge) {
        char dir[PATH_MAX];
        session_dir(s, sb.rec.id, dir, sizeof(dir));
        (void)rm_rf(dir); /* its logs */
    }
    session_sb_release(&sb);
    return r;
}

int stk_session_stop(struct stk_session *s, const char *id, struct stk_error **err)
{
    struct stk_sb_rec rec = {0};
    int r = session_current(s, id, &rec, err);
    if (r < 0)
        return r;
    if (rec.phase == STK_SB_STOPPED) {
        stk_sb_rec_free(&rec);
        return 0;
    }
    if (rec.phase != STK_SB_READY || rec.pool_member) {
        r = stk_error_make(err, EBUSY, "sandbox %s is %s%s; only a ready sandbox can be stopped",
                           rec.id, phase_name(rec.phase),
                           rec.pool_member ? " (an unclaimed pool member: pool rm removes it)"
                                           : "");
        stk_sb_rec_free(&rec);
        return r;
    }
    r = session_set_phase(s, rec.id, STK_SB_READY, STK_SB_STOPPING, "", "stop requested", NULL,
                          "stopping", NULL, err);
    if (r >= 0)
        r = end_and_finish(s, rec.id, STK_SB_STOPPING, true, err);
    stk_sb_rec_free(&rec);
    return r;
}

int stk_session_start(struct stk_session *s, const char *id, struct stk_error **err)
{
    struct stk_sb_rec rec = {0};
    int r = session_current(s, id, &rec, err);
    if (r < 0)
        return r;
    if (rec.phase == STK_SB_READY) {
        stk_sb_rec_free(&rec);
        return 0;
    }
    if (rec.phase != STK_SB_STOPPED) {
        r = stk_error_make(err, EBUSY, "sandbox %s is %s; only a stopped sandbox can be started",
                           rec.id, phase_name(rec.phase));
        stk_sb_rec_free(&rec);
        return r;
    }
    int lock = -1;
    if (session_supervised(s) && (lock = session_lock(s, rec.id, 5000, err)) < 0) {
        stk_sb_rec_free(&rec);
        return lock;
    }
    r = session_set_phase(s, rec.id, STK_SB_STOPPED, STK_SB_STARTING, "", "start requested", NULL,
                          "starting", NULL, err);
    if (r >= 0 && lock >= 0)
        r = monitor_spawn(s, rec.id, MONITOR_START, lock, err);
    else if (lock >= 0)
        close(lock);
    else if (r >= 0)
        r = session_up_inline(s, rec.id, false, false, err);
    stk_sb_rec_free(&rec);
    return r;
}

int stk_session_rm(struct stk_session *s, const char *id, bool force, struct stk_error **err)
{
    struct stk_sb_rec rec = {0};
    int r = session_current(s, id, &rec, err);
    if (r < 0)
        return r;
    enum stk_sb_phase ph = rec.phase;
    bool running = ph == STK_SB_READY || ph == STK_SB_STARTING || ph == STK_SB_PROVISIONING ||
                   ph == STK_SB_PENDING || ph == STK_SB_STOPPING;
    if (ph == STK_SB_DELETED) {
        stk_sb_rec_free(&rec);
        return 0;
    }
    if (running && !force && !rec.pool_member) {
        r = stk_error_make(err, EBUSY,
                           "sandbox %s is %s; stop it first, or rm -f stops and removes it", rec.id,
                           phase_name(ph));
        stk_sb_rec_free(&rec);
        return r;
    }
    r = session_set_phase(s, rec.id, (int)ph, STK_SB_DELETING, NULL, "delete requested", NULL,
                          "deleting", NULL, err);
    if (r >= 0)
        r = end_and_finish(s, rec.id, STK_SB_DELETING, running || session_supervised(s), err);
    stk_sb_rec_free(&rec);
    return r;
}
