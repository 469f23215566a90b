/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private shared modules (docs/architecture.md, "Modules loaded on demand"):
 * the code that needs a heavy library (libcurl, libwebsockets, libevent,
 * OpenSSL's TLS) is built as stockade-<name>.so and loaded by the command
 * that needs it, so `exec`, `ls` and `version` pay for none of them.
 *
 * A module is found like any library of the executable: by the executable's
 * run path, which meson points at the build tree and rewrites to
 * <libdir>/stockade on install. A module whose stamp is not this build's
 * version is refused (an old install next to a new binary). A binary that
 * links a module's code itself (the unit tests, the fuzz targets) finds the
 * symbol in its own dynamic symbol table and loads nothing.
 */
#include "base/base.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define MODULE_MAX 8

static pthread_mutex_t module_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    const char *name;
    void *handle;
} modules[MODULE_MAX];

static void *module_handle(const char *module, struct stk_error **err)
{
    size_t i = 0;
    for (; i < MODULE_MAX && modules[i].name; i++)
        if (!strcmp(modules[i].name, module))
            return modules[i].handle;
    if (i == MODULE_MAX) {
        stk_error_make(err, EOVERFLOW, "too many stockade modules");
        return NULL;
    }
    char file[64], stamp[64];
    if ((size_t)snprintf(file, sizeof(file), "stockade-%s.so", module) >= sizeof(file) ||
        (size_t)snprintf(stamp, sizeof(stamp), "stk_module_%s_stamp", module) >= sizeof(stamp)) {
        stk_error_make(err, ENAMETOOLONG, "module name %s is too long", module);
        return NULL;
    }
    /* A bare name: the executable's run path is searched (see above). */
    void *h = dlopen(file, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *why = dlerror();
        stk_error_make(err, ENOENT, "loading the %s module (%s): %s", module, file,
                       why ? why : "unknown error");
        return NULL;
    }
    const char *s = dlsym(h, stamp);
    if (!s || strcmp(s, STK_VERSION)) {
        stk_error_make(err, ENOEXEC, "the %s module (%s) is from stockade %s, not %s", module, file,
                       s ? s : "(unknown)", STK_VERSION);
        dlclose(h);
        return NULL;
    }
    modules[i].name = module;
    modules[i].handle = h;
    return h;
}

void *stk_module_sym(const char *module, const char *symbol, struct stk_error **err)
{
    void *p = dlsym(RTLD_DEFAULT, symbol);
    if (p)
        return p;
    pthread_mutex_lock(&module_lock);
    void *h = module_handle(module, err);
    pthread_mutex_unlock(&module_lock);
    if (!h)
        return NULL;
    p = dlsym(h, symbol);
    if (!p)
        stk_error_make(err, ENOENT, "the %s module has no %s", module, symbol);
    return p;
}
