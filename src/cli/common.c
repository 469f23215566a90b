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
    cli_backend_paths(state_dir, STK_BACKEND_LOCAL, ret);
}

void cli_backend_paths(const char *state_dir, enum stk_backend backend, struct stk_local_paths *ret)
{
    /* a state directory holds one backend's sandboxes: each backend has
     * its own default, so --backend alone is enough */
    static char dflt[64];
    const char *e = getenv("STOCKADE_STATE_DIR");
    const char *r = getenv("STOCKADE_RUN_DIR");
    if (backend == STK_BACKEND_LOCAL || backend >= _STK_BACKEND_N)
        snprintf(dflt, sizeof(dflt), "%s", STK_LOCAL_STATE_DIR);
    else
        snprintf(dflt, sizeof(dflt), "%s/%s", STK_LOCAL_STATE_DIR, stk_backend_names[backend]);
    ret->state_dir = state_dir ? state_dir : e && *e ? e : dflt;
    ret->run_dir = r && *r ? r : STK_LOCAL_RUN_DIR;
}

void cli_session_opts(struct stk_session_opts *ret)
{
    const char *kc = getenv("STOCKADE_KUBECONFIG"), *ctx = getenv("STOCKADE_CONTEXT");
    *ret = (struct stk_session_opts){.kubeconfig = kc && *kc ? kc : NULL,
                                     .context = ctx && *ctx ? ctx : NULL};
}

void cli_backend_facts(enum stk_backend backend, const struct stk_boundary *b,
                       struct stk_backend_facts *ret)
{
    /* the driver says what it enforces; its strings live until the next call */
    static struct stk_driver_facts f;
    struct stk_local_paths paths;
    struct stk_session_opts o;
    cli_backend_paths(NULL, backend, &paths);
    cli_session_opts(&o);
    struct stk_driver_conf conf = {.state_dir = paths.state_dir,
                                   .run_dir = paths.run_dir,
                                   .kubeconfig = o.kubeconfig,
                                   .context = o.context};
    struct stk_driver *d = NULL;
    _cleanup_error_ struct stk_error *err = NULL;
    memset(&f, 0, sizeof(f));
    f.facts.backend = backend;
    if (stk_driver_open(backend, &conf, &d, &err) < 0) {
        /* not built in, or not reachable: explain still states the contract */
        if (stk_driver_ops(backend)) {
            snprintf(f.runtime_note, sizeof(f.runtime_note), "%s", err->msg);
            f.facts.runtime_note = f.runtime_note;
        }
    } else {
        if (d->ops->facts(d->ctx, b, &f, &err) < 0 && f.facts.backend == backend &&
            !f.facts.runtime_note) {
            snprintf(f.runtime_note, sizeof(f.runtime_note), "%s", err->msg);
            f.facts.runtime_note = f.runtime_note;
        }
        stk_driver_close(d);
    }
    f.facts.backend = backend;
    *ret = f.facts;
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
    if (i < 0)
        return cli_usage_error(command, "backend '%s': local, kubernetes or sim", e);
    if (!stk_driver_ops((enum stk_backend)i)) {
        fprintf(stderr,
                "stockade %s: backend '%s' is not built into this stockade: sandboxes run on "
                "local or sim here\n",
                command, stk_backend_names[i]);
        return EXIT_USAGE;
    }
    *ret = (enum stk_backend)i;
    return 0;
}

int cli_session_open(const char *command, const char *state_dir, struct stk_session **ret)
{
    struct stk_local_paths paths;
    struct stk_session_opts o;
    enum stk_backend be;
    _cleanup_error_ struct stk_error *err = NULL;
    int r = cli_session_backend(command, &be);
    if (r != 0)
        return r;
    cli_backend_paths(state_dir, be, &paths);
    cli_session_opts(&o);
    if (stk_session_open_opts(&paths, be, NULL, &o, ret, &err) < 0) {
        fprintf(stderr, "stockade %s: %s\n", command, err->msg);
        return 125; /* stockade could not do what was asked */
    }
    return 0;
}
