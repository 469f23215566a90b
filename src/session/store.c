/* SPDX-License-Identifier: Apache-2.0 */
/* The store: opening, schema migrations, transactions, sandboxes and pools.
 * The audit trail's half is audit.c. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>

const char *const stk_sb_phase_names[_STK_SB_N] = {
    [STK_SB_PENDING] = "pending",     [STK_SB_PROVISIONING] = "provisioning",
    [STK_SB_READY] = "ready",         [STK_SB_STOPPING] = "stopping",
    [STK_SB_STOPPED] = "stopped",     [STK_SB_STARTING] = "starting",
    [STK_SB_SUCCEEDED] = "succeeded", [STK_SB_FAILED] = "failed",
    [STK_SB_KILLED] = "killed",       [STK_SB_DELETING] = "deleting",
    [STK_SB_DELETED] = "deleted",
};

/* ---- the transition table -------------------------------------------------- */

#define BIT(p) (1u << (p))
#define ENDS   (BIT(STK_SB_SUCCEEDED) | BIT(STK_SB_FAILED) | BIT(STK_SB_KILLED))

/* One row per phase: the set of phases it may move to (store.h explains). */
static const unsigned transitions[_STK_SB_N] = {
    [STK_SB_PENDING] = BIT(STK_SB_PROVISIONING) | BIT(STK_SB_FAILED) | BIT(STK_SB_DELETING),
    [STK_SB_PROVISIONING] = BIT(STK_SB_READY) | ENDS | BIT(STK_SB_DELETING),
    [STK_SB_READY] = BIT(STK_SB_STOPPING) | ENDS | BIT(STK_SB_DELETING),
    [STK_SB_STOPPING] = BIT(STK_SB_STOPPED) | ENDS | BIT(STK_SB_DELETING),
    [STK_SB_STOPPED] = BIT(STK_SB_STARTING) | BIT(STK_SB_DELETING),
    [STK_SB_STARTING] = BIT(STK_SB_READY) | ENDS | BIT(STK_SB_DELETING),
    [STK_SB_SUCCEEDED] = BIT(STK_SB_DELETING),
    [STK_SB_FAILED] = BIT(STK_SB_DELETING),
    [STK_SB_KILLED] = BIT(STK_SB_DELETING),
    [STK_SB_DELETING] = BIT(STK_SB_DELETED),
    [STK_SB_DELETED] = 0,
};

bool stk_sb_transition_ok(enum stk_sb_phase from, enum stk_sb_phase to)
{
    if ((unsigned)from >= _STK_SB_N || (unsigned)to >= _STK_SB_N)
        return false;
    return transitions[from] & BIT(to);
}

bool stk_sb_phase_terminal(enum stk_sb_phase p)
{
    return p == STK_SB_SUCCEEDED || p == STK_SB_FAILED || p == STK_SB_KILLED || p == STK_SB_DELETED;
}

/* ---- schema ------------------------------------------------------------------ */

/* migrations[v] takes a database from user_version v to v + 1. Append only:
 * a released step is never edited. */
static const char *const migrations[STK_STORE_SCHEMA] = {
    "CREATE TABLE sandboxes ("
    " id TEXT PRIMARY KEY, name TEXT NOT NULL, tenant TEXT NOT NULL, project TEXT NOT NULL,"
    " owner TEXT NOT NULL, runtime TEXT NOT NULL, pool TEXT NOT NULL,"
    " pool_member INTEGER NOT NULL, phase TEXT NOT NULL, reason TEXT NOT NULL,"
    " message TEXT NOT NULL, exit_code INTEGER NOT NULL, created_ms INTEGER NOT NULL,"
    " updated_ms INTEGER NOT NULL, monitor_pid INTEGER NOT NULL,"
    " monitor_start INTEGER NOT NULL, init_pid INTEGER NOT NULL,"
    " spec TEXT, env TEXT, labels TEXT, result TEXT);"
    "CREATE INDEX sandboxes_name ON sandboxes(name);"
    "CREATE INDEX sandboxes_pool ON sandboxes(pool, pool_member, phase);"
    "CREATE TABLE pools ("
    " name TEXT PRIMARY KEY, size INTEGER NOT NULL, template_spec TEXT, env TEXT,"
    " fingerprint TEXT NOT NULL, created_ms INTEGER NOT NULL);"
    "CREATE TABLE audit ("
    " seq INTEGER PRIMARY KEY, time_ms INTEGER NOT NULL, sandbox_id TEXT NOT NULL,"
    " sandbox_seq INTEGER NOT NULL, event TEXT NOT NULL, actor TEXT NOT NULL,"
    " details TEXT NOT NULL, prev_hash TEXT NOT NULL, sandbox_prev_hash TEXT NOT NULL,"
    " hash TEXT NOT NULL);"
    "CREATE INDEX audit_sandbox ON audit(sandbox_id, seq);"
    /* The head inside the database moves in the appending transaction; the
     * head file (audit.c) is the copy outside it. */
    "CREATE TABLE audit_head (id INTEGER PRIMARY KEY CHECK (id = 1),"
    " seq INTEGER NOT NULL, hash TEXT NOT NULL);",
    /* 1 → 2: the driver's opaque handle of a sandbox (driver.h), so every
     * operation works from (id, handle) in any process */
    "ALTER TABLE sandboxes ADD COLUMN handle TEXT;",
    /* 2 → 3: pools belong to a tenant and an owner like the sandboxes they
     * become; a namespace belongs to the tenant that first used it; names
     * are unique per tenant (looked up by tenant and name). Pools of an
     * older state directory have neither ("" tenant: only a grant whose
     * tenants pattern matches "" sees them). */
    "ALTER TABLE pools ADD COLUMN tenant TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE pools ADD COLUMN project TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE pools ADD COLUMN owner TEXT NOT NULL DEFAULT '';"
    "CREATE TABLE namespaces (name TEXT PRIMARY KEY, tenant TEXT NOT NULL,"
    " created_ms INTEGER NOT NULL);"
    "CREATE INDEX sandboxes_tenant_name ON sandboxes(tenant, name);",
    /* 3 → 4: pool names are unique per tenant, as sandbox names are (the
     * key is the pair; SQLite cannot change a primary key in place) */
    "CREATE TABLE pools_by_tenant ("
    " name TEXT NOT NULL, size INTEGER NOT NULL, template_spec TEXT, env TEXT,"
    " fingerprint TEXT NOT NULL, created_ms INTEGER NOT NULL,"
    " tenant TEXT NOT NULL DEFAULT '', project TEXT NOT NULL DEFAULT '',"
    " owner TEXT NOT NULL DEFAULT '', PRIMARY KEY (tenant, name));"
    "INSERT INTO pools_by_tenant (name, size, template_spec, env, fingerprint, created_ms,"
    " tenant, project, owner) SELECT name, size, template_spec, env, fingerprint, created_ms,"
    " tenant, project, owner FROM pools;"
    "DROP TABLE pools;"
    "ALTER TABLE pools_by_tenant RENAME TO pools;",
    /* 4 → 5: a pool the backend keeps itself (kubernetes: an
     * agents.x-k8s.io SandboxWarmPool) names that mechanism; '' is
     * stockade's own members */
    "ALTER TABLE pools ADD COLUMN mechanism TEXT NOT NULL DEFAULT '';",
    /* 5 → 6: the namespace a sandbox's documents resolve to, written with
     * them, so a listing that authorizes by namespace reads no documents
     * (no row: a record from before, whose documents say it). A table of
     * its own: a column added to sandboxes would follow the documents in
     * each row, and reading it would walk their overflow pages. */
    "CREATE TABLE sandbox_namespaces (id TEXT PRIMARY KEY, namespace TEXT NOT NULL);",
};

static int user_version(struct stk_store *st, int *ret, struct stk_error **err)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st, "PRAGMA user_version", &s, err);
    if (r < 0)
        return r;
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW)
        return store_sql_error(st, rc, err, "reading the schema version");
    *ret = sqlite3_column_int(s, 0);
    return 0;
}

