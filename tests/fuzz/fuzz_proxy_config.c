/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the standalone proxy's configuration file
 * (stk_proxy_file_parse, src/proxy/config.c). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct stk_proxy_file *f = NULL;
    struct stk_error *err = NULL;
    if (stk_proxy_file_parse((const char *)data, size, &f, &err) == 0) {
        if (!f->sandbox || f->n_allow > STK_LIMIT_ALLOW_HOSTS ||
            f->n_bindings > STK_PROXY_FILE_BINDINGS_MAX)
            abort();
        for (size_t i = 0; i < f->n_bindings; i++)
            if (strncmp(f->bindings[i].url.v, "https://", 8) != 0)
                abort(); /* a credential never travels in clear */
        stk_proxy_file_free(f);
    } else if (!err) {
        abort();
    }
    stk_error_free(err);
    return 0;
}
