/* SPDX-License-Identifier: Apache-2.0 */
/*
 * audit — the append-only, tamper-evident trail in the store (docs/audit.md).
 *
 * Every record is hashed (SHA-256) over a length-prefixed encoding of all its
 * fields, including the hash of the previous record globally (prev_hash) and
 * of the previous record of the same sandbox (sandbox_prev_hash): two chains.
 * The newest record's seq and hash are also kept outside the table, in
 * <state_dir>/audit.head, so deleting the newest records is detected too.
 * An attacker who can rewrite the database and the head file and recomputes
 * every hash is NOT detected: ship the head (or exports) elsewhere.
 */
#ifndef STK_SESSION_AUDIT_H
#define STK_SESSION_AUDIT_H

#include "session/store.h"

#define STK_AUDIT_HEAD_FILE   "audit.head"
#define STK_AUDIT_MAX_DETAILS (16 * 1024) /* bytes of details JSON */
#define STK_AUDIT_HASH_LEN    64          /* hex characters */

struct stk_audit_rec {
    int64_t seq;                            /* global, from 1, no gaps */
    int64_t time_ms;                        /* unix ms */
    char sandbox_id[64];                    /* "" for host-level records (gc, ...) */
    int64_t sandbox_seq;                    /* per sandbox_id (the host chain too), from 1 */
    char event[32];                         /* [a-z0-9_]: created, started, exec, killed, ... */
    char actor[256];                        /* "uid=0(root) pid=1234" or an identity */
    char *details;                          /* a JSON object, compact with sorted keys (owned) */
    char prev_hash[STK_AUDIT_HASH_LEN + 1]; /* 64 zeros for the first */
    char sandbox_prev_hash[STK_AUDIT_HASH_LEN + 1]; /* 64 zeros for a sandbox's first */
    char hash[STK_AUDIT_HASH_LEN + 1];
};

/* Appends one record in its own IMMEDIATE transaction and moves the head.
 * details_json: a JSON object (NULL means {}), at most STK_AUDIT_MAX_DETAILS
 * bytes; it is stored re-encoded compact with sorted keys. Never put secrets
 * in it. If the head file cannot be written after the COMMIT, the record is
 * committed and the error says so ("... is committed, but its head anchor
 * ... could not be written"); the same holds for every function that appends
 * (stk_store_sb_set_phase, stk_store_pool_claim). */
/* Several records in one transaction (one commit, one head write): the
 * gateway's group commit of read decisions. All or none. */
struct stk_audit_entry {
    const char *sandbox_id, *event, *actor, *details_json;
};
int stk_audit_append_batch(struct stk_store *st, const struct stk_audit_entry *e, size_t n,
                           struct stk_error **err);
int stk_audit_append(struct stk_store *st, const char *sandbox_id, const char *event,
                     const char *actor, const char *details_json, struct stk_error **err);

/* The record's hash over the canonical encoding (docs/audit.md). */
void stk_audit_hash(const struct stk_audit_rec *r, char ret[STK_AUDIT_HASH_LEN + 1]);

/* Calls fn for each record (of one sandbox, or all when sandbox_id is NULL),
 * oldest first; fn's record is valid during the call only. A negative return
 * from fn stops the walk and is returned. */
typedef int (*stk_audit_fn)(const struct stk_audit_rec *r, void *userdata);
int stk_audit_list(struct stk_store *st, const char *sandbox_id, stk_audit_fn fn, void *userdata,
                   struct stk_error **err);
/* Calls fn for at most limit records with seq > after_seq (all sandboxes),
 * oldest first: how a follower (the gateway's event stream) reads only what
 * is new without walking the whole trail. */
int stk_audit_list_after(struct stk_store *st, int64_t after_seq, int limit, stk_audit_fn fn,
                         void *userdata, struct stk_error **err);
/* One sandbox's records with seq > after_seq, oldest first, at most limit
 * (the index on (sandbox_id, seq) makes a page cost its own size, however
 * long the chain): how the gateway pages GET .../audit. fn returning < 0
 * stops the walk with that value. */
int stk_audit_list_page(struct stk_store *st, const char *sandbox_id, int64_t after_seq, int limit,
                        stk_audit_fn fn, void *userdata, struct stk_error **err);
/* The newest record's seq (0 when empty): one index lookup, for followers
 * that ask often. */
int stk_audit_last_seq(struct stk_store *st, int64_t *ret, struct stk_error **err);
/* Number of records (of one sandbox, or all). */
int stk_audit_count(struct stk_store *st, const char *sandbox_id, int64_t *ret,
                    struct stk_error **err);

/* One record as one line of JSON (with '\n'): every field, details as the
 * exact string that was hashed, so an export can be verified offline. */
void stk_audit_rec_jsonl(const struct stk_audit_rec *r, struct stk_buf *out);
/* JSON Lines of every record (of one sandbox, or all) to out. */
int stk_audit_export(struct stk_store *st, const char *sandbox_id, FILE *out,
                     struct stk_error **err);
/* Parses one exported line back into a record (details owned). */
int stk_audit_rec_from_json(const char *line, struct stk_audit_rec *ret, struct stk_error **err);
void stk_audit_rec_free(struct stk_audit_rec *r);

struct stk_audit_verify_result {
    bool ok;
    int64_t records;                   /* records checked */
    int64_t head_seq;                  /* the last record's seq, 0 when empty */
    char head[STK_AUDIT_HASH_LEN + 1]; /* its hash, "" when empty */
    /* When !ok: the first broken record. bad_seq is its global seq (for a
     * truncation: the first missing one); bad_sandbox/bad_sandbox_seq name
     * it in its sandbox's chain when known. */
    int64_t bad_seq;
    char bad_sandbox[64];
    int64_t bad_sandbox_seq;
    char problem[512]; /* "record 7 was modified (hash mismatch)" */
    char warning[256]; /* e.g. the head file lags the database; "" */
};
/*
 * Walks the global chain record by record (seq, prev_hash, sandbox chain,
 * hash, in that order) and then checks both head anchors; stops at the first
 * problem. With sandbox_id, walks that sandbox's chain only (its records'
 * hashes and links; deleting a sandbox's newest records is then caught only by
 * the full walk). Returns 0 whether or not the trail is intact (see ret->ok);
 * negative only when it could not be read.
 */
int stk_audit_verify(struct stk_store *st, const char *sandbox_id,
                     struct stk_audit_verify_result *ret, struct stk_error **err);

#endif
