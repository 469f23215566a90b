/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Injection (deployment.model: injection): the sandbox becomes one more
 * container in an existing Deployment, StatefulSet or DaemonSet's pod
 * template, sharing the pod's network and PID namespaces. Everything added
 * carries the sandbox's name as a prefix, and the workload's annotation
 * stockade.dev/injected records exactly what changed — added names, the
 * original shareProcessNamespace (or its absence), lists and maps that were
 * created — so eject restores the original object exactly.
 *
 * No init container is added: the sandbox image brings its own tools and the
 * writable directories are emptyDir volumes.
 */
#include "internal.h"

#include <errno.h>
#include <string.h>

/* Lists and maps injection may have to create, by their path in the
 * workload. The record names them by these strings. */
enum created {
    CREATED_VOLUMES,
    CREATED_ANNOTATIONS,
    _CREATED_N,
};
static const char *const created_names[_CREATED_N] = {
    [CREATED_VOLUMES] = "spec.template.spec.volumes",
    [CREATED_ANNOTATIONS] = "metadata.annotations",
};

static json_t *path_get(const json_t *o, const char *a, const char *b, const char *c)
{
    json_t *v = json_object_get(o, a);
    if (b)
        v = json_object_get(v, b);
    if (c)
        v = json_object_get(v, c);
    return v;
}

static const json_t *named(const json_t *list, const char *name)
{
    size_t i;
    const json_t *item;
    json_array_foreach(list, i, item)
    {
        if (stk_streq(json_string_value(json_object_get(item, "name")), name))
            return item;
    }
    return NULL;
}

static bool name_in(const json_t *list, const char *name)
{
    return named(list, name) != NULL;
}

/* Checks shape common to inject and eject; returns the pod spec. */
static int workload_pod_spec(const json_t *w, json_t **ret, struct stk_error **err)
{
    const char *kind = json_string_value(json_object_get(w, "kind"));
    const char *api = json_string_value(json_object_get(w, "apiVersion"));
    if (!json_is_object(w) || !kind)
        return stk_error_make(err, EINVAL, "the workload is not a Kubernetes object (no kind)");
    if (stk_enum_lookup(stk_workload_kind_names, _STK_WORKLOAD_N, kind) < 0)
        return stk_error_make(err, EINVAL,
                              "cannot inject into a %s: only Deployment, StatefulSet and "
                              "DaemonSet have a pod template stockade can extend",
                              kind);
    if (!stk_streq(api, "apps/v1"))
        return stk_error_make(err, EINVAL, "%s has apiVersion \"%s\"; expected apps/v1", kind,
                              api ? api : "");
    if (!json_string_value(path_get(w, "metadata", "name", NULL)))
        return stk_error_make(err, EINVAL, "the %s has no metadata.name", kind);
    json_t *spec = path_get(w, "spec", "template", "spec");
    if (!json_is_object(spec) || !json_is_array(json_object_get(spec, "containers")))
        return stk_error_make(err, EINVAL, "the %s has no spec.template.spec.containers", kind);
    if (json_object_get(spec, "volumes") && !json_is_array(json_object_get(spec, "volumes")))
        return stk_error_make(err, EINVAL, "spec.template.spec.volumes is not a list");
    *ret = spec;
    return 0;
}

static bool has_cap(const struct stk_boundary *b, const char *cap)
{
    for (size_t i = 0; i < b->n_caps; i++)
        if (!strcmp(b->caps[i], cap))
            return true;
    return false;
}

static json_t *empty_dir_spec(const char *medium, int64_t size)
{
    json_t *ed = stk_k8s_empty_dir(medium, size);
    json_t *inner = json_incref(json_object_get(ed, "emptyDir"));
    json_decref(ed);
    return inner;
}

