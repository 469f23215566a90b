/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The gateway's HTTP layer, in process on 127.0.0.1 with a test double for
 * authentication and authorization (a token table and three rules) and a
 * private state directory: 401s, 404 versus 403, bodies the API refuses,
 * a slow client, the event stream and its resumption across a restart.
 * No sandbox is created: the records are written into the store directly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

#include "gateway/http.h"
#include <jansson.h>
#include "gateway/internal.h"
#include "session/audit.h"
#include "session/store.h"

/* ---- the test double: tokens → principals; a few rules ---- */

static const struct {
    const char *header, *id;
} tokens[] = {
    {"Bearer alice-token", "alice"}, /* sees her own sandboxes; others are hidden */
    {"Bearer bob-token", "bob"},     /* may list; denied (403) everything else */
    {"Bearer ops-token", "ops"},     /* may do everything */
};

static int double_authenticate(void *ud, const char *authorization, const char *cert_subject,
                               struct stk_principal *ret)
{
    (void)ud;
    (void)cert_subject;
    if (!authorization)
        return -ENOENT;
    for (size_t i = 0; i < STK_ARRAY_SIZE(tokens); i++)
        if (!strcmp(authorization, tokens[i].header)) {
            *ret = (struct stk_principal){.kind = STK_PRINCIPAL_TOKEN};
            snprintf(ret->token_id, sizeof(ret->token_id), "%s", tokens[i].id);
            return 0;
        }
    return -EACCES;
}

static void double_authorize(void *ud, const struct stk_principal *who, enum stk_verb verb,
                             const struct stk_authz_target *t, struct stk_authz_decision *ret)
{
    (void)ud;
    snprintf(ret->identity, sizeof(ret->identity), "user:%s", who->token_id);
    if (!strcmp(who->token_id, "ops")) {
        ret->allow = true;
    } else if (!strcmp(who->token_id, "alice")) {
        ret->allow = verb == STK_VERB_LIST || (t->owner && !strcmp(t->owner, "alice"));
        ret->hide = !ret->allow;
    } else {
        ret->allow = verb == STK_VERB_LIST;
    }
    /* the target's namespace and tenant, for test_target_namespace */
    snprintf(ret->reason, sizeof(ret->reason), "rule for %s ns=%s tenant=%s", who->token_id,
             t && t->namespace ? t->namespace : "-", t && t->tenant ? t->tenant : "-");
}

static const struct stk_gw_auth double_auth = {.authenticate = double_authenticate,
                                               .authorize = double_authorize};

/* ---- the server, in a child process ---- */

struct fixture {
    char dir[64], state[96], run[96], access_log[96];
    char listen[128]; /* "" : 127.0.0.1:0 */
    pid_t server;
    int port;
    struct stk_store *st;
};

static void server_start(struct fixture *f)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    f->server = fork();
    assert_true(f->server >= 0);
    if (f->server == 0) {
        close(p[0]);
        struct stk_local_paths paths = {.state_dir = f->state, .run_dir = f->run};
        struct stk_gw_options o = {.listen = f->listen[0] ? f->listen : "127.0.0.1:0",
                                   .paths = &paths,
                                   .auth = &double_auth,
                                   .access_log = f->access_log,
                                   .timeout_s = 2};
        struct stk_gw *g = NULL;
        struct stk_error *err = NULL;
        int port = -1;
        if (stk_gw_new(&o, &g, &err) < 0)
            fprintf(stderr, "stk_gw_new: %s\n", err->msg);
        else
            port = stk_gw_port(g);
        (void)!write(p[1], &port, sizeof(port));
        close(p[1]);
        if (g)
            stk_gw_run(g);
        stk_gw_free(g);
        exit(0); /* not _exit: sanitizer builds check the server for leaks */
    }
    close(p[1]);
    assert_int_equal(read(p[0], &f->port, sizeof(f->port)), (int)sizeof(f->port));
    close(p[0]);
    assert_true(f->port > 0 || (f->listen[0] && f->port == 0));
}

static void server_stop(struct fixture *f)
{
    int status = 0;
    kill(f->server, SIGTERM);
    assert_int_equal(waitpid(f->server, &status, 0), f->server);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void rm_tree(const char *path)
{
    DIR *d = opendir(path);
    if (!d) {
        unlink(path);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            _cleanup_free_ char *p = stk_xasprintf("%s/%s", path, e->d_name);
            rm_tree(p);
        }
    closedir(d);
    rmdir(path);
}

static void insert_sandbox(struct stk_store *st, const char *id, const char *owner)
{
    struct stk_sb_rec r = {.phase = STK_SB_SUCCEEDED, .exit_code = 0};
    snprintf(r.id, sizeof(r.id), "%s", id);
    snprintf(r.name, sizeof(r.name), "%s", id);
    snprintf(r.owner, sizeof(r.owner), "%s", owner);
    snprintf(r.tenant, sizeof(r.tenant), "t1");
    snprintf(r.runtime, sizeof(r.runtime), "crun");
    r.spec = stk_xasprintf("apiVersion: stockade.dev/v1alpha1\nkind: Sandbox\nmetadata: {name: "
                           "%s}\nspec:\n  command: [\"/bin/true\"]\n",
                           id);
    _cleanup_error_ struct stk_error *err = NULL;
    assert_int_equal(stk_store_sb_insert(st, &r, &err), 0);
    stk_sb_rec_free(&r);
}

static int setup(void **state)
{
    struct fixture *f = stk_xcalloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/stk-gw-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->state, sizeof(f->state), "%s/state", f->dir);
    snprintf(f->run, sizeof(f->run), "%s/run", f->dir);
    snprintf(f->access_log, sizeof(f->access_log), "%s/access.log", f->dir);
    _cleanup_error_ struct stk_error *err = NULL;
    if (stk_store_open(f->state, &f->st, &err) < 0)
        return -1;
    insert_sandbox(f->st, "sb-alice", "alice");
    insert_sandbox(f->st, "sb-carol", "carol");
    server_start(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    server_stop(f);
    stk_store_close(f->st);
    rm_tree(f->dir);
    free(f);
    return 0;
}

/* ---- a tiny HTTP client over raw sockets ---- */

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

static void send_all(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w <= 0)
            return; /* the server may close first (413) */
        s += w;
        n -= (size_t)w;
    }
}

