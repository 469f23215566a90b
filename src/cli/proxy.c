/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `stockade __proxy --config FILE`: the egress proxy standalone, as the
 * Kubernetes renderer runs it in a Pod of its own next to the sandbox's
 * (docs/proxy.md, "On Kubernetes"). It listens on 0.0.0.0:3128; which
 * Pods may connect is the proxy's NetworkPolicy. kubernetesSecret
 * credentials are read through the API with the Pod's own service account
 * at request time, never cached. Decisions are JSON lines on stdout (the
 * Pod's log); a credential is never among them.
 */
#include "cli.h"
#include "driver/kubernetes/kube.h"
#include "proxy/proxy.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static struct {
    __typeof__(&stk_proxy_file_parse) parse;
    __typeof__(&stk_proxy_file_free) file_free;
    __typeof__(&stk_proxy_start) start;
    __typeof__(&stk_proxy_event_fd) event_fd;
    __typeof__(&stk_proxy_events_read) events_read;
    __typeof__(&stk_proxy_stop) stop;
    __typeof__(&stk_credential_set_kube) set_kube;
    __typeof__(&stk_kubeconfig_load) kc_load;
    __typeof__(&stk_kubeconfig_free) kc_free;
    __typeof__(&stk_kube_open) open;
    __typeof__(&stk_kube_get) get;
    __typeof__(&stk_kube_set_timeout) set_timeout;
} m;

/* Used only from the proxy's thread (credentials are read there). */
static struct stk_kube *kube;

static int load(struct stk_error **err)
{
#define SYM(field, module, fn) (m.field = STK_MODULE_SYM(module, fn, err))
    if (SYM(parse, "proxy", stk_proxy_file_parse) && SYM(file_free, "proxy", stk_proxy_file_free) &&
        SYM(start, "proxy", stk_proxy_start) && SYM(event_fd, "proxy", stk_proxy_event_fd) &&
        SYM(events_read, "proxy", stk_proxy_events_read) && SYM(stop, "proxy", stk_proxy_stop) &&
        SYM(set_kube, "proxy", stk_credential_set_kube) &&
        SYM(kc_load, "kube", stk_kubeconfig_load) && SYM(kc_free, "kube", stk_kubeconfig_free) &&
        SYM(open, "kube", stk_kube_open) && SYM(get, "kube", stk_kube_get) &&
        SYM(set_timeout, "kube", stk_kube_set_timeout))
        return 0;
#undef SYM
    return -ENOENT;
}

/* The Secret's key, decoded, through the API (in the Pod: the projected
 * service-account token; the Role allows get on exactly this Secret). */
static int read_secret(const char *ns, const char *name, const char *key, char **ret,
                       const char **why)
{
    struct stk_error *e = NULL;
    if (!kube) {
        struct stk_kubeconfig *cfg = NULL;
        struct stk_kube_opts o = {0};
        int r = m.kc_load(&o, &cfg, &e);
        if (r >= 0)
            r = m.open(cfg, &kube, &e);
        m.kc_free(cfg);
        if (r < 0) {
            fprintf(stderr, "stockade __proxy: the Kubernetes API: %s\n", e ? e->msg : "?");
            stk_error_free(e);
            *why = "the proxy cannot reach the Kubernetes API";
            return r;
        }
        m.set_timeout(kube, 5000);
    }
    struct stk_kube_ref ref = {"v1", "Secret", ns, name};
    json_t *secret = NULL;
    int r = m.get(kube, &ref, &secret, &e);
    if (r < 0) {
        /* the API's message names the Secret, never its data */
        fprintf(stderr, "stockade __proxy: %s\n", e ? e->msg : "?");
        stk_error_free(e);
        *why = r == -ENOENT   ? "the Secret does not exist"
               : r == -EACCES ? "the proxy may not read the Secret"
                              : "the Secret cannot be read";
        return r;
    }
    const char *b64 = json_string_value(json_object_get(json_object_get(secret, "data"), key));
    size_t n = b64 ? strlen(b64) : 0;
    if (!b64 || n == 0 || n % 4 || n / 4 * 3 > STK_CREDENTIAL_MAX + 2) {
        json_decref(secret);
        *why = !b64 ? "the Secret has no such key" : "the Secret's value is empty or too long";
        return !b64 ? -ENOENT : -EINVAL;
    }
    unsigned char *v = stk_xmalloc(n / 4 * 3 + 1);
    int len = EVP_DecodeBlock(v, (const unsigned char *)b64, (int)n);
    if (len >= 0) /* EVP_DecodeBlock counts the padding as bytes */
        for (size_t i = n; i > 0 && b64[i - 1] == '='; i--)
            len--;
    /* the response body held the value too: wipe its copy */
    explicit_bzero((char *)(uintptr_t)b64, n);
    json_decref(secret);
    if (len < 0) {
        free(v);
        *why = "the Secret's value is not base64";
        return -EINVAL;
    }
    v[len] = '\0';
    if (strlen((char *)v) != (size_t)len) {
        explicit_bzero(v, (size_t)len);
        free(v);
        *why = "the Secret's value holds a NUL byte";
        return -EINVAL;
    }
    *ret = (char *)v;
    return 0;
}

