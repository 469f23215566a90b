/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Document tree + field table -> typed structs. Every problem becomes a
 * diagnostic with file, line:column and field path; decoding goes on past an
 * error so that one pass reports all of them (bounded by STK_LIMIT_DIAGS).
 */
#include "internal.h"

#include <errno.h>
#include <string.h>

struct dctx {
    const char *file;
    struct stk_arena *a;
    struct stk_diags *d;
    struct stk_buf path;
};

/* The common layout of every STK_LIST(T). Lists are written through this
 * view with memcpy, so no object is accessed through a foreign type. */
struct list_raw {
    struct stk_meta meta;
    void *items;
    uint32_t n;
};
typedef STK_LIST(struct stk_str) list_probe_t;
_Static_assert(sizeof(list_probe_t) == sizeof(struct list_raw), "STK_LIST layout");
_Static_assert(offsetof(list_probe_t, items) == offsetof(struct list_raw, items), "STK_LIST");
_Static_assert(offsetof(list_probe_t, n) == offsetof(struct list_raw, n), "STK_LIST layout");

STK_PRINTF(3, 4) static void derr(struct dctx *c, struct stk_pos pos, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *msg = stk_xvasprintf(fmt, ap);
    va_end(ap);
    stk_diags_add(c->d, STK_SEV_ERROR, c->file, pos, stk_buf_str(&c->path), "%s", msg);
}

static size_t path_push_field(struct dctx *c, const char *name)
{
    size_t mark = c->path.len;
    if (c->path.len)
        stk_buf_putc(&c->path, '.');
    stk_buf_puts(&c->path, name);
    return mark;
}

static size_t path_push_index(struct dctx *c, uint32_t i)
{
    size_t mark = c->path.len;
    stk_buf_printf(&c->path, "[%u]", i);
    return mark;
}

static size_t path_push_key(struct dctx *c, const char *key)
{
    size_t mark = c->path.len;
    stk_buf_printf(&c->path, "[\"%s\"]", key);
    return mark;
}

static void path_pop(struct dctx *c, size_t mark)
{
    c->path.len = mark;
    if (c->path.data)
        c->path.data[mark] = '\0';
}

static bool is_null(const struct stk_node *n)
{
    return n->kind == STK_NODE_SCALAR && stk_node_scalar_type(n) == STK_SCALAR_NULL;
}

static void set_meta(void *dst, struct stk_pos pos)
{
    struct stk_meta *m = dst;
    m->set = true;
    m->pos = pos;
}

/* Returns the scalar text when the node is a scalar of an acceptable kind. */
static const char *want_string(struct dctx *c, const struct stk_node *n)
{
    if (n->kind != STK_NODE_SCALAR) {
        derr(c, n->pos, "expected a string, got %s", stk_node_kind_name(n));
        return NULL;
    }
    enum stk_scalar_type t = stk_node_scalar_type(n);
    if (t != STK_SCALAR_STRING) {
        derr(c, n->pos, "expected a string, got %s (quote it: \"%s\")", stk_node_kind_name(n),
             n->s);
        return NULL;
    }
    return n->s;
}

static bool check_string(struct dctx *c, const struct stk_field *f, enum stk_strfmt fmt,
                         uint32_t max_len, struct stk_pos pos, const char *s)
{
    size_t len = strlen(s);
    uint32_t limit = max_len ? max_len : stk_strfmt_max_len(fmt);
    const char *why = NULL;
    (void)f;
    if (len > limit) {
        derr(c, pos, "is %zu bytes long; the limit is %u", len, limit);
        return false;
    }
    if (!stk_strfmt_check(fmt, s, &why)) {
        if (len <= 80)
            derr(c, pos, "\"%s\" %s", s, why);
        else
            derr(c, pos, "%s", why);
        return false;
    }
    return true;
}