struct reply {
    int status;
    struct stk_buf raw;
    const char *body;
};

/* Sends one request (Connection: close) and reads the whole reply. */
static void http(int port, const char *method, const char *path, const char *auth,
                 const char *ctype, const char *body, size_t body_len, struct reply *ret)
{
    int fd = dial(port);
    struct stk_buf req = {0};
    stk_buf_printf(&req, "%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n", method, path);
    if (auth)
        stk_buf_printf(&req, "Authorization: %s\r\n", auth);
    if (ctype)
        stk_buf_printf(&req, "Content-Type: %s\r\n", ctype);
    if (body)
        stk_buf_printf(&req, "Content-Length: %zu\r\n", body_len);
    stk_buf_puts(&req, "\r\n");
    send_all(fd, req.data, req.len);
    if (body)
        send_all(fd, body, body_len);
    stk_buf_free(&req);
    *ret = (struct reply){0};
    char buf[4096];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
        stk_buf_append(&ret->raw, buf, (size_t)n);
    close(fd);
    const char *s = stk_buf_str(&ret->raw);
    assert_int_equal(sscanf(s, "HTTP/1.%*d %d", &ret->status), 1);
    const char *b = strstr(s, "\r\n\r\n");
    ret->body = b ? b + 4 : "";
}

#define GET(f, path, auth, r) http((f)->port, "GET", path, auth, NULL, NULL, 0, r)

static void assert_error(const struct reply *r, int status, const char *code)
{
    assert_int_equal(r->status, status);
    _cleanup_free_ char *want = stk_xasprintf("\"code\":\"%s\"", code);
    if (!strstr(r->body, want))
        fail_msg("expected %s in: %s", want, r->body);
}

/* ---- tests ---- */

static void test_authentication(void **state)
{
    struct fixture *f = *state;
    struct reply r;
    GET(f, "/healthz", NULL, &r);
    assert_int_equal(r.status, 200);
    stk_buf_free(&r.raw);
    GET(f, "/v1/sandboxes", NULL, &r);
    assert_error(&r, 401, "unauthenticated");
    assert_non_null(strstr(r.raw.data, "\r\nWWW-Authenticate: Bearer realm=\"stockade\"\r\n"));
    stk_buf_free(&r.raw);
    GET(f, "/v1/sandboxes", "Bearer nope", &r);
    assert_error(&r, 401, "unauthenticated");
    assert_non_null(strstr(r.body, "\"message\":\"invalid credentials\""));
    assert_non_null(
        strstr(r.raw.data,
               "\r\nWWW-Authenticate: Bearer realm=\"stockade\", error=\"invalid_token\"\r\n"));
    stk_buf_free(&r.raw);
    GET(f, "/v1/whoami", "Bearer alice-token", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"identity\":\"user:alice\""));
    assert_non_null(strstr(r.body, "\"token_id\":\"alice\""));
    stk_buf_free(&r.raw);
    GET(f, "/v1/nothing", "Bearer alice-token", &r);
    assert_error(&r, 404, "not_found");
    stk_buf_free(&r.raw);
    http(f->port, "DELETE", "/v1/sandboxes", "Bearer ops-token", NULL, NULL, 0, &r);
    assert_error(&r, 405, "method_not_allowed");
    assert_non_null(strstr(r.raw.data, "\r\nAllow: GET, POST\r\n"));
    stk_buf_free(&r.raw);
    http(f->port, "PUT", "/v1/sandboxes/sb-alice", "Bearer ops-token", NULL, NULL, 0, &r);
    assert_error(&r, 405, "method_not_allowed");
    assert_non_null(strstr(r.raw.data, "\r\nAllow: GET, DELETE\r\n"));
    stk_buf_free(&r.raw);
    /* with a body, the gate answers the 405 itself, with the same header */
    http(f->port, "PUT", "/v1/sandboxes", "Bearer ops-token", "application/json", "{}", 2, &r);
    assert_error(&r, 405, "method_not_allowed");
    assert_non_null(strstr(r.raw.data, "\r\nAllow: GET, POST\r\n"));
    stk_buf_free(&r.raw);
}

static int count_authz(const struct stk_audit_rec *a, void *ud)
{
    int *n = ud;
    if (!strcmp(a->event, "authz") && strstr(a->details, "\"decision\":\"deny_hidden\"") &&
        !strcmp(a->actor, "user:alice"))
        (*n)++;
    return 0;
}

static void test_hidden_versus_forbidden(void **state)
{
    struct fixture *f = *state;
    struct reply r, missing;
    GET(f, "/v1/sandboxes/sb-alice", "Bearer alice-token", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"id\":\"sb-alice\""));
    assert_non_null(strstr(r.body, "\"phase\":\"succeeded\""));
    stk_buf_free(&r.raw);

    /* carol's sandbox is hidden from alice: the very answer of a missing one */
    GET(f, "/v1/sandboxes/sb-carol", "Bearer alice-token", &r);
    GET(f, "/v1/sandboxes/sb-nobody", "Bearer alice-token", &missing);
    assert_error(&r, 404, "not_found");
    assert_error(&missing, 404, "not_found");
    _cleanup_free_ char *want = stk_xasprintf("%s", missing.body);
    char *at = strstr(want, "sb-nobody");
    assert_non_null(at);
    memcpy(at, "sb-carol\"", 9);
    memmove(at + 8, at + 9, strlen(at + 9) + 1);
    assert_string_equal(r.body, want);
    stk_buf_free(&r.raw);
    stk_buf_free(&missing.raw);

    GET(f, "/v1/sandboxes/sb-alice", "Bearer bob-token", &r);
    assert_error(&r, 403, "forbidden");
    stk_buf_free(&r.raw);

    /* explain's contract of the recorded spec, with the recorded runtime */
    GET(f, "/v1/sandboxes/sb-alice/contract", "Bearer alice-token", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"sandbox\":\"sb-alice\""));
    assert_non_null(strstr(r.body, "\"runtime\":\"crun\""));
    stk_buf_free(&r.raw);
    GET(f, "/v1/sandboxes/sb-carol/contract", "Bearer alice-token", &r);
    assert_error(&r, 404, "not_found");
    stk_buf_free(&r.raw);

    /* a list shows only what the caller may get */
    GET(f, "/v1/sandboxes", "Bearer alice-token", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "sb-alice"));
    assert_null(strstr(r.body, "sb-carol"));
    stk_buf_free(&r.raw);
    GET(f, "/v1/sandboxes", "Bearer ops-token", &r);
    assert_non_null(strstr(r.body, "sb-carol"));
    stk_buf_free(&r.raw);

    /* every decision is in the trail, denials too (read decisions are
     * group-committed within a few ms: wait for them, bounded) */
    int n = 0;
    for (int i = 0; i < 100 && n < 3; i++) {
        _cleanup_error_ struct stk_error *err = NULL;
        n = 0;
        assert_int_equal(stk_audit_list(f->st, NULL, count_authz, &n, &err), 0);
        if (n < 3)
            usleep(10 * 1000);
    }
    assert_int_equal(n, 3); /* two GETs of sb-carol, and the list's batch with its row */
}

