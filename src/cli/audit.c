/* SPDX-License-Identifier: Apache-2.0 */
/* stockade audit: a sandbox's records, verification of the whole trail, and
 * JSON Lines export. Reads only: it never creates a state database. */
#include "cli.h"
#include "session/session.h"
#include "driver/driver.h"
#include "session/audit.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <string.h>
#include <time.h>

enum audit_verb { VERB_SHOW, VERB_VERIFY, VERB_EXPORT };

struct audit_opts {
    enum audit_verb verb;
    const char *state_dir;
    const char *sandbox; /* ID for show and verify, --sandbox for export */
    enum cli_output out;
};

static int audit_error(const char *fmt, ...) STK_PRINTF(1, 2);
static int audit_error(const char *fmt, ...)
{
    va_list ap;
    fputs("stockade audit: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return EXIT_INVALID;
}

static void format_time(int64_t ms, char buf[32])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || !strftime(buf, 32, "%Y-%m-%dT%H:%M:%S", &tm)) {
        snprintf(buf, 32, "%" PRId64, ms);
        return;
    }
    size_t n = strlen(buf);
    snprintf(buf + n, 32 - n, ".%03dZ", (int)(ms % 1000));
}

/* A record as `audit export` and the server write it: details as the
 * hashed string. */
static int add_record(const struct stk_audit_rec *a, void *userdata)
{
    json_t *o = json_pack("{s:I, s:I, s:s, s:I, s:s, s:s, s:s, s:s, s:s, s:s}", "seq",
                          (json_int_t)a->seq, "time_ms", (json_int_t)a->time_ms, "sandbox_id",
                          a->sandbox_id, "sandbox_seq", (json_int_t)a->sandbox_seq, "event",
                          a->event, "actor", a->actor, "details", a->details, "prev_hash",
                          a->prev_hash, "sandbox_prev_hash", a->sandbox_prev_hash, "hash", a->hash);
    if (o)
        json_array_append_new(userdata, o);
    return 0;
}

/* `audit ID` from the records (stolen), local or from the server: text
 * lines, or JSON with details as an object (the display form). */
static int audit_print(json_t *records, enum cli_output out)
{
    size_t i;
    json_t *r;
    json_array_foreach(records, i, r)
    {
        const char *details = json_string_value(json_object_get(r, "details"));
        if (out == CLI_OUT_JSON) {
            json_t *d = details ? json_loads(details, 0, NULL) : NULL;
            if (d)
                json_object_set_new(r, "details", d);
            continue;
        }
        char when[32];
        format_time((int64_t)json_integer_value(json_object_get(r, "time_ms")), when);
        char seq[24];
        snprintf(seq, sizeof(seq), "#%" PRId64,
                 (int64_t)json_integer_value(json_object_get(r, "seq")));
        const char *event = json_string_value(json_object_get(r, "event"));
        const char *actor = json_string_value(json_object_get(r, "actor"));
        printf("%s  %-6s  %-10s  %s  %s\n", when, seq, event ? event : "", actor ? actor : "",
               details ? details : "");
    }
    if (out == CLI_OUT_JSON)
        cli_print_json(records);
    else
        json_decref(records);
    return 0;
}

static int audit_remote(const struct audit_opts *o)
{
    if (o->verb != VERB_SHOW)
        return audit_error("%s works on this host only, not with --server (the server's trail: "
                           "run it there)",
                           o->verb == VERB_VERIFY ? "verify" : "export");
    _cleanup_free_ char *eid = CLI_REMOTE_FN("audit", cli_remote_escape)(o->sandbox);
    json_t *records = json_array();
    /* the server answers in pages; "next" is the seq to continue after */
    for (json_int_t after = 0;;) {
        _cleanup_free_ char *path =
            stk_xasprintf("/v1/sandboxes/%s/audit?after=%lld&limit=1000", eid, (long long)after);
        json_t *ans = NULL;
        int r = CLI_REMOTE_FN("audit", cli_remote_call)("audit", "GET", path, NULL, -1, &ans);
        if (r != 0) {
            json_decref(records);
            return r;
        }
        json_array_extend(records, json_object_get(ans, "records"));
        json_t *next = json_object_get(ans, "next");
        bool more = json_is_integer(next) && json_integer_value(next) > after;
        after = more ? json_integer_value(next) : after;
        json_decref(ans);
        if (!more)
            break;
    }
    return audit_print(records, o->out);
}

