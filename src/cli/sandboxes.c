/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Long-lived sandboxes from the command line: create, exec, logs, stop,
 * start, rm, ls, get and pool. Each is a thin layer over src/session: parse
 * the arguments, open the session (which recovers what crashed stockade
 * processes left), call, print.
 */
#include "cli.h"
#include "render/jsonpath.h"
#include "render/render.h"
#include "session/session.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define CLI_MAX_TARGETS 64

enum list_output { OUT_TABLE, OUT_JSON, OUT_YAML, OUT_WIDE, OUT_NAME, OUT_JSONPATH, _OUT_N };

/* -o: table (text), json, yaml; for records also wide, name and
 * jsonpath=TEMPLATE (the template in *ret_tmpl). */
static int parse_list_output(const char *cmd, const char *arg, enum list_output *ret,
                             const char **ret_tmpl)
{
    static const char *const names[] = {"table", "json", "yaml", "wide", "name", "text"};
    size_t n = ret_tmpl ? STK_ARRAY_SIZE(names) : 3;
    if (ret_tmpl && stk_startswith(arg, "jsonpath=")) {
        *ret = OUT_JSONPATH;
        *ret_tmpl = arg + strlen("jsonpath=");
        return 0;
    }
    int i = stk_enum_lookup(names, STK_ARRAY_SIZE(names), arg);
    if (i < 0 || ((size_t)i >= n && i != 5))
        return cli_usage_error(cmd, "--output must be %s, not '%s'",
                               ret_tmpl ? "table, wide, name, json, yaml or jsonpath=TEMPLATE"
                                        : "table, json or yaml",
                               arg);
    *ret = i == 5 ? OUT_TABLE : (enum list_output)i;
    return 0;
}

static int open_session(const char *cmd, struct stk_session **ret)
{
    return cli_session_open(cmd, NULL, ret);
}

static int fail(const char *cmd, struct stk_error *err)
{
    fprintf(stderr, "stockade %s: %s\n", cmd, err ? err->msg : "failed");
    return EXIT_INVALID;
}

/* Reads FILE (and ENV) as text: the store keeps the documents themselves. */
struct docs_text {
    char *spec, *env;
    struct stk_session_docs d;
};

/* create --workload KIND/NAME[.NAMESPACE]... : the spec's Sandbox becomes
 * deployment.model: injection with that target. The stored spec is the
 * rewritten one (JSON documents in one YAML stream), so every later
 * command resolves the same boundary. */
static int docs_target(struct docs_text *t, const char *workload)
{
    static const struct {
        const char *prefix, *kind;
    } kinds[] = {{"deployment/", "Deployment"},   {"deploy/", "Deployment"},
                 {"statefulset/", "StatefulSet"}, {"sts/", "StatefulSet"},
                 {"daemonset/", "DaemonSet"},     {"ds/", "DaemonSet"}};
    const char *kind = NULL, *name = NULL;
    for (size_t i = 0; i < STK_ARRAY_SIZE(kinds) && !kind; i++)
        if (!strncasecmp(workload, kinds[i].prefix, strlen(kinds[i].prefix))) {
            kind = kinds[i].kind;
            name = workload + strlen(kinds[i].prefix);
        }
    if (!kind || !name[0] || strchr(name, '/'))
        return cli_usage_error("create",
                               "--workload needs deployment/NAME, statefulset/NAME or "
                               "daemonset/NAME, not '%s'",
                               workload);
    _cleanup_error_ struct stk_error *err = NULL;
    json_t *docs = NULL;
    if (stk_yaml_load(t->spec, t->d.spec_len, &docs, &err) < 0) {
        fprintf(stderr, "stockade create: %s:%s\n", t->d.spec_file, err->msg);
        return EXIT_INVALID;
    }
    size_t i, n_sandboxes = 0;
    json_t *doc;
    struct stk_buf out = {0};
    json_array_foreach(docs, i, doc)
    {
        if (json_is_object(doc) &&
            !strcmp(json_string_value(json_object_get(doc, "kind")) ?: "", "Sandbox")) {
            n_sandboxes++;
            json_t *spec = json_object_get(doc, "spec");
            if (!json_is_object(spec)) {
                spec = json_object();
                json_object_set_new(doc, "spec", spec);
            }
            json_t *dep = json_object_get(spec, "deployment");
            json_t *target = json_object_get(dep, "target");
            const char *old_kind = json_string_value(json_object_get(target, "kind"));
            const char *old_name = json_string_value(json_object_get(target, "name"));
            if ((old_kind && strcmp(old_kind, kind)) || (old_name && strcmp(old_name, name))) {
                fprintf(stderr,
                        "stockade create: --workload %s contradicts the spec's "
                        "deployment.target (%s/%s)\n",
                        workload, old_kind ?: "?", old_name ?: "?");
                json_decref(docs);
                stk_buf_free(&out);
                return EXIT_INVALID;
            }
            if (!json_is_object(dep)) {
                dep = json_object();
                json_object_set_new(spec, "deployment", dep);
            }
            if (!json_is_object(target)) {
                target = json_object();
                json_object_set_new(dep, "target", target);
            }
            json_object_set_new(dep, "model", json_string("injection"));
            json_object_set_new(target, "kind", json_string(kind));
            json_object_set_new(target, "name", json_string(name));
        }
        char *text = json_dumps(doc, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!text)
            stk_oom();
        stk_buf_printf(&out, "%s%s\n", i ? "---\n" : "", text);
        free(text);
    }
    json_decref(docs);
    if (n_sandboxes != 1) {
        stk_buf_free(&out);
        fprintf(stderr, "stockade create: %s: --workload needs exactly one Sandbox document\n",
                t->d.spec_file);
        return EXIT_INVALID;
    }
    free(t->spec);
    t->d.spec_len = out.len;
    t->spec = stk_buf_steal(&out);
    t->d.spec = t->spec;
    return 0;
}

