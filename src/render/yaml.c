/* SPDX-License-Identifier: Apache-2.0 */
/*
 * JSON values <-> YAML text through libyaml's event API. Rendered objects
 * are built as jansson values (insertion-ordered, so output order is the
 * construction order) and printed as YAML here; workloads given to
 * --workload come back in through the loader. Quoting is libyaml's job: we
 * only decide when a string must be quoted because a plain scalar would read
 * back as something else (a number, a boolean, null).
 */
#include "render.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <yaml.h>

#define YAML_MAX_DEPTH 64

/* ---- dump ------------------------------------------------------------------ */

/* libyaml and jansson's iterators take non-const pointers they do not
 * write through. */
static yaml_char_t *ychars(const char *s)
{
    union {
        const char *c;
        yaml_char_t *y;
    } u = {.c = s};
    return u.y;
}

static json_t *unconst(const json_t *v)
{
    union {
        const json_t *c;
        json_t *m;
    } u = {.c = v};
    return u.m;
}

static int write_handler(void *data, unsigned char *buffer, size_t size)
{
    stk_buf_append(data, buffer, size);
    return 1;
}

static int emit(yaml_emitter_t *e, yaml_event_t *ev, struct stk_error **err)
{
    if (!yaml_emitter_emit(e, ev))
        return stk_error_make(err, 0, "writing YAML: %s",
                              e->problem ? e->problem : "emitter error");
    return 0;
}

/* Words a YAML 1.1 or 1.2 reader resolves to null or a boolean. */
static const char *const reserved_words[] = {"null", "~",  "true", "false", "yes",
                                             "no",   "on", "off",  "y",     "n"};

/* Whether a string may be written as a plain scalar without changing type on
 * the way back. Conservative: anything that starts like a number or is a
 * reserved word gets double quotes; libyaml itself quotes what plain style
 * cannot hold (": ", "#", leading indicators, ...). */
static bool plain_safe(const char *s)
{
    if (!*s)
        return false;
    if (strchr("0123456789-+.", s[0]))
        return false;
    for (size_t i = 0; i < STK_ARRAY_SIZE(reserved_words); i++)
        if (!strcasecmp(s, reserved_words[i]))
            return false;
    for (const char *c = s; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == '\'' || *c == '"' || *c == '\\')
            return false;
    return true;
}

static int scalar(yaml_emitter_t *e, const char *tag, const char *v, yaml_scalar_style_t style,
                  struct stk_error **err)
{
    yaml_event_t ev;
    yaml_scalar_event_initialize(&ev, NULL, ychars(tag), ychars(v), (int)strlen(v), 1, 1, style);
    return emit(e, &ev, err);
}

static int dump_value(yaml_emitter_t *e, const json_t *v, int depth, struct stk_error **err)
{
    yaml_event_t ev;
    char num[64];
    int r;

    if (depth > YAML_MAX_DEPTH)
        return stk_error_make(err, 0, "writing YAML: nesting deeper than %d", YAML_MAX_DEPTH);
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        json_t *child;
        yaml_mapping_start_event_initialize(&ev, NULL, ychars(YAML_MAP_TAG), 1,
                                            json_object_size(v) ? YAML_BLOCK_MAPPING_STYLE
                                                                : YAML_FLOW_MAPPING_STYLE);
        if ((r = emit(e, &ev, err)) < 0)
            return r;
        json_object_foreach(unconst(v), key, child)
        {
            if ((r = scalar(e, YAML_STR_TAG, key,
                            plain_safe(key) ? YAML_PLAIN_SCALAR_STYLE
                                            : YAML_DOUBLE_QUOTED_SCALAR_STYLE,
                            err)) < 0)
                return r;
            if ((r = dump_value(e, child, depth + 1, err)) < 0)
                return r;
        }
        yaml_mapping_end_event_initialize(&ev);
        return emit(e, &ev, err);
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *child;
        yaml_sequence_start_event_initialize(&ev, NULL, ychars(YAML_SEQ_TAG), 1,
                                             json_array_size(v) ? YAML_BLOCK_SEQUENCE_STYLE
                                                                : YAML_FLOW_SEQUENCE_STYLE);
        if ((r = emit(e, &ev, err)) < 0)
            return r;
        json_array_foreach(unconst(v), i,
                           child) if ((r = dump_value(e, child, depth + 1, err)) < 0) return r;
        yaml_sequence_end_event_initialize(&ev);
        return emit(e, &ev, err);
    }
    case JSON_STRING: {
        const char *s = json_string_value(v);
        if (strlen(s) != json_string_length(v))
            return stk_error_make(err, 0, "writing YAML: string with a NUL byte");
        return scalar(e, YAML_STR_TAG, s,
                      plain_safe(s) ? YAML_PLAIN_SCALAR_STYLE : YAML_DOUBLE_QUOTED_SCALAR_STYLE,
                      err);
    }
    case JSON_INTEGER:
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return scalar(e, YAML_INT_TAG, num, YAML_PLAIN_SCALAR_STYLE, err);
    case JSON_REAL: {
        double d = json_real_value(v);
        if (!isfinite(d))
            return stk_error_make(err, 0, "writing YAML: non-finite number");
        snprintf(num, sizeof(num), "%.17g", d);
        if (!strpbrk(num, ".eE"))
            strcat(num, ".0");
        return scalar(e, YAML_FLOAT_TAG, num, YAML_PLAIN_SCALAR_STYLE, err);
    }
    case JSON_TRUE:
        return scalar(e, YAML_BOOL_TAG, "true", YAML_PLAIN_SCALAR_STYLE, err);
    case JSON_FALSE:
        return scalar(e, YAML_BOOL_TAG, "false", YAML_PLAIN_SCALAR_STYLE, err);
    case JSON_NULL:
        return scalar(e, YAML_NULL_TAG, "null", YAML_PLAIN_SCALAR_STYLE, err);
    }
    return stk_error_make(err, 0, "writing YAML: unknown JSON type");
}

