/* SPDX-License-Identifier: Apache-2.0 */
/* The audit trail: appending, hashing, the head anchor, listing, export and
 * verification (docs/audit.md). */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <string.h>
#include <sys/stat.h>

static const char zero_hash[STK_AUDIT_HASH_LEN + 1] =
    "0000000000000000000000000000000000000000000000000000000000000000";

#define HASH_TAG "stockade-audit-v1"
#define HEAD_TAG "stockade-audit-head v1"
#define AUDIT_COLS                                                                                 \
    "seq, time_ms, sandbox_id, sandbox_seq, event, actor, details, prev_hash,"                     \
    " sandbox_prev_hash, hash"

/* ---- the canonical encoding ------------------------------------------------ */

/* Every field is an 8-byte big-endian length and its bytes, so no field can
 * run into the next ("ab","c" and "a","bc" hash differently). */
static void put_bytes(EVP_MD_CTX *c, const void *p, size_t n)
{
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
    if (EVP_DigestUpdate(c, len, sizeof(len)) != 1 || EVP_DigestUpdate(c, p, n) != 1)
        stk_oom();
}

static void put_str(EVP_MD_CTX *c, const char *s)
{
    put_bytes(c, s, strlen(s));
}

/* Integers as 8-byte big-endian two's complement, length-prefixed like the rest. */
static void put_int(EVP_MD_CTX *c, int64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)((uint64_t)v >> (56 - 8 * i));
    put_bytes(c, b, sizeof(b));
}

void stk_audit_hash(const struct stk_audit_rec *r, char ret[STK_AUDIT_HASH_LEN + 1])
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (!c || EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1)
        stk_oom();
    put_str(c, HASH_TAG);
    put_int(c, r->seq);
    put_int(c, r->time_ms);
    put_str(c, r->sandbox_id);
    put_int(c, r->sandbox_seq);
    put_str(c, r->event);
    put_str(c, r->actor);
    put_str(c, r->details ? r->details : "");
    put_str(c, r->prev_hash);
    put_str(c, r->sandbox_prev_hash);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    if (EVP_DigestFinal_ex(c, md, &n) != 1 || n != 32)
        stk_oom();
    EVP_MD_CTX_free(c);
    for (unsigned i = 0; i < n; i++)
        snprintf(ret + 2 * i, 3, "%02x", md[i]);
}

void stk_audit_rec_free(struct stk_audit_rec *r)
{
    if (!r)
        return;
    free(r->details);
    r->details = NULL;
}
static inline void audit_rec_freep(struct stk_audit_rec *r)
{
    stk_audit_rec_free(r);
}
#define _cleanup_audit_rec_ _cleanup_(audit_rec_freep)

/* ---- checks ------------------------------------------------------------------ */

