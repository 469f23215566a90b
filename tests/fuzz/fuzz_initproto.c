/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: the stockade-init frame decoders, fed a byte stream the
 * way init reads a connection (header, then the payload the header allows,
 * then the payload decoder for its type). Whatever decodes must encode back
 * to the same bytes.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "init/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_proc(const uint8_t *p, size_t n)
{
    static struct stk_initp_proc proc;
    static uint8_t again[STK_INITP_MAX_PAYLOAD];
    const char *why = NULL;
    if (stk_initp_proc_decode(p, n, &proc, &why) < 0) {
        if (!why)
            abort();
        return;
    }
    ssize_t m = stk_initp_proc_encode(again, sizeof(again), &proc, &why);
    if (m != (ssize_t)n || memcmp(again, p, n) != 0)
        abort();
}

static void check_payload(const struct stk_initp_hdr *h, const uint8_t *p)
{
    uint32_t u;
    uint16_t rows, cols;
    int32_t code, sig;
    uint8_t kind;
    char msg[128];
    struct stk_initp_hello hello;
    switch (h->type) {
    case STK_INITP_START:
    case STK_INITP_EXEC:
        check_proc(p, h->len);
        break;
    case STK_INITP_FILE_READ:
    case STK_INITP_FILE_WRITE: {
        static struct stk_initp_file f; /* fuzz_initfile checks these in depth */
        const char *why = NULL;
        if (stk_initp_file_decode(h->type, p, h->len, &f, &why) < 0 && !why)
            abort();
        break;
    }
    case STK_INITP_SIGNAL:
    case STK_INITP_SHUTDOWN:
        (void)stk_initp_u32_decode(p, h->len, &u);
        break;
    case STK_INITP_KILL:
        /* what decodes is a signal a client may send */
        if (stk_initp_kill_decode(p, h->len, &u) == 0 && !stk_initp_kill_signal_ok(u))
            abort();
        break;
    case STK_INITP_RESIZE:
        /* what decodes is within the bounds, and encodes back the same */
        if (stk_initp_resize_decode(p, h->len, &rows, &cols) == 0) {
            uint8_t again[STK_INITP_RESIZE_LEN];
            if (rows < 1 || rows > STK_INITP_WINSIZE_MAX || cols < 1 ||
                cols > STK_INITP_WINSIZE_MAX)
                abort();
            stk_initp_resize_encode(again, rows, cols);
            if (memcmp(again, p, sizeof(again)))
                abort();
        }
        break;
    case STK_INITP_EXIT:
        (void)stk_initp_exit_decode(p, h->len, &code, &sig);
        break;
    case STK_INITP_ERROR:
        (void)stk_initp_error_decode(p, h->len, &u, &kind, msg, sizeof(msg));
        break;
    case STK_INITP_OK:
        (void)stk_initp_hello_decode(p, h->len, &hello);
        (void)stk_initp_u32_decode(p, h->len, &u);
        break;
    default:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    while (size - off >= STK_INITP_HDR) {
        struct stk_initp_hdr h;
        if (stk_initp_hdr_decode(data + off, &h) < 0)
            return 0;
        if (h.len > STK_INITP_MAX_PAYLOAD)
            abort();
        off += STK_INITP_HDR;
        if (size - off < h.len)
            return 0;
        /* a private copy, so reads past the payload are caught by ASan */
        uint8_t *p = malloc(h.len ? h.len : 1);
        if (!p)
            return 0;
        memcpy(p, data + off, h.len);
        check_payload(&h, p);
        free(p);
        off += h.len;
    }
    return 0;
}
