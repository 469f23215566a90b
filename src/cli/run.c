/* SPDX-License-Identifier: Apache-2.0 */
/*
 * stockade run: one sandbox on this host, in the foreground.
 *
 * Flags override the spec through the spec module's own validation: they
 * become a small Sandbox document ("command line") that is parsed by the
 * same field table as any file, so a bad --memory gets the same message and
 * bounds as a bad spec.resources.memory. The parsed flag values are then laid
 * over the spec before resolve, and their provenance becomes "flag".
 */
#include "cli.h"
#include "driver/driver.h"

#include <errno.h>
#include <jansson.h>
#include <stddef.h>
#include <string.h>
#include <sys/random.h>

#define RUN_MAX_ENV_FLAGS 128

enum run_flag {
    FLAG_POLICY,
    FLAG_MEMORY,
    FLAG_PIDS,
    FLAG_CPU,
    FLAG_WALL_CLOCK,
    FLAG_CPU_TIME,
    FLAG_RUNTIME,
    FLAG_ROOTFS,
    FLAG_IMAGE,
    FLAG_COMMAND,
    FLAG_ENV,
    _FLAG_N
};

/* Where each flag lands: its JSON path in the overlay document, the spec
 * path explain shows, and the boundary origin it owns. */
struct flag_desc {
    const char *option;
    const char *section; /* spec.<section> or NULL for spec itself */
    const char *key;
    const char *path;
    size_t origin_off; /* offset of struct stk_origin in the boundary, or SIZE_MAX */
    bool integer;
};

#define ORIGIN(m) offsetof(struct stk_boundary, m)
static const struct flag_desc flags[_FLAG_N] = {
    [FLAG_POLICY] = {"--policy", "security", "policy", "spec.security.policy",
                     ORIGIN(policy_origin), false},
    [FLAG_MEMORY] = {"--memory", "resources", "memory", "spec.resources.memory",
                     ORIGIN(memory_origin), false},
    [FLAG_PIDS] = {"--pids", "resources", "pids", "spec.resources.pids", ORIGIN(pids_origin), true},
    [FLAG_CPU] = {"--cpu", "resources", "cpu", "spec.resources.cpu", ORIGIN(cpu_origin), false},
    [FLAG_WALL_CLOCK] = {"--wall-clock", "resources", "wallClock", "spec.resources.wallClock",
                         ORIGIN(wall_clock_origin), false},
    [FLAG_CPU_TIME] = {"--cpu-time", "resources", "cpuTime", "spec.resources.cpuTime",
                       ORIGIN(cpu_time_origin), false},
    [FLAG_RUNTIME] = {"--runtime", NULL, "runtime", "spec.runtime", ORIGIN(runtime_origin), false},
    [FLAG_ROOTFS] = {"--rootfs", NULL, "rootfs", "spec.rootfs", ORIGIN(rootfs_origin), false},
    [FLAG_IMAGE] = {"--image", NULL, "image", "spec.image", SIZE_MAX, false},
    [FLAG_COMMAND] = {"-- CMD", NULL, "command", "spec.command", SIZE_MAX, false},
    [FLAG_ENV] = {"-e", NULL, "env", "spec.env", SIZE_MAX, false},
};

struct run_opts {
    const char *file, *env_file, *workspace, *state_dir;
    bool dry_run;
    bool no_network;
    enum cli_output out;
    const char *value[_FLAG_N];
    const char *env[RUN_MAX_ENV_FLAGS];
    size_t n_env;
    char **argv;
    int argc;
};

/* ---- the overlay document --------------------------------------------------- */