static int migrate_step(struct stk_store *st, int v, struct stk_error **err)
{
    char *msg = NULL;
    int rc = sqlite3_exec(st->db, migrations[v], NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        int r = stk_error_make(err, EIO, "migrating the schema from version %d: %s", v,
                               msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return r;
    }
    _cleanup_free_ char *sql = stk_xasprintf("PRAGMA user_version = %d", v + 1);
    rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return store_sql_error(st, rc, err, "setting the schema version");
    return 0;
}

/* Each step runs in the write transaction, so two processes opening a new
 * database at once create the schema once; the second sees the new version. */
static int migrate(struct stk_store *st, struct stk_error **err)
{
    int v = 0;
    int r = user_version(st, &v, err);
    if (r < 0)
        return r;
    if (v == STK_STORE_SCHEMA)
        return 0;
    r = store_tx_begin(st, err);
    if (r < 0)
        return r;
    r = user_version(st, &v, err);
    if (r >= 0 && v > STK_STORE_SCHEMA)
        r = stk_error_make(err, EPROTO,
                           "the database has schema version %d; this stockade knows up to %d "
                           "(written by a newer stockade?)",
                           v, STK_STORE_SCHEMA);
    for (; r >= 0 && v < STK_STORE_SCHEMA; v++)
        r = migrate_step(st, v, err);
    if (r < 0) {
        store_tx_rollback(st);
        return r;
    }
    return store_tx_commit(st, err);
}

/* ---- opening ----------------------------------------------------------------- */

/* The state directory holds every sandbox's spec and the audit trail: 0700,
 * parents created as needed. */
static int mkdir_parents(const char *dir, struct stk_error **err)
{
    _cleanup_free_ char *p = stk_xstrdup(dir);
    for (char *s = p + 1;; s++) {
        bool end = *s == '\0';
        if (*s != '/' && !end)
            continue;
        *s = '\0';
        if (mkdir(p, 0700) < 0 && errno != EEXIST)
            return stk_error_errno(err, errno, "creating %s", p);
        if (end)
            break;
        *s = '/';
    }
    struct stat sb;
    if (stat(dir, &sb) < 0)
        return stk_error_errno(err, errno, "%s", dir);
    if (!S_ISDIR(sb.st_mode))
        return stk_error_make(err, ENOTDIR, "%s is not a directory", dir);
    return 0;
}

/* The database file is created 0600 before SQLite opens it: SQLite gives its
 * -wal and -shm files the database's mode. */
static int db_file_create(const char *path, struct stk_error **err)
{
    _cleanup_close_ int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return stk_error_errno(err, errno, "creating %s", path);
    struct stat sb;
    if (fstat(fd, &sb) < 0)
        return stk_error_errno(err, errno, "%s", path);
    if ((sb.st_mode & 077) && sb.st_uid == geteuid() && fchmod(fd, 0600) < 0)
        return stk_error_errno(err, errno, "restricting %s to 0600", path);
    return 0;
}

/* Whether the database file's header already says WAL (its read and write
 * format versions, bytes 18 and 19, are 2). Any doubt answers no. */
static bool db_is_wal(const char *path)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    uint8_t h[20];
    return fd >= 0 && pread(fd, h, sizeof(h), 0) == (ssize_t)sizeof(h) && h[18] == 2 && h[19] == 2;
}

static int exec_pragma(struct stk_store *st, const char *sql, const char *want,
                       struct stk_error **err)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st, sql, &s, err);
    if (r < 0)
        return r;
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return store_sql_error(st, rc, err, sql);
    if (want && (rc != SQLITE_ROW || strcmp(store_col_text(s, 0), want)))
        return stk_error_make(err, EIO, "%s: SQLite answered '%s', not '%s'", sql,
                              rc == SQLITE_ROW ? store_col_text(s, 0) : "", want);
    return 0;
}

/* WAL: readers (ls, audit) never wait for a monitor's write. synchronous=FULL:
 * with NORMAL a power loss may drop the newest committed transactions while
 * the head file, fsynced after the commit, survives; verify would then report
 * a truncation that no one made. Writes are lifecycle events, few per
 * second, so one fsync each is cheap. */
static int configure(struct stk_store *st, struct stk_error **err)
{
    sqlite3_busy_timeout(st->db, STK_STORE_BUSY_MS);
    sqlite3_extended_result_codes(st->db, 1);
    sqlite3_db_config(st->db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
    sqlite3_db_config(st->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, NULL);
    int r = exec_pragma(st, "PRAGMA journal_mode = WAL", "wal", err);
    if (r >= 0)
        r = exec_pragma(st, "PRAGMA synchronous = FULL", NULL, err);
    if (r >= 0)
        r = exec_pragma(st, "PRAGMA foreign_keys = ON", NULL, err);
    return r;
}

static int store_open_at(const char *state_dir, bool create, struct stk_store **ret,
                         struct stk_error **err)
{
    if (!state_dir || !*state_dir)
        return stk_error_make(err, EINVAL, "no state directory given");
    _cleanup_free_ char *db_path = stk_xasprintf("%s/%s", state_dir, STK_STORE_DB_FILE);
    int r;
    if (create) {
        r = mkdir_parents(state_dir, err);
        if (r >= 0)
            r = db_file_create(db_path, err);
        if (r < 0)
            return r;
    } else if (access(db_path, F_OK) < 0) {
        return stk_error_errno(err, errno, "%s", db_path);
    }
    struct stk_store *st = stk_xcalloc(1, sizeof(*st));
    st->lock_fd = -1;
    st->lock_wait_ms = STK_STORE_LOCK_WAIT_MS;
    st->dir = stk_xstrdup(state_dir);
    st->head_path = stk_xasprintf("%s/%s", state_dir, STK_AUDIT_HEAD_FILE);
    _cleanup_free_ char *lock_path = stk_xasprintf("%s/%s", state_dir, STK_STORE_LOCK_FILE);
    st->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (st->lock_fd < 0) {
        r = stk_error_errno(err, errno, "opening %s", lock_path);
        stk_store_close(st);
        return r;
    }
    int rc =
        sqlite3_open_v2(db_path, &st->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE, NULL);
    if (rc != SQLITE_OK) {
        r = stk_error_make(err, EIO, "opening %s: %s", db_path,
                           st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
    } else if (db_is_wal(db_path)) {
        r = configure(st, err);
    } else {
        /* Switching a new database to WAL takes SQLite's rollback-journal
         * locks, whose deadlock avoidance answers "busy" at once, without
         * waiting: twenty first creates on a new state directory lost
         * that race. The writers' lock file orders them instead. */
        r = store_lock(st, true, err);
        if (r >= 0) {
            r = configure(st, err);
            store_unlock(st);
        }
    }
    if (r >= 0)
        r = migrate(st, err);
    if (r < 0) {
        stk_store_close(st);
        return stk_error_wrap(err, "the store %s", db_path);
    }
    *ret = st;
    return 0;
}

int stk_store_open(const char *state_dir, struct stk_store **ret, struct stk_error **err)
{
    return store_open_at(state_dir, true, ret, err);
}

int stk_store_open_existing(const char *state_dir, struct stk_store **ret, struct stk_error **err)
{
    return store_open_at(state_dir, false, ret, err);
}

static void stmt_cache_drop(sqlite3 *db);

void stk_store_release_memory(struct stk_store *st)
{
    if (st && st->db)
        (void)sqlite3_db_release_memory(st->db);
}

void stk_store_close(struct stk_store *st)
{
    if (!st)
        return;
    if (st->in_tx)
        store_tx_rollback(st);
    stmt_cache_drop(st->db);
    sqlite3_close_v2(st->db);
    if (st->lock_fd >= 0)
        close(st->lock_fd);
    free(st->dir);
    free(st->head_path);
    free(st);
}

const char *stk_store_dir(const struct stk_store *st)
{
    return st->dir;
}

/* ---- shared plumbing ------------------------------------------------------------ */

int store_sql_error(struct stk_store *st, int rc, struct stk_error **err, const char *what)
{
    int code;
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        code = EBUSY;
        break;
    case SQLITE_CONSTRAINT:
        code = EEXIST;
        break;
    case SQLITE_FULL:
        code = ENOSPC;
        break;
    case SQLITE_READONLY:
        code = EROFS;
        break;
    case SQLITE_PERM:
    case SQLITE_AUTH:
        code = EACCES;
        break;
    case SQLITE_TOOBIG:
        code = E2BIG;
        break;
    default:
        code = EIO;
        break;
    }
    const char *msg = st && st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc);
    if ((rc & 0xff) == SQLITE_BUSY)
        /* SQLite waits up to the busy timeout, except where waiting could
         * deadlock (a reader that wants to write): then it answers at once */
        return stk_error_make(err, code,
                              "%s: the database was locked by another stockade process (waited "
                              "up to %d ms, or not at all where waiting could deadlock) (%s)",
                              what, STK_STORE_BUSY_MS, msg);
    return stk_error_make(err, code, "%s: %s", what, msg);
}