static int check_event(const char *e, struct stk_error **err)
{
    size_t n = e ? strlen(e) : 0;
    if (n == 0 || n >= sizeof(((struct stk_audit_rec *)0)->event))
        return stk_error_make(err, EINVAL, "audit event '%s' must be 1 to %zu characters",
                              e ? e : "", sizeof(((struct stk_audit_rec *)0)->event) - 1);
    for (const char *p = e; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return stk_error_make(err, EINVAL, "audit event '%s' may hold only a-z, 0-9 and '_'",
                                  e);
    return 0;
}

/* One line per record in `stockade audit`: no control characters. */
static int check_actor(const char *a, struct stk_error **err)
{
    size_t n = a ? strlen(a) : 0;
    if (n == 0)
        return stk_error_make(err, EINVAL, "audit actor is empty: every record names one");
    if (n >= sizeof(((struct stk_audit_rec *)0)->actor))
        return stk_error_make(err, EINVAL, "audit actor is %zu bytes, the limit is %zu", n,
                              sizeof(((struct stk_audit_rec *)0)->actor) - 1);
    for (const char *p = a; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return stk_error_make(err, EINVAL, "audit actor contains a control character");
    if (!store_utf8_ok(a))
        return stk_error_make(err, EINVAL, "audit actor is not valid UTF-8");
    return 0;
}

static int check_sandbox_id(const char *id, struct stk_error **err)
{
    if (strlen(id) >= sizeof(((struct stk_audit_rec *)0)->sandbox_id))
        return stk_error_make(err, EINVAL, "audit sandbox id is %zu bytes, the limit is %zu",
                              strlen(id), sizeof(((struct stk_audit_rec *)0)->sandbox_id) - 1);
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_' || *p == '.'))
            return stk_error_make(err, EINVAL, "audit sandbox id '%s' is not a sandbox id", id);
    return 0;
}

/* Re-encoded compact with sorted keys: what is hashed is one stable text. */
static int canonical_details(const char *details_json, char **ret, struct stk_error **err)
{
    if (!details_json)
        details_json = "{}";
    size_t n = strlen(details_json);
    if (n > STK_AUDIT_MAX_DETAILS)
        return stk_error_make(err, EINVAL, "audit details are %zu bytes, the limit is %d", n,
                              STK_AUDIT_MAX_DETAILS);
    json_error_t je;
    json_t *j = json_loads(details_json, JSON_REJECT_DUPLICATES, &je);
    if (!j)
        return stk_error_make(err, EINVAL, "audit details are not valid JSON: %s (column %d)",
                              je.text, je.column);
    if (!json_is_object(j)) {
        json_decref(j);
        return stk_error_make(err, EINVAL, "audit details must be a JSON object");
    }
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    if (!s)
        stk_oom();
    if (strlen(s) > STK_AUDIT_MAX_DETAILS) {
        free(s);
        return stk_error_make(err, EINVAL, "audit details exceed %d bytes once encoded",
                              STK_AUDIT_MAX_DETAILS);
    }
    *ret = s;
    return 0;
}

/* ---- appending ----------------------------------------------------------------- */

/* The newest record overall (sandbox_id NULL) or of one sandbox: its seq (or
 * sandbox_seq) and hash; zero and the zero hash when there is none. */
static int last_record(struct stk_store *st, const char *sandbox_id, int64_t *ret_seq,
                       char ret_hash[STK_AUDIT_HASH_LEN + 1], struct stk_error **err)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st,
                          sandbox_id ? "SELECT sandbox_seq, hash FROM audit WHERE sandbox_id = ?1"
                                       " ORDER BY seq DESC LIMIT 1"
                                     : "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
                          &s, err);
    if (r < 0)
        return r;
    if (sandbox_id)
        sqlite3_bind_text(s, 1, sandbox_id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        *ret_seq = 0;
        memcpy(ret_hash, zero_hash, sizeof(zero_hash));
        return 0;
    }
    if (rc != SQLITE_ROW)
        return store_sql_error(st, rc, err, "reading the newest audit record");
    *ret_seq = sqlite3_column_int64(s, 0);
    if (!store_copy(ret_hash, STK_AUDIT_HASH_LEN + 1, store_col_text(s, 1)))
        return stk_error_make(err, EUCLEAN, "audit record %" PRId64 ": hash is malformed",
                              *ret_seq);
    return 0;
}

static int insert_record(struct stk_store *st, const struct stk_audit_rec *a,
                         struct stk_error **err)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st,
                          "INSERT INTO audit (" AUDIT_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7,"
                          " ?8, ?9, ?10)",
                          &s, err);
    if (r < 0)
        return r;
    sqlite3_bind_int64(s, 1, a->seq);
    sqlite3_bind_int64(s, 2, a->time_ms);
    sqlite3_bind_text(s, 3, a->sandbox_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, a->sandbox_seq);
    sqlite3_bind_text(s, 5, a->event, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 6, a->actor, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 7, a->details, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 8, a->prev_hash, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 9, a->sandbox_prev_hash, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 10, a->hash, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE)
        return store_sql_error(st, rc, err, "appending an audit record");
    _cleanup_stmt_ sqlite3_stmt *h = NULL;
    r = store_prepare(st, "INSERT OR REPLACE INTO audit_head (id, seq, hash) VALUES (1, ?1, ?2)",
                      &h, err);
    if (r < 0)
        return r;
    sqlite3_bind_int64(h, 1, a->seq);
    sqlite3_bind_text(h, 2, a->hash, -1, SQLITE_STATIC);
    rc = sqlite3_step(h);
    if (rc != SQLITE_DONE)
        return store_sql_error(st, rc, err, "moving the audit head");
    return 0;
}

