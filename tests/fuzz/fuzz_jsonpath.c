/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: `-o jsonpath=` templates and `-l` label selectors, as
 * a user types them. The input is "TEMPLATE\0SELECTOR"; the template is
 * applied to a fixed record. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "render/jsonpath.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static json_t *rec;
    if (!rec)
        rec = json_loads("{\"id\":\"a\",\"labels\":{\"t\":\"x\"},\"items\":[{\"id\":\"p\"},[1,2]],"
                         "\"n\":1.5}",
                         0, NULL);
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    struct stk_buf b = {0};
    struct stk_error *err = NULL;
    if (stk_jsonpath(rec, text, &b, &err) < 0 && !err)
        abort(); /* a refusal always says why */
    stk_error_free(err);
    err = NULL;
    stk_buf_free(&b);
    size_t tlen = strlen(text);
    if (tlen < size) {
        struct stk_lsel sel = {0};
        if (stk_lsel_parse(text + tlen + 1, &sel, &err) < 0 && !err)
            abort();
        if (sel.n > STK_SELECTOR_MAX_TERMS)
            abort();
        (void)stk_lsel_match(&sel, json_object_get(rec, "labels"));
        stk_error_free(err);
    }
    free(text);
    return 0;
}