/* Prepared statements, kept per connection: preparing (parsing and planning)
 * every query again was a visible part of a gateway request's CPU. Keyed
 * by the SQL text (never by its address: built strings come and go); a
 * statement in use is never handed out twice. Stores are used by one
 * thread of a process. */
#define STMT_CACHE 48
static struct {
    sqlite3 *db;
    sqlite3_stmt *s;
    bool busy;
} stmt_cache[STMT_CACHE];

int store_prepare(struct stk_store *st, const char *sql, sqlite3_stmt **ret, struct stk_error **err)
{
    for (size_t i = 0; i < STMT_CACHE; i++)
        if (stmt_cache[i].db == st->db && !stmt_cache[i].busy &&
            !strcmp(sqlite3_sql(stmt_cache[i].s), sql)) {
            stmt_cache[i].busy = true;
            *ret = stmt_cache[i].s;
            return 0;
        }
    int rc = sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, ret, NULL);
    if (rc != SQLITE_OK)
        return store_sql_error(st, rc, err, "preparing a statement");
    for (size_t i = 0; i < STMT_CACHE; i++)
        if (!stmt_cache[i].db) {
            stmt_cache[i].db = st->db;
            stmt_cache[i].s = *ret;
            stmt_cache[i].busy = true;
            break;
        }
    return 0;
}

void store_stmt_release(sqlite3_stmt *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < STMT_CACHE; i++)
        if (stmt_cache[i].s == s) {
            (void)sqlite3_reset(s);
            (void)sqlite3_clear_bindings(s);
            stmt_cache[i].busy = false;
            return;
        }
    sqlite3_finalize(s);
}

/* A closing connection takes its cached statements with it. */
static void stmt_cache_drop(sqlite3 *db)
{
    for (size_t i = 0; i < STMT_CACHE; i++)
        if (stmt_cache[i].db == db) {
            sqlite3_finalize(stmt_cache[i].s);
            stmt_cache[i].db = NULL;
            stmt_cache[i].s = NULL;
            stmt_cache[i].busy = false;
        }
}

const char *store_col_text(sqlite3_stmt *s, int col)
{
    const unsigned char *t = sqlite3_column_text(s, col);
    return t ? (const char *)t : "";
}

/* Text columns hold UTF-8, and JSON output (export, -o json) needs it. */
bool store_utf8_ok(const char *s)
{
    json_t *j = json_string(s); /* NULL for invalid UTF-8 */
    json_decref(j);
    return j != NULL;
}

bool store_copy(char *dst, size_t n, const char *src)
{
    size_t len = strlen(src);
    if (len >= n)
        return false;
    memcpy(dst, src, len + 1);
    return true;
}

int64_t store_now_ms(void)
{
    return stk_clock_ms(CLOCK_REALTIME);
}

/* The lock file serialises writers before SQLite does, so that the head file
 * is written in commit order (audit.c); verify takes it shared to read the
 * head file and pin its snapshot together. Taken fairly (a blocking flock:
 * every waiter is woken when the holder lets go) and with a bound that a
 * queue of every live sandbox's writers stays under (store.h), so a stopped
 * or stuck holder is named instead of hung behind. */
int store_lock(struct stk_store *st, bool exclusive, struct stk_error **err)
{
    int holder = 0;
    int r = stk_flock_wait(st->lock_fd, exclusive ? LOCK_EX : LOCK_SH, st->lock_wait_ms, &holder);
    if (r == -ETIMEDOUT) {
        char who[128];
        stk_pid_describe(holder, who, sizeof(who));
        return stk_error_make(err, EBUSY,
                              "waited %d ms for the store's write lock %s/%s, held by %s all "
                              "that time",
                              st->lock_wait_ms, st->dir, STK_STORE_LOCK_FILE, who);
    }
    if (r < 0)
        return stk_error_errno(err, -r, "locking %s/%s", st->dir, STK_STORE_LOCK_FILE);
    return 0;
}

void stk_store_set_lock_wait_ms(struct stk_store *st, int ms)
{
    st->lock_wait_ms = ms > 0 ? ms : STK_STORE_LOCK_WAIT_MS;
}

void store_unlock(struct stk_store *st)
{
    (void)flock(st->lock_fd, LOCK_UN);
}

int store_tx_begin(struct stk_store *st, struct stk_error **err)
{
    if (st->in_tx)
        return stk_error_make(err, EDEADLK, "a store transaction is already open");
    int r = store_lock(st, true, err);
    if (r < 0)
        return r;
    int rc = sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        store_unlock(st);
        return store_sql_error(st, rc, err, "starting a transaction");
    }
    st->in_tx = true;
    st->head_dirty = false;
    return 0;
}

void store_tx_rollback(struct stk_store *st)
{
    if (!st->in_tx)
        return;
    (void)sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    st->in_tx = false;
    st->head_dirty = false;
    store_unlock(st);
}

int store_tx_commit(struct stk_store *st, struct stk_error **err)
{
    int rc = sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        int r = store_sql_error(st, rc, err, "committing");
        store_tx_rollback(st);
        return r;
    }
    st->in_tx = false;
    int r = 0;
    if (st->head_dirty)
        r = audit_head_write(st, err);
    st->head_dirty = false;
    store_unlock(st);
    return r;
}

/* ---- field checks ------------------------------------------------------------------- */

static bool name_chars_ok(const char *s)
{
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_' || *s == '.'))
            return false;
    return true;
}

/* A fixed array must hold its NUL: a caller that filled it to the brim
 * passed a longer string than the column allows. */
static int check_fixed(const char *what, const char *field, const char *v, size_t size,
                       struct stk_error **err)
{
    if (strnlen(v, size) == size)
        return stk_error_make(err, EINVAL,
                              "%s field '%s' is too long: at most %zu bytes (not NUL-terminated "
                              "within %zu)",
                              what, field, size - 1, size);
    if (!store_utf8_ok(v))
        return stk_error_make(err, EINVAL, "%s field '%s' is not valid UTF-8", what, field);
    return 0;
}

static int check_owned(const char *what, const char *field, const char *v, size_t max,
                       struct stk_error **err)
{
    if (v && strlen(v) > max)
        return stk_error_make(err, EINVAL, "%s field '%s' is %zu bytes, the limit is %zu", what,
                              field, strlen(v), max);
    return 0;
}

static int check_json_object(const char *what, const char *field, const char *v,
                             struct stk_error **err)
{
    if (!v)
        return 0;
    json_error_t je;
    json_t *j = json_loads(v, JSON_REJECT_DUPLICATES, &je);
    bool obj = json_is_object(j);
    json_decref(j);
    if (!j)
        return stk_error_make(err, EINVAL, "%s field '%s' is not valid JSON: %s", what, field,
                              je.text);
    if (!obj)
        return stk_error_make(err, EINVAL, "%s field '%s' must be a JSON object", what, field);
    return 0;
}

static int check_id(const char *what, const char *field, const char *v, struct stk_error **err)
{
    if (!*v)
        return stk_error_make(err, EINVAL, "%s field '%s' is empty", what, field);
    if (!name_chars_ok(v) || v[0] == '.')
        return stk_error_make(err, EINVAL,
                              "%s field '%s' ('%s') may hold only letters, digits, '-', '_' and "
                              "'.', and may not start with '.'",
                              what, field, v);
    return 0;
}

