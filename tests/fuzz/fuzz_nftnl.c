/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the nft subset compiled to an nf_tables batch
 * (src/driver/local/nftnl.c). Pure: nothing is sent. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "driver/local/nftnl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536)
        return 0;
    char *text = stk_xmalloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    struct stk_buf out = {0};
    struct stk_error *err = NULL;
    size_t n = 0;
    (void)stk_nftnl_compile(text, 1, &out, &n, &err);
    stk_error_freep(&err);
    stk_buf_free(&out);
    free(text);
    return 0;
}