/* workload: create --workload (NULL: none) */
static int docs_read(const char *file, const char *env_file, const char *workload,
                     struct docs_text *t)
{
    _cleanup_diags_ struct stk_diags diags = {0};
    *t = (struct docs_text){.d = {.spec_file = file, .env_file = env_file}};
    if (stk_docset_read(file, &diags, &t->spec, &t->d.spec_len) < 0 ||
        (env_file && stk_docset_read(env_file, &diags, &t->env, &t->d.env_len) < 0)) {
        cli_print_diags(&diags);
        free(t->spec);
        free(t->env);
        return EXIT_INVALID;
    }
    t->d.spec = t->spec;
    t->d.env = t->env;
    int tr = workload ? docs_target(t, workload) : 0;
    if (tr != 0) {
        free(t->spec);
        free(t->env);
        return tr;
    }
    /* validate here, so a bad spec is reported with its positions */
    struct stk_session_boundary sb = {0};
    int r = stk_session_resolve(&t->d, &diags, &sb);
    cli_print_diags(&diags);
    stk_session_boundary_release(&sb);
    if (r < 0) {
        free(t->spec);
        free(t->env);
        return EXIT_INVALID;
    }
    return 0;
}

static void docs_free(struct docs_text *t)
{
    free(t->spec);
    free(t->env);
}

/* ---- create ----------------------------------------------------------------------- */

