/* SPDX-License-Identifier: Apache-2.0 */
/* What the CLI prints of a record: kubectl's simple JSONPath templates
 * (`-o jsonpath=...`) and label selectors (`-l key=value`). */
#ifndef STK_RENDER_JSONPATH_H
#define STK_RENDER_JSONPATH_H

#include "base/base.h"

#include <jansson.h>

#define STK_JSONPATH_MAX_LEN   4096 /* a template's length */
#define STK_SELECTOR_MAX_TERMS 16
#define STK_SELECTOR_MAX_KEY   253
#define STK_SELECTOR_MAX_VALUE 63

/* Expands a template: text, and {PATH} or {"literal"} (\n, \t, \", \\)
 * in braces. PATH is [$].name, [N] (negative from the end), [*] and .*,
 * from the root ("{.metadata.name}", "{.items[*].id}"); several values are
 * joined by a space; strings print as they are, other values as compact
 * JSON; a missing key prints nothing. A template without braces is one
 * PATH. Appends to out; -EINVAL with a message for a bad template. */
int stk_jsonpath(const json_t *root, const char *tmpl, struct stk_buf *out, struct stk_error **err);

enum stk_lsel_op { STK_LSEL_EQ, STK_LSEL_NE, STK_LSEL_EXISTS, STK_LSEL_NOT_EXISTS };
struct stk_lsel_term {
    enum stk_lsel_op op;
    char key[STK_SELECTOR_MAX_KEY + 1];
    char value[STK_SELECTOR_MAX_VALUE + 1];
};
struct stk_lsel {
    size_t n;
    struct stk_lsel_term terms[STK_SELECTOR_MAX_TERMS];
};
/* Adds the terms of "k=v,k2!=v2,k3,!k4" (= and == alike) to sel. */
int stk_lsel_parse(const char *s, struct stk_lsel *sel, struct stk_error **err);
/* Every term holds for labels (a JSON object of strings; NULL: none). */
bool stk_lsel_match(const struct stk_lsel *sel, const json_t *labels);

#endif
