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
#include "render/render.h"
#include "session/session.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

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
    FLAG_WORKDIR,
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
    [FLAG_WORKDIR] = {"-w", NULL, "workingDir", "spec.workingDir", SIZE_MAX, false},
    [FLAG_IMAGE] = {"--image", NULL, "image", "spec.image", SIZE_MAX, false},
    [FLAG_COMMAND] = {"-- CMD", NULL, "command", "spec.command", SIZE_MAX, false},
    [FLAG_ENV] = {"-e", NULL, "env", "spec.env", SIZE_MAX, false},
};

struct run_opts {
    const char *file, *env_file, *workspace, *state_dir;
    bool dry_run;
    bool no_network;
    bool interactive, tty, detach, rm;
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
    if (o->value[FLAG_WORKDIR])
        d->working_dir = s->working_dir;
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

/* ---- -o json: the workload's output inside the result ---------------------------- */

/* What `run -o json` keeps of each stream; the rest is counted, and the
 * result says it was cut. */
#define RUN_JSON_MAX_OUTPUT (1024 * 1024)

struct capture {
    int rd[2];     /* read ends of the workload's stdout and stderr */
    int saved[2];  /* our own fd 1 and 2 */
    int stop[2];   /* a pipe: the run is over, drain and end */
    char *data[2]; /* RUN_JSON_MAX_OUTPUT each */
    size_t len[2];
    uint64_t total[2];
    pthread_t thread;
};

static void capture_read(struct capture *c, int i)
{
    char buf[65536];
    for (;;) {
        ssize_t n = read(c->rd[i], buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            close(c->rd[i]);
            c->rd[i] = -1;
            return;
        }
        size_t keep = RUN_JSON_MAX_OUTPUT - c->len[i];
        keep = keep < (size_t)n ? keep : (size_t)n;
        memcpy(c->data[i] + c->len[i], buf, keep);
        c->len[i] += keep;
        c->total[i] += (uint64_t)n;
    }
}

static void *capture_main(void *arg)
{
    struct capture *c = arg;
    for (bool stopping = false; c->rd[0] >= 0 || c->rd[1] >= 0;) {
        struct pollfd p[3] = {{.fd = c->rd[0], .events = POLLIN},
                              {.fd = c->rd[1], .events = POLLIN},
                              {.fd = stopping ? -1 : c->stop[0], .events = POLLIN}};
        /* once the run is over, what is written already and nothing more:
         * gVisor's gofer may hold a write end open past its sandbox */
        int n = poll(p, 3, stopping ? 0 : -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        for (int i = 0; i < 2; i++)
            if (p[i].revents)
                capture_read(c, i);
        if (p[2].revents)
            stopping = true;
    }
    return NULL;
}

/* Points fd 1 and 2 at pipes that a thread reads, bounded. */
static int capture_start(struct capture *c)
{
    *c = (struct capture){.rd = {-1, -1}, .saved = {-1, -1}, .stop = {-1, -1}};
    int w[2] = {-1, -1};
    for (int i = 0; i < 2; i++) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
            goto fail;
        c->rd[i] = p[0];
        w[i] = p[1];
        (void)fcntl(p[0], F_SETFL, O_NONBLOCK);
        c->data[i] = stk_xmalloc(RUN_JSON_MAX_OUTPUT);
    }
    if (pipe2(c->stop, O_CLOEXEC) < 0)
        goto fail;
    fflush(stdout);
    fflush(stderr);
    for (int i = 0; i < 2; i++) {
        c->saved[i] = fcntl(i + 1, F_DUPFD_CLOEXEC, 3);
        if (c->saved[i] < 0 || dup2(w[i], i + 1) < 0)
            goto fail;
        close(w[i]);
        w[i] = -1;
    }
    /* the thread takes no signals: the run's own handling (signalfd in the
     * thread that runs it) must see SIGINT and SIGTERM */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int r = pthread_create(&c->thread, NULL, capture_main, c);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r != 0) {
        errno = r;
        goto fail;
    }
    return 0;
fail:
    fprintf(stderr, "stockade run: capturing the output: %s\n", strerror(errno));
    for (int i = 0; i < 2; i++) {
        if (c->saved[i] >= 0)
            dup2(c->saved[i], i + 1);
        if (w[i] >= 0)
            close(w[i]);
    }
    return -1;
}

