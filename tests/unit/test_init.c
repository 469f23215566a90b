/* SPDX-License-Identifier: Apache-2.0 */
/*
 * stockade-init driven through the client library. init runs on the host,
 * not as PID 1 (it becomes a child subreaper), with fd 3 a listening socket
 * in a private temporary directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

#include "base/base.h"
#include "init/client.h"
#include "init/proto.h"

#define MIB (1024 * 1024)
/* Growth of init's RSS allowed while output is held back; the queues are
 * 1 MiB (workload) and 256 KiB (per connection), so a leak shows at once. */
#define RSS_GROWTH_MAX_KB (16 * 1024)

struct initd {
    char dir[64];
    char sock[128];
    pid_t pid;
};

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int setup_init(void **state)
{
    struct initd *d = stk_xcalloc(1, sizeof(*d));
    strcpy(d->dir, "/tmp/stk-init-XXXXXX");
    assert_non_null(mkdtemp(d->dir));
    snprintf(d->sock, sizeof(d->sock), "%s/init.sock", d->dir);
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(lfd >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, d->sock);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 64), 0);
    d->pid = fork();
    assert_true(d->pid >= 0);
    if (d->pid == 0) {
        /* dup2 onto itself would keep O_CLOEXEC */
        if (lfd == 3 ? fcntl(3, F_SETFD, 0) < 0 : dup2(lfd, 3) < 0)
            _exit(120);
        execl(STK_INIT_PATH, "stockade-init", (char *)NULL);
        _exit(121);
    }
    close(lfd);
    *state = d;
    return 0;
}

static int teardown_init(void **state)
{
    struct initd *d = *state;
    if (d->pid > 0) {
        kill(d->pid, SIGKILL);
        waitpid(d->pid, NULL, 0);
    }
    unlink(d->sock);
    rmdir(d->dir);
    free(d);
    return 0;
}

static struct stk_init_conn *conn(struct initd *d)
{
    _cleanup_error_ struct stk_error *err = NULL;
    struct stk_init_conn *c = NULL;
    int r = stk_init_connect(d->sock, 5000, &c, &err);
    if (r < 0)
        fail_msg("%s", err->msg);
    return c;
}

static struct stk_init_proc sh(const char *script)
{
    static const char *argv[4];
    argv[0] = "/bin/sh";
    argv[1] = "-c";
    argv[2] = script;
    argv[3] = NULL;
    return (struct stk_init_proc){.argv = argv, .argc = 3};
}

static void closedirp(DIR **d)
{
    if (*d)
        closedir(*d);
}

static long rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    _cleanup_fclose_ FILE *f = fopen(path, "r");
    assert_non_null(f);
    long kb = -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    return kb;
}

/* Bytes a process wrote so far (/proc/<pid>/io wchar). */
static long long wchar(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/io", (int)pid);
    _cleanup_fclose_ FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long long v = -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "wchar: %lld", &v) == 1)
            break;
    return v;
}

/* Waits until pid stops making write progress (blocked on a full pipe);
 * returns how much it wrote. Fails the test if it never settles. */
static long long wait_blocked(pid_t pid)
{
    long long last = -2;
    int stable = 0;
    for (int i = 0; i < 400 && stable < 5; i++) {
        sleep_ms(20);
        long long now = wchar(pid);
        stable = now == last && now > 0 ? stable + 1 : 0;
        last = now;
    }
    assert_int_equal(stable, 5);
    return last;
}

static bool pid_gone(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d", (int)pid);
    for (int i = 0; i < 500; i++) {
        if (access(path, F_OK) < 0)
            return true;
        sleep_ms(10);
    }
    return false;
}

static char *read_file(int fd, size_t *ret_len)
{
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    char *buf = stk_xmalloc((size_t)st.st_size + 1);
    assert_int_equal(pread(fd, buf, (size_t)st.st_size, 0), st.st_size);
    buf[st.st_size] = '\0';
    *ret_len = (size_t)st.st_size;
    return buf;
}

static int tmpfd(void)
{
    char path[] = "/tmp/stk-init-out-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    return fd;
}

/* ---- hello, start, attach ------------------------------------------------- */

struct captured {
    struct stk_buf out, err;
    size_t zero_bytes, other_bytes;
    bool count_only;
};

static int capture(void *ud, int stream, const void *data, size_t n)
{
    struct captured *cap = ud;
    if (cap->count_only) {
        for (size_t i = 0; i < n; i++)
            ((const char *)data)[i] ? cap->other_bytes++ : cap->zero_bytes++;
        return 0;
    }
    stk_buf_append(stream == 1 ? &cap->out : &cap->err, data, n);
    return 0;
}

static void test_hello_start_attach(void **state)
{
    struct initd *d = *state;
    _cleanup_init_conn_ struct stk_init_conn *c = conn(d);
    _cleanup_error_ struct stk_error *err = NULL;
    struct stk_init_info info;
    assert_int_equal(stk_init_hello(c, &info, &err), 0);
    assert_int_equal(info.version, STK_INITP_VERSION);
    assert_int_equal(info.state, STK_INIT_IDLE);
    assert_int_equal(info.pid, 0);

    struct stk_init_proc p = sh("echo out; echo err >&2; exit 3");
    assert_int_equal(stk_init_start(c, &p, &err), 0);
    assert_true(stk_init_start(c, &p, &err) < 0); /* once only */
    assert_non_null(strstr(err->msg, "already started"));

    _cleanup_init_conn_ struct stk_init_conn *a = conn(d);
    struct captured cap = {0};
    int code = -1, sig = -1;
    stk_error_free(TAKE_PTR(err));
    assert_int_equal(stk_init_attach(a, capture, &cap, &code, &sig, &err), 0);
    assert_string_equal(stk_buf_str(&cap.out), "out\n");
    assert_string_equal(stk_buf_str(&cap.err), "err\n");
    assert_int_equal(code, 3);
    assert_int_equal(sig, 0);

    _cleanup_init_conn_ struct stk_init_conn *h = conn(d);
    assert_int_equal(stk_init_hello(h, &info, &err), 0);
    assert_int_equal(info.state, STK_INIT_EXITED);
    assert_int_equal(info.exit_code, 3);
    assert_true(info.pid > 0);
    stk_buf_free(&cap.out);
    stk_buf_free(&cap.err);
}

