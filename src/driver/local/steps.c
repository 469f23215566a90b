/* SPDX-License-Identifier: Apache-2.0 */
/* The setup-steps runner; its rule is in steps.h. */
#include "driver/local/steps.h"

void stk_steps_undo(const struct stk_step *steps, size_t done, void *ctx)
{
    while (done-- > 0)
        if (steps[done].undo)
            steps[done].undo(ctx);
}

int stk_steps_run(const struct stk_step *steps, size_t n, void *ctx, struct stk_error **err)
{
    for (size_t i = 0; i < n; i++) {
        int r = steps[i].run(ctx, err);
        if (r >= 0)
            continue;
        /* the failing step's partial work, then the earlier steps' */
        stk_steps_undo(steps, i + 1, ctx);
        if (err && *err)
            (void)stk_error_wrap(err, "%s", steps[i].name);
        return r;
    }
    return 0;
}