static bool check_range(struct dctx *c, const struct stk_field *f, enum stk_ftype t,
                        struct stk_pos pos, int64_t v)
{
    char vb[64], lb[64];
    if (f->max && v > f->max) {
        stk_num_format(t, v, vb, sizeof(vb));
        stk_num_format(t, f->max, lb, sizeof(lb));
        derr(c, pos, "%s is above the limit of %s", vb, lb);
        return false;
    }
    if (v < f->min) {
        stk_num_format(t, v, vb, sizeof(vb));
        stk_num_format(t, f->min, lb, sizeof(lb));
        derr(c, pos, "%s is below the minimum of %s", vb, lb);
        return false;
    }
    return true;
}

static bool parse_int(const char *s, int64_t *ret)
{
    errno = 0;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (errno || !end || *end || end == s)
        return false;
    *ret = v;
    return true;
}

static void decode_list(struct dctx *c, const struct stk_field *f, const struct stk_node *n,
                        void *dst);
static void decode_map(struct dctx *c, const struct stk_field *f, const struct stk_node *n,
                       struct stk_map *dst);
static void decode_object_in(struct dctx *c, const struct stk_field *fields,
                             const struct stk_node *node, void *out);

/* Decodes node as a value of type t (the field's own type, or a list's
 * element type) into dst. */
static void decode_value(struct dctx *c, const struct stk_field *f, enum stk_ftype t,
                         const struct stk_node *n, void *dst)
{
    const char *s;
    const char *why = NULL;

    switch (t) {
    case STK_F_REJECT:
        derr(c, n->pos, "%s", f->doc);
        return;
    case STK_F_STRING: {
        if (!(s = want_string(c, n)) || !check_string(c, f, f->fmt, f->max_len, n->pos, s))
            return;
        struct stk_str *v = dst;
        v->v = s; /* the tree lives in the same arena */
        set_meta(v, n->pos);
        return;
    }
    case STK_F_BOOL: {
        struct stk_bool *v = dst;
        if (n->kind != STK_NODE_SCALAR || stk_node_scalar_type(n) != STK_SCALAR_BOOL) {
            bool yaml11 =
                n->kind == STK_NODE_SCALAR && n->plain &&
                (!strcasecmp(n->s, "yes") || !strcasecmp(n->s, "no") || !strcasecmp(n->s, "on") ||
                 !strcasecmp(n->s, "off") || !strcasecmp(n->s, "y") || !strcasecmp(n->s, "n"));
            if (yaml11)
                derr(c, n->pos,
                     "expected true or false, got \"%s\" (YAML 1.1 spellings are "
                     "not booleans here)",
                     n->s);
            else
                derr(c, n->pos, "expected true or false, got %s", stk_node_kind_name(n));
            return;
        }
        v->v = n->s[0] == 't' || n->s[0] == 'T';
        set_meta(v, n->pos);
        return;
    }
    case STK_F_INT: {
        struct stk_num *v = dst;
        int64_t x;
        if (n->kind != STK_NODE_SCALAR || stk_node_scalar_type(n) != STK_SCALAR_INT ||
            !parse_int(n->s, &x)) {
            derr(c, n->pos, "expected a whole number, got %s", stk_node_kind_name(n));
            return;
        }
        if (!check_range(c, f, t, n->pos, x))
            return;
        v->v = x;
        set_meta(v, n->pos);
        return;
    }
    case STK_F_CPU:
    case STK_F_BYTES:
    case STK_F_DURATION: {
        /* Quantities and durations: text with a unit, parsed exactly. */
        struct stk_num *v = dst;
        int64_t x;
        const char *example = t == STK_F_CPU     ? "a quantity such as 500m or 2"
                              : t == STK_F_BYTES ? "a quantity such as 512Mi or 2Gi"
                                                 : "a duration such as 90s or 10m";
        if (n->kind != STK_NODE_SCALAR || stk_node_scalar_type(n) == STK_SCALAR_NULL ||
            stk_node_scalar_type(n) == STK_SCALAR_BOOL) {
            derr(c, n->pos, "expected %s, got %s", example, stk_node_kind_name(n));
            return;
        }
        int r = t == STK_F_DURATION
                    ? stk_duration_parse(n->s, &x, &why)
                    : stk_quantity_parse(n->s, t == STK_F_CPU ? STK_QTY_MILLI : STK_QTY_BYTES, &x,
                                         &why);
        if (r < 0) {
            derr(c, n->pos, "\"%s\": %s", n->s, why);
            return;
        }
        if (!check_range(c, f, t, n->pos, x))
            return;
        v->v = x;
        set_meta(v, n->pos);
        return;
    }
    case STK_F_ENUM: {
        struct stk_enumv *v = dst;
        char allowed[256];
        stk_enum_join(f->values, f->n_values, "|", allowed, sizeof(allowed));
        if (n->kind != STK_NODE_SCALAR) {
            derr(c, n->pos, "expected one of %s, got %s", allowed, stk_node_kind_name(n));
            return;
        }
        int i = stk_enum_lookup(f->values, f->n_values, n->s);
        if (i < 0) {
            if (n->len <= 64)
                derr(c, n->pos, "\"%s\" is not one of %s", n->s, allowed);
            else
                derr(c, n->pos, "value is not one of %s", allowed);
            return;
        }
        v->v = i;
        set_meta(v, n->pos);
        return;
    }
    case STK_F_CIDR: {
        struct stk_cidrv *v = dst;
        if (!(s = want_string(c, n)))
            return;
        if (strlen(s) >= STK_CIDR_STRLEN) {
            derr(c, n->pos, "expected a CIDR such as 10.0.0.0/8 or fd00::/8");
            return;
        }
        if (stk_cidr_parse(s, &v->v, &why) < 0) {
            struct stk_cidr fixed;
            char buf[STK_CIDR_STRLEN];
            const char *slash = strchr(s, '/');
            bool host_bits = slash && strstr(why, "host bits");
            if (host_bits &&
                stk_addr_parse(stk_arena_strndup(c->a, s, (size_t)(slash - s)), &fixed) == 0) {
                fixed.prefix = (uint8_t)atoi(slash + 1);
                stk_cidr_normalise(&fixed);
                derr(c, n->pos, "\"%s\": %s; did you mean %s?", s, why,
                     stk_cidr_format(&fixed, buf));
            } else {
                derr(c, n->pos, "\"%s\": %s", s, why);
            }
            return;
        }
        set_meta(v, n->pos);
        return;
    }
    case STK_F_MAP:
        decode_map(c, f, n, dst);
        return;
    case STK_F_OBJECT:
        if (n->kind != STK_NODE_MAP) {
            derr(c, n->pos, "expected a mapping, got %s", stk_node_kind_name(n));
            return;
        }
        set_meta(dst, n->pos);
        decode_object_in(c, f->fields, n, dst);
        return;
    case STK_F_LIST:
        decode_list(c, f, n, dst);
        return;
    }
}

