/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the record headers of a sandbox's log files (the
 * reader of `stockade logs` parses whatever the file holds). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "session/private.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    size_t off = 0;
    while (off < size) {
        int64_t ms;
        int stream;
        size_t len;
        int h = log_record_parse(p + off, size - off, &ms, &stream, &len);
        if (h <= 0)
            break;
        if ((stream != 1 && stream != 2) || len > LOG_RECORD_MAX || ms < 0 || h > 48)
            abort();
        if (size - off - (size_t)h < len)
            break;
        off += (size_t)h + len;
    }
    return 0;
}
