/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Input bytes -> document trees with positions.
 *
 * YAML goes through libyaml's event parser. JSON is first checked by jansson,
 * so a .json input is held to strict JSON (no comments, no trailing commas,
 * no duplicate keys) with jansson's own error positions; the tree itself is
 * then built by the same libyaml pass as YAML because jansson keeps no
 * positions, and every later error must name line:column.
 */
#include "internal.h"

#include <errno.h>
#include <jansson.h>
#include <string.h>
#include <yaml.h>

struct frame {
    struct stk_node *node;
    /* children collected so far (moved into the arena when the node ends) */
    struct stk_node_pair *pairs;
    struct stk_node **items;
    uint32_t n, cap;
    /* mappings: a key was read, its value comes next */
    bool have_key;
    const char *key;
    struct stk_pos key_pos;
};

struct loader {
    const char *file;
    struct stk_arena *a;
    struct stk_diags *d;
    struct frame stack[STK_LIMIT_DEPTH + 1];
    int depth;
    size_t nodes;
    struct stk_node **roots;
    size_t n_roots;
    size_t cap_roots;
    bool failed;
};

static struct stk_pos mark_pos(yaml_mark_t m)
{
    return (struct stk_pos){.line = (uint32_t)m.line + 1, .col = (uint32_t)m.column + 1};
}

STK_PRINTF(3, 4) static void load_error(struct loader *l, struct stk_pos pos, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *msg = stk_xvasprintf(fmt, ap);
    va_end(ap);
    stk_diags_add(l->d, STK_SEV_ERROR, l->file, pos, "", "%s", msg);
    l->failed = true;
}

const char *stk_node_kind_name(const struct stk_node *n)
{
    switch (n->kind) {
    case STK_NODE_MAP:
        return "a mapping";
    case STK_NODE_SEQ:
        return "a list";
    case STK_NODE_SCALAR:
        switch (stk_node_scalar_type(n)) {
        case STK_SCALAR_NULL:
            return "null";
        case STK_SCALAR_BOOL:
            return "a boolean";
        case STK_SCALAR_INT:
            return "an integer";
        case STK_SCALAR_FLOAT:
            return "a number";
        case STK_SCALAR_STRING:
            return "a string";
        }
    }
    return "a value";
}

static bool all_digits(const char *s, size_t n, const char *set)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!strchr(set, s[i]) || s[i] == '\0')
            return false;
    return true;
}

static bool is_float(const char *s, size_t n)
{
    size_t i = 0, digits = 0;
    if (i < n && (s[i] == '-' || s[i] == '+'))
        i++;
    if (n - i == 4 &&
        (!strncmp(s + i, ".inf", 4) || !strncmp(s + i, ".Inf", 4) || !strncmp(s + i, ".INF", 4)))
        return true;
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++)
        digits++;
    if (i < n && s[i] == '.')
        for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++)
            digits++;
    if (!digits)
        return false;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '-' || s[i] == '+'))
            i++;
        size_t e = 0;
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++)
            e++;
        if (!e)
            return false;
    }
    return i == n;
}

enum stk_scalar_type stk_node_scalar_type(const struct stk_node *n)
{
    if (n->kind != STK_NODE_SCALAR || !n->plain)
        return STK_SCALAR_STRING;
    const char *s = n->s;
    size_t len = n->len;
    if (len == 0 || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
        !strcmp(s, "NULL"))
        return STK_SCALAR_NULL;
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE") || !strcmp(s, "false") ||
        !strcmp(s, "False") || !strcmp(s, "FALSE"))
        return STK_SCALAR_BOOL;
    size_t sign = (s[0] == '-' || s[0] == '+') ? 1 : 0;
    if (all_digits(s + sign, len - sign, "0123456789"))
        return STK_SCALAR_INT;
    if (len > 2 && s[0] == '0' && s[1] == 'o' && all_digits(s + 2, len - 2, "01234567"))
        return STK_SCALAR_INT;
    if (len > 2 && s[0] == '0' && s[1] == 'x' &&
        all_digits(s + 2, len - 2, "0123456789abcdefABCDEF"))
        return STK_SCALAR_INT;
    if (is_float(s, len) || !strcmp(s, ".nan") || !strcmp(s, ".NaN") || !strcmp(s, ".NAN"))
        return STK_SCALAR_FLOAT;
    return STK_SCALAR_STRING;
}

