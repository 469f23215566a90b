/* SPDX-License-Identifier: Apache-2.0 */
/*
 * verify on a live sandbox: plan the claims from its boundary (the stored
 * spec, resolved again: the boundary is the single source of truth), run
 * stockade-probe inside it through stockade-init like any exec, and judge
 * what the probe saw. The verdict is an audit record.
 */
#include "session/private.h"
#include "verify/verify.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* The probe's report is bounded while it is read, by a child of ours that
 * copies at most STK_VERIFY_MAX_REPORT + 1 bytes from a pipe into mem and
 * then closes the pipe: the exec's next write fails (EPIPE) and the exec
 * with it. No limit of this process changes: it writes the store (the
 * exec's audit records) while the probe runs, and a lowered RLIMIT_FSIZE
 * would fail those writes (EFBIG) once the WAL is past the bound. */
static int probe_exec(struct stk_session *s, const char *id, const struct stk_init_proc *proc,
                      int in_fd, int mem, int *ret_code, bool *ret_too_big, struct stk_error **err)
{
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) < 0)
        return stk_error_errno(err, errno, "pipe");
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(pfd[0]);
        close(pfd[1]);
        return stk_error_errno(err, e, "fork");
    }
    if (pid == 0) {
        close(pfd[1]);
        char buf[16384];
        size_t total = 0;
        for (;;) {
            ssize_t n = read(pfd[0], buf, sizeof(buf));
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                _exit(n < 0 ? 2 : 0);
            /* past the bound: keep one byte more (so it shows), then go */
            size_t keep = (size_t)n;
            if (total + keep > (size_t)STK_VERIFY_MAX_REPORT + 1)
                keep = (size_t)STK_VERIFY_MAX_REPORT + 1 - total;
            for (size_t off = 0; off < keep;) {
                ssize_t w = write(mem, buf + off, keep - off);
                if (w < 0 && errno == EINTR)
                    continue;
                if (w <= 0)
                    _exit(2);
                off += (size_t)w;
            }
            total += keep;
            if (total > (size_t)STK_VERIFY_MAX_REPORT)
                _exit(1);
        }
    }
    close(pfd[0]);
    /* a closed pipe is an error of the exec, not a signal that kills us */
    void (*old_pipe)(int) = signal(SIGPIPE, SIG_IGN);
    int r = stk_session_exec(s, id, proc, in_fd, pfd[1], STDERR_FILENO, ret_code, err);
    close(pfd[1]);
    signal(SIGPIPE, old_pipe);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    *ret_too_big = WIFEXITED(st) && WEXITSTATUS(st) == 1;
    if (r >= 0 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0) && !*ret_too_big)
        return stk_error_make(err, EIO, "reading the probe's report failed");
    return r;
}

/* A backend whose sandboxes do not carry the probe (a Pod runs its own
 * image) gets it on the exec's stdin: sh writes exactly SIZE bytes of it
 * into a fresh directory under /tmp (a writable volume), runs it with the
 * plan's arguments and removes it. The workload runs as the same user and
 * could race to replace the file between the copy and the run: docs/verify.md
 * says so. */
static const char probe_script[] =
    "umask 077; n=$1; shift; d=/tmp/.stockade-probe.$$; mkdir \"$d\" || exit 125; "
    "head -c \"$n\" > \"$d/p\" && chmod 700 \"$d/p\" && \"$d/p\" \"$@\"; rc=$?; "
    "rm -rf \"$d\"; exit $rc";

#define PROBE_MAX_BYTES (64 << 20)

static int probe_open(char size[24], struct stk_error **err)
{
    char dir[PATH_MAX - 32], path[PATH_MAX];
    int r = stk_local_libexec_source(dir, sizeof(dir), err);
    if (r < 0)
        return r;
    snprintf(path, sizeof(path), "%s/stockade-probe", dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    if (fd < 0)
        return stk_error_errno(err, errno, "opening %s", path);
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
        st.st_size > PROBE_MAX_BYTES) {
        close(fd);
        return stk_error_make(err, EINVAL,
                              "%s is not the probe (a regular file of at most %d bytes)", path,
                              PROBE_MAX_BYTES);
    }
    snprintf(size, 24, "%lld", (long long)st.st_size);
    return fd;
}

/* The backend's own rows (a cluster's objects against their rendering). */
static int verify_outside(struct stk_session *s, const char *id, struct stk_verify_report *rep,
                          struct stk_error **err)
{
    if (!s->drv->ops->verify_outside)
        return 0;
    struct session_sb sb;
    _cleanup_free_ char *rows = NULL;
    int r = session_sb_load(s, id, true, &sb, err);
    if (r < 0)
        return r;
    r = s->drv->ops->verify_outside(s->drv->ctx, &sb.d, &rows, err);
    r = session_drv_error(s, "verify", r, err);
    session_sb_release(&sb);
    return r < 0 ? r : rows ? stk_verify_report_add_json(rep, rows, err) : 0;
}

