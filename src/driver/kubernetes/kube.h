/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kube — the Kubernetes API client the kubernetes driver calls: cluster
 * access from a kubeconfig or in-cluster credentials, REST paths, server-side
 * apply and the other verbs, Status errors, list+watch, pods/log and
 * pods/exec|attach (WebSocket). HTTP through libcurl, WebSocket through
 * libwebsockets; TLS verification is never switched off.
 *
 * Errors name the context, the server and the object:
 *   context kind (https://127.0.0.1:6443): apply NetworkPolicy ns1/deny-all:
 *   422 Unprocessable Entity: Invalid: ...
 * Bearer tokens and key material never appear in errors.
 *
 * HTTP status → return value (the message carries the Status object's
 * reason, message and causes):
 *   400, 422            -EINVAL   (strict field validation, invalid object)
 *   401                 -EPERM    (not authenticated: bad or expired credentials)
 *   403                 -EACCES   (authenticated, not authorized)
 *   404                 -ENOENT
 *   409 AlreadyExists   -EEXIST
 *   409 (other)         -EAGAIN   (conflict: resourceVersion or field manager)
 *   410                 -ESTALE   (resourceVersion too old)
 *   429, 5xx            -EIO      ("transient": retrying later may work)
 *   other               -EPROTO
 *   connection failures -EIO ("transient"), timeouts -ETIMEDOUT,
 *   an answer past a limit -EMSGSIZE.
 */
#ifndef STK_DRIVER_KUBE_H
#define STK_DRIVER_KUBE_H

#include "base/base.h"

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* Hard limits on what the server sends. */
#define STK_KUBE_MAX_BODY       (32u << 20) /* one response body */
#define STK_KUBE_MAX_LINE       (16u << 20) /* one watch event */
#define STK_KUBE_MAX_ITEMS      100000      /* items of one List */
#define STK_KUBE_MAX_KUBECONFIG (4u << 20)  /* a kubeconfig or credential file */
/* Default time limit of one request (watch, logs -f and exec excepted). */
#define STK_KUBE_TIMEOUT_MS 30000

/* Test-only: the directory holding the in-cluster service-account files
 * (token, ca.crt, namespace) instead of the real one. */
#define STK_KUBE_SA_DIR_ENV "STOCKADE_KUBE_SA_DIR"
#define STK_KUBE_SA_DIR     "/var/run/secrets/kubernetes.io/serviceaccount"

#define STK_KUBE_FIELD_MANAGER "stockade"

/* ==== cluster access ===================================================== */

struct stk_kube_opts {
    const char *kubeconfig; /* NULL: $KUBECONFIG (first file of the list), else
                               ~/.kube/config, else in-cluster */
    const char *context;    /* NULL: current-context */
};

/* Opaque (named stk_kubeconfig: spec.h's struct stk_kube_config is the
 * Sandbox's driverConfig.kubernetes): context name, server URL, CA (file or PEM data), client
 * cert+key (file or PEM data), bearer token or token file, default namespace. */
struct stk_kubeconfig;

/* Refused with a precise error: insecure-skip-tls-verify: true, exec and
 * auth-provider plugins, username/password, proxy-url, a server that is not
 * https. Relative file paths are relative to the kubeconfig's directory. */
int stk_kubeconfig_load(const struct stk_kube_opts *o, struct stk_kubeconfig **ret,
                        struct stk_error **err);
/* The same from kubeconfig text already in memory (tests, fuzzing); dir is
 * what relative paths are relative to, name is for messages. */
int stk_kubeconfig_parse(const char *data, size_t len, const char *name, const char *dir,
                         const char *context, struct stk_kubeconfig **ret, struct stk_error **err);
void stk_kubeconfig_free(struct stk_kubeconfig *c);
static inline void stk_kubeconfig_freep(struct stk_kubeconfig **c)
{
    stk_kubeconfig_free(*c);
}
const char *stk_kubeconfig_context(const struct stk_kubeconfig *c); /* for messages */
const char *stk_kubeconfig_server(const struct stk_kubeconfig *c);
/* The context's namespace (in-cluster: the service account's), else "default". */
const char *stk_kubeconfig_namespace(const struct stk_kubeconfig *c);

/* ==== the client ========================================================= */

/* A client: libcurl handle(s) and a copy of the config (c may be freed after).
 * Not thread-safe: one client per thread (a watch callback that writes must
 * use a second client). The TLS connection is kept between requests. */
struct stk_kube;
int stk_kube_open(const struct stk_kubeconfig *c, struct stk_kube **ret, struct stk_error **err);
void stk_kube_close(struct stk_kube *k);
static inline void stk_kube_closep(struct stk_kube **k)
{
    stk_kube_close(*k);
}
/* Time limit of each later request, in ms (default STK_KUBE_TIMEOUT_MS;
 * watch, logs and exec have their own). */
void stk_kube_set_timeout(struct stk_kube *k, int timeout_ms);

/* An object's identity; api_version "v1", "apps/v1", "networking.k8s.io/v1", ... */
struct stk_kube_ref {
    const char *api_version, *kind;
    const char *namespace; /* NULL: cluster-scoped, or all namespaces for a collection */
    const char *name;      /* NULL: the collection */
};
/* From an object's apiVersion/kind/metadata (the strings point into obj).
 * -EINVAL when it lacks them. */
int stk_kube_ref_of(const json_t *obj, struct stk_kube_ref *ret, struct stk_error **err);
/* "NetworkPolicy ns1/deny-all", "Namespace s1", "Pod ns1 (collection)" */
void stk_kube_ref_describe(const struct stk_kube_ref *r, struct stk_buf *out);

/* The REST path of a ref: a built-in table of the kinds stockade renders
 * (Namespace, ServiceAccount, Pod, PersistentVolumeClaim, ResourceQuota,
 * LimitRange, Secret, Service, ConfigMap, Role, RoleBinding, ClusterRole,
 * ClusterRoleBinding, NetworkPolicy, Job, Deployment, StatefulSet, DaemonSet,
 * RuntimeClass, ValidatingAdmissionPolicy(+Binding), ...), discovery
 * (/apis/GROUP/VERSION, cached) for other kinds. Names and namespaces must be
 * DNS-1123 (subdomain for names, label for namespaces): -EINVAL otherwise.
 * -ENOENT when the server does not serve the kind. A cluster-scoped kind
 * with a namespace is -EINVAL. */
int stk_kube_path(struct stk_kube *k, const struct stk_kube_ref *r, struct stk_buf *out,
                  struct stk_error **err);

/* Server-side apply: PATCH application/apply-patch+yaml (JSON is valid YAML)
 * ?fieldManager=stockade&fieldValidation=Strict&force=true. *ret_live (may be
 * NULL) is the object the server returned. */
int stk_kube_apply(struct stk_kube *k, const json_t *obj, json_t **ret_live,
                   struct stk_error **err);
/* GET; -ENOENT when 404. */
int stk_kube_get(struct stk_kube *k, const struct stk_kube_ref *r, json_t **ret,
                 struct stk_error **err);
/* LIST with a label selector (NULL: all); *ret is the List object (items,
 * metadata.resourceVersion). Pages (limit/continue) are joined; more than
 * STK_KUBE_MAX_ITEMS items is -EMSGSIZE. */
int stk_kube_list(struct stk_kube *k, const struct stk_kube_ref *r, const char *label_selector,
                  json_t **ret, struct stk_error **err);
/* DELETE with propagationPolicy (NULL: Foreground) and an optional uid
 * precondition (NULL: none). 404 is success: returns 0; 1 when it deleted
 * something (or started to: finalizers may keep the object a while). A uid
 * precondition that fails is -EAGAIN. */
int stk_kube_delete(struct stk_kube *k, const struct stk_kube_ref *r, const char *propagation,
                    const char *uid_precondition, struct stk_error **err);
/* PATCH of type "application/merge-patch+json",
 * "application/strategic-merge-patch+json" or "application/json-patch+json"
 * (fieldValidation=Strict). A merge patch that carries
 * metadata.resourceVersion is an optimistic-concurrency update: 409 Conflict
 * returns -EAGAIN. ret may be NULL. */
int stk_kube_patch(struct stk_kube *k, const struct stk_kube_ref *r, const char *patch_type,
                   const json_t *patch, json_t **ret, struct stk_error **err);
/* Any request (discovery, subresources): method, path with query (starts
 * with '/'), optional JSON body and its content type (NULL:
 * application/json). Returns the HTTP status in *ret_status and the parsed
 * body (NULL when not JSON) in *ret_body (may be NULL); an HTTP error status
 * is not a failure here — only transport errors and limits are. */
int stk_kube_request(struct stk_kube *k, const char *method, const char *path,
                     const char *content_type, const json_t *body, long *ret_status,
                     json_t **ret_body, struct stk_error **err);
/* Whether the server serves a group/version ("v1", "apps/v1",
 * "agents.x-k8s.io/v1alpha1"); discovery, cached per client. 1 yes, 0 no. */
int stk_kube_has_api(struct stk_kube *k, const char *group_version, struct stk_error **err);

/* Whether a live object holds what was applied: every member of an object
 * and every element of an array in want must be in live with an equal
 * value (the server may add defaults, never change or drop what was
 * applied). Array elements that are objects with a "name" are matched by
 * name (the server may add elements: default tolerations), others by
 * equality with any live element. 1: it holds; 0: *ret_diff says the first
 * difference ("spec.containers[sandbox].securityContext.privileged: true,
 * applied false"). *ret_n counts the leaves compared. Depth is bounded. */
int stk_kube_holds(json_t *want, json_t *live, struct stk_buf *ret_diff, size_t *ret_n);

/* ==== watch ============================================================== */

/*
 * List then watch. fn is called with type "SYNC" for every object of the
 * initial list, then "SYNCED" once (obj: the List with its items removed,
 * so a caller can drop what it knew and did not see again), then for every
 * watch event ("ADDED", "MODIFIED", "DELETED"). BOOKMARKs are consumed and
 * only advance the resourceVersion. On 410 Gone (HTTP or an ERROR event with
 * code 410) it relists: "SYNC" for each item again, then "SYNCED". On a
 * dropped connection it reconnects from the last resourceVersion with
 * exponential backoff (100 ms doubling, at most 5 s; reset by any event).
 * fn must ignore types it does not know. Stops when fn returns > 0 (returns
 * that value), < 0 (returns it, *err says the caller stopped the watch), or
 * timeout_ms passes (-ETIMEDOUT; < 0: none). Transient failures (5xx,
 * connection errors) are retried with the backoff until the deadline; errors
 * that retrying cannot fix (400, 401, 403, 404, ...) end it.
 */
typedef int (*stk_kube_watch_fn)(void *ud, const char *type, const json_t *obj);
int stk_kube_watch(struct stk_kube *k, const struct stk_kube_ref *collection,
                   const char *label_selector, const char *field_selector, int timeout_ms,
                   stk_kube_watch_fn fn, void *ud, struct stk_error **err);

/* The watch stream's newline splitter (public for tests and the fuzz
 * target): feed bytes as they come; fn sees every complete line without its
 * '\n' (NUL-terminated; empty lines skipped). A line longer than max is
 * -EMSGSIZE. A non-zero return of fn stops the feed and is returned. */
struct stk_kube_lines {
    struct stk_buf buf; /* the incomplete tail */
    size_t max;         /* 0: STK_KUBE_MAX_LINE */
};
typedef int (*stk_kube_line_fn)(void *ud, char *line, size_t len);
int stk_kube_lines_feed(struct stk_kube_lines *l, const char *data, size_t n, stk_kube_line_fn fn,
                        void *ud, struct stk_error **err);
void stk_kube_lines_free(struct stk_kube_lines *l);
/* One watch event line → its type and object (borrowed from *ret_event,
 * which the caller frees). -EPROTO when malformed; for an ERROR event,
 * *ret_type is "ERROR" and the object is the Status. */
int stk_kube_event_parse(const char *line, size_t len, json_t **ret_event, const char **ret_type,
                         json_t **ret_obj, struct stk_error **err);

/* ==== logs, exec, attach ================================================= */

/* pods/log: copies the container's log to out_fd; follow keeps streaming
 * until the container ends; since_ms (unix ms, 0: all), tail_lines (-1:
 * all), timestamps. */
struct stk_kube_logs_req {
    const char *namespace, *pod, *container; /* container NULL: the only one */
    bool follow, timestamps;
    bool previous; /* the container's previous instance (it restarted) */
    int64_t since_ms;
    long tail_lines;
    int out_fd;
    /* non-NULL: the log goes to sink instead of out_fd, chunk by chunk (a
     * short count stops it, as a failed write would) */
    size_t (*sink)(void *ud, const char *data, size_t n);
    void *sink_ud;
    /* non-NULL: a follow ends within about a second of *cancel becoming
     * true (success: what arrived was delivered) */
    const atomic_bool *cancel;
};
int stk_kube_logs(struct stk_kube *k, const struct stk_kube_logs_req *r, struct stk_error **err);

/* Where a follower of pods/log?timestamps=true stands: the stamp of the
 * last line it delivered and how many lines carried that stamp (a new
 * follower — another process adopting the sandbox — asks from that second
 * on and delivers only what is new). seen counts this stream's lines with
 * the stamp; zero it for a new stream. */
struct stk_kube_log_pos {
    int64_t sec;
    int32_t nsec;
    uint32_t count, seen;
};
/* One line (without its newline) of a timestamped log: *ret_text, *ret_len is
 * the line without its stamp. 1: new, pos advanced; 0: delivered before;
 * -EPROTO: no stamp (*ret_text is the whole line). */
int stk_kube_log_line(struct stk_kube_log_pos *pos, const char *line, size_t len,
                      const char **ret_text, size_t *ret_len);
/* "SEC.NSEC COUNT\n", what a follower stores between processes. */
void stk_kube_log_pos_format(const struct stk_kube_log_pos *pos, char buf[64]);
int stk_kube_log_pos_parse(const char *s, struct stk_kube_log_pos *ret);

/*
 * pods/exec over WebSocket (libwebsockets), subprotocol v5.channel.k8s.io,
 * falling back to v4.channel.k8s.io. stdin from in_fd (-1: none). At EOF of
 * in_fd, v5 sends the close-stdin signal (channel 255); v4 has none, so the
 * remote stdin stays open: with a tty nothing happens, without one the
 * process keeps running until it ends on its own. stdout and stderr go to
 * out_fd and err_fd (one merged stream with a tty). With tty, the size comes
 * from the tty of in_fd or out_fd and follows it (SIGWINCH is caught while
 * exec runs, the old handler restored after) on channel 4. *ret_code is the
 * exit status from the status channel (3): Success → 0, NonZeroExitCode →
 * its ExitCode cause; another failure is a negative return with the message.
 * attach = true is pods/attach with the same request (argv ignored). At
 * least one of in_fd, out_fd, err_fd must be >= 0 (the server insists):
 * -EINVAL otherwise. One tty exec at a time per process (the SIGWINCH
 * handler is process-wide).
 */
struct stk_kube_exec_req {
    const char *namespace, *pod, *container; /* container NULL: the only one */
    const char *const *argv;
    size_t argc;
    bool tty, attach;
    int in_fd, out_fd, err_fd;
    /* 0: none. out_max: stdout and stderr together are cut off past it
     * (-EFBIG); timeout_s: the stream is closed that long after it opened
     * (-ETIMEDOUT) */
    uint64_t out_max;
    int timeout_s;
    /* the end of in_fd is not signalled: a command that reads a counted
     * number of bytes does not race the close with its reads (a kubelet
     * may drop stdin it has not delivered when the close arrives) */
    bool keep_stdin_open;
};
int stk_kube_exec(struct stk_kube *k, const struct stk_kube_exec_req *r, int *ret_code,
                  struct stk_error **err);

/*
 * pods/portforward over WebSocket (v4.channel.k8s.io): a connection to
 * port inside the Pod, made by the kubelet in the Pod's network namespace.
 * *ret_fd: one end of a socketpair (O_CLOEXEC, blocking) whose other end a
 * thread of this process moves to and from the WebSocket until either side
 * ends (no half-close: the protocol has none). Returns once the upgrade was
 * answered: a refusal (403, a Pod gone) is an error here; a port nothing
 * listens on ends the connection right after it opened.
 */
int stk_kube_port_connect(struct stk_kube *k, const char *namespace, const char *pod, uint16_t port,
                          int *ret_fd, struct stk_error **err);
/* How many of those connections' threads have not ended yet (a connection
 * ends some time after its caller closed its end: a process that wants to
 * leave nothing running waits for 0). */
int stk_kube_port_connections(void);

/* ==== doctor ============================================================= */

struct stk_doctor_report;
/* The checks of a live cluster (doctor --kubeconfig), appended to r: the
 * API answers, the identity may do what the driver does, Pod Security
 * admission is enforced, the gvisor RuntimeClass and the admission guard
 * are installed, NetworkPolicies are accepted. */
int stk_kube_doctor(struct stk_kube *k, const struct stk_kubeconfig *cfg,
                    struct stk_doctor_report *r);

#endif