static struct stk_node *node_new(struct loader *l, enum stk_node_kind kind, yaml_mark_t start)
{
    if (++l->nodes > STK_LIMIT_NODES) {
        load_error(l, mark_pos(start), "document has more than %d values; the limit is %d",
                   STK_LIMIT_NODES, STK_LIMIT_NODES);
        return NULL;
    }
    struct stk_node *n = stk_arena_alloc(l->a, sizeof(*n));
    n->kind = kind;
    n->pos = mark_pos(start);
    return n;
}

static void frame_push_child(struct frame *f)
{
    if (f->n == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 8;
        if (f->node->kind == STK_NODE_MAP)
            f->pairs = stk_xrealloc(f->pairs, f->cap * sizeof(*f->pairs));
        else
            f->items = stk_xrealloc(f->items, f->cap * sizeof(*f->items));
    }
}

static int pair_cmp(const void *a, const void *b)
{
    const struct stk_node_pair *pa = *(struct stk_node_pair *const *)a;
    const struct stk_node_pair *pb = *(struct stk_node_pair *const *)b;
    int c = strcmp(pa->key, pb->key);
    if (c)
        return c;
    /* later occurrence sorts after, so it is the one reported */
    if (pa->pos.line != pb->pos.line)
        return pa->pos.line < pb->pos.line ? -1 : 1;
    return pa->pos.col < pb->pos.col ? -1 : (pa->pos.col > pb->pos.col);
}

static void check_duplicate_keys(struct loader *l, struct stk_node *map)
{
    if (map->n < 2)
        return;
    _cleanup_free_ struct stk_node_pair **sorted = stk_xcalloc(map->n, sizeof(*sorted));
    for (uint32_t i = 0; i < map->n; i++)
        sorted[i] = &map->pairs[i];
    qsort(sorted, map->n, sizeof(*sorted), pair_cmp);
    for (uint32_t i = 1; i < map->n; i++)
        if (!strcmp(sorted[i - 1]->key, sorted[i]->key))
            load_error(l, sorted[i]->pos, "duplicate key \"%s\" (first at line %u, column %u)",
                       sorted[i]->key, sorted[i - 1]->pos.line, sorted[i - 1]->pos.col);
}

static void frame_close(struct loader *l, struct frame *f)
{
    struct stk_node *node = f->node;
    node->n = f->n;
    if (node->kind == STK_NODE_MAP) {
        node->pairs = stk_arena_array(l->a, f->n, sizeof(*node->pairs));
        if (f->n)
            memcpy(node->pairs, f->pairs, f->n * sizeof(*node->pairs));
        check_duplicate_keys(l, node);
    } else {
        node->items = stk_arena_array(l->a, f->n, sizeof(*node->items));
        if (f->n)
            memcpy(node->items, f->items, f->n * sizeof(*node->items));
    }
    free(f->pairs);
    free(f->items);
    memset(f, 0, sizeof(*f));
}

