/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: the file requests of the stockade-init protocol
 * (FILE_READ, FILE_WRITE and the OK to a read). The first byte picks the
 * decoder, the rest is the payload. Whatever decodes must satisfy the rules
 * init relies on (an absolute path without NUL or `..`, the size limit, the
 * mode bits) and encode back to the same bytes.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "init/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_request(uint8_t type, const uint8_t *p, size_t n)
{
    static struct stk_initp_file f;
    static uint8_t again[STK_INITP_FILE_WRITE_FIXED + STK_INITP_PATH_MAX];
    const char *why = NULL;
    if (stk_initp_file_decode(type, p, n, &f, &why) < 0) {
        if (!why)
            abort();
        return;
    }
    size_t len = strlen(f.path);
    if (f.path[0] != '/' || len > STK_INITP_PATH_MAX || strstr(f.path, "/../") ||
        (len >= 3 && !strcmp(f.path + len - 3, "/..")) || f.mode > 0777 ||
        f.size > STK_INITP_FILE_MAX)
        abort();
    ssize_t m = stk_initp_file_encode(type, again, sizeof(again), &f, &why);
    if (m != (ssize_t)n || memcmp(again, p, n) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    switch (data[0] % 3) {
    case 0:
        check_request(STK_INITP_FILE_READ, p, n);
        break;
    case 1:
        check_request(STK_INITP_FILE_WRITE, p, n);
        break;
    default: {
        uint64_t fsize;
        uint32_t mode;
        if (stk_initp_file_info_decode(p, n, &fsize, &mode) == 0 &&
            (n != STK_INITP_FILE_INFO_LEN || fsize > STK_INITP_FILE_MAX))
            abort();
        break;
    }
    }
    return 0;
}
