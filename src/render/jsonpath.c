/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kubectl's `-o jsonpath=` for simple paths, and label selectors. Both
 * parse what a user typed: bounded, and every refusal says what and where.
 */
#include "render/jsonpath.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* ---- JSONPath ----------------------------------------------------------------------- */

#define MAX_VALUES 4096 /* values one path may select */

struct values {
    const json_t *v[MAX_VALUES];
    size_t n;
};

static void add(struct values *out, const json_t *v)
{
    if (v && out->n < MAX_VALUES)
        out->v[out->n++] = v;
}

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '/';
}

/* One step applied to every value of in. */
static void step_key(const struct values *in, const char *key, size_t len, struct values *out)
{
    char name[256];
    snprintf(name, sizeof(name), "%.*s", (int)len, key);
    for (size_t i = 0; i < in->n; i++)
        if (json_is_object(in->v[i]))
            add(out, json_object_get(in->v[i], name));
}

static void step_all(const struct values *in, struct values *out)
{
    for (size_t i = 0; i < in->n; i++) {
        size_t k;
        const char *key;
        json_t *v;
        if (json_is_array(in->v[i]))
            json_array_foreach((json_t *)(uintptr_t)in->v[i], k, v) add(out, v);
        else if (json_is_object(in->v[i]))
            json_object_foreach((json_t *)(uintptr_t)in->v[i], key, v) add(out, v);
    }
}

static void step_index(const struct values *in, long long idx, struct values *out)
{
    for (size_t i = 0; i < in->n; i++) {
        if (!json_is_array(in->v[i]))
            continue;
        long long n = (long long)json_array_size(in->v[i]);
        long long at = idx < 0 ? n + idx : idx;
        if (at >= 0 && at < n)
            add(out, json_array_get(in->v[i], (size_t)at));
    }
}

static int bad(struct stk_error **err, const char *tmpl, const char *at, const char *why)
{
    return stk_error_make(err, EINVAL, "jsonpath: %s at character %zu of '%s'", why,
                          (size_t)(at - tmpl) + 1, tmpl);
}

static void print_value(const json_t *v, struct stk_buf *out)
{
    if (json_is_string(v)) {
        stk_buf_append(out, json_string_value(v), json_string_length(v));
        return;
    }
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
    if (s)
        stk_buf_append(out, s, strlen(s));
    free(s);
}

/* A path from p to end (exclusive). */
static int eval_path(const json_t *root, const char *tmpl, const char *p, const char *end,
                     struct stk_buf *out, struct stk_error **err)
{
    static __thread struct values a, b;
    struct values *cur = &a, *next = &b;
    cur->n = 0;
    add(cur, root);
    if (p < end && *p == '$')
        p++;
    if (p < end && *p == '.' && p + 1 == end)
        p++; /* "{.}": the root */
    while (p < end) {
        next->n = 0;
        if (*p == '.') {
            p++;
            if (p < end && *p == '*') {
                step_all(cur, next);
                p++;
            } else {
                const char *k = p;
                while (p < end && name_char(*p))
                    p++;
                if (p == k)
                    return bad(err, tmpl, p, "expected a name after '.'");
                if (p - k > 255)
                    return bad(err, tmpl, k, "name too long");
                step_key(cur, k, (size_t)(p - k), next);
            }
        } else if (*p == '[') {
            p++;
            if (p < end && *p == '*') {
                step_all(cur, next);
                p++;
            } else {
                const char *n0 = p;
                if (p < end && *p == '-')
                    p++;
                long long idx = 0;
                int digits = 0;
                for (; p < end && *p >= '0' && *p <= '9' && digits < 9; p++, digits++)
                    idx = idx * 10 + (*p - '0');
                if (!digits)
                    return bad(err, tmpl, p, "expected an index or * in []");
                step_index(cur, *n0 == '-' ? -idx : idx, next);
            }
            if (p >= end || *p != ']')
                return bad(err, tmpl, p, "expected ']'");
            p++;
        } else {
            return bad(err, tmpl, p, "expected '.' or '['");
        }
        struct values *t = cur;
        cur = next;
        next = t;
    }
    for (size_t i = 0; i < cur->n; i++) {
        if (i)
            stk_buf_append(out, " ", 1);
        print_value(cur->v[i], out);
    }
    return 0;
}

/* {"literal"}: the text between the quotes, unescaped. */
static int eval_literal(const char *tmpl, const char *p, const char *end, struct stk_buf *out,
                        struct stk_error **err)
{
    if (end - p < 2 || end[-1] != '"')
        return bad(err, tmpl, p, "unterminated string");
    for (p++, end--; p < end; p++) {
        char c = *p;
        if (c == '\\') {
            if (++p >= end)
                return bad(err, tmpl, p, "a '\\' ends the string");
            c = *p == 'n' ? '\n' : *p == 't' ? '\t' : *p == 'r' ? '\r' : *p;
            if (*p != 'n' && *p != 't' && *p != 'r' && *p != '"' && *p != '\\')
                return bad(err, tmpl, p, "unknown escape");
        }
        stk_buf_append(out, &c, 1);
    }
    return 0;
}

