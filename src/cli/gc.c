/* SPDX-License-Identifier: Apache-2.0 */
#include "cli.h"
#include "driver/driver.h"
#include "session/session.h"

#include <errno.h>
#include <jansson.h>
#include <string.h>

/* Another backend: its driver finds what no record keeps. */
static int gc_backend(const char *state_dir)
{
    struct stk_session *s = NULL;
    int status = cli_session_open("gc", state_dir, &s);
    if (status != 0)
        return status;
    size_t removed = 0;
    _cleanup_error_ struct stk_error *err = NULL;
    int r = stk_session_gc(s, &removed, &err);
    stk_session_close(s);
    if (r < 0) {
        fprintf(stderr, "stockade gc: %s\n", err->msg);
        return EXIT_INVALID;
    }
    printf("removed %zu object%s\n", removed, removed == 1 ? "" : "s");
    return 0;
}

int cmd_gc(int argc, char **argv)
{
    enum { OPT_STATE_DIR = 256 };
    static const struct option opts[] = {
        {"state-dir", required_argument, NULL, OPT_STATE_DIR},
        {NULL, 0, NULL, 0},
    };
    const char *state_dir = NULL;
    int c;
    while ((c = cli_getopt(argc, argv, "", opts)) != -1) {
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
    enum stk_backend be;
    int status = cli_session_backend("gc", &be);
    if (status != 0)
        return status;
    if (be != STK_BACKEND_LOCAL)
        return gc_backend(state_dir);
    struct stk_local_paths paths;
    cli_local_paths(state_dir, &paths);
    struct stk_gc_stats st;
    _cleanup_error_ struct stk_error *err = NULL;
    /* Long-lived sandboxes are the store's: recovery runs first (opening
     * the session), then gc leaves every sandbox the store still has. */
    if (stk_local_paths_check(&paths, &err) < 0) {
        fprintf(stderr, "stockade gc: %s\n", err->msg);
        return EXIT_INVALID;
    }
    struct stk_session *s = NULL;
    struct stk_sb_rec *recs = NULL;
    size_t n = 0;
    char db[4200];
    snprintf(db, sizeof(db), "%s/%s", paths.state_dir, STK_STORE_DB_FILE);
    if (access(db, F_OK) == 0 &&
        (stk_session_open(&paths, NULL, &s, &err) < 0 ||
         stk_store_sb_list_brief(stk_session_store(s), false, &recs, &n, &err) < 0)) {
        fprintf(stderr, "stockade gc: %s\n", err->msg);
        stk_session_close(s);
        return EXIT_INVALID;
    }
    const char **keep = stk_xcalloc(n + 1, sizeof(*keep));
    for (size_t i = 0; i < n; i++)
        keep[i] = recs[i].id;
    int r = stk_local_gc(&paths, keep, n, &st, &err);
    free(keep);
    stk_sb_recs_free(recs, n);
    if (r >= 0 && s) {
        json_t *d = json_pack("{s:I,s:I,s:I,s:I}", "sandboxes", (json_int_t)st.sandboxes, "cgroups",
                              (json_int_t)st.cgroups, "runtimeStates",
                              (json_int_t)st.runtime_states, "network", (json_int_t)st.network);
        char *dj = json_dumps(d, JSON_COMPACT);
        json_decref(d);
        (void)stk_audit_append(stk_session_store(s), "", "gc", "stockade gc", dj, NULL);
        free(dj);
    }
    stk_session_close(s);
    if (r < 0) {
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
