/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The kubernetes driver: a sandbox is the objects `stockade render --target
 * kubernetes` prints, applied to a cluster in order by server-side apply.
 *
 * Identity: every object carries the sandbox's id and the state directory's
 * store id as labels (render adds them), so every operation finds what
 * belongs to a sandbox from its id alone — a create cut short by a crash
 * included — and gc removes only what its own state directory made. A
 * sandbox owns its namespace: a namespace that exists and is not this
 * sandbox's is refused, never taken over (applying would change its Pod
 * Security labels).
 *
 * The handle the session stores: {"namespace", "kind" (Pod|Job), "name",
 * "context", "server"}.
 *
 * Status comes from list+watch of the sandbox's Pods; kill reasons from
 * what the cluster reports (a container terminated OOMKilled →
 * memory_exceeded; a Job's DeadlineExceeded → wall_clock_exceeded). The
 * cluster cannot report pids or CPU-time kills (explain says so).
 */
#include "driver/driver.h"
#include "driver/kubernetes/kube.h"
#include "driver/kubernetes/proxylog.h"
#include "image/image.h"
#include "render/render.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* How long provision waits for the Pod to run (image pulls, scheduling);
 * below the two minutes create waits for its monitor's report. */
#define READY_TIMEOUT_MS 90000
/* How long teardown waits for what it deleted to be gone. */
#define GONE_TIMEOUT_MS 120000
/* supervise looks at the session at least this often. */
#define SUPERVISE_TICK_MS 2000
#define STORE_ID_FILE     "kubernetes-store-id"
#define CONTAINER         "sandbox"
/* a warm member's Pod: "false" until a claim makes it "true" */
#define CLAIMED_LABEL      "stockade.dev/claimed"
#define CLAIMED_LABEL_PATH "/metadata/labels/stockade.dev~1claimed"

struct kube_ctx {
    struct stk_kubeconfig *cfg;
    struct stk_kube *k;
    char store[33]; /* this state directory's label value; "" until needed */
    char state_dir[PATH_MAX];
};

static int store_id(const char *state_dir, char ret[33], struct stk_error **err);

/* The store id, read or made on first use (the state directory exists by
 * then: the session opened its store). */
static int need_store(struct kube_ctx *c, struct stk_error **err)
{
    return c->store[0] ? 0 : store_id(c->state_dir, c->store, err);
}

/* ---- helpers ------------------------------------------------------------------------ */

static const char *jstr(const json_t *o, const char *path)
{
    /* "a.b.c": nested objects */
    char key[64];
    const json_t *v = o;
    while (v && *path) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        if (n >= sizeof(key))
            return NULL;
        memcpy(key, path, n);
        key[n] = '\0';
        v = json_object_get(v, key);
        path += n + (dot ? 1 : 0);
    }
    return json_string_value(v);
}

/* The store id: a random label value made once per state directory. */
static int store_id(const char *state_dir, char ret[33], struct stk_error **err)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/%s", state_dir, STORE_ID_FILE) >= (int)sizeof(path))
        return stk_error_make(err, ENAMETOOLONG, "state directory path too long: %s", state_dir);
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd >= 0) {
            char buf[40];
            ssize_t n = read(fd, buf, sizeof(buf) - 1);
            close(fd);
            if (n == 33 && buf[32] == '\n')
                n = 32;
            if (n == 32) {
                memcpy(ret, buf, 32);
                ret[32] = '\0';
                for (int i = 0; i < 32; i++)
                    if (!strchr("0123456789abcdef", ret[i]))
                        n = -1;
                if (n == 32)
                    return 0;
            }
            return stk_error_make(err, EINVAL, "%s is not a store id (32 hex digits)", path);
        }
        if (errno != ENOENT)
            return stk_error_errno(err, errno, "opening %s", path);
        unsigned char rnd[16];
        int rfd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
        if (rfd < 0 || read(rfd, rnd, sizeof(rnd)) != (ssize_t)sizeof(rnd)) {
            if (rfd >= 0)
                close(rfd);
            return stk_error_errno(err, EIO, "reading /dev/urandom");
        }
        close(rfd);
        char hex[34];
        for (int i = 0; i < 16; i++)
            snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
        hex[32] = '\n';
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 && errno == EEXIST)
            continue; /* another process made it first: read theirs */
        if (fd < 0)
            return stk_error_errno(err, errno, "creating %s", path);
        bool ok = write(fd, hex, 33) == 33 && fsync(fd) == 0;
        close(fd);
        if (!ok)
            return stk_error_errno(err, EIO, "writing %s", path);
    }
    return stk_error_make(err, EIO, "%s: could not be read back", path);
}

STK_PRINTF(2, 3) static void error_append(struct stk_error **err, const char *fmt, ...)
{
    if (!err || !*err)
        return;
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *more = stk_xvasprintf(fmt, ap);
    va_end(ap);
    char *msg = stk_xasprintf("%s%s", (*err)->msg, more);
    free((*err)->msg);
    (*err)->msg = msg;
}

static void selector(const char *id, char *buf, size_t n)
{
    snprintf(buf, n, "%s=%s", STK_K8S_SANDBOX_ID_LABEL, id);
}

/* ---- open, facts -------------------------------------------------------------------- */

static void kube_close(void *ud)
{
    struct kube_ctx *c = ud;
    if (!c)
        return;
    stk_kube_close(c->k);
    stk_kubeconfig_free(c->cfg);
    free(c);
}

static int kube_open(const struct stk_driver_conf *conf, void **ret, struct stk_error **err)
{
    struct kube_ctx *c = stk_xcalloc(1, sizeof(*c));
    struct stk_kube_opts o = {.kubeconfig = conf->kubeconfig, .context = conf->context};
    int r = 0;
    if (snprintf(c->state_dir, sizeof(c->state_dir), "%s", conf->state_dir) >=
        (int)sizeof(c->state_dir))
        r = stk_error_make(err, ENAMETOOLONG, "state directory path too long: %s", conf->state_dir);
    if (r >= 0)
        r = stk_kubeconfig_load(&o, &c->cfg, err);
    if (r >= 0)
        r = stk_kube_open(c->cfg, &c->k, err);
    if (r < 0) {
        kube_close(c);
        return r;
    }
    *ret = c;
    return 0;
}

static const char *runtime_class(const struct stk_boundary *b)
{
    if (b->kube && b->kube->runtime_class_name.meta.set)
        return b->kube->runtime_class_name.v;
    return b->runtime == STK_RUNTIME_GVISOR ? "gvisor" : NULL;
}

/* spec.image pinned to the digest stockade knows for it (`image pull` into
 * this state directory, or a digest in the reference): *image "" when the
 * reference itself is pinned or nothing is known (the cluster resolves the
 * tag then, and explain says the digest is unknown). */
static int pinned_image(const struct kube_ctx *c, const struct stk_boundary *b, char *image,
                        size_t n, char digest[72], struct stk_error **err)
{
    char store[PATH_MAX + 16];
    image[0] = digest[0] = '\0';
    if (!b->image || !c || !c->state_dir[0] ||
        stk_image_store_dir(c->state_dir, store, sizeof(store), NULL) < 0)
        return 0;
    int r = stk_image_pin(store, b->image, image, n, digest, err);
    return r < 0 ? r : 0;
}

/* The ports the image declares (pulled into this state directory), for
 * explain: never exposed, only spec.ports is. */
static void image_ports(const struct kube_ctx *c, const struct stk_boundary *b,
                        struct stk_driver_facts *ret)
{
    char store[PATH_MAX + 16];
    if (b->image && c && c->state_dir[0] &&
        stk_image_store_dir(c->state_dir, store, sizeof(store), NULL) >= 0 &&
        stk_image_ports_text(store, b->image, ret->image_ports, sizeof(ret->image_ports)))
        ret->facts.image_ports = ret->image_ports;
}

static int kube_facts(void *ud, const struct stk_boundary *b, struct stk_driver_facts *ret,
                      struct stk_error **err)
{
    struct kube_ctx *c = ud;
    const char *rc = runtime_class(b);
    bool explain = ret->explain;
    *ret = (struct stk_driver_facts){
        .facts = {.backend = STK_BACKEND_KUBERNETES,
                  .runtime = rc ? rc : "the cluster's default runtime",
                  .runtime_is_gvisor = rc && !strcmp(rc, "gvisor")},
        .runtime = "pod",
    };
    if (!b->image)
        return stk_error_make(err, EINVAL,
                              "spec.image is required on the kubernetes backend: a Pod runs an "
                              "image, not the host's root filesystem");
    if (b->model == STK_MODEL_INJECTION && !b->target)
        return stk_error_make(err, EINVAL,
                              "deployment.model: injection needs spec.deployment.target (or "
                              "create --workload KIND/NAME)");
    char pinned[STK_IMAGE_REF_MAX + 112];
    int r = pinned_image(c, b, pinned, sizeof(pinned), ret->image_digest, err);
    if (r < 0)
        return r;
    if (ret->image_digest[0])
        ret->facts.image_digest = ret->image_digest;
    image_ports(c, b, ret);
    if (explain && c) {
        int served = stk_kube_has_api(c->k, STK_K8S_AGENTS_API, NULL);
        ret->facts.warm_pools =
            served > 0 ? "this cluster serves " STK_K8S_AGENTS_API
                         ", so a pool is a SandboxTemplate and a SandboxWarmPool that the "
                         "agent-sandbox controller keeps full, and a claim is a SandboxClaim "
                         "the controller binds to a ready member"
            : served == 0 ? "stockade's own Pods, one namespace each; a claim relabels one under "
                            "its resourceVersion (this cluster does not serve " STK_K8S_AGENTS_API
                            ")"
                          : NULL;
    }
    if (!rc || !c)
        return 0;
    /* a RuntimeClass the cluster lacks would leave the Pod Pending forever;
     * a missing gVisor must never become runc in silence */
    struct stk_kube_ref ref = {"node.k8s.io/v1", "RuntimeClass", NULL, rc};
    json_t *obj = NULL;
    r = stk_kube_get(c->k, &ref, &obj, err);
    json_decref(obj);
    if (r == -ENOENT) {
        stk_error_free(*err);
        *err = NULL;
        return stk_error_make(err, EINVAL,
                              "context %s (%s) has no RuntimeClass %s, which this sandbox needs "
                              "(runtime: %s); install it, or choose another runtime",
                              stk_kubeconfig_context(c->cfg), stk_kubeconfig_server(c->cfg), rc,
                              stk_runtime_names[b->runtime]);
    }
    return r < 0 ? r : 0;
}

/* ---- pods and their status ---------------------------------------------------------- */

/* The sandbox's container in a Pod: "sandbox", or in a replica of an
 * injected workload the one its template label names. */
static const char *sandbox_container(const json_t *pod)
{
    const json_t *labels = json_object_get(json_object_get(pod, "metadata"), "labels");
    const char *name = json_string_value(json_object_get(labels, STK_K8S_CONTAINER_LABEL));
    return name ? name : CONTAINER;
}

static const json_t *sandbox_container_status(const json_t *pod)
{
    const json_t *cs = json_object_get(json_object_get(pod, "status"), "containerStatuses");
    const char *want = sandbox_container(pod);
    size_t i;
    const json_t *s;
    json_array_foreach(cs, i,
                       s) if (!strcmp(jstr(s, "name") ? jstr(s, "name") : "", want)) return s;
    return NULL;
}

/* Waiting reasons that will not resolve by waiting. */
static bool waiting_fatal(const char *reason)
{
    static const char *const fatal[] = {"ErrImagePull",         "ImagePullBackOff",
                                        "InvalidImageName",     "CreateContainerConfigError",
                                        "CreateContainerError", "RunContainerError",
                                        "ErrImageNeverPull",    "CrashLoopBackOff"};
    for (size_t i = 0; reason && i < STK_ARRAY_SIZE(fatal); i++)
        if (!strcmp(reason, fatal[i]))
            return true;
    return false;
}

/* The status of a pod: running, or ended with its exit code and kill reason. */
static void pod_status(const json_t *pod, struct stk_driver_status *ret)
{
    *ret = (struct stk_driver_status){.state = STK_DRV_RUNNING, .exit_code = -1};
    const char *phase = jstr(pod, "status.phase");
    const json_t *cs = sandbox_container_status(pod);
    const json_t *term = json_object_get(json_object_get(cs, "state"), "terminated");
    const json_t *last = json_object_get(json_object_get(cs, "lastState"), "terminated");
    bool ended = term || (phase && (!strcmp(phase, "Succeeded") || !strcmp(phase, "Failed")));
    if (!ended)
        return;
    ret->state = STK_DRV_ENDED;
    if (!term)
        term = last;
    const char *reason = jstr(term, "reason");
    json_t *code = json_object_get(term, "exitCode");
    ret->exit_code = json_is_integer(code) ? (int)json_integer_value(code) : -1;
    ret->signal = (int)json_integer_value(json_object_get(term, "signal"));
    /* the reason decides, not the exit code: an OOM kill of a child can
     * leave the Pod Succeeded with exit 0 */
    if ((reason && !strcmp(reason, "OOMKilled")) ||
        (last && jstr(last, "reason") && !strcmp(jstr(last, "reason"), "OOMKilled")))
        ret->kill = STK_KILL_MEMORY;
    const char *pod_reason = jstr(pod, "status.reason");
    if (pod_reason && !strcmp(pod_reason, "DeadlineExceeded"))
        ret->kill = STK_KILL_WALL_CLOCK;
    snprintf(ret->message, sizeof(ret->message), "%s%s%s", phase ? phase : "", reason ? ": " : "",
             reason ? reason : "");
}

