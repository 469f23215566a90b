/* SPDX-License-Identifier: Apache-2.0 */
#include "cli.h"

#include <jansson.h>
#include <string.h>

static json_t *diags_json(const struct stk_diags *d, size_t from)
{
    json_t *arr = json_array();
    for (size_t i = from; i < d->n; i++) {
        const struct stk_diag *g = &d->items[i];
        json_t *j = json_object();
        json_object_set_new(j, "severity",
                            json_string(g->sev == STK_SEV_ERROR ? "error" : "warning"));
        json_object_set_new(j, "file", json_string(g->file));
        json_object_set_new(j, "line", json_integer(g->pos.line));
        json_object_set_new(j, "column", json_integer(g->pos.col));
        json_object_set_new(j, "path", json_string(g->path));
        json_object_set_new(j, "message", json_string(g->msg));
        json_array_append_new(arr, j);
    }
    return arr;
}

/* Validates one file; diagnostics go to `diags`. Returns true when valid. */
static bool validate_file(const char *file, const struct stk_docset *env_ds,
                          const struct stk_envconfig *env, struct stk_diags *diags,
                          json_t *docs_json, size_t *ret_docs)
{
    _cleanup_docset_ struct stk_docset *ds = NULL;
    size_t errors = diags->n_errors;

    *ret_docs = 0;
    if (stk_docset_load(file, diags, &ds) < 0)
        return false;
    for (size_t i = 0; i < ds->n; i++) {
        const struct stk_doc *doc = &ds->docs[i];
        const char *name = NULL;
        switch (doc->kind) {
        case STK_KIND_SANDBOX: {
            struct stk_boundary *b = NULL;
            name = doc->sandbox->metadata.name.v;
            if (stk_resolve(doc->sandbox, ds->file, env, env ? env_ds->file : NULL, diags, &b) == 0)
                stk_boundary_free(b);
            break;
        }
        case STK_KIND_ENVCONFIG:
            name = doc->env->metadata.name.v;
            (void)stk_envconfig_check(doc->env, ds->file, diags);
            break;
        case STK_KIND_ACCESS_POLICY:
            /* its cross-field rules ran when it loaded (src/spec/access.c) */
            name = doc->access->metadata.name.v;
            break;
        case _STK_KIND_N:
            break;
        }
        json_t *j = json_object();
        json_object_set_new(j, "kind", json_string(stk_kind_names[doc->kind]));
        json_object_set_new(j, "name", json_string(name));
        json_object_set_new(j, "line", json_integer(doc->pos.line));
        json_array_append_new(docs_json, j);
    }
    *ret_docs = ds->n;
    return diags->n_errors == errors;
}

int cmd_validate(int argc, char **argv)
{
    static const struct option opts[] = {
        {"env", required_argument, NULL, 'e'},
        {"output", required_argument, NULL, 'o'},
        {NULL, 0, NULL, 0},
    };
    enum cli_output out = CLI_OUT_TEXT;
    const char *env_file = NULL;
    int c;

    while ((c = cli_getopt(argc, argv, "e:o:", opts)) != -1) {
        switch (c) {
        case 'e':
            env_file = optarg;
            break;
        case 'o':
            if (cli_parse_output("validate", optarg, &out) != 0)
                return EXIT_USAGE;
            break;
        default:
            return cli_usage("validate", stderr, EXIT_USAGE);
        }
    }
    if (optind >= argc)
        return cli_usage_error("validate", "needs at least one FILE");

    _cleanup_diags_ struct stk_diags env_diags = {0};
    _cleanup_docset_ struct stk_docset *env_ds = NULL;
    const struct stk_envconfig *env = NULL;
    if (env_file && cli_env_load(env_file, &env_diags, &env_ds, &env) != 0) {
        cli_print_diags(&env_diags);
        return EXIT_INVALID;
    }

    bool all_valid = true;
    json_t *files = json_array();
    for (int i = optind; i < argc; i++) {
        _cleanup_diags_ struct stk_diags diags = {0};
        json_t *docs = json_array();
        size_t ndocs = 0;
        bool valid = validate_file(argv[i], env_ds, env, &diags, docs, &ndocs);
        all_valid &= valid;
        if (out == CLI_OUT_JSON) {
            json_t *f = json_object();
            json_object_set_new(f, "file", json_string(argv[i]));
            json_object_set_new(f, "valid", json_boolean(valid));
            json_object_set_new(f, "documents", valid ? docs : json_array());
            if (!valid)
                json_decref(docs);
            json_object_set_new(f, "diagnostics", diags_json(&diags, 0));
            if (diags.dropped)
                json_object_set_new(f, "diagnosticsDropped",
                                    json_integer((json_int_t)diags.dropped));
            json_array_append_new(files, f);
        } else {
            json_decref(docs);
            cli_print_diags(&diags);
            if (valid)
                printf("%s: valid (%zu document%s)\n", argv[i], ndocs, ndocs == 1 ? "" : "s");
        }
    }
    if (out == CLI_OUT_JSON) {
        json_t *root = json_object();
        json_object_set_new(root, "valid", json_boolean(all_valid));
        json_object_set_new(root, "files", files);
        cli_print_json(root);
    } else {
        json_decref(files);
    }
    return all_valid ? 0 : EXIT_INVALID;
}