static json_t *sandbox_container(const struct stk_boundary *b, const char *name,
                                 const char *tmp_vol, const char *work_vol)
{
    json_t *c = PACK("{s:s, s:s}", "name", name, "image", b->image);
    if (b->kube && b->kube->image_pull_policy.meta.set)
        json_object_set_new(c, "imagePullPolicy",
                            json_string(stk_pull_policy_names[b->kube->image_pull_policy.v]));
    if (b->argc) {
        json_t *cmd = json_array();
        for (size_t i = 0; i < b->argc; i++)
            json_array_append_new(cmd, json_string(b->argv[i]));
        json_object_set_new(c, "command", cmd);
    }
    if (b->working_dir)
        json_object_set_new(c, "workingDir", json_string(b->working_dir));
    if (b->n_env)
        json_object_set_new(c, "env", stk_k8s_env(b));
    if (b->n_env_from)
        json_object_set_new(c, "envFrom", stk_k8s_env_from(b));
    json_object_set_new(c, "resources",
                        PACK("{s:o, s:o}", "limits", stk_k8s_container_limits(b), "requests",
                             stk_k8s_container_limits(b)));
    /* The pod's own securityContext belongs to the workload, so the sandbox
     * container carries everything its level needs itself. SYS_PTRACE (to
     * debug the workload's processes) is added only when granted, which
     * b->caps already says. */
    json_t *sc = stk_k8s_container_security_context(b);
    if (json_is_true(json_object_get(sc, "runAsNonRoot"))) {
        json_object_set_new(sc, "runAsUser", json_integer(65532));
        json_object_set_new(sc, "runAsGroup", json_integer(65532));
    }
    json_object_set_new(c, "securityContext", sc);
    json_object_set_new(c, "volumeMounts",
                        PACK("[{s:s, s:s}, {s:s, s:s}]", "name", work_vol, "mountPath",
                             b->working_dir ? b->working_dir : "/workspace", "name", tmp_vol,
                             "mountPath", "/tmp"));
    return c;
}

int stk_k8s_inject(const struct stk_boundary *b, const json_t *workload, json_t **ret,
                   struct stk_error **err)
{
    json_t *spec = NULL;
    int r;

    if (b->model != STK_MODEL_INJECTION)
        return stk_error_make(err, EINVAL,
                              "sandbox \"%s\" is standalone (spec.deployment.model); --workload "
                              "applies to deployment.model: injection",
                              b->name);
    if (!b->image)
        return stk_error_make(err, EINVAL, "spec.image is required to inject a sandbox container");
    if (b->kube_access) {
        /* Rendering it without a token would make explain's contract wrong;
         * mounting one would hand over the workload's own identity. */
        char from[256];
        stk_origin_format(&b->kube_access_origin, from, sizeof(from));
        return stk_error_make(err, EINVAL,
                              "kubernetesAccess is true (from %s) but an injected sandbox has no "
                              "identity of its own: it would hold the workload's service account "
                              "token; set spec.security.kubernetesAccess: false",
                              from);
    }
    if ((r = workload_pod_spec(workload, &spec, err)) < 0)
        return r;

    const char *kind = json_string_value(json_object_get(workload, "kind"));
    const char *name = json_string_value(path_get(workload, "metadata", "name", NULL));
    const char *ns = json_string_value(path_get(workload, "metadata", "namespace", NULL));
    const struct stk_target *t = b->target;
    if (!t)
        return stk_error_make(err, EINVAL, "spec.deployment.target is missing");
    if (strcmp(kind, stk_workload_kind_names[t->kind.v]))
        return stk_error_make(err, EINVAL,
                              "spec.deployment.target.kind is %s but the workload is a %s",
                              stk_workload_kind_names[t->kind.v], kind);
    if (strcmp(name, t->name.v))
        return stk_error_make(err, EINVAL,
                              "spec.deployment.target.name is \"%s\" but the workload is \"%s\"",
                              t->name.v, name);
    if (t->namespace.meta.set && ns && strcmp(ns, t->namespace.v))
        return stk_error_make(
            err, EINVAL, "spec.deployment.target.namespace is \"%s\" but the workload is in \"%s\"",
            t->namespace.v, ns);
    if (json_object_get(path_get(workload, "metadata", "annotations", NULL),
                        STK_K8S_INJECTED_ANNOTATION))
        return stk_error_make(err, EINVAL,
                              "%s \"%s\" already carries a stockade sandbox (annotation %s); "
                              "eject it first",
                              kind, name, STK_K8S_INJECTED_ANNOTATION);
    json_t *containers = json_object_get(spec, "containers");
    if (t->container.meta.set && !name_in(containers, t->container.v))
        return stk_error_make(err, EINVAL,
                              "spec.deployment.target.container \"%s\" is not a container of %s "
                              "\"%s\"",
                              t->container.v, kind, name);
    if (has_cap(b, "SYS_PTRACE") && json_is_true(json_object_get(spec, "hostPID")))
        return stk_error_make(err, EINVAL,
                              "%s \"%s\" uses hostPID: SYS_PTRACE there would reach the node's "
                              "processes",
                              kind, name);