static void emitter_freep(yaml_emitter_t *e)
{
    yaml_emitter_delete(e);
}

int stk_yaml_dump(const json_t *docs, struct stk_buf *out, struct stk_error **err)
{
    _cleanup_(emitter_freep) yaml_emitter_t e;
    yaml_event_t ev;
    size_t i;
    json_t *doc;
    int r;

    if (!json_is_array(docs))
        return stk_error_make(err, EINVAL, "writing YAML: expected an array of documents");
    if (!yaml_emitter_initialize(&e))
        stk_oom();
    yaml_emitter_set_output(&e, write_handler, out);
    yaml_emitter_set_unicode(&e, 1);
    yaml_emitter_set_width(&e, -1); /* never fold long strings */
    yaml_emitter_set_indent(&e, 2);

    yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
    if ((r = emit(&e, &ev, err)) < 0)
        return r;
    json_array_foreach(unconst(docs), i, doc)
    {
        yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 0);
        if ((r = emit(&e, &ev, err)) < 0)
            return r;
        if ((r = dump_value(&e, doc, 0, err)) < 0)
            return r;
        yaml_document_end_event_initialize(&ev, 1);
        if ((r = emit(&e, &ev, err)) < 0)
            return r;
    }
    yaml_stream_end_event_initialize(&ev);
    if ((r = emit(&e, &ev, err)) < 0)
        return r;
    if (!yaml_emitter_flush(&e))
        return stk_error_make(err, 0, "writing YAML: flush failed");
    return 0;
}

/* ---- load ------------------------------------------------------------------ */

struct loader {
    yaml_parser_t p;
    struct stk_error **err;
};

static int load_error(struct loader *l, const yaml_mark_t *m, const char *what)
{
    return stk_error_make(l->err, EINVAL, "%zu:%zu: %s", m->line + 1, m->column + 1, what);
}

static int next_event(struct loader *l, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&l->p, ev))
        return stk_error_make(l->err, EINVAL, "%zu:%zu: %s", l->p.problem_mark.line + 1,
                              l->p.problem_mark.column + 1,
                              l->p.problem ? l->p.problem : "invalid YAML");
    return 0;
}

static bool all_digits(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

/* YAML 1.2 core schema resolution of a plain scalar. */
static json_t *resolve_plain(const char *s)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
    static const char *const trues[] = {"true", "True", "TRUE"};
    static const char *const falses[] = {"false", "False", "FALSE"};
    for (size_t i = 0; i < STK_ARRAY_SIZE(nulls); i++)
        if (!strcmp(s, nulls[i]))
            return json_null();
    for (size_t i = 0; i < STK_ARRAY_SIZE(trues); i++)
        if (!strcmp(s, trues[i]))
            return json_true();
    for (size_t i = 0; i < STK_ARRAY_SIZE(falses); i++)
        if (!strcmp(s, falses[i]))
            return json_false();
    const char *digits = (s[0] == '-' || s[0] == '+') ? s + 1 : s;
    if (all_digits(digits)) {
        /* A leading 0 is octal, as Kubernetes' own YAML reader (YAML 1.1)
         * takes it: "defaultMode: 0644" is 420. */
        int base = digits[0] == '0' && digits[1] ? 8 : 10;
        errno = 0;
        char *end;
        long long v = strtoll(s, &end, base);
        if (!errno && !*end)
            return json_integer(v);
    }
    if (digits == s && s[0] == '0' && (s[1] == 'o' || s[1] == 'x') && s[2]) {
        errno = 0;
        char *end;
        long long v = strtoll(s + 2, &end, s[1] == 'o' ? 8 : 16);
        if (!errno && !*end && s[2] != '-' && s[2] != '+')
            return json_integer(v);
    }
    /* floats: digits with a dot or an exponent */
    if (strpbrk(s, ".eE") && strspn(digits, "0123456789.eE+-") == strlen(digits) &&
        (digits[0] == '.' ? digits[1] >= '0' && digits[1] <= '9'
                          : digits[0] >= '0' && digits[0] <= '9')) {
        char *end;
        double d = strtod(s, &end);
        if (!*end && isfinite(d))
            return json_real(d);
    }
    return json_string(s);
}