static void test_attach_before_start_and_signal(void **state)
{
    struct initd *d = *state;
    _cleanup_error_ struct stk_error *err = NULL;
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        /* attaches first, waits for the workload */
        struct stk_init_conn *a = NULL;
        struct captured cap = {0};
        int code = -1, sig = -1;
        if (stk_init_connect(d->sock, 5000, &a, &err) < 0 ||
            stk_init_attach(a, capture, &cap, &code, &sig, &err) < 0)
            _exit(100);
        _exit(sig == SIGUSR1 && code == 128 + SIGUSR1 ? 0 : 101);
    }
    _cleanup_init_conn_ struct stk_init_conn *c = conn(d);
    /* exec'd sleep keeps the workload busy until it is signalled */
    struct stk_init_proc p = sh("exec sleep 1000");
    assert_int_equal(stk_init_start(c, &p, &err), 0);
    struct stk_init_info info;
    assert_int_equal(stk_init_hello(c, &info, &err), 0);
    assert_int_equal(info.state, STK_INIT_RUNNING);
    assert_int_equal(stk_init_signal(c, SIGUSR1, &err), 0);
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* ---- exec ------------------------------------------------------------------- */

static int exec_sh(struct initd *d, const char *script, int in_fd, int out_fd, int err_fd)
{
    _cleanup_init_conn_ struct stk_init_conn *c = conn(d);
    _cleanup_error_ struct stk_error *err = NULL;
    struct stk_init_proc p = sh(script);
    int code = -1;
    if (stk_init_exec(c, &p, in_fd, out_fd, err_fd, &code, &err) < 0)
        fail_msg("exec: %s", err->msg);
    return code;
}

static void test_exec_cat_roundtrip(void **state)
{
    struct initd *d = *state;
    size_t sizes[] = {0, 5, 4 * MIB + 7};
    for (size_t k = 0; k < STK_ARRAY_SIZE(sizes); k++) {
        _cleanup_close_ int in = tmpfd();
        _cleanup_close_ int out = tmpfd();
        _cleanup_free_ char *data = stk_xmalloc(sizes[k] + 1);
        for (size_t i = 0; i < sizes[k]; i++)
            data[i] = (char)(i * 7 + i / 251);
        assert_int_equal(write(in, data, sizes[k]), (ssize_t)sizes[k]);
        assert_int_equal(lseek(in, 0, SEEK_SET), 0);
        _cleanup_init_conn_ struct stk_init_conn *c = conn(d);
        _cleanup_error_ struct stk_error *err = NULL;
        const char *argv[] = {"/bin/cat", NULL};
        struct stk_init_proc p = {.argv = argv, .argc = 1};
        int code = -1;
        if (stk_init_exec(c, &p, in, out, STDERR_FILENO, &code, &err) < 0) {
            int st = 0;
            pid_t w = waitpid(d->pid, &st, WNOHANG);
            fail_msg("exec cat (%zu bytes): %s (init %d status %x)", sizes[k], err->msg, (int)w,
                     st);
        }
        assert_int_equal(code, 0);
        size_t n;
        _cleanup_free_ char *got = read_file(out, &n);
        assert_int_equal(n, sizes[k]);
        assert_memory_equal(got, data, n);
    }
}

static void test_exec_exit_codes_env_cwd(void **state)
{
    struct initd *d = *state;
    assert_int_equal(exec_sh(d, "exit 7", -1, STDOUT_FILENO, STDERR_FILENO), 7);
    assert_int_equal(exec_sh(d, "kill -TERM $$", -1, STDOUT_FILENO, STDERR_FILENO), 143);
    assert_int_equal(exec_sh(d, "kill -KILL $$", -1, STDOUT_FILENO, STDERR_FILENO), 137);

    _cleanup_close_ int out = tmpfd();
    _cleanup_init_conn_ struct stk_init_conn *c = conn(d);
    _cleanup_error_ struct stk_error *err = NULL;
    const char *env[] = {"STK_TEST=hello world"};
    struct stk_init_proc p = sh("echo \"$STK_TEST\"; pwd; read x || echo eof");
    p.env = env;
    p.n_env = 1;
    p.cwd = "/tmp";
    int code = -1;
    assert_int_equal(stk_init_exec(c, &p, -1, out, STDERR_FILENO, &code, &err), 0);
    assert_int_equal(code, 0);
    size_t n;
    _cleanup_free_ char *got = read_file(out, &n);
    assert_string_equal(got, "hello world\n/tmp\neof\n");
}

static void test_exec_tty(void **state)
{
    struct initd *d = *state;
    _cleanup_close_ int out = tmpfd();
    _cleanup_init_conn_ struct stk_init_conn *c = conn(d);
    _cleanup_error_ struct stk_error *err = NULL;
    struct stk_init_proc p = sh("tty; stty size; echo to-stderr >&2");
    p.tty = true;
    p.rows = 33;
    p.cols = 101;
    int code = -1;
    assert_int_equal(stk_init_exec(c, &p, -1, out, STDERR_FILENO, &code, &err), 0);
    assert_int_equal(code, 0);
    size_t n;
    _cleanup_free_ char *got = read_file(out, &n);
    assert_non_null(strstr(got, "/dev/pts/"));
    assert_non_null(strstr(got, "33 101"));
    assert_non_null(strstr(got, "to-stderr")); /* merged */
}

static void test_exec_nosuch(void **state)
{
    struct initd *d = *state;
    _cleanup_close_ int errf = tmpfd();
    _cleanup_init_conn_ struct stk_init_conn *c = conn(d);
    _cleanup_error_ struct stk_error *err = NULL;
    const char *argv[] = {"/bin/nosuch", NULL};
    struct stk_init_proc p = {.argv = argv, .argc = 1};
    int code = -1;
    assert_int_equal(stk_init_exec(c, &p, -1, STDOUT_FILENO, errf, &code, &err), 0);
    assert_int_equal(code, 127);
    size_t n;
    _cleanup_free_ char *got = read_file(errf, &n);
    assert_string_equal(got, "init: exec: /bin/nosuch: No such file or directory\n");

    /* the workload: an error from start, and init stays idle */
    _cleanup_init_conn_ struct stk_init_conn *s = conn(d);
    assert_true(stk_init_start(s, &p, &err) < 0);
    assert_string_equal(err->msg, "init: exec: /bin/nosuch: No such file or directory");
}

