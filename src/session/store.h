/* TEMPORARY: replaced by the store branch's header at merge */
#ifndef STK_SESSION_STORE_H
#define STK_SESSION_STORE_H
#include "base/base.h"
#include <stdbool.h>
#include <stdint.h>
struct stk_store;
int stk_store_open(const char *state_dir, struct stk_store **ret, struct stk_error **err);
void stk_store_close(struct stk_store *st);
enum stk_sb_phase { STK_SB_PENDING, STK_SB_PROVISIONING, STK_SB_READY, STK_SB_STOPPING, STK_SB_STOPPED,
                    STK_SB_STARTING, STK_SB_SUCCEEDED, STK_SB_FAILED, STK_SB_KILLED,
                    STK_SB_DELETING, STK_SB_DELETED, _STK_SB_N };
extern const char *const stk_sb_phase_names[_STK_SB_N];
bool stk_sb_transition_ok(enum stk_sb_phase from, enum stk_sb_phase to);
bool stk_sb_phase_terminal(enum stk_sb_phase p);
struct stk_sb_rec {
    char id[64]; char name[64]; char tenant[64], project[64], owner[128];
    char runtime[16]; char pool[64]; bool pool_member;
    enum stk_sb_phase phase; char reason[64]; char message[512]; int exit_code;
    int64_t created_ms, updated_ms; int monitor_pid; int64_t monitor_start; int init_pid;
    char *spec; char *env; char *labels; char *result;
};
void stk_sb_rec_free(struct stk_sb_rec *r);
int stk_store_sb_insert(struct stk_store *st, const struct stk_sb_rec *r, struct stk_error **err);
int stk_store_sb_get(struct stk_store *st, const char *id_or_name, struct stk_sb_rec *ret, struct stk_error **err);
int stk_store_sb_list(struct stk_store *st, bool include_deleted, struct stk_sb_rec **ret, size_t *n, struct stk_error **err);
int stk_store_sb_set_phase(struct stk_store *st, const char *id, int expect, enum stk_sb_phase to,
                           const char *reason, const char *message, const char *actor,
                           const char *audit_event, const char *audit_details_json, struct stk_error **err);
int stk_store_sb_update(struct stk_store *st, const struct stk_sb_rec *r, struct stk_error **err);
struct stk_pool_rec { char name[64]; int size; char *template_spec; char *env; char fingerprint[65]; int64_t created_ms; };
int stk_store_pool_insert(struct stk_store *st, const struct stk_pool_rec *p, struct stk_error **err);
int stk_store_pool_get(struct stk_store *st, const char *name, struct stk_pool_rec *ret, struct stk_error **err);
int stk_store_pool_list(struct stk_store *st, struct stk_pool_rec **ret, size_t *n, struct stk_error **err);
int stk_store_pool_delete(struct stk_store *st, const char *name, struct stk_error **err);
void stk_pool_rec_free(struct stk_pool_rec *p);
int stk_store_pool_claim(struct stk_store *st, const char *pool, const struct stk_sb_rec *claim, const char *actor,
                         char ret_id[64], struct stk_error **err);
int stk_audit_append(struct stk_store *st, const char *sandbox_id, const char *event, const char *actor, const char *details_json, struct stk_error **err);
#endif