int cmd_create(int argc, char **argv)
{
    static const struct option opts[] = {
        {"file", required_argument, NULL, 'f'},
        {"env", required_argument, NULL, 'e'},
        {"pool", required_argument, NULL, 'p'},
        {"output", required_argument, NULL, 'o'},
        {"owner", required_argument, NULL, 'O'},
        {"tenant", required_argument, NULL, 'T'},
        {"workload", required_argument, NULL, 'w'},
        {"wait", required_argument, NULL, 'W'},
        {NULL, 0, NULL, 0},
    };
    bool accepted_only = false;
    const char *file = NULL, *env = NULL, *pool = NULL, *owner = NULL, *tenant = NULL;
    const char *workload = NULL;
    enum cli_output out = CLI_OUT_TEXT;
    int c;
    while ((c = cli_getopt(argc, argv, "f:e:p:o:w:", opts)) != -1) {
        switch (c) {
        case 'f':
            file = optarg;
            break;
        case 'w':
            workload = optarg;
            break;
        case 'W':
            if (strcmp(optarg, "accepted") && strcmp(optarg, "running"))
                return cli_usage_error("create", "--wait is accepted or running, not '%s'", optarg);
            accepted_only = !strcmp(optarg, "accepted");
            break;
        case 'e':
            env = optarg;
            break;
        case 'p':
            pool = optarg;
            break;
        case 'o':
            if (cli_parse_output("create", optarg, &out) != 0)
                return EXIT_USAGE;
            break;
        case 'O':
            owner = optarg;
            break;
        case 'T':
            tenant = optarg;
            break;
        default:
            return cli_usage("create", stderr, EXIT_USAGE);
        }
    }
    if (!file)
        return cli_usage_error("create", "needs -f FILE (a Sandbox spec)");
    if (optind < argc)
        return cli_usage_error("create", "unexpected argument '%s'", argv[optind]);
    if (workload && pool)
        return cli_usage_error("create", "--workload and --pool exclude each other");
    _cleanup_engine_ struct cli_engine *e = cli_engine_open("create");
    struct docs_text t;
    struct stk_create_res res = {0};
    int r = docs_read(file, env, workload, &t);
    if (r != 0)
        return r;
    struct cli_create_args ca = {.docs = &t.d,
                                 .pool = pool,
                                 .owner = owner,
                                 .tenant = tenant,
                                 .accepted_only = accepted_only};
    r = cli_engine_ops_of(e)->create(e, &ca, &res);
    docs_free(&t);
    if (r != 0)
        return r;
    if (out == CLI_OUT_JSON) {
        json_t *j = json_pack("{s:s,s:b}", "id", res.id, "warm", res.warm);
        if (res.note[0])
            json_object_set_new(j, "note", json_string(res.note));
        json_dumpf(j, stdout, JSON_COMPACT);
        putchar('\n');
        json_decref(j);
    } else {
        if (res.note[0])
            fprintf(stderr, "stockade create: %s\n", res.note);
        printf("%s\n", res.id);
    }
    return 0;
}

/* ---- exec ---------------------------------------------------------------------------- */

int cmd_exec(int argc, char **argv)
{
    static const struct option opts[] = {
        {"interactive", no_argument, NULL, 'i'},   {"tty", no_argument, NULL, 't'},
        {"env", required_argument, NULL, 'e'},     {"workdir", required_argument, NULL, 'w'},
        {"replica", required_argument, NULL, 'R'}, {NULL, 0, NULL, 0},
    };
    bool interactive = false, tty = false;
    const char *env[STK_EXEC_MAX_ENV], *cwd = NULL, *replica = NULL;
    size_t n_env = 0;
    int c;
    while ((c = cli_getopt(argc, argv, "+ite:w:", opts)) != -1) {
        switch (c) {
        case 'i':
            interactive = true;
            break;
        case 't':
            tty = true;
            break;
        case 'e':
            if (!strchr(optarg, '=') || optarg[0] == '=')
                return cli_usage_error("exec", "-e needs NAME=VALUE, not '%s'", optarg);
            if (n_env == STK_EXEC_MAX_ENV)
                return cli_usage_error("exec", "at most %d -e flags", STK_EXEC_MAX_ENV);
            env[n_env++] = optarg;
            break;
        case 'w':
            cwd = optarg;
            break;
        case 'R':
            if (!optarg[0] || strlen(optarg) > 253)
                return cli_usage_error("exec", "--replica needs a Pod name");
            replica = optarg;
            break;
        default:
            return cli_usage("exec", stderr, EXIT_USAGE);
        }
    }
    if (optind >= argc)
        return cli_usage_error("exec", "needs a sandbox ID");
    const char *id = argv[optind++];
    if (optind < argc && !strcmp(argv[optind], "--"))
        optind++;
    if (optind >= argc)
        return cli_usage_error("exec", "needs a command: stockade exec ID -- CMD [ARG...]");
    if (tty && !isatty(STDIN_FILENO) && interactive)
        fprintf(stderr, "stockade exec: note: -t without a terminal on stdin\n");
    struct cli_exec_args a = {
        .argv = (const char *const *)(argv + optind),
        .argc = (size_t)(argc - optind),
        .env = env,
        .n_env = n_env,
        .cwd = cwd,
        .tty = tty,
        .interactive = interactive,
        .replica = replica,
    };
    _cleanup_engine_ struct cli_engine *e = cli_engine_open("exec");
    int code = 0;
    int r = cli_exec(e, id, &a, &code);
    return r != 0 ? EXIT_SETUP : code & 0xff;
}