    const char *cname = stk_arena_printf(b->arena, "%s-sandbox", b->name);
    const char *tmp_vol = stk_arena_printf(b->arena, "%s-tmp", b->name);
    const char *work_vol = stk_arena_printf(b->arena, "%s-workspace", b->name);
    json_t *volumes = json_object_get(spec, "volumes");
    json_t *inits = json_object_get(spec, "initContainers");
    if (name_in(containers, cname) || name_in(inits, cname))
        return stk_error_make(err, EINVAL, "%s \"%s\" already has a container named \"%s\"", kind,
                              name, cname);
    if (name_in(volumes, tmp_vol) || name_in(volumes, work_vol))
        return stk_error_make(err, EINVAL, "%s \"%s\" already has a volume named \"%s\" or \"%s\"",
                              kind, name, tmp_vol, work_vol);

    /* All checks passed: build the changed copy and the record. */
    json_t *out = json_deep_copy(workload);
    json_t *ospec = path_get(out, "spec", "template", "spec");
    json_t *record = PACK("{s:s}", "sandbox", b->name);
    json_t *created = json_array();

    json_array_append_new(json_object_get(ospec, "containers"),
                          sandbox_container(b, cname, tmp_vol, work_vol));
    json_object_set_new(record, "containers", PACK("[s]", cname));

    json_t *ovols = json_object_get(ospec, "volumes");
    if (!ovols) {
        ovols = json_array();
        json_object_set_new(ospec, "volumes", ovols);
        json_array_append_new(created, json_string(created_names[CREATED_VOLUMES]));
    }
    json_array_append_new(ovols, PACK("{s:s, s:o}", "name", work_vol, "emptyDir",
                                      empty_dir_spec(NULL, b->limits.storage)));
    json_array_append_new(ovols, PACK("{s:s, s:o}", "name", tmp_vol, "emptyDir",
                                      empty_dir_spec("Memory", b->tmp_size)));
    json_object_set_new(record, "volumes", PACK("[s, s]", work_vol, tmp_vol));

    json_t *share = json_object_get(ospec, "shareProcessNamespace");
    if (share)
        json_object_set(record, "shareProcessNamespace", share);
    else
        json_object_set_new(record, "shareProcessNamespace", json_string("absent"));
    json_object_set_new(ospec, "shareProcessNamespace", json_true());

    json_t *meta = json_object_get(out, "metadata");
    json_t *ann = json_object_get(meta, "annotations");
    if (!json_is_object(ann)) {
        ann = json_object();
        json_object_set_new(meta, "annotations", ann);
        json_array_append_new(created, json_string(created_names[CREATED_ANNOTATIONS]));
    }
    json_object_set_new(record, "created", created);
    char *text = json_dumps(record, JSON_COMPACT);
    json_decref(record);
    if (!text)
        stk_oom();
    json_object_set_new(ann, STK_K8S_INJECTED_ANNOTATION, json_string(text));
    free(text);
    *ret = out;
    return 0;
}

/* Removes the named items from a list; every name must be there. */
static int remove_named(json_t *list, const json_t *names, const char *what, struct stk_error **err)
{
    size_t i;
    json_t *n;
    json_array_foreach(names, i, n)
    {
        const char *want = json_string_value(n);
        bool found = false;
        for (size_t j = 0; j < json_array_size(list) && !found; j++)
            if (stk_streq(json_string_value(json_object_get(json_array_get(list, j), "name")),
                          want)) {
                json_array_remove(list, j);
                found = true;
            }
        if (!found)
            return stk_error_make(err, EINVAL,
                                  "the injected %s \"%s\" is gone: the workload was changed after "
                                  "injection; refusing to guess",
                                  what, want ? want : "?");
    }
    return 0;
}

