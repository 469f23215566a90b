/* SPDX-License-Identifier: Apache-2.0 */
#include "base.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static int error_set(struct stk_error **err, int code, char *msg)
{
    int ret = code > 0 ? -code : -EINVAL;
    if (!err) {
        free(msg);
        return ret;
    }
    /* The first error wins: a later one would hide the cause. */
    if (*err) {
        free(msg);
        return ret;
    }
    struct stk_error *e = stk_xcalloc(1, sizeof(*e));
    e->code = code;
    e->msg = msg;
    *err = e;
    return ret;
}

int stk_error_make(struct stk_error **err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = stk_xvasprintf(fmt, ap);
    va_end(ap);
    return error_set(err, code, msg);
}

int stk_error_errno(struct stk_error **err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *head = stk_xvasprintf(fmt, ap);
    va_end(ap);
    return error_set(err, code, stk_xasprintf("%s: %s", head, strerror(code)));
}

int stk_error_wrap(struct stk_error **err, const char *fmt, ...)
{
    if (!err || !*err)
        return -EINVAL;
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *ctx = stk_xvasprintf(fmt, ap);
    va_end(ap);
    char *msg = stk_xasprintf("%s: %s", ctx, (*err)->msg);
    free((*err)->msg);
    (*err)->msg = msg;
    return (*err)->code > 0 ? -(*err)->code : -EINVAL;
}

void stk_error_free(struct stk_error *err)
{
    if (!err)
        return;
    free(err->msg);
    free(err);
}

void stk_fault_point(const char *point)
{
    /* Crash-recovery tests name the point where a stockade process must
     * die as kill -9 would kill it: no cleanup, no atexit, nothing flushed. */
    const char *want = getenv("STOCKADE_FAULT");
    if (want && !strcmp(want, point))
        raise(SIGKILL);
}
