/* SPDX-License-Identifier: Apache-2.0 */
/* The store (SQLite) and the audit trail: schema, sandboxes, the transition
 * table, compare-and-set, limits, concurrent pool claims, and tampering with
 * the trail behind the store's back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <signal.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "session/audit.h"
#include "session/store.h"

#define ACTOR "uid=0(root) pid=1"

struct fixture {
    char dir[64];   /* the temporary parent */
    char state[96]; /* <dir>/state: created by the store */
    struct stk_store *st;
};

static void rm_tree(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            _cleanup_free_ char *p = stk_xasprintf("%s/%s", path, e->d_name);
            rm_tree(p);
        }
        closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static int setup(void **state)
{
    struct fixture *f = stk_xcalloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/stk-store-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->state, sizeof(f->state), "%s/state", f->dir);
    _cleanup_error_ struct stk_error *err = NULL;
    if (stk_store_open(f->state, &f->st, &err) < 0) {
        fprintf(stderr, "open: %s\n", err->msg);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    stk_store_close(f->st);
    rm_tree(f->dir);
    free(f);
    return 0;
}

static struct stk_sb_rec sb(const char *id, const char *name, enum stk_sb_phase phase)
{
    struct stk_sb_rec r = {.phase = phase, .exit_code = -1};
    snprintf(r.id, sizeof(r.id), "%s", id);
    snprintf(r.name, sizeof(r.name), "%s", name);
    snprintf(r.owner, sizeof(r.owner), "alice");
    snprintf(r.runtime, sizeof(r.runtime), "crun");
    return r;
}

static void insert(struct stk_store *st, struct stk_sb_rec r)
{
    _cleanup_error_ struct stk_error *err = NULL;
    int ret = stk_store_sb_insert(st, &r, &err);
    if (ret < 0)
        fail_msg("insert %s: %s", r.id, err->msg);
}

static enum stk_sb_phase phase_of(struct stk_store *st, const char *id)
{
    struct stk_sb_rec r;
    assert_int_equal(stk_store_sb_get(st, id, &r, NULL), 0);
    stk_sb_rec_free(&r);
    return r.phase;
}

static int64_t audit_count(struct stk_store *st, const char *sandbox_id)
{
    int64_t n = -1;
    assert_int_equal(stk_audit_count(st, sandbox_id, &n, NULL), 0);
    return n;
}