static void add_root(struct loader *l, struct stk_node *n)
{
    if (n->kind == STK_NODE_SCALAR && stk_node_scalar_type(n) == STK_SCALAR_NULL)
        return; /* an empty document ("---" alone) */
    if (n->kind == STK_NODE_SEQ) {
        for (uint32_t i = 0; i < n->n; i++)
            add_root(l, n->items[i]);
        return;
    }
    if (l->n_roots >= STK_LIMIT_DOCUMENTS) {
        if (l->n_roots == STK_LIMIT_DOCUMENTS)
            load_error(l, n->pos, "more than %d documents in one file; the limit is %d",
                       STK_LIMIT_DOCUMENTS, STK_LIMIT_DOCUMENTS);
        l->n_roots++;
        return;
    }
    if (n->kind != STK_NODE_MAP) {
        load_error(l, n->pos, "a document must be a mapping (apiVersion, kind, ...), not %s",
                   stk_node_kind_name(n));
        return;
    }
    if (l->n_roots == l->cap_roots) {
        l->cap_roots = l->cap_roots ? l->cap_roots * 2 : 4;
        struct stk_node **r = stk_arena_array(l->a, l->cap_roots, sizeof(*r));
        if (l->n_roots)
            memcpy(r, l->roots, l->n_roots * sizeof(*r));
        l->roots = r;
    }
    l->roots[l->n_roots++] = n;
}

/* A finished node goes to its parent, or becomes a document root. */
static void attach(struct loader *l, struct stk_node *n)
{
    if (l->depth == 0) {
        add_root(l, n);
        return;
    }
    struct frame *f = &l->stack[l->depth - 1];
    if (f->node->kind == STK_NODE_SEQ) {
        frame_push_child(f);
        f->items[f->n++] = n;
        return;
    }
    if (!f->have_key) {
        if (n->kind != STK_NODE_SCALAR) {
            load_error(l, n->pos, "a mapping key must be a string, not %s", stk_node_kind_name(n));
            f->key = "";
        } else {
            f->key = n->s;
        }
        f->key_pos = n->pos;
        f->have_key = true;
        return;
    }
    frame_push_child(f);
    f->pairs[f->n++] = (struct stk_node_pair){.key = f->key, .pos = f->key_pos, .value = n};
    f->have_key = false;
}

static bool check_tag(struct loader *l, const yaml_char_t *tag, yaml_mark_t mark, bool *force_str)
{
    *force_str = false;
    if (!tag)
        return true;
    if (!strcmp((const char *)tag, YAML_STR_TAG)) {
        *force_str = true;
        return true;
    }
    if (!strcmp((const char *)tag, YAML_MAP_TAG) || !strcmp((const char *)tag, YAML_SEQ_TAG))
        return true;
    load_error(l, mark_pos(mark), "YAML tag \"%s\" is not supported (only !!str, !!map, !!seq)",
               (const char *)tag);
    return false;
}

static void on_scalar(struct loader *l, const yaml_event_t *ev)
{
    bool force_str;
    if (!check_tag(l, ev->data.scalar.tag, ev->start_mark, &force_str))
        return;
    size_t len = ev->data.scalar.length;
    const char *v = (const char *)ev->data.scalar.value;
    if (len > STK_LIMIT_SCALAR_BYTES) {
        load_error(l, mark_pos(ev->start_mark), "value is %zu bytes long; the limit is %d", len,
                   STK_LIMIT_SCALAR_BYTES);
        return;
    }
    if (memchr(v, '\0', len)) {
        load_error(l, mark_pos(ev->start_mark), "value contains a NUL character");
        return;
    }
    struct stk_node *n = node_new(l, STK_NODE_SCALAR, ev->start_mark);
    if (!n)
        return;
    n->s = stk_arena_strndup(l->a, v, len);
    n->len = len;
    n->plain = !force_str && ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    attach(l, n);
}

static void on_collection_start(struct loader *l, const yaml_event_t *ev, enum stk_node_kind kind)
{
    bool force_str;
    const yaml_char_t *tag =
        kind == STK_NODE_MAP ? ev->data.mapping_start.tag : ev->data.sequence_start.tag;
    (void)check_tag(l, tag, ev->start_mark, &force_str);
    if (force_str)
        load_error(l, mark_pos(ev->start_mark), "!!str applies to plain values only");
    if (l->depth >= STK_LIMIT_DEPTH) {
        load_error(l, mark_pos(ev->start_mark), "nesting deeper than %d levels; the limit is %d",
                   STK_LIMIT_DEPTH, STK_LIMIT_DEPTH);
        return;
    }
    struct stk_node *n = node_new(l, kind, ev->start_mark);
    if (!n)
        return;
    l->stack[l->depth++] = (struct frame){.node = n};
}