static void test_refused_bodies(void **state)
{
    struct fixture *f = *state;
    struct reply r;
    const char *auth = "Bearer ops-token", *json = "application/json";
    http(f->port, "POST", "/v1/sandboxes", auth, json, "{\"spec\": ", 9, &r);
    assert_error(&r, 400, "bad_request");
    assert_non_null(strstr(r.body, "line 1, column"));
    stk_buf_free(&r.raw);

    const char *unknown = "{\"spec\": \"x\", \"bogus\": 1}";
    http(f->port, "POST", "/v1/sandboxes", auth, json, unknown, strlen(unknown), &r);
    assert_error(&r, 400, "bad_request");
    assert_non_null(strstr(r.body, "unknown field \\\"bogus\\\""));
    stk_buf_free(&r.raw);

    const char *ok = "{\"spec\": \"x\"}";
    http(f->port, "POST", "/v1/sandboxes", auth, "text/plain", ok, strlen(ok), &r);
    assert_error(&r, 415, "unsupported_media_type");
    stk_buf_free(&r.raw);
    http(f->port, "POST", "/v1/sandboxes", auth, NULL, ok, strlen(ok), &r);
    assert_int_equal(r.status, 415);
    stk_buf_free(&r.raw);

    /* an invalid spec: its diagnostics, with positions */
    const char *bad = "{\"spec\": \"apiVersion: stockade.dev/v1\\nkind: Sandbox\\nmetadata:\\n"
                      "  name: x\\nspec:\\n  nonsense: 1\\n\"}";
    http(f->port, "POST", "/v1/sandboxes", auth, json, bad, strlen(bad), &r);
    assert_error(&r, 400, "bad_request");
    assert_non_null(strstr(r.body, "\"diagnostics\":[\"spec:"));
    stk_buf_free(&r.raw);

    size_t big = STK_GW_MAX_BODY + 1;
    char *huge = stk_xmalloc(big);
    memset(huge, ' ', big);
    http(f->port, "POST", "/v1/sandboxes", auth, json, huge, big, &r);
    free(huge);
    assert_int_equal(r.status, 413);
    stk_buf_free(&r.raw);

    GET(f, "/healthz", NULL, &r);
    assert_int_equal(r.status, 200);
    stk_buf_free(&r.raw);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_slow_client(void **state)
{
    struct fixture *f = *state;
    int slow = dial(f->port);
    send_all(slow, "GET /v1/sandb", 13);
    struct reply r;
    int64_t t0 = now_ms();
    GET(f, "/healthz", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_true(now_ms() - t0 < 1000);
    stk_buf_free(&r.raw);
    /* the half request times out (2 s here): the server closes it */
    char buf[512];
    ssize_t n;
    while ((n = recv(slow, buf, sizeof(buf), 0)) > 0)
        ;
    assert_int_equal(n, 0);
    assert_true(now_ms() - t0 < 8000);
    close(slow);
}

/* Opens the event stream; returns the socket. */
static int subscribe(struct fixture *f, const char *last_id)
{
    int fd = dial(f->port);
    struct stk_buf req = {0};
    stk_buf_printf(&req, "GET /v1/events HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer "
                         "alice-token\r\nAccept: text/event-stream\r\n");
    if (last_id)
        stk_buf_printf(&req, "Last-Event-ID: %s\r\n", last_id);
    stk_buf_puts(&req, "\r\n");
    send_all(fd, req.data, req.len);
    stk_buf_free(&req);
    return fd;
}

/* Reads until `want` appears (or 5 s pass); returns what was read. */
static char *read_until(int fd, const char *want)
{
    struct stk_buf b = {0};
    int64_t end = now_ms() + 5000;
    while (!strstr(stk_buf_str(&b), want) && now_ms() < end) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 200) <= 0)
            continue;
        char buf[4096];
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n <= 0)
            break;
        stk_buf_append(&b, buf, (size_t)n);
    }
    if (!strstr(stk_buf_str(&b), want))
        fail_msg("no '%s' in: %s", want, stk_buf_str(&b));
    return stk_buf_steal(&b);
}

static int64_t append(struct fixture *f, const char *id, const char *event)
{
    _cleanup_error_ struct stk_error *err = NULL;
    assert_int_equal(stk_audit_append(f->st, id, event, "test", "{\"n\":1}", &err), 0);
    int64_t head = 0;
    assert_int_equal(stk_audit_count(f->st, NULL, &head, &err), 0);
    return head;
}

