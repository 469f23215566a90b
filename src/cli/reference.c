/* SPDX-License-Identifier: Apache-2.0 */
#include "cli.h"

int cmd_reference(int argc, char **argv)
{
    (void)argv;
    if (argc > 1)
        return cli_usage_error("reference", "takes no arguments");
    _cleanup_buf_ struct stk_buf out = {0};
    stk_spec_reference(&out, stk_boundary_default_text, NULL);
    fputs(stk_buf_str(&out), stdout);
    return 0;
}
