/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Crash recovery. A sandbox whose phase names an operation in flight and
 * whose lock nobody holds was left by a stockade process that died: its
 * monitor (kill -9, OOM, a reboot) or the command that was finishing its
 * work. Whoever opens the store next finishes that work:
 *
 *   pending, provisioning, starting  → roll back: remove what was set up,
 *                                      phase failed (reason interrupted)
 *   stopping                         → finish the stop: stopped
 *   deleting                         → finish the delete: deleted
 *   ready                            → adopt: a new monitor takes over the
 *                                      running sandbox (or concludes it
 *                                      when its supervisor is gone too)
 */
#include "session/private.h"

#include <errno.h>
#include <jansson.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

int session_settle(struct stk_session *s, const struct session_sb *sb, struct stk_error **err)
{
    const struct stk_sb_rec *rec = &sb->rec;
    enum stk_sb_phase to;
    const char *event, *reason = NULL, *msg = NULL;
    bool purge = false;
    switch (rec->phase) {
    case STK_SB_PENDING:
    case STK_SB_PROVISIONING:
    case STK_SB_STARTING:
        to = STK_SB_FAILED;
        event = "failed";
        reason = "interrupted";
        msg = "stockade stopped while setting the sandbox up; what it had set up was removed";
        break;
    case STK_SB_STOPPING:
        to = STK_SB_STOPPED;
        event = "stopped";
        break;
    case STK_SB_DELETING:
        to = STK_SB_DELETED;
        event = "deleted";
        purge = true;
        break;
    case STK_SB_READY:
    case STK_SB_STOPPED:
    case STK_SB_SUCCEEDED:
    case STK_SB_FAILED:
    case STK_SB_KILLED:
    case STK_SB_DELETED:
    case _STK_SB_N:
    default:
        return 0;
    }
    /* act, then record; a delete removes the directory (and the lock in
     * it) only once "deleted" is recorded */
    int r = s->drv->ops->teardown(s->drv->ctx, &sb->d, purge, err);
    if (r >= 0) {
        (void)stk_store_sb_set_pids(s->st, rec->id, 0, 0, NULL);
        r = session_set_phase(s, rec->id, (int)rec->phase, to, reason, msg, NULL, event,
                              json_pack("{s:b}", "recovered", 1), err);
    }
    if (r >= 0 && purge) {
        char dir[PATH_MAX];
        if (session_dir(s, rec->id, dir, sizeof(dir)) >= 0)
            (void)rm_rf(dir);
    }
    return r;
}

int session_finish(struct stk_session *s, const char *id, int lock_fd, struct stk_error **err)
{
    struct session_sb sb;
    int r = session_sb_load(s, id, false, &sb, err);
    if (r < 0) {
        close(lock_fd);
        return r;
    }
    if (sb.rec.phase == STK_SB_READY) {
        session_sb_release(&sb);
        return monitor_spawn(s, id, MONITOR_ADOPT, lock_fd, err);
    }
    sb.d.lock_fd = lock_fd;
    r = session_settle(s, &sb, err);
    session_sb_release(&sb);
    close(lock_fd);
    return r;
}

int stk_session_reconcile(struct stk_session *s, struct stk_error **err)
{
    if (!session_supervised(s))
        /* no monitors, no locks: what the driver observes, and in-flight
         * phases older than any operation takes */
        return session_advance_all(s, err);
    char(*ids)[64] = NULL;
    size_t n = 0;
    int r = stk_store_sb_in_flight(s->st, &ids, &n, err);
    if (r < 0)
        return r;
    for (size_t i = 0; i < n; i++) {
        /* a held lock is a live monitor (or a command at work): theirs */
        int lock = session_lock(s, ids[i], 0, NULL);
        bool made = false;
        if (lock == -ENOENT) {
            /* the directory is gone: nothing is left on the host to own */
            lock = session_lock_open(s, ids[i], true, NULL);
            made = lock >= 0;
            if (lock >= 0 && flock(lock, LOCK_EX | LOCK_NB) < 0) {
                close(lock);
                lock = -1;
            }
        }
        if (lock < 0)
            continue;
        /* what fails here is retried by the next command; the sandbox's
         * phase keeps saying what is in flight */
        struct stk_error *e = NULL;
        (void)session_finish(s, ids[i], lock, &e);
        stk_error_free(e);
        /* the directory made just for the lock: a delete that finished
         * between the listing and the lock (it removed the directory after
         * recording "deleted") must not find it back */
        struct stk_sb_rec rec = {0};
        if (made && stk_store_sb_get_id(s->st, ids[i], &rec, NULL) >= 0 &&
            rec.phase == STK_SB_DELETED) {
            char dir[PATH_MAX];
            if (session_dir(s, ids[i], dir, sizeof(dir)) >= 0)
                (void)rm_rf(dir);
        }
        stk_sb_rec_free(&rec);
    }
    free(ids);
    return 0;
}
