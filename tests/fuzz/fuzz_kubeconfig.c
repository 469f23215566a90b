/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the kubeconfig loader (YAML through stk_yaml_load, then
 * the context/cluster/user walk, base64 data, refusals). Relative paths
 * resolve under a directory that does not exist, so nothing is read. The
 * first byte, when it is '@', makes the rest of the first line the context
 * name. Whatever the input: no crash or leak; a success has a context and an
 * https server; a failure says why. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "driver/kubernetes/kube.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    _cleanup_free_ char *context = NULL;
    if (size > 0 && text[0] == '@') {
        const char *nl = memchr(text, '\n', size);
        size_t n = nl ? (size_t)(nl - text) : size;
        context = stk_xstrndup(text + 1, n - 1);
        text += nl ? n + 1 : size;
        size -= nl ? n + 1 : size;
    }
    struct stk_kubeconfig *c = NULL;
    struct stk_error *err = NULL;
    int r = stk_kubeconfig_parse(text, size, "fuzz", "/nonexistent-fuzz-dir", context, &c, &err);
    if (r >= 0) {
        if (!c || !stk_kubeconfig_context(c) ||
            !stk_startswith(stk_kubeconfig_server(c), "https://"))
            abort();
        (void)stk_kubeconfig_namespace(c);
        stk_kubeconfig_free(c);
    } else if (!err || !err->msg || !*err->msg || c) {
        abort();
    }
    stk_error_free(err);
    return 0;
}
