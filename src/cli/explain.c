/* SPDX-License-Identifier: Apache-2.0 */
#include "cli.h"

int cmd_explain(int argc, char **argv)
{
    static const struct option opts[] = {
        {"env", required_argument, NULL, 'e'},
        {"backend", required_argument, NULL, 'b'},
        {"output", required_argument, NULL, 'o'},
        {NULL, 0, NULL, 0},
    };
    enum cli_output out = CLI_OUT_TEXT;
    enum stk_backend backend = STK_BACKEND_LOCAL;
    const char *env_file = NULL;
    int c;

    while ((c = cli_getopt(argc, argv, "e:b:o:", opts)) != -1) {
        switch (c) {
        case 'e':
            env_file = optarg;
            break;
        case 'b':
            if (cli_parse_backend("explain", optarg, &backend) != 0)
                return EXIT_USAGE;
            break;
        case 'o':
            if (cli_parse_output("explain", optarg, &out) != 0)
                return EXIT_USAGE;
            break;
        default:
            return cli_usage("explain", stderr, EXIT_USAGE);
        }
    }
    if (optind != argc - 1)
        return cli_usage_error("explain", "needs exactly one FILE");

    _cleanup_cli_sandbox_ struct cli_sandbox s = {0};
    int r = cli_sandbox_load(argv[optind], env_file, &s);
    if (r != 0)
        return r;

    return cli_print_contract(s.b, backend, out);
}