/* Everything sb_update may write. */
static int sb_check_mutable(const struct stk_sb_rec *r, struct stk_error **err)
{
    static const char what[] = "sandbox";
    const struct {
        const char *name, *v;
        size_t size;
    } fixed[] = {
        {"id", r->id, sizeof(r->id)},
        {"name", r->name, sizeof(r->name)},
        {"tenant", r->tenant, sizeof(r->tenant)},
        {"project", r->project, sizeof(r->project)},
        {"owner", r->owner, sizeof(r->owner)},
        {"pool", r->pool, sizeof(r->pool)},
    };
    int ret = 0;
    for (size_t i = 0; i < STK_ARRAY_SIZE(fixed) && ret >= 0; i++)
        ret = check_fixed(what, fixed[i].name, fixed[i].v, fixed[i].size, err);
    if (ret >= 0)
        ret = check_id(what, "id", r->id, err);
    if (ret >= 0 && r->pool[0] && !name_chars_ok(r->pool))
        ret =
            stk_error_make(err, EINVAL, "sandbox field 'pool' ('%s') is not a pool name", r->pool);
    if (ret >= 0)
        ret = check_owned(what, "labels", r->labels, STK_STORE_MAX_JSON, err);
    if (ret >= 0)
        ret = check_owned(what, "result", r->result, STK_STORE_MAX_JSON, err);
    if (ret >= 0)
        ret = check_json_object(what, "labels", r->labels, err);
    if (ret >= 0)
        ret = check_json_object(what, "result", r->result, err);
    return ret;
}

static int sb_check(const struct stk_sb_rec *r, struct stk_error **err)
{
    static const char what[] = "sandbox";
    int ret = sb_check_mutable(r, err);
    if (ret >= 0)
        ret = check_fixed(what, "runtime", r->runtime, sizeof(r->runtime), err);
    if (ret >= 0)
        ret = check_fixed(what, "reason", r->reason, sizeof(r->reason), err);
    if (ret >= 0)
        ret = check_fixed(what, "message", r->message, sizeof(r->message), err);
    /* sim: a simulated sandbox, which no runtime runs; pod: a Pod on a
     * cluster (the kubernetes backend) */
    static const char *const runtimes[] = {"crun", "runc", "runsc", "sim", "pod"};
    if (ret >= 0 && r->runtime[0] &&
        stk_enum_lookup(runtimes, STK_ARRAY_SIZE(runtimes), r->runtime) < 0)
        ret = stk_error_make(err, EINVAL,
                             "sandbox field 'runtime' is '%s', not one of crun|runc|runsc|sim|pod "
                             "(or empty)",
                             r->runtime);
    if (ret >= 0 && (unsigned)r->phase >= _STK_SB_N)
        ret = stk_error_make(err, EINVAL, "sandbox field 'phase' is %d, not a phase", r->phase);
    if (ret >= 0)
        ret = check_owned(what, "spec", r->spec, STK_STORE_MAX_DOC, err);
    if (ret >= 0)
        ret = check_owned(what, "env", r->env, STK_STORE_MAX_DOC, err);
    if (ret >= 0 && r->namespace_known)
        ret = check_fixed(what, "namespace", r->namespace, sizeof(r->namespace), err);
    return ret;
}

/* ---- sandboxes ------------------------------------------------------------------------ */

#define SB_COLS                                                                                    \
    "id, name, tenant, project, owner, runtime, pool, pool_member, phase, reason, message,"        \
    " exit_code, created_ms, updated_ms, monitor_pid, monitor_start, init_pid, spec, env,"         \
    " labels, result, handle"
/* SB_COLS and the recorded namespace (NULL when none is) */
#define SB_NS_COL "(SELECT namespace FROM sandbox_namespaces n WHERE n.id = sandboxes.id)"
#define SB_SELECT SB_COLS ", " SB_NS_COL

void stk_sb_rec_free(struct stk_sb_rec *r)
{
    if (!r)
        return;
    free(r->spec);
    free(r->env);
    free(r->labels);
    free(r->result);
    free(r->handle);
    r->spec = r->env = r->labels = r->result = r->handle = NULL;
}

void stk_sb_recs_free(struct stk_sb_rec *r, size_t n)
{
    for (size_t i = 0; r && i < n; i++)
        stk_sb_rec_free(&r[i]);
    free(r);
}

static char *col_dup(sqlite3_stmt *s, int col)
{
    const unsigned char *t = sqlite3_column_text(s, col);
    return t ? stk_xstrdup((const char *)t) : NULL;
}

/* A row that does not fit the struct was not written by this code. */
static int sb_from_row(sqlite3_stmt *s, struct stk_sb_rec *r, struct stk_error **err)
{
    memset(r, 0, sizeof(*r));
    char *const fixed[] = {r->id, r->name, r->tenant, r->project, r->owner, r->runtime, r->pool};
    const size_t sizes[] = {sizeof(r->id),      sizeof(r->name),  sizeof(r->tenant),
                            sizeof(r->project), sizeof(r->owner), sizeof(r->runtime),
                            sizeof(r->pool)};
    for (size_t i = 0; i < STK_ARRAY_SIZE(fixed); i++)
        if (!store_copy(fixed[i], sizes[i], store_col_text(s, (int)i)))
            return stk_error_make(err, EUCLEAN, "sandbox %s: column %d in the database is too long",
                                  store_col_text(s, 0), (int)i);
    r->pool_member = sqlite3_column_int(s, 7) != 0;
    int phase = stk_enum_lookup(stk_sb_phase_names, _STK_SB_N, store_col_text(s, 8));
    if (phase < 0)
        return stk_error_make(err, EUCLEAN, "sandbox %s: unknown phase '%s' in the database", r->id,
                              store_col_text(s, 8));
    r->phase = (enum stk_sb_phase)phase;
    if (!store_copy(r->reason, sizeof(r->reason), store_col_text(s, 9)) ||
        !store_copy(r->message, sizeof(r->message), store_col_text(s, 10)))
        return stk_error_make(err, EUCLEAN, "sandbox %s: reason or message too long", r->id);
    r->exit_code = sqlite3_column_int(s, 11);
    r->created_ms = sqlite3_column_int64(s, 12);
    r->updated_ms = sqlite3_column_int64(s, 13);
    r->monitor_pid = sqlite3_column_int(s, 14);
    r->monitor_start = sqlite3_column_int64(s, 15);
    r->init_pid = sqlite3_column_int(s, 16);
    r->spec = col_dup(s, 17);
    r->env = col_dup(s, 18);
    r->labels = col_dup(s, 19);
    r->result = col_dup(s, 20);
    r->handle = col_dup(s, 21);
    r->namespace_known = sqlite3_column_type(s, 22) != SQLITE_NULL;
    if (r->namespace_known &&
        !store_copy(r->namespace, sizeof(r->namespace), store_col_text(s, 22)))
        return stk_error_make(err, EUCLEAN, "sandbox %s: namespace in the database is too long",
                              r->id);
    return 0;
}

static void bind_text(sqlite3_stmt *s, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(s, i);
}

/* Inside a write transaction: the namespace sandbox id's documents resolve
 * to ("" none), or NULL: not known (a listing reads the documents). */
static int ns_record(struct stk_store *st, const char *id, const char *ns, struct stk_error **err)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st,
                          ns ? "INSERT OR REPLACE INTO sandbox_namespaces (id, namespace)"
                               " VALUES (?1, ?2)"
                             : "DELETE FROM sandbox_namespaces WHERE id = ?1",
                          &s, err);
    if (r < 0)
        return r;
    bind_text(s, 1, id);
    if (ns)
        bind_text(s, 2, ns);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE)
        return store_sql_error(st, rc, err, "recording a sandbox's namespace");
    return 0;
}

static int count_live(struct stk_store *st, int64_t *ret, struct stk_error **err)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st, "SELECT count(*) FROM sandboxes WHERE phase != 'deleted'", &s, err);
    if (r < 0)
        return r;
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW)
        return store_sql_error(st, rc, err, "counting sandboxes");
    *ret = sqlite3_column_int64(s, 0);
    return 0;
}

/* Names are unique per tenant among live sandboxes (Kubernetes' namespaced
 * names): -EEXIST when another live one (not `except`) has it. Unclaimed
 * pool members all carry their template's name and do not count. */
