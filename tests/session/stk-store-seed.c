/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Test-only: fills a state directory's store through the library, the way
 * `stockade create` and the monitors will, so tests/e2e/test_audit.py can
 * drive `stockade audit` before those commands exist.
 *
 *   stk-store-seed STATE_DIR
 *
 * Three sandboxes (ids sb-a, sb-b, sb-c; names alpha, beta, gamma) and 12
 * audit records, interleaved, one of them host-level:
 *   1 sb-a created  2 sb-b created  3 sb-a started  4 sb-c created
 *   5 sb-b exec     6 sb-a exec     7 (host) gc     8 sb-b exec
 *   9 sb-c started 10 sb-a killed  11 sb-b exited   12 sb-c exec
 */
#include "session/audit.h"
#include "session/store.h"

#include <string.h>

#define ACTOR "uid=0(root) pid=1"

static void die(const char *what, struct stk_error *err)
{
    fprintf(stderr, "stk-store-seed: %s: %s\n", what, err ? err->msg : "failed");
    exit(1);
}

static void add(struct stk_store *st, const char *id, const char *name)
{
    struct stk_sb_rec r = {.phase = STK_SB_PENDING, .exit_code = -1};
    snprintf(r.id, sizeof(r.id), "%s", id);
    snprintf(r.name, sizeof(r.name), "%s", name);
    snprintf(r.owner, sizeof(r.owner), "alice");
    snprintf(r.runtime, sizeof(r.runtime), "crun");
    struct stk_error *err = NULL;
    if (stk_store_sb_insert(st, &r, &err) < 0 ||
        stk_audit_append(st, id, "created", ACTOR, "{\"name\":\"x\"}", &err) < 0)
        die(id, err);
}

static void phase(struct stk_store *st, const char *id, enum stk_sb_phase to, const char *event,
                  const char *reason)
{
    struct stk_error *err = NULL;
    if (stk_store_sb_set_phase(st, id, -1, to, reason, NULL, ACTOR, event, NULL, &err) < 0)
        die(id, err);
}

static void record(struct stk_store *st, const char *id, const char *event, const char *details)
{
    struct stk_error *err = NULL;
    if (stk_audit_append(st, id, event, ACTOR, details, &err) < 0)
        die(id, err);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: stk-store-seed STATE_DIR\n");
        return 2;
    }
    struct stk_store *st = NULL;
    struct stk_error *err = NULL;
    if (stk_store_open(argv[1], &st, &err) < 0)
        die(argv[1], err);
    add(st, "sb-a", "alpha");
    add(st, "sb-b", "beta");
    /* pending → provisioning → ready without records, then one "started" */
    if (stk_store_sb_set_phase(st, "sb-a", STK_SB_PENDING, STK_SB_PROVISIONING, NULL, NULL, ACTOR,
                               NULL, NULL, &err) < 0)
        die("sb-a", err);
    phase(st, "sb-a", STK_SB_READY, "started", NULL);
    add(st, "sb-c", "gamma");
    record(st, "sb-b", "exec", "{\"argv\":[\"ls\",\"-l\"]}");
    record(st, "sb-a", "exec", "{\"argv\":[\"id\"]}");
    record(st, "", "gc", "{\"removed\":2}");
    record(st, "sb-b", "exec", "{\"argv\":[\"cat\",\"notes.txt\"]}");
    phase(st, "sb-c", STK_SB_PROVISIONING, "started", NULL);
    phase(st, "sb-a", STK_SB_KILLED, "killed", "memory_exceeded");
    phase(st, "sb-b", STK_SB_FAILED, "exited", "exit_code_1");
    record(st, "sb-c", "exec", "{\"argv\":[\"true\"]}");
    stk_store_close(st);
    return 0;
}