int audit_append_tx(struct stk_store *st, const char *sandbox_id, const char *event,
                    const char *actor, const char *details_json, struct stk_error **err)
{
    if (!sandbox_id)
        sandbox_id = "";
    int r = check_sandbox_id(sandbox_id, err);
    if (r >= 0)
        r = check_event(event, err);
    if (r >= 0)
        r = check_actor(actor, err);
    if (r < 0)
        return r;
    _cleanup_audit_rec_ struct stk_audit_rec a = {0};
    r = canonical_details(details_json, &a.details, err);
    if (r < 0)
        return r;
    memcpy(a.sandbox_id, sandbox_id, strlen(sandbox_id) + 1);
    memcpy(a.event, event, strlen(event) + 1);
    memcpy(a.actor, actor, strlen(actor) + 1);
    r = last_record(st, NULL, &a.seq, a.prev_hash, err);
    if (r >= 0)
        r = last_record(st, sandbox_id, &a.sandbox_seq, a.sandbox_prev_hash, err);
    if (r < 0)
        return r;
    a.seq++;
    a.sandbox_seq++;
    a.time_ms = store_now_ms();
    stk_audit_hash(&a, a.hash);
    r = insert_record(st, &a, err);
    if (r < 0)
        return r;
    st->head_dirty = true;
    st->head_seq = a.seq;
    memcpy(st->head_hash, a.hash, sizeof(a.hash));
    return 0;
}

int stk_audit_append(struct stk_store *st, const char *sandbox_id, const char *event,
                     const char *actor, const char *details_json, struct stk_error **err)
{
    int r = store_tx_begin(st, err);
    if (r < 0)
        return r;
    r = audit_append_tx(st, sandbox_id, event, actor, details_json, err);
    if (r < 0) {
        store_tx_rollback(st);
        return r;
    }
    return store_tx_commit(st, err);
}

int stk_audit_append_batch(struct stk_store *st, const struct stk_audit_entry *e, size_t n,
                           struct stk_error **err)
{
    if (n == 0)
        return 0;
    int r = store_tx_begin(st, err);
    if (r < 0)
        return r;
    for (size_t i = 0; i < n && r >= 0; i++)
        r = audit_append_tx(st, e[i].sandbox_id, e[i].event, e[i].actor, e[i].details_json, err);
    if (r < 0) {
        store_tx_rollback(st);
        return r;
    }
    /* one commit and one head write for the whole batch */
    return store_tx_commit(st, err);
}

/* ---- the head file ------------------------------------------------------------------ */

/* Every HEAD_DURABLE_EVERY-th record's head file, and the first one, is
 * made durable with its own fsyncs; the others are written and renamed
 * without a flush, so an append costs one durable flush (SQLite's commit). */
#define HEAD_DURABLE_EVERY 64

/* Written after COMMIT under the store's lock file, so heads land in commit
 * order, and renamed over the old one. The commit is durable first
 * (synchronous=FULL), so after a crash the file names a committed record or
 * lags behind, never ahead; it lags at most to the last durable head (or
 * reads empty on a file system that does not order a rename after the
 * data), which verify reports as a warning, like any lag. */
int audit_head_write(struct stk_store *st, struct stk_error **err)
{
    _cleanup_free_ char *tmp = stk_xasprintf("%s.tmp", st->head_path);
    _cleanup_free_ char *line =
        stk_xasprintf(HEAD_TAG " seq=%" PRId64 " hash=%s\n", st->head_seq, st->head_hash);
    bool durable =
        st->head_seq % HEAD_DURABLE_EVERY == 0 || faccessat(AT_FDCWD, st->head_path, F_OK, 0) < 0;
    _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    int r = fd < 0 ? -errno : stk_write_all(fd, line, strlen(line));
    if (r >= 0 && durable && fsync(fd) < 0)
        r = -errno;
    if (r >= 0 && rename(tmp, st->head_path) < 0)
        r = -errno;
    if (r < 0) {
        (void)unlink(tmp);
        return stk_error_errno(err, -r,
                               "audit record %" PRId64 " is committed, but its head anchor %s "
                               "could not be written",
                               st->head_seq, st->head_path);
    }
    if (durable) {
        _cleanup_close_ int dfd = open(st->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0)
            (void)fsync(dfd);
    }
    return 0;
}

/* -ENOENT when there is no head file, -ENODATA when it is empty (a power
 * loss before its data reached the disk). */