static int name_free(struct stk_store *st, const char *tenant, const char *name, const char *except,
                     struct stk_error **err)
{
    if (!name || !*name)
        return 0;
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st,
                          "SELECT 1 FROM sandboxes WHERE tenant = ?1 AND name = ?2"
                          " AND phase != 'deleted' AND pool_member = 0 AND id != ?3 LIMIT 1",
                          &s, err);
    if (r < 0)
        return r;
    bind_text(s, 1, tenant);
    bind_text(s, 2, name);
    bind_text(s, 3, except ? except : "");
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        return stk_error_make(err, EEXIST, "a sandbox named '%s' already exists in tenant '%s'",
                              name, tenant);
    if (rc != SQLITE_DONE)
        return store_sql_error(st, rc, err, "checking a sandbox name");
    return 0;
}

static int sb_insert_tx(struct stk_store *st, const struct stk_sb_rec *r, struct stk_error **err)
{
    int64_t live = 0;
    int ret = count_live(st, &live, err);
    if (ret < 0)
        return ret;
    if (live >= STK_STORE_MAX_LIVE)
        return stk_error_make(err, EDQUOT,
                              "there are already %lld sandboxes (the limit is %d): delete some",
                              (long long)live, STK_STORE_MAX_LIVE);
    if (st->unique_names && !r->pool_member &&
        (ret = name_free(st, r->tenant, r->name, NULL, err)) < 0)
        return ret;
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    ret = store_prepare(st,
                        "INSERT INTO sandboxes (" SB_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7,"
                        " ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)",
                        &s, err);
    if (ret < 0)
        return ret;
    int64_t now = store_now_ms();
    const char *texts[] = {r->id, r->name, r->tenant, r->project, r->owner, r->runtime, r->pool};
    for (int i = 0; i < (int)STK_ARRAY_SIZE(texts); i++)
        bind_text(s, i + 1, texts[i]);
    sqlite3_bind_int(s, 8, r->pool_member);
    bind_text(s, 9, stk_sb_phase_names[r->phase]);
    bind_text(s, 10, r->reason);
    bind_text(s, 11, r->message);
    sqlite3_bind_int(s, 12, r->exit_code);
    sqlite3_bind_int64(s, 13, r->created_ms ? r->created_ms : now);
    sqlite3_bind_int64(s, 14, now);
    sqlite3_bind_int(s, 15, r->monitor_pid);
    sqlite3_bind_int64(s, 16, r->monitor_start);
    sqlite3_bind_int(s, 17, r->init_pid);
    bind_text(s, 18, r->spec);
    bind_text(s, 19, r->env);
    bind_text(s, 20, r->labels);
    bind_text(s, 21, r->result);
    bind_text(s, 22, r->handle);
    int rc = sqlite3_step(s);
    if ((rc & 0xff) == SQLITE_CONSTRAINT)
        return stk_error_make(err, EEXIST, "a sandbox with id '%s' already exists", r->id);
    if (rc != SQLITE_DONE)
        return store_sql_error(st, rc, err, "inserting a sandbox");
    return r->namespace_known ? ns_record(st, r->id, r->namespace, err) : 0;
}

int stk_store_sb_insert(struct stk_store *st, const struct stk_sb_rec *r, struct stk_error **err)
{
    int ret = sb_check(r, err);
    if (ret < 0)
        return ret;
    ret = store_tx_begin(st, err);
    if (ret < 0)
        return ret;
    ret = sb_insert_tx(st, r, err);
    if (ret < 0) {
        store_tx_rollback(st);
        return ret;
    }
    return store_tx_commit(st, err);
}

static int sb_select_one(struct stk_store *st, const char *sql, const char *key,
                         struct stk_sb_rec *ret, struct stk_error **err)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st, sql, &s, err);
    if (r < 0)
        return r;
    bind_text(s, 1, key);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE)
        return -ENOENT;
    if (rc != SQLITE_ROW)
        return store_sql_error(st, rc, err, "reading a sandbox");
    struct stk_sb_rec rec;
    r = sb_from_row(s, &rec, err);
    if (r < 0) {
        stk_sb_rec_free(&rec);
        return r;
    }
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        stk_sb_rec_free(&rec);
        return stk_error_make(err, EINVAL,
                              "'%s' is ambiguous: several sandboxes are named so; use an id", key);
    }
    *ret = rec;
    return 0;
}

void stk_store_unique_names(struct stk_store *st, bool on)
{
    st->unique_names = on;
}

bool stk_store_names_per_tenant(const struct stk_store *st)
{
    return st->unique_names;
}

int stk_store_sb_get_id(struct stk_store *st, const char *id, struct stk_sb_rec *ret,
                        struct stk_error **err)
{
    return sb_select_one(st, "SELECT " SB_SELECT " FROM sandboxes WHERE id = ?1", id, ret, err);
}

int stk_store_sb_get(struct stk_store *st, const char *id_or_name, struct stk_sb_rec *ret,
                     struct stk_error **err)
{
    if (!id_or_name || !*id_or_name)
        return stk_error_make(err, EINVAL, "no sandbox id or name given");
    int r = sb_select_one(st, "SELECT " SB_SELECT " FROM sandboxes WHERE id = ?1", id_or_name, ret,
                          err);
    if (r != -ENOENT)
        return r;
    r = sb_select_one(st,
                      "SELECT " SB_SELECT " FROM sandboxes WHERE name = ?1 AND phase != 'deleted'"
                      " ORDER BY created_ms LIMIT 2",
                      id_or_name, ret, err);
    if (r == -ENOENT)
        return stk_error_make(err, ENOENT, "no sandbox '%s'", id_or_name);
    return r;
}

static int sb_row(sqlite3_stmt *s, void *elem, struct stk_error **err);
static void sb_recs_free(void *v, size_t n);
static int collect_rows(struct stk_store *st, sqlite3_stmt *s, size_t size,
                        int (*row)(sqlite3_stmt *s, void *elem, struct stk_error **err),
                        void (*free_all)(void *v, size_t n), void **ret, size_t *ret_n,
                        const char *what, struct stk_error **err);

int stk_store_sb_find_name(struct stk_store *st, const char *name, struct stk_sb_rec **ret,
                           size_t *ret_n, struct stk_error **err)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r =
        store_prepare(st,
                      "SELECT " SB_SELECT " FROM sandboxes WHERE name = ?1 AND phase != 'deleted'"
                      " AND pool_member = 0 ORDER BY created_ms, id LIMIT ?2",
                      &s, err);
    if (r < 0)
        return r;
    bind_text(s, 1, name);
    sqlite3_bind_int(s, 2, STK_STORE_MAX_SAME_NAME);
    void *v = NULL;
    size_t n = 0;
    r = collect_rows(st, s, sizeof(struct stk_sb_rec), sb_row, sb_recs_free, &v, &n,
                     "finding sandboxes by name", err);
    if (r < 0)
        return r;
    *ret = v;
    *ret_n = n;
    return 0;
}

/* Every row of s into an array of elements of `size`, each filled by row();
 * on error the rows read so far are freed with free_all(). One loop for
 * every list the store returns. */
