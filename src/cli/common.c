/* SPDX-License-Identifier: Apache-2.0 */
#include "cli.h"
#include "driver/driver.h"
#include "session/session.h"

#include <jansson.h>
#include <string.h>

int cli_parse_output(const char *command, const char *arg, enum cli_output *ret)
{
    static const char *const names[_CLI_OUT_N] = {"text", "json"};
    int i = stk_enum_lookup(names, _CLI_OUT_N, arg);
    if (i < 0)
        return cli_usage_error(command, "--output must be text or json, not '%s'", arg);
    *ret = (enum cli_output)i;
    return 0;
}

int cli_parse_backend(const char *command, const char *arg, enum stk_backend *ret)
{
    int i = stk_enum_lookup(stk_backend_names, _STK_BACKEND_N, arg);
    if (i < 0)
        return cli_usage_error(command, "--backend must be local, kubernetes or sim, not '%s'",
                               arg);
    *ret = (enum stk_backend)i;
    return 0;
}

void cli_print_diags(const struct stk_diags *d)
{
    for (size_t i = 0; i < d->n; i++) {
        _cleanup_free_ char *line = stk_diag_format(&d->items[i]);
        fprintf(stderr, "%s\n", line);
    }
    if (d->dropped)
        fprintf(stderr, "... and %zu more problem%s (only the first %d are shown)\n", d->dropped,
                d->dropped == 1 ? "" : "s", STK_LIMIT_DIAGS);
}

void cli_print_json(void *json)
{
    json_dumpf(json, stdout, JSON_INDENT(2) | JSON_ENSURE_ASCII);
    putchar('\n');
    json_decref(json);
}

int cli_env_load(const char *file, struct stk_diags *diags, struct stk_docset **ret_ds,
                 const struct stk_envconfig **ret)
{
    struct stk_docset *ds = NULL;
    size_t count = 0;
    if (stk_docset_load(file, diags, &ds) < 0)
        return EXIT_INVALID;
    const struct stk_doc *doc = stk_docset_find(ds, STK_KIND_ENVCONFIG, &count);
    if (count != 1 || ds->n != 1) {
        stk_diags_add(diags, STK_SEV_ERROR, file, (struct stk_pos){0, 0}, "",
                      "--env needs a file with exactly one EnvironmentConfig document (found "
                      "%zu document%s, %zu EnvironmentConfig)",
                      ds->n, ds->n == 1 ? "" : "s", count);
        stk_docset_free(ds);
        return EXIT_INVALID;
    }
    *ret_ds = ds;
    *ret = doc->env;
    return 0;
}

int cli_sandbox_load(const char *file, const char *env_file, struct cli_sandbox *ret)
{
    _cleanup_diags_ struct stk_diags diags = {0};
    struct cli_sandbox s = {0};
    const struct stk_envconfig *env = NULL;
    size_t count = 0;
    int status = EXIT_INVALID;

    if (env_file && cli_env_load(env_file, &diags, &s.env_ds, &env) != 0)
        goto out;
    if (stk_docset_load(file, &diags, &s.ds) < 0)
        goto out;
    const struct stk_doc *doc = stk_docset_find(s.ds, STK_KIND_SANDBOX, &count);
    if (count != 1) {
        stk_diags_add(&diags, STK_SEV_ERROR, file, (struct stk_pos){0, 0}, "",
                      "expected exactly one Sandbox document, found %zu", count);
        goto out;
    }
    if (stk_resolve(doc->sandbox, s.ds->file, env, env ? s.env_ds->file : NULL, &diags, &s.b) < 0)
        goto out;
    status = 0;
out:
    cli_print_diags(&diags);
    if (status != 0) {
        cli_sandbox_release(&s);
        return status;
    }
    *ret = s;
    return 0;
}

void cli_sandbox_release(struct cli_sandbox *s)
{
    stk_boundary_free(s->b);
    stk_docset_free(s->ds);
    stk_docset_free(s->env_ds);
    memset(s, 0, sizeof(*s));
}