/* A Job that failed for its deadline: the Job controller deletes its Pod. */
static bool job_deadline_exceeded(struct kube_ctx *c, const char *ns, const char *name)
{
    struct stk_kube_ref ref = {"batch/v1", "Job", ns, name};
    json_t *job = NULL;
    if (stk_kube_get(c->k, &ref, &job, NULL) < 0)
        return false;
    bool hit = false;
    size_t i;
    const json_t *cond;
    json_array_foreach(json_object_get(json_object_get(job, "status"), "conditions"), i, cond)
    {
        const char *reason = jstr(cond, "reason"), *status = jstr(cond, "status");
        hit |= reason && !strcmp(reason, "DeadlineExceeded") && status && !strcmp(status, "True");
    }
    json_decref(job);
    return hit;
}

/* The namespace of a sandbox: render's, or for a warm pool's member (many
 * of one template) one of its own, named by its id. */
static const char *sandbox_namespace(const struct stk_driver_sandbox *sb, char *buf, size_t n)
{
    if (!sb->pool_member && !(sb->pool && sb->pool[0]))
        return stk_k8s_namespace(sb->b);
    snprintf(buf, n, "%s", sb->id);
    return buf;
}

/* ---- the handle --------------------------------------------------------------------- */

struct handle {
    char ns[64], kind[16], name[254];
    bool injected; /* kind is the workload stockade injected into */
    /* a claim on an agents.x-k8s.io pool: the SandboxClaim's name (the
     * Pod is the controller's; stop and rm delete the claim) */
    char claim[64];
};

static void pool_namespace(struct kube_ctx *c, const char *pool, char ns[64]);
static bool agents_claim(const struct stk_driver_sandbox *sb)
{
    return !sb->handle && sb->pool && sb->pool[0] && !sb->pool_member;
}

/* The namespace of the workload an injected sandbox goes into: the
 * target's, else the kubeconfig context's. */
static const char *workload_namespace(struct kube_ctx *c, const struct stk_boundary *b)
{
    if (b->target && b->target->namespace.meta.set)
        return b->target->namespace.v;
    return stk_kubeconfig_namespace(c->cfg);
}

static bool injected_kind(const char *kind)
{
    return stk_enum_lookup(stk_workload_kind_names, _STK_WORKLOAD_N, kind) >= 0;
}

static int handle_parse(struct kube_ctx *c, const struct stk_driver_sandbox *sb, struct handle *ret,
                        struct stk_error **err)
{
    *ret = (struct handle){0};
    json_t *h = sb->handle ? json_loads(sb->handle, 0, NULL) : NULL;
    const char *ns = jstr(h, "namespace"), *kind = jstr(h, "kind"), *name = jstr(h, "name");
    int r = 0;
    if (ns && kind && name && strlen(ns) < sizeof(ret->ns) && strlen(kind) < sizeof(ret->kind) &&
        strlen(name) < sizeof(ret->name)) {
        strcpy(ret->ns, ns);
        strcpy(ret->kind, kind);
        strcpy(ret->name, name);
        ret->injected = injected_kind(kind);
        const char *claim = jstr(h, "claim");
        if (claim && strlen(claim) < sizeof(ret->claim))
            strcpy(ret->claim, claim);
    } else if (agents_claim(sb)) {
        /* a claim cut short before its handle was stored */
        pool_namespace(c, sb->pool, ret->ns);
        snprintf(ret->kind, sizeof(ret->kind), "Pod");
        snprintf(ret->name, sizeof(ret->name), "%s", sb->id);
        snprintf(ret->claim, sizeof(ret->claim), "%s", sb->id);
    } else if (sb->b && sb->b->model == STK_MODEL_INJECTION && sb->b->target) {
        snprintf(ret->ns, sizeof(ret->ns), "%s", workload_namespace(c, sb->b));
        snprintf(ret->kind, sizeof(ret->kind), "%s",
                 stk_workload_kind_names[sb->b->target->kind.v]);
        snprintf(ret->name, sizeof(ret->name), "%s", sb->b->target->name.v);
        ret->injected = true;
    } else if (sb->b) {
        /* no handle yet (a create cut short): what render would name */
        char buf[64];
        snprintf(ret->ns, sizeof(ret->ns), "%s", sandbox_namespace(sb, buf, sizeof(buf)));
        snprintf(ret->kind, sizeof(ret->kind), "%s", sb->b->limits.wall_clock_ms ? "Job" : "Pod");
        snprintf(ret->name, sizeof(ret->name), "%s", sb->b->name);
    } else {
        r = stk_error_make(err, EINVAL, "sandbox %s: its kubernetes handle is unreadable", sb->id);
    }
    json_decref(h);
    return r;
}

/* The sandbox's pods (a Pod's one, or a Job's). */
static int list_pods(struct kube_ctx *c, const char *ns, const char *id, json_t **ret,
                     struct stk_error **err)
{
    char sel[128];
    selector(id, sel, sizeof(sel));
    struct stk_kube_ref ref = {"v1", "Pod", ns, NULL};
    json_t *list = NULL;
    int r = stk_kube_list(c->k, &ref, sel, &list, err);
    if (r < 0)
        return r;
    *ret = list;
    return 0;
}

/* The newest of a list's pods (a Job may have made more than one). */
static const json_t *newest_pod(const json_t *list)
{
    const json_t *best = NULL, *p;
    size_t i;
    json_array_foreach(json_object_get(list, "items"), i, p)
    {
        const char *t = jstr(p, "metadata.creationTimestamp");
        const char *bt = best ? jstr(best, "metadata.creationTimestamp") : NULL;
        if (!best || (t && bt && strcmp(t, bt) > 0))
            best = p;
    }
    return best;
}

/* The sandbox's handle, its pods (*ret_list, the caller's to free) and the
 * newest of them (*ret_pod, into the list; NULL when it has none). */
static int sandbox_pods(struct kube_ctx *c, const struct stk_driver_sandbox *sb, struct handle *h,
                        json_t **ret_list, const json_t **ret_pod, struct stk_error **err)
{
    json_t *list = NULL;
    int r = handle_parse(c, sb, h, err);
    if (r < 0 || (r = list_pods(c, h->ns, sb->id, &list, err)) < 0)
        return r;
    *ret_list = list;
    *ret_pod = newest_pod(list);
    return 0;
}

/* ---- teardown ----------------------------------------------------------------------- */

struct gone_wait {
    const char *what;
    bool seen;
};

static int gone_fn(void *ud, const char *type, const json_t *obj)
{
    struct gone_wait *w = ud;
    (void)obj;
    if (!strcmp(type, "SYNC"))
        w->seen = true;
    if (!strcmp(type, "SYNCED"))
        return w->seen ? 0 : 1; /* nothing left */
    if (!strcmp(type, "DELETED"))
        return 1;
    return 0;
}

/* Waits until nothing of `collection` matches sel (and field). */
static int wait_gone(struct kube_ctx *c, const struct stk_kube_ref *collection, const char *sel,
                     const char *field, struct stk_error **err)
{
    for (;;) {
        struct gone_wait w = {0};
        int r = stk_kube_watch(c->k, collection, sel, field, GONE_TIMEOUT_MS, gone_fn, &w, err);
        if (r < 0)
            return r;
        /* one DELETED: look again, there may have been more */
        json_t *list = NULL;
        if ((r = stk_kube_list(c->k, collection, sel, &list, err)) < 0)
            return r;
        size_t n = json_array_size(json_object_get(list, "items"));
        json_decref(list);
        if (n == 0 || field)
            return 0;
    }
}

static int delete_workload(struct kube_ctx *c, const struct handle *h, const char *id, int grace_s,
                           struct stk_error **err)
{
    struct stk_kube_ref ref = {strcmp(h->kind, "Job") ? "v1" : "batch/v1", h->kind, h->ns, h->name};
    struct stk_buf path = {0};
    int r = stk_kube_path(c->k, &ref, &path, err);
    if (r < 0) {
        stk_buf_free(&path);
        return r;
    }
    json_t *opts = json_pack("{s:s,s:s,s:s}", "kind", "DeleteOptions", "apiVersion", "v1",
                             "propagationPolicy", "Foreground");
    if (grace_s >= 0)
        json_object_set_new(opts, "gracePeriodSeconds", json_integer(grace_s));
    long status = 0;
    r = stk_kube_request(c->k, "DELETE", path.data, NULL, opts, &status, NULL, err);
    json_decref(opts);
    stk_buf_free(&path);
    if (r < 0)
        return r;
    if (status >= 300 && status != 404)
        return stk_error_make(err, status >= 500 ? STK_DRV_E_TRANSIENT : EIO,
                              "context %s (%s): delete %s %s/%s: HTTP %ld",
                              stk_kubeconfig_context(c->cfg), stk_kubeconfig_server(c->cfg),
                              h->kind, h->ns, h->name, status);
    /* a Job's pods go with it (foreground); pods made for the id anyway */
    (void)id;
    return 0;
}

static int eject(struct kube_ctx *c, const struct handle *h, const char *id,
                 struct stk_error **err);

static int claim_teardown(struct kube_ctx *c, const struct stk_driver_sandbox *sb,
                          const struct handle *h, bool purge, struct stk_error **err);

/* What a sandbox's rendering puts outside its own namespace, which deleting
 * that namespace does not take: the egress proxy's Role and RoleBinding
 * beside a Secret it reads through the API. Found across namespaces by
 * their ownership labels (managed-by stockade, the proxy's component, this
 * state directory's store) and deleted, each under its uid, when it
 * carries the sandbox id `id` (rm), or with id NULL, a sandbox id not in
 * keep (gc). Nothing without all of those labels is ever touched. */
static int delete_outside(struct kube_ctx *c, const char *id, const char *const *keep,
                          size_t n_keep, size_t *ret_removed, struct stk_error **err)
{
    static const char *const kinds[] = {"RoleBinding", "Role"};
    int r = need_store(c, err);
    if (r < 0)
        return r;
    char sel[256];
    snprintf(sel, sizeof(sel), "%s=%s,%s=%s,%s=%s%s%s%s", STK_K8S_MANAGED_BY_LABEL,
             STK_K8S_MANAGED_BY, STK_K8S_COMPONENT_LABEL, STK_K8S_PROXY_COMPONENT,
             STK_K8S_STORE_LABEL, c->store, id ? "," : "", id ? STK_K8S_SANDBOX_ID_LABEL "=" : "",
             id ? id : "");
    for (size_t k = 0; k < STK_ARRAY_SIZE(kinds) && r >= 0; k++) {
        struct stk_kube_ref coll = {"rbac.authorization.k8s.io/v1", kinds[k], NULL, NULL};
        json_t *list = NULL;
        if ((r = stk_kube_list(c->k, &coll, sel, &list, err)) < 0)
            break;
        size_t i;
        json_t *o;
        json_array_foreach(json_object_get(list, "items"), i, o)
        {
            const json_t *labels = json_object_get(json_object_get(o, "metadata"), "labels");
            const char *oid = json_string_value(json_object_get(labels, STK_K8S_SANDBOX_ID_LABEL));
            bool kept = !oid || (id && strcmp(oid, id));
            for (size_t j = 0; oid && !id && j < n_keep; j++)
                kept |= !strcmp(keep[j], oid);
            if (kept)
                continue;
            struct stk_kube_ref one = {"rbac.authorization.k8s.io/v1", kinds[k],
                                       jstr(o, "metadata.namespace"), jstr(o, "metadata.name")};
            /* 404 is 0; -EAGAIN: replaced meanwhile, not this one */
            r = stk_kube_delete(c->k, &one, "Background", jstr(o, "metadata.uid"), err);
            if (r < 0 && r != -EAGAIN)
                break;
            if (r == -EAGAIN) {
                stk_error_free(*err);
                *err = NULL;
            } else if (r > 0 && ret_removed)
                ++*ret_removed;
            r = 0;
        }
        json_decref(list);
    }
    return r;
}

static int kube_teardown(void *ud, const struct stk_driver_sandbox *sb, bool purge,
                         struct stk_error **err)
{
    struct kube_ctx *c = ud;
    char sel[128];
    selector(sb->id, sel, sizeof(sel));
    struct handle ih;
    if (handle_parse(c, sb, &ih, NULL) >= 0 && ih.injected) {
        /* eject, then wait for the replicas that carried it to go */
        struct stk_kube_ref pods = {"v1", "Pod", ih.ns, NULL};
        int r = eject(c, &ih, sb->id, err);
        return r < 0 ? r : wait_gone(c, &pods, sel, NULL, err);
    }
    struct handle ch;
    if (handle_parse(c, sb, &ch, NULL) >= 0 && ch.claim[0])
        return claim_teardown(c, sb, &ch, purge, err);
    /* no handle: provision never finished (a create cut short by a crash),
     * so nothing of it persists: everything goes */
    if (purge || !sb->handle) {
        /* the namespaces labelled with the id: found even when no handle
         * was recorded (a create cut short) */
        struct stk_kube_ref nsref = {"v1", "Namespace", NULL, NULL};
        json_t *list = NULL;
        /* a sandbox known to have no proxy has nothing outside */
        int r = !sb->b || stk_k8s_needs_proxy(sb->b) ? delete_outside(c, sb->id, NULL, 0, NULL, err)
                                                     : 0;
        if (r < 0 || (r = stk_kube_list(c->k, &nsref, sel, &list, err)) < 0)
            return r;
        size_t i;
        json_t *ns;
        json_array_foreach(json_object_get(list, "items"), i, ns)
        {
            struct stk_kube_ref one = {"v1", "Namespace", NULL, jstr(ns, "metadata.name")};
            if ((r = stk_kube_delete(c->k, &one, "Foreground", jstr(ns, "metadata.uid"), err)) <
                    0 &&
                r != -EAGAIN)
                break;
            r = 0;
        }
        json_decref(list);
        return r < 0 ? r : wait_gone(c, &nsref, sel, NULL, err);
    }
    struct handle h;
    int r = handle_parse(c, sb, &h, err);
    if (r < 0 || (r = delete_workload(c, &h, sb->id, -1, err)) < 0)
        return r;
    struct stk_kube_ref pods = {"v1", "Pod", h.ns, NULL};
    return wait_gone(c, &pods, sel, NULL, err);
}

