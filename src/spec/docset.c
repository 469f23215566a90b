/* SPDX-License-Identifier: Apache-2.0 */
/* A file's documents: dispatch by kind, all-or-nothing. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

static const struct stk_node *map_get(const struct stk_node *map, const char *key)
{
    for (uint32_t i = 0; i < map->n; i++)
        if (!strcmp(map->pairs[i].key, key))
            return map->pairs[i].value;
    return NULL;
}

static int doc_kind(const char *file, const struct stk_node *root, struct stk_diags *d,
                    enum stk_kind *ret)
{
    const struct stk_node *kind = map_get(root, "kind");
    char allowed[128];
    stk_enum_join(stk_kind_names, _STK_KIND_N, "|", allowed, sizeof(allowed));
    if (!kind || kind->kind != STK_NODE_SCALAR || stk_node_scalar_type(kind) == STK_SCALAR_NULL) {
        stk_diags_add(d, STK_SEV_ERROR, file, kind ? kind->pos : root->pos, "kind",
                      "missing required field \"kind\" (one of %s)", allowed);
        return -EINVAL;
    }
    int k = stk_enum_lookup(stk_kind_names, _STK_KIND_N, kind->s);
    if (k < 0) {
        stk_diags_add(d, STK_SEV_ERROR, file, kind->pos, "kind", "\"%.64s\" is not one of %s",
                      kind->s, allowed);
        return -EINVAL;
    }
    *ret = (enum stk_kind)k;
    return 0;
}

/* The cross-field rules run only on a cleanly decoded policy: on a partial
 * one they would report the same mistake twice. */
static void decode_access_policy(const char *file, struct stk_arena *a, struct stk_diags *d,
                                 const struct stk_node *root, struct stk_access_policy *ret)
{
    size_t before = d->n_errors;
    stk_decode_object(file, a, d, stk_access_policy_fields, root, ret, "");
    if (d->n_errors == before)
        stk_access_policy_check(ret, file, d);
}

int stk_docset_parse(const char *name, const char *data, size_t len, struct stk_diags *diags,
                     struct stk_docset **ret)
{
    _cleanup_arena_ struct stk_arena *a = stk_arena_new();
    struct stk_node **roots = NULL;
    size_t n_roots = 0;
    size_t errors_before = diags->n_errors;
    int r;

    r = stk_nodes_parse(name, data, len, a, diags, &roots, &n_roots);
    if (r < 0)
        return r;

    struct stk_doc *docs = stk_arena_array(a, n_roots, sizeof(*docs));
    for (size_t i = 0; i < n_roots; i++) {
        enum stk_kind kind;
        if (doc_kind(name, roots[i], diags, &kind) < 0)
            continue;
        docs[i].kind = kind;
        docs[i].pos = roots[i]->pos;
        switch (kind) {
        case STK_KIND_SANDBOX:
            docs[i].sandbox = stk_arena_alloc(a, sizeof(*docs[i].sandbox));
            stk_decode_object(name, a, diags, stk_sandbox_fields, roots[i], docs[i].sandbox, "");
            break;
        case STK_KIND_ENVCONFIG:
            docs[i].env = stk_arena_alloc(a, sizeof(*docs[i].env));
            stk_decode_object(name, a, diags, stk_envconfig_fields, roots[i], docs[i].env, "");
            break;
        case STK_KIND_ACCESS_POLICY:
            docs[i].access = stk_arena_alloc(a, sizeof(*docs[i].access));
            decode_access_policy(name, a, diags, roots[i], docs[i].access);
            break;
        case _STK_KIND_N:
            break;
        }
    }
    if (diags->n_errors > errors_before)
        return -EINVAL;
    if (n_roots == 0) {
        stk_diags_add(diags, STK_SEV_ERROR, name, (struct stk_pos){0, 0}, "", "no documents found");
        return -EINVAL;
    }

    struct stk_docset *ds = stk_xcalloc(1, sizeof(*ds));
    ds->arena = TAKE_PTR(a);
    ds->file = stk_xstrdup(name);
    ds->docs = docs;
    ds->n = n_roots;
    *ret = ds;
    return 0;
}

static int read_bounded(int fd, char **ret, size_t *ret_len, bool *ret_too_big)
{
    struct stk_buf b = {0};
    char chunk[16384];
    *ret_too_big = false;
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            stk_buf_free(&b);
            return -e;
        }
        if (n == 0)
            break;
        if (b.len + (size_t)n > STK_LIMIT_FILE_BYTES) {
            *ret_too_big = true;
            stk_buf_free(&b);
            return -EFBIG;
        }
        stk_buf_append(&b, chunk, (size_t)n);
    }
    *ret_len = b.len;
    *ret = stk_buf_steal(&b);
    return 0;
}

int stk_docset_read(const char *path, struct stk_diags *diags, char **ret, size_t *ret_len)
{
    _cleanup_close_ int fd = -1;
    bool too_big = false;
    const char *name = strcmp(path, "-") ? path : "<stdin>";
    struct stk_pos nowhere = {0, 0};

    if (strcmp(path, "-") == 0)
        fd = dup(STDIN_FILENO);
    else
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        stk_diags_add(diags, STK_SEV_ERROR, name, nowhere, "", "cannot open: %s", strerror(errno));
        return -errno;
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        stk_diags_add(diags, STK_SEV_ERROR, name, nowhere, "", "is a directory, not a file");
        return -EISDIR;
    }
    int r = read_bounded(fd, ret, ret_len, &too_big);
    if (r < 0) {
        if (too_big)
            stk_diags_add(diags, STK_SEV_ERROR, name, nowhere, "",
                          "file is larger than the limit of %d bytes", STK_LIMIT_FILE_BYTES);
        else
            stk_diags_add(diags, STK_SEV_ERROR, name, nowhere, "", "cannot read: %s", strerror(-r));
    }
    return r;
}

int stk_docset_load(const char *path, struct stk_diags *diags, struct stk_docset **ret)
{
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    int r = stk_docset_read(path, diags, &data, &len);
    if (r < 0)
        return r;
    return stk_docset_parse(strcmp(path, "-") ? path : "<stdin>", data, len, diags, ret);
}

void stk_docset_free(struct stk_docset *ds)
{
    if (!ds)
        return;
    stk_arena_free(ds->arena);
    free(ds->file);
    free(ds);
}

const struct stk_doc *stk_docset_find(const struct stk_docset *ds, enum stk_kind kind,
                                      size_t *ret_count)
{
    const struct stk_doc *first = NULL;
    size_t count = 0;
    for (size_t i = 0; i < ds->n; i++)
        if (ds->docs[i].kind == kind) {
            if (!first)
                first = &ds->docs[i];
            count++;
        }
    if (ret_count)
        *ret_count = count;
    return first;
}
