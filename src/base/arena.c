/* SPDX-License-Identifier: Apache-2.0 */
#include "base.h"

#include <string.h>

#define ARENA_ALIGN 16
#define ARENA_CHUNK (16 * 1024)

struct arena_chunk {
    struct arena_chunk *next;
    size_t size;
    size_t used;
    _Alignas(ARENA_ALIGN) unsigned char data[];
};

struct stk_arena {
    struct arena_chunk *head;
    size_t total;
};

struct stk_arena *stk_arena_new(void)
{
    return stk_xcalloc(1, sizeof(struct stk_arena));
}

void stk_arena_free(struct stk_arena *a)
{
    if (!a)
        return;
    struct arena_chunk *c = a->head;
    while (c) {
        struct arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    free(a);
}

void *stk_arena_alloc(struct stk_arena *a, size_t n)
{
    size_t need = (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (need < n)
        stk_oom();
    struct arena_chunk *c = a->head;
    if (!c || c->size - c->used < need) {
        size_t size = need > ARENA_CHUNK ? need : ARENA_CHUNK;
        c = stk_xmalloc(sizeof(*c) + size);
        c->size = size;
        c->used = 0;
        c->next = a->head;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += need;
    a->total += need;
    memset(p, 0, n);
    return p;
}

void *stk_arena_array(struct stk_arena *a, size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        stk_oom();
    return stk_arena_alloc(a, n * size);
}

char *stk_arena_strndup(struct stk_arena *a, const char *s, size_t n)
{
    char *p = stk_arena_alloc(a, n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *stk_arena_strdup(struct stk_arena *a, const char *s)
{
    return s ? stk_arena_strndup(a, s, strlen(s)) : NULL;
}

char *stk_arena_printf(struct stk_arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *tmp = stk_xvasprintf(fmt, ap);
    va_end(ap);
    return stk_arena_strdup(a, tmp);
}

size_t stk_arena_used(const struct stk_arena *a)
{
    return a->total;
}