static void capture_finish(struct capture *c)
{
    fflush(stdout);
    fflush(stderr);
    for (int i = 0; i < 2; i++) {
        (void)dup2(c->saved[i], i + 1);
        close(c->saved[i]);
    }
    if (write(c->stop[1], "x", 1) < 0) {
        /* the thread ends at end of file anyway */
    }
    pthread_join(c->thread, NULL);
    for (int i = 0; i < 2; i++)
        if (c->rd[i] >= 0)
            close(c->rd[i]);
    close(c->stop[0]);
    close(c->stop[1]);
}

/* Bytes as a JSON string: invalid UTF-8 becomes U+FFFD (JSON has no bytes). */
static json_t *utf8_lossy(const char *d, size_t n)
{
    struct stk_buf b = {0};
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)d[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        bool ok = len > 0 && i + len <= n && !(c == 0xc0 || c == 0xc1 || c > 0xf4);
        for (size_t k = 1; ok && k < len; k++)
            ok = ((unsigned char)d[i + k] >> 6) == 2;
        if (ok && len == 3) {
            unsigned cp = (c & 0xfu) << 12 | ((unsigned char)d[i + 1] & 0x3fu) << 6;
            ok = cp >= 0x800 && (cp < 0xd800 || cp > 0xdfff);
        }
        if (ok && len == 4) {
            unsigned cp = (c & 0x7u) << 18 | ((unsigned char)d[i + 1] & 0x3fu) << 12;
            ok = cp >= 0x10000 && cp <= 0x10ffff;
        }
        if (ok && len == 1 && c == 0)
            ok = false; /* jansson strings end at NUL */
        if (ok) {
            stk_buf_append(&b, d + i, len);
            i += len;
        } else {
            stk_buf_append(&b, "\xef\xbf\xbd", 3);
            i++;
        }
    }
    json_t *j = json_stringn(b.data ? b.data : "", b.len);
    stk_buf_free(&b);
    return j ? j : json_string("");
}

static void capture_put(struct capture *c, json_t *j)
{
    static const char *const names[2][3] = {{"stdout", "stdoutBytes", "stdoutTruncated"},
                                            {"stderr", "stderrBytes", "stderrTruncated"}};
    for (int i = 0; i < 2; i++) {
        json_object_set_new(j, names[i][0], utf8_lossy(c->data[i], c->len[i]));
        json_object_set_new(j, names[i][1], json_integer((json_int_t)c->total[i]));
        json_object_set_new(j, names[i][2], json_boolean(c->total[i] > c->len[i]));
        free(c->data[i]);
        c->data[i] = NULL;
    }
}

/* -o json: whether the one document went out (a result, an error, the
 * contract of --dry-run, the id of -d). */
static bool json_printed;

/* ---- 126 and 127 --------------------------------------------------------------------- */

/* Why the runtime could not start the command, as podman says it: 127 not
 * found, 126 not executable, 0 neither. Asked only after the runtime failed
 * to start it, of the sandbox's root filesystem as the host sees it (host:
 * the host's own /usr, /bin, /lib*, which the sandbox sees read-only). A
 * classification of a failure, never a decision about the boundary. */
static int not_runnable(const struct stk_boundary *b)
{
    const char *cmd = b->argc ? b->argv[0] : NULL;
    if (!cmd || !*cmd || b->image)
        return 0; /* an image's root is the store's: not judged here */
    const char *root = !b->rootfs || !strcmp(b->rootfs, "host") ? "" : b->rootfs;
    const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    for (size_t i = 0; i < b->n_env; i++)
        if (stk_streq(b->env[i].name.v, "PATH") && b->env[i].value.v)
            path = b->env[i].value.v;
    char full[4096];
    bool found = false;
    if (strchr(cmd, '/')) {
        if (cmd[0] != '/')
            return 0; /* relative to the working directory: not judged */
        snprintf(full, sizeof(full), "%s%s", root, cmd);
        if (access(full, X_OK) == 0)
            return 0;
        return access(full, F_OK) == 0 ? 126 : 127;
    }
    for (const char *p = path; *p;) {
        const char *end = strchr(p, ':');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n && p[0] == '/') {
            snprintf(full, sizeof(full), "%s%.*s/%s", root, (int)n, p, cmd);
            if (access(full, X_OK) == 0)
                return 0;
            found |= access(full, F_OK) == 0;
        }
        p += n + (end ? 1 : 0);
    }
    return found ? 126 : 127;
}