/* A second connection that edits the database as an attacker would. */
static void sql(const struct fixture *f, const char *stmt)
{
    _cleanup_free_ char *path = stk_xasprintf("%s/%s", f->state, STK_STORE_DB_FILE);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *msg = NULL;
    if (sqlite3_exec(db, stmt, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", stmt, msg);
    sqlite3_close(db);
}

/* ---- schema ------------------------------------------------------------------ */

static void test_open_creates_private_files_and_is_idempotent(void **state)
{
    struct fixture *f = *state;
    struct stat stt;
    assert_int_equal(stat(f->state, &stt), 0);
    assert_int_equal(stt.st_mode & 07777, 0700);
    _cleanup_free_ char *db = stk_xasprintf("%s/%s", f->state, STK_STORE_DB_FILE);
    assert_int_equal(stat(db, &stt), 0);
    assert_int_equal(stt.st_mode & 07777, 0600);

    insert(f->st, sb("a-1", "one", STK_SB_PENDING));
    /* Reopening migrates nothing and keeps the data; so does a second
     * connection opened while the first is open. */
    _cleanup_store_ struct stk_store *again = NULL;
    _cleanup_error_ struct stk_error *err = NULL;
    assert_int_equal(stk_store_open(f->state, &again, &err), 0);
    assert_int_equal(phase_of(again, "a-1"), STK_SB_PENDING);
    stk_store_close(f->st);
    f->st = NULL;
    assert_int_equal(stk_store_open_existing(f->state, &f->st, &err), 0);
    assert_int_equal(phase_of(f->st, "one"), STK_SB_PENDING);

    sqlite3 *raw = NULL;
    assert_int_equal(sqlite3_open(db, &raw), SQLITE_OK);
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_prepare_v2(raw, "PRAGMA user_version", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(s, 0), STK_STORE_SCHEMA);
    sqlite3_finalize(s);
    assert_int_equal(sqlite3_prepare_v2(raw, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
    sqlite3_finalize(s);
    sqlite3_close(raw);
}

static void test_open_existing_and_newer_schema(void **state)
{
    struct fixture *f = *state;
    _cleanup_error_ struct stk_error *err = NULL;
    struct stk_store *st = NULL;
    _cleanup_free_ char *missing = stk_xasprintf("%s/nothing", f->dir);
    assert_int_equal(stk_store_open_existing(missing, &st, &err), -ENOENT);
    assert_null(st);
    assert_int_equal(access(missing, F_OK), -1); /* created nothing */

    sql(f, "PRAGMA user_version = 99");
    stk_error_free(err);
    err = NULL;
    assert_int_equal(stk_store_open(f->state, &st, &err), -EPROTO);
    assert_non_null(strstr(err->msg, "schema version 99"));
}

/* A state directory from before the handle column (schema 1) is migrated
 * when opened: its sandboxes stay, and they get handles from then on. */
static void test_migrates_schema_1_handle(void **state)
{
    struct fixture *f = *state;
    insert(f->st, sb("old-1", "old", STK_SB_READY));
    stk_store_close(f->st);
    f->st = NULL;
    /* everything after schema 1 undone: the handle (2), pools' owners,
     * the namespaces and the name index (3) */
    sql(f, "ALTER TABLE sandboxes DROP COLUMN handle; DROP INDEX sandboxes_tenant_name;"
           "DROP TABLE sandbox_namespaces;"
           "DROP TABLE namespaces; DROP TABLE pools;"
           "CREATE TABLE pools (name TEXT PRIMARY KEY, size INTEGER NOT NULL,"
           " template_spec TEXT, env TEXT, fingerprint TEXT NOT NULL, created_ms INTEGER NOT NULL);"
           "PRAGMA user_version = 1");
    _cleanup_error_ struct stk_error *err = NULL;
    assert_int_equal(stk_store_open(f->state, &f->st, &err), 0);
    struct stk_sb_rec r = {0};
    assert_int_equal(stk_store_sb_get(f->st, "old-1", &r, &err), 0);
    assert_null(r.handle);
    stk_sb_rec_free(&r);
    assert_int_equal(stk_store_sb_set_handle(f->st, "old-1", "{\"initPid\":7}", &err), 0);
    assert_int_equal(stk_store_sb_get(f->st, "old-1", &r, &err), 0);
    assert_string_equal(r.handle, "{\"initPid\":7}");
    stk_sb_rec_free(&r);
    assert_int_equal(stk_store_sb_set_handle(f->st, "nobody", "{}", &err), -ENOENT);
}

/* ---- sandboxes ------------------------------------------------------------------ */

static void test_sandbox_insert_get_list(void **state)
{
    struct fixture *f = *state;
    struct stk_sb_rec r = sb("web-1", "web", STK_SB_PENDING);
    r.spec = stk_xstrdup("kind: Sandbox\n");
    r.labels = stk_xstrdup("{\"team\":\"x\"}");
    insert(f->st, r);
    _cleanup_error_ struct stk_error *err = NULL;
    assert_int_equal(stk_store_sb_insert(f->st, &r, &err), -EEXIST);
    assert_string_equal(err->msg, "a sandbox with id 'web-1' already exists");
    stk_sb_rec_free(&r);

    struct stk_sb_rec got;
    assert_int_equal(stk_store_sb_get(f->st, "web", &got, NULL), 0);
    assert_string_equal(got.id, "web-1");
    assert_string_equal(got.spec, "kind: Sandbox\n");
    assert_string_equal(got.labels, "{\"team\":\"x\"}");
    assert_null(got.env);
    assert_int_equal(got.exit_code, -1);
    assert_true(got.created_ms > 0 && got.updated_ms >= got.created_ms);

    /* update: non-phase fields */
    got.monitor_pid = 4242;
    got.monitor_start = 987654321;
    got.exit_code = 3;
    free(got.result);
    got.result = stk_xstrdup("{\"ok\":true}");
    assert_int_equal(stk_store_sb_update(f->st, &got, NULL), 0);
    stk_sb_rec_free(&got);
    assert_int_equal(stk_store_sb_get(f->st, "web-1", &got, NULL), 0);
    assert_int_equal(got.monitor_pid, 4242);
    assert_int_equal(got.monitor_start, 987654321);
    assert_int_equal(got.exit_code, 3);
    assert_string_equal(got.result, "{\"ok\":true}");
    stk_sb_rec_free(&got);

    /* a second "web": by name it is now ambiguous; by id each is found */
    insert(f->st, sb("web-2", "web", STK_SB_PENDING));
    stk_error_free(err);
    err = NULL;
    assert_int_equal(stk_store_sb_get(f->st, "web", &got, &err), -EINVAL);
    assert_non_null(strstr(err->msg, "ambiguous"));
    assert_int_equal(stk_store_sb_get(f->st, "web-2", &got, NULL), 0);
    stk_sb_rec_free(&got);
    /* a deleted one no longer answers to its name */
    assert_int_equal(stk_store_sb_set_phase(f->st, "web-1", -1, STK_SB_DELETING, NULL, NULL, ACTOR,
                                            NULL, NULL, NULL),
                     0);
    assert_int_equal(stk_store_sb_set_phase(f->st, "web-1", STK_SB_DELETING, STK_SB_DELETED, NULL,
                                            NULL, ACTOR, "deleted", NULL, NULL),
                     0);
    assert_int_equal(stk_store_sb_get(f->st, "web", &got, NULL), 0);
    assert_string_equal(got.id, "web-2");
    stk_sb_rec_free(&got);

    stk_error_free(err);
    err = NULL;
    assert_int_equal(stk_store_sb_get(f->st, "nope", &got, &err), -ENOENT);
    assert_string_equal(err->msg, "no sandbox 'nope'");

    struct stk_sb_rec *all = NULL;
    size_t n = 0;
    assert_int_equal(stk_store_sb_list(f->st, false, &all, &n, NULL), 0);
    assert_int_equal(n, 1);
    stk_sb_recs_free(all, n);
    assert_int_equal(stk_store_sb_list(f->st, true, &all, &n, NULL), 0);
    assert_int_equal(n, 2);
    assert_string_equal(all[0].id, "web-1");
    assert_int_equal(all[0].phase, STK_SB_DELETED);
    stk_sb_recs_free(all, n);

    struct stk_sb_rec ghost = sb("ghost", "g", STK_SB_PENDING);
    assert_int_equal(stk_store_sb_update(f->st, &ghost, NULL), -ENOENT);
}

/* ---- the brief list: what ls reads ------------------------------------------------ */

/* Bytes this process has read through read()/pread() (SQLite's page reads). */
static long long rchar(void)
{
    FILE *io = fopen("/proc/self/io", "re");
    long long v = -1;
    char line[128];
    while (io && fgets(line, sizeof(line), io))
        if (sscanf(line, "rchar: %lld", &v) == 1)
            break;
    if (io)
        fclose(io);
    return v;
}

static void test_list_brief_reads_no_documents(void **state)
{
    struct fixture *f = *state;
    enum { N = 24, DOC = 256 * 1024 };
    char *doc = stk_xcalloc(1, DOC + 1);
    memset(doc, 'x', DOC);
    memcpy(doc, "{\"a\":\"", 6);
    memcpy(doc + DOC - 2, "\"}", 2);
    char labels[] = "{\"team\":\"a\"}", handle[] = "{\"runtime\":\"crun\"}";
    for (int i = 0; i < N; i++) {
        char id[32];
        snprintf(id, sizeof(id), "sb-%02d", i);
        struct stk_sb_rec r = sb(id, id, STK_SB_READY);
        r.spec = r.env = doc;
        r.labels = labels;
        r.handle = handle;
        insert(f->st, r);
    }
    /* a cold cache: every page either list needs is read from the files */
    stk_store_close(f->st);
    assert_int_equal(stk_store_open(f->state, &f->st, NULL), 0);

    struct stk_sb_rec *all = NULL;
    size_t n = 0;
    long long before = rchar();
    assert_int_equal(stk_store_sb_list_brief(f->st, false, &all, &n, NULL), 0);
    long long brief = rchar() - before;
    assert_int_equal(n, N);
    for (size_t i = 0; i < n; i++) {
        assert_null(all[i].spec);
        assert_null(all[i].env);
        assert_null(all[i].labels);
        assert_null(all[i].handle);
        assert_int_equal(all[i].phase, STK_SB_READY);
    }
    assert_string_equal(all[3].id, "sb-03");
    stk_sb_recs_free(all, n);

    stk_store_close(f->st);
    assert_int_equal(stk_store_open(f->state, &f->st, NULL), 0);
    before = rchar();
    assert_int_equal(stk_store_sb_list(f->st, false, &all, &n, NULL), 0);
    long long full = rchar() - before;
    assert_int_equal(n, N);
    assert_non_null(all[0].spec);
    assert_string_equal(all[0].handle, "{\"runtime\":\"crun\"}");
    stk_sb_recs_free(all, n);
    free(doc);
    /* the full list reads the documents (2 x 256 KiB a record); the brief
     * one a few pages per record at most */
    assert_true(full >= (long long)N * DOC);
    assert_true(brief < (long long)N * DOC / 16);
}

/* ---- the transition table: every cell, in the table and through the store ---- */

/* Rows: from; columns: to, in enum order (pe pr re sg sd st su fa ki dg dd). */
static const char *const expected_table[_STK_SB_N] = {
    [STK_SB_PENDING] = /*      */ ".x.....x.x.", [STK_SB_PROVISIONING] = /* */ "..x...xxxx.",
    [STK_SB_READY] = /*        */ "...x..xxxx.", [STK_SB_STOPPING] = /*     */ "....x.xxxx.",
    [STK_SB_STOPPED] = /*      */ ".....x...x.", [STK_SB_STARTING] = /*     */ "..x...xxxx.",
    [STK_SB_SUCCEEDED] = /*    */ ".........x.", [STK_SB_FAILED] = /*       */ ".........x.",
    [STK_SB_KILLED] = /*       */ ".........x.", [STK_SB_DELETING] = /*     */ "..........x",
    [STK_SB_DELETED] = /*      */ "...........",
};

static void test_transition_table_every_cell(void **state)
{
    struct fixture *f = *state;
    for (int from = 0; from < _STK_SB_N; from++) {
        for (int to = 0; to < _STK_SB_N; to++) {
            bool want = expected_table[from][to] == 'x';
            if (stk_sb_transition_ok(from, to) != want)
                fail_msg("%s -> %s: table says %d", stk_sb_phase_names[from],
                         stk_sb_phase_names[to], !want);
            char id[64];
            snprintf(id, sizeof(id), "t-%d-%d", from, to);
            insert(f->st, sb(id, id, from));
            _cleanup_error_ struct stk_error *err = NULL;
            int r =
                stk_store_sb_set_phase(f->st, id, from, to, NULL, NULL, ACTOR, "phase", NULL, &err);
            if (r != (want ? 0 : -EINVAL))
                fail_msg("store %s -> %s: %d (%s)", stk_sb_phase_names[from],
                         stk_sb_phase_names[to], r, err ? err->msg : "");
            assert_int_equal(phase_of(f->st, id), want ? to : from);
            assert_int_equal(audit_count(f->st, id), want ? 1 : 0);
        }
    }
    assert_false(stk_sb_transition_ok(_STK_SB_N, STK_SB_READY));
    assert_false(stk_sb_transition_ok(STK_SB_READY, (enum stk_sb_phase) - 1));
    for (int p = 0; p < _STK_SB_N; p++) {
        bool term = p == STK_SB_SUCCEEDED || p == STK_SB_FAILED || p == STK_SB_KILLED ||
                    p == STK_SB_DELETED;
        assert_int_equal(stk_sb_phase_terminal(p), term);
        assert_int_equal(stk_enum_lookup(stk_sb_phase_names, _STK_SB_N, stk_sb_phase_names[p]), p);
    }
}

static void test_set_phase_compare_and_set(void **state)
{
    struct fixture *f = *state;
    insert(f->st, sb("cas", "cas", STK_SB_READY));
    _cleanup_error_ struct stk_error *err = NULL;
    assert_int_equal(stk_store_sb_set_phase(f->st, "cas", STK_SB_PROVISIONING, STK_SB_STOPPING,
                                            NULL, NULL, ACTOR, "stopping", NULL, &err),
                     -ESTALE);
    assert_string_equal(err->msg, "sandbox cas is ready, not provisioning");
    assert_int_equal(phase_of(f->st, "cas"), STK_SB_READY);
    assert_int_equal(audit_count(f->st, "cas"), 0);

    assert_int_equal(stk_store_sb_set_phase(f->st, "cas", STK_SB_READY, STK_SB_KILLED,
                                            "memory_exceeded", "used 512Mi", ACTOR, "killed",
                                            "{\"peak\":536870912}", NULL),
                     0);
    struct stk_sb_rec r;
    assert_int_equal(stk_store_sb_get(f->st, "cas", &r, NULL), 0);
    assert_string_equal(r.reason, "memory_exceeded");
    assert_string_equal(r.message, "used 512Mi");
    stk_sb_rec_free(&r);
    /* NULL keeps, "" clears */
    assert_int_equal(stk_store_sb_set_phase(f->st, "cas", -1, STK_SB_DELETING, NULL, "", ACTOR,
                                            NULL, NULL, NULL),
                     0);
    assert_int_equal(stk_store_sb_get(f->st, "cas", &r, NULL), 0);
    assert_string_equal(r.reason, "memory_exceeded");
    assert_string_equal(r.message, "");
    stk_sb_rec_free(&r);

    stk_error_free(err);
    err = NULL;
    assert_int_equal(stk_store_sb_set_phase(f->st, "none", -1, STK_SB_DELETING, NULL, NULL, ACTOR,
                                            NULL, NULL, &err),
                     -ENOENT);
}

static int first_details(const struct stk_audit_rec *a, void *ud)
{
    snprintf(ud, 256, "%s %s", a->event, a->details);
    return -ECANCELED; /* stops the walk */
}

static void test_phase_change_and_audit_are_atomic(void **state)
{
    struct fixture *f = *state;
    insert(f->st, sb("atom", "atom", STK_SB_READY));
    _cleanup_error_ struct stk_error *err = NULL;
    /* the record is refused after the phase UPDATE ran: both roll back */
    assert_int_equal(stk_store_sb_set_phase(f->st, "atom", STK_SB_READY, STK_SB_STOPPING, NULL,
                                            NULL, ACTOR, "Not An Event", NULL, &err),
                     -EINVAL);
    assert_non_null(strstr(err->msg, "may hold only a-z"));
    assert_int_equal(phase_of(f->st, "atom"), STK_SB_READY);
    stk_error_free(err);
    err = NULL;
    assert_int_equal(stk_store_sb_set_phase(f->st, "atom", STK_SB_READY, STK_SB_STOPPING, NULL,
                                            NULL, ACTOR, "stopping", "[1,2]", &err),
                     -EINVAL);
    assert_int_equal(phase_of(f->st, "atom"), STK_SB_READY);
    stk_error_free(err);
    err = NULL;
    assert_int_equal(stk_store_sb_set_phase(f->st, "atom", STK_SB_READY, STK_SB_STOPPING, NULL,
                                            NULL, "", "stopping", NULL, &err),
                     -EINVAL);
    assert_int_equal(phase_of(f->st, "atom"), STK_SB_READY);
    assert_int_equal(audit_count(f->st, NULL), 0);

    assert_int_equal(stk_store_sb_set_phase(f->st, "atom", STK_SB_READY, STK_SB_FAILED,
                                            "oom_at_start", NULL, ACTOR, "exited", "{\"code\":1}",
                                            NULL),
                     0);
    char seen[256] = "";
    assert_int_equal(stk_audit_list(f->st, "atom", first_details, seen, NULL), -ECANCELED);
    assert_string_equal(seen, "exited {\"code\":1,\"from\":\"ready\",\"reason\":\"oom_at_start\","
                              "\"to\":\"failed\"}");
}

/* ---- limits ------------------------------------------------------------------------- */

static void expect_insert_error(struct stk_store *st, const struct stk_sb_rec *r, const char *msg)
{
    _cleanup_error_ struct stk_error *err = NULL;
    assert_int_equal(stk_store_sb_insert(st, r, &err), -EINVAL);
    assert_string_equal(err->msg, msg);
}

static void test_string_limits(void **state)
{
    struct fixture *f = *state;
    struct stk_sb_rec r = sb("lim", "lim", STK_SB_PENDING);
    memset(r.name, 'n', sizeof(r.name)); /* no room for the NUL: 64 bytes */
    expect_insert_error(f->st, &r,
                        "sandbox field 'name' is too long: at most 63 bytes (not NUL-terminated "
                        "within 64)");
    r = sb("lim", "lim", STK_SB_PENDING);
    memset(r.owner, 'o', sizeof(r.owner));
    expect_insert_error(f->st, &r,
                        "sandbox field 'owner' is too long: at most 127 bytes (not "
                        "NUL-terminated within 128)");
    r = sb("lim", "lim", STK_SB_PENDING);
    memset(r.message, 'm', sizeof(r.message));
    expect_insert_error(f->st, &r,
                        "sandbox field 'message' is too long: at most 511 bytes (not "
                        "NUL-terminated within 512)");
    r = sb("lim", "lim", STK_SB_PENDING);
    snprintf(r.runtime, sizeof(r.runtime), "kata");
    expect_insert_error(f->st, &r,
                        "sandbox field 'runtime' is 'kata', not one of crun|runc|runsc|sim|pod "
                        "(or empty)");
    r = sb("../etc", "lim", STK_SB_PENDING);
    expect_insert_error(f->st, &r,
                        "sandbox field 'id' ('../etc') may hold only letters, digits, '-', '_' "
                        "and '.', and may not start with '.'");
    r = sb("", "lim", STK_SB_PENDING);
    expect_insert_error(f->st, &r, "sandbox field 'id' is empty");

    r = sb("lim", "lim", STK_SB_PENDING);
    r.labels = (char *)(uintptr_t) "[\"not\", \"an object\"]";
    expect_insert_error(f->st, &r, "sandbox field 'labels' must be a JSON object");
    _cleanup_free_ char *big = stk_xmalloc(STK_STORE_MAX_DOC + 2);
    memset(big, 'x', STK_STORE_MAX_DOC + 1);
    big[STK_STORE_MAX_DOC + 1] = '\0';
    r = sb("lim", "lim", STK_SB_PENDING);
    r.spec = big;
    expect_insert_error(f->st, &r, "sandbox field 'spec' is 1048577 bytes, the limit is 1048576");
    big[STK_STORE_MAX_DOC] = '\0'; /* exactly at the limit: accepted */
    assert_int_equal(stk_store_sb_insert(f->st, &r, NULL), 0);

    _cleanup_error_ struct stk_error *err = NULL;
    _cleanup_free_ char *reason = stk_xmalloc(65);
    memset(reason, 'r', 64);
    reason[64] = '\0';
    assert_int_equal(stk_store_sb_set_phase(f->st, "lim", -1, STK_SB_FAILED, reason, NULL, ACTOR,
                                            NULL, NULL, &err),
                     -EINVAL);
    assert_string_equal(err->msg, "sandbox field 'reason' is too long: at most 63 bytes");

    /* audit: details bounded and an object; event and actor checked */
    _cleanup_free_ char *details = stk_xmalloc(STK_AUDIT_MAX_DETAILS + 16);
    snprintf(details, STK_AUDIT_MAX_DETAILS + 16, "{\"argv\":\"%0*d\"}", STK_AUDIT_MAX_DETAILS, 0);
    stk_error_free(err);
    err = NULL;
    assert_int_equal(stk_audit_append(f->st, "lim", "exec", ACTOR, details, &err), -EINVAL);
    assert_string_equal(err->msg, "audit details are 16395 bytes, the limit is 16384");
    stk_error_free(err);
    err = NULL;
    assert_int_equal(stk_audit_append(f->st, "lim", "exec", ACTOR, "{\"a\":1,\"a\":2}", &err),
                     -EINVAL);
    assert_non_null(strstr(err->msg, "duplicate"));
    stk_error_free(err);
    err = NULL;
    assert_int_equal(stk_audit_append(f->st, "lim", "exec", "line\nbreak", NULL, &err), -EINVAL);
    assert_string_equal(err->msg, "audit actor contains a control character");
    stk_error_free(err);
    err = NULL;
    assert_int_equal(
        stk_audit_append(f->st, "lim", "an_event_name_that_is_far_too_long", ACTOR, NULL, &err),
        -EINVAL);
    assert_string_equal(err->msg,
                        "audit event 'an_event_name_that_is_far_too_long' must be 1 to 31 "
                        "characters");
    assert_int_equal(audit_count(f->st, NULL), 0);

    struct stk_pool_rec p = {.size = STK_STORE_MAX_POOL + 1};
    snprintf(p.name, sizeof(p.name), "py");
    stk_error_free(err);
    err = NULL;
    assert_int_equal(stk_store_pool_insert(f->st, &p, &err), -EINVAL);
    assert_string_equal(err->msg, "pool field 'size' is 1001, not within 0..1000");
}

/* ---- pools -------------------------------------------------------------------------- */

#define POOL_N     12
#define CLAIMERS   4
#define POOL_EXTRA 3 /* members that must never be handed out */

static void seed_pool(struct stk_store *st)
{
    struct stk_pool_rec p = {.size = POOL_N};
    snprintf(p.name, sizeof(p.name), "py");
    snprintf(p.fingerprint, sizeof(p.fingerprint), "%064d", 7);
    p.template_spec = stk_xstrdup("kind: Sandbox\n");
    assert_int_equal(stk_store_pool_insert(st, &p, NULL), 0);
    _cleanup_error_ struct stk_error *err = NULL;
    assert_int_equal(stk_store_pool_insert(st, &p, &err), -EEXIST);
    stk_pool_rec_free(&p);
    for (int i = 0; i < POOL_N + POOL_EXTRA; i++) {
        char id[64];
        snprintf(id, sizeof(id), "py-%02d", i);
        struct stk_sb_rec r = sb(id, id, STK_SB_READY);
        snprintf(r.pool, sizeof(r.pool), "py");
        r.pool_member = true;
        if (i == POOL_N)
            r.phase = STK_SB_PROVISIONING; /* not ready yet */
        if (i == POOL_N + 1)
            r.pool_member = false; /* claimed already */
        if (i == POOL_N + 2)
            snprintf(r.pool, sizeof(r.pool), "other");
        insert(st, r);
    }
}

/* Each child opens its own connection (never across fork) and claims until
 * the pool is empty, writing every id it got to the pipe. */
static STK_NORETURN void claimer(const char *state_dir, int wfd, int who)
{
    struct stk_store *st = NULL;
    if (stk_store_open(state_dir, &st, NULL) < 0)
        _exit(10);
    struct stk_sb_rec claim = sb("x", "", STK_SB_READY);
    snprintf(claim.name, sizeof(claim.name), "claimed-by-%d", who);
    for (;;) {
        char id[64] = "";
        _cleanup_error_ struct stk_error *err = NULL;
        int r = stk_store_pool_claim(st, "", "py", &claim, ACTOR, id, &err);
        if (r == -ENOENT)
            break;
        if (r < 0) {
            fprintf(stderr, "claimer %d: %s\n", who, err->msg);
            _exit(11);
        }
        if (write(wfd, id, sizeof(id)) != (ssize_t)sizeof(id))
            _exit(12);
    }
    stk_store_close(st);
    _exit(0);
}

static void test_pool_claim_concurrent_is_unique(void **state)
{
    struct fixture *f = *state;
    seed_pool(f->st);
    int fds[2];
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
    pid_t pids[CLAIMERS];
    for (int i = 0; i < CLAIMERS; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            close(fds[0]);
            claimer(f->state, fds[1], i);
        }
    }
    close(fds[1]);
    char ids[POOL_N + 8][64];
    size_t n = 0;
    char buf[64];
    ssize_t got;
    while ((got = read(fds[0], buf, sizeof(buf))) == (ssize_t)sizeof(buf)) {
        assert_true(n < STK_ARRAY_SIZE(ids));
        memcpy(ids[n++], buf, sizeof(buf));
    }
    close(fds[0]);
    for (int i = 0; i < CLAIMERS; i++) {
        int status = 0;
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    assert_int_equal(n, POOL_N);
    for (size_t i = 0; i < n; i++) {
        int num = -1;
        assert_int_equal(sscanf(ids[i], "py-%d", &num), 1);
        assert_true(num >= 0 && num < POOL_N);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(ids[i], ids[j]);
        struct stk_sb_rec r;
        assert_int_equal(stk_store_sb_get(f->st, ids[i], &r, NULL), 0);
        assert_false(r.pool_member);
        assert_true(stk_startswith(r.name, "claimed-by-"));
        stk_sb_rec_free(&r);
        assert_int_equal(audit_count(f->st, ids[i]), 1);
    }
    char id[64];
    struct stk_sb_rec claim = sb("x", "late", STK_SB_READY);
    _cleanup_error_ struct stk_error *err = NULL;
    assert_int_equal(stk_store_pool_claim(f->st, "", "py", &claim, ACTOR, id, &err), -ENOENT);
    assert_string_equal(err->msg, "pool 'py' has no ready member");

    struct stk_audit_verify_result v;
    assert_int_equal(stk_audit_verify(f->st, NULL, &v, NULL), 0);
    assert_true(v.ok);
    assert_int_equal(v.records, POOL_N);

    struct stk_pool_rec *pools = NULL;
    size_t np = 0;
    assert_int_equal(stk_store_pool_list(f->st, &pools, &np, NULL), 0);
    assert_int_equal(np, 1);
    assert_int_equal(pools[0].size, POOL_N);
    stk_pool_recs_free(pools, np);
    assert_int_equal(stk_store_pool_delete(f->st, "", "py", NULL), 0);
    struct stk_pool_rec p;
    assert_int_equal(stk_store_pool_get(f->st, NULL, "py", &p, NULL), -ENOENT);
    assert_int_equal(stk_store_pool_delete(f->st, "", "py", NULL), -ENOENT);
}

static void pool_of(struct stk_store *st, const char *tenant, const char *name, int want)
{
    struct stk_pool_rec p = {.size = 1};
    snprintf(p.name, sizeof(p.name), "%s", name);
    snprintf(p.tenant, sizeof(p.tenant), "%s", tenant);
    snprintf(p.fingerprint, sizeof(p.fingerprint), "%064d", 7);
    _cleanup_error_ struct stk_error *err = NULL;
    assert_int_equal(stk_store_pool_insert(st, &p, &err), want);
}

static void member_of(struct stk_store *st, const char *id, const char *tenant, const char *pool)
{
    struct stk_sb_rec r = sb(id, id, STK_SB_READY);
    snprintf(r.pool, sizeof(r.pool), "%s", pool);
    snprintf(r.tenant, sizeof(r.tenant), "%s", tenant);
    r.pool_member = true;
    insert(st, r);
}

/* Pool names are unique per tenant: two tenants' pools of one name are two
 * pools, each claimed from its own members only; a lookup by name alone
 * finds one only when one tenant has it. */
static void test_pool_names_are_per_tenant(void **state)
{
    struct fixture *f = *state;
    pool_of(f->st, "acme", "web", 0);
    pool_of(f->st, "globex", "web", 0);
    pool_of(f->st, "acme", "web", -EEXIST);
    member_of(f->st, "m-acme", "acme", "web");
    member_of(f->st, "m-globex", "globex", "web");
    struct stk_pool_rec p;
    _cleanup_error_ struct stk_error *err = NULL;
    assert_int_equal(stk_store_pool_get(f->st, NULL, "web", &p, &err), -ENOTUNIQ);
    assert_non_null(strstr(err->msg, "several tenants"));
    assert_int_equal(stk_store_pool_get(f->st, "globex", "web", &p, NULL), 0);
    assert_string_equal(p.tenant, "globex");
    stk_pool_rec_free(&p);
    assert_int_equal(stk_store_pool_get(f->st, "initech", "web", &p, NULL), -ENOENT);

    struct stk_sb_rec claim = sb("x", "claimed", STK_SB_READY);
    snprintf(claim.tenant, sizeof(claim.tenant), "acme");
    char id[64];
    assert_int_equal(stk_store_pool_claim(f->st, "acme", "web", &claim, ACTOR, id, NULL), 0);
    assert_string_equal(id, "m-acme");
    stk_error_free(err);
    err = NULL;
    assert_int_equal(stk_store_pool_claim(f->st, "acme", "web", &claim, ACTOR, id, &err), -ENOENT);
    /* globex's member stays globex's */
    struct stk_sb_rec r;
    assert_int_equal(stk_store_sb_get(f->st, "m-globex", &r, NULL), 0);
    assert_true(r.pool_member);
    stk_sb_rec_free(&r);

    assert_int_equal(stk_store_pool_delete(f->st, "acme", "web", NULL), 0);
    assert_int_equal(stk_store_pool_get(f->st, NULL, "web", &p, NULL), 0);
    assert_string_equal(p.tenant, "globex");
    stk_pool_rec_free(&p);
}

/* A state directory of schema 3 (pool names global) is migrated: its pools
 * keep their rows, and the name is then unique per tenant. */
static void test_migrates_schema_3_pool_names(void **state)
{
    struct fixture *f = *state;
    stk_store_close(f->st);
    f->st = NULL;
    sql(f,
        "DROP TABLE pools; DROP TABLE sandbox_namespaces;"
        "CREATE TABLE pools (name TEXT PRIMARY KEY, size INTEGER NOT NULL, template_spec TEXT,"
        " env TEXT, fingerprint TEXT NOT NULL, created_ms INTEGER NOT NULL,"
        " tenant TEXT NOT NULL DEFAULT '', project TEXT NOT NULL DEFAULT '',"
        " owner TEXT NOT NULL DEFAULT '');"
        "INSERT INTO pools VALUES ('web', 2, 'kind: Sandbox', NULL, 'fp', 7, 'acme', 'p', 'ctl');"
        "INSERT INTO pools VALUES ('old', 1, NULL, NULL, 'fp', 8, '', '', '');"
        "PRAGMA user_version = 3");
    _cleanup_error_ struct stk_error *err = NULL;
    assert_int_equal(stk_store_open(f->state, &f->st, &err), 0);
    struct stk_pool_rec p;
    assert_int_equal(stk_store_pool_get(f->st, "acme", "web", &p, &err), 0);
    assert_int_equal(p.size, 2);
    assert_string_equal(p.template_spec, "kind: Sandbox");
    assert_string_equal(p.owner, "ctl");
    assert_int_equal(p.created_ms, 7);
    stk_pool_rec_free(&p);
    assert_int_equal(stk_store_pool_get(f->st, NULL, "old", &p, &err), 0);
    assert_string_equal(p.tenant, "");
    stk_pool_rec_free(&p);
    pool_of(f->st, "globex", "web", 0);
    pool_of(f->st, "acme", "web", -EEXIST);
}

/* ---- the audit trail ----------------------------------------------------------------- */

/* 12 records, three sandboxes and the host chain interleaved:
 *  1 a created   2 b created   3 a started   4 c created   5 b exec   6 a exec
 *  7 (host) gc   8 b exec      9 c started  10 a killed   11 b stopped 12 c exec */
static void seed_trail(struct stk_store *st)
{
    static const struct {
        const char *sb, *event, *details;
    } recs[] = {
        {"a", "created", NULL},
        {"b", "created", NULL},
        {"a", "started", NULL},
        {"c", "created", NULL},
        {"b", "exec", "{\"argv\":[\"ls\",\"-l\"]}"},
        {"a", "exec", "{\"argv\":[\"id\"]}"},
        {"", "gc", "{\"removed\":2}"},
        {"b", "exec", "{\"argv\":[\"cat\",\"x\"]}"},
        {"c", "started", NULL},
        {"a", "killed", "{\"reason\":\"memory_exceeded\"}"},
        {"b", "stopped", NULL},
        {"c", "exec", "{\"argv\":[\"true\"]}"},
    };
    for (size_t i = 0; i < STK_ARRAY_SIZE(recs); i++) {
        _cleanup_error_ struct stk_error *err = NULL;
        if (stk_audit_append(st, recs[i].sb, recs[i].event, ACTOR, recs[i].details, &err) < 0)
            fail_msg("append %zu: %s", i, err->msg);
    }
}

static struct stk_audit_verify_result verify(struct stk_store *st, const char *sandbox_id)
{
    struct stk_audit_verify_result v;
    _cleanup_error_ struct stk_error *err = NULL;
    if (stk_audit_verify(st, sandbox_id, &v, &err) < 0)
        fail_msg("verify: %s", err->msg);
    return v;
}

static void expect_broken(struct stk_store *st, const char *sandbox_id, int64_t bad_seq,
                          const char *problem)
{
    struct stk_audit_verify_result v = verify(st, sandbox_id);
    assert_false(v.ok);
    if (v.bad_seq != bad_seq || strcmp(v.problem, problem))
        fail_msg("want record %" PRId64 " \"%s\", got record %" PRId64 " \"%s\"", bad_seq, problem,
                 v.bad_seq, v.problem);
}

static void test_audit_intact_and_chains(void **state)
{
    struct fixture *f = *state;
    struct stk_audit_verify_result v = verify(f->st, NULL);
    assert_true(v.ok);
    assert_int_equal(v.records, 0);
    seed_trail(f->st);
    v = verify(f->st, NULL);
    assert_true(v.ok);
    assert_int_equal(v.records, 12);
    assert_int_equal(v.head_seq, 12);
    assert_int_equal(strlen(v.head), 64);
    assert_string_equal(v.warning, "");
    v = verify(f->st, "b");
    assert_true(v.ok);
    assert_int_equal(v.records, 4);
    assert_int_equal(audit_count(f->st, "a"), 4);
    assert_int_equal(audit_count(f->st, ""), 1);

    /* the head file names the last record */
    _cleanup_free_ char *head = stk_xasprintf("%s/%s", f->state, STK_AUDIT_HEAD_FILE);
    _cleanup_fclose_ FILE *hf = fopen(head, "re");
    assert_non_null(hf);
    char line[256];
    assert_non_null(fgets(line, sizeof(line), hf));
    v = verify(f->st, NULL);
    _cleanup_free_ char *want = stk_xasprintf("stockade-audit-head v1 seq=12 hash=%s\n", v.head);
    assert_string_equal(line, want);
}

static void test_tamper_modified_details(void **state)
{
    struct fixture *f = *state;
    seed_trail(f->st);
    sql(f, "UPDATE audit SET details = '{\"argv\":[\"rm\"]}' WHERE seq = 8");
    expect_broken(f->st, NULL, 8, "record 8 was modified (hash mismatch)");
    expect_broken(f->st, "b", 8, "record 8 was modified (hash mismatch)");
    assert_true(verify(f->st, "a").ok); /* a's chain does not include it */
}

static void test_tamper_deleted_middle(void **state)
{
    struct fixture *f = *state;
    seed_trail(f->st);
    sql(f, "DELETE FROM audit WHERE seq = 5");
    expect_broken(f->st, NULL, 5, "record 5 is missing (deleted): record 6 follows 4");
    /* b's own chain misses its record 2 (global 5) */
    expect_broken(f->st, "b", 8,
                  "record 8's sandbox chain is broken: it is b's record 3, after its record 1 "
                  "(records missing or reordered)");
}

static void test_tamper_deleted_first(void **state)
{
    struct fixture *f = *state;
    seed_trail(f->st);
    sql(f, "DELETE FROM audit WHERE seq <= 2");
    expect_broken(f->st, NULL, 1, "record 1 is missing (deleted): the trail starts at record 3");
}

static void test_tamper_swapped(void **state)
{
    struct fixture *f = *state;
    seed_trail(f->st);
    sql(f, "UPDATE audit SET seq = -3 WHERE seq = 3; UPDATE audit SET seq = 3 WHERE seq = 4;"
           "UPDATE audit SET seq = 4 WHERE seq = -3");
    expect_broken(f->st, NULL, 3,
                  "record 3 is out of order: its prev_hash is that of record 4, not of record 2");
}

static void test_tamper_truncated(void **state)
{
    struct fixture *f = *state;
    seed_trail(f->st);
    sql(f, "DELETE FROM audit WHERE seq > 10");
    expect_broken(f->st, NULL, 11,
                  "the trail was truncated: the head in the database says 12 records, found 10 "
                  "(record 11 onward is missing)");
    /* an attacker who also moves the database's head is caught by the file */
    sql(f, "UPDATE audit_head SET seq = 10, hash = (SELECT hash FROM audit WHERE seq = 10)");
    expect_broken(f->st, NULL, 11,
                  "the trail was truncated: the head anchor audit.head says 12 records, found "
                  "10 (record 11 onward is missing)");
}

static void write_head(const struct fixture *f, const char *text)
{
    _cleanup_free_ char *path = stk_xasprintf("%s/%s", f->state, STK_AUDIT_HEAD_FILE);
    _cleanup_fclose_ FILE *h = fopen(path, "we");
    assert_non_null(h);
    fputs(text, h);
}

static void test_tamper_head_file(void **state)
{
    struct fixture *f = *state;
    seed_trail(f->st);
    struct stk_audit_verify_result good = verify(f->st, NULL);

    _cleanup_free_ char *other = stk_xasprintf("stockade-audit-head v1 seq=12 hash=%064d\n", 1);
    write_head(f, other);
    expect_broken(f->st, NULL, 12,
                  "record 12 does not match the head anchor audit.head (replaced, hashes "
                  "recomputed?)");
    _cleanup_free_ char *ahead =
        stk_xasprintf("stockade-audit-head v1 seq=14 hash=%s\n", good.head);
    write_head(f, ahead);
    expect_broken(f->st, NULL, 13,
                  "the trail was truncated: the head anchor audit.head says 14 records, found "
                  "12 (record 13 onward is missing)");
    write_head(f, "garbage\n");
    struct stk_audit_verify_result v = verify(f->st, NULL);
    assert_false(v.ok);
    assert_non_null(strstr(v.problem, "is malformed"));

    /* one behind and matching its record: a crash window, a warning only */
    _cleanup_free_ char *h11 = NULL;
    {
        _cleanup_free_ char *db = stk_xasprintf("%s/%s", f->state, STK_STORE_DB_FILE);
        sqlite3 *raw = NULL;
        sqlite3_stmt *s = NULL;
        assert_int_equal(sqlite3_open(db, &raw), SQLITE_OK);
        assert_int_equal(
            sqlite3_prepare_v2(raw, "SELECT hash FROM audit WHERE seq = 11", -1, &s, NULL), 0);
        assert_int_equal(sqlite3_step(s), SQLITE_ROW);
        h11 = stk_xasprintf("stockade-audit-head v1 seq=11 hash=%s\n", sqlite3_column_text(s, 0));
        sqlite3_finalize(s);
        sqlite3_close(raw);
    }
    write_head(f, h11);
    v = verify(f->st, NULL);
    assert_true(v.ok);
    assert_non_null(strstr(v.warning, "lags: it names record 11 of 12"));
    /* the next append moves it again */
    assert_int_equal(stk_audit_append(f->st, "a", "deleted", ACTOR, NULL, NULL), 0);
    v = verify(f->st, NULL);
    assert_true(v.ok);
    assert_string_equal(v.warning, "");

    /* empty: a power loss between the rename and the data (the file is
     * flushed only every 64th record); a warning, and the next append
     * writes it again */
    write_head(f, "");
    v = verify(f->st, NULL);
    assert_true(v.ok);
    assert_non_null(strstr(v.warning, "audit.head is empty"));
    assert_int_equal(stk_audit_append(f->st, "a", "deleted", ACTOR, NULL, NULL), 0);
    v = verify(f->st, NULL);
    assert_true(v.ok);
    assert_string_equal(v.warning, "");
    /* every append names its record in the file, flushed or not: a database
     * rolled back by one record is caught by the file */
    _cleanup_free_ char *want =
        stk_xasprintf("stockade-audit-head v1 seq=%" PRId64 " hash=%s\n", v.head_seq, v.head);
    _cleanup_free_ char *path = stk_xasprintf("%s/%s", f->state, STK_AUDIT_HEAD_FILE);
    {
        _cleanup_fclose_ FILE *hf = fopen(path, "re");
        char line[256] = "";
        assert_non_null(hf);
        assert_non_null(fgets(line, sizeof(line), hf));
        assert_string_equal(line, want);
    }
    sql(f, "DELETE FROM audit WHERE seq = 14");
    sql(f, "UPDATE audit_head SET seq = 13, hash = (SELECT hash FROM audit WHERE seq = 13)");
    expect_broken(f->st, NULL, 14,
                  "the trail was truncated: the head anchor audit.head says 14 records, found "
                  "13 (record 14 onward is missing)");

    assert_int_equal(unlink(path), 0);
    v = verify(f->st, NULL);
    assert_false(v.ok);
    assert_non_null(strstr(v.problem, "audit.head is missing"));
}

static void test_tamper_sandbox_chain(void **state)
{
    struct fixture *f = *state;
    seed_trail(f->st);
    sql(f, "UPDATE audit SET sandbox_prev_hash = (SELECT hash FROM audit WHERE seq = 1)"
           " WHERE seq = 8");
    expect_broken(f->st, NULL, 8,
                  "record 8's sandbox chain is broken: its sandbox_prev_hash does not match b's "
                  "record 2");
    expect_broken(f->st, "b", 8,
                  "record 8's sandbox chain is broken: its sandbox_prev_hash does not match b's "
                  "record 2");
}

static int grab_record(const struct stk_audit_rec *a, void *ud)
{
    struct stk_audit_rec *want = ud;
    if (a->seq != want->seq)
        return 0;
    *want = *a;
    want->details = stk_xstrdup(a->details);
    return 0;
}

/* An attacker who rewrites a record and recomputes its own hash still breaks
 * the next record's link; without recomputing, the record itself is named. */
static void test_tamper_rehashed_record(void **state)
{
    struct fixture *f = *state;
    seed_trail(f->st);
    struct stk_audit_rec a = {.seq = 6};
    assert_int_equal(stk_audit_list(f->st, NULL, grab_record, &a, NULL), 0);
    snprintf(a.actor, sizeof(a.actor), "someone else");
    stk_audit_hash(&a, a.hash);
    _cleanup_free_ char *upd =
        stk_xasprintf("UPDATE audit SET actor = 'someone else', hash = '%s' WHERE seq = 6", a.hash);
    stk_audit_rec_free(&a);
    sql(f, "UPDATE audit SET actor = 'someone else' WHERE seq = 6");
    expect_broken(f->st, NULL, 6, "record 6 was modified (hash mismatch)");
    sql(f, upd);
    expect_broken(f->st, NULL, 6,
                  "record 6 was replaced (its hash recomputed): record 7's prev_hash does not "
                  "match it");
}

static int collect_jsonl(const struct stk_audit_rec *a, void *ud)
{
    stk_audit_rec_jsonl(a, ud);
    return 0;
}

static void test_export_reverifies_offline(void **state)
{
    struct fixture *f = *state;
    seed_trail(f->st);
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    assert_non_null(mem);
    assert_int_equal(stk_audit_export(f->st, NULL, mem, NULL), 0);
    fclose(mem);

    char prev[STK_AUDIT_HASH_LEN + 1];
    memset(prev, '0', STK_AUDIT_HASH_LEN);
    prev[STK_AUDIT_HASH_LEN] = '\0';
    int64_t n = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        struct stk_audit_rec a;
        _cleanup_error_ struct stk_error *err = NULL;
        if (stk_audit_rec_from_json(line, &a, &err) < 0)
            fail_msg("%s: %s", line, err->msg);
        char h[STK_AUDIT_HASH_LEN + 1];
        stk_audit_hash(&a, h);
        assert_string_equal(h, a.hash);
        assert_string_equal(a.prev_hash, prev);
        assert_int_equal(a.seq, ++n);
        memcpy(prev, a.hash, sizeof(prev));
        stk_audit_rec_free(&a);
    }
    free(text);
    assert_int_equal(n, 12);
    assert_string_equal(prev, verify(f->st, NULL).head);

    /* one sandbox's export is that sandbox's records only */
    _cleanup_buf_ struct stk_buf b = {0};
    assert_int_equal(stk_audit_list(f->st, "c", collect_jsonl, &b, NULL), 0);
    assert_true(stk_startswith(b.data, "{\"seq\":4,"));
    assert_non_null(strstr(b.data, "\"details\":\"{\\\"argv\\\":[\\\"true\\\"]}\""));

    /* the encoding is length-prefixed: moving a byte between fields changes it */
    struct stk_audit_rec x = {.seq = 1, .details = (char *)(uintptr_t) "{}"};
    snprintf(x.event, sizeof(x.event), "ab");
    snprintf(x.actor, sizeof(x.actor), "c");
    char h1[65], h2[65];
    stk_audit_hash(&x, h1);
    snprintf(x.event, sizeof(x.event), "a");
    snprintf(x.actor, sizeof(x.actor), "bc");
    stk_audit_hash(&x, h2);
    assert_string_not_equal(h1, h2);
}

/* Writers in other processes append while this one verifies: the chain stays
 * linear, and verify never sees a head file ahead of (or behind) its snapshot. */
#define APPENDERS   3
#define APPEND_EACH 25

static void test_concurrent_appends_and_verify(void **state)
{
    struct fixture *f = *state;
    pid_t pids[APPENDERS];
    for (int i = 0; i < APPENDERS; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            struct stk_store *st = NULL;
            if (stk_store_open(f->state, &st, NULL) < 0)
                _exit(10);
            char id[16];
            snprintf(id, sizeof(id), "w%d", i);
            for (int k = 0; k < APPEND_EACH; k++)
                if (stk_audit_append(st, id, "exec", ACTOR, "{\"argv\":[\"x\"]}", NULL) < 0)
                    _exit(11);
            stk_store_close(st);
            _exit(0);
        }
    }
    int done = 0, checks = 0;
    while (done < APPENDERS) {
        struct stk_audit_verify_result v = verify(f->st, NULL);
        if (!v.ok || v.warning[0])
            fail_msg("verify during appends: %s%s", v.problem, v.warning);
        checks++;
        int status = 0;
        pid_t p = waitpid(-1, &status, WNOHANG);
        if (p > 0) {
            assert_true(WIFEXITED(status));
            assert_int_equal(WEXITSTATUS(status), 0);
            done++;
        }
    }
    struct stk_audit_verify_result v = verify(f->st, NULL);
    assert_true(v.ok);
    assert_int_equal(v.records, APPENDERS * APPEND_EACH);
    assert_int_equal(audit_count(f->st, "w1"), APPEND_EACH);
    assert_true(verify(f->st, "w2").ok);
    assert_true(checks > 0);
}

/* Many first opens of one new state directory at once: each switches the
 * new database to WAL, which under SQLite's rollback-journal locks answered
 * "busy" at once to all but one (deadlock avoidance never waits). */
#define OPENERS     24
#define OPEN_ROUNDS 8

static void test_concurrent_first_opens(void **state)
{
    struct fixture *f = *state;
    for (int round = 0; round < OPEN_ROUNDS; round++) {
        _cleanup_free_ char *dir = stk_xasprintf("%s/fresh%d", f->dir, round);
        int go[2];
        assert_int_equal(pipe(go), 0);
        pid_t pids[OPENERS];
        for (int i = 0; i < OPENERS; i++) {
            pids[i] = fork();
            assert_true(pids[i] >= 0);
            if (pids[i] == 0) {
                char c;
                close(go[1]);
                if (read(go[0], &c, 1) != 0)
                    _exit(9);
                struct stk_store *st = NULL;
                struct stk_error *err = NULL;
                if (stk_store_open(dir, &st, &err) < 0) {
                    fprintf(stderr, "opener %d: %s\n", i, err->msg);
                    _exit(10);
                }
                stk_store_close(st);
                _exit(0);
            }
        }
        close(go[0]);
        close(go[1]); /* all start together */
        for (int i = 0; i < OPENERS; i++) {
            int status = 0;
            assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
            assert_true(WIFEXITED(status));
            assert_int_equal(WEXITSTATUS(status), 0);
        }
        struct stk_store *st = NULL;
        assert_int_equal(stk_store_open_existing(dir, &st, NULL), 0);
        stk_store_close(st);
    }
}

/* A writer behind a stopped process that holds the writers' lock file fails
 * at its bound with a message naming the lock and the holder, and the store
 * works again once the holder is gone. */
static void test_write_lock_stopped_holder(void **state)
{
    struct fixture *f = *state;
    _cleanup_free_ char *lock = stk_xasprintf("%s/%s", f->state, STK_STORE_LOCK_FILE);
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        int fd = open(lock, O_RDWR);
        if (fd < 0 || flock(fd, LOCK_EX) < 0)
            _exit(1);
        (void)!write(ready[1], "x", 1);
        raise(SIGSTOP);
        _exit(0);
    }
    char x;
    assert_int_equal(read(ready[0], &x, 1), 1);
    stk_store_set_lock_wait_ms(f->st, 300);
    _cleanup_error_ struct stk_error *err = NULL;
    assert_int_equal(stk_audit_append(f->st, "s", "exec", ACTOR, NULL, &err), -EBUSY);
    _cleanup_free_ char *want = stk_xasprintf(
        "waited 300 ms for the store's write lock %s, held by process %d (", lock, (int)child);
    assert_non_null(strstr(err->msg, want));
    assert_non_null(strstr(err->msg, ", stopped) all that time"));
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    close(ready[0]);
    close(ready[1]);
    stk_store_set_lock_wait_ms(f->st, 0);
    assert_int_equal(stk_audit_append(f->st, "s", "exec", ACTOR, NULL, NULL), 0);
    assert_int_equal(audit_count(f->st, "s"), 1);
}

/* Writers queued behind a holder (as 50 concurrent creates are behind each
 * other's fsyncs) all get the lock once it is let go, each in turn. */
#define QUEUED       32
#define QUEUED_WRITE 10

static void test_write_lock_queue_all_get_it(void **state)
{
    struct fixture *f = *state;
    _cleanup_free_ char *lock = stk_xasprintf("%s/%s", f->state, STK_STORE_LOCK_FILE);
    int held = open(lock, O_RDWR);
    assert_true(held >= 0);
    assert_int_equal(flock(held, LOCK_EX), 0);
    pid_t pids[QUEUED];
    for (int i = 0; i < QUEUED; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            close(held);
            struct stk_store *st = NULL;
            struct stk_error *err = NULL;
            if (stk_store_open(f->state, &st, &err) < 0)
                _exit(10);
            char id[16];
            snprintf(id, sizeof(id), "q%d", i);
            for (int k = 0; k < QUEUED_WRITE; k++)
                if (stk_audit_append(st, id, "exec", ACTOR, NULL, &err) < 0) {
                    fprintf(stderr, "writer %d: %s\n", i, err->msg);
                    _exit(11);
                }
            stk_store_close(st);
            _exit(0);
        }
    }
    /* every writer opens and queues behind the lock */
    (void)nanosleep(&(struct timespec){0, 500 * 1000000L}, NULL);
    close(held);
    for (int i = 0; i < QUEUED; i++) {
        int status = 0;
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    assert_int_equal(audit_count(f->st, "q7"), QUEUED_WRITE);
    assert_true(verify(f->st, NULL).ok);
    assert_int_equal(verify(f->st, NULL).records, QUEUED * QUEUED_WRITE);
}

/* The namespace a record's documents resolve to is recorded with them (the
 * gateway's list authorizes by it without reading them): in the brief list
 * too, replaced by a claim's, unknown for a record from before schema 6. */
static void test_namespace_recorded(void **state)
{
    struct fixture *f = *state;
    struct stk_sb_rec r = sb("ns-1", "a", STK_SB_PENDING);
    char spec[] = "kind: Sandbox\n";
    r.spec = spec;
    r.namespace_known = true;
    snprintf(r.namespace, sizeof(r.namespace), "team-a");
    insert(f->st, r);
    struct stk_sb_rec none = sb("ns-2", "b", STK_SB_PENDING);
    none.namespace_known = true; /* resolved to no namespace */
    insert(f->st, none);
    insert(f->st, sb("ns-old", "c", STK_SB_PENDING)); /* not recorded */
    struct stk_sb_rec *all = NULL;
    size_t n = 0;
    assert_int_equal(stk_store_sb_list_brief(f->st, false, &all, &n, NULL), 0);
    assert_int_equal(n, 3);
    assert_true(all[0].namespace_known);
    assert_string_equal(all[0].namespace, "team-a");
    assert_null(all[0].spec);
    assert_true(all[1].namespace_known);
    assert_string_equal(all[1].namespace, "");
    assert_false(all[2].namespace_known);
    stk_sb_recs_free(all, n);
    struct stk_sb_rec got;
    assert_int_equal(stk_store_sb_get(f->st, "ns-1", &got, NULL), 0);
    assert_true(got.namespace_known);
    assert_string_equal(got.namespace, "team-a");
    stk_sb_rec_free(&got);

    /* a claim brings the claimer's documents and their namespace */
    struct stk_pool_rec p = {.size = 1};
    snprintf(p.name, sizeof(p.name), "pl");
    snprintf(p.fingerprint, sizeof(p.fingerprint), "fp");
    assert_int_equal(stk_store_pool_insert(f->st, &p, NULL), 0);
    struct stk_sb_rec m = sb("pl-1", "pl-1", STK_SB_READY);
    snprintf(m.pool, sizeof(m.pool), "pl");
    m.pool_member = true;
    m.namespace_known = true;
    snprintf(m.namespace, sizeof(m.namespace), "pool-ns");
    insert(f->st, m);
    struct stk_sb_rec c = {.exit_code = -1};
    snprintf(c.name, sizeof(c.name), "claimer");
    snprintf(c.owner, sizeof(c.owner), "bob");
    c.spec = stk_xstrdup("kind: Sandbox\n");
    c.namespace_known = true;
    snprintf(c.namespace, sizeof(c.namespace), "team-b");
    char id[64];
    _cleanup_error_ struct stk_error *err = NULL;
    assert_int_equal(stk_store_pool_claim(f->st, "", "pl", &c, ACTOR, id, &err), 0);
    stk_sb_rec_free(&c);
    assert_string_equal(id, "pl-1");
    assert_int_equal(stk_store_sb_get_id(f->st, "pl-1", &got, NULL), 0);
    assert_string_equal(got.namespace, "team-b");
    stk_sb_rec_free(&got);
}

static void test_text_must_be_utf8(void **state)
{
    struct fixture *f = *state;
    struct stk_sb_rec r = sb("u", "bad\xff", STK_SB_PENDING);
    expect_insert_error(f->st, &r, "sandbox field 'name' is not valid UTF-8");
    _cleanup_error_ struct stk_error *err = NULL;
    assert_int_equal(stk_audit_append(f->st, "u", "exec", "caf\xc3", NULL, &err), -EINVAL);
    assert_string_equal(err->msg, "audit actor is not valid UTF-8");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_open_creates_private_files_and_is_idempotent),
        T(test_open_existing_and_newer_schema),
        T(test_migrates_schema_1_handle),
        T(test_migrates_schema_3_pool_names),
        T(test_sandbox_insert_get_list),
        T(test_list_brief_reads_no_documents),
        T(test_transition_table_every_cell),
        T(test_set_phase_compare_and_set),
        T(test_phase_change_and_audit_are_atomic),
        T(test_string_limits),
        T(test_pool_claim_concurrent_is_unique),
        T(test_pool_names_are_per_tenant),
        T(test_audit_intact_and_chains),
        T(test_tamper_modified_details),
        T(test_tamper_deleted_middle),
        T(test_tamper_deleted_first),
        T(test_tamper_swapped),
        T(test_tamper_truncated),
        T(test_tamper_head_file),
        T(test_tamper_sandbox_chain),
        T(test_tamper_rehashed_record),
        T(test_export_reverifies_offline),
        T(test_concurrent_appends_and_verify),
        T(test_concurrent_first_opens),
        T(test_namespace_recorded),
        T(test_write_lock_stopped_holder),
        T(test_write_lock_queue_all_get_it),
        T(test_text_must_be_utf8),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
