/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `stockade serve`: the HTTP/JSON API (src/gateway/http.c, docs/api.md).
 * There is no unauthenticated mode: without a policy and the
 * authentication and authorization that enforce it, serve does not start.
 */
#include "cli.h"
#include "gateway/http.h"
#include "gateway/policy.h"
#include "session/session.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/resource.h>

#define SERVE_NOFILE 4096

#define SERVE_DEFAULT_LISTEN "127.0.0.1:8443"

/* The gateway lives in a private module (libevent, OpenSSL's TLS, libcurl),
 * loaded by serve only; these are its entry points. Its workers run
 * stk_gw_worker_main, which is linked into this executable. */
static struct {
    __typeof__(&stk_gw_policy_load) stk_gw_policy_load;
    __typeof__(&stk_gw_policy_reload_keys) stk_gw_policy_reload_keys;
    __typeof__(&stk_gw_policy_free) stk_gw_policy_free;
    __typeof__(&stk_gw_policy_client_ca) stk_gw_policy_client_ca;
    __typeof__(&stk_gw_policy_auth) stk_gw_policy_auth;
    __typeof__(&stk_gw_new) stk_gw_new;
    __typeof__(&stk_gw_port) stk_gw_port;
    __typeof__(&stk_gw_run) stk_gw_run;
    __typeof__(&stk_gw_free) stk_gw_free;
} gw;

/* Loads the module's entry points; 0, or an exit status after a message. */
static int gw_load(const char *cmd)
{
    _cleanup_error_ struct stk_error *err = NULL;
#define GW_LOAD(fn) (gw.fn = STK_MODULE_SYM("gateway", fn, &err))
    if (GW_LOAD(stk_gw_policy_load) && GW_LOAD(stk_gw_policy_reload_keys) &&
        GW_LOAD(stk_gw_policy_free) && GW_LOAD(stk_gw_policy_client_ca) &&
        GW_LOAD(stk_gw_policy_auth) && GW_LOAD(stk_gw_new) && GW_LOAD(stk_gw_port) &&
        GW_LOAD(stk_gw_run) && GW_LOAD(stk_gw_free))
        return 0;
#undef GW_LOAD
    fprintf(stderr, "stockade %s: %s\n", cmd, err ? err->msg : "the gateway module is missing");
    return EXIT_INVALID;
}

/* The AccessPolicy as the server's authentication and authorization; the
 * policy stays loaded for the server's lifetime (the auth points into it).
 * Diagnostics print with file:line:col. Returns 0 or an exit status. */
int cli_gateway_auth(const char *policy_file, struct stk_gw_policy **ret)
{
    int lr = gw_load("serve");
    if (lr != 0)
        return lr;
    _cleanup_diags_ struct stk_diags diags = {0};
    _cleanup_error_ struct stk_error *err = NULL;
    struct stk_gw_policy *p = NULL;
    int r = gw.stk_gw_policy_load(policy_file, &diags, &p, &err);
    cli_print_diags(&diags);
    if (r < 0) {
        fprintf(stderr, "stockade serve: %s\n", err->msg);
        return EXIT_INVALID;
    }
    *ret = p;
    return 0;
}

struct serve_args {
    const char *listen, *cert, *key, *ca, *policy, *state_dir, *access_log;
    int timeout_s;
};

/* SIGHUP: key rotation without a restart (the grants stay as loaded). */
static void serve_reload_keys(void *ud)
{
    _cleanup_error_ struct stk_error *err = NULL;
    if (gw.stk_gw_policy_reload_keys(ud, &err) < 0)
        fprintf(stderr, "stockade serve: SIGHUP: keeping the old keys: %s\n", err->msg);
    else
        fprintf(stderr, "stockade serve: SIGHUP: JWKS keys re-read\n");
}

static void stk_gw_policy_freep(struct stk_gw_policy **p)
{
    if (*p)
        gw.stk_gw_policy_free(*p);
}