int cli_exec(struct cli_engine *e, const char *id, const struct cli_exec_args *a, int *ret_code)
{
    /* -t: the caller's TERM, unless -e TERM=... says otherwise (a terminal
     * the program cannot name is one it cannot drive) */
    const char *env[STK_EXEC_MAX_ENV + 1];
    size_t n_env = 0;
    bool has_term = false;
    for (size_t i = 0; i < a->n_env && i < STK_EXEC_MAX_ENV; i++) {
        env[n_env++] = a->env[i];
        has_term |= stk_startswith(a->env[i], "TERM=");
    }
    _cleanup_free_ char *term = NULL;
    const char *caller = getenv("TERM");
    if (a->tty && !has_term && n_env < STK_EXEC_MAX_ENV) {
        term = stk_xasprintf("TERM=%.64s", caller && *caller ? caller : "xterm");
        env[n_env++] = term;
    }
    struct stk_init_proc proc = {
        .argv = a->argv,
        .argc = a->argc,
        .env = env,
        .n_env = n_env,
        .cwd = a->cwd,
        .tty = a->tty,
        .replica = a->replica,
    };
    struct winsize ws;
    if (a->tty && ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0) {
        proc.rows = ws.ws_row;
        proc.cols = ws.ws_col;
    }
    return cli_engine_ops_of(e)->exec(e, id, &proc, a->interactive, ret_code);
}

/* ---- logs ---------------------------------------------------------------------------- */

/* An RFC 3339 UTC time, "2026-11-23T10:00:00Z" or with milliseconds. */
static int parse_rfc3339(const char *arg, int64_t *ret)
{
    struct tm tm = {0};
    const char *end = strptime(arg, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end)
        return -EINVAL;
    long frac_ms = 0;
    if (*end == '.') {
        int digits = 0;
        for (end++; *end >= '0' && *end <= '9'; end++, digits++)
            if (digits < 3)
                frac_ms = frac_ms * 10 + (*end - '0');
        for (; digits < 3; digits++)
            frac_ms *= 10;
    }
    if (strcmp(end, "Z") != 0)
        return -EINVAL;
    *ret = (int64_t)timegm(&tm) * 1000 + frac_ms;
    return 0;
}

/* --since: a duration before now ("10m") or an RFC 3339 time. */
static int parse_since(const char *arg, int64_t *ret)
{
    int64_t ms;
    const char *why = NULL;
    if (stk_duration_parse(arg, &ms, &why) == 0) {
        *ret = stk_clock_ms(CLOCK_REALTIME) - ms;
        return 0;
    }
    return parse_rfc3339(arg, ret);
}

int cmd_logs(int argc, char **argv)
{
    static const struct option opts[] = {
        {"follow", no_argument, NULL, 'f'},      {"since", required_argument, NULL, 's'},
        {"until", required_argument, NULL, 'u'}, {"tail", required_argument, NULL, 'n'},
        {"timestamps", no_argument, NULL, 't'},  {NULL, 0, NULL, 0},
    };
    struct stk_session_logs_req q = {.tail = -1};
    int c;
    while ((c = cli_getopt(argc, argv, "fn:t", opts)) != -1) {
        char *end;
        switch (c) {
        case 'f':
            q.follow = true;
            break;
        case 's':
        case 'u':
            if (parse_since(optarg, c == 's' ? &q.since_ms : &q.until_ms) < 0)
                return cli_usage_error("logs",
                                       "--%s needs a duration (30s, 10m, 2h) or an RFC 3339 "
                                       "UTC time (2026-11-23T10:00:00Z), not '%s'",
                                       c == 's' ? "since" : "until", optarg);
            break;
        case 'n':
            errno = 0;
            q.tail = strtoll(optarg, &end, 10);
            if (!strcmp(optarg, "all"))
                q.tail = -1;
            else if (errno || *end || end == optarg || q.tail < 0 || q.tail > 100000000)
                return cli_usage_error("logs", "--tail needs a number of lines (or all), not '%s'",
                                       optarg);
            break;
        case 't':
            q.timestamps = true;
            break;
        default:
            return cli_usage("logs", stderr, EXIT_USAGE);
        }
    }
    if (optind != argc - 1)
        return cli_usage_error("logs", "needs exactly one sandbox ID");
    _cleanup_engine_ struct cli_engine *e = cli_engine_open("logs");
    return cli_engine_ops_of(e)->logs(e, argv[optind], &q);
}