static int load_node(struct loader *l, yaml_event_t *ev, int depth, json_t **ret);

static int load_mapping(struct loader *l, int depth, json_t **ret)
{
    json_t *obj = json_object();
    for (;;) {
        yaml_event_t kev;
        if (next_event(l, &kev) < 0)
            goto fail;
        if (kev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&kev);
            *ret = obj;
            return 0;
        }
        if (kev.type != YAML_SCALAR_EVENT) {
            load_error(l, &kev.start_mark, "only string keys are supported");
            yaml_event_delete(&kev);
            goto fail;
        }
        _cleanup_free_ char *key =
            stk_xstrndup((const char *)kev.data.scalar.value, kev.data.scalar.length);
        yaml_mark_t at = kev.start_mark;
        bool has_nul = strlen(key) != kev.data.scalar.length;
        yaml_event_delete(&kev);
        if (has_nul || json_object_get(obj, key)) {
            load_error(l, &at, has_nul ? "NUL byte in a key" : "duplicate key");
            goto fail;
        }
        yaml_event_t vev;
        json_t *v = NULL;
        if (next_event(l, &vev) < 0)
            goto fail;
        if (load_node(l, &vev, depth + 1, &v) < 0)
            goto fail;
        json_object_set_new(obj, key, v);
    }
fail:
    json_decref(obj);
    return -EINVAL;
}

static int load_sequence(struct loader *l, int depth, json_t **ret)
{
    json_t *arr = json_array();
    for (;;) {
        yaml_event_t ev;
        if (next_event(l, &ev) < 0)
            goto fail;
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            *ret = arr;
            return 0;
        }
        json_t *v = NULL;
        if (load_node(l, &ev, depth + 1, &v) < 0)
            goto fail;
        json_array_append_new(arr, v);
    }
fail:
    json_decref(arr);
    return -EINVAL;
}

/* Consumes ev (deletes it) and everything the node spans. */
static int load_node(struct loader *l, yaml_event_t *ev, int depth, json_t **ret)
{
    int r = 0;
    if (depth > YAML_MAX_DEPTH) {
        r = load_error(l, &ev->start_mark, "nesting too deep");
        yaml_event_delete(ev);
        return r;
    }
    switch (ev->type) {
    case YAML_SCALAR_EVENT: {
        _cleanup_free_ char *s =
            stk_xstrndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
        const char *tag = (const char *)ev->data.scalar.tag;
        if (strlen(s) != ev->data.scalar.length)
            r = load_error(l, &ev->start_mark, "NUL byte in a scalar");
        else if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
                 (tag && (!strcmp(tag, YAML_STR_TAG) || !strcmp(tag, "!"))))
            *ret = json_string(s);
        else
            *ret = resolve_plain(s);
        if (r == 0 && !*ret)
            r = load_error(l, &ev->start_mark, "invalid UTF-8 in a scalar");
        break;
    }
    case YAML_SEQUENCE_START_EVENT:
        r = load_sequence(l, depth, ret);
        break;
    case YAML_MAPPING_START_EVENT:
        r = load_mapping(l, depth, ret);
        break;
    case YAML_ALIAS_EVENT:
        r = load_error(l, &ev->start_mark, "aliases are not supported");
        break;
    case YAML_NO_EVENT:
    case YAML_STREAM_START_EVENT:
    case YAML_STREAM_END_EVENT:
    case YAML_DOCUMENT_START_EVENT:
    case YAML_DOCUMENT_END_EVENT:
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        r = load_error(l, &ev->start_mark, "unexpected YAML event");
        break;
    }
    yaml_event_delete(ev);
    return r;
}

static void loader_freep(struct loader *l)
{
    yaml_parser_delete(&l->p);
}

int stk_yaml_load(const char *data, size_t len, json_t **ret, struct stk_error **err)
{
    _cleanup_(loader_freep) struct loader l = {.err = err};
    json_t *docs = json_array();
    yaml_event_t ev;

    if (!yaml_parser_initialize(&l.p))
        stk_oom();
    yaml_parser_set_input_string(&l.p, (const unsigned char *)data, len);
    for (;;) {
        if (next_event(&l, &ev) < 0)
            goto fail;
        yaml_event_type_t t = ev.type;
        if (t == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        if (t == YAML_DOCUMENT_START_EVENT) {
            yaml_event_delete(&ev);
            json_t *v = NULL;
            if (next_event(&l, &ev) < 0)
                goto fail;
            if (load_node(&l, &ev, 0, &v) < 0)
                goto fail;
            json_array_append_new(docs, v);
            continue;
        }
        yaml_event_delete(&ev); /* stream start, document end */
    }
    *ret = docs;
    return 0;
fail:
    json_decref(docs);
    return -EINVAL;
}