static int serve_parse(int argc, char **argv, struct serve_args *a)
{
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"tls-cert", required_argument, NULL, 'c'},
        {"tls-key", required_argument, NULL, 'k'},
        {"client-ca", required_argument, NULL, 'a'},
        {"policy", required_argument, NULL, 'p'},
        {"state-dir", required_argument, NULL, 's'},
        {"request-timeout", required_argument, NULL, 't'},
        {"access-log", required_argument, NULL, 'L'},
        {NULL, 0, NULL, 0},
    };
    *a = (struct serve_args){.listen = SERVE_DEFAULT_LISTEN};
    int c;
    while ((c = cli_getopt(argc, argv, "", opts)) != -1) {
        if (c == 't') {
            char *end;
            long t = strtol(optarg, &end, 10);
            if (*end || end == optarg || t < 1 || t > 3600)
                return cli_usage_error("serve",
                                       "--request-timeout must be 1 to 3600 seconds, "
                                       "not '%s'",
                                       optarg);
            a->timeout_s = (int)t;
            continue;
        }
        const char **dst = c == 'l'   ? &a->listen
                           : c == 'c' ? &a->cert
                           : c == 'k' ? &a->key
                           : c == 'a' ? &a->ca
                           : c == 'p' ? &a->policy
                           : c == 's' ? &a->state_dir
                           : c == 'L' ? &a->access_log
                                      : NULL;
        if (!dst)
            return cli_usage("serve", stderr, EXIT_USAGE);
        *dst = optarg;
    }
    if (optind < argc)
        return cli_usage_error("serve", "unexpected argument '%s'", argv[optind]);
    if (!a->policy)
        return cli_usage_error("serve", "needs --policy FILE (an AccessPolicy): there is no "
                                        "unauthenticated mode");
    if (!a->cert != !a->key)
        return cli_usage_error("serve", "--tls-cert and --tls-key go together");
    if (a->ca && !a->cert)
        return cli_usage_error("serve", "--client-ca needs --tls-cert and --tls-key");
    return 0;
}

/* The policy's clientCertificates.caFile is the CA that is enforced;
 * --client-ca may repeat it (the same file), never replace it. */
static int serve_client_ca(struct serve_args *a, const char *policy_ca)
{
    if (!policy_ca)
        return 0;
    if (!a->cert)
        return cli_usage_error("serve",
                               "the policy's clientCertificates need --tls-cert and --tls-key");
    if (a->ca) {
        _cleanup_free_ char *x = realpath(a->ca, NULL), *y = realpath(policy_ca, NULL);
        if (!x || !y || strcmp(x, y) != 0) {
            fprintf(stderr,
                    "stockade serve: --client-ca %s is not the policy's clientCertificates.caFile "
                    "%s: give the same file, or leave --client-ca out\n",
                    a->ca, policy_ca);
            return EXIT_INVALID;
        }
    }
    a->ca = policy_ca;
    return 0;
}

int cmd_serve(int argc, char **argv)
{
    struct serve_args a;
    int r = serve_parse(argc, argv, &a);
    if (r != 0)
        return r;
    _cleanup_error_ struct stk_error *err = NULL;
    _cleanup_(stk_gw_policy_freep) struct stk_gw_policy *policy = NULL;
    if ((r = cli_gateway_auth(a.policy, &policy)) != 0)
        return r;
    if ((r = serve_client_ca(&a, gw.stk_gw_policy_client_ca(policy))) != 0)
        return r;
    /* stockade --backend sim serve, or STOCKADE_BACKEND=sim */
    enum stk_backend backend;
    if ((r = cli_session_backend("serve", &backend)) != 0)
        return r;
    struct stk_local_paths paths;
    cli_backend_paths(a.state_dir, backend, &paths);
    struct stk_session_opts so;
    cli_session_opts(&so);
    struct stk_gw_options o = {.listen = a.listen,
                               .backend = backend,
                               .kubeconfig = so.kubeconfig,
                               .context = so.context,
                               .tls_cert = a.cert,
                               .tls_key = a.key,
                               .client_ca = a.ca,
                               .paths = &paths,
                               .auth = gw.stk_gw_policy_auth(policy),
                               .timeout_s = a.timeout_s,
                               .access_log = a.access_log,
                               .on_hup = serve_reload_keys,
                               .on_hup_ud = policy};
    /* the gate holds up to STK_GW_MAX_CONNECTIONS sockets besides the
     * store, workers' pipes and the listener */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < SERVE_NOFILE) {
        nofile.rlim_cur = nofile.rlim_max < SERVE_NOFILE ? nofile.rlim_max : SERVE_NOFILE;
        (void)setrlimit(RLIMIT_NOFILE, &nofile);
    }
    struct stk_gw *g = NULL;
    if (gw.stk_gw_new(&o, &g, &err) < 0) {
        fprintf(stderr, "stockade serve: %s\n", err->msg);
        return EXIT_INVALID;
    }
    fprintf(stderr, "stockade serve: listening on %s (port %d)\n", a.listen, gw.stk_gw_port(g));
    r = gw.stk_gw_run(g);
    gw.stk_gw_free(g);
    return r < 0 ? EXIT_INVALID : 0;
}

/* Started by serve itself for each operation that may block: the job on
 * fd 3, the answer on fd 4 (src/gateway/worker.c). */
int cmd_internal_gateway_worker(int argc, char **argv)
{
    if (fcntl(3, F_GETFD) < 0 || fcntl(4, F_GETFD) < 0) {
        fprintf(stderr, "stockade: %s is stockade's own (serve starts it)\n", STK_GW_WORKER_VERB);
        return EXIT_USAGE;
    }
    /* the core only: no module, so a worker maps none of the gateway's
     * libraries (src/gateway/worker.h) */
    return stk_gw_worker_main(argc, argv) == 0 ? 0 : EXIT_INVALID;
}
