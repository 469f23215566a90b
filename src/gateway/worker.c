/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The gateway's worker: `stockade __gateway-worker`, one process per
 * operation that may block (create, stop, start, rm, logs, pools, exec).
 * It is exec'd, never a bare fork of the server: the server holds a SQLite
 * connection, whose locking state must not cross fork() (store.h). The job
 * comes as JSON on fd 3 (a memfd), the answer goes to fd 4; exec's stdio
 * pipes are fds 5, 6 and 7, its client's RESIZE and KILL frames fd 8
 * (worker.h). Serve starts it (job.c's gw_worker_spawn), but this side is
 * a verb of the executable, not code of the gateway module: a worker maps
 * the core's libraries only, never libevent, libssl or libcurl.
 */
#include "gateway/http.h"
#include "gateway/internal.h"
#include "gateway/worker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *jstr(json_t *job, const char *key)
{
    return json_string_value(json_object_get(job, key));
}

void gw_job_result(int out_fd, int status, json_t *body)
{
    json_t *res = json_pack("{s:i,s:o}", "status", status, "body", body);
    char *s = json_dumps(res, JSON_COMPACT);
    json_decref(res);
    size_t n = s ? strlen(s) : 0, off = 0;
    while (off < n) {
        ssize_t w = write(out_fd, s + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    free(s);
}

void gw_job_error(int out_fd, int err, const char *message)
{
    enum gw_err code = gw_err_of_errno(err);
    gw_job_result(out_fd, gw_err_status[code], gw_error_json(code, message));
}

static void w_fail(int r, struct stk_error *err)
{
    gw_job_error(GW_W_OUT_FD, r, err ? err->msg : strerror(-r));
    stk_error_free(err);
}

/* Answers with the record as `stockade get -o json` prints it. */
static void w_record(struct stk_session *s, const char *id, int status)
{
    struct stk_sb_rec rec = {0};
    struct stk_error *err = NULL;
    int r = stk_store_sb_get(stk_session_store(s), id, &rec, &err);
    if (r < 0) {
        w_fail(r, err);
        return;
    }
    gw_job_result(GW_W_OUT_FD, status, stk_sb_rec_json(&rec, true));
    stk_sb_rec_free(&rec);
}

static struct stk_session_docs w_docs(json_t *job)
{
    const char *spec = jstr(job, "spec"), *env = jstr(job, "env");
    return (struct stk_session_docs){.spec_file = "spec",
                                     .spec = spec ? spec : "",
                                     .spec_len = spec ? strlen(spec) : 0,
                                     .env_file = env ? "env" : NULL,
                                     .env = env,
                                     .env_len = env ? strlen(env) : 0};
}

static void w_create(struct stk_session *s, json_t *job)
{
    struct stk_create_req req = {.docs = w_docs(job),
                                 .pool = jstr(job, "pool"),
                                 .owner = jstr(job, "owner"),
                                 .tenant = jstr(job, "tenant"),
                                 .accepted_only = json_is_true(json_object_get(job, "accepted"))};
    struct stk_create_res res;
    struct stk_error *err = NULL;
    int r = stk_session_create(s, &req, &res, &err);
    if (r < 0)
        w_fail(r, err);
    else
        w_record(s, res.id, 201);
}

static void w_id_op(struct stk_session *s, json_t *job,
                    int (*op)(struct stk_session *, const char *, struct stk_error **))
{
    struct stk_error *err = NULL;
    int r = op(s, jstr(job, "id"), &err);
    if (r < 0)
        w_fail(r, err);
    else
        w_record(s, jstr(job, "id"), 200);
}

static void w_stop(struct stk_session *s, json_t *job)
{
    w_id_op(s, job, stk_session_stop);
}

static void w_start(struct stk_session *s, json_t *job)
{
    w_id_op(s, job, stk_session_start);
}

static void w_rm(struct stk_session *s, json_t *job)
{
    struct stk_error *err = NULL;
    int r = stk_session_rm(s, jstr(job, "id"), json_is_true(json_object_get(job, "force")), &err);
    if (r < 0)
        w_fail(r, err);
    else
        w_record(s, jstr(job, "id"), 200);
}

static void w_logs(struct stk_session *s, json_t *job)
{
    struct stk_error *err = NULL;
    /* both streams interleaved, in the order they were recorded */
    json_t *tail = json_object_get(job, "tail");
    struct stk_session_logs_req q = {
        .since_ms = json_integer_value(json_object_get(job, "since")),
        .until_ms = json_integer_value(json_object_get(job, "until")),
        .tail = json_is_integer(tail) ? json_integer_value(tail) : -1,
        .timestamps = json_is_true(json_object_get(job, "timestamps")),
        .follow = json_is_true(json_object_get(job, "follow")),
    };
    if (stk_session_logs_req(s, jstr(job, "id"), &q, GW_W_OUT_FD, GW_W_OUT_FD, &err) < 0)
        stk_error_free(err);
}

static void w_pool_create(struct stk_session *s, json_t *job)
{
    struct stk_session_docs docs = w_docs(job);
    int size = (int)json_integer_value(json_object_get(job, "size"));
    struct stk_error *err = NULL;
    struct stk_pool_req req = {.name = jstr(job, "name"),
                               .size = size,
                               .tmpl = &docs,
                               .tenant = jstr(job, "tenant"),
                               .owner = jstr(job, "owner")};
    int r = stk_pool_create_owned(s, &req, &err);
    if (r < 0)
        w_fail(r, err);
    else
        gw_job_result(GW_W_OUT_FD, 201,
                      json_pack("{s:s,s:i}", "name", jstr(job, "name"), "size", size));
}

static void w_pool_rm(struct stk_session *s, json_t *job)
{
    struct stk_error *err = NULL;
    int r = stk_pool_rm(s, jstr(job, "tenant"), jstr(job, "name"), &err);
    if (r < 0)
        w_fail(r, err);
    else
        gw_job_result(GW_W_OUT_FD, 200,
                      json_pack("{s:s,s:b}", "name", jstr(job, "name"), "deleted", true));
}

/* {"items": [{"pod","phase","node","running"}]}, or "items": null for a
 * sandbox that is not injected (one instance: itself). */
static void w_replicas(struct stk_session *s, json_t *job)
{
    struct stk_error *err = NULL;
    char *text = NULL;
    int r = stk_session_replicas(s, jstr(job, "id"), &text, &err);
    if (r < 0) {
        w_fail(r, err);
        return;
    }
    json_t *items = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    gw_job_result(GW_W_OUT_FD, 200, json_pack("{s:o}", "items", items ? items : json_null()));
}

/* exec: the relay (exec.c) reads {"r","code","message"} after the output. */
static void w_exec(struct stk_session *s, json_t *job)
{
    struct gw_exec_body b;
    json_t *root = NULL;
    char why[256] = "";
    _cleanup_free_ char *text = json_dumps(json_object_get(job, "exec"), JSON_COMPACT);
    int code = 0,
        r = text ? gw_exec_body_parse(text, strlen(text), &b, &root, why, sizeof(why)) : -EINVAL;
    struct stk_error *err = NULL;
    if (r >= 0) {
        struct stk_init_proc proc = {.argv = b.argv,
                                     .argc = b.argc,
                                     .env = b.env,
                                     .n_env = b.n_env,
                                     .cwd = b.cwd,
                                     .tty = b.tty,
                                     .replica = b.replica,
                                     .rows = b.rows,
                                     .cols = b.cols,
                                     .ctl_fd = GW_W_CTL_FD};
        r = stk_session_exec(s, jstr(job, "id"), &proc, GW_W_STDIN_FD, GW_W_STDOUT_FD,
                             GW_W_STDERR_FD, &code, &err);
    }
    json_decref(root);
    close(GW_W_STDOUT_FD);
    close(GW_W_STDERR_FD);
    json_t *res = json_pack("{s:i,s:i,s:s}", "r", r, "code", code, "message", err ? err->msg : why);
    _cleanup_free_ char *out = json_dumps(res, JSON_COMPACT);
    json_decref(res);
    stk_error_free(err);
    if (out)
        (void)!write(GW_W_OUT_FD, out, strlen(out));
}

/* The files API: the content is the memfd on GW_W_STDIN_FD (fd 5). */
static void w_file_fail(int r, struct stk_error *err)
{
    enum gw_err code = gw_err_of_file_errno(r);
    gw_job_result(GW_W_OUT_FD, gw_err_status[code],
                  gw_error_json(code, err ? err->msg : strerror(-r)));
    stk_error_free(err);
}

static void w_file_read(struct stk_session *s, json_t *job)
{
    struct stk_error *err = NULL;
    uint64_t size = 0;
    int r =
        stk_session_file_read(s, jstr(job, "id"), jstr(job, "path"), GW_W_STDIN_FD, &size, &err);
    if (r < 0)
        w_file_fail(r, err);
    else
        gw_job_result(GW_W_OUT_FD, 200,
                      json_pack("{s:s,s:I}", "path", jstr(job, "path"), "size", (json_int_t)size));
}

static void w_file_write(struct stk_session *s, json_t *job)
{
    struct stk_error *err = NULL;
    json_int_t size = json_integer_value(json_object_get(job, "size"));
    unsigned mode = (unsigned)json_integer_value(json_object_get(job, "mode"));
    int r = stk_session_file_write(s, jstr(job, "id"), jstr(job, "path"), mode, GW_W_STDIN_FD,
                                   (uint64_t)size, &err);
    char ms[8];
    snprintf(ms, sizeof(ms), "%04o", mode);
    if (r < 0)
        w_file_fail(r, err);
    else
        gw_job_result(
            GW_W_OUT_FD, 200,
            json_pack("{s:s,s:I,s:s}", "path", jstr(job, "path"), "size", size, "mode", ms));
}

/* ---- an audit page, streamed (GET .../audit?after=SEQ&limit=N) ---- */

struct w_page {
    struct stk_buf out; /* one batch of records, written before the next is read */
    size_t n, bytes;
    int64_t last;
};

static int w_page_one(const struct stk_audit_rec *r, void *ud)
{
    struct w_page *p = ud;
    if (p->bytes >= GW_AUDIT_PAGE_BYTES)
        return -ENOBUFS; /* the rest is the next page's */
    struct stk_buf line = {0};
    stk_audit_rec_jsonl(r, &line);
    size_t len = line.len;
    while (len && line.data[len - 1] == '\n')
        len--;
    if (p->n)
        stk_buf_append(&p->out, ",", 1);
    stk_buf_append(&p->out, line.data, len);
    p->bytes += len + 1;
    stk_buf_free(&line);
    p->n++;
    p->last = r->seq;
    return 0;
}

/*
 * The page is read from SQLite in batches of GW_AUDIT_BATCH records, each
 * written to the pipe before the next is read: a slow reader holds this
 * process on a full pipe, never the server, which relays one chunk at a
 * time (job.c). The same JSON as a page built whole: {"records":[...],
 * "next":SEQ|null}. A read that fails midway ends the body early (invalid
 * JSON: the client knows).
 */
static void w_audit(struct stk_session *s, json_t *job)
{
    const char *id = jstr(job, "id");
    int64_t after = json_integer_value(json_object_get(job, "after"));
    int64_t limit = json_integer_value(json_object_get(job, "limit"));
    struct w_page p = {.last = after};
    int r = 0;
    if (stk_write_all(GW_W_OUT_FD, "{\"records\":[", 12) < 0)
        return;
    while (r >= 0 && (int64_t)p.n < limit) {
        size_t before = p.n;
        int64_t want = limit - (int64_t)p.n;
        struct stk_error *err = NULL;
        r = stk_audit_list_page(stk_session_store(s), id, p.last,
                                (int)(want < GW_AUDIT_BATCH ? want : GW_AUDIT_BATCH), w_page_one,
                                &p, &err);
        stk_error_free(err);
        if (r < 0 && r != -ENOBUFS)
            return;
        if (stk_write_all(GW_W_OUT_FD, p.out.data ? p.out.data : "", p.out.len) < 0)
            return;
        p.out.len = 0;
        if (p.n == before || p.n - before < (size_t)GW_AUDIT_BATCH)
            break; /* the chain has no more (or the page is full by size) */
    }
    stk_buf_free(&p.out);
    /* a full page (or one cut by size) may have more after it */
    char tail[64];
    if (r == -ENOBUFS || (int64_t)p.n == limit)
        snprintf(tail, sizeof(tail), "],\"next\":%lld}\n", (long long)p.last);
    else
        snprintf(tail, sizeof(tail), "],\"next\":null}\n");
    (void)stk_write_all(GW_W_OUT_FD, tail, strlen(tail));
}

/* ports: the client's socket on fd 5 (ports.c) */
static void w_port(struct stk_session *s, json_t *job)
{
    json_t *port = json_object_get(job, "port");
    const char *head = jstr(job, "head");
    if (!json_is_integer(port) || !head)
        return;
    gw_port_proxy(s, jstr(job, "id"), (uint16_t)json_integer_value(port), head,
                  json_is_true(json_object_get(job, "upgrade")),
                  json_is_true(json_object_get(job, "raw")), GW_W_STDIN_FD);
}

static const struct {
    const char *op;
    void (*fn)(struct stk_session *s, json_t *job);
} ops[] = {
    {"create", w_create},
    {"stop", w_stop},
    {"start", w_start},
    {"rm", w_rm},
    {"logs", w_logs},
    {"pool_create", w_pool_create},
    {"pool_rm", w_pool_rm},
    {"exec", w_exec},
    {"audit", w_audit},
    {"replicas", w_replicas},
    {"port", w_port},
    {"file_read", w_file_read},
    {"file_write", w_file_write},
};

int stk_gw_worker_main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    json_error_t je;
    FILE *in = fdopen(GW_W_JOB_FD, "r");
    json_t *job = in ? json_loadf(in, 0, &je) : NULL;
    if (in)
        fclose(in);
    const char *op = jstr(job, "op");
    struct stk_local_paths paths = {.state_dir = jstr(job, "state_dir"),
                                    .run_dir = jstr(job, "run_dir")};
    if (!op || !paths.state_dir || !paths.run_dir) {
        gw_job_error(GW_W_OUT_FD, EINVAL, "the worker got no job");
        json_decref(job);
        return 1;
    }
    struct stk_session *s = NULL;
    struct stk_error *err = NULL;
    const char *backend = jstr(job, "backend");
    int be = backend ? stk_enum_lookup(stk_backend_names, _STK_BACKEND_N, backend) : 0;
    const char *kc = jstr(job, "kubeconfig"), *ctx = jstr(job, "context");
    struct stk_session_opts o = {.kubeconfig = kc && *kc ? kc : NULL,
                                 .context = ctx && *ctx ? ctx : NULL};
    int r = be >= 0 ? stk_session_open_opts(&paths, (enum stk_backend)be, jstr(job, "actor"), &o,
                                            &s, &err)
                    : stk_error_make(&err, EINVAL, "the worker got backend '%s'", backend);
    if (r < 0) {
        w_fail(r, err);
        json_decref(job);
        return 1;
    }
    /* through the API, names are unique per tenant */
    stk_store_unique_names(stk_session_store(s), true);
    for (size_t i = 0; i < STK_ARRAY_SIZE(ops); i++)
        if (!strcmp(ops[i].op, op))
            ops[i].fn(s, job);
    stk_session_close(s);
    json_decref(job);
    return 0;
}