/* ---- provision ---------------------------------------------------------------------- */

struct ready_wait {
    struct kube_ctx *c;
    char message[512];
    bool failed;
};

static int ready_fn(void *ud, const char *type, const json_t *pod)
{
    struct ready_wait *w = ud;
    if (strcmp(type, "SYNC") && strcmp(type, "ADDED") && strcmp(type, "MODIFIED"))
        return 0;
    struct stk_driver_status st;
    pod_status(pod, &st);
    if (st.state == STK_DRV_ENDED)
        return 1; /* it ran: supervise reports how it ended */
    const json_t *cs = sandbox_container_status(pod);
    if (json_object_get(json_object_get(cs, "state"), "running"))
        return 1;
    const json_t *waiting = json_object_get(json_object_get(cs, "state"), "waiting");
    const char *reason = jstr(waiting, "reason");
    if (waiting_fatal(reason)) {
        snprintf(w->message, sizeof(w->message), "Pod %s/%s: %s: %s",
                 jstr(pod, "metadata.namespace"), jstr(pod, "metadata.name"), reason,
                 jstr(waiting, "message") ? jstr(waiting, "message") : "");
        w->failed = true;
        return 2;
    }
    /* what it waits for, said if the wait times out */
    size_t i;
    const json_t *cond;
    json_array_foreach(json_object_get(json_object_get(pod, "status"), "conditions"), i, cond)
    {
        const char *s = jstr(cond, "status"), *m = jstr(cond, "message");
        if (s && !strcmp(s, "False") && m)
            snprintf(w->message, sizeof(w->message), "%s: %s", jstr(cond, "type"), m);
    }
    if (reason)
        snprintf(w->message, sizeof(w->message), "%s", reason);
    return 0;
}

static int wait_running(struct kube_ctx *c, const char *ns, const char *id, int timeout_ms,
                        struct stk_error **err)
{
    char sel[128];
    selector(id, sel, sizeof(sel));
    struct stk_kube_ref pods = {"v1", "Pod", ns, NULL};
    struct ready_wait w = {.c = c};
    int r = stk_kube_watch(c->k, &pods, sel, NULL, timeout_ms, ready_fn, &w, err);
    if (r == -ETIMEDOUT) {
        stk_error_free(*err);
        *err = NULL;
        return stk_error_make(err, ETIMEDOUT, "the sandbox's Pod in %s did not run within %d s%s%s",
                              ns, READY_TIMEOUT_MS / 1000, w.message[0] ? ": " : "", w.message);
    }
    if (w.failed)
        return stk_error_make(err, EIO, "%s", w.message);
    return r < 0 ? r : 0;
}

/* Until the egress proxy's Pod is Ready (its readiness probe: it listens),
 * or its container cannot start. */
static int proxy_ready_fn(void *ud, const char *type, const json_t *pod)
{
    struct ready_wait *w = ud;
    if (strcmp(type, "SYNC") && strcmp(type, "ADDED") && strcmp(type, "MODIFIED"))
        return 0;
    if (json_object_get(json_object_get(pod, "metadata"), "deletionTimestamp"))
        return 0; /* a Pod of an earlier rollout, going */
    size_t i;
    const json_t *cond;
    json_array_foreach(json_object_get(json_object_get(pod, "status"), "conditions"), i, cond)
    {
        const char *t = jstr(cond, "type"), *s = jstr(cond, "status"), *m = jstr(cond, "message");
        if (t && s && !strcmp(t, "Ready") && !strcmp(s, "True"))
            return 1;
        if (s && !strcmp(s, "False") && m)
            snprintf(w->message, sizeof(w->message), "%s: %s", t ? t : "?", m);
    }
    const json_t *cs;
    json_array_foreach(json_object_get(json_object_get(pod, "status"), "containerStatuses"), i, cs)
    {
        const json_t *waiting = json_object_get(json_object_get(cs, "state"), "waiting");
        const char *reason = jstr(waiting, "reason");
        if (waiting_fatal(reason)) {
            const json_t *last = json_object_get(json_object_get(cs, "lastState"), "terminated");
            snprintf(w->message, sizeof(w->message), "Pod %s/%s: %s: %s%s%s",
                     jstr(pod, "metadata.namespace"), jstr(pod, "metadata.name"), reason,
                     jstr(waiting, "message") ? jstr(waiting, "message") : "",
                     last ? "; last exit: " : "",
                     last ? (jstr(last, "message")  ? jstr(last, "message")
                             : jstr(last, "reason") ? jstr(last, "reason")
                                                    : "?")
                          : "");
            w->failed = true;
            return 2;
        }
        if (reason)
            snprintf(w->message, sizeof(w->message), "%s", reason);
    }
    return 0;
}

static int wait_proxy_ready(struct kube_ctx *c, const char *ns, int timeout_ms,
                            struct stk_error **err)
{
    struct stk_kube_ref pods = {"v1", "Pod", ns, NULL};
    struct ready_wait w = {.c = c};
    int r = stk_kube_watch(c->k, &pods, STK_K8S_COMPONENT_LABEL "=" STK_K8S_PROXY_COMPONENT, NULL,
                           timeout_ms, proxy_ready_fn, &w, err);
    if (r == -ETIMEDOUT) {
        stk_error_free(*err);
        *err = NULL;
        return stk_error_make(err, ETIMEDOUT,
                              "the egress proxy's Pod in %s (Deployment %s) was not Ready within "
                              "%d s%s%s",
                              ns, STK_K8S_PROXY_NAME, READY_TIMEOUT_MS / 1000,
                              w.message[0] ? ": " : "", w.message);
    }
    if (w.failed)
        return stk_error_make(err, EIO, "the egress proxy cannot start: %s", w.message);
    return r < 0 ? r : 0;
}

/* `ready` means running: the sandbox's Pod runs and, when it has one, the
 * egress proxy serves (Ready), both within one READY_TIMEOUT_MS. */
static int wait_ready(struct kube_ctx *c, const struct stk_boundary *b, const char *ns,
                      const char *id, struct stk_error **err)
{
    int64_t start = stk_clock_ms(CLOCK_MONOTONIC);
    int r = 0;
    if (stk_k8s_needs_proxy(b) && (r = wait_proxy_ready(c, ns, READY_TIMEOUT_MS, err)) < 0)
        return r;
    int64_t left = READY_TIMEOUT_MS - (stk_clock_ms(CLOCK_MONOTONIC) - start);
    return wait_running(c, ns, id, (int)(left < 1000 ? 1000 : left), err);
}

static bool exists(struct kube_ctx *c, const json_t *obj)
{
    struct stk_kube_ref ref;
    json_t *live = NULL;
    if (stk_kube_ref_of(obj, &ref, NULL) < 0 || stk_kube_get(c->k, &ref, &live, NULL) < 0)
        return false;
    json_decref(live);
    return true;
}

/* The namespace is the sandbox's, or free. */
static int namespace_check(struct kube_ctx *c, const char *ns, const char *id,
                           struct stk_error **err)
{
    struct stk_kube_ref ref = {"v1", "Namespace", NULL, ns};
    json_t *obj = NULL;
    int r = stk_kube_get(c->k, &ref, &obj, err);
    if (r == -ENOENT) {
        stk_error_free(*err);
        *err = NULL;
        return 0;
    }
    if (r < 0)
        return r;
    const json_t *labels = json_object_get(json_object_get(obj, "metadata"), "labels");
    const char *owner = json_string_value(json_object_get(labels, STK_K8S_SANDBOX_ID_LABEL));
    const char *phase = jstr(obj, "status.phase");
    if (owner && !strcmp(owner, id) && !(phase && !strcmp(phase, "Terminating"))) {
        json_decref(obj);
        return 0;
    }
    r = stk_error_make(err, EEXIST,
                       "context %s (%s): namespace %s %s; a sandbox owns its namespace (set "
                       "spec.driverConfig.kubernetes.namespace, or another metadata.name)",
                       stk_kubeconfig_context(c->cfg), stk_kubeconfig_server(c->cfg), ns,
                       owner
                           ? (phase && !strcmp(phase, "Terminating") ? "is still being deleted"
                                                                     : "belongs to another sandbox")
                           : "exists and was not made by stockade");
    json_decref(obj);
    return r;
}

/* ---- injection into a workload (deployment.model: injection) ------------------------ */

/* The workload's pod template labels that say which sandbox is injected
 * (NULL: none). */
static const char *injected_id(const json_t *workload)
{
    const json_t *labels = json_object_get(
        json_object_get(json_object_get(json_object_get(workload, "spec"), "template"), "metadata"),
        "labels");
    return json_string_value(json_object_get(labels, STK_K8S_SANDBOX_ID_LABEL));
}

static int workload_get(struct kube_ctx *c, const struct handle *h, json_t **ret,
                        struct stk_error **err)
{
    struct stk_kube_ref ref = {"apps/v1", h->kind, h->ns, h->name};
    return stk_kube_get(c->k, &ref, ret, err);
}

/* Eject: the same field manager applies a configuration of nothing, so
 * the server removes every field only stockade set, and nothing else. A
 * workload that is gone, or does not carry this sandbox, is success. */
static int eject(struct kube_ctx *c, const struct handle *h, const char *id, struct stk_error **err)
{
    json_t *live = NULL;
    int r = workload_get(c, h, &live, err);
    if (r == -ENOENT) {
        stk_error_free(*err);
        *err = NULL;
        return 0;
    }
    if (r < 0)
        return r;
    const char *owner = injected_id(live);
    bool ours = owner && !strcmp(owner, id);
    json_decref(live);
    if (!ours)
        return 0;
    json_t *cfg = stk_k8s_eject_apply(h->kind, h->ns, h->name);
    r = stk_kube_apply(c->k, cfg, NULL, err);
    json_decref(cfg);
    return r < 0 ? r : 1;
}