static void decode_map(struct dctx *c, const struct stk_field *f, const struct stk_node *n,
                       struct stk_map *dst)
{
    if (n->kind != STK_NODE_MAP) {
        derr(c, n->pos, "expected a mapping of strings, got %s", stk_node_kind_name(n));
        return;
    }
    uint32_t limit = f->max_items ? f->max_items : 64;
    if (n->n > limit) {
        derr(c, n->pos, "has %u entries; the limit is %u", n->n, limit);
        return;
    }
    struct stk_kv *items = stk_arena_array(c->a, n->n, sizeof(*items));
    uint32_t ok = 0;
    for (uint32_t i = 0; i < n->n; i++) {
        const struct stk_node_pair *p = &n->pairs[i];
        size_t mark = path_push_key(c, p->key);
        bool good = check_string(c, f, f->fmt, 0, p->pos, p->key);
        const char *v = want_string(c, p->value);
        if (v && !check_string(c, f, f->value_fmt, f->max_len, p->value->pos, v))
            v = NULL;
        if (good && v)
            items[ok++] = (struct stk_kv){.pos = p->pos, .key = p->key, .value = v};
        path_pop(c, mark);
    }
    dst->items = items;
    dst->n = ok;
    set_meta(dst, n->pos);
}

static void decode_list(struct dctx *c, const struct stk_field *f, const struct stk_node *n,
                        void *dst)
{
    if (n->kind != STK_NODE_SEQ) {
        derr(c, n->pos, "expected a list, got %s", stk_node_kind_name(n));
        return;
    }
    uint32_t limit = f->max_items ? f->max_items : 64;
    if (n->n > limit) {
        derr(c, n->pos, "has %u items; the limit is %u", n->n, limit);
        return;
    }
    struct list_raw raw = {.meta = {.pos = n->pos, .set = true}, .n = n->n};
    raw.items = stk_arena_array(c->a, n->n, f->elem_size);
    for (uint32_t i = 0; i < n->n; i++) {
        size_t mark = path_push_index(c, i);
        const struct stk_node *item = n->items[i];
        void *slot = (char *)raw.items + i * f->elem_size;
        if (is_null(item))
            derr(c, item->pos, "list items must not be null");
        else
            decode_value(c, f, f->elem, item, slot);
        path_pop(c, mark);
    }
    memcpy(dst, &raw, sizeof(raw));
}