static void test_events_resume(void **state)
{
    struct fixture *f = *state;
    int fd = subscribe(f, NULL);
    free(read_until(fd, "text/event-stream"));
    int64_t hidden = append(f, "sb-carol", "ready");
    int64_t first = append(f, "sb-alice", "ready");
    char want[64];
    snprintf(want, sizeof(want), "id: %lld\nevent: ready\n", (long long)first);
    _cleanup_free_ char *got = read_until(fd, want);
    snprintf(want, sizeof(want), "id: %lld\n", (long long)hidden);
    assert_null(strstr(got, want)); /* carol's sandbox is not alice's to see */
    close(fd);

    /* missed while away: only the later ones, from Last-Event-ID */
    int64_t second = append(f, "sb-alice", "stopped");
    int64_t third = append(f, "sb-alice", "started");
    char last[32];
    snprintf(last, sizeof(last), "%lld", (long long)first);
    fd = subscribe(f, last);
    snprintf(want, sizeof(want), "id: %lld\nevent: started\n", (long long)third);
    _cleanup_free_ char *again = read_until(fd, want);
    snprintf(want, sizeof(want), "id: %lld\nevent: stopped\n", (long long)second);
    assert_non_null(strstr(again, want));
    snprintf(want, sizeof(want), "id: %lld\n", (long long)first);
    assert_null(strstr(again, want));
    close(fd);

    /* a new server resumes from the trail too */
    server_stop(f);
    int64_t fourth = append(f, "sb-alice", "killed");
    server_start(f);
    snprintf(last, sizeof(last), "%lld", (long long)third);
    fd = subscribe(f, last);
    snprintf(want, sizeof(want), "id: %lld\nevent: killed\n", (long long)fourth);
    _cleanup_free_ char *after = read_until(fd, want);
    snprintf(want, sizeof(want), "id: %lld\n", (long long)third);
    assert_null(strstr(after, want));
    close(fd);
}

static void test_metrics(void **state)
{
    struct fixture *f = *state;
    struct reply r;
    GET(f, "/v1/sandboxes/sb-alice", "Bearer alice-token", &r);
    stk_buf_free(&r.raw);
    GET(f, "/metrics", "Bearer ops-token", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "stockade_http_requests_total{method=\"GET\",route=\"/v1/"
                                   "sandboxes/{}\",status=\"200\"} 1"));
    assert_non_null(strstr(r.body, "stockade_sandboxes{phase=\"succeeded\"} 2"));
    assert_non_null(strstr(r.body, "stockade_authz_decisions_total{decision=\"allow\"}"));
    stk_buf_free(&r.raw);
    GET(f, "/metrics", NULL, &r);
    assert_int_equal(r.status, 401);
    stk_buf_free(&r.raw);
    /* metrics count every tenant's sandboxes: only the verb opens them */
    GET(f, "/metrics", "Bearer bob-token", &r);
    assert_error(&r, 403, "forbidden");
    assert_null(strstr(r.body, "stockade_sandboxes"));
    stk_buf_free(&r.raw);
}

/* One JSON line per request, with who asked and never the credentials. */
static void test_access_log(void **state)
{
    struct fixture *f = *state;
    struct reply r;
    GET(f, "/v1/whoami", "Bearer alice-token", &r);
    stk_buf_free(&r.raw);
    GET(f, "/v1/sandboxes/%0a\"x", "Bearer bob-token", &r);
    stk_buf_free(&r.raw);
    http(f->port, "POST", "/v1/sandboxes", "Bearer nope", "application/json", "{}", 2, &r);
    stk_buf_free(&r.raw);
    char log[16384];
    FILE *fp = fopen(f->access_log, "re");
    assert_non_null(fp);
    size_t n = fread(log, 1, sizeof(log) - 1, fp);
    fclose(fp);
    log[n] = '\0';
    assert_non_null(strstr(log, "\"method\":\"GET\",\"path\":\"/v1/whoami\",\"status\":200,"
                                "\"identity\":\"user:alice\",\"duration_ms\":"));
    /* refused by the gate before evhttp saw it: logged there */
    assert_non_null(strstr(log, "\"method\":\"POST\",\"path\":\"/v1/sandboxes\",\"status\":401,"
                                "\"identity\":\"-\""));
    assert_null(strstr(log, "token"));
    /* every line is one JSON object: a client cannot split or forge lines */
    for (char *line = log, *nl; (nl = strchr(line, '\n')); line = nl + 1) {
        *nl = '\0';
        json_error_t je;
        json_t *j = json_loads(line, 0, &je);
        if (!j)
            fail_msg("not JSON: %s", line);
        assert_non_null(json_object_get(j, "status"));
        json_decref(j);
    }
}

/* Exec's upgrade: refusals are ordinary replies; after 101 the frames. A
 * sandbox that is not running answers with an ERROR frame. */
static void test_exec_upgrade(void **state)
{
    struct fixture *f = *state;
    struct reply r;
    const char *body = "{\"argv\": [\"id\"]}";
    http(f->port, "POST", "/v1/sandboxes/sb-alice:exec", "Bearer alice-token", "application/json",
         body, strlen(body), &r);
    assert_error(&r, 400, "bad_request"); /* no Upgrade */
    stk_buf_free(&r.raw);
    http(f->port, "POST", "/v1/sandboxes/sb-carol:exec", "Bearer alice-token", "application/json",
         body, strlen(body), &r);
    assert_error(&r, 404, "not_found");
    stk_buf_free(&r.raw);

    int fd = dial(f->port);
    _cleanup_free_ char *req = stk_xasprintf(
        "POST /v1/sandboxes/sb-alice:exec HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer "
        "alice-token\r\nConnection: Upgrade\r\nUpgrade: stockade-exec.v1\r\nContent-Type: "
        "application/json\r\nContent-Length: %zu\r\n\r\n%s",
        strlen(body), body);
    send_all(fd, req, strlen(req));
    struct stk_buf got = {0};
    char buf[4096];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
        stk_buf_append(&got, buf, (size_t)n);
    close(fd);
    const char *s = stk_buf_str(&got);
    assert_true(stk_startswith(s, "HTTP/1.1 101 Switching Protocols\r\n"));
    const char *frames = strstr(s, "\r\n\r\n");
    assert_non_null(frames);
    const uint8_t *h = (const uint8_t *)frames + 4;
    size_t left = got.len - (size_t)((const char *)h - s);
    assert_true(left >= 6 + 5);
    assert_int_equal(h[0], 35); /* ERROR: it is not running */
    uint32_t len = (uint32_t)h[2] << 24 | (uint32_t)h[3] << 16 | (uint32_t)h[4] << 8 | h[5];
    assert_int_equal(left, 6 + len);
    assert_non_null(memmem(h + 11, len - 5, "needs a ready sandbox", 21));
    stk_buf_free(&got);

    /* the server is still there */
    GET(f, "/healthz", NULL, &r);
    assert_int_equal(r.status, 200);
    stk_buf_free(&r.raw);
}

