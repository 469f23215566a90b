/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Setup steps with undo: the one runner every ordered sequence of the local
 * driver goes through (a sandbox's run, a long-lived sandbox's provision,
 * its network).
 *
 * The rule: steps run in order. When step k fails, its own undo runs first
 * (an undo must accept the partial work of a failed run: it checks what
 * exists before removing it), then the undos of steps k-1 .. 0, last first.
 * Steps after k never ran and nothing of theirs is touched. After a full
 * success, stk_steps_undo(steps, n, ctx) tears everything down in reverse.
 */
#ifndef STK_DRIVER_LOCAL_STEPS_H
#define STK_DRIVER_LOCAL_STEPS_H

#include "base/base.h"

struct stk_step {
    const char *name; /* names the step in a failure's message */
    int (*run)(void *ctx, struct stk_error **err);
    void (*undo)(void *ctx); /* NULL: nothing to undo */
};

/* Runs steps[0..n) with ctx. On failure undoes as above, adds the failing
 * step's name to *err and returns its negative value; 0 when all ran. */
int stk_steps_run(const struct stk_step *steps, size_t n, void *ctx, struct stk_error **err);
/* Runs the undos of steps[0..done), last first. */
void stk_steps_undo(const struct stk_step *steps, size_t done, void *ctx);

#endif
