/* SPDX-License-Identifier: Apache-2.0 */
/* Internal to src/render: pieces the standalone Pod and an injected
 * container share. */
#ifndef STK_RENDER_INTERNAL_H
#define STK_RENDER_INTERNAL_H

#include "render.h"

/* json_pack for objects we build ourselves. NULL means a NULL string slipped
 * into a format (a bug) or no memory: either way no correct output exists, and
 * a silently missing field would be worse than stopping. */
static inline json_t *stk_k8s_packed(json_t *v)
{
    if (!v)
        abort();
    return v;
}
#define PACK(...) stk_k8s_packed(json_pack(__VA_ARGS__))

/* The sandbox container's securityContext for its policy level. */
json_t *stk_k8s_container_security_context(const struct stk_boundary *b);
/* env and envFrom lists of the sandbox container (b->env, b->env_from). */
json_t *stk_k8s_env(const struct stk_boundary *b);
json_t *stk_k8s_env_from(const struct stk_boundary *b);
/* resources.limits of one sandbox container (cpu, memory, ephemeral-storage). */
json_t *stk_k8s_container_limits(const struct stk_boundary *b);
/* {"emptyDir": {...}} with an optional medium and sizeLimit (0: none). */
json_t *stk_k8s_empty_dir(const char *medium, int64_t size);

#endif