static void test_exec_concurrent(void **state)
{
    struct initd *d = *state;
    int in[2], out[2];
    assert_int_equal(pipe(in), 0);
    assert_int_equal(pipe(out), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        close(in[1]);
        close(out[0]);
        _exit(exec_sh(d, "echo started; read x; echo got $x", in[0], out[1], 2));
    }
    close(in[0]);
    close(out[1]);
    char buf[64] = {0};
    assert_int_equal(read(out[0], buf, 8), 8);
    assert_string_equal(buf, "started\n"); /* the first exec is running */
    /* a second one completes while the first waits for its stdin */
    assert_int_equal(exec_sh(d, "exit 5", -1, 1, 2), 5);
    assert_int_equal(write(in[1], "bye\n", 4), 4);
    close(in[1]);
    memset(buf, 0, sizeof(buf));
    assert_int_equal(read(out[0], buf, sizeof(buf) - 1), 8);
    assert_string_equal(buf, "got bye\n");
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_int_equal(WEXITSTATUS(status), 0);
    close(out[0]);
}

static void test_exec_disconnect_kills(void **state)
{
    struct initd *d = *state;
    int out[2];
    assert_int_equal(pipe(out), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        close(out[0]);
        _exit(exec_sh(d, "echo $$; exec sleep 1000", -1, out[1], 2));
    }
    close(out[1]);
    char buf[32] = {0};
    assert_true(read(out[0], buf, sizeof(buf) - 1) > 0);
    pid_t victim = atoi(buf);
    assert_true(victim > 0);
    assert_int_equal(kill(victim, 0), 0);
    kill(child, SIGKILL); /* the client dies mid-exec */
    waitpid(child, NULL, 0);
    assert_true(pid_gone(victim));
    close(out[0]);
}

/* ---- raw protocol helpers ------------------------------------------------------- */

static int raw_connect(struct initd *d)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, d->sock);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

static void raw_send(int fd, uint8_t type, const void *p, size_t n)
{
    uint8_t h[STK_INITP_HDR];
    stk_initp_hdr_encode(h, type, 0, (uint32_t)n);
    assert_int_equal(write(fd, h, sizeof(h)), sizeof(h));
    if (n)
        assert_int_equal(write(fd, p, n), (ssize_t)n);
}

static void read_exact(int fd, void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        assert_true(r > 0);
        got += (size_t)r;
    }
}

/* Reads one frame; payload into buf (64 KiB). */
static struct stk_initp_hdr raw_recv(int fd, uint8_t *buf)
{
    uint8_t h[STK_INITP_HDR];
    read_exact(fd, h, sizeof(h));
    struct stk_initp_hdr hdr;
    assert_int_equal(stk_initp_hdr_decode(h, &hdr), 0);
    read_exact(fd, buf, hdr.len);
    return hdr;
}

static void assert_error_then_eof(int fd, const char *needle)
{
    static uint8_t buf[STK_INITP_MAX_PAYLOAD];
    struct stk_initp_hdr h = raw_recv(fd, buf);
    assert_int_equal(h.type, STK_INITP_ERROR);
    uint32_t code;
    uint8_t kind;
    char msg[512];
    assert_int_equal(stk_initp_error_decode(buf, h.len, &code, &kind, msg, sizeof(msg)), 0);
    if (!strstr(msg, needle))
        fail_msg("error '%s' lacks '%s'", msg, needle);
    char c;
    assert_int_equal(read(fd, &c, 1), 0);
}

static void assert_healthy(struct initd *d)
{
    _cleanup_init_conn_ struct stk_init_conn *c = conn(d);
    _cleanup_error_ struct stk_error *err = NULL;
    struct stk_init_info info;
    assert_int_equal(stk_init_hello(c, &info, &err), 0);
    assert_int_equal(kill(d->pid, 0), 0);
}

static void test_malformed_frames(void **state)
{
    struct initd *d = *state;
    {
        _cleanup_close_ int fd = raw_connect(d);
        assert_int_equal(write(fd, "\xff\xfe garbage", 10), 10);
        assert_error_then_eof(fd, "malformed frame");
    }
    {
        _cleanup_close_ int fd = raw_connect(d);
        uint8_t h[STK_INITP_HDR];
        stk_initp_hdr_encode(h, STK_INITP_EXEC, 0, 70000); /* over 64 KiB */
        assert_int_equal(write(fd, h, sizeof(h)), sizeof(h));
        assert_error_then_eof(fd, "bad length");
    }
    {
        _cleanup_close_ int fd = raw_connect(d);
        uint8_t p[11 + 300 * 2] = {0};
        p[5] = 300 >> 8; /* argc = 300 */
        p[6] = 300 & 0xff;
        for (size_t i = 0; i < 300; i++)
            p[11 + 2 * i] = 'x';
        raw_send(fd, STK_INITP_EXEC, p, sizeof(p));
        assert_error_then_eof(fd, "too many argv");
    }
    {
        _cleanup_close_ int fd = raw_connect(d);
        raw_send(fd, STK_INITP_STDIN, "abc", 3); /* not a request */
        assert_error_then_eof(fd, "unexpected stdin frame");
    }
    {
        _cleanup_close_ int fd = raw_connect(d);
        uint8_t sig[4] = {0, 0, 0, 99};
        raw_send(fd, STK_INITP_SIGNAL, sig, sizeof(sig));
        assert_error_then_eof(fd, "invalid signal");
    }
    {
        /* half a frame, then gone */
        _cleanup_close_ int fd = raw_connect(d);
        uint8_t h[STK_INITP_HDR];
        stk_initp_hdr_encode(h, STK_INITP_EXEC, 0, 1000);
        assert_int_equal(write(fd, h, sizeof(h)), sizeof(h));
    }
    assert_healthy(d);
}

/* ---- backpressure ------------------------------------------------------------------ */