/* ---- -d, -i, -t: a long-lived sandbox -------------------------------------------- */

/* The Sandbox document the session stores: FILE's Sandbox with the flags'
 * document laid over it (flags win; -e replaces a variable of the same
 * name; a command replaces args too), or the flags' document alone. */
static char *session_spec(const struct run_opts *o, const char *ovl)
{
    if (!o->file)
        return stk_xstrdup(ovl);
    _cleanup_diags_ struct stk_diags diags = {0};
    _cleanup_free_ char *text = NULL;
    _cleanup_error_ struct stk_error *err = NULL;
    size_t len = 0;
    json_t *docs = NULL, *doc = NULL;
    if (stk_docset_read(o->file, &diags, &text, &len) < 0 ||
        stk_yaml_load(text, len, &docs, &err) < 0) {
        cli_print_diags(&diags);
        if (err)
            fprintf(stderr, "stockade run: %s: %s\n", o->file, err->msg);
        return NULL;
    }
    size_t i;
    json_t *d;
    json_array_foreach(docs, i, d)
    {
        if (!doc && stk_streq(json_string_value(json_object_get(d, "kind")), "Sandbox"))
            doc = d;
    }
    json_t *fdoc = json_loads(ovl, 0, NULL);
    json_t *spec = json_object_get(doc, "spec");
    if (doc && !json_is_object(spec)) {
        spec = json_object();
        json_object_set_new(doc, "spec", spec);
    }
    const char *key;
    json_t *v;
    json_object_foreach(json_object_get(fdoc, "spec"), key, v)
    {
        json_t *cur = json_object_get(spec, key);
        if (!strcmp(key, "env") && json_is_array(cur)) {
            size_t k, m;
            json_t *e, *f;
            json_array_foreach(v, k, e)
            {
                for (m = 0; (f = json_array_get(cur, m)); m++)
                    if (json_equal(json_object_get(f, "name"), json_object_get(e, "name")))
                        break;
                if (m < json_array_size(cur))
                    json_array_set(cur, m, e);
                else
                    json_array_append(cur, e);
            }
        } else if (json_is_object(v) && json_is_object(cur)) {
            json_object_update(cur, v);
        } else {
            json_object_set(spec, key, v);
            if (!strcmp(key, "command"))
                json_object_del(spec, "args");
        }
    }
    char *out = doc ? json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(fdoc);
    json_decref(docs);
    return out;
}

/* -d: create and print the id; -i/-t: create it idle, exec the command
 * (its exit status is run's), remove it. */