/* Operations run in worker processes (this binary, re-executed): their
 * answers and errors come back as JSON, their actor is the caller. */
static void test_worker_operations(void **state)
{
    struct fixture *f = *state;
    struct reply r;
    http(f->port, "POST", "/v1/sandboxes/sb-carol:stop", "Bearer ops-token", NULL, NULL, 0, &r);
    assert_error(&r, 409, "conflict");
    stk_buf_free(&r.raw);
    http(f->port, "DELETE", "/v1/sandboxes/sb-carol", "Bearer ops-token", NULL, NULL, 0, &r);
    if (r.status != 200)
        fail_msg("DELETE: %s", r.body);
    /* deleting: the record was written here, no sandbox directory exists
     * for the delete to finish with (as `stockade rm` would leave it) */
    assert_non_null(strstr(r.body, "\"phase\":\"delet"));
    stk_buf_free(&r.raw);
    /* a stream from a worker: this record has no logs, the stream is empty */
    GET(f, "/v1/sandboxes/sb-alice/logs?follow=1", "Bearer alice-token", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(stk_buf_str(&r.raw), "Transfer-Encoding: chunked"));
    stk_buf_free(&r.raw);
    GET(f, "/v1/sandboxes/sb-alice/logs?since=x", "Bearer alice-token", &r);
    assert_error(&r, 400, "bad_request");
    stk_buf_free(&r.raw);
    GET(f, "/v1/pools", "Bearer ops-token", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"items\":[]}\n");
    stk_buf_free(&r.raw);
    const char *pool = "{\"name\": \"p\", \"size\": 0, \"spec\": \"x\"}";
    http(f->port, "POST", "/v1/pools", "Bearer ops-token", "application/json", pool, strlen(pool),
         &r);
    assert_error(&r, 400, "bad_request");
    stk_buf_free(&r.raw);
    http(f->port, "DELETE", "/v1/pools/none", "Bearer ops-token", NULL, NULL, 0, &r);
    assert_error(&r, 404, "not_found");
    stk_buf_free(&r.raw);
    GET(f, "/v1/sandboxes/sb-carol/audit", "Bearer ops-token", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"actor\":\"user:ops\""));
    stk_buf_free(&r.raw);
}

static void test_unix_socket(void **state)
{
    struct fixture *f = *state;
    server_stop(f);
    snprintf(f->listen, sizeof(f->listen), "unix:%s/api.sock", f->dir);
    server_start(f);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%s/api.sock", f->dir);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
        fail_msg("connect %s: %s", a.sun_path, strerror(errno));
    const char *req = "GET /v1/whoami HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer "
                      "bob-token\r\nConnection: close\r\n\r\n";
    send_all(fd, req, strlen(req));
    struct stk_buf got = {0};
    char buf[1024];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
        stk_buf_append(&got, buf, (size_t)n);
    close(fd);
    assert_true(stk_startswith(stk_buf_str(&got), "HTTP/1.1 200"));
    assert_non_null(strstr(stk_buf_str(&got), "\"identity\":\"user:bob\""));
    stk_buf_free(&got);
}

/* Holds the lock of a sandbox's directory, as its monitor would. */
static int hold_lock(struct fixture *f, const char *id)
{
    _cleanup_free_ char *parent = stk_xasprintf("%s/sandboxes", f->state);
    _cleanup_free_ char *dir = stk_xasprintf("%s/%s", parent, id);
    _cleanup_free_ char *path = stk_xasprintf("%s/lock", dir);
    (void)mkdir(parent, 0700);
    assert_int_equal(mkdir(dir, 0700), 0);
    int lock = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    assert_true(lock >= 0);
    assert_int_equal(flock(lock, LOCK_EX), 0);
    return lock;
}

/* An operation that outlasts the request timeout (2 s here) still answers,
 * and the server keeps serving while it runs: the delete waits for the
 * sandbox's lock, which this test holds for 4 s. */
static void test_long_operation(void **state)
{
    struct fixture *f = *state;
    int lock = hold_lock(f, "sb-alice");
    int fd = dial(f->port);
    const char *req = "DELETE /v1/sandboxes/sb-alice HTTP/1.1\r\nHost: t\r\nAuthorization: "
                      "Bearer ops-token\r\nConnection: close\r\n\r\n";
    send_all(fd, req, strlen(req));
    int64_t t0 = now_ms();
    while (now_ms() - t0 < 4000) {
        struct reply r;
        GET(f, "/healthz", NULL, &r);
        assert_int_equal(r.status, 200);
        stk_buf_free(&r.raw);
        usleep(500 * 1000);
    }
    close(lock);
    struct stk_buf got = {0};
    char buf[4096];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
        stk_buf_append(&got, buf, (size_t)n);
    close(fd);
    if (!stk_startswith(stk_buf_str(&got), "HTTP/1.1 200"))
        fail_msg("after %lld ms: %s", (long long)(now_ms() - t0), stk_buf_str(&got));
    assert_non_null(strstr(stk_buf_str(&got), "\"id\":\"sb-alice\""));
    stk_buf_free(&got);

    /* a client that leaves while its operation runs: the operation ends,
     * its answer is dropped, the server carries on */
    lock = hold_lock(f, "sb-carol");
    fd = dial(f->port);
    req = "DELETE /v1/sandboxes/sb-carol HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer "
          "ops-token\r\n\r\n";
    send_all(fd, req, strlen(req));
    usleep(300 * 1000);
    close(fd);
    usleep(300 * 1000);
    close(lock);
    usleep(700 * 1000);
    struct reply r;
    GET(f, "/v1/sandboxes/sb-carol", "Bearer ops-token", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"phase\":\"delet"));
    stk_buf_free(&r.raw);
}

