/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Budgets for audit records a caller can cause (docs/gateway.md, "Limits"):
 * fixed one-minute windows per key (a principal, a target, a source
 * address) in a table of bounded size. A record over budget is dropped and
 * counted; the next record written for that key carries the count. Keys are
 * hashed (SHA-256, first 16 bytes), so no caller-chosen string is kept and
 * two keys never share a budget by a common prefix.
 */
#include "gateway/internal.h"

#include <openssl/evp.h>
#include <string.h>

static void key_hash(const char *key, uint8_t out[16])
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    if (EVP_Digest(key, strlen(key), md, &n, EVP_sha256(), NULL) != 1 || n < 16)
        stk_oom();
    memcpy(out, md, 16);
}

bool gw_ratelim_take(struct gw_ratelim *rl, const char *key, int64_t now_ms,
                     uint64_t *ret_suppressed)
{
    uint8_t h[16];
    key_hash(key, h);
    size_t start = (size_t)(h[0] | h[1] << 8 | h[2] << 16) % GW_RL_SLOTS;
    struct gw_rl_slot *slot = NULL, *oldest = NULL;
    for (size_t i = 0; i < GW_RL_PROBE && !slot; i++) {
        struct gw_rl_slot *s = &rl->slots[(start + i) % GW_RL_SLOTS];
        if (s->used && !memcmp(s->key, h, sizeof(h)))
            slot = s;
        else if (!oldest || !s->used || (oldest->used && s->window_ms < oldest->window_ms))
            oldest = s;
    }
    if (!slot) {
        /* a full neighbourhood: the stalest key goes; what it had left
         * out is reported with the next record of any key */
        slot = oldest;
        if (slot->used)
            rl->evicted += slot->suppressed;
        *slot = (struct gw_rl_slot){.used = true, .window_ms = now_ms};
        memcpy(slot->key, h, sizeof(h));
    }
    if (now_ms - slot->window_ms >= rl->window_ms) {
        slot->window_ms = now_ms;
        slot->n = 0;
    }
    if (slot->n >= rl->per_window) {
        slot->suppressed++;
        return false;
    }
    slot->n++;
    if (ret_suppressed)
        *ret_suppressed = slot->suppressed + rl->evicted;
    slot->suppressed = 0;
    rl->evicted = 0;
    return true;
}

void gw_ratelim_undo(struct gw_ratelim *rl, const char *key, int64_t now_ms, uint64_t suppressed)
{
    uint8_t h[16];
    key_hash(key, h);
    size_t start = (size_t)(h[0] | h[1] << 8 | h[2] << 16) % GW_RL_SLOTS;
    for (size_t i = 0; i < GW_RL_PROBE; i++) {
        struct gw_rl_slot *s = &rl->slots[(start + i) % GW_RL_SLOTS];
        if (s->used && !memcmp(s->key, h, sizeof(h))) {
            if (now_ms - s->window_ms < rl->window_ms && s->n > 0)
                s->n--;
            s->suppressed += suppressed;
            return;
        }
    }
}
