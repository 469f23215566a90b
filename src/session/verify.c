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
#include <jansson.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

int stk_session_verify(struct stk_session *s, const char *id, const struct stk_verify_target *to,
                       size_t n_to, int timeout_ms, struct stk_verify_report **ret,
                       struct stk_error **err)
{
    struct stk_sb_rec rec = {0};
    struct stk_session_boundary sb = {0};
    struct stk_verify_plan *plan = NULL;
    _cleanup_free_ char *report = NULL, *dj = NULL;
    _cleanup_close_ int out = -1;
    if (s->drv->ops->models_only)
        /* verify observes a live sandbox from inside; modelling the
         * observations would be the pretence a model must not make */
        return stk_error_make(err, ENOTSUP,
                              "sandbox %s is simulated: verify proves the contract from inside a "
                              "live sandbox, and the %s backend runs none (stockade explain "
                              "--backend %s states what is modelled)",
                              id, stk_backend_names[s->backend], stk_backend_names[s->backend]);
    int r = session_get(s, id, &rec, err);
    if (r < 0)
        return r;
    if ((r = session_rec_boundary(&rec, &sb, err)) < 0)
        goto out;
    struct stk_verify_opts o = {
        .runtime = rec.runtime,
        .network = true, /* long-lived sandboxes always get their veth and rules */
        .to = to,
        .n_to = n_to,
        .timeout_ms = timeout_ms,
    };
    if ((r = stk_verify_plan_make(sb.b, &o, &plan, err)) < 0)
        goto out;
    const char *const *argv = stk_verify_plan_argv(plan);
    size_t argc = 0;
    while (argv[argc])
        argc++;
    struct stk_init_proc proc = {.argv = argv, .argc = argc};
    /* the report may be larger than a pipe holds: a memory file */
    out = memfd_create("stockade-probe", MFD_CLOEXEC);
    if (out < 0) {
        r = stk_error_errno(err, errno, "memfd_create");
        goto out;
    }
    int code = 0;
    /* the report is bounded while it is written, not after: past the
     * bound the write fails (EFBIG) and the exec with it */
    struct rlimit old, cap = {STK_VERIFY_MAX_REPORT + 1, STK_VERIFY_MAX_REPORT + 1};
    void (*old_xfsz)(int) = signal(SIGXFSZ, SIG_IGN);
    bool capped = getrlimit(RLIMIT_FSIZE, &old) == 0 && old.rlim_cur > cap.rlim_cur &&
                  setrlimit(RLIMIT_FSIZE, &(struct rlimit){cap.rlim_cur, old.rlim_max}) == 0;
    r = stk_session_exec(s, rec.id, &proc, -1, out, STDERR_FILENO, &code, err);
    if (capped)
        (void)setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, old_xfsz);
    if (r < 0)
        goto out;
    struct stat st;
    if (fstat(out, &st) < 0 || st.st_size > STK_VERIFY_MAX_REPORT) {
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
        r = stk_error_make(err, EIO, "the probe exited %d inside sandbox %s", code, rec.id);
        goto out;
    }
    if ((r = stk_verify_judge(plan, report, (size_t)st.st_size, ret, err)) < 0)
        goto out;
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