static char *overlay_json(const struct run_opts *o, const char *name)
{
    json_t *spec = json_object();
    for (int i = 0; i < _FLAG_N; i++) {
        const struct flag_desc *f = &flags[i];
        if (!o->value[i] || i == FLAG_COMMAND || i == FLAG_ENV)
            continue;
        json_t *dst = spec;
        if (f->section) {
            dst = json_object_get(spec, f->section);
            if (!dst) {
                dst = json_object();
                json_object_set_new(spec, f->section, dst);
            }
        }
        char *end;
        long long n = strtoll(o->value[i], &end, 10);
        json_object_set_new(dst, f->key,
                            f->integer && *o->value[i] && !*end ? json_integer(n)
                                                                : json_string(o->value[i]));
    }
    if (o->argc > 0) {
        json_t *cmd = json_array();
        for (int i = 0; i < o->argc; i++)
            json_array_append_new(cmd, json_string(o->argv[i]));
        json_object_set_new(spec, "command", cmd);
    }
    if (o->n_env) {
        json_t *env = json_array();
        for (size_t i = 0; i < o->n_env; i++) {
            const char *eq = strchr(o->env[i], '=');
            json_t *kv = json_object();
            json_object_set_new(kv, "name", json_stringn(o->env[i], (size_t)(eq - o->env[i])));
            json_object_set_new(kv, "value", json_string(eq + 1));
            json_array_append_new(env, kv);
        }
        json_object_set_new(spec, "env", env);
    }
    json_t *doc = json_pack("{s:s,s:s,s:{s:s},s:o}", "apiVersion", STK_API_VERSION, "kind",
                            "Sandbox", "metadata", "name", name, "spec", spec);
    char *text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(doc);
    return text;
}

/* Lays the flags' parsed values over the spec's. */
static void overlay_apply(const struct run_opts *o, struct stk_sandbox *dst,
                          const struct stk_sandbox *ovl, struct stk_arena *a)
{
    struct stk_sandbox_spec *d = &dst->spec;
    const struct stk_sandbox_spec *s = &ovl->spec;
    if (o->value[FLAG_POLICY])
        d->security.policy = s->security.policy;
    if (o->value[FLAG_MEMORY])
        d->resources.memory = s->resources.memory;
    if (o->value[FLAG_PIDS])
        d->resources.pids = s->resources.pids;
    if (o->value[FLAG_CPU])
        d->resources.cpu = s->resources.cpu;
    if (o->value[FLAG_WALL_CLOCK])
        d->resources.wall_clock = s->resources.wall_clock;
    if (o->value[FLAG_CPU_TIME])
        d->resources.cpu_time = s->resources.cpu_time;
    if (o->value[FLAG_RUNTIME])
        d->runtime = s->runtime;
    if (o->value[FLAG_ROOTFS])
        d->rootfs = s->rootfs;
    if (o->value[FLAG_IMAGE])
        d->image = s->image;
    if (o->argc > 0) {
        d->command = s->command;
        memset(&d->args, 0, sizeof(d->args));
    }
    if (s->env.n) {
        /* a flag replaces the spec's variable of the same name */
        uint32_t n = d->env.n;
        struct stk_env_var *env = stk_arena_array(a, n + s->env.n, sizeof(*env));
        if (n)
            memcpy(env, d->env.items, n * sizeof(*env));
        for (uint32_t i = 0; i < s->env.n; i++) {
            uint32_t j = 0;
            while (j < n && strcmp(env[j].name.v, s->env.items[i].name.v))
                j++;
            env[j] = s->env.items[i];
            if (j == n)
                n++;
        }
        d->env.items = env;
        d->env.n = n;
        d->env.meta.set = true;
    }
}

static bool flag_given(const struct run_opts *o, int i)
{
    return i == FLAG_COMMAND ? o->argc > 0 : i == FLAG_ENV ? o->n_env > 0 : !!o->value[i];
}

/* Flags are their own source: explain and the result say "flag". */
static void mark_flag_origins(const struct run_opts *o, struct stk_boundary *b)
{
    for (int i = 0; i < _FLAG_N; i++) {
        const struct flag_desc *f = &flags[i];
        if (!flag_given(o, i))
            continue;
        struct stk_origin fo = {.source = STK_SRC_FLAG, .path = f->path};
        if (f->origin_off != SIZE_MAX)
            *(struct stk_origin *)((char *)b + f->origin_off) = fo;
        for (size_t k = 0; k < b->n_settings; k++)
            if (!strcmp(b->settings[k].path, f->path))
                b->settings[k].origin = fo;
    }
}

/* Diagnostics about the flags name the flag, not a position in the
 * generated document, nor in the spec file whose value the flag replaced
 * (resolve's checks see the overlaid value under the file's name). */