/* ---- stop, start, rm ---------------------------------------------------------------- */

/* Applies act to each ID; prints each id done, each failure; the first
 * failure's exit status if any failed. */
static int each_id(const char *cmd, int argc, char **argv, enum cli_act act, bool allow_force)
{
    static const struct option opts[] = {{"force", no_argument, NULL, 'f'}, {NULL, 0, NULL, 0}};
    bool force = false;
    int c;
    while ((c = cli_getopt(argc, argv, allow_force ? "f" : "", opts)) != -1) {
        if (c == 'f' && allow_force)
            force = true;
        else
            return cli_usage(cmd, stderr, EXIT_USAGE);
    }
    if (optind >= argc)
        return cli_usage_error(cmd, "needs at least one sandbox ID");
    _cleanup_engine_ struct cli_engine *e = cli_engine_open(cmd);
    int status = 0;
    for (int i = optind; i < argc; i++) {
        int r = cli_engine_ops_of(e)->act(e, act, argv[i], force);
        if (r != 0)
            status = status ? status : r;
        else
            printf("%s\n", argv[i]);
    }
    return status;
}

int cmd_stop(int argc, char **argv)
{
    return each_id("stop", argc, argv, CLI_ACT_STOP, false);
}

int cmd_start(int argc, char **argv)
{
    return each_id("start", argc, argv, CLI_ACT_START, false);
}

int cmd_rm(int argc, char **argv)
{
    return each_id("rm", argc, argv, CLI_ACT_RM, true);
}

/* ---- ls, get ------------------------------------------------------------------------ */

static int print_value(json_t *v, enum list_output out)
{
    if (out == OUT_JSON) {
        cli_print_json(v);
        return 0;
    }
    _cleanup_error_ struct stk_error *err = NULL;
    struct stk_buf b = {0};
    json_t *docs = json_pack("[o]", v);
    int r = stk_yaml_dump(docs, &b, &err);
    json_decref(docs);
    if (r >= 0)
        fputs(stk_buf_str(&b), stdout);
    stk_buf_free(&b);
    return r < 0 ? fail("ls", err) : 0;
}

static void age(int64_t created_ms, char *buf, size_t n)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t s = (int64_t)ts.tv_sec - created_ms / 1000;
    if (s < 120)
        snprintf(buf, n, "%llds", (long long)s);
    else if (s < 7200)
        snprintf(buf, n, "%lldm", (long long)s / 60);
    else
        snprintf(buf, n, "%lldh", (long long)s / 3600);
}

static const char *str_or(json_t *o, const char *key, const char *dflt)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v && *v ? v : dflt;
}

/* How `ls` and `get` print records. */
struct list_fmt {
    enum list_output out;
    const char *tmpl; /* jsonpath */
    bool quiet, no_headers;
};

static void labels_text(json_t *rec, char *buf, size_t n)
{
    const char *k;
    json_t *v;
    size_t len = 0;
    buf[0] = '\0';
    json_object_foreach(json_object_get(rec, "labels"), k, v)
    {
        int w = snprintf(buf + len, n - len, "%s%s=%s", len ? "," : "", k, json_string_value(v));
        if (w < 0 || (size_t)w >= n - len)
            break;
        len += (size_t)w;
    }
    if (!len)
        snprintf(buf, n, "-");
}

/* The table of `ls` and `get`, from the records' JSON (stk_sb_rec_json, or
 * the server's answer: the same function prints both). */