static int find_reason(const struct stk_audit_rec *a, void *ud)
{
    const char **want = ud;
    if (!strcmp(a->event, "authz") && strstr(a->details, *want))
        *want = NULL;
    return 0;
}

static void assert_decided(struct fixture *f, const char *sandbox, const char *reason)
{
    const char *want = reason;
    /* read decisions are group-committed within a few ms (docs/gateway.md) */
    for (int i = 0; i < 100 && want; i++) {
        _cleanup_error_ struct stk_error *err = NULL;
        want = reason;
        assert_int_equal(stk_audit_list(f->st, sandbox, find_reason, &want, &err), 0);
        if (want)
            usleep(10 * 1000);
    }
    if (want)
        fail_msg("no authz record of %s with \"%s\"", sandbox ? sandbox : "the host", reason);
}

/* A stored sandbox's namespace is its spec's (the record has no namespace
 * of its own), not its tenant; a pool's tenant is the one asked for. */
static void test_target_namespace(void **state)
{
    struct fixture *f = *state;
    static char spec[] = "{\"apiVersion\":\"stockade.dev/v1alpha1\",\"kind\":\"Sandbox\","
                         "\"metadata\":{\"name\":\"sb-ns\",\"namespace\":\"team-ns\"},"
                         "\"spec\":{\"rootfs\":\"host\"}}";
    struct stk_sb_rec rec = {.phase = STK_SB_SUCCEEDED, .exit_code = 0, .spec = spec};
    snprintf(rec.id, sizeof(rec.id), "sb-ns");
    snprintf(rec.name, sizeof(rec.name), "sb-ns");
    snprintf(rec.owner, sizeof(rec.owner), "dave");
    snprintf(rec.tenant, sizeof(rec.tenant), "t1");
    snprintf(rec.runtime, sizeof(rec.runtime), "crun");
    _cleanup_error_ struct stk_error *err = NULL;
    assert_int_equal(stk_store_sb_insert(f->st, &rec, &err), 0);

    struct reply r;
    GET(f, "/v1/sandboxes/sb-ns", "Bearer ops-token", &r);
    assert_int_equal(r.status, 200);
    stk_buf_free(&r.raw);
    assert_decided(f, "sb-ns", "rule for ops ns=team-ns tenant=t1");
    /* a spec without metadata.namespace: the resolved default namespace */
    GET(f, "/v1/sandboxes/sb-alice", "Bearer ops-token", &r);
    stk_buf_free(&r.raw);
    assert_decided(f, "sb-alice", "rule for ops ns=default tenant=t1");
    GET(f, "/v1/sandboxes", "Bearer alice-token", &r); /* the list's rows too */
    stk_buf_free(&r.raw);
    assert_decided(f, "", "rule for alice ns=team-ns tenant=t1");

    static const char pool[] =
        "{\"name\":\"p\",\"size\":1,\"tenant\":\"acme\",\"spec\":"
        "\"{\\\"apiVersion\\\":\\\"stockade.dev/v1alpha1\\\",\\\"kind\\\":"
        "\\\"Sandbox\\\",\\\"metadata\\\":{\\\"name\\\":\\\"p\\\",\\\"namespace\\\":"
        "\\\"team-p\\\"},\\\"spec\\\":{\\\"rootfs\\\":\\\"host\\\"}}\"}";
    http(f->port, "POST", "/v1/pools", "Bearer bob-token", "application/json", pool, strlen(pool),
         &r);
    assert_error(&r, 403, "forbidden");
    stk_buf_free(&r.raw);
    assert_decided(f, "", "rule for bob ns=team-p tenant=acme");
}

/* A body is read only for a caller who may send it: the answer to an
 * unauthenticated or unknown caller comes from the head alone, while the
 * client has sent none of its 1 MiB body. */
static void test_gate_refuses_before_body(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *auth, *want;
    } cases[] = {
        {NULL, "HTTP/1.1 401"},
        {"Authorization: Bearer nobody\r\n", "HTTP/1.1 401"},
        {"Authorization: Bearer alice-token\r\nAuthorization: Bearer ops-token\r\n",
         "HTTP/1.1 401"},
        {"Transfer-Encoding: chunked\r\n", "HTTP/1.1 400"},
    };
    for (size_t i = 0; i < STK_ARRAY_SIZE(cases); i++) {
        int fd = dial(f->port);
        _cleanup_free_ char *head = stk_xasprintf(
            "POST /v1/sandboxes HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            "Content-Length: 1048576\r\n%s\r\n",
            cases[i].auth ? cases[i].auth : "");
        send_all(fd, head, strlen(head));
        char buf[1024];
        ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
        close(fd);
        assert_true(n > 0);
        buf[n] = '\0';
        if (!stk_startswith(buf, cases[i].want))
            fail_msg("case %zu: %s", i, buf);
        if (!strcmp(cases[i].want, "HTTP/1.1 401"))
            assert_non_null(strstr(buf, "\r\nWWW-Authenticate: Bearer realm=\"stockade\""));
        assert_non_null(strstr(buf, "Connection: close"));
    }
}

/* The gate's reading of a head: what authentication and the body's size
 * need, and the forms it refuses rather than guess at. */