static void test_exec_slow_reader(void **state)
{
    struct initd *d = *state;
    assert_healthy(d);
    long base = rss_kb(d->pid);
    const long long total = 32LL * MIB;
    _cleanup_close_ int fd = raw_connect(d);
    static uint8_t buf[STK_INITP_MAX_PAYLOAD];
    uint8_t req[256];
    const char *argv[] = {"/usr/bin/head", "-c", "33554432", "/dev/zero"};
    struct stk_initp_proc *p = stk_xcalloc(1, sizeof(*p));
    p->argc = 4;
    memcpy(p->argv, argv, sizeof(argv));
    ssize_t n = stk_initp_proc_encode(req, sizeof(req), p, NULL);
    free(p);
    assert_true(n > 0);
    raw_send(fd, STK_INITP_EXEC, req, (size_t)n);
    struct stk_initp_hdr h = raw_recv(fd, buf);
    assert_int_equal(h.type, STK_INITP_OK);
    uint32_t pid;
    assert_int_equal(stk_initp_u32_decode(buf, h.len, &pid), 0);
    /* nobody reads: the producer must block, init must not buffer it all */
    long long written = wait_blocked((pid_t)pid);
    assert_true(written < 4LL * MIB);
    assert_true(rss_kb(d->pid) - base < RSS_GROWTH_MAX_KB);
    /* now drain it all, exactly */
    long long got = 0;
    for (;;) {
        h = raw_recv(fd, buf);
        if (h.type != STK_INITP_OUTPUT)
            break;
        got += h.len;
        if (got % (8 * MIB) < h.len)
            assert_true(rss_kb(d->pid) - base < RSS_GROWTH_MAX_KB);
    }
    assert_int_equal(h.type, STK_INITP_EXIT);
    assert_int_equal(got, total);
}

static void test_workload_backpressure(void **state)
{
    struct initd *d = *state;
    assert_healthy(d);
    long base = rss_kb(d->pid);
    _cleanup_init_conn_ struct stk_init_conn *c = conn(d);
    _cleanup_error_ struct stk_error *err = NULL;
    struct stk_init_proc p = sh("exec head -c 10485760 /dev/zero");
    assert_int_equal(stk_init_start(c, &p, &err), 0);
    struct stk_init_info info;
    assert_int_equal(stk_init_hello(c, &info, &err), 0);
    long long written = wait_blocked(info.pid);
    assert_true(written < 10LL * MIB); /* blocked, not finished */
    assert_int_equal(stk_init_hello(c, &info, &err), 0);
    assert_int_equal(info.state, STK_INIT_RUNNING);
    assert_true(rss_kb(d->pid) - base < RSS_GROWTH_MAX_KB);

    _cleanup_init_conn_ struct stk_init_conn *a = conn(d);
    struct captured cap = {.count_only = true};
    int code = -1, sig = -1;
    assert_int_equal(stk_init_attach(a, capture, &cap, &code, &sig, &err), 0);
    assert_int_equal(code, 0);
    assert_int_equal(cap.zero_bytes, 10 * MIB);
    assert_int_equal(cap.other_bytes, 0);
}

/* ---- lifecycle -------------------------------------------------------------------- */

static int ppid_of(pid_t pid, char *ret_state)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    _cleanup_fclose_ FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[512];
    if (!fgets(line, sizeof(line), f))
        return -1;
    const char *rp = strrchr(line, ')');
    int ppid = -1;
    if (!rp || sscanf(rp + 2, "%c %d", ret_state, &ppid) != 2)
        return -1;
    return ppid;
}

static void test_orphans_reaped(void **state)
{
    struct initd *d = *state;
    _cleanup_init_conn_ struct stk_init_conn *c = conn(d);
    _cleanup_error_ struct stk_error *err = NULL;
    /* the orphan inherits stdout: the exit status must not wait for it */
    struct stk_init_proc p = sh("sleep 1000 & echo $!");
    assert_int_equal(stk_init_start(c, &p, &err), 0);
    struct captured cap = {0};
    int code = -1, sig = -1;
    assert_int_equal(stk_init_attach(c, capture, &cap, &code, &sig, &err), 0);
    assert_int_equal(code, 0);
    pid_t orphan = atoi(stk_buf_str(&cap.out));
    assert_true(orphan > 0);
    char st;
    assert_int_equal(ppid_of(orphan, &st), d->pid); /* reparented to init */
    assert_int_equal(kill(orphan, SIGKILL), 0);
    assert_true(pid_gone(orphan)); /* reaped, not a zombie */
    /* and no zombie is left under init */
    _cleanup_(closedirp) DIR *proc = opendir("/proc");
    assert_non_null(proc);
    struct dirent *e;
    while ((e = readdir(proc))) {
        pid_t pid = atoi(e->d_name);
        if (pid > 0 && ppid_of(pid, &st) == d->pid)
            assert_true(st != 'Z');
    }
    stk_buf_free(&cap.out);
    stk_buf_free(&cap.err);
}

