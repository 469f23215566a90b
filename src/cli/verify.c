/* SPDX-License-Identifier: Apache-2.0 */
/*
 * stockade verify ID | FILE: prove the contract from inside a live sandbox.
 * With FILE, a sandbox is created from it with no workload, verified and
 * removed.
 */
#include "cli.h"
#include "session/session.h"
#include "verify/verify.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#define EXIT_SETUP 125

static int verify_parse(int argc, char **argv, struct stk_verify_target *to, size_t *n_to,
                        int *timeout_ms, enum cli_output *out, const char **env,
                        const char **replica)
{
    static const struct option opts[] = {
        {"to", required_argument, NULL, 't'},      {"timeout-ms", required_argument, NULL, 'T'},
        {"output", required_argument, NULL, 'o'},  {"env", required_argument, NULL, 'e'},
        {"replica", required_argument, NULL, 'R'}, {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = cli_getopt(argc, argv, "t:o:e:", opts)) != -1) {
        _cleanup_error_ struct stk_error *err = NULL;
        char *end;
        long v;
        switch (c) {
        case 't':
            if (*n_to == STK_VERIFY_MAX_TARGETS)
                return cli_usage_error("verify", "at most %d --to destinations",
                                       STK_VERIFY_MAX_TARGETS);
            if (stk_verify_parse_target(optarg, &to[*n_to], &err) < 0)
                return cli_usage_error("verify", "--to %s: %s", optarg, err->msg);
            (*n_to)++;
            break;
        case 'T':
            v = strtol(optarg, &end, 10);
            if (*end || end == optarg || v < 1 || v > STK_VERIFY_MAX_TIMEOUT_MS)
                return cli_usage_error("verify", "--timeout-ms must be 1 to %d, not '%s'",
                                       STK_VERIFY_MAX_TIMEOUT_MS, optarg);
            *timeout_ms = (int)v;
            break;
        case 'o':
            if (cli_parse_output("verify", optarg, out) != 0)
                return EXIT_USAGE;
            break;
        case 'e':
            *env = optarg;
            break;
        case 'R':
            if (!*optarg)
                return cli_usage_error("verify", "--replica needs a Pod name");
            *replica = optarg;
            break;
        default:
            return cli_usage("verify", stderr, EXIT_USAGE);
        }
    }
    if (optind != argc - 1)
        return cli_usage_error("verify", "needs one sandbox ID or spec FILE");
    return 0;
}

/* FILE: an idle sandbox of its own, removed afterwards. */
static int create_for(struct stk_session *s, const char *file, const char *env, char id[64])
{
    _cleanup_diags_ struct stk_diags diags = {0};
    _cleanup_free_ char *spec = NULL, *envt = NULL;
    struct stk_create_req req = {.idle = true, .docs = {.spec_file = file, .env_file = env}};
    if (stk_docset_read(file, &diags, &spec, &req.docs.spec_len) < 0 ||
        (env && stk_docset_read(env, &diags, &envt, &req.docs.env_len) < 0)) {
        cli_print_diags(&diags);
        return EXIT_INVALID;
    }
    req.docs.spec = spec;
    req.docs.env = envt;
    _cleanup_error_ struct stk_error *err = NULL;
    struct stk_create_res res;
    if (stk_session_create(s, &req, &res, &err) < 0) {
        fprintf(stderr, "stockade verify: %s\n", err->msg);
        return EXIT_INVALID;
    }
    memcpy(id, res.id, 64);
    return 0;
}

int cmd_verify(int argc, char **argv)
{
    struct stk_verify_target to[STK_VERIFY_MAX_TARGETS];
    size_t n_to = 0;
    int timeout_ms = 0;
    enum cli_output out = CLI_OUT_TEXT;
    const char *env = NULL, *replica = NULL;
    int r = verify_parse(argc, argv, to, &n_to, &timeout_ms, &out, &env, &replica);
    if (r != 0)
        return r;
    const char *target = argv[optind];

    struct stk_session *s = NULL;
    _cleanup_error_ struct stk_error *err = NULL;
    if ((r = cli_session_open("verify", NULL, &s)) != 0)
        return r;
    char own[64] = "";
    struct stat st;
    if (stat(target, &st) == 0 && S_ISREG(st.st_mode)) {
        if ((r = create_for(s, target, env, own)) != 0) {
            stk_session_close(s);
            return r;
        }
        target = own;
    }
    struct stk_verify_report *report = NULL;
    r = stk_session_verify(s, target, to, n_to, timeout_ms, replica, &report, &err);
    if (own[0]) {
        _cleanup_error_ struct stk_error *e2 = NULL;
        if (stk_session_rm(s, own, true, &e2) < 0)
            fprintf(stderr, "stockade verify: removing %s: %s\n", own, e2->msg);
    }
    stk_session_close(s);
    if (r < 0) {
        fprintf(stderr, "stockade verify: %s\n", err->msg);
        return EXIT_SETUP;
    }
    if (out == CLI_OUT_JSON)
        stk_verify_report_print_json(report, stdout);
    else
        stk_verify_report_print_text(report, stdout);
    bool ok = stk_verify_report_ok(report);
    stk_verify_report_free(report);
    return ok ? 0 : EXIT_INVALID;
}
