/* SPDX-License-Identifier: Apache-2.0 */
#include "base.h"

#include <string.h>

void stk_oom(void)
{
    static const char msg[] = "stockade: out of memory\n";
    (void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
    abort();
}

void *stk_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        stk_oom();
    return p;
}

void *stk_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        stk_oom();
    return p;
}

void *stk_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        stk_oom();
    return q;
}

char *stk_xstrdup(const char *s)
{
    return stk_xstrndup(s, strlen(s));
}

char *stk_xstrndup(const char *s, size_t n)
{
    char *p = stk_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *stk_xvasprintf(const char *fmt, va_list ap)
{
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        stk_oom();
    return s;
}

char *stk_xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = stk_xvasprintf(fmt, ap);
    va_end(ap);
    return s;
}