int stk_jsonpath(const json_t *root, const char *tmpl, struct stk_buf *out, struct stk_error **err)
{
    size_t len = strlen(tmpl);
    if (len > STK_JSONPATH_MAX_LEN)
        return stk_error_make(err, EINVAL, "jsonpath: longer than %d characters",
                              STK_JSONPATH_MAX_LEN);
    if (!memchr(tmpl, '{', len))
        return eval_path(root, tmpl, tmpl, tmpl + len, out, err);
    for (const char *p = tmpl; *p;) {
        if (*p == '}')
            return bad(err, tmpl, p, "'}' without '{'");
        if (*p != '{') {
            const char *q = p;
            while (*q && *q != '{' && *q != '}')
                q++;
            stk_buf_append(out, p, (size_t)(q - p));
            p = q;
            continue;
        }
        const char *start = p + 1, *close = start;
        bool quoted = false;
        for (; *close && (quoted || *close != '}'); close++) {
            if (*close == '\\' && quoted && close[1])
                close++;
            else if (*close == '"')
                quoted = !quoted;
        }
        if (!*close)
            return bad(err, tmpl, p, "'{' without '}'");
        int r = *start == '"' ? eval_literal(tmpl, start, close, out, err)
                              : eval_path(root, tmpl, start, close, out, err);
        if (r < 0)
            return r;
        p = close + 1;
    }
    return 0;
}

/* ---- label selectors ---------------------------------------------------------------- */

static bool label_char(char c)
{
    return name_char(c) || c == '.';
}

static int term_parse(const char *s, size_t n, struct stk_lsel *sel, struct stk_error **err)
{
    if (sel->n == STK_SELECTOR_MAX_TERMS)
        return stk_error_make(err, E2BIG, "selector: at most %d terms", STK_SELECTOR_MAX_TERMS);
    struct stk_lsel_term *t = &sel->terms[sel->n];
    const char *end = s + n, *k = s;
    t->op = STK_LSEL_EXISTS;
    if (k < end && *k == '!') {
        t->op = STK_LSEL_NOT_EXISTS;
        k++;
    }
    const char *p = k;
    while (p < end && label_char(*p))
        p++;
    size_t klen = (size_t)(p - k);
    if (!klen || klen > STK_SELECTOR_MAX_KEY)
        return stk_error_make(err, EINVAL,
                              "selector: '%.*s' needs a label key (at most %d "
                              "characters: letters, digits, '-', '_', '.', '/')",
                              (int)n, s, STK_SELECTOR_MAX_KEY);
    memcpy(t->key, k, klen);
    t->key[klen] = '\0';
    t->value[0] = '\0';
    if (p < end) {
        if (t->op == STK_LSEL_NOT_EXISTS)
            return stk_error_make(err, EINVAL, "selector: '!%s' takes no value", t->key);
        if (end - p >= 2 && p[0] == '!' && p[1] == '=') {
            t->op = STK_LSEL_NE;
            p += 2;
        } else if (end - p >= 2 && p[0] == '=' && p[1] == '=') {
            t->op = STK_LSEL_EQ;
            p += 2;
        } else if (*p == '=') {
            t->op = STK_LSEL_EQ;
            p++;
        } else {
            return stk_error_make(err, EINVAL, "selector: '%.*s': expected =, == or != after '%s'",
                                  (int)n, s, t->key);
        }
        const char *v = p;
        while (p < end && label_char(*p))
            p++;
        if (p != end || (size_t)(p - v) > STK_SELECTOR_MAX_VALUE)
            return stk_error_make(err, EINVAL,
                                  "selector: '%.*s': a value is at most %d "
                                  "characters: letters, digits, '-', '_', '.'",
                                  (int)n, s, STK_SELECTOR_MAX_VALUE);
        memcpy(t->value, v, (size_t)(p - v));
        t->value[p - v] = '\0';
    }
    sel->n++;
    return 0;
}

int stk_lsel_parse(const char *s, struct stk_lsel *sel, struct stk_error **err)
{
    if (!*s)
        return stk_error_make(err, EINVAL, "selector: empty");
    for (const char *p = s;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        int r = term_parse(p, n, sel, err);
        if (r < 0)
            return r;
        if (!comma)
            return 0;
        p = comma + 1;
    }
}

bool stk_lsel_match(const struct stk_lsel *sel, const json_t *labels)
{
    for (size_t i = 0; i < sel->n; i++) {
        const struct stk_lsel_term *t = &sel->terms[i];
        const char *v = json_string_value(json_object_get(labels, t->key));
        bool ok = t->op == STK_LSEL_EXISTS       ? v != NULL
                  : t->op == STK_LSEL_NOT_EXISTS ? v == NULL
                  : t->op == STK_LSEL_EQ         ? v && !strcmp(v, t->value)
                                                 : !v || strcmp(v, t->value) != 0;
        if (!ok)
            return false;
    }
    return true;
}
