/* SPDX-License-Identifier: Apache-2.0 */
/* stockade doctor: the operator checks of an EnvironmentConfig, and of a
 * live cluster with --kubeconfig or --context. */
#include "cli.h"
#include "doctor/doctor.h"
#include "driver/driver.h"
#include "driver/kubernetes/kube.h"

#include <stdlib.h>

/* This host, for the local backend (doctor without --env). */
static void host_checks(struct stk_doctor_report *rep)
{
    struct stk_local_paths paths;
    cli_local_paths(NULL, &paths);
    struct stk_host_check *checks = stk_xcalloc(16, sizeof(*checks));
    size_t n = 0;
    stk_local_host_checks(&paths, checks, 16, &n);
    static const enum stk_check_status map[] = {
        [STK_HOST_PASS] = STK_CHECK_PASS,
        [STK_HOST_WARN] = STK_CHECK_WARN,
        [STK_HOST_FAIL] = STK_CHECK_FAIL,
    };
    for (size_t i = 0; i < n; i++)
        stk_doctor_add(rep, checks[i].id, checks[i].title, map[checks[i].status], checks[i].why,
                       checks[i].fix, "host");
    free(checks);
}

/* The live cluster's checks, appended to rep. Returns a usage status when
 * the cluster cannot even be addressed (a bad kubeconfig). The client lives
 * in the kube module (libcurl), loaded here. */
static int cluster_checks(const char *kubeconfig, const char *context,
                          struct stk_doctor_report *rep)
{
    _cleanup_error_ struct stk_error *err = NULL;
    __typeof__(&stk_kubeconfig_load) load = STK_MODULE_SYM("kube", stk_kubeconfig_load, &err);
    __typeof__(&stk_kubeconfig_free) cfg_free = STK_MODULE_SYM("kube", stk_kubeconfig_free, &err);
    __typeof__(&stk_kube_open) open_ = STK_MODULE_SYM("kube", stk_kube_open, &err);
    __typeof__(&stk_kube_close) close_ = STK_MODULE_SYM("kube", stk_kube_close, &err);
    __typeof__(&stk_kube_doctor) doctor = STK_MODULE_SYM("kube", stk_kube_doctor, &err);
    if (!load || !cfg_free || !open_ || !close_ || !doctor) {
        stk_doctor_add(rep, "cluster-reachable", "API server reachable", STK_CHECK_FAIL,
                       err ? err->msg : "?", "reinstall stockade", "kubeconfig");
        return 0;
    }
    struct stk_kube_opts o = {.kubeconfig = kubeconfig, .context = context};
    struct stk_kubeconfig *cfg = NULL;
    struct stk_kube *k = NULL;
    int r = 0;
    if (load(&o, &cfg, &err) < 0 || open_(cfg, &k, &err) < 0)
        stk_doctor_add(rep, "cluster-reachable", "API server reachable", STK_CHECK_FAIL,
                       err ? err->msg : "?", "check --kubeconfig and --context", "kubeconfig");
    else
        r = doctor(k, cfg, rep);
    close_(k);
    cfg_free(cfg);
    return r;
}

int cmd_doctor(int argc, char **argv)
{
    static const struct option opts[] = {
        {"env", required_argument, NULL, 'e'},
        {"output", required_argument, NULL, 'o'},
        {"kubeconfig", required_argument, NULL, 'k'},
        {"context", required_argument, NULL, 'c'},
        {NULL, 0, NULL, 0},
    };
    enum cli_output out = CLI_OUT_TEXT;
    const char *env_file = NULL, *kubeconfig = NULL, *context = NULL;
    int c;

    optind = 1;
    while ((c = cli_getopt(argc, argv, "e:o:", opts)) != -1) {
        switch (c) {
        case 'e':
            env_file = optarg;
            break;
        case 'o':
            if (cli_parse_output("doctor", optarg, &out) != 0)
                return EXIT_USAGE;
            break;
        case 'k':
            kubeconfig = optarg;
            break;
        case 'c':
            context = optarg;
            break;
        default:
            return cli_usage("doctor", stderr, EXIT_USAGE);
        }
    }
    if (!kubeconfig && getenv("STOCKADE_KUBECONFIG") && *getenv("STOCKADE_KUBECONFIG"))
        kubeconfig = getenv("STOCKADE_KUBECONFIG");
    bool cluster = kubeconfig || context;
    if (optind != argc)
        return cli_usage_error("doctor", "takes no positional arguments");

    _cleanup_diags_ struct stk_diags diags = {0};
    _cleanup_(stk_docset_freep) struct stk_docset *ds = NULL;
    _cleanup_doctor_report_ struct stk_doctor_report *rep = NULL;
    if (env_file) {
        const struct stk_envconfig *env = NULL;
        int r = cli_env_load(env_file, &diags, &ds, &env);
        cli_print_diags(&diags);
        if (r != 0)
            return r;
        _cleanup_diags_ struct stk_diags checked = {0};
        r = stk_envconfig_check(env, ds->file, &checked);
        cli_print_diags(&checked);
        if (r < 0)
            return EXIT_INVALID;
        if (stk_doctor(env, ds->file, &rep) < 0)
            return EXIT_INVALID;
    } else {
        /* no EnvironmentConfig: the host the local backend runs on */
        rep = stk_doctor_report_new(NULL);
        host_checks(rep);
    }
    if (cluster)
        (void)cluster_checks(kubeconfig, context, rep);
    if (out == CLI_OUT_JSON) {
        cli_print_json(stk_doctor_json(rep));
    } else {
        _cleanup_buf_ struct stk_buf text = {0};
        stk_doctor_text(rep, &text);
        fputs(stk_buf_str(&text), stdout);
    }
    return rep->n_status[STK_CHECK_FAIL] ? EXIT_INVALID : 0;
}