/* ID is a sandbox id with records, else a sandbox id or name in the store. */
static int resolve_sandbox(struct stk_store *st, const char *arg, char ret[64])
{
    _cleanup_error_ struct stk_error *err = NULL;
    int64_t n = 0;
    if (strlen(arg) < 64 && stk_audit_count(st, arg, &n, &err) >= 0 && n > 0) {
        memcpy(ret, arg, strlen(arg) + 1);
        return 0;
    }
    struct stk_sb_rec r;
    if (stk_store_sb_get(st, arg, &r, &err) < 0)
        return audit_error("%s", err ? err->msg : "no such sandbox");
    memcpy(ret, r.id, sizeof(r.id));
    stk_sb_rec_free(&r);
    return 0;
}

static int audit_show(struct stk_store *st, const struct audit_opts *o)
{
    char id[64];
    int status = resolve_sandbox(st, o->sandbox, id);
    if (status)
        return status;
    _cleanup_error_ struct stk_error *err = NULL;
    json_t *arr = json_array();
    if (stk_audit_list(st, id, add_record, arr, &err) < 0) {
        json_decref(arr);
        return audit_error("%s", err->msg);
    }
    return audit_print(arr, o->out);
}

static int audit_verify(struct stk_store *st, const struct audit_opts *o)
{
    char id[64];
    if (o->sandbox) {
        int status = resolve_sandbox(st, o->sandbox, id);
        if (status)
            return status;
    }
    struct stk_audit_verify_result v;
    _cleanup_error_ struct stk_error *err = NULL;
    if (stk_audit_verify(st, o->sandbox ? id : NULL, &v, &err) < 0)
        return audit_error("%s", err->msg);
    if (v.warning[0])
        fprintf(stderr, "stockade audit: warning: %s\n", v.warning);
    _cleanup_free_ char *scope = o->sandbox ? stk_xasprintf("audit trail of sandbox %s", o->sandbox)
                                            : stk_xstrdup("audit trail");
    if (!v.ok) {
        printf("%s broken: %s\n", scope, v.problem);
        return EXIT_INVALID;
    }
    if (v.records == 0)
        printf("%s intact: 0 records\n", scope);
    else
        printf("%s intact: %" PRId64 " record%s, head %s\n", scope, v.records,
               v.records == 1 ? "" : "s", v.head);
    return 0;
}

/* No database: nothing was recorded with this state directory, unless a
 * head anchor says otherwise. */
static int audit_no_database(const struct audit_opts *o, const char *state_dir)
{
    _cleanup_free_ char *head = stk_xasprintf("%s/%s", state_dir, STK_AUDIT_HEAD_FILE);
    _cleanup_free_ char *db = stk_xasprintf("%s/%s", state_dir, STK_STORE_DB_FILE);
    if (access(head, F_OK) == 0) {
        if (o->verb == VERB_VERIFY) {
            printf("audit trail broken: the database %s is gone but %s remains\n", db, head);
            return EXIT_INVALID;
        }
        return audit_error("the database %s is gone but %s remains", db, head);
    }
    switch (o->verb) {
    case VERB_VERIFY:
        printf("no audit trail: %s does not exist (nothing was recorded here yet)\n", db);
        return 0;
    case VERB_EXPORT:
        fprintf(stderr, "stockade audit: no audit trail: %s does not exist\n", db);
        return 0;
    case VERB_SHOW:
        break;
    }
    return audit_error("no sandbox '%s': %s does not exist", o->sandbox, db);
}