static int head_file_read(struct stk_store *st, int64_t *ret_seq,
                          char ret_hash[STK_AUDIT_HASH_LEN + 1], struct stk_error **err)
{
    _cleanup_fclose_ FILE *f = fopen(st->head_path, "re");
    if (!f) {
        if (errno == ENOENT)
            return -ENOENT;
        return stk_error_errno(err, errno, "reading %s", st->head_path);
    }
    char line[256];
    long long seq = 0;
    char hash[STK_AUDIT_HASH_LEN + 2] = "";
    int c = fgetc(f);
    if (c == EOF && !ferror(f))
        return -ENODATA;
    (void)ungetc(c, f);
    if (!fgets(line, sizeof(line), f) ||
        sscanf(line, HEAD_TAG " seq=%lld hash=%65s", &seq, hash) != 2 ||
        strlen(hash) != STK_AUDIT_HASH_LEN || seq < 1)
        return stk_error_make(err, EUCLEAN, "the head anchor %s is malformed", st->head_path);
    *ret_seq = seq;
    memcpy(ret_hash, hash, STK_AUDIT_HASH_LEN + 1);
    return 0;
}

/* ---- reading records ------------------------------------------------------------------ */

/* A row that does not fit the struct is reported as corrupt (verify calls
 * that "modified"). */
static int rec_from_row(sqlite3_stmt *s, struct stk_audit_rec *a)
{
    memset(a, 0, sizeof(*a));
    a->seq = sqlite3_column_int64(s, 0);
    a->time_ms = sqlite3_column_int64(s, 1);
    a->sandbox_seq = sqlite3_column_int64(s, 3);
    a->details = stk_xstrdup(store_col_text(s, 6));
    bool ok =
        store_copy(a->sandbox_id, sizeof(a->sandbox_id), store_col_text(s, 2)) &&
        store_copy(a->event, sizeof(a->event), store_col_text(s, 4)) &&
        store_copy(a->actor, sizeof(a->actor), store_col_text(s, 5)) &&
        store_copy(a->prev_hash, sizeof(a->prev_hash), store_col_text(s, 7)) &&
        store_copy(a->sandbox_prev_hash, sizeof(a->sandbox_prev_hash), store_col_text(s, 8)) &&
        store_copy(a->hash, sizeof(a->hash), store_col_text(s, 9));
    return ok ? 0 : -EUCLEAN;
}

static int audit_query(struct stk_store *st, const char *sandbox_id, sqlite3_stmt **ret,
                       struct stk_error **err)
{
    int r = store_prepare(st,
                          sandbox_id ? "SELECT " AUDIT_COLS " FROM audit WHERE sandbox_id = ?1"
                                       " ORDER BY seq"
                                     : "SELECT " AUDIT_COLS " FROM audit ORDER BY seq",
                          ret, err);
    if (r >= 0 && sandbox_id)
        sqlite3_bind_text(*ret, 1, sandbox_id, -1, SQLITE_TRANSIENT);
    return r;
}

static int audit_walk(struct stk_store *st, sqlite3_stmt *s, stk_audit_fn fn, void *userdata,
                      struct stk_error **err)
{
    int rc, r;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        _cleanup_audit_rec_ struct stk_audit_rec a;
        if (rec_from_row(s, &a) < 0)
            return stk_error_make(err, EUCLEAN,
                                  "audit record %" PRId64 " has a malformed field (run "
                                  "'stockade audit verify')",
                                  a.seq);
        r = fn(&a, userdata);
        if (r < 0)
            return r;
    }
    if (rc != SQLITE_DONE)
        return store_sql_error(st, rc, err, "reading the audit trail");
    return 0;
}

int stk_audit_list_after(struct stk_store *st, int64_t after_seq, int limit, stk_audit_fn fn,
                         void *userdata, struct stk_error **err)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(
        st, "SELECT " AUDIT_COLS " FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2", &s, err);
    if (r < 0)
        return r;
    sqlite3_bind_int64(s, 1, after_seq);
    sqlite3_bind_int(s, 2, limit);
    return audit_walk(st, s, fn, userdata, err);
}

int stk_audit_list_page(struct stk_store *st, const char *sandbox_id, int64_t after_seq, int limit,
                        stk_audit_fn fn, void *userdata, struct stk_error **err)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st,
                          "SELECT " AUDIT_COLS " FROM audit WHERE sandbox_id = ?1 AND seq > ?2"
                          " ORDER BY seq LIMIT ?3",
                          &s, err);
    if (r < 0)
        return r;
    sqlite3_bind_text(s, 1, sandbox_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 2, after_seq);
    sqlite3_bind_int(s, 3, limit);
    return audit_walk(st, s, fn, userdata, err);
}