static int run_session(const struct run_opts *o, const struct stk_boundary *b, const char *ovl)
{
    _cleanup_diags_ struct stk_diags diags = {0};
    _cleanup_free_ char *spec = session_spec(o, ovl), *env = NULL;
    struct stk_session_docs docs = {.spec_file = o->file ? o->file : "command line",
                                    .spec = spec,
                                    .spec_len = spec ? strlen(spec) : 0,
                                    .env_file = o->env_file};
    if (!spec)
        return EXIT_SETUP;
    if (o->env_file) {
        if (stk_docset_read(o->env_file, &diags, &env, &docs.env_len) < 0) {
            cli_print_diags(&diags);
            return EXIT_SETUP;
        }
        docs.env = env;
    }
    _cleanup_engine_ struct cli_engine *e = cli_engine_open("run");
    const struct cli_engine_ops *ops = cli_engine_ops_of(e);
    struct cli_create_args ca = {.docs = &docs, .idle = !o->detach};
    struct stk_create_res res = {0};
    if (ops->create(e, &ca, &res) != 0)
        return EXIT_SETUP;
    if (res.note[0])
        fprintf(stderr, "stockade run: %s\n", res.note);
    if (o->detach) {
        if (o->out == CLI_OUT_JSON) {
            json_printed = true;
            json_t *j = json_pack("{s:s}", "id", res.id);
            json_dumpf(j, stdout, JSON_COMPACT);
            putchar('\n');
            json_decref(j);
        } else {
            printf("%s\n", res.id);
        }
        return 0;
    }
    if (b->argc == 0) {
        fprintf(stderr, "stockade run: -i and -t need the command after -- (the image's "
                        "entrypoint is run only without them)\n");
        (void)ops->act(e, CLI_ACT_RM, res.id, true);
        return EXIT_SETUP;
    }
    struct cli_exec_args a = {.argv = b->argv,
                              .argc = b->argc,
                              .cwd = b->working_dir,
                              .tty = o->tty,
                              .interactive = o->interactive};
    int code = 0;
    /* a terminal that hangs up ends the command through end of file and
     * EIO, and then the sandbox goes; stockade must live to remove it */
    struct sigaction ign = {.sa_handler = SIG_IGN}, old_hup;
    sigaction(SIGHUP, &ign, &old_hup);
    int r = cli_exec(e, res.id, &a, &code);
    /* like a foreground run: the sandbox goes when its command ends (its
     * record and audit trail stay) */
    int rm = ops->act(e, CLI_ACT_RM, res.id, true);
    sigaction(SIGHUP, &old_hup, NULL);
    if (rm != 0)
        fprintf(stderr, "stockade run: sandbox %s stays: `stockade rm -f %s` removes it\n", res.id,
                res.id);
    return r != 0 ? EXIT_SETUP : code & 0xff;
}

/* ---- the command ---------------------------------------------------------------- */

/* -v HOST:PATH[:ro]: the boundary lets one host directory in, read-write at
 * /workspace (--workspace); anything else is refused with the reason. */
static int parse_volume(const char *arg, struct run_opts *o)
{
    const char *colon = strchr(arg, ':');
    if (!colon || colon == arg)
        return cli_usage_error("run", "-v needs HOST:PATH[:ro], not '%s'", arg);
    const char *path = colon + 1, *opt = strchr(path, ':');
    size_t plen = opt ? (size_t)(opt - path) : strlen(path);
    if (opt && strcmp(opt + 1, "rw") != 0) {
        if (!strcmp(opt + 1, "ro"))
            return cli_usage_error("run",
                                   "-v %s: a read-only host directory is not part of the "
                                   "boundary (the one host directory, /workspace, is "
                                   "read-write); copy what the sandbox should read",
                                   arg);
        return cli_usage_error("run", "-v %s: the only option is ro or rw, not '%s'", arg, opt + 1);
    }
    if (plen != strlen("/workspace") || strncmp(path, "/workspace", plen) != 0)
        return cli_usage_error("run",
                               "-v %s: only /workspace may come from the host (the root "
                               "filesystem is read-only and hostPath volumes are refused, "
                               "spec.volumes); use -v DIR:/workspace",
                               arg);
    if (o->workspace)
        return cli_usage_error("run", "one host directory at most (-v or --workspace)");
    char host[4096];
    if ((size_t)(colon - arg) >= sizeof(host))
        return cli_usage_error("run", "-v: the host path is too long");
    memcpy(host, arg, (size_t)(colon - arg));
    host[colon - arg] = '\0';
    o->workspace = stk_xstrdup(host); /* lives as long as the process */
    return 0;
}

