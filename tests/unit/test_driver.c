/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The driver conformance suite: the same lifecycle against every driver
 * whose prerequisites this machine has (driver.h): provision → observe
 * running → exec → stop → observe → teardown (twice: idempotent) → what a
 * gone sandbox answers. sim always; local as root with a working runtime
 * (skipped with the reason otherwise); kubernetes when it is built in and
 * STOCKADE_TEST_KUBECONFIG names a cluster.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "driver/driver.h"
#include "spec/spec.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SPEC                                                                                       \
    "apiVersion: stockade.dev/v1alpha1\nkind: Sandbox\nmetadata:\n  name: conf\n"                  \
    "spec:\n  command: [/bin/sh, -c, 'echo up; exec sleep 600']\n"

struct world {
    enum stk_backend backend;
    char state[64];
    char run[64];
    struct stk_docset *ds;
    struct stk_boundary *b;
    struct stk_driver *d;
    char id[64];
    int lock_fd;
    char *handle;
    /* what the sink saw */
    size_t events, output;
};

static int on_output(void *ud, int stream, const void *data, size_t n)
{
    (void)stream, (void)data;
    ((struct world *)ud)->output += n;
    return 0;
}

static void on_event(void *ud, const char *type, const char *details)
{
    (void)type;
    assert_non_null(strchr(details, '{'));
    ((struct world *)ud)->events++;
}

/* Opens the driver for w->backend; false (with why) when this machine
 * cannot run it. */
static bool world_open(struct world *w, const char **why)
{
    snprintf(w->state, sizeof(w->state), "/tmp/stk-drv-%s-XXXXXX", stk_backend_names[w->backend]);
    assert_non_null(mkdtemp(w->state));
    /* short: the supervisor socket's path must fit a sockaddr_un */
    snprintf(w->run, sizeof(w->run), "/tmp/stk-drvr-XXXXXX");
    assert_non_null(mkdtemp(w->run));
    _cleanup_diags_ struct stk_diags diags = {0};
    /* a cluster runs an image: STOCKADE_TEST_KUBE_IMAGE, on the nodes already */
    char spec[512];
    const char *image = getenv("STOCKADE_TEST_KUBE_IMAGE");
    if (w->backend == STK_BACKEND_KUBERNETES)
        snprintf(spec, sizeof(spec),
                 "%s  image: %s\n  resources: {memory: 256Mi}\n  driverConfig:\n"
                 "    kubernetes: {namespace: stk-conformance-%d, imagePullPolicy: IfNotPresent}\n",
                 SPEC, image ? image : "localhost/stockade-test:latest", (int)getpid());
    else
        snprintf(spec, sizeof(spec), "%s", SPEC);
    assert_int_equal(stk_docset_parse("conf.yaml", spec, strlen(spec), &diags, &w->ds), 0);
    size_t n = 0;
    const struct stk_doc *doc = stk_docset_find(w->ds, STK_KIND_SANDBOX, &n);
    assert_int_equal(n, 1);
    assert_int_equal(stk_resolve(doc->sandbox, "conf.yaml", NULL, NULL, &diags, &w->b), 0);
    struct stk_driver_conf conf = {
        .state_dir = w->state, .run_dir = w->run, .kubeconfig = getenv("STOCKADE_TEST_KUBECONFIG")};
    static char msg[600];
    struct stk_error *err = NULL;
    if (stk_driver_open(w->backend, &conf, &w->d, &err) < 0) {
        snprintf(msg, sizeof(msg), "%s", err->msg);
        stk_error_free(err);
        *why = msg;
        return false;
    }
    struct stk_driver_facts f;
    if (w->d->ops->facts(w->d->ctx, w->b, &f, &err) < 0) {
        snprintf(msg, sizeof(msg), "%s", err->msg);
        stk_error_free(err);
        *why = msg;
        return false;
    }
    assert_int_equal(f.facts.backend, w->backend);
    assert_non_null(f.runtime);
    snprintf(w->id, sizeof(w->id), "conf-%d", (int)getpid());
    /* the session's part: the sandbox's directory and its lock */
    char path[200];
    snprintf(path, sizeof(path), "%s/sandboxes", w->state);
    (void)mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/sandboxes/%s", w->state, w->id);
    (void)mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/sandboxes/%s/lock", w->state, w->id);
    w->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    assert_true(w->lock_fd >= 0 && flock(w->lock_fd, LOCK_EX) == 0);
    return true;
}

static void world_close(struct world *w)
{
    stk_driver_close(w->d);
    free(w->handle);
    if (w->lock_fd > 0)
        close(w->lock_fd);
    stk_boundary_free(w->b);
    stk_docset_free(w->ds);
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", w->state, w->run);
    assert_int_equal(system(cmd), 0);
}

static struct stk_driver_sandbox view(struct world *w, const struct stk_driver_sink *sink)
{
    return (struct stk_driver_sandbox){.id = w->id,
                                       .name = "conf",
                                       .b = w->b,
                                       .handle = w->handle,
                                       .lock_fd = w->lock_fd,
                                       .runtime = NULL,
                                       .sink = sink};
}