static void test_head_parse(void **state)
{
    (void)state;
    static const char ok[] = "POST /v1/sandboxes?x=1 HTTP/1.1\r\nHost: a\r\n"
                             "authorization:  Bearer t0k  \r\nContent-Length: 12\r\n\r\nbody";
    struct gw_head h;
    assert_int_equal(gw_head_end(ok, sizeof(ok) - 1), sizeof(ok) - 1 - 4);
    assert_int_equal(gw_head_parse(ok, sizeof(ok) - 1 - 4, &h), 0);
    assert_string_equal(h.method, "POST");
    assert_string_equal(h.path, "/v1/sandboxes");
    assert_string_equal(h.authorization, "Bearer t0k");
    assert_int_equal(h.n_authorization, 1);
    assert_int_equal(h.content_length, 12);
    assert_false(h.chunked);
    static const char lf[] = "GET / HTTP/1.0\nA: b\n\n";
    assert_int_equal(gw_head_end(lf, sizeof(lf) - 1), sizeof(lf) - 1);
    assert_int_equal(gw_head_end(ok, 20), -1); /* not all there */
    static const char *const bad[] = {
        "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n",
        "POST / HTTP/1.1\r\nAuthorization: Bearer a\r\n b\r\n\r\n",
        "POST / HTTP/1.1\r\nno colon\r\n\r\n",
        "NOSPACE\r\n\r\n",
    };
    for (size_t i = 0; i < STK_ARRAY_SIZE(bad); i++)
        if (gw_head_parse(bad[i], strlen(bad[i]), &h) != -EINVAL)
            fail_msg("accepted: %s", bad[i]);
    static const char two[] = "GET / HTTP/1.1\r\nAuthorization: a\r\nAUTHORIZATION: b\r\n"
                              "Transfer-Encoding: chunked\r\n\r\n";
    assert_int_equal(gw_head_parse(two, sizeof(two) - 1, &h), 0);
    assert_int_equal(h.n_authorization, 2);
    assert_true(h.chunked);
}

/* Budgets: per key and window, the dropped counted into the next record
 * of the same key, keys independent, an undone take given back. */
static void test_ratelim(void **state)
{
    (void)state;
    struct gw_ratelim *rl = stk_xcalloc(1, sizeof(*rl));
    rl->per_window = 3;
    rl->window_ms = 60000;
    uint64_t sup = 99;
    for (int i = 0; i < 3; i++) {
        assert_true(gw_ratelim_take(rl, "a", 1000, &sup));
        assert_int_equal(sup, 0);
    }
    for (int i = 0; i < 5; i++)
        assert_false(gw_ratelim_take(rl, "a", 2000, &sup));
    assert_true(gw_ratelim_take(rl, "b", 2000, &sup)); /* another key's own budget */
    assert_int_equal(sup, 0);
    assert_true(gw_ratelim_take(rl, "a", 61000, &sup)); /* a new window */
    assert_int_equal(sup, 5);
    assert_true(gw_ratelim_take(rl, "a", 61001, &sup));
    assert_int_equal(sup, 0);
    gw_ratelim_undo(rl, "a", 61002, 7); /* not written after all */
    assert_true(gw_ratelim_take(rl, "a", 61003, &sup));
    assert_int_equal(sup, 7);
    assert_true(gw_ratelim_take(rl, "a", 61004, &sup)); /* the third of the window */
    assert_false(gw_ratelim_take(rl, "a", 61005, &sup));
    /* many keys: the table stays bounded, evicted counts are not lost */
    char key[32];
    for (int i = 0; i < 4 * GW_RL_SLOTS; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        (void)gw_ratelim_take(rl, key, 70000, NULL);
    }
    free(rl);
}

static void test_routes(void **state)
{
    (void)state;
    enum gw_route rt;
    char arg[64];
    assert_int_equal(gw_route_parse("POST", "/v1/sandboxes/a-1.b:stop", &rt, arg), 0);
    assert_int_equal(rt, GW_SB_STOP);
    assert_string_equal(arg, "a-1.b");
    assert_int_equal(gw_route_parse("GET", "/v1/sandboxes/x/logs", &rt, arg), 0);
    assert_int_equal(rt, GW_SB_LOGS);
    assert_int_equal(gw_route_parse("GET", "/v1/sandboxes/x/../y", &rt, arg), -ENOENT);
    assert_int_equal(gw_route_parse("GET", "/v1/sandboxes/", &rt, arg), -ENOENT);
    assert_int_equal(gw_route_parse("PUT", "/v1/pools", &rt, arg), -EPERM);
    /* files: one path, two methods */
    assert_int_equal(gw_route_parse("GET", "/v1/sandboxes/s1/files", &rt, arg), 0);
    assert_int_equal(rt, GW_SB_FILE_GET);
    assert_string_equal(arg, "s1");
    assert_int_equal(gw_route_parse("PUT", "/v1/sandboxes/s1/files", &rt, arg), 0);
    assert_int_equal(rt, GW_SB_FILE_PUT);
    assert_int_equal(gw_route_parse("POST", "/v1/sandboxes/s1/files", &rt, arg), -EPERM);
    assert_int_equal(gw_route_parse("GET", "/v1/sandboxes/s1/files/x", &rt, arg), -ENOENT);
    /* the port route is a prefix: the id, the port, the rest */
    const char *rest = NULL;
    uint16_t port = 0;
    assert_int_equal(gw_route_parse("GET", "/v1/sandboxes/web-1/ports/8080/a/b", &rt, arg), 0);
    assert_int_equal(rt, GW_SB_PORT);
    assert_string_equal(arg, "web-1");
    assert_int_equal(gw_port_path("/v1/sandboxes/web-1/ports/8080/a/b", arg, &port, &rest), 0);
    assert_int_equal(port, 8080);
    assert_string_equal(rest, "/a/b");
    assert_int_equal(gw_port_path("/v1/sandboxes/web-1/ports/80", arg, &port, &rest), 0);
    assert_string_equal(rest, "/");
    static const char *const bad[] = {
        "/v1/sandboxes/web-1/ports/",        "/v1/sandboxes/web-1/ports/0/",
        "/v1/sandboxes/web-1/ports/65536",   "/v1/sandboxes/web-1/ports/080/",
        "/v1/sandboxes/web-1/ports/80x",     "/v1/sandboxes/../ports/80/",
        "/v1/sandboxes/web-1/ports/123456/", "/v1/sandboxes/web-1/ports/{port}/...",
    };
    for (size_t i = 0; i < STK_ARRAY_SIZE(bad); i++) {
        assert_int_equal(gw_port_path(bad[i], arg, &port, &rest), -ENOENT);
        assert_int_not_equal(gw_route_parse("GET", bad[i], &rt, arg), 0);
    }
    assert_int_equal(gw_route_parse("POST", "/v1/sandboxes/web-1/ports/8080/", &rt, arg), -EPERM);
    char allow[64];
    gw_route_allow("/v1/sandboxes/w/ports/1/x", allow, sizeof(allow));
    assert_string_equal(allow, "GET");
    gw_route_allow("/v1/pools", allow, sizeof(allow));
    assert_string_equal(allow, "GET, POST");
    gw_route_allow("/v1/sandboxes/x:exec", allow, sizeof(allow));
    assert_string_equal(allow, "POST");
    gw_route_allow("/v1/sandboxes/x/files", allow, sizeof(allow));
    assert_string_equal(allow, "GET, PUT");
    gw_route_allow("/v1/nothing", allow, sizeof(allow));
    assert_string_equal(allow, "");
    for (size_t i = 0; i < _GW_E_N; i++)
        assert_non_null(gw_err_names[i]);
    /* what a path inside a sandbox can be, as the files API answers it */
    static const struct {
        int e;
        enum gw_err want;
    } file_errs[] = {
        {EROFS, GW_E_FORBIDDEN},    {EACCES, GW_E_FORBIDDEN},           {EFBIG, GW_E_TOO_LARGE},
        {EISDIR, GW_E_BAD_REQUEST}, {ELOOP, GW_E_BAD_REQUEST},          {ENOENT, GW_E_NOT_FOUND},
        {EBUSY, GW_E_CONFLICT},     {EOPNOTSUPP, GW_E_NOT_IMPLEMENTED}, {ENOSPC, GW_E_TOO_LARGE},
    };
    for (size_t i = 0; i < STK_ARRAY_SIZE(file_errs); i++)
        assert_int_equal(gw_err_of_file_errno(-file_errs[i].e), file_errs[i].want);
}

