/* SPDX-License-Identifier: Apache-2.0 */
#include "cli.h"

#include <jansson.h>

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
    if (optind >= argc)
        return cli_usage_error("assess", "needs at least one FILE");

    /* one FILE: its assessment as ever; several: each under its name (text)
     * or in an array of {file, ...assessment} (json) */
    bool many = argc - optind > 1;
    int status = 0;
    json_t *all = json_array();
    for (int i = optind; i < argc; i++) {
        _cleanup_cli_sandbox_ struct cli_sandbox s = {0};
        if (many && out == CLI_OUT_TEXT)
            printf("%s%s:\n", i > optind ? "\n" : "", argv[i]);
        int r = cli_sandbox_load(argv[i], env_file, &s);
        _cleanup_assessment_ struct stk_assessment *as = NULL;
        if (r == 0 && stk_assess(s.b, &as) < 0)
            r = EXIT_INVALID;
        if (r != 0) {
            status = r;
            if (many && out == CLI_OUT_JSON)
                json_array_append_new(
                    all, json_pack("{s:s,s:s}", "file", argv[i], "error", "invalid (see stderr)"));
            continue;
        }
        if (out == CLI_OUT_JSON) {
            json_t *j = stk_assessment_json(as);
            if (!many) {
                cli_print_json(j);
            } else {
                json_t *f = json_pack("{s:s}", "file", argv[i]);
                json_object_update(f, j);
                json_decref(j);
                json_array_append_new(all, f);
            }
        } else {
            _cleanup_buf_ struct stk_buf text = {0};
            stk_assessment_text(as, &text);
            fputs(stk_buf_str(&text), stdout);
        }
        if (fail_above >= 0 && (int)as->level > fail_above && status == 0)
            status = EXIT_ABOVE;
    }
    if (many && out == CLI_OUT_JSON)
        cli_print_json(all);
    else
        json_decref(all);
    return status;
}