static void print_table(json_t *recs, const struct list_fmt *f)
{
    bool wide = f->out == OUT_WIDE;
    if (!f->no_headers) {
        printf("%-32s %-20s %-12s %-20s %-6s %-12s %s", "ID", "NAME", "PHASE", "REASON", "RUNTIME",
               "POOL", "AGE");
        if (wide)
            printf(" %-5s %-16s %-12s %s", "EXIT", "OWNER", "TENANT", "LABELS");
        putchar('\n');
    }
    size_t i;
    json_t *rec;
    json_array_foreach(recs, i, rec)
    {
        char a[32] = "-";
        int64_t created = 0;
        if (parse_rfc3339(str_or(rec, "created", ""), &created) == 0)
            age(created, a, sizeof(a));
        char pool[80];
        snprintf(pool, sizeof(pool), "%s%s", str_or(rec, "pool", "-"),
                 json_is_true(json_object_get(rec, "poolMember")) ? "*" : "");
        printf("%-32s %-20s %-12s %-20s %-6s %-12s %s", str_or(rec, "id", ""),
               str_or(rec, "name", ""), str_or(rec, "phase", ""), str_or(rec, "reason", "-"),
               str_or(rec, "runtime", ""), pool, a);
        if (wide) {
            char code[16] = "-", labels[512];
            json_t *x = json_object_get(rec, "exitCode");
            if (json_is_integer(x))
                snprintf(code, sizeof(code), "%lld", (long long)json_integer_value(x));
            labels_text(rec, labels, sizeof(labels));
            printf(" %-5s %-16s %-12s %s", code, str_or(rec, "owner", "-"),
                   str_or(rec, "tenant", "-"), labels);
        }
        putchar('\n');
        /* an injected sandbox: one live instance per replica that carries it */
        size_t j;
        json_t *rep;
        json_array_foreach(json_object_get(rec, "replicas"), j, rep) printf(
            "  replica %-43s %-12s %s\n", str_or(rep, "pod", ""),
            json_is_true(json_object_get(rep, "running")) ? "running" : str_or(rep, "phase", ""),
            str_or(rep, "node", ""));
    }
}

/* recs (stolen): an array of records (ls), or one record (get). */
static int print_records(json_t *recs, const struct list_fmt *f)
{
    bool one = json_is_object(recs);
    if (f->out == OUT_JSONPATH) {
        /* kubectl's shapes: a list is {"items": [...]}, one record itself */
        json_t *root = one ? json_incref(recs) : json_pack("{s:O}", "items", recs);
        struct stk_buf b = {0};
        _cleanup_error_ struct stk_error *err = NULL;
        int r = stk_jsonpath(root, f->tmpl, &b, &err);
        json_decref(root);
        json_decref(recs);
        if (r < 0) {
            stk_buf_free(&b);
            return cli_usage_error(cli_command_name, "%s", err->msg);
        }
        printf("%s\n", b.data ? b.data : "");
        stk_buf_free(&b);
        return 0;
    }
    if (f->out == OUT_JSON || f->out == OUT_YAML)
        return print_value(recs, f->out);
    if (one)
        recs = json_pack("[o]", recs);
    size_t i;
    json_t *rec;
    if (f->quiet || f->out == OUT_NAME)
        json_array_foreach(recs, i, rec)
            printf("%s%s\n", f->quiet ? "" : "sandbox/", str_or(rec, "id", ""));
    else
        print_table(recs, f);
    json_decref(recs);
    return 0;
}

/* A list's records carry no labels (the API's list neither; both engines
 * print the same): each is read with get when a selector or -o wide needs
 * them. Keeps the records sel matches. */
static int select_records(struct cli_engine *e, json_t *recs, const struct stk_lsel *sel,
                          bool need_labels)
{
    for (size_t i = 0; i < json_array_size(recs);) {
        json_t *rec = json_array_get(recs, i);
        if ((sel->n || need_labels) && !json_object_get(rec, "labels")) {
            json_t *full = NULL;
            int r = cli_engine_ops_of(e)->get(e, str_or(rec, "id", ""), &full);
            if (r != 0)
                return r;
            json_object_set(rec, "labels", json_object_get(full, "labels"));
            json_decref(full);
        }
        if (sel->n && !stk_lsel_match(sel, json_object_get(rec, "labels")))
            json_array_remove(recs, i);
        else
            i++;
    }
    return 0;
}