/* create's "wait" and exec's "replica": what is accepted, what is refused */
static void test_wait_and_replica_bodies(void **state)
{
    (void)state;
    char why[256];
    json_t *root = NULL;
    struct gw_create_body c;
    static const struct {
        const char *body;
        int ok;
        bool accepted;
    } creates[] = {
        {"{\"spec\":\"x\"}", 1, false},
        {"{\"spec\":\"x\",\"wait\":\"running\"}", 1, false},
        {"{\"spec\":\"x\",\"wait\":\"accepted\"}", 1, true},
        {"{\"spec\":\"x\",\"wait\":\"soon\"}", 0, false},
        {"{\"spec\":\"x\",\"wait\":\"\"}", 0, false},
        {"{\"spec\":\"x\",\"wait\":true}", 0, false},
    };
    for (size_t i = 0; i < STK_ARRAY_SIZE(creates); i++) {
        int r = gw_create_body_parse(creates[i].body, strlen(creates[i].body), &c, &root, why,
                                     sizeof(why));
        if ((r == 0) != creates[i].ok)
            fail_msg("create %zu: %d %s", i, r, why);
        if (r == 0) {
            assert_int_equal(c.accepted_only, creates[i].accepted);
            json_decref(root);
        } else if (strstr(creates[i].body, "\"wait\":\"")) {
            assert_non_null(strstr(why, "\"wait\""));
        }
    }
    struct gw_exec_body e;
    static const struct {
        const char *body;
        const char *replica; /* NULL: refused */
    } execs[] = {
        {"{\"argv\":[\"id\"],\"replica\":\"web-7c9f-abcde\"}", "web-7c9f-abcde"},
        {"{\"argv\":[\"id\"],\"replica\":\"sts-0.x\"}", "sts-0.x"},
        {"{\"argv\":[\"id\"],\"replica\":\"\"}", NULL},
        {"{\"argv\":[\"id\"],\"replica\":\"Web\"}", NULL},
        {"{\"argv\":[\"id\"],\"replica\":\"a/b\"}", NULL},
        {"{\"argv\":[\"id\"],\"replica\":\"../x\"}", NULL},
        {"{\"argv\":[\"id\"],\"replica\":7}", NULL},
    };
    for (size_t i = 0; i < STK_ARRAY_SIZE(execs); i++) {
        int r =
            gw_exec_body_parse(execs[i].body, strlen(execs[i].body), &e, &root, why, sizeof(why));
        if ((r == 0) != (execs[i].replica != NULL))
            fail_msg("exec %zu: %d %s", i, r, why);
        if (r == 0) {
            assert_string_equal(e.replica, execs[i].replica);
            json_decref(root);
        }
    }
    char longname[300];
    int n = snprintf(longname, sizeof(longname), "{\"argv\":[\"id\"],\"replica\":\"");
    memset(longname + n, 'a', 254);
    snprintf(longname + n + 254, sizeof(longname) - (size_t)n - 254, "\"}");
    assert_int_equal(gw_exec_body_parse(longname, strlen(longname), &e, &root, why, sizeof(why)),
                     -EINVAL);
    /* the replicas of a sandbox: their own route, GET only */
    enum gw_route rt;
    char arg[64];
    assert_int_equal(gw_route_parse("GET", "/v1/sandboxes/s1/replicas", &rt, arg), 0);
    assert_int_equal(rt, GW_SB_REPLICAS);
    assert_string_equal(arg, "s1");
    assert_int_equal(gw_route_parse("POST", "/v1/sandboxes/s1/replicas", &rt, arg), -EPERM);
}

int main(int argc, char **argv)
{
    /* the server starts its workers as /proc/self/exe: this binary */
    if (argc > 1 && !strcmp(argv[1], STK_GW_WORKER_VERB))
        return stk_gw_worker_main(argc, argv);
    if (argc > 1) /* another of stockade's own verbs: not this binary's */
        return 125;
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routes),
        cmocka_unit_test(test_wait_and_replica_bodies),
        cmocka_unit_test_setup_teardown(test_access_log, setup, teardown),
        cmocka_unit_test(test_head_parse),
        cmocka_unit_test(test_ratelim),
        T(test_authentication),
        T(test_hidden_versus_forbidden),
        T(test_refused_bodies),
        T(test_slow_client),
        T(test_events_resume),
        T(test_metrics),
        T(test_exec_upgrade),
        T(test_worker_operations),
        T(test_unix_socket),
        T(test_long_operation),
        T(test_target_namespace),
        T(test_gate_refuses_before_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
