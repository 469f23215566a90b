/* SPDX-License-Identifier: Apache-2.0 */
#include "gateway/gateway.h"

#include <stdlib.h>

const char *const stk_verb_names[_STK_VERB_N] = {
    "create", "get",   "list",   "exec",  "logs", "connect",
    "stop",   "start", "delete", "audit", "pool", "metrics",
};

void stk_principal_release(struct stk_principal *p)
{
    if (!p)
        return;
    free(p->claims_json);
    p->claims_json = NULL;
}
