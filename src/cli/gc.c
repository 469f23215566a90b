/* SPDX-License-Identifier: Apache-2.0 */
#include "cli.h"
#include "driver/driver.h"

int cmd_gc(int argc, char **argv)
{
    enum { OPT_STATE_DIR = 256 };
    static const struct option opts[] = {
        {"state-dir", required_argument, NULL, OPT_STATE_DIR},
        {NULL, 0, NULL, 0},
    };
    const char *state_dir = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case OPT_STATE_DIR:
            state_dir = optarg;
            break;
        default:
            return cli_usage("gc", stderr, EXIT_USAGE);
        }
    }
    if (optind != argc)
        return cli_usage_error("gc", "takes no arguments");
    struct stk_local_paths paths;
    cli_local_paths(state_dir, &paths);
    struct stk_gc_stats st;
    _cleanup_error_ struct stk_error *err = NULL;
    if (stk_local_gc(&paths, &st, &err) < 0) {
        fprintf(stderr, "stockade gc: %s\n", err->msg);
        return EXIT_INVALID;
    }
    printf("removed %zu sandbox director%s, %zu cgroup%s, %zu runtime state%s, %zu network "
           "object%s\n",
           st.sandboxes, st.sandboxes == 1 ? "y" : "ies", st.cgroups, st.cgroups == 1 ? "" : "s",
           st.runtime_states, st.runtime_states == 1 ? "" : "s", st.network,
           st.network == 1 ? "" : "s");
    return 0;
}
