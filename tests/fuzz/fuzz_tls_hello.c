/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the TLS ClientHello server-name reader of the egress
 * proxy. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    char sni[256];
    int r = stk_tls_client_hello_sni(buf, size, sni);
    if (r == 1 && (strlen(sni) == 0 || strlen(sni) > 255))
        abort();
    free(buf);
    return 0;
}