int cmd_ls(int argc, char **argv)
{
    static const struct option opts[] = {
        {"all", no_argument, NULL, 'a'},        {"output", required_argument, NULL, 'o'},
        {"quiet", no_argument, NULL, 'q'},      {"selector", required_argument, NULL, 'l'},
        {"no-headers", no_argument, NULL, 'H'}, {NULL, 0, NULL, 0},
    };
    bool all = false;
    struct list_fmt f = {.out = OUT_TABLE};
    struct stk_lsel sel = {0};
    _cleanup_error_ struct stk_error *err = NULL;
    int c;
    while ((c = cli_getopt(argc, argv, "ao:ql:", opts)) != -1) {
        if (c == 'a')
            all = true;
        else if (c == 'q')
            f.quiet = true;
        else if (c == 'H')
            f.no_headers = true;
        else if (c == 'l') {
            if (stk_lsel_parse(optarg, &sel, &err) < 0)
                return cli_usage_error("ls", "-l: %s", err->msg);
        } else if (c == 'o') {
            if (parse_list_output("ls", optarg, &f.out, &f.tmpl) != 0)
                return EXIT_USAGE;
        } else
            return cli_usage("ls", stderr, EXIT_USAGE);
    }
    if (optind < argc)
        return cli_usage_error("ls", "unexpected argument '%s'", argv[optind]);
    _cleanup_engine_ struct cli_engine *e = cli_engine_open("ls");
    json_t *a = NULL;
    int r = cli_engine_ops_of(e)->list(e, all, &a);
    if (r == 0)
        r = select_records(e, a, &sel, f.out == OUT_WIDE);
    if (r != 0) {
        json_decref(a);
        return r;
    }
    return print_records(a, &f);
}

int cmd_get(int argc, char **argv)
{
    static const struct option opts[] = {{"output", required_argument, NULL, 'o'},
                                         {"no-headers", no_argument, NULL, 'H'},
                                         {NULL, 0, NULL, 0}};
    struct list_fmt f = {.out = OUT_TABLE};
    int c;
    while ((c = cli_getopt(argc, argv, "o:", opts)) != -1) {
        if (c == 'H')
            f.no_headers = true;
        else if (c != 'o')
            return cli_usage("get", stderr, EXIT_USAGE);
        else if (parse_list_output("get", optarg, &f.out, &f.tmpl) != 0)
            return EXIT_USAGE;
    }
    if (optind != argc - 1)
        return cli_usage_error("get", "needs exactly one sandbox ID");
    _cleanup_engine_ struct cli_engine *e = cli_engine_open("get");
    json_t *rec = NULL;
    int r = cli_engine_ops_of(e)->get(e, argv[optind], &rec);
    return r != 0 ? r : print_records(rec, &f);
}

/* ---- pool ------------------------------------------------------------------------------ */

static int pool_create_cmd(int argc, char **argv)
{
    static const struct option opts[] = {
        {"file", required_argument, NULL, 'f'},
        {"env", required_argument, NULL, 'e'},
        {"size", required_argument, NULL, 'n'},
        {"tenant", required_argument, NULL, 'T'},
        {NULL, 0, NULL, 0},
    };
    const char *file = NULL, *env = NULL, *tenant = NULL;
    long size = -1;
    int c;
    while ((c = cli_getopt(argc, argv, "f:e:n:", opts)) != -1) {
        char *end;
        switch (c) {
        case 'f':
            file = optarg;
            break;
        case 'e':
            env = optarg;
            break;
        case 'T':
            tenant = optarg;
            break;
        case 'n':
            size = strtol(optarg, &end, 10);
            if (*end || end == optarg || size < 1 || size > STK_POOL_MAX_SIZE)
                return cli_usage_error("pool", "--size must be 1 to %d, not '%s'",
                                       STK_POOL_MAX_SIZE, optarg);
            break;
        default:
            return cli_usage("pool", stderr, EXIT_USAGE);
        }
    }
    if (optind != argc - 1 || !file || size < 0)
        return cli_usage_error("pool", "pool create NAME --size N -f TEMPLATE");
    _cleanup_engine_ struct cli_engine *e = cli_engine_open("pool");
    struct docs_text t;
    int r = docs_read(file, env, NULL, &t);
    if (r != 0)
        return r;
    r = cli_engine_ops_of(e)->pool_create(e, argv[optind], (int)size, &t.d, tenant);
    docs_free(&t);
    if (r == 0)
        printf("%s\n", argv[optind]);
    return r;
}