static int collect_rows(struct stk_store *st, sqlite3_stmt *s, size_t size,
                        int (*row)(sqlite3_stmt *s, void *elem, struct stk_error **err),
                        void (*free_all)(void *v, size_t n), void **ret, size_t *ret_n,
                        const char *what, struct stk_error **err)
{
    char *v = NULL;
    size_t n = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            v = stk_xrealloc(v, cap * size);
        }
        int r = row(s, v + n++ * size, err);
        if (r < 0) {
            free_all(v, n);
            return r;
        }
    }
    if (rc != SQLITE_DONE) {
        free_all(v, n);
        return store_sql_error(st, rc, err, what);
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

static int sb_row(sqlite3_stmt *s, void *elem, struct stk_error **err)
{
    return sb_from_row(s, elem, err);
}

static void sb_recs_free(void *v, size_t n)
{
    stk_sb_recs_free(v, n);
}

/* The columns of SB_COLS up to init_pid; the documents, labels, result
 * and handle as NULL: SQLite never reads their pages (a record's documents
 * may be a MiB each). */
#define SB_BRIEF_COLS                                                                              \
    "id, name, tenant, project, owner, runtime, pool, pool_member, phase, reason, message,"        \
    " exit_code, created_ms, updated_ms, monitor_pid, monitor_start, init_pid, NULL, NULL,"        \
    " NULL, NULL, NULL, " SB_NS_COL

static int sb_list(struct stk_store *st, bool include_deleted, bool brief, struct stk_sb_rec **ret,
                   size_t *ret_n, struct stk_error **err)
{
    static const char *const sql[2][2] = {
        {"SELECT " SB_SELECT " FROM sandboxes WHERE phase != 'deleted' ORDER BY created_ms, id",
         "SELECT " SB_SELECT " FROM sandboxes ORDER BY created_ms, id"},
        {"SELECT " SB_BRIEF_COLS " FROM sandboxes WHERE phase != 'deleted'"
         " ORDER BY created_ms, id",
         "SELECT " SB_BRIEF_COLS " FROM sandboxes ORDER BY created_ms, id"},
    };
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st, sql[brief][include_deleted], &s, err);
    if (r < 0)
        return r;
    void *v = NULL;
    size_t n = 0;
    r = collect_rows(st, s, sizeof(struct stk_sb_rec), sb_row, sb_recs_free, &v, &n,
                     "listing sandboxes", err);
    if (r < 0)
        return r;
    *ret = v;
    *ret_n = n;
    return 0;
}

int stk_store_sb_list(struct stk_store *st, bool include_deleted, struct stk_sb_rec **ret,
                      size_t *ret_n, struct stk_error **err)
{
    return sb_list(st, include_deleted, false, ret, ret_n, err);
}

int stk_store_sb_list_brief(struct stk_store *st, bool include_deleted, struct stk_sb_rec **ret,
                            size_t *ret_n, struct stk_error **err)
{
    return sb_list(st, include_deleted, true, ret, ret_n, err);
}

int stk_store_sb_in_flight(struct stk_store *st, char (**ret)[64], size_t *ret_n,
                           struct stk_error **err)
{
    /* ids only: every command runs this (recovery), so it must not load
     * the documents of every sandbox */
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st,
                          "SELECT id FROM sandboxes WHERE phase IN ('pending', 'provisioning',"
                          " 'ready', 'stopping', 'starting', 'deleting') ORDER BY created_ms, id",
                          &s, err);
    if (r < 0)
        return r;
    char(*v)[64] = NULL;
    size_t n = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            v = stk_xrealloc(v, cap * sizeof(*v));
        }
        if (!store_copy(v[n], sizeof(v[n]), store_col_text(s, 0)))
            continue;
        n++;
    }
    if (rc != SQLITE_DONE) {
        free(v);
        return store_sql_error(st, rc, err, "listing sandboxes in flight");
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

static int sb_phase_tx(struct stk_store *st, const char *id, enum stk_sb_phase *ret,
                       struct stk_error **err)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st, "SELECT phase FROM sandboxes WHERE id = ?1", &s, err);
    if (r < 0)
        return r;
    bind_text(s, 1, id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE)
        return stk_error_make(err, ENOENT, "no sandbox with id '%s'", id);
    if (rc != SQLITE_ROW)
        return store_sql_error(st, rc, err, "reading a sandbox's phase");
    int p = stk_enum_lookup(stk_sb_phase_names, _STK_SB_N, store_col_text(s, 0));
    if (p < 0)
        return stk_error_make(err, EUCLEAN, "sandbox %s: unknown phase '%s' in the database", id,
                              store_col_text(s, 0));
    *ret = (enum stk_sb_phase)p;
    return 0;
}

/* The audit details of a phase change: the caller's object with from, to and
 * the reason added unless it set them. */
static int phase_details(const char *details_json, enum stk_sb_phase from, enum stk_sb_phase to,
                         const char *reason, char **ret, struct stk_error **err)
{
    json_t *j;
    if (details_json) {
        json_error_t je;
        j = json_loads(details_json, JSON_REJECT_DUPLICATES, &je);
        if (!json_is_object(j)) {
            json_decref(j);
            return stk_error_make(err, EINVAL, "audit details must be a JSON object%s%s",
                                  j ? "" : ": ", j ? "" : je.text);
        }
    } else {
        j = json_object();
    }
    if (!json_object_get(j, "from"))
        json_object_set_new(j, "from", json_string(stk_sb_phase_names[from]));
    if (!json_object_get(j, "to"))
        json_object_set_new(j, "to", json_string(stk_sb_phase_names[to]));
    if (reason && *reason && !json_object_get(j, "reason"))
        json_object_set_new(j, "reason", json_string(reason));
    *ret = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    if (!*ret)
        stk_oom();
    return 0;
}

static int set_phase_tx(struct stk_store *st, const char *id, int expect, enum stk_sb_phase to,
                        const char *reason, const char *message, const char *actor,
                        const char *audit_event, const char *details_json, struct stk_error **err)
{
    enum stk_sb_phase from = STK_SB_PENDING;
    int r = sb_phase_tx(st, id, &from, err);
    if (r < 0)
        return r;
    if (expect >= 0 && (enum stk_sb_phase)expect != from)
        return stk_error_make(err, ESTALE, "sandbox %s is %s, not %s", id, stk_sb_phase_names[from],
                              stk_sb_phase_names[expect]);
    if (!stk_sb_transition_ok(from, to))
        return stk_error_make(err, EINVAL, "sandbox %s cannot go from %s to %s", id,
                              stk_sb_phase_names[from], stk_sb_phase_names[to]);
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    r = store_prepare(st,
                      "UPDATE sandboxes SET phase = ?2, reason = coalesce(?3, reason),"
                      " message = coalesce(?4, message), updated_ms = ?5 WHERE id = ?1",
                      &s, err);
    if (r < 0)
        return r;
    bind_text(s, 1, id);
    bind_text(s, 2, stk_sb_phase_names[to]);
    bind_text(s, 3, reason);
    bind_text(s, 4, message);
    sqlite3_bind_int64(s, 5, store_now_ms());
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE)
        return store_sql_error(st, rc, err, "changing a sandbox's phase");
    if (!audit_event)
        return 0;
    _cleanup_free_ char *details = NULL;
    r = phase_details(details_json, from, to, reason, &details, err);
    if (r < 0)
        return r;
    return audit_append_tx(st, id, audit_event, actor, details, err);
}

int stk_store_sb_set_phase(struct stk_store *st, const char *id, int expect, enum stk_sb_phase to,
                           const char *reason, const char *message, const char *actor,
                           const char *audit_event, const char *audit_details_json,
                           struct stk_error **err)
{
    if (!id || !*id)
        return stk_error_make(err, EINVAL, "no sandbox id given");
    if ((unsigned)to >= _STK_SB_N || expect < -1 || expect >= _STK_SB_N)
        return stk_error_make(err, EINVAL, "not a phase: %d",
                              expect >= _STK_SB_N ? expect : (int)to);
    if (reason && strlen(reason) >= sizeof(((struct stk_sb_rec *)0)->reason))
        return stk_error_make(err, EINVAL, "sandbox field 'reason' is too long: at most %zu bytes",
                              sizeof(((struct stk_sb_rec *)0)->reason) - 1);
    if (message && strlen(message) >= sizeof(((struct stk_sb_rec *)0)->message))
        return stk_error_make(err, EINVAL, "sandbox field 'message' is too long: at most %zu bytes",
                              sizeof(((struct stk_sb_rec *)0)->message) - 1);
    int r = store_tx_begin(st, err);
    if (r < 0)
        return r;
    r = set_phase_tx(st, id, expect, to, reason, message, actor, audit_event, audit_details_json,
                     err);
    if (r < 0) {
        store_tx_rollback(st);
        return r;
    }
    return store_tx_commit(st, err);
}

/* One statement on one record's columns, outside any read-modify-write:
 * what a monitor writes must never carry back a snapshot it read earlier
 * (a claim may have changed the record since). */