static enum stk_driver_state observe(struct world *w)
{
    struct stk_driver_sandbox sb = view(w, NULL);
    struct stk_driver_status st;
    struct stk_error *err = NULL;
    int r = w->d->ops->observe(w->d->ctx, &sb, &st, &err);
    if (r < 0)
        fail_msg("observe: %s", err->msg);
    stk_driver_status_release(&st);
    return st.state;
}

static int collect(void *ud, const void *data, size_t n)
{
    stk_buf_append(ud, data, n);
    return 0;
}

static void lifecycle(enum stk_backend backend)
{
    if (!stk_driver_ops(backend)) {
        print_message("%s: not built in\n", stk_backend_names[backend]);
        skip();
    }
    struct world w = {.backend = backend, .lock_fd = -1};
    const char *why = NULL;
    if (!world_open(&w, &why)) {
        print_message("%s: skipped: %s\n", stk_backend_names[backend], why);
        world_close(&w);
        skip();
    }
    const struct stk_driver_ops *ops = w.d->ops;
    struct stk_error *err = NULL;
    struct stk_driver_sink sink = {.ud = &w, .output = on_output, .event = on_event, .wake_fd = -1};

    /* the local driver needs the facts' runtime in the sandbox */
    struct stk_driver_facts f;
    assert_int_equal(ops->facts(w.d->ctx, w.b, &f, NULL), 0);
    struct stk_driver_sandbox sb = view(&w, &sink);
    sb.runtime = f.runtime;
    if (ops->provision(w.d->ctx, &sb, false, &w.handle, &err) < 0)
        fail_msg("provision: %s", err->msg);
    assert_non_null(w.handle);
    /* the handle is JSON object text the session stores */
    assert_int_equal(w.handle[0], '{');
    assert_int_equal(observe(&w), STK_DRV_RUNNING);

    /* a process in it: an exit status, or NOTSUP from a backend that runs
     * nothing (never a made-up status) */
    const char *argv[] = {"/bin/sh", "-c", "exit 7"};
    struct stk_init_proc proc = {.argv = argv, .argc = 3};
    int code = -1;
    sb = view(&w, NULL);
    sb.runtime = f.runtime;
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    int r = ops->exec(w.d->ctx, &sb, &proc, devnull, devnull, devnull, &code, &err);
    if (ops->models_only) {
        assert_int_equal(r, -STK_DRV_E_NOTSUP);
        assert_int_equal(code, -1);
        stk_error_free(err);
        err = NULL;
    } else {
        if (r < 0)
            fail_msg("exec: %s", err->msg);
        assert_int_equal(code, 7);
    }

    /* a file in and out through the same seam; a model refuses (NOTSUP),
     * never made-up content; a missing path is NOFILE, not GONE */
    if (ops->file_write && ops->file_read) {
        int mfd = memfd_create("conformance", MFD_CLOEXEC);
        assert_int_equal(write(mfd, "conformance\n", 12), 12);
        assert_int_equal(lseek(mfd, 0, SEEK_SET), 0);
        r = ops->file_write(w.d->ctx, &sb, "/tmp/conformance.txt", 0600, 12, mfd, &err);
        close(mfd);
        struct stk_buf got = {0};
        uint64_t size = 0;
        if (ops->models_only) {
            assert_int_equal(r, -STK_DRV_E_NOTSUP);
            stk_error_free(err);
            err = NULL;
            r = ops->file_read(w.d->ctx, &sb, "/tmp/conformance.txt", collect, &got, &size, &err);
            assert_int_equal(r, -STK_DRV_E_NOTSUP);
            assert_int_equal(got.len, 0);
        } else {
            if (r < 0)
                fail_msg("file_write: %s", err->msg);
            if (ops->file_read(w.d->ctx, &sb, "/tmp/conformance.txt", collect, &got, &size, &err) <
                0)
                fail_msg("file_read: %s", err->msg);
            assert_int_equal(size, 12);
            assert_int_equal(got.len, 12);
            assert_memory_equal(got.data, "conformance\n", 12);
            r = ops->file_read(w.d->ctx, &sb, "/tmp/nosuch", collect, &got, &size, &err);
            assert_int_equal(r, -STK_DRV_E_NOFILE);
        }
        stk_error_free(err);
        err = NULL;
        stk_buf_free(&got);
    }

    /* stop asks it to end; observe reports the end once the backend sees it
     * (a model has no state to end: it stays as provisioned) */
    assert_int_equal(ops->stop(w.d->ctx, &sb, 1000, NULL), 0);
    enum stk_driver_state st = observe(&w);
    for (int i = 0; i < 200 && st == STK_DRV_RUNNING && !ops->models_only; i++) {
        poll(NULL, 0, 50);
        st = observe(&w);
    }
    if (!ops->models_only)
        assert_int_not_equal(st, STK_DRV_RUNNING);

    /* teardown is idempotent */
    if (ops->teardown(w.d->ctx, &sb, true, &err) < 0)
        fail_msg("teardown: %s", err->msg);
    assert_int_equal(ops->teardown(w.d->ctx, &sb, true, NULL), 0);

    /* what is gone answers GONE (or NOTSUP from a model), never a status */
    code = -1;
    r = ops->exec(w.d->ctx, &sb, &proc, devnull, devnull, devnull, &code, &err);
    assert_true(r == -STK_DRV_E_GONE || (ops->models_only && r == -STK_DRV_E_NOTSUP));
    assert_non_null(err);
    assert_non_null(strstr(err->msg, w.id));
    stk_error_free(err);
    err = NULL;
    assert_int_equal(code, -1);
    if (!ops->models_only)
        assert_int_not_equal(observe(&w), STK_DRV_RUNNING);
    close(devnull);
    world_close(&w);
}