static int run_parse(int argc, char **argv, struct run_opts *o)
{
    enum {
        OPT_ENV = 256,
        OPT_WORKSPACE,
        OPT_STATE_DIR,
        OPT_DRY_RUN,
        OPT_NO_NETWORK,
        OPT_RM,
        OPT_FLAG0
    };
    static const struct option opts[] = {
        {"interactive", no_argument, NULL, 'i'},
        {"tty", no_argument, NULL, 't'},
        {"detach", no_argument, NULL, 'd'},
        {"rm", no_argument, NULL, OPT_RM},
        {"workdir", required_argument, NULL, 'w'},
        {"volume", required_argument, NULL, 'v'},
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
    while ((c = cli_getopt(argc, argv, "+f:o:e:itdw:v:", opts)) != -1) {
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
        case 'i':
            o->interactive = true;
            break;
        case 't':
            o->tty = true;
            break;
        case 'd':
            o->detach = true;
            break;
        case OPT_RM:
            o->rm = true;
            break;
        case 'w':
            o->value[FLAG_WORKDIR] = optarg;
            break;
        case 'v':
            if (parse_volume(optarg, o) != 0)
                return EXIT_USAGE;
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
                /* the binary's name is gVisor's too (messages say runsc) */
                if (c == OPT_FLAG0 + FLAG_RUNTIME && !strcmp(optarg, "runsc"))
                    o->value[FLAG_RUNTIME] = "gvisor";
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
    if (o->detach && (o->interactive || o->tty))
        return cli_usage_error("run", "-d does not combine with -i or -t: run -d, then "
                                      "`stockade exec -it ID -- CMD`");
    if (o->detach && o->rm)
        return cli_usage_error("run", "-d with --rm: a detached sandbox stays until "
                                      "`stockade rm ID` (run in the foreground is always removed)");
    bool session = o->detach || o->interactive || o->tty;
    if (session && o->out == CLI_OUT_JSON && !o->detach)
        return cli_usage_error("run", "-o json captures the output; it does not combine with "
                                      "-i or -t");
    if (session && (o->workspace || o->no_network))
        return cli_usage_error(
            "run",
            "%s works in the foreground only: with -d, -i or -t the sandbox is a "
            "long-lived one, with a /workspace of its own and the network its spec gives",
            o->workspace ? "--workspace (-v DIR:/workspace)" : "--no-network");
    return 0;
}

static int run_main(int argc, char **argv, struct run_opts *op);

int cmd_run(int argc, char **argv)
{
    struct run_opts o = {.out = CLI_OUT_TEXT};
    int r = run_main(argc, argv, &o);
    if (r != 0 && o.out == CLI_OUT_JSON && !json_printed) {
        /* still one document on stdout; stderr says what went wrong */
        json_t *j = json_pack("{s:s,s:i}", "error",
                              "stockade could not run the sandbox (see stderr)", "exitCode", r);
        json_dumpf(j, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
        putchar('\n');
        json_decref(j);
    }
    return r;
}

static int run_main(int argc, char **argv, struct run_opts *op)
{
    int r = run_parse(argc, argv, op);
    if (r != 0)
        return r;
    struct run_opts o = *op;

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

    if (o.dry_run) {
        json_printed = true;
        return dry_run(b, o.out);
    }
    if (b->argc == 0 && !b->image) {
        fprintf(stderr, "stockade run: %s has no spec.command; give one after --\n", o.file);
        return EXIT_SETUP;
    }
    if (o.detach || o.interactive || o.tty)
        return run_session(&o, b, ovl);

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
        return EXIT_SETUP;
    }
    struct stk_run_request req = {
        .b = b,
        .runtime = rt,
        .workspace = o.workspace,
        .net = o.no_network ? NULL : &net,
        .max_sandboxes = stk_local_max_sandboxes(env),
    };
    struct stk_run_result res;
    struct capture cap;
    fflush(stdout);
    if (o.out == CLI_OUT_JSON && capture_start(&cap) < 0)
        return EXIT_SETUP;
    r = stk_local_run(&paths, &req, &res, &err);
    if (o.out == CLI_OUT_JSON)
        capture_finish(&cap);
    if (r < 0) {
        fprintf(stderr, "stockade run: %s\n", err->msg);
        int why = strstr(err->msg, " run failed") ? not_runnable(b) : 0;
        if (why)
            fprintf(stderr, "stockade run: %s: %s\n", b->argv[0],
                    why == 127 ? "command not found" : "not executable");
        if (o.out == CLI_OUT_JSON) {
            json_printed = true;
            /* still one document on stdout: what went wrong, and the output */
            json_t *j =
                json_pack("{s:s,s:i}", "error", err->msg, "exitCode", why ? why : EXIT_SETUP);
            capture_put(&cap, j);
            json_dumpf(j, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
            putchar('\n');
            json_decref(j);
        }
        return why ? why : EXIT_SETUP;
    }
    if (o.out == CLI_OUT_JSON) {
        json_printed = true;
        json_t *j = result_json(&res);
        capture_put(&cap, j);
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
    return EXIT_SETUP; /* 1 is the workload's */
}
