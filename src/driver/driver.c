/* SPDX-License-Identifier: Apache-2.0 */
/* The driver table: one set of operations per backend. */
#include "driver/driver.h"

#include <errno.h>
#include <stdlib.h>

const struct stk_driver_ops *stk_driver_ops_load(enum stk_backend backend, struct stk_error **err)
{
    switch (backend) {
    case STK_BACKEND_LOCAL:
        return &stk_local_driver_ops;
    case STK_BACKEND_SIM:
        return &stk_sim_driver_ops;
    case STK_BACKEND_KUBERNETES:
        /* libcurl and libwebsockets: loaded only by what uses this backend */
        return STK_MODULE_SYM("kube", stk_kube_driver_ops, err);
    case _STK_BACKEND_N:
        break;
    }
    stk_error_make(err, EINVAL, "unknown backend %d", (int)backend);
    return NULL;
}

const struct stk_driver_ops *stk_driver_ops(enum stk_backend backend)
{
    return stk_driver_ops_load(backend, NULL);
}

int stk_driver_open(enum stk_backend backend, const struct stk_driver_conf *conf,
                    struct stk_driver **ret, struct stk_error **err)
{
    _cleanup_error_ struct stk_error *why = NULL;
    const struct stk_driver_ops *ops = stk_driver_ops_load(backend, &why);
    if (!ops)
        return stk_error_make(err, STK_DRV_E_NOTSUP, "the %s backend is not available: %s",
                              backend < _STK_BACKEND_N ? stk_backend_names[backend] : "?",
                              why ? why->msg : "unknown");
    void *ctx = NULL;
    int r = ops->open(conf, &ctx, err);
    if (r < 0)
        return r;
    struct stk_driver *d = stk_xcalloc(1, sizeof(*d));
    d->ops = ops;
    d->ctx = ctx;
    *ret = d;
    return 0;
}

void stk_driver_close(struct stk_driver *d)
{
    if (!d)
        return;
    d->ops->close(d->ctx);
    free(d);
}

void stk_driver_status_release(struct stk_driver_status *st)
{
    free(st->usage);
    st->usage = NULL;
}
