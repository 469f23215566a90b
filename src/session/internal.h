/* SPDX-License-Identifier: Apache-2.0 */
/* Internal to the session module: the store's handle and its transactions,
 * shared by store.c and audit.c. */
#ifndef STK_SESSION_INTERNAL_H
#define STK_SESSION_INTERNAL_H

#include "session/audit.h"
#include "session/store.h"

#include <sqlite3.h>

struct stk_store {
    sqlite3 *db;
    char *dir;
    char *head_path;  /* <dir>/audit.head */
    int lock_fd;      /* <dir>/stockade.lock, flock()ed around write transactions */
    int lock_wait_ms; /* STK_STORE_LOCK_WAIT_MS unless stk_store_set_lock_wait_ms */
    bool in_tx;
    bool unique_names; /* stk_store_unique_names() */
    /* Set by an audit append inside the transaction; written to head_path
     * after COMMIT, still under the lock. */
    bool head_dirty;
    int64_t head_seq;
    char head_hash[STK_AUDIT_HASH_LEN + 1];
};

/* Gives a statement back: a cached one is reset for the next
 * store_prepare() of the same SQL, any other finalized. NULL is a no-op. */
void store_stmt_release(sqlite3_stmt *s);
static inline void store_stmt_finalizep(sqlite3_stmt **s)
{
    store_stmt_release(*s);
}
#define _cleanup_stmt_ _cleanup_(store_stmt_finalizep)

/* Maps an SQLite result code to a negative errno with a message naming what
 * was being done. */
int store_sql_error(struct stk_store *st, int rc, struct stk_error **err, const char *what);
int store_prepare(struct stk_store *st, const char *sql, sqlite3_stmt **ret,
                  struct stk_error **err);
/* The lock file, exclusive for writers, shared for verify. */
int store_lock(struct stk_store *st, bool exclusive, struct stk_error **err);
void store_unlock(struct stk_store *st);
/* Lock file, then BEGIN IMMEDIATE: the write transaction of every
 * read-modify-write. */
int store_tx_begin(struct stk_store *st, struct stk_error **err);
/* COMMIT, then the head file when an audit record was appended. */
int store_tx_commit(struct stk_store *st, struct stk_error **err);
void store_tx_rollback(struct stk_store *st);
int64_t store_now_ms(void);
/* A column as text, "" for NULL. */
const char *store_col_text(sqlite3_stmt *s, int col);
bool store_utf8_ok(const char *s);
/* Copies into a fixed array; false when it does not fit. */
bool store_copy(char *dst, size_t n, const char *src);

/* Inside store_tx_begin/commit: validates and appends one record. */
int audit_append_tx(struct stk_store *st, const char *sandbox_id, const char *event,
                    const char *actor, const char *details_json, struct stk_error **err);
/* The head file: writes atomically (rename) and durably. */
int audit_head_write(struct stk_store *st, struct stk_error **err);

#endif
