/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The client interface the sandbox commands use: one table, two engines
 * (podman's local "abi" and remote "tunnel" ContainerEngine): embedded runs
 * the session in this process; remote talks to `stockade serve`
 * (src/cli/remote.c). cli_engine_open() is the one place that asks which;
 * commands never do. Every operation prints its own failure and returns 0
 * or an exit status.
 */
#include "cli.h"
#include "session/session.h"

#include <errno.h>
#include <jansson.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct cli_engine {
    const struct cli_engine_ops *ops;
    const char *cmd;
    struct stk_session *s; /* embedded: opened on first use */
};

static int fail(const char *cmd, struct stk_error *err)
{
    fprintf(stderr, "stockade %s: %s\n", cmd, err ? err->msg : "failed");
    return EXIT_INVALID;
}

static int session(struct cli_engine *e, struct stk_session **ret)
{
    if (!e->s) {
        int r = cli_session_open(e->cmd, NULL, &e->s);
        if (r != 0)
            return r;
    }
    *ret = e->s;
    return 0;
}

static int emb_create(struct cli_engine *e, const struct cli_create_args *a,
                      struct stk_create_res *ret)
{
    if (a->owner || a->tenant)
        return cli_usage_error("create", "--owner and --tenant need --server URL");
    struct stk_session *s;
    int r = session(e, &s);
    if (r != 0)
        return r;
    _cleanup_error_ struct stk_error *err = NULL;
    struct stk_create_req req = {
        .docs = *a->docs, .pool = a->pool, .idle = a->idle, .accepted_only = a->accepted_only};
    return stk_session_create(s, &req, ret, &err) < 0 ? fail(e->cmd, err) : 0;
}

static int emb_exec(struct cli_engine *e, const char *id, const struct stk_init_proc *proc,
                    bool interactive, int *ret_code)
{
    struct stk_session *s;
    int r = session(e, &s);
    if (r != 0)
        return r;
    _cleanup_error_ struct stk_error *err = NULL;
    if (stk_session_exec(s, id, proc, interactive ? STDIN_FILENO : -1, STDOUT_FILENO, STDERR_FILENO,
                         ret_code, &err) < 0) {
        fprintf(stderr, "stockade %s: %s\n", e->cmd, err ? err->msg : "failed");
        return EXIT_SETUP;
    }
    return 0;
}

static int emb_logs(struct cli_engine *e, const char *id, const struct stk_session_logs_req *q)
{
    struct stk_session *s;
    int r = session(e, &s);
    if (r != 0)
        return r;
    _cleanup_error_ struct stk_error *err = NULL;
    fflush(stdout);
    r = stk_session_logs_req(s, id, q, STDOUT_FILENO, STDERR_FILENO, &err);
    return r < 0 ? fail("logs", err) : 0;
}

static int emb_act(struct cli_engine *e, enum cli_act act, const char *id, bool force)
{
    struct stk_session *s;
    int r = session(e, &s);
    if (r != 0)
        return r;
    _cleanup_error_ struct stk_error *err = NULL;
    switch (act) {
    case CLI_ACT_STOP:
        r = stk_session_stop(s, id, &err);
        break;
    case CLI_ACT_START:
        r = stk_session_start(s, id, &err);
        break;
    case CLI_ACT_RM:
        r = stk_session_rm(s, id, force, &err);
        break;
    }
    return r < 0 ? fail(e->cmd, err) : 0;
}

/* A sandbox injected into a workload lives in each replica that carries
 * it: rec_json gets "replicas" (the live instances). What the cluster did
 * not answer is said on stderr, and the record is listed without them. */
static void add_replicas(struct stk_session *s, const struct stk_sb_rec *rec, json_t *rec_json)
{
    if (rec->phase != STK_SB_READY)
        return;
    _cleanup_error_ struct stk_error *err = NULL;
    _cleanup_free_ char *text = NULL;
    if (stk_session_replicas(s, rec->id, &text, &err) < 0) {
        fprintf(stderr, "stockade: sandbox %s: its replicas: %s\n", rec->id,
                err ? err->msg : "failed");
        return;
    }
    json_t *a = text ? json_loads(text, 0, NULL) : NULL;
    if (a)
        json_object_set_new(rec_json, "replicas", a);
}

static int emb_list(struct cli_engine *e, bool all, json_t **ret)
{
    struct stk_session *s;
    int r = session(e, &s);
    if (r != 0)
        return r;
    _cleanup_error_ struct stk_error *err = NULL;
    struct stk_sb_rec *recs = NULL;
    size_t n = 0;
    if (stk_store_sb_list_brief(stk_session_store(s), all, &recs, &n, &err) < 0)
        return fail("ls", err);
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *j = stk_sb_rec_json(&recs[i], false);
        add_replicas(s, &recs[i], j);
        json_array_append_new(a, j);
    }
    stk_sb_recs_free(recs, n);
    *ret = a;
    return 0;
}

static int emb_get(struct cli_engine *e, const char *id, json_t **ret)
{
    struct stk_session *s;
    int r = session(e, &s);
    if (r != 0)
        return r;
    _cleanup_error_ struct stk_error *err = NULL;
    struct stk_sb_rec rec = {0};
    if (stk_store_sb_get(stk_session_store(s), id, &rec, &err) < 0)
        return fail("get", err);
    *ret = stk_sb_rec_json(&rec, true);
    add_replicas(s, &rec, *ret);
    stk_sb_rec_free(&rec);
    return 0;
}