static void print_event(void *ud, const char *json)
{
    (void)ud;
    printf("%s\n", json);
    fflush(stdout);
}

static volatile sig_atomic_t stopping;
static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

int cmd_internal_proxy(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'}, {0}};
    const char *config = NULL;
    int c;
    while ((c = cli_getopt(argc, argv, "c:", opts)) != -1) {
        if (c != 'c')
            return cli_usage("__proxy", stderr, EXIT_USAGE);
        config = optarg;
    }
    if (!config || optind != argc)
        return cli_usage_error("__proxy", "needs --config FILE and nothing else");
    _cleanup_error_ struct stk_error *err = NULL;
    if (load(&err) < 0) {
        fprintf(stderr, "stockade __proxy: %s\n", err ? err->msg : "a module is missing");
        return EXIT_SETUP;
    }
    /* one byte past the limit tells a file that is too large */
    char *text = stk_xmalloc(STK_PROXY_FILE_MAX + 1);
    size_t len = 0;
    int fd = open(config, O_RDONLY | O_CLOEXEC);
    ssize_t n = 1;
    while (fd >= 0 && len <= STK_PROXY_FILE_MAX &&
           (n = read(fd, text + len, STK_PROXY_FILE_MAX + 1 - len)) > 0)
        len += (size_t)n;
    int e = errno;
    if (fd >= 0)
        close(fd);
    struct stk_proxy_file *f = NULL;
    int r = fd < 0 || n < 0 ? stk_error_make(&err, e, "cannot be read: %s", strerror(e))
                            : m.parse(text, len, &f, &err);
    free(text);
    if (r < 0) {
        fprintf(stderr, "stockade __proxy: %s: %s\n", config, err->msg);
        return EXIT_INVALID;
    }
    m.set_kube(read_secret);
    struct stk_proxy_config pc = {
        .sandbox = f->sandbox,
        .standalone = true,
        .allow = f->allow,
        .n_allow = f->n_allow,
        .deny = f->deny,
        .n_deny = f->n_deny,
        .bindings = f->bindings,
        .n_bindings = f->n_bindings,
        /* as the local proxy: test mode (a hosts file, no DNS query) and a
         * private CA for binding upstreams */
        .hosts_file = getenv("STOCKADE_PROXY_HOSTS"),
        .ca_file = getenv("STOCKADE_PROXY_CA_FILE"),
    };
    struct stk_proxy *p = NULL;
    if (m.start(&pc, &p, &err) < 0) {
        m.file_free(f);
        fprintf(stderr, "stockade __proxy: %s\n", err->msg);
        return EXIT_SETUP;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    fprintf(stderr,
            "stockade __proxy: sandbox %s: listening on 0.0.0.0:%d (%zu allowHosts, %zu "
            "bindings)\n",
            f->sandbox, STK_PROXY_PORT, f->n_allow, f->n_bindings);
    while (!stopping) {
        struct pollfd pfd = {.fd = m.event_fd(p), .events = POLLIN};
        if (poll(&pfd, 1, 1000) > 0)
            m.events_read(p, print_event, NULL);
    }
    m.stop(p, print_event, NULL);
    m.file_free(f);
    return 0;
}
