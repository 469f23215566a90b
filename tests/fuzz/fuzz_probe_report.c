/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: a probe report as `stockade verify` judges it — the
 * bounded JSON parse, the field-by-field validation and every judge, then
 * both printers. A report either is an error or yields one row per claim;
 * it never crashes, leaks or passes a claim it did not observe. */
#include "verify/verify.h"

#include <string.h>

static const char sandbox[] = "apiVersion: stockade.dev/v1alpha1\n"
                              "kind: Sandbox\n"
                              "metadata: {name: fz, namespace: ns}\n"
                              "spec:\n"
                              "  security:\n"
                              "    policy: baseline\n"
                              "    capabilities: {add: [NET_BIND_SERVICE]}\n";

/* Every claim kind: both reach verdicts, extra paths, a loopback skip. */
static struct stk_verify_plan *plan(bool gvisor)
{
    static struct stk_docset *ds;
    static struct stk_boundary *b;
    static struct stk_verify_plan *p[2];
    if (!b) {
        struct stk_diags d = {0};
        if (stk_docset_parse("fuzz.yaml", sandbox, strlen(sandbox), &d, &ds) < 0 ||
            stk_resolve(stk_docset_find(ds, STK_KIND_SANDBOX, NULL)->sandbox, "fuzz.yaml", NULL,
                        NULL, &d, &b) < 0)
            abort();
        stk_diags_free(&d);
    }
    if (!p[gvisor]) {
        static const char *const targets[] = {"10.250.0.2:9000", "[fd00::2]:443", "127.0.0.1:9"};
        struct stk_verify_target to[3];
        for (size_t i = 0; i < 3; i++)
            if (stk_verify_parse_target(targets[i], &to[i], NULL) < 0)
                abort();
        static const char *const rw[] = {"/home/sandbox"}, *const ro[] = {"/opt"};
        struct stk_verify_opts o = {.runtime = gvisor ? "runsc" : "crun",
                                    .network = true,
                                    .to = to,
                                    .n_to = 3,
                                    .writable = rw,
                                    .n_writable = 1,
                                    .readonly = ro,
                                    .n_readonly = 1};
        if (stk_verify_plan_make(b, &o, &p[gvisor], NULL) < 0)
            abort();
    }
    return p[gvisor];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int g = 0; g < 2; g++) {
        struct stk_verify_report *rep = NULL;
        struct stk_error *err = NULL;
        if (stk_verify_judge(plan(g), (const char *)data, size, &rep, &err) < 0) {
            if (!err || rep)
                abort(); /* an error always says why and returns nothing */
            stk_error_free(err);
            continue;
        }
        const struct stk_verify_claim *claims;
        const struct stk_verify_row *rows;
        size_t nc = stk_verify_plan_claims(plan(g), &claims);
        if (stk_verify_report_rows(rep, &rows) != nc)
            abort(); /* one row per claim */
        for (size_t i = 0; i < nc; i++)
            if (rows[i].verdict == STK_VERIFY_SKIP && !rows[i].reason)
                abort();
        FILE *null = fopen("/dev/null", "we");
        if (null) {
            stk_verify_report_print_text(rep, null);
            stk_verify_report_print_json(rep, null);
            fclose(null);
        }
        stk_verify_report_free(rep);
    }
    return 0;
}