/* One SELECT reads one snapshot (WAL), even while monitors append. */
int stk_audit_list(struct stk_store *st, const char *sandbox_id, stk_audit_fn fn, void *userdata,
                   struct stk_error **err)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = audit_query(st, sandbox_id, &s, err);
    if (r < 0)
        return r;
    return audit_walk(st, s, fn, userdata, err);
}

int stk_audit_last_seq(struct stk_store *st, int64_t *ret, struct stk_error **err)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st, "SELECT coalesce(max(seq), 0) FROM audit", &s, err);
    if (r < 0)
        return r;
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW)
        return store_sql_error(st, rc, err, "reading the audit head");
    *ret = sqlite3_column_int64(s, 0);
    return 0;
}

int stk_audit_count(struct stk_store *st, const char *sandbox_id, int64_t *ret,
                    struct stk_error **err)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st,
                          sandbox_id ? "SELECT count(*) FROM audit WHERE sandbox_id = ?1"
                                     : "SELECT count(*) FROM audit",
                          &s, err);
    if (r < 0)
        return r;
    if (sandbox_id)
        sqlite3_bind_text(s, 1, sandbox_id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW)
        return store_sql_error(st, rc, err, "counting audit records");
    *ret = sqlite3_column_int64(s, 0);
    return 0;
}

/* ---- export ------------------------------------------------------------------------------ */

void stk_audit_rec_jsonl(const struct stk_audit_rec *r, struct stk_buf *out)
{
    json_t *j =
        json_pack("{s:I, s:I, s:s, s:I, s:s, s:s, s:s, s:s, s:s, s:s}", "seq", (json_int_t)r->seq,
                  "time_ms", (json_int_t)r->time_ms, "sandbox_id", r->sandbox_id, "sandbox_seq",
                  (json_int_t)r->sandbox_seq, "event", r->event, "actor", r->actor, "details",
                  r->details ? r->details : "", "prev_hash", r->prev_hash, "sandbox_prev_hash",
                  r->sandbox_prev_hash, "hash", r->hash);
    /* json_pack fails only on invalid UTF-8, which the store never holds
     * unless the database was edited: export what can be exported. */
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    if (s) {
        stk_buf_puts(out, s);
        free(s);
    } else {
        stk_buf_printf(out, "{\"seq\":%" PRId64 ",\"error\":\"not valid UTF-8\"}", r->seq);
    }
    stk_buf_putc(out, '\n');
}

static int export_one(const struct stk_audit_rec *r, void *userdata)
{
    _cleanup_buf_ struct stk_buf b = {0};
    stk_audit_rec_jsonl(r, &b);
    if (fwrite(b.data, 1, b.len, userdata) != b.len)
        return -EIO;
    return 0;
}

int stk_audit_export(struct stk_store *st, const char *sandbox_id, FILE *out,
                     struct stk_error **err)
{
    int r = stk_audit_list(st, sandbox_id, export_one, out, err);
    if (r == -EIO && !(err && *err))
        return stk_error_errno(err, EIO, "writing the export");
    return r;
}

static bool json_field_copy(json_t *o, const char *key, char *dst, size_t n)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v && store_copy(dst, n, v);
}

int stk_audit_rec_from_json(const char *line, struct stk_audit_rec *ret, struct stk_error **err)
{
    json_error_t je;
    json_t *j = json_loads(line, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(j)) {
        json_decref(j);
        return stk_error_make(err, EINVAL, "not a JSON object: %s", j ? "" : je.text);
    }
    struct stk_audit_rec a = {0};
    json_t *seq = json_object_get(j, "seq"), *t = json_object_get(j, "time_ms"),
           *sseq = json_object_get(j, "sandbox_seq");
    const char *details = json_string_value(json_object_get(j, "details"));
    bool ok =
        json_is_integer(seq) && json_is_integer(t) && json_is_integer(sseq) && details &&
        json_field_copy(j, "sandbox_id", a.sandbox_id, sizeof(a.sandbox_id)) &&
        json_field_copy(j, "event", a.event, sizeof(a.event)) &&
        json_field_copy(j, "actor", a.actor, sizeof(a.actor)) &&
        json_field_copy(j, "prev_hash", a.prev_hash, sizeof(a.prev_hash)) &&
        json_field_copy(j, "sandbox_prev_hash", a.sandbox_prev_hash, sizeof(a.sandbox_prev_hash)) &&
        json_field_copy(j, "hash", a.hash, sizeof(a.hash));
    if (ok) {
        a.seq = json_integer_value(seq);
        a.time_ms = json_integer_value(t);
        a.sandbox_seq = json_integer_value(sseq);
        a.details = stk_xstrdup(details);
    }
    json_decref(j);
    if (!ok)
        return stk_error_make(err, EINVAL, "not an audit record: a field is missing or malformed");
    *ret = a;
    return 0;
}