static int emb_pool_create(struct cli_engine *e, const char *name, int size,
                           const struct stk_session_docs *docs, const char *tenant)
{
    if (tenant)
        return cli_usage_error("pool", "--tenant needs --server URL");
    struct stk_session *s;
    int r = session(e, &s);
    if (r != 0)
        return r;
    _cleanup_error_ struct stk_error *err = NULL;
    return stk_pool_create(s, name, size, docs, &err) < 0 ? fail("pool create", err) : 0;
}

static int emb_pool_list(struct cli_engine *e, json_t **ret)
{
    struct stk_session *s;
    int r = session(e, &s);
    if (r != 0)
        return r;
    _cleanup_error_ struct stk_error *err = NULL;
    struct stk_pool_rec *pools = NULL;
    size_t n = 0;
    if (stk_store_pool_list(stk_session_store(s), &pools, &n, &err) < 0)
        return fail("pool ls", err);
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        size_t ready = 0;
        (void)stk_pool_ready(s, pools[i].tenant, pools[i].name, &ready, NULL);
        json_t *p = json_pack("{s:s,s:i,s:I,s:s}", "name", pools[i].name, "size", pools[i].size,
                              "ready", (json_int_t)ready, "tenant", pools[i].tenant);
        /* a pool the backend keeps: its controller counts the ready ones */
        if (pools[i].mechanism[0]) {
            json_object_set_new(p, "mechanism", json_string(pools[i].mechanism));
            json_object_set_new(p, "ready", json_null());
        }
        json_array_append_new(a, p);
    }
    stk_pool_recs_free(pools, n);
    *ret = a;
    return 0;
}

static int emb_pool_rm(struct cli_engine *e, const char *name)
{
    struct stk_session *s;
    int r = session(e, &s);
    if (r != 0)
        return r;
    _cleanup_error_ struct stk_error *err = NULL;
    return stk_pool_rm(s, NULL, name, &err) < 0 ? fail("pool rm", err) : 0;
}

static int emb_connect(struct cli_engine *e, const char *id, uint16_t port, int *ret_fd)
{
    struct stk_session *s;
    int r = session(e, &s);
    if (r != 0)
        return r;
    _cleanup_error_ struct stk_error *err = NULL;
    r = ret_fd ? stk_session_connect(s, id, port, "port-forward", ret_fd, &err)
               : stk_session_port_check(s, id, port, &err);
    return r < 0 ? fail(e->cmd, err) : 0;
}

static int emb_file_read(struct cli_engine *e, const char *id, const char *path, int out_fd)
{
    struct stk_session *s;
    int r = session(e, &s);
    if (r != 0)
        return r;
    _cleanup_error_ struct stk_error *err = NULL;
    return stk_session_file_read(s, id, path, out_fd, NULL, &err) < 0 ? fail("cp", err) : 0;
}

static int emb_file_write(struct cli_engine *e, const char *id, const char *path, unsigned mode,
                          const void *data, size_t size)
{
    struct stk_session *s;
    int r = session(e, &s);
    if (r != 0)
        return r;
    _cleanup_error_ struct stk_error *err = NULL;
    /* the session reads the content from a descriptor: a memfd holds it */
    _cleanup_close_ int mfd = memfd_create("stockade-cp", MFD_CLOEXEC);
    if (mfd < 0 || (size && write(mfd, data, size) != (ssize_t)size) ||
        lseek(mfd, 0, SEEK_SET) < 0) {
        fprintf(stderr, "stockade cp: %s\n", strerror(errno));
        return EXIT_SETUP;
    }
    return stk_session_file_write(s, id, path, mode, mfd, size, &err) < 0 ? fail("cp", err) : 0;
}

static const struct cli_engine_ops embedded_ops = {
    .file_read = emb_file_read,
    .file_write = emb_file_write,
    .connect = emb_connect,
    .create = emb_create,
    .exec = emb_exec,
    .logs = emb_logs,
    .act = emb_act,
    .list = emb_list,
    .get = emb_get,
    .pool_create = emb_pool_create,
    .pool_list = emb_pool_list,
    .pool_rm = emb_pool_rm,
};

struct cli_remote_opts cli_remote = {0};

bool cli_remote_active(void)
{
    return cli_remote.server != NULL;
}

void cli_remote_from_env(void)
{
    if (!cli_remote.server && getenv("STOCKADE_SERVER") && *getenv("STOCKADE_SERVER"))
        cli_remote.server = getenv("STOCKADE_SERVER");
    if (!cli_remote.token && getenv("STOCKADE_TOKEN") && *getenv("STOCKADE_TOKEN"))
        cli_remote.token = getenv("STOCKADE_TOKEN");
    if (!cli_remote.token_file && getenv("STOCKADE_TOKEN_FILE") && *getenv("STOCKADE_TOKEN_FILE"))
        cli_remote.token_file = getenv("STOCKADE_TOKEN_FILE");
}

void *cli_remote_sym(const char *cmd, const char *name)
{
    _cleanup_error_ struct stk_error *err = NULL;
    void *p = stk_module_sym("remote", name, &err);
    if (!p) {
        /* an incomplete installation: nothing to fall back to */
        fprintf(stderr, "stockade %s: %s\n", cmd, err ? err->msg : "no remote module");
        exit(EXIT_INVALID);
    }
    return p;
}

struct cli_engine *cli_engine_open(const char *cmd)
{
    struct cli_engine *e = stk_xcalloc(1, sizeof(*e));
    e->cmd = cmd;
    e->ops = cli_remote_active() ? CLI_REMOTE_FN(cmd, cli_remote_engine_ops) : &embedded_ops;
    return e;
}

const struct cli_engine_ops *cli_engine_ops_of(const struct cli_engine *e)
{
    return e->ops;
}

void cli_engine_close(struct cli_engine *e)
{
    if (!e)
        return;
    stk_session_close(e->s);
    free(e);
}
