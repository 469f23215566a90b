/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the value syntaxes (quantities, durations, CIDRs). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "spec/spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char buf[128];
    if (size >= sizeof(buf))
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    int64_t v;
    const char *why;
    char out[64];
    if (stk_quantity_parse(buf, STK_QTY_BYTES, &v, &why) == 0)
        stk_bytes_format(v, out, sizeof(out));
    if (stk_quantity_parse(buf, STK_QTY_MILLI, &v, &why) == 0)
        stk_cpu_format(v, out, sizeof(out));
    if (stk_duration_parse(buf, &v, &why) == 0)
        stk_duration_format(v, out, sizeof(out));
    struct stk_cidr c;
    char cb[STK_CIDR_STRLEN];
    if (stk_cidr_parse(buf, &c, &why) == 0)
        (void)stk_cidr_format(&c, cb);
    return 0;
}