static int sb_set_columns(struct stk_store *st, const char *sql, const char *id, int64_t a,
                          int64_t b, const char *text, struct stk_error **err)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int ret = store_prepare(st, sql, &s, err);
    if (ret < 0)
        return ret;
    bind_text(s, 1, id);
    sqlite3_bind_int64(s, 2, a);
    sqlite3_bind_int64(s, 3, b);
    bind_text(s, 4, text);
    sqlite3_bind_int64(s, 5, store_now_ms());
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE)
        return store_sql_error(st, rc, err, "updating a sandbox");
    if (sqlite3_changes(st->db) == 0)
        return stk_error_make(err, ENOENT, "no sandbox with id '%s'", id);
    return 0;
}

int stk_store_sb_set_pids(struct stk_store *st, const char *id, int monitor_pid, int init_pid,
                          struct stk_error **err)
{
    return sb_set_columns(st,
                          "UPDATE sandboxes SET monitor_pid = ?2, init_pid = ?3, updated_ms = ?5"
                          " WHERE id = ?1 AND ?4 IS NULL",
                          id, monitor_pid, init_pid, NULL, err);
}

int stk_store_sb_set_result(struct stk_store *st, const char *id, int exit_code,
                            const char *result_json, struct stk_error **err)
{
    if (result_json && strlen(result_json) > STK_STORE_MAX_JSON)
        return stk_error_make(err, EINVAL, "sandbox %s: result: longer than %d bytes", id,
                              STK_STORE_MAX_JSON);
    return sb_set_columns(st,
                          "UPDATE sandboxes SET exit_code = ?2, monitor_pid = 0, init_pid = 0,"
                          " result = ?4, updated_ms = ?5 WHERE id = ?1 AND ?3 = 0",
                          id, exit_code, 0, result_json, err);
}

int stk_store_sb_set_handle(struct stk_store *st, const char *id, const char *handle,
                            struct stk_error **err)
{
    if (handle && strlen(handle) > STK_STORE_MAX_JSON)
        return stk_error_make(err, EINVAL, "sandbox %s: handle: longer than %d bytes", id,
                              STK_STORE_MAX_JSON);
    return sb_set_columns(st,
                          "UPDATE sandboxes SET handle = ?4, updated_ms = ?5 WHERE id = ?1"
                          " AND ?2 = ?3",
                          id, 0, 0, handle, err);
}

int stk_store_sb_update(struct stk_store *st, const struct stk_sb_rec *r, struct stk_error **err)
{
    int ret = sb_check_mutable(r, err);
    if (ret < 0)
        return ret;
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    ret = store_prepare(st,
                        "UPDATE sandboxes SET name = ?2, tenant = ?3, project = ?4, owner = ?5,"
                        " pool = ?6, pool_member = ?7, exit_code = ?8, monitor_pid = ?9,"
                        " monitor_start = ?10, init_pid = ?11, labels = ?12, result = ?13,"
                        " updated_ms = ?14 WHERE id = ?1",
                        &s, err);
    if (ret < 0)
        return ret;
    const char *texts[] = {r->id, r->name, r->tenant, r->project, r->owner, r->pool};
    for (int i = 0; i < (int)STK_ARRAY_SIZE(texts); i++)
        bind_text(s, i + 1, texts[i]);
    sqlite3_bind_int(s, 7, r->pool_member);
    sqlite3_bind_int(s, 8, r->exit_code);
    sqlite3_bind_int(s, 9, r->monitor_pid);
    sqlite3_bind_int64(s, 10, r->monitor_start);
    sqlite3_bind_int(s, 11, r->init_pid);
    bind_text(s, 12, r->labels);
    bind_text(s, 13, r->result);
    sqlite3_bind_int64(s, 14, store_now_ms());
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE)
        return store_sql_error(st, rc, err, "updating a sandbox");
    if (sqlite3_changes(st->db) == 0)
        return stk_error_make(err, ENOENT, "no sandbox with id '%s'", r->id);
    return 0;
}

/* ---- warm pools --------------------------------------------------------------------------- */

void stk_pool_rec_free(struct stk_pool_rec *p)
{
    if (!p)
        return;
    free(p->template_spec);
    free(p->env);
    p->template_spec = p->env = NULL;
}

void stk_pool_recs_free(struct stk_pool_rec *p, size_t n)
{
    for (size_t i = 0; p && i < n; i++)
        stk_pool_rec_free(&p[i]);
    free(p);
}

#define POOL_COLS                                                                                  \
    "name, size, template_spec, env, fingerprint, created_ms, tenant, project, owner, mechanism"

static int pool_check(const struct stk_pool_rec *p, struct stk_error **err)
{
    static const char what[] = "pool";
    int r = check_fixed(what, "name", p->name, sizeof(p->name), err);
    if (r >= 0)
        r = check_id(what, "name", p->name, err);
    if (r >= 0)
        r = check_fixed(what, "fingerprint", p->fingerprint, sizeof(p->fingerprint), err);
    if (r >= 0)
        r = check_fixed(what, "tenant", p->tenant, sizeof(p->tenant), err);
    if (r >= 0)
        r = check_fixed(what, "project", p->project, sizeof(p->project), err);
    if (r >= 0)
        r = check_fixed(what, "owner", p->owner, sizeof(p->owner), err);
    if (r >= 0)
        r = check_fixed(what, "mechanism", p->mechanism, sizeof(p->mechanism), err);
    if (r >= 0 && (p->size < 0 || p->size > STK_STORE_MAX_POOL))
        r = stk_error_make(err, EINVAL, "pool field 'size' is %d, not within 0..%d", p->size,
                           STK_STORE_MAX_POOL);
    if (r >= 0)
        r = check_owned(what, "template_spec", p->template_spec, STK_STORE_MAX_DOC, err);
    if (r >= 0)
        r = check_owned(what, "env", p->env, STK_STORE_MAX_DOC, err);
    return r;
}

int stk_store_pool_insert(struct stk_store *st, const struct stk_pool_rec *p,
                          struct stk_error **err)
{
    int r = pool_check(p, err);
    if (r < 0)
        return r;
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    r = store_prepare(
        st, "INSERT INTO pools (" POOL_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        &s, err);
    if (r < 0)
        return r;
    bind_text(s, 1, p->name);
    sqlite3_bind_int(s, 2, p->size);
    bind_text(s, 3, p->template_spec);
    bind_text(s, 4, p->env);
    bind_text(s, 5, p->fingerprint);
    sqlite3_bind_int64(s, 6, p->created_ms ? p->created_ms : store_now_ms());
    bind_text(s, 7, p->tenant);
    bind_text(s, 8, p->project);
    bind_text(s, 9, p->owner);
    bind_text(s, 10, p->mechanism);
    int rc = sqlite3_step(s);
    if ((rc & 0xff) == SQLITE_CONSTRAINT)
        return stk_error_make(err, EEXIST, "a pool named '%s' already exists", p->name);
    if (rc != SQLITE_DONE)
        return store_sql_error(st, rc, err, "inserting a pool");
    return 0;
}

static int pool_from_row(sqlite3_stmt *s, struct stk_pool_rec *p, struct stk_error **err)
{
    memset(p, 0, sizeof(*p));
    if (!store_copy(p->name, sizeof(p->name), store_col_text(s, 0)) ||
        !store_copy(p->fingerprint, sizeof(p->fingerprint), store_col_text(s, 4)) ||
        !store_copy(p->tenant, sizeof(p->tenant), store_col_text(s, 6)) ||
        !store_copy(p->project, sizeof(p->project), store_col_text(s, 7)) ||
        !store_copy(p->owner, sizeof(p->owner), store_col_text(s, 8)) ||
        !store_copy(p->mechanism, sizeof(p->mechanism), store_col_text(s, 9)))
        return stk_error_make(err, EUCLEAN, "pool %s: a column in the database is too long",
                              store_col_text(s, 0));
    p->size = sqlite3_column_int(s, 1);
    p->template_spec = col_dup(s, 2);
    p->env = col_dup(s, 3);
    p->created_ms = sqlite3_column_int64(s, 5);
    return 0;
}

