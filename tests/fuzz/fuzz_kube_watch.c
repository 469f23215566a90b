/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the watch stream's line splitter and event parser. The
 * first byte sets the chunk size the stream is fed in (1..256) and the second
 * a small line limit (0: the default), so lines that straddle chunks and
 * lines past the limit are both reached. Every complete line is parsed as a
 * watch event, as a line of a timestamped pods/log (the follower's
 * position) and as a stored position. Whatever the input: no crash or
 * leak; a line the splitter hands over is NUL-terminated, newline-free and
 * within the limit; a log line's text lies within the line. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "driver/kubernetes/kube.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct ctx {
    size_t max;
    struct stk_kube_log_pos pos;
};

static int on_line(void *ud, char *line, size_t len)
{
    struct ctx *c = ud;
    if (len == 0 || len > c->max || line[len] != '\0' || memchr(line, '\n', len))
        abort();
    json_t *ev = NULL, *obj = NULL;
    const char *type = NULL;
    struct stk_error *err = NULL;
    if (stk_kube_event_parse(line, len, &ev, &type, &obj, &err) >= 0) {
        if (!type || !json_is_object(obj))
            abort();
        json_decref(ev);
    } else if (!err) {
        abort();
    }
    stk_error_free(err);
    const char *text = NULL;
    size_t n = 0;
    int r = stk_kube_log_line(&c->pos, line, len, &text, &n);
    if ((r != 0 && r != 1 && r != -EPROTO) || text < line || text + n != line + len)
        abort();
    struct stk_kube_log_pos p;
    if (stk_kube_log_pos_parse(line, &p) == 0) {
        char buf[64];
        stk_kube_log_pos_format(&p, buf);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t chunk = (size_t)data[0] + 1;
    size_t max = data[1] ? (size_t)data[1] * 4 : 0;
    data += 2;
    size -= 2;
    struct stk_kube_lines l = {.max = max};
    struct ctx c = {.max = max ? max : STK_KUBE_MAX_LINE};
    struct stk_error *err = NULL;
    for (size_t off = 0; off < size; off += chunk) {
        size_t n = size - off < chunk ? size - off : chunk;
        int r = stk_kube_lines_feed(&l, (const char *)data + off, n, on_line, &c, &err);
        if (r < 0) {
            if (r != -EMSGSIZE || !err)
                abort();
            break;
        }
    }
    stk_error_free(err);
    stk_kube_lines_free(&l);
    return 0;
}
