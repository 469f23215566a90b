/* SPDX-License-Identifier: Apache-2.0 */
/* stockade doctor: the operator checks of an EnvironmentConfig. */
#include "cli.h"
#include "doctor/doctor.h"

int cmd_doctor(int argc, char **argv)
{
    static const struct option opts[] = {
        {"env", required_argument, NULL, 'e'},
        {"output", required_argument, NULL, 'o'},
        {NULL, 0, NULL, 0},
    };
    enum cli_output out = CLI_OUT_TEXT;
    const char *env_file = NULL;
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "e:o:", opts, NULL)) != -1) {
        switch (c) {
        case 'e':
            env_file = optarg;
            break;
        case 'o':
            if (cli_parse_output("doctor", optarg, &out) != 0)
                return EXIT_USAGE;
            break;
        default:
            return cli_usage("doctor", stderr, EXIT_USAGE);
        }
    }
    if (!env_file)
        return cli_usage_error("doctor", "--env ENV is required");
    if (optind != argc)
        return cli_usage_error("doctor", "takes no positional arguments");

    _cleanup_diags_ struct stk_diags diags = {0};
    _cleanup_(stk_docset_freep) struct stk_docset *ds = NULL;
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
    _cleanup_doctor_report_ struct stk_doctor_report *rep = NULL;
    if (stk_doctor(env, ds->file, &rep) < 0)
        return EXIT_INVALID;
    if (out == CLI_OUT_JSON) {
        cli_print_json(stk_doctor_json(rep));
    } else {
        _cleanup_buf_ struct stk_buf text = {0};
        stk_doctor_text(rep, &text);
        fputs(stk_buf_str(&text), stdout);
    }
    return rep->n_status[STK_CHECK_FAIL] ? EXIT_INVALID : 0;
}