static void test_shutdown(void **state)
{
    struct initd *d = *state;
    _cleanup_init_conn_ struct stk_init_conn *c = conn(d);
    _cleanup_error_ struct stk_error *err = NULL;
    struct stk_init_proc p = sh("trap '' TERM; sleep 1000 & echo $!; wait");
    assert_int_equal(stk_init_start(c, &p, &err), 0);
    struct stk_init_info info;
    assert_int_equal(stk_init_hello(c, &info, &err), 0);
    /* an exec'd process too */
    int out[2];
    assert_int_equal(pipe(out), 0);
    pid_t child = fork();
    if (child == 0) {
        close(out[0]);
        /* init exits without an EXIT frame for it: the client sees an error */
        struct stk_init_conn *e = NULL;
        struct stk_error *err2 = NULL;
        struct stk_init_proc q = sh("echo $$; exec sleep 1000");
        int code;
        if (stk_init_connect(d->sock, 5000, &e, &err2) == 0)
            (void)stk_init_exec(e, &q, -1, out[1], 2, &code, &err2);
        _exit(0);
    }
    close(out[1]);
    char buf[32] = {0};
    assert_true(read(out[0], buf, sizeof(buf) - 1) > 0);
    pid_t execd = atoi(buf);
    close(out[0]);
    /* the workload ignores SIGTERM: the grace period ends in SIGKILL */
    assert_int_equal(stk_init_shutdown(c, 300, &err), 0);
    int status;
    assert_int_equal(waitpid(d->pid, &status, 0), d->pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    d->pid = 0;
    assert_true(pid_gone(info.pid));
    assert_true(pid_gone(execd));
    waitpid(child, NULL, 0);
}

static void test_sigterm_shuts_down(void **state)
{
    struct initd *d = *state;
    _cleanup_init_conn_ struct stk_init_conn *c = conn(d);
    _cleanup_error_ struct stk_error *err = NULL;
    struct stk_init_proc p = sh("exec sleep 1000");
    assert_int_equal(stk_init_start(c, &p, &err), 0);
    struct stk_init_info info;
    assert_int_equal(stk_init_hello(c, &info, &err), 0);
    assert_int_equal(kill(d->pid, SIGTERM), 0);
    int status;
    assert_int_equal(waitpid(d->pid, &status, 0), d->pid);
    assert_int_equal(WEXITSTATUS(status), 0);
    d->pid = 0;
    assert_true(pid_gone(info.pid));
}

static void test_proto_proc_roundtrip(void **state)
{
    (void)state;
    const char *argv[] = {"/bin/echo", "a b", ""};
    const char *env[] = {"A=1", "B="};
    struct stk_initp_proc *in = stk_xcalloc(1, sizeof(*in));
    struct stk_initp_proc *out = stk_xcalloc(1, sizeof(*out));
    in->tty = true;
    in->rows = 24;
    in->cols = 80;
    in->cwd = "/work";
    in->argc = 3;
    in->n_env = 2;
    memcpy(in->argv, argv, sizeof(argv));
    memcpy(in->env, env, sizeof(env));
    uint8_t buf[256];
    ssize_t n = stk_initp_proc_encode(buf, sizeof(buf), in, NULL);
    assert_true(n > 0);
    const char *why = NULL;
    assert_int_equal(stk_initp_proc_decode(buf, (size_t)n, out, &why), 0);
    assert_true(out->tty);
    assert_int_equal(out->rows, 24);
    assert_string_equal(out->cwd, "/work");
    assert_int_equal(out->argc, 3);
    assert_string_equal(out->argv[1], "a b");
    assert_string_equal(out->argv[2], "");
    assert_null(out->argv[3]);
    assert_string_equal(out->env[1], "B=");
    /* every truncation is rejected */
    for (ssize_t k = 0; k < n; k++)
        assert_int_equal(stk_initp_proc_decode(buf, (size_t)k, out, &why), -EINVAL);
    /* an env entry without '=' */
    in->env[1] = "B";
    n = stk_initp_proc_encode(buf, sizeof(buf), in, NULL);
    assert_int_equal(stk_initp_proc_decode(buf, (size_t)n, out, &why), -EINVAL);
    assert_string_equal(why, "env entry is not K=V");
    free(in);
    free(out);
}

/* ---- files ---------------------------------------------------------------------- */

/* RESIZE: 1..4096 each way; KILL: the signals a client may send, no
 * others (the faults stay the kernel's). */
static void test_proto_resize_kill(void **state)
{
    (void)state;
    uint8_t p[4];
    uint16_t rows = 7, cols = 7;
    stk_initp_resize_encode(p, 24, 80);
    assert_int_equal(stk_initp_resize_decode(p, 4, &rows, &cols), 0);
    assert_int_equal(rows, 24);
    assert_int_equal(cols, 80);
    stk_initp_resize_encode(p, STK_INITP_WINSIZE_MAX, 1);
    assert_int_equal(stk_initp_resize_decode(p, 4, &rows, &cols), 0);
    static const uint16_t bad[][2] = {{0, 80}, {24, 0}, {4097, 80}, {24, 65535}};
    for (size_t i = 0; i < STK_ARRAY_SIZE(bad); i++) {
        rows = cols = 7;
        stk_initp_resize_encode(p, bad[i][0], bad[i][1]);
        assert_int_equal(stk_initp_resize_decode(p, 4, &rows, &cols), -ERANGE);
        assert_int_equal(rows, 7); /* untouched */
    }
    assert_int_equal(stk_initp_resize_decode(p, 3, &rows, &cols), -EBADMSG);
    uint32_t sig = 0;
    static const int ok[] = {SIGHUP,  SIGINT,  SIGQUIT, SIGKILL, SIGUSR1, SIGUSR2,
                             SIGTERM, SIGCONT, SIGSTOP, SIGTSTP, SIGWINCH};
    for (size_t i = 0; i < STK_ARRAY_SIZE(ok); i++) {
        stk_initp_u32_encode(p, (uint32_t)ok[i]);
        assert_int_equal(stk_initp_kill_decode(p, 4, &sig), 0);
        assert_int_equal(sig, ok[i]);
    }
    static const uint32_t no[] = {0, SIGSEGV, SIGBUS, SIGILL, SIGABRT, SIGFPE, SIGALRM, 34, 64, 65};
    for (size_t i = 0; i < STK_ARRAY_SIZE(no); i++) {
        stk_initp_u32_encode(p, no[i]);
        assert_int_equal(stk_initp_kill_decode(p, 4, &sig), -EINVAL);
        assert_false(stk_initp_kill_signal_ok(no[i]));
    }
    assert_int_equal(stk_initp_kill_decode(p, 5, &sig), -EBADMSG);
    /* a process description's size: 0 (unknown) up to 4096 */
    const char *argv[] = {"sh", NULL};
    struct stk_initp_proc proc = {.tty = true, .rows = 4097, .cols = 80, .argc = 1};
    proc.argv[0] = argv[0];
    uint8_t buf[256];
    const char *why = NULL;
    assert_true(stk_initp_proc_encode(buf, sizeof(buf), &proc, &why) < 0);
    proc.rows = 0;
    ssize_t n = stk_initp_proc_encode(buf, sizeof(buf), &proc, &why);
    assert_true(n > 0);
    buf[1] = 0x11; /* rows 0x1100: 4352 */
    struct stk_initp_proc back;
    assert_int_equal(stk_initp_proc_decode(buf, (size_t)n, &back, &why), -EINVAL);
    assert_non_null(strstr(why, "4096"));
}

static void test_proto_file_roundtrip(void **state)
{
    (void)state;
    struct stk_initp_file *in = stk_xcalloc(1, sizeof(*in)), *out = stk_xcalloc(1, sizeof(*out));
    uint8_t buf[STK_INITP_FILE_WRITE_FIXED + STK_INITP_PATH_MAX];
    const char *why = NULL;
    snprintf(in->path, sizeof(in->path), "/workspace/a b/c.txt");
    in->mode = 0640;
    in->size = 12345;
    ssize_t n = stk_initp_file_encode(STK_INITP_FILE_WRITE, buf, sizeof(buf), in, &why);
    assert_int_equal(n, STK_INITP_FILE_WRITE_FIXED + (ssize_t)strlen(in->path));
    assert_int_equal(stk_initp_file_decode(STK_INITP_FILE_WRITE, buf, (size_t)n, out, &why), 0);
    assert_string_equal(out->path, in->path);
    assert_int_equal(out->mode, 0640);
    assert_int_equal(out->size, 12345);
    /* a truncated write request is short or a shorter path, never more */
    for (ssize_t k = 0; k < STK_INITP_FILE_WRITE_FIXED + 1; k++)
        assert_int_equal(stk_initp_file_decode(STK_INITP_FILE_WRITE, buf, (size_t)k, out, &why),
                         -EINVAL);
    n = stk_initp_file_encode(STK_INITP_FILE_READ, buf, sizeof(buf), in, &why);
    assert_int_equal(n, (ssize_t)strlen(in->path));
    assert_int_equal(stk_initp_file_decode(STK_INITP_FILE_READ, buf, (size_t)n, out, &why), 0);
    assert_string_equal(out->path, in->path);
    /* paths: what both ends refuse, and why */
    static const struct {
        uint8_t type;
        const char *path;
        const char *why;
    } bad[] = {
        {STK_INITP_FILE_READ, "relative", "the path must be absolute"},
        {STK_INITP_FILE_READ, "", "the path must be absolute"},
        {STK_INITP_FILE_READ, "/a/../etc/passwd", "the path has a '..' component"},
        {STK_INITP_FILE_READ, "/..", "the path has a '..' component"},
        {STK_INITP_FILE_WRITE, "/tmp/", "the path names a directory, not a file"},
        {STK_INITP_FILE_WRITE, "/", "the path names a directory, not a file"},
    };
    for (size_t i = 0; i < STK_ARRAY_SIZE(bad); i++) {
        snprintf(in->path, sizeof(in->path), "%s", bad[i].path);
        assert_int_equal(stk_initp_file_encode(bad[i].type, buf, sizeof(buf), in, &why), -EINVAL);
        assert_string_equal(why, bad[i].why);
        size_t off = bad[i].type == STK_INITP_FILE_WRITE ? STK_INITP_FILE_WRITE_FIXED : 0;
        memcpy(buf, "\0\0\001\244\0\0\0\0\0\0\0\001", off); /* mode 0644, size 1 */
        memcpy(buf + off, bad[i].path, strlen(bad[i].path));
        assert_int_equal(
            stk_initp_file_decode(bad[i].type, buf, off + strlen(bad[i].path), out, &why), -EINVAL);
        assert_string_equal(why, bad[i].why);
    }
    /* "/a/..b" and "/a/b.." are names, not parents */
    snprintf(in->path, sizeof(in->path), "/a/..b/c..");
    assert_true(stk_initp_file_encode(STK_INITP_FILE_READ, buf, sizeof(buf), in, &why) > 0);
    /* a NUL inside the path on the wire */
    memcpy(buf, "/a\0b", 4);
    assert_int_equal(stk_initp_file_decode(STK_INITP_FILE_READ, buf, 4, out, &why), -EINVAL);
    assert_string_equal(why, "the path contains a NUL byte");
    /* limits: mode bits, size */
    snprintf(in->path, sizeof(in->path), "/tmp/x");
    in->mode = 04755;
    assert_int_equal(stk_initp_file_encode(STK_INITP_FILE_WRITE, buf, sizeof(buf), in, &why),
                     -EINVAL);
    in->mode = 0644;
    in->size = STK_INITP_FILE_MAX + 1ULL;
    assert_int_equal(stk_initp_file_encode(STK_INITP_FILE_WRITE, buf, sizeof(buf), in, &why),
                     -EFBIG);
    memset(buf, 0, 4);
    memcpy(buf + 4, "\0\0\0\0\x01\0\0\x01/tmp/x", 14); /* 16 MiB + 1 */
    assert_int_equal(stk_initp_file_decode(STK_INITP_FILE_WRITE, buf, 18, out, &why), -EFBIG);
    /* the OK to a read */
    uint8_t info[STK_INITP_FILE_INFO_LEN];
    uint64_t size;
    uint32_t mode;
    stk_initp_file_info_encode(info, 77, 0600);
    assert_int_equal(stk_initp_file_info_decode(info, sizeof(info), &size, &mode), 0);
    assert_int_equal(size, 77);
    assert_int_equal(mode, 0600);
    stk_initp_file_info_encode(info, STK_INITP_FILE_MAX + 1ULL, 0600);
    assert_int_equal(stk_initp_file_info_decode(info, sizeof(info), &size, &mode), -EBADMSG);
    free(in);
    free(out);
}

static int collect_data(void *ud, const void *data, size_t n)
{
    stk_buf_append(ud, data, n);
    return 0;
}

/* Names in dir that start with prefix. */
static int count_prefixed(const char *dir, const char *prefix)
{
    _cleanup_(closedirp) DIR *dp = opendir(dir);
    assert_non_null(dp);
    int n = 0;
    for (struct dirent *e; (e = readdir(dp));)
        n += !strncmp(e->d_name, prefix, strlen(prefix));
    return n;
}

static void test_file_write_read(void **state)
{
    struct initd *d = *state;
    size_t sizes[] = {0, 5, 4 * MIB + 7, STK_INITP_FILE_MAX};
    char path[256];
    snprintf(path, sizeof(path), "%s/f", d->dir);
    for (size_t k = 0; k < STK_ARRAY_SIZE(sizes); k++) {
        _cleanup_close_ int in = tmpfd();
        _cleanup_free_ char *data = stk_xmalloc(sizes[k] + 1);
        for (size_t i = 0; i < sizes[k]; i++)
            data[i] = (char)(i * 13 + i / 509);
        assert_int_equal(write(in, data, sizes[k]), (ssize_t)sizes[k]);
        assert_int_equal(lseek(in, 0, SEEK_SET), 0);
        _cleanup_error_ struct stk_error *err = NULL;
        _cleanup_init_conn_ struct stk_init_conn *c = conn(d);
        if (stk_init_file_write(c, path, 0640, sizes[k], in, &err) < 0)
            fail_msg("write %zu bytes: %s", sizes[k], err->msg);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_size, (off_t)sizes[k]);
        assert_int_equal(st.st_mode & 0777, 0640);
        _cleanup_init_conn_ struct stk_init_conn *c2 = conn(d);
        _cleanup_buf_ struct stk_buf got = {0};
        uint64_t size = 1;
        unsigned mode = 0;
        if (stk_init_file_read(c2, path, collect_data, &got, &size, &mode, &err) < 0)
            fail_msg("read %zu bytes: %s", sizes[k], err->msg);
        assert_int_equal(size, sizes[k]);
        assert_int_equal(mode, 0640);
        assert_int_equal(got.len, sizes[k]);
        if (sizes[k])
            assert_memory_equal(got.data, data, sizes[k]);
    }
    assert_int_equal(count_prefixed(d->dir, ".stockade-cp"), 0);
    unlink(path);
}

