/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The standalone proxy's configuration file (`stockade __proxy --config
 * FILE`): on Kubernetes, the ConfigMap the renderer writes for one sandbox.
 * It names hosts, networks and credential references, never a secret's
 * value. Everything is checked here as the spec checks it: the file is
 * read by a process that holds credentials.
 *
 *   {"sandbox": "NAME",
 *    "allowHosts": ["pypi.org:443", "*.example.com:80"],
 *    "deny": ["169.254.169.254/32", ...],
 *    "bindings": [{"name": "github", "url": "https://api.github.com",
 *                  "source": "kubernetesSecret", "ref": "ns/name", "key": "token",
 *                  "header": "Authorization", "format": "Bearer {value}"}]}
 */
#include "proxy.h"

#include <errno.h>
#include <jansson.h>
#include <string.h>

struct stk_proxy_file_priv {
    struct stk_proxy_file pub;
    json_t *root; /* the strings of pub point into it */
    struct stk_allow_host *allow;
    struct stk_cidr *deny;
    struct stk_binding *bindings;
};

static int bad(struct stk_error **err, const char *what, size_t i, const char *why)
{
    return stk_error_make(err, EINVAL, "proxy configuration: %s[%zu]: %s", what, i, why);
}

/* A string member: NULL when absent; *ok false when present and not a
 * string of 1..max bytes without control characters. */
static const char *member(const json_t *o, const char *key, size_t max, bool *ok)
{
    const json_t *v = json_object_get(o, key);
    if (!v)
        return NULL;
    const char *s = json_string_value(v);
    size_t n = s ? json_string_length(v) : 0;
    if (!s || n == 0 || n > max || strlen(s) != n) {
        *ok = false;
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
            *ok = false;
            return NULL;
        }
    return s;
}

static bool header_name_valid(const char *s)
{
    if (!s[0])
        return false;
    for (; *s; s++)
        if (!strchr("!#$%&'*+-.^_`|~", *s) &&
            !((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
            return false;
    return true;
}

static int parse_binding(const json_t *o, size_t i, struct stk_binding *bd, struct stk_error **err)
{
    bool ok = json_is_object(o);
    const char *name = member(o, "name", 63, &ok), *url = member(o, "url", 2048, &ok);
    const char *source = member(o, "source", 32, &ok), *ref = member(o, "ref", 4096, &ok);
    const char *key = member(o, "key", 253, &ok), *header = member(o, "header", 128, &ok);
    const char *format = member(o, "format", 256, &ok);
    if (!ok || !name || !url || !source || !ref)
        return bad(err, "bindings", i,
                   "needs name, url, source and ref, each a string of printable characters");
    if (!stk_dns_label_valid(name))
        return bad(err, "bindings", i, "the name is not a DNS label");
    if (strncmp(url, "https://", 8) != 0)
        return bad(err, "bindings", i, "the url is not https://");
    int src = -1;
    for (int s = 0; s < _STK_CRED_N; s++)
        if (!strcmp(source, stk_cred_source_names[s]))
            src = s;
    if (src < 0)
        return bad(err, "bindings", i, "unknown credential source");
    if ((src == STK_CRED_KUBERNETES_SECRET) != (key != NULL))
        return bad(err, "bindings", i, "key is required with kubernetesSecret, and only there");
    if (header && !header_name_valid(header))
        return bad(err, "bindings", i, "the header is not an HTTP field name");
    if (format && !strstr(format, "{value}"))
        return bad(err, "bindings", i, "the format has no {value}");
    bd->meta.set = true;
    bd->name = (struct stk_str){.meta.set = true, .v = name};
    bd->url = (struct stk_str){.meta.set = true, .v = url};
    bd->credential.meta.set = true;
    bd->credential.source.meta.set = true;
    bd->credential.source.v = src;
    bd->credential.ref = (struct stk_str){.meta.set = true, .v = ref};
    if (key)
        bd->credential.key = (struct stk_str){.meta.set = true, .v = key};
    if (header)
        bd->inject.header = (struct stk_str){.meta.set = true, .v = header};
    if (format)
        bd->inject.format = (struct stk_str){.meta.set = true, .v = format};
    return 0;
}

int stk_proxy_file_parse(const char *data, size_t len, struct stk_proxy_file **ret,
                         struct stk_error **err)
{
    if (len > STK_PROXY_FILE_MAX)
        return stk_error_make(err, EMSGSIZE, "proxy configuration: larger than %u bytes",
                              STK_PROXY_FILE_MAX);
    json_error_t je;
    json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return stk_error_make(err, EINVAL, "proxy configuration: line %d: %s", je.line, je.text);
    struct stk_proxy_file_priv *f = stk_xcalloc(1, sizeof(*f));
    f->root = root;
    int r = 0;
    bool ok = json_is_object(root);
    const char *sandbox = ok ? member(root, "sandbox", 253, &ok) : NULL;
    const json_t *allow = json_object_get(root, "allowHosts");
    const json_t *deny = json_object_get(root, "deny");
    const json_t *bindings = json_object_get(root, "bindings");
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)(ok ? root : NULL), k, v)
    {
        if (strcmp(k, "sandbox") && strcmp(k, "allowHosts") && strcmp(k, "deny") &&
            strcmp(k, "bindings")) {
            r = stk_error_make(err, EINVAL, "proxy configuration: unknown key \"%s\"", k);
            goto out;
        }
    }
    if (!ok || !sandbox || (allow && !json_is_array(allow)) || (deny && !json_is_array(deny)) ||
        (bindings && !json_is_array(bindings))) {
        r = stk_error_make(err, EINVAL,
                           "proxy configuration: an object with sandbox (a string) and the lists "
                           "allowHosts, deny and bindings");
        goto out;
    }
    if (json_array_size(allow) > STK_LIMIT_ALLOW_HOSTS ||
        json_array_size(deny) > STK_PROXY_FILE_DENY_MAX ||
        json_array_size(bindings) > STK_PROXY_FILE_BINDINGS_MAX) {
        r = stk_error_make(
            err, EMSGSIZE, "proxy configuration: at most %d allowHosts, %d deny and %d bindings",
            STK_LIMIT_ALLOW_HOSTS, STK_PROXY_FILE_DENY_MAX, STK_PROXY_FILE_BINDINGS_MAX);
        goto out;
    }
    f->pub.sandbox = sandbox;
    f->pub.allow = f->allow = stk_xcalloc(json_array_size(allow) + 1, sizeof(*f->allow));
    f->pub.deny = f->deny = stk_xcalloc(json_array_size(deny) + 1, sizeof(*f->deny));
    f->pub.bindings = f->bindings =
        stk_xcalloc(json_array_size(bindings) + 1, sizeof(*f->bindings));
    size_t i;
    json_array_foreach(allow, i, v)
    {
        const char *why = "not a string";
        const char *s = json_string_value(v);
        if (!s || !stk_allow_host_parse(s, &f->allow[i], &why)) {
            r = bad(err, "allowHosts", i, why);
            goto out;
        }
        f->pub.n_allow++;
    }
    json_array_foreach(deny, i, v)
    {
        const char *why = "not a string";
        const char *s = json_string_value(v);
        if (!s || stk_cidr_parse(s, &f->deny[i], &why) < 0) {
            r = bad(err, "deny", i, why ? why : "not a CIDR");
            goto out;
        }
        f->pub.n_deny++;
    }
    json_array_foreach(bindings, i, v)
    {
        if ((r = parse_binding(v, i, &f->bindings[i], err)) < 0)
            goto out;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(f->pub.bindings[j].name.v, f->pub.bindings[i].name.v)) {
                r = bad(err, "bindings", i, "a second binding of that name");
                goto out;
            }
        f->pub.n_bindings++;
    }
out:
    if (r < 0) {
        stk_proxy_file_free(&f->pub);
        return r;
    }
    *ret = &f->pub;
    return 0;
}

void stk_proxy_file_free(struct stk_proxy_file *pf)
{
    if (!pf)
        return;
    struct stk_proxy_file_priv *f = (struct stk_proxy_file_priv *)pf;
    free(f->allow);
    free(f->deny);
    free(f->bindings);
    json_decref(f->root);
    free(f);
}