/* What a pool member and its claim look like: idle until start; start
 * twice is PHASE. */
static void claim(enum stk_backend backend)
{
    struct world w = {.backend = backend, .lock_fd = -1};
    const char *why = NULL;
    if (!stk_driver_ops(backend) || !world_open(&w, &why)) {
        if (w.ds)
            world_close(&w);
        skip();
    }
    const struct stk_driver_ops *ops = w.d->ops;
    struct stk_error *err = NULL;
    struct stk_driver_facts f;
    assert_int_equal(ops->facts(w.d->ctx, w.b, &f, NULL), 0);
    struct stk_driver_sandbox sb = view(&w, NULL);
    sb.runtime = f.runtime;
    sb.pool_member = true;
    sb.pool = "conf";
    if (ops->provision(w.d->ctx, &sb, false, &w.handle, &err) < 0)
        fail_msg("provision: %s", err->msg);
    assert_int_equal(observe(&w), STK_DRV_RUNNING);
    sb = view(&w, NULL);
    sb.runtime = f.runtime;
    char *h = NULL;
    if (ops->start(w.d->ctx, &sb, &h, &err) < 0)
        fail_msg("start: %s", err->msg);
    if (h) {
        free(w.handle);
        w.handle = h;
        sb.handle = h;
    }
    char *h2 = NULL;
    assert_int_equal(ops->start(w.d->ctx, &sb, &h2, &err), -STK_DRV_E_PHASE);
    assert_null(h2);
    stk_error_free(err);
    assert_int_equal(ops->teardown(w.d->ctx, &sb, true, NULL), 0);
    world_close(&w);
}

static void test_sim(void **state)
{
    (void)state;
    lifecycle(STK_BACKEND_SIM);
}

static void test_sim_claim(void **state)
{
    (void)state;
    claim(STK_BACKEND_SIM);
}

static void test_local(void **state)
{
    (void)state;
    if (geteuid() != 0) {
        print_message("local: skipped: needs root\n");
        skip();
    }
    lifecycle(STK_BACKEND_LOCAL);
}

static void test_local_claim(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip();
    claim(STK_BACKEND_LOCAL);
}

static void test_kubernetes(void **state)
{
    (void)state;
    if (!stk_driver_ops(STK_BACKEND_KUBERNETES) || !getenv("STOCKADE_TEST_KUBECONFIG")) {
        print_message("kubernetes: skipped: %s\n", stk_driver_ops(STK_BACKEND_KUBERNETES)
                                                       ? "STOCKADE_TEST_KUBECONFIG is not set"
                                                       : "not built in");
        skip();
    }
    lifecycle(STK_BACKEND_KUBERNETES);
}

/* Every backend either has a table that says it is that backend, or none. */
static void test_tables(void **state)
{
    (void)state;
    for (int i = 0; i < _STK_BACKEND_N; i++) {
        const struct stk_driver_ops *ops = stk_driver_ops((enum stk_backend)i);
        if (!ops)
            continue;
        assert_int_equal(ops->backend, i);
        assert_non_null(ops->open);
        assert_non_null(ops->close);
        assert_non_null(ops->facts);
        assert_non_null(ops->provision);
        assert_non_null(ops->start);
        assert_non_null(ops->exec);
        assert_non_null(ops->stop);
        assert_non_null(ops->observe);
        assert_non_null(ops->teardown);
    }
    assert_non_null(stk_driver_ops(STK_BACKEND_SIM));
    assert_non_null(stk_driver_ops(STK_BACKEND_LOCAL));
}

int main(void)
{
    /* stockade-init and the probe are next to the built init */
    static char dir[4096];
    snprintf(dir, sizeof(dir), "%s", STK_INIT_PATH);
    setenv("STOCKADE_LIBEXEC_DIR", dirname(dir), 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tables),      cmocka_unit_test(test_sim),
        cmocka_unit_test(test_sim_claim),   cmocka_unit_test(test_local),
        cmocka_unit_test(test_local_claim), cmocka_unit_test(test_kubernetes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