int stk_store_pool_get(struct stk_store *st, const char *tenant, const char *name,
                       struct stk_pool_rec *ret, struct stk_error **err)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st,
                          "SELECT " POOL_COLS " FROM pools WHERE name = ?1"
                          " AND (?2 IS NULL OR tenant = ?2) ORDER BY tenant LIMIT 2",
                          &s, err);
    if (r < 0)
        return r;
    bind_text(s, 1, name);
    bind_text(s, 2, tenant);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE)
        return stk_error_make(err, ENOENT, "no pool '%s'", name);
    if (rc != SQLITE_ROW)
        return store_sql_error(st, rc, err, "reading a pool");
    struct stk_pool_rec p;
    r = pool_from_row(s, &p, err);
    if (r < 0) {
        stk_pool_rec_free(&p);
        return r;
    }
    if (!tenant && sqlite3_step(s) == SQLITE_ROW) {
        r = stk_error_make(err, ENOTUNIQ,
                           "pools named '%s' are in several tenants ('%s', '%s', ...): "
                           "name the tenant",
                           name, p.tenant, store_col_text(s, 6));
        stk_pool_rec_free(&p);
        return r;
    }
    *ret = p;
    return 0;
}

static int pool_row(sqlite3_stmt *s, void *elem, struct stk_error **err)
{
    return pool_from_row(s, elem, err);
}

static void pool_recs_free(void *v, size_t n)
{
    stk_pool_recs_free(v, n);
}

int stk_store_pool_list(struct stk_store *st, struct stk_pool_rec **ret, size_t *ret_n,
                        struct stk_error **err)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st, "SELECT " POOL_COLS " FROM pools ORDER BY name", &s, err);
    if (r < 0)
        return r;
    void *v = NULL;
    size_t n = 0;
    r = collect_rows(st, s, sizeof(struct stk_pool_rec), pool_row, pool_recs_free, &v, &n,
                     "listing pools", err);
    if (r < 0)
        return r;
    *ret = v;
    *ret_n = n;
    return 0;
}

int stk_store_pool_delete(struct stk_store *st, const char *tenant, const char *name,
                          struct stk_error **err)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st, "DELETE FROM pools WHERE name = ?1 AND tenant = ?2", &s, err);
    if (r < 0)
        return r;
    bind_text(s, 1, name);
    bind_text(s, 2, tenant);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE)
        return store_sql_error(st, rc, err, "deleting a pool");
    if (sqlite3_changes(st->db) == 0)
        return stk_error_make(err, ENOENT, "no pool '%s'", name);
    return 0;
}

static int claim_tx(struct stk_store *st, const char *tenant, const char *pool,
                    const struct stk_sb_rec *c, const char *actor, char ret_id[64],
                    struct stk_error **err)
{
    _cleanup_stmt_ sqlite3_stmt *q = NULL;
    int r = store_prepare(st,
                          /* the pool must still exist: a claim never commits
                           * after `pool rm` deleted the pool (it then removes
                           * the members it listed) */
                          "SELECT id FROM sandboxes WHERE pool = ?1 AND pool_member = 1"
                          " AND phase = 'ready' AND (sandboxes.tenant = ?2 OR ?2 = '')"
                          " AND EXISTS (SELECT 1 FROM pools WHERE name = ?1 AND tenant = ?2)"
                          " ORDER BY created_ms, id LIMIT 1",
                          &q, err);
    if (r < 0)
        return r;
    bind_text(q, 1, pool);
    bind_text(q, 2, tenant);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_DONE)
        return stk_error_make(err, ENOENT, "pool '%s' has no ready member", pool);
    if (rc != SQLITE_ROW)
        return store_sql_error(st, rc, err, "finding a pool member");
    char id[64];
    if (!store_copy(id, sizeof(id), store_col_text(q, 0)))
        return stk_error_make(err, EUCLEAN, "pool '%s': a member id is too long", pool);
    if (st->unique_names && (r = name_free(st, c->tenant, c->name, id, err)) < 0)
        return r;
    _cleanup_stmt_ sqlite3_stmt *u = NULL;
    r = store_prepare(st,
                      "UPDATE sandboxes SET pool_member = 0, name = ?2, labels = ?3, owner = ?4,"
                      " tenant = ?5, project = ?6, updated_ms = ?7,"
                      " spec = coalesce(?8, spec), env = coalesce(?9, env) WHERE id = ?1",
                      &u, err);
    if (r < 0)
        return r;
    bind_text(u, 1, id);
    bind_text(u, 2, c->name);
    bind_text(u, 3, c->labels);
    bind_text(u, 4, c->owner);
    bind_text(u, 5, c->tenant);
    bind_text(u, 6, c->project);
    sqlite3_bind_int64(u, 7, store_now_ms());
    /* the claimer's documents: a stop and start runs its command again */
    bind_text(u, 8, c->spec);
    bind_text(u, 9, c->env);
    rc = sqlite3_step(u);
    if (rc != SQLITE_DONE)
        return store_sql_error(st, rc, err, "claiming a pool member");
    /* the claimer's documents, the claimer's namespace */
    if (c->spec && (r = ns_record(st, id, c->namespace_known ? c->namespace : NULL, err)) < 0)
        return r;
    json_t *d = json_pack("{s:s, s:s, s:s}", "pool", pool, "name", c->name, "owner", c->owner);
    _cleanup_free_ char *details = d ? json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(d);
    if (!details)
        return stk_error_make(err, EINVAL, "pool name '%s' is not valid UTF-8", pool);
    r = audit_append_tx(st, id, "claimed", actor, details, err);
    if (r < 0)
        return r;
    memcpy(ret_id, id, sizeof(id));
    return 0;
}

int stk_store_pool_claim(struct stk_store *st, const char *tenant, const char *pool,
                         const struct stk_sb_rec *claim, const char *actor, char ret_id[64],
                         struct stk_error **err)
{
    struct stk_sb_rec c = *claim;
    /* The claim's id is unused: fill one so the shared checks pass. */
    memcpy(c.id, "claim", sizeof("claim"));
    c.pool[0] = '\0';
    int r = sb_check_mutable(&c, err);
    if (r < 0)
        return r;
    r = store_tx_begin(st, err);
    if (r < 0)
        return r;
    r = claim_tx(st, tenant, pool, claim, actor, ret_id, err);
    if (r < 0) {
        store_tx_rollback(st);
        return r;
    }
    return store_tx_commit(st, err);
}

/* ---- namespaces ------------------------------------------------------------ */

int stk_store_ns_tenant(struct stk_store *st, const char *ns, char ret[64], struct stk_error **err)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st, "SELECT tenant FROM namespaces WHERE name = ?1", &s, err);
    if (r < 0)
        return r;
    bind_text(s, 1, ns);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE)
        return -ENOENT;
    if (rc != SQLITE_ROW)
        return store_sql_error(st, rc, err, "reading a namespace");
    if (!store_copy(ret, 64, store_col_text(s, 0)))
        return stk_error_make(err, EUCLEAN, "namespace %s: its tenant is too long", ns);
    return 0;
}

static int ns_bind_tx(struct stk_store *st, const char *ns, const char *tenant,
                      struct stk_error **err)
{
    char have[64];
    int r = stk_store_ns_tenant(st, ns, have, err);
    if (r >= 0)
        return strcmp(have, tenant) == 0
                   ? 0
                   : stk_error_make(err, EPERM, "namespace %s belongs to another tenant", ns);
    if (r != -ENOENT)
        return r;
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    r = store_prepare(st, "INSERT INTO namespaces (name, tenant, created_ms) VALUES (?1, ?2, ?3)",
                      &s, err);
    if (r < 0)
        return r;
    bind_text(s, 1, ns);
    bind_text(s, 2, tenant);
    sqlite3_bind_int64(s, 3, store_now_ms());
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE)
        return store_sql_error(st, rc, err, "binding a namespace");
    return 1;
}

int stk_store_ns_bind(struct stk_store *st, const char *ns, const char *tenant,
                      struct stk_error **err)
{
    if (!ns || !*ns || strlen(ns) >= 64 || !tenant || strlen(tenant) >= 64)
        return stk_error_make(err, EINVAL, "namespace and tenant: 1 to 63 bytes");
    int r = store_tx_begin(st, err);
    if (r < 0)
        return r;
    r = ns_bind_tx(st, ns, tenant, err);
    if (r < 0) {
        store_tx_rollback(st);
        return r;
    }
    int c = store_tx_commit(st, err);
    return c < 0 ? c : r;
}