static void print_diags(const struct run_opts *o, const struct stk_diags *d)
{
    for (size_t i = 0; i < d->n; i++) {
        const struct stk_diag *g = &d->items[i];
        const char *option = NULL;
        bool generated = g->file && !strcmp(g->file, "command line");
        for (int k = 0; k < _FLAG_N && g->path; k++)
            if ((generated && stk_startswith(g->path, flags[k].path)) ||
                (flag_given(o, k) && !strcmp(g->path, flags[k].path)))
                option = flags[k].option;
        if (option) {
            fprintf(stderr, "stockade run: %s: %s: %s\n", option,
                    g->sev == STK_SEV_ERROR ? "error" : "warning", g->msg);
            continue;
        }
        _cleanup_free_ char *line = stk_diag_format(g);
        fprintf(stderr, "%s\n", line);
    }
    if (d->dropped)
        fprintf(stderr, "... and %zu more problems\n", d->dropped);
}

/* ---- result ------------------------------------------------------------------- */

static json_t *result_json(const struct stk_run_result *r)
{
    char started[40], finished[40];
    stk_time_format(&r->started, started);
    stk_time_format(&r->finished, finished);
    json_t *unobs = json_array();
    for (const char *const *u = r->unobservable; u && *u; u++)
        json_array_append_new(unobs, json_string(*u));
    json_t *usage = json_pack("{s:f}", "cpuSeconds", r->cpu_seconds);
    json_object_set_new(usage, "peakMemoryBytes",
                        r->peak_memory >= 0 ? json_integer(r->peak_memory) : json_null());
    json_object_set_new(usage, "peakPids",
                        r->peak_pids >= 0 ? json_integer(r->peak_pids) : json_null());
    json_t *j = json_pack("{s:s,s:s,s:i}", "id", r->id, "phase", stk_phase_names[r->phase],
                          "exitCode", r->exit_code);
    json_object_set_new(j, "killReason",
                        r->kill_reason ? json_string(stk_kill_reason_names[r->kill_reason])
                                       : json_null());
    json_object_set_new(j, "runtime", json_string(stk_oci_runtime_names[r->runtime]));
    json_object_set_new(j, "started", json_string(started));
    json_object_set_new(j, "finished", json_string(finished));
    json_object_set_new(j, "usage", usage);
    json_object_set_new(j, "unobservable", unobs);
    json_object_set_new(j, "network", json_string(r->network ? "egress-policy" : "loopback"));
    json_t *events = json_array();
    for (const char *line = r->events; line && *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        json_t *ev = json_loadb(line, len, 0, NULL);
        if (ev)
            json_array_append_new(events, ev);
        line += len + (nl ? 1 : 0);
    }
    json_object_set_new(j, "events", events);
    if (r->note[0])
        json_object_set_new(j, "note", json_string(r->note));
    return j;
}

/* The default sandbox's name: run-<6 random hex digits>. */
static void default_name(char *buf, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[6] = {0};
    if (getrandom(raw, sizeof(raw), GRND_NONBLOCK) != (ssize_t)sizeof(raw))
        memset(raw, (int)(getpid() & 0xff), sizeof(raw));
    char rnd[7];
    for (size_t i = 0; i < 6; i++)
        rnd[i] = hex[raw[i] & 0xf];
    rnd[6] = '\0';
    snprintf(buf, n, "run-%s", rnd);
}

/* --dry-run: the contract of the sandbox that would run, flags included
 * (their provenance shows as "flag"), and the runtime it would use. */
static int dry_run(const struct stk_boundary *b, enum cli_output out)
{
    return cli_print_contract(b, STK_BACKEND_LOCAL, out);
}

/* ---- the command ---------------------------------------------------------------- */

