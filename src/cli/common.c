/* SPDX-License-Identifier: Apache-2.0 */
#include "cli.h"
#include "image/image.h"
#include "driver/driver.h"
#include "session/session.h"

#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
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
    if (!(r && *r) && strcmp(ret->state_dir, STK_LOCAL_STATE_DIR) != 0) {
        /* a state directory of its own and no run directory: one derived
         * from it, so that two state directories never share one (the
         * driver still checks: <run_dir>/state-dir names its owner) */
        static char derived[128];
        char real[PATH_MAX];
        const char *key = realpath(ret->state_dir, real) ? real : ret->state_dir;
        uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
        for (const char *c = key; *c; c++)
            h = (h ^ (unsigned char)*c) * 0x100000001b3ULL;
        snprintf(derived, sizeof(derived), "%s/s-%016llx", STK_LOCAL_RUN_DIR,
                 (unsigned long long)h);
        ret->run_dir = derived;
    }
}

void cli_session_opts(struct stk_session_opts *ret)
{
    const char *kc = getenv("STOCKADE_KUBECONFIG"), *ctx = getenv("STOCKADE_CONTEXT");
    *ret = (struct stk_session_opts){.kubeconfig = kc && *kc ? kc : NULL,
                                     .context = ctx && *ctx ? ctx : NULL};
}

int cli_image_pin(const char *image, char *ret_image, size_t n, char ret_digest[72])
{
    struct stk_local_paths paths;
    char store[4200];
    ret_image[0] = ret_digest[0] = '\0';
    cli_local_paths(NULL, &paths);
    if (!image || stk_image_store_dir(paths.state_dir, store, sizeof(store), NULL) < 0)
        return 0;
    return stk_image_pin(store, image, ret_image, n, ret_digest, NULL) > 0;
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
    /* no cluster to ask: the digest still comes from this state directory */
    char pinned[STK_IMAGE_REF_MAX + 112];
    if (backend == STK_BACKEND_KUBERNETES && !f.facts.image_digest &&
        cli_image_pin(b->image, pinned, sizeof(pinned), f.image_digest)) {
        f.facts.image_digest = f.image_digest;
        char store[4200];
        if (stk_image_store_dir(paths.state_dir, store, sizeof(store), NULL) >= 0 &&
            stk_image_ports_text(store, b->image, f.image_ports, sizeof(f.image_ports)))
            f.facts.image_ports = f.image_ports;
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

/* ---- argument errors: one line, a suggestion, where to look ------------------------- */

const char *cli_command_name = "";

size_t cli_edit_distance(const char *a, size_t la, const char *b, size_t lb)
{
    /* Levenshtein over two rows; names are short (longer ones never match) */
    enum { MAX = 64 };
    size_t prev[MAX + 1], cur[MAX + 1];
    if (la > MAX || lb > MAX)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, sizeof(prev));
    }
    return prev[lb];
}

const char *cli_closest(const char *word, size_t len, const char *(*name_at)(const void *, size_t),
                        const void *ctx)
{
    const char *best = NULL;
    size_t best_d = SIZE_MAX;
    for (size_t i = 0;; i++) {
        const char *n = name_at(ctx, i);
        if (!n)
            break;
        size_t d = cli_edit_distance(word, len, n, strlen(n));
        /* a prefix of a name ("--ful" for "--full") counts as close */
        if (len >= 2 && !strncmp(n, word, len))
            d = d < 1 ? d : 1;
        if (d < best_d) {
            best_d = d;
            best = n;
        }
    }
    size_t limit = len / 3 > 2 ? len / 3 : 2;
    return best_d <= limit ? best : NULL;
}

static const char *longopt_at(const void *ctx, size_t i)
{
    const struct option *o = ctx;
    for (size_t k = 0; k < i; k++)
        if (!o[k].name)
            return NULL;
    return o[i].name;
}

int cli_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts)
{
    /* ':' right after an optional '+': a missing argument returns ':' */
    char spec[128];
    bool plus = shortopts[0] == '+';
    snprintf(spec, sizeof(spec), "%s:%s", plus ? "+" : "", shortopts + plus);
    opterr = 0;
    int prev = optind;
    int c = getopt_long(argc, argv, spec, longopts, NULL);
    if (c != '?' && c != ':')
        return c;
    const char *cmd = cli_command_name;
    const char *arg = optind > prev && optind <= argc ? argv[optind - 1] : argv[prev];
    bool is_long = arg && !strncmp(arg, "--", 2);
    if (c == ':') {
        if (!is_long)
            fprintf(stderr, "stockade %s: option '-%c' needs a value\n", cmd, optopt);
        else
            fprintf(stderr, "stockade %s: option '%s' needs a value\n", cmd, arg);
        return '?';
    }
    if (!is_long) {
        fprintf(stderr, "stockade %s: unknown option '-%c'\n", cmd, optopt);
        return '?';
    }
    const char *name = arg + 2, *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    const char *best = longopts ? cli_closest(name, len, longopt_at, longopts) : NULL;
    if (best)
        fprintf(stderr, "stockade %s: unknown option '%.*s'; did you mean '--%s'?\n", cmd,
                (int)(len + 2), arg, best);
    else
        fprintf(stderr, "stockade %s: unknown option '%.*s'\n", cmd, (int)(len + 2), arg);
    return '?';
}
