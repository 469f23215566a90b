/* SPDX-License-Identifier: Apache-2.0 */
/* A sandbox record as JSON: one shape for the CLI and the gateway, so
 * `stockade get -o json` and `GET /v1/sandboxes/{id}` never drift apart. */
#include "driver/driver.h"
#include "session/store.h"

#include <jansson.h>
#include <time.h>

void *stk_sb_rec_json(const struct stk_sb_rec *r, bool full)
{
    char created[40];
    struct timespec ts = {.tv_sec = r->created_ms / 1000,
                          .tv_nsec = (r->created_ms % 1000) * 1000000};
    stk_time_format(&ts, created);
    json_t *j = json_pack("{s:s,s:s,s:s}", "id", r->id, "name", r->name, "phase",
                          stk_sb_phase_names[r->phase]);
    json_object_set_new(j, "reason", r->reason[0] ? json_string(r->reason) : json_null());
    json_object_set_new(j, "runtime", json_string(r->runtime));
    json_object_set_new(j, "pool", r->pool[0] ? json_string(r->pool) : json_null());
    json_object_set_new(j, "poolMember", json_boolean(r->pool_member));
    json_object_set_new(j, "owner", json_string(r->owner));
    json_object_set_new(j, "tenant", json_string(r->tenant));
    json_object_set_new(j, "created", json_string(created));
    json_object_set_new(j, "exitCode",
                        r->exit_code >= 0 ? json_integer(r->exit_code) : json_null());
    if (!full)
        return j;
    json_object_set_new(j, "message", json_string(r->message));
    json_object_set_new(j, "labels", r->labels ? json_loads(r->labels, 0, NULL) : json_object());
    json_object_set_new(j, "result", r->result ? json_loads(r->result, 0, NULL) : json_null());
    return j;
}
