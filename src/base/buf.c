/* SPDX-License-Identifier: Apache-2.0 */
#include "base.h"

#include <string.h>

static void buf_reserve(struct stk_buf *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len - 1)
        stk_oom();
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    b->data = stk_xrealloc(b->data, cap);
    b->cap = cap;
}

void stk_buf_append(struct stk_buf *b, const void *data, size_t n)
{
    buf_reserve(b, n);
    if (n)
        memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void stk_buf_puts(struct stk_buf *b, const char *s)
{
    stk_buf_append(b, s, strlen(s));
}

void stk_buf_putc(struct stk_buf *b, char c)
{
    stk_buf_append(b, &c, 1);
}

void stk_buf_vprintf(struct stk_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return;
    buf_reserve(b, (size_t)n);
    (void)vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void stk_buf_printf(struct stk_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    stk_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

const char *stk_buf_str(struct stk_buf *b)
{
    return b->data ? b->data : "";
}

char *stk_buf_steal(struct stk_buf *b)
{
    char *s = b->data ? b->data : stk_xstrdup("");
    b->data = NULL;
    b->len = b->cap = 0;
    return s;
}

void stk_buf_free(struct stk_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
