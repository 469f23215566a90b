/* SPDX-License-Identifier: Apache-2.0 */
#include "spec.h"

#include <string.h>

/* Diagnostics quote user input; control characters in it must not reach a
 * terminal (escape sequences), so they are written as \xNN. */
static char *sanitize(char *s)
{
    size_t n = 0;
    for (const char *p = s; *p; p++)
        n += ((unsigned char)*p < 0x20 || *p == 0x7f) ? 4 : 1;
    char *out = stk_xmalloc(n + 1), *o = out;
    for (const char *p = s; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            o += sprintf(o, "\\x%02x", (unsigned char)*p);
        else
            *o++ = *p;
    }
    *o = '\0';
    free(s);
    return out;
}

void stk_diags_add(struct stk_diags *d, enum stk_severity sev, const char *file, struct stk_pos pos,
                   const char *path, const char *fmt, ...)
{
    if (sev == STK_SEV_ERROR)
        d->n_errors++;
    else
        d->n_warnings++;
    if (d->n >= STK_LIMIT_DIAGS) {
        d->dropped++;
        return;
    }
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 8;
        d->items = stk_xrealloc(d->items, d->cap * sizeof(*d->items));
    }
    va_list ap;
    va_start(ap, fmt);
    d->items[d->n++] = (struct stk_diag){
        .sev = sev,
        .file = sanitize(stk_xstrdup(file ? file : "")),
        .pos = pos,
        .path = sanitize(stk_xstrdup(path ? path : "")),
        .msg = sanitize(stk_xvasprintf(fmt, ap)),
    };
    va_end(ap);
}

void stk_diags_free(struct stk_diags *d)
{
    for (size_t i = 0; i < d->n; i++) {
        free(d->items[i].file);
        free(d->items[i].path);
        free(d->items[i].msg);
    }
    free(d->items);
    memset(d, 0, sizeof(*d));
}

char *stk_diag_format(const struct stk_diag *diag)
{
    struct stk_buf b = {0};
    stk_buf_puts(&b, diag->file);
    if (diag->pos.line)
        stk_buf_printf(&b, ":%u:%u", diag->pos.line, diag->pos.col);
    stk_buf_printf(&b, ": %s: ", diag->sev == STK_SEV_ERROR ? "error" : "warning");
    if (diag->path[0])
        stk_buf_printf(&b, "%s: ", diag->path);
    stk_buf_puts(&b, diag->msg);
    return stk_buf_steal(&b);
}
