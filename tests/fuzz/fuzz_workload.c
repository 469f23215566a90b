/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: a workload file as `stockade render --workload` and
 * `stockade eject` read it — YAML/JSON loading, YAML dumping, injection and
 * eject, and the round trip eject(inject(w)) == w. */
#include "render/render.h"

#include <string.h>

static const char sandbox[] = "apiVersion: stockade.dev/v1alpha1\n"
                              "kind: Sandbox\n"
                              "metadata: {name: fz, namespace: ns}\n"
                              "spec:\n"
                              "  image: tools:1\n"
                              "  deployment:\n"
                              "    model: injection\n"
                              "    target: {kind: Deployment, name: web}\n";

static struct stk_boundary *boundary(void)
{
    static struct stk_docset *ds;
    static struct stk_boundary *b;
    if (!b) {
        struct stk_diags d = {0};
        if (stk_docset_parse("fuzz.yaml", sandbox, strlen(sandbox), &d, &ds) < 0 ||
            stk_resolve(stk_docset_find(ds, STK_KIND_SANDBOX, NULL)->sandbox, "fuzz.yaml", NULL,
                        NULL, &d, &b) < 0)
            abort();
        stk_diags_free(&d);
    }
    return b;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *docs = NULL;
    struct stk_error *err = NULL;
    if (size > 64 * 1024)
        return 0;
    if (stk_yaml_load((const char *)data, size, &docs, &err) < 0) {
        stk_error_free(err);
        return 0;
    }
    struct stk_buf out = {0};
    if (stk_yaml_dump(docs, &out, NULL) == 0) {
        json_t *back = NULL;
        if (stk_yaml_load(out.data ? out.data : "", out.len, &back, NULL) < 0 ||
            !json_equal(back, docs))
            abort(); /* what we print must read back as the same values */
        json_decref(back);
    }
    stk_buf_free(&out);

    json_t *w = json_array_get(docs, 0);
    json_t *injected = NULL, *ejected = NULL;
    if (w && stk_k8s_inject(boundary(), w, &injected, NULL) == 0) {
        if (stk_k8s_eject(injected, &ejected, NULL) < 0 || !json_equal(ejected, w))
            abort(); /* eject must undo inject exactly */
        json_decref(ejected);
        json_decref(injected);
    } else if (w) {
        if (stk_k8s_eject(w, &ejected, NULL) == 0)
            json_decref(ejected);
    }
    json_decref(docs);
    return 0;
}