static int file_read_err(struct initd *d, const char *path, char *msg, size_t n)
{
    _cleanup_error_ struct stk_error *err = NULL;
    _cleanup_init_conn_ struct stk_init_conn *c = conn(d);
    _cleanup_buf_ struct stk_buf got = {0};
    int r = stk_init_file_read(c, path, collect_data, &got, NULL, NULL, &err);
    snprintf(msg, n, "%s", err ? err->msg : "");
    return r;
}

static int file_write_err(struct initd *d, const char *path, const char *data, uint64_t size,
                          char *msg, size_t n)
{
    _cleanup_error_ struct stk_error *err = NULL;
    _cleanup_init_conn_ struct stk_init_conn *c = conn(d);
    _cleanup_close_ int in = tmpfd();
    assert_int_equal(write(in, data, strlen(data)), (ssize_t)strlen(data));
    assert_int_equal(lseek(in, 0, SEEK_SET), 0);
    int r = stk_init_file_write(c, path, 0644, size, in, &err);
    snprintf(msg, n, "%s", err ? err->msg : "");
    return r;
}

static void test_file_refusals(void **state)
{
    struct initd *d = *state;
    char real[128], link[128], p[256], msg[512];
    snprintf(real, sizeof(real), "%s/real", d->dir);
    snprintf(link, sizeof(link), "%s/link", d->dir);
    assert_int_equal(mkdir(real, 0755), 0);
    assert_int_equal(symlink(real, link), 0);
    snprintf(p, sizeof(p), "%s/kept", real);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs("original", f);
    fclose(f);

    /* a symbolic link anywhere in the path is not followed, either way */
    snprintf(p, sizeof(p), "%s/kept", link);
    assert_int_equal(file_read_err(d, p, msg, sizeof(msg)), -ELOOP);
    assert_non_null(strstr(msg, "symbolic link"));
    snprintf(p, sizeof(p), "%s/new", link);
    assert_int_equal(file_write_err(d, p, "x", 1, msg, sizeof(msg)), -ELOOP);
    snprintf(p, sizeof(p), "%s/new", real);
    assert_int_equal(access(p, F_OK), -1);
    /* ... nor as the last component: reading it, or writing over it */
    snprintf(p, sizeof(p), "%s/kept", real);
    char flink[160];
    snprintf(flink, sizeof(flink), "%s/flink", d->dir);
    assert_int_equal(symlink(p, flink), 0);
    assert_int_equal(file_read_err(d, flink, msg, sizeof(msg)), -ELOOP);
    assert_int_equal(file_write_err(d, flink, "x", 1, msg, sizeof(msg)), -EEXIST);
    assert_non_null(strstr(msg, "not a regular file"));

    /* directories, FIFOs (no hang), missing paths */
    assert_int_equal(file_read_err(d, real, msg, sizeof(msg)), -EISDIR);
    assert_int_equal(file_write_err(d, real, "x", 1, msg, sizeof(msg)), -EISDIR);
    char fifo[160];
    snprintf(fifo, sizeof(fifo), "%s/fifo", d->dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_int_equal(file_read_err(d, fifo, msg, sizeof(msg)), -EINVAL);
    assert_int_equal(file_write_err(d, fifo, "x", 1, msg, sizeof(msg)), -EEXIST);
    snprintf(p, sizeof(p), "%s/nosuch/f", d->dir);
    assert_int_equal(file_read_err(d, p, msg, sizeof(msg)), -ENOENT);
    assert_int_equal(file_write_err(d, p, "x", 1, msg, sizeof(msg)), -ENOENT);

    /* a source shorter or longer than announced changes nothing */
    snprintf(p, sizeof(p), "%s/kept", real);
    assert_int_equal(file_write_err(d, p, "short", 10, msg, sizeof(msg)), -EIO);
    assert_int_equal(file_write_err(d, p, "longer than 3", 3, msg, sizeof(msg)), -EIO);
    _cleanup_buf_ struct stk_buf got = {0};
    {
        _cleanup_error_ struct stk_error *err = NULL;
        _cleanup_init_conn_ struct stk_init_conn *c = conn(d);
        assert_int_equal(stk_init_file_read(c, p, collect_data, &got, NULL, NULL, &err), 0);
    }
    assert_int_equal(got.len, 8);
    assert_memory_equal(got.data, "original", 8);
    /* init drops the temporary file once the connection is gone */
    for (int i = 0; i < 100 && count_prefixed(real, ".stockade-cp"); i++)
        sleep_ms(10);
    assert_int_equal(count_prefixed(real, ".stockade-cp"), 0);

    /* init is still fine */
    _cleanup_error_ struct stk_error *err = NULL;
    _cleanup_init_conn_ struct stk_init_conn *c = conn(d);
    struct stk_init_info info;
    assert_int_equal(stk_init_hello(c, &info, &err), 0);
    unlink(flink);
    unlink(fifo);
    unlink(link);
    unlink(p);
    rmdir(real);
}

/* ---- as PID 1 of a PID namespace -------------------------------------------- */

/* fork → unshare(CLONE_NEWPID) → fork: the grandchild is PID 1 of a new
 * namespace. The middle process reports its host pid and waits for it. */
static void test_pid1(void **state)
{
    struct initd *d = *state;
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, d->sock);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 64), 0);
    int report[2];
    assert_int_equal(pipe(report), 0);
    pid_t mid = fork();
    assert_true(mid >= 0);
    if (mid == 0) {
        if (unshare(CLONE_NEWPID) < 0)
            _exit(77);
        pid_t pid = fork();
        if (pid == 0) {
            if (lfd == 3 ? fcntl(3, F_SETFD, 0) < 0 : dup2(lfd, 3) < 0)
                _exit(120);
            execl(STK_INIT_PATH, "stockade-init", (char *)NULL);
            _exit(121);
        }
        if (write(report[1], &pid, sizeof(pid)) != sizeof(pid))
            _exit(122);
        int st = 0;
        waitpid(pid, &st, 0);
        _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    }
    close(lfd);
    close(report[1]);
    pid_t init = 0;
    if (read(report[0], &init, sizeof(init)) != sizeof(init)) {
        int st;
        waitpid(mid, &st, 0);
        close(report[0]);
        if (WEXITSTATUS(st) == 77)
            skip(); /* no PID namespaces here */
        fail_msg("pid namespace setup failed: %d", WEXITSTATUS(st));
    }
    close(report[0]);
    d->pid = mid; /* teardown kills the middle process */

    _cleanup_init_conn_ struct stk_init_conn *c = conn(d);
    _cleanup_error_ struct stk_error *err = NULL;
    /* the workload sees init as PID 1 and cannot make it shut down */
    _cleanup_close_ int out = tmpfd();
    assert_int_equal(exec_sh(d, "kill -TERM 1; echo $PPID", -1, out, 2), 0);
    size_t n;
    _cleanup_free_ char *got = read_file(out, &n);
    assert_string_equal(got, "1\n");
    struct stk_init_info info;
    assert_int_equal(stk_init_hello(c, &info, &err), 0);
    /* an orphan is reaped by PID 1 */
    struct stk_init_proc p = sh("sleep 1000 & echo $!");
    assert_int_equal(stk_init_start(c, &p, &err), 0);
    struct captured cap = {0};
    int code = -1, sig = -1;
    assert_int_equal(stk_init_attach(c, capture, &cap, &code, &sig, &err), 0);
    assert_int_equal(code, 0);
    stk_buf_free(&cap.out);
    stk_buf_free(&cap.err);
    /* SIGTERM from outside the namespace (the runtime) shuts it down and
     * everything in the namespace goes with it */
    assert_int_equal(kill(init, SIGTERM), 0);
    int st;
    assert_int_equal(waitpid(mid, &st, 0), mid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    d->pid = 0;
    assert_true(pid_gone(init));
}