static int audit_parse(int argc, char **argv, struct audit_opts *o)
{
    enum { OPT_STATE_DIR = 256, OPT_SANDBOX };
    static const struct option opts[] = {
        {"state-dir", required_argument, NULL, OPT_STATE_DIR},
        {"sandbox", required_argument, NULL, OPT_SANDBOX},
        {"output", required_argument, NULL, 'o'},
        {NULL, 0, NULL, 0},
    };
    const char *sandbox_opt = NULL, *output = NULL;
    int c;
    while ((c = cli_getopt(argc, argv, "o:", opts)) != -1) {
        switch (c) {
        case OPT_STATE_DIR:
            o->state_dir = optarg;
            break;
        case OPT_SANDBOX:
            sandbox_opt = optarg;
            break;
        case 'o':
            output = optarg;
            break;
        default:
            return cli_usage("audit", stderr, EXIT_USAGE);
        }
    }
    int npos = argc - optind;
    char **pos = argv + optind;
    if (npos == 0)
        return cli_usage_error("audit", "needs a sandbox ID, 'verify' or 'export'");
    if (!strcmp(pos[0], "verify")) {
        o->verb = VERB_VERIFY;
        if (npos > 2)
            return cli_usage_error("audit", "verify takes at most one sandbox ID");
        o->sandbox = npos == 2 ? pos[1] : NULL;
    } else if (!strcmp(pos[0], "export")) {
        o->verb = VERB_EXPORT;
        if (npos > 1)
            return cli_usage_error("audit", "export takes no arguments (use --sandbox ID)");
        o->sandbox = sandbox_opt;
    } else {
        o->verb = VERB_SHOW;
        if (npos > 1)
            return cli_usage_error("audit", "takes one sandbox ID, not %d arguments", npos);
        o->sandbox = pos[0];
    }
    if (sandbox_opt && o->verb != VERB_EXPORT)
        return cli_usage_error("audit", "--sandbox is for 'audit export'");
    if (output && o->verb != VERB_SHOW)
        return cli_usage_error("audit", "--output is for 'audit ID'");
    if (output)
        return cli_parse_output("audit", output, &o->out);
    return 0;
}

/* The trail of a state directory is read with the backend that owns it;
 * for sim, opening its session first applies the modelled ends that have
 * come, so their records are in the trail being read. */
static int audit_backend(const char *state_dir, const struct stk_local_paths *paths)
{
    enum stk_backend be;
    _cleanup_error_ struct stk_error *err = NULL;
    int status = cli_session_backend("audit", &be);
    if (status != 0)
        return status;
    if (stk_session_backend_check(paths->state_dir, be, &err) < 0)
        return audit_error("%s", err->msg);
    if (be == STK_BACKEND_LOCAL)
        return 0; /* its monitors record as things happen */
    struct stk_session *s = NULL;
    if ((status = cli_session_open("audit", state_dir, &s)) != 0)
        return status;
    stk_session_close(s);
    return 0;
}

int cmd_audit(int argc, char **argv)
{
    struct audit_opts o = {.out = CLI_OUT_TEXT};
    int status = audit_parse(argc, argv, &o);
    if (status)
        return status;
    if (cli_remote_active())
        return audit_remote(&o);
    struct stk_local_paths paths;
    /* the backend's own default state directory (a bad name is reported
     * by audit_backend below) */
    const char *be_name = getenv("STOCKADE_BACKEND");
    int be = be_name && *be_name ? stk_enum_lookup(stk_backend_names, _STK_BACKEND_N, be_name)
                                 : STK_BACKEND_LOCAL;
    cli_backend_paths(o.state_dir, be < 0 ? STK_BACKEND_LOCAL : (enum stk_backend)be, &paths);
    _cleanup_store_ struct stk_store *st = NULL;
    _cleanup_error_ struct stk_error *err = NULL;
    int r = stk_store_open_existing(paths.state_dir, &st, &err);
    if (r == -ENOENT)
        return audit_no_database(&o, paths.state_dir);
    if (r < 0)
        return audit_error("%s", err->msg);
    if ((status = audit_backend(o.state_dir, &paths)) != 0)
        return status;
    switch (o.verb) {
    case VERB_VERIFY:
        return audit_verify(st, &o);
    case VERB_EXPORT:
        if (stk_audit_export(st, o.sandbox, stdout, &err) < 0)
            return audit_error("%s", err->msg);
        return fflush(stdout) == 0 ? 0 : audit_error("writing the export: %s", strerror(errno));
    case VERB_SHOW:
        break;
    }
    return audit_show(st, &o);
}