void cli_local_paths(const char *state_dir, struct stk_local_paths *ret)
{
    const char *e = getenv("STOCKADE_STATE_DIR");
    const char *r = getenv("STOCKADE_RUN_DIR");
    ret->state_dir = state_dir ? state_dir : e && *e ? e : STK_LOCAL_STATE_DIR;
    ret->run_dir = r && *r ? r : STK_LOCAL_RUN_DIR;
}

/* Local: which runtime `run` would use for this boundary, from the cached
 * detection (a smoke run the first time a runtime binary is seen). */
static void local_facts(const struct stk_boundary *b, struct stk_backend_facts *ret)
{
    static struct stk_runtime_status st[_STK_OCI_N];
    static char note[1024];
    struct stk_local_paths paths;
    cli_local_paths(NULL, &paths);
    _cleanup_error_ struct stk_error *err = NULL;
    if (stk_runtimes_detect(&paths, st, &err) < 0) {
        snprintf(note, sizeof(note), "runtime detection failed: %s", err->msg);
        ret->runtime_note = note;
        return;
    }
    enum stk_oci_runtime rt;
    const char *why = NULL;
    if (stk_runtime_choose(b->runtime, st, &rt, &why) < 0) {
        snprintf(note, sizeof(note), "%s", why ? why : "");
        ret->runtime_note = note;
        return;
    }
    ret->runtime = stk_oci_runtime_names[rt];
    ret->runtime_is_gvisor = rt == STK_OCI_RUNSC;
    if (st[rt].version[0] && why)
        snprintf(note, sizeof(note), "%s; %s", st[rt].version, why);
    else
        snprintf(note, sizeof(note), "%s", why ? why : st[rt].version);
    ret->runtime_note = note[0] ? note : NULL;
    ret->caveats = stk_runtime_caveats(rt);
}

void cli_backend_facts(enum stk_backend backend, const struct stk_boundary *b,
                       struct stk_backend_facts *ret)
{
    memset(ret, 0, sizeof(*ret));
    ret->backend = backend;
    if (backend == STK_BACKEND_LOCAL)
        local_facts(b, ret);
}

int cli_print_contract(const struct stk_boundary *b, enum stk_backend backend, enum cli_output out)
{
    struct stk_backend_facts facts;
    cli_backend_facts(backend, b, &facts);
    _cleanup_contract_ struct stk_contract *contract = NULL;
    if (stk_explain(b, &facts, &contract) < 0)
        return EXIT_INVALID;
    if (out == CLI_OUT_JSON) {
        cli_print_json(stk_contract_json(contract));
    } else {
        _cleanup_buf_ struct stk_buf text = {0};
        stk_contract_text(contract, &text);
        fputs(stk_buf_str(&text), stdout);
    }
    return 0;
}

int cli_session_backend(const char *command, enum stk_backend *ret)
{
    const char *e = getenv("STOCKADE_BACKEND");
    int i = e && *e ? stk_enum_lookup(stk_backend_names, _STK_BACKEND_N, e) : STK_BACKEND_LOCAL;
    if (i != STK_BACKEND_LOCAL && i != STK_BACKEND_SIM) {
        fprintf(stderr,
                "stockade %s: backend '%s': embedded sandboxes run on local or sim (the "
                "kubernetes backend is reached through a gateway)\n",
                command, e);
        return EXIT_USAGE;
    }
    *ret = (enum stk_backend)i;
    return 0;
}

int cli_session_open(const char *command, const char *state_dir, struct stk_session **ret)
{
    struct stk_local_paths paths;
    enum stk_backend be;
    _cleanup_error_ struct stk_error *err = NULL;
    int r = cli_session_backend(command, &be);
    if (r != 0)
        return r;
    cli_local_paths(state_dir, &paths);
    if (stk_session_open_backend(&paths, be, NULL, ret, &err) < 0) {
        fprintf(stderr, "stockade %s: %s\n", command, err->msg);
        return 125; /* stockade could not do what was asked */
    }
    return 0;
}