static int inject_provision(struct kube_ctx *c, const struct stk_driver_sandbox *sb,
                            char **ret_handle, struct stk_error **err)
{
    struct handle h;
    json_t *live = NULL;
    int r = handle_parse(c, &(struct stk_driver_sandbox){.id = sb->id, .b = sb->b}, &h, err);
    if (r < 0)
        return r;
    if ((r = workload_get(c, &h, &live, err)) < 0) {
        if (r == -ENOENT)
            error_append(err, " (create --workload injects into a workload that exists)");
        return r;
    }
    const char *owner = injected_id(live);
    if (owner && strcmp(owner, sb->id)) {
        r = stk_error_make(err, EEXIST,
                           "context %s (%s): %s %s/%s carries sandbox %s already; eject it "
                           "first (stockade rm %s)",
                           stk_kubeconfig_context(c->cfg), stk_kubeconfig_server(c->cfg), h.kind,
                           h.ns, h.name, owner, owner);
        json_decref(live);
        return r;
    }
    bool applied = false;
    if (!owner) {
        /* render's checks see the workload as it was before stockade */
        json_t *cfg = NULL;
        stk_fault_point("kube-before-workload");
        struct stk_k8s_options opt = {.sandbox_id = sb->id, .store = c->store};
        r = stk_k8s_inject_apply(sb->b, live, &opt, &cfg, err);
        if (r >= 0)
            r = stk_kube_apply(c->k, cfg, NULL, err);
        json_decref(cfg);
        applied = r >= 0;
    }
    /* the replicas roll out with the sandbox: ready once one of them runs
     * it (a workload scaled to zero has none to wait for) */
    json_t *replicas = json_object_get(json_object_get(live, "spec"), "replicas");
    if (r >= 0 && !sb->accepted_only &&
        !(json_is_integer(replicas) && json_integer_value(replicas) == 0))
        r = wait_running(c, h.ns, sb->id, READY_TIMEOUT_MS, err);
    json_decref(live);
    if (r < 0) {
        struct stk_error *uerr = NULL;
        if (applied && eject(c, &h, sb->id, &uerr) < 0)
            error_append(err, "; ejecting what this create applied failed too: %s",
                         uerr ? uerr->msg : "?");
        else if (applied)
            error_append(err, "; ejected what this create applied");
        stk_error_free(uerr);
        return r;
    }
    json_t *hj = json_pack("{s:s,s:s,s:s,s:s,s:s}", "namespace", h.ns, "kind", h.kind, "name",
                           h.name, "context", stk_kubeconfig_context(c->cfg), "server",
                           stk_kubeconfig_server(c->cfg));
    *ret_handle = json_dumps(hj, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(hj);
    return 0;
}

/* How an injected sandbox is: running while its workload carries it. */
static int inject_observe(struct kube_ctx *c, const struct stk_driver_sandbox *sb,
                          const struct handle *h, struct stk_driver_status *ret,
                          struct stk_error **err)
{
    json_t *live = NULL;
    *ret = (struct stk_driver_status){.state = STK_DRV_RUNNING, .exit_code = -1};
    int r = workload_get(c, h, &live, err);
    if (r == -ENOENT) {
        stk_error_free(*err);
        *err = NULL;
        ret->state = STK_DRV_LOST;
        snprintf(ret->message, sizeof(ret->message), "%s %s/%.128s is gone", h->kind, h->ns,
                 h->name);
        return 0;
    }
    if (r < 0)
        return r;
    const char *owner = injected_id(live);
    if (!owner || strcmp(owner, sb->id)) {
        ret->state = STK_DRV_ENDED;
        snprintf(ret->message, sizeof(ret->message), "ejected from %s %s/%.128s", h->kind, h->ns,
                 h->name);
    }
    json_decref(live);
    return 0;
}

/* supervise of an injected sandbox: its replicas come and go with the
 * workload; it ends when it is ejected (stop, rm) or the workload goes. */
static int inject_supervise(struct kube_ctx *c, const struct stk_driver_sandbox *sb,
                            const struct handle *h, const struct stk_driver_sink *sink,
                            struct stk_driver_status *ret, struct stk_error **err)
{
    bool killed = false;
    for (unsigned tick = 0;; tick++) {
        int64_t ago = 0;
        enum stk_driver_ask ask = sink->poll ? sink->poll(sink->ud, &ago, NULL) : STK_DRV_ASK_NONE;
        if (ask == STK_DRV_ASK_KILL && !killed) {
            killed = true;
            int r = eject(c, h, sb->id, err);
            if (r < 0)
                return r;
            tick = 0;
        }
        if (tick % (SUPERVISE_TICK_MS / 200) == 0) {
            struct stk_error *oerr = NULL;
            int r = inject_observe(c, sb, h, ret, &oerr);
            stk_error_free(oerr);
            if (r >= 0 && ret->state != STK_DRV_RUNNING)
                return 0;
        }
        usleep(200 * 1000);
    }
}

/* The live instances of an injected sandbox: one per replica Pod that
 * carries it. */
static int kube_replicas(void *ud, const struct stk_driver_sandbox *sb, char **ret,
                         struct stk_error **err)
{
    struct kube_ctx *c = ud;
    struct handle h;
    json_t *list = NULL;
    const json_t *newest = NULL;
    *ret = NULL;
    if (handle_parse(c, sb, &h, NULL) < 0 || !h.injected)
        return 0;
    int r = sandbox_pods(c, sb, &h, &list, &newest, err);
    if (r < 0)
        return r;
    json_t *out = json_array();
    size_t i;
    const json_t *p;
    json_array_foreach(json_object_get(list, "items"), i, p)
    {
        if (jstr(p, "metadata.deletionTimestamp"))
            continue; /* on its way out */
        const json_t *cs = sandbox_container_status(p);
        bool running = json_object_get(json_object_get(cs, "state"), "running") != NULL;
        json_array_append_new(out, json_pack("{s:s,s:s,s:s,s:b}", "pod", jstr(p, "metadata.name"),
                                             "phase", jstr(p, "status.phase") ?: "Unknown", "node",
                                             jstr(p, "spec.nodeName") ?: "", "running", running));
    }
    json_decref(list);
    *ret = json_dumps(out, JSON_COMPACT);
    json_decref(out);
    return 0;
}

static int claim_provision(struct kube_ctx *c, const struct stk_driver_sandbox *sb, bool restart,
                           char **ret_handle, struct stk_error **err);

static int kube_provision(void *ud, const struct stk_driver_sandbox *sb, bool restart,
                          char **ret_handle, struct stk_error **err)
{
    struct kube_ctx *c = ud;
    struct stk_driver_facts facts = {0};
    int r = kube_facts(c, sb->b, &facts, err);
    if (r < 0 || (r = need_store(c, err)) < 0)
        return r;
    if (sb->b->model == STK_MODEL_INJECTION) {
        if (sb->pool_member || sb->pool)
            return stk_error_make(err, STK_DRV_E_NOTSUP,
                                  "sandbox %s: an injected sandbox runs in its workload's "
                                  "replicas; it cannot be a warm pool's member",
                                  sb->id);
        return inject_provision(c, sb, ret_handle, err);
    }
    struct handle ph;
    if (agents_claim(sb) || (restart && handle_parse(c, sb, &ph, NULL) >= 0 && ph.claim[0]))
        return claim_provision(c, sb, restart, ret_handle, err);
    char nsbuf[64];
    const char *ns = sandbox_namespace(sb, nsbuf, sizeof(nsbuf));
    char pinned[STK_IMAGE_REF_MAX + 112], digest[72];
    if ((r = pinned_image(c, sb->b, pinned, sizeof(pinned), digest, err)) < 0)
        return r;
    struct stk_k8s_options opt = {.sandbox_id = sb->id,
                                  .store = c->store,
                                  .sandbox_name = sb->name,
                                  .namespace = ns,
                                  .image = pinned[0] ? pinned : NULL};
    json_t *objs = NULL;
    if ((r = stk_k8s_render(sb->b, &opt, &objs, err)) < 0)
        return r;
    if ((r = namespace_check(c, ns, sb->id, err)) < 0) {
        json_decref(objs);
        return r;
    }
    size_t i, applied = 0;
    json_t *o;
    const json_t *workload = NULL;
    json_array_foreach(objs, i, o)
    {
        const char *kind = jstr(o, "kind");
        bool is_workload = !strcmp(kind, "Pod") || !strcmp(kind, "Job");
        if (is_workload)
            workload = o;
        /* an unclaimed member: what its claim's JSON patch tests */
        if (is_workload && sb->pool_member && !restart)
            json_object_set_new(json_object_get(json_object_get(o, "metadata"), "labels"),
                                CLAIMED_LABEL, json_string("false"));
        /* a restart re-creates what a stop removed and leaves what
         * persisted alone: an update of a NetworkPolicy is for stockade's
         * in-cluster identity only (the admission guard) */
        if (restart && !is_workload && exists(c, o))
            continue;
        if (is_workload)
            stk_fault_point("kube-before-workload");
        if ((r = stk_kube_apply(c->k, o, NULL, err)) < 0)
            break;
        applied++;
    }
    if (r >= 0 && !workload)
        r = stk_error_make(err, EINVAL, "render made no Pod or Job for sandbox %s", sb->id);
    if (r >= 0 && !sb->accepted_only)
        r = wait_ready(c, sb->b, ns, sb->id, err);
    if (r < 0) {
        /* nothing half-applied: what this create made goes (a restart
         * keeps what persisted: only the workload goes) */
        struct stk_driver_sandbox undo = *sb;
        undo.handle = NULL;
        struct stk_error *uerr = NULL;
        if (kube_teardown(c, &undo, !restart, &uerr) < 0)
            error_append(err, "; removing what this %s applied failed too: %s",
                         restart ? "start" : "create", uerr ? uerr->msg : "?");
        else if (applied)
            error_append(err, "; removed what this %s applied (%zu object%s)",
                         restart ? "start (its workload)" : "create", applied,
                         applied == 1 ? "" : "s");
        stk_error_free(uerr);
        json_decref(objs);
        return r;
    }
    json_t *h = json_pack("{s:s,s:s,s:s,s:s,s:s}", "namespace", ns, "kind", jstr(workload, "kind"),
                          "name", jstr(workload, "metadata.name"), "context",
                          stk_kubeconfig_context(c->cfg), "server", stk_kubeconfig_server(c->cfg));
    *ret_handle = json_dumps(h, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(h);
    json_decref(objs);
    return 0;
}

/* A claimed warm member: its Pod has run the pool template's command since
 * it was made (a Pod's command is fixed, and the claim's fingerprint, which
 * the session checked, includes it), so the claim is a relabelling. One
 * JSON patch: a `test` that the Pod is still unclaimed (the label its
 * provision set to "false"), then the claimer's labels; the API server
 * applies it to the current object or not at all, so of two claims on one
 * Pod, across any number of stockade processes, exactly one wins. A Pod
 * without the label (made by an older stockade) is claimed the old way:
 * read, then a merge patch under its resourceVersion. */
static int start_by_list(struct kube_ctx *c, const struct stk_driver_sandbox *sb,
                         struct stk_error **err)
{
    struct handle h;
    json_t *list = NULL;
    const json_t *pod = NULL;
    int r = sandbox_pods(c, sb, &h, &list, &pod, err);
    if (r < 0)
        return r;
    const json_t *labels = json_object_get(json_object_get(pod, "metadata"), "labels");
    const char *claimed = json_string_value(json_object_get(labels, CLAIMED_LABEL));
    if (!pod) {
        r = stk_error_make(err, STK_DRV_E_GONE, "sandbox %s: no Pod in %s", sb->id, h.ns);
    } else if (claimed && strcmp(claimed, "false")) {
        r = stk_error_make(err, STK_DRV_E_TRANSIENT, "sandbox %s: its Pod was claimed already",
                           sb->id);
    } else {
        struct stk_kube_ref ref = {"v1", "Pod", h.ns, jstr(pod, "metadata.name")};
        json_t *patch =
            json_pack("{s:{s:s, s:{s:s, s:s}}}", "metadata", "resourceVersion",
                      jstr(pod, "metadata.resourceVersion"), "labels", STK_K8S_SANDBOX_LABEL,
                      sb->name ? sb->name : sb->id, CLAIMED_LABEL, "true");
        r = stk_kube_patch(c->k, &ref, "application/merge-patch+json", patch, NULL, err);
        json_decref(patch);
    }
    json_decref(list);
    return r;
}

static int kube_start(void *ud, const struct stk_driver_sandbox *sb, char **ret_handle,
                      struct stk_error **err)
{
    *ret_handle = NULL; /* the same namespace and Pod */
    struct kube_ctx *c = ud;
    struct handle h;
    int r = handle_parse(c, sb, &h, err);
    if (r < 0)
        return r;
    if (strcmp(h.kind, "Pod"))
        return start_by_list(c, sb, err);
    struct stk_kube_ref ref = {"v1", "Pod", h.ns, h.name};
    json_t *patch =
        json_pack("[{s:s, s:s, s:s}, {s:s, s:s, s:s}, {s:s, s:s, s:s}]", "op", "test", "path",
                  CLAIMED_LABEL_PATH, "value", "false", "op", "replace", "path", CLAIMED_LABEL_PATH,
                  "value", "true", "op", "add", "path", "/metadata/labels/stockade.dev~1sandbox",
                  "value", sb->name ? sb->name : sb->id);
    struct stk_error *perr = NULL;
    r = stk_kube_patch(c->k, &ref, "application/json-patch+json", patch, NULL, &perr);
    json_decref(patch);
    if (r >= 0)
        return 0;
    if (r == -ENOENT) {
        stk_error_free(perr);
        return stk_error_make(err, STK_DRV_E_GONE, "sandbox %s: no Pod %s in %s", sb->id, h.name,
                              h.ns);
    }
    if (r != -EINVAL) {
        *err = perr;
        return r;
    }
    /* the test failed: claimed already, or a Pod without the label */
    stk_error_free(perr);
    return start_by_list(c, sb, err);
}

/* ---- exec --------------------------------------------------------------------------- */

/* The running Pod of the sandbox and the sandbox's container in it. An
 * injected sandbox has one per replica: `replica` names it (it must carry
 * this sandbox), or the sandbox must have exactly one running. */
struct target_pod {
    char ns[64], pod[254], container[64];
};

static int running_pod(struct kube_ctx *c, const struct stk_driver_sandbox *sb, const char *replica,
                       struct target_pod *ret, struct stk_error **err)
{
    struct handle h;
    json_t *list = NULL;
    const json_t *p = NULL;
    int r = sandbox_pods(c, sb, &h, &list, &p, err);
    if (r < 0)
        return r;
    if (replica && !h.injected) {
        json_decref(list);
        return stk_error_make(err, STK_DRV_E_NOTSUP,
                              "sandbox %s is not injected into a workload: it has one instance, "
                              "no replicas to choose from",
                              sb->id);
    }
    if (h.injected) {
        /* the running replicas, by name */
        struct stk_buf names = {0};
        size_t n_running = 0, i;
        const json_t *q, *chosen = NULL;
        json_array_foreach(json_object_get(list, "items"), i, q)
        {
            struct stk_driver_status qs;
            pod_status(q, &qs);
            const json_t *cs = sandbox_container_status(q);
            bool running = qs.state == STK_DRV_RUNNING && !jstr(q, "metadata.deletionTimestamp") &&
                           json_object_get(json_object_get(cs, "state"), "running");
            const char *name = jstr(q, "metadata.name") ?: "";
            if (!running)
                continue;
            stk_buf_printf(&names, "%s%s", n_running++ ? ", " : "", name);
            if (!chosen && (!replica || !strcmp(name, replica)))
                chosen = q;
        }
        if (replica && !chosen) {
            r = stk_error_make(err, STK_DRV_E_GONE,
                               "sandbox %s: %s is not a running replica of %s %s/%s that carries "
                               "it (running: %s)",
                               sb->id, replica, h.kind, h.ns, h.name,
                               names.len ? names.data : "none");
        } else if (!replica && n_running != 1) {
            r = stk_error_make(err, n_running ? EINVAL : STK_DRV_E_PHASE,
                               "sandbox %s runs in %zu replicas of %s %s/%s%s%s%s", sb->id,
                               n_running, h.kind, h.ns, h.name,
                               n_running ? ": choose one with --replica POD (" : "",
                               n_running ? names.data : "", n_running ? ")" : "");
        } else {
            p = chosen;
        }
        stk_buf_free(&names);
        if (r < 0) {
            json_decref(list);
            return r;
        }
    }
    struct stk_driver_status st = {0};
    if (p)
        pod_status(p, &st);
    if (!p || st.state != STK_DRV_RUNNING) {
        r = stk_error_make(err, p ? STK_DRV_E_PHASE : STK_DRV_E_GONE,
                           "sandbox %s: %s in namespace %s", sb->id,
                           p ? "its Pod is not running" : "no Pod", h.ns);
    } else {
        snprintf(ret->ns, sizeof(ret->ns), "%s", h.ns);
        snprintf(ret->pod, sizeof(ret->pod), "%s", jstr(p, "metadata.name"));
        snprintf(ret->container, sizeof(ret->container), "%s", sandbox_container(p));
    }
    json_decref(list);
    return r;
}

static int kube_exec(void *ud, const struct stk_driver_sandbox *sb,
                     const struct stk_init_proc *proc, int in_fd, int out_fd, int err_fd,
                     int *ret_code, struct stk_error **err)
{
    struct kube_ctx *c = ud;
    struct target_pod t;
    int r = running_pod(c, sb, proc->replica, &t, err);
    if (r < 0)
        return r;
    if (proc->cwd)
        return stk_error_make(err, STK_DRV_E_NOTSUP,
                              "exec -w: pods/exec has no working directory; run `sh -c 'cd DIR "
                              "&& ...'` instead");
    /* pods/exec takes no environment: what the caller adds goes through
     * env(1) from the image; STOCKADE_SANDBOX is in the Pod's own, except
     * for a claimed pool member, whose Pod was made with the member's name */
    bool claimed = sb->pool && sb->pool[0];
    _cleanup_free_ char *name_env =
        claimed ? stk_xasprintf("STOCKADE_SANDBOX=%s", sb->name ? sb->name : sb->id) : NULL;
    const char **argv = stk_xcalloc(proc->argc + proc->n_env + 3, sizeof(*argv));
    size_t n = 0;
    argv[n++] = "env";
    if (name_env)
        argv[n++] = name_env;
    for (size_t i = 0; i < proc->n_env; i++)
        if (strncmp(proc->env[i], "STOCKADE_SANDBOX=", 17))
            argv[n++] = proc->env[i];
    if (n == 1)
        n = 0; /* nothing to set: no env(1) needed */
    for (size_t i = 0; i < proc->argc; i++)
        argv[n++] = proc->argv[i];
    struct stk_kube_exec_req req = {.namespace = t.ns,
                                    .pod = t.pod,
                                    .container = t.container,
                                    .argv = argv,
                                    .argc = n,
                                    .tty = proc->tty,
                                    .in_fd = in_fd,
                                    .out_fd = out_fd,
                                    .err_fd = err_fd};
    r = stk_kube_exec(c->k, &req, ret_code, err);
    free(argv);
    return r;
}

/* ---- ports and files ------------------------------------------------------------------ */

static int kube_connect(void *ud, const struct stk_driver_sandbox *sb, uint16_t port, int *ret_fd,
                        struct stk_error **err)
{
    struct kube_ctx *c = ud;
    struct target_pod t;
    int r = running_pod(c, sb, NULL, &t, err);
    return r < 0 ? r : stk_kube_port_connect(c->k, t.ns, t.pod, port, ret_fd, err);
}

/*
 * cp has no supervisor of stockade's to ask in a Pod: a file moves through
 * pods/exec, by fixed programs of the image (cat; dd, chmod, mv -T) with
 * the path as one argv element, no shell. They run as the sandbox's own
 * container: its user, its mount namespace, its root. So a path resolves
 * as the workload would resolve it, symbolic links followed, and reaches
 * nothing the workload could not reach itself (never the node's files).
 * Bounded: 16 MiB of content, KUBE_CP_TIMEOUT_S per program.
 */
#define KUBE_CP_TIMEOUT_S 60
#define KUBE_CP_ERR_MAX   4096

/* Runs argv in the sandbox's container; a non-zero exit becomes an error
 * from what it said on stderr. */
static int cp_exec(struct kube_ctx *c, const struct target_pod *t, const char *sbid,
                   const char *path, const char *const *argv, size_t argc, int in_fd, int out_fd,
                   uint64_t out_max, struct stk_error **err)
{
    _cleanup_close_ int efd = memfd_create("stockade-cp-err", MFD_CLOEXEC);
    if (efd < 0)
        return stk_error_errno(err, errno, "cp: memfd");
    struct stk_kube_exec_req req = {.namespace = t->ns,
                                    .pod = t->pod,
                                    .container = t->container,
                                    .argv = argv,
                                    .argc = argc,
                                    .in_fd = in_fd,
                                    .out_fd = out_fd,
                                    .err_fd = efd,
                                    .out_max = out_max + KUBE_CP_ERR_MAX,
                                    .timeout_s = KUBE_CP_TIMEOUT_S,
                                    /* stdin is read by count (dd count_bytes) */
                                    .keep_stdin_open = in_fd >= 0};
    int code = -1;
    int r = stk_kube_exec(c->k, &req, &code, err);
    if (r < 0)
        return r;
    if (code == 0)
        return 0;
    char msg[KUBE_CP_ERR_MAX + 1];
    ssize_t n = pread(efd, msg, KUBE_CP_ERR_MAX, 0);
    msg[n > 0 ? n : 0] = '\0';
    msg[strcspn(msg, "\n")] = '\0';
    int e = EIO;
    if (code == 126 || code == 127 || strstr(msg, "executable file not found"))
        return stk_error_make(err, STK_DRV_E_NOTSUP,
                              "sandbox %s: cp on the kubernetes backend runs %s in the sandbox's "
                              "image, which has none (%s)",
                              sbid, argv[0], msg);
    if (strstr(msg, "No such file or directory"))
        e = STK_DRV_E_NOFILE;
    else if (strstr(msg, "Read-only file system"))
        e = EROFS;
    else if (strstr(msg, "Permission denied"))
        e = EACCES;
    else if (strstr(msg, "Is a directory") || strstr(msg, "is a directory"))
        e = EISDIR;
    else if (strstr(msg, "No space left"))
        e = ENOSPC;
    return stk_error_make(err, e, "sandbox %s: %s: %s exited %d%s%s", sbid, path, argv[0], code,
                          msg[0] ? ": " : "", msg);
}

static int kube_file_read(void *ud, const struct stk_driver_sandbox *sb, const char *path,
                          stk_init_data_fn cb, void *cbud, uint64_t *ret_size,
                          struct stk_error **err)
{
    struct kube_ctx *c = ud;
    struct target_pod t;
    int r = running_pod(c, sb, NULL, &t, err);
    if (r < 0)
        return r;
    _cleanup_close_ int ofd = memfd_create("stockade-cp-out", MFD_CLOEXEC);
    if (ofd < 0)
        return stk_error_errno(err, errno, "cp: memfd");
    const char *argv[] = {"cat", "--", path};
    r = cp_exec(c, &t, sb->id, path, argv, 3, -1, ofd, STK_INIT_FILE_MAX, err);
    if (r < 0)
        return r;
    struct stat st;
    if (fstat(ofd, &st) < 0)
        return stk_error_errno(err, errno, "cp: memfd");
    if ((uint64_t)st.st_size > STK_INIT_FILE_MAX)
        return stk_error_make(err, EFBIG, "sandbox %s: %s is larger than the limit of 16 MiB",
                              sb->id, path);
    char buf[65536];
    for (off_t off = 0; off < st.st_size;) {
        ssize_t n = pread(ofd, buf, sizeof(buf), off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return stk_error_errno(err, n < 0 ? errno : EIO, "cp: memfd");
        if ((r = cb(cbud, buf, (size_t)n)) < 0)
            return stk_error_make(err, -r, "sandbox %s: %s: %s", sb->id, path, strerror(-r));
        off += n;
    }
    if (ret_size)
        *ret_size = (uint64_t)st.st_size;
    return 0;
}

/* Exactly size bytes of in_fd into a memfd (stdin of dd, whose end is the
 * end of the content). */
static int cp_hold(int in_fd, uint64_t size, int *ret_fd, struct stk_error **err)
{
    _cleanup_close_ int fd = memfd_create("stockade-cp-in", MFD_CLOEXEC);
    if (fd < 0)
        return stk_error_errno(err, errno, "cp: memfd");
    char buf[65536];
    for (uint64_t got = 0; got < size;) {
        size_t want = size - got < sizeof(buf) ? (size_t)(size - got) : sizeof(buf);
        ssize_t n = read(in_fd, buf, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return stk_error_make(err, EIO, "cp: the content ended after %llu of %llu bytes",
                                  (unsigned long long)got, (unsigned long long)size);
        for (ssize_t w = 0; w < n;) {
            ssize_t k = write(fd, buf + w, (size_t)(n - w));
            if (k < 0 && errno == EINTR)
                continue;
            if (k < 0)
                return stk_error_errno(err, errno, "cp: memfd");
            w += k;
        }
        got += (uint64_t)n;
    }
    if (lseek(fd, 0, SEEK_SET) < 0)
        return stk_error_errno(err, errno, "cp: memfd");
    *ret_fd = fd;
    fd = -1;
    return 0;
}

static int kube_file_write(void *ud, const struct stk_driver_sandbox *sb, const char *path,
                           unsigned mode, uint64_t size, int in_fd, struct stk_error **err)
{
    struct kube_ctx *c = ud;
    size_t len = strlen(path);
    if (len == 0 || path[len - 1] == '/')
        return stk_error_make(err, EISDIR, "sandbox %s: %s names a directory", sb->id, path);
    if (size > STK_INIT_FILE_MAX)
        return stk_error_make(err, EFBIG, "sandbox %s: %s: larger than the limit of 16 MiB", sb->id,
                              path);
    struct target_pod t;
    int r = running_pod(c, sb, NULL, &t, err);
    if (r < 0)
        return r;
    _cleanup_close_ int hfd = -1;
    if ((r = cp_hold(in_fd, size, &hfd, err)) < 0)
        return r;
    /* a new file beside it, renamed over it at the end: a failed transfer
     * leaves the old content */
    unsigned char rnd[6];
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        return stk_error_make(err, EIO, "cp: no random bytes");
    _cleanup_free_ char *tmp = stk_xasprintf("%s.stockade-cp-%02x%02x%02x%02x%02x%02x", path,
                                             rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
    _cleanup_free_ char *of = stk_xasprintf("of=%s", tmp);
    _cleanup_free_ char *count = stk_xasprintf("count=%llu", (unsigned long long)size);
    char modestr[8];
    snprintf(modestr, sizeof(modestr), "%o", mode & 0777);
    /* dd stops after size bytes: the end of stdin is never waited for */
    const char *dd[] = {"dd", of, "bs=65536", count, "iflag=count_bytes,fullblock"};
    const char *wc[] = {"wc", "-c", "--", tmp};
    const char *chmod[] = {"chmod", modestr, "--", tmp};
    const char *mv[] = {"mv", "-f", "-T", "--", tmp, path};
    _cleanup_close_ int wfd = memfd_create("stockade-cp-wc", MFD_CLOEXEC);
    if (wfd < 0)
        return stk_error_errno(err, errno, "cp: memfd");
    r = cp_exec(c, &t, sb->id, path, dd, 5, hfd, -1, 0, err);
    if (r >= 0) /* what arrived is all of it, or nothing changes */
        r = cp_exec(c, &t, sb->id, path, wc, 4, -1, wfd, 4096, err);
    if (r >= 0) {
        char got[64];
        ssize_t n = pread(wfd, got, sizeof(got) - 1, 0);
        got[n > 0 ? n : 0] = '\0';
        char *end = NULL;
        unsigned long long v = strtoull(got, &end, 10);
        if (end == got || v != size)
            r = stk_error_make(err, EIO, "sandbox %s: %s: %llu of %llu bytes arrived", sb->id, path,
                               end == got ? 0ULL : v, (unsigned long long)size);
    }
    if (r >= 0)
        r = cp_exec(c, &t, sb->id, path, chmod, 4, -1, -1, 0, err);
    if (r >= 0)
        r = cp_exec(c, &t, sb->id, path, mv, 6, -1, -1, 0, err);
    if (r < 0 && r != -STK_DRV_E_NOTSUP) {
        const char *rm[] = {"rm", "-f", "--", tmp};
        (void)cp_exec(c, &t, sb->id, path, rm, 4, -1, -1, 0, NULL);
    }
    return r;
}

/* ---- stop --------------------------------------------------------------------------- */

static int claim_delete(struct kube_ctx *c, const struct handle *h, struct stk_error **err);

static int kube_stop(void *ud, const struct stk_driver_sandbox *sb, int grace_ms,
                     struct stk_error **err)
{
    struct kube_ctx *c = ud;
    struct handle h;
    int r = handle_parse(c, sb, &h, err);
    if (r >= 0 && h.injected)
        return eject(c, &h, sb->id, err) < 0 ? -1 : 0;
    if (r >= 0 && h.claim[0])
        return claim_delete(c, &h, err);
    return r < 0 ? r : delete_workload(c, &h, sb->id, (grace_ms + 999) / 1000, err);
}

/* ---- supervise, observe ------------------------------------------------------------- */

static int kube_observe(void *ud, const struct stk_driver_sandbox *sb,
                        struct stk_driver_status *ret, struct stk_error **err)
{
    struct kube_ctx *c = ud;
    struct handle h;
    json_t *list = NULL;
    const json_t *p = NULL;
    if (handle_parse(c, sb, &h, NULL) >= 0 && h.injected)
        return inject_observe(c, sb, &h, ret, err);
    int r = sandbox_pods(c, sb, &h, &list, &p, err);
    if (r < 0)
        return r;
    if (p) {
        pod_status(p, ret);
    } else {
        *ret = (struct stk_driver_status){.state = STK_DRV_LOST, .exit_code = -1};
        if (!strcmp(h.kind, "Job") && job_deadline_exceeded(c, h.ns, h.name)) {
            ret->state = STK_DRV_ENDED;
            ret->kill = STK_KILL_WALL_CLOCK;
            snprintf(ret->message, sizeof(ret->message), "Job: DeadlineExceeded");
        } else {
            snprintf(ret->message, sizeof(ret->message), "no Pod of the sandbox in %s", h.ns);
        }
    }
    if (ret->state == STK_DRV_ENDED && ret->kill == STK_KILL_NONE && !strcmp(h.kind, "Job") &&
        job_deadline_exceeded(c, h.ns, h.name))
        ret->kill = STK_KILL_WALL_CLOCK;
    json_decref(list);
    return 0;
}

/* The log follower: a thread copying pods/log into a pipe, and one copying
 * the pipe into the sink (stk_kube_logs writes to a descriptor). */
struct follower {
    struct stk_kube *k; /* its own: a client is used by one thread */
    char ns[64], pod[254];
    int64_t since_ms;
    int wfd;
};

static void *follow_thread(void *ud)
{
    struct follower *f = ud;
    struct stk_kube_logs_req req = {.namespace = f->ns,
                                    .pod = f->pod,
                                    .container = CONTAINER,
                                    .follow = true,
                                    .timestamps = true,
                                    .since_ms = f->since_ms,
                                    .tail_lines = -1,
                                    .out_fd = f->wfd};
    (void)stk_kube_logs(f->k, &req, NULL);
    close(f->wfd);
    return NULL;
}

/* What the follower delivered, kept in the sandbox's directory so that a
 * monitor adopting the sandbox (after a crash) continues where the last
 * one stopped instead of delivering the whole log again: pods/log is
 * asked from that second on (sinceTime has a second's resolution) and
 * the lines the stamps say were delivered are dropped. */
struct log_state {
    const struct stk_driver_sink *sink;
    struct stk_kube_log_pos pos;
    struct stk_kube_lines lines;
    char path[PATH_MAX];
    bool moved;
};

static void log_state_init(struct log_state *ls, struct kube_ctx *c, const char *id,
                           const struct stk_driver_sink *sink)
{
    *ls = (struct log_state){.sink = sink};
    if (snprintf(ls->path, sizeof(ls->path), "%s/sandboxes/%s/kube-log-pos", c->state_dir, id) >=
        (int)sizeof(ls->path)) {
        ls->path[0] = '\0';
        return;
    }
    char buf[64];
    if (stk_kube_state_read(ls->path, buf, sizeof(buf)) >= 0 &&
        stk_kube_log_pos_parse(buf, &ls->pos) < 0)
        ls->pos = (struct stk_kube_log_pos){0};
}

static void log_state_save(struct log_state *ls)
{
    if (!ls->moved || !ls->path[0])
        return;
    ls->moved = false;
    char buf[64];
    stk_kube_log_pos_format(&ls->pos, buf);
    stk_kube_state_write(ls->path, buf);
}

static void log_deliver(struct log_state *ls, const char *line, size_t len, bool newline)
{
    const char *text;
    size_t n;
    int r = stk_kube_log_line(&ls->pos, line, len, &text, &n);
    if (r == 0)
        return;
    ls->moved |= r == 1;
    _cleanup_free_ char *out = stk_xmalloc(n + 1);
    memcpy(out, text, n);
    out[n] = '\n';
    (void)ls->sink->output(ls->sink->ud, 1, out, n + (newline ? 1 : 0));
}

static int log_line_fn(void *ud, char *line, size_t len)
{
    log_deliver(ud, line, len, true);
    return 0;
}

/* Copies what the follower's pipe holds (blocking: until it ends). */
static void log_copy(struct log_state *ls, int fd, bool block)
{
    char buf[65536];
    ssize_t n;
    (void)fcntl(fd, F_SETFL, block ? 0 : O_NONBLOCK);
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        if (stk_kube_lines_feed(&ls->lines, buf, (size_t)n, log_line_fn, ls, NULL) < 0) {
            /* a line past the limit: what was held goes as it is */
            log_deliver(ls, stk_buf_str(&ls->lines.buf), ls->lines.buf.len, false);
            ls->lines.buf.len = 0;
        }
    if (block && ls->lines.buf.len) /* the last line, without its newline */
        log_deliver(ls, stk_buf_str(&ls->lines.buf), ls->lines.buf.len, false);
    log_state_save(ls);
}

/* Starts the follower once the sandbox's container has started (pods/log
 * answers from then on). */
static bool follow_start(struct kube_ctx *c, const struct stk_driver_sandbox *sb,
                         struct follower *f, int pfd[2], pthread_t *thread)
{
    struct handle h;
    json_t *list = NULL;
    const json_t *p = NULL;
    if (sandbox_pods(c, sb, &h, &list, &p, NULL) < 0)
        return false;
    const json_t *state = json_object_get(sandbox_container_status(p), "state");
    bool started = json_object_get(state, "running") || json_object_get(state, "terminated");
    if (started) {
        snprintf(f->ns, sizeof(f->ns), "%s", h.ns);
        snprintf(f->pod, sizeof(f->pod), "%s", jstr(p, "metadata.name"));
    }
    json_decref(list);
    if (!started || (!f->k && stk_kube_open(c->cfg, &f->k, NULL) < 0) || pipe2(pfd, O_CLOEXEC) < 0)
        return false;
    f->wfd = pfd[1];
    if (pthread_create(thread, NULL, follow_thread, f) == 0)
        return true;
    close(pfd[0]);
    close(pfd[1]);
    pfd[0] = pfd[1] = -1;
    return false;
}

struct supervision {
    struct kube_ctx *c;
    const struct stk_driver_sink *sink;
    const struct stk_driver_sandbox *sb;
    struct handle h;
    struct stk_driver_status st;
    bool ended, gone, killed;
    char last_phase[32];
};

static int supervise_fn(void *ud, const char *type, const json_t *pod)
{
    struct supervision *s = ud;
    if (!strcmp(type, "DELETED")) {
        s->gone = true;
        return 1;
    }
    if (strcmp(type, "SYNC") && strcmp(type, "ADDED") && strcmp(type, "MODIFIED"))
        return 0;
    const char *phase = jstr(pod, "status.phase");
    if (phase && strcmp(phase, s->last_phase)) {
        /* a lifecycle change of the Pod: an event of the sandbox */
        snprintf(s->last_phase, sizeof(s->last_phase), "%s", phase);
        json_t *d = json_pack("{s:s,s:s,s:s}", "pod", jstr(pod, "metadata.name"), "namespace",
                              s->h.ns, "phase", phase);
        char *dj = json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS);
        if (s->sink->event && dj)
            s->sink->event(s->sink->ud, "pod_phase", dj);
        free(dj);
        json_decref(d);
    }
    pod_status(pod, &s->st);
    /* a container that cannot start (create --wait accepted returned before
     * it would have): the sandbox ends with the cluster's reason */
    const json_t *waiting =
        json_object_get(json_object_get(sandbox_container_status(pod), "state"), "waiting");
    if (s->st.state == STK_DRV_RUNNING && waiting_fatal(jstr(waiting, "reason"))) {
        s->st.state = STK_DRV_ENDED;
        snprintf(s->st.message, sizeof(s->st.message), "%s: %.200s", jstr(waiting, "reason"),
                 jstr(waiting, "message") ?: "");
        json_t *d = json_pack("{s:s,s:s,s:s,s:s}", "pod", jstr(pod, "metadata.name") ?: "",
                              "namespace", s->h.ns, "reason", jstr(waiting, "reason"), "message",
                              jstr(waiting, "message") ?: "");
        char *dj = d ? json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        if (s->sink->event && dj)
            s->sink->event(s->sink->ud, "pod_failed_to_start", dj);
        free(dj);
        json_decref(d);
    }
    if (s->st.state == STK_DRV_ENDED) {
        s->ended = true;
        return 1;
    }
    return 0;
}

/* The egress proxy's decisions, read back from its Pod's log (proxylog.c):
 * audit records of the sandbox, as the local backend's proxy makes them. */
static void on_proxy_record(void *ud, const char *json)
{
    const struct supervision *s = ud;
    s->sink->event(s->sink->ud, "egress_proxy", json);
}

static struct stk_kube_proxy_follower *
proxy_follow(struct kube_ctx *c, const struct stk_driver_sandbox *sb, const char *ns,
             const struct stk_driver_sink *sink, char state[PATH_MAX])
{
    struct stk_kube_proxy_follower *f = NULL;
    if (!sb->b || !stk_k8s_needs_proxy(sb->b) || !sink->event)
        return NULL;
    if (snprintf(state, PATH_MAX, "%s/sandboxes/%s/kube-proxy-log-pos", c->state_dir, sb->id) >=
        PATH_MAX)
        return NULL;
    (void)stk_kube_proxy_follow_start(c->cfg, ns, state, sb->id, sb->b->name, &f, NULL);
    return f;
}

static int kube_supervise(void *ud, const struct stk_driver_sandbox *sb,
                          const struct stk_driver_sink *sink, struct stk_driver_status *ret,
                          struct stk_error **err)
{
    struct kube_ctx *c = ud;
    struct supervision s = {.c = c, .sink = sink, .sb = sb};
    int r = handle_parse(c, sb, &s.h, err);
    if (r < 0)
        return r;
    if (s.h.injected)
        return inject_supervise(c, sb, &s.h, sink, ret, err);
    char sel[128];
    selector(sb->id, sel, sizeof(sel));

    /* the output, while the workload runs */
    struct follower f = {.wfd = -1};
    struct log_state ls;
    log_state_init(&ls, c, sb->id, sink);
    f.since_ms = ls.pos.sec * 1000;
    pthread_t thread;
    bool following = false;
    int pfd[2] = {-1, -1};
    following = sink->output && follow_start(c, sb, &f, pfd, &thread);
    char proxy_state[PATH_MAX];
    struct stk_kube_proxy_follower *proxy = proxy_follow(c, sb, s.h.ns, sink, proxy_state);

    struct stk_kube_ref pods = {"v1", "Pod", s.h.ns, NULL};
    while (!s.ended && !s.gone) {
        /* output copied between looks at the Pod; the follower starts once
         * the container has (create --wait accepted returns before) */
        if (!following && sink->output)
            following = follow_start(c, sb, &f, pfd, &thread);
        if (following)
            log_copy(&ls, pfd[0], false);
        stk_kube_proxy_follow_pump(proxy, on_proxy_record, &s);
        struct stk_error *werr = NULL;
        r = stk_kube_watch(c->k, &pods, sel, NULL, SUPERVISE_TICK_MS, supervise_fn, &s, &werr);
        if (r == -ETIMEDOUT || r >= 0) {
            stk_error_free(werr);
        } else if (r == -ENOENT) {
            stk_error_free(werr);
            s.gone = true;
        } else {
            /* the cluster did not answer: the next look retries */
            stk_error_free(werr);
            sleep(1);
        }
        int64_t ago = 0;
        enum stk_driver_ask ask = sink->poll ? sink->poll(sink->ud, &ago, NULL) : STK_DRV_ASK_NONE;
        if (ask == STK_DRV_ASK_KILL && !s.killed) {
            s.killed = true;
            (void)delete_workload(c, &s.h, sb->id, 0, NULL);
        }
        if (!s.ended && !s.gone) {
            /* the watch saw no Pod at all: it went while we were away */
            json_t *list = NULL;
            if (list_pods(c, s.h.ns, sb->id, &list, NULL) >= 0 &&
                !json_array_size(json_object_get(list, "items")))
                s.gone = true;
            json_decref(list);
        }
    }
    if (!following && sink->output && s.ended)
        following = follow_start(c, sb, &f, pfd, &thread); /* it ran between looks */
    if (following) {
        /* the log stream ends with the container */
        pthread_join(thread, NULL);
        log_copy(&ls, pfd[0], true);
        close(pfd[0]);
    }
    stk_kube_close(f.k);
    stk_kube_lines_free(&ls.lines);
    /* what the proxy decided until now, before the namespace may go */
    stk_kube_proxy_follow_stop(proxy, on_proxy_record, &s);
    if (s.gone)
        return kube_observe(c, sb, ret, err);
    if (!strcmp(s.h.kind, "Job") && s.st.kill == STK_KILL_NONE &&
        job_deadline_exceeded(c, s.h.ns, s.h.name))
        s.st.kill = STK_KILL_WALL_CLOCK;
    *ret = s.st;
    return 0;
}

/* ---- fingerprint ------------------------------------------------------------------ */

/* Everything the cluster would be given for b, but its name: rendered as a
 * sandbox named "x" in namespace "x", without the driver's identity. */
static int kube_fingerprint(void *ud, const struct stk_boundary *b, char ret[65],
                            struct stk_error **err)
{
    (void)ud;
    struct stk_boundary fixed = *b;
    fixed.name = "x";
    struct stk_k8s_options opt = {.namespace = "x"};
    json_t *objs = NULL;
    int r = stk_k8s_render(&fixed, &opt, &objs, err);
    if (r < 0)
        return r;
    char *text = json_dumps(objs, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(objs);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    bool ok = text && EVP_Digest(text, strlen(text), md, &n, EVP_sha256(), NULL) == 1;
    free(text);
    if (!ok)
        return stk_error_make(err, EIO, "sha256 failed");
    for (unsigned i = 0; i < 32; i++)
        snprintf(ret + 2 * i, 3, "%02x", md[i]);
    return 0;
}

/* ---- agents.x-k8s.io warm pools ----------------------------------------------------- */

/*
 * When the cluster serves agents.x-k8s.io's extension API, a warm pool is a
 * SandboxTemplate and a SandboxWarmPool of `size` replicas in a namespace of
 * the pool's own (with the sandbox's policies, quota and account, as render
 * prints them), and its controller keeps the members ready. A claim is a
 * SandboxClaim (named by the sandbox's id) whose additionalPodMetadata puts
 * the sandbox's identity labels on the adopted Pod; create returns once the
 * claim is Ready and that Pod runs. stop deletes the claim (its Pod goes
 * with it); start makes a new claim; rm deletes the claim, and the pool's
 * namespace once the pool is removed and no claim is left in it.
 */

#define AGENTS_MECHANISM "agents.x-k8s.io SandboxWarmPool"

/* "pool-NAME-HASH": per state directory and pool name. */
static void pool_namespace(struct kube_ctx *c, const char *pool, char ns[64])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    _cleanup_free_ char *key = stk_xasprintf("%s/%s", c->store, pool);
    if (EVP_Digest(key, strlen(key), md, &n, EVP_sha256(), NULL) != 1)
        memset(md, 0, 4);
    snprintf(ns, 64, "pool-%.39s-%02x%02x%02x%02x", pool, md[0], md[1], md[2], md[3]);
}

static void pool_label(const char *pool, char id[64])
{
    snprintf(id, 64, "pool.%.39s", pool);
}

static bool kind_is(const json_t *o, const char *kind)
{
    const char *k = jstr(o, "kind");
    return k && !strcmp(k, kind);
}

static int kube_pool_apply(void *ud, const struct stk_driver_pool *p, const char **ret_mechanism,
                           struct stk_error **err)
{
    struct kube_ctx *c = ud;
    *ret_mechanism = NULL;
    int r = need_store(c, err);
    if (r < 0 || (r = stk_kube_has_api(c->k, STK_K8S_AGENTS_API, err)) <= 0)
        return r; /* not served: stockade's own Pods */
    if (p->b->model == STK_MODEL_INJECTION)
        return stk_error_make(err, STK_DRV_E_NOTSUP,
                              "pool %s: an injected sandbox runs in its workload's replicas; it "
                              "cannot be a warm pool",
                              p->name);
    struct stk_driver_facts facts = {0};
    if ((r = kube_facts(c, p->b, &facts, err)) < 0)
        return r;
    char ns[64], id[64];
    pool_namespace(c, p->name, ns);
    pool_label(p->name, id);
    struct stk_k8s_options opt = {.sandbox_id = id,
                                  .store = c->store,
                                  .sandbox_name = p->name,
                                  .namespace = ns,
                                  .agents_pool = p->name,
                                  .agents_replicas = p->size};
    json_t *objs = NULL;
    if ((r = stk_k8s_render(p->b, &opt, &objs, err)) < 0)
        return r;
    if ((r = namespace_check(c, ns, id, err)) < 0) {
        json_decref(objs);
        return r;
    }
    struct stk_kube_ref wp = {STK_K8S_AGENTS_API, "SandboxWarmPool", ns, p->name};
    json_t *live = NULL;
    r = stk_kube_get(c->k, &wp, &live, err);
    json_decref(live);
    if (r >= 0) {
        json_decref(objs);
        return stk_error_make(err, EEXIST,
                              "context %s (%s): SandboxWarmPool %s/%s exists already (this state "
                              "directory's pool of that name, in another tenant); choose another "
                              "pool name",
                              stk_kubeconfig_context(c->cfg), stk_kubeconfig_server(c->cfg), ns,
                              p->name);
    }
    if (r != -ENOENT) {
        json_decref(objs);
        return r;
    }
    stk_error_free(*err);
    *err = NULL;
    size_t i, applied = 0;
    json_t *o;
    r = 0;
    json_array_foreach(objs, i, o)
    {
        if (kind_is(o, "SandboxClaim"))
            continue; /* claims are made by create --pool */
        if ((r = stk_kube_apply(c->k, o, NULL, err)) < 0)
            break;
        applied++;
    }
    json_decref(objs);
    if (r < 0) {
        /* nothing half-applied: the pool's namespace holds all of it */
        struct stk_kube_ref nsref = {"v1", "Namespace", NULL, ns};
        struct stk_error *uerr = NULL;
        if (applied && stk_kube_delete(c->k, &nsref, "Foreground", NULL, &uerr) < 0)
            error_append(err, "; removing what this pool create applied failed too: %s",
                         uerr ? uerr->msg : "?");
        else if (applied)
            error_append(err, "; removed what this pool create applied (namespace %s)", ns);
        stk_error_free(uerr);
        return r;
    }
    *ret_mechanism = AGENTS_MECHANISM;
    return 0;
}

/* The claims left in a pool's namespace. */
static int pool_claims(struct kube_ctx *c, const char *ns, json_t **ret, struct stk_error **err)
{
    struct stk_kube_ref claims = {STK_K8S_AGENTS_API, "SandboxClaim", ns, NULL};
    return stk_kube_list(c->k, &claims, NULL, ret, err);
}

/* Deletes the pool's namespace when its SandboxWarmPool is gone and no
 * claim is left in it (what a claimed sandbox runs in stays). */
static int pool_namespace_release(struct kube_ctx *c, const char *ns, const char *pool,
                                  struct stk_error **err)
{
    struct stk_kube_ref wp = {STK_K8S_AGENTS_API, "SandboxWarmPool", ns, pool};
    json_t *live = NULL, *list = NULL;
    int r = stk_kube_get(c->k, &wp, &live, NULL);
    bool pool_left = r >= 0 && !jstr(live, "metadata.deletionTimestamp");
    json_decref(live);
    if (pool_left)
        return 0;
    if ((r = pool_claims(c, ns, &list, err)) < 0)
        return r == -ENOENT ? 0 : r;
    /* claims being deleted (foreground: until their Pods are gone) do not
     * hold the namespace */
    size_t n = 0, i;
    const json_t *claim;
    json_array_foreach(json_object_get(list, "items"), i, claim) n +=
        !jstr(claim, "metadata.deletionTimestamp");
    json_decref(list);
    if (n)
        return 0;
    char id[64], sel[128];
    pool_label(pool, id);
    selector(id, sel, sizeof(sel));
    struct stk_kube_ref nsref = {"v1", "Namespace", NULL, ns};
    if ((r = stk_kube_delete(c->k, &nsref, "Foreground", NULL, err)) < 0 && r != -EAGAIN)
        return r;
    struct stk_kube_ref all = {"v1", "Namespace", NULL, NULL};
    return wait_gone(c, &all, sel, NULL, err);
}

static int kube_pool_delete(void *ud, const struct stk_driver_pool *p, struct stk_error **err)
{
    struct kube_ctx *c = ud;
    int r = need_store(c, err);
    if (r < 0)
        return r;
    char ns[64];
    pool_namespace(c, p->name, ns);
    /* the pool and its template: its unclaimed members go with them
     * (owner references); claimed ones belong to their claims */
    static const char *const kinds[] = {"SandboxWarmPool", "SandboxTemplate"};
    for (size_t i = 0; i < STK_ARRAY_SIZE(kinds); i++) {
        struct stk_kube_ref ref = {STK_K8S_AGENTS_API, kinds[i], ns, p->name};
        if ((r = stk_kube_delete(c->k, &ref, "Foreground", NULL, err)) < 0 && r != -EAGAIN)
            return r;
    }
    return pool_namespace_release(c, ns, p->name, err);
}

struct bound_wait {
    bool failed;
    char message[512];
};

/* Until the claim's Ready condition is True. */
static int bound_fn(void *ud, const char *type, const json_t *claim)
{
    struct bound_wait *w = ud;
    if (!strcmp(type, "DELETED")) {
        snprintf(w->message, sizeof(w->message), "the SandboxClaim was deleted");
        w->failed = true;
        return 2;
    }
    if (strcmp(type, "SYNC") && strcmp(type, "ADDED") && strcmp(type, "MODIFIED"))
        return 0;
    size_t i;
    const json_t *cond;
    json_array_foreach(json_object_get(json_object_get(claim, "status"), "conditions"), i, cond)
    {
        const char *t = jstr(cond, "type"), *s = jstr(cond, "status");
        if (!t || strcmp(t, "Ready") || !s)
            continue;
        if (!strcmp(s, "True"))
            return 1;
        snprintf(w->message, sizeof(w->message), "%s: %s", jstr(cond, "reason") ?: "not ready",
                 jstr(cond, "message") ?: "");
        if (jstr(cond, "reason") && !strcmp(jstr(cond, "reason"), "ClaimExpired")) {
            w->failed = true;
            return 2;
        }
    }
    return 0;
}

static int claim_wait(struct kube_ctx *c, const char *ns, const char *name, struct stk_error **err)
{
    struct stk_kube_ref claims = {STK_K8S_AGENTS_API, "SandboxClaim", ns, NULL};
    char field[128];
    snprintf(field, sizeof(field), "metadata.name=%s", name);
    struct bound_wait w = {0};
    int r = stk_kube_watch(c->k, &claims, NULL, field, READY_TIMEOUT_MS, bound_fn, &w, err);
    if (r == -ETIMEDOUT) {
        stk_error_free(*err);
        *err = NULL;
        return stk_error_make(err, ETIMEDOUT,
                              "SandboxClaim %s/%s was not Ready within %d s (%s); is the "
                              "agent-sandbox controller running?",
                              ns, name, READY_TIMEOUT_MS / 1000,
                              w.message[0] ? w.message : "no status yet");
    }
    if (w.failed)
        return stk_error_make(err, EIO, "SandboxClaim %s/%s: %s", ns, name, w.message);
    return r < 0 ? r : 0;
}

static int claim_delete(struct kube_ctx *c, const struct handle *h, struct stk_error **err)
{
    struct stk_kube_ref ref = {STK_K8S_AGENTS_API, "SandboxClaim", h->ns, h->claim};
    int r = stk_kube_delete(c->k, &ref, "Foreground", NULL, err);
    return r < 0 && r != -EAGAIN ? r : 0;
}

static int claim_teardown(struct kube_ctx *c, const struct stk_driver_sandbox *sb,
                          const struct handle *h, bool purge, struct stk_error **err)
{
    char sel[128];
    selector(sb->id, sel, sizeof(sel));
    struct stk_kube_ref pods = {"v1", "Pod", h->ns, NULL};
    int r = claim_delete(c, h, err);
    if (r >= 0)
        r = wait_gone(c, &pods, sel, NULL, err);
    if (r >= 0 && purge && sb->pool && sb->pool[0])
        r = pool_namespace_release(c, h->ns, sb->pool, err);
    return r;
}

static int claim_provision(struct kube_ctx *c, const struct stk_driver_sandbox *sb, bool restart,
                           char **ret_handle, struct stk_error **err)
{
    char ns[64];
    pool_namespace(c, sb->pool, ns);
    struct stk_k8s_options opt = {.sandbox_id = sb->id,
                                  .store = c->store,
                                  .sandbox_name = sb->name,
                                  .namespace = ns,
                                  .agents_pool = sb->pool,
                                  .agents_replicas = 1};
    json_t *objs = NULL;
    int r = stk_k8s_render(sb->b, &opt, &objs, err);
    if (r < 0)
        return r;
    size_t i;
    json_t *o, *claim = NULL;
    json_array_foreach(objs, i, o) if (kind_is(o, "SandboxClaim")) claim = o;
    /* named by the id (names repeat across tenants; ids do not); the
     * adopted Pod carries the sandbox's identity, so every operation finds
     * it by label as any sandbox's */
    json_t *meta = json_object_get(claim, "metadata");
    json_object_set_new(meta, "name", json_string(sb->id));
    json_t *labels =
        json_pack("{s:s, s:s, s:s}", STK_K8S_SANDBOX_ID_LABEL, sb->id, STK_K8S_STORE_LABEL,
                  c->store, STK_K8S_SANDBOX_LABEL, sb->name ? sb->name : sb->id);
    json_object_set_new(json_object_get(claim, "spec"), "additionalPodMetadata",
                        json_pack("{s:o}", "labels", labels));
    struct handle h = {.kind = "Pod"};
    snprintf(h.ns, sizeof(h.ns), "%s", ns);
    snprintf(h.name, sizeof(h.name), "%s", sb->id);
    snprintf(h.claim, sizeof(h.claim), "%s", sb->id);
    bool applied = false;
    r = stk_kube_apply(c->k, claim, NULL, err);
    json_decref(objs);
    if (r >= 0) {
        applied = true;
        r = claim_wait(c, ns, sb->id, err);
    }
    if (r >= 0)
        r = wait_running(c, ns, sb->id, READY_TIMEOUT_MS, err);
    if (r < 0) {
        /* nothing half-applied: the claim goes, and the member with it */
        struct stk_error *uerr = NULL;
        if (applied && claim_delete(c, &h, &uerr) < 0)
            error_append(err, "; removing the SandboxClaim this %s made failed too: %s",
                         restart ? "start" : "create", uerr ? uerr->msg : "?");
        else if (applied)
            error_append(err, "; removed the SandboxClaim this %s made",
                         restart ? "start" : "create");
        stk_error_free(uerr);
        return r;
    }
    json_t *hj = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "namespace", ns, "kind", "Pod", "name",
                           sb->id, "claim", sb->id, "context", stk_kubeconfig_context(c->cfg),
                           "server", stk_kubeconfig_server(c->cfg));
    *ret_handle = json_dumps(hj, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(hj);
    return 0;
}

/* ---- gc ----------------------------------------------------------------------------- */

/* Whether a claim in ns belongs to a live record (or cannot be listed). */
static bool pool_claimed(struct kube_ctx *c, const char *ns, const char *const *keep, size_t n_keep)
{
    json_t *list = NULL;
    if (pool_claims(c, ns, &list, NULL) < 0)
        return true;
    bool hit = false;
    size_t i;
    const json_t *claim;
    json_array_foreach(json_object_get(list, "items"), i, claim)
    {
        const json_t *labels = json_object_get(json_object_get(claim, "metadata"), "labels");
        const char *id = json_string_value(json_object_get(labels, STK_K8S_SANDBOX_ID_LABEL));
        for (size_t k = 0; id && k < n_keep; k++)
            hit |= !strcmp(keep[k], id);
    }
    json_decref(list);
    return hit;
}

static int kube_gc(void *ud, const char *const *keep, size_t n_keep, size_t *ret_removed,
                   struct stk_error **err)
{
    struct kube_ctx *c = ud;
    int r = need_store(c, err);
    if (r < 0)
        return r;
    char sel[160];
    snprintf(sel, sizeof(sel), "%s=%s,%s=%s", STK_K8S_MANAGED_BY_LABEL, STK_K8S_MANAGED_BY,
             STK_K8S_STORE_LABEL, c->store);
    struct stk_kube_ref nsref = {"v1", "Namespace", NULL, NULL};
    json_t *list = NULL;
    if ((r = stk_kube_list(c->k, &nsref, sel, &list, err)) < 0)
        return r;
    size_t removed = 0, i;
    json_t *ns;
    json_array_foreach(json_object_get(list, "items"), i, ns)
    {
        const json_t *labels = json_object_get(json_object_get(ns, "metadata"), "labels");
        const char *id = json_string_value(json_object_get(labels, STK_K8S_SANDBOX_ID_LABEL));
        bool kept = false;
        for (size_t k = 0; id && k < n_keep; k++)
            kept |= !strcmp(keep[k], id);
        const char *phase = jstr(ns, "status.phase");
        if (!id || kept || (phase && !strcmp(phase, "Terminating")))
            continue;
        if (!strncmp(id, "pool.", 5) && pool_claimed(c, jstr(ns, "metadata.name"), keep, n_keep))
            continue; /* a removed pool's namespace, still running claimed sandboxes */
        struct stk_kube_ref one = {"v1", "Namespace", NULL, jstr(ns, "metadata.name")};
        if ((r = stk_kube_delete(c->k, &one, "Foreground", jstr(ns, "metadata.uid"), err)) < 0 &&
            r != -EAGAIN)
            break;
        removed += r > 0;
        r = 0;
    }
    json_decref(list);
    /* the proxy's Roles and RoleBindings in other namespaces */
    if (r < 0 || (r = delete_outside(c, NULL, keep, n_keep, &removed, err)) < 0)
        return r;
    /* injections left behind: a workload labelled with this store whose
     * sandbox has no record (a create cut short after its apply, a store
     * restored from a backup). The empty apply of eject removes exactly
     * the fields stockade owns; eject checks the workload still carries
     * that id. */
    for (int kind = 0; kind < _STK_WORKLOAD_N && r >= 0; kind++) {
        struct stk_kube_ref wref = {"apps/v1", stk_workload_kind_names[kind], NULL, NULL};
        if ((r = stk_kube_list(c->k, &wref, sel, &list, err)) < 0)
            break;
        json_t *w;
        json_array_foreach(json_object_get(list, "items"), i, w)
        {
            const char *id = injected_id(w);
            bool kept = false;
            for (size_t k = 0; id && k < n_keep; k++)
                kept |= !strcmp(keep[k], id);
            if (!id || kept)
                continue;
            struct handle h = {.injected = true};
            snprintf(h.ns, sizeof(h.ns), "%s", jstr(w, "metadata.namespace") ?: "");
            snprintf(h.kind, sizeof(h.kind), "%s", stk_workload_kind_names[kind]);
            snprintf(h.name, sizeof(h.name), "%s", jstr(w, "metadata.name") ?: "");
            if ((r = eject(c, &h, id, err)) < 0)
                break;
            removed += r > 0;
            r = 0;
        }
        json_decref(list);
        list = NULL;
    }
    if (r < 0)
        return r;
    *ret_removed = removed;
    return 0;
}

/* ---- verify, from outside: the live objects against their rendering ---------------- */

static void verify_row(json_t *rows, const char *id, const char *claim, const char *expected,
                       const char *observed, const char *verdict, const char *reason)
{
    json_t *r = json_pack("{s:s,s:s,s:s,s:s,s:s}", "id", id, "claim", claim, "expected", expected,
                          "observed", observed, "verdict", verdict);
    json_object_set_new(r, "reason", reason ? json_string(reason) : json_null());
    json_array_append_new(rows, r);
}

/* Whether the field manager stockade applied the object (server-side
 * apply): its entry in managedFields. */
static bool applied_by_stockade(const json_t *live)
{
    size_t i;
    const json_t *m;
    json_array_foreach(json_object_get(json_object_get(live, "metadata"), "managedFields"), i, m)
    {
        if (stk_streq(jstr(m, "manager"), "stockade") && stk_streq(jstr(m, "operation"), "Apply"))
            return true;
    }
    return false;
}

/* One row: the live object holds every field of want (what stockade
 * applied: render's object, or injection's apply configuration), carries
 * the ownership labels and was applied by stockade. */
static void verify_object(struct kube_ctx *c, json_t *want, const char *id, json_t *rows)
{
    struct stk_kube_ref ref;
    struct stk_buf what = {0}, obs = {0}, why = {0};
    json_t *live = NULL;
    struct stk_error *e = NULL;
    if (stk_kube_ref_of(want, &ref, &e) < 0) {
        verify_row(rows, "object", "an object as rendered", "exists as rendered", "?", "fail",
                   e ? e->msg : "no identity");
        stk_error_free(e);
        return;
    }
    stk_kube_ref_describe(&ref, &what);
    char *claim = stk_xasprintf("%s as rendered", stk_buf_str(&what));
    const char *verdict = "fail";
    int r = stk_kube_get(c->k, &ref, &live, &e);
    size_t n = 0;
    const json_t *labels = json_object_get(json_object_get(live, "metadata"), "labels");
    if (r == -ENOENT) {
        stk_buf_puts(&obs, "absent");
        stk_buf_puts(&why, "stockade applied it and it is gone");
    } else if (r < 0) {
        stk_buf_puts(&obs, "?");
        stk_buf_printf(&why, "not observed: %s", e ? e->msg : "?");
    } else if (jstr(live, "metadata.deletionTimestamp")) {
        stk_buf_puts(&obs, "being deleted");
        stk_buf_puts(&why, "it is on its way out");
    } else if (!stk_streq(json_string_value(json_object_get(labels, STK_K8S_SANDBOX_ID_LABEL)),
                          id) ||
               !stk_streq(json_string_value(json_object_get(labels, STK_K8S_STORE_LABEL)),
                          c->store)) {
        stk_buf_puts(&obs, "not labelled with this sandbox and store");
        stk_buf_printf(&why, "%s is not %s, or %s is not this state directory's",
                       STK_K8S_SANDBOX_ID_LABEL, id, STK_K8S_STORE_LABEL);
    } else if (!stk_kube_holds(want, live, &obs, &n)) {
        stk_buf_puts(&why, "the live object differs from what stockade applied");
    } else if (!applied_by_stockade(live)) {
        stk_buf_printf(&obs, "as rendered (%zu fields), no stockade field manager", n);
        stk_buf_puts(&why, "no server-side apply by field manager stockade: eject and rm cannot "
                           "rely on its field ownership");
    } else {
        stk_buf_printf(&obs, "as rendered (%zu fields), applied by stockade", n);
        verdict = "pass";
    }
    verify_row(rows, "object", claim,
               "exists, every rendered field, ownership labels, applied by stockade",
               stk_buf_str(&obs), verdict, why.len ? why.data : NULL);
    free(claim);
    json_decref(live);
    stk_error_free(e);
    stk_buf_free(&what);
    stk_buf_free(&obs);
    stk_buf_free(&why);
}

static int kube_verify_outside(void *ud, const struct stk_driver_sandbox *sb, char **ret,
                               struct stk_error **err)
{
    struct kube_ctx *c = ud;
    *ret = NULL;
    if (!sb->b)
        return stk_error_make(err, EINVAL, "sandbox %s: its spec no longer resolves", sb->id);
    int r = need_store(c, err);
    if (r < 0)
        return r;
    json_t *rows = json_array(), *objs = NULL;
    struct handle h;
    size_t n_policies = 0;
    if ((r = handle_parse(c, sb, &h, err)) < 0)
        goto out;
    if (h.injected) {
        /* what create applied: injection's configuration for the workload
         * as it was before (restored from the record injection left) */
        json_t *live = NULL, *orig = NULL, *cfg = NULL;
        struct stk_k8s_options opt = {.sandbox_id = sb->id, .store = c->store};
        if ((r = workload_get(c, &h, &live, err)) >= 0 &&
            (r = stk_k8s_eject(live, &orig, err)) >= 0 &&
            (r = stk_k8s_inject_apply(sb->b, orig, &opt, &cfg, err)) >= 0)
            verify_object(c, cfg, sb->id, rows);
        json_decref(live);
        json_decref(orig);
        json_decref(cfg);
        if (r < 0)
            goto out;
    } else if (sb->pool && sb->pool[0]) {
        verify_row(rows, "object", "objects as rendered", "what render prints for this sandbox",
                   "a claimed warm-pool member", "skip",
                   "its objects were rendered for the pool's template and its Pod relabelled "
                   "by the claim; they are not this record's rendering");
    } else {
        char nsbuf[64];
        const char *ns = sandbox_namespace(sb, nsbuf, sizeof(nsbuf));
        struct stk_k8s_options opt = {
            .sandbox_id = sb->id, .store = c->store, .sandbox_name = sb->name, .namespace = ns};
        if ((r = stk_k8s_render(sb->b, &opt, &objs, err)) < 0)
            goto out;
        size_t i;
        json_t *o;
        json_array_foreach(objs, i, o)
        {
            verify_object(c, o, sb->id, rows);
            n_policies += stk_streq(jstr(o, "kind"), "NetworkPolicy");
        }
    }
    if (n_policies) {
        char obs[96];
        snprintf(obs, sizeof(obs), "%zu NetworkPolicies stored (rows above)", n_policies);
        verify_row(rows, "netpol_enforced", "NetworkPolicies enforced",
                   "egress as explain says (default deny, then the allows)", obs, "skip",
                   "not provable from the API: enforcement is up to the cluster's CNI (one "
                   "without NetworkPolicy support stores them and enforces nothing); verify "
                   "--to IP:PORT probes a destination from inside");
    }
    *ret = json_dumps(rows, JSON_COMPACT);
out:
    json_decref(objs);
    json_decref(rows);
    return r < 0 ? r : 0;
}

const struct stk_driver_ops stk_kube_driver_ops = {
    .backend = STK_BACKEND_KUBERNETES,
    .probe_stdin = true,
    .open = kube_open,
    .close = kube_close,
    .facts = kube_facts,
    .provision = kube_provision,
    .start = kube_start,
    .exec = kube_exec,
    .file_read = kube_file_read,
    .file_write = kube_file_write,
    .connect = kube_connect,
    .stop = kube_stop,
    .supervise = kube_supervise,
    .observe = kube_observe,
    .teardown = kube_teardown,
    .logs = NULL, /* the session's own files, copied by supervise */
    .fingerprint = kube_fingerprint,
    .gc = kube_gc,
    .replicas = kube_replicas,
    .verify_outside = kube_verify_outside,
    .pool_apply = kube_pool_apply,
    .pool_delete = kube_pool_delete,
};