/* ---- verification ---------------------------------------------------------------------- */

STK_PRINTF(3, 4)
static void fail(struct stk_audit_verify_result *v, const struct stk_audit_rec *a, const char *fmt,
                 ...)
{
    v->ok = false;
    if (a) {
        v->bad_seq = a->seq;
        memcpy(v->bad_sandbox, a->sandbox_id, sizeof(v->bad_sandbox));
        v->bad_sandbox_seq = a->sandbox_seq;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->problem, sizeof(v->problem), fmt, ap);
    va_end(ap);
}

/* The seq of the record whose hash is h, 0 when none: tells a reordered
 * record (its predecessor is elsewhere) from a replaced one. */
static int64_t seq_of_hash(struct stk_store *st, const char *h)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    if (store_prepare(st, "SELECT seq FROM audit WHERE hash = ?1 LIMIT 1", &s, NULL) < 0)
        return 0;
    sqlite3_bind_text(s, 1, h, -1, SQLITE_TRANSIENT);
    return sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
}

static void check_global_link(struct stk_store *st, const struct stk_audit_rec *a, int64_t prev_seq,
                              const char *prev_hash, struct stk_audit_verify_result *v)
{
    if (a->seq != prev_seq + 1) {
        int64_t missing = prev_seq + 1;
        if (prev_seq)
            fail(v, a,
                 "record %" PRId64 " is missing (deleted): record %" PRId64 " follows %" PRId64,
                 missing, a->seq, prev_seq);
        else
            fail(v, a, "record 1 is missing (deleted): the trail starts at record %" PRId64,
                 a->seq);
        v->bad_seq = missing;
        v->bad_sandbox[0] = '\0';
        v->bad_sandbox_seq = 0;
        return;
    }
    if (!strcmp(a->prev_hash, prev_hash))
        return;
    int64_t other = seq_of_hash(st, a->prev_hash);
    if (other > a->seq || (other && other < prev_seq))
        fail(v, a,
             "record %" PRId64 " is out of order: its prev_hash is that of record %" PRId64
             ", not of record %" PRId64,
             a->seq, other, prev_seq);
    else {
        /* Record prev_seq hashes right but is not the one a->seq followed:
         * it was rewritten with its hash recomputed, so it is the first
         * broken record. */
        fail(v, NULL,
             "record %" PRId64 " was replaced (its hash recomputed): record %" PRId64
             "'s prev_hash does not match it",
             prev_seq, a->seq);
        v->bad_seq = prev_seq;
    }
}

/* The previous record of the same sandbox in global order must be its
 * sandbox_seq - 1 and carry the hash this one names. */
static int check_sandbox_link(struct stk_store *st, const struct stk_audit_rec *a,
                              struct stk_audit_verify_result *v, struct stk_error **err)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st,
                          "SELECT sandbox_seq, hash FROM audit WHERE sandbox_id = ?1 AND seq < ?2"
                          " ORDER BY seq DESC LIMIT 1",
                          &s, err);
    if (r < 0)
        return r;
    sqlite3_bind_text(s, 1, a->sandbox_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 2, a->seq);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return store_sql_error(st, rc, err, "reading the audit trail");
    int64_t prev = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    const char *prev_hash = rc == SQLITE_ROW ? store_col_text(s, 1) : zero_hash;
    const char *who = a->sandbox_id[0] ? a->sandbox_id : "(host)";
    if (a->sandbox_seq != prev + 1)
        fail(v, a,
             "record %" PRId64 "'s sandbox chain is broken: it is %s's record %" PRId64
             ", but %s's previous record is its record %" PRId64,
             a->seq, who, a->sandbox_seq, who, prev);
    else if (strcmp(a->sandbox_prev_hash, prev_hash))
        fail(v, a,
             "record %" PRId64 "'s sandbox chain is broken: its sandbox_prev_hash does not "
             "match %s's record %" PRId64,
             a->seq, who, prev);
    return 0;
}