static const struct stk_field *field_find(const struct stk_field *fields, const char *name)
{
    for (const struct stk_field *f = fields; f->name; f++)
        if (!strcmp(f->name, name))
            return f;
    return NULL;
}

static void unknown_field(struct dctx *c, const struct stk_field *fields,
                          const struct stk_node_pair *p)
{
    const struct stk_field *best = NULL;
    unsigned best_d = 3;
    for (const struct stk_field *f = fields; f->name; f++) {
        if (f->type == STK_F_REJECT)
            continue;
        unsigned dist = stk_edit_distance(p->key, f->name, 2);
        if (dist < best_d) {
            best_d = dist;
            best = f;
        }
    }
    if (best) {
        derr(c, p->pos, "unknown field \"%s\"; did you mean \"%s\"?", p->key, best->name);
        return;
    }
    struct stk_buf list = {0};
    for (const struct stk_field *f = fields; f->name; f++)
        if (f->type != STK_F_REJECT)
            stk_buf_printf(&list, "%s%s", list.len ? ", " : "", f->name);
    derr(c, p->pos, "unknown field \"%s\"; expected one of: %s",
         strlen(p->key) <= 64 ? p->key : "…", stk_buf_str(&list));
    stk_buf_free(&list);
}

static void decode_object_in(struct dctx *c, const struct stk_field *fields,
                             const struct stk_node *node, void *out)
{
    for (uint32_t i = 0; i < node->n; i++) {
        const struct stk_node_pair *p = &node->pairs[i];
        const struct stk_field *f = field_find(fields, p->key);
        size_t mark = path_push_field(c, p->key);
        if (!f)
            unknown_field(c, fields, p);
        else if (f->type == STK_F_REJECT)
            derr(c, p->pos, "%s", f->doc);
        else if (!is_null(p->value)) {
            decode_value(c, f, f->type, p->value, (char *)out + f->offset);
        }
        path_pop(c, mark);
    }
    for (const struct stk_field *f = fields; f->name; f++) {
        if (!f->required)
            continue;
        const struct stk_node_pair *found = NULL;
        for (uint32_t i = 0; i < node->n && !found; i++)
            if (!strcmp(node->pairs[i].key, f->name) && !is_null(node->pairs[i].value))
                found = &node->pairs[i];
        if (!found)
            derr(c, node->pos, "missing required field \"%s\"", f->name);
    }
}

void stk_decode_object(const char *file, struct stk_arena *a, struct stk_diags *d,
                       const struct stk_field *fields, const struct stk_node *node, void *out,
                       const char *path)
{
    struct dctx c = {.file = file, .a = a, .d = d};
    if (path)
        stk_buf_puts(&c.path, path);
    set_meta(out, node->pos);
    decode_object_in(&c, fields, node, out);
    stk_buf_free(&c.path);
}
