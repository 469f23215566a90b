/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the layer reader (tar headers, pax records, GNU long
 * names) over memory, every entry's content read, and image references. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "image/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct mem {
    const uint8_t *p;
    size_t n;
};

static ssize_t mem_read(void *ctx, void *buf, size_t n)
{
    struct mem *m = ctx;
    if (n > m->n)
        n = m->n;
    memcpy(buf, m->p, n);
    m->p += n;
    m->n -= n;
    return (ssize_t)n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mem m = {data, size};
    struct stk_tar_limits lim = {1000, 1 << 20, 1024};
    struct stk_tar_reader *r = stk_tar_reader_new(mem_read, &m, &lim);
    struct stk_tar_entry e;
    struct stk_error *err = NULL;
    int k;
    while ((k = stk_tar_next(r, &e, &err)) > 0) {
        char buf[4096];
        ssize_t got;
        while ((got = stk_tar_data(r, buf, sizeof(buf), &err)) > 0)
            ;
        if (got < 0)
            break;
        if (strlen(e.path) > lim.max_path || strlen(e.link) > lim.max_path)
            __builtin_trap();
    }
    stk_error_free(err);
    stk_tar_reader_free(r);

    char ref[600];
    if (size < sizeof(ref)) {
        memcpy(ref, data, size);
        ref[size] = '\0';
        struct stk_image_ref out;
        err = NULL;
        (void)stk_image_ref_parse(ref, &out, &err);
        stk_error_free(err);
    }
    return 0;
}