static void check_hash(const struct stk_audit_rec *a, struct stk_audit_verify_result *v)
{
    char h[STK_AUDIT_HASH_LEN + 1];
    stk_audit_hash(a, h);
    if (strcmp(h, a->hash))
        fail(v, a, "record %" PRId64 " was modified (hash mismatch)", a->seq);
}

static int walk_global(struct stk_store *st, struct stk_audit_verify_result *v,
                       struct stk_error **err)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = audit_query(st, NULL, &s, err);
    if (r < 0)
        return r;
    int64_t prev_seq = 0;
    char prev_hash[STK_AUDIT_HASH_LEN + 1];
    memcpy(prev_hash, zero_hash, sizeof(zero_hash));
    int rc;
    while (v->ok && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        _cleanup_audit_rec_ struct stk_audit_rec a;
        if (rec_from_row(s, &a) < 0) {
            fail(v, &a, "record %" PRId64 " was modified (a field is malformed)", a.seq);
            break;
        }
        check_global_link(st, &a, prev_seq, prev_hash, v);
        if (v->ok) {
            r = check_sandbox_link(st, &a, v, err);
            if (r < 0)
                return r;
        }
        if (v->ok)
            check_hash(&a, v);
        v->records++;
        prev_seq = a.seq;
        memcpy(prev_hash, a.hash, sizeof(prev_hash));
    }
    if (v->ok && rc != SQLITE_DONE)
        return store_sql_error(st, rc, err, "reading the audit trail");
    v->head_seq = prev_seq;
    memcpy(v->head, prev_seq ? prev_hash : "", prev_seq ? sizeof(prev_hash) : 1);
    return 0;
}

/* An anchor (seq, hash) against the walked trail, whose last record is
 * v->head_seq. A lagging anchor is acceptable only for the file, and only if
 * it matches the record it names (a crash between COMMIT and its rename). */
static int check_anchor(struct stk_store *st, const char *what, int64_t seq, const char *hash,
                        bool may_lag, struct stk_audit_verify_result *v, struct stk_error **err)
{
    if (seq > v->head_seq) {
        fail(v, NULL,
             "the trail was truncated: %s says %" PRId64 " records, found %" PRId64
             " (record %" PRId64 " onward is missing)",
             what, seq, v->head_seq, v->head_seq + 1);
        v->bad_seq = v->head_seq + 1;
        return 0;
    }
    if (seq == v->head_seq) {
        if (strcmp(hash, v->head)) {
            fail(v, NULL, "record %" PRId64 " does not match %s (replaced, hashes recomputed?)",
                 seq, what);
            v->bad_seq = seq;
        }
        return 0;
    }
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st, "SELECT hash FROM audit WHERE seq = ?1", &s, err);
    if (r < 0)
        return r;
    sqlite3_bind_int64(s, 1, seq);
    bool same = sqlite3_step(s) == SQLITE_ROW && !strcmp(store_col_text(s, 0), hash);
    if (!may_lag || !same) {
        fail(v, NULL, "%s names record %" PRId64 " but the trail ends at record %" PRId64 "%s",
             what, seq, v->head_seq, same ? " (records were added by hand?)" : " and they differ");
        v->bad_seq = same ? seq + 1 : seq;
        return 0;
    }
    snprintf(v->warning, sizeof(v->warning),
             "%s lags: it names record %" PRId64 " of %" PRId64
             " (a crash before it was updated?); records after it are anchored only in the "
             "database",
             what, seq, v->head_seq);
    return 0;
}

/* The head file as read before the snapshot was pinned (stk_audit_verify). */
struct file_head {
    int r; /* 0, -ENOENT, or another negative errno (problem says what) */
    int64_t seq;
    char hash[STK_AUDIT_HASH_LEN + 1];
    char problem[256];
};

static void file_head_load(struct stk_store *st, struct file_head *fh)
{
    _cleanup_error_ struct stk_error *ferr = NULL;
    fh->r = head_file_read(st, &fh->seq, fh->hash, &ferr);
    if (ferr)
        snprintf(fh->problem, sizeof(fh->problem), "%s", ferr->msg);
}