int stk_k8s_eject(const json_t *workload, json_t **ret, struct stk_error **err)
{
    json_t *spec = NULL;
    json_error_t jerr;
    int r;

    if ((r = workload_pod_spec(workload, &spec, err)) < 0)
        return r;
    const char *text = json_string_value(json_object_get(
        path_get(workload, "metadata", "annotations", NULL), STK_K8S_INJECTED_ANNOTATION));
    if (!text)
        return stk_error_make(err, EINVAL, "the workload has no %s annotation: nothing to eject",
                              STK_K8S_INJECTED_ANNOTATION);
    json_t *record = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(record) || !json_is_array(json_object_get(record, "containers")) ||
        !json_is_array(json_object_get(record, "volumes")) ||
        !json_is_array(json_object_get(record, "created")) ||
        !json_object_get(record, "shareProcessNamespace")) {
        json_decref(record);
        return stk_error_make(err, EINVAL, "annotation %s is not a record stockade wrote",
                              STK_K8S_INJECTED_ANNOTATION);
    }

    json_t *out = json_deep_copy(workload);
    json_t *ospec = path_get(out, "spec", "template", "spec");
    json_t *meta = json_object_get(out, "metadata");
    json_t *ovols = json_object_get(ospec, "volumes");
    if (!ovols) {
        ovols = json_array();
        json_object_set_new(ospec, "volumes", ovols);
    }
    if ((r = remove_named(json_object_get(ospec, "containers"),
                          json_object_get(record, "containers"), "container", err)) < 0 ||
        (r = remove_named(ovols, json_object_get(record, "volumes"), "volume", err)) < 0)
        goto fail;

    json_t *share = json_object_get(record, "shareProcessNamespace");
    if (json_is_boolean(share))
        json_object_set(ospec, "shareProcessNamespace", share);
    else
        json_object_del(ospec, "shareProcessNamespace");

    json_t *ann = json_object_get(meta, "annotations");
    json_object_del(ann, STK_K8S_INJECTED_ANNOTATION);

    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(record, "created"), i, c)
    {
        const char *what = json_string_value(c);
        if (stk_streq(what, created_names[CREATED_VOLUMES]) && json_array_size(ovols) == 0)
            json_object_del(ospec, "volumes");
        else if (stk_streq(what, created_names[CREATED_ANNOTATIONS]) && json_object_size(ann) == 0)
            json_object_del(meta, "annotations");
    }
    json_decref(record);
    *ret = out;
    return 0;
fail:
    json_decref(record);
    json_decref(out);
    return r;
}

int stk_k8s_inject_apply(const struct stk_boundary *b, const json_t *workload,
                         const struct stk_k8s_options *opt, json_t **ret, struct stk_error **err)
{
    json_t *injected = NULL;
    int r = stk_k8s_inject(b, workload, &injected, err);
    if (r < 0)
        return r;
    const char *id = opt && opt->sandbox_id ? opt->sandbox_id : b->name;
    const json_t *ann = path_get(injected, "metadata", "annotations", NULL);
    const char *record_text = json_string_value(json_object_get(ann, STK_K8S_INJECTED_ANNOTATION));
    json_t *record = json_loads(record_text, 0, NULL);
    const char *cname = json_string_value(json_array_get(json_object_get(record, "containers"), 0));
    const json_t *pspec = path_get(injected, "spec", "template", "spec");
    json_t *vols = json_array();
    size_t i;
    const json_t *v;
    json_array_foreach(json_object_get(record, "volumes"), i, v)
    {
        json_array_append_new(
            vols, json_deep_copy(named(json_object_get(pspec, "volumes"), json_string_value(v))));
    }
    json_t *labels = PACK("{s:s,s:s}", STK_K8S_MANAGED_BY_LABEL, STK_K8S_MANAGED_BY,
                          STK_K8S_SANDBOX_ID_LABEL, id);
    if (opt && opt->store)
        json_object_set_new(labels, STK_K8S_STORE_LABEL, json_string(opt->store));
    json_t *meta = PACK("{s:O,s:o,s:{s:s}}", "name", path_get(workload, "metadata", "name", NULL),
                        "labels", labels, "annotations", STK_K8S_INJECTED_ANNOTATION, record_text);
    json_t *ns = path_get(workload, "metadata", "namespace", NULL);
    if (json_is_string(ns))
        json_object_set(meta, "namespace", ns);
    json_t *cfg =
        PACK("{s:s,s:O,s:o,s:{s:{s:{s:{s:s,s:s}},s:{s:[O],s:o,s:b}}}}", "apiVersion", "apps/v1",
             "kind", json_object_get(workload, "kind"), "metadata", meta, "spec", "template",
             "metadata", "labels", STK_K8S_SANDBOX_ID_LABEL, id, STK_K8S_CONTAINER_LABEL, cname,
             "spec", "containers", named(json_object_get(pspec, "containers"), cname), "volumes",
             vols, "shareProcessNamespace", 1);
    json_decref(record);
    json_decref(injected);
    *ret = cfg;
    return 0;
}

json_t *stk_k8s_eject_apply(const char *kind, const char *ns, const char *name)
{
    json_t *meta = PACK("{s:s}", "name", name);
    if (ns)
        json_object_set_new(meta, "namespace", json_string(ns));
    return PACK("{s:s,s:s,s:o}", "apiVersion", "apps/v1", "kind", kind, "metadata", meta);
}