int stk_session_verify(struct stk_session *s, const char *id, const struct stk_verify_target *to,
                       size_t n_to, int timeout_ms, const char *replica,
                       struct stk_verify_report **ret, struct stk_error **err)
{
    struct stk_sb_rec rec = {0};
    struct stk_session_boundary sb = {0};
    struct stk_verify_plan *plan = NULL;
    _cleanup_free_ char *report = NULL, *dj = NULL;
    _cleanup_close_ int out = -1, probe_fd = -1;
    if (s->drv->ops->models_only)
        /* verify observes a live sandbox from inside; modelling the
         * observations would be the pretence a model must not make */
        return stk_error_make(err, ENOTSUP,
                              "sandbox %s is simulated: verify proves the contract from inside a "
                              "live sandbox, and the %s backend runs none (stockade explain "
                              "--backend %s states what is modelled)",
                              id, stk_backend_names[s->backend], stk_backend_names[s->backend]);
    if (s->drv->ops->no_verify)
        return stk_error_make(err, ENOTSUP, "sandbox %s: verify on the %s backend: %s", id,
                              stk_backend_names[s->backend], s->drv->ops->no_verify);
    int r = session_get(s, id, &rec, err);
    if (r < 0)
        return r;
    if ((r = session_rec_boundary(&rec, &sb, err)) < 0)
        goto out;
    struct stk_verify_opts o = {
        .runtime = rec.runtime,
        .kubernetes = s->backend == STK_BACKEND_KUBERNETES,
        .network = true, /* long-lived sandboxes always get their veth and rules */
        .to = to,
        .n_to = n_to,
        .timeout_ms = timeout_ms,
    };
    if (s->backend == STK_BACKEND_LOCAL) {
        struct stk_local_paths lp = {.state_dir = s->state_dir, .run_dir = s->run_dir};
        if (stk_local_idmap_of(&lp, rec.id, &o.id_base, &o.id_size) < 0)
            o.id_base = o.id_size = 0;
    }
    if ((r = stk_verify_plan_make(sb.b, &o, &plan, err)) < 0)
        goto out;
    const char *const *argv = stk_verify_plan_argv(plan);
    size_t argc = 0;
    while (argv[argc])
        argc++;
    struct stk_init_proc proc = {.argv = argv, .argc = argc, .replica = replica};
    const char **sh_argv = NULL;
    char size[24];
    if (s->drv->ops->probe_stdin) {
        if ((probe_fd = probe_open(size, err)) < 0) {
            r = probe_fd;
            goto out;
        }
        sh_argv = stk_xcalloc(argc + 5, sizeof(*sh_argv));
        size_t n = 0;
        sh_argv[n++] = "sh";
        sh_argv[n++] = "-c";
        sh_argv[n++] = probe_script;
        sh_argv[n++] = "stockade-probe";
        sh_argv[n++] = size;
        for (size_t i = 1; i < argc; i++)
            sh_argv[n++] = argv[i];
        proc = (struct stk_init_proc){.argv = sh_argv, .argc = n, .replica = replica};
    }
    /* the report may be larger than a pipe holds: a memory file, filled by
     * a reader that bounds it */
    out = memfd_create("stockade-probe", MFD_CLOEXEC);
    if (out < 0) {
        r = stk_error_errno(err, errno, "memfd_create");
        goto out;
    }
    int code = 0;
    bool too_big = false;
    r = probe_exec(s, rec.id, &proc, probe_fd, out, &code, &too_big, err);
    free(sh_argv);
    if (r < 0 && !too_big)
        goto out;
    struct stat st;
    if (too_big || fstat(out, &st) < 0 || st.st_size > STK_VERIFY_MAX_REPORT) {
        if (err)
            stk_error_freep(err);
        r = stk_error_make(err, E2BIG, "the probe's report is larger than %d bytes",
                           STK_VERIFY_MAX_REPORT);
        goto out;
    }
    report = stk_xmalloc((size_t)st.st_size + 1);
    if (pread(out, report, (size_t)st.st_size, 0) != st.st_size) {
        r = stk_error_errno(err, errno, "reading the probe's report");
        goto out;
    }
    if (code != 0) {
        r = stk_error_make(err, EIO, "the probe exited %d inside sandbox %s%s", code, rec.id,
                           s->drv->ops->probe_stdin
                               ? " (it is copied in through `sh -c` on stdin: the image needs sh "
                                 "and head, and /tmp must be writable and allow running it)"
                               : "");
        goto out;
    }
    if ((r = stk_verify_judge(plan, report, (size_t)st.st_size, ret, err)) < 0)
        goto out;
    if ((r = verify_outside(s, rec.id, *ret, err)) < 0) {
        stk_verify_report_free(*ret);
        *ret = NULL;
        goto out;
    }
    if (sb.b->image) {
        /* the digest the local driver marked at provision */
        char mark[PATH_MAX + 128], digest[80] = "";
        int fd = -1;
        if (stk_path_fmt(mark, sizeof(mark), "%s/sandboxes/%s/" STK_LOCAL_IMAGE_MARK, s->state_dir,
                         rec.id) >= 0 &&
            (fd = open(mark, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) >= 0) {
            ssize_t k = read(fd, digest, sizeof(digest) - 1);
            digest[k > 0 ? k : 0] = '\0';
            close(fd);
        }
        stk_verify_report_set_image(*ret, sb.b->image, digest[0] ? digest : NULL);
    }
    json_t *d = json_pack("{s:b}", "ok", stk_verify_report_ok(*ret));
    dj = json_dumps(d, JSON_COMPACT);
    json_decref(d);
    (void)stk_audit_append(s->st, rec.id, "verified", s->actor, dj, NULL);
out:
    stk_verify_plan_free(plan);
    stk_session_boundary_release(&sb);
    stk_sb_rec_free(&rec);
    return r;
}