static int run_parse(int argc, char **argv, struct run_opts *o)
{
    enum { OPT_ENV = 256, OPT_WORKSPACE, OPT_STATE_DIR, OPT_DRY_RUN, OPT_NO_NETWORK, OPT_FLAG0 };
    static const struct option opts[] = {
        {"file", required_argument, NULL, 'f'},
        {"env", required_argument, NULL, OPT_ENV},
        {"output", required_argument, NULL, 'o'},
        {"workspace", required_argument, NULL, OPT_WORKSPACE},
        {"state-dir", required_argument, NULL, OPT_STATE_DIR},
        {"dry-run", no_argument, NULL, OPT_DRY_RUN},
        {"no-network", no_argument, NULL, OPT_NO_NETWORK},
        {"policy", required_argument, NULL, OPT_FLAG0 + FLAG_POLICY},
        {"memory", required_argument, NULL, OPT_FLAG0 + FLAG_MEMORY},
        {"pids", required_argument, NULL, OPT_FLAG0 + FLAG_PIDS},
        {"cpu", required_argument, NULL, OPT_FLAG0 + FLAG_CPU},
        {"wall-clock", required_argument, NULL, OPT_FLAG0 + FLAG_WALL_CLOCK},
        {"cpu-time", required_argument, NULL, OPT_FLAG0 + FLAG_CPU_TIME},
        {"runtime", required_argument, NULL, OPT_FLAG0 + FLAG_RUNTIME},
        {"rootfs", required_argument, NULL, OPT_FLAG0 + FLAG_ROOTFS},
        {"image", required_argument, NULL, OPT_FLAG0 + FLAG_IMAGE},
        {NULL, 0, NULL, 0},
    };
    int c;
    /* '+': stop at the first non-option, so the workload's own flags are its */
    while ((c = getopt_long(argc, argv, "+f:o:e:", opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            o->file = optarg;
            break;
        case OPT_ENV:
            o->env_file = optarg;
            break;
        case 'o':
            if (cli_parse_output("run", optarg, &o->out) != 0)
                return EXIT_USAGE;
            break;
        case 'e':
            if (!strchr(optarg, '='))
                return cli_usage_error("run", "-e needs NAME=VALUE, not '%s'", optarg);
            if (o->n_env == RUN_MAX_ENV_FLAGS)
                return cli_usage_error("run", "at most %d -e flags", RUN_MAX_ENV_FLAGS);
            o->env[o->n_env++] = optarg;
            break;
        case OPT_WORKSPACE:
            o->workspace = optarg;
            break;
        case OPT_STATE_DIR:
            o->state_dir = optarg;
            break;
        case OPT_DRY_RUN:
            o->dry_run = true;
            break;
        case OPT_NO_NETWORK:
            o->no_network = true;
            break;
        default:
            if (c >= OPT_FLAG0 && c < OPT_FLAG0 + _FLAG_N) {
                o->value[c - OPT_FLAG0] = optarg;
                break;
            }
            return cli_usage("run", stderr, EXIT_USAGE);
        }
    }
    o->argv = argv + optind;
    o->argc = argc - optind;
    if (!o->file && o->argc == 0 && !o->value[FLAG_IMAGE])
        return cli_usage_error(
            "run", "needs a command after -- (or -f FILE with spec.command, or --image)");
    return 0;
}

int cmd_run(int argc, char **argv)
{
    struct run_opts o = {.out = CLI_OUT_TEXT};
    int r = run_parse(argc, argv, &o);
    if (r != 0)
        return r;

    _cleanup_diags_ struct stk_diags diags = {0};
    _cleanup_docset_ struct stk_docset *env_ds = NULL, *ds = NULL, *ovl_ds = NULL;
    const struct stk_envconfig *env = NULL;
    struct stk_sandbox *sb = NULL;
    char name[32];
    struct stk_local_paths paths;
    _cleanup_free_ char *ovl = NULL;
    _cleanup_boundary_ struct stk_boundary *b = NULL;
    _cleanup_error_ struct stk_error *err = NULL;
    cli_local_paths(o.state_dir, &paths);

    default_name(name, sizeof(name));

    if (o.env_file && cli_env_load(o.env_file, &diags, &env_ds, &env) != 0)
        goto invalid;
    if (o.file) {
        size_t count = 0;
        if (stk_docset_load(o.file, &diags, &ds) < 0)
            goto invalid;
        const struct stk_doc *doc = stk_docset_find(ds, STK_KIND_SANDBOX, &count);
        if (count != 1) {
            stk_diags_add(&diags, STK_SEV_ERROR, o.file, (struct stk_pos){0, 0}, "",
                          "expected exactly one Sandbox document, found %zu", count);
            goto invalid;
        }
        sb = doc->sandbox;
    }
    ovl = overlay_json(&o, sb ? sb->metadata.name.v : name);
    if (stk_docset_parse("command line", ovl, strlen(ovl), &diags, &ovl_ds) < 0)
        goto invalid;
    struct stk_sandbox *flag_sb = ovl_ds->docs[0].sandbox;
    if (sb)
        overlay_apply(&o, sb, flag_sb, ovl_ds->arena);
    else
        sb = flag_sb;

    if (stk_resolve(sb, ds ? ds->file : "command line", env, env ? env_ds->file : NULL, &diags,
                    &b) < 0)
        goto invalid;
    print_diags(&o, &diags);
    mark_flag_origins(&o, b);

    if (o.dry_run)
        return dry_run(b, o.out);
    if (b->argc == 0 && !b->image) {
        fprintf(stderr, "stockade run: %s has no spec.command; give one after --\n", o.file);
        return EXIT_INVALID;
    }

    struct stk_runtime_status st[_STK_OCI_N];
    if (stk_local_paths_check(&paths, &err) < 0) {
        fprintf(stderr, "stockade run: %s\n", err->msg);
        return EXIT_SETUP;
    }
    if (stk_runtimes_detect(&paths, st, &err) < 0) {
        fprintf(stderr, "stockade run: %s\n", err->msg);
        return EXIT_SETUP;
    }
    enum stk_oci_runtime rt;
    const char *note = NULL;
    if (stk_runtime_choose(b->runtime, st, &rt, &note) < 0) {
        fprintf(stderr, "stockade run: no runtime: %s\n", note);
        return EXIT_SETUP;
    }

    /* The sandbox's network: a veth on stockade's bridge with the egress
     * model compiled to nftables, on every runtime (gVisor's stack takes
     * the veth over; runtime.c says how). */
    struct stk_net_config net;
    stk_net_config_default(&net);
    net.run_dir = paths.run_dir;
    if (stk_net_config_apply_env(&net, env, &err) < 0) {
        fprintf(stderr, "stockade run: %s\n", err->msg);
        return EXIT_INVALID;
    }
    struct stk_run_request req = {
        .b = b,
        .runtime = rt,
        .workspace = o.workspace,
        .net = o.no_network ? NULL : &net,
    };
    struct stk_run_result res;
    fflush(stdout);
    if (stk_local_run(&paths, &req, &res, &err) < 0) {
        fprintf(stderr, "stockade run: %s\n", err->msg);
        return EXIT_SETUP;
    }
    if (o.out == CLI_OUT_JSON) {
        json_t *j = result_json(&res);
        json_dumpf(j, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
        putchar('\n');
        json_decref(j);
    } else if (res.phase == STK_PHASE_KILLED) {
        fprintf(stderr, "stockade: sandbox %s killed: %s (exit %d, runtime %s)\n", res.id,
                stk_kill_reason_names[res.kill_reason], res.exit_code,
                stk_oci_runtime_names[res.runtime]);
    }
    if (o.out == CLI_OUT_TEXT && res.events)
        fprintf(stderr, "stockade: %zu egress event%s (denied attempts):\n%s", res.n_events,
                res.n_events == 1 ? "" : "s", res.events);
    free(res.events);
    if (o.out == CLI_OUT_TEXT && res.phase != STK_PHASE_SUCCEEDED) {
        for (const char *const *u = res.unobservable; u && *u; u++)
            fprintf(stderr, "stockade: note: %s cannot observe %s\n",
                    stk_oci_runtime_names[res.runtime], *u);
        if (res.note[0])
            fprintf(stderr, "stockade: note: %s\n", res.note);
    }
    fflush(stdout);
    return res.exit_code < 0 ? EXIT_SETUP : res.exit_code & 0xff;

invalid:
    print_diags(&o, &diags);
    return EXIT_INVALID;
}
