/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Paths built into fixed buffers, never cut. A cut path names another file:
 * removing, locking or opening it acts on the wrong thing. So a path that
 * does not fit is an error, and the buffer is left empty (an empty path
 * names nothing), so a caller that ignores the error still cannot use it.
 */
#include "base/base.h"

#include <errno.h>
#include <stdio.h>

int stk_path_vfmt(char *buf, size_t n, const char *fmt, va_list ap)
{
    if (n == 0)
        return -ENAMETOOLONG;
    int r = vsnprintf(buf, n, fmt, ap);
    if (r < 0 || (size_t)r >= n) {
        buf[0] = '\0';
        return r < 0 ? -EINVAL : -ENAMETOOLONG;
    }
    return r;
}

int stk_path_fmt(char *buf, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = stk_path_vfmt(buf, n, fmt, ap);
    va_end(ap);
    return r;
}

int stk_path_make(char *buf, size_t n, struct stk_error **err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = n ? vsnprintf(buf, n, fmt, ap) : 0;
    va_end(ap);
    if (r >= 0 && (size_t)r < n)
        return r;
    char head[64] = "";
    if (n)
        snprintf(head, sizeof(head), "%s", buf);
    if (n)
        buf[0] = '\0';
    if (r < 0)
        return stk_error_make(err, EINVAL, "building a path from \"%s\" failed", fmt);
    return stk_error_make(err, ENAMETOOLONG, "path %s... is %d bytes long, more than %zu", head, r,
                          n ? n - 1 : 0);
}