static void on_collection_end(struct loader *l)
{
    struct frame *f = &l->stack[--l->depth];
    struct stk_node *n = f->node;
    frame_close(l, f);
    attach(l, n);
}

static void loader_release(struct loader *l)
{
    while (l->depth > 0) {
        struct frame *f = &l->stack[--l->depth];
        free(f->pairs);
        free(f->items);
    }
}

static void yaml_fail(struct loader *l, const yaml_parser_t *p, bool json)
{
    const char *what = p->problem ? p->problem : "malformed input";
    struct stk_pos pos = mark_pos(p->problem_mark);
    if (json)
        load_error(l, pos, "JSON input not supported by the YAML reader: %s", what);
    else if (p->context)
        load_error(l, pos, "YAML syntax error: %s %s", what, p->context);
    else
        load_error(l, pos, "YAML syntax error: %s", what);
}

static bool looks_like_json(const char *data, size_t len)
{
    size_t i = 0;
    if (len >= 3 && (unsigned char)data[0] == 0xef && (unsigned char)data[1] == 0xbb &&
        (unsigned char)data[2] == 0xbf)
        i = 3;
    for (; i < len; i++) {
        if (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r')
            continue;
        return data[i] == '{' || data[i] == '[';
    }
    return false;
}

static bool json_check(struct loader *l, const char *data, size_t len)
{
    json_error_t jerr;
    json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        struct stk_pos pos = {.line = jerr.line > 0 ? (uint32_t)jerr.line : 1,
                              .col = jerr.column > 0 ? (uint32_t)jerr.column : 1};
        load_error(l, pos, "JSON syntax error: %s", jerr.text);
        return false;
    }
    json_decref(root);
    return true;
}

int stk_nodes_parse(const char *file, const char *data, size_t len, struct stk_arena *a,
                    struct stk_diags *d, struct stk_node ***ret_roots, size_t *ret_n)
{
    struct loader l = {.file = file, .a = a, .d = d};
    bool json = looks_like_json(data, len);

    if (len > STK_LIMIT_FILE_BYTES) {
        load_error(&l, (struct stk_pos){1, 1}, "input is %zu bytes; the limit is %d bytes", len,
                   STK_LIMIT_FILE_BYTES);
        return -EFBIG;
    }
    if (json && !json_check(&l, data, len))
        return -EINVAL;

    yaml_parser_t p;
    if (!yaml_parser_initialize(&p))
        stk_oom();
    yaml_parser_set_input_string(&p, (const unsigned char *)data, len);

    bool done = false;
    while (!done && !l.failed) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            yaml_fail(&l, &p, json);
            break;
        }
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        case YAML_SCALAR_EVENT:
            on_scalar(&l, &ev);
            break;
        case YAML_SEQUENCE_START_EVENT:
            on_collection_start(&l, &ev, STK_NODE_SEQ);
            break;
        case YAML_MAPPING_START_EVENT:
            on_collection_start(&l, &ev, STK_NODE_MAP);
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            on_collection_end(&l);
            break;
        case YAML_ALIAS_EVENT:
            load_error(&l, mark_pos(ev.start_mark),
                       "YAML aliases (*%s) are not supported: write the value out",
                       (const char *)ev.data.alias.anchor);
            break;
        case YAML_NO_EVENT:
        case YAML_STREAM_START_EVENT:
        case YAML_DOCUMENT_START_EVENT:
        case YAML_DOCUMENT_END_EVENT:
            break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
    loader_release(&l);

    if (l.failed)
        return -EINVAL;
    *ret_roots = l.roots;
    *ret_n = l.n_roots;
    return 0;
}