/* The PID 1 test makes its own init. */
static int setup_dir(void **state)
{
    struct initd *d = stk_xcalloc(1, sizeof(*d));
    strcpy(d->dir, "/tmp/stk-init-XXXXXX");
    assert_non_null(mkdtemp(d->dir));
    snprintf(d->sock, sizeof(d->sock), "%s/init.sock", d->dir);
    *state = d;
    return 0;
}

/* --listen PATH (gVisor): init binds and listens at PATH itself. A
 * connection that succeeds is the host's sign that init listens, and the
 * host then changes the directory, so init leaves nothing else in it. */
static void test_listen_mode(void **state)
{
    struct initd *d = *state;
    d->pid = fork();
    assert_true(d->pid >= 0);
    if (d->pid == 0) {
        execl(STK_INIT_PATH, "stockade-init", "--listen", d->sock, (char *)NULL);
        _exit(121);
    }
    /* retried while the socket is missing or not listening yet */
    _cleanup_init_conn_ struct stk_init_conn *c = conn(d);
    _cleanup_error_ struct stk_error *err = NULL;
    struct stk_init_info info;
    assert_int_equal(stk_init_hello(c, &info, &err), 0);
    assert_int_equal(info.state, STK_INIT_IDLE);
    _cleanup_(closedirp) DIR *dir = opendir(d->dir);
    assert_non_null(dir);
    int n = 0;
    for (struct dirent *e; (e = readdir(dir));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        assert_string_equal(e->d_name, "init.sock");
        n++;
    }
    assert_int_equal(n, 1);
    struct stat st;
    assert_int_equal(lstat(d->sock, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700); /* bound under umask 077 */
}

#define INIT_TEST(f) cmocka_unit_test_setup_teardown(f, setup_init, teardown_init)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_proto_proc_roundtrip),
        cmocka_unit_test(test_proto_file_roundtrip),
        cmocka_unit_test(test_proto_resize_kill),
        INIT_TEST(test_file_write_read),
        INIT_TEST(test_file_refusals),
        INIT_TEST(test_hello_start_attach),
        INIT_TEST(test_attach_before_start_and_signal),
        INIT_TEST(test_exec_cat_roundtrip),
        INIT_TEST(test_exec_exit_codes_env_cwd),
        INIT_TEST(test_exec_tty),
        INIT_TEST(test_exec_nosuch),
        INIT_TEST(test_exec_concurrent),
        INIT_TEST(test_exec_disconnect_kills),
        INIT_TEST(test_malformed_frames),
        INIT_TEST(test_exec_slow_reader),
        INIT_TEST(test_workload_backpressure),
        INIT_TEST(test_orphans_reaped),
        INIT_TEST(test_shutdown),
        INIT_TEST(test_sigterm_shuts_down),
        cmocka_unit_test_setup_teardown(test_pid1, setup_dir, teardown_init),
        cmocka_unit_test_setup_teardown(test_listen_mode, setup_dir, teardown_init),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