static int pool_ls_cmd(int argc, char **argv)
{
    static const struct option opts[] = {{"output", required_argument, NULL, 'o'},
                                         {NULL, 0, NULL, 0}};
    enum list_output out = OUT_TABLE;
    int c;
    while ((c = cli_getopt(argc, argv, "o:", opts)) != -1)
        if (c != 'o')
            return cli_usage("pool", stderr, EXIT_USAGE);
        else if (parse_list_output("pool", optarg, &out, NULL) != 0)
            return EXIT_USAGE;
    _cleanup_engine_ struct cli_engine *e = cli_engine_open("pool");
    json_t *a = NULL;
    int r = cli_engine_ops_of(e)->pool_list(e, &a);
    if (r != 0)
        return r;
    if (out != OUT_TABLE)
        return print_value(a, out);
    printf("%-24s %-6s %-6s\n", "NAME", "SIZE", "READY");
    size_t i;
    json_t *p;
    json_array_foreach(a, i, p)
    {
        const json_t *ready = json_object_get(p, "ready");
        char n[24] = "-";
        if (json_is_integer(ready))
            snprintf(n, sizeof(n), "%d", (int)json_integer_value(ready));
        printf("%-24s %-6d %-6s%s%s\n", str_or(p, "name", ""),
               (int)json_integer_value(json_object_get(p, "size")), n,
               json_object_get(p, "mechanism") ? " kept by the cluster: " : "",
               str_or(p, "mechanism", ""));
    }
    json_decref(a);
    return 0;
}

static int pool_rm_cmd(int argc, char **argv)
{
    if (argc != 2)
        return cli_usage_error("pool", "pool rm NAME");
    _cleanup_engine_ struct cli_engine *e = cli_engine_open("pool");
    int r = cli_engine_ops_of(e)->pool_rm(e, argv[1]);
    if (r == 0)
        printf("%s\n", argv[1]);
    return r;
}

int cmd_pool(int argc, char **argv)
{
    if (argc < 2)
        return cli_usage_error("pool", "needs a subcommand: create, ls or rm");
    if (!strcmp(argv[1], "create"))
        return pool_create_cmd(argc - 1, argv + 1);
    if (!strcmp(argv[1], "ls"))
        return pool_ls_cmd(argc - 1, argv + 1);
    if (!strcmp(argv[1], "rm"))
        return pool_rm_cmd(argc - 1, argv + 1);
    return cli_usage_error("pool", "unknown subcommand '%s' (create, ls or rm)", argv[1]);
}

/* ---- the processes stockade starts for itself ---------------------------------------- */

int cmd_internal_monitor(int argc, char **argv)
{
    /* started by stockade itself: its lock on fd 3, its report pipe on 4 */
    if (argc != 3 || fcntl(3, F_GETFD) < 0 || fcntl(4, F_GETFD) < 0) {
        fprintf(stderr, "stockade: %s is stockade's own (it supervises one sandbox)\n",
                STK_SESSION_MONITOR_VERB);
        return EXIT_USAGE;
    }
    struct stk_local_paths paths;
    enum stk_backend be;
    int r = cli_session_backend(STK_SESSION_MONITOR_VERB, &be);
    if (r != 0)
        return r;
    cli_local_paths(NULL, &paths);
    /* its creator put the backend and its cluster access in the environment */
    const char *kc = getenv("STOCKADE_KUBECONFIG"), *ctx = getenv("STOCKADE_CONTEXT");
    struct stk_session_opts o = {.kubeconfig = kc && *kc ? kc : NULL,
                                 .context = ctx && *ctx ? ctx : NULL};
    return stk_session_monitor_main(&paths, be, &o, argv[2], argv[1], 3, 4);
}

int cmd_internal_refill(int argc, char **argv)
{
    if (argc != 2 && argc != 3)
        return EXIT_USAGE;
    /* background work: it must not slow the claim that started it. Low
     * priority (nice and autogroup: this process leads its own session), and
     * the claimer's first exec, which usually follows the claim at once, goes
     * first. The members' monitors and sandboxes keep this priority until a
     * claim (stk_session_monitor_main, the local driver's start). */
    stk_set_nice(STK_REFILL_NICE);
    struct timespec delay = {0, STK_REFILL_DELAY_MS * 1000000L};
    (void)nanosleep(&delay, NULL);
    struct stk_session *s = NULL;
    int r = open_session("pool", &s);
    if (r != 0)
        return r;
    _cleanup_error_ struct stk_error *err = NULL;
    r = stk_pool_refill(s, argc == 3 ? argv[2] : NULL, argv[1], &err);
    stk_session_close(s);
    return r < 0 ? EXIT_INVALID : 0;
}
