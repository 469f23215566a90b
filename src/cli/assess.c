/* SPDX-License-Identifier: Apache-2.0 */
#include "cli.h"

#define EXIT_ABOVE 3

int cmd_assess(int argc, char **argv)
{
    static const struct option opts[] = {
        {"env", required_argument, NULL, 'e'},
        {"output", required_argument, NULL, 'o'},
        {"fail-above", required_argument, NULL, 'F'},
        {NULL, 0, NULL, 0},
    };
    enum cli_output out = CLI_OUT_TEXT;
    const char *env_file = NULL;
    int fail_above = -1;
    int c;

    while ((c = cli_getopt(argc, argv, "e:o:", opts)) != -1) {
        switch (c) {
        case 'e':
            env_file = optarg;
            break;
        case 'o':
            if (cli_parse_output("assess", optarg, &out) != 0)
                return EXIT_USAGE;
            break;
        case 'F':
            fail_above = stk_enum_lookup(stk_trust_names, _STK_TRUST_N, optarg);
            if (fail_above < 0)
                return cli_usage_error("assess", "--fail-above must be hardened, "
                                                 "trusted-automation or operator-exception");
            break;
        default:
            return cli_usage("assess", stderr, EXIT_USAGE);
        }
    }
    if (optind != argc - 1)
        return cli_usage_error("assess", "needs exactly one FILE");

    _cleanup_cli_sandbox_ struct cli_sandbox s = {0};
    int r = cli_sandbox_load(argv[optind], env_file, &s);
    if (r != 0)
        return r;
    _cleanup_assessment_ struct stk_assessment *as = NULL;
    if (stk_assess(s.b, &as) < 0)
        return EXIT_INVALID;
    if (out == CLI_OUT_JSON) {
        cli_print_json(stk_assessment_json(as));
    } else {
        _cleanup_buf_ struct stk_buf text = {0};
        stk_assessment_text(as, &text);
        fputs(stk_buf_str(&text), stdout);
    }
    if (fail_above >= 0 && (int)as->level > fail_above)
        return EXIT_ABOVE;
    return 0;
}