static int check_heads(struct stk_store *st, const struct file_head *fh,
                       struct stk_audit_verify_result *v, struct stk_error **err)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = store_prepare(st, "SELECT seq, hash FROM audit_head WHERE id = 1", &s, err);
    if (r < 0)
        return r;
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        r = check_anchor(st, "the head in the database", sqlite3_column_int64(s, 0),
                         store_col_text(s, 1), false, v, err);
    else if (rc == SQLITE_DONE && v->head_seq > 0)
        fail(v, NULL, "the head in the database (table audit_head) is missing");
    else if (rc != SQLITE_DONE)
        return store_sql_error(st, rc, err, "reading the audit head");
    if (r < 0 || !v->ok)
        return r;
    if (fh->r == -ENOENT) {
        if (v->head_seq > 0)
            fail(v, NULL, "the head anchor %s is missing (deleted?)", st->head_path);
        return 0;
    }
    if (fh->r == -ENODATA) {
        if (v->head_seq > 0)
            snprintf(v->warning, sizeof(v->warning),
                     "the head anchor %s is empty (a power loss before it reached the disk?); "
                     "the records are anchored only in the database until the next append",
                     STK_AUDIT_HEAD_FILE);
        return 0;
    }
    if (fh->r < 0) {
        fail(v, NULL, "%s", fh->problem);
        return 0;
    }
    _cleanup_free_ char *what = stk_xasprintf("the head anchor %s", STK_AUDIT_HEAD_FILE);
    return check_anchor(st, what, fh->seq, fh->hash, true, v, err);
}

/* One sandbox's chain alone: sandbox_seq from 1 without gaps, links, hashes. */
static int walk_sandbox(struct stk_store *st, const char *sandbox_id,
                        struct stk_audit_verify_result *v, struct stk_error **err)
{
    _cleanup_stmt_ sqlite3_stmt *s = NULL;
    int r = audit_query(st, sandbox_id, &s, err);
    if (r < 0)
        return r;
    int64_t prev = 0;
    char prev_hash[STK_AUDIT_HASH_LEN + 1];
    memcpy(prev_hash, zero_hash, sizeof(zero_hash));
    int rc;
    while (v->ok && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        _cleanup_audit_rec_ struct stk_audit_rec a;
        if (rec_from_row(s, &a) < 0)
            fail(v, &a, "record %" PRId64 " was modified (a field is malformed)", a.seq);
        else if (a.sandbox_seq != prev + 1)
            fail(v, &a,
                 "record %" PRId64 "'s sandbox chain is broken: it is %s's record %" PRId64
                 ", after its record %" PRId64 " (records missing or reordered)",
                 a.seq, sandbox_id, a.sandbox_seq, prev);
        else if (strcmp(a.sandbox_prev_hash, prev_hash))
            fail(v, &a,
                 "record %" PRId64 "'s sandbox chain is broken: its sandbox_prev_hash does "
                 "not match %s's record %" PRId64,
                 a.seq, sandbox_id, prev);
        else
            check_hash(&a, v);
        v->records++;
        prev = a.sandbox_seq;
        memcpy(prev_hash, a.hash, sizeof(prev_hash));
        v->head_seq = a.seq;
        memcpy(v->head, a.hash, sizeof(v->head));
    }
    if (v->ok && rc != SQLITE_DONE)
        return store_sql_error(st, rc, err, "reading the audit trail");
    return 0;
}

/* Under the shared lock no writer is between its COMMIT and its head file:
 * the head file read and the snapshot pinned here agree. */
static int verify_begin(struct stk_store *st, struct file_head *fh, struct stk_error **err)
{
    int r = store_lock(st, false, err);
    if (r < 0)
        return r;
    file_head_load(st, fh);
    int rc = sqlite3_exec(st->db, "BEGIN", NULL, NULL, NULL);
    if (rc == SQLITE_OK) /* a transaction's snapshot starts at its first read */
        rc = sqlite3_exec(st->db, "SELECT count(*) FROM audit_head", NULL, NULL, NULL);
    store_unlock(st);
    if (rc != SQLITE_OK) {
        (void)sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
        return store_sql_error(st, rc, err, "starting a read transaction");
    }
    return 0;
}

int stk_audit_verify(struct stk_store *st, const char *sandbox_id,
                     struct stk_audit_verify_result *ret, struct stk_error **err)
{
    struct stk_audit_verify_result v = {.ok = true};
    struct file_head fh = {0};
    int r = verify_begin(st, &fh, err);
    if (r < 0)
        return r;
    r = sandbox_id ? walk_sandbox(st, sandbox_id, &v, err) : walk_global(st, &v, err);
    if (r >= 0 && v.ok && !sandbox_id)
        r = check_heads(st, &fh, &v, err);
    (void)sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL);
    if (r < 0)
        return r;
    *ret = v;
    return 0;
}
