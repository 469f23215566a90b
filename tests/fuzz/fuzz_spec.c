/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: arbitrary bytes through the spec parser and, when they
 * parse, through resolve, explain and assess. Nothing may crash, leak or
 * trip a sanitizer. */
#include <stddef.h>
#include <stdint.h>

#include "boundary/boundary.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct stk_diags d = {0};
    struct stk_docset *ds = NULL;

    if (stk_docset_parse("fuzz", (const char *)data, size, &d, &ds) == 0) {
        const struct stk_envconfig *env = NULL;
        for (size_t i = 0; i < ds->n; i++)
            if (ds->docs[i].kind == STK_KIND_ENVCONFIG && !env)
                env = ds->docs[i].env;
        for (size_t i = 0; i < ds->n; i++) {
            if (ds->docs[i].kind != STK_KIND_SANDBOX)
                continue;
            struct stk_boundary *b = NULL;
            if (stk_resolve(ds->docs[i].sandbox, "fuzz", env, env ? "fuzz" : NULL, &d, &b) < 0)
                continue;
            for (int be = 0; be < _STK_BACKEND_N; be++) {
                struct stk_backend_facts facts = {.backend = (enum stk_backend)be};
                struct stk_contract *c = NULL;
                struct stk_buf text = {0};
                if (stk_explain(b, &facts, &c) == 0) {
                    stk_contract_text(c, &text);
                    stk_contract_free(c);
                }
                stk_buf_free(&text);
            }
            struct stk_assessment *a = NULL;
            if (stk_assess(b, &a) == 0)
                stk_assessment_free(a);
            stk_boundary_free(b);
        }
        stk_docset_free(ds);
    }
    for (size_t i = 0; i < d.n; i++) {
        char *line = stk_diag_format(&d.items[i]);
        free(line);
    }
    stk_diags_free(&d);
    return 0;
}
